// The rte_hash hash function of Sekisho's tables (subscriber_table, bounded_table).
#pragma once

#include <rte_hash_crc.h>

#include <cstdint>
#include <cstring>

namespace sekisho {

// CRC32-C exactly as rte_hash_crc() computes it, but with memcpy loads, so it is
// defined for a key at any address. Our keys (subscriber_key, flow_key) are byte
// arrays with alignment 1 that callers build on the stack or inside flow state;
// rte_hash_crc() dereferences them as uint64_t* / uint32_t*, a misaligned load
// (undefined behaviour; UBSan reports it, x86 happens to tolerate it). Same
// values, same speed: the memcpys compile to the same unaligned moves.
inline uint32_t key_hash_crc(const void* key, uint32_t length, uint32_t init) {
    const auto* p = static_cast<const uint8_t*>(key);
    for (; length >= 8; p += 8, length -= 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);
        init = rte_hash_crc_8byte(v, init);
    }
    if (length & 4) {
        uint32_t v;
        std::memcpy(&v, p, 4);
        init = rte_hash_crc_4byte(v, init);
        p += 4;
    }
    if (length & 2) {
        uint16_t v;
        std::memcpy(&v, p, 2);
        init = rte_hash_crc_2byte(v, init);
        p += 2;
    }
    if (length & 1) init = rte_hash_crc_1byte(*p, init);
    return init;
}

}  // namespace sekisho
