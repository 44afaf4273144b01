// The binding history: sessions opened, updated and closed by RADIUS
// accounting; the ordering rules over sequences of updates (resent,
// reordered, lost) with the rows they leave and the data-plane changes they
// return; who held an address at a time (boundaries included); restart;
// purge; the file's mode; errors naming the file and the SQL step.
#include "control/identity/binding_history.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstring>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <optional>
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

// ---------------------------------------------------------------- sequences

// Every row of the history, oldest first: "ADDRESS ACCOUNT SESSION [START,
// STOP] CAUSE", times relative to t0, "open" while open.
strings all_rows(const std::string& db) {
    sqlite3* raw = nullptr;
    EXPECT_EQ(sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(raw,
                                 "SELECT family, prefix, prefix_length, account, session_id, start_time, stop_time, "
                                 "stop_cause FROM sessions ORDER BY id",
                                 -1, &st, nullptr),
              SQLITE_OK);
    strings out;
    while (sqlite3_step(st) == SQLITE_ROW) {
        ip_prefix p;
        p.family = static_cast<uint8_t>(sqlite3_column_int(st, 0));
        std::memcpy(p.bytes.data(), sqlite3_column_blob(st, 1), static_cast<size_t>(sqlite3_column_bytes(st, 1)));
        p.length = static_cast<uint8_t>(sqlite3_column_int(st, 2));
        auto text = [&](int i) {
            const auto* t = sqlite3_column_text(st, i);
            return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
        };
        const std::string account = text(3).empty() ? "-" : text(3);
        std::string row = p.to_string() + " " + account + " " + text(4) + " [" +
                          std::to_string(sqlite3_column_int64(st, 5) - t0) + ", ";
        row += sqlite3_column_type(st, 6) == SQLITE_NULL ? std::string("open]")
                                                         : std::to_string(sqlite3_column_int64(st, 6) - t0) + "] " +
                                                               text(7);
        out.push_back(row);
    }
    sqlite3_finalize(st);
    sqlite3_close(raw);
    return out;
}

strings changes_text(const std::vector<binding_change>& changes) {
    strings out;
    for (const auto& c : changes) out.push_back(std::string(to_string(c.what)) + " " + c.address.to_string() + " " + c.account);
    return out;
}

// Updates for the tables below: times relative to t0.
binding_update start(const char* session, int64_t t, const char* account, std::vector<const char*> addresses,
                     const char* nas = "192.0.2.1") {
    binding_update u = update(binding_kind::start, session, t0 + t, account, std::nullopt, {}, nas);
    for (const char* a : addresses) {
        const ip_prefix p = addr(a);
        if (p.family == 4) u.ipv4 = p;
        else u.ipv6_prefixes.push_back(p);
    }
    return u;
}
binding_update interim(const char* session, int64_t t, const char* account, std::vector<const char*> addresses,
                       std::optional<uint32_t> session_time = std::nullopt) {
    binding_update u = start(session, t, account, std::move(addresses));
    u.kind = binding_kind::interim;
    u.session_time = session_time;
    return u;
}
binding_update stop(const char* session, int64_t t, const char* account, std::vector<const char*> addresses,
                    std::optional<uint32_t> session_time = std::nullopt) {
    binding_update u = start(session, t, account, std::move(addresses));
    u.kind = binding_kind::stop;
    u.session_time = session_time;
    return u;
}
binding_update nas_event(binding_kind kind, int64_t t, const char* nas = "192.0.2.1") {
    return update(kind, "", t0 + t, "", std::nullopt, {}, nas);
}

struct sequence_step {
    binding_update update;
    strings changes;   // what the data plane must do, in order
};
struct sequence_case {
    const char* description;
    std::vector<sequence_step> steps;
    strings rows;   // the whole history afterwards (all_rows)
};

