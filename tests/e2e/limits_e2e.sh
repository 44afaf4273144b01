#!/usr/bin/env bash
# limits_e2e.sh - end-to-end send-rate limits with real clients: smtp-source and swaks in a
# subscriber namespace, smtp-sink upstream, a live sekishod bridging them.
#
# Usage (root):  tests/e2e/limits_e2e.sh PATH/TO/sekishod [WORKERS]
#   - account alice@example.jp holds 198.51.100.7 and .8, bob@example.jp holds .9 (static
#     bindings in the policy); limit: 5 messages per hour per account, action tempfail.
#     smtp-source sends 3 messages from .7, then tries 5 from .8: exactly 2 more are delivered
#     and the 6th gets "421 4.7.0" (smtp-source stops there); bob's 2 from .9 are delivered.
#   - rejected recipients: a sink that answers 550 to every RCPT; limit 2 per hour per account:
#     bob's third rejected recipient gets the 421 instead of the 550.
#   With WORKERS=2 the counts must be the same: the account's cells are shared by the workers.
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

workers="${2:-1}"
e2e_begin limits_e2e "${1:-${SEKISHOD:-}}" swaks /usr/sbin/smtp-sink /usr/sbin/smtp-source /usr/bin/python3

cat >"$TMP/policy.yaml" <<'EOF'
version: 1
ports:
  smtp: [25]
  submission: [587, 465]
subscribers:
  dynamic: [198.51.100.0/24, "2001:db8:100::/40"]
  static: [198.51.100.128/28, "2001:db8:1ff::/48"]
  bindings:
    - {prefix: 198.51.100.7, account: alice@example.jp}
    - {prefix: 198.51.100.8, account: alice@example.jp}
    - {prefix: 198.51.100.9, account: bob@example.jp}
relays: [203.0.113.10/32]
op25b:
  mode: enforce
  action: reset
limits:
  - name: msgs-per-account
    scope: account
    measure: messages
    max: 5
    window: 1h
    action: tempfail
  - name: rejected-rcpts
    scope: account
    measure: rejected_recipients
    max: 2
    window: 1h
    action: tempfail
EOF

netlab_up --gateway || abort "lab setup failed"
for a in 198.51.100.8 198.51.100.9; do
  netlab_exec_sub ip addr add "$a/24" dev sub0 || abort "cannot add $a"
done

# Sinks: an accepting one on the MX's submission port, dumping each message to a file, and one
# on the relay's submission port that rejects every RCPT TO with a 5xx.
mkdir -p "$TMP/mx" && chmod 777 "$TMP/mx"   # smtp-sink writes as nobody
netlab_spawn up "$NETLAB_LOGDIR/sink-mx.log" /usr/sbin/smtp-sink -u nobody -d "$TMP/mx/%M%S." \
  "$NETLAB_MX_V4:587" 64 || abort "smtp-sink"
netlab_spawn up "$NETLAB_LOGDIR/sink-reject.log" /usr/sbin/smtp-sink -u nobody -f RCPT \
  "$NETLAB_RELAY_V4:587" 64 || abort "smtp-sink -f"
netlab_wait_listen up "$NETLAB_MX_V4" 587 5 || abort "MX sink not listening"
netlab_wait_listen up "$NETLAB_RELAY_V4" 587 5 || abort "rejecting sink not listening"

e2e_start_sekishod "$NETLAB_LOGDIR/sekishod.log" --policy "$TMP/policy.yaml" --workers "$workers" \
  --events "$TMP/events.jsonl" --summary "$TMP/summary.json"
echo "limits_e2e: gateway forwards ($workers worker(s))"

# from ADDR: the source the kernel picks for the upstream subnet (smtp-source cannot bind).
from() { netlab_exec_sub ip route change 203.0.113.0/24 dev sub0 src "$1"; }

# send ADDR COUNT LOG: COUNT messages, one session each, one at a time.
send() {
  from "$1"
  timeout 60 ip netns exec "$NETLAB_NS_SUB" /usr/sbin/smtp-source -m "$2" -s 1 -l 512 \
    -f sender@example.jp -t rcpt@example.net "$NETLAB_MX_V4:587" >"$3" 2>&1
}
delivered() { find "$TMP/mx" -type f | wc -l; }

