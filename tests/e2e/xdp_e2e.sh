#!/usr/bin/env bash
# xdp_e2e.sh - the XDP backend end to end: sekishod --backend xdp on the lab's gateway ports
# (acc0 access, core0 core), the gateway's Linux bridge forwarding what the program passes.
#
# Usage (root):  tests/e2e/xdp_e2e.sh PATH/TO/sekishod generic|native PATH/TO/sekishoctl PATH/TO/xdp_pass.bpf.o
#
# Checks, with real clients (swaks, smtp-sink, scapy for the SYN flood):
#   - the program is attached in the requested mode (generic, or native in the veth driver);
#   - swaks from a dynamic address to MX:25 fails fast (RST by XDP_TX), IPv4 and IPv6;
#     to the relay on 25, to MX:587 and from a static address it is delivered;
#   - the control API with sekishoctl on the XDP backend: status (backend xdp, counters), an
#     invalid policy refused with file:line, bindings/accounts refused (501, exit 4), rollback,
#     dry-run naming what XDP does not enforce, apply; SIGHUP and the API share one apply path;
#   - SIGHUP applies the policy file with a connection limit as generation 2; the API rolls back
#     (generation 3) and applies it again (generation 4);
#   - a SYN flood from one dynamic address to MX:587 beyond the rate is cut to the rate:
#     the MX sees at most burst + rate x duration SYNs, the rest are counted as limited;
#   - events.jsonl holds the op25b_block and limit_exceeded events, /metrics the counters,
#     sekishoctl top and events read them while the daemon runs;
#   - a restart under --xdp-keep-attached (SIGTERM), then a kill -9: pings every 0.05 s through
#     the gateway lose none, the program stays attached while no daemon runs, an SMTP connection to
#     MX:25 in each gap is still reset, each new daemon takes over the pinned maps (counters
#     continue, the gaps' block events reach the event log) and replaces the program in one step,
#     with only the systemd unit's capabilities;
#   - pins left by a daemon whose maps do not fit (another bucket table size): said, fresh maps,
#     the program still replaced in one step;
#   - SIGTERM without --xdp-keep-attached: exit 0, the program is detached from both interfaces and
#     the pins are gone; the summary has the event log's counters under the DPDK backend's keys.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

mode="${2:-generic}"
case "$mode" in
  generic) attached_word=xdpgeneric ;;
  native) attached_word=xdp ;;   # iproute2 prints driver mode as "xdp", generic as "xdpgeneric"
  *) echo "xdp_e2e: mode must be generic or native, not '$mode'" >&2; exit 1 ;;
esac
NETLAB_ID="xdp$$"
NETLAB_NS_SUB="sekisho-sub-${NETLAB_ID}"
NETLAB_NS_GW="sekisho-gw-${NETLAB_ID}"
NETLAB_NS_UP="sekisho-up-${NETLAB_ID}"

e2e_begin "xdp_e2e_$mode" "${1:-${SEKISHOD:-}}" swaks tcpdump curl /usr/sbin/smtp-sink /usr/bin/python3
ctl="${3:-}"
[ -x "$ctl" ] || { echo "xdp_e2e: sekishoctl not executable: '$ctl'" >&2; exit 1; }
ctl="$(realpath "$ctl")"
xdp_pass_obj="${4:-}"
[ -f "$xdp_pass_obj" ] || { echo "xdp_e2e: the pass program is not a file: '$xdp_pass_obj'" >&2; exit 1; }
sock="$TMP/api.sock"
now_ms() { echo $(($(date +%s%N) / 1000000)); }

cp "$here/../../configs/op25b-enforce.yaml" "$TMP/policy.yaml"
cat >>"$TMP/policy.yaml" <<'EOF'
events:
  aggregate_window: 0s   # sekishoctl reads events while the daemon runs
EOF
printf 'version: 1\nsubscribers:\n  dynamic: [198.51.100.1/24]\nop25b:\n  mode: block\n' >"$TMP/bad.yaml"
# The maps' pins go to a BPF file system of this test's own (bpffs is not per network namespace).
pin_dir="$TMP/bpffs/sekisho/acc0"
mkdir -p "$TMP/bpffs" && mount -t bpf bpf "$TMP/bpffs" || { echo "xdp_e2e: cannot mount a BPF file system" >&2; exit 1; }
trap 'rc=$?; umount -l "$TMP/bpffs" 2>/dev/null; (exit $rc); _e2e_cleanup' EXIT
netlab_up --direct || abort "lab setup failed"

