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
                          block_reason reason, const rte_mbuf* m) {
    if (events_ == nullptr) return;
    event_record e{};
    e.time_ns = clock_.now_ns(m);
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

void pipeline::process(const compiled_policy& policy, ingress in, rte_mbuf** pkts, uint16_t n,
                       burst_output& out) {
    constexpr uint16_t prefetch_ahead = 3;
    port_counters& pc = counters_.port[static_cast<unsigned>(in)];
    rte_mbuf* dropped[burst_size];
    uint16_t n_dropped = 0;
    uint64_t rx_bytes = 0;
    uint16_t forwarded = 0;   // received frames sent on (out.forward also holds injections)
    const bool enforce = policy.mode() == op25b_mode::enforce;

    for (uint16_t i = 0; i < n && i < prefetch_ahead; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));

    for (uint16_t i = 0; i < n; ++i) {
        if (i + prefetch_ahead < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + prefetch_ahead], void*));
        rte_mbuf* m = pkts[i];
        rx_bytes += m->pkt_len;

        // Headers are read from the first segment only; a frame whose headers
        // spill into a second segment parses as truncated.
        parsed_packet p;
        parse_frame(rte_pktmbuf_mtod(m, const uint8_t*), m->data_len, p);
        if (p.kind == frame_kind::non_ip) pc.non_ip.add();
        if (p.fragment) pc.fragments.add();

        const op25b_outcome outcome = classify_op25b(p, in, policy);
        if (p.kind == frame_kind::malformed) {
            pc.malformed.add();
            counters_.malformed_by_reason[static_cast<unsigned>(p.error)].add();
        }
        switch (outcome) {
        case op25b_outcome::pass:
            if (mail_ != nullptr && mail_tracker::wants(p, in, policy) &&
                !mail_->handle(policy, p, in, clock_.now_ns(m), out)) {
                pc.limited.add();
                dropped[n_dropped++] = m;
                continue;
            }
            out.forward[out.n_forward++] = m;
            ++forwarded;
            continue;
        case op25b_outcome::drop_malformed:
            if (!enforce) {  // monitor mode changes no traffic at all
                out.forward[out.n_forward++] = m;
                ++forwarded;
                continue;
            }
            pc.malformed_dropped.add();
            dropped[n_dropped++] = m;
            continue;
        case op25b_outcome::block_port:
        case op25b_outcome::block_incomplete_fragment:
            break;
        }

        const block_reason reason = outcome == op25b_outcome::block_port
                                        ? block_reason::op25b_port
                                        : block_reason::op25b_incomplete_fragment;
        (*counters_.blocked_by_dst_port)[p.dst_port].add();
        emit_event(policy, p, in, reason, m);
        if (!enforce) {
            pc.monitored.add();
            // The rollout question is which connections would be blocked: a flag test per frame.
            if ((p.tcp_flags & (tcp_flag::syn | tcp_flag::ack)) == tcp_flag::syn) pc.monitored_connections.add();
            counters_.monitored_by_reason[static_cast<unsigned>(reason)].add();
            out.forward[out.n_forward++] = m;
            ++forwarded;
            continue;
        }
        pc.blocked.add();
        counters_.blocked_by_reason[static_cast<unsigned>(reason)].add();
        if (policy.action() == op25b_action::reset) send_reset(p, in, out);
        dropped[n_dropped++] = m;
    }

    if (mail_ != nullptr && n) mail_->sweep(policy, clock_.now_ns(pkts[n - 1]));
    pc.rx_packets.add(n);
    pc.rx_bytes.add(rx_bytes);
    pc.forwarded.add(forwarded);
    if (n_dropped) rte_pktmbuf_free_bulk(dropped, n_dropped);
}

}  // namespace sekisho
