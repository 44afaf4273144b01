#!/usr/bin/env bash
# fleet_radacct_e2e.sh - `sekishoctl --fleet ... --bindings-source radacct` against rows a real
# FreeRADIUS 3 (Debian's freeradius + freeradius-postgresql, its stock sql module and queries.conf)
# wrote into its own schema.sql's radacct in a real PostgreSQL 15 (fleet_stores.sh). radclient sends
# the accounting:
#   - alice: Start, Interim-Update, then FreeRADIUS killed -9 (her Stop unanswered) and restarted,
#     then her Stop (the failure midway), then her Start once more (the replay: it must not reopen
#     her session);
#   - bob: Start for the same address in alice's Stop second, open;
#   - carol: Start and an Interim for another address, her Stop lost; dave's Start for it later.
# Checks: the rows radacct holds, then whois at each second (alice, the handover's both, bob; carol
# until dave's Start, "superseded"; dave; nobody before), and the desk role reading radacct.
#
# Usage (root):  tests/fleet/fleet_radacct_e2e.sh PATH/TO/sekishoctl
# Exit status: 0 all checks passed, 1 a check failed, 77 PostgreSQL or FreeRADIUS missing (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/fleet_stores.sh
source "$here/fleet_stores.sh"

ctl="${1:?usage: $0 PATH/TO/sekishoctl}"
schema=/etc/freeradius/3.0/mods-config/sql/main/postgresql/schema.sql
fleet_stores_available || { echo "fleet_radacct_e2e: PostgreSQL 15 not installed (skipping)" >&2; exit 77; }
for need in freeradius radclient /usr/lib/freeradius/rlm_sql_postgresql.so "$schema"; do
  command -v "$need" >/dev/null 2>&1 || [ -e "$need" ] ||
    { echo "fleet_radacct_e2e: $need missing: freeradius freeradius-postgresql (scripts/setup.sh) (skipping)" >&2; exit 77; }
done

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
expect_eq() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: got '$2', expected '$3'"; fi; }

