// The data plane as the control API sees it (control_api.h): the DPDK data
// plane (dpdk_data_plane.h) or the XDP program (xdp_data_plane.h). Both apply a
// validated policy atomically as a new generation, dry-run one, export the
// same per-worker counter blocks and write the same event log.
//
// A policy change is two steps so that the control thread never waits on a
// compile and a failed change changes nothing:
//   prepare()  any thread, one at a time: every step that can fail (table
//              building, rule compiles, the data plane's bounds). The result
//              is not in force; dropping it is a dry run.
//   commit()   control thread: the swap. Refuses (throws, nothing changed)
//              only for control-thread state that moved since prepare (the
//              binding table filled up); after the swap nothing can fail.
//
// Subscriber bindings and the account registry exist in the DPDK data plane
// only (the XDP program knows prefixes, not accounts): a data plane without
// them returns nullptr and the API answers 501 naming the backend. The table
// is written through binding_table (binding_table.h), which subscriber
// identity needs too.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/limits/limit_request_box.h"

namespace sekisho {

class account_registry;
class binding_table;
class campaign_table;
class compiled_policy;
struct account_record;
class event_log;
class subscriber_table;
struct policy;
struct worker_counters;

// A policy built for one data plane, not yet in force.
struct prepared_policy {
    virtual ~prepared_policy() = default;
    std::shared_ptr<const policy> pol;
    uint64_t generation = 0;            // the generation it will run as
    // What it asks that this data plane accepts but will not enforce (one
    // line each, file:line first); empty when everything applies.
    std::vector<std::string> notes;
};

// The send-rate limit state of subscribers, for the support desk (the
// control API's limits show and reset): the workers' own address and prefix
// records through their request boxes (limit_request_box.h), the shared
// account cells in place (read and cleared as limit_cell.h says). Control
// thread only.
class subscriber_limit_state {
public:
    virtual ~subscriber_limit_state() = default;
    // Posts `r` to every worker; false while an earlier request is unanswered.
    virtual bool post_limit_request(const limit_record_request& r) = 0;
    // Each worker's answer (the records as it found them), once every worker
    // has answered. One worker should hold a subscriber's records (RSS on the
    // subscriber's address), but a NIC or PMD that spreads a subscriber's
    // connections over queues (net_af_packet's fanout hashes by connection)
    // leaves a record on each worker that saw one.
    virtual std::optional<std::vector<limit_record_answer>> limit_answers() = 0;
    // The account's shared record; nullptr for 0 or an id beyond the registry.
    virtual account_record* account_limits(uint32_t account_id) = 0;
    // The snapshot the workers run: the limits' slots and targets.
    virtual const compiled_policy& compiled() const = 0;
};

class data_plane {
public:
    virtual ~data_plane() = default;

    virtual const char* backend_name() const = 0;     // "dpdk", "xdp"
    // Control thread (the metrics scraper reads the generation too: atomic).
    virtual uint64_t generation() const = 0;
    // The policy in force; shared so that a prepare on another thread can
    // compare against it while the control thread goes on.
    virtual std::shared_ptr<const policy> running_policy() const = 0;
    const policy& active_policy() const { return *running_policy(); }

    // Builds `pol` as `generation` (dry_run: a throwaway build under a name
    // that cannot clash). Safe on a thread of its own while the control
    // thread runs, one prepare at a time. Throws policy_error,
    // rule_compile_timeout, std::runtime_error.
    virtual std::unique_ptr<prepared_policy> prepare(std::shared_ptr<const policy> pol, uint64_t generation,
                                                     bool dry_run) = 0;
    // Control thread: puts `p` in force; returns its generation.
    virtual uint64_t commit(std::unique_ptr<prepared_policy> p) = 0;
    // prepare + commit on the calling thread (start-up, tests).
    uint64_t apply(const policy& pol);

    // Counter blocks: one per worker (DPDK) or CPU (XDP), then the control thread's.
    virtual std::vector<const worker_counters*> all_counters() const = 0;
    virtual uint64_t tracked_flows() const = 0;        // SMTP flows being followed
    virtual const event_log& events() const = 0;
    // Writes a control-plane record (control_api's audit trail) into the event log.
    virtual void audit(std::string json_object) = 0;

    // Bindings and accounts: nullptr where the data plane has none; all three
    // or none. The table to read, the account registry, and the same table
    // to write.
    virtual subscriber_table* subscriber_bindings() { return nullptr; }
    virtual account_registry* account_table() { return nullptr; }
    virtual binding_table* writable_bindings() { return nullptr; }
    // Subscribers' limit state; nullptr where the data plane cannot reach it (XDP).
    virtual subscriber_limit_state* limit_state() { return nullptr; }
    // The workers' bulk-campaign counters (lock-free; the fleet merges its
    // bits into them); nullptr where the data plane has none (XDP).
    virtual campaign_table* campaigns() { return nullptr; }
};

}  // namespace sekisho
