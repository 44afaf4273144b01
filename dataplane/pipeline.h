// The per-worker packet pipeline: parse -> classify -> act, one burst at a time.
//
// The same code runs in live mode (worker.cpp, bursts from NIC queues), in
// replay (backends/dpdk/replay.cpp, bursts from a capture through net_pcap) and in
// the benchmark (pre-built mbufs in memory). It never locks, never allocates
// from the heap, never makes a system call: the only allocation is an mbuf
// from the worker's pool for an injected segment (segment_injector).
#pragma once

#include <cstdint>

#include "dataplane/compiled_policy.h"
#include "dataplane/event_ring.h"
#include "dataplane/net/tcp_segment.h"
#include "dataplane/op25b_classifier.h"
#include "dataplane/worker_counters.h"

struct rte_mbuf;
struct rte_mempool;

namespace sekisho {

constexpr uint16_t burst_size = 32;
// Each received frame yields at most itself plus two injected segments (e.g.
// a 421 to the client and an RST to the server), one on each list.
constexpr uint16_t burst_output_capacity = 2 * burst_size;

struct burst_output {
    rte_mbuf* forward[burst_output_capacity];   // to the other port (passed frames, injections)
    uint16_t n_forward = 0;
    rte_mbuf* reply[burst_output_capacity];     // injected segments, back out of the ingress port
    uint16_t n_reply = 0;
};

// Puts the segments a worker injects (OP25B's resets, the mail tracker's
// resets and 421 replies) into mbufs from the worker's pool and onto a
// burst_output: the one place injected frames are made, whoever asks.
//
// A segment back to the sender of the frame it answers (spec.to_sender) goes
// on out.reply and leaves through the port that frame came in on; a segment
// onward goes on out.forward and leaves through the other port. When the pool
// has no mbuf the segment is lost and counted as reset_failures of the port it
// would have left through. The pool's mbufs hold the frame in their first
// segment (tcp_segment_max_header plus a payload of a few dozen bytes: any
// pktmbuf pool's data room). One per worker (the counters are the worker's);
// no locks.
class segment_injector {
public:
    segment_injector(rte_mempool* pool, worker_counters& counters) : pool_(pool), counters_(counters) {}

    // The segment `spec` describes, in the connection of p (received on `in`).
    // Returns false when nothing was queued: no mbuf (counted), p not a
    // complete TCP segment, or the list full (it cannot be: a list holds
    // burst_output_capacity, and a received frame adds at most one segment
    // to each).
    bool inject(const parsed_packet& p, ingress in, const tcp_segment_spec& spec, burst_output& out);
    // The RST answering p itself (build_tcp_reset), back out of `in`; none
    // when p is a reset or not a complete TCP segment.
    bool inject_reset(const parsed_packet& p, ingress in, burst_output& out);

private:
    bool queue(const parsed_packet& p, ingress in, const tcp_segment_spec* spec, burst_output& out);

    rte_mempool* pool_;
    worker_counters& counters_;
};

class mail_tracker;

// Where "now" comes from. In replay the capture's timestamps are the clock, so
// time-based decisions replay deterministically; live, the TSC.
struct packet_clock {
    int timestamp_offset = -1;   // mbuf dynfield (microseconds, net_pcap); -1: live
    uint64_t timestamp_flag = 0;
    uint64_t tsc_hz = 1;
    uint64_t tsc_base = 0;
    uint64_t wall_base_ns = 0;

    static packet_clock live();
    static packet_clock from_packet_timestamps();  // call after rte_eal_init
    uint64_t now_ns(const rte_mbuf* m) const;
};

class pipeline {
public:
    // Injected segments come from `reply_pool`.
    pipeline(unsigned worker_id, rte_mempool* reply_pool, worker_counters& counters,
             event_ring* events, const packet_clock& clock, mail_tracker* mail = nullptr);

    // Judges `n` (<= burst_size) frames received on `in`. Frames that pass go
    // to out.forward, RSTs to out.reply; frames that do not pass are freed.
    void process(const compiled_policy& policy, ingress in, rte_mbuf** pkts, uint16_t n,
                 burst_output& out);

private:
    struct burst_tally;
    uint64_t now_of(burst_tally& t, const rte_mbuf* m) const;
    op25b_outcome classify(const compiled_policy& policy, ingress in, rte_mbuf* m, parsed_packet& p, burst_tally& t);
    void act(const compiled_policy& policy, ingress in, rte_mbuf* m, const parsed_packet& p, op25b_outcome outcome,
             int mail_index, burst_tally& t, burst_output& out);
    void emit_event(const compiled_policy& policy, const parsed_packet& p, ingress in,
                    block_reason reason, uint64_t now_ns);
    void send_reset(const parsed_packet& p, ingress in, burst_output& out);

    unsigned worker_id_;
    segment_injector injector_;
    worker_counters& counters_;
    event_ring* events_;
    packet_clock clock_;
    mail_tracker* mail_;
};

}  // namespace sekisho
