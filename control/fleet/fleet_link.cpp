#include "control/fleet/fleet_link.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <system_error>

#include "control/fleet/policy_sync.h"
#include "control/observe/metrics.h"

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
    if (!config_.postgres_conninfo_file.empty()) policy_ = std::make_unique<policy_sync>(config_, context_);
}

fleet_link::~fleet_link() = default;

void fleet_link::poll() {
    if (policy_) policy_->poll();
}

void fleet_link::add_to_snapshot(control_snapshot& snapshot) const {
    if (policy_) policy_->add_to_snapshot(snapshot);
}

nlohmann::json fleet_link::status() const {
    nlohmann::json j = {{"gateway", config_.gateway}, {"group", config_.group}};
    if (policy_) j["policy"] = policy_->status();
    return j;
}

}  // namespace sekisho
