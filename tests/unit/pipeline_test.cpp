// The worker pipeline on real mbufs: what is forwarded (unchanged, in order),
// what is freed, which RSTs are injected, the counters and the events.
// Runs under eal_test_main.cpp.
#include "dataplane/pipeline.h"

#include <gtest/gtest.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "../support/frame_builder.h"
#include "../support/lab_policy.h"
#include "dataplane/event_ring.h"
#include "dataplane/net/packet_parser.h"
#include "control/policy/policy.h"
#include "control/policy/policy_compiler.h"
#include "dataplane/worker_counters.h"

namespace sekisho {
namespace {

using test::bytes;
using test::frame_builder;
namespace t = test;

using test::next_generation;
std::string unique_name(const char* base) {
    static unsigned n = 0;
    return std::string(base) + std::to_string(++n);
}

using test::dyn4;
using test::dyn6;
using test::mx4;
using test::mx6;
using test::relay4;
using test::static4;
constexpr uint8_t syn = t::tcp_flags_syn, ack = t::tcp_flags_ack, rst = t::tcp_flags_rst;

std::unique_ptr<compiled_policy> compile(const char* mode, const char* action) {
    return compile_policy(load_policy_text(test::lab_policy(mode, action), "pipeline.yaml"), next_generation());
}

uint64_t wall_ns() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// The frames of the mixed burst, and what the gateway must do with each.
struct frame_case {
    const char* name;
    bytes frame;
    bool forwarded;     // enforce mode, from access
    bool gets_reset;    // enforce + action reset
};

std::vector<frame_case> mixed_burst() {
    return {
        {"dyn4 SYN to MX:25", frame_builder().ipv4(dyn4, mx4).tcp(40001, 25).flags(syn).seq(100).build(), false, true},
        {"dyn4 SYN to relay:25", frame_builder().ipv4(dyn4, relay4).tcp(40002, 25).flags(syn).build(), true, false},
        {"static4 SYN to MX:25", frame_builder().ipv4(static4, mx4).tcp(40003, 25).flags(syn).build(), true, false},
        {"dyn6 ACK+data to MX:25",
         frame_builder().ipv6(dyn6, mx6).tcp(40004, 25).flags(ack).seq(5).ack(777).payload(30).build(), false, true},
        {"ARP", frame_builder().ethertype(0x0806).payload(28, 0).pad_to(60).build(), true, false},
        {"malformed IPv4 from dyn4", frame_builder().ipv4(dyn4, mx4).tcp(40005, 25).flags(syn).ipv4_ihl(3).build(),
         false, false},
        {"dyn4 SYN to 587", frame_builder().ipv4(dyn4, mx4).tcp(40006, 587).flags(syn).build(), true, false},
        {"dyn4 tiny first fragment",
         frame_builder().ipv4(dyn4, mx4).tcp(40007, 25).flags(syn).payload(60).ipv4_fragment(0, true).fragment_bytes(8).build(),
         false, false},
        {"VLAN+PPPoE dyn4 SYN to MX:25",
         frame_builder().vlan(300).pppoe(0x77).ipv4(dyn4, mx4).tcp(40008, 25).flags(syn).seq(9).build(), false, true},
        {"dyn4 later fragment",
         frame_builder().ipv4(dyn4, mx4).ip_protocol(6).payload(40).ipv4_fragment(4, false).build(), true, false},
        {"dyn4 RST to MX:25", frame_builder().ipv4(dyn4, mx4).tcp(40009, 25).flags(rst).seq(3).build(), false, false},
        {"dyn4 UDP to 25", frame_builder().ipv4(dyn4, mx4).udp(40010, 25).payload(10).build(), true, false},
    };
}

class pipeline_test : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        pool_ = rte_pktmbuf_pool_create("sk_test_pool", 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
        ASSERT_NE(pool_, nullptr);
    }
    static void TearDownTestSuite() {
        rte_mempool_free(pool_);
        pool_ = nullptr;
    }
    void SetUp() override {
        ASSERT_NE(pool_, nullptr);
        pool_avail_ = rte_mempool_avail_count(pool_);
        ring_ = std::make_unique<event_ring>(unique_name("sk_test_ev").c_str(), 64);
    }
    void TearDown() override {
        EXPECT_EQ(rte_mempool_avail_count(pool_), pool_avail_) << "an mbuf leaked";
    }

