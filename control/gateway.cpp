#include "gateway.h"

#include <rte_errno.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <stdexcept>

#include "policy_compiler.h"

namespace sekisho {

gateway::gateway(const policy& pol, const gateway_config& config) : config_(config), policy_(pol) {
    pool_ = rte_pktmbuf_pool_create("sk_mbufs", config.mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    if (pool_ == nullptr)
        throw std::runtime_error(std::string("cannot create the mbuf pool (") + std::to_string(config.mbufs) +
                                 " mbufs): " + rte_strerror(rte_errno) + "; give EAL more memory (-m)");
    store_ = std::make_unique<policy_store>(config.workers);
    store_->publish(compile_policy(pol, 1));

    const packet_clock clock = config.packet_clock ? packet_clock::from_packet_timestamps() : packet_clock::live();
    for (unsigned w = 0; w <= config.workers; ++w) counters_.push_back(std::make_unique<worker_counters>());
    for (unsigned w = 0; w < config.workers; ++w) {
        const std::string name = "sk_events_" + std::to_string(w);
        rings_.push_back(std::make_unique<event_ring>(name.c_str(), config.event_ring_capacity));
        rings_raw_.push_back(rings_.back().get());
        pipelines_.push_back(std::make_unique<pipeline>(w, pool_, *counters_[w], rings_.back().get(), clock));
    }
    log_ = std::make_unique<event_log>(config.events_path);
}

gateway::~gateway() {
    pipelines_.clear();
    rings_.clear();
    store_.reset();
    rte_mempool_free(pool_);
}

uint64_t gateway::apply(const policy& pol) {
    const uint64_t next = generation() + 1;
    auto compiled = compile_policy(pol, next);
    store_->publish(std::move(compiled));  // returns the old snapshot, freed here
    policy_ = pol;
    return next;
}

std::vector<const worker_counters*> gateway::all_counters() const {
    std::vector<const worker_counters*> out;
    for (const auto& c : counters_) out.push_back(c.get());
    return out;
}

}  // namespace sekisho
