#!/usr/bin/env bash
# operator_state_e2e.sh - what operators decide survives kill -9, against a live sekishod with
# real clients: RADIUS sessions from radclient; sekishoctl suspends two accounts, suspends one
# never seen only with --create (refused without: exit 3), adds an API binding over a RADIUS
# session (the CLI says what it overrode, the audit trail records it), refuses one outside the
# subscriber ranges unless --force, answers exit 3 to deleting what is not bound; a content rule's
# quarantine verdict suspends a third account from the data plane (swaks). Then kill -9 and a
# restart with the same --state-dir: the suspensions and the API bindings are back before the
# first packet (the start-up log says so before the ports start; swaks from a suspended address
# is refused at once), RADIUS moving the address underneath does not move the operator's
# binding; deleting it gives the address back to the RADIUS session, and deleting an API /24 gives
# the RADIUS sessions inside it theirs. `account list` says since when, by whom and why each
# account is suspended. A resume, kill -9, restart:
# resumed stays resumed and delivers. operator.db is 0640.
#
# Usage (root):  tests/e2e/operator_state_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

e2e_begin operator_state_e2e "${1:-${SEKISHOD:-}}" radclient swaks /usr/bin/python3
ctl="${2:-}"
[ -x "$ctl" ] || { echo "operator_state_e2e: sekishoctl not executable: '$ctl'" >&2; exit 1; }
ctl="$(realpath "$ctl")"
sock="$TMP/api.sock"

{
  e2e_lab_policy
  e2e_radius_section "$TMP/bindings.sqlite"
  cat <<EOF
events:
  aggregate_window: 0s
inspection:
  rules:
    - {id: quarantined, pattern: 'quarantineword', where: body, score: 1, action: quarantine}
EOF
} >"$TMP/policy.yaml"

netlab_up --gateway || abort "lab setup failed"
netlab_start_sinks || abort "sinks"

run=0
start_daemon() {
  run=$((run + 1))
  e2e_start_sekishod "$NETLAB_LOGDIR/sekishod-$run.log" --policy "$TMP/policy.yaml" --events "$TMP/events.jsonl" \
    --api-socket "$sock"
  local i
  for ((i = 0; i < 50; i++)); do [ -S "$sock" ] && break; sleep 0.1; done
}
kill9_and_restart() {
  kill -9 "$daemon_pid"
  wait "$daemon_pid" 2>/dev/null
  rm -f "$sock"
  start_daemon
}

acct() { # ATTRIBUTES: radclient in the gateway's namespace; fails unless answered
  echo "$1" | timeout 20 ip netns exec "$NETLAB_NS_GW" radclient -x -r 1 -t 2 -S "$TMP/secret" \
    127.0.0.1:1813 acct 2>&1 | grep -q "Received Accounting-Response"
}
nas="NAS-IP-Address = 192.0.2.1"
t=$(($(date +%s) - 100))
session() { # KIND USER SESSION ADDRESS-ATTRIBUTE TIME
  acct "Acct-Status-Type = $1, User-Name = \"$2\", Acct-Session-Id = \"$3\", $4, $nas, Event-Timestamp = $5" ||
    fail "RADIUS $1 of $2 not answered"
}

# SMTP through the relay (OP25B lets every subscriber reach it) from SOURCE: 0 when delivered.
smtp_from() { # SOURCE [BODY]
  timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_RELAY_V4" --port 25 --timeout 5 \
    --local-interface "$1" --from a@example.jp --to b@example.net --body "${2:-hello}" >"$TMP/swaks.log" 2>&1
}
suspended_list() { "$ctl" --socket "$sock" --json account list --suspended |
  /usr/bin/python3 -c 'import json,sys; print(" ".join(sorted(a["account"] for a in json.load(sys.stdin)["accounts"])))'; }
suspended_count() { "$ctl" --socket "$sock" --json status | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["subscribers"]["suspended"])'; }
bound_to() { # PREFIX: the account the data plane binds it to
  "$ctl" --socket "$sock" --json bindings list |
    /usr/bin/python3 -c 'import json,sys; print(" ".join(b["account"] for b in json.load(sys.stdin)["bindings"] if b["prefix"] == sys.argv[1]))' "$1"
}

