#include "control/observe/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/summary.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include "control/api/http_listener.h"
#include "control/observe/counter_names.h"
#include "control/observe/counters_report.h"

namespace sekisho {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using blocks = std::vector<const worker_counters*>;
using labels = std::vector<ClientMetric::Label>;

MetricFamily family(const std::string& name, const std::string& help, MetricType type) {
    MetricFamily f;
    f.name = name;
    f.help = help;
    f.type = type;
    return f;
}

MetricFamily family(const metric_family& f) { return family(f.name, f.help, MetricType::Counter); }

void add(MetricFamily& f, labels l, double value) {
    ClientMetric m;
    m.label = std::move(l);
    if (f.type == MetricType::Counter)
        m.counter.value = value;
    else
        m.gauge.value = value;
    f.metric.push_back(std::move(m));
}

// `outer` (port, reason, worker), then the family's own label when it has one.
labels with_label(labels outer, const metric_family& f, const char* value) {
    if (f.label != nullptr) outer.push_back({f.label, value});
    return outer;
}

// The families a table exports, in the order they first appear in it.
template <typename Entries>
std::vector<const metric_family*> families_of(const Entries& names) {
    std::vector<const metric_family*> out;
    for (const auto& c : names)
        if (c.family != nullptr && std::find(out.begin(), out.end(), c.family) == out.end()) out.push_back(c.family);
    return out;
}

double as_value(uint64_t n) { return static_cast<double>(n); }

// A sample's value: the sum over the blocks of the counter `counter_of(block)` picks.
template <typename CounterOf>
double total(const blocks& w, CounterOf counter_of) {
    return as_value(sum_over(w, counter_of));
}

// sekisho_packets_total and the other families by port.
void collect_port_counters(std::vector<MetricFamily>& out, const blocks& w) {
    for (const metric_family* f : families_of(port_counter_names)) {
        MetricFamily m = family(*f);
        for (unsigned side = 0; side < ingress_count; ++side) {
            auto sum = [&](counter port_counters::*c) {
                return total(w, [&](const worker_counters& b) -> const counter& { return b.port[side].*c; });
            };
            const labels port = {{port_label, to_string(static_cast<ingress>(side))}};
            for (const port_counter_name& c : port_counter_names) {
                if (c.family != f) continue;
                add(m, with_label(port, *f, c.label_value), sum(c.member) - (c.minus ? sum(c.minus) : 0));
            }
        }
        out.push_back(std::move(m));
    }
}

// A table of counters by reason: every reason, counted or not.
template <typename Reason, size_t N, size_t Entries>
void collect_by_reason(std::vector<MetricFamily>& out, const blocks& w,
                       const reason_counter_name<Reason, N> (&names)[Entries]) {
    for (const metric_family* f : families_of(names)) {
        MetricFamily m = family(*f);
        for (unsigned r = 0; r < N; ++r) {
            const labels reason = {{reason_label, to_string(static_cast<Reason>(r))}};
            for (const auto& c : names) {
                if (c.family != f || r < c.first_reason) continue;
                add(m, with_label(reason, *f, c.label_value),
                    total(w, [&](const worker_counters& b) -> const counter& { return (b.*c.member)[r]; }));
            }
        }
        out.push_back(std::move(m));
    }
}

// The families of a table of one block; `block_of` picks that block in a worker's counters.
template <typename Block, size_t N, typename BlockOf>
void collect_group(std::vector<MetricFamily>& out, const blocks& w, const counter_name<Block> (&names)[N],
                   BlockOf block_of) {
    for (const metric_family* f : families_of(names)) {
        MetricFamily m = family(*f);
        for (const counter_name<Block>& c : names)
            if (c.family == f)
                add(m, with_label({}, *f, c.label_value),
                    total(w, [&](const worker_counters& b) -> const counter& { return block_of(b).*c.member; }));
        out.push_back(std::move(m));
    }
}

// Per worker, not summed; the last block is the control thread's and is left out.
void collect_worker_polls(std::vector<MetricFamily>& out, const blocks& w) {
    for (const metric_family* f : families_of(poll_counter_names)) {
        MetricFamily m = family(*f);
        for (size_t i = 0; i + 1 < w.size(); ++i)
            for (const counter_name<worker_counters>& c : poll_counter_names)
                if (c.family == f)
                    add(m, with_label({{worker_label, std::to_string(i)}}, *f, c.label_value),
                        as_value((w[i]->*c.member).load()));
        out.push_back(std::move(m));
    }
}

// Counters indexed by the policy (limits, content rules), named by the snapshot's names.
template <typename CounterAt>
void collect_by_policy_name(std::vector<MetricFamily>& out, const blocks& w, const metric_family& f,
                            const std::vector<std::string>& names, size_t capacity, CounterAt counter_at) {
    MetricFamily m = family(f);
    for (size_t i = 0; i < names.size() && i < capacity; ++i)
        add(m, {{f.label, names[i]}},
            total(w, [&](const worker_counters& b) -> const counter& { return counter_at(b, i); }));
    out.push_back(std::move(m));
}

const worker_counters& whole(const worker_counters& b) { return b; }
const mail_counters& mail_of(const worker_counters& b) { return b.mail; }
const inspection_counters& inspection_of(const worker_counters& b) { return b.inspection; }

// sekisho_events_total: the data plane's outcomes, then the event log's.
void collect_events(std::vector<MetricFamily>& out, const blocks& w, const control_snapshot& s) {
    collect_group(out, w, event_counter_names, whole);
    MetricFamily& events = out.back();
    for (const auto& n : event_log_counter_names)
        if (n.family == &events_family) add(events, {{events_family.label, n.label_value}}, as_value(s.event_log.*n.member));
}

// The event log's counters with a family of their own, one sample each.
void collect_event_log(std::vector<MetricFamily>& out, const control_snapshot& s) {
    for (const auto& n : event_log_counter_names) {
        if (n.family == nullptr || n.family == &events_family) continue;
        MetricFamily m = family(*n.family);
        add(m, {}, as_value(s.event_log.*n.member));
        out.push_back(std::move(m));
    }
}

// The ports' own drop counters (rte_eth_stats), when the backend has them.
void collect_port_stats(std::vector<MetricFamily>& out, const control_snapshot& s) {
    if (!s.port_stats) return;
    auto rx_drops = family("sekisho_port_rx_dropped_total",
                           "Frames the port lost before a worker saw them: missed (RX queue full, or with "
                           "net_af_packet the kernel's RX ring full: the workers did not keep up), nombuf (no "
                           "mbuf), errors (bad frames).",
                           MetricType::Counter);
    auto tx_errors = family("sekisho_port_tx_errors_total", "Frames the port failed to send.", MetricType::Counter);
    for (unsigned side = 0; side < 2; ++side) {
        const std::string port = to_string(static_cast<ingress>(side));
        add(rx_drops, {{port_label, port}, {reason_label, "missed"}}, as_value(s.rx_missed[side]));
        add(rx_drops, {{port_label, port}, {reason_label, "nombuf"}}, as_value(s.rx_nombuf[side]));
        add(rx_drops, {{port_label, port}, {reason_label, "errors"}}, as_value(s.rx_errors[side]));
        add(tx_errors, {{port_label, port}}, as_value(s.tx_errors[side]));
    }
    out.push_back(std::move(rx_drops));
    out.push_back(std::move(tx_errors));
}

// The policy generation and the bounded tables' occupancy.
void collect_policy_and_tables(std::vector<MetricFamily>& out, const control_snapshot& s) {
    auto generation =
        family("sekisho_policy_generation", "Generation of the policy the workers run.", MetricType::Gauge);
    add(generation, {}, as_value(s.generation));
    out.push_back(std::move(generation));

    auto entries = family("sekisho_table_entries", "Entries in use, by table.", MetricType::Gauge);
    auto capacity = family("sekisho_table_capacity", "Capacity, by table.", MetricType::Gauge);
    const std::tuple<const char*, uint64_t, uint64_t> tables[] = {
        {"bindings", s.bindings, s.binding_capacity},
        {"accounts", s.accounts, s.account_capacity},
        {"flows", s.flows, s.flow_capacity},
        {"mbufs", s.mbufs_in_use, s.mbufs_total},
    };
    for (const auto& [table, in_use, total] : tables) {
        add(entries, {{"table", table}}, as_value(in_use));
        add(capacity, {{"table", table}}, as_value(total));
    }
    out.push_back(std::move(entries));
    out.push_back(std::move(capacity));
}

// RADIUS accounting and the bindings it feeds.
void collect_radius_and_bindings(std::vector<MetricFamily>& out, const control_snapshot& s) {
    if (s.radius) {
        auto radius =
            family("sekisho_radius_packets_total", "RADIUS accounting datagrams, by result.", MetricType::Counter);
        for (const auto& [result, n] : s.radius_results) add(radius, {{"result", result}}, as_value(n));
        out.push_back(std::move(radius));
    }
    auto restored = family("sekisho_bindings_restored_total", "Bindings restored from the history at start.",
                           MetricType::Counter);
    add(restored, {}, as_value(s.bindings_restored));
    out.push_back(std::move(restored));
    auto apply_errors = family("sekisho_binding_apply_errors_total",
                               "Bindings that could not be applied (table full, store error).", MetricType::Counter);
    add(apply_errors, {}, as_value(s.binding_apply_errors));
    out.push_back(std::move(apply_errors));
}

void collect_start_and_applies(std::vector<MetricFamily>& out, const control_snapshot& s, const apply_durations& a) {
    auto build = family(build_info_family.name, build_info_family.help, MetricType::Gauge);
    add(build, {{"version", s.version}, {"build", s.build}, {"backend", s.backend}}, 1);
    out.push_back(std::move(build));

    auto start = family("sekisho_start_time_seconds", "Unix time the daemon started.", MetricType::Gauge);
    add(start, {}, s.start_time_seconds);
    out.push_back(std::move(start));

    auto reload_failures = family(policy_reload_failures_family);
    add(reload_failures, {}, as_value(s.policy_reload_failures));
    out.push_back(std::move(reload_failures));

    auto apply = family("sekisho_policy_apply_duration_seconds", "Time to validate, compile and publish a policy.",
                        MetricType::Histogram);
    ClientMetric h;
    h.histogram.sample_count = a.count;
    h.histogram.sample_sum = a.sum_seconds;
    for (size_t i = 0; i < a.bucket_bounds.size(); ++i)
        h.histogram.bucket.push_back({a.in_bucket[i], a.bucket_bounds[i]});
    h.histogram.bucket.push_back({a.count, std::numeric_limits<double>::infinity()});
    apply.metric.push_back(std::move(h));
    out.push_back(std::move(apply));
}

// Fleet mode's links and the event shipper; nothing without fleet mode.
void collect_fleet(std::vector<MetricFamily>& out, const control_snapshot& s) {
    if (!s.fleet_links.empty()) {
        auto up = family("sekisho_fleet_link_up", "1 while a fleet concern's link to its store is up, by store and concern.",
                         MetricType::Gauge);
        auto sync = family("sekisho_fleet_last_sync_seconds",
                           "Unix time of a fleet concern's last successful exchange with its store (0: never).",
                           MetricType::Gauge);
        for (const auto& l : s.fleet_links) {
            add(up, {{"store", l.store}, {"concern", l.concern}}, l.up ? 1 : 0);
            add(sync, {{"store", l.store}, {"concern", l.concern}}, static_cast<double>(l.last_sync));
        }
        out.push_back(std::move(up));
        out.push_back(std::move(sync));
    }
    if (!s.fleet_events) return;
    auto shipped = family("sekisho_fleet_events_shipped_total",
                          "Event log lines shipped into the fleet's PostgreSQL (one row each).", MetricType::Counter);
    add(shipped, {}, as_value(s.fleet_events_shipped));
    out.push_back(std::move(shipped));
    auto bad = family("sekisho_fleet_events_bad_lines_total",
                      "Event log lines shipped as a placeholder row, by reason: unparsable (not a JSON object), "
                      "refused (PostgreSQL refused the line).",
                      MetricType::Counter);
    add(bad, {{reason_label, "unparsable"}}, as_value(s.fleet_events_unparsable));
    add(bad, {{reason_label, "refused"}}, as_value(s.fleet_events_refused));
    out.push_back(std::move(bad));
    auto gaps = family("sekisho_fleet_events_gaps_total",
                       "Times the event log rotated past the shipper's cursor: lines lost before they were shipped.",
                       MetricType::Counter);
    add(gaps, {}, as_value(s.fleet_events_gaps));
    out.push_back(std::move(gaps));
    auto backlog = family("sekisho_fleet_events_backlog_bytes",
                          "Bytes of the event log not yet shipped into PostgreSQL.", MetricType::Gauge);
    add(backlog, {}, as_value(s.fleet_events_backlog_bytes));
    out.push_back(std::move(backlog));
    auto lag = family("sekisho_fleet_events_lag_seconds",
                      "Now minus the time of the oldest event not yet shipped; 0 when none waits.", MetricType::Gauge);
    add(lag, {}, s.fleet_events_lag_seconds);
    out.push_back(std::move(lag));
}

// Every family of the exposition, in its order.
std::vector<MetricFamily> collect_families(const blocks& w, const control_snapshot& s, const apply_durations& a) {
    std::vector<MetricFamily> out;
    collect_port_counters(out, w);
    collect_by_reason(out, w, block_reason_counter_names);
    collect_by_reason(out, w, malformed_reason_counter_names);
    collect_group(out, w, smtp_counter_names, mail_of);
    collect_group(out, w, inspection_counter_names, inspection_of);
    collect_worker_polls(out, w);
    collect_event_log(out, s);
    collect_events(out, w, s);
    collect_port_stats(out, s);
    collect_by_policy_name(out, w, limit_hits_family, s.limit_names, max_limits,
                           [](const worker_counters& b, size_t i) -> const counter& { return b.mail.limit_hits[i]; });
    constexpr size_t rule_slots = std::tuple_size_v<decltype(worker_counters::rule_matches)::element_type>;
    collect_by_policy_name(out, w, rule_matches_family, s.rule_ids, rule_slots,
                           [](const worker_counters& b, size_t i) -> const counter& { return (*b.rule_matches)[i]; });
    collect_policy_and_tables(out, s);
    collect_radius_and_bindings(out, s);
    collect_start_and_applies(out, s, a);
    collect_fleet(out, s);
    return out;
}

}  // namespace

