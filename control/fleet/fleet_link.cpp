#include "control/fleet/fleet_link.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <system_error>

#include "control/fleet/event_shipper.h"
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
    if (!config_.postgres_conninfo_file.empty() && !context_.events_path.empty() && context_.events_path != "-") {
        event_shipper_options o;
        o.gateway = config_.gateway;
        o.conninfo_file = config_.postgres_conninfo_file;
        o.events_path = context_.events_path;
        o.cursor_path = spool + "/events.cursor";
        o.sync_interval_ns = config_.sync_interval_ns;
        events_ = std::make_unique<event_shipper>(std::move(o));
    }
}

fleet_link::~fleet_link() = default;

void fleet_link::poll() {
    if (events_ && context_.log)
        for (const std::string& line : events_->take_log_lines()) context_.log(line);
}

void fleet_link::add_to_snapshot(control_snapshot& s) const {
    if (events_) {
        const event_shipper_state e = events_->state();
        s.fleet_links.push_back({"postgres", "events", e.link_up, e.last_sync});
        s.fleet_events = true;
        s.fleet_events_shipped = e.shipped;
        s.fleet_events_unparsable = e.unparsable;
        s.fleet_events_refused = e.refused;
        s.fleet_events_gaps = e.gaps;
        s.fleet_events_backlog_bytes = e.backlog_bytes;
        s.fleet_events_lag_seconds = e.lag_seconds;
    }
}

nlohmann::json fleet_link::status() const {
    nlohmann::json s = {{"gateway", config_.gateway}, {"group", config_.group}};
    if (events_) s["events"] = events_->status();
    return s;
}

}  // namespace sekisho
