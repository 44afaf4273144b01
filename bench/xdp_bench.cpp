// The XDP benchmark: ns per packet through the XDP program
// with BPF_PROG_TEST_RUN against the DPDK classifier on the same frames, in
// one run.
//
// Frames: a mixed set of 16 (IPv4/IPv6, plain/VLAN/QinQ/PPPoE, dynamic and
// static sources, ports 25/587/443, a relay, a tiny fragment, ARP). Policy:
// configs/op25b-drop.yaml (enforce, drop). Drop rather than reset because
// BPF_PROG_TEST_RUN repeats on one buffer: a frame the program rewrote into
// an RST would be judged as that RST from the second repeat on.
//   XDP:  per frame, one BPF_PROG_TEST_RUN with repeat = N (>= 1e6); the
//         kernel reports the mean ns per run (program + the test loop's own
//         few ns). Blocked frames emit an event per run until the ring buffer
//         is full, then count ring_full, as a flood would in production.
//   DPDK: per frame, N x (parse_frame + classify_op25b) on the compiled policy
//         (rte_fib/rte_fib6), timed with steady_clock: the classifier the DPDK
//         data plane runs for the same decision (no mbufs, no counters).
// Each figure is the median of --reps interleaved repetitions; the mean over
// the frames is ns per packet of the mixed set.
//
// Then the OP25B sets (bench/op25b_frames.h: the same non-mail and mixed
// frames as op25b_bench, for a policy of --prefixes dynamic /24s built from
// the same prefixes; drop instead of reset, as above): per frame one
// BPF_PROG_TEST_RUN with repeat = --set-repeat, and as many parse_frame +
// classify_op25b; the mean over the first --set-frames frames of each set (a
// random sample: the sets are shuffled; a BPF_PROG_TEST_RUN call costs
// milliseconds of set-up on a busy machine), median over the repetitions. The XDP program's LPM maps hold 262,144 prefixes, so the
// default is op25b_bench --short's 100,000. Each frame repeats on its own
// buffer: warmer caches than a stream of distinct frames. Last line: JSON.
#include <bpf/bpf.h>
#include <rte_cycles.h>
#include <net/if.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench_support.h"
#include "dataplane/op25b_classifier.h"
#include "dataplane/net/packet_parser.h"
#include "control/policy/policy.h"
#include "control/policy/policy_compiler.h"
#include "tests/support/frame_builder.h"
#include "tests/support/lab_policy.h"
#include "backends/xdp/xdp_backend.h"
#include "op25b_frames.h"

#ifndef SEKISHO_SOURCE_ROOT
#error "SEKISHO_SOURCE_ROOT must name the source tree (bench/meson.build sets it)"
#endif

