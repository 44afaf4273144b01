// The binding history: sessions opened, updated and closed by RADIUS
// accounting; who held an address at a time (boundaries included); restart;
// purge; errors naming the file and the SQL step.
#include "binding_history.h"

#include <sqlite3.h>
#include <stdlib.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace sekisho {
namespace {

namespace fs = std::filesystem;

constexpr int64_t t0 = 1795400000;   // 2026-11-22, within any retention test below

ip_prefix addr(const char* text) {
    std::string err;
    auto p = parse_prefix(text, err);
    if (!p) throw std::runtime_error(err);
    return *p;
}

binding_update update(binding_kind kind, const char* session, int64_t t, const char* account = "alice@example.jp",
                      std::optional<const char*> v4 = "198.51.100.7", std::vector<const char*> v6 = {},
                      const char* nas = "192.0.2.1") {
    binding_update u;
    u.kind = kind;
    u.session_id = session;
    u.account = account;
    if (v4) u.ipv4 = addr(*v4);
    for (const char* p : v6) u.ipv6_prefixes.push_back(addr(p));
    u.nas_address = nas;
    u.nas_identifier = "bng-1";
    u.event_time = t;
    u.event_time_from_packet = true;
    return u;
}

std::vector<std::string> accounts(const std::vector<binding_record>& rows) {
    std::vector<std::string> out;
    for (const auto& r : rows) out.push_back(r.account);
    return out;
}

using strings = std::vector<std::string>;

struct history_test : ::testing::Test {
    fs::path dir;
    std::string db;
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "sekisho-history-XXXXXX").string();
        ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
        dir = tmpl;
        db = (dir / "bindings.db").string();
    }
    void TearDown() override { fs::remove_all(dir); }
};

TEST_F(history_test, start_then_stop_and_who_held_at_the_boundaries) {
    binding_history h(db);
    h.apply(update(binding_kind::start, "s1", t0));
    h.apply(update(binding_kind::stop, "s1", t0 + 3600));
    const auto a = addr("198.51.100.7");
    EXPECT_EQ(accounts(h.who_held(a, t0 - 1)), strings{});
    EXPECT_EQ(accounts(h.who_held(a, t0)), strings{"alice@example.jp"}) << "start included";
    EXPECT_EQ(accounts(h.who_held(a, t0 + 1800)), strings{"alice@example.jp"});
    EXPECT_EQ(accounts(h.who_held(a, t0 + 3600)), strings{"alice@example.jp"}) << "stop included";
    EXPECT_EQ(accounts(h.who_held(a, t0 + 3601)), strings{});
    EXPECT_EQ(accounts(h.who_held(addr("198.51.100.8"), t0 + 10)), strings{});
    const auto rows = h.who_held(a, t0);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].address.to_string(), "198.51.100.7/32");
    EXPECT_EQ(rows[0].session_id, "s1");
    EXPECT_EQ(rows[0].nas, "192.0.2.1");
    EXPECT_EQ(rows[0].nas_identifier, "bng-1");
    EXPECT_EQ(rows[0].start, t0);
    EXPECT_EQ(rows[0].stop, t0 + 3600);
    EXPECT_EQ(rows[0].stop_cause, "stop");
    EXPECT_TRUE(h.open_bindings().empty());
}

TEST_F(history_test, open_session_holds_until_stopped) {
    binding_history h(db);
    h.apply(update(binding_kind::start, "s1", t0));
    const auto rows = h.who_held(addr("198.51.100.7"), t0 + 86400 * 30);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_FALSE(rows[0].stop);
    EXPECT_EQ(rows[0].stop_cause, "");
    ASSERT_EQ(h.open_bindings().size(), 1u);
}

TEST_F(history_test, retransmissions_change_nothing) {
    binding_history h(db);
    h.apply(update(binding_kind::start, "s1", t0));
    h.apply(update(binding_kind::start, "s1", t0));
    h.apply(update(binding_kind::interim, "s1", t0 + 300));
    h.apply(update(binding_kind::stop, "s1", t0 + 600));
    h.apply(update(binding_kind::stop, "s1", t0 + 600));
    h.apply(update(binding_kind::interim, "s1", t0 + 300));   // late interim after the stop: no reopening
    const auto rows = h.held_between(addr("198.51.100.7"), 0, t0 * 2);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].start, t0);
    EXPECT_EQ(rows[0].stop, t0 + 600);
    EXPECT_TRUE(h.open_bindings().empty());
}

