#include "control/fleet/fleet_link.h"

#include <nlohmann/json.hpp>

#include <ctime>
#include <filesystem>
#include <system_error>

#include "control/api/api_request.h"
#include "control/api/control_api.h"
#include "control/data_plane.h"
#include "control/identity/account_registry.h"
#include "control/fleet/account_limit_sync.h"
#include "control/fleet/binding_shipper.h"
#include "control/fleet/campaign_sync.h"
#include "control/fleet/operator_sync.h"
#include "control/fleet/policy_sync.h"
#include "control/fleet/event_shipper.h"
#include "control/observe/metrics.h"
#include "control/policy/policy.h"

namespace sekisho {

fleet_link::fleet_link(fleet_config config, fleet_context context)
    : config_(std::move(config)), context_(std::move(context)) {
    const std::string spool = context_.state_dir + "/fleet";
    std::error_code ec;
    std::filesystem::create_directories(spool, ec);
    if (ec) throw std::runtime_error("fleet: cannot create " + spool + ": " + ec.message());
    std::filesystem::permissions(spool, std::filesystem::perms(0750), ec);
    if (context_.log)
        context_.log("fleet: gateway " + config_.gateway + " in group " + config_.group + " (" + config_.path + ")");
    if (!config_.redis_address.empty() && context_.plane != nullptr && context_.plane->campaigns() != nullptr) {
        campaign_sync_settings cs;
        cs.gateway = config_.gateway;
        cs.redis_address = config_.redis_address;
        cs.redis_password_file = config_.redis_password_file;
        cs.redis_tls_ca_file = config_.redis_tls_ca_file;
        cs.sync_interval_ns = config_.sync_interval_ns;
        campaign_ = std::make_unique<campaign_sync>(cs, *context_.plane->campaigns(), context_.log);
        if (context_.control) context_.control->show_fleet_campaigns([this] { return campaign_->fleet_figures(); });
    }
    if (!config_.redis_address.empty() && context_.plane != nullptr && context_.plane->account_table() != nullptr &&
        context_.plane->limit_state() != nullptr) {
        account_limit_sync_settings as;
        as.gateway = config_.gateway;
        as.redis = redis_endpoint_of(config_);
        as.sync_interval_ns = config_.sync_interval_ns;
        account_limits_ = std::make_unique<account_limit_sync>(as, *context_.plane->account_table(), context_.log);
        if (context_.control)
            context_.control->on_account_limits_reset(
                [sync = account_limits_.get()](uint32_t account, uint32_t cells, uint64_t now_ns,
                                               const compiled_policy& policy) {
                    sync->account_reset(account, cells, now_ns, policy);
                });
    }
    if (!config_.postgres_conninfo_file.empty() && context_.decisions && context_.plane) {
        operator_sync_options o;
        o.gateway = config_.gateway;
        o.conninfo_file = config_.postgres_conninfo_file;
        o.log = context_.log;
        o.audit = [plane = context_.plane](nlohmann::json rec) {
            rec["generation"] = plane->generation();
            plane->audit(api_json_text(rec));
        };
        o.control = context_.control;
        operator_sync_ = std::make_unique<operator_sync>(std::move(o), *context_.decisions, context_.plane->account_table());
    }
    if (!config_.postgres_conninfo_file.empty()) policy_ = std::make_unique<policy_sync>(config_, context_);
    if (!config_.postgres_conninfo_file.empty() && !context_.events_path.empty() && context_.events_path != "-") {
        event_shipper_options o;
        o.gateway = config_.gateway;
        o.conninfo_file = config_.postgres_conninfo_file;
        o.events_path = context_.events_path;
        o.cursor_path = spool + "/events.cursor";
        o.sync_interval_ns = config_.sync_interval_ns;
        events_ = std::make_unique<event_shipper>(std::move(o));
    }
    if (!config_.postgres_conninfo_file.empty() && !context_.history_path.empty() &&
        context_.history_path != ":memory:") {
        binding_shipper_options o;
        o.gateway = config_.gateway;
        o.conninfo_file = config_.postgres_conninfo_file;
        o.history_path = context_.history_path;
        o.cursor_path = spool + "/bindings.cursor";
        o.sync_interval_ns = config_.sync_interval_ns;
        bindings_ = std::make_unique<binding_shipper>(std::move(o));
    }
}

fleet_link::~fleet_link() {
    if (account_limits_ && context_.control) context_.control->on_account_limits_reset(nullptr);
    if (campaign_ && context_.control) context_.control->show_fleet_campaigns(nullptr);
}

namespace {
// Unix time in ns: the workers' packet clock in live mode, whose windows the
// shared counts are aligned to.
uint64_t wall_clock_ns() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}
}  // namespace

