#include "backends/xdp/xdp_policy.h"

#include "control/policy/policy_compiler.h"

namespace sekisho {

namespace {

xdp_prefix_entry entry(const ip_prefix& p, uint8_t value) {
    xdp_prefix_entry e;
    e.family = p.family;
    e.length = p.length;
    e.addr = p.bytes;
    e.value = value;
    return e;
}

std::string where(const policy& pol, const limit_rule& r) {
    return pol.source + ":" + std::to_string(r.line) + ": limit '" + r.name + "': ";
}

}  // namespace

xdp_policy_image build_xdp_policy_image(const policy& pol, uint64_t generation) {
    xdp_policy_image img;
    sx_policy_set& s = img.settings;
    s.generation = generation;
    s.mode = pol.mode == op25b_mode::enforce ? SX_MODE_ENFORCE : SX_MODE_MONITOR;
    s.action = pol.action == op25b_action::reset ? SX_ACTION_RESET : SX_ACTION_DROP;
    s.ipv6_prefix_length = pol.ipv6_prefix_length;
    for (unsigned bit = 0; bit < pol.ipv6_prefix_length && bit < 128; ++bit)
        s.ipv6_prefix_mask[bit / 8] |= static_cast<uint8_t>(0x80u >> (bit % 8));
    auto set_bit = [](__u64* bitmap, uint16_t port) { bitmap[port >> 6] |= uint64_t{1} << (port & 63); };
    for (uint16_t port : pol.smtp_ports) {
        set_bit(s.blocked_ports, port);
        set_bit(s.mail_ports, port);
    }
    for (uint16_t port : pol.submission_ports) set_bit(s.mail_ports, port);

    for (const auto& p : pol.dynamic_ranges) img.subscribers.push_back(entry(p, SX_CLASS_DYNAMIC));
    for (const auto& p : pol.static_ranges) img.subscribers.push_back(entry(p, SX_CLASS_STATIC));
    for (const auto& p : pol.relays) img.relays.push_back(entry(p, 1));

    std::vector<std::string> errors;
    for (size_t i = 0; i < pol.limits.size(); ++i) {
        const limit_rule& r = pol.limits[i];
        const compiled_limit l = compile_limit(r, pol);
        if (l.measure != limit_measure::connections) {
            img.skipped_limits.push_back(where(pol, r) + "measure " + to_string(l.measure) +
                                         " needs SMTP tracking (DPDK backend only); not enforced by XDP");
            continue;
        }
        if (l.scope == limit_scope::account) {
            img.skipped_limits.push_back(where(pol, r) +
                                         "scope account needs subscriber bindings (DPDK backend only); "
                                         "not enforced by XDP");
            continue;
        }
        if (l.target == limit_target::group) {
            img.skipped_limits.push_back(where(pol, r) + "applies_to " + r.applies_to +
                                         " needs account groups (DPDK backend only); not enforced by XDP");
            continue;
        }
        if (s.conn_limit_count == SX_MAX_CONN_LIMITS) {
            errors.push_back(where(pol, r) + "more than " + std::to_string(SX_MAX_CONN_LIMITS) +
                             " connection limits; the XDP program holds " + std::to_string(SX_MAX_CONN_LIMITS));
            continue;
        }
        if (l.action == limit_action::tempfail)
            img.skipped_limits.push_back(where(pol, r) +
                                         "action tempfail needs the server's greeting (DPDK backend only); "
                                         "XDP drops the SYN instead");
        sx_conn_limit& x = s.conn_limits[s.conn_limit_count++];
        x.interval_ns = l.gcra_interval_ns;
        x.tolerance_ns = l.gcra_tolerance_ns;
        x.cooldown_ns = l.cooldown_ns;
        x.policy_index = static_cast<__u8>(i);
        x.scope = l.scope == limit_scope::prefix ? SX_SCOPE_PREFIX : SX_SCOPE_ADDRESS;
        switch (l.action) {
        case limit_action::drop_syn: x.action = SX_LIMIT_DROP_SYN; break;
        case limit_action::reset: x.action = SX_LIMIT_RESET; break;
        case limit_action::tempfail: x.action = SX_LIMIT_TEMPFAIL; break;
        case limit_action::monitor: x.action = SX_LIMIT_MONITOR; break;
        }
        x.target = l.target == limit_target::dynamic  ? SX_TARGET_DYNAMIC
                   : l.target == limit_target::static_ ? SX_TARGET_STATIC
                                                       : SX_TARGET_ANY;
    }
    // Sections the XDP path does not serve at all: said once, with where they are.
    if (pol.inspection.enabled)
        img.skipped_limits.push_back(pol.source + ":" + std::to_string(pol.inspection_line) +
                                     ": inspection needs SMTP tracking (DPDK backend only); not done by XDP");
    if (!pol.identity.radius_listen.empty() || !pol.identity.history_database.empty())
        img.skipped_limits.push_back(pol.source +
                                     ": identity (RADIUS accounting, binding history) needs subscriber bindings "
                                     "(DPDK backend only); not served by XDP");
    if (!pol.bindings.empty())
        img.skipped_limits.push_back(pol.source + ": subscribers.bindings need the account table (DPDK backend only); "
                                     "not used by XDP");
    if (!errors.empty()) throw policy_error(std::move(errors));
    return img;
}

}  // namespace sekisho
