#include "control/state/operator_state.h"

#include <sqlite3.h>
#include <sys/random.h>

#include <cstdio>

#include "control/state/sqlite_store.h"

namespace sekisho {

namespace {

constexpr int64_t schema_version = 3;

constexpr const char* schema_sql = R"(
CREATE TABLE IF NOT EXISTS suspensions (
  account TEXT    PRIMARY KEY,
  since   INTEGER NOT NULL,
  caller  TEXT    NOT NULL,
  reason  TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS api_bindings (
  prefix   TEXT    PRIMARY KEY,
  account  TEXT    NOT NULL,
  since    INTEGER NOT NULL,
  caller   TEXT    NOT NULL,
  overrode TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS fleet_outbox (
  seq       INTEGER PRIMARY KEY,
  change_id TEXT    NOT NULL UNIQUE,
  kind      TEXT    NOT NULL,
  account   TEXT    NOT NULL,
  caller    TEXT    NOT NULL,
  reason    TEXT    NOT NULL,
  at        INTEGER NOT NULL,
  prefix    TEXT    NOT NULL DEFAULT '',
  detail    TEXT    NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS fleet_cursor (
  one       INTEGER PRIMARY KEY CHECK (one = 1),
  last_id   INTEGER NOT NULL,
  change_id TEXT    NOT NULL,
  at        INTEGER NOT NULL
);
)";

// 128 random bits as 32 hex digits: a change's key in the fleet's log.
std::string new_change_id() {
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        const ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n > 0) got += static_cast<size_t>(n);
    }
    char out[33];
    for (size_t i = 0; i < sizeof b; ++i) std::snprintf(out + 2 * i, 3, "%02x", b[i]);
    return std::string(out, 32);
}

// A write that failed because another connection holds the lock is worth a
// retry (503); anything else (a full disk, an I/O error) is not (500).
class store_error : public operator_state_error {
public:
    explicit store_error(const std::string& what)
        : operator_state_error(what, what.find("database is locked") != std::string::npos) {}
};

using statement = sqlite_statement<store_error>;

}  // namespace

struct operator_state::impl {
    impl(const std::string& p) : path(p) {
        // A lock held by another process is waited for briefly only: the
        // control thread serves RADIUS and the API meanwhile.
        db = open_sqlite_store<store_error>(path, false, schema_version, "FULL", 100);
        try {
            create_sqlite_schema<store_error>(db, path, schema_sql, schema_version);
            add_outbox_columns();
            insert_suspension = std::make_unique<statement>(
                db, path, "record a suspension (INSERT INTO suspensions)",
                "INSERT INTO suspensions (account, since, caller, reason) VALUES (?1, ?2, ?3, ?4) "
                "ON CONFLICT (account) DO NOTHING");
            delete_suspension = std::make_unique<statement>(db, path, "remove a suspension (DELETE FROM suspensions)",
                                                            "DELETE FROM suspensions WHERE account = ?1");
            find_suspension = std::make_unique<statement>(db, path, "look up a suspension (SELECT FROM suspensions)",
                                                          "SELECT 1 FROM suspensions WHERE account = ?1");
            list_suspensions = std::make_unique<statement>(
                db, path, "list suspensions (SELECT FROM suspensions)",
                "SELECT account, since, caller, reason FROM suspensions ORDER BY account");
            insert_binding = std::make_unique<statement>(
                db, path, "record an API binding (INSERT INTO api_bindings)",
                "INSERT OR REPLACE INTO api_bindings (prefix, account, since, caller, overrode) "
                "VALUES (?1, ?2, ?3, ?4, ?5)");
            delete_binding = std::make_unique<statement>(db, path, "remove an API binding (DELETE FROM api_bindings)",
                                                         "DELETE FROM api_bindings WHERE prefix = ?1");
            list_bindings = std::make_unique<statement>(
                db, path, "list API bindings (SELECT FROM api_bindings)",
                "SELECT prefix, account, since, caller, overrode FROM api_bindings ORDER BY since, rowid");
            insert_outbox = std::make_unique<statement>(
                db, path, "queue a change for the fleet (INSERT INTO fleet_outbox)",
                "INSERT INTO fleet_outbox (change_id, kind, account, caller, reason, at, prefix, detail) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (change_id) DO NOTHING");
            delete_outbox = std::make_unique<statement>(db, path, "remove a published change (DELETE FROM fleet_outbox)",
                                                        "DELETE FROM fleet_outbox WHERE change_id = ?1");
            list_outbox = std::make_unique<statement>(
                db, path, "list the changes for the fleet (SELECT FROM fleet_outbox)",
                "SELECT change_id, kind, account, caller, reason, at, prefix, detail FROM fleet_outbox ORDER BY seq");
            pending_outbox = std::make_unique<statement>(
                db, path, "look up a local change waiting for the fleet (SELECT FROM fleet_outbox)",
                "SELECT 1 FROM fleet_outbox WHERE account = ?1 AND kind IN ('suspend', 'resume')");
            pending_binding = std::make_unique<statement>(
                db, path, "look up a local binding change waiting for the fleet (SELECT FROM fleet_outbox)",
                "SELECT 1 FROM fleet_outbox WHERE prefix = ?1 AND kind IN ('bind', 'unbind')");
            find_binding = std::make_unique<statement>(db, path, "look up an API binding (SELECT FROM api_bindings)",
                                                       "SELECT account FROM api_bindings WHERE prefix = ?1");
            read_cursor = std::make_unique<statement>(db, path, "read the fleet cursor (SELECT FROM fleet_cursor)",
                                                      "SELECT last_id, change_id, at FROM fleet_cursor WHERE one = 1");
            write_cursor = std::make_unique<statement>(
                db, path, "record the fleet cursor (INSERT INTO fleet_cursor)",
                "INSERT OR REPLACE INTO fleet_cursor (one, last_id, change_id, at) VALUES (1, ?1, ?2, ?3)");
        } catch (...) {
            close();
            throw;
        }
    }
    ~impl() { close(); }
    void close() {
        insert_suspension.reset();
        delete_suspension.reset();
        find_suspension.reset();
        list_suspensions.reset();
        insert_binding.reset();
        delete_binding.reset();
        list_bindings.reset();
        insert_outbox.reset();
        delete_outbox.reset();
        list_outbox.reset();
        pending_outbox.reset();
        pending_binding.reset();
        find_binding.reset();
        read_cursor.reset();
        write_cursor.reset();
        sqlite3_close_v2(db);
        db = nullptr;
    }
    // Runs a one-statement change (autocommit: its own transaction); returns
    // the rows it changed.
    int64_t change(statement& st) {
        st.run();
        return sqlite3_changes64(db);
    }

