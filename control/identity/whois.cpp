#include "control/identity/whois.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <ctime>
#include <iostream>
#include <stdexcept>

#include "control/identity/binding_history.h"
#include "control/policy/policy.h"
#include "control/utc_time.h"

namespace sekisho {

int run_whois(const whois_options& o) {
    std::string why;
    const auto address = parse_prefix(o.address, why);
    if (!address) throw std::runtime_error("--whois: " + why);
    int64_t at = std::time(nullptr);
    if (!o.at.empty()) {
        const auto t = parse_time(o.at);
        if (!t) throw std::runtime_error("--at: '" + o.at + "' is not Unix seconds or YYYY-MM-DDTHH:MM:SSZ");
        at = *t;
    }
    binding_history history(o.history_path, binding_history::access::read_only);
    const auto rows = history.who_held(*address, at);
    // A row without an account (a Start without User-Name) is a session of nobody.
    nlohmann::json held_by = nlohmann::json::array();
    for (const auto& r : rows)
        if (!r.account.empty() && std::find(held_by.begin(), held_by.end(), r.account) == held_by.end())
            held_by.push_back(r.account);
    if (o.json) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& r : rows)
            out.push_back({{"address", r.address.to_string()},
                           {"account", r.account},
                           {"session_id", r.session_id},
                           {"nas", r.nas},
                           {"start", r.start},
                           {"start_utc", utc_time_text(r.start)},
                           {"stop", r.stop ? nlohmann::json(*r.stop) : nlohmann::json(nullptr)},
                           {"stop_utc", r.stop ? nlohmann::json(utc_time_text(*r.stop)) : nlohmann::json(nullptr)},
                           {"stop_cause", r.stop_cause}});
        std::cout << nlohmann::json{{"query", {{"address", address->to_string()}, {"at", at}, {"at_utc", utc_time_text(at)}}},
                                    {"bindings", out},
                                    {"held_by", held_by}}
                         .dump()
                  << "\n";
    } else if (rows.empty()) {
        std::cout << "no binding for " << address->to_string() << " at " << utc_time_text(at) << "\n";
    } else {
        for (const auto& r : rows)
            std::cout << r.address.to_string() << " held by " << r.account << " (session " << r.session_id
                      << ", NAS " << r.nas << ") from " << utc_time_text(r.start) << " to "
                      << (r.stop ? utc_time_text(*r.stop) + " (" + r.stop_cause + ")" : std::string("now (open)")) << "\n";
    }
    return held_by.empty() ? 3 : 0;
}

}  // namespace sekisho
