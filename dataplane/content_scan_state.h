// One worker's Hyperscan working set for one compiled rule set: a scratch
// fitting every database and one open stream per database. Built by the
// policy compiler (control thread) for each worker and owned by the policy
// snapshot, so a new generation never touches a scratch a worker is using.
// Flows keep their body stream compressed in their own bounded memory; the
// worker's body stream holds one message's stream open (body_owner) from one
// segment to its next, and compresses it into that message's record only when
// another message needs the stream (content_inspector.cpp).
#pragma once

#include <hs/hs.h>

#include <memory>
#include <vector>

#include "content_rules.h"

namespace sekisho {

struct hs_stream_closer {
    void operator()(hs_stream_t* s) const { hs_close_stream(s, nullptr, nullptr, nullptr); }
};
using hs_stream_ptr = std::unique_ptr<hs_stream_t, hs_stream_closer>;

struct content_scan_state {
    hs_scratch_ptr scratch;
    hs_stream_ptr streams[content_db_count];   // nullptr where the class has no rules
    std::vector<hs_stream_ptr> header_streams; // one per header:NAME database
    // The message whose body stream is open in streams[body] (content_inspector's record and
    // that message's id, which tells a record since reused for another message): nullptr, none.
    void* body_owner = nullptr;
    uint64_t body_owner_id = 0;

    // Throws std::runtime_error when Hyperscan cannot allocate.
    static content_scan_state make(const content_rule_set& rules);
};

}  // namespace sekisho
