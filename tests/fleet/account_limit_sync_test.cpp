// Account-scope limits across gateways through a real Redis
// (with_fleet_stores.sh, and a Redis of the test's own where it is killed):
// each gateway an account registry (the cells the workers count in) with its
// account_limit_sync, the workers' booking done as they do it
// (window_add_shared), the control thread's poll() every 10 ms.
// The sequence (3 on A, 3 on B, limit 5: the 6th is refused, and anywhere
// after), a gateway where the account has not sent yet, the resend (a lost
// link sends the whole window again: nothing changes), Redis killed mid-run
// (local limits and the frozen shares hold; shares resume when it is back),
// a gateway restarted (kill -9: its local counts are gone, its sent count is
// not), a new policy (no old share counts), bad fields in Redis; a limit
// reset applied on every gateway (the account sends again; a snapshot from
// before the reset is not sent after it; Redis down at the reset: the
// hashes are deleted when it is back).
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "../support/lab_policy.h"
#include "control/fleet/account_limit_sync.h"
#include "control/fleet/redis_connection.h"
#include "control/identity/account_registry.h"
#include "control/observe/metrics.h"
#include "control/policy/policy.h"
#include "control/policy/policy_compiler.h"
#include "dataplane/compiled_policy.h"
#include "fleet_sync_fixture.h"
#include "own_redis.h"

namespace sekisho {
namespace {

using namespace std::chrono_literals;

const std::string account = "alice@example.net";
const std::string bystander = "bob@example.net";

// One gateway: its registry, its policy, its sync (null: a gateway on its own).
struct gateway {
    std::string name;
    std::unique_ptr<account_registry> accounts = std::make_unique<account_registry>(64);
    std::unique_ptr<compiled_policy> policy;
    std::unique_ptr<account_limit_sync> sync;
    std::vector<std::string> log;

    gateway(std::string n, const std::string& policy_text, const std::string& redis, const std::string& password)
        : name(std::move(n)) {
        use_policy(policy_text);
        accounts->id_of(account);
        accounts->id_of(bystander);
        if (!redis.empty()) {
            account_limit_sync_settings s;
            s.gateway = name;
            s.redis = redis_endpoint{redis, password, ""};
            s.sync_interval_ns = 50'000'000;
            sync = std::make_unique<account_limit_sync>(s, *accounts,
                                                        [this](const std::string& l) { log.push_back(l); });
        }
    }
    // On a Redis of the test's own (own_redis.h).
    gateway(std::string n, const std::string& policy_text, const own_redis& server)
        : gateway(std::move(n), policy_text, server.address(), server.password_file()) {}
    void use_policy(const std::string& text) {
        policy = compile_policy(load_policy_text(std::string(test::lab_policy_text) + text, name + ".yaml"),
                                test::next_generation());
    }
    // A worker's MAIL FROM of `who` at `now` under limit 0 (slot 0): booked or refused.
    bool send(uint64_t now, const std::string& who = account) {
        const compiled_limit& l = policy->limit(0);
        account_record& r = accounts->records()[accounts->id_of(who)];
        return window_add_shared(r.cells[l.slot], r.fleet_share[l.slot], now, l.window_ns, l.max).booked;
    }
    // A limits reset of `who`'s limit 0 as limit_desk makes it (by the API
    // here, or applied from the fleet's log by operator_sync).
    void reset(uint64_t now, const std::string& who = account) {
        const compiled_limit& l = policy->limit(0);
        const uint32_t id = accounts->id_of(who);
        reset_account_cell(accounts->records()[id], l.slot);
        sync->account_reset(id, 1u << l.slot, now, *policy);
    }
    uint32_t share(uint64_t now, const std::string& who = account) {
        const compiled_limit& l = policy->limit(0);
        return fleet_share_count(accounts->records()[accounts->id_of(who)].fleet_share[l.slot], now, l.window_ns);
    }
};

class AccountLimitSync : public fleet_sync_fixture<gateway> {
protected:
    void SetUp() override {
        fleet_sync_fixture::SetUp();
        policy_ = "limits:\n  - {name: msgs-fleet, measure: messages, scope: account, max: 5, window: " +
                  std::to_string(window_s_) + "s}\n";
    }
    void turn(gateway& g) override { g.sync->poll(clock(), *g.policy); }
    // `n` MAIL FROMs of `who` on `g`, all booked.
    bool booked(gateway& g, int n, const std::string& who = account) {
        for (int i = 0; i < n; ++i)
            if (!g.send(clock(), who)) return false;
        return true;
    }
    std::string key(const std::string& who = account) const {
        return account_limit_key("msgs-fleet", window_ns_, count_window_index(clock(), window_ns_), who);
    }
    // Three syncs: what one gateway sent is read back by the others and stored.
    bool settle(const std::vector<gateway*>& gws) { return fleet_sync_fixture::settle(gws, 3); }
    // The hash's fields as Redis holds them.
    std::map<std::string, std::string> fields(const std::string& k) {
        redis_connection r(redis_, password_);
        const redis_reply h = r.command({"HGETALL", k});
        std::map<std::string, std::string> out;
        for (size_t i = 0; i + 1 < h->elements; i += 2)
            out[std::string(h->element[i]->str, h->element[i]->len)] =
                std::string(h->element[i + 1]->str, h->element[i + 1]->len);
        return out;
    }

