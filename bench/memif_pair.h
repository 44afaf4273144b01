// Two DPDK processes joined by real poll-mode drivers: a frame generator and
// the forwarder under test, over two net_memif links (the access side and the
// core side of a bump in the wire), each process on its own lcore.
//
//   generator (child)                     forwarder (this process)
//   port 0  --- memif id 0 (access) --->  access port --+ turn()
//   port 1  <-- memif id 1 (core) -------  core port  <-+
//   port 0  <-- injected replies (RSTs) -- access port
//
// The generator is forked before this process starts its EAL and runs its own
// (--no-huge, its own --file-prefix, client role); this process's EAL takes
// forwarder_eal_args() (server role, a --file-prefix of its own, not
// --no-shconf: net_memif needs the multi-process channel). The memif socket
// lives in a temporary directory. Needs no hugepages (run as root here).
//
// A run: the generator sends `passes` times the chosen set of frames (retrying
// what its TX ring refuses, so exactly passes * set size leave), while it
// drains and counts what comes back on both ports. This process calls `turn`
// (one poll of both ports: receive, process, transmit; returns the frames
// received) until every frame sent was received, timing each turn with the
// TSC; the cost of the forwarder is the cycles of the turns that received
// frames divided by the frames received, as dpdk-testpmd's
// --record-core-cycles counts, leaving out (and counting) the turns that took
// longer than preempted_turn: the machine's other work had the CPU. The
// generator should keep the forwarder busy: forwarder_result::busy_share()
// says whether it did. The frame source is pluggable: a hook may
// rewrite a set's mbufs (in the generator) before each pass, and a set may go
// out both ways, bursts in order (generator_frames::burst_sides).
//
// Threading: one forwarder thread (the EAL main lcore) calls everything here.
// The destructor stops the generator (by its PID: asked to quit, killed after
// a timeout) and removes the socket and the temporary directory, also when a
// run threw. The child dies with this process (PR_SET_PDEATHSIG).
#pragma once

#include <rte_cycles.h>

#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_support.h"
#include "dataplane/pipeline.h"
#include "dataplane/worker_counters.h"
#include "tests/support/frame_builder.h"

struct rte_mbuf;
struct rte_mempool;

namespace sekisho::bench {

// What the generator sends. `sets[i]` is one set of frames; `before_pass`, if
// set, is called in the generator before each pass over a set with that set's
// mbufs (in order), which it may rewrite in place (same length or shorter).
// `burst_sides[i]`, if given and not empty, sends set i in both directions: one
// entry per burst of burst_size frames (the set a multiple of it), 0 onto the
// access link, 1 onto the core link; such a set is sent in order across the
// links: a burst leaves only once every frame sent before it has come back
// (one burst in flight), so the forwarder receives the bursts in the set's
// order, as stateful traffic needs (a reply after its command). A set without
// sides goes onto the access link, bursts back to back.
struct generator_frames {
    std::vector<std::vector<test::bytes>> sets;
    std::function<void(unsigned set, uint64_t pass, rte_mbuf* const* mbufs, size_t n)> before_pass;
    std::vector<std::vector<uint8_t>> burst_sides;
};

// The forwarder's side of one run.
struct forwarder_result {
    uint64_t packets = 0;       // frames received by the forwarder
    uint64_t busy_cycles = 0;   // TSC cycles of the turns that received frames
    uint64_t span_cycles = 0;   // from the first turn that received a frame to the last one
    uint64_t aside_cycles = 0;  // within the span, the control thread's work done in between (not counted)
    uint64_t busy_turns = 0, idle_turns = 0;  // turns within the span
    // Turns that received frames but took longer than memif_pair::preempted_turn: the forwarder
    // lost its CPU meanwhile (the machine's other work; a turn of 32 frames takes a few
    // microseconds). Their cycles and frames stay out of cycles_per_packet(); they are counted.
    uint64_t preempted_turns = 0, preempted_cycles = 0, preempted_packets = 0;
    // TSC cycles per frame over the turns that received frames and were not preempted.
    double cycles_per_packet() const {
        const uint64_t n = packets - preempted_packets;
        return n ? static_cast<double>(busy_cycles - preempted_cycles) / static_cast<double>(n) : 0;
    }
    // Per turn that received frames and was not preempted: its cycles per frame. The median is
    // what a turn costs when neither the generator nor the machine's other work got in the way
    // (on a shared machine the mean also carries cache refills after another process ran).
    std::vector<float> turn_costs;
    double median_turn_cost() const {
        if (turn_costs.empty()) return 0;
        std::vector<float> v = turn_costs;
        std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
        return v[v.size() / 2];
    }
    // Adds another run's turns (the runs of one variant within a repetition).
    void merge(const forwarder_result& o) {
        packets += o.packets;
        busy_cycles += o.busy_cycles;
        span_cycles += o.span_cycles;
        aside_cycles += o.aside_cycles;
        busy_turns += o.busy_turns;
        idle_turns += o.idle_turns;
        preempted_turns += o.preempted_turns;
        preempted_cycles += o.preempted_cycles;
        preempted_packets += o.preempted_packets;
        turn_costs.insert(turn_costs.end(), o.turn_costs.begin(), o.turn_costs.end());
    }
    // The same over every turn that received frames, preempted or not.
    double raw_cycles_per_packet() const {
        return packets ? static_cast<double>(busy_cycles) / static_cast<double>(packets) : 0;
    }
    // Share of the forwarder's time spent in turns that received frames: near 1 when the
    // generator keeps it busy.
    double busy_share() const {
        const uint64_t own = span_cycles - aside_cycles;
        return own ? static_cast<double>(busy_cycles) / static_cast<double>(own) : 0;
    }
    double mpps(uint64_t hz) const {
        const uint64_t own = span_cycles - aside_cycles;
        return own ? static_cast<double>(packets) * static_cast<double>(hz) / static_cast<double>(own) / 1e6 : 0;
    }
    double packets_per_busy_turn() const {
        return busy_turns ? static_cast<double>(packets) / static_cast<double>(busy_turns) : 0;
    }
};

// The generator's side of one run.
struct generator_report {
    uint64_t sent = 0;            // frames its TX took (all it had to send)
    uint64_t tx_refused = 0;      // frames its TX refused for a full ring, sent again later (none lost)
    uint64_t back[2] = {};        // frames received back on the access (0) and core (1) links
    uint64_t back_bytes[2] = {};
};

// What a forwarder's ports transmitted (access 0, core 1), from its counters.
struct tx_view {
    uint64_t tx[2], bytes[2], drops[2];
};
tx_view read_tx(const worker_counters& c);

// One run's figures with what the generator and the forwarder's TX rings reported.
struct pmd_run {
    forwarder_result r;
    generator_report g;
    uint64_t tx_drops = 0;

