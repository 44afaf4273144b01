#!/usr/bin/env bash
# event_log_e2e.sh - a live sekishod whose event log is taken away underneath, while swaks is
# OP25B-blocked on port 25 (each attempt from its own source port, so each event is known):
#   1. the file deleted (rm): the next block's event is in a new file at the path, and
#      `sekishoctl events tail` shows it;
#   2. the file moved away and a new one put in its place (logrotate's "create", no signal):
#      the next event is appended to the new file, the moved one keeps the earlier events;
#   3. the file moved away and nothing put in its place: a new file again;
#   4. the counts: sekisho_event_log_reopens_total and summary.json's events.reopened are 3,
#      nothing was lost (write_errors 0) and every blocked attempt has its event.
#
# Usage (root):  tests/e2e/event_log_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

ctl="${2:-}"
e2e_begin event_log_e2e "${1:-${SEKISHOD:-}}" swaks curl /usr/bin/python3
[ -x "$ctl" ] || { echo "event_log_e2e: sekishoctl not executable: '$ctl'" >&2; exit 1; }
ctl="$(realpath "$ctl")"

{
  e2e_lab_policy
  cat <<'EOF'
op25b:
  mode: enforce
  action: reset
events:
  aggregate_window: 0s   # every block is a line at once
EOF
} >"$TMP/policy.yaml"

netlab_up --gateway || abort "lab setup failed"
sock="$TMP/api.sock"
log="$TMP/log/events.jsonl"
mkdir -p "$TMP/log"
metrics_port=9114
e2e_start_sekishod "$NETLAB_LOGDIR/sekishod.log" --policy "$TMP/policy.yaml" --events "$log" \
  --summary "$TMP/summary.json" --metrics "127.0.0.1:$metrics_port" --api-socket "$sock"

metric() { # NAME: its value in a fresh scrape (empty if the scrape failed)
  timeout 5 ip netns exec "$NETLAB_NS_GW" curl -sf "http://127.0.0.1:$metrics_port/metrics" >"$TMP/metrics.txt" || return
  awk -v k="$1" '$1 == k { print $2; found = 1 } END { if (!found) print 0 }' "$TMP/metrics.txt"
}
blocked_from() { # PORT: swaks from that source port to port 25, which must fail (reset)
  if timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 25 --local-port "$1" \
    --timeout 5 --from a@example.jp --to b@example.net >"$TMP/swaks-$1.log" 2>&1; then
    fail "port 25 from source port $1 got through"
  fi
}
has_event() { # FILE PORT: the file holds an op25b_block from that source port
  [ -f "$1" ] && /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
port = int(sys.argv[2])
with open(sys.argv[1]) as f:
    sys.exit(0 if any(json.loads(l).get("type") == "op25b_block" and json.loads(l).get("src_port") == port
                      for l in f if l.strip()) else 1)
PY
}
wait_event() { # FILE PORT: up to 5 s (the control thread drains every 10 ms)
  local i
  for ((i = 0; i < 50; i++)); do has_event "$1" "$2" && return 0; sleep 0.1; done
  return 1
}
tail_shows() { # PORT: sekishoctl events tail (the API reads the file at the path) shows it
  out="$(timeout 10 "$ctl" --socket "$sock" --json events tail -n 100 --type op25b_block 2>&1)"
  echo "$out" | /usr/bin/python3 -c '
import json, sys
port = int(sys.argv[1])
sys.exit(0 if any(json.loads(l).get("src_port") == port for l in sys.stdin if l.strip()) else 1)' "$1"
}

# --- before: the log as started -------------------------------------------------------------------
blocked_from 41001
wait_event "$log" 41001 && pass "the first block is in the log" || abort "no event for the first block"
tail_shows 41001 && pass "events tail shows the first block" || fail "events tail: $out"

# --- 1. deleted ------------------------------------------------------------------------------------
rm -f "$log"
blocked_from 41002
if wait_event "$log" 41002; then pass "after rm: the next block's event is in a new $log"; else
  fail "after rm: no event at the path (the daemon wrote into the deleted file)"; fi
tail_shows 41002 && pass "after rm: events tail shows the new block" || fail "after rm: events tail: $out"
tail_shows 41001 && fail "after rm: events tail still shows the deleted file's event" ||
  pass "after rm: the deleted file's event is gone with it"

# --- 2. moved away and replaced ----------------------------------------------------------------------
mv "$log" "$log.old"
: >"$log"
blocked_from 41003
wait_event "$log" 41003 && pass "moved and replaced: the next event is in the new file" ||
  fail "moved and replaced: no event in the new file"
has_event "$log.old" 41002 && ! has_event "$log.old" 41003 && pass "the moved file keeps the earlier event only" ||
  fail "the moved file: $(cat "$log.old" 2>&1 | head -c 400)"
tail_shows 41003 && pass "moved and replaced: events tail shows the new block" || fail "events tail: $out"

# --- 3. moved away, nothing in its place ------------------------------------------------------------
mv "$log" "$log.1"
blocked_from 41004
wait_event "$log" 41004 && pass "moved away: the next event is in a new file at the path" ||
  fail "moved away: no event at the path"

# --- 4. the counts ----------------------------------------------------------------------------------
reopens=$(metric 'sekisho_event_log_reopens_total')
for _ in $(seq 1 25); do # the metrics snapshot follows the control thread within ~200 ms
  [ "${reopens%.*}" = 3 ] && break
  sleep 0.2
  reopens=$(metric 'sekisho_event_log_reopens_total')
done
[ "${reopens%.*}" = 3 ] && pass "sekisho_event_log_reopens_total 3" || fail "sekisho_event_log_reopens_total '$reopens'"
e2e_stop_sekishod && pass "sekishod exits 0" || fail "sekishod exit status $?"
if /usr/bin/python3 - "$TMP/summary.json" <<'PY'; then pass "summary: reopened 3, nothing lost"; else fail "summary: $(cat "$TMP/summary.json")"; fi
import json, sys
e = json.load(open(sys.argv[1]))["events"]
print("event_log_e2e: summary events", e)
assert e["reopened"] == 3, e
assert e["write_errors"] == 0 and e["io_errors"] == 0, e
assert e["written"] == e["emitted"] and e["ring_full"] == 0, e
PY

e2e_end
