// What the control plane's SQLite files share (the binding history,
// control/identity/binding_history.h, and the operator state,
// operator_state.h): the file mode they are created with, and one prepared
// statement whose every failure names the file and the SQL step.
//
// Each store throws its own error type (Error: constructible from the
// message, "<database file>: <SQL step>: <SQLite's message>"), so its
// callers catch what its header documents.
//
// Threading: a statement belongs to the thread that owns its connection
// (the control thread for both stores). Header-only: templates on the
// store's error type.
#pragma once

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "control/policy/policy.h"

namespace sekisho {

// Who held which address, who is suspended: personal and contractual data,
// readable by the owner and its group (the operators), never by everyone.
constexpr mode_t store_file_mode = 0640;

inline std::string file_mode_text(mode_t m) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
    return buf;
}

// Creates `file` with store_file_mode if it does not exist (SQLite gives its
// -wal and -shm files the database file's mode) and `create` is true, and
// narrows the mode of an existing one. Throws Error naming the file.
template <typename Error>
void restrict_store_file_mode(const std::string& file, bool create) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) {
        if (errno != ENOENT) throw Error(file + ": stat: " + std::strerror(errno));
        if (!create) return;
        const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, store_file_mode);
        if (fd < 0) {
            if (errno == EEXIST) return restrict_store_file_mode<Error>(file, false);   // created meanwhile: check it
            // Left to sqlite3_open_v2, which names the failure ("unable to open database file").
            return;
        }
        ::close(fd);
        return;
    }
    if (!S_ISREG(st.st_mode)) return;   // /dev/null and the like: SQLite decides
    const mode_t mode = st.st_mode & 07777;
    if ((mode & ~store_file_mode) == 0) return;
    if (::chmod(file.c_str(), mode & store_file_mode) != 0)
        throw Error(file + ": restrict the file mode from " + file_mode_text(mode) + " to " +
                    file_mode_text(mode & store_file_mode) + " (not world-readable): " + std::strerror(errno));
}

inline unsigned address_octets(const ip_prefix& p) { return p.family == 4 ? 4 : 16; }

