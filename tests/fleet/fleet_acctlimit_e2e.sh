#!/usr/bin/env bash
# fleet_acctlimit_e2e.sh - an account-scope limit holds across gateways, with real clients: two
# live sekishod gateways (A and C, each in a netlab of its own) share one real Redis
# (fleet_stores.sh). RADIUS binds alice behind both; the policy allows her 3 messages a day
# (account scope). Two swaks through A are delivered, then one through C (the 3rd fleet-wide), and
# the 4th is refused through C and through A; without the fleet each gateway would allow 3. Redis
# killed: the limit still holds on both (local counts and the shares they had); kill -9 of C and
# a restart: alice is still refused through C (its count before the kill stays in Redis under its
# old process). The metrics say it (link up, syncs, accounts shared). `limits show` on C names
# the fleet's share (JSON fleet_share, the FLEET column); `sekishoctl limits reset` on A (the fleet
# file carries PostgreSQL too: operator_sync brings the reset to C) clears the shares and the
# hash everywhere, and alice sends again through C.
#
# Usage (root):  tests/fleet/fleet_acctlimit_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab or the servers are missing (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/fleet_labs.sh
source "$here/fleet_labs.sh"
fleet_e2e_begin fleet_acctlimit_e2e "${1:-${SEKISHOD:-}}" "${2:-}" radclient swaks curl /usr/bin/python3

fleet_stores_begin "$TMP/stores"
fleet_start_postgres || abort "PostgreSQL did not start"
fleet_start_redis || abort "redis-server did not start"

{
  e2e_lab_policy
  e2e_radius_section "$TMP/bindings.sqlite"
  printf 'limits:\n  - {name: msgs-fleet, measure: messages, scope: account, max: 3, window: 1d, action: tempfail}\n'
} >"$TMP/policy.yaml"

metrics_port=9132   # in each gateway's own namespace
start_gateway() { # a | c: up, in the fleet, alice bound behind it
  lab_start_gateway "$1"
  e2e_wait_for_log "$NETLAB_LOGDIR/sekishod-$run.log" "fleet: gateway gateway-$1" 10 "sekishod $1"
  bind_alice
}
t=$(($(date +%s) - 100))
bind_alice() { # behind the current gateway
  echo "Acct-Status-Type = Start, User-Name = \"alice@example.jp\", Acct-Session-Id = \"s1-$lab_current-$run\", Framed-IP-Address = 198.51.100.7, NAS-IP-Address = 192.0.2.1, Event-Timestamp = $t" |
    timeout 20 ip netns exec "$NETLAB_NS_GW" radclient -x -r 1 -t 2 -S "$TMP/secret" 127.0.0.1:1813 acct 2>&1 |
    grep -q "Received Accounting-Response" || fail "RADIUS Start of alice on $lab_current not answered"
}
smtp() { # 0 when alice's message is delivered through the current gateway
  timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_RELAY_V4" --port 25 --timeout 5 \
    --local-interface 198.51.100.7 --from a@example.jp --to b@example.net --body hello >"$TMP/swaks.log" 2>&1
}
wait_metric_at_least() { # NAME{LABELS} VALUE: at most 10 s
  local i v
  for ((i = 0; i < 100; i++)); do
    v="$(lab_metric "$1")"
    [ -n "$v" ] && awk -v v="$v" -v w="$2" 'BEGIN { exit !(v + 0 >= w + 0) }' && return 0
    sleep 0.1
  done
  return 1
}
link='sekisho_fleet_link_up{store="redis",concern="account_limits"}'
# Two sync intervals (100 ms) and a margin: what one gateway counted is in the other's share.
settle() { sleep 0.6; }
delivered() { # WHAT
  if smtp; then pass "$1 delivered"; else fail "$1 refused: $(tail -n 3 "$TMP/swaks.log")"; fi
}
refused() { # WHAT
  if smtp; then fail "$1 delivered"; else
    grep -q '421 4.7.0' "$TMP/swaks.log" && pass "$1 refused (421)" || fail "$1: $(tail -n 3 "$TMP/swaks.log")"
  fi
}

for l in a c; do
  lab_use "$l"
  sed "s|$TMP/bindings.sqlite|$TMP/bindings-$l.sqlite|" "$TMP/policy.yaml" >"$TMP/policy-$l.yaml"
  fleet_write_config "$TMP/fleet-$l.yaml" "gateway-$l"   # PostgreSQL (limit resets) and Redis
  netlab_up --gateway || abort "lab $l setup failed"
  netlab_start_sinks || abort "sinks of lab $l"
  start_gateway "$l"
done

lab_use a
wait_metric_at_least "$link" 1 && pass "A: $link 1" || fail "A: $link '$(lab_metric "$link")'"
delivered "alice's 1st message through A"
delivered "alice's 2nd message through A"
settle
lab_use c
delivered "alice's 3rd message (fleet-wide) through C"
refused "alice's 4th message through C"
settle
lab_use a
refused "alice's 4th message through A"
wait_metric_at_least sekisho_fleet_account_limit_shared_accounts 1 && pass "A: an account shared" ||
  fail "A: shared_accounts '$(lab_metric sekisho_fleet_account_limit_shared_accounts)'"