void fleet_link::poll() {
    if (campaign_) {
        // The running policy's subscriber window (0: it counts no campaign subscribers).
        const std::shared_ptr<const policy> p = context_.plane->running_policy();
        const windowed_score& subscribers = p->inspection.campaign_subscribers;
        campaign_->poll(wall_clock_ns(), subscribers.max ? subscribers.window_ns : 0);
    }
    if (account_limits_) account_limits_->poll(wall_clock_ns(), context_.plane->limit_state()->compiled());
    if (operator_sync_) operator_sync_->poll();
    if (policy_) policy_->poll();
    if (events_ && context_.log)
        for (const std::string& line : events_->take_log_lines()) context_.log(line);
    if (bindings_ && context_.log)
        for (const std::string& line : bindings_->take_log_lines()) context_.log(line);
}

void fleet_link::add_to_snapshot(control_snapshot& snapshot) const {
    if (campaign_) {
        const campaign_sync_counters c = campaign_->counters();
        add_fleet_link_samples(snapshot.fleet, "redis", "campaign", c.link_up, c.link_downs, c.last_sync_seconds);
        snapshot.fleet.push_back({"sekisho_fleet_campaign_fingerprints_total",
                                  "Campaign fingerprints exchanged with the fleet's Redis, by direction (sent: with "
                                  "new subscriber bits; fetched: fleet bitmaps read back).",
                                  true, {{"direction", "sent"}}, static_cast<double>(c.fingerprints_sent)});
        snapshot.fleet.push_back({"sekisho_fleet_campaign_fingerprints_total", "", true, {{"direction", "fetched"}},
                                  static_cast<double>(c.fingerprints_fetched)});
        snapshot.fleet.push_back({"sekisho_fleet_campaign_merges_total",
                                  "Local campaign cells that gained subscriber bits from the fleet.", true, {},
                                  static_cast<double>(c.merges)});
        snapshot.fleet.push_back({"sekisho_fleet_campaign_merge_overflows_total",
                                  "Fleet campaign bits dropped: the local campaign table was full.", true, {},
                                  static_cast<double>(c.merge_overflows)});
        snapshot.fleet.push_back({"sekisho_fleet_campaign_recipients_sent_total",
                                  "Changed recipients counts of a fingerprint written to the fleet's Redis (HSET).",
                                  true, {}, static_cast<double>(c.recipients_sent)});
        snapshot.fleet.push_back({"sekisho_fleet_campaign_bad_fields_total",
                                  "Fields of the fleet's campaign recipients hashes that are not a count (ignored).",
                                  true, {}, static_cast<double>(c.bad_fields)});
    }
    if (account_limits_) {
        const account_limit_sync_counters c = account_limits_->counters();
        add_fleet_link_samples(snapshot.fleet, "redis", "account_limits", c.link_up, c.link_downs,
                               c.last_sync_seconds);
        snapshot.fleet.push_back({"sekisho_fleet_account_limit_syncs_total",
                                  "Intervals whose account-scope window counts were exchanged with the fleet's Redis.",
                                  true, {}, static_cast<double>(c.syncs)});
        snapshot.fleet.push_back({"sekisho_fleet_account_limit_counts_total",
                                  "Account window counts exchanged with the fleet's Redis, by direction (sent: a "
                                  "changed count written; fetched: an account's fleet counts read back).",
                                  true, {{"direction", "sent"}}, static_cast<double>(c.counts_sent)});
        snapshot.fleet.push_back({"sekisho_fleet_account_limit_counts_total", "", true, {{"direction", "fetched"}},
                                  static_cast<double>(c.counts_fetched)});
        snapshot.fleet.push_back({"sekisho_fleet_account_limit_shared_accounts",
                                  "Accounts whose limits the last sync gave a share of the other gateways' counts.",
                                  false, {}, static_cast<double>(c.accounts_shared)});
        snapshot.fleet.push_back({"sekisho_fleet_account_limit_resets_total",
                                  "Limit resets of an account that cleared its shares of the fleet's counts.", true,
                                  {}, static_cast<double>(c.resets)});
        snapshot.fleet.push_back({"sekisho_fleet_account_limit_reset_deletes_total",
                                  "Fleet count hashes of reset accounts, by outcome (deleted in Redis; dropped: more "
                                  "than the bound waited for the link).",
                                  true, {{"outcome", "deleted"}}, static_cast<double>(c.reset_deletes)});
        snapshot.fleet.push_back({"sekisho_fleet_account_limit_reset_deletes_total", "", true,
                                  {{"outcome", "dropped"}}, static_cast<double>(c.reset_deletes_dropped)});
        snapshot.fleet.push_back({"sekisho_fleet_account_limit_reset_deletes_pending",
                                  "Fleet count hashes of reset accounts waiting for the Redis link to be deleted.",
                                  false, {}, static_cast<double>(c.reset_deletes_pending)});
    }
    if (operator_sync_) operator_sync_->add_to_snapshot(snapshot);
    if (policy_) policy_->add_to_snapshot(snapshot);
    if (events_) {
        const event_shipper_state e = events_->state();
        add_fleet_link_samples(snapshot.fleet, "postgres", "events", e.link_up, e.reconnects,
                               static_cast<double>(e.last_sync));
        snapshot.fleet.push_back({"sekisho_fleet_events_shipped_total",
                                  "Event log lines shipped into the fleet's PostgreSQL (one row each).", true, {},
                                  static_cast<double>(e.shipped)});
        snapshot.fleet.push_back({"sekisho_fleet_events_bad_lines_total",
                                  "Event log lines shipped as a stand-in row, by reason: unparsable (not a JSON "
                                  "object), refused (PostgreSQL refused the line).",
                                  true, {{"reason", "unparsable"}}, static_cast<double>(e.unparsable)});
        snapshot.fleet.push_back({"sekisho_fleet_events_bad_lines_total", "", true, {{"reason", "refused"}},
                                  static_cast<double>(e.refused)});
        snapshot.fleet.push_back({"sekisho_fleet_events_gaps_total",
                                  "Times the event log rotated past the shipper's cursor: lines lost before they were "
                                  "shipped.",
                                  true, {}, static_cast<double>(e.gaps)});
        snapshot.fleet.push_back({"sekisho_fleet_events_backlog_bytes",
                                  "Bytes of the event log not yet shipped into PostgreSQL.", false, {},
                                  static_cast<double>(e.backlog_bytes)});
        snapshot.fleet.push_back({"sekisho_fleet_events_lag_seconds",
                                  "Now minus the time of the oldest event not yet shipped; 0 when none waits.", false,
                                  {}, e.lag_seconds});
    }
    if (bindings_) {
        const binding_shipper_state b = bindings_->state();
        add_fleet_link_samples(snapshot.fleet, "postgres", "bindings", b.link_up, b.reconnects,
                               static_cast<double>(b.last_sync));
        snapshot.fleet.push_back({"sekisho_fleet_bindings_shipped_total",
                                  "Binding history rows shipped into the fleet's PostgreSQL (a row shipped again "
                                  "after a change, or in a replayed batch, counts again).",
                                  true, {}, static_cast<double>(b.shipped)});
        snapshot.fleet.push_back({"sekisho_fleet_bindings_refused_total",
                                  "Binding history rows PostgreSQL refused (logged with their history id, skipped).",
                                  true, {}, static_cast<double>(b.refused)});
        snapshot.fleet.push_back({"sekisho_fleet_bindings_backlog_rows",
                                  "Binding history rows changed and not yet shipped into PostgreSQL.", false, {},
                                  static_cast<double>(b.backlog_rows)});
    }
}

nlohmann::json fleet_link::status() const {
    nlohmann::json j = {{"gateway", config_.gateway}, {"group", config_.group}};
    if (account_limits_) j["account_limits"] = account_limits_->status();
    if (campaign_) j["campaign"] = campaign_->status();
    if (operator_sync_) j["operator"] = operator_sync_->status();
    if (policy_) j["policy"] = policy_->status();
    if (events_) j["events"] = events_->status();
    if (bindings_) j["bindings"] = bindings_->status();
    return j;
}

}  // namespace sekisho
