// mail_decoder: messages generated here (Japanese text written in UTF-8 and
// converted by glibc iconv to ISO-2022-JP / Shift_JIS / EUC-JP, then base64 or
// quoted-printable encoded by the test): RFC 2047 subjects, base64 /
// quoted-printable / 8bit bodies in each charset, multipart (alternative,
// attachments, nesting, embedded messages), folded headers; the same output at
// every split point and a byte at a time; malformed and random input behind a
// guard page never crashes and stays bounded; the body cap; the whole path from
// smtp_session's on_content.
#include "dataplane/mime/mail_decoder.h"

#include <gtest/gtest.h>
#include <iconv.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../support/base64.h"
#include "../support/guarded_buffer.h"
#include "dataplane/mime/decode_kernels.h"
#include "dataplane/smtp/smtp_session.h"

namespace sekisho {
namespace {

// --- building messages -----------------------------------------------------------------------------

template <size_t N>
std::string raw(const char (&s)[N]) {
    return std::string(s, N - 1);
}

// UTF-8 to `charset` with glibc iconv, ending in the initial shift state.
std::string encode(const char* charset, std::string_view utf8) {
    const iconv_t cd = iconv_open(charset, "UTF-8");
    if (cd == reinterpret_cast<iconv_t>(-1)) {
        ADD_FAILURE() << "iconv_open " << charset;
        return {};
    }
    std::string out(utf8.size() * 4 + 16, '\0');
    char* in = const_cast<char*>(utf8.data());
    size_t in_left = utf8.size();
    char* o = out.data();
    size_t o_left = out.size();
    EXPECT_NE(iconv(cd, &in, &in_left, &o, &o_left), static_cast<size_t>(-1)) << charset << ": " << utf8;
    iconv(cd, nullptr, nullptr, &o, &o_left);
    iconv_close(cd);
    out.resize(out.size() - o_left);
    return out;
}

using test::base64;

// Base64 body lines of 76 characters, each ending in CRLF.
std::string base64_lines(std::string_view in) {
    const std::string b = base64(in);
    std::string out;
    for (size_t i = 0; i < b.size(); i += 76) out += b.substr(i, 76) + "\r\n";
    return out;
}

std::string hex_escape(uint8_t c) {
    static const char* d = "0123456789ABCDEF";
    return {'=', d[c >> 4], d[c & 15]};
}

// Quoted-printable (RFC 2045 6.7): CRLF in the input are hard line breaks, lines kept within 76.
std::string qp(std::string_view in) {
    std::string out;
    size_t start = 0;
    for (;;) {
        size_t end = in.find("\r\n", start);
        const bool last = end == std::string_view::npos;
        if (last) end = in.size();
        std::string line;
        for (size_t i = start; i < end; ++i) {
            const uint8_t c = static_cast<uint8_t>(in[i]);
            const bool blank = c == ' ' || c == '\t';
            const std::string tok = (c >= 33 && c <= 126 && c != '=') || (blank && i + 1 < end)
                                        ? std::string(1, static_cast<char>(c))
                                        : hex_escape(c);
            if (line.size() + tok.size() > 75) {
                out += line + "=\r\n";
                line.clear();
            }
            line += tok;
        }
        out += line;
        if (last) break;
        out += "\r\n";
        start = end + 2;
    }
    return out;
}

std::string ew_b(const std::string& charset, std::string_view bytes) {
    return "=?" + charset + "?B?" + base64(bytes) + "?=";
}
std::string ew_q(const std::string& charset, std::string_view bytes) {
    std::string s = "=?" + charset + "?Q?";
    for (const char ch : bytes) {
        const uint8_t c = static_cast<uint8_t>(ch);
        if (c == ' ') s += '_';
        else if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) s += ch;
        else s += hex_escape(c);
    }
    return s + "?=";
}

// --- decoding ------------------------------------------------------------------------------------------

struct event {
    char kind;  // 'H' a header field, 'B' body text (consecutive pieces joined), 'P' a part boundary
    std::string name, data;
    bool operator==(const event&) const = default;
};
std::ostream& operator<<(std::ostream& os, const event& e) {
    return os << e.kind << (e.name.empty() ? "" : " " + e.name) << " " << testing::PrintToString(e.data);
}

struct recorder : mail_decoder_sink {
    std::vector<event> events;
    bool field_open = false;
    size_t header_calls = 0, body_calls = 0, output = 0;
    uint32_t part_boundaries = 0;   // on_part_boundary() calls

    void on_header(std::string_view name, const uint8_t* p, size_t n, bool end) override {
        EXPECT_LE(n, mail_header_chunk);
        EXPECT_TRUE(n || end) << "empty piece before the end of a field";
        EXPECT_LE(name.size(), mail_max_header_name);
        for (const char c : name) EXPECT_FALSE(c >= 'A' && c <= 'Z') << name;
        if (field_open) {
            EXPECT_EQ(events.back().name, name);
        } else {
            events.push_back({'H', std::string(name), ""});
        }
        events.back().data.append(reinterpret_cast<const char*>(p), n);
        field_open = !end;
        ++header_calls;
        output += n;
    }
    void on_body(const uint8_t* p, size_t n) override {
        EXPECT_GT(n, 0u);
        EXPECT_FALSE(field_open);
        if (events.empty() || events.back().kind != 'B') events.push_back({'B', "", ""});
        events.back().data.append(reinterpret_cast<const char*>(p), n);
        ++body_calls;
        output += n;
    }
    void on_part_boundary() override {
        EXPECT_FALSE(field_open);
        events.push_back({'P', "", ""});
        ++part_boundaries;
    }
};

struct result {
    std::vector<event> events;
    size_t body_bytes = 0;
    bool truncated = false, too_deep = false;
    uint32_t parts = 0;   // on_part_boundary() calls
    bool operator==(const result&) const = default;

