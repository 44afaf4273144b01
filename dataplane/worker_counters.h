// Per-worker counters: one writer (the worker), any number of readers.
//
// Each worker owns one cache-aligned block; it updates with plain relaxed
// stores (no read-modify-write, no lock, no shared cache line). Readers sum the
// blocks of all workers with relaxed loads (sum_over in
// control/observe/counters_report.h), so the totals are exact once the workers
// have stopped and never torn while running.
//
// Every counter here is published under the names control/observe/counter_names.h
// gives it (summary.json key, metric family and label); a counter added without
// an entry there fails the build.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

#include "dataplane/limits/mail_limits.h"
#include "dataplane/op25b_classifier.h"
#include "dataplane/net/packet_parser.h"

namespace sekisho {

class counter {
public:
    void add(uint64_t n = 1) { std::atomic_ref<uint64_t>(v_).store(v_ + n, std::memory_order_relaxed); }
    // For blocks that mirror counters kept elsewhere (the XDP program's
    // per-CPU map, copied by the control thread): same single writer rule.
    void set(uint64_t n) { std::atomic_ref<uint64_t>(v_).store(n, std::memory_order_relaxed); }
    uint64_t load() const {
        return std::atomic_ref<const uint64_t>(v_).load(std::memory_order_relaxed);
    }

private:
    alignas(8) uint64_t v_ = 0;
};

// Counters of one port (access or core) as seen by one worker.
struct port_counters {
    counter rx_packets, rx_bytes;        // frames received on this port
    counter tx_packets, tx_bytes;        // frames that left through this port
    counter forwarded;                   // received here, sent on unchanged
    counter blocked;                     // received here, stopped (enforce)
    counter monitored;                   // received here, would block, sent on
    counter monitored_connections;       // ... of them client SYNs: connections OP25B would block
    counter limited;                     // received here, stopped by a send-rate limit
    counter malformed;                   // received here and malformed
    counter malformed_dropped;           // ... and therefore not sent on
    counter resets_sent;                 // RSTs sent out through this port
    counter reset_failures;              // RST wanted but no mbuf for it
    counter tx_full_drops;               // meant for this port, TX queue full
    counter non_ip, fragments;           // traffic mix
};

struct alignas(64) worker_counters {
    std::array<port_counters, ingress_count> port;
    std::array<counter, parse_error_count> malformed_by_reason;
    std::array<counter, block_reason_count> blocked_by_reason;
    std::array<counter, block_reason_count> monitored_by_reason;
    counter events_emitted, events_ring_full;
    // SMTP session tracking and limits.
    struct mail_counters {
        counter flows_created, flows_ended, flows_expired;
        counter flow_table_full;            // connection not tracked: table full
        counter subscriber_state_full;      // limits not applied: state table full
        counter uninspectable;              // gap, out of order, or protocol desync
        counter tls;                        // STARTTLS or implicit TLS: opaque
        counter commands, messages, recipients, rejected_recipients;
        counter tempfails_sent, resets_sent, syns_dropped;
        counter suspended_refused;          // connections of suspended accounts refused
        counter monitored_connections;      // connections a monitor-action limit would have stopped (first hit each)
        std::array<counter, max_limits> limit_hits;
    } mail;
    // Content inspection (only where the policy enables it).
    struct inspection_counters {
        counter messages;            // messages inspected
        counter table_full;          // messages not inspected: inspection table full (fail open)
        counter header_fields, body_bytes;
        counter envelope_lines;      // EHLO/HELO/MAIL/RCPT arguments scanned (envelope rules)
        counter rule_matches;        // rules that matched, summed over messages
        counter stream_overflow;     // body stream state larger than a record holds (fail open)
        counter stream_errors;
        counter policy_restarts;     // a policy applied mid-message: its hits and body stream started afresh
        counter body_evictions;      // an open body stream put away into its record for another message's use
        counter campaign_recipients, campaign_subscribers;   // campaign thresholds reached
        counter verdicts_acted;      // messages refused or accounts acted on by score
    } inspection;
    // Messages each content rule matched, by rule index (the first 8 rules of a message).
    std::unique_ptr<std::array<counter, 8192>> rule_matches = std::make_unique<std::array<counter, 8192>>();
    counter busy_polls, idle_polls;
    // Blocks (enforce) and would-blocks (monitor) by TCP destination port.
    std::unique_ptr<std::array<counter, 65536>> blocked_by_dst_port =
        std::make_unique<std::array<counter, 65536>>();
};

}  // namespace sekisho
