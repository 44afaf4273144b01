// The control API's request validation (docs/api.md), apart from what the
// requests do: which endpoint a method and path name, and every argument and
// body field checked and converted, or the 400 that says which one is wrong.
//
// Pure: no gateway, no I/O, no clock (the caller passes `now`), so that the
// same code control_api::handle() runs is what tests/fuzz/control_api_fuzz.cpp
// feeds untrusted requests to.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "control/api/api_server.h"
#include "control/api/event_queries.h"
#include "control/observe/event_types.h"
#include "control/policy/policy.h"

namespace sekisho {

enum class api_endpoint : uint8_t {
    status,           // GET /v1/status
    policy_show,      // GET /v1/policy
    policy_apply,     // POST /v1/policy                 body: YAML; ?dry_run=1|true
    policy_rollback,  // POST /v1/policy/rollback
    bindings_list,    // GET /v1/bindings               ?limit=N&account=NAME
    bindings_add,     // POST /v1/bindings              {"prefix": ..., "account": ...}
    bindings_del,     // DELETE /v1/bindings            ?prefix=P
    whois,            // GET /v1/whois                  ?address=A&at=T
    accounts_list,    // GET /v1/accounts               ?suspended=1|true
    account_suspend,  // POST /v1/accounts/suspend      {"account": ...}
    account_resume,   // POST /v1/accounts/resume       {"account": ...}
    events,           // GET /v1/events                 ?n=&since_ns=&after=&type=&subscriber=&account=
    report,           // GET /v1/report                 ?since=&until=&format=json|csv
    top,              // GET /v1/top                    ?window=&by=
    limits_show,      // GET /v1/limits                 ?address=A | ?account=NAME
    limits_reset,     // POST /v1/limits/reset          {"address"|"account": ..., "limit": NAME (optional)}
    campaigns,        // GET /v1/campaigns              ?n=&min_subscribers=
};
const char* to_string(api_endpoint e);

// The endpoint for a method and path, or nullopt (404).
std::optional<api_endpoint> api_endpoint_of(const std::string& method, const std::string& path);
// Endpoints that read the event log (404 when events go to standard output).
bool reads_event_log(api_endpoint e);
// Endpoints that change the running state (audited: control_api).
bool changes_state(api_endpoint e);
// Endpoints that need the data plane's subscriber bindings and accounts (501 without them).
bool needs_accounts(api_endpoint e);

// The largest body a request may have: POST /v1/policy takes a policy file of
// a million prefixes (about 25 MB) and gets 64 MiB; every other request 1 MiB.
// The server refuses a larger declared body (413) before reading it.
size_t api_max_body_bytes(const std::string& method, const std::string& path);


// The longest account name the API takes: a RADIUS User-Name (at most 253
// octets) with every octet escaped as \xNN still fits.
constexpr size_t api_max_account_bytes = 1024;

// Latest time the API accepts (9999-12-31T23:59:59Z) and earliest (the epoch):
// times are compared and subtracted later, and so stay far from int64 limits.
constexpr int64_t api_max_time = 253402300799;

// A validated request. Only the fields of its endpoint are meaningful.
struct api_command {
    api_endpoint endpoint = api_endpoint::status;
    bool dry_run = false;              // policy_apply
    // policy_apply: the name the client gives the policy (its file's name), used
    // only in messages ("NAME:4: ..."); printable, at most api_max_source_name_bytes
    // (untrusted_text.h).
    // Empty: "policy".
    std::string source_name;
    bool only_suspended = false;       // accounts_list
    // bindings_add: bind even outside every subscriber range ("force": true).
    bool force = false;
    // account_suspend: suspend even an account the daemon has never seen ("create": true).
    bool create = false;
    uint64_t limit = 1000;             // bindings_list: at most this many (<= 1e6)
    std::string account;               // bindings_list filter (may be empty), bindings_add, account_*, events filter
    ip_prefix prefix;                  // bindings_add, bindings_del; whois: the address
    int64_t at = 0;                    // whois (Unix seconds)
    uint64_t n = 50;                   // events: at most this many (<= 100000)
    uint64_t since_ns = 0;             // events: newer than this
    std::optional<event_position> after;   // events: the lines after this position (INODE:OFFSET:CHECK)
    std::string type;                  // events filter (may be empty): one of event_types
    // events filter (may be empty): an address as the event log writes it ("198.51.100.7",
    // "2001:db8::7", whatever the client's spelling), or a prefix ("2001:db8:100:1100::/56");
    // subscriber_prefix is it parsed (/32, /128 for an address).
    std::string subscriber;
    std::optional<ip_prefix> subscriber_prefix;
    int64_t since = 0, until = 0;      // report (Unix seconds, since <= until); top: since = now - window
    bool csv = false;                  // report
    std::string window_text = "1h";    // top
    uint64_t window_ns = 0;            // top
    std::string by = "events";         // top: events, op25b_block, limit_exceeded, account_suspended, score
    // limits_show, limits_reset: the subscriber by address (prefix, an address: /32 or /128) or
    // by account (account); limits_reset: one limit by its policy name, or every limit (empty).
    bool by_address = false;
    std::string limit_name;
    // campaigns: at most `n` fingerprints (1..api_max_campaigns, default 20), those with at
    // least min_subscribers subscribers (this gateway's or the fleet's estimate).
    uint32_t min_subscribers = 0;
};

// The most fingerprints GET /v1/campaigns lists.
constexpr uint64_t api_max_campaigns = 1000;

// The JSON text the API sends: bytes that are not UTF-8 (a client's path or argument echoed in an
// error, a policy's comments) become U+FFFD, where nlohmann::json's dump() would throw and turn a
// 400/404 into a 500.
std::string api_json_text(const nlohmann::json& j);
// {"error": message} with `status`.
api_response api_error(int status, const std::string& message);

// Validates `r` for its endpoint at time `now` (Unix seconds, the default of
// whois' `at` and report's `until`). Returns the command, or the error
// response: 404 for an unknown endpoint (a path with a control character is
// none), 400 naming the bad argument or field. Every argument (name and value)
// and every text field of a JSON body must be printable UTF-8
// (untrusted_text.h): control characters (ESC, BEL, NUL, ...) are refused, so
// nothing the API stores or echoes can drive an operator's terminal. Account
// names (bindings, suspensions, the account filters) are 1 to
// api_max_account_bytes bytes of it. Never throws for any request content
// (std::bad_alloc aside).
std::variant<api_command, api_response> parse_api_request(const api_request& r, int64_t now);

}  // namespace sekisho
