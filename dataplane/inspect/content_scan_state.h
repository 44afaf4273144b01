// One worker's Hyperscan working set for one compiled rule set: a scratch
// fitting every database and one open stream per database. Built by the
// policy compiler (control thread) for each worker and owned by the policy
// snapshot, so a new generation never touches a scratch a worker is using.
// Flows keep their body stream in their own bounded memory (its bytes, or
// compressed); the worker keeps the body streams of the content_open_bodies
// messages it served last open (body_slots), so that a message's next segment
// is scanned at once, and puts one away into its message's record only when
// another message needs the stream (the least recently used:
// content_inspector.cpp).
#pragma once

#include <hs/hs.h>

#include <memory>
#include <vector>

#include "dataplane/inspect/content_rules.h"

namespace sekisho {

struct hs_stream_closer {
    void operator()(hs_stream_t* s) const { hs_close_stream(s, nullptr, nullptr, nullptr); }
};
using hs_stream_ptr = std::unique_ptr<hs_stream_t, hs_stream_closer>;

// Body streams a worker keeps open: as many messages as are inspected at once on a worker whose
// sessions' segments interleave. 16 streams of a 76-rule set take ~2 KB.
constexpr unsigned content_open_bodies = 16;

struct content_scan_state {
    hs_scratch_ptr scratch;
    hs_stream_ptr streams[content_db_count];   // nullptr where the class has no rules; streams[body] unused
    std::vector<hs_stream_ptr> header_streams; // one per header:NAME database
    // One open body stream and the message it holds: content_inspector's record and that
    // message's id, which tells a record since reused for another message (owner nullptr: free).
    struct body_slot {
        hs_stream_ptr stream;                  // nullptr when the rule set has no body rules
        void* owner = nullptr;
        uint64_t owner_id = 0;
        uint64_t last_used = 0;                // body_clock when it last served; 0: free
        void release() {
            owner = nullptr;
            last_used = 0;
        }
    };
    body_slot body_slots[content_open_bodies];
    uint64_t body_clock = 0;
    // > 0: a body stream's state is one flat block of this many bytes (as hs_copy_stream copies
    // it, checked when made), so a message's stream is put away in its record and brought back by
    // copying those bytes, instead of hs_compress_stream / hs_reset_and_expand_stream (~200 ns a
    // segment when every segment evicts one: ~15% of the busy worker's inspected path).
    // 0: compressed (another Hyperscan whose streams are not flat; no body rules).
    size_t body_flat_bytes = 0;

    // Throws std::runtime_error when Hyperscan cannot allocate.
    static content_scan_state make(const content_rule_set& rules);
};

}  // namespace sekisho
