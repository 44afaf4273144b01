#!/usr/bin/env bash
# control_plane_e2e.sh - policy changes on a live sekishod, as an adversarial operator would try
# them, with real clients (swaks, radclient, sekishoctl):
#   1. a change that fails changes nothing: a binding too wide to bind (API and SIGHUP), and a
#      binding table that fills up at the swap itself; OP25B keeps enforcing throughout;
#   2. keys read only at start are refused (restart_required), naming them;
#   3. a rule compile of several seconds does not stall the control thread: status and a RADIUS
#      Interim are answered meanwhile, a second apply waits its turn;
#   4. a policy of 1M subscriber prefixes checks and applies by SIGHUP, the API served meanwhile;
#   5. event queries over a 64 MiB log run beside status and RADIUS, in bounded memory.
#
# Usage (root):  tests/e2e/control_plane_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

ctl="${2:-}"
e2e_begin control_plane_e2e "${1:-}" swaks radclient /usr/sbin/smtp-sink /usr/bin/python3
[ -x "$ctl" ] || { echo "control_plane_e2e: sekishoctl not executable: '$ctl'" >&2; exit 1; }
ctl="$(realpath "$ctl")"
sock="$TMP/api.sock"

secret="cp-$RANDOM-$RANDOM-secret"
cat >"$TMP/radius-clients.yaml" <<EOF
clients:
  - address: 127.0.0.1
    secret: "$secret"
EOF
base_policy() { # MODE
  e2e_lab_policy
  cat <<EOF
op25b:
  mode: $1
  action: reset
radius:
  listen: 127.0.0.1:1813
  clients_file: $TMP/radius-clients.yaml
history:
  database: $TMP/bindings.sqlite
events:
  aggregate_window: 0s
tracking:
  max_bindings: 64
EOF
}
base_policy enforce >"$TMP/policy.yaml"
cp "$TMP/policy.yaml" "$TMP/enforce.yaml"

# A 64 MiB event log from an earlier run, for the queries of section 5.
/usr/bin/python3 - "$TMP/events.jsonl" <<'PY'
import json, sys
line = {"time_ns": 1700000000000000000, "type": "op25b_block", "reason": "dynamic_source",
        "action": "reset", "ingress": "access", "src": "198.51.100.77", "dst": "203.0.113.25",
        "src_port": 40000, "dst_port": 25, "tcp_flags": 2, "generation": 1, "worker": 0, "count": 1}
with open(sys.argv[1], "w") as f:
    n = 0
    while f.tell() < 64 << 20:
        line["time_ns"] += 1000000
        line["src_port"] = 1024 + n % 60000
        f.write(json.dumps(line, separators=(",", ":")) + "\n")
        n += 1
PY

netlab_up --gateway || abort "lab setup failed"
netlab_start_sinks || abort "sinks"
e2e_start_sekishod "$NETLAB_LOGDIR/sekishod.log" --policy "$TMP/policy.yaml" --events "$TMP/events.jsonl" \
  --api-socket "$sock"

