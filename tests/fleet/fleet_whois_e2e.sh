#!/usr/bin/env bash
# fleet_whois_e2e.sh - who held an address, fleet-wide: two live sekishod gateways (A and C, each
# in a netlab of its own) ship their binding histories and events into one real PostgreSQL
# (fleet_stores.sh). RADIUS (radclient) binds the SAME address 198.51.100.7 to alice on A; OP25B
# attempts from it through A; alice's Stop; attempts through A while nobody holds it; PostgreSQL
# killed; bob's Start for the address on C while it is down; PostgreSQL back; attempts through C.
#   - the bindings table holds both rows (alice closed by her Stop, bob open), once each;
#   - `sekishoctl --fleet desk.conninfo whois 198.51.100.7 --at T1` names alice on gateway-a,
#     `--at T2` bob on gateway-c; at a time between, and before both, nobody (exit 3);
#   - `report` attributes each event to alice@gateway-a, nobody@gateway-a or bob@gateway-c exactly
#     as the event logs' own times and the RADIUS times say (counted from the events files), and
#     gateway A's own report (its control API) attributes A's events the same way, same columns;
#   - the metrics: sekisho_fleet_link_up{store="postgres",concern="bindings"} 1, backlog 0;
#   - C killed -9 and restarted goes on from its cursor: bob's Stop, after the restart, closes his
#     row and is the only row C ships again (not carol's, shipped before the kill).
#
# Usage (root):  tests/fleet/fleet_whois_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab or the servers are missing (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/fleet_labs.sh
source "$here/fleet_labs.sh"
fleet_e2e_begin fleet_whois_e2e "${1:-${SEKISHOD:-}}" "${2:-}" radclient swaks curl /usr/bin/python3

fleet_stores_begin "$TMP/stores"
fleet_start_postgres || abort "PostgreSQL did not start"

{
  e2e_lab_policy
  e2e_radius_section "$TMP/bindings.sqlite"
  printf 'events:\n  aggregate_window: 0s\n'
} >"$TMP/policy.yaml"

metrics_port=9133   # in each gateway's own namespace
acct() { # ATTRIBUTES: radclient in the current gateway's namespace; fails unless answered
  echo "$1" | timeout 20 ip netns exec "$NETLAB_NS_GW" radclient -x -r 1 -t 2 -S "$TMP/secret" \
    127.0.0.1:1813 acct 2>&1 | grep -q "Received Accounting-Response"
}
addr="$NETLAB_SUB_V4_DYN"
radius() { # Start|Stop ACCOUNT SESSION TIME
  acct "Acct-Status-Type = $1, User-Name = \"$2\", Acct-Session-Id = \"$3\", Framed-IP-Address = $addr, NAS-IP-Address = 192.0.2.1, Event-Timestamp = $4" ||
    fail "RADIUS $1 of $2 on $lab_current not answered"
}
# OP25B attempts from the address to the MX on port 25 through the current gateway: each blocked fast.
attempts() { # COUNT
  local i t0 blocked=0
  for ((i = 0; i < $1; i++)); do
    t0=$(date +%s%N)
    if ! timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks -4 --server "$NETLAB_MX_V4" --port 25 \
      --local-interface "$addr" --from a@example.jp --to b@example.net --timeout 5 >/dev/null 2>&1; then
      [ $((($(date +%s%N) - t0) / 1000000)) -lt 3000 ] && blocked=$((blocked + 1))
    fi
  done
  [ "$blocked" = "$1" ] && pass "$1 attempts through $lab_current blocked fast" || fail "only $blocked of $1 blocked through $lab_current"
}
wait_until() { # SECONDS WHAT COMMAND...: true once COMMAND succeeds
  local deadline=$(($(date +%s) + $1)) what="$2"
  shift 2
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || { fail "$what: not within the time"; return 1; }
    sleep 0.2
  done
  pass "$what"
}
# Until the second changes: the next event is in a later second than anything before.
next_second() { local s; s=$(date +%s); while [ "$(date +%s)" = "$s" ]; do sleep 0.05; done; }

