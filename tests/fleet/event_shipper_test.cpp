// The event shipper against a real PostgreSQL 15 (with_fleet_stores.sh):
// every line of the event log becomes one row, the same batch sent twice
// inserts nothing twice, a restart goes on from the cursor, PostgreSQL
// stopped mid-run (a crash: pg_ctl -m immediate) loses and duplicates
// nothing, rotation while shipping, bad lines, retention.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include "control/fleet/event_shipper.h"
#include "control/fleet/fleet_link.h"
#include "control/fleet/pg_connection.h"
#include "control/observe/event_log.h"
#include "control/observe/event_log_follow.h"
#include "control/observe/metrics.h"
#include "tests/support/fleet_test_env.h"

namespace sekisho {
namespace {

namespace fs = std::filesystem;

using test::env;

// A JSON line like the gateway's (time_ns in this second, an address, an account).
std::string event_line(uint64_t i, const std::string& type = "op25b_block") {
    const uint64_t now_ns = static_cast<uint64_t>(std::time(nullptr)) * 1'000'000'000ull;
    return R"({"account":"acct-)" + std::to_string(i % 7) + R"(","count":1,"src":"198.51.100.)" +
           std::to_string(i % 250 + 1) + R"(","time_ns":)" + std::to_string(now_ns + i) + R"(,"type":")" + type +
           R"("})";
}

void append(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::app);
    out << text;
}

using test::eventually;

class EventShipper : public ::testing::Test {
protected:
    void SetUp() override {
        if (env("SEKISHO_TEST_PG_CONNINFO").empty()) GTEST_SKIP() << "run through with_fleet_stores.sh";
        dir_ = ::testing::TempDir() + "/event_shipper_" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        gateway_ = std::string("gw-") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    }
    void TearDown() override {
        if (!dir_.empty()) fs::remove_all(dir_);
    }

    event_shipper_options options() const {
        event_shipper_options o;
        o.gateway = gateway_;
        o.conninfo_file = env("SEKISHO_TEST_PG_CONNINFO");
        o.events_path = dir_ + "/events.jsonl";
        o.cursor_path = dir_ + "/events.cursor";
        o.sync_interval_ns = 20'000'000;
        o.backoff_max_ns = 500'000'000;
        return o;
    }

    // A query on a connection of its own; one number back.
    uint64_t number(const std::string& sql) {
        pg_connection pg(env("SEKISHO_TEST_PG_CONNINFO"));
        pg_result r = pg.exec(sql, "test query");
        return std::strtoull(PQgetvalue(r.get(), 0, 0), nullptr, 10);
    }
    uint64_t rows() { return number("SELECT count(*) FROM events WHERE gateway = '" + gateway_ + "'"); }
    uint64_t keys() {
        return number("SELECT count(DISTINCT (file_id, line_offset)) FROM events WHERE gateway = '" + gateway_ + "'");
    }

    // The cluster as the postgres user (initdb refuses root).
    int pg_ctl(const std::string& args) {
        const std::string d = env("SEKISHO_TEST_PG_DIR");
        const std::string cmd = "runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D " + d + "/pg -l " + d +
                                "/pglog/postgres.log -w -t 30 " + args + " >/dev/null 2>&1";
        return std::system(cmd.c_str());
    }

    std::string dir_, gateway_;
};

