// The abuse desk's questions over the event log (docs/api.md: events, top,
// report, whois' events): pure functions of the log files, run by the
// query_worker, never on the control thread.
//
// Each reads the current file and its last rotation (FILE.1, then FILE), at
// most the last 64 MiB of each, one line at a time. Memory is bounded by
// what the answer keeps: events keeps at most `n` lines (as text); top and
// report keep one row per source address seen in the period.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "control/api/api_server.h"
#include "control/policy/policy.h"

namespace sekisho {

// Calls f(line, event) for each line of the log that is a JSON object,
// oldest first (a line cut by a crash is skipped).
void for_each_event(const std::string& path, const std::function<void(const std::string&, const nlohmann::json&)>& f);

struct events_query {
    uint64_t n = 50;                  // newest n matching, answered oldest first
    uint64_t since_ns = 0;            // time_ns > since_ns
    std::string type, subscriber, account;   // empty: any
};
// {"events": [...]}
nlohmann::json query_events(const std::string& path, const events_query& q);

// Attribution (docs/api.md): every event, count and row below belongs to
// the account that held its address at the event's own time: the binding
// history (`history_path`, opened read-only on the calling thread; "" when
// there is none), else the account the event itself carries (mail events:
// the data plane's binding then), else nobody (null). An event from before
// a session began is never its account's.

// {"window": ..., "by": ..., "top": [{subscriber, account, count}]} (20 rows;
// one per address and holder).
nlohmann::json query_top(const std::string& path, const std::string& history_path, int64_t since,
                         const std::string& by, const std::string& window_text);

// Offending sources in [since, until] as JSON or CSV (docs/api.md): one row
// per address and holder, times as Unix seconds and RFC 3339.
api_response query_report(const std::string& path, const std::string& history_path, int64_t since, int64_t until,
                          bool csv);

// Who held `address` at `at` and its events within an hour of it:
// {"query", "bindings" (history rows at `at`), "held_by" (their accounts;
// else `bound_now`, given only when `at` is now), "bound_now",
// "smtp_within_1h" and "events_within_1h" (counted for the holders at `at`,
// or for nobody when nobody held it), "events" (at most 200, each with its
// own "held_by")}. `path` "-": no event log (empty counts).
nlohmann::json query_whois(const std::string& path, const std::string& history_path, const ip_prefix& address,
                           int64_t at, const std::optional<std::string>& bound_now);

}  // namespace sekisho
