// Operator state shared by the fleet through PostgreSQL: a suspension
// (利用停止) or its removal, an API binding or its removal, made at any
// gateway is in force at every gateway within about a second, and a limit
// reset made at any gateway resets the subscriber's (account's) limits at
// every gateway (docs/fleet.md, "Operator state across the fleet").
//
// Kinds in the log: suspend, resume (account; payload {"reason"}), bind
// (prefix, account), unbind (prefix), limits_reset (account or address in
// prefix; payload {"limit"}: "" every limit). Each kind has one apply path,
// the local API's: suspensions through operator_state and the account
// registry, bindings through control_api::apply_fleet_binding (the bindings
// handler's store and table steps), resets through
// control_api::apply_fleet_reset (the limits handler).
//
// A limit reset is an action, not a state: applied at most once (the cursor
// is stored before the workers reset), never at the gateway where it was made
// (it was done there), and skipped when it is older than the running
// policy's longest limit window plus cool-down (it would clear only what was
// counted after it: sekisho_fleet_operator_resets_expired_total).
//
// The fleet's tables (ensure_operator_tables):
//   operator_changes   the ordered change log: id (bigserial: the order every
//                      gateway applies), change_id (unique: the idempotency key
//                      a gateway made), kind, account, prefix, payload (jsonb:
//                      {"reason"}), gateway (origin), caller, at
//   fleet_suspensions  the current state: account, since, caller, reason,
//                      origin_gateway (for the desk, for a new gateway, for a
//                      reconciliation after a restore)
// A change is inserted under a transaction-scoped advisory lock, so ids commit
// in id order (a reader never skips an id that commits late), together with
// pg_notify('sekisho_operator', id) in the same transaction.
//
// Local change (the API on this gateway): already durable in operator.db and
// in force here; operator_state wrote it into its outbox in the same SQLite
// transaction. This class publishes the outbox, oldest first, one PostgreSQL
// transaction per change (INSERT ... ON CONFLICT (change_id) DO NOTHING: a
// resend after a crash between the COMMIT and the outbox delete inserts
// nothing), and deletes the row after the COMMIT.
//
// Fleet change: the thread LISTENs on its own connection and also reads every
// second; it reads changes with id > the last one it read (the durable cursor
// in operator.db at start), in id order, and queues them for the control
// thread. poll() applies each like a local API suspension: durable first
// (suspension and cursor in one SQLite transaction, no outbox row: no echo),
// then the account registry, then an audit record naming the origin gateway.
// This gateway's own changes come back too and change nothing, unless a
// change of another gateway came between (the log's order wins everywhere).
// A change of an account whose local change still waits in the outbox is
// skipped: the local one will be published after it and win.
//
// A store that comes back OLDER than this gateway (the change it read last
// is missing or different: restored from a backup; checked at every connect
// and before every read) never rolls the
// gateway back: logged loudly, counted (sekisho_fleet_operator_store_regressions_total),
// the cursor moves to the last change in the store no later than the one
// applied here, and every local suspension the store's fleet_suspensions
// lacks is published again. Resumptions are not republished: after a
// restore, a suspension errs on the safe side (docs/fleet.md).
//
// Threading: construction, poll(), add_to_snapshot(), status() and the
// destructor on the control thread; the store I/O on the class's own thread.
// They exchange through in-memory queues under one short lock. Bounds: at
// most 10000 fleet changes wait for poll() (the thread stops reading until
// they are applied), and poll() applies at most 64 per turn (each is an
// fsynced SQLite transaction: a long catch-up does not stall the control
// thread); the outbox lives on disk (operator.db), unbounded but one row per
// operator change.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <variant>
#include <vector>

#include "control/state/operator_state.h"

namespace sekisho {

class account_registry;
class control_api;
class pg_connection;
struct control_snapshot;

// Creates the operator tables if missing, in one transaction. Throws pg_error.
void ensure_operator_tables(pg_connection& pg);

struct operator_sync_options {
    std::string gateway;                    // this gateway's name in the fleet
    std::string conninfo_file;              // postgres.conninfo_file
    std::chrono::milliseconds poll_interval{1000};   // the fallback read besides NOTIFY
    std::function<void(const std::string&)> log;     // one line to standard error
    // Writes one audit record (the control API's trail); fleet_link adds the
    // policy generation. May be empty.
    std::function<void(nlohmann::json)> audit;
    // The control API whose bindings and limits handlers put binding changes
    // and limit resets in force (control_api::apply_fleet_binding,
    // apply_fleet_reset). Null: those kinds are rejected (no data plane
    // bindings), suspensions still apply.
    control_api* control = nullptr;
};

class operator_sync {
public:
    // Turns the outbox of `decisions` on and starts the thread (it connects
    // in the background; a store down at start is retried). `accounts` may be
    // null (no data plane accounts: the state is only stored).
    operator_sync(operator_sync_options options, operator_state& decisions, account_registry* accounts);
    ~operator_sync();
    operator_sync(const operator_sync&) = delete;
    operator_sync& operator=(const operator_sync&) = delete;

    // Control thread, every turn: hands new outbox rows to the thread,
    // deletes the published ones, applies what came from the fleet.
    void poll();
    void add_to_snapshot(control_snapshot& snapshot) const;
    nlohmann::json status() const;

    // For tests and status: changes applied here from the fleet, published
    // from here.
    uint64_t applied() const { return applied_; }
    uint64_t published() const { return published_total_; }
    uint64_t regressions() const;
    // Changes in the fleet's log (as of the last complete read) not applied here yet.
    int64_t lag() const;
    bool link_up() const;

private:
    // What the thread hands to the control thread, in order.
    struct regression {
        fleet_cursor cursor;                         // where to continue
        std::vector<std::string> store_suspended;    // fleet_suspensions' accounts
        std::string what;                            // for the log
    };
    using message = std::variant<fleet_change, regression>;

    void run();
    void connect();
    void check_regression();
    void publish_pending();
    void read_changes();
    void wait(std::chrono::steady_clock::time_point until);
    void wake();
    void apply(const fleet_change& c);
    void apply_binding(const fleet_change& c);
    void apply_reset(const fleet_change& c);
    void reconcile(const regression& r);

    operator_sync_options options_;
    operator_state& decisions_;
    account_registry* accounts_;

    // Thread only.
    std::unique_ptr<pg_connection> pg_;
    fleet_cursor read_upto_;          // the last change read (and queued)
    std::string last_error_logged_;

    // Shared, under mu_.
    mutable std::mutex mu_;
    std::vector<fleet_change> outbox_copy_;           // control thread -> thread
    std::unordered_set<std::string> published_ids_;   // thread: committed since the copy
    std::vector<std::string> published_;              // thread -> control thread
    std::deque<message> incoming_;                    // thread -> control thread
    bool link_up_ = false;
    uint64_t link_downs_ = 0;   // outages (a store down at start counts once)
    int64_t last_sync_ = 0;          // Unix seconds of the last complete read
    int64_t store_head_ = 0;         // the log's last id at that read
    uint64_t regressions_ = 0;
    std::string last_error_;

    // Control thread only.
    uint64_t outbox_writes_seen_ = UINT64_MAX;
    int64_t applied_upto_ = 0;       // the durable cursor's id
    size_t backlog_ = 0;
    uint64_t applied_ = 0, published_total_ = 0, rejected_ = 0, superseded_ = 0, apply_failures_ = 0;
    uint64_t resets_expired_ = 0;
    std::string last_apply_error_;

    std::atomic<bool> stop_{false};
    int wake_fd_ = -1;               // eventfd: stop, new outbox rows
    std::thread thread_;
};

}  // namespace sekisho
