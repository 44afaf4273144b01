// Who a subscriber is: address (IPv4 /32) or delegated prefix (IPv6, the
// policy's ipv6_prefix_length) -> account id, learnt from RADIUS accounting or
// static bindings.
//
// Workers read it without locks (rte_hash in lock-free reader mode); the
// control thread is the only writer. Deleted entries are reclaimed after an
// RCU grace period on the same rte_rcu_qsbr the workers already report to for
// the policy, so a worker never reads a recycled slot.
//
// Memory: rte_hash with 20-byte keys and 8-byte values costs about 64 bytes
// per binding at 50-90% load (docs/subscribers.md has the measured figure).
#pragma once

#include <cstdint>
#include <cstring>

struct rte_hash;
struct rte_rcu_qsbr;

namespace sekisho {

// An address or prefix as a hash key: family, length, network bytes (IPv4 in
// the first four), bits beyond the length zeroed.
struct subscriber_key {
    uint8_t family = 0;   // 4 or 6
    uint8_t length = 0;
    uint8_t reserved[2] = {};
    uint8_t addr[16] = {};

    static subscriber_key v4(uint32_t host_order);
    // `bytes` is a 16-byte IPv6 address; keeps the first `length` bits.
    static subscriber_key v6(const uint8_t* bytes, uint8_t length);
    bool operator==(const subscriber_key& o) const { return std::memcmp(this, &o, sizeof o) == 0; }
};
static_assert(sizeof(subscriber_key) == 20);

class subscriber_table {
public:
    subscriber_table(const char* name, uint32_t capacity, rte_rcu_qsbr* qsbr);
    ~subscriber_table();
    subscriber_table(const subscriber_table&) = delete;
    subscriber_table& operator=(const subscriber_table&) = delete;

    // Control thread only. bind() returns false when the table is full.
    bool bind(const subscriber_key& key, uint32_t account_id);
    bool unbind(const subscriber_key& key);
    // Bindings in force. Counted here, not by rte_hash_count(): a deleted
    // entry's slot stays taken until its RCU grace period ends, and that
    // count would include it.
    uint32_t size() const { return size_; }
    uint32_t capacity() const { return capacity_; }

    // Control thread: calls f(key, account_id) for each binding (at most `max`).
    template <typename F>
    void for_each(F f, uint32_t max = UINT32_MAX) const {
        uint32_t next = 0, n = 0;
        const void* key;
        void* data;
        while (n++ < max && iterate(&key, &data, &next))
            f(*static_cast<const subscriber_key*>(key), static_cast<uint32_t>(reinterpret_cast<uintptr_t>(data)));
    }

    // Workers: 0 when unbound.
    uint32_t lookup(const subscriber_key& key) const;

private:
    bool iterate(const void** key, void** data, uint32_t* next) const;
    rte_hash* hash_;
    uint32_t capacity_;
    uint32_t size_ = 0;
};

}  // namespace sekisho
