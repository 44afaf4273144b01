#!/usr/bin/env bash
# cli_e2e.sh - every sekishoctl command against a live sekishod (control API on a Unix socket
# and over TLS with a bearer token), with bad input for each, unauthorised clients on both
# transports, and 100 policy applies in a row under continuous traffic without a lost packet.
#
# Usage (root):  tests/e2e/cli_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl SOURCE_ROOT
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

ctl="${2:-}"
root="${3:-$here/../..}"
e2e_begin cli_e2e "${1:-}" swaks openssl setpriv /usr/bin/python3
[ -x "$ctl" ] || { echo "cli_e2e: sekishoctl not executable: '$ctl'" >&2; exit 1; }
sekishod="$SEKISHOD"
ctl="$(realpath "$ctl")"
root="$(realpath "$root")"

sock="$TMP/api.sock"
# ctl_expect and contains (e2e_common.sh) run sekishoctl on $sock.

# TLS material and token for the TCP listener.
openssl req -x509 -newkey rsa:2048 -nodes -subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1" \
  -keyout "$TMP/api.key" -out "$TMP/api.crt" -days 1 >/dev/null 2>&1 || abort "openssl"
printf 'token-%s-%s-%s\n' "$RANDOM" "$RANDOM" "$RANDOM" >"$TMP/token"
printf 'wrong-token-0123456789\n' >"$TMP/wrong-token"

cp "$root/configs/op25b-enforce.yaml" "$TMP/policy.yaml"
cat >>"$TMP/policy.yaml" <<'EOF'
limits:
  - {name: msgs, scope: account, measure: messages, max: 100, window: 1h}
events:
  aggregate_window: 0s   # the test reads events while the daemon runs
EOF
sed 's/mode: enforce/mode: monitor/' "$TMP/policy.yaml" >"$TMP/policy-monitor.yaml"
printf 'version: 1\nsubscribers:\n  dynamic: [198.51.100.1/24]\nop25b:\n  mode: block\n' >"$TMP/bad.yaml"

netlab_up --gateway || abort "lab setup failed"
netlab_start_sinks || abort "sinks"
netlab_spawn gw "$NETLAB_LOGDIR/sekishod.log" "$sekishod" --policy "$TMP/policy.yaml" \
  --access-if acc0 --core-if core0 --state-dir "$TMP/state" --events "$TMP/events.jsonl" \
  --api-socket "$sock" --api-tcp 127.0.0.1:8443 --api-cert "$TMP/api.crt" --api-key "$TMP/api.key" \
  --api-token-file "$TMP/token"
daemon_pid=$NETLAB_LAST_PID
deadline=$(($(date +%s) + 20))
until netlab_exec_sub ping -c 1 -W 1 "$NETLAB_MX_V4" >/dev/null 2>&1 && [ -S "$sock" ]; do
  kill -0 "$daemon_pid" 2>/dev/null || abort "sekishod exited early"
  [ "$(date +%s)" -lt "$deadline" ] || abort "gateway not up"
  sleep 0.2
done

# Traffic for the event-based commands: a blocked SMTP connection from 198.51.100.7.
timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 25 --timeout 5 \
  --from a@example.com --to b@example.net >/dev/null 2>&1
sleep 0.3

# status
ctl_expect 0 "status" status
contains "status shows generation 1" "generation 1"
ctl_expect 0 "status --json" status --json
if echo "$out" | /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["generation"]==1 and j["frames"]["blocked"]>=1'; then
  pass "status --json: generation 1, the block counted"; else fail "status --json content"; fi
ctl_expect 2 "status with a stray argument" status extra

