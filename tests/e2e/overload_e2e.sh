#!/usr/bin/env bash
# overload_e2e.sh - a live sekishod driven past its limits with real clients, checking the
# documented behaviour: OP25B still enforced, other traffic still forwarded, inspection fails
# open, and every overflow counted and visible in the Prometheus metrics.
#
#   1. tables full: smtp-source keeps 100 sessions open at once through a gateway that tracks
#      64 SMTP flows and inspects 16 messages per worker: the rest are forwarded untracked and
#      uninspected (flow_table_full, inspection table_full counted), every message is delivered;
#      port 25 to the MX stays blocked meanwhile.
#   2. RX overload: the workers stop (SIGSTOP) while the subscriber floods 20000 UDP datagrams;
#      the port's RX ring overflows (fewer are forwarded than were sent; the PMD's loss counter
#      is exported as sekisho_port_rx_dropped_total); after SIGCONT the gateway forwards and
#      blocks as before.
#
# Usage (root):  tests/e2e/overload_e2e.sh PATH/TO/sekishod
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

e2e_begin overload_e2e "${1:-${SEKISHOD:-}}" swaks curl /usr/sbin/smtp-sink /usr/sbin/smtp-source /usr/bin/python3

{
  e2e_lab_policy
  cat <<'EOF'
op25b:
  mode: enforce
  action: reset
tracking:
  flows_per_worker: 64
inspection:
  flows_per_worker: 16
  rules:
    - {id: blackword, pattern: "unsolicited offer", flags: [caseless], where: body, score: 1}
    # an envelope rule: each session holds its inspection record from EHLO to its end
    - {id: dynamic-ehlo, pattern: "^EHLO [^ ]*\\.dyn\\.", where: envelope, score: 1}
events:
  aggregate_window: 0s
EOF
} >"$TMP/policy.yaml"

netlab_up --gateway || abort "lab setup failed"
mkdir -p "$TMP/mx" && chmod 777 "$TMP/mx"
# The sink answers each MAIL FROM after 1 s, so smtp-source's 100 sessions are all open at once.
netlab_spawn up "$NETLAB_LOGDIR/sink-587.log" /usr/sbin/smtp-sink -u nobody -W MAIL:1 "$NETLAB_MX_V4:587" 256 ||
  abort "smtp-sink 587"
netlab_spawn up "$NETLAB_LOGDIR/sink-25.log" /usr/sbin/smtp-sink -u nobody "$NETLAB_MX_V4:25" 64 || abort "smtp-sink 25"
netlab_wait_listen up "$NETLAB_MX_V4" 587 5 || abort "sink not listening"
metrics_port=9111
e2e_start_sekishod "$NETLAB_LOGDIR/sekishod.log" --policy "$TMP/policy.yaml" \
  --events "$TMP/events.jsonl" --summary "$TMP/summary.json" --metrics "127.0.0.1:$metrics_port" ${SEKISHOD_ARGS:-}

# metric NAME_AND_LABELS: its value in a fresh scrape (0 if absent).
metric() {
  netlab_exec_gw curl -sf "http://127.0.0.1:$metrics_port/metrics" >"$TMP/metrics.txt" || { echo 0; return; }
  awk -v k="$1" '$1 == k { print $2; found = 1 } END { if (!found) print 0 }' "$TMP/metrics.txt"
}
blocked_to_25() { # a dynamic subscriber's SMTP to the MX fails fast (reset by OP25B)
  ! timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 25 --timeout 5 \
    --from a@example.jp --to b@example.net >/dev/null 2>&1
}

# --- 1. flow and inspection tables full -----------------------------------------------------
# smtp-source: 300 messages, 100 sessions at once, each message 4 KiB with the blackword.
ip netns exec "$NETLAB_NS_SUB" /usr/sbin/smtp-source -c -m 300 -s 100 -l 4096 -S "unsolicited offer" \
  -f a@example.jp -t b@example.net "$NETLAB_MX_V4:587" >"$TMP/source.log" 2>&1 &
source_pid=$!
NETLAB_PIDS+=("$source_pid")
if blocked_to_25; then pass "port 25 blocked while the tables are full"; else fail "port 25 got through under load"; fi
if wait "$source_pid"; then pass "smtp-source delivered its 300 messages (exit 0)"; else
  fail "smtp-source failed"; tail -n 5 "$TMP/source.log" | sed 's/^/    /'; fi
