#!/usr/bin/env bash
# faults_e2e.sh - a live sekishod under faults an operator meets, each with its documented outcome:
#   1. a RADIUS flood with bad authenticators (20000 datagrams): counted, nothing bound, a real
#      radclient Start afterwards is still answered and bound;
#   2. a control-API client that connects and never sends: other clients are served at once,
#      the silent one is closed after the idle timeout (10 s);
#   3. slow Prometheus scrapers (one never reads, two send half a request): another scrape
#      answers in under a second and the data plane goes on;
#   4. the event log's disk full (a 64 KiB tmpfs): write errors counted and exported, OP25B
#      and forwarding unaffected;
#   5. SIGTERM under load (a UDP stream through the gateway): exit 0 promptly, and every frame
#      that reached the far side is intact (checksums and payload checked frame by frame).
# A policy that fails to compile (cli_e2e) and a restart with the binding history intact
# (radius_e2e) are covered by those tests.
#
# Usage (root):  tests/e2e/faults_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

ctl="${2:-}"
e2e_begin faults_e2e "${1:-${SEKISHOD:-}}" radclient swaks curl tcpdump /usr/sbin/smtp-sink /usr/bin/python3
[ -x "$ctl" ] || { echo "faults_e2e: sekishoctl not executable: '$ctl'" >&2; exit 1; }
ctl="$(realpath "$ctl")"

secret="faults-$RANDOM-$RANDOM-secret"
cat >"$TMP/radius-clients.yaml" <<EOF
clients:
  - address: 127.0.0.1
    secret: "$secret"
    name: bng-faults
EOF
mkdir -p "$TMP/full"
mount -t tmpfs -o size=64k tmpfs "$TMP/full" || abort "cannot mount a tmpfs"
umount_full() { umount "$TMP/full" 2>/dev/null; }
trap 'rc=$?; umount_full; (exit $rc); _e2e_cleanup' EXIT
{
  e2e_lab_policy
  cat <<EOF
op25b:
  mode: enforce
  action: reset
radius:
  listen: 127.0.0.1:1813
  clients_file: $TMP/radius-clients.yaml
history:
  database: $TMP/bindings.sqlite
events:
  aggregate_window: 0s
  fsync: every
EOF
} >"$TMP/policy.yaml"

netlab_up --gateway || abort "lab setup failed"
netlab_start_sinks || abort "sinks"
sock="$TMP/api.sock"
metrics_port=9112
e2e_start_sekishod "$NETLAB_LOGDIR/sekishod.log" --policy "$TMP/policy.yaml" --events "$TMP/full/events.jsonl" \
  --summary "$TMP/summary.json" --metrics "127.0.0.1:$metrics_port" --api-socket "$sock"

metric() { # NAME_AND_LABELS: its value in a fresh scrape (empty if the scrape failed)
  timeout 5 ip netns exec "$NETLAB_NS_GW" curl -sf "http://127.0.0.1:$metrics_port/metrics" >"$TMP/metrics.txt" || return
  awk -v k="$1" '$1 == k { print $2; found = 1 } END { if (!found) print 0 }' "$TMP/metrics.txt"
}
blocked_to_25() {
  ! timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 25 --timeout 5 \
    --from a@example.jp --to b@example.net >/dev/null 2>&1
}
submits() {
  timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 587 --timeout 5 \
    --from a@example.jp --to b@example.net >/dev/null 2>&1
}

# --- 1. RADIUS flood with bad authenticators ---------------------------------------------------
ip netns exec "$NETLAB_NS_GW" /usr/bin/python3 - <<'PY'
import os, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def attr(t, v): return bytes([t, len(v) + 2]) + v
body = (attr(40, struct.pack(">I", 1)) + attr(1, b"mallory@example.jp") + attr(44, b"m1") +
        attr(8, socket.inet_aton("198.51.100.9")))
