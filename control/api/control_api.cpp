#include "control/api/control_api.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <iostream>
#include <map>
#include <unordered_map>

#include "control/identity/account_registry.h"
#include "control/api/api_request.h"
#include "control/api/campaign_view.h"
#include "control/policy/content_rules_compile.h"
#include "control/observe/counters_report.h"
#include "control/binding_table.h"
#include "control/build_version.h"
#include "control/data_plane.h"
#include "control/observe/event_log.h"
#include "control/api/event_queries.h"
#include "control/policy/policy.h"
#include "control/policy/policy_files.h"
#include "control/identity/operator_binding_table.h"
#include "control/identity/subscriber_identity.h"
#include "control/state/operator_state.h"
#include "control/state/policy_history.h"
#include "control/utc_time.h"
#include "dataplane/limits/mail_limits.h"
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

// A limit as the diff shows it, every setting that makes it what it is:
// "100 messages per 1h per address, applies to any, action tempfail".
std::string limit_text(const limit_rule& l) {
    std::string t = std::to_string(l.max) + " " + to_string(l.measure);
    if (l.measure != limit_measure::recipients_per_message) t += " per " + duration_text(l.window_ns);
    t += std::string(" per ") + to_string(l.scope) + ", applies to " + l.applies_to;
    if (l.measure == limit_measure::connections) t += ", burst " + std::to_string(l.burst);
    t += std::string(", action ") + to_string(l.action);
    if (l.cooldown_ns != 0) t += ", cooldown " + duration_text(l.cooldown_ns);
    return t;
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
    json before = json::object(), after = json::object();   // each limit named above, as text
    for (const auto& [name, l] : lb) {
        auto it = la.find(name);
        if (it == la.end()) {
            added.push_back(name);
            after[name] = limit_text(*l);
        } else if (limit_text(*it->second) != limit_text(*l)) {
            changed.push_back(name);
            before[name] = limit_text(*it->second);
            after[name] = limit_text(*l);
        }
    }
    for (const auto& [name, l] : la)
        if (!lb.count(name)) {
            removed.push_back(name);
            before[name] = limit_text(*l);
        }
    if (!added.empty() || !removed.empty() || !changed.empty())
        d["limits"] = {{"added", added}, {"removed", removed}, {"changed", changed}, {"before", before}, {"after", after}};
    if (a.bindings.size() != b.bindings.size()) d["subscribers.bindings"] = {{"before", a.bindings.size()}, {"after", b.bindings.size()}};
    return d;
}

int64_t unix_now() { return static_cast<int64_t>(std::time(nullptr)); }
// The binding history's file, for the query worker to open read-only; "" when
// there is no durable history.
std::string durable_history_path(const control_context& ctx) {
    return ctx.identity && ctx.identity->history() ? ctx.identity->history()->path() : std::string();
}

// The RADIUS clients a change read go into force with it (on the control
// thread, when the change commits).
void put_in_force(const control_context& ctx, std::optional<radius::client_table>& clients) {
    if (clients && ctx.identity)
        ctx.identity->replace_radius_clients(std::move(*clients), ctx.plane->active_policy().identity.radius_clients_file);
    clients.reset();
}

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

// ---------------------------------------------------------------- policy changes

struct control_api::change_result {
    std::optional<api_response> refusal;          // the change cannot apply: the answer
    bool file_unchanged = false;                  // reload: the file is as last applied; nothing to do
    std::unique_ptr<prepared_policy> prepared;    // else: built, not in force
    std::optional<policy_generation> recorded;    // written to the history, not yet in force
    std::optional<policy_file_record> file_record;   // reload: what was applied from the file
    std::optional<radius::client_table> radius_clients;   // read with the policy, swapped in with it
    json diff = json::object();
    double prepare_seconds = 0;
};

struct control_api::change {
    enum class kind { apply, dry_run, rollback, reload } what = kind::apply;
    std::string text;       // reload: read from the file on the change's thread
    std::string source;     // the name in messages: "policy", the client's name, the file's path, "policy generation N"
    std::string endpoint;   // audit: policy_apply, policy_rollback, policy_reload
    std::string caller;
    uint64_t rolled_back_to = 0;      // rollback: the generation whose text comes back
    uint64_t fleet_version = 0;       // apply from the fleet: its policy version (origin kind fleet)
    std::string group;                // apply from the fleet: the group it was desired for
    std::optional<api_reply> reply;   // none for a reload
    std::chrono::steady_clock::time_point queued = std::chrono::steady_clock::now();
    std::atomic<bool> done{false};
    change_result result;
};

