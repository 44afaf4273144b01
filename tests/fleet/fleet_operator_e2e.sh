#!/usr/bin/env bash
# fleet_operator_e2e.sh - a suspension (利用停止) made on one gateway holds on another, with real
# clients: two live sekishod gateways (A and C, each in a netlab of its own: different NETLAB_IDs)
# share one real PostgreSQL (fleet_stores.sh). RADIUS binds alice and bob behind both gateways;
# `sekishoctl account suspend` on A, and alice's next swaks through C is refused (the time from
# the command to the suspension in force on C, and to the refused swaks, is printed and must be
# under 1 s); `account resume` on A, and she delivers through C again; kill -9 of C, a suspension
# of bob on A while C is down, restart of C: alice (suspended again before the kill) and bob are
# refused through C, from operator.db and from the fleet's log. The metrics say it (link up,
# applied, published); PostgreSQL killed mid-run: A keeps the change in its outbox (backlog 1,
# link down) and C has it once PostgreSQL is back, once. An API binding (`bindings add`) on A
# is in force on C within 1 s (bob's address attributed to a suspended account: refused through
# C); deleted on C, bob's RADIUS session holds the address again on both. A limit reset on A
# lets an account limited through C send through C again.
#
# Usage (root):  tests/fleet/fleet_operator_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab or the servers are missing (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/fleet_labs.sh
source "$here/fleet_labs.sh"
fleet_e2e_begin fleet_operator_e2e "${1:-${SEKISHOD:-}}" "${2:-}" radclient swaks curl /usr/bin/python3

fleet_stores_begin "$TMP/stores"
fleet_start_postgres || abort "PostgreSQL did not start"
fleet_start_redis || abort "redis-server did not start"

{
  e2e_lab_policy
  e2e_radius_section "$TMP/bindings.sqlite"
  printf 'events:\n  aggregate_window: 0s\n'
  # One message per 10 minutes for dora's account (the limit reset step at the end).
  printf 'account_groups:\n  capped: [dora@example.jp]\n'
  printf 'limits:\n  - {name: msgs-capped, measure: messages, scope: account, max: 1, window: 10m, applies_to: "group:capped"}\n'
} >"$TMP/policy.yaml"