wait_metric_at_least sekisho_fleet_account_limit_syncs_total 5 && pass "A: syncs counted" ||
  fail "A: syncs '$(lab_metric sekisho_fleet_account_limit_syncs_total)'"
[ "$(fleet_redis_cli --scan --pattern 'sekisho:acct:1d:*:msgs-fleet:a:alice@example.jp' | wc -l)" = 1 ] &&
  pass "one hash for alice's window in Redis" || fail "Redis keys: $(fleet_redis_cli --scan --pattern 'sekisho:acct:*')"

# Redis killed: the limit holds on both gateways.
fleet_kill_redis
for ((i = 0; i < 100; i++)); do [ "$(lab_metric "$link")" = 0 ] && break; sleep 0.1; done
[ "$(lab_metric "$link")" = 0 ] && pass "A: $link 0 while Redis is down" || fail "A: $link '$(lab_metric "$link")'"
refused "alice through A while Redis is down"
lab_use c
refused "alice through C while Redis is down"
fleet_start_redis || abort "redis-server did not restart"
lab_use a
for ((i = 0; i < 100; i++)); do [ "$(lab_metric "$link")" = 1 ] && break; sleep 0.1; done
[ "$(lab_metric "$link")" = 1 ] && pass "A: $link 1 again" || fail "A: $link '$(lab_metric "$link")'"

# kill -9 of C and a restart: its local counts are gone, its count in Redis is not.
lab_use c
settle
kill -9 "$daemon_pid"
wait "$daemon_pid" 2>/dev/null
start_gateway c
for ((i = 0; i < 100; i++)); do [ "$(lab_metric "$link")" = 1 ] && break; sleep 0.1; done
settle
refused "alice through C after its kill -9 and a restart"

# Why alice is refused, on C: her own count 0 (new process), the fleet's share 3 (A's 2, C's 1
# from before the kill).
limit_of() { # FIELD: msgs-fleet's FIELD of alice on the current gateway
  "$ctl" --socket "$sock" --json limits show alice@example.jp 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; print([l[sys.argv[1]] for l in json.load(sys.stdin)["limits"] if l["limit"] == "msgs-fleet"][0])' "$1"
}
[ "$(limit_of fleet_share)" = 3 ] && [ "$(limit_of count)" = 0 ] && [ "$(limit_of tripped)" = True ] &&
  pass "C: limits show alice: count 0, fleet_share 3, tripped" ||
  fail "C: limits show alice: count '$(limit_of count)' fleet_share '$(limit_of fleet_share)' tripped '$(limit_of tripped)'"
ctl_expect 0 "limits show alice on C (human)" limits show alice@example.jp
contains "the FLEET column shows the share" "+3"

# The reset on A reaches C through PostgreSQL; each clears alice's shares and deletes her hash.
lab_use a
ctl_expect 0 "limits reset alice on A" limits reset alice@example.jp
[ "$(limit_of fleet_share)" = 0 ] && pass "A: alice's fleet share cleared by the reset" ||
  fail "A: fleet_share '$(limit_of fleet_share)' after the reset"
lab_use c
applied_on_c() { grep '"endpoint":"limits_reset"' "$TMP/events-c.jsonl" | grep -q '"origin_gateway":"gateway-a"'; }
for ((i = 0; i < 100; i++)); do applied_on_c && [ "$(limit_of fleet_share)" = 0 ] && break; sleep 0.05; done
applied_on_c && [ "$(limit_of fleet_share)" = 0 ] && pass "C: alice's fleet share cleared by the reset made on A" ||
  fail "C: fleet_share '$(limit_of fleet_share)' 5 s after the reset on A"
settle
delivered "alice's message through C after the reset on A"
lab_use a
wait_metric_at_least sekisho_fleet_account_limit_resets_total 1 && pass "A: a reset of shares counted" ||
  fail "A: resets '$(lab_metric sekisho_fleet_account_limit_resets_total)'"
wait_metric_at_least 'sekisho_fleet_account_limit_reset_deletes_total{outcome="deleted"}' 1 &&
  pass "A: the hash deleted" || fail "A: deletes '$(lab_metric 'sekisho_fleet_account_limit_reset_deletes_total{outcome="deleted"}')'"
settle
h="$(fleet_redis_cli --scan --pattern 'sekisho:acct:1d:*:msgs-fleet:a:alice@example.jp')"
[ "$(fleet_redis_cli HLEN "$h")" = 1 ] && pass "Redis: one count of alice's, from after the reset" ||
  fail "Redis: $(fleet_redis_cli HGETALL "$h" | tr '\n' ' ')"
delivered "alice's 2nd message after the reset, through A"
delivered "alice's 3rd message after the reset, through A"
settle
lab_use c
refused "alice's 4th message after the reset, through C"

e2e_stop_sekishod
lab_use a
e2e_stop_sekishod
e2e_end