control_api::control_api(control_context ctx, std::string policy_text) : ctx_(std::move(ctx)), history_(ctx_.history), limits_(*ctx_.plane) {
    if (history_ == nullptr) {
        own_history_ = std::make_unique<policy_history>("", policy_history::default_depth);
        policy_generation g;
        g.origin = {"file", ctx_.policy_path, "", ctx_.plane->generation(), unix_now(), 0};
        g.text = std::move(policy_text);
        own_history_->settle(g, policy_file_record{ctx_.policy_path, g.text, g.origin.generation});
        history_ = own_history_.get();
    }
}

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
        const policy_generation* target = history_->rollback_target();
        if (target == nullptr) {
            const policy_generation* now = history_->in_force();
            ch.result.refusal = error(
                409, "nothing to roll back: generation " + std::to_string(now ? now->origin.generation : 0) +
                         " is the oldest kept (" + std::to_string(history_->depth()) +
                         " generations are kept before the one in force; sekishod --policy-history)");
            ch.done = true;
            return;
        }
        ch.text = target->text;
        ch.rolled_back_to = target->origin.generation;
        ch.source = "policy generation " + std::to_string(target->origin.generation);
    }
    std::optional<policy_file_record> file_applied = history_->file_record();
    const policy_history* history = history_;
    // The change's thread reads only what it is given: the running policy is
    // pinned, and nothing else swaps one in until this change is finished.
    const std::shared_ptr<const policy> running = ctx_.plane->running_policy();
    const uint64_t next_generation =
        std::max(ctx_.plane->generation(), history_->in_force() ? history_->in_force()->origin.generation : 0) + 1;
    data_plane* plane = ctx_.plane;
    const bool events_file_used = !ctx_.events_overridden;
    const std::string policy_path = ctx_.policy_path;
    running_thread_ = std::thread([&ch, running, next_generation, plane, events_file_used, policy_path, history,
                                   file_applied = std::move(file_applied)] {
        const auto t0 = std::chrono::steady_clock::now();
        change_result& r = ch.result;
        try {
            // Every change reads the RADIUS clients file in force again (its path is read at
            // start only): SIGHUP and apply add a NAS or rotate a secret; a bad file refuses.
            r.radius_clients = subscriber_identity::read_radius_clients(running->identity);
            if (ch.what == change::kind::reload) {
                ch.text = read_policy_file(policy_path);
                if (file_applied && file_applied->path == policy_path && file_applied->text == ch.text) {
                    r.file_unchanged = true;
                    ch.done.store(true, std::memory_order_release);
                    return;
                }
            }
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
                if (ch.what != change::kind::dry_run) {
                    // Recorded before it is put in force: what is answered is on disk.
                    policy_generation g;
                    g.origin.generation = next_generation;
                    g.origin.time = unix_now();
                    g.text = ch.text;
                    if (ch.what == change::kind::reload) {
                        g.origin.kind = "file";
                        g.origin.file = policy_path;
                        r.file_record = policy_file_record{policy_path, ch.text, next_generation};
                    } else if (ch.what == change::kind::rollback) {
                        g.origin.kind = "rollback";
                        g.origin.caller = ch.caller.empty() ? "in-process" : ch.caller;
                        g.origin.rolled_back_to = ch.rolled_back_to;
                    } else if (ch.fleet_version != 0) {
                        g.origin.kind = "fleet";
                        g.origin.caller = ch.caller;
                        g.origin.fleet_version = ch.fleet_version;
                        g.origin.group = ch.group;
                    } else {
                        g.origin.kind = "api";
                        g.origin.caller = ch.caller.empty() ? "in-process" : ch.caller;
                    }
                    try {
                        history->write_entry(g);
                        if (r.file_record) history->write_file_record(*r.file_record);
                    } catch (const std::exception& e) {
                        history->discard(g);
                        throw std::runtime_error(std::string("cannot record the generation in the policy history: ") +
                                                 e.what());
                    }
                    r.recorded = std::move(g);
                }
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
    if (r.file_unchanged) {
        put_in_force(ctx_, r.radius_clients);   // the clients file may have changed on its own
        const policy_generation* now = history_->in_force();
        return ok({{"generation", ctx_.plane->generation()}, {"unchanged", true},
                   {"in_force", now ? origin_json(now->origin) : json(nullptr)}});
    }
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
        try {
            history_->discard(*r.recorded);
        } catch (const std::exception& d) {
            std::cerr << "sekishod: policy history: " << d.what() << std::endl;
        }
        return error(500, std::string("policy not applied, the running policy is unchanged: ") + e.what());
    }
    history_->settle(*r.recorded, r.file_record);
    put_in_force(ctx_, r.radius_clients);
    // The policy's static bindings went over everything: the operator's API bindings win again.
    if (ctx_.api_bindings)
        for (const std::string& e : ctx_.api_bindings->reassert_all())
            std::cerr << "sekishod: after generation " << generation << ": cannot bind the API binding " << e
                      << std::endl;
    const double seconds = r.prepare_seconds + seconds_since(t0);
    if (ctx_.observe_apply) ctx_.observe_apply(seconds);
    json body = {{"generation", generation}, {"dry_run", false}, {"compile_ms", seconds * 1000}, {"diff", r.diff}};
    if (ch.what == change::kind::rollback) {
        body["rolled_back"] = true;
        body["rolled_back_to"] = ch.rolled_back_to;
    }
    body["origin"] = origin_json(history_->in_force()->origin);
    body["rollback_depth"] = history_->rollback_depth();
    if (!notes.empty()) body["not_enforced"] = notes;
    return ok(body);
}

void control_api::finish_change() {
    if (running_thread_.joinable()) running_thread_.join();   // a refusal decided at once ran no thread
    std::unique_ptr<change> ch = std::move(running_);
    const api_response r = commit_change(*ch, ch->result);
    if (ch->what == change::kind::reload) {
        if (r.status == 200 && ch->result.file_unchanged) {
            const policy_generation* now = history_->in_force();
            std::cerr << "sekishod: SIGHUP: policy file " << ctx_.policy_path << " unchanged; generation "
                      << ctx_.plane->generation() << " from " << (now ? describe(now->origin) : std::string("?"))
                      << " stays in force" << std::endl;
        } else if (r.status == 200) {
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

void control_api::apply_fleet_policy(std::string text, uint64_t fleet_version, std::string group,
                                     std::function<void(const api_response&)> done) {
    auto ch = std::make_unique<change>();
    ch->what = change::kind::apply;
    ch->text = std::move(text);
    ch->source = "fleet policy version " + std::to_string(fleet_version);
    ch->endpoint = "fleet_policy_apply";
    ch->caller = "fleet";
    ch->fleet_version = fleet_version;
    ch->group = group;
    const std::string note = "fleet version " + std::to_string(fleet_version) + " of group " + group;
    ch->reply = api_reply([this, note, done = std::move(done)](api_response r) {
        audit(nullptr, "fleet_policy_apply", "fleet", r, note);
        done(r);
    });
    queue_change(std::move(ch));
}

const policy_generation* control_api::policy_in_force() const { return history_->in_force(); }

// ---------------------------------------------------------------- requests

void control_api::audit_start(const std::string& note) {
    audit(nullptr, "policy_start", "sekishod", ok(json::object()), note);
}

void control_api::audit(const api_command* c, const std::string& endpoint, const std::string& caller,
                        const api_response& r, const std::string& note) {
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
        if (c->force) rec["force"] = true;
        if (c->create) rec["create"] = true;
        if (c->endpoint == api_endpoint::limits_reset) {
            if (c->by_address) rec["address"] = c->prefix.to_string();
            rec["limit"] = c->limit_name.empty() ? json("*") : json(c->limit_name);
        }
    }
    // What an API binding overrode, what an unbinding gave back.
    if (r.status == 200 && c != nullptr &&
        (c->endpoint == api_endpoint::bindings_add || c->endpoint == api_endpoint::bindings_del)) {
        const json body = json::parse(r.body, nullptr, false);
        for (const char* key : {"overrode", "restored"})
            if (body.is_object() && body.contains(key) && !body[key].empty()) rec[key] = body[key];
    }
    if (!note.empty()) rec["note"] = note;
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
            ch->source = c.source_name.empty() ? "policy" : c.source_name;   // rollback: its generation's
            ch->endpoint = to_string(c.endpoint);
            ch->caller = r.caller;
            ch->reply = std::move(reply);
            return queue_change(std::move(ch));
        }
        case api_endpoint::bindings_list: return reply(bindings_list(c));
        case api_endpoint::bindings_add: return reply(bindings_add(c, r.caller));
        case api_endpoint::bindings_del: return reply(bindings_del(c, r.caller));
        case api_endpoint::whois: return whois(c, std::move(reply));
        case api_endpoint::accounts_list: return reply(accounts_list(c));
        case api_endpoint::account_suspend: return reply(account_suspend(c, r.caller, true));
        case api_endpoint::account_resume: return reply(account_suspend(c, r.caller, false));
        case api_endpoint::events: {
            events_query q;
            q.n = c.n;
            q.since_ns = c.since_ns;
            q.after = c.after;
            q.type = c.type;
            q.subscriber = c.subscriber;
            q.subscriber_prefix = c.subscriber_prefix;
            q.account = c.account;
            return post_query(std::move(reply), [path, q] { return ok(query_events(path, q)); });
        }
        case api_endpoint::report:
            return post_query(std::move(reply), [path, history = durable_history_path(ctx_), since = c.since, until = c.until,
                                                 csv = c.csv] { return query_report(path, history, since, until, csv); });
        case api_endpoint::limits_show: return limits_.handle(c, std::move(reply));
        case api_endpoint::campaigns: return reply(campaigns(c));
        case api_endpoint::limits_reset:
            if (ctx_.decisions == nullptr || !ctx_.decisions->fleet_outbox()) return limits_.handle(c, std::move(reply));
            // Fleet mode: a reset the workers did here is queued for every gateway.
            return limits_.handle(c, api_reply([this, c, caller = r.caller, reply = std::move(reply)](api_response a) {
                if (a.status == 200) {
                    try {
                        ctx_.decisions->queue_outbox({0, "", "limits_reset", c.by_address ? "" : c.account, "",
                                                      caller.empty() ? "in-process" : caller, "", unix_now(),
                                                      c.by_address ? c.prefix.to_string() : "", c.limit_name});
                    } catch (const operator_state_error& e) {
                        std::cerr << "sekishod: limits reset: done here, not queued for the fleet: " << e.what()
                                  << std::endl;
                        json body = json::parse(a.body, nullptr, false);
                        if (body.is_object()) {
                            body["fleet"] = std::string("not queued for the other gateways: ") + e.what();
                            a.body = api_json_text(body);
                        }
                    }
                }
                reply(std::move(a));
            }));
        case api_endpoint::top:
            return post_query(std::move(reply), [path, history = durable_history_path(ctx_), since = c.since, by = c.by,
                                                 window = c.window_text] {
                return ok(query_top(path, history, since, by, window));
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
                    {"limits", pol->limits.size()},
                    {"in_force", history_->in_force() ? origin_json(history_->in_force()->origin) : json(nullptr)},
                    {"rollback_available", history_->rollback_depth() > 0},
                    {"rollback_depth", history_->rollback_depth()}, {"history_kept", history_->depth()},
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
        {"fleet", fleet_status_ ? fleet_status_() : json(nullptr)},
    });
}

api_response control_api::campaigns(const api_command& c) {
    const campaign_table* table = ctx_.plane->campaigns();
    if (table == nullptr) return error(501, "this backend keeps no campaign table (the DPDK data plane does)");
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    const uint64_t now_ns = static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
    std::vector<campaign_fleet_figure> fleet;
    if (fleet_campaigns_) fleet = fleet_campaigns_();
    return ok(campaign_view(*table, ctx_.plane->running_policy()->inspection, now_ns,
                            fleet_campaigns_ ? &fleet : nullptr, c.n, c.min_subscribers));
}

api_response control_api::policy_show() {
    const policy_generation* now = history_->in_force();
    json generations = json::array();
    for (auto it = history_->generations().rbegin(); it != history_->generations().rend(); ++it)
        generations.push_back(origin_json(it->origin));
    return ok({{"generation", ctx_.plane->generation()},
               {"file", ctx_.policy_path},
               {"in_force", now ? origin_json(now->origin) : json(nullptr)},
               {"rollback_depth", history_->rollback_depth()},
               {"history", generations},
               {"text", now ? now->text : std::string()}});
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

namespace {


// A failed write of the operator state: 503 when another process holds the
// lock (try again), else 500; nothing changed either way.
api_response store_refusal(const operator_state_error& e, const std::string& what) {
    return error(e.busy() ? 503 : 500, what + " not done, nothing changed: the operator state cannot be written: " +
                                           e.what());
}

json prefix_texts(const std::vector<ip_prefix>& list) {
    json out = json::array();
    for (const ip_prefix& p : list) out.push_back(p.to_string());
    return out;
}

std::string ranges_text(const policy& pol) {
    std::string out;
    for (const auto* list : {&pol.dynamic_ranges, &pol.static_ranges})
        for (const ip_prefix& p : *list) out += (out.empty() ? "" : ", ") + p.to_string();
    return out.empty() ? "none" : out;
}

}  // namespace

api_response control_api::bindings_add(const api_command& c, const std::string& caller) {
    if (ctx_.decisions == nullptr || ctx_.api_bindings == nullptr)
        return error(503, "the operator state is not open; bindings cannot be added");
    const std::shared_ptr<const policy> pol = ctx_.plane->running_policy();
    // A prefix outside every subscriber range is most likely a typo.
    const auto in = [&](const std::vector<ip_prefix>& ranges) {
        return std::any_of(ranges.begin(), ranges.end(), [&](const ip_prefix& r) { return r.contains(c.prefix); });
    };
    if (!c.force && !in(pol->dynamic_ranges) && !in(pol->static_ranges))
        return api_response{422, api_json_text({{"error", c.prefix.to_string() + " is outside every subscriber range (" +
                                                              ranges_text(*pol) +
                                                              "); add \"force\": true (sekishoctl bindings add --force) "
                                                              "to bind it anyway"},
                                                {"prefix", c.prefix.to_string()},
                                                {"ranges", {{"dynamic", prefix_texts(pol->dynamic_ranges)},
                                                            {"static", prefix_texts(pol->static_ranges)}}}})};
    return add_api_binding(c, caller, nullptr, nullptr);
}

api_response control_api::add_api_binding(const api_command& c, const std::string& caller, const fleet_change* fleet,
                                           fleet_apply* outcome) {
    data_plane& plane = *ctx_.plane;
    const std::shared_ptr<const policy> pol = plane.running_policy();
    // A fleet change refused here is still read: the cursor moves past it.
    const auto refuse = [&](api_response r) {
        if (fleet) {
            ctx_.decisions->set_cursor({fleet->id, fleet->change_id, fleet->at});
            *outcome = fleet_apply::unchanged;
        }
        return r;
    };
    account_registry& reg = *plane.account_table();
    std::vector<uint32_t> holder_ids;
    try {
        holder_ids = plane.writable_bindings()->holders(c.prefix);   // throws when too wide
    } catch (const std::exception& e) {
        return refuse(error(409, e.what()));
    }
    if (!reg.knows(c.account) && reg.size() >= reg.capacity())
        return refuse(error(409, "account registry full (" + std::to_string(reg.capacity()) + " accounts): cannot bind " +
                                     c.prefix.to_string()));
    // What the binding overrides: per account holding entries of the prefix now, where that
    // binding came from (this API, the policy's static bindings, else a RADIUS session).
    json overrode = json::array();
    for (uint32_t id : holder_ids) {
        const std::string* name = reg.name_of(id);
        if (name == nullptr || *name == c.account) continue;
        json o = {{"account", *name}};
        const auto same = [&](const ip_prefix& p, const std::string& a) { return a == *name && p.overlaps(c.prefix); };
        bool found = false;
        for (const auto& b : ctx_.api_bindings->held())
            if (!found && same(b.prefix, b.account)) {
                o["source"] = "api";
                o["prefix"] = b.prefix.to_string();
                found = true;
            }
        for (const auto& b : pol->bindings)
            if (!found && same(b.prefix, b.account)) {
                o["source"] = "static";
                o["prefix"] = b.prefix.to_string();
                found = true;
            }
        if (!found) {
            o["source"] = "radius";
            if (ctx_.identity)
                for (const auto& r : ctx_.identity->open_sessions_holding(c.prefix))
                    if (!found && r.account == *name) {
                        o["prefix"] = r.address.to_string();
                        o["session_id"] = r.session_id;
                        o["nas"] = r.nas;
                        o["since"] = r.start;
                        found = true;
                    }
        }
        overrode.push_back(std::move(o));
    }
    // Stored first: what is answered is on disk.
    std::optional<api_binding_record> previous;   // the API binding of this prefix it replaces
    std::string change_id;                        // its row in the fleet's outbox, if any
    try {
        if (ctx_.api_bindings->held_at(c.prefix))
            for (auto& r : ctx_.decisions->bindings())
                if (r.prefix == c.prefix) previous = std::move(r);
        if (fleet) {
            fleet_change stored = *fleet;
            stored.detail = overrode.dump();
            *outcome = ctx_.decisions->apply_fleet_change(stored);
            if (*outcome != fleet_apply::changed)
                return ok({{"bound", 0}, {"prefix", c.prefix.to_string()}, {"account", c.account}, {"unchanged", true}});
        } else {
            change_id = ctx_.decisions->add_binding(
                {c.prefix, c.account, unix_now(), caller.empty() ? "in-process" : caller, overrode.dump()});
        }
    } catch (const operator_state_error& e) {
        if (fleet) throw;   // operator_sync retries it, in order
        return store_refusal(e, "bindings add " + c.prefix.to_string());
    }
    binding_table::undo_log undo;
    uint32_t n = 0;
    try {
        ctx_.api_bindings->hold(c.prefix, c.account);
        n = ctx_.api_bindings->bind(c.prefix, c.account, undo);
    } catch (const std::exception& e) {
        // The table is full: the data plane as it was.
        plane.writable_bindings()->undo_bindings(undo);
        if (previous) ctx_.api_bindings->hold(c.prefix, previous->account);
        else ctx_.api_bindings->release(c.prefix);
        if (fleet) return error(409, std::string(e.what()) + "; stored: bound at the next start");
        // A local binding: the store as it was too, and nothing for the fleet.
        try {
            if (!change_id.empty()) ctx_.decisions->remove_from_outbox(change_id);
            if (previous) ctx_.decisions->add_binding(*previous, false);
            else ctx_.decisions->remove_binding(c.prefix, false);
        } catch (const std::exception& s) {
            return error(500, std::string(e.what()) + "; and the operator state could not be put back (" + s.what() +
                                  "): it binds " + c.prefix.to_string() + " at the next start");
        }
        return error(409, e.what());
    }
    json body = {{"bound", n}, {"prefix", c.prefix.to_string()}, {"account", c.account}, {"overrode", overrode}};
    if (c.force) body["forced"] = true;
    return ok(body);
}

api_response control_api::bindings_del(const api_command& c, const std::string& caller) {
    data_plane& plane = *ctx_.plane;
    // Through the operator's table: the entries other API bindings hold stay theirs.
    binding_table* table = ctx_.api_bindings ? static_cast<binding_table*>(ctx_.api_bindings) : plane.writable_bindings();
    const bool api_binding = ctx_.api_bindings && ctx_.api_bindings->held_at(c.prefix) != nullptr;
    std::vector<uint32_t> holder_ids;
    try {
        holder_ids = table->holders(c.prefix);
    } catch (const std::exception& e) {
        return error(400, e.what());
    }
    if (!api_binding && holder_ids.empty())
        return error(404, c.prefix.to_string() + " is not bound (no API binding, no entry in the subscriber table)");
    // Part of an API binding cannot be taken away: the binding would put it straight back.
    if (!api_binding && ctx_.api_bindings)
        for (const auto& b : ctx_.api_bindings->held())
            if (b.prefix.overlaps(c.prefix))
                return error(409, c.prefix.to_string() + " overlaps the API binding " + b.prefix.to_string() + " of " +
                                      b.account + "; delete that binding (bindings del " + b.prefix.to_string() + ")");
    return remove_api_binding(c, caller, nullptr, nullptr);
}

api_response control_api::remove_api_binding(const api_command& c, const std::string& caller, const fleet_change* fleet,
                                              fleet_apply* outcome) {
    data_plane& plane = *ctx_.plane;
    binding_table* table = ctx_.api_bindings ? static_cast<binding_table*>(ctx_.api_bindings) : plane.writable_bindings();
    bool api_binding = ctx_.api_bindings && ctx_.api_bindings->held_at(c.prefix) != nullptr;
    if (fleet) {
        // Only the API binding is the fleet's: what RADIUS bound here stays.
        *outcome = ctx_.decisions->apply_fleet_change(*fleet);   // throws: operator_sync retries it, in order
        if (*outcome != fleet_apply::changed)
            return ok({{"unbound", 0}, {"prefix", c.prefix.to_string()}, {"restored", json::array()}, {"unchanged", true}});
        api_binding = true;
    } else if (api_binding) {
        try {
            ctx_.decisions->remove_binding(c.prefix, true, caller.empty() ? "in-process" : caller, unix_now());
        } catch (const operator_state_error& e) {
            return store_refusal(e, "bindings del " + c.prefix.to_string());
        }
    }
    if (api_binding) ctx_.api_bindings->release(c.prefix);
    const uint32_t n = table->unbind(c.prefix);
    // What held the prefix under the API binding comes back: the policy's static bindings, the
    // RADIUS sessions holding it or inside it, then other API bindings overlapping it (they win).
    json restored = json::array();
    if (api_binding) {
        const auto restore = [&](const ip_prefix& p, const std::string& account, const char* source) {
            if (!p.overlaps(c.prefix)) return;
            const ip_prefix& overlap = p.length >= c.prefix.length ? p : c.prefix;
            try {
                table->bind(overlap, account);
                restored.push_back({{"prefix", overlap.to_string()}, {"account", account}, {"source", source}});
            } catch (const std::exception& e) {
                std::cerr << "sekishod: bindings del " << c.prefix.to_string() << ": cannot restore " << source << " "
                          << overlap.to_string() << " of " << account << ": " << e.what() << std::endl;
            }
        };
        for (const auto& b : plane.running_policy()->bindings) restore(b.prefix, b.account, "static");
        if (ctx_.identity) {
            for (const auto& r : ctx_.identity->open_sessions_holding(c.prefix)) restore(r.address, r.account, "radius");
            // The sessions inside a wider binding: no more than the table holds.
            const size_t bound = plane.running_policy()->tracking.max_bindings;
            const auto inside = ctx_.identity->open_sessions_within(c.prefix, bound + 1);
            for (size_t i = 0; i < inside.size() && i < bound; ++i)
                if (inside[i].address != c.prefix) restore(inside[i].address, inside[i].account, "radius");
            if (inside.size() > bound)
                std::cerr << "sekishod: bindings del " << c.prefix.to_string() << ": more than " << bound
                          << " RADIUS sessions inside it; the rest come back at their next Start" << std::endl;
        }
        for (const auto& b : ctx_.api_bindings->held()) restore(b.prefix, b.account, "api");
    }
    json body = {{"unbound", n}, {"prefix", c.prefix.to_string()}, {"restored", restored}};
    if (!api_binding) body["api_binding"] = false;
    return ok(body);
}

api_response control_api::apply_fleet_binding(const fleet_change& c, fleet_apply& outcome) {
    outcome = fleet_apply::unchanged;
    std::string why;
    const std::optional<ip_prefix> prefix = parse_prefix(c.prefix, why);
    if (!prefix || ctx_.decisions == nullptr || ctx_.api_bindings == nullptr) {
        if (ctx_.decisions) ctx_.decisions->set_cursor({c.id, c.change_id, c.at});
        return error(400, !prefix ? "prefix '" + c.prefix + "': " + why : std::string("no API bindings here"));
    }
    api_command cmd;
    cmd.endpoint = c.kind == "bind" ? api_endpoint::bindings_add : api_endpoint::bindings_del;
    cmd.prefix = *prefix;
    cmd.account = c.account;
    return c.kind == "bind" ? add_api_binding(cmd, c.caller, &c, &outcome)
                            : remove_api_binding(cmd, c.caller, &c, &outcome);
}

void control_api::apply_fleet_reset(const fleet_change& c, api_reply done) {
    api_command cmd;
    cmd.endpoint = api_endpoint::limits_reset;
    cmd.limit_name = c.detail;
    if (c.prefix.empty()) {
        cmd.account = c.account;
    } else {
        std::string why;
        const std::optional<ip_prefix> address = parse_prefix(c.prefix, why);
        if (!address) return done(error(400, "address '" + c.prefix + "': " + why));
        cmd.prefix = *address;
        cmd.by_address = true;
    }
    limits_.handle(cmd, std::move(done));
}

int64_t control_api::limit_horizon_s() const {
    uint64_t longest = 0;
    for (const limit_rule& l : ctx_.plane->running_policy()->limits) longest = std::max(longest, l.window_ns + l.cooldown_ns);
    return static_cast<int64_t>((longest + 999'999'999ull) / 1'000'000'000ull);
}

void control_api::whois(const api_command& c, api_reply reply) {
    const ip_prefix& address = c.prefix;
    const int64_t at = c.at;
    // The data plane's current binding (also static ones) here, on the
    // control thread that owns it; the history and the event log on the
    // query thread.
    const subscriber_key key = address.family == 4 ? subscriber_key::v4(address.v4())
                                                    : subscriber_key::v6(address.bytes.data(),
                                                                         ctx_.plane->active_policy().ipv6_prefix_length);
    std::optional<std::string> current;
    if (subscriber_table* st = ctx_.plane->subscriber_bindings(); st && ctx_.plane->account_table())
        if (const std::string* name = ctx_.plane->account_table()->name_of(st->lookup(key))) current = *name;
    // The current binding answers "who holds it" only for a question about
    // now (no `at`: the request's own time).
    const bool asks_now = at >= static_cast<int64_t>(std::time(nullptr)) - 1;
    post_query(std::move(reply), [path = ctx_.events_path, history = durable_history_path(ctx_), address, at, current,
                                  asks_now] {
        json j = query_whois(path, history, address, at, asks_now ? current : std::nullopt);
        j["bound_now"] = current ? json(*current) : json(nullptr);
        return ok(j);
    });
}

api_response control_api::account_suspend(const api_command& c, const std::string& caller, bool suspend) {
    auto& reg = *ctx_.plane->account_table();
    const bool known = reg.knows(c.account);
    // An account nobody has named (no RADIUS session, binding or policy group) is most likely a typo.
    if (!known && (!suspend || !c.create))
        return error(404, "no such account: " + c.account + " (no RADIUS session, binding or account group has named it)" +
                              (suspend ? "; add \"create\": true (sekishoctl account suspend --create) to suspend it "
                                         "before it is first seen"
                                       : ""));
    if (!known && reg.size() >= reg.capacity()) return error(409, "the account registry is full");
    if (ctx_.decisions == nullptr) return error(503, "the operator state is not open; suspensions cannot change");
    try {
        if (suspend) ctx_.decisions->suspend({c.account, unix_now(), caller.empty() ? "in-process" : caller, ""});
        else ctx_.decisions->resume(c.account, caller.empty() ? "in-process" : caller, unix_now());
    } catch (const operator_state_error& e) {
        return store_refusal(e, std::string("account ") + (suspend ? "suspend " : "resume ") + c.account);
    }
    const uint32_t id = reg.id_of(c.account);
    reg.set_suspended(id, suspend);
    json body = {{"account", c.account}, {"suspended", suspend}};
    if (!known) body["created"] = true;
    return ok(body);
}

void control_api::record_quarantines() {
    account_registry* reg = ctx_.plane->account_table();
    if (reg == nullptr || ctx_.decisions == nullptr) return;
    uint64_t acted = 0;
    for (const worker_counters* w : ctx_.plane->all_counters()) acted += w->inspection.verdicts_acted.load();
    const bool changed = acted != verdicts_acted_seen_;
    if (!changed && !quarantine_rescan_ && quarantine_store_failed_.empty()) return;
    quarantine_rescan_ = changed;   // once more next time: a flag set after this scan
    verdicts_acted_seen_ = acted;
    for (uint32_t id : reg->suspended_ids()) {
        const std::string& name = *reg->name_of(id);
        try {
            if (ctx_.decisions->suspended(name)) continue;
            ctx_.decisions->suspend({name, unix_now(), "quarantine", "a content rule's quarantine verdict"});
            std::cerr << "sekishod: account " << name << " quarantined by content inspection; the suspension is stored"
                      << std::endl;
            quarantine_store_failed_.erase(
                std::remove(quarantine_store_failed_.begin(), quarantine_store_failed_.end(), name),
                quarantine_store_failed_.end());
        } catch (const operator_state_error& e) {
            if (std::find(quarantine_store_failed_.begin(), quarantine_store_failed_.end(), name) !=
                quarantine_store_failed_.end())
                continue;
            quarantine_store_failed_.push_back(name);
            std::cerr << "sekishod: account " << name
                      << " quarantined by content inspection, but the suspension cannot be stored (retrying): "
                      << e.what() << std::endl;
        }
    }
}

api_response control_api::accounts_list(const api_command& c) {
    auto& reg = *ctx_.plane->account_table();
    // When and by whom each suspension was made, as operator.db keeps it (one read of the
    // suspensions table: as many rows as accounts suspended).
    std::unordered_map<std::string, suspension_record> recorded;
    if (ctx_.decisions) {
        try {
            for (auto& r : ctx_.decisions->suspensions()) recorded.emplace(r.account, std::move(r));
        } catch (const operator_state_error& e) {
            return error(500, std::string("account list: ") + e.what());
        }
    }
    const auto row = [&](uint32_t id, bool suspended) {
        const std::string& name = *reg.name_of(id);
        json a = {{"account", name}, {"suspended", suspended}};
        if (const auto it = recorded.find(name); suspended && it != recorded.end()) {
            a["since"] = it->second.since;
            a["since_utc"] = utc_time_text(it->second.since);
            a["caller"] = it->second.caller;
            a["reason"] = it->second.reason;
        }
        return a;
    };
    json out = json::array();
    if (c.only_suspended) {
        for (uint32_t id : reg.suspended_ids()) out.push_back(row(id, true));
    } else {
        for (uint32_t id = 1; id <= reg.size() && out.size() < 10000; ++id) out.push_back(row(id, reg.suspended(id)));
    }
    return ok({{"accounts", out}, {"total", reg.size()}});
}

}  // namespace sekisho