for i in range(20000):
    pkt = struct.pack(">BBH", 4, i & 0xff, 20 + len(body)) + os.urandom(16) + body
    s.sendto(pkt, ("127.0.0.1", 1813))
PY
if netlab_exec_sub ping -c 1 -W 2 "$NETLAB_MX_V4" >/dev/null 2>&1; then pass "forwarding during the RADIUS flood"; else fail "no ping after the flood"; fi
out="$(echo "Acct-Status-Type = Start, User-Name = \"carol@example.jp\", Acct-Session-Id = \"c1\", Framed-IP-Address = 198.51.100.7, NAS-IP-Address = 192.0.2.1" |
  timeout 20 ip netns exec "$NETLAB_NS_GW" radclient -x -r 3 -t 2 -s 127.0.0.1:1813 acct "$secret" 2>&1)"
echo "$out" | grep -q "Received Accounting-Response" && pass "a real Start after the flood is answered" ||
  { fail "no Accounting-Response after the flood"; echo "$out" | tail -n 3 | sed 's/^/    /'; }
for _ in $(seq 1 25); do   # the metrics snapshot follows the listener within ~200 ms
  accepted=$(metric 'sekisho_radius_packets_total{result="accepted"}')
  [ "${accepted%.*}" = 1 ] && break
  sleep 0.2
done
bad=$(metric 'sekisho_radius_packets_total{result="bad_authenticator"}')
echo "faults_e2e: RADIUS bad_authenticator $bad, accepted $accepted"
awk -v b="$bad" 'BEGIN { exit !(b >= 100) }' && pass "bad authenticators counted ($bad of 20000 sent; the rest lost in the socket buffer)" ||
  fail "bad_authenticator $bad"
[ "${accepted%.*}" = 1 ] && pass "only the real Start accepted" || fail "accepted $accepted"
w="$(timeout 10 "$ctl" --socket "$sock" whois 198.51.100.9 --json)"
echo "$w" | /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["bound_now"] is None and not j["bindings"], j' &&
  pass "the forged binding of 198.51.100.9 does not exist" || fail "forged binding: $w"

# --- 2. a control-API client that never sends ----------------------------------------------------
/usr/bin/python3 - "$sock" >"$TMP/silent.log" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
t0 = time.time()
s.settimeout(30)
data = s.recv(100)
print("closed after %.1f s" % (time.time() - t0))
PY
silent_pid=$!
NETLAB_PIDS+=("$silent_pid")
sleep 0.5
start=$(date +%s%N)
if timeout 5 "$ctl" --socket "$sock" status >/dev/null 2>&1; then
  pass "status answered beside a silent client ($((($(date +%s%N) - start) / 1000000)) ms)"
else fail "status blocked by a silent client"; fi
if wait "$silent_pid" && grep -q "closed after" "$TMP/silent.log"; then
  pass "the silent client was closed by the server ($(cat "$TMP/silent.log"))"
else fail "the silent client was not closed: $(cat "$TMP/silent.log")"; fi

# --- 3. slow Prometheus scrapers -----------------------------------------------------------------
ip netns exec "$NETLAB_NS_GW" /usr/bin/python3 - "$metrics_port" >"$TMP/slow.log" 2>&1 <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
never_reads = socket.create_connection(("127.0.0.1", port))
never_reads.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
never_reads.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
half = socket.create_connection(("127.0.0.1", port))
half.sendall(b"GET /metr")
half2 = socket.create_connection(("127.0.0.1", port))
half2.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
time.sleep(8)
PY
slow_pid=$!
NETLAB_PIDS+=("$slow_pid")
sleep 1
start=$(date +%s%N)
v=$(metric 'sekisho_policy_generation')
ms=$((($(date +%s%N) - start) / 1000000))
[ "$v" = 1 ] && [ "$ms" -lt 1000 ] && pass "a scrape beside three stalled scrapers (${ms} ms)" ||
  fail "scrape blocked by slow scrapers ('$v' after $ms ms)"
