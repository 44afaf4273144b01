// OP25B benchmark, in two parts over the same frames and policy (1M dynamic
// IPv4 prefixes; bench/op25b_frames.h):
//
// 1. In memory, no I/O: pushes pre-built mbuf bursts through the worker
// pipeline, for
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
// 2. Through real poll-mode drivers (bench/memif_pair.h; --memif off skips
// it): a generator process on the second CPU sends the same sets over
// net_memif to this process, which forwards them back (a) with the bench's io
// forwarder (rx_burst -> tx_burst, the baseline) and (b) with the live
// worker's own turn (worker_turn: rx_burst, pipeline::process, transmit).
// The figure is the forwarder's cost: TSC cycles of its turns that received
// frames / frames (dpdk-testpmd --record-core-cycles), turns preempted by the
// machine's other work left out and counted; io and Sekisho alternate in
// short runs within each repetition. Every frame is accounted for: the
// pipeline's counters as in part 1, and what the generator got back on each
// link, frame for frame and byte for byte, against what the forwarder sent
// (or counted as refused by a full TX ring).
//
// Human-readable lines first; the last line is one JSON object.
//
// Options: --short        4M packets (1M through memif), 1 repetition, 100k prefixes: every
//                         self-check, rough figures
//          --packets N    per run (default 64M)
//          --reps N       repetitions (default 5)
//          --prefixes N   dynamic IPv4 /24s (default 1,000,000)
//          --frames N     frames per set (default 4096)
//          --encap E      plain | vlan | pppoe | mixed (default: mixed, 60/20/20)
//          --pages P      thp (default): the frame mbufs on transparent huge
//                         pages, as on a hugepage deployment; 4k: in the EAL's
//                         --no-huge memory, one mbuf per 4 KiB page, where TLB
//                         misses dominate both the pipeline and the null run.
//          --memif on|off the runs through net_memif (default on; needs no hugepages)
//          --memif-packets N  per variant and repetition through memif (default 4M)
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/compiled_policy.h"
#include "dataplane/event_ring.h"
#include "dataplane/pipeline.h"
#include "dataplane/policy_store.h"
#include "dataplane/worker.h"
#include "dataplane/worker_counters.h"
#include "bench_support.h"
#include "memif_pair.h"
#include "op25b_frames.h"

