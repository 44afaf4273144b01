#!/usr/bin/env bash
# attribution_e2e.sh - every event is its address's holder's at the event's own time. A live
# sekishod with a binding history: swaks from 198.51.100.7 to an MX on port 25 is blocked
# (op25b_block) while nobody holds the address; then radclient sends alice's RADIUS Start; then a
# second blocked swaks, within the same aggregation window (the first event is written at once,
# the repeat when the window closes). whois at the first block's time: nobody (exit 3, both
# sekishoctl whois and sekishod --whois), its events counted for nobody; whois now: alice, only
# the later block counted; report and top: one row for nobody and one for alice, times in
# RFC 3339 as well as Unix seconds.
#
# Usage (root):  tests/e2e/attribution_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

e2e_begin attribution_e2e "${1:-${SEKISHOD:-}}" radclient swaks /usr/bin/python3
ctl="${2:-}"
[ -x "$ctl" ] || { echo "attribution_e2e: sekishoctl not executable: '$ctl'" >&2; exit 1; }
ctl="$(realpath "$ctl")"
sock="$TMP/api.sock"
db="$TMP/bindings.sqlite"
events="$TMP/events.jsonl"
addr="$NETLAB_SUB_V4_DYN"

{
  e2e_lab_policy
  e2e_radius_section "$db"
  cat <<EOF
events:
  aggregate_window: 10s
EOF
} >"$TMP/policy.yaml"

netlab_up --gateway || abort "lab setup failed"
e2e_start_sekishod "$NETLAB_LOGDIR/sekishod.log" --policy "$TMP/policy.yaml" --events "$events" --api-socket "$sock"
for ((i = 0; i < 50; i++)); do [ -S "$sock" ] && break; sleep 0.1; done