void apply_durations::observe(double seconds) {
    ++count;
    sum_seconds += seconds;
    for (size_t i = 0; i < bucket_bounds.size(); ++i)
        if (seconds <= bucket_bounds[i]) ++in_bucket[i];
}

std::string render_metrics(const blocks& w, const control_snapshot& snapshot, const apply_durations& applies) {
    std::ostringstream o;
    prometheus::TextSerializer().Serialize(o, collect_families(w, snapshot, applies));
    return o.str();
}

// The scraper thread's view: counter blocks read at scrape time, the rest as the
// control thread last published it (the lock is held only to copy a pointer and
// the apply counts).
class metrics_exporter::collector : public prometheus::Collectable {
public:
    explicit collector(counter_source counters)
        : counters_(std::move(counters)), snapshot_(std::make_shared<const control_snapshot>()) {}

    void update(control_snapshot s) {
        auto published = std::make_shared<const control_snapshot>(std::move(s));
        std::lock_guard lock(mutex_);
        snapshot_ = std::move(published);
    }
    void observe_apply(double seconds) {
        std::lock_guard lock(mutex_);
        applies_.observe(seconds);
    }

    std::vector<MetricFamily> Collect() const override {
        const blocks w = counters_();
        std::shared_ptr<const control_snapshot> snapshot;
        apply_durations applies;
        {
            std::lock_guard lock(mutex_);
            snapshot = snapshot_;
            applies = applies_;
        }
        return collect_families(w, *snapshot, applies);
    }

private:
    counter_source counters_;
    mutable std::mutex mutex_;
    std::shared_ptr<const control_snapshot> snapshot_;
    apply_durations applies_;
};

