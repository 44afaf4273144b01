#include "dataplane/limits/mail_limits.h"

#include "dataplane/inspect/inspection_policy.h"

namespace sekisho {

const char* to_string(limit_measure m) {
    switch (m) {
    case limit_measure::connections: return "connections";
    case limit_measure::messages: return "messages";
    case limit_measure::recipients: return "recipients";
    case limit_measure::recipients_per_message: return "recipients_per_message";
    case limit_measure::rejected_recipients: return "rejected_recipients";
    }
    return "unknown";
}
const char* to_string(limit_scope s) {
    switch (s) {
    case limit_scope::address: return "address";
    case limit_scope::prefix: return "prefix";
    case limit_scope::account: return "account";
    }
    return "unknown";
}
const char* to_string(limit_action a) {
    switch (a) {
    case limit_action::drop_syn: return "drop-syn";
    case limit_action::reset: return "reset";
    case limit_action::tempfail: return "tempfail";
    case limit_action::monitor: return "monitor";
    }
    return "unknown";
}

const char* to_string(score_action a) {
    switch (a) {
    case score_action::event: return "event";
    case score_action::tighten: return "tighten";
    case score_action::tempfail: return "tempfail";
    case score_action::reset: return "reset";
    case score_action::quarantine: return "quarantine";
    }
    return "unknown";
}

}  // namespace sekisho
