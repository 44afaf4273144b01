// Lock-free campaign counters: see campaign_table.h for the layout, the error
// bounds and what happens when the table is full.
#include "dataplane/inspect/campaign_table.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>

#include "dataplane/inspect/mix64.h"

namespace sekisho {
namespace {

constexpr uint32_t window_mask = 0xffffff;
constexpr uint64_t bits_mask = (1ull << campaign_table::bits_per_word) - 1;

// a - b for 24-bit window indices that wrap.
constexpr int32_t diff24(uint32_t a, uint32_t b) {
    return static_cast<int32_t>(((a - b) & window_mask) << 8) >> 8;
}

constexpr uint16_t check_of(uint64_t h) {
    const auto c = static_cast<uint16_t>(h >> 48);
    return c ? c : 1;
}
constexpr uint16_t word_check(uint64_t w) { return static_cast<uint16_t>(w >> 48); }
constexpr uint32_t word_window(uint64_t w) { return static_cast<uint32_t>(w >> 24) & window_mask; }
constexpr uint32_t word_count(uint64_t w) { return static_cast<uint32_t>(w) & window_mask; }
constexpr uint64_t count_word(uint16_t check, uint32_t window, uint32_t count) {
    return static_cast<uint64_t>(check) << 48 | static_cast<uint64_t>(window) << 24 | count;
}

// Books n in a count word that must belong to `check` (or be fresh: check 0).
// False if it belongs to another key now (the cell was reclaimed).
bool add_count(uint64_t& word, uint16_t check, uint32_t window, uint32_t n, uint32_t& out_window,
               uint32_t& out_count) {
    std::atomic_ref<uint64_t> w(word);
    uint64_t old = w.load(std::memory_order_relaxed);
    for (;;) {
        const uint16_t oc = word_check(old);
        if (oc != 0 && oc != check) return false;
        uint32_t index = window, count = 0;
        if (oc != 0) {
            const uint32_t ow = word_window(old);
            if (diff24(ow, index) > 0) index = ow;  // a lagging clock counts in the newer window
            if (ow == index) count = word_count(old);
        }
        const uint32_t next = static_cast<uint32_t>(
            std::min<uint64_t>(static_cast<uint64_t>(count) + n, campaign_table::max_count));
        if (w.compare_exchange_weak(old, count_word(check, index, next), std::memory_order_acq_rel,
                                    std::memory_order_relaxed)) {
            out_window = index;
            out_count = next;
            return true;
        }
    }
}

// Counted two or more windows ago: history, the cell may take another key.
bool is_stale(uint64_t count, uint32_t window) {
    return word_check(count) != 0 && diff24(window, word_window(count)) >= 2;
}

// The count a cell holds for `window` (the newer of the two if the cell is ahead).
uint32_t read_count(uint64_t count, uint16_t check, uint32_t& window) {
    if (word_check(count) != check) return 0;
    if (diff24(word_window(count), window) > 0) window = word_window(count);
    return word_window(count) == window ? word_count(count) : 0;
}

uint64_t pair_key(uint64_t fingerprint, uint64_t subscriber) {
    const uint64_t k = mix64(fingerprint ^ mix64(subscriber + 0x9e3779b97f4a7c15ull));
    return k ? k : 1;
}

uint32_t round_up(uint32_t n) { return std::bit_ceil(std::max<uint32_t>(n, 16)); }

}  // namespace

campaign_table::campaign_table(uint32_t fingerprint_capacity, uint32_t pair_capacity)
    : fps_(new fingerprint_cell[round_up(fingerprint_capacity)]()),
      pairs_(new pair_cell[round_up(pair_capacity)]()),
      fp_mask_(round_up(fingerprint_capacity) - 1),
      pair_mask_(round_up(pair_capacity) - 1) {}

campaign_table::~campaign_table() = default;

size_t campaign_table::memory_bytes() const {
    return (static_cast<size_t>(fp_mask_) + 1) * sizeof(fingerprint_cell) +
           (static_cast<size_t>(pair_mask_) + 1) * sizeof(pair_cell);
}

uint32_t campaign_table::estimate(unsigned zero_bits) {
    static const std::array<uint32_t, bitmap_bits + 1> table = [] {
        std::array<uint32_t, bitmap_bits + 1> t{};
        t[0] = max_subscribers;
        for (unsigned z = 1; z <= bitmap_bits; ++z) {
            const double m = bitmap_bits;
            t[z] = static_cast<uint32_t>(std::lround(-m * std::log(z / m)));
        }
        return t;
    }();
    return table[std::min<unsigned>(zero_bits, bitmap_bits)];
}

template <typename Cell>
Cell* campaign_table::find_or_claim(Cell* cells, uint32_t mask, unsigned probe, uint64_t key, uint32_t window,
                                    uint32_t n, booked& out) {
    const uint64_t h = mix64(key);
    const uint16_t check = check_of(h);
    const auto start = static_cast<uint32_t>(h);
    for (int attempt = 0; attempt < 2; ++attempt) {
        Cell* stale = nullptr;
        uint64_t stale_count = 0;
        for (unsigned p = 0; p < probe; ++p) {
            Cell& c = cells[(start + p) & mask];
            std::atomic_ref<uint64_t> k(c.key);
            uint64_t seen = k.load(std::memory_order_acquire);
            if (seen == 0) k.compare_exchange_strong(seen, key, std::memory_order_acq_rel);  // seen stays 0 if ours
            if (seen == 0 || seen == key) {
                if (add_count(c.count, check, window, n, out.window, out.count)) return &c;
                continue;  // reclaimed for another key meanwhile
            }
            if (!stale) {
                const uint64_t count = std::atomic_ref<uint64_t>(c.count).load(std::memory_order_relaxed);
                if (is_stale(count, window)) {
                    stale = &c;
                    stale_count = count;
                }
            }
        }
        if (!stale) return nullptr;
        // The count word first: whoever swaps it owns the cell, and workers
        // still holding the old key see the check change. Then the key.
        const uint32_t first = std::min(n, max_count);
        if (std::atomic_ref<uint64_t>(stale->count)
                .compare_exchange_strong(stale_count, count_word(check, window, first), std::memory_order_acq_rel)) {
            std::atomic_ref<uint64_t>(stale->key).store(key, std::memory_order_release);
            reclaimed_.fetch_add(1, std::memory_order_relaxed);
            out = {window, first};
            return stale;
        }
        // Someone else took or refreshed it: look again once.
    }
    return nullptr;
}

template <typename Cell>
const Cell* campaign_table::find(const Cell* cells, uint32_t mask, unsigned probe, uint64_t key) const {
    const auto start = static_cast<uint32_t>(mix64(key));
    for (unsigned p = 0; p < probe; ++p) {
        const Cell& c = cells[(start + p) & mask];
        const uint64_t k = std::atomic_ref<const uint64_t>(c.key).load(std::memory_order_acquire);
        if (k == key) return &c;
        if (k == 0) return nullptr;
    }
    return nullptr;
}

void campaign_table::set_subscriber(fingerprint_cell& c, uint64_t subscriber_key_hash, uint32_t window) {
    const uint64_t h = mix64(subscriber_key_hash ^ 0xc2b2ae3d27d4eb4full);
    const auto pos = static_cast<uint32_t>(((h >> 32) * bitmap_bits) >> 32);
    const uint64_t bit = 1ull << (pos % bits_per_word);
    std::atomic_ref<uint64_t> w(c.bits[pos / bits_per_word]);
    uint64_t old = w.load(std::memory_order_relaxed);
    for (;;) {
        // A word carries its window: an older word is an empty one.
        uint32_t tag = window;
        uint64_t bits = 0;
        if (old != 0) {
            const auto ow = static_cast<uint32_t>(old >> bits_per_word);
            if (diff24(ow, window) >= 0) {
                tag = ow;
                bits = old & bits_mask;
            }
        }
        const uint64_t next = static_cast<uint64_t>(tag) << bits_per_word | bits | bit;
        if (next == old) return;
        if (w.compare_exchange_weak(old, next, std::memory_order_acq_rel, std::memory_order_relaxed)) return;
    }
}

uint32_t campaign_table::subscribers_in(const fingerprint_cell& c, uint32_t window) {
    unsigned zero = 0;
    for (const uint64_t& word : c.bits) {
        const uint64_t w = std::atomic_ref<const uint64_t>(word).load(std::memory_order_relaxed);
        const bool current = w != 0 && static_cast<uint32_t>(w >> bits_per_word) == window;
        zero += current ? bits_per_word - static_cast<unsigned>(std::popcount(w & bits_mask)) : bits_per_word;
    }
    return estimate(zero);
}

campaign_counts campaign_table::observe(uint64_t fingerprint, uint64_t subscriber_key_hash, uint32_t recipients,
                                        uint64_t now_ns, uint64_t window_ns) {
    if (recipients == 0 || window_ns == 0) return peek(fingerprint, subscriber_key_hash, now_ns, window_ns);
    const auto window = static_cast<uint32_t>(now_ns / window_ns) & window_mask;
    campaign_counts r;
    booked b{};
    if (fingerprint_cell* c = find_or_claim(fps_.get(), fp_mask_, fingerprint_probe, fingerprint, window, recipients, b)) {
        set_subscriber(*c, subscriber_key_hash, b.window);
        r.tracked = true;
        r.recipients = b.count;
        r.subscribers = subscribers_in(*c, b.window);
    } else {
        fp_overflows_.fetch_add(1, std::memory_order_relaxed);
    }
    if (find_or_claim(pairs_.get(), pair_mask_, pair_probe, pair_key(fingerprint, subscriber_key_hash), window,
                      recipients, b)) {
        r.subscriber_tracked = true;
        r.subscriber_recipients = b.count;
    } else {
        pair_overflows_.fetch_add(1, std::memory_order_relaxed);
    }
    return r;
}

campaign_counts campaign_table::peek(uint64_t fingerprint, uint64_t subscriber_key_hash, uint64_t now_ns,
                                     uint64_t window_ns) const {
    campaign_counts r;
    if (window_ns == 0) return r;
    const auto window = static_cast<uint32_t>(now_ns / window_ns) & window_mask;
    if (const fingerprint_cell* c = find(fps_.get(), fp_mask_, fingerprint_probe, fingerprint)) {
        uint32_t w = window;
        const uint64_t count = std::atomic_ref<const uint64_t>(c->count).load(std::memory_order_acquire);
        r.recipients = read_count(count, check_of(mix64(fingerprint)), w);
        r.subscribers = r.recipients ? subscribers_in(*c, w) : 0;
        r.tracked = true;
    }
    const uint64_t pk = pair_key(fingerprint, subscriber_key_hash);
    if (const pair_cell* c = find(pairs_.get(), pair_mask_, pair_probe, pk)) {
        uint32_t w = window;
        const uint64_t count = std::atomic_ref<const uint64_t>(c->count).load(std::memory_order_acquire);
        r.subscriber_recipients = read_count(count, check_of(mix64(pk)), w);
        r.subscriber_tracked = true;
    }
    return r;
}

bool campaign_table::read_cell(const fingerprint_cell& c, uint32_t window, uint64_t& fingerprint,
                               uint32_t& cell_window, uint32_t& recipients, subscriber_bits& bits) {
    fingerprint = std::atomic_ref<const uint64_t>(c.key).load(std::memory_order_acquire);
    if (fingerprint == 0) return false;
    const uint64_t count = std::atomic_ref<const uint64_t>(c.count).load(std::memory_order_acquire);
    if (word_check(count) != check_of(mix64(fingerprint))) return false;   // free, or being reclaimed
    cell_window = word_window(count);
    if (window != any_window && cell_window != (window & window_mask)) return false;
    recipients = word_count(count);
    bool any = false;
    for (unsigned i = 0; i < bitmap_words; ++i) {
        const uint64_t w = std::atomic_ref<const uint64_t>(c.bits[i]).load(std::memory_order_relaxed);
        bits[i] = (w != 0 && static_cast<uint32_t>(w >> bits_per_word) == cell_window) ? (w & bits_mask) : 0;
        any = any || bits[i] != 0;
    }
    return any;
}

uint32_t campaign_table::estimate_of(const subscriber_bits& bits) {
    unsigned zero = 0;
    for (const uint64_t w : bits) zero += bits_per_word - static_cast<unsigned>(std::popcount(w & bits_mask));
    return estimate(zero);
}

campaign_table::merge_result campaign_table::merge_subscriber_bits(uint64_t fingerprint, uint32_t window,
                                                                   const subscriber_bits& bits) {
    window &= window_mask;
    booked b{};
    fingerprint_cell* c = find_or_claim(fps_.get(), fp_mask_, fingerprint_probe, fingerprint, window, 0, b);
    if (c == nullptr) {
        merge_overflows_.fetch_add(1, std::memory_order_relaxed);
        return merge_result::full;
    }
    if (b.window != window) return merge_result::stale;   // the cell counts a newer window
    bool changed = false;
    for (unsigned i = 0; i < bitmap_words; ++i) {
        const uint64_t add = bits[i] & bits_mask;
        if (add == 0) continue;
        std::atomic_ref<uint64_t> w(c->bits[i]);
        uint64_t old = w.load(std::memory_order_relaxed);
        for (;;) {
            uint64_t have = 0;
            if (old != 0) {
                const auto ow = static_cast<uint32_t>(old >> bits_per_word);
                if (diff24(ow, window) > 0) break;   // a worker moved this word to a newer window
                if (ow == window) have = old & bits_mask;
            }
            const uint64_t next = static_cast<uint64_t>(window) << bits_per_word | have | add;
            if (next == old) break;
            if (w.compare_exchange_weak(old, next, std::memory_order_acq_rel, std::memory_order_relaxed)) {
                changed = true;
                break;
            }
        }
    }
    return changed ? merge_result::merged : merge_result::unchanged;
}

}  // namespace sekisho
