#include "control/fleet/operator_sync.h"

#include <sys/eventfd.h>
#include <poll.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <ctime>

#include "control/api/control_api.h"
#include "control/fleet/pg_connection.h"
#include "control/fleet/policy_schema.h"
#include "control/identity/account_registry.h"
#include "control/observe/metrics.h"

namespace sekisho {

namespace {

constexpr size_t max_incoming = 10000;   // fleet changes waiting for poll()
constexpr int read_batch = 1000;
// Fleet changes applied per control-thread turn: each is an fsynced SQLite
// transaction, and the turn also serves RADIUS and the API.
constexpr size_t max_apply_per_poll = 64;
constexpr auto backoff_first = std::chrono::milliseconds(100);
constexpr auto backoff_last = std::chrono::milliseconds(5000);
// Serialises the inserts into operator_changes: ids commit in id order.
constexpr const char* change_lock = "SELECT pg_advisory_xact_lock(x'736b6f70657261'::bigint)";

int64_t unix_now() { return static_cast<int64_t>(std::time(nullptr)); }

std::string account_refusal(const std::string& account) {
    if (account.empty()) return "no account";
    if (account.size() > 253) return "account name longer than 253 bytes";
    for (unsigned char ch : account)
        if (ch < 0x20 || ch == 0x7f) return "account name with a control character";
    return "";
}

// What a fleet change may carry: an account name as RADIUS and the API
// accept it, a prefix (an address for a reset) that parses, a limit name
// without control characters. "" when it may be applied.
std::string refusal_of(const fleet_change& c, bool bindings_here) {
    const bool known = c.kind == "suspend" || c.kind == "resume" || c.kind == "bind" || c.kind == "unbind" ||
                       c.kind == "limits_reset";
    if (!known) return "kind '" + c.kind + "' is not applied by this build";
    if (c.kind == "suspend" || c.kind == "resume") return account_refusal(c.account);
    if (!bindings_here) return "kind '" + c.kind + "' needs the data plane's bindings and limits (not with this backend)";
    std::string why;
    if (c.kind == "bind" || c.kind == "unbind") {
        if (!parse_prefix(c.prefix, why)) return "prefix '" + c.prefix + "': " + why;
        return c.kind == "bind" ? account_refusal(c.account) : "";
    }
    if (c.prefix.empty() == c.account.empty()) return "a limit reset names an address or an account, not " +
                                                      std::string(c.prefix.empty() ? "neither" : "both");
    if (!c.prefix.empty()) {
        const auto a = parse_prefix(c.prefix, why);
        if (!a) return "address '" + c.prefix + "': " + why;
        if (a->length != (a->family == 4 ? 32 : 128)) return "address '" + c.prefix + "' is a prefix, not one address";
    } else if (const std::string w = account_refusal(c.account); !w.empty()) {
        return w;
    }
    for (unsigned char ch : c.detail)
        if (ch < 0x20 || ch == 0x7f) return "limit name with a control character";
    return "";
}

// The audit record of a fleet change applied here: as the API's for the
// same endpoint, with the origin gateway and the log's id.
nlohmann::json audit_record(const fleet_change& c, const char* endpoint, int status) {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    nlohmann::json rec = {
        {"time_ns", static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec)},
        {"type", "api_change"},
        {"endpoint", endpoint},
        {"caller", c.caller},
        {"status", status},
        {"origin_gateway", c.origin},
        {"fleet_change", c.id}};
    if (!c.account.empty()) rec["account"] = c.account;
    if (!c.prefix.empty()) rec[c.kind == "limits_reset" ? "address" : "prefix"] = c.prefix;
    if (c.kind == "limits_reset") rec["limit"] = c.detail.empty() ? nlohmann::json("*") : nlohmann::json(c.detail);
    if (!c.reason.empty()) rec["reason"] = c.reason;
    return rec;
}

}  // namespace

void ensure_operator_tables(pg_connection& pg) {
    ensure_objects(pg, fleet_sql::schema_lock, fleet_sql::operator_tables, "operator");
}

