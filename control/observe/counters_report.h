// Aggregates the per-worker counters (lock-free reads) into one report:
// summary.json in replay, --summary in live mode, the control API's status, and
// the human summary line. The counter blocks' keys come from counter_names.h.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/worker_counters.h"

namespace sekisho {

class event_log;

// Sums all counter blocks: the workers' and, last, the control thread's
// (data_plane::all_counters). Keys are documented in docs/replay.md and, with
// their metric names, in docs/metrics.md.
nlohmann::json counters_json(const std::vector<const worker_counters*>& workers);

// Adds the event log's counters to report["events"] (beside counters_json's
// emitted and ring_full): written, write_errors, lines, io_errors,
// aggregated, aggregation_overflow, rotations, reopened, pending. The same
// keys in replay and in live mode on either backend (docs/replay.md).
void add_event_log_counters(nlohmann::json& report, const event_log& log);

// Writes `report` as indented JSON and a newline to `path` (replay's
// summary.json, live mode's --summary). Throws std::runtime_error
// "cannot write PATH".
void write_report(const nlohmann::json& report, const std::string& path);

// A few lines for an operator's terminal.
std::string human_summary(const nlohmann::json& report);

// The sum over `blocks` of the counter `counter_of(block)` picks in each block
// (relaxed loads: exact once the writers have stopped, never torn meanwhile).
template <typename CounterOf>
uint64_t sum_over(const std::vector<const worker_counters*>& blocks, CounterOf counter_of) {
    uint64_t total = 0;
    for (const worker_counters* b : blocks) total += counter_of(*b).load();
    return total;
}

}  // namespace sekisho
