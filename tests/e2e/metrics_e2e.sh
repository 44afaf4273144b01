#!/usr/bin/env bash
# metrics_e2e.sh - Prometheus monitoring end to end: a live sekishod serves /metrics, promtool
# checks the exposition, the real Prometheus server (Debian package) scrapes it, and a query
# returns the counters this test's traffic produced (one blocked SMTP connection, pings).
# Also checks the shipped alert rules with promtool; sekisho_build_info names the version
# `sekishod --version` prints; a SIGHUP with an invalid policy file counts in
# sekisho_policy_reload_failures_total and fires the SekishoPolicyReloadFailed alert.
# The daemon runs in fleet mode (a real PostgreSQL and Redis, tests/fleet/fleet_stores.sh), so the
# exposition holds the fleet families too and the SekishoFleet* rules are checked against them.
#
# Usage (root):  tests/e2e/metrics_e2e.sh PATH/TO/sekishod SOURCE_ROOT
# Exit status: 0 all checks passed, 1 a check failed, 77 the lab cannot be built here (skip).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/netlab.sh
source "$here/netlab.sh"
# shellcheck source=SCRIPTDIR/e2e_common.sh
source "$here/e2e_common.sh"

root="${2:-$here/../..}"
# shellcheck source=SCRIPTDIR/../fleet/fleet_stores.sh
source "$root/tests/fleet/fleet_stores.sh"
e2e_begin metrics_e2e "${1:-${SEKISHOD:-}}" prometheus promtool curl swaks /usr/bin/python3
fleet_stores_available || { echo "metrics_e2e: PostgreSQL 15 or redis-server not installed (skipping)" >&2; exit 77; }
# shellcheck disable=SC2317  # called from the EXIT trap
_metrics_cleanup() {
  local rc=$?
  fleet_stores_cleanup
  (exit "$rc")
  _e2e_cleanup
}
trap _metrics_cleanup EXIT
fleet_stores_begin "$TMP/fleet"
fleet_start_postgres || abort "PostgreSQL did not start"
fleet_start_redis || abort "redis-server did not start"
fleet_write_config "$TMP/fleet.yaml" edge-metrics-1

# The shipped alert rules are valid.
if promtool check rules "$root/configs/prometheus/sekisho-alerts.yml" >"$TMP/rules.log" 2>&1; then
  pass "promtool check rules: $(grep -o 'SUCCESS.*' "$TMP/rules.log" | head -n 1)"
else
  fail "promtool check rules"; sed 's/^/    /' "$TMP/rules.log"
fi

# The example OP25B policy plus a RADIUS listener and a limit, so every metric family is exposed.
cp "$root/configs/op25b-enforce.yaml" "$TMP/policy.yaml"
printf 'clients:\n  - address: 127.0.0.1\n    secret: "metrics-e2e-secret"\n' >"$TMP/clients.yaml"
cat >>"$TMP/policy.yaml" <<EOF
radius:
  listen: 127.0.0.1:1813
  clients_file: $TMP/clients.yaml
limits:
  - {name: msgs, scope: account, measure: messages, max: 100, window: 1h}
EOF

netlab_up --gateway || abort "lab setup failed"
netlab_start_sinks || abort "sinks"
metrics_port=9108
e2e_start_sekishod "$NETLAB_LOGDIR/sekishod.log" --policy "$TMP/policy.yaml" \
  --events "$TMP/events.jsonl" --metrics "127.0.0.1:$metrics_port" --fleet "$TMP/fleet.yaml"

# Traffic: one SMTP connection OP25B blocks, and pings.
timeout 20 ip netns exec "$NETLAB_NS_SUB" swaks --server "$NETLAB_MX_V4" --port 25 --timeout 5 \
  --from a@example.com --to b@example.net >"$TMP/swaks.log" 2>&1
netlab_exec_sub ping -c 3 -i 0.2 "$NETLAB_MX_V4" >/dev/null 2>&1

netlab_exec_gw curl -sf "http://127.0.0.1:$metrics_port/metrics" >"$TMP/metrics.txt" || abort "cannot fetch /metrics"
if [ "$(grep -c '^sekisho_' "$TMP/metrics.txt")" -gt 20 ] && promtool check metrics <"$TMP/metrics.txt" >"$TMP/promtool.log" 2>&1; then
  pass "promtool check metrics: $(grep -c '^sekisho_' "$TMP/metrics.txt") sekisho_ samples, no problem"
else
  fail "promtool check metrics"; head -n 20 "$TMP/promtool.log" | sed 's/^/    /'
fi

# Every metric the shipped dashboard and alert rules use is one sekishod exports.
missing="$(/usr/bin/python3 - "$TMP/metrics.txt" "$root/configs/grafana/sekisho-dashboard.json" \
  "$root/configs/prometheus/sekisho-alerts.yml" <<'EOF'
import re, sys
exported = set(re.findall(r"^(sekisho_[a-z0-9_]+)", open(sys.argv[1]).read(), re.M))
used = set()
for path in sys.argv[2:]:
    used |= set(re.findall(r"sekisho_[a-z0-9_]+", open(path).read()))