operator_sync::operator_sync(operator_sync_options options, operator_state& decisions, account_registry* accounts)
    : options_(std::move(options)), decisions_(decisions), accounts_(accounts) {
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) throw std::runtime_error("fleet: operator sync: eventfd failed");
    decisions_.set_fleet_outbox(true);
    read_upto_ = decisions_.cursor();
    applied_upto_ = read_upto_.last_id;
    poll();   // the outbox left by the last run goes to the thread first
    thread_ = std::thread([this] { run(); });
}

operator_sync::~operator_sync() {
    stop_ = true;
    wake();
    if (thread_.joinable()) thread_.join();
    ::close(wake_fd_);
}

void operator_sync::wake() {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

// ---------------------------------------------------------------- the thread

void operator_sync::run() {
    auto backoff = backoff_first;
    auto next_read = std::chrono::steady_clock::now();
    while (!stop_) {
        try {
            if (!pg_) {
                connect();
                backoff = backoff_first;
                next_read = std::chrono::steady_clock::now();
            }
            publish_pending();
            // Notifications may have arrived during any statement: libpq keeps them.
            bool notified = false;
            while (PGnotify* n = PQnotifies(pg_->raw())) {
                notified = true;
                PQfreemem(n);
            }
            if (notified || std::chrono::steady_clock::now() >= next_read) {
                // A store restored under a live link: the change read last is gone (one indexed read).
                check_regression();
                read_changes();
                next_read = std::chrono::steady_clock::now() + options_.poll_interval;
            }
            wait(next_read);
        } catch (const std::exception& e) {
            pg_.reset();
            const std::string what = e.what();
            {
                std::lock_guard lock(mu_);
                if (link_up_ || link_downs_ == 0) ++link_downs_;   // one outage, however many retries
                link_up_ = false;
                last_error_ = what;
            }
            if (what != last_error_logged_ && options_.log)
                options_.log("fleet: operator state: " + what + " (keeping the local state; retrying)");
            last_error_logged_ = what;
            wait(std::chrono::steady_clock::now() + backoff);
            backoff = std::min(backoff * 2, std::chrono::duration_cast<std::chrono::milliseconds>(backoff_last));
        }
    }
}

void operator_sync::connect() {
    auto pg = std::make_unique<pg_connection>(options_.conninfo_file);
    // "relation ... already exists, skipping" at every connect is not news.
    pg->exec("SET client_min_messages = warning", "quiet the schema notices");
    ensure_fleet_schema(*pg);
    ensure_operator_tables(*pg);
    pg->exec("LISTEN sekisho_operator", "listen for operator changes");
    pg_ = std::move(pg);
    check_regression();
    {
        std::lock_guard lock(mu_);
        link_up_ = true;
        last_error_.clear();
    }
    if (options_.log && !last_error_logged_.empty())
        options_.log("fleet: operator state: connected to PostgreSQL again; catching up after change #" +
                     std::to_string(read_upto_.last_id));
    last_error_logged_.clear();
}

// The store must still hold the change read last, under the same key.
void operator_sync::check_regression() {
    if (read_upto_.last_id <= 0) return;
    pg_result r = pg_->exec_params("SELECT change_id FROM operator_changes WHERE id = $1",
                                   {std::to_string(read_upto_.last_id)}, "look up the change applied last");
    if (PQntuples(r.get()) == 1 && read_upto_.change_id == PQgetvalue(r.get(), 0, 0)) return;
    const std::string found = PQntuples(r.get()) == 1 ? "another change under that id" : "no such change";
    regression g;
    pg_result last = pg_->exec_params(
        "SELECT id, change_id, extract(epoch FROM at)::bigint FROM operator_changes "
        "WHERE at <= to_timestamp($1) ORDER BY id DESC LIMIT 1",
        {std::to_string(read_upto_.at)}, "find where to continue in the older store");
    if (PQntuples(last.get()) == 1) {
        g.cursor.last_id = std::stoll(PQgetvalue(last.get(), 0, 0));
        g.cursor.change_id = PQgetvalue(last.get(), 0, 1);
        g.cursor.at = std::stoll(PQgetvalue(last.get(), 0, 2));
    }
    pg_result s = pg_->exec("SELECT account FROM fleet_suspensions", "read the store's suspensions");
    for (int i = 0; i < PQntuples(s.get()); ++i) g.store_suspended.emplace_back(PQgetvalue(s.get(), i, 0));
    g.what = "the fleet's operator store does not hold change #" + std::to_string(read_upto_.last_id) + " (" +
             read_upto_.change_id + ") that this gateway applied (" + found +
             "): it is OLDER than this gateway (restored from a backup?); keeping the local state, continuing after "
             "change #" + std::to_string(g.cursor.last_id) + " and publishing the local suspensions it lacks";
    read_upto_ = g.cursor;
    std::lock_guard lock(mu_);
    store_head_ = g.cursor.last_id;
    ++regressions_;
    incoming_.push_back(std::move(g));
}

void operator_sync::publish_pending() {
    std::vector<fleet_change> unpublished;
    {
        std::lock_guard lock(mu_);
        for (const fleet_change& c : outbox_copy_)
            if (!published_ids_.count(c.change_id)) unpublished.push_back(c);
    }
    for (const fleet_change& c : unpublished) {
        if (stop_) return;
        pg_->in_transaction("publishing a change", [&] {
            pg_->exec(change_lock, "lock the change log");
            nlohmann::json payload = nlohmann::json::object();
            if (c.kind == "suspend" || c.kind == "resume") payload["reason"] = c.reason;
            if (c.kind == "limits_reset") payload["limit"] = c.detail;
            pg_result ins = pg_->exec_params(
                "INSERT INTO operator_changes (change_id, kind, account, prefix, payload, gateway, caller, at) "
                "VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, to_timestamp($8)) "
                "ON CONFLICT (change_id) DO NOTHING RETURNING id",
                {c.change_id, c.kind, c.account, c.prefix, payload.dump(), options_.gateway, c.caller,
                 std::to_string(c.at)},
                "insert into operator_changes");
            if (PQntuples(ins.get()) == 1) {   // not a resend
                const std::string id = PQgetvalue(ins.get(), 0, 0);
                // The current state of suspensions; bindings and resets are in the log alone.
                if (c.kind == "suspend")
                    pg_->exec_params("INSERT INTO fleet_suspensions (account, since, caller, reason, origin_gateway) "
                                     "VALUES ($1, to_timestamp($2), $3, $4, $5) ON CONFLICT (account) DO NOTHING",
                                     {c.account, std::to_string(c.at), c.caller, c.reason, options_.gateway},
                                     "record the suspension in fleet_suspensions");
                else if (c.kind == "resume")
                    pg_->exec_params("DELETE FROM fleet_suspensions WHERE account = $1", {c.account},
                                     "remove the suspension from fleet_suspensions");
                pg_->exec_params("SELECT pg_notify('sekisho_operator', $1)", {id}, "notify the fleet");
            }
        });
        std::lock_guard lock(mu_);
        published_ids_.insert(c.change_id);
        published_.push_back(c.change_id);
    }
}

void operator_sync::read_changes() {
    for (;;) {
        {
            std::lock_guard lock(mu_);
            if (incoming_.size() >= max_incoming) return;   // poll() applies first
        }
        pg_result r = pg_->exec_params(
            "SELECT id, change_id, kind, account, coalesce(payload->>'reason', ''), gateway, caller, "
            "extract(epoch FROM at)::bigint, prefix, coalesce(payload->>'limit', '') "
            "FROM operator_changes WHERE id > $1 ORDER BY id LIMIT " +
                std::to_string(read_batch),
            {std::to_string(read_upto_.last_id)}, "read operator_changes");
        const int n = PQntuples(r.get());
        std::vector<fleet_change> batch;
        for (int i = 0; i < n; ++i) {
            fleet_change c;
            c.id = std::stoll(PQgetvalue(r.get(), i, 0));
            c.change_id = PQgetvalue(r.get(), i, 1);
            c.kind = PQgetvalue(r.get(), i, 2);
            c.account = PQgetvalue(r.get(), i, 3);
            c.reason = PQgetvalue(r.get(), i, 4);
            c.origin = PQgetvalue(r.get(), i, 5);
            c.caller = PQgetvalue(r.get(), i, 6);
            c.at = std::stoll(PQgetvalue(r.get(), i, 7));
            c.prefix = PQgetvalue(r.get(), i, 8);
            c.detail = PQgetvalue(r.get(), i, 9);
            batch.push_back(std::move(c));
        }
        if (n > 0) read_upto_ = {batch.back().id, batch.back().change_id, batch.back().at};
        std::lock_guard lock(mu_);
        for (auto& c : batch) incoming_.push_back(std::move(c));
        if (n < read_batch) {
            last_sync_ = unix_now();
            store_head_ = read_upto_.last_id;
            return;
        }
    }
}

// Until `until`, a notification on the store's socket or a wake-up.
void operator_sync::wait(std::chrono::steady_clock::time_point until) {
    const auto now = std::chrono::steady_clock::now();
    if (stop_ || until <= now) return;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1;
    // poll(2), not select(2): the daemon's descriptors may pass FD_SETSIZE.
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {pg_ ? PQsocket(pg_->raw()) : -1, POLLIN, 0}};
    const int rc = ::poll(fds, fds[1].fd >= 0 ? 2 : 1, static_cast<int>(left));
    if (rc <= 0) return;
    if (fds[0].revents & POLLIN) {
        uint64_t v = 0;
        [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &v, sizeof v);
    }
    if (fds[1].fd >= 0 && fds[1].revents != 0 && PQconsumeInput(pg_->raw()) == 0)
        throw pg_error(std::string("postgres: the notification link broke: ") + PQerrorMessage(pg_->raw()), true);
}

