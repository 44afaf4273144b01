#!/usr/bin/env bash
# fleet_events_e2e.sh - a live gateway ships its events into the fleet's PostgreSQL, exactly once
# across crashes: sekishod (DPDK backend in the netlab) with --fleet, a real PostgreSQL 15
# (fleet_stores.sh), swaks attempts from a subscriber to the MX on port 25 make op25b_block events
# (one line each: aggregate_window 0s).
#   1. attempts; the rows arrive; sekisho_fleet_link_up{store="postgres",concern="events"} 1
#   2. PostgreSQL killed -9; more attempts are still blocked at once; link_up 0, the backlog grows
#   3. PostgreSQL restarted: the backlog drains without a restart of the gateway
#   4. sekishod killed -9 and restarted (same state directory: the cursor); more attempts
#   5. at the end the rows for this gateway equal the lines of events.jsonl exactly: the same
#      count and the same set of keys (the byte offset of each line; one file identity), each
#      row's line the line itself; `sekishoctl --fleet desk.conninfo events` (the desk role)
#      shows them, with --json and as a table naming the gateway.
#
# Usage (root):  tests/fleet/fleet_events_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab or the servers are missing (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/../e2e/netlab.sh
source "$here/../e2e/netlab.sh"
# shellcheck source=SCRIPTDIR/../e2e/e2e_common.sh
source "$here/../e2e/e2e_common.sh"
# shellcheck source=SCRIPTDIR/fleet_stores.sh
source "$here/fleet_stores.sh"

fleet_stores_available || { echo "fleet_events_e2e: PostgreSQL 15 or redis-server not installed (skipping)" >&2; exit 77; }
e2e_begin fleet_events_e2e "${1:-${SEKISHOD:-}}" swaks curl /usr/bin/python3
ctl="${2:-}"
[ -x "$ctl" ] || { echo "fleet_events_e2e: sekishoctl not executable: '$ctl'" >&2; exit 1; }
ctl="$(realpath "$ctl")"
# shellcheck disable=SC2317  # called from the EXIT trap
_fleet_events_cleanup() {
  local rc=$?
  fleet_stores_cleanup
  (exit "$rc")
  _e2e_cleanup
}
trap _fleet_events_cleanup EXIT

gateway=edge-e2e-1
events="$TMP/events.jsonl"
metrics_port=9108
fleet_stores_begin "$TMP/fleet"
fleet_start_postgres || abort "PostgreSQL did not start"
cat >"$TMP/fleet.yaml" <<CONF
gateway: $gateway
postgres:
  conninfo_file: $FLEET_DIR/gateway.conninfo
sync_interval: 100ms
CONF
{
  e2e_lab_policy
  printf 'events:\n  aggregate_window: 0s\n'
} >"$TMP/policy.yaml"

netlab_up --gateway || abort "lab setup failed"
netlab_start_sinks || abort "sinks"

run=0
start_daemon() {
  run=$((run + 1))
  e2e_start_sekishod "$NETLAB_LOGDIR/sekishod-$run.log" --policy "$TMP/policy.yaml" --events "$events" \
    --fleet "$TMP/fleet.yaml" --metrics "127.0.0.1:$metrics_port"
}
metric() { # NAME-WITH-LABELS: its value, "" when absent
  netlab_exec_gw curl -sf "http://127.0.0.1:$metrics_port/metrics" 2>/dev/null | awk -v n="$1" '$1 == n { print $2 }'
}
link_up='sekisho_fleet_link_up{store="postgres",concern="events"}'
# verdict DESCRIPTION FAILURE COMMAND...: pass DESCRIPTION when COMMAND succeeds, else fail FAILURE.
verdict() {
  local ok="$1" ko="$2"
  shift 2
  if "$@"; then pass "$ok"; else fail "$ko"; fi
}
# Attempts to the MX on port 25 from the dynamic subscriber: each must fail fast (OP25B's reset).
attempts() { # COUNT
  local i t0 blocked=0
  for ((i = 0; i < $1; i++)); do
    t0=$(date +%s%N)
    if ! timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks -4 --server "$NETLAB_MX_V4" --port 25 \
      --local-interface "$NETLAB_SUB_V4_DYN" --from a@example.jp --to b@example.net --timeout 5 >/dev/null 2>&1; then
      [ $((($(date +%s%N) - t0) / 1000000)) -lt 3000 ] && blocked=$((blocked + 1))
    fi
  done
  echo "$blocked"
}
rows() { fleet_psql "SELECT count(*) FROM events WHERE gateway = '$gateway'" 2>/dev/null; }
lines() { [ -f "$events" ] && grep -c '' "$events" || echo 0; }
wait_until() { # SECONDS WHAT COMMAND...: true once COMMAND succeeds
  local deadline=$(($(date +%s) + $1)) what="$2"
  shift 2
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || { fail "$what: not within the time"; return 1; }
    sleep 0.2
  done
  pass "$what"
}
rows_equal_lines() { [ "$(rows)" = "$(lines)" ] && [ "$(lines)" -gt 0 ]; }