# The restart flags refused where they do not apply, with what and where.
"$SEKISHOD" --policy "$TMP/policy.yaml" --access-if acc0 --core-if core0 --xdp-keep-attached >"$TMP/usage.log" 2>&1
rc=$?
if [ "$rc" = 2 ] && grep -q "xdp-keep-attached needs --backend xdp" "$TMP/usage.log"; then
  pass "--xdp-keep-attached without --backend xdp: usage error (exit 2)"
else
  fail "--xdp-keep-attached without --backend xdp: exit $rc: $(head -n 1 "$TMP/usage.log")"
fi
mkdir -p "$TMP/not-bpffs"
netlab_exec_gw "$SEKISHOD" --backend xdp --xdp-mode "$mode" --policy "$TMP/policy.yaml" --access-if acc0 \
  --events "$TMP/refused.jsonl" --state-dir "$TMP/state" --xdp-keep-attached --xdp-pin-dir "$TMP/not-bpffs/acc0" \
  >"$TMP/not-bpffs.log" 2>&1
rc=$?
if [ "$rc" = 1 ] && grep -q "pin directory $TMP/not-bpffs/acc0 is not on a BPF file system" "$TMP/not-bpffs.log" &&
  ! netlab_exec_gw ip -d link show acc0 | grep -q "prog/xdp"; then
  pass "a pin directory off a BPF file system: refused naming it (exit 1), nothing attached"
else
  fail "a pin directory off a BPF file system: exit $rc: $(tail -n 1 "$TMP/not-bpffs.log")"
fi
# Native XDP_TX on a veth hands the frame to the peer's ring, and the veth schedules the peer's
# NAPI for it only when the peer has an XDP program: with GRO alone a reset waits for the peer's
# next frame, seconds in a quiet lab (docs/xdp.md). So the subscriber's peer gets one that passes.
if [ "$mode" = native ]; then
  netlab_exec_sub ip link set dev sub0 xdpdrv obj "$xdp_pass_obj" sec xdp ||
    abort "cannot attach $xdp_pass_obj to sub0"
fi
netlab_start_sinks || abort "SMTP sinks did not start"

metrics_port=9118
spawn_xdp_daemon() { # LOG EXTRA-ARGS...; $daemon_prefix (a command) runs it
  local log="$1"
  shift
  netlab_spawn gw "$log" ${daemon_prefix:-} "$SEKISHOD" --backend xdp --xdp-mode "$mode" \
    --policy "$TMP/policy.yaml" --state-dir "$TMP/state" --access-if acc0 --core-if core0 \
    --events "$TMP/events.jsonl" --summary "$TMP/summary.json" --metrics "127.0.0.1:$metrics_port" \
    --api-socket "$sock" --xdp-pin-dir "$pin_dir" "$@"
  daemon_pid=$NETLAB_LAST_PID
}
spawn_xdp_daemon "$NETLAB_LOGDIR/sekishod-first.log" --xdp-keep-attached
deadline=$(($(date +%s) + 20))
attached() { netlab_exec_gw ip link show "$1" | head -n 1 | grep -Eq "mtu [0-9]+ $attached_word "; }
until attached acc0; do
  kill -0 "$daemon_pid" 2>/dev/null || abort "sekishod exited before attaching"
  [ "$(date +%s)" -lt "$deadline" ] || abort "no $attached_word program on acc0 after 20 s"
  sleep 0.2
done
for dev in acc0 core0; do
  if attached "$dev"; then
    pass "XDP program attached to $dev ($attached_word)"
  else
    fail "no $attached_word program on $dev"
  fi
done
# Native XDP_TX on a veth needs an XDP program on the peer: the start-up says so (generic mode has no such trap).
veth_warnings="$(grep -c 'is a veth (a lab): native XDP_TX' "$NETLAB_LOGDIR/sekishod-first.log")"
want_warnings=0
[ "$mode" = native ] && want_warnings=2
if [ "$veth_warnings" = "$want_warnings" ]; then
  pass "$mode mode: $veth_warnings veth warnings at start-up"
