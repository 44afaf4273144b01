#include "dataplane/inspect/content_inspector.h"

#include <cstring>
#include <string>
#include <string_view>

#include "dataplane/inspect/campaign_table.h"
#include "dataplane/inspect/content_rules.h"
#include "dataplane/limits/mail_tracker.h"

namespace sekisho {

// The rules a message has matched so far, and its score from them.
struct rule_hits {
    int32_t score = 0;
    uint64_t seen_low = 0;                   // rule ids < 64 already scored
    uint16_t rules[inspection_max_rule_hits] = {};
    uint8_t rule_count = 0;
};

// One message being inspected; with envelope rules, one session (it then
// lives from the EHLO to the session's end, between messages too).
struct content_inspector::state {
    mail_decoder decoder;
    message_fingerprint fingerprint;
    uint64_t last_seen_ns = 0;
    uint64_t generation = 0;                 // the policy its rule hits and body stream belong to
    rule_hits hits;                          // this message's
    rule_hits session_hits;                  // the session's EHLO/HELO: every message starts with them
    bool envelope_line_open = false;         // an envelope argument is being collected (header_value)
    bool from_mismatch = false;
    uint32_t sender_domain_hash = 0;
    uint8_t header_name_len = 0;
    uint16_t header_value_len = 0;
    char header_name[content_header_name_max] = {};
    uint8_t header_value[inspection_header_value_max] = {};
    uint64_t body_id = 0;                    // this message's, unique in the worker (body_slot::owner_id)
    uint8_t body_slot = 0;                   // the worker's open stream it had last (it may have been taken since)
    bool body_started = false;               // the body stream has been opened
    uint16_t body_stream_len = 0;            // in body_stream (when not open in the worker): bytes or compressed
    bool body_stream_lost = false;           // state did not fit: body not scanned further
    uint8_t body_stream[inspection_body_stream_max] = {};
};

namespace {

static_assert(content_rules_max <= 8192, "worker_counters::rule_matches has 8192 slots");
static_assert(static_cast<unsigned>(content_action::event) - 1 == static_cast<unsigned>(score_action::event) &&
              static_cast<unsigned>(content_action::quarantine) - 1 == static_cast<unsigned>(score_action::quarantine));

struct match_context {
    const content_rule_set* rules;
    void* state;
    void (*add)(void* state, const content_rule_set& rules, unsigned id);
};

int on_match(unsigned id, unsigned long long, unsigned long long, unsigned, void* ctx) {
    auto* m = static_cast<match_context*>(ctx);
    m->add(m->state, *m->rules, id);
    return 0;  // keep scanning: every rule may add its score
}

// Scans one whole unit (a header field, an envelope argument) with the
// worker's stream for that database: `^` and `$` anchor to the unit.
void scan_whole(const content_scan_state& ws, hs_stream_t* stream, match_context& mc,
                std::initializer_list<std::pair<const void*, size_t>> parts) {
    if (stream == nullptr) return;
    hs_reset_stream(stream, 0, ws.scratch.get(), nullptr, nullptr);
    for (const auto& [data, len] : parts)
        hs_scan_stream(stream, static_cast<const char*>(data), static_cast<unsigned>(len), 0, ws.scratch.get(),
                       on_match, &mc);
    hs_reset_stream(stream, 0, ws.scratch.get(), on_match, &mc);  // end-anchored matches
}

}  // namespace

content_scan_state* content_inspector::working_set(const compiled_policy& p) const {
    content_scan_states* all = p.scan_states();
    return all != nullptr ? all->for_worker(worker_id_) : nullptr;
}

// A new policy took over during the message (or the session, for envelope hits): the rule ids
// found so far index the old rule set and the body stream kept in the record belongs to the old
// database, which it cannot be brought back against. Inspection goes on under the new policy
// from here (the decoder and the fingerprint do not depend on it): hits and stream start afresh,
// counted.
// Without this, a message straddling a policy apply looked its old rule ids up in the new set.
void content_inspector::adopt(const compiled_policy& p, state& s) {
    if (s.generation == p.generation()) return;
    s.generation = p.generation();
    s.hits = rule_hits{};
    s.session_hits = rule_hits{};
    s.body_started = false;
    s.body_stream_len = 0;
    s.body_stream_lost = false;
    counters_.inspection.policy_restarts.add();
}

// The key's record, made (under p) if there is none and the table has room; an existing one
// adopted by p. nullptr: the table is full.
content_inspector::state* content_inspector::record(const compiled_policy& p, const flow_key& key) {
    if (state* s = table_->find(key)) {
        adopt(p, *s);
        return s;
    }
    state* s = table_->insert(key);
    if (s != nullptr) s->generation = p.generation();  // insert() value-initialises the rest
    return s;
}

// Streams of ws's body database are put away in a record as their bytes (as hs_copy_stream copies
// them) when they are flat and fit it; else compressed.
namespace {
bool parks_flat(const content_scan_state& ws) {
    return ws.body_flat_bytes != 0 && ws.body_flat_bytes <= inspection_body_stream_max;
}
}  // namespace

// Message s's open body stream in the worker: the one it had last if no other message has taken
// it since; else the least recently used one (a free one first), whose message's stream is put
// away into that message's record (park), with s's brought back into it (or opened, for its
// first body bytes). nullptr (counted) when Hyperscan fails: s's body is not scanned further.
content_scan_state::body_slot* content_inspector::open_body(content_scan_state& ws, state& s) {
    content_scan_state::body_slot* slot = &ws.body_slots[s.body_slot];
    if (slot->owner != &s || slot->owner_id != s.body_id) {
        for (auto& b : ws.body_slots)
            if (b.last_used < slot->last_used) slot = &b;
        if (park_body(ws, *slot)) counters_.inspection.body_evictions.add();
        hs_error_t rc = HS_SUCCESS;
        if (!s.body_started) {
            rc = hs_reset_stream(slot->stream.get(), 0, ws.scratch.get(), nullptr, nullptr);
        } else if (parks_flat(ws)) {
            std::memcpy(static_cast<void*>(slot->stream.get()), s.body_stream, ws.body_flat_bytes);  // as parked
        } else {
            rc = hs_reset_and_expand_stream(slot->stream.get(), reinterpret_cast<const char*>(s.body_stream),
                                            s.body_stream_len, ws.scratch.get(), nullptr, nullptr);
        }
        if (rc != HS_SUCCESS) {
            s.body_stream_lost = true;
            counters_.inspection.stream_errors.add();
            return nullptr;
        }
        s.body_started = true;
        s.body_slot = static_cast<uint8_t>(slot - ws.body_slots);
        slot->owner = &s;
        slot->owner_id = s.body_id;
    }
    slot->last_used = ++ws.body_clock;
    return slot;
}

// Keeps an open body stream in its message's own memory, and frees the slot. A record whose
// message has ended (its id changed, or it serves another message now) gets nothing. A stream
// larger than the record fails that message open (counted). True: a message's stream was put
// away (or lost), not a free slot or an ended message's.
bool content_inspector::park_body(const content_scan_state& ws, content_scan_state::body_slot& slot) {
    if (slot.owner == nullptr) return false;
    state& o = *static_cast<state*>(slot.owner);
    const uint64_t id = slot.owner_id;
    slot.release();
    if (o.body_id != id) return false;
    if (parks_flat(ws)) {  // its bytes, as they are
        std::memcpy(o.body_stream, static_cast<const void*>(slot.stream.get()), ws.body_flat_bytes);
        o.body_stream_len = static_cast<uint16_t>(ws.body_flat_bytes);
        return true;
    }
    size_t used = 0;
    if (hs_compress_stream(slot.stream.get(), reinterpret_cast<char*>(o.body_stream), sizeof o.body_stream, &used) !=
        HS_SUCCESS) {
        o.body_stream_lost = true;  // larger than the record holds: fail open, counted
        counters_.inspection.stream_overflow.add();
        return true;
    }
    o.body_stream_len = static_cast<uint16_t>(used);
    return true;
}

// Receives the decoder's output for one segment's worth of message bytes.
class content_inspector::sink : public mail_decoder_sink {
public:
    sink(content_inspector& ci, const compiled_policy& p, state& s) : ci_(ci), p_(p), s_(s) {}
    ~sink() { finish_body(); }

