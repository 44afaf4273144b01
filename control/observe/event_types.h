// The "type" of every line the event log holds (docs/events.md): the data
// plane's events (event_to_json) and the control plane's audit trail
// (control_api). One list for everyone who names them: the API's `type`
// filter, sekishoctl's check of --type before it sends anything.
//
// Header-only: sekishoctl links none of the control library.
#pragma once

#include <array>
#include <string>
#include <string_view>

namespace sekisho {

constexpr std::array<std::string_view, 7> event_types = {
    "op25b_block", "op25b_monitor", "limit_exceeded", "account_suspended", "content_verdict", "mail_session",
    "api_change"};

constexpr bool is_event_type(std::string_view type) {
    for (const std::string_view t : event_types)
        if (t == type) return true;
    return false;
}

// "op25b_block, op25b_monitor, ..., api_change": for error messages.
inline std::string event_type_list() {
    std::string out;
    for (const std::string_view t : event_types) (out += out.empty() ? "" : ", ") += t;
    return out;
}

}  // namespace sekisho