start_daemon
e2e_wait_for_log "$NETLAB_LOGDIR/sekishod-1.log" "fleet: events: PostgreSQL link up" 20 "sekishod"

# 1. Shipping while everything is up.
n="$(attempts 8)"
verdict "8 attempts to MX:25 blocked fast" "only $n of 8 attempts blocked fast" [ "$n" = 8 ]
wait_until 20 "the first events are rows in PostgreSQL ($(lines) lines)" rows_equal_lines
up="$(metric "$link_up")"
verdict "link_up 1 while PostgreSQL is up" "link_up '$up' while PostgreSQL is up" [ "$up" = 1 ]

# 2. PostgreSQL killed mid-run: enforcement goes on, the event log keeps the lines.
fleet_kill_postgres
n="$(attempts 8)"
verdict "with PostgreSQL dead, 8 more attempts blocked fast" "only $n of 8 blocked fast with PostgreSQL dead" [ "$n" = 8 ]
link_down() { [ "$(metric "$link_up")" = 0 ]; }
wait_until 15 "link_up 0 while PostgreSQL is dead" link_down
# Measured at each reconnect attempt (backoff 100 ms doubling to 5 s) from the event log alone.
backlog_grows() { [ "$(metric sekisho_fleet_events_backlog_bytes)" -gt 0 ] 2>/dev/null; }
wait_until 15 "the backlog grows while PostgreSQL is dead" backlog_grows
lag_grows() { /usr/bin/python3 -c "import sys; sys.exit(0 if float('$(metric sekisho_fleet_events_lag_seconds)' or 0) > 0 else 1)"; }
wait_until 15 "the lag grows while PostgreSQL is dead" lag_grows

# 3. PostgreSQL back: the gateway catches up by itself.
fleet_start_postgres || abort "PostgreSQL did not restart"
wait_until 30 "after PostgreSQL's restart the rows catch up with the lines ($(lines))" rows_equal_lines
link_back() { [ "$(metric "$link_up")" = 1 ] && [ "$(metric sekisho_fleet_events_backlog_bytes)" = 0 ]; }
wait_until 15 "link_up 1 and backlog 0 again" link_back

# 4. The gateway killed -9 and restarted: it goes on from its cursor.
kill -9 "$daemon_pid"
wait "$daemon_pid" 2>/dev/null
verdict "the cursor is on disk" "no $TMP/state/fleet/events.cursor" [ -f "$TMP/state/fleet/events.cursor" ]
start_daemon
n="$(attempts 6)"
verdict "after kill -9 and restart, 6 attempts blocked fast" "only $n of 6 blocked after the restart" [ "$n" = 6 ]
wait_until 30 "after sekishod's kill -9 and restart the rows equal the lines ($(lines))" rows_equal_lines
shipped="$(metric sekisho_fleet_events_shipped_total)"
total="$(lines)"
from_cursor() { [ -n "$shipped" ] && [ "$shipped" -lt "$total" ]; }
verdict "the restarted gateway shipped only what came after its cursor ($shipped of $total lines)" \
  "the restarted gateway shipped '$shipped' lines of $total: not from its cursor" from_cursor

# 5. Exactly once: the same keys, the same lines.
/usr/bin/python3 - "$events" >"$TMP/keys-file.txt" <<'PY'
import sys
off = 0
with open(sys.argv[1], 'rb') as f:
    for line in f:
        if line.strip():
            print(off)
        off += len(line)
