#include "backends/dpdk/dpdk_live.h"

#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mempool.h>

#include <nlohmann/json.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <vector>

#include "backends/dpdk/dpdk_data_plane.h"
#include "backends/dpdk/eal_session.h"
#include "backends/dpdk/packet_ring_drops.h"
#include "backends/interface_driver.h"
#include "control/observe/metrics.h"
#include "dataplane/ports.h"
#include "dataplane/worker.h"

namespace sekisho {

namespace {

// The options only the DPDK backend reads, checked before the EAL starts.
void check_dpdk_options(const live_options& opt) {
    if (opt.workers == 0 || opt.workers >= RTE_MAX_LCORE)
        throw std::runtime_error("--workers must be between 1 and " + std::to_string(RTE_MAX_LCORE - 1));
    if (opt.access_if.empty() != opt.core_if.empty())
        throw std::runtime_error("--access-if and --core-if go together");
}

// The EAL's arguments: lcores for the control thread and the workers, and
// for --access-if/--core-if one vdev per interface with a queue pair per
// worker, named in `vdev_names` (access, core; empty without interfaces).
eal_request eal_request_of(const live_options& opt, std::array<std::string, 2>& vdev_names) {
    eal_request req;
    req.workers = opt.workers;
    req.explicit_args = opt.eal_args;
    if (opt.access_if.empty()) return req;
    std::string queues;
    if (opt.if_driver == "af_packet")
        queues = ",qpairs=" + std::to_string(opt.workers);
    else if (opt.if_driver == "af_xdp")
        queues = ",start_queue=0,queue_count=" + std::to_string(opt.workers);
    else
        throw std::runtime_error("--if-driver: '" + opt.if_driver + "' is not one of: af_packet, af_xdp");
    vdev_names = {"net_" + opt.if_driver + "_access", "net_" + opt.if_driver + "_core"};
    req.vdevs = {vdev_names[0] + ",iface=" + opt.access_if + queues, vdev_names[1] + ",iface=" + opt.core_if + queues};
    return req;
}

uint16_t resolve_port(const std::string& vdev_name, std::optional<unsigned> id, unsigned fallback) {
    if (!vdev_name.empty()) {
        uint16_t port = 0;
        if (rte_eth_dev_get_port_by_name(vdev_name.c_str(), &port) != 0)
            throw std::runtime_error("DPDK did not create port " + vdev_name);
        return port;
    }
    const unsigned want = id.value_or(fallback);
    if (!rte_eth_dev_is_valid_port(static_cast<uint16_t>(want)))
        throw std::runtime_error("no DPDK port " + std::to_string(want) + " (" +
                                 std::to_string(rte_eth_dev_count_avail()) +
                                 " available); give --access-if/--core-if or EAL arguments that create the ports");
    return static_cast<uint16_t>(want);
}

void check_lcores(unsigned workers) {
    if (rte_lcore_count() < workers + 1)
        throw std::runtime_error("EAL gave " + std::to_string(rte_lcore_count()) + " lcores; " +
                                 std::to_string(workers + 1) + " needed (control + workers)");
}

// The access and core ports the EAL created, checked to be two.
std::array<uint16_t, ingress_count> resolve_ports(const live_options& opt,
                                                  const std::array<std::string, 2>& vdev_names) {
    const std::array<uint16_t, ingress_count> port = {resolve_port(vdev_names[0], opt.access_port, 0),
                                                      resolve_port(vdev_names[1], opt.core_port, 1)};
    if (port[0] == port[1]) throw std::runtime_error("the access and core ports must differ");
    return port;
}

dpdk_data_plane_config data_plane_config_of(const policy& pol, const live_options& opt, uint64_t generation) {
    dpdk_data_plane_config cfg;
    cfg.first_generation = generation;
    cfg.workers = opt.workers;
    cfg.event_ring_capacity = pol.events.ring_size;
    cfg.mbufs = 8192 + opt.workers * 2 * 4096;
    cfg.events_path = opt.events_path;
    return cfg;
}

// The DPDK data plane between two ports, one worker lcore per queue pair.
// Needs the EAL for its whole life.
class dpdk_live_backend final : public live_backend {
public:
    dpdk_live_backend(const policy& pol, uint64_t generation, const live_options& opt,
                      std::array<uint16_t, ingress_count> port);
    ~dpdk_live_backend() override;
    dpdk_live_backend(const dpdk_live_backend&) = delete;
    dpdk_live_backend& operator=(const dpdk_live_backend&) = delete;

    data_plane& plane() override { return plane_; }
    std::array<std::string, 2> side_names() const override { return {port_name(port_[0]), port_name(port_[1])}; }
    std::array<std::string, 2> interface_names() const override { return {opt_.access_if, opt_.core_if}; }
    unsigned workers() const override { return opt_.workers; }
    counter_source scraper_counters() const override {
        return [this] { return plane_.all_counters(); };   // the workers' own blocks, read in place
    }
    void start() override;
    void drain_events() override { plane_.drain_events(); }
    void add_to_snapshot(control_snapshot& c) override;
    void stop() override;
    void add_to_summary(nlohmann::json& report) const override { report["workers"] = opt_.workers; }

private:
    void launch_workers();
    void stop_workers();
    void stop_ports();