TEST_F(history_test, interim_of_unknown_session_opens_it) {
    binding_history h(db);
    auto u = update(binding_kind::interim, "s2", t0 + 900);
    u.session_time = 900;
    h.apply(u);
    const auto rows = h.who_held(addr("198.51.100.7"), t0);
    ASSERT_EQ(rows.size(), 1u) << "the lost Start is back-dated by Acct-Session-Time";
    EXPECT_EQ(rows[0].start, t0);
    EXPECT_FALSE(rows[0].stop);
    // Without Acct-Session-Time it starts at the interim.
    h.apply(update(binding_kind::interim, "s3", t0 + 50, "bob@example.jp", "198.51.100.9"));
    EXPECT_EQ(accounts(h.who_held(addr("198.51.100.9"), t0 + 49)), strings{});
    EXPECT_EQ(accounts(h.who_held(addr("198.51.100.9"), t0 + 50)), strings{"bob@example.jp"});
}

TEST_F(history_test, stop_of_unknown_session_is_recorded_closed) {
    binding_history h(db);
    auto u = update(binding_kind::stop, "s4", t0 + 1000);
    u.session_time = 1000;
    h.apply(u);
    const auto rows = h.who_held(addr("198.51.100.7"), t0 + 500);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].start, t0);
    EXPECT_EQ(rows[0].stop, t0 + 1000);
    EXPECT_TRUE(h.open_bindings().empty());
}

TEST_F(history_test, stop_never_before_start) {
    binding_history h(db);
    h.apply(update(binding_kind::start, "s1", t0));
    h.apply(update(binding_kind::stop, "s1", t0 - 10));   // a NAS clock step
    const auto rows = h.held_between(addr("198.51.100.7"), 0, t0 * 2);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].stop, t0);
}

TEST_F(history_test, accounting_on_off_close_that_nas_only) {
    binding_history h(db);
    h.apply(update(binding_kind::start, "a", t0, "alice@example.jp", "198.51.100.7", {}, "192.0.2.1"));
    h.apply(update(binding_kind::start, "b", t0, "bob@example.jp", "198.51.100.8", {"2001:db8:108::/56"}, "192.0.2.1"));
    h.apply(update(binding_kind::start, "c", t0, "carol@example.jp", "198.51.100.9", {}, "192.0.2.2"));
    EXPECT_EQ(h.open_bindings().size(), 4u);

    auto on = update(binding_kind::accounting_on, "", t0 + 100, "", std::nullopt, {}, "192.0.2.1");
    h.apply(on);
    const auto open = h.open_bindings();
    ASSERT_EQ(open.size(), 1u);
    EXPECT_EQ(open[0].account, "carol@example.jp");
    const auto bob = h.who_held(addr("2001:db8:108:5::1"), t0 + 100);
    ASSERT_EQ(bob.size(), 1u);
    EXPECT_EQ(bob[0].stop, t0 + 100);
    EXPECT_EQ(bob[0].stop_cause, "accounting-on");
    EXPECT_EQ(accounts(h.who_held(addr("198.51.100.7"), t0 + 101)), strings{});

    h.apply(update(binding_kind::accounting_off, "", t0 + 200, "", std::nullopt, {}, "192.0.2.2"));
    EXPECT_TRUE(h.open_bindings().empty());
    EXPECT_EQ(h.who_held(addr("198.51.100.9"), t0 + 200).at(0).stop_cause, "accounting-off");
}

TEST_F(history_test, nas_identifier_keys_a_nas_without_address) {
    binding_history h(db);
    auto s = update(binding_kind::start, "a", t0, "alice@example.jp", "198.51.100.7", {}, "");
    s.nas_identifier = "bng-east";
    h.apply(s);
    auto same_id_other_nas = update(binding_kind::start, "a", t0, "bob@example.jp", "198.51.100.8", {}, "");
    same_id_other_nas.nas_identifier = "bng-west";
    h.apply(same_id_other_nas);
    auto stop = update(binding_kind::stop, "a", t0 + 10, "alice@example.jp", "198.51.100.7", {}, "");
    stop.nas_identifier = "bng-east";
    h.apply(stop);
    const auto open = h.open_bindings();
    ASSERT_EQ(open.size(), 1u) << "Acct-Session-Id is unique per NAS only";
    EXPECT_EQ(open[0].account, "bob@example.jp");
    EXPECT_EQ(open[0].nas, "bng-west");
}

