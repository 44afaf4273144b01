// Template definitions for bounded_table.h.
#pragma once

#include <type_traits>

#include <rte_errno.h>
#include <rte_hash.h>

#include <stdexcept>
#include <string>

#include "dataplane/key_hash.h"

namespace sekisho {

template <typename Key, typename Record>
bounded_table<Key, Record>::bounded_table(const char* name, uint32_t capacity)
    : capacity_(capacity) {
    rte_hash_parameters params{};
    params.name = name;
    params.entries = capacity + capacity / 4 + 64;  // cuckoo headroom
    params.key_len = sizeof(Key);
    params.hash_func = key_hash_crc;   // not rte_hash_crc: it loads misaligned keys (key_hash.h)
    params.socket_id = SOCKET_ID_ANY;
    hash_ = rte_hash_create(&params);
    if (hash_ == nullptr)
        throw std::runtime_error(std::string("cannot create table ") + name + ": " + rte_strerror(rte_errno));
    slot_count_ = static_cast<uint32_t>(rte_hash_max_key_id(hash_)) + 1;
    slots_.reset(new slot[slot_count_]);
}

template <typename Key, typename Record>
bounded_table<Key, Record>::~bounded_table() {
    rte_hash_free(hash_);
}

template <typename Key, typename Record>
Record* bounded_table<Key, Record>::find(const Key& key) {
    const int32_t pos = rte_hash_lookup(hash_, &key);
    return pos < 0 ? nullptr : &slots_[pos].record;
}

template <typename Key, typename Record>
Record* bounded_table<Key, Record>::insert(const Key& key) {
    if (used_ >= capacity_) return nullptr;
    const int32_t pos = rte_hash_add_key(hash_, &key);
    if (pos < 0) return nullptr;
    slot& s = slots_[pos];
    if (!s.used) ++used_;
    s.used = true;
    s.key = key;
    s.record = Record{};
    return &s.record;
}

template <typename Key, typename Record>
void bounded_table<Key, Record>::erase(const Key& key) {
    const int32_t pos = rte_hash_del_key(hash_, &key);
    if (pos < 0) return;
    slots_[pos].used = false;
    --used_;
}

template <typename Key, typename Record>
template <typename Pred>
uint32_t bounded_table<Key, Record>::sweep(uint32_t budget, Pred expired) {
    const uint32_t n = slot_count_;
    uint32_t removed = 0;
    for (uint32_t i = 0; i < budget; ++i) {
        slot& s = slots_[hand_];
        hand_ = hand_ + 1 == n ? 0 : hand_ + 1;
        bool gone;
        if constexpr (std::is_invocable_v<Pred, const Key&, Record&>)
            gone = s.used && expired(s.key, s.record);
        else
            gone = s.used && expired(s.record);
        if (gone) {
            rte_hash_del_key(hash_, &s.key);
            s.used = false;
            --used_;
            ++removed;
        }
    }
    return removed;
}

}  // namespace sekisho
