// Fleet-wide campaign detection through a real Redis (with_fleet_stores.sh):
// three gateways' campaign tables, each with its campaign_sync, driven by the
// workers' own observe() calls and the control thread's poll(). The 30-bot
// campaign (10 subscribers behind each gateway, threshold 25) is detected
// with the fleet and not without; a resend changes nothing in Redis; Redis
// killed mid-run: local counting goes on, fleet detection resumes when a new
// Redis comes up.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "control/fleet/campaign_sync.h"
#include "control/fleet/redis_connection.h"
#include "fleet_sync_fixture.h"
#include "own_redis.h"
#include "control/observe/metrics.h"
#include "dataplane/inspect/campaign_table.h"

namespace sekisho {
namespace {

using namespace std::chrono_literals;

// The subscriber key hash of bot i (distinct per bot, as mail_tracker's would be).
uint64_t bot(uint64_t i) { return 0x5b5b0000'00000000ull + i * 0x9e3779b97f4a7c15ull; }

constexpr uint32_t threshold = 25;           // campaign.subscribers
constexpr uint64_t fingerprint = 0x0badc0ffee123457ull;

struct gateway {
    std::string name;
    std::unique_ptr<campaign_table> table;
    std::unique_ptr<campaign_sync> sync;   // null: a gateway on its own
    std::vector<std::string> log;
    uint32_t detections = 0;

    gateway(std::string n, const std::string& redis, const std::string& password, bool fleet) : name(std::move(n)) {
        table = std::make_unique<campaign_table>(1024, 4096);
        if (fleet) {
            campaign_sync_settings s;
            s.gateway = name;
            s.redis_address = redis;
            s.redis_password_file = password;
            s.sync_interval_ns = 50'000'000;
            sync = std::make_unique<campaign_sync>(s, *table, [this](const std::string& l) { log.push_back(l); });
        }
    }
    // A worker's message end: books it and applies the threshold.
    campaign_counts send(uint64_t subscriber, uint64_t now, uint64_t window_ns) {
        const campaign_counts c = table->observe(fingerprint, subscriber, 3, now, window_ns);
        if (c.subscribers > threshold) ++detections;
        return c;
    }
};

class CampaignSync : public fleet_sync_fixture<gateway> {
protected:
    void turn(gateway& g) override { g.sync->poll(clock(), window_ns_); }
    uint32_t window() const { return campaign_table::window_index(now_, window_ns_); }
    std::string key() const { return campaign_key(window_ns_, window(), fingerprint); }

    uint32_t estimate(gateway& g) { return g.table->peek(fingerprint, bot(0), clock(), window_ns_).subscribers; }
    uint32_t local_recipients(gateway& g) { return g.table->peek(fingerprint, bot(0), clock(), window_ns_).recipients; }
    // The fleet's recipients of the fingerprint as g last read them; nullopt: none read yet.
    static std::optional<uint64_t> fleet_recipients(const gateway& g) {
        for (const campaign_fleet_figure& f : g.sync->fleet_figures())
            if (f.fingerprint == fingerprint) return f.recipients;
        return std::nullopt;
    }
    std::string rcpt_key() const { return key() + ":rcpt"; }

};

// 30 bots, 10 behind each of three gateways, one message each in turn: the
// fleet crosses 25 distinct subscribers, no gateway on its own does.
TEST_F(CampaignSync, ThirtyBotsOverThreeGatewaysAreDetectedFleetWideNotPerGateway) {
    gateway a("a", redis_, password_, true), b("b", redis_, password_, true), c("c", redis_, password_, true);
    gateway a1("a-alone", redis_, password_, false), b1("b-alone", redis_, password_, false),
        c1("c-alone", redis_, password_, false);
    gateway* fleet[] = {&a, &b, &c};
    gateway* alone[] = {&a1, &b1, &c1};
    ASSERT_TRUE(pump({&a, &b, &c}, [&] { return a.sync->counters().link_up && b.sync->counters().link_up &&
                                               c.sync->counters().link_up; }));
    uint32_t first_detection_at = 0;
    for (uint64_t i = 0; i < 30; ++i) {
        fleet[i % 3]->send(bot(i), clock(), window_ns_);
        alone[i % 3]->send(bot(i), clock(), window_ns_);
        if (!first_detection_at && a.detections + b.detections + c.detections) first_detection_at = static_cast<uint32_t>(i + 1);
        ASSERT_TRUE(settle({&a, &b, &c}));
    }
    EXPECT_EQ(a1.detections + b1.detections + c1.detections, 0u) << "detected by a gateway on its own";
    for (gateway* g : alone) EXPECT_LE(estimate(*g), 10u) << g->name;
    EXPECT_GT(a.detections + b.detections + c.detections, 0u) << "the fleet did not see the campaign";
    EXPECT_GE(first_detection_at, 26u) << "detected before 26 distinct subscribers had sent";
    // Every gateway ends with the whole fleet's estimate: the one a single
    // table counting all 30 gives.
    campaign_table all(1024, 4096);
    for (uint64_t i = 0; i < 30; ++i) all.observe(fingerprint, bot(i), 3, clock(), window_ns_);
    const uint32_t union_estimate = all.peek(fingerprint, bot(0), clock(), window_ns_).subscribers;
    EXPECT_GT(union_estimate, threshold);
    for (gateway* g : fleet) EXPECT_EQ(estimate(*g), union_estimate) << g->name;
    // The bits each gateway got from the fleet alone are in its figure: the
    // table's bits without them are its own 10 (give or take a shared bit).
    for (gateway* g : fleet) {
        campaign_table::subscriber_bits own{};
        g->table->for_each_active(window(), [&](uint64_t fp, uint32_t, uint32_t, const campaign_table::subscriber_bits& b) {
            if (fp == fingerprint) own = b;
        });
        for (const campaign_fleet_figure& f : g->sync->fleet_figures())
            for (size_t i = 0; f.fingerprint == fingerprint && i < own.size(); ++i) own[i] &= ~f.merged[i];
        EXPECT_LE(campaign_table::estimate_of(own), 10u) << g->name;
        EXPECT_GE(campaign_table::estimate_of(own), 8u) << g->name;
    }
    // Recipients stay local and exact: 10 messages of 3 recipients each.
    for (gateway* g : fleet) EXPECT_EQ(g->table->peek(fingerprint, bot(0), clock(), window_ns_).recipients, 30u);
    // Redis holds the union, with the expiry of two windows.
    redis_connection r(redis_, password_);
    const redis_reply v = r.command({"GET", key()});
    ASSERT_EQ(v->type, REDIS_REPLY_STRING);
    EXPECT_EQ(campaign_table::estimate_of(bits_from_redis(v->str, v->len)), union_estimate);
    const long long ttl = r.command({"TTL", key()})->integer;
    EXPECT_GT(ttl, static_cast<long long>(window_ns_ / 1'000'000'000));
    EXPECT_LE(ttl, static_cast<long long>(2 * window_ns_ / 1'000'000'000));
    for (gateway* g : fleet) {
        const campaign_sync_counters k = g->sync->counters();
        EXPECT_GE(k.fingerprints_sent, 1u);
        EXPECT_GE(k.merges, 1u);
        EXPECT_EQ(k.merge_overflows, 0u);
        EXPECT_GT(k.last_sync_seconds, 0);
        EXPECT_TRUE(g->sync->status()["link_up"].get<bool>());
    }
    EXPECT_LT(slowest_poll_, std::chrono::milliseconds(20)) << "poll() waited";
}

// A gateway that comes up finds fleet-hot fingerprints in its table before
// its first message of them.
TEST_F(CampaignSync, FleetHotFingerprintsReachAGatewayThatHasNotSeenThem) {
    gateway a("a", redis_, password_, true), b("b", redis_, password_, true);
    for (uint64_t i = 0; i < 32; ++i) a.send(bot(i), clock(), window_ns_);
    ASSERT_TRUE(settle({&a, &b}));
    EXPECT_GT(estimate(a), threshold);
    // b's first message of it, from a subscriber a never saw, is over the threshold.
    const campaign_counts first = b.send(bot(1000), clock(), window_ns_);
    EXPECT_GT(first.subscribers, threshold);
    EXPECT_EQ(first.recipients, 3u);
    EXPECT_EQ(b.detections, 1u);
}

// Resending (a restarted gateway sends its whole window again) changes nothing.
TEST_F(CampaignSync, ResendIsIdempotent) {
    redis_connection r(redis_, password_);
    std::string before;
    {
        gateway a("a", redis_, password_, true);
        for (uint64_t i = 0; i < 12; ++i) a.send(bot(i), clock(), window_ns_);
        ASSERT_TRUE(settle({&a}));
        const redis_reply v = r.command({"GET", key()});
        ASSERT_EQ(v->type, REDIS_REPLY_STRING);
        before.assign(v->str, v->len);
        // The bits of each subscriber went out once.
        EXPECT_EQ(a.sync->counters().bits_sent, r.command({"BITCOUNT", key()})->integer);
    }
    // The same table's bits sent again by a new sync (nothing known sent).
    campaign_table again(1024, 4096);
    for (uint64_t i = 0; i < 12; ++i) again.observe(fingerprint, bot(i), 3, clock(), window_ns_);
    {
        std::vector<std::string> log;
        campaign_sync_settings s;
        s.redis_address = redis_;
        s.redis_password_file = password_;
        s.sync_interval_ns = 50'000'000;
        campaign_sync sync(s, again, [&](const std::string& l) { log.push_back(l); });
        const auto end = std::chrono::steady_clock::now() + 5s;
        while (sync.counters().syncs < 2 && std::chrono::steady_clock::now() < end) {
            sync.poll(clock(), window_ns_);
            std::this_thread::sleep_for(10ms);
        }
        ASSERT_GE(sync.counters().syncs, 2u);
        EXPECT_GT(sync.counters().bits_sent, 0u);   // it did send them
        EXPECT_EQ(sync.counters().merges, 0u);      // and found nothing new
    }
    const redis_reply v = r.command({"GET", key()});
    EXPECT_EQ(std::string(v->str, v->len), before);
}

// A policy that counts no campaign subscribers (window 0): nothing is sent,
// and the link is kept and watched all the same.
TEST_F(CampaignSync, WithoutSubscriberCountingTheLinkIsOnlyWatched) {
    gateway a("a", redis_, password_, true);
    a.send(bot(1), clock(), window_ns_);
    const auto end = std::chrono::steady_clock::now() + 5s;
    while (a.sync->counters().last_sync_seconds == 0 && std::chrono::steady_clock::now() < end) {
        a.sync->poll(clock(), 0);
        std::this_thread::sleep_for(10ms);
    }
    const campaign_sync_counters c = a.sync->counters();
    EXPECT_TRUE(c.link_up);
    EXPECT_GT(c.last_sync_seconds, 0);
    EXPECT_EQ(c.syncs, 0u);
    EXPECT_EQ(c.fingerprints_sent, 0u);
    redis_connection r(redis_, password_);
    EXPECT_EQ(r.command({"EXISTS", key()})->integer, 0);
}

// The Redis string layout: bit i of the bitmap is Redis bit offset i.
TEST(CampaignSyncLayout, BitsRoundTripThroughRedisStrings) {
    campaign_table::subscriber_bits b{};
    b[0] = 1;                    // bit 0
    b[1] = 1ull << 39;           // bit 79
    b[5] = 1ull << 39;           // bit 239
    const std::string s = bits_to_redis(b);
    ASSERT_EQ(s.size(), 30u);
    EXPECT_EQ(static_cast<unsigned char>(s[0]), 0x80);
    EXPECT_EQ(static_cast<unsigned char>(s[9]), 0x01);    // 79 = 9*8 + 7
    EXPECT_EQ(static_cast<unsigned char>(s[29]), 0x01);   // 239 = 29*8 + 7
    EXPECT_EQ(bits_from_redis(s.data(), s.size()), b);
    EXPECT_EQ(bits_from_redis(s.data(), 10), (campaign_table::subscriber_bits{1, 1ull << 39, 0, 0, 0, 0}));
    EXPECT_EQ(campaign_key(3600'000'000'000ull, 5, 0xab), "sekisho:campaign:3600s:5:00000000000000ab");
    EXPECT_EQ(campaign_key(1500'000'000ull, (1u << 24) + 7, 1), "sekisho:campaign:1500ms:7:0000000000000001");
}

// The metrics of the fleet's links and campaign counting.
TEST(CampaignSyncLayout, MetricsNameTheStoreAndTheConcern) {
    control_snapshot s;
    add_fleet_link_samples(s.fleet, "redis", "campaign", true, 2, 1700000000.5);
    s.fleet.push_back({"sekisho_fleet_campaign_fingerprints_total", "h", true, {{"direction", "sent"}}, 11});
    s.fleet.push_back({"sekisho_fleet_campaign_fingerprints_total", "", true, {{"direction", "fetched"}}, 12});
    s.fleet.push_back({"sekisho_fleet_campaign_merges_total", "h", true, {}, 13});
    s.fleet.push_back({"sekisho_fleet_campaign_merge_overflows_total", "h", true, {}, 14});
    const std::string text = render_metrics({}, s, apply_durations{});
    for (const char* line : {"sekisho_fleet_link_up{store=\"redis\",concern=\"campaign\"} 1",
                             "sekisho_fleet_link_downs_total{store=\"redis\",concern=\"campaign\"} 2",
                             "sekisho_fleet_last_sync_timestamp_seconds{store=\"redis\",concern=\"campaign\"} 1700000000.5",
                             "sekisho_fleet_campaign_fingerprints_total{direction=\"sent\"} 11",
                             "sekisho_fleet_campaign_fingerprints_total{direction=\"fetched\"} 12",
                             "sekisho_fleet_campaign_merges_total 13", "sekisho_fleet_campaign_merge_overflows_total 14"})
        EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
    // Without fleet mode: none of them.
    EXPECT_EQ(render_metrics({}, control_snapshot{}, apply_durations{}).find("sekisho_fleet_"), std::string::npos);
}

// Redis killed mid-run: every gateway counts on locally (nothing waits);
// the link is counted down; a new, empty Redis comes up: the gateways send
// their window's bits again and the fleet sees the whole campaign.
TEST_F(CampaignSync, RedisKilledMidRunThenFleetDetectionResumes) {
    own_redis server(::testing::TempDir() + "/campaign-redis-" + std::to_string(getpid()),
                     "campaign-test-password");
    ASSERT_TRUE(server.start());
    gateway a("a", server.address(), server.password_file(), true), b("b", server.address(), server.password_file(), true),
        c("c", server.address(), server.password_file(), true);
    for (uint64_t i = 0; i < 10; ++i) a.send(bot(i), clock(), window_ns_);
    ASSERT_TRUE(settle({&a, &b, &c}));
    server.kill9();
    ASSERT_TRUE(pump({&a, &b, &c}, [&] { return !a.sync->counters().link_up && !c.sync->counters().link_up; }));
    // Local counting goes on, at the workers' pace.
    for (uint64_t i = 10; i < 20; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        b.send(bot(i), clock(), window_ns_);
        c.send(bot(i + 10), clock(), window_ns_);
        EXPECT_LT(std::chrono::steady_clock::now() - t0, 5ms);
        pump({&a, &b, &c}, [] { return true; });
    }
    ASSERT_TRUE(pump({&a, &b, &c}, [] { return false; }, 500ms) == false);
    // b and c had a's 10 from the fleet before the link went, not each other's.
    EXPECT_EQ(b.detections + c.detections, 0u);
    EXPECT_LE(estimate(b), 20u);
    EXPECT_LE(estimate(c), 20u);
    EXPECT_GT(estimate(c), 10u);
    for (gateway* g : {&a, &b, &c}) {
        EXPECT_GE(g->sync->counters().link_downs, 1u) << g->name;
        EXPECT_FALSE(g->sync->status()["last_error"].get<std::string>().empty());
        EXPECT_NE(g->sync->status()["last_error"].get<std::string>().find("redis"), std::string::npos);
    }
    EXPECT_LT(slowest_poll_, std::chrono::milliseconds(20)) << "poll() waited on the dead link";
    // A new Redis, empty: the bits of the window go out again, the fleet sees 30.
    ASSERT_TRUE(server.start());
    ASSERT_TRUE(pump({&a, &b, &c}, [&] { return estimate(c) > threshold; }, 15000ms))
        << "fleet detection did not resume; c sees " << estimate(c);
    const campaign_counts next = c.send(bot(29), clock(), window_ns_);
    EXPECT_GT(next.subscribers, threshold);
    EXPECT_EQ(c.detections, 1u);
    // Recipients counted locally while Redis was down (3 per message), then
    // the fleet's sum of them all from the new Redis: 10 + 10 + 11 messages.
    EXPECT_EQ(local_recipients(a), 30u);
    EXPECT_EQ(local_recipients(b), 30u);
    EXPECT_EQ(local_recipients(c), 33u);
    ASSERT_TRUE(pump({&a, &b, &c}, [&] { return fleet_recipients(c) == 93u && fleet_recipients(a) == 93u; }, 5000ms))
        << "fleet recipients did not resume: c reads " << fleet_recipients(c).value_or(0);
    for (gateway* g : {&a, &b, &c}) {
        EXPECT_TRUE(g->sync->counters().link_up) << g->name;
        bool said_down = false, said_up = false;
        for (const std::string& l : g->log) {
            said_down = said_down || l.find("redis link down") != std::string::npos;
            said_up = said_up || l.find("redis link up") != std::string::npos;
            EXPECT_EQ(l.find("campaign-test-password"), std::string::npos) << "credential in the log: " << l;
        }
        EXPECT_TRUE(said_down && said_up) << g->name;
    }
}

// A Redis that refuses (wrong password): counted down, never a success.
TEST_F(CampaignSync, RefusedCredentialsKeepTheLinkDown) {
    own_redis server(::testing::TempDir() + "/campaign-redis-auth-" + std::to_string(getpid()),
                     "campaign-test-password");
    ASSERT_TRUE(server.start());
    const std::string wrong = ::testing::TempDir() + "/wrong-password-" + std::to_string(getpid());
    std::ofstream(wrong) << "not-the-password\n";
    chmod(wrong.c_str(), 0600);
    gateway a("a", server.address(), wrong, true);
    a.send(bot(1), clock(), window_ns_);
    ASSERT_TRUE(pump({&a}, [&] { return a.sync->counters().link_downs >= 1; }));
    pump({&a}, [] { return false; }, 300ms);
    EXPECT_FALSE(a.sync->counters().link_up);
    EXPECT_EQ(a.sync->counters().syncs, 0u);
    EXPECT_EQ(a.sync->counters().link_downs, 1u);   // one outage, however many retries
    EXPECT_EQ(a.sync->status()["last_error"].get<std::string>().find("not-the-password"), std::string::npos);
    std::filesystem::remove(wrong);
}

// Recipients of one fingerprint counted on two gateways: each keeps its own
// exact count, and reads the fleet's, the sum, from its hash field and the
// other gateway's.
TEST_F(CampaignSync, FleetRecipientsAreTheSumOfEveryGatewaysCount) {
    gateway a("a", redis_, password_, true), b("b", redis_, password_, true);
    for (uint64_t i = 0; i < 4; ++i) a.send(bot(i), clock(), window_ns_);    // 12 recipients
    for (uint64_t i = 4; i < 9; ++i) b.send(bot(i), clock(), window_ns_);    // 15
    ASSERT_TRUE(pump({&a, &b}, [&] { return fleet_recipients(a) == 27u && fleet_recipients(b) == 27u; }))
        << "a reads " << fleet_recipients(a).value_or(0) << ", b reads " << fleet_recipients(b).value_or(0);
    EXPECT_EQ(local_recipients(a), 12u);   // local stays exact and local
    EXPECT_EQ(local_recipients(b), 15u);
    redis_connection r(redis_, password_);
    const redis_reply h = r.command({"HGETALL", rcpt_key()});
    ASSERT_EQ(h->elements, 4u);   // one field per gateway process: a/<boot id>, b/<boot id>
    uint64_t sum = 0;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const std::string name(h->element[i]->str, h->element[i]->len);
        EXPECT_TRUE(name.rfind("a/", 0) == 0 || name.rfind("b/", 0) == 0) << name;
        EXPECT_EQ(name.size(), 2u + 16u) << name;
        sum += std::stoull(std::string(h->element[i + 1]->str, h->element[i + 1]->len));
    }
    EXPECT_EQ(sum, 27u);
    const long long ttl = r.command({"TTL", rcpt_key()})->integer;
    EXPECT_GT(ttl, static_cast<long long>(window_ns_ / 1'000'000'000));
    EXPECT_LE(ttl, static_cast<long long>(2 * window_ns_ / 1'000'000'000));
    // More of it on a: the count is set again (not added), the sum follows.
    a.send(bot(20), clock(), window_ns_);
    ASSERT_TRUE(pump({&a, &b}, [&] { return fleet_recipients(a) == 30u && fleet_recipients(b) == 30u; }));
    // The fleet figure carries the union's bitmap too.
    for (const campaign_fleet_figure& f : a.sync->fleet_figures()) {
        if (f.fingerprint == fingerprint) {
            EXPECT_EQ(campaign_table::estimate_of(f.bits), estimate(a));
        }
    }
    EXPECT_EQ(a.sync->counters().bad_fields, 0u);
    EXPECT_EQ(a.sync->status()["recipients_sent"].get<uint64_t>(), 2u);
}

// The same counts sent twice (the link lost and back, or a replay of the
// same capture under its fixed field) set the same field to the same value.
TEST_F(CampaignSync, RecipientsResentChangeNothing) {
    redis_connection r(redis_, password_);
    campaign_table t(1024, 4096);
    for (uint64_t i = 0; i < 5; ++i) t.observe(fingerprint, bot(i), 3, clock(), window_ns_);
    for (int run = 0; run < 2; ++run) {
        campaign_sync_settings s;
        s.gateway = "replayer";
        s.recipients_field = "replayer/replay";
        s.redis_address = redis_;
        s.redis_password_file = password_;
        s.sync_interval_ns = 50'000'000;
        campaign_sync sync(s, t, nullptr);
        const auto end = std::chrono::steady_clock::now() + 5s;
        while (sync.counters().syncs < 3 && std::chrono::steady_clock::now() < end) {
            sync.poll(clock(), window_ns_);
            std::this_thread::sleep_for(10ms);
        }
        ASSERT_GE(sync.counters().syncs, 3u);
        EXPECT_EQ(sync.counters().recipients_sent, 1u) << "an unchanged count was written again";
        const auto figures = sync.fleet_figures();
        ASSERT_EQ(figures.size(), 1u);
        EXPECT_EQ(figures[0].recipients, 15u) << "run " << run;
        EXPECT_EQ(r.command({"HLEN", rcpt_key()})->integer, 1);
        const redis_reply v = r.command({"HGET", rcpt_key(), "replayer/replay"});
        ASSERT_EQ(v->type, REDIS_REPLY_STRING);
        EXPECT_EQ(std::string(v->str, v->len), "15");
    }
    // A field that is not a count (someone else's write) is ignored and counted.
    r.command({"HSET", rcpt_key(), "intruder/0", "many"});
    gateway a("a", redis_, password_, true);
    a.send(bot(0), clock(), window_ns_);
    ASSERT_TRUE(pump({&a}, [&] { return fleet_recipients(a) == 18u; }));
    EXPECT_GE(a.sync->counters().bad_fields, 1u);
    bool named = false;
    for (const std::string& l : a.log) named = named || l.find(rcpt_key() + "); ignored") != std::string::npos;
    EXPECT_TRUE(named) << "the log does not name the hash with a bad field";
}

// A gateway restarted (its process gone, kill -9 or not: a new boot id)
// starts counting from zero; what it counted before stays its earlier
// field, so the fleet's sum keeps it.
TEST_F(CampaignSync, ARestartedGatewayKeepsItsEarlierCountInTheFleetSum) {
    gateway b("b", redis_, password_, true);
    for (uint64_t i = 0; i < 2; ++i) b.send(bot(100 + i), clock(), window_ns_);   // 6
    {
        gateway a("a", redis_, password_, true);
        for (uint64_t i = 0; i < 4; ++i) a.send(bot(i), clock(), window_ns_);   // 12
        ASSERT_TRUE(pump({&a, &b}, [&] { return fleet_recipients(b) == 18u; }));
    }
    gateway again("a", redis_, password_, true);   // a new process, a new table
    again.send(bot(50), clock(), window_ns_);       // 3
    ASSERT_TRUE(pump({&again, &b}, [&] { return fleet_recipients(again) == 21u && fleet_recipients(b) == 21u; }))
        << "the restarted gateway reads " << fleet_recipients(again).value_or(0);
    EXPECT_EQ(local_recipients(again), 3u);
    redis_connection r(redis_, password_);
    EXPECT_EQ(r.command({"HLEN", rcpt_key()})->integer, 3);   // a's two processes and b
}

}  // namespace
}  // namespace sekisho