start_daemon
session Start alice@example.jp s1 "Framed-IP-Address = 198.51.100.7" "$t"
session Start bob@example.jp s2 "Framed-IP-Address = 198.51.100.8" "$t"
session Start carol@example.jp s3 "Framed-IP-Address = 198.51.100.130" "$t"
session Start dave@example.jp s4 "Framed-IP-Address = 198.51.100.20" "$t"

# Typo protection: an account never seen.
ctl_expect 3 "account suspend of an account never seen" account suspend nobody@example.jp
contains "it says no such account and how to insist" "no such account: nobody@example.jp"
contains "naming the flag" "--create"
ctl_expect 3 "account resume of an account never seen" account resume nobody@example.jp
ctl_expect 0 "account suspend --create" account suspend zed@example.jp --create
contains "the CLI says it is a new account" "zed@example.jp suspended (a new account: --create)"

ctl_expect 0 "account suspend alice" account suspend alice@example.jp
ctl_expect 0 "account suspend bob" account suspend bob@example.jp
[ "$(suspended_list)" = "alice@example.jp bob@example.jp zed@example.jp" ] && pass "three suspended, nobody not created" ||
  fail "suspended: $(suspended_list)"

# The store cannot take the change (another process holds operator.db's write lock): refused with
# the reason, nothing changed, the same change goes through once the lock is gone.
/usr/bin/python3 - "$TMP/state/operator.db" <<'EOF' &
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
time.sleep(2)
db.execute("ROLLBACK")
EOF
locker=$!
sleep 0.5
ctl_expect 1 "account suspend while operator.db is locked" account suspend dave@example.jp
contains "it says the operator state cannot be written" "the operator state cannot be written"
contains "and why" "database is locked"
[ "$(suspended_list)" = "alice@example.jp bob@example.jp zed@example.jp" ] && pass "nothing changed: dave not suspended" ||
  fail "suspended after the refused change: $(suspended_list)"
wait "$locker"
ctl_expect 0 "the same suspend after the lock is gone" account suspend dave@example.jp
ctl_expect 0 "and resume dave" account resume dave@example.jp

# Typo protection: a prefix outside every subscriber range.
ctl_expect 4 "bindings add outside the subscriber ranges" bindings add 203.0.113.50 shop@example.jp
contains "the error names the prefix" "203.0.113.50/32 is outside every subscriber range"
contains "and the ranges" "198.51.100.0/24, 2001:db8:100::/40, 198.51.100.128/28, 2001:db8:1ff::/48"
ctl_expect 0 "bindings add --force outside the ranges" bindings add 203.0.113.50 shop@example.jp --force
contains "the CLI says it was forced" "outside the subscriber ranges (--force)"

# An API binding over a RADIUS session: said in words, recorded in the audit trail.
ctl_expect 0 "bindings add over dave's RADIUS session" bindings add 198.51.100.20 erin@example.jp
contains "the CLI names the session it overrode" "overrode dave@example.jp's RADIUS session s4 (NAS 192.0.2.1, 198.51.100.20/32"
sleep 0.3
if grep '"endpoint":"bindings_add"' "$TMP/events.jsonl" | grep '"prefix":"198.51.100.20/32"' |
  grep -q '"overrode":\[{"account":"dave@example.jp"'; then pass "the audit trail records what was overridden"; else
  fail "audit: $(grep '"endpoint":"bindings_add"' "$TMP/events.jsonl" | tail -n 1)"; fi
ctl_expect 3 "bindings del of an address not bound" bindings del 198.51.100.99
contains "saying it is not bound" "198.51.100.99/32 is not bound"
sleep 0.3
grep '"endpoint":"bindings_del"' "$TMP/events.jsonl" | tail -n 1 | grep -q '"status":404' &&
  pass "the refused del is audited as 404" || fail "audit of the del: $(grep bindings_del "$TMP/events.jsonl" | tail -n 1)"

# RADIUS moves the address underneath: the operator's binding stays.
session Start frank@example.jp s5 "Framed-IP-Address = 198.51.100.20" $((t + 10))
[ "$(bound_to 198.51.100.20/32)" = "erin@example.jp" ] && pass "a RADIUS Start on .20 leaves the API binding" ||
  fail ".20 bound to '$(bound_to 198.51.100.20/32)' after frank's Start"

