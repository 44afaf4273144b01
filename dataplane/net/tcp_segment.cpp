#include "dataplane/net/tcp_segment.h"

#include <cstring>

#include "dataplane/net/wire.h"

namespace sekisho {

namespace {
constexpr uint16_t min_frame_len = 60;  // Ethernet minimum without FCS
}

uint16_t build_tcp_segment(const parsed_packet& p, const tcp_segment_spec& spec, uint8_t* out) {
    if (p.kind != frame_kind::ip_tcp) return 0;
    const uint8_t* in = p.frame;
    const uint16_t l3 = p.l3_offset;
    const uint16_t ip_hdr_len = p.ip_version == 4 ? 20 : 40;
    const uint16_t ip_len = static_cast<uint16_t>(ip_hdr_len + 20 + spec.payload_len);

    // L2 and any VLAN/PPPoE headers as they came (MACs swapped going back).
    std::memcpy(out, in, l3);
    if (spec.to_sender) {
        std::memcpy(out, in + 6, 6);
        std::memcpy(out + 6, in, 6);
    }
    if (p.pppoe) {
        const uint16_t ppp_proto_len = static_cast<uint16_t>(l3 - p.pppoe_offset - 6);
        wire::store16(out + p.pppoe_offset + 4, static_cast<uint16_t>(ppp_proto_len + ip_len));
    }

    uint8_t* ip = out + l3;
    uint8_t* tcp = ip + ip_hdr_len;
    uint32_t pseudo = 0;
    if (p.ip_version == 4) {
        ip[0] = 0x45;
        ip[1] = 0;
        wire::store16(ip + 2, ip_len);
        wire::store16(ip + 4, 0);        // identification
        wire::store16(ip + 6, 0x4000);   // don't fragment
        ip[8] = 64;
        ip[9] = wire::ipproto_tcp;
        wire::store16(ip + 10, 0);
        wire::store32(ip + 12, spec.to_sender ? p.dst4 : p.src4);
        wire::store32(ip + 16, spec.to_sender ? p.src4 : p.dst4);
        wire::store16(ip + 10, wire::checksum_fold(wire::checksum_add(0, ip, 20)));
        pseudo = wire::checksum_add(0, ip + 12, 8);
    } else {
        wire::store32(ip, 0x60000000);
        wire::store16(ip + 4, static_cast<uint16_t>(20 + spec.payload_len));
        ip[6] = wire::ipproto_tcp;
        ip[7] = 64;
        std::memcpy(ip + 8, spec.to_sender ? p.dst6() : p.src6(), 16);
        std::memcpy(ip + 24, spec.to_sender ? p.src6() : p.dst6(), 16);
        pseudo = wire::checksum_add(0, ip + 8, 32);
    }
    pseudo += wire::ipproto_tcp + 20u + spec.payload_len;

    wire::store16(tcp, spec.to_sender ? p.dst_port : p.src_port);
    wire::store16(tcp + 2, spec.to_sender ? p.src_port : p.dst_port);
    wire::store32(tcp + 4, spec.seq);
    wire::store32(tcp + 8, spec.ack);
    tcp[12] = 5 << 4;
    tcp[13] = spec.flags;
    wire::store16(tcp + 14, spec.flags & tcp_flag::rst ? 0 : 8192);  // window
    wire::store16(tcp + 16, 0);   // checksum
    wire::store16(tcp + 18, 0);   // urgent pointer
    if (spec.payload_len) std::memcpy(tcp + 20, spec.payload, spec.payload_len);
    wire::store16(tcp + 16, wire::checksum_fold(wire::checksum_add(pseudo, tcp, 20u + spec.payload_len)));

    uint16_t len = static_cast<uint16_t>(l3 + ip_len);
    if (len < min_frame_len) {
        std::memset(out + len, 0, min_frame_len - len);
        len = min_frame_len;
    }
    return len;
}

uint16_t build_tcp_reset(const parsed_packet& p, uint8_t* out) {
    if (p.kind != frame_kind::ip_tcp || (p.tcp_flags & tcp_flag::rst)) return 0;
    // Segment length as RFC 9293 counts it: payload plus SYN and FIN.
    uint32_t seg_len = static_cast<uint32_t>(p.l4_len - p.tcp_header_len);
    if (p.tcp_flags & tcp_flag::syn) ++seg_len;
    if (p.tcp_flags & tcp_flag::fin) ++seg_len;
    tcp_segment_spec spec;
    spec.to_sender = true;
    if (p.tcp_flags & tcp_flag::ack) {
        spec.seq = p.tcp_ack;
        spec.flags = tcp_flag::rst;
    } else {
        spec.ack = p.tcp_seq + seg_len;
        spec.flags = tcp_flag::rst | tcp_flag::ack;
    }
    return build_tcp_segment(p, spec, out);
}

}  // namespace sekisho
