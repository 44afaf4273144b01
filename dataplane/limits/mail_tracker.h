// SMTP session tracking and send-rate limits, the stateful stage of the
// pipeline. It sees the TCP segments on the mail ports (policy ports.smtp and
// ports.submission) that OP25B let through, in both directions:
//
//  - keeps one record per connection in the worker's flow table: TCP sequence
//    tracking per direction (a gap or reordering marks the session
//    uninspectable, counted) and the SMTP parser state;
//  - counts connections at the client's SYN, messages at MAIL FROM,
//    recipients at RCPT TO, rejected recipients at a 5xx reply to RCPT TO,
//    and evaluates the policy's limits at those moments (mail_limits.h says
//    where the state lives);
//  - applies the limit's action on the segment that tripped it: drop-syn,
//    reset (RST both ways), tempfail (the client gets "421 4.7.0" with correct
//    TCP sequence numbers and a FIN, the server an RST), or monitor;
//  - raises an event for every limit hit, and one mail_session event when a
//    connection ends (closed, reset, refused or idle) with what it carried.
//
// One instance per worker; no locks (account cells are updated by CAS).
#pragma once

#include <cstdint>
#include <string>

#include "dataplane/bounded_table.h"
#include "dataplane/compiled_policy.h"
#include "dataplane/inspect/content_inspector.h"
#include "dataplane/inspect/sender_signals.h"
#include "dataplane/event_ring.h"
#include "dataplane/limits/limit_request_box.h"
#include "dataplane/limits/mail_limits.h"
#include "dataplane/op25b_classifier.h"
#include "dataplane/net/packet_parser.h"
#include "dataplane/pipeline.h"
#include "dataplane/smtp/smtp_session.h"
#include "dataplane/limits/subscriber_table.h"
#include "dataplane/worker_counters.h"

namespace sekisho {

// The connection as seen from the subscriber: its address and port, the
// server's address and port.
struct flow_key {
    uint8_t family = 0;
    uint8_t reserved = 0;
    uint16_t subscriber_port = 0;
    uint16_t server_port = 0;
    uint16_t reserved2 = 0;
    uint8_t subscriber[16] = {};
    uint8_t server[16] = {};
};
static_assert(sizeof(flow_key) == 40);

struct mail_flow {
    smtp_session smtp{false};
    uint64_t last_seen_ns = 0;
    uint32_t account = 0;
    uint32_t client_next = 0, server_next = 0;   // next expected sequence numbers
    subscriber_class cls = subscriber_class::none;
    bool have_client = false, have_server = false;
    bool tempfail_greeting = false;  // a connections limit with action tempfail tripped
    bool terminated = false;         // Sekisho ended this session
    bool client_fin = false, server_fin = false;
    // What the session carried, for its mail_session event.
    uint32_t messages = 0, recipients = 0, rejected_recipients = 0;
    bool reported = false;           // its mail_session event is out
    bool monitored = false;          // a monitor-action limit was hit on it (counted once)
};

// Where the shared and per-worker state is.
struct mail_state {
    const subscriber_table* subscribers = nullptr;
    account_record* accounts = nullptr;   // indexed by account id
    uint32_t max_accounts = 0;
    uint32_t flows = 65536;               // per worker
    uint32_t subscriber_records = 262144; // per worker
    uint64_t flow_idle_timeout_ns = 300'000'000'000ull;
    std::string instance;                 // appended to the tables' names (dpdk_data_plane_config::instance)
};

class mail_tracker {
public:
    // Injected segments come from `pool`.
    mail_tracker(unsigned worker_id, const mail_state& state, rte_mempool* pool, worker_counters& counters,
                 event_ring* events, content_inspector* inspector = nullptr);

    // Is this segment for the tracker? (TCP on a mail port, server side.)
    static bool wants(const parsed_packet& p, ingress in, const compiled_policy& policy) {
        return p.kind == frame_kind::ip_tcp &&
               policy.is_mail_port(in == ingress::access ? p.dst_port : p.src_port);
    }

    // Judges one segment. Returns true if the segment passes (the caller
    // forwards it), false if the tracker stopped it (the caller frees it).
    // Injected segments go to out.reply (back out of `in`) and out.forward.
    bool handle(const compiled_policy& policy, const parsed_packet& p, ingress in, uint64_t now_ns,
                burst_output& out);

