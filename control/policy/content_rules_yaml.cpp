#include "control/policy/content_rules_yaml.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>
#include <set>

namespace sekisho {

namespace {

class rules_reader {
public:
    rules_reader(const std::string& file, std::vector<std::string>& errors) : file_(file), errors_(errors) {}

    static int line_of(const yaml::node& n) { return n.line(); }

    void error(const yaml::node& at, const std::string& path, const std::string& msg) {
        errors_.push_back(file_ + ":" + std::to_string(line_of(at)) + ": " + path + ": " + msg);
    }

    std::optional<std::string> scalar(const yaml::node& n, const std::string& path, const char* what) {
        if (n.is_scalar() && !n.scalar().empty()) return n.scalar();
        error(n, path, std::string("expected ") + what);
        return std::nullopt;
    }

private:
    const std::string& file_;
    std::vector<std::string>& errors_;
};

bool id_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
}

}  // namespace

std::vector<content_rule> parse_content_rules(const yaml::node& list, const std::string& file,
                                              std::vector<std::string>& errors, const std::string& list_path) {
    std::vector<content_rule> out;
    rules_reader r(file, errors);
    if (!list.is_sequence()) {
        r.error(list, list_path, "expected a list of rules ({id: ..., pattern: ..., where: ..., score: ...})");
        return out;
    }
    if (list.size() > content_rules_max) {
        r.error(list, list_path,
                std::to_string(list.size()) + " rules; at most " + std::to_string(content_rules_max));
        return out;
    }
    static const std::vector<std::string> known = {"id", "pattern", "flags", "where", "score", "action"};
    std::set<std::string> header_names;
    std::map<std::string, int> id_lines;
    yaml::node first_over;   // the where: that named one header field too many
    bool over = false;
    for (size_t i = 0; i < list.size(); ++i) {
        const yaml::node n = list[i];
        const std::string path = list_path + "[" + std::to_string(i) + "]";
        if (!n.is_map()) {
            r.error(n, path, "expected a mapping of keys to values");
            continue;
        }
        for (auto it = n.begin(); it != n.end(); ++it) {
            const std::string key = it->first.scalar();
            if (std::find(known.begin(), known.end(), key) == known.end())
                r.error(it->first, path + "." + key,
                        "unknown key (expected one of: id, pattern, flags, where, score, action)");
        }
        content_rule rule;
        rule.line = rules_reader::line_of(n);
        bool ok = true;

        if (!n["id"]) {
            r.error(n, path, "needs an id");
            ok = false;
        } else if (auto id = r.scalar(n["id"], path + ".id", "a rule id")) {
            rule.id = *id;
            if (rule.id.size() > content_rule_id_max ||
                !std::all_of(rule.id.begin(), rule.id.end(), id_char)) {
                r.error(n["id"], path + ".id",
                        "'" + rule.id + "': use at most " + std::to_string(content_rule_id_max) +
                            " letters, digits, '_', '-' and '.'");
                ok = false;
            }
            if (auto [it, fresh] = id_lines.emplace(rule.id, rule.line); !fresh) {
                r.error(n["id"], path + ".id",
                        "'" + rule.id + "' is already the id of the rule at line " + std::to_string(it->second));
                ok = false;
            }
        } else {
            ok = false;
        }

        if (!n["pattern"]) {
            r.error(n, path, "needs a pattern");
            ok = false;
        } else if (auto p = r.scalar(n["pattern"], path + ".pattern", "a pattern (a string)")) {
            rule.pattern = *p;
            if (rule.pattern.size() > content_pattern_max) {
                r.error(n["pattern"], path + ".pattern",
                        std::to_string(rule.pattern.size()) + " bytes; at most " +
                            std::to_string(content_pattern_max));
                ok = false;
            } else if (rule.pattern.find('\0') != std::string::npos) {
                r.error(n["pattern"], path + ".pattern", "contains a NUL byte (write \\x00)");
                ok = false;
            }
        } else {
            ok = false;
        }

        if (const yaml::node f = n["flags"]) {
            std::vector<yaml::node> words;
            if (f.is_scalar()) words.push_back(f);
            else if (f.is_sequence())
                for (size_t k = 0; k < f.size(); ++k) words.push_back(f[k]);
            else
                r.error(f, path + ".flags", "expected a list of flags, e.g. [caseless, utf8]");
            std::set<std::string> seen;
            for (const auto& w : words) {
                const std::string s = w.is_scalar() ? w.scalar() : "";
                if (!seen.insert(s).second) {
                    r.error(w, path + ".flags", "'" + s + "' is listed twice");
                    continue;
                }
                if (s == "caseless") rule.caseless = true;
                else if (s == "utf8") rule.utf8 = true;
                else if (s == "dotall") rule.dotall = true;
                else if (s == "multiline") rule.multiline = true;
                else {
                    r.error(w, path + ".flags",
                            (w.is_scalar() ? "'" + s + "'" : std::string("value")) +
                                " is not one of: caseless, utf8, dotall, multiline");
                    ok = false;
                }
            }
        }

        if (const yaml::node w = n["where"]) {
            const std::string s = w.is_scalar() ? w.scalar() : "";
            if (s == "envelope") rule.where = content_target::envelope;
            else if (s == "headers") rule.where = content_target::headers;
            else if (s == "body") rule.where = content_target::body;
            else if (s.rfind("header:", 0) == 0) {
                rule.where = content_target::header;
                rule.header = s.substr(7);
                bool valid = !rule.header.empty() && rule.header.size() <= content_header_name_max;
                for (char& c : rule.header) {
                    if (c < 33 || c > 126 || c == ':') valid = false;
                    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
                }
                if (!valid) {
                    r.error(w, path + ".where",
                            "'" + s + "': header:NAME takes a field name (printable ASCII, no ':', at most " +
                                std::to_string(content_header_name_max) + "), e.g. header:subject");
                    ok = false;
                } else if (header_names.insert(rule.header).second &&
                           header_names.size() == content_header_fields_max + 1) {
                    first_over = w;
                    over = true;
                }
            } else {
                r.error(w, path + ".where",
                        (w.is_scalar() ? "'" + s + "'" : std::string("value")) +
                            " is not one of: envelope, headers, header:NAME, body");
                ok = false;
            }
        }

        if (const yaml::node s = n["score"]) {
            long long v = 0;
            const std::string& t = s.is_scalar() ? s.scalar() : std::string();
            const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
            if (!s.is_scalar() || t.empty() || ec != std::errc() || ptr != t.data() + t.size()) {
                r.error(s, path + ".score", (s.is_scalar() ? "'" + t + "'" : std::string("value")) +
                                                " is not an integer");
                ok = false;
            } else if (v < content_score_min || v > content_score_max) {
                r.error(s, path + ".score",
                        std::to_string(v) + " is out of range (" + std::to_string(content_score_min) + " to " +
                            std::to_string(content_score_max) + ")");
                ok = false;
            } else {
                rule.score = static_cast<int32_t>(v);
            }
        }

        if (const yaml::node a = n["action"]) {
            static const std::vector<std::pair<std::string, content_action>> actions = {
                {"event", content_action::event},       {"tighten", content_action::tighten},
                {"tempfail", content_action::tempfail}, {"reset", content_action::reset},
                {"quarantine", content_action::quarantine}};
            const std::string s = a.is_scalar() ? a.scalar() : "";
            auto it = std::find_if(actions.begin(), actions.end(), [&](const auto& p) { return p.first == s; });
            if (it == actions.end()) {
                r.error(a, path + ".action",
                        (a.is_scalar() ? "'" + s + "'" : std::string("value")) +
                            " is not one of: event, tighten, tempfail, reset, quarantine");
                ok = false;
            } else {
                rule.action = it->second;
            }
        }
        if (!n["score"] && !n["action"]) {
            r.error(n, path, "needs a score or an action");
            ok = false;
        }

        // Hyperscan's verdict on the pattern, with the flags it will be compiled with.
        if (ok) {
            std::string why;
            if (!check_content_pattern(rule, why)) {
                errors.push_back(file + ":" + std::to_string(rule.line) + ": " + path + " (id " + rule.id +
                                 "): Hyperscan: " + why);
                ok = false;
            }
        }
        if (ok) out.push_back(std::move(rule));
    }
    if (over)
        r.error(first_over, list_path,
                std::to_string(header_names.size()) + " distinct header:NAME fields; at most " +
                    std::to_string(content_header_fields_max));
    return out;
}

}  // namespace sekisho
