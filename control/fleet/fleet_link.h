// This gateway's membership in a fleet (sekishod --fleet FILE): what it
// shares through the fleet's PostgreSQL and Redis, one concern per member
// (docs/fleet.md). serve() creates it after the operator state and the
// control API, before the backend forwards; without --fleet there is none.
//
// Contract with the rest of the daemon:
// - Store I/O happens only on the fleet's own threads (one per concern). The
//   control thread exchanges with them through in-memory queues under short
//   locks: poll() never waits on a store, a socket or a disk beyond the local
//   state files the control thread writes anyway. The workers never see it.
// - A store that is down, slow or partitioned changes nothing that is in
//   force: every concern keeps its last known state, queues what it must send
//   (bounded, counted) and catches up when the store returns.
//
// Threading: construction, poll(), add_to_snapshot(), status() and the
// destructor on the control thread; the destructor stops the threads.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <memory>
#include <string>

#include "control/fleet/fleet_config.h"

namespace sekisho {

class account_limit_sync;
class binding_shipper;
class campaign_sync;
class control_api;
class event_shipper;
class data_plane;
class operator_binding_table;
class operator_state;
class operator_sync;
class policy_sync;
struct control_snapshot;

// What of the daemon the fleet's concerns reach: all owned by serve(),
// outliving the fleet_link. Pointers are null where the backend has none
// (XDP: no operator state, no bindings).
struct fleet_context {
    data_plane* plane = nullptr;
    operator_state* decisions = nullptr;
    operator_binding_table* api_bindings = nullptr;
    control_api* control = nullptr;
    std::string state_dir;     // <state_dir>/fleet/ is the fleet's local spool and cursors
    std::string events_path;   // the event log this gateway writes
    std::string history_path;  // the binding history (SQLite) RADIUS writes; empty: none on disk
    std::function<void(const std::string&)> log;   // one line to standard error
};

class fleet_link {
public:
    // Starts the fleet's threads; they connect in the background (a store
    // down at start is retried, not fatal). Throws std::runtime_error for
    // local problems only (the spool directory).
    fleet_link(fleet_config config, fleet_context context);
    ~fleet_link();
    fleet_link(const fleet_link&) = delete;
    fleet_link& operator=(const fleet_link&) = delete;

    // Every control-thread turn: puts in force what came back from the fleet.
    void poll();
    // The fleet's metrics: link state, backlog, lag, last sync per store.
    void add_to_snapshot(control_snapshot& snapshot) const;
    // For the control API's status: {"gateway", "group", ...per concern}.
    nlohmann::json status() const;

    const fleet_config& config() const { return config_; }

private:
    fleet_config config_;
    fleet_context context_;
    std::unique_ptr<account_limit_sync> account_limits_;   // Redis configured and account limit cells
    std::unique_ptr<campaign_sync> campaign_;   // Redis configured and a campaign table: fleet-wide campaigns
    std::unique_ptr<operator_sync> operator_sync_;   // suspensions (operator_sync.h); null without PostgreSQL
    std::unique_ptr<policy_sync> policy_;   // with postgres: policy versions and fleet status
    std::unique_ptr<event_shipper> events_;   // with PostgreSQL and an event log file
    std::unique_ptr<binding_shipper> bindings_;   // with PostgreSQL and a binding history file
};

}  // namespace sekisho
