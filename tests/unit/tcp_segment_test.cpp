// build_tcp_reset: sequence numbers (RFC 9293 sec. 3.10.7.1), encapsulation
// kept, addresses swapped, checksums recomputed here independently.
#include "dataplane/net/tcp_segment.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>

#include "../support/frame_builder.h"
#include "dataplane/net/packet_parser.h"

namespace sekisho {
namespace {

using test::bytes;
using test::frame_builder;
namespace t = test;

constexpr const char* sub4 = "198.51.100.7";
constexpr const char* mx4 = "203.0.113.25";
constexpr const char* sub6 = "2001:db8:100::7";
constexpr const char* mx6 = "2001:db8:25::25";
constexpr uint8_t syn = t::tcp_flags_syn, ack = t::tcp_flags_ack, fin = t::tcp_flags_fin,
                  rst = t::tcp_flags_rst, psh = t::tcp_flags_psh;

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

struct reset_result {
    bytes in, out;
    parsed_packet req, rst;  // rst parses `out`
    uint16_t len = 0;
};

// Builds the RST for `in` into a canary-filled buffer and checks nothing is
// written past the returned length nor past tcp_reset_max_len.
reset_result make_reset(const bytes& in) {
    reset_result r;
    r.in = in;
    parse_frame(r.in.data(), static_cast<uint32_t>(r.in.size()), r.req);
    std::array<uint8_t, tcp_reset_max_len + 64> buf;
    buf.fill(0xcc);
    r.len = build_tcp_reset(r.req, buf.data());
    EXPECT_LE(r.len, tcp_reset_max_len);
    for (size_t i = r.len; i < buf.size(); ++i)
        if (buf[i] != 0xcc) {
            ADD_FAILURE() << "byte " << i << " written beyond the reset (len " << r.len << ")";
            break;
        }
    r.out.assign(buf.begin(), buf.begin() + r.len);
    if (r.len) parse_frame(r.out.data(), r.len, r.rst);
    return r;
}

// Independent checksums (not wire.h): both must verify to zero.
void expect_checksums(const reset_result& r) {
    const parsed_packet& p = r.rst;
    ASSERT_EQ(p.kind, frame_kind::ip_tcp);
    const uint8_t* ip = r.out.data() + p.l3_offset;
    const uint8_t* tcp = r.out.data() + p.l4_offset;
    uint32_t pseudo = 0;
    if (p.ip_version == 4) {
        EXPECT_EQ(ip[0], 0x45);
        EXPECT_EQ(t::internet_checksum(ip, 20), 0) << "IPv4 header checksum";
        EXPECT_EQ(be16(ip + 2), 40);
        EXPECT_EQ(ip[9], 6);
        EXPECT_GT(ip[8], 0) << "TTL";
        for (int i = 12; i < 20; i += 2) pseudo += be16(ip + i);
    } else {
        EXPECT_EQ(ip[0] >> 4, 6);
        EXPECT_EQ(be16(ip + 4), 20);
        EXPECT_EQ(ip[6], 6);
        EXPECT_GT(ip[7], 0) << "hop limit";
        for (int i = 8; i < 40; i += 2) pseudo += be16(ip + i);
    }
    pseudo += 6 + 20;
    EXPECT_EQ(t::internet_checksum(tcp, 20, pseudo), 0) << "TCP checksum";
    EXPECT_EQ(p.tcp_header_len, 20);
    EXPECT_EQ(p.l4_len, 20) << "no payload";
}

// Swapped MACs, addresses and ports, L2 encapsulation kept.
void expect_mirrored(const reset_result& r) {
    const parsed_packet& q = r.req;
    const parsed_packet& p = r.rst;
    ASSERT_EQ(p.kind, frame_kind::ip_tcp);
    EXPECT_EQ(0, std::memcmp(r.out.data(), r.in.data() + 6, 6)) << "dst MAC = request src MAC";
    EXPECT_EQ(0, std::memcmp(r.out.data() + 6, r.in.data(), 6)) << "src MAC = request dst MAC";
    EXPECT_EQ(p.vlan_tags, q.vlan_tags);
    EXPECT_EQ(p.pppoe, q.pppoe);
    EXPECT_EQ(p.l3_offset, q.l3_offset);
    // Tags, EtherTypes and the PPPoE header kept as they came, except the
    // PPPoE length (checked by expect_pppoe).
    for (size_t i = 12; i < q.l3_offset; ++i) {
        if (q.pppoe && (i == q.pppoe_offset + 4u || i == q.pppoe_offset + 5u)) continue;
        EXPECT_EQ(r.out[i], r.in[i]) << "L2 byte " << i;
    }
    EXPECT_EQ(p.ip_version, q.ip_version);
    if (p.ip_version == 4) {
        EXPECT_EQ(p.src4, q.dst4);
        EXPECT_EQ(p.dst4, q.src4);
    } else {
        EXPECT_EQ(0, std::memcmp(p.src6(), q.dst6(), 16));
        EXPECT_EQ(0, std::memcmp(p.dst6(), q.src6(), 16));
    }
    EXPECT_EQ(p.src_port, q.dst_port);
    EXPECT_EQ(p.dst_port, q.src_port);
    EXPECT_FALSE(p.fragment);
    EXPECT_TRUE(p.tcp_flags & tcp_flag::rst);
}

frame_builder v4() { return frame_builder().ipv4(sub4, mx4).tcp(40000, 25); }
frame_builder v6() { return frame_builder().ipv6(sub6, mx6).tcp(40000, 25); }

TEST(tcp_reset, syn_ipv4) {
    const auto r = make_reset(v4().flags(syn).seq(0x12345678).build());
    ASSERT_EQ(r.len, 60) << "54 bytes padded to the Ethernet minimum";
    expect_mirrored(r);
    expect_checksums(r);
    EXPECT_EQ(r.rst.tcp_flags, rst | ack);
    EXPECT_EQ(r.rst.tcp_seq, 0u);
    EXPECT_EQ(r.rst.tcp_ack, 0x12345679u) << "ISN + 1";
    for (size_t i = 54; i < 60; ++i) EXPECT_EQ(r.out[i], 0) << "padding at " << i;
}

TEST(tcp_reset, syn_sequence_wraps) {
    const auto r = make_reset(v4().flags(syn).seq(0xffffffff).build());
    EXPECT_EQ(r.rst.tcp_ack, 0u);
}

TEST(tcp_reset, syn_with_options_and_data) {
    // TCP Fast Open style: SYN carrying 10 bytes; ack covers SYN + data.
    const auto r = make_reset(v4().flags(syn).seq(100).tcp_options({2, 4, 5, 0xb4, 4, 2}).payload(10).build());
    expect_checksums(r);
    EXPECT_EQ(r.rst.tcp_flags, rst | ack);
    EXPECT_EQ(r.rst.tcp_ack, 111u);
}

TEST(tcp_reset, ack_with_payload_ipv4) {
    const auto r = make_reset(v4().flags(ack | psh).seq(5000).ack(0xabcdef01).payload(100).build());
    ASSERT_EQ(r.len, 60);
    expect_mirrored(r);
    expect_checksums(r);
    EXPECT_EQ(r.rst.tcp_flags, rst) << "RST alone: the segment carried an ACK";
    EXPECT_EQ(r.rst.tcp_seq, 0xabcdef01u) << "seq = SEG.ACK";
    EXPECT_EQ(r.rst.tcp_ack, 0u);
}

TEST(tcp_reset, fin_ack) {
    const auto r = make_reset(v4().flags(fin | ack).seq(7).ack(99).build());
    expect_checksums(r);
    EXPECT_EQ(r.rst.tcp_flags, rst);
    EXPECT_EQ(r.rst.tcp_seq, 99u);
}

TEST(tcp_reset, fin_without_ack) {
    const auto r = make_reset(v4().flags(fin).seq(7).payload(3).build());
    expect_checksums(r);
    EXPECT_EQ(r.rst.tcp_flags, rst | ack);
    EXPECT_EQ(r.rst.tcp_seq, 0u);
    EXPECT_EQ(r.rst.tcp_ack, 7u + 3 + 1) << "payload + FIN";
}

TEST(tcp_reset, syn_ipv6) {
    const auto r = make_reset(v6().flags(syn).seq(41).build());
    ASSERT_EQ(r.len, 14 + 40 + 20);
    expect_mirrored(r);
    expect_checksums(r);
    EXPECT_EQ(r.rst.tcp_flags, rst | ack);
    EXPECT_EQ(r.rst.tcp_ack, 42u);
}

TEST(tcp_reset, ack_with_payload_ipv6) {
    const auto r = make_reset(v6().flags(ack).seq(1).ack(77).payload(500).build());
    expect_mirrored(r);
    expect_checksums(r);
    EXPECT_EQ(r.rst.tcp_flags, rst);
    EXPECT_EQ(r.rst.tcp_seq, 77u);
}

TEST(tcp_reset, ipv6_extension_headers_not_copied) {
    const auto r = make_reset(v6().hop_by_hop().dest_options(2).flags(syn).seq(9).payload(4).build());
    ASSERT_EQ(r.len, 14 + 40 + 20);
    expect_mirrored(r);
    expect_checksums(r);
    EXPECT_EQ(r.rst.l4_offset, 14 + 40);
    EXPECT_EQ(r.rst.tcp_ack, 9u + 4 + 1);
}

TEST(tcp_reset, ipv4_options_not_copied) {
    const auto r = make_reset(v4().ipv4_options({1, 1, 1, 0}).flags(syn).seq(9).build());
    expect_mirrored(r);
    expect_checksums(r);
    EXPECT_EQ(r.rst.l4_offset, 14 + 20);
}

TEST(tcp_reset, vlan) {
    const auto r = make_reset(v4().vlan(100, 0x8100, 5).flags(syn).build());
    ASSERT_EQ(r.len, 60) << "58 bytes padded";
    expect_mirrored(r);
    expect_checksums(r);
    EXPECT_EQ(be16(r.out.data() + 12), 0x8100);
    EXPECT_EQ(be16(r.out.data() + 14), 5 << 13 | 100);
}

TEST(tcp_reset, qinq_ipv4_and_ipv6) {
    for (uint16_t outer : {0x88a8, 0x8100, 0x9100}) {
        SCOPED_TRACE(outer);
        const auto a = make_reset(v4().vlan(100, outer).vlan(200).flags(syn).build());
        ASSERT_EQ(a.len, 22 + 40);
        expect_mirrored(a);
        expect_checksums(a);
        EXPECT_EQ(be16(a.out.data() + 12), outer);
        EXPECT_EQ(be16(a.out.data() + 16), 0x8100);
        const auto b = make_reset(v6().vlan(100, outer).vlan(200).flags(syn).build());
        ASSERT_EQ(b.len, 22 + 60);
        expect_mirrored(b);
        expect_checksums(b);
    }
}

void expect_pppoe(const reset_result& r, uint16_t session, uint16_t ppp_len) {
    const uint8_t* pp = r.out.data() + r.rst.pppoe_offset;
    EXPECT_EQ(be16(pp - 2), 0x8864);
    EXPECT_EQ(pp[0], 0x11);
    EXPECT_EQ(pp[1], 0x00);
    EXPECT_EQ(be16(pp + 2), session);
    EXPECT_EQ(be16(pp + 4), ppp_len) << "PPPoE length = PPP protocol + IP packet";
}

TEST(tcp_reset, pppoe_ipv4) {
    const auto r = make_reset(v4().pppoe(0x4242).flags(ack).ack(10).payload(200).build());
    ASSERT_EQ(r.len, 62);
    expect_mirrored(r);
    expect_checksums(r);
    expect_pppoe(r, 0x4242, 2 + 40);
}

TEST(tcp_reset, pppoe_ipv6_compressed_protocol) {
    const auto r = make_reset(v6().pppoe(0x4242, true).flags(syn).build());
    ASSERT_EQ(r.len, 14 + 7 + 60);
    expect_mirrored(r);
    expect_checksums(r);
    expect_pppoe(r, 0x4242, 1 + 60);
    EXPECT_EQ(r.out[14 + 6], 0x57);
}

TEST(tcp_reset, pppoe_in_qinq_ipv6_is_the_largest) {
    const auto r = make_reset(v6().vlan(1, 0x88a8).vlan(2).pppoe(3).flags(syn).payload(1000).build());
    ASSERT_EQ(r.len, tcp_reset_max_len);
    expect_mirrored(r);
    expect_checksums(r);
    expect_pppoe(r, 3, 2 + 60);
}

TEST(tcp_reset, padded_input_frame) {
    // A 60-byte SYN (6 bytes of Ethernet padding) must not count the padding
    // as segment data.
    const auto r = make_reset(v4().flags(syn).seq(1).pad_to(60).build());
    EXPECT_EQ(r.rst.tcp_ack, 2u);
    const auto q = make_reset(v4().pppoe(1).flags(syn).seq(1).pad_to(80).build());
    EXPECT_EQ(q.rst.tcp_ack, 2u);
    expect_pppoe(q, 1, 42);
}

TEST(tcp_reset, none_for_a_reset) {
    EXPECT_EQ(make_reset(v4().flags(rst).seq(5).build()).len, 0);
    EXPECT_EQ(make_reset(v4().flags(rst | ack).seq(5).ack(6).build()).len, 0);
    EXPECT_EQ(make_reset(v6().flags(rst).build()).len, 0);
}

TEST(tcp_reset, none_for_non_tcp) {
    EXPECT_EQ(make_reset(frame_builder().ipv4(sub4, mx4).udp(1000, 25).build()).len, 0);
    EXPECT_EQ(make_reset(frame_builder().ipv6(sub6, mx6).icmp(128).build()).len, 0);
    EXPECT_EQ(make_reset(frame_builder().ethertype(0x0806).payload(46, 0).build()).len, 0);
    EXPECT_EQ(make_reset(v4().flags(syn).tcp_data_offset(3).build()).len, 0) << "malformed";
    EXPECT_EQ(make_reset(v4().flags(syn).payload(50).ipv4_fragment(0, true).fragment_bytes(8).build()).len, 0)
        << "first fragment without a whole TCP header";
    EXPECT_EQ(make_reset(frame_builder().ipv4(sub4, mx4).ip_protocol(6).payload(40).ipv4_fragment(5, false).build()).len, 0)
        << "later fragment";
}

}  // namespace
}  // namespace sekisho
