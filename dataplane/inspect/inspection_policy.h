// Content inspection settings as the workers read them (part of a policy
// snapshot): signal scores, campaign thresholds and what a score leads to.
// The rules themselves are compiled into content_rules (Hyperscan).
#pragma once

#include <cstdint>

namespace sekisho {

// What a score (a message's, or a subscriber's over a window) leads to. The
// order matches content_action's after its `none` (a rule's own action).
enum class score_action : uint8_t {
    event,        // an event with rule ids, score and fingerprint; nothing else
    tighten,      // the subscriber's account joins the reserved group "tightened"
    tempfail,     // 421 4.7.0 before the end-of-data marker: the message is not accepted
    reset,        // RST both ways before the end-of-data marker
    quarantine,   // the account is suspended (利用停止) until an operator resumes it
};
const char* to_string(score_action a);

struct score_threshold {
    int32_t score = 0;
    score_action action = score_action::event;
};

struct windowed_score {
    uint32_t max = 0;          // 0: disabled
    uint64_t window_ns = 0;
    int32_t score = 0;
};

constexpr unsigned max_score_thresholds = 4;

struct inspection_settings {
    bool enabled = false;               // false: no message content is read at all
    uint32_t max_body_bytes = 65536;    // decoded body bytes scanned per message
    uint32_t flows_per_worker = 16384;  // messages inspected at once per worker
    // Sender signals (0 disables a signal).
    int32_t from_mismatch = 0;          // MAIL FROM domain differs from the header From domain
    int32_t ehlo_ip_literal = 0;        // EHLO [192.0.2.1]
    int32_t ehlo_bare_ip = 0;           // EHLO 192.0.2.1
    int32_t ehlo_not_fqdn = 0;          // EHLO localhost
    windowed_score sender_domains;      // distinct MAIL FROM domains per subscriber per window
    // Bulk campaigns, by message fingerprint.
    windowed_score campaign_recipients;   // recipients of one fingerprint from one subscriber
    windowed_score campaign_subscribers;  // distinct subscribers sending one fingerprint
    // What scores lead to: the highest threshold reached applies.
    score_threshold message_actions[max_score_thresholds];
    unsigned message_action_count = 0;
    score_threshold subscriber_actions[max_score_thresholds];
    unsigned subscriber_action_count = 0;
    uint64_t subscriber_window_ns = 3'600'000'000'000ull;
};

}  // namespace sekisho
