// Operator state across the fleet: two gateways in this process, each with
// its own operator.db and account registry, sharing the real PostgreSQL that
// with_fleet_stores.sh started (SEKISHO_TEST_PG_*). The store is stopped,
// killed, restarted and restored from a dump through tests/fleet/fleet_stores.sh.
// For API bindings and limit resets each gateway also has the real DPDK data
// plane (no ports: its binding table and limit cells) and the real control
// API, called as sekishoctl's requests are.
#include <gtest/gtest.h>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "backends/dpdk/dpdk_data_plane.h"
#include "control/api/control_api.h"
#include "control/fleet/operator_sync.h"
#include "control/identity/account_registry.h"
#include "control/identity/operator_binding_table.h"
#include "control/policy/policy.h"
#include "control/state/operator_state.h"
#include "dataplane/compiled_policy.h"
#include "dataplane/limits/mail_limits.h"
#include "tests/support/lab_policy.h"

namespace sekisho {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

// A file of this process in the test's temporary directory (other test
// processes, of other worktrees too, may share it).
std::string temp_file(const std::string& name) {
    return ::testing::TempDir() + "/operator-sync-" + std::to_string(getpid()) + "-" + name;
}

// Runs `script` with fleet_stores.sh sourced on the test's cluster; returns the exit status.
int stores(const std::string& script) {
    const std::string file = temp_file("stores.sh");
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
    const std::string out = temp_file("psql.out");
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

// The policy of the gateways with a data plane: one account-scope limit.
const std::string plane_policy = std::string(test::lab_policy_text) +
                                 "limits:\n  - {name: msgs-account, measure: messages, scope: account, max: 5, "
                                 "window: 10m}\n";

// One gateway: its operator.db, its accounts, its fleet link for operator state;
// with_api: its data plane and control API too (the accounts are the plane's).
struct gateway {
    gateway(const std::string& name, const std::string& dir, std::chrono::milliseconds fallback = 1000ms,
            bool with_api = false)
        : name(name), dir(dir), db(dir + "/" + name + "-operator.db"), fallback(fallback), with_api(with_api) {
        if (!with_api) accounts_owned = std::make_unique<account_registry>(1024);
        open();
    }
    ~gateway() { crash(); }
    void open() {
        decisions = std::make_unique<operator_state>(db);
        if (with_api) {
            // As serve(): the plane, the operator's table over it, the API bindings restored.
            const policy pol = load_policy_text(plane_policy, name + ".yaml");
            dpdk_data_plane_config cfg;
            cfg.mbufs = 1024;
            cfg.event_ring_capacity = 1024;
            cfg.events_path = dir + "/" + name + "-events.jsonl";
            cfg.first_generation = test::next_generation();
            cfg.instance = name.substr(name.size() - 1);   // gw-a, gw-b: one plane each in this process
            plane = std::make_unique<dpdk_data_plane>(pol, cfg);
            api_bindings = std::make_unique<operator_binding_table>(*plane);
            for (const auto& r : decisions->bindings()) {
                api_bindings->hold(r.prefix, r.account);
                api_bindings->bind(r.prefix, r.account);
            }
            control_context cc;
            cc.plane = plane.get();
            cc.decisions = decisions.get();
            cc.api_bindings = api_bindings.get();
            cc.policy_path = name + ".yaml";
            cc.events_path = cfg.events_path;
            cc.started = clock_type::now();
            api = std::make_unique<control_api>(cc, plane_policy);
        }
        accounts = with_api ? plane->account_table() : accounts_owned.get();
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
        o.control = api.get();
        sync = std::make_unique<operator_sync>(std::move(o), *decisions, accounts);
    }
    // What sekishod's process loses at kill -9: everything in memory, not operator.db.
    void crash() {
        sync.reset();
        api.reset();
        api_bindings.reset();
        plane.reset();
        decisions.reset();
    }
    // A request as sekishoctl sends it, answered by the control API.
    api_response call(const std::string& method, const std::string& path, const std::string& body = "",
                      std::map<std::string, std::string> query = {}) {
        return api->handle_and_wait(api_request{method, path, std::move(query), body, "uid 0 (operator-" + name + ")"});
    }
    // The account the data plane's binding table holds `address` for ("" none).
    std::string bound(const char* address) {
        std::string why;
        const ip_prefix p = *parse_prefix(address, why);
        const std::string* n = accounts->name_of(plane->subscriber_bindings()->lookup(subscriber_key::v4(p.v4())));
        return n ? *n : "";
    }
    // The account-scope limit's cell of `account` here (the one the workers count in).
    limit_cell& account_cell(const std::string& account) {
        const compiled_limit& l = plane->limit_state()->compiled().limit(0);
        return plane->limit_state()->account_limits(accounts->id_of(account))->cells[l.slot];
    }
    uint32_t sent(const std::string& account) {
        const compiled_limit& l = plane->limit_state()->compiled().limit(0);
        return window_count(account_cell(account), now_ns(), l.window_ns);
    }
    void count_messages(const std::string& account, uint32_t n) {
        const compiled_limit& l = plane->limit_state()->compiled().limit(0);
        window_add(account_cell(account), now_ns(), l.window_ns, 5, n);
    }
    static uint64_t now_ns() {
        timespec ts{};
        clock_gettime(CLOCK_REALTIME, &ts);
        return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
    }
    size_t audits_of(const std::string& endpoint) {
        std::lock_guard lock(mu);
        return static_cast<size_t>(std::count_if(audits.begin(), audits.end(),
                                                 [&](const nlohmann::json& a) { return a["endpoint"] == endpoint; }));
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

    std::string name, dir, db;
    std::chrono::milliseconds fallback;
    bool with_api;
    std::unique_ptr<account_registry> accounts_owned;
    account_registry* accounts = nullptr;
    std::unique_ptr<operator_state> decisions;
    std::unique_ptr<dpdk_data_plane> plane;
    std::unique_ptr<operator_binding_table> api_bindings;
    std::unique_ptr<control_api> api;
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
            for (gateway* g : gws) {
                if (g->sync) g->sync->poll();
                if (g->api) g->api->poll();
            }
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

TEST_F(OperatorSync, ApiBindingOnAIsInForceOnBWithinASecondAndItsRemovalLikewise) {
    gateway a("gw-a", dir, 20s, true), b("gw-b", dir, 20s, true);
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.sync->link_up() && b.sync->link_up(); }, 10s));

    const auto t0 = clock_type::now();
    api_response r = a.call("POST", "/v1/bindings", R"({"prefix": "198.51.100.7/32", "account": "moved@example.jp"})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(a.bound("198.51.100.7"), "moved@example.jp");
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return b.bound("198.51.100.7") == "moved@example.jp"; }, 5s));
    const double took = std::chrono::duration<double>(clock_type::now() - t0).count();
    std::printf("API binding on gw-a in force on gw-b after %.3f s\n", took);
    EXPECT_LT(took, 1.0);
    // Durable on B (restored at its next start), held (RADIUS does not override it), audited naming A.
    const auto stored = b.decisions->bindings();
    ASSERT_EQ(stored.size(), 1u);
    EXPECT_EQ(stored[0].prefix.to_string(), "198.51.100.7/32");
    EXPECT_EQ(stored[0].account, "moved@example.jp");
    EXPECT_EQ(stored[0].caller, "uid 0 (operator-gw-a)");
    ASSERT_NE(b.api_bindings->held_at(stored[0].prefix), nullptr);
    const auto audits = b.audit_records();
    ASSERT_EQ(audits.size(), 1u);
    EXPECT_EQ(audits[0]["endpoint"], "bindings_add");
    EXPECT_EQ(audits[0]["origin_gateway"], "gw-a");
    EXPECT_EQ(audits[0]["prefix"], "198.51.100.7/32");
    EXPECT_EQ(audits[0]["account"], "moved@example.jp");

    // Removed on B: gone on A too.
    const auto t1 = clock_type::now();
    r = b.call("DELETE", "/v1/bindings", "", {{"prefix", "198.51.100.7/32"}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(b.bound("198.51.100.7"), "");
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.bound("198.51.100.7").empty(); }, 5s));
    const double took_del = std::chrono::duration<double>(clock_type::now() - t1).count();
    std::printf("API binding removal on gw-b in force on gw-a after %.3f s\n", took_del);
    EXPECT_LT(took_del, 1.0);
    EXPECT_TRUE(a.decisions->bindings().empty());
    EXPECT_EQ(a.api_bindings->held().size(), 0u);

    // No echo: two changes, each published once; each gateway audited only the other's.
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.sync->applied() == 2 && b.sync->applied() == 2; }, 5s));
    turn_until({&a, &b}, [] { return false; }, 1000ms);
    EXPECT_EQ(psql_value("SELECT string_agg(gateway || ':' || kind || ':' || prefix || ':' || account, ',' ORDER BY id) "
                         "FROM operator_changes"),
              "gw-a:bind:198.51.100.7/32:moved@example.jp,gw-b:unbind:198.51.100.7/32:");
    EXPECT_EQ(a.audit_records().size(), 1u);
    EXPECT_EQ(a.audits_of("bindings_del"), 1u);
    EXPECT_EQ(b.audit_records().size(), 1u);
    EXPECT_TRUE(a.decisions->outbox().empty());
    EXPECT_TRUE(b.decisions->outbox().empty());
}

