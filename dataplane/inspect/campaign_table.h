// Bulk-campaign counters, shared by all workers: per message
// fingerprint (message_fingerprint.h) and per fixed window, how many
// recipients it went to and from how many distinct subscribers; and per
// (fingerprint, subscriber), how many recipients that subscriber sent it to.
// The caller compares them with the policy's thresholds:
//   N: subscriber_recipients > N  - one subscriber blasting one message;
//   M: subscribers > M            - one message from many subscribers (a botnet).
//
// Lock-free and bounded: two fixed open-addressing arrays allocated at
// construction, every update a compare-and-swap on one 64-bit word, no
// allocation and no lock on the data path. Windows are aligned to multiples
// of the window length since the epoch (as in limit_cell.h), so a replay
// counts as the live run did; a worker whose clock lags a little counts into
// the newer window a cell already holds.
//
// Fingerprint cell, 64 bytes (one cache line):
//   key          the fingerprint (0: free)
//   count        check:16 | window:24 | recipients:24 (saturating at 2^24 - 1)
//   bits[6]      window:24 | 40 bits of a linear-counting bitmap
// Pair cell, 16 bytes: key = hash(fingerprint, subscriber), and count as above.
//
// - recipients and subscriber_recipients are exact (every addition is one
//   CAS on the word holding both the window and the count), up to the
//   saturation and the table-full cases below.
// - subscribers is a linear-counting estimate (Whang et al. 1990) over a
//   240-bit bitmap: a subscriber sets one bit chosen by its hash;
//   estimate = -m ln(zero bits / m), m = 240. It is exact for 1 and usually
//   for a few (two subscribers share a bit with probability 1/240); its
//   relative standard error is sqrt(m (e^t - t - 1)) / n with t = n / m:
//   about 4.6% up to 50 subscribers, 5% at 100, 5.3% at 200, 7% at 500 and
//   12% at 1000, where it also reads ~4% high (measured: the unit test);
//   with every bit set it saturates at 1315 (m ln m). Thresholds M up to
//   ~500 are meaningful. It depends only on the set of subscribers, not on the order
//   of arrival, so a replay with any number of workers gets the same final
//   estimate. Bitmap words carry their window, so a new window starts empty
//   without anyone clearing them.
// - Per (fingerprint, subscriber) recipients need their own cell: estimating
//   them from the totals (recipients / subscribers) would let a light sender
//   hide a heavy one and blame everyone for one heavy sender. The pair array
//   is where memory goes: one 16-byte cell per pair active in a window.
// - Full: a key probes at most 16 cells (fingerprints) or 32 (pairs) from its
//   hash. It takes a free one, else one whose window ended two or more
//   windows ago (reclaimed: its counts are history); else nothing is counted,
//   the overflow counter goes up and observe() says so: fail open (no
//   campaign verdict from a full table, mail still flows).
// - Reclaiming races: the reclaimer first swaps the count word to the new
//   key's check and window, then the key. A worker still holding the old key
//   sees the check change and probes on, so exact counts never cross keys
//   (up to a 1/65536 check collision). A worker that read the old key and
//   stalled for two whole windows before setting its subscriber bit could
//   set one bit of the new key's bitmap: an estimate, and practically never.
//   While the key is being swapped, an observer of the new key may not find
//   it and take another cell: that key's counts are split for a moment.
//
// Fleet merging (control thread only, control/fleet/campaign_sync.h): the
// bitmaps are mergeable, the OR of two gateways' bitmaps of one fingerprint
// and window is the bitmap of the union of their subscribers, because the bit
// a subscriber sets depends only on its key hash, which must be the same
// function on every gateway (mail_tracker's: std::hash of the subscriber key's
// bytes, libstdc++'s murmur hash with a fixed seed, never seeded per process). for_each_active() reads the cells of a
// window; merge_subscriber_bits() ORs fleet bits into a cell's words by CAS,
// as a worker's observe() does, so the workers' next threshold check sees the
// fleet's estimate. Neither allocates nor locks; a worker never waits on them.
//
// The window length must be the same in every call on one table (it is the
// policy's); windows are indexed modulo 2^24.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace sekisho {

struct campaign_counts {
    uint32_t recipients = 0;             // all subscribers' recipients of the fingerprint in the window
    uint32_t subscribers = 0;            // distinct subscribers that sent it in the window (estimate)
    uint32_t subscriber_recipients = 0;  // this subscriber's recipients of it in the window
    bool tracked = false;                // false: no fingerprint cell (table full): nothing counted
    bool subscriber_tracked = false;     // false: no pair cell (table full): subscriber_recipients is 0
};

class campaign_table {
public:
    static constexpr unsigned fingerprint_probe = 16;
    static constexpr unsigned pair_probe = 32;
    static constexpr unsigned bitmap_words = 6;
    static constexpr unsigned bits_per_word = 40;
    static constexpr unsigned bitmap_bits = bitmap_words * bits_per_word;  // m = 240
    static constexpr uint32_t max_count = (1u << 24) - 1;
    static constexpr uint32_t max_subscribers = 1315;  // m ln m: every bit set

