// Fleet-wide campaign detection through Redis: the campaign table's
// distinct-subscriber bitmaps (campaign_table.h) of every gateway, ORed
// together per fingerprint and window, so that a message sent by a few
// subscribers behind each of many gateways crosses the policy's
// inspection.campaign.subscribers threshold on the gateways that see it.
//
// What goes where, every sync_interval:
// - The control thread (poll) reads the local table's cells of the current
//   window (for_each_active) and hands them to this concern's thread as one
//   snapshot; an unsent snapshot is replaced by the newer one (it holds
//   everything the older one did: bounded to one, counted as superseded).
// - The thread sends the bits not yet sent in this window with SETBIT into
//   `sekisho:campaign:<window length>:<window index>:<fingerprint hex>`
//   (a 240-bit string; EXPIRE two windows), pipelined. SETBIT is a union:
//   resending, or two gateways sending the same subscriber, changes nothing.
//   It reads back the bitmaps of the fingerprints it just sent and of the
//   window's hot set (`...:<window index>:hot`, same expiry; at most max_hot
//   of them): a fingerprint whose fleet bitmap has two or more bits joins
//   the hot set, so every gateway brings it in, even one that has not seen
//   the message yet. Bitmaps holding bits the local table lacks are queued
//   for the control thread.
// - The control thread's next poll() merges them (merge_subscriber_bits):
//   the workers' next message of that fingerprint sees the fleet's estimate.
// - Pipelined with the SETBITs, the thread writes this gateway's exact count
//   of the fingerprint's recipients in the window, when it changed, with
//   HSET into the hash `<bitmap key>:rcpt`, field `<gateway>/<boot id>`
//   (redis_count_fields.h; EXPIRE two windows): a resend sets the same
//   value, a restarted gateway's earlier count stays a field of its own.
//   For the fingerprints whose bitmaps it reads back (those it sent bits of
//   or recipients of, and the hot set) it reads the hash too (HGETALL): the
//   fleet's recipients are the other fields' sum plus this process's own
//   count. The fleet figures (bitmap and recipients) of the current window
//   are kept for the campaign view (fleet_figures()); no threshold uses
//   the fleet's recipients.
// Exact and local: recipients, per-subscriber recipients and this gateway's
// own subscribers (the workers count them as before, the fleet adds bits,
// never removes one). The per-(fingerprint, subscriber) recipients (the
// campaign.recipients threshold) are never shared: a subscriber's traffic
// crosses one edge, so the local count is the whole count. Eventually
// consistent: the fleet's subscribers and recipients, within one to two
// sync_intervals (the sender's push, then the reader's pull); the fleet's
// recipients of a fingerprint that is neither hot nor changed here are as of
// the last time it was.
//
// Redis down, slow or refusing: local detection goes on untouched (nothing
// waits on the thread); the link is counted down, the thread reconnects with
// backoff (100 ms doubling to 5 s) and, when it is back, sends all of the
// current window's bits again (the record of what was sent is dropped with
// the link), so fleet detection resumes within one interval.
//
// Threading: construction, poll(), counters(), status() and destruction on
// the control thread; Redis I/O only on the concern's own thread, which
// blocks SIGPIPE (a dead Redis is an error there, not the daemon's end). The table
// outlives this object.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "dataplane/inspect/campaign_table.h"

