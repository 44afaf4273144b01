// The DPDK data plane as the control plane sees it: the mbuf pool, the
// published policy, the subscriber binding table and account registry, and
// per worker its counters, event ring and pipeline. Live mode
// (dpdk_live.h) and replay (replay.h) both build one; they differ only in
// where bursts come from and go to.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "control/identity/account_registry.h"
#include "control/observe/event_log.h"
#include "dataplane/inspect/campaign_table.h"
#include "control/policy/content_rules_compile.h"
#include "dataplane/inspect/content_inspector.h"
#include "control/binding_table.h"
#include "control/data_plane.h"
#include "dataplane/event_ring.h"
#include "dataplane/limits/mail_tracker.h"
#include "dataplane/pipeline.h"
#include "control/policy/policy.h"
#include "dataplane/policy_store.h"
#include "dataplane/limits/subscriber_table.h"
#include "dataplane/worker_counters.h"

struct rte_mempool;

namespace sekisho {

struct dpdk_data_plane_config {
    unsigned workers = 1;
    unsigned mbufs = 16384;
    unsigned event_ring_capacity = 8192;
    std::string events_path = "-";   // empty: the policy's events.file
    bool packet_clock = false;   // replay: capture timestamps are the clock
    uint64_t first_generation = 1;   // the policy it is built with runs as this (restored from the history)
    // Appended to the names of its DPDK objects (mbuf pool, subscriber table,
    // event rings), which are unique per process: several planes in one
    // process (tests of a fleet) each need their own. At most 4 characters.
    std::string instance;
};

class dpdk_data_plane final : public data_plane, public binding_table, public subscriber_limit_state {
public:
    // Needs an initialised EAL. Throws std::runtime_error on resource failure.
    dpdk_data_plane(const policy& pol, const dpdk_data_plane_config& config);
    ~dpdk_data_plane();
    dpdk_data_plane(const dpdk_data_plane&) = delete;
    dpdk_data_plane& operator=(const dpdk_data_plane&) = delete;

    unsigned workers() const { return config_.workers; }
    rte_mempool* pool() { return pool_; }
    policy_store& store() { return *store_; }
    pipeline& pipe(unsigned w) { return *pipelines_[w]; }
    mail_tracker& tracker(unsigned w) { return *trackers_[w]; }
    limit_request_box& limit_requests(unsigned w) { return *limit_boxes_[w]; }
    // Blocks 0..workers-1 belong to the workers; block `workers` to the
    // control thread (replay transmits from it).
    worker_counters& counters(unsigned block) { return *counters_[block]; }
    std::vector<const worker_counters*> all_counters() const override;
    const char* backend_name() const override { return "dpdk"; }
    uint64_t generation() const override { return store_->current()->generation(); }
    std::shared_ptr<const policy> running_policy() const override { return policy_; }

    // Compiles the snapshot (lookup tables, content rules bounded by
    // inspection.compile_timeout) on the calling thread; touches nothing the
    // control thread or the workers use.
    std::unique_ptr<prepared_policy> prepare(std::shared_ptr<const policy> pol, uint64_t generation,
                                             bool dry_run) override;
    // Stages the static bindings (undone if the table cannot take them), then
    // publishes the snapshot (RCU), then drops the old static bindings and
    // sets the account groups.
    uint64_t commit(std::unique_ptr<prepared_policy> p) override;

    size_t drain_events() { return log_->drain(rings_raw_, event_names{policy_.get(), accounts_.get()}); }
    // At exit, after the workers stopped and the last drain_events(): writes
    // the events still in an aggregation window.
    void flush_events() { log_->flush_all(); }

    // The subscriber binding table (binding_table.h): keys per /32 or per
    // subscriber prefix of the running policy's ipv6_prefix_length.
    void check_bindable(const ip_prefix& prefix) const override;
    uint32_t bind(const ip_prefix& prefix, const std::string& account) override;
    uint32_t unbind(const ip_prefix& prefix) override;
    uint32_t bind(const ip_prefix& prefix, const std::string& account, undo_log& undo) override;
    uint32_t unbind(const ip_prefix& prefix, const std::string& account, undo_log& undo) override;
    size_t undo_bindings(undo_log& undo) noexcept override;
    std::vector<uint32_t> holders(const ip_prefix& prefix) const override;
    subscriber_table& subscribers() { return *subscribers_; }
    account_registry& accounts() { return *accounts_; }
    subscriber_table* subscriber_bindings() override { return subscribers_.get(); }
    account_registry* account_table() override { return accounts_.get(); }
    binding_table* writable_bindings() override { return this; }
    subscriber_limit_state* limit_state() override { return this; }
    campaign_table* campaigns() override { return campaigns_.get(); }
    // subscriber_limit_state: the request goes to every worker's box (live
    // mode's workers serve it between bursts, worker.h).
    bool post_limit_request(const limit_record_request& r) override;
    std::optional<std::vector<limit_record_answer>> limit_answers() override;
    account_record* account_limits(uint32_t account_id) override;
    const compiled_policy& compiled() const override { return *store_->current(); }
    uint64_t tracked_flows() const override;
    const event_log& events() const override { return *log_; }
    void audit(std::string json_object) override { log_->add_record(std::move(json_object)); }

private:
    uint32_t bind_keys(const ip_prefix& prefix, const std::string& account, undo_log* undo);

    dpdk_data_plane_config config_;
    std::shared_ptr<const policy> policy_;
    rte_mempool* pool_ = nullptr;
    std::unique_ptr<policy_store> store_;
    content_rules_compiler rule_compiler_;
    uint64_t dry_runs_ = 0;
    std::vector<std::unique_ptr<worker_counters>> counters_;
    std::vector<std::unique_ptr<event_ring>> rings_;
    std::vector<event_ring*> rings_raw_;
    std::unique_ptr<account_registry> accounts_;
    std::unique_ptr<subscriber_table> subscribers_;
    std::unique_ptr<campaign_table> campaigns_;
    std::vector<std::unique_ptr<content_inspector>> inspectors_;
    std::vector<std::unique_ptr<mail_tracker>> trackers_;
    std::vector<std::unique_ptr<pipeline>> pipelines_;
    std::vector<std::unique_ptr<limit_request_box>> limit_boxes_;
    std::unique_ptr<event_log> log_;
};

}  // namespace sekisho
