// The splitmix64 finaliser: a fast, well-mixing 64-bit bijection. Message
// fingerprints and the campaign table's slots and checks are derived from it,
// so its constants are part of what a fingerprint is: other constants would
// give every message another fingerprint.
#pragma once

#include <cstdint>

namespace sekisho {

constexpr uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

}  // namespace sekisho
