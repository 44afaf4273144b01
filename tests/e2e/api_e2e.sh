#!/usr/bin/env bash
# api_e2e.sh - the control API and the metrics endpoint of a live sekishod under hostile clients
# (docs/api.md, docs/metrics.md), each probe with its documented outcome:
#   1. bodies: over TLS without the token, a POST is answered 401 before any body byte is sent;
#      with it, a declared body over the limit is 413 before reading; POST /v1/policy takes more
#      than 1 MiB (up to 64 MiB);
#   2. 1000 slow connections on the TLS listener from 12 addresses (idle before the handshake,
#      headers that never end, unauthenticated 64 MiB and 1 MiB bodies), then 640 more from 16
#      other addresses: at most 16 per address and 256 in all are held, the rest refused at once;
#      meanwhile `sekishoctl status` on the Unix socket answers in under a second, an authenticated
#      TLS request is served (then, the listener full, refused at once), and the daemon's RSS stays
#      bounded (sekishod runs with RLIMIT_NOFILE 1024:4096, a login's soft limit);
#   3. four stalled scrapers (three half-sent requests, one that never reads): a scrape answers
#      in under a second;
#   4. `sekishoctl --url http://...` is refused before anything is sent (the token never leaves);
#   5. validation: events?subscriber=999.1.1.1 and type=%00 are 400, /v1/status%00/x is 404,
#      account names with ESC/BEL are 400 (bindings add, account suspend);
#   6. sekishoctl escapes control characters from the daemon: an event line with ESC/BEL in its
#      fields (written into the event log) shows as \x1b in events tail, whois, top and report; a
#      policy binding an account name with ESC is refused (so no listing can show one).
#
# Usage (root):  tests/e2e/api_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

ctl="${2:-}"
e2e_begin api_e2e "${1:-${SEKISHOD:-}}" curl openssl prlimit /usr/bin/python3
[ -x "$ctl" ] || { echo "api_e2e: sekishoctl not executable: '$ctl'" >&2; exit 1; }
ctl="$(realpath "$ctl")"

sock="$TMP/api.sock"
tls_port=8463
metrics_port=9116
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
  -addext "subjectAltName=IP:127.0.0.1" \
  -keyout "$TMP/api.key" -out "$TMP/api.crt" -days 1 >/dev/null 2>&1 || abort "openssl"
token="token-$RANDOM-$RANDOM-$RANDOM-$RANDOM"
echo "$token" >"$TMP/token"
{
  e2e_lab_policy
  cat <<'EOF'
op25b:
  mode: enforce
  action: reset
events:
  aggregate_window: 0s
EOF
} >"$TMP/policy.yaml"

netlab_up --gateway || abort "lab setup failed"
# A descriptor limit like a default login's, 1024 soft (select()'s FD_SETSIZE); sekishod raises it.
netlab_spawn gw "$NETLAB_LOGDIR/sekishod.log" prlimit --nofile=1024:4096 "$SEKISHOD" --access-if acc0 --core-if core0 \
  --policy "$TMP/policy.yaml" --state-dir "$TMP/state" --events "$TMP/events.jsonl" --metrics "127.0.0.1:$metrics_port" \
  --api-socket "$sock" --api-tcp "127.0.0.1:$tls_port" --api-cert "$TMP/api.crt" --api-key "$TMP/api.key" \
  --api-token-file "$TMP/token"
daemon_pid=$NETLAB_LAST_PID
deadline=$(($(date +%s) + 20))
until [ -S "$sock" ] && netlab_exec_sub ping -c 1 -W 1 "$NETLAB_MX_V4" >/dev/null 2>&1; do
  kill -0 "$daemon_pid" 2>/dev/null || abort "sekishod exited early"
  [ "$(date +%s)" -lt "$deadline" ] || abort "gateway not up"
  sleep 0.2
done
netlab_wait_listen gw 127.0.0.1 "$tls_port" 10 || abort "no TLS listener"

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$daemon_pid/status"; }
in_gw() { ip netns exec "$NETLAB_NS_GW" "$@"; }
tls_curl() { # SOURCE_ADDRESS CURL-ARGS... (authenticated)
  local src="$1"
  shift
  in_gw curl -s --interface "$src" --cacert "$TMP/api.crt" -H "Authorization: Bearer $token" "$@"
}
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

