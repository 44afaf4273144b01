// Fleet mode's policy versions and fleet status through PostgreSQL
// (docs/fleet.md, "Policy versions and fleet status").
//
// Its thread, every heartbeat (the fleet file's sync_interval, within 100 ms..1 s):
// - upserts this gateway's row of the gateways table: group, build version,
//   the generation in force, the fleet version in force (0 when the
//   generation in force came from elsewhere: a file, the API, a rollback),
//   health (blocked, malformed_dropped, ring_drops, reload_failures,
//   fleet_apply_failures, refused_version, desired_older) and last_error;
// - reads the version its group should run (group_desired). A version newer
//   than the newest this gateway has handled (applied or refused) is fetched
//   and handed to the control thread, which applies it through
//   control_api::apply_fleet_policy: the API's path, validated, recorded in
//   the policy history with origin kind "fleet". A refusal changes nothing,
//   is reported in last_error and is not tried again for that version. A
//   desired version older than the one handled is never applied (a store
//   restored from an old backup does not roll the fleet back; a rollback is
//   a new version with old text): it is reported in health.desired_older.
//
// The newest version handled is kept in <state_dir>/fleet/policy_version
// (written durably by this thread) and, for an applied one, in the policy
// history: a restart neither applies a version again nor retries a refused
// one. A local change (API, SIGHUP) after a fleet version stays in force
// until the group's next version; status shows fleet version 0 meanwhile.
//
// PostgreSQL down, slow or refusing: the policy in force stays, the link is
// reported down (sekisho_fleet_link_up{store="postgres",concern="policy"}),
// reconnects back off from 100 ms doubling to 5 s, and the heartbeat resumes.
//
// Threading: construction, poll(), add_to_snapshot(), status() and the
// destructor on the control thread; store I/O and the cursor file only on
// this class's own thread. They exchange through one state block under a
// mutex held for copies only; the control thread never waits on the store.
// The apply's answer is delivered through that shared block, so an answer
// arriving after this object is gone (control_api stopping) is harmless.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "control/fleet/fleet_config.h"
#include "control/fleet/fleet_link.h"

namespace sekisho {

class pg_connection;

// Adds the gateways table's policy columns (after ensure_fleet_schema), in
// one transaction; idempotent. Throws pg_error.
void ensure_policy_columns(pg_connection& pg);

class policy_sync {
public:
    // Starts the thread; a store down at start is retried. Throws
    // std::runtime_error when the cursor file exists but cannot be read.
    policy_sync(const fleet_config& config, const fleet_context& context);
    ~policy_sync();
    policy_sync(const policy_sync&) = delete;
    policy_sync& operator=(const policy_sync&) = delete;

    // Control thread, every turn: refreshes what the heartbeat reports (once
    // per heartbeat interval) and hands a fetched version to control_api.
    void poll();
    void add_to_snapshot(control_snapshot& snapshot) const;
    // {"link_up", "fleet_version_in_force", "handled_version", "desired_version",
    //  "last_error", "last_sync" (Unix seconds, 0: never), "apply_failures"}
    nlohmann::json status() const;

    // The heartbeat interval: sync_interval, within 100 ms..1 s.
    static std::chrono::milliseconds heartbeat_interval(const fleet_config& config);

private:
    struct shared;
    void run();
    void refresh_view();

    fleet_config config_;
    fleet_context context_;
    std::chrono::milliseconds interval_;
    std::chrono::steady_clock::time_point last_view_{};
    std::shared_ptr<shared> s_;
    std::thread thread_;
};

}  // namespace sekisho
