// classify_op25b on a policy compiled from YAML: frames x ingress -> outcome.
// Runs under eal_test_main.cpp (the lookup tables live in DPDK memory).
#include "dataplane/op25b_classifier.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "../support/frame_builder.h"
#include "../support/frame_corpus.h"
#include "../support/lab_policy.h"
#include "dataplane/net/packet_parser.h"
#include "control/policy/policy.h"
#include "control/policy/policy_compiler.h"

namespace sekisho {
namespace {

using test::bytes;
using test::frame_builder;
namespace t = test;

using test::next_generation;
constexpr const char* policy_text = test::lab_policy_text;

std::unique_ptr<compiled_policy> compile(const std::string& text) {
    return compile_policy(load_policy_text(text, "test.yaml"), next_generation());
}

// Addresses: dynamic, static (inside the dynamic range), neither, MX, relay.
using test::op25b_corpus::classify_case;
using test::op25b_corpus::cases;
using test::op25b_corpus::tcp4;
using test::op25b_corpus::tcp6;
using namespace test::op25b_corpus;  // A, C, pass, block, ... and the flag constants
using test::dyn4, test::static4, test::other4, test::mx4, test::relay4;
using test::dyn6, test::static6, test::other6, test::mx6, test::relay6;

class op25b_table : public ::testing::TestWithParam<classify_case> {
protected:
    static void SetUpTestSuite() { policy_ = compile(policy_text).release(); }
    static void TearDownTestSuite() {
        delete policy_;
        policy_ = nullptr;
    }
    static compiled_policy* policy_;
};
compiled_policy* op25b_table::policy_ = nullptr;

TEST_P(op25b_table, outcome) {
    const classify_case& c = GetParam();
    parsed_packet p;
    parse_frame(c.frame.data(), static_cast<uint32_t>(c.frame.size()), p);
    EXPECT_EQ(static_cast<int>(classify_op25b(p, c.in, *policy_)), static_cast<int>(c.outcome))
        << "kind " << static_cast<int>(p.kind) << " error " << to_string(p.error);
}

INSTANTIATE_TEST_SUITE_P(all, op25b_table, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<classify_case>& i) { return i.param.name; });

TEST(op25b_classifier, source_class) {
    auto pol = compile(policy_text);
    auto cls = [&](const bytes& f) {
        parsed_packet p;
        parse_frame(f.data(), static_cast<uint32_t>(f.size()), p);
        return source_class(p, *pol);
    };
    EXPECT_EQ(cls(tcp4(dyn4, mx4, 80).build()), subscriber_class::dynamic);
    EXPECT_EQ(cls(tcp4(static4, mx4, 80).build()), subscriber_class::static_);
    EXPECT_EQ(cls(tcp4(other4, mx4, 80).build()), subscriber_class::none);
    EXPECT_EQ(cls(tcp6(dyn6, mx6, 80).build()), subscriber_class::dynamic);
    EXPECT_EQ(cls(tcp6(static6, mx6, 80).build()), subscriber_class::static_);
    EXPECT_EQ(cls(tcp6(other6, mx6, 80).build()), subscriber_class::none);
    EXPECT_EQ(cls(frame_builder().ethertype(0x0806).payload(28, 0).build()), subscriber_class::none);
    EXPECT_TRUE(pol->is_relay4(t::ip4_host(relay4)));
    EXPECT_FALSE(pol->is_relay4(t::ip4_host(mx4)));
    EXPECT_TRUE(pol->is_relay6(t::ip6(relay6).data()));
    EXPECT_FALSE(pol->is_relay6(t::ip6(mx6).data()));
}

TEST(op25b_classifier, custom_blocked_ports) {
    std::string text = policy_text;
    text.replace(text.find("smtp: [25]"), 10, "smtp: [25, 2525]");
    auto pol = compile(text);
    EXPECT_TRUE(pol->is_blocked_port(25));
    EXPECT_TRUE(pol->is_blocked_port(2525));
    EXPECT_FALSE(pol->is_blocked_port(587));
    EXPECT_FALSE(pol->is_blocked_port(2526));
    EXPECT_FALSE(pol->is_blocked_port(0));
    EXPECT_FALSE(pol->is_blocked_port(65535));
    auto outcome = [&](const bytes& f, ingress in = ingress::access) {
        parsed_packet p;
        parse_frame(f.data(), static_cast<uint32_t>(f.size()), p);
        return classify_op25b(p, in, *pol);
    };
    EXPECT_EQ(outcome(tcp4(dyn4, mx4, 2525).build()), block);
    EXPECT_EQ(outcome(tcp4(dyn4, mx4, 25).build()), block);
    EXPECT_EQ(outcome(tcp6(dyn6, mx6, 2525).build()), block);
    EXPECT_EQ(outcome(tcp4(dyn4, mx4, 587).build()), pass);
    EXPECT_EQ(outcome(tcp4(dyn4, relay4, 2525).build()), pass);
    EXPECT_EQ(outcome(tcp4(static4, mx4, 2525).build()), pass);
    EXPECT_EQ(outcome(tcp4(dyn4, mx4, 2525).build(), ingress::core), pass);

    // Port 25 no longer listed: not blocked.
    std::string only_2525 = policy_text;
    only_2525.replace(only_2525.find("smtp: [25]"), 10, "smtp: [2525]");
    auto pol2 = compile(only_2525);
    EXPECT_FALSE(pol2->is_blocked_port(25));
    EXPECT_TRUE(pol2->is_blocked_port(2525));
}

TEST(op25b_classifier, compiled_policy_settings) {
    std::string text = policy_text;
    text += "op25b:\n  mode: monitor\n  action: drop\n";
    auto pol = compile(text);
    EXPECT_EQ(pol->mode(), op25b_mode::monitor);
    EXPECT_EQ(pol->action(), op25b_action::drop);
    EXPECT_EQ(pol->ipv6_prefix_length(), 56);
    EXPECT_EQ(pol->description(), "test.yaml");
    EXPECT_GT(pol->generation(), 1000u);
}

// The insertion order must not matter: the longest prefix wins.
TEST(op25b_classifier, static_before_dynamic_longest_prefix_wins) {
    policy_capacity cap;
    cap.subscriber_prefixes4 = 2;
    cap.subscriber_prefixes6 = 2;
    cap.tbl8_groups4 = 1;
    cap.tbl8_groups6 = 8;
    compiled_policy pol(next_generation(), cap);
    pol.add_subscriber4(t::ip4_host("198.51.100.128"), 28, subscriber_class::static_);
    pol.add_subscriber4(t::ip4_host("198.51.100.0"), 24, subscriber_class::dynamic);
    pol.add_subscriber6(t::ip6("2001:db8:1ff::").data(), 48, subscriber_class::static_);
    pol.add_subscriber6(t::ip6("2001:db8:100::").data(), 40, subscriber_class::dynamic);
    EXPECT_EQ(pol.subscriber4(t::ip4_host("198.51.100.130")), subscriber_class::static_);
    EXPECT_EQ(pol.subscriber4(t::ip4_host("198.51.100.7")), subscriber_class::dynamic);
    EXPECT_EQ(pol.subscriber6(t::ip6("2001:db8:1ff::1").data()), subscriber_class::static_);
    EXPECT_EQ(pol.subscriber6(t::ip6("2001:db8:100::1").data()), subscriber_class::dynamic);
}

// At least 1M dynamic prefixes: every 16th /24 of the IPv4 space (2^20 of
// them, 198.51.100.0/24 among them), plus a static /32 inside that one.
TEST(op25b_classifier, one_million_dynamic_prefixes) {
    constexpr uint32_t n = 1u << 20;
    constexpr uint32_t phase = 0xc63364 % 16;  // 198.51.100.0/24 is /24 number 0xc63364
    policy_capacity cap;
    cap.subscriber_prefixes4 = n + 1;
    cap.tbl8_groups4 = 1;
    compiled_policy pol(next_generation(), cap);
    for (uint32_t i = 0; i < n; ++i) pol.add_subscriber4((i * 16 + phase) << 8, 24, subscriber_class::dynamic);
    pol.add_subscriber4(t::ip4_host("198.51.100.77"), 32, subscriber_class::static_);

    EXPECT_EQ(pol.subscriber4(t::ip4_host("198.51.100.77")), subscriber_class::static_);
    EXPECT_EQ(pol.subscriber4(t::ip4_host("198.51.100.76")), subscriber_class::dynamic);
    EXPECT_EQ(pol.subscriber4(t::ip4_host("198.51.100.78")), subscriber_class::dynamic);
    EXPECT_EQ(pol.subscriber4(t::ip4_host("198.51.100.0")), subscriber_class::dynamic);
    EXPECT_EQ(pol.subscriber4(t::ip4_host("198.51.100.255")), subscriber_class::dynamic);
    EXPECT_EQ(pol.subscriber4(t::ip4_host("198.51.101.1")), subscriber_class::none);
    EXPECT_EQ(pol.subscriber4(t::ip4_host("198.51.99.1")), subscriber_class::none);
    EXPECT_EQ(pol.subscriber4(t::ip4_host("192.0.2.1")), subscriber_class::none);
    EXPECT_EQ(pol.subscriber4(t::ip4_host("203.0.113.1")), subscriber_class::none);
    // A sample of the generated prefixes and their neighbours.
    for (uint32_t i = 0; i < n; i += 4099) {
        const uint32_t base = (i * 16 + phase) << 8;
        EXPECT_EQ(pol.subscriber4(base), subscriber_class::dynamic) << i;
        EXPECT_EQ(pol.subscriber4(base | 0xff), subscriber_class::dynamic) << i;
        EXPECT_EQ(pol.subscriber4(base + 0x100), subscriber_class::none) << i;
    }

    // And the classifier over that table.
    pol.set_blocked_port(25);
    auto outcome = [&](const char* src) {
        const bytes f = tcp4(src, mx4, 25).build();
        parsed_packet p;
        parse_frame(f.data(), static_cast<uint32_t>(f.size()), p);
        return classify_op25b(p, ingress::access, pol);
    };
    EXPECT_EQ(outcome("198.51.100.76"), block);
    EXPECT_EQ(outcome("198.51.100.77"), pass);
    EXPECT_EQ(outcome("192.0.2.1"), pass);
}

}  // namespace
}  // namespace sekisho