soft="$(awk '/^Max open files/ { print $4 }' "/proc/$daemon_pid/limits")"
# (sekishod raises it, and so does DPDK's EAL: the XDP backend has no EAL)
[ "$soft" = 4096 ] && pass "started with RLIMIT_NOFILE 1024:4096, the soft limit is now the hard limit ($soft)" ||
  fail "RLIMIT_NOFILE soft limit $soft, expected 4096"

# --- 1. bodies: token and limits before any body byte -------------------------------------------
in_gw /usr/bin/python3 - "$tls_port" "$token" >"$TMP/bodies.log" 2>&1 <<'PY'
import socket, ssl, sys, time
port, token = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def head_only(headers):
    """Sends a request head without its body; the status line answered within 2 s, or None."""
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost")
    s.sendall(headers.encode())
    s.settimeout(2)
    try:
        data = s.recv(200)
    except (socket.timeout, TimeoutError):
        data = b""
    s.close()
    return data.split(b"\r\n")[0].decode(errors="replace") or None
print("unauthenticated:", head_only("POST /v1/bindings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                    "Content-Length: 1048576\r\n\r\n"))
print("over the limit:", head_only("POST /v1/bindings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                                   "Content-Length: 2000000\r\n\r\n" % token))
print("policy over 64 MiB:", head_only("POST /v1/policy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                                       "Content-Length: 67108865\r\n\r\n" % token))
PY
grep -q "^unauthenticated: HTTP/1.1 401" "$TMP/bodies.log" &&
  pass "TLS without the token: 401 before any body byte was sent" ||
  { fail "no early 401 for an unauthenticated body"; sed 's/^/    /' "$TMP/bodies.log"; }
grep -q "^over the limit: HTTP/1.1 413" "$TMP/bodies.log" &&
  pass "a declared body over 1 MiB: 413 before reading it" || { fail "no early 413"; sed 's/^/    /' "$TMP/bodies.log"; }
grep -q "^policy over 64 MiB: HTTP/1.1 413" "$TMP/bodies.log" &&
  pass "a policy body over 64 MiB: 413 before reading it" || { fail "no early 413 for the policy"; sed 's/^/    /' "$TMP/bodies.log"; }
# A policy of more than 1 MiB (the running one and 2 MiB of comments) is taken.
{ cat "$TMP/policy.yaml"; for ((i = 0; i < 32768; i++)); do printf '# %060d\n' "$i"; done; } >"$TMP/big-policy.yaml"
code="$(tls_curl 127.0.0.1 -o "$TMP/big.out" -w '%{http_code}' -X POST --data-binary @"$TMP/big-policy.yaml" \
  -H 'Content-Type: application/yaml' "https://127.0.0.1:$tls_port/v1/policy?dry_run=1")"
[ "$code" = 200 ] && pass "POST /v1/policy with a body of $(stat -c %s "$TMP/big-policy.yaml") bytes (dry run): 200" ||
  { fail "a 2 MiB policy: HTTP $code"; head -c 300 "$TMP/big.out"; echo; }

# --- 2. 1000 slow connections on the TLS listener ---------------------------------------------------
flood() { # NAME PORT FIRST_SOURCE SOURCES ATTEMPTS: holds its connections until $TMP/release exists
  in_gw /usr/bin/python3 - "$@" "$TMP" <<'PY'
import json, os, socket, ssl, sys, time
name, port, first, sources, attempts, tmp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \
    int(sys.argv[5]), sys.argv[6]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
trickling = []   # (socket, bytes sent every 3 s): none of them is ever idle for the 10 s timeout
refused = 0
big = b"x" * (1 << 20)
last = time.time()
def trickle():
    global last
    if time.time() - last < 3:
        return
    last = time.time()
    for t, data in trickling:
        try:
            t.sendall(data)
        except OSError:
            pass
t0 = time.time()
for i in range(attempts):
    trickle()
    src = "127.0.0.%d" % (first + i % sources)
    kind = (i // sources) % 4 if name == "A" else 1   # every address of A makes every kind
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=3, source_address=(src, 0))
    except OSError:
        refused += 1
        continue
    if kind == 0:   # a TLS handshake that never ends: a record header, then a byte at a time
        try:
            s.sendall(b"\x16\x03\x01\x02\x00")
        except OSError:
            pass
        trickling.append((s, b"\x00"))
        continue
    try:
        t = ctx.wrap_socket(s, server_hostname="localhost")
    except (OSError, ssl.SSLError):
        refused += 1             # accepted and closed at once: over a limit
        s.close()
        continue
    try:
        if kind == 1:     # headers that never end
            t.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
            trickling.append((t, b"X-Slow: 1\r\n"))
        elif kind == 2:   # no token, a policy body of 64 MiB promised, 64 KiB sent, then a byte at a time
            t.sendall(b"POST /v1/policy HTTP/1.1\r\nHost: x\r\nContent-Length: 67108000\r\n\r\n" + big[:65536])
            trickling.append((t, b"x"))
        else:             # no token, 1 MiB promised, all but 4 KiB sent, then a byte at a time
            t.sendall(b"POST /v1/bindings HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n" + big[:-4096])
            trickling.append((t, b"x"))
    except OSError:
        pass                        # the server answered 401 and closed
json.dump({"attempts": attempts, "refused": refused, "seconds": round(time.time() - t0, 1)},
          open(os.path.join(tmp, "flood-%s.json" % name), "w"))
deadline = time.time() + 40
while time.time() < deadline and not os.path.exists(os.path.join(tmp, "release")):
    time.sleep(0.2)
    trickle()
PY
}
wait_file() { local i; for ((i = 0; i < 300; i++)); do [ -s "$1" ] && return 0; sleep 0.2; done; return 1; }
unix_status_ms() { # runs sekishoctl status on the socket; prints its time in ms, or "failed"
  local start
  start=$(date +%s%N)
  if timeout 10 "$ctl" --socket "$sock" status >/dev/null 2>&1; then ms_since "$start"; else echo failed; fi
}

rss_before=$(rss_kib)
flood A "$tls_port" 1 12 1000 >"$TMP/flood-A.log" 2>&1 &
flood_a=$!
NETLAB_PIDS+=("$flood_a")
wait_file "$TMP/flood-A.json" || abort "flood A did not start: $(cat "$TMP/flood-A.log")"
echo "api_e2e: flood A: $(cat "$TMP/flood-A.json")"
held_by_peer() { # the TLS listener's established connections, counted by client address: "N ADDRESS" lines
  in_gw ss -Htn state established "sport = :$tls_port" | awk '{ sub(/:[0-9]+$/, "", $4); print $4 }' | sort | uniq -c
}
held_by_peer >"$TMP/held-A.txt"
if awk '$1 > 16 { bad = 1 } END { exit bad || NR != 12 }' "$TMP/held-A.txt" &&
  /usr/bin/python3 -c 'import json,sys; f=json.load(open(sys.argv[1])); assert f["refused"] >= 300, f' "$TMP/flood-A.json"; then
  pass "1000 connections from 12 addresses: $(awk '{ n += $1 } END { print n }' "$TMP/held-A.txt") held, at most 16 per address, $(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["refused"])' "$TMP/flood-A.json") refused at once"
else fail "per-address limit: $(tr '\n' ' ' <"$TMP/held-A.txt") $(cat "$TMP/flood-A.json")"; fi
ms=$(unix_status_ms)
[ "$ms" != failed ] && [ "$ms" -lt 1000 ] && pass "Unix socket: status in $ms ms during the flood" ||
  fail "Unix socket status during the flood: $ms"
start=$(date +%s%N)
code="$(tls_curl 127.0.0.99 --max-time 5 -o /dev/null -w '%{http_code}' "https://127.0.0.1:$tls_port/v1/status")"
ms=$(ms_since "$start")
[ "$code" = 200 ] && [ "$ms" -lt 1000 ] && pass "an authenticated TLS request from another address served during the flood ($ms ms)" ||
  fail "authenticated TLS request during the flood: HTTP '$code' after $ms ms"

flood B "$tls_port" 101 16 640 >"$TMP/flood-B.log" 2>&1 &
flood_b=$!
NETLAB_PIDS+=("$flood_b")
wait_file "$TMP/flood-B.json" || abort "flood B did not start: $(cat "$TMP/flood-B.log")"
echo "api_e2e: flood B: $(cat "$TMP/flood-B.json")"
held=$(in_gw ss -Htn state established "sport = :$tls_port" | wc -l)
[ "$held" -le 256 ] && [ "$held" -ge 200 ] && pass "the TLS listener holds $held connections (at most 256)" ||
  fail "the TLS listener holds $held connections"
start=$(date +%s%N)
code="$(tls_curl 127.0.0.98 --max-time 5 -o /dev/null -w '%{http_code}' "https://127.0.0.1:$tls_port/v1/status")"
rc=$?
ms=$(ms_since "$start")
if [ "$code" = 200 ] || { [ "$rc" != 28 ] && [ "$ms" -lt 1000 ]; }; then
  pass "an authenticated TLS request with the listener full: HTTP $code, curl exit $rc, $ms ms (served or refused at once)"
else fail "authenticated TLS request with the listener full: HTTP '$code', curl exit $rc after $ms ms"; fi
ms=$(unix_status_ms)
[ "$ms" != failed ] && [ "$ms" -lt 1000 ] && pass "Unix socket: status in $ms ms with the TLS listener full" ||
  fail "Unix socket status with the TLS listener full: $ms"
rss_during=$(rss_kib)
growth=$(((rss_during - rss_before) / 1024))
echo "api_e2e: RSS $((rss_before / 1024)) MiB before the floods, $((rss_during / 1024)) MiB during"
[ "$growth" -lt 64 ] && pass "RSS grew $growth MiB under 1640 hostile connections (bounded)" || fail "RSS grew $growth MiB"
touch "$TMP/release"
wait "$flood_a" "$flood_b" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do   # the server sees the clients' FINs within its next poll
  code="$(tls_curl 127.0.0.1 --max-time 5 -o /dev/null -w '%{http_code}' "https://127.0.0.1:$tls_port/v1/status")"
  [ "$code" = 200 ] && break
  sleep 0.2
done
[ "$code" = 200 ] && pass "after the floods, TLS serves again from a flooding address" || fail "after the floods: HTTP '$code'"
grep -q "FD_SETSIZE" "$NETLAB_LOGDIR/sekishod.log" && fail "FD_SETSIZE in the daemon's log" ||
  pass "no FD_SETSIZE error in the daemon's log"

# --- 3. stalled scrapers ------------------------------------------------------------------------------
in_gw /usr/bin/python3 - "$metrics_port" >"$TMP/scrapers.log" 2>&1 <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
stalled = []
for _ in range(3):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /metr")
    stalled.append(s)
never_reads = socket.create_connection(("127.0.0.1", port))
never_reads.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
never_reads.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
stalled.append(never_reads)
print("stalled", flush=True)
time.sleep(8)
PY
scrapers=$!
NETLAB_PIDS+=("$scrapers")
sleep 1
start=$(date +%s%N)
in_gw curl -s --max-time 5 "http://127.0.0.1:$metrics_port/metrics" >"$TMP/metrics.txt"
ms=$(ms_since "$start")
grep -q '^sekisho_policy_generation 1$' "$TMP/metrics.txt" && [ "$ms" -lt 1000 ] &&
  pass "a scrape beside four stalled scrapers in $ms ms" || fail "scrape beside stalled scrapers: $ms ms, $(wc -c <"$TMP/metrics.txt") bytes"
code="$(in_gw curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$metrics_port/other")"
[ "$code" = 404 ] && pass "metrics: another path is 404" || fail "metrics /other: HTTP $code"
kill "$scrapers" 2>/dev/null
wait "$scrapers" 2>/dev/null

# --- 4. sekishoctl --url http:// ----------------------------------------------------------------------
in_gw /usr/bin/python3 - >"$TMP/clear.log" 2>&1 <<'PY' &
import socket, time
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 8480))
srv.listen(4)
srv.settimeout(4)
print("listening", flush=True)
try:
    c, _ = srv.accept()
    c.settimeout(2)
    print("received:", c.recv(4096))
except OSError:
    print("nothing received")
PY
listener=$!
NETLAB_PIDS+=("$listener")
netlab_wait_listen gw 127.0.0.1 8480 5 || abort "the clear-text listener"
out="$(in_gw "$ctl" --url http://127.0.0.1:8480 --token-file "$TMP/token" status 2>&1)"
rc=$?
wait "$listener"
[ "$rc" = 2 ] && echo "$out" | grep -q "only https://" && pass "sekishoctl --url http://: refused (exit 2)" ||
  fail "sekishoctl --url http://: exit $rc: $(echo "$out" | head -n 2)"
grep -q "nothing received" "$TMP/clear.log" && pass "nothing was sent to the http:// address (the token stayed)" ||
  fail "sekishoctl sent to the http:// address: $(cat "$TMP/clear.log")"

# --- 5. validation ---------------------------------------------------------------------------------------
unix_code() { # PATH [CURL-ARGS...]: the HTTP status of a request on the Unix socket
  local path="$1"
  shift
  curl -s --unix-socket "$sock" -o "$TMP/reply.json" -w '%{http_code}' "$@" "http://localhost$path"
}
code=$(unix_code '/v1/events?subscriber=999.1.1.1')
[ "$code" = 400 ] && pass "events?subscriber=999.1.1.1: 400 ($(cat "$TMP/reply.json"))" || fail "subscriber=999.1.1.1: $code"
code=$(unix_code '/v1/events?type=%00')
[ "$code" = 400 ] && pass "events?type=%00: 400" || fail "type=%00: $code"
code=$(unix_code '/v1/events?type=bogus')
[ "$code" = 400 ] && pass "events?type=bogus: 400" || fail "type=bogus: $code"
code=$(unix_code '/v1/status%00/x')
{ [ "$code" = 404 ] || [ "$code" = 400 ]; } && pass "/v1/status%00/x: $code, not status" || fail "/v1/status%00/x: $code"
code=$(unix_code '/v1/bindings' -X POST -H 'Content-Type: application/json' \
  --data '{"prefix":"198.51.100.61","account":"evil\u001b[2J\u0007"}')
[ "$code" = 400 ] && grep -q "field 'account'" "$TMP/reply.json" && pass "bindings add with ESC/BEL in the account: 400 naming it" ||
  fail "bindings add with ESC: $code $(cat "$TMP/reply.json")"
ctl_expect 4 "account suspend of a name with ESC is refused" account suspend "$(printf 'evil\033[31mred')"
ctl_expect 4 "account suspend of a name with BEL is refused" account suspend "$(printf 'bell\a')"
ctl_expect 2 "events tail --subscriber 999.1.1.1 is a usage error, refused before sending" events tail --subscriber 999.1.1.1
ctl_expect 0 "account list" account list --json
echo "$out" | grep -q 'evil' && fail "a refused account name was stored: $out" || pass "no refused name in the registry"

# --- 6. sekishoctl escapes what the daemon sends ---------------------------------------------------------
now_ns=$(date +%s%N)
printf '{"time_ns":%s,"type":"limit_exceeded\\u001b[2J","subscriber":"198.51.100.7\\u0007","server":"203.0.113.25","reason":"r\\u001b]0;pwned\\u0007","account":"evil\\u001b[31m","limit":"l","action":"tempfail","generation":1,"worker":0,"count":1}\n' \
  "$now_ns" >>"$TMP/events.jsonl"
printf '{"time_ns":%s,"type":"op25b_block","src":"198.51.100.7","dst":"203.0.113.25","reason":"op25b_port\\u001b[1m","action":"reset","account":"evil\\u001b[31m","generation":1,"worker":0,"count":1}\n' \
  "$now_ns" >>"$TMP/events.jsonl"
raw_esc() { printf '%s' "$out" | LC_ALL=C grep -q "$(printf '[\033\007]')"; }
for cmd in "events tail -n 5" "whois 198.51.100.7" "top --by events" "report --since 0"; do
  # shellcheck disable=SC2086
  out="$(timeout 10 "$ctl" --socket "$sock" $cmd 2>&1)"
  if raw_esc; then fail "sekishoctl $cmd printed a raw ESC or BEL"
  elif ! printf '%s' "$out" | grep -qF '\x1b'; then fail "sekishoctl $cmd: no escaped \\x1b in: $(echo "$out" | head -n 3)"
  else pass "sekishoctl $cmd shows control characters escaped (\\x1b)"; fi
done

# No account name with a control character can reach the registry (bindings and account listings):
# the API refuses it (section 5), RADIUS escapes it, and so does the policy, at check time.
e2e_lab_policy | sed 's/^relays:/  bindings:\n    - {prefix: 198.51.100.60\/32, account: "mallory\\e]0;pwned\\a"}\nrelays:/' >"$TMP/esc.yaml"
out="$("$SEKISHOD" --check-policy "$TMP/esc.yaml" 2>&1)"; rc=$?
[ "$rc" = 2 ] && echo "$out" | grep -q "esc.yaml:9: subscribers.bindings\[0\].account: the account name has a control character 0x1b at byte 7" &&
  pass "a policy binding an account name with ESC is refused with file:line" || fail "policy with ESC: rc $rc: $out"

if e2e_stop_sekishod; then pass "sekishod exited 0"; else fail "sekishod exit status $?"; fi
e2e_end
