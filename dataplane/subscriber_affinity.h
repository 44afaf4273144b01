// Which worker owns a subscriber: the software twin of RSS on the
// subscriber-side address (access: source, core: destination), with IPv6
// keyed by the delegated prefix so every address of one subscriber maps to one
// worker. Replay dispatches with it; live mode relies on the NIC's RSS.
#pragma once

#include <cstdint>
#include <cstring>

#include "dataplane/op25b_classifier.h"
#include "dataplane/net/packet_parser.h"
#include "dataplane/limits/subscriber_table.h"

namespace sekisho {

inline uint64_t subscriber_key_hash(const parsed_packet& p, ingress in, uint8_t ipv6_prefix_length) {
    auto mix = [](uint64_t x) {  // splitmix64 finaliser
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebull;
        return x ^ (x >> 31);
    };
    if (p.ip_version == 4) return mix(in == ingress::access ? p.src4 : p.dst4);
    if (p.ip_version == 6) {
        // The subscriber is its delegated prefix: the key keeps only those bits.
        const subscriber_key k = subscriber_key::v6(in == ingress::access ? p.src6() : p.dst6(), ipv6_prefix_length);
        uint64_t hi, lo;
        std::memcpy(&hi, k.addr, 8);
        std::memcpy(&lo, k.addr + 8, 8);
        return mix(hi ^ mix(lo));
    }
    return 0;  // non-IP: worker 0
}

}  // namespace sekisho