    // The value of the nth field of that name (the message's and the parts' alike).
    std::string header(std::string_view name, size_t nth = 0) const {
        for (const event& e : events)
            if (e.kind == 'H' && e.name == name && nth-- == 0) return e.data;
        return "<none>";
    }
    std::string body() const {
        std::string s;
        for (const event& e : events)
            if (e.kind == 'B') s += e.data;
        return s;
    }
    std::vector<std::string> bodies() const {
        std::vector<std::string> v;
        for (const event& e : events)
            if (e.kind == 'B') v.push_back(e.data);
        return v;
    }
};
std::ostream& operator<<(std::ostream& os, const result& r) {
    for (const event& e : r.events) os << e << "\n";
    return os << "body_bytes=" << r.body_bytes << " truncated=" << r.truncated << " too_deep=" << r.too_deep
              << " parts=" << r.parts;
}

charset_converters& converters() {  // a worker's
    static charset_converters cv;
    return cv;
}

test::guarded_buffer& guard() {
    static test::guarded_buffer b(1 << 22);
    return b;
}

// Feeds `msg` in pieces of the given lengths, each from a buffer that ends at a guard page.
result decode(std::string_view msg, const std::vector<size_t>& pieces, uint32_t limit = mail_default_body_limit,
              recorder* keep = nullptr) {
    mail_decoder d;
    d.reset(limit);
    recorder local;
    recorder& r = keep ? *keep : local;
    size_t at = 0;
    for (const size_t len : pieces) {
        const uint8_t* p = guard().place(reinterpret_cast<const uint8_t*>(msg.data() + at), len);
        d.feed(p, len, r, converters());
        at += len;
    }
    EXPECT_EQ(at, msg.size());
    d.finish(r, converters());
    EXPECT_FALSE(r.field_open);
    EXPECT_LE(d.body_bytes(), limit);
    return {r.events, d.body_bytes(), d.truncated(), d.too_deep(), r.part_boundaries};
}
result decode(std::string_view msg, uint32_t limit = mail_default_body_limit) {
    return decode(msg, std::vector<size_t>{msg.size()}, limit);
}
result decode_bytewise(std::string_view msg) { return decode(msg, std::vector<size_t>(msg.size(), 1)); }
result decode_split(std::string_view msg, size_t k) { return decode(msg, {k, msg.size() - k}); }

void expect_split_invariant(const std::string& msg) {
    const result whole = decode(msg);
    EXPECT_EQ(decode_bytewise(msg), whole) << "byte at a time";
    for (size_t k = 0; k <= msg.size(); ++k) {
        const result r = decode_split(msg, k);
        if (r != whole) {
            ADD_FAILURE() << "split at " << k << "\n got:\n" << r << "\nwant:\n" << whole;
            return;
        }
    }
}

// --- texts ---------------------------------------------------------------------------------------

const std::string ja_subject = "【重要】日本語の件名：特別なお知らせ";
const std::string ja_text =
    "こんにちは。本日限りの特別なご案内です。\r\n"
    "詳しくはこちら：https://www.example.jp/campaign\r\n"
    "未承諾広告※ お問い合わせは info@example.jp まで。\r\n";

std::string headers(const std::string& extra) {
    return "From: sender@example.jp\r\nTo: user@example.com\r\nSubject: test\r\nMIME-Version: 1.0\r\n" + extra;
}

// --- the basics ----------------------------------------------------------------------------------------

TEST(mail_decoder, state_size) {
    static_assert(sizeof(mail_decoder) <= 512);
    static_assert(std::is_trivially_copyable_v<mail_decoder>);
    std::printf("sizeof(mail_decoder) = %zu\n", sizeof(mail_decoder));
}

TEST(mail_decoder, charset_names) {
    EXPECT_EQ(mail_charset_from_name("ISO-2022-JP"), mail_charset::jis);
    EXPECT_EQ(mail_charset_from_name("iso-2022-jp"), mail_charset::jis);
    EXPECT_EQ(mail_charset_from_name("US-ASCII"), mail_charset::jis);
    EXPECT_EQ(mail_charset_from_name(""), mail_charset::jis);
    EXPECT_EQ(mail_charset_from_name("Shift_JIS"), mail_charset::sjis);
    EXPECT_EQ(mail_charset_from_name("windows-31j"), mail_charset::sjis);
    EXPECT_EQ(mail_charset_from_name("x-sjis"), mail_charset::sjis);
    EXPECT_EQ(mail_charset_from_name("EUC-JP"), mail_charset::eucjp);
    EXPECT_EQ(mail_charset_from_name("UTF-8"), mail_charset::utf8);
    EXPECT_EQ(mail_charset_from_name("utf8"), mail_charset::utf8);
    EXPECT_EQ(mail_charset_from_name("GB2312"), mail_charset::gb18030);
    EXPECT_EQ(mail_charset_from_name("ks_c_5601-1987"), mail_charset::euckr);
    EXPECT_EQ(mail_charset_from_name("ISO-8859-1"), mail_charset::cp1252);
    EXPECT_EQ(mail_charset_from_name("x-unknown"), mail_charset::raw);
    EXPECT_EQ(mail_charset_from_name(std::string(200, 'a')), mail_charset::raw);
    charset_converters cv;
    EXPECT_TRUE(cv.available(mail_charset::jis));
    EXPECT_TRUE(cv.available(mail_charset::sjis));
    EXPECT_TRUE(cv.available(mail_charset::eucjp));
    EXPECT_EQ(cv.open_all(), mail_charset_count);  // glibc has them all
}

TEST(mail_decoder, plain_message) {
    const result r =
        decode("From: alice@example.com\r\nTo: bob@example.org\r\nSubject: hello\r\n\r\nHi Bob,\r\n\r\nbye\r\n");
    EXPECT_EQ(r.events, (std::vector<event>{{'H', "from", "alice@example.com"},
                                            {'H', "to", "bob@example.org"},
                                            {'H', "subject", "hello"},
                                            {'B', "", "Hi Bob,\r\n\r\nbye\r\n"}}));
    EXPECT_EQ(r.body_bytes, 16u);
    EXPECT_FALSE(r.truncated);
    EXPECT_EQ(r.parts, 0u);
}

// --- RFC 2047 ------------------------------------------------------------------------------------------

TEST(mail_decoder, subject_iso2022jp_base64) {
    const std::string jis = encode("ISO-2022-JP", ja_subject);
    ASSERT_EQ(jis.substr(0, 3), "\x1b$B");
    for (const std::string& word : {ew_b("ISO-2022-JP", jis), ew_b("iso-2022-jp", jis), "=?iso-2022-jp?b?" +
                                                                                          base64(jis) + "?="}) {
        const result r = decode(headers("") + "X-Subject: " + word + "\r\n\r\nbody\r\n");
        EXPECT_EQ(r.header("x-subject"), ja_subject) << word;
        EXPECT_EQ(r.body(), "body\r\n");
    }
    const result q = decode("Subject: " + ew_q("ISO-2022-JP", jis) + "\r\n\r\n");
    EXPECT_EQ(q.header("subject"), ja_subject);
}

TEST(mail_decoder, encoded_words_joined_folded_and_mixed) {
    const std::string u = "件名";  // 6 UTF-8 bytes
    const std::string sjis = encode("CP932", "日本語");
    const struct {
        std::string value, want;
    } cases[] = {
        // adjacent words: whitespace (folding included) between them dropped
        {"Re: " + ew_b("UTF-8", "日本") + "\r\n " + ew_b("UTF-8", "語") + " tail", "Re: 日本語 tail"},
        {ew_b("UTF-8", "a") + "  \t " + ew_b("UTF-8", "b"), "ab"},
        // a character split across adjacent words of one charset is joined
        {ew_b("UTF-8", u.substr(0, 2)) + " " + ew_b("UTF-8", u.substr(2, 3)) + " " + ew_b("UTF-8", u.substr(5)), u},
        {ew_b("Shift_JIS", sjis.substr(0, 3)) + "\r\n\t" + ew_b("Shift_JIS", sjis.substr(3)), "日本語"},
        // different charsets, B and Q mixed
        {ew_b("ISO-2022-JP", encode("ISO-2022-JP", "日本")) + " " + ew_q("Shift_JIS", encode("CP932", "語")), "日本語"},
        {ew_q("UTF-8", "こんにちは world"), "こんにちは world"},
        {ew_b("EUC-JP", encode("EUC-JP-MS", "迷惑①")), "迷惑①"},
        // words among text keep the text's whitespace
        {"a " + ew_b("UTF-8", "本") + " b", "a 本 b"},
        {"(" + ew_b("UTF-8", "本") + ")", "(本)"},
        {ew_b("UTF-8", "本") + " " + "=x", "本 =x"},
        // RFC 2231 language, lower case, unknown charset (bytes as they are)
        {"=?UTF-8*ja?B?" + base64("日本") + "?=", "日本"},
        {"=?utf-8?q?caf=C3=A9?=", "café"},
        {ew_b("x-unknown", "abc"), "abc"},
        {ew_b("ISO-8859-1", "caf\xe9"), "café"},
        // not encoded words: as they are
        {"=?UTF-8?X?abc?=", "=?UTF-8?X?abc?="},
        {"a =? b", "a =? b"},
        {"=?", "=?"},
        {"x = y ==", "x = y =="},
        {"==?UTF-8?B?" + base64("本") + "?=", "=本"},
        {"=?UTF-8?B", "=?UTF-8?B"},
        {"=?" + std::string(60, 'c') + "?B?YQ==?=", "=?" + std::string(60, 'c') + "?B?YQ==?="},
        // the held prefix is bounded (40 bytes): longer ones are text
        {"=?" + std::string(36, 'c') + "*ja?B?YQ==?=", "=?" + std::string(36, 'c') + "*ja?B?YQ==?="},
        {"=?" + std::string(34, 'c') + "*j?B?YQ==?=", "a"},
        {"=?" + std::string(35, 'c') + "*j?B?YQ==?=", "=?" + std::string(35, 'c') + "*j?B?YQ==?="},
        {"=?" + std::string(36, 'c') + "?B?YQ==?=", "a"},
        {"=?" + std::string(37, 'c') + "?B?YQ==?=", "=?" + std::string(37, 'c') + "?B?YQ==?="},
        {ew_b("UTF-8", "本") + " =?UTF-8?Z?x?=", "本 =?UTF-8?Z?x?="},
        // unterminated: decoded as far as it goes
        {"=?UTF-8?B?" + base64("日本語"), "日本語"},
        {"=?UTF-8?Q?a_b", "a b"},
        {"=?UTF-8?B?" + base64("日本") + " after", "日本 after"},
    };
    for (const auto& c : cases) {
        const std::string msg = "Subject: " + c.value + "\r\n\r\n";
        const result r = decode(msg);
        EXPECT_EQ(r.header("subject"), c.want) << testing::PrintToString(c.value);
        expect_split_invariant(msg);
    }
}

TEST(mail_decoder, raw_iso2022jp_header_and_undeclared_body) {
    // Old Japanese mailers send ISO-2022-JP unencoded, and without a charset.
    const std::string msg = "Subject: " + encode("ISO-2022-JP", ja_subject) + "\r\nX-UTF8: 生のUTF-8\r\n\r\n" +
                            encode("ISO-2022-JP", ja_text);
    const result r = decode(msg);
    EXPECT_EQ(r.header("subject"), ja_subject);
    EXPECT_EQ(r.header("x-utf8"), "生のUTF-8");  // raw 8-bit bytes pass
    EXPECT_EQ(r.body(), ja_text);
}

// --- bodies ------------------------------------------------------------------------------------------------

TEST(mail_decoder, base64_iso2022jp_body) {
    const std::string msg = headers("Content-Type: text/plain; charset=\"ISO-2022-JP\"\r\n"
                                    "Content-Transfer-Encoding: base64\r\n\r\n") +
                            base64_lines(encode("ISO-2022-JP", ja_text));
    const result r = decode(msg);
    EXPECT_EQ(r.body(), ja_text);
    EXPECT_EQ(r.header("content-type"), "text/plain; charset=\"ISO-2022-JP\"");
    EXPECT_EQ(r.body_bytes, ja_text.size());
}

TEST(mail_decoder, quoted_printable_utf8_body) {
    const std::string text = ja_text + "a = b, 100% sure; trailing blanks kept mid-line  x\r\n\ttab line\r\n";
    const std::string msg =
        headers("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n") +
        qp(text);
    EXPECT_NE(qp(text).find("=\r\n"), std::string::npos);  // soft line breaks were needed
    EXPECT_EQ(decode(msg).body(), text);
    // Soft breaks, padding after '=', trailing whitespace dropped, lower-case hex.
    const std::string raw_qp = "soft=\r\nbreak= \t\r\nend  \t\r\n=e6=97=a5=E6=9C=AC\r\nlast line   ";
    EXPECT_EQ(decode(headers("Content-Transfer-Encoding: Quoted-Printable\r\n\r\n") + raw_qp).body(),
              "softbreakend\r\n日本\r\nlast line");
}

TEST(mail_decoder, shift_jis_and_euc_jp_bodies) {
    const std::string text = ja_text + "機種依存文字①②Ⅲ㈱\r\n";
    const struct {
        const char* declared;
        const char* iconv_name;
        const char* cte;
    } cases[] = {
        {"Shift_JIS", "CP932", "8bit"},        {"shift_jis", "CP932", "base64"},
        {"x-sjis", "CP932", "quoted-printable"}, {"Windows-31J", "CP932", "8bit"},
        {"EUC-JP", "EUC-JP-MS", "8bit"},       {"euc-jp", "EUC-JP-MS", "base64"},
        {"x-euc-jp", "EUC-JP-MS", "quoted-printable"},
    };
    for (const auto& c : cases) {
        const std::string bytes = encode(c.iconv_name, text);
        const std::string cte = c.cte;
        const std::string body = cte == "base64" ? base64_lines(bytes) : cte == "8bit" ? bytes : qp(bytes);
        const std::string msg = headers("Content-Type: text/plain; charset=" + std::string(c.declared) +
                                        "\r\nContent-Transfer-Encoding: " + cte + "\r\n\r\n") +
                                body;
        EXPECT_EQ(decode(msg).body(), text) << c.declared << " " << c.cte;
    }
}

TEST(mail_decoder, iso2022jp_escapes_and_extensions) {
    const struct {
        std::string jis, want;
    } cases[] = {
        {"\x1b$B\x2d\x21\x2d\x22\x1b(B", "①②"},          // NEC row 13: glibc's ISO-2022-JP rejects these
        {"\x1b(I\x36\x40\x36\x45\x1b(B", "ｶﾀｶﾅ"},          // half-width kana
        {"\x1b(Jabc\x1b(B", "abc"},                         // JIS X 0201 Roman, read as ASCII
        {"\x1b$@\x46\x7c\x1b(B", "日"},                     // JIS C 6226-1978
        {"\x1b$(D\x30\x21\x1b(B", "丂"},                    // JIS X 0212
        {"\x1b$B\x46\x7c\x1b(B\x1b$B\x4b\x5c\x1b(B", "日本"},
        {"\x1b$B\x46\x1b(Bx", "\xef\xbf\xbdx"},             // half a character
        {"\x1b$B\x46\x7c\t\x1b(B", "日\t"},                   // a control in double-byte mode
        {"\x1bxy", "xy"},                                     // unknown escape dropped
        {"a\x1b", "a"},
        {"\x1b$B\x46\x7f\x1b(B", "\xef\xbf\xbd\x7f"},             // not a character byte: as it is
    };
    for (const auto& c : cases) {
        const std::string msg = "Subject: " + c.jis + "\r\n\r\n" + c.jis;
        const result r = decode(msg);
        EXPECT_EQ(r.header("subject"), c.want) << testing::PrintToString(c.jis);
        EXPECT_EQ(r.body(), c.want) << testing::PrintToString(c.jis);
        expect_split_invariant(msg);
    }
    // Line breaks in double-byte mode (RFC 1468 wants ASCII first; mailers forget): kept.
    EXPECT_EQ(decode("\r\n\x1b$B\x46\x7c\r\n\x4b\x5c\x1b(B\r\n").body(), "日\r\n本\r\n");
    // An invalid double-byte character is skipped whole: the next ones stay aligned.
    EXPECT_EQ(decode("\r\n\x1b$B\x29\x21\x46\x7c\x1b(B").body(), "\xef\xbf\xbd日");  // row 9: unassigned
}

TEST(mail_decoder, other_charsets) {
    const struct {
        const char* declared;
        const char* iconv_name;
        std::string text;
    } cases[] = {
        {"GB2312", "GB18030", "中文邮件"},
        {"Big5", "BIG5-HKSCS", "繁體中文"},
        {"EUC-KR", "CP949", "한국어 메일"},
        {"windows-1251", "CP1251", "Привет"},
        {"KOI8-R", "KOI8-R", "Привет"},
        {"iso-8859-1", "CP1252", "Grüße"},
    };
    for (const auto& c : cases) {
        const std::string msg = headers("Content-Type: text/plain; charset=" + std::string(c.declared) +
                                        "\r\nContent-Transfer-Encoding: base64\r\n\r\n") +
                                base64_lines(encode(c.iconv_name, c.text));
        EXPECT_EQ(decode(msg).body(), c.text) << c.declared;
        expect_split_invariant(msg);
    }
    // Unknown charsets pass through; undecodable bytes become U+FFFD.
    EXPECT_EQ(decode(headers("Content-Type: text/plain; charset=x-mystery\r\n\r\n") + raw("\xff\xfe\x01\r\n")).body(),
              raw("\xff\xfe\x01\r\n"));
    EXPECT_EQ(decode(headers("Content-Type: text/plain; charset=shift_jis\r\n\r\n") + raw("a\x81\x20z")).body(),
              "a\xef\xbf\xbd z");
    EXPECT_EQ(decode(headers("Content-Type: text/plain; charset=shift_jis\r\n\r\n") + raw("a\x82")).body(),
              "a\xef\xbf\xbd");  // an incomplete character at the end
}

// --- structure ---------------------------------------------------------------------------------------------

const std::string plain_part = "プレーンテキスト版です。\r\n二行目。\r\n";
const std::string html_part = "<html><body><p style=\"color:red\">限定セール</p><p>100% OFF</p></body></html>\r\n";
const std::string attachment_bytes = raw("%PDF-1.4\n\0\x01\x02\xff 未承諾広告 blackword-in-attachment\n");

std::string alternative_message() {
    return headers("Content-Type: multipart/alternative; boundary=\"b1_example\"\r\n\r\n") +
           "This is a multi-part message in MIME format.\r\n"
           "--b1_example\r\n"
           "Content-Type: text/plain; charset=UTF-8\r\n"
           "Content-Transfer-Encoding: quoted-printable\r\n"
           "\r\n" +
           qp(plain_part) +
           "\r\n"
           "--b1_example\r\n"
           "Content-Type: text/html; charset=ISO-2022-JP\r\n"
           "Content-Transfer-Encoding: base64\r\n"
           "\r\n" +
           base64_lines(encode("ISO-2022-JP", html_part)) +
           "\r\n"
           "--b1_example\r\n"
           "Content-Type: application/pdf; name=\"offer.pdf\"\r\n"
           "Content-Disposition: attachment; filename=\"offer.pdf\"\r\n"
           "Content-Transfer-Encoding: base64\r\n"
           "\r\n" +
           base64_lines(attachment_bytes) +
           "\r\n"
           "--b1_example--\r\n"
           "epilogue: not shown\r\n";
}

TEST(mail_decoder, multipart_alternative_with_attachment) {
    const result r = decode(alternative_message());
    EXPECT_EQ(r.events, (std::vector<event>{
                            {'H', "from", "sender@example.jp"},
                            {'H', "to", "user@example.com"},
                            {'H', "subject", "test"},
                            {'H', "mime-version", "1.0"},
                            {'H', "content-type", "multipart/alternative; boundary=\"b1_example\""},
                            {'P', "", ""},
                            {'H', "content-type", "text/plain; charset=UTF-8"},
                            {'H', "content-transfer-encoding", "quoted-printable"},
                            {'B', "", plain_part},  // its last line break (before the empty line) kept
                            {'P', "", ""},
                            {'H', "content-type", "text/html; charset=ISO-2022-JP"},
                            {'H', "content-transfer-encoding", "base64"},
                            {'B', "", html_part},
                            {'P', "", ""},
                            {'H', "content-type", "application/pdf; name=\"offer.pdf\""},
                            {'H', "content-disposition", "attachment; filename=\"offer.pdf\""},
                            {'H', "content-transfer-encoding", "base64"},
                        }))
        << r;
    EXPECT_EQ(r.parts, 3u);
    EXPECT_EQ(r.body().find("blackword"), std::string::npos);
}

std::string nested_message() {
    const std::string outer = "----=_Part_0_1234.5678";
    return "Return-Path: <sender@example.jp>\r\n"
           "From: " + ew_b("ISO-2022-JP", encode("ISO-2022-JP", "送信者")) + " <sender@example.jp>\r\n"
           "To: user@example.com\r\n"
           "Subject: " + ew_b("ISO-2022-JP", encode("ISO-2022-JP", ja_subject)) + "\r\n " + ew_q("UTF-8", "（続き）") +
           "\r\n"
           "Date: Mon, 1 Jan 2024 00:00:00 +0900\r\n"
           "MIME-Version: 1.0\r\n"
           "Content-Type: multipart/mixed;\r\n\tboundary=\"" + outer + "\"\r\n"
           "\r\n"
           "preamble: not shown\r\n"
           "--" + outer + "\r\n"
           "Content-Type: multipart/alternative; boundary=alt-b\r\n"
           "\r\n"
           "--alt-b\r\n"
           "Content-Type: text/plain; charset=iso-2022-jp\r\n"
           "Content-Transfer-Encoding: base64\r\n"
           "\r\n" + base64_lines(encode("ISO-2022-JP", ja_text)) +
           "--alt-b\r\n"
           "Content-Type: text/html; charset=UTF-8\r\n"
           "Content-Transfer-Encoding: quoted-printable\r\n"
           "\r\n" + qp(html_part) + "\r\n"
           "--alt-b--\r\n"
           "inner epilogue: not shown\r\n"
           "--" + outer + "\r\n"
           "Content-Type: text/plain; charset=Shift_JIS; name=\"note.txt\"\r\n"
           "Content-Disposition: attachment; filename=\"note.txt\"\r\n"
           "Content-Transfer-Encoding: 8bit\r\n"
           "\r\n" + encode("CP932", "添付テキスト①\r\n") + "\r\n"
           "--" + outer + "\r\n"
           "Content-Type: message/rfc822\r\n"
           "\r\n"
           "Subject: " + ew_b("EUC-JP", encode("EUC-JP-MS", "転送メール")) + "\r\n"
           "Content-Type: text/plain; charset=euc-jp\r\n"
           "\r\n" + encode("EUC-JP-MS", "転送された本文\r\n") + "\r\n"
           "--" + outer + "\r\n"
           "Content-Type: image/png\r\n"
           "Content-Transfer-Encoding: base64\r\n"
           "\r\n" + base64_lines(attachment_bytes) +
           "--" + outer + "--\r\n"
           "epilogue: not shown\r\n";
}

TEST(mail_decoder, nested_multipart_and_embedded_message) {
    const result r = decode(nested_message());
    EXPECT_EQ(r.header("from"), "送信者 <sender@example.jp>");
    EXPECT_EQ(r.header("subject"), ja_subject + "（続き）");
    EXPECT_EQ(r.header("content-type"), "multipart/mixed;\tboundary=\"----=_Part_0_1234.5678\"");
    EXPECT_EQ(r.header("subject", 1), "転送メール");
    EXPECT_EQ(r.bodies(), (std::vector<std::string>{ja_text, html_part, "添付テキスト①\r\n", "転送された本文\r\n"}));
    EXPECT_EQ(r.parts, 7u);  // alternative, plain, html, note.txt, rfc822, its message, image
    EXPECT_EQ(r.body().find("not shown"), std::string::npos);
    EXPECT_EQ(r.body().find("blackword"), std::string::npos);
    EXPECT_FALSE(r.too_deep);
}

TEST(mail_decoder, folded_headers) {
    const result r = decode(
        "Subject: first\r\n second\r\n\tthird\r\n"
        "X-Lead:\r\n   value after a fold\r\n"
        "X-Empty:\r\n"
        "SUBJECT : spaced name\r\n"
        "X-Trailing: a \r\n"
        "\r\n"
        "body\r\n");
    EXPECT_EQ(r.events, (std::vector<event>{{'H', "subject", "first second\tthird"},
                                            {'H', "x-lead", "value after a fold"},
                                            {'H', "x-empty", ""},
                                            {'H', "subject", "spaced name"},
                                            {'H', "x-trailing", "a "},
                                            {'B', "", "body\r\n"}}))
        << r;
}

TEST(mail_decoder, bare_lf_line_breaks) {
    std::string msg = alternative_message();
    for (size_t at; (at = msg.find("\r\n")) != std::string::npos;) msg.replace(at, 2, "\n");
    std::string plain = plain_part, html = html_part;
    for (std::string* s : {&plain, &html})
        for (size_t at; (at = s->find("\r\n")) != std::string::npos;) s->replace(at, 2, "\n");
    const result r = decode(msg);
    EXPECT_EQ(r.bodies(), (std::vector<std::string>{plain, html_part})) << r;  // html: base64 kept its CRLF
    EXPECT_EQ(r.parts, 3u);
}

TEST(mail_decoder, delimiters) {
    auto body_of = [](const std::string& parts) {
        return decode("Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts).bodies();
    };
    using v = std::vector<std::string>;
    // The CRLF before a delimiter is the delimiter's; an empty part; transport padding; close.
    EXPECT_EQ(body_of("--b\r\n\r\none\r\n--b\r\n\r\n--b  \t\r\n\r\ntwo\r\n\r\n--b--\r\nafter\r\n"),
              (v{"one", "two\r\n"}));
    // RFC 2046 5.1.1: a line that starts with the delimiter is one, whatever follows.
    EXPECT_EQ(body_of("--b\r\n\r\none\r\n--bx\r\n\r\ntwo\r\n--b-x\r\n\r\nthree\r\n--b--x\r\nafter\r\n"),
              (v{"one", "two", "three"}));
    // Look-alikes are content.
    EXPECT_EQ(body_of("--b\r\n\r\n-b\r\n--c\r\n- --b\r\n--\r\n--b--\r\n"), (v{"-b\r\n--c\r\n- --b\r\n--"}));
    // No close delimiter: the part ends with the message, its last line break included.
    EXPECT_EQ(body_of("--b\r\n\r\nlast\r\n"), (v{"last\r\n"}));
    EXPECT_EQ(body_of("--b\r\n\r\nlast\r\n--"), (v{"last\r\n--"}));
    EXPECT_EQ(body_of("--b\r\n\r\nlast\r\n--b"), (v{"last"}));
    // An outer delimiter closes inner multiparts.
    EXPECT_EQ(body_of("--b\r\nContent-Type: multipart/mixed; boundary=\"c\"\r\n\r\n--c\r\n\r\ninner\r\n"
                      "--b\r\n\r\nouter\r\n--b--\r\n"),
              (v{"inner", "outer"}));
    // A part whose header block the delimiter cuts short.
    EXPECT_EQ(body_of("--b\r\nX-A: 1\r\n--b\r\n\r\nx\r\n--b--\r\n"), (v{"x"}));
}

TEST(mail_decoder, not_a_header_line_starts_the_body) {
    EXPECT_EQ(decode("Subject: x\r\nthis is not a header\r\nmore\r\n").body(), "this is not a header\r\nmore\r\n");
    EXPECT_EQ(decode(" starts with a blank\r\nSubject: y\r\n").body(), " starts with a blank\r\nSubject: y\r\n");
    EXPECT_EQ(decode("Subject: x\r\nNoColon\r\n").body(), "NoColon\r\n");
    EXPECT_EQ(decode("Subject: x\r\nName  rest\r\n").body(), "Name  rest\r\n");
    EXPECT_EQ(decode("Subject: x\r\nNoColonAtEnd").body(), "NoColonAtEnd");
    EXPECT_EQ(decode("\r\nno headers at all\r\n").body(), "no headers at all\r\n");
    const result only_headers = decode("Subject: x\r\nX-A: y");
    EXPECT_EQ(only_headers.header("x-a"), "y");
    EXPECT_EQ(only_headers.body(), "");
}

// --- segmentation ----------------------------------------------------------------------------------------

TEST(mail_decoder, every_split_point_and_byte_at_a_time) {
    expect_split_invariant(nested_message());
    expect_split_invariant(alternative_message());
}

TEST(mail_decoder, random_segmentation) {
    const std::string msg = nested_message();
    const result whole = decode(msg);
    std::mt19937 rng(5);
    for (int iter = 0; iter < 300; ++iter) {
        std::vector<size_t> pieces;
        for (size_t left = msg.size(); left;) {
            const size_t n = std::min<size_t>(left, 1 + rng() % (rng() % 2 ? 8 : 300));
            pieces.push_back(n);
            left -= n;
        }
        ASSERT_EQ(decode(msg, pieces), whole) << "iteration " << iter;
    }
}

// --- bounds and malformed input ------------------------------------------------------------------------

TEST(mail_decoder, body_cap) {
    const std::string msg = headers("Content-Type: multipart/mixed; boundary=z\r\n\r\n") + "--z\r\n\r\n" +
                            ja_text + ja_text + "--z\r\nSubject: " + ew_b("UTF-8", "後の部分") + "\r\n\r\n" + ja_text +
                            "--z--\r\n";
    const std::string full = decode(msg).body();
    const std::string cut = ja_text.substr(0, ja_text.size() - 2);  // the CRLF before a delimiter is its
    ASSERT_EQ(full, ja_text + cut + cut);
    ASSERT_GT(full.size(), 500u);
    for (uint32_t limit : {0u, 1u, 2u, 3u, 4u, 100u, 101u, 102u, 500u, static_cast<uint32_t>(full.size() - 1)}) {
        const result r = decode(msg, limit);
        EXPECT_TRUE(r.truncated) << limit;
        EXPECT_LE(r.body_bytes, limit);
        EXPECT_GE(r.body_bytes + 3, std::min<size_t>(limit, full.size()));  // cut at a character boundary
        EXPECT_EQ(full.substr(0, r.body_bytes), r.body()) << limit;
        EXPECT_EQ(r.header("subject", 1), "後の部分");  // headers go on
    }
    EXPECT_FALSE(decode(msg, static_cast<uint32_t>(full.size())).truncated);
}

// Where the cap cuts depends on the text only, never on where pieces end (found by the
// mail_decoder fuzz target: a piece ending exactly at the cap kept a byte the whole message
// dropped, and a stray continuation byte after ASCII pulled the cut back over the ASCII).
TEST(mail_decoder, body_cap_same_at_every_split) {
    const std::string utf8 = headers("Content-Type: text/plain; charset=utf-8\r\n\r\n") + ja_text;
    const std::string stray = "S?bxxo\x87}xxoo\x87}xxo\x87";   // no header block: all body, decoded as ISO-2022-JP
    for (const std::string& msg : {utf8, stray}) {
        const std::string full = decode(msg).body();
        for (uint32_t limit : {1u, 2u, 3u, 4u, 5u, 16u, 17u, 18u, 31u, 32u, 33u, 100u}) {
            const result whole = decode(msg, limit);
            EXPECT_LE(whole.body_bytes, limit);
            EXPECT_EQ(full.substr(0, whole.body_bytes), whole.body()) << limit;
            EXPECT_EQ(decode(msg, std::vector<size_t>(msg.size(), 1), limit), whole) << "byte at a time, cap " << limit;
            for (size_t k = 0; k <= msg.size(); ++k)
                ASSERT_EQ(decode(msg, {k, msg.size() - k}, limit), whole) << "split at " << k << ", cap " << limit;
        }
    }
    // Valid UTF-8 is cut before a character that does not fit whole, and only then.
    const std::string three = headers("Content-Type: text/plain; charset=utf-8\r\n\r\n") + "ab\xe3\x81\x82" "cd";
    EXPECT_EQ(decode(three, 4).body(), "ab");
    EXPECT_EQ(decode(three, 5).body(), "ab\xe3\x81\x82");
    EXPECT_EQ(decode(stray, 17).body(), "S?bxxo\x87}xxoo\x87}xxo");
}

TEST(mail_decoder, malformed_transfer_encodings) {
    auto body = [](const std::string& cte, const std::string& content) {
        return decode("Content-Transfer-Encoding: " + cte + "\r\n\r\n" + content).body();
    };
    EXPECT_EQ(body("base64", "QUJD=RUY="), "ABCEF");         // padding mid-stream: decoding goes on
    EXPECT_EQ(body("base64", "QU JD\r\n!!R@@UY"), "ABCEF");  // non-alphabet bytes skipped
    EXPECT_EQ(body("base64", "QQ"), "A");                    // no padding
    EXPECT_EQ(body("base64", "Q"), "");
    EXPECT_EQ(body("base64", "!!!!\r\n@@@@"), "");
    EXPECT_EQ(body("quoted-printable", "abc="), "abc");  // soft break at the end
    EXPECT_EQ(body("quoted-printable", "abc=4"), "abc=4");
    EXPECT_EQ(body("quoted-printable", "abc=4\r\nx"), "abc=4\r\nx");
    EXPECT_EQ(body("quoted-printable", "=ZZ=4x="), "=ZZ=4x");
    EXPECT_EQ(body("quoted-printable", "a=\r\n"), "a");
    EXPECT_EQ(body("x-uuencode", "begin 644 x\r\n"), "begin 644 x\r\n");  // unknown: as it is
}

TEST(mail_decoder, missing_boundaries) {
    // multipart without a boundary: shown as text.
    EXPECT_EQ(decode("Content-Type: multipart/mixed\r\n\r\nhello\r\n").body(), "hello\r\n");
    EXPECT_EQ(decode("Content-Type: multipart/mixed; boundary=\"\"\r\n\r\nhello\r\n").body(), "hello\r\n");
    // A boundary that never comes: all preamble.
    const result r = decode("Content-Type: multipart/mixed; boundary=never\r\n\r\nhello\r\n--nev\r\n");
    EXPECT_EQ(r.body(), "");
    EXPECT_EQ(r.parts, 0u);
    // Type without subtype, or nonsense: the default (text/plain).
    EXPECT_EQ(decode("Content-Type: text\r\n\r\nhello\r\n").body(), "hello\r\n");
    EXPECT_EQ(decode("Content-Type: ;;;=\"\r\n\r\nhello\r\n").body(), "hello\r\n");
    EXPECT_EQ(decode("Content-Type: image/gif\r\n\r\nGIF89a\r\n").body(), "");
}

TEST(mail_decoder, boundary_longer_than_70_bytes) {
    const std::string b(100, 'q');
    const result r = decode("Content-Type: multipart/mixed; boundary=\"" + b + "\"\r\n\r\n--" + b +
                            "\r\n\r\none\r\n--" + b + "\r\n\r\ntwo\r\n--" + b + "--\r\n");
    EXPECT_EQ(r.bodies(), (std::vector<std::string>{"one", "two"}));
}

TEST(mail_decoder, deep_nesting_is_bounded) {
    std::string msg, close;
    for (int level = 0; level < 10; ++level) {
        const std::string b = "level" + std::to_string(level);
        msg += "Content-Type: multipart/mixed; boundary=" + b + "\r\n\r\n--" + b + "\r\n";
        if (level < 3) msg += "\r\ntext at level " + std::to_string(level) + "\r\n--" + b + "\r\n";
        close = "\r\n--" + b + "--" + close;
    }
    msg += "\r\ninnermost\r\n" + close + "\r\n";
    const result r = decode(msg);
    EXPECT_TRUE(r.too_deep);
    EXPECT_EQ(r.bodies(), (std::vector<std::string>{"text at level 0", "text at level 1", "text at level 2"}));
    expect_split_invariant(msg);
}

TEST(mail_decoder, huge_header_lines) {
    const std::string big(1 << 20, 'A');
    recorder rec;
    const std::string msg = "Subject: " + big + "\r\nX-Big-Word: " + ew_b("UTF-8", std::string(100000, 'b')) +
                            "\r\n" + std::string(1000, 'N') + ": long name\r\n\r\nbody\r\n";
    const result r = decode(msg, std::vector<size_t>{msg.size()}, mail_default_body_limit, &rec);
    EXPECT_EQ(r.header("subject"), big);
    EXPECT_EQ(r.header("x-big-word"), std::string(100000, 'b'));
    EXPECT_EQ(r.header(std::string(mail_max_header_name, 'n')), "long name");
    EXPECT_EQ(r.body(), "body\r\n");
    EXPECT_GE(rec.header_calls, (big.size() + 100000) / mail_header_chunk);
    EXPECT_EQ(decode(msg, {msg.size() / 3, msg.size() / 3, msg.size() - 2 * (msg.size() / 3)}), r);
}

TEST(mail_decoder, binary_garbage) {
    std::mt19937 rng(11);
    std::string junk(1 << 16, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    for (const std::string& msg :
         {junk, "Subject: " + junk, headers("Content-Transfer-Encoding: base64\r\n\r\n") + junk,
          headers("Content-Type: text/plain; charset=iso-2022-jp\r\n"
                  "Content-Transfer-Encoding: quoted-printable\r\n\r\n") +
              junk,
          headers("Content-Type: text/plain; charset=shift_jis\r\n\r\n") + junk,
          headers("Content-Type: multipart/mixed; boundary=\"\xff\x1b\"\r\n\r\n--\xff\x1b\r\n\r\n") + junk}) {
        recorder rec;
        const result r = decode(msg, std::vector<size_t>{msg.size()}, mail_default_body_limit, &rec);
        EXPECT_LE(rec.output, 3 * msg.size() + 16);
        EXPECT_EQ(decode(msg, std::vector<size_t>{7, msg.size() - 7}), r);
    }
}

TEST(mail_decoder, random_bytes_never_crash) {
    std::mt19937 rng(20240601);
    const std::vector<std::string> tokens = {
        "\r\n", "\n", "\r", " ", "\t", ":", "Subject: ", "Content-Type: ", "multipart/mixed; boundary=", "b",
        "\"b\"", "--b", "--b--", "--", "text/plain; charset=", "iso-2022-jp", "shift_jis", "euc-jp", "utf-8",
        "message/rfc822", "Content-Transfer-Encoding: ", "base64", "quoted-printable", "=?", "?=", "?B?", "?Q?",
        "=?utf-8?B?", "=?iso-2022-jp?B?GyRC", "=", "=3D", "=E3", "=\r\n", "\x1b$B", "\x1b(B", "\x1b(I", "\x1b$(D",
        "\x1b", "$", "(", "QUJD", "////", "\x81", "\x82\xa0", "\x8f", "\xff", "\xe6\x97", ".", "\r\n\r\n"};
    for (int iter = 0; iter < 3000; ++iter) {
        std::string msg;
        for (int n = static_cast<int>(rng() % 60); n > 0; --n) {
            if (rng() % 5 == 0) {
                for (int k = 1 + static_cast<int>(rng() % 6); k > 0; --k) msg += static_cast<char>(rng());
            } else {
                msg += tokens[rng() % tokens.size()];
            }
        }
        std::vector<size_t> pieces;
        for (size_t left = msg.size(); left;) {
            const size_t n = std::min<size_t>(left, 1 + rng() % 9);
            pieces.push_back(n);
            left -= n;
        }
        recorder rec;
        decode(msg, pieces, 1 + rng() % 200, &rec);
        ASSERT_LE(rec.output, 3 * msg.size() + 16) << testing::PrintToString(msg);
        if (iter % 10 == 0) {
            ASSERT_EQ(decode(msg, pieces), decode(msg)) << testing::PrintToString(msg);
        }
    }
}

// The body decoders' fast paths (whole base64 quads, whole =XX escapes, runs of
// ISO-2022-JP / Shift_JIS / EUC-JP characters) against the byte-at-a-time path:
// random bodies of each transfer encoding and Japanese charset, valid and not,
// decode the same whole, byte by byte and in random pieces.
TEST(mail_decoder, random_bodies_fast_and_bytewise_agree) {
    std::mt19937 rng(77);
    const std::vector<std::string> qp_tokens = {
        "abc", " ", "\t", "  \t", "=", "=3D", "=E3=81=82", "=e3=81=82", "=ZZ", "=4", "=\r\n", " =\r\n", "\r\n", " \r\n",
        "\n", "x=", "==", "=20", "=0D=0A", "\xe6\x97\xa5", "\x1b$B", "\x1b(B", "F|K\\", "%F", "\x82\xa0", "\xa4\xa2",
        "\x8f\xb0\xa1", "\x8e\xb1"};
    const std::vector<std::string> raw_tokens = {
        "abc ", "\r\n", "\x1b$B", "\x1b$@", "\x1b(B", "\x1b(J", "\x1b(I", "\x1b$(D", "\x1b$(Q", "\x1b", "\x1b$", "$B",
        "F|K\\8l", "%\"%K", "!!", "-!", "y!", "1", "\x7f", "\x0e", "\x82\xa0", "\x88\x9f", "\x81", "\xfc\xfc", "\xa0",
        "\xa4\xa2", "\xb0\xa1", "\x8e\xb1", "\x8f\xb0\xa1", "\x8f", "\xad\xa1", "\xf5\xa1", "\xe6\x97\xa5", "\xff"};
    const std::vector<std::string> charsets = {"iso-2022-jp", "shift_jis", "euc-jp", "utf-8", "us-ascii"};
    const std::vector<std::string> ctes = {"quoted-printable", "base64", "8bit"};
    for (int iter = 0; iter < 1500; ++iter) {
        const std::string& cte = ctes[rng() % ctes.size()];
        std::string raw;
        for (int n = static_cast<int>(rng() % 80); n > 0; --n) {
            const auto& toks = cte == "quoted-printable" ? qp_tokens : raw_tokens;
            raw += rng() % 7 == 0 ? std::string(1, static_cast<char>(rng())) : toks[rng() % toks.size()];
        }
        const std::string body = cte == "base64" ? base64_lines(raw) + (rng() % 3 == 0 ? "!=QQ" : "") : raw;
        const std::string msg = "Content-Type: text/plain; charset=" + charsets[rng() % charsets.size()] +
                                "\r\nContent-Transfer-Encoding: " + cte + "\r\n\r\n" + body;
        std::vector<size_t> pieces;
        for (size_t left = msg.size(); left;) {
            const size_t n = std::min<size_t>(left, 1 + rng() % (rng() % 2 ? 5 : 200));
            pieces.push_back(n);
            left -= n;
        }
        const result whole = decode(msg);
        ASSERT_EQ(decode(msg, pieces), whole) << testing::PrintToString(msg);
        ASSERT_EQ(decode_bytewise(msg), whole) << testing::PrintToString(msg);
    }
}

// The SIMD kernels (decode_kernels.h) change how fast, never what: long bodies of every transfer
// encoding and Japanese charset, with line breaks, escapes, soft breaks, trailing and inner
// whitespace and junk at random places, decode the same at every instruction-set level, whole
// and in random pieces, and as the scalar code decodes them a byte at a time.
TEST(mail_decoder, simd_levels_agree) {
    std::mt19937 rng(2026);
    const std::vector<std::string> charsets = {"iso-2022-jp", "utf-8", "shift_jis", "euc-jp"};
    for (int iter = 0; iter < 60; ++iter) {
        const std::string& cs = charsets[iter % charsets.size()];
        std::string text;
        while (text.size() < 2000 + rng() % 20000) {
            text += ja_text;
            if (rng() % 3 == 0) text += "A line with  two spaces and a tab\tand trailing blanks \t \r\n";
            if (rng() % 5 == 0) text += std::string(1 + rng() % 100, 'x') + "\r\n";
        }
        const std::string body = cs == "utf-8" ? text : encode(cs == "shift_jis" ? "CP932" : cs == "euc-jp" ? "EUC-JP-MS" : "ISO-2022-JP", text);
        std::string encoded;
        const int cte = iter % 3;
        if (cte == 0) encoded = base64_lines(body);
        else if (cte == 1) encoded = qp(body);
        else encoded = body;
        // Damage: junk bytes, stray '=' and line breaks at random places.
        for (int k = static_cast<int>(rng() % 40); k > 0; --k) {
            static const std::vector<std::string> junk = {"=", "=Z", " ", "  \r\n", " \n", "x\t\n", "\r",
                                                          "\n", "!", "=\r\n", "= \n", "\x1b$B"};
            encoded.insert(rng() % encoded.size(), junk[rng() % junk.size()]);
        }
        const std::string msg = "Content-Type: text/plain; charset=" + cs + "\r\nContent-Transfer-Encoding: " +
                                (cte == 0 ? "base64" : cte == 1 ? "quoted-printable" : "8bit") + "\r\n\r\n" + encoded;
        const uint32_t limit = iter % 2 ? mail_default_body_limit : 1u << 22;  // the cap, or none
        set_simd_limit(simd_level::scalar);
        const result want = decode(msg, std::vector<size_t>(msg.size(), 1), limit);
        for (simd_level l : {simd_level::scalar, simd_level::avx2, simd_level::avx512}) {
            set_simd_limit(l);
            std::vector<size_t> pieces;
            for (size_t left = msg.size(); left;) {
                const size_t n = std::min<size_t>(left, 1 + rng() % 3000);
                pieces.push_back(n);
                left -= n;
            }
            ASSERT_EQ(decode(msg, std::vector<size_t>{msg.size()}, limit), want) << to_string(l) << ", iteration " << iter;
            ASSERT_EQ(decode(msg, pieces, limit), want) << to_string(l) << ", iteration " << iter;
        }
        set_simd_limit(simd_level::avx512);
        ASSERT_GT(want.body_bytes, 1000u);
    }
}

// ISO-2022-JP is converted through a table read once from glibc's EUC-JP-MS converter: every
// JIS X 0208 and JIS X 0212 code and every half-width kana decodes as that converter converts
// the character's EUC-JP form on its own (U+FFFD where it has none).
TEST(mail_decoder, iso2022jp_table_matches_iconv) {
    const iconv_t cd = iconv_open("UTF-8", "EUC-JP-MS");
    ASSERT_NE(cd, reinterpret_cast<iconv_t>(-1));
    auto one = [cd](std::string euc) {
        iconv(cd, nullptr, nullptr, nullptr, nullptr);
        char out[16];
        char* in = euc.data();
        char* o = out;
        size_t il = euc.size(), ol = sizeof out;
        if (iconv(cd, &in, &il, &o, &ol) == static_cast<size_t>(-1) || il != 0) return std::string("\uFFFD");
        return std::string(out, sizeof out - ol);
    };
    std::string jis0208 = "\x1b$B", want0208, jis0212 = "\x1b$(D", want0212, kana = "\x1b(I", wantkana;
    for (int r = 0x21; r <= 0x7e; ++r)
        for (int c = 0x21; c <= 0x7e; ++c) {
            const std::string rc = {static_cast<char>(r), static_cast<char>(c)};
            const std::string euc = {static_cast<char>(r | 0x80), static_cast<char>(c | 0x80)};
            jis0208 += rc;
            want0208 += one(euc);
            jis0212 += rc;
            want0212 += one("\x8f" + euc);
        }
    for (int c = 0x21; c <= 0x5f; ++c) {
        kana += static_cast<char>(c);
        wantkana += one({'\x8e', static_cast<char>(c | 0x80)});
    }
    iconv_close(cd);
    auto body = [](const std::string& text) {
        return decode("Content-Type: text/plain; charset=iso-2022-jp\r\n\r\n" + text + "\x1b(B", 1u << 20).body();
    };
    EXPECT_EQ(body(jis0208), want0208);
    EXPECT_EQ(body(jis0212), want0212);
    EXPECT_EQ(body(kana), wantkana);
    EXPECT_GT(want0208.size(), 3u * 8000);
}

// Shift_JIS and EUC-JP go through tables read once from their glibc converters (iconv for what
// the tables leave): every character those converters accept, all in one body, decodes as iconv
// converts the whole body, whole and in odd-sized pieces (characters split across them).
TEST(mail_decoder, shift_jis_and_euc_jp_tables_match_iconv) {
    for (const char* cs : {"CP932", "EUC-JP-MS"}) {
        const iconv_t cd = iconv_open("UTF-8", cs);
        ASSERT_NE(cd, reinterpret_cast<iconv_t>(-1)) << cs;
        auto ok = [cd](std::string in) {
            iconv(cd, nullptr, nullptr, nullptr, nullptr);
            char out[16];
            char* ip = in.data();
            char* op = out;
            size_t il = in.size(), ol = sizeof out;
            return iconv(cd, &ip, &il, &op, &ol) != static_cast<size_t>(-1) && il == 0;
        };
        std::string text;
        for (int b = 0; b < 256; ++b)
            if (b != '\r' && b != '\n' && ok(std::string(1, static_cast<char>(b)))) text += static_cast<char>(b);
        for (int a = 0x80; a < 256; ++a)
            for (int b = 0x40; b < 256; ++b) {
                const std::string two = {static_cast<char>(a), static_cast<char>(b)};
                if (!ok(std::string(1, static_cast<char>(a))) && ok(two)) text += two;
            }
        std::string want(text.size() * 3, '\0');
        char* ip = text.data();
        char* op = want.data();
        size_t il = text.size(), ol = want.size();
        iconv(cd, nullptr, nullptr, nullptr, nullptr);
        ASSERT_NE(iconv(cd, &ip, &il, &op, &ol), static_cast<size_t>(-1)) << cs;
        want.resize(want.size() - ol);
        iconv_close(cd);
        const std::string msg = std::string("Content-Type: text/plain; charset=") +
                                (cs[0] == 'C' ? "shift_jis" : "euc-jp") + "\r\n\r\n" + text;
        EXPECT_EQ(decode(msg, 1u << 22).body(), want) << cs;
        std::vector<size_t> pieces;
        for (size_t left = msg.size(), k = 1; left; k = k % 13 + 2) {
            pieces.push_back(std::min(left, k));
            left -= pieces.back();
        }
        EXPECT_EQ(decode(msg, pieces, 1u << 22).body(), want) << cs;
        EXPECT_GT(want.size(), 3u * 7000) << cs;
    }
}

TEST(mail_decoder, feed_after_finish_and_reuse) {
    mail_decoder d;
    recorder r;
    const std::string a = "Subject: one\r\n\r\nfirst\r\n";
    d.feed(reinterpret_cast<const uint8_t*>(a.data()), a.size(), r, converters());
    d.feed(nullptr, 0, r, converters());
    d.finish(r, converters());
    d.finish(r, converters());
    EXPECT_TRUE(d.finished());
    d.feed(reinterpret_cast<const uint8_t*>(a.data()), a.size(), r, converters());
    EXPECT_EQ(r.events.size(), 2u);
    d.reset();
    EXPECT_FALSE(d.finished());
    const std::string b = "Subject: two\r\n\r\nsecond\r\n";
    d.feed(reinterpret_cast<const uint8_t*>(b.data()), b.size(), r, converters());
    d.finish(r, converters());
    EXPECT_EQ(r.events, (std::vector<event>{{'H', "subject", "one"},
                                            {'B', "", "first\r\n"},
                                            {'H', "subject", "two"},
                                            {'B', "", "second\r\n"}}));
}

// --- the whole path: SMTP content (dot-stuffing undone) into the decoder ------------------------------------

TEST(mail_decoder, from_smtp_session_content) {
    struct pipeline : smtp_observer {
        mail_decoder d;
        recorder r;
        std::vector<result> messages;
        void on_command(const smtp_command_info&) override {}
        void on_reply(const smtp_reply_info&) override {}
        void on_message_start() override {
            d.reset();
            r = recorder();
        }
        void on_content(const uint8_t* p, size_t n) override { d.feed(p, n, r, converters()); }
        void on_message_end() override {
            d.finish(r, converters());
            messages.push_back({r.events, d.body_bytes(), d.truncated(), d.too_deep(), r.part_boundaries});
        }
    };
    // The body has lines starting with '.', dot-stuffed on the wire.
    const std::string text = ".hidden line\r\n..two dots\r\n" + ja_text;
    const std::string msg = headers("Content-Type: text/plain; charset=ISO-2022-JP\r\n\r\n") +
                            encode("ISO-2022-JP", text);
    std::string wire;
    for (size_t at = 0; at < msg.size();) {
        size_t end = msg.find("\r\n", at);
        end = end == std::string::npos ? msg.size() : end + 2;
        const std::string line = msg.substr(at, end - at);
        wire += (line[0] == '.' ? "." : "") + line;
        at = end;
    }
    const std::string client = "EHLO client.example.com\r\nMAIL FROM:<sender@example.jp>\r\n"
                               "RCPT TO:<user@example.com>\r\nDATA\r\n";
    for (const size_t seg : {size_t{1}, size_t{5}, size_t{1460}}) {
        smtp_session s;
        pipeline p;
        auto feed = [&](bool client_side, const std::string& bytes) {
            for (size_t at = 0; at < bytes.size(); at += seg) {
                const size_t n = std::min(seg, bytes.size() - at);
                const uint8_t* q = guard().place(reinterpret_cast<const uint8_t*>(bytes.data() + at), n);
                if (client_side) {
                    s.feed_client(q, n, p);
                } else {
                    s.feed_server(q, n, p);
                }
            }
        };
        feed(false, "220 mx.example.net\r\n");
        feed(true, client);
        feed(false, "250-mx.example.net\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n354 go\r\n");
        feed(true, wire + ".\r\n");
        feed(false, "250 queued\r\n");
        ASSERT_TRUE(s.inspecting());
        ASSERT_EQ(p.messages.size(), 1u);
        EXPECT_EQ(p.messages[0].body(), text) << "segments of " << seg;
        EXPECT_EQ(p.messages[0].header("subject"), "test");
    }
}

}  // namespace
}  // namespace sekisho
