// A worker's own hash table of fixed-size records: bounded (insert fails when
// full; the caller counts it), aged by a rotating sweep, single owner (no
// locks: only its worker touches it). Holds the tracked SMTP connections and
// the per-subscriber limit state.
#pragma once

#include <cstdint>
#include <memory>

struct rte_hash;

namespace sekisho {

template <typename Key, typename Record>
class bounded_table {
public:
    bounded_table(const char* name, uint32_t capacity);
    ~bounded_table();
    bounded_table(const bounded_table&) = delete;
    bounded_table& operator=(const bounded_table&) = delete;

    Record* find(const Key& key);
    // Inserts a fresh record; nullptr when the table is full.
    Record* insert(const Key& key);
    void erase(const Key& key);
    uint32_t size() const { return used_; }
    uint32_t capacity() const { return capacity_; }

    // Visits up to `budget` slots from a rotating position and removes the
    // records for which `expired(record)` (or `expired(key, record)`) holds. Cheap enough to call every
    // burst; returns how many it removed.
    template <typename Pred>
    uint32_t sweep(uint32_t budget, Pred expired);

private:
    struct slot {
        Key key;
        bool used = false;
        Record record;
    };
    rte_hash* hash_;
    uint32_t capacity_;
    uint32_t used_ = 0;
    uint32_t hand_ = 0;
    uint32_t slot_count_ = 0;
    std::unique_ptr<slot[]> slots_;
};

}  // namespace sekisho

#include "dataplane/bounded_table_impl.h"
