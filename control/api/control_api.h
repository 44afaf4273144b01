// The control API's endpoints (docs/api.md), answered without ever making the
// control thread wait.
//
// Every request is validated: a bad body or argument gets 400 with a precise
// error naming the field, never a partial change; a bad policy gets 422 with
// every "file:line: message". Policy changes (apply, dry run, rollback, and
// SIGHUP's reload) run one at a time, in order: the policy is read, checked
// and compiled on a thread of its own while the control thread goes on
// serving RADIUS, the API and the event drain; that thread then records the
// new generation durably (policy_history), and the control thread swaps it
// in (data_plane::commit), the last step of a change, and answers. An
// acknowledged change is on disk; a crash between the record and the swap
// comes back with the recorded generation, which was validated and compiled.
//
// The generation in force is the truth (docs/policy.md): SIGHUP applies the
// policy file only when its content differs from what was last applied from
// it (else the generation in force, whatever its origin, stays, and that is
// said); rollback returns to the generation before the one in force, as a new
// generation, and walks further back each time until the kept history ends
// (409). The RADIUS clients file is read and validated with the policy on
// that thread and swapped in with it: a bad clients file refuses the whole
// change. Event log queries run on the query_worker. Everything else is
// answered at once.
// Suspensions and API bindings are written to the operator state
// (control/state/operator_state.h) and committed before the data plane
// changes and before the answer; a write that fails is answered 500 (503:
// the file locked by another process) and changes nothing.
//
// Threading: handle(), poll(), reload() and the destructor run on the control
// thread. Answers are given through api_reply, from whichever thread
// finished the work.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "control/api/api_server.h"
#include "control/api/limit_desk.h"
#include "control/api/query_worker.h"

namespace sekisho {

class data_plane;
struct api_command;
struct policy;
struct policy_generation;
class policy_history;
class subscriber_identity;
class operator_state;
class operator_binding_table;
struct fleet_change;
struct campaign_fleet_figure;
enum class fleet_apply;

struct control_context {
    data_plane* plane = nullptr;             // the DPDK data plane or the XDP program
    subscriber_identity* identity = nullptr;
    // Where suspensions and API bindings are stored, and the table RADIUS
    // writes through (API bindings win). Both null without bindings (XDP).
    operator_state* decisions = nullptr;
    operator_binding_table* api_bindings = nullptr;
    std::string policy_path;
    std::string events_path;                 // "-" when events go to stdout
    bool events_overridden = false;          // --events replaced the policy's events.file
    std::string port_names[2];               // DPDK ports or XDP interfaces
    std::string interface_names[2];          // the Linux interfaces behind them; empty: none (PCI)
    unsigned workers = 1;                    // DPDK workers; XDP: CPUs
    std::chrono::steady_clock::time_point started;
    std::function<void(double)> observe_apply;   // metrics hook, may be empty
    const api_server* server = nullptr;
    // The policy generations (policy_history.h): the one in force, where it
    // came from, what a rollback returns to. Control thread; a change's
    // thread writes its entry. Null: control_api keeps them in memory,
    // starting with `policy_text` as the plane's generation from the file.
    policy_history* history = nullptr;
};

class control_api {
public:
    control_api(control_context ctx, std::string policy_text);
    // Waits for a policy change still compiling (its caller is answered 503).
    ~control_api();
    control_api(const control_api&) = delete;
    control_api& operator=(const control_api&) = delete;

