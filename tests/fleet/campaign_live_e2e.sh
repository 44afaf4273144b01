#!/usr/bin/env bash
# campaign_live_e2e.sh - fleet-wide campaign counting in a live sekishod (--fleet) with a real
# Redis: the gateway's subscriber bit of a message reaches Redis; the rest of the fleet (29 other
# subscribers, set in Redis as other gateways would) comes back into the gateway's table, and the
# next copy of the message is judged a campaign (threshold 25) although this gateway saw one
# subscriber; Redis killed: mail flows, the verdict holds, the link is reported down; a new, empty
# Redis: the link comes back and the gateway sends its window's bits again. The recipients: the
# gateway's own count of the fingerprint in its field of the Redis hash, another gateway's field
# summed in, and `sekishoctl campaigns` showing both (the fleet's figures beside the local ones);
# after kill -9 of sekishod and a restart, the old process's count stays in the fleet's sum.
#
# Usage (root):  tests/fleet/campaign_live_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab or Redis is not available (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/../e2e/netlab.sh
source "$here/../e2e/netlab.sh"
# shellcheck source=SCRIPTDIR/../e2e/e2e_common.sh
source "$here/../e2e/e2e_common.sh"
# shellcheck source=SCRIPTDIR/fleet_stores.sh
source "$here/fleet_stores.sh"

e2e_begin campaign_live_e2e "${1:-${SEKISHOD:-}}" swaks /usr/sbin/smtp-sink redis-server redis-cli curl /usr/bin/python3
_campaign_cleanup() {
  local rc=$?
  fleet_stores_cleanup
  (exit "$rc")
  _e2e_cleanup
}
trap _campaign_cleanup EXIT
ctl="${2:-${SEKISHOCTL:-}}"
[ -x "$ctl" ] || abort "sekishoctl not executable: '$ctl'"
ctl="$(realpath "$ctl")"
sock="$TMP/api.sock"

fleet_stores_begin "$TMP/stores"
fleet_start_redis || abort "redis-server did not start"

{
  e2e_lab_policy
  cat <<'EOF'
events:
  aggregate_window: 0s
inspection:
  campaign:
    subscribers: {max: 25, window: 1h, score: 5}
  message_actions:
    - {score: 5, action: event}
EOF
} >"$TMP/policy.yaml"
cat >"$TMP/fleet.yaml" <<EOF
gateway: edge-live-1
redis:
  address: unix:$FLEET_DIR/redis.sock
  password_file: $FLEET_DIR/redis.password
sync_interval: 100ms
EOF

netlab_up --gateway || abort "lab setup failed"
mkdir -p "$TMP/mx" && chmod 777 "$TMP/mx"
netlab_spawn up "$NETLAB_LOGDIR/sink.log" /usr/sbin/smtp-sink -u nobody -d "$TMP/mx/%M%S." "$NETLAB_MX_V4:587" 64 ||
  abort "smtp-sink"
netlab_wait_listen up "$NETLAB_MX_V4" 587 5 || abort "sink not listening"
e2e_start_sekishod "$NETLAB_LOGDIR/sekishod.log" --policy "$TMP/policy.yaml" --fleet "$TMP/fleet.yaml" \
  --events "$TMP/events.jsonl" --metrics 127.0.0.1:9108 --api-socket "$sock"
e2e_wait_for_log "$NETLAB_LOGDIR/sekishod.log" "fleet: campaign: redis link up" 10 "sekishod"
pass "the campaign link came up"