namespace sekisho {

struct campaign_sync_settings {
    std::string gateway;              // this gateway's name: its recipients' hash field
    // The recipients hash field; empty: `<gateway>/<boot id>` (a new one per
    // process). A replay names a fixed one, so replaying the same capture
    // again sets the same field to the same count instead of adding a field.
    std::string recipients_field;
    std::string redis_address;        // unix:/PATH or HOST:PORT
    std::string redis_password_file;  // empty: no AUTH
    std::string redis_tls_ca_file;    // empty: no TLS (redis_connection.h)
    uint64_t sync_interval_ns = 200'000'000;
    uint32_t max_hot = 4096;          // fleet-hot fingerprints read back per interval
};

// One fingerprint's bits of one window.
struct campaign_bits {
    uint64_t fingerprint = 0;
    uint32_t window = 0;              // index modulo 2^24 (campaign_table::window_index)
    campaign_table::subscriber_bits bits{};
    uint32_t recipients = 0;          // this gateway's, exact (snapshots; 0 in what comes back)
};

// The fleet's figures of one fingerprint in the current window, as last read
// from Redis: for the campaign view (control_api's GET /v1/campaigns).
struct campaign_fleet_figure {
    uint64_t fingerprint = 0;
    uint32_t window = 0;
    campaign_table::subscriber_bits bits{};   // the fleet's bitmap (every gateway's ORed)
    uint64_t recipients = 0;                  // every gateway process's recipients, summed
    // The bits this gateway's table got from the fleet alone (absent from its
    // table when merged): the table's bits without them are this gateway's own
    // subscribers (a lower bound: a local subscriber whose bit the fleet had
    // brought first is not told apart).
    campaign_table::subscriber_bits merged{};
};

// Counters, for metrics and status (monotonic unless said).
struct campaign_sync_counters {
    bool link_up = false;                 // gauge
    uint64_t link_downs = 0;              // connection lost or refused
    uint64_t syncs = 0;                   // intervals whose bits were exchanged with Redis
    uint64_t fingerprints_sent = 0;       // fingerprints with new bits sent
    uint64_t bits_sent = 0;
    uint64_t fingerprints_fetched = 0;    // fleet bitmaps read back
    uint64_t merges = 0;                  // cells that gained fleet bits
    uint64_t merge_overflows = 0;         // fleet bits dropped: the local table was full
    uint64_t hot_truncated = 0;           // intervals whose hot set exceeded max_hot
    uint64_t superseded = 0;              // snapshots or fetched bits replaced before taken
    uint64_t recipients_sent = 0;         // HSETs of a changed recipients count
    uint64_t bad_fields = 0;              // recipients hash fields that are not a count (ignored)
    double last_sync_seconds = 0;         // Unix time of the last completed sync or PING (0: none yet)
    std::string last_error;               // the last Redis error (never a credential)
};

// Key names (shared by every gateway): the window length in seconds, or in
// milliseconds when not whole seconds, then the window index.
std::string campaign_key_prefix(uint64_t window_ns, uint32_t window);
// A fingerprint as keys, events (content_verdict) and the campaign view spell it: 16 hex digits.
std::string fingerprint_hex(uint64_t fingerprint);
std::string campaign_key(uint64_t window_ns, uint32_t window, uint64_t fingerprint);
// A Redis string of the bitmap (bit i at Redis bit offset i) and back; a
// shorter string is zero-padded, a longer one's extra bits ignored.
std::string bits_to_redis(const campaign_table::subscriber_bits& bits);
campaign_table::subscriber_bits bits_from_redis(const char* data, size_t len);

class campaign_sync {
public:
    using log_fn = std::function<void(const std::string&)>;
    // Starts the thread (it connects in the background).
    campaign_sync(campaign_sync_settings settings, campaign_table& table, log_fn log);
    ~campaign_sync();
    campaign_sync(const campaign_sync&) = delete;
    campaign_sync& operator=(const campaign_sync&) = delete;

    // Every control-thread turn: merges what came back, and once per
    // sync_interval hands the current window's cells to the thread.
    // window_ns = 0 (the policy counts no campaign subscribers): nothing is
    // sent, the link is only kept and watched (PING). Never blocks beyond
    // short mutex holds.
    void poll(uint64_t now_ns, uint64_t window_ns);

    // Replay (sekishod --replay --fleet): one sync of the window of `now_ns`,
    // waited for up to `timeout` on the calling thread: sends the table's
    // bits of that window, then merges the fleet's. False when no sync
    // completed in time (Redis unreachable): the table keeps its local counts.
    // Never called in live mode, where the control thread must not wait.
    bool flush(uint64_t now_ns, uint64_t window_ns, std::chrono::milliseconds timeout);

    campaign_sync_counters counters() const;
    nlohmann::json status() const;
    // The fleet's figures of the fingerprints read back in the window being
    // sent (at most the table's fingerprint capacity plus max_hot; emptied
    // when the window turns). Any thread; a copy under a short mutex hold.
    std::vector<campaign_fleet_figure> fleet_figures() const;

private:
    struct snapshot {
        uint64_t window_ns = 0;
        uint32_t window = 0;
        std::vector<campaign_bits> cells;
    };
    void run();
    void merge_inbox();                    // control thread: what came back, and the log lines
    void note(const std::string& line);   // a log line for the control thread to write

    campaign_sync_settings settings_;
    campaign_table& table_;
    log_fn log_;
    uint64_t last_scan_ns_ = 0;   // control thread

    mutable std::mutex mu_;
    std::condition_variable wake_;
    bool stop_ = false;
    std::optional<snapshot> outbox_;        // control -> thread (one, the newest)
    std::vector<campaign_bits> inbox_;      // thread -> control (bounded by max_hot + one snapshot)
    campaign_sync_counters counters_;
    std::vector<std::string> log_lines_;    // thread -> control (bounded: 64)
    // thread -> any reader: the window's fleet figures, by fingerprint
    std::unordered_map<uint64_t, campaign_fleet_figure> figures_;

    std::thread thread_;
};

}  // namespace sekisho
