// One libpq connection to the fleet's PostgreSQL, for the fleet threads
// (never a worker, never the control thread: a store that is slow or down
// must not stall forwarding or the API).
//
// Connecting reads the connection string from the credential file each time
// (a rotated password takes effect at the next reconnect) and never logs it.
// Every statement failure throws pg_error naming the step and PostgreSQL's
// message; `connection_lost()` tells a broken link (reconnect with backoff)
// from a refused statement (a bug or a constraint: do not retry blindly).
//
// The fleet schema (docs/fleet.md) is created by ensure_fleet_schema(): every
// statement idempotent (CREATE ... IF NOT EXISTS), so each gateway may run it
// at start; a schema newer than this build is refused.
//
// Threading: one thread at a time per connection.
#pragma once

#include "control/fleet/fleet_schema.h"

#include <libpq-fe.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace sekisho {

class pg_error : public std::runtime_error {
public:
    pg_error(const std::string& what, bool connection_lost)
        : std::runtime_error(what), connection_lost_(connection_lost) {}
    bool connection_lost() const { return connection_lost_; }

private:
    bool connection_lost_;
};

// A result that clears itself.
struct pg_result_deleter {
    void operator()(PGresult* r) const { PQclear(r); }
};
using pg_result = std::unique_ptr<PGresult, pg_result_deleter>;

class pg_connection {
public:
    // Connects with the connection string in `conninfo_file` (a credential
    // file: fleet_config.h). connect_timeout defaults to 2 s unless the
    // string sets it. Throws pg_error (connection_lost) or fleet_config_error.
    explicit pg_connection(const std::string& conninfo_file);
    ~pg_connection();
    pg_connection(const pg_connection&) = delete;
    pg_connection& operator=(const pg_connection&) = delete;

    PGconn* raw() { return conn_; }
    bool ok() const { return conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK; }

    // Runs `sql` (no parameters); `step` names it in errors. Returns the
    // result of a command or a query that succeeded.
    pg_result exec(const std::string& sql, const std::string& step);
    // Runs `sql` with text parameters $1..$n.
    pg_result exec_params(const std::string& sql, const std::vector<std::string>& params, const std::string& step);

    // Throws pg_error for `r` unless its status is one of the successes.
    void check(const PGresult* r, const std::string& step);

    // Runs `body` in one transaction (BEGIN, body, COMMIT; errors name "begin
    // WHAT", "commit WHAT") and returns what it returns. Any exception rolls
    // the transaction back (when the link is still up) and is thrown again.
    template <class F>
    std::invoke_result_t<F> in_transaction(const std::string& what, F&& body) {
        exec("BEGIN", "begin " + what);
        try {
            if constexpr (std::is_void_v<std::invoke_result_t<F>>) {
                body();
                exec("COMMIT", "commit " + what);
            } else {
                auto r = body();
                exec("COMMIT", "commit " + what);
                return r;
            }
        } catch (...) {
            if (ok()) PQclear(PQexec(conn_, "ROLLBACK"));
            throw;
        }
    }

    // Inside a transaction: runs `body` under a savepoint. Returns nothing when
    // it succeeded; PostgreSQL's refusal of it (after rolling back to the
    // savepoint, so the transaction goes on) when it was refused. A lost
    // connection, or any other exception, is thrown.
    template <class F>
    std::optional<pg_error> refusal_in_savepoint(F&& body) {
        exec("SAVEPOINT row", "savepoint");
        try {
            body();
            exec("RELEASE SAVEPOINT row", "release the savepoint");
            return std::nullopt;
        } catch (const pg_error& e) {
            if (e.connection_lost()) throw;
            exec("ROLLBACK TO SAVEPOINT row", "roll back a refused row");
            return e;
        }
    }

private:
    PGconn* conn_ = nullptr;
};

// The schema version this build writes; stored in fleet_meta (fleet_schema.h).
constexpr int fleet_schema_version = fleet_sql::schema_version;

// Creates a concern's objects (fleet_schema.h) unless every one is there
// already, in one transaction under the advisory lock `lock`. A role without
// CREATE on the schema (a DBA created the objects: `sekishoctl fleet schema`)
// thus runs no DDL. Throws pg_error; `what` names the concern in it.
void ensure_objects(pg_connection& pg, const char* lock, const fleet_sql::concern_objects& objects,
                    const std::string& what);

// Creates what is missing of the fleet schema, in one transaction. Throws
// pg_error, also for a database whose schema version is newer than this build's.
void ensure_fleet_schema(pg_connection& pg);

}  // namespace sekisho
