// The common ground of the tests of a Redis sync concern (campaign_sync,
// account_limit_sync) with several in-process gateways on the shared Redis
// of with_fleet_stores.sh: each test its own window (its own keys), a clock
// that starts inside that window and advances with real time, and the
// control thread's turns (poll() every 10 ms) until a condition holds.
//
// `Gateway` has a `sync` (a std::unique_ptr; null: a gateway on its own)
// whose counters() has `syncs`; the test says what one turn is (turn()).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace sekisho {

inline std::string test_env(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

inline uint64_t realtime_ns() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

template <class Gateway>
class fleet_sync_fixture : public ::testing::Test {
protected:
    void SetUp() override {
        if (redis_.empty()) GTEST_SKIP() << "run through with_fleet_stores.sh";
        // Each test its own window length: its own keys in the shared Redis.
        const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
        window_s_ = 3600 + std::hash<std::string>{}(test) % 100000;
        window_ns_ = window_s_ * 1'000'000'000ull;
        start_ = realtime_ns();
        now_ = start_;
        // Far enough from the window's end for the test to run inside it.
        if (window_ns_ - now_ % window_ns_ < 120'000'000'000ull) now_ += 120'000'000'000ull;
    }

    // One control-thread turn of a gateway that has a sync.
    virtual void turn(Gateway& g) = 0;

    // The gateways' clock: the test's instant, advanced by real time (so
    // that sync_interval passes between scans).
    uint64_t clock() const { return now_ + (realtime_ns() - start_); }

    // Every gateway's control-thread turn (10 ms) until `done` or the timeout.
    bool pump(const std::vector<Gateway*>& gws, const std::function<bool()>& done,
              std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            for (Gateway* g : gws)
                if (g->sync) {
                    const auto t0 = std::chrono::steady_clock::now();
                    turn(*g);
                    slowest_poll_ = std::max(slowest_poll_, std::chrono::steady_clock::now() - t0);
                }
            if (done()) return true;
            if (std::chrono::steady_clock::now() > end) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    // Waits for every gateway's next `rounds` completed syncs (two at least,
    // so that what one sent has been read back by the others).
    bool settle(const std::vector<Gateway*>& gws, uint64_t rounds = 2) {
        std::vector<uint64_t> base;
        for (Gateway* g : gws) base.push_back(g->sync->counters().syncs);
        return pump(gws, [&] {
            for (size_t i = 0; i < gws.size(); ++i)
                if (gws[i]->sync->counters().syncs < base[i] + rounds) return false;
            return true;
        });
    }

    uint64_t window_s_ = 0, window_ns_ = 0, now_ = 0, start_ = 0;
    std::chrono::steady_clock::duration slowest_poll_{};
    std::string redis_ = test_env("SEKISHO_TEST_REDIS");
    std::string password_ = test_env("SEKISHO_TEST_REDIS_PASSWORD_FILE");
};

}  // namespace sekisho
