// The binding shipper against a real PostgreSQL 15 (with_fleet_stores.sh)
// and a real binding history (SQLite, written as RADIUS does): every row
// becomes one row of `bindings`, a Stop after the row was shipped updates it,
// the same rows sent twice change nothing, PostgreSQL crashed mid-run
// (pg_ctl -m immediate) loses and duplicates nothing, a restart goes on from
// the cursor, a version 1 history is upgraded and shipped whole.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <unistd.h>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sys/wait.h>
#include <thread>

#include "control/fleet/binding_shipper.h"
#include "control/fleet/event_shipper.h"
#include "control/fleet/fleet_link.h"
#include "control/fleet/pg_connection.h"
#include "control/identity/binding_history.h"
#include "control/observe/metrics.h"
#include "tests/support/fleet_test_env.h"

namespace sekisho {
namespace {

namespace fs = std::filesystem;

using test::env;

using test::eventually;

// 2001:db8::HOST/128: a documentation address per host number, as many as the tests need.
ip_prefix v6(uint32_t host) {
    ip_prefix p;
    p.family = 6;
    p.length = 128;
    p.bytes[0] = 0x20;
    p.bytes[1] = 0x01;
    p.bytes[2] = 0x0d;
    p.bytes[3] = 0xb8;
    p.bytes[13] = static_cast<uint8_t>(host >> 16);
    p.bytes[14] = static_cast<uint8_t>(host >> 8);
    p.bytes[15] = static_cast<uint8_t>(host);
    return p;
}

binding_update radius(binding_kind kind, const std::string& session, const std::string& account, uint32_t host,
                      int64_t t) {
    binding_update u;
    u.kind = kind;
    u.account = account;
    u.session_id = session;
    u.ipv6_prefixes.push_back(v6(host));
    u.nas_address = "192.0.2.1";
    u.event_time = t;
    return u;
}

class BindingShipper : public ::testing::Test {
protected:
    void SetUp() override {
        if (env("SEKISHO_TEST_PG_CONNINFO").empty()) GTEST_SKIP() << "run through with_fleet_stores.sh";
        const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
        dir_ = ::testing::TempDir() + "/binding_shipper_" + name;
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        gateway_ = "gw-" + name;
    }
    void TearDown() override {
        if (!dir_.empty()) fs::remove_all(dir_);
    }

    binding_shipper_options options() const {
        binding_shipper_options o;
        o.gateway = gateway_;
        o.conninfo_file = env("SEKISHO_TEST_PG_CONNINFO");
        o.history_path = dir_ + "/history.db";
        o.cursor_path = dir_ + "/bindings.cursor";
        o.sync_interval_ns = 20'000'000;
        o.backoff_max_ns = 500'000'000;
        return o;
    }

