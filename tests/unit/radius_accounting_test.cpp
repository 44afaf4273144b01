// RADIUS accounting: the parser on hand-built packets (every attribute, every
// truncation, bad lengths, wrong codes, random bytes), the authenticators
// against values computed independently here with libcrypto and a fixed
// vector, the clients file, and the listener over real UDP on loopback.
#include "control/identity/radius_accounting.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "../support/radius_packet.h"

namespace sekisho::radius {
namespace {

using test::bytes;
using test::md5_of;
using test::text;
using test::u32;
using test::v4;
using test::v6;
using test::v6prefix;
using packet = test::radius_packet;

bytes from_hex(std::string_view hex) {
    bytes out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
    return out;
}

std::string hex(std::span<const uint8_t> b) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    for (uint8_t c : b) s += {digits[c >> 4], digits[c & 15]};
    return s;
}

constexpr const char* secret = "s3cr3t-Kq7f9ZbX";

packet full_start() {
    packet p;
    p.add(attr_acct_status_type, u32(1))
        .add(attr_user_name, text("alice@example.jp"))
        .add(attr_acct_session_id, text("s1"))
        .add(attr_framed_ip_address, v4("198.51.100.7"))
        .add(attr_framed_ipv6_prefix, v6prefix("2001:db8:100:7::", 64))
        .add(attr_delegated_ipv6_prefix, v6prefix("2001:db8:107::", 56, 7))
        .add(attr_nas_ip_address, v4("192.0.2.1"))
        .add(attr_nas_ipv6_address, v6("2001:db8::1"))
        .add(attr_nas_identifier, text("bng-1"))
        .add(attr_event_timestamp, u32(1795400000))
        .add(attr_acct_delay_time, u32(3))
        .add(attr_acct_session_time, u32(0))
        .add(26, bytes{0, 0, 0x0b, 0xf5, 1, 3, 'x'})   // a Vendor-Specific attribute: skipped
        .add(attr_proxy_state, text("proxy-1"));
    return p;
}

std::string prefix_text(const ip_prefix& p) { return p.to_string(); }

TEST(radius_parser, every_attribute) {
    const bytes d = full_start().finish(secret);
    const auto r = parse_accounting_request(d);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(r->header.code, 4);
    EXPECT_EQ(r->header.identifier, 42);
    EXPECT_EQ(r->header.length, d.size());
    EXPECT_EQ(hex(r->header.auth), hex(std::span(d).subspan(4, 16)));
    EXPECT_EQ(r->status_type, 1u);
    EXPECT_EQ(r->user_name, "alice@example.jp");
    EXPECT_EQ(r->session_id, "s1");
    ASSERT_TRUE(r->framed_ip);
    EXPECT_EQ(prefix_text(*r->framed_ip), "198.51.100.7/32");
    ASSERT_EQ(r->framed_ipv6_prefixes.size(), 1u);
    EXPECT_EQ(prefix_text(r->framed_ipv6_prefixes[0]), "2001:db8:100:7::/64");
    ASSERT_EQ(r->delegated_ipv6_prefixes.size(), 1u);
    EXPECT_EQ(prefix_text(r->delegated_ipv6_prefixes[0]), "2001:db8:107::/56");
    ASSERT_TRUE(r->nas_ip);
    EXPECT_EQ(prefix_text(*r->nas_ip), "192.0.2.1/32");
    ASSERT_TRUE(r->nas_ipv6);
    EXPECT_EQ(prefix_text(*r->nas_ipv6), "2001:db8::1/128");
    EXPECT_EQ(r->nas_identifier, "bng-1");
    EXPECT_EQ(r->event_timestamp, 1795400000u);
    EXPECT_EQ(r->delay_time, 3u);
    EXPECT_EQ(r->session_time, 0u);
    EXPECT_EQ(hex(r->proxy_state), "2109" + hex(text("proxy-1")));
}

TEST(radius_parser, padding_after_length_is_ignored) {
    bytes d = full_start().finish(secret);
    const size_t length = d.size();
    d.insert(d.end(), {0xff, 0x01, 0x02});
    const auto r = parse_accounting_request(d);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(r->header.length, length);
    EXPECT_TRUE(verify_request_authenticator(d, secret));
}

TEST(radius_parser, truncated_datagram_at_every_length) {
    const bytes d = full_start().finish(secret);
    for (size_t n = 0; n < d.size(); ++n) {
        const auto r = parse_accounting_request(std::span(d.data(), n));
        ASSERT_FALSE(r) << n;
        if (n < header_size)
            EXPECT_EQ(r.error(), "packet is " + std::to_string(n) + " octets, shorter than the 20-octet RADIUS header");
        else
            EXPECT_EQ(r.error(), "Length field " + std::to_string(d.size()) + " exceeds the " + std::to_string(n) +
                                     " octets received");
    }
}

TEST(radius_parser, length_field_cut_at_every_length) {
    const packet p = full_start();
    const bytes d = p.finish(secret);
    for (size_t n = header_size; n < d.size(); ++n) {
        bytes cut(d.begin(), d.begin() + static_cast<long>(n));
        cut[2] = static_cast<uint8_t>(n >> 8);
        cut[3] = static_cast<uint8_t>(n);
        const auto r = parse_accounting_request(cut);
        const bool boundary = std::find(p.boundaries.begin(), p.boundaries.end(), n) != p.boundaries.end();
        EXPECT_EQ(r.ok(), boundary) << "Length " << n << ": " << r.error();
        if (!boundary && !r) {
            EXPECT_TRUE(r.error().find("runs past the end of the packet") != std::string::npos ||
                        r.error().find("truncated attribute at offset") != std::string::npos)
                << r.error();
        }
    }
}

std::string error_of(const packet& p) {
    const auto r = parse_accounting_request(p.finish(secret));
    EXPECT_FALSE(r) << "accepted";
    return r ? "" : r.error();
}

TEST(radius_parser, header_errors) {
    bytes d = full_start().finish(secret);
    bytes short_len = d;
    short_len[2] = 0, short_len[3] = 19;
    EXPECT_EQ(parse_header(short_len).error(), "Length field 19 is below the 20-octet minimum");
    bytes big = d;
    big.resize(5000);
    big[2] = 0x10, big[3] = 0x01;
    EXPECT_EQ(parse_header(big).error(), "Length field 4097 exceeds the RFC 2865 maximum of 4096");
    big[2] = 0x10, big[3] = 0x00;
    EXPECT_TRUE(parse_header(big)) << "4096 is allowed";
}

TEST(radius_parser, wrong_code) {
    for (auto [code, name] : std::vector<std::pair<uint8_t, std::string>>{
             {1, "Access-Request"}, {5, "Accounting-Response"}, {12, "Status-Server"}, {99, "unknown"}}) {
        packet p = full_start();
        p.code = code;
        EXPECT_EQ(error_of(p), "code " + std::to_string(code) + " (" + name + ") is not Accounting-Request (4)");
        EXPECT_TRUE(parse_header(p.finish(secret))) << "the header itself is fine";
    }
}

TEST(radius_parser, attribute_length_errors) {
    // Length 0 and 1 can never be valid: they would not even cover type and length.
    EXPECT_EQ(error_of(packet().add(40, u32(1)).raw({8, 0, 0, 0})),
              "attribute 8 (Framed-IP-Address) at offset 26: length 0 is below the minimum of 2");
    EXPECT_EQ(error_of(packet().raw({200, 1})), "attribute 200 at offset 20: length 1 is below the minimum of 2");
    EXPECT_EQ(error_of(packet().raw({8, 9, 198, 51, 100, 7})),
              "attribute 8 (Framed-IP-Address) at offset 20: length 9 runs past the end of the packet (6 octets left)");
    EXPECT_EQ(error_of(packet().add(40, u32(1)).raw({44})),
              "truncated attribute at offset 26: 1 octet left before Length 27, an attribute needs 2");
    // Fixed-size attributes.
    EXPECT_EQ(error_of(packet().add(8, {198, 51, 100})),
              "attribute 8 (Framed-IP-Address) at offset 20: length 5, expected 6");
    EXPECT_EQ(error_of(packet().add(4, {192, 0, 2, 1, 0})),
              "attribute 4 (NAS-IP-Address) at offset 20: length 7, expected 6");
    EXPECT_EQ(error_of(packet().add(95, v4("192.0.2.1"))),
              "attribute 95 (NAS-IPv6-Address) at offset 20: length 6, expected 18");
    EXPECT_EQ(error_of(packet().add(40, {0, 1})), "attribute 40 (Acct-Status-Type) at offset 20: length 4, expected 6");
    EXPECT_EQ(error_of(packet().add(55, {0, 0, 0, 0, 1})),
              "attribute 55 (Event-Timestamp) at offset 20: length 7, expected 6");
    EXPECT_EQ(error_of(packet().add(41, {})), "attribute 41 (Acct-Delay-Time) at offset 20: length 2, expected 6");
    EXPECT_EQ(error_of(packet().add(46, {1})), "attribute 46 (Acct-Session-Time) at offset 20: length 3, expected 6");
    // Text attributes need at least one octet.
    EXPECT_EQ(error_of(packet().add(1, {})),
              "attribute 1 (User-Name) at offset 20: length 2, a text attribute needs at least 3 (RFC 2865 5)");
    EXPECT_EQ(error_of(packet().add(44, {})),
              "attribute 44 (Acct-Session-Id) at offset 20: length 2, a text attribute needs at least 3 (RFC 2865 5)");
    EXPECT_EQ(error_of(packet().add(32, {})),
              "attribute 32 (NAS-Identifier) at offset 20: length 2, a text attribute needs at least 3 (RFC 2865 5)");
    EXPECT_EQ(error_of(packet().add(33, {})), "attribute 33 (Proxy-State) at offset 20: length 2, Proxy-State needs at least 3");
}

TEST(radius_parser, ipv6_prefix_errors) {
    EXPECT_EQ(error_of(packet().add(97, {0})),
              "attribute 97 (Framed-IPv6-Prefix) at offset 20: length 3, an IPv6 prefix attribute is 4 to 20 octets");
    bytes too_long = v6prefix("2001:db8::", 64);
    too_long.push_back(0);
    EXPECT_EQ(error_of(packet().add(123, too_long)),
              "attribute 123 (Delegated-IPv6-Prefix) at offset 20: length 21, an IPv6 prefix attribute is 4 to 20 octets");
    EXPECT_EQ(error_of(packet().add(97, {0, 129})),
              "attribute 97 (Framed-IPv6-Prefix) at offset 20: prefix length 129 exceeds 128");
    EXPECT_EQ(error_of(packet().add(97, v6prefix("2001:db8:100:7::", 64, 7))),
              "attribute 97 (Framed-IPv6-Prefix) at offset 20: prefix length /64 needs 8 prefix octets, the attribute "
              "carries 7");
    EXPECT_EQ(error_of(packet().add(123, v6prefix("2001:db8:107:1::", 56))),
              "attribute 123 (Delegated-IPv6-Prefix) at offset 20: 2001:db8:107:1:: has bits set beyond its prefix "
              "length /56");
    // Short forms are valid: /0 with no prefix octets, /56 in 7 octets.
    const auto r = parse_accounting_request(
        packet().add(97, {0, 0}).add(123, v6prefix("2001:db8:107::", 56, 7)).add(123, v6prefix("2001:db8:108::", 48, 6)).finish(secret));
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(prefix_text(r->framed_ipv6_prefixes.at(0)), "::/0");
    ASSERT_EQ(r->delegated_ipv6_prefixes.size(), 2u) << "may repeat";
    EXPECT_EQ(prefix_text(r->delegated_ipv6_prefixes[1]), "2001:db8:108::/48");
}

TEST(radius_parser, single_valued_attributes_appear_once) {
    EXPECT_EQ(error_of(packet().add(40, u32(1)).add(40, u32(2))),
              "attribute 40 (Acct-Status-Type) at offset 26: appears a second time (first at offset 20); it may appear "
              "once");
    EXPECT_EQ(error_of(packet().add(1, text("a")).add(44, text("s")).add(1, text("b"))),
              "attribute 1 (User-Name) at offset 26: appears a second time (first at offset 20); it may appear once");
    EXPECT_EQ(error_of(packet().add(8, v4("198.51.100.7")).add(8, v4("198.51.100.8"))),
              "attribute 8 (Framed-IP-Address) at offset 26: appears a second time (first at offset 20); it may appear "
              "once");
    // Proxy-State repeats and comes back in order.
    const auto r = parse_accounting_request(packet().add(33, text("a")).add(40, u32(1)).add(33, text("bc")).finish(secret));
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(hex(r->proxy_state), "210361" "21046263");
}

TEST(radius_parser, random_bytes_never_crash) {
    std::mt19937 rng(20261123);
    const bytes good = full_start().finish(secret);
    size_t accepted = 0;
    for (int i = 0; i < 200000; ++i) {
        bytes d;
        if (i % 2 == 0) {
            // A plausible header with random attributes.
            d.resize(header_size + rng() % 120);
            for (auto& b : d) b = static_cast<uint8_t>(rng());
            d[0] = 4;
            d[2] = static_cast<uint8_t>(d.size() >> 8);
            d[3] = static_cast<uint8_t>(d.size());
        } else {
            // The good packet with a few octets changed.
            d = good;
            for (int k = 0; k < 3; ++k) d[rng() % d.size()] = static_cast<uint8_t>(rng());
        }
        // Exact-size heap copy: ASan would catch an over-read.
        const std::unique_ptr<uint8_t[]> exact(new uint8_t[d.size()]);
        std::memcpy(exact.get(), d.data(), d.size());
        const std::span<const uint8_t> view(exact.get(), d.size());
        const auto r = parse_accounting_request(view);
        if (r) {
            ++accepted;
            (void)to_binding_update(*r, 0);
        } else {
            EXPECT_FALSE(r.error().empty());
        }
        if (parse_header(view)) (void)verify_request_authenticator(view, secret);
    }
    EXPECT_GT(accepted, 0u);
}

// ------------------------------------------------------------ authenticators

TEST(radius_authenticator, known_vector) {
    // Computed with Python's hashlib, outside this code base:
    // MD5(04 2a 0042 | 16 zero octets | attributes | "xyzzy5461").
    const bytes d = from_hex(
        "042a00427c0607d0e86282cabf8dfedead62f5072806000000010112616c696365406578616d706c652e6a702c0473310806c633"
        "64070406c000020137066b03a140");
    EXPECT_EQ(hex(request_authenticator(d, "xyzzy5461")), "7c0607d0e86282cabf8dfedead62f507");
    EXPECT_TRUE(verify_request_authenticator(d, "xyzzy5461"));
    EXPECT_FALSE(verify_request_authenticator(d, "xyzzy5462"));
    const auto h = parse_header(d);
    ASSERT_TRUE(h);
    const bytes resp = build_accounting_response(*h, {}, "xyzzy5461");
    EXPECT_EQ(hex(resp), "052a0014" "86997c9a9412afd6683166e0e5f19754");
    // And the packet means what the vector's author put in it.
    const auto r = parse_accounting_request(d);
    ASSERT_TRUE(r) << r.error();
    const auto u = to_binding_update(*r, 0);
    ASSERT_TRUE(u) << u.error();
    EXPECT_EQ(u->account, "alice@example.jp");
    EXPECT_EQ(u->event_time, 1795400000);
}

TEST(radius_authenticator, matches_independent_md5) {
    const packet p = full_start();
    const bytes d = p.finish(secret);
    bytes signing = p.unsigned_bytes();
    signing.insert(signing.end(), secret, secret + std::strlen(secret));
    EXPECT_EQ(hex(request_authenticator(d, secret)), hex(md5_of(signing)));
    EXPECT_TRUE(verify_request_authenticator(d, secret));
}

TEST(radius_authenticator, any_change_breaks_it) {
    const bytes d = full_start().finish(secret);
    EXPECT_FALSE(verify_request_authenticator(d, "s3cr3t-Kq7f9ZbY"));
    EXPECT_FALSE(verify_request_authenticator(d, ""));
    for (size_t i = 0; i < d.size(); ++i) {
        if (i == 2 || i == 3) continue;   // the Length field: changing it changes what is covered (tested below)
        bytes x = d;
        x[i] ^= 0x01;
        EXPECT_FALSE(verify_request_authenticator(x, secret)) << "octet " << i;
    }
    bytes shorter = d;
    shorter[3] = static_cast<uint8_t>(shorter[3] - 9);   // drops the Proxy-State from the covered bytes
    EXPECT_FALSE(verify_request_authenticator(shorter, secret));
}

TEST(radius_authenticator, response_with_proxy_state) {
    const bytes d = full_start().finish(secret);
    const auto r = parse_accounting_request(d);
    ASSERT_TRUE(r) << r.error();
    const bytes resp = build_accounting_response(r->header, r->proxy_state, secret);
    ASSERT_EQ(resp.size(), 20u + 9u);
    EXPECT_EQ(resp[0], 5);
    EXPECT_EQ(resp[1], 42);
    EXPECT_EQ(resp[2] << 8 | resp[3], 29);
    EXPECT_EQ(hex(std::span(resp).subspan(20)), "2109" + hex(text("proxy-1")));
    // MD5(Code + ID + Length + Request Authenticator + attributes + secret).
    bytes expect{5, 42, 0, 29};
    expect.insert(expect.end(), d.begin() + 4, d.begin() + 20);
    expect.insert(expect.end(), resp.begin() + 20, resp.end());
    expect.insert(expect.end(), secret, secret + std::strlen(secret));
    EXPECT_EQ(hex(std::span(resp).subspan(4, 16)), hex(md5_of(expect)));
}

// ------------------------------------------------------------ binding update

TEST(radius_update, start_with_everything) {
    const auto r = parse_accounting_request(full_start().finish(secret));
    ASSERT_TRUE(r);
    const auto u = to_binding_update(*r, 1795400100);
    ASSERT_TRUE(u) << u.error();
    EXPECT_EQ(u->kind, binding_kind::start);
    EXPECT_EQ(u->account, "alice@example.jp");
    EXPECT_EQ(u->session_id, "s1");
    ASSERT_TRUE(u->ipv4);
    EXPECT_EQ(prefix_text(*u->ipv4), "198.51.100.7/32");
    ASSERT_EQ(u->ipv6_prefixes.size(), 2u);
    EXPECT_EQ(prefix_text(u->ipv6_prefixes[0]), "2001:db8:107::/56") << "delegated first";
    EXPECT_EQ(prefix_text(u->ipv6_prefixes[1]), "2001:db8:100:7::/64");
    EXPECT_EQ(u->nas_address, "192.0.2.1") << "NAS-IP-Address wins over NAS-IPv6-Address";
    EXPECT_EQ(u->nas_identifier, "bng-1");
    EXPECT_EQ(u->nas(), "192.0.2.1");
    EXPECT_EQ(u->event_time, 1795400000);
    EXPECT_TRUE(u->event_time_from_packet);
    EXPECT_EQ(u->session_time, 0u);
    EXPECT_EQ(u->addresses().size(), 3u);
}

TEST(radius_update, every_status_type) {
    const std::vector<std::pair<uint32_t, std::optional<binding_kind>>> cases{
        {1, binding_kind::start},          {2, binding_kind::stop},
        {3, binding_kind::interim},        {7, binding_kind::accounting_on},
        {8, binding_kind::accounting_off}, {9, std::nullopt} /* Tunnel-Start */,
        {15, std::nullopt} /* Failed */,   {0, std::nullopt}};
    for (const auto& [status, kind] : cases) {
        EXPECT_EQ(binding_kind_of(status), kind) << status;
        const auto r = parse_accounting_request(
            packet().add(40, u32(status)).add(44, text("s9")).add(32, text("bng-2")).finish(secret));
        ASSERT_TRUE(r);
        const auto u = to_binding_update(*r, 1000);
        EXPECT_EQ(u.ok(), kind.has_value()) << status << ": " << u.error();
        if (u) {
            EXPECT_EQ(u->kind, *kind);
        } else {
            EXPECT_EQ(u.error(), "Acct-Status-Type " + std::to_string(status) + " is not a binding event");
        }
    }
}

TEST(radius_update, required_attributes) {
    auto update_error = [](const packet& p) {
        const auto r = parse_accounting_request(p.finish(secret));
        EXPECT_TRUE(r) << r.error();
        const auto u = r ? to_binding_update(*r, 0) : result<binding_update>::failure("unparsed");
        EXPECT_FALSE(u);
        return u ? std::string() : u.error();
    };
    EXPECT_EQ(update_error(packet().add(44, text("s1")).add(4, v4("192.0.2.1"))), "no Acct-Status-Type (40)");
    EXPECT_EQ(update_error(packet().add(40, u32(1)).add(4, v4("192.0.2.1"))), "start without Acct-Session-Id (44)");
    EXPECT_EQ(update_error(packet().add(40, u32(2)).add(4, v4("192.0.2.1"))), "stop without Acct-Session-Id (44)");
    EXPECT_EQ(update_error(packet().add(40, u32(3)).add(4, v4("192.0.2.1"))), "interim without Acct-Session-Id (44)");
    EXPECT_EQ(update_error(packet().add(40, u32(1)).add(44, text("s1"))),
              "no NAS-IP-Address (4), NAS-IPv6-Address (95) or NAS-Identifier (32) (RFC 2866 4.1)");
    // Accounting-On needs no session, NAS-IPv6-Address identifies the NAS.
    const auto r = parse_accounting_request(packet().add(40, u32(7)).add(95, v6("2001:db8::1")).finish(secret));
    ASSERT_TRUE(r);
    const auto u = to_binding_update(*r, 5000);
    ASSERT_TRUE(u) << u.error();
    EXPECT_EQ(u->nas(), "2001:db8::1");
    EXPECT_EQ(u->event_time, 5000);
    EXPECT_FALSE(u->event_time_from_packet);
}

TEST(radius_update, event_time_without_timestamp_is_receive_minus_delay) {
    const auto r = parse_accounting_request(
        packet().add(40, u32(3)).add(44, text("s1")).add(32, text("bng-1")).add(41, u32(30)).finish(secret));
    ASSERT_TRUE(r);
    const auto u = to_binding_update(*r, 1795400100);
    ASSERT_TRUE(u);
    EXPECT_EQ(u->event_time, 1795400070);
    EXPECT_FALSE(u->event_time_from_packet);
    EXPECT_EQ(u->nas_address, "");
    EXPECT_EQ(u->nas(), "bng-1");
}

TEST(radius_update, framed_ip_placeholders_are_not_addresses) {
    for (const char* a : {"0.0.0.0", "255.255.255.254", "255.255.255.255"}) {
        const auto r = parse_accounting_request(
            packet().add(40, u32(1)).add(44, text("s1")).add(4, v4("192.0.2.1")).add(8, v4(a)).finish(secret));
        ASSERT_TRUE(r);
        const auto u = to_binding_update(*r, 0);
        ASSERT_TRUE(u);
        EXPECT_FALSE(u->ipv4) << a;
    }
}

TEST(radius_update, duplicate_ipv6_prefixes_bind_once) {
    const auto r = parse_accounting_request(packet()
                                                .add(40, u32(1))
                                                .add(44, text("s1"))
                                                .add(4, v4("192.0.2.1"))
                                                .add(97, v6prefix("2001:db8:107::", 56))
                                                .add(123, v6prefix("2001:db8:107::", 56))
                                                .finish(secret));
    ASSERT_TRUE(r);
    const auto u = to_binding_update(*r, 0);
    ASSERT_TRUE(u);
    ASSERT_EQ(u->ipv6_prefixes.size(), 1u);
    EXPECT_FALSE(u->ipv4);
}

TEST(radius_update, text_is_escaped) {
    EXPECT_EQ(escape_text("alice@example.jp"), "alice@example.jp");
    EXPECT_EQ(escape_text("山田@例え.jp"), "山田@例え.jp");
    EXPECT_EQ(escape_text(std::string_view("a\0b", 3)), "a\\x00b");
    EXPECT_EQ(escape_text("a\nb\x7f"), "a\\x0ab\\x7f");
    EXPECT_EQ(escape_text("a\\x41"), "a\\x5cx41") << "a literal backslash cannot fake an escape";
    EXPECT_EQ(escape_text("\xff\xfe"), "\\xff\\xfe");
    EXPECT_EQ(escape_text("\xc0\xaf"), "\\xc0\\xaf") << "overlong";
    EXPECT_EQ(escape_text("\xed\xa0\x80"), "\\xed\\xa0\\x80") << "surrogate";
    EXPECT_EQ(escape_text("\xe5\xb1"), "\\xe5\\xb1") << "truncated sequence";
    EXPECT_EQ(escape_text("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80") << "beyond U+10FFFF";
    EXPECT_EQ(escape_text("\xf0\x9f\x93\xa7"), "\xf0\x9f\x93\xa7") << "U+1F4E7";

    const auto r = parse_accounting_request(
        packet().add(40, u32(1)).add(44, text("s\x01")).add(1, text("bob\xff")).add(32, text("n\n")).finish(secret));
    ASSERT_TRUE(r);
    const auto u = to_binding_update(*r, 0);
    ASSERT_TRUE(u);
    EXPECT_EQ(u->account, "bob\\xff");
    EXPECT_EQ(u->session_id, "s\\x01");
    EXPECT_EQ(u->nas_identifier, "n\\x0a");
}

// ------------------------------------------------------------ time sanity

TEST(radius_time, bounds_against_the_receive_time) {
    constexpr int64_t received = 1795400500;   // 2026-11-23T02:21:40Z
    constexpr uint32_t max32 = 0xffffffffu;
    struct time_case {
        const char* description;
        std::optional<uint32_t> event_timestamp, delay_time, session_time;
        const char* error;   // "" : accepted
    };
    const time_case cases[] = {
        {"no time attributes: the receive time", {}, {}, {}, ""},
        {"Event-Timestamp now", received, {}, {}, ""},
        {"Event-Timestamp 300 s ahead (a NAS clock a little fast)", received + 300, {}, {}, ""},
        {"Event-Timestamp 301 s ahead", received + 301, {}, {}, "Event-Timestamp (55) 1795400801 (2026-11-23T02:26:41Z) is 301 s after the receive time 1795400500 (2026-11-23T02:21:40Z); at most 300 s ahead is accepted"},
        {"Event-Timestamp 2^32-1 (year 2106)", max32, {}, {}, "Event-Timestamp (55) 4294967295 (2106-02-07T06:28:15Z) is 2499566795 s after the receive time 1795400500 (2026-11-23T02:21:40Z); at most 300 s ahead is accepted"},
        {"Event-Timestamp a week old (replayed after an outage)", received - 604800, {}, {}, ""},
        {"Event-Timestamp a week and a second old", received - 604801, {}, {}, "Event-Timestamp (55) 1794795699 (2026-11-16T02:21:39Z) is 604801 s before the receive time 1795400500 (2026-11-23T02:21:40Z); at most 604800 s old is accepted"},
        {"Event-Timestamp 0", 0u, {}, {}, "Event-Timestamp (55) 0 (1970-01-01T00:00:00Z) is 1795400500 s before the receive time 1795400500 (2026-11-23T02:21:40Z); at most 604800 s old is accepted"},
        {"Acct-Delay-Time a week", {}, 604800u, {}, ""},
        {"Acct-Delay-Time a week and a second", {}, 604801u, {}, "Acct-Delay-Time (41) 604801 s exceeds the maximum age of 604800 s (the receive time 1795400500 (2026-11-23T02:21:40Z))"},
        {"Acct-Delay-Time 2^32-1 (year 1890)", {}, max32, {}, "Acct-Delay-Time (41) 4294967295 s exceeds the maximum age of 604800 s (the receive time 1795400500 (2026-11-23T02:21:40Z))"},
        {"Acct-Delay-Time 2^32-1 beside a sane Event-Timestamp", received, max32, {}, "Acct-Delay-Time (41) 4294967295 s exceeds the maximum age of 604800 s (the receive time 1795400500 (2026-11-23T02:21:40Z))"},
        {"Acct-Session-Time of a year", received, {}, 365u * 86400, ""},
        {"Acct-Session-Time 2^32-1 (a start in 1890)", received, {}, max32, "Acct-Session-Time (46) 4294967295 s exceeds the maximum session length of 315360000 s"},
    };
    for (const auto& c : cases) {
        packet p;
        p.add(40, u32(3)).add(44, text("s1")).add(4, v4("192.0.2.1"));
        if (c.event_timestamp) p.add(55, u32(*c.event_timestamp));
        if (c.delay_time) p.add(41, u32(*c.delay_time));
        if (c.session_time) p.add(46, u32(*c.session_time));
        const auto r = parse_accounting_request(p.finish(secret));
        ASSERT_TRUE(r) << c.description;
        const auto error = check_event_time(*r, received);
        EXPECT_EQ(error.value_or(""), c.error) << c.description;
    }
}

// ------------------------------------------------------------ clients file

std::vector<std::string> client_errors(const std::string& text) {
    try {
        load_clients_text(text, "clients.yaml");
    } catch (const policy_error& e) {
        return e.errors();
    }
    ADD_FAILURE() << "accepted:\n" << text;
    return {};
}

TEST(radius_clients, load_and_find) {
    const auto t = load_clients_text(R"(clients:
  - address: 127.0.0.1
    secret: "one-secret"
  - address: 192.0.2.0/24
    secret: wide
    name: bng-pool
  - address: 192.0.2.1
    secret: narrow
  - address: "::1"
    secret: six
)",
                                     "clients.yaml");
    EXPECT_EQ(t.size(), 4u);
    std::string err;
    auto host = [&](const char* a) { return *parse_prefix(a, err); };
    ASSERT_NE(t.find(host("192.0.2.1")), nullptr);
    EXPECT_EQ(t.find(host("192.0.2.1"))->secret, "narrow") << "longest prefix wins";
    EXPECT_EQ(t.find(host("192.0.2.1"))->name, "192.0.2.1");
    EXPECT_EQ(t.find(host("192.0.2.9"))->secret, "wide");
    EXPECT_EQ(t.find(host("192.0.2.9"))->name, "bng-pool");
    EXPECT_EQ(t.find(host("127.0.0.1"))->secret, "one-secret");
    EXPECT_EQ(t.find(host("::1"))->secret, "six");
    EXPECT_EQ(t.find(host("198.51.100.1")), nullptr);
    EXPECT_EQ(t.find(host("2001:db8::1")), nullptr);

    sockaddr_storage ss{};
    auto& in6 = reinterpret_cast<sockaddr_in6&>(ss);
    in6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:192.0.2.1", &in6.sin6_addr);
    ASSERT_NE(t.find(ss), nullptr) << "IPv4-mapped source matches the IPv4 entry";
    EXPECT_EQ(t.find(ss)->secret, "narrow");
}

TEST(radius_clients, errors_name_the_line_and_never_the_secret) {
    const std::string text = R"(clients:
  - address: 192.0.2.1
    secret: "Hunter2-first"
  - address: 192.0.2.1
    secret: "Hunter2-second"
  - address: 192.0.2.1/24
    secret: "Hunter2-third"
  - address: 192.0.2.2
    secret: ["Hunter2-fourth"]
  - address: 192.0.2.3
    secret: {x: "Hunter2-fifth"}
  - address: 192.0.2.4
    secret: ""
  - address: 192.0.2.5
  - secret: "Hunter2-sixth"
  - address: 192.0.2.6
    secret: "Hunter2-seventh"
    port: 1813
  - "Hunter2-eighth"
  - address: [1]
    secret: "Hunter2-ninth"
    name: [x]
)";
    const auto errors = client_errors(text);
    const std::vector<std::string> expect{
        "clients.yaml:4: clients[1].address: 192.0.2.1/32 is listed twice (first at line 2)",
        "clients.yaml:6: clients[2].address: '192.0.2.1/24' has host bits set (did you mean 192.0.2.0/24?)",
        "clients.yaml:9: clients[3].secret: expected the shared secret as a string",
        "clients.yaml:11: clients[4].secret: expected the shared secret as a string",
        "clients.yaml:13: clients[5].secret: is empty",
        "clients.yaml:14: clients[6].secret: missing (the RADIUS shared secret)",
        "clients.yaml:15: clients[7].address: missing",
        "clients.yaml:18: clients[8].port: unknown key (expected one of: address, secret, name)",
        "clients.yaml:19: clients[9]: expected a mapping {address, secret}",
        "clients.yaml:20: clients[10].address: expected an address or prefix such as 192.0.2.1 or 192.0.2.0/28",
        "clients.yaml:22: clients[10].name: expected a non-empty name",
    };
    EXPECT_EQ(errors, expect);
    for (const auto& e : errors) EXPECT_EQ(e.find("Hunter2"), std::string::npos) << e;
}