# policy
ctl_expect 0 "policy show" policy show
contains "policy show prints the YAML" "op25b:"
ctl_expect 0 "policy diff (monitor)" policy diff "$TMP/policy-monitor.yaml"
contains "diff names op25b.mode" "op25b.mode"
ctl_expect 4 "policy apply of an invalid policy is rejected" policy apply "$TMP/bad.yaml"
contains "with file:line errors, naming the file" "$TMP/bad.yaml:3: subscribers.dynamic[0]"
ctl_expect 0 "policy apply --dry-run" policy apply "$TMP/policy-monitor.yaml" --dry-run
ctl_expect 0 "status after dry-run" status --json
echo "$out" | grep -q '"generation":1' && pass "dry-run left generation 1" || fail "dry-run changed the generation"
ctl_expect 2 "policy apply of a missing file" policy apply "$TMP/nope.yaml"
ctl_expect 0 "policy apply (monitor)" policy apply "$TMP/policy-monitor.yaml"
contains "applied as generation 2" "generation 2"
ctl_expect 0 "policy rollback" policy rollback
contains "rolled back to a new generation 3" "generation 3"
ctl_expect 2 "policy with an unknown verb" policy frobnicate
# A content rule set that cannot compile within its compile_timeout: the apply is refused,
# the running generation stays, and the next rule compile is refused while the abandoned
# one still runs (policies without rules apply as usual).
{
  cat "$TMP/policy.yaml"
  printf 'inspection:\n  compile_timeout: 20ms\n  rules:\n'
  for i in $(seq 0 29); do
    printf '    - {id: heavy-%d, pattern: "[a-m]{%d,90}%s[^z]{%d,70}[0-9]{2,40}x", score: 1}\n' \
      "$i" $((5 + i % 17)) "$(printf "\\x$(printf %x $((97 + i % 26)))")" $((3 + i % 11))
  done
} >"$TMP/heavy.yaml"
{
  cat "$TMP/policy.yaml"
  printf 'inspection:\n  rules:\n    - {id: light, pattern: "blackword", score: 1}\n'
} >"$TMP/light.yaml"
ctl_expect 4 "policy apply of rules that overrun compile_timeout" policy apply "$TMP/heavy.yaml"
contains "named as the compile timeout" "did not compile within inspection.compile_timeout"
ctl_expect 4 "a rule compile while the abandoned one runs is refused" policy apply "$TMP/light.yaml"
contains "saying it is still running" "still running"
ctl_expect 0 "status after the refused applies" status --json
echo "$out" | grep -q '"generation":3' && pass "the running generation stayed 3" || fail "generation changed"

# bindings
ctl_expect 0 "bindings add" bindings add 198.51.100.7 alice@example.jp
ctl_expect 0 "bindings add IPv6 /56" bindings add "2001:db8:100:1100::/56" alice@example.jp
ctl_expect 4 "bindings add with a bad prefix" bindings add 198.51.100.300 alice@example.jp
ctl_expect 4 "bindings add with host bits set" bindings add 198.51.100.1/24 alice@example.jp
ctl_expect 0 "bindings list --account" bindings list --account alice@example.jp
contains "the binding is listed" "198.51.100.7/32"
ctl_expect 4 "bindings list with a bad limit" bindings list --limit many
ctl_expect 0 "bindings del" bindings del "2001:db8:100:1100::/56"
ctl_expect 2 "bindings add without an account" bindings add 198.51.100.8

# whois (the live binding; no history configured)
ctl_expect 0 "whois" whois 198.51.100.7
contains "whois shows the current binding" "bound now to alice@example.jp"
contains "whois shows the OP25B event" "op25b_block"
ctl_expect 4 "whois with a bad time" whois 198.51.100.7 --at yesterday
ctl_expect 3 "whois of an unbound address" whois 203.0.113.99

# accounts
ctl_expect 0 "account suspend" account suspend alice@example.jp
ctl_expect 0 "account list --suspended" account list --suspended
contains "the suspended account is listed" "alice@example.jp"
# 利用停止: alice's SMTP to the relay (allowed by OP25B) is refused at once.
start=$(date +%s%N)
timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server 203.0.113.10 --port 25 --timeout 5 \
  --from a@example.jp --to b@example.net >"$TMP/suspended.log" 2>&1
rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
if [ "$rc" != 0 ] && [ "$ms" -lt 3000 ]; then pass "suspended account refused at once (${ms} ms)"; else
  fail "suspended account: swaks exit $rc after $ms ms"; fi