    void merge(const pmd_run& o) {
        r.merge(o.r);
        g.sent += o.g.sent;
        g.tx_refused += o.g.tx_refused;
        tx_drops += o.tx_drops;
    }
};

// One forwarder's figures, one per repetition.
struct pmd_variant {
    std::vector<double> cpp, median_turn, mpps;
};

// Over a bench's memif runs: each forwarder's figures per repetition (add) and the totals.
struct pmd_totals {
    double min_busy = 1, min_burst = burst_size;
    uint64_t gen_refused = 0, tx_drops = 0, preempted_turns = 0, busy_turns = 0;

    void add(const pmd_run& p, pmd_variant& v, uint64_t hz) {
        v.cpp.push_back(p.r.cycles_per_packet());
        v.median_turn.push_back(p.r.median_turn_cost());
        v.mpps.push_back(p.r.mpps(hz));
        preempted_turns += p.r.preempted_turns;
        busy_turns += p.r.busy_turns;
        min_busy = std::min(min_busy, p.r.busy_share());
        min_burst = std::min(min_burst, p.r.packets_per_busy_turn());
        gen_refused += p.g.tx_refused;
        tx_drops += p.tx_drops;
    }
};

// One line of a run's figures, labelled `what`.
void print_pmd_run(const char* what, const pmd_run& p, uint64_t hz);

struct memif_control;  // the shared page between the two processes

class memif_pair {
public:
    // Before rte_eal_init in this process: makes the temporary directory and
    // forks the generator, which runs its EAL on `generator_lcore` with
    // `generator_memory_mb` of --no-huge memory and waits for start_ports().
    // Throws std::runtime_error when the directory or the fork fails.
    memif_pair(generator_frames frames, unsigned generator_lcore, unsigned generator_memory_mb);
    ~memif_pair();
    memif_pair(const memif_pair&) = delete;
    memif_pair& operator=(const memif_pair&) = delete;

    // This process's EAL arguments (file prefix and the two server vdevs), to
    // add to --no-huge, -m, -l and the like.
    std::vector<std::string> forwarder_eal_args() const;

    // After rte_eal_init: starts the access and core ports (one queue each,
    // RX mbufs from `rx_pool`), lets the generator connect, and waits until
    // both links are up and the generator has its frames ready. Throws, with
    // the generator's error if it failed, after `timeout_s`.
    void start_ports(rte_mempool* rx_pool, double timeout_s = 20);
    uint16_t access_port() const { return port_[0]; }
    uint16_t core_port() const { return port_[1]; }

