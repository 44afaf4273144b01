// sekishoctl fleet: the fleet's policy versions and status, read from and
// written to the fleet's PostgreSQL (docs/fleet.md, "Policy versions and
// fleet status"), not through a daemon's API.
//
//   fleet status [--stale 10s]                      every gateway that ever reported
//   fleet policy push FILE --group G [--author A]   a new version desired for G
//   fleet rollout FILE --canary G --then G2 [--watch 30s] [--timeout 60s]
//                 [--max-increase 10] [--max-blocked-increase N]
//
// The connection string comes from the credential file `--fleet FILE`
// (refused when readable by others); its role decides what may be done:
// the desk role reads (status), the controller role pushes (it also creates
// and owns the policy tables). Nothing is validated here: each gateway
// validates a version against its own running policy and files and reports
// a refusal in last_error; `sekishod --check-policy FILE` checks a file
// first, and a rollout's canary is the check that counts.
//
// Exit codes: 0 ok, 1 the store failed or could not be reached, 2 usage,
// 4 a rollout halted (the reason printed; the rest keep their version).
#pragma once

#include <chrono>
#include <string>

#include "cmd/sekishoctl/commands.h"

namespace sekisho::ctl {

// Runs `request` (words[0] "fleet", or "events", "whois", "report", "top": fleet_query.h) against the
// fleet's PostgreSQL reached with the connection string in `conninfo_file`
// (--fleet); returns the exit code. Throws usage_error for words or flags the
// command does not take.
int run_fleet_command(const std::string& conninfo_file, const command_request& request);

// A duration option's value: "30s", "500ms", "2m", "1h" or plain seconds.
// Throws usage_error naming `flag` and the text.
std::chrono::milliseconds parse_duration(const std::string& flag, const std::string& text);

}  // namespace sekisho::ctl