netlab_exec_sub ping -c 1 -W 2 "$NETLAB_MX_V4" >/dev/null 2>&1 && pass "forwarding beside the stalled scrapers" || fail "no ping"
kill "$slow_pid" 2>/dev/null; wait "$slow_pid" 2>/dev/null

# --- 4. the event log's disk full ----------------------------------------------------------------
dd if=/dev/zero of="$TMP/full/filler" bs=1k count=200 >/dev/null 2>&1   # fills the tmpfs (ENOSPC)
for i in 1 2 3; do blocked_to_25 || fail "port 25 got through with the disk full"; done
pass "port 25 blocked with the event log's disk full"
submits && pass "submission delivers with the disk full" || fail "submission with the disk full"
sleep 0.5
errs=$(metric 'sekisho_events_total{outcome="write_error"}')
io=$(metric 'sekisho_event_log_io_errors_total')
echo "faults_e2e: event write errors $errs, io errors $io"
awk -v e="$errs" 'BEGIN { exit !(e > 0) }' && pass "lost events counted as write_error ($errs)" || fail "write_error $errs"
awk -v e="$io" 'BEGIN { exit !(e > 0) }' && pass "failed writes counted ($io)" || fail "io errors $io"
rm -f "$TMP/full/filler"

# --- 5. SIGTERM under load -----------------------------------------------------------------------
netlab_spawn up "$NETLAB_LOGDIR/tcpdump.log" tcpdump -i up0 -U -w "$TMP/far.pcap" udp port 9999 || abort "tcpdump"
sleep 1
ip netns exec "$NETLAB_NS_SUB" /usr/bin/python3 - "$NETLAB_MX_V4" >"$TMP/stream.log" 2>&1 <<'PY' &
import hashlib, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
i = 0
start = time.time()
while time.time() < start + 4:
    # paced at ~4000 datagrams/s: enough load, and few enough frames to check one by one
    if i > (time.time() - start) * 4000:
        time.sleep(0.001)
        continue
    payload = i.to_bytes(4, "big") + hashlib.sha256(i.to_bytes(4, "big")).digest() * 8
    try:
        s.sendto(payload, (sys.argv[1], 9999))
    except OSError:
        pass
    i += 1
print(i)
PY
stream_pid=$!
sleep 1.5
start=$(date +%s%N)
if e2e_stop_sekishod; then
  pass "SIGTERM under load: exit 0 after $((($(date +%s%N) - start) / 1000000)) ms"
else fail "SIGTERM under load: exit status $?"; fi
wait "$stream_pid"
sleep 0.5
kill "$NETLAB_LAST_PID" 2>/dev/null
sleep 0.5
/usr/bin/python3 - "$TMP/far.pcap" <<'PY' && pass "every frame that reached the far side is intact" || fail "corrupt frames"
import hashlib, sys
from scapy.all import IP, UDP, Raw
from scapy.utils import PcapReader
n = 0
for f in PcapReader(sys.argv[1]):
    n += 1
    ip = f[IP]
    check = IP(bytes(ip))
    del check.chksum
    del check[UDP].chksum
    fresh = IP(bytes(check))
    assert fresh.chksum == ip.chksum and fresh[UDP].chksum == ip[UDP].chksum, f.summary()
    p = bytes(f[Raw].load)
    i = int.from_bytes(p[:4], "big")
    assert p[4:] == hashlib.sha256(p[:4]).digest() * 8, i
assert n > 100, n
print(n, "frames checked")
PY

/usr/bin/python3 - "$TMP/summary.json" <<'EOF' && pass "summary: RADIUS and event-log faults counted" || fail "summary check"
import json, sys
s = json.load(open(sys.argv[1]))
r = s["radius"]
assert r["accepted"] == 1 and r["bad_authenticator"] >= 100, r
EOF
e2e_end