TEST_F(history_test, ipv6_prefix_contains_the_address) {
    binding_history h(db);
    h.apply(update(binding_kind::start, "s1", t0, "alice@example.jp", std::nullopt,
                   {"2001:db8:107::/56", "2001:db8:100:7::/64"}));
    EXPECT_EQ(accounts(h.who_held(addr("2001:db8:107:ff:1234::1"), t0 + 5)), strings{"alice@example.jp"});
    EXPECT_EQ(accounts(h.who_held(addr("2001:db8:100:7::42"), t0 + 5)), strings{"alice@example.jp"});
    EXPECT_EQ(accounts(h.who_held(addr("2001:db8:108::1"), t0 + 5)), strings{}) << "outside the /56";
    EXPECT_EQ(accounts(h.who_held(addr("2001:db8:100:8::1"), t0 + 5)), strings{});
    EXPECT_EQ(accounts(h.who_held(addr("2001:db8:107:40::/58"), t0 + 5)), strings{"alice@example.jp"})
        << "a longer prefix inside the binding";
    EXPECT_EQ(accounts(h.who_held(addr("2001:db8:100::/48"), t0 + 5)), strings{}) << "a shorter one is not held";
    const auto rows = h.who_held(addr("2001:db8:107::1"), t0);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].address.to_string(), "2001:db8:107::/56");
    EXPECT_EQ(h.open_bindings().size(), 2u) << "one row per prefix";
    // Host bits in an update are masked, not stored.
    h.apply(update(binding_kind::start, "s2", t0, "bob@example.jp", std::nullopt, {}));
    binding_update odd = update(binding_kind::start, "s3", t0, "carol@example.jp", std::nullopt, {});
    ip_prefix p = addr("2001:db8:200::/56");
    p.bytes[15] = 1;
    odd.ipv6_prefixes.push_back(p);
    h.apply(odd);
    EXPECT_EQ(accounts(h.who_held(addr("2001:db8:200::9"), t0)), strings{"carol@example.jp"});
}

TEST_F(history_test, a_new_holder_supersedes_a_lost_stop) {
    binding_history h(db);
    h.apply(update(binding_kind::start, "s1", t0, "alice@example.jp"));
    h.apply(update(binding_kind::start, "s2", t0 + 500, "bob@example.jp"));   // same address, alice's Stop lost
    const auto a = addr("198.51.100.7");
    EXPECT_EQ(accounts(h.who_held(a, t0 + 499)), strings{"alice@example.jp"});
    EXPECT_EQ(accounts(h.who_held(a, t0 + 500)), (strings{"alice@example.jp", "bob@example.jp"}))
        << "the handover second answers both";
    EXPECT_EQ(accounts(h.who_held(a, t0 + 501)), strings{"bob@example.jp"});
    EXPECT_EQ(h.who_held(a, t0).at(0).stop_cause, "superseded");
    // Alice's Stop arriving now does not move her recorded stop.
    h.apply(update(binding_kind::stop, "s1", t0 + 900, "alice@example.jp"));
    EXPECT_EQ(h.who_held(a, t0).at(0).stop, t0 + 500);
    // A late interim of an older session (Start lost) does not take the
    // address back: it is recorded as ended where bob's began.
    auto late = update(binding_kind::interim, "s0", t0 + 600, "mallory@example.jp");
    late.session_time = 700;   // began at t0 - 100
    h.apply(late);
    EXPECT_EQ(accounts(h.who_held(a, t0 + 700)), strings{"bob@example.jp"});
    ASSERT_EQ(h.open_bindings().size(), 1u);
    EXPECT_EQ(h.open_bindings()[0].account, "bob@example.jp");
}

TEST_F(history_test, interim_adds_a_prefix_delegated_later) {
    binding_history h(db);
    h.apply(update(binding_kind::start, "s1", t0));
    h.apply(update(binding_kind::interim, "s1", t0 + 60, "alice@example.jp", "198.51.100.7", {"2001:db8:107::/56"}));
    EXPECT_EQ(accounts(h.who_held(addr("2001:db8:107::1"), t0 + 59)), strings{});
    EXPECT_EQ(accounts(h.who_held(addr("2001:db8:107::1"), t0 + 60)), strings{"alice@example.jp"});
    h.apply(update(binding_kind::stop, "s1", t0 + 120));   // a Stop without the prefix closes it too
    EXPECT_TRUE(h.open_bindings().empty());
}

