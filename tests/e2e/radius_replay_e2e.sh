#!/usr/bin/env bash
# radius_replay_e2e.sh - RADIUS accounting resent, reordered and malformed against a live
# sekishod: radclient (freeradius-utils) sends each probe, then the data plane
# (`sekishoctl bindings list --json` over the API socket) must equal the history's open rows
# (read with Python's sqlite3 from the database file) and the expected holders, after every
# step. Probes: an old Stop resent after a new session of the same account, an old Start
# resent after a handover, an old Accounting-On resent, a Stop without User-Name and
# Framed-IP-Address, a Stop before its Start, an Interim after the Stop, a Start with a valid
# /56 plus a ::/0 Framed-IPv6-Prefix, Event-Timestamp and Acct-Delay-Time 2^32-1, and an exact
# duplicate (a raw client resends the same datagram: radclient cannot on demand), answered from
# the cache and not applied again. Then kill -9 and a restart: exactly the open bindings come
# back. The history's files are 0640.
#
# The bindings count of the list, status and sekisho_table_entries{table="bindings"} is checked
# against the entries listed after every step.
#
# Usage (root):  tests/e2e/radius_replay_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

e2e_begin radius_replay_e2e "${1:-${SEKISHOD:-}}" radclient /usr/bin/python3
ctl="${2:-}"
[ -x "$ctl" ] || { echo "radius_replay_e2e: sekishoctl not executable: '$ctl'" >&2; exit 1; }
ctl="$(realpath "$ctl")"
sock="$TMP/api.sock"
db="$TMP/bindings.sqlite"

secret="e2e-$RANDOM-$RANDOM-replay-secret"
printf '%s' "$secret" >"$TMP/secret"
cat >"$TMP/radius-clients.yaml" <<EOF
clients:
  - address: 127.0.0.1
    secret: "$secret"
    name: bng-e2e
EOF
{
  e2e_lab_policy
  cat <<EOF
radius:
  listen: 127.0.0.1:1813
  clients_file: $TMP/radius-clients.yaml
history:
  database: $db
EOF
} >"$TMP/policy.yaml"

# The data plane and the history, each as sorted "PREFIX ACCOUNT" lines; IPv6 history rows as
# the /56 subscriber prefixes they cover (the policy's default ipv6_prefix_length).
cat >"$TMP/state.py" <<'EOF'
import ipaddress, json, sqlite3, sys
what, arg = sys.argv[1], sys.argv[2]
lines = []
if what == "dataplane":
    for b in json.load(open(arg))["bindings"]:
        lines.append(f'{b["prefix"]} {b["account"]}')
else:
    db = sqlite3.connect(f"file:{arg}?mode=ro", uri=True)
    for family, prefix, length, account in db.execute(
            "SELECT family, prefix, prefix_length, account FROM sessions WHERE stop_time IS NULL"):
        if not account:
            continue
        net = ipaddress.ip_network((ipaddress.ip_address(prefix), length))
        if family == 4:
            lines.append(f"{net} {account}")
        elif length >= 56:
            lines.append(f"{net.supernet(new_prefix=56)} {account}")
        else:
            lines.extend(f"{sub} {account}" for sub in net.subnets(new_prefix=56))
print("\n".join(sorted(lines)))
EOF

# An Accounting-Request sent raw, twice from one socket (an exact duplicate); prints whether
# each was answered and whether the two answers are the same bytes.
cat >"$TMP/raw_twice.py" <<'EOF'
import hashlib, socket, struct, sys
secret, ident, status, user, session, ip, ts = sys.argv[1:8]
def attr(t, v):
    return bytes([t, len(v) + 2]) + v
attrs = attr(40, struct.pack(">I", int(status))) + attr(1, user.encode()) + attr(44, session.encode()) \
    + attr(8, socket.inet_aton(ip)) + attr(4, socket.inet_aton("192.0.2.1")) + attr(55, struct.pack(">I", int(ts)))
head = struct.pack(">BBH", 4, int(ident), 20 + len(attrs))
auth = hashlib.md5(head + b"\0" * 16 + attrs + secret.encode()).digest()
packet = head + auth + attrs
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
answers = []
for _ in range(2):
    s.sendto(packet, ("127.0.0.1", 1813))
    try:
        answers.append(s.recv(4096))
    except socket.timeout:
        answers.append(None)
print("answered" if answers[0] else "unanswered", "answered" if answers[1] else "unanswered",
      "same" if answers[0] and answers[0] == answers[1] else "different")
EOF

