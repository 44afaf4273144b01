#include "control/fleet/fleet_link.h"

#include <nlohmann/json.hpp>

#include <ctime>
#include <filesystem>
#include <system_error>

#include "control/data_plane.h"
#include "control/fleet/campaign_sync.h"
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
        cs.redis_address = config_.redis_address;
        cs.redis_password_file = config_.redis_password_file;
        cs.redis_tls_ca_file = config_.redis_tls_ca_file;
        cs.sync_interval_ns = config_.sync_interval_ns;
        campaign_ = std::make_unique<campaign_sync>(cs, *context_.plane->campaigns(), context_.log);
    }
}

fleet_link::~fleet_link() = default;

void fleet_link::poll() {
    if (campaign_) {
        // The running policy's subscriber window (0: it counts no campaign subscribers).
        const std::shared_ptr<const policy> p = context_.plane->running_policy();
        const windowed_score& subscribers = p->inspection.campaign_subscribers;
        timespec ts{};
        clock_gettime(CLOCK_REALTIME, &ts);
        const uint64_t now = static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
        campaign_->poll(now, subscribers.max ? subscribers.window_ns : 0);
    }
}

void fleet_link::add_to_snapshot(control_snapshot& snapshot) const {
    if (campaign_) {
        const campaign_sync_counters c = campaign_->counters();
        snapshot.fleet_links.push_back({"redis", "campaign", c.link_up, c.link_downs, c.last_sync_seconds});
        snapshot.fleet_campaign = true;
        snapshot.fleet_campaign_fingerprints_sent = c.fingerprints_sent;
        snapshot.fleet_campaign_fingerprints_fetched = c.fingerprints_fetched;
        snapshot.fleet_campaign_merges = c.merges;
        snapshot.fleet_campaign_merge_overflows = c.merge_overflows;
    }
}

nlohmann::json fleet_link::status() const {
    nlohmann::json j = {{"gateway", config_.gateway}, {"group", config_.group}};
    if (campaign_) j["campaign"] = campaign_->status();
    return j;
}

}  // namespace sekisho
