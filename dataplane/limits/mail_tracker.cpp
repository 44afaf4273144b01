#include "dataplane/limits/mail_tracker.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <string_view>
#include <string>

#include <rte_prefetch.h>

#include "dataplane/subscriber_affinity.h"

namespace sekisho {

namespace {

constexpr const char* tempfail_text = "421 4.7.0 Too much mail from your connection, try again later\r\n";

// Stronger actions win when several limits trip on one segment.
int severity(limit_action a) {
    switch (a) {
    case limit_action::monitor: return 1;
    case limit_action::tempfail: return 2;
    case limit_action::drop_syn: return 3;
    case limit_action::reset: return 4;
    }
    return 0;
}

flow_key make_flow_key(const parsed_packet& p, ingress in) {
    flow_key k;
    k.family = p.ip_version;
    const bool from_subscriber = in == ingress::access;
    k.subscriber_port = from_subscriber ? p.src_port : p.dst_port;
    k.server_port = from_subscriber ? p.dst_port : p.src_port;
    if (p.ip_version == 4) {
        std::memcpy(k.subscriber, p.frame + p.l3_offset + (from_subscriber ? 12 : 16), 4);
        std::memcpy(k.server, p.frame + p.l3_offset + (from_subscriber ? 16 : 12), 4);
    } else {
        std::memcpy(k.subscriber, from_subscriber ? p.src6() : p.dst6(), 16);
        std::memcpy(k.server, from_subscriber ? p.dst6() : p.src6(), 16);
    }
    return k;
}

uint32_t payload_len(const parsed_packet& p) { return static_cast<uint32_t>(p.l4_len - p.tcp_header_len); }

// A connection's opening SYN (not the SYN-ACK).
bool is_syn_only(const parsed_packet& p) { return (p.tcp_flags & tcp_flag::syn) && !(p.tcp_flags & tcp_flag::ack); }

// Segments that open a connection or carry bytes from the client are the
// ones that may count against a limit of the client's address.
bool may_count(const parsed_packet& p, ingress in) {
    return in == ingress::access && (is_syn_only(p) || payload_len(p) > 0);
}

}  // namespace

// One segment's view of the subscriber and its connection.
struct mail_tracker::context {
    const parsed_packet& p;
    ingress in;
    uint64_t now_ns;
    const subscriber_key& address;   // the keys live in the caller's frame or in burst_lookups
    const subscriber_key& prefix;
    const flow_key& key;
    uint32_t account = 0;
    uint32_t groups = 0;
    subscriber_class cls = subscriber_class::none;
    mail_flow* flow = nullptr;
    const lookup_hint* address_hint = nullptr;     // prepare()'s lookup of `address`
    subscriber_limits* address_state = nullptr;   // looked up on first use
    subscriber_limits* prefix_state = nullptr;
    bool address_looked = false, prefix_looked = false;
    limit_action pending = limit_action::monitor;
    bool tripped = false;
};

// Turns parser callbacks into counts and limit checks on the current segment.
class mail_tracker::observer : public smtp_observer {
public:
    observer(mail_tracker& t, const compiled_policy& policy, context& ctx) : t_(t), policy_(policy), ctx_(ctx) {}

