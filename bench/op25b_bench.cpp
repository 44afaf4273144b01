// OP25B benchmark: pushes pre-built mbuf bursts through the worker pipeline in
// memory (no I/O) with 1M dynamic IPv4 prefixes, for
//   (a) non-mail traffic, and
//   (b) a mix with 10% SMTP SYNs (half from dynamic sources: blocked and
//       answered with a RST; half from static sources: passed), IPv4 and IPv6,
// and runs a do-nothing forwarder over the same mbufs in the same run. The
// variants are interleaved (null, nonmail, null, mixed, mixed/drop, ...) for
// several repetitions; each figure is the median over the repetitions.
//
// The pipeline frees the mbufs it blocks. So that the same mbufs can be pushed
// again and again, every burst raises the refcount of its mbufs to 2 before
// the call and sets it back to 1 afterwards (a free then only decrements it);
// the null forwarder pays exactly the same bookkeeping. RST mbufs the pipeline
// injects are freed after each burst (what the TX path would do).
//
// Human-readable lines first; the last line is one JSON object.
//
// Options: --short        4M packets, 1 repetition, 100k prefixes: every self-check, rough figures
//          --packets N    per run (default 64M)
//          --reps N       repetitions (default 5)
//          --prefixes N   dynamic IPv4 /24s (default 1,000,000)
//          --frames N     frames per set (default 4096)
//          --encap E      plain | vlan | pppoe | mixed (default: mixed, 60/20/20)
//          --pages P      thp (default): the frame mbufs on transparent huge
//                         pages, as on a hugepage deployment; 4k: in the EAL's
//                         --no-huge memory, one mbuf per 4 KiB page, where TLB
//                         misses dominate both the pipeline and the null run.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <arpa/inet.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/compiled_policy.h"
#include "dataplane/event_ring.h"
#include "dataplane/pipeline.h"
#include "tests/support/frame_builder.h"
#include "dataplane/worker_counters.h"
#include "bench_support.h"

namespace {

using namespace sekisho;
using namespace sekisho::bench;
using sekisho::test::frame_builder;

// Frames per set (--frames, a multiple of burst_size): large enough that the
// branch predictor cannot learn the sequence, small enough to stay in L2.
unsigned frames_per_set = 4096;
constexpr uint32_t multiplier = 2654435761u;  // odd: a bijection on the /24 space

struct options {
    uint64_t packets = 64ull << 20;
    unsigned reps = 5;
    uint32_t prefixes = 1000000;
    unsigned frames = 4096;
    std::string encap = "mixed";
    bool thp = true;
};

// ---------------------------------------------------------------- addresses --

// The i-th dynamic /24 (host order, host part zero); distinct for i < 2^24 and
// spread over the whole IPv4 space.
uint32_t dynamic24(uint32_t i) { return ((i * multiplier) & 0xffffffu) << 8; }

// Static exemptions: a /28 inside each of the first `static28_count` dynamic
// /24s (at .128/28), the longest-prefix case (tbl8).
constexpr uint32_t static28_count = 1000;

std::string ip4_string(uint32_t host_order) {
    in_addr a{};
    a.s_addr = htonl(host_order);
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, buf, sizeof buf);
    return buf;
}

std::string ip6_string(const std::array<uint8_t, 16>& b) {
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, b.data(), buf, sizeof buf);
    return buf;
}

// IPv6: dynamic pools 2400:<k>00::/40 (k < 64), static /56 customers inside
// them at 2400:<k>00:<j>00::/56 for j in 0x80..0x8f (byte 5 of the address).
constexpr unsigned dynamic6_count = 64, static6_per_pool = 16;

std::array<uint8_t, 16> v6_dynamic_pool(unsigned k) {
    std::array<uint8_t, 16> a{};
    a[0] = 0x24;
    a[1] = 0x00;
    a[2] = static_cast<uint8_t>(k);
    a[3] = 0x00;
    return a;
}
std::array<uint8_t, 16> v6_static56(unsigned k, unsigned j) {
    auto a = v6_dynamic_pool(k);
    a[5] = static_cast<uint8_t>(0x80 + j);  // the /40 is bytes 0-4, the /56 bytes 0-6
    return a;
}