    std::string text(const std::string& sql) {
        pg_connection pg(env("SEKISHO_TEST_PG_CONNINFO"));
        pg_result r = pg.exec(sql, "test query");
        return PQgetisnull(r.get(), 0, 0) ? std::string("NULL") : std::string(PQgetvalue(r.get(), 0, 0));
    }
    uint64_t number(const std::string& sql) { return std::strtoull(text(sql).c_str(), nullptr, 10); }
    uint64_t rows() { return number("SELECT count(*) FROM bindings WHERE gateway = '" + gateway_ + "'"); }
    uint64_t open_rows() {
        return number("SELECT count(*) FROM bindings WHERE gateway = '" + gateway_ + "' AND stop IS NULL");
    }
    // The history's own row count, by a connection of the test's.
    uint64_t history_rows(const std::string& where = "") {
        sqlite3* db = nullptr;
        sqlite3_open_v2(options().history_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
        sqlite3_stmt* st = nullptr;
        const std::string sql = "SELECT count(*) FROM sessions" + where;
        sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
        uint64_t n = sqlite3_step(st) == SQLITE_ROW ? static_cast<uint64_t>(sqlite3_column_int64(st, 0)) : 0;
        sqlite3_finalize(st);
        sqlite3_close_v2(db);
        return n;
    }

    int pg_ctl(const std::string& args) {
        const std::string d = env("SEKISHO_TEST_PG_DIR");
        const std::string cmd = "runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D " + d + "/pg -l " + d +
                                "/pglog/postgres.log -w -t 30 " + args + " >/dev/null 2>&1";
        return std::system(cmd.c_str());
    }

    std::string dir_, gateway_;
};

TEST_F(BindingShipper, EveryHistoryRowBecomesOneRowWithItsColumns) {
    const binding_shipper_options o = options();
    binding_history h(o.history_path);
    std::vector<binding_update> batch;
    for (uint32_t i = 0; i < 5000; ++i)
        batch.push_back(radius(binding_kind::start, "s" + std::to_string(i), "acct-" + std::to_string(i), i + 1,
                               1'800'000'000 + i));
    h.apply(batch);
    binding_shipper s(o);
    ASSERT_TRUE(eventually([&] { return s.state().shipped == 5000 && s.state().backlog_rows == 0; }))
        << s.status().dump();
    EXPECT_GE(s.state().batches, 3u);   // 2000 rows a batch
    EXPECT_EQ(s.state().upserted, 5000u);
    EXPECT_TRUE(s.state().link_up);
    EXPECT_EQ(rows(), 5000u);
    EXPECT_EQ(open_rows(), 5000u);
    EXPECT_EQ(text("SELECT account || ' ' || session_id || ' ' || nas || ' ' || host(prefix) || '/' || "
                   "masklen(prefix) || ' ' || extract(epoch FROM start)::bigint FROM bindings WHERE gateway = '" +
                   gateway_ + "' AND session_id = 's41'"),
              "acct-41 s41 192.0.2.1 2001:db8::2a/128 1800000041");
    // The containment the desk's queries use.
    EXPECT_EQ(number("SELECT count(*) FROM bindings WHERE gateway = '" + gateway_ + "' AND prefix >>= '2001:db8::2a'"),
              1u);
}

TEST_F(BindingShipper, AStopAfterTheRowWasShippedUpdatesIt) {
    const binding_shipper_options o = options();
    binding_history h(o.history_path);
    h.apply(radius(binding_kind::start, "s1", "alice", 7, 1'800'000'000));
    binding_shipper s(o);
    ASSERT_TRUE(eventually([&] { return rows() == 1 && s.state().shipped == 1; })) << s.status().dump();
    EXPECT_EQ(text("SELECT coalesce(stop::text, 'open') FROM bindings WHERE gateway = '" + gateway_ + "'"), "open");
    h.apply(radius(binding_kind::stop, "s1", "alice", 7, 1'800'000'600));
    s.wake();
    ASSERT_TRUE(eventually([&] {
        return text("SELECT coalesce(extract(epoch FROM stop)::bigint::text, 'open') || ' ' || "
                    "coalesce(closed_by, '-') FROM bindings WHERE gateway = '" + gateway_ + "'") == "1800000600 stop";
    })) << s.status().dump();
    EXPECT_EQ(rows(), 1u);
    // The same address to bob: a second row; alice's stays closed.
    h.apply(radius(binding_kind::start, "s2", "bob", 7, 1'800'001'000));
    s.wake();
    ASSERT_TRUE(eventually([&] { return rows() == 2; }));
    EXPECT_EQ(text("SELECT string_agg(account || ':' || coalesce(closed_by, 'open'), ',' ORDER BY start) FROM bindings "
                   "WHERE gateway = '" + gateway_ + "'"),
              "alice:stop,bob:open");
}

TEST_F(BindingShipper, TheSameRowsSentTwiceChangeNothing) {
    const binding_shipper_options o = options();
    binding_history h(o.history_path);
    h.apply(radius(binding_kind::start, "s1", "alice", 7, 1'800'000'000));
    h.apply(radius(binding_kind::stop, "s1", "alice", 7, 1'800'000'100));
    h.apply(radius(binding_kind::start, "s2", "bob", 8, 1'800'000'200));
    {
        binding_shipper s(o);
        ASSERT_TRUE(eventually([&] { return s.state().shipped == 2 && s.state().backlog_rows == 0; }))
            << s.status().dump();
        EXPECT_EQ(s.state().upserted, 2u);
    }
    const std::string before = text("SELECT string_agg(history_id || account || coalesce(stop::text, '-') || "
                                    "change_seq, ',' ORDER BY history_id) FROM bindings WHERE gateway = '" + gateway_ + "'");
    // A crash after the COMMIT, before the cursor was saved: everything again.
    fs::remove(o.cursor_path);
    {
        binding_shipper s(o);
        ASSERT_TRUE(eventually([&] { return s.state().shipped == 2 && s.state().backlog_rows == 0; }))
            << s.status().dump();
        EXPECT_EQ(s.state().upserted, 0u);   // shipped again, changed nothing
    }
    EXPECT_EQ(rows(), 2u);
    EXPECT_EQ(text("SELECT string_agg(history_id || account || coalesce(stop::text, '-') || change_seq, ',' ORDER BY "
                   "history_id) FROM bindings WHERE gateway = '" + gateway_ + "'"),
              before);
    // An older state sent after a newer one (a cursor older still) does not roll the row back.
    {
        pg_connection pg(env("SEKISHO_TEST_PG_CONNINFO"));
        pg.exec_params("UPDATE bindings SET change_seq = change_seq + 1000 WHERE gateway = $1", {gateway_}, "test");
    }
    fs::remove(o.cursor_path);
    binding_shipper s(o);
    ASSERT_TRUE(eventually([&] { return s.state().shipped == 2; }));
    EXPECT_EQ(s.state().upserted, 0u);
}

TEST_F(BindingShipper, ARestartGoesOnFromTheCursor) {
    const binding_shipper_options o = options();
    binding_history h(o.history_path);
    for (uint32_t i = 0; i < 10; ++i) h.apply(radius(binding_kind::start, "s" + std::to_string(i), "a", i + 1, 1'800'000'000));
    uint64_t cursor = 0;
    {
        binding_shipper s(o);
        ASSERT_TRUE(eventually([&] { return s.state().shipped == 10; })) << s.status().dump();
        cursor = s.state().cursor;
    }
    EXPECT_GE(cursor, 10u);
    std::ifstream in(o.cursor_path);
    uint64_t saved = 0;
    in >> saved;
    EXPECT_EQ(saved, cursor);
    for (uint32_t i = 10; i < 15; ++i) h.apply(radius(binding_kind::start, "s" + std::to_string(i), "a", i + 1, 1'800'000'000));
    h.apply(radius(binding_kind::stop, "s0", "a", 1, 1'800'000'050));
    binding_shipper s(o);
    ASSERT_TRUE(eventually([&] { return s.state().backlog_rows == 0 && s.state().shipped == 6; })) << s.status().dump();
    EXPECT_EQ(s.state().upserted, 6u);   // five new rows and the stop: nothing before the cursor again
    EXPECT_EQ(rows(), 15u);
    EXPECT_EQ(open_rows(), 14u);
}

TEST_F(BindingShipper, PostgresCrashedMidRunLosesAndDuplicatesNothing) {
    const binding_shipper_options o = options();
    std::atomic<uint32_t> written{0};
    std::atomic<bool> writing{true};
    binding_history h(o.history_path);
    std::thread writer([&] {
        // Starts, and every third session stopped again: inserts and updates.
        for (uint32_t i = 0; writing; ++i) {
            h.apply(radius(binding_kind::start, "s" + std::to_string(i), "acct-" + std::to_string(i % 50), i + 1,
                           1'800'000'000 + i));
            if (i % 3 == 2)
                h.apply(radius(binding_kind::stop, "s" + std::to_string(i - 1), "", i, 1'800'000'000 + i));
            ++written;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    });
    {
        binding_shipper s(o);
        ASSERT_TRUE(eventually([&] { return s.state().shipped > 300; })) << s.status().dump();
        ASSERT_EQ(pg_ctl("-m immediate stop"), 0);
        ASSERT_TRUE(eventually([&] { return !s.state().link_up; })) << s.status().dump();
        const uint64_t shipped_while_down = s.state().shipped;
        std::this_thread::sleep_for(std::chrono::milliseconds(700));
        EXPECT_EQ(s.state().shipped, shipped_while_down);
        EXPECT_TRUE(eventually([&] { return s.state().backlog_rows > 0; })) << s.status().dump();
        ASSERT_EQ(pg_ctl("start"), 0);
        ASSERT_TRUE(eventually([&] { return s.state().link_up; })) << s.status().dump();
        writing = false;
        writer.join();
        s.wake();
        ASSERT_TRUE(eventually([&] { return s.state().backlog_rows == 0 && s.state().cursor > 0; }))
            << s.status().dump();
        EXPECT_GE(s.state().reconnects, 2u);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        EXPECT_EQ(s.state().backlog_rows, 0u);
    }
    if (writer.joinable()) {
        writing = false;
        writer.join();
    }
    // Every history row once, in its last state.
    EXPECT_EQ(rows(), history_rows());
    EXPECT_EQ(rows(), written.load());
    EXPECT_EQ(open_rows(), history_rows(" WHERE stop_time IS NULL"));
    EXPECT_EQ(number("SELECT count(DISTINCT history_id) FROM bindings WHERE gateway = '" + gateway_ + "'"), rows());
}

TEST_F(BindingShipper, AVersionOneHistoryIsUpgradedAndShippedWhole) {
    const binding_shipper_options o = options();
    {
        binding_history h(o.history_path);
        h.apply(radius(binding_kind::start, "s1", "alice", 7, 1'800'000'000));
        h.apply(radius(binding_kind::start, "s2", "bob", 8, 1'800'000'000));
    }
    // Back to what a version 1 history was: no change_seq, no counter.
    {
        sqlite3* db = nullptr;
        ASSERT_EQ(sqlite3_open(o.history_path.c_str(), &db), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(db,
                               "DROP INDEX sessions_by_change; DROP TABLE history_changes;"
                               "ALTER TABLE sessions DROP COLUMN change_seq; PRAGMA user_version = 1;",
                               nullptr, nullptr, nullptr),
                  SQLITE_OK)
            << sqlite3_errmsg(db);
        sqlite3_close(db);
    }
    binding_history h(o.history_path);   // opened for writing: upgraded
    h.apply(radius(binding_kind::stop, "s1", "alice", 7, 1'800'000'100));
    binding_shipper s(o);
    ASSERT_TRUE(eventually([&] { return rows() == 2 && s.state().backlog_rows == 0; })) << s.status().dump();
    EXPECT_EQ(open_rows(), 1u);
    EXPECT_EQ(text("SELECT account FROM bindings WHERE gateway = '" + gateway_ + "' AND stop IS NULL"), "bob");
}

TEST_F(BindingShipper, AHistoryNotThereYetIsWaitedFor) {
    const binding_shipper_options o = options();
    binding_shipper s(o);
    ASSERT_TRUE(eventually([&] { return !s.state().last_error.empty(); }));
    EXPECT_NE(s.state().last_error.find(o.history_path), std::string::npos) << s.state().last_error;
    const auto lines = s.take_log_lines();
    ASSERT_FALSE(lines.empty());
    EXPECT_NE(lines[0].find(o.history_path), std::string::npos) << lines[0];
    binding_history h(o.history_path);
    h.apply(radius(binding_kind::start, "s1", "alice", 7, 1'800'000'000));
    ASSERT_TRUE(eventually([&] { return rows() == 1; })) << s.status().dump();
}

TEST_F(BindingShipper, FleetLinkShowsTheShipperInMetricsAndStatus) {
    const binding_shipper_options o = options();
    {
        binding_history h(o.history_path);
        h.apply(radius(binding_kind::start, "s1", "alice", 7, 1'800'000'000));
    }
    fleet_config fc;
    fc.path = dir_ + "/fleet.yaml";
    fc.gateway = gateway_;
    fc.postgres_conninfo_file = o.conninfo_file;
    fc.sync_interval_ns = 20'000'000;
    fleet_context ctx;
    ctx.state_dir = dir_;
    ctx.history_path = o.history_path;
    std::vector<std::string> logged;
    ctx.log = [&logged](const std::string& l) { logged.push_back(l); };
    fleet_link link(fc, ctx);
    ASSERT_TRUE(eventually([&] { return link.status()["bindings"]["shipped"] == 1; })) << link.status().dump();
    link.poll();
    EXPECT_NE(std::find(logged.begin(), logged.end(), "fleet: bindings: PostgreSQL link up"), logged.end());
    EXPECT_TRUE(fs::exists(dir_ + "/fleet/bindings.cursor"));
    control_snapshot snap;
    link.add_to_snapshot(snap);
    const std::string text = render_metrics({}, snap, apply_durations{});
    EXPECT_NE(text.find(R"(sekisho_fleet_link_up{store="postgres",concern="bindings"} 1)"), std::string::npos) << text;
    EXPECT_NE(text.find("sekisho_fleet_bindings_shipped_total 1"), std::string::npos) << text;
    EXPECT_NE(text.find("sekisho_fleet_bindings_backlog_rows 0"), std::string::npos) << text;
    EXPECT_NE(text.find(R"(sekisho_fleet_last_sync_timestamp_seconds{store="postgres",concern="bindings"} )"),
              std::string::npos);
}

// The desk's queries over rows written here (no gateway): the attribution
// rules one by one. sekishoctl is the real binary ($SEKISHOCTL, else next to
// this test in the build tree).
class FleetDeskQueries : public BindingShipper {
protected:
    static constexpr int64_t base = 1'800'000'000;   // 2027-01-15T08:00:00Z: no other test writes events then

    std::string ctl() const {
        if (!env("SEKISHOCTL").empty()) return env("SEKISHOCTL");
        char self[4096] = {};
        const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
        return fs::path(std::string(self, n > 0 ? static_cast<size_t>(n) : 0)).parent_path().parent_path() /
               "cmd/sekishoctl/sekishoctl";
    }
    // Runs sekishoctl --fleet with ARGS; its standard output and exit code.
    std::pair<std::string, int> run(const std::string& args) const {
        return test::run_command(ctl() + " --fleet " + env("SEKISHO_TEST_PG_CONNINFO") + " " + args);
    }
    void binding(const std::string& gw, int64_t id, const std::string& prefix, const std::string& account,
                 int64_t start, std::optional<int64_t> stop) {
        pg_connection pg(env("SEKISHO_TEST_PG_CONNINFO"));
        pg.exec_params("INSERT INTO bindings (gateway, history_id, prefix, account, session_id, nas, nas_identifier, "
                       "start, stop, closed_by, change_seq) VALUES ($1, $2, $3, $4, 's', 'nas', '', to_timestamp($5), "
                       "to_timestamp(nullif($6, '')::bigint), CASE WHEN $6 = '' THEN NULL ELSE 'stop' END, 1)",
                       {gw, std::to_string(id), prefix, account, std::to_string(base + start),
                        stop ? std::to_string(base + *stop) : ""},
                       "insert a binding");
    }
    void event(const std::string& gw, int64_t offset, const std::string& type, const std::string& address,
               int64_t at, const std::string& stamped = "", const std::string& extra = "") {
        pg_connection pg(env("SEKISHO_TEST_PG_CONNINFO"));
        const std::string line = R"({"type":")" + type + R"(","src":")" + address + R"(","time_ns":)" +
                                 std::to_string(base + at) + "000000000" + extra + "}";
        pg.exec_params("INSERT INTO events (gateway, file_id, line_offset, time, type, address, account, line) VALUES "
                       "($1, 1, $2, to_timestamp($3), $4, $5, nullif($6, ''), $7::jsonb)",
                       {gw, std::to_string(offset), std::to_string(base + at), type, address, stamped, line},
                       "insert an event");
    }
    void SetUp() override {
        BindingShipper::SetUp();
        if (IsSkipped()) return;
        pg_connection pg(env("SEKISHO_TEST_PG_CONNINFO"));
        pg.exec("SET client_min_messages = warning", "quiet");
        ensure_binding_tables(pg);
        ensure_event_tables(pg);
        ensure_event_partition(pg, base);
        const std::string x = gateway_ + "-x", y = gateway_ + "-y";
        // 198.51.100.91 on x: alice until 2000, bob from 2000 (a handover in one second); on y (the same
        // private address behind another edge) dave from 1000. A delegated IPv6 /56 to carol on x.
        binding(x, 1, "198.51.100.91/32", "alice", 1000, 2000);
        binding(x, 2, "198.51.100.91/32", "bob", 2000, std::nullopt);
        binding(x, 3, "2001:db8:5::/56", "carol", 1000, std::nullopt);
        binding(y, 1, "198.51.100.91/32", "dave", 1000, std::nullopt);
        event(x, 0, "op25b_block", "198.51.100.91", 500);                 // nobody held it
        event(x, 1, "op25b_block", "198.51.100.91", 1500);                // alice
        event(x, 2, "op25b_block", "198.51.100.91", 2000);                // the handover's second: bob (the newer)
        event(x, 3, "limit_exceeded", "198.51.100.91", 2500, "", R"(,"count":3)");   // bob, three
        event(x, 4, "mail_session", "198.51.100.91", 2600, "", R"(,"messages":4)");  // bob's messages, no offence
        event(x, 5, "op25b_block", "2001:db8:5:0:1::2", 1500);       // carol's /56
        event(x, 6, "op25b_block", "198.51.100.77", 1500, "static-acct"); // no history row: the stamped account
        event(x, 7, "api_change", "198.51.100.91", 1500);                 // nobody's event
        event(y, 0, "op25b_block", "198.51.100.91", 1500);                // dave, on y
    }
};

TEST_F(FleetDeskQueries, ReportAttributesEachEventToItsHolderOnItsGatewayAtItsSecond) {
    const auto [out, rc] = run("--json report --since " + std::to_string(base) + " --until " + std::to_string(base + 3000));
    ASSERT_EQ(rc, 0) << out;
    const nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << out;
    std::set<std::string> got;
    for (const auto& s : j["sources"])
        if (s["gateway"].get<std::string>().rfind(gateway_, 0) == 0)
            got.insert(s["gateway"].get<std::string>().substr(gateway_.size()) + " " +
                       s["source_address"].get<std::string>() + " " +
                       (s["account"].is_null() ? std::string("-") : s["account"].get<std::string>()) + " " +
                       std::to_string(s["events"].get<uint64_t>()) + " " + std::to_string(s["messages"].get<uint64_t>()) +
                       " " + std::to_string(s["first_seen"].get<int64_t>() - base) + ".." +
                       std::to_string(s["last_seen"].get<int64_t>() - base));
    const std::set<std::string> want = {
        "-x 198.51.100.91 - 1 0 500..500",           "-x 198.51.100.91 alice 1 0 1500..1500",
        "-x 198.51.100.91 bob 4 4 2000..2500",       "-x 2001:db8:5:0:1::2 carol 1 0 1500..1500",
        "-x 198.51.100.77 static-acct 1 0 1500..1500", "-y 198.51.100.91 dave 1 0 1500..1500"};
    EXPECT_EQ(got, want) << out;
    // CSV: the gateway's own columns, then the gateway.
    const auto [csv, rc2] = run("report --since " + std::to_string(base) + " --until " + std::to_string(base + 3000));
    ASSERT_EQ(rc2, 0) << csv;
    EXPECT_EQ(csv.substr(0, csv.find('\n')),
              "source_address,account,events,op25b_blocks,limit_hits,suspended_refusals,messages,first_seen,last_seen,"
              "first_seen_utc,last_seen_utc,gateway");
    EXPECT_NE(csv.find("198.51.100.91,bob,4,1,3,0,4," + std::to_string(base + 2000) + "," + std::to_string(base + 2500) +
                       ",2027-01-15T08:33:20Z,2027-01-15T08:41:40Z," + gateway_ + "-x\n"),
              std::string::npos)
        << csv;
    // --until before the handover: bob's events are out of the period.
    const auto [early, rc3] = run("--json report --since " + std::to_string(base) + " --until " + std::to_string(base + 1999));
    ASSERT_EQ(rc3, 0);
    EXPECT_EQ(early.find("\"bob\""), std::string::npos) << early;
}

TEST_F(FleetDeskQueries, WhoisNamesEveryGatewaysHolderAtTheSecond) {
    auto holders = [&](const std::string& address, int64_t at) {
        const auto [out, rc] = run("--json whois " + address + " --at " + std::to_string(base + at));
        std::string h = std::to_string(rc);
        const nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
        if (j.is_object())
            for (const auto& x : j["held_by"])
                if (x["gateway"].get<std::string>().rfind(gateway_, 0) == 0)
                    h += " " + x["account"].get<std::string>() + x["gateway"].get<std::string>().substr(gateway_.size());
        return h;
    };
    EXPECT_EQ(holders("198.51.100.91", 1500), "0 alice-x dave-y");
    EXPECT_EQ(holders("198.51.100.91", 2000), "0 alice-x dave-y bob-x");   // both ends included (by start), as the gateway's whois
    EXPECT_EQ(holders("198.51.100.91", 500), "3");
    EXPECT_EQ(holders("2001:db8:5:0:1::2", 1500), "0 carol-x");
    EXPECT_EQ(holders("2001:db8:5::/64", 1500), "0 carol-x");         // a prefix inside the /56
    EXPECT_EQ(holders("2001:db8:6::1", 1500), "3");
    const auto [text, rc] = run("whois 198.51.100.91 --at " + std::to_string(base + 1500));
    EXPECT_EQ(rc, 0);
    EXPECT_NE(text.find("198.51.100.91/32 held by alice on gateway " + gateway_ + "-x (session s, NAS nas) from "
                        "2027-01-15T08:16:40Z (1800001000) to 2027-01-15T08:33:20Z (1800002000) (stop)"),
              std::string::npos)
        << text;
    const auto [bad, rc2] = run("whois 198.51.100.91 --at yesterday");
    EXPECT_EQ(rc2, 2) << bad;
    EXPECT_NE(bad.find("--at 'yesterday'"), std::string::npos) << bad;
}

// top across the fleet, over events the real event shipper shipped from two
// gateways' logs: an account's events on both gateways are one row, summed
// (mallory: 3 on a, 2 on c, ranks above bob's 4 on a, which each gateway's
// own top would not show); nobody's events are one row per gateway and
// address; the log shipped twice changes nothing; a PostgreSQL that is down
// is an error, not an empty ranking.
TEST_F(FleetDeskQueries, TopSumsAnAccountOnceOverEveryGateway) {
    const int64_t t0 = base + 10'000'000;   // 2027-05-11: an hour of its own
    const std::string a = gateway_ + "-a", c = gateway_ + "-c";
    binding(a, 11, "198.51.100.21/32", "mallory", t0 - base - 60, std::nullopt);   // a's history: mallory
    auto line = [&](const std::string& type, const std::string& src, int64_t at, const std::string& more) {
        return R"({"type":")" + type + R"(","src":")" + src + R"(","time_ns":)" + std::to_string(t0 + at) +
               "000000000" + more + "}\n";
    };
    const std::string log_a = line("op25b_block", "198.51.100.21", -10, R"(,"count":100)") +   // before the window
                              line("op25b_block", "198.51.100.21", 100, R"(,"count":3)") +     // mallory by the history
                              line("op25b_block", "198.51.100.22", 200, R"(,"account":"bob","count":4)") +
                              line("op25b_block", "198.51.100.23", 300, "") +                   // nobody
                              line("content_verdict", "198.51.100.21", 400, R"(,"score":7)") +
                              line("limit_exceeded", "198.51.100.22", 500, R"(,"account":"bob","count":2)") +
                              line("mail_session", "198.51.100.22", 600, R"(,"account":"bob","messages":2)") +
                              line("op25b_block", "198.51.100.22", 3601, R"(,"account":"bob","count":50)");   // after
    const std::string log_c = line("op25b_block", "203.0.113.5", 100, R"(,"account":"mallory","count":2)") +
                              line("op25b_block", "198.51.100.23", 300, "") +   // the same address, another edge
                              line("content_verdict", "203.0.113.5", 400, R"(,"account":"mallory","score":5,"count":2)") +
                              line("content_verdict", "203.0.113.5", 410, R"(,"account":"mallory","score":-9)") +
                              line("mail_session", "203.0.113.5", 600, R"(,"account":"mallory","messages":6)");
    auto ship = [&](const std::string& gw, const std::string& log, const std::string& name) {
        event_shipper_options o;
        o.gateway = gw;
        o.conninfo_file = env("SEKISHO_TEST_PG_CONNINFO");
        o.events_path = dir_ + "/" + name + ".jsonl";
        o.cursor_path = dir_ + "/" + name + ".cursor";
        o.sync_interval_ns = 20'000'000;
        std::ofstream(o.events_path, std::ios::app) << log;
        std::ifstream in(o.events_path);
        const auto lines = static_cast<uint64_t>(std::count(std::istreambuf_iterator<char>(in), {}, '\n'));
        event_shipper s(o);   // the whole file when there is no cursor
        ASSERT_TRUE(eventually([&] { return s.state().shipped == lines && s.state().batches > 0; }))
            << s.status().dump();
    };
    ship(a, log_a, "a");
    ship(c, log_c, "c");
    const std::string window = " --window 1h --until " + std::to_string(t0 + 3600);
    auto ranking = [&](const std::string& by) {
        const auto [out, rc] = run("--json top --by " + by + window);
        std::string got = "rc=" + std::to_string(rc);
        const nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
        if (!j.is_object()) return got + " " + out;
        for (const auto& r : j["top"]) {
            got += " " + (r["account"].is_null() ? std::string("-") : r["account"].get<std::string>()) + ":" +
                   std::to_string(r["count"].get<uint64_t>()) + "@";
            for (const auto& g : r["gateways"]) got += g.get<std::string>().substr(gateway_.size());
            for (const auto& x : r["subscribers"]) got += "," + x.get<std::string>();
        }
        return got;
    };
    const std::string blocked = "rc=0 mallory:5@-a-c,198.51.100.21,203.0.113.5 bob:4@-a,198.51.100.22 "
                                "-:1@-a,198.51.100.23 -:1@-c,198.51.100.23";
    EXPECT_EQ(ranking("op25b_block"), blocked);
    EXPECT_EQ(ranking("limit_exceeded"), "rc=0 bob:2@-a,198.51.100.22");
    EXPECT_EQ(ranking("score"), "rc=0 mallory:17@-a-c,198.51.100.21,203.0.113.5");   // 7 + 5*2, -9 counts 0
    EXPECT_EQ(ranking("messages"), "rc=0 mallory:6@-c,203.0.113.5 bob:2@-a,198.51.100.22");
    EXPECT_EQ(ranking("events"),
              "rc=0 mallory:9@-a-c,198.51.100.21,203.0.113.5 bob:6@-a,198.51.100.22 -:1@-a,198.51.100.23 "
              "-:1@-c,198.51.100.23");
    // The human table: the local top's columns, one row per account, its gateways.
    const auto [text, rc] = run("top --by op25b_block" + window);
    EXPECT_EQ(rc, 0);
    EXPECT_EQ(text.substr(0, text.find('\n')).find("ACCOUNT"), 0u) << text;
    EXPECT_NE(text.find("198.51.100.21,203.0.113.5"), std::string::npos) << text;
    EXPECT_NE(text.find(a + "," + c), std::string::npos) << text;
    // The replay: a's log shipped again from no cursor inserts nothing; the ranking stays.
    fs::remove(dir_ + "/a.cursor");
    ship(a, "", "a");
    EXPECT_EQ(number("SELECT count(*) FROM events WHERE gateway = '" + a + "'"), 8u);
    EXPECT_EQ(ranking("op25b_block"), blocked);
    // Bad input names the option and the value.
    const auto [bad_by, rc2] = run("top --by blocked" + window);
    EXPECT_EQ(rc2, 2);
    EXPECT_NE(bad_by.find("--by 'blocked'"), std::string::npos) << bad_by;
    const auto [bad_window, rc3] = run("top --window 0s");
    EXPECT_EQ(rc3, 2);
    EXPECT_NE(bad_window.find("--window '0s'"), std::string::npos) << bad_window;
    // PostgreSQL killed: exit 1 and the reason, never an empty ranking; back: the same answer.
    ASSERT_EQ(pg_ctl("-m immediate stop"), 0);
    const auto [down, rc4] = run("--json top --by op25b_block" + window);
    EXPECT_EQ(rc4, 1) << down;
    EXPECT_NE(down.find("cannot reach the fleet's PostgreSQL"), std::string::npos) << down;
    ASSERT_EQ(pg_ctl("start"), 0);
    EXPECT_EQ(ranking("op25b_block"), blocked);
}

// whois, report and top from the ISP's own FreeRADIUS radacct table
// (--bindings-source radacct): the real schema Debian's freeradius-config
// ships, rows written by the statements of its queries.conf (Start, Interim,
// Stop; a session still open; one whose Stop was lost, superseded by the
// next session of its address; a Start sent again after the Stop).
TEST_F(FleetDeskQueries, RadacctAnswersWhoisReportAndTop) {
    const std::string schema = "/etc/freeradius/3.0/mods-config/sql/main/postgresql/schema.sql";
    std::ifstream in(schema);
    ASSERT_TRUE(in) << schema << " missing: install freeradius-config (scripts/setup.sh)";
    pg_connection pg(env("SEKISHO_TEST_PG_CONNINFO"));
    pg.exec("SET client_min_messages = warning", "quiet");
    if (text("SELECT to_regclass('radacct') IS NULL") == "t")
        pg.exec(std::string(std::istreambuf_iterator<char>(in), {}), "FreeRADIUS's schema.sql");
    const int64_t t0 = base + 20'000'000;
    auto at = [&](int64_t s) { return std::to_string(t0 + s); };
    // queries.conf's accounting start, interim-update and stop statements.
    auto start = [&](const std::string& unique, const std::string& user, const std::string& ip,
                     const std::string& delegated, int64_t s) {
        pg.exec_params(
            "INSERT INTO radacct (AcctSessionId, AcctUniqueId, UserName, Realm, NASIPAddress, NASPortId, NASPortType,"
            " AcctStartTime, AcctUpdateTime, AcctStopTime, AcctSessionTime, AcctAuthentic, ConnectInfo_start,"
            " ConnectInfo_Stop, AcctInputOctets, AcctOutputOctets, CalledStationId, CallingStationId,"
            " AcctTerminateCause, ServiceType, FramedProtocol, FramedIpAddress, FramedIpv6Address, FramedIpv6Prefix,"
            " FramedInterfaceId, DelegatedIpv6Prefix) VALUES ($1, $2, $3, NULL, '192.0.2.1', NULL, 'Virtual',"
            " TO_TIMESTAMP($4), TO_TIMESTAMP($4), NULL, 0, 'RADIUS', '', NULL, 0, 0, '', '', NULL, 'Framed-User',"
            " 'PPP', NULLIF($5, '')::inet, NULL, NULL, NULL, NULLIF($6, '')::inet)"
            " ON CONFLICT (AcctUniqueId) DO UPDATE SET AcctStartTime = TO_TIMESTAMP($4),"
            " AcctUpdateTime = TO_TIMESTAMP($4), ConnectInfo_start = ''"
            " WHERE radacct.AcctUniqueId = $2 AND radacct.AcctStopTime IS NULL",
            {"sess-" + unique, unique, user, at(s), ip, delegated}, "accounting start");
    };
    auto interim = [&](const std::string& unique, int64_t s) {
        pg.exec_params("UPDATE radacct SET AcctInterval = ($2::bigint - EXTRACT(EPOCH FROM (COALESCE(AcctUpdateTime,"
                       " AcctStartTime)))), AcctUpdateTime = TO_TIMESTAMP($2) WHERE AcctUniqueId = $1"
                       " AND AcctStopTime IS NULL",
                       {unique, at(s)}, "accounting interim-update");
    };
    auto stop = [&](const std::string& unique, int64_t s, const std::string& cause) {
        pg.exec_params("UPDATE radacct SET AcctStopTime = TO_TIMESTAMP($2), AcctUpdateTime = TO_TIMESTAMP($2),"
                       " AcctSessionTime = ($2::bigint - EXTRACT(EPOCH FROM(AcctStartTime))),"
                       " AcctTerminateCause = $3 WHERE AcctUniqueId = $1 AND AcctStopTime IS NULL",
                       {unique, at(s), cause}, "accounting stop");
    };
    const std::string u = gateway_;   // unique ids of this run
    start(u + "-alice", "alice", "192.0.2.50", "2001:db8:50::/56", 0);
    interim(u + "-alice", 600);
    stop(u + "-alice", 1000, "User-Request");
    start(u + "-alice", "alice", "192.0.2.50", "2001:db8:50::/56", 0);   // the Start again: changes nothing
    start(u + "-bob", "bob", "192.0.2.50", "", 1000);                     // the same second: a handover
    interim(u + "-bob", 1600);                                             // open: no Stop yet
    start(u + "-carol", "carol", "192.0.2.60", "", 0);
    interim(u + "-carol", 300);                                            // her Stop is lost
    start(u + "-dave", "dave", "192.0.2.60", "", 2000);                    // the address's next session

    auto holders = [&](const std::string& address, int64_t s, const std::string& source) {
        const auto [out, rc] = run("--json whois " + address + " --at " + at(s) + source);
        std::string h = std::to_string(rc);
        const nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
        if (!j.is_object()) return h + " " + out;
        for (const auto& b : j["bindings"])
            h += " " + b["account"].get<std::string>() + "(" + b["stop_cause"].get<std::string>() + ")";
        return h;
    };
    const std::string radacct = " --bindings-source radacct";
    EXPECT_EQ(holders("192.0.2.50", 500, radacct), "0 alice(User-Request)");
    EXPECT_EQ(holders("192.0.2.50", 1000, radacct), "0 alice(User-Request) bob()");   // both ends included
    EXPECT_EQ(holders("192.0.2.50", 90000, radacct), "0 bob()");
    EXPECT_EQ(holders("2001:db8:50:1::9", 500, radacct), "0 alice(User-Request)");   // in her delegated /56
    EXPECT_EQ(holders("2001:db8:50:1::9", 1500, radacct), "3");
    EXPECT_EQ(holders("192.0.2.60", 1500, radacct), "0 carol(superseded)");            // held until the next Start
    EXPECT_EQ(holders("192.0.2.60", 2000, radacct), "0 carol(superseded) dave()");
    EXPECT_EQ(holders("192.0.2.60", 2500, radacct), "0 dave()");
    EXPECT_EQ(holders("192.0.2.50", 500, ""), "3");   // the gateways' bindings know nothing of it
    // JSON: no gateway, the session's last interim.
    const auto [j1, rc1] = run("--json whois 192.0.2.60 --at " + at(1500) + radacct + " --radacct-table public.radacct");
    ASSERT_EQ(rc1, 0) << j1;
    const nlohmann::json carol = nlohmann::json::parse(j1, nullptr, false);
    ASSERT_TRUE(carol.is_object()) << j1;
    EXPECT_TRUE(carol["bindings"][0]["gateway"].is_null()) << j1;
    EXPECT_EQ(carol["bindings"][0]["last_update"], t0 + 300) << j1;
    EXPECT_EQ(carol["bindings"][0]["stop"], t0 + 2000) << j1;
    EXPECT_EQ(carol["query"]["source"], "radacct") << j1;

    // report and top attribute each event to the radacct holder at its second, whatever its gateway.
    const std::string x = gateway_ + "-rx", y = gateway_ + "-ry";
    ensure_event_partition(pg, t0);
    event(x, 100, "op25b_block", "192.0.2.50", t0 - base + 500);    // alice
    event(y, 100, "op25b_block", "192.0.2.50", t0 - base + 1500);   // bob, seen behind another edge
    event(x, 101, "op25b_block", "192.0.2.60", t0 - base + 1500);   // carol, Stop lost
    event(x, 102, "op25b_block", "192.0.2.60", t0 - base + 2500);   // dave
    event(y, 101, "op25b_block", "192.0.2.70", t0 - base + 2500, "stamped");   // no session: the stamped account
    const auto [rep, rc2] = run("--json report --since " + at(0) + " --until " + at(3000) + radacct);
    ASSERT_EQ(rc2, 0) << rep;
    const nlohmann::json r = nlohmann::json::parse(rep, nullptr, false);
    ASSERT_TRUE(r.is_object()) << rep;
    std::set<std::string> got;
    for (const auto& s : r["sources"])
        got.insert(s["gateway"].get<std::string>().substr(gateway_.size()) + " " + s["source_address"].get<std::string>() +
                   " " + (s["account"].is_null() ? std::string("-") : s["account"].get<std::string>()));
    EXPECT_EQ(got, (std::set<std::string>{"-rx 192.0.2.50 alice", "-ry 192.0.2.50 bob", "-rx 192.0.2.60 carol",
                                          "-rx 192.0.2.60 dave", "-ry 192.0.2.70 stamped"}))
        << rep;
    const auto [topj, rc3] = run("--json top --by op25b_block --window 3000s --until " + at(3000) + radacct);
    ASSERT_EQ(rc3, 0) << topj;
    EXPECT_NE(topj.find(R"({"account":"bob","count":1,"gateways":[")" + y + R"("],"subscribers":["192.0.2.50"]})"),
              std::string::npos)
        << topj;
    // Bad input: named.
    const auto [bad, rc4] = run("whois 192.0.2.50 --bindings-source radacct --radacct-table 'radacct;x'");
    EXPECT_EQ(rc4, 2);
    EXPECT_NE(bad.find("--radacct-table 'radacct;x'"), std::string::npos) << bad;
    const auto [missing, rc5] = run("whois 192.0.2.50 --bindings-source radacct --radacct-table nosuch");
    EXPECT_EQ(rc5, 1);
    EXPECT_NE(missing.find("no table 'nosuch'"), std::string::npos) << missing;
    const auto [bad2, rc6] = run("whois 192.0.2.50 --bindings-source freeradius");
    EXPECT_EQ(rc6, 2);
    EXPECT_NE(bad2.find("--bindings-source 'freeradius'"), std::string::npos) << bad2;
}

}  // namespace
}  // namespace sekisho