namespace {

using namespace sekisho;
using test::frame_builder;
namespace t = test;

struct bench_frame {
    const char* name;
    std::vector<uint8_t> bytes;
};

std::vector<bench_frame> frames() {
    constexpr uint8_t ack = t::tcp_flags_ack;
    auto v4 = [&](const char* s, const char* d, uint16_t port, uint8_t fl = t::tcp_flags_syn) {
        return frame_builder().ipv4(s, d).tcp(40000, port).flags(fl).seq(1).ack(fl & ack ? 2 : 0);
    };
    auto v6 = [&](const char* s, const char* d, uint16_t port, uint8_t fl = t::tcp_flags_syn) {
        return frame_builder().ipv6(s, d).tcp(40000, port).flags(fl).seq(1).ack(fl & ack ? 2 : 0);
    };
    return {
        {"v4 dyn SYN MX:25 (block)", v4(t::dyn4, t::mx4, 25).pad_to(60).build()},
        {"v4 dyn ACK MX:443", v4(t::dyn4, t::mx4, 443, ack).payload(1200).build()},
        {"v4 dyn ACK MX:443 #2", v4(t::dyn4, t::mx4, 443, ack).payload(400).build()},
        {"v4 dyn SYN relay:25", v4(t::dyn4, t::relay4, 25).pad_to(60).build()},
        {"v4 dyn SYN MX:587", v4(t::dyn4, t::mx4, 587).pad_to(60).build()},
        {"v4 static SYN MX:25", v4(t::static4, t::mx4, 25).pad_to(60).build()},
        {"v4 other ACK :80", v4(t::other4, t::mx4, 80, ack).payload(600).build()},
        {"vlan v4 dyn ACK MX:25 (block)", v4(t::dyn4, t::mx4, 25, ack).vlan(100).payload(200).build()},
        {"qinq pppoe v4 dyn ACK :443", v4(t::dyn4, t::mx4, 443, ack).vlan(1, 0x88a8).vlan(2).pppoe(7).payload(800).build()},
        {"pppoe v4 dyn SYN MX:25 (block)", v4(t::dyn4, t::mx4, 25).pppoe(7).build()},
        {"v4 tiny fragment (block)", v4(t::dyn4, t::mx4, 25).payload(100).ipv4_fragment(0, true).fragment_bytes(8).build()},
        {"v4 UDP :53", frame_builder().ipv4(t::dyn4, t::mx4).udp(5353, 53).payload(60).build()},
        {"v6 dyn SYN MX:25 (block)", v6(t::dyn6, t::mx6, 25).build()},
        {"v6 dyn ACK MX:443 ext chain", v6(t::dyn6, t::mx6, 443, ack).hop_by_hop().dest_options().payload(1000).build()},
        {"v6 static SYN MX:25", v6(t::static6, t::mx6, 25).build()},
        {"ARP", frame_builder().ethertype(0x0806).payload(28, 0).pad_to(60).build()},
    };
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// One frame `repeat` times through the XDP program (one BPF_PROG_TEST_RUN: the kernel's mean
// ns per run) and through the DPDK classifier (parse_frame + classify_op25b, steady_clock).
struct frame_timing {
    double xdp_ns = 0, dpdk_ns = 0;
    uint32_t xdp_action = 0;
    op25b_outcome dpdk = op25b_outcome::pass;
};

frame_timing time_frame(xdp_backend& backend, const compiled_policy& compiled, const std::vector<uint8_t>& f,
                        unsigned long repeat) {
    frame_timing t;
    bpf_test_run_opts o{};
    o.sz = sizeof o;
    o.data_in = f.data();
    o.data_size_in = static_cast<__u32>(f.size());
    o.repeat = static_cast<int>(repeat);
    if (bpf_prog_test_run_opts(backend.program_fd(), &o) != 0)
        throw std::runtime_error(std::string("BPF_PROG_TEST_RUN: ") + std::strerror(errno));
    t.xdp_ns = static_cast<double>(o.duration);
    t.xdp_action = o.retval;
    backend.drain_events([](const event_record&) {});

    const uint32_t len = static_cast<uint32_t>(f.size());
    const auto t0 = std::chrono::steady_clock::now();
    for (unsigned long k = 0; k < repeat; ++k) {
        parsed_packet p;
        parse_frame(f.data(), len, p);
        t.dpdk = classify_op25b(p, ingress::access, compiled);
        bench::null_sink += static_cast<uint64_t>(t.dpdk);
    }
    t.dpdk_ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() /
                static_cast<double>(repeat);
    return t;
}

// The policy of op25b_bench's frames (the same prefixes), enforce, drop.
policy op25b_sets_policy(uint32_t prefixes) {
    policy pol;
    pol.source = "op25b_frames.h";
    pol.smtp_ports = {25};
    pol.mode = op25b_mode::enforce;
    pol.action = op25b_action::drop;
    const auto v4 = [](uint32_t a, uint8_t len) {
        ip_prefix p;
        p.family = 4;
        p.length = len;
        p.bytes[0] = static_cast<uint8_t>(a >> 24);
        p.bytes[1] = static_cast<uint8_t>(a >> 16);
        p.bytes[2] = static_cast<uint8_t>(a >> 8);
        p.bytes[3] = static_cast<uint8_t>(a);
        return p;
    };
    const auto v6 = [](const std::array<uint8_t, 16>& a, uint8_t len) {
        ip_prefix p;
        p.family = 6;
        p.length = len;
        p.bytes = a;
        return p;
    };
    const auto ranges = [&](subscriber_class c) -> std::vector<ip_prefix>& {
        return c == subscriber_class::dynamic ? pol.dynamic_ranges : pol.static_ranges;
    };
    bench::for_each_op25b_prefix(
        prefixes, [&](uint32_t a, uint8_t len, subscriber_class c) { ranges(c).push_back(v4(a, len)); },
        [&](const std::array<uint8_t, 16>& a, uint8_t len, subscriber_class c) { ranges(c).push_back(v6(a, len)); },
        [&](uint32_t a, uint8_t len) { pol.relays.push_back(v4(a, len)); },
        [&](const std::array<uint8_t, 16>& a, uint8_t len) { pol.relays.push_back(v6(a, len)); });
    return pol;
}

struct set_result {
    double xdp_ns = 0, dpdk_ns = 0;  // mean per frame over the set
    uint64_t xdp_drops = 0, dpdk_blocks = 0;
    bool agree = true;
};

// One pass over `set`: each frame `repeat` times through the XDP program and through the DPDK classifier.
set_result run_set(xdp_backend& backend, const compiled_policy& compiled, const bench::frame_bytes& set,
                   size_t frames, unsigned long repeat) {
    set_result r;
    double xdp_sum = 0, dpdk_sum = 0;
    for (size_t i = 0; i < frames; ++i) {
        const frame_timing t = time_frame(backend, compiled, set.frames[i], repeat);
        xdp_sum += t.xdp_ns;
        dpdk_sum += t.dpdk_ns;
        const bool xdp_drops = t.xdp_action == 1, dpdk_blocks = t.dpdk != op25b_outcome::pass;
        r.xdp_drops += xdp_drops;
        r.dpdk_blocks += dpdk_blocks;
        if (xdp_drops != dpdk_blocks || xdp_drops != (set.smtp[i] == 1) || (t.xdp_action != 1 && t.xdp_action != 2))
            r.agree = false;
    }
    r.xdp_ns = xdp_sum / static_cast<double>(frames);
    r.dpdk_ns = dpdk_sum / static_cast<double>(frames);
    return r;
}

// The OP25B sets through both paths; returns the JSON keys, "" when a verdict was not what the frames require.
std::string run_op25b_sets(uint32_t prefixes, size_t frames, unsigned long repeat, unsigned reps, double tsc_ghz) {
    const bench::op25b_frames sets = bench::make_op25b_frames(prefixes, "mixed", 4096);
    const policy pol = op25b_sets_policy(prefixes);
    xdp_backend backend;
    backend.apply(pol);
    backend.set_interface_role(if_nametoindex("lo"), ingress::access);
    // A generation of its own: DPDK table names carry it, and the lab policy's tables still exist.
    const auto compiled = compile_policy(pol, 1u << 20);
    uint64_t blocked = 0;  // of the mixed set's sample
    for (size_t i = 0; i < frames; ++i) blocked += sets.mixed.smtp[i] == 1;
    std::printf("op25b sets (bench/op25b_frames.h): %u dynamic /24s, the first %zu of 4096 frames per set (%lu SMTP "
                "SYNs from dynamic sources in the mixed one), each frame %lu times per repetition, %u repetitions\n",
                prefixes, frames, blocked, repeat, reps);
    std::vector<double> xn, dn, xm, dm;
    for (unsigned r = 0; r < reps; ++r) {
        const set_result n = run_set(backend, *compiled, sets.nonmail, frames, repeat);
        const set_result m = run_set(backend, *compiled, sets.mixed, frames, repeat);
        const bool ok = n.agree && m.agree && n.xdp_drops == 0 && m.xdp_drops == blocked;
        if (!ok) {
            std::fprintf(stderr,
                         "xdp bench: op25b sets: XDP dropped %lu non-mail and %lu mixed frames (want 0 and %lu), the "
                         "DPDK classifier blocked %lu and %lu; verdicts %s\n",
                         n.xdp_drops, m.xdp_drops, blocked, n.dpdk_blocks, m.dpdk_blocks,
                         n.agree && m.agree ? "agree" : "differ");
            return "";
        }
        xn.push_back(n.xdp_ns);
        dn.push_back(n.dpdk_ns);
        xm.push_back(m.xdp_ns);
        dm.push_back(m.dpdk_ns);
        std::printf("rep %u: non-mail XDP %.1f ns/pkt, DPDK classifier %.1f | mixed XDP %.1f, DPDK classifier %.1f\n",
                    r + 1, n.xdp_ns, n.dpdk_ns, m.xdp_ns, m.dpdk_ns);
    }
    using bench::median;
    using bench::spread;
    std::printf("median of %u: non-mail XDP %.1f ns/pkt (%.0f TSC cycles), DPDK classifier %.1f ns; mixed XDP %.1f "
                "ns/pkt (%.0f cycles), DPDK classifier %.1f ns; spread XDP %.1f%% / %.1f%%\n",
                reps, median(xn), median(xn) * tsc_ghz, median(dn), median(xm), median(xm) * tsc_ghz, median(dm),
                100 * spread(xn), 100 * spread(xm));
    char json[512];
    std::snprintf(json, sizeof json,
                  ",\"xdp_ns_per_pkt_nonmail\":%.2f,\"xdp_ns_per_pkt_mixed\":%.2f,\"xdp_cycles_per_pkt_nonmail\":%.1f,"
                  "\"xdp_cycles_per_pkt_mixed\":%.1f,\"dpdk_classifier_ns_per_pkt_nonmail\":%.2f,"
                  "\"dpdk_classifier_ns_per_pkt_mixed\":%.2f,\"op25b_sets_prefixes\":%u,\"op25b_sets_frames\":%zu",
                  median(xn), median(xm), median(xn) * tsc_ghz, median(xm) * tsc_ghz, median(dn), median(dm), prefixes, frames);
    return json;
}

int run(unsigned long repeat, unsigned reps, uint32_t set_prefixes, size_t set_frames, unsigned long set_repeat) {
    const std::string path = std::string(SEKISHO_SOURCE_ROOT) + "/configs/op25b-drop.yaml";
    const policy pol = load_policy_text(read_file(path), path);
    xdp_backend backend;
    const uint64_t gen = backend.apply(pol);
    backend.set_interface_role(if_nametoindex("lo"), ingress::access);
    const auto compiled = compile_policy(pol, gen);
    const auto set = frames();
    const std::string cpu = bench::cpu_model();
    std::printf("xdp bench: cpu \"%s\", %zu frames, %lu runs per frame per repetition, %u repetitions, policy %s\n",
                cpu.c_str(), set.size(), repeat, reps, path.c_str());

    std::vector<std::vector<double>> xdp_ns(set.size()), dpdk_ns(set.size());
    std::vector<uint32_t> xdp_action(set.size());
    std::vector<op25b_outcome> dpdk_outcome(set.size());
    for (unsigned r = 0; r < reps; ++r) {
        for (size_t i = 0; i < set.size(); ++i) {
            const frame_timing t = time_frame(backend, *compiled, set[i].bytes, repeat);
            xdp_ns[i].push_back(t.xdp_ns);
            xdp_action[i] = t.xdp_action;
            dpdk_ns[i].push_back(t.dpdk_ns);
            dpdk_outcome[i] = t.dpdk;
        }
    }

    // Both must have decided the same (drop policy: block/malformed = XDP_DROP).
    bool agree = true;
    double xdp_sum = 0, dpdk_sum = 0;
    std::printf("%-34s %-8s %10s %10s %7s\n", "frame", "verdict", "xdp ns", "dpdk ns", "ratio");
    for (size_t i = 0; i < set.size(); ++i) {
        const bool dpdk_drops = dpdk_outcome[i] != op25b_outcome::pass;
        const bool xdp_drops = xdp_action[i] == 1;
        if (dpdk_drops != xdp_drops || (xdp_action[i] != 1 && xdp_action[i] != 2)) agree = false;
        const double x = bench::median(xdp_ns[i]), d = bench::median(dpdk_ns[i]);
        xdp_sum += x;
        dpdk_sum += d;
        std::printf("%-34s %-8s %10.1f %10.1f %7.2f\n", set[i].name, xdp_drops ? "drop" : "pass", x, d, x / d);
    }
    if (!agree) {
        std::fprintf(stderr, "xdp bench: XDP and DPDK verdicts differ on the bench frames; no figures\n");
        return 1;
    }
    const double xdp_mean = xdp_sum / static_cast<double>(set.size());
    const double dpdk_mean = dpdk_sum / static_cast<double>(set.size());
    std::printf("mean over the %zu frames: XDP %.1f ns/pkt (BPF_PROG_TEST_RUN, %.2f Mpps on one core), "
                "DPDK classifier %.1f ns/pkt (%.2f Mpps); XDP/DPDK ratio %.2f\n",
                set.size(), xdp_mean, 1e3 / xdp_mean, dpdk_mean, 1e3 / dpdk_mean, xdp_mean / dpdk_mean);
    const std::string sets_json = run_op25b_sets(set_prefixes, set_frames, set_repeat, reps, static_cast<double>(rte_get_tsc_hz()) / 1e9);
    if (sets_json.empty()) return 1;
    std::printf("{\"bench\":\"xdp\",\"xdp_ns_per_pkt\":%.2f,\"dpdk_classifier_ns_per_pkt\":%.2f,\"ratio_xdp_to_dpdk\":%.3f,"
                "\"repeat\":%lu,\"reps\":%u,\"frames\":%zu%s,\"cpu\":\"%s\"}\n",
                xdp_mean, dpdk_mean, xdp_mean / dpdk_mean, repeat, reps, set.size(), sets_json.c_str(),
                bench::json_escape(cpu).c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    unsigned long repeat = 1'000'000;
    unsigned reps = 3;
    uint32_t set_prefixes = 100000;
    unsigned long set_repeat = 10000;
    size_t set_frames = 512;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--short") {  // the least BPF_PROG_TEST_RUN repeat, one repetition
            repeat = 1'000'000;
            reps = 1;
            set_repeat = 1000;
            set_frames = 32;
        } else if (a == "--prefixes" && i + 1 < argc) {
            set_prefixes = static_cast<uint32_t>(std::stoul(argv[++i]));
        } else if (a == "--set-frames" && i + 1 < argc) {
            set_frames = std::stoul(argv[++i]);
        } else if (a == "--set-repeat" && i + 1 < argc) {
            set_repeat = std::stoul(argv[++i]);
        } else if (a == "--repeat" && i + 1 < argc) {
            repeat = std::stoul(argv[++i]);
        } else if (a == "--reps" && i + 1 < argc) {
            reps = static_cast<unsigned>(std::stoul(argv[++i]));
        } else {
            std::fprintf(stderr,
                         "usage: %s [--short] [--repeat N (>= 1000000)] [--reps N] [--prefixes N (<= 250000)] "
                         "[--set-frames N (<= 4096)] [--set-repeat N]\n",
                         argv[0]);
            return 2;
        }
    }
    if (repeat < 1'000'000 || repeat > 2'000'000'000ul || reps == 0) {
        std::fprintf(stderr, "xdp bench: --repeat must be between 1e6 and 2e9, --reps at least 1\n");
        return 2;
    }
    // The XDP program's LPM maps hold 262,144 prefixes per family; the sets' policy adds 1,000 static /28s.
    if (set_prefixes == 0 || set_prefixes > 250000 || set_repeat == 0 || set_repeat > 1'000'000'000ul ||
        set_frames == 0 || set_frames > 4096) {
        std::fprintf(stderr, "xdp bench: --prefixes must be between 1 and 250000, --set-frames between 1 and 4096, "
                             "--set-repeat between 1 and 1e9\n");
        return 2;
    }
    return bench::run_on_eal("xdp bench", bench::init_eal("xdp-bench", 1024),
                             [&] { return run(repeat, reps, set_prefixes, set_frames, set_repeat); });
}
