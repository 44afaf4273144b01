// The OP25B benchmarks' traffic and policy, shared by every bench that pushes
// them (op25b_bench in memory and through net_memif, xdp_bench through the XDP
// program) so that their figures are for the same frames:
//   the policy: `prefixes` dynamic IPv4 /24s spread over the address space, a
//     static /28 inside each of the first 1000, 64 dynamic IPv6 /40 pools with
//     16 static /56 customers each, three submission relays; enforce, reset;
//   the frames: non-mail (60% IPv4, 75% TCP to 443/80, 25% UDP to 443/53;
//     60% minimum-size, 15% 100-600 bytes, 25% full-size), and the mixed set
//     with 10% SMTP SYNs to port 25 (half from dynamic sources: blocked; half
//     from static sources: passed), both families; layer 2 by --encap.
// Deterministic: the same arguments give the same frames, byte for byte (one
// seeded generator), whichever process builds them. Needs no EAL except
// build_policy (rte_fib).
#pragma once

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "dataplane/compiled_policy.h"
#include "tests/support/frame_builder.h"

namespace sekisho::bench {

using sekisho::test::frame_builder;

constexpr uint32_t multiplier = 2654435761u;  // odd: a bijection on the /24 space

// ---------------------------------------------------------------- addresses --

// The i-th dynamic /24 (host order, host part zero); distinct for i < 2^24 and
// spread over the whole IPv4 space.
inline uint32_t dynamic24(uint32_t i) { return ((i * multiplier) & 0xffffffu) << 8; }

// Static exemptions: a /28 inside each of the first `static28_count` dynamic
// /24s (at .128/28), the longest-prefix case (tbl8).
constexpr uint32_t static28_count = 1000;

inline std::string ip4_string(uint32_t host_order) {
    in_addr a{};
    a.s_addr = htonl(host_order);
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, buf, sizeof buf);
    return buf;
}

inline std::string ip6_string(const std::array<uint8_t, 16>& b) {
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, b.data(), buf, sizeof buf);
    return buf;
}

// IPv6: dynamic pools 2400:<k>00::/40 (k < 64), static /56 customers inside
// them at 2400:<k>00:<j>00::/56 for j in 0x80..0x8f (byte 5 of the address).
constexpr unsigned dynamic6_count = 64, static6_per_pool = 16;

inline std::array<uint8_t, 16> v6_dynamic_pool(unsigned k) {
    std::array<uint8_t, 16> a{};
    a[0] = 0x24;
    a[1] = 0x00;
    a[2] = static_cast<uint8_t>(k);
    a[3] = 0x00;
    return a;
}
inline std::array<uint8_t, 16> v6_static56(unsigned k, unsigned j) {
    auto a = v6_dynamic_pool(k);
    a[5] = static_cast<uint8_t>(0x80 + j);  // the /40 is bytes 0-4, the /56 bytes 0-6
    return a;
}

// --------------------------------------------------------------- the policy --

// Every prefix of the policy: sub4(host-order address, length, class) and
// sub6(16 bytes, length, class) for the subscribers, then relay4/relay6 for
// the ISP's own submission relays (not hit by the traffic below). Whoever
// builds the policy (the compiled one here, a policy for the XDP program in
// xdp_bench) gets the same prefixes.
template <class Sub4, class Sub6, class Relay4, class Relay6>
void for_each_op25b_prefix(uint32_t prefixes, Sub4 sub4, Sub6 sub6, Relay4 relay4, Relay6 relay6) {
    for (uint32_t i = 0; i < prefixes; ++i) sub4(dynamic24(i), 24, subscriber_class::dynamic);
    for (uint32_t i = 0; i < static28_count; ++i) sub4(dynamic24(i) | 0x80, 28, subscriber_class::static_);
    for (unsigned k = 0; k < dynamic6_count; ++k) {
        sub6(v6_dynamic_pool(k), 40, subscriber_class::dynamic);
        for (unsigned j = 0; j < static6_per_pool; ++j) sub6(v6_static56(k, j), 56, subscriber_class::static_);
    }
    relay4(test::ip4_host("192.0.2.25"), 32);
    relay4(test::ip4_host("192.0.2.26"), 32);
    relay6(test::ip6("2001:db8:25::25"), 128);
}