    std::string policy_;
};

// The sequence: 3 on A, then B (where the account has sent nothing yet)
// takes 2 and refuses the 3rd; the 6th is refused on A too, and on C, a
// gateway the account never used. Without the fleet, B would book all 3.
TEST_F(AccountLimitSync, ThreeOnAThreeOnBTheSixthIsRefusedAnywhere) {
    gateway a("gw-a", policy_, redis_, password_), b("gw-b", policy_, redis_, password_),
        c("gw-c", policy_, redis_, password_), alone("gw-alone", policy_, "", "");
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(a.send(clock()));
    ASSERT_TRUE(settle({&a, &b, &c}));
    EXPECT_EQ(b.share(clock()), 3u) << "B did not bring in A's count (hot set)";
    EXPECT_EQ(c.share(clock()), 3u);
    EXPECT_TRUE(b.send(clock()));
    EXPECT_TRUE(b.send(clock()));
    EXPECT_FALSE(b.send(clock())) << "the 6th message of the window was booked on B";
    ASSERT_TRUE(settle({&a, &b, &c}));
    EXPECT_FALSE(a.send(clock())) << "A does not know B's 2";
    EXPECT_FALSE(c.send(clock())) << "C does not know the fleet's 5";
    EXPECT_EQ(a.share(clock()), 2u);
    EXPECT_EQ(c.share(clock()), 5u);
    // Another account is untouched.
    EXPECT_TRUE(b.send(clock(), bystander));
    // A gateway on its own books its own 5.
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(alone.send(clock()));
    EXPECT_FALSE(alone.send(clock()));
    // Redis: one field per gateway process, the counts as booked.
    const auto f = fields(key());
    ASSERT_EQ(f.size(), 2u);
    uint64_t sum = 0;
    for (const auto& [field, value] : f) {
        EXPECT_TRUE(field.rfind("gw-a/", 0) == 0 || field.rfind("gw-b/", 0) == 0) << field;
        sum += std::stoull(value);
    }
    EXPECT_EQ(sum, 5u);
    EXPECT_GE(b.sync->counters().shares_applied, 1u);
    EXPECT_GE(c.sync->counters().accounts_shared, 1u);
    EXPECT_LT(slowest_poll_, 20ms);
    const nlohmann::json st = a.sync->status();
    EXPECT_EQ(st["store"], "redis");
    EXPECT_TRUE(st["link_up"].get<bool>());
    EXPECT_GE(st["counts_sent"].get<uint64_t>(), 1u);
}

// The replay: the link is cut (CLIENT KILL), the gateways reconnect and send
// every count of the window again; Redis and the shares are as before.
TEST_F(AccountLimitSync, ResendAfterALostLinkChangesNothing) {
    gateway a("gw-a", policy_, redis_, password_), b("gw-b", policy_, redis_, password_);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(a.send(clock()));
    ASSERT_TRUE(b.send(clock()));
    ASSERT_TRUE(settle({&a, &b}));
    const auto before = fields(key());
    ASSERT_EQ(before.size(), 2u);
    const uint64_t sent = a.sync->counters().counts_sent;
    ASSERT_TRUE(pump({&a, &b}, [] { return false; }, 200ms) == false);
    EXPECT_EQ(a.sync->counters().counts_sent, sent) << "an unchanged count was written again";
    {
        redis_connection r(redis_, password_);
        r.command({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
    }
    ASSERT_TRUE(pump({&a, &b}, [&] { return a.sync->counters().counts_sent > sent; }, 10000ms))
        << "A did not send its window again after the link came back";
    ASSERT_TRUE(settle({&a, &b}));
    EXPECT_EQ(fields(key()), before);
    EXPECT_EQ(a.share(clock()), 1u);
    EXPECT_EQ(b.share(clock()), 3u);
    EXPECT_GE(a.sync->counters().link_downs, 1u);
}

// Redis killed mid-run: the workers go on with their own counts and the
// shares they had (frozen); poll() never waits. A new, empty Redis: every
// gateway sends its window again and the shares follow the fleet's counts.
TEST_F(AccountLimitSync, RedisKilledLocalLimitsHoldSharesResume) {
    own_redis server(::testing::TempDir() + "/acct-redis-" + std::to_string(getpid()), "acct-test-password");
    ASSERT_TRUE(server.start());
    gateway a("gw-a", policy_, server), b("gw-b", policy_, server);
    ASSERT_TRUE(booked(a, 3));
    ASSERT_TRUE(b.send(clock()));
    ASSERT_TRUE(settle({&a, &b}));
    ASSERT_EQ(a.share(clock()), 1u);
    ASSERT_EQ(b.share(clock()), 3u);
    server.kill9();
    ASSERT_TRUE(pump({&a, &b}, [&] { return !a.sync->counters().link_up && !b.sync->counters().link_up; }));
    // Local limits with the frozen shares: A has room for 1, B for 1.
    EXPECT_TRUE(a.send(clock()));
    EXPECT_FALSE(a.send(clock()));
    EXPECT_TRUE(b.send(clock()));
    EXPECT_FALSE(b.send(clock()));
    ASSERT_TRUE(pump({&a, &b}, [] { return false; }, 300ms) == false);
    EXPECT_EQ(a.share(clock()), 1u) << "the share did not stay in force while Redis was down";
    EXPECT_LT(slowest_poll_, 20ms) << "poll() waited on the dead link";
    ASSERT_TRUE(server.start());
    ASSERT_TRUE(pump({&a, &b}, [&] { return a.share(clock()) == 2u && b.share(clock()) == 4u; }, 15000ms))
        << "shares did not resume: A " << a.share(clock()) << ", B " << b.share(clock());
    for (gateway* g : {&a, &b}) {
        EXPECT_TRUE(g->sync->counters().link_up) << g->name;
        bool down = false, up = false;
        for (const std::string& l : g->log) {
            down = down || l.find("redis link down") != std::string::npos;
            up = up || l.find("redis link up") != std::string::npos;
            EXPECT_EQ(l.find("acct-test-password"), std::string::npos) << "credential in the log: " << l;
        }
        EXPECT_TRUE(down && up) << g->name;
    }
}

// kill -9 of a gateway: its local counts are gone with it, the count it had
// sent stays in Redis under its old process's field; the restarted gateway
// counts it among the others' share and does not grant the account a new 5.
TEST_F(AccountLimitSync, RestartedGatewayKeepsItsSentCountAsAShare) {
    auto a = std::make_unique<gateway>("gw-a", policy_, redis_, password_);
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(a->send(clock()));
    ASSERT_TRUE(settle({a.get()}));
    a.reset();
    gateway again("gw-a", policy_, redis_, password_);
    ASSERT_TRUE(again.send(clock()));   // own 1: its first sync brings the old 4 in
    ASSERT_TRUE(settle({&again}));
    EXPECT_EQ(again.share(clock()), 4u);
    EXPECT_FALSE(again.send(clock())) << "the restarted gateway granted the account a new window";
    EXPECT_EQ(fields(key()).size(), 2u);
}

// A new policy generation: the shares stored under the old one are cleared
// before the new limits count (they may sit in other cells).
TEST_F(AccountLimitSync, NewPolicyClearsTheShares) {
    gateway a("gw-a", policy_, redis_, password_), b("gw-b", policy_, redis_, password_);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(a.send(clock()));
    ASSERT_TRUE(settle({&a, &b}));
    ASSERT_EQ(b.share(clock()), 3u);
    b.use_policy("limits:\n  - {name: other-limit, measure: recipients, scope: account, max: 5, window: " +
                 std::to_string(window_s_) + "s}\n");
    b.sync->poll(clock(), *b.policy);
    EXPECT_EQ(b.share(clock()), 0u);
}

// A field that is not a count (another writer's) is counted and ignored.
TEST_F(AccountLimitSync, BadFieldsAreCountedAndIgnored) {
    gateway a("gw-a", policy_, redis_, password_);
    {
        redis_connection r(redis_, password_);
        r.command({"HSET", key(), "intruder", "many"});
    }
    ASSERT_TRUE(a.send(clock()));
    ASSERT_TRUE(settle({&a}));
    EXPECT_GE(a.sync->counters().bad_fields, 1u);
    EXPECT_EQ(a.share(clock()), 0u);
    bool said = false;
    for (const std::string& l : a.log) said = said || l.find("not counts") != std::string::npos;
    EXPECT_TRUE(said);
}

// A policy without a shared limit (a connection rate stays per gateway):
// nothing is written, the link is only watched.
TEST_F(AccountLimitSync, WithoutSharedLimitsTheLinkIsOnlyWatched) {
    gateway a("gw-a", "limits:\n  - {name: conn-acct, measure: connections, scope: account, max: 5, window: 10s}\n",
              redis_, password_);
    ASSERT_TRUE(pump({&a}, [&] { return a.sync->counters().link_up && a.sync->counters().syncs >= 2; }));
    EXPECT_EQ(a.sync->counters().counts_sent, 0u);
    EXPECT_EQ(a.sync->counters().counts_fetched, 0u);
}

// An account at its fleet max over A (3) and B (2): refused on both. The
// reset applied on both gateways (as every gateway applies the fleet's
// reset) clears the shares and the hash: each accepts again at once, the
// fleet's 5 count anew, and the 6th after the reset is refused again.
TEST_F(AccountLimitSync, ResetOnEveryGatewayLetsTheAccountSendAgain) {
    gateway a("gw-a", policy_, redis_, password_), b("gw-b", policy_, redis_, password_);
    ASSERT_TRUE(booked(a, 3) && booked(b, 2));
    ASSERT_TRUE(settle({&a, &b}));
    ASSERT_FALSE(a.send(clock()));
    ASSERT_FALSE(b.send(clock()));
    a.reset(clock());
    EXPECT_EQ(a.share(clock()), 0u) << "the reset left A's share of the fleet";
    b.reset(clock());
    ASSERT_TRUE(pump({&a, &b}, [&] {
        return a.sync->counters().reset_deletes >= 1 && b.sync->counters().reset_deletes >= 1;
    })) << "the hash was not deleted";
    ASSERT_TRUE(settle({&a, &b}));
    EXPECT_EQ(a.share(clock()), 0u) << "the old counts came back as A's share";
    EXPECT_EQ(b.share(clock()), 0u) << "the old counts came back as B's share";
    EXPECT_TRUE(fields(key()).empty()) << "Redis still holds counts from before the reset";
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(a.send(clock())) << "A refused message " << i + 1 << " after the reset";
    ASSERT_TRUE(settle({&a, &b}));
    EXPECT_TRUE(b.send(clock()));
    EXPECT_TRUE(b.send(clock()));
    EXPECT_FALSE(b.send(clock())) << "the 6th after the reset was booked: the shares did not resume";
    ASSERT_TRUE(settle({&a, &b}));
    EXPECT_FALSE(a.send(clock()));
    EXPECT_EQ(a.share(clock()), 2u);
    EXPECT_EQ(a.sync->counters().resets, 1u);
    EXPECT_EQ(a.sync->status()["reset_deletes"].get<uint64_t>(), a.sync->counters().reset_deletes);
}

// A snapshot taken before a reset (the scan of the very same turn) is never
// written after the DEL: whether the thread took it already (written, then
// deleted) or not (discarded), Redis ends with nothing of A's old count and B
// shares nothing of it. Several accounts, to meet both orders.
TEST_F(AccountLimitSync, ASnapshotFromBeforeTheResetIsNotSentAfterIt) {
    gateway a("gw-a", policy_, redis_, password_), b("gw-b", policy_, redis_, password_);
    ASSERT_TRUE(pump({&a, &b}, [&] { return a.sync->counters().link_up && b.sync->counters().link_up; }));
    for (int n = 0; n < 12; ++n) {
        const std::string who = "user" + std::to_string(n) + "@example.net";
        b.accounts->id_of(who);
        ASSERT_TRUE(booked(a, 4, who));
        std::this_thread::sleep_for(60ms);   // past sync_interval: the next poll scans
        a.sync->poll(clock(), *a.policy);     // the snapshot holding who's 4
        if (n % 2) std::this_thread::sleep_for(std::chrono::milliseconds(n));   // let the thread take it, or not
        a.reset(clock(), who);
        ASSERT_TRUE(settle({&a, &b}));
        EXPECT_TRUE(fields(key(who)).empty()) << who << ": a count from before the reset is in Redis";
        EXPECT_EQ(b.share(clock(), who), 0u) << who;
        EXPECT_TRUE(a.send(clock(), who)) << who;
    }
    EXPECT_GE(a.sync->counters().reset_deletes, 12u);
}

// Redis down at the reset (its data kept: saved, killed, started again from
// the dump): the local reset holds at once, the deletes wait and are done
// when the link is back, before any count is sent; the old counts never
// come back as a share.
TEST_F(AccountLimitSync, RedisDownAtTheResetDeletesWhenBack) {
    own_redis server(::testing::TempDir() + "/acct-reset-redis-" + std::to_string(getpid()), "acct-test-password");
    ASSERT_TRUE(server.start());
    gateway a("gw-a", policy_, server), b("gw-b", policy_, server);
    ASSERT_TRUE(booked(a, 3) && booked(b, 2));
    ASSERT_TRUE(settle({&a, &b}));
    ASSERT_EQ(a.share(clock()), 2u);
    {
        redis_connection r(server.address(), server.password_file());
        ASSERT_EQ(std::string(r.command({"SAVE"})->str), "OK");
    }
    server.kill9();
    ASSERT_TRUE(pump({&a, &b}, [&] { return !a.sync->counters().link_up && !b.sync->counters().link_up; }));
    a.reset(clock());
    b.reset(clock());
    EXPECT_TRUE(a.send(clock())) << "the local reset did not hold while Redis was down";
    ASSERT_TRUE(pump({&a, &b}, [] { return false; }, 200ms) == false);
    EXPECT_EQ(a.sync->counters().reset_deletes_pending, 1u);
    EXPECT_EQ(a.sync->counters().reset_deletes, 0u);
    EXPECT_LT(slowest_poll_, 20ms) << "poll() waited on the dead link";
    ASSERT_TRUE(server.start());
    {
        redis_connection r(server.address(), server.password_file());
        ASSERT_EQ(r.command({"HLEN", key()})->integer, 2) << "the dump did not bring the old counts back";
    }
    ASSERT_TRUE(pump({&a, &b}, [&] {
        return a.sync->counters().reset_deletes >= 1 && b.sync->counters().reset_deletes >= 1;
    }, 15000ms)) << "the deletes were not done when Redis came back";
    ASSERT_TRUE(settle({&a, &b}));
    EXPECT_EQ(a.sync->counters().reset_deletes_pending, 0u);
    EXPECT_EQ(a.share(clock()), 0u) << "B's count from before the reset came back";
    EXPECT_EQ(b.share(clock()), 1u) << "B does not see A's 1 from after the reset";
    redis_connection r(server.address(), server.password_file());
    EXPECT_EQ(r.command({"HLEN", key()})->integer, 1) << "only A's count from after the reset";
}

TEST(AccountLimitLayout, OnlyAccountWindowLimitsAreShared) {
    const auto pol = compile_policy(
        load_policy_text(std::string(test::lab_policy_text) +
                             "limits:\n"
                             "  - {name: conn-acct, measure: connections, scope: account, max: 5, window: 10s}\n"
                             "  - {name: msgs-addr, measure: messages, max: 5, window: 10s}\n"
                             "  - {name: rcpt-acct, measure: recipients, scope: account, max: 50, window: 1h}\n",
                         "layout.yaml"),
        test::next_generation());
    const std::vector<shared_limit> s = shared_limits(*pol);
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].name, "rcpt-acct");
    EXPECT_EQ(s[0].slot, 1u);
    EXPECT_EQ(s[0].max, 50u);
    EXPECT_EQ(account_limit_key("rcpt-acct", 3'600'000'000'000ull, 7, "a:b@example.net"),
              "sekisho:acct:1h:7:rcpt-acct:a:a:b@example.net");
}

}  // namespace
}  // namespace sekisho
