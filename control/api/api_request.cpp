#include "control/api/api_request.h"

#include <nlohmann/json.hpp>

#include <limits>
#include <stdexcept>

#include "control/api/untrusted_text.h"
#include "control/utc_time.h"
#include "dataplane/inspect/campaign_table.h"

namespace sekisho {

namespace {

using nlohmann::json;

api_response error(int status, const std::string& message) { return api_error(status, message); }

std::string arg(const api_request& r, const std::string& key, const std::string& fallback = "") {
    auto it = r.query.find(key);
    return it == r.query.end() ? fallback : it->second;
}

bool flag_arg(const api_request& r, const std::string& key) {
    const std::string v = arg(r, key);
    return v == "1" || v == "true";
}

// A JSON body, or why not.
std::optional<json> body_json(const api_request& r, std::string& why) {
    try {
        json j = json::parse(r.body);
        if (!j.is_object()) {
            why = "the body must be a JSON object";
            return std::nullopt;
        }
        return j;
    } catch (const json::exception& e) {
        // parse_error, and also out_of_range for a number beyond a double (1e999): both are the
        // client's body, not a server failure.
        why = "the body is not JSON: " + escape_unprintable(e.what());   // it quotes the bytes it read
        return std::nullopt;
    }
}

std::optional<std::string> string_field(const json& j, const char* field, std::string& why) {
    const auto it = j.find(field);
    if (it == j.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
        why = std::string("field '") + field + "': a non-empty string is required";
        return std::nullopt;
    }
    const std::string& text = it->get_ref<const std::string&>();
    if (const auto bad = find_unprintable(text)) {
        why = std::string("field '") + field + "': " + describe(*bad) + " (text must be printable UTF-8)";
        return std::nullopt;
    }
    return text;
}

// An optional boolean field: absent is false; anything but true or false is refused.
std::optional<bool> bool_field(const json& j, const char* field, std::string& why) {
    const auto it = j.find(field);
    if (it == j.end()) return false;
    if (!it->is_boolean()) {
        why = std::string("field '") + field + "': true or false";
        return std::nullopt;
    }
    return it->get<bool>();
}

// An account name (printable, checked with the rest of its request) within api_max_account_bytes;
// `what` names the field or argument.
std::optional<std::string> account_value(const std::string& name, const std::string& what, std::string& why) {
    if (name.size() > api_max_account_bytes) {
        why = what + ": an account name of " + std::to_string(name.size()) + " bytes; at most " +
              std::to_string(api_max_account_bytes);
        return std::nullopt;
    }
    return name;
}

// A body's 'account' field: a non-empty printable string within api_max_account_bytes.
std::optional<std::string> account_field(const json& j, std::string& why) {
    const auto text = string_field(j, "account", why);
    if (!text) return std::nullopt;
    return account_value(*text, "field 'account'", why);
}

// The first argument whose name or value is not printable UTF-8, as the refusal.
std::optional<std::string> unprintable_argument(const api_request& r) {
    for (const auto& [key, value] : r.query) {
        if (const auto bad = find_unprintable(key))
            return "argument name '" + escape_unprintable(key) + "': " + describe(*bad);
        if (const auto bad = find_unprintable(value))
            return "argument '" + key + "': " + describe(*bad) + " (text must be printable UTF-8)";
    }
    return std::nullopt;
}

// The events endpoint's subscriber: an address, written as the event log writes it (inet_ntop),
// or a prefix ("2001:db8:100:1100::/56": a subscriber's delegated prefix), host bits zero.
std::optional<std::string> subscriber_value(const std::string& text, std::optional<ip_prefix>& address,
                                            std::string& why) {
    std::string e;
    address = parse_prefix(text, e);
    if (!address) {
        why = "argument 'subscriber': " + e;
        return std::nullopt;
    }
    std::string canonical = address->to_string();
    if (address->length == (address->family == 4 ? 32 : 128)) canonical.erase(canonical.find('/'));
    return canonical;
}

std::optional<uint64_t> unsigned_arg(const api_request& r, const std::string& key, uint64_t fallback, uint64_t max,
                                     std::string& why) {
    const std::string v = arg(r, key);
    if (v.empty()) return fallback;
    // Digits only: std::stoull would also take a sign ("-1" wraps to 2^64-1) and leading spaces.
    bool digits = v.size() <= 20;
    for (char c : v) digits = digits && c >= '0' && c <= '9';
    if (digits) {
        try {
            size_t used = 0;
            const unsigned long long n = std::stoull(v, &used);
            if (used == v.size() && n <= max) return n;
        } catch (const std::exception&) {
            // out of range: the message below
        }
    }
    why = "argument '" + key + "': '" + v + "' is not a number from 0 to " + std::to_string(max);
    return std::nullopt;
}

// A time argument within [0, api_max_time], or nullopt with `why` set. Absent: `fallback`.
std::optional<int64_t> time_arg(const api_request& r, const std::string& key, int64_t fallback, std::string& why) {
    const std::string t = arg(r, key);
    if (t.empty()) return fallback;
    const auto parsed = parse_time(t);
    if (!parsed || *parsed < 0 || *parsed > api_max_time) {
        why = "argument '" + key + "': '" + t + "' is not Unix seconds or YYYY-MM-DDTHH:MM:SSZ (1970 to 9999)";
        return std::nullopt;
    }
    return *parsed;
}

// A prefix from an argument or a field; `what` names it in the message.
std::optional<ip_prefix> prefix_value(const std::string& text, const std::string& what, std::string& why) {
    std::string e;
    auto p = parse_prefix(text, e);
    if (!p) why = what + ": " + e;
    return p;
}

}  // namespace

std::string api_json_text(const nlohmann::json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

api_response api_error(int status, const std::string& message) { return {status, api_json_text(json{{"error", message}})}; }

size_t api_max_body_bytes(const std::string& method, const std::string& path) {
    return api_endpoint_of(method, path) == api_endpoint::policy_apply ? size_t{64} << 20 : size_t{1} << 20;
}

const char* to_string(api_endpoint e) {
    switch (e) {
        case api_endpoint::status: return "status";
        case api_endpoint::policy_show: return "policy_show";
        case api_endpoint::policy_apply: return "policy_apply";
        case api_endpoint::policy_rollback: return "policy_rollback";
        case api_endpoint::bindings_list: return "bindings_list";
        case api_endpoint::bindings_add: return "bindings_add";
        case api_endpoint::bindings_del: return "bindings_del";
        case api_endpoint::whois: return "whois";
        case api_endpoint::accounts_list: return "accounts_list";
        case api_endpoint::account_suspend: return "account_suspend";
        case api_endpoint::account_resume: return "account_resume";
        case api_endpoint::events: return "events";
        case api_endpoint::report: return "report";
        case api_endpoint::top: return "top";
        case api_endpoint::limits_show: return "limits_show";
        case api_endpoint::campaigns: return "campaigns";
        case api_endpoint::limits_reset: return "limits_reset";
    }
    return "?";
}

std::optional<api_endpoint> api_endpoint_of(const std::string& m, const std::string& p) {
    if (p == "/v1/status" && m == "GET") return api_endpoint::status;
    if (p == "/v1/policy" && m == "GET") return api_endpoint::policy_show;
    if (p == "/v1/policy" && m == "POST") return api_endpoint::policy_apply;
    if (p == "/v1/policy/rollback" && m == "POST") return api_endpoint::policy_rollback;
    if (p == "/v1/bindings" && m == "GET") return api_endpoint::bindings_list;
    if (p == "/v1/bindings" && m == "POST") return api_endpoint::bindings_add;
    if (p == "/v1/bindings" && m == "DELETE") return api_endpoint::bindings_del;
    if (p == "/v1/whois" && m == "GET") return api_endpoint::whois;
    if (p == "/v1/accounts" && m == "GET") return api_endpoint::accounts_list;
    if (p == "/v1/accounts/suspend" && m == "POST") return api_endpoint::account_suspend;
    if (p == "/v1/accounts/resume" && m == "POST") return api_endpoint::account_resume;
    if (p == "/v1/events" && m == "GET") return api_endpoint::events;
    if (p == "/v1/report" && m == "GET") return api_endpoint::report;
    if (p == "/v1/top" && m == "GET") return api_endpoint::top;
    if (p == "/v1/limits" && m == "GET") return api_endpoint::limits_show;
    if (p == "/v1/limits/reset" && m == "POST") return api_endpoint::limits_reset;
    if (p == "/v1/campaigns" && m == "GET") return api_endpoint::campaigns;
    return std::nullopt;
}

bool reads_event_log(api_endpoint e) {
    return e == api_endpoint::events || e == api_endpoint::report || e == api_endpoint::top;
}

bool changes_state(api_endpoint e) {
    return e == api_endpoint::policy_apply || e == api_endpoint::policy_rollback || e == api_endpoint::bindings_add ||
           e == api_endpoint::bindings_del || e == api_endpoint::account_suspend || e == api_endpoint::account_resume ||
           e == api_endpoint::limits_reset;
}

bool needs_accounts(api_endpoint e) {
    return e == api_endpoint::bindings_list || e == api_endpoint::bindings_add || e == api_endpoint::bindings_del ||
           e == api_endpoint::accounts_list || e == api_endpoint::account_suspend ||
           e == api_endpoint::account_resume || e == api_endpoint::limits_show || e == api_endpoint::limits_reset;
}

namespace {

// Each endpoint's arguments and body, read into `c`: the first refusal (status
// and message for the client), or nullopt when `c` is complete.
using refusal = std::optional<api_response>;

refusal read_bindings_list(const api_request& r, api_command& c) {
    std::string why;
    const auto limit = unsigned_arg(r, "limit", 1000, 1'000'000, why);
    if (!limit) return error(400, why);
    c.limit = *limit;
    const auto account = account_value(arg(r, "account"), "argument 'account'", why);
    if (!account) return error(400, why);
    c.account = *account;
    return std::nullopt;
}

refusal read_bindings_add(const api_request& r, api_command& c) {
    std::string why;
    const auto j = body_json(r, why);
    if (!j) return error(400, why);
    const auto prefix_text = string_field(*j, "prefix", why);
    if (!prefix_text) return error(400, why);
    const auto account = account_field(*j, why);
    if (!account) return error(400, why);
    const auto prefix = prefix_value(*prefix_text, "field 'prefix'", why);
    if (!prefix) return error(400, why);
    const auto force = bool_field(*j, "force", why);
    if (!force) return error(400, why);
    c.prefix = *prefix;
    c.account = *account;
    c.force = *force;
    return std::nullopt;
}

refusal read_bindings_del(const api_request& r, api_command& c) {
    std::string why;
    const std::string text = arg(r, "prefix");
    if (text.empty()) return error(400, "argument 'prefix' is required");
    const auto prefix = prefix_value(text, "argument 'prefix'", why);
    if (!prefix) return error(400, why);
    c.prefix = *prefix;
    return std::nullopt;
}

refusal read_whois(const api_request& r, int64_t now, api_command& c) {
    std::string why;
    const std::string text = arg(r, "address");
    if (text.empty()) return error(400, "argument 'address' is required");
    const auto address = prefix_value(text, "argument 'address'", why);
    if (!address) return error(400, why);
    c.prefix = *address;
    const auto at = time_arg(r, "at", now, why);
    if (!at) return error(400, why);
    c.at = *at;
    return std::nullopt;
}

// Suspend and resume: the body names the account.
refusal read_account_change(const api_request& r, api_command& c) {
    std::string why;
    const auto j = body_json(r, why);
    if (!j) return error(400, why);
    const auto account = account_field(*j, why);
    if (!account) return error(400, why);
    c.account = *account;
    if (c.endpoint == api_endpoint::account_suspend) {
        const auto create = bool_field(*j, "create", why);
        if (!create) return error(400, why);
        c.create = *create;
    }
    return std::nullopt;
}

// The subscriber of limits show/reset: exactly one of an address (not a shorter prefix: limit
// records are per address or per subscriber prefix, found from an address) and an account.
refusal limits_subscriber(const std::string& address, const std::optional<std::string>& account, const char* kind,
                          api_command& c) {
    std::string why;
    if (address.empty() == !account.has_value())
        return error(400, std::string("exactly one of ") + kind + " 'address' and " + kind + " 'account' is required");
    if (account) {
        const auto name = account_value(*account, std::string(kind) + " 'account'", why);
        if (!name) return error(400, why);
        c.account = *name;
        return std::nullopt;
    }
    const auto a = prefix_value(address, std::string(kind) + " 'address'", why);
    if (!a) return error(400, why);
    if (a->length != (a->family == 4 ? 32 : 128))
        return error(400, std::string(kind) + " 'address': '" + address + "' is a prefix; an address is required");
    c.prefix = *a;
    c.by_address = true;
    return std::nullopt;
}

refusal read_limits_show(const api_request& r, api_command& c) {
    const auto it = r.query.find("account");
    std::optional<std::string> account;
    if (it != r.query.end()) account = it->second;
    if (account && account->empty()) return error(400, "argument 'account': a non-empty account name is required");
    return limits_subscriber(arg(r, "address"), account, "argument", c);
}

refusal read_limits_reset(const api_request& r, api_command& c) {
    std::string why;
    const auto j = body_json(r, why);
    if (!j) return error(400, why);
    std::string address;
    std::optional<std::string> account;
    if (j->contains("address")) {
        const auto text = string_field(*j, "address", why);
        if (!text) return error(400, why);
        address = *text;
    }
    if (j->contains("account")) {
        const auto text = string_field(*j, "account", why);
        if (!text) return error(400, why);
        account = *text;
    }
    if (j->contains("limit")) {
        const auto text = string_field(*j, "limit", why);
        if (!text) return error(400, why);
        c.limit_name = *text;
    }
    return limits_subscriber(address, account, "field", c);
}

refusal read_events(const api_request& r, api_command& c) {
    std::string why;
    const auto n = unsigned_arg(r, "n", 50, 100000, why);
    if (!n) return error(400, why);
    const auto since = unsigned_arg(r, "since_ns", 0, UINT64_MAX, why);
    if (!since) return error(400, why);
    c.n = *n;
    c.since_ns = *since;
    if (const std::string after = arg(r, "after"); !after.empty()) {
        // INODE:OFFSET:CHECK, as a previous answer's `position` gave it.
        const auto digits = [](const std::string& t) {
            return !t.empty() && t.size() <= 20 && t.find_first_not_of("0123456789") == std::string::npos;
        };
        const size_t first = after.find(':');
        const size_t second = first == std::string::npos ? first : after.find(':', first + 1);
        const std::string file = second == std::string::npos ? "" : after.substr(0, first);
        const std::string offset = second == std::string::npos ? "" : after.substr(first + 1, second - first - 1);
        const std::string check = second == std::string::npos ? "" : after.substr(second + 1);
        if (!digits(file) || !digits(offset) || !digits(check))
            return error(400, "argument 'after': '" + after + "' is not a position (from an answer's 'position')");
        try {
            c.after = event_position{std::stoull(file), std::stoull(offset), std::stoull(check)};
        } catch (const std::exception&) {
            return error(400, "argument 'after': '" + after + "' is out of range");
        }
    }
    c.type = arg(r, "type");
    if (!c.type.empty() && !is_event_type(c.type))
        return error(400, "argument 'type': '" + c.type + "' is not an event type (" + event_type_list() + ")");
    if (const std::string subscriber = arg(r, "subscriber"); !subscriber.empty()) {
        const auto canonical = subscriber_value(subscriber, c.subscriber_prefix, why);
        if (!canonical) return error(400, why);
        c.subscriber = *canonical;
    }
    const auto account = account_value(arg(r, "account"), "argument 'account'", why);
    if (!account) return error(400, why);
    c.account = *account;
    return std::nullopt;
}

refusal read_report(const api_request& r, int64_t now, api_command& c) {
    std::string why;
    const auto since = time_arg(r, "since", 0, why);
    if (!since) return error(400, why);
    const auto until = time_arg(r, "until", now, why);
    if (!until) return error(400, why);
    if (*since > *until) return error(400, "argument 'since' is after 'until'");
    c.since = *since;
    c.until = *until;
    const std::string format = arg(r, "format", "json");
    if (format != "json" && format != "csv") return error(400, "argument 'format': json or csv");
    c.csv = format == "csv";
    return std::nullopt;
}

refusal read_top(const api_request& r, int64_t now, api_command& c) {
    c.window_text = arg(r, "window", "1h");
    const auto window = parse_duration(c.window_text);
    if (!window) return error(400, "argument 'window': '" + c.window_text + "' is not a duration");
    c.window_ns = *window;
    c.by = arg(r, "by", "messages");
    if (c.by != "messages" && c.by != "recipients" && c.by != "rejected_recipients" && c.by != "sessions" &&
        c.by != "events" && c.by != "op25b_block" && c.by != "limit_exceeded" && c.by != "account_suspended" &&
        c.by != "score")
        return error(400, "argument 'by': messages, recipients, rejected_recipients, sessions, events, "
                          "op25b_block, limit_exceeded, account_suspended or score");
    c.since = now - static_cast<int64_t>(c.window_ns / 1'000'000'000ull);
    return std::nullopt;
}

refusal read_campaigns(const api_request& r, api_command& c) {
    std::string why;
    const auto n = unsigned_arg(r, "n", 20, api_max_campaigns, why);
    if (!n || *n == 0)
        return error(400, "argument 'n': '" + arg(r, "n") + "' is not a number from 1 to " + std::to_string(api_max_campaigns));
    c.n = *n;
    const auto min = unsigned_arg(r, "min_subscribers", 0, campaign_table::max_subscribers, why);
    if (!min) return error(400, why);
    c.min_subscribers = static_cast<uint32_t>(*min);
    return std::nullopt;
}

// The endpoint's own arguments and body, read into `c`.
refusal read_endpoint_arguments(const api_request& r, int64_t now, api_command& c) {
    switch (c.endpoint) {
        case api_endpoint::status:
        case api_endpoint::policy_show:
        case api_endpoint::policy_rollback:
            return std::nullopt;
        case api_endpoint::policy_apply:
            c.dry_run = flag_arg(r, "dry_run");
            c.source_name = arg(r, "name");
            if (c.source_name.size() > api_max_source_name_bytes)
                return error(400, "argument 'name': longer than " + std::to_string(api_max_source_name_bytes) + " bytes");
            if (r.body.empty()) return error(400, "the body must be the policy (YAML text)");
            return std::nullopt;
        case api_endpoint::bindings_list: return read_bindings_list(r, c);
        case api_endpoint::bindings_add: return read_bindings_add(r, c);
        case api_endpoint::bindings_del: return read_bindings_del(r, c);
        case api_endpoint::whois: return read_whois(r, now, c);
        case api_endpoint::accounts_list:
            c.only_suspended = flag_arg(r, "suspended");
            return std::nullopt;
        case api_endpoint::account_suspend:
        case api_endpoint::account_resume: return read_account_change(r, c);
        case api_endpoint::events: return read_events(r, c);
        case api_endpoint::report: return read_report(r, now, c);
        case api_endpoint::top: return read_top(r, now, c);
        case api_endpoint::limits_show: return read_limits_show(r, c);
        case api_endpoint::limits_reset: return read_limits_reset(r, c);
        case api_endpoint::campaigns: return read_campaigns(r, c);
    }
    return std::nullopt;
}

}  // namespace

std::variant<api_command, api_response> parse_api_request(const api_request& r, int64_t now) {
    const auto endpoint = api_endpoint_of(r.method, r.path);
    if (!endpoint)
        return error(404, "no endpoint " + escape_unprintable(r.method) + " " + escape_unprintable(r.path) +
                              " (see docs/api.md)");
    if (const auto bad = unprintable_argument(r)) return error(400, *bad);
    api_command c;
    c.endpoint = *endpoint;
    if (auto refused = read_endpoint_arguments(r, now, c)) return std::move(*refused);
    return c;
}

}  // namespace sekisho