metrics_port=9131   # in each gateway's own namespace
acct() { # ATTRIBUTES: radclient in the current gateway's namespace; fails unless answered
  echo "$1" | timeout 20 ip netns exec "$NETLAB_NS_GW" radclient -x -r 1 -t 2 -S "$TMP/secret" \
    127.0.0.1:1813 acct 2>&1 | grep -q "Received Accounting-Response"
}
t=$(($(date +%s) - 100))
sessions() { # both accounts bound behind the current gateway
  acct "Acct-Status-Type = Start, User-Name = \"alice@example.jp\", Acct-Session-Id = \"s1-$lab_current\", Framed-IP-Address = 198.51.100.7, NAS-IP-Address = 192.0.2.1, Event-Timestamp = $t" ||
    fail "RADIUS Start of alice on $lab_current not answered"
  acct "Acct-Status-Type = Start, User-Name = \"bob@example.jp\", Acct-Session-Id = \"s2-$lab_current\", Framed-IP-Address = 198.51.100.130, NAS-IP-Address = 192.0.2.1, Event-Timestamp = $t" ||
    fail "RADIUS Start of bob on $lab_current not answered"
}
smtp_from() { # SOURCE: 0 when delivered through the current gateway
  timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_RELAY_V4" --port 25 --timeout 5 \
    --local-interface "$1" --from a@example.jp --to b@example.net --body hello >"$TMP/swaks.log" 2>&1
}
is_suspended() { # ACCOUNT: on the current gateway
  "$ctl" --socket "$sock" --json account list --suspended 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; sys.exit(0 if sys.argv[1] in [a["account"] for a in json.load(sys.stdin)["accounts"]] else 1)' "$1"
}
wait_metric() { # NAME{LABELS} VALUE: at most 10 s
  local i
  for ((i = 0; i < 100; i++)); do [ "$(lab_metric "$1")" = "$2" ] && return 0; sleep 0.1; done
  return 1
}
link='sekisho_fleet_link_up{store="postgres",concern="operator"}'
now() { date +%s.%N; }
elapsed() { /usr/bin/python3 -c 'import sys; print("%.3f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$2"; }
under() { /usr/bin/python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "$1" "$2"; }
# Until ACCOUNT is (want=0) or is not (want=1) suspended on the current gateway, at most 5 s.
wait_state() { # ACCOUNT WANT
  local i
  for ((i = 0; i < 250; i++)); do
    is_suspended "$1"
    [ $? = "$2" ] && return 0
    sleep 0.02
  done
  return 1
}

for l in a c; do
  lab_use "$l"
  sed "s|$TMP/bindings.sqlite|$TMP/bindings-$l.sqlite|" "$TMP/policy.yaml" >"$TMP/policy-$l.yaml"
  fleet_write_config "$TMP/fleet-$l.yaml" "gateway-$l"
  netlab_up --gateway || abort "lab $l setup failed"
  netlab_start_sinks || abort "sinks of lab $l"
  lab_start_gateway "$l"
  sessions
  e2e_wait_for_log "$NETLAB_LOGDIR/sekishod-$run.log" "fleet: gateway gateway-$l" 10 "sekishod $l"
done

lab_use c
if smtp_from 198.51.100.7; then pass "alice delivers through C before the suspension"; else
  fail "alice refused through C before anything: $(tail -n 3 "$TMP/swaks.log")"; fi

# Suspend on A; in force on C.
lab_use a
t0=$(now)
ctl_expect 0 "account suspend alice on A" account suspend alice@example.jp
lab_use c
if wait_state alice@example.jp 0; then
  t1=$(now)
  in_force=$(elapsed "$t0" "$t1")
  if smtp_from 198.51.100.7; then fail "alice delivered through C after the suspension on A"; else
    t2=$(now)
    refused=$(elapsed "$t0" "$t2")
    echo "suspension on A: in force on C after $in_force s; alice's swaks through C refused at $refused s"
    under "$in_force" 1 && pass "in force on C within 1 s ($in_force s)" || fail "in force on C after $in_force s"
    under "$refused" 1 && pass "alice's next swaks through C refused within 1 s ($refused s)" ||
      fail "alice's swaks through C refused after $refused s (swaks itself takes part of it)"
  fi
else
  fail "alice not suspended on C 5 s after the suspension on A"
fi
sleep 0.3
if grep '"endpoint":"account_suspend"' "$TMP/events-c.jsonl" | grep '"account":"alice@example.jp"' |
  grep -q '"origin_gateway":"gateway-a"'; then pass "C's audit trail names gateway-a as the origin"; else
  fail "C's audit: $(grep account_suspend "$TMP/events-c.jsonl" | tail -n 1)"; fi

# Resume on A; delivers through C again.
lab_use a
t0=$(now)
ctl_expect 0 "account resume alice on A" account resume alice@example.jp
lab_use c
if wait_state alice@example.jp 1; then
  resumed=$(elapsed "$t0" "$(now)")
  echo "resumption on A: in force on C after $resumed s"
  under "$resumed" 1 && pass "resumed on C within 1 s ($resumed s)" || fail "resumed on C after $resumed s"
  if smtp_from 198.51.100.7; then pass "alice delivers through C after the resumption"; else
    fail "alice refused through C after the resumption: $(tail -n 3 "$TMP/swaks.log")"; fi
else
  fail "alice still suspended on C 5 s after the resumption on A"
fi

# Suspended again; kill -9 of C; bob suspended on A while C is down; C restarts.
lab_use a
ctl_expect 0 "account suspend alice on A again" account suspend alice@example.jp
lab_use c
wait_state alice@example.jp 0 || fail "alice not suspended on C again"
kill -9 "$daemon_pid"
wait "$daemon_pid" 2>/dev/null
lab_use a
ctl_expect 0 "account suspend bob on A while C is down" account suspend bob@example.jp
lab_use c
lab_start_gateway c
if smtp_from 198.51.100.7; then fail "alice delivered through C after its kill -9"; else
  pass "alice still refused through C after kill -9 and a restart"; fi
if wait_state bob@example.jp 0; then pass "bob (suspended while C was down) suspended on C after its restart"; else
  fail "bob not suspended on C after its restart"; fi
if smtp_from 198.51.100.130; then fail "bob delivered through C"; else pass "bob refused through C"; fi
[ "$(fleet_psql "SELECT count(*) FROM operator_changes")" = 4 ] && pass "four changes in the fleet's log, none twice" ||
  fail "operator_changes: $(fleet_psql "SELECT id, gateway, kind, account FROM operator_changes ORDER BY id")"
[ "$(fleet_psql "SELECT string_agg(account || '@' || origin_gateway, ' ' ORDER BY account) FROM fleet_suspensions")" = \
  "alice@example.jp@gateway-a bob@example.jp@gateway-a" ] && pass "fleet_suspensions: alice and bob, from gateway-a" ||
  fail "fleet_suspensions: $(fleet_psql "SELECT * FROM fleet_suspensions")"

wait_metric "$link" 1 && pass "C: $link 1" || fail "C: $link '$(lab_metric "$link")'"
wait_metric sekisho_fleet_operator_changes_applied_total 1 && pass "C applied bob's suspension after its restart (applied_total 1)" ||
  fail "C: applied_total '$(lab_metric sekisho_fleet_operator_changes_applied_total)'"
lab_use a
wait_metric sekisho_fleet_operator_changes_published_total 4 && pass "A published 4 changes" ||
  fail "A: published_total '$(lab_metric sekisho_fleet_operator_changes_published_total)'"

# PostgreSQL killed mid-run: A keeps enforcing and queues; C gets the change once it is back.
fleet_kill_postgres
ctl_expect 0 "account suspend zed on A while PostgreSQL is down" account suspend zed@example.jp --create
wait_metric sekisho_fleet_operator_outbox_backlog 1 && pass "A: one change waits in the outbox" ||
  fail "A: outbox_backlog '$(lab_metric sekisho_fleet_operator_outbox_backlog)'"
wait_metric "$link" 0 && pass "A: $link 0 while PostgreSQL is down" || fail "A: $link '$(lab_metric "$link")'"
fleet_start_postgres || abort "PostgreSQL did not restart"
lab_use c
for ((i = 0; i < 100; i++)); do is_suspended zed@example.jp && break; sleep 0.1; done
is_suspended zed@example.jp && pass "zed suspended on C once PostgreSQL is back" || fail "zed not suspended on C"
lab_use a
wait_metric sekisho_fleet_operator_outbox_backlog 0 && pass "A: the outbox is empty again" ||
  fail "A: outbox_backlog '$(lab_metric sekisho_fleet_operator_outbox_backlog)'"
[ "$(fleet_psql "SELECT count(*) FROM operator_changes")" = 5 ] && pass "five changes in the fleet's log" ||
  fail "operator_changes: $(fleet_psql "SELECT id, gateway, kind, account FROM operator_changes ORDER BY id")"

# An API binding made on A is in force on C: bob resumed, then bob's address (his RADIUS
# session's) bound on A to zed (suspended): bob's swaks through C is attributed to zed and
# refused; the binding deleted on C: bob's session holds the address again on A and C.
bound_to() { # ADDRESS/LEN ACCOUNT: the current gateway's table binds it so
  "$ctl" --socket "$sock" --json bindings list --account "$2" 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; sys.exit(0 if sys.argv[1] in [b["prefix"] for b in json.load(sys.stdin)["bindings"]] else 1)' "$1"
}
wait_bound() { # ADDRESS/LEN ACCOUNT: at most 5 s
  local i
  for ((i = 0; i < 250; i++)); do bound_to "$1" "$2" && return 0; sleep 0.02; done
  return 1
}
lab_use a
ctl_expect 0 "account resume bob on A" account resume bob@example.jp
lab_use c
wait_state bob@example.jp 1 || fail "bob still suspended on C"
if smtp_from 198.51.100.130; then pass "bob delivers through C after the resumption"; else
  fail "bob refused through C after the resumption: $(tail -n 3 "$TMP/swaks.log")"; fi
lab_use a
t0=$(now)
ctl_expect 0 "bindings add bob's address to zed on A" bindings add 198.51.100.130/32 zed@example.jp
lab_use c
if wait_bound 198.51.100.130/32 zed@example.jp; then
  bound=$(elapsed "$t0" "$(now)")
  echo "API binding on A: in force on C after $bound s"
  under "$bound" 1 && pass "the binding is in force on C within 1 s ($bound s)" || fail "bound on C after $bound s"
  if smtp_from 198.51.100.130; then fail "bob's address delivered through C while bound to suspended zed"; else
    pass "bob's address through C is zed's now: refused (zed is suspended)"; fi
else
  fail "198.51.100.130/32 not bound to zed on C 5 s after bindings add on A"
fi
sleep 0.3
if grep '"endpoint":"bindings_add"' "$TMP/events-c.jsonl" | grep -q '"origin_gateway":"gateway-a"'; then
  pass "C's audit trail names gateway-a as the binding's origin"; else
  fail "C's audit: $(grep bindings_add "$TMP/events-c.jsonl" | tail -n 1)"; fi
ctl_expect 0 "bindings del on C" bindings del 198.51.100.130/32
if smtp_from 198.51.100.130; then pass "bob delivers through C again (his RADIUS session holds the address)"; else
  fail "bob refused through C after bindings del: $(tail -n 3 "$TMP/swaks.log")"; fi
lab_use a
if wait_bound 198.51.100.130/32 bob@example.jp; then pass "on A too the address is bob's again (RADIUS)"; else
  fail "A: 198.51.100.130/32 not bob's after the deletion on C"; fi
# (ids are not dense: PostgreSQL's kill above lost its cached sequence values)
[ "$(fleet_psql "SELECT string_agg(gateway || ':' || kind, ' ' ORDER BY id) FROM (SELECT id, gateway, kind FROM operator_changes ORDER BY id OFFSET 5) l")" = \
  "gateway-a:resume gateway-a:bind gateway-c:unbind" ] && pass "the log: resume, bind on A, unbind on C; none twice" ||
  fail "operator_changes: $(fleet_psql "SELECT id, gateway, kind, account, prefix FROM operator_changes ORDER BY id")"

# A limit reset made on A lets the account send again through C: bob's address bound on A to
# dora (one message per 10 minutes); her second message through C is refused; `limits reset`
# on A clears C's count within 1 s and her next message through C is delivered.
sent_count() { # ACCOUNT: msgs-capped's count on the current gateway
  "$ctl" --socket "$sock" --json limits show "$1" 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; print([l["count"] for l in json.load(sys.stdin)["limits"] if l["limit"] == "msgs-capped"][0])'
}
lab_use a
ctl_expect 0 "bindings add bob's address to dora on A" bindings add 198.51.100.130/32 dora@example.jp
lab_use c
wait_bound 198.51.100.130/32 dora@example.jp || fail "198.51.100.130/32 not bound to dora on C"
if smtp_from 198.51.100.130; then pass "dora's first message through C delivered"; else
  fail "dora's first message through C refused: $(tail -n 3 "$TMP/swaks.log")"; fi
if smtp_from 198.51.100.130; then fail "dora's second message through C delivered (limit 1 per 10 minutes)"; else
  pass "dora's second message through C refused by msgs-capped"; fi
[ "$(sent_count dora@example.jp)" = 1 ] && pass "C counts one message of dora's" ||
  fail "C: msgs-capped count '$(sent_count dora@example.jp)'"
lab_use a
t0=$(now)
ctl_expect 0 "limits reset dora on A" limits reset dora@example.jp
lab_use c
for ((i = 0; i < 250; i++)); do [ "$(sent_count dora@example.jp)" = 0 ] && break; sleep 0.02; done
if [ "$(sent_count dora@example.jp)" = 0 ]; then
  reset_in=$(elapsed "$t0" "$(now)")
  echo "limit reset on A: done on C after $reset_in s"
  under "$reset_in" 1 && pass "the reset is done on C within 1 s ($reset_in s)" || fail "reset on C after $reset_in s"
else
  fail "C: msgs-capped count of dora '$(sent_count dora@example.jp)' 5 s after the reset on A"
fi
if smtp_from 198.51.100.130; then pass "dora delivers through C again after the reset on A"; else
  fail "dora refused through C after the reset on A: $(tail -n 3 "$TMP/swaks.log")"; fi
sleep 0.3
if grep '"endpoint":"limits_reset"' "$TMP/events-c.jsonl" | grep -q '"origin_gateway":"gateway-a"'; then
  pass "C's audit trail names gateway-a as the reset's origin"; else
  fail "C's audit: $(grep limits_reset "$TMP/events-c.jsonl" | tail -n 1)"; fi
[ "$(fleet_psql "SELECT count(*) FROM operator_changes WHERE kind = 'limits_reset'")" = 1 ] &&
  pass "one reset in the fleet's log" || fail "resets: $(fleet_psql "SELECT * FROM operator_changes WHERE kind = 'limits_reset'")"

lab_use c
e2e_stop_sekishod
lab_use a
e2e_stop_sekishod
e2e_end
