#include "control/serve_loop.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <ctime>
#include <iostream>
#include <memory>
#include <thread>

#include "control/api/control_api.h"
#include "control/binding_table.h"
#include "control/build_version.h"
#include "control/data_plane.h"
#include "control/fleet/fleet_link.h"
#include "control/identity/account_registry.h"
#include "control/identity/operator_binding_table.h"
#include "control/identity/subscriber_identity.h"
#include "control/observe/counters_report.h"
#include "control/observe/event_log.h"
#include "control/policy/policy_files.h"
#include "control/state/operator_state.h"
#include "control/state/state_dir.h"
#include "dataplane/limits/subscriber_table.h"

namespace sekisho {

namespace {

constexpr auto turn_interval = std::chrono::milliseconds(10);
constexpr uint64_t turns_per_refresh = 20;   // ~200 ms

std::atomic<bool> stop_requested{false};
std::atomic<bool> reload_requested{false};

extern "C" void on_stop_signal(int) { stop_requested.store(true); }
extern "C" void on_reload_signal(int) { reload_requested.store(true); }

// While it lives, SIGINT and SIGTERM ask the loop to stop and SIGHUP to
// reload (async-signal-safe: the handlers only set a flag); the flags start
// cleared. The handlers before it come back when it goes.
class loop_signals {
public:
    loop_signals() {
        stop_requested.store(false);
        reload_requested.store(false);
        previous_[0] = std::signal(SIGINT, on_stop_signal);
        previous_[1] = std::signal(SIGTERM, on_stop_signal);
        previous_[2] = std::signal(SIGHUP, on_reload_signal);
    }
    ~loop_signals() {
        std::signal(SIGINT, previous_[0]);
        std::signal(SIGTERM, previous_[1]);
        std::signal(SIGHUP, previous_[2]);
    }
    loop_signals(const loop_signals&) = delete;
    loop_signals& operator=(const loop_signals&) = delete;

    bool stop() const { return stop_requested.load(); }
    bool take_reload() { return reload_requested.exchange(false); }

private:
    using handler = void (*)(int);
    handler previous_[3] = {};
};

void log_line(const std::string& line) { std::cerr << "sekishod: " << line << std::endl; }

// One live run's control plane; members in the order they start, so that
// they stop in reverse (the API before the metrics, identity last).
class serve_loop {
public:
    serve_loop(live_backend& backend, const serve_options& options)
        : backend_(backend), plane_(backend.plane()), opt_(options) {}

    void start_identity();
    void restore_operator_state();
    void start_metrics(double first_apply_seconds);
    void start_api(const starting_policy& start);
    void start_fleet();
    void run();
    nlohmann::json summary();

private:
    void turn();
    control_snapshot snapshot();