// --------------------------------------------------------------- the policy --

std::unique_ptr<compiled_policy> build_policy(uint32_t prefixes, double& seconds) {
    policy_capacity cap;
    cap.subscriber_prefixes4 = prefixes + static28_count + 16;
    cap.tbl8_groups4 = static28_count;  // one per /24 holding a longer prefix
    cap.subscriber_prefixes6 = dynamic6_count * (1 + static6_per_pool);
    cap.tbl8_groups6 = dynamic6_count * ((40 - 24 + 7) / 8 + static6_per_pool * ((56 - 24 + 7) / 8));
    cap.relay_prefixes4 = 4;
    cap.relay_prefixes6 = 4;

    const auto t0 = std::chrono::steady_clock::now();
    auto p = std::make_unique<compiled_policy>(1, cap);
    for (uint32_t i = 0; i < prefixes; ++i) p->add_subscriber4(dynamic24(i), 24, subscriber_class::dynamic);
    for (uint32_t i = 0; i < static28_count; ++i)
        p->add_subscriber4(dynamic24(i) | 0x80, 28, subscriber_class::static_);
    for (unsigned k = 0; k < dynamic6_count; ++k) {
        p->add_subscriber6(v6_dynamic_pool(k).data(), 40, subscriber_class::dynamic);
        for (unsigned j = 0; j < static6_per_pool; ++j)
            p->add_subscriber6(v6_static56(k, j).data(), 56, subscriber_class::static_);
    }
    // The ISP's own submission relays (not hit by the traffic below).
    p->add_relay4(test::ip4_host("192.0.2.25"), 32);
    p->add_relay4(test::ip4_host("192.0.2.26"), 32);
    p->add_relay6(test::ip6("2001:db8:25::25").data(), 128);
    p->set_blocked_port(25);
    p->set_mode(op25b_mode::enforce);
    p->set_action(op25b_action::reset);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return p;
}

// --------------------------------------------------------------- the frames --

struct frame_set {
    std::vector<rte_mbuf*> mbufs;
    uint64_t smtp_dynamic = 0, smtp_static = 0;  // per pass
    uint64_t bytes = 0;
};

class traffic {
public:
    traffic(uint32_t prefixes, std::string encap) : prefixes_(prefixes), encap_(std::move(encap)) {}

    // A subscriber source address inside a dynamic /24, outside its static /28.
    std::string dynamic_src4() {
        const uint32_t i = pick(prefixes_);
        uint32_t host = 1 + pick(126);  // .1 - .126: below the .128/28
        return ip4_string(dynamic24(i) | host);
    }
    std::string static_src4() {
        const uint32_t i = pick(std::min(static28_count, prefixes_));
        return ip4_string(dynamic24(i) | 0x80 | (1 + pick(14)));
    }
    std::string dynamic_src6() {
        auto a = v6_dynamic_pool(pick(dynamic6_count));
        a[5] = static_cast<uint8_t>(pick(0x80));  // outside the static /56s
        a[6] = static_cast<uint8_t>(pick(256));
        a[15] = static_cast<uint8_t>(1 + pick(254));
        return ip6_string(a);
    }
    std::string static_src6() {
        auto a = v6_static56(pick(dynamic6_count), pick(static6_per_pool));
        a[7] = static_cast<uint8_t>(pick(256));
        a[15] = static_cast<uint8_t>(1 + pick(254));
        return ip6_string(a);
    }
    // Somewhere on the Internet, not a relay.
    std::string remote4() { return ip4_string(0x0b000000u + pick(0x40000000u)); }
    std::string remote6() {
        std::array<uint8_t, 16> a{};
        a[0] = 0x2a;
        a[1] = 0x03;
        for (unsigned b = 2; b < 16; ++b) a[b] = static_cast<uint8_t>(pick(256));
        return ip6_string(a);
    }