    // Runs `body` in one write transaction: all of it is stored or none.
    template <typename Body>
    auto transaction(Body&& body) {
        sqlite_exec<store_error>(db, path, "begin a change (BEGIN IMMEDIATE)", "BEGIN IMMEDIATE");
        try {
            auto result = body();
            sqlite_exec<store_error>(db, path, "commit a change (COMMIT)", "COMMIT");
            return result;
        } catch (...) {
            sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
            throw;
        }
    }
    // A file of schema version 2 has the outbox without the columns of the
    // binding and limit reset changes: added once, in one transaction.
    void add_outbox_columns() {
        bool has_prefix = false;
        {
            statement info(db, path, "read the outbox's columns (PRAGMA table_info)", "PRAGMA table_info(fleet_outbox)");
            while (info.step())
                if (info.column_text(1) == "prefix") has_prefix = true;
        }
        if (has_prefix) return;
        transaction([&] {
            sqlite_exec<store_error>(db, path, "add the outbox's prefix column (ALTER TABLE fleet_outbox)",
                                     "ALTER TABLE fleet_outbox ADD COLUMN prefix TEXT NOT NULL DEFAULT ''");
            sqlite_exec<store_error>(db, path, "add the outbox's detail column (ALTER TABLE fleet_outbox)",
                                     "ALTER TABLE fleet_outbox ADD COLUMN detail TEXT NOT NULL DEFAULT ''");
            return 0;
        });
    }
    void queue(const fleet_change& c) {
        auto& st = *insert_outbox;
        st.bind(1, c.change_id.empty() ? new_change_id() : c.change_id)
            .bind(2, c.kind)
            .bind(3, c.account)
            .bind(4, c.caller)
            .bind(5, c.reason)
            .bind(6, c.at)
            .bind(7, c.prefix)
            .bind(8, c.detail);
        st.run();
        ++outbox_writes;
    }
    void store_cursor(const fleet_cursor& c) {
        auto& st = *write_cursor;
        st.bind(1, c.last_id).bind(2, c.change_id).bind(3, c.at);
        st.run();
    }

