#include "backends/xdp/xdp_data_plane.h"

#include "control/observe/event_log.h"
#include "backends/xdp/xdp_backend.h"
#include "backends/xdp/xdp_counters.h"
#include "backends/xdp/xdp_policy.h"

namespace sekisho {

xdp_data_plane::xdp_data_plane(xdp_backend& backend, policy running, std::vector<std::string> notes, event_log& log)
    : backend_(backend), policy_(std::make_shared<const policy>(std::move(running))), notes_(std::move(notes)), log_(log),
      cpus_(backend.read_counters().size()) {
    for (size_t i = 0; i <= cpus_; ++i) blocks_.push_back(std::make_unique<worker_counters>());
}

uint64_t xdp_data_plane::generation() const { return backend_.generation(); }

std::unique_ptr<prepared_policy> xdp_data_plane::prepare(std::shared_ptr<const policy> pol, uint64_t generation,
                                                         bool) {
    auto out = std::make_unique<prepared_policy>();
    out->notes = build_xdp_policy_image(*pol, generation).skipped_limits;   // policy_error: the map bounds
    out->generation = generation;
    out->pol = std::move(pol);
    return out;
}

uint64_t xdp_data_plane::commit(std::unique_ptr<prepared_policy> p) {
    std::vector<std::string> notes;
    const uint64_t g = backend_.apply(*p->pol, &notes);   // throws: the running generation stays
    drain_events();   // what the old generation reported is named by its policy
    policy_ = std::move(p->pol);
    notes_ = std::move(notes);
    return g;
}

void xdp_data_plane::refresh_counters() const {
    const auto per_cpu = backend_.read_counters();
    for (size_t i = 0; i < per_cpu.size() && i < cpus_; ++i) copy_xdp_counters(per_cpu[i], *blocks_[i]);
}

std::vector<const worker_counters*> xdp_data_plane::all_counters() const {
    refresh_counters();
    return counter_blocks();
}

std::vector<const worker_counters*> xdp_data_plane::counter_blocks() const {
    std::vector<const worker_counters*> out;
    for (const auto& b : blocks_) out.push_back(b.get());
    return out;
}

void xdp_data_plane::drain_events() {
    std::vector<event_record> batch;
    backend_.drain_events([&](const event_record& e) { batch.push_back(e); });
    log_.add(batch.data(), batch.size(), event_names{policy_.get(), nullptr});   // also closes due windows, rotates
}

void xdp_data_plane::audit(std::string json_object) { log_.add_record(std::move(json_object)); }

}  // namespace sekisho
