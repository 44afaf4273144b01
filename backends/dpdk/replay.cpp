#include "backends/dpdk/replay.h"

#include <pcap/pcap.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_pause.h>
#include <rte_ring.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>

#include "control/fleet/campaign_sync.h"
#include "control/fleet/fleet_config.h"
#include "control/observe/counters_report.h"
#include "backends/dpdk/eal_session.h"
#include "backends/dpdk/dpdk_data_plane.h"
#include "dataplane/ports.h"
#include "dataplane/subscriber_affinity.h"

namespace sekisho {

namespace {

constexpr unsigned input_ring_size = 1024;
constexpr unsigned output_ring_size = 4096;

struct replay_worker {
    unsigned id = 0;
    dpdk_data_plane* gw = nullptr;
    rte_ring* in = nullptr;    // mbufs with m->port = ingress side
    rte_ring* out = nullptr;   // mbufs with m->port = egress side
    const std::atomic<bool>* input_done = nullptr;
    std::atomic<bool> finished{false};
};

void enqueue_all(rte_ring* ring, rte_mbuf** pkts, unsigned n) {
    unsigned done = 0;
    while (done < n) {
        done += rte_ring_sp_enqueue_burst(ring, reinterpret_cast<void**>(pkts + done), n - done, nullptr);
        if (done < n) rte_pause();  // the control lcore drains it
    }
}

// The same pipeline as live mode; frames arrive in capture order, tagged with
// the side they enter from, and runs of one side are judged as one burst.
int replay_worker_main(void* arg) {
    replay_worker& w = *static_cast<replay_worker*>(arg);
    policy_store& store = w.gw->store();
    pipeline& pipe = w.gw->pipe(w.id);
    store.register_reader(w.id);
    rte_mbuf* batch[burst_size];
    burst_output out;
    for (;;) {
        const unsigned n = rte_ring_sc_dequeue_burst(w.in, reinterpret_cast<void**>(batch), burst_size, nullptr);
        if (n == 0) {
            store.quiescent(w.id);
            if (w.input_done->load(std::memory_order_acquire) && rte_ring_empty(w.in)) break;
            rte_pause();
            continue;
        }
        const compiled_policy* policy = store.current();
        for (unsigned i = 0; i < n;) {
            const uint16_t side = batch[i]->port;
            unsigned j = i;
            while (j < n && batch[j]->port == side) ++j;
            out.n_forward = out.n_reply = 0;
            pipe.process(*policy, static_cast<ingress>(side), batch + i, static_cast<uint16_t>(j - i), out);
            for (uint16_t k = 0; k < out.n_forward; ++k) out.forward[k]->port = side ^ 1;
            for (uint16_t k = 0; k < out.n_reply; ++k) out.reply[k]->port = side;
            enqueue_all(w.out, out.forward, out.n_forward);
            enqueue_all(w.out, out.reply, out.n_reply);
            i = j;
        }
        store.quiescent(w.id);
    }
    store.unregister_reader(w.id);
    w.finished.store(true, std::memory_order_release);
    return 0;
}

// pcapng block types (the pcapng specification): the section header, and the
// blocks that carry a packet (enhanced, simple, and the obsolete packet block).
constexpr uint32_t pcapng_section_header = 0x0A0D0D0A;
constexpr uint32_t pcapng_byte_order_magic = 0x1A2B3C4D;
bool pcapng_packet_block(uint32_t type) { return type == 6 || type == 3 || type == 2; }

// Where in a pcapng file the block that libpcap could not read starts. `from`
// is where libpcap began reading for the record (the end of the previous
// one): the blocks from there are walked by their lengths up to the first
// one that is cut off, has an impossible length, or carries a packet.
// `swapped`: the section's byte order is not this machine's.
long pcapng_failing_block(const std::string& path, long from, bool swapped) {
    std::ifstream in(path, std::ios::binary);
    in.seekg(0, std::ios::end);
    const long size = static_cast<long>(in.tellg());
    long at = from;
    for (;;) {
        uint32_t head[3] = {};   // type, total length, and a section header's byte-order magic
        in.seekg(at);
        in.read(reinterpret_cast<char*>(head), sizeof head);
        if (in.gcount() < 8) return at;
        in.clear();
        const uint32_t type = swapped ? __builtin_bswap32(head[0]) : head[0];
        if (type == pcapng_section_header) swapped = head[2] == __builtin_bswap32(pcapng_byte_order_magic);
        const uint32_t length = swapped ? __builtin_bswap32(head[1]) : head[1];
        if (pcapng_packet_block(type) || length < 12 || length % 4 != 0 || length > size - at) return at;
        at += length;
    }
}

// Reads the whole capture once, as net_pcap will (libpcap's pcap_next_ex),
// before anything is replayed: net_pcap takes libpcap's read error for the
// end of the file, so a capture cut short or corrupt would replay its first
// records and end "successfully". A frame longer than 65535 bytes is refused
// too: net_pcap's 16-bit copy length would wrap (and crash the replay).
// Returns the number of records, and in `span` the capture times of the first
// and last (fleet mode's windows). Throws std::runtime_error naming the file,
// the record (from 1), the byte offset where it starts and libpcap's reason;
// or for a link type other than Ethernet. Costs one extra sequential read of
// the file.
struct capture_span {
    uint64_t first_ns = 0, last_ns = 0;
};

uint64_t check_capture(const std::string& path, capture_span& span) {
    char err[PCAP_ERRBUF_SIZE] = {};
    pcap_t* p = pcap_open_offline(path.c_str(), err);
    if (p == nullptr) throw std::runtime_error(path + ": cannot read the capture: " + err);
    std::unique_ptr<pcap_t, void (*)(pcap_t*)> close(p, pcap_close);
    const int link = pcap_datalink(p);
    if (link != DLT_EN10MB)
        throw std::runtime_error(path + ": link type " + std::to_string(link) +
                                 " is not Ethernet; Sekisho replays Ethernet captures only");
    uint32_t magic = 0;
    std::ifstream(path, std::ios::binary).read(reinterpret_cast<char*>(&magic), sizeof magic);
    const bool pcapng = magic == pcapng_section_header;
    FILE* file = pcap_file(p);
    uint64_t records = 0;
    for (;;) {
        const long offset = file ? std::ftell(file) : -1;
        pcap_pkthdr* header = nullptr;
        const u_char* data = nullptr;
        const int rc = pcap_next_ex(p, &header, &data);
        if (rc == PCAP_ERROR_BREAK) return records;   // the end of the file, at a record boundary
        std::string reason;
        if (rc != 1)
            reason = pcap_geterr(p);
        else if (header->caplen > UINT16_MAX)   // net_pcap copies a frame with a 16-bit length
            reason = "a frame of " + std::to_string(header->caplen) + " bytes is longer than net_pcap carries (" +
                     std::to_string(UINT16_MAX) + ")";
        if (reason.empty()) {
            const uint64_t t = static_cast<uint64_t>(header->ts.tv_sec) * 1'000'000'000ull +
                               static_cast<uint64_t>(header->ts.tv_usec) * 1000ull;
            if (records++ == 0) span.first_ns = t;
            span.last_ns = std::max(span.last_ns, t);
            continue;
        }
        const long at = pcapng && offset >= 0 ? pcapng_failing_block(path, offset, pcap_is_swapped(p) == 1) : offset;
        throw std::runtime_error(path + ": record " + std::to_string(records + 1) +
                                 (at >= 0 ? " at offset " + std::to_string(at) : std::string()) + ": " + reason +
                                 "; nothing was replayed");
    }
}

void check_devarg_path(const std::string& path) {
    if (path.find_first_of(",=") != std::string::npos)
        throw std::runtime_error("'" + path + "': DPDK device arguments cannot carry ',' or '=' in a path; "
                                 "use another file name");
}

uint16_t port_by_name(const std::string& name) {
    uint16_t id = 0;
    if (rte_eth_dev_get_port_by_name(name.c_str(), &id) != 0)
        throw std::runtime_error("DPDK did not create port " + name);
    return id;
}

// The worker that owns a frame's subscriber. A bound subscriber goes by its
// account, so every address of one account is judged by one worker in
// capture order: account-scope limits then count exactly as with one worker.
uint64_t replay_affinity(dpdk_data_plane& gw, const parsed_packet& p, ingress side, const compiled_policy& policy) {
    const subscriber_key key = subscriber_key_of(p, side, policy.ipv6_prefix_length());
    if (key.family != 0)
        if (const uint32_t account = gw.subscribers().lookup(key)) return account * 0x9e3779b97f4a7c15ull >> 17;
    return subscriber_key_hash(key);
}

// The replay's files as absolute paths, which net_pcap takes as device
// arguments: the capture and the two frame outputs in the output directory
// (created here). Throws std::runtime_error for a path a device argument
// cannot carry.
struct replay_paths {
    std::string out_dir;
    std::string capture;
    std::string to_core;
    std::string to_access;
};

replay_paths prepare_paths(const replay_options& opt) {
    std::filesystem::create_directories(opt.out_dir);
    replay_paths paths;
    paths.out_dir = std::filesystem::absolute(opt.out_dir).string();
    paths.capture = std::filesystem::absolute(opt.capture).string();
    paths.to_core = paths.out_dir + "/to-core.pcap";
    paths.to_access = paths.out_dir + "/to-access.pcap";
    for (const auto& p : {paths.capture, paths.to_core, paths.to_access}) check_devarg_path(p);
    return paths;
}

eal_request replay_eal_request(const replay_options& opt, const replay_paths& paths) {
    eal_request req;
    req.workers = opt.workers;
    req.explicit_args = opt.eal_args;
    req.vdevs = {"net_pcap_replay_in,rx_pcap=" + paths.capture, "net_pcap_to_access,tx_pcap=" + paths.to_access,
                 "net_pcap_to_core,tx_pcap=" + paths.to_core};
    return req;
}

// `count` replay_workers, each with its input and output ring,
// launched on the EAL's worker lcores in order. The rings are freed by
// free_worker_rings() once the workers have ended. `input_done` must outlive
// the workers. Throws std::runtime_error when a ring cannot be created.
std::vector<std::unique_ptr<replay_worker>> launch_workers(dpdk_data_plane& gw, unsigned count,
                                                           const std::atomic<bool>& input_done) {
    std::vector<std::unique_ptr<replay_worker>> workers;
    for (unsigned w = 0; w < count; ++w) {
        auto rw = std::make_unique<replay_worker>();
        rw->id = w;
        rw->gw = &gw;
        const std::string in_name = "sk_replay_in_" + std::to_string(w);
        const std::string out_name = "sk_replay_out_" + std::to_string(w);
        rw->in = rte_ring_create(in_name.c_str(), input_ring_size, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
        rw->out = rte_ring_create(out_name.c_str(), output_ring_size, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
        if (rw->in == nullptr || rw->out == nullptr) throw std::runtime_error("cannot create replay rings");
        rw->input_done = &input_done;
        workers.push_back(std::move(rw));
    }
    unsigned next = 0;
    unsigned lcore;
    RTE_LCORE_FOREACH_WORKER(lcore) {
        if (next == workers.size()) break;
        rte_eal_remote_launch(replay_worker_main, workers[next++].get(), lcore);
    }
    return workers;
}

void free_worker_rings(std::vector<std::unique_ptr<replay_worker>>& workers) {
    for (auto& w : workers) {
        rte_ring_free(w->in);
        rte_ring_free(w->out);
    }
}

// What the workers judged, sent out on the control lcore: each worker's
// output ring drained in turn, runs of one side transmitted as one burst on
// that side's output port (counted in the control lcore's counters).
struct replay_outputs {
    std::vector<std::unique_ptr<replay_worker>>& workers;
    const uint16_t (&out_port)[ingress_count];
    worker_counters& control;

    void drain() {
        rte_mbuf* batch[64];
        for (auto& w : workers) {
            unsigned n;
            while ((n = rte_ring_sc_dequeue_burst(w->out, reinterpret_cast<void**>(batch), 64, nullptr)) > 0) {
                for (unsigned i = 0; i < n;) {
                    const uint16_t side = batch[i]->port;
                    unsigned j = i;
                    while (j < n && batch[j]->port == side) ++j;
                    transmit(out_port[side], 0, batch + i, static_cast<uint16_t>(j - i), control.port[side]);
                    i = j;
                }
            }
        }
    }
};

// Reads the capture in order; decides each frame's side; hands it to the
// worker that owns its subscriber. Returns at the end of the file (net_pcap's
// first empty burst that is not for want of an mbuf).
void feed_capture(dpdk_data_plane& gw, uint16_t in_port, unsigned worker_count, replay_outputs& outputs) {
    const compiled_policy& policy = *gw.store().current();
    rte_mbuf* rx[burst_size];
    uint64_t nombuf_seen = 0;
    for (;;) {
        const uint16_t n = rte_eth_rx_burst(in_port, 0, rx, burst_size);
        if (n == 0) {
            // net_pcap returns 0 at the end of the file, and also when the
            // pool is empty: tell the two apart by its no-mbuf counter.
            rte_eth_stats st{};
            rte_eth_stats_get(in_port, &st);
            if (st.rx_nombuf == nombuf_seen) break;
            nombuf_seen = st.rx_nombuf;
            outputs.drain();
            continue;
        }
        for (uint16_t i = 0; i < n; ++i) {
            rte_mbuf* m = rx[i];
            parsed_packet p;
            parse_frame(rte_pktmbuf_mtod(m, const uint8_t*), m->data_len, p);
            const bool from_access = p.ip_version == 0 || source_class(p, policy) != subscriber_class::none;
            const ingress side = from_access ? ingress::access : ingress::core;
            m->port = static_cast<uint16_t>(side);
            const unsigned w = static_cast<unsigned>(replay_affinity(gw, p, side, policy) % worker_count);
            while (rte_ring_sp_enqueue(outputs.workers[w]->in, m) != 0) outputs.drain();
        }
        outputs.drain();
        gw.drain_events();
    }
}

// Tells the workers the input has ended and sends out what they judge until
// every one has finished and returned; then the last of it.
void finish_workers(dpdk_data_plane& gw, std::atomic<bool>& input_done, replay_outputs& outputs) {
    input_done.store(true, std::memory_order_release);
    for (;;) {
        bool all = true;
        for (auto& w : outputs.workers) all = all && w->finished.load(std::memory_order_acquire);
        outputs.drain();
        gw.drain_events();
        if (all) break;
        rte_pause();
    }
    rte_eal_mp_wait_lcore();
    outputs.drain();
    gw.drain_events();
}

// Replay with --fleet: the campaign bitmaps of the capture's windows are
// brought from the fleet's Redis before the first frame (so the replay counts
// what the fleet had counted) and sent back after the last (so the next
// gateway's replay counts this one's too). Redis unreachable: the replay
// counts locally and says so on standard error and in summary.json.
class replay_fleet {
public:
    replay_fleet(const std::string& path, const policy& pol, dpdk_data_plane& gw, const capture_span& span)
        : config_(read_fleet_config(path)), span_(span) {
        if (config_.redis_address.empty())
            throw std::runtime_error(path + ": names no redis: a replay shares only campaign counts, through Redis");
        if (pol.inspection.campaign_subscribers.max) window_ns_ = pol.inspection.campaign_subscribers.window_ns;
        if (window_ns_ == 0) {
            std::cerr << "sekishod: fleet: the policy counts no campaign subscribers; nothing to share\n";
            return;
        }
        campaign_sync_settings cs;
        cs.gateway = config_.gateway;
        cs.recipients_field = config_.gateway + "/replay";
        cs.redis_address = config_.redis_address;
        cs.redis_password_file = config_.redis_password_file;
        cs.redis_tls_ca_file = config_.redis_tls_ca_file;
        cs.sync_interval_ns = config_.sync_interval_ns;
        sync_ = std::make_unique<campaign_sync>(cs, *gw.campaigns(),
                                                [](const std::string& l) { std::cerr << "sekishod: " << l << "\n"; });
        pulled_ = exchange("before the replay");
    }
    void push() {
        if (sync_) pushed_ = exchange("after the replay");
    }
    nlohmann::json status() const {
        nlohmann::json j = {{"gateway", config_.gateway}, {"pulled", pulled_}, {"pushed", pushed_}};
        if (sync_) j["campaign"] = sync_->status();
        return j;
    }

private:
    // One sync per window the capture spans (first and last: a capture
    // longer than a window has its middle windows' cells reclaimed anyway).
    bool exchange(const char* when) {
        bool ok = sync_->flush(span_.first_ns, window_ns_, timeout);
        if (campaign_table::window_index(span_.last_ns, window_ns_) !=
            campaign_table::window_index(span_.first_ns, window_ns_))
            ok = sync_->flush(span_.last_ns, window_ns_, timeout) && ok;
        if (!ok)
            std::cerr << "sekishod: fleet: campaign counts not exchanged with Redis " << when
                      << " (unreachable); the replay counts locally only\n";
        return ok;
    }
    static constexpr std::chrono::milliseconds timeout{5000};
    fleet_config config_;
    capture_span span_;
    uint64_t window_ns_ = 0;
    std::unique_ptr<campaign_sync> sync_;
    bool pulled_ = false, pushed_ = false;
};

// summary.json for a replay that read the whole capture, and the lines
// printed for the operator.
void write_replay_summary(const replay_options& opt, const policy& pol, dpdk_data_plane& gw,
                          const std::string& out_dir, const replay_fleet* fleet) {
    nlohmann::json report = counters_json(gw.all_counters());
    report["mode"] = "replay";
    report["capture"] = opt.capture;
    report["policy"] = opt.policy_path;
    report["generation"] = gw.generation();
    report["workers"] = opt.workers;
    add_event_log_counters(report, gw.events());
    report["outputs"] = {{"to_core", "to-core.pcap"}, {"to_access", "to-access.pcap"}, {"events", "events.jsonl"}};
    if (fleet) report["fleet"] = fleet->status();
    write_report(report, out_dir + "/summary.json");
    std::cout << "sekisho replay: " << opt.capture << " through " << opt.policy_path << " ("
              << to_string(pol.mode) << ", " << to_string(pol.action) << ", " << opt.workers << " worker"
              << (opt.workers == 1 ? "" : "s") << ")\n"
              << human_summary(report) << "wrote " << opt.out_dir << "/{to-core.pcap,to-access.pcap,summary.json,events.jsonl}\n";
}

}  // namespace

int run_replay(const replay_options& opt) {
    // summary.json is written last, by a replay that read the whole capture:
    // one an earlier replay left in DIR goes first, whatever fails below.
    std::error_code no_summary;
    std::filesystem::remove(std::filesystem::path(opt.out_dir) / "summary.json", no_summary);
    const policy pol = load_policy_file(opt.policy_path);  // policy_error goes to the caller
    if (opt.workers == 0 || opt.workers >= RTE_MAX_LCORE)
        throw std::runtime_error("--workers must be between 1 and " + std::to_string(RTE_MAX_LCORE - 1));
    capture_span span;
    const uint64_t capture_records = check_capture(opt.capture, span);
    const replay_paths paths = prepare_paths(opt);

    eal_session eal("sekishod", replay_eal_request(opt, paths));
    if (rte_lcore_count() < opt.workers + 1)
        throw std::runtime_error("EAL gave " + std::to_string(rte_lcore_count()) + " lcores; " +
                                 std::to_string(opt.workers + 1) + " needed (control + workers)");

    dpdk_data_plane_config cfg;
    cfg.workers = opt.workers;
    cfg.event_ring_capacity = pol.events.ring_size;
    cfg.mbufs = 8192 + opt.workers * (input_ring_size + output_ring_size);
    cfg.events_path = paths.out_dir + "/events.jsonl";
    cfg.packet_clock = true;
    std::filesystem::remove(cfg.events_path);
    dpdk_data_plane gw(pol, cfg);
    std::unique_ptr<replay_fleet> fleet;
    if (!opt.fleet_path.empty()) fleet = std::make_unique<replay_fleet>(opt.fleet_path, pol, gw, span);

    const uint16_t in_port = port_by_name("net_pcap_replay_in");
    const uint16_t out_port[ingress_count] = {port_by_name("net_pcap_to_access"), port_by_name("net_pcap_to_core")};
    for (uint16_t p : {in_port, out_port[0], out_port[1]}) start_port(port_setup{.port_id = p}, gw.pool());

    std::atomic<bool> input_done{false};
    std::vector<std::unique_ptr<replay_worker>> workers = launch_workers(gw, opt.workers, input_done);
    replay_outputs outputs{workers, out_port, gw.counters(opt.workers)};
    feed_capture(gw, in_port, opt.workers, outputs);
    finish_workers(gw, input_done, outputs);
    // net_pcap ends at a read error as at the end of the file: it must have
    // read exactly what check_capture() read (the file may have changed since).
    rte_eth_stats in_stats{};
    rte_eth_stats_get(in_port, &in_stats);
    for (uint16_t p : {in_port, out_port[0], out_port[1]}) stop_port(p);  // flushes the dumpers
    free_worker_rings(workers);
    if (in_stats.ipackets != capture_records || in_stats.ierrors != 0)
        throw std::runtime_error(opt.capture + ": net_pcap read " + std::to_string(in_stats.ipackets) + " of its " +
                                 std::to_string(capture_records) + " records (" + std::to_string(in_stats.ierrors) +
                                 " read errors, " + std::to_string(in_stats.rx_nombuf) +
                                 " without an mbuf): the capture changed during the replay, or frames were lost; "
                                 "no summary written");
    if (fleet) fleet->push();
    write_replay_summary(opt, pol, gw, paths.out_dir, fleet.get());
    return 0;
}

}  // namespace sekisho
