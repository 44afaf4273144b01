// smtp_session: real transcripts fed whole, split at every byte boundary and a
// byte at a time (same observations each way); PIPELINING, multi-line replies,
// STARTTLS and implicit TLS, BDAT, AUTH PLAIN/LOGIN (name kept, password
// never), bounded long lines, EHLO flags, every desync reason; message content
// (dot-stuffing undone, BDAT chunks) identical however split; random valid
// sessions with random segmentation, and random bytes behind a guard page.
#include "dataplane/smtp/smtp_session.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "../support/base64.h"
#include "../support/guarded_buffer.h"

namespace sekisho {
namespace {

using strings = std::vector<std::string>;

// A string literal with embedded NULs, its length from the array.
template <size_t N>
std::string raw(const char (&s)[N]) {
    return std::string(s, N - 1);
}

std::string hex(uint32_t v) {
    char b[16];
    std::snprintf(b, sizeof b, "%08x", v);
    return b;
}
// The log fragment for a domain hash.
std::string h(std::string_view domain) { return " h=" + hex(smtp_domain_hash(domain)); }

using test::base64;

// Writes every observation as one line of text; message content apart, one string per message.
struct recorder : smtp_observer {
    strings log;
    strings contents;  // on_message_start opens one, on_content appends to it
    strings envelopes; // "verb argument" per envelope line, from on_envelope
    std::string envelope_line;
    smtp_command envelope_done = smtp_command::none;   // the line on_envelope just completed
    bool open = false;
    std::function<void(const smtp_command_info&)> command_hook;

