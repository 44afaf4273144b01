// The binding shipper against a real PostgreSQL 15 (with_fleet_stores.sh)
// and a real binding history (SQLite, written as RADIUS does): every row
// becomes one row of `bindings`, a Stop after the row was shipped updates it,
// the same rows sent twice change nothing, PostgreSQL crashed mid-run
// (pg_ctl -m immediate) loses and duplicates nothing, a restart goes on from
// the cursor, a version 1 history is upgraded and shipped whole.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "control/fleet/binding_shipper.h"
#include "control/fleet/fleet_link.h"
#include "control/fleet/pg_connection.h"
#include "control/identity/binding_history.h"
#include "control/observe/metrics.h"

namespace sekisho {
namespace {

namespace fs = std::filesystem;

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

bool eventually(const std::function<bool()>& f, int seconds = 30) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < end) {
        if (f()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return f();
}

ip_prefix v4(uint32_t host) {
    ip_prefix p;
    p.family = 4;
    p.length = 32;
    p.bytes[0] = 10;
    p.bytes[1] = static_cast<uint8_t>(host >> 16);
    p.bytes[2] = static_cast<uint8_t>(host >> 8);
    p.bytes[3] = static_cast<uint8_t>(host);
    return p;
}

binding_update radius(binding_kind kind, const std::string& session, const std::string& account, uint32_t host,
                      int64_t t) {
    binding_update u;
    u.kind = kind;
    u.account = account;
    u.session_id = session;
    u.ipv4 = v4(host);
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
              "acct-41 s41 192.0.2.1 10.0.0.42/32 1800000041");
    // The containment the desk's queries use.
    EXPECT_EQ(number("SELECT count(*) FROM bindings WHERE gateway = '" + gateway_ + "' AND prefix >>= '10.0.0.42'"),
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

}  // namespace
}  // namespace sekisho
