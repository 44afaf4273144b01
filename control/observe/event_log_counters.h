// What the event log did, as plain integers the control thread owns (the log
// counts, the control thread copies them into its snapshots). Their published
// names are in counter_names.h (event_log_counter_names).
#pragma once

#include <cstdint>

namespace sekisho {

// Everything the log did, for summary.json, the API and metrics. Every event
// taken off a ring ends up in exactly one of written, write_errors and
// pending: received = written + write_errors + pending.
struct event_log_counters {
    uint64_t received = 0;              // events taken off the rings
    uint64_t written = 0;               // events stored (the sum of the written lines' counts)
    uint64_t lines = 0;                 // lines written
    uint64_t write_errors = 0;          // events lost: their line could not be written
    uint64_t io_errors = 0;             // failed write, fsync, rename or open calls
    uint64_t aggregated = 0;            // repeats merged into a `repeated` line (the first of a key is written alone)
    uint64_t aggregation_overflow = 0;  // lines closed before their window ended (too many keys)
    uint64_t rotations = 0;
    uint64_t reopened = 0;              // the path no longer named the open file: opened again
    uint64_t pending = 0;               // repeats waiting in an open aggregation window
};

}  // namespace sekisho
