// limit_cell: GCRA rate and fixed windows, exact under concurrent updates.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "dataplane/limits/limit_cell.h"

namespace sekisho {
namespace {

constexpr uint64_t ms = 1'000'000, s = 1'000'000'000;

TEST(limit_cell, gcra_allows_burst_then_rate) {
    limit_cell c;
    // 5 per second, burst 10: interval 200 ms, tolerance 9 intervals.
    const uint64_t interval = s / 5, tolerance = 9 * interval;
    const uint64_t t0 = 1000 * s;
    int allowed = 0;
    for (int i = 0; i < 20; ++i) allowed += gcra_take(c, t0, interval, tolerance);
    EXPECT_EQ(allowed, 10) << "a burst of 10 at one instant";
    EXPECT_FALSE(gcra_take(c, t0 + 100 * ms, interval, tolerance));
    EXPECT_TRUE(gcra_take(c, t0 + 200 * ms, interval, tolerance)) << "one more every 200 ms";
    EXPECT_FALSE(gcra_take(c, t0 + 300 * ms, interval, tolerance));
    // After a quiet period the full burst is back.
    allowed = 0;
    for (int i = 0; i < 20; ++i) allowed += gcra_take(c, t0 + 60 * s, interval, tolerance);
    EXPECT_EQ(allowed, 10);
}

TEST(limit_cell, gcra_burst_one_is_a_strict_rate) {
    limit_cell c;
    const uint64_t interval = s;  // 1 per second, no burst
    EXPECT_TRUE(gcra_take(c, 10 * s, interval, 0));
    EXPECT_FALSE(gcra_take(c, 10 * s + 999 * ms, interval, 0));
    EXPECT_TRUE(gcra_take(c, 11 * s, interval, 0));
}

TEST(limit_cell, window_counts_to_max_then_refuses) {
    limit_cell c;
    const uint64_t window = 3600 * s, t = 7200 * s + 5 * s;
    for (uint32_t i = 1; i <= 5; ++i) {
        const window_result r = window_add(c, t, window, 5);
        EXPECT_TRUE(r.booked);
        EXPECT_EQ(r.count, i);
    }
    const window_result sixth = window_add(c, t + s, window, 5);
    EXPECT_FALSE(sixth.booked);
    EXPECT_EQ(sixth.count, 5u);
}

TEST(limit_cell, windows_are_aligned_to_the_epoch) {
    limit_cell c;
    const uint64_t window = 60 * s;
    EXPECT_TRUE(window_add(c, 119 * s, window, 1).booked);   // window [60 s, 120 s)
    EXPECT_FALSE(window_add(c, 119 * s + 999 * ms, window, 1).booked);
    EXPECT_TRUE(window_add(c, 120 * s, window, 1).booked) << "a new window starts at 120 s";
}

// A worker whose clock lags (another worker already moved the shared cell to
// the next window) counts in the newer window instead of resetting it.
TEST(limit_cell, late_event_counts_in_the_newer_window) {
    limit_cell c;
    const uint64_t window = 60 * s;
    EXPECT_TRUE(window_add(c, 125 * s, window, 2).booked);   // window [120 s, 180 s): 1
    const window_result late = window_add(c, 119 * s, window, 2);
    EXPECT_TRUE(late.booked);
    EXPECT_EQ(late.count, 2u) << "counted in [120 s, 180 s), not in a fresh [60 s, 120 s)";
    EXPECT_FALSE(window_add(c, 118 * s, window, 2).booked);
}

TEST(limit_cell, cooldown) {
    limit_cell c;
    EXPECT_FALSE(in_cooldown(c, 10 * s));
    start_cooldown(c, 20 * s);
    EXPECT_TRUE(in_cooldown(c, 19 * s));
    EXPECT_FALSE(in_cooldown(c, 20 * s));
}

// Two threads (as two workers sharing an account) book exactly `max`.
TEST(limit_cell, exact_across_threads) {
    for (int round = 0; round < 20; ++round) {
        limit_cell c;
        std::atomic<int> booked{0};
        std::atomic<bool> go{false};
        auto worker = [&] {
            while (!go.load()) {}
            for (int i = 0; i < 5000; ++i) booked += window_add(c, 50 * s, 3600 * s, 1000).booked;
        };
        std::vector<std::thread> threads;
        for (int t = 0; t < 2; ++t) threads.emplace_back(worker);
        go = true;
        for (auto& t : threads) t.join();
        EXPECT_EQ(booked.load(), 1000);
    }
}

TEST(limit_cell, gcra_exact_across_threads) {
    limit_cell c;
    std::atomic<int> allowed{0};
    std::atomic<bool> go{false};
    auto worker = [&] {
        while (!go.load()) {}
        for (int i = 0; i < 5000; ++i) allowed += gcra_take(c, 100 * s, s / 10, 99 * (s / 10));
    };
    std::thread a(worker), b(worker);
    go = true;
    a.join();
    b.join();
    EXPECT_EQ(allowed.load(), 100) << "burst 100 at one instant, shared by two threads";
}

TEST(limit_cell, readings_of_another_thread_book_nothing) {
    limit_cell c;
    const uint64_t window = 3600 * s, t = 7200 * s + 5 * s;
    for (int i = 0; i < 3; ++i) window_add(c, t, window, 3);
    EXPECT_EQ(window_count(c, t + s, window), 3u);
    EXPECT_EQ(window_count(c, t + s, window), 3u) << "reading twice counts nothing";
    EXPECT_EQ(window_count(c, t + window, window), 0u) << "the next window starts at 0";
    EXPECT_EQ(window_count(c, t - window, window), 3u) << "a cell newer than the reader's clock counts as current";

    limit_cell g;
    const uint64_t interval = 200 * ms;
    for (int i = 0; i < 4; ++i) gcra_take(g, t, interval, 9 * interval);
    EXPECT_EQ(gcra_in_burst(g, t, interval), 4u);
    EXPECT_EQ(gcra_in_burst(g, t + 300 * ms, interval), 3u) << "drains one per interval, rounding up";
    EXPECT_EQ(gcra_in_burst(g, t + 10 * s, interval), 0u);
}

TEST(limit_cell, clear_ends_the_count_and_the_cooldown) {
    limit_cell c;
    const uint64_t window = 3600 * s, t = 7200 * s;
    for (int i = 0; i < 3; ++i) window_add(c, t, window, 3);
    start_cooldown(c, t + 600 * s);
    EXPECT_TRUE(in_cooldown(c, t + s));
    EXPECT_FALSE(window_add(c, t + s, window, 3).booked);
    clear_cell(c);
    EXPECT_FALSE(in_cooldown(c, t + s));
    EXPECT_EQ(cooldown_until(c), 0u);
    const window_result r = window_add(c, t + s, window, 3);
    EXPECT_TRUE(r.booked);
    EXPECT_EQ(r.count, 1u);
}

// Workers count while another thread clears: every booking after the last clear is in the
// count, none is lost to a torn update and nothing from before the clear survives it.
TEST(limit_cell, clear_while_workers_count_loses_no_later_booking) {
    limit_cell c;
    const uint64_t window = 3600 * s, t = 7200 * s;
    std::atomic<bool> cleared{false};
    std::atomic<uint32_t> after{0};
    std::vector<std::thread> workers;
    for (int w = 0; w < 4; ++w)
        workers.emplace_back([&] {
            for (int i = 0; i < 20000; ++i) {
                const bool was_cleared = cleared.load(std::memory_order_acquire);
                if (window_add(c, t, window, UINT32_MAX).booked && was_cleared) after.fetch_add(1);
            }
        });
    // Clear once bookings are in the cell (a sleep is no promise on a loaded
    // machine: the workers may not have started), while they go on.
    while (window_count(c, t, window) < 1000) std::this_thread::yield();
    clear_cell(c);
    cleared.store(true, std::memory_order_release);
    for (auto& w : workers) w.join();
    const uint32_t count = window_count(c, t, window);
    EXPECT_GE(count, after.load()) << "a booking after the clear was lost";
    EXPECT_LT(count, 80000u) << "the bookings before the clear survived it";
}

}  // namespace
}  // namespace sekisho
