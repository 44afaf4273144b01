// The workers' Hyperscan working sets: for one compiled rule set, one per
// worker (content_scan_state: a scratch fitting every database and one open
// stream per database), gathered per policy generation (content_scan_states).
//
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

// One worker's working set for one rule set: a scratch fitting every database and one open
// stream per database (the body's in body_slots). Used by that worker only.
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

// Every worker's working set for one policy generation's rules: the per-generation companion of
// compiled_policy. The snapshot owns it, but it is not part of the snapshot's immutable contract.
//
// Per generation: a scratch must fit the databases it scans with and a stream belongs to the
// database it was opened on, so each generation's rule set needs working sets of its own; and
// making them (hs_alloc_scratch, hs_open_stream) allocates, which the data path must not. So the
// policy compiler builds them with the generation, on the control thread, before it is published,
// and a worker that adopts the generation finds its working set, made for that generation's
// databases, in the snapshot it reads.
// Owned by the snapshot: a policy swap must never free or touch a working set a worker may still
// be scanning with. The old snapshot, and with it its working sets, is freed only after the RCU
// grace period (policy_store::publish), when no worker can still be reading that generation; no
// other thread ever touches them.
// Threading: unlike the rest of the snapshot, a working set is written on the data path (Hyperscan
// writes its scratch and streams, the worker its body slots): worker w uses for_worker(w) only.
// Bounds: one content_scan_state per worker the generation was compiled for (~2 KB of streams for
// a 76-rule set, plus the scratch).
class content_scan_states {
public:
    // One working set per worker, for `rules` (not null). Control thread, before publication.
    // Throws std::runtime_error when Hyperscan cannot allocate.
    content_scan_states(std::shared_ptr<const content_rule_set> rules, unsigned workers);
    content_scan_states(const content_scan_states&) = delete;
    content_scan_states& operator=(const content_scan_states&) = delete;

    // Worker `worker`'s working set: nullptr for a worker this generation was not built for.
    content_scan_state* for_worker(unsigned worker) {
        return worker < states_.size() ? &states_[worker] : nullptr;
    }
    unsigned workers() const { return static_cast<unsigned>(states_.size()); }
    const content_rule_set& rules() const { return *rules_; }

private:
    // Declared first, destroyed last: the databases outlive the streams opened on them.
    std::shared_ptr<const content_rule_set> rules_;
    std::vector<content_scan_state> states_;
};

}  // namespace sekisho