TEST(radius_clients, file_level_errors) {
    EXPECT_EQ(client_errors(""), std::vector<std::string>{"clients.yaml:1: the clients file is empty"});
    EXPECT_EQ(client_errors("- a\n"),
              std::vector<std::string>{"clients.yaml:1: expected a mapping with the key 'clients'"});
    EXPECT_EQ(client_errors("version: 1\n"),
              (std::vector<std::string>{"clients.yaml:1: version: unknown key (expected one of: clients)",
                                        "clients.yaml:1: clients: missing (a list of {address, secret})"}));
    EXPECT_EQ(client_errors("clients: 3\n"),
              std::vector<std::string>{"clients.yaml:1: clients: expected a list of {address, secret}"});
    // The message names the problem, never the characters at it (part of a secret).
    const auto syntax = client_errors("clients:\n  - address: 192.0.2.1\n    secret: \"Hunter2\\q\"\n");
    ASSERT_EQ(syntax.size(), 1u);
    EXPECT_EQ(syntax[0], "clients.yaml:3: YAML syntax error: found unknown escape character (while parsing a quoted scalar)");
    // Another file named by mistake (here lines like /etc/shadow's): its lines are not echoed.
    const auto shadow = client_errors("root:$y$j9T$abc$def:20000:0:99999:7:::\nbin:*:20000:0:99999:7:::\n");
    ASSERT_EQ(shadow.size(), 3u) << shadow[0];
    EXPECT_EQ(shadow[0], "clients.yaml:1: a key that is not a word: unknown key (expected one of: clients)");
    for (const auto& e : shadow) EXPECT_EQ(e.find("20000"), std::string::npos) << e;
    try {
        load_clients_file("/nonexistent/clients.yaml");
        ADD_FAILURE();
    } catch (const policy_error& e) {
        EXPECT_STREQ(e.what(), "/nonexistent/clients.yaml:0: cannot open the RADIUS clients file");
    }
}