work="$(mktemp -d /tmp/sekisho-radacct.XXXXXX)"
radius_pid=""
cleanup() {
  [ -n "$radius_pid" ] && kill -9 "$radius_pid" 2>/dev/null
  fleet_stores_cleanup   # removes $work, the stores' directory
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fleet_stores_begin "$work"
fleet_start_postgres || { echo "fleet_radacct_e2e: PostgreSQL did not start" >&2; exit 1; }
fleet_psql "SET client_min_messages = warning; $(cat "$schema")" >/dev/null || { echo "schema.sql did not load" >&2; exit 1; }
fleet_psql "GRANT SELECT ON radacct TO sekisho_desk" >/dev/null

# FreeRADIUS's own configuration, with its sql module on the test cluster and one accounting
# listener whose accounting section is that module (the stock preacct policies give each session
# its Acct-Unique-Session-Id). As root, without switching to freerad (the copy is the test's).
raddb="$work/raddb"
cp -a /etc/freeradius/3.0 "$raddb"
sed -i 's/^\tdialect = "sqlite"/\tdialect = "postgresql"/; s/^\tdriver = "rlm_sql_null"/\tdriver = "rlm_sql_${dialect}"/' \
  "$raddb/mods-available/sql"
sed -i "s|^\tradius_db = \"radius\"|\tradius_db = \"host=$FLEET_DIR/pgsock port=$(_fleet_pg_port) dbname=sekisho user=postgres\"|" \
  "$raddb/mods-available/sql"
ln -sf ../mods-available/sql "$raddb/mods-enabled/sql"
rm -f "$raddb/sites-enabled/"* "$raddb/mods-enabled/eap"
sed -i 's/^\tuser = freerad/#&/; s/^\tgroup = freerad/#&/' "$raddb/radiusd.conf"
port="$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$raddb/sites-enabled/sekisho_test" <<EOF
server sekisho_test {
  listen {
    type = acct
    ipaddr = 127.0.0.1
    port = $port
  }
  preacct {
    preprocess
    acct_unique
  }
  accounting {
    sql
  }
}
EOF

start_radius() {
  : >"$work/radius.log"
  freeradius -f -d "$raddb" -l "$work/radius.log" &
  radius_pid=$!
  for _ in $(seq 100); do
    grep -q "Ready to process requests" "$work/radius.log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "fleet_radacct_e2e: freeradius did not start:" >&2
  tail -n 20 "$work/radius.log" >&2
  return 1
}

t0=1810000000   # 2027-05-11T01:46:40Z
# acct STATUS USER SESSION ADDRESS SECONDS [MORE]: one Accounting-Request, answered.
acct() {
  local attrs="Acct-Status-Type=$1,User-Name=$2,Acct-Session-Id=$3,NAS-IP-Address=192.0.2.1,Framed-IP-Address=$4"
  attrs="$attrs,Event-Timestamp=$((t0 + $5))${6:+,$6}"
  echo "$attrs" | radclient -q -r 3 -t 1 "127.0.0.1:$port" acct testing123 >/dev/null 2>&1
}

start_radius || exit 1
acct Start alice s-alice 192.0.2.50 0 || fail "alice's Start answered"
acct Interim-Update alice s-alice 192.0.2.50 600 || fail "alice's Interim answered"
kill -9 "$radius_pid"
wait "$radius_pid" 2>/dev/null
radius_pid=""
acct Stop alice s-alice 192.0.2.50 1000 "Acct-Terminate-Cause=User-Request" &&
  fail "FreeRADIUS down answers" || pass "FreeRADIUS killed -9: no answer"
start_radius || exit 1
acct Stop alice s-alice 192.0.2.50 1000 "Acct-Terminate-Cause=User-Request" || fail "alice's Stop answered"
acct Start alice s-alice 192.0.2.50 0 || fail "alice's Start again answered"
acct Start bob s-bob 192.0.2.50 1000 || fail "bob's Start answered"
acct Start carol s-carol 192.0.2.60 0 || fail "carol's Start answered"
acct Interim-Update carol s-carol 192.0.2.60 300 || fail "carol's Interim answered"
acct Start dave s-dave 192.0.2.60 2000 || fail "dave's Start answered"

rows="$(fleet_psql "SELECT string_agg(username || ':' || host(framedipaddress) || ':' ||
  (extract(epoch FROM acctstarttime)::bigint - $t0) || ':' ||
  coalesce((extract(epoch FROM acctstoptime)::bigint - $t0)::text, '-') || ':' ||
  (extract(epoch FROM acctupdatetime)::bigint - $t0), ' ' ORDER BY username) FROM radacct")"
# alice's Start sent again after her Stop: queries.conf's start query updates nothing (its ON CONFLICT
# ... WHERE AcctStopTime IS NULL), so its alternate query sets AcctStartTime and AcctUpdateTime to
# the Start's time again; her Stop stays, and with it every answer below.
expect_eq "radacct as FreeRADIUS wrote it" "$rows" \
  "alice:192.0.2.50:0:1000:0 bob:192.0.2.50:1000:-:1000 carol:192.0.2.60:0:-:300 dave:192.0.2.60:2000:-:2000"

# holders ADDRESS SECONDS: "EXIT account(stop_cause)..." from whois --json, as the desk.
holders() {
  "$ctl" --fleet "$FLEET_DIR/desk.conninfo" --json whois "$1" --at "$((t0 + $2))" --bindings-source radacct |
    python3 -c 'import json, sys
j = json.load(sys.stdin)
print(" ".join(b["account"] + "(" + b["stop_cause"] + ")" for b in j["bindings"]))'
  echo "exit ${PIPESTATUS[0]}"
}
expect_eq "whois before any session" "$(holders 192.0.2.50 -10 | paste -sd' ')" " exit 3"
expect_eq "whois alice's session" "$(holders 192.0.2.50 500 | paste -sd' ')" "alice(User-Request) exit 0"
expect_eq "whois the handover's second" "$(holders 192.0.2.50 1000 | paste -sd' ')" "alice(User-Request) bob() exit 0"
expect_eq "whois bob, open" "$(holders 192.0.2.50 86400 | paste -sd' ')" "bob() exit 0"
expect_eq "whois carol, her Stop lost" "$(holders 192.0.2.60 1500 | paste -sd' ')" "carol(superseded) exit 0"
expect_eq "whois dave after carol" "$(holders 192.0.2.60 2500 | paste -sd' ')" "dave() exit 0"
text="$("$ctl" --fleet "$FLEET_DIR/desk.conninfo" whois 192.0.2.60 --at $((t0 + 1500)) --bindings-source radacct)"
case "$text" in
  *"192.0.2.60/32 held by carol in radacct (session s-carol, NAS 192.0.2.1) from 2027-05-11T01:46:40Z (1810000000) to 2027-05-11T02:20:00Z (1810002000) (superseded)"*)
    pass "whois's text names radacct and the session" ;;
  *) fail "whois's text: $text" ;;
esac

echo "fleet_radacct_e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