netlab_up --gateway || abort "lab setup failed"

start_daemon() { # LOG [SUMMARY]
  local log="$1"
  shift
  e2e_start_sekishod "$log" --policy "$TMP/policy.yaml" --events "$TMP/events.jsonl" --api-socket "$sock" \
    --metrics 127.0.0.1:9108 "$@"
  local i
  for ((i = 0; i < 50; i++)); do [ -S "$sock" ] && break; sleep 0.1; done
}

acct() { # ATTRIBUTES: radclient in the gateway's namespace, one try; prints answered/unanswered
  if echo "$1" | timeout 20 ip netns exec "$NETLAB_NS_GW" radclient -x -r 1 -t 1 -S "$TMP/secret" \
    127.0.0.1:1813 acct 2>&1 | grep -q "Received Accounting-Response"; then echo answered; else echo unanswered; fi
}

dataplane() {
  timeout 20 "$ctl" --socket "$sock" --json bindings list >"$TMP/bindings.json" 2>&1 || { echo "sekishoctl failed: $(cat "$TMP/bindings.json")"; return; }
  /usr/bin/python3 "$TMP/state.py" dataplane "$TMP/bindings.json"
  # The count the list, status and the metrics give is the number of entries listed (the metrics
  # snapshot is refreshed every ~200 ms).
  timeout 20 "$ctl" --socket "$sock" --json status >"$TMP/status.json" 2>&1
  sleep 0.3
  netlab_exec_gw curl -sf http://127.0.0.1:9108/metrics >"$TMP/metrics.txt" 2>&1
  /usr/bin/python3 - "$TMP/bindings.json" "$TMP/status.json" "$TMP/metrics.txt" <<'EOF'
import json, sys
listed = json.load(open(sys.argv[1]))
n, total = len(listed["bindings"]), listed["total"]
status = json.load(open(sys.argv[2]))["subscribers"]["bindings"]
metric = [line.split()[-1] for line in open(sys.argv[3]) if line.startswith('sekisho_table_entries{table="bindings"}')]
if total != n or status != n or metric != [str(n)]:
    print(f"count: {n} listed, total {total}, status {status}, sekisho_table_entries {metric}")
EOF
}
history() { /usr/bin/python3 "$TMP/state.py" history "$db"; }

# step DESCRIPTION WANT(answered|unanswered) EXPECTED-LINES ATTRIBUTES
step() {
  local what="$1" want="$2" expected="$3" got dp hist
  got="$(acct "$4")"
  dp="$(dataplane)"
  hist="$(history)"
  expected="$(printf '%s' "$expected" | tr ';' '\n' | sed '/^$/d' | sort)"
  if [ "$got" = "$want" ] && [ "$dp" = "$expected" ] && [ "$hist" = "$dp" ]; then
    pass "$what: $got; data plane = history = {$(echo "$dp" | paste -sd, -)}"
  else
    fail "$what: $got (want $want)"
    echo "    data plane: $(echo "$dp" | paste -sd, -)"
    echo "    history:    $(echo "$hist" | paste -sd, -)"
    echo "    expected:   $(echo "$expected" | paste -sd, -)"
  fi
}

start_daemon "$NETLAB_LOGDIR/sekishod-1.log"
t=$(($(date +%s) - 1000))
nas="NAS-IP-Address = 192.0.2.1"
alice=' User-Name = "alice@example.jp"'
a7="198.51.100.7/32 alice@example.jp"

step "Start alice s1 on .7" answered "$a7" \
  "Acct-Status-Type = Start,$alice, Acct-Session-Id = \"s1\", Framed-IP-Address = 198.51.100.7, $nas, Event-Timestamp = $t"
step "Stop alice s1" answered "" \
  "Acct-Status-Type = Stop,$alice, Acct-Session-Id = \"s1\", Framed-IP-Address = 198.51.100.7, $nas, Event-Timestamp = $((t + 100))"
step "Start alice s2 on .7 (her new session)" answered "$a7" \
  "Acct-Status-Type = Start,$alice, Acct-Session-Id = \"s2\", Framed-IP-Address = 198.51.100.7, $nas, Event-Timestamp = $((t + 200))"
step "the old Stop of s1 resent" answered "$a7" \
  "Acct-Status-Type = Stop,$alice, Acct-Session-Id = \"s1\", Framed-IP-Address = 198.51.100.7, $nas, Event-Timestamp = $((t + 100))"