    const std::string& path;
    sqlite3* db = nullptr;
    bool outbox_on = false;
    uint64_t outbox_writes = 0;
    std::unique_ptr<statement> insert_outbox, delete_outbox, list_outbox, pending_outbox, pending_binding, find_binding,
        read_cursor, write_cursor;
    std::unique_ptr<statement> insert_suspension, delete_suspension, find_suspension, list_suspensions;
    std::unique_ptr<statement> insert_binding, delete_binding, list_bindings;
};

operator_state::operator_state(const std::string& path) : path_(path), impl_(std::make_unique<impl>(path_)) {}

operator_state::~operator_state() = default;

bool operator_state::suspend(const suspension_record& r) {
    const auto store = [&] {
        auto& st = *impl_->insert_suspension;
        st.bind(1, r.account).bind(2, r.since).bind(3, r.caller).bind(4, r.reason);
        return impl_->change(st) > 0;
    };
    if (!impl_->outbox_on) return store();
    return impl_->transaction([&] {
        const bool changed = store();
        impl_->queue({0, "", "suspend", r.account, "", r.caller, r.reason, r.since, "", ""});
        return changed;
    });
}

bool operator_state::resume(const std::string& account, const std::string& caller, int64_t at) {
    const auto store = [&] {
        auto& st = *impl_->delete_suspension;
        st.bind(1, account);
        return impl_->change(st) > 0;
    };
    if (!impl_->outbox_on) return store();
    return impl_->transaction([&] {
        const bool changed = store();
        impl_->queue({0, "", "resume", account, "", caller, "", at, "", ""});
        return changed;
    });
}

void operator_state::set_fleet_outbox(bool on) { impl_->outbox_on = on; }

bool operator_state::fleet_outbox() const { return impl_->outbox_on; }

std::vector<fleet_change> operator_state::outbox() const {
    auto& st = *impl_->list_outbox;
    std::vector<fleet_change> out;
    while (st.step()) {
        fleet_change c;
        c.change_id = st.column_text(0);
        c.kind = st.column_text(1);
        c.account = st.column_text(2);
        c.caller = st.column_text(3);
        c.reason = st.column_text(4);
        c.at = st.column_int(5);
        c.prefix = st.column_text(6);
        c.detail = st.column_text(7);
        out.push_back(std::move(c));
    }
    st.reset();
    return out;
}

uint64_t operator_state::outbox_writes() const { return impl_->outbox_writes; }

void operator_state::queue_outbox(const fleet_change& c) { impl_->queue(c); }

bool operator_state::remove_from_outbox(const std::string& change_id) {
    auto& st = *impl_->delete_outbox;
    st.bind(1, change_id);
    return impl_->change(st) > 0;
}

fleet_cursor operator_state::cursor() const {
    auto& st = *impl_->read_cursor;
    fleet_cursor c;
    if (st.step()) {
        c.last_id = st.column_int(0);
        c.change_id = st.column_text(1);
        c.at = st.column_int(2);
    }
    st.reset();
    return c;
}

void operator_state::set_cursor(const fleet_cursor& c) { impl_->store_cursor(c); }

fleet_apply operator_state::apply_fleet_change(const fleet_change& c) {
    return impl_->transaction([&] {
        impl_->store_cursor({c.id, c.change_id, c.at});
        const bool binding = c.kind == "bind" || c.kind == "unbind";
        auto& pending = binding ? *impl_->pending_binding : *impl_->pending_outbox;
        pending.bind(1, binding ? c.prefix : c.account);
        const bool local_waits = pending.step();
        pending.reset();
        if (local_waits) return fleet_apply::superseded;
        bool changed = false;
        if (c.kind == "suspend") {
            auto& st = *impl_->insert_suspension;
            st.bind(1, c.account).bind(2, c.at).bind(3, c.caller).bind(4, c.reason);
            changed = impl_->change(st) > 0;
        } else if (c.kind == "resume") {
            auto& st = *impl_->delete_suspension;
            st.bind(1, c.account);
            changed = impl_->change(st) > 0;
        } else if (c.kind == "bind") {
            auto& find = *impl_->find_binding;
            find.bind(1, c.prefix);
            const bool same = find.step() && find.column_text(0) == c.account;
            find.reset();
            if (!same) {
                auto& st = *impl_->insert_binding;
                st.bind(1, c.prefix).bind(2, c.account).bind(3, c.at).bind(4, c.caller).bind(5,
                                                                                           c.detail.empty() ? "[]" : c.detail);
                impl_->change(st);
                changed = true;
            }
        } else if (c.kind == "unbind") {
            auto& st = *impl_->delete_binding;
            st.bind(1, c.prefix);
            changed = impl_->change(st) > 0;
        }
        return changed ? fleet_apply::changed : fleet_apply::unchanged;
    });
}

bool operator_state::suspended(const std::string& account) const {
    auto& st = *impl_->find_suspension;
    st.bind(1, account);
    const bool found = st.step();
    st.reset();
    return found;
}

std::vector<suspension_record> operator_state::suspensions() const {
    auto& st = *impl_->list_suspensions;
    std::vector<suspension_record> out;
    while (st.step()) out.push_back({st.column_text(0), st.column_int(1), st.column_text(2), st.column_text(3)});
    st.reset();
    return out;
}

std::string operator_state::add_binding(const api_binding_record& r, bool publish) {
    const auto store = [&] {
        auto& st = *impl_->insert_binding;
        st.bind(1, r.prefix.to_string()).bind(2, r.account).bind(3, r.since).bind(4, r.caller).bind(5, r.overrode);
        impl_->change(st);
    };
    if (!impl_->outbox_on || !publish) {
        store();
        return "";
    }
    return impl_->transaction([&] {
        store();
        const std::string id = new_change_id();
        impl_->queue({0, id, "bind", r.account, "", r.caller, "", r.since, r.prefix.to_string(), ""});
        return id;
    });
}

bool operator_state::remove_binding(const ip_prefix& prefix, bool publish, const std::string& caller, int64_t at) {
    const auto store = [&] {
        auto& st = *impl_->delete_binding;
        st.bind(1, prefix.to_string());
        return impl_->change(st) > 0;
    };
    if (!impl_->outbox_on || !publish) return store();
    return impl_->transaction([&] {
        const bool removed = store();
        impl_->queue({0, "", "unbind", "", "", caller, "", at, prefix.to_string(), ""});
        return removed;
    });
}

std::vector<api_binding_record> operator_state::bindings() const {
    auto& st = *impl_->list_bindings;
    std::vector<api_binding_record> out;
    while (st.step()) {
        api_binding_record r;
        const std::string text = st.column_text(0);
        std::string why;
        const auto prefix = parse_prefix(text, why);
        if (!prefix) {
            st.reset();
            throw operator_state_error(path_ + ": api_bindings: prefix '" + text + "': " + why);
        }
        r.prefix = *prefix;
        r.account = st.column_text(1);
        r.since = st.column_int(2);
        r.caller = st.column_text(3);
        r.overrode = st.column_text(4);
        out.push_back(std::move(r));
    }
    st.reset();
    return out;
}

}  // namespace sekisho
