// Policy apply benchmark: how long a policy of N subscriber prefixes (1M by
// default: host /32s in RFC 6598 shared address space, where ISPs number CGN
// subscribers) takes from text to the generation in force, step by step, as
// a reload runs them:
//   read       load_policy_text: YAML parse and validation (duplicates included)
//   diff       the running policy against it (sorted prefix lists)
//   prepare    dpdk_data_plane::prepare: the DIR-24-8 / trie tables filled (compile_policy)
//   commit     dpdk_data_plane::commit: the RCU swap and the old snapshot freed
// Baseline, measured in the same run: the same prefixes added straight to a
// bare rte_fib DIR-24-8 table (what DPDK itself costs); `ratio_prepare_to_fib`
// is prepare over that.
//
//   policy_apply_bench [--prefixes N] [--short] [--reps R]
//     --short  65536 prefixes, one repetition (CI: the self-checks run, the
//              figures are printed, not judged)
// Self-checks: every prefix is read; the snapshot classifies the first, a
// middle and the last prefix as dynamic and the address after the last as
// none; the generation in force is the one committed.
// Last line: {"bench":"policy_apply", ...}.
#include <rte_eal.h>
#include <rte_fib.h>
#include <rte_lcore.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "bench/bench_support.h"
#include "backends/dpdk/dpdk_data_plane.h"
#include "control/policy/policy.h"
#include "control/policy/policy_compiler.h"

