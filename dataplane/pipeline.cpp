#include "dataplane/pipeline.h"

#include <rte_cycles.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_prefetch.h>

#include <cstring>
#include <ctime>

#include "dataplane/limits/mail_tracker.h"

namespace sekisho {

packet_clock packet_clock::live() {
    packet_clock c;
    c.tsc_hz = rte_get_tsc_hz();
    c.tsc_base = rte_rdtsc();
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    c.wall_base_ns = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
    return c;
}

packet_clock packet_clock::from_packet_timestamps() {
    packet_clock c = live();
    int offset = -1;
    uint64_t flag = 0;
    if (rte_mbuf_dyn_rx_timestamp_register(&offset, &flag) == 0) {
        c.timestamp_offset = offset;
        c.timestamp_flag = flag;
    }
    return c;
}

uint64_t packet_clock::now_ns(const rte_mbuf* m) const {
    if (timestamp_offset >= 0 && (m->ol_flags & timestamp_flag))
        return *RTE_MBUF_DYNFIELD(m, timestamp_offset, const rte_mbuf_timestamp_t*) * 1000;
    const uint64_t cycles = rte_rdtsc() - tsc_base;
    return wall_base_ns + cycles / tsc_hz * 1000000000ull + cycles % tsc_hz * 1000000000ull / tsc_hz;
}

bool segment_injector::inject(const parsed_packet& p, ingress in, const tcp_segment_spec& spec, burst_output& out) {
    return queue(p, in, &spec, out);
}

bool segment_injector::inject_reset(const parsed_packet& p, ingress in, burst_output& out) {
    return queue(p, in, nullptr, out);
}

// `spec` null: the RST answering p. The mbuf is taken before the frame is
// built: a segment that cannot be built gives it back.
bool segment_injector::queue(const parsed_packet& p, ingress in, const tcp_segment_spec* spec, burst_output& out) {
    const bool back = spec == nullptr || spec->to_sender;
    rte_mbuf** list = back ? out.reply : out.forward;
    uint16_t& n = back ? out.n_reply : out.n_forward;
    if (n >= burst_output_capacity) return false;
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    if (m == nullptr) {
        const ingress leaving = back ? in : in == ingress::access ? ingress::core : ingress::access;
        counters_.port[static_cast<unsigned>(leaving)].reset_failures.add();
        return false;
    }
    uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
    const uint16_t len = spec ? build_tcp_segment(p, *spec, frame) : build_tcp_reset(p, frame);
    if (len == 0) {
        rte_pktmbuf_free(m);
        return false;
    }
    m->data_len = len;
    m->pkt_len = len;
    list[n++] = m;
    return true;
}

pipeline::pipeline(unsigned worker_id, rte_mempool* reply_pool, worker_counters& counters,
                   event_ring* events, const packet_clock& clock, mail_tracker* mail)
    : worker_id_(worker_id), injector_(reply_pool, counters), counters_(counters), events_(events),
      clock_(clock), mail_(mail) {}

void pipeline::emit_event(const compiled_policy& policy, const parsed_packet& p, ingress in,
                          block_reason reason, uint64_t now_ns) {
    if (events_ == nullptr) return;
    event_record e{};
    e.time_ns = now_ns;
    e.generation = policy.generation();
    e.type = policy.mode() == op25b_mode::enforce ? event_type::op25b_block : event_type::op25b_monitor;
    e.reason = static_cast<uint8_t>(reason);
    e.ip_version = p.ip_version;
    e.ingress = static_cast<uint8_t>(in);
    e.action = static_cast<uint8_t>(policy.action());
    e.worker = static_cast<uint8_t>(worker_id_);
    e.tcp_flags = p.tcp_flags;
    e.src_port = p.src_port;
    e.dst_port = p.dst_port;
    if (p.ip_version == 4) {
        std::memcpy(e.src, p.frame + p.l3_offset + 12, 4);
        std::memcpy(e.dst, p.frame + p.l3_offset + 16, 4);
    } else {
        std::memcpy(e.src, p.src6(), 16);
        std::memcpy(e.dst, p.dst6(), 16);
    }
    if (events_->push(e))
        counters_.events_emitted.add();
    else
        counters_.events_ring_full.add();
}

void pipeline::send_reset(const parsed_packet& p, ingress in, burst_output& out) {
    if (injector_.inject_reset(p, in, out)) counters_.port[static_cast<unsigned>(in)].resets_sent.add();
}

// One burst's running totals, and the frames it frees at the end.
struct pipeline::burst_tally {
    rte_mbuf* dropped[burst_size];
    uint16_t n_dropped = 0;
    uint16_t forwarded = 0;   // received frames sent on (out.forward also holds injections)
    uint64_t rx_bytes = 0;
    uint64_t now_ns = 0;      // the burst's "now", read once (live clock)
    bool have_now = false;
};

// Live, "now" is read once per burst (a TSC read and a division per frame cost
// more than the burst's frames are apart); from a capture, each frame's own
// timestamp.
inline uint64_t pipeline::now_of(burst_tally& t, const rte_mbuf* m) const {
    if (clock_.timestamp_offset >= 0) return clock_.now_ns(m);
    if (!t.have_now) {
        t.now_ns = clock_.now_ns(m);
        t.have_now = true;
    }
    return t.now_ns;
}

// Parses and classifies one frame, counting what the parse says.
__rte_always_inline op25b_outcome pipeline::classify(const compiled_policy& policy, ingress in, rte_mbuf* m, parsed_packet& p,
                                        burst_tally& t) {
    port_counters& pc = counters_.port[static_cast<unsigned>(in)];
    t.rx_bytes += m->pkt_len;
    // Headers are read from the first segment only; a frame whose headers
    // spill into a second segment parses as truncated.
    parse_frame(rte_pktmbuf_mtod(m, const uint8_t*), m->data_len, p);
    if (p.kind == frame_kind::non_ip) pc.non_ip.add();
    if (p.fragment) pc.fragments.add();
    const op25b_outcome outcome = classify_op25b(p, in, policy);
    if (p.kind == frame_kind::malformed) {
        pc.malformed.add();
        counters_.malformed_by_reason[static_cast<unsigned>(p.error)].add();
    }
    return outcome;
}

// Acts on one classified frame: forwards it, hands it to the mail tracker
// (`mail_index`: its index in a burst the tracker prepared; -1: not the
// tracker's), or blocks it.
__rte_always_inline void pipeline::act(const compiled_policy& policy, ingress in, rte_mbuf* m, const parsed_packet& p,
                          op25b_outcome outcome, int mail_index, burst_tally& t, burst_output& out) {
    port_counters& pc = counters_.port[static_cast<unsigned>(in)];
    const bool enforce = policy.mode() == op25b_mode::enforce;
    switch (outcome) {
    case op25b_outcome::pass:
        if (mail_index >= 0 &&
            !mail_->handle(policy, p, in, now_of(t, m), out, static_cast<uint16_t>(mail_index))) {
            pc.limited.add();
            t.dropped[t.n_dropped++] = m;
            return;
        }
        out.forward[out.n_forward++] = m;
        ++t.forwarded;
        return;
    case op25b_outcome::drop_malformed:
        if (!enforce) {  // monitor mode changes no traffic at all
            out.forward[out.n_forward++] = m;
            ++t.forwarded;
            return;
        }
        pc.malformed_dropped.add();
        t.dropped[t.n_dropped++] = m;
        return;
    case op25b_outcome::block_port:
    case op25b_outcome::block_incomplete_fragment:
        break;
    }

    const block_reason reason =
        outcome == op25b_outcome::block_port ? block_reason::op25b_port : block_reason::op25b_incomplete_fragment;
    (*counters_.blocked_by_dst_port)[p.dst_port].add();
    emit_event(policy, p, in, reason, now_of(t, m));
    if (!enforce) {
        pc.monitored.add();
        // The rollout question is which connections would be blocked: a flag test per frame.
        if ((p.tcp_flags & (tcp_flag::syn | tcp_flag::ack)) == tcp_flag::syn) pc.monitored_connections.add();
        counters_.monitored_by_reason[static_cast<unsigned>(reason)].add();
        out.forward[out.n_forward++] = m;
        ++t.forwarded;
        return;
    }
    pc.blocked.add();
    counters_.blocked_by_reason[static_cast<unsigned>(reason)].add();
    if (policy.action() == op25b_action::reset) send_reset(p, in, out);
    t.dropped[t.n_dropped++] = m;
}

void pipeline::process(const compiled_policy& policy, ingress in, rte_mbuf** pkts, uint16_t n,
                       burst_output& out) {
    constexpr uint16_t prefetch_ahead = 3;
    if (n > burst_size) n = burst_size;
    burst_tally t;
    for (uint16_t i = 0; i < n && i < prefetch_ahead; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));

