#!/usr/bin/env bash
# policy_history_e2e.sh - which policy is in force, after any sequence an operator may run, on a
# live sekishod with real clients (sekishoctl, swaks; the OP25B mode in force seen in traffic):
#   1. an API apply, then SIGHUP with the file unchanged: the API generation stays, and status and
#      policy show say so (the file is applied only when its content changes);
#   2. rollback walks back through the generations (never a toggle) and answers 409 at the end;
#      the human output is a before/after table;
#   3. kill -9 and restart: the generation in force comes back, with its number, text, origin and
#      enforcement; generation numbers go on increasing; the history survives (rollback after it);
#   4. the file edited while the daemon was down: the restart applies it as a new generation and
#      says so on standard error and in the audit trail;
#   5. keys read only at start, by SIGHUP and by the API (apply and diff): refused, restart_required
#      in words, policy show never shows them;
#   6. errors through the CLI name the file (not "policy") and come in line order;
#   7. a damaged history entry: sekishod does not start, naming the file.
#
# Usage (root):  tests/e2e/policy_history_e2e.sh PATH/TO/sekishod PATH/TO/sekishoctl
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

ctl="${2:-}"
e2e_begin policy_history_e2e "${1:-}" swaks /usr/sbin/smtp-sink /usr/bin/python3
[ -x "$ctl" ] || { echo "policy_history_e2e: sekishoctl not executable: '$ctl'" >&2; exit 1; }
ctl="$(realpath "$ctl")"
sock="$TMP/api.sock"
state="$TMP/state"

policy_of() { # MODE [LIMIT-MAX]: the lab's policy, OP25B in MODE, one message limit of LIMIT-MAX
  e2e_lab_policy
  printf 'events:\n  aggregate_window: 0s\ntracking:\n  max_bindings: 64\nop25b:\n  mode: %s\n' "$1"
  [ -n "${2:-}" ] && printf 'limits:\n  - {name: msgs, scope: address, measure: messages, max: %s, window: 1h}\n' "$2"
  return 0
}
policy_of enforce >"$TMP/enforce.yaml"
policy_of monitor >"$TMP/monitor.yaml"
policy_of monitor 100 >"$TMP/monitor-limit.yaml"
cp "$TMP/enforce.yaml" "$TMP/policy.yaml"

netlab_up --gateway || abort "lab setup failed"
netlab_start_sinks || abort "sinks"
run=0
start_daemon() {
  run=$((run + 1))
  log="$NETLAB_LOGDIR/sekishod-$run.log"
  e2e_start_sekishod "$log" --policy "$TMP/policy.yaml" --events "$TMP/events.jsonl" --api-socket "$sock" \
    --state-dir "$state" --policy-history 10
  for _ in $(seq 1 50); do [ -S "$sock" ] && break; sleep 0.1; done
}

port25_delivers() {
  timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 25 --timeout 5 \
    --from a@example.jp --to b@example.net >/dev/null 2>&1
}
status_field() { # python expression over the status JSON `s`
  timeout 10 "$ctl" --socket "$sock" status --json | /usr/bin/python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"
}
show_field() { # python expression over the policy show JSON `p`
  timeout 10 "$ctl" --socket "$sock" policy show --json | /usr/bin/python3 -c "import json,sys; p=json.load(sys.stdin); print($1)"
}
in_force() { status_field 's["generation"], s["policy"]["op25b_mode"], s["policy"]["limits"], s["policy"]["in_force"]["kind"], s["policy"]["rollback_depth"]'; }
expect_in_force() { # WHAT "GEN MODE LIMITS KIND DEPTH"
  local got
  got="$(in_force | tr -d "(),'")"
  [ "$got" = "$2" ] && pass "$1: $got" || fail "$1: in force '$got', expected '$2'"
}
audits() { # ENDPOINT: the last audit record of it
  grep "\"endpoint\":\"$1\"" "$TMP/events.jsonl" | tail -n 1
}
wait_audits() { # ENDPOINT COUNT
  for _ in $(seq 1 100); do [ "$(grep -c "\"endpoint\":\"$1\"" "$TMP/events.jsonl")" -ge "$2" ] && return 0; sleep 0.1; done
  return 1
}

start_daemon
expect_in_force "first start: the file as generation 1" "1 enforce 0 file 0"
port25_delivers && fail "port 25 delivers under enforce" || pass "generation 1 enforces OP25B"

# --- 1. API apply, then SIGHUP with the file unchanged -------------------------------------------
ctl_expect 0 "policy diff: a dry run" policy diff "$TMP/monitor-limit.yaml"
contains "the diff is a table with a header" "KEY"
echo "$out" | grep -Eq '^  op25b\.mode +enforce +monitor$' && pass "op25b.mode: before enforce, after monitor" ||
  { fail "no before/after row for op25b.mode"; echo "$out" | sed 's/^/    /'; }
