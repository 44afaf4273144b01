#include "control/fleet/policy_sync.h"

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>

#include "control/api/api_server.h"
#include "control/api/control_api.h"
#include "control/build_version.h"
#include "control/data_plane.h"
#include "control/fleet/pg_connection.h"
#include "control/fleet/policy_schema.h"
#include "control/observe/counter_names.h"
#include "control/observe/counters_report.h"
#include "control/observe/metrics.h"
#include "control/state/policy_history.h"

namespace sekisho {

namespace {

using nlohmann::json;

constexpr auto first_backoff = std::chrono::milliseconds(100);
constexpr auto max_backoff = std::chrono::milliseconds(5000);
constexpr size_t max_error_text = 2000;

std::string cursor_path(const fleet_context& c) { return c.state_dir + "/fleet/policy_version"; }

// The newest fleet version handled, or 0 when no file. Throws for a file
// that is there but cannot be trusted.
uint64_t read_cursor(const std::string& path) {
    std::error_code missing;
    if (!std::filesystem::exists(path, missing) && !missing) return 0;
    std::ifstream in(path);
    if (!in) {
        throw std::runtime_error("fleet: " + path + ": cannot read: " + std::strerror(errno));
    }
    std::string text;
    std::getline(in, text);
    uint64_t v = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || ptr != text.data() + text.size())
        throw std::runtime_error("fleet: " + path + ": not a policy version: '" + text.substr(0, 40) +
                                 "' (remove it to take the group's desired version as new)");
    return v;
}

// temp + fsync + rename + fsync of the directory: the file holds the old
// version or the new one, whenever the machine stops.
void write_cursor(const std::string& path, uint64_t version) {
    const std::string temp = path + ".tmp";
    const std::string text = std::to_string(version) + "\n";
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) throw std::runtime_error(temp + ": cannot create: " + std::strerror(errno));
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    const int err = errno;
    ::close(fd);
    if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) {
        ::unlink(temp.c_str());
        throw std::runtime_error(path + ": cannot write: " + std::strerror(ok ? errno : err));
    }
    const std::string dir = std::filesystem::path(path).parent_path().string();
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) throw std::runtime_error(dir + ": cannot open to sync: " + std::strerror(errno));
    const bool synced = ::fsync(dfd) == 0;
    const int sync_err = errno;
    ::close(dfd);
    if (!synced) throw std::runtime_error(dir + ": fsync: " + std::strerror(sync_err));
}

// An apply's refusal as one line: the error and each "file:line: message".
std::string refusal_text(uint64_t version, const api_response& r) {
    std::string t = "fleet version " + std::to_string(version) + " refused (" + std::to_string(r.status) + "): ";
    const json j = json::parse(r.body, nullptr, false);
    if (j.is_object()) {
        t += j.value("error", std::string("?"));
        if (j.contains("errors") && j["errors"].is_array())
            for (const auto& e : j["errors"])
                if (e.is_string()) t += "; " + e.get<std::string>();
    } else {
        t += r.body;
    }
    if (t.size() > max_error_text) t.resize(max_error_text);
    return t;
}

int64_t unix_now() { return static_cast<int64_t>(std::time(nullptr)); }

}  // namespace

void ensure_policy_columns(pg_connection& pg) {
    // "column ... already exists, skipping" at every connect says nothing.
    pg.exec("SET client_min_messages = warning", "quiet the schema notices");
    pg.in_transaction("the policy columns", [&] {
        pg.exec(fleet_sql::schema_lock, "lock the schema");
        // Columns there already: nothing to alter, which only the table's owner may do
        // (a deployment may have created the table with another role).
        pg_result have = pg.exec(fleet_sql::count_gateway_policy_columns, "look for the gateways table's policy columns");
        if (std::string(PQgetvalue(have.get(), 0, 0)) != "4")
            pg.exec(fleet_sql::add_gateway_policy_columns, "add the gateways table's policy columns");
    });
}

// What the two threads exchange; every field under `m`.
struct policy_sync::shared {
    std::mutex m;
    std::condition_variable wake;
    bool stop = false;
    // control thread -> fleet thread: what the heartbeat reports.
    uint64_t generation = 0, fleet_version_in_force = 0;
    json counters = json::object();
    // fleet thread -> control thread: a version to apply.
    std::optional<std::pair<uint64_t, std::string>> to_apply;
    bool in_flight = false;
    // control thread -> fleet thread: an apply's outcome (version, error or "").
    std::optional<std::pair<uint64_t, std::string>> outcome;
    bool outcome_applied = false;
    // The fleet thread's account.
    uint64_t handled = 0;          // the newest version applied or refused
    uint64_t desired = 0;          // the group's, as last read
    uint64_t refused_version = 0;
    uint64_t apply_failures = 0;
    std::string last_error;        // the last outcome's refusal, "" once a version applied
    std::string missing_version;   // the desired version is not in policy_versions
    bool link_up = false;
    uint64_t link_downs = 0;
    int64_t last_sync = 0;
};

