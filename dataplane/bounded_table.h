// A worker's own hash table of fixed-size records: bounded (insert fails when
// full; the caller counts it), aged by a rotating sweep, single owner (no
// locks: only its worker touches it). Holds the tracked SMTP connections, the
// per-subscriber limit state and the inspection records.
//
// Layout, for a lookup that costs one cache line of index and one slot:
//  - buckets of one cache line each: 7 entries of (32-bit hash tag, slot
//    number) and the count of keys that live beyond this bucket. A key lives
//    in its home bucket (hash & mask) or, when that is full, in the next with
//    room (linear probing); a lookup stops at the first bucket that no key
//    passed. Erasing frees the entry and lowers the counts on the way, so
//    there are no tombstones and the table does not degrade as connections
//    come and go.
//  - slots: key and record side by side, `capacity` of them, numbered; free
//    ones on a stack.
// The buckets are twice the capacity's entries (at most half full), so a
// probe rarely leaves the home bucket. Bucket memory comes from the EAL's heap
// (huge pages where the deployment has them), the slots from the C++ heap
// (records may have constructors).
//
// Keys are compared bytewise: they must have no padding with unset bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

namespace sekisho {

// What lookup_bulk found for one key, confirmed by find(key, hint) later in
// the same burst: a slot to check, or "absent" as of a generation of the
// table (every insert starts a new one).
struct lookup_hint {
    int32_t position = -1;
    uint32_t generation = 0;
};

// The table's hash of a key: CRC32-C over its bytes (key_hash.h).
struct crc_key_hash {
    template <typename Key>
    uint32_t operator()(const Key& key) const;
};

// `Hash` is for tests that need keys to collide; the tables use crc_key_hash.
template <typename Key, typename Record, typename Hash = crc_key_hash>
class bounded_table {
public:
    // Throws std::runtime_error naming the table when its memory cannot be had.
    bounded_table(const char* name, uint32_t capacity);
    ~bounded_table();
    bounded_table(const bounded_table&) = delete;
    bounded_table& operator=(const bounded_table&) = delete;

    Record* find(const Key& key);
    // A fresh record for `key` (an existing record of the same key is reset);
    // nullptr when the table is full.
    Record* insert(const Key& key);
    void erase(const Key& key);
    uint32_t size() const { return capacity_ - free_count_; }
    uint32_t capacity() const { return capacity_; }

    // A burst's lookups in two passes (lookup_bulk_max keys at a time): every
    // key's bucket is prefetched first, then each is probed and its slot
    // prefetched, so that the burst's misses overlap instead of following
    // each other, and its processing finds the records in cache.
    static constexpr uint32_t lookup_bulk_max = 64;
    void lookup_bulk(const Key* const* keys, uint32_t n, lookup_hint* hints);
    // find(key) with the answer of lookup_bulk: the hinted slot is used when it
    // still holds `key`; an absent key is absent still unless something was
    // inserted since. Any other case looks up again, so the answer is always
    // find(key)'s, whatever the burst did to the table in between.
    Record* find(const Key& key, const lookup_hint& hint);
    // The record a hint points at, unconfirmed (it may have been erased or
    // reused since): for prefetching what the record refers to, nothing else.
    const Record* hinted(const lookup_hint& hint) const {
        return hint.position >= 0 ? &slots_[hint.position].record : nullptr;
    }

    // Visits up to `budget` slots from a rotating position and removes the
    // records for which `expired(record)` (or `expired(key, record)`) holds. Cheap enough to call every
    // burst; returns how many it removed.
    template <typename Pred>
    uint32_t sweep(uint32_t budget, Pred expired);

private:
    static constexpr unsigned bucket_entries = 7;
    struct alignas(64) bucket {
        uint32_t tag[bucket_entries];    // 0: free; else the key's hash with bit 0 set
        uint32_t slot[bucket_entries];
        uint32_t passed;                 // keys living beyond this bucket that it is home or on the way for
        uint32_t reserved;
    };
    static_assert(sizeof(bucket) == 64);
    struct slot {
        Key key;
        bool used = false;
        Record record;
    };
    static uint32_t hash_of(const Key& key);
    static uint32_t tag_of(uint32_t hash) { return hash | 1u; }
    // Keys are equal when their bytes are (hash_of() asserts they have no padding).
    static bool same_key(const Key& a, const Key& b) { return std::memcmp(&a, &b, sizeof(Key)) == 0; }
    // The slot holding `key`, or -1.
    int32_t locate(const Key& key, uint32_t hash) const;
    void release(uint32_t hash, uint32_t slot_index);

    uint32_t capacity_;
    uint32_t hand_ = 0;
    uint32_t generation_ = 0;   // inserts so far (lookup_hint)
    uint32_t mask_ = 0;         // bucket count - 1
    bucket* buckets_ = nullptr;
    std::unique_ptr<slot[]> slots_;
    std::unique_ptr<uint32_t[]> free_;   // free slot numbers, a stack; the rest are in use
    uint32_t free_count_ = 0;
};

}  // namespace sekisho

#include "dataplane/bounded_table_impl.h"
