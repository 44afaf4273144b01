#include "control/api/event_queries.h"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <sstream>
#include <vector>

#include "control/api/api_request.h"
#include "control/identity/binding_history.h"
#include "control/observe/event_log_follow.h"
#include "control/utc_time.h"

namespace sekisho {

namespace {

using nlohmann::json;

constexpr long long max_bytes_per_file = 64LL << 20;

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

// Who held each event's address at the event's own time (docs/api.md,
// attribution): the binding history's row covering that second, else the
// account the data plane stamped on the event (mail events carry the
// account bound when they happened: static and API bindings, which the
// history does not record), else nobody (null). Reads the history
// read-only, on the calling thread, once per address: the rows of
// [from, to] are kept (bounded by the addresses the answer keeps anyway).
class event_holders {
public:
    event_holders(const std::string& history_path, int64_t from, int64_t to) : from_(from), to_(to) {
        if (!history_path.empty())
            history_ = std::make_unique<binding_history>(history_path, binding_history::access::read_only);
    }

    // The account that held `address` at `t` by the history, or nullopt when
    // no row with an account covers it. Two rows in the same second (a
    // handover): the newer session's.
    std::optional<std::string> by_history(const std::string& address, int64_t t) {
        if (!history_ || address.empty()) return std::nullopt;
        auto it = rows_.find(address);
        if (it == rows_.end()) {
            std::string why;
            std::vector<binding_record> rows;
            if (const auto host = parse_prefix(address, why)) rows = history_->held_between(*host, from_, to_);
            it = rows_.emplace(address, std::move(rows)).first;
        }
        const binding_record* best = nullptr;
        for (const binding_record& r : it->second)
            if (!r.account.empty() && r.start <= t && (!r.stop || t <= *r.stop) && (!best || r.start >= best->start))
                best = &r;
        if (!best) return std::nullopt;
        return best->account;
    }

