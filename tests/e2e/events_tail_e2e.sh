#!/usr/bin/env bash
# events_tail_e2e.sh - `sekishoctl events tail -f` follows the event log by position, not by time,
# against a live sekishod with aggregation (5 s window) and size rotation (4 KB): swaks is
# OP25B-blocked twice from one address (the first event is written at once, the repeat when the
# window closes: after a later api_change, with an older time_ns), then from 20 more addresses
# (the log rotates). `-f -n 0` prints exactly the lines written after it started, `-f -n 1`
# exactly one old line before them; both in the order of the file, across the rotation, the
# late-written repeat included. The summary's event counters agree with the lines' counts.
#
# Usage (root):  tests/e2e/events_tail_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

ctl="${2:-}"
e2e_begin events_tail_e2e "${1:-${SEKISHOD:-}}" swaks /usr/bin/python3
[ -x "$ctl" ] || { echo "events_tail_e2e: sekishoctl not executable: '$ctl'" >&2; exit 1; }
ctl="$(realpath "$ctl")"
sock="$TMP/api.sock"
log="$TMP/events.jsonl"

{
  e2e_lab_policy
  cat <<EOF
events:
  file: $log
  aggregate_window: 5s
  rotate_bytes: 4KB
  keep: 5
EOF
} >"$TMP/policy.yaml"

netlab_up --gateway || abort "lab setup failed"
for i in $(seq 40 59); do netlab_exec_sub ip addr add "198.51.100.$i/24" dev sub0 || abort "address .$i"; done
e2e_start_sekishod "$NETLAB_LOGDIR/sekishod.log" --policy "$TMP/policy.yaml" --api-socket "$sock" \
  --summary "$TMP/summary.json"
for ((i = 0; i < 50; i++)); do [ -S "$sock" ] && break; sleep 0.1; done

blocked_from() { # ADDRESS
  if timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 25 --local-interface "$1" \
    --timeout 5 --from a@example.jp --to b@example.net >"$TMP/swaks.log" 2>&1; then
    fail "port 25 from $1 got through"
  fi
}
all_lines() { # every line of the log, oldest file first
  local f
  for f in $(ls -1 "$log".* 2>/dev/null | sort -t. -k3 -rn) "$log"; do [ -f "$f" ] && cat "$f"; done
}

# 1. A block (written at once) and its repeat (held in the window for 5 s).
blocked_from 198.51.100.7
blocked_from 198.51.100.7
sleep 0.3
old="$(all_lines | grep -c '')"
if [ "$old" = 1 ]; then pass "the first block is in the log at once, the repeat held"; else
  fail "$old lines in the log after two blocks, expected 1"; fi

# 2. Follow from here: -n 0 and -n 1.
"$ctl" --socket "$sock" --json events tail -f -n 0 >"$TMP/tail0.jsonl" 2>"$TMP/tail0.err" &
tail0=$!
"$ctl" --socket "$sock" --json events tail -f -n 1 >"$TMP/tail1.jsonl" 2>"$TMP/tail1.err" &
tail1=$!
sleep 1.5

# 3. An api_change now (written at once), then the repeat when the window closes: later in the
#    file, earlier in time.
ctl_expect 0 "account suspend (an api_change line)" account suspend --create carol@example.jp
sleep 5
if all_lines | python3 -c '
import json, sys
lines = [json.loads(l) for l in sys.stdin]
change = next(i for i, e in enumerate(lines) if e["type"] == "api_change")
repeat = next(i for i, e in enumerate(lines) if e.get("repeated"))
assert repeat > change and lines[repeat]["time_ns"] < lines[change]["time_ns"], lines
'; then pass "the repeat line is written after the api_change, with an older time_ns"; else
  fail "no repeat line after the api_change with an older time"; all_lines | sed 's/^/    /'; fi

# 4. 20 more blocks: the log rotates under the followers.
for i in $(seq 40 59); do blocked_from "198.51.100.$i"; done
sleep 2.5
kill "$tail0" "$tail1" 2>/dev/null
wait "$tail0" "$tail1" 2>/dev/null
if ls "$log".1 >/dev/null 2>&1; then pass "the log rotated ($(ls "$log".* | wc -l) rotated files)"; else fail "the log did not rotate"; fi

all_lines >"$TMP/all.jsonl"
total="$(grep -c '' "$TMP/all.jsonl")"
if python3 - "$TMP/all.jsonl" "$TMP/tail0.jsonl" "$old" <<'EOF'
import json, sys
all_lines = [json.loads(l) for l in open(sys.argv[1])]
got = [json.loads(l) for l in open(sys.argv[2])]
want = all_lines[int(sys.argv[3]):]
assert got == want, f"{len(got)} lines followed, {len(want)} written after the start; first difference at " + \
    str(next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want))))
EOF
then pass "-f -n 0: exactly the $((total - old)) lines written after it started, in file order, across the rotation"; else
  fail "-f -n 0 differs from the log"; head -n 3 "$TMP/tail0.jsonl" | sed 's/^/    /'; cat "$TMP/tail0.err"; fi
if python3 - "$TMP/all.jsonl" "$TMP/tail1.jsonl" "$old" <<'EOF'
import json, sys
all_lines = [json.loads(l) for l in open(sys.argv[1])]
got = [json.loads(l) for l in open(sys.argv[2])]
want = all_lines[int(sys.argv[3]) - 1:]
assert got == want, f"{len(got)} lines followed, {len(want)} expected"
EOF
then pass "-f -n 1: exactly one old line, then the same lines"; else
  fail "-f -n 1 differs from the log"; head -n 3 "$TMP/tail1.jsonl" | sed 's/^/    /'; cat "$TMP/tail1.err"; fi
if grep -q '"repeated":true' "$TMP/tail0.jsonl"; then pass "the follower saw the late-written repeat"; else
  fail "the follower missed the repeat line"; fi

# 5. -n exact without -f.
out="$("$ctl" --socket "$sock" --json events tail -n 0)"
[ -z "$out" ] && pass "events tail -n 0: nothing" || fail "events tail -n 0 printed $(echo "$out" | grep -c '') lines"
out="$("$ctl" --socket "$sock" --json events tail -n 1)"
[ "$(echo "$out" | grep -c '')" = 1 ] && pass "events tail -n 1: one line" || fail "events tail -n 1: $(echo "$out" | grep -c '') lines"

# 6. The counters: every event in exactly one line's count.
e2e_stop_sekishod
if python3 - "$TMP/summary.json" "$log" <<'EOF'
import glob, json, sys
s = json.load(open(sys.argv[1]))
ev = s["events"]
lines = [json.loads(l) for f in glob.glob(sys.argv[2] + "*") for l in open(f)]
data = sum(l["count"] for l in lines if l["type"] != "api_change")
blocks = sum(l["count"] for l in lines if l["type"] == "op25b_block")
assert blocks == 22, blocks
assert ev["written"] == sum(l["count"] for l in lines), (ev, len(lines))
assert ev["lines"] == len(lines), (ev, len(lines))
assert ev["aggregated"] == 1 and ev["pending"] == 0 and ev["write_errors"] == 0, ev
EOF
then pass "summary: written = the lines' counts, 22 blocks, 1 aggregated, 0 pending"; else
  fail "summary counters"; python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["events"])' "$TMP/summary.json"; fi

e2e_end
