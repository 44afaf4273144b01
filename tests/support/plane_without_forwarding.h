// A data plane for tests of the control plane (serve loop, policy sync): it
// prepares and commits generations and keeps a real event log, and forwards
// nothing. The policy pointer is swapped atomically, so a test thread may
// read running_policy() while the control thread commits.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "control/data_plane.h"
#include "control/observe/event_log.h"
#include "control/policy/policy.h"
#include "dataplane/worker_counters.h"

namespace sekisho::test {

class plane_without_forwarding final : public data_plane {
public:
    explicit plane_without_forwarding(const policy& pol, unsigned counter_blocks = 1)
        : policy_(std::make_shared<const policy>(pol)), log_(pol.events) {
        for (unsigned i = 0; i < counter_blocks; ++i) blocks_.push_back(std::make_unique<worker_counters>());
    }

    const char* backend_name() const override { return "test"; }
    uint64_t generation() const override { return generation_.load(); }
    std::shared_ptr<const policy> running_policy() const override { return std::atomic_load(&policy_); }
    std::unique_ptr<prepared_policy> prepare(std::shared_ptr<const policy> pol, uint64_t generation,
                                             bool) override {
        auto p = std::make_unique<prepared_policy>();
        p->pol = std::move(pol);
        p->generation = generation;
        return p;
    }
    uint64_t commit(std::unique_ptr<prepared_policy> p) override {
        std::atomic_store(&policy_, p->pol);
        generation_.store(p->generation);
        return p->generation;
    }
    std::vector<const worker_counters*> all_counters() const override {
        std::vector<const worker_counters*> v;
        for (const auto& b : blocks_) v.push_back(b.get());
        return v;
    }
    uint64_t tracked_flows() const override { return 0; }
    const event_log& events() const override { return log_; }
    void audit(std::string json_object) override {
        log_.add_record(std::move(json_object));
        ++audits;
    }

    void set_generation(uint64_t g) { generation_.store(g); }
    // One OP25B block `e`, counted as a worker counts it, into the log.
    void block_one(const event_record& e) {
        blocks_[0]->port[0].rx_packets.add(1);
        blocks_[0]->port[0].blocked.add(1);
        log_.add(&e, 1, event_names{running_policy().get(), nullptr});
    }
    void flush() { log_.flush_all(); }

    std::atomic<int> audits{0};

private:
    std::shared_ptr<const policy> policy_;
    std::atomic<uint64_t> generation_{1};
    event_log log_;
    std::vector<std::unique_ptr<worker_counters>> blocks_;
};

}  // namespace sekisho::test