    static rte_mbuf* mbuf_from(const bytes& f) {
        rte_mbuf* m = rte_pktmbuf_alloc(pool_);
        EXPECT_NE(m, nullptr);
        char* d = rte_pktmbuf_append(m, static_cast<uint16_t>(f.size()));
        EXPECT_NE(d, nullptr);
        std::memcpy(d, f.data(), f.size());
        return m;
    }
    static bytes bytes_of(const rte_mbuf* m) {
        const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
        return bytes(d, d + m->data_len);
    }
    static void free_output(burst_output& out) {
        rte_pktmbuf_free_bulk(out.forward, out.n_forward);
        rte_pktmbuf_free_bulk(out.reply, out.n_reply);
        out.n_forward = out.n_reply = 0;
    }
    std::vector<event_record> pop_events() {
        std::vector<event_record> ev(64);
        ev.resize(ring_->pop(ev.data(), 64));
        return ev;
    }

    // Runs `frames` as one burst; returns the mbufs given to the pipeline.
    std::vector<rte_mbuf*> run(pipeline& pipe, const compiled_policy& pol, ingress in,
                               const std::vector<bytes>& frames, burst_output& out) {
        std::vector<rte_mbuf*> mbufs;
        for (const auto& f : frames) mbufs.push_back(mbuf_from(f));
        pipe.process(pol, in, mbufs.data(), static_cast<uint16_t>(mbufs.size()), out);
        return mbufs;
    }

