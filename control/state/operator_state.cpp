#include "control/state/operator_state.h"

#include <sqlite3.h>

#include "control/state/sqlite_store.h"

namespace sekisho {

namespace {

constexpr int64_t schema_version = 1;

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
)";

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
        sqlite3_close_v2(db);
        db = nullptr;
    }
    // Runs a one-statement change (autocommit: its own transaction); returns
    // the rows it changed.
    int64_t change(statement& st) {
        st.run();
        return sqlite3_changes64(db);
    }

    const std::string& path;
    sqlite3* db = nullptr;
    std::unique_ptr<statement> insert_suspension, delete_suspension, find_suspension, list_suspensions;
    std::unique_ptr<statement> insert_binding, delete_binding, list_bindings;
};

operator_state::operator_state(const std::string& path) : path_(path), impl_(std::make_unique<impl>(path_)) {}

operator_state::~operator_state() = default;

bool operator_state::suspend(const suspension_record& r) {
    auto& st = *impl_->insert_suspension;
    st.bind(1, r.account).bind(2, r.since).bind(3, r.caller).bind(4, r.reason);
    return impl_->change(st) > 0;
}

bool operator_state::resume(const std::string& account) {
    auto& st = *impl_->delete_suspension;
    st.bind(1, account);
    return impl_->change(st) > 0;
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

void operator_state::add_binding(const api_binding_record& r) {
    auto& st = *impl_->insert_binding;
    st.bind(1, r.prefix.to_string()).bind(2, r.account).bind(3, r.since).bind(4, r.caller).bind(5, r.overrode);
    impl_->change(st);
}

bool operator_state::remove_binding(const ip_prefix& prefix) {
    auto& st = *impl_->delete_binding;
    st.bind(1, prefix.to_string());
    return impl_->change(st) > 0;
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
