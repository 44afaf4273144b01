// The XDP program against the DPDK data plane, frame by frame.
//
// One corpus (the parser's and the classifier's tables from
// tests/support/frame_corpus.h, plus every frame of tests/data/demo.pcap) goes
// through pipeline::process() on an mbuf (the DPDK path: packet_parser +
// op25b_classifier + RST builder) and through the loaded XDP program with
// BPF_PROG_TEST_RUN, for each shipped OP25B policy (configs/op25b-*.yaml) and
// both ingress sides. Per frame, both must agree on:
//   - the verdict: forwarded <=> XDP_PASS (frame unchanged), dropped <=>
//     XDP_DROP, RST injected <=> XDP_TX whose frame equals the RST byte for byte;
//   - the counters the frame moved (port verdicts, malformed reasons, block
//     reasons, resets, traffic mix, events);
//   - the events (type, reason, action, generation, addresses, ports, flags).
// A difference fails with the frame in hex and both sides' results.
//
// Needs root (BPF) and runs under eal_test_main.cpp (rte_fib, mbufs).
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "../support/frame_builder.h"
#include "../support/frame_corpus.h"
#include "dataplane/event_ring.h"
#include "dataplane/limits/limit_cell.h"
#include "pcap_frames.h"
#include "dataplane/pipeline.h"
#include "control/policy/policy.h"
#include "control/policy/policy_compiler.h"
#include "dataplane/worker_counters.h"
#include "backends/xdp/xdp_backend.h"
#include "backends/xdp/xdp_counters.h"

#ifndef SEKISHO_SOURCE_ROOT
#error "SEKISHO_SOURCE_ROOT must name the source tree (tests/meson.build sets it)"
#endif