// ------------------------------------------------------------ listener

// radius.listen as start reads it; --check-policy refuses the same texts.
TEST(RadiusListen, ParsesAddressAndPortOrNamesWhatIsWrong) {
    EXPECT_EQ(parse_listen("127.0.0.1:1813").address, "127.0.0.1");
    EXPECT_EQ(parse_listen("127.0.0.1:1813").port, 1813);
    EXPECT_EQ(parse_listen("[2001:db8::53]:1813").address, "2001:db8::53");
    EXPECT_EQ(parse_listen("0.0.0.0:0").port, 0);
    auto why = [](const std::string& text) {
        try {
            parse_listen(text);
            return std::string("accepted");
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
    };
    EXPECT_EQ(why("127.0.0.1"), "'127.0.0.1' is not ADDRESS:PORT");
    EXPECT_EQ(why("127.0.0.1:"), "'127.0.0.1:' is not ADDRESS:PORT");
    EXPECT_EQ(why("127.0.0.1:99999"), "'127.0.0.1:99999': '99999' is not a port (0-65535)");
    EXPECT_EQ(why("127.0.0.1:18x3"), "'127.0.0.1:18x3': '18x3' is not a port (0-65535)");
    EXPECT_EQ(why("radius.example.jp:1813"),
              "'radius.example.jp:1813': 'radius.example.jp' is not an IPv4 or IPv6 address ([...] for IPv6)");
    EXPECT_EQ(why("2001:db8::53:1813"), "'2001:db8::53:1813': an IPv6 address goes in brackets, [2001:db8::53]:PORT");
}


client_table local_clients() {
    return load_clients_text(std::string("clients:\n  - address: 127.0.0.1\n    secret: \"") + secret +
                                 "\"\n  - address: \"::1\"\n    secret: \"" + secret + "\"\n",
                             "clients.yaml");
}

using test::nas_socket;

// Waits until the listener has something to read, then lets it read.
size_t pump(accounting_listener& l) {
    pollfd p{l.fd(), POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0) return 0;
    return l.poll_once();
}

struct listener_fixture : ::testing::Test {
    std::vector<binding_update> applied;
    std::vector<std::string> log;
    bool accept = true;
    bool throw_instead = false;
    bool refuse = false;
    int64_t now = 1795400500;   // the listener's clock (full_start's Event-Timestamp + 500 s)
    std::unique_ptr<accounting_listener> make(const std::string& address = "127.0.0.1",
                                              client_table clients = local_clients(), listener_config c = {}) {
        c.address = address;
        c.port = 0;
        return std::make_unique<accounting_listener>(
            c, std::move(clients),
            [this](const binding_update& u) {
                if (throw_instead) throw std::runtime_error("history.db: record a session (INSERT INTO sessions): disk I/O error");
                if (refuse) throw update_refused("::/0 is too wide to bind (2^56 /56 subscriber prefixes)");
                if (accept) applied.push_back(u);
                return accept;
            },
            [this](const std::string& line) { log.push_back(line); }, [this] { return now; });
    }
    void TearDown() override {
        for (const auto& line : log) EXPECT_EQ(line.find(secret), std::string::npos) << line;
    }
};

// Checks `resp` answers `req` under `secret_` (computed here independently).
void expect_response_to(const bytes& req, const std::optional<bytes>& resp, std::string_view secret_ = secret) {
    ASSERT_TRUE(resp) << "no Accounting-Response";
    ASSERT_GE(resp->size(), 20u);
    EXPECT_EQ((*resp)[0], 5);
    EXPECT_EQ((*resp)[1], req[1]);
    EXPECT_EQ(size_t((*resp)[2] << 8 | (*resp)[3]), resp->size());
    bytes expect(resp->begin(), resp->begin() + 4);
    expect.insert(expect.end(), req.begin() + 4, req.begin() + 20);
    expect.insert(expect.end(), resp->begin() + 20, resp->end());
    expect.insert(expect.end(), secret_.begin(), secret_.end());
    EXPECT_EQ(hex(std::span(*resp).subspan(4, 16)), hex(md5_of(expect)));
}

TEST_F(listener_fixture, start_is_applied_then_answered) {
    auto l = make();
    EXPECT_NE(l->port(), 0);
    EXPECT_EQ(l->local(), "127.0.0.1:" + std::to_string(l->port()));
    nas_socket nas;
    const bytes req = full_start().finish(secret);
    nas.send(req, l->port());
    EXPECT_EQ(pump(*l), 1u);
    ASSERT_EQ(applied.size(), 1u);
    EXPECT_EQ(applied[0].account, "alice@example.jp");
    EXPECT_EQ(applied[0].kind, binding_kind::start);
    const auto resp = nas.receive();
    expect_response_to(req, resp);
    EXPECT_EQ(hex(std::span(*resp).subspan(20)), "2109" + hex(text("proxy-1"))) << "Proxy-State echoed";
    EXPECT_EQ(l->counters().received, 1u);
    EXPECT_EQ(l->counters().accepted, 1u);
    EXPECT_EQ(l->counters().starts, 1u);
    EXPECT_TRUE(log.empty());
}

TEST_F(listener_fixture, every_kind_is_counted) {
    auto l = make();
    nas_socket nas;
    uint8_t id = 1;
    for (uint32_t status : {1u, 3u, 2u, 7u, 8u}) {
        packet p;
        p.id = id++;
        p.add(40, u32(status)).add(44, text("s1")).add(4, v4("192.0.2.1")).add(8, v4("198.51.100.7"));
        const bytes req = p.finish(secret);
        nas.send(req, l->port());
        pump(*l);
        expect_response_to(req, nas.receive());
    }
    const auto& c = l->counters();
    EXPECT_EQ(c.accepted, 5u);
    EXPECT_EQ(c.starts + c.interims + c.stops + c.accounting_ons + c.accounting_offs, 5u);
    EXPECT_EQ(c.starts, 1u);
    EXPECT_EQ(c.interims, 1u);
    EXPECT_EQ(c.stops, 1u);
    EXPECT_EQ(c.accounting_ons, 1u);
    EXPECT_EQ(c.accounting_offs, 1u);
    ASSERT_EQ(applied.size(), 5u);
    EXPECT_EQ(applied[1].event_time, 1795400500) << "no Event-Timestamp: the listener's clock";
}

TEST_F(listener_fixture, wrong_secret_is_dropped_silently) {
    auto l = make();
    nas_socket nas;
    nas.send(full_start().finish("not-the-secret"), l->port());
    pump(*l);
    EXPECT_FALSE(nas.receive(200));
    EXPECT_TRUE(applied.empty());
    EXPECT_EQ(l->counters().bad_authenticator, 1u);
    EXPECT_EQ(l->counters().accepted, 0u);
    ASSERT_EQ(log.size(), 1u);
    EXPECT_NE(log[0].find("Request Authenticator does not match"), std::string::npos) << log[0];
    EXPECT_NE(log[0].find("identifier 42"), std::string::npos) << log[0];
}

TEST_F(listener_fixture, unknown_client) {
    auto l = make("127.0.0.1", load_clients_text("clients:\n  - address: 192.0.2.1\n    secret: x\n", "c.yaml"));
    nas_socket nas;
    nas.send(full_start().finish(secret), l->port());
    pump(*l);
    EXPECT_FALSE(nas.receive(200));
    EXPECT_EQ(l->counters().unknown_client, 1u);
    ASSERT_EQ(log.size(), 1u);
    EXPECT_NE(log[0].find("from 127.0.0.1:"), std::string::npos) << log[0];
    EXPECT_NE(log[0].find("not a configured RADIUS client"), std::string::npos) << log[0];
    // SIGHUP-style reload makes it known.
    l->replace_clients(local_clients());
    const bytes req = full_start().finish(secret);
    nas.send(req, l->port());
    pump(*l);
    expect_response_to(req, nas.receive());
}

TEST_F(listener_fixture, malformed_unsupported_and_oversized) {
    auto l = make();
    nas_socket nas;
    nas.send(bytes{4, 1, 0}, l->port());                                       // shorter than a header
    pump(*l);
    packet access = full_start();
    access.code = 1;
    nas.send(access.finish(secret), l->port());                               // Access-Request
    pump(*l);
    nas.send(packet().add(40, u32(1)).raw({8, 9, 1}).finish(secret), l->port());   // authentic but malformed
    pump(*l);
    nas.send(packet().add(40, u32(1)).add(4, v4("192.0.2.1")).finish(secret), l->port());   // no session id
    pump(*l);
    bytes huge = full_start().finish(secret);
    huge.resize(5000);
    nas.send(huge, l->port());
    pump(*l);
    EXPECT_FALSE(nas.receive(200));
    const auto& c = l->counters();
    EXPECT_EQ(c.received, 5u);
    EXPECT_EQ(c.malformed, 4u);
    EXPECT_EQ(c.unsupported_code, 1u);
    EXPECT_EQ(c.accepted, 0u);
    EXPECT_TRUE(applied.empty());
    ASSERT_EQ(log.size(), 5u);
    EXPECT_NE(log[0].find("packet is 3 octets, shorter than the 20-octet RADIUS header"), std::string::npos) << log[0];
    EXPECT_NE(log[1].find("code 1 (Access-Request) is not Accounting-Request (4)"), std::string::npos) << log[1];
    EXPECT_NE(log[2].find("attribute 8 (Framed-IP-Address) at offset 26: length 9 runs past the end of the packet"),
              std::string::npos)
        << log[2];
    EXPECT_NE(log[3].find("start without Acct-Session-Id (44)"), std::string::npos) << log[3];
    EXPECT_NE(log[4].find("datagram of 5000 octets exceeds the RFC 2865 maximum of 4096"), std::string::npos) << log[4];
}

TEST_F(listener_fixture, unauthenticated_garbage_counts_as_bad_authenticator) {
    // A forged Accounting-Request with broken attributes: its attributes are
    // never looked at, the authenticator fails first.
    auto l = make();
    nas_socket nas;
    nas.send(packet().raw({8, 9, 1}).finish("guess"), l->port());
    pump(*l);
    EXPECT_EQ(l->counters().bad_authenticator, 1u);
    EXPECT_EQ(l->counters().malformed, 0u);
}

TEST_F(listener_fixture, not_answered_until_applied) {
    auto l = make();
    nas_socket nas;
    const bytes req = full_start().finish(secret);
    accept = false;
    nas.send(req, l->port());
    pump(*l);
    EXPECT_FALSE(nas.receive(200)) << "not stored: no response";
    throw_instead = true;
    nas.send(req, l->port());
    pump(*l);
    EXPECT_FALSE(nas.receive(200));
    EXPECT_EQ(l->counters().apply_failed, 2u);
    ASSERT_EQ(log.size(), 2u);
    EXPECT_NE(log[1].find("disk I/O error"), std::string::npos) << log[1];
    // The NAS retransmits; now the store works.
    accept = true;
    throw_instead = false;
    nas.send(req, l->port());
    pump(*l);
    expect_response_to(req, nas.receive());
    EXPECT_EQ(l->counters().accepted, 1u);
}

TEST_F(listener_fixture, other_status_types_are_answered_not_applied) {
    auto l = make();
    nas_socket nas;
    const bytes req = packet().add(40, u32(15)).add(44, text("s1")).add(4, v4("192.0.2.1")).finish(secret);
    nas.send(req, l->port());
    pump(*l);
    expect_response_to(req, nas.receive());
    EXPECT_TRUE(applied.empty());
    EXPECT_EQ(l->counters().ignored, 1u);
    EXPECT_EQ(l->counters().accepted, 0u);
}

TEST_F(listener_fixture, ipv6_loopback) {
    std::unique_ptr<accounting_listener> l;
    try {
        l = make("[::1]");
    } catch (const std::runtime_error& e) {
        GTEST_SKIP() << "no IPv6 loopback: " << e.what();
    }
    EXPECT_EQ(l->local(), "[::1]:" + std::to_string(l->port()));
    nas_socket nas(AF_INET6);
    const bytes req = full_start().finish(secret);
    nas.send(req, l->port());
    pump(*l);
    expect_response_to(req, nas.receive());
    EXPECT_EQ(applied.size(), 1u);
}

TEST_F(listener_fixture, poll_once_never_blocks_and_respects_its_budget) {
    listener_config c;
    c.port = 0;
    c.max_datagrams_per_poll = 3;
    size_t calls = 0;
    accounting_listener l(c, local_clients(), [&](const binding_update&) { return ++calls, true; }, {},
                          [] { return int64_t{1795400000}; });
    EXPECT_EQ(l.poll_once(), 0u) << "nothing waiting";
    nas_socket nas;
    for (uint8_t i = 0; i < 5; ++i) {
        packet p = full_start();
        p.id = i;
        nas.send(p.finish(secret), l.port());
    }
    EXPECT_EQ(pump(l), 3u);
    EXPECT_EQ(pump(l), 2u);
    EXPECT_EQ(calls, 5u);
}

TEST_F(listener_fixture, batch_is_answered_only_after_commit) {
    auto l = make();
    std::vector<std::string> events;
    size_t commits = 0;
    bool commit_ok = true;
    bool commit_throws = false;
    l->set_commit([&] {
        ++commits;
        if (commit_throws) throw std::runtime_error("history.db: commit (COMMIT): disk I/O error");
        return commit_ok;
    });
    nas_socket nas;
    auto send_three = [&](uint8_t first_id) {
        std::vector<bytes> reqs;
        for (uint8_t i = 0; i < 3; ++i) {
            packet p = full_start();
            p.id = static_cast<uint8_t>(first_id + i);
            reqs.push_back(p.finish(secret));
            nas.send(reqs.back(), l->port());
        }
        // All three are queued on loopback before the listener reads.
        pollfd p{l->fd(), POLLIN, 0};
        ::poll(&p, 1, 1000);
        return reqs;
    };

    const auto reqs = send_three(10);
    EXPECT_EQ(l->poll_once(), 3u);
    EXPECT_EQ(commits, 1u) << "one commit per poll";
    EXPECT_EQ(applied.size(), 3u);
    for (const auto& req : reqs) expect_response_to(req, nas.receive());
    EXPECT_EQ(l->counters().accepted, 3u);

    commit_ok = false;
    send_three(20);
    EXPECT_EQ(l->poll_once(), 3u);
    EXPECT_FALSE(nas.receive(200)) << "not committed: nothing answered";
    EXPECT_EQ(l->counters().apply_failed, 3u);
    commit_throws = true;
    send_three(30);
    EXPECT_EQ(l->poll_once(), 3u);
    EXPECT_FALSE(nas.receive(200));
    EXPECT_EQ(l->counters().apply_failed, 6u);
    EXPECT_NE(log.back().find("3 accounting updates not answered, the NASes will retransmit: history.db: commit (COMMIT): "
                              "disk I/O error"),
              std::string::npos)
        << log.back();
    EXPECT_EQ(l->counters().accepted, 3u);

    // A poll with nothing applied commits nothing; ignored status types are
    // answered at once.
    const size_t before = commits;
    const bytes failed = packet().add(40, u32(15)).add(44, text("s1")).add(4, v4("192.0.2.1")).finish(secret);
    nas.send(failed, l->port());
    pump(*l);
    EXPECT_EQ(commits, before);
    expect_response_to(failed, nas.receive());
}

TEST_F(listener_fixture, times_out_of_bounds_are_dropped_logged_and_not_answered) {
    auto l = make();
    nas_socket nas;
    auto start_with = [](uint8_t id, uint8_t type, uint32_t value) {
        packet p;
        p.id = id;
        p.add(40, u32(1)).add(1, text("alice@example.jp")).add(44, text("s1")).add(8, v4("198.51.100.7"));
        p.add(4, v4("192.0.2.1")).add(type, u32(value));
        return p.finish(secret);
    };
    nas.send(start_with(1, attr_event_timestamp, 0xffffffffu), l->port());
    pump(*l);
    nas.send(start_with(2, attr_acct_delay_time, 0xffffffffu), l->port());
    pump(*l);
    EXPECT_FALSE(nas.receive(200)) << "not stored, so not answered";
    EXPECT_TRUE(applied.empty());
    EXPECT_EQ(l->counters().bad_time, 2u);
    EXPECT_EQ(l->counters().accepted, 0u);
    ASSERT_EQ(log.size(), 2u);
    EXPECT_NE(log[0].find("start not stored: Event-Timestamp (55) 4294967295 (2106-02-07T06:28:15Z) is 2499566795 s "
                          "after the receive time 1795400500"),
              std::string::npos)
        << log[0];
    EXPECT_NE(log[0].find("identifier 1"), std::string::npos) << log[0];
    EXPECT_NE(log[1].find("Acct-Delay-Time (41) 4294967295 s exceeds the maximum age of 604800 s"), std::string::npos)
        << log[1];
    // A sane one from the same NAS goes through.
    const bytes ok = start_with(3, attr_event_timestamp, 1795400400);
    nas.send(ok, l->port());
    pump(*l);
    expect_response_to(ok, nas.receive());
    ASSERT_EQ(applied.size(), 1u);
    EXPECT_EQ(applied[0].event_time, 1795400400);
}

TEST_F(listener_fixture, exact_duplicate_within_the_window_is_answered_from_the_cache_not_applied) {
    auto l = make();
    nas_socket nas;
    const bytes req = full_start().finish(secret);
    nas.send(req, l->port());
    pump(*l);
    const auto first = nas.receive();
    expect_response_to(req, first);
    ASSERT_EQ(applied.size(), 1u);

    // Our response was lost; the NAS resends the same datagram a minute later.
    now += 60;
    nas.send(req, l->port());
    pump(*l);
    const auto again = nas.receive();
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, *first) << "the cached response, byte for byte";
    EXPECT_EQ(applied.size(), 1u) << "not applied again";
    EXPECT_EQ(l->counters().duplicate, 1u);
    EXPECT_EQ(l->counters().accepted, 1u);

    // The same datagram after the window (the cache forgot it): applied
    // again, the history's rules make that change nothing.
    now += 300 - 60 + 1;
    nas.send(req, l->port());
    pump(*l);
    expect_response_to(req, nas.receive());
    EXPECT_EQ(applied.size(), 2u);
    EXPECT_EQ(l->counters().duplicate, 1u);
    EXPECT_EQ(l->counters().accepted, 2u);

    // Another identifier or another authenticator is another request.
    packet other = full_start();
    other.id = 43;
    nas.send(other.finish(secret), l->port());
    pump(*l);
    EXPECT_TRUE(nas.receive());
    EXPECT_EQ(applied.size(), 3u);
    uint64_t sum = 0;
    for (const auto& [result, n] : l->counters().by_result()) sum += n;
    EXPECT_EQ(sum, l->counters().received) << "each datagram counted under one result";
    EXPECT_TRUE(log.empty()) << log.front();
}