else
  fail "$mode mode: $veth_warnings veth warnings at start-up"
fi
until netlab_exec_sub ping -c 1 -W 1 "$NETLAB_MX_V4" >/dev/null 2>&1 && [ -S "$sock" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || abort "no ping through the gateway"
  sleep 0.2
done

run_swaks() { # FAMILY SOURCE SERVER PORT
  local t0
  t0=$(now_ms)
  swaks_log="$TMP/swaks-$2-$3-$4.log"
  timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks "$1" --server "$3" --port "$4" --local-interface "$2" --helo client.example.com \
    --from sender@example.com --to rcpt@example.net --timeout 10 >"$swaks_log" 2>&1
  swaks_rc=$?
  swaks_ms=$(($(now_ms) - t0))
}
expect_mail_ok() {
  run_swaks "$@"
  if [ "$swaks_rc" = 0 ]; then
    pass "SMTP $2 -> $3:$4 delivered (${swaks_ms} ms)"
  else
    fail "SMTP $2 -> $3:$4 should be delivered; swaks exit $swaks_rc after ${swaks_ms} ms"
    tail -n 6 "$swaks_log" | sed 's/^/    /'
  fi
}
# A reset, not a timeout: the client reports "connection refused" (a silent drop would be a
# swaks timeout after 10 s), and in time: a reset that waited in the peer's ring for seconds
# (docs/xdp.md) is a failure too.
expect_mail_reset() {
  run_swaks "$@"
  if [ "$swaks_rc" = 0 ]; then
    fail "SMTP $2 -> $3:$4 delivered; OP25B should have blocked it"
  elif grep -qi "connection refused" "$swaks_log" && [ "$swaks_ms" -lt 3000 ]; then
    pass "SMTP $2 -> $3:$4 blocked by a reset (${swaks_ms} ms, connection refused)"
  else
    fail "SMTP $2 -> $3:$4 not reset within 3 s (${swaks_ms} ms)"
    tail -n 4 "$swaks_log" | sed 's/^/    /'
  fi
}

expect_mail_reset -4 "$NETLAB_SUB_V4_DYN" "$NETLAB_MX_V4" 25
expect_mail_ok -4 "$NETLAB_SUB_V4_DYN" "$NETLAB_RELAY_V4" 25
expect_mail_ok -4 "$NETLAB_SUB_V4_DYN" "$NETLAB_MX_V4" 587
expect_mail_ok -4 "$NETLAB_SUB_V4_STATIC" "$NETLAB_MX_V4" 25
expect_mail_reset -6 "$NETLAB_SUB_V6_DYN" "$NETLAB_MX_V6" 25
expect_mail_ok -6 "$NETLAB_SUB_V6_DYN" "$NETLAB_RELAY_V6" 25
expect_mail_ok -6 "$NETLAB_SUB_V6_DYN" "$NETLAB_MX_V6" 587

# --- Restart under --xdp-keep-attached: nothing passes unjudged, nothing is lost -------------
status_field() { # PYTHON-EXPRESSION over the status JSON j
  timeout 10 "$ctl" --socket "$sock" status --json 2>/dev/null |
    /usr/bin/python3 -c "import json, sys; j = json.load(sys.stdin); print($1)"
}
op25b_blocks_logged() {
  /usr/bin/python3 -c 'import json, sys; print(sum(1 for l in open(sys.argv[1]) if l.strip() and json.loads(l)["type"] == "op25b_block"))' "$TMP/events.jsonl"
}
# take_over LOG ORDINAL: start sekishod (log LOG) with only the systemd unit's capabilities (no
# CAP_SYS_ADMIN: the program to replace is found by its pin); check it took the pinned maps over
# and replaced the attached program in one step.
take_over() {
  daemon_prefix="setpriv --bounding-set $e2e_unit_capabilities --"
  spawn_xdp_daemon "$1"
  daemon_prefix=""
  e2e_wait_for_log "$1" "xdp $mode on acc0" 20 "the $2 sekishod"
  if grep -q "took over 10 maps pinned in $pin_dir" "$1"; then
    pass "the $2 sekishod took over the 10 pinned maps"
  else
    fail "the $2 sekishod did not take over the pinned maps: $(grep 'xdp:' "$1")"
  fi
  if grep -q "replaced the program left attached on acc0, core0 in one step" "$1"; then
    pass "the $2 sekishod replaced the program on acc0 and core0 atomically"
  else
    fail "the $2 sekishod did not say it replaced the attached program"
  fi
}
# gap_checks WHAT: while no daemon runs, the program stays attached and pinned and still resets
# SMTP to MX:25.
gap_checks() {
  local dev
  for dev in acc0 core0; do
    if attached "$dev"; then pass "$1: the program stays attached to $dev"; else fail "$1: no program on $dev"; fi
  done
  if [ -e "$pin_dir/active_set" ] && [ -e "$pin_dir/program" ]; then
    pass "$1: the maps and the program stay pinned in $pin_dir"
  else
    fail "$1: no pinned maps or program in $pin_dir"
  fi
  expect_mail_reset -4 "$NETLAB_SUB_V4_DYN" "$NETLAB_MX_V4" 25
}
forwarded_before="$(status_field 'j["frames"]["forwarded"]')"
blocks_before_gap="$(op25b_blocks_logged)"
pings=300   # 15 s at 0.05 s, over two restarts
e2e_spawn_pings "$pings" "$NETLAB_LOGDIR/ping-restart.log"
sleep 1
# A restart: SIGTERM (as systemctl restart) under --xdp-keep-attached.
stop_ms=$(now_ms)
e2e_stop_sekishod
rc=$?
[ "$rc" = 0 ] && pass "the first sekishod exited 0 on SIGTERM" || fail "the first sekishod exited $rc on SIGTERM"
if grep -qF "XDP program left attached and enforcing" "$NETLAB_LOGDIR/sekishod-first.log"; then
  pass "the stop line says the program stays attached"
else
  fail "the stop line does not say the program stays attached"
fi
gap_checks "after SIGTERM, no daemon running"
take_over "$NETLAB_LOGDIR/sekishod-second.log" second
gap_ms=$(($(now_ms) - stop_ms))
# A crash: kill -9 of the second (started without the flag: it found the pins and keeps pinning).
sleep 0.5
stop_ms=$(now_ms)
kill -KILL "$daemon_pid"
wait "$daemon_pid" 2>/dev/null
gap_checks "after kill -9"
take_over "$NETLAB_LOGDIR/sekishod.log" third
crash_gap_ms=$(($(now_ms) - stop_ms))
kill -0 "$ping_pid" 2>/dev/null || fail "the pings ended before the restarts were over: the test measured nothing"
wait "$ping_pid"
ping_summary="$(grep 'packets transmitted' "$NETLAB_LOGDIR/ping-restart.log")"
read -r sent got < <(e2e_ping_result "$NETLAB_LOGDIR/ping-restart.log")
if [ "${sent:-0}" = "$pings" ] && [ "${got:-0}" = "$pings" ]; then
  pass "a restart (${gap_ms} ms from SIGTERM to the new daemon's start) and a kill -9 (${crash_gap_ms} ms to the next start): $pings pings at 0.05 s, 0 lost ($ping_summary)"
else
  fail "pings lost over the restarts (${gap_ms} ms, ${crash_gap_ms} ms): ${ping_summary:-no ping summary}"
fi
forwarded_after="$(status_field 'j["frames"]["forwarded"]')"
if [ -n "$forwarded_before" ] && [ "${forwarded_after:-0}" -ge $((forwarded_before + pings)) ]; then
  pass "the counters continue over the restart (forwarded $forwarded_before before, $forwarded_after after)"
else
  fail "the counters did not continue: forwarded $forwarded_before before, '$forwarded_after' after $pings pings"
fi
sleep 0.3   # a few turns of the new daemon's event drain
blocks_after_gap="$(op25b_blocks_logged)"
if [ "$blocks_after_gap" -ge $((blocks_before_gap + 2)) ]; then
  pass "the blocks made while no daemon ran reached the event log ($blocks_before_gap -> $blocks_after_gap op25b_block)"
else
  fail "the blocks made while no daemon ran are not in the event log ($blocks_before_gap -> $blocks_after_gap)"
fi

# --- The control API on the XDP backend ---------------------------------------------------
ctl_expect 0 "status" status
contains "status names the backend" "backend xdp"
contains "status names the interfaces" "acc0 (access) <-> core0 (core)"
ctl_expect 0 "status --json" status --json
if echo "$out" | /usr/bin/python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["backend"] == "xdp" and j["generation"] == 1, j
assert j["subscribers"] is None, j["subscribers"]
assert j["frames"]["blocked"] >= 2 and j["frames"]["forwarded"] > 0, j["frames"]'; then
  pass "status --json: backend xdp, generation 1, the two blocks counted, no account table"
else
  fail "status --json content: $out"
fi
ctl_expect 0 "policy show" policy show
contains "policy show prints the running YAML" "aggregate_window: 0s"
ctl_expect 4 "policy apply of an invalid policy is refused" policy apply "$TMP/bad.yaml"
contains "with file:line errors, naming the file" "$TMP/bad.yaml:3: subscribers.dynamic[0]"
ctl_expect 4 "bindings list is refused (no account table in XDP)" bindings list
contains "naming the backend" "not available with --backend xdp"
ctl_expect 4 "account suspend is refused" account suspend alice@example.jp
# No RADIUS with XDP, so no holder is known (exit 3, "not found"), but the event log answers.
ctl_expect 3 "whois: no binding known to the XDP backend" whois "$NETLAB_SUB_V4_DYN"
contains "whois still shows the address's OP25B blocks from the event log" "op25b_block"

# --- SIGHUP: the same file with a connection limit becomes generation 2 -----------------
rate=20
burst=10
cat >>"$TMP/policy.yaml" <<EOF
limits:
  - name: syn-rate
    applies_to: dynamic
    scope: address
    measure: connections
    max: $rate
    window: 1s
    burst: $burst
    action: drop-syn
EOF
kill -HUP "$daemon_pid"
deadline=$(($(date +%s) + 10))
until grep -q "applied as generation 2" "$NETLAB_LOGDIR/sekishod.log"; do
  [ "$(date +%s)" -lt "$deadline" ] || abort "SIGHUP did not apply generation 2"
  sleep 0.1
done
pass "SIGHUP applied the policy with a connection limit as generation 2"
ctl_expect 0 "policy show after SIGHUP" policy show
contains "SIGHUP went through the API's apply path (policy show has the limit)" "name: syn-rate"
ctl_expect 0 "policy rollback" policy rollback
contains "rolled back as generation 3" "generation 3"
# What XDP cannot enforce is accepted and named, with where it is.
cp "$TMP/policy.yaml" "$TMP/policy-msgs.yaml"
cat >>"$TMP/policy-msgs.yaml" <<EOF
  - {name: msgs, scope: address, measure: messages, max: 100, window: 1h}
EOF
ctl_expect 0 "policy apply --dry-run of a message limit" policy apply "$TMP/policy-msgs.yaml" --dry-run
contains "the dry run names what XDP does not enforce" "limit 'msgs': measure messages needs SMTP tracking"
ctl_expect 0 "policy apply (the connection limit again)" policy apply "$TMP/policy.yaml"
contains "applied as generation 4" "applied as generation 4"
gen_ok=""
for _ in 1 2 3 4 5; do
  if netlab_exec_gw curl -sf "http://127.0.0.1:$metrics_port/metrics" | grep -qx "sekisho_policy_generation 4"; then
    gen_ok=1; break; fi
  sleep 0.3
done
[ -n "$gen_ok" ] && pass "metrics: sekisho_policy_generation 4" || fail "metrics do not show generation 4"

# --- SYN flood: 400 SYNs from the dynamic address to MX:587 over ~2 s (200/s, 10x the rate) ---
flood=400
netlab_spawn up "$NETLAB_LOGDIR/tcpdump-syn.log" tcpdump -i up0 -nn -U -w "$TMP/syn.pcap" \
  "tcp dst port 587 and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn"
capture_pid=$NETLAB_LAST_PID
for _ in $(seq 50); do grep -q "listening on" "$NETLAB_LOGDIR/tcpdump-syn.log" && break; sleep 0.1; done
netlab_exec_sub /usr/bin/python3 - "$NETLAB_MAC_SUB0" "$NETLAB_MAC_UP0" "$NETLAB_SUB_V4_DYN" "$NETLAB_MX_V4" \
  "$flood" >"$TMP/flood.txt" 2>"$NETLAB_LOGDIR/flood.log" <<'EOF'
import sys, time
from scapy.all import Ether, IP, TCP, conf
src_mac, dst_mac, src, dst, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
frames = [bytes(Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst) /
                TCP(sport=20000 + i, dport=587, flags="S", seq=1000 + i)) for i in range(n)]
