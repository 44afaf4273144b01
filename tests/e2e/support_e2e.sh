#!/usr/bin/env bash
# support_e2e.sh - the support desk's tools against a live sekishod, with real clients:
#   - limits: alice@example.jp (198.51.100.7) trips a 3-messages-per-hour account limit with
#     smtp-source (the 4th message gets 421); `sekishoctl limits show` shows it tripped with its
#     count, maximum and cool-down; a session in the cool-down is still refused; `limits reset`
#     clears it (audited in the event log) and the next session is delivered; bad requests
#     (unknown limit, unknown account, a prefix) are refused with their exit codes.
#   - monitor mode counts connections: with op25b.mode monitor one swaks session to port 25 is
#     one aggregated op25b_monitor event with connections=1 (and a count of every segment), and
#     a monitor-action recipients limit hit twice in one session is connections=1; the
#     summary's monitored_connections (OP25B) and smtp.monitored_connections (limits) are 1.
#   - readable output: status names the version and build and each port's interface; the
#     startup line names the API socket; `account list --suspended` says none; a start that
#     fails (TLS certificate missing after the API socket was created, metrics port taken)
#     exits 1 naming the cause and leaves no socket behind.
#
# Usage (root):  tests/e2e/support_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl SOURCE_ROOT [WORKERS]
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

ctl="${2:-}"
root="${3:-$here/../..}"
workers="${4:-1}"
e2e_begin support_e2e "${1:-}" swaks /usr/sbin/smtp-sink /usr/sbin/smtp-source /usr/bin/python3
[ -x "$ctl" ] || { echo "support_e2e: sekishoctl not executable: '$ctl'" >&2; exit 1; }
ctl="$(realpath "$ctl")"
root="$(realpath "$root")"
sock="$TMP/api.sock"

e2e_lab_policy | sed '/^relays:/i\  bindings:\n    - {prefix: 198.51.100.7, account: alice@example.jp}' >"$TMP/policy.yaml"
cat >>"$TMP/policy.yaml" <<'EOF'
op25b:
  mode: enforce
  action: reset
limits:
  - {name: msgs-per-account, scope: account, measure: messages, max: 3, window: 1h, action: tempfail,
     cooldown: 10m}
  - {name: msgs-per-address, scope: address, measure: messages, max: 100, window: 1h, action: tempfail}
events:
  aggregate_window: 0s   # the test reads the audit trail while the daemon runs
EOF

netlab_up --gateway || abort "lab setup failed"
mkdir -p "$TMP/mx" && chmod 777 "$TMP/mx"   # smtp-sink writes as nobody
netlab_spawn up "$NETLAB_LOGDIR/sink-mx.log" /usr/sbin/smtp-sink -u nobody -d "$TMP/mx/%M%S." \
  "$NETLAB_MX_V4:587" 64 || abort "smtp-sink"
netlab_wait_listen up "$NETLAB_MX_V4" 587 5 || abort "MX sink not listening"

e2e_start_sekishod "$NETLAB_LOGDIR/sekishod.log" --policy "$TMP/policy.yaml" --workers "$workers" \
  --events "$TMP/events.jsonl" --api-socket "$sock"

# --- Readable output: status, the startup line, an empty suspended list.
ctl_expect 0 "status" status
contains "status: the daemon's version and build" "sekishod $("$SEKISHOD" --version | awk '{print $2}') (build "
contains "status: the access port's interface" "(interface acc0, access)"
contains "status: the core port's interface" "(interface core0, core)"
ctl_expect 0 "status --json" --json status
if echo "$out" | /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["interfaces"]=={"access":"acc0","core":"core0"} and j["version"] and j["build"], j' 2>/dev/null; then
  pass "status JSON: interfaces acc0/core0, version, build"
else fail "status JSON: $out"; fi
if grep -q "sekishod: listening: API socket $sock" "$NETLAB_LOGDIR/sekishod.log"; then
  pass "the startup line names the API socket: $(grep -m1 'listening:' "$NETLAB_LOGDIR/sekishod.log")"
