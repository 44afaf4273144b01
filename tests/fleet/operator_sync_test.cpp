// Operator state across the fleet: two gateways in this process, each with
// its own operator.db and account registry, sharing the real PostgreSQL that
// with_fleet_stores.sh started (SEKISHO_TEST_PG_*). The store is stopped,
// killed, restarted and restored from a dump through tests/fleet/fleet_stores.sh.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "control/fleet/operator_sync.h"
#include "control/identity/account_registry.h"
#include "control/state/operator_state.h"

namespace sekisho {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

// Runs `script` with fleet_stores.sh sourced on the test's cluster; returns the exit status.
int stores(const std::string& script) {
    const std::string file = ::testing::TempDir() + "/operator-sync-stores.sh";
    {
        std::ofstream f(file);
        f << "source " SEKISHO_SOURCE_ROOT "/tests/fleet/fleet_stores.sh\n"
          << "FLEET_DIR='" << env("SEKISHO_TEST_PG_DIR") << "'\n"
          << "FLEET_PG_PID=\"$(head -n 1 \"$FLEET_DIR/pg/postmaster.pid\" 2>/dev/null)\"\n"
          << script << "\n";
    }
    return std::system(("bash " + file).c_str());
}

// The first value psql prints for `sql`, as the superuser.
std::string psql_value(const std::string& sql) {
    const std::string out = ::testing::TempDir() + "/psql.out";
    EXPECT_EQ(stores("fleet_psql \"" + sql + "\" >" + out), 0) << sql;
    std::string v;
    if (FILE* f = std::fopen(out.c_str(), "r")) {
        char buf[256];
        if (std::fgets(buf, sizeof buf, f)) v = buf;
        std::fclose(f);
    }
    while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
    return v;
}

// One gateway: its operator.db, its accounts, its fleet link for operator state.
struct gateway {
    gateway(const std::string& name, const std::string& dir, std::chrono::milliseconds fallback = 1000ms)
        : name(name), db(dir + "/" + name + "-operator.db"), fallback(fallback) {
        accounts = std::make_unique<account_registry>(1024);
        open();
    }
    void open() {
        decisions = std::make_unique<operator_state>(db);
        for (const auto& s : decisions->suspensions()) accounts->set_suspended(accounts->id_of(s.account), true);
        operator_sync_options o;
        o.gateway = name;
        o.conninfo_file = env("SEKISHO_TEST_PG_CONNINFO");
        o.poll_interval = fallback;
        o.log = [n = name](const std::string& line) { std::fprintf(stderr, "[%s] %s\n", n.c_str(), line.c_str()); };
        o.audit = [this](nlohmann::json rec) {
            std::lock_guard lock(mu);
            audits.push_back(std::move(rec));
        };
        sync = std::make_unique<operator_sync>(std::move(o), *decisions, accounts.get());
    }
    // What sekishod's process loses at kill -9: everything in memory, not operator.db.
    void crash() {
        sync.reset();
        decisions.reset();
    }
    // What the control API does for `account suspend` / `resume`: durable, then in force.
    void suspend(const std::string& account) {
        decisions->suspend({account, static_cast<int64_t>(std::time(nullptr)), "operator-" + name, "spam report"});
        accounts->set_suspended(accounts->id_of(account), true);
    }
    void resume(const std::string& account) {
        decisions->resume(account, "operator-" + name, static_cast<int64_t>(std::time(nullptr)));
        accounts->set_suspended(accounts->id_of(account), false);
    }
    bool suspended(const std::string& account) { return accounts->suspended(accounts->id_of(account)); }
    std::vector<nlohmann::json> audit_records() {
        std::lock_guard lock(mu);
        return audits;
    }

