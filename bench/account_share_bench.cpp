// Account share benchmark: what fleet mode's account limits add to a
// worker's booking of an account-scope count (limit_cell.h). The same random
// walk over many account records (far more than the caches hold, as a real
// account table is) books one message per visit, once with window_add (no
// fleet) and once with window_add_shared (the other gateways' share loaded
// from the record and taken off the max), alternating, several repetitions;
// it prints nanoseconds per booking of each and their ratio. The records are
// laid out as the registry's (account_record, 128 bytes).
//
// Usage: account_share_bench [--short] [--accounts N] [--visits N] [--reps N]
//   --short   256k accounts, 2M visits, 3 reps: the self-check, rough figures
// Last line: JSON ("bench":"account_share").
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_support.h"
#include "dataplane/limits/limit_cell.h"
#include "dataplane/limits/mail_limits.h"

namespace {

using namespace sekisho;

constexpr uint64_t window_ns = 3'600'000'000'000ull;

template <class Book>
double ns_per_booking(std::vector<account_record>& records, const std::vector<uint32_t>& walk, uint64_t now,
                      Book book, uint64_t& booked) {
    const auto t0 = std::chrono::steady_clock::now();
    for (const uint32_t id : walk) booked += book(records[id], now);
    const auto t1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(walk.size());
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    uint64_t accounts = 1u << 20, visits = 1u << 24, reps = 7;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--short") {
            accounts = 1u << 18, visits = 1u << 21, reps = 3;
            continue;
        }
        const uint64_t v = i + 1 < argc ? std::strtoull(argv[++i], nullptr, 10) : 0;
        if (a == "--accounts" && v > 0 && v <= (1u << 24)) accounts = v;
        else if (a == "--visits" && v > 0) visits = v;
        else if (a == "--reps" && v > 0) reps = v;
        else {
            std::fprintf(stderr, "usage: %s [--short] [--accounts N (<= 16M)] [--visits N] [--reps N]\n", argv[0]);
            return 2;
        }
    }
    std::vector<account_record> records(accounts);
    std::mt19937_64 rng(20);
    std::vector<uint32_t> walk(visits);
    for (uint32_t& id : walk) id = static_cast<uint32_t>(rng() % accounts);
    const uint64_t now = 1'795'399'200'000'000'000ull;
    // A share in force for every account, small enough that nothing is refused.
    for (account_record& r : records) store_fleet_share(r.fleet_share[0], count_window_index(now, window_ns), 1);
    std::vector<double> plain, shared;
    uint64_t booked = 0;
    for (uint64_t r = 0; r < reps; ++r) {
        plain.push_back(ns_per_booking(records, walk, now, [](account_record& a, uint64_t t) {
            return window_add(a.cells[0], t, window_ns, UINT32_MAX - 1).booked;
        }, booked));
        shared.push_back(ns_per_booking(records, walk, now, [](account_record& a, uint64_t t) {
            return window_add_shared(a.cells[0], a.fleet_share[0], t, window_ns, UINT32_MAX - 1).booked;
        }, booked));
    }
    if (booked != 2 * reps * visits) {
        std::fprintf(stderr, "self-check failed: %llu of %llu booked\n", static_cast<unsigned long long>(booked),
                     static_cast<unsigned long long>(2 * reps * visits));
        return 1;
    }
    const double p = median(plain), s = median(shared);
    std::printf("accounts %llu (%.0f MiB of records), %llu random visits, %llu reps (median)\n",
                static_cast<unsigned long long>(accounts),
                static_cast<double>(accounts * sizeof(account_record)) / (1 << 20),
                static_cast<unsigned long long>(visits), static_cast<unsigned long long>(reps));
    std::printf("window_add          %.2f ns/booking\n", p);
    std::printf("window_add_shared   %.2f ns/booking\n", s);
    std::printf("ratio shared/plain  %.3f\n", s / p);
    std::printf("{\"bench\":\"account_share\",\"ns_window_add\":%.2f,\"ns_window_add_shared\":%.2f,"
                "\"ratio_shared_to_plain\":%.3f,\"accounts\":%llu,\"visits\":%llu,\"reps\":%llu,\"cpu\":\"%s\"}\n",
                p, s, s / p, static_cast<unsigned long long>(accounts), static_cast<unsigned long long>(visits),
                static_cast<unsigned long long>(reps), sekisho::bench::json_escape(sekisho::bench::cpu_model()).c_str());
    return 0;
}
