// Compiles a validated policy into the immutable snapshot the workers read.
// Runs off the data path (needs DPDK memory: call after rte_eal_init).
#pragma once

#include <cstdint>
#include <memory>

#include "dataplane/compiled_policy.h"
#include "control/policy/policy.h"

namespace sekisho {

// Throws std::runtime_error if the tables cannot be built (out of memory),
// policy_error if the content rules do not compile (each rule's id, line and
// Hyperscan's message). `workers`: one Hyperscan working set each.
// One limit of the policy as the data plane evaluates it (GCRA parameters for
// connections, target, slot left 0). Shared by compile_policy and the XDP
// backend so both run the same arithmetic.
compiled_limit compile_limit(const limit_rule& rule, const policy& pol);

std::unique_ptr<compiled_policy> compile_policy(const policy& pol, uint64_t generation, unsigned workers = 1);

// The same with the content rules already compiled (content_rules_compiler:
// bounded in time on a thread of its own); `rules` may be null when the
// policy has none.
std::unique_ptr<compiled_policy> compile_policy(const policy& pol, uint64_t generation, unsigned workers,
                                                std::shared_ptr<const content_rule_set> rules);

}  // namespace sekisho
