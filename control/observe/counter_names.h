// The names every data-plane counter is published under: its key in summary.json
// (counters_json: replay, --summary, the control API's status) and its Prometheus
// family and label (metrics_exporter). One entry per counter of worker_counters and
// of event_log_counters;
// both readers derive everything from these tables, so a name is written here and
// nowhere else.
//
// The names are published (dashboards, alerts, the replay test and the e2e scripts
// read them): they do not change. Where a counter's summary key and its metric label
// are spelled differently (summary "flows_created", label kind="flow_created"), both
// are published and the entry carries both; docs/metrics.md lists every counter with
// both its names.
//
// Completeness is checked at compile time (end of this file): a counter added to
// worker_counters.h without an entry here fails the build.
#pragma once

#include <array>
#include <cstddef>
#include <iterator>
#include <utility>

#include "control/observe/event_log_counters.h"
#include "dataplane/worker_counters.h"

namespace sekisho {

// A Prometheus metric family some counters are exported under.
struct metric_family {
    const char* name;
    const char* help;
    const char* label = nullptr;   // the label that tells its counters apart; nullptr: none
};

inline constexpr metric_family packets_family{
    "sekisho_packets_total", "Frames received, by port and what happened to them.", "verdict"};
inline constexpr metric_family rx_bytes_family{"sekisho_rx_bytes_total", "Bytes received, by port."};
inline constexpr metric_family tx_packets_family{
    "sekisho_tx_packets_total", "Frames sent, by port (forwarded and injected)."};
inline constexpr metric_family tx_bytes_family{"sekisho_tx_bytes_total", "Bytes sent, by port."};
inline constexpr metric_family tx_queue_full_family{
    "sekisho_tx_queue_full_drops_total", "Frames dropped because the port's TX queue was full."};
inline constexpr metric_family op25b_resets_family{
    "sekisho_op25b_resets_sent_total", "TCP RSTs sent by OP25B, by port they left through."};
inline constexpr metric_family op25b_blocks_family{
    "sekisho_op25b_blocks_total", "Frames OP25B blocked (enforce) or would block (monitor), by reason.", "mode"};
inline constexpr metric_family op25b_monitored_connections_family{
    "sekisho_op25b_monitored_connections_total",
    "Connections (client SYNs) OP25B would block in monitor mode, by port; sekisho_op25b_blocks_total counts "
    "their frames."};
inline constexpr metric_family malformed_frames_family{
    "sekisho_malformed_frames_total", "Malformed frames, by reason (both ports)."};
inline constexpr metric_family smtp_events_family{
    "sekisho_smtp_events_total", "SMTP tracking events, by kind.", "kind"};
inline constexpr metric_family inspection_events_family{
    "sekisho_inspection_events_total",
    "Content inspection, by kind: messages inspected, envelope lines and header fields scanned, and the "
    "fail-open cases (table_full, stream_overflow, stream_error).",
    "kind"};
inline constexpr metric_family inspection_body_bytes_family{
    "sekisho_inspection_body_bytes_total", "Decoded body bytes scanned."};
// Also carries the event log's outcomes (written, write_error, aggregated: event_log_counter_names).
inline constexpr metric_family events_family{"sekisho_events_total", "Data-plane events, by outcome.", "outcome"};
inline constexpr metric_family event_log_io_errors_family{
    "sekisho_event_log_io_errors_total", "Failed writes, fsyncs, renames or opens of the event log."};
inline constexpr metric_family event_log_rotations_family{"sekisho_event_log_rotations_total", "Event log rotations."};
inline constexpr metric_family event_log_reopens_family{
    "sekisho_event_log_reopens_total",
    "Event log file deleted or replaced underneath, and opened again at its path."};
inline constexpr metric_family worker_polls_family{
    "sekisho_worker_polls_total", "Worker loop iterations, busy (received frames) or idle.", "state"};
inline constexpr metric_family limit_hits_family{
    "sekisho_limit_hits_total", "Send-rate limit hits, by limit (names from the policy).", "limit"};
inline constexpr metric_family rule_matches_family{
    "sekisho_rule_matches_total", "Messages each content rule matched (ids from the policy).", "rule"};

// The control thread's own counters and gauges (control_snapshot), one family each.
inline constexpr metric_family policy_reload_failures_family{
    "sekisho_policy_reload_failures_total",
    "Policy reloads (SIGHUP) refused: invalid policy, keys read at start only, compile or commit failure. "
    "The previous generation keeps running."};
inline constexpr metric_family build_info_family{
    "sekisho_build_info", "Always 1; the labels name the running version, its build (git describe) and backend."};

// One counter of a block (mail_counters, inspection_counters, worker_counters: `counter`s;
// event_log_counters: the control thread's plain integers).
template <typename Block, typename Value = counter>
struct counter_name {
    Value Block::*member;
    const char* summary_key;                 // key in the group's summary.json object
    const metric_family* family = nullptr;   // nullptr: summary.json only
    const char* label_value = nullptr;       // its value of family->label
};

// One counter of port_counters. summary.json: ports.<port>.<summary_key>; metric:
// family{port="<port>", <family->label>="<label_value>"}.
struct port_counter_name {
    counter port_counters::*member;
    const char* summary_key;
    const metric_family* family = nullptr;
    const char* label_value = nullptr;
    const char* total_key = nullptr;              // top-level summary key of the sum over both ports
    bool per_worker = false;                      // also in per_worker[i], summed over ports
    counter port_counters::*minus = nullptr;      // the metric counts member minus this counter
};

// An array of counters indexed by a reason (an enum with to_string). summary.json:
// <summary_key>.<reason> for the reasons counted at least once; metric, every reason:
// family{reason="<reason>", <family->label>="<label_value>"}.
template <typename Reason, size_t N>
struct reason_counter_name {
    std::array<counter, N> worker_counters::*member;
    const char* summary_key;
    const metric_family* family;
    const char* label_value = nullptr;
    unsigned first_reason = 0;   // reasons below it mean "none" and are never counted
};

// The labels samples are split by before their family's own label: the port, the reason
// (reason_counter_name) and the worker (poll_counter_names).
inline constexpr const char port_label[] = "port";
inline constexpr const char reason_label[] = "reason";
inline constexpr const char worker_label[] = "worker";

// Summary objects of the groups below.
inline constexpr const char ports_summary_object[] = "ports";
inline constexpr const char smtp_summary_object[] = "smtp";
inline constexpr const char inspection_summary_object[] = "inspection";
inline constexpr const char events_summary_object[] = "events";
inline constexpr const char per_worker_summary_object[] = "per_worker";   // array, one per worker

// Tables are in the order the exposition lists their samples; a family's samples follow
// the order of its entries.
inline constexpr port_counter_name port_counter_names[] = {
    {.member = &port_counters::forwarded, .summary_key = "forwarded", .family = &packets_family,
     .label_value = "forwarded", .total_key = "forwarded", .per_worker = true, .minus = &port_counters::monitored},
    {.member = &port_counters::monitored, .summary_key = "monitored", .family = &packets_family,
     .label_value = "monitored", .total_key = "monitored"},
    {.member = &port_counters::monitored_connections, .summary_key = "monitored_connections",
     .family = &op25b_monitored_connections_family, .total_key = "monitored_connections"},
    {.member = &port_counters::blocked, .summary_key = "blocked", .family = &packets_family,
     .label_value = "blocked", .total_key = "blocked", .per_worker = true},
    {.member = &port_counters::limited, .summary_key = "limited", .family = &packets_family,
     .label_value = "limited", .total_key = "limited"},
    {.member = &port_counters::malformed_dropped, .summary_key = "malformed_dropped", .family = &packets_family,
     .label_value = "malformed_dropped", .total_key = "malformed_dropped"},
    {.member = &port_counters::rx_bytes, .summary_key = "rx_bytes", .family = &rx_bytes_family},
    {.member = &port_counters::tx_packets, .summary_key = "tx_packets", .family = &tx_packets_family},
    {.member = &port_counters::tx_bytes, .summary_key = "tx_bytes", .family = &tx_bytes_family},
    {.member = &port_counters::tx_full_drops, .summary_key = "tx_full_drops", .family = &tx_queue_full_family},
    {.member = &port_counters::resets_sent, .summary_key = "resets_sent", .family = &op25b_resets_family,
     .total_key = "resets_sent"},
    {.member = &port_counters::rx_packets, .summary_key = "rx_packets", .total_key = "frames_in", .per_worker = true},
    {.member = &port_counters::malformed, .summary_key = "malformed"},
    {.member = &port_counters::reset_failures, .summary_key = "reset_failures"},
    {.member = &port_counters::non_ip, .summary_key = "non_ip"},
    {.member = &port_counters::fragments, .summary_key = "fragments"},
};

inline constexpr reason_counter_name<block_reason, block_reason_count> block_reason_counter_names[] = {
    {&worker_counters::blocked_by_reason, "blocked_by_reason", &op25b_blocks_family, "enforce"},
    {&worker_counters::monitored_by_reason, "monitored_by_reason", &op25b_blocks_family, "monitor"},
};
inline constexpr reason_counter_name<parse_error, parse_error_count> malformed_reason_counter_names[] = {
    {&worker_counters::malformed_by_reason, "malformed_by_reason", &malformed_frames_family, nullptr,
     static_cast<unsigned>(parse_error::none) + 1},
};

using mail_counters = worker_counters::mail_counters;
inline constexpr counter_name<mail_counters> smtp_counter_names[] = {
    {&mail_counters::flows_created, "flows_created", &smtp_events_family, "flow_created"},
    {&mail_counters::flows_ended, "flows_ended", &smtp_events_family, "flow_ended"},
    {&mail_counters::flows_expired, "flows_expired", &smtp_events_family, "flow_expired"},
    {&mail_counters::flow_table_full, "flow_table_full", &smtp_events_family, "flow_table_full"},
    {&mail_counters::subscriber_state_full, "subscriber_state_full", &smtp_events_family, "subscriber_state_full"},
    {&mail_counters::uninspectable, "uninspectable", &smtp_events_family, "uninspectable"},
    {&mail_counters::tls, "tls", &smtp_events_family, "tls"},
    {&mail_counters::commands, "commands", &smtp_events_family, "command"},
    {&mail_counters::messages, "messages", &smtp_events_family, "message"},
    {&mail_counters::recipients, "recipients", &smtp_events_family, "recipient"},
    {&mail_counters::rejected_recipients, "rejected_recipients", &smtp_events_family, "rejected_recipient"},
    {&mail_counters::tempfails_sent, "tempfails_sent", &smtp_events_family, "tempfail_sent"},
    {&mail_counters::resets_sent, "resets_sent", &smtp_events_family, "reset_sent"},
    {&mail_counters::syns_dropped, "syns_dropped", &smtp_events_family, "syn_dropped"},
    {&mail_counters::suspended_refused, "suspended_refused", &smtp_events_family, "suspended_refused"},
    {&mail_counters::monitored_connections, "monitored_connections", &smtp_events_family, "monitored_connection"},
};

using inspection_counters = worker_counters::inspection_counters;
inline constexpr counter_name<inspection_counters> inspection_counter_names[] = {
    {&inspection_counters::messages, "messages", &inspection_events_family, "message"},
    {&inspection_counters::table_full, "table_full", &inspection_events_family, "table_full"},
    {&inspection_counters::header_fields, "header_fields", &inspection_events_family, "header_field"},
    {&inspection_counters::envelope_lines, "envelope_lines", &inspection_events_family, "envelope_line"},
    {&inspection_counters::stream_overflow, "stream_overflow", &inspection_events_family, "stream_overflow"},
    {&inspection_counters::stream_errors, "stream_errors", &inspection_events_family, "stream_error"},
    {&inspection_counters::policy_restarts, "policy_restarts", &inspection_events_family, "policy_restart"},
    {&inspection_counters::body_evictions, "body_evictions", &inspection_events_family, "body_eviction"},
    {&inspection_counters::campaign_recipients, "campaign_recipients", &inspection_events_family,
     "campaign_recipients"},
    {&inspection_counters::campaign_subscribers, "campaign_subscribers", &inspection_events_family,
     "campaign_subscribers"},
    {&inspection_counters::verdicts_acted, "verdicts_acted", &inspection_events_family, "verdict_acted"},
    {&inspection_counters::body_bytes, "body_bytes", &inspection_body_bytes_family},
    {&inspection_counters::rule_matches, "rule_matches"},
};

// summary.json: events.<summary_key>, summed over the blocks.
inline constexpr counter_name<worker_counters> event_counter_names[] = {
    {&worker_counters::events_emitted, "emitted", &events_family, "emitted"},
    {&worker_counters::events_ring_full, "ring_full", &events_family, "ring_full"},
};

// The event log's own counters (the control thread's, docs/events.md), in the same
// summary.json object: events.<summary_key>. `received` is internal (it equals written +
// write_errors + pending) and has no name.
inline constexpr counter_name<event_log_counters, uint64_t> event_log_counter_names[] = {
    {&event_log_counters::written, "written", &events_family, "written"},
    {&event_log_counters::write_errors, "write_errors", &events_family, "write_error"},
    {&event_log_counters::lines, "lines"},
    {&event_log_counters::io_errors, "io_errors", &event_log_io_errors_family},
    {&event_log_counters::aggregated, "aggregated", &events_family, "aggregated"},
    {&event_log_counters::aggregation_overflow, "aggregation_overflow"},
    {&event_log_counters::rotations, "rotations", &event_log_rotations_family},
    {&event_log_counters::reopened, "reopened", &event_log_reopens_family},
    {&event_log_counters::pending, "pending"},
};

// Per worker, not summed. summary.json: per_worker[i].<summary_key>; metric:
// family{worker="<i>", state="<label_value>"}.
inline constexpr counter_name<worker_counters> poll_counter_names[] = {
    {&worker_counters::busy_polls, "busy_polls", &worker_polls_family, "busy"},
    {&worker_counters::idle_polls, "idle_polls", &worker_polls_family, "idle"},
};

// Counters indexed by the policy or by a port number, published under one name each:
// mail.limit_hits (summary.json: an array by the limit's index in the policy; metric: by
// the limit's name, limit_hits_family), rule_matches (metric only, by the rule's id,
// rule_matches_family), blocked_by_dst_port (summary.json only: an object by TCP
// destination port, the ports hit at least once).
inline constexpr const char limit_hits_summary_key[] = "limit_hits_by_index";
inline constexpr const char blocks_by_dst_port_summary_key[] = "op25b_by_dst_port";

// ---- Completeness: every counter of worker_counters has exactly one entry above.

namespace counter_names_check {

// Converts to any member type: T{any_member{}...} with n initialisers is well formed
// exactly when the aggregate T has at least n members.
struct any_member {
    template <typename T>
    constexpr operator T() const;
};

template <typename T, size_t... I>
constexpr bool initialisable_with(std::index_sequence<I...>) {
    return requires { T{(static_cast<void>(I), any_member{})...}; };
}

// How many members the aggregate T has.
template <typename T, size_t N = 0>
constexpr size_t member_count() {
    if constexpr (initialisable_with<T>(std::make_index_sequence<N + 1>{}))
        return member_count<T, N + 1>();
    else
        return N;
}

// Each entry names a different member.
template <typename Entries>
constexpr bool distinct_members(const Entries& entries) {
    for (size_t i = 0; i < std::size(entries); ++i)
        for (size_t j = i + 1; j < std::size(entries); ++j)
            if (entries[i].member == entries[j].member) return false;
    return true;
}

// No member is named by both tables.
template <typename EntriesA, typename EntriesB>
constexpr bool disjoint_members(const EntriesA& a, const EntriesB& b) {
    for (const auto& x : a)
        for (const auto& y : b)
            if (x.member == y.member) return false;
    return true;
}

}  // namespace counter_names_check

// A block whose members are all counters is covered when it has as many distinct entries
// as it has members.
static_assert(counter_names_check::member_count<port_counters>() == std::size(port_counter_names) &&
                  counter_names_check::distinct_members(port_counter_names),
              "every port_counters member needs one entry in port_counter_names");
static_assert(counter_names_check::member_count<mail_counters>() == std::size(smtp_counter_names) + 1 &&
                  counter_names_check::distinct_members(smtp_counter_names),
              "every mail_counters member but limit_hits needs one entry in smtp_counter_names");
static_assert(counter_names_check::member_count<inspection_counters>() == std::size(inspection_counter_names) &&
                  counter_names_check::distinct_members(inspection_counter_names),
              "every inspection_counters member needs one entry in inspection_counter_names");
static_assert(counter_names_check::distinct_members(block_reason_counter_names) &&
                  counter_names_check::distinct_members(event_counter_names) &&
                  counter_names_check::distinct_members(poll_counter_names) &&
                  counter_names_check::disjoint_members(event_counter_names, poll_counter_names),
              "a counter named twice");
static_assert(counter_names_check::member_count<event_log_counters>() == std::size(event_log_counter_names) + 1 &&
                  counter_names_check::distinct_members(event_log_counter_names),
              "every event_log_counters member but received needs one entry in event_log_counter_names");
// worker_counters' own members: port, mail and inspection (the tables above), the reason
// arrays, the event and poll counters, and rule_matches and blocked_by_dst_port.
static_assert(counter_names_check::member_count<worker_counters>() ==
                  3 + std::size(malformed_reason_counter_names) + std::size(block_reason_counter_names) +
                      std::size(event_counter_names) + std::size(poll_counter_names) + 2,
              "a worker_counters member without a name in counter_names.h");

}  // namespace sekisho