TEST_F(listener_fixture, a_request_not_answered_is_not_cached_its_retransmission_is_applied) {
    auto l = make();
    nas_socket nas;
    const bytes req = full_start().finish(secret);
    accept = false;
    nas.send(req, l->port());
    pump(*l);
    EXPECT_FALSE(nas.receive(200));
    refuse = true;
    nas.send(req, l->port());
    pump(*l);
    EXPECT_FALSE(nas.receive(200));
    EXPECT_EQ(l->counters().bad_address, 1u);
    ASSERT_EQ(log.size(), 2u);
    EXPECT_NE(log[1].find("start of session 's1' refused, nothing of it applied: ::/0 is too wide to bind"),
              std::string::npos)
        << log[1];
    refuse = false;
    accept = true;
    nas.send(req, l->port());
    pump(*l);
    expect_response_to(req, nas.receive());
    EXPECT_EQ(applied.size(), 1u);
    EXPECT_EQ(l->counters().duplicate, 0u);
    EXPECT_EQ(l->counters().apply_failed, 1u);

    // With batching: a poll whose commit fails caches nothing either.
    auto b = make();
    bool commit_ok = false;
    b->set_commit([&] { return commit_ok; });
    packet p = full_start();
    p.id = 7;
    const bytes batched = p.finish(secret);
    nas.send(batched, b->port());
    pump(*b);
    EXPECT_FALSE(nas.receive(200));
    commit_ok = true;
    nas.send(batched, b->port());
    pump(*b);
    expect_response_to(batched, nas.receive());
    EXPECT_EQ(applied.size(), 3u) << "the retransmission after the failed commit was applied";
    nas.send(batched, b->port());
    pump(*b);
    expect_response_to(batched, nas.receive());
    EXPECT_EQ(applied.size(), 3u) << "now it is answered from the cache";
    EXPECT_EQ(b->counters().duplicate, 1u);
    EXPECT_EQ(b->counters().apply_failed, 1u);
}

