// The campaign view: see campaign_view.h.
#include "control/api/campaign_view.h"

#include <algorithm>
#include <string>
#include <unordered_map>

namespace sekisho {

namespace {

struct row {
    uint64_t fingerprint = 0;
    uint32_t subscribers = 0;
    uint32_t recipients = 0;
    const campaign_fleet_figure* fleet = nullptr;
    uint32_t fleet_subscribers = 0;
    uint32_t judged = 0;   // the table's estimate, fleet bits included: what the workers compare
    uint32_t most() const { return std::max({subscribers, fleet_subscribers, judged}); }
};

nlohmann::json threshold(const windowed_score& s) {
    if (!s.max) return nullptr;
    return {{"max", s.max}, {"window_s", static_cast<double>(s.window_ns) / 1e9}};
}

}  // namespace

nlohmann::json campaign_view(const campaign_table& table, const inspection_settings& inspection, uint64_t now_ns,
                             const std::vector<campaign_fleet_figure>* fleet, uint64_t n, uint32_t min_subscribers) {
    // The table's window, as the workers choose it (content_inspector).
    const windowed_score& subs = inspection.campaign_subscribers;
    const windowed_score& rcpts = inspection.campaign_recipients;
    const uint64_t window_ns = subs.max ? subs.window_ns : rcpts.window_ns;
    const bool counting = inspection.enabled && (subs.max || rcpts.max) && window_ns != 0;
    nlohmann::json out = {{"counting", counting},
                          {"fleet", fleet != nullptr},
                          {"thresholds", {{"subscribers", threshold(subs)}, {"recipients_per_subscriber", threshold(rcpts)}}},
                          {"campaigns", nlohmann::json::array()},
                          {"matching", 0}};
    if (!counting) return out;
    const uint32_t window = campaign_table::window_index(now_ns, window_ns);
    out["window_s"] = static_cast<double>(window_ns) / 1e9;
    out["window_start"] = static_cast<double>(now_ns / window_ns * window_ns) / 1e9;

    std::vector<row> rows;
    std::unordered_map<uint64_t, size_t> at;
    std::vector<campaign_table::subscriber_bits> table_bits;
    table.for_each_active(window, [&](uint64_t fp, uint32_t, uint32_t recipients, const campaign_table::subscriber_bits& bits) {
        at[fp] = rows.size();
        const uint32_t judged = campaign_table::estimate_of(bits);
        rows.push_back({fp, judged, recipients, nullptr, 0, judged});
        table_bits.push_back(bits);
    });
    if (fleet != nullptr)
        for (const campaign_fleet_figure& f : *fleet) {
            if (f.window != window) continue;
            const auto it = at.find(f.fingerprint);
            row& r = it != at.end() ? rows[it->second] : rows.emplace_back(row{f.fingerprint, 0, 0, nullptr, 0, 0});
            r.fleet = &f;
            r.fleet_subscribers = campaign_table::estimate_of(f.bits);
            if (it != at.end()) {   // this gateway's own: the table's bits without those the fleet brought
                campaign_table::subscriber_bits own = table_bits[it->second];
                for (size_t i = 0; i < own.size(); ++i) own[i] &= ~f.merged[i];
                r.subscribers = campaign_table::estimate_of(own);
            }
        }
    std::erase_if(rows, [&](const row& r) { return r.most() < min_subscribers; });
    out["matching"] = rows.size();
    const size_t shown = std::min<size_t>(rows.size(), n);
    std::partial_sort(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(shown), rows.end(),
                      [](const row& a, const row& b) {
                          if (a.most() != b.most()) return a.most() > b.most();
                          if (a.recipients != b.recipients) return a.recipients > b.recipients;
                          return a.fingerprint < b.fingerprint;
                      });
    for (size_t i = 0; i < shown; ++i) {
        const row& r = rows[i];
        nlohmann::json j = {{"fingerprint", fingerprint_hex(r.fingerprint)},
                            {"subscribers", r.subscribers},
                            {"recipients", r.recipients},
                            {"over_subscribers", subs.max != 0 && r.judged > subs.max}};
        if (fleet != nullptr) {
            j["fleet_subscribers"] = r.fleet ? nlohmann::json(r.fleet_subscribers) : nlohmann::json(nullptr);
            j["fleet_recipients"] = r.fleet ? nlohmann::json(r.fleet->recipients) : nlohmann::json(nullptr);
        }
        out["campaigns"].push_back(std::move(j));
    }
    return out;
}

}  // namespace sekisho