    // Layer 2, --encap: plain Ethernet, one VLAN tag, PPPoE session, or
    // "mixed": 60% plain, 20% VLAN, 20% PPPoE, in random order.
    void encapsulate(frame_builder& f) {
        if (encap_ == "vlan") f.vlan(100);
        if (encap_ == "pppoe") f.pppoe(static_cast<uint16_t>(1 + pick(60000)));
        if (encap_ != "mixed") return;
        const uint32_t r = pick(100);
        if (r < 20)
            f.vlan(static_cast<uint16_t>(100 + pick(100)));
        else if (r < 40)
            f.pppoe(static_cast<uint16_t>(1 + pick(60000)));
    }

    // Non-mail: 60% IPv4 / 40% IPv6; 75% TCP (443, 80), 25% UDP (443, 53);
    // 60% minimum-size, 15% 100-600 bytes, 25% full-size frames.
    test::bytes nonmail() {
        frame_builder f;
        encapsulate(f);
        const bool v4 = pick(100) < 60;
        const bool dyn = pick(100) < 80;
        if (v4)
            f.ipv4(dyn ? dynamic_src4() : static_src4(), remote4());
        else
            f.ipv6(dyn ? dynamic_src6() : static_src6(), remote6());
        const uint16_t sport = static_cast<uint16_t>(32768 + pick(28000));
        if (pick(100) < 75) {
            f.tcp(sport, pick(100) < 70 ? 443 : 80)
                .flags(pick(100) < 5 ? test::tcp_flags_syn : test::tcp_flags_ack)
                .seq(static_cast<uint32_t>(rng_()))
                .ack(static_cast<uint32_t>(rng_()));
        } else {
            f.udp(sport, pick(100) < 80 ? 443 : 53);
        }
        const uint32_t size_class = pick(100);
        const size_t header = f.build().size();
        size_t target = 60;
        if (size_class >= 85)
            target = 1514;
        else if (size_class >= 60)
            target = 100 + pick(500);
        if (target > header) f.payload(target - header);
        f.pad_to(60);
        return f.build();
    }

    // An SMTP SYN (with the usual 20 bytes of options) to port 25.
    test::bytes smtp_syn(bool dynamic_source, bool v4) {
        frame_builder f;
        encapsulate(f);
        if (v4)
            f.ipv4(dynamic_source ? dynamic_src4() : static_src4(), remote4());
        else
            f.ipv6(dynamic_source ? dynamic_src6() : static_src6(), remote6());
        f.tcp(static_cast<uint16_t>(32768 + pick(28000)), 25)
            .flags(test::tcp_flags_syn)
            .seq(static_cast<uint32_t>(rng_()))
            .tcp_options({2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7})
            .pad_to(60);
        return f.build();
    }

    std::mt19937_64& rng() { return rng_; }

private:
    uint32_t pick(uint32_t n) { return static_cast<uint32_t>(rng_() % n); }

    uint32_t prefixes_;
    std::string encap_;
    std::mt19937_64 rng_{20261123};
};

frame_set make_set(rte_mempool* pool, traffic& t, bool with_smtp) {
    struct entry {
        test::bytes frame;
        int smtp;  // 0 none, 1 dynamic, 2 static
    };
    std::vector<entry> frames;
    frames.reserve(frames_per_set);
    const unsigned smtp = with_smtp ? frames_per_set / 10 : 0;  // 10%
    for (unsigned i = 0; i < smtp; ++i) {
        const bool dynamic_source = i % 2 == 0;
        const bool v4 = i % 4 < 2;  // both families, both classes
        frames.push_back({t.smtp_syn(dynamic_source, v4), dynamic_source ? 1 : 2});
    }
    while (frames.size() < frames_per_set) frames.push_back({t.nonmail(), 0});
    std::shuffle(frames.begin(), frames.end(), t.rng());  // no pattern for the branch predictor

    frame_set s;
    for (const auto& e : frames) {
        s.mbufs.push_back(to_mbuf(pool, e.frame));
        s.bytes += e.frame.size();
        if (e.smtp == 1) ++s.smtp_dynamic;
        if (e.smtp == 2) ++s.smtp_static;
    }
    return s;
}