# A content rule's quarantine verdict suspends carol from the data plane.
smtp_from 198.51.100.130 "a quarantineword here"
for _ in $(seq 1 20); do [[ "$(suspended_list)" == *carol@example.jp* ]] && break; sleep 0.1; done
[[ "$(suspended_list)" == *carol@example.jp* ]] && pass "the quarantine verdict suspended carol" ||
  fail "carol not suspended: $(suspended_list)"
sleep 0.5   # the control thread stores it within ~200 ms

if smtp_from 198.51.100.7; then fail "alice (suspended) delivered before the restart"; else
  pass "alice (suspended) refused before the restart"; fi

# kill -9 and a restart with the same state directory.
kill9_and_restart
if smtp_from 198.51.100.7; then fail "alice delivered right after the restart"; else
  pass "alice (suspended) refused by the first SMTP session after the restart"; fi
[ "$(suspended_list)" = "alice@example.jp bob@example.jp carol@example.jp zed@example.jp" ] &&
  pass "after kill -9: alice, bob, carol (quarantine) and zed still suspended" || fail "suspended after restart: $(suspended_list)"
[ "$(suspended_count)" = 4 ] && pass "status: 4 suspended" || fail "status: $(suspended_count) suspended"
ctl_expect 0 "status" status
contains "status says it in words" "(4 suspended)"
# When and by whom each was suspended, from operator.db, after the restart.
"$ctl" --socket "$sock" --json account list --suspended >"$TMP/suspended.json"
if /usr/bin/python3 - "$TMP/suspended.json" "$t" <<'PY'; then pass "account list: since, since_utc, caller and reason of each suspension"; else fail "account list --json: $(cat "$TMP/suspended.json")"; fi
import json, sys, time
accounts = {a["account"]: a for a in json.load(open(sys.argv[1]))["accounts"]}
t = int(sys.argv[2])
for name, a in accounts.items():
    assert t <= a["since"] <= time.time() + 1, a
    assert a["since_utc"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a["since"])), a
assert accounts["carol@example.jp"]["caller"] == "quarantine", accounts
assert accounts["carol@example.jp"]["reason"] == "a content rule's quarantine verdict", accounts
assert accounts["bob@example.jp"]["caller"] not in ("", "quarantine") and accounts["bob@example.jp"]["reason"] == "", accounts
PY
ctl_expect 0 "account list --suspended" account list --suspended
carol_since=$(/usr/bin/python3 -c 'import json,sys; a=[a for a in json.load(open(sys.argv[1]))["accounts"] if a["account"]=="carol@example.jp"][0]; print(a["since_utc"], "(%d)" % a["since"])' "$TMP/suspended.json")
contains "the CLI says when and why carol was suspended" "suspended since $carol_since by quarantine: a content rule's quarantine verdict"
contains "and who suspended bob" "$(/usr/bin/python3 -c 'import json,sys; a=[a for a in json.load(open(sys.argv[1]))["accounts"] if a["account"]=="bob@example.jp"][0]; print("suspended since %s (%d) by %s" % (a["since_utc"], a["since"], a["caller"]))' "$TMP/suspended.json")"
[ "$(bound_to 198.51.100.20/32)" = "erin@example.jp" ] && pass "the API binding .20 -> erin is back, over frank's RADIUS session" ||
  fail ".20 bound to '$(bound_to 198.51.100.20/32)' after the restart"
[ "$(bound_to 203.0.113.50/32)" = "shop@example.jp" ] && pass "the forced API binding is back" || fail "203.0.113.50: '$(bound_to 203.0.113.50/32)'"
log1="$NETLAB_LOGDIR/sekishod-2.log"
restored_line=$(grep -n "restored 4 suspensions and 2 API bindings from $TMP/state/operator.db" "$log1" | cut -d: -f1)
start_line=$(grep -n "sekishod: forwarding" "$log1" | head -n 1 | cut -d: -f1)
if [ -n "$restored_line" ] && [ -n "$start_line" ] && [ "$restored_line" -lt "$start_line" ]; then
  pass "restored before the ports start (log line $restored_line < $start_line)"; else
  fail "restore line '$restored_line', start line '$start_line' in $log1"; head -n 5 "$log1"; fi