    // Capacities are rounded up to powers of two (at least 16).
    campaign_table(uint32_t fingerprint_capacity, uint32_t pair_capacity);
    ~campaign_table();
    campaign_table(const campaign_table&) = delete;
    campaign_table& operator=(const campaign_table&) = delete;

    // Books `recipients` recipients of a message with this fingerprint (0: the
    // message has none; nothing is counted) sent by this subscriber, and
    // returns the counts of the window including them. Safe from any number
    // of threads at once.
    campaign_counts observe(uint64_t fingerprint, uint64_t subscriber_key_hash, uint32_t recipients,
                            uint64_t now_ns, uint64_t window_ns);
    // The same counts without booking anything (control plane, tests).
    campaign_counts peek(uint64_t fingerprint, uint64_t subscriber_key_hash, uint64_t now_ns,
                         uint64_t window_ns) const;

    // One fingerprint's bitmap: word i holds bits i*40 .. i*40+39 in its low
    // 40 bits (bit b of the word is bitmap bit i*40+b).
    using subscriber_bits = std::array<uint64_t, bitmap_words>;
    static constexpr uint32_t any_window = UINT32_MAX;

    // The window index of a time (modulo 2^24), as observe() computes it.
    static uint32_t window_index(uint64_t now_ns, uint64_t window_ns) {
        return window_ns ? static_cast<uint32_t>((now_ns / window_ns) & 0xffffff) : 0;
    }

    // Calls fn(fingerprint, window, recipients, bits) for every fingerprint
    // cell whose counts are those of `window` (any_window: of whatever window
    // each cell is in), with that window's bitmap. Relaxed atomic reads: a
    // cell counted meanwhile may be seen before or after the update; a cell
    // being reclaimed is skipped. Any thread; meant for the control thread.
    template <typename Fn>
    void for_each_active(uint32_t window, Fn&& fn) const {
        for (uint32_t i = 0; i <= fp_mask_; ++i) {
            uint64_t fingerprint = 0;
            uint32_t w = 0, recipients = 0;
            subscriber_bits bits{};
            if (read_cell(fps_[i], window, fingerprint, w, recipients, bits)) fn(fingerprint, w, recipients, bits);
        }
    }

    enum class merge_result { merged, unchanged, stale, full };
    // ORs `bits` (of `window`) into the fingerprint's bitmap: creates its cell
    // (with no recipients) if there is none; `stale` if the cell already
    // counts a newer window (the bits are history); `full` (counted in
    // merge_overflows) if no cell could be had. Safe alongside the workers.
    merge_result merge_subscriber_bits(uint64_t fingerprint, uint32_t window, const subscriber_bits& bits);
    uint64_t merge_overflows() const { return merge_overflows_.load(std::memory_order_relaxed); }
    // The estimate of a bitmap (as observe() reports it).
    static uint32_t estimate_of(const subscriber_bits& bits);

    uint64_t fingerprint_overflows() const { return fp_overflows_.load(std::memory_order_relaxed); }
    uint64_t pair_overflows() const { return pair_overflows_.load(std::memory_order_relaxed); }
    uint64_t reclaimed() const { return reclaimed_.load(std::memory_order_relaxed); }
    uint32_t fingerprint_capacity() const { return fp_mask_ + 1; }
    uint32_t pair_capacity() const { return pair_mask_ + 1; }
    size_t memory_bytes() const;

    // The estimate for a bitmap with `zero_bits` of bitmap_bits bits clear.
    static uint32_t estimate(unsigned zero_bits);

    struct alignas(64) fingerprint_cell {
        uint64_t key;
        uint64_t count;
        uint64_t bits[bitmap_words];
    };
    struct pair_cell {
        uint64_t key;
        uint64_t count;
    };
    static_assert(sizeof(fingerprint_cell) == 64);
    static_assert(sizeof(pair_cell) == 16);

private:
    struct booked {
        uint32_t window;
        uint32_t count;
    };
    template <typename Cell>
    Cell* find_or_claim(Cell* cells, uint32_t mask, unsigned probe, uint64_t key, uint32_t window,
                        uint32_t recipients, booked& out);
    template <typename Cell>
    const Cell* find(const Cell* cells, uint32_t mask, unsigned probe, uint64_t key) const;
    void set_subscriber(fingerprint_cell& c, uint64_t subscriber_key_hash, uint32_t window);
    static uint32_t subscribers_in(const fingerprint_cell& c, uint32_t window);
    static bool read_cell(const fingerprint_cell& c, uint32_t window, uint64_t& fingerprint, uint32_t& cell_window,
                          uint32_t& recipients, subscriber_bits& bits);

    std::unique_ptr<fingerprint_cell[]> fps_;
    std::unique_ptr<pair_cell[]> pairs_;
    uint32_t fp_mask_;
    uint32_t pair_mask_;
    std::atomic<uint64_t> fp_overflows_{0};
    std::atomic<uint64_t> pair_overflows_{0};
    std::atomic<uint64_t> reclaimed_{0};
    std::atomic<uint64_t> merge_overflows_{0};
};

}  // namespace sekisho
