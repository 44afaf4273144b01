// Policy versions and fleet status (control/fleet/policy_sync.h) against a
// real PostgreSQL 15 started by with_fleet_stores.sh: the real serve loop
// with --fleet, the real control API on a Unix socket, the real policy
// history and the real metrics exporter; only the forwarding is missing
// (a data plane that applies generations and counts, as serve_loop_test's).
// The controller's side is what `sekishoctl fleet policy push` runs: the
// policy tables' SQL (fleet_sql) as role sekisho_controller.
//
// The sequence: the heartbeat lists the gateway; a version pushed is applied
// through the API's path (origin kind fleet, the fleet version in force); an
// invalid version is refused, reported, not retried, changes nothing; an
// older desired version never rolls the gateway back; PostgreSQL killed: the
// policy stays, the link is reported down; PostgreSQL back: the heartbeat
// resumes; sekishod restarted: the fleet generation is restored, neither the
// applied nor the refused version is applied again; a desired version that
// policy_versions does not hold is reported and changes nothing.
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
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "control/data_plane.h"
#include "control/fleet/pg_connection.h"
#include "control/fleet/policy_schema.h"
#include "control/fleet/policy_sync.h"
#include "control/observe/event_log.h"
#include "control/policy/policy.h"
#include "control/serve_loop.h"
#include "dataplane/worker_counters.h"
#include "tests/support/free_port.h"
#include "tests/support/plane_without_forwarding.h"
#include "tests/support/lab_policy.h"
#include "tests/support/local_http.h"

namespace sekisho {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds limit = 15s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!condition() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(20ms);
    return condition();
}

class plain_backend final : public live_backend {
public:
    explicit plain_backend(const policy& pol, uint64_t generation) : plane_(pol) { plane_.set_generation(generation); }
    data_plane& plane() override { return plane_; }
    std::array<std::string, 2> side_names() const override { return {"test-access", "test-core"}; }
    unsigned workers() const override { return 1; }
    counter_source scraper_counters() const override {
        return [this] { return plane_.all_counters(); };
    }
    void start() override { started.store(true); }
    void drain_events() override {}
    void refresh_counters() override {}
    void add_to_snapshot(control_snapshot&) override {}
    void stop() override {}
    void add_to_summary(json& report) const override { report["backend"] = "test"; }
    std::string stop_note() const override { return ""; }

    test::plane_without_forwarding plane_;
    std::atomic<bool> started{false};
};

class PolicySync : public ::testing::Test {
protected:
    void SetUp() override {
        if (env("SEKISHO_TEST_PG_CONNINFO").empty()) GTEST_SKIP() << "run through with_fleet_stores.sh";
        char tmpl[] = "/tmp/policy_sync_test.XXXXXX";
        dir = mkdtemp(tmpl);
        opt.policy_path = dir + "/policy.yaml";
        opt.state_dir = dir + "/state";
        opt.api.unix_path = dir + "/api.sock";
        opt.fleet_path = dir + "/fleet.yaml";
        metrics_port = test::free_port(SOCK_STREAM);
        opt.metrics_address = "127.0.0.1:" + std::to_string(metrics_port);
        std::ofstream(opt.policy_path) << policy_text("");
        std::ofstream(opt.fleet_path) << "gateway: sync-test-1\ngroup: sync\npostgres:\n  conninfo_file: "
                                      << env("SEKISHO_TEST_PG_CONNINFO") << "\nsync_interval: 100ms\n";
        controller = std::make_unique<pg_connection>(env("SEKISHO_TEST_PG_DIR") + "/controller.conninfo");
        controller->exec("BEGIN", "begin");
        controller->exec(fleet_sql::schema_lock, "lock");
        controller->exec(fleet_sql::create_policy_tables, "create the policy tables");
        controller->exec("COMMIT", "commit");
    }
    void TearDown() override {
        stop();
        if (!dir.empty()) fs::remove_all(dir);
    }

    std::string policy_text(const std::string& op25b) const {
        return std::string(test::lab_policy_text) + "events:\n  file: " + dir + "/events.jsonl\n" + op25b;
    }

    void start() {
        const starting_policy s = read_starting_policy(opt);
        backend = std::make_unique<plain_backend>(s.pol, s.generation);
        served = std::async(std::launch::async, [this, s] { return serve(*backend, opt, s, 0.1); });
        ASSERT_TRUE(wait_for([&] { return backend->started.load(); }));
    }
    void stop() {
        if (!served.valid()) return;
        std::raise(SIGTERM);
        served.get();
        backend.reset();
    }

