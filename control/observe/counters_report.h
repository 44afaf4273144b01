// Aggregates the per-worker counters (lock-free reads) into one report:
// summary.json in replay, --summary in live mode, and the human summary line.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "dataplane/worker_counters.h"

namespace sekisho {

// Sums all counter blocks: the workers' and, last, the control thread's
// (data_plane::all_counters). Keys are documented in docs/replay.md.
nlohmann::json counters_json(const std::vector<const worker_counters*>& workers);

// A few lines for an operator's terminal.
std::string human_summary(const nlohmann::json& report);

}  // namespace sekisho