    void on_header(std::string_view name, const uint8_t* utf8, size_t len, bool field_end) override {
        if (s_.header_value_len == 0 && s_.header_name_len == 0) {
            const size_t n = std::min(name.size(), sizeof s_.header_name);
            std::memcpy(s_.header_name, name.data(), n);
            s_.header_name_len = static_cast<uint8_t>(n);
        }
        const size_t room = sizeof s_.header_value - s_.header_value_len;
        const size_t n = std::min(len, room);
        std::memcpy(s_.header_value + s_.header_value_len, utf8, n);
        s_.header_value_len = static_cast<uint16_t>(s_.header_value_len + n);
        if (field_end) {
            ci_.scan_header(p_, s_);
            s_.header_name_len = 0;
            s_.header_value_len = 0;
        }
    }

    void on_body(const uint8_t* utf8, size_t len) override {
        s_.fingerprint.feed(utf8, len);
        const content_rule_set* rules = p_.content_rules();
        content_scan_state* ws = ci_.working_set(p_);
        if (rules == nullptr || ws == nullptr || s_.body_stream_lost || !ws->body_slots[0].stream) return;
        match_context mc = context(*rules);
        if (slot_ == nullptr && (slot_ = ci_.open_body(*ws, s_)) == nullptr) return;
        hs_scan_stream(slot_->stream.get(), reinterpret_cast<const char*>(utf8), static_cast<unsigned>(len), 0,
                       ws->scratch.get(), on_match, &mc);
        ci_.counters_.inspection.body_bytes.add(len);
    }

