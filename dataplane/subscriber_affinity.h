// Which worker owns a subscriber: the software twin of RSS on the
// subscriber-side address (access: source, core: destination), with IPv6
// keyed by the delegated prefix so every address of one subscriber maps to one
// worker. Replay dispatches with it; live mode relies on the NIC's RSS.
#pragma once

#include <cstdint>
#include <cstring>

#include "op25b_classifier.h"
#include "packet_parser.h"

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
        const uint8_t* a = in == ingress::access ? p.src6() : p.dst6();
        uint64_t hi, lo;
        // Keep only the prefix bits (in network byte order, so mask bytes).
        uint8_t masked[16];
        std::memcpy(masked, a, 16);
        for (unsigned bit = ipv6_prefix_length; bit < 128; ++bit)
            masked[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
        std::memcpy(&hi, masked, 8);
        std::memcpy(&lo, masked + 8, 8);
        return mix(hi ^ mix(lo));
    }
    return 0;  // non-IP: worker 0
}

}  // namespace sekisho