ctl_expect 0 "account resume" account resume alice@example.jp
if timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server 203.0.113.10 --port 25 --timeout 5 \
  --from a@example.jp --to b@example.net >/dev/null 2>&1; then pass "resumed account delivers"; else fail "resumed account"; fi
# A second message, to two recipients, over submission: alice's SMTP counters are 2 sessions,
# 2 messages, 3 recipients (the refused and the OP25B-blocked attempts were no sessions).
timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 587 --timeout 5 \
  --from a@example.jp --to b@example.net,c@example.net >/dev/null 2>&1 || fail "submission to two recipients"
sleep 0.5
ctl_expect 0 "whois shows the SMTP counters" whois 198.51.100.7
contains "whois counts alice's sessions, messages and recipients" "SMTP within an hour: 2 sessions (0 TLS), 2 messages, 3 recipients, 0 rejected"
ctl_expect 0 "whois --json" whois 198.51.100.7 --json
if echo "$out" | /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin)["smtp_within_1h"]; assert (j["sessions"], j["messages"], j["recipients"]) == (2, 2, 3), j'; then
  pass "whois --json: smtp_within_1h"; else fail "whois --json smtp_within_1h"; echo "$out" | head -c 600; fi
ctl_expect 4 "account suspend with an empty name" account suspend ""
ctl_expect 2 "account with an unknown verb" account delete alice@example.jp

# events, top, report
ctl_expect 0 "events tail" events tail -n 10
contains "events tail shows account_suspended" "account_suspended"
ctl_expect 0 "events tail --type --json" events tail --type op25b_block --json
contains "filtered to op25b_block" '"type":"op25b_block"'
ctl_expect 4 "events tail with a bad -n" events tail -n lots
# Filters that match nothing would look like a quiet log: usage errors, refused before sending.
ctl_expect 2 "events tail --type bogus is a usage error" events tail --type bogus
contains "naming the type" "--type 'bogus' is not an event type"
contains "listing the event types" "(op25b_block, op25b_monitor, limit_exceeded, account_suspended, content_verdict, mail_session, api_change)"
ctl_expect 2 "events tail --subscriber 999.1.1.1 is a usage error" events tail --subscriber 999.1.1.1
contains "naming the address" "--subscriber '999.1.1.1' is not an IPv4 or IPv6 address"
ctl_expect 2 "events tail --subscriber with host bits is a usage error" events tail --subscriber 198.51.100.1/24
contains "naming the host bits" "--subscriber '198.51.100.1/24' has bits set after the prefix length"
ctl_expect 2 "events tail --subscriber with a bad length is a usage error" events tail --subscriber 198.51.100.0/33
ctl_expect 0 "events tail --subscriber PREFIX" events tail --subscriber 198.51.100.0/24 --type op25b_block -n 1 --json
contains "a prefix matches the addresses in it" '"src":"198.51.100.7"'
ctl_expect 0 "events tail --subscriber ADDRESS/32" events tail --subscriber 198.51.100.7/32 --type op25b_block -n 1
contains "filtered to the address" "198.51.100.7"
timeout 3 "$ctl" --socket "$sock" events tail -f --type op25b_block >"$TMP/follow.log" 2>&1
grep -q op25b_block "$TMP/follow.log" && pass "events tail -f follows (stopped after 3 s)" || fail "events tail -f printed nothing"
ctl_expect 0 "top" top --window 1h
contains "top (by messages) lists 198.51.100.7" "198.51.100.7"
ctl_expect 0 "top --by messages --json" top --by messages --json
if echo "$out" | /usr/bin/python3 -c 'import json,sys; t=json.load(sys.stdin)["top"]; assert t[0]["subscriber"]=="198.51.100.7" and t[0]["count"]==2 and t[0]["account"]=="alice@example.jp", t'; then
  pass "top --by messages: alice's 2 messages"; else fail "top --by messages"; echo "$out" | head -c 600; fi