PY
fleet_psql "SELECT line_offset FROM events WHERE gateway = '$gateway' ORDER BY line_offset" >"$TMP/keys-db.txt"
fleet_psql "SELECT count(DISTINCT file_id) FROM events WHERE gateway = '$gateway'" >"$TMP/files-db.txt"
if cmp -s "$TMP/keys-file.txt" "$TMP/keys-db.txt" && [ "$(cat "$TMP/files-db.txt")" = 1 ]; then
  pass "rows = lines exactly: $(grep -c '' "$TMP/keys-db.txt") keys, each line's offset once, one file"
else
  fail "the keys differ: $(grep -c '' "$TMP/keys-file.txt") lines, $(grep -c '' "$TMP/keys-db.txt") rows, $(cat "$TMP/files-db.txt") files"
  diff "$TMP/keys-file.txt" "$TMP/keys-db.txt" | head -n 10 | sed 's/^/    /'
fi
# Each row's line is its line (jsonb of the text: compared as parsed JSON).
fleet_psql "SELECT line_offset || ' ' || line::text FROM events WHERE gateway = '$gateway' ORDER BY line_offset" >"$TMP/lines-db.txt"
if /usr/bin/python3 - "$events" "$TMP/lines-db.txt" <<'PY'; then
import json, sys
off, want = 0, {}
with open(sys.argv[1], 'rb') as f:
    for line in f:
        want[off] = json.loads(line)
        off += len(line)
got = {}
for row in open(sys.argv[2]):
    o, text = row.rstrip('\n').split(' ', 1)
    got[int(o)] = json.loads(text)
sys.exit(0 if got == want else 1)
PY
  pass "each row holds its line"
else
  fail "rows and lines differ in content"
fi
op25b="$(grep -c '"type":"op25b_block"' "$events")"
verdict "$op25b op25b_block lines in the event log" "only $op25b op25b_block lines" [ "$op25b" -ge 22 ]

# The desk asks PostgreSQL (its own role: SELECT on events, granted by the schema's owner).
fleet_psql "GRANT SELECT ON events TO sekisho_desk" >/dev/null
fleet_ctl() { out="$(timeout 30 "$ctl" --fleet "$@" 2>&1)"; rc=$?; }
fleet_ctl "$FLEET_DIR/desk.conninfo" --json events --type op25b_block -n 100000
got="$(printf '%s\n' "$out" | grep -c "\"gateway\":\"$gateway\"")"
verdict "sekishoctl --fleet events --type op25b_block --json: all $got" "sekishoctl --fleet events: $got of $op25b: $(echo "$out" | head -n 2)" \
  [ "$got" = "$op25b" ]
fleet_ctl "$FLEET_DIR/desk.conninfo" events --address "$NETLAB_SUB_V4_DYN" -n 3
got="$(printf '%s\n' "$out" | grep -c "^$gateway .*op25b_block .*$NETLAB_SUB_V4_DYN")"
verdict "sekishoctl --fleet events --address -n 3: three lines naming the gateway" \
  "sekishoctl --fleet events --address -n 3: $got lines: $(echo "$out" | head -n 2)" [ "$got" = 3 ]
usage_error_says() { [ "$rc" = 2 ] && echo "$out" | grep -qF -- "$1"; }
fleet_ctl "$FLEET_DIR/desk.conninfo" events --type bogus
verdict "--fleet events --type bogus is a usage error" "--fleet events --type bogus: exit $rc: $(echo "$out" | head -n 1)" \
  usage_error_says "'bogus' is not an event type"
chmod 0644 "$FLEET_DIR/desk.conninfo"
fleet_ctl "$FLEET_DIR/desk.conninfo" events
verdict "a conninfo file readable by others is refused" "a conninfo file readable by others: exit $rc: $(echo "$out" | head -n 1)" \
  usage_error_says "readable or writable by others"
chmod 0640 "$FLEET_DIR/desk.conninfo"
fleet_ctl "$FLEET_DIR/gateway.conninfo.missing" events
verdict "a missing conninfo file is a usage error naming it" "missing conninfo file: exit $rc: $out" \
  usage_error_says "gateway.conninfo.missing"

e2e_end
