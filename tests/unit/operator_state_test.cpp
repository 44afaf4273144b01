// The operator state: suspensions and API bindings over a sequence of
// changes and reopens (a restart), the file's mode, a write that fails
// midway (the file cannot grow: RLIMIT_FSIZE; another process holds the
// lock) changing nothing, and files that are not a state database.
#include "control/state/operator_state.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace sekisho {
namespace {

namespace fs = std::filesystem;

ip_prefix addr(const char* text) {
    std::string err;
    auto p = parse_prefix(text, err);
    if (!p) throw std::runtime_error(err);
    return *p;
}

std::vector<std::string> suspended_names(const operator_state& s) {
    std::vector<std::string> out;
    for (const auto& r : s.suspensions()) out.push_back(r.account);
    return out;
}

std::vector<std::string> binding_lines(const operator_state& s) {
    std::vector<std::string> out;
    for (const auto& b : s.bindings()) out.push_back(b.prefix.to_string() + " " + b.account);
    return out;
}

using strings = std::vector<std::string>;

struct operator_state_test : ::testing::Test {
    std::string dir, path;
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "sekisho-operator-XXXXXX").string();
        ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
        dir = tmpl;
        path = dir + "/operator.db";
    }
    void TearDown() override { fs::remove_all(dir); }
};

TEST_F(operator_state_test, a_sequence_of_changes_is_exactly_what_a_reopen_finds) {
    {
        operator_state s(path);
        EXPECT_TRUE(s.suspend({"alice@example.jp", 1795400000, "uid 0", ""}));
        EXPECT_TRUE(s.suspend({"bob@example.jp", 1795400010, "quarantine", "content rule x"}));
        // A second suspension keeps the first record.
        EXPECT_FALSE(s.suspend({"alice@example.jp", 1795400099, "someone else", "again"}));
        EXPECT_TRUE(s.suspend({"carol@example.jp", 1795400020, "uid 0", ""}));
        EXPECT_TRUE(s.resume("carol@example.jp"));
        EXPECT_FALSE(s.resume("carol@example.jp"));
        EXPECT_FALSE(s.resume("nobody@example.jp"));
        s.add_binding({addr("198.51.100.7/32"), "alice@example.jp", 1795400030, "uid 0", "[]"});
        s.add_binding({addr("2001:db8:100:1100::/56"), "bob@example.jp", 1795400031, "uid 0", "[]"});
        s.add_binding({addr("198.51.100.8/32"), "carol@example.jp", 1795400032, "uid 0", "[]"});
        // The same prefix again: replaced.
        s.add_binding({addr("198.51.100.7/32"), "dave@example.jp", 1795400033, "uid 0",
                       R"([{"account":"alice@example.jp","source":"api"}])"});
        EXPECT_TRUE(s.remove_binding(addr("198.51.100.8/32")));
        EXPECT_FALSE(s.remove_binding(addr("198.51.100.8/32")));
        EXPECT_FALSE(s.remove_binding(addr("198.51.100.0/24")));
    }
    operator_state again(path);
    EXPECT_EQ(suspended_names(again), (strings{"alice@example.jp", "bob@example.jp"}));
    const auto sus = again.suspensions();
    EXPECT_EQ(sus[0].since, 1795400000);
    EXPECT_EQ(sus[0].caller, "uid 0");
    EXPECT_EQ(sus[1].caller, "quarantine");
    EXPECT_EQ(sus[1].reason, "content rule x");
    EXPECT_TRUE(again.suspended("bob@example.jp"));
    EXPECT_FALSE(again.suspended("carol@example.jp"));
    EXPECT_EQ(binding_lines(again), (strings{"2001:db8:100:1100::/56 bob@example.jp", "198.51.100.7/32 dave@example.jp"}));
    const auto b = again.bindings();
    EXPECT_EQ(b[1].overrode, R"([{"account":"alice@example.jp","source":"api"}])");
    EXPECT_EQ(b[1].since, 1795400033);
}

TEST_F(operator_state_test, the_file_is_0640_and_a_wider_one_is_narrowed) {
    { operator_state s(path); }
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    ASSERT_EQ(::chmod(path.c_str(), 0666), 0);
    { operator_state s(path); }
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
}