else fail "no startup line naming the API socket"; grep sekishod: "$NETLAB_LOGDIR/sekishod.log" | head -n 5 | sed 's/^/    /'; fi
ctl_expect 0 "account list --suspended with none suspended" account list --suspended
if [ "$out" = "none suspended" ]; then pass "account list --suspended says: none suspended"; else fail "account list --suspended: '$out'"; fi

delivered() { find "$TMP/mx" -type f | wc -l; }
# send COUNT LOG: COUNT messages from 198.51.100.7 (the lab's subscriber address), one session each.
send() {
  timeout 60 ip netns exec "$NETLAB_NS_SUB" /usr/sbin/smtp-source -m "$1" -s 1 -l 256 \
    -f alice@example.jp -t rcpt@example.net "$NETLAB_MX_V4:587" >"$2" 2>&1
}
# limit_field JSON LIMIT FIELD: one field of one limit of a limits show/reset reply. The field
# "total" is count_total where the subscriber's connections went to several workers (each then
# holds a record: net_af_packet spreads by connection), else count.
limit_field() {
  /usr/bin/python3 -c 'import json,sys
j = json.loads(sys.argv[1]); l = next(l for l in j["limits"] if l["limit"] == sys.argv[2])
print(json.dumps(l.get("count_total", l["count"]) if sys.argv[3] == "total" else l[sys.argv[3]]))' "$1" "$2" "$3" 2>/dev/null
}

# --- Limits: trip, show, reset.
send 4 "$TMP/trip.log"
if [ "$(delivered)" = 3 ] && grep -q 421 "$TMP/trip.log"; then
  pass "alice: 3 of 4 delivered, the 4th got 421 (limit msgs-per-account tripped)"
else fail "alice: $(delivered) delivered"; tail -n 3 "$TMP/trip.log" | sed 's/^/    /'; fi

ctl_expect 0 "limits show 198.51.100.7" limits show 198.51.100.7
contains "limits show names the subscriber and account" "198.51.100.7 (account alice@example.jp)"
contains "limits show: msgs-per-account at 3/3" "3/3"
contains "limits show: TRIPPED" "TRIPPED"
contains "limits show: the cool-down's end" "until 20"
ctl_expect 0 "limits show --json" --json limits show 198.51.100.7
j="$out"
if [ "$(limit_field "$j" msgs-per-account count)" = 3 ] && [ "$(limit_field "$j" msgs-per-account max)" = 3 ] &&
   [ "$(limit_field "$j" msgs-per-account tripped)" = true ] &&
   /usr/bin/python3 -c 'import sys; c=float(sys.argv[1]); assert 590 < c <= 600, c' "$(limit_field "$j" msgs-per-account cooldown_s)"; then
  pass "msgs-per-account: count 3, max 3, tripped, cool-down ~600 s"
else fail "msgs-per-account reading: $j"; fi
if [ "$(limit_field "$j" msgs-per-address total)" = 4 ] && [ "$(limit_field "$j" msgs-per-address tripped)" = false ] &&
   [ "$(limit_field "$j" msgs-per-address tracked)" = true ]; then
  pass "msgs-per-address (the worker's own record): count 4 of 100, not tripped"
else fail "msgs-per-address reading: $j"; fi
ctl_expect 0 "limits show alice@example.jp (account scope)" --json limits show alice@example.jp
if [ "$(limit_field "$out" msgs-per-account count)" = 3 ] && [ -z "$(limit_field "$out" msgs-per-address count)" ]; then
  pass "by account: the account-scope limit only, count 3"
else fail "by account: $out"; fi

send 1 "$TMP/cooling.log"
if [ "$(delivered)" = 3 ] && grep -q 421 "$TMP/cooling.log"; then pass "in the cool-down: refused with 421"; else
  fail "in the cool-down: $(delivered) delivered"; fi

