#include "dataplane/compiled_policy.h"

#include <rte_errno.h>
#include <rte_fib.h>
#include <rte_fib6.h>
#include <rte_memory.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace sekisho {

const char* to_string(subscriber_class c) {
    switch (c) {
    case subscriber_class::none: return "none";
    case subscriber_class::dynamic: return "dynamic";
    case subscriber_class::static_: return "static";
    }
    return "unknown";
}
const char* to_string(op25b_mode m) { return m == op25b_mode::enforce ? "enforce" : "monitor"; }
const char* to_string(op25b_action a) { return a == op25b_action::reset ? "reset" : "drop"; }

namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(what + ": " + rte_strerror(rte_errno));
}

std::string table_name(const char* kind, uint64_t generation) {
    // Names must be unique among live DPDK objects: two generations coexist
    // during an RCU grace period.
    return std::string("sk_") + kind + "_" + std::to_string(generation);
}

rte_fib* make_fib4(const char* kind, uint64_t generation, uint32_t routes, uint32_t tbl8, bool dense) {
    rte_fib_conf conf{};
    conf.default_nh = 0;
    conf.max_routes = static_cast<int>(routes + 16);
    if (dense) {
        // DIR-24-8: at most two memory reads per lookup. The entry width bounds
        // the number of tbl8 groups (half the largest next hop): 2-byte entries
        // (32 MiB) hold 32767 groups, 4-byte entries (64 MiB) far more.
        conf.type = RTE_FIB_DIR24_8;
        conf.dir24_8.num_tbl8 = tbl8 + 16;
        conf.dir24_8.nh_sz = conf.dir24_8.num_tbl8 <= 32767 ? RTE_FIB_DIR24_8_2B : RTE_FIB_DIR24_8_4B;
    } else {
        // A handful of relay prefixes: the RIB tree alone, no 16 MiB table.
        conf.type = RTE_FIB_DUMMY;
    }
    const std::string name = table_name(kind, generation);
    rte_fib* fib = rte_fib_create(name.c_str(), SOCKET_ID_ANY, &conf);
    if (fib == nullptr) fail("cannot create IPv4 table " + name);
    return fib;
}

rte_fib6* make_fib6(const char* kind, uint64_t generation, uint32_t routes, uint32_t tbl8, bool dense) {
    rte_fib6_conf conf{};
    conf.default_nh = 0;
    conf.max_routes = static_cast<int>(routes + 16);
    if (dense) {
        conf.type = RTE_FIB6_TRIE;
        conf.trie.num_tbl8 = tbl8 + 16;
        conf.trie.nh_sz = conf.trie.num_tbl8 <= 32767 ? RTE_FIB6_TRIE_2B : RTE_FIB6_TRIE_4B;
    } else {
        conf.type = RTE_FIB6_DUMMY;
    }
    const std::string name = table_name(kind, generation);
    rte_fib6* fib = rte_fib6_create(name.c_str(), SOCKET_ID_ANY, &conf);
    if (fib == nullptr) fail("cannot create IPv6 table " + name);
    return fib;
}

}  // namespace

compiled_policy::compiled_policy(uint64_t generation, const policy_capacity& cap)
    : generation_(generation) {
    try {
        subscribers4_ = make_fib4("sub4", generation, cap.subscriber_prefixes4, cap.tbl8_groups4, true);
        subscribers6_ = make_fib6("sub6", generation, cap.subscriber_prefixes6, cap.tbl8_groups6, true);
        relays4_ = make_fib4("rel4", generation, cap.relay_prefixes4, 0, false);
        relays6_ = make_fib6("rel6", generation, cap.relay_prefixes6, 0, false);
    } catch (...) {
        rte_fib_free(subscribers4_);
        rte_fib6_free(subscribers6_);
        rte_fib_free(relays4_);
        throw;
    }
}

compiled_policy::~compiled_policy() {
    rte_fib_free(subscribers4_);
    rte_fib6_free(subscribers6_);
    rte_fib_free(relays4_);
    rte_fib6_free(relays6_);
}

void compiled_policy::add_subscriber4(uint32_t prefix, uint8_t depth, subscriber_class c) {
    if (rte_fib_add(subscribers4_, prefix, depth, static_cast<uint64_t>(c)) != 0)
        fail("cannot add IPv4 subscriber prefix");
}
void compiled_policy::add_subscriber6(const uint8_t prefix[16], uint8_t depth, subscriber_class c) {
    if (rte_fib6_add(subscribers6_, prefix, depth, static_cast<uint64_t>(c)) != 0)
        fail("cannot add IPv6 subscriber prefix");
}
void compiled_policy::add_relay4(uint32_t prefix, uint8_t depth) {
    if (rte_fib_add(relays4_, prefix, depth, 1) != 0) fail("cannot add IPv4 relay prefix");
}
void compiled_policy::add_relay6(const uint8_t prefix[16], uint8_t depth) {
    if (rte_fib6_add(relays6_, prefix, depth, 1) != 0) fail("cannot add IPv6 relay prefix");
}

void compiled_policy::add_limit(const compiled_limit& l) {
    if (limit_count_ == max_limits) throw std::runtime_error("more than 16 limits");
    limits_[limit_count_++] = l;
    if (l.target == limit_target::group)
        group_limited_[static_cast<unsigned>(l.measure)] |= uint32_t{1} << l.group;
    const uint64_t lifetime = l.window_ns + l.cooldown_ns +
                              (l.measure == limit_measure::connections ? l.gcra_tolerance_ns + l.gcra_interval_ns : 0);
    state_lifetime_ns_ = std::max(state_lifetime_ns_, lifetime);
}

bool compiled_policy::limit_applies(unsigned i, subscriber_class c, uint32_t groups) const {
    const compiled_limit& l = limits_[i];
    switch (l.target) {
    case limit_target::group: return (groups >> l.group) & 1;
    case limit_target::dynamic:
        if (c != subscriber_class::dynamic) return false;
        break;
    case limit_target::static_:
        if (c != subscriber_class::static_) return false;
        break;
    case limit_target::any: break;
    }
    // An account group with its own limit of this measure is governed by it.
    return (groups & group_limited_[static_cast<unsigned>(l.measure)]) == 0;
}

subscriber_class compiled_policy::subscriber4(uint32_t addr) const {
    uint64_t nh = 0;
    rte_fib_lookup_bulk(subscribers4_, &addr, &nh, 1);
    return static_cast<subscriber_class>(nh);
}
subscriber_class compiled_policy::subscriber6(const uint8_t addr[16]) const {
    uint8_t ip[1][RTE_FIB6_IPV6_ADDR_SIZE];
    std::memcpy(ip[0], addr, 16);
    uint64_t nh = 0;
    rte_fib6_lookup_bulk(subscribers6_, ip, &nh, 1);
    return static_cast<subscriber_class>(nh);
}
bool compiled_policy::is_relay4(uint32_t addr) const {
    uint64_t nh = 0;
    rte_fib_lookup_bulk(relays4_, &addr, &nh, 1);
    return nh != 0;
}
bool compiled_policy::is_relay6(const uint8_t addr[16]) const {
    uint8_t ip[1][RTE_FIB6_IPV6_ADDR_SIZE];
    std::memcpy(ip[0], addr, 16);
    uint64_t nh = 0;
    rte_fib6_lookup_bulk(relays6_, ip, &nh, 1);
    return nh != 0;
}

}  // namespace sekisho
