#include "control/policy/policy_compiler.h"

#include <cstdio>
#include <string>
#include <unordered_set>

namespace sekisho {

namespace {

// Second-level groups, counted the way DPDK reserves them: rte_fib's DIR-24-8
// takes one per distinct /24 holding longer prefixes (a /24 full of /32s needs
// one group); rte_fib6's trie reserves per prefix.
policy_capacity size_tables(const policy& pol) {
    policy_capacity cap;
    std::unordered_set<uint32_t> groups4;
    auto count = [&](const ip_prefix& p) {
        if (p.family == 4) {
            ++cap.subscriber_prefixes4;
            if (p.length > 24) groups4.insert(p.v4() >> 8);
            return;
        }
        // rte_fib6's trie reserves groups per prefix, not per shared
        // ancestor: one per byte of depth beyond /24 (its own upper bound).
        ++cap.subscriber_prefixes6;
        if (p.length > 24) cap.tbl8_groups6 += (p.length - 24 + 7) / 8;
    };
    for (const auto& p : pol.dynamic_ranges) count(p);
    for (const auto& p : pol.static_ranges) count(p);
    for (const auto& p : pol.relays) (p.family == 4 ? cap.relay_prefixes4 : cap.relay_prefixes6)++;
    cap.tbl8_groups4 = static_cast<uint32_t>(groups4.size());
    return cap;
}

}  // namespace

compiled_limit compile_limit(const limit_rule& r, const policy& pol) {
    compiled_limit l;
    std::snprintf(l.name, sizeof l.name, "%s", r.name.c_str());
    l.measure = r.measure;
    l.scope = r.scope;
    l.action = r.action;
    l.max = r.max;
    l.window_ns = r.window_ns;
    l.cooldown_ns = r.cooldown_ns;
    if (r.measure == limit_measure::connections) {
        l.gcra_interval_ns = r.window_ns / r.max;
        l.gcra_tolerance_ns = l.gcra_interval_ns * (r.burst - 1);
    }
    if (r.applies_to == "dynamic") l.target = limit_target::dynamic;
    else if (r.applies_to == "static") l.target = limit_target::static_;
    else if (r.applies_to.rfind("group:", 0) == 0) {
        l.target = limit_target::group;
        for (size_t g = 0; g < pol.account_groups.size(); ++g)
            if (pol.account_groups[g].first == r.applies_to.substr(6)) l.group = static_cast<uint8_t>(g);
    }
    return l;
}

std::unique_ptr<compiled_policy> compile_policy(const policy& pol, uint64_t generation, unsigned workers) {
    std::shared_ptr<const content_rule_set> rules;
    if (pol.inspection.enabled && !pol.content_rules.empty()) {
        std::vector<std::string> errors;
        rules = compile_content_rules(pol.content_rules, pol.source, errors, "inspection.rules");
        if (!rules) throw policy_error(std::move(errors));
    }
    return compile_policy(pol, generation, workers, std::move(rules));
}

std::unique_ptr<compiled_policy> compile_policy(const policy& pol, uint64_t generation, unsigned workers,
                                                std::shared_ptr<const content_rule_set> rules) {
    auto out = std::make_unique<compiled_policy>(generation, size_tables(pol));
    // Longest prefix wins inside the table, so a static /28 inside a dynamic
    // /24 exempts exactly its 16 addresses whatever the insertion order.
    auto add = [&](const ip_prefix& p, subscriber_class c) {
        if (p.family == 4)
            out->add_subscriber4(p.v4(), p.length, c);
        else
            out->add_subscriber6(p.bytes.data(), p.length, c);
    };
    for (const auto& p : pol.dynamic_ranges) add(p, subscriber_class::dynamic);
    for (const auto& p : pol.static_ranges) add(p, subscriber_class::static_);
    for (const auto& p : pol.relays) {
        if (p.family == 4)
            out->add_relay4(p.v4(), p.length);
        else
            out->add_relay6(p.bytes.data(), p.length);
    }
    for (uint16_t port : pol.smtp_ports) {
        out->set_blocked_port(port);
        out->set_mail_port(port);
    }
    for (uint16_t port : pol.submission_ports) out->set_mail_port(port);
    for (uint16_t port : pol.implicit_tls_ports) out->set_implicit_tls_port(port);
    unsigned subscriber_slot = 0, account_slot = 0;
    for (const limit_rule& r : pol.limits) {
        compiled_limit l = compile_limit(r, pol);
        // The policy reader bounds the slot counts; recipients_per_message
        // keeps its count in the flow and needs no slot.
        if (r.scope == limit_scope::account) l.slot = static_cast<uint8_t>(account_slot++);
        else l.slot = static_cast<uint8_t>(subscriber_slot++);
        out->add_limit(l);
    }
    if (pol.inspection.enabled) {
        std::unique_ptr<content_scan_states> states;
        if (rules) states = std::make_unique<content_scan_states>(rules, workers);
        out->set_inspection(pol.inspection, std::move(rules), std::move(states));
    }
    for (size_t g = 0; g < pol.account_groups.size(); ++g)
        if (pol.account_groups[g].first == "tightened") out->set_tightened_group(static_cast<int>(g));
    out->set_mode(pol.mode);
    out->set_action(pol.action);
    out->set_ipv6_prefix_length(pol.ipv6_prefix_length);
    out->set_description(pol.source);
    return out;
}

}  // namespace sekisho