// ------------------------------------------------------------------ the runs --

// Pushes `passes` times the whole set through `fn` in bursts of 32.
template <class F>
run_result run(frame_set& s, uint64_t passes, event_ring* events, F&& fn) {
    rte_mbuf** const all = s.mbufs.data();
    burst_output out;
    uint64_t forwarded = 0, excluded = 0;
    event_record drained[256];
    const uint64_t start = rte_rdtsc_precise();
    for (uint64_t p = 0; p < passes; ++p) {
        for (unsigned off = 0; off < frames_per_set; off += burst_size) {
            rte_mbuf** b = all + off;
            for (unsigned i = 0; i < burst_size; ++i) rte_mbuf_refcnt_set(b[i], 2);
            out.n_forward = out.n_reply = 0;
            fn(b, burst_size, out);
            for (unsigned i = 0; i < burst_size; ++i) rte_mbuf_refcnt_set(b[i], 1);
            if (out.n_reply) rte_pktmbuf_free_bulk(out.reply, out.n_reply);
            forwarded += out.n_forward;
        }
        if (events != nullptr) {
            // The event consumer is the control thread's work, on another
            // core: drain the ring but keep the time out of the figure.
            const uint64_t t = rte_rdtsc();
            while (events->pop(drained, 256) != 0) {
            }
            excluded += rte_rdtsc() - t;
        }
    }
    const uint64_t end = rte_rdtsc_precise();
    null_sink += forwarded;
    return {passes * frames_per_set, end - start - excluded};
}

struct counter_view {
    uint64_t rx, forwarded, blocked, resets, reset_failures, malformed, events, events_full;
};
counter_view read_counters(const worker_counters& c) {
    const port_counters& a = c.port[static_cast<unsigned>(ingress::access)];
    return {a.rx_packets.load(), a.forwarded.load(),      a.blocked.load(),   a.resets_sent.load(),
            a.reset_failures.load(), a.malformed.load(), c.events_emitted.load(), c.events_ring_full.load()};
}

// Checks what one pipeline run did against what the frame set must produce.
bool check(const char* name, const counter_view& before, const counter_view& after, uint64_t packets,
           uint64_t expect_blocked, bool expect_resets) {
    const uint64_t rx = after.rx - before.rx, fwd = after.forwarded - before.forwarded,
                   blocked = after.blocked - before.blocked, resets = after.resets - before.resets,
                   rfail = after.reset_failures - before.reset_failures,
                   malformed = after.malformed - before.malformed,
                   events = after.events - before.events, full = after.events_full - before.events_full;
    const uint64_t expect_resets_n = expect_resets ? expect_blocked : 0;
    const bool ok = rx == packets && blocked == expect_blocked && fwd == packets - expect_blocked &&
                    resets == expect_resets_n && rfail == 0 && malformed == 0 &&
                    events == expect_blocked && full == 0;
    if (!ok)
        std::fprintf(stderr,
                     "FAIL %s: rx %lu (want %lu) forwarded %lu (want %lu) blocked %lu (want %lu) "
                     "resets %lu (want %lu) reset_failures %lu malformed %lu events %lu ring_full %lu\n",
                     name, rx, packets, fwd, packets - expect_blocked, blocked, expect_blocked, resets,
                     expect_resets_n, rfail, malformed, events, full);
    return ok;
}

// ------------------------------------------------------- the bench, step by step --

// The policy of `opt.prefixes` dynamic /24s and the static exemptions; prints how long it took.
std::unique_ptr<compiled_policy> policy_for(const options& opt) {
    double compile_s = 0;
    auto policy = build_policy(opt.prefixes, compile_s);
    std::printf("policy: %u dynamic IPv4 /24s + %u static /28s, %u IPv6 dynamic /40s + %u static /56s, "
                "3 relays: built in %.2f s\n",
                opt.prefixes, static28_count, dynamic6_count, dynamic6_count * static6_per_pool, compile_s);
    return policy;
}

