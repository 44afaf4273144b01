#include "control/policy/policy.h"

#include "control/policy/content_rules_yaml.h"
#include "control/policy/yaml_tree.h"
#include "dataplane/inspect/sender_signals.h"
#include "control/api/untrusted_text.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <set>
#include <map>
#include <sstream>
#include <unordered_map>

namespace sekisho {

namespace {

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& e : v) s += (s.empty() ? "" : "\n") + e;
    return s;
}

// The line of a "name:LINE: message": the first ":digits: " (a name may hold
// colons and digits of its own, "x:1:b.yaml"); 0 when there is none.
long line_in_message(const std::string& e) {
    for (size_t colon = e.find(':'); colon != std::string::npos; colon = e.find(':', colon + 1)) {
        size_t end = colon + 1;
        while (end < e.size() && e[end] >= '0' && e[end] <= '9') ++end;
        if (end > colon + 1 && end + 1 < e.size() && e[end] == ':' && e[end + 1] == ' ')
            return std::strtol(e.c_str() + colon + 1, nullptr, 10);
    }
    return 0;
}

// Messages in line order (a reader finds problems section by section, not in
// the order the checks ran); the order of one line's messages is kept.
std::vector<std::string> sorted_by_line(std::vector<std::string> errors) {
    std::stable_sort(errors.begin(), errors.end(), [](const std::string& a, const std::string& b) {
        return line_in_message(a) < line_in_message(b);
    });
    return errors;
}

}  // namespace

policy_error::policy_error(std::vector<std::string> errors)
    : std::runtime_error(join(sorted_by_line(errors))), errors_(sorted_by_line(std::move(errors))) {}

std::string ip_prefix::to_string() const {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(family == 4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
    return std::string(buf) + "/" + std::to_string(length);
}

std::optional<uint64_t> parse_duration(std::string_view text) {
    size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
    if (digits == 0 || digits > 12) return std::nullopt;
    uint64_t value = 0;
    std::from_chars(text.data(), text.data() + digits, value);
    const std::string_view unit = text.substr(digits);
    uint64_t scale;
    if (unit == "ms") scale = 1'000'000ull;
    else if (unit == "s") scale = 1'000'000'000ull;
    else if (unit == "m") scale = 60'000'000'000ull;
    else if (unit == "h") scale = 3'600'000'000'000ull;
    else if (unit == "d") scale = 86'400'000'000'000ull;
    else return std::nullopt;
    if (value == 0) return std::nullopt;
    // 12 digits of days overflow 64-bit nanoseconds (the limit is ~213503 days): refuse rather than wrap
    // ("213504d" would otherwise become 3 hours, e.g. as a history retention).
    if (value > UINT64_MAX / scale) return std::nullopt;
    return value * scale;
}

std::optional<ip_prefix> parse_prefix(std::string_view text, std::string& error) {
    ip_prefix p;
    const size_t slash = text.find('/');
    const std::string addr(text.substr(0, slash));
    if (inet_pton(AF_INET, addr.c_str(), p.bytes.data()) == 1) {
        p.family = 4;
    } else if (inet_pton(AF_INET6, addr.c_str(), p.bytes.data()) == 1) {
        p.family = 6;
    } else {
        error = "'" + std::string(text) + "' is not an IPv4 or IPv6 address or prefix";
        return std::nullopt;
    }
    const unsigned max_len = p.family == 4 ? 32 : 128;
    unsigned len = max_len;
    if (slash != std::string_view::npos) {
        const std::string_view digits = text.substr(slash + 1);
        const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), len);
        if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size() || len > max_len) {
            error = "'" + std::string(text) + "' has an invalid prefix length (0 to " +
                    std::to_string(max_len) + ")";
            return std::nullopt;
        }
    }
    p.length = static_cast<uint8_t>(len);
    // Host bits set usually means a typo in the length: refuse rather than guess.
    const unsigned bytes = p.family == 4 ? 4 : 16;
    for (unsigned bit = len; bit < bytes * 8; ++bit) {
        if (p.bytes[bit / 8] & (0x80 >> (bit % 8))) {
            ip_prefix net = p;
            for (unsigned b = len; b < bytes * 8; ++b) net.bytes[b / 8] &= static_cast<uint8_t>(~(0x80 >> (b % 8)));
            error = "'" + std::string(text) + "' has host bits set (did you mean " + net.to_string() + "?)";
            return std::nullopt;
        }
    }
    return p;
}

namespace {

// Collects errors with file:line context while walking the YAML tree.
class policy_reader {
public:
    policy_reader(std::string name, std::map<std::string, int>* key_lines = nullptr)
        : name_(std::move(name)), key_lines_(key_lines) {}

    void error(const yaml::node& at, const std::string& path, const std::string& msg) {
        const int line = at.line();
        errors_.push_back(name_ + ":" + std::to_string(line) + ": " + (path.empty() ? "" : path + ": ") + msg);
    }

    // Reports keys of `map` not in `known`.
    void check_keys(const yaml::node& map, const std::string& path, const std::vector<std::string>& known) {
        for (auto it = map.begin(); it != map.end(); ++it) {
            const std::string key = it->first.scalar();
            if (key_lines_) key_lines_->emplace(path.empty() ? key : path + "." + key, it->first.line());
            if (std::find(known.begin(), known.end(), key) == known.end()) {
                std::string list;
                for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
                error(it->first, path.empty() ? key : path + "." + key,
                      "unknown key (expected one of: " + list + ")");
            }
        }
    }

    bool is_map(const yaml::node& n, const std::string& path) {
        if (n.is_map()) return true;
        error(n, path, "expected a mapping of keys to values");
        return false;
    }