echo "$out" | grep -Eq '^  limits\.msgs +- +100 messages per 1h per address, applies to any, action tempfail$' &&
  pass "the new limit in words in the AFTER column" || fail "no row for limits.msgs"
echo "$out" | grep -q '{"added"' && fail "raw JSON in the human diff" || pass "no raw JSON in the human diff"
expect_in_force "the dry run changed nothing" "1 enforce 0 file 0"

ctl_expect 0 "policy apply monitor (API)" policy apply "$TMP/monitor.yaml"
contains "applied as generation 2" "applied as generation 2"
expect_in_force "the API apply" "2 monitor 0 api 1"
port25_delivers && pass "monitor: port 25 delivers" || fail "monitor not in force"

kill -HUP "$daemon_pid"
wait_audits policy_reload 1 || fail "no audit record of the SIGHUP"
expect_in_force "SIGHUP with the file unchanged: the API generation stays" "2 monitor 0 api 1"
grep -q "SIGHUP: policy file $TMP/policy.yaml unchanged; generation 2 from API caller .* stays in force" "$log" &&
  pass "SIGHUP says the file is unchanged and which generation stays" || fail "no 'unchanged' line: $(grep SIGHUP "$log")"
port25_delivers && pass "after SIGHUP port 25 still delivers (monitor)" || fail "SIGHUP reverted the API change"
ctl_expect 0 "status (human)" status
contains "status names the API origin" "policy in force: generation 2 from API caller"
ctl_expect 0 "policy show (human)" policy show
contains "policy show names the generation and its origin" "# generation 2 from API caller"
contains "policy show shows the monitor policy" "mode: monitor"
[ "$(show_field 'p["in_force"]["kind"], p["rollback_depth"]' | tr -d "(),'")" = "api 1" ] &&
  pass "GET /v1/policy: in_force api, rollback depth 1" || fail "policy show JSON: $(show_field 'p["in_force"]')"

# --- 2. rollback walks back ------------------------------------------------------------------------
ctl_expect 0 "policy apply monitor + a limit" policy apply "$TMP/monitor-limit.yaml"
expect_in_force "generation 3" "3 monitor 1 api 2"
ctl_expect 0 "rollback" policy rollback
contains "rollback says where it went" "rolled back to the policy of generation 2, now in force as generation 4"
echo "$out" | grep -Eq '^  limits\.msgs +100 messages per 1h per address, applies to any, action tempfail +-$' &&
  pass "rollback prints its diff as a table" || fail "rollback diff: $out"
expect_in_force "first rollback: the policy of generation 2" "4 monitor 0 rollback 1"
ctl_expect 0 "second rollback" policy rollback
contains "the second rollback goes one further back" "rolled back to the policy of generation 1, now in force as generation 5"
expect_in_force "second rollback: the policy of generation 1, not a toggle" "5 enforce 0 rollback 0"
port25_delivers && fail "port 25 delivers after rolling back to enforce" || pass "enforce again after two rollbacks"
ctl_expect 4 "a third rollback: nothing left" policy rollback
contains "409 in words" "nothing to roll back"
expect_in_force "the refused rollback changed nothing" "5 enforce 0 rollback 0"
[ "$(audits policy_rollback | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" = 409 ] &&
  pass "the refused rollback is audited (409)" || fail "audit of the refused rollback: $(audits policy_rollback)"

# --- 3. kill -9 and restart ------------------------------------------------------------------------
ctl_expect 0 "policy apply monitor (API) before the crash" policy apply "$TMP/monitor.yaml"
expect_in_force "generation 6 before kill -9" "6 monitor 0 api 1"
[ "$(stat -c %a "$state/policy" "$state/policy/"* | sort -u | paste -sd' ' -)" = "640 750" ] &&
  pass "the history: directory 0750, files 0640" || fail "modes: $(stat -c '%a %n' "$state/policy" "$state/policy/"*)"
kill -9 "$daemon_pid"
wait "$daemon_pid" 2>/dev/null
start_daemon
expect_in_force "after kill -9: generation 6 from the API is back" "6 monitor 0 api 1"
grep -q "generation 6 from API caller .* restored" "$log" && pass "start says the generation was restored" ||
  fail "no 'restored' line: $(cat "$log")"
port25_delivers && pass "after the restart the restored monitor policy is enforced (port 25 delivers)" ||
  fail "after the restart port 25 is blocked: the restored generation is not what runs"
timeout 10 "$ctl" --socket "$sock" policy show --json |
  /usr/bin/python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["text"] != open(sys.argv[1]).read())' "$TMP/monitor.yaml" &&
  pass "policy show after the restart: the text of generation 6" || fail "policy show text differs from generation 6"
ctl_expect 0 "rollback after the restart" policy rollback
contains "the history survived the crash" "rolled back to the policy of generation 5, now in force as generation 7"
expect_in_force "generation numbers go on across restarts" "7 enforce 0 rollback 0"
port25_delivers && fail "port 25 delivers at generation 7" || pass "generation 7 enforces"

