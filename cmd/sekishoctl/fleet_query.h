// sekishoctl --fleet CONNINFO_FILE: the abuse desk's questions asked of the
// fleet's PostgreSQL directly (the events every gateway shipped there:
// control/fleet/event_shipper.h), with the desk's read-only role, instead of
// one gateway's control API.
//
// CONNINFO_FILE is a credential file (a libpq connection string with the
// desk role's user and TLS settings): refused when others may read or write
// it, never printed. Exit codes as sekishoctl's: 0 ok, 1 the database could
// not be reached or refused the query, 2 usage.
#pragma once

#include <string>

#include "cmd/sekishoctl/commands.h"

namespace sekisho::ctl {

// Runs `request` (events [--type T] [--address A] [--account ACCOUNT]
// [--gateway G] [--since TIME] [--until TIME] [-n N]) against the fleet's
// PostgreSQL. Throws usage_error for what it does not take.
int run_fleet_events(const std::string& conninfo_file, const command_request& request);

}  // namespace sekisho::ctl