    std::optional<long long> integer(const yaml::node& n, const std::string& path, long long lo, long long hi) {
        if (!n.is_scalar()) {
            error(n, path, "expected an integer");
            return std::nullopt;
        }
        long long v = 0;
        const std::string& s = n.scalar();
        const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) {
            error(n, path, "'" + s + "' is not an integer");
            return std::nullopt;
        }
        if (v < lo || v > hi) {
            error(n, path, std::to_string(v) + " is out of range (" + std::to_string(lo) + " to " +
                               std::to_string(hi) + ")");
            return std::nullopt;
        }
        return v;
    }

    std::vector<uint16_t> ports(const yaml::node& n, const std::string& path) {
        std::vector<uint16_t> out;
        if (!n.is_sequence()) {
            error(n, path, "expected a list of TCP ports, e.g. [25]");
            return out;
        }
        for (size_t i = 0; i < n.size(); ++i) {
            const std::string p = path + "[" + std::to_string(i) + "]";
            if (auto v = integer(n[i], p, 1, 65535)) {
                const auto port = static_cast<uint16_t>(*v);
                if (std::find(out.begin(), out.end(), port) != out.end())
                    error(n[i], p, "port " + std::to_string(port) + " is listed twice");
                else
                    out.push_back(port);
            }
        }
        return out;
    }

    std::vector<ip_prefix> prefixes(const yaml::node& n, const std::string& path) {
        std::vector<ip_prefix> out;
        if (!n.is_sequence()) {
            error(n, path, "expected a list of prefixes, e.g. [198.51.100.0/24, \"2001:db8::/32\"]");
            return out;
        }
        auto at = [&](size_t i) { return path + "[" + std::to_string(i) + "]"; };
        std::vector<uint32_t> element;   // out[k] came from element[k] of the list
        out.reserve(n.size());
        element.reserve(n.size());
        for (size_t i = 0; i < n.size(); ++i) {
            const yaml::node e = n[i];
            if (!e.is_scalar()) {
                error(e, at(i), "expected a prefix such as 198.51.100.0/24");
                continue;
            }
            std::string why;
            auto prefix = parse_prefix(e.scalar(), why);
            if (!prefix) {
                error(e, at(i), why);
                continue;
            }
            prefix->line = e.line();
            out.push_back(*prefix);
            element.push_back(static_cast<uint32_t>(i));
        }
        // Lists hold up to millions of prefixes: duplicates found by sorting (cache-friendly), each
        // reported at its later occurrence with the line of the first.
        std::vector<uint32_t> order(out.size());
        for (uint32_t k = 0; k < order.size(); ++k) order[k] = k;
        std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
            const ip_prefix &x = out[a], &y = out[b];
            if (x.family != y.family) return x.family < y.family;
            if (x.length != y.length) return x.length < y.length;
            if (x.bytes != y.bytes) return x.bytes < y.bytes;
            return a < b;
        });
        std::vector<bool> drop;
        for (size_t k = 1; k < order.size(); ++k) {
            size_t first = k - 1;
            while (k < order.size() && out[order[k]] == out[order[first]]) {
                if (drop.empty()) drop.assign(out.size(), false);
                drop[order[k]] = true;
                const ip_prefix& d = out[order[k]];
                errors_.push_back(name_ + ":" + std::to_string(d.line) + ": " + at(element[order[k]]) + ": " +
                                  d.to_string() + " is listed twice (first at line " +
                                  std::to_string(out[order[first]].line) + ")");
                ++k;
            }
        }
        if (!drop.empty()) {
            size_t w = 0;
            for (size_t k = 0; k < out.size(); ++k)
                if (!drop[k]) out[w++] = out[k];
            out.resize(w);
        }
        return out;
    }

    std::optional<uint64_t> duration(const yaml::node& n, const std::string& path) {
        if (n.is_scalar())
            if (auto d = parse_duration(n.scalar())) return d;
        error(n, path, (n.is_scalar() ? "'" + n.scalar() + "'" : std::string("value")) +
                           " is not a duration (a positive number with ms, s, m, h or d, e.g. 10m)");
        return std::nullopt;
    }

    std::optional<std::string> name(const yaml::node& n, const std::string& path) {
        if (!n.is_scalar() || n.scalar().empty()) {
            error(n, path, "expected a non-empty name");
            return std::nullopt;
        }
        return n.scalar();
    }

    // An account name: printable (no control character an operator's
    // terminal would obey when a listing shows it; the API refuses the same).
    std::optional<std::string> account_name(const yaml::node& n, const std::string& path) {
        auto v = name(n, path);
        if (!v) return v;
        if (const auto bad = find_unprintable(*v)) {
            error(n, path, "the account name has a " + describe(*bad));
            return std::nullopt;
        }
        return v;
    }

    template <typename E>
    std::optional<E> choice(const yaml::node& n, const std::string& path,
                            const std::vector<std::pair<std::string, E>>& options) {
        std::string list;
        for (const auto& [name, value] : options) {
            if (n.is_scalar() && n.scalar() == name) return value;
            list += (list.empty() ? "" : ", ") + name;
        }
        error(n, path, (n.is_scalar() ? "'" + n.scalar() + "'" : std::string("value")) +
                           " is not one of: " + list);
        return std::nullopt;
    }

    std::vector<std::string> take_errors() { return std::move(errors_); }
    void add_error(std::string e) { errors_.push_back(std::move(e)); }
    const std::string& name() const { return name_; }

private:
    std::string name_;
    std::map<std::string, int>* key_lines_;
    std::vector<std::string> errors_;
};

