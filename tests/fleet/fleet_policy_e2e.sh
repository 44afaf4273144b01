#!/usr/bin/env bash
# fleet_policy_e2e.sh - policy versions and fleet status end to end: three live gateways (the XDP
# backend in generic mode over the lab's bridge, each in a lab of its own: tests/e2e/netlab.sh) in groups canary
# (edge-c1) and default (edge-d1, edge-d2), one real PostgreSQL 15 (tests/fleet/fleet_stores.sh),
# sekishoctl fleet as the controller and the desk.
#
# Usage (root):  tests/fleet/fleet_policy_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl
#
# Checks, in order:
#   - fleet status (desk role) lists the three gateways with their group, generation 1, fleet
#     version 0, lag under 2 s; a push with the desk role is refused by PostgreSQL (exit 1), one
#     with a connection file others may read by sekishoctl (exit 2);
#   - a rollout (a connection limit added) reaches the canary, then the default group: every
#     gateway's sekishoctl status shows generation 2 from "fleet version N of group G";
#   - a rollout of a policy the gateways refuse halts at the canary (exit 4, the refusal named);
#     the canary keeps generation 2, the default group its version; the audit trails hold each
#     fleet apply, refused or not;
#   - a rollout whose canary blocks what its subscriber then sends (op25b enforce; blocked grows
#     beyond --max-blocked-increase during the watch) halts (exit 4, says why); the default group
#     keeps its version and keeps monitoring (SMTP from its subscriber to MX:25 is delivered);
#   - a gateway killed (-9) is marked stale; restarted, it comes back with its fleet generation
#     from the policy history and applies nothing again;
#   - PostgreSQL killed: every gateway keeps its policy (the canary still resets SMTP to MX:25,
#     sekisho_fleet_link_up{concern="policy"} 0); restarted: every heartbeat resumes (lag < 2 s);
#   - the canary is rolled back by pushing the old text as a new version: monitor again.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/fleet_labs.sh
source "$here/fleet_labs.sh"
fleet_e2e_begin fleet_policy_e2e "${1:-${SEKISHOD:-}}" "${2:-}" swaks curl /usr/sbin/smtp-sink /usr/bin/python3

gateways=(edge-c1 edge-d1 edge-d2)
declare -A group_of=([edge-c1]=canary [edge-d1]=default [edge-d2]=default)
declare -A pid_of

fleet_stores_begin "$TMP/stores"
fleet_start_postgres || abort "PostgreSQL did not start"
desk="$FLEET_DIR/desk.conninfo"
controller="$FLEET_DIR/controller.conninfo"

# The policy every gateway starts with: OP25B monitored, events read while the daemon runs.
{
  e2e_lab_policy
  printf 'op25b:\n  mode: monitor\nevents:\n  aggregate_window: 0s\n'
} >"$TMP/policy.yaml"
{
  cat "$TMP/policy.yaml"
  printf 'limits:\n  - name: conn-rate\n    applies_to: dynamic\n    scope: prefix\n    measure: connections\n'
  printf '    max: 50\n    window: 1s\n    burst: 100\n    action: drop-syn\n'
} >"$TMP/limit.yaml"
{ e2e_lab_policy; printf 'op25b:\n  mode: block\n'; } >"$TMP/refused.yaml"
{ e2e_lab_policy; printf 'op25b:\n  mode: enforce\nevents:\n  aggregate_window: 0s\n'; } >"$TMP/enforce.yaml"

start_gateway() { # GATEWAY
  local g="$1"
  lab_use "$g"
  mkdir -p "$TMP/$g"
  cat >"$TMP/$g/fleet.yaml" <<EOF
gateway: $g
group: ${group_of[$g]}
postgres:
  conninfo_file: $FLEET_DIR/gateway.conninfo
sync_interval: 200ms
EOF
  netlab_spawn gw "$TMP/$g/sekishod.log" "$SEKISHOD" --backend xdp --xdp-mode generic \
    --policy "$TMP/policy.yaml" --state-dir "$TMP/$g/state" --access-if acc0 --core-if core0 \
    --xdp-pin-dir "$TMP/$g/no-pins" --events "$TMP/$g/events.jsonl" --metrics 127.0.0.1:9119 \
    --api-socket "$TMP/$g/api.sock" --fleet "$TMP/$g/fleet.yaml"
  pid_of[$g]=$NETLAB_LAST_PID
  daemon_pid=$NETLAB_LAST_PID
}

for g in "${gateways[@]}"; do
  lab_use "$g"
  netlab_up --direct || abort "lab of $g: setup failed"
  netlab_start_sinks || abort "lab of $g: SMTP sinks did not start"
  start_gateway "$g"