TEST_F(history_test, survives_a_restart) {
    {
        binding_history h(db);
        h.apply(update(binding_kind::start, "s1", t0, "alice@example.jp", "198.51.100.7", {"2001:db8:107::/56"}));
        h.apply(update(binding_kind::start, "s2", t0, "bob@example.jp", "198.51.100.8"));
        h.apply(update(binding_kind::stop, "s2", t0 + 60, "bob@example.jp", "198.51.100.8"));
    }
    binding_history h(db);
    const auto open = h.open_bindings();
    ASSERT_EQ(open.size(), 2u);
    EXPECT_EQ(open[0].account, "alice@example.jp");
    EXPECT_EQ(open[0].address.to_string(), "198.51.100.7/32");
    EXPECT_EQ(open[1].address.to_string(), "2001:db8:107::/56");
    EXPECT_EQ(accounts(h.who_held(addr("198.51.100.8"), t0 + 30)), strings{"bob@example.jp"});
    h.apply(update(binding_kind::stop, "s1", t0 + 90, "alice@example.jp", "198.51.100.7"));
    EXPECT_TRUE(h.open_bindings().empty()) << "the reopened history keeps working";
}

TEST_F(history_test, a_reader_sees_the_writer) {
    binding_history writer(db);
    binding_history reader(db, binding_history::access::read_only);
    writer.apply(update(binding_kind::start, "s1", t0));
    EXPECT_EQ(accounts(reader.who_held(addr("198.51.100.7"), t0)), strings{"alice@example.jp"});
    EXPECT_THROW(
        {
            try {
                reader.apply(update(binding_kind::start, "s2", t0, "bob@example.jp", "198.51.100.8"));
            } catch (const binding_history_error& e) {
                EXPECT_EQ(std::string(e.what()),
                          db + ": apply: the history is open read-only");
                throw;
            }
        },
        binding_history_error);
}

TEST_F(history_test, wal_and_schema) {
    { binding_history h(db); }
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    auto one = [&](const char* sql) {
        sqlite3_stmt* st = nullptr;
        EXPECT_EQ(sqlite3_prepare_v2(raw, sql, -1, &st, nullptr), SQLITE_OK) << sql;
        std::string v;
        if (sqlite3_step(st) == SQLITE_ROW) v = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        return v;
    };
    EXPECT_EQ(one("PRAGMA journal_mode"), "wal");
    EXPECT_EQ(one("PRAGMA user_version"), "1");
    EXPECT_EQ(one("SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master WHERE type = 'index' "
                  "AND name LIKE 'sessions_%' ORDER BY name)"),
              "sessions_by_address,sessions_by_session,sessions_closed_by_stop,sessions_open_by_address,"
              "sessions_open_by_nas");
    // Each query uses its index.
    auto plan = [&](const char* sql) {
        sqlite3_stmt* st = nullptr;
        EXPECT_EQ(sqlite3_prepare_v2(raw, (std::string("EXPLAIN QUERY PLAN ") + sql).c_str(), -1, &st, nullptr), SQLITE_OK)
            << sql;
        std::string details;
        while (sqlite3_step(st) == SQLITE_ROW) details += reinterpret_cast<const char*>(sqlite3_column_text(st, 3)) + std::string(";");
        sqlite3_finalize(st);
        return details;
    };
    EXPECT_NE(plan("SELECT * FROM sessions WHERE prefix = x'c6336407' AND prefix_length = 32 AND start_time <= 5 "
                   "AND (stop_time IS NULL OR stop_time >= 5)")
                  .find("USING INDEX sessions_by_address"),
              std::string::npos);
    EXPECT_NE(plan("UPDATE sessions SET stop_time = 1 WHERE nas = '192.0.2.1' AND stop_time IS NULL").find("sessions_open_by_nas"),
              std::string::npos);
    EXPECT_NE(plan("DELETE FROM sessions WHERE stop_time IS NOT NULL AND stop_time < 5").find("sessions_closed_by_stop"),
              std::string::npos);
    EXPECT_NE(plan("SELECT 1 FROM sessions WHERE nas = 'a' AND session_id = 'b' AND prefix = x'00' AND prefix_length = 1")
                  .find("sessions_by_"),
              std::string::npos);
    sqlite3_close(raw);
}

