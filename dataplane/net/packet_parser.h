// Frame parser for the Sekisho data plane.
//
// Reads Ethernet, up to two VLAN tags (802.1Q, QinQ with 0x88a8/0x8100/0x9100
// outer), a PPPoE session header (0x8864) carrying IPv4 or IPv6, IPv4 (options,
// fragments), IPv6 (extension-header chain, fragments) and TCP. It never reads
// past `len`, never allocates and has no DPDK dependency, so the same code runs
// in the worker, the tests, the fuzzer and the differential test against XDP.
//
// What it reports is the fact base for the classifier; the forwarding rule for
// each outcome is in docs/architecture.md ("What is forwarded").
#pragma once

#include <cstddef>
#include <cstdint>

namespace sekisho {

// Why a frame could not be fully parsed. `none` means the frame is well formed
// as far as Sekisho reads it. Order and names are stable: they index counters
// and appear in summary.json and metrics.
enum class parse_error : uint8_t {
    none = 0,
    truncated_ethernet,      // shorter than an Ethernet header
    truncated_vlan,          // VLAN tag cut off
    vlan_too_deep,           // more than two VLAN tags
    truncated_pppoe,         // PPPoE session header or PPP protocol cut off
    bad_pppoe,               // PPPoE version/type/code or length field invalid
    truncated_ipv4,          // less than 20 bytes of IPv4 header
    bad_ipv4_header,         // version != 4 or IHL < 5
    bad_ipv4_length,         // total length below header length or beyond frame
    truncated_ipv6,          // less than 40 bytes of IPv6 header
    bad_ipv6_header,         // version != 6
    bad_ipv6_length,         // payload length beyond frame
    ipv6_chain_too_long,     // more extension headers than the bound allows
    bad_ipv6_extension,      // extension header length runs past the packet
    truncated_tcp,           // unfragmented TCP segment without a whole header
    bad_tcp_offset,          // TCP data offset below 5 words
    tcp_fragment_overlap,    // IPv4 TCP fragment at offset 8 (RFC 1858 overlap)
    count_
};
constexpr size_t parse_error_count = static_cast<size_t>(parse_error::count_);
const char* to_string(parse_error e);

// What a parsed frame is, from the point of view of the OP25B decision.
enum class frame_kind : uint8_t {
    malformed = 0,       // see parse_error
    non_ip,              // not IPv4/IPv6 (ARP, PPPoE discovery, LCP, LLDP, ...)
    ip_other,            // IP, but not TCP, or no L4 header in this packet
    ip_tcp,              // IP + complete TCP header: ports and flags valid
    ip_fragment_later,   // non-first fragment: no L4 header by design
    ip_first_fragment_incomplete,  // first fragment that does not carry the
                                   // whole header chain + TCP header (RFC 7112,
                                   // and the IPv4 tiny-fragment case)
};

// TCP flag bits as on the wire.
namespace tcp_flag {
constexpr uint8_t fin = 0x01, syn = 0x02, rst = 0x04, psh = 0x08, ack = 0x10;
}

// Bounds on what the parser walks. A chain longer than this is not normal
// traffic; it is an evasion attempt or garbage (RFC 7112, RFC 8200 sec. 4.1).
constexpr unsigned max_vlan_tags = 2;
constexpr unsigned max_ipv6_extension_headers = 8;

struct parsed_packet {
    frame_kind kind = frame_kind::malformed;
    parse_error error = parse_error::none;
    uint8_t ip_version = 0;       // 4 or 6 when the frame carries IP
    uint8_t l4_proto = 0;         // final upper-layer protocol number (6 = TCP)
    uint8_t vlan_tags = 0;
    bool pppoe = false;
    bool fragment = false;        // IPv4 MF/offset or an IPv6 fragment header
    uint8_t tcp_flags = 0;

    uint16_t l3_offset = 0;       // start of the IP header in the frame
    uint16_t pppoe_offset = 0;    // start of the PPPoE header (valid if pppoe)
    uint16_t l4_offset = 0;       // start of the TCP header (valid if ip_tcp)
    uint16_t l3_len = 0;          // IP header + payload per the IP length field
    uint16_t l4_len = 0;          // bytes from l4_offset to the IP end
    uint16_t tcp_header_len = 0;  // data offset * 4

    uint16_t src_port = 0, dst_port = 0;   // host order
    uint32_t tcp_seq = 0, tcp_ack = 0;     // host order

    // IPv4 addresses in host order (valid when ip_version == 4).
    uint32_t src4 = 0, dst4 = 0;

    const uint8_t* frame = nullptr;  // the frame this describes

    // IPv6 addresses as the 16 wire bytes (valid when ip_version == 6).
    const uint8_t* src6() const { return frame + l3_offset + 8; }
    const uint8_t* dst6() const { return frame + l3_offset + 24; }
};

// Parses `len` bytes of an Ethernet frame. Always fills `out` completely;
// returns out.kind.
frame_kind parse_frame(const uint8_t* frame, uint32_t len, parsed_packet& out);

}  // namespace sekisho
