#include "backends/xdp/xdp_live.h"

#include <linux/types.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <vector>

#include "backends/interface_driver.h"
#include "backends/xdp/xdp_backend.h"
#include "backends/xdp/xdp_data_plane.h"
#include "control/observe/event_log.h"
#include "control/observe/metrics.h"

namespace sekisho {

namespace {

uint64_t realtime_ns() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// The options checked before anything is read; returns the attach mode.
// Throws std::invalid_argument naming the option.
xdp_attach_mode check_xdp_options(const live_options& opt) {
    if (opt.access_if.empty()) throw std::invalid_argument("--backend xdp needs --access-if IF");
    if (opt.access_port || opt.core_port)
        throw std::invalid_argument("--access-port/--core-port are DPDK ports; --backend xdp takes --access-if/--core-if");
    if (!opt.eal_args.empty()) throw std::invalid_argument("EAL arguments (after --) do not apply to --backend xdp");
    if (opt.xdp_mode == "native") return xdp_attach_mode::native;
    if (opt.xdp_mode == "generic") return xdp_attach_mode::generic;
    throw std::invalid_argument("--xdp-mode: '" + opt.xdp_mode + "' is not one of: native, generic");
}

// Loads the program and applies `pol` as its first generation, numbered
// `generation`; returns what XDP does not enforce of it, each also said on
// standard error.
std::vector<std::string> apply_first_policy(xdp_backend& backend, const policy& pol, uint64_t generation) {
    std::vector<std::string> skipped;
    backend.continue_generations_after(generation - 1);
    backend.apply(pol, &skipped);
    for (const auto& s : skipped) std::cerr << "sekishod: xdp: " << s << std::endl;
    return skipped;
}

// The pin directory: --xdp-pin-dir, else /sys/fs/bpf/sekisho/ACCESS_IF;
// empty (no pins) unless --xdp-keep-attached asks for them or an earlier run
// left them there to be taken over.
std::string pin_dir_of(const live_options& opt) {
    const std::string dir = opt.xdp_pin_dir.empty() ? "/sys/fs/bpf/sekisho/" + opt.access_if : opt.xdp_pin_dir;
    std::error_code ec;
    return opt.xdp_keep_attached || std::filesystem::exists(dir, ec) ? dir : "";
}

events_config events_config_of(const policy& pol, const live_options& opt) {
    events_config ev = pol.events;
    if (!opt.events_path.empty()) ev.file = opt.events_path;
    return ev;
}

// The XDP program on the access (and core) interface; the kernel forwards.
class xdp_live_backend final : public live_backend {
public:
    // Loads the program with `pol` in force and opens the event log; attaches nothing yet.
    xdp_live_backend(const policy& pol, uint64_t generation, const live_options& opt, xdp_attach_mode mode)
        : opt_(opt), mode_(mode), program_(pol.tracking.subscribers_per_worker, pin_dir_of(opt)),
          first_notes_(apply_first_policy(program_, pol, generation)), log_(events_config_of(pol, opt), realtime_ns),
          plane_(program_, pol, first_notes_, log_) {}

    data_plane& plane() override { return plane_; }
    std::array<std::string, 2> side_names() const override { return {opt_.access_if, opt_.core_if}; }
    unsigned workers() const override { return static_cast<unsigned>(plane_.cpus()); }
    counter_source scraper_counters() const override {
        return [this] { return plane_.counter_blocks(); };   // copies refresh_counters() keeps current
    }
    void start() override;
    void drain_events() override { plane_.drain_events(); }
    void refresh_counters() override { plane_.refresh_counters(); }
    void add_to_snapshot(control_snapshot&) override {}   // no flows, mbufs or ports of its own
    void stop() override;
    void add_to_summary(nlohmann::json& report) const override {
        report["backend"] = "xdp";
        report["xdp_mode"] = to_string(mode_);
    }
    std::string stop_note() const override {
        return opt_.xdp_keep_attached
                   ? ", XDP program left attached and enforcing, maps pinned in " + program_.pin_dir()
                   : ", XDP program detached";
    }

private:
    const live_options& opt_;
    const xdp_attach_mode mode_;
    xdp_backend program_;   // detaches from every interface when destroyed
    const std::vector<std::string> first_notes_;
    event_log log_;
    xdp_data_plane plane_;
};

void xdp_live_backend::start() {
    std::string replaced;
    if (program_.attach(opt_.access_if, ingress::access, mode_)) replaced = opt_.access_if;
    if (!opt_.core_if.empty() && program_.attach(opt_.core_if, ingress::core, mode_))
        replaced += (replaced.empty() ? "" : ", ") + opt_.core_if;
    if (program_.maps_taken_over() > 0)
        std::cerr << "sekishod: xdp: took over " << program_.maps_taken_over() << " maps pinned in "
                  << program_.pin_dir() << " (counters, SYN buckets and the events of the restart continue)"
                  << std::endl;
    if (!replaced.empty())
        std::cerr << "sekishod: xdp: replaced the program left attached on " << replaced
                  << " in one step (no packet unjudged)" << std::endl;
    const policy& pol = plane_.active_policy();
    std::cerr << "sekishod: xdp " << to_string(mode_) << " on " << opt_.access_if << " (access)"
              << (opt_.core_if.empty() ? "" : ", " + opt_.core_if + " (core)") << ", policy " << opt_.policy_path
              << " generation " << plane_.generation() << " (" << to_string(pol.mode) << ", "
              << to_string(pol.action) << ")" << std::endl;
}

void xdp_live_backend::stop() {
    if (opt_.xdp_keep_attached) {
        program_.leave_attached();   // events from here on wait in the pinned ring for the next start
    } else {
        program_.detach_all();
        program_.unpin();
    }
    plane_.drain_events();
    log_.flush_all();   // what aggregation windows still hold
}

}  // namespace

int run_xdp_live(const live_options& opt) {
    const xdp_attach_mode mode = check_xdp_options(opt);
    if (mode == xdp_attach_mode::native)
        for (const std::string& ifname : {opt.access_if, opt.core_if})
            if (const std::string w = veth_warning(ifname, false); !w.empty())
                std::cerr << "sekishod: " << w << std::endl;
    const starting_policy start = read_starting_policy(opt);
    const auto apply_started = std::chrono::steady_clock::now();
    xdp_live_backend backend(start.pol, start.generation, opt, mode);
    const double first_apply_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - apply_started).count();
    return serve(backend, opt, start, first_apply_seconds);
}

}  // namespace sekisho
