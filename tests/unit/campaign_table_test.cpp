// campaign_table: exact recipients and per-(fingerprint, subscriber)
// recipients, distinct-subscriber estimates within the stated error, epoch-
// aligned windows, fail-open when full and reuse of stale cells, and two
// threads hammering the same fingerprints and subscribers.
#include "dataplane/inspect/campaign_table.h"

#include <gtest/gtest.h>

#include <barrier>
#include <cmath>
#include <random>
#include <thread>
#include <vector>

namespace sekisho {
namespace {

constexpr uint64_t s = 1'000'000'000, hour = 3600 * s;
constexpr uint64_t window_start = 1'700'000'000 * s / hour * hour;  // an hour boundary

// The subscriber key hash of subscriber i (what subscriber_key_hash would give).
uint64_t sub(uint64_t i) { return 0x5b5b0000'00000000ull + i * 0x9e3779b97f4a7c15ull; }

// Linear counting's standard error with m bits at n distinct values.
double lc_sigma(double n) {
    const double m = campaign_table::bitmap_bits, t = n / m;
    return std::sqrt(m * (std::exp(t) - t - 1));
}

TEST(campaign_table, layout) {
    EXPECT_EQ(sizeof(campaign_table::fingerprint_cell), 64u);
    EXPECT_EQ(sizeof(campaign_table::pair_cell), 16u);
    campaign_table t(65536, 262144);
    EXPECT_EQ(t.memory_bytes(), 65536u * 64 + 262144u * 16);
    campaign_table small(10, 0);
    EXPECT_EQ(small.fingerprint_capacity(), 16u);
    EXPECT_EQ(small.pair_capacity(), 16u);
}

TEST(campaign_table, counts_recipients_subscribers_and_pairs) {
    campaign_table t(1024, 4096);
    const uint64_t fp = 0x1234567890abcdefull, now = window_start + 10 * s;
    campaign_counts c = t.observe(fp, sub(1), 3, now, hour);
    EXPECT_TRUE(c.tracked);
    EXPECT_TRUE(c.subscriber_tracked);
    EXPECT_EQ(c.recipients, 3u);
    EXPECT_EQ(c.subscribers, 1u);
    EXPECT_EQ(c.subscriber_recipients, 3u);
    c = t.observe(fp, sub(1), 2, now + s, hour);
    EXPECT_EQ(c.recipients, 5u);
    EXPECT_EQ(c.subscribers, 1u);
    EXPECT_EQ(c.subscriber_recipients, 5u);
    c = t.observe(fp, sub(2), 1, now + 2 * s, hour);
    EXPECT_EQ(c.recipients, 6u);
    EXPECT_EQ(c.subscribers, 2u);
    EXPECT_EQ(c.subscriber_recipients, 1u);
    // Another fingerprint is counted apart.
    c = t.observe(fp + 1, sub(1), 7, now, hour);
    EXPECT_EQ(c.recipients, 7u);
    EXPECT_EQ(c.subscribers, 1u);
    EXPECT_EQ(c.subscriber_recipients, 7u);
    // peek books nothing; unknown keys read as zero.
    c = t.peek(fp, sub(1), now + 3 * s, hour);
    EXPECT_EQ(c.recipients, 6u);
    EXPECT_EQ(c.subscribers, 2u);
    EXPECT_EQ(c.subscriber_recipients, 5u);
    EXPECT_EQ(t.peek(fp, sub(1), now + 3 * s, hour).recipients, 6u);
    c = t.peek(fp + 2, sub(9), now, hour);
    EXPECT_FALSE(c.tracked);
    EXPECT_EQ(c.recipients, 0u);
    // No recipients: nothing booked.
    EXPECT_EQ(t.observe(fp, sub(3), 0, now, hour).subscribers, 2u);
    EXPECT_EQ(t.fingerprint_overflows(), 0u);
    EXPECT_EQ(t.pair_overflows(), 0u);
}

TEST(campaign_table, windows_are_aligned_to_the_epoch) {
    campaign_table t(64, 64);
    const uint64_t fp = 42;
    EXPECT_EQ(t.observe(fp, sub(1), 4, window_start + hour - s, hour).recipients, 4u);
    EXPECT_EQ(t.observe(fp, sub(2), 1, window_start + hour - 1, hour).subscribers, 2u);
    // A new window starts at the boundary: counts, bitmap and pairs restart.
    const campaign_counts c = t.observe(fp, sub(1), 2, window_start + hour, hour);
    EXPECT_EQ(c.recipients, 2u);
    EXPECT_EQ(c.subscribers, 1u);
    EXPECT_EQ(c.subscriber_recipients, 2u);
    // A worker whose clock lags counts into the newer window the cell holds.
    const campaign_counts late = t.observe(fp, sub(3), 1, window_start + hour - 5 * s, hour);
    EXPECT_EQ(late.recipients, 3u);
    EXPECT_EQ(late.subscribers, 2u);
    // Reading an old window does not see the new one's counts.
    EXPECT_EQ(t.peek(fp, sub(1), window_start + 3 * hour, hour).recipients, 0u);
}

TEST(campaign_table, recipients_saturate) {
    campaign_table t(16, 16);
    const uint64_t now = window_start;
    t.observe(7, sub(1), campaign_table::max_count - 1, now, hour);
    EXPECT_EQ(t.observe(7, sub(1), 5, now, hour).recipients, campaign_table::max_count);
    EXPECT_EQ(t.observe(7, sub(1), 5, now, hour).subscriber_recipients, campaign_table::max_count);
}

TEST(campaign_table, full_table_fails_open_then_reuses_stale_cells) {
    campaign_table t(16, 16);  // every key probes all 16 cells
    const uint64_t now = window_start;
    for (uint64_t fp = 1; fp <= 16; ++fp) ASSERT_TRUE(t.observe(fp, sub(1), 1, now, hour).tracked) << fp;
    const campaign_counts full = t.observe(100, sub(2), 5, now, hour);
    EXPECT_FALSE(full.tracked);
    EXPECT_EQ(full.recipients, 0u);
    EXPECT_EQ(full.subscribers, 0u);
    EXPECT_FALSE(full.subscriber_tracked);
    EXPECT_EQ(t.fingerprint_overflows(), 1u);
    EXPECT_EQ(t.pair_overflows(), 1u);
    // One window later the cells are still the previous window's (kept: a lagging worker may count there).
    EXPECT_FALSE(t.observe(100, sub(2), 5, now + hour, hour).tracked);
    // Two windows later they are history: the new key takes one.
    const campaign_counts c = t.observe(100, sub(2), 5, now + 2 * hour, hour);
    EXPECT_TRUE(c.tracked);
    EXPECT_EQ(c.recipients, 5u);
    EXPECT_EQ(c.subscribers, 1u) << "the old key's bitmap does not carry over";
    EXPECT_TRUE(c.subscriber_tracked);
    EXPECT_EQ(c.subscriber_recipients, 5u);
    EXPECT_EQ(t.reclaimed(), 2u);  // one fingerprint cell, one pair cell
    // The old keys still there count afresh in the new window.
    uint64_t tracked = 0;
    for (uint64_t fp = 1; fp <= 16; ++fp) tracked += t.observe(fp, sub(1), 1, now + 2 * hour, hour).tracked;
    EXPECT_EQ(tracked, 15u);
}

// Distinct subscribers: 300 fingerprints for each size, each sent by n random
// subscribers (some several times): the estimate's bias and spread match
// linear counting's, and no single estimate is off by more than 5 sigma + 1.
TEST(campaign_table, distinct_subscriber_estimate_within_stated_error) {
    std::mt19937_64 rng(5);
    const uint32_t sizes[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};
    for (uint32_t n : sizes) {
        campaign_table t(1024, 1 << 20);
        double sum_err = 0, sum_sq = 0, worst = 0;
        const int fps = 300;
        for (int f = 0; f < fps; ++f) {
            const uint64_t fp = rng();
            uint32_t est = 0;
            for (uint32_t i = 0; i < n; ++i) {
                const uint64_t who = rng();
                est = t.observe(fp, who, 1, window_start, hour).subscribers;
                if (i % 3 == 0) est = t.observe(fp, who, 1, window_start, hour).subscribers;  // again: no change
            }
            const double err = static_cast<double>(est) - n;
            sum_err += err;
            sum_sq += err * err;
            worst = std::max(worst, std::abs(err));
            ASSERT_LE(std::abs(err), 5 * lc_sigma(n) + 1) << "n=" << n;
        }
        const double bias = sum_err / fps, rms = std::sqrt(sum_sq / fps), sigma = lc_sigma(n);
        // Linear counting reads a little high near saturation: about +4% at 1000.
        EXPECT_LE(std::abs(bias), (n <= 500 ? 0.02 : 0.05) * n + 0.5) << "n=" << n;
        EXPECT_LE(rms, 1.3 * sigma + 0.5) << "n=" << n;
        std::printf("subscribers n=%4u: bias %+6.2f, rms error %6.2f (%.1f%%; stated sigma %.2f), worst %.0f\n", n, bias,
                    rms, 100 * rms / n, sigma, worst);
    }
    EXPECT_EQ(campaign_table::estimate(campaign_table::bitmap_bits), 0u);
    EXPECT_EQ(campaign_table::estimate(campaign_table::bitmap_bits - 1), 1u);
    EXPECT_EQ(campaign_table::estimate(0), campaign_table::max_subscribers);
}

// Two threads on the same fingerprints: thread 0 sends fingerprint f as
// subscribers [0, n_f), thread 1 as [n_f/2, n_f + n_f/2): the overlapping
// subscribers' pair cells and every fingerprint's count word are contended.
TEST(campaign_table, two_threads_exact_recipients_and_estimates) {
    constexpr int fps = 64, rounds = 20;
    campaign_table t(4096, 1 << 16);
    auto n_of = [](int f) { return static_cast<uint32_t>(4 + 10 * f); };
    auto rcpts = [](int thread, int f, uint32_t i, int round) {
        return static_cast<uint32_t>(1 + (thread * 7 + f * 3 + i + static_cast<uint32_t>(round)) % 5);
    };
    auto worker = [&](int thread) {
        std::mt19937 rng(static_cast<unsigned>(thread));
        for (int round = 0; round < rounds; ++round)
            for (int f = 0; f < fps; ++f) {
                const uint32_t n = n_of(f), first = thread == 0 ? 0 : n / 2;
                for (uint32_t i = 0; i < n; ++i) {
                    const campaign_counts c =
                        t.observe(1000 + static_cast<uint64_t>(f), sub(first + i), rcpts(thread, f, i, round),
                                  window_start + static_cast<uint64_t>(round) * s, hour);
                    ASSERT_TRUE(c.tracked);
                    ASSERT_TRUE(c.subscriber_tracked);
                }
            }
    };
    std::thread a(worker, 0), b(worker, 1);
    a.join();
    b.join();
    for (int f = 0; f < fps; ++f) {
        const uint32_t n = n_of(f);
        uint64_t total = 0;
        std::vector<uint64_t> per_sub(n + n / 2, 0);
        for (int thread = 0; thread < 2; ++thread) {
            const uint32_t first = thread == 0 ? 0 : n / 2;
            for (int round = 0; round < rounds; ++round)
                for (uint32_t i = 0; i < n; ++i) {
                    total += rcpts(thread, f, i, round);
                    per_sub[first + i] += rcpts(thread, f, i, round);
                }
        }
        const uint64_t fp = 1000 + static_cast<uint64_t>(f);
        const campaign_counts c = t.peek(fp, sub(0), window_start + 30 * s, hour);
        EXPECT_EQ(c.recipients, total) << "fingerprint " << f;
        const double distinct = n + n / 2;
        EXPECT_LE(std::abs(c.subscribers - distinct), 5 * lc_sigma(distinct) + 1) << "fingerprint " << f;
        for (uint32_t i = 0; i < per_sub.size(); ++i)
            ASSERT_EQ(t.peek(fp, sub(i), window_start + 30 * s, hour).subscriber_recipients, per_sub[i])
                << "fingerprint " << f << " subscriber " << i;
    }
    EXPECT_EQ(t.fingerprint_overflows(), 0u);
    EXPECT_EQ(t.pair_overflows(), 0u);
}

// Two threads, four times more keys than cells, the keys in use moving on
// every two windows: cells are taken over while the other thread counts in
// them. Counts never cross keys:
// what a key reads is at most what was booked for it in that window.
TEST(campaign_table, reclaiming_under_contention_never_mixes_keys) {
    constexpr uint64_t keys = 64, windows = 12, per_window = 4000;
    campaign_table t(16, 16);
    // What each thread booked per window and key: in the fingerprint cell (recipients) and in
    // the pair cell (subscriber_recipients). The two are claimed apart: either may be full while
    // the other counts.
    std::vector<uint64_t> booked[2], booked_pair[2];
    std::barrier sync(2);  // both in the same window (a lagging one would count into the newer)
    auto worker = [&](int thread) {
        std::mt19937_64 rng(static_cast<uint64_t>(thread) + 100);
        booked[thread].assign(windows * keys, 0);
        booked_pair[thread].assign(windows * keys, 0);
        for (uint64_t w = 0; w < windows; ++w) {
            sync.arrive_and_wait();
            for (uint64_t i = 0; i < per_window; ++i) {
                const uint64_t k = ((w / 2) % 4 * 16 + rng() % 20) % keys;  // the set moves every 2 windows
                const campaign_counts c = t.observe(k + 1, sub(k), 1, window_start + w * s + i, s);
                if (c.tracked) ++booked[thread][w * keys + k];
                if (c.subscriber_tracked) ++booked_pair[thread][w * keys + k];
            }
        }
    };
    std::thread a(worker, 0), b(worker, 1);
    a.join();
    b.join();
    const uint64_t last = windows - 1;
    uint64_t seen = 0;
    for (uint64_t k = 0; k < keys; ++k) {
        const campaign_counts c = t.peek(k + 1, sub(k), window_start + last * s, s);
        const uint64_t mine = booked[0][last * keys + k] + booked[1][last * keys + k];
        const uint64_t mine_pair = booked_pair[0][last * keys + k] + booked_pair[1][last * keys + k];
        EXPECT_LE(c.recipients, mine) << "key " << k;
        EXPECT_LE(c.subscriber_recipients, mine_pair) << "key " << k;
        EXPECT_LE(c.subscribers, 1u) << "key " << k;
        seen += c.recipients;
    }
    EXPECT_GT(seen, 0u);
    EXPECT_GT(t.fingerprint_overflows(), 0u);
    EXPECT_GT(t.reclaimed(), 0u);
}

// A replay with one worker or two ends with the same counts (within a window:
// across a boundary a lagging worker counts into the newer window).
TEST(campaign_table, one_or_two_workers_end_equal) {
    struct event {
        uint64_t fp, who;
        uint32_t n;
        uint64_t t;
    };
    std::mt19937_64 rng(11);
    std::vector<event> events;
    for (int i = 0; i < 20000; ++i)
        events.push_back({rng() % 50, sub(rng() % 400), static_cast<uint32_t>(1 + rng() % 9),
                          window_start + static_cast<uint64_t>(i) * 100'000'000ull});  // 2000 s, one window
    campaign_table one(1024, 1 << 16), two(1024, 1 << 16);
    for (const event& e : events) one.observe(e.fp, e.who, e.n, e.t, hour);
    auto half = [&](int w) {
        for (const event& e : events)
            if ((e.who >> 3) % 2 == static_cast<uint64_t>(w)) two.observe(e.fp, e.who, e.n, e.t, hour);
    };
    std::thread a(half, 0), b(half, 1);
    a.join();
    b.join();
    const uint64_t end = events.back().t;
    for (uint64_t fp = 0; fp < 50; ++fp)
        for (uint64_t who = 0; who < 400; who += 7) {
            const campaign_counts x = one.peek(fp, sub(who), end, hour), y = two.peek(fp, sub(who), end, hour);
            ASSERT_EQ(x.recipients, y.recipients);
            ASSERT_EQ(x.subscribers, y.subscribers);
            ASSERT_EQ(x.subscriber_recipients, y.subscriber_recipients);
        }
}

// Fleet merging: the bits of one fingerprint and window, as for_each_active reads them.
campaign_table::subscriber_bits bits_of(const campaign_table& t, uint64_t fp, uint32_t window) {
    campaign_table::subscriber_bits out{};
    t.for_each_active(window, [&](uint64_t f, uint32_t, uint32_t, const campaign_table::subscriber_bits& b) {
        if (f == fp) out = b;
    });
    return out;
}

TEST(campaign_table, merged_fleet_bits_give_the_union_estimate) {
    // Three gateways, ten distinct subscribers each, one message: a threshold
    // of 25 is crossed fleet-wide only.
    campaign_table a(1024, 4096), b(1024, 4096), c(1024, 4096), all(1024, 4096);
    const uint64_t fp = 0xfeedface12345678ull, now = window_start + 5 * s;
    const uint32_t w = campaign_table::window_index(now, hour);
    for (uint64_t i = 0; i < 10; ++i) {
        EXPECT_LE(a.observe(fp, sub(i), 1, now, hour).subscribers, 10u);
        EXPECT_LE(b.observe(fp, sub(100 + i), 1, now, hour).subscribers, 10u);
        all.observe(fp, sub(i), 1, now, hour);
        all.observe(fp, sub(100 + i), 1, now, hour);
    }
    EXPECT_EQ(c.merge_subscriber_bits(fp, w, bits_of(a, fp, w)), campaign_table::merge_result::merged);
    EXPECT_EQ(c.merge_subscriber_bits(fp, w, bits_of(b, fp, w)), campaign_table::merge_result::merged);
    // Merging the same bits again changes nothing (a resend is harmless).
    EXPECT_EQ(c.merge_subscriber_bits(fp, w, bits_of(a, fp, w)), campaign_table::merge_result::unchanged);
    // The merged cell has no recipients of its own until a message comes.
    bool seen = false;
    c.for_each_active(w, [&](uint64_t f, uint32_t cw, uint32_t recipients, const campaign_table::subscriber_bits&) {
        seen = seen || (f == fp && cw == w && recipients == 0);
    });
    EXPECT_TRUE(seen);
    campaign_counts last;
    for (uint64_t i = 0; i < 10; ++i) {
        last = c.observe(fp, sub(200 + i), 2, now + s, hour);
        all.observe(fp, sub(200 + i), 2, now + s, hour);
    }
    EXPECT_EQ(last.recipients, 20u);   // recipients stay local and exact
    EXPECT_EQ(last.subscribers, all.peek(fp, sub(0), now, hour).subscribers);   // the union's estimate
    EXPECT_GT(last.subscribers, 25u);
    EXPECT_EQ(bits_of(c, fp, w), bits_of(all, fp, w));
    // A gateway without the fleet's bits stays below.
    EXPECT_LE(a.peek(fp, sub(0), now, hour).subscribers, 10u);
}

TEST(campaign_table, merge_respects_windows) {
    campaign_table t(1024, 4096);
    const uint64_t fp = 42, now = window_start + 5 * s;
    const uint32_t w = campaign_table::window_index(now, hour);
    t.observe(fp, sub(1), 1, now, hour);
    campaign_table::subscriber_bits other{};
    other[3] = 1u << 7;
    // Bits of the previous window are history: the cell is not touched.
    EXPECT_EQ(t.merge_subscriber_bits(fp, w - 1, other), campaign_table::merge_result::stale);
    EXPECT_EQ(t.peek(fp, sub(1), now, hour).subscribers, 1u);
    EXPECT_EQ(bits_of(t, fp, w - 1), campaign_table::subscriber_bits{});
    // for_each_active lists only the window asked for (or any).
    unsigned n = 0;
    t.for_each_active(w + 1, [&](uint64_t, uint32_t, uint32_t, const campaign_table::subscriber_bits&) { ++n; });
    EXPECT_EQ(n, 0u);
    t.for_each_active(campaign_table::any_window,
                      [&](uint64_t, uint32_t cw, uint32_t, const campaign_table::subscriber_bits&) {
                          EXPECT_EQ(cw, w);
                          ++n;
                      });
    EXPECT_EQ(n, 1u);
    // Bits of the next window move the cell on: the old window's counts read as empty there.
    EXPECT_EQ(t.merge_subscriber_bits(fp, w + 1, other), campaign_table::merge_result::merged);
    EXPECT_EQ(bits_of(t, fp, w + 1), other);
    const campaign_counts c = t.observe(fp, sub(1), 1, now + hour, hour);
    EXPECT_EQ(c.recipients, 1u);
    EXPECT_EQ(c.subscribers, campaign_table::estimate_of(bits_of(t, fp, w + 1)));
    EXPECT_GE(c.subscribers, 1u);
    EXPECT_LE(c.subscribers, 2u);
}

TEST(campaign_table, merge_into_a_full_table_is_counted) {
    campaign_table t(16, 16);
    const uint64_t now = window_start + 5 * s;
    const uint32_t w = campaign_table::window_index(now, hour);
    for (uint64_t f = 1; f <= 16; ++f) t.observe(f, sub(f), 1, now, hour);
    campaign_table::subscriber_bits bits{};
    bits[0] = 1;
    EXPECT_EQ(t.merge_subscriber_bits(1000, w, bits), campaign_table::merge_result::full);
    EXPECT_EQ(t.merge_overflows(), 1u);
    EXPECT_EQ(t.fingerprint_overflows(), 0u);   // the workers' own counter is not touched
    // A known fingerprint still merges.
    EXPECT_NE(t.merge_subscriber_bits(1, w, bits), campaign_table::merge_result::full);
}

TEST(campaign_table, merge_alongside_a_worker_loses_no_bit) {
    // A worker observes subscribers while the control thread merges others:
    // the end bitmap is the union of both.
    campaign_table t(1024, 8192), reference(1024, 8192);
    const uint64_t fp = 7, now = window_start + 5 * s;
    const uint32_t w = campaign_table::window_index(now, hour);
    std::vector<campaign_table::subscriber_bits> fleet;
    for (uint64_t i = 0; i < 200; ++i) {
        campaign_table one(16, 16);
        one.observe(fp, sub(1000 + i), 1, now, hour);
        fleet.push_back(bits_of(one, fp, w));
        reference.observe(fp, sub(1000 + i), 1, now, hour);
        reference.observe(fp, sub(i), 1, now, hour);
    }
    std::barrier sync(2);
    std::thread worker([&] {
        sync.arrive_and_wait();
        for (uint64_t i = 0; i < 200; ++i) t.observe(fp, sub(i), 1, now, hour);
    });
    sync.arrive_and_wait();
    for (const auto& b : fleet) t.merge_subscriber_bits(fp, w, b);
    worker.join();
    EXPECT_EQ(bits_of(t, fp, w), bits_of(reference, fp, w));
    EXPECT_EQ(t.peek(fp, sub(0), now, hour).recipients, 200u);
}

}  // namespace
}  // namespace sekisho