s = conf.L2socket(iface="sub0")
t0 = time.monotonic()
for i, f in enumerate(frames):
    s.send(f)
    # Paced so the flood outlasts the burst: the rate itself must show.
    delay = t0 + (i + 1) * 0.005 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
print("%.6f" % (time.monotonic() - t0))
s.close()
EOF
sleep 1
kill -INT "$capture_pid" 2>/dev/null
for _ in $(seq 50); do kill -0 "$capture_pid" 2>/dev/null || break; sleep 0.1; done
flood_s="$(cat "$TMP/flood.txt")"
arrived="$(tcpdump -nn -r "$TMP/syn.pcap" 2>/dev/null | wc -l)"
# GCRA: the burst at once, then one per 1/rate s: burst + rate x duration, with two
# intervals of slack either way for the clocks of sender and program.
read -r least most < <(/usr/bin/python3 -c "import math; d=float('${flood_s:-0}'); print($burst + math.floor(d * $rate) - 2, $burst + math.ceil(d * $rate) + 2)")
if [ -n "$flood_s" ] && [ "$arrived" -ge "$least" ] && [ "$arrived" -le "$most" ]; then
  pass "SYN flood of $flood in ${flood_s}s cut to the rate: $arrived reached the MX (burst $burst + $rate/s: $least..$most)"