    std::string name, db;
    std::chrono::milliseconds fallback;
    std::unique_ptr<account_registry> accounts;
    std::unique_ptr<operator_state> decisions;
    std::unique_ptr<operator_sync> sync;
    std::mutex mu;
    std::vector<nlohmann::json> audits;
};

class OperatorSync : public ::testing::Test {
protected:
    void SetUp() override {
        if (env("SEKISHO_TEST_PG_CONNINFO").empty()) GTEST_SKIP() << "run through with_fleet_stores.sh";
        dir = ::testing::TempDir() + "/operator-sync-" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
        ASSERT_EQ(stores("fleet_psql \"DROP TABLE IF EXISTS operator_changes, fleet_suspensions\" >/dev/null"), 0);
    }
    // Turns every gateway's control thread (10 ms, as sekishod) until `done` or `limit`.
    bool turn_until(std::vector<gateway*> gws, const std::function<bool()>& done, std::chrono::milliseconds limit) {
        const auto end = clock_type::now() + limit;
        while (clock_type::now() < end) {
            for (gateway* g : gws)
                if (g->sync) g->sync->poll();
            if (done()) return true;
            std::this_thread::sleep_for(10ms);
        }
        return false;
    }
    std::string dir;
};

TEST_F(OperatorSync, SuspensionOnAIsInForceOnBWithinASecondAndResumeLikewise) {
    // The fallback read far away: within a second is NOTIFY's doing.
    gateway a("gw-a", dir, 20s), b("gw-b", dir, 20s);
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.sync->link_up() && b.sync->link_up(); }, 10s));

    const auto t0 = clock_type::now();
    a.suspend("mallory@example.jp");
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return b.suspended("mallory@example.jp"); }, 5s));
    const double took = std::chrono::duration<double>(clock_type::now() - t0).count();
    std::printf("suspension on gw-a in force on gw-b after %.3f s\n", took);
    EXPECT_LT(took, 1.0);
    // Durable on B, with A's caller and reason; audited on B naming A.
    EXPECT_TRUE(b.decisions->suspended("mallory@example.jp"));
    const auto recorded = b.decisions->suspensions();
    ASSERT_EQ(recorded.size(), 1u);
    EXPECT_EQ(recorded[0].caller, "operator-gw-a");
    EXPECT_EQ(recorded[0].reason, "spam report");
    const auto audits = b.audit_records();
    ASSERT_EQ(audits.size(), 1u);
    EXPECT_EQ(audits[0]["endpoint"], "account_suspend");
    EXPECT_EQ(audits[0]["origin_gateway"], "gw-a");
    EXPECT_EQ(audits[0]["account"], "mallory@example.jp");

    const auto t1 = clock_type::now();
    b.resume("mallory@example.jp");
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return !a.suspended("mallory@example.jp"); }, 5s));
    const double took_resume = std::chrono::duration<double>(clock_type::now() - t1).count();
    std::printf("resumption on gw-b in force on gw-a after %.3f s\n", took_resume);
    EXPECT_LT(took_resume, 1.0);
    EXPECT_FALSE(a.decisions->suspended("mallory@example.jp"));

    // No echo: two changes in the log, each published once; both outboxes empty; each
    // gateway saw both changes (its own changes nothing).
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.sync->applied() == 2 && b.sync->applied() == 2; }, 5s));
    turn_until({&a, &b}, [] { return false; }, 1000ms);   // an echo would show by now
    EXPECT_EQ(psql_value("SELECT count(*) FROM operator_changes"), "2");
    EXPECT_EQ(psql_value("SELECT string_agg(gateway || ':' || kind, ',' ORDER BY id) FROM operator_changes"),
              "gw-a:suspend,gw-b:resume");
    EXPECT_EQ(psql_value("SELECT count(*) FROM fleet_suspensions"), "0");
    EXPECT_EQ(a.sync->published(), 1u);
    EXPECT_EQ(b.sync->published(), 1u);
    EXPECT_TRUE(a.decisions->outbox().empty());
    EXPECT_TRUE(b.decisions->outbox().empty());
    EXPECT_EQ(a.audit_records().size(), 1u);   // B's resume only
    EXPECT_EQ(b.audit_records().size(), 1u);   // A's suspend only
    EXPECT_EQ(b.decisions->cursor().last_id, 2);
    EXPECT_EQ(b.sync->lag(), 0);

    // B's control thread stalls: its fleet thread has read A's change, the lag says so.
    a.suspend("lagger@example.jp");
    ASSERT_TRUE(turn_until({&a}, [&] { return b.sync->lag() == 1; }, 5s)) << b.sync->status().dump();
    EXPECT_FALSE(b.suspended("lagger@example.jp"));
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return b.suspended("lagger@example.jp"); }, 1s));
    EXPECT_EQ(b.sync->lag(), 0);
}

