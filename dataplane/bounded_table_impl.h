// Template definitions for bounded_table.h.
#pragma once

#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <rte_malloc.h>
#include <rte_prefetch.h>

#include "dataplane/key_hash.h"

namespace sekisho {

template <typename Key>
uint32_t crc_key_hash::operator()(const Key& key) const {
    return key_hash_crc(&key, sizeof(Key), 0x5e4b15u);
}

template <typename Key, typename Record, typename Hash>
bounded_table<Key, Record, Hash>::bounded_table(const char* name, uint32_t capacity) : capacity_(capacity) {
    if (capacity == 0 || capacity > (1u << 30))
        throw std::runtime_error(std::string("table ") + name + ": capacity " + std::to_string(capacity) +
                                 " outside 1..2^30");
    // At least twice the capacity's entries, a power of two of buckets.
    const uint64_t wanted = (2ull * capacity + bucket_entries - 1) / bucket_entries;
    uint64_t count = 1;
    while (count < wanted) count <<= 1;
    mask_ = static_cast<uint32_t>(count - 1);
    buckets_ = static_cast<bucket*>(rte_zmalloc(name, count * sizeof(bucket), 64));
    if (buckets_ == nullptr)
        throw std::runtime_error(std::string("cannot create table ") + name + ": " + std::to_string(count * 64) +
                                 " bytes of bucket memory not available from the EAL heap");
    slots_.reset(new slot[capacity]);
    free_.reset(new uint32_t[capacity]);
    for (uint32_t i = 0; i < capacity; ++i) free_[i] = capacity - 1 - i;   // slot 0 taken first
    free_count_ = capacity;
}

template <typename Key, typename Record, typename Hash>
bounded_table<Key, Record, Hash>::~bounded_table() {
    rte_free(buckets_);
}

template <typename Key, typename Record, typename Hash>
uint32_t bounded_table<Key, Record, Hash>::hash_of(const Key& key) {
    static_assert(std::has_unique_object_representations_v<Key>, "keys are compared bytewise: no padding");
    return Hash{}(key);
}

template <typename Key, typename Record, typename Hash>
int32_t bounded_table<Key, Record, Hash>::locate(const Key& key, uint32_t hash) const {
    const uint32_t tag = tag_of(hash);
    uint32_t b = hash & mask_;
    for (uint32_t probes = 0; probes <= mask_; ++probes, b = (b + 1) & mask_) {
        const bucket& bk = buckets_[b];
        for (unsigned e = 0; e < bucket_entries; ++e)
            if (bk.tag[e] == tag && same_key(slots_[bk.slot[e]].key, key))
                return static_cast<int32_t>(bk.slot[e]);
        if (bk.passed == 0) return -1;
    }
    return -1;
}

template <typename Key, typename Record, typename Hash>
Record* bounded_table<Key, Record, Hash>::find(const Key& key) {
    const int32_t pos = locate(key, hash_of(key));
    return pos < 0 ? nullptr : &slots_[pos].record;
}

template <typename Key, typename Record, typename Hash>
void bounded_table<Key, Record, Hash>::lookup_bulk(const Key* const* keys, uint32_t n, lookup_hint* hints) {
    for (; n > lookup_bulk_max; n -= lookup_bulk_max, keys += lookup_bulk_max, hints += lookup_bulk_max)
        lookup_bulk(keys, lookup_bulk_max, hints);
    uint32_t hashes[lookup_bulk_max];
    for (uint32_t i = 0; i < n; ++i) {
        hashes[i] = hash_of(*keys[i]);
        rte_prefetch0(&buckets_[hashes[i] & mask_]);
    }
    for (uint32_t i = 0; i < n; ++i) {
        const int32_t pos = locate(*keys[i], hashes[i]);
        hints[i] = {pos, generation_};
        if (pos < 0) continue;
        const uintptr_t first = reinterpret_cast<uintptr_t>(&slots_[pos]);
        for (uintptr_t line = first & ~uintptr_t{63}; line < first + sizeof(slot); line += 64)
            rte_prefetch0(reinterpret_cast<const void*>(line));
    }
}

template <typename Key, typename Record, typename Hash>
Record* bounded_table<Key, Record, Hash>::find(const Key& key, const lookup_hint& hint) {
    if (hint.position >= 0) {
        slot& s = slots_[hint.position];
        if (s.used && same_key(s.key, key)) return &s.record;
    } else if (hint.generation == generation_) {
        return nullptr;
    }
    return find(key);
}

template <typename Key, typename Record, typename Hash>
Record* bounded_table<Key, Record, Hash>::insert(const Key& key) {
    const uint32_t hash = hash_of(key);
    int32_t pos = locate(key, hash);
    if (pos < 0) {
        if (free_count_ == 0) return nullptr;
        const uint32_t tag = tag_of(hash);
        // The first bucket with a free entry from home on; every bucket passed
        // counts one more key beyond it. There is one: at most half the
        // entries are taken.
        uint32_t b = hash & mask_;
        for (;;) {
            bucket& bk = buckets_[b];
            unsigned e = 0;
            while (e < bucket_entries && bk.tag[e] != 0) ++e;
            if (e < bucket_entries) {
                pos = static_cast<int32_t>(free_[--free_count_]);
                bk.tag[e] = tag;
                bk.slot[e] = static_cast<uint32_t>(pos);
                break;
            }
            ++bk.passed;
            b = (b + 1) & mask_;
        }
        ++generation_;
    }
    slot& s = slots_[pos];
    s.used = true;
    s.key = key;
    s.record = Record{};
    return &s.record;
}

// Frees the entry of the key with `hash` that lives in slot `slot_index`, and
// lowers the passed counts of the buckets before it.
template <typename Key, typename Record, typename Hash>
void bounded_table<Key, Record, Hash>::release(uint32_t hash, uint32_t slot_index) {
    uint32_t b = hash & mask_;
    for (;;) {
        bucket& bk = buckets_[b];
        for (unsigned e = 0; e < bucket_entries; ++e)
            if (bk.tag[e] != 0 && bk.slot[e] == slot_index) {
                bk.tag[e] = 0;
                slots_[slot_index].used = false;
                free_[free_count_++] = slot_index;
                return;
            }
        --bk.passed;
        b = (b + 1) & mask_;
    }
}

template <typename Key, typename Record, typename Hash>
void bounded_table<Key, Record, Hash>::erase(const Key& key) {
    const uint32_t hash = hash_of(key);
    const int32_t pos = locate(key, hash);
    if (pos >= 0) release(hash, static_cast<uint32_t>(pos));
}

template <typename Key, typename Record, typename Hash>
template <typename Pred>
uint32_t bounded_table<Key, Record, Hash>::sweep(uint32_t budget, Pred expired) {
    uint32_t removed = 0;
    for (uint32_t i = 0; i < budget; ++i) {
        const uint32_t at = hand_;
        slot& s = slots_[at];
        hand_ = hand_ + 1 == capacity_ ? 0 : hand_ + 1;
        bool gone;
        if constexpr (std::is_invocable_v<Pred, const Key&, Record&>)
            gone = s.used && expired(s.key, s.record);
        else
            gone = s.used && expired(s.record);
        if (gone) {
            release(hash_of(s.key), at);
            ++removed;
        }
    }
    return removed;
}

}  // namespace sekisho