else
  fail "SYN flood of $flood in '${flood_s}'s: $arrived reached the MX (expected $least..$most)"
fi

ctl_expect 0 "top --by limit_exceeded" top --by limit_exceeded
contains "top ranks the flooding address" "$NETLAB_SUB_V4_DYN"
ctl_expect 0 "events tail --type limit_exceeded" events tail -n 5 --type limit_exceeded
contains "events tail shows the limit" "syn-rate"

# --- Stop: exit status, detached, summary and events ----------------------------------------
netlab_exec_gw curl -sf "http://127.0.0.1:$metrics_port/metrics" >"$TMP/metrics.txt" || fail "cannot fetch /metrics"
e2e_stop_sekishod
rc=$?
[ "$rc" = 0 ] && pass "sekishod exited 0 on SIGTERM" || fail "sekishod exited $rc on SIGTERM"
for dev in acc0 core0; do
  if netlab_exec_gw ip -d link show "$dev" | grep -q "prog/xdp"; then
    fail "an XDP program is still attached to $dev after exit"
  else
    pass "$dev: XDP program detached"
  fi
done
if [ -e "$pin_dir" ]; then
  fail "the pins are still in $pin_dir after a stop without --xdp-keep-attached"
else
  pass "a stop without --xdp-keep-attached removed the pins"