namespace {

using namespace sekisho;
using clk = std::chrono::steady_clock;

double seconds(clk::time_point a, clk::time_point b) { return std::chrono::duration<double>(b - a).count(); }

constexpr uint32_t first_address = 0x64400000;   // 100.64.0.0

std::string policy_text(uint32_t n) {
    std::string t = "version: 1\nsubscribers:\n  dynamic:\n";
    t.reserve(static_cast<size_t>(n) * 22 + 200);
    char line[40];
    for (uint32_t i = 0; i < n; ++i) {
        const uint32_t a = first_address + i;
        std::snprintf(line, sizeof line, "    - %u.%u.%u.%u/32\n", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
        t += line;
    }
    t += "relays: [203.0.113.10/32]\nop25b:\n  mode: enforce\n  action: reset\n";
    return t;
}

[[noreturn]] void fail(const std::string& why) {
    std::fprintf(stderr, "FAIL %s\n", why.c_str());
    std::exit(1);
}

double fib_baseline(const policy& pol, uint32_t rep) {
    rte_fib_conf conf{};
    conf.type = RTE_FIB_DIR24_8;
    conf.default_nh = 0;
    conf.max_routes = static_cast<int>(pol.dynamic_ranges.size() + 16);
    conf.dir24_8.num_tbl8 = static_cast<uint32_t>(pol.dynamic_ranges.size() / 256 + 64);
    conf.dir24_8.nh_sz = RTE_FIB_DIR24_8_2B;
    const std::string name = "bench_fib_" + std::to_string(rep);
    rte_fib* fib = rte_fib_create(name.c_str(), SOCKET_ID_ANY, &conf);
    if (fib == nullptr) fail("cannot create the baseline rte_fib");
    const auto t0 = clk::now();
    for (const ip_prefix& p : pol.dynamic_ranges)
        if (rte_fib_add(fib, p.v4(), p.length, 1) != 0) fail("rte_fib_add " + p.to_string());
    const double s = seconds(t0, clk::now());
    rte_fib_free(fib);
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    uint32_t n = 1u << 20;
    unsigned reps = 3;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--prefixes" && i + 1 < argc) n = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
        else if (a == "--reps" && i + 1 < argc) reps = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
        else if (a == "--short") n = 65536, reps = 1;
        else {
            std::fprintf(stderr, "usage: %s [--prefixes N] [--short] [--reps R]\n", argv[0]);
            return 2;
        }
    }
    if (n == 0 || n > (1u << 22) || reps == 0) fail("--prefixes 1..4194304, --reps >= 1");
    if (!bench::init_eal(argv[0], 2048)) fail("EAL init");

    const std::string text = policy_text(n);
    const policy small = load_policy_text("version: 1\nsubscribers:\n  dynamic: [198.51.100.0/24]\n", "small");
    dpdk_data_plane_config cfg;
    cfg.workers = 1;
    cfg.mbufs = 1024;
    dpdk_data_plane gw(small, cfg);

    std::printf("policy apply bench: cpu \"%s\", %u prefixes (%.1f MB of YAML), %u repetitions\n",
                bench::cpu_model().c_str(), n, static_cast<double>(text.size()) / 1e6, reps);
    std::vector<double> read_s, diff_s, prepare_s, commit_s, total_s, fib_s;
    for (unsigned r = 0; r < reps; ++r) {
        const auto t0 = clk::now();
        auto next = std::make_shared<const policy>(load_policy_text(text, "big"));
        const auto t1 = clk::now();
        if (next->dynamic_ranges.size() != n) fail("read " + std::to_string(next->dynamic_ranges.size()) + " prefixes");
        // The diff the API answers with: both sides sorted, as control_api does.
        std::vector<ip_prefix> a = gw.running_policy()->dynamic_ranges, b = next->dynamic_ranges;
        auto less = [](const ip_prefix& x, const ip_prefix& y) {
            return x.bytes != y.bytes ? x.bytes < y.bytes : x.length < y.length;
        };
        std::sort(a.begin(), a.end(), less);
        std::sort(b.begin(), b.end(), less);
        const auto t2 = clk::now();
        auto prepared = gw.prepare(next, gw.generation() + 1, false);
        const auto t3 = clk::now();
        const uint64_t g = gw.commit(std::move(prepared));
        const auto t4 = clk::now();
        if (gw.generation() != g) fail("generation in force " + std::to_string(gw.generation()));
        const compiled_policy& c = *gw.store().current();
        for (uint32_t i : {0u, n / 2, n - 1})
            if (c.subscriber4(first_address + i) != subscriber_class::dynamic) fail("prefix " + std::to_string(i));
        if (c.subscriber4(first_address + n) != subscriber_class::none) fail("the address after the last");
        // Back to the small policy, untimed: every repetition builds from the same start.
        gw.apply(small);
        read_s.push_back(seconds(t0, t1));
        diff_s.push_back(seconds(t1, t2));
        prepare_s.push_back(seconds(t2, t3));
        commit_s.push_back(seconds(t3, t4));
        total_s.push_back(seconds(t0, t4));
        fib_s.push_back(fib_baseline(*next, r));
        std::printf("  rep %u: read %.3f s, diff %.3f s, prepare %.3f s, commit %.3f s, total %.3f s; bare rte_fib %.3f s\n",
                    r, read_s.back(), diff_s.back(), prepare_s.back(), commit_s.back(), total_s.back(), fib_s.back());
    }
    auto med = [](std::vector<double> v) { return bench::median(v); };
    const double ratio = med(prepare_s) / med(fib_s);
    std::printf("median: read %.3f s, diff %.3f s, prepare %.3f s (bare rte_fib %.3f s, ratio %.2f), commit %.3f s, "
                "total %.3f s\n",
                med(read_s), med(diff_s), med(prepare_s), med(fib_s), ratio, med(commit_s), med(total_s));
    std::printf("{\"bench\":\"policy_apply\",\"cpu\":\"%s\",\"prefixes\":%u,\"reps\":%u,\"read_s\":%.4f,\"diff_s\":%.4f,"
                "\"prepare_s\":%.4f,\"commit_s\":%.4f,\"total_s\":%.4f,\"fib_baseline_s\":%.4f,"
                "\"ratio_prepare_to_fib\":%.3f}\n",
                bench::json_escape(bench::cpu_model()).c_str(), n, reps, med(read_s), med(diff_s), med(prepare_s),
                med(commit_s), med(total_s), med(fib_s), ratio);
    return 0;
}