// The frame mbufs and the RST mbufs the pipeline injects: on transparent huge pages when
// --pages thp and granted, else in the EAL's memory. The regions outlive the pools.
struct mbuf_pools {
    thp_region frames_mem, replies_mem;
    rte_mempool* frames = nullptr;
    rte_mempool* replies = nullptr;
};

// Creates both pools; prints which pages they landed on.
void make_pools(const options& opt, mbuf_pools& p) {
    bool frames_thp = false, replies_thp = false;
    p.frames = frame_pool("bench_frames", 2 * frames_per_set + 512, opt.thp, p.frames_mem, frames_thp);
    p.replies = frame_pool("bench_replies", 4095, opt.thp, p.replies_mem, replies_thp);
    frames_thp = frames_thp && backed_by_huge_pages(p.frames_mem.addr);
    replies_thp = replies_thp && backed_by_huge_pages(p.replies_mem.addr);
    std::printf("mbufs: frames on %s, RST mbufs on %s; lookup tables in the EAL's 4 KiB pages (--no-huge)\n",
                frames_thp ? "transparent huge pages"
                : opt.thp  ? "4 KiB pages (no THP granted)"
                           : "4 KiB pages (--pages 4k)",
                replies_thp ? "transparent huge pages" : "4 KiB pages");
}

// The two sets every repetition pushes: non-mail only, and the mix with 10% SMTP SYNs.
struct frame_sets {
    frame_set nonmail, mixed;
};

frame_sets make_sets(rte_mempool* pool, const options& opt) {
    traffic t(opt.prefixes, opt.encap);
    frame_sets s{make_set(pool, t, false), make_set(pool, t, true)};
    std::printf("frames: %u per set, mean %lu bytes (non-mail) / %lu bytes (mixed: %lu SMTP SYNs from "
                "dynamic, %lu from static sources)\n",
                frames_per_set, s.nonmail.bytes / frames_per_set, s.mixed.bytes / frames_per_set,
                s.mixed.smtp_dynamic, s.mixed.smtp_static);
    return s;
}

// The pipeline under test with its counters, its event ring and the policy it applies.
struct bench_pipeline {
    std::unique_ptr<compiled_policy> policy;
    worker_counters counters;
    event_ring events;
    pipeline pipe;

    bench_pipeline(std::unique_ptr<compiled_policy> p, rte_mempool* replies)
        : policy(std::move(p)), events("bench_events", 4096),
          pipe(0, replies, counters, &events, packet_clock::live()) {}

    // `passes` over `s` through the pipeline, the event ring drained after each pass.
    run_result push(frame_set& s, uint64_t passes) {
        return run(s, passes, &events, [&](rte_mbuf** b, uint16_t n, burst_output& out) {
            pipe.process(*policy, ingress::access, b, n, out);
        });
    }
};

// The do-nothing forwarder the pipeline's figures are compared with.
constexpr auto null_fn = [](rte_mbuf** b, uint16_t n, burst_output& out) { null_forward(b, n, out); };

// Warm-up (caches, branch predictors, mempool caches) and a first check.
bool warm_up(bench_pipeline& bp, frame_sets& s) {
    const counter_view c0 = read_counters(bp.counters);
    bp.push(s.mixed, 2);
    const bool ok = check("warm-up mixed", c0, read_counters(bp.counters), 2 * frames_per_set,
                          2 * s.mixed.smtp_dynamic, true);
    bp.push(s.nonmail, 2);
    run(s.nonmail, 2, nullptr, null_fn);
    return ok;
}

// Every repetition's figures of each variant.
struct repeated_figures {
    std::vector<double> null_mpps, nonmail_mpps, mixed_mpps, mixed_drop_mpps, null_mixed_mpps;
    std::vector<double> ratio_nonmail, ratio_mixed, cpp_nonmail, cpp_mixed, cpp_mixed_drop, cpp_null;
};