send 198.51.100.7 3 "$TMP/alice-7.log"
after_7=$(delivered)
send 198.51.100.8 5 "$TMP/alice-8.log"
after_8=$(delivered)
send 198.51.100.9 2 "$TMP/bob.log"
after_bob=$(delivered)

if [ "$after_7" = 3 ]; then pass "alice from .7: 3 of 3 delivered"; else fail "alice from .7: $after_7 delivered, expected 3"; fi
if [ "$((after_8 - after_7))" = 2 ]; then
  pass "alice from .8: 2 of 5 delivered (account limit 5 reached over two addresses)"
else
  fail "alice from .8: $((after_8 - after_7)) delivered, expected 2"
fi
if grep -q "421" "$TMP/alice-8.log"; then
  pass "smtp-source saw the 421 tempfail: $(grep -m1 421 "$TMP/alice-8.log" | cut -c1-100)"
else
  fail "smtp-source did not report a 421"; sed 's/^/    /' "$TMP/alice-8.log" | tail -n 5
fi
if [ "$((after_bob - after_8))" = 2 ]; then pass "bob from .9: 2 of 2 delivered (another account, untouched)"; else
  fail "bob from .9: $((after_bob - after_8)) delivered, expected 2"; fi

# Rejected recipients: bob sends to a sink that refuses every recipient.
from 198.51.100.9
for i in 1 2 3; do
  timeout 30 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_RELAY_V4" --port 587 \
    --from bob@example.jp --to "nobody$i@example.net" --timeout 10 >"$TMP/reject-$i.log" 2>&1
done
if grep -q "<\*\* *5[0-9][0-9]" "$TMP/reject-1.log" && grep -q "<\*\* *5[0-9][0-9]" "$TMP/reject-2.log"; then
  pass "first two fictitious recipients got the server's 5xx"
else
  fail "expected 5xx for the first two recipients"; tail -n 5 "$TMP/reject-1.log" | sed 's/^/    /'
fi
if grep -q "421 4.7.0" "$TMP/reject-3.log"; then
  pass "third rejected recipient tripped the limit: swaks saw 421 4.7.0"
else
  fail "third rejected recipient: no 421"; tail -n 8 "$TMP/reject-3.log" | sed 's/^/    /'
fi

if e2e_stop_sekishod; then pass "sekishod exited 0 after SIGTERM"; else fail "sekishod exit status $?"; fi

/usr/bin/python3 - "$TMP/summary.json" "$TMP/events.jsonl" <<'EOF' && pass "summary and events agree" || fail "summary/events check"
import json, sys
s = json.load(open(sys.argv[1]))
events = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
limit_events = [e for e in events if e["type"] == "limit_exceeded"]
msgs = [e for e in limit_events if e["limit"] == "msgs-per-account"]
rej = [e for e in limit_events if e["limit"] == "rejected-rcpts"]
# smtp-source gives up at the first 421 (fatal), so alice's 6th message is the one refused.
assert len(msgs) == 1, msgs
assert msgs[0]["account"] == "alice@example.jp" and msgs[0]["subscriber"] == "198.51.100.8", msgs
assert msgs[0]["measured"] == 6 and msgs[0]["max"] == 5, msgs   # the count it would have made
assert len(rej) == 1 and rej[0]["account"] == "bob@example.jp", rej
assert s["smtp"]["tempfails_sent"] == 2, s["smtp"]
assert s["smtp"]["messages"] == 11, s["smtp"]   # 3 + 3 (the last refused) + 2 smtp-source, 3 swaks
# Every session reported what it carried: the sessions' messages add up to the summary's,
# alice's under her account.
sessions = [e for e in events if e["type"] == "mail_session"]
assert sum(e["messages"] for e in sessions) == s["smtp"]["messages"], sessions
assert sum(e["recipients"] for e in sessions) == s["smtp"]["recipients"], sessions
alice = sum(e["messages"] for e in sessions if e["account"] == "alice@example.jp")
assert alice == 6, sessions   # 3 + 3 (the last refused, but attempted)
print("limit events:", len(limit_events), "tempfails:", s["smtp"]["tempfails_sent"],
      "sessions:", sum(e["count"] for e in sessions))
EOF

e2e_end
