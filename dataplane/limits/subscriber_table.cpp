#include "dataplane/limits/subscriber_table.h"

#include "dataplane/key_hash.h"

#include <rte_errno.h>
#include <rte_hash.h>

#include <stdexcept>
#include <string>

namespace sekisho {

subscriber_key subscriber_key::v4(uint32_t a) {
    subscriber_key k;
    k.family = 4;
    k.length = 32;
    k.addr[0] = static_cast<uint8_t>(a >> 24);
    k.addr[1] = static_cast<uint8_t>(a >> 16);
    k.addr[2] = static_cast<uint8_t>(a >> 8);
    k.addr[3] = static_cast<uint8_t>(a);
    return k;
}

subscriber_key subscriber_key::v6(const uint8_t* bytes, uint8_t length) {
    subscriber_key k;
    k.family = 6;
    k.length = length;
    const unsigned full = length / 8;
    std::memcpy(k.addr, bytes, full);
    if (length % 8) k.addr[full] = static_cast<uint8_t>(bytes[full] & (0xff00u >> (length % 8)));
    return k;
}

subscriber_table::subscriber_table(const char* name, uint32_t capacity, rte_rcu_qsbr* qsbr)
    : capacity_(capacity) {
    rte_hash_parameters params{};
    params.name = name;
    // rte_hash needs headroom: cuckoo displacement fails well before 100% load.
    params.entries = capacity + capacity / 4 + 64;
    params.key_len = sizeof(subscriber_key);
    params.hash_func = key_hash_crc;   // not rte_hash_crc: it loads misaligned keys (key_hash.h)
    params.socket_id = SOCKET_ID_ANY;
    params.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF;
    hash_ = rte_hash_create(&params);
    if (hash_ == nullptr)
        throw std::runtime_error(std::string("cannot create subscriber table (") + std::to_string(capacity) +
                                 " bindings): " + rte_strerror(rte_errno));
    if (qsbr != nullptr) {
        rte_hash_rcu_config rcu{};
        rcu.v = qsbr;
        rcu.mode = RTE_HASH_QSBR_MODE_DQ;
        if (rte_hash_rcu_qsbr_add(hash_, &rcu) != 0) {
            rte_hash_free(hash_);
            throw std::runtime_error("cannot attach RCU to the subscriber table");
        }
    }
}

subscriber_table::~subscriber_table() { rte_hash_free(hash_); }

bool subscriber_table::bind(const subscriber_key& key, uint32_t account_id) {
    const bool added = rte_hash_lookup(hash_, &key) < 0;
    if (added && size_ >= capacity_) return false;
    if (rte_hash_add_key_data(hash_, &key, reinterpret_cast<void*>(static_cast<uintptr_t>(account_id))) != 0)
        return false;
    if (added) ++size_;
    return true;
}

bool subscriber_table::unbind(const subscriber_key& key) {
    if (rte_hash_del_key(hash_, &key) < 0) return false;
    --size_;
    return true;
}

bool subscriber_table::iterate(const void** key, void** data, uint32_t* next) const {
    return rte_hash_iterate(hash_, key, data, next) >= 0;
}

uint32_t subscriber_table::lookup(const subscriber_key& key) const {
    void* data = nullptr;
    if (rte_hash_lookup_data(hash_, &key, &data) < 0) return 0;
    return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(data));
}

}  // namespace sekisho
