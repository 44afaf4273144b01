// Live mode on the DPDK backend: sekishod between an access port and a core
// port, one worker lcore per RX/TX queue pair, the control plane on the main
// lcore (serve_loop.h).
//
//   sekishod --policy FILE (--access-if IF --core-if IF [--if-driver D] |
//            [--access-port ID --core-port ID]) [--workers N] [-- EAL-ARGS...]
//
// --access-if/--core-if drive Linux interfaces through net_af_packet (one
// queue pair per worker) or net_af_xdp; otherwise the EAL arguments create
// the ports and --access-port/--core-port pick them (default 0 and 1).
#pragma once

#include "backends/live_options.h"

namespace sekisho {

// Returns the exit code when stopped by SIGINT/SIGTERM. Throws policy_error
// for a bad policy and std::runtime_error for anything else that stops the
// start (options, EAL, ports, resources).
int run_dpdk_live(const live_options& options);

}  // namespace sekisho