TEST_F(listener_fixture, two_copies_in_one_poll_are_applied_and_answered_once) {
    auto l = make();
    size_t commits = 0;
    l->set_commit([&] { return ++commits, true; });
    nas_socket nas;
    const bytes req = full_start().finish(secret);
    nas.send(req, l->port());
    nas.send(req, l->port());
    pollfd p{l->fd(), POLLIN, 0};
    ::poll(&p, 1, 1000);
    EXPECT_EQ(l->poll_once(), 2u);
    EXPECT_EQ(applied.size(), 1u);
    EXPECT_EQ(commits, 1u);
    expect_response_to(req, nas.receive());
    EXPECT_FALSE(nas.receive(200)) << "one response";
    EXPECT_EQ(l->counters().duplicate, 1u);
    EXPECT_EQ(l->counters().accepted, 1u);
}

TEST_F(listener_fixture, the_duplicate_cache_is_bounded_and_forgotten_on_reload) {
    listener_config c;
    c.duplicate_cache_entries = 2;
    auto l = make("127.0.0.1", local_clients(), c);
    nas_socket nas;
    std::vector<bytes> reqs;
    for (uint8_t id = 1; id <= 3; ++id) {
        packet p = full_start();
        p.id = id;
        reqs.push_back(p.finish(secret));
        nas.send(reqs.back(), l->port());
        pump(*l);
        expect_response_to(reqs.back(), nas.receive());
    }
    EXPECT_EQ(applied.size(), 3u);
    nas.send(reqs[0], l->port());   // forgotten: the oldest of three in a cache of two
    pump(*l);
    expect_response_to(reqs[0], nas.receive());
    EXPECT_EQ(applied.size(), 4u);
    nas.send(reqs[0], l->port());   // remembered again
    pump(*l);
    expect_response_to(reqs[0], nas.receive());
    EXPECT_EQ(applied.size(), 4u);
    EXPECT_EQ(l->counters().duplicate, 1u);
    // A reload may change the secrets the cached responses were signed with.
    l->replace_clients(local_clients());
    nas.send(reqs[0], l->port());
    pump(*l);
    expect_response_to(reqs[0], nas.receive());
    EXPECT_EQ(applied.size(), 5u);
}

TEST(radius_listener, setup_errors) {
    listener_config c;
    c.address = "localhost";
    EXPECT_THROW(
        {
            try {
                accounting_listener(c, local_clients(), [](const binding_update&) { return true; });
            } catch (const std::runtime_error& e) {
                EXPECT_STREQ(e.what(), "radius: 'localhost' is not an IPv4 or IPv6 address to listen on");
                throw;
            }
        },
        std::runtime_error);
    c.address = "127.0.0.1";
    c.port = 0;
    accounting_listener first(c, local_clients(), [](const binding_update&) { return true; });
    c.port = first.port();
    try {
        accounting_listener second(c, local_clients(), [](const binding_update&) { return true; });
        ADD_FAILURE() << "bound twice";
    } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "radius: cannot bind 127.0.0.1:" + std::to_string(c.port) + ": Address already in use");
    }
}

}  // namespace
}  // namespace sekisho::radius
