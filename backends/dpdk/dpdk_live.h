// Live mode: sekishod between an access port and a core port.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "control/api/api_server.h"

namespace sekisho {

struct live_options {
    std::string policy_path;
    std::string backend = "dpdk";          // dpdk | xdp (backends/xdp/xdp_live.cpp)
    std::string xdp_mode = "native";       // xdp: native | generic
    std::string access_if, core_if;        // Linux interfaces, through if_driver
    std::string if_driver = "af_packet";   // af_packet | af_xdp
    std::optional<unsigned> access_port, core_port;  // or DPDK port ids
    unsigned workers = 1;
    std::string events_path;               // empty: the policy's events.file; "-": stdout
    std::string summary_path;              // counters as JSON at exit
    std::string metrics_address;           // Prometheus exposer, e.g. 127.0.0.1:9108; empty: none
    std::string api_socket;                // control API Unix socket; empty: none
    std::string api_group;                 // group owning the socket (mode 0660)
    std::string api_tcp;                   // control API over TLS, ADDRESS:PORT; empty: none
    std::string api_cert, api_key, api_token_file;
    std::vector<std::string> eal_args;     // replaces the default EAL arguments
};

// The control API's listener settings, or nullopt when neither --api-socket nor --api-tcp is given.
std::optional<api_config> api_config_of(const live_options& options);

int run_live(const live_options& options);

}  // namespace sekisho
