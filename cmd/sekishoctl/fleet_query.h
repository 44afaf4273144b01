// sekishoctl --fleet CONNINFO_FILE: the abuse desk's questions asked of the
// fleet's PostgreSQL directly (the events and binding histories every
// gateway shipped there: control/fleet/event_shipper.h, binding_shipper.h), with the desk's read-only role, instead of
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

// Runs `request` against the fleet's PostgreSQL:
//   events [--type T] [--address A] [--account ACCOUNT] [--gateway G]
//          [--since TIME] [--until TIME] [-n N]
//   whois ADDRESS[/LEN] [--at TIME]      every gateway's bindings of ADDRESS
//          at TIME (the `bindings` table, control/fleet/binding_shipper.h);
//          exit 3 when no account held it
//   report [--since TIME] [--until TIME] [--format csv|json]   the
//          offending addresses and accounts, each event attributed to the
//          account that held its address on its gateway at its own time
//   top [--window 1h] [--until TIME] [--by WHAT]   the local top's ranking
//          over every gateway's events of [TIME - WINDOW, TIME]: one row per
//          account, summed over the gateways and addresses it used
// whois, report and top take --bindings-source radacct [--radacct-table T]:
// who held what from the ISP's FreeRADIUS accounting table (its PostgreSQL
// schema) in the fleet's database instead of the gateways' `bindings`.
// Throws usage_error for what it does not take.
int run_fleet_events(const std::string& conninfo_file, const command_request& request);

}  // namespace sekisho::ctl
