// Prometheus metrics, pulled by the server from GET /metrics, rendered with
// prometheus-cpp's TextSerializer and served by an http_listener
// (http_listener.h): one epoll thread, at most 32 connections and 8 from one
// address, 10 s idle timeout, no request body. A scraper that stalls (never
// reads, sends half a request) holds only its own connection; the others are
// answered meanwhile. The exposition also carries the families prometheus-cpp's
// exposer added (exposer_transferred_bytes_total, exposer_scrapes_total,
// exposer_request_latencies).
//
// Data-plane counters are read at scrape time straight from the workers'
// counter blocks (lock-free, relaxed loads). Control-plane values (policy
// generation, limit names, table sizes, RADIUS counters, apply durations) are
// copied by the control thread into a snapshot under a mutex: the scraper
// thread never touches control-plane objects. Names follow Prometheus
// conventions (sekisho_ prefix, _total for counters, base units); labels are
// bounded: port, verdict, reason, limit (bounded by the policy), worker,
// table, result. No per-address or per-account label. docs/metrics.md lists
// them all.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "control/observe/event_log_counters.h"

namespace prometheus {
class Counter;
class Registry;
class Summary;
}

namespace sekisho {

class http_listener;
struct worker_counters;

// The counter blocks a scrape sums: the workers' (DPDK) or one per CPU (XDP),
// and last the control thread's.
using counter_source = std::function<std::vector<const worker_counters*>()>;

// What the control thread knows and the scraper may show.
struct control_snapshot {
    // sekisho_build_info's labels: version, build (control/build_version.h), backend ("dpdk", "xdp").
    const char* version = "";
    const char* build = "";
    const char* backend = "";
    uint64_t generation = 0;
    uint64_t policy_reload_failures = 0;    // SIGHUP reloads refused (control_api::reload_failures)
    std::vector<std::string> limit_names;   // index = position in the policy
    std::vector<std::string> rule_ids;      // content rules, index = position in the policy
    uint64_t bindings = 0, binding_capacity = 0, accounts = 0, account_capacity = 0;
    uint64_t flows = 0, flow_capacity = 0;
    uint64_t mbufs_in_use = 0, mbufs_total = 0;
    event_log_counters event_log;           // the event log's own (event_log_counter_names)
    bool radius = false;
    // RADIUS datagrams by result (listener_counters), in a fixed order.
    std::vector<std::pair<std::string, uint64_t>> radius_results;
    uint64_t bindings_restored = 0, binding_apply_errors = 0;
    double start_time_seconds = 0;
    // The ports' own drop counters (rte_eth_stats), by side (access, core):
    // frames the NIC or its driver lost before a worker saw them.
    bool port_stats = false;
    uint64_t rx_missed[2] = {}, rx_nombuf[2] = {}, rx_errors[2] = {}, tx_errors[2] = {};
    // Fleet mode (control/fleet/fleet_link.h), absent from the exposition
    // without it: each concern's link to its store (labels store, concern).
    struct fleet_link_sample {
        std::string store, concern;
        bool up = false;
        int64_t last_sync = 0;   // Unix seconds; 0: never
    };
    std::vector<fleet_link_sample> fleet_links;
    // The event shipper (control/fleet/event_shipper.h).
    bool fleet_events = false;
    uint64_t fleet_events_shipped = 0, fleet_events_unparsable = 0, fleet_events_refused = 0, fleet_events_gaps = 0;
    uint64_t fleet_events_backlog_bytes = 0;
    double fleet_events_lag_seconds = 0;
};

// Policy applies by duration (sekisho_policy_apply_duration_seconds).
struct apply_durations {
    static constexpr std::array<double, 10> bucket_bounds = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};
    uint64_t count = 0;
    double sum_seconds = 0;
    std::array<uint64_t, bucket_bounds.size()> in_bucket{};   // applies within each bound (cumulative)

    void observe(double seconds);
};

// The exposition text of the gateway's own families (what /metrics serves after
// the exposer_* families): the counters of `blocks` (the workers' or the CPUs',
// and last the control thread's; relaxed loads), then `snapshot` and `applies`.
// Any thread. The names come from counter_names.h.
std::string render_metrics(const std::vector<const worker_counters*>& blocks, const control_snapshot& snapshot,
                           const apply_durations& applies);

class metrics_exporter {
public:
    // Listens on `address` ("127.0.0.1:9108"); throws std::runtime_error.
    // `counters` is called on the scraper thread; the blocks it returns must
    // stay valid and be written with relaxed stores only.
    metrics_exporter(const std::string& address, counter_source counters);
    ~metrics_exporter();

    // Control thread.
    void update(control_snapshot snapshot);
    void observe_apply(double seconds);

    // The exposition text of the gateway's families (what /metrics serves after
    // the exposer_* families); for tests.
    std::string render() const;

private:
    class collector;
    // Listener thread: the exposition /metrics serves, counted in the exposer_* families.
    std::string serve_scrape();

    std::shared_ptr<collector> collector_;
    std::shared_ptr<prometheus::Registry> exposer_registry_;
    prometheus::Counter* transferred_bytes_ = nullptr;
    prometheus::Counter* scrapes_ = nullptr;
    prometheus::Summary* latencies_ = nullptr;
    std::unique_ptr<http_listener> listener_;   // last: stopped first
};

}  // namespace sekisho