# --- 4. the file edited while the daemon is down ---------------------------------------------------
kill -9 "$daemon_pid"
wait "$daemon_pid" 2>/dev/null
cp "$TMP/monitor-limit.yaml" "$TMP/policy.yaml"
start_daemon
expect_in_force "the edited file applied as generation 8" "8 monitor 1 file 1"
grep -q "WARNING: the policy file $TMP/policy.yaml changed while sekishod was down: applied as generation 8; generation 7 from rollback to generation 5" "$log" &&
  pass "start says loudly the file changed while down" || fail "no warning: $(cat "$log")"
wait_audits policy_start 1 && audits policy_start | grep -q 'changed while sekishod was down' &&
  pass "the audit trail records it" || fail "no policy_start audit record"
port25_delivers && pass "the file's monitor policy is enforced" || fail "port 25 blocked at generation 8"

# --- 5. keys read only at start ----------------------------------------------------------------------
sed 's/aggregate_window: 0s/aggregate_window: 5s/; s/max_bindings: 64/max_bindings: 128/' "$TMP/monitor-limit.yaml" >"$TMP/start-only.yaml"
cp "$TMP/start-only.yaml" "$TMP/policy.yaml"
kill -HUP "$daemon_pid"
wait_audits policy_reload 2 || fail "no audit record of the second SIGHUP"
audits policy_reload | grep -q '"status":409' && pass "SIGHUP with keys read at start: refused (409)" ||
  fail "SIGHUP: $(audits policy_reload)"
grep -q "events.aggregate_window: read at start only; running 0, this policy 5s (restart sekishod" "$log" &&
  pass "SIGHUP: standard error names the key and says restart" || fail "SIGHUP stderr: $(tail -n 5 "$log")"
expect_in_force "the refused SIGHUP changed nothing" "8 monitor 1 file 1"
ctl_expect 4 "apply: events.aggregate_window and tracking.max_bindings changed" policy apply "$TMP/start-only.yaml"
contains "the CLI says in words a restart is needed" "nothing was applied; these keys change only with a restart of sekishod"
contains "each key with its values" "events.aggregate_window: running 0, this policy 5s"
# events (line 10) is checked after tracking (line 12): the errors still come in line order.
line_events=$(echo "$out" | grep -n "start-only.yaml:10: events.aggregate_window" | cut -d: -f1)
line_tracking=$(echo "$out" | grep -n "start-only.yaml:12: tracking.max_bindings" | cut -d: -f1)
[ -n "$line_events" ] && [ -n "$line_tracking" ] && [ "$line_events" -lt "$line_tracking" ] &&
  pass "errors name the file and come in line order" || fail "order/names: $out"
ctl_expect 4 "diff says the same" policy diff "$TMP/start-only.yaml"
contains "diff names the key" "tracking.max_bindings: running 64, this policy 128"
timeout 10 "$ctl" --socket "$sock" policy show | grep -q 'aggregate_window: 5s\|max_bindings: 128' &&
  fail "policy show shows a value not in force" || pass "policy show shows none of the refused values"

# --- 6. errors name the file, in line order ---------------------------------------------------------
{ e2e_lab_policy; printf 'op25b:\n  mode: sometimes\nlimits:\n  - {name: m, scope: address, measure: messages, max: 0, window: 1h}\n'; } >"$TMP/bad.yaml"
ctl_expect 4 "apply an invalid policy" policy apply "$TMP/bad.yaml"
contains "the error names the file" "$TMP/bad.yaml:10: op25b.mode"
echo "$out" | grep -q '^  policy:' && fail "an error says 'policy:'" || pass "no error says 'policy:'"
lines="$(echo "$out" | sed -n "s|^  $TMP/bad.yaml:\([0-9]*\):.*|\1|p" | paste -sd' ' -)"
[ "$lines" = "$(echo "$lines" | tr ' ' '\n' | sort -n | paste -sd' ' -)" ] && [ "$(echo "$lines" | wc -w)" -ge 2 ] &&
  pass "errors in line order ($lines)" || fail "errors not in line order: $lines"
expect_in_force "the invalid policy changed nothing" "8 monitor 1 file 1"

# --- 7. a damaged history entry -----------------------------------------------------------------------
e2e_stop_sekishod && pass "sekishod exited 0" || fail "sekishod exit status $?"
entry="$(ls "$state"/policy/generation-*.json | sort -V | tail -n 1)"
truncate -s 20 "$entry"
out="$(timeout 20 ip netns exec "$NETLAB_NS_GW" "$SEKISHOD" --access-if acc0 --core-if core0 --policy "$TMP/policy.yaml" \
  --events "$TMP/events.jsonl" --state-dir "$state" 2>&1)"
rc=$?
[ "$rc" != 0 ] && echo "$out" | grep -q "policy history entry $entry: not a JSON object (damaged)" &&
  pass "a damaged entry: sekishod does not start, naming the file (exit $rc)" || fail "damaged entry: exit $rc, $out"

e2e_end