TEST_F(EventShipper, EveryLineBecomesOneRowWithItsColumns) {
    const event_shipper_options o = options();
    std::string text;
    for (uint64_t i = 0; i < 12000; ++i) text += event_line(i) + "\n";
    append(o.events_path, text);
    {
        event_shipper s(o);
        ASSERT_TRUE(eventually([&] { return s.state().shipped == 12000; })) << s.status().dump();
        EXPECT_GE(s.state().batches, 3u);   // 5000 lines a batch
        EXPECT_EQ(s.state().inserted, 12000u);
        EXPECT_TRUE(s.state().link_up);
        EXPECT_TRUE(eventually([&] { return s.state().backlog_bytes == 0 && s.state().lag_seconds == 0; }));
        EXPECT_GT(s.state().last_sync, 0);
    }
    EXPECT_EQ(rows(), 12000u);
    EXPECT_EQ(keys(), 12000u);
    // The columns of the first line: address, account, type, time from time_ns, the line as jsonb.
    EXPECT_EQ(number("SELECT count(*) FROM events WHERE gateway = '" + gateway_ +
                     "' AND line_offset = 0 AND address = inet '198.51.100.1' AND account = 'acct-0' AND type = "
                     "'op25b_block' AND line->>'src' = '198.51.100.1' AND abs(extract(epoch FROM time) - "
                     "extract(epoch FROM now())) < 600"),
              1u);
    // The whois and report indexes exist.
    EXPECT_EQ(number("SELECT count(*) FROM pg_indexes WHERE tablename = 'events' AND indexname IN "
                     "('events_address_time', 'events_account_time')"),
              2u);
    // The cursor is on disk, 0640, after the last line.
    struct stat st {};
    ASSERT_EQ(::stat(o.cursor_path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0640u);
    std::ifstream in(o.cursor_path);
    std::string pos;
    in >> pos;
    const auto p = parse_event_position(pos);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->offset, fs::file_size(o.events_path));
}

