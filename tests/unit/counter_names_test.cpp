// The counter table (control/observe/counter_names.h) against what is published:
// each counter of worker_counters, set alone, shows under exactly the names its entry
// gives it in counters_json (summary.json, the control API) and in the metrics
// exposition; every counter set at once gives the summary, the human summary and the
// exposition the release published (tests/data/published_counters.txt, byte for byte:
// names, labels, help strings, order and which counter feeds which name); and
// docs/metrics.md lists every counter with both its names. That every member of
// worker_counters has an entry is checked when counter_names.h compiles.
#include "control/observe/counter_names.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "control/observe/counters_report.h"
#include "control/observe/metrics.h"

#ifndef SEKISHO_SOURCE_ROOT
#error "SEKISHO_SOURCE_ROOT must name the source tree (tests/meson.build sets it)"
#endif

namespace sekisho {
namespace {

using nlohmann::json;
using values = std::map<std::string, double>;

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    EXPECT_TRUE(in) << "cannot read " << path;
    std::ostringstream o;
    o << in.rdbuf();
    return o.str();
}

// Two workers and, last, the control thread's block, as data_plane::all_counters returns them.
struct counter_blocks {
    std::vector<worker_counters> blocks = std::vector<worker_counters>(3);
    std::vector<const worker_counters*> view() const {
        std::vector<const worker_counters*> v;
        for (const worker_counters& b : blocks) v.push_back(&b);
        return v;
    }
};

const std::vector<std::string> limit_names = {"per_subscriber_hour", "per_account_day"};
const std::vector<std::string> rule_ids = {"rule_a", "rule_b", "rule_c"};

// The snapshot the published exposition was rendered with: every control-plane value distinct.
control_snapshot full_snapshot() {
    control_snapshot s;
    s.generation = 7;
    s.limit_names = limit_names;
    s.rule_ids = rule_ids;
    s.bindings = 11, s.binding_capacity = 12, s.accounts = 13, s.account_capacity = 14;
    s.flows = 15, s.flow_capacity = 16, s.mbufs_in_use = 17, s.mbufs_total = 18;
    s.event_log.written = 19, s.event_log.write_errors = 20, s.event_log.aggregated = 21, s.event_log.io_errors = 22;
    s.event_log.rotations = 23, s.event_log.reopened = 24;
    s.radius = true;
    s.radius_results = {{"accepted", 25}, {"ignored", 26}, {"duplicate", 27}};
    s.bindings_restored = 28, s.binding_apply_errors = 29;
    s.start_time_seconds = 1700000000;
    s.version = "0.1.0";
    s.build = "v0.1.0-3-gabcdef0";
    s.backend = "dpdk";
    s.policy_reload_failures = 38;
    s.port_stats = true;
    s.rx_missed[0] = 30, s.rx_missed[1] = 31, s.rx_nombuf[0] = 32, s.rx_nombuf[1] = 33;
    s.rx_errors[0] = 34, s.rx_errors[1] = 35, s.tx_errors[0] = 36, s.tx_errors[1] = 37;
    return s;
}

// Every counter of the blocks, reached through the table, each with a value that depends
// only on which member it is: its block and its offset in the block. A table entry that
// points at another member than its names say publishes that member's value, and the
// comparison with the published text fails.
void set_every_counter(counter_blocks& c) {
    for (unsigned bi = 0; bi < c.blocks.size(); ++bi) {
        worker_counters& b = c.blocks[bi];
        auto put = [&](counter& x) {
            const auto offset = reinterpret_cast<const char*>(&x) - reinterpret_cast<const char*>(&b);
            x.set((bi + 1) * 1000000ull + static_cast<uint64_t>(offset) / 8);
        };
        for (port_counters& p : b.port)
            for (const port_counter_name& n : port_counter_names) put(p.*n.member);
        for (const auto& n : block_reason_counter_names)
            for (counter& x : b.*n.member) put(x);
        for (const auto& n : malformed_reason_counter_names)
            for (counter& x : b.*n.member) put(x);
        for (const auto& n : event_counter_names) put(b.*n.member);
        for (const auto& n : smtp_counter_names) put(b.mail.*n.member);
        for (counter& x : b.mail.limit_hits) put(x);
        for (const auto& n : inspection_counter_names) put(b.inspection.*n.member);
        for (unsigned r = 0; r < 4; ++r) (*b.rule_matches)[r].set((bi + 1) * 1000000ull + 500000 + r);
        for (const auto& n : poll_counter_names) put(b.*n.member);
        for (unsigned port : {25u, 465u, 587u})
            (*b.blocked_by_dst_port)[port].set((bi + 1) * 1000000ull + 700000 + port);
    }
}

TEST(CounterNames, EveryCounterSetGivesWhatTheReleasePublished) {
    counter_blocks c;
    set_every_counter(c);
    const auto all = c.view();
    control_snapshot s = full_snapshot();
    apply_durations applies;
    for (double seconds : {0.003, 0.2, 3.0}) applies.observe(seconds);

    std::ostringstream o;
    const json report = counters_json(all);
    o << "=== summary\n" << report.dump(2) << "\n=== human\n" << human_summary(report);
    o << "=== exposition\n" << render_metrics(all, s, applies);
    s.port_stats = false;
    s.radius = false;
    o << "=== exposition (no port stats, no RADIUS)\n" << render_metrics(all, s, applies);
    o << "=== summary (one block)\n" << counters_json({all.front()}).dump(2) << "\n";
    EXPECT_EQ(o.str(), read_file(std::string(SEKISHO_SOURCE_ROOT) + "/tests/data/published_counters.txt"));
    // SEKISHO_WRITE_PUBLISHED=FILE writes what was rendered, to review against the published
    // file when a counter is added (every value is its member's offset: they all move).
    if (const char* out = std::getenv("SEKISHO_WRITE_PUBLISHED")) std::ofstream(out) << o.str();
}

// Fleet mode's concerns each add their samples; one family name is one family
// (Prometheus refuses a family twice), its samples in the order they came.
TEST(CounterNames, FleetSamplesOfOneFamilyRenderAsOneFamily) {
    counter_blocks c;
    control_snapshot s = full_snapshot();
    const std::vector<std::pair<std::string, std::string>> pg = {{"store", "postgres"}, {"concern", "operator"}};
    const std::vector<std::pair<std::string, std::string>> redis = {{"store", "redis"}, {"concern", "campaign"}};
    s.fleet.push_back({"sekisho_fleet_link_up", "Link up.", false, pg, 1});
    s.fleet.push_back({"sekisho_fleet_operator_changes_applied_total", "Applied.", true, {}, 7});
    s.fleet.push_back({"sekisho_fleet_link_up", "Link up.", false, redis, 0});
    const std::string text = render_metrics(c.view(), s, apply_durations{});
    size_t types = 0;
    for (size_t at = text.find("# TYPE sekisho_fleet_link_up gauge"); at != std::string::npos;
         at = text.find("# TYPE sekisho_fleet_link_up gauge", at + 1))
        ++types;
    EXPECT_EQ(types, 1u) << text;
    const size_t up = text.find("sekisho_fleet_link_up{store=\"postgres\",concern=\"operator\"} 1");
    const size_t down = text.find("sekisho_fleet_link_up{store=\"redis\",concern=\"campaign\"} 0");
    EXPECT_NE(up, std::string::npos) << text;
    EXPECT_NE(down, std::string::npos) << text;
    EXPECT_LT(up, down);
    EXPECT_NE(text.find("# TYPE sekisho_fleet_operator_changes_applied_total counter\n"
                        "sekisho_fleet_operator_changes_applied_total 7"),
              std::string::npos)
        << text;
}

// summary.json's numbers by path ("smtp.flows_created", "per_worker.0.busy_polls"), the zeros left out.
void flatten(const json& j, const std::string& path, values& out) {
    if (j.is_object() || j.is_array()) {
        size_t i = 0;
        for (auto it = j.begin(); it != j.end(); ++it, ++i) {
            const std::string key = j.is_object() ? it.key() : std::to_string(i);
            flatten(*it, path.empty() ? key : path + "." + key, out);
        }
    } else if (j.is_number() && j.get<double>() != 0) {
        out[path] = j.get<double>();
    }
}

values summary_values(const counter_blocks& c) {
    values out;
    flatten(counters_json(c.view()), "", out);
    return out;
}

// The exposition's samples by name and labels (`family{label="value",...}`), the zeros left out,
// and sekisho_build_info, which is 1 whatever the counters say.
values metric_values(const counter_blocks& c, const control_snapshot& s) {
    values out;
    std::istringstream in(render_metrics(c.view(), s, apply_durations{}));
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#' || line.rfind(build_info_family.name, 0) == 0) continue;
        const size_t space = line.rfind(' ');
        const double v = std::stod(line.substr(space + 1));
        if (v != 0) out[line.substr(0, space)] = v;
    }
    return out;
}