std::chrono::milliseconds policy_sync::heartbeat_interval(const fleet_config& config) {
    const auto ms = std::chrono::milliseconds(config.sync_interval_ns / 1'000'000);
    // At least 100 ms: the control thread sums the workers' counters once per heartbeat.
    return std::clamp(ms, std::chrono::milliseconds(100), std::chrono::milliseconds(1000));
}

policy_sync::policy_sync(const fleet_config& config, const fleet_context& context)
    : config_(config), context_(context), interval_(heartbeat_interval(config)), s_(std::make_shared<shared>()) {
    uint64_t handled = read_cursor(cursor_path(context_));
    if (context_.control)
        if (const policy_generation* g = context_.control->policy_in_force())
            if (g->origin.kind == "fleet") handled = std::max(handled, g->origin.fleet_version);
    s_->handled = handled;
    refresh_view();
    thread_ = std::thread([this] { run(); });
}

policy_sync::~policy_sync() {
    {
        std::lock_guard lock(s_->m);
        s_->stop = true;
    }
    s_->wake.notify_all();
    if (thread_.joinable()) thread_.join();
}

void policy_sync::refresh_view() {
    last_view_ = std::chrono::steady_clock::now();
    uint64_t generation = 0, fleet_version = 0;
    json counters = json::object();
    if (context_.plane) {
        generation = context_.plane->generation();
        const json c = counters_json(context_.plane->all_counters());
        counters["blocked"] = c.value("blocked", uint64_t{0});
        counters["malformed_dropped"] = c.value("malformed_dropped", uint64_t{0});
        counters["ring_drops"] = c.contains(events_summary_object) ? c[events_summary_object].value("ring_full", uint64_t{0})
                                                                   : uint64_t{0};
    }
    if (context_.control) {
        counters["reload_failures"] = context_.control->reload_failures();
        if (const policy_generation* g = context_.control->policy_in_force()) {
            generation = std::max(generation, g->origin.generation);
            if (g->origin.kind == "fleet") fleet_version = g->origin.fleet_version;
        }
    }
    std::lock_guard lock(s_->m);
    s_->generation = generation;
    s_->fleet_version_in_force = fleet_version;
    s_->counters = std::move(counters);
}

void policy_sync::poll() {
    if (std::chrono::steady_clock::now() - last_view_ >= interval_) refresh_view();
    std::optional<std::pair<uint64_t, std::string>> next;
    {
        std::lock_guard lock(s_->m);
        if (s_->to_apply && !s_->in_flight) {
            next = std::move(s_->to_apply);
            s_->to_apply.reset();
            s_->in_flight = true;
        }
    }
    if (!next || context_.control == nullptr) return;
    const uint64_t version = next->first;
    if (context_.log)
        context_.log("fleet: applying policy version " + std::to_string(version) + " of group " + config_.group);
    std::shared_ptr<shared> s = s_;
    auto log = context_.log;
    context_.control->apply_fleet_policy(
        std::move(next->second), version, config_.group, [s, version, log](const api_response& r) {
            std::string error;
            if (r.status != 200) error = refusal_text(version, r);
            if (log) log(error.empty() ? "fleet: policy version " + std::to_string(version) + " in force" : error);
            std::lock_guard lock(s->m);
            s->in_flight = false;
            // sekishod stopping (503): not handled; the next start takes it up again.
            if (r.status != 503) {
                s->outcome = std::make_pair(version, error);
                s->outcome_applied = r.status == 200;
            }
            s->wake.notify_all();
        });
    refresh_view();
}

void policy_sync::add_to_snapshot(control_snapshot& snapshot) const {
    std::lock_guard lock(s_->m);
    add_fleet_link_samples(snapshot.fleet, "postgres", "policy", s_->link_up, s_->link_downs,
                           static_cast<double>(s_->last_sync));
    snapshot.fleet.push_back({"sekisho_fleet_policy_version",
                              "Fleet policy version in force (0: the generation in force is not the fleet's).", false,
                              {}, static_cast<double>(s_->fleet_version_in_force)});
    snapshot.fleet.push_back({"sekisho_fleet_policy_apply_failures_total",
                              "Fleet policy versions this gateway refused; the previous generation keeps running.", true,
                              {}, static_cast<double>(s_->apply_failures)});
}

json policy_sync::status() const {
    std::lock_guard lock(s_->m);
    return {{"link_up", s_->link_up},
            {"fleet_version_in_force", s_->fleet_version_in_force},
            {"handled_version", s_->handled},
            {"desired_version", s_->desired},
            {"last_error", s_->missing_version.empty() ? s_->last_error : s_->missing_version},
            {"last_sync", s_->last_sync},
            {"apply_failures", s_->apply_failures}};
}

