// What the in-memory benchmarks share: mbuf pools on transparent huge pages,
// frames into mbufs, the do-nothing forwarder they are compared with, TSC
// run results, medians, the CPU model, JSON escaping and EAL start-up.
//
// The method (bench/op25b_bench.cpp has the long form): no NIC, pre-built
// mbufs pushed through the worker pipeline in bursts of 32; the pipeline
// frees what it blocks, so every burst raises its mbufs' refcount to 2 before
// the call and sets it back to 1 afterwards, and the null forwarder pays the
// same bookkeeping; variants are interleaved and each figure is the median of
// the repetitions.
#pragma once

#include <rte_eal.h>
#include <rte_memory.h>
#include <rte_mbuf.h>
#include <rte_mbuf_pool_ops.h>
#include <rte_mempool.h>

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/pipeline.h"

namespace sekisho::bench {

// A pktmbuf pool on transparent huge pages. Without hugepages the EAL's
// memory is in 4 KiB pages and each mbuf takes most of one, so a few thousand
// frames miss the TLB on every packet (a page walk, two-dimensional in a VM):
// that would dominate both the pipeline and the null forwarder and measure
// nothing a hugepage deployment sees. Falls back to the EAL's memory.
struct thp_region {
    void* addr = nullptr;
    size_t len = 0;
    thp_region() = default;
    thp_region(const thp_region&) = delete;
    thp_region& operator=(const thp_region&) = delete;
    ~thp_region() {
        if (addr) munmap(addr, len);
    }
};

inline rte_mempool* frame_pool(const char* name, unsigned n, bool want_thp, thp_region& region, bool& on_thp) {
    constexpr size_t huge = 2u << 20;
    const uint32_t elt = sizeof(rte_mbuf) + RTE_MBUF_DEFAULT_BUF_SIZE;
    on_thp = false;
    if (!want_thp) {  // exactly what the gateway does, in --no-huge memory
        rte_mempool* mp = rte_pktmbuf_pool_create(name, n, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
        if (mp == nullptr) throw std::runtime_error("cannot create mbuf pool");
        return mp;
    }
    // NO_IOVA_CONTIG: no device does DMA here, so objects may straddle 4 KiB
    // pages (otherwise the mempool gives each 2.3 KiB mbuf a page of its own).
    rte_mempool* mp = rte_mempool_create_empty(name, n, elt, 256, sizeof(rte_pktmbuf_pool_private),
                                               SOCKET_ID_ANY, RTE_MEMPOOL_F_NO_IOVA_CONTIG);
    if (mp == nullptr) throw std::runtime_error("cannot create mbuf pool");
    if (rte_mempool_set_ops_byname(mp, rte_mbuf_best_mempool_ops(), nullptr) != 0)
        throw std::runtime_error("cannot set mempool ops");
    rte_pktmbuf_pool_private priv{};
    priv.mbuf_data_room_size = RTE_MBUF_DEFAULT_BUF_SIZE;
    priv.mbuf_priv_size = 0;
    rte_pktmbuf_pool_init(mp, &priv);

    rte_mempool_objsz sz{};
    rte_mempool_calc_obj_size(elt, 0, &sz);
    const size_t per_page = huge / sz.total_size;  // objects do not straddle pages
    const size_t want = (n + per_page - 1) / per_page * huge;
    void* raw = mmap(nullptr, want + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int populated = -1;
    if (raw != MAP_FAILED) {
        region.addr = raw;
        region.len = want + huge;
        auto* aligned = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + huge - 1) & ~(huge - 1));
        on_thp = madvise(aligned, want, MADV_HUGEPAGE) == 0;
        std::memset(aligned, 0, want);  // fault it in now (as huge pages if granted)
        populated = rte_mempool_populate_virt(mp, aligned, want, huge, nullptr, nullptr);
    }
    if (populated < static_cast<int>(n)) {  // no THP memory: the EAL's own
        on_thp = false;
        if (rte_mempool_populate_default(mp) < 0) throw std::runtime_error("cannot populate mbuf pool");
    }
    rte_mempool_obj_iter(mp, rte_pktmbuf_init, nullptr);
    return mp;
}

// AnonHugePages (KiB) of the mapping holding `addr`.
inline unsigned long anon_huge_kib(const void* addr) {
    std::ifstream in("/proc/self/smaps");
    std::string line;
    const auto a = reinterpret_cast<uintptr_t>(addr);
    bool inside = false;
    while (std::getline(in, line)) {
        unsigned long lo = 0, hi = 0;
        if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find('-')) {
            inside = a >= lo && a < hi;
            continue;
        }
        unsigned long kb = 0;
        if (inside && std::sscanf(line.c_str(), "AnonHugePages: %lu kB", &kb) == 1) return kb;
    }
    return 0;
}

// Whether the mapping at `addr` is backed by huge pages.
inline bool backed_by_huge_pages(const void* addr) { return anon_huge_kib(addr) > 0; }

