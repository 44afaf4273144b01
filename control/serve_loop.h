// The control plane of a live sekishod, the same for either backend: the
// control thread's loop, and what it asks of the backend that forwards.
//
// serve() sets up, in this order: subscriber identity (RADIUS accounting and
// the binding history, for a data plane with a binding table: it restores
// the history's open bindings before anything is forwarded), the operator
// state (`<state dir>/operator.db`: the suspensions and API bindings, put in
// force over the RADIUS bindings; operator_state.h), the Prometheus
// exporter (--metrics), the control API (--api-socket, --api-tcp) and the
// signal handlers; then it starts the backend and loops until SIGINT or
// SIGTERM. Each turn, every 10 ms: the data plane's events into the event
// log, RADIUS datagrams (and the hourly history purge), the API's waiting
// requests, a SIGHUP's reload (a policy change like an API apply, applied
// only when the file changed: control_api.h), the policy changes moved on;
// every 20th turn (~200 ms) the suspensions of content quarantines stored,
// the backend's counters refreshed and the metrics snapshot updated. At stop the
// backend stops forwarding and flushes its events; the summary (--summary
// FILE) is written and a few lines go to standard error.
//
// Everything here runs on the calling thread (the control thread), except
// what the backend's scraper_counters() returns, which the metrics scraper
// calls on its own.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <array>
#include <cstddef>
#include <memory>
#include <string>

#include "control/api/api_server.h"
#include "control/observe/metrics.h"
#include "control/policy/policy.h"
#include "control/state/policy_history.h"

namespace sekisho {

class data_plane;

// The control plane's own flags of a live run, the same for either backend.
struct serve_options {
    std::string policy_path;
    std::string events_path;               // empty: the policy's events.file; "-": stdout
    std::string summary_path;              // counters as JSON at exit; empty: none
    std::string metrics_address;           // Prometheus exposer, e.g. 127.0.0.1:9108; empty: none
    // Operator state that survives restarts (control/state/state_dir.h);
    // created 0750 at start, before the backend forwards.
    std::string state_dir = "/var/lib/sekisho";
    // How many policy generations are kept before the one in force, for
    // rollback (--policy-history N); kept under <state_dir>/policy/.
    size_t policy_history_depth = policy_history::default_depth;
    // Fleet mode (--fleet FILE, control/fleet/fleet_config.h); empty: this
    // gateway stands alone and nothing of control/fleet runs.
    std::string fleet_path;
    // The control API's listeners (--api-socket, --api-group, --api-tcp,
    // --api-cert, --api-key, --api-token-file); none when both unix_path and
    // tcp_listen are empty.
    api_config api;
};

// The policy a live run starts with (docs/policy.md, "Which policy is in
// force"): the generation that was in force when sekishod stopped, restored
// from the policy history under <state_dir>/policy/, unless the policy file
// differs from what was last applied from it (the file changed while the
// daemon was down, or the first start): then the file, recorded as a new
// generation before anything forwards, and said on standard error. Checked
// with the files it names (check_policy_files; events.file only when
// --events does not replace it). The backend puts it in force as
// `generation`, so numbers keep increasing across restarts. Throws
// policy_error (an invalid policy), policy_history_error (a history entry
// that cannot be trusted: naming its file), std::runtime_error (the state
// directory).
struct starting_policy {
    std::string text;
    policy pol;
    uint64_t generation = 1;
    std::shared_ptr<policy_history> history;
    // What start decided, for the audit trail once the event log is open.
    std::string note;
};
starting_policy read_starting_policy(const serve_options& options);

// A backend forwarding live, as the serve loop drives it. Every call is on
// the control thread but scraper_counters()'s function.
class live_backend {
public:
    virtual ~live_backend() = default;

    // The data plane the control API, the metrics and the summary see.
    virtual data_plane& plane() = 0;
    // What the API's status names the two sides (DPDK ports, XDP
    // interfaces) and how many workers (DPDK) or CPUs (XDP) forward.
    virtual std::array<std::string, 2> side_names() const = 0;
    // The Linux interface behind each side (access, core): what an operator
    // knows the ports by; empty for a port that is a device of its own (PCI).
    virtual std::array<std::string, 2> interface_names() const { return side_names(); }
    virtual unsigned workers() const = 0;
    // The counter blocks the metrics scraper sums on its own thread: valid
    // while the backend lives, written with relaxed stores only.
    virtual counter_source scraper_counters() const = 0;

    // Starts forwarding and says so on standard error. Throws
    // std::runtime_error; the destructor stops what it started.
    virtual void start() = 0;
    // Every turn: moves the data plane's events into the event log.
    virtual void drain_events() = 0;
    // Every ~200 ms, before the metrics snapshot: brings the blocks
    // scraper_counters() returns up to date where they are copies.
    virtual void refresh_counters() {}
    // Adds what only this backend knows to the metrics snapshot; serve()
    // fills the generation, limit names, event log, table sizes and identity.
    virtual void add_to_snapshot(control_snapshot& snapshot) = 0;
    // Stops forwarding, moves the last events into the event log and writes
    // what aggregation windows still hold: afterwards the counters and the
    // event log are final. Called once, after start().
    virtual void stop() = 0;
    // Adds this backend's keys to the exit summary (serve() writes the
    // counters, mode, policy, generation, events and identity).
    virtual void add_to_summary(nlohmann::json& report) const = 0;
    // What the stop line adds after "sekishod: stopped" (", XDP program detached").
    virtual std::string stop_note() const { return ""; }
};

// Runs the control plane over `backend` until SIGINT or SIGTERM, then stops
// it; returns the exit code (0). `start` is what read_starting_policy()
// returned and the backend put in force, `first_apply_seconds` how long the backend took to put it in force (the
// first sekisho_policy_apply_duration_seconds observation). The handlers of
// SIGINT, SIGTERM and SIGHUP are serve()'s while it runs and restored when it
// returns. Throws std::runtime_error: a listener that cannot start, what
// start() throws, a summary that cannot be written.
int serve(live_backend& backend, const serve_options& options, const starting_policy& start,
          double first_apply_seconds);

}  // namespace sekisho
