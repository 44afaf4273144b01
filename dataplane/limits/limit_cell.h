// One limit's state for one subscriber, 16 bytes: a 64-bit word updated by
// compare-and-swap (exact when several workers share it, account scope;
// uncontended when one worker owns it, address and prefix scopes) and the
// cool-down deadline a hit sets (relaxed atomics: workers sharing an account's
// cell may see a new deadline a few events apart; no ordering rides on it).
//
// Two algorithms, both deterministic functions of the packet clock:
//  - rate (connections per second): GCRA, the "virtual scheduling" form of a
//    token bucket (ITU-T I.371). The word holds the theoretical arrival time;
//    a request conforms when now >= tat - burst_tolerance.
//  - count per fixed window (messages, recipients, rejected recipients per
//    window): windows are aligned to multiples of the window length since the
//    epoch, so a replay counts exactly as the live run did. The word holds
//    (window index << 32 | count).
#pragma once

#include <atomic>
#include <cstdint>

namespace sekisho {

struct limit_cell {
    uint64_t word = 0;
    uint64_t cooldown_until_ns = 0;  // after a hit, the limit stays tripped until then

    std::atomic_ref<uint64_t> atomic() { return std::atomic_ref<uint64_t>(word); }
};
static_assert(sizeof(limit_cell) == 16);

// GCRA: `interval_ns` = window / max (one conforming request every interval),
// `tolerance_ns` = (burst - 1) * interval. Returns true if the request conforms
// (and books it); false if it exceeds the rate (nothing booked).
inline bool gcra_take(limit_cell& c, uint64_t now_ns, uint64_t interval_ns, uint64_t tolerance_ns) {
    auto w = c.atomic();
    uint64_t tat = w.load(std::memory_order_relaxed);
    for (;;) {
        const uint64_t base = tat > now_ns ? tat : now_ns;
        if (base - now_ns > tolerance_ns) return false;
        if (w.compare_exchange_weak(tat, base + interval_ns, std::memory_order_relaxed)) return true;
    }
}

// The index of the window holding `now_ns`, modulo 2^32 (what a cell's word
// and a fleet share carry).
inline uint32_t count_window_index(uint64_t now_ns, uint64_t window_ns) {
    return static_cast<uint32_t>((now_ns / window_ns) & 0xffffffffull);
}

// Fixed window: adds `n` to the current window's count if the result stays
// within `max`; returns the count after the attempt and whether it was booked.
struct window_result {
    uint32_t count;
    bool booked;
};
inline window_result window_add(limit_cell& c, uint64_t now_ns, uint64_t window_ns, uint32_t max, uint32_t n = 1) {
    auto w = c.atomic();
    uint64_t old = w.load(std::memory_order_relaxed);
    for (;;) {
        // Workers' clocks differ a little (and a lot in a replay with several
        // workers): an event older than the cell's window counts in that
        // newer window instead of restarting an old one.
        uint64_t index = (now_ns / window_ns) & 0xffffffffull;
        if (static_cast<int32_t>(static_cast<uint32_t>(old >> 32) - static_cast<uint32_t>(index)) > 0) index = old >> 32;
        const uint32_t count = (old >> 32) == index ? static_cast<uint32_t>(old) : 0;
        if (static_cast<uint64_t>(count) + n > max) return {count, false};
        const uint64_t next = index << 32 | (count + n);
        if (w.compare_exchange_weak(old, next, std::memory_order_relaxed)) return {count + n, true};
    }
}

// Reading a cell from another thread than the ones that count in it (the
// control thread's `limits show`): relaxed loads, no booking. The count in the
// window of `now_ns` (a cell whose window is newer counts as current, as in
// window_add; an older one as 0).
inline uint32_t window_count(const limit_cell& c, uint64_t now_ns, uint64_t window_ns) {
    const uint64_t word = std::atomic_ref<const uint64_t>(c.word).load(std::memory_order_relaxed);
    const uint32_t index = count_window_index(now_ns, window_ns);
    return static_cast<int32_t>(static_cast<uint32_t>(word >> 32) - index) >= 0 ? static_cast<uint32_t>(word) : 0;
}
// GCRA: requests booked ahead of `now_ns`, i.e. how full the burst is
// (gcra_take refuses once this reaches the burst).
inline uint32_t gcra_in_burst(const limit_cell& c, uint64_t now_ns, uint64_t interval_ns) {
    const uint64_t tat = std::atomic_ref<const uint64_t>(c.word).load(std::memory_order_relaxed);
    if (tat <= now_ns || interval_ns == 0) return 0;
    return static_cast<uint32_t>((tat - now_ns + interval_ns - 1) / interval_ns);
}
inline uint64_t cooldown_until(const limit_cell& c) {
    return std::atomic_ref<const uint64_t>(c.cooldown_until_ns).load(std::memory_order_relaxed);
}
// Forgets the count and the cool-down, from any thread, while workers may be
// counting in the cell. The word first: a worker between the two stores sees
// the old cool-down and refuses (a refusal inside a cool-down changes
// nothing); clearing the cool-down first would let it see the old count,
// refuse, and start a new cool-down. A worker's compare-and-swap that read the
// old word fails and retries on the cleared one, so no count is lost or
// resurrected: the clear is one atomic store, ordered with the workers' CAS
// like any of theirs.
inline void clear_cell(limit_cell& c) {
    std::atomic_ref<uint64_t>(c.word).store(0, std::memory_order_relaxed);
    std::atomic_ref<uint64_t>(c.cooldown_until_ns).store(0, std::memory_order_relaxed);
}

// Fleet mode (account scope, count per window): the count of the account's
// other gateways in one window, as one word (window index << 32 | count) so
// that a share from an older window counts as 0 without anyone clearing it.
// The control thread stores it (relaxed, whole word); the workers load it
// (relaxed) and refuse when their own count plus the share passes the max.
inline uint64_t fleet_share_word(uint32_t window, uint32_t count) {
    return static_cast<uint64_t>(window) << 32 | count;
}
inline void store_fleet_share(uint64_t& share, uint32_t window, uint32_t count) {
    std::atomic_ref<uint64_t>(share).store(fleet_share_word(window, count), std::memory_order_relaxed);
}
// The share in the window of `now_ns`; 0 when it was counted in another one.
inline uint32_t fleet_share_count(const uint64_t& share, uint64_t now_ns, uint64_t window_ns) {
    const uint64_t word = std::atomic_ref<const uint64_t>(share).load(std::memory_order_relaxed);
    return static_cast<uint32_t>(word >> 32) == count_window_index(now_ns, window_ns) ? static_cast<uint32_t>(word) : 0;
}

// window_add for a cell the other gateways count in too: their share of the
// window takes its part of `max`. The count returned is the fleet's (own +
// share); not booked when it would pass `max`.
inline window_result window_add_shared(limit_cell& c, const uint64_t& share, uint64_t now_ns, uint64_t window_ns,
                                       uint32_t max, uint32_t n = 1) {
    const uint32_t others = fleet_share_count(share, now_ns, window_ns);
    const window_result w = window_add(c, now_ns, window_ns, max > others ? max - others : 0, n);
    return {w.count + others, w.booked};
}

inline bool in_cooldown(limit_cell& c, uint64_t now_ns) {
    return std::atomic_ref<uint64_t>(c.cooldown_until_ns).load(std::memory_order_relaxed) > now_ns;
}
inline void start_cooldown(limit_cell& c, uint64_t until_ns) {
    std::atomic_ref<uint64_t>(c.cooldown_until_ns).store(until_ns, std::memory_order_relaxed);
}

}  // namespace sekisho