ctl_expect 3 "limits reset with an unknown limit: not found" limits reset 198.51.100.7 --limit no-such-limit
contains "the error names the policy's limits" "msgs-per-account"
ctl_expect 3 "limits show of an unknown account: not found" limits show nobody@example.jp
ctl_expect 4 "limits show of a prefix: refused" limits show 198.51.100.0/24
ctl_expect 4 "limits reset by account of a per-address limit: refused" limits reset alice@example.jp --limit msgs-per-address

ctl_expect 0 "limits reset 198.51.100.7 --limit msgs-per-account" limits reset 198.51.100.7 --limit msgs-per-account
contains "reset names the limit" "msgs-per-account"
contains "reset shows the count before" "3/3"
send 1 "$TMP/after-reset.log"
if [ "$(delivered)" = 4 ]; then pass "after the reset the next session is delivered"; else
  fail "after the reset: $(delivered) delivered"; tail -n 3 "$TMP/after-reset.log" | sed 's/^/    /'; fi
ctl_expect 0 "limits show after the reset" --json limits show 198.51.100.7
if [ "$(limit_field "$out" msgs-per-account count)" = 1 ] && [ "$(limit_field "$out" msgs-per-account tripped)" = false ] &&
   [ "$(limit_field "$out" msgs-per-address total)" = 6 ]; then
  pass "after the reset: msgs-per-account 1 of 3; msgs-per-address (not reset) 6"
else fail "after the reset: $out"; fi
sleep 0.3
if grep '"type":"api_change"' "$TMP/events.jsonl" | grep '"endpoint":"limits_reset"' | grep '"status":200' |
   grep '"limit":"msgs-per-account"' | grep -q '"address":"198.51.100.7/32"'; then
  pass "the reset is audited: api_change limits_reset, address, limit, caller"
else fail "no audit record of the reset"; grep api_change "$TMP/events.jsonl" | tail -n 3 | sed 's/^/    /'; fi
ctl_expect 0 "limits reset by account (every account-scope limit)" limits reset alice@example.jp
contains "reset by account" "reset for account alice@example.jp: msgs-per-account"

if e2e_stop_sekishod; then pass "sekishod exited 0"; else fail "sekishod exit status $?"; fi

# --- Monitor mode: how many connections would have been blocked, not only how many segments.
e2e_lab_policy | sed '/^relays:/i\  bindings:\n    - {prefix: 198.51.100.7, account: alice@example.jp}' >"$TMP/monitor.yaml"
cat >>"$TMP/monitor.yaml" <<'EOF'
op25b:
  mode: monitor
  action: reset
limits:
  - {name: rcpts-monitor, scope: account, measure: recipients, max: 1, window: 1h, action: monitor}
events:
  aggregate_window: 30s   # one session's events merge into one line per key
EOF
netlab_spawn up "$NETLAB_LOGDIR/sink-25.log" /usr/sbin/smtp-sink -u nobody "$NETLAB_MX_V4:25" 64 || abort "smtp-sink 25"
netlab_wait_listen up "$NETLAB_MX_V4" 25 5 || abort "port 25 sink not listening"
e2e_start_sekishod "$NETLAB_LOGDIR/sekishod-monitor.log" --policy "$TMP/monitor.yaml" --workers "$workers" \
  --events "$TMP/monitor.jsonl" --summary "$TMP/monitor-summary.json"
timeout 30 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 25 --timeout 10 \
  --from alice@example.jp --to b@example.net >"$TMP/swaks-25.log" 2>&1
if grep -q "<-  *250" "$TMP/swaks-25.log" && grep -q "221" "$TMP/swaks-25.log"; then
  pass "monitor mode: the port 25 session went through"
else fail "monitor mode: swaks to port 25"; tail -n 5 "$TMP/swaks-25.log" | sed 's/^/    /'; fi
timeout 30 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 587 --timeout 10 \
  --from alice@example.jp --to r1@example.net,r2@example.net,r3@example.net >"$TMP/swaks-587.log" 2>&1
