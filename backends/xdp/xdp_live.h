// Live mode on the XDP backend: sekishod --backend xdp --access-if IF
// [--core-if IF] [--xdp-mode native|generic] [--xdp-keep-attached]
// [--xdp-pin-dir DIR].
//
// The kernel forwards (the host routes between the interfaces); the XDP
// program on the access interface judges what subscribers send (OP25B, SYN
// rate limits) and the one on the core interface counts. Same policy file,
// same event log, same Prometheus metric names, same control loop
// (serve_loop.h) as the DPDK backend; SIGHUP applies the policy file again as
// a new generation; SIGINT/SIGTERM detach.
//
// Restart without a gap: with --xdp-keep-attached the maps are pinned in the
// pin directory (default /sys/fs/bpf/sekisho/ACCESS_IF, on a BPF file system)
// and SIGINT/SIGTERM leave the program attached and enforcing the policy in
// force. The next start (with or without the flag) finds the pins, re-uses
// the maps (counters, SYN buckets and the events of the gap continue),
// applies its policy into them and replaces the attached program atomically
// (xdp_backend.h). A stop without the flag detaches and removes the pins.
#pragma once

#include "backends/live_options.h"

namespace sekisho {

// Returns the exit code when stopped by SIGINT/SIGTERM. Throws
// std::invalid_argument for options that do not apply to XDP (before
// anything is read), policy_error for a bad policy and std::runtime_error for
// anything else that stops the start.
int run_xdp_live(const live_options& options);

}  // namespace sekisho