// ---------------------------------------------------------------- control thread

void operator_sync::poll() {
    std::vector<std::string> published;
    std::deque<message> incoming;
    {
        std::lock_guard lock(mu_);
        published.swap(published_);
        incoming.swap(incoming_);
    }
    bool reload = decisions_.outbox_writes() != outbox_writes_seen_;
    std::vector<std::string> removed;
    for (size_t i = 0; i < published.size(); ++i) {
        try {
            decisions_.remove_from_outbox(published[i]);
            removed.push_back(published[i]);
            ++published_total_;
        } catch (const operator_state_error& e) {
            // Left in the outbox: published again later, which inserts nothing.
            last_apply_error_ = e.what();
            std::lock_guard lock(mu_);
            published_.insert(published_.begin(), published.begin() + static_cast<long>(i), published.end());
            break;
        }
    }
    if (!removed.empty()) reload = true;
    if (reload) {
        try {
            const uint64_t writes = decisions_.outbox_writes();
            std::vector<fleet_change> rows = decisions_.outbox();
            outbox_writes_seen_ = writes;
            backlog_ = rows.size();
            {
                std::lock_guard lock(mu_);
                outbox_copy_ = std::move(rows);
                for (const std::string& id : removed) published_ids_.erase(id);
            }
            wake();
        } catch (const operator_state_error& e) {
            last_apply_error_ = e.what();
        }
    }

    for (size_t n = 0; !incoming.empty(); ++n) {
        if (n == max_apply_per_poll) {   // the rest next turn, in order
            std::lock_guard lock(mu_);
            for (auto it = incoming.rbegin(); it != incoming.rend(); ++it) incoming_.push_front(std::move(*it));
            break;
        }
        try {
            if (const auto* c = std::get_if<fleet_change>(&incoming.front()))
                apply(*c);
            else
                reconcile(std::get<regression>(incoming.front()));
            incoming.pop_front();
        } catch (const operator_state_error& e) {
            // operator.db refused (locked by someone, a full disk): the rest waits, in order.
            ++apply_failures_;
            if (last_apply_error_ != e.what() && options_.log)
                options_.log(std::string("fleet: operator state: cannot store a fleet change (retrying): ") + e.what());
            last_apply_error_ = e.what();
            std::lock_guard lock(mu_);
            for (auto it = incoming.rbegin(); it != incoming.rend(); ++it) incoming_.push_front(std::move(*it));
            break;
        }
    }
}