namespace sekisho {
namespace {

using test::bytes;
using test::frame_builder;

constexpr const char* xdp_action_names[] = {"XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT"};
constexpr uint32_t xdp_drop = 1, xdp_pass = 2, xdp_tx = 3;

struct named_frame {
    std::string name;
    bytes frame;
};

std::vector<named_frame> corpus() {
    std::vector<named_frame> out;
    for (auto& c : test::parser_corpus::cases()) out.push_back({"parser/" + c.name, c.frame});
    for (auto& c : test::op25b_corpus::cases()) out.push_back({"op25b/" + c.name, c.frame});
    const auto demo = test::read_pcap_frames(std::string(SEKISHO_SOURCE_ROOT) + "/tests/data/demo.pcap");
    for (size_t i = 0; i < demo.size(); ++i) out.push_back({"demo.pcap#" + std::to_string(i + 1), demo[i]});
    return out;
}

std::string hex(const bytes& b) {
    std::string s;
    char buf[4];
    for (size_t i = 0; i < b.size(); ++i) {
        std::snprintf(buf, sizeof buf, "%02x", b[i]);
        s += buf;
        if (i + 1 < b.size()) s += (i % 16 == 15) ? "\n    " : " ";
    }
    return s;
}

// The counters one frame moves, by name (tx is counted by the DPDK worker
// loop, not the pipeline, so it is not compared here).
std::vector<std::pair<std::string, uint64_t>> flatten(const worker_counters& w) {
    std::vector<std::pair<std::string, uint64_t>> v;
    for (unsigned side = 0; side < ingress_count; ++side) {
        const std::string p = std::string(to_string(static_cast<ingress>(side))) + ".";
        const port_counters& c = w.port[side];
        v.push_back({p + "rx_packets", c.rx_packets.load()});
        v.push_back({p + "rx_bytes", c.rx_bytes.load()});
        v.push_back({p + "forwarded", c.forwarded.load()});
        v.push_back({p + "blocked", c.blocked.load()});
        v.push_back({p + "monitored", c.monitored.load()});
        v.push_back({p + "limited", c.limited.load()});
        v.push_back({p + "malformed", c.malformed.load()});
        v.push_back({p + "malformed_dropped", c.malformed_dropped.load()});
        v.push_back({p + "resets_sent", c.resets_sent.load()});
        v.push_back({p + "reset_failures", c.reset_failures.load()});
        v.push_back({p + "non_ip", c.non_ip.load()});
        v.push_back({p + "fragments", c.fragments.load()});
    }
    for (unsigned e = 0; e < parse_error_count; ++e)
        v.push_back({std::string("malformed_by_reason.") + to_string(static_cast<parse_error>(e)),
                     w.malformed_by_reason[e].load()});
    for (unsigned r = 0; r < block_reason_count; ++r) {
        const std::string n = to_string(static_cast<block_reason>(r));
        v.push_back({"blocked_by_reason." + n, w.blocked_by_reason[r].load()});
        v.push_back({"monitored_by_reason." + n, w.monitored_by_reason[r].load()});
    }
    v.push_back({"events_emitted", w.events_emitted.load()});
    return v;
}

std::vector<std::pair<std::string, uint64_t>> delta(const std::vector<std::pair<std::string, uint64_t>>& after,
                                                    const std::vector<std::pair<std::string, uint64_t>>& before) {
    auto d = after;
    for (size_t i = 0; i < d.size(); ++i) d[i].second -= before[i].second;
    return d;
}

std::string event_text(const event_record& e) {
    std::ostringstream o;
    o << "type=" << int(e.type) << " reason=" << int(e.reason) << " action=" << int(e.action)
      << " gen=" << e.generation << " ipv" << int(e.ip_version) << " ingress=" << int(e.ingress)
      << " flags=" << int(e.tcp_flags) << " ports=" << e.src_port << ">" << e.dst_port << " src=" << hex(bytes(e.src, e.src + 16))
      << " dst=" << hex(bytes(e.dst, e.dst + 16));
    return o.str();
}

struct verdict {
    std::string what;   // "forward", "drop", "reply" / XDP action name
    bytes out;          // the RST (reply) or the XDP output frame
    std::vector<std::pair<std::string, uint64_t>> counters;
    std::vector<std::string> events;
};

std::string describe(const verdict& v) {
    std::string s = v.what;
    if (!v.out.empty()) s += "\n    " + hex(v.out);
    for (const auto& [n, c] : v.counters)
        if (c) s += "\n    " + n + " +" + std::to_string(c);
    for (const auto& e : v.events) s += "\n    event " + e;
    return s;
}

sx_counters sum(const std::vector<sx_counters>& per_cpu) {
    // sx_counters is all __u64 (unsigned long long): add it as such, through
    // memcpy, never through a pointer of another type (strict aliasing).
    constexpr size_t n = sizeof(sx_counters) / sizeof(__u64);
    static_assert(sizeof(sx_counters) % sizeof(__u64) == 0);
    std::array<__u64, n> total{}, x{};
    for (const auto& c : per_cpu) {
        std::memcpy(x.data(), &c, sizeof c);
        for (size_t i = 0; i < n; ++i) total[i] += x[i];
    }
    sx_counters out;
    std::memcpy(&out, total.data(), sizeof out);
    return out;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream t;
    t << in.rdbuf();
    return t.str();
}

class xdp_differential : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        pool_ = rte_pktmbuf_pool_create("sk_xdp_diff", 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
        ring_ = new event_ring("sk_xdp_diff_ev", 64);
    }
    static void TearDownTestSuite() {
        delete ring_;
        rte_mempool_free(pool_);
    }