// A mapping keeps every pair and node["key"] answers with the first: a key
// written twice would silently lose its second value. Every
// mapping in the document is checked, sequences included (a limit's keys).
void refuse_duplicate_keys(policy_reader& r, const yaml::node& n, const std::string& path) {
    if (n.is_map()) {
        std::map<std::string, int> seen;
        for (auto it = n.begin(); it != n.end(); ++it) {
            const std::string key = it->first.is_scalar() ? it->first.scalar() : std::string("?");
            const std::string sub = path.empty() ? key : path + "." + key;
            const int line = it->first.line();
            if (const auto [at, added] = seen.emplace(key, line); !added)
                r.error(it->first, sub, "duplicate key (first at line " + std::to_string(at->second) + ")");
            refuse_duplicate_keys(r, it->second, sub);
        }
    } else if (n.is_sequence()) {
        size_t i = 0;
        for (auto it = n.begin(); it != n.end(); ++it, ++i)
            if ((*it).is_map() || (*it).is_sequence()) refuse_duplicate_keys(r, *it, path + "[" + std::to_string(i) + "]");
    }
}

void read_bindings(policy_reader& r, const yaml::node& list, policy& pol) {
    if (!list.is_sequence()) {
        r.error(list, "subscribers.bindings", "expected a list of {prefix: ..., account: ...}");
        return;
    }
    for (size_t i = 0; i < list.size(); ++i) {
        const yaml::node b = list[i];
        const std::string path = "subscribers.bindings[" + std::to_string(i) + "]";
        if (!r.is_map(b, path)) continue;
        r.check_keys(b, path, {"prefix", "account"});
        static_binding sb;
        sb.line = b.line();
        if (!b["prefix"] || !b["account"]) {
            r.error(b, path, "needs both prefix and account");
            continue;
        }
        std::string why;
        auto p = b["prefix"].is_scalar() ? parse_prefix(b["prefix"].scalar(), why) : std::nullopt;
        if (!p) {
            r.error(b["prefix"], path + ".prefix", why.empty() ? "expected an address or prefix" : why);
            continue;
        }
        auto account = r.account_name(b["account"], path + ".account");
        if (!account) continue;
        sb.prefix = *p;
        sb.prefix.line = sb.line;
        sb.account = *account;
        pol.bindings.push_back(std::move(sb));
    }
}

void read_account_groups(policy_reader& r, const yaml::node& map, policy& pol) {
    if (!r.is_map(map, "account_groups")) return;
    for (auto it = map.begin(); it != map.end(); ++it) {
        const std::string group = it->first.scalar();
        const std::string path = "account_groups." + group;
        if (!it->second.is_sequence()) {
            r.error(it->second, path, "expected a list of account names");
            continue;
        }
        std::vector<std::string> members;
        for (size_t i = 0; i < it->second.size(); ++i)
            if (auto n = r.account_name(it->second[i], path + "[" + std::to_string(i) + "]")) members.push_back(*n);
        pol.account_groups.emplace_back(group, std::move(members));
    }
    if (pol.account_groups.size() > max_account_groups)
        r.error(map, "account_groups", std::to_string(pol.account_groups.size()) + " groups; at most " +
                                           std::to_string(max_account_groups));
}

// A limit's name: present, letters, digits, '-' and '_', and not the name of
// an earlier limit. False when the limit has no usable name.
bool read_limit_name(policy_reader& r, const yaml::node& l, const std::string& path, const policy& pol,
                     limit_rule& rule) {
    bool ok = true;
    if (auto n = l["name"] ? r.name(l["name"], path + ".name") : std::nullopt) {
        rule.name = *n;
        for (char c : rule.name)
            if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) {
                r.error(l["name"], path + ".name", "'" + rule.name + "': use letters, digits, '-' and '_' only");
                ok = false;
                break;
            }
        for (const auto& other : pol.limits)
            if (other.name == rule.name) {
                r.error(l["name"], path + ".name",
                        "'" + rule.name + "' is already the name of the limit at line " + std::to_string(other.line));
                ok = false;
            }
    } else {
        if (!l["name"]) r.error(l, path, "needs a name");
        ok = false;
    }
    return ok;
}

// A limit's measure, which every limit needs. False when it is missing or unknown.
bool read_limit_measure(policy_reader& r, const yaml::node& l, const std::string& path, limit_rule& rule) {
    if (!l["measure"]) {
        r.error(l, path, "needs a measure (connections, messages, recipients, recipients_per_message, "
                         "rejected_recipients)");
        return false;
    }
    if (auto m = r.choice<limit_measure>(l["measure"], path + ".measure",
                                         {{"connections", limit_measure::connections},
                                          {"messages", limit_measure::messages},
                                          {"recipients", limit_measure::recipients},
                                          {"recipients_per_message", limit_measure::recipients_per_message},
                                          {"rejected_recipients", limit_measure::rejected_recipients}})) {
        rule.measure = *m;
        return true;
    }
    return false;
}

// applies_to: any, dynamic, static, or group:NAME of an account group read before.
void read_limit_applies_to(policy_reader& r, const yaml::node& l, const std::string& path, const policy& pol,
                           limit_rule& rule) {
    if (!l["applies_to"]) return;
    const std::string a = l["applies_to"].is_scalar() ? l["applies_to"].scalar() : "";
    bool known = a == "any" || a == "dynamic" || a == "static";
    if (a.rfind("group:", 0) == 0) {
        const std::string g = a.substr(6);
        for (const auto& [group, members] : pol.account_groups) known = known || group == g;
        if (!known) r.error(l["applies_to"], path + ".applies_to", "no account group '" + g + "' in account_groups");
        else rule.applies_to = a;
    } else if (!known) {
        r.error(l["applies_to"], path + ".applies_to", "'" + a + "' is not one of: any, dynamic, static, group:NAME");
    } else {
        rule.applies_to = a;
    }
}

