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
};

class dpdk_data_plane final : public data_plane {
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

    // Binds an address or prefix to an account in the data-plane table: an
    // IPv4 prefix or an IPv6 prefix shorter than ipv6_prefix_length becomes
    // one entry per /32 or per subscriber prefix (at most 65536). Returns the
    // number of entries written; throws std::runtime_error if the prefix is
    // too wide, the account registry or the table is full.
    uint32_t bind(const ip_prefix& prefix, const std::string& account) override;
    uint32_t unbind(const ip_prefix& prefix) override;
    // Throws the std::runtime_error bind() would throw for the width of
    // `prefix` ("... is too wide to bind"), changing nothing: lets a caller
    // refuse a whole update before any of it is applied.
    void check_bindable(const ip_prefix& prefix) const;

    // The entries bind() and unbind() overwrote or removed, in order, so
    // that undo_bindings() can put them back: a RADIUS update (several
    // addresses) is applied to the table whole or not at all, and a batch
    // whose history commit fails is taken back. Control thread only.
    struct binding_undo_log {
        struct entry {
            subscriber_key key;
            uint32_t account_id;   // before the change; 0: the key was unbound
        };
        std::vector<entry> entries;
    };
    // As bind() above, recording each entry's previous value in `undo` (also
    // when it throws midway: undo_bindings() then takes back what was done).
    uint32_t bind(const ip_prefix& prefix, const std::string& account, binding_undo_log& undo);
    // Unbinds only the entries of `prefix` still bound to `account` (a later
    // session, the API or a static binding may hold others), recording them.
    uint32_t unbind(const ip_prefix& prefix, const std::string& account, binding_undo_log& undo);
    // Restores the logged entries, newest first, and empties `undo`. Returns
    // how many could not be restored (the table full), which the caller
    // reports; never throws.
    size_t undo_bindings(binding_undo_log& undo) noexcept;
    subscriber_table& subscribers() { return *subscribers_; }
    account_registry& accounts() { return *accounts_; }
    subscriber_table* subscriber_bindings() override { return subscribers_.get(); }
    account_registry* account_table() override { return accounts_.get(); }
    uint64_t tracked_flows() const override;
    const event_log& events() const override { return *log_; }
    void audit(std::string json_object) override { log_->add_record(std::move(json_object)); }

private:
    uint32_t bind_keys(const ip_prefix& prefix, const std::string& account, binding_undo_log* undo);

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
    std::unique_ptr<event_log> log_;
};

}  // namespace sekisho