// The file cannot grow (the disk full, as RLIMIT_FSIZE makes it for this
// process): the change fails with the file's name, nothing of it is stored,
// and the next change once there is room is.
TEST_F(operator_state_test, a_write_the_disk_cannot_take_changes_nothing) {
    operator_state s(path);
    ASSERT_TRUE(s.suspend({"alice@example.jp", 1795400000, "uid 0", ""}));
    s.add_binding({addr("198.51.100.7/32"), "alice@example.jp", 1795400001, "uid 0", "[]"});
    auto (*previous)(int) = std::signal(SIGXFSZ, SIG_IGN);
    rlimit old{};
    ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
    uintmax_t largest = fs::file_size(path);
    if (fs::exists(path + "-wal")) largest = std::max(largest, fs::file_size(path + "-wal"));
    rlimit tight = old;
    tight.rlim_cur = largest + 512;
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &tight), 0);
    const std::string long_reason(256 * 1024, 'x');
    std::string error;
    try {
        s.suspend({"bob@example.jp", 1795400002, "uid 0", long_reason});
    } catch (const operator_state_error& e) {
        error = e.what();
        EXPECT_FALSE(e.busy());
    }
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
    std::signal(SIGXFSZ, previous);
    EXPECT_NE(error.find(path + ": record a suspension (INSERT INTO suspensions): "), std::string::npos) << error;
    EXPECT_FALSE(s.suspended("bob@example.jp"));
    EXPECT_EQ(suspended_names(s), (strings{"alice@example.jp"}));
    // Room again: the same connection stores the next change.
    EXPECT_TRUE(s.suspend({"carol@example.jp", 1795400003, "uid 0", ""}));
    EXPECT_TRUE(s.remove_binding(addr("198.51.100.7/32")));
    operator_state again(path);
    EXPECT_EQ(suspended_names(again), (strings{"alice@example.jp", "carol@example.jp"}));
    EXPECT_TRUE(again.bindings().empty());
}

// Another process holds the write lock (the sqlite3 shell in a transaction):
// the change fails after the short busy wait, says so (busy: worth a retry),
// changes nothing, and succeeds once the lock is gone.
TEST_F(operator_state_test, a_write_while_another_process_holds_the_lock_fails_and_changes_nothing) {
    operator_state s(path);
    sqlite3* other = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
    bool busy = false;
    std::string error;
    try {
        s.suspend({"alice@example.jp", 1795400000, "uid 0", ""});
    } catch (const operator_state_error& e) {
        busy = e.busy();
        error = e.what();
    }
    EXPECT_TRUE(busy) << error;
    EXPECT_NE(error.find("database is locked"), std::string::npos) << error;
    ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(other);
    EXPECT_FALSE(s.suspended("alice@example.jp"));
    EXPECT_TRUE(s.suspend({"alice@example.jp", 1795400000, "uid 0", ""}));
    EXPECT_TRUE(s.suspended("alice@example.jp"));
}

TEST_F(operator_state_test, a_file_that_is_not_a_database_is_refused_naming_it) {
    {
        std::ofstream f(path);
        f << std::string(8192, 'J') << "unk, not SQLite\n";
    }
    try {
        operator_state s(path);
        FAIL() << "opened a file that is not a database";
    } catch (const operator_state_error& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find(path + ": "), std::string::npos) << what;
        EXPECT_NE(what.find("file is not a database"), std::string::npos) << what;
    }
}

TEST_F(operator_state_test, a_newer_schema_and_a_prefix_edited_by_hand_are_refused_naming_them) {
    {
        operator_state s(path);
        s.add_binding({addr("198.51.100.7/32"), "alice@example.jp", 1795400000, "uid 0", "[]"});
    }
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "UPDATE api_bindings SET prefix = '198.51.100.300/32'", nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
    {
        operator_state s(path);
        try {
            s.bindings();
            FAIL() << "a bad prefix was read";
        } catch (const operator_state_error& e) {
            EXPECT_NE(std::string(e.what()).find(path + ": api_bindings: prefix '198.51.100.300/32'"), std::string::npos)
                << e.what();
        }
    }
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=7", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
    try {
        operator_state s(path);
        FAIL() << "opened a newer schema";
    } catch (const operator_state_error& e) {
        EXPECT_NE(std::string(e.what()).find("version 7 is newer than this release reads (3)"), std::string::npos)
            << e.what();
    }
}

