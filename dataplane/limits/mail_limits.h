// Send-rate limits as the workers evaluate them: the compiled form of the
// policy's `limits` list, and where their state lives.
//
// State ownership (exact across workers, no locks):
//  - address and prefix scopes: a record per subscriber key in the worker's
//    own table. All packets of one subscriber reach one worker (RSS on the
//    subscriber-side address, IPv6 by prefix; replay dispatches the same
//    way), so one worker owns the record.
//  - account scope: one account may hold several addresses that land on
//    different workers, so its cells live in a shared array indexed by
//    account id and are updated by compare-and-swap (limit_cell.h).
#pragma once

#include <cstdint>

#include "dataplane/limits/limit_cell.h"

namespace sekisho {

enum class limit_measure : uint8_t {
    connections,             // new SMTP connections (SYN): rate with burst (GCRA)
    messages,                // per window; a message counts at MAIL FROM
    recipients,              // RCPT TO per window
    recipients_per_message,  // RCPT TO within one message
    rejected_recipients,     // 5xx replies to RCPT TO per window
};
enum class limit_scope : uint8_t { address, prefix, account };
enum class limit_action : uint8_t { drop_syn, reset, tempfail, monitor };
const char* to_string(limit_measure m);
const char* to_string(limit_scope s);
const char* to_string(limit_action a);

constexpr unsigned max_limits = 16;
constexpr unsigned max_subscriber_limit_slots = 8;  // address + prefix scope limits
constexpr unsigned max_account_limit_slots = 4;      // account scope limits
constexpr unsigned max_account_groups = 32;

// Which subscribers a limit applies to.
enum class limit_target : uint8_t { any, dynamic, static_, group };

struct compiled_limit {
    char name[32] = {};
    limit_measure measure = limit_measure::messages;
    limit_scope scope = limit_scope::address;
    limit_action action = limit_action::tempfail;
    limit_target target = limit_target::any;
    uint8_t group = 0;        // group index when target == group
    uint8_t slot = 0;         // cell index in the subscriber or account record
    uint32_t max = 0;
    uint64_t window_ns = 0;
    uint64_t gcra_interval_ns = 0, gcra_tolerance_ns = 0;   // connections
    uint64_t cooldown_ns = 0;
};

// Shared, one per account id (0 = unbound, never used).
struct alignas(64) account_record {
    uint32_t groups = 0;      // bit per account group (control plane writes)
    uint32_t suspended = 0;   // 利用停止: nonzero refuses every SMTP connection (control API)
    limit_cell cells[max_account_limit_slots];
    // Fleet mode: per cell, what the account's other gateways counted in the
    // same window (fleet_share_word in limit_cell.h; 0 without a fleet). The
    // control thread writes it, the workers add it to their own count.
    uint64_t fleet_share[max_account_limit_slots] = {};
};
// Two cache lines, with or without the fleet's shares.
static_assert(sizeof(account_record) == 128);

// A limits reset of one account cell (control thread): its count and
// cool-down, and the other gateways' share stored for it, so that the
// workers judge the account from 0 at once (the fleet's own copy of the
// counts is account_limit_sync's to delete).
inline void reset_account_cell(account_record& r, unsigned slot) {
    clear_cell(r.cells[slot]);
    store_fleet_share(r.fleet_share[slot], 0, 0);
}

}  // namespace sekisho