namespace sekisho {
namespace {

// Edge prefix lengths compile and match: /0 (everything), /32 and /128 hosts.
TEST(op25b_classifier, edge_prefix_lengths) {
    auto pol = compile(R"(version: 1
subscribers:
  dynamic: [0.0.0.0/0, "::/0"]
  static: [192.0.2.1/32, "2001:db8::1/128"]
relays: [203.0.113.0/24, "2001:db8:25::/48"]
)");
    EXPECT_EQ(pol->subscriber4(t::ip4_host("198.51.100.1")), subscriber_class::dynamic);
    EXPECT_EQ(pol->subscriber4(t::ip4_host("192.0.2.1")), subscriber_class::static_);
    EXPECT_EQ(pol->subscriber4(t::ip4_host("192.0.2.2")), subscriber_class::dynamic);
    EXPECT_EQ(pol->subscriber6(t::ip6("2001:db8::1").data()), subscriber_class::static_);
    EXPECT_EQ(pol->subscriber6(t::ip6("2001:db8::2").data()), subscriber_class::dynamic);
    EXPECT_EQ(pol->subscriber6(t::ip6("2001:db8:ffff::2").data()), subscriber_class::dynamic);
    EXPECT_TRUE(pol->is_relay4(t::ip4_host("203.0.113.200")));
    EXPECT_FALSE(pol->is_relay4(t::ip4_host("198.51.100.200")));
    EXPECT_TRUE(pol->is_relay6(t::ip6("2001:db8:25:0:1::9").data()));
    EXPECT_FALSE(pol->is_relay6(t::ip6("2001:db8:26::9").data()));
}

// Static hosts inside a dynamic range, within what the tables take today.
TEST(op25b_classifier, long_prefixes_compile) {
    std::string text = "version: 1\nsubscribers:\n  dynamic: [198.51.100.0/24, \"2001:db8::/32\"]\n  static:\n";
    for (int i = 0; i < 100; ++i) text += "    - 198.51.100." + std::to_string(i) + "/32\n";
    char buf[64];
    for (int i = 0; i < 2000; ++i) {
        snprintf(buf, sizeof buf, "    - \"2001:db8:%x:%x::/64\"\n", i * 7 % 65536, i);
        text += buf;
    }
    std::unique_ptr<compiled_policy> pol;
    try { pol = compile(text); } catch (const std::exception& e) { FAIL() << e.what(); }
    EXPECT_EQ(pol->subscriber4(t::ip4_host("198.51.100.9")), subscriber_class::static_);
    EXPECT_EQ(pol->subscriber4(t::ip4_host("198.51.100.100")), subscriber_class::dynamic);
    EXPECT_EQ(pol->subscriber6(t::ip6("2001:db8:7:1::5").data()), subscriber_class::static_);
    EXPECT_EQ(pol->subscriber6(t::ip6("2001:db8:7:2::5").data()), subscriber_class::dynamic);
}

// Table sizing: DIR-24-8 stores a tbl8 index in a next-hop-sized entry, so the
// entry width bounds the group count (1-byte entries: 127 groups; this once
// failed from 112 static /32s). 128 hosts in one /24 need one group.
TEST(op25b_classifier, many_static_ipv4_hosts_compile) {
    std::string text = "version: 1\nsubscribers:\n  dynamic: [198.51.100.0/24]\n  static:\n";
    for (int i = 0; i < 128; ++i) text += "    - 198.51.100." + std::to_string(i) + "/32\n";
    std::unique_ptr<compiled_policy> pol;
    ASSERT_NO_THROW(pol = compile(text));
    EXPECT_EQ(pol->subscriber4(t::ip4_host("198.51.100.50")), subscriber_class::static_);
    EXPECT_EQ(pol->subscriber4(t::ip4_host("198.51.100.200")), subscriber_class::dynamic);
}

// IPv6: the trie reserves one group per byte beyond /24, per prefix; past
// 32767 groups the table switches to 4-byte entries (this once failed from
// 2520 static /128s).
// Static hosts in 40,000 distinct /24s: more groups than 2-byte entries hold.
TEST(op25b_classifier, static_hosts_in_many_slash24s_compile) {
    policy pol;
    std::string why;
    pol.dynamic_ranges.push_back(*parse_prefix("198.0.0.0/8", why));
    for (uint32_t i = 0; i < 40000; ++i) {
        ip_prefix p;
        p.family = 4;
        p.length = 32;
        const uint32_t a = (198u << 24) | (i << 8) | 7u;
        p.bytes = {static_cast<uint8_t>(a >> 24), static_cast<uint8_t>(a >> 16), static_cast<uint8_t>(a >> 8),
                   static_cast<uint8_t>(a)};
        pol.static_ranges.push_back(p);
    }
    std::unique_ptr<compiled_policy> c;
    try { c = compile_policy(pol, next_generation()); } catch (const std::exception& e) { FAIL() << e.what(); }
    EXPECT_EQ(c->subscriber4((198u << 24) | (39999u << 8) | 7u), subscriber_class::static_);
    EXPECT_EQ(c->subscriber4((198u << 24) | (39999u << 8) | 8u), subscriber_class::dynamic);
}

TEST(op25b_classifier, many_static_ipv6_hosts_compile) {
    std::string text = "version: 1\nsubscribers:\n  dynamic: [\"2001:db8:100::/40\"]\n  static:\n";
    char buf[64];
    for (int i = 1; i <= 2600; ++i) {
        snprintf(buf, sizeof buf, "    - \"2001:db8:1ff::%x\"\n", i);
        text += buf;
    }
    std::unique_ptr<compiled_policy> pol;
    ASSERT_NO_THROW(pol = compile(text));
    EXPECT_EQ(pol->subscriber6(t::ip6("2001:db8:1ff::a").data()), subscriber_class::static_);
    EXPECT_EQ(pol->subscriber6(t::ip6("2001:db8:1ff::1:0").data()), subscriber_class::dynamic);
}

}  // namespace
}  // namespace sekisho
