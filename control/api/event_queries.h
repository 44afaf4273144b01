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
#include "control/observe/event_log_follow.h"
#include "control/policy/policy.h"

namespace sekisho {

// Calls f(line, event) for each line of the log that is a JSON object,
// oldest first (a line cut by a crash is skipped).
void for_each_event(const std::string& path, const std::function<void(const std::string&, const nlohmann::json&)>& f);

// event_position: control/observe/event_log_follow.h (the reader events and
// the fleet's event shipper share).

struct events_query {
    uint64_t n = 50;                  // without `after`: the newest n matching, answered oldest first
    uint64_t since_ns = 0;            // time_ns > since_ns
    std::string type, subscriber, account;   // empty: any
    // With `subscriber`: a prefix shorter than a host matches every address in it.
    std::optional<ip_prefix> subscriber_prefix;
    // The lines written after this position, oldest first, at most n (the
    // position answered is after the last line read, so the next call goes
    // on from there). The log rotated since (FILE.1 is that file): the rest
    // of FILE.1, then FILE from its start. Neither file is it (rotated
    // twice, deleted): FILE from its start, and "gap": true.
    std::optional<event_position> after;
};
// {"events": [...], "position": "INODE:OFFSET:CHECK" (the end of what was read; the
// `after` of the next call), "gap": bool}. A line still being written (no
// newline yet) is left for the next call.
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