if grep -q "221" "$TMP/swaks-587.log"; then pass "monitor limit: the 3-recipient session went through"; else
  fail "monitor limit: swaks to 587"; tail -n 5 "$TMP/swaks-587.log" | sed 's/^/    /'; fi
if e2e_stop_sekishod; then pass "sekishod (monitor) exited 0"; else fail "sekishod (monitor) exit status $?"; fi
/usr/bin/python3 - "$TMP/monitor.jsonl" "$TMP/monitor-summary.json" <<'EOF' && pass "monitor: connections=1 per session in the events and the summary" || fail "monitor connection counts"
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
summary = json.load(open(sys.argv[2]))
op25b = [e for e in events if e["type"] == "op25b_monitor" and e["src"] == "198.51.100.7"]
segments = sum(e["count"] for e in op25b)
connections = sum(e["connections"] for e in op25b)
assert connections == 1 and segments > 1, op25b
hits = [e for e in events if e["type"] == "limit_exceeded" and e["limit"] == "rcpts-monitor"]
assert sum(e["count"] for e in hits) == 2 and sum(e["connections"] for e in hits) == 1, hits
assert summary["monitored_connections"] == 1, summary
assert summary["smtp"]["monitored_connections"] == 1, summary["smtp"]
print(f"op25b_monitor: count={segments} connections={connections}; rcpts-monitor: count=2 connections=1")
EOF

# --- A start that fails leaves no socket behind and says why.
# start_fails NAME ARGS...: sekishod in the gateway namespace with ARGS must exit 1 within 30 s.
start_fails() {
  local name="$1"
  shift
  timeout 30 ip netns exec "$NETLAB_NS_GW" "$SEKISHOD" --access-if acc0 --core-if core0 --state-dir "$TMP/state" \
    --policy "$TMP/policy.yaml" --events "$TMP/fail.jsonl" "$@" >"$TMP/$name.log" 2>&1
}
start_fails tls-missing --api-socket "$TMP/fail.sock" --api-tcp 127.0.0.1:8443 --api-cert "$TMP/missing.crt" \
  --api-key "$TMP/missing.key" --api-token-file "$TMP/missing.token"
rc=$?
if [ "$rc" = 1 ] && grep -q "missing.crt" "$TMP/tls-missing.log"; then
  pass "a missing TLS certificate: exit 1, $(grep -m1 missing.crt "$TMP/tls-missing.log" | cut -c1-100)"
else fail "missing TLS certificate: exit $rc"; sed 's/^/    /' "$TMP/tls-missing.log" | tail -n 3; fi
if [ ! -e "$TMP/fail.sock" ]; then pass "the API socket it had created is gone"; else fail "the failed start left $TMP/fail.sock"; fi
netlab_spawn gw "$NETLAB_LOGDIR/port-taker.log" /usr/bin/python3 -c \
  'import socket,time; s=socket.socket(); s.bind(("127.0.0.1", 9309)); s.listen(); time.sleep(120)'
for ((i = 0; i < 50; i++)); do netlab_exec_gw ss -ltn | grep -q ':9309 ' && break; sleep 0.1; done
rm -f "$TMP/fail.sock"   # whatever the first case left, this one is judged on its own
start_fails metrics-taken --api-socket "$TMP/fail.sock" --metrics 127.0.0.1:9309
rc=$?
if [ "$rc" = 1 ] && grep -q "metrics: cannot listen on 127.0.0.1:9309" "$TMP/metrics-taken.log"; then
  pass "the metrics port taken: exit 1, $(grep -m1 'metrics:' "$TMP/metrics-taken.log" | cut -c1-100)"
else fail "metrics port taken: exit $rc"; sed 's/^/    /' "$TMP/metrics-taken.log" | tail -n 3; fi
if [ ! -e "$TMP/fail.sock" ]; then pass "no API socket left behind"; else fail "the failed start left $TMP/fail.sock"; fi

e2e_end