ctl_expect 0 "top --by recipients --json" top --by recipients --json
echo "$out" | grep -q '"count":3' && pass "top --by recipients: 3" || fail "top --by recipients"
ctl_expect 0 "top --by op25b_block" top --by op25b_block
contains "top by blocks lists 198.51.100.7" "198.51.100.7"
ctl_expect 4 "top by an unknown measure" top --by bytes
ctl_expect 4 "top with a bad window" top --window forever
ctl_expect 0 "report csv" report --since 0 --format csv
contains "report has the CSV header" "source_address,account,events,op25b_blocks"
contains "report names the offending source" "198.51.100.7,"
ctl_expect 4 "report with since after until" report --since 2000000000 --until 1000000000
ctl_expect 2 "an unknown command" frobnicate

# Unauthorised clients: a user who may not open the socket; TCP without or with a wrong token.
out="$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$ctl" --socket "$sock" status 2>&1)"
rc=$?
if [ "$rc" = 1 ] && echo "$out" | grep -qi "cannot reach"; then pass "user nobody cannot use the 0660 socket"; else
  fail "unprivileged socket access: exit $rc: $out"; fi
tls() { netlab_exec_gw timeout 30 "$ctl" --url https://127.0.0.1:8443 --cacert "$TMP/api.crt" "$@"; }
out="$(tls --token-file "$TMP/wrong-token" status 2>&1)"; rc=$?
[ "$rc" = 5 ] && pass "TLS with a wrong token: unauthorised (exit 5)" || fail "TLS wrong token: exit $rc: $out"
out="$(tls status 2>&1)"; rc=$?
[ "$rc" = 5 ] && pass "TLS without a token: unauthorised (exit 5)" || fail "TLS no token: exit $rc: $out"
out="$(netlab_exec_gw timeout 30 "$ctl" --url http://127.0.0.1:8443 --token-file "$TMP/token" status 2>&1)"; rc=$?
[ "$rc" = 2 ] && echo "$out" | grep -q "only https://" && pass "--url http:// refused (exit 2): the token is never sent in clear" ||
  fail "--url http://: exit $rc: $(echo "$out" | head -n 1)"
out="$(tls --token-file "$TMP/token" status --json 2>&1)"; rc=$?
[ "$rc" = 0 ] && echo "$out" | grep -q '"unauthorised":2' && pass "TLS with the token works; 2 unauthorised counted" ||
  fail "TLS with token: exit $rc: $out"
out="$(tls --token-file "$TMP/token" account resume alice@example.jp 2>&1)"; rc=$?
[ "$rc" = 0 ] && pass "a change over TLS with the token" || fail "account resume over TLS: exit $rc: $out"
# A client that connects and never sends does not stall the API.
netlab_exec_gw python3 -c "import socket,time; s=socket.socket(socket.AF_UNIX); s.connect('$sock'); time.sleep(4)" &
idle_pid=$!
sleep 0.5
ctl_expect 0 "API answers while a silent client holds a connection" status
wait "$idle_pid" 2>/dev/null

# 100 applies in a row under continuous traffic: no packet lost. The policies alternate
# between enforce (odd generations: 1, 3 and every apply of policy.yaml) and monitor (even), and
# SMTP connection attempts to port 25 run throughout: every OP25B event must be judged by one
# generation, i.e. op25b_block exactly when its generation is odd.
netlab_exec_sub ping -c 1500 -i 0.004 -q "$NETLAB_MX_V4" >"$TMP/ping.log" 2>&1 &
ping_pid=$!
netlab_exec_sub bash -c 'for i in $(seq 400); do timeout 1 bash -c "exec 3<>/dev/tcp/$0/25" 2>/dev/null; sleep 0.01; done' \
  "$NETLAB_MX_V4" &
syn_pid=$!
applies_ok=0
for ((i = 0; i < 100; i++)); do
  f="$TMP/policy.yaml"
  [ $((i % 2)) = 0 ] && f="$TMP/policy-monitor.yaml"
  "$ctl" --socket "$sock" policy apply "$f" >/dev/null 2>&1 && applies_ok=$((applies_ok + 1))
done
wait "$ping_pid"
wait "$syn_pid"
loss="$(grep -o '[0-9.]*% packet loss' "$TMP/ping.log")"
if [ "$applies_ok" = 100 ] && [ "$loss" = "0% packet loss" ]; then
  pass "100 policy applies under a 250 pps ping: all applied, $loss ($(grep -o '[0-9]* received' "$TMP/ping.log"))"
else
  fail "100 applies: $applies_ok applied, $loss"
fi
if /usr/bin/python3 - "$TMP/events.jsonl" <<'PY'; then
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"op25b_' in l]
mixed = [e for e in ev if (e["type"] == "op25b_block") != (e["generation"] % 2 == 1)]
gens = {e["generation"] for e in ev}
assert not mixed, mixed[:3]
assert len(gens) >= 10 and any(g % 2 == 0 for g in gens), sorted(gens)
print(f"{len(ev)} OP25B verdicts over {len(gens)} generations, none mixed")
PY
  pass "every OP25B verdict during the applies matches its generation's mode"
else
  fail "a verdict was judged by a mix of two generations (or too few generations seen)"
fi
ctl_expect 0 "status after the applies" status --json
echo "$out" | grep -q '"generation":103' && pass "generation 103 (3 + 100)" || fail "generation after applies: $out"

ctl_expect 0 "events tail --type api_change" events tail -n 200 --type api_change
contains "the audit trail is in the event log, with the caller" "account_resume by token from 127.0.0.1:"
ctl_expect 0 "report --json after the changes" report --since 0 --json
echo "$out" | /usr/bin/python3 -c 'import json,sys; s=json.load(sys.stdin)["sources"]; assert all(x["source_address"] for x in s), s' &&
  pass "the audit trail is no offending source in the report" || fail "report lists an empty source: $out"
kill -HUP "$daemon_pid"
sleep 0.5

if e2e_stop_sekishod; then pass "sekishod exited 0"; else fail "sekishod exit status $?"; fi
[ ! -e "$sock" ] && pass "the API socket was removed at exit" || fail "API socket left behind"
# The audit trail: every change or attempted change, who made it, the outcome; no dry run, no body.
if /usr/bin/python3 - "$TMP/events.jsonl" <<'PY'; then
import collections, json, sys
audit = [json.loads(l) for l in open(sys.argv[1]) if '"api_change"' in l]
by = collections.Counter((a["endpoint"], a["status"]) for a in audit)
print("api_change:", dict(by))
assert by[("policy_apply", 200)] == 101, by            # the monitor apply + the 100 applies; dry runs not audited
assert by[("policy_apply", 422)] == 1 and by[("policy_apply", 409)] == 2, by
assert by[("policy_rollback", 200)] == 1, by
assert by[("bindings_add", 200)] >= 2 and by[("bindings_add", 400)] == 2 and by[("bindings_del", 200)] == 1, by
assert by[("account_suspend", 200)] == 1 and by[("account_suspend", 400)] == 1, by
assert by[("account_resume", 200)] == 2, by
assert by[("policy_reload", 200)] == 1, by              # the SIGHUP
unix = [a for a in audit if a["endpoint"] != "policy_reload" and not a["caller"].startswith("token")]
assert all(a["caller"].startswith("uid 0 (root) pid ") for a in unix), {a["caller"] for a in unix}
tls = [a for a in audit if a["caller"].startswith("token from 127.0.0.1:")]
assert len(tls) == 1 and tls[0]["endpoint"] == "account_resume" and tls[0]["account"] == "alice@example.jp", tls
assert [a["caller"] for a in audit if a["endpoint"] == "policy_reload"] == ["SIGHUP"]
refused = [a for a in audit if a["status"] == 422]
assert refused[0]["error"].startswith("invalid policy"), refused
assert all("op25b" not in json.dumps(a) for a in audit), "no policy text in the audit trail"
assert all(a["generation"] >= 1 and a["time_ns"] > 0 for a in audit)
PY
  pass "the audit trail names every change, its caller and outcome"
else
  fail "the audit trail (api_change lines)"
fi

e2e_end
