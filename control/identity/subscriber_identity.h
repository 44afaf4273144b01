// Subscriber identity for a running data plane: RADIUS accounting in,
// bindings into the data plane's subscriber table (binding_table.h) and the
// binding history.
//
// The history decides, the data plane follows: each accounting update goes
// to the binding history (binding_history::apply_in_batch()), which applies
// the ordering rules (binding_history.h) and returns the data-plane changes
// they imply; exactly those are applied to the subscriber table. Without
// history.database the same rules run on a history in memory (":memory:"),
// so RADIUS behaves the same, only forgetting at exit.
//
// One RADIUS packet is applied whole or not at all, data plane and history
// alike: every address is checked bindable first (else the packet is
// refused: radius::update_refused, counted bad_address, not answered). The
// updates of one listener poll share one transaction and one data-plane
// undo log, without a savepoint per update (a savepoint copies every page
// it first touches); when an update fails midway (a history error, the
// table or the account registry full), the whole batch is taken back, data
// plane and history, and its other updates are applied again, each in a
// savepoint as they would have been alone: the failed one is as if never
// sent, the others are kept, with the same rows and changes. The updates of
// one poll are committed together; if that COMMIT fails, the poll's
// data-plane changes are undone too. A NAS is answered only after the commit (RFC 2866:
// the response means the record is stored); one not answered retransmits.
//
// At start the open bindings of the history are restored into the data
// plane, so a restart (also kill -9) forgets nothing that was answered.
//
// Control thread only.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "control/binding_table.h"
#include "control/identity/binding.h"
#include "control/identity/binding_history.h"
#include "control/policy/policy.h"
#include "control/identity/radius_accounting.h"

namespace sekisho {

class subscriber_identity {
public:
    using log_fn = std::function<void(const std::string&)>;
    // Opens the history and the RADIUS listener the policy names (either may
    // be absent) and restores the history's open bindings into `table`,
    // which must outlive this. Throws std::runtime_error / policy_error with
    // the reason.
    subscriber_identity(binding_table& table, const identity_config& config, log_fn log);
    ~subscriber_identity();

    // The RADIUS clients the policy's radius.clients_file holds now, read and
    // validated (policy_error, each problem as "file:line: message"); nullopt
    // when the policy has no RADIUS listener. Reads only the file: any
    // thread, so a policy change reads it on its prepare thread.
    static std::optional<radius::client_table> read_radius_clients(const identity_config& config);
    // Control thread: the listener checks every datagram from now on against
    // `clients` (added NASes are accepted, a rotated secret replaces the old
    // one at once) and forgets its answered-request cache (those responses
    // were signed with the old secrets). Logs the count and `path`. Nothing
    // without a listener (radius.listen is read at start only).
    void replace_radius_clients(radius::client_table clients, const std::string& path);

    // From the control loop: handles waiting RADIUS datagrams, and purges the
    // history once an hour.
    void poll();

    const radius::listener_counters* radius_counters() const;
    uint64_t bindings_restored() const { return restored_; }
    // Updates or restored bindings that could not be applied (table or
    // registry full, a history error), and data-plane entries an undo could
    // not put back.
    uint64_t apply_errors() const { return apply_errors_; }
    // The durable history (history.database), or nullptr when none is
    // configured (the in-memory one is not a record to query).
    binding_history* history() { return durable_ ? history_.get() : nullptr; }
    // The RADIUS sessions holding `address` now (the open rows whose prefix
    // contains it, of the durable or the in-memory history): what an API
    // binding of it overrides, what comes back when that binding goes.
    std::vector<binding_record> open_sessions_holding(const ip_prefix& address) const;
    // The RADIUS sessions inside `prefix` now (open rows of that prefix or
    // longer ones within it: the /32s under an API /24), at most `limit`,
    // ordered by address: what comes back when an API binding wider than
    // them goes.
    std::vector<binding_record> open_sessions_within(const ip_prefix& prefix, size_t limit) const;
    // The RADIUS listener, or nullptr when radius.listen is not set.
    const radius::accounting_listener* listener() const { return listener_.get(); }

    // The listener's callbacks (public for tests that drive them directly).
    // apply: true when the update's history rows and data-plane changes are
    // in place (pending the commit); throws radius::update_refused for an
    // address the data plane cannot bind, std::runtime_error for a failure
    // (nothing of the update applied).
    bool apply(const binding_update& u);
    // Commits the updates applied since the last commit; throws (after
    // taking their data-plane changes back) when the COMMIT fails.
    bool commit();

private:
    void apply_changes(const std::vector<binding_change>& changes, binding_table::undo_log& undo);
    void undo(binding_table::undo_log& undo, const std::string& why);
    // After `failed` could not be applied (its data-plane changes are the
    // batch log's entries from `undo_mark` on): takes the batch back and
    // applies its other updates again. When that fails too, the batch is
    // lost (rolled back; commit() throws and no NAS is answered).
    void replay_without(const binding_update& failed, size_t undo_mark, const std::string& why);
    // The open batch's data-plane changes undone (`why` for the log), and the batch forgotten.
    void take_back_batch(const std::string& why);
    // The open batch forgotten: committed, or taken back.
    void forget_batch();

    binding_table& table_;
    identity_config config_;
    log_fn log_;
    bool durable_ = false;
    std::unique_ptr<binding_history> history_;   // durable or in memory; always there
    std::unique_ptr<radius::accounting_listener> listener_;
    bool batch_open_ = false;                // begin() called, commit() not yet
    binding_table::undo_log batch_undo_;   // the data-plane changes not yet committed
    std::vector<binding_update> batch_updates_;   // the updates of the batch, for a re-run
    std::chrono::seconds retention_{0};
    uint64_t restored_ = 0, apply_errors_ = 0;
    std::chrono::steady_clock::time_point next_purge_;
};

}  // namespace sekisho