std::string sample(const metric_family& f, std::vector<std::pair<std::string, std::string>> outer,
                   const char* label_value) {
    if (f.label != nullptr) outer.push_back({f.label, label_value});
    std::string s = f.name;
    if (outer.empty()) return s;
    s += "{";
    for (size_t i = 0; i < outer.size(); ++i) s += (i ? "," : "") + outer[i].first + "=\"" + outer[i].second + "\"";
    return s + "}";
}

// One counter set alone in the first worker's block, and where the table says it shows.
struct one_counter {
    std::string what;
    std::function<void(worker_counters&)> set;
    values summary, metrics;
};

constexpr uint64_t v = 7;

void add_port_counters(std::vector<one_counter>& cases) {
    for (unsigned side = 0; side < ingress_count; ++side) {
        const std::string port = to_string(static_cast<ingress>(side));
        for (const port_counter_name& n : port_counter_names) {
            one_counter c{"ports." + port + "." + n.summary_key,
                          [side, &n](worker_counters& b) { (b.port[side].*n.member).set(v); }, {}, {}};
            c.summary[c.what] = v;
            if (n.total_key) c.summary[n.total_key] = v;
            if (n.per_worker) c.summary["per_worker.0." + std::string(n.summary_key)] = v;
            if (n.family) c.metrics[sample(*n.family, {{"port", port}}, n.label_value)] = v;
            for (const port_counter_name& less : port_counter_names)   // forwarded counts less monitored
                if (less.minus == n.member)
                    c.metrics[sample(*less.family, {{"port", port}}, less.label_value)] = -static_cast<double>(v);
            cases.push_back(std::move(c));
        }
    }
}

