// What the XDP program's maps hold for one policy generation: the settings
// element (mode, action, ports, connection limits) and the LPM entries, built
// from the same validated policy (load_policy_file) that compile_policy()
// turns into the DPDK tables, with the same limit arithmetic (compile_limit).
//
// Pure data, no BPF calls: xdp_backend writes it into one of the two map sets.
#pragma once

#include <linux/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "control/policy/policy.h"
#include "sekisho_xdp.h"

namespace sekisho {

struct xdp_prefix_entry {
    uint8_t family = 4;                 // 4 or 6
    uint8_t length = 0;                 // prefix length in bits
    std::array<uint8_t, 16> addr{};     // network order
    uint8_t value = 0;                  // sx_subscriber_class (subscribers), 1 (relays)
};

struct xdp_policy_image {
    sx_policy_set settings{};
    std::vector<xdp_prefix_entry> subscribers;   // dynamic first, then static: static wins a tie
    std::vector<xdp_prefix_entry> relays;
    // Limits the XDP path cannot enforce, one line each ("policy.yaml:31: limit
    // 'msgs': measure messages needs SMTP inspection (DPDK backend only)").
    std::vector<std::string> skipped_limits;
};

// Throws policy_error if the policy asks for more connection limits than the
// program holds (SX_MAX_CONN_LIMITS), naming the limit and its line.
xdp_policy_image build_xdp_policy_image(const policy& pol, uint64_t generation);

}  // namespace sekisho
