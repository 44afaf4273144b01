#include "dataplane/net/packet_parser.h"

#include "dataplane/net/wire.h"

namespace sekisho {

const char* to_string(parse_error e) {
    switch (e) {
    case parse_error::none: return "none";
    case parse_error::truncated_ethernet: return "truncated_ethernet";
    case parse_error::truncated_vlan: return "truncated_vlan";
    case parse_error::vlan_too_deep: return "vlan_too_deep";
    case parse_error::truncated_pppoe: return "truncated_pppoe";
    case parse_error::bad_pppoe: return "bad_pppoe";
    case parse_error::truncated_ipv4: return "truncated_ipv4";
    case parse_error::bad_ipv4_header: return "bad_ipv4_header";
    case parse_error::bad_ipv4_length: return "bad_ipv4_length";
    case parse_error::truncated_ipv6: return "truncated_ipv6";
    case parse_error::bad_ipv6_header: return "bad_ipv6_header";
    case parse_error::bad_ipv6_length: return "bad_ipv6_length";
    case parse_error::ipv6_chain_too_long: return "ipv6_chain_too_long";
    case parse_error::bad_ipv6_extension: return "bad_ipv6_extension";
    case parse_error::truncated_tcp: return "truncated_tcp";
    case parse_error::bad_tcp_offset: return "bad_tcp_offset";
    case parse_error::tcp_fragment_overlap: return "tcp_fragment_overlap";
    case parse_error::count_: break;
    }
    return "unknown";
}

namespace {

constexpr uint16_t ethertype_ipv4 = 0x0800;
constexpr uint16_t ethertype_ipv6 = 0x86dd;
constexpr uint16_t ethertype_vlan = 0x8100;
constexpr uint16_t ethertype_qinq = 0x88a8;
constexpr uint16_t ethertype_qinq_legacy = 0x9100;
constexpr uint16_t ethertype_pppoe_session = 0x8864;
constexpr uint16_t ppp_ipv4 = 0x0021;
constexpr uint16_t ppp_ipv6 = 0x0057;

constexpr uint8_t ipproto_hopopts = 0;
constexpr uint8_t ipproto_routing = 43;
constexpr uint8_t ipproto_fragment = 44;
constexpr uint8_t ipproto_ah = 51;
constexpr uint8_t ipproto_dstopts = 60;
constexpr uint8_t ipproto_mobility = 135;
constexpr uint8_t ipproto_hip = 139;
constexpr uint8_t ipproto_shim6 = 140;

inline frame_kind fail(parsed_packet& out, parse_error e) {
    out.kind = frame_kind::malformed;
    out.error = e;
    return out.kind;
}

// TCP header at `off`, `avail` bytes of it in this packet. `first_fragment`:
// the packet is the first of several fragments, so a short header means the
// sender split the header chain (evasion), not that the frame is corrupt.
frame_kind parse_tcp(const uint8_t* f, uint32_t off, uint32_t avail, bool first_fragment,
                     parsed_packet& out) {
    out.l4_offset = static_cast<uint16_t>(off);
    out.l4_len = static_cast<uint16_t>(avail);
    if (avail >= 4) {
        out.src_port = wire::load16(f + off);
        out.dst_port = wire::load16(f + off + 2);
    }
    if (avail < 20) {
        if (first_fragment) {
            out.kind = frame_kind::ip_first_fragment_incomplete;
            return out.kind;
        }
        return fail(out, parse_error::truncated_tcp);
    }
    const uint32_t hlen = static_cast<uint32_t>(f[off + 12] >> 4) * 4;
    if (hlen < 20) return fail(out, parse_error::bad_tcp_offset);
    if (hlen > avail) {
        if (first_fragment) {
            out.kind = frame_kind::ip_first_fragment_incomplete;
            return out.kind;
        }
        return fail(out, parse_error::truncated_tcp);
    }
    out.tcp_header_len = static_cast<uint16_t>(hlen);
    out.tcp_seq = wire::load32(f + off + 4);
    out.tcp_ack = wire::load32(f + off + 8);
    out.tcp_flags = f[off + 13];
    out.kind = frame_kind::ip_tcp;
    return out.kind;
}

frame_kind parse_ipv4(const uint8_t* f, uint32_t off, uint32_t len, parsed_packet& out) {
    if (len < off + 20) return fail(out, parse_error::truncated_ipv4);
    const uint8_t vihl = f[off];
    const uint32_t ihl = static_cast<uint32_t>(vihl & 0x0f) * 4;
    if ((vihl >> 4) != 4 || ihl < 20) return fail(out, parse_error::bad_ipv4_header);
    const uint32_t total = wire::load16(f + off + 2);
    if (total < ihl || off + total > len) return fail(out, parse_error::bad_ipv4_length);

    out.ip_version = 4;
    out.l3_offset = static_cast<uint16_t>(off);
    out.l3_len = static_cast<uint16_t>(total);
    out.src4 = wire::load32(f + off + 12);
    out.dst4 = wire::load32(f + off + 16);
    const uint8_t proto = f[off + 9];
    out.l4_proto = proto;

    const uint16_t frag = wire::load16(f + off + 6);
    const bool more_fragments = (frag & 0x2000) != 0;
    const uint16_t frag_offset = frag & 0x1fff;  // in 8-byte units
    out.fragment = more_fragments || frag_offset != 0;
    if (frag_offset != 0) {
        // A TCP fragment at offset 8 can only exist to overwrite the flags of
        // the first one (RFC 1858 sec. 4): never legitimate.
        if (proto == wire::ipproto_tcp && frag_offset == 1)
            return fail(out, parse_error::tcp_fragment_overlap);
        out.kind = frame_kind::ip_fragment_later;
        return out.kind;
    }
    if (proto != wire::ipproto_tcp) {
        out.kind = frame_kind::ip_other;
        return out.kind;
    }
    return parse_tcp(f, off + ihl, total - ihl, more_fragments, out);
}

frame_kind parse_ipv6(const uint8_t* f, uint32_t off, uint32_t len, parsed_packet& out) {
    if (len < off + 40) return fail(out, parse_error::truncated_ipv6);
    if ((f[off] >> 4) != 6) return fail(out, parse_error::bad_ipv6_header);
    const uint32_t payload = wire::load16(f + off + 4);
    if (off + 40 + payload > len) return fail(out, parse_error::bad_ipv6_length);

    out.ip_version = 6;
    out.l3_offset = static_cast<uint16_t>(off);
    out.l3_len = static_cast<uint16_t>(40 + payload);
    const uint32_t end = off + 40 + payload;

    uint8_t next = f[off + 6];
    uint32_t p = off + 40;
    unsigned headers = 0;
    bool first_fragment = false;  // a fragment header with offset 0 and M set
    for (;;) {
        uint32_t hlen;
        switch (next) {
        case ipproto_hopopts:
        case ipproto_routing:
        case ipproto_dstopts:
        case ipproto_mobility:
        case ipproto_hip:
        case ipproto_shim6:
            if (p + 2 > end) goto chain_cut;
            hlen = (static_cast<uint32_t>(f[p + 1]) + 1) * 8;
            break;
        case ipproto_ah:
            if (p + 2 > end) goto chain_cut;
            hlen = (static_cast<uint32_t>(f[p + 1]) + 2) * 4;
            break;
        case ipproto_fragment: {
            if (++headers > max_ipv6_extension_headers)
                return fail(out, parse_error::ipv6_chain_too_long);
            if (p + 8 > end) goto chain_cut;
            const uint16_t fo = wire::load16(f + p + 2);
            out.fragment = true;
            next = f[p];
            p += 8;
            if ((fo & 0xfff8) != 0) {
                out.l4_proto = next;
                out.kind = frame_kind::ip_fragment_later;
                return out.kind;
            }
            first_fragment = (fo & 1) != 0;
            continue;
        }
        default:
            goto upper_layer;
        }
        if (++headers > max_ipv6_extension_headers)
            return fail(out, parse_error::ipv6_chain_too_long);
        if (p + hlen > end) goto chain_cut;
        next = f[p];
        p += hlen;
    }

upper_layer:
    out.l4_proto = next;
    if (next != wire::ipproto_tcp) {
        out.kind = frame_kind::ip_other;
        return out.kind;
    }
    return parse_tcp(f, p, end - p, first_fragment, out);

chain_cut:
    // The chain runs past the packet. In a first fragment this is the RFC 7112
    // case (header chain split across fragments); otherwise the frame is bad.
    if (first_fragment) {
        out.l4_proto = next;
        out.kind = frame_kind::ip_first_fragment_incomplete;
        return out.kind;
    }
    return fail(out, parse_error::bad_ipv6_extension);
}

}  // namespace

frame_kind parse_frame(const uint8_t* f, uint32_t len, parsed_packet& out) {
    out = parsed_packet{};
    out.frame = f;
    if (len < 14) return fail(out, parse_error::truncated_ethernet);

    uint16_t ethertype = wire::load16(f + 12);
    uint32_t off = 14;
    while (ethertype == ethertype_vlan || ethertype == ethertype_qinq ||
           ethertype == ethertype_qinq_legacy) {
        if (out.vlan_tags == max_vlan_tags) return fail(out, parse_error::vlan_too_deep);
        if (len < off + 4) return fail(out, parse_error::truncated_vlan);
        ethertype = wire::load16(f + off + 2);
        off += 4;
        ++out.vlan_tags;
    }

    if (ethertype == ethertype_pppoe_session) {
        if (len < off + 7) return fail(out, parse_error::truncated_pppoe);
        if (f[off] != 0x11 || f[off + 1] != 0x00) return fail(out, parse_error::bad_pppoe);
        const uint32_t pppoe_len = wire::load16(f + off + 4);
        // PPP protocol field: two bytes, or one if compressed (odd first byte).
        uint16_t protocol;
        uint32_t proto_len;
        if (f[off + 6] & 1) {
            protocol = f[off + 6];
            proto_len = 1;
        } else {
            if (len < off + 8) return fail(out, parse_error::truncated_pppoe);
            protocol = wire::load16(f + off + 6);
            proto_len = 2;
        }
        if (pppoe_len < proto_len || off + 6 + pppoe_len > len)
            return fail(out, parse_error::bad_pppoe);
        out.pppoe = true;
        out.pppoe_offset = static_cast<uint16_t>(off);
        off += 6 + proto_len;
        if (protocol == ppp_ipv4) return parse_ipv4(f, off, len, out);
        if (protocol == ppp_ipv6) return parse_ipv6(f, off, len, out);
        out.kind = frame_kind::non_ip;  // LCP, IPCP, CHAP, ...
        return out.kind;
    }
    if (ethertype == ethertype_ipv4) return parse_ipv4(f, off, len, out);
    if (ethertype == ethertype_ipv6) return parse_ipv6(f, off, len, out);
    out.kind = frame_kind::non_ip;
    return out.kind;
}

}  // namespace sekisho
