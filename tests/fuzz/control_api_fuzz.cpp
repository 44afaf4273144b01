// Fuzz target: the control API's request validation (control/api_request.cpp),
// the layer control_api::handle() runs on every request before it touches the
// gateway. libmicrohttpd hands it a method, a path, decoded URL arguments and
// a body; so does this target.
//
// Input: "METHOD\nPATH?k=v&k2=v2\nBODY" (anything after the second newline is
// the body). Invariants: an unknown endpoint is 404 and only that; any other
// refusal is a 400 whose body is a JSON object with an "error" string; an
// accepted request has arguments within the documented bounds, and its prefix
// prints as text that parses back to the same prefix.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <string_view>
#include <variant>

#include "api_request.h"
#include "fuzz_target.h"

using namespace sekisho;

namespace {

api_request split(std::string_view in) {
    api_request r;
    const size_t nl1 = in.find('\n');
    r.method = std::string(in.substr(0, nl1));
    if (nl1 == std::string_view::npos) return r;
    in.remove_prefix(nl1 + 1);
    const size_t nl2 = in.find('\n');
    std::string_view target = in.substr(0, nl2);
    if (nl2 != std::string_view::npos) r.body = std::string(in.substr(nl2 + 1));
    const size_t q = target.find('?');
    r.path = std::string(target.substr(0, q));
    if (q == std::string_view::npos) return r;
    std::string_view query = target.substr(q + 1);
    while (!query.empty()) {
        const size_t amp = query.find('&');
        const std::string_view kv = query.substr(0, amp);
        const size_t eq = kv.find('=');
        r.query[std::string(kv.substr(0, eq))] = eq == std::string_view::npos ? "" : std::string(kv.substr(eq + 1));
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return r;
}

void check_prefix(const ip_prefix& p) {
    fuzz_check(p.family == 4 || p.family == 6);
    fuzz_check(p.length <= (p.family == 4 ? 32 : 128));
    std::string why;
    const auto again = parse_prefix(p.to_string(), why);
    fuzz_check(again && *again == p);
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
        return 0;
    }
    const api_command& c = std::get<api_command>(result);
    fuzz_check(endpoint && c.endpoint == *endpoint);
    fuzz_check(std::string_view(to_string(c.endpoint)) != "?");
    switch (c.endpoint) {
        case api_endpoint::policy_apply: fuzz_check(!r.body.empty()); break;
        case api_endpoint::bindings_list: fuzz_check(c.limit <= 1'000'000); break;
        case api_endpoint::bindings_add: fuzz_check(!c.account.empty()); check_prefix(c.prefix); break;
        case api_endpoint::bindings_del: check_prefix(c.prefix); break;
        case api_endpoint::whois:
            check_prefix(c.prefix);
            fuzz_check(c.at >= 0 && c.at <= api_max_time);
            break;
        case api_endpoint::account_suspend:
        case api_endpoint::account_resume: fuzz_check(!c.account.empty()); break;
        case api_endpoint::events: fuzz_check(c.n <= 100'000); break;
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