metrics_exporter::metrics_exporter(const std::string& address, counter_source counters)
    : collector_(std::make_shared<collector>(std::move(counters))),
      exposer_registry_(std::make_shared<prometheus::Registry>()) {
    // The families and help texts of prometheus-cpp's exposer, which served /metrics before.
    transferred_bytes_ = &prometheus::BuildCounter()
                              .Name("exposer_transferred_bytes_total")
                              .Help("Transferred bytes to metrics services")
                              .Register(*exposer_registry_)
                              .Add({});
    scrapes_ = &prometheus::BuildCounter()
                    .Name("exposer_scrapes_total")
                    .Help("Number of times metrics were scraped")
                    .Register(*exposer_registry_)
                    .Add({});
    latencies_ = &prometheus::BuildSummary()
                      .Name("exposer_request_latencies")
                      .Help("Latencies of serving scrape requests, in microseconds")
                      .Register(*exposer_registry_)
                      .Add({}, prometheus::Summary::Quantiles{{0.5, 0.05}, {0.9, 0.01}, {0.99, 0.001}});
    http_listener_config lc;
    lc.name = "metrics " + address;
    lc.tcp_address = address;
    lc.max_connections = 32;
    lc.max_connections_per_peer = 8;
    lc.idle_timeout_s = 10;
    lc.connection_memory = 16 * 1024;
    lc.max_buffered_body_bytes = 0;
    auto admit = [](const http_head& h) -> std::variant<size_t, http_response> {
        const std::string path = decode_target(h.target).path;
        if (path != "/metrics") return http_response{404, "not found: the metrics are at /metrics\n", "text/plain; charset=utf-8"};
        if (h.method != "GET" && h.method != "HEAD")
            return http_response{405, "GET /metrics\n", "text/plain; charset=utf-8"};
        return size_t{0};
    };
    auto handle = [this](http_request, http_reply reply) {
        reply(http_response{200, serve_scrape(), "text/plain; charset=utf-8"});
    };
    try {
        listener_ = std::make_unique<http_listener>(std::move(lc), admit, handle);
    } catch (const std::exception& e) {
        throw std::runtime_error(std::string("metrics: cannot listen on ") + address + ": " + e.what());
    }
}

std::string metrics_exporter::serve_scrape() {
    const auto start = std::chrono::steady_clock::now();
    std::vector<prometheus::MetricFamily> families = exposer_registry_->Collect();
    for (auto& f : collector_->Collect()) families.push_back(std::move(f));
    std::string text = prometheus::TextSerializer().Serialize(families);
    latencies_->Observe(static_cast<double>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count()));
    transferred_bytes_->Increment(static_cast<double>(text.size()));
    scrapes_->Increment();
    return text;
}

metrics_exporter::~metrics_exporter() = default;

void metrics_exporter::update(control_snapshot snapshot) { collector_->update(std::move(snapshot)); }
void metrics_exporter::observe_apply(double seconds) { collector_->observe_apply(seconds); }

std::string metrics_exporter::render() const {
    std::ostringstream o;
    prometheus::TextSerializer().Serialize(o, collector_->Collect());
    return o.str();
}

}  // namespace sekisho