step "Start bob s3 on .7 (handover, alice's Stop lost)" answered "198.51.100.7/32 bob@example.jp" \
  "Acct-Status-Type = Start, User-Name = \"bob@example.jp\", Acct-Session-Id = \"s3\", Framed-IP-Address = 198.51.100.7, $nas, Event-Timestamp = $((t + 300))"
step "the old Start of alice s2 resent" answered "198.51.100.7/32 bob@example.jp" \
  "Acct-Status-Type = Start,$alice, Acct-Session-Id = \"s2\", Framed-IP-Address = 198.51.100.7, $nas, Event-Timestamp = $((t + 200))"
step "Accounting-On of the NAS" answered "" "Acct-Status-Type = Accounting-On, $nas, Event-Timestamp = $((t + 350))"
step "Start carol s4 on .8 after the reboot" answered "198.51.100.8/32 carol@example.jp" \
  "Acct-Status-Type = Start, User-Name = \"carol@example.jp\", Acct-Session-Id = \"s4\", Framed-IP-Address = 198.51.100.8, $nas, Event-Timestamp = $((t + 400))"
step "the old Accounting-On resent" answered "198.51.100.8/32 carol@example.jp" \
  "Acct-Status-Type = Accounting-On, $nas, Event-Timestamp = $((t + 350))"
step "Start dave s5 on .9 and 2001:db8:109::/56" answered \
  "198.51.100.8/32 carol@example.jp;198.51.100.9/32 dave@example.jp;2001:db8:109::/56 dave@example.jp" \
  "Acct-Status-Type = Start, User-Name = \"dave@example.jp\", Acct-Session-Id = \"s5\", Framed-IP-Address = 198.51.100.9, Delegated-IPv6-Prefix = 2001:db8:109::/56, $nas, Event-Timestamp = $((t + 500))"
step "Stop of s5 without User-Name or Framed-IP-Address" answered "198.51.100.8/32 carol@example.jp" \
  "Acct-Status-Type = Stop, Acct-Session-Id = \"s5\", $nas, Event-Timestamp = $((t + 600))"
step "Stop erin s6 before its Start" answered "198.51.100.8/32 carol@example.jp" \
  "Acct-Status-Type = Stop, User-Name = \"erin@example.jp\", Acct-Session-Id = \"s6\", Framed-IP-Address = 198.51.100.10, $nas, Event-Timestamp = $((t + 700)), Acct-Session-Time = 100"
step "the late Start of erin s6" answered "198.51.100.8/32 carol@example.jp" \
  "Acct-Status-Type = Start, User-Name = \"erin@example.jp\", Acct-Session-Id = \"s6\", Framed-IP-Address = 198.51.100.10, $nas, Event-Timestamp = $((t + 600))"
step "Stop carol s4" answered "" \
  "Acct-Status-Type = Stop, User-Name = \"carol@example.jp\", Acct-Session-Id = \"s4\", Framed-IP-Address = 198.51.100.8, $nas, Event-Timestamp = $((t + 800))"
step "an Interim of s4 after its Stop" answered "" \
  "Acct-Status-Type = Interim-Update, User-Name = \"carol@example.jp\", Acct-Session-Id = \"s4\", Framed-IP-Address = 198.51.100.8, $nas, Event-Timestamp = $((t + 750))"
step "a Start with a valid /56 and a ::/0 Framed-IPv6-Prefix" unanswered "" \
  "Acct-Status-Type = Start, User-Name = \"frank@example.jp\", Acct-Session-Id = \"s7\", Delegated-IPv6-Prefix = 2001:db8:10a::/56, Framed-IPv6-Prefix = ::/0, $nas, Event-Timestamp = $((t + 900))"
step "a Start with Event-Timestamp 2^32-1" unanswered "" \
  "Acct-Status-Type = Start, User-Name = \"mallory@example.jp\", Acct-Session-Id = \"s8\", Framed-IP-Address = 198.51.100.11, $nas, Event-Timestamp = 4294967295"
step "a Start with Acct-Delay-Time 2^32-1" unanswered "" \
  "Acct-Status-Type = Start, User-Name = \"mallory@example.jp\", Acct-Session-Id = \"s8\", Framed-IP-Address = 198.51.100.11, $nas, Acct-Delay-Time = 4294967295"
if grep -q "Event-Timestamp (55) 4294967295 (2106-02-07T06:28:15Z)" "$NETLAB_LOGDIR/sekishod-1.log" &&
  grep -q "Acct-Delay-Time (41) 4294967295 s exceeds" "$NETLAB_LOGDIR/sekishod-1.log" &&
  grep -q "::/0 is too wide to bind" "$NETLAB_LOGDIR/sekishod-1.log"; then
  pass "the refused packets are logged with their values"