    void on_command(const smtp_command_info& c) override {
        t_.counters_.mail.commands.add();
        if (c.cmd == smtp_command::mail) {
            t_.counters_.mail.messages.add();
            if (ctx_.flow) ++ctx_.flow->messages;
            const windowed_score& sd = policy_.inspection().sender_domains;
            if (policy_.inspection().enabled && sd.max && c.domain_hash)
                if (subscriber_limits* rec = t_.prefix_record(ctx_))
                    rec->sender_domains.observe(c.domain_hash, ctx_.now_ns, sd.window_ns);
            merge(t_.check(policy_, limit_measure::messages, ctx_));
        } else if (c.cmd == smtp_command::rcpt) {
            t_.counters_.mail.recipients.add();
            if (ctx_.flow) ++ctx_.flow->recipients;
            merge(t_.check(policy_, limit_measure::recipients, ctx_));
            merge(t_.check(policy_, limit_measure::recipients_per_message, ctx_));
        }
    }
    void on_message_start() override {
        if (t_.inspector_ && ctx_.flow)
            t_.inspector_->message_start(policy_, ctx_.key, ctx_.now_ns, ctx_.flow->smtp.sender_hash());
    }
    void on_envelope(smtp_command cmd, const uint8_t* data, size_t len, bool line_end) override {
        if (t_.inspector_ && ctx_.flow)
            t_.inspector_->envelope(policy_, ctx_.key, cmd, data, len, line_end, ctx_.now_ns);
    }
    void on_content(const uint8_t* data, size_t len) override {
        if (t_.inspector_ && ctx_.flow) t_.inspector_->content(policy_, ctx_.key, data, len, ctx_.now_ns);
    }
    void on_message_end() override {
        if (t_.inspector_ && ctx_.flow && policy_.inspection().enabled) merge(t_.judge_message(policy_, ctx_));
    }
    void on_reply(const smtp_reply_info& r) override {
        if (r.to == smtp_command::rcpt && !r.greeting && r.code >= 500 && r.code < 600) {
            t_.counters_.mail.rejected_recipients.add();
            if (ctx_.flow) ++ctx_.flow->rejected_recipients;
            merge(t_.check(policy_, limit_measure::rejected_recipients, ctx_));
        }
    }

private:
    void merge(limit_action a) {
        if (a == limit_action::monitor) return;  // check() returns monitor when nothing acts
        if (!ctx_.tripped || severity(a) > severity(ctx_.pending)) ctx_.pending = a;
        ctx_.tripped = true;
        // The segment will not be delivered: what follows in it (pipelined
        // commands) must not be counted either.
        if (ctx_.flow) ctx_.flow->smtp.stop();
    }
    mail_tracker& t_;
    const compiled_policy& policy_;
    context& ctx_;
};

mail_tracker::mail_tracker(unsigned worker_id, const mail_state& state, rte_mempool* pool,
                           worker_counters& counters, event_ring* events, content_inspector* inspector)
    : worker_id_(worker_id),
      state_(state),
      injector_(pool, counters),
      counters_(counters),
      events_(events),
      inspector_(inspector),
      flows_(("sk_flows" + state.instance + "_" + std::to_string(worker_id)).c_str(), state.flows),
      subscribers_(("sk_sublim" + state.instance + "_" + std::to_string(worker_id)).c_str(), state.subscriber_records) {}

// The worker's limit record for `key`, looked up (and created) once per segment.
mail_tracker::subscriber_limits* mail_tracker::record(context& ctx, const subscriber_key& key,
                                                      subscriber_limits*& cached, bool& looked,
                                                      const lookup_hint* hint) {
    if (!looked) {
        looked = true;
        cached = hint ? subscribers_.find(key, *hint) : subscribers_.find(key);
        if (cached == nullptr) {
            cached = subscribers_.insert(key);
            if (cached == nullptr) counters_.mail.subscriber_state_full.add();
        }
        if (cached) cached->last_seen_ns = ctx.now_ns;
    }
    return cached;
}

mail_tracker::subscriber_limits* mail_tracker::prefix_record(context& ctx) {
    // An IPv4 subscriber's prefix is its address: prepare()'s lookup serves both.
    const lookup_hint* hint = ctx.address_hint && ctx.prefix == ctx.address ? ctx.address_hint : nullptr;
    return record(ctx, ctx.prefix, ctx.prefix_state, ctx.prefix_looked, hint);
}

limit_cell* mail_tracker::cell_for(const compiled_limit& l, context& ctx) {
    switch (l.scope) {
    case limit_scope::address: {
        subscriber_limits* r = record(ctx, ctx.address, ctx.address_state, ctx.address_looked, ctx.address_hint);
        return r ? &r->cells[l.slot] : nullptr;
    }
    case limit_scope::prefix: {
        subscriber_limits* r = prefix_record(ctx);
        return r ? &r->cells[l.slot] : nullptr;
    }
    case limit_scope::account:
        if (ctx.account != 0 && ctx.account < state_.max_accounts)
            return &state_.accounts[ctx.account].cells[l.slot];
        // An unbound address is its own subscriber, keyed by its prefix.
        {
            subscriber_limits* r = prefix_record(ctx);
            return r ? &r->cells[max_subscriber_limit_slots + l.slot] : nullptr;
        }
    }
    return nullptr;
}

const uint64_t* mail_tracker::fleet_share(const compiled_limit& l, const context& ctx) const {
    if (l.scope != limit_scope::account || ctx.account == 0 || ctx.account >= state_.max_accounts) return nullptr;
    return &state_.accounts[ctx.account].fleet_share[l.slot];
}

// The end of a message (before its end-of-data marker goes on): its content
// verdict, the subscriber's score over its window, and what they lead to.
limit_action mail_tracker::judge_message(const compiled_policy& policy, context& ctx) {
    const inspection_settings& in = policy.inspection();
    message_context mc;
    mc.now_ns = ctx.now_ns;
    mc.subscriber_hash = std::hash<std::string_view>{}(
        std::string_view(reinterpret_cast<const char*>(&ctx.prefix), sizeof ctx.prefix));
    mc.recipients = ctx.flow->smtp.message_recipients();
    mc.sender_domain_hash = ctx.flow->smtp.sender_hash();
    mc.helo_ip_literal = ctx.flow->smtp.helo_ip_literal();
    mc.helo_bare_ip = ctx.flow->smtp.helo_bare_ip();
    mc.helo_not_fqdn = ctx.flow->smtp.helo_not_fqdn();
    subscriber_limits* rec = prefix_record(ctx);
    if (rec && in.sender_domains.max) mc.distinct_sender_domains = rec->sender_domains.distinct();
    message_verdict v = inspector_->message_end(policy, ctx.key, mc);

    // The subscriber's accumulated score: its own thresholds.
    score_action action = v.action;
    bool act_on = v.act;
    if (rec && v.score > 0 && in.subscriber_action_count) {
        const uint32_t total =
            window_add(rec->content_score, ctx.now_ns, in.subscriber_window_ns, UINT32_MAX, static_cast<uint32_t>(v.score))
                .count;
        for (unsigned i = in.subscriber_action_count; i-- > 0;)
            if (total >= static_cast<uint32_t>(in.subscriber_actions[i].score)) {
                if (!act_on || static_cast<int>(in.subscriber_actions[i].action) > static_cast<int>(action)) {
                    action = in.subscriber_actions[i].action;
                    act_on = true;
                }
                break;
            }
    }
    if (v.score != 0 || v.rule_count || act_on) emit_verdict(policy, ctx, v, act_on ? action : score_action::event);
    if (!act_on) return limit_action::monitor;
    counters_.inspection.verdicts_acted.add();
    account_record* acct =
        ctx.account != 0 && ctx.account < state_.max_accounts ? &state_.accounts[ctx.account] : nullptr;
    switch (action) {
    case score_action::event: return limit_action::monitor;
    case score_action::tighten:
        if (acct && policy.tightened_group() >= 0)
            std::atomic_ref<uint32_t>(acct->groups).fetch_or(uint32_t{1} << policy.tightened_group(),
                                                             std::memory_order_relaxed);
        return limit_action::monitor;
    case score_action::tempfail: return limit_action::tempfail;
    case score_action::reset: return limit_action::reset;
    case score_action::quarantine:
        if (acct) std::atomic_ref<uint32_t>(acct->suspended).store(1, std::memory_order_relaxed);
        return limit_action::reset;
    }
    return limit_action::monitor;
}

void mail_tracker::emit_verdict(const compiled_policy& policy, const context& ctx, const message_verdict& v,
                                score_action a) {
    event_record e = new_event(policy, event_type::content_verdict, ctx);
    e.action = static_cast<uint8_t>(a);
    e.count = ctx.flow ? ctx.flow->smtp.message_recipients() : 0;
    e.score = v.score;
    e.fingerprint = v.fingerprint;
    std::memcpy(e.rules, v.rules, sizeof e.rules);
    e.rule_count = v.rule_count;
    e.signals = static_cast<uint8_t>(v.signals);
    push(e);
}

limit_action mail_tracker::check(const compiled_policy& policy, limit_measure m, context& ctx) {
    limit_action result = limit_action::monitor;
    bool acted = false;
    for (unsigned i = 0; i < policy.limit_count(); ++i) {
        const compiled_limit& l = policy.limit(i);
        if (l.measure != m || !policy.limit_applies(i, ctx.cls, ctx.groups)) continue;
        uint32_t count = 0;
        bool exceeded;
        if (m == limit_measure::recipients_per_message) {
            count = ctx.flow ? ctx.flow->smtp.message_recipients() : 0;
            exceeded = count > l.max;
        } else {
            limit_cell* cell = cell_for(l, ctx);
            if (cell == nullptr) continue;  // state table full: fail open, counted
            const bool cooling = in_cooldown(*cell, ctx.now_ns);
            if (cooling) {
                exceeded = true;
            } else if (m == limit_measure::connections) {
                exceeded = !gcra_take(*cell, ctx.now_ns, l.gcra_interval_ns, l.gcra_tolerance_ns);
            } else {
                // Fleet mode: what the account's other gateways counted in
                // this window takes its part of the max (exact locally, the
                // share as of the last sync); events carry the fleet's count.
                const uint64_t* share = fleet_share(l, ctx);
                if (l.action == limit_action::monitor) {
                    // Nothing is refused: keep counting past max so events carry the real count.
                    count = window_add(*cell, ctx.now_ns, l.window_ns, UINT32_MAX).count +
                            (share ? fleet_share_count(*share, ctx.now_ns, l.window_ns) : 0);
                    exceeded = count > l.max;
                } else {
                    const window_result w = share ? window_add_shared(*cell, *share, ctx.now_ns, l.window_ns, l.max)
                                                  : window_add(*cell, ctx.now_ns, l.window_ns, l.max);
                    count = w.booked ? w.count : w.count + 1;
                    exceeded = !w.booked;
                }
            }
            // A refusal inside the cooldown does not extend it: a client retrying
            // more often than the cooldown must still get through after it.
            if (exceeded && !cooling && l.cooldown_ns) start_cooldown(*cell, ctx.now_ns + l.cooldown_ns);
        }
        if (!exceeded) continue;
        counters_.mail.limit_hits[i].add();
        uint8_t flags = 0;
        if (l.action == limit_action::monitor && ctx.flow && !ctx.flow->monitored) {
            ctx.flow->monitored = true;   // a connection the limit would have stopped, counted once
            counters_.mail.monitored_connections.add();
            flags = event_flags::first_monitored_hit;
        }
        emit(policy, event_type::limit_exceeded, i, ctx, count, flags);
        if (l.action != limit_action::monitor && (!acted || severity(l.action) > severity(result))) {
            result = l.action;
            acted = true;
        }
    }
    return result;
}

// The fields every event of this tracker has, subscriber first: src is the
// subscriber, dst the server, whichever way the segment went.
event_record mail_tracker::new_event(const compiled_policy& policy, event_type type, const context& ctx) const {
    event_record e{};
    e.time_ns = ctx.now_ns;
    e.generation = policy.generation();
    e.type = type;
    e.ip_version = ctx.p.ip_version;
    e.ingress = static_cast<uint8_t>(ctx.in);
    e.worker = static_cast<uint8_t>(worker_id_);
    e.tcp_flags = ctx.p.tcp_flags;
    e.src_port = ctx.key.subscriber_port;
    e.dst_port = ctx.key.server_port;
    std::memcpy(e.src, ctx.key.subscriber, sizeof e.src);
    std::memcpy(e.dst, ctx.key.server, sizeof e.dst);
    e.account = ctx.account;
    return e;
}

// Sekisho ended the session: it is over now, whatever the client does later.
void mail_tracker::terminate(const compiled_policy& policy, context& ctx) {
    ctx.flow->terminated = true;
    report_session(policy, ctx.key, *ctx.flow, ctx.now_ns);
}

void mail_tracker::report_session(const compiled_policy& policy, const flow_key& key, mail_flow& f, uint64_t now_ns) {
    // Never established (refused, dropped SYN, no answer): no session. Once only.
    if (!f.have_server || f.reported) return;
    f.reported = true;
    event_record e{};
    e.time_ns = now_ns;
    e.generation = policy.generation();
    e.type = event_type::mail_session;
    e.ip_version = key.family;
    e.ingress = static_cast<uint8_t>(ingress::access);
    e.worker = static_cast<uint8_t>(worker_id_);
    e.src_port = key.subscriber_port;
    e.dst_port = key.server_port;
    std::memcpy(e.src, key.subscriber, sizeof e.src);
    std::memcpy(e.dst, key.server, sizeof e.dst);
    e.account = f.account;
    e.action = f.smtp.tls() ? session_bits::tls : 0;
    e.count = f.messages;
    e.recipients = f.recipients;
    e.rejected_recipients = f.rejected_recipients;
    push(e);
}

void mail_tracker::end_flow(const compiled_policy& policy, const flow_key& key, mail_flow& f, uint64_t now_ns) {
    report_session(policy, key, f, now_ns);
    if (inspector_) inspector_->abandon(key);   // a message or session state left behind
    flows_.erase(key);  // `f` is gone from here on
    counters_.mail.flows_ended.add();
}

void mail_tracker::push(const event_record& e) {
    if (events_ == nullptr) return;
    if (events_->push(e))
        counters_.events_emitted.add();
    else
        counters_.events_ring_full.add();
}

void mail_tracker::emit(const compiled_policy& policy, event_type type, unsigned limit, const context& ctx,
                        uint32_t count, uint8_t flags) {
    event_record e = new_event(policy, type, ctx);
    e.flags = flags;
    e.reason = static_cast<uint8_t>(limit);
    e.action = static_cast<uint8_t>(type == event_type::limit_exceeded ? policy.limit(limit).action
                                                                        : limit_action::reset);
    e.count = count;
    push(e);
}

void mail_tracker::inject(const context& ctx, toward to, uint32_t seq, uint32_t ack, uint8_t flags,
                          burst_output& out, const char* text) {
    tcp_segment_spec spec;
    // The client is behind the access port: back to the sender when ctx.p came from it.
    spec.to_sender = (to == toward::client) == (ctx.in == ingress::access);
    spec.seq = seq;
    spec.ack = ack;
    spec.flags = flags;
    if (text) {
        spec.payload = reinterpret_cast<const uint8_t*>(text);
        spec.payload_len = static_cast<uint16_t>(std::strlen(text));
    }
    injector_.inject(ctx.p, ctx.in, spec, out);
}

// Applies `a` to the segment in ctx.p. Returns true if the segment passes.
bool mail_tracker::act(const compiled_policy& policy, limit_action a, context& ctx, burst_output& out) {
    const parsed_packet& p = ctx.p;
    const bool from_client = ctx.in == ingress::access;
    const bool syn_only = is_syn_only(p);
    const uint32_t len = payload_len(p);
    constexpr toward to_client = toward::client, to_server = toward::server;

    switch (a) {
    case limit_action::monitor:
        return true;
    case limit_action::drop_syn:
        if (syn_only) {
            counters_.mail.syns_dropped.add();
            return false;
        }
        [[fallthrough]];  // drop-syn on an established session: end it
    case limit_action::reset:
        if (syn_only) {
            inject(ctx, to_client, 0, p.tcp_seq + 1, tcp_flag::rst | tcp_flag::ack, out);
        } else if (from_client) {
            inject(ctx, to_client, p.tcp_ack, 0, tcp_flag::rst, out);
            inject(ctx, to_server, p.tcp_seq, 0, tcp_flag::rst, out);
        } else {
            inject(ctx, to_client, p.tcp_seq, 0, tcp_flag::rst, out);
            inject(ctx, to_server, p.tcp_ack, 0, tcp_flag::rst, out);
        }
        counters_.mail.resets_sent.add();
        if (ctx.flow) terminate(policy, ctx);
        return false;
    case limit_action::tempfail:
        if (syn_only) {
            // Let the connection open; the server's greeting is replaced.
            if (ctx.flow) ctx.flow->tempfail_greeting = true;
            return true;
        }
        if (from_client) {
            // The client's segment is not delivered: answer it in the server's
            // name, acknowledging it, and close; reset the server's side.
            inject(ctx, to_client, p.tcp_ack, p.tcp_seq + len, tcp_flag::psh | tcp_flag::ack | tcp_flag::fin, out,
                   tempfail_text);
            inject(ctx, to_server, p.tcp_seq, 0, tcp_flag::rst, out);
        } else {
            // A server reply is replaced by the 421 at the same sequence number.
            inject(ctx, to_client, p.tcp_seq, p.tcp_ack, tcp_flag::psh | tcp_flag::ack | tcp_flag::fin, out,
                   tempfail_text);
            inject(ctx, to_server, p.tcp_ack, 0, tcp_flag::rst, out);
        }
        counters_.mail.tempfails_sent.add();
        if (ctx.flow) terminate(policy, ctx);
        return false;
    }
    return true;
}

void mail_tracker::feed(mail_flow& f, const parsed_packet& p, ingress in, observer& obs) {
    const bool from_client = in == ingress::access;
    uint32_t& next = from_client ? f.client_next : f.server_next;
    const bool have = from_client ? f.have_client : f.have_server;
    const uint32_t len = payload_len(p);
    if (len == 0) return;
    if (!have) {  // joined mid-stream: no idea where commands start
        if (!f.smtp.uninspectable()) counters_.mail.uninspectable.add();
        f.smtp.mark_gap();
        return;
    }
    const uint8_t* data = p.frame + p.l4_offset + p.tcp_header_len;
    const int32_t delta = static_cast<int32_t>(p.tcp_seq - next);
    if (delta > 0) {  // bytes missing before this segment
        if (!f.smtp.uninspectable()) counters_.mail.uninspectable.add();
        f.smtp.mark_gap();
        return;
    }
    const uint32_t skip = static_cast<uint32_t>(-delta);  // retransmitted prefix
    if (skip >= len) return;
    const bool was_inspectable = !f.smtp.uninspectable() && !f.smtp.tls();
    if (from_client)
        f.smtp.feed_client(data + skip, len - skip, obs);
    else
        f.smtp.feed_server(data + skip, len - skip, obs);
    next += len - skip;
    if (was_inspectable && f.smtp.uninspectable()) counters_.mail.uninspectable.add();
    if (was_inspectable && f.smtp.tls()) counters_.mail.tls.add();
}

void mail_tracker::prepare(const compiled_policy& policy, ingress in, const parsed_packet* const* segments,
                           uint16_t n) {
    burst_lookups& b = burst_;
    if (n > burst_size) n = burst_size;
    b.count = n;
    const flow_key* flow_keys[burst_size];
    const subscriber_key* address_keys[burst_size];
    uint16_t with_address[burst_size];
    uint16_t addresses = 0;
    const bool limits = policy.has_limits();
    const uint8_t prefix_length = policy.ipv6_prefix_length();
    for (uint16_t k = 0; k < n; ++k) {
        const parsed_packet& p = *segments[k];
        b.flow_keys[k] = make_flow_key(p, in);
        flow_keys[k] = &b.flow_keys[k];
        b.address_keys[k] = subscriber_key_of(p, in, 128);
        // An IPv4 subscriber's prefix is its address.
        b.prefix_keys[k] = p.ip_version == 6 ? subscriber_key_of(p, in, prefix_length) : b.address_keys[k];
        b.has_address_hint[k] = limits && may_count(p, in);
        if (b.has_address_hint[k]) {
            address_keys[addresses] = &b.address_keys[k];
            with_address[addresses++] = k;
        }
    }
    flows_.lookup_bulk(flow_keys, n, b.flow_hints);
    lookup_hint hints[burst_size];
    subscribers_.lookup_bulk(address_keys, addresses, hints);
    for (uint16_t j = 0; j < addresses; ++j) b.address_hints[with_address[j]] = hints[j];
    prefetch_account(b, 0);
    prefetch_account(b, 1);
}

// The account record of the prepared segment k, if its flow was found: it is
// the next miss of that segment, and only the flow knows which.
void mail_tracker::prefetch_account(const burst_lookups& b, uint16_t k) {
    if (k >= b.count) return;
    const mail_flow* f = flows_.hinted(b.flow_hints[k]);
    if (f && f->account != 0 && f->account < state_.max_accounts) rte_prefetch0(&state_.accounts[f->account]);
}

bool mail_tracker::handle(const compiled_policy& policy, const parsed_packet& p, ingress in, uint64_t now_ns,
                          burst_output& out) {
    const subscriber_key address = subscriber_key_of(p, in, 128);
    const subscriber_key prefix = subscriber_key_of(p, in, policy.ipv6_prefix_length());
    const flow_key key = make_flow_key(p, in);
    context ctx{p, in, now_ns, address, prefix, key};
    return handle_segment(policy, ctx, out, nullptr);
}

bool mail_tracker::handle(const compiled_policy& policy, const parsed_packet& p, ingress in, uint64_t now_ns,
                          burst_output& out, uint16_t k) {
    const burst_lookups& b = burst_;
    prefetch_account(b, static_cast<uint16_t>(k + 2));
    context ctx{p, in, now_ns, b.address_keys[k], b.prefix_keys[k], b.flow_keys[k]};
    if (b.has_address_hint[k]) ctx.address_hint = &b.address_hints[k];
    return handle_segment(policy, ctx, out, &b.flow_hints[k]);
}

bool mail_tracker::handle_segment(const compiled_policy& policy, context& ctx, burst_output& out,
                                  const lookup_hint* flow_hint) {
    const parsed_packet& p = ctx.p;
    const ingress in = ctx.in;
    const uint64_t now_ns = ctx.now_ns;
    const flow_key& key = ctx.key;
    const bool from_client = in == ingress::access;
    const uint8_t flags = p.tcp_flags;
    const bool syn_only = is_syn_only(p);

    mail_flow* f = flow_hint ? flows_.find(key, *flow_hint) : flows_.find(key);

    if (from_client && syn_only) {
        if (f == nullptr) {
            f = flows_.insert(key);
            if (f == nullptr)
                counters_.mail.flow_table_full.add();
            else
                counters_.mail.flows_created.add();
        } else if (!f->terminated && f->have_client && p.tcp_seq + 1 == f->client_next) {
            return true;  // a retransmitted SYN: the same connection, counted once
        } else {
            report_session(policy, key, *f, now_ns);  // the old one's end was not seen
            *f = mail_flow{};  // a new connection on a recycled 4-tuple
        }
        ctx.account = state_.subscribers ? state_.subscribers->lookup(ctx.prefix) : 0;
        ctx.cls = p.ip_version == 4 ? policy.subscriber4(p.src4) : policy.subscriber6(p.src6());
        if (f) {
            f->account = ctx.account;
            f->cls = ctx.cls;
            f->client_next = p.tcp_seq + 1;
            f->have_client = true;
            f->last_seen_ns = now_ns;
            f->smtp.reset(policy.is_implicit_tls_port(p.dst_port));
            if (policy.is_implicit_tls_port(p.dst_port)) counters_.mail.tls.add();
        }
    } else if (f == nullptr) {
        return true;  // not tracked (started before us, or table was full)
    } else {
        ctx.account = f->account;
        ctx.cls = f->cls;
    }
    ctx.flow = f;
    if (ctx.account != 0 && ctx.account < state_.max_accounts) {
        account_record& acct = state_.accounts[ctx.account];
        ctx.groups = std::atomic_ref<uint32_t>(acct.groups).load(std::memory_order_relaxed);
        // 利用停止: a suspended account's connections are refused with a reset,
        // new ones at the SYN, established ones at their next client segment.
        if (from_client && std::atomic_ref<uint32_t>(acct.suspended).load(std::memory_order_relaxed) &&
            !(f && f->terminated) && !(flags & tcp_flag::rst)) {
            counters_.mail.suspended_refused.add();
            emit(policy, event_type::account_suspended, 0, ctx, 0);
            if (syn_only) {
                inject(ctx, toward::client, 0, p.tcp_seq + 1, tcp_flag::rst | tcp_flag::ack, out);
                if (f) end_flow(policy, key, *f, now_ns);
            } else {
                act(policy, limit_action::reset, ctx, out);
            }
            return false;
        }
    }

    if (from_client && syn_only) {
        if (!policy.has_limits()) return true;
        const limit_action a = check(policy, limit_measure::connections, ctx);
        if (a == limit_action::monitor) return true;
        const bool pass = act(policy, a, ctx, out);
        if (!pass && f) end_flow(policy, key, *f, now_ns);
        return pass;
    }

    f->last_seen_ns = now_ns;
    if (f->terminated) {
        // Sekisho ended this session: the server has been reset; a client
        // still talking gets a reset too.
        if (from_client && !(flags & tcp_flag::rst)) inject(ctx, toward::client, p.tcp_ack, 0, tcp_flag::rst, out);
        if (flags & (tcp_flag::rst | tcp_flag::fin)) end_flow(policy, key, *f, now_ns);
        return false;
    }
    if (!from_client && (flags & tcp_flag::syn) && (flags & tcp_flag::ack)) {
        f->server_next = p.tcp_seq + 1;
        f->have_server = true;
        return true;
    }
    if (!from_client && f->tempfail_greeting && payload_len(p) > 0) {
        const bool pass = act(policy, limit_action::tempfail, ctx, out);
        return pass;
    }

    observer obs(*this, policy, ctx);
    feed(*f, p, in, obs);
    bool pass = true;
    if (ctx.tripped) pass = act(policy, ctx.pending, ctx, out);

    if ((flags & tcp_flag::rst) || (!pass && inspector_)) {
        if (inspector_) inspector_->abandon(key);
    }
    if (flags & tcp_flag::rst) {
        end_flow(policy, key, *f, now_ns);
    } else if (flags & tcp_flag::fin) {
        (from_client ? f->client_fin : f->server_fin) = true;
        if (f->client_fin && f->server_fin) end_flow(policy, key, *f, now_ns);
    }
    return pass;
}

void mail_tracker::serve(limit_request_box& box) {
    const limit_record_request& r = box.request();
    limit_record_answer& a = box.answer_to_fill();
    auto serve_record = [&](const subscriber_key& key, uint32_t reset, limit_record_copy& copy) {
        subscriber_limits* rec = subscribers_.find(key);
        if (rec == nullptr) return;
        copy.found = true;
        std::memcpy(copy.cells, rec->cells, sizeof copy.cells);
        for (unsigned i = 0; i < subscriber_record_cells; ++i)
            if (reset >> i & 1) clear_cell(rec->cells[i]);
    };
    if (r.prefix == r.address) {   // IPv4: the address is the prefix, one record
        serve_record(r.address, r.reset_address_cells | r.reset_prefix_cells, a.address);
        a.prefix = a.address;
    } else {
        serve_record(r.address, r.reset_address_cells, a.address);
        serve_record(r.prefix, r.reset_prefix_cells, a.prefix);
    }
    box.mark_answered();
}

void mail_tracker::sweep(const compiled_policy& policy, uint64_t now_ns) {
    // Ageing is paced by the clock, not by bursts: 32 slots of each table per
    // millisecond walk a 100k-slot table in ~3 s, far inside any idle
    // timeout, and a burst with no mail pays nothing for it (a sweep per
    // burst did: docs/performance.md).
    if (now_ns < next_sweep_ns_) return;
    next_sweep_ns_ = now_ns + 1'000'000;
    const uint64_t idle = state_.flow_idle_timeout_ns;
    counters_.mail.flows_expired.add(flows_.sweep(32, [&](const flow_key& key, mail_flow& f) {
        if (f.last_seen_ns + idle >= now_ns) return false;
        report_session(policy, key, f, now_ns);
        return true;
    }));
    uint64_t lifetime = policy.state_lifetime_ns();
    if (policy.inspection().enabled)
        lifetime = std::max({lifetime, policy.inspection().subscriber_window_ns,
                             policy.inspection().sender_domains.window_ns});
    subscribers_.sweep(32, [&](const subscriber_limits& s) { return s.last_seen_ns + lifetime < now_ns; });
    if (inspector_) inspector_->sweep(now_ns, idle);
}

}  // namespace sekisho