print(" ".join(sorted(n for n in used if n not in exported and n.rsplit("_", 1)[0] not in exported
                      and n != "sekisho_gateway")))
EOF
)"
if [ -z "$missing" ]; then pass "dashboard and alert rules use only exported metrics"; else
  fail "dashboard/alerts use metrics sekishod does not export: $missing"; fi

# The real Prometheus server, in the gateway's namespace, scraping every second.
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $root/configs/prometheus/sekisho-alerts.yml
scrape_configs:
  - job_name: sekisho
    static_configs:
      - targets: ['127.0.0.1:$metrics_port']
EOF
netlab_spawn gw "$NETLAB_LOGDIR/prometheus.log" prometheus --config.file="$TMP/prometheus.yml" \
  --storage.tsdb.path="$TMP/tsdb" --web.listen-address=127.0.0.1:9090
query() { # PROMQL -> the first sample's value, or nothing
  netlab_exec_gw curl -sf --get "http://127.0.0.1:9090/api/v1/query" --data-urlencode "query=$1" |
    /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")'
}
blocked=""
for ((i = 0; i < 60; i++)); do
  blocked="$(query 'sum(sekisho_op25b_blocks_total{reason="op25b_port",mode="enforce"})' 2>/dev/null)"
  [ -n "$blocked" ] && break
  sleep 0.5
done
if [ "$blocked" = 1 ]; then pass "Prometheus query: sekisho_op25b_blocks_total = 1 (the blocked swaks)"; else
  fail "Prometheus query for blocks returned '$blocked'"; fi
fwd="$(query 'sum(sekisho_packets_total{verdict="forwarded"})')"
if [ -n "$fwd" ] && [ "${fwd%.*}" -ge 12 ]; then pass "Prometheus query: $fwd frames forwarded (pings and ARP)"; else
  fail "forwarded frames: '$fwd'"; fi
gen="$(query 'sekisho_policy_generation')"
if [ "$gen" = 1 ]; then pass "sekisho_policy_generation = 1"; else fail "policy generation '$gen'"; fi
up="$(query 'up{job="sekisho"}')"
if [ "$up" = 1 ]; then pass "target up"; else fail "target up = '$up'"; fi

# The build: the version and build --version prints, the backend this run uses.
version_line="$("$SEKISHOD" --version 2>&1)"   # "sekishod 0.1.0 (build 833e844)"
version="$(echo "$version_line" | awk '{print $2}')"
build="$(echo "$version_line" | sed -n 's/.*(build \(.*\))$/\1/p')"
info="$(query "sekisho_build_info{version=\"$version\",build=\"$build\",backend=\"dpdk\"}")"
if [ -n "$version" ] && [ -n "$build" ] && [ "$info" = 1 ]; then
  pass "sekisho_build_info{version=\"$version\",build=\"$build\",backend=\"dpdk\"} = 1"
else fail "build info for '$version_line': '$info'"; grep '^sekisho_build_info' "$TMP/metrics.txt" | sed 's/^/    /'; fi

# A reload that fails: counted, alerted; the running generation stays.
failures="$(query 'sekisho_policy_reload_failures_total')"
if [ "$failures" = 0 ]; then pass "sekisho_policy_reload_failures_total = 0 before any reload"; else
  fail "reload failures before any reload: '$failures'"; fi
cp "$TMP/policy.yaml" "$TMP/policy.good"
echo "op25b: {mode: sideways}" >>"$TMP/policy.yaml"
kill -HUP "$daemon_pid"
failures=""
for ((i = 0; i < 60; i++)); do
  failures="$(query 'sekisho_policy_reload_failures_total')"
  [ "$failures" = 1 ] && break
  sleep 0.5
done
if [ "$failures" = 1 ]; then pass "sekisho_policy_reload_failures_total = 1 after an invalid SIGHUP reload"; else
  fail "reload failures after an invalid reload: '$failures'"; fi
firing=""
for ((i = 0; i < 60; i++)); do
  firing="$(query 'ALERTS{alertname="SekishoPolicyReloadFailed",alertstate="firing"}')"
  [ "$firing" = 1 ] && break
  sleep 0.5
done
if [ "$firing" = 1 ]; then pass "alert SekishoPolicyReloadFailed fires"; else
  fail "SekishoPolicyReloadFailed: '$firing'"
  netlab_exec_gw curl -s "http://127.0.0.1:9090/api/v1/rules?type=alert" | head -c 3000; echo; fi
gen="$(query 'sekisho_policy_generation')"
if [ "$gen" = 1 ]; then pass "generation 1 keeps running after the failed reload"; else fail "generation after a failed reload: '$gen'"; fi
cp "$TMP/policy.good" "$TMP/policy.yaml"

if e2e_stop_sekishod; then pass "sekishod exited 0"; else fail "sekishod exit status $?"; fi

e2e_end