    // As `sekishoctl fleet policy push`: a new version desired for the group.
    uint64_t push(const std::string& text) {
        pg_result r = controller->exec_params(
            "INSERT INTO policy_versions (grp, text, author) VALUES ('sync', $1, 'test') RETURNING version", {text},
            "push");
        const std::string v = PQgetvalue(r.get(), 0, 0);
        desire(std::stoull(v));
        return std::stoull(v);
    }
    void desire(uint64_t version) {
        controller->exec_params("INSERT INTO group_desired VALUES ('sync', $1) ON CONFLICT (grp) DO UPDATE SET "
                                "version = EXCLUDED.version",
                                {std::to_string(version)}, "desire");
    }
    // This gateway's row, or an empty object.
    json row() {
        try {
            if (!controller || !controller->ok()) controller = std::make_unique<pg_connection>(env("SEKISHO_TEST_PG_DIR") + "/controller.conninfo");
            pg_result r = controller->exec(
                "SELECT generation_in_force, fleet_version_in_force, health::text, last_error,"
                " extract(epoch FROM now() - last_seen)::float8, grp FROM gateways WHERE gateway = 'sync-test-1'",
                "row");
            if (PQntuples(r.get()) != 1) return json::object();
            return {{"generation", std::stoull(PQgetvalue(r.get(), 0, 0))},
                    {"fleet_version", std::stoull(PQgetvalue(r.get(), 0, 1))},
                    {"health", json::parse(PQgetvalue(r.get(), 0, 2))},
                    {"last_error", PQgetvalue(r.get(), 0, 3)},
                    {"lag", std::stod(PQgetvalue(r.get(), 0, 4))},
                    {"group", PQgetvalue(r.get(), 0, 5)}};
        } catch (const pg_error&) {
            controller.reset();
            return json::object();
        }
    }
    json status() { return json::parse(test::body_of(test::unix_get(opt.api.unix_path, "/v1/status")), nullptr, false); }
    std::string metrics() { return test::body_of(test::tcp_get(metrics_port, "/metrics")); }
    // The exporter's snapshot follows within a few control-thread turns.
    bool has_metric(const std::string& line) {
        return wait_for([&] { return metrics().find(line + "\n") != std::string::npos; });
    }
    void pg_ctl(const std::string& args) {
        const std::string cmd = "runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D " +
                                env("SEKISHO_TEST_PG_DIR") + "/pg -l " + env("SEKISHO_TEST_PG_DIR") +
                                "/pglog/postgres.log -w -t 30 " + args + " >/dev/null 2>&1";
        ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }

    std::string dir;
    serve_options opt;
    uint16_t metrics_port = 0;
    std::unique_ptr<pg_connection> controller;
    std::unique_ptr<plain_backend> backend;
    std::future<int> served;
};

