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
// Exact and local: recipients, per-subscriber recipients and this gateway's
// own subscribers (the workers count them as before, the fleet adds bits,
// never removes one). Eventually consistent: the fleet's subscribers, within
// one to two sync_intervals (the sender's push, then the reader's pull).
// Recipients are not shared: no threshold counts them fleet-wide.
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
#include <vector>

#include "dataplane/inspect/campaign_table.h"

namespace sekisho {

struct campaign_sync_settings {
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
    double last_sync_seconds = 0;         // Unix time of the last completed sync or PING (0: none yet)
    std::string last_error;               // the last Redis error (never a credential)
};

// Key names (shared by every gateway): the window length in seconds, or in
// milliseconds when not whole seconds, then the window index.
std::string campaign_key_prefix(uint64_t window_ns, uint32_t window);
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

    std::thread thread_;
};

}  // namespace sekisho
