#include "control/api/limit_desk.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <ctime>
#include <string>
#include <vector>

#include "control/data_plane.h"
#include "control/identity/account_registry.h"
#include "control/policy/policy.h"
#include "control/utc_time.h"
#include "dataplane/compiled_policy.h"
#include "dataplane/limits/subscriber_table.h"

namespace sekisho {

namespace {

using nlohmann::json;

uint64_t wall_now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

std::string address_text(const ip_prefix& p) {
    std::string s = p.to_string();
    return s.erase(s.find('/'));
}

// The address's keys as the tracker makes them (subscriber_affinity.h).
subscriber_key address_key(const ip_prefix& a) {
    return a.family == 4 ? subscriber_key::v4(a.v4()) : subscriber_key::v6(a.bytes.data(), 128);
}
subscriber_key prefix_key(const ip_prefix& a, uint8_t ipv6_prefix_length) {
    return a.family == 4 ? subscriber_key::v4(a.v4()) : subscriber_key::v6(a.bytes.data(), ipv6_prefix_length);
}

// Where limit `l`'s cell is for this subscriber: the shared account record, or
// a cell index of the worker's address or prefix record.
struct cell_place {
    enum class where : uint8_t { none, account, address_record, prefix_record } at = where::none;
    unsigned index = 0;
};
cell_place place_of(const compiled_limit& l, uint32_t account) {
    if (l.measure == limit_measure::recipients_per_message) return {};   // counted per message, in the flow
    switch (l.scope) {
        case limit_scope::address: return {cell_place::where::address_record, l.slot};
        case limit_scope::prefix: return {cell_place::where::prefix_record, l.slot};
        case limit_scope::account:
            if (account != 0) return {cell_place::where::account, l.slot};
            return {cell_place::where::prefix_record, max_subscriber_limit_slots + l.slot};   // unbound: its own
    }
    return {};
}

// One limit's reading from its cells (none: no state; several: one record per worker that saw
// the subscriber): count against max and cool-down of the record nearest to tripping, the total
// count over the records when there are several. `share`: an account cell's fleet share word
// (mail_limits.h), nullptr for the other cells.
json reading(const limit_rule& rule, const compiled_limit& l, const std::vector<const limit_cell*>& cells,
             const uint64_t* share, uint64_t now_ns) {
    json j = {{"limit", rule.name},
              {"measure", to_string(rule.measure)},
              {"scope", to_string(rule.scope)},
              {"action", to_string(rule.action)},
              {"window_s", static_cast<double>(rule.window_ns) / 1e9}};
    const bool rate = l.measure == limit_measure::connections;
    // Connections: how full the burst is, against the burst (a new connection is refused once
    // it is full; it drains at max per window). Counts per window: the count against max.
    uint32_t count = 0;
    uint64_t total = 0, until = 0;
    for (const limit_cell* cell : cells) {
        const uint32_t n = rate ? gcra_in_burst(*cell, now_ns, l.gcra_interval_ns) : window_count(*cell, now_ns, l.window_ns);
        count = std::max(count, n);
        total += n;
        until = std::max(until, cooldown_until(*cell));
    }
    const uint32_t max = rate ? rule.burst : rule.max;
    const bool cooling = until > now_ns;
    // The other gateways' count in this window (0 without a fleet), added to the own by the workers.
    const uint32_t others = share && !rate ? fleet_share_count(*share, now_ns, l.window_ns) : 0;
    j["count"] = count;
    if (share && !rate) j["fleet_share"] = others;
    j["max"] = max;
    if (rate) j["rate"] = std::to_string(rule.max) + " per " + std::to_string(rule.window_ns / 1'000'000'000ull) + " s";
    j["tracked"] = !cells.empty();
    if (cells.size() > 1) {
        j["records"] = cells.size();   // workers holding one for this subscriber
        j["count_total"] = total;
    }
    j["cooldown_s"] = cooling ? static_cast<double>(until - now_ns) / 1e9 : 0.0;
    j["cooldown_until"] = cooling ? json(utc_time_text(static_cast<int64_t>(until / 1'000'000'000ull))) : json(nullptr);
    j["cooldown_until_unix"] = cooling ? json(until / 1'000'000'000ull) : json(nullptr);
    j["tripped"] = cooling || uint64_t{count} + others >= max;
    return j;
}

}  // namespace

void limit_desk::handle(const api_command& c, api_reply reply) {
    if (plane_.limit_state() == nullptr || plane_.account_table() == nullptr || plane_.subscriber_bindings() == nullptr)
        return reply(api_error(501, std::string("not available with --backend ") + plane_.backend_name() +
                                        ": its limit state is not reachable (docs/xdp.md)"));
    const std::shared_ptr<const policy> pol = plane_.running_policy();
    if (!c.limit_name.empty()) {
        const limit_rule* named = nullptr;
        std::string names;
        for (const auto& l : pol->limits) {
            if (l.name == c.limit_name) named = &l;
            names += (names.empty() ? "" : ", ") + l.name;
        }
        if (named == nullptr)
            return reply(api_error(404, "no limit '" + c.limit_name + "' in the running policy (limits: " +
                                            (names.empty() ? "none" : names) + ")"));
        if (!c.by_address && named->scope != limit_scope::account)
            return reply(api_error(400, "limit '" + c.limit_name + "' has scope " + to_string(named->scope) +
                                            ": reset it by address"));
    }
    if (!c.by_address) {
        // Account scope only, in the shared records: answered now.
        account_registry& reg = *plane_.account_table();
        if (!reg.knows(c.account)) return reply(api_error(404, "no account '" + c.account + "'"));
        pending p{c, std::move(reply), reg.id_of(c.account), {}};
        api_response r = answer(p, nullptr);
        return p.reply(std::move(r));
    }
    if (waiting_.size() >= max_waiting)
        return reply(api_error(503, "too many limit requests waiting (" + std::to_string(max_waiting) + "); try again"));
    waiting_.push_back(pending{c, std::move(reply), 0, {}});
    if (!running_) start_next();
}

void limit_desk::start_next() {
    while (!running_ && !waiting_.empty()) {
        pending p = std::move(waiting_.front());
        waiting_.pop_front();
        subscriber_limit_state& state = *plane_.limit_state();
        const compiled_policy& compiled = state.compiled();
        const ip_prefix& a = p.command.prefix;
        limit_record_request r;
        r.address = address_key(a);
        r.prefix = prefix_key(a, compiled.ipv6_prefix_length());
        p.account = plane_.subscriber_bindings()->lookup(r.prefix);
        if (p.command.endpoint == api_endpoint::limits_reset) {
            for (unsigned i = 0; i < compiled.limit_count(); ++i) {
                const compiled_limit& l = compiled.limit(i);
                if (!p.command.limit_name.empty() && p.command.limit_name != l.name) continue;
                const cell_place at = place_of(l, p.account);
                if (at.at == cell_place::where::address_record) r.reset_address_cells |= 1u << at.index;
                if (at.at == cell_place::where::prefix_record) r.reset_prefix_cells |= 1u << at.index;
            }
        }
        if (!state.post_limit_request(r)) {   // not idle: a request of an earlier desk timed out unanswered
            p.reply(api_error(503, "the workers have not answered an earlier limit request; try again"));
            continue;
        }
        p.posted = std::chrono::steady_clock::now();
        running_ = std::move(p);
    }
}

void limit_desk::poll() {
    if (!running_) return;
    if (const auto records = plane_.limit_state()->limit_answers()) {
        api_response r = answer(*running_, &*records);
        running_->reply(std::move(r));
        running_.reset();
    } else if (std::chrono::steady_clock::now() - running_->posted > answer_timeout) {
        running_->reply(api_error(503, "the workers did not answer within " +
                                           std::to_string(answer_timeout.count()) + " s; nothing was read or reset"));
        running_.reset();
    }
    start_next();
}

api_response limit_desk::answer(const pending& p, const std::vector<limit_record_answer>* records) {
    subscriber_limit_state& state = *plane_.limit_state();
    const compiled_policy& compiled = state.compiled();
    const std::shared_ptr<const policy> pol = plane_.running_policy();
    const api_command& c = p.command;
    const bool reset = c.endpoint == api_endpoint::limits_reset;
    const uint64_t now_ns = wall_now_ns();
    account_record* acct = state.account_limits(p.account);
    const std::string* account_name = plane_.account_table()->name_of(p.account);

    subscriber_class cls = subscriber_class::none;
    if (c.by_address) {
        const ip_prefix& a = c.prefix;
        cls = a.family == 4 ? compiled.subscriber4(a.v4()) : compiled.subscriber6(a.bytes.data());
    }
    const uint32_t groups = acct ? std::atomic_ref<uint32_t>(acct->groups).load(std::memory_order_relaxed) : 0;

    json limits = json::array(), cleared = json::array();
    uint32_t account_cells = 0;   // cleared by this reset
    for (unsigned i = 0; i < compiled.limit_count() && i < pol->limits.size(); ++i) {
        const compiled_limit& l = compiled.limit(i);
        const limit_rule& rule = pol->limits[i];
        const cell_place at = place_of(l, p.account);
        if (at.at == cell_place::where::none) continue;
        if (!c.by_address && at.at != cell_place::where::account) continue;   // per address: ask by address
        std::vector<const limit_cell*> cells;
        limit_cell account_copy;
        if (at.at == cell_place::where::account && acct) {
            // Shared: read in place, then cleared (limit_cell.h); the reading is from before.
            account_copy = acct->cells[at.index];
            cells.push_back(&account_copy);
        } else if (records) {
            for (const limit_record_answer& worker : *records) {
                const limit_record_copy& rec =
                    at.at == cell_place::where::address_record ? worker.address : worker.prefix;
                if (rec.found) cells.push_back(&rec.cells[at.index]);
            }
        }
        const uint64_t* share = at.at == cell_place::where::account && acct ? &acct->fleet_share[at.index] : nullptr;
        json j = reading(rule, l, cells, share, now_ns);
        if (c.by_address) j["applies"] = compiled.limit_applies(i, cls, groups);
        const bool selected = c.limit_name.empty() || c.limit_name == rule.name;
        if (reset && selected) {
            if (at.at == cell_place::where::account && acct) {
                reset_account_cell(*acct, at.index);
                account_cells |= 1u << at.index;
            }
            cleared.push_back(rule.name);
        }
        limits.push_back(std::move(j));
    }
    json body = {{"account", account_name ? json(*account_name) : json(nullptr)},
                 {"time", utc_time_text(static_cast<int64_t>(now_ns / 1'000'000'000ull))},
                 {"time_ns", now_ns},
                 {"limits", limits}};
    if (c.by_address) body["address"] = address_text(c.prefix);
    if (reset) body["reset"] = cleared;   // the readings are from before the reset
    if (account_cells != 0 && account_reset_) account_reset_(p.account, account_cells, now_ns, compiled);
    return {200, api_json_text(body)};
}

}  // namespace sekisho