// Fleet mode: a local change and its outbox row are one transaction; a change
// from the fleet writes the suspension and the cursor, never the outbox.
TEST_F(operator_state_test, the_fleet_outbox_is_written_with_the_change_or_not_at_all) {
    {
        operator_state s(path);
        s.suspend({"alice@example.jp", 1795400000, "uid 0", ""});
        EXPECT_TRUE(s.outbox().empty());   // not in fleet mode: nothing queued
        s.set_fleet_outbox(true);
        s.suspend({"bob@example.jp", 1795400001, "uid 0", "spam"});
        s.resume("alice@example.jp", "uid 1000", 1795400002);
        s.resume("nobody@example.jp", "uid 1000", 1795400003);   // the fleet may have it suspended
        const auto out = s.outbox();
        ASSERT_EQ(out.size(), 3u);
        EXPECT_EQ(out[0].kind, "suspend");
        EXPECT_EQ(out[0].account, "bob@example.jp");
        EXPECT_EQ(out[0].reason, "spam");
        EXPECT_EQ(out[0].at, 1795400001);
        EXPECT_EQ(out[1].kind, "resume");
        EXPECT_EQ(out[1].caller, "uid 1000");
        EXPECT_EQ(out[0].change_id.size(), 32u);
        EXPECT_NE(out[0].change_id, out[1].change_id);
        EXPECT_EQ(s.outbox_writes(), 3u);
        EXPECT_TRUE(s.remove_from_outbox(out[0].change_id));
        EXPECT_FALSE(s.remove_from_outbox(out[0].change_id));
        s.queue_outbox(out[1]);   // the same key again: still one row
        EXPECT_EQ(s.outbox().size(), 2u);
    }
    // The outbox row cannot be written: the suspension is not stored either.
    sqlite3* other = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(other,
                           "CREATE TRIGGER refuse BEFORE INSERT ON fleet_outbox BEGIN SELECT RAISE(ABORT, 'refused'); END",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(other);
    operator_state s(path);
    s.set_fleet_outbox(true);
    EXPECT_THROW(s.suspend({"carol@example.jp", 1795400004, "uid 0", ""}), operator_state_error);
    EXPECT_FALSE(s.suspended("carol@example.jp"));
    EXPECT_THROW(s.resume("bob@example.jp", "uid 0", 1795400005), operator_state_error);
    EXPECT_TRUE(s.suspended("bob@example.jp"));
    EXPECT_EQ(s.outbox().size(), 2u);
}

TEST_F(operator_state_test, a_fleet_change_stores_the_suspension_and_the_cursor_together) {
    {
        operator_state s(path);
        s.set_fleet_outbox(true);
        EXPECT_EQ(s.cursor().last_id, 0);
        fleet_change c{7, "k7", "suspend", "mallory@example.jp", "gw-a", "uid 0", "spam", 1795400000};
        EXPECT_EQ(s.apply_fleet_change(c), fleet_apply::changed);
        EXPECT_EQ(s.apply_fleet_change(c), fleet_apply::unchanged);
        EXPECT_TRUE(s.outbox().empty());   // no echo
        const auto r = s.suspensions();
        ASSERT_EQ(r.size(), 1u);
        EXPECT_EQ(r[0].caller, "uid 0");
        EXPECT_EQ(r[0].since, 1795400000);
        // A local change of the account waits for the fleet: the fleet's older one is skipped.
        s.resume("mallory@example.jp", "uid 1000", 1795400001);
        fleet_change again{8, "k8", "suspend", "mallory@example.jp", "gw-b", "uid 0", "", 1795400000};
        EXPECT_EQ(s.apply_fleet_change(again), fleet_apply::superseded);
        EXPECT_FALSE(s.suspended("mallory@example.jp"));
        EXPECT_EQ(s.cursor().last_id, 8);
        fleet_change resume{9, "k9", "resume", "other@example.jp", "gw-b", "uid 0", "", 1795400002};
        EXPECT_EQ(s.apply_fleet_change(resume), fleet_apply::unchanged);
    }
    operator_state reopened(path);
    EXPECT_EQ(reopened.cursor().last_id, 9);
    EXPECT_EQ(reopened.cursor().change_id, "k9");
    EXPECT_EQ(reopened.cursor().at, 1795400002);
}

// The tables of schema version 1, as an earlier release wrote them.
constexpr const char* version_1_tables =
    "CREATE TABLE suspensions (account TEXT PRIMARY KEY, since INTEGER NOT NULL, caller TEXT NOT NULL, reason TEXT "
    "NOT NULL);"
    "CREATE TABLE api_bindings (prefix TEXT PRIMARY KEY, account TEXT NOT NULL, since INTEGER NOT NULL, caller TEXT "
    "NOT NULL, overrode TEXT NOT NULL);";

// Writes a file of an earlier release: `sql` run on a new database at `path`.
void write_old_file(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
}

TEST_F(operator_state_test, a_version_1_file_gains_the_fleet_tables_and_keeps_its_rows) {
    write_old_file(path, std::string(version_1_tables) +
                             "INSERT INTO suspensions VALUES ('alice@example.jp', 1795400000, 'uid 0', '');"
                             "PRAGMA user_version=1;");
    operator_state s(path);
    EXPECT_EQ(suspended_names(s), (strings{"alice@example.jp"}));
    s.set_fleet_outbox(true);
    s.suspend({"bob@example.jp", 1795400001, "uid 0", ""});
    EXPECT_EQ(s.outbox().size(), 1u);
}

// Version 2 had the outbox without the binding and reset columns: a queued
// suspension survives the upgrade, and a binding then queues its prefix.
TEST_F(operator_state_test, a_version_2_outbox_gains_the_prefix_and_detail_columns_and_keeps_its_rows) {
    write_old_file(path, std::string(version_1_tables) +
                             "CREATE TABLE fleet_outbox (seq INTEGER PRIMARY KEY, change_id TEXT NOT NULL UNIQUE, kind "
                             "TEXT NOT NULL, account TEXT NOT NULL, caller TEXT NOT NULL, reason TEXT NOT NULL, at "
                             "INTEGER NOT NULL);"
                             "CREATE TABLE fleet_cursor (one INTEGER PRIMARY KEY CHECK (one = 1), last_id INTEGER NOT "
                             "NULL, change_id TEXT NOT NULL, at INTEGER NOT NULL);"
                             "INSERT INTO fleet_outbox (change_id, kind, account, caller, reason, at) VALUES "
                             "('k1', 'suspend', 'alice@example.jp', 'uid 0', 'spam', 1795400000);"
                             "PRAGMA user_version=2;");
    {
        operator_state s(path);
        s.set_fleet_outbox(true);
        const std::string id = s.add_binding({addr("198.51.100.7/32"), "bob@example.jp", 1795400001, "uid 0", "[]"});
        EXPECT_EQ(id.size(), 32u);
        EXPECT_TRUE(s.remove_binding(addr("198.51.100.7/32"), true, "uid 0", 1795400002));
        // Taken back (the table was full): neither the binding nor a change for the fleet.
        const std::string undone = s.add_binding({addr("198.51.100.8/32"), "carol@example.jp", 1795400003, "uid 0", "[]"});
        EXPECT_TRUE(s.remove_from_outbox(undone));
        EXPECT_TRUE(s.remove_binding(addr("198.51.100.8/32"), false));
    }
    operator_state s(path);   // opened again: the columns are added once
    const std::vector<fleet_change> out = s.outbox();
    ASSERT_EQ(out.size(), 3u);
    EXPECT_EQ(out[0].change_id, "k1");
    EXPECT_EQ(out[0].prefix, "");
    EXPECT_EQ(out[1].kind, "bind");
    EXPECT_EQ(out[1].prefix, "198.51.100.7/32");
    EXPECT_EQ(out[1].account, "bob@example.jp");
    EXPECT_EQ(out[2].kind, "unbind");
    EXPECT_EQ(out[2].prefix, "198.51.100.7/32");
    EXPECT_EQ(out[2].at, 1795400002);
    EXPECT_TRUE(s.bindings().empty());
}

// A binding change from the fleet: stored with the cursor; a local change of the
// same prefix still waiting wins; the same binding again changes nothing.
TEST_F(operator_state_test, a_fleet_binding_change_is_stored_with_the_cursor_unless_a_local_one_waits) {
    operator_state s(path);
    s.set_fleet_outbox(true);
    fleet_change bind{1, "c1", "bind", "dave@example.jp", "gw-z", "desk", "", 1795400010, "198.51.100.9/32", "[]"};
    EXPECT_EQ(s.apply_fleet_change(bind), fleet_apply::changed);
    EXPECT_EQ(s.cursor().last_id, 1);
    ASSERT_EQ(s.bindings().size(), 1u);
    EXPECT_EQ(s.bindings()[0].account, "dave@example.jp");
    EXPECT_TRUE(s.outbox().empty());   // no echo
    bind.id = 2;
    bind.change_id = "c2";
    EXPECT_EQ(s.apply_fleet_change(bind), fleet_apply::unchanged);
    s.add_binding({addr("198.51.100.9/32"), "erin@example.jp", 1795400011, "uid 0", "[]"});
    fleet_change unbind{3, "c3", "unbind", "", "gw-z", "desk", "", 1795400012, "198.51.100.9/32", ""};
    EXPECT_EQ(s.apply_fleet_change(unbind), fleet_apply::superseded);
    EXPECT_EQ(s.bindings()[0].account, "erin@example.jp");
    EXPECT_EQ(s.cursor().last_id, 3);
}

}  // namespace
}  // namespace sekisho
