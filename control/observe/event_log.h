// Drains the workers' event rings into a JSON-lines log (control thread):
// per-subscriber aggregation, size/time rotation, an fsync policy, and loss
// accounting. The schema and the behaviour are in docs/events.md.
//
// Aggregation (like syslog's "repeated N times"): the first event of a key
// is written at once; the repeats of that key within aggregate_window are
// written as one line with "repeated":true and their count when the window
// closes. Lines are therefore not in time_ns order: a repeat line is written
// after later events of other keys. Readers follow the file by position.
//
// The log follows its path: before each batch it compares the open file with
// what the path names (one stat(2) per drain, every 10 ms live), and if the
// file was deleted, or moved away and maybe replaced by another, it opens the
// path again (created if absent) and counts `reopened`, so lines never go on
// into a file nobody can read.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "control/observe/event_log_counters.h"
#include "dataplane/event_ring.h"
#include "control/policy/policy.h"

namespace sekisho {

class account_registry;

// What turns ids in an event into names: the policy's limit names and the
// account registry. Either may be null (ids are printed then).
struct event_names {
    const policy* pol = nullptr;
    const account_registry* accounts = nullptr;
};

// One event as a JSON object, without the aggregation fields (count,
// first_ns, last_ns) that the log adds.
std::string event_to_json(const event_record& e, const event_names& names = {});


class event_log {
public:
    using clock_fn = std::function<uint64_t()>;

    // One line per event, no rotation, no fsync: `path` ("-" is standard
    // output) is opened for appending. Throws std::runtime_error on failure.
    explicit event_log(const std::string& path);

    // config.file is opened for appending; throws std::runtime_error if it
    // cannot be. Later I/O errors are counted, never thrown.
    //  event_now: the current time on the events' clock (CLOCK_REALTIME live),
    //    so a window closes even if no later event arrives; null: windows
    //    close by the events' own time_ns only (deterministic, for replay).
    //  file_now: a monotonic clock in ns for rotate_interval and
    //    fsync_interval; null: CLOCK_MONOTONIC.
    explicit event_log(const events_config& config, clock_fn event_now = nullptr, clock_fn file_now = nullptr);
    ~event_log();  // flush_all()
    event_log(const event_log&) = delete;
    event_log& operator=(const event_log&) = delete;

    // Moves whatever the rings hold into the log (lines of closed windows are
    // written; due rotation and fsync happen). Returns the events taken.
    size_t drain(const std::vector<event_ring*>& rings, const event_names& names = {});
    // The same for events from elsewhere (and tests): no ring needed.
    void add(const event_record* events, size_t n, const event_names& names = {});
    // A control-plane record (an API change: control_api's audit trail), one
    // line as it is, never aggregated: `json_object` is a serialised JSON
    // object with at least "type" and "time_ns".
    void add_record(std::string json_object);
    // Closes every aggregation window and writes it, then fsyncs unless the
    // policy is never: at exit, after the last drain().
    void flush_all();

    uint64_t written() const { return c_.written; }
    uint64_t write_errors() const { return c_.write_errors; }
    const event_log_counters& counters() const { return c_; }
    const events_config& config() const { return config_; }
    const std::string& path() const { return config_.file; }

private:
    struct agg_key {
        uint64_t generation;
        uint8_t type, reason, action, ip_version;
        uint8_t src[16];
        bool operator==(const agg_key& o) const;
    };
    struct agg_key_hash {
        size_t operator()(const agg_key& k) const;
    };
    // mail_session events: what the merged sessions carried, summed.
    struct session_totals {
        uint64_t messages = 0, recipients = 0, rejected_recipients = 0;
        void add(const event_record& e);
    };
    // A key's window after its first event was written: the repeats that
    // came since, written as one `repeated` line when it closes (none: no
    // line).
    struct open_window {
        std::string json;   // the first repeat, without the aggregation fields ("" while none)
        uint64_t first_ns, last_ns, count;   // the repeats' times and number
        uint64_t connections;   // of `count`, the repeats that are a new connection (connections_of)
        session_totals sessions;
        std::pair<uint64_t, uint64_t> order;  // (deadline, sequence): key into order_
    };

    void ingest(const event_record& e, const event_names& names);
    void close_due();                                // windows whose end has passed
    void close_window(std::unordered_map<agg_key, open_window, agg_key_hash>::iterator it);
    void queue_line(std::string json, uint64_t count, uint64_t first_ns, uint64_t last_ns,
                    const session_totals* sessions, const uint64_t* connections, bool repeated);
    void poll();                                     // write queued lines, rotate, fsync as due
    void write_queued();
    void write_chunk(size_t from_line, size_t to_line);
    void rotate();
    void follow_path();                              // reopen if the path names another file, or none
    bool open_file();
    void sync();
    uint64_t file_now() const;

    events_config config_;
    clock_fn event_now_fn_, file_now_fn_;
    int fd_ = -1;
    bool fd_opened_once_ = false;   // later opens must not block (O_NONBLOCK)
    bool regular_ = false;   // a regular file: rotation, fsync and following the path apply
    dev_t dev_ = 0;          // the open file's identity, compared with the path's
    ino_t ino_ = 0;
    uint64_t size_ = 0;
    uint64_t opened_ns_ = 0, synced_ns_ = 0;
    bool dirty_ = false;     // written since the last fsync

    // Lines waiting for write_queued(): text, and per line its end and count.
    std::string queue_;
    std::vector<std::pair<size_t, uint64_t>> queued_lines_;

    uint64_t event_now_ = 0;   // the latest time seen on the events' clock
    uint64_t sequence_ = 0;
    std::unordered_map<agg_key, open_window, agg_key_hash> windows_;
    std::map<std::pair<uint64_t, uint64_t>, agg_key> order_;   // by deadline
    event_log_counters c_;
};

}  // namespace sekisho
