#!/usr/bin/env bash
# op25b_e2e.sh - end-to-end OP25B test: real SMTP clients and servers in network namespaces,
# sekishod bridging acc0 <-> core0 in the gw namespace as a bump in the wire.
#
# Usage (root):  tests/e2e/op25b_e2e.sh [--bridge] [PATH/TO/sekishod]
#   The binary comes from $1 or the environment variable SEKISHOD.
#   SEKISHOD_ARGS     extra arguments appended to the sekishod command line (e.g. EAL options)
#   SEKISHOD_START_TIMEOUT  seconds to wait until sekishod forwards (default 15)
#   KEEP_TMP=1        keep the temporary directory (policy, logs, captures) for inspection
#   --bridge          development only: a Linux bridge instead of sekishod, to check the lab
#                     itself; the port-25 block is then expected to go through and the
#                     daemon-specific checks (RST, exit status, summary) are skipped.
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
# Only documentation addresses are used, only inside namespaces this test creates; namespaces
# and processes are removed on exit, whatever the outcome.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"

bridge=0
sekishod="${SEKISHOD:-}"
for arg in "$@"; do
  case "$arg" in
    --bridge) bridge=1 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) sekishod="$arg" ;;
  esac
done

if ! netlab_can_run; then
  exit 77
fi
for t in swaks tcpdump nc ping timeout /usr/sbin/smtp-sink /usr/bin/python3; do
  command -v "$t" >/dev/null 2>&1 || { echo "op25b_e2e: '$t' not found (skipping)" >&2; exit 77; }
done
if [ "$bridge" = 0 ]; then
  if [ -z "$sekishod" ] || [ ! -x "$sekishod" ]; then
    echo "op25b_e2e: sekishod binary not given or not executable: '${sekishod}'" >&2
    echo "usage: $0 [--bridge] PATH/TO/sekishod   (or SEKISHOD=...)" >&2
    exit 1
  fi
  sekishod="$(realpath "$sekishod")"
fi