    // The DPDK data plane's verdict on one frame.
    verdict run_dpdk(pipeline& pipe, worker_counters& wc, const compiled_policy& pol, ingress in, const bytes& f) {
        const auto before = flatten(wc);
        rte_mbuf* m = rte_pktmbuf_alloc(pool_);
        EXPECT_NE(m, nullptr);
        std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(f.size())), f.data(), f.size());
        burst_output out;
        pipe.process(pol, in, &m, 1, out);
        verdict v;
        auto bytes_of = [](const rte_mbuf* x) {
            const uint8_t* d = rte_pktmbuf_mtod(x, const uint8_t*);
            return bytes(d, d + x->data_len);
        };
        if (out.n_reply) {
            v.what = "reply";
            v.out = bytes_of(out.reply[0]);
        } else if (out.n_forward) {
            v.what = bytes_of(out.forward[0]) == f ? "forward" : "forward (changed)";
        } else {
            v.what = "drop";
        }
        EXPECT_LE(out.n_reply + out.n_forward, 1) << "one frame in, at most one out without SMTP tracking";
        rte_pktmbuf_free_bulk(out.forward, out.n_forward);
        rte_pktmbuf_free_bulk(out.reply, out.n_reply);
        v.counters = delta(flatten(wc), before);
        event_record ev[8];
        for (unsigned n = ring_->pop(ev, 8), i = 0; i < n; ++i) v.events.push_back(event_text(ev[i]));
        return v;
    }

    // The XDP program's verdict on the same frame (BPF_PROG_TEST_RUN).
    static verdict run_xdp(xdp_backend& b, const bytes& f) {
        worker_counters before_w, after_w;
        copy_xdp_counters(sum(b.read_counters()), before_w);
        std::vector<uint8_t> out(4096);
        bpf_test_run_opts o{};
        o.sz = sizeof o;
        o.data_in = f.data();
        o.data_size_in = static_cast<__u32>(f.size());
        o.data_out = out.data();
        o.data_size_out = static_cast<__u32>(out.size());
        o.repeat = 1;
        verdict v;
        if (bpf_prog_test_run_opts(b.program_fd(), &o) != 0) {
            v.what = std::string("BPF_PROG_TEST_RUN failed: ") + std::strerror(errno);
            return v;
        }
        v.what = o.retval < 5 ? xdp_action_names[o.retval] : "XDP_" + std::to_string(o.retval);
        out.resize(o.data_size_out);
        if (o.retval == xdp_tx) v.out = out;
        else if (o.retval == xdp_pass && out != f) v.what += " (changed)";
        copy_xdp_counters(sum(b.read_counters()), after_w);
        v.counters = delta(flatten(after_w), flatten(before_w));
        b.drain_events([&](const event_record& e) { v.events.push_back(event_text(e)); });
        return v;
    }

    static bool same(const verdict& dpdk, const verdict& xdp) {
        const bool action = (dpdk.what == "forward" && xdp.what == "XDP_PASS") ||
                            (dpdk.what == "drop" && xdp.what == "XDP_DROP") ||
                            (dpdk.what == "reply" && xdp.what == "XDP_TX" && dpdk.out == xdp.out);
        return action && dpdk.counters == xdp.counters && dpdk.events == xdp.events;
    }

    static rte_mempool* pool_;
    static event_ring* ring_;
};
rte_mempool* xdp_differential::pool_ = nullptr;
event_ring* xdp_differential::ring_ = nullptr;

// The loopback interface: BPF_PROG_TEST_RUN frames arrive on it.
uint32_t lo_ifindex() { return if_nametoindex("lo"); }

TEST_F(xdp_differential, every_frame_same_verdict_as_dpdk) {
    ASSERT_NE(pool_, nullptr);
    const auto frames = corpus();
    ASSERT_GT(frames.size(), 300u) << "the corpus lost frames";
    xdp_backend backend;
    size_t compared = 0, too_short = 0, differences = 0;
    size_t by_verdict[4] = {};   // pass, drop, tx, other
    for (const char* file : {"op25b-enforce.yaml", "op25b-drop.yaml", "op25b-monitor.yaml"}) {
        const std::string path = std::string(SEKISHO_SOURCE_ROOT) + "/configs/" + file;
        const policy pol = load_policy_text(read_file(path), path);
        const uint64_t gen = backend.apply(pol);
        const auto compiled = compile_policy(pol, gen);
        for (const ingress in : {ingress::access, ingress::core}) {
            backend.set_interface_role(lo_ifindex(), in);
            worker_counters wc;
            pipeline pipe(0, pool_, wc, ring_, packet_clock::live(), nullptr);
            for (const named_frame& nf : frames) {
                if (nf.frame.size() < 14) {
                    // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet
                    // header (EINVAL), as no NIC delivers them; the DPDK parser
                    // calls them truncated_ethernet.
                    ++too_short;
                    continue;
                }
                const verdict d = run_dpdk(pipe, wc, *compiled, in, nf.frame);
                const verdict x = run_xdp(backend, nf.frame);
                ++compared;
                by_verdict[x.what == "XDP_PASS" ? 0 : x.what == "XDP_DROP" ? 1 : x.what == "XDP_TX" ? 2 : 3]++;
                if (!same(d, x)) {
                    ++differences;
                    ADD_FAILURE() << file << ", " << to_string(in) << " ingress, frame " << nf.name << " ("
                                  << nf.frame.size() << " bytes):\n    " << hex(nf.frame) << "\n  DPDK: " << describe(d)
                                  << "\n  XDP:  " << describe(x);
                }
            }
        }
    }
    std::printf("compared %zu frame verdicts (%zu pass, %zu drop, %zu tx, %zu other); %zu differences; "
                "%zu runs of frames shorter than 14 bytes not runnable by BPF_PROG_TEST_RUN\n",
                compared, by_verdict[0], by_verdict[1], by_verdict[2], by_verdict[3], differences, too_short);
    EXPECT_GT(by_verdict[0], 0u);
    EXPECT_GT(by_verdict[1], 0u);
    EXPECT_GT(by_verdict[2], 0u);
    EXPECT_EQ(too_short, 3u * 2u * 1u) << "only the 13-byte truncated_ethernet frame should be unrunnable";
}

