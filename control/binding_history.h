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
// Schema (user_version 1), read by tests/radius/radclient_test.py and by
// anyone with the sqlite3 shell:
//
//   sessions(id INTEGER PRIMARY KEY,
//            family INTEGER,           -- 4 or 6
//            prefix BLOB,              -- network order, 4 or 16 octets, host bits zero
//            prefix_length INTEGER,    -- 32 for IPv4; the IPv6 prefix length
//            account TEXT, session_id TEXT, nas TEXT, nas_identifier TEXT,
//            start_time INTEGER,       -- Unix seconds
//            stop_time INTEGER,        -- Unix seconds, NULL while the session is open
//            stop_cause TEXT)          -- stop | accounting-on | accounting-off | superseded
//
// One row per (session, address): a session with an IPv4 address and a
// delegated IPv6 prefix has two rows. A binding is active at T when
// start_time <= T <= stop_time (both ends included: RADIUS times are whole
// seconds, and when an address changes hands within one second both holders
// are returned rather than a guess).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "binding.h"
#include "policy.h"

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

    // read_write creates the file and schema if needed and switches to WAL
    // (one writer: the control thread). read_only opens an existing history
    // (a CLI next to a running sekishod).
    explicit binding_history(const std::string& path, access mode = access::read_write);
    ~binding_history();
    binding_history(const binding_history&) = delete;
    binding_history& operator=(const binding_history&) = delete;

    // One update, one transaction:
    //  start    opens a row per address unless the session already has one
    //           (a retransmitted Start changes nothing);
    //  interim  likewise: an interim of an unknown session opens it (the Start
    //           was lost), from event_time - Acct-Session-Time when known; an
    //           interim after the Stop does not reopen;
    //  stop     closes the session's open rows at event_time; a Stop of an
    //           unknown session records a closed row (start event_time -
    //           Acct-Session-Time when known, else event_time);
    //  accounting_on/off  closes every open row of that NAS (it rebooted).
    // Opening a row for an address another session still holds closes that
    // one ("superseded": its Stop was lost). Stop times are never before
    // their start.
    void apply(const binding_update& update);
    // Many updates in one transaction (bulk restore, benchmarks).
    void apply(std::span<const binding_update> updates);

    // The bindings active at `time` whose prefix contains `address` (a host:
    // IPv4 /32 or IPv6 /128, or a prefix: bindings of that prefix or a
    // shorter one containing it). Ordered by start time.
    std::vector<binding_record> who_held(const ip_prefix& address, int64_t time) const;
    // Those active at any moment of [from, to].
    std::vector<binding_record> held_between(const ip_prefix& address, int64_t from, int64_t to) const;
    // Every open row, oldest first: what the data-plane subscriber table is
    // restored from at start.
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
