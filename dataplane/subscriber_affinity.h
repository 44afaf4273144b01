// The subscriber a frame belongs to: its key in the subscriber tables, and the
// worker that owns it.
//
// The subscriber side is the access side's source address or the core side's
// destination; IPv4 by its address, IPv6 by its delegated prefix (the policy's
// ipv6_prefix_length), so every address of one subscriber has one key. The
// mail tracker's limit records, the subscriber table's bindings and replay's
// worker dispatch all key subscribers this way. Live mode relies on the NIC's
// RSS on the same address; subscriber_key_hash is its software twin, with
// which replay dispatches.
#pragma once

#include <cstdint>
#include <cstring>

#include "dataplane/limits/subscriber_table.h"
#include "dataplane/net/packet_parser.h"
#include "dataplane/net/wire.h"
#include "dataplane/op25b_classifier.h"

namespace sekisho {

// The subscriber key of frame p received on `in`, IPv6 cut to
// `ipv6_prefix_length` bits (128: the address itself). A frame that is not IP
// gives the empty key (family 0), which no binding has.
inline subscriber_key subscriber_key_of(const parsed_packet& p, ingress in, uint8_t ipv6_prefix_length) {
    if (p.ip_version == 4) return subscriber_key::v4(in == ingress::access ? p.src4 : p.dst4);
    if (p.ip_version == 6) return subscriber_key::v6(in == ingress::access ? p.src6() : p.dst6(), ipv6_prefix_length);
    return subscriber_key{};
}

// Spreads subscriber keys over workers: equal keys, equal hashes; the empty
// key (not IP) hashes to 0, worker 0.
inline uint64_t subscriber_key_hash(const subscriber_key& k) {
    auto mix = [](uint64_t x) {  // splitmix64 finaliser
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebull;
        return x ^ (x >> 31);
    };
    if (k.family == 4) return mix(wire::load32(k.addr));
    if (k.family == 6) {
        uint64_t hi, lo;
        std::memcpy(&hi, k.addr, 8);
        std::memcpy(&lo, k.addr + 8, 8);
        return mix(hi ^ mix(lo));
    }
    return 0;
}

}  // namespace sekisho