    live_backend& backend_;
    data_plane& plane_;
    const serve_options& opt_;
    const double started_at_ = static_cast<double>(std::time(nullptr));
    uint64_t turns_ = 0;
    std::unique_ptr<operator_state> decisions_;
    std::unique_ptr<operator_binding_table> api_bindings_;
    std::unique_ptr<subscriber_identity> identity_;
    std::unique_ptr<metrics_exporter> metrics_;
    std::unique_ptr<api_server> api_;
    std::unique_ptr<control_api> control_;
    std::unique_ptr<fleet_link> fleet_;
    std::unique_ptr<loop_signals> signals_;
};

void serve_loop::start_identity() {
    binding_table* table = plane_.writable_bindings();
    if (table == nullptr) return;   // no bindings (XDP): no RADIUS, no history
    const identity_config& config = plane_.active_policy().identity;
    // RADIUS writes through the operator's table: API bindings win over it.
    api_bindings_ = std::make_unique<operator_binding_table>(*table);
    identity_ = std::make_unique<subscriber_identity>(*api_bindings_, config, log_line);
    if (identity_->bindings_restored())
        std::cerr << "sekishod: restored " << identity_->bindings_restored() << " open bindings from "
                  << config.history_database << std::endl;
}

// After the RADIUS history's bindings: the operator's suspensions and API
// bindings (which win) go into the data plane before it forwards. A state
// file that cannot be read stops the start: running without the operator's
// suspensions would forward mail the operator stopped.
void serve_loop::restore_operator_state() {
    account_registry* accounts = plane_.account_table();
    if (!api_bindings_ || accounts == nullptr) return;   // no accounts (XDP)
    const std::string path = opt_.state_dir + "/operator.db";
    decisions_ = std::make_unique<operator_state>(path);
    size_t suspensions = 0, bindings = 0, failed = 0;
    for (const suspension_record& r : decisions_->suspensions()) {
        const uint32_t id = accounts->id_of(r.account);
        if (id == 0) {
            ++failed;
            log_line("operator state: cannot restore the suspension of " + r.account + ": the account registry is full");
            continue;
        }
        accounts->set_suspended(id, true);
        ++suspensions;
    }
    for (const api_binding_record& r : decisions_->bindings()) {
        api_bindings_->hold(r.prefix, r.account);
        try {
            api_bindings_->bind(r.prefix, r.account);
            ++bindings;
        } catch (const std::exception& e) {
            ++failed;
            log_line("operator state: cannot restore the binding " + r.prefix.to_string() + " of " + r.account + ": " +
                     e.what());
        }
    }
    std::cerr << "sekishod: restored " << suspensions << " suspensions and " << bindings << " API bindings from " << path
              << (failed ? " (" + std::to_string(failed) + " could not be restored, above)" : std::string()) << std::endl;
}

void serve_loop::start_metrics(double first_apply_seconds) {
    if (opt_.metrics_address.empty()) return;
    metrics_ = std::make_unique<metrics_exporter>(opt_.metrics_address, backend_.scraper_counters());
    metrics_->observe_apply(first_apply_seconds);
    metrics_->update(snapshot());
}

void serve_loop::start_api(const starting_policy& start) {
    control_context cc;
    cc.history = start.history.get();
    cc.plane = &plane_;
    cc.identity = identity_.get();
    cc.decisions = decisions_.get();
    cc.api_bindings = api_bindings_.get();
    cc.policy_path = opt_.policy_path;
    cc.events_path = plane_.events().path();
    cc.events_overridden = !opt_.events_path.empty();
    const std::array<std::string, 2> sides = backend_.side_names();
    cc.port_names[0] = sides[0];
    cc.port_names[1] = sides[1];
    const std::array<std::string, 2> interfaces = backend_.interface_names();
    cc.interface_names[0] = interfaces[0];
    cc.interface_names[1] = interfaces[1];
    cc.workers = backend_.workers();
    cc.started = std::chrono::steady_clock::now();
    if (metrics_) cc.observe_apply = [this](double s) { metrics_->observe_apply(s); };
    if (!opt_.api.unix_path.empty() || !opt_.api.tcp_listen.empty()) {
        api_ = std::make_unique<api_server>(opt_.api);
        cc.server = api_.get();
    }
    control_ = std::make_unique<control_api>(cc, start.text);
    if (!start.note.empty()) control_->audit_start(start.note);
}

// Fleet mode: after the operator state and the API (what comes back from the
// fleet goes through them), before the backend forwards.
void serve_loop::start_fleet() {
    if (opt_.fleet_path.empty()) return;
    fleet_context fc;
    fc.plane = &plane_;
    fc.decisions = decisions_.get();
    fc.api_bindings = api_bindings_.get();
    fc.control = control_.get();
    fc.state_dir = opt_.state_dir;
    fc.events_path = plane_.events().path();
    fc.history_path = plane_.active_policy().identity.history_database;
    fc.log = log_line;
    fleet_ = std::make_unique<fleet_link>(read_fleet_config(opt_.fleet_path), fc);
    control_->show_fleet_status([this] { return fleet_->status(); });
}

// Starts the backend under the signal handlers, says where the daemon can be
// reached, and turns until a stop signal.
void serve_loop::run() {
    signals_ = std::make_unique<loop_signals>();
    backend_.start();
    std::string listeners;
    auto add = [&](const std::string& what) { listeners += (listeners.empty() ? "" : ", ") + what; };
    if (!opt_.api.unix_path.empty()) add("API socket " + opt_.api.unix_path);
    if (!opt_.api.tcp_listen.empty()) add("API over TLS " + opt_.api.tcp_listen);
    if (metrics_) add("metrics http://" + opt_.metrics_address + "/metrics");
    if (identity_ && identity_->radius_counters()) add("RADIUS accounting " + plane_.active_policy().identity.radius_listen);
    log_line("listening: " + (listeners.empty() ? std::string("nothing (no API, metrics or RADIUS)") : listeners));
    while (!signals_->stop()) {
        turn();
        std::this_thread::sleep_for(turn_interval);
    }
    backend_.stop();
}

void serve_loop::turn() {
    backend_.drain_events();
    if (identity_) identity_->poll();
    if (api_) api_->serve_pending([&](const api_request& r, api_reply reply) { control_->handle(r, std::move(reply)); });
    if (signals_->take_reload()) control_->reload();
    control_->poll();
    if (fleet_) fleet_->poll();
    if (++turns_ % turns_per_refresh == 0) {
        control_->record_quarantines();
        backend_.refresh_counters();
        if (metrics_) metrics_->update(snapshot());
    }
}

control_snapshot serve_loop::snapshot() {
    control_snapshot c;
    c.version = sekisho_version;
    c.build = sekisho_build;
    c.backend = plane_.backend_name();
    c.generation = plane_.generation();
    if (control_) c.policy_reload_failures = control_->reload_failures();
    for (const auto& l : plane_.active_policy().limits) c.limit_names.push_back(l.name);
    if (const subscriber_table* st = plane_.subscriber_bindings()) {
        c.bindings = st->size();
        c.binding_capacity = st->capacity();
    }
    if (const account_registry* accounts = plane_.account_table()) {
        c.accounts = accounts->size();
        c.account_capacity = accounts->capacity();
    }
    const event_log& log = plane_.events();
    c.event_log = log.counters();
    if (identity_) {
        if (const auto* rc = identity_->radius_counters()) {
            c.radius = true;
            c.radius_results = rc->by_result();
        }
        c.bindings_restored = identity_->bindings_restored();
        c.binding_apply_errors = identity_->apply_errors();
    }
    c.start_time_seconds = started_at_;
    if (fleet_) fleet_->add_to_snapshot(c);
    backend_.add_to_snapshot(c);
    return c;
}

// After stop(): the counters and the event log are final.
nlohmann::json serve_loop::summary() {
    nlohmann::json report = counters_json(plane_.all_counters());
    report["mode"] = "live";
    report["policy"] = opt_.policy_path;
    report["generation"] = plane_.generation();
    add_event_log_counters(report, plane_.events());
    if (identity_) {
        const subscriber_table* st = plane_.subscriber_bindings();
        const account_registry* accounts = plane_.account_table();
        report["subscribers"] = {{"bindings", st ? st->size() : 0},
                                 {"accounts", accounts ? accounts->size() : 0},
                                 {"restored_from_history", identity_->bindings_restored()},
                                 {"apply_errors", identity_->apply_errors()}};
        if (const auto* rc = identity_->radius_counters()) {
            nlohmann::json radius = {{"received", rc->received}};
            for (const auto& [result, n] : rc->by_result()) radius[result] = n;
            radius.update({{"starts", rc->starts},
                           {"interims", rc->interims},
                           {"stops", rc->stops},
                           {"accounting_ons", rc->accounting_ons},
                           {"accounting_offs", rc->accounting_offs}});
            report["radius"] = radius;
        }
    }
    backend_.add_to_summary(report);
    return report;
}

}  // namespace

starting_policy read_starting_policy(const serve_options& options) {
    starting_policy s;
    const std::string file_text = read_policy_file(options.policy_path);
    prepare_state_dir(options.state_dir);
    s.history = std::make_shared<policy_history>(options.state_dir + "/policy", options.policy_history_depth);
    const policy_generation* last = s.history->in_force();
    const std::optional<policy_file_record>& from_file = s.history->file_record();
    const bool file_as_applied = from_file && from_file->path == options.policy_path && from_file->text == file_text;
    if (last != nullptr && file_as_applied) {
        s.text = last->text;
        s.generation = last->origin.generation;
        const std::string name = last->origin.kind == "file"
                                     ? last->origin.file
                                     : "policy generation " + std::to_string(s.generation);
        s.pol = load_policy_text(s.text, name);
        check_policy_files(s.pol, options.events_path.empty());
        s.note = "generation " + std::to_string(s.generation) + " from " + describe(last->origin) +
                 " restored: in force when sekishod stopped; the policy file " + options.policy_path +
                 " is as last applied";
        log_line(s.note);
        return s;
    }
    s.text = file_text;
    s.pol = load_policy_text(s.text, options.policy_path);
    check_policy_files(s.pol, options.events_path.empty());
    const std::optional<policy_origin> replaced = last ? std::optional(last->origin) : std::nullopt;
    s.generation = (replaced ? replaced->generation : 0) + 1;
    policy_generation g;
    g.origin.kind = "file";
    g.origin.file = options.policy_path;
    g.origin.generation = s.generation;
    g.origin.time = static_cast<int64_t>(std::time(nullptr));
    g.text = file_text;
    const policy_file_record record{options.policy_path, file_text, s.generation};
    s.history->write_entry(g);
    s.history->write_file_record(record);
    s.history->settle(g, record);
    if (replaced) {
        s.note = "the policy file " + options.policy_path + " changed while sekishod was down: applied as generation " +
                 std::to_string(s.generation) + "; generation " + std::to_string(replaced->generation) + " from " +
                 describe(*replaced) + " is no longer in force (policy rollback returns to it)";
        log_line("WARNING: " + s.note);
    }
    return s;
}

int serve(live_backend& backend, const serve_options& options, const starting_policy& start,
          double first_apply_seconds) {
    prepare_state_dir(options.state_dir);
    serve_loop loop(backend, options);
    loop.start_identity();
    loop.restore_operator_state();
    loop.start_metrics(first_apply_seconds);
    loop.start_api(start);
    loop.start_fleet();
    loop.run();
    const nlohmann::json report = loop.summary();
    if (!options.summary_path.empty()) write_report(report, options.summary_path);
    std::cerr << "sekishod: stopped" << backend.stop_note() << ". " << human_summary(report);
    return 0;
}

}  // namespace sekisho
