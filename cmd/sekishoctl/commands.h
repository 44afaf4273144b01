// sekishoctl's commands: each one request to the control API (events tail
// -f: one a second) and its answer printed, as a human table
// (human_output.h) or, with --json, as it came.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cmd/sekishoctl/api_client.h"

namespace sekisho::ctl {

// A command line sekishoctl cannot run: exit 2 with the usage.
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// One command as given: its words ("policy", "apply", "FILE") and its flags
// in order ("--dry-run" -> "", "-n" -> "20").
struct command_request {
    std::vector<std::string> words;   // at least one
    std::vector<std::pair<std::string, std::string>> flags;
    bool as_json = false;
};

// Runs `request` against the daemon; returns the exit code: 0 ok, 1 the
// daemon failed, 3 not found, 4 rejected, 5 unauthorised (exit_code_for).
// Throws usage_error for words or flags the command does not take,
// std::runtime_error when the daemon cannot be reached.
int run_command(const api_client& client, const command_request& request);

// A file's whole text; throws usage_error "cannot read PATH".
std::string read_text_file(const std::string& path);

}  // namespace sekisho::ctl