delivered() { find "$TMP/mx" -type f | wc -l; }
metric() { netlab_exec_gw curl -sf http://127.0.0.1:9108/metrics | grep "^$1" | head -n 1 | awk '{print $NF}'; }
wait_metric() { # NAME VALUE-TEST SECONDS
  local deadline=$(($(date +%s) + $3)) v
  while :; do
    v="$(metric "$1")"
    [ -n "$v" ] && /usr/bin/python3 -c "import sys; v=float(sys.argv[1]); sys.exit(0 if $2 else 1)" "$v" && return 0
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
verdicts() { grep -c '"type":"content_verdict"' "$TMP/events.jsonl" 2>/dev/null || true; }
wait_verdicts() { # N: until N verdicts are in the event log (2 s at most)
  local i
  for i in $(seq 1 20); do [ "$(verdicts)" = "$1" ] && return 0; sleep 0.1; done
  return 1
}
send() {
  timeout 30 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 587 --timeout 10 \
    --from sender@example.jp --to "rcpt$1@example.net" --header "Subject: your reward is waiting" \
    --body "Congratulations! You have been selected to receive a special reward. Claim it today at http://reward.example.com/claim before it expires." \
    >"$TMP/swaks-$1.log" 2>&1
}
keys() { fleet_redis_cli --scan --pattern 'sekisho:campaign:3600s:*' | grep -Ev ':(hot|rcpt)$'; }

# 1. One subscriber, one message: its bit reaches Redis; no verdict (1 subscriber).
send 1 || fail "first message not sent"
deadline=$(($(date +%s) + 5))
until [ -n "$(keys)" ] || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.1; done
key="$(keys)"
[ "$(echo "$key" | grep -c .)" = 1 ] && [ "$(fleet_redis_cli BITCOUNT "$key")" = 1 ] &&
  pass "the gateway's subscriber bit is in Redis ($key)" || fail "key in Redis: '$key'"
ttl="$(fleet_redis_cli TTL "$key")"
[ "$ttl" -gt 3600 ] && [ "$ttl" -le 7200 ] && pass "the key expires after two windows (TTL $ttl)" || fail "TTL $ttl"
[ "$(verdicts)" = 0 ] && pass "one subscriber: no campaign verdict" || fail "verdicts after one message: $(verdicts)"

# 2. The rest of the fleet: 29 other subscribers' bits, as other gateways' SETBITs would leave them,
#    and the fingerprint in the window's hot set.
/usr/bin/python3 - "$key" >"$TMP/fleet-bits.txt" <<'PY'
import sys
print("\n".join(str(i) for i in range(0, 240, 8)))
PY
set_bits=0
while read -r bit; do
  [ "$(fleet_redis_cli GETBIT "$key" "$bit")" = 1 ] && continue
  [ "$set_bits" -ge 29 ] && break
  fleet_redis_cli SETBIT "$key" "$bit" 1 >/dev/null
  set_bits=$((set_bits + 1))
done <"$TMP/fleet-bits.txt"
fp="${key##*:}"
fleet_redis_cli SADD "${key%:*}:hot" "$fp" >/dev/null
[ "$(fleet_redis_cli BITCOUNT "$key")" = 30 ] && pass "the fleet holds 30 subscribers of the message" ||
  fail "fleet bitmap: $(fleet_redis_cli BITCOUNT "$key") bits"
wait_metric sekisho_fleet_campaign_merges_total 'v >= 1' 5 && pass "the gateway merged the fleet's bits" ||
  fail "no merge (merges $(metric sekisho_fleet_campaign_merges_total))"

# 2b. Recipients: this gateway's exact count (1) in its own field; another gateway's field (40) as
#     its HSET would leave it; the view shows the local figures and the fleet's.
fields="$(fleet_redis_cli HGETALL "$key:rcpt" | paste -sd' ')"
[[ "$fields" =~ ^edge-live-1/[0-9a-f]{16}\ 1$ ]] && pass "the gateway's recipients are its own field ($fields)" ||
  fail "recipients hash: '$fields'"
fleet_redis_cli HSET "$key:rcpt" "edge-live-2/00000000000000a2" 40 >/dev/null
view() { # FIELD: the fingerprint's FIELD in sekishoctl campaigns --json
  "$ctl" --socket "$sock" --json campaigns -n 5 2>/dev/null | /usr/bin/python3 -c '
import json, sys
rows = [c for c in json.load(sys.stdin)["campaigns"] if c["fingerprint"] == sys.argv[1]]
print(rows[0][sys.argv[2]] if rows else "absent")' "$fp" "$1"
}
deadline=$(($(date +%s) + 5))
until [ "$(view fleet_recipients)" = 41 ] || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.1; done
[ "$(view fleet_recipients)" = 41 ] && [ "$(view recipients)" = 1 ] &&
  pass "campaigns: fleet recipients 41 (this gateway's 1 and the other's 40), local 1" ||
  fail "campaigns: recipients '$(view recipients)', fleet_recipients '$(view fleet_recipients)'"
fs="$(view fleet_subscribers)"
[ "$fs" != absent ] && [ "$fs" -ge 29 ] 2>/dev/null && [ "$(view subscribers)" = 1 ] &&
  pass "campaigns: fleet subscribers $fs (30 bits) > this gateway's own 1" ||
  fail "campaigns: fleet_subscribers '$fs', subscribers '$(view subscribers)'"
[ "$(view over_subscribers)" = True ] && pass "campaigns: over the threshold (the workers' merged estimate)" ||
  fail "campaigns: over_subscribers '$(view over_subscribers)'"
wait_metric sekisho_fleet_campaign_recipients_sent_total 'v >= 1' 5 && pass "recipients writes counted" ||
  fail "sekisho_fleet_campaign_recipients_sent_total: '$(metric sekisho_fleet_campaign_recipients_sent_total)'"
ctl_expect 0 "campaigns (human)" campaigns --min-subscribers 20
contains "the fingerprint's line" "$fp"
contains "the fleet's columns" "FLEET_RECIPIENTS"
ctl_expect 4 "campaigns -n 1001 is refused" campaigns -n 1001
contains "the bound named" "argument 'n'"

# 3. The same message again from the same subscriber: a campaign, fleet-wide.
before=$(delivered)
send 2 || fail "second message not sent"
wait_verdicts 1 && pass "the next copy is a campaign verdict (fleet-wide)" || fail "verdicts: $(verdicts)"
grep '"type":"content_verdict"' "$TMP/events.jsonl" | grep -q "\"fingerprint\":\"$fp\"" &&
  pass "the verdict names the fingerprint of the Redis key" || fail "fingerprint $fp not in the verdict"
[ "$(delivered)" = $((before + 1)) ] && pass "the message was delivered (action: event)" || fail "not delivered"

# 4. Redis killed: mail flows, local counts hold (the merged bits stay), the link is reported down.
fleet_kill_redis
wait_metric 'sekisho_fleet_link_up{store="redis",concern="campaign"}' 'v == 0' 5 &&
  pass "link reported down" || fail "link_up after the kill: $(metric 'sekisho_fleet_link_up{')"
before=$(delivered)
send 3 || fail "message with Redis down not sent"
wait_verdicts 2
[ "$(delivered)" = $((before + 1)) ] && pass "mail flows with Redis down" || fail "not delivered with Redis down"
[ "$(verdicts)" = 2 ] && pass "detection goes on with Redis down (last known fleet state)" || fail "verdicts: $(verdicts)"
downs="$(metric 'sekisho_fleet_link_downs_total{store="redis",concern="campaign"}')"
[ "${downs%.*}" -ge 1 ] 2>/dev/null && pass "outage counted ($downs)" || fail "link downs: '$downs'"
grep -q "redis link down" "$NETLAB_LOGDIR/sekishod.log" && pass "the outage is logged" || fail "no log line"
grep -qF "$(cat "$FLEET_DIR/redis.password")" "$NETLAB_LOGDIR/sekishod.log" && fail "the password is in the log" ||
  pass "no credential in the log"

# 5. A new, empty Redis: the link comes back and the gateway sends its window's bits again.
fleet_start_redis || abort "redis-server did not restart"
wait_metric 'sekisho_fleet_link_up{store="redis",concern="campaign"}' 'v == 1' 10 &&
  pass "link back up" || fail "link_up after the restart: $(metric 'sekisho_fleet_link_up{')"
deadline=$(($(date +%s) + 5))
until [ "$(fleet_redis_cli BITCOUNT "$key")" = 30 ] || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.1; done
[ "$(fleet_redis_cli BITCOUNT "$key")" = 30 ] && pass "the window's 30 bits are in the new Redis again" ||
  fail "bits after the restart: $(fleet_redis_cli BITCOUNT "$key")"
# Its recipients too: three messages of one recipient each, all counted here, in its own field.
deadline=$(($(date +%s) + 5))
own_rcpt() { fleet_redis_cli HGETALL "$key:rcpt" | paste -sd' '; }
until [[ "$(own_rcpt)" =~ ^edge-live-1/[0-9a-f]{16}\ 3$ ]] || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.1; done
[[ "$(own_rcpt)" =~ ^edge-live-1/[0-9a-f]{16}\ 3$ ]] && pass "its recipients (3) are in the new Redis again" ||
  fail "recipients hash after the restart: '$(own_rcpt)'"
last="$(metric 'sekisho_fleet_last_sync_timestamp_seconds{store="redis",concern="campaign"}')"
/usr/bin/python3 -c "import sys,time; sys.exit(0 if abs(time.time() - float(sys.argv[1])) < 5 else 1)" "$last" &&
  pass "last sync is recent ($last)" || fail "last sync: '$last'"

# 6. kill -9 of sekishod and a restart: the new process counts from zero in a new field (a new boot
#    id); the old process's count (3) stays its own field, so the fleet's recipients keep it.
kill -9 "$daemon_pid"
wait "$daemon_pid" 2>/dev/null
e2e_start_sekishod "$NETLAB_LOGDIR/sekishod-2.log" --policy "$TMP/policy.yaml" --fleet "$TMP/fleet.yaml" \
  --events "$TMP/events.jsonl" --metrics 127.0.0.1:9108 --api-socket "$sock"
e2e_wait_for_log "$NETLAB_LOGDIR/sekishod-2.log" "fleet: campaign: redis link up" 10 "sekishod after kill -9"
send 4 || fail "message after the restart not sent"
deadline=$(($(date +%s) + 5))
until [ "$(view fleet_recipients)" = 4 ] || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.1; done
[ "$(view fleet_recipients)" = 4 ] && [ "$(view recipients)" = 1 ] &&
  pass "after kill -9: local recipients 1 (new process), fleet 4 (the old field's 3 kept)" ||
  fail "after kill -9: recipients '$(view recipients)', fleet_recipients '$(view fleet_recipients)'"
[ "$(fleet_redis_cli HLEN "$key:rcpt")" = 2 ] && pass "two fields: the old process's and the new one's" ||
  fail "fields after the restart: $(own_rcpt)"

e2e_stop_sekishod && pass "sekishod exited 0" || fail "sekishod exit status"
e2e_end