    // Answers `request` through `reply`, now or once its work is done; what
    // changes state (or tried to) is audited.
    void handle(const api_request& request, api_reply reply);
    // Moves policy changes on: a finished compile is swapped in and its
    // caller answered, the next waiting change starts. Every loop turn.
    void poll();
    // SIGHUP: queues a reload of the policy file (one waiting reload at most);
    // the outcome goes to standard error and the audit trail.
    void reload();
    // Stores the suspensions the workers made themselves (a content rule's
    // quarantine verdict sets the account's flag) that the operator state
    // does not hold yet, so that they survive a restart like the operator's.
    // Scans the account registry only when the workers acted on a verdict
    // since the scan before last (the flag is set just after the count):
    // call it every few hundred milliseconds.
    void record_quarantines();
    // Writes what start decided about the policy (restored the generation in
    // force, or applied a file changed while sekishod was down) to the audit
    // trail: endpoint policy_start, caller sekishod, `note`.
    void audit_start(const std::string& note);
    // Fleet mode, once the fleet link exists (it is created after the API):
    // `status` shows what `fleet_status` returns under "fleet" (null without).
    // Control thread.
    void show_fleet_status(std::function<nlohmann::json()> fleet_status) { fleet_status_ = std::move(fleet_status); }
    // Fleet mode with Redis: GET /v1/campaigns adds the fleet's figures that
    // `fleet_campaigns` returns (campaign_sync::fleet_figures: a copy under a
    // short mutex hold, no store I/O). Control thread.
    void show_fleet_campaigns(std::function<std::vector<campaign_fleet_figure>()> fleet_campaigns) {
        fleet_campaigns_ = std::move(fleet_campaigns);
    }
    // Fleet mode: told of every limits reset that cleared account cells, the
    // API's and the fleet's (limit_desk::on_account_reset); empty: nobody.
    // Control thread.
    void on_account_limits_reset(limit_desk::account_reset_fn fn) { limits_.on_account_reset(std::move(fn)); }
    // Fleet mode (control/fleet/policy_sync.h): applies `text`, the fleet's
    // policy version `fleet_version` desired for `group`, through the same
    // path as an API apply (validated, compiled off the control thread,
    // recorded in the policy history with origin kind "fleet", swapped in),
    // queued behind the changes waiting. `done` gets the answer an API caller
    // would get (200 with the generation, 409/422/500 refused: nothing
    // changed), on the control thread; the change is audited as
    // fleet_policy_apply by caller "fleet".
    void apply_fleet_policy(std::string text, uint64_t fleet_version, std::string group,
                            std::function<void(const api_response&)> done);
    // Fleet mode (control/fleet/operator_sync.h), control thread: an API
    // binding change (kind bind or unbind) read from the fleet's log, put in
    // force through the same path as bindings add / bindings del: the
    // table's checks, then durable (operator_state::apply_fleet_change: the
    // binding and the cursor in one transaction, no outbox row), then the
    // binding table (API bindings win over RADIUS; a removal gives back what
    // held the prefix). The answer is what an API caller would get (its body
    // names what was overrode or restored); `outcome` says whether it changed
    // anything. A refusal before the store step (a prefix too wide here, the
    // account registry full) stores the cursor alone; a table that fills up
    // after it keeps the binding stored (bound at the next start) and answers 409.
    api_response apply_fleet_binding(const fleet_change& c, fleet_apply& outcome);
    // Fleet mode, control thread: a limit reset made at another gateway
    // (kind limits_reset), through the same limits handler as the API's;
    // `done` gets the answer, now or from a later poll(). Not published again.
    void apply_fleet_reset(const fleet_change& c, api_reply done);
    // The longest limit window plus cool-down in the running policy, in
    // seconds: a reset older than that clears nothing it was meant to clear.
    int64_t limit_horizon_s() const;
    // The generation in force and its origin; null before the first start.
    const policy_generation* policy_in_force() const;
    // SIGHUP reloads refused so far (invalid policy, start-only keys, a
    // compile or commit failure): sekisho_policy_reload_failures_total.
    uint64_t reload_failures() const { return reload_failures_; }
    // A change runs or waits.
    bool busy() const { return running_ != nullptr || !waiting_.empty(); }

    // In-process callers (tests): handle(), then poll() until answered.
    api_response handle_and_wait(const api_request& request);

private:
    std::function<nlohmann::json()> fleet_status_;
    std::function<std::vector<campaign_fleet_figure>()> fleet_campaigns_;
    struct change;        // one policy change: apply, dry run, rollback or reload
    struct change_result;

    void audit(const api_command* c, const std::string& endpoint, const std::string& caller,
               const api_response& r, const std::string& note = "");
    void dispatch(const api_command& c, const api_request& r, api_reply reply);
    void queue_change(std::unique_ptr<change> ch);
    void start_next_change();
    void finish_change();
    api_response commit_change(change& ch, change_result& result);

    api_response status();
    api_response campaigns(const api_command& c);
    api_response policy_show();
    api_response bindings_list(const api_command& c);
    api_response bindings_add(const api_command& c, const std::string& caller);
    api_response bindings_del(const api_command& c, const std::string& caller);
    // The part of bindings add / del after the request's own checks; `fleet`
    // non-null: a change read from the fleet's log (stored with the cursor,
    // not published), `outcome` set.
    api_response add_api_binding(const api_command& c, const std::string& caller, const fleet_change* fleet,
                                 fleet_apply* outcome);
    api_response remove_api_binding(const api_command& c, const std::string& caller, const fleet_change* fleet,
                                    fleet_apply* outcome);
    void whois(const api_command& c, api_reply reply);
    api_response account_suspend(const api_command& c, const std::string& caller, bool suspend);
    api_response accounts_list(const api_command& c);
    void post_query(api_reply reply, std::function<api_response()> query);

    control_context ctx_;
    std::unique_ptr<policy_history> own_history_;   // when ctx_.history is null
    policy_history* history_;
    std::unique_ptr<change> running_;
    std::thread running_thread_;
    std::deque<std::unique_ptr<change>> waiting_;
    query_worker queries_;
    std::vector<std::string> quarantine_store_failed_;   // logged once until stored
    uint64_t verdicts_acted_seen_ = UINT64_MAX;           // at the last record_quarantines()
    bool quarantine_rescan_ = false;
    limit_desk limits_;
    uint64_t reload_failures_ = 0;
};

}  // namespace sekisho
