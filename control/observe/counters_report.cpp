#include "control/observe/counters_report.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "control/observe/counter_names.h"
#include "control/observe/event_log.h"

namespace sekisho {

namespace {

using nlohmann::json;
using blocks = std::vector<const worker_counters*>;

uint64_t port_sum(const blocks& w, unsigned side, counter port_counters::*c) {
    return sum_over(w, [&](const worker_counters& b) -> const counter& { return b.port[side].*c; });
}

// ports: {<port>: {<summary_key>: n}} for every port counter.
json ports_json(const blocks& w) {
    json ports = json::object();
    for (unsigned side = 0; side < ingress_count; ++side) {
        json& p = ports[to_string(static_cast<ingress>(side))] = json::object();
        for (const port_counter_name& c : port_counter_names) p[c.summary_key] = port_sum(w, side, c.member);
    }
    return ports;
}

// The top-level sums over both ports (frames_in, forwarded, blocked, ...).
void add_port_totals(json& report, const blocks& w) {
    for (const port_counter_name& c : port_counter_names) {
        if (c.total_key == nullptr) continue;
        uint64_t n = 0;
        for (unsigned side = 0; side < ingress_count; ++side) n += port_sum(w, side, c.member);
        report[c.total_key] = n;
    }
}

// {<summary_key>: n} for a table of one block; `block_of` picks that block in a worker's counters.
template <typename Block, size_t N, typename BlockOf>
json group_json(const blocks& w, const counter_name<Block> (&names)[N], BlockOf block_of) {
    json group = json::object();
    for (const counter_name<Block>& c : names)
        group[c.summary_key] =
            sum_over(w, [&](const worker_counters& b) -> const counter& { return block_of(b).*c.member; });
    return group;
}

// {<reason>: n} for the reasons counted at least once.
template <typename Reason, size_t N>
json by_reason_json(const blocks& w, const reason_counter_name<Reason, N>& names) {
    json out = json::object();
    for (unsigned r = names.first_reason; r < N; ++r) {
        const uint64_t n =
            sum_over(w, [&](const worker_counters& b) -> const counter& { return (b.*names.member)[r]; });
        if (n) out[to_string(static_cast<Reason>(r))] = n;
    }
    return out;
}

// {<TCP destination port>: n} for the ports OP25B blocked or would block at least once.
json blocks_by_dst_port_json(const blocks& w) {
    json out = json::object();
    for (unsigned port = 0; port < 65536; ++port) {
        const uint64_t n =
            sum_over(w, [&](const worker_counters& b) -> const counter& { return (*b.blocked_by_dst_port)[port]; });
        if (n) out[std::to_string(port)] = n;
    }
    return out;
}

// Hits of each limit, by its index in the policy (every index, hit or not).
json limit_hits_json(const blocks& w) {
    json out = json::array();
    for (unsigned i = 0; i < max_limits; ++i)
        out.push_back(sum_over(w, [&](const worker_counters& b) -> const counter& { return b.mail.limit_hits[i]; }));
    return out;
}

// Per worker, not summed: the load spread and each worker's share of the verdicts. The
// control thread's block (last, when there are workers) only transmits and is left out.
json per_worker_json(const blocks& w) {
    json out = json::array();
    for (const worker_counters* b : w) {
        if (b == w.back() && w.size() > 1) break;
        json one = json::object();
        for (const port_counter_name& c : port_counter_names) {
            if (!c.per_worker) continue;
            uint64_t n = 0;
            for (const port_counters& p : b->port) n += (p.*c.member).load();
            one[c.summary_key] = n;
        }
        for (const counter_name<worker_counters>& c : poll_counter_names) one[c.summary_key] = (b->*c.member).load();
        out.push_back(std::move(one));
    }
    return out;
}

const worker_counters& whole(const worker_counters& b) { return b; }
const mail_counters& mail_of(const worker_counters& b) { return b.mail; }
const inspection_counters& inspection_of(const worker_counters& b) { return b.inspection; }

}  // namespace

json counters_json(const blocks& w) {
    json report = {
        {ports_summary_object, ports_json(w)},
        {per_worker_summary_object, per_worker_json(w)},
        {smtp_summary_object, group_json(w, smtp_counter_names, mail_of)},
        {inspection_summary_object, group_json(w, inspection_counter_names, inspection_of)},
        {events_summary_object, group_json(w, event_counter_names, whole)},
        {limit_hits_summary_key, limit_hits_json(w)},
        {blocks_by_dst_port_summary_key, blocks_by_dst_port_json(w)},
    };
    for (const auto& names : block_reason_counter_names) report[names.summary_key] = by_reason_json(w, names);
    for (const auto& names : malformed_reason_counter_names) report[names.summary_key] = by_reason_json(w, names);
    add_port_totals(report, w);
    return report;
}

void add_event_log_counters(nlohmann::json& report, const event_log& log) {
    nlohmann::json& e = report[events_summary_object];
    for (const auto& n : event_log_counter_names) e[n.summary_key] = log.counters().*n.member;
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
