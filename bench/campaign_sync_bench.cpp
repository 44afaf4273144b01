// The fleet campaign sync benchmark (docs/performance.md): a redis-server of
// its own on a Unix socket, and
// - the control thread's share: for_each_active over a full campaign table
//   (the scan poll() runs once per sync_interval) and merge_subscriber_bits
//   per fingerprint;
// - the sync thread: fingerprints per second sent to Redis (SETBIT pipelined,
//   with the read-back), the first sync of a window with N campaign-like
//   fingerprints (3 subscriber bits each) and a steady sync with nothing new;
// - fleet detection delay: gateway A books a subscriber with a new bit (the
//   one that would cross a threshold); the time until gateway B's table holds
//   it, with sync_interval 100 ms.
// Baseline in the same run: the same SETBITs and EXPIREs pipelined raw through
// the same hiredis connection (what Redis itself takes for those commands).
//
//   build/bench/campaign_sync_bench [--fingerprints N] [--short]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/fleet_bench_support.h"
#include "control/fleet/campaign_sync.h"
#include "control/fleet/redis_connection.h"
#include "dataplane/inspect/campaign_table.h"

namespace {

using namespace sekisho;
using clock_type = std::chrono::steady_clock;
using bench::bench_redis;
using bench::seconds_since;

uint64_t realtime_ns() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t sub(uint64_t i) { return 0x5b5b0000'00000000ull + i * 0x9e3779b97f4a7c15ull; }

campaign_sync_settings settings(const bench_redis& r, uint64_t interval_ns) {
    campaign_sync_settings s;
    s.redis_address = r.address();
    s.redis_password_file = r.password_file();
    s.sync_interval_ns = interval_ns;
    return s;
}

// Polls until `syncs` syncs have completed; the seconds it took.
double run_syncs(campaign_sync& sync, uint64_t now, uint64_t window_ns, uint64_t syncs) {
    const uint64_t base = sync.counters().syncs;
    const auto t0 = clock_type::now();
    while (sync.counters().syncs < base + syncs) {
        sync.poll(now + static_cast<uint64_t>(seconds_since(t0) * 1e9), window_ns);
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
    uint32_t fingerprints = 20000;
    bool short_run = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--fingerprints") == 0 && i + 1 < argc)
            fingerprints = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
        else if (std::strcmp(argv[i], "--short") == 0)
            short_run = true;
        else {
            std::fprintf(stderr, "usage: campaign_sync_bench [--fingerprints N] [--short]\n");
            return 2;
        }
    }
    if (short_run) fingerprints = 2000;
    try {
        bench_redis redis;
        const uint64_t window_ns = 3600'000'000'000ull;
        const uint64_t now = realtime_ns();
        const uint32_t window = campaign_table::window_index(now, window_ns);

        // The control thread's share, on a full table (65536 fingerprints, as dpdk_data_plane's).
        campaign_table full(1u << 16, 1u << 18);
        for (uint32_t f = 1; f <= 60000; ++f) full.observe(f * 0x9e3779b97f4a7c15ull, sub(f), 1, now, window_ns);
        size_t cells = 0;
        auto t0 = clock_type::now();
        const int scans = 20;
        for (int i = 0; i < scans; ++i)
            full.for_each_active(window, [&](uint64_t, uint32_t, uint32_t, const campaign_table::subscriber_bits&) {
                ++cells;
            });
        const double scan_ms = seconds_since(t0) * 1e3 / scans;
        campaign_table::subscriber_bits bits{};
        bits[1] = 0x55;
        t0 = clock_type::now();
        for (uint32_t f = 1; f <= 60000; ++f) full.merge_subscriber_bits(f * 0x9e3779b97f4a7c15ull, window, bits);
        const double merge_ns = seconds_since(t0) * 1e9 / 60000;

        // The sync thread: N fingerprints of 3 subscribers each, first sync and a steady one.
        campaign_table table(1u << 16, 1u << 18);
        for (uint32_t f = 1; f <= fingerprints; ++f)
            for (uint64_t s = 0; s < 3; ++s) table.observe(0xabc0000000000000ull + f, sub(f * 3 + s), 1, now, window_ns);
        double first_s = 0, steady_s = 0;
        uint64_t bits_sent = 0;
        {
            campaign_sync sync(settings(redis, 1'000'000), table, nullptr);
            first_s = run_syncs(sync, now, window_ns, 1);
            bits_sent = sync.counters().bits_sent;
            steady_s = run_syncs(sync, now, window_ns, 3) / 3;
        }
        // Baseline: the same SETBITs and EXPIREs, pipelined on one connection, no read-back.
        double raw_s = 0;
        {
            redis_connection r(redis.address(), redis.password_file());
            r.command({"FLUSHALL"});
            t0 = clock_type::now();
            size_t n = 0;
            table.for_each_active(window, [&](uint64_t fp, uint32_t w, uint32_t, const campaign_table::subscriber_bits& b) {
                const std::string key = campaign_key(window_ns, w, fp);
                for (unsigned i = 0; i < campaign_table::bitmap_bits; ++i)
                    if (b[i / campaign_table::bits_per_word] >> (i % campaign_table::bits_per_word) & 1) {
                        r.append({"SETBIT", key, std::to_string(i), "1"});
                        ++n;
                    }
                r.append({"EXPIRE", key, "7200"});
                ++n;
            });
            for (size_t i = 0; i < n; ++i) r.reply();
            raw_s = seconds_since(t0);
            r.command({"FLUSHALL"});
        }

        // Fleet detection delay: gateways A and B in sync on a fingerprint; A books a subscriber
        // that sets a new bit (the one that would cross a threshold); the time until B's table
        // holds that bit (B's next message of it is judged on it), both polling every 10 ms.
        std::vector<double> delays_ms;
        const int rounds = short_run ? 3 : 10;
        auto bits_of = [&](const campaign_table& t, uint64_t fp) {
            campaign_table::subscriber_bits out{};
            t.for_each_active(window, [&](uint64_t f, uint32_t, uint32_t, const campaign_table::subscriber_bits& b) {
                if (f == fp) out = b;
            });
            return out;
        };
        for (int round = 0; round < rounds; ++round) {
            campaign_table a(1024, 4096), b(1024, 4096);
            campaign_sync sa(settings(redis, 100'000'000), a, nullptr), sb(settings(redis, 100'000'000), b, nullptr);
            const uint64_t fp = 0xde1a900000000000ull + static_cast<uint64_t>(round);
            uint64_t next = 1000 * static_cast<uint64_t>(round);
            for (int i = 0; i < 20; ++i) a.observe(fp, sub(next++), 1, now, window_ns);
            // Settled, then a phase spread over the sync interval: the subscriber arrives at any
            // point of it, as live traffic does.
            const auto settle_end =
                clock_type::now() + std::chrono::milliseconds(500 + 100 * round / rounds);
            while (bits_of(b, fp) != bits_of(a, fp) || clock_type::now() < settle_end) {
                sa.poll(realtime_ns(), window_ns);
                sb.poll(realtime_ns(), window_ns);
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            }
            const campaign_table::subscriber_bits before = bits_of(a, fp);
            while (bits_of(a, fp) == before) a.observe(fp, sub(next++), 1, now, window_ns);
            t0 = clock_type::now();
            while (bits_of(b, fp) != bits_of(a, fp) && seconds_since(t0) < 5) {
                sa.poll(realtime_ns(), window_ns);
                sb.poll(realtime_ns(), window_ns);
                std::this_thread::sleep_for(std::chrono::milliseconds(10));   // the control thread's turn
            }
            delays_ms.push_back(seconds_since(t0) * 1e3);
        }
        std::sort(delays_ms.begin(), delays_ms.end());

        std::printf("{\n");
        std::printf("  \"control_scan_full_table_ms\": %.3f,\n", scan_ms);
        std::printf("  \"control_scan_cells\": %zu,\n", cells / scans);
        std::printf("  \"control_merge_ns_per_fingerprint\": %.1f,\n", merge_ns);
        std::printf("  \"fingerprints\": %u,\n", fingerprints);
        std::printf("  \"bits_sent\": %llu,\n", static_cast<unsigned long long>(bits_sent));
        std::printf("  \"first_sync_s\": %.3f,\n", first_s);
        std::printf("  \"first_sync_fingerprints_per_s\": %.0f,\n", fingerprints / first_s);
        std::printf("  \"raw_setbit_pipeline_s\": %.3f,\n", raw_s);
        std::printf("  \"ratio_first_sync_to_raw\": %.2f,\n", first_s / raw_s);
        std::printf("  \"steady_sync_s\": %.4f,\n", steady_s);
        std::printf("  \"detection_delay_ms_min\": %.0f,\n", delays_ms.front());
        std::printf("  \"detection_delay_ms_median\": %.0f,\n", delays_ms[delays_ms.size() / 2]);
        std::printf("  \"detection_delay_ms_max\": %.0f\n", delays_ms.back());
        std::printf("}\n");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "campaign_sync_bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
