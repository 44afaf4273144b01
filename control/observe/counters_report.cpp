#include "control/observe/counters_report.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "control/observe/event_log.h"

namespace sekisho {

namespace {

template <typename F>
uint64_t sum(const std::vector<const worker_counters*>& workers, F field) {
    uint64_t total = 0;
    for (const worker_counters* w : workers) total += field(*w).load();
    return total;
}

}  // namespace

nlohmann::json counters_json(const std::vector<const worker_counters*>& w) {
    using nlohmann::json;
    json ports = json::object();
    uint64_t totals[6] = {};  // rx, forwarded, blocked, monitored, malformed_dropped, resets
    for (unsigned side = 0; side < ingress_count; ++side) {
        auto field = [&](counter port_counters::*c) {
            return sum(w, [&](const worker_counters& x) -> const counter& { return x.port[side].*c; });
        };
        json p = {
            {"rx_packets", field(&port_counters::rx_packets)},
            {"rx_bytes", field(&port_counters::rx_bytes)},
            {"tx_packets", field(&port_counters::tx_packets)},
            {"tx_bytes", field(&port_counters::tx_bytes)},
            {"forwarded", field(&port_counters::forwarded)},
            {"blocked", field(&port_counters::blocked)},
            {"monitored", field(&port_counters::monitored)},
            {"limited", field(&port_counters::limited)},
            {"malformed", field(&port_counters::malformed)},
            {"malformed_dropped", field(&port_counters::malformed_dropped)},
            {"resets_sent", field(&port_counters::resets_sent)},
            {"reset_failures", field(&port_counters::reset_failures)},
            {"tx_full_drops", field(&port_counters::tx_full_drops)},
            {"non_ip", field(&port_counters::non_ip)},
            {"fragments", field(&port_counters::fragments)},
        };
        totals[0] += p["rx_packets"].get<uint64_t>();
        totals[1] += p["forwarded"].get<uint64_t>();
        totals[2] += p["blocked"].get<uint64_t>();
        totals[3] += p["monitored"].get<uint64_t>();
        totals[4] += p["malformed_dropped"].get<uint64_t>();
        totals[5] += p["resets_sent"].get<uint64_t>();
        ports[to_string(static_cast<ingress>(side))] = p;
    }

    json malformed = json::object();
    for (unsigned r = 1; r < parse_error_count; ++r) {
        const uint64_t n = sum(w, [&](const worker_counters& x) -> const counter& { return x.malformed_by_reason[r]; });
        if (n) malformed[to_string(static_cast<parse_error>(r))] = n;
    }
    json blocked = json::object(), monitored = json::object();
    for (unsigned r = 0; r < block_reason_count; ++r) {
        const char* name = to_string(static_cast<block_reason>(r));
        if (uint64_t n = sum(w, [&](const worker_counters& x) -> const counter& { return x.blocked_by_reason[r]; }))
            blocked[name] = n;
        if (uint64_t n = sum(w, [&](const worker_counters& x) -> const counter& { return x.monitored_by_reason[r]; }))
            monitored[name] = n;
    }
    json by_port = json::object();
    for (unsigned port = 0; port < 65536; ++port) {
        uint64_t n = 0;
        for (const worker_counters* x : w) n += (*x->blocked_by_dst_port)[port].load();
        if (n) by_port[std::to_string(port)] = n;
    }

    // SMTP tracking and limits.
    auto mail = [&](counter worker_counters::mail_counters::*c) {
        return sum(w, [&](const worker_counters& x) -> const counter& { return x.mail.*c; });
    };
    using mc = worker_counters::mail_counters;
    json smtp = {
        {"flows_created", mail(&mc::flows_created)},
        {"flows_ended", mail(&mc::flows_ended)},
        {"flows_expired", mail(&mc::flows_expired)},
        {"flow_table_full", mail(&mc::flow_table_full)},
        {"subscriber_state_full", mail(&mc::subscriber_state_full)},
        {"uninspectable", mail(&mc::uninspectable)},
        {"tls", mail(&mc::tls)},
        {"commands", mail(&mc::commands)},
        {"messages", mail(&mc::messages)},
        {"recipients", mail(&mc::recipients)},
        {"rejected_recipients", mail(&mc::rejected_recipients)},
        {"tempfails_sent", mail(&mc::tempfails_sent)},
        {"resets_sent", mail(&mc::resets_sent)},
        {"syns_dropped", mail(&mc::syns_dropped)},
        {"suspended_refused", mail(&mc::suspended_refused)},
    };
    using ic = worker_counters::inspection_counters;
    auto insp = [&](counter ic::*c) {
        return sum(w, [&](const worker_counters& x) -> const counter& { return x.inspection.*c; });
    };
    json inspection = {
        {"messages", insp(&ic::messages)},
        {"table_full", insp(&ic::table_full)},
        {"header_fields", insp(&ic::header_fields)},
        {"envelope_lines", insp(&ic::envelope_lines)},
        {"body_bytes", insp(&ic::body_bytes)},
        {"rule_matches", insp(&ic::rule_matches)},
        {"stream_overflow", insp(&ic::stream_overflow)},
        {"stream_errors", insp(&ic::stream_errors)},
        {"policy_restarts", insp(&ic::policy_restarts)},
        {"body_evictions", insp(&ic::body_evictions)},
        {"campaign_recipients", insp(&ic::campaign_recipients)},
        {"campaign_subscribers", insp(&ic::campaign_subscribers)},
        {"verdicts_acted", insp(&ic::verdicts_acted)},
    };
    json limit_hits = json::array();
    for (unsigned i = 0; i < max_limits; ++i)
        limit_hits.push_back(sum(w, [&](const worker_counters& x) -> const counter& { return x.mail.limit_hits[i]; }));

    // Per worker: the load spread and each worker's share of the verdicts.
    json per_worker = json::array();
    for (const worker_counters* x : w) {
        if (x == w.back() && w.size() > 1) break;  // the control block only transmits (replay)
        uint64_t rx = 0, fwd = 0, blk = 0;
        for (const auto& p : x->port) {
            rx += p.rx_packets.load();
            fwd += p.forwarded.load();
            blk += p.blocked.load();
        }
        per_worker.push_back({{"rx_packets", rx}, {"forwarded", fwd}, {"blocked", blk},
                              {"busy_polls", x->busy_polls.load()}, {"idle_polls", x->idle_polls.load()}});
    }

    return {
        {"per_worker", per_worker},
        {"smtp", smtp},
        {"inspection", inspection},
        {"limit_hits_by_index", limit_hits},
        {"limited", sum(w, [](const worker_counters& x) -> const counter& { return x.port[0].limited; }) +
                        sum(w, [](const worker_counters& x) -> const counter& { return x.port[1].limited; })},
        {"frames_in", totals[0]},
        {"forwarded", totals[1]},
        {"blocked", totals[2]},
        {"monitored", totals[3]},
        {"malformed_dropped", totals[4]},
        {"resets_sent", totals[5]},
        {"ports", ports},
        {"blocked_by_reason", blocked},
        {"monitored_by_reason", monitored},
        {"malformed_by_reason", malformed},
        {"op25b_by_dst_port", by_port},
        {"events", {{"emitted", sum(w, [](const worker_counters& x) -> const counter& { return x.events_emitted; })},
                    {"ring_full", sum(w, [](const worker_counters& x) -> const counter& { return x.events_ring_full; })}}},
    };
}

void add_event_log_counters(nlohmann::json& report, const event_log& log) {
    const event_log_counters& c = log.counters();
    nlohmann::json& e = report["events"];
    e["written"] = log.written();
    e["write_errors"] = log.write_errors();
    e["lines"] = c.lines;
    e["io_errors"] = c.io_errors;
    e["aggregated"] = c.aggregated;
    e["aggregation_overflow"] = c.aggregation_overflow;
    e["rotations"] = c.rotations;
    e["reopened"] = c.reopened;
    e["pending"] = c.pending;
}

void write_report(const nlohmann::json& report, const std::string& path) {
    std::ofstream f(path);
    f << report.dump(2) << "\n";
    if (!f) throw std::runtime_error("cannot write " + path);
}

std::string human_summary(const nlohmann::json& r) {
    std::ostringstream o;
    const auto& ports = r["ports"];
    o << r["frames_in"].get<uint64_t>() << " frames in (access " << ports["access"]["rx_packets"].get<uint64_t>()
      << ", core " << ports["core"]["rx_packets"].get<uint64_t>() << "): forwarded "
      << r["forwarded"].get<uint64_t>() << ", blocked " << r["blocked"].get<uint64_t>() << ", monitored "
      << r["monitored"].get<uint64_t>() << ", malformed dropped " << r["malformed_dropped"].get<uint64_t>()
      << ", RSTs sent " << r["resets_sent"].get<uint64_t>() << "\n";
    auto list = [&](const char* title, const nlohmann::json& m) {
        if (m.empty()) return;
        o << "  " << title << ":";
        for (auto it = m.begin(); it != m.end(); ++it) o << " " << it.key() << "=" << it.value().get<uint64_t>();
        o << "\n";
    };
    list("blocked by reason", r["blocked_by_reason"]);
    list("monitored by reason", r["monitored_by_reason"]);
    list("OP25B hits by TCP destination port", r["op25b_by_dst_port"]);
    list("malformed by reason", r["malformed_by_reason"]);
    return o.str();
}

}  // namespace sekisho