const std::vector<sequence_case>& sequence_cases() {
    static const std::vector<sequence_case> cases = {
        {"an old Stop resent after a new session of the same account leaves the new session bound",
         {{start("s1", 0, "alice", {"198.51.100.7"}), {"bind 198.51.100.7/32 alice"}},
          {stop("s1", 100, "alice", {"198.51.100.7"}), {"unbind 198.51.100.7/32 alice"}},
          {start("s2", 200, "alice", {"198.51.100.7"}), {"bind 198.51.100.7/32 alice"}},
          {stop("s1", 100, "alice", {"198.51.100.7"}), {}}},
         {"198.51.100.7/32 alice s1 [0, 100] stop", "198.51.100.7/32 alice s2 [200, open]"}},
        {"an old Start resent after a handover does not give the address back",
         {{start("s1", 0, "alice", {"198.51.100.7"}), {"bind 198.51.100.7/32 alice"}},
          {start("s2", 500, "bob", {"198.51.100.7"}), {"bind 198.51.100.7/32 bob"}},
          {start("s1", 0, "alice", {"198.51.100.7"}), {}}},
         {"198.51.100.7/32 alice s1 [0, 500] superseded", "198.51.100.7/32 bob s2 [500, open]"}},
        {"a Start arriving after a newer session's Start is recorded ended, not bound",
         {{start("s2", 500, "bob", {"198.51.100.7"}), {"bind 198.51.100.7/32 bob"}},
          {start("s1", 0, "alice", {"198.51.100.7"}), {}}},
         {"198.51.100.7/32 bob s2 [500, open]", "198.51.100.7/32 alice s1 [0, 500] superseded"}},
        {"an old Accounting-On resent closes nothing that began after it",
         {{start("s1", 0, "alice", {"198.51.100.7"}), {"bind 198.51.100.7/32 alice"}},
          {nas_event(binding_kind::accounting_on, 100), {"unbind 198.51.100.7/32 alice"}},
          {start("s2", 200, "bob", {"198.51.100.8"}), {"bind 198.51.100.8/32 bob"}},
          {start("s3", 300, "carol", {"198.51.100.9"}, "192.0.2.2"), {"bind 198.51.100.9/32 carol"}},
          {nas_event(binding_kind::accounting_on, 100), {}}},
         {"198.51.100.7/32 alice s1 [0, 100] accounting-on", "198.51.100.8/32 bob s2 [200, open]",
          "198.51.100.9/32 carol s3 [300, open]"}},
        {"Accounting-Off closes the NAS's sessions that began at or before it, not later ones, not another NAS's",
         {{start("s1", 0, "alice", {"198.51.100.7", "2001:db8:107::/56"}),
           {"bind 198.51.100.7/32 alice", "bind 2001:db8:107::/56 alice"}},
          {start("s2", 100, "bob", {"198.51.100.8"}), {"bind 198.51.100.8/32 bob"}},
          {start("s3", 50, "carol", {"198.51.100.9"}, "192.0.2.2"), {"bind 198.51.100.9/32 carol"}},
          {start("s4", 101, "dave", {"198.51.100.10"}), {"bind 198.51.100.10/32 dave"}},
          {nas_event(binding_kind::accounting_off, 100),
           {"unbind 198.51.100.7/32 alice", "unbind 2001:db8:107::/56 alice", "unbind 198.51.100.8/32 bob"}}},
         {"198.51.100.7/32 alice s1 [0, 100] accounting-off", "2001:db8:107::/56 alice s1 [0, 100] accounting-off",
          "198.51.100.8/32 bob s2 [100, 100] accounting-off", "198.51.100.9/32 carol s3 [50, open]",
          "198.51.100.10/32 dave s4 [101, open]"}},
        {"a Stop without User-Name or Framed-IP-Address closes and unbinds the session's addresses",
         {{start("s1", 0, "alice", {"198.51.100.7", "2001:db8:107::/56"}),
           {"bind 198.51.100.7/32 alice", "bind 2001:db8:107::/56 alice"}},
          {stop("s1", 100, "", {}), {"unbind 198.51.100.7/32 alice", "unbind 2001:db8:107::/56 alice"}}},
         {"198.51.100.7/32 alice s1 [0, 100] stop", "2001:db8:107::/56 alice s1 [0, 100] stop"}},
        {"a Stop before its Start: the late Start finds the closed row and binds nothing",
         {{stop("s1", 100, "alice", {"198.51.100.7"}, 100), {}},
          {start("s1", 0, "alice", {"198.51.100.7"}), {}}},
         {"198.51.100.7/32 alice s1 [0, 100] stop"}},
        {"an Interim after the Stop does not reopen the session",
         {{start("s1", 0, "alice", {"198.51.100.7"}), {"bind 198.51.100.7/32 alice"}},
          {stop("s1", 100, "alice", {"198.51.100.7"}), {"unbind 198.51.100.7/32 alice"}},
          {interim("s1", 50, "alice", {"198.51.100.7"}, 50), {}}},
         {"198.51.100.7/32 alice s1 [0, 100] stop"}},
        {"an Interim whose Start was lost opens the session back-dated by Acct-Session-Time",
         {{interim("s1", 900, "alice", {"198.51.100.7"}, 900), {"bind 198.51.100.7/32 alice"}},
          {interim("s1", 1200, "alice", {"198.51.100.7"}, 1200), {}}},
         {"198.51.100.7/32 alice s1 [0, open]"}},
        {"a Stop of an unknown session on an address another session holds changes nothing there",
         {{start("s2", 0, "bob", {"198.51.100.7"}), {"bind 198.51.100.7/32 bob"}},
          {stop("s1", 100, "alice", {"198.51.100.7"}, 50), {}}},
         {"198.51.100.7/32 bob s2 [0, open]", "198.51.100.7/32 alice s1 [50, 100] stop"}},
        {"a Start without User-Name supersedes the previous holder and binds nobody",
         {{start("s1", 0, "alice", {"198.51.100.7"}), {"bind 198.51.100.7/32 alice"}},
          {start("s2", 100, "", {"198.51.100.7"}), {"unbind 198.51.100.7/32 alice"}},
          {stop("s2", 200, "", {"198.51.100.7"}), {}}},
         {"198.51.100.7/32 alice s1 [0, 100] superseded", "198.51.100.7/32 - s2 [100, 200] stop"}},
        {"a handover within one second: the later arrival holds the address",
         {{start("s1", 0, "alice", {"198.51.100.7"}), {"bind 198.51.100.7/32 alice"}},
          {start("s2", 0, "bob", {"198.51.100.7"}), {"bind 198.51.100.7/32 bob"}},
          {stop("s1", 0, "alice", {"198.51.100.7"}), {}}},
         {"198.51.100.7/32 alice s1 [0, 0] superseded", "198.51.100.7/32 bob s2 [0, open]"}},
        {"the same account's second session on another NAS: the first's Stop does not unbind the second",
         {{start("s1", 0, "alice", {"198.51.100.7"}), {"bind 198.51.100.7/32 alice"}},
          {start("s1", 10, "alice", {"198.51.100.7"}, "192.0.2.2"), {"bind 198.51.100.7/32 alice"}},
          {stop("s1", 20, "alice", {"198.51.100.7"}), {}}},
         {"198.51.100.7/32 alice s1 [0, 10] superseded", "198.51.100.7/32 alice s1 [10, open]"}},
    };
    return cases;
}

