// What operators decided, kept across restarts and kill -9: account
// suspensions (利用停止: `account suspend`, or a content rule's quarantine
// verdict) and the bindings added through the API. serve() restores both into
// the data plane before the backend forwards its first packet.
//
// The file: SQLite `<state_dir>/operator.db` (0640, like the binding history:
// who is suspended is contractual data), WAL, synchronous=FULL: a call that
// returns has its change in the WAL on disk (fsynced), so an answer the API
// gave after it survives kill -9 and a power loss alike. One change, one
// transaction: it is stored whole or not at all. A failure throws
// operator_state_error ("<file>: <SQL step>: <SQLite's message>") and changes
// nothing; the caller then leaves the data plane as it was.
//
// Schema (user_version 1), for anyone with the sqlite3 shell:
//
//   suspensions(account TEXT PRIMARY KEY,
//               since INTEGER,     -- Unix seconds, when first suspended
//               caller TEXT,       -- the API caller, or "quarantine" (a content verdict)
//               reason TEXT)       -- why, in words ("" when none was given)
//   api_bindings(prefix TEXT PRIMARY KEY,   -- "198.51.100.7/32", host bits zero
//                account TEXT,
//                since INTEGER,     -- Unix seconds
//                caller TEXT,
//                overrode TEXT)     -- JSON array of what held the prefix when it
//                                   -- was added: {account, source, session_id, nas}
//
// Threading: the control thread only (one connection, one writer). Each
// change costs one fsync (milliseconds on a disk): operators' changes are
// rare, and the API answers after it anyway.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "control/policy/policy.h"

namespace sekisho {

class operator_state_error : public std::runtime_error {
public:
    // busy: the database is locked by another process (someone holds a
    // write lock with the sqlite3 shell): worth a retry, unlike a full disk.
    explicit operator_state_error(const std::string& what, bool busy = false)
        : std::runtime_error(what), busy_(busy) {}
    bool busy() const { return busy_; }

private:
    bool busy_;
};

struct suspension_record {
    std::string account;
    int64_t since = 0;
    std::string caller;
    std::string reason;
};

struct api_binding_record {
    ip_prefix prefix;
    std::string account;
    int64_t since = 0;
    std::string caller;
    std::string overrode = "[]";   // JSON array, as stored
};

class operator_state {
public:
    // Opens `path`, creating it (0640) and its schema if needed; narrows a
    // wider mode to 0640. Throws operator_state_error naming the file and
    // what failed: not a database (a corrupt or foreign file), a schema newer
    // than this release, a file system without WAL.
    explicit operator_state(const std::string& path);
    ~operator_state();
    operator_state(const operator_state&) = delete;
    operator_state& operator=(const operator_state&) = delete;

    // Records the suspension; an account already suspended keeps its first
    // record (since, caller). Returns true when it was not suspended before.
    bool suspend(const suspension_record& r);
    // Removes the account's suspension; true when there was one.
    bool resume(const std::string& account);
    bool suspended(const std::string& account) const;
    // Every suspension, by account name.
    std::vector<suspension_record> suspensions() const;

    // Records the binding of r.prefix (replacing one of the same prefix).
    void add_binding(const api_binding_record& r);
    // Removes the binding of exactly `prefix`; true when there was one.
    bool remove_binding(const ip_prefix& prefix);
    // Every API binding, oldest first. A row whose prefix does not parse
    // (edited by hand) throws, naming it.
    std::vector<api_binding_record> bindings() const;

    const std::string& path() const { return path_; }

private:
    struct impl;
    std::string path_;
    std::unique_ptr<impl> impl_;
};

}  // namespace sekisho