template <typename Reason, size_t N, size_t E>
void add_reason_counters(std::vector<one_counter>& cases, const reason_counter_name<Reason, N> (&names)[E]) {
    for (const auto& n : names)
        for (unsigned r = n.first_reason; r < N; ++r) {
            const std::string reason = to_string(static_cast<Reason>(r));
            one_counter c{std::string(n.summary_key) + "." + reason,
                          [r, &n](worker_counters& b) { (b.*n.member)[r].set(v); }, {}, {}};
            c.summary[c.what] = v;
            c.metrics[sample(*n.family, {{"reason", reason}}, n.label_value)] = v;
            cases.push_back(std::move(c));
        }
}

template <typename Block, size_t N, typename BlockOf>
void add_group_counters(std::vector<one_counter>& cases, const char* object, const counter_name<Block> (&names)[N],
                        BlockOf block_of) {
    for (const counter_name<Block>& n : names) {
        one_counter c{std::string(object) + "." + n.summary_key,
                      [&n, block_of](worker_counters& b) { (block_of(b).*n.member).set(v); }, {}, {}};
        c.summary[c.what] = v;
        if (n.family) c.metrics[sample(*n.family, {}, n.label_value)] = v;
        cases.push_back(std::move(c));
    }
}

void add_per_worker_counters(std::vector<one_counter>& cases) {
    for (const counter_name<worker_counters>& n : poll_counter_names) {
        one_counter c{std::string(per_worker_summary_object) + ".0." + n.summary_key,
                      [&n](worker_counters& b) { (b.*n.member).set(v); }, {}, {}};
        c.summary[c.what] = v;
        c.metrics[sample(*n.family, {{"worker", "0"}}, n.label_value)] = v;
        cases.push_back(std::move(c));
    }
}