TEST_F(history_test, sequences_leave_the_expected_rows_and_data_plane_changes) {
    for (const sequence_case& c : sequence_cases()) {
        SCOPED_TRACE(c.description);
        fs::remove(db);
        fs::remove(db + "-wal");
        fs::remove(db + "-shm");
        {
            binding_history h(db);
            size_t step = 0;
            for (const sequence_step& s : c.steps) {
                EXPECT_EQ(changes_text(h.apply(s.update)), s.changes) << "step " << step;
                ++step;
            }
        }
        EXPECT_EQ(all_rows(db), c.rows);
    }
}

TEST_F(history_test, the_same_sequences_in_one_batch_and_in_savepoints) {
    for (const sequence_case& c : sequence_cases()) {
        SCOPED_TRACE(c.description);
        fs::remove(db);
        fs::remove(db + "-wal");
        fs::remove(db + "-shm");
        strings want;
        std::vector<binding_update> updates;
        for (const auto& s : c.steps) {
            updates.push_back(s.update);
            want.insert(want.end(), s.changes.begin(), s.changes.end());
        }
        {
            binding_history h(db);
            EXPECT_EQ(changes_text(h.apply(updates)), want) << "one transaction";
        }
        EXPECT_EQ(all_rows(db), c.rows);

        // One batch, one commit, each update applied by `apply_one`.
        auto in_one_batch = [&](auto apply_one) {
            fs::remove(db);
            fs::remove(db + "-wal");
            fs::remove(db + "-shm");
            {
                binding_history h(db);
                h.begin();
                strings got;
                for (const auto& u : updates) {
                    const auto changes = changes_text(apply_one(h, u));
                    got.insert(got.end(), changes.begin(), changes.end());
                }
                EXPECT_TRUE(h.in_transaction());
                h.commit();
                EXPECT_FALSE(h.in_transaction());
                EXPECT_EQ(got, want);
            }
            EXPECT_EQ(all_rows(db), c.rows);
        };
        // In savepoints, each update also taken back once before it is applied for good.
        in_one_batch([](binding_history& h, const binding_update& u) {
            h.apply_in_savepoint(u);
            h.rollback_to_savepoint();
            auto changes = h.apply_in_savepoint(u);
            h.release_savepoint();
            return changes;
        });
        // Without savepoints (subscriber_identity's way).
        in_one_batch([](binding_history& h, const binding_update& u) { return h.apply_in_batch(u); });
    }
}

