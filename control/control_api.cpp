#include "control_api.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <ctime>
#include <iostream>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "api_request.h"
#include "counters_report.h"
#include "content_rules_compile.h"
#include "data_plane.h"
#include "account_registry.h"
#include "event_log.h"
#include "subscriber_table.h"
#include "policy_compiler.h"
#include "subscriber_identity.h"
#include "whois.h"

namespace sekisho {

namespace {

using nlohmann::json;

api_response ok(const json& j) { return {200, api_json_text(j)}; }
api_response error(int status, const std::string& message) { return api_error(status, message); }


json prefix_diff(const std::vector<ip_prefix>& before, const std::vector<ip_prefix>& after) {
    std::set<std::string> a, b;
    for (const auto& p : before) a.insert(p.to_string());
    for (const auto& p : after) b.insert(p.to_string());
    json added = json::array(), removed = json::array();
    for (const auto& p : b)
        if (!a.count(p)) added.push_back(p);
    for (const auto& p : a)
        if (!b.count(p)) removed.push_back(p);
    return {{"added", added}, {"removed", removed}};
}

json policy_diff(const policy& a, const policy& b) {
    json d = json::object();
    auto lists = [&](const char* name, const std::vector<ip_prefix>& x, const std::vector<ip_prefix>& y) {
        json pd = prefix_diff(x, y);
        if (!pd["added"].empty() || !pd["removed"].empty()) d[name] = pd;
    };
    lists("subscribers.dynamic", a.dynamic_ranges, b.dynamic_ranges);
    lists("subscribers.static", a.static_ranges, b.static_ranges);
    lists("relays", a.relays, b.relays);
    if (a.smtp_ports != b.smtp_ports) d["ports.smtp"] = {{"before", a.smtp_ports}, {"after", b.smtp_ports}};
    if (a.submission_ports != b.submission_ports)
        d["ports.submission"] = {{"before", a.submission_ports}, {"after", b.submission_ports}};
    if (a.mode != b.mode) d["op25b.mode"] = {{"before", to_string(a.mode)}, {"after", to_string(b.mode)}};
    if (a.action != b.action) d["op25b.action"] = {{"before", to_string(a.action)}, {"after", to_string(b.action)}};
    std::map<std::string, const limit_rule*> la, lb;
    for (const auto& l : a.limits) la[l.name] = &l;
    for (const auto& l : b.limits) lb[l.name] = &l;
    json added = json::array(), removed = json::array(), changed = json::array();
    for (const auto& [name, l] : lb) {
        auto it = la.find(name);
        if (it == la.end()) added.push_back(name);
        else if (it->second->max != l->max || it->second->window_ns != l->window_ns || it->second->action != l->action ||
                 it->second->scope != l->scope || it->second->measure != l->measure ||
                 it->second->applies_to != l->applies_to || it->second->burst != l->burst ||
                 it->second->cooldown_ns != l->cooldown_ns)
            changed.push_back(name);
    }
    for (const auto& [name, l] : la)
        if (!lb.count(name)) removed.push_back(name);
    if (!added.empty() || !removed.empty() || !changed.empty())
        d["limits"] = {{"added", added}, {"removed", removed}, {"changed", changed}};
    if (a.bindings.size() != b.bindings.size()) d["subscribers.bindings"] = {{"before", a.bindings.size()}, {"after", b.bindings.size()}};
    return d;
}

// The event log (current file, and the last rotated one), as JSON objects,
// oldest first. Reads at most the last 64 MiB of each file.
std::vector<json> read_events(const std::string& path) {
    std::vector<json> out;
    for (const std::string& p : {path + ".1", path}) {
        std::ifstream in(p);
        if (!in) continue;
        in.seekg(0, std::ios::end);
        const auto size = static_cast<long long>(in.tellg());
        const long long start = std::max(0LL, size - (64LL << 20));
        in.seekg(start);
        std::string line;
        if (start > 0) std::getline(in, line);  // a partial first line
        while (std::getline(in, line)) {
            if (line.empty()) continue;
            try {
                out.push_back(json::parse(line));
            } catch (const json::parse_error&) {
                // a line cut by a crash: skip it
            }
        }
    }
    return out;
}

std::string subscriber_of(const json& e) {
    if (e.contains("subscriber") && e["subscriber"].is_string()) return e["subscriber"];
    if (e.contains("src") && e["src"].is_string()) return e["src"];
    return "";
}

int64_t event_seconds(const json& e) {
    const uint64_t ns = e.value("first_ns", e.value("time_ns", uint64_t{0}));
    return static_cast<int64_t>(ns / 1'000'000'000ull);
}

uint64_t event_count(const json& e) { return e.value("count", uint64_t{1}); }

// mail_session lines are a subscriber's SMTP activity, not an offence: they
// feed the SMTP counters, never the event counts.
bool is_session(const json& e) { return e.value("type", "") == "mail_session"; }
// api_change lines are the control plane's audit trail: no subscriber did them.
bool is_audit(const json& e) { return e.value("type", "") == "api_change"; }

// A subscriber's SMTP activity summed over mail_session lines.
struct smtp_counters {
    uint64_t sessions = 0, tls_sessions = 0, messages = 0, recipients = 0, rejected_recipients = 0;
    void add(const json& e) {
        const uint64_t n = event_count(e);
        sessions += n;
        if (e.value("tls", false)) tls_sessions += n;
        messages += e.value("messages", uint64_t{0});
        recipients += e.value("recipients", uint64_t{0});
        rejected_recipients += e.value("rejected_recipients", uint64_t{0});
    }
    uint64_t get(const std::string& what) const {
        return what == "sessions" ? sessions : what == "messages" ? messages : what == "recipients" ? recipients
                                                                                                       : rejected_recipients;
    }
    json to_json() const {
        return {{"sessions", sessions}, {"tls_sessions", tls_sessions}, {"messages", messages},
                {"recipients", recipients}, {"rejected_recipients", rejected_recipients}};
    }
};

}  // namespace

control_api::control_api(control_context ctx, std::string policy_text)
    : ctx_(std::move(ctx)), text_(std::move(policy_text)) {}

control_api::applied control_api::apply_text(const std::string& text, const std::string& source, bool dry_run) {
    const policy next = load_policy_text(text, source);
    const auto t0 = std::chrono::steady_clock::now();
    applied a{};
    a.diff_json = api_json_text(policy_diff(ctx_.plane->active_policy(), next));
    if (dry_run) {
        ctx_.plane->dry_run(next);  // a throwaway snapshot: proves the tables can be built
        a.generation = ctx_.plane->generation();
    } else {
        a.generation = ctx_.plane->apply(next);
        previous_text_ = text_;
        text_ = text;
    }
    a.notes = ctx_.plane->apply_notes();
    a.compile_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!dry_run && ctx_.observe_apply) ctx_.observe_apply(a.compile_seconds);
    return a;
}

void control_api::reload() {
    api_response r;
    try {
        const applied a = apply_text(read_policy_file(ctx_.policy_path), ctx_.policy_path, false);
        r = ok({{"generation", a.generation}});
        std::cerr << "sekishod: SIGHUP: policy " << ctx_.policy_path << " applied as generation " << a.generation
                  << std::endl;
        for (const auto& n : a.notes) std::cerr << "sekishod: not enforced by " << ctx_.plane->backend_name() << ": " << n << std::endl;
    } catch (const policy_error& e) {
        r = {422, api_json_text(json{{"error", "invalid policy; the running policy is unchanged"}, {"errors", e.errors()}})};
        std::cerr << "sekishod: SIGHUP: policy not applied, generation " << ctx_.plane->generation()
                  << " keeps running:\n" << e.what() << std::endl;
    } catch (const std::exception& e) {
        r = error(500, std::string("policy not applied, the running policy is unchanged: ") + e.what());
        std::cerr << "sekishod: SIGHUP: policy not applied, generation " << ctx_.plane->generation()
                  << " keeps running:\n" << e.what() << std::endl;
    }
    audit(nullptr, "policy_reload", "SIGHUP", r);
}

void control_api::audit(const api_command* c, const std::string& endpoint, const std::string& caller,
                        const api_response& r) {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    json rec = {{"time_ns", static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec)},
                {"type", "api_change"},
                {"endpoint", endpoint},
                {"caller", caller.empty() ? "in-process" : caller},
                {"status", r.status},
                {"generation", ctx_.plane->generation()}};
    if (c != nullptr) {
        if (c->endpoint == api_endpoint::bindings_add || c->endpoint == api_endpoint::bindings_del)
            rec["prefix"] = c->prefix.to_string();
        if (!c->account.empty()) rec["account"] = c->account;
    }
    if (r.status >= 300) {
        try {
            rec["error"] = json::parse(r.body).value("error", "");
        } catch (const std::exception&) {
        }
    }
    ctx_.plane->audit(api_json_text(rec));
}