// One repetition, the variants interleaved: null, non-mail, null over the mixed set, mixed
// answered with RSTs, mixed dropped. Checks every pipeline run; prints the repetition's line.
bool measure_repetition(bench_pipeline& bp, frame_sets& s, uint64_t passes, unsigned r, uint64_t hz,
                        repeated_figures& f) {
    const uint64_t packets = passes * frames_per_set;
    bool ok = true;
    const run_result n1 = run(s.nonmail, passes, nullptr, null_fn);

    auto c0 = read_counters(bp.counters);
    const run_result a = bp.push(s.nonmail, passes);
    ok &= check("nonmail", c0, read_counters(bp.counters), packets, 0, false);

    const run_result n2 = run(s.mixed, passes, nullptr, null_fn);

    bp.policy->set_action(op25b_action::reset);
    c0 = read_counters(bp.counters);
    const run_result b = bp.push(s.mixed, passes);
    ok &= check("mixed", c0, read_counters(bp.counters), packets, passes * s.mixed.smtp_dynamic, true);

    bp.policy->set_action(op25b_action::drop);
    c0 = read_counters(bp.counters);
    const run_result d = bp.push(s.mixed, passes);
    ok &= check("mixed/drop", c0, read_counters(bp.counters), packets, passes * s.mixed.smtp_dynamic, false);
    bp.policy->set_action(op25b_action::reset);

    f.null_mpps.push_back(n1.mpps(hz));
    f.null_mixed_mpps.push_back(n2.mpps(hz));
    f.nonmail_mpps.push_back(a.mpps(hz));
    f.mixed_mpps.push_back(b.mpps(hz));
    f.mixed_drop_mpps.push_back(d.mpps(hz));
    f.ratio_nonmail.push_back(a.mpps(hz) / n1.mpps(hz));
    f.ratio_mixed.push_back(b.mpps(hz) / n2.mpps(hz));
    f.cpp_null.push_back(n1.cycles_per_packet());
    f.cpp_nonmail.push_back(a.cycles_per_packet());
    f.cpp_mixed.push_back(b.cycles_per_packet());
    f.cpp_mixed_drop.push_back(d.cycles_per_packet());
    std::printf("rep %u: null %.2f Mpps (%.1f cyc/pkt) | nonmail %.2f Mpps (%.1f) | mixed %.2f Mpps (%.1f) "
                "| mixed/drop %.2f Mpps (%.1f)\n",
                r + 1, n1.mpps(hz), n1.cycles_per_packet(), a.mpps(hz), a.cycles_per_packet(), b.mpps(hz),
                b.cycles_per_packet(), d.mpps(hz), d.cycles_per_packet());
    std::fflush(stdout);
    return ok;
}

// The medians over the repetitions, then the same figures as one JSON line, for scripts.
void print_figures(const repeated_figures& f, unsigned reps, const std::string& cpu) {
    const double m_null = median(f.null_mpps), m_nonmail = median(f.nonmail_mpps), m_mixed = median(f.mixed_mpps);
    const double m_rn = median(f.ratio_nonmail), m_rm = median(f.ratio_mixed), m_cpp = median(f.cpp_mixed);
    std::printf("median of %u: null forwarder %.2f Mpps (%.1f TSC cycles/pkt; %.2f Mpps over the mixed set)\n",
                reps, m_null, median(f.cpp_null), median(f.null_mixed_mpps));
    std::printf("median of %u: non-mail %.2f Mpps (%.1f cycles/pkt), ratio to null %.3f (goal >= 0.8)\n", reps,
                m_nonmail, median(f.cpp_nonmail), m_rn);
    std::printf("median of %u: mixed/reset %.2f Mpps (%.1f cycles/pkt, goal <= 100), ratio to null %.3f\n", reps,
                m_mixed, m_cpp, m_rm);
    std::printf("median of %u: mixed/drop %.2f Mpps (%.1f cycles/pkt)\n", reps, median(f.mixed_drop_mpps),
                median(f.cpp_mixed_drop));
    std::printf("pipeline cost over the null forwarder: %.1f cycles/pkt non-mail, %.1f mixed/reset\n",
                median(f.cpp_nonmail) - median(f.cpp_null), m_cpp - median(f.cpp_null));
    std::printf("spread (max-min)/median: null %.1f%%, non-mail %.1f%%, mixed %.1f%%\n", 100 * spread(f.null_mpps),
                100 * spread(f.nonmail_mpps), 100 * spread(f.mixed_mpps));
    std::printf("{\"bench\":\"op25b\",\"mpps_nonmail\":%.3f,\"mpps_mixed\":%.3f,\"null_mpps\":%.3f,"
                "\"ratio_nonmail\":%.3f,\"ratio_mixed\":%.3f,\"cycles_per_pkt_mixed\":%.1f,\"cpu\":\"%s\"}\n",
                m_nonmail, m_mixed, m_null, m_rn, m_rm, m_cpp, json_escape(cpu).c_str());
}