// One prepared statement; `step_name` says which SQL step failed.
template <typename Error>
class sqlite_statement {
public:
    sqlite_statement(sqlite3* db, const std::string& path, const char* step_name, const char* sql)
        : db_(db), path_(path), step_(step_name) {
        if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st_, nullptr) != SQLITE_OK) fail();
    }
    ~sqlite_statement() { sqlite3_finalize(st_); }
    sqlite_statement(const sqlite_statement&) = delete;
    sqlite_statement& operator=(const sqlite_statement&) = delete;

    sqlite_statement& bind(int i, int64_t v) { return check(sqlite3_bind_int64(st_, i, v)); }
    sqlite_statement& bind(int i, const std::string& v) {
        return check(sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    }
    sqlite_statement& bind(int i, const char* v) { return check(sqlite3_bind_text(st_, i, v, -1, SQLITE_STATIC)); }
    sqlite_statement& bind_null(int i) { return check(sqlite3_bind_null(st_, i)); }
    sqlite_statement& bind_address(int i, const ip_prefix& p) {
        return check(sqlite3_bind_blob(st_, i, p.bytes.data(), static_cast<int>(address_octets(p)), SQLITE_TRANSIENT));
    }
    // true: a row is ready; false: done. Throws on anything else.
    bool step() {
        const int rc = sqlite3_step(st_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        const std::string msg = path_ + ": " + step_ + ": " + sqlite3_errmsg(db_);
        reset();   // ready to be bound again after the error
        throw Error(msg);
    }
    void run() {
        while (step()) {
        }
        reset();
    }
    void reset() {
        sqlite3_reset(st_);
        sqlite3_clear_bindings(st_);
    }
    int64_t column_int(int i) const { return sqlite3_column_int64(st_, i); }
    bool column_null(int i) const { return sqlite3_column_type(st_, i) == SQLITE_NULL; }
    std::string column_text(int i) const {
        const auto* t = sqlite3_column_text(st_, i);
        return t ? std::string(reinterpret_cast<const char*>(t), static_cast<size_t>(sqlite3_column_bytes(st_, i)))
                 : std::string();
    }
    std::string column_blob(int i) const {
        const auto* b = static_cast<const char*>(sqlite3_column_blob(st_, i));
        return b ? std::string(b, static_cast<size_t>(sqlite3_column_bytes(st_, i))) : std::string();
    }

    [[noreturn]] void fail() const { throw Error(path_ + ": " + step_ + ": " + sqlite3_errmsg(db_)); }

private:
    sqlite_statement& check(int rc) {
        if (rc != SQLITE_OK) fail();
        return *this;
    }
    sqlite3* db_;
    const std::string& path_;
    std::string step_;
    sqlite3_stmt* st_ = nullptr;
};

// Runs `sql` (no rows expected); throws Error naming `step_name`.
template <typename Error>
void sqlite_exec(sqlite3* db, const std::string& path, const char* step_name, const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        const std::string msg = path + ": " + step_name + ": " + (err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        throw Error(msg);
    }
}

// Creates the store's tables if needed and records `schema_version`
// (PRAGMA user_version), in one transaction: a store is either without a
// schema or with all of it. `schema_sql`: CREATE ... IF NOT EXISTS
// statements. Throws Error naming the step; the transaction rolled back.
template <typename Error>
void create_sqlite_schema(sqlite3* db, const std::string& path, const char* schema_sql, int64_t schema_version) {
    sqlite_exec<Error>(db, path, "create the schema (BEGIN)", "BEGIN IMMEDIATE");
    try {
        sqlite_exec<Error>(db, path, "create the schema (CREATE TABLE)", schema_sql);
        const std::string version = "PRAGMA user_version=" + std::to_string(schema_version);
        sqlite_exec<Error>(db, path, "record the schema version (PRAGMA user_version)", version.c_str());
        sqlite_exec<Error>(db, path, "create the schema (COMMIT)", "COMMIT");
    } catch (...) {
        sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
}

// Opens the store at `path`: read-write creates the file (store_file_mode),
// narrows the mode of it and its -wal/-shm, switches to WAL (not for
// ":memory:") and sets `synchronous` ("NORMAL", "FULL"); read-only opens an
// existing file. Either refuses a schema (PRAGMA user_version) newer than
// `schema_version`, which also reads the first page: a file that is not a
// database fails here. Extended result codes; a busy wait of `busy_ms` (the
// caller is the control thread: short). Returns the connection (the caller
// closes it, sqlite3_close_v2); throws Error, leaving nothing open.
template <typename Error>
sqlite3* open_sqlite_store(const std::string& path, bool read_only, int64_t schema_version, const char* synchronous,
                           int busy_ms) {
    const bool in_memory = path == ":memory:";
    if (!read_only && !in_memory) {
        restrict_store_file_mode<Error>(path, true);
        restrict_store_file_mode<Error>(path + "-wal", false);
        restrict_store_file_mode<Error>(path + "-shm", false);
    }
    sqlite3* db = nullptr;
    const int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
        const std::string msg = path + ": open: " + (db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close_v2(db);
        throw Error(msg);
    }
    try {
        sqlite3_extended_result_codes(db, 1);
        sqlite3_busy_timeout(db, busy_ms);
        {
            sqlite_statement<Error> version(db, path, "read the schema version (PRAGMA user_version)",
                                            "PRAGMA user_version");
            const int64_t v = version.step() ? version.column_int(0) : 0;
            if (v > schema_version)
                throw Error(path + ": read the schema version (PRAGMA user_version): version " + std::to_string(v) +
                            " is newer than this release reads (" + std::to_string(schema_version) + ")");
        }
        if (!read_only) {
            if (!in_memory) {
                sqlite_statement<Error> wal(db, path, "switch to WAL (PRAGMA journal_mode=WAL)", "PRAGMA journal_mode=WAL");
                const std::string got = wal.step() ? wal.column_text(0) : std::string();
                if (got != "wal")
                    throw Error(path + ": switch to WAL (PRAGMA journal_mode=WAL): the database stays in '" + got +
                                "' mode (a file system without shared memory?)");
            }
            const std::string sync = std::string("PRAGMA synchronous=") + synchronous;
            sqlite_exec<Error>(db, path, "set synchronous (PRAGMA synchronous)", sync.c_str());
        }
    } catch (...) {
        sqlite3_close_v2(db);
        throw;
    }
    return db;
}

}  // namespace sekisho