// Limit hits, rule matches, blocks by TCP destination port: indexed by the policy or a port.
void add_indexed_counters(std::vector<one_counter>& cases) {
    for (unsigned i = 0; i < max_limits; ++i) {
        one_counter c{std::string(limit_hits_summary_key) + "." + std::to_string(i),
                      [i](worker_counters& b) { b.mail.limit_hits[i].set(v); }, {}, {}};
        c.summary[c.what] = v;
        if (i < limit_names.size()) c.metrics[sample(limit_hits_family, {}, limit_names[i].c_str())] = v;
        cases.push_back(std::move(c));
    }
    for (unsigned i = 0; i < rule_ids.size(); ++i) {
        one_counter c{"rule " + rule_ids[i], [i](worker_counters& b) { (*b.rule_matches)[i].set(v); }, {}, {}};
        c.metrics[sample(rule_matches_family, {}, rule_ids[i].c_str())] = v;
        cases.push_back(std::move(c));
    }
    for (unsigned port : {0u, 25u, 65535u}) {
        one_counter c{std::string(blocks_by_dst_port_summary_key) + "." + std::to_string(port),
                      [port](worker_counters& b) { (*b.blocked_by_dst_port)[port].set(v); }, {}, {}};
        c.summary[c.what] = v;
        cases.push_back(std::move(c));
    }
}

std::vector<one_counter> each_counter_alone() {
    std::vector<one_counter> cases;
    add_port_counters(cases);
    add_reason_counters(cases, block_reason_counter_names);
    add_reason_counters(cases, malformed_reason_counter_names);
    add_group_counters(cases, smtp_summary_object, smtp_counter_names,
                       [](worker_counters& b) -> mail_counters& { return b.mail; });
    add_group_counters(cases, inspection_summary_object, inspection_counter_names,
                       [](worker_counters& b) -> inspection_counters& { return b.inspection; });
    add_group_counters(cases, events_summary_object, event_counter_names,
                       [](worker_counters& b) -> worker_counters& { return b; });
    add_per_worker_counters(cases);
    add_indexed_counters(cases);
    return cases;
}

TEST(CounterNames, EachCounterShowsUnderExactlyTheNamesOfItsEntry) {
    control_snapshot s;
    s.limit_names = limit_names;
    s.rule_ids = rule_ids;
    counter_blocks none;
    ASSERT_EQ(summary_values(none), values{}) << "no counter set, yet summary.json has a number";
    ASSERT_EQ(metric_values(none, s), values{}) << "no counter set, yet the exposition has a sample";
    const auto cases = each_counter_alone();
    for (const one_counter& c : cases) {
        counter_blocks blocks;
        c.set(blocks.blocks[0]);
        EXPECT_EQ(summary_values(blocks), c.summary) << c.what << " set alone: summary.json";
        EXPECT_EQ(metric_values(blocks, s), c.metrics) << c.what << " set alone: exposition";
    }
}

// docs/metrics.md's table of every counter with its summary.json names and its metric,
// and the list of the pairs spelled differently, as the table gives them.
struct docs_rows {
    std::vector<std::string> rows, differing;

