#include "backends/xdp/xdp_live.h"

#include <linux/types.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "control/api/api_server.h"
#include "control/api/control_api.h"
#include "control/observe/counters_report.h"
#include "control/observe/event_log.h"
#include "control/observe/metrics.h"
#include "control/policy/policy.h"
#include "control/policy/policy_files.h"
#include "dataplane/worker_counters.h"
#include "backends/xdp/xdp_backend.h"
#include "backends/xdp/xdp_data_plane.h"

namespace sekisho {

namespace {

std::atomic<bool> stop_requested{false};
std::atomic<bool> reload_requested{false};

extern "C" void on_xdp_stop_signal(int) { stop_requested.store(true); }
extern "C" void on_xdp_reload_signal(int) { reload_requested.store(true); }

uint64_t realtime_ns() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void warn_skipped(const std::vector<std::string>& skipped) {
    for (const auto& s : skipped) std::cerr << "sekishod: xdp: " << s << std::endl;
}

}  // namespace

int run_xdp_live(const live_options& opt) {
    if (opt.access_if.empty()) throw std::invalid_argument("--backend xdp needs --access-if IF");
    if (opt.access_port || opt.core_port)
        throw std::invalid_argument("--access-port/--core-port are DPDK ports; --backend xdp takes --access-if/--core-if");
    if (!opt.eal_args.empty()) throw std::invalid_argument("EAL arguments (after --) do not apply to --backend xdp");
    xdp_attach_mode mode;
    if (opt.xdp_mode == "native") mode = xdp_attach_mode::native;
    else if (opt.xdp_mode == "generic") mode = xdp_attach_mode::generic;
    else throw std::invalid_argument("--xdp-mode: '" + opt.xdp_mode + "' is not one of: native, generic");

    const std::string policy_text = read_policy_file(opt.policy_path);
    policy pol = load_policy_text(policy_text, opt.policy_path);
    check_policy_files(pol, opt.events_path.empty());
    const auto started = std::chrono::steady_clock::now();
    xdp_backend backend(pol.tracking.subscribers_per_worker);
    std::vector<std::string> skipped;
    backend.apply(pol, &skipped);
    warn_skipped(skipped);
    const double first_apply_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    events_config ev = pol.events;
    if (!opt.events_path.empty()) ev.file = opt.events_path;
    event_log log(ev, realtime_ns);
    xdp_data_plane plane(backend, pol, skipped, log);

    std::unique_ptr<metrics_exporter> metrics;
    const double started_at = static_cast<double>(std::time(nullptr));
    auto snapshot = [&] {
        control_snapshot c;
        c.generation = plane.generation();
        for (const auto& l : plane.active_policy().limits) c.limit_names.push_back(l.name);
        c.events_written = log.written();
        c.event_write_errors = log.write_errors();
        c.events_aggregated = log.counters().aggregated;
        c.event_io_errors = log.counters().io_errors;
        c.event_rotations = log.counters().rotations;
        c.event_reopens = log.counters().reopened;
        c.start_time_seconds = started_at;
        return c;
    };
    if (!opt.metrics_address.empty()) {
        metrics = std::make_unique<metrics_exporter>(opt.metrics_address, [&plane] { return plane.counter_blocks(); });
        metrics->observe_apply(first_apply_seconds);
        metrics->update(snapshot());
    }

    // The control API and SIGHUP share control_api's apply path, as with --backend dpdk.
    std::unique_ptr<api_server> api;
    control_context cc;
    cc.plane = &plane;
    cc.policy_path = opt.policy_path;
    cc.events_path = log.path();
    cc.events_overridden = !opt.events_path.empty();
    cc.port_names[0] = opt.access_if;
    cc.port_names[1] = opt.core_if;
    cc.workers = static_cast<unsigned>(plane.cpus());
    cc.started = started;
    if (metrics) cc.observe_apply = [&](double s) { metrics->observe_apply(s); };
    if (auto ac = api_config_of(opt)) {
        api = std::make_unique<api_server>(*ac);
        cc.server = api.get();
    }
    control_api control(cc, policy_text);

    std::signal(SIGINT, on_xdp_stop_signal);
    std::signal(SIGTERM, on_xdp_stop_signal);
    std::signal(SIGHUP, on_xdp_reload_signal);

    // From here on every exit path detaches (xdp_backend's destructor).
    backend.attach(opt.access_if, ingress::access, mode);
    if (!opt.core_if.empty()) backend.attach(opt.core_if, ingress::core, mode);
    std::cerr << "sekishod: xdp " << to_string(mode) << " on " << opt.access_if << " (access)"
              << (opt.core_if.empty() ? "" : ", " + opt.core_if + " (core)") << ", policy " << opt.policy_path
              << " generation " << plane.generation() << " (" << to_string(pol.mode) << ", "
              << to_string(pol.action) << ")" << std::endl;

    uint64_t loops = 0;
    while (!stop_requested.load()) {
        plane.drain_events();
        if (api) api->serve_pending([&](const api_request& r, api_reply reply) { control.handle(r, std::move(reply)); });
        if (reload_requested.exchange(false)) control.reload();
        control.poll();
        if (++loops % 20 == 0) {   // every ~200 ms
            plane.refresh_counters();
            if (metrics) metrics->update(snapshot());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }

    backend.detach_all();
    plane.drain_events();
    const std::vector<const worker_counters*> blocks = plane.all_counters();
    log.flush_all();

    nlohmann::json report = counters_json(blocks);
    report["mode"] = "live";
    report["backend"] = "xdp";
    report["xdp_mode"] = to_string(mode);
    report["policy"] = opt.policy_path;
    report["generation"] = plane.generation();
    {
        const event_log_counters& ec = log.counters();
        report["events"]["written"] = log.written();
        report["events"]["write_errors"] = log.write_errors();
        report["events"]["lines"] = ec.lines;
        report["events"]["io_errors"] = ec.io_errors;
        report["events"]["aggregated"] = ec.aggregated;
        report["events"]["rotations"] = ec.rotations;
        report["events"]["reopened"] = ec.reopened;
    }
    if (!opt.summary_path.empty()) {
        std::ofstream f(opt.summary_path);
        f << report.dump(2) << "\n";
        if (!f) throw std::runtime_error("cannot write " + opt.summary_path);
    }
    std::cerr << "sekishod: stopped, XDP program detached. " << human_summary(report);
    return 0;
}

}  // namespace sekisho
