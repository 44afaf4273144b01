#!/usr/bin/env bash
# radius_e2e.sh - subscriber identity end to end: radclient (freeradius-utils) sends real
# Accounting-Requests to a live sekishod, which binds the addresses to accounts in the data
# plane and in the SQLite history; a per-account limit then holds across the account's two
# addresses (smtp-source through the gateway); --whois answers from the history while the
# daemon runs; a restart restores the open bindings.
#
# Usage (root):  tests/e2e/radius_e2e.sh PATH/TO/sekishod
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

e2e_begin radius_e2e "${1:-${SEKISHOD:-}}" radclient /usr/sbin/smtp-sink /usr/sbin/smtp-source /usr/bin/python3

secret="e2e-$RANDOM-$RANDOM-shared-secret"
printf '%s' "$secret" >"$TMP/secret"
printf 'wrong-%s' "$secret" >"$TMP/wrong-secret"
cat >"$TMP/radius-clients.yaml" <<EOF
clients:
  - address: 127.0.0.1
    secret: "$secret"
    name: bng-e2e
EOF
{
  e2e_lab_policy
  cat <<EOF
radius:
  listen: 127.0.0.1:1813
  clients_file: $TMP/radius-clients.yaml
history:
  database: $TMP/bindings.sqlite
  retention: 90d
limits:
  - name: msgs-per-account
    scope: account
    measure: messages
    max: 3
    window: 1h
    action: tempfail
EOF
} >"$TMP/policy.yaml"

netlab_up --gateway || abort "lab setup failed"
for a in 198.51.100.8 198.51.100.9; do netlab_exec_sub ip addr add "$a/24" dev sub0 || abort "addr $a"; done
mkdir -p "$TMP/mx" && chmod 777 "$TMP/mx"
netlab_spawn up "$NETLAB_LOGDIR/sink-mx.log" /usr/sbin/smtp-sink -u nobody -d "$TMP/mx/%M%S." \
  "$NETLAB_MX_V4:587" 64 || abort "smtp-sink"
netlab_wait_listen up "$NETLAB_MX_V4" 587 5 || abort "MX sink not listening"

start_daemon() { # LOG SUMMARY
  e2e_start_sekishod "$1" --policy "$TMP/policy.yaml" --events "$TMP/events.jsonl" --summary "$2"
}
stop_daemon() { e2e_stop_sekishod; }

acct() { # SECRETFILE ATTRIBUTES: radclient in the gateway's namespace, one try
  echo "$2" | timeout 20 ip netns exec "$NETLAB_NS_GW" radclient -x -r 1 -t 2 -S "$1" 127.0.0.1:1813 acct 2>&1
}
expect_response() { # DESCRIPTION ATTRIBUTES
  local out
  out="$(acct "$TMP/secret" "$2")"
  if echo "$out" | grep -q "Received Accounting-Response"; then pass "$1: Accounting-Response"; else
    fail "$1: no Accounting-Response"; echo "$out" | tail -n 5 | sed 's/^/    /'; fi
}

start_daemon "$NETLAB_LOGDIR/sekishod-1.log" "$TMP/summary-1.json"
now=$(date +%s)
expect_response "Start carol on .7" "Acct-Status-Type = Start, User-Name = \"carol@example.jp\", Acct-Session-Id = \"c1\", Framed-IP-Address = 198.51.100.7, NAS-IP-Address = 192.0.2.1, Event-Timestamp = $((now - 60))"
expect_response "Start carol on .8" "Acct-Status-Type = Start, User-Name = \"carol@example.jp\", Acct-Session-Id = \"c2\", Framed-IP-Address = 198.51.100.8, NAS-IP-Address = 192.0.2.1, Event-Timestamp = $((now - 60))"
expect_response "Start dave on .9" "Acct-Status-Type = Start, User-Name = \"dave@example.jp\", Acct-Session-Id = \"d1\", Framed-IP-Address = 198.51.100.9, NAS-IP-Address = 192.0.2.1, Event-Timestamp = $((now - 60))"
out="$(acct "$TMP/wrong-secret" "Acct-Status-Type = Start, User-Name = \"mallory@example.jp\", Acct-Session-Id = \"m1\", Framed-IP-Address = 198.51.100.9, NAS-IP-Address = 192.0.2.1")"
if echo "$out" | grep -q "Received Accounting-Response"; then fail "wrong secret was answered"; else
  pass "wrong secret: no response ($(echo "$out" | grep -m1 -o 'No reply from server[^)]*' || echo dropped))"; fi

