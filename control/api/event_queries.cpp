#include "control/api/event_queries.h"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "control/api/api_request.h"

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

json query_events(const std::string& path, const events_query& q) {
    std::deque<std::string> kept;   // the newest q.n matching lines, as text
    for_each_event(path, [&](const std::string& line, const json& e) {
        if (e.value("time_ns", uint64_t{0}) <= q.since_ns) return;
        if (!q.type.empty() && e.value("type", "") != q.type) return;
        if (!q.subscriber.empty() && subscriber_of(e) != q.subscriber) return;
        if (!q.account.empty() && !(e.contains("account") && e["account"].is_string() && e["account"] == q.account))
            return;
        if (q.n == 0) return;
        if (kept.size() == q.n) kept.pop_front();
        kept.push_back(line);
    });
    json out = json::array();
    for (const auto& line : kept) out.push_back(json::parse(line));
    return {{"events", out}};
}

json query_top(const std::string& path, int64_t since, const std::string& by, const std::string& window_text) {
    const bool by_smtp = by == "messages" || by == "recipients" || by == "rejected_recipients" || by == "sessions";
    std::map<std::string, std::pair<std::string, uint64_t>> score;
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
        auto& s = score[subscriber_of(e)];
        if (e.contains("account") && e["account"].is_string()) s.first = e["account"];
        s.second += add;
    });
    std::vector<std::pair<std::string, std::pair<std::string, uint64_t>>> v(score.begin(), score.end());
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.second > b.second.second; });
    json out = json::array();
    for (size_t i = 0; i < v.size() && i < 20; ++i)
        out.push_back({{"subscriber", v[i].first}, {"account", v[i].second.first}, {"count", v[i].second.second}});
    return {{"window", window_text}, {"by", by}, {"top", out}};
}

api_response query_report(const std::string& path, int64_t since, int64_t until, bool csv) {
    struct row {
        std::string account;
        std::map<std::string, uint64_t> by_type;
        uint64_t total = 0;
        int64_t first = INT64_MAX, last = 0;
    };
    std::map<std::string, row> rows;
    std::map<std::string, uint64_t> messages;   // every subscriber's, kept for the offending ones
    for_each_event(path, [&](const std::string&, const json& e) {
        const int64_t t = event_seconds(e);
        if (t < since || t > until || is_audit(e)) return;
        if (is_session(e)) {
            messages[subscriber_of(e)] += e.value("messages", uint64_t{0});
            return;
        }
        row& rw = rows[subscriber_of(e)];
        if (e.contains("account") && e["account"].is_string()) rw.account = e["account"];
        const uint64_t c = event_count(e);
        rw.by_type[e.value("type", "?")] += c;
        rw.total += c;
        rw.first = std::min(rw.first, t);
        rw.last = std::max(rw.last, t);
    });
    if (csv) {
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
    return {200, api_json_text({{"since", since}, {"until", until}, {"sources", out}})};
}

json query_whois_events(const std::string& path, const ip_prefix& address, int64_t at) {
    json events = json::array();
    std::map<std::string, uint64_t> counts;
    smtp_counters smtp;
    const std::string text = address.to_string();
    const std::string who = address.family == 4 ? text.substr(0, text.find('/')) : "";
    for_each_event(path, [&](const std::string&, const json& e) {
        const std::string s = subscriber_of(e);
        bool match = !who.empty() ? s == who : false;
        if (address.family == 6 && !s.empty()) {
            std::string w;
            if (auto sp = parse_prefix(s, w))
                match = sp->family == 6 &&
                        std::equal(sp->bytes.begin(), sp->bytes.begin() + address.length / 8, address.bytes.begin());
        }
        if (!match || std::llabs(event_seconds(e) - at) > 3600) return;
        if (is_session(e)) {
            smtp.add(e);
            return;
        }
        counts[e.value("type", "?")] += event_count(e);
        if (events.size() < 200) events.push_back(e);
    });
    return {{"smtp_within_1h", smtp.to_json()}, {"events_within_1h", counts}, {"events", events}};
}

}  // namespace sekisho