int bench_main(const options& opt) {
    const uint64_t hz = rte_get_tsc_hz();
    const std::string cpu = cpu_model();
    std::printf("op25b bench: cpu \"%s\", TSC %.3f GHz, lcore %u\n", cpu.c_str(), static_cast<double>(hz) / 1e9,
                rte_lcore_id());
    std::unique_ptr<compiled_policy> policy = policy_for(opt);
    mbuf_pools pools;
    make_pools(opt, pools);
    frame_sets sets = make_sets(pools.frames, opt);
    bench_pipeline bp(std::move(policy), pools.replies);

    const uint64_t passes = std::max<uint64_t>(1, opt.packets / frames_per_set);
    std::printf("runs: %lu packets each, %u repetitions, interleaved\n", passes * frames_per_set, opt.reps);
    bool ok = warm_up(bp, sets);
    repeated_figures f;
    for (unsigned r = 0; r < opt.reps && ok; ++r) ok &= measure_repetition(bp, sets, passes, r, hz, f);
    if (!ok) {
        std::fprintf(stderr, "op25b bench: the pipeline did not do what the frames require; no figures\n");
        return 1;
    }
    print_figures(f, opt.reps, cpu);

    for (rte_mbuf* m : sets.nonmail.mbufs) rte_pktmbuf_free(m);
    for (rte_mbuf* m : sets.mixed.mbufs) rte_pktmbuf_free(m);
    bp.policy.reset();
    rte_mempool_free(pools.frames);
    rte_mempool_free(pools.replies);
    return 0;
}

bool parse_options(int argc, char** argv, options& opt) {
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--short") {  // every self-check on a small set; the figures are rough
            opt.packets = 4ull << 20, opt.reps = 1, opt.prefixes = 100000;
            continue;
        }
        if (i + 1 >= argc) return false;
        if (a == "--pages") {
            const std::string v = argv[++i];
            if (v != "thp" && v != "4k") return false;
            opt.thp = v == "thp";
            continue;
        }
        if (a == "--encap") {
            opt.encap = argv[++i];
            if (opt.encap != "plain" && opt.encap != "vlan" && opt.encap != "pppoe" && opt.encap != "mixed")
                return false;
            continue;
        }
        const uint64_t v = std::strtoull(argv[++i], nullptr, 10);
        if (a == "--packets" && v > 0)
            opt.packets = v;
        else if (a == "--reps" && v > 0)
            opt.reps = static_cast<unsigned>(v);
        else if (a == "--prefixes" && v > 0 && v <= (1u << 24) - static28_count)
            opt.prefixes = static_cast<uint32_t>(v);
        else if (a == "--frames" && v >= 320 && v <= 65536 && v % burst_size == 0)
            opt.frames = static_cast<unsigned>(v);
        else
            return false;
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    options opt;
    const bool parsed = parse_options(argc, argv, opt);
    frames_per_set = opt.frames;
    if (!parsed) {
        std::fprintf(stderr,
                     "usage: %s [--short] [--packets N] [--reps N] [--prefixes N] [--frames N]\n"
                     "       [--encap plain|vlan|pppoe|mixed] [--pages thp|4k]\n",
                     argv[0]);
        return 2;
    }
    return run_on_eal("op25b bench", init_eal("op25b-bench", 2048), [&] { return bench_main(opt); });
}