fi
/usr/bin/python3 - "$TMP/summary.json" "$TMP/events.jsonl" "$TMP/metrics.txt" "$flood" "$arrived" <<'EOF' && pass "summary, events and metrics agree" || fail "summary, events or metrics"
import json, sys
summary = json.load(open(sys.argv[1]))
events = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
metrics = open(sys.argv[3]).read()
flood, arrived = int(sys.argv[4]), int(sys.argv[5])
blocks = sum(e.get("count", 1) for e in events if e["type"] == "op25b_block")
limited = sum(e.get("count", 1) for e in events if e["type"] == "limit_exceeded" and e.get("limit") == "syn-rate")
print("summary blocked=%s resets=%s limited=%s; events: %d op25b_block, %d limit_exceeded"
      % (summary.get("blocked"), summary.get("resets_sent"), summary.get("limited"), blocks, limited))
assert summary["backend"] == "xdp" and summary["generation"] == 4
# The event log's counters under the same keys as the DPDK backend's summary and replay's.
assert sorted(summary["events"]) == sorted(["emitted", "ring_full", "written", "write_errors", "lines", "io_errors",
    "aggregated", "aggregation_overflow", "rotations", "reopened", "pending"]), sorted(summary["events"])
assert summary["events"]["pending"] == 0 and summary["events"]["aggregation_overflow"] == 0, summary["events"]
assert summary["blocked"] >= 2 and blocks >= 2, "both swaks to MX:25 must be blocked and logged"
assert summary["resets_sent"] >= 2
# Every SYN of the flood that did not reach the MX was stopped by the limit (and nothing else).
assert limited == flood - arrived, "limit events %d != %d SYNs stopped" % (limited, flood - arrived)
assert summary["limited"] == limited
assert 'sekisho_limit_hits_total{limit="syn-rate"}' in metrics
assert 'sekisho_op25b_blocks_total{reason="op25b_port",mode="enforce"}' in metrics
EOF