// The generation switch: the next policy's verdicts the moment apply()
// returns, the previous set's LPM entries gone one apply later, and a policy
// the program cannot hold leaves the running generation in place.
TEST(xdp_backend, generation_switch) {
    xdp_backend b;
    b.set_interface_role(lo_ifindex(), ingress::access);
    const bytes syn25 = frame_builder().ipv4(test::dyn4, test::mx4).tcp(40000, 25).flags(test::tcp_flags_syn).build();
    auto action = [&](const bytes& f) {
        bpf_test_run_opts o{};
        o.sz = sizeof o;
        o.data_in = f.data();
        o.data_size_in = static_cast<__u32>(f.size());
        o.repeat = 1;
        EXPECT_EQ(bpf_prog_test_run_opts(b.program_fd(), &o), 0);
        return o.retval;
    };
    const policy drop = load_policy_text(test::lab_policy("enforce", "drop"), "drop.yaml");
    const policy monitor = load_policy_text(test::lab_policy("monitor", "drop"), "monitor.yaml");
    EXPECT_EQ(b.apply(drop), 1u);
    EXPECT_EQ(action(syn25), xdp_drop);
    EXPECT_EQ(b.apply(monitor), 2u);
    EXPECT_EQ(action(syn25), xdp_pass);
    policy no_dynamic = drop;
    no_dynamic.dynamic_ranges.clear();
    EXPECT_EQ(b.apply(no_dynamic), 3u);
    EXPECT_EQ(action(syn25), xdp_pass) << "generation 1's dynamic /24 (same set as 3) must be gone";
    EXPECT_EQ(b.apply(drop), 4u);
    EXPECT_EQ(action(syn25), xdp_drop);

    policy too_many = drop;
    for (int i = 0; i < SX_MAX_CONN_LIMITS + 1; ++i) {
        limit_rule r;
        r.name = "c" + std::to_string(i);
        r.measure = limit_measure::connections;
        r.max = 10;
        r.window_ns = 1'000'000'000;
        r.burst = 10;
        r.action = limit_action::drop_syn;
        r.line = 40 + i;
        too_many.limits.push_back(r);
    }
    try {
        b.apply(too_many);
        ADD_FAILURE() << "9 connection limits accepted";
    } catch (const policy_error& e) {
        ASSERT_EQ(e.errors().size(), 1u);
        EXPECT_EQ(e.errors()[0], "drop.yaml:48: limit 'c8': more than 8 connection limits; the XDP program holds 8");
    }
    EXPECT_EQ(b.generation(), 4u);
    EXPECT_EQ(action(syn25), xdp_drop);
}