TEST_F(OperatorSync, OutboxSurvivesTheStoreKilledAndTheGatewayCrashed) {
    gateway a("gw-a", dir), b("gw-b", dir);
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.sync->link_up() && b.sync->link_up(); }, 10s));
    ASSERT_EQ(stores("fleet_kill_postgres"), 0);
    a.suspend("botnet-1@example.jp");
    a.suspend("botnet-2@example.jp");
    turn_until({&a, &b}, [] { return false; }, 500ms);   // the thread tries, the store is gone
    EXPECT_EQ(a.decisions->outbox().size(), 2u);
    EXPECT_TRUE(a.suspended("botnet-1@example.jp"));   // enforced here meanwhile
    EXPECT_FALSE(b.suspended("botnet-1@example.jp"));
    a.crash();   // kill -9 of gateway A while the store is down
    a.open();
    EXPECT_EQ(a.decisions->outbox().size(), 2u);
    EXPECT_TRUE(a.decisions->suspended("botnet-2@example.jp"));

    ASSERT_EQ(stores("fleet_start_postgres"), 0);
    ASSERT_TRUE(turn_until(
        {&a, &b}, [&] { return b.suspended("botnet-1@example.jp") && b.suspended("botnet-2@example.jp"); }, 20s));
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.decisions->outbox().empty(); }, 5s));
    EXPECT_EQ(psql_value("SELECT count(*) FROM operator_changes"), "2");
    EXPECT_EQ(psql_value("SELECT string_agg(account, ',' ORDER BY account) FROM fleet_suspensions"),
              "botnet-1@example.jp,botnet-2@example.jp");
    EXPECT_TRUE(a.sync->link_up());
    EXPECT_TRUE(b.sync->link_up());
}

TEST_F(OperatorSync, ResendAfterACrashBetweenCommitAndDeleteInsertsNothingTwice) {
    gateway a("gw-a", dir), b("gw-b", dir);
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.sync->link_up() && b.sync->link_up(); }, 10s));
    a.suspend("replay@example.jp");
    const std::vector<fleet_change> queued = a.decisions->outbox();
    ASSERT_EQ(queued.size(), 1u);
    ASSERT_EQ(queued[0].change_id.size(), 32u);
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.decisions->outbox().empty() && b.suspended("replay@example.jp"); },
                           5s));
    // The crash between PostgreSQL's COMMIT and the outbox delete leaves the row behind:
    // after the restart it is sent again, under the same key.
    a.crash();
    {
        operator_state s(a.db);
        s.queue_outbox(queued[0]);
        ASSERT_EQ(s.outbox().size(), 1u);
    }
    a.open();
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.decisions->outbox().empty(); }, 5s));
    turn_until({&a, &b}, [] { return false; }, 1500ms);
    EXPECT_EQ(psql_value("SELECT count(*) FROM operator_changes"), "1");
    EXPECT_EQ(psql_value("SELECT change_id FROM operator_changes"), queued[0].change_id);
    EXPECT_EQ(b.audit_records().size(), 1u);
    EXPECT_EQ(b.sync->applied(), 1u);
}

TEST_F(OperatorSync, AStoreRestoredFromAnOlderBackupDoesNotRollAGatewayBack) {
    gateway a("gw-a", dir), b("gw-b", dir);
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.sync->link_up() && b.sync->link_up(); }, 10s));
    a.suspend("early@example.jp");
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return b.suspended("early@example.jp"); }, 5s));
    const std::string dump = env("SEKISHO_TEST_PG_DIR") + "/operator-backup.sql";
    ASSERT_EQ(stores("_fleet_pg \"$FLEET_PG_BIN/pg_dump\" -h \"$FLEET_DIR/pgsock\" -p \"$(_fleet_pg_port)\" -d sekisho -t operator_changes "
                     "-t fleet_suspensions >" + dump),
              0);
    std::this_thread::sleep_for(1100ms);   // the later changes carry a later time
    a.suspend("late@example.jp");
    a.resume("early@example.jp");
    ASSERT_TRUE(turn_until(
        {&a, &b}, [&] { return b.suspended("late@example.jp") && !b.suspended("early@example.jp"); }, 5s));
    // Both have applied all three (a gateway that applied less finds the store no older than itself).
    ASSERT_TRUE(turn_until({&a, &b}, [&] {
        return a.decisions->outbox().empty() && a.decisions->cursor().last_id == 3 && b.decisions->cursor().last_id == 3;
    }, 5s));

    // The store comes back from the backup (one change: early suspended, no later ones), in one
    // transaction: A is down meanwhile (it finds out at connect), B runs on (it finds out on a read).
    a.crash();
    ASSERT_EQ(stores("{ echo 'DROP TABLE operator_changes, fleet_suspensions;'; cat " + dump +
                     "; } | _fleet_pg \"$FLEET_PG_BIN/psql\" -X -q -1 -v ON_ERROR_STOP=1 -h \"$FLEET_DIR/pgsock\" -p \"$(_fleet_pg_port)\" "
                     "-d sekisho >/dev/null"),
              0);
    ASSERT_EQ(psql_value("SELECT max(id) FROM operator_changes"), "1");
    a.open();
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.sync->regressions() == 1 && b.sync->regressions() == 1; }, 10s));
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.decisions->outbox().empty() && b.decisions->outbox().empty(); },
                           5s));
    turn_until({&a, &b}, [] { return false; }, 1500ms);
    // Nothing rolled back: early stays resumed, late stays suspended, on both.
    for (gateway* g : {&a, &b}) {
        EXPECT_FALSE(g->suspended("early@example.jp")) << g->name;
        EXPECT_TRUE(g->suspended("late@example.jp")) << g->name;
        EXPECT_FALSE(g->decisions->suspended("early@example.jp")) << g->name;
        EXPECT_TRUE(g->decisions->suspended("late@example.jp")) << g->name;
    }
    // The local suspension the store lacked is in it again.
    EXPECT_EQ(psql_value("SELECT count(*) FROM fleet_suspensions WHERE account = 'late@example.jp'"), "1");
    // And the fleet goes on: a change after the restore reaches the other gateway.
    a.suspend("after@example.jp");
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return b.suspended("after@example.jp"); }, 5s));
}

