#include "control/policy/content_rules_yaml.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>
#include <set>
#include <utility>

namespace sekisho {

namespace {

// Reads one list of rules: a rule at a time, a key at a time, every problem of the list
// reported (in the order of the keys below, rule after rule), a rule kept only without one.
// Across the list it checks that ids are unique and counts the distinct header:NAME fields.
class rules_reader {
public:
    rules_reader(const std::string& file, const std::string& list_path, std::vector<std::string>& errors)
        : file_(file), list_path_(list_path), errors_(errors) {}

    std::vector<content_rule> read(const yaml::node& list);

private:
    void error(const yaml::node& at, const std::string& path, const std::string& msg) {
        errors_.push_back(file_ + ":" + std::to_string(at.line()) + ": " + path + ": " + msg);
    }
    std::optional<std::string> scalar(const yaml::node& n, const std::string& path, const char* what) {
        if (n.is_scalar() && !n.scalar().empty()) return n.scalar();
        error(n, path, std::string("expected ") + what);
        return std::nullopt;
    }
    // The value of a key every rule needs: `needs` reported at the rule when it is absent.
    std::optional<std::string> required_scalar(const yaml::node& n, const char* key, const std::string& path,
                                               const char* needs, const char* what) {
        if (!n[key]) {
            error(n, path, needs);
            return std::nullopt;
        }
        return scalar(n[key], path + "." + key, what);
    }
    // "'text'" for a scalar, "value" for anything else: how messages quote what they refuse.
    static std::string quoted(const yaml::node& n) {
        return n.is_scalar() ? "'" + n.scalar() + "'" : std::string("value");
    }

    // Each returns false when the rule cannot be kept (some problems are reported without that).
    bool read_rule(const yaml::node& n, const std::string& path, content_rule& rule);
    void check_keys(const yaml::node& n, const std::string& path);
    bool read_id(const yaml::node& n, const std::string& path, content_rule& rule);
    bool read_pattern(const yaml::node& n, const std::string& path, content_rule& rule);
    bool read_flags(const yaml::node& f, const std::string& path, content_rule& rule);
    bool read_where(const yaml::node& w, const std::string& path, content_rule& rule);
    bool read_score(const yaml::node& s, const std::string& path, content_rule& rule);
    bool read_action(const yaml::node& a, const std::string& path, content_rule& rule);
    bool check_pattern(const std::string& path, const content_rule& rule);

