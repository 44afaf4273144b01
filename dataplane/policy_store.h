// The published compiled policy, swapped by RCU (rte_rcu_qsbr).
//
// Workers read current() once per burst and report a quiescent state after
// each burst; a packet is therefore judged by exactly one generation. The
// control thread publishes a new snapshot with one atomic exchange, waits for
// the grace period (every online worker has passed a quiescent state), then
// frees the old one. Readers never block, never lock.
#pragma once

#include <atomic>
#include <memory>

#include "dataplane/compiled_policy.h"

struct rte_rcu_qsbr;

namespace sekisho {

class policy_store {
public:
    explicit policy_store(unsigned max_readers);
    ~policy_store();
    policy_store(const policy_store&) = delete;
    policy_store& operator=(const policy_store&) = delete;

    // Control thread: installs `next`, waits for the grace period and returns
    // the previous snapshot, which no worker can still be reading.
    std::unique_ptr<compiled_policy> publish(std::unique_ptr<compiled_policy> next);

    // Worker side.
    const compiled_policy* current() const { return current_.load(std::memory_order_acquire); }
    void register_reader(unsigned reader_id);
    void unregister_reader(unsigned reader_id);
    void quiescent(unsigned reader_id);
    // The workers' RCU state, for other lock-free tables they read (the
    // subscriber table reclaims deleted entries after the same grace period).
    rte_rcu_qsbr* qsbr() const { return qsbr_; }

private:
    rte_rcu_qsbr* qsbr_;
    std::atomic<compiled_policy*> current_{nullptr};
};

}  // namespace sekisho
