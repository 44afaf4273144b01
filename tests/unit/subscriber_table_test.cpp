// The subscriber table (rte_hash): keys wherever callers build them.
#include <gtest/gtest.h>
#include <rte_hash_crc.h>
#include <rte_rcu_qsbr.h>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "dataplane/bounded_table.h"
#include "dataplane/bounded_table_impl.h"
#include "dataplane/key_hash.h"
#include "dataplane/limits/subscriber_table.h"

namespace sekisho {
namespace {

// Found under -Dsanitize=true (the replay suite): the tables hashed keys with
// rte_hash_crc(), which reads them as uint64_t* although subscriber_key and
// flow_key have alignment 1, so a key at an odd stack or flow-state position
// was a misaligned load (UBSan: "load of misaligned address ...
// rte_hash_crc.h:174"). key_hash_crc() gives the same values at any address.
TEST(subscriber_table, hash_equals_rte_hash_crc_and_reads_any_address) {
    alignas(8) uint8_t aligned[24] = {};
    for (uint8_t i = 0; i < sizeof aligned; ++i) aligned[i] = static_cast<uint8_t>(i * 37 + 1);
    for (uint32_t len : {1u, 2u, 3u, 4u, 7u, 8u, 15u, 20u, 23u, 24u})
        EXPECT_EQ(key_hash_crc(aligned, len, 0xffffffffu), rte_hash_crc(aligned, len, 0xffffffffu)) << len;
    uint8_t shifted[32];
    for (size_t off = 0; off < 8; ++off) {
        std::memcpy(shifted + off, aligned, 20);
        EXPECT_EQ(key_hash_crc(shifted + off, 20, 7), rte_hash_crc(aligned, 20, 7)) << off;
    }
}

TEST(subscriber_table, lookup_of_a_key_at_an_odd_address) {
    subscriber_table t("st_test_odd", 64, nullptr);
    const subscriber_key k = subscriber_key::v4(0xC6336407);   // 198.51.100.7
    ASSERT_TRUE(t.bind(k, 42));
    // The same key at every offset within 8 bytes (subscriber_key has alignment 1).
    alignas(8) uint8_t buf[sizeof(subscriber_key) + 8];
    for (size_t off = 0; off < 8; ++off) {
        std::memcpy(buf + off, &k, sizeof k);
        const auto* at = reinterpret_cast<const subscriber_key*>(buf + off);
        EXPECT_EQ(t.lookup(*at), 42u) << off;
    }
    EXPECT_EQ(t.lookup(subscriber_key::v4(0xC6336408)), 0u);
    EXPECT_TRUE(t.unbind(k));
    EXPECT_EQ(t.lookup(k), 0u);
}

// A deleted entry's slot is reclaimed only after an RCU grace period (a
// worker that never reports quiescent holds it): the table's size is what is
// bound, not what rte_hash still holds, and the capacity counts bindings.
TEST(subscriber_table, size_and_capacity_count_bindings_not_slots_awaiting_reclaim) {
    const size_t qsbr_size = rte_rcu_qsbr_get_memsize(1);
    std::unique_ptr<uint8_t[]> mem(new uint8_t[qsbr_size + 64]);
    auto* qsbr = reinterpret_cast<rte_rcu_qsbr*>((reinterpret_cast<uintptr_t>(mem.get()) + 63) & ~uintptr_t{63});
    ASSERT_EQ(rte_rcu_qsbr_init(qsbr, 1), 0);
    ASSERT_EQ(rte_rcu_qsbr_thread_register(qsbr, 0), 0);
    rte_rcu_qsbr_thread_online(qsbr, 0);   // a reader that never passes a quiescent state
    subscriber_table t("st_test_reclaim", 64, qsbr);
    for (uint32_t i = 0; i < 64; ++i) ASSERT_TRUE(t.bind(subscriber_key::v4(0xC6336400 + i), 1)) << i;
    EXPECT_EQ(t.size(), 64u);
    EXPECT_FALSE(t.bind(subscriber_key::v4(0xC6336440), 1)) << "the table holds 64";
    EXPECT_TRUE(t.bind(subscriber_key::v4(0xC6336400), 2)) << "rebinding a bound key takes no slot";
    for (uint32_t i = 0; i < 32; ++i) ASSERT_TRUE(t.unbind(subscriber_key::v4(0xC6336400 + i)));
    EXPECT_FALSE(t.unbind(subscriber_key::v4(0xC6336400))) << "already unbound";
    EXPECT_EQ(t.size(), 32u) << "the 32 deleted slots await their grace period, they are not bindings";
    for (uint32_t i = 0; i < 32; ++i) EXPECT_TRUE(t.bind(subscriber_key::v4(0xC6336480 + i), 3)) << i;
    EXPECT_EQ(t.size(), 64u);
    rte_rcu_qsbr_thread_offline(qsbr, 0);
    rte_rcu_qsbr_thread_unregister(qsbr, 0);
}

TEST(bounded_table, find_of_a_key_at_an_odd_address) {
    bounded_table<subscriber_key, uint64_t> t("bt_test_odd", 64);
    const subscriber_key k = subscriber_key::v4(0xC6336407);
    uint64_t* r = t.insert(k);
    ASSERT_NE(r, nullptr);
    *r = 7;
    alignas(8) uint8_t buf[sizeof(subscriber_key) + 8];
    for (size_t off = 0; off < 8; ++off) {
        std::memcpy(buf + off, &k, sizeof k);
        const uint64_t* found = t.find(*reinterpret_cast<const subscriber_key*>(buf + off));
        ASSERT_NE(found, nullptr) << off;
        EXPECT_EQ(*found, 7u);
    }
}

// The table against a std::map over random inserts, erases, finds, sweeps and
// bulk lookups with their hints, at several capacities (one slot to a
// thousand), full most of the time: keys drawn from a small space so that
// the same keys come and go and probe chains form, break and re-form.
// Every key hashed to one of three buckets: chains that run over many buckets
// and wrap around the end, so that probing and its bookkeeping are what the
// test exercises, not luck.
struct three_buckets_hash {
    uint32_t operator()(const subscriber_key& k) const { return k.addr[3] % 3u * 0x9e3779b1u; }
};

template <typename Hash>
void behaves_as_a_map(const char* name) {
    for (uint32_t capacity : {1u, 7u, 64u, 1000u}) {
        SCOPED_TRACE(std::string(name) + ", capacity " + std::to_string(capacity));
        bounded_table<subscriber_key, uint64_t, Hash> t((name + std::to_string(capacity)).c_str(), capacity);
        std::map<uint32_t, uint64_t> model;
        std::mt19937 rng(capacity);
        const uint32_t space = capacity * 3 + 5;
        auto key = [](uint32_t k) { return subscriber_key::v4(0xC6336400 + k); };
        uint64_t stamp = 0;
        for (int op = 0; op < 20000; ++op) {
            const uint32_t k = rng() % space;
            switch (rng() % 6) {
            case 0:
            case 1: {
                uint64_t* r = t.insert(key(k));
                const bool had = model.count(k) != 0;
                if (!had && model.size() >= capacity) {
                    ASSERT_EQ(r, nullptr) << "insert into a full table";
                } else {
                    ASSERT_NE(r, nullptr) << k;
                    EXPECT_EQ(*r, 0u) << "a fresh record";
                    *r = model[k] = ++stamp;
                }
                break;
            }
            case 2:
                t.erase(key(k));
                model.erase(k);
                break;
            case 3: {
                uint64_t* r = t.find(key(k));
                ASSERT_EQ(r != nullptr, model.count(k) != 0) << k;
                if (r) {
                    EXPECT_EQ(*r, model[k]);
                }
                break;
            }
            case 4: {   // a burst: bulk lookups, then changes, then the hinted finds
                uint32_t drawn[40];
                subscriber_key keys[40];
                const subscriber_key* ptrs[40];
                lookup_hint hints[40];
                const unsigned n = 1 + rng() % 40;
                for (unsigned i = 0; i < n; ++i) drawn[i] = rng() % space, keys[i] = key(drawn[i]), ptrs[i] = &keys[i];
                t.lookup_bulk(ptrs, n, hints);
                for (unsigned i = 0; i < n; ++i) {
                    if (rng() % 3 == 0) {   // the burst changes the table between lookup and use
                        const uint32_t c = rng() % space;
                        if (rng() % 2) {
                            t.erase(key(c));
                            model.erase(c);
                        } else if (uint64_t* r = t.insert(key(c))) {
                            *r = model[c] = ++stamp;
                        }
                    }
                    const uint32_t k2 = drawn[i];
                    uint64_t* r = t.find(keys[i], hints[i]);
                    ASSERT_EQ(r != nullptr, model.count(k2) != 0) << k2;
                    if (r) {
                        EXPECT_EQ(*r, model[k2]);
                    }
                }
                break;
            }
            default: {   // a sweep removing odd stamps
                const uint32_t removed = t.sweep(1 + rng() % 16, [&](uint64_t& v) { return v % 2 == 1; });
                uint32_t gone = 0;
                for (auto it = model.begin(); it != model.end();)
                    if (!t.find(key(it->first))) it = model.erase(it), ++gone;
                    else ++it;
                EXPECT_EQ(removed, gone);
                break;
            }
            }
            ASSERT_EQ(t.size(), model.size()) << "after op " << op;
        }
        for (const auto& [k, v] : model) {
            uint64_t* r = t.find(key(k));
            ASSERT_NE(r, nullptr);
            EXPECT_EQ(*r, v);
        }
    }
}

TEST(bounded_table, behaves_as_a_map_bounded_by_its_capacity) { behaves_as_a_map<crc_key_hash>("bt_test_map_"); }

TEST(bounded_table, behaves_as_a_map_when_every_key_collides) { behaves_as_a_map<three_buckets_hash>("bt_test_coll_"); }

}  // namespace
}  // namespace sekisho
