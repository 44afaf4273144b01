// Limits benchmark: the worker pipeline with SMTP session
// tracking and send-rate limits on, 1M subscribers bound to accounts and 100k
// concurrent SMTP connections, plus the memory the subscriber, flow and limit
// tables take and the rate at which RADIUS bindings are applied.
//
//  1. Throughput. A gateway (backends/dpdk/dpdk_data_plane.h, one worker) with a policy of
//     six limits (connection rate per address, messages per address and per
//     account, recipients per account and per message, rejected recipients
//     per account), every maximum far above what the run produces: the figure
//     is the cost of tracking sessions and evaluating limits on every counted
//     event, not of acting on them. 1M subscribers are bound (an IPv4 /32
//     each, every fourth also a delegated IPv6 /56: 1.25M bindings), 100k
//     SMTP connections (80% IPv4) are opened first (SYN, SYN-ACK, ACK, 220,
//     EHLO, 250) and then the measured traffic runs: bursts of 32 alternating
//     between the access port (subscriber -> Internet) and the core port
//     (replies), 20% SMTP segments, 80% other TCP/UDP both ways.
//     The SMTP segments are whole exchanges ("groups"), each on one
//     connection, in order, interleaved with everything else:
//       msg        MAIL, 250, RCPT, 250, DATA, 354, body + ".", 250, ACK
//       pipelined  MAIL+RCPT+DATA in one segment, 250+250+354, body, 250, ACK
//       rejected   MAIL, 250, RCPT, 550, RSET, 250, ACK
//       churn      a whole connection from another bound subscriber: SYN,
//                  SYN-ACK, ACK, 220, EHLO, 250, a message, QUIT, 221+FIN, FIN
//     (4:3:2:1). Each group leaves its session where it found it (ready for
//     the next MAIL; churn connections close), so the exchange can repeat.
//
//     Replaying the same frames must not replay the same bytes: a segment
//     whose sequence number the tracker has already passed is a
//     retransmission and is ignored, one ahead of it is a gap (the session
//     becomes uninspectable). So before each pass over the frame set, the
//     groups are rewritten in place: each is given the next connection in a
//     round robin over all 100k (or a fresh churn connection), its segments
//     that connection's addresses, ports and next sequence and acknowledgement
//     numbers, and correct IP and TCP checksums. Every pass thus carries new,
//     in-sequence bytes, and successive passes visit different connections,
//     so the flow table, the per-address limit records and the account
//     records are used across their whole size, not a cached handful. The
//     rewrite runs between passes and is not timed; the null forwarder and
//     the pipeline without tracking get the same rewrite (on scratch copies
//     of the connection state, which only the tracked runs advance), so all
//     three see the frames equally warm. The self-check after every tracked
//     run requires the exact command, message, recipient, rejection and
//     connection counts the groups imply, no uninspectable session, no limit
//     hit, nothing blocked or limited, and 100k tracked flows.
//
//     Same method as bench/op25b_bench.cpp (bench_support.h): mbufs on
//     transparent huge pages, refcount 2 around each burst so the same mbufs
//     go round again, variants interleaved (null, tracked, untracked) per
//     repetition, medians. Each repetition also runs the tracked and the
//     untracked pipeline over a set with no SMTP at all: the difference is
//     what tracking costs when there is nothing to track (the per-burst
//     sweep of the flow and limit-record tables).
//     Then the same tracked mixed set through real poll-mode drivers
//     (bench/memif_pair.h; --memif off skips it, and --fleet unless --memif
//     on): a generator process on the second CPU sends the set over
//     net_memif, each burst onto the link of its side (access bursts onto the
//     access link, replies onto the core link), one burst in flight so that the
//     forwarder receives them in the set's order (a reply after its command).
//     This process forwards them back (a) with the bench's io forwarder (the
//     baseline) and (b) with the live worker's turn (worker_turn) over the
//     gateway's tracked pipeline, on the same ports, alternating in short runs;
//     the figure is the forwarder's TSC cycles of its turns that received
//     frames / frames, as in op25b_bench. The generator rewrites its own copy
//     of the frames before each pass (the memif_pair hook) exactly as the
//     in-memory runs do: it was forked with its own copy of the connections as
//     of the fork and, before its first pass, brings them to where this
//     process's stand (the handshakes and the tracked passes run before: a
//     count fixed by the options, which this process checks before its first
//     memif run), then advances them pass by pass as this process advances
//     its own (assign_pass without writing: the frames it receives were
//     rewritten by the generator). The io forwarder's passes get the rewrite
//     on scratch copies. Because the generator is forked before the EAL starts
//     and the mbufs exist only after, every frame set is built as bytes before
//     the fork (traffic_plan: same seed, same order of draws as before) and
//     put into mbufs on each side. Self-checks per tracked run as in memory
//     (the tracker's exact counts, no uninspectable session, 100k flows), and
//     every frame the generator sent came back, from the link it belongs to,
//     byte for byte, none refused by a full TX ring.
//  2. Memory, measured with rte_malloc_get_socket_stats (and glibc's
//     mallinfo2 for the C++ arrays) around building each table: the
//     subscriber table with 1M bindings and with --big-table (10M) bindings
//     (with its insert rate and lookup latency), the flow table and the
//     per-worker limit records at their configured sizes. Memory is
//     preallocated at those sizes, so per binding / flow / record is per
//     unit of capacity.
//  3. RADIUS bindings per second: Accounting-Start updates (binding_update,
//     as the RADIUS parser hands them on) bound in the data plane alone
//     (dpdk_data_plane::bind per address); then through subscriber_identity as
//     sekishod runs it (the history decides, the data plane follows with the
//     batch's undo log), one commit per batch of 256 (the listener's
//     set_commit batching), into a fresh SQLite file in /tmp;
//     then, with --udp N, real Accounting-Request datagrams from a client
//     thread through radius::accounting_listener on 127.0.0.1, answered after
//     the commit.
//
// Human-readable lines first; the last line is one JSON object.
//
// Options: --packets N      per run (default 16M)
//          --reps N         repetitions (default 5)
//          --subscribers N  bound subscribers (default 1,000,000)
//          --flows N        concurrent SMTP connections (default 100,000)
//          --frames N       frames per set, a multiple of 64 (default 4096)
//          --smtp-share P   percent of the frames that are SMTP (default 20)
//          --big-table N    bindings for the large-table test (default 10M; 0: skip)
//          --radius N       updates per RADIUS run (default 100,000)
//          --udp N          updates through the UDP listener (default 50,000; 0: skip)
//          --memory MB      EAL memory (default 4096)
//          --pages P        thp (default) | 4k, as in op25b_bench: the frame mbufs
//          --tables P       thp (default) | 4k: the EAL's memory, where the lookup
//                           tables are (see memfd_create below)
//          --fleet          fleet mode on vs off (docs/performance.md, "Fleet mode"): each
//                           repetition also runs the tracked pipeline over the mixed set
//                           twice back to back, alone ("off") and while a control thread on
//                           another CPU runs a fleet link ("on"; fleet_control below:
//                           campaign_sync to a redis-server this bench starts, 100 ms
//                           batches, a peer gateway's bits merged back into the campaign
//                           table the workers use), alternating which goes first. Same
//                           self-checks, plus: the link synced during every "on" run and
//                           brought fleet bits back.
//          --memif on|off   the tracked set through net_memif too (default on; off with
//                           --fleet unless given; needs no hugepages)
//          --memif-packets N  per forwarder and repetition through memif (default 4M)
//          --short          100k subscribers, 10k connections, 4M packets, 2 repetitions,
//                           no big table, 10k RADIUS updates (2k over UDP), 1 GiB, 256k
//                           packets through memif: every self-check runs, the figures are
//                           rough (options after it override)
#include <rte_cycles.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "control/identity/binding.h"
#include "control/identity/binding_history.h"
#include "backends/dpdk/dpdk_data_plane.h"
#include "dataplane/limits/mail_tracker.h"
#include "dataplane/net/packet_parser.h"
#include "dataplane/net/wire.h"
#include "dataplane/pipeline.h"
#include "control/policy/policy.h"
#include "control/identity/radius_accounting.h"
#include "control/identity/subscriber_identity.h"
#include "dataplane/limits/subscriber_table.h"
#include "dataplane/worker_counters.h"
#include "tests/support/frame_builder.h"
#include "bench_support.h"
#include "bench/fleet_bench_support.h"
#include "bench/memif_pair.h"
#include "dataplane/worker.h"
#include "control/fleet/campaign_sync.h"
#include "dataplane/inspect/campaign_table.h"

// Without hugepages the EAL backs its memory with a memfd (shared memory),
// which transparent huge pages do not cover unless shmem THP is enabled
// system-wide (here: never). Refusing memfd_create while the EAL starts makes
// it fall back to private anonymous memory (its own documented fallback),
// which advise_eal_memory_huge() can then put on 2 MiB pages: the lookup
// tables (subscriber table, flow and limit hashes, account records) sit on
// huge pages as in a deployment. --tables 4k keeps the EAL's default.
namespace {
bool refuse_memfd = false;
}
extern "C" int memfd_create(const char* name, unsigned int flags) noexcept {
    if (refuse_memfd) {
        errno = ENOSYS;
        return -1;
    }
    return static_cast<int>(syscall(SYS_memfd_create, name, flags));
}

namespace {

using namespace sekisho;
using namespace sekisho::bench;
using sekisho::test::frame_builder;
namespace tb = sekisho::test;

struct options {
    uint64_t packets = 16ull << 20;
    unsigned reps = 5;
    uint32_t subscribers = 1000000;
    uint32_t flows = 100000;
    unsigned frames = 4096;
    unsigned smtp_share = 20;
    uint32_t big_table = 10000000;
    uint32_t radius = 100000;
    uint32_t udp = 50000;
    unsigned memory_mb = 4096;
    bool thp = true;         // frame mbufs on transparent huge pages
    bool tables_thp = true;  // the EAL's memory (tables) on transparent huge pages
    bool fleet = false;      // also a tracked run per repetition with a fleet link running (--fleet)
    int memif = -1;          // the tracked set through net_memif: 1 on, 0 off, -1 unset (on unless --fleet)
    uint64_t memif_packets = 4ull << 20;  // per forwarder and repetition through memif
};

// ------------------------------------------------------------ subscribers --

constexpr uint32_t multiplier = 2654435761u;  // odd: a bijection modulo any power of two

uint64_t mix64(uint64_t x) {  // splitmix64's finaliser
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Subscriber i's IPv4 address, in the policy's dynamic 100.64.0.0/10;
// distinct for i < 2^22. 100.64.0.0/16 is the static range (business
// customers, allowed port 25 by OP25B).
uint32_t subscriber4(uint32_t i) { return 0x64400000u | ((i * multiplier) & 0x3fffffu); }
bool static4(uint32_t a) { return (a >> 16) == 0x6440u; }
// Every fourth subscriber is dual-stack: a delegated /56 in 2400::/16.
bool dual_stack(uint32_t i) { return i % 4 == 0; }
std::array<uint8_t, 16> subscriber6(uint32_t i) {
    std::array<uint8_t, 16> a{};
    const uint32_t v = (i * multiplier) & 0xffffffu;  // distinct for i < 2^24
    a[0] = 0x24;
    a[2] = static_cast<uint8_t>(v >> 16);
    a[3] = static_cast<uint8_t>(v >> 8);
    a[4] = static_cast<uint8_t>(v);
    return a;  // bytes 5 and 6 (the rest of the /56) zero
}
std::string account_name(uint32_t i) {
    char b[40];
    std::snprintf(b, sizeof b, "u%07u@bb.example.jp", i);
    return b;
}
uint32_t keys_for(uint64_t subscribers) { return static_cast<uint32_t>(subscribers + (subscribers + 3) / 4); }

ip_prefix prefix4(uint32_t a) {
    ip_prefix p;
    p.family = 4;
    p.length = 32;
    wire::store32(p.bytes.data(), a);
    return p;
}
ip_prefix prefix6(const std::array<uint8_t, 16>& a, uint8_t length) {
    ip_prefix p;
    p.family = 6;
    p.length = length;
    p.bytes = a;
    return p;
}

std::string ip4_string(uint32_t host_order) {
    in_addr a{};
    a.s_addr = htonl(host_order);
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, buf, sizeof buf);
    return buf;
}
std::string ip6_string(const std::array<uint8_t, 16>& b) {
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, b.data(), buf, sizeof buf);
    return buf;
}

// ----------------------------------------------------------------- policy --

std::string policy_yaml(uint32_t flows_per_worker, uint32_t max_bindings, uint32_t max_accounts) {
    return R"(version: 1
ports:
  smtp: [25]
  submission: [587, 465]
  implicit_tls: [465]
subscribers:
  dynamic: [100.64.0.0/10, "2400::/16"]
  static: [100.64.0.0/16]
  ipv6_prefix_length: 56
op25b:
  mode: enforce
  action: reset
limits:
  - name: conn-rate
    scope: address
    measure: connections
    max: 20
    window: 1s
    burst: 40
    action: drop-syn
  - name: msgs-per-address
    scope: address
    measure: messages
    max: 10000
    window: 1h
    action: tempfail
  - name: msgs-per-account
    scope: account
    measure: messages
    max: 10000
    window: 1h
    action: tempfail
  - name: rcpts-per-account
    scope: account
    measure: recipients
    max: 100000
    window: 1h
    action: tempfail
  - name: rcpt-per-message
    scope: address
    measure: recipients_per_message
    max: 100
    action: tempfail
  - name: rejected-rcpts
    scope: account
    measure: rejected_recipients
    max: 10000
    window: 1h
    action: tempfail
tracking:
  flows_per_worker: )" +
           std::to_string(flows_per_worker) + R"(
  flow_idle_timeout: 300s
  subscribers_per_worker: 262144
  max_bindings: )" +
           std::to_string(max_bindings) + R"(
  max_accounts: )" +
           std::to_string(max_accounts) + "\n";
}

// ----------------------------------------------------------------- memory --

struct mem_use {
    int64_t rte = 0, heap = 0;
    int64_t total() const { return rte + heap; }
    mem_use operator-(const mem_use& o) const { return {rte - o.rte, heap - o.heap}; }
};

mem_use mem_now() {
    mem_use m;
    for (unsigned i = 0; i < rte_socket_count(); ++i) {
        rte_malloc_socket_stats s{};
        if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(i), &s) == 0)
            m.rte += static_cast<int64_t>(s.heap_allocsz_bytes);
    }
    const struct mallinfo2 mi = mallinfo2();
    m.heap = static_cast<int64_t>(mi.uordblks + mi.hblkhd);
    return m;
}