    static rte_mempool* pool_;
    unsigned pool_avail_ = 0;
    worker_counters counters_;
    std::unique_ptr<event_ring> ring_;
};
rte_mempool* pipeline_test::pool_ = nullptr;

std::vector<bytes> frames_of(const std::vector<frame_case>& cases) {
    std::vector<bytes> v;
    for (const auto& c : cases) v.push_back(c.frame);
    return v;
}

TEST_F(pipeline_test, enforce_reset_mixed_burst) {
    auto pol = compile("enforce", "reset");
    pipeline pipe(3, pool_, counters_, ring_.get(), packet_clock::live());
    const auto cases = mixed_burst();
    const auto frames = frames_of(cases);
    burst_output out;
    const uint64_t t0 = wall_ns();
    const auto in = run(pipe, *pol, ingress::access, frames, out);
    const uint64_t t1 = wall_ns();

    // Forwarded: exactly the passing mbufs, in order, byte for byte.
    std::vector<size_t> fwd_idx, rst_idx;
    for (size_t i = 0; i < cases.size(); ++i) {
        if (cases[i].forwarded) fwd_idx.push_back(i);
        if (cases[i].gets_reset) rst_idx.push_back(i);
    }
    ASSERT_EQ(out.n_forward, fwd_idx.size());
    for (size_t k = 0; k < fwd_idx.size(); ++k) {
        SCOPED_TRACE(cases[fwd_idx[k]].name);
        EXPECT_EQ(out.forward[k], in[fwd_idx[k]]) << "same mbuf, same order";
        EXPECT_EQ(bytes_of(out.forward[k]), frames[fwd_idx[k]]) << "bump in the wire: unchanged";
    }

    // Blocked and malformed mbufs went back to the pool; only RSTs are new.
    const unsigned held = out.n_forward + out.n_reply;
    EXPECT_EQ(rte_mempool_avail_count(pool_), pool_avail_ - held);

    // One RST per blocked complete TCP segment (not for the fragment, not for the RST).
    ASSERT_EQ(out.n_reply, rst_idx.size());
    for (size_t k = 0; k < rst_idx.size(); ++k) {
        SCOPED_TRACE(cases[rst_idx[k]].name);
        const bytes r = bytes_of(out.reply[k]);
        EXPECT_EQ(out.reply[k]->pkt_len, r.size());
        parsed_packet req, p;
        parse_frame(frames[rst_idx[k]].data(), static_cast<uint32_t>(frames[rst_idx[k]].size()), req);
        ASSERT_EQ(parse_frame(r.data(), static_cast<uint32_t>(r.size()), p), frame_kind::ip_tcp);
        EXPECT_TRUE(p.tcp_flags & tcp_flag::rst);
        EXPECT_EQ(p.src_port, req.dst_port);
        EXPECT_EQ(p.dst_port, req.src_port);
        EXPECT_EQ(p.ip_version, req.ip_version);
        EXPECT_EQ(p.vlan_tags, req.vlan_tags);
        EXPECT_EQ(p.pppoe, req.pppoe);
        if (p.ip_version == 4) {
            EXPECT_EQ(p.dst4, req.src4);
            EXPECT_EQ(p.src4, req.dst4);
        } else {
            EXPECT_EQ(0, std::memcmp(p.dst6(), req.src6(), 16));
        }
    }

    // Counters.
    const port_counters& a = counters_.port[static_cast<unsigned>(ingress::access)];
    const port_counters& c = counters_.port[static_cast<unsigned>(ingress::core)];
    uint64_t rx_bytes = 0;
    for (const auto& f : frames) rx_bytes += f.size();
    EXPECT_EQ(a.rx_packets.load(), cases.size());
    EXPECT_EQ(a.rx_bytes.load(), rx_bytes);
    EXPECT_EQ(a.forwarded.load(), fwd_idx.size());
    EXPECT_EQ(a.blocked.load(), 5u);
    EXPECT_EQ(a.monitored.load(), 0u);
    EXPECT_EQ(a.malformed.load(), 1u);
    EXPECT_EQ(a.malformed_dropped.load(), 1u);
    EXPECT_EQ(a.resets_sent.load(), 3u);
    EXPECT_EQ(a.reset_failures.load(), 0u);
    EXPECT_EQ(a.non_ip.load(), 1u);
    EXPECT_EQ(a.fragments.load(), 2u);
    EXPECT_EQ(c.rx_packets.load(), 0u);
    EXPECT_EQ(c.resets_sent.load(), 0u);
    EXPECT_EQ(counters_.blocked_by_reason[static_cast<unsigned>(block_reason::op25b_port)].load(), 4u);
    EXPECT_EQ(counters_.blocked_by_reason[static_cast<unsigned>(block_reason::op25b_incomplete_fragment)].load(), 1u);
    EXPECT_EQ(counters_.monitored_by_reason[0].load() + counters_.monitored_by_reason[1].load(), 0u);
    EXPECT_EQ((*counters_.blocked_by_dst_port)[25].load(), 5u) << "the tiny fragment still shows port 25";
    EXPECT_EQ((*counters_.blocked_by_dst_port)[587].load(), 0u);
    for (size_t e = 0; e < parse_error_count; ++e)
        EXPECT_EQ(counters_.malformed_by_reason[e].load(), e == static_cast<size_t>(parse_error::bad_ipv4_header) ? 1u : 0u)
            << to_string(static_cast<parse_error>(e));
    EXPECT_EQ(counters_.events_emitted.load(), 5u);
    EXPECT_EQ(counters_.events_ring_full.load(), 0u);

    // Events, in packet order.
    const auto ev = pop_events();
    ASSERT_EQ(ev.size(), 5u);
    const struct {
        uint16_t sport;
        block_reason reason;
        uint8_t ip_version, flags;
    } want[] = {{40001, block_reason::op25b_port, 4, syn},
                {40004, block_reason::op25b_port, 6, ack},
                {40007, block_reason::op25b_incomplete_fragment, 4, 0},
                {40008, block_reason::op25b_port, 4, syn},
                {40009, block_reason::op25b_port, 4, rst}};
    for (size_t k = 0; k < ev.size(); ++k) {
        SCOPED_TRACE(k);
        const event_record& e = ev[k];
        EXPECT_EQ(e.type, event_type::op25b_block);
        EXPECT_EQ(e.generation, pol->generation());
        EXPECT_EQ(e.reason, static_cast<uint8_t>(want[k].reason));
        EXPECT_EQ(e.ip_version, want[k].ip_version);
        EXPECT_EQ(e.ingress, static_cast<uint8_t>(ingress::access));
        EXPECT_EQ(e.action, static_cast<uint8_t>(op25b_action::reset));
        EXPECT_EQ(e.worker, 3);
        EXPECT_EQ(e.tcp_flags, want[k].flags);
        EXPECT_EQ(e.src_port, want[k].sport);
        EXPECT_EQ(e.dst_port, 25);
        EXPECT_GE(e.time_ns + 1000000, t0) << "live clock: wall time";
        EXPECT_LE(e.time_ns, t1 + 1000000);
        if (e.ip_version == 4) {
            EXPECT_EQ(0, std::memcmp(e.src, t::ip4(dyn4).data(), 4));
            EXPECT_EQ(0, std::memcmp(e.dst, t::ip4(mx4).data(), 4));
        } else {
            EXPECT_EQ(0, std::memcmp(e.src, t::ip6(dyn6).data(), 16));
            EXPECT_EQ(0, std::memcmp(e.dst, t::ip6(mx6).data(), 16));
        }
    }
    free_output(out);
}

TEST_F(pipeline_test, enforce_drop_sends_no_reset) {
    auto pol = compile("enforce", "drop");
    pipeline pipe(0, pool_, counters_, ring_.get(), packet_clock::live());
    const auto cases = mixed_burst();
    burst_output out;
    run(pipe, *pol, ingress::access, frames_of(cases), out);
    size_t forwarded = 0;
    for (const auto& c : cases) forwarded += c.forwarded;
    EXPECT_EQ(out.n_forward, forwarded);
    EXPECT_EQ(out.n_reply, 0);
    const port_counters& a = counters_.port[0];
    EXPECT_EQ(a.blocked.load(), 5u);
    EXPECT_EQ(a.resets_sent.load(), 0u);
    EXPECT_EQ(a.malformed_dropped.load(), 1u);
    EXPECT_EQ(rte_mempool_avail_count(pool_), pool_avail_ - out.n_forward);
    const auto ev = pop_events();
    ASSERT_EQ(ev.size(), 5u);
    for (const auto& e : ev) EXPECT_EQ(e.action, static_cast<uint8_t>(op25b_action::drop));
    free_output(out);
}

TEST_F(pipeline_test, monitor_forwards_and_counts) {
    auto pol = compile("monitor", "reset");
    pipeline pipe(1, pool_, counters_, ring_.get(), packet_clock::live());
    // Everything OP25B would block, plus traffic it passes anyway.
    std::vector<frame_case> cases;
    for (auto& c : mixed_burst())
        if (std::string(c.name).find("malformed") == std::string::npos) cases.push_back(std::move(c));
    const auto frames = frames_of(cases);
    burst_output out;
    const auto in = run(pipe, *pol, ingress::access, frames, out);
    ASSERT_EQ(out.n_forward, cases.size()) << "monitor forwards every well-formed frame";
    for (size_t i = 0; i < cases.size(); ++i) {
        EXPECT_EQ(out.forward[i], in[i]);
        EXPECT_EQ(bytes_of(out.forward[i]), frames[i]);
    }
    EXPECT_EQ(out.n_reply, 0) << "no RST in monitor mode";
    const port_counters& a = counters_.port[0];
    EXPECT_EQ(a.rx_packets.load(), cases.size());
    EXPECT_EQ(a.forwarded.load(), cases.size());
    EXPECT_EQ(a.blocked.load(), 0u);
    EXPECT_EQ(a.monitored.load(), 5u);
    EXPECT_EQ(a.resets_sent.load(), 0u);
    EXPECT_EQ(counters_.monitored_by_reason[static_cast<unsigned>(block_reason::op25b_port)].load(), 4u);
    EXPECT_EQ(counters_.monitored_by_reason[static_cast<unsigned>(block_reason::op25b_incomplete_fragment)].load(), 1u);
    EXPECT_EQ(counters_.blocked_by_reason[0].load() + counters_.blocked_by_reason[1].load(), 0u);
    EXPECT_EQ((*counters_.blocked_by_dst_port)[25].load(), 5u) << "would-blocks by port";
    const auto ev = pop_events();
    ASSERT_EQ(ev.size(), 5u);
    for (const auto& e : ev) {
        EXPECT_EQ(e.type, event_type::op25b_monitor);
        EXPECT_EQ(e.generation, pol->generation());
        EXPECT_EQ(e.worker, 1);
    }
    EXPECT_EQ(ev[0].src_port, 40001);
    free_output(out);
}

// Monitor mode changes only the OP25B verdict: a malformed frame from the
// access side is still not forwarded (current behaviour, see report).
// Monitor mode changes no traffic at all: malformed frames are counted, not dropped.
TEST_F(pipeline_test, monitor_forwards_malformed_from_access) {
    auto pol = compile("monitor", "reset");
    pipeline pipe(0, pool_, counters_, ring_.get(), packet_clock::live());
    burst_output out;
    run(pipe, *pol, ingress::access,
        {frame_builder().ipv4(dyn4, mx4).tcp(1, 25).ipv4_total_length(500).build()}, out);
    EXPECT_EQ(out.n_forward, 1);
    EXPECT_EQ(counters_.port[0].malformed.load(), 1u);
    EXPECT_EQ(counters_.port[0].malformed_dropped.load(), 0u);
    EXPECT_EQ(counters_.malformed_by_reason[static_cast<unsigned>(parse_error::bad_ipv4_length)].load(), 1u);
    EXPECT_TRUE(pop_events().empty());
    free_output(out);
}

TEST_F(pipeline_test, core_side_forwards_everything) {
    auto pol = compile("enforce", "reset");
    pipeline pipe(0, pool_, counters_, ring_.get(), packet_clock::live());
    const auto cases = mixed_burst();
    const auto frames = frames_of(cases);
    burst_output out;
    const auto in = run(pipe, *pol, ingress::core, frames, out);
    ASSERT_EQ(out.n_forward, cases.size());
    for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(out.forward[i], in[i]);
    EXPECT_EQ(out.n_reply, 0);
    const port_counters& c = counters_.port[static_cast<unsigned>(ingress::core)];
    EXPECT_EQ(c.rx_packets.load(), cases.size());
    EXPECT_EQ(c.forwarded.load(), cases.size());
    EXPECT_EQ(c.blocked.load(), 0u);
    EXPECT_EQ(c.malformed.load(), 1u) << "counted";
    EXPECT_EQ(c.malformed_dropped.load(), 0u) << "but not dropped";
    EXPECT_EQ(counters_.port[0].rx_packets.load(), 0u);
    EXPECT_TRUE(pop_events().empty());
    free_output(out);
}

TEST_F(pipeline_test, rst_to_port_25_is_blocked_without_reply) {
    auto pol = compile("enforce", "reset");
    pipeline pipe(0, pool_, counters_, ring_.get(), packet_clock::live());
    burst_output out;
    run(pipe, *pol, ingress::access,
        {frame_builder().ipv4(dyn4, mx4).tcp(40000, 25).flags(rst).seq(1).build(),
         frame_builder().ipv6(dyn6, mx6).tcp(40000, 25).flags(rst | ack).seq(1).ack(2).build()},
        out);
    EXPECT_EQ(out.n_forward, 0);
    EXPECT_EQ(out.n_reply, 0);
    EXPECT_EQ(counters_.port[0].blocked.load(), 2u);
    EXPECT_EQ(counters_.port[0].resets_sent.load(), 0u);
    EXPECT_EQ(counters_.port[0].reset_failures.load(), 0u);
    EXPECT_EQ(pop_events().size(), 2u);
    EXPECT_EQ(rte_mempool_avail_count(pool_), pool_avail_) << "the reply mbuf went back";
}

TEST_F(pipeline_test, reset_pool_exhausted_counts_failure) {
    auto pol = compile("enforce", "reset");
    rte_mempool* tiny = rte_pktmbuf_pool_create(unique_name("sk_test_tiny").c_str(), 4, 0, 0,
                                                RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    ASSERT_NE(tiny, nullptr);
    rte_mbuf* hog[4];
    ASSERT_EQ(rte_pktmbuf_alloc_bulk(tiny, hog, 4), 0);
    pipeline pipe(0, tiny, counters_, ring_.get(), packet_clock::live());
    burst_output out;
    run(pipe, *pol, ingress::access, {frame_builder().ipv4(dyn4, mx4).tcp(40000, 25).flags(syn).build()}, out);
    EXPECT_EQ(out.n_forward, 0);
    EXPECT_EQ(out.n_reply, 0);
    EXPECT_EQ(counters_.port[0].blocked.load(), 1u);
    EXPECT_EQ(counters_.port[0].reset_failures.load(), 1u);
    EXPECT_EQ(counters_.port[0].resets_sent.load(), 0u);
    rte_pktmbuf_free_bulk(hog, 4);
    rte_mempool_free(tiny);
    pop_events();
}

TEST_F(pipeline_test, full_event_ring_counts_and_still_blocks) {
    auto pol = compile("enforce", "drop");
    event_ring small(unique_name("sk_test_small").c_str(), 1);
    pipeline pipe(0, pool_, counters_, &small, packet_clock::live());
    burst_output out;
    run(pipe, *pol, ingress::access,
        {frame_builder().ipv4(dyn4, mx4).tcp(40001, 25).flags(syn).build(),
         frame_builder().ipv4(dyn4, mx4).tcp(40002, 25).flags(syn).build(),
         frame_builder().ipv4(dyn4, mx4).tcp(40003, 25).flags(syn).build()},
        out);
    EXPECT_EQ(out.n_forward, 0);
    EXPECT_EQ(counters_.port[0].blocked.load(), 3u);
    EXPECT_EQ(counters_.events_emitted.load() + counters_.events_ring_full.load(), 3u);
    EXPECT_GE(counters_.events_ring_full.load(), 1u);
    event_record e[4];
    EXPECT_EQ(small.pop(e, 4), counters_.events_emitted.load());
    EXPECT_EQ(e[0].src_port, 40001);
}

TEST_F(pipeline_test, no_event_ring) {
    auto pol = compile("enforce", "reset");
    pipeline pipe(0, pool_, counters_, nullptr, packet_clock::live());
    burst_output out;
    run(pipe, *pol, ingress::access, {frame_builder().ipv4(dyn4, mx4).tcp(40000, 25).flags(syn).build()}, out);
    EXPECT_EQ(out.n_reply, 1);
    EXPECT_EQ(counters_.port[0].blocked.load(), 1u);
    EXPECT_EQ(counters_.events_emitted.load() + counters_.events_ring_full.load(), 0u);
    free_output(out);
}

TEST_F(pipeline_test, full_burst_of_blocked_syns) {
    auto pol = compile("enforce", "reset");
    pipeline pipe(0, pool_, counters_, ring_.get(), packet_clock::live());
    std::vector<bytes> frames;
    for (uint16_t i = 0; i < burst_size; ++i)
        frames.push_back(frame_builder().pppoe(i).ipv4(dyn4, mx4).tcp(static_cast<uint16_t>(50000 + i), 25)
                             .flags(syn).seq(i).build());
    burst_output out;
    run(pipe, *pol, ingress::access, frames, out);
    EXPECT_EQ(out.n_forward, 0);
    ASSERT_EQ(out.n_reply, burst_size);
    for (uint16_t i = 0; i < burst_size; ++i) {
        parsed_packet p;
        const bytes r = bytes_of(out.reply[i]);
        ASSERT_EQ(parse_frame(r.data(), static_cast<uint32_t>(r.size()), p), frame_kind::ip_tcp);
        EXPECT_EQ(p.dst_port, 50000 + i);
        EXPECT_EQ(p.tcp_ack, i + 1u);
        EXPECT_EQ(r[14 + 2] << 8 | r[14 + 3], i) << "PPPoE session";
    }
    EXPECT_EQ(counters_.port[0].resets_sent.load(), burst_size);
    EXPECT_EQ(counters_.events_emitted.load(), burst_size);
    pop_events();
    free_output(out);
}

}  // namespace
}  // namespace sekisho
