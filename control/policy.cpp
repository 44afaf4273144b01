#include "policy.h"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

namespace sekisho {

namespace {

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& e : v) s += (s.empty() ? "" : "\n") + e;
    return s;
}

}  // namespace

policy_error::policy_error(std::vector<std::string> errors)
    : std::runtime_error(join(errors)), errors_(std::move(errors)) {}

std::string ip_prefix::to_string() const {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(family == 4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
    return std::string(buf) + "/" + std::to_string(length);
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
    explicit policy_reader(std::string name) : name_(std::move(name)) {}

    void error(const YAML::Node& at, const std::string& path, const std::string& msg) {
        const int line = at.Mark().line >= 0 ? at.Mark().line + 1 : 0;
        errors_.push_back(name_ + ":" + std::to_string(line) + ": " + (path.empty() ? "" : path + ": ") + msg);
    }

    // Reports keys of `map` not in `known`.
    void check_keys(const YAML::Node& map, const std::string& path, const std::vector<std::string>& known) {
        for (auto it = map.begin(); it != map.end(); ++it) {
            const std::string key = it->first.Scalar();
            if (std::find(known.begin(), known.end(), key) == known.end()) {
                std::string list;
                for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
                error(it->first, path.empty() ? key : path + "." + key,
                      "unknown key (expected one of: " + list + ")");
            }
        }
    }

    bool is_map(const YAML::Node& n, const std::string& path) {
        if (n.IsMap()) return true;
        error(n, path, "expected a mapping of keys to values");
        return false;
    }

    std::optional<long long> integer(const YAML::Node& n, const std::string& path, long long lo, long long hi) {
        if (!n.IsScalar()) {
            error(n, path, "expected an integer");
            return std::nullopt;
        }
        long long v = 0;
        const std::string& s = n.Scalar();
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

    std::vector<uint16_t> ports(const YAML::Node& n, const std::string& path) {
        std::vector<uint16_t> out;
        if (!n.IsSequence()) {
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

    std::vector<ip_prefix> prefixes(const YAML::Node& n, const std::string& path) {
        std::vector<ip_prefix> out;
        if (!n.IsSequence()) {
            error(n, path, "expected a list of prefixes, e.g. [198.51.100.0/24, \"2001:db8::/32\"]");
            return out;
        }
        for (size_t i = 0; i < n.size(); ++i) {
            const std::string p = path + "[" + std::to_string(i) + "]";
            if (!n[i].IsScalar()) {
                error(n[i], p, "expected a prefix such as 198.51.100.0/24");
                continue;
            }
            std::string why;
            auto prefix = parse_prefix(n[i].Scalar(), why);
            if (!prefix) {
                error(n[i], p, why);
                continue;
            }
            prefix->line = n[i].Mark().line + 1;
            if (std::find(out.begin(), out.end(), *prefix) != out.end()) {
                error(n[i], p, prefix->to_string() + " is listed twice");
                continue;
            }
            out.push_back(*prefix);
        }
        return out;
    }

    template <typename E>
    std::optional<E> choice(const YAML::Node& n, const std::string& path,
                            const std::vector<std::pair<std::string, E>>& options) {
        std::string list;
        for (const auto& [name, value] : options) {
            if (n.IsScalar() && n.Scalar() == name) return value;
            list += (list.empty() ? "" : ", ") + name;
        }
        error(n, path, (n.IsScalar() ? "'" + n.Scalar() + "'" : std::string("value")) +
                           " is not one of: " + list);
        return std::nullopt;
    }

    std::vector<std::string> take_errors() { return std::move(errors_); }
    const std::string& name() const { return name_; }

private:
    std::string name_;
    std::vector<std::string> errors_;
};

policy read_policy(const YAML::Node& root, const std::string& name) {
    policy pol;
    pol.source = name;
    policy_reader r(name);

    if (!root.IsDefined() || root.IsNull()) throw policy_error({name + ":1: the policy is empty"});
    if (!r.is_map(root, "")) throw policy_error(r.take_errors());
    r.check_keys(root, "", {"version", "ports", "subscribers", "relays", "op25b"});

    if (const auto v = root["version"]) {
        if (auto n = r.integer(v, "version", 1, 1)) pol.version = static_cast<int>(*n);
    } else {
        r.error(root, "version", "missing (this release reads version: 1)");
    }

    if (const auto ports = root["ports"]; ports && r.is_map(ports, "ports")) {
        r.check_keys(ports, "ports", {"smtp", "submission"});
        if (ports["smtp"]) pol.smtp_ports = r.ports(ports["smtp"], "ports.smtp");
        if (ports["submission"]) pol.submission_ports = r.ports(ports["submission"], "ports.submission");
        // Either list may be the default; point at the one the operator wrote.
        const bool explicit_submission = static_cast<bool>(ports["submission"]);
        for (uint16_t p : pol.smtp_ports)
            if (std::find(pol.submission_ports.begin(), pol.submission_ports.end(), p) != pol.submission_ports.end())
                r.error(explicit_submission ? ports["submission"] : ports["smtp"],
                        explicit_submission ? "ports.submission" : "ports.smtp",
                        "port " + std::to_string(p) + " is in both ports.smtp and ports.submission" +
                            (explicit_submission ? "" : " (default [587, 465])") +
                            "; a port is blocked or it is not");
    }

    if (const auto subs = root["subscribers"]; subs && r.is_map(subs, "subscribers")) {
        r.check_keys(subs, "subscribers", {"dynamic", "static", "ipv6_prefix_length"});
        if (subs["dynamic"]) pol.dynamic_ranges = r.prefixes(subs["dynamic"], "subscribers.dynamic");
        if (subs["static"]) pol.static_ranges = r.prefixes(subs["static"], "subscribers.static");
        if (subs["ipv6_prefix_length"])
            if (auto n = r.integer(subs["ipv6_prefix_length"], "subscribers.ipv6_prefix_length", 32, 128))
                pol.ipv6_prefix_length = static_cast<uint8_t>(*n);
        for (const auto& s : pol.static_ranges)
            if (std::find(pol.dynamic_ranges.begin(), pol.dynamic_ranges.end(), s) != pol.dynamic_ranges.end())
                r.error(subs["static"], "subscribers.static",
                        s.to_string() + " is also in subscribers.dynamic (line " +
                            std::to_string(std::find(pol.dynamic_ranges.begin(), pol.dynamic_ranges.end(), s)->line) +
                            "); a range is dynamic or static");
    }

    if (const auto relays = root["relays"]) pol.relays = r.prefixes(relays, "relays");

    if (const auto op = root["op25b"]; op && r.is_map(op, "op25b")) {
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

    auto errors = r.take_errors();
    if (!errors.empty()) throw policy_error(std::move(errors));
    return pol;
}

YAML::Node parse_yaml(const std::string& text, const std::string& name) {
    try {
        return YAML::Load(text);
    } catch (const YAML::Exception& e) {
        throw policy_error({name + ":" + std::to_string(e.mark.line + 1) + ": YAML syntax error: " + e.msg});
    }
}

}  // namespace

policy load_policy_text(const std::string& text, const std::string& name) {
    return read_policy(parse_yaml(text, name), name);
}

policy load_policy_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw policy_error({path + ":0: cannot open the policy file"});
    std::ostringstream text;
    text << in.rdbuf();
    return load_policy_text(text.str(), path);
}

}  // namespace sekisho
