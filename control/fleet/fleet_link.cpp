#include "control/fleet/fleet_link.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <system_error>

#include "control/api/api_request.h"
#include "control/data_plane.h"
#include "control/fleet/operator_sync.h"
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
    if (!config_.postgres_conninfo_file.empty() && context_.decisions && context_.plane) {
        operator_sync_options o;
        o.gateway = config_.gateway;
        o.conninfo_file = config_.postgres_conninfo_file;
        o.log = context_.log;
        o.audit = [plane = context_.plane](nlohmann::json rec) {
            rec["generation"] = plane->generation();
            plane->audit(api_json_text(rec));
        };
        operator_sync_ = std::make_unique<operator_sync>(std::move(o), *context_.decisions, context_.plane->account_table());
    }
}

fleet_link::~fleet_link() = default;

void fleet_link::poll() {
    if (operator_sync_) operator_sync_->poll();
}

void fleet_link::add_to_snapshot(control_snapshot& snapshot) const {
    if (operator_sync_) operator_sync_->add_to_snapshot(snapshot);
}

nlohmann::json fleet_link::status() const {
    nlohmann::json j = {{"gateway", config_.gateway}, {"group", config_.group}};
    if (operator_sync_) j["operator"] = operator_sync_->status();
    return j;
}

}  // namespace sekisho
