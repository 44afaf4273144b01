// The campaign view (GET /v1/campaigns) over a real campaign table, as the
// workers fill it: order, bounds, the filter, the fleet columns and the
// thresholds; only fingerprints and counts.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "control/api/campaign_view.h"

namespace sekisho {
namespace {

constexpr uint64_t window_ns = 600'000'000'000ull;       // 10 minutes
constexpr uint64_t now_ns = 1'800'000'000'000'000'000ull + 123'000'000'000ull;

uint64_t subscriber(uint64_t i) { return 0x5b5b0000'00000000ull + i * 0x9e3779b97f4a7c15ull; }

// The estimate the workers get for fp (linear counting: two subscribers may share a bit).
uint32_t estimate(const campaign_table& t, uint64_t fp) { return t.peek(fp, subscriber(0), now_ns, window_ns).subscribers; }

inspection_settings counting(uint32_t max_subscribers) {
    inspection_settings in;
    in.enabled = true;
    in.campaign_subscribers = {max_subscribers, window_ns, 10};
    in.campaign_recipients = {50, window_ns, 10};
    return in;
}

// `subscribers` distinct subscribers send fingerprint fp to 2 recipients each.
void send(campaign_table& t, uint64_t fp, uint64_t subscribers, uint64_t first = 0) {
    for (uint64_t i = first; i < first + subscribers; ++i) t.observe(fp, subscriber(i), 2, now_ns, window_ns);
}

TEST(campaign_view, MostSubscribersFirstBoundedAndFiltered) {
    campaign_table t(1024, 4096);
    send(t, 0xa1, 3);
    send(t, 0xb2, 12);
    send(t, 0xc3, 7);
    t.observe(0xd4, subscriber(1), 2, now_ns - window_ns, window_ns);   // the window before: not listed
    const nlohmann::json j = campaign_view(t, counting(10), now_ns, nullptr, 2, 0);
    EXPECT_TRUE(j["counting"].get<bool>());
    EXPECT_FALSE(j["fleet"].get<bool>());
    EXPECT_EQ(j["matching"], 3);
    ASSERT_EQ(j["campaigns"].size(), 2u);
    EXPECT_EQ(j["campaigns"][0]["fingerprint"], "00000000000000b2");
    EXPECT_EQ(j["campaigns"][0]["subscribers"], estimate(t, 0xb2));
    EXPECT_GT(estimate(t, 0xb2), 10u);
    EXPECT_EQ(j["campaigns"][0]["recipients"], 24);
    EXPECT_TRUE(j["campaigns"][0]["over_subscribers"].get<bool>());
    EXPECT_EQ(j["campaigns"][1]["fingerprint"], "00000000000000c3");
    EXPECT_FALSE(j["campaigns"][1]["over_subscribers"].get<bool>());
    EXPECT_FALSE(j["campaigns"][0].contains("fleet_subscribers"));
    EXPECT_EQ(j["window_s"], 600.0);
    EXPECT_EQ(j["window_start"], static_cast<double>(now_ns / window_ns * window_ns) / 1e9);
    EXPECT_EQ(j["thresholds"]["subscribers"]["max"], 10);
    EXPECT_EQ(j["thresholds"]["recipients_per_subscriber"]["max"], 50);
    // The filter: at least 5 subscribers.
    const nlohmann::json f = campaign_view(t, counting(10), now_ns, nullptr, 20, 5);
    EXPECT_EQ(f["matching"], 2);
    ASSERT_EQ(f["campaigns"].size(), 2u);
    // Counts and fingerprints only: the subscribers' keys are nowhere.
    const std::string text = f.dump();
    EXPECT_EQ(text.find("5b5b"), std::string::npos) << text;
}

TEST(campaign_view, FleetColumnsFromTheFleetFigures) {
    campaign_table t(1024, 4096);
    send(t, 0xa1, 4);      // here: 4 subscribers, 8 recipients
    send(t, 0xb2, 2);
    // The fleet's bitmap of a1: this gateway's 4 and 20 more elsewhere.
    campaign_table elsewhere(1024, 4096);
    send(elsewhere, 0xa1, 24);
    send(elsewhere, 0xe5, 9, 100);   // fleet-hot, never seen here
    std::vector<campaign_fleet_figure> fleet;
    const uint32_t w = campaign_table::window_index(now_ns, window_ns);
    elsewhere.for_each_active(w, [&](uint64_t fp, uint32_t win, uint32_t, const campaign_table::subscriber_bits& b) {
        fleet.push_back({fp, win, b, fp == 0xa1 ? 48u : 18u});
    });
    fleet.push_back({0xf6, w - 1, {}, 99});   // another window: ignored
    const nlohmann::json j = campaign_view(t, counting(20), now_ns, &fleet, 20, 0);
    EXPECT_TRUE(j["fleet"].get<bool>());
    ASSERT_EQ(j["campaigns"].size(), 3u);
    const nlohmann::json& a = j["campaigns"][0];
    EXPECT_EQ(a["fingerprint"], "00000000000000a1");
    EXPECT_EQ(a["subscribers"], 4);
    EXPECT_EQ(a["recipients"], 8);
    EXPECT_EQ(a["fleet_subscribers"], estimate(elsewhere, 0xa1));
    EXPECT_GT(estimate(elsewhere, 0xa1), 20u);
    EXPECT_EQ(a["fleet_recipients"], 48);
    EXPECT_FALSE(a["over_subscribers"].get<bool>());   // what the workers see here: 4
    EXPECT_EQ(j["campaigns"][1]["fingerprint"], "00000000000000e5");
    EXPECT_EQ(j["campaigns"][1]["subscribers"], 0);
    EXPECT_EQ(j["campaigns"][1]["fleet_subscribers"], estimate(elsewhere, 0xe5));
    // Seen here, not read back from the fleet yet: null, not zero.
    EXPECT_EQ(j["campaigns"][2]["fingerprint"], "00000000000000b2");
    EXPECT_TRUE(j["campaigns"][2]["fleet_subscribers"].is_null());
    EXPECT_TRUE(j["campaigns"][2]["fleet_recipients"].is_null());
    // The filter takes the larger of the two estimates.
    EXPECT_EQ(campaign_view(t, counting(20), now_ns, &fleet, 20, 5)["matching"], 2);
}

// Once the fleet's bits are merged into the table, the table's estimate is
// the fleet's; the view's own column leaves out the bits the fleet brought.
TEST(campaign_view, OwnSubscribersLeaveOutTheMergedFleetBits) {
    campaign_table t(1024, 4096), elsewhere(1024, 4096), own(1024, 4096);
    send(t, 0xa1, 2);
    send(own, 0xa1, 2);
    send(elsewhere, 0xa1, 28, 200);
    const uint32_t w = campaign_table::window_index(now_ns, window_ns);
    campaign_table::subscriber_bits fleet_bits{}, own_bits{};
    elsewhere.for_each_active(w, [&](uint64_t, uint32_t, uint32_t, const campaign_table::subscriber_bits& b) { fleet_bits = b; });
    t.for_each_active(w, [&](uint64_t, uint32_t, uint32_t, const campaign_table::subscriber_bits& b) { own_bits = b; });
    campaign_table::subscriber_bits merged{}, all = fleet_bits;
    for (size_t i = 0; i < merged.size(); ++i) {
        merged[i] = fleet_bits[i] & ~own_bits[i];
        all[i] |= own_bits[i];
    }
    ASSERT_EQ(t.merge_subscriber_bits(0xa1, w, fleet_bits), campaign_table::merge_result::merged);
    const std::vector<campaign_fleet_figure> fleet{{0xa1, w, all, 60, merged}};
    const nlohmann::json j = campaign_view(t, counting(25), now_ns, &fleet, 20, 0);
    ASSERT_EQ(j["campaigns"].size(), 1u);
    EXPECT_EQ(j["campaigns"][0]["subscribers"], estimate(own, 0xa1));
    EXPECT_EQ(j["campaigns"][0]["fleet_subscribers"], estimate(t, 0xa1));
    EXPECT_GT(estimate(t, 0xa1), 25u);
    EXPECT_TRUE(j["campaigns"][0]["over_subscribers"].get<bool>());   // judged on the merged table, as the workers do
}

TEST(campaign_view, WithoutCampaignCountingAnEmptyListSaysSo) {
    campaign_table t(1024, 4096);
    send(t, 0xa1, 4);
    inspection_settings off;
    off.enabled = true;
    const nlohmann::json j = campaign_view(t, off, now_ns, nullptr, 20, 0);
    EXPECT_FALSE(j["counting"].get<bool>());
    EXPECT_TRUE(j["campaigns"].empty());
    EXPECT_TRUE(j["thresholds"]["subscribers"].is_null());
}

}  // namespace
}  // namespace sekisho