void operator_sync::apply(const fleet_change& c) {
    const std::string why = refusal_of(c, options_.control != nullptr);
    if (!why.empty()) {
        decisions_.set_cursor({c.id, c.change_id, c.at});
        applied_upto_ = c.id;
        ++rejected_;
        if (options_.log)
            options_.log("fleet: operator change #" + std::to_string(c.id) + " from gateway " + c.origin + ": " + why +
                         ": skipped");
        return;
    }
    if (c.kind == "bind" || c.kind == "unbind") return apply_binding(c);
    if (c.kind == "limits_reset") return apply_reset(c);
    const fleet_apply result = decisions_.apply_fleet_change(c);
    applied_upto_ = c.id;
    if (result == fleet_apply::superseded) {
        ++superseded_;
        return;
    }
    ++applied_;
    if (result != fleet_apply::changed) return;
    const bool suspend = c.kind == "suspend";
    if (accounts_) {
        const uint32_t id = accounts_->id_of(c.account);
        if (id == 0) {
            ++apply_failures_;
            if (options_.log)
                options_.log("fleet: operator change #" + std::to_string(c.id) + ": cannot " + c.kind + " " + c.account +
                             ": the account registry is full (stored; in force after a restart with room)");
        } else {
            accounts_->set_suspended(id, suspend);
        }
    }
    if (options_.audit) options_.audit(audit_record(c, suspend ? "account_suspend" : "account_resume", 200));
}