inline std::unique_ptr<compiled_policy> build_policy(uint32_t prefixes, double& seconds) {
    policy_capacity cap;
    cap.subscriber_prefixes4 = prefixes + static28_count + 16;
    cap.tbl8_groups4 = static28_count;  // one per /24 holding a longer prefix
    cap.subscriber_prefixes6 = dynamic6_count * (1 + static6_per_pool);
    cap.tbl8_groups6 = dynamic6_count * ((40 - 24 + 7) / 8 + static6_per_pool * ((56 - 24 + 7) / 8));
    cap.relay_prefixes4 = 4;
    cap.relay_prefixes6 = 4;

    const auto t0 = std::chrono::steady_clock::now();
    auto p = std::make_unique<compiled_policy>(1, cap);
    for_each_op25b_prefix(
        prefixes, [&](uint32_t a, uint8_t len, subscriber_class c) { p->add_subscriber4(a, len, c); },
        [&](const std::array<uint8_t, 16>& a, uint8_t len, subscriber_class c) { p->add_subscriber6(a.data(), len, c); },
        [&](uint32_t a, uint8_t len) { p->add_relay4(a, len); },
        [&](const std::array<uint8_t, 16>& a, uint8_t len) { p->add_relay6(a.data(), len); });
    p->set_blocked_port(25);
    p->set_mode(op25b_mode::enforce);
    p->set_action(op25b_action::reset);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return p;
}

// --------------------------------------------------------------- the frames --

class traffic {
public:
    traffic(uint32_t prefixes, std::string encap) : prefixes_(prefixes), encap_(std::move(encap)) {}

    // A subscriber source address inside a dynamic /24, outside its static /28.
    std::string dynamic_src4() {
        const uint32_t i = pick(prefixes_);
        uint32_t host = 1 + pick(126);  // .1 - .126: below the .128/28
        return ip4_string(dynamic24(i) | host);
    }
    std::string static_src4() {
        const uint32_t i = pick(std::min(static28_count, prefixes_));
        return ip4_string(dynamic24(i) | 0x80 | (1 + pick(14)));
    }
    std::string dynamic_src6() {
        auto a = v6_dynamic_pool(pick(dynamic6_count));
        a[5] = static_cast<uint8_t>(pick(0x80));  // outside the static /56s
        a[6] = static_cast<uint8_t>(pick(256));
        a[15] = static_cast<uint8_t>(1 + pick(254));
        return ip6_string(a);
    }
    std::string static_src6() {
        auto a = v6_static56(pick(dynamic6_count), pick(static6_per_pool));
        a[7] = static_cast<uint8_t>(pick(256));
        a[15] = static_cast<uint8_t>(1 + pick(254));
        return ip6_string(a);
    }
    // Somewhere on the Internet, not a relay.
    std::string remote4() { return ip4_string(0x0b000000u + pick(0x40000000u)); }
    std::string remote6() {
        std::array<uint8_t, 16> a{};
        a[0] = 0x2a;
        a[1] = 0x03;
        for (unsigned b = 2; b < 16; ++b) a[b] = static_cast<uint8_t>(pick(256));
        return ip6_string(a);
    }

    // Layer 2, --encap: plain Ethernet, one VLAN tag, PPPoE session, or
    // "mixed": 60% plain, 20% VLAN, 20% PPPoE, in random order.
    void encapsulate(frame_builder& f) {
        if (encap_ == "vlan") f.vlan(100);
        if (encap_ == "pppoe") f.pppoe(static_cast<uint16_t>(1 + pick(60000)));
        if (encap_ != "mixed") return;
        const uint32_t r = pick(100);
        if (r < 20)
            f.vlan(static_cast<uint16_t>(100 + pick(100)));
        else if (r < 40)
            f.pppoe(static_cast<uint16_t>(1 + pick(60000)));
    }

