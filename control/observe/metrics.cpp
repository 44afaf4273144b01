#include "control/observe/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/summary.h>
#include <prometheus/text_serializer.h>

#include <array>
#include <chrono>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "control/api/http_listener.h"
#include "dataplane/worker_counters.h"

namespace sekisho {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr std::array<double, 10> apply_buckets = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

MetricFamily family(const std::string& name, const std::string& help, MetricType type) {
    MetricFamily f;
    f.name = name;
    f.help = help;
    f.type = type;
    return f;
}

void add(MetricFamily& f, std::vector<ClientMetric::Label> labels, double value) {
    ClientMetric m;
    m.label = std::move(labels);
    if (f.type == MetricType::Counter)
        m.counter.value = value;
    else
        m.gauge.value = value;
    f.metric.push_back(std::move(m));
}

template <typename F>
double sum(const std::vector<const worker_counters*>& w, F field) {
    uint64_t total = 0;
    for (const worker_counters* x : w) total += field(*x).load();
    return static_cast<double>(total);
}

}  // namespace

class metrics_exporter::collector : public prometheus::Collectable {
public:
    explicit collector(counter_source counters) : counters_(std::move(counters)) {}

    void update(control_snapshot s) {
        std::lock_guard lock(mutex_);
        snapshot_ = std::move(s);
    }
    void observe_apply(double seconds) {
        std::lock_guard lock(mutex_);
        ++apply_count_;
        apply_sum_ += seconds;
        for (size_t i = 0; i < apply_buckets.size(); ++i)
            if (seconds <= apply_buckets[i]) ++apply_bucket_counts_[i];
    }

    std::vector<MetricFamily> Collect() const override;

private:
    counter_source counters_;
    mutable std::mutex mutex_;
    control_snapshot snapshot_;
    uint64_t apply_count_ = 0;
    double apply_sum_ = 0;
    std::array<uint64_t, apply_buckets.size()> apply_bucket_counts_{};
};

