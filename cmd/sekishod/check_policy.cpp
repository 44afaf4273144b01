#include "cmd/sekishod/check_policy.h"

#include <iostream>

#include "control/fleet/fleet_config.h"
#include "control/policy/policy.h"
#include "control/policy/policy_files.h"

namespace sekisho {

int run_check_policy(const std::string& path, const std::string& fleet_path) {
    const policy p = load_policy_file(path);
    check_policy_files(p);
    std::cout << path << ": ok (" << p.dynamic_ranges.size() << " dynamic, " << p.static_ranges.size()
              << " static, " << p.relays.size() << " relay prefixes; op25b " << to_string(p.mode) << "/"
              << to_string(p.action) << "; " << p.limits.size() << " limits, " << p.bindings.size()
              << " static bindings"
              << (p.identity.radius_listen.empty() ? "" : "; RADIUS on " + p.identity.radius_listen)
              << (p.identity.history_database.empty() ? "" : "; history " + p.identity.history_database) << ")\n";
    if (!fleet_path.empty()) {
        const fleet_config f = read_fleet_config(fleet_path);
        std::cout << fleet_path << ": ok (gateway " << f.gateway << ", group " << f.group
                  << (f.postgres_conninfo_file.empty() ? "" : "; PostgreSQL") << (f.redis_address.empty() ? "" : "; Redis")
                  << ")\n";
    }
    return 0;
}

}  // namespace sekisho