    void add(const std::string& summary, const std::string& metric) {
        rows.push_back("| " + (summary.empty() ? "—" : summary) + " | " + (metric.empty() ? "—" : metric) + " |");
    }
    void compare(const char* summary_key, const metric_family* f, const char* label_value, const std::string& path) {
        if (f != nullptr && f->label != nullptr && std::string(summary_key) != label_value)
            differing.push_back("- `" + path + "` and `" + f->name + "{" + f->label + "=\"" + label_value + "\"}`");
    }
};

std::string metric_text(const metric_family* f, const std::string& outer, const char* label_value) {
    if (f == nullptr) return "";
    std::string labels = outer;
    if (f->label != nullptr) labels += (labels.empty() ? "" : ", ") + std::string(f->label) + "=\"" + label_value + "\"";
    return "`" + std::string(f->name) + (labels.empty() ? "" : "{" + labels + "}") + "`";
}

template <typename Reason, size_t N, size_t E>
void add_reason_rows(docs_rows& d, const reason_counter_name<Reason, N> (&names)[E]) {
    for (const auto& n : names)
        d.add("`" + std::string(n.summary_key) + ".<reason>`", metric_text(n.family, "reason", n.label_value));
}

template <typename Block, typename Value, size_t N>
void add_group_rows(docs_rows& d, const std::string& object, const counter_name<Block, Value> (&names)[N],
                    const std::string& outer_label = "") {
    for (const counter_name<Block, Value>& n : names) {
        const std::string path = object + "." + n.summary_key;
        d.add("`" + path + "`", metric_text(n.family, outer_label, n.label_value));
        d.compare(n.summary_key, n.family, n.label_value, path);
    }
}

docs_rows expected_docs() {
    docs_rows d;
    for (const port_counter_name& n : port_counter_names) {
        std::string summary = "`ports.<port>." + std::string(n.summary_key) + "`";
        if (n.total_key) summary += ", `" + std::string(n.total_key) + "` (both ports)";
        if (n.per_worker) summary += ", `per_worker[]." + std::string(n.summary_key) + "`";
        std::string metric = metric_text(n.family, "port", n.label_value);
        for (const port_counter_name& less : port_counter_names)
            if (less.member == n.minus) metric += " minus `ports.<port>." + std::string(less.summary_key) + "`";
        d.add(summary, metric);
        d.compare(n.summary_key, n.family, n.label_value, "ports.<port>." + std::string(n.summary_key));
    }
    add_reason_rows(d, block_reason_counter_names);
    add_reason_rows(d, malformed_reason_counter_names);
    add_group_rows(d, smtp_summary_object, smtp_counter_names);
    add_group_rows(d, inspection_summary_object, inspection_counter_names);
    add_group_rows(d, events_summary_object, event_counter_names);
    add_group_rows(d, events_summary_object, event_log_counter_names);
    add_group_rows(d, std::string(per_worker_summary_object) + "[]", poll_counter_names, "worker");
    d.add("`" + std::string(limit_hits_summary_key) + "[]`", metric_text(&limit_hits_family, "", "<name>"));
    d.add("", metric_text(&rule_matches_family, "", "<id>"));
    d.add("`" + std::string(blocks_by_dst_port_summary_key) + ".<TCP port>`", "");
    return d;
}

TEST(CounterNames, DocsListEveryCounterWithBothItsNames) {
    const std::string docs = read_file(std::string(SEKISHO_SOURCE_ROOT) + "/docs/metrics.md");
    const docs_rows d = expected_docs();
    std::string expected, missing;
    for (const std::vector<std::string>* lines : {&d.rows, &d.differing})
        for (const std::string& line : *lines) {
            expected += line + "\n";
            if (docs.find("\n" + line + "\n") == std::string::npos) missing += line + "\n";
        }
    EXPECT_EQ(missing, "") << "docs/metrics.md lacks these lines; its table and list should read:\n" << expected;
}

}  // namespace
}  // namespace sekisho