// PostgreSQL killed while A binds and B is killed (-9) and restarted: B
// catches up from its cursor; a replayed outbox row changes nothing twice.
TEST_F(OperatorSync, ABindingMadeWhileTheStoreIsDownReachesARestartedGatewayOnce) {
    gateway a("gw-a", dir, 1000ms, true), b("gw-b", dir, 1000ms, true);
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.sync->link_up() && b.sync->link_up(); }, 10s));
    ASSERT_EQ(stores("fleet_kill_postgres"), 0);
    api_response r = a.call("POST", "/v1/bindings", R"({"prefix": "198.51.100.9/32", "account": "nas-wrong@example.jp"})");
    ASSERT_EQ(r.status, 200) << r.body;   // in force here, queued for the fleet
    EXPECT_EQ(a.bound("198.51.100.9"), "nas-wrong@example.jp");
    const std::vector<fleet_change> queued = a.decisions->outbox();
    ASSERT_EQ(queued.size(), 1u);
    EXPECT_EQ(queued[0].kind, "bind");
    EXPECT_EQ(queued[0].prefix, "198.51.100.9/32");
    turn_until({&a, &b}, [] { return false; }, 500ms);
    EXPECT_EQ(b.bound("198.51.100.9"), "");
    b.crash();   // kill -9 of B while the store is down
    ASSERT_EQ(stores("fleet_start_postgres"), 0);
    b.open();
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return b.bound("198.51.100.9") == "nas-wrong@example.jp"; }, 20s));
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.decisions->outbox().empty(); }, 5s));
    EXPECT_EQ(b.decisions->bindings().size(), 1u);

    // A restarts with the row sent again (a crash between the COMMIT and the outbox delete).
    a.crash();
    {
        operator_state s(a.db);
        s.queue_outbox(queued[0]);
    }
    a.open();
    EXPECT_EQ(a.bound("198.51.100.9"), "nas-wrong@example.jp");   // restored from operator.db
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.decisions->outbox().empty(); }, 5s));
    turn_until({&a, &b}, [] { return false; }, 1500ms);
    EXPECT_EQ(psql_value("SELECT count(*) FROM operator_changes"), "1");
    EXPECT_EQ(b.audits_of("bindings_add"), 1u);

    // B restarts once more: it applies nothing again (the cursor), the binding is in force from its file.
    const int64_t cursor = b.decisions->cursor().last_id;
    const size_t audited = b.audit_records().size();
    b.crash();
    b.open();
    EXPECT_EQ(b.bound("198.51.100.9"), "nas-wrong@example.jp");
    turn_until({&a, &b}, [] { return false; }, 1500ms);
    EXPECT_EQ(b.sync->applied(), 0u);
    EXPECT_EQ(b.decisions->cursor().last_id, cursor);
    EXPECT_EQ(b.audit_records().size(), audited);
}