# --- Pins another build left that do not fit: fresh maps, the program still replaced in one step
# (syn_buckets' capacity is tracking.subscribers_per_worker: a different one makes the pinned map
# unusable, as a build with another map layout would).
cp "$TMP/policy.yaml" "$TMP/policy-small.yaml"
printf 'tracking:\n  subscribers_per_worker: 1024\n' >>"$TMP/policy-small.yaml"
netlab_spawn gw "$NETLAB_LOGDIR/sekishod-small.log" "$SEKISHOD" --backend xdp --xdp-mode "$mode" \
  --policy "$TMP/policy-small.yaml" --state-dir "$TMP/state" --access-if acc0 --core-if core0 \
  --events "$TMP/events-small.jsonl" --xdp-pin-dir "$pin_dir" --xdp-keep-attached
daemon_pid=$NETLAB_LAST_PID
e2e_wait_for_log "$NETLAB_LOGDIR/sekishod-small.log" "xdp $mode on acc0" 20 "sekishod with the small bucket table"
e2e_stop_sekishod
daemon_prefix="setpriv --bounding-set $e2e_unit_capabilities --"
netlab_spawn gw "$NETLAB_LOGDIR/sekishod-misfit.log" $daemon_prefix "$SEKISHOD" --backend xdp --xdp-mode "$mode" \
  --policy "$TMP/policy.yaml" --state-dir "$TMP/state" --access-if acc0 --core-if core0 \
  --events "$TMP/events-small.jsonl" --xdp-pin-dir "$pin_dir"
daemon_prefix=""
daemon_pid=$NETLAB_LAST_PID
e2e_wait_for_log "$NETLAB_LOGDIR/sekishod-misfit.log" "xdp $mode on acc0" 20 "sekishod over pins that do not fit"
if grep -q "the maps pinned in $pin_dir do not fit this program" "$NETLAB_LOGDIR/sekishod-misfit.log" &&
  grep -q "starting with fresh maps: counters and limit state restart" "$NETLAB_LOGDIR/sekishod-misfit.log"; then
  pass "pins that do not fit: said, fresh maps"
else
  fail "pins that do not fit: not said ($(grep 'xdp' "$NETLAB_LOGDIR/sekishod-misfit.log" | head -n 3))"
fi
if grep -q "replaced the program left attached on acc0, core0 in one step" "$NETLAB_LOGDIR/sekishod-misfit.log"; then
  pass "pins that do not fit: the program still replaced in one step (by its pin, no CAP_SYS_ADMIN)"
else
  fail "pins that do not fit: the program was not replaced"
fi
expect_mail_reset -4 "$NETLAB_SUB_V4_DYN" "$NETLAB_MX_V4" 25
e2e_stop_sekishod
if netlab_exec_gw ip -d link show acc0 | grep -q "prog/xdp" || [ -e "$pin_dir" ]; then
  fail "after the last stop without --xdp-keep-attached a program or the pins remain"
else
  pass "after the last stop without --xdp-keep-attached: detached, no pins"
fi

e2e_end