    // The end of a segment. The stream stays open in the worker for the message's next segment
    // (it is put away into the record only when another message needs its slot) when its
    // whole state fits the record, so that putting it away later cannot fail where compressing it
    // now would not; else it is compressed into the record now (and may not fit: fail open).
    void finish_body() {
        if (slot_ == nullptr) return;
        if (p_.content_rules()->stream_size(content_db::body) > sizeof s_.body_stream)
            ci_.park_body(*ci_.working_set(p_), *slot_);
        slot_ = nullptr;
    }

    // End of the message: matches anchored at the end of the body; the slot is freed.
    void end_body() {
        const content_rule_set* rules = p_.content_rules();
        content_scan_state* ws = ci_.working_set(p_);
        if (rules == nullptr || ws == nullptr || s_.body_stream_lost || !s_.body_started) return;
        if (!ws->body_slots[0].stream) return;
        match_context mc = context(*rules);
        if (slot_ == nullptr && (slot_ = ci_.open_body(*ws, s_)) == nullptr) return;
        hs_reset_stream(slot_->stream.get(), 0, ws->scratch.get(), on_match, &mc);
        slot_->release();
        slot_ = nullptr;
    }

    match_context context(const content_rule_set& rules) { return {&rules, &s_, &add_rule}; }

    static void add_rule(void* st, const content_rule_set& rules, unsigned id) {
        rule_hits& s = static_cast<state*>(st)->hits;
        if (id < 64) {
            if (s.seen_low >> id & 1) return;
            s.seen_low |= uint64_t{1} << id;
        } else {
            for (unsigned i = 0; i < s.rule_count; ++i)
                if (s.rules[i] == id) return;
        }
        s.score += rules.rule(id).score;
        if (s.rule_count < inspection_max_rule_hits) s.rules[s.rule_count++] = static_cast<uint16_t>(id);
    }

private:
    content_inspector& ci_;
    const compiled_policy& p_;
    state& s_;
    content_scan_state::body_slot* slot_ = nullptr;  // s_'s open stream during this segment
};

content_inspector::content_inspector(unsigned worker_id, uint32_t capacity, campaign_table* campaigns,
                                     worker_counters& counters, const std::string& instance)
    : worker_id_(worker_id),
      campaigns_(campaigns),
      counters_(counters),
      table_(new bounded_table<flow_key, state>(("sk_inspect" + instance + "_" + std::to_string(worker_id)).c_str(), capacity)) {
    converters_.open_all();  // iconv_open allocates: never on the data path
}

content_inspector::~content_inspector() { delete table_; }

void content_inspector::scan_header(const compiled_policy& p, state& s) {
    counters_.inspection.header_fields.add();
    const std::string_view name(s.header_name, s.header_name_len);
    if (name == "from")
        s.from_mismatch = from_mismatch(s.sender_domain_hash,
                                        header_from_domain(std::string_view(
                                            reinterpret_cast<const char*>(s.header_value), s.header_value_len)));
    const content_rule_set* rules = p.content_rules();
    content_scan_state* ws = working_set(p);
    if (rules == nullptr || ws == nullptr) return;
    match_context mc{rules, &s, &sink::add_rule};
    scan_whole(*ws, ws->streams[static_cast<unsigned>(content_db::headers)].get(), mc,
               {{name.data(), name.size()}, {": ", 2}, {s.header_value, s.header_value_len}});
    const int h = rules->header_index(name);
    if (h >= 0)
        scan_whole(*ws, ws->header_streams[static_cast<unsigned>(h)].get(), mc, {{s.header_value, s.header_value_len}});
}

void content_inspector::scan_envelope(const compiled_policy& p, state& s, smtp_command cmd) {
    counters_.inspection.envelope_lines.add();
    const content_rule_set* rules = p.content_rules();
    content_scan_state* ws = working_set(p);
    match_context mc{rules, &s, &sink::add_rule};
    const char* verb = cmd == smtp_command::ehlo ? "EHLO " : cmd == smtp_command::helo ? "HELO "
                       : cmd == smtp_command::mail ? "MAIL " : "RCPT ";
    scan_whole(*ws, ws->streams[static_cast<unsigned>(content_db::envelope)].get(), mc,
               {{verb, 5}, {s.header_value, s.header_value_len}});
}

void content_inspector::envelope(const compiled_policy& p, const flow_key& key, smtp_command cmd,
                                 const uint8_t* data, size_t len, bool line_end, uint64_t now_ns) {
    if (!active(p)) return;
    const content_scan_state* ws = working_set(p);
    if (p.content_rules() == nullptr || ws == nullptr || !ws->streams[static_cast<unsigned>(content_db::envelope)])
        return;  // no envelope rules: no state
    // Full: fail open, the envelope is not scanned. Counted once per message, when
    // message_start cannot get a record either.
    state* s = record(p, key);
    if (s == nullptr) return;
    s->last_seen_ns = now_ns;
    if (!s->envelope_line_open) {  // the line's first bytes
        s->envelope_line_open = true;
        s->header_value_len = 0;
        if (cmd == smtp_command::ehlo || cmd == smtp_command::helo)
            s->session_hits = s->hits = rule_hits{};   // EHLO resets the session (RFC 5321 4.1.4)
        else if (cmd == smtp_command::mail)
            s->hits = s->session_hits;                 // a new transaction
    }
    // Arguments are at most 512 bytes by RFC 5321; the rest of a longer one is not scanned.
    const size_t n = std::min(len, sizeof s->header_value - s->header_value_len);
    if (n) std::memcpy(s->header_value + s->header_value_len, data, n);
    s->header_value_len = static_cast<uint16_t>(s->header_value_len + n);
    if (!line_end) return;
    scan_envelope(p, *s, cmd);
    s->envelope_line_open = false;
    s->header_value_len = 0;
    if (cmd == smtp_command::ehlo || cmd == smtp_command::helo) s->session_hits = s->hits;
}

void content_inspector::message_start(const compiled_policy& p, const flow_key& key, uint64_t now_ns,
                                      uint32_t sender_domain_hash) {
    if (!active(p)) return;
    state* s = record(p, key);
    if (s == nullptr) {
        counters_.inspection.table_full.add();  // fail open: this message is not inspected
        return;
    }
    // A state opened by the envelope keeps what the envelope matched (under this policy).
    const rule_hits hits = s->hits, session_hits = s->session_hits;
    *s = state{};
    s->generation = p.generation();
    s->body_id = ++last_body_id_;
    s->hits = hits;
    s->session_hits = session_hits;
    s->decoder.reset(p.inspection().max_body_bytes);
    s->last_seen_ns = now_ns;
    s->sender_domain_hash = sender_domain_hash;
    counters_.inspection.messages.add();
}

void content_inspector::content(const compiled_policy& p, const flow_key& key, const uint8_t* data, size_t len,
                                uint64_t now_ns) {
    if (!active(p)) return;
    state* s = table_->find(key);
    if (s == nullptr) return;
    adopt(p, *s);
    s->last_seen_ns = now_ns;
    sink out(*this, p, *s);
    s->decoder.feed(data, len, out, converters_);
}

message_verdict content_inspector::message_end(const compiled_policy& p, const flow_key& key,
                                               const message_context& ctx) {
    message_verdict v;
    if (!active(p)) return v;
    state* s = table_->find(key);
    const inspection_settings& in = p.inspection();
    if (s != nullptr) {
        adopt(p, *s);
        {
            sink out(*this, p, *s);
            s->decoder.finish(out, converters_);
            out.end_body();
        }
        v.score = s->hits.score;
        std::memcpy(v.rules, s->hits.rules, sizeof v.rules);
        v.rule_count = s->hits.rule_count;
        v.fingerprint = s->fingerprint.fingerprint();
        if (s->from_mismatch && in.from_mismatch) {
            v.score += in.from_mismatch;
            v.signals |= 1u << static_cast<unsigned>(sender_signal::from_mismatch);
        }
        const content_scan_state* ws = working_set(p);
        if (ws && ws->streams[static_cast<unsigned>(content_db::envelope)]) {
            s->hits = s->session_hits;   // the session goes on: its EHLO counts for the next message
        } else {
            table_->erase(key);
        }
    }
    auto signal = [&](bool fired, int32_t points, sender_signal which) {
        if (fired && points) {
            v.score += points;
            v.signals |= 1u << static_cast<unsigned>(which);
        }
    };
    signal(ctx.helo_ip_literal, in.ehlo_ip_literal, sender_signal::ehlo_ip_literal);
    signal(ctx.helo_bare_ip, in.ehlo_bare_ip, sender_signal::ehlo_bare_ip);
    signal(ctx.helo_not_fqdn, in.ehlo_not_fqdn, sender_signal::ehlo_not_fqdn);
    signal(in.sender_domains.max && ctx.distinct_sender_domains > in.sender_domains.max, in.sender_domains.score,
           sender_signal::sender_domains);
    if (campaigns_ != nullptr && v.fingerprint != 0 && (in.campaign_recipients.max || in.campaign_subscribers.max)) {
        const uint64_t window = in.campaign_subscribers.max ? in.campaign_subscribers.window_ns
                                                            : in.campaign_recipients.window_ns;
        const campaign_counts c = campaigns_->observe(v.fingerprint, ctx.subscriber_hash, ctx.recipients, ctx.now_ns, window);
        if (in.campaign_recipients.max && c.subscriber_recipients > in.campaign_recipients.max) {
            v.score += in.campaign_recipients.score;
            counters_.inspection.campaign_recipients.add();
        }
        if (in.campaign_subscribers.max && c.subscribers > in.campaign_subscribers.max) {
            v.score += in.campaign_subscribers.score;
            counters_.inspection.campaign_subscribers.add();
        }
    }
    for (unsigned i = in.message_action_count; i-- > 0;)
        if (v.score >= in.message_actions[i].score) {
            v.action = in.message_actions[i].action;
            v.act = true;
            break;
        }
    // A rule's own action applies when it matched, whatever the score.
    if (const content_rule_set* rules = p.content_rules())
        for (unsigned i = 0; i < v.rule_count; ++i) {
            const content_action ra = rules->rule(v.rules[i]).action;
            if (ra == content_action::none) continue;
            const auto a = static_cast<score_action>(static_cast<unsigned>(ra) - 1);  // same order, no "none"
            if (!v.act || static_cast<unsigned>(a) > static_cast<unsigned>(v.action)) v.action = a;
            v.act = true;
        }
    if (v.rule_count) counters_.inspection.rule_matches.add(v.rule_count);
    for (unsigned i = 0; i < v.rule_count; ++i) (*counters_.rule_matches)[v.rules[i]].add();
    return v;
}

void content_inspector::abandon(const flow_key& key) { table_->erase(key); }

void content_inspector::sweep(uint64_t now_ns, uint64_t idle_ns) {
    table_->sweep(16, [&](const state& s) { return s.last_seen_ns + idle_ns < now_ns; });
}

}  // namespace sekisho
