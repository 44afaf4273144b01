// The files a policy names, checked as the daemon will use them.
//
// load_policy_text() reads no file: it validates the text alone, and the
// fuzzer feeds it anything. What the policy names is checked here, where it
// will be used: `sekishod --check-policy` (the systemd unit runs it before
// start), at start, and by every apply and reload.
#pragma once

#include "control/policy/policy.h"

namespace sekisho {

// Throws policy_error with every problem as "policy:line: key: message":
//  radius.listen        ADDRESS:PORT as the listener parses it (whether the
//                       address can be bound is known only at start);
//  radius.clients_file  a regular file of at most 1 MiB, read and validated
//                       (its own errors as "clients-file:line: ...");
//  history.database     absent (created at start) in an existing directory,
//                       or a regular SQLite file;
//  events.file          (when `events_file_used`: not replaced by --events,
//                       not "-") absent in an existing directory, or a
//                       regular file that is empty or starts with a JSON
//                       object line (an event log).
void check_policy_files(const policy& pol, bool events_file_used = true);

}  // namespace sekisho