TEST_F(history_test, purge_keeps_open_and_recent_sessions) {
    binding_history h(db);
    const int64_t day = 86400;
    h.apply(update(binding_kind::start, "old", t0, "old@example.jp", "198.51.100.1"));
    h.apply(update(binding_kind::stop, "old", t0 + day, "old@example.jp", "198.51.100.1"));
    h.apply(update(binding_kind::start, "edge", t0, "edge@example.jp", "198.51.100.2"));
    h.apply(update(binding_kind::stop, "edge", t0 + 2 * day, "edge@example.jp", "198.51.100.2"));
    h.apply(update(binding_kind::start, "recent", t0 + 50 * day, "recent@example.jp", "198.51.100.3"));
    h.apply(update(binding_kind::stop, "recent", t0 + 60 * day, "recent@example.jp", "198.51.100.3"));
    h.apply(update(binding_kind::start, "open", t0, "open@example.jp", "198.51.100.4"));

    const int64_t now = t0 + 92 * day;   // cutoff: t0 + 2 days
    EXPECT_EQ(h.purge_older_than(default_history_retention, now), 1u);
    EXPECT_EQ(accounts(h.who_held(addr("198.51.100.1"), t0 + 10)), strings{});
    EXPECT_EQ(accounts(h.who_held(addr("198.51.100.2"), t0 + 10)), strings{"edge@example.jp"})
        << "stopped exactly at the cutoff: kept";
    EXPECT_EQ(accounts(h.who_held(addr("198.51.100.3"), t0 + 55 * day)), strings{"recent@example.jp"});
    EXPECT_EQ(accounts(h.who_held(addr("198.51.100.4"), now)), strings{"open@example.jp"}) << "open: never purged";
    EXPECT_EQ(h.purge_older_than(default_history_retention, now + 1), 1u);
    EXPECT_EQ(h.purge_older_than(std::chrono::hours(24), now), 1u);
    EXPECT_EQ(h.open_bindings().size(), 1u);
    EXPECT_EQ(default_history_retention, std::chrono::hours(24 * 90));
}

TEST_F(history_test, batch_apply_is_one_transaction) {
    binding_history h(db);
    std::vector<binding_update> batch;
    for (int i = 0; i < 1000; ++i) {
        const std::string a = "198.51.100." + std::to_string(i % 250);
        auto u = update(binding_kind::start, ("s" + std::to_string(i)).c_str(), t0 + i,
                        ("user" + std::to_string(i) + "@example.jp").c_str(), a.c_str());
        batch.push_back(u);
    }
    h.apply(batch);
    EXPECT_EQ(h.open_bindings().size(), 250u) << "each address ends with its last holder";
    EXPECT_EQ(accounts(h.who_held(addr("198.51.100.3"), t0 + 754)), strings{"user753@example.jp"});
    EXPECT_EQ(accounts(h.who_held(addr("198.51.100.3"), t0 + 504)), strings{"user503@example.jp"});
}

TEST_F(history_test, errors_name_the_file_and_the_step) {
    const std::string missing = (dir / "no-such-dir" / "bindings.db").string();
    try {
        binding_history h(missing);
        ADD_FAILURE();
    } catch (const binding_history_error& e) {
        EXPECT_EQ(std::string(e.what()), missing + ": open: unable to open database file");
    }
    const std::string junk = (dir / "junk.db").string();
    std::ofstream(junk) << std::string(4096, 'x');
    try {
        binding_history h(junk);
        ADD_FAILURE();
    } catch (const binding_history_error& e) {
        EXPECT_EQ(std::string(e.what()),
                  junk + ": read the schema version (PRAGMA user_version): file is not a database");
    }
    try {
        binding_history h((dir / "absent.db").string(), binding_history::access::read_only);
        ADD_FAILURE();
    } catch (const binding_history_error& e) {
        EXPECT_EQ(std::string(e.what()), (dir / "absent.db").string() + ": open: unable to open database file");
    }
    {
        binding_history h(db);
    }
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(raw, "PRAGMA user_version = 7", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(raw);
    try {
        binding_history h(db);
        ADD_FAILURE();
    } catch (const binding_history_error& e) {
        EXPECT_EQ(std::string(e.what()),
                  db + ": read the schema version (PRAGMA user_version): version 7 is newer than this release reads (1)");
    }
}

}  // namespace
}  // namespace sekisho