    const live_options& opt_;
    const std::array<uint16_t, ingress_count> port_;
    const uint64_t flow_capacity_;
    dpdk_data_plane plane_;
    // net_af_packet (DPDK 22.11) leaves imissed at 0: the kernel's ring
    // drops stand in (packet_ring_drops.h); nullptr for other PMDs.
    std::unique_ptr<packet_ring_drops> ring_drops_;
    std::atomic<bool> stop_workers_{false};
    std::vector<live_worker> workers_;
    unsigned ports_started_ = 0;   // sides in port_ order
    bool workers_running_ = false;
};

dpdk_live_backend::dpdk_live_backend(const policy& pol, uint64_t generation, const live_options& opt,
                                     std::array<uint16_t, ingress_count> port)
    : opt_(opt), port_(port), flow_capacity_(static_cast<uint64_t>(pol.tracking.flows_per_worker) * opt.workers),
      plane_(pol, data_plane_config_of(pol, opt, generation)) {
    if (!opt.access_if.empty() && opt.if_driver == "af_packet")
        ring_drops_ = std::make_unique<packet_ring_drops>(opt.access_if, opt.core_if);
}

dpdk_live_backend::~dpdk_live_backend() {
    stop_workers();   // only when stop() did not run: the EAL must not end under running workers
    stop_ports();
}

void dpdk_live_backend::start() {
    for (unsigned side = 0; side < ingress_count; ++side) {
        port_setup s;
        s.port_id = port_[side];
        s.rx_queues = s.tx_queues = static_cast<uint16_t>(opt_.workers);
        s.side = static_cast<ingress>(side);
        start_port(s, plane_.pool());
        ports_started_ = side + 1;
    }
    launch_workers();
    const policy& pol = plane_.active_policy();
    std::cerr << "sekishod: forwarding " << port_name(port_[0]) << " (access) <-> " << port_name(port_[1])
              << " (core) with " << opt_.workers << " worker" << (opt_.workers == 1 ? "" : "s") << ", policy "
              << opt_.policy_path << " generation " << plane_.generation() << " (" << to_string(pol.mode) << ", "
              << to_string(pol.action) << ")" << std::endl;
}

void dpdk_live_backend::launch_workers() {
    workers_.resize(opt_.workers);
    unsigned next = 0;
    unsigned lcore;
    RTE_LCORE_FOREACH_WORKER(lcore) {
        if (next == opt_.workers) break;
        live_worker& w = workers_[next];
        w.id = next;
        w.port[0] = port_[0];
        w.port[1] = port_[1];
        w.queue = static_cast<uint16_t>(next);
        w.pipe = &plane_.pipe(next);
        w.store = &plane_.store();
        w.counters = &plane_.counters(next);
        w.mail = &plane_.tracker(next);
        w.limit_requests = &plane_.limit_requests(next);
        w.stop = &stop_workers_;
        rte_eal_remote_launch(run_live_worker, &w, lcore);
        workers_running_ = true;
        ++next;
    }
}

void dpdk_live_backend::stop_workers() {
    if (!workers_running_) return;
    stop_workers_.store(true);
    rte_eal_mp_wait_lcore();
    workers_running_ = false;
}

void dpdk_live_backend::stop() {
    stop_workers();
    plane_.drain_events();
    plane_.flush_events();   // what aggregation windows still hold
    stop_ports();
}

void dpdk_live_backend::stop_ports() {
    for (unsigned side = 0; side < ports_started_; ++side) stop_port(port_[side]);
    ports_started_ = 0;
}

void dpdk_live_backend::add_to_snapshot(control_snapshot& c) {
    for (const auto& r : plane_.active_policy().content_rules) c.rule_ids.push_back(r.id);
    c.flows = plane_.tracked_flows();
    c.flow_capacity = flow_capacity_;
    c.mbufs_in_use = rte_mempool_in_use_count(plane_.pool());
    c.mbufs_total = plane_.pool()->size;
    c.port_stats = true;
    const std::array<uint64_t, 2> ring_drops = ring_drops_ ? ring_drops_->poll() : std::array<uint64_t, 2>{};
    for (unsigned side = 0; side < ingress_count; ++side) {
        rte_eth_stats st{};
        if (rte_eth_stats_get(port_[side], &st) != 0) continue;
        c.rx_missed[side] = st.imissed + ring_drops[side];
        c.rx_nombuf[side] = st.rx_nombuf;
        c.rx_errors[side] = st.ierrors;
        c.tx_errors[side] = st.oerrors;
    }
}

}  // namespace

int run_dpdk_live(const live_options& opt) {
    const starting_policy start = read_starting_policy(opt);
    check_dpdk_options(opt);
    for (const std::string& ifname : {opt.access_if, opt.core_if})
        if (const std::string w = veth_warning(ifname, true); !w.empty()) std::cerr << "sekishod: " << w << std::endl;
    std::array<std::string, 2> vdev_names;
    eal_session eal("sekishod", eal_request_of(opt, vdev_names));
    check_lcores(opt.workers);
    const std::array<uint16_t, ingress_count> ports = resolve_ports(opt, vdev_names);
    const auto apply_started = std::chrono::steady_clock::now();
    dpdk_live_backend backend(start.pol, start.generation, opt, ports);
    const double first_apply_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - apply_started).count();
    return serve(backend, opt, start, first_apply_seconds);
}

}  // namespace sekisho