// The SYN token bucket: a burst of SYNs from one subscriber at one instant
// gets exactly what gcra_take() (the DPDK limit cell) grants for the same
// limit, the rest get the limit's action; another subscriber of the same
// IPv6 /56 shares the bucket under scope prefix and not under scope address;
// non-SYN segments and non-mail ports are not counted.
TEST(xdp_backend, syn_rate_limit_matches_gcra) {
    const std::string text = test::lab_policy("enforce", "reset") + R"(limits:
  - name: conn-rate
    applies_to: dynamic
    scope: prefix
    measure: connections
    max: 2
    window: 10s
    burst: 4
    action: reset
  - name: conn-addr
    applies_to: static
    scope: address
    measure: connections
    max: 1
    window: 10s
    burst: 2
    action: drop-syn
)";
    const policy pol = load_policy_text(text, "limits.yaml");
    xdp_backend b;
    std::vector<std::string> skipped;
    b.apply(pol, &skipped);
    EXPECT_TRUE(skipped.empty());
    b.set_interface_role(lo_ifindex(), ingress::access);
    auto run = [&](const bytes& f, bytes* out_frame = nullptr) {
        std::vector<uint8_t> out(4096);
        bpf_test_run_opts o{};
        o.sz = sizeof o;
        o.data_in = f.data();
        o.data_size_in = static_cast<__u32>(f.size());
        o.data_out = out.data();
        o.data_size_out = static_cast<__u32>(out.size());
        o.repeat = 1;
        EXPECT_EQ(bpf_prog_test_run_opts(b.program_fd(), &o), 0);
        out.resize(o.data_size_out);
        if (out_frame) *out_frame = out;
        return o.retval;
    };
    // The reference: the DPDK limit cell with the compiled parameters, all
    // SYNs at one instant (the burst below takes microseconds of a 5 s interval).
    const compiled_limit l = compile_limit(pol.limits[0], pol);
    limit_cell cell;
    unsigned expected = 0;
    for (int i = 0; i < 10; ++i) expected += gcra_take(cell, 1'000'000'000'000ull, l.gcra_interval_ns, l.gcra_tolerance_ns);
    EXPECT_EQ(expected, 4u);

    unsigned passed = 0, reset = 0;
    for (int i = 0; i < 10; ++i) {
        const bytes syn = frame_builder().ipv6("2001:db8:100:1::7", test::mx6).tcp(uint16_t(41000 + i), 587)
                              .flags(test::tcp_flags_syn).seq(7000).build();
        bytes out;
        const uint32_t a = run(syn, &out);
        if (a == xdp_pass) ++passed;
        if (a == xdp_tx) {
            ++reset;
            parsed_packet p, q;
            parse_frame(syn.data(), static_cast<uint32_t>(syn.size()), q);
            ASSERT_EQ(parse_frame(out.data(), static_cast<uint32_t>(out.size()), p), frame_kind::ip_tcp);
            EXPECT_EQ(p.tcp_flags, test::tcp_flags_rst | test::tcp_flags_ack);
            EXPECT_EQ(p.tcp_ack, 7001u);
            EXPECT_EQ(p.dst_port, q.src_port);
            EXPECT_EQ(0, std::memcmp(p.dst6(), q.src6(), 16));
        }
    }
    EXPECT_EQ(passed, expected);
    EXPECT_EQ(reset, 10 - expected);
    // Same /56, another address: the same subscriber, already over its rate.
    const bytes neighbour = frame_builder().ipv6("2001:db8:100:1:ffff::9", test::mx6).tcp(42000, 587)
                                .flags(test::tcp_flags_syn).build();
    EXPECT_EQ(run(neighbour), xdp_tx);
    // The next /56: a fresh bucket.
    const bytes other = frame_builder().ipv6("2001:db8:100:100::9", test::mx6).tcp(42001, 587)
                            .flags(test::tcp_flags_syn).build();
    EXPECT_EQ(run(other), xdp_pass);
    // Not counted: an ACK to 587, a SYN to 443.
    const bytes ack587 = frame_builder().ipv6("2001:db8:100:1::7", test::mx6).tcp(41000, 587)
                             .flags(test::tcp_flags_ack).build();
    const bytes syn443 = frame_builder().ipv6("2001:db8:100:1::7", test::mx6).tcp(41000, 443)
                             .flags(test::tcp_flags_syn).build();
    EXPECT_EQ(run(ack587), xdp_pass);
    EXPECT_EQ(run(syn443), xdp_pass);

    // A static customer (scope address, burst 2, drop-syn): two pass, then dropped.
    const bytes s1 = frame_builder().ipv4(test::static4, test::mx4).tcp(43000, 587).flags(test::tcp_flags_syn).build();
    EXPECT_EQ(run(s1), xdp_pass);
    EXPECT_EQ(run(s1), xdp_pass);
    EXPECT_EQ(run(s1), xdp_drop);

    const sx_counters c = sum(b.read_counters());
    EXPECT_EQ(c.limit_hits[0], 10 - expected + 1);
    EXPECT_EQ(c.limit_hits[1], 1u);
    EXPECT_EQ(c.limit_resets_sent, 10 - expected + 1);
    EXPECT_EQ(c.syns_dropped, 1u);
    size_t limit_events = 0;
    b.drain_events([&](const event_record& e) { limit_events += e.type == event_type::limit_exceeded; });
    EXPECT_EQ(limit_events, 10 - expected + 2);
}

}  // namespace
}  // namespace sekisho
