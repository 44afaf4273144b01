// The frame corpus every OP25B-path test shares: the parser's table (every
// encapsulation, error and evasion case, with what the parser must report)
// and the classifier's table (frame x ingress -> outcome on the lab policy).
// packet_parser_test and op25b_classifier_test check their expectations; the
// XDP differential test runs every frame through both backends.
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "frame_builder.h"
#include "lab_policy.h"
#include "dataplane/op25b_classifier.h"
#include "dataplane/net/packet_parser.h"

namespace sekisho::test {

namespace parser_corpus {

namespace t = sekisho::test;

constexpr const char* sub4 = "198.51.100.7";
constexpr const char* mx4 = "203.0.113.25";
constexpr const char* sub6 = "2001:db8:100::7";
constexpr const char* mx6 = "2001:db8:25::25";

// The reference segment: SYN 40000 -> 25, seq 1000, ack 2000.
inline frame_builder v4() { return frame_builder().ipv4(sub4, mx4).tcp(40000, 25).seq(1000).ack(2000).flags(t::tcp_flags_syn); }
inline frame_builder v6() { return frame_builder().ipv6(sub6, mx6).tcp(40000, 25).seq(1000).ack(2000).flags(t::tcp_flags_syn); }

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

inline std::ostream& operator<<(std::ostream& os, const parse_case& c) { return os << c.name; }

inline std::vector<parse_case> cases() {
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

}  // namespace parser_corpus

namespace op25b_corpus {

namespace t = sekisho::test;

using test::dyn4, test::static4, test::other4, test::mx4, test::relay4;
using test::dyn6, test::static6, test::other6, test::mx6, test::relay6;

[[maybe_unused]] constexpr uint8_t syn = t::tcp_flags_syn, ack = t::tcp_flags_ack, rst = t::tcp_flags_rst, psh = t::tcp_flags_psh;

inline frame_builder tcp4(const char* src, const char* dst, uint16_t dport, uint8_t flags = syn) {
    return frame_builder().ipv4(src, dst).tcp(40000, dport).flags(flags).seq(1).ack(flags & ack ? 2 : 0);
}
inline frame_builder tcp6(const char* src, const char* dst, uint16_t dport, uint8_t flags = syn) {
    return frame_builder().ipv6(src, dst).tcp(40000, dport).flags(flags).seq(1).ack(flags & ack ? 2 : 0);
}

struct classify_case {
    std::string name;
    bytes frame;
    ingress in;
    op25b_outcome outcome;
};
inline std::ostream& operator<<(std::ostream& os, const classify_case& c) { return os << c.name; }

inline const ingress A = ingress::access, C = ingress::core;
inline const op25b_outcome pass = op25b_outcome::pass, block = op25b_outcome::block_port,
                    block_frag = op25b_outcome::block_incomplete_fragment, drop = op25b_outcome::drop_malformed;

inline std::vector<classify_case> cases() {
    std::vector<classify_case> v;
    // --- IPv4 ------------------------------------------------------------------
    v.push_back({"v4_dynamic_syn_to_mx25", tcp4(dyn4, mx4, 25).build(), A, block});
    v.push_back({"v4_dynamic_ack_to_mx25", tcp4(dyn4, mx4, 25, ack | psh).payload(20).build(), A, block});
    v.push_back({"v4_dynamic_rst_to_mx25", tcp4(dyn4, mx4, 25, rst).build(), A, block});
    v.push_back({"v4_dynamic_to_relay25", tcp4(dyn4, relay4, 25).build(), A, pass});
    v.push_back({"v4_dynamic_to_other_host_next_to_relay", tcp4(dyn4, "203.0.113.11", 25).build(), A, block});
    v.push_back({"v4_dynamic_to_587", tcp4(dyn4, mx4, 587).build(), A, pass});
    v.push_back({"v4_dynamic_to_465", tcp4(dyn4, mx4, 465).build(), A, pass});
    v.push_back({"v4_dynamic_to_2525_not_blocked_by_default", tcp4(dyn4, mx4, 2525).build(), A, pass});
    v.push_back({"v4_dynamic_from_port_25_to_high_port", frame_builder().ipv4(dyn4, mx4).tcp(25, 40000).flags(syn | ack).build(), A, pass});
    v.push_back({"v4_static_to_mx25", tcp4(static4, mx4, 25).build(), A, pass});
    v.push_back({"v4_static_first_of_28", tcp4("198.51.100.128", mx4, 25).build(), A, pass});
    v.push_back({"v4_static_last_of_28", tcp4("198.51.100.143", mx4, 25).build(), A, pass});
    v.push_back({"v4_dynamic_just_below_28", tcp4("198.51.100.127", mx4, 25).build(), A, block});
    v.push_back({"v4_dynamic_just_above_28", tcp4("198.51.100.144", mx4, 25).build(), A, block});
    v.push_back({"v4_dynamic_last_of_24", tcp4("198.51.100.255", mx4, 25).build(), A, block});
    v.push_back({"v4_non_subscriber", tcp4(other4, mx4, 25).build(), A, pass});
    v.push_back({"v4_next_24_non_subscriber", tcp4("198.51.101.7", mx4, 25).build(), A, pass});
    v.push_back({"v4_dynamic_syn_from_core", tcp4(dyn4, mx4, 25).build(), C, pass});
    v.push_back({"v4_mx_to_dynamic_from_core", frame_builder().ipv4(mx4, dyn4).tcp(40000, 25).flags(syn).build(), C, pass});
    v.push_back({"v4_dynamic_udp_25", frame_builder().ipv4(dyn4, mx4).udp(40000, 25).build(), A, pass});
    v.push_back({"v4_first_fragment_whole_tcp_to_25",
                 tcp4(dyn4, mx4, 25).payload(100).ipv4_fragment(0, true).fragment_bytes(24).build(), A, block});
    v.push_back({"v4_first_fragment_whole_tcp_to_587",
                 tcp4(dyn4, mx4, 587).payload(100).ipv4_fragment(0, true).fragment_bytes(24).build(), A, pass});
    v.push_back({"v4_tiny_fragment_dynamic",
                 tcp4(dyn4, mx4, 25).payload(100).ipv4_fragment(0, true).fragment_bytes(8).build(), A, block_frag});
    v.push_back({"v4_tiny_fragment_dynamic_any_port",
                 tcp4(dyn4, mx4, 443).payload(100).ipv4_fragment(0, true).fragment_bytes(16).build(), A, block_frag});
    v.push_back({"v4_tiny_fragment_dynamic_to_relay",
                 tcp4(dyn4, relay4, 25).payload(100).ipv4_fragment(0, true).fragment_bytes(8).build(), A, block_frag});
    v.push_back({"v4_tiny_fragment_static",
                 tcp4(static4, mx4, 25).payload(100).ipv4_fragment(0, true).fragment_bytes(8).build(), A, pass});
    v.push_back({"v4_tiny_fragment_non_subscriber",
                 tcp4(other4, mx4, 25).payload(100).ipv4_fragment(0, true).fragment_bytes(8).build(), A, pass});
    v.push_back({"v4_tiny_fragment_from_core",
                 tcp4(dyn4, mx4, 25).payload(100).ipv4_fragment(0, true).fragment_bytes(8).build(), C, pass});
    v.push_back({"v4_later_fragment_dynamic",
                 frame_builder().ipv4(dyn4, mx4).ip_protocol(6).payload(64).ipv4_fragment(3, false).build(), A, pass});
    v.push_back({"v4_overlap_fragment_dynamic",
                 frame_builder().ipv4(dyn4, mx4).ip_protocol(6).payload(64).ipv4_fragment(1, true).build(), A, drop});
    v.push_back({"v4_malformed_from_access", tcp4(dyn4, mx4, 25).ipv4_ihl(4).build(), A, drop});
    v.push_back({"v4_malformed_non_subscriber_from_access", tcp4(other4, mx4, 443).ipv4_total_length(200).build(), A, drop});
    v.push_back({"v4_malformed_from_core", tcp4(dyn4, mx4, 25).ipv4_ihl(4).build(), C, pass});
    v.push_back({"v4_truncated_tcp_from_access", tcp4(dyn4, mx4, 25).payload(30).fragment_bytes(10).build(), A, drop});
    v.push_back({"three_vlan_tags_from_access", tcp4(dyn4, mx4, 25).vlan(1).vlan(2).vlan(3).build(), A, drop});
    v.push_back({"three_vlan_tags_from_core", tcp4(dyn4, mx4, 25).vlan(1).vlan(2).vlan(3).build(), C, pass});
    v.push_back({"arp_from_access", frame_builder().ethertype(0x0806).payload(28, 0).build(), A, pass});
    v.push_back({"pppoe_lcp_from_access", frame_builder().pppoe(5).ppp_protocol(0xc021).payload({1, 1, 0, 4}).build(), A, pass});

    // --- Encapsulations ------------------------------------------------------------
    v.push_back({"vlan_v4_dynamic_to_25", tcp4(dyn4, mx4, 25).vlan(100).build(), A, block});
    v.push_back({"qinq_88a8_v4_dynamic_to_25", tcp4(dyn4, mx4, 25).vlan(100, 0x88a8).vlan(200).build(), A, block});
    v.push_back({"qinq_9100_v6_dynamic_to_25", tcp6(dyn6, mx6, 25).vlan(100, 0x9100).vlan(200).build(), A, block});
    v.push_back({"pppoe_v4_dynamic_to_25", tcp4(dyn4, mx4, 25).pppoe(0x10).build(), A, block});
    v.push_back({"pppoe_compressed_v6_dynamic_to_25", tcp6(dyn6, mx6, 25).pppoe(0x10, true).build(), A, block});
    v.push_back({"vlan_pppoe_v4_dynamic_to_25", tcp4(dyn4, mx4, 25, ack).vlan(100).pppoe(0x10).build(), A, block});
    v.push_back({"qinq_pppoe_v6_dynamic_to_25", tcp6(dyn6, mx6, 25).vlan(1, 0x88a8).vlan(2).pppoe(3).build(), A, block});
    v.push_back({"vlan_pppoe_v4_dynamic_to_relay", tcp4(dyn4, relay4, 25).vlan(100).pppoe(0x10).build(), A, pass});
    v.push_back({"pppoe_v4_static_to_25", tcp4(static4, mx4, 25).pppoe(0x10).build(), A, pass});
    v.push_back({"vlan_tiny_fragment_dynamic",
                 tcp4(dyn4, mx4, 25).vlan(7).payload(100).ipv4_fragment(0, true).fragment_bytes(8).build(), A, block_frag});

    // --- IPv6 ------------------------------------------------------------------------
    v.push_back({"v6_dynamic_syn_to_mx25", tcp6(dyn6, mx6, 25).build(), A, block});
    v.push_back({"v6_dynamic_ack_to_mx25", tcp6(dyn6, mx6, 25, ack).payload(10).build(), A, block});
    v.push_back({"v6_dynamic_top_of_40", tcp6("2001:db8:1fe:ffff:ffff:ffff:ffff:ffff", mx6, 25).build(), A, block});
    v.push_back({"v6_dynamic_to_relay", tcp6(dyn6, relay6, 25).build(), A, pass});
    v.push_back({"v6_dynamic_to_relay_neighbour", tcp6(dyn6, "2001:db8:25::11", 25).build(), A, block});
    v.push_back({"v6_dynamic_to_587", tcp6(dyn6, mx6, 587).build(), A, pass});
    v.push_back({"v6_static_to_25", tcp6(static6, mx6, 25).build(), A, pass});
    v.push_back({"v6_static_end_of_48", tcp6("2001:db8:1ff:ffff:ffff:ffff:ffff:ffff", mx6, 25).build(), A, pass});
    v.push_back({"v6_outside_40", tcp6("2001:db8:200::1", mx6, 25).build(), A, pass});
    v.push_back({"v6_non_subscriber", tcp6(other6, mx6, 25).build(), A, pass});
    v.push_back({"v6_dynamic_from_core", tcp6(dyn6, mx6, 25).build(), C, pass});
    v.push_back({"v6_dynamic_with_ext_chain_to_25", tcp6(dyn6, mx6, 25).hop_by_hop().dest_options().routing().build(), A, block});
    v.push_back({"v6_first_fragment_whole_chain_to_25",
                 tcp6(dyn6, mx6, 25).fragment_header(0, true).dest_options().payload(100).fragment_bytes(8 + 20).build(),
                 A, block});
    v.push_back({"v6_incomplete_chain_dynamic",
                 tcp6(dyn6, mx6, 25).fragment_header(0, true).dest_options(3).payload(100).fragment_bytes(16).build(),
                 A, block_frag});
    v.push_back({"v6_incomplete_tcp_dynamic",
                 tcp6(dyn6, mx6, 25).fragment_header(0, true).payload(100).fragment_bytes(8).build(), A, block_frag});
    v.push_back({"v6_incomplete_chain_static",
                 tcp6(static6, mx6, 25).fragment_header(0, true).dest_options(3).payload(100).fragment_bytes(16).build(),
                 A, pass});
    v.push_back({"v6_incomplete_chain_from_core",
                 tcp6(dyn6, mx6, 25).fragment_header(0, true).dest_options(3).payload(100).fragment_bytes(16).build(),
                 C, pass});
    v.push_back({"v6_later_fragment_dynamic",
                 frame_builder().ipv6(dyn6, mx6).fragment_header(8, true).ip_protocol(6).payload(64).build(), A, pass});
    v.push_back({"v6_chain_too_long_from_access",
                 tcp6(dyn6, mx6, 443).dest_options().dest_options().dest_options().dest_options().dest_options()
                     .dest_options().dest_options().dest_options().dest_options().build(), A, drop});
    v.push_back({"v6_malformed_from_access", tcp6(dyn6, mx6, 25).ipv6_payload_length(100).build(), A, drop});
    v.push_back({"v6_malformed_from_core", tcp6(dyn6, mx6, 25).ipv6_payload_length(100).build(), C, pass});
    v.push_back({"v6_dynamic_icmp", frame_builder().ipv6(dyn6, mx6).icmp(128).build(), A, pass});
    return v;
}

}  // namespace op25b_corpus

}  // namespace sekisho::test