// The prefix lengths who_held probes are written once per length; one
// written by a batch that was rolled back is written again by the next.
TEST_F(history_test, a_prefix_length_of_a_rolled_back_batch_is_recorded_again) {
    binding_history h(db);
    h.begin();
    h.apply_in_batch(start("s1", 0, "alice", {"2001:db8:100::/48"}));
    h.rollback();
    h.begin();
    h.apply_in_batch(start("s2", 10, "bob", {"2001:db8:200::/48"}));
    h.apply_in_savepoint(start("s3", 20, "carol", {"2001:db8:300::/44"}));
    h.rollback_to_savepoint();
    h.apply_in_batch(start("s4", 30, "dave", {"2001:db8:400::/44"}));
    h.commit();
    EXPECT_EQ(accounts(h.who_held(addr("2001:db8:200::1/128"), t0 + 40)), strings{"bob"});
    EXPECT_EQ(accounts(h.who_held(addr("2001:db8:400::1/128"), t0 + 40)), strings{"dave"});
    EXPECT_TRUE(h.who_held(addr("2001:db8:100::1/128"), t0 + 40).empty());
    // Another writer (the sqlite3 shell) empties prefix_lengths: the next batch reads it afresh.
    {
        sqlite3* raw = nullptr;
        ASSERT_EQ(sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
        EXPECT_EQ(sqlite3_exec(raw, "DELETE FROM prefix_lengths", nullptr, nullptr, nullptr), SQLITE_OK);
        sqlite3_close(raw);
    }
    h.apply(start("s5", 50, "erin", {"2001:db8:500::/48"}));
    EXPECT_EQ(accounts(h.who_held(addr("2001:db8:500::1/128"), t0 + 60)), strings{"erin"});
    EXPECT_THROW(binding_history(db, binding_history::access::read_only).apply_in_batch(start("s6", 70, "x", {})),
                 binding_history_error);
    EXPECT_THROW(h.apply_in_batch(start("s6", 70, "frank", {"198.51.100.9"})), binding_history_error)
        << "no batch open";
}

TEST_F(history_test, a_rolled_back_batch_leaves_nothing) {
    binding_history h(db);
    h.apply(start("s1", 0, "alice", {"198.51.100.7"}));
    h.begin();
    h.apply_in_savepoint(start("s2", 100, "bob", {"198.51.100.7"}));
    h.release_savepoint();
    h.apply_in_savepoint(nas_event(binding_kind::accounting_on, 200));
    h.release_savepoint();
    h.rollback();
    EXPECT_FALSE(h.in_transaction());
    EXPECT_EQ(all_rows(db), strings{"198.51.100.7/32 alice s1 [0, open]"});
    // The history goes on.
    EXPECT_EQ(changes_text(h.apply(stop("s1", 300, "", {}))), strings{"unbind 198.51.100.7/32 alice"});
}

TEST_F(history_test, in_memory_the_same_rules) {
    binding_history h(":memory:");
    EXPECT_EQ(changes_text(h.apply(start("s1", 0, "alice", {"198.51.100.7"}))), strings{"bind 198.51.100.7/32 alice"});
    EXPECT_EQ(changes_text(h.apply(start("s2", 500, "bob", {"198.51.100.7"}))), strings{"bind 198.51.100.7/32 bob"});
    EXPECT_EQ(changes_text(h.apply(start("s1", 0, "alice", {"198.51.100.7"}))), strings{});
    EXPECT_EQ(changes_text(h.apply(stop("s1", 600, "alice", {"198.51.100.7"}))), strings{});
    EXPECT_EQ(accounts(h.who_held(addr("198.51.100.7"), t0 + 700)), strings{"bob"});
    EXPECT_FALSE(fs::exists(":memory:"));
}

// ---------------------------------------------------------------- file mode

mode_t mode_of(const std::string& file) {
    struct stat st {};
    EXPECT_EQ(::stat(file.c_str(), &st), 0) << file;
    return st.st_mode & 07777;
}

TEST_F(history_test, database_wal_and_shm_are_created_0640) {
    const mode_t old_umask = ::umask(022);   // the usual daemon umask: 0644 without the fix
    {
        binding_history h(db);
        h.apply(start("s1", 0, "alice", {"198.51.100.7"}));
        EXPECT_EQ(mode_of(db), 0640u);
        EXPECT_EQ(mode_of(db + "-wal"), 0640u);
        EXPECT_EQ(mode_of(db + "-shm"), 0640u);
    }
    ::umask(old_umask);
}

TEST_F(history_test, wider_modes_of_an_existing_history_are_narrowed) {
    { binding_history h(db); }
    // Left by an older release (or a crash, for the -wal and -shm).
    ASSERT_EQ(::chmod(db.c_str(), 0644), 0);
    std::ofstream(db + "-wal").close();
    std::ofstream(db + "-shm").close();
    ASSERT_EQ(::chmod((db + "-wal").c_str(), 0666), 0);
    ASSERT_EQ(::chmod((db + "-shm").c_str(), 0604), 0);
    {
        binding_history h(db);
        h.apply(start("s1", 0, "alice", {"198.51.100.7"}));
        EXPECT_EQ(mode_of(db), 0640u);
        EXPECT_EQ(mode_of(db + "-wal"), 0640u);
        EXPECT_EQ(mode_of(db + "-shm") & ~0640u, 0u) << "SQLite re-creates the -shm with the database's mode";
    }
    // A reader does not touch the modes.
    ASSERT_EQ(::chmod(db.c_str(), 0644), 0);
    { binding_history reader(db, binding_history::access::read_only); }
    EXPECT_EQ(mode_of(db), 0644u);
    // A narrower mode stays.
    ASSERT_EQ(::chmod(db.c_str(), 0600), 0);
    { binding_history h(db); }
    EXPECT_EQ(mode_of(db), 0600u);
}

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

TEST_F(history_test, open_within_lists_the_open_sessions_inside_a_prefix) {
    binding_history h(db);
    h.apply(update(binding_kind::start, "s1", t0, "alice@example.jp", "198.51.100.7", {"2001:db8:107::/56"}));
    h.apply(update(binding_kind::start, "s2", t0, "bob@example.jp", "198.51.100.200", {"2001:db8:1ff::/56"}));
    h.apply(update(binding_kind::start, "s3", t0, "carol@example.jp", "198.51.101.7", {"2001:db8:200::/56"}));
    h.apply(update(binding_kind::start, "s4", t0, "dave@example.jp", "198.51.100.9"));
    h.apply(update(binding_kind::stop, "s4", t0 + 10, "dave@example.jp", "198.51.100.9"));
    const auto addresses = [](const std::vector<binding_record>& rows) {
        strings out;
        for (const auto& r : rows) out.push_back(r.address.to_string() + " " + r.account);
        return out;
    };
    EXPECT_EQ(addresses(h.open_within(addr("198.51.100.0/24"), 100)),
              (strings{"198.51.100.7/32 alice@example.jp", "198.51.100.200/32 bob@example.jp"}))
        << "ordered by address; carol is outside, dave's session is closed";
    EXPECT_EQ(addresses(h.open_within(addr("198.51.100.7/32"), 100)), strings{"198.51.100.7/32 alice@example.jp"});
    EXPECT_EQ(addresses(h.open_within(addr("198.51.100.0/25"), 100)), strings{"198.51.100.7/32 alice@example.jp"});
    EXPECT_EQ(addresses(h.open_within(addr("0.0.0.0/0"), 100)).size(), 3u) << "IPv4 only, not the IPv6 rows";
    EXPECT_EQ(addresses(h.open_within(addr("2001:db8:100::/40"), 100)),
              (strings{"2001:db8:107::/56 alice@example.jp", "2001:db8:1ff::/56 bob@example.jp"}));
    EXPECT_TRUE(h.open_within(addr("2001:db8:107::/60"), 100).empty()) << "a /56 containing the /60 is not inside it";
    EXPECT_EQ(addresses(h.open_within(addr("198.51.100.0/24"), 1)), strings{"198.51.100.7/32 alice@example.jp"})
        << "bounded";
    EXPECT_TRUE(h.open_within(addr("198.51.100.0/24"), 0).empty());
    h.apply(update(binding_kind::stop, "s1", t0 + 20, "alice@example.jp", "198.51.100.7"));
    EXPECT_EQ(addresses(h.open_within(addr("198.51.100.0/24"), 100)), strings{"198.51.100.200/32 bob@example.jp"});
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
    EXPECT_EQ(one("PRAGMA user_version"), "3");
    EXPECT_EQ(one("SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master WHERE type = 'index' "
                  "AND name LIKE 'sessions_%' ORDER BY name)"),
              "sessions_by_address_span,sessions_by_change,sessions_by_session,sessions_closed_by_stop,"
              "sessions_open_by_nas");
    // Changes numbered by the statements, not by triggers (a trigger's second write halved the rate).
    EXPECT_EQ(one("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"), "0");
    EXPECT_EQ(one("SELECT n FROM history_changes"), "0");
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
                  .find("USING INDEX sessions_by_address_span"),
              std::string::npos);
    // The open rows of an address and of a range: the same index, stop_time read from it.
    EXPECT_NE(plan("SELECT id, start_time, account FROM sessions WHERE prefix = x'c6336407' AND prefix_length = 32 "
                   "AND stop_time IS NULL")
                  .find("USING INDEX sessions_by_address_span (prefix=? AND prefix_length=?)"),
              std::string::npos);
    EXPECT_NE(plan("SELECT * FROM sessions WHERE stop_time IS NULL AND prefix >= x'c6336400' AND prefix <= x'c63364ff' "
                   "AND family = 4 AND prefix_length >= 24 ORDER BY prefix, prefix_length, id LIMIT 10")
                  .find("USING INDEX sessions_by_address_span (prefix>? AND prefix<?)"),
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

// A version 2 history (two indexes by address, one for the open rows) is
// read as it is, and upgraded when opened for writing: the same answers.
TEST_F(history_test, a_version_2_history_is_upgraded_and_answers_the_same) {
    {
        binding_history h(db);
        h.apply(start("s1", 0, "alice", {"198.51.100.7", "2001:db8:107::/56"}));
        h.apply(start("s2", 10, "bob", {"198.51.100.8"}));
        h.apply(start("s3", 20, "carol", {"198.51.100.7"}));   // supersedes alice's .7
        h.apply(stop("s2", 30, "bob", {"198.51.100.8"}));
    }
    {
        sqlite3* raw = nullptr;
        ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(raw,
                               "DROP INDEX sessions_by_address_span;"
                               "CREATE INDEX sessions_by_address ON sessions (prefix, prefix_length, start_time);"
                               "CREATE INDEX sessions_open_by_address ON sessions (prefix, prefix_length) "
                               "WHERE stop_time IS NULL; PRAGMA user_version = 2;",
                               nullptr, nullptr, nullptr),
                  SQLITE_OK)
            << sqlite3_errmsg(raw);
        sqlite3_close(raw);
    }
    auto answers = [](binding_history& h) {
        strings out;
        for (const char* a : {"198.51.100.7", "198.51.100.8", "2001:db8:107::1"})
            for (const int64_t t : {5, 15, 25, 35}) {
                std::string line = std::string(a) + "@" + std::to_string(t) + ":";
                for (const auto& r : h.who_held(addr(a), t0 + t)) line += " " + r.account;
                out.push_back(line);
            }
        for (const auto& r : h.open_bindings()) out.push_back("open " + r.address.to_string() + " " + r.account);
        for (const auto& r : h.open_within(addr("198.51.100.0/24"), 10)) out.push_back("within " + r.address.to_string());
        return out;
    };
    strings before;
    {
        binding_history reader(db, binding_history::access::read_only);
        before = answers(reader);
    }
    EXPECT_EQ(before.size(), 15u);
    const strings rows = all_rows(db);
    binding_history h(db);   // for writing: upgraded
    EXPECT_EQ(answers(h), before);
    EXPECT_EQ(all_rows(db), rows);
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(raw,
                                 "SELECT (SELECT user_version FROM pragma_user_version) || ' ' || group_concat(name, ',') "
                                 "FROM (SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE "
                                 "'sessions_%address%' ORDER BY name)",
                                 -1, &st, nullptr),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))), "3 sessions_by_address_span");
    sqlite3_finalize(st);
    sqlite3_close(raw);
    // And it goes on: dave takes .8.
    h.apply(start("s4", 40, "dave", {"198.51.100.8"}));
    EXPECT_EQ(accounts(h.who_held(addr("198.51.100.8"), t0 + 45)), strings{"dave"});
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

