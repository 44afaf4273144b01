#!/usr/bin/env bash
# radius_clients_e2e.sh - the RADIUS clients file re-read while sekishod runs, with radclient
# (freeradius-utils) as two NASes: 127.0.0.1 and 192.0.2.222 (an address on the gateway
# namespace's loopback, so a datagram sent to it leaves from it). A NAS not in the file is not
# answered; added to the file and SIGHUP: its accounting is accepted and bound. A rotated secret:
# after SIGHUP the old one is refused, the new one accepted. A malformed clients file on SIGHUP
# is refused with its file:line and the running clients keep working. `policy apply` through
# the API re-reads the file too. `sekishod --check-policy` fails, with file:line, on what start
# would fail on: a missing or malformed clients file, a radius.listen that is not ADDRESS:PORT.
#
# Usage (root):  tests/e2e/radius_clients_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

e2e_begin radius_clients_e2e "${1:-${SEKISHOD:-}}" radclient
ctl="${2:-}"
[ -x "$ctl" ] || { echo "radius_clients_e2e: sekishoctl not executable: '$ctl'" >&2; exit 1; }
ctl="$(realpath "$ctl")"
sock="$TMP/api.sock"
clients="$TMP/radius-clients.yaml"
nas_b=192.0.2.222

secret_a="e2e-$RANDOM-$RANDOM-secret-a"
secret_a2="e2e-$RANDOM-$RANDOM-secret-a-rotated"
secret_b="e2e-$RANDOM-$RANDOM-secret-b"
secret_b2="e2e-$RANDOM-$RANDOM-secret-b-rotated"
for s in secret_a secret_a2 secret_b secret_b2; do printf '%s' "${!s}" >"$TMP/$s"; done

write_clients() { # "ADDRESS SECRET"...
  echo "clients:" >"$clients.new"
  local entry
  for entry in "$@"; do
    printf '  - address: %s\n    secret: "%s"\n' "${entry%% *}" "${entry#* }" >>"$clients.new"
  done
  mv "$clients.new" "$clients"
}
write_clients "127.0.0.1 $secret_a"
write_policy() { # [EXTRA RELAY]
  {
    e2e_lab_policy | sed "s|^relays: \[203.0.113.10/32\]|relays: [203.0.113.10/32${1:+, $1}]|"
    cat <<EOF
radius:
  listen: 0.0.0.0:1813
  clients_file: $clients
history:
  database: $TMP/bindings.sqlite
EOF
  } >"$TMP/policy.yaml"
}
write_policy

netlab_up --gateway || abort "lab setup failed"
ip netns exec "$NETLAB_NS_GW" ip addr add "$nas_b/32" dev lo || abort "address $nas_b on lo"

log="$NETLAB_LOGDIR/sekishod.log"
e2e_start_sekishod "$log" --policy "$TMP/policy.yaml" --events "$TMP/events.jsonl" --api-socket "$sock"
for ((i = 0; i < 50; i++)); do [ -S "$sock" ] && break; sleep 0.1; done

acct() { # TO SECRETFILE ATTRIBUTES: radclient in the gateway's namespace, one try; answered/unanswered
  if echo "$3" | timeout 20 ip netns exec "$NETLAB_NS_GW" radclient -x -r 1 -t 1 -S "$TMP/$2" \
    "$1:1813" acct 2>&1 | grep -q "Received Accounting-Response"; then echo answered; else echo unanswered; fi
}
start_of() { # USER SESSION ADDRESS NAS
  echo "Acct-Status-Type = Start, User-Name = \"$1\", Acct-Session-Id = \"$2\", Framed-IP-Address = $3, NAS-IP-Address = $4"
}
expect() { # WANT DESCRIPTION TO SECRETFILE ATTRIBUTES
  local got
  got="$(acct "$3" "$4" "$5")"
  if [ "$got" = "$1" ]; then pass "$2: $got"; else fail "$2: $got, expected $1"; fi
}
bound() { # ADDRESS: the account the data plane has for it, or "-"
  timeout 20 "$ctl" --socket "$sock" --json bindings list 2>/dev/null |
    python3 -c 'import json,sys; a=sys.argv[1]; print(next((b["account"] for b in json.load(sys.stdin)["bindings"] if b["prefix"] in (a, a + "/32")), "-"))' "$1"
}
expect_bound() { # ADDRESS ACCOUNT
  local got
  got="$(bound "$1")"
  if [ "$got" = "$2" ]; then pass "$1 bound to $2"; else fail "$1 bound to '$got', expected $2"; fi
}
hup() { # PATTERN: SIGHUP, then wait for the n-th log line matching PATTERN (n = those before + 1)
  local before
  before="$(grep -c -- "$1" "$log")"
  kill -HUP "$daemon_pid"
  for ((i = 0; i < 100; i++)); do
    [ "$(grep -c -- "$1" "$log")" -gt "$before" ] && return 0
    sleep 0.1
  done
  fail "no '$1' in the log after SIGHUP"
  tail -n 5 "$log" | sed 's/^/    /'
  return 1
}

# 1. Only NAS A is a client.
expect answered "NAS A (in the file)" 127.0.0.1 secret_a "$(start_of alice@example.jp a1 198.51.100.21 127.0.0.1)"
expect unanswered "NAS B (not in the file)" "$nas_b" secret_b "$(start_of bob@example.jp b1 198.51.100.22 "$nas_b")"
expect_bound 198.51.100.21 alice@example.jp
expect_bound 198.51.100.22 -

# 2. NAS B added to the file, SIGHUP: accepted without a restart.
write_clients "127.0.0.1 $secret_a" "$nas_b $secret_b"
hup "2 clients from $clients in force"
expect answered "NAS B after it was added and SIGHUP" "$nas_b" secret_b "$(start_of bob@example.jp b1 198.51.100.22 "$nas_b")"
expect_bound 198.51.100.22 bob@example.jp

