#!/usr/bin/env bash
# sekishoctl_completion_test.sh - the bash completion of sekishoctl
# (configs/bash-completion/sekishoctl), driven as bash drives it: COMP_WORDS,
# COMP_CWORD, COMP_LINE and COMP_POINT set for a command line, the completion
# function called, COMPREPLY read back.
#
# Usage: tests/completion/sekishoctl_completion_test.sh SOURCE_ROOT
#
# Checks, with bash-completion loaded (scripts/setup.sh installs it; exit 77 without):
#   - no command yet: every command and the global flags;
#   - a command with subcommands: exactly its subcommands;
#   - `events tail --type `: every event type the API accepts (control/observe/event_types.h);
#   - each subcommand's flags and none of another's (events tail, policy apply, account list);
#   - flag values (--by, --format), file names for policy apply and fleet rollout, a global flag
#     with its value before the command (--socket, --fleet);
#   - fleet: its subcommands and each one's flags;
# and without bash-completion (plain bash): commands complete, no "command not found".
set -u
root="$(cd "${1:?usage: $0 SOURCE_ROOT}" && pwd)"
completion="$root/configs/bash-completion/sekishoctl"
bash_completion=/usr/share/bash-completion/bash_completion
[ -r "$bash_completion" ] || { echo "bash-completion is not installed (scripts/setup.sh): skipping" >&2; exit 77; }

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

# complete LINE: COMPREPLY for LINE (completing its last word; a trailing space starts a new
# word), sorted, one per line; in a fresh bash with bash-completion (unless PLAIN=1) and the
# completion sourced. Its standard error goes to $errors.
errors="$(mktemp)"
work="$(mktemp -d)"
trap 'rm -rf "$errors" "$work"' EXIT
complete_line() {
  local load="source '$bash_completion'"
  [ "${PLAIN:-}" = 1 ] && load=":"
  (cd "$work" && bash --norc --noprofile -c "
    $load
    source '$completion'
    line=\"\$1\"
    read -r -a COMP_WORDS <<<\"\$line\"
    [[ \$line == *' ' ]] && COMP_WORDS+=('')
    COMP_CWORD=\$((\${#COMP_WORDS[@]} - 1))
    COMP_LINE=\"\$line\"
    COMP_POINT=\${#line}
    _sekishoctl sekishoctl \"\${COMP_WORDS[COMP_CWORD]}\" \"\${COMP_WORDS[COMP_CWORD - 1]}\"
    printf '%s\n' \"\${COMPREPLY[@]}\" | sort
  " complete "$1" 2>>"$errors")
}
# expect_exactly LINE WORD...: COMPREPLY is exactly these words.
expect_exactly() {
  local line="$1" got want
  shift
  got="$(complete_line "$line" | paste -sd' ')"
  want="$(printf '%s\n' "$@" | sort | paste -sd' ')"
  if [ "$got" = "$want" ]; then pass "'$line' -> $want"; else fail "'$line' -> '$got', expected '$want'"; fi
}
# expect_some LINE WORD... / expect_none LINE WORD...: each WORD is (is not) offered.
expect_some() {
  local line="$1" got w
  shift
  got="$(complete_line "$line")"
  for w in "$@"; do
    if grep -qxF -- "$w" <<<"$got"; then pass "'$line' offers $w"; else fail "'$line' does not offer $w: $(paste -sd' ' <<<"$got")"; fi
  done
}
expect_none() {
  local line="$1" got w
  shift
  got="$(complete_line "$line")"
  for w in "$@"; do
    if grep -qxF -- "$w" <<<"$got"; then fail "'$line' offers $w, a flag of another command"; else pass "'$line' does not offer $w"; fi
  done
}

expect_some "sekishoctl " status policy bindings whois account events top report --socket --json
expect_none "sekishoctl " --dry-run --type
expect_exactly "sekishoctl policy " show apply diff rollback
expect_exactly "sekishoctl account " suspend resume list
expect_exactly "sekishoctl limits " reset show
expect_exactly "sekishoctl limits reset --" --json --limit
expect_exactly "sekishoctl --socket /run/sekisho/api.sock account " suspend resume list

# Every event type the API's events endpoint accepts, from the one list the daemon has.
mapfile -t event_types < <(sed -n '/event_types = {/,/};/p' "$root/control/observe/event_types.h" | grep -o '"[a-z0-9_]*"' | tr -d '"')
[ "${#event_types[@]}" -ge 7 ] || fail "could not read the event types from control/observe/event_types.h"
expect_exactly "sekishoctl events tail --type " "${event_types[@]}"
expect_exactly "sekishoctl events tail -n 5 --type limit" limit_exceeded

expect_exactly "sekishoctl events tail -" -f -n --type --subscriber --account --json
expect_exactly "sekishoctl policy apply --" --dry-run --json
expect_exactly "sekishoctl account list --" --suspended --json
expect_exactly "sekishoctl report --" --since --until --format --json
expect_none "sekishoctl policy apply --" --type --suspended --by
expect_none "sekishoctl account list --" --dry-run --type
expect_exactly "sekishoctl top --by l" limit_exceeded
expect_exactly "sekishoctl report --format " csv json
expect_some "sekishoctl " campaigns
expect_exactly "sekishoctl campaigns -" --min-subscribers -n --json
expect_exactly "sekishoctl campaigns --min-subscribers 3 --" --min-subscribers --json
expect_none "sekishoctl campaigns --" --since --type --by

expect_exactly "sekishoctl --fleet desk.conninfo fleet " policy rollout schema status
expect_exactly "sekishoctl --fleet admin.conninfo fleet schema --" --apply --json
expect_exactly "sekishoctl --fleet desk.conninfo whois 192.0.2.1 --bindings-source " gateways radacct
expect_exactly "sekishoctl fleet status --" --stale --json
expect_some "sekishoctl fleet rollout p.yaml --" --canary --then --watch --max-increase --max-blocked-increase
expect_none "sekishoctl fleet status --" --canary --dry-run

touch "$work/new-policy.yaml" "$work/notes.txt"
expect_exactly "sekishoctl policy apply " new-policy.yaml
expect_exactly "sekishoctl policy diff new" new-policy.yaml
expect_exactly "sekishoctl fleet rollout new" new-policy.yaml

if [ -s "$errors" ]; then fail "the completion wrote to standard error: $(head -n 3 "$errors")"; else pass "nothing on standard error"; fi

# Without bash-completion: still completes, and no "_init_completion: command not found".
: >"$errors"
PLAIN=1 expect_exactly "sekishoctl pol" policy
PLAIN=1 expect_exactly "sekishoctl events tail --type op25b_b" op25b_block
if [ -s "$errors" ]; then fail "without bash-completion: $(head -n 3 "$errors")"; else pass "without bash-completion: nothing on standard error"; fi

echo "sekishoctl_completion_test: $passed passed, $failed failed"
[ "$failed" = 0 ]