TEST_F(EventShipper, ColumnsComeFromTheTopLevelOnly) {
    const event_shipper_options o = options();
    const uint64_t now_ns = static_cast<uint64_t>(std::time(nullptr)) * 1'000'000'000ull;
    const std::string t = std::to_string(now_ns);
    append(o.events_path,
           // account null, an address only inside a nested object, a repeated type (the last wins)
           R"({"type":"x","account":null,"detail":{"src":"192.0.2.1","account":"inner"},"time_ns":)" + t +
               R"(,"type":"limit_exceeded","subscriber":"not-an-address","src":"2001:db8::7"})" + "\n" +
               // first_ns before time_ns; an array under account
               R"({"first_ns":)" + std::to_string(now_ns - 5'000'000'000ull) + R"(,"time_ns":)" + t +
               R"(,"account":["a"],"subscriber":"198.51.100.7"})" + "\n" +
               // a top-level array and two objects on one line are not events
               "[1,2]\n{} {}\n");
    event_shipper s(o);
    ASSERT_TRUE(eventually([&] { return s.state().shipped == 4; })) << s.status().dump();
    const std::string g = "gateway = '" + gateway_ + "'";
    EXPECT_EQ(number("SELECT count(*) FROM events WHERE " + g +
                     " AND line_offset = 0 AND type = 'limit_exceeded' AND account IS NULL AND address = "
                     "inet '2001:db8::7'"),
              1u);
    EXPECT_EQ(number("SELECT count(*) FROM events WHERE " + g +
                     " AND type = 'unknown' AND account IS NULL AND address = inet '198.51.100.7' AND "
                     "extract(epoch FROM time)::bigint = " + std::to_string(now_ns / 1'000'000'000ull - 5)),
              1u);
    EXPECT_EQ(number("SELECT count(*) FROM events WHERE " + g + " AND type = 'unparsable'"), 2u);
    EXPECT_EQ(s.state().unparsable, 2u);
}

TEST_F(EventShipper, TheSameBatchSentTwiceInsertsNothingTwice) {
    const event_shipper_options o = options();
    std::string text;
    for (uint64_t i = 0; i < 3000; ++i) text += event_line(i) + "\n";
    append(o.events_path, text);
    {
        event_shipper s(o);
        ASSERT_TRUE(eventually([&] { return s.state().shipped == 3000; }));
    }
    // A crash after the COMMIT, before the cursor was saved: the cursor is the old one (none).
    fs::remove(o.cursor_path);
    {
        event_shipper s(o);
        ASSERT_TRUE(eventually([&] { return s.state().shipped == 3000; }));
        EXPECT_EQ(s.state().inserted, 0u);
    }
    EXPECT_EQ(rows(), 3000u);
}

TEST_F(EventShipper, ARestartGoesOnFromTheCursor) {
    const event_shipper_options o = options();
    std::string text;
    for (uint64_t i = 0; i < 1000; ++i) text += event_line(i) + "\n";
    append(o.events_path, text);
    {
        event_shipper s(o);
        ASSERT_TRUE(eventually([&] { return s.state().shipped == 1000; }));
    }
    text.clear();
    for (uint64_t i = 1000; i < 1500; ++i) text += event_line(i) + "\n";
    append(o.events_path, text);
    {
        event_shipper s(o);
        ASSERT_TRUE(eventually([&] { return s.state().shipped == 500; }));
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        EXPECT_EQ(s.state().shipped, 500u);   // only the new lines were read
        EXPECT_EQ(s.state().inserted, 500u);
    }
    EXPECT_EQ(rows(), 1500u);
    EXPECT_EQ(keys(), 1500u);
}

TEST_F(EventShipper, PostgresCrashedMidRunLosesAndDuplicatesNothing) {
    const event_shipper_options o = options();
    std::atomic<uint64_t> written{0};
    std::atomic<bool> writing{true};
    std::thread writer([&] {
        for (uint64_t i = 0; writing; ++i) {
            append(o.events_path, event_line(i) + "\n");
            ++written;
            if (i % 50 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    });
    {
        event_shipper s(o);
        ASSERT_TRUE(eventually([&] { return s.state().shipped > 500; }));
        ASSERT_EQ(pg_ctl("-m immediate stop"), 0);   // a crash: no checkpoint, clients cut
        ASSERT_TRUE(eventually([&] { return !s.state().link_up; })) << s.status().dump();
        const uint64_t shipped_while_down = s.state().shipped;
        std::this_thread::sleep_for(std::chrono::milliseconds(700));
        EXPECT_EQ(s.state().shipped, shipped_while_down);
        EXPECT_TRUE(eventually([&] { return s.state().backlog_bytes > 0 && s.state().lag_seconds >= 0; }));
        ASSERT_EQ(pg_ctl("start"), 0);
        ASSERT_TRUE(eventually([&] { return s.state().link_up; })) << s.status().dump();
        writing = false;
        writer.join();
        ASSERT_TRUE(eventually([&] { return s.state().shipped >= written.load() && s.state().backlog_bytes == 0; }))
            << s.status().dump() << " written " << written.load();
        EXPECT_GE(s.state().reconnects, 2u);
    }
    if (writer.joinable()) {
        writing = false;
        writer.join();
    }
    EXPECT_EQ(rows(), written.load());
    EXPECT_EQ(keys(), written.load());
}

TEST_F(EventShipper, RotationWhileShippingShipsEveryFileOnce) {
    event_shipper_options o = options();
    events_config c;
    c.file = o.events_path;
    c.rotate_bytes = 64 * 1024;
    c.rotate_interval_ns = 0;
    c.keep = 50;
    c.fsync = events_fsync::never;
    c.aggregate_window_ns = 0;
    uint64_t lines = 0;
    {
        event_log log(c);
        event_shipper s(o);
        for (uint64_t i = 0; i < 20000; ++i) {
            log.add_record(event_line(i, "api_change"));
            ++lines;
            if (i % 500 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        log.flush_all();
        EXPECT_GE(log.counters().rotations, 10u);
        ASSERT_TRUE(eventually([&] { return s.state().shipped == lines && s.state().backlog_bytes == 0; }))
            << s.status().dump();
        EXPECT_EQ(s.state().gaps, 0u);
    }
    EXPECT_EQ(rows(), lines);
    EXPECT_EQ(keys(), lines);
    // Each file's lines under one identity: as many identities as files.
    uint64_t files = 0;
    for (const auto& e : fs::directory_iterator(dir_))
        if (e.path().filename().string().rfind("events.jsonl", 0) == 0) ++files;
    EXPECT_EQ(number("SELECT count(DISTINCT file_id) FROM events WHERE gateway = '" + gateway_ + "'"), files);
}

TEST_F(EventShipper, BadLinesBecomeStandInRowsAndDoNotWedgeTheShipper) {
    const event_shipper_options o = options();
    append(o.events_path, event_line(1) + "\n" + "{\"time_ns\":12, cut by a cra\n" + event_line(2) + "\n" +
                              R"({"time_ns":1700000000000000000,"type":"op25b_block","note":"a\u0000b"})" + "\n" +
                              event_line(3) + "\n");
    event_shipper s(o);
    ASSERT_TRUE(eventually([&] { return s.state().shipped == 5; })) << s.status().dump();
    EXPECT_EQ(s.state().unparsable, 1u);
    EXPECT_EQ(s.state().refused, 1u);
    EXPECT_EQ(rows(), 5u);
    EXPECT_EQ(number("SELECT count(*) FROM events WHERE gateway = '" + gateway_ +
                     "' AND type = 'unparsable' AND line->>'unparsable' = '{\"time_ns\":12, cut by a cra'"),
              1u);
    EXPECT_EQ(number("SELECT count(*) FROM events WHERE gateway = '" + gateway_ +
                     "' AND type = 'refused' AND line->>'file' LIKE '%events.jsonl' AND line ? 'refused'"),
              1u);
    // The unparsable line takes the time of the line before it.
    EXPECT_EQ(number("SELECT count(DISTINCT time) FROM events WHERE gateway = '" + gateway_ +
                     "' AND line_offset <= " + std::to_string(event_line(1).size() + 1)),
              1u);
    bool named = false;
    for (const std::string& l : s.take_log_lines())
        named = named || (l.find("events.jsonl at offset " + std::to_string(event_line(1).size() + 1) +
                                 ": not a JSON object") != std::string::npos);
    EXPECT_TRUE(named);
}

TEST_F(EventShipper, ALogRotatedPastTheCursorIsAGapShippedFromTheOldestFile) {
    const event_shipper_options o = options();
    append(o.events_path + ".1", event_line(1) + "\n");
    append(o.events_path, event_line(2) + "\n");
    // A cursor into a file that no longer exists.
    std::ofstream(o.cursor_path) << "999999999:120:5 0\n";
    event_shipper s(o);
    ASSERT_TRUE(eventually([&] { return s.state().shipped == 2; })) << s.status().dump();
    EXPECT_EQ(s.state().gaps, 1u);
    EXPECT_EQ(rows(), 2u);
}

TEST_F(EventShipper, AnUnreadableCursorShipsFromTheStartAndSaysSo) {
    const event_shipper_options o = options();
    append(o.events_path, event_line(1) + "\n" + event_line(2) + "\n");
    std::ofstream(o.cursor_path) << "not a cursor\n";
    event_shipper s(o);
    ASSERT_TRUE(eventually([&] { return s.state().shipped == 2; })) << s.status().dump();
    bool said = false;
    for (const std::string& l : s.take_log_lines())
        said = said || l.find(o.cursor_path + ": not a cursor") != std::string::npos;
    EXPECT_TRUE(said);
    EXPECT_EQ(rows(), 2u);
}

TEST_F(EventShipper, RetentionDropsOldPartitionsOnly) {
    pg_connection pg(env("SEKISHO_TEST_PG_CONNINFO"));
    ensure_event_tables(pg);
    const int64_t now = std::time(nullptr);
    const std::string old_one = ensure_event_partition(pg, now - 40 * 86400);
    const std::string kept = ensure_event_partition(pg, now - 29 * 86400);
    const std::string today = ensure_event_partition(pg, now);
    EXPECT_EQ(ensure_event_partition(pg, now), today);   // idempotent
    EXPECT_GE(drop_old_event_partitions(pg, now, 30), 1);
    auto exists = [&](const std::string& name) {
        return number("SELECT count(*) FROM pg_class WHERE relname = '" + name + "'") == 1;
    };
    EXPECT_FALSE(exists(old_one));
    EXPECT_TRUE(exists(kept));
    EXPECT_TRUE(exists(today));
}

TEST_F(EventShipper, FleetLinkShowsTheShipperInMetricsAndStatus) {
    const event_shipper_options o = options();
    append(o.events_path, event_line(1) + "\n" + event_line(2) + "\n");
    fleet_config fc;
    fc.path = dir_ + "/fleet.yaml";
    fc.gateway = gateway_;
    fc.postgres_conninfo_file = o.conninfo_file;
    fc.sync_interval_ns = 20'000'000;
    fleet_context ctx;
    ctx.state_dir = dir_;
    ctx.events_path = o.events_path;
    std::vector<std::string> logged;
    ctx.log = [&logged](const std::string& l) { logged.push_back(l); };
    fleet_link link(fc, ctx);
    ASSERT_TRUE(eventually([&] { return link.status()["events"]["shipped"] == 2; })) << link.status().dump();
    link.poll();
    EXPECT_NE(std::find(logged.begin(), logged.end(), "fleet: events: PostgreSQL link up"), logged.end());
    EXPECT_TRUE(fs::exists(dir_ + "/fleet/events.cursor"));
    control_snapshot snap;
    link.add_to_snapshot(snap);
    const std::string text = render_metrics({}, snap, apply_durations{});
    EXPECT_NE(text.find(R"(sekisho_fleet_link_up{store="postgres",concern="events"} 1)"), std::string::npos) << text;
    EXPECT_NE(text.find("sekisho_fleet_events_shipped_total 2"), std::string::npos) << text;
    EXPECT_NE(text.find("sekisho_fleet_events_backlog_bytes 0"), std::string::npos) << text;
    EXPECT_NE(text.find("sekisho_fleet_events_lag_seconds 0"), std::string::npos) << text;
    EXPECT_NE(text.find(R"(sekisho_fleet_last_sync_timestamp_seconds{store="postgres",concern="events"} )"), std::string::npos);
    // Without fleet mode: no fleet family at all.
    EXPECT_EQ(render_metrics({}, control_snapshot{}, apply_durations{}).find("sekisho_fleet"), std::string::npos);
}

// The reader alone (no store): lines with their offsets across a rotation.
TEST(EventLogFollow, LinesWithTheirOffsetsAcrossARotation) {
    const std::string dir = ::testing::TempDir() + "/event_log_follow";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string path = dir + "/events.jsonl";
    append(path, "{\"a\":1}\n\n{\"b\":2}\n{\"c\":");   // an empty line, and a last line still being written
    follow_result r = follow_log(path, std::nullopt, 10, 1 << 20);
    ASSERT_EQ(r.lines.size(), 2u);
    EXPECT_EQ(r.lines[0].offset, 0u);
    EXPECT_EQ(r.lines[1].offset, 9u);
    EXPECT_EQ(r.lines[1].text, "{\"b\":2}");
    EXPECT_EQ(r.end.offset, 17u);
    EXPECT_EQ(r.backlog_bytes, 5u);
    EXPECT_NE(r.lines[0].file_id, 0);
    const int64_t first_id = r.lines[0].file_id;
    append(path, "3}\n");
    fs::rename(path, path + ".1");   // a rotation
    append(path, "{\"d\":4}\n");
    r = follow_log(path, r.end, 10, 1 << 20);
    ASSERT_EQ(r.lines.size(), 2u);
    EXPECT_EQ(r.lines[0].text, "{\"c\":3}");
    EXPECT_EQ(r.lines[0].file_id, first_id);   // the same file under its new name
    EXPECT_EQ(r.lines[1].text, "{\"d\":4}");
    EXPECT_EQ(r.lines[1].offset, 0u);
    EXPECT_NE(r.lines[1].file_id, first_id);
    EXPECT_FALSE(r.gap);
    // At most max_lines: the position stops before the next one.
    const follow_result one = follow_log(path, std::nullopt, 1, 1 << 20);
    ASSERT_EQ(one.lines.size(), 1u);
    EXPECT_TRUE(one.full);
    EXPECT_EQ(one.lines[0].text, "{\"a\":1}");
    const follow_result next = follow_log(path, one.end, 1, 1 << 20);
    ASSERT_EQ(next.lines.size(), 1u);
    EXPECT_EQ(next.lines[0].text, "{\"b\":2}");
    // A copy (another inode) is the same file: its lines keep their keys.
    fs::copy_file(path + ".1", dir + "/copy.jsonl");
    fs::remove(path + ".1");
    const follow_result copied = follow_log(dir + "/copy.jsonl", std::nullopt, 10, 1 << 20);
    ASSERT_FALSE(copied.lines.empty());
    EXPECT_EQ(copied.lines[0].file_id, first_id);
    fs::remove_all(dir);
}

}  // namespace
}  // namespace sekisho
