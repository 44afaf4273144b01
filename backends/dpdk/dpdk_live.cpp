#include "backends/dpdk/dpdk_live.h"

#include <rte_ethdev.h>
#include <rte_lcore.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <sstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <chrono>
#include <rte_mempool.h>
#include <thread>

#include "control/api/api_server.h"
#include "control/api/control_api.h"
#include "control/observe/counters_report.h"
#include "backends/dpdk/eal_session.h"
#include "backends/dpdk/dpdk_data_plane.h"
#include "control/observe/metrics.h"
#include "backends/dpdk/packet_ring_drops.h"
#include "control/policy/policy_files.h"
#include "dataplane/ports.h"
#include "control/identity/subscriber_identity.h"
#include "dataplane/worker.h"

namespace sekisho {

namespace {

std::atomic<bool> stop_requested{false};
std::atomic<bool> reload_requested{false};

extern "C" void on_stop_signal(int) { stop_requested.store(true); }
extern "C" void on_reload_signal(int) { reload_requested.store(true); }

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

}  // namespace

std::optional<api_config> api_config_of(const live_options& opt) {
    if (opt.api_socket.empty() && opt.api_tcp.empty()) return std::nullopt;
    api_config ac;
    ac.unix_path = opt.api_socket;
    ac.unix_group = opt.api_group;
    ac.tcp_listen = opt.api_tcp;
    ac.tls_cert_file = opt.api_cert;
    ac.tls_key_file = opt.api_key;
    ac.token_file = opt.api_token_file;
    return ac;
}

int run_live(const live_options& opt) {
    const std::string policy_text = read_policy_file(opt.policy_path);
    policy pol = load_policy_text(policy_text, opt.policy_path);
    check_policy_files(pol, opt.events_path.empty());
    if (opt.workers == 0 || opt.workers >= RTE_MAX_LCORE)
        throw std::runtime_error("--workers must be between 1 and " + std::to_string(RTE_MAX_LCORE - 1));
    if (opt.access_if.empty() != opt.core_if.empty())
        throw std::runtime_error("--access-if and --core-if go together");

    eal_request req;
    req.workers = opt.workers;
    req.explicit_args = opt.eal_args;
    std::string access_name, core_name;
    if (!opt.access_if.empty()) {
        std::string queues;
        if (opt.if_driver == "af_packet") {
            queues = ",qpairs=" + std::to_string(opt.workers);
        } else if (opt.if_driver == "af_xdp") {
            queues = ",start_queue=0,queue_count=" + std::to_string(opt.workers);
        } else {
            throw std::runtime_error("--if-driver: '" + opt.if_driver + "' is not one of: af_packet, af_xdp");
        }
        access_name = "net_" + opt.if_driver + "_access";
        core_name = "net_" + opt.if_driver + "_core";
        req.vdevs = {access_name + ",iface=" + opt.access_if + queues, core_name + ",iface=" + opt.core_if + queues};
    }
    eal_session eal("sekishod", req);
    if (rte_lcore_count() < opt.workers + 1)
        throw std::runtime_error("EAL gave " + std::to_string(rte_lcore_count()) + " lcores; " +
                                 std::to_string(opt.workers + 1) + " needed (control + workers)");

    const uint16_t port[ingress_count] = {resolve_port(access_name, opt.access_port, 0),
                                          resolve_port(core_name, opt.core_port, 1)};
    if (port[0] == port[1]) throw std::runtime_error("the access and core ports must differ");

    dpdk_data_plane_config cfg;
    cfg.workers = opt.workers;
    cfg.event_ring_capacity = pol.events.ring_size;
    cfg.mbufs = 8192 + opt.workers * 2 * 4096;
    cfg.events_path = opt.events_path;
    const auto compile_started = std::chrono::steady_clock::now();
    dpdk_data_plane gw(pol, cfg);
    const double first_apply_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - compile_started).count();
    subscriber_identity identity(gw, pol.identity, [](const std::string& line) {
        std::cerr << "sekishod: " << line << std::endl;
    });
    if (identity.bindings_restored())
        std::cerr << "sekishod: restored " << identity.bindings_restored() << " open bindings from "
                  << pol.identity.history_database << std::endl;

