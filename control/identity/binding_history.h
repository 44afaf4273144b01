// Who held which address when: the durable record the abuse desk queries
// ("spam from 198.51.100.7 at 2026-11-23 09:14 UTC: whose was it?").
//
// Why SQLite (Debian's libsqlite3) and not LMDB: the question is a range
// query, "rows for this address whose [start, stop] contains T", plus "the
// open sessions of this NAS", "the open session with this Acct-Session-Id"
// and "closed before the retention cutoff" — four access paths over one
// table. SQL with an index per path answers each directly; in LMDB each
// would be a hand-maintained secondary key space with its own consistency
// code. The write rate (RADIUS: thousands per second at a reboot storm,
// handled by one control thread) suits SQLite's single writer; WAL mode lets
// a CLI read concurrently without blocking it; the file survives restarts
// and opens with the stock sqlite3 shell for ad-hoc questions. LMDB's
// advantages (memory-mapped reads, many concurrent writers' readers) buy
// nothing here.
//
// Durability: WAL with synchronous=NORMAL. A committed update survives a
// crash of sekishod (the NAS is answered only after the commit); a power
// loss of the host may lose the commits since the last WAL sync, records the
// NAS was already answered for. That is the accepted price of not fsyncing
// once per RADIUS packet (synchronous=FULL: one fsync per update).
//
// Schema (user_version 3), read by tests/radius/radclient_test.py and by
// anyone with the sqlite3 shell:
//
//   sessions(id INTEGER PRIMARY KEY,
//            family INTEGER,           -- 4 or 6
//            prefix BLOB,              -- network order, 4 or 16 octets, host bits zero
//            prefix_length INTEGER,    -- 32 for IPv4; the IPv6 prefix length
//            account TEXT, session_id TEXT, nas TEXT, nas_identifier TEXT,
//            start_time INTEGER,       -- Unix seconds
//            stop_time INTEGER,        -- Unix seconds, NULL while the session is open
//            stop_cause TEXT,          -- stop | accounting-on | accounting-off | superseded
//            change_seq INTEGER)       -- the number of the transaction that last wrote the row
//   history_changes(n INTEGER)         -- one row: the last transaction number given
//
// Every write transaction (apply(), begin()...commit()) takes the next
// number of history_changes, and every row it inserts or updates carries
// it in change_seq: a reader that remembers the last (change_seq, id) it has
// seen (the fleet's binding shipper, control/fleet/binding_shipper.h) finds
// every row written since by `(change_seq, id) > (N, ID)`, and, SQLite
// having one writer, never sees a number committed before a lower one.
// Numbered in the statements, not by triggers: a trigger's second write of
// each row halved the insert rate. Purged rows are not changes: they go
// without a number. An older history is upgraded when opened for writing:
// version 1 gains change_seq (each existing row numbered by its id);
// version 2 had a second index by address for the open rows, replaced by
// one index by address whose entries carry stop_time (version 3: the rows
// and their numbers unchanged). Read-only, versions 2 and 3 answer alike. Rows written by other programs
// (the sqlite3 shell) carry no new number: the shipper does not see them.

// One row per (session, address): a session with an IPv4 address and a
// delegated IPv6 prefix has two rows. A binding is active at T when
// start_time <= T <= stop_time (both ends included: RADIUS times are whole
// seconds, and when an address changes hands within one second both holders
// are returned rather than a guess).
//
// The history decides, the data plane follows: apply() returns the
// data-plane changes (binding_change) its decisions imply, and
// subscriber_identity applies exactly those. Whatever order updates arrive
// in, and however often one is resent, an older event never overrides a
// newer binding, and the data plane holds what the open rows say.
//
// File mode: the database and its -wal and -shm files are created 0640 (who
// held which address when is personal data, not for every local user); an
// existing file with wider permissions is narrowed to 0640 when opened for
// writing.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "control/identity/binding.h"
#include "control/policy/policy.h"

namespace sekisho {

struct binding_record {
    int64_t id = 0;
    ip_prefix address;              // a /32, or an IPv6 prefix
    std::string account;
    std::string session_id;
    std::string nas;                // binding_update::nas(): NAS address, else NAS-Identifier
    std::string nas_identifier;
    int64_t start = 0;              // Unix seconds
    std::optional<int64_t> stop;    // nullopt while open
    std::string stop_cause;         // "stop", "accounting-on", "accounting-off", "superseded"; "" while open
};

// Every failure: "<database file>: <SQL step>: <SQLite's message>".
class binding_history_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

constexpr std::chrono::seconds default_history_retention{90LL * 24 * 3600};

class binding_history {
public:
    enum class access { read_write, read_only };

