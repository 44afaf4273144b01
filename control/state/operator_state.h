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
// Schema (user_version 1; 2 below), for anyone with the sqlite3 shell:
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
// In fleet mode (control/fleet/operator_sync.h) two more tables (user_version
// 2 adds them; a version-1 file gains them at open; version 3 adds the
// outbox's prefix and detail columns, which a version-2 file gains at open):
//
//   fleet_outbox(seq INTEGER PRIMARY KEY,   -- order of the local changes
//                change_id TEXT UNIQUE,     -- random, made here: the fleet's idempotency key
//                kind TEXT,                 -- suspend, resume, bind, unbind, limits_reset
//                account TEXT, caller TEXT, reason TEXT,
//                at INTEGER,                -- Unix seconds of the operator's change
//                prefix TEXT,               -- bind, unbind: the prefix; limits_reset: the address
//                detail TEXT)               -- limits_reset: the limit's name ("" every limit)
//   fleet_cursor(one INTEGER PRIMARY KEY CHECK (one = 1),
//                last_id INTEGER,           -- the fleet change log's id applied last
//                change_id TEXT, at INTEGER)   -- that change's key and time
//
// With the outbox on (set_fleet_outbox), suspend(), resume(), add_binding()
// and remove_binding() write their outbox row in the same transaction as the
// change: a change that is in force here is also queued for the fleet, across
// kill -9 and a store that is down. A limit reset is an action, not a state:
// the control API queues it (queue_outbox) once the workers did it. A change
// that came from the fleet (apply_fleet_change) writes the suspension or the
// binding and the cursor in one transaction and no outbox row: nothing is
// published twice and nothing is applied twice.
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

// One operator change as the fleet's change log carries it.
struct fleet_change {
    int64_t id = 0;           // the fleet log's id (0: not published yet)
    std::string change_id;    // unique per change: 32 hex digits made where it was made
    std::string kind;         // suspend, resume, bind, unbind, limits_reset (others are refused by the caller)
    std::string account;      // bind, suspend, resume; limits_reset by account

    std::string origin;       // the gateway where it was made ("" in the outbox: this one)
    std::string caller;
    std::string reason;
    int64_t at = 0;           // Unix seconds of the change
    std::string prefix;       // bind, unbind: the prefix; limits_reset by address: the address (/32, /128)
    std::string detail;       // limits_reset: the limit's name ("": every limit); bind: what it overrode (JSON)
};

// Where this gateway is in the fleet's change log.
struct fleet_cursor {
    int64_t last_id = 0;
    std::string change_id;
    int64_t at = 0;
};

enum class fleet_apply {
    changed,      // the suspension or binding changed: put it in force, audit it
    unchanged,    // it was already so (this gateway's own change coming back)
    superseded,   // a local change of the account (prefix) waits in the outbox: it will come after, it wins
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
    // Removes the account's suspension; true when there was one. `caller`
    // and `at` (Unix seconds) go into the outbox row in fleet mode.
    bool resume(const std::string& account, const std::string& caller = "", int64_t at = 0);
    bool suspended(const std::string& account) const;
    // Every suspension, by account name.
    std::vector<suspension_record> suspensions() const;

    // Records the binding of r.prefix (replacing one of the same prefix). In
    // fleet mode, with `publish`, also queues the change (kind bind) in the
    // same transaction and returns its change_id ("" otherwise): a caller
    // that takes the binding back (the table was full) removes that row and
    // stores the previous state with `publish` false.
    std::string add_binding(const api_binding_record& r, bool publish = true);
    // Removes the binding of exactly `prefix`; true when there was one. In
    // fleet mode, with `publish`, also queues the change (kind unbind,
    // `caller`, `at` Unix seconds) in the same transaction.
    bool remove_binding(const ip_prefix& prefix, bool publish = true, const std::string& caller = "", int64_t at = 0);
    // Every API binding, oldest first. A row whose prefix does not parse
    // (edited by hand) throws, naming it.
    std::vector<api_binding_record> bindings() const;

    // Fleet mode: from now on suspend() and resume() also queue their change
    // in fleet_outbox, in the same transaction (even when the state did not
    // change here: the operator's intent holds for the whole fleet).
    void set_fleet_outbox(bool on);
    bool fleet_outbox() const;
    // The changes waiting to be published, oldest first.
    std::vector<fleet_change> outbox() const;
    // How many outbox rows were written since open (the control thread's cue
    // to hand a fresh copy to the fleet thread).
    uint64_t outbox_writes() const;
    // Queues `c` (its change_id set, or made here when empty) as a local change.
    void queue_outbox(const fleet_change& c);
    // Removes the row of `change_id` once the fleet's store committed it;
    // true when there was one.
    bool remove_from_outbox(const std::string& change_id);

    fleet_cursor cursor() const;
    // Sets the cursor alone (a change this build does not apply, a store
    // that came back older: operator_sync.h).
    void set_cursor(const fleet_cursor& c);
    // A change read from the fleet's log, in one transaction: the suspension
    // (or its removal) unless a local change of the same account waits in
    // the outbox, the API binding (or its removal: kinds bind, unbind)
    // unless a local change of the same prefix waits, and the cursor at c.id.
    // Any other kind stores the cursor alone.
    fleet_apply apply_fleet_change(const fleet_change& c);

    const std::string& path() const { return path_; }

private:
    struct impl;
    std::string path_;
    std::unique_ptr<impl> impl_;
};

}  // namespace sekisho
