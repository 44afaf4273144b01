// The TCP segments Sekisho injects into a connection it judges, built from the
// segment `p` that triggered them: the RST that answers a blocked segment
// (build_tcp_reset) and any segment toward either end of p's connection
// (build_tcp_segment: the send-rate limits' resets and 421 replies).
//
// A segment keeps p's encapsulation (MACs swapped going back to p's sender,
// VLAN tags and the PPPoE session header copied, PPPoE length fixed) so it
// reaches the subscriber through the same access path. No DPDK dependency:
// segment_injector (dataplane/pipeline.h) puts the frames into mbufs.
#pragma once

#include <cstdint>

#include "dataplane/net/packet_parser.h"

namespace sekisho {

// Largest reset: Ethernet + 2 VLAN tags + PPPoE + IPv6 + TCP.
constexpr uint16_t tcp_reset_max_len = 14 + 8 + 8 + 40 + 20;

// The RST answering p, sent back to its source. Sequence numbers follow
// RFC 9293 sec. 3.10.7.1: if p carried an ACK, the reset takes its sequence
// number from it; otherwise seq = 0 and it acknowledges p. Returns the frame
// length written to `out` (at least 60 bytes, zero padded), or 0 if `p` is not
// a complete TCP segment or is itself a reset.
uint16_t build_tcp_reset(const parsed_packet& p, uint8_t* out);

// A segment Sekisho injects into the connection `p` belongs to, either back
// toward p's sender (addresses, ports and MACs swapped) or onward toward p's
// destination (as if p's sender had sent it), through p's encapsulation.
struct tcp_segment_spec {
    bool to_sender = true;
    uint32_t seq = 0, ack = 0;
    uint8_t flags = 0;
    const uint8_t* payload = nullptr;
    uint16_t payload_len = 0;
};
constexpr uint16_t tcp_segment_max_header = tcp_reset_max_len;

// Writes the frame to `out` (room for tcp_segment_max_header + payload_len,
// and at least 60 bytes); returns its length, 0 if `p` is not a complete
// TCP segment.
uint16_t build_tcp_segment(const parsed_packet& p, const tcp_segment_spec& spec, uint8_t* out);

}  // namespace sekisho