namespace {

using namespace sekisho;
using namespace sekisho::bench;

// Frames per set (--frames, a multiple of burst_size): large enough that the
// branch predictor cannot learn the sequence, small enough to stay in L2.
unsigned frames_per_set = 4096;

struct options {
    uint64_t packets = 64ull << 20;
    unsigned reps = 5;
    uint32_t prefixes = 1000000;
    unsigned frames = 4096;
    std::string encap = "mixed";
    bool thp = true;
    bool memif = true;                     // the runs through net_memif too
    uint64_t memif_packets = 4ull << 20;   // per variant and repetition through memif
};

struct frame_set {
    std::vector<rte_mbuf*> mbufs;
    uint64_t smtp_dynamic = 0, smtp_static = 0;  // per pass
    uint64_t bytes = 0;
};

frame_set to_mbufs(rte_mempool* pool, const frame_bytes& b) {
    frame_set s;
    for (const auto& f : b.frames) s.mbufs.push_back(to_mbuf(pool, f));
    s.smtp_dynamic = b.smtp_dynamic;
    s.smtp_static = b.smtp_static;
    s.bytes = b.bytes;
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

frame_sets make_sets(rte_mempool* pool, const op25b_frames& bytes) {
    frame_sets s{to_mbufs(pool, bytes.nonmail), to_mbufs(pool, bytes.mixed)};
    std::printf("frames: %u per set, mean %lu bytes (non-mail) / %lu bytes (mixed: %lu SMTP SYNs from "
                "dynamic, %lu from static sources)\n",
                frames_per_set, s.nonmail.bytes / frames_per_set, s.mixed.bytes / frames_per_set,
                s.mixed.smtp_dynamic, s.mixed.smtp_static);
    return s;
}

// The pipeline under test with its counters, its event ring and the policy it applies.
// The policy is published in a policy_store, as the live worker reads it; `policy` stays
// writable for the action switch between runs (no run is in flight then).
struct bench_pipeline {
    compiled_policy* policy;
    policy_store store{1};
    worker_counters counters;
    event_ring events;
    pipeline pipe;

    bench_pipeline(std::unique_ptr<compiled_policy> p, rte_mempool* replies)
        : policy(p.get()), events("bench_events", 4096),
          pipe(0, replies, counters, &events, packet_clock::live()) {
        store.publish(std::move(p));
    }

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
std::string print_figures(const repeated_figures& f, unsigned reps) {
    const double m_null = median(f.null_mpps), m_nonmail = median(f.nonmail_mpps), m_mixed = median(f.mixed_mpps);
    const double m_rn = median(f.ratio_nonmail), m_rm = median(f.ratio_mixed), m_cpp = median(f.cpp_mixed);
    std::printf("in memory, no I/O (pre-built mbufs, no PMD):\n");
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
    char json[512];
    std::snprintf(json, sizeof json,
                  "\"bench\":\"op25b\",\"mpps_nonmail\":%.3f,\"mpps_mixed\":%.3f,\"null_mpps\":%.3f,"
                  "\"ratio_nonmail\":%.3f,\"ratio_mixed\":%.3f,\"cycles_per_pkt_mixed\":%.1f,"
                  "\"cycles_per_pkt_nonmail\":%.1f,\"cycles_per_pkt_null\":%.1f",
                  m_nonmail, m_mixed, m_null, m_rn, m_rm, m_cpp, median(f.cpp_nonmail), median(f.cpp_null));
    return json;
}

// ------------------------------------------------ through real PMDs (net_memif) --

// The generator's frame sets, by index.
constexpr unsigned nonmail_set = 0, mixed_set = 1;

// Every frame accounted for: the generator sent `packets`; what the forwarder
// had for the core link (`expect_core` frames, `expect_core_bytes` bytes) and
// for the access link (`expect_access` RSTs) either left and came back to the
// generator, byte for byte, or was refused by a full TX ring and counted.
bool check_pmd(const char* name, const generator_report& g, const tx_view& a, const tx_view& b, uint64_t packets,
               uint64_t expect_core, uint64_t expect_core_bytes, uint64_t expect_access) {
    uint64_t tx[2], bytes[2], drops[2];
    for (unsigned side = 0; side < 2; ++side) {
        tx[side] = b.tx[side] - a.tx[side];
        bytes[side] = b.bytes[side] - a.bytes[side];
        drops[side] = b.drops[side] - a.drops[side];
    }
    const bool ok = g.sent == packets && tx[1] + drops[1] == expect_core && tx[0] + drops[0] == expect_access &&
                    g.back[1] == tx[1] && g.back_bytes[1] == bytes[1] && g.back[0] == tx[0] &&
                    g.back_bytes[0] == bytes[0] && (drops[1] != 0 || bytes[1] == expect_core_bytes);
    if (!ok)
        std::fprintf(stderr,
                     "FAIL %s (memif): generator sent %lu (want %lu); core: forwarder sent %lu + refused %lu "
                     "(want %lu), %lu bytes (want %lu), generator got %lu (%lu bytes); access: forwarder sent %lu + "
                     "refused %lu (want %lu), generator got %lu (%lu bytes)\n",
                     name, g.sent, packets, tx[1], drops[1], expect_core, bytes[1], expect_core_bytes, g.back[1],
                     g.back_bytes[1], tx[0], drops[0], expect_access, g.back[0], g.back_bytes[0]);
    return ok;
}

// The forwarder under test, twice on the same ports: the bench's io forwarder
// (memif_pair::io_turn), and the live worker's own turn (worker_turn: the
// policy from the store, pipeline::process between rx_burst and tx_burst,
// transmit, the RCU quiescent state) with the bench's pipeline.
class pmd_bench {
public:
    pmd_bench(memif_pair& pair, bench_pipeline& bp) : pair_(pair), bp_(bp) {
        w_.id = 0;
        w_.port[0] = pair.access_port();
        w_.port[1] = pair.core_port();
        w_.queue = 0;
        w_.pipe = &bp.pipe;
        w_.store = &bp.store;
        w_.counters = &bp.counters;
        bp.store.register_reader(0);
    }
    ~pmd_bench() { bp_.store.unregister_reader(0); }
    pmd_bench(const pmd_bench&) = delete;
    pmd_bench& operator=(const pmd_bench&) = delete;

    bool io(const char* name, const frame_bytes& fb, unsigned set, uint64_t passes, pmd_run& out) {
        const tx_view t0 = read_tx(io_counters_);
        out.r = pair_.run(set, passes, [&] { return pair_.io_turn(io_counters_); }, [] {});
        const tx_view t1 = read_tx(io_counters_);
        out.g = pair_.collect(t1.tx[0] - t0.tx[0], t1.tx[1] - t0.tx[1]);
        out.tx_drops = t1.drops[0] + t1.drops[1] - t0.drops[0] - t0.drops[1];
        const uint64_t packets = passes * fb.frames.size();
        return check_pmd(name, out.g, t0, t1, packets, packets, passes * fb.bytes, 0);
    }

    bool sekisho(const char* name, const frame_bytes& fb, unsigned set, uint64_t passes, pmd_run& out) {
        const counter_view c0 = read_counters(bp_.counters);
        const tx_view t0 = read_tx(bp_.counters);
        // The event consumer is the control thread's work: drained aside, its time not counted.
        const auto drain = [&] {
            while (bp_.events.pop(drained_, 256) != 0) {
            }
        };
        out.r = pair_.run(set, passes, [&] { return worker_turn(w_, rx_, out_); }, drain);
        drain();
        const tx_view t1 = read_tx(bp_.counters);
        out.g = pair_.collect(t1.tx[0] - t0.tx[0], t1.tx[1] - t0.tx[1]);
        out.tx_drops = t1.drops[0] + t1.drops[1] - t0.drops[0] - t0.drops[1];
        const uint64_t packets = passes * fb.frames.size(), blocked = passes * fb.smtp_dynamic;
        const bool counted = check(name, c0, read_counters(bp_.counters), packets, blocked, true);
        return check_pmd(name, out.g, t0, t1, packets, packets - blocked, passes * (fb.bytes - fb.smtp_dynamic_bytes),
                         blocked) &&
               counted;
    }

private:
    memif_pair& pair_;
    bench_pipeline& bp_;
    worker_counters io_counters_;
    live_worker w_;
    rte_mbuf* rx_[burst_size];
    burst_output out_;
    event_record drained_[256];
};

struct pmd_figures : pmd_totals {
    pmd_variant io_nonmail, io_mixed, nonmail, mixed;
    std::vector<double> ratio_nonmail, ratio_mixed, ratio_nonmail_median, ratio_mixed_median;
};

// Runs per variant in a repetition: io and Sekisho alternate in short runs, so that both see
// the same load from the machine's other work.
constexpr unsigned pmd_rounds = 4;

// The runs through net_memif: a checked warm-up, then per repetition pmd_rounds times io and
// Sekisho over the non-mail set, io and Sekisho over the mixed set. Returns the JSON keys, or ""
// when a check failed.
std::string measure_pmd(memif_pair& pair, bench_pipeline& bp, const op25b_frames& fb, const options& opt,
                        uint64_t hz) {
    const uint64_t passes = std::max<uint64_t>(1, opt.memif_packets / pmd_rounds / frames_per_set);
    std::printf("through net_memif (a generator process on its own lcore, real rx_burst/tx_burst): %u x %lu packets "
                "per variant and repetition, %u repetitions; cycles of the forwarder's turns that received frames "
                "/ frames, turns preempted (> %.0f us) left out\n",
                pmd_rounds, passes * frames_per_set, opt.reps, memif_pair::preempted_turn * 1e6);
    pmd_bench b(pair, bp);
    pmd_run p;
    bp.policy->set_action(op25b_action::reset);
    bool ok = b.io("warm-up io", fb.mixed, mixed_set, 8, p) && b.sekisho("warm-up memif mixed", fb.mixed, mixed_set, 8, p);
    pmd_figures f;
    for (unsigned r = 0; r < opt.reps && ok; ++r) {
        pmd_run io_n, se_n, io_m, se_m;
        for (unsigned k = 0; k < pmd_rounds && ok; ++k) {
            pmd_run a, c, d, e;
            ok = b.io("io non-mail", fb.nonmail, nonmail_set, passes, a) &&
                 b.sekisho("memif non-mail", fb.nonmail, nonmail_set, passes, c) &&
                 b.io("io mixed", fb.mixed, mixed_set, passes, d) &&
                 b.sekisho("memif mixed", fb.mixed, mixed_set, passes, e);
            io_n.merge(a);
            se_n.merge(c);
            io_m.merge(d);
            se_m.merge(e);
        }
        if (!ok) break;
        f.add(io_n, f.io_nonmail, hz);
        f.add(se_n, f.nonmail, hz);
        f.add(io_m, f.io_mixed, hz);
        f.add(se_m, f.mixed, hz);
        f.ratio_nonmail.push_back(io_n.r.cycles_per_packet() / se_n.r.cycles_per_packet());
        f.ratio_mixed.push_back(io_m.r.cycles_per_packet() / se_m.r.cycles_per_packet());
        f.ratio_nonmail_median.push_back(io_n.r.median_turn_cost() / se_n.r.median_turn_cost());
        f.ratio_mixed_median.push_back(io_m.r.median_turn_cost() / se_m.r.median_turn_cost());
        std::printf("memif rep %u:\n", r + 1);
        print_pmd_run("io non-mail", io_n, hz);
        print_pmd_run("Sekisho non-mail", se_n, hz);
        print_pmd_run("io mixed", io_m, hz);
        print_pmd_run("Sekisho mixed", se_m, hz);
        std::fflush(stdout);
    }
    if (!ok) return "";
    const unsigned reps = opt.reps;
    const double rn = median(f.ratio_nonmail), rm = median(f.ratio_mixed);
    std::printf("through net_memif, median of %u: io %.1f cycles/pkt (%.2f Mpps) non-mail, %.1f (%.2f Mpps) mixed\n",
                reps, median(f.io_nonmail.cpp), median(f.io_nonmail.mpps), median(f.io_mixed.cpp),
                median(f.io_mixed.mpps));
    std::printf("through net_memif, median of %u: Sekisho %.1f cycles/pkt (%.2f Mpps) non-mail, %.1f (%.2f Mpps) "
                "mixed\n",
                reps, median(f.nonmail.cpp), median(f.nonmail.mpps), median(f.mixed.cpp), median(f.mixed.mpps));
    std::printf("through net_memif, median of %u: ratio io/Sekisho cycles %.3f non-mail (goal >= 0.9: %s), %.3f "
                "mixed (goal >= 0.8: %s)\n",
                reps, rn, rn >= 0.9 ? "met" : "not met", rm, rm >= 0.8 ? "met" : "not met");
    std::printf("through net_memif, median turn: io %.1f / Sekisho %.1f cycles/pkt non-mail (ratio %.3f), io %.1f / "
                "Sekisho %.1f mixed (ratio %.3f)\n",
                median(f.io_nonmail.median_turn), median(f.nonmail.median_turn), median(f.ratio_nonmail_median),
                median(f.io_mixed.median_turn), median(f.mixed.median_turn), median(f.ratio_mixed_median));
    std::printf("spread (max-min)/median: ratio non-mail %.1f%%, mixed %.1f%%; cycles io %.1f%%, Sekisho non-mail "
                "%.1f%%, mixed %.1f%%\n",
                100 * spread(f.ratio_nonmail), 100 * spread(f.ratio_mixed), 100 * spread(f.io_nonmail.cpp),
                100 * spread(f.nonmail.cpp), 100 * spread(f.mixed.cpp));
    std::printf("forwarder busy share at least %.1f%%, at least %.1f frames per busy turn, %lu of %lu busy turns "
                "preempted; generator TX refused %lu (resent), forwarder TX refused %lu (counted, freed)\n",
                100 * f.min_busy, f.min_burst, f.preempted_turns, f.busy_turns, f.gen_refused, f.tx_drops);
    char json[1536];
    std::snprintf(json, sizeof json,
                  ",\"ratio_io_nonmail\":%.3f,\"ratio_io_mixed\":%.3f,\"cycles_per_pkt_io\":%.1f,"
                  "\"cycles_per_pkt_io_mixed\":%.1f,\"cycles_per_pkt_pmd_nonmail\":%.1f,"
                  "\"cycles_per_pkt_pmd_mixed\":%.1f,\"mpps_pmd_io\":%.3f,\"mpps_pmd_io_mixed\":%.3f,"
                  "\"mpps_pmd_nonmail\":%.3f,\"mpps_pmd_mixed\":%.3f,\"spread_ratio_io_nonmail\":%.3f,"
                  "\"spread_ratio_io_mixed\":%.3f,\"ratio_io_nonmail_median_turn\":%.3f,"
                  "\"ratio_io_mixed_median_turn\":%.3f,\"cycles_per_pkt_io_median_turn\":%.1f,"
                  "\"cycles_per_pkt_pmd_nonmail_median_turn\":%.1f,\"cycles_per_pkt_pmd_mixed_median_turn\":%.1f,"
                  "\"pmd_busy_share_min\":%.3f,\"pmd_preempted_turns\":%lu,\"pmd_generator_refused\":%lu,"
                  "\"pmd_tx_refused\":%lu",
                  rn, rm, median(f.io_nonmail.cpp), median(f.io_mixed.cpp), median(f.nonmail.cpp), median(f.mixed.cpp),
                  median(f.io_nonmail.mpps), median(f.io_mixed.mpps), median(f.nonmail.mpps), median(f.mixed.mpps),
                  spread(f.ratio_nonmail), spread(f.ratio_mixed), median(f.ratio_nonmail_median),
                  median(f.ratio_mixed_median), median(f.io_nonmail.median_turn), median(f.nonmail.median_turn),
                  median(f.mixed.median_turn), f.min_busy, f.preempted_turns, f.gen_refused, f.tx_drops);
    return json;
}

int bench_main(const options& opt, const op25b_frames& bytes, memif_pair* pair) {
    const uint64_t hz = rte_get_tsc_hz();
    const std::string cpu = cpu_model();
    std::printf("op25b bench: cpu \"%s\", TSC %.3f GHz, lcore %u\n", cpu.c_str(), static_cast<double>(hz) / 1e9,
                rte_lcore_id());
    std::unique_ptr<compiled_policy> policy = policy_for(opt);
    mbuf_pools pools;
    make_pools(opt, pools);
    frame_sets sets = make_sets(pools.frames, bytes);
    bench_pipeline bp(std::move(policy), pools.replies);

    const uint64_t passes = std::max<uint64_t>(1, opt.packets / frames_per_set);
    std::printf("in-memory runs: %lu packets each, %u repetitions, interleaved\n", passes * frames_per_set, opt.reps);
    bool ok = warm_up(bp, sets);
    repeated_figures f;
    for (unsigned r = 0; r < opt.reps && ok; ++r) ok &= measure_repetition(bp, sets, passes, r, hz, f);
    if (!ok) {
        std::fprintf(stderr, "op25b bench: the pipeline did not do what the frames require; no figures\n");
        return 1;
    }
    std::string json = print_figures(f, opt.reps);
    if (pair != nullptr) {
        const std::string pmd = measure_on_ports(*pair, opt.thp, [&] { return measure_pmd(*pair, bp, bytes, opt, hz); });
        if (pmd.empty()) {
            std::fprintf(stderr, "op25b bench: a run through net_memif lost or miscounted frames; no figures\n");
            return 1;
        }
        json += pmd;
    }
    std::printf("{%s,\"cpu\":\"%s\"}\n", json.c_str(), json_escape(cpu).c_str());

    for (rte_mbuf* m : sets.nonmail.mbufs) rte_pktmbuf_free(m);
    for (rte_mbuf* m : sets.mixed.mbufs) rte_pktmbuf_free(m);
    rte_mempool_free(pools.frames);
    rte_mempool_free(pools.replies);
    return 0;
}

bool parse_options(int argc, char** argv, options& opt) {
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--short") {  // every self-check on a small set; the figures are rough
            opt.packets = 4ull << 20, opt.reps = 1, opt.prefixes = 100000, opt.memif_packets = 1ull << 20;
            continue;
        }
        if (i + 1 >= argc) return false;
        if (a == "--pages") {
            const std::string v = argv[++i];
            if (v != "thp" && v != "4k") return false;
            opt.thp = v == "thp";
            continue;
        }
        if (a == "--memif") {
            const std::string v = argv[++i];
            if (v != "on" && v != "off") return false;
            opt.memif = v == "on";
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
        else if (a == "--memif-packets" && v > 0)
            opt.memif_packets = v;
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
                     "       [--encap plain|vlan|pppoe|mixed] [--pages thp|4k] [--memif on|off] [--memif-packets N]\n",
                     argv[0]);
        return 2;
    }
    // The frames first (no EAL needed): the memif generator is forked with them before this
    // process starts its EAL, on the second CPU when there is one.
    const op25b_frames bytes = make_op25b_frames(opt.prefixes, opt.encap, frames_per_set);
    std::optional<memif_pair> pair;
    try {
        if (opt.memif)
            pair.emplace(generator_frames{{bytes.nonmail.frames, bytes.mixed.frames}, {}},
                         sysconf(_SC_NPROCESSORS_ONLN) > 1 ? 1u : 0u, 512);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "op25b bench: %s\n", e.what());
        return 1;
    }
    const std::vector<std::string> ports = pair ? pair->forwarder_eal_args() : std::vector<std::string>{};
    return run_on_eal("op25b bench", init_eal("op25b-bench", 2048, ports),
                      [&] { return bench_main(opt, bytes, pair ? &*pair : nullptr); });
}