// A reset on A clears B's cell once (not A's again); one made while PostgreSQL is down reaches
// B when it is back; B restarted finds an old reset (skipped) and a fresh one (done).
TEST_F(OperatorSync, ALimitResetOnAResetsTheAccountOnBOnceAndAnOldOneIsSkipped) {
    gateway a("gw-a", dir, 20s, true), b("gw-b", dir, 20s, true);
    // The counts live in windows aligned on the epoch (the limit's 10 minutes): a window that
    // ends midway empties every cell the test expects to hold its counts. The sequence below
    // takes at most about a minute, so it starts with at least 90 s of its window left.
    {
        const uint64_t window_ns = a.plane->limit_state()->compiled().limit(0).window_ns;
        const uint64_t left_ns = window_ns - gateway::now_ns() % window_ns;
        if (left_ns < 90'000'000'000ull) std::this_thread::sleep_for(std::chrono::nanoseconds(left_ns + 1'000'000'000ull));
    }
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.sync->link_up() && b.sync->link_up(); }, 10s));
    // The account sent 4 messages through A and 4 through B (the workers' counting, done here).
    a.count_messages("heavy@example.jp", 4);
    b.count_messages("heavy@example.jp", 4);
    ASSERT_EQ(b.sent("heavy@example.jp"), 4u);

    const auto t0 = clock_type::now();
    api_response r = a.call("POST", "/v1/limits/reset", R"({"account": "heavy@example.jp"})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(a.sent("heavy@example.jp"), 0u);
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return b.sent("heavy@example.jp") == 0; }, 5s));
    const double took = std::chrono::duration<double>(clock_type::now() - t0).count();
    std::printf("limit reset on gw-a in force on gw-b after %.3f s\n", took);
    EXPECT_LT(took, 1.0);
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return b.audits_of("limits_reset") == 1; }, 2s));
    const auto audits = b.audit_records();
    EXPECT_EQ(audits.back()["origin_gateway"], "gw-a");
    EXPECT_EQ(audits.back()["account"], "heavy@example.jp");
    EXPECT_EQ(audits.back()["limit"], "*");

    // The account sends again on both; A's own reset came back to A and did not clear it,
    // and B does not apply it twice.
    a.count_messages("heavy@example.jp", 3);
    b.count_messages("heavy@example.jp", 3);
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.decisions->cursor().last_id == 1; }, 5s));
    turn_until({&a, &b}, [] { return false; }, 1500ms);
    EXPECT_EQ(a.sent("heavy@example.jp"), 3u);
    EXPECT_EQ(b.sent("heavy@example.jp"), 3u);
    EXPECT_EQ(a.audits_of("limits_reset"), 0u);
    EXPECT_EQ(psql_value("SELECT count(*) FROM operator_changes WHERE kind = 'limits_reset'"), "1");

    // PostgreSQL killed: A's reset of the one limit is done on A and waits in A's outbox;
    // B has it once the store is back.
    ASSERT_EQ(stores("fleet_kill_postgres"), 0);
    r = a.call("POST", "/v1/limits/reset", R"({"account": "heavy@example.jp", "limit": "msgs-account"})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(a.sent("heavy@example.jp"), 0u);
    turn_until({&a, &b}, [] { return false; }, 500ms);
    EXPECT_EQ(b.sent("heavy@example.jp"), 3u);
    ASSERT_EQ(a.decisions->outbox().size(), 1u);
    EXPECT_EQ(a.decisions->outbox()[0].detail, "msgs-account");
    ASSERT_EQ(stores("fleet_start_postgres"), 0);
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return b.sent("heavy@example.jp") == 0; }, 20s));
    ASSERT_TRUE(turn_until({&a, &b}, [&] { return a.decisions->outbox().empty() && b.audits_of("limits_reset") == 2; },
                           5s));
    EXPECT_EQ(b.audit_records().back()["limit"], "msgs-account");

    // B restarts (its cells are new) and finds a reset older than the longest window
    // (10 minutes) that it had not read: skipped, counted; a fresh one is applied.
    b.crash();
    ASSERT_EQ(stores("fleet_psql \"INSERT INTO operator_changes (change_id, kind, account, payload, gateway, caller, at) "
                     "VALUES ('old-reset', 'limits_reset', 'heavy@example.jp', '{}', 'gw-z', 'desk', "
                     "now() - interval '11 minutes')\" >/dev/null"),
              0);
    b.open();
    b.count_messages("heavy@example.jp", 2);
    // (ids are not dense: the kill above lost PostgreSQL's cached sequence values)
    const int64_t old_id = std::stoll(psql_value("SELECT id FROM operator_changes WHERE change_id = 'old-reset'"));
    ASSERT_TRUE(turn_until({&b}, [&] { return b.decisions->cursor().last_id == old_id; }, 5s));
    EXPECT_EQ(b.sync->status()["resets_expired_total"], 1);
    EXPECT_EQ(b.sent("heavy@example.jp"), 2u);
    ASSERT_EQ(stores("fleet_psql \"INSERT INTO operator_changes (change_id, kind, account, payload, gateway, caller, at) "
                     "VALUES ('new-reset', 'limits_reset', 'heavy@example.jp', '{\\\"limit\\\": \\\"msgs-account\\\"}', "
                     "'gw-z', 'desk', now()); SELECT pg_notify('sekisho_operator', 'new')\" >/dev/null"),
              0);
    ASSERT_TRUE(turn_until({&b}, [&] { return b.sent("heavy@example.jp") == 0; }, 5s));
    // The trail (a file in sekishod) holds the earlier two resets too; the old one is not in it.
    ASSERT_TRUE(turn_until({&b}, [&] { return b.audits_of("limits_reset") == 3; }, 2s));
    EXPECT_EQ(b.audit_records().back()["limit"], "msgs-account");
    EXPECT_EQ(b.audit_records().back()["fleet_change"],
              std::stoll(psql_value("SELECT id FROM operator_changes WHERE change_id = 'new-reset'")));
}

