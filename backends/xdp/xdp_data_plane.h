// The XDP program as the control API sees it (data_plane.h): policy
// generations applied and dry-run through xdp_backend, its per-CPU counters
// as counter blocks, its ring-buffer events in the event log.
//
// What the XDP path does not enforce (message, recipient and content limits,
// account scope) is accepted and returned by apply_notes() with file:line.
// It has no subscriber bindings or accounts (subscriber_bindings() is
// nullptr): those endpoints answer 501. Control thread only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "control/data_plane.h"
#include "control/policy/policy.h"
#include "dataplane/worker_counters.h"

namespace sekisho {

class event_log;
class xdp_backend;

class xdp_data_plane final : public data_plane {
public:
    // `backend` has `running` applied already (its first generation).
    xdp_data_plane(xdp_backend& backend, policy running, std::vector<std::string> notes, event_log& log);

    const char* backend_name() const override { return "xdp"; }
    uint64_t generation() const override;
    std::shared_ptr<const policy> running_policy() const override { return policy_; }
    // Builds the map image (the same bounds the maps have) and names what XDP
    // does not enforce; touches no map.
    std::unique_ptr<prepared_policy> prepare(std::shared_ptr<const policy> pol, uint64_t generation,
                                             bool dry_run) override;
    // Writes the inactive map set and flips to it (xdp_backend::apply: a
    // failure before the flip leaves the running generation).
    uint64_t commit(std::unique_ptr<prepared_policy> p) override;
    // What the running policy asks that XDP does not enforce.
    const std::vector<std::string>& running_notes() const { return notes_; }
    // Refreshes the blocks from the program's per-CPU counters first: always current.
    std::vector<const worker_counters*> all_counters() const override;
    // The blocks as last refreshed, for another thread (the metrics scraper):
    // refresh_counters() on the control thread writes them with relaxed stores.
    std::vector<const worker_counters*> counter_blocks() const;
    void refresh_counters() const;
    uint64_t tracked_flows() const override { return 0; }   // no SMTP flows in XDP
    const event_log& events() const override { return log_; }
    void audit(std::string json_object) override;

    // Moves the ring buffer's events into the log (named by the running policy).
    void drain_events();
    size_t cpus() const { return cpus_; }

private:
    xdp_backend& backend_;
    std::shared_ptr<const policy> policy_;
    std::vector<std::string> notes_;
    event_log& log_;
    size_t cpus_;
    // One block per CPU, then the control thread's (never written: no injected frames).
    std::vector<std::unique_ptr<worker_counters>> blocks_;
};

}  // namespace sekisho