sleep 0.5
full=$(metric 'sekisho_smtp_events_total{kind="flow_table_full"}')
created=$(metric 'sekisho_smtp_events_total{kind="flow_created"}')
insp_full=$(metric 'sekisho_inspection_events_total{kind="table_full"}')
inspected=$(metric 'sekisho_inspection_events_total{kind="message"}')
echo "overload_e2e: flows created $created, flow_table_full $full; inspected $inspected, inspection table_full $insp_full"
[ "${full%.*}" -gt 0 ] && pass "flow table full counted ($full)" || fail "flow_table_full is $full"
[ "${insp_full%.*}" -gt 0 ] && pass "inspection table full counted ($insp_full)" || fail "inspection table_full is $insp_full"
[ "${inspected%.*}" -gt 0 ] && pass "messages within the capacity were inspected ($inspected)" || fail "nothing inspected"

# --- 2. RX overload ---------------------------------------------------------------------------
rx_before=$(metric 'sekisho_packets_total{port="access",verdict="forwarded"}')
missed_before=$(metric 'sekisho_port_rx_dropped_total{port="access",reason="missed"}')
kill -STOP "$daemon_pid"
ip netns exec "$NETLAB_NS_SUB" /usr/bin/python3 - "$NETLAB_MX_V4" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"x" * 64
for i in range(20000):
    try:
        s.sendto(payload, (sys.argv[1], 9))
    except OSError:
        pass
PY
kill -CONT "$daemon_pid"
sleep 1
rx_after=$(metric 'sekisho_packets_total{port="access",verdict="forwarded"}')
missed=$(metric 'sekisho_port_rx_dropped_total{port="access",reason="missed"}')
got=$(awk -v a="$rx_after" -v b="$rx_before" 'BEGIN { printf "%d", a - b }')
echo "overload_e2e: 20000 datagrams sent while the workers were stopped, $got forwarded after; port rx missed $missed_before -> $missed"
# The overload was real: the ring held far fewer than were sent. The loss is counted as
# reason="missed": with net_af_packet from the kernel's ring drops (packet_ring_drops.h: the
# 22.11 PMD leaves imissed at 0). Every counted drop is one of those not forwarded; most of
# them are counted (the rest were lost before the ring: the veth backlog, the sender).
# net_af_xdp (SEKISHOD_ARGS=--if-driver af_xdp) reports its ring-full drops nowhere in 22.11:
# there only the overflow itself is checked (docs/reliability.md).
[ "$got" -lt 20000 ] && pass "the RX ring overflowed ($got of 20000 forwarded)" || fail "no overflow: $got forwarded"
lost=$((20000 - got))
counted=$(awk -v a="$missed" -v b="$missed_before" 'BEGIN { printf "%d", a - b }')
case "${SEKISHOD_ARGS:-}" in
  *af_xdp*)
    grep -q '^sekisho_port_rx_dropped_total{port="access",reason="missed"}' "$TMP/metrics.txt" &&
      pass "sekisho_port_rx_dropped_total is exported" || fail "sekisho_port_rx_dropped_total missing" ;;
  *)
    if [ "$counted" -le "$lost" ] && [ $((counted * 10)) -ge $((lost * 9)) ]; then
      pass "the RX loss is counted: missed +$counted of $lost not forwarded"
    else
      fail "RX loss counted $counted, not forwarded $lost (expected 90-100% counted)"
    fi ;;
esac
if netlab_exec_sub ping -c 1 -W 2 "$NETLAB_MX_V4" >/dev/null 2>&1; then pass "forwards again after the overload"; else
  fail "no ping after the overload"; fi
if blocked_to_25; then pass "port 25 still blocked after the overload"; else fail "port 25 got through after the overload"; fi
if timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 587 --timeout 5 \
  --from a@example.jp --to b@example.net >/dev/null 2>&1; then pass "submission still delivers"; else fail "submission after the overload"; fi

if e2e_stop_sekishod; then pass "sekishod exited 0 after SIGTERM"; else fail "sekishod exit status $?"; fi
/usr/bin/python3 - "$TMP/summary.json" <<'EOF' && pass "summary agrees: overflows counted, nothing blocked but port 25" || fail "summary check"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["smtp"]["flow_table_full"] > 0, s["smtp"]
assert s["inspection"]["table_full"] > 0, s["inspection"]
assert set(s["blocked_by_reason"]) <= {"op25b_port"}, s["blocked_by_reason"]
assert s["op25b_by_dst_port"] == {"25": s["blocked"]}, s
EOF
e2e_end
