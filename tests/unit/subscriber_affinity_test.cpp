// subscriber_key_of and subscriber_key_hash: the subscriber side of a frame
// (access: its source, core: its destination), IPv6 by its delegated prefix,
// and the hash replay dispatches workers with. The hash values are pinned: a
// different value moves subscribers to other workers in a multi-worker replay.
#include "dataplane/subscriber_affinity.h"

#include <gtest/gtest.h>

#include "../support/frame_builder.h"

namespace sekisho {
namespace {

using test::frame_builder;

// A frame and its parse (which points into it).
struct frame {
    explicit frame(const frame_builder& b) : bytes(b.build()) {
        parse_frame(bytes.data(), static_cast<uint32_t>(bytes.size()), p);
    }
    test::bytes bytes;
    parsed_packet p;
};

TEST(subscriber_affinity, the_subscriber_side_of_either_direction) {
    const frame up(frame_builder().ipv4("198.51.100.7", "203.0.113.25").tcp(40000, 25));
    const frame down(frame_builder().ipv4("203.0.113.25", "198.51.100.7").tcp(25, 40000));
    const subscriber_key k = subscriber_key::v4(0xC6336407);   // 198.51.100.7
    EXPECT_EQ(subscriber_key_of(up.p, ingress::access, 56), k);
    EXPECT_EQ(subscriber_key_of(down.p, ingress::core, 56), k);
    EXPECT_EQ(subscriber_key_of(up.p, ingress::core, 56), subscriber_key::v4(0xCB007119));  // 203.0.113.25
}

TEST(subscriber_affinity, ipv6_by_its_prefix) {
    const frame fa(frame_builder().ipv6("2001:db8:100:1::7", "2001:db8:25::25").tcp(40000, 587));
    const frame fb(frame_builder().ipv6("2001:db8:100:2::8", "2001:db8:25::25").tcp(40001, 587));
    const frame fo(frame_builder().ipv6("2001:db8:100:100::9", "2001:db8:25::25").tcp(40002, 587));
    const parsed_packet &a = fa.p, &b = fb.p, &other = fo.p;
    const subscriber_key ka = subscriber_key_of(a, ingress::access, 56);
    EXPECT_EQ(ka.family, 6);
    EXPECT_EQ(ka.length, 56);
    EXPECT_EQ(ka, subscriber_key_of(b, ingress::access, 56)) << "one /56, one subscriber";
    EXPECT_EQ(subscriber_key_hash(ka), subscriber_key_hash(subscriber_key_of(b, ingress::access, 56)));
    EXPECT_NE(ka, subscriber_key_of(other, ingress::access, 56));
    EXPECT_NE(subscriber_key_of(a, ingress::access, 128), subscriber_key_of(b, ingress::access, 128))
        << "128: the address itself";
    EXPECT_EQ(subscriber_key_of(a, ingress::access, 128), subscriber_key::v6(test::ip6("2001:db8:100:1::7").data(), 128));
}

TEST(subscriber_affinity, not_ip_has_the_empty_key_and_worker_0) {
    const frame arp(frame_builder().ethertype(0x0806).payload(28, 0).pad_to(60));
    const subscriber_key k = subscriber_key_of(arp.p, ingress::access, 56);
    EXPECT_EQ(k, subscriber_key{});
    EXPECT_EQ(subscriber_key_hash(k), 0u);
}

TEST(subscriber_affinity, hash_values_are_pinned) {
    EXPECT_EQ(subscriber_key_hash(subscriber_key::v4(0xC6336407)), 0x1618c31815e44696ull);
    EXPECT_EQ(subscriber_key_hash(subscriber_key::v6(test::ip6("2001:db8:100:7:102:304:506:708").data(), 56)),
              0x6b1138d18c122306ull);
}

}  // namespace
}  // namespace sekisho
