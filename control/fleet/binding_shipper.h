// Ships this gateway's binding history (who held which address when: the
// SQLite file its RADIUS listener writes, control/identity/binding_history.h)
// into the fleet's PostgreSQL table `bindings`, so that the abuse desk's
// whois and report answer across gateways (sekishoctl --fleet ... whois,
// report; docs/fleet.md, "Who held an address, fleet-wide").
//
// The history is the queue: every row a history transaction inserts or
// updates carries that transaction's change number (change_seq), and the
// shipper follows (change_seq, id) from a durable cursor
// (<state_dir>/fleet/bindings.cursor, "CHANGE ID" of the last row shipped,
// written by write + fsync + rename after the COMMIT only). A Stop that
// closes a row after the row was shipped gives it a new number: the row is
// shipped again.
// While PostgreSQL is down the rows wait in the history; they go when it
// returns (bounded by the history's own retention: rows purged before they
// were shipped are not shipped; purges are not shipped either: PostgreSQL
// keeps its copy).
//
// Each batch (at most batch_rows rows) is one statement in one transaction:
// an upsert keyed by (gateway, history row id) that changes a row only when
// the batch's change number is higher than the stored one. A batch sent again
// (a crash after COMMIT, before the cursor was saved) changes nothing: no row
// twice, no row rolled back to an older state. A batch PostgreSQL refuses
// (not a lost link) is retried row by row; a refused row is logged with its
// history id and counted, and skipped: no row wedges the shipper.
//
// Threading: one thread of its own opens the history read-only (WAL: it
// never blocks the control thread, which writes it) and does all store I/O.
// state(), status(), take_log_lines() and the destructor come from the
// control thread and only copy under a short lock. The destructor stops the
// thread (a statement in progress ends by its connect_timeout or when the
// server answers).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "control/fleet/fleet_thread_signals.h"

namespace sekisho {

class pg_connection;

// Creates the bindings table and its indexes if missing (idempotent, one
// transaction, serialised between gateways by an advisory lock).
void ensure_binding_tables(pg_connection& pg);

struct binding_shipper_options {
    std::string gateway;
    std::string conninfo_file;   // a credential file (fleet_config.h)
    std::string history_path;    // the binding history this gateway writes
    std::string cursor_path;     // <state_dir>/fleet/bindings.cursor
    uint64_t sync_interval_ns = 200'000'000;
    size_t batch_rows = 2000;
    uint64_t backoff_min_ns = 100'000'000, backoff_max_ns = 5'000'000'000;
};

struct binding_shipper_state {
    bool link_up = false;
    uint64_t shipped = 0;          // history rows sent in committed batches (a replay counts again)
    uint64_t upserted = 0;         // rows PostgreSQL inserted or changed (a replay changes none)
    uint64_t batches = 0;
    uint64_t refused = 0;          // rows PostgreSQL refused (logged, skipped)
    uint64_t backlog_rows = 0;     // history rows changed after the cursor (counted up to 1,000,000)
    uint64_t reconnects = 0;
    uint64_t cursor = 0;           // the change number of the last row shipped
    int64_t cursor_id = 0;         // and its history id
    int64_t last_sync = 0;         // Unix seconds of the last COMMIT or empty check with the link up
    std::string last_error;        // PostgreSQL's or the history's last message (never the connection string)
};

class binding_shipper {
public:
    // Reads the cursor (missing: from the start, every row is shipped; unreadable: the same,
    // logged: the upsert makes the rows already there no-ops) and starts the
    // thread. A history file not there yet is waited for.
    explicit binding_shipper(binding_shipper_options options);
    ~binding_shipper();
    binding_shipper(const binding_shipper&) = delete;
    binding_shipper& operator=(const binding_shipper&) = delete;

    binding_shipper_state state() const;
    nlohmann::json status() const;
    // Log lines the thread produced since the last call (the caller writes
    // them). At most 100 are kept; more are counted in a last line.
    std::vector<std::string> take_log_lines();
    // Wakes the thread to look at the history now (tests, a RADIUS batch).
    void wake();

private:
    struct row;
    void run();
    void log(const std::string& line) { signals_.log(line); }
    bool wait_for(uint64_t ns) { return signals_.wait_for(ns); }   // false when stopping
    void save_cursor();
    // One transaction; returns the rows PostgreSQL changed. Throws pg_error.
    uint64_t ship(pg_connection& pg, const std::vector<row>& rows);
    uint64_t ship_one_by_one(pg_connection& pg, const std::vector<row>& rows);

    binding_shipper_options opt_;
    uint64_t cursor_ = 0;      // the thread's: the last row shipped, (change_seq, id)
    int64_t cursor_id_ = 0;

    fleet_thread_signals signals_{"fleet: bindings: "};
    mutable std::mutex mu_;   // state_
    binding_shipper_state state_;

    std::thread thread_;   // last: started when everything above exists
};

}  // namespace sekisho