    for (unsigned side = 0; side < ingress_count; ++side) {
        port_setup s;
        s.port_id = port[side];
        s.rx_queues = s.tx_queues = static_cast<uint16_t>(opt.workers);
        s.side = static_cast<ingress>(side);
        start_port(s, gw.pool());
    }

    std::unique_ptr<metrics_exporter> metrics;
    const double started_at = static_cast<double>(std::time(nullptr));
    // net_af_packet (DPDK 22.11) leaves imissed at 0: the kernel's ring drops stand in (packet_ring_drops.h).
    std::unique_ptr<packet_ring_drops> ring_drops_of_af_packet;
    if (!opt.access_if.empty() && opt.if_driver == "af_packet")
        ring_drops_of_af_packet = std::make_unique<packet_ring_drops>(opt.access_if, opt.core_if);
    auto snapshot = [&] {
        control_snapshot c;
        c.generation = gw.generation();
        for (const auto& l : gw.active_policy().limits) c.limit_names.push_back(l.name);
        for (const auto& r : gw.active_policy().content_rules) c.rule_ids.push_back(r.id);
        c.bindings = gw.subscribers().size();
        c.binding_capacity = gw.subscribers().capacity();
        c.accounts = gw.accounts().size();
        c.account_capacity = gw.accounts().capacity();
        c.flows = gw.tracked_flows();
        c.flow_capacity = static_cast<uint64_t>(pol.tracking.flows_per_worker) * opt.workers;
        c.mbufs_in_use = rte_mempool_in_use_count(gw.pool());
        c.mbufs_total = gw.pool()->size;
        c.events_written = gw.events().written();
        c.event_write_errors = gw.events().write_errors();
        c.events_aggregated = gw.events().counters().aggregated;
        c.event_io_errors = gw.events().counters().io_errors;
        c.event_rotations = gw.events().counters().rotations;
        c.event_reopens = gw.events().counters().reopened;
        if (const auto* rc = identity.radius_counters()) {
            c.radius = true;
            c.radius_results = rc->by_result();
        }
        c.bindings_restored = identity.bindings_restored();
        c.binding_apply_errors = identity.apply_errors();
        c.start_time_seconds = started_at;
        c.port_stats = true;
        const std::array<uint64_t, 2> ring_drops = ring_drops_of_af_packet ? ring_drops_of_af_packet->poll()
                                                                           : std::array<uint64_t, 2>{};
        for (unsigned side = 0; side < ingress_count; ++side) {
            rte_eth_stats st{};
            if (rte_eth_stats_get(port[side], &st) != 0) continue;
            c.rx_missed[side] = st.imissed + ring_drops[side];
            c.rx_nombuf[side] = st.rx_nombuf;
            c.rx_errors[side] = st.ierrors;
            c.tx_errors[side] = st.oerrors;
        }
        return c;
    };
    if (!opt.metrics_address.empty()) {
        metrics = std::make_unique<metrics_exporter>(opt.metrics_address, [&gw] { return gw.all_counters(); });
        metrics->observe_apply(first_apply_seconds);
        metrics->update(snapshot());
    }

    std::unique_ptr<api_server> api;
    control_context cc;
    cc.plane = &gw;
    cc.identity = &identity;
    cc.policy_path = opt.policy_path;
    cc.events_path = gw.events().path();
    cc.events_overridden = !opt.events_path.empty();
    cc.port_names[0] = port_name(port[0]);
    cc.port_names[1] = port_name(port[1]);
    cc.workers = opt.workers;
    cc.started = std::chrono::steady_clock::now();
    if (metrics) cc.observe_apply = [&](double s) { metrics->observe_apply(s); };
    if (auto ac = api_config_of(opt)) {
        api = std::make_unique<api_server>(*ac);
        cc.server = api.get();
    }
    control_api control(cc, policy_text);