// The change numbers the fleet's binding shipper follows: every write
// transaction takes the next one and every row it writes carries it; a
// retransmission writes no row; a purge of the newest-numbered rows does not
// set the counter back.
TEST_F(history_test, every_write_transaction_numbers_the_rows_it_writes) {
    binding_history h(db);
    auto numbers = [&] {
        sqlite3* raw = nullptr;
        sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
        sqlite3_stmt* st = nullptr;
        sqlite3_prepare_v2(raw,
                           "SELECT group_concat(session_id || '=' || change_seq, ',') FROM (SELECT session_id, "
                           "change_seq FROM sessions ORDER BY id)",
                           -1, &st, nullptr);
        std::string v;
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            v = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        sqlite3_close(raw);
        return v;
    };
    h.apply(update(binding_kind::start, "a", t0, "alice@example.jp", "198.51.100.1"));
    h.apply(update(binding_kind::start, "b", t0 + 1, "bob@example.jp", "198.51.100.2"));
    EXPECT_EQ(numbers(), "a=1,b=2");
    h.apply(update(binding_kind::start, "a", t0, "alice@example.jp", "198.51.100.1"));   // retransmitted: transaction 3
    EXPECT_EQ(numbers(), "a=1,b=2");
    h.apply(update(binding_kind::stop, "a", t0 + 10, "alice@example.jp", "198.51.100.1"));
    EXPECT_EQ(numbers(), "a=4,b=2");
    // c supersedes b (b's Stop was lost): both rows written by one transaction.
    h.apply(update(binding_kind::start, "c", t0 + 20, "carol@example.jp", "198.51.100.2"));
    EXPECT_EQ(numbers(), "a=4,b=5,c=5");
    // An Accounting-On closes every open row of the NAS: all with the transaction's number.
    h.apply(update(binding_kind::start, "e", t0 + 21, "erin@example.jp", "198.51.100.4"));
    h.apply(update(binding_kind::accounting_on, "", t0 + 30, "", std::nullopt));
    EXPECT_EQ(numbers(), "a=4,b=5,c=7,e=7");
    // The savepoint batch (the RADIUS listener's): one number for the batch.
    h.begin();
    h.apply_in_savepoint(update(binding_kind::start, "f", t0 + 40, "frank@example.jp", "198.51.100.5"));
    h.release_savepoint();
    h.apply_in_savepoint(update(binding_kind::start, "g", t0 + 40, "grace@example.jp", "198.51.100.6"));
    h.release_savepoint();
    h.commit();
    EXPECT_EQ(numbers(), "a=4,b=5,c=7,e=7,f=8,g=8");
    h.apply(update(binding_kind::stop, "f", t0 + 50, "frank@example.jp", "198.51.100.5"));
    h.apply(update(binding_kind::stop, "g", t0 + 50, "grace@example.jp", "198.51.100.6"));
    EXPECT_EQ(h.purge_older_than(std::chrono::seconds(0), t0 + 1000), 6u);
    EXPECT_EQ(numbers(), "");
    h.apply(update(binding_kind::start, "d", t0 + 2000, "dave@example.jp", "198.51.100.3"));
    EXPECT_EQ(numbers(), "d=11");
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
                  db + ": read the schema version (PRAGMA user_version): version 7 is newer than this release reads (3)");
    }
}

}  // namespace
}  // namespace sekisho
