#include "control/identity/subscriber_identity.h"

#include <algorithm>
#include <stdexcept>

namespace sekisho {


namespace {
radius::listener_config listen_config(const std::string& text) {
    try {
        return radius::parse_listen(text);
    } catch (const std::invalid_argument& e) {
        throw std::runtime_error(std::string("radius.listen: ") + e.what());
    }
}
}  // namespace

std::optional<radius::client_table> subscriber_identity::read_radius_clients(const identity_config& config) {
    if (config.radius_listen.empty()) return std::nullopt;
    return radius::load_clients_file(config.radius_clients_file);
}

void subscriber_identity::replace_radius_clients(radius::client_table clients, const std::string& path) {
    if (!listener_) return;
    const size_t n = clients.size();
    listener_->replace_clients(std::move(clients));
    if (log_) log_("radius: " + std::to_string(n) + " clients from " + path + " in force");
}

subscriber_identity::subscriber_identity(binding_table& table, const identity_config& config, log_fn log)
    : table_(table), config_(config), log_(std::move(log)), next_purge_(std::chrono::steady_clock::now()) {
    // Closed rows stay at least as long as the oldest event the listener
    // accepts: a Start resent up to then must still find its session's row
    // (else it would open the session again).
    const std::chrono::seconds max_event_age{radius::time_bounds{}.max_age_seconds};
    const auto configured_retention = std::chrono::duration_cast<std::chrono::seconds>(
        std::chrono::nanoseconds(static_cast<int64_t>(config.history_retention_ns)));
    durable_ = !config.history_database.empty();
    history_ = std::make_unique<binding_history>(durable_ ? config.history_database : std::string(":memory:"));
    retention_ = durable_ ? std::max(max_event_age, configured_retention) : max_event_age;
    for (const binding_record& r : history_->open_bindings()) {
        if (r.account.empty()) continue;   // a session without User-Name binds nothing
        try {
            table_.bind(r.address, r.account);
            ++restored_;
        } catch (const std::exception& e) {
            ++apply_errors_;
            if (log_) log_("history: cannot restore " + r.address.to_string() + ": " + e.what());
        }
    }
    if (!config.radius_listen.empty()) {
        listener_ = std::make_unique<radius::accounting_listener>(
            listen_config(config.radius_listen), radius::load_clients_file(config.radius_clients_file),
            [this](const binding_update& u) { return apply(u); }, [this](const std::string& line) {
                if (log_) log_("radius: " + line);
            });
        listener_->set_commit([this] { return commit(); });
    }
}

subscriber_identity::~subscriber_identity() {
    // Not committed: not answered either, the NASes retransmit.
    if (history_->in_transaction()) history_->rollback();
}

void subscriber_identity::apply_changes(const std::vector<binding_change>& changes, binding_table::undo_log& undo) {
    for (const binding_change& c : changes) {
        if (c.what == binding_change::action::bind) table_.bind(c.address, c.account, undo);
        else table_.unbind(c.address, c.account, undo);
    }
}

void subscriber_identity::undo(binding_table::undo_log& log, const std::string& why) {
    const size_t entries = log.entries.size();
    if (const size_t lost = table_.undo_bindings(log)) {
        apply_errors_ += lost;
        if (log_)
            log_("bindings: " + std::to_string(lost) + " of " + std::to_string(entries) +
                 " subscriber table entries could not be put back after " + why + " (the table is full)");
    }
}

bool subscriber_identity::apply(const binding_update& u) {
    if (u.kind == binding_kind::start || u.kind == binding_kind::interim || u.kind == binding_kind::stop) {
        for (const ip_prefix& a : u.addresses()) {
            try {
                table_.check_bindable(a);
            } catch (const std::exception& e) {
                throw radius::update_refused(e.what());
            }
        }
    }
    if (batch_open_ && !history_->in_transaction()) {
        // SQLite rolled the batch back by itself after an error (SQLITE_FULL,
        // SQLITE_IOERR): the updates applied before are gone; commit() takes
        // their data-plane changes back. Nothing more joins this batch.
        ++apply_errors_;
        throw std::runtime_error("history: the transaction of this poll was rolled back after an error");
    }
    if (!batch_open_) {
        try {
            history_->begin();
        } catch (const std::exception&) {
            ++apply_errors_;
            throw;
        }
        batch_open_ = true;
    }
    // The fast way: no savepoint, the data-plane changes into the batch's
    // undo log. What fails takes the batch back and re-runs the others.
    const size_t undo_mark = batch_undo_.entries.size();
    try {
        apply_changes(history_->apply_in_batch(u), batch_undo_);
    } catch (const std::exception& e) {
        ++apply_errors_;
        replay_without(u, undo_mark, e.what());
        throw;
    }
    batch_updates_.push_back(u);
    return true;
}

void subscriber_identity::replay_without(const binding_update& failed, size_t undo_mark, const std::string& why) {
    // The failed update's own data-plane changes first (its entries are the
    // last in the log), then the batch's; the history's batch goes whole.
    binding_table::undo_log own;
    own.entries.assign(batch_undo_.entries.begin() + static_cast<std::ptrdiff_t>(undo_mark), batch_undo_.entries.end());
    batch_undo_.entries.resize(undo_mark);
    undo(own, std::string("a failed ") + to_string(failed.kind));
    std::vector<binding_update> again;
    again.swap(batch_updates_);
    take_back_batch(std::string("a failed ") + to_string(failed.kind) + " (the rest of its batch is re-applied)");
    history_->rollback();
    // The others again, each in its own savepoint as before: the same rows,
    // the same changes (the history and the table are back where the batch
    // began). If even that fails, the batch is lost: commit() reports it and
    // the NASes retransmit.
    try {
        history_->begin();
        for (const binding_update& p : again) {
            const std::vector<binding_change> changes = history_->apply_in_savepoint(p);
            binding_table::undo_log log;
            try {
                apply_changes(changes, log);
            } catch (...) {
                undo(log, "a re-applied update");
                throw;
            }
            history_->release_savepoint();
            batch_undo_.entries.insert(batch_undo_.entries.end(), log.entries.begin(), log.entries.end());
            batch_updates_.push_back(p);
        }
    } catch (const std::exception& e) {
        ++apply_errors_;
        take_back_batch("a batch that could not be re-applied");
        history_->rollback();   // commit() finds no transaction: the batch is reported lost
        if (log_) log_("history: the batch could not be re-applied after " + why + ": " + e.what());
    }
}

bool subscriber_identity::commit() {
    if (!batch_open_) return true;
    batch_open_ = false;
    if (!history_->in_transaction()) {
        ++apply_errors_;
        take_back_batch("a batch SQLite rolled back");
        throw std::runtime_error("history: the transaction of this poll was rolled back after an error; "
                                 "its updates are not stored");
    }
    try {
        history_->commit();   // rolled back when it throws
    } catch (const std::exception&) {
        ++apply_errors_;
        take_back_batch("a failed commit");
        throw;
    }
    forget_batch();
    return true;
}

void subscriber_identity::take_back_batch(const std::string& why) {
    undo(batch_undo_, why);
    forget_batch();
}

void subscriber_identity::forget_batch() {
    batch_undo_.entries.clear();
    batch_updates_.clear();
}

void subscriber_identity::poll() {
    if (listener_) listener_->poll_once();
    if (std::chrono::steady_clock::now() >= next_purge_ && !history_->in_transaction()) {
        next_purge_ = std::chrono::steady_clock::now() + std::chrono::hours(1);
        try {
            history_->purge_older_than(retention_);
        } catch (const std::exception& e) {
            if (log_) log_(std::string("history purge: ") + e.what());
        }
    }
}

std::vector<binding_record> subscriber_identity::open_sessions_holding(const ip_prefix& address) const {
    const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count();
    std::vector<binding_record> out;
    for (auto& r : history_->who_held(address, now))
        if (!r.stop && !r.account.empty()) out.push_back(std::move(r));
    return out;
}

std::vector<binding_record> subscriber_identity::open_sessions_within(const ip_prefix& prefix, size_t limit) const {
    std::vector<binding_record> out;
    for (auto& r : history_->open_within(prefix, limit))
        if (!r.account.empty()) out.push_back(std::move(r));
    return out;
}

const radius::listener_counters* subscriber_identity::radius_counters() const {
    return listener_ ? &listener_->counters() : nullptr;
}

}  // namespace sekisho