std::vector<MetricFamily> metrics_exporter::collector::Collect() const {
    const auto w = counters_();
    std::vector<MetricFamily> out;

    // Per port and verdict.
    auto packets = family("sekisho_packets_total", "Frames received, by port and what happened to them.", MetricType::Counter);
    auto bytes = family("sekisho_rx_bytes_total", "Bytes received, by port.", MetricType::Counter);
    auto tx_packets = family("sekisho_tx_packets_total", "Frames sent, by port (forwarded and injected).", MetricType::Counter);
    auto tx_bytes = family("sekisho_tx_bytes_total", "Bytes sent, by port.", MetricType::Counter);
    auto tx_full = family("sekisho_tx_queue_full_drops_total", "Frames dropped because the port's TX queue was full.", MetricType::Counter);
    auto resets = family("sekisho_op25b_resets_sent_total", "TCP RSTs sent by OP25B, by port they left through.", MetricType::Counter);
    for (unsigned side = 0; side < ingress_count; ++side) {
        const std::string port = to_string(static_cast<ingress>(side));
        auto pc = [&](counter port_counters::*c) {
            return sum(w, [&](const worker_counters& x) -> const counter& { return x.port[side].*c; });
        };
        const double forwarded = pc(&port_counters::forwarded), monitored = pc(&port_counters::monitored);
        add(packets, {{"port", port}, {"verdict", "forwarded"}}, forwarded - monitored);
        add(packets, {{"port", port}, {"verdict", "monitored"}}, monitored);
        add(packets, {{"port", port}, {"verdict", "blocked"}}, pc(&port_counters::blocked));
        add(packets, {{"port", port}, {"verdict", "limited"}}, pc(&port_counters::limited));
        add(packets, {{"port", port}, {"verdict", "malformed_dropped"}}, pc(&port_counters::malformed_dropped));
        add(bytes, {{"port", port}}, pc(&port_counters::rx_bytes));
        add(tx_packets, {{"port", port}}, pc(&port_counters::tx_packets));
        add(tx_bytes, {{"port", port}}, pc(&port_counters::tx_bytes));
        add(tx_full, {{"port", port}}, pc(&port_counters::tx_full_drops));
        add(resets, {{"port", port}}, pc(&port_counters::resets_sent));
    }
    out.push_back(std::move(packets));
    out.push_back(std::move(bytes));
    out.push_back(std::move(tx_packets));
    out.push_back(std::move(tx_bytes));
    out.push_back(std::move(tx_full));
    out.push_back(std::move(resets));

    auto blocks = family("sekisho_op25b_blocks_total", "Frames OP25B blocked (enforce) or would block (monitor), by reason.", MetricType::Counter);
    for (unsigned r = 0; r < block_reason_count; ++r) {
        const std::string reason = to_string(static_cast<block_reason>(r));
        add(blocks, {{"reason", reason}, {"mode", "enforce"}},
            sum(w, [&](const worker_counters& x) -> const counter& { return x.blocked_by_reason[r]; }));
        add(blocks, {{"reason", reason}, {"mode", "monitor"}},
            sum(w, [&](const worker_counters& x) -> const counter& { return x.monitored_by_reason[r]; }));
    }
    out.push_back(std::move(blocks));

    auto malformed = family("sekisho_malformed_frames_total", "Malformed frames, by reason (both ports).", MetricType::Counter);
    for (unsigned r = 1; r < parse_error_count; ++r)
        add(malformed, {{"reason", to_string(static_cast<parse_error>(r))}},
            sum(w, [&](const worker_counters& x) -> const counter& { return x.malformed_by_reason[r]; }));
    out.push_back(std::move(malformed));

    // SMTP tracking.
    using mc = worker_counters::mail_counters;
    auto mail = [&](counter mc::*c) { return sum(w, [&](const worker_counters& x) -> const counter& { return x.mail.*c; }); };
    auto smtp = family("sekisho_smtp_events_total", "SMTP tracking events, by kind.", MetricType::Counter);
    const std::pair<const char*, counter mc::*> smtp_kinds[] = {
        {"flow_created", &mc::flows_created},     {"flow_ended", &mc::flows_ended},
        {"flow_expired", &mc::flows_expired},     {"flow_table_full", &mc::flow_table_full},
        {"subscriber_state_full", &mc::subscriber_state_full}, {"uninspectable", &mc::uninspectable},
        {"tls", &mc::tls},                        {"command", &mc::commands},
        {"message", &mc::messages},               {"recipient", &mc::recipients},
        {"rejected_recipient", &mc::rejected_recipients}, {"tempfail_sent", &mc::tempfails_sent},
        {"reset_sent", &mc::resets_sent},         {"syn_dropped", &mc::syns_dropped},
        {"suspended_refused", &mc::suspended_refused},
    };
    for (const auto& [kind, c] : smtp_kinds) add(smtp, {{"kind", kind}}, mail(c));
    out.push_back(std::move(smtp));

    // Content inspection: messages inspected, and where it failed open.
    using ic = worker_counters::inspection_counters;
    auto insp = [&](counter ic::*c) {
        return sum(w, [&](const worker_counters& x) -> const counter& { return x.inspection.*c; });
    };
    auto inspection = family("sekisho_inspection_events_total",
                             "Content inspection, by kind: messages inspected, envelope lines and header fields "
                             "scanned, and the fail-open cases (table_full, stream_overflow, stream_error).",
                             MetricType::Counter);
    const std::pair<const char*, counter ic::*> insp_kinds[] = {
        {"message", &ic::messages},           {"table_full", &ic::table_full},
        {"header_field", &ic::header_fields}, {"envelope_line", &ic::envelope_lines},
        {"stream_overflow", &ic::stream_overflow}, {"stream_error", &ic::stream_errors},
        {"policy_restart", &ic::policy_restarts}, {"body_eviction", &ic::body_evictions},
        {"campaign_recipients", &ic::campaign_recipients}, {"campaign_subscribers", &ic::campaign_subscribers},
        {"verdict_acted", &ic::verdicts_acted},
    };
    for (const auto& [kind, c] : insp_kinds) add(inspection, {{"kind", kind}}, insp(c));
    out.push_back(std::move(inspection));
    auto inspected_bytes = family("sekisho_inspection_body_bytes_total", "Decoded body bytes scanned.", MetricType::Counter);
    add(inspected_bytes, {}, insp(&ic::body_bytes));
    out.push_back(std::move(inspected_bytes));

    auto events = family("sekisho_events_total", "Data-plane events, by outcome.", MetricType::Counter);
    add(events, {{"outcome", "emitted"}}, sum(w, [](const worker_counters& x) -> const counter& { return x.events_emitted; }));
    add(events, {{"outcome", "ring_full"}}, sum(w, [](const worker_counters& x) -> const counter& { return x.events_ring_full; }));

    auto polls = family("sekisho_worker_polls_total", "Worker loop iterations, busy (received frames) or idle.", MetricType::Counter);
    for (size_t i = 0; i + 1 < w.size(); ++i) {  // the last block is the control thread's
        add(polls, {{"worker", std::to_string(i)}, {"state", "busy"}}, static_cast<double>(w[i]->busy_polls.load()));
        add(polls, {{"worker", std::to_string(i)}, {"state", "idle"}}, static_cast<double>(w[i]->idle_polls.load()));
    }
    out.push_back(std::move(polls));

    std::lock_guard lock(mutex_);
    const control_snapshot& s = snapshot_;
    add(events, {{"outcome", "written"}}, static_cast<double>(s.events_written));
    add(events, {{"outcome", "write_error"}}, static_cast<double>(s.event_write_errors));
    add(events, {{"outcome", "aggregated"}}, static_cast<double>(s.events_aggregated));
    auto log_io = family("sekisho_event_log_io_errors_total", "Failed writes, fsyncs, renames or opens of the event log.", MetricType::Counter);
    add(log_io, {}, static_cast<double>(s.event_io_errors));
    out.push_back(std::move(log_io));
    auto rotations = family("sekisho_event_log_rotations_total", "Event log rotations.", MetricType::Counter);
    add(rotations, {}, static_cast<double>(s.event_rotations));
    out.push_back(std::move(rotations));
    auto reopens = family("sekisho_event_log_reopens_total",
                          "Event log file deleted or replaced underneath, and opened again at its path.",
                          MetricType::Counter);
    add(reopens, {}, static_cast<double>(s.event_reopens));
    out.push_back(std::move(reopens));
    out.push_back(std::move(events));

    if (s.port_stats) {
        auto rx_drops = family("sekisho_port_rx_dropped_total",
                               "Frames the port lost before a worker saw them: missed (RX queue full, or with "
                               "net_af_packet the kernel's RX ring full: the workers did not keep up), nombuf (no "
                               "mbuf), errors (bad frames).",
                               MetricType::Counter);
        auto tx_errors = family("sekisho_port_tx_errors_total", "Frames the port failed to send.", MetricType::Counter);
        for (unsigned side = 0; side < 2; ++side) {
            const std::string port = to_string(static_cast<ingress>(side));
            add(rx_drops, {{"port", port}, {"reason", "missed"}}, static_cast<double>(s.rx_missed[side]));
            add(rx_drops, {{"port", port}, {"reason", "nombuf"}}, static_cast<double>(s.rx_nombuf[side]));
            add(rx_drops, {{"port", port}, {"reason", "errors"}}, static_cast<double>(s.rx_errors[side]));
            add(tx_errors, {{"port", port}}, static_cast<double>(s.tx_errors[side]));
        }
        out.push_back(std::move(rx_drops));
        out.push_back(std::move(tx_errors));
    }

    auto hits = family("sekisho_limit_hits_total", "Send-rate limit hits, by limit (names from the policy).", MetricType::Counter);
    for (size_t i = 0; i < s.limit_names.size() && i < max_limits; ++i)
        add(hits, {{"limit", s.limit_names[i]}},
            sum(w, [&](const worker_counters& x) -> const counter& { return x.mail.limit_hits[i]; }));
    out.push_back(std::move(hits));

    auto rule_matches = family("sekisho_rule_matches_total", "Messages each content rule matched (ids from the policy).", MetricType::Counter);
    for (size_t i = 0; i < s.rule_ids.size() && i < 8192; ++i) {
        uint64_t n = 0;
        for (const worker_counters* x : w) n += (*x->rule_matches)[i].load();
        add(rule_matches, {{"rule", s.rule_ids[i]}}, static_cast<double>(n));
    }
    out.push_back(std::move(rule_matches));

    auto generation = family("sekisho_policy_generation", "Generation of the policy the workers run.", MetricType::Gauge);
    add(generation, {}, static_cast<double>(s.generation));
    out.push_back(std::move(generation));

    auto entries = family("sekisho_table_entries", "Entries in use, by table.", MetricType::Gauge);
    auto capacity = family("sekisho_table_capacity", "Capacity, by table.", MetricType::Gauge);
    add(entries, {{"table", "bindings"}}, static_cast<double>(s.bindings));
    add(capacity, {{"table", "bindings"}}, static_cast<double>(s.binding_capacity));
    add(entries, {{"table", "accounts"}}, static_cast<double>(s.accounts));
    add(capacity, {{"table", "accounts"}}, static_cast<double>(s.account_capacity));
    add(entries, {{"table", "flows"}}, static_cast<double>(s.flows));
    add(capacity, {{"table", "flows"}}, static_cast<double>(s.flow_capacity));
    add(entries, {{"table", "mbufs"}}, static_cast<double>(s.mbufs_in_use));
    add(capacity, {{"table", "mbufs"}}, static_cast<double>(s.mbufs_total));
    out.push_back(std::move(entries));
    out.push_back(std::move(capacity));

    if (s.radius) {
        auto radius = family("sekisho_radius_packets_total", "RADIUS accounting datagrams, by result.", MetricType::Counter);
        for (const auto& [result, n] : s.radius_results) add(radius, {{"result", result}}, static_cast<double>(n));
        out.push_back(std::move(radius));
    }
    auto restored = family("sekisho_bindings_restored_total", "Bindings restored from the history at start.", MetricType::Counter);
    add(restored, {}, static_cast<double>(s.bindings_restored));
    out.push_back(std::move(restored));
    auto apply_errors = family("sekisho_binding_apply_errors_total", "Bindings that could not be applied (table full, store error).", MetricType::Counter);
    add(apply_errors, {}, static_cast<double>(s.binding_apply_errors));
    out.push_back(std::move(apply_errors));

    auto start = family("sekisho_start_time_seconds", "Unix time the daemon started.", MetricType::Gauge);
    add(start, {}, s.start_time_seconds);
    out.push_back(std::move(start));

    auto apply = family("sekisho_policy_apply_duration_seconds", "Time to validate, compile and publish a policy.", MetricType::Histogram);
    ClientMetric h;
    h.histogram.sample_count = apply_count_;
    h.histogram.sample_sum = apply_sum_;
    for (size_t i = 0; i < apply_buckets.size(); ++i)
        h.histogram.bucket.push_back({apply_bucket_counts_[i], apply_buckets[i]});
    h.histogram.bucket.push_back({apply_count_, std::numeric_limits<double>::infinity()});
    apply.metric.push_back(std::move(h));
    out.push_back(std::move(apply));
    return out;
}

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
