#include "memif_pair.h"

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>
#include <thread>

#include "bench_support.h"
#include "dataplane/ports.h"

namespace sekisho::bench {

// The page both processes share (MAP_SHARED, made before the fork). The
// forwarder writes a run's parameters and then publishes its sequence number
// (release); the generator answers with done_seq after filling `report`.
struct memif_control {
    std::atomic<uint32_t> server_up{0};  // forwarder: its ports exist, connect
    std::atomic<uint32_t> ready{0};      // generator: links up, frames in mbufs
    std::atomic<uint32_t> failed{0};     // generator: stopped, `error` says why
    char error[512] = {};
    std::atomic<uint32_t> quit{0};
    uint32_t set = 0;
    uint64_t passes = 0;
    std::atomic<uint64_t> run_seq{0};
    uint64_t expect[2] = {};
    std::atomic<uint64_t> expect_seq{0};
    generator_report report;
    std::atomic<uint64_t> done_seq{0};
};

namespace {

using clock_type = std::chrono::steady_clock;

constexpr const char* vdev_names[2] = {"net_memif0", "net_memif1"};

std::string vdev_arg(unsigned id, const char* role, const std::string& socket) {
    return std::string(vdev_names[id]) + ",role=" + role + ",id=" + std::to_string(id) + ",socket=" + socket +
           ",socket-abstract=no";
}

// Both ports of this process by name, started with one queue pair each.
void start_links(uint16_t port[2], rte_mempool* pool) {
    for (unsigned side = 0; side < 2; ++side) {
        if (rte_eth_dev_get_port_by_name(vdev_names[side], &port[side]) != 0)
            throw std::runtime_error(std::string("DPDK did not create port ") + vdev_names[side]);
        port_setup s;
        s.port_id = port[side];
        s.side = static_cast<ingress>(side);
        start_port(s, pool);
    }
}

bool links_up(const uint16_t port[2]) {
    for (unsigned side = 0; side < 2; ++side) {
        rte_eth_link link{};
        if (rte_eth_link_get_nowait(port[side], &link) != 0 || link.link_status != RTE_ETH_LINK_UP) return false;
    }
    return true;
}

// The generator's run loop; returns when told to quit.
class generator {
public:
    generator(memif_control& c, const generator_frames& frames, const uint16_t port[2],
              std::vector<std::vector<rte_mbuf*>>& sets)
        : c_(c), frames_(frames), port_{port[0], port[1]}, sets_(sets) {}