TMP=""
daemon_pid=""
capture_pid=""
# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
  local rc=$?
  trap '' INT TERM # finish cleaning up even if signalled again
  netlab_down
  if [ -n "${KEEP_TMP:-}" ]; then
    echo "op25b_e2e: kept $TMP" >&2
  elif [ -n "$TMP" ]; then
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
TMP="$(mktemp -d /tmp/sekisho-e2e.XXXXXX)" || exit 1
NETLAB_LOGDIR="$TMP/logs"

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
skip() { echo "SKIP: $*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

show_logs() {
  local f
  for f in "$NETLAB_LOGDIR"/*.log; do
    [ -s "$f" ] || continue
    echo "--- $f"
    tail -n 40 "$f"
  done
}

abort() {
  echo "FAIL: $*"
  show_logs
  exit 1
}

# ---------------------------------------------------------------------------------------------
# The summary.json check. The schema is not final: adjust this function only.
# Assumes a JSON object with an integer "blocked" (packets blocked) at top level.
check_summary() {
  local file="$1"
  /usr/bin/python3 - "$file" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    d = json.load(f)
if not isinstance(d, dict):
    sys.exit("summary is not a JSON object")
v = d.get("blocked")
if not isinstance(v, int) or isinstance(v, bool):
    sys.exit("summary has no integer 'blocked': %r" % (v,))
if v <= 0:
    sys.exit("summary 'blocked' is %d, expected > 0" % v)
print("blocked=%d" % v)
EOF
}
# ---------------------------------------------------------------------------------------------

# The shipped example policy is the one under test (dynamic 198.51.100.0/24 and
# 2001:db8:100::/40, static /28 and /48 inside them, relays .10 and ::10).
cp "$here/../../configs/op25b-enforce.yaml" "$TMP/policy.yaml"

netlab_up --gateway || abort "lab setup failed"
netlab_start_sinks || abort "SMTP/TCP sinks did not start"

if [ "$bridge" = 1 ]; then
  echo "op25b_e2e: --bridge: Linux bridge in gw instead of sekishod"
  netlab_bridge_up || abort "bridge setup failed"
else
  # shellcheck disable=SC2086  # SEKISHOD_ARGS is split on purpose
  netlab_spawn gw "$NETLAB_LOGDIR/sekishod.log" "$sekishod" --policy "$TMP/policy.yaml" \
    --access-if acc0 --core-if core0 --workers 1 --state-dir "$TMP/state" \
    --events "$TMP/events.jsonl" --summary "$TMP/summary.json" ${SEKISHOD_ARGS:-}
  daemon_pid=$NETLAB_LAST_PID
  echo "op25b_e2e: started sekishod (pid $daemon_pid)"
fi

# Wait until frames cross the gateway.
deadline=$(($(date +%s) + ${SEKISHOD_START_TIMEOUT:-15}))
forwarding=0
while [ "$(date +%s)" -lt "$deadline" ]; do
  if [ -n "$daemon_pid" ] && ! kill -0 "$daemon_pid" 2>/dev/null; then
    wait "$daemon_pid"
    abort "sekishod exited early with status $? before forwarding"
  fi
  if netlab_exec_sub ping -c 1 -W 1 "$NETLAB_MX_V4" >/dev/null 2>&1; then
    forwarding=1
    break
  fi
  sleep 0.2
done
[ "$forwarding" = 1 ] || abort "no ping through the gateway within ${SEKISHOD_START_TIMEOUT:-15}s"
echo "op25b_e2e: gateway forwards"

# Capture TCP in sub from now on, to see the RSTs the gateway sends.
netlab_spawn sub "$NETLAB_LOGDIR/tcpdump-sub.log" tcpdump -i sub0 -n -U -s 0 -Z root -w "$TMP/sub.pcap" tcp
capture_pid=$NETLAB_LAST_PID
for ((i = 0; i < 50; i++)); do
  grep -q 'listening on' "$NETLAB_LOGDIR/tcpdump-sub.log" 2>/dev/null && break
  sleep 0.1
done
grep -q 'listening on' "$NETLAB_LOGDIR/tcpdump-sub.log" || abort "tcpdump in sub did not start"

# run_swaks FAMILY SOURCE SERVER PORT: sets swaks_rc, swaks_ms, swaks_log.
n=0
run_swaks() {
  local fam="$1" src="$2" server="$3" port="$4" t0
  n=$((n + 1))
  swaks_log="$TMP/swaks-$n.log"
  t0=$(now_ms)
  # swaks' own --timeout makes a silent drop visible as a ~10 s failure; timeout(1) is a backstop.
  timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks "$fam" --server "$server" --port "$port" \
    --local-interface "$src" --helo client.example.com \
    --from sender@example.com --to rcpt@example.net --timeout 10 >"$swaks_log" 2>&1
  swaks_rc=$?
  swaks_ms=$(($(now_ms) - t0))
}

expect_mail_ok() { # FAMILY SOURCE SERVER PORT
  run_swaks "$@"
  if [ "$swaks_rc" = 0 ]; then
    pass "SMTP $2 -> $3:$4 delivered (${swaks_ms} ms)"
  else
    fail "SMTP $2 -> $3:$4 should be delivered; swaks exit $swaks_rc after ${swaks_ms} ms"
    tail -n 8 "$swaks_log" | sed 's/^/    /'
  fi
}

expect_mail_blocked() { # FAMILY SOURCE SERVER PORT
  if [ "$bridge" = 1 ]; then
    run_swaks "$@"
    if [ "$swaks_rc" = 0 ]; then
      pass "SMTP $2 -> $3:$4 went through the Linux bridge (bridge mode; sekishod would block it)"
    else
      fail "SMTP $2 -> $3:$4 failed in bridge mode; swaks exit $swaks_rc"
      tail -n 8 "$swaks_log" | sed 's/^/    /'
    fi
    return
  fi
  run_swaks "$@"
  if [ "$swaks_rc" = 0 ]; then
    fail "SMTP $2 -> $3:$4 should be blocked but was delivered"
  elif [ "$swaks_ms" -ge 3000 ]; then
    fail "SMTP $2 -> $3:$4 failed only after ${swaks_ms} ms (a timeout, not a reset)"
    tail -n 4 "$swaks_log" | sed 's/^/    /'
  else
    pass "SMTP $2 -> $3:$4 blocked fast (${swaks_ms} ms, swaks exit $swaks_rc:$(grep '^\*\*\*' "$swaks_log" | tail -n 1 | tr -s ' \t' ' ' | cut -c4-))"
  fi
}

expect_ping() { # FAMILY SOURCE DEST
  if netlab_exec_sub ping "$1" -c 3 -i 0.2 -W 2 -I "$2" "$3" >"$TMP/ping.log" 2>&1; then
    pass "ping $1 $2 -> $3"
  else
    fail "ping $1 $2 -> $3"
    tail -n 3 "$TMP/ping.log" | sed 's/^/    /'
  fi
}

expect_tcp80() { # SOURCE DEST
  local src="$1" dst="$2" line="LINE-FROM-SUB-$RANDOM" reply log i
  log="$NETLAB_LOGDIR/nc80-$(echo "$dst" | tr -c 'A-Za-z0-9\n' '_').log"
  reply="$(echo "$line" | timeout 10 ip netns exec "$NETLAB_NS_SUB" nc -N -w 3 -s "$src" "$dst" 80 2>&1)"
  for ((i = 0; i < 20; i++)); do
    grep -qxF "$line" "$log" 2>/dev/null && break
    sleep 0.1
  done
  if [ "$reply" = "HELLO-FROM-UP $dst" ] && grep -qxF "$line" "$log"; then
    pass "TCP/80 $src -> $dst exchanged a line each way"
  else
    fail "TCP/80 $src -> $dst: got reply '$reply'; server saw the line: $(grep -cxF "$line" "$log" 2>/dev/null)"
  fi
}

echo "--- IPv4"
expect_mail_blocked -4 "$NETLAB_SUB_V4_DYN" "$NETLAB_MX_V4" 25
expect_mail_ok -4 "$NETLAB_SUB_V4_DYN" "$NETLAB_RELAY_V4" 25
expect_mail_ok -4 "$NETLAB_SUB_V4_DYN" "$NETLAB_MX_V4" 587
expect_mail_ok -4 "$NETLAB_SUB_V4_STATIC" "$NETLAB_MX_V4" 25
echo "--- IPv6"
expect_mail_blocked -6 "$NETLAB_SUB_V6_DYN" "$NETLAB_MX_V6" 25
expect_mail_ok -6 "$NETLAB_SUB_V6_DYN" "$NETLAB_RELAY_V6" 25
expect_mail_ok -6 "$NETLAB_SUB_V6_DYN" "$NETLAB_MX_V6" 587
expect_mail_ok -6 "$NETLAB_SUB_V6_STATIC" "$NETLAB_MX_V6" 25
echo "--- other traffic"
expect_tcp80 "$NETLAB_SUB_V4_DYN" "$NETLAB_MX_V4"
expect_tcp80 "$NETLAB_SUB_V6_DYN" "$NETLAB_MX_V6"
expect_ping -4 "$NETLAB_SUB_V4_DYN" "$NETLAB_MX_V4"
expect_ping -6 "$NETLAB_SUB_V6_DYN" "$NETLAB_MX_V6"

echo "--- gateway"
sleep 0.3
kill -INT "$capture_pid" 2>/dev/null
wait "$capture_pid" 2>/dev/null
count_sub() { tcpdump -r "$TMP/sub.pcap" -n "$@" 2>/dev/null | wc -l; }
rst4="$(count_sub "src host $NETLAB_MX_V4 and tcp src port 25 and dst host $NETLAB_SUB_V4_DYN and tcp[tcpflags] & tcp-rst != 0")"
# IPv6: TCP flags at ip6[40+13] (the reset carries no extension headers).
rst6="$(count_sub "ip6 and src host $NETLAB_MX_V6 and tcp src port 25 and dst host $NETLAB_SUB_V6_DYN and ip6[6] == 6 and ip6[53] & 0x04 != 0")"
if [ "$bridge" = 1 ]; then
  skip "TCP RST seen in sub (bridge mode; saw $rst4 IPv4 and $rst6 IPv6 resets)"
else
  if [ "$rst4" -gt 0 ]; then pass "sub saw $rst4 TCP RST $NETLAB_MX_V4.25 -> $NETLAB_SUB_V4_DYN"
  else fail "sub saw no TCP RST $NETLAB_MX_V4.25 -> $NETLAB_SUB_V4_DYN"; fi
  if [ "$rst6" -gt 0 ]; then pass "sub saw $rst6 TCP RST [$NETLAB_MX_V6].25 -> $NETLAB_SUB_V6_DYN"
  else fail "sub saw no TCP RST [$NETLAB_MX_V6].25 -> $NETLAB_SUB_V6_DYN"; fi
fi

if [ -n "$daemon_pid" ]; then
  kill -TERM "$daemon_pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$daemon_pid" 2>/dev/null; then
    fail "sekishod still running 10 s after SIGTERM"
    kill -KILL "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
  else
    wait "$daemon_pid"
    rc=$?
    if [ "$rc" = 0 ]; then pass "sekishod exited 0 after SIGTERM"
    else fail "sekishod exited with status $rc after SIGTERM"; fi
  fi
  if [ -s "$TMP/summary.json" ] && out="$(check_summary "$TMP/summary.json" 2>&1)"; then
    pass "summary.json: $out"
  else
    fail "summary.json check: ${out:-missing or empty $TMP/summary.json}"
  fi
  [ -f "$TMP/events.jsonl" ] && echo "info: events.jsonl has $(wc -l <"$TMP/events.jsonl") lines"
else
  skip "sekishod exit status and summary.json (bridge mode)"
fi

echo "op25b_e2e: $passed passed, $failed failed"
if [ "$failed" -gt 0 ]; then
  show_logs
  exit 1
fi
exit 0
