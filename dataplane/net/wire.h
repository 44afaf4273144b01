// Network byte order loads/stores and the Internet checksum, with no DPDK
// dependency (shared by the parser, the RST builder, tests and fuzzers).
#pragma once

#include <cstddef>
#include <cstdint>

namespace sekisho::wire {

constexpr uint8_t ipproto_tcp = 6;

inline uint16_t load16(const uint8_t* p) {
    return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
inline uint32_t load32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
           static_cast<uint32_t>(p[2]) << 8 | p[3];
}
inline void store16(uint8_t* p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}
inline void store32(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v >> 24);
    p[1] = static_cast<uint8_t>(v >> 16);
    p[2] = static_cast<uint8_t>(v >> 8);
    p[3] = static_cast<uint8_t>(v);
}

// One's-complement sum of `len` bytes added to `sum` (not folded).
inline uint32_t checksum_add(uint32_t sum, const uint8_t* p, size_t len) {
    for (; len > 1; p += 2, len -= 2) sum += load16(p);
    if (len) sum += static_cast<uint32_t>(p[0]) << 8;
    return sum;
}
inline uint16_t checksum_fold(uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(~sum);
}

}  // namespace sekisho::wire