for l in a c; do
  lab_use "$l"
  sed "s|$TMP/bindings.sqlite|$TMP/bindings-$l.sqlite|" "$TMP/policy.yaml" >"$TMP/policy-$l.yaml"
  printf 'gateway: gateway-%s\npostgres:\n  conninfo_file: %s\nsync_interval: 100ms\n' "$l" "$FLEET_DIR/gateway.conninfo" \
    >"$TMP/fleet-$l.yaml"
  netlab_up --gateway || abort "lab $l setup failed"
  netlab_start_sinks || abort "sinks of lab $l"
  lab_start_gateway "$l"
  e2e_wait_for_log "$NETLAB_LOGDIR/sekishod-$run.log" "fleet: bindings: PostgreSQL link up" 20 "sekishod $l"
done

# alice holds the address on A: T1.
lab_use a
t_alice=$(date +%s)
radius Start alice@example.jp s-alice "$t_alice"
next_second
attempts 3
t1=$(date +%s)
next_second
t_alice_stop=$(date +%s)
radius Stop alice@example.jp s-alice "$t_alice_stop"
# Nobody holds it on A: attempts in later seconds than the Stop's (its second is still alice's).
next_second
next_second
attempts 2
t_nobody=$(date +%s)
next_second
next_second

# bob holds it on C, learned while PostgreSQL is down: the history keeps the row until it is back.
fleet_kill_postgres
lab_use c
t_bob=$(date +%s)
radius Start bob@example.jp s-bob "$t_bob"
bindings_link='sekisho_fleet_link_up{store="postgres",concern="bindings"}'
backlog_waits() { [ "$(lab_metric sekisho_fleet_bindings_backlog_rows)" = 1 ] && [ "$(lab_metric "$bindings_link")" = 0 ]; }
wait_until 15 "C: bob's binding waits in the history while PostgreSQL is down (backlog 1, link 0)" backlog_waits
next_second
attempts 3
t2=$(date +%s)
fleet_start_postgres || abort "PostgreSQL did not restart"
caught_up() { [ "$(lab_metric sekisho_fleet_bindings_backlog_rows)" = 0 ] && [ "$(lab_metric "$bindings_link")" = 1 ]; }
wait_until 30 "C: after PostgreSQL's restart the backlog drains (backlog 0, link 1)" caught_up

# Everything shipped: two binding rows, the events of both gateways.
bindings_shipped() {
  [ "$(fleet_psql "SELECT string_agg(gateway || ':' || account || ':' || coalesce(closed_by, 'open'), ' ' ORDER BY start) FROM bindings" 2>/dev/null)" = \
    "gateway-a:alice@example.jp:stop gateway-c:bob@example.jp:open" ]
}
wait_until 20 "bindings: alice's row on gateway-a closed by her Stop, bob's open on gateway-c, once each" bindings_shipped
lines() { grep -c '' "$TMP/events-$1.jsonl" 2>/dev/null || echo 0; }
events_shipped() {
  [ "$(fleet_psql "SELECT count(*) FROM events WHERE gateway = 'gateway-a'" 2>/dev/null)" = "$(lines a)" ] &&
    [ "$(fleet_psql "SELECT count(*) FROM events WHERE gateway = 'gateway-c'" 2>/dev/null)" = "$(lines c)" ]
}
wait_until 30 "the events of both gateways are rows ($(lines a) and $(lines c))" events_shipped
[ "$(fleet_psql "SELECT extract(epoch FROM start)::bigint || ' ' || extract(epoch FROM stop)::bigint FROM bindings WHERE gateway = 'gateway-a'")" = "$t_alice $t_alice_stop" ] &&
  pass "alice's row: start and stop as RADIUS said" || fail "alice's row: $(fleet_psql "SELECT * FROM bindings WHERE gateway = 'gateway-a'")"

# The desk's role reads (granted by the schema's owner, as for events).
fleet_psql "GRANT SELECT ON events, bindings TO sekisho_desk" >/dev/null
desk="$FLEET_DIR/desk.conninfo"
fleet_ctl() { out="$(timeout 30 "$ctl" --fleet "$desk" "$@" 2>&1)"; rc=$?; }

fleet_ctl whois "$addr" --at "$t1"
[ "$rc" = 0 ] && echo "$out" | grep -q "held by alice@example.jp on gateway gateway-a (session s-alice, NAS 192.0.2.1) from .*($t_alice) to .*($t_alice_stop) (stop)" &&
  pass "whois --at T1: alice on gateway-a, RFC 3339 beside Unix seconds" || fail "whois --at T1: exit $rc: $out"
