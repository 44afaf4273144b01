// Compiles a validated policy into the immutable snapshot the workers read.
// Runs off the data path (needs DPDK memory: call after rte_eal_init).
#pragma once

#include <cstdint>
#include <memory>

#include "compiled_policy.h"
#include "policy.h"

namespace sekisho {

// Throws std::runtime_error if the tables cannot be built (out of memory).
std::unique_ptr<compiled_policy> compile_policy(const policy& pol, uint64_t generation);

}  // namespace sekisho