    // The event's holder: an account name or null.
    json of(const json& e) {
        if (auto a = by_history(subscriber_of(e), event_seconds(e))) return *a;
        if (e.contains("account") && e["account"].is_string()) return e["account"];
        return nullptr;
    }

private:
    std::unique_ptr<binding_history> history_;
    int64_t from_, to_;
    std::unordered_map<std::string, std::vector<binding_record>> rows_;
};

// The latest time the queries look at (9999-12-31T23:59:59Z).
constexpr int64_t end_of_time = 253402300799;

// "subscriber\0account" (account "" for nobody): one row per holder of an address.
std::string row_key(const std::string& subscriber, const json& holder) {
    return subscriber + '\0' + (holder.is_string() ? holder.get<std::string>() : std::string());
}

}  // namespace

void for_each_event(const std::string& path, const std::function<void(const std::string&, const json&)>& f) {
    for (const std::string& p : {path + ".1", path}) {
        std::ifstream in(p);
        if (!in) continue;
        in.seekg(0, std::ios::end);
        const auto size = static_cast<long long>(in.tellg());
        const long long start = std::max(0LL, size - max_bytes_per_file);
        in.seekg(start);
        std::string line;
        if (start > 0) std::getline(in, line);  // a partial first line
        while (std::getline(in, line)) {
            if (line.empty()) continue;
            json e = json::parse(line, nullptr, false);   // no exception: a line cut by a crash is skipped
            if (e.is_object()) f(line, e);
        }
    }
}

namespace {

// The events filter's subscriber: the address as written, or inside the prefix.
bool subscriber_in(const std::string& address, const events_query& q) {
    const ip_prefix* p = q.subscriber_prefix ? &*q.subscriber_prefix : nullptr;
    if (!p || p->length == (p->family == 4 ? 32 : 128)) return address == q.subscriber;
    std::string why;
    const auto a = parse_prefix(address, why);
    return a && p->contains(*a);
}

}  // namespace

json query_events(const std::string& path, const events_query& q) {
    auto matches = [&q](const json& e) {
        if (!e.is_object() || e.value("time_ns", uint64_t{0}) <= q.since_ns) return false;
        if (!q.type.empty() && e.value("type", "") != q.type) return false;
        if (!q.subscriber.empty() && !subscriber_in(subscriber_of(e), q)) return false;
        if (!q.account.empty() && !(e.contains("account") && e["account"].is_string() && e["account"] == q.account))
            return false;
        return true;
    };
    const log_file current(path);
    json out = json::array();
    bool gap = false;
    event_position end{current.inode, 0};
    if (!q.after) {
        // The newest n matching: FILE.1 (its last 64 MiB), then FILE's.
        std::deque<std::string> kept;   // as text
        auto keep = [&](const std::string& line) {
            if (q.n == 0) return true;
            const json e = json::parse(line, nullptr, false);   // a line cut by a crash is skipped
            if (!matches(e)) return true;
            if (kept.size() == q.n) kept.pop_front();
            kept.push_back(line);
            return true;
        };
        if (const log_file rotated(path + ".1"); rotated.open()) {
            const uint64_t start = rotated.size > static_cast<uint64_t>(max_bytes_per_file)
                                       ? rotated.size - static_cast<uint64_t>(max_bytes_per_file) : 0;
            bool first = start > 0;   // a partial first line
            read_lines(rotated, start, [&](const std::string& line) {
                if (first) return (first = false, true);
                return keep(line);
            });
        }
        if (current.open()) {
            const uint64_t start = current.size > static_cast<uint64_t>(max_bytes_per_file)
                                       ? current.size - static_cast<uint64_t>(max_bytes_per_file) : 0;
            bool first = start > 0;
            end.offset = read_lines(current, start, [&](const std::string& line) {
                if (first) return (first = false, true);
                return keep(line);
            });
        }
        for (const auto& line : kept) out.push_back(json::parse(line));
        return {{"events", out}, {"position", position_in(current, end.offset).to_string()}, {"gap", false}};
    }
    // From a position on, oldest first, at most n.
    auto collect = [&](const std::string& line) {
        if (out.size() >= q.n) return false;
        json e = json::parse(line, nullptr, false);
        if (matches(e)) out.push_back(std::move(e));
        return true;
    };
    // The line after the n-th is refused: the position stays before it.
    const event_position& after = *q.after;
    if (holds(current, after)) {
        end.offset = read_lines(current, after.offset, collect);
    } else {
        const log_file rotated(path + ".1");
        if (holds(rotated, after)) {
            const uint64_t stop = read_lines(rotated, after.offset, collect);
            if (out.size() >= q.n && stop < rotated.size)
                return {{"events", out}, {"position", position_in(rotated, stop).to_string()}, {"gap", false}};
        } else {
            gap = true;   // that file is gone: lines written to it after `after` were not seen
        }
        if (current.open()) end.offset = read_lines(current, 0, collect);
    }
    return {{"events", out}, {"position", position_in(current, end.offset).to_string()}, {"gap", gap}};
}

json query_top(const std::string& path, const std::string& history_path, int64_t since, const std::string& by,
               const std::string& window_text) {
    const bool by_smtp = by == "messages" || by == "recipients" || by == "rejected_recipients" || by == "sessions";
    struct score_row {
        std::string subscriber;
        json account;
        uint64_t count = 0;
    };
    std::map<std::string, score_row> score;
    event_holders holders(history_path, since, end_of_time);
    for_each_event(path, [&](const std::string&, const json& e) {
        if (event_seconds(e) < since || is_audit(e)) return;
        const std::string type = e.value("type", "");
        uint64_t add;
        if (by_smtp) {
            if (type != "mail_session") return;
            smtp_counters sc;
            sc.add(e);
            add = sc.get(by);
        } else if (by == "score") {
            if (type != "content_verdict") return;
            // the content verdicts' scores (negative scores count as 0)
            add = static_cast<uint64_t>(std::max<int64_t>(0, e.value("score", int64_t{0}))) * event_count(e);
        } else {
            if (type == "mail_session" || (by != "events" && type != by)) return;
            add = event_count(e);
        }
        const std::string subscriber = subscriber_of(e);
        json holder = holders.of(e);
        auto& s = score[row_key(subscriber, holder)];
        s.subscriber = subscriber;
        s.account = std::move(holder);
        s.count += add;
    });
    std::vector<score_row> v;
    for (auto& [k, row] : score) v.push_back(std::move(row));
    std::stable_sort(v.begin(), v.end(), [](const score_row& a, const score_row& b) { return a.count > b.count; });
    json out = json::array();
    for (size_t i = 0; i < v.size() && i < 20; ++i)
        out.push_back({{"subscriber", v[i].subscriber}, {"account", v[i].account}, {"count", v[i].count}});
    return {{"window", window_text}, {"by", by}, {"top", out}};
}

api_response query_report(const std::string& path, const std::string& history_path, int64_t since, int64_t until,
                          bool csv) {
    struct row {
        std::string address;
        json account;   // the holder at the events' own time; null: nobody
        std::map<std::string, uint64_t> by_type;
        uint64_t total = 0, messages = 0;
        int64_t first = INT64_MAX, last = 0;
    };
    std::map<std::string, row> rows;       // by row_key: one per address and holder
    std::map<std::string, uint64_t> messages;   // every holder's, kept for the offending ones
    event_holders holders(history_path, since, until);
    for_each_event(path, [&](const std::string&, const json& e) {
        const int64_t t = event_seconds(e);
        if (t < since || t > until || is_audit(e)) return;
        const std::string address = subscriber_of(e);
        json holder = holders.of(e);
        const std::string key = row_key(address, holder);
        if (is_session(e)) {
            messages[key] += e.value("messages", uint64_t{0});
            return;
        }
        row& rw = rows[key];
        rw.address = address;
        rw.account = std::move(holder);
        const uint64_t c = event_count(e);
        rw.by_type[e.value("type", "?")] += c;
        rw.total += c;
        rw.first = std::min(rw.first, t);
        rw.last = std::max(rw.last, t);
    });
    for (auto& [key, rw] : rows) rw.messages = messages[key];
    if (csv) {
        std::ostringstream o;
        o << "source_address,account,events,op25b_blocks,limit_hits,suspended_refusals,messages,first_seen,last_seen,"
             "first_seen_utc,last_seen_utc\n";
        for (const auto& [key, rw] : rows) {
            // A plain reference to capture: clang 14 cannot capture structured bindings (P1091R3, clang 16).
            const row& r = rw;
            auto get = [&r](const char* k) { auto it = r.by_type.find(k); return it == r.by_type.end() ? 0 : it->second; };
            o << rw.address << "," << (rw.account.is_string() ? rw.account.get<std::string>() : std::string()) << ","
              << rw.total << "," << get("op25b_block") << "," << get("limit_exceeded") << ","
              << get("account_suspended") << "," << rw.messages << "," << rw.first << "," << rw.last << ","
              << utc_time_text(rw.first) << "," << utc_time_text(rw.last) << "\n";
        }
        return {200, o.str(), "text/csv"};
    }
    json out = json::array();
    for (const auto& [key, rw] : rows)
        out.push_back({{"source_address", rw.address}, {"account", rw.account}, {"events", rw.total},
                       {"by_type", rw.by_type}, {"messages", rw.messages}, {"first_seen", rw.first},
                       {"first_seen_utc", utc_time_text(rw.first)}, {"last_seen", rw.last},
                       {"last_seen_utc", utc_time_text(rw.last)}});
    return {200, api_json_text({{"since", since},
                                {"since_utc", utc_time_text(since)},
                                {"until", until},
                                {"until_utc", utc_time_text(until)},
                                {"sources", out}})};
}

json query_whois(const std::string& path, const std::string& history_path, const ip_prefix& address, int64_t at,
                 const std::optional<std::string>& bound_now) {
    event_holders holders(history_path, at - 3600, at + 3600);
    json bindings = json::array();
    json held_by = json::array();
    if (!history_path.empty()) {
        binding_history history(history_path, binding_history::access::read_only);
        for (const auto& b : history.who_held(address, at)) {
            bindings.push_back({{"address", b.address.to_string()}, {"account", b.account}, {"session_id", b.session_id},
                                {"nas", b.nas}, {"start", b.start}, {"start_utc", utc_time_text(b.start)},
                                {"stop", b.stop ? json(*b.stop) : json(nullptr)},
                                {"stop_utc", b.stop ? json(utc_time_text(*b.stop)) : json(nullptr)},
                                {"stop_cause", b.stop_cause}});
            if (!b.account.empty() && std::find(held_by.begin(), held_by.end(), json(b.account)) == held_by.end())
                held_by.push_back(b.account);
        }
    }
    if (held_by.empty() && bound_now) held_by.push_back(*bound_now);
    json events = json::array();
    std::map<std::string, uint64_t> counts;
    smtp_counters smtp;
    const std::string text = address.to_string();
    const std::string who = address.family == 4 ? text.substr(0, text.find('/')) : "";
    if (path != "-") {
        for_each_event(path, [&](const std::string&, const json& e) {
            const std::string s = subscriber_of(e);
            bool match = !who.empty() ? s == who : false;
            if (address.family == 6 && !s.empty()) {
                std::string w;
                const auto sp = parse_prefix(s, w);
                match = sp && address.contains(*sp);
            }
            if (!match || std::llabs(event_seconds(e) - at) > 3600) return;
            // Counted for whoever held the address at `at` (nobody: the
            // events nobody held it for), listed with their own holder.
            const json holder = holders.of(e);
            const bool same_holder = held_by.empty() ? holder.is_null()
                                                     : std::find(held_by.begin(), held_by.end(), holder) != held_by.end();
            if (is_session(e)) {
                if (same_holder) smtp.add(e);
                return;
            }
            if (same_holder) counts[e.value("type", "?")] += event_count(e);
            if (events.size() < 200) {
                json listed = e;
                listed["held_by"] = holder;
                events.push_back(std::move(listed));
            }
        });
    }
    return {{"query", {{"address", address.to_string()}, {"at", at}, {"at_utc", utc_time_text(at)}}},
            {"bindings", bindings},
            {"held_by", held_by},
            {"bound_now", bound_now ? json(*bound_now) : json(nullptr)},
            {"smtp_within_1h", smtp.to_json()},
            {"events_within_1h", counts},
            {"events", events}};
}

}  // namespace sekisho