fleet_ctl --json whois "$addr" --at "$t2"
held="$(echo "$out" | /usr/bin/python3 -c 'import json,sys; print(" ".join(h["account"] + "@" + h["gateway"] for h in json.load(sys.stdin)["held_by"]))' 2>/dev/null)"
[ "$rc" = 0 ] && [ "$held" = "bob@example.jp@gateway-c" ] && pass "whois --at T2 --json: bob on gateway-c" ||
  fail "whois --at T2: exit $rc, held by '$held': $out"
fleet_ctl whois "$addr" --at "$t_nobody"
[ "$rc" = 3 ] && echo "$out" | grep -q "no binding for $addr" && pass "whois between alice's Stop and bob's Start: nobody (exit 3)" ||
  fail "whois at $t_nobody: exit $rc: $out"
fleet_ctl whois "$addr" --at "$((t_alice - 100))"
[ "$rc" = 3 ] && pass "whois before both: nobody (exit 3)" || fail "whois before both: exit $rc: $out"
fleet_ctl whois "not-an-address"
[ "$rc" = 2 ] && echo "$out" | grep -q "not an IPv4 or IPv6 address" && pass "whois of a bad address: usage error" ||
  fail "whois not-an-address: exit $rc: $out"

# report: each event to its holder at its own second, as the RADIUS times say.
/usr/bin/python3 - "$TMP/events-a.jsonl" "$TMP/events-c.jsonl" "$addr" "$t_alice" "$t_alice_stop" "$t_bob" >"$TMP/expected.txt" <<'PY'
import json, sys
a, c, addr, alice, alice_stop, bob = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:])
want = {}
for path, gw in ((a, "gateway-a"), (c, "gateway-c")):
    for line in open(path):
        e = json.loads(line)
        if e.get("type") != "op25b_block" or (e.get("subscriber") or e.get("src")) != addr:
            continue
        t = int(e.get("first_ns", e.get("time_ns", 0))) // 10**9
        if gw == "gateway-a":
            holder = "alice@example.jp" if alice <= t <= alice_stop else "-"
        else:
            holder = "bob@example.jp" if t >= bob else "-"
        want[(gw, holder)] = want.get((gw, holder), 0) + int(e.get("count", 1))
for (gw, holder), n in sorted(want.items()):
    print(gw, holder, n)
PY
fleet_ctl --json report
printf '%s\n' "$out" | /usr/bin/python3 -c '
import json, sys
addr = sys.argv[1]
rows = {}
for s in json.load(sys.stdin)["sources"]:
    if s["source_address"] == addr:
        key = (s["gateway"], s["account"] or "-")
        rows[key] = rows.get(key, 0) + s["by_type"].get("op25b_block", 0)
for (gw, holder), n in sorted(rows.items()):
    print(gw, holder, n)' "$addr" >"$TMP/got.txt" 2>&1
if [ -s "$TMP/expected.txt" ] && cmp -s "$TMP/expected.txt" "$TMP/got.txt" &&
  [ "$(grep -c '' "$TMP/expected.txt")" = 3 ]; then
  pass "report: each event to alice@gateway-a, nobody@gateway-a or bob@gateway-c: $(tr '\n' ';' <"$TMP/got.txt")"
else
  fail "report: expected $(tr '\n' ';' <"$TMP/expected.txt"), got $(tr '\n' ';' <"$TMP/got.txt")"
fi
fleet_ctl report --since "$t_alice" --until "$t1"
echo "$out" | head -n 1 | grep -q '^source_address,account,events,op25b_blocks,limit_hits,suspended_refusals,messages,first_seen,last_seen,first_seen_utc,last_seen_utc,gateway$' &&
  echo "$out" | grep -q "^$addr,alice@example.jp,.*,gateway-a$" && ! echo "$out" | grep -q "gateway-c" &&
  pass "report --since --until as CSV: the gateway's columns, then the gateway; only alice's events" ||
  fail "report CSV: $out"

# Gateway A's own report (its API, its own history) attributes A's events the same way.
lab_use a
"$ctl" --socket "$sock" report --format json 2>/dev/null | /usr/bin/python3 -c '
import json, sys
addr = sys.argv[1]
rows = {}
for s in json.load(sys.stdin)["sources"]:
    if s["source_address"] == addr:
        key = ("gateway-a", s["account"] or "-")
        rows[key] = rows.get(key, 0) + s["by_type"].get("op25b_block", 0)