double mib(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

// The j-th of n synthetic table keys: 80% IPv4 /32, 20% IPv6 /56, distinct.
subscriber_key table_key(uint64_t j, uint64_t n) {
    if (j < n / 5 * 4) return subscriber_key::v4(static_cast<uint32_t>(j) * multiplier);
    const uint64_t v = (j * 0x9e3779b97f4a7c15ull) & ((uint64_t{1} << 40) - 1);  // a bijection on 40 bits
    std::array<uint8_t, 16> a{};
    a[0] = 0x24;
    a[1] = 0x01;
    for (unsigned b = 0; b < 5; ++b) a[2 + b] = static_cast<uint8_t>(v >> (8 * b));
    return subscriber_key::v6(a.data(), 56);
}

struct table_figures {
    bool fit = false;
    std::string error;
    uint32_t bindings = 0;
    int64_t bytes = 0;
    double bytes_per_binding = 0, insert_per_s = 0, lookup_ns = 0;
};

table_figures measure_subscriber_table(const char* name, uint32_t n) {
    table_figures f;
    f.bindings = n;
    const mem_use before = mem_now();
    try {
        subscriber_table t(name, n, nullptr);
        const auto t0 = std::chrono::steady_clock::now();
        for (uint32_t j = 0; j < n; ++j)
            if (!t.bind(table_key(j, n), j + 1)) throw std::runtime_error("table full at " + std::to_string(j));
        const double fill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        f.bytes = (mem_now() - before).total();
        f.bytes_per_binding = static_cast<double>(f.bytes) / n;
        f.insert_per_s = n / fill_s;
        // Lookups of bound keys in a scattered order (key construction included).
        const uint32_t lookups = std::min<uint32_t>(n, 1000000);
        uint64_t sum = 0;
        const uint64_t c0 = rte_rdtsc_precise();
        for (uint32_t q = 0; q < lookups; ++q) sum += t.lookup(table_key((uint64_t{q} * 2654435761u) % n, n));
        const uint64_t c1 = rte_rdtsc_precise();
        f.lookup_ns = static_cast<double>(c1 - c0) / static_cast<double>(rte_get_tsc_hz()) * 1e9 / lookups;
        if (sum == 0) throw std::runtime_error("lookups found nothing");
        f.fit = t.size() == n;
    } catch (const std::exception& e) {
        f.error = e.what();
    }
    return f;
}

// ----------------------------------------------------------- SMTP traffic --

enum class gtype : uint8_t { open, msg, pipelined, rejected, churn };
constexpr unsigned gtype_count = 5;

struct seg_spec {
    bool from_client;
    uint8_t flags;
    std::string payload;
};

std::string message_body(size_t target) {
    std::string b =
        "From: <user@example.jp>\r\nTo: <friend@example.net>\r\nSubject: limits bench\r\n"
        "Message-ID: <bench@example.jp>\r\n\r\n";
    const std::string line = "Sekisho limits benchmark: a line of message text, seventy-odd bytes.\r\n";
    while (b.size() + line.size() + 3 <= target) b += line;
    return b + ".\r\n";
}

// The segments of one exchange, in order.
std::vector<seg_spec> group_segments(gtype t, size_t body) {
    using namespace tcp_flag;
    const uint8_t pa = psh | ack;
    std::vector<seg_spec> s;
    auto c = [&](uint8_t f, std::string p = {}) { s.push_back({true, f, std::move(p)}); };
    auto sv = [&](uint8_t f, std::string p = {}) { s.push_back({false, f, std::move(p)}); };
    const std::string mail = "MAIL FROM:<user@example.jp> SIZE=" + std::to_string(body) + "\r\n";
    const std::string rcpt = "RCPT TO:<friend@example.net>\r\n";
    const std::string queued = "250 2.0.0 Ok: queued as 4Xb3Kq1zZ9z\r\n";
    auto open = [&] {
        c(syn);
        sv(syn | ack);
        c(ack);
        sv(pa, "220 mx.example.net ESMTP\r\n");
        c(pa, "EHLO client.example.jp\r\n");
        sv(pa, "250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
    };
    auto message = [&] {
        c(pa, mail);
        sv(pa, "250 2.1.0 Ok\r\n");
        c(pa, rcpt);
        sv(pa, "250 2.1.5 Ok\r\n");
        c(pa, "DATA\r\n");
        sv(pa, "354 End data with <CR><LF>.<CR><LF>\r\n");
        c(pa, message_body(body));
        sv(pa, queued);
    };
    switch (t) {
    case gtype::open:
        open();
        break;
    case gtype::msg:
        message();
        c(ack);
        break;
    case gtype::pipelined:
        c(pa, mail + rcpt + "DATA\r\n");
        sv(pa, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
        c(pa, message_body(body));
        sv(pa, queued);
        c(ack);
        break;
    case gtype::rejected:
        c(pa, mail);
        sv(pa, "250 2.1.0 Ok\r\n");
        c(pa, "RCPT TO:<nobody@example.net>\r\n");
        sv(pa, "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown\r\n");
        c(pa, "RSET\r\n");
        sv(pa, "250 2.0.0 Ok\r\n");
        c(ack);
        break;
    case gtype::churn:
        open();
        message();
        c(pa, "QUIT\r\n");
        sv(pa | fin, "221 2.0.0 Bye\r\n");
        c(fin | ack);
        break;
    }
    return s;
}

// What one exchange must make the tracker count.
// What a number of groups must produce. The only events the traffic may raise are the
// mail_session events of the connections that end (one per churn group: established, then
// closed); a block, a limit hit or any other event is a failure of the run.
struct expectation {
    uint64_t commands = 0, messages = 0, recipients = 0, rejected = 0, created = 0, ended = 0;
    void add(gtype t) {
        switch (t) {
        case gtype::open: commands += 1, created += 1; break;               // EHLO
        case gtype::msg:
        case gtype::pipelined: commands += 3, messages += 1, recipients += 1; break;  // MAIL RCPT DATA
        case gtype::rejected: commands += 3, messages += 1, recipients += 1, rejected += 1; break;  // + RSET
        case gtype::churn: commands += 5, messages += 1, recipients += 1, created += 1, ended += 1; break;
        }
    }
};

// Layer 2: subscribers arrive plain (60%), VLAN-tagged (20%) or over PPPoE
// (20%); the core side is plain (80%) or tagged.
struct l2_choice {
    int kind = 0;  // 0 plain, 1 VLAN, 2 PPPoE
    uint16_t id = 0;
};
l2_choice pick_l2(std::mt19937_64& rng, bool access) {
    const unsigned r = static_cast<unsigned>(rng() % 100);
    if (access) {
        if (r < 20) return {1, static_cast<uint16_t>(100 + rng() % 100)};
        if (r < 40) return {2, static_cast<uint16_t>(1 + rng() % 60000)};
        return {};
    }
    return r < 20 ? l2_choice{1, static_cast<uint16_t>(2000 + rng() % 100)} : l2_choice{};
}
void apply_l2(frame_builder& f, l2_choice c) {
    if (c.kind == 1) f.vlan(c.id);
    if (c.kind == 2) f.pppoe(c.id);
}

// A segment's frame with placeholder addresses, ports and numbers: the
// rewrite fills them in before each pass.
tb::bytes template_frame(const seg_spec& s, uint8_t family, l2_choice access, l2_choice core) {
    frame_builder f;
    apply_l2(f, s.from_client ? access : core);
    const char* sub = family == 4 ? "100.64.0.1" : "2400::1";
    const char* srv = family == 4 ? "11.0.0.1" : "2a03::1";
    if (family == 4)
        f.ipv4(s.from_client ? sub : srv, s.from_client ? srv : sub);
    else
        f.ipv6(s.from_client ? sub : srv, s.from_client ? srv : sub);
    f.tcp(s.from_client ? 40000 : 587, s.from_client ? 587 : 40000).flags(s.flags).window(64240);
    if (s.flags & tcp_flag::syn) f.tcp_options({2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7});
    if (!s.payload.empty()) f.payload(tb::bytes(s.payload.begin(), s.payload.end()));
    f.pad_to(60);
    return f.build();
}

struct seg {
    rte_mbuf* m;
    uint16_t l3, l4, payload;
    uint8_t family, flags;
    bool from_client;
};

// A segment's template frame as bytes, `frame` its index in its set; `where` (the seg without
// its mbuf) what rewrite() needs to know about it.
struct seg_bytes {
    uint32_t frame;
    seg where;
};

seg_bytes make_seg_bytes(std::vector<tb::bytes>& frames, const seg_spec& s, uint8_t family, l2_choice access,
                         l2_choice core) {
    frames.push_back(template_frame(s, family, access, core));
    const tb::bytes& f = frames.back();
    parsed_packet p;
    parse_frame(f.data(), static_cast<uint32_t>(f.size()), p);
    if (p.kind != frame_kind::ip_tcp || p.ip_version != family)
        throw std::runtime_error("an SMTP template frame does not parse as TCP");
    return {static_cast<uint32_t>(frames.size() - 1),
            {nullptr, p.l3_offset, p.l4_offset, static_cast<uint16_t>(s.payload.size()), family, s.flags,
             s.from_client}};
}

seg make_seg(rte_mempool* pool, const seg_spec& s, uint8_t family, l2_choice access, l2_choice core) {
    std::vector<tb::bytes> one;
    seg r = make_seg_bytes(one, s, family, access, core).where;
    r.m = to_mbuf(pool, one[0]);
    return r;
}

struct group {
    gtype type;
    uint8_t family;
    std::vector<seg> segs;
};

struct group_bytes {
    gtype type;
    uint8_t family;
    std::vector<seg_bytes> segs;
};

// `groups` over the frames of a set in mbufs (`mbufs[i]`: the set's frame i).
std::vector<group> groups_on(const std::vector<group_bytes>& groups, rte_mbuf* const* mbufs) {
    std::vector<group> r;
    r.reserve(groups.size());
    for (const group_bytes& gb : groups) {
        group g{gb.type, gb.family, {}};
        for (const seg_bytes& sb : gb.segs) {
            g.segs.push_back(sb.where);
            g.segs.back().m = mbufs[sb.frame];
        }
        r.push_back(std::move(g));
    }
    return r;
}

// One TCP connection as both ends number it.
struct endpoint {
    std::array<uint8_t, 16> sub{}, srv{};  // subscriber and server address (IPv4 in the first 4 bytes)
    uint16_t sport = 0, dport = 0;          // subscriber's port, server's port
    uint32_t cseq = 0, sseq = 0;            // next sequence number from the client, from the server
    uint32_t messages = 0;                  // MAIL FROMs the tracked runs sent on it
};

// Segment `s`'s sequence and acknowledgement numbers on the connection, which
// it advances past the segment.
struct seq_ack {
    uint32_t seq, ack;
};
seq_ack advance(const seg& s, endpoint& e) {
    uint32_t& next = s.from_client ? e.cseq : e.sseq;
    const seq_ack n{next, (s.flags & tcp_flag::ack) ? (s.from_client ? e.sseq : e.cseq) : 0};
    next += s.payload + ((s.flags & tcp_flag::syn) ? 1 : 0) + ((s.flags & tcp_flag::fin) ? 1 : 0);
    return n;
}

// Gives segment `s` the connection's addresses, ports and next numbers, and
// advances them past it; recomputes the checksums.
void rewrite(const seg& s, endpoint& e) {
    uint8_t* d = rte_pktmbuf_mtod(s.m, uint8_t*);
    uint8_t* ip = d + s.l3;
    uint8_t* tcp = d + s.l4;
    const uint8_t* src = s.from_client ? e.sub.data() : e.srv.data();
    const uint8_t* dst = s.from_client ? e.srv.data() : e.sub.data();
    const auto [seq, ack] = advance(s, e);

    size_t tcp_len;
    uint32_t pseudo;
    if (s.family == 4) {
        std::memcpy(ip + 12, src, 4);
        std::memcpy(ip + 16, dst, 4);
        const unsigned ihl = (ip[0] & 15u) * 4;
        ip[10] = ip[11] = 0;
        wire::store16(ip + 10, tb::internet_checksum(ip, ihl));
        tcp_len = wire::load16(ip + 2) - ihl;
        pseudo = tb::detail::sum(ip + 12, 8);
    } else {
        std::memcpy(ip + 8, src, 16);
        std::memcpy(ip + 24, dst, 16);
        tcp_len = wire::load16(ip + 4);
        pseudo = tb::detail::sum(ip + 8, 32);
    }
    pseudo += 6 + static_cast<uint32_t>(tcp_len);
    wire::store16(tcp, s.from_client ? e.sport : e.dport);
    wire::store16(tcp + 2, s.from_client ? e.dport : e.sport);
    wire::store32(tcp + 4, seq);
    wire::store32(tcp + 8, ack);
    tcp[16] = tcp[17] = 0;
    wire::store16(tcp + 16, tb::internet_checksum(tcp, tcp_len, pseudo));
}

// The connections: `f4` IPv4 and `f6` IPv6 long-lived ones (opened once,
// kept), and churn connections made up on demand.
class flow_book {
public:
    flow_book(uint32_t f4, uint32_t f6, uint32_t subscribers)
        : f4_(f4), f6_(f6), churn4_(std::min<uint32_t>(50000, subscribers / 4)),
          churn6_(std::min<uint32_t>(10000, subscribers / 8)) {
        flows_.reserve(f4 + f6);
        for (uint32_t k = 0; k < f4; ++k) flows_.push_back(make(4, 4 * k + 1, static_cast<uint16_t>(20000 + k % 30000), k));
        for (uint32_t k = 0; k < f6; ++k)
            flows_.push_back(make(6, 8 * k, static_cast<uint16_t>(20000 + k % 30000), uint64_t{1} << 40 | k));
    }
    uint32_t count(uint8_t family) const { return family == 4 ? f4_ : f6_; }
    endpoint& long_flow(uint8_t family, uint32_t k) { return flows_[(family == 4 ? 0 : f4_) + k]; }
    // The n-th churn connection: a bound subscriber outside the long-lived
    // ones (from a pool of 50k IPv4 / 10k IPv6, so that per-address limit
    // state stays within the worker's table), a fresh port.
    endpoint churn(uint8_t family, uint64_t n) const {
        const auto port = static_cast<uint16_t>(50000 + n % 15000);
        if (family == 4) return make(4, static_cast<uint32_t>(4 * (n % churn4_) + 2), port, uint64_t{2} << 40 | n);
        return make(6, static_cast<uint32_t>(8 * (n % churn6_) + 4), port, uint64_t{3} << 40 | n);
    }
    uint32_t subscriber_of(uint8_t family, uint32_t k) const { return family == 4 ? 4 * k + 1 : 8 * k; }

    uint32_t cursor4 = 0, cursor6 = 0;
    uint64_t churn_n = 0;
    uint64_t passes_committed = 0;  // assign_pass calls that advanced the connections

private:
    static endpoint make(uint8_t family, uint32_t subscriber, uint16_t sport, uint64_t salt) {
        endpoint e;
        const uint64_t h = mix64(salt), h2 = mix64(salt ^ 0x5eb15e);
        if (family == 4) {
            const uint32_t a = subscriber4(subscriber);
            wire::store32(e.sub.data(), a);
            wire::store32(e.srv.data(), 0x0b000000u + static_cast<uint32_t>(h % 0x3f000000u));  // 11.0.0.0 - 73.255.255.255
            e.dport = static4(a) ? 25 : 587;
        } else {
            e.sub = subscriber6(subscriber);
            e.sub[7] = static_cast<uint8_t>(subscriber * 7);  // a /64 inside the /56, a fixed interface id
            const uint64_t iid = mix64(subscriber);
            for (unsigned b = 0; b < 8; ++b) e.sub[8 + b] = static_cast<uint8_t>(iid >> (8 * b));
            e.srv[0] = 0x2a;
            e.srv[1] = 0x03;
            for (unsigned b = 2; b < 16; ++b) e.srv[b] = static_cast<uint8_t>((b < 10 ? h : h2) >> (8 * (b % 8)));
            e.dport = 587;
        }
        e.sport = sport;
        e.cseq = static_cast<uint32_t>(h >> 32);
        e.sseq = static_cast<uint32_t>(h2);
        return e;
    }

    uint32_t f4_, f6_, churn4_, churn6_;
    std::vector<endpoint> flows_;
};

// Gives every group of the set its connection for the next pass. `commit`:
// the tracked run, which advances the connections; otherwise the same writes
// go to scratch copies. `write` false: the connections advance as with
// commit, the frames are left alone (the frames went out of a memif
// generator, which rewrote its own copies: measure_memif below).
void assign_pass(std::vector<group>& groups, flow_book& fb, bool commit, bool write = true) {
    uint32_t c4 = fb.cursor4, c6 = fb.cursor6;
    uint64_t n = fb.churn_n;
    for (group& g : groups) {
        if (g.type == gtype::churn) {
            endpoint e = fb.churn(g.family, n++);
            if (write)
                for (const seg& s : g.segs) rewrite(s, e);
            continue;
        }
        uint32_t& c = g.family == 4 ? c4 : c6;
        endpoint& real = fb.long_flow(g.family, c);
        c = c + 1 == fb.count(g.family) ? 0 : c + 1;
        endpoint scratch = real;
        endpoint& e = commit ? real : scratch;
        for (const seg& s : g.segs)
            if (write)
                rewrite(s, e);
            else
                advance(s, e);
        ++e.messages;  // every exchange on a long-lived connection has one MAIL FROM
    }
    if (commit) {
        fb.cursor4 = c4;
        fb.cursor6 = c6;
        fb.churn_n = n;
        ++fb.passes_committed;
    }
}

// Other traffic, both ways: 70% IPv4; 75% TCP (443, 80), 25% UDP (443, 53).
// Upstream 60% minimum-size, 15% 100-600 bytes, 25% full-size; downstream
// 25% / 15% / 60%.
class nonmail_gen {
public:
    nonmail_gen(uint32_t subscribers, std::mt19937_64& rng) : subscribers_(subscribers), rng_(rng) {}

    tb::bytes frame(ingress in) {
        const bool up = in == ingress::access;
        frame_builder f;
        apply_l2(f, pick_l2(rng_, up));
        std::string sub, remote;
        if (pick(100) < 70) {
            sub = ip4_string(subscriber4(pick(subscribers_)));
            remote = ip4_string(0x0b000000u + pick(0x3f000000u));
            f.ipv4(up ? sub : remote, up ? remote : sub);
        } else {
            auto a = subscriber6(pick(std::max<uint32_t>(1, subscribers_ / 4)) * 4);
            for (unsigned b = 7; b < 16; ++b) a[b] = static_cast<uint8_t>(pick(256));
            std::array<uint8_t, 16> r{};
            r[0] = 0x2a;
            r[1] = 0x03;
            for (unsigned b = 2; b < 16; ++b) r[b] = static_cast<uint8_t>(pick(256));
            sub = ip6_string(a);
            remote = ip6_string(r);
            f.ipv6(up ? sub : remote, up ? remote : sub);
        }
        const auto eph = static_cast<uint16_t>(32768 + pick(28000));
        if (pick(100) < 75) {
            const uint16_t svc = pick(100) < 70 ? 443 : 80;
            f.tcp(up ? eph : svc, up ? svc : eph)
                .flags(pick(100) < 5 ? tb::tcp_flags_syn : tb::tcp_flags_ack)
                .seq(static_cast<uint32_t>(rng_()))
                .ack(static_cast<uint32_t>(rng_()));
        } else {
            const uint16_t svc = pick(100) < 80 ? 443 : 53;
            f.udp(up ? eph : svc, up ? svc : eph);
        }
        const uint32_t r = pick(100);
        const size_t header = f.build().size();
        size_t target = 60;
        if (r >= (up ? 75u : 40u))
            target = 1514;
        else if (r >= (up ? 60u : 25u))
            target = 100 + pick(500);
        if (target > header) f.payload(target - header);
        f.pad_to(60);
        return f.build();
    }

private:
    uint32_t pick(uint32_t n) { return static_cast<uint32_t>(rng_() % n); }
    uint32_t subscribers_;
    std::mt19937_64& rng_;
};

// A frame set as bytes: made before the EAL starts, so that the memif generator (forked
// before it) sends exactly these frames.
struct traffic_bytes {
    std::vector<tb::bytes> frames;   // bursts of burst_size, in order
    std::vector<ingress> burst_in;   // per burst
    std::vector<group_bytes> groups;
    expectation expect;              // per pass
    unsigned groups_by_type[gtype_count] = {};
    uint64_t smtp_frames = 0, bytes = 0;
};

struct traffic_set {
    std::vector<rte_mbuf*> mbufs;    // bursts of burst_size, in order
    std::vector<ingress> burst_in;   // per burst
    std::vector<group> groups;
    expectation expect;              // per pass
    unsigned groups_by_type[gtype_count] = {};
    uint64_t smtp_frames = 0, bytes = 0;
    unsigned bursts() const { return static_cast<unsigned>(burst_in.size()); }
};

traffic_set to_mbufs(rte_mempool* pool, const traffic_bytes& tb) {
    traffic_set t;
    for (const auto& f : tb.frames) t.mbufs.push_back(to_mbuf(pool, f));
    t.burst_in = tb.burst_in;
    t.groups = groups_on(tb.groups, t.mbufs.data());
    t.expect = tb.expect;
    std::copy(std::begin(tb.groups_by_type), std::end(tb.groups_by_type), std::begin(t.groups_by_type));
    t.smtp_frames = tb.smtp_frames;
    t.bytes = tb.bytes;
    return t;
}

// The measured frame set: bursts alternate access (even) and core (odd).
// Each group's segments go to increasing bursts of their direction (a reply
// always in a later burst than its command), scattered over the set, at most
// `cap` SMTP frames a burst; the rest of each burst is other traffic, and
// each burst's frames are shuffled.
traffic_bytes make_mixed_set(const options& o, unsigned share, const flow_book& fb, std::mt19937_64& rng) {
    traffic_bytes t;
    const unsigned B = o.frames / burst_size;
    const unsigned target = o.frames * share / 100;
    const unsigned cap = std::min<unsigned>(burst_size, (burst_size * share * 2 + 99) / 100 + 2);
    std::vector<tb::bytes> made;                 // in the order made
    std::vector<std::vector<uint32_t>> placed(B);  // per burst, indices into `made`
    unsigned smtp = 0, failures = 0, long4 = 0, long6 = 0;
    while (smtp < target && failures < 1000) {
        const unsigned w = static_cast<unsigned>(rng() % 10);
        const gtype type = w < 4 ? gtype::msg : w < 7 ? gtype::pipelined : w < 9 ? gtype::rejected : gtype::churn;
        const uint8_t family = rng() % 100 < 80 ? 4 : 6;
        unsigned& longs = family == 4 ? long4 : long6;
        if (type != gtype::churn && longs >= fb.count(family)) {
            ++failures;
            continue;
        }
        const auto specs = group_segments(type, 300 + rng() % 1100);
        std::vector<unsigned> at(specs.size());
        bool fits = false;
        for (unsigned attempt = 0; attempt < 8 && !fits; ++attempt) {
            fits = true;
            unsigned b = static_cast<unsigned>(rng() % B) & ~1u;  // every group starts with the client
            for (size_t k = 0; k < specs.size(); ++k) {
                const unsigned parity = specs[k].from_client ? 0 : 1;
                if (k > 0) {
                    b = at[k - 1] + 1;
                    if ((b & 1) != parity) ++b;
                    if (rng() % 3 == 0) b += 2;  // sometimes a round-trip later
                }
                while (b < B && placed[b].size() >= cap) b += 2;
                if (b >= B) {
                    fits = false;
                    break;
                }
                at[k] = b;
            }
        }
        if (!fits) {
            ++failures;
            continue;
        }
        group_bytes g{type, family, {}};
        const l2_choice access = pick_l2(rng, true), core = pick_l2(rng, false);
        for (size_t k = 0; k < specs.size(); ++k) {
            g.segs.push_back(make_seg_bytes(made, specs[k], family, access, core));
            placed[at[k]].push_back(g.segs.back().frame);
            t.bytes += made.back().size();
        }
        smtp += static_cast<unsigned>(specs.size());
        if (type != gtype::churn) ++longs;
        t.expect.add(type);
        ++t.groups_by_type[static_cast<unsigned>(type)];
        t.groups.push_back(std::move(g));
    }
    t.smtp_frames = smtp;

    nonmail_gen gen(o.subscribers, rng);
    std::vector<uint32_t> order;  // the set's frames, as indices into `made`
    for (unsigned b = 0; b < B; ++b) {
        const ingress in = b % 2 == 0 ? ingress::access : ingress::core;
        std::vector<uint32_t> frames = placed[b];
        while (frames.size() < burst_size) {
            made.push_back(gen.frame(in));
            t.bytes += made.back().size();
            frames.push_back(static_cast<uint32_t>(made.size() - 1));
        }
        // Keep each group's order within a burst irrelevant: a group has at
        // most one segment per burst, so any order of the burst is causal.
        std::shuffle(frames.begin(), frames.end(), rng);
        order.insert(order.end(), frames.begin(), frames.end());
        t.burst_in.push_back(in);
    }
    std::vector<uint32_t> position(made.size());
    for (uint32_t i = 0; i < order.size(); ++i) position[order[i]] = i;
    for (group_bytes& g : t.groups)
        for (seg_bytes& sb : g.segs) sb.frame = position[sb.frame];
    t.frames.reserve(order.size());
    for (uint32_t i : order) t.frames.push_back(std::move(made[i]));
    return t;
}

// --------------------------------------------------------------- the runs --

struct view {
    uint64_t rx = 0, forwarded = 0, blocked = 0, limited = 0, malformed = 0, events = 0, ring_full = 0;
    uint64_t commands = 0, messages = 0, recipients = 0, rejected = 0, created = 0, ended = 0, expired = 0;
    uint64_t uninspectable = 0, tls = 0, tempfails = 0, resets = 0, syns_dropped = 0, flow_full = 0,
             state_full = 0, hits = 0, reset_failures = 0;
};

view read_view(const worker_counters& c) {
    view v;
    for (const port_counters& p : c.port) {
        v.rx += p.rx_packets.load();
        v.forwarded += p.forwarded.load();
        v.blocked += p.blocked.load();
        v.limited += p.limited.load();
        v.malformed += p.malformed.load();
        v.reset_failures += p.reset_failures.load();
    }
    v.events = c.events_emitted.load();
    v.ring_full = c.events_ring_full.load();
    const auto& m = c.mail;
    v.commands = m.commands.load();
    v.messages = m.messages.load();
    v.recipients = m.recipients.load();
    v.rejected = m.rejected_recipients.load();
    v.created = m.flows_created.load();
    v.ended = m.flows_ended.load();
    v.expired = m.flows_expired.load();
    v.uninspectable = m.uninspectable.load();
    v.tls = m.tls.load();
    v.tempfails = m.tempfails_sent.load();
    v.resets = m.resets_sent.load();
    v.syns_dropped = m.syns_dropped.load();
    v.flow_full = m.flow_table_full.load();
    v.state_full = m.subscriber_state_full.load();
    for (const counter& h : m.limit_hits) v.hits += h.load();
    return v;
}

// The tracked pipeline did exactly what `times` x `e` requires, passing
// `packets` frames, and holds `flows` connections afterwards.
bool check_tracked(const char* name, const view& a, const view& b, uint64_t packets, uint64_t times,
                   const expectation& e, uint64_t flows, uint64_t flows_want, uint64_t anomalies) {
    struct item {
        const char* what;
        uint64_t got, want;
    };
    const item items[] = {
        {"rx", b.rx - a.rx, packets},
        {"forwarded", b.forwarded - a.forwarded, packets},
        {"blocked", b.blocked - a.blocked, 0},
        {"limited", b.limited - a.limited, 0},
        {"malformed", b.malformed - a.malformed, 0},
        {"events (mail_session, one per ended connection)", b.events - a.events, times * e.ended},
        {"events_ring_full", b.ring_full - a.ring_full, 0},
        {"smtp_commands", b.commands - a.commands, times * e.commands},
        {"smtp_messages", b.messages - a.messages, times * e.messages},
        {"smtp_recipients", b.recipients - a.recipients, times * e.recipients},
        {"smtp_rejected_recipients", b.rejected - a.rejected, times * e.rejected},
        {"flows_created", b.created - a.created, times * e.created},
        {"flows_ended", b.ended - a.ended, times * e.ended},
        {"flows_expired", b.expired - a.expired, 0},
        {"uninspectable", b.uninspectable - a.uninspectable, 0},
        {"tls", b.tls - a.tls, 0},
        {"tempfails_sent", b.tempfails - a.tempfails, 0},
        {"resets_sent", b.resets - a.resets, 0},
        {"syns_dropped", b.syns_dropped - a.syns_dropped, 0},
        {"flow_table_full", b.flow_full - a.flow_full, 0},
        {"subscriber_state_full", b.state_full - a.state_full, 0},
        {"limit_hits", b.hits - a.hits, 0},
        {"reset_failures", b.reset_failures - a.reset_failures, 0},
        {"tracked_flows", flows, flows_want},
        {"unexpected_output", anomalies, 0},
    };
    bool ok = true;
    for (const item& i : items)
        if (i.got != i.want) {
            if (ok) std::fprintf(stderr, "FAIL %s:", name);
            std::fprintf(stderr, " %s %lu (want %lu)", i.what, i.got, i.want);
            ok = false;
        }
    if (!ok) std::fprintf(stderr, "\n");
    return ok;
}

// What a burst must give back: all its frames forwarded, nothing injected.
// Anything else is counted (the self-check fails) and injected mbufs freed.
inline void settle(rte_mbuf** b, uint16_t n, burst_output& out, uint64_t& anomalies) {
    if (out.n_reply == 0 && out.n_forward == n) [[likely]]
        return;
    ++anomalies;
    if (out.n_reply) rte_pktmbuf_free_bulk(out.reply, out.n_reply);
    for (uint16_t i = 0; i < out.n_forward; ++i)
        if (std::find(b, b + n, out.forward[i]) == b + n) rte_pktmbuf_free(out.forward[i]);
}

// One burst through `fn` with the refcount trick.
template <class F>
void push(F&& fn, ingress in, rte_mbuf** b, uint16_t n, uint64_t& anomalies) {
    burst_output out;
    for (uint16_t i = 0; i < n; ++i) rte_mbuf_refcnt_set(b[i], 2);
    fn(in, b, n, out);
    for (uint16_t i = 0; i < n; ++i) rte_mbuf_refcnt_set(b[i], 1);
    settle(b, n, out, anomalies);
}

// The calling thread's CPU time, and its involuntary context switches so far.
uint64_t thread_cpu_ns() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

long involuntary_switches() {
    rusage ru{};
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_nivcsw;
}

// `passes` times: rewrite the groups (not timed), push the set (timed), then call `between`
// (not timed; the tracked runs drain the event ring there, as the control thread does while
// the workers run, so that a long run does not fill the ring).
template <class F, class Between = void (*)()>
run_result run(traffic_set& t, uint64_t passes, flow_book& fb, bool commit, uint64_t& anomalies, F&& fn,
               Between&& between = [] {}) {
    uint64_t cycles = 0, cpu_ns = 0;
    const unsigned B = t.bursts();
    burst_output out;
    const long switches0 = involuntary_switches();
    for (uint64_t p = 0; p < passes; ++p) {
        assign_pass(t.groups, fb, commit);
        const uint64_t c0 = thread_cpu_ns();
        const uint64_t t0 = rte_rdtsc_precise();
        for (unsigned b = 0; b < B; ++b) {
            rte_mbuf** m = t.mbufs.data() + static_cast<size_t>(b) * burst_size;
            for (unsigned i = 0; i < burst_size; ++i) rte_mbuf_refcnt_set(m[i], 2);
            out.n_forward = out.n_reply = 0;
            fn(t.burst_in[b], m, burst_size, out);
            for (unsigned i = 0; i < burst_size; ++i) rte_mbuf_refcnt_set(m[i], 1);
            settle(m, burst_size, out, anomalies);
        }
        cycles += rte_rdtsc_precise() - t0;
        cpu_ns += thread_cpu_ns() - c0;
        between();
    }
    return {passes * t.mbufs.size(), cycles, cpu_ns, static_cast<uint64_t>(involuntary_switches() - switches0)};
}

// The layer 2 of the 64 handshake templates per family (IPv4, IPv6) that open_flows pushes,
// drawn before the frame sets (the order the frames have always been drawn in).
constexpr unsigned open_templates = 64;
using open_l2 = std::array<std::vector<std::pair<l2_choice, l2_choice>>, 2>;  // (access, core)
open_l2 draw_open_l2(std::mt19937_64& rng) {
    open_l2 r;
    for (auto& family : r)
        for (unsigned j = 0; j < open_templates; ++j) {
            const l2_choice access = pick_l2(rng, true), core = pick_l2(rng, false);
            family.emplace_back(access, core);
        }
    return r;
}

// What opening the long-lived connections does to their numbers (open_flows), without frames.
void advance_opened(flow_book& fb) {
    const auto specs = group_segments(gtype::open, 0);
    for (uint8_t family : {uint8_t{4}, uint8_t{6}})
        for (uint32_t k = 0; k < fb.count(family); ++k)
            for (const auto& sp : specs)
                advance({nullptr, 0, 0, static_cast<uint16_t>(sp.payload.size()), family, sp.flags, sp.from_client},
                        fb.long_flow(family, k));
}

// Opens every long-lived connection through the tracked pipeline: 64
// template handshakes per family, rewritten for 64 connections at a time and
// pushed phase by phase (all SYNs, then all SYN-ACKs, ...).
template <class F>
void open_flows(rte_mempool* pool, flow_book& fb, const open_l2& l2, uint64_t& anomalies, F&& fn) {
    constexpr unsigned K = open_templates;
    const auto specs = group_segments(gtype::open, 0);
    for (uint8_t family : {uint8_t{4}, uint8_t{6}}) {
        std::vector<group> templates;
        for (unsigned j = 0; j < K; ++j) {
            group g{gtype::open, family, {}};
            const auto [access, core] = l2[family == 4 ? 0 : 1][j];
            for (const auto& s : specs) g.segs.push_back(make_seg(pool, s, family, access, core));
            templates.push_back(std::move(g));
        }
        const uint32_t count = fb.count(family);
        for (uint32_t start = 0; start < count; start += K) {
            const unsigned n = std::min<uint32_t>(K, count - start);
            for (unsigned j = 0; j < n; ++j)
                for (const seg& s : templates[j].segs) rewrite(s, fb.long_flow(family, start + j));
            if (start == 0) {  // the rewrite makes valid checksums
                for (const seg& s : templates[0].segs) {
                    const uint8_t* d = rte_pktmbuf_mtod(s.m, const uint8_t*);
                    if (family == 4 && tb::internet_checksum(d + s.l3, (d[s.l3] & 15u) * 4) != 0)
                        throw std::runtime_error("rewrite: bad IPv4 header checksum");
                }
            }
            for (size_t k = 0; k < specs.size(); ++k) {
                rte_mbuf* burst[K];
                for (unsigned j = 0; j < n; ++j) burst[j] = templates[j].segs[k].m;
                const ingress in = specs[k].from_client ? ingress::access : ingress::core;
                for (unsigned off = 0; off < n; off += burst_size)
                    push(fn, in, burst + off, static_cast<uint16_t>(std::min<unsigned>(burst_size, n - off)),
                         anomalies);
            }
        }
        for (auto& g : templates)
            for (auto& s : g.segs) rte_pktmbuf_free(s.m);
    }
}

// ------------------------------------------------------------------ RADIUS --

// A day ago: within the listener's time bounds (radius::time_bounds).
const int64_t radius_epoch = static_cast<int64_t>(std::time(nullptr)) - 86400;

// Subscriber i's Accounting-Start as the RADIUS parser hands it on.
binding_update start_update(uint32_t i) {
    binding_update u;
    u.kind = binding_kind::start;
    u.account = account_name(i);
    char sid[24];
    std::snprintf(sid, sizeof sid, "%08X", i);
    u.session_id = sid;
    u.ipv4 = prefix4(subscriber4(i));
    if (dual_stack(i)) u.ipv6_prefixes.push_back(prefix6(subscriber6(i), 56));
    u.nas_address = "192.0.2.1";
    u.nas_identifier = "bng-1";
    u.event_time = radius_epoch + i / 1000;
    u.event_time_from_packet = true;
    return u;
}

// A Start without the history: every address bound in the data-plane table.
void apply_to_dataplane(dpdk_data_plane& gw, const binding_update& u) {
    for (const ip_prefix& p : u.addresses()) gw.bind(p, u.account);
}

struct radius_figures {
    uint32_t updates = 0;
    uint64_t addresses = 0;
    double dp_per_s = 0, history_per_s = 0, history_first_per_s = 0, history_last_per_s = 0;
    size_t history_rows = 0;
    double udp_per_s = 0;
    uint32_t udp_sent = 0, udp_answered = 0;
    bool udp_ok = true;
    std::string udp_note;
};

// An Accounting-Request (Start) for subscriber i, authenticated with `secret`.
std::vector<uint8_t> radius_start(uint8_t id, uint32_t i, const std::string& secret) {
    std::vector<uint8_t> p = {radius::code_accounting_request, id, 0, 0};
    p.resize(radius::header_size, 0);
    auto attr = [&](uint8_t type, const void* v, size_t n) {
        p.push_back(type);
        p.push_back(static_cast<uint8_t>(2 + n));
        const auto* b = static_cast<const uint8_t*>(v);
        p.insert(p.end(), b, b + n);
    };
    auto attr32 = [&](uint8_t type, uint32_t v) {
        uint8_t b[4];
        wire::store32(b, v);
        attr(type, b, 4);
    };
    const binding_update u = start_update(i);
    attr32(radius::attr_acct_status_type, 1);
    attr(radius::attr_user_name, u.account.data(), u.account.size());
    attr(radius::attr_acct_session_id, u.session_id.data(), u.session_id.size());
    attr32(radius::attr_framed_ip_address, subscriber4(i));
    attr32(radius::attr_nas_ip_address, 0xc0000201u);  // 192.0.2.1
    attr(radius::attr_nas_identifier, "bng-1", 5);
    attr32(radius::attr_event_timestamp, static_cast<uint32_t>(u.event_time));
    if (dual_stack(i)) {
        const auto a = subscriber6(i);
        uint8_t v[9] = {0, 56};
        std::memcpy(v + 2, a.data(), 7);
        attr(radius::attr_delegated_ipv6_prefix, v, sizeof v);
    }
    wire::store16(p.data() + 2, static_cast<uint16_t>(p.size()));
    const radius::authenticator auth = radius::request_authenticator(p, secret);
    std::memcpy(p.data() + 4, auth.data(), auth.size());
    return p;
}

// `n` Accounting-Requests from a client thread (at most `window` awaiting
// their response, like a NAS's outstanding-request limit) to a listener this
// thread polls; every update bound in the data plane and committed to
// `history` per poll, before the responses go out.
void radius_udp(subscriber_identity& identity, uint32_t first, uint32_t n, radius_figures& f) {
    const std::string secret = "limits-bench-shared-secret-0123456789";
    radius::listener_config lc;
    lc.address = "127.0.0.1";
    lc.port = 0;
    lc.receive_buffer_bytes = 4 << 20;
    uint64_t log_lines = 0;
    std::string first_log;
    radius::accounting_listener listener(
        lc,
        radius::load_clients_text("clients:\n  - address: 127.0.0.1\n    secret: \"" + secret + "\"\n    name: bench\n",
                                  "bench-clients.yaml"),
        [&](const binding_update& u) { return identity.apply(u); },
        [&](const std::string& line) {
            if (log_lines++ == 0) first_log = line;
        });
    listener.set_commit([&] { return identity.commit(); });

    std::vector<std::vector<uint8_t>> packets;
    packets.reserve(n);
    for (uint32_t k = 0; k < n; ++k) packets.push_back(radius_start(static_cast<uint8_t>(k), first + k, secret));

    const int sock = ::socket(AF_INET, SOCK_DGRAM, 0);
    if (sock < 0) throw std::runtime_error("radius client: socket failed");
    // Room for a whole window of responses (each datagram costs ~1 KiB of
    // buffer): with the default (~208 KiB) a client thread descheduled on a
    // loaded machine lost answers the listener had sent.
    const int client_buffer = 4 << 20;
    ::setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &client_buffer, sizeof client_buffer);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(listener.port());
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(sock, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
        ::close(sock);
        throw std::runtime_error("radius client: connect failed");
    }
    std::atomic<bool> client_done{false};
    std::atomic<uint32_t> answered{0};
    uint32_t sent = 0;
    constexpr uint32_t window = 512;  // ~0.5 MiB of socket buffer; the listener asks for 4 MiB
    const auto t0 = std::chrono::steady_clock::now();
    std::thread client([&] {
        // Off the EAL's lcore: the NAS is another machine.
        cpu_set_t set;
        CPU_ZERO(&set);
        for (int c = 1; c < CPU_SETSIZE && c < static_cast<int>(std::thread::hardware_concurrency()); ++c)
            CPU_SET(c, &set);
        if (CPU_COUNT(&set) > 0) pthread_setaffinity_np(pthread_self(), sizeof set, &set);
        uint8_t buf[4096];
        uint32_t got = 0;
        while (got < n) {
            while (sent < n && sent - got < window) {
                if (::send(sock, packets[sent].data(), packets[sent].size(), 0) < 0) break;
                ++sent;
            }
            pollfd pfd{sock, POLLIN, 0};
            if (::poll(&pfd, 1, 2000) <= 0) break;  // lost requests: give up, reported
            while (::recv(sock, buf, sizeof buf, MSG_DONTWAIT) > 0) {
                if (buf[0] == radius::code_accounting_response) ++got;
            }
            answered.store(got, std::memory_order_relaxed);
        }
        client_done.store(true);
    });
    while (!client_done.load()) {
        pollfd pfd{listener.fd(), POLLIN, 0};
        if (::poll(&pfd, 1, 20) > 0) listener.poll_once();
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    client.join();
    ::close(sock);
    f.udp_sent = sent;
    f.udp_answered = answered.load();
    f.udp_per_s = f.udp_answered / s;
    const radius::listener_counters& c = listener.counters();
    f.udp_ok = f.udp_answered == n && c.accepted == n && c.starts == n && c.malformed == 0 &&
               c.bad_authenticator == 0 && c.apply_failed == 0 && c.unknown_client == 0;
    if (!f.udp_ok)
        f.udp_note = "sent " + std::to_string(sent) + ", answered " + std::to_string(f.udp_answered) + ", accepted " +
                     std::to_string(c.accepted) + ", malformed " + std::to_string(c.malformed) +
                     ", bad authenticator " + std::to_string(c.bad_authenticator) + ", apply failed " +
                     std::to_string(c.apply_failed) + (first_log.empty() ? "" : "; first log: " + first_log);
}

radius_figures radius_bindings(dpdk_data_plane& gw, const options& o, const std::string& db_path, bool& ok) {
    radius_figures f;
    f.updates = o.radius;
    const uint32_t base = o.subscribers;  // new subscribers: sessions that start now

    // Data plane alone.
    std::vector<binding_update> updates;
    updates.reserve(o.radius);
    for (uint32_t k = 0; k < o.radius; ++k) updates.push_back(start_update(base + k));
    for (const auto& u : updates) f.addresses += u.addresses().size();
    auto t0 = std::chrono::steady_clock::now();
    for (const auto& u : updates) apply_to_dataplane(gw, u);
    f.dp_per_s = o.radius / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // Data plane and history as sekishod runs them (subscriber_identity: the
    // history decides, the data plane follows), 256 updates per transaction.
    updates.clear();
    for (uint32_t k = 0; k < o.radius; ++k) updates.push_back(start_update(base + o.radius + k));
    identity_config ic;
    ic.history_database = db_path;
    subscriber_identity identity(gw, ic, [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); });
    binding_history& history = *identity.history();
    t0 = std::chrono::steady_clock::now();
    std::vector<double> at;  // seconds after each batch
    for (size_t off = 0; off < updates.size(); off += 256) {
        const size_t n = std::min<size_t>(256, updates.size() - off);
        for (size_t k = 0; k < n; ++k) identity.apply(updates[off + k]);
        identity.commit();
        at.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    f.history_per_s = o.radius / at.back();
    // The rate as the history grows: its first and last tenth.
    const size_t tenth = std::max<size_t>(1, at.size() / 10);
    f.history_first_per_s = 256.0 * tenth / at[tenth - 1];
    f.history_last_per_s = 256.0 * tenth / (at.back() - at[at.size() - 1 - tenth]);

    // Every binding of both runs is in the table and the history.
    uint32_t missing = 0;
    for (uint32_t k = 0; k < 2 * o.radius; k += 997) {
        const uint32_t i = base + k;
        const uint32_t id = gw.accounts().id_of(account_name(i));
        if (gw.subscribers().lookup(subscriber_key::v4(subscriber4(i))) != id) ++missing;
        if (dual_stack(i) && gw.subscribers().lookup(subscriber_key::v6(subscriber6(i).data(), 56)) != id) ++missing;
    }
    const size_t open_rows = history.open_bindings().size();
    f.history_rows = open_rows;
    uint64_t rows_expected = 0;
    for (uint32_t k = 0; k < o.radius; ++k) rows_expected += dual_stack(base + o.radius + k) ? 2 : 1;
    if (missing || open_rows != rows_expected) {
        std::fprintf(stderr, "FAIL radius: %u sampled bindings missing from the table, %zu open history rows (want %lu)\n",
                     missing, open_rows, rows_expected);
        ok = false;
    }

    if (o.udp) {
        radius_udp(identity, base + 2 * o.radius, o.udp, f);
        if (!f.udp_ok) {
            std::fprintf(stderr, "FAIL radius udp: %s\n", f.udp_note.c_str());
            ok = false;
        }
    }
    return f;
}

// ------------------------------------------------------- the bench, step by step --

// Where the EAL's memory, and so the lookup tables, sits.
struct eal_tables {
    const void* mem = nullptr;  // an address inside it, for anon_huge_kib()
    size_t advised = 0;         // bytes advised MADV_HUGEPAGE; 0: 4 KiB pages
    std::string thp_mode;       // the system's THP setting, as the kernel shows it
};

// Asks for huge pages on the EAL's memory unless --tables 4k; prints what it got.
eal_tables advise_tables(const options& o) {
    eal_tables t;
    t.advised = o.tables_thp ? advise_eal_memory_huge(t.mem) : 0;
    {
        std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
        std::getline(in, t.thp_mode);
    }
    std::printf("tables: EAL memory %s (THP: %s)\n",
                t.advised ? "advised MADV_HUGEPAGE: rte_malloc'd tables on 2 MiB pages, as with hugepages"
                : o.tables_thp ? "on 4 KiB pages (MADV_HUGEPAGE refused)"
                               : "on 4 KiB pages (--tables 4k)",
                t.thp_mode.c_str());
    return t;
}

// The flow table's size per worker: the long-lived connections, churn connections in flight.
uint32_t flows_per_worker(const options& o) { return o.flows + o.flows / 4 + 1024; }
constexpr uint32_t records_per_worker = 262144;

// The tables' memory, measured before anything else is in the heap.
struct memory_figures {
    table_figures subscribers, big;  // at --subscribers and at --big-table bindings
    double bytes_per_flow = 0, bytes_per_record = 0;
};

// The subscriber table at --subscribers bindings (it must fit) and at --big-table.
void measure_subscriber_tables(const options& o, memory_figures& m) {
    const table_figures& t1 = m.subscribers = measure_subscriber_table("bench_sub_1m", o.subscribers);
    if (!t1.fit) throw std::runtime_error("subscriber table of " + std::to_string(o.subscribers) + ": " + t1.error);
    std::printf("subscriber table, %u bindings: %.1f MiB, %.1f bytes/binding; %.2f M inserts/s, lookup %.0f ns\n",
                t1.bindings, mib(t1.bytes), t1.bytes_per_binding, t1.insert_per_s / 1e6, t1.lookup_ns);
    if (!o.big_table) return;
    const table_figures& tbig = m.big = measure_subscriber_table("bench_sub_big", o.big_table);
    if (tbig.fit)
        std::printf("subscriber table, %u bindings: fits, %.1f MiB, %.1f bytes/binding; %.2f M inserts/s, "
                    "lookup %.0f ns\n",
                    tbig.bindings, mib(tbig.bytes), tbig.bytes_per_binding, tbig.insert_per_s / 1e6, tbig.lookup_ns);
    else
        std::printf("subscriber table, %u bindings: DOES NOT FIT in %u MiB: %s\n", tbig.bindings, o.memory_mb,
                    tbig.error.c_str());
}

// The mail tracker's flow table and limit records at their configured sizes: each measured
// as what a tracker of that size takes over one of size 1.
void measure_tracker_tables(const options& o, memory_figures& m) {
    const uint32_t flows = flows_per_worker(o);
    worker_counters wc;
    auto tracker_bytes = [&](unsigned id, uint32_t flow_slots, uint32_t records) {
        mail_state s;
        s.flows = flow_slots;
        s.subscriber_records = records;
        const mem_use before = mem_now();
        mail_tracker t(id, s, nullptr, wc, nullptr);
        return (mem_now() - before).total();
    };
    const int64_t base = tracker_bytes(90, 1, 1);
    const int64_t flow_table = tracker_bytes(91, flows, 1) - base;
    const int64_t record_table = tracker_bytes(92, 1, records_per_worker) - base;
    m.bytes_per_flow = static_cast<double>(flow_table) / flows;
    m.bytes_per_record = static_cast<double>(record_table) / records_per_worker;
    std::printf("flow table (%u per worker): %.1f MiB, %.0f bytes per flow (sizeof(mail_flow) %zu, key %zu, "
                "rest: rte_hash and slot overhead)\n",
                flows, mib(flow_table), m.bytes_per_flow, sizeof(mail_flow), sizeof(flow_key));
    std::printf("limit records (%u per worker): %.1f MiB, %.0f bytes per address/prefix record; account records "
                "%zu bytes each (shared)\n",
                records_per_worker, mib(record_table), m.bytes_per_record, sizeof(account_record));
}

// The gateway's policy: its flow table, and room for the bound subscribers and for those the
// RADIUS runs add.
policy gateway_policy(const options& o) {
    const uint64_t radius_subscribers = 2ull * o.radius + o.udp;
    const uint32_t max_bindings = keys_for(o.subscribers + radius_subscribers) + 1024;
    const uint32_t max_accounts = static_cast<uint32_t>(o.subscribers + radius_subscribers + 1024);
    return load_policy_text(policy_yaml(flows_per_worker(o), max_bindings, max_accounts), "limits-bench.yaml");
}

// Binds every subscriber (its IPv4 /32, and its /56 if dual-stack) to its own account, and
// prints the time and what the gateway took (`before` and `built`: around its construction).
// Returns the number of bindings.
uint32_t bind_subscribers(dpdk_data_plane& gw, const options& o, const mem_use& before, const mem_use& built) {
    const auto t0 = std::chrono::steady_clock::now();
    for (uint32_t i = 0; i < o.subscribers; ++i) {
        const std::string account = account_name(i);
        gw.bind(prefix4(subscriber4(i)), account);
        if (dual_stack(i)) gw.bind(prefix6(subscriber6(i), 56), account);
    }
    const double bind_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const uint32_t bound = gw.subscribers().size();
    const mem_use bound_mem = mem_now();
    std::printf("gateway: %u subscribers bound (%u bindings, %u accounts) in %.2f s; gateway %.0f MiB "
                "(DPDK %.0f MiB), bindings and account names +%.0f MiB (C++ heap)\n",
                o.subscribers, bound, gw.accounts().size(), bind_s, mib((built - before).total()),
                mib((built - before).rte), mib((bound_mem - built).heap));
    return bound;
}

// What the runs compare: the gateway's tracked pipeline, a pipeline without tracking (OP25B
// only) over the same policy, and the null forwarder. Each as `run` and `push` take it.
struct variants {
    const compiled_policy& cp;
    pipeline& tracked;
    worker_counters& tc;  // the tracked pipeline's
    worker_counters uc;   // the untracked pipeline's
    pipeline untracked;

    explicit variants(dpdk_data_plane& gw)
        : cp(*gw.store().current()), tracked(gw.pipe(0)), tc(gw.counters(0)),
          untracked(1, gw.pool(), uc, nullptr, packet_clock::live(), nullptr) {}

    auto tracked_fn() {
        return [&p = tracked, &c = cp](ingress in, rte_mbuf** b, uint16_t n, burst_output& out) {
            p.process(c, in, b, n, out);
        };
    }
    auto untracked_fn() {
        return [&p = untracked, &c = cp](ingress in, rte_mbuf** b, uint16_t n, burst_output& out) {
            p.process(c, in, b, n, out);
        };
    }
    static constexpr auto null_fn = [](ingress, rte_mbuf** b, uint16_t n, burst_output& out) {
        null_forward(b, n, out);
    };
};

// The frame mbufs: on transparent huge pages when --pages thp and granted.
struct frame_memory {
    thp_region region;
    rte_mempool* pool = nullptr;
    bool on_thp = false;
};

void make_frame_pool(const options& o, frame_memory& m) {
    m.pool = frame_pool("bench_frames", 2 * o.frames + 2 * 64 * 6 + 512, o.thp, m.region, m.on_thp);
    m.on_thp = m.on_thp && backed_by_huge_pages(m.region.addr);
}

// Opens the long-lived connections through the tracked pipeline and checks that it did
// exactly that; prints how long it took.
bool open_long_flows(dpdk_data_plane& gw, variants& v, const options& o, rte_mempool* pool, flow_book& fb,
                     const open_l2& l2) {
    uint64_t anomalies = 0;
    const view v0 = read_view(v.tc);
    const auto t0 = std::chrono::steady_clock::now();
    open_flows(pool, fb, l2, anomalies, v.tracked_fn());
    const double open_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    expectation e;
    e.add(gtype::open);
    const bool ok = check_tracked("open", v0, read_view(v.tc), 6ull * o.flows, o.flows, e, gw.tracked_flows(),
                                  o.flows, anomalies);
    std::printf("flows: %u SMTP connections open (%u IPv4, %u IPv6; handshake, greeting, EHLO) in %.2f s\n",
                static_cast<unsigned>(gw.tracked_flows()), fb.count(4), fb.count(6), open_s);
    return ok;
}

// The frame set's make-up, and where the frames and the tables sit.
void print_frames(const traffic_set& mixed, const frame_memory& fm, const eal_tables& tables, const options& o) {
    const uint64_t frames = mixed.mbufs.size();
    std::printf("frames: %lu per set in %u bursts (access/core alternating), mean %lu bytes; %lu SMTP segments "
                "(%.1f%%) in %zu exchanges per pass: %u msg, %u pipelined, %u rejected, %u churn\n",
                frames, mixed.bursts(), mixed.bytes / frames, mixed.smtp_frames,
                100.0 * static_cast<double>(mixed.smtp_frames) / static_cast<double>(frames), mixed.groups.size(),
                mixed.groups_by_type[1], mixed.groups_by_type[2], mixed.groups_by_type[3], mixed.groups_by_type[4]);
    const char* tunables = std::getenv("GLIBC_TUNABLES");
    std::printf("memory: frames on %s; EAL heap %.0f MiB on huge pages; flow and limit records (bounded_table "
                "slots, C++ heap) on %s\n",
                fm.on_thp ? "transparent huge pages" : o.thp ? "4 KiB pages (no THP granted)" : "4 KiB pages (--pages 4k)",
                tables.mem ? static_cast<double>(anon_huge_kib(tables.mem)) / 1024 : 0.0,
                tunables && std::strstr(tunables, "hugetlb") ? "huge pages if glibc granted them (GLIBC_TUNABLES)"
                : tables.thp_mode.find("[always]") != std::string::npos ? "transparent huge pages (THP always)"
                                                                          : "4 KiB pages");
}

// Everything a repetition pushes through the variants, and how often.
struct run_plan {
    traffic_set& mixed;  // with SMTP exchanges
    traffic_set& plain;  // the same kind of traffic without SMTP
    uint64_t frames, passes, packets, plain_passes;
};

run_plan plan_runs(traffic_set& mixed, traffic_set& plain, const options& o) {
    const uint64_t frames = mixed.mbufs.size();
    const uint64_t passes = std::max<uint64_t>(1, o.packets / frames);
    const run_plan p{mixed, plain, frames, passes, passes * frames, std::max<uint64_t>(1, passes / 4)};
    std::printf("runs: %lu packets each (%lu passes), %u repetitions, interleaved: null, tracked, untracked; then "
                "tracked and untracked over non-mail only, %lu packets\n",
                p.packets, p.passes, o.reps, p.plain_passes * frames);
    return p;
}

// Warm-up and a first check.
bool warm_up(dpdk_data_plane& gw, variants& v, const run_plan& p, flow_book& fb, const options& o) {
    uint64_t anomalies = 0;
    const view v0 = read_view(v.tc);
    run(p.mixed, 4, fb, true, anomalies, v.tracked_fn(), [&] { gw.drain_events(); });
    const bool ok = check_tracked("warm-up", v0, read_view(v.tc), 4 * p.frames, 4, p.mixed.expect,
                                  gw.tracked_flows(), o.flows, anomalies);
    run(p.mixed, 2, fb, false, anomalies, v.untracked_fn());
    run(p.mixed, 2, fb, false, anomalies, variants::null_fn);
    return ok;
}

// ------------------------------------------------------------ fleet mode --

uint64_t realtime_ns() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// What a gateway's control thread does for fleet mode while the workers run, as far as they
// can feel it: every 10 ms (sekishod's turn) it polls a campaign_sync on the gateway's own
// campaign table (the one the workers' content stage counts in), whose thread exchanges the
// table's bits with Redis every 100 ms (the shortest batch period of docs/fleet.md) and brings
// the fleet's bits back into that table by CAS. A peer gateway's campaign_sync runs on the same
// thread with other subscribers of the same fingerprints, so every sync sends new bits and
// merges some back. Both gateways gain 16 subscribers a turn (as content verdicts would).
//
// Threading: the constructor starts the control thread and returns when both links have
// synced once (throws after 10 s); the control thread, and the sync threads it creates, run on
// every CPU but `worker_cpu` (if there is another): the workers' lcore is theirs, as in
// sekishod. Counters are read while it runs; the destructor stops and joins it.
class fleet_control {
public:
    // `first_subscriber`: where this instance's subscriber numbers start (each instance its own,
    // so that every sync carries bits Redis has not seen).
    fleet_control(campaign_table& table, const bench_redis& redis, int worker_cpu, uint64_t first_subscriber)
        : table_(table), redis_(redis), worker_cpu_(worker_cpu), first_(first_subscriber), thread_([this] { run(); }) {
        const auto t0 = wall_clock::now();
        while (syncs_.load() < 1 || peer_syncs_.load() < 1) {
            if (seconds_since(t0) > 10 || failed_.load()) {
                stop_ = true;
                thread_.join();
                throw std::runtime_error("fleet_control: the campaign links did not sync within 10 s: " +
                                         error());
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }
    ~fleet_control() {
        stop_ = true;
        thread_.join();
    }
    fleet_control(const fleet_control&) = delete;
    fleet_control& operator=(const fleet_control&) = delete;

    uint64_t syncs() const { return syncs_.load(); }
    uint64_t bits_sent() const { return bits_sent_.load(); }
    uint64_t merges() const { return merges_.load(); }
    bool link_up() const { return link_up_.load(); }
    bool other_cpu() const { return other_cpu_.load(); }
    std::string error() const {
        std::lock_guard lock(mu_);
        return error_;
    }

private:
    static constexpr uint64_t window_ns = 3600'000'000'000ull;
    static constexpr uint64_t fingerprints = 512;

    void run() {
        cpu_set_t set;
        CPU_ZERO(&set);
        if (sched_getaffinity(0, sizeof set, &set) == 0) {
            cpu_set_t others;
            CPU_ZERO(&others);
            for (int c = 0; c < CPU_SETSIZE; ++c)
                if (c != worker_cpu_) CPU_SET(c, &others);
            // Every online CPU but the worker's; the EAL left this thread on the worker's only.
            if (sched_setaffinity(0, sizeof others, &others) == 0) other_cpu_ = sched_getcpu() != worker_cpu_;
        }
        try {
            campaign_sync_settings cs;
            cs.redis_address = redis_.address();
            cs.redis_password_file = redis_.password_file();
            cs.sync_interval_ns = 100'000'000;
            auto log = [this](const std::string& line) {
                std::lock_guard lock(mu_);
                error_ = line;
            };
            campaign_table peer_table(1u << 12, 1u << 16);
            campaign_sync local(cs, table_, log), peer(cs, peer_table, log);
            uint64_t next = first_;
            while (!stop_) {
                const uint64_t now = realtime_ns();
                for (int i = 0; i < 16; ++i, ++next) {
                    const uint64_t fp = 0xf1ee700000000000ull + next % fingerprints;
                    table_.observe(fp, mix64(2 * next), 1, now, window_ns);
                    peer_table.observe(fp, mix64(2 * next + 1), 1, now, window_ns);
                }
                local.poll(now, window_ns);
                peer.poll(now, window_ns);
                const campaign_sync_counters& c = local.counters();
                syncs_ = c.syncs;
                bits_sent_ = c.bits_sent;
                merges_ = c.merges;
                link_up_ = c.link_up;
                peer_syncs_ = peer.counters().syncs;
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            }
        } catch (const std::exception& e) {
            std::lock_guard lock(mu_);
            error_ = e.what();
            failed_ = true;
        }
    }

    campaign_table& table_;
    const bench_redis& redis_;
    const int worker_cpu_;
    const uint64_t first_;
    std::atomic<bool> stop_{false}, failed_{false}, link_up_{false}, other_cpu_{false};
    std::atomic<uint64_t> syncs_{0}, peer_syncs_{0}, bits_sent_{0}, merges_{0};
    mutable std::mutex mu_;
    std::string error_;
    std::thread thread_;   // last: started once everything it uses is constructed
};

// A fleet on/off pair of runs.
struct fleet_pair {
    run_result off, on;
    uint64_t syncs = 0, merges = 0;   // during the "on" run
};

// The tracked pipeline over the mixed set twice, back to back, each checked like the tracked
// run: once alone ("off") and once while a fleet_control runs ("on"); in repetition `n`'s
// order (even: off first), so that neither always runs second. The "on" run must see the link
// sync and bring fleet bits back (else its figure says nothing).
bool run_fleet_pair(dpdk_data_plane& gw, variants& v, const run_plan& p, flow_book& fb, const options& o,
                    const bench_redis& redis, unsigned n, fleet_pair& r) {
    auto tracked = [&](const char* name, run_result& out) {
        const view v0 = read_view(v.tc);
        uint64_t an = 0;
        out = run(p.mixed, p.passes, fb, true, an, v.tracked_fn(), [&] { gw.drain_events(); });
        return check_tracked(name, v0, read_view(v.tc), p.packets, p.passes, p.mixed.expect, gw.tracked_flows(),
                             o.flows, an);
    };
    bool ok = true;
    if (n % 2 == 0) ok &= tracked("tracked, fleet off", r.off);
    {
        fleet_control fleet(*gw.campaigns(), redis, sched_getcpu(), uint64_t{n} << 32);
        const uint64_t s0 = fleet.syncs(), m0 = fleet.merges();
        ok &= tracked("tracked, fleet on", r.on);
        r.syncs = fleet.syncs() - s0;
        r.merges = fleet.merges() - m0;
        if (r.syncs == 0 || r.merges == 0 || !fleet.link_up()) {
            std::fprintf(stderr, "FAIL fleet on: %lu syncs and %lu cells merged during the run, link %s%s\n", r.syncs,
                         r.merges, fleet.link_up() ? "up" : "down",
                         fleet.error().empty() ? "" : (": " + fleet.error()).c_str());
            ok = false;
        }
        if (!fleet.other_cpu())
            std::printf("fleet on: no CPU but the worker's: the control thread shares it (the figure includes that)\n");
    }
    if (n % 2 == 1) ok &= tracked("tracked, fleet off", r.off);
    return ok;
}

// --fleet: the off and on figures in one clock, medians of the repetitions.
struct fleet_medians {
    double off = 0, on = 0, ratio = 0, ratio_spread = 0;   // cycles/pkt; on/off per repetition
};

// --fleet: each repetition's off and on cycles per packet in one clock.
struct fleet_series {
    std::vector<double> off, on, ratio;
    void add(double off_cpp, double on_cpp) {
        off.push_back(off_cpp);
        on.push_back(on_cpp);
        ratio.push_back(on_cpp / off_cpp);
    }
    fleet_medians medians() const { return {median(off), median(on), median(ratio), spread(ratio)}; }
};

// Every repetition's figures of each variant.
struct repeated_figures {
    std::vector<double> null_mpps, mpps, un_mpps, ratio, cpp, cpp_null, cpp_un, cpp_plain, cpp_plain_un;
    std::vector<double> cpu_cpp, cpu_cpp_un;   // tracked and untracked on the worker thread's CPU clock
    fleet_series fleet_wall, fleet_cpu;   // --fleet: TSC (wall) and the worker thread's CPU clock
    std::vector<double> fleet_syncs;      // --fleet: syncs during each "on" run
};

// One repetition's runs, in this order.
struct repetition {
    run_result null, tracked, untracked, plain_tracked, plain_untracked;
};

// The runs of one repetition, each checked: null, tracked, untracked over the mixed set, then
// tracked and untracked over the set without SMTP.
bool run_repetition(dpdk_data_plane& gw, variants& v, const run_plan& p, flow_book& fb, const options& o,
                    repetition& r) {
    bool ok = true;
    uint64_t an = 0;
    r.null = run(p.mixed, p.passes, fb, false, an, variants::null_fn);
    if (an) {
        std::fprintf(stderr, "FAIL null: %lu bursts did not forward every frame\n", an);
        ok = false;
    }

    view v0 = read_view(v.tc);
    an = 0;
    r.tracked = run(p.mixed, p.passes, fb, true, an, v.tracked_fn(), [&] { gw.drain_events(); });
    ok &= check_tracked("tracked", v0, read_view(v.tc), p.packets, p.passes, p.mixed.expect, gw.tracked_flows(),
                        o.flows, an);

    const view u0 = read_view(v.uc);
    an = 0;
    r.untracked = run(p.mixed, p.passes, fb, false, an, v.untracked_fn());
    const view u1 = read_view(v.uc);
    if (an || u1.rx - u0.rx != p.packets || u1.forwarded - u0.forwarded != p.packets) {
        std::fprintf(stderr, "FAIL untracked: rx %lu forwarded %lu (want %lu) unexpected output %lu\n",
                     u1.rx - u0.rx, u1.forwarded - u0.forwarded, p.packets, an);
        ok = false;
    }

    v0 = read_view(v.tc);
    an = 0;
    r.plain_tracked = run(p.plain, p.plain_passes, fb, false, an, v.tracked_fn(), [&] { gw.drain_events(); });
    ok &= check_tracked("tracked, non-mail", v0, read_view(v.tc), p.plain_passes * p.frames, 0, expectation{},
                        gw.tracked_flows(), o.flows, an);
    r.plain_untracked = run(p.plain, p.plain_passes, fb, false, an, v.untracked_fn());
    ok &= an == 0;
    return ok;
}

// Books repetition `n`'s figures and prints its line.
void record_repetition(const repetition& r, unsigned n, uint64_t hz, repeated_figures& f) {
    f.cpp_plain.push_back(r.plain_tracked.cycles_per_packet());
    f.cpp_plain_un.push_back(r.plain_untracked.cycles_per_packet());
    f.null_mpps.push_back(r.null.mpps(hz));
    f.mpps.push_back(r.tracked.mpps(hz));
    f.un_mpps.push_back(r.untracked.mpps(hz));
    f.ratio.push_back(r.tracked.mpps(hz) / r.null.mpps(hz));
    f.cpp.push_back(r.tracked.cycles_per_packet());
    f.cpp_null.push_back(r.null.cycles_per_packet());
    f.cpp_un.push_back(r.untracked.cycles_per_packet());
    f.cpu_cpp.push_back(r.tracked.cpu_cycles_per_packet(hz));
    f.cpu_cpp_un.push_back(r.untracked.cpu_cycles_per_packet(hz));
    std::printf("rep %u: null %.2f Mpps (%.1f cyc/pkt) | tracked %.2f Mpps (%.1f) | untracked %.2f Mpps (%.1f) "
                "| non-mail: tracked %.1f cyc/pkt, untracked %.1f\n",
                n + 1, r.null.mpps(hz), r.null.cycles_per_packet(), r.tracked.mpps(hz),
                r.tracked.cycles_per_packet(), r.untracked.mpps(hz), r.untracked.cycles_per_packet(),
                r.plain_tracked.cycles_per_packet(), r.plain_untracked.cycles_per_packet());
    std::fflush(stdout);
}

// Hours since the epoch: tells whether an hourly limit window ended during the runs.
int64_t current_hour() {
    return std::chrono::duration_cast<std::chrono::hours>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// The account-scope limit state: each long-lived connection's subscriber is bound to its own
// account (looked up at the SYN), so the account's msgs-per-account cell holds exactly the
// MAIL FROMs sent on that connection (fewer if an hour boundary since `run_hour` started a new
// window meanwhile). Checks a sample; prints how many hold exactly that.
bool check_account_cells(dpdk_data_plane& gw, const compiled_policy& cp, flow_book& fb, int64_t run_hour) {
    int slot = -1;
    for (unsigned i = 0; i < cp.limit_count(); ++i)
        if (std::strcmp(cp.limit(i).name, "msgs-per-account") == 0) slot = cp.limit(i).slot;
    const bool same_window = run_hour == current_hour();
    unsigned sampled = 0, exact = 0, wrong = 0;
    for (uint8_t family : {uint8_t{4}, uint8_t{6}})
        for (uint32_t k = 0; k < fb.count(family); k += 97) {
            const uint32_t sent = fb.long_flow(family, k).messages;
            const uint32_t id = gw.accounts().id_of(account_name(fb.subscriber_of(family, k)));
            const auto booked = slot < 0 ? 0u : static_cast<uint32_t>(gw.accounts().records()[id].cells[slot].word);
            ++sampled;
            if (booked == sent)
                ++exact;
            else if (same_window || booked > sent || (sent > 0 && booked == 0))
                ++wrong;
        }
    std::printf("account cells: %u of %u sampled accounts of long-lived connections hold exactly the messages "
                "sent on their connection\n",
                exact, sampled);
    if (wrong)
        std::fprintf(stderr, "FAIL account limits: %u of %u sampled accounts hold a wrong message count\n", wrong,
                     sampled);
    return wrong == 0;
}

// The medians of the repetitions, and what follows from them.
struct summary {
    double m_null = 0, m = 0, m_un = 0, m_ratio = 0, m_cpp = 0, m_cpp_un = 0, m_cpp_null = 0;
    double smtp_fraction = 0, per_smtp = 0, m_plain = 0, m_plain_un = 0;
    double m_cpu_cpp = 0, m_cpu_cpp_un = 0, per_smtp_cpu = 0;   // the same on the worker's CPU clock
    bool fleet = false;   // --fleet: the figures below are set
    fleet_medians fleet_wall, fleet_cpu;
    double m_fleet_syncs = 0;
};

summary summarize(const repeated_figures& f, const run_plan& p) {
    summary s;
    s.m_null = median(f.null_mpps);
    s.m = median(f.mpps);
    s.m_un = median(f.un_mpps);
    s.m_ratio = median(f.ratio);
    s.m_cpp = median(f.cpp);
    s.m_cpp_un = median(f.cpp_un);
    s.m_cpp_null = median(f.cpp_null);
    s.smtp_fraction = static_cast<double>(p.mixed.smtp_frames) / static_cast<double>(p.frames);
    s.per_smtp = (s.m_cpp - s.m_cpp_un) / s.smtp_fraction;
    s.m_plain = median(f.cpp_plain);
    s.m_cpu_cpp = median(f.cpu_cpp);
    s.m_cpu_cpp_un = median(f.cpu_cpp_un);
    s.per_smtp_cpu = (s.m_cpu_cpp - s.m_cpu_cpp_un) / s.smtp_fraction;
    s.m_plain_un = median(f.cpp_plain_un);
    if (!f.fleet_syncs.empty()) {
        s.fleet = true;
        s.fleet_wall = f.fleet_wall.medians();
        s.fleet_cpu = f.fleet_cpu.medians();
        s.m_fleet_syncs = median(f.fleet_syncs);
    }
    return s;
}

void print_throughput(const summary& s, const repeated_figures& f, unsigned reps) {
    std::printf("median of %u: null forwarder %.2f Mpps (%.1f TSC cycles/pkt)\n", reps, s.m_null, s.m_cpp_null);
    std::printf("median of %u: mixed, tracking + limits %.2f Mpps (%.1f cycles/pkt), ratio to null %.3f\n", reps, s.m,
                s.m_cpp, s.m_ratio);
    std::printf("median of %u: mixed, no tracking (OP25B only) %.2f Mpps (%.1f cycles/pkt)\n", reps, s.m_un,
                s.m_cpp_un);
    std::printf("tracking + limits cost %.1f cycles/pkt over OP25B alone: %.0f cycles per SMTP segment\n",
                s.m_cpp - s.m_cpp_un, s.per_smtp);
    std::printf("the same on the worker thread's CPU clock (its own work, not the time others took from its CPU): "
                "tracking + limits %.1f cycles/pkt, OP25B only %.1f: %.0f cycles per SMTP segment\n",
                s.m_cpu_cpp, s.m_cpu_cpp_un, s.per_smtp_cpu);
    std::printf("non-mail only: %.1f cycles/pkt tracked, %.1f untracked: %.1f cycles/pkt (%.0f per burst) with no "
                "SMTP at all (wants() on every frame, the clock-paced sweep of the flow and limit tables)\n",
                s.m_plain, s.m_plain_un, s.m_plain - s.m_plain_un, (s.m_plain - s.m_plain_un) * burst_size);
    std::printf("spread (max-min)/median: null %.1f%%, tracked %.1f%%, untracked %.1f%%\n", 100 * spread(f.null_mpps),
                100 * spread(f.mpps), 100 * spread(f.un_mpps));
    if (s.fleet)
        std::printf("fleet mode, median of %u: mixed, tracking + limits %.1f cycles/pkt off, %.1f on (a fleet link's "
                    "control thread running, %.0f syncs per run); ratio on/off %.3f (median of the repetitions' "
                    "ratios, spread %.1f%%)\n",
                    reps, s.fleet_wall.off, s.fleet_wall.on, s.m_fleet_syncs, s.fleet_wall.ratio,
                    100 * s.fleet_wall.ratio_spread);
    if (s.fleet)
        std::printf("fleet mode, on the worker thread's CPU clock (its own work, not the time others took from its "
                    "CPU): %.1f cycles/pkt off, %.1f on; ratio on/off %.3f (spread %.1f%%)\n",
                    s.fleet_cpu.off, s.fleet_cpu.on, s.fleet_cpu.ratio, 100 * s.fleet_cpu.ratio_spread);
}

// The RADIUS runs, against a fresh SQLite history in /tmp removed afterwards; prints their
// figures. `ok` turns false if a binding was not applied.
radius_figures measure_radius(dpdk_data_plane& gw, const options& o, bool& ok) {
    const std::string db = "/tmp/sekisho-limits-bench-" + std::to_string(getpid()) + ".sqlite";
    auto remove_db = [&] {
        for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db + suffix).c_str());
    };
    remove_db();
    radius_figures rf;
    try {
        rf = radius_bindings(gw, o, db, ok);
    } catch (...) {
        remove_db();
        throw;
    }
    remove_db();
    const double per_update = static_cast<double>(rf.addresses) / rf.updates;
    std::printf("RADIUS Starts (%.2f addresses each), %u per run: data plane alone %.0f/s; + binding history "
                "(SQLite, 256 per transaction) %.0f/s (the history alone ~%.0f/s; %.0f/s over the first tenth, "
                "%.0f/s over the last, %zu rows at the end)\n",
                per_update, rf.updates, rf.dp_per_s, rf.history_per_s, 1 / (1 / rf.history_per_s - 1 / rf.dp_per_s),
                rf.history_first_per_s, rf.history_last_per_s, rf.history_rows);
    if (o.udp)
        std::printf("RADIUS over UDP (client thread -> accounting_listener -> data plane + history, answered "
                    "after commit): %u answered, %.0f/s\n",
                    rf.udp_answered, rf.udp_per_s);
    std::printf("subscriber table now %u bindings, %u accounts\n", gw.subscribers().size(), gw.accounts().size());
    return rf;
}

// The figures as one JSON line, for scripts.
void print_json(const summary& s, const memory_figures& mem, const radius_figures& rf, const options& o,
                uint32_t bound, bool tables_thp, const std::string& cpu, const std::string& memif_keys) {
    const double per_update = static_cast<double>(rf.addresses) / rf.updates;
    std::printf(
        "{\"bench\":\"limits\",\"mpps_mixed\":%.3f,\"null_mpps\":%.3f,\"ratio_mixed\":%.3f,\"cycles_per_pkt_mixed\":%.1f,"
        "\"flows\":%u,\"subscribers\":%u,\"bytes_per_binding\":%.1f,\"bytes_per_flow\":%.1f,"
        "\"bindings_per_sec\":%.0f,\"bindings_per_sec_with_history\":%.0f,\"cpu\":\"%s\","
        "\"mpps_mixed_untracked\":%.3f,\"cycles_per_pkt_untracked\":%.1f,\"cycles_per_smtp_segment\":%.0f,"
        "\"smtp_share\":%.3f,\"bindings\":%u,\"big_table_bindings\":%u,\"big_table_fit\":%s,"
        "\"bytes_per_binding_big\":%.1f,\"lookup_ns_big\":%.0f,\"bytes_per_limit_record\":%.1f,"
        "\"addresses_per_update\":%.2f,\"bindings_per_sec_udp\":%.0f,\"tables\":\"%s\","
        "\"cycles_per_pkt_nonmail_tracked\":%.1f,\"cycles_per_pkt_nonmail_untracked\":%.1f,"
        "\"cpu_cycles_per_pkt_mixed\":%.1f,\"cpu_cycles_per_pkt_untracked\":%.1f,\"cpu_cycles_per_smtp_segment\":%.0f",
        s.m, s.m_null, s.m_ratio, s.m_cpp, o.flows, o.subscribers, mem.subscribers.bytes_per_binding,
        mem.bytes_per_flow, rf.dp_per_s, rf.history_per_s, json_escape(cpu).c_str(), s.m_un, s.m_cpp_un,
        s.per_smtp, s.smtp_fraction, bound, o.big_table, mem.big.fit ? "true" : "false",
        mem.big.bytes_per_binding, mem.big.lookup_ns, mem.bytes_per_record, per_update, rf.udp_per_s,
        tables_thp ? "thp" : "4k", s.m_plain, s.m_plain_un, s.m_cpu_cpp, s.m_cpu_cpp_un, s.per_smtp_cpu);
    if (s.fleet)
        std::printf(",\"cycles_per_pkt_fleet_off\":%.1f,\"cycles_per_pkt_fleet_on\":%.1f,\"fleet_on_off_ratio\":%.3f,"
                    "\"fleet_ratio_spread\":%.3f,\"fleet_syncs_per_run\":%.0f,\"cpu_cycles_per_pkt_fleet_off\":%.1f,"
                    "\"cpu_cycles_per_pkt_fleet_on\":%.1f,\"fleet_on_off_cpu_ratio\":%.3f",
                    s.fleet_wall.off, s.fleet_wall.on, s.fleet_wall.ratio, s.fleet_wall.ratio_spread,
                    s.m_fleet_syncs, s.fleet_cpu.off, s.fleet_cpu.on, s.fleet_cpu.ratio);
    std::printf("%s}\n", memif_keys.c_str());
}

// ----------------------------------------------- through real PMDs (net_memif) --

// The frames of the throughput runs, drawn before the EAL starts, because the memif generator
// is forked with them before it (memif_pair.h): the connections' first numbers, the handshake
// templates' layer 2, the mixed set and the set without SMTP, from the same seed in the same
// order as ever (so the in-memory runs see the frames they always saw).
struct traffic_plan {
    flow_book fb;
    open_l2 l2;
    traffic_bytes mixed, plain;

    explicit traffic_plan(const options& o) : fb(o.flows - o.flows / 5, o.flows / 5, o.subscribers) {
        std::mt19937_64 rng(20261123);
        l2 = draw_open_l2(rng);
        mixed = make_mixed_set(o, o.smtp_share, fb, rng);
        // The same kind of traffic without SMTP: what tracking costs when there
        // is nothing to track (wants() on every frame, sweep() on every burst).
        plain = make_mixed_set(o, 0, fb, rng);
    }
};

// The generator's frame sets, by index: the mixed set for the tracked pipeline, and the same
// frames for the io forwarder.
constexpr unsigned tracked_set = 0, io_set = 1;

// Tracked passes over the mixed set before the memif runs: the warm-up's and every
// repetition's (three per repetition with --fleet: the fleet pair's two).
uint64_t passes_before_memif(const options& o) {
    const uint64_t passes = std::max<uint64_t>(1, o.packets / o.frames);
    return 4 + uint64_t{o.reps} * passes * (o.fleet ? 3 : 1);
}

// The generator's rewrite (memif_pair's before_pass hook, run in the generator process): its
// own copy of the connections as of the fork, brought before its first pass to where the
// forwarder's stand when the memif runs start (open_flows' handshakes and `catch_up` tracked
// passes: the forwarder checks that count before its first run), then advanced pass by pass as
// assign_pass advances the forwarder's: the tracked set's passes advance the connections, the
// io forwarder's get the same rewrite on scratch copies (as the null forwarder's in memory).
struct generator_rewrite {
    flow_book fb;
    std::vector<group_bytes> groups;
    uint64_t catch_up;
    bool caught_up = false;
    std::vector<group> live[2];  // `groups` over the generator's mbufs, per set

    void operator()(unsigned set, rte_mbuf* const* mbufs) {
        std::vector<group>& g = live[set];
        if (g.empty()) g = groups_on(groups, mbufs);
        if (!caught_up) {
            advance_opened(fb);
            for (uint64_t k = 0; k < catch_up; ++k) assign_pass(g, fb, true, false);
            caught_up = true;
        }
        assign_pass(g, fb, set == tracked_set);
    }
};

// What the memif generator sends: the mixed set twice (tracked, io), each burst onto the link
// of its side (access bursts onto the access link, replies onto the core link), in order.
generator_frames tracked_generator_frames(const options& o, const traffic_plan& tp) {
    auto rw = std::make_shared<generator_rewrite>(generator_rewrite{tp.fb, tp.mixed.groups, passes_before_memif(o)});
    std::vector<uint8_t> sides;
    for (ingress in : tp.mixed.burst_in) sides.push_back(in == ingress::access ? 0 : 1);
    return generator_frames{{tp.mixed.frames, tp.mixed.frames},
                            [rw](unsigned set, uint64_t, rte_mbuf* const* mbufs, size_t) { (*rw)(set, mbufs); },
                            {sides, sides}};
}

// Every frame the generator sent came back: what arrived from the access link left on the
// core link and the rest on the access link, nothing refused by a full TX ring, and the
// generator got each frame back, byte for byte.
bool check_wire(const char* name, const generator_report& g, const tx_view& a, const tx_view& b, uint64_t packets,
                uint64_t to_core, uint64_t bytes) {
    uint64_t tx[2], tx_bytes[2], drops = 0;
    for (unsigned side = 0; side < 2; ++side) {
        tx[side] = b.tx[side] - a.tx[side];
        tx_bytes[side] = b.bytes[side] - a.bytes[side];
        drops += b.drops[side] - a.drops[side];
    }
    const bool ok = g.sent == packets && drops == 0 && tx[1] == to_core && tx[0] == packets - to_core &&
                    g.back[0] == tx[0] && g.back[1] == tx[1] && g.back_bytes[0] == tx_bytes[0] &&
                    g.back_bytes[1] == tx_bytes[1] && tx_bytes[0] + tx_bytes[1] == bytes;
    if (!ok)
        std::fprintf(stderr,
                     "FAIL %s (memif): generator sent %lu (want %lu); forwarder sent %lu to core (want %lu), %lu to "
                     "access (want %lu), %lu bytes (want %lu), TX refused %lu; generator got %lu on core, %lu on "
                     "access\n",
                     name, g.sent, packets, tx[1], to_core, tx[0], packets - to_core, tx_bytes[0] + tx_bytes[1], bytes,
                     drops, g.back[1], g.back[0]);
    return ok;
}

// The two forwarders on the same ports: the bench's io forwarder, and the live worker's turn
// (worker_turn) with the gateway's tracked pipeline, its policy store and counters.
class memif_bench {
public:
    memif_bench(memif_pair& pair, dpdk_data_plane& gw, variants& v, const run_plan& p, flow_book& fb,
                const options& o)
        : pair_(pair), gw_(gw), v_(v), p_(p), fb_(fb), o_(o) {
        w_.id = 0;
        w_.port[0] = pair.access_port();
        w_.port[1] = pair.core_port();
        w_.queue = 0;
        w_.pipe = &v.tracked;
        w_.store = &gw.store();
        w_.counters = &v.tc;
        gw.store().register_reader(0);
        for (ingress in : p.mixed.burst_in) access_frames_ += in == ingress::access ? burst_size : 0;
    }
    ~memif_bench() { gw_.store().unregister_reader(0); }
    memif_bench(const memif_bench&) = delete;
    memif_bench& operator=(const memif_bench&) = delete;

    bool io(const char* name, uint64_t passes, pmd_run& out) {
        const tx_view t0 = read_tx(io_counters_);
        out.r = pair_.run(io_set, passes, [&] { return pair_.io_turn(io_counters_); }, [] {});
        return settle(name, passes, t0, read_tx(io_counters_), out);
    }

    // The tracked pipeline over `passes` passes of the mixed set, checked as in memory; the
    // forwarder's connections advance as the generator's (it rewrote the frames).
    bool tracked(const char* name, uint64_t passes, pmd_run& out) {
        for (uint64_t k = 0; k < passes; ++k) assign_pass(p_.mixed.groups, fb_, true, false);
        const view v0 = read_view(v_.tc);
        const tx_view t0 = read_tx(v_.tc);
        // The event consumer is the control thread's work: drained aside, its time not counted.
        out.r = pair_.run(tracked_set, passes, [&] { return worker_turn(w_, rx_, out_); },
                          [&] { gw_.drain_events(); });
        gw_.drain_events();
        const bool counted = check_tracked(name, v0, read_view(v_.tc), passes * p_.frames, passes, p_.mixed.expect,
                                           gw_.tracked_flows(), o_.flows, 0);
        return settle(name, passes, t0, read_tx(v_.tc), out) && counted;
    }

private:
    bool settle(const char* name, uint64_t passes, const tx_view& t0, const tx_view& t1, pmd_run& out) {
        out.g = pair_.collect(t1.tx[0] - t0.tx[0], t1.tx[1] - t0.tx[1]);
        out.tx_drops = t1.drops[0] + t1.drops[1] - t0.drops[0] - t0.drops[1];
        return check_wire(name, out.g, t0, t1, passes * p_.frames, passes * access_frames_, passes * p_.mixed.bytes);
    }

    memif_pair& pair_;
    dpdk_data_plane& gw_;
    variants& v_;
    const run_plan& p_;
    flow_book& fb_;
    const options& o_;
    uint64_t access_frames_ = 0;
    worker_counters io_counters_;
    live_worker w_;
    rte_mbuf* rx_[burst_size];
    burst_output out_;
};

struct memif_figures : pmd_totals {
    pmd_variant io, tracked;
    std::vector<double> ratio, ratio_median_turn;
};

// Runs per forwarder in a repetition: io and tracked alternate in short runs, so that both
// see the same load from the machine's other work.
constexpr unsigned memif_rounds = 4;

// The runs through net_memif: a checked warm-up, then per repetition memif_rounds times io and
// tracked over the mixed set. Returns the JSON keys, or "" when a check failed.
std::string measure_memif(memif_pair& pair, dpdk_data_plane& gw, variants& v, const run_plan& p, flow_book& fb,
                          const options& o) {
    const uint64_t hz = rte_get_tsc_hz();
    if (fb.passes_committed != passes_before_memif(o)) {
        std::fprintf(stderr, "FAIL memif: %lu tracked passes before the memif runs, the generator was told %lu\n",
                     fb.passes_committed, passes_before_memif(o));
        return "";
    }
    const uint64_t passes = std::max<uint64_t>(1, o.memif_packets / memif_rounds / p.frames);
    std::printf("through net_memif (a generator process on its own lcore, real rx_burst/tx_burst; the set's bursts "
                "onto their own link, one burst in flight so that replies follow their commands): %u x %lu packets "
                "per forwarder and repetition, %u repetitions; cycles of the forwarder's turns that received frames "
                "/ frames, turns preempted (> %.0f us) left out\n",
                memif_rounds, passes * p.frames, o.reps, memif_pair::preempted_turn * 1e6);
    memif_bench b(pair, gw, v, p, fb, o);
    pmd_run w;
    bool ok = b.io("memif warm-up io", 2, w) && b.tracked("memif warm-up tracked", 4, w);
    memif_figures f;
    for (unsigned r = 0; r < o.reps && ok; ++r) {
        pmd_run io, tr;
        for (unsigned k = 0; k < memif_rounds && ok; ++k) {
            pmd_run a, c;
            ok = b.io("memif io", passes, a) && b.tracked("memif tracked", passes, c);
            io.merge(a);
            tr.merge(c);
        }
        if (!ok) break;
        f.add(io, f.io, hz);
        f.add(tr, f.tracked, hz);
        f.ratio.push_back(io.r.cycles_per_packet() / tr.r.cycles_per_packet());
        f.ratio_median_turn.push_back(io.r.median_turn_cost() / tr.r.median_turn_cost());
        std::printf("memif rep %u:\n", r + 1);
        print_pmd_run("io, mixed set", io, hz);
        print_pmd_run("tracked, mixed", tr, hz);
        std::fflush(stdout);
    }
    if (!ok) return "";
    const double ratio = median(f.ratio);
    std::printf("through net_memif, median of %u: io %.1f cycles/pkt (%.2f Mpps), tracking + limits %.1f cycles/pkt "
                "(%.2f Mpps); ratio io/tracked cycles %.3f (goal >= 0.6: %s)\n",
                o.reps, median(f.io.cpp), median(f.io.mpps), median(f.tracked.cpp), median(f.tracked.mpps), ratio,
                ratio >= 0.6 ? "met" : "not met");
    std::printf("through net_memif, median turn: io %.1f / tracked %.1f cycles/pkt (ratio %.3f)\n",
                median(f.io.median_turn), median(f.tracked.median_turn), median(f.ratio_median_turn));
    std::printf("spread (max-min)/median: ratio %.1f%%; cycles io %.1f%%, tracked %.1f%%\n", 100 * spread(f.ratio),
                100 * spread(f.io.cpp), 100 * spread(f.tracked.cpp));
    std::printf("forwarder busy share at least %.1f%% (one burst in flight), %lu of %lu busy turns preempted; "
                "generator TX refused %lu (resent)\n",
                100 * f.min_busy, f.preempted_turns, f.busy_turns, f.gen_refused);
    char json[768];
    std::snprintf(json, sizeof json,
                  ",\"ratio_io_tracked\":%.3f,\"cycles_per_pkt_io_tracked_set\":%.1f,\"cycles_per_pkt_pmd_tracked\":%.1f,"
                  "\"mpps_pmd_tracked\":%.3f,\"mpps_pmd_io_tracked_set\":%.3f,\"spread_ratio_io_tracked\":%.3f,"
                  "\"spread_cycles_pmd_tracked\":%.3f,\"ratio_io_tracked_median_turn\":%.3f,"
                  "\"cycles_per_pkt_io_tracked_set_median_turn\":%.1f,\"cycles_per_pkt_pmd_tracked_median_turn\":%.1f,"
                  "\"pmd_tracked_busy_share_min\":%.3f,\"pmd_tracked_preempted_turns\":%lu",
                  ratio, median(f.io.cpp), median(f.tracked.cpp), median(f.tracked.mpps), median(f.io.mpps),
                  spread(f.ratio), spread(f.tracked.cpp), median(f.ratio_median_turn), median(f.io.median_turn),
                  median(f.tracked.median_turn), f.min_busy, f.preempted_turns);
    return json;
}

// The throughput runs over the long-lived connections, opened first: every repetition
// checked; the medians printed and kept in `s`. False (after printing what failed) if a check failed.
// Then, with `pair`, the tracked set through net_memif (measure_memif), its JSON keys in
// `memif_json`.
bool measure_throughput(dpdk_data_plane& gw, variants& v, const frame_memory& fm, const eal_tables& tables,
                        const options& o, const bench_redis* redis, traffic_plan& tp, memif_pair* pair, summary& s,
                        std::string& memif_json) {
    const uint64_t hz = rte_get_tsc_hz();
    flow_book& fb = tp.fb;
    const int64_t run_hour = current_hour();
    bool ok = open_long_flows(gw, v, o, fm.pool, fb, tp.l2);
    traffic_set mixed = to_mbufs(fm.pool, tp.mixed);
    traffic_set plain = to_mbufs(fm.pool, tp.plain);
    print_frames(mixed, fm, tables, o);
    const run_plan plan = plan_runs(mixed, plain, o);
    ok &= warm_up(gw, v, plan, fb, o);
    repeated_figures f;
    for (unsigned r = 0; r < o.reps && ok; ++r) {
        repetition rep;
        ok &= run_repetition(gw, v, plan, fb, o, rep);
        record_repetition(rep, r, hz, f);
        if (redis && ok) {
            fleet_pair fp;
            ok &= run_fleet_pair(gw, v, plan, fb, o, *redis, r, fp);
            f.fleet_wall.add(fp.off.cycles_per_packet(), fp.on.cycles_per_packet());
            f.fleet_cpu.add(fp.off.cpu_cycles_per_packet(hz), fp.on.cpu_cycles_per_packet(hz));
            f.fleet_syncs.push_back(static_cast<double>(fp.syncs));
            std::printf("rep %u, fleet: tracked %.1f cycles/pkt off, %.1f on (%s first; %lu syncs, %lu cells gained "
                        "fleet bits during it); on the worker's CPU clock %.1f off, %.1f on; preempted %lu off, %lu "
                        "on\n",
                        r + 1, fp.off.cycles_per_packet(), fp.on.cycles_per_packet(), r % 2 ? "on" : "off", fp.syncs,
                        fp.merges, fp.off.cpu_cycles_per_packet(hz), fp.on.cpu_cycles_per_packet(hz),
                        fp.off.preempted, fp.on.preempted);
            std::fflush(stdout);
        }
    }
    if (!ok) return false;
    s = summarize(f, plan);
    print_throughput(s, f, o.reps);
    if (pair != nullptr) {
        memif_json = measure_on_ports(*pair, o.thp, [&] { return measure_memif(*pair, gw, v, plan, fb, o); });
        if (memif_json.empty()) {
            std::fprintf(stderr, "limits bench: a run through net_memif miscounted or lost frames\n");
            return false;
        }
    }
    if (!check_account_cells(gw, v.cp, fb, run_hour)) return false;
    for (rte_mbuf* mb : mixed.mbufs) rte_pktmbuf_free(mb);
    for (rte_mbuf* mb : plain.mbufs) rte_pktmbuf_free(mb);
    return true;
}

int bench_main(const options& o, const bench_redis* redis, traffic_plan& tp, memif_pair* pair) {
    const uint64_t hz = rte_get_tsc_hz();
    const std::string cpu = cpu_model();
    std::printf("limits bench: cpu \"%s\", TSC %.3f GHz, lcore %u, EAL memory %u MiB (--no-huge)\n", cpu.c_str(),
                static_cast<double>(hz) / 1e9, rte_lcore_id(), o.memory_mb);
    const eal_tables tables = advise_tables(o);

    // ---- 2. memory (first, in an empty heap) ----
    memory_figures mem;
    measure_subscriber_tables(o, mem);
    measure_tracker_tables(o, mem);

    // ---- the gateway: 1M subscribers bound ----
    const policy pol = gateway_policy(o);
    dpdk_data_plane_config gc;
    gc.workers = 1;
    gc.events_path = "/dev/null";
    const mem_use gw0 = mem_now();
    dpdk_data_plane gw(pol, gc);
    const uint32_t bound = bind_subscribers(gw, o, gw0, mem_now());
    variants v(gw);
    frame_memory fm;
    make_frame_pool(o, fm);

    // ---- 1. throughput ----
    summary s;
    std::string memif_json;
    if (!measure_throughput(gw, v, fm, tables, o, redis, tp, pair, s, memif_json)) {
        std::fprintf(stderr, "limits bench: the pipeline did not do what the traffic requires; no figures\n");
        return 1;
    }

    // ---- 3. RADIUS bindings ----
    bool ok = true;
    const radius_figures rf = measure_radius(gw, o, ok);
    if (!ok) {
        std::fprintf(stderr, "limits bench: RADIUS bindings were not all applied; no figures\n");
        return 1;
    }
    print_json(s, mem, rf, o, bound, tables.advised != 0, cpu, memif_json);
    rte_mempool_free(fm.pool);
    return 0;
}

bool parse_options(int argc, char** argv, options& o) {
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--fleet") {
            o.fleet = true;
            continue;
        }
        if (a == "--short") {  // the self-checks on a small gateway; the figures are rough
            o.packets = 4ull << 20, o.reps = 2, o.subscribers = 100000, o.flows = 10000;
            o.big_table = 0, o.radius = 10000, o.udp = 2000, o.memory_mb = 1024, o.memif_packets = 256ull << 10;
            continue;
        }
        if (i + 1 >= argc) return false;
        if (a == "--memif") {
            const std::string v = argv[++i];
            if (v != "on" && v != "off") return false;
            o.memif = v == "on";
            continue;
        }
        if (a == "--pages" || a == "--tables") {
            const std::string v = argv[++i];
            if (v != "thp" && v != "4k") return false;
            (a == "--pages" ? o.thp : o.tables_thp) = v == "thp";
            continue;
        }
        const uint64_t v = std::strtoull(argv[++i], nullptr, 10);
        if (a == "--packets" && v > 0)
            o.packets = v;
        else if (a == "--reps" && v > 0)
            o.reps = static_cast<unsigned>(v);
        else if (a == "--subscribers" && v >= 1000 && v <= (1u << 21))
            o.subscribers = static_cast<uint32_t>(v);
        else if (a == "--flows" && v >= 100)
            o.flows = static_cast<uint32_t>(v);
        else if (a == "--frames" && v >= 1024 && v <= 65536 && v % (2 * burst_size) == 0)
            o.frames = static_cast<unsigned>(v);
        else if (a == "--smtp-share" && v >= 1 && v <= 50)
            o.smtp_share = static_cast<unsigned>(v);
        else if (a == "--big-table" && v <= 100000000)
            o.big_table = static_cast<uint32_t>(v);
        else if (a == "--radius" && v >= 256 && v <= 1000000)
            o.radius = static_cast<uint32_t>(v);
        else if (a == "--udp" && v <= 1000000)
            o.udp = static_cast<uint32_t>(v);
        else if (a == "--memory" && v >= 1024)
            o.memory_mb = static_cast<unsigned>(v);
        else if (a == "--memif-packets" && v > 0)
            o.memif_packets = v;
        else
            return false;
    }
    if (o.memif < 0) o.memif = !o.fleet;
    // Long-lived connections come from distinct bound subscribers: IPv4 from
    // i = 4k+1, IPv6 from i = 8k; new RADIUS subscribers follow the bound ones.
    const uint64_t f6 = o.flows / 5, f4 = o.flows - f6;
    return 4 * f4 < o.subscribers && 8 * f6 < o.subscribers &&
           uint64_t{o.subscribers} + 2ull * o.radius + o.udp < (1u << 22);
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    if (!parse_options(argc, argv, o)) {
        std::fprintf(stderr,
                     "usage: %s [--short] [--fleet] [--packets N] [--reps N] [--subscribers N] [--flows N] [--frames N]\n"
                     "       [--smtp-share PCT] [--big-table N] [--radius N] [--udp N] [--memory MB]\n"
                     "       [--pages thp|4k] [--tables thp|4k] [--memif on|off] [--memif-packets N]\n"
                     "(flows <= subscribers / 5; subscribers + 2 x radius + udp < 4M)\n",
                     argv[0]);
        return 2;
    }
    // Started before the EAL pins this thread to lcore 0: the child runs on any CPU.
    std::unique_ptr<bench_redis> redis;
    try {
        if (o.fleet) redis = std::make_unique<bench_redis>();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "limits bench: --fleet: %s\n", e.what());
        return 1;
    }
    // The frames first (no EAL needed): the memif generator is forked with them before this
    // process starts its EAL, on the second CPU when there is one.
    traffic_plan tp(o);
    std::optional<memif_pair> pair;
    try {
        if (o.memif) pair.emplace(tracked_generator_frames(o, tp), sysconf(_SC_NPROCESSORS_ONLN) > 1 ? 1u : 0u, 512);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "limits bench: %s\n", e.what());
        return 1;
    }
    const std::vector<std::string> ports = pair ? pair->forwarder_eal_args() : std::vector<std::string>{};
    refuse_memfd = o.tables_thp;
    const bool eal_up = init_eal("limits-bench", o.memory_mb, ports);
    refuse_memfd = false;
    return run_on_eal("limits bench", eal_up, [&] { return bench_main(o, redis.get(), tp, pair ? &*pair : nullptr); });
}
