// packet_parser: every encapsulation and error, as a table; truncation and
// random-input robustness with a guard page right after the frame.
#include "packet_parser.h"

#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "../support/frame_builder.h"
#include "../support/guarded_buffer.h"

namespace sekisho {
namespace {

using test::bytes;
using test::frame_builder;
namespace t = test;

constexpr const char* sub4 = "198.51.100.7";
constexpr const char* mx4 = "203.0.113.25";
constexpr const char* sub6 = "2001:db8:100::7";
constexpr const char* mx6 = "2001:db8:25::25";

// The reference segment: SYN 40000 -> 25, seq 1000, ack 2000.
frame_builder v4() { return frame_builder().ipv4(sub4, mx4).tcp(40000, 25).seq(1000).ack(2000).flags(t::tcp_flags_syn); }
frame_builder v6() { return frame_builder().ipv6(sub6, mx6).tcp(40000, 25).seq(1000).ack(2000).flags(t::tcp_flags_syn); }

struct parse_case {
    std::string name;
    bytes frame;
    frame_kind kind;
    parse_error error = parse_error::none;
    std::optional<uint8_t> ip_version, l4_proto, vlan_tags, flags;
    std::optional<bool> pppoe, fragment;
    std::optional<uint16_t> pppoe_offset, l3_offset, l4_offset, tcp_header_len, l4_len, sport, dport;
    std::optional<uint32_t> seq, ack;
    std::optional<std::string> src, dst;  // IPv4 or IPv6 per ip_version
};

std::ostream& operator<<(std::ostream& os, const parse_case& c) { return os << c.name; }

std::vector<parse_case> cases() {
    std::vector<parse_case> v;
    const uint8_t ack = t::tcp_flags_ack, syn = t::tcp_flags_syn;

    // --- Plain Ethernet -------------------------------------------------------
    v.push_back({.name = "eth_ipv4_tcp", .frame = v4().build(), .kind = frame_kind::ip_tcp,
                 .ip_version = 4, .l4_proto = 6, .vlan_tags = 0, .flags = syn, .pppoe = false, .fragment = false,
                 .l3_offset = 14, .l4_offset = 34, .tcp_header_len = 20, .l4_len = 20, .sport = 40000, .dport = 25,
                 .seq = 1000, .ack = 2000, .src = sub4, .dst = mx4});
    v.push_back({.name = "eth_ipv6_tcp", .frame = v6().build(), .kind = frame_kind::ip_tcp,
                 .ip_version = 6, .l4_proto = 6, .vlan_tags = 0, .flags = syn, .pppoe = false, .fragment = false,
                 .l3_offset = 14, .l4_offset = 54, .tcp_header_len = 20, .l4_len = 20, .sport = 40000, .dport = 25,
                 .seq = 1000, .ack = 2000, .src = sub6, .dst = mx6});
    v.push_back({.name = "ipv4_tcp_options_payload_ack",
                 .frame = v4().flags(ack | t::tcp_flags_psh).seq(0xfffffff0).ack(0x80000001)
                              .tcp_options({2, 4, 5, 0xb4, 1, 1, 4, 2}).payload(100).build(),
                 .kind = frame_kind::ip_tcp, .flags = ack | t::tcp_flags_psh, .l4_offset = 34, .tcp_header_len = 28,
                 .l4_len = 128, .seq = 0xfffffff0, .ack = 0x80000001});
    v.push_back({.name = "ipv4_padded_to_60", .frame = v4().pad_to(60).build(), .kind = frame_kind::ip_tcp,
                 .l4_len = 20});

    // --- VLAN ---------------------------------------------------------------
    v.push_back({.name = "vlan_8021q", .frame = v4().vlan(100).build(), .kind = frame_kind::ip_tcp,
                 .vlan_tags = 1, .l3_offset = 18, .l4_offset = 38, .dport = 25, .src = sub4});
    v.push_back({.name = "qinq_88a8_outer", .frame = v4().vlan(100, 0x88a8).vlan(200).build(),
                 .kind = frame_kind::ip_tcp, .vlan_tags = 2, .l3_offset = 22, .dport = 25});
    v.push_back({.name = "qinq_8100_outer", .frame = v6().vlan(100).vlan(200).build(),
                 .kind = frame_kind::ip_tcp, .ip_version = 6, .vlan_tags = 2, .l3_offset = 22, .l4_offset = 62,
                 .dport = 25, .src = sub6});
    v.push_back({.name = "qinq_9100_outer", .frame = v4().vlan(100, 0x9100).vlan(200).build(),
                 .kind = frame_kind::ip_tcp, .vlan_tags = 2, .l3_offset = 22});
    v.push_back({.name = "three_tags", .frame = v4().vlan(1, 0x88a8).vlan(2).vlan(3).build(),
                 .kind = frame_kind::malformed, .error = parse_error::vlan_too_deep});
    v.push_back({.name = "vlan_truncated", .frame = v4().vlan(100).truncate(16).build(),
                 .kind = frame_kind::malformed, .error = parse_error::truncated_vlan});
    v.push_back({.name = "ethernet_truncated", .frame = v4().truncate(13).build(),
                 .kind = frame_kind::malformed, .error = parse_error::truncated_ethernet});
    v.push_back({.name = "arp", .frame = frame_builder().ethertype(0x0806).payload(28, 0).pad_to(60).build(),
                 .kind = frame_kind::non_ip, .ip_version = 0});
    v.push_back({.name = "vlan_arp", .frame = frame_builder().vlan(7).ethertype(0x0806).payload(28, 0).build(),
                 .kind = frame_kind::non_ip, .vlan_tags = 1});

    // --- PPPoE session ------------------------------------------------------
    v.push_back({.name = "pppoe_ipv4", .frame = v4().pppoe(0x1234).build(), .kind = frame_kind::ip_tcp,
                 .ip_version = 4, .pppoe = true, .pppoe_offset = 14, .l3_offset = 22, .l4_offset = 42,
                 .sport = 40000, .dport = 25, .seq = 1000, .src = sub4, .dst = mx4});
    v.push_back({.name = "pppoe_ipv4_compressed", .frame = v4().pppoe(0x1234, true).build(),
                 .kind = frame_kind::ip_tcp, .ip_version = 4, .pppoe = true, .l3_offset = 21, .l4_offset = 41,
                 .dport = 25, .src = sub4});
    v.push_back({.name = "pppoe_ipv6", .frame = v6().pppoe(0x1234).build(), .kind = frame_kind::ip_tcp,
                 .ip_version = 6, .pppoe = true, .l3_offset = 22, .l4_offset = 62, .dport = 25, .src = sub6, .dst = mx6});
    v.push_back({.name = "pppoe_ipv6_compressed", .frame = v6().pppoe(0x1234, true).build(),
                 .kind = frame_kind::ip_tcp, .ip_version = 6, .pppoe = true, .l3_offset = 21, .l4_offset = 61,
                 .dport = 25, .src = sub6});
    v.push_back({.name = "pppoe_in_vlan", .frame = v4().vlan(100).pppoe(9).build(), .kind = frame_kind::ip_tcp,
                 .vlan_tags = 1, .pppoe = true, .pppoe_offset = 18, .l3_offset = 26, .dport = 25});
    v.push_back({.name = "pppoe_in_qinq", .frame = v6().vlan(100, 0x88a8).vlan(200).pppoe(9).build(),
                 .kind = frame_kind::ip_tcp, .vlan_tags = 2, .pppoe = true, .pppoe_offset = 22, .l3_offset = 30,
                 .dport = 25});
    v.push_back({.name = "pppoe_lcp", .frame = frame_builder().pppoe(9).ppp_protocol(0xc021).payload({1, 1, 0, 4}).build(),
                 .kind = frame_kind::non_ip, .ip_version = 0, .pppoe = true});
    v.push_back({.name = "pppoe_bad_version", .frame = v4().pppoe(9).pppoe_version_type(0x21).build(),
                 .kind = frame_kind::malformed, .error = parse_error::bad_pppoe});
    v.push_back({.name = "pppoe_bad_code", .frame = v4().pppoe(9).pppoe_code(0x09).build(),
                 .kind = frame_kind::malformed, .error = parse_error::bad_pppoe});
    v.push_back({.name = "pppoe_length_beyond_frame", .frame = v4().pppoe(9).pppoe_length(1000).build(),
                 .kind = frame_kind::malformed, .error = parse_error::bad_pppoe});
    v.push_back({.name = "pppoe_length_below_protocol", .frame = v4().pppoe(9).pppoe_length(1).build(),
                 .kind = frame_kind::malformed, .error = parse_error::bad_pppoe});
    v.push_back({.name = "pppoe_truncated_header", .frame = v4().pppoe(9).truncate(19).build(),
                 .kind = frame_kind::malformed, .error = parse_error::truncated_pppoe});
    v.push_back({.name = "pppoe_truncated_protocol", .frame = v4().pppoe(9).truncate(21).build(),
                 .kind = frame_kind::malformed, .error = parse_error::truncated_pppoe});

    // --- IPv4 ---------------------------------------------------------------
    v.push_back({.name = "ipv4_options", .frame = v4().ipv4_options({1, 1, 1, 0, 0x94, 4, 0, 0}).build(),
                 .kind = frame_kind::ip_tcp, .l3_offset = 14, .l4_offset = 42, .l4_len = 20, .dport = 25});
    v.push_back({.name = "ipv4_first_fragment_whole_tcp",
                 .frame = v4().payload(100).ipv4_fragment(0, true).fragment_bytes(24).build(),
                 .kind = frame_kind::ip_tcp, .fragment = true, .l4_len = 24, .sport = 40000, .dport = 25});
    v.push_back({.name = "ipv4_tiny_first_fragment",
                 .frame = v4().payload(100).ipv4_fragment(0, true).fragment_bytes(16).build(),
                 .kind = frame_kind::ip_first_fragment_incomplete, .fragment = true, .sport = 40000, .dport = 25,
                 .src = sub4});
    v.push_back({.name = "ipv4_first_fragment_8_bytes",
                 .frame = v4().payload(100).ipv4_fragment(0, true).fragment_bytes(8).build(),
                 .kind = frame_kind::ip_first_fragment_incomplete, .fragment = true});
    v.push_back({.name = "ipv4_first_fragment_tcp_options_cut",
                 .frame = v4().tcp_options(bytes(20, 1)).payload(100).ipv4_fragment(0, true).fragment_bytes(24).build(),
                 .kind = frame_kind::ip_first_fragment_incomplete, .fragment = true});
    v.push_back({.name = "ipv4_later_fragment",
                 .frame = frame_builder().ipv4(sub4, mx4).ip_protocol(6).payload(64).ipv4_fragment(3, true).build(),
                 .kind = frame_kind::ip_fragment_later, .ip_version = 4, .l4_proto = 6, .fragment = true, .src = sub4});
    v.push_back({.name = "ipv4_last_fragment",
                 .frame = frame_builder().ipv4(sub4, mx4).ip_protocol(6).payload(64).ipv4_fragment(200, false).build(),
                 .kind = frame_kind::ip_fragment_later, .fragment = true});
    v.push_back({.name = "ipv4_tcp_fragment_offset_1",
                 .frame = frame_builder().ipv4(sub4, mx4).ip_protocol(6).payload(64).ipv4_fragment(1, true).build(),
                 .kind = frame_kind::malformed, .error = parse_error::tcp_fragment_overlap});
    v.push_back({.name = "ipv4_udp_fragment_offset_1",
                 .frame = frame_builder().ipv4(sub4, mx4).ip_protocol(17).payload(64).ipv4_fragment(1, false).build(),
                 .kind = frame_kind::ip_fragment_later, .l4_proto = 17, .fragment = true});
    v.push_back({.name = "ipv4_df_not_a_fragment", .frame = v4().ipv4_fragment(0, false, true).build(),
                 .kind = frame_kind::ip_tcp, .fragment = false});
    v.push_back({.name = "ipv4_bad_ihl", .frame = v4().ipv4_ihl(4).build(),
                 .kind = frame_kind::malformed, .error = parse_error::bad_ipv4_header});
    v.push_back({.name = "ipv4_bad_version", .frame = v4().ip_version(5).build(),
                 .kind = frame_kind::malformed, .error = parse_error::bad_ipv4_header});
    v.push_back({.name = "ipv4_version_6_in_ipv4_ethertype", .frame = v4().ip_version(6).build(),
                 .kind = frame_kind::malformed, .error = parse_error::bad_ipv4_header});
    v.push_back({.name = "ipv4_total_length_beyond_frame", .frame = v4().ipv4_total_length(41).build(),
                 .kind = frame_kind::malformed, .error = parse_error::bad_ipv4_length});
    v.push_back({.name = "ipv4_total_length_below_ihl", .frame = v4().ipv4_total_length(19).build(),
                 .kind = frame_kind::malformed, .error = parse_error::bad_ipv4_length});
    v.push_back({.name = "ipv4_ihl_beyond_total_length", .frame = v4().ipv4_ihl(15).build(),
                 .kind = frame_kind::malformed, .error = parse_error::bad_ipv4_length});
    v.push_back({.name = "ipv4_truncated_header", .frame = v4().truncate(14 + 19).build(),
                 .kind = frame_kind::malformed, .error = parse_error::truncated_ipv4});
    v.push_back({.name = "ipv4_shorter_total_length_ignores_rest", .frame = v4().payload(10).ipv4_total_length(40).build(),
                 .kind = frame_kind::ip_tcp, .l4_len = 20});
    v.push_back({.name = "ipv4_udp", .frame = frame_builder().ipv4(sub4, mx4).udp(5353, 25).payload(12).build(),
                 .kind = frame_kind::ip_other, .ip_version = 4, .l4_proto = 17, .fragment = false, .dport = 0});
    v.push_back({.name = "ipv4_icmp", .frame = frame_builder().ipv4(sub4, mx4).icmp().build(),
                 .kind = frame_kind::ip_other, .l4_proto = 1});
    v.push_back({.name = "ipv4_tcp_offset_4", .frame = v4().tcp_data_offset(4).build(),
                 .kind = frame_kind::malformed, .error = parse_error::bad_tcp_offset});
    v.push_back({.name = "ipv4_tcp_offset_0", .frame = v4().tcp_data_offset(0).build(),
                 .kind = frame_kind::malformed, .error = parse_error::bad_tcp_offset});
    v.push_back({.name = "ipv4_tcp_header_truncated", .frame = v4().payload(100).fragment_bytes(19).build(),
                 .kind = frame_kind::malformed, .error = parse_error::truncated_tcp});
    v.push_back({.name = "ipv4_tcp_options_beyond_ip_end", .frame = v4().tcp_data_offset(15).build(),
                 .kind = frame_kind::malformed, .error = parse_error::truncated_tcp});

    // --- IPv6 ---------------------------------------------------------------
    v.push_back({.name = "ipv6_hbh_dst_routing_tcp", .frame = v6().hop_by_hop().dest_options(1).routing().build(),
                 .kind = frame_kind::ip_tcp, .ip_version = 6, .l4_proto = 6, .fragment = false,
                 .l4_offset = 14 + 40 + 8 + 16 + 8, .l4_len = 20, .sport = 40000, .dport = 25, .seq = 1000,
                 .src = sub6, .dst = mx6});
    v.push_back({.name = "ipv6_ah_tcp", .frame = v6().ah().build(), .kind = frame_kind::ip_tcp,
                 .l4_proto = 6, .l4_offset = 14 + 40 + 24, .dport = 25});
    v.push_back({.name = "ipv6_atomic_fragment", .frame = v6().fragment_header(0, false).build(),
                 .kind = frame_kind::ip_tcp, .fragment = true, .l4_offset = 14 + 48});
    v.push_back({.name = "ipv6_first_fragment_whole_chain",
                 .frame = v6().hop_by_hop().fragment_header(0, true).dest_options().routing().payload(200)
                              .fragment_bytes(8 + 8 + 20).build(),
                 .kind = frame_kind::ip_tcp, .l4_proto = 6, .fragment = true, .l4_offset = 14 + 40 + 8 + 8 + 8 + 8,
                 .l4_len = 20, .sport = 40000, .dport = 25});
    v.push_back({.name = "ipv6_first_fragment_chain_cut",
                 .frame = v6().fragment_header(0, true).dest_options(3).payload(200).fragment_bytes(16).build(),
                 .kind = frame_kind::ip_first_fragment_incomplete, .ip_version = 6, .fragment = true, .src = sub6});
    v.push_back({.name = "ipv6_first_fragment_ext_length_cut",
                 .frame = v6().fragment_header(0, true).dest_options().routing().payload(200).fragment_bytes(1).build(),
                 .kind = frame_kind::ip_first_fragment_incomplete, .fragment = true});
    v.push_back({.name = "ipv6_first_fragment_tcp_cut",
                 .frame = v6().hop_by_hop().fragment_header(0, true).dest_options().payload(200)
                              .fragment_bytes(8 + 12).build(),
                 .kind = frame_kind::ip_first_fragment_incomplete, .l4_proto = 6, .fragment = true,
                 .sport = 40000, .dport = 25});
    v.push_back({.name = "ipv6_first_fragment_tcp_options_cut",
                 .frame = v6().tcp_options(bytes(20, 1)).fragment_header(0, true).payload(200).fragment_bytes(24).build(),
                 .kind = frame_kind::ip_first_fragment_incomplete, .fragment = true});
    v.push_back({.name = "ipv6_later_fragment",
                 .frame = frame_builder().ipv6(sub6, mx6).fragment_header(10, true).ip_protocol(6).payload(64).build(),
                 .kind = frame_kind::ip_fragment_later, .ip_version = 6, .l4_proto = 6, .fragment = true, .src = sub6});
    v.push_back({.name = "ipv6_last_fragment_after_dst",
                 .frame = frame_builder().ipv6(sub6, mx6).dest_options().fragment_header(1, false).ip_protocol(6)
                              .payload(64).build(),
                 .kind = frame_kind::ip_fragment_later, .fragment = true});
    {
        frame_builder eight = v6();
        for (int i = 0; i < 8; ++i) eight.dest_options();
        v.push_back({.name = "ipv6_8_extension_headers", .frame = eight.build(), .kind = frame_kind::ip_tcp,
                     .l4_offset = 14 + 40 + 64, .dport = 25});
        frame_builder nine = v6();
        for (int i = 0; i < 9; ++i) nine.dest_options();
        v.push_back({.name = "ipv6_9_extension_headers", .frame = nine.build(), .kind = frame_kind::malformed,
                     .error = parse_error::ipv6_chain_too_long});
        frame_builder seven_and_fragment = v6().fragment_header(0, false);
        for (int i = 0; i < 7; ++i) seven_and_fragment.dest_options();
        v.push_back({.name = "ipv6_7_options_and_fragment", .frame = seven_and_fragment.build(),
                     .kind = frame_kind::ip_tcp, .fragment = true});
        frame_builder eight_and_fragment = v6().fragment_header(0, false);
        for (int i = 0; i < 8; ++i) eight_and_fragment.dest_options();
        v.push_back({.name = "ipv6_8_options_and_fragment", .frame = eight_and_fragment.build(),
                     .kind = frame_kind::malformed, .error = parse_error::ipv6_chain_too_long});
    }
    v.push_back({.name = "ipv6_payload_length_beyond_frame", .frame = v6().ipv6_payload_length(21).build(),
                 .kind = frame_kind::malformed, .error = parse_error::bad_ipv6_length});
    v.push_back({.name = "ipv6_bad_version", .frame = v6().ip_version(4).build(),
                 .kind = frame_kind::malformed, .error = parse_error::bad_ipv6_header});
    v.push_back({.name = "ipv6_truncated_header", .frame = v6().truncate(14 + 39).build(),
                 .kind = frame_kind::malformed, .error = parse_error::truncated_ipv6});
    v.push_back({.name = "ipv6_extension_beyond_packet", .frame = v6().dest_options(4).ipv6_payload_length(16).build(),
                 .kind = frame_kind::malformed, .error = parse_error::bad_ipv6_extension});
    v.push_back({.name = "ipv6_udp", .frame = frame_builder().ipv6(sub6, mx6).hop_by_hop().udp(5353, 25).build(),
                 .kind = frame_kind::ip_other, .ip_version = 6, .l4_proto = 17});
    v.push_back({.name = "ipv6_icmpv6", .frame = frame_builder().ipv6(sub6, mx6).icmp(128).build(),
                 .kind = frame_kind::ip_other, .l4_proto = 58});
    v.push_back({.name = "ipv6_no_next_header", .frame = frame_builder().ipv6(sub6, mx6).build(),
                 .kind = frame_kind::ip_other, .l4_proto = 59});
    v.push_back({.name = "ipv6_next_header_override_tcp_over_udp",
                 .frame = frame_builder().ipv6(sub6, mx6).udp(1, 2).ipv6_next_header(6).build(),
                 .kind = frame_kind::malformed, .error = parse_error::truncated_tcp});
    v.push_back({.name = "ipv6_tcp_offset_4", .frame = v6().tcp_data_offset(4).build(),
                 .kind = frame_kind::malformed, .error = parse_error::bad_tcp_offset});
    v.push_back({.name = "ipv6_tcp_header_truncated", .frame = v6().payload(100).fragment_bytes(19).build(),
                 .kind = frame_kind::malformed, .error = parse_error::truncated_tcp});
    return v;
}

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