TEST_F(PolicySync, AppliesNewerVersionsOnlyRefusesBadOnesOnceAndSurvivesTheStoreAndARestart) {
    start();
    // The heartbeat: the gateway is listed with its generation and no fleet version yet.
    ASSERT_TRUE(wait_for([&] { return row().value("generation", uint64_t{0}) == 1; })) << row();
    EXPECT_EQ(row()["group"], "sync");
    EXPECT_EQ(row()["fleet_version"], 0);
    EXPECT_TRUE(row()["health"].contains("malformed_dropped")) << row();
    EXPECT_TRUE(has_metric("sekisho_fleet_link_up{store=\"postgres\",concern=\"policy\"} 1")) << metrics();

    // A version pushed: applied through the API's path, recorded with its fleet origin.
    const uint64_t v1 = push(policy_text("op25b:\n  mode: monitor\n"));
    ASSERT_TRUE(wait_for([&] { return row().value("fleet_version", uint64_t{0}) == v1; })) << row();
    EXPECT_EQ(row()["generation"], 2);
    json in_force = status()["policy"]["in_force"];
    EXPECT_EQ(in_force["kind"], "fleet") << in_force;
    EXPECT_EQ(in_force["fleet_version"], v1);
    EXPECT_EQ(in_force["group"], "sync");
    EXPECT_EQ(status()["policy"]["op25b_mode"], "monitor");
    EXPECT_TRUE(has_metric("sekisho_fleet_policy_version " + std::to_string(v1))) << metrics();

    // An invalid version: refused, reported, nothing changes, not tried again.
    const uint64_t v2 = push("version: 1\nports: [not, a, map\n");
    ASSERT_TRUE(wait_for([&] { return row().value("health", json::object()).value("refused_version", uint64_t{0}) == v2; }))
        << row();
    EXPECT_NE(row()["last_error"].get<std::string>().find("fleet version " + std::to_string(v2) + " refused (422)"),
              std::string::npos)
        << row();
    EXPECT_EQ(row()["generation"], 2);
    EXPECT_EQ(row()["fleet_version"], v1);
    std::this_thread::sleep_for(1s);   // ten heartbeats
    EXPECT_EQ(row()["health"]["fleet_apply_failures"], 1) << row();
    EXPECT_TRUE(has_metric("sekisho_fleet_policy_apply_failures_total 1")) << metrics();

    // A store that comes back with an older desired version: no rollback.
    desire(v1);
    ASSERT_TRUE(wait_for([&] { return row().value("health", json::object()).value("desired_older", uint64_t{0}) == v1; }))
        << row();
    EXPECT_EQ(row()["generation"], 2);
    EXPECT_EQ(status()["generation"], 2);

    // PostgreSQL killed: the policy stays, the link is down; back: the heartbeat resumes.
    pg_ctl("-m immediate stop");
    ASSERT_TRUE(has_metric("sekisho_fleet_link_up{store=\"postgres\",concern=\"policy\"} 0")) << metrics();
    EXPECT_EQ(status()["generation"], 2);
    EXPECT_EQ(status()["policy"]["in_force"]["fleet_version"], v1);
    std::this_thread::sleep_for(1500ms);
    pg_ctl("start");
    ASSERT_TRUE(wait_for([&] {
        const json r = row();
        return r.contains("lag") && r["lag"].get<double>() < 0.5;
    })) << row();
    ASSERT_TRUE(has_metric("sekisho_fleet_link_up{store=\"postgres\",concern=\"policy\"} 1")) << metrics();

    // A restart with the refused version desired again: the fleet generation comes
    // back from the history; neither version is applied again.
    desire(v2);
    stop();
    start();
    ASSERT_TRUE(wait_for([&] { return row().value("lag", 99.0) < 0.5 && status().is_object(); }));
    std::this_thread::sleep_for(1s);
    EXPECT_EQ(status()["generation"], 2);
    EXPECT_EQ(status()["policy"]["in_force"]["kind"], "fleet");
    EXPECT_EQ(row()["fleet_version"], v1);
    EXPECT_EQ(row()["health"]["fleet_apply_failures"], 0) << row();   // counted since this start

    // A newer version still applies after all that.
    const uint64_t v3 = push(policy_text("op25b:\n  mode: enforce\n"));
    ASSERT_TRUE(wait_for([&] { return row().value("fleet_version", uint64_t{0}) == v3; })) << row();
    EXPECT_EQ(status()["generation"], 3);
    EXPECT_EQ(status()["policy"]["op25b_mode"], "enforce");
    EXPECT_EQ(row()["last_error"], "");

    // A desired version policy_versions does not hold (possible only without the
    // foreign key, e.g. tables restored by hand): said, nothing changes; found again: cleared.
    controller->exec("ALTER TABLE group_desired DROP CONSTRAINT group_desired_version_fkey", "drop the key");
    desire(v3 + 1000);
    ASSERT_TRUE(wait_for([&] {
        return row().value("last_error", std::string()).find("desires version " + std::to_string(v3 + 1000) +
                                                            ", which policy_versions does not hold") !=
               std::string::npos;
    })) << row();
    EXPECT_EQ(status()["generation"], 3);
    desire(v3);
    ASSERT_TRUE(wait_for([&] { return row().value("last_error", std::string("?")).empty(); })) << row();
    controller->exec("ALTER TABLE group_desired ADD CONSTRAINT group_desired_version_fkey FOREIGN KEY (version) "
                     "REFERENCES policy_versions (version)",
                     "restore the key");
}

// The gateways table's policy columns: added once, idempotent; a role that
// does not own the table (here the controller) finds them and alters nothing.
TEST_F(PolicySync, PolicyColumnsAreAddedOnceAndLeftAloneForOtherRoles) {
    pg_connection gateway(env("SEKISHO_TEST_PG_CONNINFO"));
    ensure_fleet_schema(gateway);
    ensure_policy_columns(gateway);
    ensure_policy_columns(gateway);
    pg_result n = gateway.exec(fleet_sql::count_gateway_policy_columns, "count");
    EXPECT_EQ(std::string(PQgetvalue(n.get(), 0, 0)), "4");
    EXPECT_NO_THROW(ensure_policy_columns(*controller));
    try {   // what the check spares it
        controller->exec("ALTER TABLE gateways ADD COLUMN IF NOT EXISTS health jsonb", "alter as the controller");
        ADD_FAILURE() << "the controller may alter the gateways table";
    } catch (const pg_error& e) {
        EXPECT_NE(std::string(e.what()).find("must be owner"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace sekisho