done
for g in "${gateways[@]}"; do
  lab_use "$g"
  deadline=$(($(date +%s) + 30))
  until netlab_exec_sub ping -c 1 -W 1 "$NETLAB_MX_V4" >/dev/null 2>&1 && [ -S "$TMP/$g/api.sock" ]; do
    kill -0 "${pid_of[$g]}" 2>/dev/null || abort "sekishod of $g exited: $(tail -n 3 "$TMP/$g/sekishod.log")"
    [ "$(date +%s)" -lt "$deadline" ] || abort "$g: no ping through the gateway after 30 s"
    sleep 0.2
  done
done

fleet_json() { timeout 20 "$ctl" --fleet "$desk" fleet status --json 2>"$TMP/fleet-status.err"; }
# fleet_field GATEWAY PYTHON-EXPRESSION over the gateway's row r
fleet_field() {
  fleet_json | /usr/bin/python3 -c "
import json, sys
rows = [r for r in json.load(sys.stdin)['gateways'] if r['gateway'] == sys.argv[1]]
r = rows[0] if rows else None
print($2 if r else 'missing')" "$1" 2>/dev/null
}
gw_status() { # GATEWAY PYTHON-EXPRESSION over the gateway's status j
  timeout 10 "$ctl" --socket "$TMP/$1/api.sock" status --json 2>/dev/null |
    /usr/bin/python3 -c "import json, sys; j = json.load(sys.stdin); print($2)"
}
wait_until() { # SECONDS DESCRIPTION COMMAND...: pass once COMMAND succeeds, else fail
  local deadline=$(($(date +%s) + $1)) what="$2"
  shift 2
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || { fail "$what (not within the time)"; return 1; }
    sleep 0.2
  done
  pass "$what"
}
field_is() { [ "$(fleet_field "$1" "$2")" = "$3" ]; }
smtp_from_sub() { # GATEWAY: swaks from the lab's dynamic subscriber to MX:25; its exit code
  lab_use "$1"
  timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks -4 --server "$NETLAB_MX_V4" --port 25 \
    --local-interface "$NETLAB_SUB_V4_DYN" --helo client.example.com --from a@example.com \
    --to b@example.net --timeout 5 >"$TMP/swaks-$1.log" 2>&1
}
metric_is() { # GATEWAY LINE
  lab_use "$1"
  netlab_exec_gw curl -s --max-time 5 http://127.0.0.1:9119/metrics | grep -qxF "$2"
}

# --- fleet status lists every gateway -----------------------------------------------------------
for g in "${gateways[@]}"; do
  wait_until 20 "fleet status lists $g in group ${group_of[$g]}, generation 1, fleet version 0" \
    field_is "$g" "(r['group'], r['generation'], r['fleet_version'], r['lag_seconds'] < 2)" \
    "('${group_of[$g]}', 1, 0, True)"
done
out="$(timeout 20 "$ctl" --fleet "$desk" fleet status 2>&1)"
contains "fleet status (human): a row per gateway" "edge-d2"
contains "fleet status (human): the totals" "3 gateways, 0 stale"
echo "$out" | sed 's/^/    /'

out="$(timeout 20 "$ctl" --fleet "$desk" fleet policy push "$TMP/limit.yaml" --group default 2>&1)"
rc=$?
if [ "$rc" = 1 ] && echo "$out" | grep -q "permission denied"; then
  pass "a push with the desk role is refused by PostgreSQL (exit 1, permission denied)"
else
  fail "a push with the desk role: exit $rc: $out"
fi

# Bad input: said, nothing pushed.
cp "$controller" "$TMP/open.conninfo" && chmod 0644 "$TMP/open.conninfo"
out="$(timeout 20 "$ctl" --fleet "$TMP/open.conninfo" fleet policy push "$TMP/limit.yaml" --group default 2>&1)"
rc=$?
if [ "$rc" = 2 ] && echo "$out" | grep -q "open.conninfo: readable or writable by others"; then
  pass "a connection file readable by others is refused, named (exit 2)"
else
  fail "an open connection file: exit $rc: $out"
fi
out="$(timeout 20 "$ctl" --fleet "$controller" fleet rollout "$TMP/limit.yaml" --canary canary 2>&1)"
rc=$?
if [ "$rc" = 2 ] && echo "$out" | grep -q -- "--then GROUP"; then
  pass "a rollout without --then: usage (exit 2)"
else
  fail "a rollout without --then: exit $rc: $out"
fi