api_response control_api::handle(const api_request& r) {
    const auto endpoint = api_endpoint_of(r.method, r.path);
    auto parsed = parse_api_request(r, static_cast<int64_t>(std::time(nullptr)));
    const api_command* c = std::get_if<api_command>(&parsed);
    api_response response;
    if (endpoint && reads_event_log(*endpoint) && ctx_.events_path == "-")
        response = error(404, "events go to standard output; start sekishod with --events FILE");
    else if (endpoint && needs_accounts(*endpoint) && (!ctx_.plane->subscriber_bindings() || !ctx_.plane->account_table()))
        response = error(501, std::string("not available with --backend ") + ctx_.plane->backend_name() +
                                  ": it has no subscriber bindings or accounts (docs/xdp.md)");
    else if (c == nullptr)
        response = std::move(std::get<api_response>(parsed));   // 400/404: which argument or path is wrong
    else
        response = dispatch(*c, r.body);
    // Audited: what changes state, refusals too (c: null when invalid); a dry run changes nothing.
    if (endpoint && changes_state(*endpoint) && (c == nullptr || !c->dry_run))
        audit(c, to_string(*endpoint), r.caller, response);
    return response;
}

api_response control_api::dispatch(const api_command& c, const std::string& body) {
    switch (c.endpoint) {
        case api_endpoint::status: return status();
        case api_endpoint::policy_show: return policy_show();
        case api_endpoint::policy_apply: return policy_apply(c, body);
        case api_endpoint::policy_rollback: return policy_rollback();
        case api_endpoint::bindings_list: return bindings_list(c);
        case api_endpoint::bindings_add: return bindings_add(c);
        case api_endpoint::bindings_del: return bindings_del(c);
        case api_endpoint::whois: return whois(c);
        case api_endpoint::accounts_list: return accounts_list(c);
        case api_endpoint::account_suspend: return account_suspend(c, true);
        case api_endpoint::account_resume: return account_suspend(c, false);
        case api_endpoint::events: return events(c);
        case api_endpoint::report: return report(c);
        case api_endpoint::top: return top(c);
    }
    return error(500, "unhandled endpoint");
}

