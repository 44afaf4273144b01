// sekishod --check-policy FILE: the policy validated and the files it names
// checked as the daemon will use them (policy_files.h); the systemd unit runs
// it before every start.
#pragma once

#include <string>

namespace sekisho {

// Prints one line saying what the policy holds (and one for the fleet file
// when `fleet_path` is not empty) and returns 0. Throws policy_error with
// every problem as file:line: message, fleet_config_error for the fleet file.
int run_check_policy(const std::string& path, const std::string& fleet_path = "");

}  // namespace sekisho