TEST_F(OperatorSync, BadBindingAndResetChangesAreSkippedNamedAndCounted) {
    gateway b("gw-b", dir, 1000ms, true);
    ASSERT_TRUE(turn_until({&b}, [&] { return b.sync->link_up(); }, 10s));
    ASSERT_EQ(stores("fleet_psql \"INSERT INTO operator_changes (change_id, kind, account, prefix, gateway, caller, at) VALUES "
                     "('b1', 'bind', 'x@example.jp', '198.51.100.300/32', 'gw-z', 'desk', now()), "
                     "('b2', 'bind', '', '198.51.100.20/32', 'gw-z', 'desk', now()), "
                     "('b3', 'limits_reset', 'x@example.jp', '198.51.100.20/32', 'gw-z', 'desk', now()), "
                     "('b4', 'limits_reset', '', '198.51.100.0/24', 'gw-z', 'desk', now()), "
                     "('b5', 'bind', 'ok@example.jp', '198.51.100.21/32', 'gw-z', 'desk', now())\" >/dev/null"),
              0);
    ASSERT_TRUE(turn_until({&b}, [&] { return b.bound("198.51.100.21") == "ok@example.jp"; }, 5s));
    EXPECT_EQ(b.sync->status()["rejected_total"], 4);
    EXPECT_EQ(b.decisions->cursor().last_id, 5);
    EXPECT_EQ(b.decisions->bindings().size(), 1u);
}

}  // namespace
}  // namespace sekisho
