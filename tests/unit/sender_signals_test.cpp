// sender_signals: the From header's domain from every mailbox form, the
// mismatch against the MAIL FROM hash the SMTP parser reports, distinct MAIL
// FROM domains per subscriber per window, EHLO flags from a parsed session,
// and scores from the policy.
#include "dataplane/inspect/sender_signals.h"

#include <gtest/gtest.h>

#include <string>

#include "dataplane/smtp/smtp_session.h"

namespace sekisho {
namespace {

constexpr uint64_t s = 1'000'000'000, hour = 3600 * s;
constexpr uint64_t window_start = 1'700'000'000 * s / hour * hour;

TEST(sender_signals, names_are_stable) {
    EXPECT_STREQ(to_string(sender_signal::from_mismatch), "from_mismatch");
    EXPECT_STREQ(to_string(sender_signal::sender_domains), "sender_domains");
    EXPECT_STREQ(to_string(sender_signal::ehlo_ip_literal), "ehlo_ip_literal");
    EXPECT_STREQ(to_string(sender_signal::ehlo_bare_ip), "ehlo_bare_ip");
    EXPECT_STREQ(to_string(sender_signal::ehlo_not_fqdn), "ehlo_not_fqdn");
    EXPECT_EQ(sender_signal_count, 5u);
}

TEST(sender_signals, header_from_domain_forms) {
    const struct {
        const char* value;
        const char* domain;
    } cases[] = {
        {"user@example.jp", "example.jp"},
        {"<user@example.jp>", "example.jp"},
        {"\"Yamada Taro\" <taro@example.jp>", "example.jp"},
        {"Yamada Taro <taro@Mail.Example.JP>", "Mail.Example.JP"},
        {"=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <taro@example.jp>", "example.jp"},
        {"taro@example.jp (Yamada Taro)", "example.jp"},
        {"taro@example.jp(Yamada (Taro))", "example.jp"},
        {"(comment) taro@example.jp", "example.jp"},
        {"\"boss@example.com\" <crook@example.net>", "example.net"},            // a quoted address is a name
        {"boss@example.com <crook@example.net>", "example.net"},                // the angle address wins
        {"\"a \\\" <b@example.com>\" <c@example.net>", "example.net"},          // escapes in the name
        {"(x@example.com) <c@example.net>", "example.net"},                     // an address in a comment
        {"\"john doe\"@example.jp", "example.jp"},                              // a quoted local part
        {"<\"odd@local\"@example.jp>", "example.jp"},
        {"<@relay.example.com,@relay.example.net:user@example.jp>", "example.jp"},  // a source route
        {"a@example.jp, b@example.net", "example.jp"},                         // the first mailbox
        {"A <a@example.jp>, B <b@example.net>", "example.jp"},
        {"Team: a@example.jp, b@example.net;", "example.jp"},                  // a group
        {"user@[192.0.2.1]", "[192.0.2.1]"},
        {"user@example.jp.", "example.jp."},
        {"  \t user@example.jp \r\n", "example.jp"},
        {"\xe5\xb1\xb1\xe7\x94\xb0 <taro@example.jp>", "example.jp"},          // a raw UTF-8 name
        // No domain to be had.
        {"", ""},
        {"Yamada Taro", ""},
        {"<>", ""},
        {"<postmaster>", ""},
        {"undisclosed-recipients:;", ""},
        {"\"a@example.com\"", ""},
        {"(a@example.com)", ""},
        {"user@", ""},
        {"user@exa mple.jp", "exa"},
        {"<user@exa mple.jp>", ""},
        {"<user@example.jp", ""},  // never closed
        {"user@exa\"mple.jp", ""},
    };
    for (const auto& c : cases) EXPECT_EQ(header_from_domain(c.value), c.domain) << c.value;
}

TEST(sender_signals, header_from_extractor_is_bounded) {
    std::string late(header_from_max_bytes, ' ');
    late += "<user@example.jp>";
    EXPECT_EQ(header_from_domain(late), "");
    std::string early = "<user@example.jp>" + std::string(100000, 'x');
    EXPECT_EQ(header_from_domain(early), "example.jp");
    // Unbalanced quotes and comments end without reading past the bound.
    EXPECT_EQ(header_from_domain("\"" + std::string(5000, '@')), "");
    EXPECT_EQ(header_from_domain(std::string(5000, '(')), "");
}

TEST(sender_signals, mismatch_compares_with_the_smtp_hash) {
    const uint32_t mail_from = smtp_domain_hash("example.jp");
    EXPECT_FALSE(from_mismatch(mail_from, "example.jp"));
    EXPECT_FALSE(from_mismatch(mail_from, "EXAMPLE.JP")) << "ASCII case does not matter";
    EXPECT_FALSE(from_mismatch(mail_from, "example.jp.")) << "nor a trailing dot";
    EXPECT_TRUE(from_mismatch(mail_from, "example.net"));
    EXPECT_TRUE(from_mismatch(mail_from, "news.example.jp"));
    EXPECT_FALSE(from_mismatch(mail_from, "news.example.jp", from_alignment::relaxed));
    EXPECT_FALSE(from_mismatch(mail_from, "a.b.example.jp", from_alignment::relaxed));
    EXPECT_TRUE(from_mismatch(smtp_domain_hash("bounce.example.jp"), "example.jp", from_alignment::relaxed))
        << "a hash cannot tell that MAIL FROM is a subdomain";
    EXPECT_TRUE(from_mismatch(smtp_domain_hash("jp"), "example.jp", from_alignment::relaxed))
        << "a top-level domain alone does not align";
    // Missing either side: no verdict.
    EXPECT_FALSE(from_mismatch(0, "example.net"));
    EXPECT_FALSE(from_mismatch(mail_from, ""));
}

// The hash as the SMTP parser computes it for MAIL FROM, against the header From.
struct no_observer : smtp_observer {
    void on_command(const smtp_command_info&) override {}
    void on_reply(const smtp_reply_info&) override {}
};
smtp_session session_with(std::string_view client) {
    smtp_session sess;
    no_observer o;
    const std::string greeting = "220 mx.example.net ESMTP\r\n";
    sess.feed_server(reinterpret_cast<const uint8_t*>(greeting.data()), greeting.size(), o);
    sess.feed_client(reinterpret_cast<const uint8_t*>(client.data()), client.size(), o);
    return sess;
}

TEST(sender_signals, from_signal_on_a_parsed_session) {
    sender_signal_policy p;
    p.from_mismatch = 40;
    {
        const smtp_session sess = session_with("EHLO client.example.com\r\nMAIL FROM:<Taro@Example.JP> SIZE=100\r\n");
        signal_hits h;
        from_signal(p, sess.sender_hash(), "\"Yamada Taro\" <taro@example.jp>", h);
        EXPECT_FALSE(h.has(sender_signal::from_mismatch));
        from_signal(p, sess.sender_hash(), "\"Bank Example\" <support@bank.example.com>", h);
        EXPECT_TRUE(h.has(sender_signal::from_mismatch));
        EXPECT_EQ(h.score, 40);
        from_signal(p, sess.sender_hash(), "other@example.net", h);
        EXPECT_EQ(h.score, 40) << "a signal scores once";
    }
    {
        const smtp_session sess = session_with("EHLO client.example.com\r\nMAIL FROM:<user@[192.0.2.1]>\r\n");
        signal_hits h;
        from_signal(p, sess.sender_hash(), "user@[192.0.2.1]", h);
        EXPECT_EQ(h.mask, 0u) << "domain literals hash alike";
    }
    {
        const smtp_session sess = session_with("EHLO client.example.com\r\nMAIL FROM:<>\r\n");
        signal_hits h;
        from_signal(p, sess.sender_hash(), "MAILER-DAEMON@example.net", h);
        EXPECT_EQ(h.mask, 0u) << "a bounce has no sender domain to compare";
    }
    p.from_mismatch = 0;
    signal_hits h;
    from_signal(p, smtp_domain_hash("example.jp"), "a@example.net", h);
    EXPECT_EQ(h.mask, 0u) << "score 0: disabled";
}

TEST(sender_signals, ehlo_signals_from_a_parsed_session) {
    sender_signal_policy p;
    p.ehlo_ip_literal = 10;
    p.ehlo_bare_ip = 20;
    p.ehlo_not_fqdn = 5;
    const struct {
        const char* ehlo;
        uint32_t mask;
        int32_t score;
    } cases[] = {
        {"EHLO client.example.com\r\n", 0, 0},
        {"EHLO [192.0.2.1]\r\n", 1u << 2, 10},
        {"HELO [IPv6:2001:db8::1]\r\n", 1u << 2, 10},
        {"EHLO 192.0.2.1\r\n", 1u << 3, 20},
        {"EHLO 2001:db8::1\r\n", 1u << 3, 20},
        {"EHLO localhost\r\n", 1u << 4, 5},
        {"HELO mypc\r\n", 1u << 4, 5},
        {"EHLO\r\n", 1u << 4, 5},
    };
    for (const auto& c : cases) {
        const smtp_session sess = session_with(c.ehlo);
        signal_hits h;
        ehlo_signals(p, sess, h);
        EXPECT_EQ(h.mask, c.mask) << c.ehlo;
        EXPECT_EQ(h.score, c.score) << c.ehlo;
    }
    signal_hits none;
    ehlo_signals(p, session_with("MAIL FROM:<a@example.jp>\r\n"), none);
    EXPECT_EQ(none.mask, 0u) << "no EHLO at all: nothing to judge";
    // Scores are the policy's; 0 disables.
    p.ehlo_bare_ip = 0;
    signal_hits h;
    ehlo_signals(p, false, true, false, h);
    EXPECT_EQ(h.mask, 0u);
    ehlo_signals(p, true, false, true, h);
    EXPECT_TRUE(h.has(sender_signal::ehlo_ip_literal));
    EXPECT_TRUE(h.has(sender_signal::ehlo_not_fqdn));
    EXPECT_EQ(h.score, 15);
}

TEST(sender_signals, distinct_sender_domains_per_window) {
    sender_domain_set set;
    const uint64_t t = window_start + 10 * s;
    EXPECT_EQ(set.observe(smtp_domain_hash("example.jp"), t, hour), 1u);
    EXPECT_EQ(set.observe(smtp_domain_hash("EXAMPLE.jp"), t + s, hour), 1u);
    EXPECT_EQ(set.observe(0, t + s, hour), 1u) << "a null sender is not a domain";
    EXPECT_EQ(set.observe(smtp_domain_hash("example.net"), t + 2 * s, hour), 2u);
    for (uint32_t i = 3; i <= sender_domain_set::capacity; ++i)
        EXPECT_EQ(set.observe(smtp_domain_hash("d" + std::to_string(i) + ".example.com"), t + 3 * s, hour), i);
    EXPECT_EQ(set.observe(smtp_domain_hash("example.jp"), t + 4 * s, hour), sender_domain_set::capacity)
        << "a known domain";
    EXPECT_EQ(set.observe(smtp_domain_hash("one-more.example.com"), t + 4 * s, hour), sender_domain_set::capacity + 1);
    EXPECT_EQ(set.observe(smtp_domain_hash("and-more.example.com"), t + 4 * s, hour), sender_domain_set::capacity + 1)
        << "saturated: more than capacity";
    // The next window starts empty; an older clock counts in the current one.
    EXPECT_EQ(set.observe(smtp_domain_hash("example.jp"), window_start + hour, hour), 1u);
    EXPECT_EQ(set.observe(smtp_domain_hash("example.net"), window_start + hour - s, hour), 2u);
    EXPECT_EQ(set.distinct(), 2u);
}

TEST(sender_signals, sender_domains_signal) {
    sender_signal_policy p;
    p.sender_domains = 30;
    p.sender_domains_max = 3;
    p.sender_domains_window_ns = hour;
    sender_domain_set set;
    const uint64_t t = window_start;
    const char* domains[] = {"example.jp", "example.net", "example.com", "example.jp", "mail.example.com"};
    int fired_at = -1;
    for (int i = 0; i < 5; ++i) {
        signal_hits h;
        sender_domain_signal(p, set, smtp_domain_hash(domains[i]), t + static_cast<uint64_t>(i) * s, h);
        if (h.has(sender_signal::sender_domains) && fired_at < 0) {
            fired_at = i;
            EXPECT_EQ(h.score, 30);
        }
    }
    EXPECT_EQ(fired_at, 4) << "the 4th distinct domain (the 5th MAIL FROM) is more than 3";
    // A new window: quiet again.
    signal_hits h;
    sender_domain_signal(p, set, smtp_domain_hash("other.example.org"), t + hour, h);
    EXPECT_EQ(h.mask, 0u);
    // Disabled: the set is not even touched.
    p.sender_domains = 0;
    sender_domain_set untouched;
    sender_domain_signal(p, untouched, smtp_domain_hash("example.jp"), t, h);
    EXPECT_EQ(untouched.distinct(), 0u);
}

TEST(sender_signals, hits_accumulate_once_per_signal) {
    signal_hits h;
    h.add(sender_signal::ehlo_bare_ip, 20);
    h.add(sender_signal::ehlo_bare_ip, 20);
    h.add(sender_signal::from_mismatch, -5);  // a policy may also lower a score
    h.add(sender_signal::ehlo_not_fqdn, 0);   // disabled
    EXPECT_EQ(h.score, 15);
    EXPECT_TRUE(h.has(sender_signal::ehlo_bare_ip));
    EXPECT_TRUE(h.has(sender_signal::from_mismatch));
    EXPECT_FALSE(h.has(sender_signal::ehlo_not_fqdn));
}

}  // namespace
}  // namespace sekisho