# --- a rollout that goes through ----------------------------------------------------------------
out="$(timeout 60 "$ctl" --fleet "$controller" fleet rollout "$TMP/limit.yaml" --canary canary --then default \
  --watch 2s --timeout 20s 2>&1)"
rc=$?
if [ "$rc" = 0 ] && echo "$out" | grep -q "rolled out: group canary version 1, group default version 2"; then
  pass "rollout: canary (version 1) then default (version 2), exit 0"
else
  fail "rollout: exit $rc: $out"
fi
declare -A version_of=([edge-c1]=1 [edge-d1]=2 [edge-d2]=2)
for g in "${gateways[@]}"; do
  wait_until 20 "$g reports fleet version ${version_of[$g]} in force, generation 2" \
    field_is "$g" "(r['fleet_version'], r['generation'])" "(${version_of[$g]}, 2)"
  got="$(gw_status "$g" "(j['generation'], j['policy']['in_force']['kind'], j['policy']['in_force']['fleet_version'], j['policy']['limits'])")"
  if [ "$got" = "(2, 'fleet', ${version_of[$g]}, 1)" ]; then
    pass "$g: sekishoctl status: generation 2 from the fleet (version ${version_of[$g]}), the limit in force"
  else
    fail "$g: status: $got"
  fi
done
out="$(timeout 10 "$ctl" --socket "$TMP/edge-d1/api.sock" status 2>&1)"
contains "edge-d1: sekishoctl status (human) names the fleet origin" "fleet version 2 of group default"

# --- a rollout the canary refuses halts ---------------------------------------------------------
out="$(timeout 60 "$ctl" --fleet "$controller" fleet rollout "$TMP/refused.yaml" --canary canary --then default \
  --watch 2s --timeout 20s 2>&1)"
rc=$?
if [ "$rc" = 4 ] && echo "$out" | grep -q "HALTED: canary gateway edge-c1 refused version 3" &&
  echo "$out" | grep -q "group default keeps its version"; then
  pass "a refused version halts the rollout at the canary (exit 4, the refusal named)"
else
  fail "refused rollout: exit $rc: $out"
fi
got="$(fleet_field edge-c1 "(r['generation'], r['fleet_version'], r['health']['refused_version'], 'refused (422)' in r['last_error'])")"
if [ "$got" = "(2, 1, 3, True)" ]; then
  pass "edge-c1 keeps generation 2 (version 1) and reports the refusal in last_error"
else
  fail "edge-c1 after the refusal: $got: $(fleet_field edge-c1 r)"
fi

audited() { # GATEWAY STATUS: the fleet applies with STATUS in the gateway's audit trail
  /usr/bin/python3 -c '
import json, sys
n = sum(1 for l in open(sys.argv[1]) if l.strip() and (lambda e: e.get("type") == "api_change" and
        e.get("endpoint") == "fleet_policy_apply" and e.get("caller") == "fleet" and
        e.get("status") == int(sys.argv[2]))(json.loads(l)))
print(n)' "$TMP/$1/events.jsonl" "$2"
}
if [ "$(audited edge-c1 200)" = 1 ] && [ "$(audited edge-c1 422)" = 1 ] && [ "$(audited edge-d1 200)" = 1 ]; then
  pass "the audit trail holds each fleet apply (edge-c1: one applied, one refused; edge-d1: one applied)"
else
  fail "audit trail: edge-c1 $(audited edge-c1 200)/$(audited edge-c1 422), edge-d1 $(audited edge-d1 200)"
fi

# --- a rollout whose canary's counters jump halts -----------------------------------------------
timeout 90 "$ctl" --fleet "$controller" fleet rollout "$TMP/enforce.yaml" --canary canary --then default \
  --watch 15s --timeout 20s --max-blocked-increase 2 >"$TMP/rollout-enforce.log" 2>&1 &
rollout_pid=$!
wait_until 20 "edge-c1 runs the enforcing version 4" field_is edge-c1 "r['fleet_version']" 4
for i in 1 2 3 4 5; do
  smtp_from_sub edge-c1 && fail "SMTP from edge-c1's subscriber to MX:25 delivered under enforce ($i)"
done
wait "$rollout_pid"
rc=$?
out="$(cat "$TMP/rollout-enforce.log")"
if [ "$rc" = 4 ] && echo "$out" | grep -q "HALTED: canary gateway edge-c1: blocked grew by"; then
  pass "the canary's blocked counter jumped during the watch: rollout halted (exit 4, says why)"
else
  fail "counters rollout: exit $rc: $out"
fi
for g in edge-d1 edge-d2; do
  got="$(fleet_field "$g" "(r['fleet_version'], r['desired_version'])")"
  if [ "$got" = "(2, 2)" ]; then
    pass "$g keeps version 2 (nothing was pushed to default)"
  else
    fail "$g after the halted rollout: $got"
  fi