TEST_F(OperatorSync, ABadChangeInTheLogIsSkippedNamedAndCounted) {
    gateway b("gw-b", dir);
    ASSERT_TRUE(turn_until({&b}, [&] { return b.sync->link_up(); }, 10s));
    ASSERT_EQ(stores("fleet_psql \"INSERT INTO operator_changes (change_id, kind, account, gateway, caller, at) VALUES "
                     "('c1', 'reboot', 'x@example.jp', 'gw-z', 'desk', now()), "
                     "('c2', 'suspend', '', 'gw-z', 'desk', now()), "
                     "('c3', 'suspend', 'ok@example.jp', 'gw-z', 'desk', now())\" >/dev/null"),
              0);
    ASSERT_TRUE(turn_until({&b}, [&] { return b.suspended("ok@example.jp"); }, 5s));
    EXPECT_EQ(b.sync->status()["rejected_total"], 2);
    EXPECT_EQ(b.decisions->cursor().last_id, 3);
    EXPECT_FALSE(b.decisions->suspended(""));
}

// A gateway that was away catches up on many changes a slice per control-thread turn
// (each is an fsynced SQLite transaction: RADIUS and the API must not wait), in order.
TEST_F(OperatorSync, ALongCatchUpIsAppliedASliceATurnInOrder) {
    gateway b("gw-b", dir);
    ASSERT_TRUE(turn_until({&b}, [&] { return b.sync->link_up(); }, 10s));
    ASSERT_EQ(stores("fleet_psql \"INSERT INTO operator_changes (change_id, kind, account, gateway, caller, at) "
                     "SELECT 'bulk-' || n, CASE WHEN n % 2 = 1 THEN 'suspend' ELSE 'resume' END, "
                     "'acct-' || ((n + 1) / 2), 'gw-z', 'desk', now() FROM generate_series(1, 199) AS n\" >/dev/null"),
              0);
    // Thread only: it reads all of them, the control thread has applied none.
    const auto end = clock_type::now() + 5s;
    while (b.sync->lag() != 199 && clock_type::now() < end) std::this_thread::sleep_for(10ms);
    ASSERT_EQ(b.sync->lag(), 199);
    b.sync->poll();
    EXPECT_EQ(b.sync->applied(), 64u);
    EXPECT_EQ(b.decisions->cursor().last_id, 64);
    ASSERT_TRUE(turn_until({&b}, [&] { return b.sync->applied() == 199; }, 5s));
    EXPECT_EQ(b.decisions->cursor().last_id, 199);
    EXPECT_EQ(b.sync->lag(), 0);
    // acct-1..99 suspended then resumed; acct-100 suspended last.
    EXPECT_FALSE(b.suspended("acct-1"));
    EXPECT_FALSE(b.suspended("acct-99"));
    EXPECT_TRUE(b.suspended("acct-100"));
    EXPECT_EQ(b.decisions->suspensions().size(), 1u);
}

}  // namespace
}  // namespace sekisho
