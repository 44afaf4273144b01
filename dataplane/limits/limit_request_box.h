// The control thread's way into a worker's subscriber limit records (the
// support desk's `limits show` and `limits reset`): one mailbox per worker
// holding one request and its answer.
//
// Why a mailbox and not a read from the control thread: address and prefix
// scope records live in the worker's own bounded_table (mail_limits.h), an
// rte_hash with a single owner: no other thread may look a key up while the
// worker inserts, sweeps or erases, and a record may be recycled under a
// reader. The worker itself therefore looks the record up, copies it and, for
// a reset, clears the cells, between two bursts: it is the only writer of
// those cells, so a reset never races a count. (Account scope cells are
// shared and CAS-updated; the control thread reads and clears them itself,
// limit_cell.h.)
//
// Hot-path cost: the worker polls its mailbox once per loop turn (not per
// packet): one acquire load of a counter on a cache line only the control
// thread writes, which stays shared in the worker's cache until a request is
// posted. Nothing is allocated, locked or waited for; a worker busy with a
// burst answers after it, a few microseconds later.
//
// Protocol: the control thread posts when the box is idle (answered) and
// reads the answer once answered() holds; the worker serves a pending
// request and marks it answered. `posted_` and `served_` only grow; acquire
// and release order the request and answer bytes around them.
#pragma once

#include <atomic>
#include <cstdint>

#include "dataplane/limits/limit_cell.h"
#include "dataplane/limits/mail_limits.h"
#include "dataplane/limits/subscriber_table.h"

namespace sekisho {

// Cells of one subscriber record: address/prefix scope slots, then the
// account scope slots an unbound subscriber keeps in its prefix record.
constexpr unsigned subscriber_record_cells = max_subscriber_limit_slots + max_account_limit_slots;

struct limit_record_request {
    subscriber_key address;   // the /32 or /128 record (address scope)
    subscriber_key prefix;    // the subscriber prefix record (prefix scope, unbound account scope)
    uint32_t reset_address_cells = 0;   // bit i: clear cell i of the address record, after copying it
    uint32_t reset_prefix_cells = 0;    // bit i: clear cell i of the prefix record, after copying it
};

struct limit_record_copy {
    bool found = false;   // the worker holds a record for the key
    limit_cell cells[subscriber_record_cells] = {};
};

// The records as they were before any reset the request asked for.
struct limit_record_answer {
    limit_record_copy address, prefix;
};

class limit_request_box {
public:
    // Control thread.
    bool idle() const { return served_.load(std::memory_order_acquire) == posted_.load(std::memory_order_relaxed); }
    // Only when idle(): a second post before the answer would overwrite the request being served.
    void post(const limit_record_request& r) {
        request_ = r;
        answer_ = limit_record_answer{};
        posted_.store(posted_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }
    bool answered() const { return idle(); }
    const limit_record_answer& answer() const { return answer_; }

    // Worker: once per loop turn.
    bool pending() const { return posted_.load(std::memory_order_acquire) != served_.load(std::memory_order_relaxed); }
    const limit_record_request& request() const { return request_; }
    limit_record_answer& answer_to_fill() { return answer_; }
    void mark_answered() { served_.store(posted_.load(std::memory_order_relaxed), std::memory_order_release); }

private:
    alignas(64) std::atomic<uint32_t> posted_{0};   // written by the control thread
    alignas(64) std::atomic<uint32_t> served_{0};   // written by the worker
    limit_record_request request_;
    limit_record_answer answer_;
};

}  // namespace sekisho