    void on_envelope(smtp_command cmd, const uint8_t* data, size_t len, bool line_end) override {
        EXPECT_TRUE(cmd == smtp_command::ehlo || cmd == smtp_command::helo || cmd == smtp_command::mail ||
                    cmd == smtp_command::rcpt)
            << to_string(cmd);
        EXPECT_TRUE(len > 0 || line_end) << "an empty call that does not end the line";
        if (len) envelope_line.append(reinterpret_cast<const char*>(data), len);
        if (line_end) {
            envelopes.push_back(std::string(to_string(cmd)) + " " + envelope_line);
            envelope_line.clear();
            envelope_done = cmd;
        }
    }
    void on_command(const smtp_command_info& c) override {
        if (c.cmd == smtp_command::ehlo || c.cmd == smtp_command::helo || c.cmd == smtp_command::mail ||
            c.cmd == smtp_command::rcpt) {
            EXPECT_TRUE(envelope_done == c.cmd || envelope_line.empty()) << "on_envelope's line end comes first";
        }
        envelope_done = smtp_command::none;
        std::string s = "C " + std::string(to_string(c.cmd));
        if (c.domain_hash) s += " h=" + hex(c.domain_hash);
        if (c.cmd == smtp_command::bdat) s += " " + std::to_string(c.bdat_size);
        if (c.bdat_last) s += " last";
        if (c.null_sender) s += " null";
        if (c.ip_literal) s += " literal";
        if (c.bare_ip) s += " bare_ip";
        if (c.not_fqdn) s += " not_fqdn";
        if (c.bad_syntax) s += " bad";
        if (c.too_long) s += " long";
        log.push_back(s);
        if (command_hook) command_hook(c);
    }
    void on_reply(const smtp_reply_info& r) override {
        std::string s = "R " + std::to_string(r.code);
        s += r.greeting ? " greeting" : r.unsolicited ? " unsolicited" : " " + std::string(to_string(r.to));
        if (r.end_of_data) s += " eod";
        if (r.intermediate) s += " more";
        log.push_back(s);
    }
    void on_message_start() override {
        contents.emplace_back();
        open = true;
    }
    void on_content(const uint8_t* data, size_t len) override {
        EXPECT_GT(len, 0u);
        EXPECT_TRUE(open) << "content outside a message";
        if (contents.empty()) contents.emplace_back();
        contents.back().append(reinterpret_cast<const char*>(data), len);
    }
    void on_message_end() override {
        log.push_back("end");
        open = false;
    }
    void on_auth_name(std::string_view name, bool truncated) override {
        log.push_back("name " + std::string(name) + (truncated ? " truncated" : ""));
    }
};

std::string summary(const smtp_session& s) {
    std::ostringstream o;
    o << "messages=" << s.messages() << " rcpt=" << s.recipients()
      << " rejected=" << s.rejected_recipients() << " msg_rcpt=" << s.message_recipients()
      << " long=" << s.long_lines() << " pending=" << s.pending()
      << " tls=" << s.tls() << " uninspectable=" << s.uninspectable() << "(" << to_string(s.desync_reason())
      << ") in_data=" << s.in_data() << " auth=" << s.authenticated() << " name=" << s.auth_name();
    return o.str();
}

enum class dir { client, server };
struct step {
    dir d;
    std::string bytes;
};
using transcript = std::vector<step>;
step C(std::string s) { return {dir::client, std::move(s)}; }
step S(std::string s) { return {dir::server, std::move(s)}; }

// Every segment is fed from a buffer that ends at a guard page.
test::guarded_buffer& guard() {
    static test::guarded_buffer b(1 << 18);
    return b;
}

size_t feed(smtp_session& s, dir d, std::string_view bytes, smtp_observer& obs) {
    const uint8_t* p = guard().place(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    const bool was = s.inspecting();
    const size_t n = d == dir::client ? s.feed_client(p, bytes.size(), obs) : s.feed_server(p, bytes.size(), obs);
    EXPECT_LE(n, bytes.size());
    if (!was) {
        EXPECT_EQ(n, 0u);
    }
    if (s.inspecting()) {
        EXPECT_EQ(n, bytes.size());
    }
    return n;
}

struct outcome {
    strings log;
    std::string state;
    strings contents;
    strings envelopes;
    bool operator==(const outcome&) const = default;
};
std::ostream& operator<<(std::ostream& os, const outcome& o) {
    for (const auto& l : o.log) os << l << " | ";
    os << o.state;
    for (const auto& c : o.contents) os << " | content " << testing::PrintToString(c);
    for (const auto& e : o.envelopes) os << " | envelope " << testing::PrintToString(e);
    return os;
}

// Piece lengths for one step: (step index, offset of the step in its direction's stream, length).
using splitter = std::function<std::vector<size_t>(size_t, size_t, size_t)>;

outcome run(const transcript& t, const splitter& split, bool implicit_tls = false) {
    smtp_session s(implicit_tls);
    recorder r;
    size_t offset[2] = {0, 0};
    for (size_t i = 0; i < t.size(); ++i) {
        const step& st = t[i];
        size_t& off = offset[st.d == dir::client ? 0 : 1];
        size_t at = 0;
        for (size_t piece : split(i, off, st.bytes.size())) {
            feed(s, st.d, std::string_view(st.bytes).substr(at, piece), r);
            at += piece;
        }
        EXPECT_EQ(at, st.bytes.size());
        off += st.bytes.size();
    }
    return {r.log, summary(s), r.contents, r.envelopes};
}

outcome run_whole(const transcript& t, bool implicit_tls = false) {
    return run(t, [](size_t, size_t, size_t len) { return std::vector<size_t>{len}; }, implicit_tls);
}
outcome run_bytewise(const transcript& t) {
    return run(t, [](size_t, size_t, size_t len) { return std::vector<size_t>(len, 1); });
}
// Splits the client stream at byte k and the server stream at byte m.
outcome run_split(const transcript& t, size_t k, size_t m) {
    return run(t, [&](size_t i, size_t off, size_t len) {
        const size_t cut = t[i].d == dir::client ? k : m;
        if (cut > off && cut < off + len) return std::vector<size_t>{cut - off, off + len - cut};
        return std::vector<size_t>{len};
    });
}
size_t stream_len(const transcript& t, dir d) {
    size_t n = 0;
    for (const step& s : t) n += s.d == d ? s.bytes.size() : 0;
    return n;
}

// Whole == every single split of each stream, and every pair of splits == byte at a time.
void expect_segmentation_invariant(const transcript& t, bool all_pairs) {
    const outcome whole = run_whole(t);
    EXPECT_EQ(run_bytewise(t), whole);
    const size_t nc = stream_len(t, dir::client), ns = stream_len(t, dir::server);
    for (size_t k = 0; k <= nc; ++k) {
        for (size_t m = 0; m <= ns; m += all_pairs ? 1 : ns + 1) {
            const outcome o = run_split(t, k, m);
            if (o != whole) {
                ADD_FAILURE() << "client split at " << k << ", server split at " << m << "\n got: " << o
                              << "\nwant: " << whole;
                return;
            }
        }
    }
    for (size_t m = 0; m <= ns; ++m) ASSERT_EQ(run_split(t, 0, m), whole) << "server split at " << m;
}

// --- the reference session ---------------------------------------------------------

transcript reference_session() {
    return {
        S("220 mx.example.net ESMTP\r\n"),
        C("EHLO client.example.com\r\n"),
        S("250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"),
        C("MAIL FROM:<alice@Example.COM> SIZE=120\r\n"),
        S("250 2.1.0 Ok\r\n"),
        C("RCPT TO:<bob@example.org>\r\n"),
        S("250 2.1.5 Ok\r\n"),
        C("RCPT TO:<nobody@example.org>\r\n"),
        S("550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown\r\n"),
        C("DATA\r\n"),
        S("354 End data with <CR><LF>.<CR><LF>\r\n"),
        C("From: alice@example.com\r\nTo: bob@example.org\r\nSubject: test\r\n\r\nHello.\r\n"
          "..a dot-stuffed line, not the end\r\n.\r\n"),
        S("250 2.0.0 Ok: queued as 4ABC\r\n"),
        C("QUIT\r\n"),
        S("221 2.0.0 Bye\r\n"),
    };
}

const strings reference_log = {
    "R 220 greeting",
    "C ehlo" + h("client.example.com"),
    "R 250 ehlo",
    "C mail" + h("example.com"),
    "R 250 mail",
    "C rcpt" + h("example.org"),
    "R 250 rcpt",
    "C rcpt" + h("example.org"),
    "R 550 rcpt",
    "C data",
    "R 354 data",
    "end",
    "R 250 data eod",
    "C quit",
    "R 221 quit",
};

TEST(smtp_session, reference_session_whole) {
    const outcome o = run_whole(reference_session());
    EXPECT_EQ(o.log, reference_log);
    EXPECT_EQ(o.state,
              "messages=1 rcpt=2 rejected=1 msg_rcpt=2 long=0 pending=0 tls=0 "
              "uninspectable=0(none) in_data=0 auth=0 name=");
}

TEST(smtp_session, reference_session_every_split_and_byte_at_a_time) {
    expect_segmentation_invariant(reference_session(), true);
}

TEST(smtp_session, reference_session_content) {
    const outcome o = run_whole(reference_session());
    EXPECT_EQ(o.contents, (strings{"From: alice@example.com\r\nTo: bob@example.org\r\nSubject: test\r\n\r\nHello.\r\n"
                                   ".a dot-stuffed line, not the end\r\n"}));
}

TEST(smtp_session, envelope_arguments_are_handed_on_at_every_split) {
    // EHLO, MAIL and RCPT arguments as sent (parameters too), nothing of DATA, QUIT or the content.
    const outcome o = run_whole(reference_session());
    EXPECT_EQ(o.envelopes, (strings{"ehlo client.example.com", "mail FROM:<alice@Example.COM> SIZE=120",
                                    "rcpt TO:<bob@example.org>", "rcpt TO:<nobody@example.org>"}));
    // Bare CR ends the argument; an argument-less verb hands on nothing; AUTH never.
    const transcript t = {
        S("220 mx\r\n"),
        C("HELO  two  spaces\r\nMAIL FROM:<a@b.c>\rjunk\r\nRCPT\r\nAUTH PLAIN " + base64(std::string("\0u\0pw", 5)) +
          "\r\n"),
    };
    const outcome o2 = run_whole(t);
    EXPECT_EQ(o2.envelopes, (strings{"helo  two  spaces", "mail FROM:<a@b.c>"}));
    expect_segmentation_invariant(t, false);
}

TEST(smtp_session, session_facts) {
    smtp_session s;
    recorder r;
    for (const step& st : reference_session()) feed(s, st.d, st.bytes, r);
    EXPECT_TRUE(s.greeting_seen());
    EXPECT_TRUE(s.helo_seen());
    EXPECT_FALSE(s.helo_not_fqdn() || s.helo_bare_ip() || s.helo_ip_literal());
    EXPECT_EQ(s.sender_hash(), smtp_domain_hash("example.com"));
    EXPECT_TRUE(s.inspecting());
}

TEST(smtp_session, domain_hash) {
    static_assert(smtp_domain_hash("") == 0);
    static_assert(smtp_domain_hash(".") == 0);
    static_assert(smtp_domain_hash("Example.COM") == smtp_domain_hash("example.com"));
    static_assert(smtp_domain_hash("example.com.") == smtp_domain_hash("example.com"));
    static_assert(smtp_domain_hash("example.com") != smtp_domain_hash("example.net"));
    EXPECT_EQ(smtp_domain_hash("a"), (2166136261u ^ 'a') * 16777619u);  // FNV-1a 32
}

TEST(smtp_session, state_size) {
    static_assert(sizeof(smtp_session) <= 192);
    std::printf("sizeof(smtp_session) = %zu\n", sizeof(smtp_session));
}

TEST(smtp_session, zero_filled_session_is_a_fresh_session) {
    // What a flow table in zeroed (hugepage) memory holds before anyone constructs it.
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx\r\n", r);  // dirty it first
    std::memset(static_cast<void*>(&s), 0, sizeof s);
    r.log.clear();
    for (const step& st : reference_session()) feed(s, st.d, st.bytes, r);
    EXPECT_EQ(r.log, reference_log);
    EXPECT_EQ(summary(s), run_whole(reference_session()).state);
}

// --- PIPELINING and multi-line replies ---------------------------------------------

transcript pipelined_session() {
    return {
        S("220-mx.example.net ESMTP\r\n220 no UCE\r\n"),
        C("EHLO client.example.com\r\n"),
        S("250-mx.example.net\r\n250 PIPELINING\r\n"),
        C("MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.net>\r\nDATA\r\n"),
        S("250 2.1.0 Ok\r\n550 5.1.1 no\r\n250 2.1.5 Ok\r\n354 go ahead\r\n"),
        C("Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<dave@example.jp>\r\nDATA\r\n"),
        S("250 queued\r\n250 Ok\r\n250 Ok\r\n354 go\r\n"),
        C(".\r\nQUIT\r\n"),
        S("250 queued\r\n221 Bye\r\n"),
    };
}

TEST(smtp_session, pipelining) {
    const outcome o = run_whole(pipelined_session());
    EXPECT_EQ(o.log, (strings{
                         "R 220 greeting",
                         "C ehlo" + h("client.example.com"),
                         "R 250 ehlo",
                         "C mail" + h("example.com"),
                         "C rcpt" + h("example.org"),
                         "C rcpt" + h("example.net"),
                         "C data",
                         "R 250 mail",
                         "R 550 rcpt",
                         "R 250 rcpt",
                         "R 354 data",
                         "end",
                         "C mail null",
                         "C rcpt" + h("example.jp"),
                         "C data",
                         "R 250 data eod",
                         "R 250 mail",
                         "R 250 rcpt",
                         "R 354 data",
                         "end",
                         "C quit",
                         "R 250 data eod",
                         "R 221 quit",
                     }));
    EXPECT_EQ(o.state,
              "messages=2 rcpt=3 rejected=1 msg_rcpt=1 long=0 pending=0 tls=0 "
              "uninspectable=0(none) in_data=0 auth=0 name=");
    EXPECT_EQ(o.contents, (strings{"Subject: x\r\n\r\nbody\r\n", ""}));
    expect_segmentation_invariant(pipelined_session(), false);
}

TEST(smtp_session, many_pipelined_recipients_fit_the_queue) {
    std::string rcpts, replies;
    for (int i = 0; i < 300; ++i) {
        rcpts += "RCPT TO:<user" + std::to_string(i) + "@example.org>\r\n";
        replies += i % 3 ? "250 Ok\r\n" : "550 no such user\r\n";
    }
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx.example.net\r\n", r);
    feed(s, dir::client, "MAIL FROM:<a@example.com>\r\n" + rcpts + "DATA\r\n", r);
    EXPECT_EQ(s.pending(), 302u);
    feed(s, dir::server, "250 Ok\r\n" + replies + "354 go\r\n", r);
    EXPECT_TRUE(s.inspecting());
    EXPECT_TRUE(s.in_data());
    EXPECT_EQ(s.recipients(), 300u);
    EXPECT_EQ(s.message_recipients(), 300u);
    EXPECT_EQ(s.rejected_recipients(), 100u);
}

TEST(smtp_session, pipeline_overflow_is_uninspectable) {
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx.example.net\r\n", r);
    std::string cmds;
    for (size_t i = 0; i < smtp_max_pending; ++i) cmds += i % 2 ? "RSET\r\n" : "NOOP\r\n";
    feed(s, dir::client, cmds, r);
    EXPECT_TRUE(s.inspecting());
    feed(s, dir::client, "RSET\r\n", r);  // same as the last run: still fits
    EXPECT_TRUE(s.inspecting());
    feed(s, dir::client, "NOOP\r\n", r);
    EXPECT_TRUE(s.uninspectable());
    EXPECT_EQ(s.desync_reason(), smtp_desync::pipeline_overflow);
}

TEST(smtp_session, multiline_reply_split_mid_code) {
    smtp_session s;
    recorder r;
    for (const char* seg : {"2", "2", "0-mx.example.net wel", "come\r", "\n22", "0", "-more\r\n220", " ready\r", "\n"})
        feed(s, dir::server, seg, r);
    feed(s, dir::client, "EHLO client.example.com\r\n", r);
    for (const char* seg : {"250-mx.example.net\r\n25", "0-PIPE", "LINING\r\n2", "50-SIZE\r", "\n250 OK\r\n"})
        feed(s, dir::server, seg, r);
    EXPECT_EQ(r.log, (strings{"R 220 greeting", "C ehlo" + h("client.example.com"), "R 250 ehlo"}));
    EXPECT_TRUE(s.inspecting());
}

TEST(smtp_session, reply_codes_without_text_and_bare_lf_replies) {
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220\r\n", r);
    feed(s, dir::client, "NOOP\r\nNOOP\r\n", r);
    feed(s, dir::server, "250\n250-a\n250 b\n", r);
    EXPECT_EQ(r.log, (strings{"R 220 greeting", "C noop", "C noop", "R 250 noop", "R 250 noop"}));
    EXPECT_TRUE(s.inspecting());
}

// --- STARTTLS and implicit TLS -------------------------------------------------------

TEST(smtp_session, starttls_then_opaque) {
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx.example.net ESMTP\r\n", r);
    feed(s, dir::client, "EHLO client.example.com\r\n", r);
    feed(s, dir::server, "250-mx.example.net\r\n250 STARTTLS\r\n", r);
    feed(s, dir::client, "STARTTLS\r\n", r);
    feed(s, dir::server, "220 2.0.0 Ready to start TLS\r\n", r);
    EXPECT_TRUE(s.tls());
    EXPECT_FALSE(s.uninspectable());
    const std::string hello = raw("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03MAIL FROM:<x@example.com>\r\n");
    EXPECT_EQ(feed(s, dir::client, hello, r), 0u);
    EXPECT_EQ(feed(s, dir::server, "garbage that is not a reply\r\n", r), 0u);
    EXPECT_EQ(r.log, (strings{"R 220 greeting", "C ehlo" + h("client.example.com"), "R 250 ehlo", "C starttls",
                              "R 220 starttls"}));
    EXPECT_EQ(s.messages(), 0u);
}

TEST(smtp_session, starttls_refused_keeps_parsing) {
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx.example.net\r\n", r);
    feed(s, dir::client, "STARTTLS\r\n", r);
    feed(s, dir::server, "454 4.7.0 TLS not available\r\n", r);
    feed(s, dir::client, "MAIL FROM:<a@example.com>\r\n", r);
    feed(s, dir::server, "250 ok\r\n", r);
    EXPECT_FALSE(s.tls());
    EXPECT_TRUE(s.inspecting());
    EXPECT_EQ(s.messages(), 1u);
}

TEST(smtp_session, starttls_command_injection_is_uninspectable) {
    // CVE-2011-0411: commands after STARTTLS in the same segment.
    for (const char* after : {"RSET\r\n", "RSE"}) {
        smtp_session s;
        recorder r;
        feed(s, dir::server, "220 mx.example.net\r\n", r);
        feed(s, dir::client, std::string("STARTTLS\r\n") + after, r);
        feed(s, dir::server, "220 go ahead\r\n", r);
        EXPECT_TRUE(s.uninspectable()) << after;
        EXPECT_EQ(s.desync_reason(), smtp_desync::early_client_data);
        EXPECT_FALSE(s.tls());
    }
}

TEST(smtp_session, implicit_tls_is_opaque_from_the_first_byte) {
    const outcome o = run_whole(reference_session(), true);
    EXPECT_TRUE(o.log.empty());
    EXPECT_NE(o.state.find("tls=1 uninspectable=0"), std::string::npos) << o.state;
    EXPECT_NE(o.state.find("messages=0"), std::string::npos) << o.state;

    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx.example.net\r\n", r);
    s.reset(true);
    EXPECT_TRUE(s.tls());
    EXPECT_FALSE(s.greeting_seen());
    EXPECT_EQ(feed(s, dir::client, "EHLO x\r\n", r), 0u);
    s.reset(false);
    EXPECT_TRUE(s.inspecting());
    feed(s, dir::server, "220 mx.example.net\r\n", r);
    EXPECT_TRUE(s.greeting_seen());
}

// --- BDAT (RFC 3030) ---------------------------------------------------------------

const std::string chunk1 = raw("Subject: chunked\r\n\r\nline\r\n.\r\nMAIL FROM:<evil@example.net>\r\n\0\xff\r\n");
const std::string chunk2 = "last.\r\n.\r\n";

transcript bdat_session() {
    return {
        S("220 mx.example.net\r\n"),
        C("EHLO client.example.com\r\n"),
        S("250-mx.example.net\r\n250-CHUNKING\r\n250 PIPELINING\r\n"),
        C("MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.org>\r\nBDAT " + std::to_string(chunk1.size()) +
          "\r\n" + chunk1 + "BDAT " + std::to_string(chunk2.size()) + " LAST\r\n" + chunk2),
        S("250 ok\r\n250 ok\r\n250 2.0.0 chunk received\r\n250 2.0.0 message accepted\r\n"),
        C("BDAT 0 last\r\n"),  // an empty message... without MAIL: the server refuses
        S("503 5.5.1 no transaction\r\n"),
        C("QUIT\r\n"),
        S("221 bye\r\n"),
    };
}

TEST(smtp_session, bdat_chunks_are_skipped_exactly) {
    ASSERT_EQ(chunk1.size(), 63u);
    const outcome o = run_whole(bdat_session());
    EXPECT_EQ(o.log, (strings{
                         "R 220 greeting",
                         "C ehlo" + h("client.example.com"),
                         "R 250 ehlo",
                         "C mail" + h("example.com"),
                         "C rcpt" + h("example.org"),
                         "C bdat 63",
                         "C bdat 10 last",
                         "end",
                         "R 250 mail",
                         "R 250 rcpt",
                         "R 250 bdat",
                         "R 250 bdat eod",
                         "C bdat 0 last",
                         "end",
                         "R 503 bdat eod",
                         "C quit",
                         "R 221 quit",
                     }));
    EXPECT_EQ(o.state,
              "messages=1 rcpt=1 rejected=0 msg_rcpt=1 long=0 pending=0 tls=0 "
              "uninspectable=0(none) in_data=0 auth=0 name=");
    // Chunk bytes as sent (no dot-stuffing in BDAT), one message across chunks; BDAT 0 LAST is an empty one.
    EXPECT_EQ(o.contents, (strings{chunk1 + chunk2, ""}));
    expect_segmentation_invariant(bdat_session(), false);
}

TEST(smtp_session, bdat_message_restarts_after_rset_or_mail) {
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx\r\n", r);
    feed(s, dir::client, "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nBDAT 3\r\nabcRSET\r\n", r);
    feed(s, dir::client, "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nBDAT 2\r\ndeBDAT 1 LAST\r\nf", r);
    feed(s, dir::client, "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nBDAT 1\r\ngMAIL FROM:<>\r\n", r);
    feed(s, dir::client, "RCPT TO:<b@example.org>\r\nBDAT 1 LAST\r\nh", r);
    EXPECT_EQ(r.contents, (strings{"abc", "def", "g", "h"}));
    EXPECT_TRUE(s.inspecting());
}

TEST(smtp_session, bdat_in_data_while_chunk_pending) {
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx\r\n", r);
    feed(s, dir::client, "BDAT 10\r\n12345", r);
    EXPECT_TRUE(s.in_data());
    feed(s, dir::client, "67890NOOP\r\n", r);
    EXPECT_FALSE(s.in_data());
    EXPECT_EQ(r.log, (strings{"R 220 greeting", "C bdat 10", "C noop"}));
}

TEST(smtp_session, bdat_without_usable_size_is_uninspectable) {
    for (const char* line : {"BDAT\r\n", "BDAT x\r\n", "BDAT 12x\r\n", "BDAT 4294967296\r\n", "BDAT 10 LASTX\r\n",
                             "BDAT 10 LAST 5\r\n", "BDAT 10 FIRST\r\n"}) {
        smtp_session s;
        recorder r;
        feed(s, dir::server, "220 mx\r\n", r);
        feed(s, dir::client, line, r);
        EXPECT_TRUE(s.uninspectable()) << line;
        EXPECT_EQ(s.desync_reason(), smtp_desync::bad_bdat) << line;
    }
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx\r\n", r);
    feed(s, dir::client, "bdat  4294967295   Last  \r\n", r);
    EXPECT_TRUE(s.inspecting());
    EXPECT_EQ(r.log.back(), "C bdat 4294967295 last");
}

// --- AUTH ------------------------------------------------------------------------------

TEST(smtp_session, auth_plain_initial_response) {
    struct { std::string creds, want; } cases[] = {
        {raw("\0alice@example.jp\0s3cr3t-Pa55"), "name alice@example.jp"},
        {raw("admin\0alice\0s3cr3t-Pa55"), "name alice"},      // authcid, not authzid
        {raw("bob\0\0s3cr3t-Pa55"), "name bob"},               // authcid empty: authzid
    };
    for (const auto& c : cases) {
        smtp_session s;
        recorder r;
        feed(s, dir::server, "220 mx\r\n", r);
        feed(s, dir::client, "AUTH PLAIN " + base64(c.creds) + "\r\n", r);
        feed(s, dir::server, "235 2.7.0 Authentication successful\r\n", r);
        EXPECT_EQ(r.log, (strings{"R 220 greeting", "C auth", c.want, "R 235 auth"}));
        EXPECT_TRUE(s.authenticated());
        EXPECT_EQ("name " + std::string(s.auth_name()), c.want);
    }
}

TEST(smtp_session, auth_plain_after_334) {
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx\r\n", r);
    feed(s, dir::client, "auth plain\r\n", r);
    feed(s, dir::server, "334 \r\n", r);
    feed(s, dir::client, base64(raw("\0carol\0pw")) + "\r\n", r);
    feed(s, dir::server, "535 5.7.8 Authentication failed\r\n", r);
    feed(s, dir::client, "MAIL FROM:<carol@example.com>\r\n", r);
    feed(s, dir::server, "530 5.7.0 Authentication required\r\n", r);
    EXPECT_EQ(r.log, (strings{"R 220 greeting", "C auth", "R 334 auth more", "name carol", "R 535 auth",
                              "C mail" + h("example.com"), "R 530 mail"}));
    EXPECT_FALSE(s.authenticated());
    EXPECT_EQ(s.auth_name(), "carol");
    EXPECT_TRUE(s.inspecting());
}

TEST(smtp_session, auth_login) {
    const transcript t = {
        S("220 mx.example.net\r\n"),
        C("EHLO client.example.com\r\n"),
        S("250-mx.example.net\r\n250 AUTH PLAIN LOGIN\r\n"),
        C("AUTH LOGIN\r\n"),
        S("334 VXNlcm5hbWU6\r\n"),
        C(base64("dave@example.com") + "\r\n"),
        S("334 UGFzc3dvcmQ6\r\n"),
        C(base64("s3cr3t-Pa55") + "\r\n"),
        S("235 2.7.0 Authentication successful\r\n"),
        C("MAIL FROM:<dave@example.com>\r\n"),
        S("250 ok\r\n"),
    };
    const outcome o = run_whole(t);
    EXPECT_EQ(o.log, (strings{"R 220 greeting", "C ehlo" + h("client.example.com"), "R 250 ehlo", "C auth",
                              "R 334 auth more", "name dave@example.com", "R 334 auth more", "R 235 auth",
                              "C mail" + h("example.com"), "R 250 mail"}));
    EXPECT_NE(o.state.find("auth=1 name=dave@example.com"), std::string::npos) << o.state;
    expect_segmentation_invariant(t, false);
}

TEST(smtp_session, auth_login_initial_response_and_other_mechanisms) {
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx\r\n", r);
    feed(s, dir::client, "AUTH LOGIN " + base64("erin") + "\r\n", r);
    feed(s, dir::server, "334 UGFzc3dvcmQ6\r\n", r);
    feed(s, dir::client, base64("s3cr3t-Pa55") + "\r\n", r);
    feed(s, dir::server, "235 ok\r\n", r);
    EXPECT_EQ(r.log, (strings{"R 220 greeting", "C auth", "name erin", "R 334 auth more", "R 235 auth"}));

    smtp_session t;
    recorder q;
    feed(t, dir::server, "220 mx\r\n", q);
    feed(t, dir::client, "AUTH CRAM-MD5\r\n", q);
    feed(t, dir::server, "334 PDQxOTI5NDIzNDEuMTI4Mjg0N0BleGFtcGxlLm5ldD4=\r\n", q);
    feed(t, dir::client, base64("frank 0123456789abcdef0123456789abcdef") + "\r\n", q);
    feed(t, dir::server, "235 ok\r\n", q);
    EXPECT_EQ(q.log, (strings{"R 220 greeting", "C auth", "R 334 auth more", "R 235 auth"}));
    EXPECT_TRUE(t.authenticated());
    EXPECT_EQ(t.auth_name(), "");

    smtp_session u;  // the client cancels with "*"
    recorder w;
    feed(u, dir::server, "220 mx\r\n", w);
    feed(u, dir::client, "AUTH LOGIN\r\n", w);
    feed(u, dir::server, "334 VXNlcm5hbWU6\r\n", w);
    feed(u, dir::client, "*\r\n", w);
    feed(u, dir::server, "501 5.7.0 cancelled\r\n", w);
    feed(u, dir::client, "QUIT\r\n", w);
    EXPECT_EQ(w.log, (strings{"R 220 greeting", "C auth", "R 334 auth more", "R 501 auth", "C quit"}));
    EXPECT_TRUE(u.inspecting());
}

TEST(smtp_session, auth_name_is_bounded) {
    const std::string user(100, 'u');
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx\r\n", r);
    feed(s, dir::client, "AUTH PLAIN " + base64(std::string(1, '\0') + user + std::string(1, '\0') + "pw") + "\r\n", r);
    EXPECT_EQ(r.log.back(), "name " + user.substr(0, smtp_max_auth_name) + " truncated");
    EXPECT_EQ(s.auth_name().size(), smtp_max_auth_name);
    EXPECT_TRUE(s.auth_name_truncated());
}

// No 4 consecutive bytes of the password, in clear or base64, are ever in the
// session's memory, whatever the segmentation.
TEST(smtp_session, password_is_never_stored) {
    const std::string password = "s3cr3t-Pa55w0rd!";
    auto expect_absent = [&](const smtp_session& s, const std::string& what) {
        const std::string_view mem(reinterpret_cast<const char*>(&s), sizeof s);
        for (const std::string& secret : {password, base64(password)})
            for (size_t i = 0; i + 4 <= secret.size(); ++i)
                ASSERT_EQ(mem.find(secret.substr(i, 4)), std::string_view::npos) << what;
    };
    const std::string plain = base64(raw("\0gina\0") + password);
    for (size_t cut = 0; cut <= plain.size(); ++cut) {
        smtp_session s;
        recorder r;
        feed(s, dir::server, "220 mx\r\n", r);
        feed(s, dir::client, "AUTH PLAIN " + plain.substr(0, cut), r);
        expect_absent(s, "plain cut " + std::to_string(cut));
        feed(s, dir::client, plain.substr(cut) + "\r\n", r);
        expect_absent(s, "plain end " + std::to_string(cut));
        EXPECT_EQ(s.auth_name(), "gina");
    }
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx\r\n", r);
    feed(s, dir::client, "AUTH LOGIN " + base64("gina") + "\r\n", r);
    feed(s, dir::server, "334 UGFzc3dvcmQ6\r\n", r);
    for (char c : base64(password) + "\r\n") {
        feed(s, dir::client, std::string(1, c), r);
        expect_absent(s, "login");
    }
    for (const std::string& line : r.log) EXPECT_EQ(line.find("Pa55"), std::string::npos);
}

// --- long lines ----------------------------------------------------------------------------

TEST(smtp_session, long_lines_are_consumed_and_flagged) {
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx\r\n", r);
    const std::string at_bound = "EHLO " + std::string(smtp_max_command_line - 7, 'a') + "\r\n";  // 512 bytes
    ASSERT_EQ(at_bound.size(), smtp_max_command_line);
    feed(s, dir::client, at_bound, r);
    feed(s, dir::client, "EHLO " + std::string(600, 'a') + ".example.com\r\n", r);
    const std::string huge = "NOOP " + std::string(70000, 'x') + "\r\n";
    for (size_t at = 0; at < huge.size(); at += 1400) feed(s, dir::client, huge.substr(at, 1400), r);
    feed(s, dir::client, "RCPT TO:<" + std::string(80000, 'y') + "@example.org>\r\n", r);
    EXPECT_EQ(r.log, (strings{"R 220 greeting", "C ehlo" + h(std::string(smtp_max_command_line - 7, 'a')) + " not_fqdn",
                              "C ehlo" + h(std::string(600, 'a') + ".example.com") + " long", "C noop long",
                              "C rcpt" + h("example.org") + " long"}));
    feed(s, dir::server, "250 " + std::string(70000, 'z') + "\r\n250 ok\r\n250 ok\r\n250 ok\r\n", r);
    EXPECT_EQ(s.long_lines(), 4u);
    EXPECT_EQ(s.pending(), 0u);
    EXPECT_TRUE(s.inspecting());
}

// --- EHLO / MAIL / RCPT arguments -------------------------------------------------------------

TEST(smtp_session, ehlo_argument_flags) {
    struct { const char* line; std::string want; } cases[] = {
        {"EHLO mail.example.com\r\n", "C ehlo" + h("mail.example.com")},
        {"ehlo MAIL.Example.COM.\r\n", "C ehlo" + h("mail.example.com")},
        {"HELO client.example.net\r\n", "C helo" + h("client.example.net")},
        {"EHLO [192.0.2.1]\r\n", "C ehlo" + h("[192.0.2.1]") + " literal"},
        {"EHLO [IPv6:2001:db8::1]\r\n", "C ehlo" + h("[ipv6:2001:db8::1]") + " literal"},
        {"EHLO 192.0.2.1\r\n", "C ehlo" + h("192.0.2.1") + " bare_ip"},
        {"EHLO 2001:db8::25\r\n", "C ehlo" + h("2001:db8::25") + " bare_ip"},
        {"EHLO localhost\r\n", "C ehlo" + h("localhost") + " not_fqdn"},
        {"EHLO localhost.\r\n", "C ehlo" + h("localhost") + " not_fqdn"},
        {"EHLO 12345\r\n", "C ehlo" + h("12345") + " not_fqdn"},
        {"EHLO\r\n", "C ehlo not_fqdn"},
        {"EHLO   \r\n", "C ehlo not_fqdn"},
        {"EHLO  host.example.jp  extra words\r\n", "C ehlo" + h("host.example.jp")},
        {"EhLo a.b\r\n", "C ehlo" + h("a.b")},
    };
    for (const auto& c : cases) {
        smtp_session s;
        recorder r;
        feed(s, dir::server, "220 mx\r\n", r);
        feed(s, dir::client, c.line, r);
        ASSERT_EQ(r.log.size(), 2u) << c.line;
        EXPECT_EQ(r.log[1], c.want) << c.line;
        EXPECT_EQ(s.helo_ip_literal(), c.want.find("literal") != std::string::npos);
        EXPECT_EQ(s.helo_bare_ip(), c.want.find("bare_ip") != std::string::npos);
        EXPECT_EQ(s.helo_not_fqdn(), c.want.find("not_fqdn") != std::string::npos);
    }
}

TEST(smtp_session, mail_and_rcpt_paths) {
    struct { const char* line; std::string want; } cases[] = {
        {"MAIL FROM:<alice@example.com>\r\n", "C mail" + h("example.com")},
        {"mail from:<ALICE@EXAMPLE.COM> SIZE=1000 BODY=8BITMIME\r\n", "C mail" + h("example.com")},
        {"MAIL FROM: <alice@example.com>\r\n", "C mail" + h("example.com")},
        {"MAIL FROM:alice@example.com\r\n", "C mail" + h("example.com")},
        {"MAIL FROM:<>\r\n", "C mail null"},
        {"MAIL FROM:<> SIZE=10\r\n", "C mail null"},
        {"MAIL FROM:<@relay.example.net,@hop.example.org:alice@example.com>\r\n", "C mail" + h("example.com")},
        {"MAIL FROM:<\"a@b\\\"c\"@example.jp>\r\n", "C mail" + h("example.jp")},
        {"MAIL FROM:<postmaster>\r\n", "C mail"},
        {"MAIL FROM:<alice@example.com\r\n", "C mail" + h("example.com") + " bad"},
        {"MAIL TO:<alice@example.com>\r\n", "C mail bad"},
        {"MAIL\r\n", "C mail bad"},
        {"MAIL FROM:\r\n", "C mail bad"},
        {"RCPT TO:<bob@Example.ORG>\r\n", "C rcpt" + h("example.org")},
        {"RCPT TO:<Postmaster>\r\n", "C rcpt"},
        {"rcpt to:<bob@example.org> NOTIFY=NEVER\r\n", "C rcpt" + h("example.org")},
        {"RCPT FROM:<bob@example.org>\r\n", "C rcpt bad"},
    };
    for (const auto& c : cases) {
        smtp_session s;
        recorder r;
        feed(s, dir::server, "220 mx\r\n", r);
        feed(s, dir::client, c.line, r);
        ASSERT_EQ(r.log.size(), 2u) << c.line;
        EXPECT_EQ(r.log[1], c.want) << c.line;
    }
}

TEST(smtp_session, verbs_are_case_insensitive_and_others_counted) {
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx\r\n", r);
    feed(s, dir::client,
         "noop\r\nVrfy bob\r\nEXPN list\r\nHELP\r\nXCLIENT ADDR=192.0.2.1\r\nStartTLSX\r\nrSeT\r\nQuit\r\n\r\n", r);
    EXPECT_EQ(r.log, (strings{"R 220 greeting", "C noop", "C vrfy", "C other", "C other", "C other", "C other",
                              "C rset", "C quit", "C other"}));
}

// --- desynchronisation ----------------------------------------------------------------------

struct desync_case {
    const char* name;
    transcript t;
    smtp_desync want;
};

TEST(smtp_session, desync_reasons) {
    const desync_case cases[] = {
        {"garbage_reply", {S("220 mx\r\n"), C("NOOP\r\n"), S("hello\r\n")}, smtp_desync::bad_reply},
        {"garbage_greeting", {S("SSH-2.0-OpenSSH\r\n")}, smtp_desync::bad_reply},
        {"short_code", {S("220 mx\r\n"), C("NOOP\r\n"), S("25\r\n")}, smtp_desync::bad_reply},
        {"code_1yz", {S("220 mx\r\n"), C("NOOP\r\n"), S("150 hm\r\n")}, smtp_desync::bad_reply},
        {"code_then_letter", {S("220 mx\r\n"), C("NOOP\r\n"), S("250x\r\n")}, smtp_desync::bad_reply},
        {"empty_line", {S("220 mx\r\n"), C("NOOP\r\n"), S("\r\n")}, smtp_desync::bad_reply},
        {"multiline_changes_code", {S("220 mx\r\n"), C("EHLO a.example\r\n"), S("250-a\r\n251 b\r\n")},
         smtp_desync::bad_reply},
        {"reply_without_command", {S("220 mx\r\n"), S("250 ok\r\n")}, smtp_desync::reply_without_command},
        {"two_replies_one_command", {S("220 mx\r\n"), C("NOOP\r\n"), S("250 ok\r\n250 ok\r\n")},
         smtp_desync::reply_without_command},
        {"bare_lf_command", {S("220 mx\r\n"), C("MAIL FROM:<a@example.com>\nRCPT TO:<b@example.org>\r\n")},
         smtp_desync::bare_lf},
        {"content_before_354", {S("220 mx\r\n"), C("DATA\r\nSubject: early\r\n"), S("354 go\r\n")},
         smtp_desync::early_client_data},
        {"partial_line_before_354", {S("220 mx\r\n"), C("DATA\r\nSubj"), S("354 go\r\n")},
         smtp_desync::early_client_data},
        {"command_after_data_in_group", {S("220 mx\r\n"), C("DATA\r\nNOOP\r\n"), S("354 go\r\n")},
         smtp_desync::early_client_data},
        {"response_before_334", {S("220 mx\r\n"), C("AUTH LOGIN\r\nZm9v\r\n"), S("334 VXNlcm5hbWU6\r\n")},
         smtp_desync::early_client_data},
        // SMTP smuggling: "\n.\n" is not the end of data; a server that takes it
        // for one answers while the client is still in DATA.
        {"smuggling_bare_lf_dot",
         {S("220 mx\r\n"), C("DATA\r\n"), S("354 go\r\n"), C("x\n.\nMAIL FROM:<e@example.net>\r\n"),
          S("250 queued\r\n")},
         smtp_desync::reply_without_command},
        {"reply_during_data", {S("220 mx\r\n"), C("DATA\r\n"), S("354 go\r\n"), C("x\r\n"), S("250 ok\r\n")},
         smtp_desync::reply_without_command},
    };
    for (const auto& c : cases) {
        const outcome o = run_whole(c.t);
        EXPECT_NE(o.state.find(std::string("uninspectable=1(") + to_string(c.want) + ")"), std::string::npos)
            << c.name << ": " << o.state;
    }
}

// End-of-data look-alikes from the SMTP smuggling research (2023): only CRLF.CRLF
// ends the message here. A server that accepts one of these answers while the
// client is still in DATA, which is a desync, never a silent one.
TEST(smtp_session, only_crlf_dot_crlf_ends_data) {
    for (const char* fake : {"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\r\n.\rX\r\n", "\r\n..\r\n",
                             "\r\n .\r\n", "\r\n.x\r\n"}) {
        smtp_session s;
        recorder r;
        feed(s, dir::server, "220 mx\r\n", r);
        feed(s, dir::client, "DATA\r\n", r);
        feed(s, dir::server, "354 go\r\n", r);
        feed(s, dir::client, std::string("body") + fake + "MAIL FROM:<e@example.net>\r\n", r);
        EXPECT_TRUE(s.in_data()) << testing::PrintToString(std::string(fake));
        EXPECT_EQ(s.messages(), 0u);
        feed(s, dir::server, "250 queued\r\n", r);
        EXPECT_EQ(s.desync_reason(), smtp_desync::reply_without_command);
    }
    // The end marker right after the 354 (empty message), and split at every byte.
    for (const std::string end : {".\r\n", "x\r\n.\r\n", "\r\n.\r\n"}) {
        for (size_t cut = 0; cut <= end.size(); ++cut) {
            smtp_session s;
            recorder r;
            feed(s, dir::server, "220 mx\r\n", r);
            feed(s, dir::client, "DATA\r\n", r);
            feed(s, dir::server, "354 go\r\n", r);
            feed(s, dir::client, end.substr(0, cut), r);
            feed(s, dir::client, end.substr(cut), r);
            EXPECT_FALSE(s.in_data()) << end << " cut " << cut;
            EXPECT_EQ(r.log.back(), "end");
        }
    }
}

// Message content: the first '.' of every line is dropped (dot-stuffing, RFC 5321 4.5.2), the
// ".CRLF" end line is not content, the CRLF that ends the last line is; anything may be split anywhere.
transcript content_session(const std::string& wire) {
    return {
        S("220 mx.example.net\r\n"),
        C("EHLO client.example.com\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"),
        S("250-mx.example.net\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        C(wire),
        S("250 queued\r\n"),
    };
}

TEST(smtp_session, data_content_is_unstuffed_at_every_split) {
    const struct {
        std::string wire, content;
    } cases[] = {
        {".\r\n", ""},                                         // empty message
        {"\r\n.\r\n", "\r\n"},                                 // one empty line
        {"x\r\n.\r\n", "x\r\n"},
        {"..\r\n.\r\n", ".\r\n"},                               // a line that is one dot
        {"...\r\n..x\r\n.y\r\n.\r\n", "..\r\n.x\r\ny\r\n"},     // unstuffed; a lone leading dot dropped too
        {".\rX\r\n.\r\r\n.\r\n", "\rX\r\n\r\r\n"},                 // ".CR" not followed by LF: content
        {"a.\r\n.b\r\n\r\r\n..\r\n.\r\n", "a.\r\nb\r\n\r\r\n.\r\n"},
        {raw("Subject: t\r\n\r\n\0\xff\n.\n\r\n.\r\n"), raw("Subject: t\r\n\r\n\0\xff\n.\n\r\n")},
    };
    for (const auto& c : cases) {
        const transcript t = content_session(c.wire);
        const outcome o = run_whole(t);
        EXPECT_EQ(o.contents, strings{c.content}) << testing::PrintToString(c.wire);
        EXPECT_EQ(o.log.back(), "R 250 data eod") << testing::PrintToString(c.wire);
        expect_segmentation_invariant(t, false);
    }
}

TEST(smtp_session, observer_can_stop_in_content) {
    struct stopper : recorder {
        smtp_session* s = nullptr;
        void on_content(const uint8_t* d, size_t n) override {
            recorder::on_content(d, n);
            s->stop();
        }
    } r;
    smtp_session s;
    r.s = &s;
    feed(s, dir::server, "220 mx\r\n", r);
    feed(s, dir::client, "DATA\r\n", r);
    feed(s, dir::server, "354 go\r\n", r);
    const std::string seg = "ab\r\n..c\r\n.\r\n";
    const uint8_t* p = guard().place(reinterpret_cast<const uint8_t*>(seg.data()), seg.size());
    EXPECT_EQ(s.feed_client(p, seg.size(), r), 5u);  // "ab\r\n" and the dropped dot
    EXPECT_EQ(r.contents, strings{"ab\r\n"});
    EXPECT_TRUE(s.stopped());
}

TEST(smtp_session, unsolicited_421_is_not_a_desync) {
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx\r\n", r);
    feed(s, dir::server, "421 4.4.2 mx.example.net Error: timeout exceeded\r\n", r);
    EXPECT_EQ(r.log, (strings{"R 220 greeting", "R 421 unsolicited"}));
    EXPECT_TRUE(s.inspecting());
}

TEST(smtp_session, mark_gap_is_uninspectable) {
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx\r\n", r);
    feed(s, dir::client, "MAIL FROM:<a@example.com>\r\n", r);
    s.mark_gap();
    EXPECT_TRUE(s.uninspectable());
    EXPECT_EQ(s.desync_reason(), smtp_desync::gap);
    EXPECT_EQ(feed(s, dir::server, "250 ok\r\n", r), 0u);
    EXPECT_EQ(feed(s, dir::client, "RCPT TO:<b@example.org>\r\n", r), 0u);
    EXPECT_EQ(s.recipients(), 0u);

    smtp_session t(true);  // already opaque: a gap changes nothing
    t.mark_gap();
    EXPECT_TRUE(t.tls());
    EXPECT_FALSE(t.uninspectable());
}

TEST(smtp_session, a_client_speaking_before_the_greeting_is_followed) {
    smtp_session s;
    recorder r;
    feed(s, dir::client, "EHLO early.example.com\r\n", r);
    feed(s, dir::server, "220 mx\r\n250 ok\r\n", r);
    EXPECT_EQ(r.log, (strings{"C ehlo" + h("early.example.com"), "R 220 greeting", "R 250 ehlo"}));
    EXPECT_TRUE(s.inspecting());
}

TEST(smtp_session, observer_can_stop_at_a_command) {
    smtp_session s;
    recorder r;
    feed(s, dir::server, "220 mx\r\n", r);
    r.command_hook = [&](const smtp_command_info& c) {
        if (c.cmd == smtp_command::mail) {
            EXPECT_EQ(s.messages(), 1u);  // already counted when the observer sees it
            s.stop();
        }
    };
    const std::string seg = "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n";
    const uint8_t* p = guard().place(reinterpret_cast<const uint8_t*>(seg.data()), seg.size());
    EXPECT_EQ(s.feed_client(p, seg.size(), r), seg.find("RCPT"));
    EXPECT_TRUE(s.stopped());
    EXPECT_FALSE(s.uninspectable());
    EXPECT_EQ(s.recipients(), 0u);
}

// --- random valid sessions: never desynchronised, same result however segmented ---------------

struct expected_counts {
    uint32_t messages = 0, recipients = 0, rejected = 0;
    strings contents;
};

transcript random_session(std::mt19937& rng, expected_counts& e) {
    auto pick = [&](uint32_t n) { return static_cast<uint32_t>(rng() % n); };
    // BDAT chunks: anything. DATA lines: no CR (so no CRLF.CRLF inside), bare LF allowed.
    auto bytes = [&](size_t n, bool for_data = false) {
        static const std::string any = raw(".\r\n\0\xff") + "ab .MAIL FROM:<>@";
        static const std::string no_cr = raw(".\n\0\xff") + "ab .MAIL FROM:<>@";
        const std::string& alphabet = for_data ? no_cr : any;
        std::string s;
        for (size_t i = 0; i < n; ++i) s += alphabet[pick(static_cast<uint32_t>(alphabet.size()))];
        return s;
    };
    transcript t;
    t.push_back(S(pick(2) ? "220 mx.example.net ESMTP\r\n" : "220-mx.example.net\r\n220 hi\r\n"));
    t.push_back(C("EHLO client" + std::to_string(pick(100)) + ".example.com\r\n"));
    t.push_back(S("250-mx.example.net\r\n250-PIPELINING\r\n250 CHUNKING\r\n"));
    if (pick(3) == 0) {
        t.push_back(C("AUTH PLAIN " + base64(raw("\0user\0pw")) + "\r\n"));
        t.push_back(S(pick(2) ? "235 ok\r\n" : "535 no\r\n"));
    }
    for (uint32_t tx = pick(5); tx > 0; --tx) {
        const bool pipelined = pick(2);
        const bool bdat = pick(3) == 0;
        std::string cmds = pick(4) ? "MAIL FROM:<s@example.com>\r\n" : "MAIL FROM:<>\r\n", replies = "250 ok\r\n";
        ++e.messages;
        auto flush = [&] {
            if (!cmds.empty()) t.push_back(C(cmds)), t.push_back(S(replies));
            cmds.clear();
            replies.clear();
        };
        if (!pipelined) flush();
        bool any_accepted = false;
        for (uint32_t n = 1 + pick(40); n > 0; --n) {
            cmds += "RCPT TO:<r" + std::to_string(n) + "@example.org>\r\n";
            ++e.recipients;
            if (pick(3) == 0) {
                replies += "550 5.1.1 unknown\r\n";
                ++e.rejected;
            } else {
                replies += "250 ok\r\n";
                any_accepted = true;
            }
            if (!pipelined) flush();
        }
        if (bdat) {
            e.contents.emplace_back();
            for (uint32_t chunks = 1 + pick(3); chunks > 0; --chunks) {
                const std::string body = bytes(pick(300));
                e.contents.back() += body;
                cmds += "BDAT " + std::to_string(body.size()) + (chunks == 1 ? " LAST" : "") + "\r\n" + body;
                const bool ok = chunks > 1 || pick(4);
                replies += ok ? "250 ok\r\n" : "552 too big\r\n";
                if (!pipelined) flush();
            }
            flush();
        } else {
            cmds += "DATA\r\n";
            if (!any_accepted) {
                replies += "554 no valid recipients\r\n";
                flush();
            } else {
                replies += "354 go ahead\r\n";
                flush();
                std::string body;
                e.contents.emplace_back();
                for (uint32_t lines = pick(20); lines > 0; --lines) {
                    const std::string line = bytes(pick(60), true);
                    body += (line.empty() || line[0] != '.' ? "" : ".") + line + "\r\n";  // dot-stuffing
                    e.contents.back() += line + "\r\n";
                }
                std::string end = body + ".\r\n";
                std::string next_replies;
                if (pick(2)) end += "NOOP\r\n", next_replies = "250 ok\r\n";  // pipelined after the end
                t.push_back(C(end));
                const bool ok = pick(4);
                t.push_back(S((ok ? "250 queued\r\n" : "451 try later\r\n") + next_replies));
            }
        }
        if (pick(4) == 0) t.push_back(C("RSET\r\n")), t.push_back(S("250 ok\r\n"));
    }
    t.push_back(C("QUIT\r\n"));
    t.push_back(S("221 bye\r\n"));
    return t;
}

TEST(smtp_session, random_valid_sessions_any_segmentation) {
    std::mt19937 rng(20240521);
    for (int iter = 0; iter < 1500; ++iter) {
        expected_counts e;
        const transcript t = random_session(rng, e);
        const outcome whole = run_whole(t);
        std::ostringstream want;
        want << "messages=" << e.messages << " rcpt=" << e.recipients
             << " rejected=" << e.rejected << " ";
        ASSERT_EQ(whole.state.rfind(want.str(), 0), 0u) << "iteration " << iter << ": " << whole.state;
        ASSERT_NE(whole.state.find("pending=0 tls=0 uninspectable=0(none) in_data=0"), std::string::npos)
            << "iteration " << iter << ": " << whole.state;
        ASSERT_EQ(whole.contents, e.contents) << "iteration " << iter;
        const outcome split = run(t, [&](size_t, size_t, size_t len) {
            std::vector<size_t> pieces;
            while (len) {
                const size_t n = 1 + rng() % (rng() % 2 ? len : std::min<size_t>(len, 4));
                pieces.push_back(n);
                len -= n;
            }
            return pieces;
        });
        ASSERT_EQ(split, whole) << "iteration " << iter;
    }
}

// --- random bytes behind a guard page: never crash, never overrun ---------------------------

TEST(smtp_session, random_bytes_never_crash) {
    std::mt19937 rng(7);
    const std::vector<std::string> client_tokens = {
        "EHLO ", "HELO ", "MAIL FROM:<", "RCPT TO:<", "@", ">", "<>", "\r\n", "\r", "\n", "DATA\r\n", "BDAT ",
        " LAST", "7", "0", "4294967295", "AUTH PLAIN ", "AUTH LOGIN", "AGFsaWNlAHB3", "=", "STARTTLS\r\n",
        ".", "\r\n.\r\n", "..", "\"", "\\", " ", "[", "192.0.2.1", ":", "NOOP\r\n", "QUIT\r\n"};
    const std::vector<std::string> server_tokens = {
        "220 mx\r\n", "250 ok\r\n", "250-", "354 go\r\n", "334 \r\n", "235 ok\r\n", "550 no\r\n", "421 bye\r\n",
        "221 bye\r\n", "2", "5", "0", "-", " ", "\r\n", "\n", "x"};
    for (int iter = 0; iter < 20000; ++iter) {
        smtp_session s(rng() % 20 == 0);
        recorder r;
        for (int seg = 1 + static_cast<int>(rng() % 30); seg > 0; --seg) {
            const bool client = rng() % 2;
            const auto& tokens = client ? client_tokens : server_tokens;
            std::string bytes;
            for (int n = static_cast<int>(rng() % 12); n > 0; --n) {
                if (rng() % 4 == 0) {
                    for (int k = 1 + static_cast<int>(rng() % 8); k > 0; --k) bytes += static_cast<char>(rng());
                } else {
                    bytes += tokens[rng() % tokens.size()];
                }
            }
            feed(s, client ? dir::client : dir::server, bytes, r);
            ASSERT_LE(s.auth_name().size(), smtp_max_auth_name);
        }
        if (r.log.size() > 100000) r.log.clear();
    }
}

}  // namespace
}  // namespace sekisho
