#include "control/api/control_api.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <iostream>
#include <map>

#include "control/identity/account_registry.h"
#include "control/api/api_request.h"
#include "control/policy/content_rules_compile.h"
#include "control/observe/counters_report.h"
#include "control/binding_table.h"
#include "control/build_version.h"
#include "control/data_plane.h"
#include "control/observe/event_log.h"
#include "control/api/event_queries.h"
#include "control/policy/policy.h"
#include "control/policy/policy_files.h"
#include "control/identity/subscriber_identity.h"
#include "dataplane/limits/subscriber_table.h"

namespace sekisho {

namespace {

using nlohmann::json;

api_response ok(const json& j) { return {200, api_json_text(j)}; }
api_response error(int status, const std::string& message) { return api_error(status, message); }

// Prefix lists of a million entries are compared sorted, not through sets of
// strings; at most this many of each side are listed (the counts are exact).
constexpr size_t max_listed_prefixes = 100;

bool prefix_less(const ip_prefix& a, const ip_prefix& b) {
    if (a.family != b.family) return a.family < b.family;
    if (a.bytes != b.bytes) return a.bytes < b.bytes;
    return a.length < b.length;
}

json prefix_diff(std::vector<ip_prefix> before, std::vector<ip_prefix> after) {
    std::sort(before.begin(), before.end(), prefix_less);
    std::sort(after.begin(), after.end(), prefix_less);
    std::vector<ip_prefix> added, removed;
    std::set_difference(after.begin(), after.end(), before.begin(), before.end(), std::back_inserter(added), prefix_less);
    std::set_difference(before.begin(), before.end(), after.begin(), after.end(), std::back_inserter(removed), prefix_less);
    auto listed = [](const std::vector<ip_prefix>& v) {
        json out = json::array();
        for (size_t i = 0; i < v.size() && i < max_listed_prefixes; ++i) out.push_back(v[i].to_string());
        return out;
    };
    json d = {{"added", listed(added)}, {"removed", listed(removed)}};
    if (added.size() > max_listed_prefixes || removed.size() > max_listed_prefixes) {
        d["added_count"] = added.size();
        d["removed_count"] = removed.size();
    }
    return d;
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

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

// ---------------------------------------------------------------- policy changes

struct control_api::change_result {
    std::optional<api_response> refusal;          // the change cannot apply: the answer
    std::unique_ptr<prepared_policy> prepared;    // else: built, not in force
    json diff = json::object();
    double prepare_seconds = 0;
};

struct control_api::change {
    enum class kind { apply, dry_run, rollback, reload } what = kind::apply;
    std::string text;       // reload: read from the file on the change's thread
    std::string source;     // the name in messages: "policy", the file's path
    std::string endpoint;   // audit: policy_apply, policy_rollback, policy_reload
    std::string caller;
    std::optional<api_reply> reply;   // none for a reload
    std::chrono::steady_clock::time_point queued = std::chrono::steady_clock::now();
    std::atomic<bool> done{false};
    change_result result;
};

control_api::control_api(control_context ctx, std::string policy_text)
    : ctx_(std::move(ctx)), text_(std::move(policy_text)), limits_(*ctx_.plane) {}

control_api::~control_api() {
    if (running_thread_.joinable()) running_thread_.join();
    // A reply already given ignores this one.
    if (running_ && running_->reply) (*running_->reply)(error(503, "sekishod is stopping; the policy change was not applied"));
    for (auto& w : waiting_)
        if (w->reply) (*w->reply)(error(503, "sekishod is stopping; the policy change was not applied"));
}

void control_api::queue_change(std::unique_ptr<change> ch) {
    constexpr size_t max_waiting_changes = 16;
    if (ch->what == change::kind::reload) {
        for (const auto& w : waiting_)
            if (w->what == change::kind::reload) return;   // that one will read the file as it is then
    } else if (waiting_.size() >= max_waiting_changes) {
        (*ch->reply)(error(503, "too many policy changes waiting (" + std::to_string(max_waiting_changes) +
                                "); try again when they are done"));
        return;
    }
    waiting_.push_back(std::move(ch));
    if (!running_) start_next_change();
}

void control_api::start_next_change() {
    if (running_ || waiting_.empty()) return;
    running_ = std::move(waiting_.front());
    waiting_.pop_front();
    change& ch = *running_;
    if (ch.what == change::kind::rollback) {
        if (previous_text_.empty()) {
            ch.result.refusal = error(409, "no previous policy to return to");
            ch.done = true;
            return;
        }
        ch.text = previous_text_;
    }
    // The change's thread reads only what it is given: the running policy is
    // pinned, and nothing else swaps one in until this change is finished.
    const std::shared_ptr<const policy> running = ctx_.plane->running_policy();
    const uint64_t next_generation = ctx_.plane->generation() + 1;
    data_plane* plane = ctx_.plane;
    const bool events_file_used = !ctx_.events_overridden;
    const std::string policy_path = ctx_.policy_path;
    running_thread_ = std::thread([&ch, running, next_generation, plane, events_file_used, policy_path] {
        const auto t0 = std::chrono::steady_clock::now();
        change_result& r = ch.result;
        try {
            if (ch.what == change::kind::reload) ch.text = read_policy_file(policy_path);
            auto next = std::make_shared<const policy>(load_policy_text(ch.text, ch.source));
            r.diff = policy_diff(*running, *next);
            // Keys read at start are refused before any file the new policy names is read: a
            // change of path is refused, never opened on an API caller's behalf.
            const auto fixed = start_only_changes(*running, *next);
            if (fixed.empty()) check_policy_files(*next, events_file_used);
            if (!fixed.empty()) {
                json keys = json::array(), errors = json::array();
                for (const auto& f : fixed) {
                    keys.push_back({{"key", f.key}, {"running", f.running}, {"wanted", f.wanted}, {"line", f.line}});
                    errors.push_back(describe(f, next->source));
                }
                r.refusal = api_response{409, api_json_text({{"error", "the policy changes keys read at start only; "
                                                                         "the running policy is unchanged"},
                                                             {"restart_required", keys},
                                                             {"errors", errors},
                                                             {"diff", r.diff}})};
            } else {
                r.prepared = plane->prepare(next, next_generation, ch.what == change::kind::dry_run);
            }
        } catch (const policy_error& e) {
            r.refusal = api_response{422, api_json_text(json{{"error", "invalid policy; the running policy is unchanged"},
                                                             {"errors", e.errors()}})};
        } catch (const rule_compile_timeout& e) {
            r.refusal = error(409, std::string("policy not applied, the running policy is unchanged: ") + e.what());
        } catch (const std::exception& e) {
            r.refusal = error(500, std::string("policy not applied, the running policy is unchanged: ") + e.what());
        }
        r.prepare_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        ch.done.store(true, std::memory_order_release);
    });
}

void control_api::poll() {
    limits_.poll();
    if (running_ && running_->done.load(std::memory_order_acquire)) finish_change();
    if (!running_) start_next_change();
}

api_response control_api::commit_change(change& ch, change_result& r) {
    if (r.refusal) return *r.refusal;
    const auto t0 = std::chrono::steady_clock::now();
    if (ch.what == change::kind::dry_run) {
        json body = {{"generation", ctx_.plane->generation()}, {"dry_run", true},
                     {"compile_ms", r.prepare_seconds * 1000}, {"diff", r.diff}};
        if (!r.prepared->notes.empty()) body["not_enforced"] = r.prepared->notes;
        r.prepared.reset();   // the throwaway snapshot's tables go now
        return ok(body);
    }
    const std::vector<std::string> notes = r.prepared->notes;
    uint64_t generation;
    try {
        generation = ctx_.plane->commit(std::move(r.prepared));
    } catch (const std::exception& e) {
        return error(500, std::string("policy not applied, the running policy is unchanged: ") + e.what());
    }
    previous_text_ = std::move(text_);
    text_ = std::move(ch.text);
    const double seconds = r.prepare_seconds + seconds_since(t0);
    if (ctx_.observe_apply) ctx_.observe_apply(seconds);
    json body = {{"generation", generation}, {"dry_run", false}, {"compile_ms", seconds * 1000}, {"diff", r.diff}};
    if (ch.what == change::kind::rollback) body["rolled_back"] = true;
    if (!notes.empty()) body["not_enforced"] = notes;
    return ok(body);
}

void control_api::finish_change() {
    running_thread_.join();
    std::unique_ptr<change> ch = std::move(running_);
    const api_response r = commit_change(*ch, ch->result);
    if (ch->what == change::kind::reload) {
        if (r.status == 200) {
            const json j = json::parse(r.body);
            std::cerr << "sekishod: SIGHUP: policy " << ctx_.policy_path << " applied as generation "
                      << j["generation"] << std::endl;
            if (j.contains("not_enforced"))
                for (const auto& n : j["not_enforced"])
                    std::cerr << "sekishod: not enforced by " << ctx_.plane->backend_name() << ": "
                              << n.get<std::string>() << std::endl;
        } else {
            std::string why;
            const json j = json::parse(r.body, nullptr, false);
            if (j.is_object() && j.contains("errors"))
                for (const auto& e : j["errors"]) why += "\n" + e.get<std::string>();
            else if (j.is_object())
                why = "\n" + j.value("error", r.body);
            ++reload_failures_;
            std::cerr << "sekishod: SIGHUP: policy not applied, generation " << ctx_.plane->generation()
                      << " keeps running:" << why << std::endl;
        }
        audit(nullptr, ch->endpoint, ch->caller, r);
        return;
    }
    (*ch->reply)(r);   // audited by handle()'s reply for apply and rollback
}

void control_api::reload() {
    auto ch = std::make_unique<change>();
    ch->what = change::kind::reload;
    ch->source = ctx_.policy_path;
    ch->endpoint = "policy_reload";
    ch->caller = "SIGHUP";
    queue_change(std::move(ch));
}

// ---------------------------------------------------------------- requests

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
        if (c->endpoint == api_endpoint::limits_reset) {
            if (c->by_address) rec["address"] = c->prefix.to_string();
            rec["limit"] = c->limit_name.empty() ? json("*") : json(c->limit_name);
        }
    }
    if (r.status >= 300) {
        try {
            rec["error"] = json::parse(r.body).value("error", "");
        } catch (const std::exception&) {
        }
    }
    ctx_.plane->audit(api_json_text(rec));
}

void control_api::handle(const api_request& r, api_reply reply) {
    const auto now = static_cast<int64_t>(std::time(nullptr));
    auto parsed = parse_api_request(r, now);
    const auto endpoint = api_endpoint_of(r.method, r.path);
    const api_command* c = std::get_if<api_command>(&parsed);
    // Audited: what changes state, refusals too (c: null when invalid); a dry run changes nothing.
    // State changes are answered on the control thread, so the audit runs there.
    if (endpoint && changes_state(*endpoint) && (c == nullptr || !c->dry_run)) {
        std::optional<api_command> cmd;
        if (c) cmd = *c;
        reply = api_reply([this, cmd, ep = std::string(to_string(*endpoint)), caller = r.caller,
                           reply](api_response response) {
            audit(cmd ? &*cmd : nullptr, ep, caller, response);
            reply(std::move(response));
        });
    }
    if (endpoint && reads_event_log(*endpoint) && ctx_.events_path == "-")
        reply(error(404, "events go to standard output; start sekishod with --events FILE"));
    else if (endpoint && needs_accounts(*endpoint) && (!ctx_.plane->subscriber_bindings() || !ctx_.plane->account_table()))
        reply(error(501, std::string("not available with --backend ") + ctx_.plane->backend_name() +
                             ": it has no subscriber bindings or accounts (docs/xdp.md)"));
    else if (c == nullptr)
        reply(std::move(std::get<api_response>(parsed)));   // 400/404: which argument or path is wrong
    else
        dispatch(*c, r, std::move(reply));
}

api_response control_api::handle_and_wait(const api_request& request) {
    auto result = std::make_shared<std::optional<api_response>>();
    auto mutex = std::make_shared<std::mutex>();
    handle(request, api_reply([result, mutex](api_response r) {
               std::lock_guard lock(*mutex);
               *result = std::move(r);
           }));
    for (;;) {
        {
            std::lock_guard lock(*mutex);
            if (*result) return std::move(**result);
        }
        poll();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

void control_api::post_query(api_reply reply, std::function<api_response()> query) {
    if (!queries_.post([reply, query = std::move(query)] {
            api_response r;
            try {
                r = query();
            } catch (const std::exception& e) {
                r = error(500, std::string("query failed: ") + e.what());
            }
            reply(std::move(r));
        }))
        reply(error(503, "too many event queries waiting; try again"));
}

void control_api::dispatch(const api_command& c, const api_request& r, api_reply reply) {
    const std::string& path = ctx_.events_path;
    switch (c.endpoint) {
        case api_endpoint::status: return reply(status());
        case api_endpoint::policy_show: return reply(policy_show());
        case api_endpoint::policy_apply:
        case api_endpoint::policy_rollback: {
            auto ch = std::make_unique<change>();
            ch->what = c.endpoint == api_endpoint::policy_rollback ? change::kind::rollback
                       : c.dry_run                                 ? change::kind::dry_run
                                                                   : change::kind::apply;
            ch->text = c.endpoint == api_endpoint::policy_apply ? r.body : std::string();
            ch->source = c.endpoint == api_endpoint::policy_rollback ? "policy (rollback)" : "policy";
            ch->endpoint = to_string(c.endpoint);
            ch->caller = r.caller;
            ch->reply = std::move(reply);
            return queue_change(std::move(ch));
        }
        case api_endpoint::bindings_list: return reply(bindings_list(c));
        case api_endpoint::bindings_add: return reply(bindings_add(c));
        case api_endpoint::bindings_del: return reply(bindings_del(c));
        case api_endpoint::whois: return whois(c, std::move(reply));
        case api_endpoint::accounts_list: return reply(accounts_list(c));
        case api_endpoint::account_suspend: return reply(account_suspend(c, true));
        case api_endpoint::account_resume: return reply(account_suspend(c, false));
        case api_endpoint::events: {
            events_query q;
            q.n = c.n;
            q.since_ns = c.since_ns;
            q.type = c.type;
            q.subscriber = c.subscriber;
            q.account = c.account;
            return post_query(std::move(reply), [path, q] { return ok(query_events(path, q)); });
        }
        case api_endpoint::report:
            return post_query(std::move(reply), [path, since = c.since, until = c.until, csv = c.csv] {
                return query_report(path, since, until, csv);
            });
        case api_endpoint::limits_show:
        case api_endpoint::limits_reset: return limits_.handle(c, std::move(reply));
        case api_endpoint::top:
            return post_query(std::move(reply), [path, since = c.since, by = c.by, window = c.window_text] {
                return ok(query_top(path, since, by, window));
            });
    }
    reply(error(500, "unhandled endpoint"));
}

api_response control_api::status() {
    data_plane& gw = *ctx_.plane;
    const json c = counters_json(gw.all_counters());
    const std::shared_ptr<const policy> pol = gw.running_policy();
    json subscribers = nullptr;   // no account table (XDP)
    if (subscriber_table* st = gw.subscriber_bindings(); st && gw.account_table())
        subscribers = {{"bindings", st->size()}, {"accounts", gw.account_table()->size()},
                       {"suspended", gw.account_table()->suspended_ids().size()}};
    uint64_t tx_full = 0;
    for (const char* side : {"access", "core"}) tx_full += c["ports"][side]["tx_full_drops"].get<uint64_t>();
    return ok({
        {"version", sekisho_version},
        {"build", sekisho_build},
        {"generation", gw.generation()},
        {"backend", gw.backend_name()},
        {"uptime_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - ctx_.started).count()},
        {"workers", ctx_.workers},
        {"ports", {{"access", ctx_.port_names[0]}, {"core", ctx_.port_names[1]}}},
        {"interfaces", {{"access", ctx_.interface_names[0].empty() ? json(nullptr) : json(ctx_.interface_names[0])},
                        {"core", ctx_.interface_names[1].empty() ? json(nullptr) : json(ctx_.interface_names[1])}}},
        {"policy", {{"file", ctx_.policy_path}, {"op25b_mode", to_string(pol->mode)}, {"op25b_action", to_string(pol->action)},
                    {"limits", pol->limits.size()}, {"rollback_available", !previous_text_.empty()},
                    {"change_running", running_ != nullptr}, {"changes_waiting", waiting_.size()}}},
        {"frames", {{"in", c["frames_in"]}, {"forwarded", c["forwarded"]}, {"blocked", c["blocked"]},
                    {"monitored", c["monitored"]}, {"limited", c["limited"]},
                    {"malformed_dropped", c["malformed_dropped"]}, {"tx_full_drops", tx_full}}},
        {"smtp", {{"flows", gw.tracked_flows()}, {"messages", c["smtp"]["messages"]},
                  {"tempfails_sent", c["smtp"]["tempfails_sent"]}}},
        {"subscribers", subscribers},
        {"events", {{"written", gw.events().written()}, {"write_errors", gw.events().write_errors()},
                    {"ring_full", c["events"]["ring_full"]}, {"reopened", gw.events().counters().reopened}}},
        {"api", {{"requests", ctx_.server ? ctx_.server->requests() : 0},
                 {"unauthorised", ctx_.server ? ctx_.server->unauthorised() : 0},
                 {"queries_waiting", queries_.waiting()}}},
    });
}

api_response control_api::policy_show() {
    return ok({{"generation", ctx_.plane->generation()}, {"file", ctx_.policy_path}, {"text", text_}});
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
        const uint32_t n = ctx_.plane->writable_bindings()->bind(c.prefix, c.account);
        return ok({{"bound", n}, {"prefix", c.prefix.to_string()}, {"account", c.account}});
    } catch (const std::exception& e) {
        return error(409, e.what());
    }
}

api_response control_api::bindings_del(const api_command& c) {
    try {
        const uint32_t n = ctx_.plane->writable_bindings()->unbind(c.prefix);
        return ok({{"unbound", n}, {"prefix", c.prefix.to_string()}});
    } catch (const std::exception& e) {
        return error(400, e.what());
    }
}

void control_api::whois(const api_command& c, api_reply reply) {
    const ip_prefix& address = c.prefix;
    const int64_t at = c.at;
    // The history and the data plane on the control thread (indexed lookups,
    // state it owns); the event log on the query thread.
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
    json head = {{"query", {{"address", address.to_string()}, {"at", at}}},
                 {"bindings", bindings},
                 {"bound_now", current ? json(*current) : json(nullptr)}};
    if (ctx_.events_path == "-") {
        head["smtp_within_1h"] = {{"sessions", 0}, {"tls_sessions", 0}, {"messages", 0}, {"recipients", 0},
                                  {"rejected_recipients", 0}};
        head["events_within_1h"] = json::object();
        head["events"] = json::array();
        return reply(ok(head));
    }
    post_query(std::move(reply), [path = ctx_.events_path, head = std::move(head), address, at]() mutable {
        head.update(query_whois_events(path, address, at));
        return ok(head);
    });
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

}  // namespace sekisho
