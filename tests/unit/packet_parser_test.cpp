// packet_parser: every encapsulation and error, as a table; truncation and
// random-input robustness with a guard page right after the frame.
#include "dataplane/net/packet_parser.h"

#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "../support/frame_builder.h"
#include "../support/frame_corpus.h"
#include "../support/guarded_buffer.h"

namespace sekisho {
namespace {

using test::bytes;
using test::frame_builder;
namespace t = test;

using test::parser_corpus::parse_case;
using test::parser_corpus::cases;
using test::parser_corpus::v4;
using test::parser_corpus::v6;

class parse_table : public ::testing::TestWithParam<parse_case> {};

TEST_P(parse_table, matches) {
    const parse_case& c = GetParam();
    test::guarded_buffer buf;
    const uint8_t* f = buf.place(c.frame.data(), c.frame.size());
    parsed_packet p;
    const frame_kind k = parse_frame(f, static_cast<uint32_t>(c.frame.size()), p);
    EXPECT_EQ(k, p.kind);
    EXPECT_EQ(static_cast<int>(p.kind), static_cast<int>(c.kind));
    EXPECT_STREQ(to_string(p.error), to_string(c.error));
    EXPECT_EQ(p.frame, f);
#define SK_CHECK(field, member) \
    if (c.field) {                                                                           \
        EXPECT_EQ(static_cast<uint64_t>(p.member), static_cast<uint64_t>(*c.field)) << #field; \
    }
    SK_CHECK(ip_version, ip_version)
    SK_CHECK(l4_proto, l4_proto)
    SK_CHECK(vlan_tags, vlan_tags)
    SK_CHECK(flags, tcp_flags)
    SK_CHECK(pppoe, pppoe)
    SK_CHECK(fragment, fragment)
    SK_CHECK(l3_offset, l3_offset)
    SK_CHECK(l4_offset, l4_offset)
    SK_CHECK(pppoe_offset, pppoe_offset)
    SK_CHECK(tcp_header_len, tcp_header_len)
    SK_CHECK(l4_len, l4_len)
    SK_CHECK(sport, src_port)
    SK_CHECK(dport, dst_port)
    SK_CHECK(seq, tcp_seq)
    SK_CHECK(ack, tcp_ack)
#undef SK_CHECK
    if (c.src || c.dst) {
        ASSERT_TRUE(p.ip_version == 4 || p.ip_version == 6);
        if (p.ip_version == 4) {
            if (c.src) { EXPECT_EQ(p.src4, t::ip4_host(*c.src)); }
            if (c.dst) { EXPECT_EQ(p.dst4, t::ip4_host(*c.dst)); }
        } else {
            if (c.src) { EXPECT_EQ(0, std::memcmp(p.src6(), t::ip6(*c.src).data(), 16)); }
            if (c.dst) { EXPECT_EQ(0, std::memcmp(p.dst6(), t::ip6(*c.dst).data(), 16)); }
        }
    }
    if (p.kind == frame_kind::malformed) {
        EXPECT_NE(p.error, parse_error::none);
    }
    if (p.kind == frame_kind::ip_tcp) {
        EXPECT_LE(p.l4_offset + p.tcp_header_len, c.frame.size());
    }
    if (p.ip_version != 0 && p.kind != frame_kind::malformed) {
        EXPECT_LE(p.l3_offset + p.l3_len, c.frame.size());
    }
}

INSTANTIATE_TEST_SUITE_P(all, parse_table, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<parse_case>& i) { return i.param.name; });

TEST(packet_parser, every_error_has_a_name) {
    for (size_t e = 0; e < parse_error_count; ++e)
        EXPECT_STRNE(to_string(static_cast<parse_error>(e)), "unknown") << e;
}

// Every prefix of a valid frame: never a read past the end (guard page), and
// either malformed or, once the IP packet is whole, the same result as the full frame.
void check_every_truncation(const bytes& full, size_t ip_end) {
    test::guarded_buffer buf;
    parsed_packet whole;
    ASSERT_EQ(parse_frame(full.data(), static_cast<uint32_t>(full.size()), whole), frame_kind::ip_tcp);
    for (size_t n = 0; n <= full.size(); ++n) {
        SCOPED_TRACE("cut at " + std::to_string(n));
        const uint8_t* f = buf.place(full.data(), n);
        parsed_packet p;
        parse_frame(f, static_cast<uint32_t>(n), p);
        if (n < ip_end) {
            EXPECT_EQ(p.kind, frame_kind::malformed);
            EXPECT_NE(p.error, parse_error::none);
        } else {
            EXPECT_EQ(p.kind, frame_kind::ip_tcp);
            EXPECT_EQ(p.dst_port, whole.dst_port);
            EXPECT_EQ(p.l4_offset, whole.l4_offset);
            EXPECT_EQ(p.tcp_seq, whole.tcp_seq);
        }
    }
}

TEST(packet_parser, every_truncation_ipv4) {
    const bytes f = v4().tcp_options({2, 4, 5, 0xb4}).payload(3).build();
    check_every_truncation(f, f.size());
    const bytes padded = v4().pad_to(60).build();
    check_every_truncation(padded, 54);
}

TEST(packet_parser, every_truncation_ipv6_chain) {
    const bytes f = v6().hop_by_hop().routing().dest_options().tcp_options({1, 1, 1, 1}).payload(5).build();
    check_every_truncation(f, f.size());
}

TEST(packet_parser, every_truncation_encapsulated) {
    const bytes a = v4().vlan(1, 0x88a8).vlan(2).pppoe(7).build();
    check_every_truncation(a, a.size());
    const bytes b = v6().vlan(1).pppoe(7, true).fragment_header(0, false).build();
    check_every_truncation(b, b.size());
}

// Random input: no crash, no read past the end, a self-consistent result.
void check_consistent(const parsed_packet& p, size_t len) {
    if (p.kind == frame_kind::malformed) {
        ASSERT_NE(p.error, parse_error::none);
        return;
    }
    ASSERT_EQ(p.error, parse_error::none);
    if (p.kind == frame_kind::non_ip) return;
    ASSERT_TRUE(p.ip_version == 4 || p.ip_version == 6);
    ASSERT_LE(p.l3_offset + p.l3_len, len);
    if (p.kind == frame_kind::ip_tcp) {
        ASSERT_GE(p.tcp_header_len, 20);
        ASSERT_LE(p.l4_offset + p.tcp_header_len, len);
        ASSERT_LE(p.l4_offset + p.l4_len, p.l3_offset + p.l3_len);
    }
}

TEST(packet_parser, random_bytes_never_crash) {
    std::mt19937_64 rng(0x5e615e0);
    test::guarded_buffer buf;
    std::vector<uint8_t> data(512);
    // Plausible starts so the random tail reaches the deeper layers.
    const uint16_t types[] = {0x0800, 0x86dd, 0x8100, 0x88a8, 0x9100, 0x8864, 0x0806};
    size_t counts[6] = {};
    for (int i = 0; i < 100000; ++i) {
        const size_t len = rng() % data.size();
        for (auto& b : data) b = static_cast<uint8_t>(rng());
        if (len >= 14 && (i & 1)) {
            const uint16_t t = types[rng() % std::size(types)];
            data[12] = uint8_t(t >> 8);
            data[13] = uint8_t(t);
            if (t == 0x8864) { data[14] = 0x11; data[15] = 0; }
            if (t == 0x0800 && len > 14) data[14] = 0x40 | (data[14] & 0x0f);
            if (t == 0x86dd && len > 14) data[14] = 0x60 | (data[14] & 0x0f);
        }
        parsed_packet p;
        parse_frame(buf.place(data.data(), len), static_cast<uint32_t>(len), p);
        ASSERT_NO_FATAL_FAILURE(check_consistent(p, len)) << "iteration " << i;
        ++counts[static_cast<size_t>(p.kind)];
    }
    EXPECT_GT(counts[static_cast<size_t>(frame_kind::malformed)], 0u);
    EXPECT_GT(counts[static_cast<size_t>(frame_kind::non_ip)], 0u);
}

// Valid frames with random bytes flipped: reaches every layer's checks.
TEST(packet_parser, mutated_frames_never_crash) {
    std::mt19937_64 rng(25);
    test::guarded_buffer buf;
    const std::vector<bytes> seeds = {
        v4().vlan(1).pppoe(2).tcp_options({2, 4, 5, 0xb4}).build(),
        v6().hop_by_hop().fragment_header(0, true).dest_options().ah().payload(30).build(),
        v4().payload(40).ipv4_fragment(0, true).fragment_bytes(16).build(),
        v6().vlan(1, 0x9100).vlan(2).pppoe(3, true).routing().build(),
    };
    size_t tcp = 0;
    for (int i = 0; i < 100000; ++i) {
        bytes f = seeds[i % seeds.size()];
        const int flips = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < flips; ++k) f[rng() % f.size()] = static_cast<uint8_t>(rng());
        if (rng() % 4 == 0) f.resize(rng() % (f.size() + 1));
        parsed_packet p;
        parse_frame(buf.place(f.data(), f.size()), static_cast<uint32_t>(f.size()), p);
        ASSERT_NO_FATAL_FAILURE(check_consistent(p, f.size())) << "iteration " << i;
        tcp += p.kind == frame_kind::ip_tcp;
    }
    EXPECT_GT(tcp, 0u);
}

}  // namespace
}  // namespace sekisho
