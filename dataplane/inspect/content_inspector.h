// Content inspection of outbound messages, where the policy enables it.
//
// Fed by mail_tracker from smtp_session's content callbacks: the message
// bytes as the server will store them are decoded (mail_decoder: MIME,
// base64/QP, RFC 2047, charsets to UTF-8), scanned with Hyperscan in stream
// mode (header fields and body), fingerprinted for bulk-campaign counting,
// and scored together with the sender signals. The verdict is reached while
// the segment carrying the end-of-data marker is being handled, so a blocked
// message's marker never reaches the server.
//
// State: one record per message being inspected in the worker's bounded
// table (inspection.flows_per_worker); the body's Hyperscan stream is kept
// in it between segments (its bytes where Hyperscan's streams are flat, else
// compressed), except that the worker keeps the streams of the
// content_open_bodies messages it served last open (sessions' segments
// interleave), and puts one away into its record when another message needs
// its slot (the least recently used; counted, inspection.body_evictions). A
// full table, or a rule set whose stream state does not fit the record, fails
// open (counted). A policy applied during a message takes over from that
// segment on: the hits so far and the body stream (both of the old rule set)
// start afresh (inspection.policy_restarts). The Hyperscan scratch and the
// open streams are not this class's: they are the worker's working set for the
// generation in use (compiled_policy::scan_states(), made with the generation,
// freed with it), so a worker under a new generation scans with that
// generation's own. Only rule ids, scores, counts and fingerprints leave this
// class: never message text.
#pragma once

#include <cstdint>
#include <string>

#include "dataplane/bounded_table.h"
#include "dataplane/compiled_policy.h"
#include "dataplane/inspect/content_scan_state.h"
#include "dataplane/event_ring.h"
#include "dataplane/mime/mail_decoder.h"
#include "dataplane/inspect/message_fingerprint.h"
#include "dataplane/inspect/sender_signals.h"
#include "dataplane/smtp/smtp_session.h"
#include "dataplane/worker_counters.h"

namespace sekisho {

class campaign_table;
struct flow_key;

constexpr unsigned inspection_max_rule_hits = 8;     // rule ids kept per message (more are counted)
constexpr size_t inspection_body_stream_max = 1024;  // body stream state per message (its bytes or compressed)
constexpr size_t inspection_header_value_max = 512;  // decoded header field value scanned

struct message_verdict {
    int32_t score = 0;
    score_action action = score_action::event;
    bool act = false;               // a threshold was reached
    uint64_t fingerprint = 0;
    uint16_t rules[inspection_max_rule_hits] = {};
    uint8_t rule_count = 0;
    uint32_t signals = 0;           // sender_signal bits
};

// What the inspector needs to know about the session at the end of a message.
struct message_context {
    uint64_t now_ns = 0;
    uint64_t subscriber_hash = 0;   // subscriber key hash (campaign counting)
    uint32_t recipients = 0;        // RCPT TO of this message
    uint32_t sender_domain_hash = 0;
    bool helo_ip_literal = false, helo_bare_ip = false, helo_not_fqdn = false;
    uint32_t distinct_sender_domains = 0;   // in the subscriber's window (0: not tracked)
};

class content_inspector {
public:
    // `instance`: appended to its table's name (unique per process), as
    // dpdk_data_plane_config::instance.
    content_inspector(unsigned worker_id, uint32_t capacity, campaign_table* campaigns, worker_counters& counters,
                      const std::string& instance = "");
    ~content_inspector();

    bool active(const compiled_policy& p) const { return p.inspection().enabled; }
    // sender_domain_hash: the MAIL FROM domain (smtp_session::sender_hash), for
    // the from_mismatch signal, checked when the header From is decoded.
    void message_start(const compiled_policy& p, const flow_key& key, uint64_t now_ns, uint32_t sender_domain_hash);
    void content(const compiled_policy& p, const flow_key& key, const uint8_t* data, size_t len, uint64_t now_ns);
    // An envelope command's argument (smtp_observer::on_envelope), for `where: envelope` rules:
    // at its line end, "VERB argument" is scanned with the envelope database. The hits of the
    // session's EHLO/HELO count for each of its messages; MAIL FROM and RCPT TO for the
    // transaction they open. No rules for the envelope: nothing is kept.
    void envelope(const compiled_policy& p, const flow_key& key, smtp_command cmd, const uint8_t* data, size_t len,
                  bool line_end, uint64_t now_ns);
    // Ends the message: the verdict (score, threshold action) of what was seen.
    message_verdict message_end(const compiled_policy& p, const flow_key& key, const message_context& ctx);
    void abandon(const flow_key& key);   // the session ended mid-message
    void sweep(uint64_t now_ns, uint64_t idle_ns);

private:
    struct state;
    class sink;
    state* record(const compiled_policy& p, const flow_key& key);
    // This worker's Hyperscan working set for p's generation (p.scan_states(), built for p's
    // databases and freed with p); nullptr when p has no content rules or was compiled for
    // fewer workers.
    content_scan_state* working_set(const compiled_policy& p) const;
    void adopt(const compiled_policy& p, state& s);
    content_scan_state::body_slot* open_body(content_scan_state& ws, state& s);
    bool park_body(const content_scan_state& ws, content_scan_state::body_slot& slot);
    void scan_header(const compiled_policy& p, state& s);
    void scan_envelope(const compiled_policy& p, state& s, smtp_command cmd);

    unsigned worker_id_;
    campaign_table* campaigns_;
    worker_counters& counters_;
    charset_converters converters_;
    bounded_table<flow_key, state>* table_;
    uint64_t last_body_id_ = 0;
};

}  // namespace sekisho
