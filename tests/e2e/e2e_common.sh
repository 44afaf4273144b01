# e2e_common.sh - what every end-to-end test script shares, sourced after netlab.sh:
# the temporary directory and cleanup (namespaces and processes go even on failure or signal),
# PASS/FAIL accounting, and starting/stopping sekishod in the lab's gateway namespace.
#
#   e2e_begin NAME SEKISHOD TOOL...   skip (77) without namespaces or a tool; sets TMP, SEKISHOD
#   pass / fail MESSAGE               count a check
#   abort MESSAGE                     print the lab's logs and exit 1
#   e2e_start_sekishod LOG ARGS...    sekishod --access-if acc0 --core-if core0 --state-dir $TMP/state
#                                     ARGS in gw, until a ping crosses the gateway; sets daemon_pid
#                                     (a later --state-dir in ARGS wins)
#   e2e_stop_sekishod                 SIGTERM and wait (its exit status is the return value)
#   e2e_end                           print the totals; the script's exit status
#   e2e_lab_policy                    print the lab's policy preamble (ports, subscriber ranges,
#                                     relays); a test appends its own sections
#   ctl_expect RC DESCRIPTION ARGS... run sekishoctl ($ctl) on the API socket ($sock), check its
#                                     exit code; its output in $out
#   contains DESCRIPTION NEEDLE       check that the last $out contains NEEDLE
#   e2e_unit_capabilities             setpriv --bounding-set value: the capabilities the systemd unit
#                                     (configs/systemd/sekishod.service) grants, and no other
#   e2e_wait_for_log LOG TEXT SECONDS WHAT   wait until LOG holds TEXT; abort naming WHAT if $daemon_pid
#                                     exits first or SECONDS pass
#   e2e_spawn_pings COUNT LOG         COUNT pings every 0.05 s from the subscriber to the MX through
#                                     the gateway, in the background; sets ping_pid
#   e2e_ping_result LOG               "TRANSMITTED RECEIVED" from a finished ping's summary in LOG
# Set KEEP_TMP=1 to keep the temporary directory.

passed=0
failed=0
TMP=""
daemon_pid=""

_e2e_cleanup() {
  local rc=$?
  trap '' INT TERM # finish cleaning up even if signalled again
  netlab_down
  if [ -n "${KEEP_TMP:-}" ]; then echo "$E2E_NAME: kept $TMP" >&2; elif [ -n "$TMP" ]; then rm -rf "$TMP"; fi
  exit "$rc"
}

e2e_begin() {
  E2E_NAME="$1"
  SEKISHOD="$2"
  shift 2
  netlab_can_run || exit 77
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || { echo "$E2E_NAME: '$t' not found (skipping)" >&2; exit 77; }
  done
  [ -x "$SEKISHOD" ] || { echo "$E2E_NAME: sekishod not executable: '$SEKISHOD'" >&2; exit 1; }
  SEKISHOD="$(realpath "$SEKISHOD")"
  trap _e2e_cleanup EXIT
  trap 'exit 1' INT TERM
  TMP="$(mktemp -d "/tmp/sekisho-$E2E_NAME.XXXXXX")" || exit 1
  chmod 755 "$TMP" # smtp-sink runs as nobody and writes below it
  NETLAB_LOGDIR="$TMP/logs"
}

pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
ctl_expect() {
  local want="$1" what="$2"
  shift 2
  out="$(timeout 30 "$ctl" --socket "$sock" "$@" 2>&1)"
  local rc=$?
  if [ "$rc" = "$want" ]; then pass "$what (exit $rc)"; else
    fail "$what: exit $rc, expected $want"; echo "$out" | head -n 8 | sed 's/^/    /'; fi
}
contains() {
  if echo "$out" | grep -qF -- "$2"; then pass "$1"; else fail "$1: no '$2' in"; echo "$out" | head -n 8 | sed 's/^/    /'; fi
}
abort() {
  echo "$E2E_NAME: $*" >&2
  local f
  for f in "$NETLAB_LOGDIR"/*.log; do [ -s "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }; done
  exit 1
}

e2e_start_sekishod() {
  local log="$1"
  shift
  netlab_spawn gw "$log" "$SEKISHOD" --access-if acc0 --core-if core0 --state-dir "$TMP/state" "$@"
  daemon_pid=$NETLAB_LAST_PID
  local deadline=$(($(date +%s) + 20))
  until netlab_exec_sub ping -c 1 -W 1 "$NETLAB_MX_V4" >/dev/null 2>&1; do
    kill -0 "$daemon_pid" 2>/dev/null || abort "sekishod exited early"
    [ "$(date +%s)" -lt "$deadline" ] || abort "no ping through the gateway"
    sleep 0.2
  done
}

e2e_stop_sekishod() {
  local i
  kill -TERM "$daemon_pid"
  for ((i = 0; i < 100; i++)); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
  wait "$daemon_pid"
}

e2e_unit_capabilities="-all,+net_admin,+net_raw,+bpf,+perfmon,+ipc_lock"

e2e_wait_for_log() {
  local deadline=$(($(date +%s) + $3))
  until grep -qF -- "$2" "$1"; do
    kill -0 "$daemon_pid" 2>/dev/null || abort "$4 exited before '$2': $(tail -n 3 "$1")"
    [ "$(date +%s)" -lt "$deadline" ] || abort "$4: no '$2' after $3 s"
    sleep 0.02
  done
}

e2e_spawn_pings() {
  netlab_spawn sub "$2" ping -n -i 0.05 -c "$1" -W 1 "$NETLAB_MX_V4"
  ping_pid=$NETLAB_LAST_PID
}

e2e_ping_result() {
  sed -n 's/^\([0-9]*\) packets transmitted, \([0-9]*\) received.*/\1 \2/p' "$1"
}

e2e_lab_policy() {
  cat <<'EOF'
version: 1
ports:
  smtp: [25]
  submission: [587, 465]
subscribers:
  dynamic: [198.51.100.0/24, "2001:db8:100::/40"]
  static: [198.51.100.128/28, "2001:db8:1ff::/48"]
relays: [203.0.113.10/32]
EOF
}

e2e_end() {
  echo "$E2E_NAME: $passed passed, $failed failed"
  [ "$failed" = 0 ]
}