    // Non-mail: 60% IPv4 / 40% IPv6; 75% TCP (443, 80), 25% UDP (443, 53);
    // 60% minimum-size, 15% 100-600 bytes, 25% full-size frames.
    test::bytes nonmail() {
        frame_builder f;
        encapsulate(f);
        const bool v4 = pick(100) < 60;
        const bool dyn = pick(100) < 80;
        if (v4)
            f.ipv4(dyn ? dynamic_src4() : static_src4(), remote4());
        else
            f.ipv6(dyn ? dynamic_src6() : static_src6(), remote6());
        const uint16_t sport = static_cast<uint16_t>(32768 + pick(28000));
        if (pick(100) < 75) {
            f.tcp(sport, pick(100) < 70 ? 443 : 80)
                .flags(pick(100) < 5 ? test::tcp_flags_syn : test::tcp_flags_ack)
                .seq(static_cast<uint32_t>(rng_()))
                .ack(static_cast<uint32_t>(rng_()));
        } else {
            f.udp(sport, pick(100) < 80 ? 443 : 53);
        }
        const uint32_t size_class = pick(100);
        const size_t header = f.build().size();
        size_t target = 60;
        if (size_class >= 85)
            target = 1514;
        else if (size_class >= 60)
            target = 100 + pick(500);
        if (target > header) f.payload(target - header);
        f.pad_to(60);
        return f.build();
    }

    // An SMTP SYN (with the usual 20 bytes of options) to port 25.
    test::bytes smtp_syn(bool dynamic_source, bool v4) {
        frame_builder f;
        encapsulate(f);
        if (v4)
            f.ipv4(dynamic_source ? dynamic_src4() : static_src4(), remote4());
        else
            f.ipv6(dynamic_source ? dynamic_src6() : static_src6(), remote6());
        f.tcp(static_cast<uint16_t>(32768 + pick(28000)), 25)
            .flags(test::tcp_flags_syn)
            .seq(static_cast<uint32_t>(rng_()))
            .tcp_options({2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7})
            .pad_to(60);
        return f.build();
    }

    std::mt19937_64& rng() { return rng_; }

private:
    uint32_t pick(uint32_t n) { return static_cast<uint32_t>(rng_() % n); }

    uint32_t prefixes_;
    std::string encap_;
    std::mt19937_64 rng_{20261123};
};


// One set of frames as bytes, in the order they are pushed.
struct frame_bytes {
    std::vector<test::bytes> frames;
    std::vector<uint8_t> smtp;                   // per frame: 0 not SMTP, 1 SYN from a dynamic source, 2 static
    uint64_t smtp_dynamic = 0, smtp_static = 0;  // per pass
    uint64_t bytes = 0;                          // per pass
    uint64_t smtp_dynamic_bytes = 0;             // per pass, of the SYNs from dynamic sources
};

// `count` frames: non-mail, or with 10% SMTP SYNs (`with_smtp`), shuffled so
// that the branch predictor sees no pattern.
inline frame_bytes make_frames(traffic& t, bool with_smtp, unsigned count) {
    struct entry {
        test::bytes frame;
        uint8_t smtp;
    };
    std::vector<entry> frames;
    frames.reserve(count);
    const unsigned smtp = with_smtp ? count / 10 : 0;  // 10%
    for (unsigned i = 0; i < smtp; ++i) {
        const bool dynamic_source = i % 2 == 0;
        const bool v4 = i % 4 < 2;  // both families, both classes
        frames.push_back({t.smtp_syn(dynamic_source, v4), static_cast<uint8_t>(dynamic_source ? 1 : 2)});
    }
    while (frames.size() < count) frames.push_back({t.nonmail(), 0});
    std::shuffle(frames.begin(), frames.end(), t.rng());

    frame_bytes s;
    for (auto& e : frames) {
        s.bytes += e.frame.size();
        if (e.smtp == 1) ++s.smtp_dynamic, s.smtp_dynamic_bytes += e.frame.size();
        if (e.smtp == 2) ++s.smtp_static;
        s.smtp.push_back(e.smtp);
        s.frames.push_back(std::move(e.frame));
    }
    return s;
}

// The two sets: non-mail, then mixed, from one generator (in this order).
struct op25b_frames {
    frame_bytes nonmail, mixed;
};

inline op25b_frames make_op25b_frames(uint32_t prefixes, const std::string& encap, unsigned count) {
    traffic t(prefixes, encap);
    op25b_frames s;
    s.nonmail = make_frames(t, false, count);
    s.mixed = make_frames(t, true, count);
    return s;
}

}  // namespace sekisho::bench
