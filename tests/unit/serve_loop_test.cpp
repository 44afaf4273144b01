// The serve loop (control/serve_loop.cpp) driving a backend made for the test:
// the real control API on a Unix socket, the real Prometheus exporter, real
// signals, the real policy file and event log; only the forwarding is
// missing. The two real backends run the same loop in the e2e tests
// (op25b_e2e, radius_e2e, metrics_e2e, cli_e2e, faults_e2e ... on DPDK;
// xdp_e2e_generic and xdp_e2e_native on XDP).
//
// The sequence: start, the API answered while the loop runs, a SIGHUP that
// applies the edited file, a SIGHUP with a broken file that changes nothing,
// the metrics following, SIGTERM, then a summary taken after the backend
// stopped (its last events in it) with the same keys whatever the backend.
// A backend that fails to start: the error comes out, nothing is stopped
// that never started, the signal handlers are given back. The policy a start
// begins with: restored from the policy history, or the file when it changed.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "control/data_plane.h"
#include "control/observe/event_log.h"
#include "control/policy/policy.h"
#include "control/serve_loop.h"
#include "dataplane/event_ring.h"
#include "dataplane/worker_counters.h"
#include "tests/support/free_port.h"
#include "tests/support/lab_policy.h"
#include "tests/support/local_http.h"
#include "tests/support/plane_without_forwarding.h"

namespace sekisho {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds limit = 10s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!condition() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
    return condition();
}

bool handler_is_default(int sig) {
    struct sigaction now {};
    sigaction(sig, nullptr, &now);
    return now.sa_handler == SIG_DFL;
}

event_record block_event(uint64_t generation) {
    event_record e{};
    e.time_ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
    e.generation = generation;
    e.type = event_type::op25b_block;
    e.ip_version = 4;
    e.ingress = static_cast<uint8_t>(ingress::access);
    e.action = static_cast<uint8_t>(op25b_action::reset);
    e.src_port = 40000;
    e.dst_port = 25;
    inet_pton(AF_INET, test::dyn4, e.src);
    inet_pton(AF_INET, test::mx4, e.dst);
    return e;
}

// What the loop asked of the backend, in order.
class recording_backend final : public live_backend {
public:
    explicit recording_backend(const policy& pol) : plane_(pol, 3) {}

    data_plane& plane() override { return plane_; }
    std::array<std::string, 2> side_names() const override { return {"test-access", "test-core"}; }
    unsigned workers() const override { return 2; }
    counter_source scraper_counters() const override {
        return [this] { return plane_.all_counters(); };
    }
    void start() override {
        if (fail_start) throw std::runtime_error("the test's ports are gone");
        ++starts;
        started.store(true);
    }
    void drain_events() override {
        ++drains;
        if (stops == 0 && blocks_wanted.load() > 0) {
            blocks_wanted.fetch_sub(1);
            plane_.block_one(block_event(plane_.generation()));
        }
    }
    void refresh_counters() override { ++refreshes; }
    void add_to_snapshot(control_snapshot& c) override { c.flows = 7; }
    void stop() override {
        ++stops;
        stopped_after_start = starts == 1;
        plane_.block_one(block_event(plane_.generation()));   // the last event, arriving as forwarding stops
        plane_.flush();
    }
    void add_to_summary(json& report) const override { report["backend"] = "test"; }
    std::string stop_note() const override { return ", test backend stopped"; }

    test::plane_without_forwarding plane_;
    bool fail_start = false;
    std::atomic<bool> started{false};
    std::atomic<int> starts{0}, drains{0}, refreshes{0}, stops{0}, blocks_wanted{0};
    bool stopped_after_start = false;
};

class serve_loop_test : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/serve_loop_test.XXXXXX";
        dir = mkdtemp(tmpl);
        opt.policy_path = dir + "/policy.yaml";
        opt.state_dir = dir + "/state";
        opt.summary_path = dir + "/summary.json";
        opt.api.unix_path = dir + "/api.sock";
        write_policy("");
    }
    void TearDown() override { fs::remove_all(dir); }

    // The lab policy, events in the test's directory, aggregated over 10 s
    // (so that a summary taken before the flush would show them pending).
    void write_policy(const std::string& extra) {
        std::ofstream(opt.policy_path) << test::lab_policy_text << "events:\n  file: " << dir
                                       << "/events.jsonl\n  aggregate_window: 10s\n"
                                       << extra;
    }

    std::string dir;
    serve_options opt;
};