    // The bench's own io forwarder, the baseline: one poll of both ports,
    // rx_burst -> tx_burst to the other port (transmit(): what TX refuses is
    // freed and counted in counters.port[side].tx_full_drops). Returns the
    // frames received.
    unsigned io_turn(worker_counters& counters);

    // One run over set `set`, `passes` times. Calls turn() (-> frames
    // received) until every frame the generator sends has been received;
    // aside() (the control thread's share of the work, e.g. draining the event
    // ring) after every 64th turn that received frames, its time kept out of
    // the figures. Throws if nothing arrives for `stall_s` seconds.
    template <class Turn, class Aside>
    forwarder_result run(unsigned set, uint64_t passes, Turn&& turn, Aside&& aside, double stall_s = 5);

    // After a run: waits until the generator has received back `expect_access`
    // and `expect_core` frames (what the forwarder's TX took), or until
    // nothing more arrived for a while, and returns its counts.
    generator_report collect(uint64_t expect_access, uint64_t expect_core);

    // A turn longer than this (seconds) was preempted (forwarder_result).
    static constexpr double preempted_turn = 50e-6;

    size_t set_size(unsigned set) const { return set_sizes_.at(set); }

    // Before rte_eal_cleanup: stops the generator and closes this process's
    // ports. Idempotent; the destructor does the rest.
    void shutdown();

private:
    void post_run(unsigned set, uint64_t passes);
    [[noreturn]] void generator_failed(const std::string& what);
    void stop_generator();
    void remove_runtime_dir();

    std::string dir_, socket_, prefix_, runtime_dir_;
    std::vector<size_t> set_sizes_;
    memif_control* control_ = nullptr;
    pid_t child_ = -1;
    uint16_t port_[2] = {0, 0};
    bool ports_started_ = false;
    uint64_t seq_ = 0;
};

template <class Turn, class Aside>
forwarder_result memif_pair::run(unsigned set, uint64_t passes, Turn&& turn, Aside&& aside, double stall_s) {
    const uint64_t expect = passes * set_size(set);
    const uint64_t stall = static_cast<uint64_t>(stall_s * static_cast<double>(rte_get_tsc_hz()));
    const uint64_t preempted = static_cast<uint64_t>(preempted_turn * static_cast<double>(rte_get_tsc_hz()));
    post_run(set, passes);
    forwarder_result r;
    r.turn_costs.reserve(expect / 16 + 16);
    uint64_t first = 0, last = rte_rdtsc(), since_aside = 0;
    while (r.packets < expect) {
        const uint64_t t0 = rte_rdtsc();
        const unsigned n = turn();
        const uint64_t t1 = rte_rdtsc();
        if (n == 0) {
            r.idle_turns += first != 0;
            if (t1 - last > stall) generator_failed("no frame for " + std::to_string(static_cast<int>(stall_s)) + " s after " +
                                                    std::to_string(r.packets) + " of " + std::to_string(expect));
            continue;
        }
        if (first == 0) first = t0;
        r.busy_cycles += t1 - t0;
        if (t1 - t0 > preempted) {
            ++r.preempted_turns;
            r.preempted_cycles += t1 - t0;
            r.preempted_packets += n;
        } else {
            r.turn_costs.push_back(static_cast<float>(t1 - t0) / static_cast<float>(n));
        }
        r.packets += n;
        ++r.busy_turns;
        last = t1;
        if (++since_aside == 64) {
            since_aside = 0;
            aside();
            const uint64_t t2 = rte_rdtsc();
            r.aside_cycles += t2 - t1;
            last = t2;
        }
    }
    r.span_cycles = last - first;
    if (r.packets != expect)
        throw std::runtime_error("memif run: the forwarder received " + std::to_string(r.packets) + " frames, " +
                                 std::to_string(expect) + " were sent");
    return r;
}

// Starts the pair's ports with an RX pool of their own (8191 mbufs, on transparent huge pages
// if `thp` and granted), returns what `measure()` returns, then shuts the pair down and frees
// the pool, also when `measure` threw. Once per pair (shutdown stops the generator).
template <class Measure>
auto measure_on_ports(memif_pair& pair, bool thp, Measure&& measure) -> decltype(measure()) {
    thp_region rx_mem;
    bool rx_thp = false;
    rte_mempool* rx_pool = frame_pool("bench_rx", 8191, thp, rx_mem, rx_thp);
    try {
        pair.start_ports(rx_pool);
        auto r = measure();
        pair.shutdown();
        rte_mempool_free(rx_pool);
        return r;
    } catch (...) {
        pair.shutdown();
        rte_mempool_free(rx_pool);
        throw;
    }
}

}  // namespace sekisho::bench
