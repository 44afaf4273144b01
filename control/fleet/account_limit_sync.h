// Account-scope limits across the fleet through Redis: an account whose
// lines sit behind several gateways is held to its limit over all of them,
// not to the limit on each.
//
// Which limits: those of account scope that count per window (messages,
// recipients, rejected_recipients). Windows are aligned to the epoch, so
// every gateway has the same window index for the same length. Connection
// rates (GCRA, measure connections) stay per gateway: a rate has no window
// to add up. A limit is the same limit on two gateways when its name and its
// window length are; each gateway applies its own max.
//
// What goes where, every sync_interval:
// - The control thread (poll) reads the current window's count of every
//   known account in each such limit's cell (window_count) and hands the
//   non-zero ones to this concern's thread as one snapshot; an unsent
//   snapshot is replaced by the newer one (it holds everything the older one
//   did: bounded to one, counted as superseded).
// - The thread writes each count with HSET into the hash
//   `sekisho:acct:<window length>:<window index>:<limit name>:a:<account name>`,
//   field `<gateway>/<boot id>` (EXPIRE two windows), pipelined; account
//   NAMES, since local ids differ per gateway. HSET sets, it does not add:
//   a snapshot sent twice, or the whole window sent again after Redis came
//   back, changes nothing. The boot id (random per process) keeps what this
//   gateway counted before a restart (kill -9 included) as a field of its
//   own, so the restarted gateway, whose local counts start from 0, still
//   sees it among the others' share until the window ends.
// - It reads back those hashes (HGETALL) and the hashes of the window's hot
//   set (`...:<limit name>:hot`, at most max_hot members read): an account
//   whose fleet count reaches half its max joins the hot set, so that every
//   gateway brings its share in, even one where the account has not sent
//   yet in this window. The sum of the fields other than this process's own
//   is the account's share of the other gateways.
// - The control thread's next poll() stores each share into the account's
//   record (account_record::fleet_share, tagged with the window index): the
//   workers refuse when their own count plus the share passes the max. A
//   share from an older window counts as 0 at once, without a clear.
// Exact and local: this gateway's own counts (the workers' compare-and-swap,
// as without a fleet). Eventually consistent: the other gateways' counts,
// within one to two sync_intervals (their push, then this gateway's pull);
// an account may exceed its fleet max by what it sends in that time, and
// below half the max an account's share reaches only the gateways it sends
// through.
//
// A `limits reset` of an account (made here, or applied from the fleet by
// operator_sync on every gateway) clears the account's cells and its stored
// shares of the limits reset (limit_desk), then calls account_reset(): the
// hashes of the current window of those limits are deleted (DEL), so that no
// gateway's count from before the reset is read back as a share. Every
// gateway applying the same reset deletes them again: harmless, DEL of a
// missing key is nothing. The order that makes it enough, all on one thread:
// the snapshot not yet taken by the thread is discarded (it may hold counts
// from before the reset); a snapshot the thread is already sending is
// written before the DEL, which removes it; the thread deletes before it
// takes the next snapshot, which poll() takes after the reset; the shares
// read back by an exchange that began before the reset are discarded, not
// stored. A gateway that has not applied the reset yet may write its old
// count again once (it changed, or its HGETALL shows Redis lost its field);
// its own DEL, when the reset reaches it, removes that too. Shares follow
// the hashes: an account whose hash holds no other gateway's count gets a
// share of 0. Redis down at the reset: the local reset holds at once (cells
// and shares cleared); the deletes wait, bounded (max_pending_deletes,
// beyond counted as dropped and logged), and are done first when the link
// is back, before any count is sent.
//
// Redis down, slow or refusing: local limits go on exactly as before; the
// shares already stored stay in force until their window ends (then count
// 0). The link is counted down, the thread reconnects with backoff (100 ms
// doubling to 5 s) and then sends the current window's counts again in full
// (harmless, HSET), so the shares resume within one interval.
//
// Threading: construction, poll(), counters(), status() and destruction on
// the control thread; Redis I/O only on the concern's own thread, which
// blocks SIGPIPE. The account registry outlives this object; only poll()
// touches it (the registry is control-thread only, its records are shared
// with the workers as mail_limits.h says).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "control/fleet/fleet_thread_signals.h"
#include "control/fleet/redis_connection.h"