    // Frames are classified and acted on in one go, up to the first one for
    // the mail tracker (a burst without mail, or a gateway without tracking,
    // never stops). From that frame on, pass 1 classifies the rest of the
    // burst and marks the tracker's frames, the tracker looks up all their
    // flows at once (prepare), and pass 2 acts on those frames in the order
    // received.
    // parse_frame() sets every field: the deferred parses need no initialising first.
    union unset_parse {
        unset_parse() {}
        parsed_packet p;
    };
    unset_parse parsed[burst_size];
    op25b_outcome outcome[burst_size];
    uint16_t mail[burst_size];   // the tracker's frames, by index
    uint16_t n_mail = 0;
    uint16_t i = 0;
    for (; i < n; ++i) {
        if (i + prefetch_ahead < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + prefetch_ahead], void*));
        parsed_packet p;
        const op25b_outcome o = classify(policy, in, pkts[i], p, t);
        if (mail_ != nullptr && o == op25b_outcome::pass && mail_tracker::wants(p, in, policy)) {
            parsed[i].p = p;
            outcome[i] = o;
            mail[n_mail++] = i;
            break;
        }
        act(policy, in, pkts[i], p, o, -1, t, out);
    }
    if (n_mail) {
        const uint16_t deferred = i;
        for (++i; i < n; ++i) {
            if (i + prefetch_ahead < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + prefetch_ahead], void*));
            outcome[i] = classify(policy, in, pkts[i], parsed[i].p, t);
            if (outcome[i] == op25b_outcome::pass && mail_tracker::wants(parsed[i].p, in, policy)) mail[n_mail++] = i;
        }
        const parsed_packet* frames[burst_size];
        for (uint16_t j = 0; j < n_mail; ++j) frames[j] = &parsed[mail[j]].p;
        mail_->prepare(policy, in, frames, n_mail);
        for (uint16_t k = deferred, next = 0; k < n; ++k) {
            const bool mine = next < n_mail && mail[next] == k;
            act(policy, in, pkts[k], parsed[k].p, outcome[k], mine ? next++ : -1, t, out);
        }
    }
    if (mail_ != nullptr && n) mail_->sweep(policy, now_of(t, pkts[n - 1]));

    port_counters& pc = counters_.port[static_cast<unsigned>(in)];
    pc.rx_packets.add(n);
    pc.rx_bytes.add(t.rx_bytes);
    pc.forwarded.add(t.forwarded);
    if (t.n_dropped) rte_pktmbuf_free_bulk(t.dropped, t.n_dropped);
}

}  // namespace sekisho
