// The control API's request validation (control/api/api_request.cpp): endpoints,
// every argument's bounds, JSON bodies, error bodies that are valid JSON
// whatever bytes the client sent, and no control character accepted anywhere;
// with it the request-target decoding of the HTTP layer (http_listener.h) and
// the printable-text checks both sides use (untrusted_text.h).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <variant>

#include "control/api/api_request.h"
#include "control/observe/event_log.h"
#include "dataplane/event_ring.h"
#include "control/api/http_listener.h"
#include "control/api/untrusted_text.h"

namespace sekisho {
namespace {

constexpr int64_t now = 1'795'000'000;

api_request req(std::string method, std::string path, std::map<std::string, std::string> query = {},
                std::string body = "") {
    return {std::move(method), std::move(path), std::move(query), std::move(body)};
}

api_command accepted(const api_request& r) {
    auto v = parse_api_request(r, now);
    if (auto* e = std::get_if<api_response>(&v)) {
        ADD_FAILURE() << r.method << " " << r.path << ": " << e->status << " " << e->body;
        return {};
    }
    return std::get<api_command>(v);
}

// The refusal's status and its "error" message.
std::pair<int, std::string> refused(const api_request& r) {
    auto v = parse_api_request(r, now);
    if (!std::holds_alternative<api_response>(v)) {
        ADD_FAILURE() << r.method << " " << r.path << " was accepted";
        return {0, ""};
    }
    const auto& e = std::get<api_response>(v);
    const auto j = nlohmann::json::parse(e.body);   // throws (fails the test) if not JSON
    return {e.status, j.at("error").get<std::string>()};
}

TEST(api_request, endpoints) {
    EXPECT_EQ(accepted(req("GET", "/v1/status")).endpoint, api_endpoint::status);
    EXPECT_EQ(accepted(req("POST", "/v1/policy/rollback")).endpoint, api_endpoint::policy_rollback);
    EXPECT_EQ(accepted(req("POST", "/v1/accounts/resume", {}, R"({"account":"a"})")).endpoint,
              api_endpoint::account_resume);
    EXPECT_EQ(refused(req("PUT", "/v1/status")), (std::pair<int, std::string>{404, "no endpoint PUT /v1/status (see docs/api.md)"}));
    EXPECT_TRUE(reads_event_log(api_endpoint::top));
    EXPECT_FALSE(reads_event_log(api_endpoint::whois));
}

TEST(api_request, arguments) {
    const api_command w = accepted(req("GET", "/v1/whois", {{"address", "198.51.100.7"}}));
    EXPECT_EQ(w.prefix.to_string(), "198.51.100.7/32");
    EXPECT_EQ(w.at, now);
    EXPECT_EQ(accepted(req("GET", "/v1/whois", {{"address", "2001:db8::1"}, {"at", "2026-11-23T12:00:00Z"}})).at,
              1795435200);
    EXPECT_EQ(refused(req("GET", "/v1/whois")).first, 400);
    EXPECT_EQ(refused(req("GET", "/v1/whois", {{"address", "198.51.100.7"}, {"at", "-9223372036854775808"}})).first, 400);
    EXPECT_EQ(refused(req("GET", "/v1/whois", {{"address", "198.51.100.7"}, {"at", "253402300800"}})).first, 400);

    EXPECT_EQ(accepted(req("GET", "/v1/bindings", {{"limit", "1000000"}})).limit, 1'000'000u);
    for (const char* bad : {"1000001", "-1", " 5", "+5", "5x", "", "99999999999999999999999"}) {
        if (*bad == 0) continue;   // empty means absent: the default
        EXPECT_EQ(refused(req("GET", "/v1/bindings", {{"limit", bad}})).second,
                  std::string("argument 'limit': '") + bad + "' is not a number from 0 to 1000000");
    }
    EXPECT_EQ(accepted(req("GET", "/v1/events", {{"since_ns", "18446744073709551615"}})).since_ns, UINT64_MAX);
    EXPECT_EQ(refused(req("GET", "/v1/events", {{"since_ns", "-1"}})).first, 400);   // stoull would wrap it

    const api_command rep = accepted(req("GET", "/v1/report", {{"since", "100"}, {"format", "csv"}}));
    EXPECT_EQ(rep.since, 100);
    EXPECT_EQ(rep.until, now);
    EXPECT_TRUE(rep.csv);
    EXPECT_EQ(refused(req("GET", "/v1/report", {{"since", "200"}, {"until", "100"}})).second,
              "argument 'since' is after 'until'");

    const api_command top = accepted(req("GET", "/v1/top", {{"window", "2h"}, {"by", "score"}}));
    EXPECT_EQ(top.window_ns, 7'200'000'000'000u);
    EXPECT_EQ(top.since, now - 7200);
    EXPECT_EQ(refused(req("GET", "/v1/top", {{"by", "bytes"}})).first, 400);
}

TEST(api_request, campaigns_arguments_are_bounded) {
    const api_command d = accepted(req("GET", "/v1/campaigns"));
    EXPECT_EQ(d.endpoint, api_endpoint::campaigns);
    EXPECT_EQ(d.n, 20u);
    EXPECT_EQ(d.min_subscribers, 0u);
    const api_command c = accepted(req("GET", "/v1/campaigns", {{"n", "1000"}, {"min_subscribers", "25"}}));
    EXPECT_EQ(c.n, 1000u);
    EXPECT_EQ(c.min_subscribers, 25u);
    EXPECT_EQ(refused(req("GET", "/v1/campaigns", {{"n", "1001"}})).second,
              "argument 'n': '1001' is not a number from 1 to 1000");
    EXPECT_EQ(refused(req("GET", "/v1/campaigns", {{"n", "0"}})).second,
              "argument 'n': '0' is not a number from 1 to 1000");
    EXPECT_EQ(refused(req("GET", "/v1/campaigns", {{"min_subscribers", "-1"}})).second,
              "argument 'min_subscribers': '-1' is not a number from 0 to 1315");
    EXPECT_EQ(refused(req("POST", "/v1/campaigns")).first, 404);
    EXPECT_FALSE(changes_state(api_endpoint::campaigns));
    EXPECT_FALSE(reads_event_log(api_endpoint::campaigns));
}

TEST(api_request, top_window_that_overflows_is_refused) {
    // 213504 days do not fit in 64-bit nanoseconds; parse_duration used to wrap them to ~3 hours.
    EXPECT_EQ(refused(req("GET", "/v1/top", {{"window", "213504d"}})).second,
              "argument 'window': '213504d' is not a duration");
    EXPECT_EQ(accepted(req("GET", "/v1/top", {{"window", "213503d"}})).window_ns, 213503ull * 86'400'000'000'000ull);
}

TEST(api_request, bodies) {
    const api_command b = accepted(req("POST", "/v1/bindings", {}, R"({"prefix":"2001:db8:100::/48","account":"x"})"));
    EXPECT_EQ(b.prefix.to_string(), "2001:db8:100::/48");
    EXPECT_EQ(b.account, "x");
    EXPECT_EQ(refused(req("POST", "/v1/bindings", {}, "[1]")).second, "the body must be a JSON object");
    EXPECT_EQ(refused(req("POST", "/v1/bindings", {}, R"({"prefix":7,"account":"x"})")).second,
              "field 'prefix': a non-empty string is required");
    EXPECT_EQ(refused(req("POST", "/v1/bindings", {}, R"({"prefix":"198.51.100.1/24","account":"x"})")).second,
              "field 'prefix': '198.51.100.1/24' has host bits set (did you mean 198.51.100.0/24?)");
    EXPECT_EQ(refused(req("POST", "/v1/accounts/suspend", {}, "{")).first, 400);
    // Found by the control_api fuzz target: a number beyond a double made the JSON parser throw
    // out_of_range, which body_json() did not catch (answered 500 by the server).
    EXPECT_EQ(refused(req("POST", "/v1/accounts/suspend", {}, R"({"account": "a", "n": 1e999})")).second,
              "the body is not JSON: [json.exception.out_of_range.406] number overflow parsing '1e999'");
    EXPECT_EQ(refused(req("POST", "/v1/policy")).second, "the body must be the policy (YAML text)");
    EXPECT_TRUE(accepted(req("POST", "/v1/policy", {{"dry_run", "true"}}, "version: 1\n")).dry_run);
}

// The policy's name (sekishoctl: its file's name) only goes into messages: printable, bounded.
TEST(api_request, a_policy_name_is_printable_and_bounded) {
    EXPECT_EQ(accepted(req("POST", "/v1/policy", {{"name", "/etc/sekisho/next.yaml"}}, "version: 1\n")).source_name,
              "/etc/sekisho/next.yaml");
    EXPECT_EQ(accepted(req("POST", "/v1/policy", {}, "version: 1\n")).source_name, "");
    const std::string longest(api_max_source_name_bytes, 'n');
    EXPECT_EQ(accepted(req("POST", "/v1/policy", {{"name", longest}}, "version: 1\n")).source_name, longest);
    EXPECT_EQ(refused(req("POST", "/v1/policy", {{"name", longest + "n"}}, "version: 1\n")),
              (std::pair<int, std::string>{400, "argument 'name': longer than 256 bytes"}));
    EXPECT_EQ(refused(req("POST", "/v1/policy", {{"name", "a\x1b[2Jb.yaml"}}, "version: 1\n")).first, 400);
}

// Found by the control_api fuzz target: a path or argument that is not UTF-8, echoed in the error
// message, made nlohmann::json's dump() throw, so the daemon answered 500 instead of 404/400.
TEST(api_request, error_bodies_are_json_whatever_the_bytes) {
    const auto [status, message] = refused(req("POST", "/v1/bind\xff\xfeings"));
    EXPECT_EQ(status, 404);
    EXPECT_EQ(message, "no endpoint POST /v1/bind\\xff\\xfeings (see docs/api.md)");   // escaped, see below
    EXPECT_EQ(refused(req("GET", "/v1/whois", {{"address", "\xc3"}})).first, 400);
    EXPECT_EQ(refused(req("GET", "/v1/top", {{"window", "1\x80h"}})).first, 400);
    EXPECT_EQ(api_json_text(nlohmann::json{{"text", "# comment \xe3\x81\n"}}), "{\"text\":\"# comment \xef\xbf\xbd\\n\"}");
}

// libmicrohttpd unescaped "/v1/status%00/x" into a C string that ended at the NUL, and so served
// it as /v1/status; the server now decodes the target itself (decode_target) and the NUL reaches
// validation, which answers 404 with the path escaped.
TEST(api_request, path_with_a_control_character_is_no_endpoint) {
    const http_target t = decode_target("/v1/status%00/x?type=%00&a+b=c%2bd&x=%zz&&flag");
    EXPECT_EQ(t.path, std::string("/v1/status\0/x", 13));
    ASSERT_EQ(t.args.size(), 4u);
    EXPECT_EQ(t.args[0], (std::pair<std::string, std::string>{"type", std::string(1, '\0')}));
    EXPECT_EQ(t.args[1], (std::pair<std::string, std::string>{"a b", "c+d"}));   // '+' is a space in the query
    EXPECT_EQ(t.args[2], (std::pair<std::string, std::string>{"x", "%zz"}));     // a malformed escape stays
    EXPECT_EQ(t.args[3], (std::pair<std::string, std::string>{"flag", ""}));
    EXPECT_EQ(decode_target("/v1/a+b%2Fc").path, "/v1/a+b/c");                   // not in the path

    for (const std::string& path : {std::string("/v1/status\0/x", 13), std::string("/v1/status\0", 11),
                                   std::string("/v1/status\x1b"), std::string("/v1/\x07status")}) {
        const auto [status, message] = refused(req("GET", path));
        EXPECT_EQ(status, 404) << path;
        EXPECT_FALSE(find_unprintable(message)) << message;   // the echoed path is escaped
    }
    EXPECT_EQ(refused(req("GET", std::string("/v1/status\0/x", 13))).second,
              "no endpoint GET /v1/status\\x00/x (see docs/api.md)");
}

// Every argument, of every endpoint, known or not: no control character, no byte that is not UTF-8.
TEST(api_request, arguments_with_control_characters_are_refused) {
    EXPECT_EQ(refused(req("GET", "/v1/events", {{"type", std::string(1, '\0')}})).second,
              "argument 'type': control character 0x00 at byte 0 (text must be printable UTF-8)");
    EXPECT_EQ(refused(req("GET", "/v1/status", {{"x", "a\x1b[2J"}})).second,
              "argument 'x': control character 0x1b at byte 1 (text must be printable UTF-8)");
    EXPECT_EQ(refused(req("GET", "/v1/status", {{"\x07", "1"}})).second,
              "argument name '\\x07': control character 0x07 at byte 0");
    EXPECT_EQ(refused(req("GET", "/v1/whois", {{"address", "198.51.100.7\n"}})).first, 400);
    EXPECT_EQ(refused(req("GET", "/v1/bindings", {{"account", "\xc2\x9b" "31m"}})).second,   // C1 CSI
              "argument 'account': control character 0xc2 at byte 0 (text must be printable UTF-8)");
    EXPECT_EQ(refused(req("GET", "/v1/bindings", {{"account", "a\xff"}})).second,
              "argument 'account': byte 0xff at byte 1, not UTF-8 (text must be printable UTF-8)");
    EXPECT_EQ(accepted(req("GET", "/v1/bindings", {{"account", "山田@example.jp"}})).account, "山田@example.jp");
    EXPECT_EQ(accepted(req("GET", "/v1/bindings", {{"account", "DOMAIN\\alice"}})).account, "DOMAIN\\alice");
}

// Account names with ESC, BEL or NUL were stored and printed raw by sekishoctl.
TEST(api_request, account_names_are_printable_and_bounded) {
    for (const char* endpoint : {"/v1/accounts/suspend", "/v1/accounts/resume"}) {
        EXPECT_EQ(refused(req("POST", endpoint, {}, R"({"account":"evil\u001b]0;pwned\u0007"})")).second,
                  "field 'account': control character 0x1b at byte 4 (text must be printable UTF-8)")
            << endpoint;
        EXPECT_EQ(refused(req("POST", endpoint, {}, R"({"account":"a\u0000b"})")).first, 400) << endpoint;
        EXPECT_EQ(refused(req("POST", endpoint, {}, R"({"account":"a\u009bb"})")).first, 400) << endpoint;
        EXPECT_EQ(accepted(req("POST", endpoint, {}, R"({"account":"alice@example.jp"})")).account, "alice@example.jp");
    }
    EXPECT_EQ(refused(req("POST", "/v1/bindings", {}, R"({"prefix":"198.51.100.7","account":"x\u0007"})")).second,
              "field 'account': control character 0x07 at byte 1 (text must be printable UTF-8)");
    EXPECT_EQ(refused(req("POST", "/v1/bindings", {}, R"({"prefix":"198.51.100.7\u001b","account":"x"})")).second,
              "field 'prefix': control character 0x1b at byte 12 (text must be printable UTF-8)");
    EXPECT_EQ(refused(req("GET", "/v1/events", {{"account", "a\tb"}})).first, 400);
    const std::string longest(api_max_account_bytes, 'a');
    EXPECT_EQ(accepted(req("POST", "/v1/accounts/suspend", {}, nlohmann::json{{"account", longest}}.dump())).account,
              longest);
    EXPECT_EQ(refused(req("POST", "/v1/accounts/suspend", {}, nlohmann::json{{"account", longest + "a"}}.dump())).second,
              "field 'account': an account name of 1025 bytes; at most 1024");
    EXPECT_EQ(refused(req("GET", "/v1/events", {{"account", longest + "a"}})).first, 400);
}

// events?subscriber=999.1.1.1 and type=%00 were answered 200 without filtering.
TEST(api_request, events_filters_are_validated) {
    EXPECT_EQ(refused(req("GET", "/v1/events", {{"subscriber", "999.1.1.1"}})).first, 400);
    EXPECT_EQ(refused(req("GET", "/v1/events", {{"subscriber", "198.51.100.1/24"}})).first, 400);   // host bits
    EXPECT_EQ(refused(req("GET", "/v1/events", {{"subscriber", "alice"}})).first, 400);
    const api_command v4 = accepted(req("GET", "/v1/events", {{"subscriber", "198.51.100.7"}}));
    EXPECT_EQ(v4.subscriber, "198.51.100.7");
    ASSERT_TRUE(v4.subscriber_prefix);
    EXPECT_EQ(v4.subscriber_prefix->to_string(), "198.51.100.7/32");
    EXPECT_EQ(accepted(req("GET", "/v1/events", {{"subscriber", "198.51.100.7/32"}})).subscriber, "198.51.100.7");
    // As the event log writes it (inet_ntop), whatever the client's spelling.
    EXPECT_EQ(accepted(req("GET", "/v1/events", {{"subscriber", "2001:DB8:100:0::7"}})).subscriber, "2001:db8:100::7");
    EXPECT_EQ(accepted(req("GET", "/v1/events", {{"subscriber", "2001:db8:100::7/128"}})).subscriber, "2001:db8:100::7");
    // A prefix: every address inside it (a subscriber's delegated IPv6 prefix).
    const api_command v6 = accepted(req("GET", "/v1/events", {{"subscriber", "2001:db8:100:1100::/56"}}));
    EXPECT_EQ(v6.subscriber, "2001:db8:100:1100::/56");
    ASSERT_TRUE(v6.subscriber_prefix);
    EXPECT_EQ(v6.subscriber_prefix->length, 56);
    EXPECT_EQ(accepted(req("GET", "/v1/events", {{"subscriber", "198.51.100.0/24"}})).subscriber, "198.51.100.0/24");
    EXPECT_EQ(refused(req("GET", "/v1/events", {{"subscriber", "198.51.100.0/33"}})).first, 400);
    EXPECT_FALSE(accepted(req("GET", "/v1/events")).subscriber_prefix);

    EXPECT_EQ(refused(req("GET", "/v1/events", {{"type", "bogus"}})).second,
              "argument 'type': 'bogus' is not an event type (op25b_block, op25b_monitor, limit_exceeded, "
              "account_suspended, content_verdict, mail_session, api_change)");
    EXPECT_EQ(refused(req("GET", "/v1/events", {{"type", "OP25B_BLOCK"}})).first, 400);
    for (const std::string_view t : event_types)
        EXPECT_EQ(accepted(req("GET", "/v1/events", {{"type", std::string(t)}})).type, t);
}

// events?after= takes only a position an answer gave: INODE:OFFSET:CHECK.
TEST(api_request, events_after_is_a_position) {
    const api_command c = accepted(req("GET", "/v1/events", {{"after", "1234:567:89"}}));
    ASSERT_TRUE(c.after);
    EXPECT_EQ(c.after->file, 1234u);
    EXPECT_EQ(c.after->offset, 567u);
    EXPECT_EQ(c.after->check, 89u);
    EXPECT_FALSE(accepted(req("GET", "/v1/events")).after);
    for (const char* bad : {"1234", "1234:567", "a:1:2", "1:-2:3", "1:2:3:4", ":1:2", "1:2:", "99999999999999999999:1:1"})
        EXPECT_EQ(refused(req("GET", "/v1/events", {{"after", bad}})).first, 400) << bad;
    EXPECT_EQ(refused(req("GET", "/v1/events", {{"after", "1234"}})).second,
              "argument 'after': '1234' is not a position (from an answer's 'position')");
}

// The list the type filter checks is the one the event log writes: every event type the data
// plane can put in a ring (any byte value) comes out as a type in event_types.
TEST(api_request, event_types_are_those_the_event_log_writes) {
    for (unsigned t = 0; t < 256; ++t) {
        event_record e{};
        e.type = static_cast<event_type>(t);
        e.ip_version = 4;
        const auto j = nlohmann::json::parse(event_to_json(e));
        EXPECT_TRUE(is_event_type(j.at("type").get<std::string>())) << t << ": " << j.dump();
    }
    EXPECT_TRUE(is_event_type("api_change"));   // control_api's audit trail
    EXPECT_FALSE(is_event_type(""));
}

TEST(api_request, limits_show_and_reset_name_one_subscriber) {
    const api_command by_address = accepted(req("GET", "/v1/limits", {{"address", "198.51.100.7"}}));
    EXPECT_EQ(by_address.endpoint, api_endpoint::limits_show);
    EXPECT_TRUE(by_address.by_address);
    EXPECT_EQ(by_address.prefix.to_string(), "198.51.100.7/32");
    const api_command by_account = accepted(req("GET", "/v1/limits", {{"account", "alice@example.jp"}}));
    EXPECT_FALSE(by_account.by_address);
    EXPECT_EQ(by_account.account, "alice@example.jp");
    const api_command reset =
        accepted(req("POST", "/v1/limits/reset", {}, R"({"address": "2001:db8:100::7", "limit": "msgs"})"));
    EXPECT_EQ(reset.endpoint, api_endpoint::limits_reset);
    EXPECT_TRUE(reset.by_address);
    EXPECT_EQ(reset.limit_name, "msgs");
    EXPECT_TRUE(changes_state(api_endpoint::limits_reset)) << "a reset is audited";
    EXPECT_FALSE(changes_state(api_endpoint::limits_show));
    EXPECT_TRUE(needs_accounts(api_endpoint::limits_show)) << "501 on a data plane without accounts";

    EXPECT_EQ(refused(req("GET", "/v1/limits")).first, 400);
    EXPECT_EQ(refused(req("GET", "/v1/limits", {{"address", "198.51.100.7"}, {"account", "a"}})).first, 400);
    const auto prefix = refused(req("GET", "/v1/limits", {{"address", "198.51.100.0/24"}}));
    EXPECT_EQ(prefix.first, 400);
    EXPECT_NE(prefix.second.find("an address is required"), std::string::npos) << prefix.second;
    EXPECT_EQ(refused(req("GET", "/v1/limits", {{"address", "not-an-address"}})).first, 400);
    EXPECT_EQ(refused(req("GET", "/v1/limits", {{"account", ""}})).first, 400);
    EXPECT_EQ(refused(req("POST", "/v1/limits/reset", {}, R"({"limit": "msgs"})")).first, 400);
    EXPECT_EQ(refused(req("POST", "/v1/limits/reset", {}, R"({"account": "a", "limit": 7})")).first, 400);
    EXPECT_EQ(refused(req("POST", "/v1/limits/reset", {}, "not json")).first, 400);
}

TEST(api_request, body_limits) {
    EXPECT_EQ(api_max_body_bytes("POST", "/v1/policy"), 64u << 20);
    EXPECT_EQ(api_max_body_bytes("GET", "/v1/policy"), 1u << 20);
    EXPECT_EQ(api_max_body_bytes("POST", "/v1/bindings"), 1u << 20);
    EXPECT_EQ(api_max_body_bytes("POST", "/v1/nothing"), 1u << 20);
    EXPECT_EQ(api_max_body_bytes("POST", std::string("/v1/policy\0x", 12)), 1u << 20);
}

TEST(untrusted_text, printable_utf8_only) {
    EXPECT_FALSE(find_unprintable(""));
    EXPECT_FALSE(find_unprintable("alice@example.jp 山田 \\x1b ~"));
    EXPECT_FALSE(find_unprintable("\xf0\x9f\x93\xa7 \xc2\xa0"));   // U+1F4E7, U+00A0 (after the C1 range)
    const auto at = [](std::string_view s, bool lines = false) {
        const auto b = find_unprintable(s, lines);
        return b ? describe(*b) : std::string("none");
    };
    EXPECT_EQ(at(std::string("a\0b", 3)), "control character 0x00 at byte 1");
    EXPECT_EQ(at("ab\x7f"), "control character 0x7f at byte 2");
    EXPECT_EQ(at("x\xc2\x85"), "control character 0xc2 at byte 1");     // U+0085 (C1 NEL)
    EXPECT_EQ(at("\xc0\xaf"), "byte 0xc0 at byte 0, not UTF-8");          // overlong '/'
    EXPECT_EQ(at("\xed\xa0\x80"), "byte 0xed at byte 0, not UTF-8");     // a surrogate
    EXPECT_EQ(at("\xf4\x90\x80\x80"), "byte 0xf4 at byte 0, not UTF-8"); // beyond U+10FFFF
    EXPECT_EQ(at("\xe3\x81"), "byte 0xe3 at byte 0, not UTF-8");          // cut short
    EXPECT_EQ(at("a\nb\tc"), "control character 0x0a at byte 1");
    EXPECT_EQ(at("a\nb\tc", true), "none");
    EXPECT_EQ(at("a\nb\rc", true), "control character 0x0d at byte 3");

    EXPECT_EQ(escape_unprintable("\x1b[31mred\x07"), "\\x1b[31mred\\x07");
    EXPECT_EQ(escape_unprintable(std::string("nul\0", 4)), "nul\\x00");
    EXPECT_EQ(escape_unprintable("\xc2\x9b" "2J \xe5\xb1\xb1 \xff"), "\\xc2\\x9b2J \xe5\xb1\xb1 \\xff");
    EXPECT_EQ(escape_unprintable("a\\b"), "a\\b");
    EXPECT_EQ(escape_unprintable("l1\nl2\t\x1b", true), "l1\nl2\t\\x1b");
    EXPECT_EQ(escape_unprintable("l1\nl2"), "l1\\x0al2");
    EXPECT_FALSE(find_unprintable(escape_unprintable("\x1b\x9b\xc2\x9b\xff\xed\xa0\x80\x7f")));
}

}  // namespace
}  // namespace sekisho