else
  fail "log lines for the refused packets missing: $(grep radius "$NETLAB_LOGDIR/sekishod-1.log" | tail -n 3)"
fi
if "$SEKISHOD" --whois 198.51.100.11 --at 4294967295 --history "$db" >/dev/null; then
  fail "--whois finds someone in 2106"
else pass "--whois 198.51.100.11 in 2106: nobody"; fi

# An exact duplicate: grace's Start answered, her Stop answered, then the Start datagram
# resent byte for byte within the window is answered from the cache and not applied again.
raw() { ip netns exec "$NETLAB_NS_GW" /usr/bin/python3 "$TMP/raw_twice.py" "$secret" "$@"; }
out="$(raw 200 1 grace@example.jp s9 198.51.100.12 $((t + 950)))"
dp="$(dataplane)"
if [ "$out" = "answered answered same" ] && [ "$dp" = "198.51.100.12/32 grace@example.jp" ]; then
  pass "raw Start sent twice: both answered with the same bytes, bound once"
else fail "raw Start twice: '$out', data plane {$dp}"; fi
out="$(raw 201 2 grace@example.jp s9 198.51.100.12 $((t + 960)))"
[ "$(dataplane)" = "" ] && pass "grace's Stop unbound .12" || fail "grace's Stop: data plane {$(dataplane)}"
out="$(raw 200 1 grace@example.jp s9 198.51.100.12 $((t + 950)))"
dp="$(dataplane)"
if [ "$out" = "answered answered same" ] && [ "$dp" = "" ] && [ "$(history)" = "" ]; then
  pass "the exact Start datagram resent after the Stop: answered from the cache, not applied again"
else fail "exact duplicate after the Stop: '$out', data plane {$dp}, history {$(history)}"; fi

# Who is bound now, before the crash.
step "Start heidi s10 on .13 and 2001:db8:10d::/56" answered \
  "198.51.100.13/32 heidi@example.jp;2001:db8:10d::/56 heidi@example.jp" \
  "Acct-Status-Type = Start, User-Name = \"heidi@example.jp\", Acct-Session-Id = \"s10\", Framed-IP-Address = 198.51.100.13, Delegated-IPv6-Prefix = 2001:db8:10d::/56, $nas, Event-Timestamp = $((t + 980))"
before="$(dataplane)"

modes="$(stat -c '%a' "$db" "$db-wal" "$db-shm" | paste -sd' ' -)"
[ "$modes" = "640 640 640" ] && pass "history, -wal and -shm are 0640" || fail "history file modes: $modes (want 640 640 640)"

kill -9 "$daemon_pid"
wait "$daemon_pid" 2>/dev/null
start_daemon "$NETLAB_LOGDIR/sekishod-2.log" --summary "$TMP/summary-2.json"
after="$(dataplane)"
if [ "$after" = "$before" ] && [ "$(history)" = "$after" ]; then
  pass "kill -9 and restart: exactly the open bindings are back {$(echo "$after" | paste -sd, -)}"
else
  fail "after the restart: data plane {$(echo "$after" | paste -sd, -)}, before {$(echo "$before" | paste -sd, -)}, history {$(history | paste -sd, -)}"
fi
step "after the restart, the old Start of alice s2 resent" answered \
  "198.51.100.13/32 heidi@example.jp;2001:db8:10d::/56 heidi@example.jp" \
  "Acct-Status-Type = Start,$alice, Acct-Session-Id = \"s2\", Framed-IP-Address = 198.51.100.7, $nas, Event-Timestamp = $((t + 200))"
out="$(raw 210 1 ivan@example.jp s11 198.51.100.14 $((t + 990)))"
[ "$out" = "answered answered same" ] && pass "a duplicate after the restart: answered twice alike" || fail "duplicate after restart: '$out'"

if e2e_stop_sekishod; then pass "sekishod exited 0"; else fail "sekishod exit status $?"; fi
/usr/bin/python3 - "$TMP/summary-2.json" <<'EOF' && pass "summary: radius duplicate 1, accepted 2" || fail "summary counters: $(cat "$TMP/summary-2.json" | tr -d '\n' | grep -o '"radius"[^}]*')"
import json, sys
r = json.load(open(sys.argv[1]))["radius"]
assert r["duplicate"] == 1 and r["accepted"] == 2 and r["received"] == 3 and r["bad_time"] == 0, r
EOF

e2e_end