void operator_sync::apply_binding(const fleet_change& c) {
    fleet_apply result = fleet_apply::unchanged;
    const api_response r = options_.control->apply_fleet_binding(c, result);   // stores the cursor
    applied_upto_ = c.id;
    if (result == fleet_apply::superseded) {
        ++superseded_;
        return;
    }
    if (r.status != 200) {
        ++apply_failures_;
        const nlohmann::json body = nlohmann::json::parse(r.body, nullptr, false);
        const std::string error = body.is_object() ? body.value("error", r.body) : r.body;
        last_apply_error_ = error;
        if (options_.log)
            options_.log("fleet: operator change #" + std::to_string(c.id) + " from gateway " + c.origin + ": " + c.kind +
                         " " + c.prefix + ": " + error);
    } else {
        ++applied_;
    }
    if (result != fleet_apply::changed || !options_.audit) return;
    nlohmann::json rec = audit_record(c, c.kind == "bind" ? "bindings_add" : "bindings_del", r.status);
    const nlohmann::json body = nlohmann::json::parse(r.body, nullptr, false);
    for (const char* key : {"overrode", "restored", "error"})
        if (body.is_object() && body.contains(key) && !body[key].empty()) rec[key] = body[key];
    options_.audit(std::move(rec));
}

void operator_sync::apply_reset(const fleet_change& c) {
    decisions_.set_cursor({c.id, c.change_id, c.at});   // at most once: a crash after this loses the reset only
    applied_upto_ = c.id;
    // This gateway's own reset coming back: done here when it was made.
    if (c.origin == options_.gateway) return;
    const int64_t age = unix_now() - c.at;
    if (age > options_.control->limit_horizon_s()) {
        ++resets_expired_;
        return;
    }
    ++applied_;
    // The answer may come from a later turn (by address: the workers serve it); it
    // holds no pointer to this object.
    options_.control->apply_fleet_reset(
        c, api_reply([c, audit = options_.audit, log = options_.log](api_response r) {
            if (r.status != 200 && r.status != 404 && log)
                log("fleet: operator change #" + std::to_string(c.id) + " from gateway " + c.origin +
                    ": limits reset: " + r.body);
            // 404: no such account or limit here: nothing to reset, nothing to audit.
            if (r.status == 404 || !audit) return;
            nlohmann::json rec = audit_record(c, "limits_reset", r.status);
            const nlohmann::json body = nlohmann::json::parse(r.body, nullptr, false);
            if (body.is_object() && body.contains("reset")) rec["reset"] = body["reset"];
            audit(std::move(rec));
        }));
}