    const std::string& file_;
    const std::string& list_path_;
    std::vector<std::string>& errors_;
    std::map<std::string, int> id_lines_;   // id -> line of the rule that has it
    std::set<std::string> header_names_;    // distinct header:NAME fields so far
    yaml::node first_over_;                 // the where: that named one header field too many
    bool over_ = false;
};

std::vector<content_rule> rules_reader::read(const yaml::node& list) {
    std::vector<content_rule> out;
    if (!list.is_sequence()) {
        error(list, list_path_, "expected a list of rules ({id: ..., pattern: ..., where: ..., score: ...})");
        return out;
    }
    if (list.size() > content_rules_max) {
        error(list, list_path_, std::to_string(list.size()) + " rules; at most " + std::to_string(content_rules_max));
        return out;
    }
    for (size_t i = 0; i < list.size(); ++i) {
        content_rule rule;
        if (read_rule(list[i], list_path_ + "[" + std::to_string(i) + "]", rule)) out.push_back(std::move(rule));
    }
    if (over_)
        error(first_over_, list_path_,
              std::to_string(header_names_.size()) + " distinct header:NAME fields; at most " +
                  std::to_string(content_header_fields_max));
    return out;
}

bool rules_reader::read_rule(const yaml::node& n, const std::string& path, content_rule& rule) {
    if (!n.is_map()) {
        error(n, path, "expected a mapping of keys to values");
        return false;
    }
    check_keys(n, path);
    rule.line = n.line();
    bool ok = read_id(n, path, rule);
    ok &= read_pattern(n, path, rule);
    if (const yaml::node f = n["flags"]) ok &= read_flags(f, path, rule);
    if (const yaml::node w = n["where"]) ok &= read_where(w, path, rule);
    if (const yaml::node s = n["score"]) ok &= read_score(s, path, rule);
    if (const yaml::node a = n["action"]) ok &= read_action(a, path, rule);
    if (!n["score"] && !n["action"]) {
        error(n, path, "needs a score or an action");
        ok = false;
    }
    // Hyperscan's verdict on the pattern, only for a rule that is otherwise right.
    return ok && check_pattern(path, rule);
}

void rules_reader::check_keys(const yaml::node& n, const std::string& path) {
    static const std::vector<std::string> known = {"id", "pattern", "flags", "where", "score", "action"};
    for (auto it = n.begin(); it != n.end(); ++it) {
        const std::string key = it->first.scalar();
        if (std::find(known.begin(), known.end(), key) == known.end())
            error(it->first, path + "." + key, "unknown key (expected one of: id, pattern, flags, where, score, action)");
    }
}

bool rules_reader::read_id(const yaml::node& n, const std::string& path, content_rule& rule) {
    const auto id = required_scalar(n, "id", path, "needs an id", "a rule id");
    if (!id) return false;
    rule.id = *id;
    bool ok = true;
    if (!content_rule_id_valid(rule.id)) {
        error(n["id"], path + ".id",
              "'" + rule.id + "': use at most " + std::to_string(content_rule_id_max) +
                  " letters, digits, '_', '-' and '.'");
        ok = false;
    }
    if (auto [it, fresh] = id_lines_.emplace(rule.id, rule.line); !fresh) {
        error(n["id"], path + ".id", "'" + rule.id + "' is already the id of the rule at line " + std::to_string(it->second));
        ok = false;
    }
    return ok;
}

bool rules_reader::read_pattern(const yaml::node& n, const std::string& path, content_rule& rule) {
    const auto p = required_scalar(n, "pattern", path, "needs a pattern", "a pattern (a string)");
    if (!p) return false;
    rule.pattern = *p;
    if (rule.pattern.size() > content_pattern_max) {
        error(n["pattern"], path + ".pattern",
              std::to_string(rule.pattern.size()) + " bytes; at most " + std::to_string(content_pattern_max));
        return false;
    }
    if (rule.pattern.find('\0') != std::string::npos) {
        error(n["pattern"], path + ".pattern", "contains a NUL byte (write \\x00)");
        return false;
    }
    return true;
}

// One word or a list of them. A flag listed twice, or flags that are no list, are reported but
// do not refuse the rule; an unknown flag does.
bool rules_reader::read_flags(const yaml::node& f, const std::string& path, content_rule& rule) {
    std::vector<yaml::node> words;
    if (f.is_scalar()) words.push_back(f);
    else if (f.is_sequence())
        for (size_t k = 0; k < f.size(); ++k) words.push_back(f[k]);
    else
        error(f, path + ".flags", "expected a list of flags, e.g. [caseless, utf8]");
    bool ok = true;
    std::set<std::string> seen;
    for (const auto& w : words) {
        const std::string s = w.is_scalar() ? w.scalar() : "";
        if (!seen.insert(s).second) {
            error(w, path + ".flags", "'" + s + "' is listed twice");
            continue;
        }
        if (s == "caseless") rule.caseless = true;
        else if (s == "utf8") rule.utf8 = true;
        else if (s == "dotall") rule.dotall = true;
        else if (s == "multiline") rule.multiline = true;
        else {
            error(w, path + ".flags", quoted(w) + " is not one of: caseless, utf8, dotall, multiline");
            ok = false;
        }
    }
    return ok;
}

bool rules_reader::read_where(const yaml::node& w, const std::string& path, content_rule& rule) {
    const std::string s = w.is_scalar() ? w.scalar() : "";
    if (s == "envelope") rule.where = content_target::envelope;
    else if (s == "headers") rule.where = content_target::headers;
    else if (s == "body") rule.where = content_target::body;
    else if (s.rfind("header:", 0) == 0) {
        rule.where = content_target::header;
        rule.header = s.substr(7);
        for (char& c : rule.header)
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (!content_header_name_valid(rule.header)) {
            error(w, path + ".where",
                  "'" + s + "': header:NAME takes a field name (printable ASCII, no ':', at most " +
                      std::to_string(content_header_name_max) + "), e.g. header:subject");
            return false;
        }
        // The list's limit on header:NAME databases, reported once, at the first field too many.
        if (header_names_.insert(rule.header).second && header_names_.size() == content_header_fields_max + 1) {
            first_over_ = w;
            over_ = true;
        }
    } else {
        error(w, path + ".where", quoted(w) + " is not one of: envelope, headers, header:NAME, body");
        return false;
    }
    return true;
}

bool rules_reader::read_score(const yaml::node& s, const std::string& path, content_rule& rule) {
    long long v = 0;
    const std::string& t = s.is_scalar() ? s.scalar() : std::string();
    const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (!s.is_scalar() || t.empty() || ec != std::errc() || ptr != t.data() + t.size()) {
        error(s, path + ".score", quoted(s) + " is not an integer");
        return false;
    }
    if (v < content_score_min || v > content_score_max) {
        error(s, path + ".score",
              std::to_string(v) + " is out of range (" + std::to_string(content_score_min) + " to " +
                  std::to_string(content_score_max) + ")");
        return false;
    }
    rule.score = static_cast<int32_t>(v);
    return true;
}

bool rules_reader::read_action(const yaml::node& a, const std::string& path, content_rule& rule) {
    static const std::vector<std::pair<std::string, content_action>> actions = {
        {"event", content_action::event},       {"tighten", content_action::tighten},
        {"tempfail", content_action::tempfail}, {"reset", content_action::reset},
        {"quarantine", content_action::quarantine}};
    const std::string s = a.is_scalar() ? a.scalar() : "";
    auto it = std::find_if(actions.begin(), actions.end(), [&](const auto& p) { return p.first == s; });
    if (it == actions.end()) {
        error(a, path + ".action", quoted(a) + " is not one of: event, tighten, tempfail, reset, quarantine");
        return false;
    }
    rule.action = it->second;
    return true;
}

// The pattern with the flags it will be compiled with, as the compiler checks it.
bool rules_reader::check_pattern(const std::string& path, const content_rule& rule) {
    std::string why;
    if (check_content_pattern(rule, why)) return true;
    errors_.push_back(file_ + ":" + std::to_string(rule.line) + ": " + path + " (id " + rule.id + "): Hyperscan: " + why);
    return false;
}

}  // namespace

std::vector<content_rule> parse_content_rules(const yaml::node& list, const std::string& file,
                                              std::vector<std::string>& errors, const std::string& list_path) {
    return rules_reader(file, list_path, errors).read(list);
}

}  // namespace sekisho