    // read_write creates the file (mode 0640) and schema if needed, narrows
    // the mode of an existing file and its -wal/-shm to 0640, and switches
    // to WAL (one writer: the control thread). read_only opens an existing
    // history (a CLI next to a running sekishod). The path ":memory:" is a
    // history in memory, gone at exit: the same rules without a file (RADIUS
    // without history.database).
    explicit binding_history(const std::string& path, access mode = access::read_write);
    ~binding_history();
    binding_history(const binding_history&) = delete;
    binding_history& operator=(const binding_history&) = delete;

    // The rules, per address A of the update and its session S (the NAS and
    // Acct-Session-Id), at the event time t:
    //  start, interim  S already has a row for A, open or closed: nothing (a
    //           retransmitted Start, an Interim after the Stop). Else, with
    //           `begin` = t (an Interim: t - Acct-Session-Time when known, the
    //           Start was lost):
    //           - an open row of A began after `begin` (a newer session holds
    //             A; this update is late): S's row is recorded closed at that
    //             row's start ("superseded"); no data-plane change;
    //           - else A's open row, if any, closes at `begin` ("superseded":
    //             its Stop was lost), S's row opens: bind A to S's account.
    //  stop     closes S's open rows at t, whatever the packet carries or
    //           lacks (User-Name, Framed-IP-Address): unbind each from the
    //           account of its row. An address of the packet S has no row for
    //           is recorded closed from t - Acct-Session-Time (else t) to t
    //           (a Stop whose Start was lost); no data-plane change.
    //  accounting_on/off  closes the NAS's open rows that began at or before
    //           t (it rebooted): unbind each. A session that began after t is
    //           newer than the reboot (an old Accounting-On resent) and stays.
    // Stop times are never before their start. A row without an account
    // (a Start without User-Name) is recorded but binds nothing: opening it
    // unbinds the account it superseded.
    //
    // One update, one transaction; returns the data-plane changes in the
    // order to apply them. Throws binding_history_error (nothing stored).
    std::vector<binding_change> apply(const binding_update& update);
    // Many updates in one transaction (bulk restore, benchmarks): all or
    // nothing; the changes of all of them, in order.
    std::vector<binding_change> apply(std::span<const binding_update> updates);

    // A batch of updates in one transaction (the RADIUS listener's poll):
    //   begin();
    //   per update, either
    //   - changes = apply_in_savepoint(u); apply them to the data plane;
    //     then release_savepoint() (kept), or rollback_to_savepoint() (as if
    //     never applied): each update undoable on its own; or
    //   - changes = apply_in_batch(u): no savepoint (a SAVEPOINT per update
    //     copies every page it first touches; measured in
    //     docs/performance.md). An update that fails in it, or whose
    //     data-plane step fails, can only be taken back with the whole batch
    //     (rollback()): the caller re-runs the others (subscriber_identity
    //     does, each in a savepoint) when it wants them kept;
    //   commit() (or rollback()).
    // apply_in_savepoint() that throws has already rolled its savepoint back;
    // apply_in_batch() that throws leaves the batch holding part of the
    // update: roll it back. commit() that throws has rolled the whole batch
    // back. One batch at a time; control thread only.
    void begin();
    std::vector<binding_change> apply_in_batch(const binding_update& update);
    std::vector<binding_change> apply_in_savepoint(const binding_update& update);
    void release_savepoint();
    void rollback_to_savepoint();
    void commit();
    void rollback();
    bool in_transaction() const;

    // The bindings active at `time` whose prefix contains `address` (a host:
    // IPv4 /32 or IPv6 /128, or a prefix: bindings of that prefix or a
    // shorter one containing it). Ordered by start time.
    std::vector<binding_record> who_held(const ip_prefix& address, int64_t time) const;
    // Those active at any moment of [from, to].
    std::vector<binding_record> held_between(const ip_prefix& address, int64_t from, int64_t to) const;
    // The open rows whose prefix lies within `prefix` (the prefix itself or
    // longer ones inside it: the RADIUS /32s under an API /24, the delegated
    // /56s under an IPv6 /40), ordered by address; at most `limit` rows (a
    // range scan of the index by address, which holds stop_time: the cost
    // follows the index entries of the addresses passed, open and closed,
    // not the table).
    std::vector<binding_record> open_within(const ip_prefix& prefix, size_t limit) const;
    // Every open row, oldest first: what the data-plane subscriber table is
    // restored from at start (rows without an account bind nothing).
    std::vector<binding_record> open_bindings() const;
    // Deletes closed rows whose stop_time < now - retention; open rows stay
    // whatever their age. Returns how many rows went. `now`: Unix seconds,
    // the system clock when not given.
    size_t purge_older_than(std::chrono::seconds retention = default_history_retention,
                            std::optional<int64_t> now = std::nullopt);

    const std::string& path() const { return path_; }

private:
    struct impl;
    std::string path_;
    std::unique_ptr<impl> impl_;
};

}  // namespace sekisho
