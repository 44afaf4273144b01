// The compiled policy: the one immutable snapshot the workers read.
//
// Built off the data path (control/policy/policy_compiler.cpp fills it from the
// operator's policy), published through policy_store (RCU), never modified
// once published. Everything a worker needs to judge a packet is here, so a
// packet is always judged by exactly one generation.
//
// One part is not immutable and is not covered by the above: the workers'
// Hyperscan working sets for this generation's content rules
// (content_scan_states, scan_states()), which the snapshot owns so that they
// live exactly as long as the generation (RCU frees them with it, never while a
// worker may still scan with them), and which each worker writes, its own only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/inspect/content_scan_state.h"
#include "dataplane/inspect/inspection_policy.h"
#include "dataplane/limits/mail_limits.h"

struct rte_fib;
struct rte_fib6;

namespace sekisho {

enum class subscriber_class : uint8_t { none = 0, dynamic = 1, static_ = 2 };
enum class op25b_mode : uint8_t { enforce = 0, monitor = 1 };
enum class op25b_action : uint8_t { drop = 0, reset = 1 };

const char* to_string(subscriber_class c);
const char* to_string(op25b_mode m);
const char* to_string(op25b_action a);

// Sizes the tables before prefixes are added.
struct policy_capacity {
    uint32_t subscriber_prefixes4 = 0, subscriber_prefixes6 = 0;
    uint32_t relay_prefixes4 = 0, relay_prefixes6 = 0;
    // Second-level groups the tables need: IPv4, one per distinct /24 that
    // holds a longer prefix; IPv6, one per byte of depth beyond /24, per
    // prefix (what rte_fib6's trie reserves).
    uint32_t tbl8_groups4 = 0;
    uint32_t tbl8_groups6 = 0;
};

class compiled_policy {
public:
    // Allocates the lookup tables (DPDK memory). Throws std::runtime_error.
    compiled_policy(uint64_t generation, const policy_capacity& cap);
    ~compiled_policy();
    compiled_policy(const compiled_policy&) = delete;
    compiled_policy& operator=(const compiled_policy&) = delete;

    // Construction (control plane only, before publication). Throw on failure.
    void add_subscriber4(uint32_t prefix, uint8_t depth, subscriber_class c);
    void add_subscriber6(const uint8_t prefix[16], uint8_t depth, subscriber_class c);
    void add_relay4(uint32_t prefix, uint8_t depth);
    void add_relay6(const uint8_t prefix[16], uint8_t depth);
    void set_blocked_port(uint16_t port) { blocked_ports_[port >> 6] |= uint64_t{1} << (port & 63); }
    void set_mode(op25b_mode m) { mode_ = m; }
    void set_action(op25b_action a) { action_ = a; }
    void set_ipv6_prefix_length(uint8_t l) { ipv6_prefix_length_ = l; }
    void set_description(std::string d) { description_ = std::move(d); }
    void set_mail_port(uint16_t port) { mail_ports_[port >> 6] |= uint64_t{1} << (port & 63); }
    void set_implicit_tls_port(uint16_t port) { tls_ports_[port >> 6] |= uint64_t{1} << (port & 63); }
    // Content inspection: settings, the compiled rules (nullptr: none) and the
    // workers' working sets for them (nullptr without rules).
    void set_inspection(const inspection_settings& s, std::shared_ptr<const content_rule_set> rules,
                        std::unique_ptr<content_scan_states> scan_states) {
        inspection_ = s;
        rules_ = std::move(rules);
        scan_states_ = std::move(scan_states);
    }
    // Appends a limit (at most max_limits). Group-target limits suppress the
    // class/any limits of the same measure for accounts in that group.
    void add_limit(const compiled_limit& l);

    // Data path: lock-free, allocation-free lookups.
    bool is_blocked_port(uint16_t port) const {
        return (blocked_ports_[port >> 6] >> (port & 63)) & 1;
    }
    // SMTP session tracking applies to TCP on these ports (smtp + submission).
    bool is_mail_port(uint16_t port) const { return (mail_ports_[port >> 6] >> (port & 63)) & 1; }
    bool is_implicit_tls_port(uint16_t port) const { return (tls_ports_[port >> 6] >> (port & 63)) & 1; }
    unsigned limit_count() const { return limit_count_; }
    const compiled_limit& limit(unsigned i) const { return limits_[i]; }
    bool has_limits() const { return limit_count_ != 0; }
    const inspection_settings& inspection() const { return inspection_; }
    // The account group "tightened" (score action tighten), or -1.
    int tightened_group() const { return tightened_group_; }
    void set_tightened_group(int g) { tightened_group_ = g; }
    const content_rule_set* content_rules() const { return rules_.get(); }
    // The per-generation companion, outside this snapshot's immutable contract
    // (content_scan_state.h): worker w uses scan_states()->for_worker(w), and
    // nothing else of it. nullptr when the generation has no content rules.
    content_scan_states* scan_states() const { return scan_states_.get(); }
    // Does limit `i` apply to a subscriber of class `c` whose account is in `groups`?
    bool limit_applies(unsigned i, subscriber_class c, uint32_t groups) const;
    // How long subscriber limit state must be kept after its last use.
    uint64_t state_lifetime_ns() const { return state_lifetime_ns_; }
    subscriber_class subscriber4(uint32_t addr) const;
    subscriber_class subscriber6(const uint8_t addr[16]) const;
    bool is_relay4(uint32_t addr) const;
    bool is_relay6(const uint8_t addr[16]) const;

    uint64_t generation() const { return generation_; }
    op25b_mode mode() const { return mode_; }
    op25b_action action() const { return action_; }
    uint8_t ipv6_prefix_length() const { return ipv6_prefix_length_; }
    const std::string& description() const { return description_; }

private:
    uint64_t generation_;
    op25b_mode mode_ = op25b_mode::enforce;
    op25b_action action_ = op25b_action::reset;
    uint8_t ipv6_prefix_length_ = 56;
    uint64_t blocked_ports_[65536 / 64] = {};
    uint64_t mail_ports_[65536 / 64] = {};
    uint64_t tls_ports_[65536 / 64] = {};
    compiled_limit limits_[max_limits];
    unsigned limit_count_ = 0;
    uint32_t group_limited_[5] = {};   // per measure: groups with their own limit
    uint64_t state_lifetime_ns_ = 0;
    inspection_settings inspection_;
    int tightened_group_ = -1;
    std::shared_ptr<const content_rule_set> rules_;
    std::unique_ptr<content_scan_states> scan_states_;
    rte_fib* subscribers4_ = nullptr;
    rte_fib6* subscribers6_ = nullptr;
    rte_fib* relays4_ = nullptr;
    rte_fib6* relays6_ = nullptr;
    std::string description_;
};

}  // namespace sekisho