blocked_swaks() { # DESCRIPTION
  local t0=$(date +%s%N)
  if timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 25 --local-interface "$addr" \
    --from a@example.jp --to b@example.net --timeout 5 >"$TMP/swaks.log" 2>&1; then
    fail "$1: delivered, expected an OP25B block"; else pass "$1: blocked in $((($(date +%s%N) - t0) / 1000000)) ms"; fi
}
op25b_lines() { # the op25b_block lines of $addr: "TIME_S COUNT" per line, in file order
  python3 - "$events" "$addr" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("type") == "op25b_block" and e.get("src") == sys.argv[2]:
        print(e.get("first_ns", e["time_ns"]) // 10**9, e["count"])
EOF
}

# 1. Blocked while nobody holds the address; the event is in the log at once.
blocked_swaks "swaks before the RADIUS Start"
# Not at the end of its 10 s aggregation window: an operator sees a block when it happens.
deadline=$(($(date +%s%N) + 3000000000))
while [ -z "$(op25b_lines)" ] && [ "$(date +%s%N)" -lt "$deadline" ]; do sleep 0.1; done
first="$(op25b_lines | head -n 1)"
t_before="${first% *}"
if [ -n "$first" ] && [ $(($(date +%s) - t_before)) -le 4 ]; then
  pass "the first op25b_block is in the log $(($(date +%s) - t_before)) s after it happened"; else
  fail "no op25b_block in the log within 3 s of the block (first line: '$first', now $(date +%s))"
  t_before="${t_before:-$(date +%s)}"; fi

# 2. alice's session begins after it (Event-Timestamp: now), 2 s later.
sleep 2
t_start=$(date +%s)
if echo "Acct-Status-Type = Start, User-Name = \"alice@example.jp\", Acct-Session-Id = \"s1\", Framed-IP-Address = $addr, NAS-IP-Address = 192.0.2.1, Event-Timestamp = $t_start" |
  timeout 20 ip netns exec "$NETLAB_NS_GW" radclient -x -r 1 -t 2 -S "$TMP/secret" 127.0.0.1:1813 acct 2>&1 |
  grep -q "Received Accounting-Response"; then pass "alice's Start answered"; else fail "alice's Start not answered"; fi

# 3. Blocked again, 2 s into alice's session, within the first block's aggregation window.
sleep 2
blocked_swaks "swaks during alice's session"
sleep 11   # the window closes: the repeat is written
lines="$(op25b_lines)"
echo "$lines" | sed 's/^/    op25b_block line: /'
before_count="$(echo "$lines" | awk -v s="$t_start" '$1 < s {n += $2} END {print n + 0}')"
after_count="$(echo "$lines" | awk -v s="$t_start" '$1 >= s {n += $2} END {print n + 0}')"
if [ "$before_count" -ge 1 ] && [ "$after_count" -ge 1 ]; then
  pass "the log has blocks before ($before_count) and after ($after_count) the Start"; else
  fail "blocks before $before_count, after $after_count the Start (the repeat dated by the first block?)"; fi

# 4. whois at the first block's time: nobody.
ctl_expect 3 "whois --at the first block's time: nobody held it" whois "$addr" --at "$t_before"
contains "says nobody" "by nobody"
ctl_expect 3 "whois --json --at the first block's time" --json whois "$addr" --at "$t_before"
if echo "$out" | python3 -c '
import json, sys
j = json.load(sys.stdin); before, after, start = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
assert j["held_by"] == [] and j["bindings"] == [], j
assert j["events_within_1h"].get("op25b_block", 0) == before, j["events_within_1h"]
held = {(e.get("first_ns", e["time_ns"]) // 10**9 >= start): e["held_by"] for e in j["events"] if e["type"] == "op25b_block"}
assert held == {False: None, True: "alice@example.jp"}, held
assert j["query"]["at_utc"].endswith("Z"), j["query"]
' "$before_count" "$after_count" "$t_start"; then pass "whois at the first block: held_by [], its block counted for nobody, each event with its holder"; else
  fail "whois --json at the first block"; echo "$out" | head -c 1500; echo; fi
out="$("$SEKISHOD" --whois "$addr" --at "$t_before" --history "$db" 2>&1)"; rc=$?
[ "$rc" = 3 ] && pass "sekishod --whois at the first block's time: exit 3" || fail "sekishod --whois at the first block: exit $rc: $out"

# 5. whois now: alice, and only the block of her session counted.
ctl_expect 0 "whois now: alice" --json whois "$addr"
if echo "$out" | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["held_by"] == ["alice@example.jp"], j["held_by"]
assert j["events_within_1h"].get("op25b_block", 0) == int(sys.argv[1]), j["events_within_1h"]
assert j["bindings"][0]["start_utc"].endswith("Z"), j["bindings"]
' "$after_count"; then pass "whois now: held_by alice, only her session's block counted"; else
  fail "whois now"; echo "$out" | head -c 1500; echo; fi
out="$("$SEKISHOD" --whois "$addr" --history "$db" --json 2>&1)"; rc=$?
[ "$rc" = 0 ] && echo "$out" | grep -q '"held_by":\["alice@example.jp"\]' && pass "sekishod --whois now: alice" ||
  fail "sekishod --whois now: exit $rc: $out"

# 6. report and top: one row for nobody, one for alice; times in RFC 3339 too.
ctl_expect 0 "report --format json" --json report --since 0
if echo "$out" | python3 -c '
import json, re, sys
j = json.load(sys.stdin); a = sys.argv[1]; before, after = int(sys.argv[2]), int(sys.argv[3])
rows = {r["account"]: r for r in j["sources"] if r["source_address"] == a}
assert set(rows) == {None, "alice@example.jp"}, rows
assert rows[None]["by_type"]["op25b_block"] == before and rows["alice@example.jp"]["by_type"]["op25b_block"] == after, rows
for r in rows.values():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["first_seen_utc"]) and r["last_seen_utc"].endswith("Z"), r
assert rows[None]["last_seen"] < rows["alice@example.jp"]["first_seen"], rows
assert j["until_utc"].endswith("Z") and j["since_utc"] == "1970-01-01T00:00:00Z", j
' "$addr" "$before_count" "$after_count"; then pass "report: the block before the Start is nobody's, the later one alice's"; else
  fail "report rows"; echo "$out" | head -c 1500; echo; fi
ctl_expect 0 "report csv" report --since 0
contains "the CSV has the RFC 3339 columns" "first_seen,last_seen,first_seen_utc,last_seen_utc"
contains "the CSV row of nobody (empty account)" "$addr,,$before_count,$before_count,"
contains "the CSV row of alice" "$addr,alice@example.jp,$after_count,$after_count,"
ctl_expect 0 "top --by op25b_block" --json top --by op25b_block
if echo "$out" | python3 -c '
import json, sys
j = json.load(sys.stdin)
got = sorted((str(t["account"]), t["count"]) for t in j["top"] if t["subscriber"] == sys.argv[1])
assert got == sorted([("None", int(sys.argv[2])), ("alice@example.jp", int(sys.argv[3]))]), got
' "$addr" "$before_count" "$after_count"; then pass "top: one row for nobody, one for alice"; else
  fail "top rows"; echo "$out" | head -c 800; echo; fi

e2e_stop_sekishod
e2e_end
