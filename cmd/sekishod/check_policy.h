// sekishod --check-policy FILE: the policy validated and the files it names
// checked as the daemon will use them (policy_files.h); the systemd unit runs
// it before every start.
#pragma once

#include <string>

namespace sekisho {

// Prints one line saying what the policy holds and returns 0. Throws
// policy_error with every problem as file:line: message.
int run_check_policy(const std::string& path);

}  // namespace sekisho
