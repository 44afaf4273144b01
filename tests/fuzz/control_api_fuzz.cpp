// Fuzz target: the control API's request validation (control/api/api_request.cpp),
// the layer control_api::handle() runs on every request before it touches the
// gateway, fed the way the server feeds it: the request-target as sent,
// decoded by make_api_request (api_server.h: percent escapes, '+', %00).
//
// Input: "METHOD\nTARGET\nBODY" (TARGET as on the request line, e.g.
// "/v1/events?type=%00&n=5"; anything after the second newline is the body).
// Invariants: an unknown endpoint is 404 and only that; any other refusal is a
// 400 whose body is a JSON object with an "error" string, and no refusal's
// message holds a control character (it may echo the client's bytes); an
// accepted request has arguments within the documented bounds, its prefix
// prints as text that parses back to the same prefix, and no text it carries
// on (account, type, subscriber) holds a control character or malformed UTF-8:
// an account name is at most api_max_account_bytes, a type one of event_types,
// a subscriber an address as the event log writes it.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <string_view>
#include <variant>

#include "control/api/api_request.h"
#include "control/api/api_server.h"
#include "fuzz_target.h"
#include "control/api/untrusted_text.h"

using namespace sekisho;

namespace {

api_request split(std::string_view in) {
    http_request h;
    const size_t nl1 = in.find('\n');
    h.head.method = std::string(in.substr(0, nl1));
    if (nl1 != std::string_view::npos) {
        in.remove_prefix(nl1 + 1);
        const size_t nl2 = in.find('\n');
        h.head.target = std::string(in.substr(0, nl2));
        if (nl2 != std::string_view::npos) h.body = std::string(in.substr(nl2 + 1));
    }
    return make_api_request(std::move(h), "fuzz");
}

void check_prefix(const ip_prefix& p) {
    fuzz_check(p.family == 4 || p.family == 6);
    fuzz_check(p.length <= (p.family == 4 ? 32 : 128));
    std::string why;
    const auto again = parse_prefix(p.to_string(), why);
    fuzz_check(again && *again == p);
}

void check_account(const std::string& account, bool required) {
    fuzz_check(!required || !account.empty());
    fuzz_check(account.size() <= api_max_account_bytes);
    fuzz_check(!find_unprintable(account));
}

}  // namespace

SEKISHO_FUZZ_TARGET(control_api)(const uint8_t* data, size_t size) {
    const api_request r = split(std::string_view(reinterpret_cast<const char*>(data), size));
    constexpr int64_t now = 1'795'000'000;   // 2026-11-18: a fixed clock keeps runs reproducible
    const auto result = parse_api_request(r, now);
    const auto endpoint = api_endpoint_of(r.method, r.path);

    if (const auto* refused = std::get_if<api_response>(&result)) {
        fuzz_check(refused->status == (endpoint ? 400 : 404));
        const auto body = nlohmann::json::parse(refused->body, nullptr, false);
        fuzz_check(body.is_object() && body.contains("error") && body["error"].is_string());
        fuzz_check(!find_unprintable(body["error"].get<std::string>()));
        return 0;
    }
    const api_command& c = std::get<api_command>(result);
    fuzz_check(endpoint && c.endpoint == *endpoint);
    fuzz_check(std::string_view(to_string(c.endpoint)) != "?");
    for (const auto& [key, value] : r.query) fuzz_check(!find_unprintable(key) && !find_unprintable(value));
    switch (c.endpoint) {
        case api_endpoint::policy_apply: fuzz_check(!r.body.empty()); break;
        case api_endpoint::bindings_list:
            fuzz_check(c.limit <= 1'000'000);
            check_account(c.account, false);
            break;
        case api_endpoint::bindings_add:
            check_account(c.account, true);
            check_prefix(c.prefix);
            break;
        case api_endpoint::bindings_del: check_prefix(c.prefix); break;
        case api_endpoint::whois:
            check_prefix(c.prefix);
            fuzz_check(c.at >= 0 && c.at <= api_max_time);
            break;
        case api_endpoint::account_suspend:
        case api_endpoint::account_resume: check_account(c.account, true); break;
        case api_endpoint::events:
            fuzz_check(c.n <= 100'000);
            check_account(c.account, false);
            fuzz_check(c.type.empty() || is_event_type(c.type));
            fuzz_check(c.subscriber.empty() == !c.subscriber_prefix);
            if (c.subscriber_prefix) {   // an address, written as the event log writes it, or a prefix
                check_prefix(*c.subscriber_prefix);
                const bool host = c.subscriber_prefix->length == (c.subscriber_prefix->family == 4 ? 32 : 128);
                fuzz_check(c.subscriber_prefix->to_string() ==
                           c.subscriber + (!host ? "" : c.subscriber_prefix->family == 4 ? "/32" : "/128"));
            }
            break;
        case api_endpoint::report:
            fuzz_check(c.since >= 0 && c.since <= c.until && c.until <= api_max_time);
            break;
        case api_endpoint::top: {
            // The window, recomputed without overflow: digits times the unit.
            uint64_t v = 0;
            size_t i = 0;
            for (; i < c.window_text.size() && c.window_text[i] >= '0' && c.window_text[i] <= '9'; ++i)
                v = std::min<uint64_t>(v * 10 + static_cast<unsigned>(c.window_text[i] - '0'), UINT64_MAX / 10);
            const std::string unit = c.window_text.substr(i);
            const uint64_t scale = unit == "ms" ? 1'000'000ull : unit == "s" ? 1'000'000'000ull
                                 : unit == "m"  ? 60'000'000'000ull : unit == "h" ? 3'600'000'000'000ull
                                                                                  : 86'400'000'000'000ull;
            fuzz_check(v <= UINT64_MAX / scale && v * scale == c.window_ns);
            fuzz_check(c.window_ns >= 1'000'000);   // 1 ms, the smallest duration
            fuzz_check(c.since <= now);
            break;
        }
        default: break;
    }
    return 0;
}