for (gw, holder), n in sorted(rows.items()):
    print(gw, holder, n)' "$addr" >"$TMP/local-a.txt" 2>&1
grep '^gateway-a ' "$TMP/got.txt" >"$TMP/fleet-a.txt"
cmp -s "$TMP/local-a.txt" "$TMP/fleet-a.txt" && pass "gateway A's own report agrees with the fleet's for A: $(tr '\n' ';' <"$TMP/local-a.txt")" ||
  fail "gateway A's own report: $(tr '\n' ';' <"$TMP/local-a.txt"); the fleet's: $(tr '\n' ';' <"$TMP/fleet-a.txt")"

for l in a c; do
  lab_use "$l"
  [ "$(lab_metric "$bindings_link")" = 1 ] && pass "$l: $bindings_link 1" || fail "$l: $bindings_link '$(lab_metric "$bindings_link")'"
  shipped="$(lab_metric sekisho_fleet_bindings_shipped_total)"
  [ -n "$shipped" ] && [ "$shipped" -ge 1 ] && pass "$l: sekisho_fleet_bindings_shipped_total $shipped" ||
    fail "$l: sekisho_fleet_bindings_shipped_total '$shipped'"
done

# C killed -9 and restarted: it goes on from its cursor (bob's Start is not sent again), and bob's
# Stop, learned after the restart, closes his row.
lab_use c
# Another row on C first (carol, another address), shipped before the kill: a restart that
# ignored its cursor would ship it again.
acct "Acct-Status-Type = Start, User-Name = \"carol@example.jp\", Acct-Session-Id = \"s-carol\", Framed-IP-Address = 198.51.100.9, NAS-IP-Address = 192.0.2.1, Event-Timestamp = $(date +%s)" ||
  fail "RADIUS Start of carol on c not answered"
three_rows() { [ "$(fleet_psql "SELECT count(*) FROM bindings" 2>/dev/null)" = 3 ]; }
wait_until 20 "carol's binding on C shipped" three_rows
kill -9 "$daemon_pid"
wait "$daemon_pid" 2>/dev/null
[ -f "$TMP/state-c/fleet/bindings.cursor" ] && pass "C: the bindings cursor is on disk" || fail "C: no bindings cursor"
lab_start_gateway c
e2e_wait_for_log "$NETLAB_LOGDIR/sekishod-$run.log" "fleet: bindings: PostgreSQL link up" 20 "sekishod c restarted"
t_bob_stop=$(date +%s)
radius Stop bob@example.jp s-bob "$t_bob_stop"
bob_closed() {
  [ "$(fleet_psql "SELECT coalesce(closed_by, 'open') || ' ' || coalesce(extract(epoch FROM stop)::bigint::text, '-') FROM bindings WHERE gateway = 'gateway-c' AND account = 'bob@example.jp'" 2>/dev/null)" = "stop $t_bob_stop" ]
}
wait_until 20 "after C's kill -9 and restart, bob's Stop closes his row" bob_closed
# The metrics are refreshed each second: wait for the count, then check it stays.
shipped_one() { [ "$(lab_metric sekisho_fleet_bindings_shipped_total)" = 1 ]; }
wait_until 10 "the restarted C counts one row shipped" shipped_one
sleep 1.5
shipped="$(lab_metric sekisho_fleet_bindings_shipped_total)"
[ "$shipped" = 1 ] && pass "the restarted C shipped only bob's Stop (shipped_total 1): from its cursor" ||
  fail "the restarted C shipped '$shipped' rows: not from its cursor"
[ "$(fleet_psql "SELECT count(*) FROM bindings")" = 3 ] && pass "still three rows in bindings" ||
  fail "bindings: $(fleet_psql "SELECT gateway, history_id, account FROM bindings")"
fleet_ctl whois "$addr" --at "$t2"
[ "$rc" = 0 ] && echo "$out" | grep -q "held by bob@example.jp on gateway gateway-c .* to .*($t_bob_stop) (stop)" &&
  pass "whois --at T2 after bob's Stop: bob on gateway-c until his Stop" || fail "whois --at T2 after the Stop: exit $rc: $out"

lab_use c
e2e_stop_sekishod
lab_use a
e2e_stop_sekishod
e2e_end