void operator_sync::reconcile(const regression& r) {
    if (options_.log) options_.log("fleet: operator state: WARNING: " + r.what);
    decisions_.set_cursor(r.cursor);
    applied_upto_ = r.cursor.last_id;
    const std::unordered_set<std::string> in_store(r.store_suspended.begin(), r.store_suspended.end());
    size_t queued = 0;
    for (const suspension_record& s : decisions_.suspensions()) {
        if (in_store.count(s.account)) continue;
        decisions_.queue_outbox({0, "", "suspend", s.account, "", s.caller, s.reason, s.since, "", ""});
        ++queued;
    }
    if (options_.log)
        options_.log("fleet: operator state: " + std::to_string(queued) +
                     " local suspensions queued for the older store");
}

uint64_t operator_sync::regressions() const {
    std::lock_guard lock(mu_);
    return regressions_;
}

int64_t operator_sync::lag() const {
    std::lock_guard lock(mu_);
    return std::max<int64_t>(0, store_head_ - applied_upto_);
}

bool operator_sync::link_up() const {
    std::lock_guard lock(mu_);
    return link_up_;
}

void operator_sync::add_to_snapshot(control_snapshot& s) const {
    bool up;
    int64_t last_sync;
    uint64_t regressions, downs;
    {
        std::lock_guard lock(mu_);
        up = link_up_;
        downs = link_downs_;
        last_sync = last_sync_;
        regressions = regressions_;
    }
    add_fleet_link_samples(s.fleet, "postgres", "operator", up, downs, static_cast<double>(last_sync));
    s.fleet.push_back({"sekisho_fleet_operator_lag_changes",
                       "Changes in the fleet's operator log (as of the last read) not applied here yet.", false, {},
                       static_cast<double>(lag())});
    s.fleet.push_back({"sekisho_fleet_operator_changes_applied_total",
                       "Operator changes read from the fleet's log and applied here (this gateway's own included).",
                       true, {}, static_cast<double>(applied_)});
    s.fleet.push_back({"sekisho_fleet_operator_changes_published_total",
                       "Operator changes made here and committed to the fleet's log.", true, {},
                       static_cast<double>(published_total_)});
    s.fleet.push_back({"sekisho_fleet_operator_outbox_backlog",
                       "Operator changes made here that wait to be published (operator.db fleet_outbox).", false, {},
                       static_cast<double>(backlog_)});
    s.fleet.push_back({"sekisho_fleet_operator_changes_rejected_total",
                       "Fleet operator changes skipped: a kind this build does not apply or a bad account name.", true,
                       {}, static_cast<double>(rejected_)});
    s.fleet.push_back({"sekisho_fleet_operator_resets_expired_total",
                       "Fleet limit resets not applied here: older than the longest limit window and cool-down.", true,
                       {}, static_cast<double>(resets_expired_)});
    s.fleet.push_back({"sekisho_fleet_operator_store_regressions_total",
                       "Times the fleet's store came back older than this gateway (never rolled back).", true, {},
                       static_cast<double>(regressions)});
}

nlohmann::json operator_sync::status() const {
    std::lock_guard lock(mu_);
    return {{"link_up", link_up_},
            {"last_sync", last_sync_},
            {"applied_total", applied_},
            {"published_total", published_total_},
            {"outbox_backlog", backlog_},
            {"lag_changes", std::max<int64_t>(0, store_head_ - applied_upto_)},
            {"superseded_total", superseded_},
            {"rejected_total", rejected_},
            {"resets_expired_total", resets_expired_},
            {"store_regressions_total", regressions_},
            {"apply_failures_total", apply_failures_},
            {"last_error", last_error_}};
}

}  // namespace sekisho