done
if smtp_from_sub edge-d1; then
  pass "edge-d1 still monitors: SMTP from its subscriber to MX:25 delivered"
else
  fail "edge-d1: SMTP to MX:25 not delivered: $(tail -n 3 "$TMP/swaks-edge-d1.log")"
fi

# --- a gateway killed (-9): marked stale; restarted: its fleet generation back, nothing applied again
kill -KILL "${pid_of[edge-d2]}"
wait "${pid_of[edge-d2]}" 2>/dev/null
sleep 2.5
out="$(timeout 20 "$ctl" --fleet "$desk" fleet status --stale 2s 2>&1)"
if echo "$out" | grep -E "^edge-d2 " | grep -q STALE && echo "$out" | grep -q "3 gateways, 1 stale"; then
  pass "edge-d2 killed: fleet status marks it stale"
else
  fail "edge-d2 killed: fleet status: $out"
fi
start_gateway edge-d2
wait_until 20 "edge-d2 restarted: heartbeat back (lag < 2 s)" field_is edge-d2 "r['lag_seconds'] < 2" True
sleep 1
got="$(gw_status edge-d2 "(j['generation'], j['policy']['in_force']['kind'], j['policy']['in_force']['fleet_version'])")"
if [ "$got" = "(2, 'fleet', 2)" ] && ! grep -q "applying policy version" "$TMP/edge-d2/sekishod.log"; then
  pass "edge-d2 restarted: generation 2 from fleet version 2 restored, not applied again"
else
  fail "edge-d2 restarted: $got; $(grep fleet "$TMP/edge-d2/sekishod.log" | head -n 3)"
fi

# --- PostgreSQL killed: the gateways keep their policy; back: the heartbeats resume -------------
declare -A generation_before
for g in "${gateways[@]}"; do generation_before[$g]="$(gw_status "$g" "j['generation']")"; done
fleet_kill_postgres
sleep 1
if ! smtp_from_sub edge-c1 && grep -qi "connection refused" "$TMP/swaks-edge-c1.log"; then
  pass "PostgreSQL down: edge-c1 still enforces (SMTP to MX:25 reset)"
else
  fail "PostgreSQL down: edge-c1 no longer enforces: $(tail -n 3 "$TMP/swaks-edge-c1.log")"
fi
for g in "${gateways[@]}"; do
  wait_until 10 "PostgreSQL down: $g reports sekisho_fleet_link_up{concern=policy} 0" \
    metric_is "$g" 'sekisho_fleet_link_up{store="postgres",concern="policy"} 0'
  got="$(gw_status "$g" "(j['generation'], j['policy']['in_force']['kind'])")"
  if [ "$got" = "(${generation_before[$g]}, 'fleet')" ]; then
    pass "PostgreSQL down: $g keeps generation ${generation_before[$g]} from the fleet"
  else
    fail "PostgreSQL down: $g: $got, expected generation ${generation_before[$g]}"
  fi
done
fleet_start_postgres || abort "PostgreSQL did not restart"
for g in "${gateways[@]}"; do
  wait_until 20 "PostgreSQL back: $g's heartbeat resumes (lag < 2 s)" field_is "$g" "r['lag_seconds'] < 2" True
done

# --- a rollback is a new version with the old text ----------------------------------------------
# (A sequence skips the values it had logged ahead when PostgreSQL crashes: numbers only grow.)
out="$(timeout 20 "$ctl" --fleet "$controller" fleet policy push "$TMP/limit.yaml" --group canary 2>&1)"
rollback_version="$(echo "$out" | sed -n 's/^version \([0-9]*\) desired for group canary.*/\1/p')"
if [ -n "$rollback_version" ] && [ "$rollback_version" -gt 4 ] && [ "$(echo "$out" | wc -l)" = 1 ]; then
  pass "the canary's old text pushed as a new version ($rollback_version), one line said"
else
  fail "the rollback push: $out"
fi
wait_until 20 "edge-c1 runs version $rollback_version" field_is edge-c1 "r['fleet_version']" "${rollback_version:-0}"
if smtp_from_sub edge-c1; then
  pass "edge-c1 monitors again: SMTP from its subscriber to MX:25 delivered"
else
  fail "edge-c1 after the rollback: SMTP not delivered: $(tail -n 3 "$TMP/swaks-edge-c1.log")"
fi

for g in "${gateways[@]}"; do
  lab_use "$g"
  e2e_stop_sekishod || fail "sekishod of $g exited non-zero"
done
e2e_end
