// Ships this gateway's event log into the fleet's PostgreSQL (docs/fleet.md,
// "Events in PostgreSQL"), so that the abuse desk asks one database about
// every gateway (sekishoctl --fleet ... events).
//
// The event log on disk is the queue: the shipper follows it by position
// (event_log_follow.h) from a durable cursor, so nothing is lost while
// PostgreSQL is down or slow, bounded by the event log's own rotation
// (events.keep files of events.rotate_bytes): lines rotated away before they
// were shipped are a gap, counted and logged. The backlog is counted in bytes.
//
// Each batch (at most batch_lines lines, or what came within sync_interval)
// goes in one transaction: COPY into a temporary staging table, then
// INSERT ... SELECT ... ON CONFLICT DO NOTHING into `events`, partitioned by
// day (the shipper creates the partitions its lines need, and drops those
// older than retention_days). Every line has a key of its own, (gateway,
// file identity, byte offset, time): a batch sent again (a crash after COMMIT,
// before the cursor was saved) inserts nothing twice. The cursor
// (<state_dir>/fleet/events.cursor) is written after the COMMIT only, by
// write + fsync + rename.
//
// Every line becomes exactly one row. A line that is not a JSON object goes
// in as type "unparsable" with its text as a JSON string; a line PostgreSQL
// refuses (e.g. a \u0000 escape, which jsonb does not take) goes in as type
// "refused" with PostgreSQL's message, file and offset instead of the line.
// Both are counted and logged, naming the file and offset: no line wedges
// the shipper, none is dropped silently (a stand-in row refused as well is
// skipped, and logged so).
//
// Threading: one thread of its own does all file reading and store I/O. The
// other calls (status, metrics, take_log_lines, the destructor) come from the
// control thread and only copy counters under a short lock; none waits on the
// store. The destructor stops the thread (a statement in progress ends by
// its connect_timeout or when the server answers).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "control/fleet/fleet_thread_signals.h"
#include "control/observe/event_log_follow.h"

namespace sekisho {

class pg_connection;

// Creates the events table and its indexes if missing (idempotent, one
// transaction, serialised between gateways by an advisory lock).
void ensure_event_tables(pg_connection& pg);

// Creates the partition of `events` for the UTC day holding Unix second `t`
// if missing (events_pYYYYMMDD). Returns its name.
std::string ensure_event_partition(pg_connection& pg, int64_t t);

// Drops the partitions whose whole day ended more than `days` days before
// Unix second `now`. Returns how many it dropped.
int drop_old_event_partitions(pg_connection& pg, int64_t now, uint32_t days);

struct event_shipper_options {
    std::string gateway;
    std::string conninfo_file;   // a credential file (fleet_config.h)
    std::string events_path;     // the event log this gateway writes
    std::string cursor_path;     // <state_dir>/fleet/events.cursor
    uint64_t sync_interval_ns = 200'000'000;
    size_t batch_lines = 5000;
    uint64_t batch_bytes = 8u << 20;
    // Days of events kept in PostgreSQL. The policy has no retention of
    // its own for events (the log keeps events.keep rotated files), so 30.
    uint32_t retention_days = 30;
    uint64_t backoff_min_ns = 100'000'000, backoff_max_ns = 5'000'000'000;
};

// What status() and the metrics show.
struct event_shipper_state {
    bool link_up = false;
    uint64_t shipped = 0;          // lines that became rows (or were rows already: a replay)
    uint64_t inserted = 0;         // rows inserted by this gateway's batches (replays insert none)
    uint64_t batches = 0;
    uint64_t unparsable = 0, refused = 0;
    uint64_t gaps = 0;             // times the cursor's file was gone (lines lost before shipping)
    uint64_t backlog_bytes = 0;    // in the event log after the cursor
    uint64_t reconnects = 0;
    int64_t last_sync = 0;         // Unix seconds of the last COMMIT or the last empty check with the link up
    double lag_seconds = 0;        // now - time of the oldest unshipped line; 0 when none waits
    std::string cursor;            // INODE:OFFSET:CHECK
    std::string last_error;        // PostgreSQL's last message (never the connection string)
};

class event_shipper {
public:
    // Reads the cursor (a missing one: from the oldest file of the log; an
    // unreadable one: the same, logged; the keys make the re-sent lines
    // no-ops) and starts the thread. Throws nothing for the store.
    explicit event_shipper(event_shipper_options options);
    ~event_shipper();
    event_shipper(const event_shipper&) = delete;
    event_shipper& operator=(const event_shipper&) = delete;

    event_shipper_state state() const;
    nlohmann::json status() const;
    // Log lines the thread produced since the last call (the caller writes
    // them: the thread never writes to standard error itself). At most 100
    // are kept; more are counted in a last line.
    std::vector<std::string> take_log_lines();
    // Wakes the thread to look at the log now (tests, shutdown).
    void wake();

private:
    struct cursor_state {
        std::optional<event_position> position;
        uint64_t last_time_ns = 0;   // of the last line shipped: the time of a following line without one
    };
    struct prepared_line;

    void run();
    void log(const std::string& line) { signals_.log(line); }
    bool wait_for(uint64_t ns) { return signals_.wait_for(ns); }   // false when stopping
    void save_cursor(const cursor_state& c);
    std::vector<prepared_line> prepare(const follow_result& batch, uint64_t last_time_ns);
    // One transaction: COPY, INSERT ... SELECT (while_inserting runs while
    // PostgreSQL works on it), COMMIT. Throws pg_error.
    void ship(pg_connection& pg, const std::vector<prepared_line>& lines, const std::function<void()>& while_inserting);
    void ship_one_by_one(pg_connection& pg, std::vector<prepared_line>& lines);
    void ensure_partitions(pg_connection& pg, const std::vector<prepared_line>& lines);
    // While the link is down: the backlog and the lag from the log alone.
    void measure_backlog();

    event_shipper_options opt_;
    cursor_state cursor_;                 // the thread's
    std::vector<int64_t> partitions_;     // days known to exist (the thread's)
    int64_t maintained_day_ = 0;          // the thread's: retention last run for this day

    fleet_thread_signals signals_{"fleet: events: "};
    mutable std::mutex mu_;   // state_
    event_shipper_state state_;

    std::thread thread_;   // last: started when everything above exists
};

}  // namespace sekisho