    void serve() {
        uint64_t seen = 0;
        for (;;) {
            uint64_t seq;
            while ((seq = c_.run_seq.load(std::memory_order_acquire)) == seen) {
                if (getppid() == 1) return;  // the forwarder is gone
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
            seen = seq;
            if (c_.quit) return;
            rep_ = generator_report{};
            send(c_.set, c_.passes);
            wait_back(seq);
            c_.report = rep_;
            c_.done_seq.store(seq, std::memory_order_release);
        }
    }

private:
    // Everything waiting on both links, counted and freed.
    void drain() {
        rte_mbuf* rx[burst_size];
        for (unsigned side = 0; side < 2; ++side) {
            for (unsigned k = 0; k < 4; ++k) {
                const uint16_t n = rte_eth_rx_burst(port_[side], 0, rx, burst_size);
                if (n == 0) break;
                rep_.back[side] += n;
                for (uint16_t i = 0; i < n; ++i) rep_.back_bytes[side] += rx[i]->pkt_len;
                rte_pktmbuf_free_bulk(rx, n);
                if (n < burst_size) break;
            }
        }
    }

    // `passes` times the set, in bursts, onto the access link (a set with burst
    // sides: each burst onto its own link, once the frames before it are back).
    // The PMD frees (copies then frees) what it takes, so each mbuf's refcount
    // is raised first and the set stays ours.
    void send(unsigned set, uint64_t passes) {
        std::vector<rte_mbuf*>& v = sets_.at(set);
        const std::vector<uint8_t>* sides =
            set < frames_.burst_sides.size() && !frames_.burst_sides[set].empty() ? &frames_.burst_sides[set] : nullptr;
        for (uint64_t pass = 0; pass < passes; ++pass) {
            if (frames_.before_pass) frames_.before_pass(set, pass, v.data(), v.size());
            for (size_t off = 0; off < v.size(); off += burst_size) {
                const uint16_t k = static_cast<uint16_t>(std::min<size_t>(burst_size, v.size() - off));
                const unsigned side = sides ? (*sides)[off / burst_size] : 0;
                if (sides) wait_in_flight();
                for (uint16_t i = 0; i < k; ++i) rte_mbuf_refcnt_update(v[off + i], 1);
                uint16_t done = 0;
                while (done < k) {
                    done += rte_eth_tx_burst(port_[side], 0, v.data() + off + done, k - done);
                    if (done < k) rep_.tx_refused += k - done;
                    drain();
                }
                rep_.sent += k;
            }
        }
    }

    // Drains until every frame sent so far is back, or nothing came back for a second (the
    // forwarder lost some: the run's accounting will say so).
    void wait_in_flight() {
        auto last_change = clock_type::now();
        uint64_t last_total = rep_.back[0] + rep_.back[1];
        while (last_total < rep_.sent) {
            drain();
            const uint64_t total = rep_.back[0] + rep_.back[1];
            if (total != last_total) {
                last_total = total;
                last_change = clock_type::now();
            } else if (clock_type::now() - last_change > std::chrono::seconds(1) || getppid() == 1) {
                return;
            }
        }
    }

    // Drains until what the forwarder transmitted is back, or nothing more
    // arrived for a second after the forwarder said how much that is.
    void wait_back(uint64_t seq) {
        auto last_change = clock_type::now();
        uint64_t last_total = 0;
        for (;;) {
            drain();
            const uint64_t total = rep_.back[0] + rep_.back[1];
            if (total != last_total) {
                last_total = total;
                last_change = clock_type::now();
            }
            if (c_.expect_seq.load(std::memory_order_acquire) != seq) {
                if (getppid() == 1) return;
                continue;
            }
            if (rep_.back[0] >= c_.expect[0] && rep_.back[1] >= c_.expect[1]) return;
            if (clock_type::now() - last_change > std::chrono::seconds(1)) return;
        }
    }

    memif_control& c_;
    const generator_frames& frames_;
    const uint16_t port_[2];
    std::vector<std::vector<rte_mbuf*>>& sets_;
    generator_report rep_;
};

// The child: its own EAL, the frames into mbufs, the client links, the run
// loop. Never returns.
[[noreturn]] void generator_main(memif_control& c, const generator_frames& frames, const std::string& socket,
                                 const std::string& prefix, unsigned lcore, unsigned memory_mb) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int rc = 0;
    try {
        while (!c.server_up.load(std::memory_order_acquire)) {
            if (getppid() == 1 || c.quit.load()) _exit(0);
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        std::vector<std::string> args = {"memif-generator", "--no-huge", "-m", std::to_string(memory_mb), "--no-pci",
                                         "-l", std::to_string(lcore), "--file-prefix", prefix, "--no-telemetry",
                                         "--log-level=lib.eal:error", "--vdev", vdev_arg(0, "client", socket),
                                         "--vdev", vdev_arg(1, "client", socket)};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        if (rte_eal_init(static_cast<int>(args.size()), argv.data()) < 0)
            throw std::runtime_error("generator: EAL initialisation failed");
        const std::string runtime_dir = rte_eal_get_runtime_dir();
        {
            size_t total = 0;
            for (const auto& s : frames.sets) total += s.size();
            thp_region mem;
            bool thp = false;
            rte_mempool* pool = frame_pool("gen_frames", static_cast<unsigned>(total + 8192), true, mem, thp);
            std::vector<std::vector<rte_mbuf*>> sets;
            for (const auto& s : frames.sets) {
                sets.emplace_back();
                for (const auto& f : s) sets.back().push_back(to_mbuf(pool, f));
            }
            uint16_t port[2] = {0, 0};
            start_links(port, pool);
            const auto deadline = clock_type::now() + std::chrono::seconds(20);
            while (!links_up(port)) {
                if (clock_type::now() > deadline) throw std::runtime_error("generator: memif links not up after 20 s");
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
            c.ready.store(1, std::memory_order_release);
            generator(c, frames, port, sets).serve();
            for (unsigned side = 0; side < 2; ++side) stop_port(port[side]);
            for (auto& s : sets)
                for (rte_mbuf* m : s) rte_pktmbuf_free(m);
            rte_mempool_free(pool);
        }
        rte_eal_cleanup();
        std::error_code ec;
        std::filesystem::remove_all(runtime_dir, ec);
    } catch (const std::exception& e) {
        std::snprintf(c.error, sizeof c.error, "%s", e.what());
        c.failed.store(1, std::memory_order_release);
        rc = 1;
    }
    _exit(rc);
}

}  // namespace

tx_view read_tx(const worker_counters& c) {
    tx_view v{};
    for (unsigned side = 0; side < 2; ++side) {
        v.tx[side] = c.port[side].tx_packets.load();
        v.bytes[side] = c.port[side].tx_bytes.load();
        v.drops[side] = c.port[side].tx_full_drops.load();
    }
    return v;
}

void print_pmd_run(const char* what, const pmd_run& p, uint64_t hz) {
    std::printf("  %-17s %6.1f cycles/pkt (median turn %6.1f; %7.1f with the %lu preempted turns)  %6.2f Mpps  busy "
                "%5.1f%%  %4.1f pkts/busy turn  generator refused %lu (resent)  forwarder TX refused %lu\n",
                what, p.r.cycles_per_packet(), p.r.median_turn_cost(), p.r.raw_cycles_per_packet(), p.r.preempted_turns,
                p.r.mpps(hz), 100 * p.r.busy_share(), p.r.packets_per_busy_turn(), p.g.tx_refused, p.tx_drops);
}

memif_pair::memif_pair(generator_frames frames, unsigned generator_lcore, unsigned generator_memory_mb) {
    for (const auto& s : frames.sets) {
        if (s.empty()) throw std::runtime_error("memif pair: an empty frame set");
        set_sizes_.push_back(s.size());
    }
    if (frames.burst_sides.size() > frames.sets.size())
        throw std::runtime_error("memif pair: burst sides for a set that does not exist");
    for (size_t i = 0; i < frames.burst_sides.size(); ++i) {
        const auto& sides = frames.burst_sides[i];
        if (sides.empty()) continue;
        if (frames.sets[i].size() != sides.size() * burst_size)
            throw std::runtime_error("memif pair: set " + std::to_string(i) + " has " +
                                     std::to_string(frames.sets[i].size()) + " frames, its burst sides " +
                                     std::to_string(sides.size()) + " bursts");
        if (std::any_of(sides.begin(), sides.end(), [](uint8_t x) { return x > 1; }))
            throw std::runtime_error("memif pair: a burst side other than 0 (access) or 1 (core) in set " +
                                     std::to_string(i));
    }
    char tmpl[] = "/tmp/sekisho-memif-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) throw std::runtime_error(std::string("memif pair: mkdtemp: ") + std::strerror(errno));
    dir_ = tmpl;
    socket_ = dir_ + "/memif.sock";
    prefix_ = "sk-memif-" + std::to_string(getpid());
    void* page = mmap(nullptr, sizeof(memif_control), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
        std::filesystem::remove_all(dir_);
        throw std::runtime_error(std::string("memif pair: mmap: ") + std::strerror(errno));
    }
    control_ = new (page) memif_control();
    std::fflush(nullptr);  // nothing buffered may be written twice
    child_ = fork();
    if (child_ < 0) {
        const int e = errno;
        munmap(control_, sizeof(memif_control));
        std::filesystem::remove_all(dir_);
        throw std::runtime_error(std::string("memif pair: fork: ") + std::strerror(e));
    }
    if (child_ == 0) generator_main(*control_, frames, socket_, prefix_ + "-gen", generator_lcore, generator_memory_mb);
}

memif_pair::~memif_pair() {
    stop_generator();
    remove_runtime_dir();
    munmap(control_, sizeof(memif_control));
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

std::vector<std::string> memif_pair::forwarder_eal_args() const {
    return {"--file-prefix", prefix_ + "-fwd", "--vdev", vdev_arg(0, "server", socket_), "--vdev",
            vdev_arg(1, "server", socket_)};
}

void memif_pair::start_ports(rte_mempool* rx_pool, double timeout_s) {
    runtime_dir_ = rte_eal_get_runtime_dir();
    start_links(port_, rx_pool);
    ports_started_ = true;
    control_->server_up.store(1, std::memory_order_release);
    const auto deadline = clock_type::now() + std::chrono::duration<double>(timeout_s);
    while (!links_up(port_) || !control_->ready.load(std::memory_order_acquire)) {
        if (control_->failed.load(std::memory_order_acquire)) generator_failed("start");
        if (clock_type::now() > deadline) generator_failed("links not up after " + std::to_string(timeout_s) + " s");
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

unsigned memif_pair::io_turn(worker_counters& counters) {
    rte_mbuf* rx[burst_size];
    unsigned received = 0;
    for (unsigned side = 0; side < 2; ++side) {
        const uint16_t n = rte_eth_rx_burst(port_[side], 0, rx, burst_size);
        if (n == 0) continue;
        received += n;
        const unsigned other = side ^ 1;
        transmit(port_[other], 0, rx, n, counters.port[other]);
    }
    return received;
}

void memif_pair::post_run(unsigned set, uint64_t passes) {
    if (set >= set_sizes_.size()) throw std::runtime_error("memif run: no frame set " + std::to_string(set));
    control_->set = set;
    control_->passes = passes;
    control_->quit = 0;
    control_->run_seq.store(++seq_, std::memory_order_release);
}

generator_report memif_pair::collect(uint64_t expect_access, uint64_t expect_core) {
    control_->expect[0] = expect_access;
    control_->expect[1] = expect_core;
    control_->expect_seq.store(seq_, std::memory_order_release);
    const auto deadline = clock_type::now() + std::chrono::seconds(10);
    while (control_->done_seq.load(std::memory_order_acquire) != seq_) {
        if (control_->failed.load(std::memory_order_acquire)) generator_failed("run");
        if (clock_type::now() > deadline) generator_failed("no report 10 s after the run");
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return control_->report;
}

void memif_pair::shutdown() {
    stop_generator();
    if (ports_started_) {
        for (unsigned side = 0; side < 2; ++side) stop_port(port_[side]);
        ports_started_ = false;
    }
}

void memif_pair::generator_failed(const std::string& what) {
    std::string why = control_->failed.load(std::memory_order_acquire) ? std::string(control_->error) : "";
    if (child_ > 0) {
        int status = 0;
        if (waitpid(child_, &status, WNOHANG) == child_) {
            child_ = -1;
            if (why.empty())
                why = WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                          : "exited with " + std::to_string(WEXITSTATUS(status));
        }
    }
    throw std::runtime_error("memif generator: " + what + (why.empty() ? "" : ": " + why));
}

void memif_pair::stop_generator() {
    if (child_ <= 0) return;
    control_->quit = 1;
    control_->run_seq.store(++seq_, std::memory_order_release);
    const auto deadline = clock_type::now() + std::chrono::seconds(5);
    int status = 0;
    while (waitpid(child_, &status, WNOHANG) == 0) {
        if (clock_type::now() > deadline) {
            kill(child_, SIGKILL);
            waitpid(child_, &status, 0);
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    child_ = -1;
}

void memif_pair::remove_runtime_dir() {
    // Only the directories of this pair's own prefixes: this process's, and the generator's
    // beside it (left behind when the generator was killed).
    if (runtime_dir_.empty() || std::filesystem::path(runtime_dir_).filename() != prefix_ + "-fwd") return;
    std::error_code ec;
    std::filesystem::remove_all(runtime_dir_, ec);
    std::filesystem::remove_all(std::filesystem::path(runtime_dir_).parent_path() / (prefix_ + "-gen"), ec);
}

}  // namespace sekisho::bench
