// The data plane as the control API sees it (control_api.h): the DPDK
// gateway (gateway.h) or the XDP program (xdp_data_plane.h). Both apply a
// validated policy atomically as a new generation, dry-run one, export the
// same per-worker counter blocks and write the same event log.
//
// Subscriber bindings and the account registry exist in the DPDK data plane
// only (the XDP program knows prefixes, not accounts): a data plane without
// them returns nullptr and the API answers 501 naming the backend.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sekisho {

class account_registry;
class event_log;
class subscriber_table;
struct ip_prefix;
struct policy;
struct worker_counters;

class data_plane {
public:
    virtual ~data_plane() = default;

    virtual const char* backend_name() const = 0;     // "dpdk", "xdp"
    virtual uint64_t generation() const = 0;
    virtual const policy& active_policy() const = 0;
    // Compiles `pol` as the next generation and switches to it; returns the
    // generation. Throws (policy_error, rule_compile_timeout,
    // std::runtime_error) leaving the running policy in place.
    virtual uint64_t apply(const policy& pol) = 0;
    // Proves `pol` would apply (the same bounds), changing nothing.
    virtual void dry_run(const policy& pol) = 0;
    // What the last apply() or dry_run() accepted but will not enforce (one
    // line each, file:line first); empty when everything applies.
    virtual std::vector<std::string> apply_notes() const { return {}; }

    // Counter blocks: one per worker (DPDK) or CPU (XDP), then the control thread's.
    virtual std::vector<const worker_counters*> all_counters() const = 0;
    virtual uint64_t tracked_flows() const = 0;        // SMTP flows being followed
    virtual const event_log& events() const = 0;
    // Writes a control-plane record (control_api's audit trail) into the event log.
    virtual void audit(std::string json_object) = 0;

    // Bindings and accounts: nullptr where the data plane has none.
    virtual subscriber_table* subscriber_bindings() { return nullptr; }
    virtual account_registry* account_table() { return nullptr; }
    // Only called when subscriber_bindings() is not nullptr.
    virtual uint32_t bind(const ip_prefix& prefix, const std::string& account) = 0;
    virtual uint32_t unbind(const ip_prefix& prefix) = 0;
};

}  // namespace sekisho