TEST_F(serve_loop_test, serves_reloads_on_sighup_and_summarises_after_the_backend_stopped) {
    const uint16_t metrics_port = test::free_port(SOCK_STREAM);
    opt.metrics_address = "127.0.0.1:" + std::to_string(metrics_port);
    const starting_policy start = read_starting_policy(opt);
    recording_backend backend(start.pol);
    backend.blocks_wanted = 3;
    auto served = std::async(std::launch::async, [&] { return serve(backend, opt, start, 0.25); });
    ASSERT_TRUE(wait_for([&] { return backend.started.load(); }));
    EXPECT_FALSE(handler_is_default(SIGHUP));

    // The API, served by the loop while it turns.
    const json status = json::parse(test::body_of(test::unix_get(opt.api.unix_path, "/v1/status")));
    EXPECT_EQ(status["backend"], "test");
    EXPECT_EQ(status["generation"], 1);
    EXPECT_EQ(status["workers"], 2);
    EXPECT_EQ(status["ports"]["access"], "test-access");
    EXPECT_TRUE(status["subscribers"].is_null()) << "no binding table, no identity";

    // SIGHUP: the edited file becomes generation 2, through the API's apply path (audited).
    write_policy("limits:\n  - {name: msgs, scope: address, measure: messages, max: 100, window: 1h}\n");
    std::raise(SIGHUP);
    ASSERT_TRUE(wait_for([&] { return backend.plane_.generation() == 2; }));
    EXPECT_TRUE(wait_for([&] { return backend.plane_.audits.load() == 1; }));

    // A broken file: refused, audited, generation 2 stays, the loop goes on.
    std::ofstream(opt.policy_path) << "version: 1\nop25b:\n  mode: block\n";
    std::raise(SIGHUP);
    ASSERT_TRUE(wait_for([&] { return backend.plane_.audits.load() == 2; }));
    EXPECT_EQ(backend.plane_.generation(), 2u);
    EXPECT_EQ(json::parse(test::body_of(test::unix_get(opt.api.unix_path, "/v1/status")))["generation"], 2);

    // The metrics follow every ~200 ms: generation, the new limit, and what the backend adds.
    std::string metrics;
    EXPECT_TRUE(wait_for([&] {
        metrics = test::tcp_get(metrics_port, "/metrics");
        return metrics.find("\nsekisho_policy_generation 2\n") != std::string::npos;
    })) << metrics;
    EXPECT_NE(metrics.find("sekisho_limit_hits_total{limit=\"msgs\"} 0"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("sekisho_table_entries{table=\"flows\"} 7"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("sekisho_policy_apply_duration_seconds_count 2"), std::string::npos)
        << "the first apply and the SIGHUP's: " << metrics;
    EXPECT_GE(backend.refreshes.load(), 1);
    ASSERT_TRUE(wait_for([&] { return backend.blocks_wanted.load() == 0; }));

    std::raise(SIGTERM);
    ASSERT_EQ(served.wait_for(10s), std::future_status::ready);
    EXPECT_EQ(served.get(), 0);
    EXPECT_EQ(backend.starts.load(), 1);
    EXPECT_EQ(backend.stops.load(), 1);
    EXPECT_TRUE(backend.stopped_after_start);
    EXPECT_GT(backend.drains.load(), 3);
    EXPECT_TRUE(handler_is_default(SIGHUP) && handler_is_default(SIGTERM) && handler_is_default(SIGINT));
    EXPECT_FALSE(fs::exists(opt.api.unix_path)) << "the API stopped with the loop";

    // The summary: taken after stop() flushed, the same event keys as DPDK live and replay.
    const json summary = json::parse(std::ifstream(opt.summary_path));
    EXPECT_EQ(summary["mode"], "live");
    EXPECT_EQ(summary["backend"], "test");
    EXPECT_EQ(summary["policy"], opt.policy_path);
    EXPECT_EQ(summary["generation"], 2);
    EXPECT_EQ(summary["blocked"], 4);
    EXPECT_FALSE(summary.contains("subscribers"));
    std::set<std::string> keys;
    for (const auto& [k, v] : summary["events"].items()) keys.insert(k);
    EXPECT_EQ(keys, (std::set<std::string>{"emitted", "ring_full", "written", "write_errors", "lines", "io_errors",
                                           "aggregated", "aggregation_overflow", "rotations", "reopened",
                                           "pending"}));
    EXPECT_EQ(summary["events"]["pending"], 0);
    EXPECT_EQ(summary["events"]["written"], 4 + 2) << "four blocks and two audit records, the last block included";
}

TEST_F(serve_loop_test, a_backend_that_cannot_start_is_an_error_and_nothing_is_left_behind) {
    const starting_policy start = read_starting_policy(opt);
    recording_backend backend(start.pol);
    backend.fail_start = true;
    EXPECT_THROW(
        {
            try {
                serve(backend, opt, start, 0);
            } catch (const std::runtime_error& e) {
                EXPECT_STREQ(e.what(), "the test's ports are gone");
                throw;
            }
        },
        std::runtime_error);
    EXPECT_EQ(backend.stops.load(), 0) << "stop() is for a backend that started";
    EXPECT_FALSE(fs::exists(opt.summary_path));
    EXPECT_FALSE(fs::exists(opt.api.unix_path));
    EXPECT_TRUE(handler_is_default(SIGHUP) && handler_is_default(SIGTERM) && handler_is_default(SIGINT));
}

TEST_F(serve_loop_test, a_policy_naming_a_missing_directory_is_refused_before_anything_starts) {
    std::ofstream(opt.policy_path) << test::lab_policy_text << "events:\n  file: " << dir << "/no/such/dir/e.jsonl\n";
    EXPECT_THROW(read_starting_policy(opt), policy_error);
    opt.events_path = dir + "/elsewhere.jsonl";   // --events replaces events.file: not checked
    EXPECT_NO_THROW(read_starting_policy(opt));
}

// The policy a start begins with: the generation in force when the last run
// stopped, unless the file changed meanwhile; a damaged history stops it.
TEST_F(serve_loop_test, a_start_restores_the_generation_in_force_unless_the_file_changed) {
    const starting_policy first = read_starting_policy(opt);
    EXPECT_EQ(first.generation, 1u);
    EXPECT_TRUE(first.note.empty()) << "a first start has nothing to say";
    ASSERT_NE(first.history->in_force(), nullptr);
    EXPECT_EQ(first.history->in_force()->origin.kind, "file");

    // What an API apply records, as generation 2.
    const std::string monitor = first.text + "op25b:\n  mode: monitor\n";
    policy_generation api;
    api.origin = {"api", "", "uid 0 (root) pid 7", 2, 1'800'000'000, 0};
    api.text = monitor;
    first.history->write_entry(api);
    first.history->settle(api, std::nullopt);

    const starting_policy again = read_starting_policy(opt);
    EXPECT_EQ(again.generation, 2u);
    EXPECT_EQ(again.text, monitor);
    EXPECT_EQ(again.pol.mode, op25b_mode::monitor);
    EXPECT_NE(again.note.find("generation 2 from API caller uid 0 (root) pid 7 restored"), std::string::npos)
        << again.note;

    // The file edited while down: applied as generation 3, said.
    write_policy("limits:\n  - {name: msgs, scope: address, measure: messages, max: 100, window: 1h}\n");
    const starting_policy edited = read_starting_policy(opt);
    EXPECT_EQ(edited.generation, 3u);
    EXPECT_EQ(edited.pol.mode, op25b_mode::enforce);
    EXPECT_EQ(edited.pol.limits.size(), 1u);
    EXPECT_NE(edited.note.find("changed while sekishod was down: applied as generation 3; generation 2 from API "
                               "caller uid 0 (root) pid 7 is no longer in force"),
              std::string::npos)
        << edited.note;
    EXPECT_EQ(edited.history->rollback_target()->origin.generation, 2u) << "rollback returns to the API's";
    EXPECT_EQ(read_starting_policy(opt).generation, 3u) << "unchanged since: restored";

    // A damaged entry: refused, naming it; nothing guessed.
    const std::string entry = opt.state_dir + "/policy/generation-3.json";
    fs::resize_file(entry, 10);
    try {
        read_starting_policy(opt);
        ADD_FAILURE() << "started over a damaged history";
    } catch (const policy_history_error& e) {
        EXPECT_NE(std::string(e.what()).find(entry), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace sekisho
