// Fuzz target: the frame parser (dataplane/net/packet_parser.cpp) on any bytes, and
// the TCP reset / injected segment builders (dataplane/net/tcp_segment.cpp) on what it
// accepts. Checks beyond "no crash": the result is self-consistent and points
// inside the frame, and what the builders write parses back as the segment it
// should be.
#include <cstring>
#include <initializer_list>

#include "fuzz_target.h"
#include "dataplane/net/packet_parser.h"
#include "dataplane/net/tcp_segment.h"

using namespace sekisho;

SEKISHO_FUZZ_TARGET(packet_parser)(const uint8_t* data, size_t size) {
    if (size > 65535) return 0;   // frames: the parser's offsets are 16-bit by design
    const uint32_t len = static_cast<uint32_t>(size);
    parsed_packet p;
    const frame_kind kind = parse_frame(data, len, p);
    fuzz_check(kind == p.kind);
    fuzz_check(p.frame == data);
    fuzz_check((p.kind == frame_kind::malformed) == (p.error != parse_error::none));
    fuzz_check(static_cast<size_t>(p.error) < parse_error_count);
    fuzz_check(p.vlan_tags <= max_vlan_tags);
    if (p.kind == frame_kind::malformed || p.kind == frame_kind::non_ip) return 0;

    fuzz_check(p.ip_version == 4 || p.ip_version == 6);
    fuzz_check(p.l3_offset <= len);
    fuzz_check(size_t{p.l3_offset} + p.l3_len <= len);
    if (p.ip_version == 6) fuzz_check(size_t{p.l3_offset} + 40 <= len);   // src6()/dst6() readable
    if (p.pppoe) fuzz_check(p.pppoe_offset < p.l3_offset);
    if (p.kind != frame_kind::ip_tcp) return 0;

    fuzz_check(p.l4_proto == 6);
    fuzz_check(p.l4_offset >= p.l3_offset);
    fuzz_check(p.tcp_header_len >= 20 && p.tcp_header_len <= 60);
    fuzz_check(size_t{p.l4_offset} + p.tcp_header_len <= len);
    fuzz_check(size_t{p.l4_offset} + p.l4_len <= size_t{p.l3_offset} + p.l3_len);

    // The reset back to the sender, and a segment with a payload both ways.
    uint8_t out[tcp_segment_max_header + 64 + 64];
    const uint16_t rst_len = build_tcp_reset(p, out);
    const bool is_rst = p.tcp_flags & tcp_flag::rst;
    fuzz_check(rst_len == 0 || rst_len <= tcp_reset_max_len);
    fuzz_check(is_rst ? rst_len == 0 : rst_len >= 60);
    if (rst_len) {
        parsed_packet r;
        fuzz_check(parse_frame(out, rst_len, r) == frame_kind::ip_tcp);
        fuzz_check(r.tcp_flags & tcp_flag::rst);
        fuzz_check(r.ip_version == p.ip_version && r.vlan_tags == p.vlan_tags && r.pppoe == p.pppoe);
        fuzz_check(r.src_port == p.dst_port && r.dst_port == p.src_port);
        if (p.ip_version == 4) fuzz_check(r.src4 == p.dst4 && r.dst4 == p.src4);
        else fuzz_check(std::memcmp(r.src6(), p.dst6(), 16) == 0 && std::memcmp(r.dst6(), p.src6(), 16) == 0);
    }
    static const uint8_t reply[] = "421 4.7.0 Too many messages, try again later\r\n";
    for (bool to_sender : {true, false}) {
        tcp_segment_spec spec;
        spec.to_sender = to_sender;
        spec.seq = p.tcp_ack;
        spec.ack = p.tcp_seq;
        spec.flags = tcp_flag::ack | tcp_flag::psh;
        spec.payload = reply;
        spec.payload_len = sizeof reply - 1;
        const uint16_t n = build_tcp_segment(p, spec, out);
        fuzz_check(n >= 60 && n <= tcp_segment_max_header + spec.payload_len);
        parsed_packet s;
        fuzz_check(parse_frame(out, n, s) == frame_kind::ip_tcp);
        fuzz_check(s.tcp_seq == spec.seq && s.tcp_ack == spec.ack && s.tcp_flags == spec.flags);
        fuzz_check(s.l4_len == s.tcp_header_len + spec.payload_len);
        fuzz_check(std::memcmp(out + s.l4_offset + s.tcp_header_len, reply, spec.payload_len) == 0);
        fuzz_check(to_sender ? s.src_port == p.dst_port && s.dst_port == p.src_port
                             : s.src_port == p.src_port && s.dst_port == p.dst_port);
    }
    return 0;
}