// Asks for transparent huge pages on the EAL's --no-huge memory (anonymous,
// still mostly untouched after rte_eal_init), so that what rte_malloc gives
// the lookup tables later is on 2 MiB pages, as on a hugepage deployment.
// Returns the bytes advised (0: refused, or THP disabled); `first` is set to
// an address inside the memory, for anon_huge_kib().
inline size_t advise_eal_memory_huge(const void*& first) {
    struct state {
        size_t advised = 0;
        const void* first = nullptr;
    } st;
    rte_memseg_list_walk(
        [](const rte_memseg_list* msl, void* arg) {
            auto* s = static_cast<state*>(arg);
            if (msl->base_va == nullptr || msl->len == 0) return 0;
            if (madvise(msl->base_va, msl->len, MADV_HUGEPAGE) == 0) {
                s->advised += msl->len;
                if (s->first == nullptr) s->first = msl->base_va;
            }
            return 0;
        },
        &st);
    first = st.first;
    return st.advised;
}

template <typename Bytes>
rte_mbuf* to_mbuf(rte_mempool* pool, const Bytes& frame) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    if (m == nullptr) throw std::runtime_error("mbuf pool exhausted");
    char* d = rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size()));
    if (d == nullptr) throw std::runtime_error("frame larger than an mbuf");
    std::memcpy(d, frame.data(), frame.size());
    return m;
}

// The do-nothing forwarder: for each packet, reads its length (as RX stats
// would) and its Ethernet type from the first cache line of the frame (as any
// forwarder that looks at the L2 header must), and passes the pointer on to
// out.forward, unchanged. Not inlined, like pipeline::process.
inline uint64_t null_sink = 0;
[[gnu::noinline]] inline void null_forward(rte_mbuf** pkts, uint16_t n, burst_output& out) {
    uint64_t acc = 0;
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
        acc += m->pkt_len + (static_cast<uint32_t>(d[12]) << 8 | d[13]);
        out.forward[out.n_forward++] = m;
    }
    null_sink += acc;
}

struct run_result {
    uint64_t packets = 0;
    uint64_t cycles = 0;          // TSC cycles of the timed part: wall time, preemption included
    uint64_t thread_cpu_ns = 0;   // the same part on the thread's CPU clock (0: not measured)
    uint64_t preempted = 0;       // involuntary context switches meanwhile (with thread_cpu_ns)
    double seconds(uint64_t hz) const { return static_cast<double>(cycles) / static_cast<double>(hz); }
    double mpps(uint64_t hz) const { return static_cast<double>(packets) / seconds(hz) / 1e6; }
    double cycles_per_packet() const { return static_cast<double>(cycles) / static_cast<double>(packets); }
    // The thread's own CPU time per packet in TSC cycles: what the worker spent, not what others
    // took from its CPU.
    double cpu_cycles_per_packet(uint64_t hz) const {
        return static_cast<double>(thread_cpu_ns) * 1e-9 * static_cast<double>(hz) / static_cast<double>(packets);
    }
};

inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

inline double spread(const std::vector<double>& v) {  // (max - min) / median
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    return (*hi - *lo) / median(v);
}

inline std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            const auto colon = line.find(':');
            if (colon != std::string::npos) {
                std::string m = line.substr(colon + 1);
                m.erase(0, m.find_first_not_of(" \t"));
                return m;
            }
        }
    }
    return "unknown";
}

inline std::string json_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        if (static_cast<unsigned char>(c) >= 0x20) o += c;
    }
    return o;
}

// The EAL as the benches run it: no hugepages, no PCI, one lcore (0),
// `memory_mb` of --no-huge memory, and no shared config unless `ports` is
// given: then those arguments (a --file-prefix and the vdevs of memif_pair.h,
// which needs the multi-process channel) stand in for --no-shconf. False if it
// did not start.
inline bool init_eal(const char* program, unsigned memory_mb, const std::vector<std::string>& ports = {}) {
    std::vector<std::string> args = {program, "--no-huge", "-m", std::to_string(memory_mb), "--no-pci", "-l", "0",
                                     "--no-telemetry", "--log-level=lib.eal:error"};
    if (ports.empty())
        args.push_back("--no-shconf");
    else
        args.insert(args.end(), ports.begin(), ports.end());
    static std::vector<std::string> keep;  // rte_eal_init may keep pointers into argv
    keep = args;
    std::vector<char*> argv;
    for (auto& a : keep) argv.push_back(a.data());
    argv.push_back(nullptr);
    return rte_eal_init(static_cast<int>(keep.size()), argv.data()) >= 0;
}

// A bench's run once init_eal() answered `eal_up`: 1 if the EAL did not start,
// else what `run` returns, an exception being a failed run (1, its message on
// stderr after `bench`); the EAL is cleaned up after the run either way.
template <class Run>
int run_on_eal(const char* bench, bool eal_up, Run run) {
    if (!eal_up) {
        std::fprintf(stderr, "%s: EAL initialisation failed\n", bench);
        return 1;
    }
    int rc;
    try {
        rc = run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", bench, e.what());
        rc = 1;
    }
    rte_eal_cleanup();
    return rc;
}

}  // namespace sekisho::bench