// window, burst, action and cooldown: which apply depends on the measure, so
// a misuse is reported only when the measure and name were read (`ok`).
void read_limit_timing(policy_reader& r, const yaml::node& l, const std::string& path, bool ok, limit_rule& rule) {
    const bool per_message = rule.measure == limit_measure::recipients_per_message;
    if (l["window"]) {
        if (per_message && ok)
            r.error(l["window"], path + ".window", "recipients_per_message counts within one message: no window");
        else if (auto d = r.duration(l["window"], path + ".window"))
            rule.window_ns = *d;
    } else if (!per_message && ok) {
        r.error(l, path, "needs a window (e.g. 1s, 10m, 1h)");
    }
    rule.burst = rule.max;
    if (l["burst"]) {
        if (rule.measure != limit_measure::connections && ok)
            r.error(l["burst"], path + ".burst", "burst applies to measure connections only");
        else if (auto b = r.integer(l["burst"], path + ".burst", 1, 1'000'000'000))
            rule.burst = static_cast<uint32_t>(*b);
    }
    rule.action = rule.measure == limit_measure::connections ? limit_action::drop_syn : limit_action::tempfail;
    if (l["action"])
        if (auto a = r.choice<limit_action>(l["action"], path + ".action",
                                            {{"drop-syn", limit_action::drop_syn},
                                             {"reset", limit_action::reset},
                                             {"tempfail", limit_action::tempfail},
                                             {"monitor", limit_action::monitor}})) {
            if (*a == limit_action::drop_syn && rule.measure != limit_measure::connections && ok)
                r.error(l["action"], path + ".action", "drop-syn applies to measure connections only");
            else
                rule.action = *a;
        }
    if (l["cooldown"])
        if (auto d = r.duration(l["cooldown"], path + ".cooldown")) rule.cooldown_ns = *d;
}

// One entry of limits (a mapping, checked by the caller). The rule is kept
// even when it has errors: the errors fail the policy, and later limits are
// still checked against its name.
limit_rule read_limit(policy_reader& r, const yaml::node& l, const std::string& path, const policy& pol) {
    r.check_keys(l, path, {"name", "applies_to", "scope", "measure", "max", "window", "burst", "action",
                           "cooldown"});
    limit_rule rule;
    rule.line = l.line();
    const bool name_ok = read_limit_name(r, l, path, pol, rule);
    const bool measure_ok = read_limit_measure(r, l, path, rule);
    bool ok = name_ok && measure_ok;
    read_limit_applies_to(r, l, path, pol, rule);
    if (l["scope"])
        if (auto sc = r.choice<limit_scope>(l["scope"], path + ".scope",
                                            {{"address", limit_scope::address},
                                             {"prefix", limit_scope::prefix},
                                             {"account", limit_scope::account}}))
            rule.scope = *sc;
    if (!l["max"]) {
        r.error(l, path, "needs max");
        ok = false;
    } else if (auto m = r.integer(l["max"], path + ".max", 1, 1'000'000'000)) {
        rule.max = static_cast<uint32_t>(*m);
    }
    read_limit_timing(r, l, path, ok, rule);
    return rule;
}

void read_limits(policy_reader& r, const yaml::node& list, policy& pol) {
    constexpr size_t max_limits = 16;
    if (!list.is_sequence()) {
        r.error(list, "limits", "expected a list of limits");
        return;
    }
    if (list.size() > max_limits)
        r.error(list, "limits", std::to_string(list.size()) + " limits; at most " + std::to_string(max_limits));
    for (size_t i = 0; i < list.size(); ++i) {
        const yaml::node l = list[i];
        const std::string path = "limits[" + std::to_string(i) + "]";
        if (!r.is_map(l, path)) continue;
        pol.limits.push_back(read_limit(r, l, path, pol));
    }
    size_t account_scoped = 0, subscriber_scoped = 0;
    for (const auto& l : pol.limits) (l.scope == limit_scope::account ? account_scoped : subscriber_scoped)++;
    if (account_scoped > max_account_limit_slots)
        r.error(list, "limits", std::to_string(account_scoped) + " limits with scope account; at most " +
                                    std::to_string(max_account_limit_slots));
    if (subscriber_scoped > max_subscriber_limit_slots)
        r.error(list, "limits", std::to_string(subscriber_scoped) + " limits with scope address or prefix; at most " +
                                    std::to_string(max_subscriber_limit_slots));
}

// A {max, window, score} mapping into `into`; all three are required.
void read_windowed_score(policy_reader& r, const yaml::node& w, const std::string& path, windowed_score& into) {
    if (!r.is_map(w, path)) return;
    r.check_keys(w, path, {"max", "window", "score"});
    if (!w["max"] || !w["window"] || !w["score"]) {
        r.error(w, path, "needs max, window and score");
        return;
    }
    if (auto v = r.integer(w["max"], path + ".max", 1, 1'000'000'000)) into.max = static_cast<uint32_t>(*v);
    if (auto d = r.duration(w["window"], path + ".window")) into.window_ns = *d;
    if (auto v = r.integer(w["score"], path + ".score", -1000, 1000)) into.score = static_cast<int32_t>(*v);
}

// inspection.signals (a mapping, checked by the caller): each signal's score,
// and sender_domains within what a subscriber's sender_domain_set tracks.
void read_inspection_signals(policy_reader& r, const yaml::node& s, inspection_settings& in) {
    r.check_keys(s, "inspection.signals",
                 {"from_mismatch", "ehlo_ip_literal", "ehlo_bare_ip", "ehlo_not_fqdn", "sender_domains"});
    auto score = [&](const char* key, int32_t& into) {
        if (s[key])
            if (auto v = r.integer(s[key], std::string("inspection.signals.") + key, -1000, 1000))
                into = static_cast<int32_t>(*v);
    };
    score("from_mismatch", in.from_mismatch);
    score("ehlo_ip_literal", in.ehlo_ip_literal);
    score("ehlo_bare_ip", in.ehlo_bare_ip);
    score("ehlo_not_fqdn", in.ehlo_not_fqdn);
    if (s["sender_domains"]) {
        read_windowed_score(r, s["sender_domains"], "inspection.signals.sender_domains", in.sender_domains);
        if (in.sender_domains.max > sender_domain_set::capacity)
            r.error(s["sender_domains"]["max"], "inspection.signals.sender_domains.max",
                    std::to_string(in.sender_domains.max) + " is above " +
                        std::to_string(sender_domain_set::capacity) + ", the distinct domains tracked per subscriber");
    }
}

// A list of {score, action} with increasing scores, at most
// max_score_thresholds of them (the rest are not read), appended to `into`
// (`count` entries so far). A message may take any action; a subscriber only
// event, tighten or quarantine.
void read_score_thresholds(policy_reader& r, const yaml::node& list, const std::string& path, score_threshold* into,
                           unsigned& count, bool per_message) {
    if (!list.is_sequence()) {
        r.error(list, path, "expected a list of {score: N, action: A}");
        return;
    }
    if (list.size() > max_score_thresholds)
        r.error(list, path, "at most " + std::to_string(max_score_thresholds) + " thresholds");
    for (size_t i = 0; i < list.size() && i < max_score_thresholds; ++i) {
        const yaml::node t = list[i];
        const std::string tp = path + "[" + std::to_string(i) + "]";
        if (!r.is_map(t, tp)) continue;
        r.check_keys(t, tp, {"score", "action"});
        score_threshold st;
        if (!t["score"] || !t["action"]) {
            r.error(t, tp, "needs score and action");
            continue;
        }
        if (auto v = r.integer(t["score"], tp + ".score", 1, 1'000'000)) st.score = static_cast<int32_t>(*v);
        auto a = per_message ? r.choice<score_action>(t["action"], tp + ".action",
                                                      {{"event", score_action::event},
                                                       {"tighten", score_action::tighten},
                                                       {"tempfail", score_action::tempfail},
                                                       {"reset", score_action::reset},
                                                       {"quarantine", score_action::quarantine}})
                             : r.choice<score_action>(t["action"], tp + ".action",
                                                      {{"event", score_action::event},
                                                       {"tighten", score_action::tighten},
                                                       {"quarantine", score_action::quarantine}});
        if (a) st.action = *a;
        if (count && into[count - 1].score >= st.score)
            r.error(t["score"], tp + ".score", "thresholds must increase");
        into[count++] = st;
    }
}

void read_inspection(policy_reader& r, const yaml::node& n, policy& pol) {
    inspection_settings& in = pol.inspection;
    pol.inspection_line = n.line();
    r.check_keys(n, "inspection", {"enabled", "max_body_bytes", "flows_per_worker", "rules", "compile_timeout",
                                   "signals", "campaign", "message_actions", "subscriber_actions"});
    in.enabled = true;
    if (n["enabled"]) {
        if (n["enabled"].is_scalar() && (n["enabled"].scalar() == "true" || n["enabled"].scalar() == "false"))
            in.enabled = n["enabled"].scalar() == "true";
        else
            r.error(n["enabled"], "inspection.enabled", "expected true or false");
    }
    if (n["rules"]) {
        std::vector<std::string> errors;
        pol.content_rules = parse_content_rules(n["rules"], r.name(), errors, "inspection.rules");
        for (auto& e : errors) r.add_error(std::move(e));
    }
    if (n["compile_timeout"])
        if (auto d = r.duration(n["compile_timeout"], "inspection.compile_timeout")) pol.content_compile_timeout_ns = *d;
    if (n["max_body_bytes"])
        if (auto v = r.integer(n["max_body_bytes"], "inspection.max_body_bytes", 0, 16 << 20))
            in.max_body_bytes = static_cast<uint32_t>(*v);
    if (n["flows_per_worker"])
        if (auto v = r.integer(n["flows_per_worker"], "inspection.flows_per_worker", 16, 1 << 22))
            in.flows_per_worker = static_cast<uint32_t>(*v);
    if (const auto s = n["signals"]; s && r.is_map(s, "inspection.signals")) read_inspection_signals(r, s, in);
    if (const auto c = n["campaign"]; c && r.is_map(c, "inspection.campaign")) {
        r.check_keys(c, "inspection.campaign", {"recipients", "subscribers"});
        if (c["recipients"])
            read_windowed_score(r, c["recipients"], "inspection.campaign.recipients", in.campaign_recipients);
        if (c["subscribers"])
            read_windowed_score(r, c["subscribers"], "inspection.campaign.subscribers", in.campaign_subscribers);
    }
    if (n["message_actions"])
        read_score_thresholds(r, n["message_actions"], "inspection.message_actions", in.message_actions,
                              in.message_action_count, true);
    if (const auto sa = n["subscriber_actions"]; sa && r.is_map(sa, "inspection.subscriber_actions")) {
        r.check_keys(sa, "inspection.subscriber_actions", {"window", "thresholds"});
        if (sa["window"])
            if (auto d = r.duration(sa["window"], "inspection.subscriber_actions.window")) in.subscriber_window_ns = *d;
        if (sa["thresholds"])
            read_score_thresholds(r, sa["thresholds"], "inspection.subscriber_actions.thresholds",
                                  in.subscriber_actions, in.subscriber_action_count, false);
    }
}

// "100MB", "64KB", "1GB" (binary multiples), a plain number of bytes, or 0.
std::optional<uint64_t> parse_bytes(std::string_view text) {
    size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
    if (digits == 0 || digits > 12) return std::nullopt;
    uint64_t value = 0;
    std::from_chars(text.data(), text.data() + digits, value);
    const std::string_view unit = text.substr(digits);
    if (unit.empty() || unit == "B") return value;
    if (unit == "KB") return value << 10;
    if (unit == "MB") return value << 20;
    if (unit == "GB") return value << 30;
    return std::nullopt;
}

void read_events(policy_reader& r, const yaml::node& n, policy& pol) {
    events_config& ev = pol.events;
    r.check_keys(n, "events", {"file", "rotate_bytes", "rotate_interval", "keep", "fsync", "fsync_interval",
                               "aggregate_window", "ring_size"});
    // A duration, or 0 ("0", "0s") where 0 switches the feature off.
    auto duration_or_zero = [&](const yaml::node& v, const std::string& path) -> std::optional<uint64_t> {
        if (v.is_scalar() && !v.scalar().empty() && v.scalar()[0] == '0') {
            const std::string unit = v.scalar().substr(1);
            if (unit.empty() || unit == "ms" || unit == "s" || unit == "m" || unit == "h" || unit == "d") return 0;
        }
        if (v.is_scalar())
            if (auto d = parse_duration(v.scalar())) return d;
        r.error(v, path, (v.is_scalar() ? "'" + v.scalar() + "'" : std::string("value")) +
                             " is not a duration (0, or a positive number with ms, s, m, h or d, e.g. 10s)");
        return std::nullopt;
    };
    if (n["file"])
        if (auto v = r.name(n["file"], "events.file")) ev.file = *v;
    if (const auto b = n["rotate_bytes"]) {
        const auto v = b.is_scalar() ? parse_bytes(b.scalar()) : std::nullopt;
        if (!v)
            r.error(b, "events.rotate_bytes", (b.is_scalar() ? "'" + b.scalar() + "'" : std::string("value")) +
                                                  " is not a size (bytes, or a number with KB, MB or GB, e.g. 100MB; "
                                                  "0: no size rotation)");
        else if (*v != 0 && *v < 4096)
            r.error(b, "events.rotate_bytes", "'" + b.scalar() + "' is below 4KB (0: no size rotation)");
        else
            ev.rotate_bytes = *v;
    }
    if (n["rotate_interval"])
        if (auto d = duration_or_zero(n["rotate_interval"], "events.rotate_interval")) {
            if (*d != 0 && *d < 1'000'000'000ull)
                r.error(n["rotate_interval"], "events.rotate_interval", "below 1s (0: no time rotation)");
            else
                ev.rotate_interval_ns = *d;
        }
    if (n["keep"])
        if (auto v = r.integer(n["keep"], "events.keep", 0, 1000)) ev.keep = static_cast<uint32_t>(*v);
    if (n["fsync"])
        if (auto f = r.choice<events_fsync>(n["fsync"], "events.fsync",
                                            {{"never", events_fsync::never},
                                             {"rotate", events_fsync::rotate},
                                             {"interval", events_fsync::interval},
                                             {"every", events_fsync::every}}))
            ev.fsync = *f;
    if (n["fsync_interval"]) {
        if (auto d = r.duration(n["fsync_interval"], "events.fsync_interval")) ev.fsync_interval_ns = *d;
        if (ev.fsync != events_fsync::interval)
            r.error(n["fsync_interval"], "events.fsync_interval", "applies to fsync: interval only");
    }
    if (n["aggregate_window"])
        if (auto d = duration_or_zero(n["aggregate_window"], "events.aggregate_window")) {
            if (*d > 3'600'000'000'000ull)
                r.error(n["aggregate_window"], "events.aggregate_window", "above 1h (events would wait that long)");
            else
                ev.aggregate_window_ns = *d;
        }
    if (n["ring_size"])
        if (auto v = r.integer(n["ring_size"], "events.ring_size", 1, 1 << 22)) ev.ring_size = static_cast<uint32_t>(*v);
}

// ports (a mapping, checked by the caller). A port may not be both smtp and
// submission; the message points at the list the operator wrote.
void read_ports(policy_reader& r, const yaml::node& ports, policy& pol) {
    r.check_keys(ports, "ports", {"smtp", "submission", "implicit_tls"});
    if (ports["smtp"]) pol.smtp_ports = r.ports(ports["smtp"], "ports.smtp");
    if (ports["submission"]) pol.submission_ports = r.ports(ports["submission"], "ports.submission");
    if (ports["implicit_tls"]) pol.implicit_tls_ports = r.ports(ports["implicit_tls"], "ports.implicit_tls");
    // Either list may be the default; point at the one the operator wrote.
    const bool explicit_submission = static_cast<bool>(ports["submission"]);
    for (uint16_t p : pol.smtp_ports)
        if (std::find(pol.submission_ports.begin(), pol.submission_ports.end(), p) != pol.submission_ports.end())
            r.error(explicit_submission ? ports["submission"] : ports["smtp"],
                    explicit_submission ? "ports.submission" : "ports.smtp",
                    "port " + std::to_string(p) + " is in both ports.smtp and ports.submission" +
                        (explicit_submission ? "" : " (default [587, 465])") + "; a port is blocked or it is not");
}

// subscribers (a mapping, checked by the caller). A range is dynamic or
// static, never both: linear in the dynamic list, which may hold millions.
void read_subscribers(policy_reader& r, const yaml::node& subs, policy& pol) {
    r.check_keys(subs, "subscribers", {"dynamic", "static", "ipv6_prefix_length", "bindings"});
    if (const auto b = subs["bindings"]) read_bindings(r, b, pol);
    if (subs["dynamic"]) pol.dynamic_ranges = r.prefixes(subs["dynamic"], "subscribers.dynamic");
    if (subs["static"]) pol.static_ranges = r.prefixes(subs["static"], "subscribers.static");
    if (subs["ipv6_prefix_length"])
        if (auto n = r.integer(subs["ipv6_prefix_length"], "subscribers.ipv6_prefix_length", 32, 128))
            pol.ipv6_prefix_length = static_cast<uint8_t>(*n);
    if (pol.static_ranges.empty() || pol.dynamic_ranges.empty()) return;
    // The static list is the short one: hashed, and the dynamic list (up to millions) scanned.
    std::unordered_map<ip_prefix, int, ip_prefix_hash> dynamic_line_of;   // static prefix -> dynamic line
    for (const auto& s : pol.static_ranges) dynamic_line_of.emplace(s, 0);
    for (const auto& d : pol.dynamic_ranges)
        if (const auto it = dynamic_line_of.find(d); it != dynamic_line_of.end() && it->second == 0)
            it->second = d.line;
    for (const auto& s : pol.static_ranges)
        if (const int line = dynamic_line_of[s])
            r.error(subs["static"], "subscribers.static",
                    s.to_string() + " is also in subscribers.dynamic (line " + std::to_string(line) +
                        "); a range is dynamic or static");
}

// The table entries the static bindings need. A static binding becomes one
// table entry per IPv4 address or IPv6 subscriber prefix it covers: bounded
// per binding here (a wider one is an error and not counted), and in all by
// tracking.max_bindings (checked by the caller, once tracking is read).
uint64_t binding_table_entries(policy_reader& r, const policy& pol) {
    uint64_t binding_entries = 0;
    for (size_t i = 0; i < pol.bindings.size(); ++i) {
        const static_binding& b = pol.bindings[i];
        const unsigned unit = b.prefix.family == 4 ? 32u : pol.ipv6_prefix_length;
        const unsigned host_bits = unit - std::min<unsigned>(b.prefix.length, unit);
        if (host_bits > max_binding_host_bits) {
            r.add_error(r.name() + ":" + std::to_string(b.line) + ": subscribers.bindings[" + std::to_string(i) +
                        "].prefix: " + b.prefix.to_string() + " is too wide to bind (" +
                        (host_bits >= 32 ? std::string("2^") + std::to_string(host_bits)
                                         : std::to_string(uint64_t{1} << host_bits)) +
                        (b.prefix.family == 4 ? " addresses" : " subscriber prefixes") + "; at most " +
                        std::to_string(uint64_t{1} << max_binding_host_bits) + " per binding)");
            continue;
        }
        binding_entries += uint64_t{1} << host_bits;
    }
    return binding_entries;
}

// op25b (a mapping, checked by the caller): mode and action.
void read_op25b(policy_reader& r, const yaml::node& op, policy& pol) {
    r.check_keys(op, "op25b", {"mode", "action"});
    if (op["mode"])
        if (auto m = r.choice<op25b_mode>(op["mode"], "op25b.mode",
                                          {{"enforce", op25b_mode::enforce}, {"monitor", op25b_mode::monitor}}))
            pol.mode = *m;
    if (op["action"])
        if (auto a = r.choice<op25b_action>(op["action"], "op25b.action",
                                            {{"reset", op25b_action::reset}, {"drop", op25b_action::drop}}))
            pol.action = *a;
}

// radius and history (each a mapping, checked by the caller): where the
// identity of subscribers comes from and how long its history is kept.
void read_radius(policy_reader& r, const yaml::node& radius, policy& pol) {
    r.check_keys(radius, "radius", {"listen", "clients_file"});
    if (radius["listen"])
        if (auto v = r.name(radius["listen"], "radius.listen")) pol.identity.radius_listen = *v;
    if (radius["clients_file"])
        if (auto v = r.name(radius["clients_file"], "radius.clients_file")) pol.identity.radius_clients_file = *v;
    if (pol.identity.radius_listen.empty() != pol.identity.radius_clients_file.empty())
        r.error(radius, "radius", "listen and clients_file go together");
}

void read_history(policy_reader& r, const yaml::node& history, policy& pol) {
    r.check_keys(history, "history", {"database", "retention"});
    if (history["database"])
        if (auto v = r.name(history["database"], "history.database")) pol.identity.history_database = *v;
    if (history["retention"])
        if (auto d = r.duration(history["retention"], "history.retention")) pol.identity.history_retention_ns = *d;
}

// tracking (a mapping, checked by the caller): the sizes of the per-worker
// and shared tables, and the flow idle timeout.
void read_tracking(policy_reader& r, const yaml::node& t, policy& pol) {
    r.check_keys(t, "tracking", {"flows_per_worker", "flow_idle_timeout", "subscribers_per_worker",
                                 "max_bindings", "max_accounts"});
    auto count = [&](const char* key, uint32_t& into, long long lo, long long hi) {
        if (t[key])
            if (auto v = r.integer(t[key], std::string("tracking.") + key, lo, hi)) into = static_cast<uint32_t>(*v);
    };
    count("flows_per_worker", pol.tracking.flows_per_worker, 64, 1 << 26);
    count("subscribers_per_worker", pol.tracking.subscribers_per_worker, 64, 1 << 26);
    count("max_bindings", pol.tracking.max_bindings, 64, 1 << 28);
    count("max_accounts", pol.tracking.max_accounts, 64, 1 << 28);
    if (t["flow_idle_timeout"])
        if (auto d = r.duration(t["flow_idle_timeout"], "tracking.flow_idle_timeout"))
            pol.tracking.flow_idle_timeout_ns = *d;
}

// The policy in `root`, read section by section. Every error is collected
// (sections that depend on another are read after it: limits after
// account_groups); any error throws policy_error with all of them in line order.
policy read_policy(const yaml::node& root, const std::string& name) {
    policy pol;
    pol.source = name;
    policy_reader r(name, &pol.key_lines);

    if (!root.defined() || root.is_null()) throw policy_error({name + ":1: the policy is empty"});
    if (!r.is_map(root, "")) throw policy_error(r.take_errors());
    refuse_duplicate_keys(r, root, "");
    r.check_keys(root, "", {"version", "ports", "subscribers", "relays", "op25b", "account_groups", "limits",
                            "tracking", "radius", "history", "inspection", "events"});

    if (const auto v = root["version"]) {
        if (auto n = r.integer(v, "version", 1, 1)) pol.version = static_cast<int>(*n);
    } else {
        r.error(root, "version", "missing (this release reads version: 1)");
    }
    if (const auto ports = root["ports"]; ports && r.is_map(ports, "ports")) read_ports(r, ports, pol);
    if (const auto subs = root["subscribers"]; subs && r.is_map(subs, "subscribers")) read_subscribers(r, subs, pol);
    const uint64_t binding_entries = binding_table_entries(r, pol);
    if (const auto relays = root["relays"]) pol.relays = r.prefixes(relays, "relays");
    if (const auto op = root["op25b"]; op && r.is_map(op, "op25b")) read_op25b(r, op, pol);
    if (const auto radius = root["radius"]; radius && r.is_map(radius, "radius")) read_radius(r, radius, pol);
    if (const auto history = root["history"]; history && r.is_map(history, "history")) read_history(r, history, pol);
    if (const auto ev = root["events"]; ev && r.is_map(ev, "events")) read_events(r, ev, pol);
    if (const auto groups = root["account_groups"]) read_account_groups(r, groups, pol);
    if (const auto insp = root["inspection"]; insp && r.is_map(insp, "inspection")) read_inspection(r, insp, pol);
    if (const auto limits = root["limits"]) read_limits(r, limits, pol);
    if (const auto t = root["tracking"]; t && r.is_map(t, "tracking")) read_tracking(r, t, pol);

    if (binding_entries > pol.tracking.max_bindings)
        r.add_error(name + ":" + std::to_string(pol.line_of("subscribers.bindings")) + ": subscribers.bindings: " +
                    std::to_string(binding_entries) + " table entries, more than tracking.max_bindings (" +
                    std::to_string(pol.tracking.max_bindings) + ")");

    auto errors = r.take_errors();
    if (!errors.empty()) throw policy_error(std::move(errors));
    return pol;
}

yaml::document parse_yaml(const std::string& text, const std::string& name) {
    try {
        return yaml::document::parse(text);
    } catch (const yaml::syntax_error& e) {
        throw policy_error({name + ":" + std::to_string(e.line()) + ": YAML syntax error: " + e.what()});
    }
}

}  // namespace

policy load_policy_text(const std::string& text, const std::string& name) {
    const yaml::document doc = parse_yaml(text, name);
    return read_policy(doc.root(), name);
}

std::string read_policy_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw policy_error({path + ":0: cannot open the policy file"});
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

policy load_policy_file(const std::string& path) { return load_policy_text(read_policy_file(path), path); }

}  // namespace sekisho

namespace sekisho {

std::string duration_text(uint64_t ns) {
    if (ns == 0) return "0";
    static constexpr std::pair<uint64_t, const char*> units[] = {
        {86'400'000'000'000ull, "d"}, {3'600'000'000'000ull, "h"}, {60'000'000'000ull, "m"},
        {1'000'000'000ull, "s"},      {1'000'000ull, "ms"}};
    for (const auto& [scale, unit] : units)
        if (ns % scale == 0) return std::to_string(ns / scale) + unit;
    return std::to_string(ns) + "ns";
}

namespace {

const char* fsync_text(events_fsync f) {
    switch (f) {
        case events_fsync::never: return "never";
        case events_fsync::rotate: return "rotate";
        case events_fsync::interval: return "interval";
        case events_fsync::every: return "every";
    }
    return "?";
}

}  // namespace

std::vector<start_only_change> start_only_changes(const policy& a, const policy& b) {
    std::vector<start_only_change> out;
    auto check = [&](const char* key, const std::string& before, const std::string& after) {
        if (before != after) out.push_back({key, before, after, b.line_of(key)});
    };
    auto number = [](uint64_t v) { return std::to_string(v); };
    check("subscribers.ipv6_prefix_length", number(a.ipv6_prefix_length), number(b.ipv6_prefix_length));
    check("tracking.flows_per_worker", number(a.tracking.flows_per_worker), number(b.tracking.flows_per_worker));
    check("tracking.flow_idle_timeout", duration_text(a.tracking.flow_idle_timeout_ns),
          duration_text(b.tracking.flow_idle_timeout_ns));
    check("tracking.subscribers_per_worker", number(a.tracking.subscribers_per_worker),
          number(b.tracking.subscribers_per_worker));
    check("tracking.max_bindings", number(a.tracking.max_bindings), number(b.tracking.max_bindings));
    check("tracking.max_accounts", number(a.tracking.max_accounts), number(b.tracking.max_accounts));
    check("inspection.flows_per_worker", number(a.inspection.flows_per_worker), number(b.inspection.flows_per_worker));
    check("radius.listen", a.identity.radius_listen, b.identity.radius_listen);
    check("radius.clients_file", a.identity.radius_clients_file, b.identity.radius_clients_file);
    check("history.database", a.identity.history_database, b.identity.history_database);
    check("history.retention", duration_text(a.identity.history_retention_ns),
          duration_text(b.identity.history_retention_ns));
    check("events.file", a.events.file, b.events.file);
    check("events.rotate_bytes", number(a.events.rotate_bytes), number(b.events.rotate_bytes));
    check("events.rotate_interval", duration_text(a.events.rotate_interval_ns),
          duration_text(b.events.rotate_interval_ns));
    check("events.keep", number(a.events.keep), number(b.events.keep));
    check("events.fsync", fsync_text(a.events.fsync), fsync_text(b.events.fsync));
    check("events.fsync_interval", duration_text(a.events.fsync_interval_ns), duration_text(b.events.fsync_interval_ns));
    check("events.aggregate_window", duration_text(a.events.aggregate_window_ns),
          duration_text(b.events.aggregate_window_ns));
    check("events.ring_size", number(a.events.ring_size), number(b.events.ring_size));
    // In the order the policy writes them, as every other list of problems.
    std::stable_sort(out.begin(), out.end(),
                     [](const start_only_change& x, const start_only_change& y) { return x.line < y.line; });
    return out;
}

std::string describe(const start_only_change& c, const std::string& source) {
    auto shown = [](const std::string& v) { return v.empty() ? std::string("(none)") : v; };
    return source + ":" + std::to_string(c.line) + ": " + c.key + ": read at start only; running " + shown(c.running) +
           ", this policy " + shown(c.wanted) + " (restart sekishod to change it)";
}

}  // namespace sekisho
