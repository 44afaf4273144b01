// sekishod's live mode as its command line gives it: the control plane's own
// flags (serve_options: policy, events, summary, metrics, API) and which
// backend forwards, on what. run_dpdk_live() (dpdk_live.h) and
// run_xdp_live() (xdp_live.h) each refuse what does not apply to them.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "control/serve_loop.h"

namespace sekisho {

struct live_options : serve_options {
    std::string backend = "dpdk";          // dpdk | xdp
    std::string xdp_mode = "native";       // xdp: native | generic
    // xdp: where the maps are pinned (empty: /sys/fs/bpf/sekisho/ACCESS_IF),
    // and whether a stop leaves the program attached for the next start.
    std::string xdp_pin_dir;
    bool xdp_keep_attached = false;
    std::string access_if, core_if;        // Linux interfaces (dpdk: through if_driver)
    std::string if_driver = "af_packet";   // dpdk: af_packet | af_xdp
    std::optional<unsigned> access_port, core_port;  // dpdk: or DPDK port ids
    unsigned workers = 1;                  // dpdk: worker lcores
    std::vector<std::string> eal_args;     // dpdk: replaces the default EAL arguments
};

}  // namespace sekisho
