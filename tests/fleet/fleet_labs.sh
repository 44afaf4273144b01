#!/usr/bin/env bash
# fleet_labs.sh - several gateway labs in one e2e script, each a netlab (tests/e2e/netlab.sh)
# with a live sekishod of its own, sharing the fleet's stores (fleet_stores.sh). netlab.sh keeps
# one lab in its globals; lab_use swaps them. Sources netlab.sh, e2e_common.sh and fleet_stores.sh.
#
#   fleet_e2e_begin NAME SEKISHOD SEKISHOCTL TOOL...
#                         the scripts' common start: skips (77) without the stores' servers or a
#                         TOOL, e2e_begin (TMP, E2E_NAME), ctl (sekishoctl's absolute path), and
#                         fleet_labs_cleanup as the EXIT trap
#   lab_use NAME          make lab NAME (created on first use: NETLAB_ID "$$NAME", logs in
#                         $TMP/logs-NAME) the current one: NETLAB_*, daemon_pid, sock ($TMP/api-NAME.sock)
#   lab_save              keep the current lab's globals (lab_use does it before switching)
#   fleet_labs_cleanup    the EXIT trap: every lab down, the stores stopped, $TMP removed
#                         (kept with KEEP_TMP=1), the script's exit status kept
_fleet_labs_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/../e2e/netlab.sh
source "$_fleet_labs_here/../e2e/netlab.sh"
# shellcheck source=SCRIPTDIR/../e2e/e2e_common.sh
source "$_fleet_labs_here/../e2e/e2e_common.sh"
# shellcheck source=SCRIPTDIR/fleet_stores.sh
source "$_fleet_labs_here/fleet_stores.sh"

fleet_e2e_begin() { # NAME SEKISHOD SEKISHOCTL TOOL...
  local name="$1" daemon="$2" cli="$3"
  shift 3
  fleet_stores_available || { echo "$name: PostgreSQL 15 or redis-server not installed (skipping)" >&2; exit 77; }
  e2e_begin "$name" "$daemon" "$@"
  [ -x "$cli" ] || { echo "$name: sekishoctl not executable: '$cli'" >&2; exit 1; }
  ctl="$(realpath "$cli")"
  trap fleet_labs_cleanup EXIT
}

declare -A lab_ns_sub lab_ns_gw lab_ns_up lab_logdir lab_pids lab_daemon
lab_current=""
lab_save() {
  [ -n "$lab_current" ] || return 0
  lab_ns_sub[$lab_current]="$NETLAB_NS_SUB"
  lab_ns_gw[$lab_current]="$NETLAB_NS_GW"
  lab_ns_up[$lab_current]="$NETLAB_NS_UP"
  lab_logdir[$lab_current]="$NETLAB_LOGDIR"
  lab_pids[$lab_current]="${NETLAB_PIDS[*]}"
  lab_daemon[$lab_current]="$daemon_pid"
}
lab_use() { # NAME
  lab_save
  lab_current="$1"
  if [ -z "${lab_ns_gw[$1]:-}" ]; then
    NETLAB_ID="$$$1"
    NETLAB_NS_SUB="sekisho-sub-$NETLAB_ID" NETLAB_NS_GW="sekisho-gw-$NETLAB_ID" NETLAB_NS_UP="sekisho-up-$NETLAB_ID"
    NETLAB_LOGDIR="$TMP/logs-$1"
    NETLAB_PIDS=()
    daemon_pid=""
    lab_save
  fi
  NETLAB_NS_SUB="${lab_ns_sub[$1]}" NETLAB_NS_GW="${lab_ns_gw[$1]}" NETLAB_NS_UP="${lab_ns_up[$1]}"
  NETLAB_LOGDIR="${lab_logdir[$1]}"
  read -r -a NETLAB_PIDS <<<"${lab_pids[$1]}"
  daemon_pid="${lab_daemon[$1]}"
  # shellcheck disable=SC2034  # the scripts' sekishoctl calls use it
  sock="$TMP/api-$1.sock"
}
run=0
# shellcheck disable=SC2154  # metrics_port: each script picks its own
lab_start_gateway() { # NAME
  run=$((run + 1))
  rm -f "$sock"
  e2e_start_sekishod "$NETLAB_LOGDIR/sekishod-$run.log" --policy "$TMP/policy-$1.yaml" --events "$TMP/events-$1.jsonl" \
    --api-socket "$sock" --state-dir "$TMP/state-$1" --fleet "$TMP/fleet-$1.yaml" --metrics "127.0.0.1:$metrics_port"
  local i
  for ((i = 0; i < 50; i++)); do [ -S "$sock" ] && break; sleep 0.1; done
}
# shellcheck disable=SC2154  # metrics_port: each script picks its own
lab_metric() { # NAME{LABELS}
  timeout 5 ip netns exec "$NETLAB_NS_GW" curl -sf "http://127.0.0.1:$metrics_port/metrics" |
    awk -v m="$1" '$1 == m { print $2 }'
}
# shellcheck disable=SC2317  # called from the EXIT trap
fleet_labs_cleanup() {
  local rc=$?
  trap '' INT TERM
  local l
  lab_save
  for l in "${!lab_ns_gw[@]}"; do
    lab_use "$l"
    netlab_down
  done
  fleet_stores_cleanup
  if [ -n "${KEEP_TMP:-}" ]; then echo "$E2E_NAME: kept $TMP" >&2; elif [ -n "$TMP" ]; then rm -rf "$TMP"; fi
  exit "$rc"
}