namespace sekisho {

class account_registry;
class compiled_policy;

struct account_limit_sync_settings {
    std::string gateway;              // this gateway's name (fleet_config)
    redis_endpoint redis;
    uint64_t sync_interval_ns = 200'000'000;
    uint32_t max_hot = 4096;          // hot accounts read back per limit and interval
};

// One account-scope limit counted per window, as the policy compiled it.
struct shared_limit {
    std::string name;
    uint8_t slot = 0;                 // account_record cell
    uint32_t max = 0;
    uint64_t window_ns = 0;
};
// The policy's shared limits, in the policy's order.
std::vector<shared_limit> shared_limits(const compiled_policy& policy);

// The hash holding one account's counts of one limit in one window.
std::string account_limit_key(const std::string& limit, uint64_t window_ns, uint32_t window,
                              const std::string& account);

// Counters, for metrics and status (monotonic unless said).
struct account_limit_sync_counters {
    bool link_up = false;                 // gauge
    uint64_t link_downs = 0;              // connection lost or refused
    uint64_t syncs = 0;                   // intervals whose counts were exchanged with Redis
    uint64_t counts_sent = 0;             // HSETs of a changed count
    uint64_t counts_fetched = 0;          // account hashes read back
    uint64_t shares_applied = 0;          // shares stored into account records
    uint64_t accounts_shared = 0;         // gauge: accounts given a share by the last merge
    uint64_t bad_fields = 0;              // hash fields that are not a count (ignored, logged)
    uint64_t hot_truncated = 0;           // intervals whose hot set exceeded max_hot
    uint64_t superseded = 0;              // snapshots or shares replaced before taken
    uint64_t resets = 0;                  // account resets of shared limits (account_reset)
    uint64_t reset_deletes = 0;           // hashes deleted for them (DEL, whether or not present)
    uint64_t reset_deletes_dropped = 0;   // deletes not done: more than max_pending_deletes waited
    uint64_t reset_deletes_pending = 0;   // gauge: deletes waiting for the link
    double last_sync_seconds = 0;         // Unix time of the last completed sync (0: none yet)
    std::string last_error;               // the last Redis error (never a credential)
};

class account_limit_sync {
public:
    using log_fn = std::function<void(const std::string&)>;
    // Starts the thread (it connects in the background).
    account_limit_sync(account_limit_sync_settings settings, account_registry& accounts, log_fn log);
    ~account_limit_sync();
    account_limit_sync(const account_limit_sync&) = delete;
    account_limit_sync& operator=(const account_limit_sync&) = delete;

    // Every control-thread turn (now_ns: Unix time, the workers' packet
    // clock): stores the shares that came back, and once per sync_interval
    // hands the current windows' counts to the thread (live mode only: a
    // replay counts alone). A policy with no shared limit sends nothing;
    // the link is only watched (PING). A new policy generation clears every
    // account's shares first (its limits may sit in other cells). Never
    // blocks beyond short mutex holds.
    void poll(uint64_t now_ns, const compiled_policy& policy);

    // Control thread, after limit_desk cleared the account's cells and
    // shares of `slots` (a bit per account_record cell) at `now_ns`, under
    // `policy`: the shared limits among them have their current window's
    // hash of the account deleted (the order above). Never blocks beyond a
    // short mutex hold; limits not shared are ignored.
    void account_reset(uint32_t account, uint32_t slots, uint64_t now_ns, const compiled_policy& policy);

    static constexpr size_t max_pending_deletes = 4096;

    account_limit_sync_counters counters() const;
    nlohmann::json status() const;

private:
    struct count {
        uint32_t limit;        // index into snapshot::limits
        std::string account;
        uint32_t value;
    };
    struct snapshot {
        std::vector<shared_limit> limits;
        std::vector<uint32_t> windows;   // per limit: its window index now
        std::vector<count> counts;
        uint64_t resets = 0;             // account resets before it was taken
    };
    struct share {
        std::string limit;
        uint64_t window_ns;
        uint32_t window;
        std::string account;
        uint32_t others;
    };
    class redis_side;   // the thread's state and its exchange (account_limit_sync.cpp)

    void run();
    void store_shares(const compiled_policy& policy);   // control thread: what came back

    account_limit_sync_settings settings_;
    account_registry& accounts_;
    log_fn log_;
    uint64_t last_scan_ns_ = 0;      // control thread
    uint64_t generation_ = 0;        // control thread: the policy the shares were stored under

    fleet_thread_signals signals_{"fleet: account limits: "};
    mutable std::mutex mu_;
    std::optional<snapshot> outbox_;   // control -> thread (one, the newest)
    std::vector<std::string> deletes_; // control -> thread: hashes to delete before the next snapshot
    uint64_t resets_ = 0;              // account resets so far: shares of an older snapshot are stale
    std::vector<share> inbox_;         // thread -> control (one sync's shares)
    account_limit_sync_counters counters_;

    std::thread thread_;
};

}  // namespace sekisho
