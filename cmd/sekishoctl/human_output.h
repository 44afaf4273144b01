// sekishoctl's human output: one printer per reply, to standard output.
//
// Every text the daemon sent goes through shown() (untrusted_text.h):
// control characters in an account name or an event arrive escaped (\x1b),
// never as bytes an operator's terminal would obey. (--json prints replies as
// they came: JSON escapes control characters.) A printer reads the fields
// its endpoint documents (docs/api.md); a reply without them throws
// nlohmann::json's exception.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace sekisho::ctl {

// A value from the daemon as the human output shows it: a string's text,
// anything else as JSON, unprintable bytes escaped either way.
std::string shown(const nlohmann::json& j);
// Multi-line text from the daemon (a policy, a CSV report): line breaks and tabs kept.
std::string shown_lines(const std::string& text);
// Unix seconds as 2026-11-23T12:00:00Z.
std::string iso(int64_t unix_seconds);

// Writes an error reply to standard error: its "error" and "errors", or the body as it came.
void print_error(long status, const std::string& body);

void print_status(const nlohmann::json& status);
void print_policy(const nlohmann::json& policy);
// A policy change's diff as a table, one row per changed setting: KEY, BEFORE,
// AFTER (a limit's settings in words, a prefix removed or added); "nothing".
void print_diff(const nlohmann::json& diff);
// An apply's or a dry run's answer: the generation, the diff, what the backend will not enforce.
void print_policy_change(const nlohmann::json& change, bool dry_run);
// A rollback's answer: the generation returned to, the new one, the depth left, the diff.
void print_rollback(const nlohmann::json& rollback);
void print_bindings(const nlohmann::json& list);
void print_bound(const nlohmann::json& added);
void print_unbound(const nlohmann::json& removed);
void print_whois(const nlohmann::json& whois);
void print_account(const nlohmann::json& account);
// The accounts (or only the suspended ones); "none" when there are none.
void print_accounts(const nlohmann::json& list, bool only_suspended);
// One event-log line (its fields came from the network and the API: each through shown()).
void print_event(const nlohmann::json& event);
void print_top(const nlohmann::json& top);
// GET /v1/campaigns: one line per fingerprint; the FLEET columns when the daemon is in fleet mode.
void print_campaigns(const nlohmann::json& campaigns);
// --fleet top: one row per account (its addresses and gateways listed), or per gateway and address for nobody's.
void print_fleet_top(const nlohmann::json& top);
// limits show: each limit's count against its maximum, cool-down and whether it is tripped;
// limits reset: what was cleared, with the readings from before.
void print_limits(const nlohmann::json& limits);
void print_limits_reset(const nlohmann::json& reset);

}  // namespace sekisho::ctl