port25_blocked() {
  ! timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 25 --timeout 5 \
    --from a@example.jp --to b@example.net >/dev/null 2>&1
}
generation() { timeout 10 "$ctl" --socket "$sock" status --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])'; }
mode() { timeout 10 "$ctl" --socket "$sock" status --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["policy"]["op25b_mode"])'; }
bindings_total() { timeout 10 "$ctl" --socket "$sock" bindings list --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'; }
ms_now() { echo $(($(date +%s%N) / 1000000)); }
# The slowest of the answers to status and to a RADIUS Interim while PID runs (ms), and how many
# rounds were taken: "MAX_STATUS MAX_RADIUS ROUNDS".
latencies_while() { # PID
  local max_s=0 max_r=0 rounds=0 t d
  while kill -0 "$1" 2>/dev/null; do
    t=$(ms_now)
    timeout 10 "$ctl" --socket "$sock" status >/dev/null 2>&1 || max_s=99999
    d=$(($(ms_now) - t)); [ "$d" -gt "$max_s" ] && max_s=$d
    t=$(ms_now)
    echo "Acct-Status-Type = Interim-Update, User-Name = \"ivy@example.jp\", Acct-Session-Id = \"i1\", Framed-IP-Address = 198.51.100.40, NAS-IP-Address = 192.0.2.1" |
      timeout 10 ip netns exec "$NETLAB_NS_GW" radclient -r 1 -t 5 -s 127.0.0.1:1813 acct "$secret" >/dev/null 2>&1 || max_r=99999
    d=$(($(ms_now) - t)); [ "$d" -gt "$max_r" ] && max_r=$d
    rounds=$((rounds + 1))
  done
  echo "$max_s $max_r $rounds"
}

port25_blocked && pass "generation 1 enforces OP25B" || fail "port 25 not blocked at start"

# --- 1. a change that fails changes nothing ----------------------------------------------------
sed 's/mode: enforce/mode: monitor/' "$TMP/enforce.yaml" >"$TMP/monitor.yaml"
{ sed 's/^subscribers:$/subscribers:\n  bindings: [{prefix: 198.50.0.0\/15, account: wide@example.jp}]/' "$TMP/monitor.yaml"; } >"$TMP/too-wide.yaml"
grep -q "198.50.0.0/15" "$TMP/too-wide.yaml" || abort "too-wide.yaml not built"
ctl_expect 4 "apply: monitor + a binding too wide to bind" policy apply "$TMP/too-wide.yaml"
contains "the error names the binding with file:line" "$TMP/too-wide.yaml:6: subscribers.bindings[0].prefix: 198.50.0.0/15 is too wide to bind"
[ "$(generation)" = 1 ] && [ "$(mode)" = enforce ] && pass "status: generation 1, enforce" || fail "status changed: $(generation) $(mode)"
port25_blocked && pass "port 25 still blocked after the refused apply" || fail "the refused apply changed enforcement"
cp "$TMP/too-wide.yaml" "$TMP/policy.yaml"
kill -HUP "$daemon_pid"
for _ in $(seq 1 50); do grep -q '"endpoint":"policy_reload"' "$TMP/events.jsonl" && break; sleep 0.1; done
grep '"endpoint":"policy_reload"' "$TMP/events.jsonl" | tail -n 1 | grep -q '"status":422' &&
  pass "SIGHUP with the same file: refused (422 in the audit trail)" || fail "SIGHUP reload not refused"
[ "$(generation)" = 1 ] && [ "$(mode)" = enforce ] && pass "status after SIGHUP: generation 1, enforce" || fail "SIGHUP changed the policy"
port25_blocked && pass "port 25 still blocked after the refused reload" || fail "the refused reload changed enforcement"
if grep -q '"type":"op25b_monitor"' "$TMP/events.jsonl"; then fail "op25b_monitor events after refused changes"; else
  pass "no op25b_monitor event: no packet was judged by a refused policy"; fi

# The binding table (tracking.max_bindings 64) fills up at the swap itself: 48 entries bound through
# the API, the policy's static /27 needs 32 more.
ctl_expect 0 "bindings add a /27 (32 entries)" bindings add 198.51.100.64/27 fill@example.jp
ctl_expect 0 "bindings add a /28 (16 entries)" bindings add 198.51.100.96/28 fill@example.jp
# An API binding the table cannot hold: refused, the table and the operator state as before.
ctl_expect 4 "bindings add a /27 the table cannot hold" bindings add 198.51.100.192/27 over@example.jp
contains "the error says the table is full" "subscriber table full"
[ "$(bindings_total)" = 48 ] && pass "the table is as before (48)" || fail "bindings after the refused add: $(bindings_total)"
stored=$(/usr/bin/python3 -c 'import sqlite3,sys; print(" ".join(r[0] for r in sqlite3.connect(sys.argv[1]).execute("SELECT prefix FROM api_bindings ORDER BY prefix")))' "$TMP/state/operator.db")
[ "$stored" = "198.51.100.64/27 198.51.100.96/28" ] && pass "operator.db holds only the bindings in force" ||
  fail "operator.db api_bindings: $stored"
sed 's/^subscribers:$/subscribers:\n  bindings: [{prefix: 198.51.100.160\/27, account: shop@example.jp}]/' "$TMP/monitor.yaml" >"$TMP/fills.yaml"
ctl_expect 1 "apply: monitor + a static /27 the table cannot hold" policy apply "$TMP/fills.yaml"
contains "the error says the table is full" "subscriber table full"
[ "$(generation)" = 1 ] && [ "$(mode)" = enforce ] && pass "status: generation 1, enforce" || fail "status changed: $(generation) $(mode)"
[ "$(bindings_total)" = 48 ] && pass "the binding table is as before (48): the staged bindings were undone" ||
  fail "bindings after the failed swap: $(bindings_total)"
port25_blocked && pass "port 25 still blocked after the failed swap" || fail "the failed swap changed enforcement"
ctl_expect 0 "bindings del the /28" bindings del 198.51.100.96/28
ctl_expect 0 "the same apply with room in the table" policy apply "$TMP/fills.yaml"
contains "applied as generation 2" "generation 2"
[ "$(bindings_total)" = 64 ] && pass "32 + 32 bindings" || fail "bindings: $(bindings_total)"
if timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 25 --timeout 5 \
  --from a@example.jp --to b@example.net >/dev/null 2>&1; then pass "monitor: port 25 delivers"; else fail "monitor not in force"; fi
sleep 0.3
grep '"type":"op25b_monitor"' "$TMP/events.jsonl" | grep -q '"generation":2' &&
  pass "op25b_monitor events carry generation 2" || fail "no op25b_monitor event of generation 2"
ctl_expect 0 "back to enforce" policy apply "$TMP/enforce.yaml"
contains "generation 3" "generation 3"
[ "$(bindings_total)" = 32 ] && pass "the static /27 left with the policy that named it" || fail "bindings: $(bindings_total)"
ctl_expect 0 "bindings del the /27" bindings del 198.51.100.64/27
port25_blocked && pass "enforce again" || fail "port 25 not blocked at generation 3"

# --- 2. keys read only at start ------------------------------------------------------------------
sed 's/max_bindings: 64/max_bindings: 128/' "$TMP/enforce.yaml" >"$TMP/restart.yaml"
ctl_expect 4 "apply: tracking.max_bindings changed" policy apply "$TMP/restart.yaml"
contains "named, with the values" "tracking.max_bindings: read at start only; running 64, this policy 128"
ctl_expect 4 "dry run says the same" policy apply "$TMP/restart.yaml" --dry-run
[ "$(generation)" = 3 ] && pass "generation stays 3" || fail "generation $(generation)"
ctl_expect 0 "policy show" policy show --json
echo "$out" | grep -q 'max_bindings: 64' && pass "policy show still shows the value in force" || fail "policy show shows another value"
# Paths: keys read at start, so a changed one is refused before the file it names is opened on an
# API caller's behalf; --check-policy (the operator's own check) reads them and quotes none of them.
sed 's|^events:$|events:\n  file: /etc/passwd|' "$TMP/enforce.yaml" >"$TMP/passwd.yaml"
sed "s|clients_file: .*|clients_file: /etc/shadow|" "$TMP/enforce.yaml" >"$TMP/shadow.yaml"
sed "s|database: .*|database: /dev/null|" "$TMP/enforce.yaml" >"$TMP/devnull.yaml"
for f in passwd:events.file shadow:radius.clients_file devnull:history.database; do
  ctl_expect 4 "apply: ${f#*:} changed to another file" policy apply "$TMP/${f%%:*}.yaml"
  contains "refused as read at start only" "${f#*:}: read at start only"
done
out="$("$SEKISHOD" --check-policy "$TMP/shadow.yaml" 2>&1)"
echo "$out" | grep -q "a key that is not a word: unknown key" && ! echo "$out" | grep -q 'root:' &&
  pass "--check-policy refuses /etc/shadow as a clients file without quoting it" || fail "check of /etc/shadow: $out"
[ "$(generation)" = 3 ] && pass "generation stays 3" || fail "generation $(generation)"
ctl_expect 0 "policy show" policy show --json
echo "$out" | grep -q '/etc/passwd\|/etc/shadow\|/dev/null' && fail "policy show shows a refused path" || pass "policy show shows none of the refused paths"

# --- 3. a long rule compile beside RADIUS and the API ------------------------------------------
{
  cat "$TMP/enforce.yaml"
  printf 'inspection:\n  compile_timeout: 120s\n  rules:\n'
  for i in $(seq 0 29); do
    printf '    - {id: heavy-%d, pattern: "[a-m]{%d,90}%s[^z]{%d,70}[0-9]{2,40}x", score: 1}\n' \
      "$i" $((5 + i % 17)) "$(printf "\\x$(printf %x $((97 + i % 26)))")" $((3 + i % 11))
  done
} >"$TMP/heavy.yaml"
{ cat "$TMP/enforce.yaml"; printf 'inspection:\n  rules:\n    - {id: light, pattern: "blackword", score: 1}\n'; } >"$TMP/light.yaml"
t0=$(ms_now)
timeout 300 "$ctl" --socket "$sock" policy apply "$TMP/heavy.yaml" >"$TMP/heavy.out" 2>&1 &
heavy_pid=$!
NETLAB_PIDS+=("$heavy_pid")
sleep 0.2
timeout 300 "$ctl" --socket "$sock" policy apply "$TMP/light.yaml" >"$TMP/light.out" 2>&1 &
light_pid=$!
NETLAB_PIDS+=("$light_pid")
read -r max_status max_radius rounds < <(latencies_while "$heavy_pid")
wait "$heavy_pid"; heavy_rc=$?
compile_ms=$(($(ms_now) - t0))
wait "$light_pid"; light_rc=$?
echo "control_plane_e2e: heavy apply ${compile_ms} ms; meanwhile $rounds rounds, slowest status ${max_status} ms, slowest RADIUS Interim ${max_radius} ms"
[ "$heavy_rc" = 0 ] && grep -q "generation 4" "$TMP/heavy.out" && pass "the heavy rule set applied as generation 4" ||
  fail "heavy apply: rc $heavy_rc $(cat "$TMP/heavy.out")"
[ "$light_rc" = 0 ] && grep -q "generation 5" "$TMP/light.out" && pass "the apply sent meanwhile waited its turn: generation 5" ||
  fail "light apply: rc $light_rc $(cat "$TMP/light.out")"
[ "$rounds" -ge 3 ] && pass "$rounds rounds of status + RADIUS during the compile" || fail "only $rounds rounds: the compile was too short to test"
[ "$max_status" -lt 1000 ] && pass "status answered within 1 s during the compile (${max_status} ms)" || fail "status stalled ${max_status} ms"
[ "$max_radius" -lt 1000 ] && pass "RADIUS answered within 1 s during the compile (${max_radius} ms)" || fail "RADIUS stalled ${max_radius} ms"

# --- 4. 1M subscriber prefixes -------------------------------------------------------------------
/usr/bin/python3 - "$TMP/enforce.yaml" "$TMP/million.yaml" <<'PY'
import sys
# 2^20 host prefixes in RFC 6598 shared address space (where ISPs number CGN subscribers).
text = open(sys.argv[1]).read()
flow = '  dynamic: [198.51.100.0/24, "2001:db8:100::/40"]\n'
assert flow in text, "expected the lab policy's dynamic list"
block = '  dynamic:\n    - 198.51.100.0/24\n    - "2001:db8:100::/40"\n' + "".join(
    "    - 100.%d.%d.%d/32\n" % (64 + (i >> 16), (i >> 8) & 255, i & 255) for i in range(1 << 20))
open(sys.argv[2], "w").write(text.replace(flow, block))
PY
t=$(ms_now)
if "$SEKISHOD" --check-policy "$TMP/million.yaml" >"$TMP/check.out" 2>&1 && grep -q "1048578 dynamic" "$TMP/check.out"; then
  pass "--check-policy of 1048578 prefixes in $(($(ms_now) - t)) ms"; else fail "check: $(tail -n 3 "$TMP/check.out")"; fi
cp "$TMP/million.yaml" "$TMP/policy.yaml"
t0=$(ms_now)
kill -HUP "$daemon_pid"
(for _ in $(seq 1 600); do [ "$(generation)" = 6 ] && exit 0; sleep 0.1; done; exit 1) &
wait_pid=$!
read -r max_status max_radius rounds < <(latencies_while "$wait_pid")
wait "$wait_pid" && pass "1M prefixes applied by SIGHUP as generation 6 in $(($(ms_now) - t0)) ms" || fail "1M-prefix reload did not apply"
echo "control_plane_e2e: during the 1M-prefix reload: $rounds rounds, slowest status ${max_status} ms, slowest RADIUS ${max_radius} ms"
[ "$max_status" -lt 1000 ] && [ "$max_radius" -lt 1000 ] && pass "status and RADIUS answered within 1 s during it" ||
  fail "the 1M-prefix reload stalled the control thread (status ${max_status} ms, RADIUS ${max_radius} ms)"
port25_blocked && pass "OP25B enforced under the 1M-prefix policy" || fail "port 25 not blocked at generation 6"
cp "$TMP/enforce.yaml" "$TMP/policy.yaml"
ctl_expect 0 "back to the small policy" policy apply "$TMP/enforce.yaml"
contains "a million prefixes removed, counted" "(1048576 removed in all)"

# --- 5. event queries over a 64 MiB log ----------------------------------------------------------
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$daemon_pid/status"; }
rss0=$(rss)
timeout 60 "$ctl" --socket "$sock" events tail -n 20 --type op25b_block --json >"$TMP/query.out" 2>&1 &
query_pid=$!
NETLAB_PIDS+=("$query_pid")
rss_max=$rss0
read -r max_status max_radius rounds < <(latencies_while "$query_pid")
wait "$query_pid" && [ "$(wc -l <"$TMP/query.out")" = 20 ] && pass "events tail over 64 MiB: 20 lines" ||
  fail "events query: $(head -c 300 "$TMP/query.out")"
rss1=$(rss)
echo "control_plane_e2e: events query: $rounds rounds, slowest status ${max_status} ms, RADIUS ${max_radius} ms; RSS ${rss0} -> ${rss1} kB"
[ "$max_status" -lt 1000 ] && [ "$max_radius" -lt 1000 ] && pass "status and RADIUS answered within 1 s during the query" ||
  fail "the query stalled the control thread (status ${max_status} ms, RADIUS ${max_radius} ms)"
[ $((rss1 - rss0)) -lt 65536 ] && pass "the query kept its memory bounded (+$((rss1 - rss0)) kB)" ||
  fail "the query grew the daemon by $((rss1 - rss0)) kB"
ctl_expect 0 "report over the same log" report --format json
contains "the old log's source is in the report" "198.51.100.77"

e2e_stop_sekishod && pass "sekishod exited 0" || fail "sekishod exit status $?"
e2e_end