api_response control_api::status() {
    data_plane& gw = *ctx_.plane;
    const json c = counters_json(gw.all_counters());
    const policy& pol = gw.active_policy();
    json subscribers = nullptr;   // no account table (XDP)
    if (subscriber_table* st = gw.subscriber_bindings(); st && gw.account_table())
        subscribers = {{"bindings", st->size()}, {"accounts", gw.account_table()->size()},
                       {"suspended", gw.account_table()->suspended_ids().size()}};
    uint64_t tx_full = 0;
    for (const char* side : {"access", "core"}) tx_full += c["ports"][side]["tx_full_drops"].get<uint64_t>();
    return ok({
        {"generation", gw.generation()},
        {"backend", gw.backend_name()},
        {"uptime_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - ctx_.started).count()},
        {"workers", ctx_.workers},
        {"ports", {{"access", ctx_.port_names[0]}, {"core", ctx_.port_names[1]}}},
        {"policy", {{"file", ctx_.policy_path}, {"op25b_mode", to_string(pol.mode)}, {"op25b_action", to_string(pol.action)},
                    {"limits", pol.limits.size()}, {"rollback_available", !previous_text_.empty()}}},
        {"frames", {{"in", c["frames_in"]}, {"forwarded", c["forwarded"]}, {"blocked", c["blocked"]},
                    {"monitored", c["monitored"]}, {"limited", c["limited"]},
                    {"malformed_dropped", c["malformed_dropped"]}, {"tx_full_drops", tx_full}}},
        {"smtp", {{"flows", gw.tracked_flows()}, {"messages", c["smtp"]["messages"]},
                  {"tempfails_sent", c["smtp"]["tempfails_sent"]}}},
        {"subscribers", subscribers},
        {"events", {{"written", gw.events().written()}, {"write_errors", gw.events().write_errors()},
                    {"ring_full", c["events"]["ring_full"]}}},
        {"api", {{"requests", ctx_.server ? ctx_.server->requests() : 0},
                 {"unauthorised", ctx_.server ? ctx_.server->unauthorised() : 0}}},
    });
}

api_response control_api::policy_show() {
    return ok({{"generation", ctx_.plane->generation()}, {"file", ctx_.policy_path}, {"text", text_}});
}

api_response control_api::policy_apply(const api_command& c, const std::string& text) {
    const bool dry_run = c.dry_run;
    try {
        const applied a = apply_text(text, "policy", dry_run);
        json body = {{"generation", a.generation}, {"dry_run", dry_run}, {"compile_ms", a.compile_seconds * 1000},
                     {"diff", json::parse(a.diff_json)}};
        if (!a.notes.empty()) body["not_enforced"] = a.notes;
        return ok(body);
    } catch (const policy_error& e) {
        return {422, api_json_text(json{{"error", "invalid policy; the running policy is unchanged"}, {"errors", e.errors()}})};
    } catch (const rule_compile_timeout& e) {
        return error(409, std::string("policy not applied, the running policy is unchanged: ") + e.what());
    } catch (const std::exception& e) {
        return error(500, std::string("policy not applied, the running policy is unchanged: ") + e.what());
    }
}

api_response control_api::policy_rollback() {
    if (previous_text_.empty()) return error(409, "no previous policy to return to");
    try {
        const std::string back = previous_text_;
        const applied a = apply_text(back, "policy (rollback)", false);
        return ok({{"generation", a.generation}, {"rolled_back", true}, {"diff", json::parse(a.diff_json)}});
    } catch (const std::exception& e) {
        return error(500, std::string("rollback failed, the running policy is unchanged: ") + e.what());
    }
}

api_response control_api::bindings_list(const api_command& c) {
    const std::string& account = c.account;
    json out = json::array();
    auto& reg = *ctx_.plane->account_table();
    ctx_.plane->subscriber_bindings()->for_each([&](const subscriber_key& k, uint32_t id) {
        const std::string* name = reg.name_of(id);
        if (!account.empty() && (name == nullptr || *name != account)) return;
        if (out.size() >= c.limit) return;
        ip_prefix p;
        p.family = k.family;
        p.length = k.length;
        std::copy(std::begin(k.addr), std::end(k.addr), p.bytes.begin());
        out.push_back({{"prefix", p.to_string()}, {"account", name ? *name : ""}});
    });
    return ok({{"bindings", out}, {"total", ctx_.plane->subscriber_bindings()->size()}});
}

api_response control_api::bindings_add(const api_command& c) {
    try {
        const uint32_t n = ctx_.plane->bind(c.prefix, c.account);
        return ok({{"bound", n}, {"prefix", c.prefix.to_string()}, {"account", c.account}});
    } catch (const std::exception& e) {
        return error(409, e.what());
    }
}

api_response control_api::bindings_del(const api_command& c) {
    try {
        const uint32_t n = ctx_.plane->unbind(c.prefix);
        return ok({{"unbound", n}, {"prefix", c.prefix.to_string()}});
    } catch (const std::exception& e) {
        return error(400, e.what());
    }
}

api_response control_api::whois(const api_command& c) {
    const ip_prefix& address = c.prefix;
    const int64_t at = c.at;
    json bindings = json::array();
    if (ctx_.identity && ctx_.identity->history()) {
        for (const auto& b : ctx_.identity->history()->who_held(address, at))
            bindings.push_back({{"address", b.address.to_string()}, {"account", b.account}, {"session_id", b.session_id},
                                {"nas", b.nas}, {"start", b.start},
                                {"stop", b.stop ? json(*b.stop) : json(nullptr)}, {"stop_cause", b.stop_cause}});
    }
    // The data plane's current binding, also for static ones.
    const subscriber_key key = address.family == 4 ? subscriber_key::v4(address.v4())
                                                    : subscriber_key::v6(address.bytes.data(),
                                                                         ctx_.plane->active_policy().ipv6_prefix_length);
    const std::string* current = nullptr;
    if (subscriber_table* st = ctx_.plane->subscriber_bindings(); st && ctx_.plane->account_table())
        current = ctx_.plane->account_table()->name_of(st->lookup(key));
    // That subscriber's events and SMTP counters within an hour of `at`.
    json events = json::array();
    std::map<std::string, uint64_t> counts;
    smtp_counters smtp;
    const std::string who = address.family == 4 ? address.to_string().substr(0, address.to_string().find('/')) : "";
    if (ctx_.events_path != "-")
        for (const json& e : read_events(ctx_.events_path)) {
            const std::string s = subscriber_of(e);
            bool match = !who.empty() ? s == who : false;
            if (address.family == 6 && !s.empty()) {
                std::string w;
                if (auto sp = parse_prefix(s, w))
                    match = sp->family == 6 && std::equal(sp->bytes.begin(), sp->bytes.begin() + address.length / 8,
                                                          address.bytes.begin());
            }
            if (!match || std::llabs(event_seconds(e) - at) > 3600) continue;
            if (is_session(e)) {
                smtp.add(e);
                continue;
            }
            counts[e.value("type", "?")] += event_count(e);
            if (events.size() < 200) events.push_back(e);
        }
    return ok({{"query", {{"address", address.to_string()}, {"at", at}}},
               {"bindings", bindings},
               {"bound_now", current ? json(*current) : json(nullptr)},
               {"smtp_within_1h", smtp.to_json()},
               {"events_within_1h", counts},
               {"events", events}});
}

api_response control_api::account_suspend(const api_command& c, bool suspend) {
    auto& reg = *ctx_.plane->account_table();
    const uint32_t id = reg.id_of(c.account);
    if (id == 0) return error(409, "the account registry is full");
    reg.set_suspended(id, suspend);
    return ok({{"account", c.account}, {"suspended", suspend}});
}

api_response control_api::accounts_list(const api_command& c) {
    auto& reg = *ctx_.plane->account_table();
    json out = json::array();
    if (c.only_suspended) {
        for (uint32_t id : reg.suspended_ids()) out.push_back({{"account", *reg.name_of(id)}, {"suspended", true}});
    } else {
        for (uint32_t id = 1; id <= reg.size() && out.size() < 10000; ++id)
            out.push_back({{"account", *reg.name_of(id)}, {"suspended", reg.suspended(id)}});
    }
    return ok({{"accounts", out}, {"total", reg.size()}});
}

api_response control_api::events(const api_command& c) {
    const std::string &type = c.type, &subscriber = c.subscriber, &account = c.account;
    std::vector<json> all = read_events(ctx_.events_path);
    json out = json::array();
    for (auto it = all.rbegin(); it != all.rend() && out.size() < c.n; ++it) {
        const json& e = *it;
        if (e.value("time_ns", uint64_t{0}) <= c.since_ns) continue;
        if (!type.empty() && e.value("type", "") != type) continue;
        if (!subscriber.empty() && subscriber_of(e) != subscriber) continue;
        if (!account.empty() && !(e.contains("account") && e["account"].is_string() && e["account"] == account)) continue;
        out.push_back(e);
    }
    std::reverse(out.begin(), out.end());
    return ok({{"events", out}});
}

api_response control_api::report(const api_command& c) {
    const int64_t since = c.since, until = c.until;
    const std::string format = c.csv ? "csv" : "json";
    struct row {
        std::string account;
        std::map<std::string, uint64_t> by_type;
        uint64_t total = 0;
        int64_t first = INT64_MAX, last = 0;
    };
    std::map<std::string, row> rows;
    std::map<std::string, uint64_t> messages;   // every subscriber's, kept for the offending ones
    for (const json& e : read_events(ctx_.events_path)) {
        const int64_t t = event_seconds(e);
        if (t < since || t > until || is_audit(e)) continue;
        if (is_session(e)) {
            messages[subscriber_of(e)] += e.value("messages", uint64_t{0});
            continue;
        }
        row& rw = rows[subscriber_of(e)];
        if (e.contains("account") && e["account"].is_string()) rw.account = e["account"];
        const uint64_t c = event_count(e);
        rw.by_type[e.value("type", "?")] += c;
        rw.total += c;
        rw.first = std::min(rw.first, t);
        rw.last = std::max(rw.last, t);
    }
    if (format == "csv") {
        std::ostringstream o;
        o << "source_address,account,events,op25b_blocks,limit_hits,suspended_refusals,messages,first_seen,last_seen\n";
        for (const auto& [addr, rw] : rows) {
            // A plain reference to capture: clang 14 cannot capture structured bindings (P1091R3, clang 16).
            const row& r = rw;
            auto get = [&r](const char* k) { auto it = r.by_type.find(k); return it == r.by_type.end() ? 0 : it->second; };
            o << addr << "," << rw.account << "," << rw.total << "," << get("op25b_block") << ","
              << get("limit_exceeded") << "," << get("account_suspended") << "," << messages[addr] << "," << rw.first
              << "," << rw.last << "\n";
        }
        return {200, o.str(), "text/csv"};
    }
    json out = json::array();
    for (const auto& [addr, rw] : rows)
        out.push_back({{"source_address", addr}, {"account", rw.account}, {"events", rw.total}, {"by_type", rw.by_type},
                       {"messages", messages[addr]}, {"first_seen", rw.first}, {"last_seen", rw.last}});
    return ok({{"since", since}, {"until", until}, {"sources", out}});
}

api_response control_api::top(const api_command& c) {
    const std::string& window_text = c.window_text;
    const std::string& by = c.by;
    const int64_t since = c.since;
    const bool by_smtp = by == "messages" || by == "recipients" || by == "rejected_recipients" || by == "sessions";
    std::map<std::string, std::pair<std::string, uint64_t>> score;
    for (const json& e : read_events(ctx_.events_path)) {
        if (event_seconds(e) < since || is_audit(e)) continue;
        const std::string type = e.value("type", "");
        uint64_t add;
        if (by_smtp) {
            if (type != "mail_session") continue;
            smtp_counters sc;
            sc.add(e);
            add = sc.get(by);
        } else if (by == "score") {
            if (type != "content_verdict") continue;
            // the content verdicts' scores (negative scores count as 0)
            add = static_cast<uint64_t>(std::max<int64_t>(0, e.value("score", int64_t{0}))) * event_count(e);
        } else {
            if (type == "mail_session" || (by != "events" && type != by)) continue;
            add = event_count(e);
        }
        auto& s = score[subscriber_of(e)];
        if (e.contains("account") && e["account"].is_string()) s.first = e["account"];
        s.second += add;
    }
    std::vector<std::pair<std::string, std::pair<std::string, uint64_t>>> v(score.begin(), score.end());
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.second > b.second.second; });
    json out = json::array();
    for (size_t i = 0; i < v.size() && i < 20; ++i)
        out.push_back({{"subscriber", v[i].first}, {"account", v[i].second.first}, {"count", v[i].second.second}});
    return ok({{"window", window_text}, {"by", by}, {"top", out}});
}

}  // namespace sekisho
