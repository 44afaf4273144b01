// Test and benchmark frame builder: Ethernet frames as std::vector<uint8_t>.
//
// Header-only, no DPDK. A fluent description of one frame, assembled by
// build() with correct lengths and checksums unless a field is overridden to
// make the frame malformed on purpose:
//
//   auto f = frame_builder()
//                .vlan(100, 0x88a8).vlan(200)
//                .pppoe(0x1234)
//                .ipv4("198.51.100.7", "203.0.113.25")
//                .tcp(40000, 25).flags(tcp_flags_syn).seq(1000)
//                .build();
//
// Layers are chosen once each (ipv4 or ipv6; tcp, udp, icmp or nothing); the
// order of calls does not matter. Only documentation addresses in tests.
#pragma once

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace sekisho::test {

using bytes = std::vector<uint8_t>;

constexpr uint8_t tcp_flags_fin = 0x01, tcp_flags_syn = 0x02, tcp_flags_rst = 0x04,
                  tcp_flags_psh = 0x08, tcp_flags_ack = 0x10;

// IPv6 extension header types (and upper-layer protocol numbers).
namespace proto {
constexpr uint8_t hop_by_hop = 0, icmp = 1, tcp = 6, udp = 17, routing = 43, fragment = 44,
                  ah = 51, icmpv6 = 58, no_next = 59, dest_options = 60;
}

// "192.0.2.1" -> 4 network-order bytes; throws on garbage.
inline std::array<uint8_t, 4> ip4(const std::string& s) {
    std::array<uint8_t, 4> a{};
    if (inet_pton(AF_INET, s.c_str(), a.data()) != 1) throw std::invalid_argument("bad IPv4: " + s);
    return a;
}
// "192.0.2.1" -> host-order integer (as parsed_packet::src4).
inline uint32_t ip4_host(const std::string& s) {
    const auto a = ip4(s);
    return uint32_t{a[0]} << 24 | uint32_t{a[1]} << 16 | uint32_t{a[2]} << 8 | a[3];
}
// "2001:db8::1" -> 16 network-order bytes; throws on garbage.
inline std::array<uint8_t, 16> ip6(const std::string& s) {
    std::array<uint8_t, 16> a{};
    if (inet_pton(AF_INET6, s.c_str(), a.data()) != 1) throw std::invalid_argument("bad IPv6: " + s);
    return a;
}

namespace detail {
inline void put16(bytes& b, uint16_t v) { b.push_back(uint8_t(v >> 8)); b.push_back(uint8_t(v)); }
inline void put32(bytes& b, uint32_t v) { put16(b, uint16_t(v >> 16)); put16(b, uint16_t(v)); }
inline void set16(bytes& b, size_t at, uint16_t v) { b[at] = uint8_t(v >> 8); b[at + 1] = uint8_t(v); }
inline uint32_t sum(const uint8_t* p, size_t n, uint32_t s = 0) {
    for (; n > 1; p += 2, n -= 2) s += uint32_t(p[0]) << 8 | p[1];
    if (n) s += uint32_t(p[0]) << 8;
    return s;
}
inline uint16_t fold(uint32_t s) {
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return uint16_t(~s);
}
}  // namespace detail

// The Internet checksum of `n` bytes (plus an unfolded `initial` sum).
inline uint16_t internet_checksum(const uint8_t* p, size_t n, uint32_t initial = 0) {
    return detail::fold(detail::sum(p, n, initial));
}

// Copy of `frame` cut to its first `n` bytes (whole frame if shorter).
inline bytes truncated(bytes frame, size_t n) {
    frame.resize(std::min(n, frame.size()));
    return frame;
}

class frame_builder {
public:
    struct vlan_tag { uint16_t tpid, tci; };
    struct ext_header { uint8_t type; bytes body; };  // body without next/len bytes

    // --- Layer 2 -------------------------------------------------------------
    frame_builder& macs(std::array<uint8_t, 6> dst, std::array<uint8_t, 6> src) { dst_mac_ = dst; src_mac_ = src; return *this; }
    // Adds a tag (outermost first). TPID 0x8100, 0x88a8 or 0x9100.
    frame_builder& vlan(uint16_t vid, uint16_t tpid = 0x8100, uint8_t pcp = 0) { tags_.push_back({tpid, uint16_t(pcp << 13 | (vid & 0xfff))}); return *this; }
    // Final EtherType, for non-IP frames (e.g. 0x0806 ARP with payload()).
    frame_builder& ethertype(uint16_t t) { ethertype_ = t; return *this; }

    // --- PPPoE session (0x8864) ------------------------------------------------
    // compressed: one-byte PPP protocol (0x21 / 0x57) instead of two.
    frame_builder& pppoe(uint16_t session = 1, bool compressed = false) { pppoe_ = true; pppoe_session_ = session; ppp_compressed_ = compressed; return *this; }
    frame_builder& ppp_protocol(uint16_t p) { ppp_protocol_ = p; return *this; }      // e.g. 0xc021 LCP
    frame_builder& pppoe_version_type(uint8_t vt) { pppoe_vt_ = vt; return *this; }   // default 0x11
    frame_builder& pppoe_code(uint8_t c) { pppoe_code_ = c; return *this; }           // default 0x00
    frame_builder& pppoe_length(uint16_t l) { pppoe_length_ = l; return *this; }      // override

    // --- IPv4 ------------------------------------------------------------------
    frame_builder& ipv4(const std::string& src, const std::string& dst) {
        ip_ = 4; src4_ = ip4(src); dst4_ = ip4(dst); return *this;
    }
    frame_builder& ipv4_options(bytes opts) { ipv4_options_ = std::move(opts); return *this; }  // padded to 4
    // offset in 8-byte units; more = MF bit.
    frame_builder& ipv4_fragment(uint16_t offset, bool more, bool dont_fragment = false) {
        frag_offset_ = offset; frag_more_ = more; ipv4_df_ = dont_fragment; return *this;
    }
    frame_builder& ipv4_total_length(uint16_t l) { ipv4_total_length_ = l; return *this; }  // override
    frame_builder& ipv4_ihl(uint8_t words) { ipv4_ihl_ = words; return *this; }             // override
    frame_builder& ip_version(uint8_t v) { ip_version_override_ = v; return *this; }        // override (v4 or v6 header)
    frame_builder& ip_protocol(uint8_t p) { ip_protocol_ = p; return *this; }  // IPv4 protocol / last IPv6 next header

    // --- IPv6 ------------------------------------------------------------------
    frame_builder& ipv6(const std::string& src, const std::string& dst) {
        ip_ = 6; src6_ = ip6(src); dst6_ = ip6(dst); return *this;
    }
    // Extension headers, in call order. `len8`/`pad` extend the header.
    frame_builder& hop_by_hop(uint8_t extra8 = 0) { return options_header(proto::hop_by_hop, extra8); }
    frame_builder& dest_options(uint8_t extra8 = 0) { return options_header(proto::dest_options, extra8); }
    frame_builder& routing(uint8_t extra8 = 0) {
        bytes b{253, 0, 0, 0, 0, 0};  // experimental type (RFC 4727), segments left 0
        b.resize(6 + 8u * extra8, 0);
        return ext(proto::routing, std::move(b));
    }
    // offset in 8-byte units; more = M bit.
    frame_builder& fragment_header(uint16_t offset, bool more, uint32_t id = 0x5eb15e) {
        bytes b;
        detail::put16(b, uint16_t(offset << 3 | (more ? 1 : 0)));
        detail::put32(b, id);
        return ext(proto::fragment, std::move(b));
    }
    // AH with a 12-byte ICV (24 bytes in all).
    frame_builder& ah(uint32_t spi = 0x100) {
        bytes b{0, 0};
        detail::put32(b, spi);
        detail::put32(b, 1);
        b.resize(22, 0xa5);
        return ext(proto::ah, std::move(b));
    }
    // Any extension header: `body` is everything after the next-header and
    // length bytes; the length byte is derived from it (AH: 4-byte units).
    frame_builder& ext(uint8_t type, bytes body) { ext_.push_back({type, std::move(body)}); return *this; }
    frame_builder& ipv6_next_header(uint8_t nh) { ipv6_next_header_ = nh; return *this; }       // override, fixed header
    frame_builder& ipv6_payload_length(uint16_t l) { ipv6_payload_length_ = l; return *this; }  // override

    // A fragment: keep only the first `n` bytes after the IPv4 header or, for
    // IPv6, after the fragment header (or fixed header if none), with IP lengths
    // matching what is kept. Checksums stay those of the whole datagram.
    frame_builder& fragment_bytes(size_t n) { fragment_bytes_ = n; return *this; }

    // --- Layer 4 ---------------------------------------------------------------
    frame_builder& tcp(uint16_t sport, uint16_t dport) { l4_ = l4::tcp; sport_ = sport; dport_ = dport; return *this; }
    frame_builder& seq(uint32_t s) { seq_ = s; return *this; }
    frame_builder& ack(uint32_t a) { ack_ = a; return *this; }
    frame_builder& flags(uint8_t f) { flags_ = f; return *this; }
    frame_builder& window(uint16_t w) { window_ = w; return *this; }
    frame_builder& tcp_options(bytes o) { tcp_options_ = std::move(o); return *this; }   // padded to 4
    frame_builder& tcp_data_offset(uint8_t words) { tcp_doff_ = words; return *this; }    // override
    frame_builder& udp(uint16_t sport, uint16_t dport) { l4_ = l4::udp; sport_ = sport; dport_ = dport; return *this; }
    frame_builder& icmp(uint8_t type = 8, uint8_t code = 0) { l4_ = l4::icmp; icmp_type_ = type; icmp_code_ = code; return *this; }
    // Bytes after the L4 header (or after L3 / L2 when there is none).
    frame_builder& payload(bytes p) { payload_ = std::move(p); return *this; }
    frame_builder& payload(size_t n, uint8_t fill = 0x61) { payload_.assign(n, fill); return *this; }

    // --- Output ------------------------------------------------------------------
    frame_builder& pad_to(size_t n) { pad_to_ = n; return *this; }       // zero pad (e.g. 60)
    frame_builder& truncate(size_t n) { truncate_ = n; return *this; }    // cut the built frame

    bytes build() const {
        bytes l3 = ip_ == 4 ? build_ipv4() : ip_ == 6 ? build_ipv6() : payload_;
        bytes f(dst_mac_.begin(), dst_mac_.end());
        f.insert(f.end(), src_mac_.begin(), src_mac_.end());
        for (const auto& t : tags_) { detail::put16(f, t.tpid); detail::put16(f, t.tci); }
        if (pppoe_) {
            const uint16_t proto = ppp_protocol_ ? *ppp_protocol_ : ip_ == 6 ? 0x0057 : 0x0021;
            bytes ppp;
            if (ppp_compressed_) ppp.push_back(uint8_t(proto)); else detail::put16(ppp, proto);
            ppp.insert(ppp.end(), l3.begin(), l3.end());
            detail::put16(f, 0x8864);
            f.push_back(pppoe_vt_);
            f.push_back(pppoe_code_);
            detail::put16(f, pppoe_session_);
            detail::put16(f, pppoe_length_ ? *pppoe_length_ : uint16_t(ppp.size()));
            f.insert(f.end(), ppp.begin(), ppp.end());
        } else {
            detail::put16(f, ethertype_ ? *ethertype_ : ip_ == 4 ? 0x0800 : ip_ == 6 ? 0x86dd : 0x88b5);
            f.insert(f.end(), l3.begin(), l3.end());
        }
        if (f.size() < pad_to_) f.resize(pad_to_, 0);
        if (truncate_ && f.size() > *truncate_) f.resize(*truncate_);
        return f;
    }

private:
    enum class l4 { none, tcp, udp, icmp };

    frame_builder& options_header(uint8_t type, uint8_t extra8) {
        bytes b{1, 4, 0, 0, 0, 0};  // PadN filling the first 8 bytes
        for (unsigned i = 0; i < extra8; ++i) b.insert(b.end(), {1, 6, 0, 0, 0, 0, 0, 0});
        return ext(type, std::move(b));
    }

    uint8_t upper_protocol() const {
        if (ip_protocol_) return *ip_protocol_;
        switch (l4_) {
        case l4::tcp: return proto::tcp;
        case l4::udp: return proto::udp;
        case l4::icmp: return ip_ == 6 ? proto::icmpv6 : proto::icmp;
        case l4::none: break;
        }
        return proto::no_next;
    }

    // Pseudo-header sum for TCP/UDP/ICMPv6 checksums.
    uint32_t pseudo(uint8_t protocol, size_t len) const {
        uint32_t s = ip_ == 4 ? detail::sum(src4_.data(), 4, detail::sum(dst4_.data(), 4))
                              : detail::sum(src6_.data(), 16, detail::sum(dst6_.data(), 16));
        return s + protocol + uint32_t(len & 0xffff) + uint32_t(len >> 16);
    }

    bytes build_l4() const {
        bytes s;
        if (l4_ == l4::tcp) {
            bytes opts = tcp_options_;
            opts.resize((opts.size() + 3) / 4 * 4, 0);
            detail::put16(s, sport_); detail::put16(s, dport_);
            detail::put32(s, seq_); detail::put32(s, ack_);
            s.push_back(uint8_t((tcp_doff_ ? *tcp_doff_ : 5 + opts.size() / 4) << 4));
            s.push_back(flags_);
            detail::put16(s, window_); detail::put16(s, 0); detail::put16(s, 0);
            s.insert(s.end(), opts.begin(), opts.end());
            s.insert(s.end(), payload_.begin(), payload_.end());
            detail::set16(s, 16, internet_checksum(s.data(), s.size(), pseudo(proto::tcp, s.size())));
        } else if (l4_ == l4::udp) {
            detail::put16(s, sport_); detail::put16(s, dport_);
            detail::put16(s, uint16_t(8 + payload_.size())); detail::put16(s, 0);
            s.insert(s.end(), payload_.begin(), payload_.end());
            uint16_t c = internet_checksum(s.data(), s.size(), pseudo(proto::udp, s.size()));
            detail::set16(s, 6, c == 0 ? 0xffff : c);
        } else if (l4_ == l4::icmp) {
            s = {icmp_type_, icmp_code_, 0, 0, 0, 1, 0, 1};
            s.insert(s.end(), payload_.begin(), payload_.end());
            detail::set16(s, 2, internet_checksum(s.data(), s.size(), ip_ == 6 ? pseudo(proto::icmpv6, s.size()) : 0));
        } else {
            s = payload_;
        }
        return s;
    }

    bytes build_ipv4() const {
        bytes opts = ipv4_options_;
        opts.resize((opts.size() + 3) / 4 * 4, 0);
        bytes body = build_l4();
        if (fragment_bytes_ && *fragment_bytes_ < body.size()) body.resize(*fragment_bytes_);
        const size_t hlen = 20 + opts.size();
        bytes h;
        h.push_back(uint8_t((ip_version_override_ ? *ip_version_override_ : 4) << 4 |
                            (ipv4_ihl_ ? *ipv4_ihl_ : hlen / 4)));
        h.push_back(0);
        detail::put16(h, ipv4_total_length_ ? *ipv4_total_length_ : uint16_t(hlen + body.size()));
        detail::put16(h, 0x1234);
        detail::put16(h, uint16_t((ipv4_df_ ? 0x4000 : 0) | (frag_more_ ? 0x2000 : 0) | (frag_offset_ & 0x1fff)));
        h.push_back(64);
        h.push_back(upper_protocol());
        detail::put16(h, 0);
        h.insert(h.end(), src4_.begin(), src4_.end());
        h.insert(h.end(), dst4_.begin(), dst4_.end());
        h.insert(h.end(), opts.begin(), opts.end());
        detail::set16(h, 10, internet_checksum(h.data(), h.size()));
        h.insert(h.end(), body.begin(), body.end());
        return h;
    }

    bytes build_ipv6() const {
        // Extension headers, each pointing at the next; the last at L4.
        bytes chain;
        size_t frag_end = 0;  // where the fragmentable part starts
        for (size_t i = 0; i < ext_.size(); ++i) {
            const auto& e = ext_[i];
            const uint8_t next = i + 1 < ext_.size() ? ext_[i + 1].type : upper_protocol();
            const size_t total = 2 + e.body.size();
            chain.push_back(next);
            chain.push_back(e.type == proto::ah         ? uint8_t(total / 4 - 2)
                            : e.type == proto::fragment ? uint8_t(0)
                                                        : uint8_t(total / 8 - 1));
            chain.insert(chain.end(), e.body.begin(), e.body.end());
            if (e.type == proto::fragment) frag_end = chain.size();
        }
        bytes body = chain;
        const bytes seg = build_l4();
        body.insert(body.end(), seg.begin(), seg.end());
        if (fragment_bytes_ && frag_end + *fragment_bytes_ < body.size()) body.resize(frag_end + *fragment_bytes_);
        bytes h;
        detail::put32(h, uint32_t(ip_version_override_ ? *ip_version_override_ : 6) << 28);
        detail::put16(h, ipv6_payload_length_ ? *ipv6_payload_length_ : uint16_t(body.size()));
        h.push_back(ipv6_next_header_ ? *ipv6_next_header_ : ext_.empty() ? upper_protocol() : ext_[0].type);
        h.push_back(64);
        h.insert(h.end(), src6_.begin(), src6_.end());
        h.insert(h.end(), dst6_.begin(), dst6_.end());
        h.insert(h.end(), body.begin(), body.end());
        return h;
    }

    std::array<uint8_t, 6> dst_mac_{0x02, 0, 0, 0, 0, 0x02}, src_mac_{0x02, 0, 0, 0, 0, 0x01};
    std::vector<vlan_tag> tags_;
    std::optional<uint16_t> ethertype_;
    bool pppoe_ = false, ppp_compressed_ = false;
    uint16_t pppoe_session_ = 1;
    uint8_t pppoe_vt_ = 0x11, pppoe_code_ = 0;
    std::optional<uint16_t> ppp_protocol_, pppoe_length_;

    int ip_ = 0;
    std::array<uint8_t, 4> src4_{}, dst4_{};
    std::array<uint8_t, 16> src6_{}, dst6_{};
    std::optional<uint8_t> ip_version_override_, ip_protocol_, ipv4_ihl_, ipv6_next_header_;
    bytes ipv4_options_;
    uint16_t frag_offset_ = 0;
    bool frag_more_ = false, ipv4_df_ = false;
    std::optional<uint16_t> ipv4_total_length_, ipv6_payload_length_;
    std::vector<ext_header> ext_;
    std::optional<size_t> fragment_bytes_;

    l4 l4_ = l4::none;
    uint16_t sport_ = 0, dport_ = 0, window_ = 65535;
    uint32_t seq_ = 0, ack_ = 0;
    uint8_t flags_ = 0, icmp_type_ = 8, icmp_code_ = 0;
    std::optional<uint8_t> tcp_doff_;
    bytes tcp_options_, payload_;
    size_t pad_to_ = 0;
    std::optional<size_t> truncate_;
};

}  // namespace sekisho::test