    std::signal(SIGINT, on_stop_signal);
    std::signal(SIGTERM, on_stop_signal);
    std::signal(SIGHUP, on_reload_signal);

    std::atomic<bool> stop_workers{false};
    std::vector<live_worker> workers(opt.workers);
    unsigned next = 0;
    unsigned lcore;
    RTE_LCORE_FOREACH_WORKER(lcore) {
        if (next == opt.workers) break;
        live_worker& w = workers[next];
        w.id = next;
        w.port[0] = port[0];
        w.port[1] = port[1];
        w.queue = static_cast<uint16_t>(next);
        w.pipe = &gw.pipe(next);
        w.store = &gw.store();
        w.counters = &gw.counters(next);
        w.stop = &stop_workers;
        rte_eal_remote_launch(run_live_worker, &w, lcore);
        ++next;
    }
    std::cerr << "sekishod: forwarding " << port_name(port[0]) << " (access) <-> " << port_name(port[1])
              << " (core) with " << opt.workers << " worker" << (opt.workers == 1 ? "" : "s") << ", policy "
              << opt.policy_path << " generation " << gw.generation() << " (" << to_string(pol.mode) << ", "
              << to_string(pol.action) << ")" << std::endl;

    uint64_t loops = 0;
    while (!stop_requested.load()) {
        gw.drain_events();
        identity.poll();
        if (api) api->serve_pending([&](const api_request& r, api_reply reply) { control.handle(r, std::move(reply)); });
        if (reload_requested.exchange(false)) control.reload();
        control.poll();
        if (metrics && ++loops % 20 == 0) metrics->update(snapshot());  // every ~200 ms
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }

    stop_workers.store(true);
    rte_eal_mp_wait_lcore();
    gw.drain_events();
    gw.flush_events();   // what aggregation windows still hold
    for (uint16_t p : port) stop_port(p);

    nlohmann::json report = counters_json(gw.all_counters());
    report["mode"] = "live";
    report["workers"] = opt.workers;
    report["policy"] = opt.policy_path;
    report["generation"] = gw.generation();
    report["events"]["written"] = gw.events().written();
    report["events"]["write_errors"] = gw.events().write_errors();
    {
        const event_log_counters& ec = gw.events().counters();
        report["events"]["lines"] = ec.lines;
        report["events"]["io_errors"] = ec.io_errors;
        report["events"]["aggregated"] = ec.aggregated;
        report["events"]["aggregation_overflow"] = ec.aggregation_overflow;
        report["events"]["rotations"] = ec.rotations;
        report["events"]["reopened"] = ec.reopened;
        report["events"]["pending"] = ec.pending;
    }
    report["subscribers"] = {{"bindings", gw.subscribers().size()},
                             {"accounts", gw.accounts().size()},
                             {"restored_from_history", identity.bindings_restored()},
                             {"apply_errors", identity.apply_errors()}};
    if (const auto* rc = identity.radius_counters()) {
        nlohmann::json radius = {{"received", rc->received}};
        for (const auto& [result, n] : rc->by_result()) radius[result] = n;
        radius.update({{"starts", rc->starts},
                       {"interims", rc->interims},
                       {"stops", rc->stops},
                       {"accounting_ons", rc->accounting_ons},
                       {"accounting_offs", rc->accounting_offs}});
        report["radius"] = radius;
    }
    if (!opt.summary_path.empty()) {
        std::ofstream f(opt.summary_path);
        f << report.dump(2) << "\n";
        if (!f) throw std::runtime_error("cannot write " + opt.summary_path);
    }
    std::cerr << "sekishod: stopped. " << human_summary(report);
    return 0;
}

}  // namespace sekisho