from() { netlab_exec_sub ip route change 203.0.113.0/24 dev sub0 src "$1"; }
send() { # ADDR COUNT LOG
  from "$1"
  timeout 60 ip netns exec "$NETLAB_NS_SUB" /usr/sbin/smtp-source -m "$2" -s 1 -l 512 \
    -f sender@example.jp -t rcpt@example.net "$NETLAB_MX_V4:587" >"$3" 2>&1
}
delivered() { find "$TMP/mx" -type f | wc -l; }
send 198.51.100.7 2 "$TMP/carol-7.log"
send 198.51.100.8 3 "$TMP/carol-8.log"
carol=$(delivered)
send 198.51.100.9 3 "$TMP/dave.log"
dave=$(($(delivered) - carol))
if [ "$carol" = 3 ] && grep -q "421 4.7.0" "$TMP/carol-8.log"; then
  pass "carol (RADIUS-bound to .7 and .8): 3 delivered, then 421 4.7.0 — the account limit spans both addresses"
else
  fail "carol: $carol delivered (want 3); $(tail -n 1 "$TMP/carol-8.log")"
fi
if [ "$dave" = 3 ]; then pass "dave on .9: 3 of 3 delivered"; else fail "dave: $dave delivered, want 3"; fi

# The abuse desk's question, answered while the daemon runs.
w="$("$SEKISHOD" --whois 198.51.100.8 --policy "$TMP/policy.yaml" --json)"
if echo "$w" | /usr/bin/python3 -c 'import json,sys; b=json.load(sys.stdin)["bindings"]; assert len(b)==1 and b[0]["account"]=="carol@example.jp" and b[0]["session_id"]=="c2" and b[0]["stop"] is None, b'; then
  pass "whois 198.51.100.8 now: carol@example.jp, session c2, open"
else
  fail "whois 198.51.100.8: $w"
fi
expect_response "Stop carol on .7" "Acct-Status-Type = Stop, User-Name = \"carol@example.jp\", Acct-Session-Id = \"c1\", Framed-IP-Address = 198.51.100.7, NAS-IP-Address = 192.0.2.1, Event-Timestamp = $now, Acct-Session-Time = 60"
"$SEKISHOD" --whois 198.51.100.7 --at "$((now + 10))" --history "$TMP/bindings.sqlite" >"$TMP/whois-after.txt"
rc_after=$?
"$SEKISHOD" --whois 198.51.100.7 --at "$((now - 30))" --history "$TMP/bindings.sqlite" >"$TMP/whois-during.txt"
rc_during=$?
if [ "$rc_after" = 3 ] && [ "$rc_during" = 0 ] && grep -q "carol@example.jp" "$TMP/whois-during.txt"; then
  pass "whois 198.51.100.7: carol during the session, nobody after its Stop (exit 3)"
else
  fail "whois .7: during rc=$rc_during '$(cat "$TMP/whois-during.txt")', after rc=$rc_after '$(cat "$TMP/whois-after.txt")'"
fi

if stop_daemon; then pass "sekishod exited 0"; else fail "sekishod exit status $?"; fi
/usr/bin/python3 - "$TMP/summary-1.json" <<'EOF' && pass "RADIUS counters: 4 accepted, 1 bad authenticator" || fail "RADIUS counters"
import json, sys
r = json.load(open(sys.argv[1]))["radius"]
assert r["accepted"] == 4 and r["starts"] == 3 and r["stops"] == 1 and r["bad_authenticator"] == 1, r
EOF

# Restart: the open bindings (carol on .8, dave on .9) come back from the history.
start_daemon "$NETLAB_LOGDIR/sekishod-2.log" "$TMP/summary-2.json"
stop_daemon
/usr/bin/python3 - "$TMP/summary-2.json" <<'EOF' && pass "restart restored the 2 open bindings" || fail "restart restore"
import json, sys
s = json.load(open(sys.argv[1]))["subscribers"]
assert s["restored_from_history"] == 2 and s["bindings"] == 2, s
EOF

e2e_end