    // A burst in two passes, as the pipeline drives it: prepare() looks up the
    // flow and the client's limit record of each of the burst's `n` segments
    // for the tracker (wants() holds; n <= burst_size) at once
    // (bounded_table::lookup_bulk: the misses of the whole burst overlap
    // instead of following each other); then handle(..., k) judges the k-th
    // of them, k = 0..n-1 in order, exactly as handle() above would (the
    // lookups are hints, confirmed or redone). The parses stay where they
    // are until the last handle() of the burst.
    void prepare(const compiled_policy& policy, ingress in, const parsed_packet* const* segments, uint16_t n);
    bool handle(const compiled_policy& policy, const parsed_packet& p, ingress in, uint64_t now_ns,
                burst_output& out, uint16_t k);

    // Ages flows and idle subscriber state a little at a time; call per burst.
    void sweep(const compiled_policy& policy, uint64_t now_ns);

    uint32_t flows() const { return flows_.size(); }

    // The worker, between bursts (limit_request_box.h): copies the records of
    // the request's keys (never creating one) and clears the cells it asks to,
    // then marks the request answered.
    void serve(limit_request_box& box);

private:
    struct subscriber_limits {
        limit_cell cells[subscriber_record_cells];
        limit_cell content_score;          // inspection: the subscriber's score in its window
        sender_domain_set sender_domains;  // inspection: distinct MAIL FROM domains
        uint64_t last_seen_ns = 0;
    };
    struct context;          // one segment's view: keys, account, flow
    class observer;          // smtp_session callbacks -> limit checks

    limit_action check(const compiled_policy& policy, limit_measure m, context& ctx);
    limit_cell* cell_for(const compiled_limit& l, context& ctx);
    // Account scope: the account's share of the other gateways' counts
    // (mail_limits.h fleet_share); nullptr for the other scopes and unbound
    // addresses.
    const uint64_t* fleet_share(const compiled_limit& l, const context& ctx) const;
    void emit(const compiled_policy& policy, event_type type, unsigned limit, const context& ctx, uint32_t count,
              uint8_t flags = 0);
    void emit_verdict(const compiled_policy& policy, const context& ctx, const message_verdict& v, score_action a);
    limit_action judge_message(const compiled_policy& policy, context& ctx);
    subscriber_limits* record(context& ctx, const subscriber_key& key, subscriber_limits*& cached, bool& looked,
                              const lookup_hint* hint = nullptr);
    subscriber_limits* prefix_record(context& ctx);
    event_record new_event(const compiled_policy& policy, event_type type, const context& ctx) const;
    void push(const event_record& e);
    bool act(const compiled_policy& policy, limit_action a, context& ctx, burst_output& out);
    // A segment into ctx's connection, toward its client or its server.
    enum class toward : uint8_t { client, server };
    void inject(const context& ctx, toward to, uint32_t seq, uint32_t ack, uint8_t flags, burst_output& out,
                const char* text = nullptr);
    void feed(mail_flow& f, const parsed_packet& p, ingress in, observer& obs);
    // Removes the flow and reports what it carried (mail_session event).
    void end_flow(const compiled_policy& policy, const flow_key& key, mail_flow& f, uint64_t now_ns);
    void report_session(const compiled_policy& policy, const flow_key& key, mail_flow& f, uint64_t now_ns);
    void terminate(const compiled_policy& policy, context& ctx);
    bool handle_segment(const compiled_policy& policy, context& ctx, burst_output& out, const lookup_hint* flow_hint);

    // What prepare() looked up, by the segment's place k in the burst: the
    // flow key and its hint; the subscriber's address and prefix keys; the
    // address's hint when the segment may count against a limit.
    struct burst_lookups {
        flow_key flow_keys[burst_size];
        lookup_hint flow_hints[burst_size];
        subscriber_key address_keys[burst_size], prefix_keys[burst_size];
        lookup_hint address_hints[burst_size];
        bool has_address_hint[burst_size];
        uint16_t count = 0;
    };
    void prefetch_account(const burst_lookups& b, uint16_t k);

    unsigned worker_id_;
    mail_state state_;
    segment_injector injector_;
    worker_counters& counters_;
    event_ring* events_;
    content_inspector* inspector_;
    bounded_table<flow_key, mail_flow> flows_;
    bounded_table<subscriber_key, subscriber_limits> subscribers_;
    uint64_t next_sweep_ns_ = 0;
    burst_lookups burst_;
};

}  // namespace sekisho
