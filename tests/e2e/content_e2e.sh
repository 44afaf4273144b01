#!/usr/bin/env bash
# content_e2e.sh - content inspection with real clients: swaks sends an ISO-2022-JP base64
# message and a UTF-8 quoted-printable one, both with a Japanese blackword, and a clean one,
# through a live sekishod; the rule fires on the two (the client sees 421, the sink gets
# nothing), not on the clean one (delivered); then a smtp-source burst of one message to many
# recipients trips the campaign detector.
#
# Usage (root):  tests/e2e/content_e2e.sh PATH/TO/sekishod
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

e2e_begin content_e2e "${1:-${SEKISHOD:-}}" swaks /usr/sbin/smtp-sink /usr/sbin/smtp-source iconv base64 /usr/bin/python3

{
  e2e_lab_policy
  cat <<'EOF'
events:
  aggregate_window: 0s
inspection:
  rules:
    - {id: blackword-deai, pattern: "出会い", flags: [utf8], where: body, score: 10}
  campaign:
    recipients: {max: 20, window: 1h, score: 5}
  message_actions:
    - {score: 5, action: event}
    - {score: 10, action: tempfail}
EOF
} >"$TMP/policy.yaml"

netlab_up --gateway || abort "lab setup failed"
mkdir -p "$TMP/mx" && chmod 777 "$TMP/mx"
netlab_spawn up "$NETLAB_LOGDIR/sink.log" /usr/sbin/smtp-sink -u nobody -d "$TMP/mx/%M%S." "$NETLAB_MX_V4:587" 64 ||
  abort "smtp-sink"
netlab_wait_listen up "$NETLAB_MX_V4" 587 5 || abort "sink not listening"
e2e_start_sekishod "$NETLAB_LOGDIR/sekishod.log" --policy "$TMP/policy.yaml" \
  --events "$TMP/events.jsonl" --summary "$TMP/summary.json" --metrics 127.0.0.1:9108
delivered() { find "$TMP/mx" -type f | wc -l; }

# send NAME HEADERS BODY: swaks with the given MIME headers and (already encoded) body.
send() {
  timeout 30 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 587 --timeout 10 \
    --from sender@example.jp --to rcpt@example.net --add-header "MIME-Version: 1.0" $2 \
    --header "Subject: test $1" --body "$3" >"$TMP/swaks-$1.log" 2>&1
}
jis_b64="$(printf '今すぐ出会い系で\n' | iconv -f UTF-8 -t ISO-2022-JP | base64 -w0)"
utf8_qp="$(printf '素敵な出会いがあります' | /usr/bin/python3 -c 'import quopri,sys; sys.stdout.write(quopri.encodestring(sys.stdin.buffer.read()).decode())')"

before=$(delivered)
send jis "--add-header Content-Type:text/plain;charset=ISO-2022-JP --add-header Content-Transfer-Encoding:base64" "$jis_b64"
after_jis=$(delivered)
send qp "--add-header Content-Type:text/plain;charset=utf-8 --add-header Content-Transfer-Encoding:quoted-printable" "$utf8_qp"
after_qp=$(delivered)
send clean "--add-header Content-Type:text/plain;charset=utf-8" "See you at ten."
after_clean=$(delivered)

for m in jis qp; do
  if grep -q "421 4.7.0" "$TMP/swaks-$m.log"; then pass "$m: the blackword rule refused it (swaks saw 421 4.7.0)"; else
    fail "$m: no 421"; tail -n 6 "$TMP/swaks-$m.log" | sed 's/^/    /'; fi
done
[ "$after_jis" = "$before" ] && [ "$after_qp" = "$before" ] && pass "the sink stored neither refused message" ||
  fail "refused messages reached the sink ($before -> $after_jis -> $after_qp)"
[ "$after_clean" = $((before + 1)) ] && pass "the clean message was delivered" || fail "clean message not delivered"

# A campaign: one message to 30 recipients in one session (max 20 per subscriber and fingerprint).
ip netns exec "$NETLAB_NS_SUB" /usr/sbin/smtp-source -m 1 -s 1 -r 30 -l 2048 -f sender@example.jp \
  -t rcpt@example.net "$NETLAB_MX_V4:587" >"$TMP/burst.log" 2>&1
sleep 0.5

metric="$(netlab_exec_gw curl -sf http://127.0.0.1:9108/metrics | grep '^sekisho_rule_matches_total{rule="blackword-deai"}')"
[ "${metric##* }" = 2 ] && pass "metrics: $metric" || fail "rule match metric: '$metric'"

e2e_stop_sekishod && pass "sekishod exited 0" || fail "sekishod exit status"

/usr/bin/python3 - "$TMP/events.jsonl" "$TMP/summary.json" <<'PY' && pass "events: the rule on the two, the campaign on the burst, no text" || fail "events"
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
verdicts = [e for e in events if e["type"] == "content_verdict"]
ruled = [e for e in verdicts if e["rules"] == ["blackword-deai"]]
assert len(ruled) == 2 and all(e["action"] == "tempfail" and e["score"] >= 10 for e in ruled), verdicts
campaign = [e for e in verdicts if not e["rules"] and e["score"] == 5 and e["recipients"] == 30]
assert len(campaign) == 1, verdicts
assert "出会い" not in open(sys.argv[1], encoding="utf-8").read()
s = json.load(open(sys.argv[2]))
assert s["inspection"]["campaign_recipients"] == 1 and s["inspection"]["messages"] == 4, s["inspection"]
print("content verdicts:", len(verdicts))
PY

e2e_end
