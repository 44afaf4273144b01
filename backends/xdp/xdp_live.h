// Live mode on the XDP backend: sekishod --backend xdp --access-if IF
// [--core-if IF] [--xdp-mode native|generic].
//
// The kernel forwards (the host routes between the interfaces); the XDP
// program on the access interface judges what subscribers send (OP25B, SYN
// rate limits) and the one on the core interface counts. Same policy file,
// same event log, same Prometheus metric names as the DPDK backend; SIGHUP
// applies the policy file again as a new generation; SIGINT/SIGTERM detach.
#pragma once

#include "backends/dpdk/dpdk_live.h"

namespace sekisho {

int run_xdp_live(const live_options& options);

}  // namespace sekisho