# 3. NAS A's secret rotated, SIGHUP: the old secret is refused, the new one accepted.
write_clients "127.0.0.1 $secret_a2" "$nas_b $secret_b"
hup "2 clients from $clients in force"
expect unanswered "NAS A with the old secret after the rotation" 127.0.0.1 secret_a "$(start_of carol@example.jp a2 198.51.100.23 127.0.0.1)"
expect_bound 198.51.100.23 -
expect answered "NAS A with the rotated secret" 127.0.0.1 secret_a2 "$(start_of carol@example.jp a2 198.51.100.23 127.0.0.1)"
expect_bound 198.51.100.23 carol@example.jp

# 4. A malformed clients file on SIGHUP: refused with its file:line, the running clients stay.
cp "$clients" "$TMP/clients.good"
printf 'clients:\n  - address: 127.0.0.1\n    secret: "%s"\n  - address: 192.0.2.300\n    secret: "%s"\n' \
  "$secret_a" "$secret_b" >"$clients"
hup "SIGHUP: policy not applied"
if grep -q "$clients:4: " "$log"; then pass "the refusal names $clients:4"; else
  fail "no '$clients:4:' in the log"; tail -n 5 "$log" | sed 's/^/    /'; fi
if grep -qF "$secret_a" "$log"; then fail "a secret appears in the log"; else pass "no secret in the log"; fi
expect answered "NAS A keeps its rotated secret" 127.0.0.1 secret_a2 "$(start_of dave@example.jp a3 198.51.100.24 127.0.0.1)"
expect unanswered "NAS A's old secret (in the refused file) stays refused" 127.0.0.1 secret_a "$(start_of erin@example.jp a4 198.51.100.25 127.0.0.1)"
expect answered "NAS B keeps working" "$nas_b" secret_b "$(start_of frank@example.jp b2 198.51.100.26 "$nas_b")"

# 5. policy apply through the API re-reads the clients file too (a refused file refuses the policy).
write_clients "127.0.0.1 $secret_a2" "$nas_b $secret_b2"
write_policy 203.0.113.11/32
ctl_expect 0 "policy apply with NAS B's secret rotated" policy apply "$TMP/policy.yaml"
expect unanswered "NAS B's old secret after the apply" "$nas_b" secret_b "$(start_of gina@example.jp b3 198.51.100.27 "$nas_b")"
expect answered "NAS B's new secret after the apply" "$nas_b" secret_b2 "$(start_of gina@example.jp b3 198.51.100.27 "$nas_b")"
echo "clients: [" >"$clients"
write_policy 203.0.113.12/32
ctl_expect 4 "policy apply with a malformed clients file is refused" policy apply "$TMP/policy.yaml"
[ "$(grep -c '' <<<"$out")" -gt 0 ] && contains "the refusal names the clients file" "$clients:"
ctl_expect 0 "status after the refusal" --json status
expect answered "NAS B's new secret still works" "$nas_b" secret_b2 "$(start_of hank@example.jp b4 198.51.100.28 "$nas_b")"

# 6. --check-policy fails on what start would fail on, each with file:line.
check() { # WANT-RC DESCRIPTION NEEDLE POLICY
  local o rc
  o="$("$SEKISHOD" --check-policy "$4" 2>&1)"
  rc=$?
  if [ "$rc" = "$1" ] && grep -qF -- "$3" <<<"$o"; then pass "--check-policy: $2 (exit $rc)"; else
    fail "--check-policy: $2: exit $rc, expected $1 with '$3'"; echo "$o" | head -n 5 | sed 's/^/    /'; fi
}
cp "$TMP/clients.good" "$clients"
check 0 "the running policy" ": ok (" "$TMP/policy.yaml"
sed "s|clients_file: .*|clients_file: $TMP/missing.yaml|" "$TMP/policy.yaml" >"$TMP/missing-policy.yaml"
check 2 "a missing clients file" "missing-policy.yaml:$(grep -n clients_file "$TMP/policy.yaml" | cut -d: -f1): radius.clients_file: '$TMP/missing.yaml' does not exist" "$TMP/missing-policy.yaml"
printf 'clients:\n  - address: 127.0.0.1\n    secrt: x\n' >"$TMP/malformed.yaml"
sed "s|clients_file: .*|clients_file: $TMP/malformed.yaml|" "$TMP/policy.yaml" >"$TMP/malformed-policy.yaml"
check 2 "a malformed clients file" "$TMP/malformed.yaml:3: clients[0].secrt: unknown key" "$TMP/malformed-policy.yaml"
sed "s|listen: .*|listen: 127.0.0.1|" "$TMP/policy.yaml" >"$TMP/listen-policy.yaml"
check 2 "radius.listen without a port" "listen-policy.yaml:$(grep -n 'listen:' "$TMP/policy.yaml" | cut -d: -f1): radius.listen: '127.0.0.1' is not ADDRESS:PORT" "$TMP/listen-policy.yaml"
out="$(timeout 20 "$SEKISHOD" --access-if lo --core-if lo --state-dir "$TMP/state2" --policy "$TMP/listen-policy.yaml" 2>&1)"
rc=$?
if [ "$rc" != 0 ] && grep -q "radius.listen" <<<"$out"; then pass "start refuses the same radius.listen (exit $rc)"; else
  fail "start with listen 127.0.0.1: exit $rc"; echo "$out" | head -n 3 | sed 's/^/    /'; fi

kill -0 "$daemon_pid" 2>/dev/null && pass "sekishod still running" || fail "sekishod died"
e2e_stop_sekishod
e2e_end