mode=$(stat -c %a "$TMP/state/operator.db")
[ "$mode" = 640 ] && pass "operator.db is 0640" || fail "operator.db mode $mode"

# A policy with a static binding of the same address: the API binding still wins.
sed 's/^subscribers:$/subscribers:\n  bindings: [{prefix: 198.51.100.20\/32, account: static@example.jp}]/' "$TMP/policy.yaml" \
  >"$TMP/static.yaml"
ctl_expect 0 "policy apply with a static binding of .20" policy apply "$TMP/static.yaml"
[ "$(bound_to 198.51.100.20/32)" = "erin@example.jp" ] && pass "the API binding stays over the policy's static one" ||
  fail ".20 bound to '$(bound_to 198.51.100.20/32)' after the policy apply"

# Part of an API binding cannot be deleted on its own (the binding would put it back at once).
ctl_expect 0 "bindings add of a /30 around .20" bindings add 198.51.100.20/30 erin@example.jp
ctl_expect 4 "bindings del of .21 inside the API /30" bindings del 198.51.100.21
contains "it names the API binding to delete" "198.51.100.21/32 overlaps the API binding 198.51.100.20/30 of erin@example.jp"
ctl_expect 0 "bindings del of the /30" bindings del 198.51.100.20/30
contains "the /32 API binding inside it keeps .20" "198.51.100.20/32 back to erin@example.jp (api)"

# The operator deletes the binding: the RADIUS session holding the address gets it back.
ctl_expect 0 "bindings del of the API binding" bindings del 198.51.100.20
contains "the CLI says who has it back" "198.51.100.20/32 back to frank@example.jp (radius)"
[ "$(bound_to 198.51.100.20/32)" = "frank@example.jp" ] && pass ".20 is frank's again" || fail ".20: '$(bound_to 198.51.100.20/32)'"

# An API binding wider than RADIUS sessions: deleting it gives each session inside it its address back.
session Start grace@example.jp s6 "Framed-IP-Address = 198.51.100.40" $((t + 20))
session Start heidi@example.jp s7 "Framed-IP-Address = 198.51.100.41" $((t + 20))
ctl_expect 0 "bindings add of the /24 over the sessions" bindings add 198.51.100.0/24 erin@example.jp --force
[ "$(bound_to 198.51.100.40/32)" = "erin@example.jp" ] && pass "the /24 holds grace's .40 for erin" || fail ".40: '$(bound_to 198.51.100.40/32)'"
ctl_expect 0 "bindings del of the /24" bindings del 198.51.100.0/24
contains "the CLI says grace has .40 back" "198.51.100.40/32 back to grace@example.jp (radius)"
contains "and heidi .41" "198.51.100.41/32 back to heidi@example.jp (radius)"
[ "$(bound_to 198.51.100.40/32) $(bound_to 198.51.100.41/32) $(bound_to 198.51.100.20/32)" = \
  "grace@example.jp heidi@example.jp frank@example.jp" ] && pass "bindings list: .40 grace, .41 heidi, .20 frank again" ||
  fail "after the /24 went: .40 '$(bound_to 198.51.100.40/32)' .41 '$(bound_to 198.51.100.41/32)' .20 '$(bound_to 198.51.100.20/32)'"
ctl_expect 0 "whois 198.51.100.41" whois 198.51.100.41
contains "whois names heidi as bound now" "bound now to heidi@example.jp"

# Resume, kill -9, restart: resumed stays resumed and delivers.
ctl_expect 0 "account resume alice" account resume alice@example.jp
kill9_and_restart
[ "$(suspended_list)" = "bob@example.jp carol@example.jp zed@example.jp" ] && pass "after kill -9: alice stays resumed" ||
  fail "suspended after the second restart: $(suspended_list)"
if smtp_from 198.51.100.7; then pass "alice delivers after the restart"; else fail "alice refused: $(tail -n 3 "$TMP/swaks.log")"; fi
[ "$(bound_to 198.51.100.20/32)" = "frank@example.jp" ] && pass "the deleted API binding stays deleted" ||
  fail ".20: '$(bound_to 198.51.100.20/32)'"

e2e_stop_sekishod
e2e_end