void policy_sync::run() {
    std::unique_ptr<pg_connection> pg;
    auto backoff = first_backoff;
    bool tables_seen = false;
    std::string last_logged;
    const std::string cursor = cursor_path(context_);
    auto log_once = [&](const std::string& line) {
        if (line == last_logged || !context_.log) return;
        last_logged = line;
        context_.log(line);
    };
    for (;;) {
        std::chrono::milliseconds wait = interval_;
        try {
            // An outcome first: the heartbeat below reports it.
            std::optional<std::pair<uint64_t, std::string>> outcome;
            bool applied = false;
            {
                std::lock_guard lock(s_->m);
                if (s_->stop) return;
                outcome = std::move(s_->outcome);
                s_->outcome.reset();
                applied = s_->outcome_applied;
            }
            if (outcome) {
                try {
                    write_cursor(cursor, outcome->first);
                } catch (const std::exception& e) {
                    log_once(std::string("fleet: ") + e.what());
                }
                std::lock_guard lock(s_->m);
                s_->handled = std::max(s_->handled, outcome->first);
                s_->last_error = outcome->second;
                if (!applied) {
                    ++s_->apply_failures;
                    s_->refused_version = outcome->first;
                }
            }
            if (!pg) {
                pg = std::make_unique<pg_connection>(config_.postgres_conninfo_file);
                ensure_fleet_schema(*pg);
                ensure_policy_columns(*pg);
                log_once("fleet: policy: connected to PostgreSQL");
            }
            uint64_t generation, fleet_version, handled, refused, failures, desired_before;
            bool in_flight;
            json health;
            std::string last_error;
            {
                std::lock_guard lock(s_->m);
                generation = s_->generation;
                fleet_version = s_->fleet_version_in_force;
                health = s_->counters;
                handled = s_->handled;
                refused = s_->refused_version;
                failures = s_->apply_failures;
                in_flight = s_->in_flight || s_->to_apply.has_value();
                last_error = s_->missing_version.empty() ? s_->last_error : s_->missing_version;
                desired_before = s_->desired;
            }
            health["fleet_apply_failures"] = failures;
            health["refused_version"] = refused;
            health["desired_older"] = desired_before != 0 && desired_before < handled ? desired_before : 0;
            pg->exec_params(
                "INSERT INTO gateways (gateway, grp, version, generation_in_force, fleet_version_in_force, health,"
                " last_error, last_seen) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, now())"
                " ON CONFLICT (gateway) DO UPDATE SET grp = EXCLUDED.grp, version = EXCLUDED.version,"
                " generation_in_force = EXCLUDED.generation_in_force,"
                " fleet_version_in_force = EXCLUDED.fleet_version_in_force, health = EXCLUDED.health,"
                " last_error = EXCLUDED.last_error, last_seen = now()",
                {config_.gateway, config_.group, sekisho_version, std::to_string(generation),
                 std::to_string(fleet_version), health.dump(), last_error},
                "heartbeat (gateways)");
            if (!tables_seen) {
                pg_result t = pg->exec("SELECT to_regclass('group_desired') IS NOT NULL", "look for group_desired");
                tables_seen = std::string(PQgetvalue(t.get(), 0, 0)) == "t";
            }
            uint64_t desired = 0;
            if (tables_seen) {
                pg_result d = pg->exec_params("SELECT version FROM group_desired WHERE grp = $1", {config_.group},
                                              "read the group's desired version");
                if (PQntuples(d.get()) == 1) desired = std::stoull(PQgetvalue(d.get(), 0, 0));
            }
            std::optional<std::pair<uint64_t, std::string>> fetched;
            std::string missing;
            if (desired > handled && !in_flight) {
                pg_result v = pg->exec_params("SELECT text FROM policy_versions WHERE version = $1",
                                              {std::to_string(desired)}, "fetch the policy version");
                if (PQntuples(v.get()) == 1) fetched = std::make_pair(desired, std::string(PQgetvalue(v.get(), 0, 0)));
                else missing = "group " + config_.group + " desires version " + std::to_string(desired) +
                               ", which policy_versions does not hold; the policy in force stays";
            }
            if (!missing.empty()) log_once("fleet: " + missing);
            if (desired != 0 && desired < handled)
                log_once("fleet: group " + config_.group + " desires version " + std::to_string(desired) +
                         ", older than version " + std::to_string(handled) +
                         " handled here: not rolled back (push the old text as a new version)");
            {
                std::lock_guard lock(s_->m);
                s_->link_up = true;
                s_->desired = desired;
                s_->last_sync = unix_now();
                if (fetched) s_->to_apply = std::move(fetched);
                s_->missing_version = missing;   // reported at the next heartbeat, until it is found
            }
            backoff = first_backoff;
        } catch (const std::exception& e) {
            // Lost link or refused statement alike: reconnect with backoff; what is in force stays.
            pg.reset();
            tables_seen = false;
            {
                std::lock_guard lock(s_->m);
                if (s_->link_up || s_->link_downs == 0) ++s_->link_downs;   // one outage, however many retries
                s_->link_up = false;
            }
            log_once(std::string("fleet: policy: ") + e.what() + "; the policy in force stays, retrying");
            wait = backoff;
            backoff = std::min(backoff * 2, max_backoff);
        }
        std::unique_lock lock(s_->m);
        s_->wake.wait_for(lock, wait, [&] { return s_->stop || s_->outcome.has_value(); });
        if (s_->stop) return;
    }
}

}  // namespace sekisho
