// Content benchmark: inspected SMTP DATA throughput per core
// against raw Hyperscan and against a std::regex loop with the same rules, in
// one run, plus the memory one inspected message (flow) takes.
//
// What is measured (all on one core, lcore 0 of an EAL without hugepages):
//  (a) inspected: the SMTP parser and the content inspector driven directly,
//      the way mail_tracker drives them (not the packet pipeline: no frames,
//      no flow table, no TCP): per message a fresh smtp_session is fed the
//      server's and the client's bytes in order (220, EHLO, MAIL, RCPT, DATA,
//      354, the DATA content in 1460-byte segments up to ".CRLF", 250), its
//      observer calls content_inspector::message_start / content /
//      message_end (parse, dot-unstuffing, MIME + base64/QP + charset
//      decoding, Hyperscan stream scan of header fields and body, fingerprint,
//      score);
//  (a') the same, the four messages' segments interleaved (one of each in
//      turn, as a worker sees concurrent sessions): each keeps its body
//      stream open in the worker (which keeps content_open_bodies = 16);
//  (a'') the same with more sessions than that (each message sent by
//      16 / 4 + 2 = 6 of them, 24 at once): every segment finds its stream
//      taken, puts the least recently used one away into its message's
//      record and brings its own back (the stream's bytes copied where
//      Hyperscan's streams are flat, else compressed and expanded): the
//      cost of a busier worker's traffic;
//  (b) raw Hyperscan over the same bytes (the issue's baseline): one
//      hs_open_stream on the same body database per message, the DATA bytes
//      exactly as (a) is fed them (headers, encoded body, dot-stuffing, the
//      end marker) scanned in the same 1460-byte segments, hs_close_stream;
//  (b') raw Hyperscan over the decoded bodies (a stricter baseline): the same
//      but over the decoded UTF-8 body text (what (a)'s decoder produces),
//      in 1460-byte chunks: no decoding and no header scanning at all, so
//      (a) can only reach it if decoding and everything else were free;
//  (c) std::regex: every rule compiled as std::regex (ECMAScript, icase where
//      the rule is caseless), std::regex_search of each rule over each whole
//      decoded body (one search per rule per message: a rule scores once);
//  (d) mail_decoder alone (decoding, output discarded);
//  (e) message_fingerprint alone over the decoded bodies, in 1460-byte
//      pieces. With (b') and (d) it splits (a)'s time per DATA byte into
//      decoding, fingerprinting, scanning and the rest (SMTP parser, header
//      fields, the inspector's state and scoring), printed and in the JSON.
// Throughput of all of them is in message bytes (the DATA content as sent,
// i.e. encoded) per second, so they are the time to handle the same
// messages. The corpus: a few generated messages (plain UTF-8 8bit,
// ISO-2022-JP base64, UTF-8 quoted-printable, ASCII 7bit), 24-61 KB each,
// with planted blackwords. Variants are interleaved per repetition; each
// absolute figure is the median of the repetitions, each ratio the median of
// the repetitions' own ratios (inspected over the baseline measured next to
// it, the order alternating), which the noise of a shared machine disturbs
// far less than a ratio of medians.
//
// Self-checks (exit 1 on failure): the rules raw Hyperscan and std::regex
// find in each decoded body are the same set and include the planted ones;
// the inspector's score for each message equals the sum of that set's scores
// and its reported rule ids belong to it; no stream error or overflow.
//
// Memory per inspected flow: the record's documented parts (mail_decoder,
// message_fingerprint, the header value buffer, the body stream as the record
// holds it: its bytes where streams are flat, else compressed, as measured with
// hs_compress_stream mid-message), and the content_inspector table measured
// (rte_malloc + glibc heap) per unit of capacity.
//
// Human-readable lines first; the last line is one JSON object.
// Options: --reps N (default 15)  --min-ms N per variant per repetition (default 120)
//          --only inspected|interleaved|interleaved-many|raw|raw-decoded|decode|fingerprint|regex
//          [--seconds S] [--message NAME]:
//          run that one phase for S seconds (default 5), over the messages whose name
//          contains NAME (default all), and print its rate, for a profiler.
#include <hs/hs.h>
#include <iconv.h>
#include <malloc.h>
#include <rte_malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/compiled_policy.h"
#include "dataplane/inspect/content_inspector.h"
#include "dataplane/inspect/content_rules.h"
#include "dataplane/mime/mail_decoder.h"
#include "dataplane/limits/mail_tracker.h"
#include "dataplane/inspect/message_fingerprint.h"
#include "control/policy/policy.h"
#include "control/policy/policy_compiler.h"
#include "dataplane/smtp/smtp_session.h"
#include "dataplane/worker_counters.h"
#include "bench_support.h"

namespace {

using namespace sekisho;
using clk = std::chrono::steady_clock;

constexpr size_t segment = 1460;

// ------------------------------------------------------------------ rules --

struct rule_def {
    const char* id;
    const char* pattern;
    bool utf8, caseless;
    int score;
};

// Literal and simple-regex blackwords; patterns are both Hyperscan and
// ECMAScript (no classes over multibyte characters).
const std::vector<rule_def>& rule_defs() {
    static const std::vector<rule_def> r = {
        {"ja-deai", "出会い", true, false, 10},
        {"ja-mishodaku", "未承諾広告", true, false, 10},
        {"ja-fukugyo", "副業", true, false, 3},
        {"ja-koshunyu", "高収入", true, false, 4},
        {"ja-sokujitsu", "即日融資", true, false, 6},
        {"ja-tosen", "当選しました", true, false, 5},
        {"ja-kanzen-muryo", "完全無料", true, false, 3},
        {"ja-ima-toroku", "今すぐ登録", true, false, 4},
        {"ja-hitozuma", "人妻", true, false, 8},
        {"ja-kasegeru", "誰でも稼げる", true, false, 5},
        {"ja-mokaru", "必ず儲かる", true, false, 5},
        {"ja-genkin", "現金プレゼント", true, false, 5},
        {"ja-shakkin", "借金帳消し", true, false, 6},
        {"ja-yami", "審査なし", true, false, 6},
        {"ja-bitcoin", "仮想通貨で億", true, false, 6},
        {"ja-toshi", "投資案件", true, false, 4},
        {"ja-kojin", "個人情報を入力", true, false, 5},
        {"ja-account", "アカウントが停止", true, false, 6},
        {"ja-kakunin", "本人確認のため", true, false, 3},
        {"ja-seikyu", "未払い料金", true, false, 5},
        {"ja-saiban", "訴訟を起こします", true, false, 6},
        {"ja-aiken", "セフレ", true, false, 8},
        {"ja-musume", "素人娘", true, false, 8},
        {"ja-bust", "巨乳", true, false, 8},
        {"ja-kin", "闇金", true, false, 6},
        {"ja-pachinko", "パチンコ攻略", true, false, 5},
        {"ja-keiba", "競馬予想", true, false, 4},
        {"ja-loto", "ロト6必勝", true, false, 5},
        {"ja-yasegusuri", "飲むだけで痩せる", true, false, 5},
        {"ja-bando", "バイアグラ", true, false, 7},
        {"en-viagra", "viagra", false, true, 7},
        {"en-cialis", "cialis", false, true, 7},
        {"en-casino", "online casino", false, true, 5},
        {"en-lottery", "lottery winner", false, true, 5},
        {"en-click", "click here now", false, true, 3},
        {"en-unsub", "to unsubscribe reply", false, true, 2},
        {"en-wire", "wire transfer fee", false, true, 5},
        {"en-wallet", "bitcoin wallet", false, true, 4},
        {"en-prince", "nigerian prince", false, true, 9},
        {"en-inherit", "unclaimed inheritance", false, true, 7},
        {"en-pills", "cheap pills", false, true, 6},
        {"en-rolex", "replica rolex", false, true, 6},
        {"en-weight", "lose weight fast", false, true, 4},
        {"en-dating", "hot singles", false, true, 6},
        {"en-crypto", "crypto giveaway", false, true, 6},
        {"en-verify", "verify your account", false, true, 4},
        {"en-suspend", "account suspended", false, true, 4},
        {"en-password", "confirm your password", false, true, 6},
        {"en-refund", "tax refund", false, true, 4},
        {"en-risk", "risk free", false, true, 2},
        {"en-guarantee", "100% guaranteed", false, true, 3},
        {"en-act-now", "act now", false, true, 2},
        {"en-limited", "limited time offer", false, true, 2},
        {"en-winner", "you are a winner", false, true, 5},
        {"en-million", "million dollars", false, true, 4},
        {"re-earn", "earn \\$[0-9]+ (a|per) day", false, true, 4},
        {"re-earn-ja", "(月|日)収[0-9]+万円", true, false, 5},
        {"re-url-tld", "https?://[a-z0-9.-]+\\.(xyz|top|click|loan)/", false, true, 3},
        {"re-phone-ja", "0[789]0-[0-9]{4}-[0-9]{4}", false, false, 2},
        {"re-btc", "\\b[13][a-km-zA-HJ-NP-Z1-9]{25,34}\\b", false, false, 3},
        {"re-percent-off", "[0-9]{2}% off", false, true, 2},
        {"re-free-gift", "free (gift|iphone|ipad)", false, true, 3},
        {"re-meds", "(xanax|valium|tramadol)", false, true, 6},
        {"re-loan", "(payday|instant) loans?", false, true, 4},
        {"re-line-id", "LINE ?ID ?[:：] ?[a-z0-9_]{4,}", true, true, 3},
        {"re-yen", "[0-9]{2,3}万円(を|が)(今すぐ|即日)", true, false, 5},
        {"re-dear", "dear (friend|beneficiary|customer)", false, true, 2},
        {"re-bank", "(bank|atm) (pin|password)", false, true, 6},
        {"re-sex", "(adult|xxx) (video|movie)s?", false, true, 6},
        {"re-click-url", "click (here|below) to (claim|verify)", false, true, 4},
        {"re-ja-muryo", "(無料|タダ)で(登録|入会)", true, false, 4},
        {"re-ja-url", "(今すぐ|こちら)からアクセス", true, false, 3},
        {"re-amazon", "amaz0n|paypa1|app1e", false, true, 7},
        {"re-ja-keisatsu", "(警察|弁護士)に(通報|相談)します", true, false, 4},
        {"re-gift-card", "(itunes|google play|amazon) gift cards?", false, true, 5},
    };
    return r;
}

std::string yaml_quote(const std::string& s) {  // YAML single-quoted scalar
    std::string o = "'";
    for (char c : s) o += c == '\'' ? std::string("''") : std::string(1, c);
    return o + "'";
}

std::string policy_yaml() {
    std::string y = R"(version: 1
ports:
  smtp: [25]
  submission: [587, 465]
subscribers:
  dynamic: [198.51.100.0/24]
inspection:
  max_body_bytes: 1048576
  flows_per_worker: 1024
  message_actions:
    - {score: 10, action: event}
  rules:
    - {id: hdr-subject, pattern: '未承諾広告', flags: [utf8], where: 'header:subject', score: 10}
)";
    for (const auto& r : rule_defs()) {
        y += "    - {id: " + std::string(r.id) + ", pattern: " + yaml_quote(r.pattern) + ", flags: [";
        std::string f;
        if (r.utf8) f += "utf8";
        if (r.caseless) f += std::string(f.empty() ? "" : ", ") + "caseless";
        y += f + "], where: body, score: " + std::to_string(r.score) + "}\n";
    }
    return y;
}

// --------------------------------------------------------------- messages --

std::string to_iso2022jp(const std::string& utf8) {
    iconv_t cd = iconv_open("ISO-2022-JP", "UTF-8");
    if (cd == reinterpret_cast<iconv_t>(-1)) throw std::runtime_error("no ISO-2022-JP converter");
    std::string out(utf8.size() * 3 + 16, '\0');
    char* in = const_cast<char*>(utf8.data());
    size_t inl = utf8.size();
    char* o = out.data();
    size_t ol = out.size();
    if (iconv(cd, &in, &inl, &o, &ol) == static_cast<size_t>(-1) || iconv(cd, nullptr, nullptr, &o, &ol) != 0)
        throw std::runtime_error("text not encodable in ISO-2022-JP");
    iconv_close(cd);
    out.resize(out.size() - ol);
    return out;
}

std::string base64(const std::string& s) {
    static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string o;
    size_t line = 0;
    for (size_t i = 0; i < s.size(); i += 3) {
        const uint32_t a = static_cast<uint8_t>(s[i]);
        const uint32_t b = i + 1 < s.size() ? static_cast<uint8_t>(s[i + 1]) : 0;
        const uint32_t c = i + 2 < s.size() ? static_cast<uint8_t>(s[i + 2]) : 0;
        const uint32_t v = a << 16 | b << 8 | c;
        o += t[v >> 18 & 63];
        o += t[v >> 12 & 63];
        o += i + 1 < s.size() ? t[v >> 6 & 63] : '=';
        o += i + 2 < s.size() ? t[v & 63] : '=';
        if ((line += 4) >= 76) {
            o += "\r\n";
            line = 0;
        }
    }
    if (line) o += "\r\n";
    return o;
}

std::string quoted_printable(const std::string& s) {  // input lines end in \r\n
    std::string o;
    size_t col = 0;
    for (size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') {
            o += "\r\n";
            ++i;
            col = 0;
            continue;
        }
        std::string enc;
        if ((c >= 33 && c <= 126 && c != '=') || c == ' ') {
            enc = std::string(1, static_cast<char>(c));
        } else {
            char b[4];
            std::snprintf(b, sizeof b, "=%02X", c);
            enc = b;
        }
        if (col + enc.size() > 75) {
            o += "=\r\n";
            col = 0;
        }
        o += enc;
        col += enc.size();
    }
    return o;
}

// Filler text in the manner of natural text: words drawn with Zipf frequencies from a generated
// vocabulary (English-like: 3000 words of 1-10 letters, common letters more often; Japanese:
// 1500 words of 1-4 kana and kanji, all of JIS X 0208), in sentences of varied length with
// commas, lines wrapped near 72 bytes. A handful of fixed phrases repeated (as a first version
// of this corpus had) let the branch predictor learn the text: the byte- and word-wise code of
// the inspected path then looked faster than it is on real mail. Rules matching the filler by
// chance are allowed: what is expected is what raw Hyperscan finds (std::regex must agree), the
// planted ones among it.
std::string filler_text(size_t bytes, bool japanese, uint32_t seed, const std::vector<std::string>& plant) {
    std::mt19937 rng(seed);
    std::vector<std::string> vocab;
    if (japanese) {
        std::vector<std::string> pool;
        auto utf8_of = [](uint32_t cp) {
            return std::string{static_cast<char>(0xe0 | cp >> 12), static_cast<char>(0x80 | (cp >> 6 & 0x3f)),
                               static_cast<char>(0x80 | (cp & 0x3f))};
        };
        for (uint32_t cp = 0x3041; cp <= 0x3093; ++cp) pool.push_back(utf8_of(cp));  // hiragana
        for (uint32_t cp = 0x30a1; cp <= 0x30f6; ++cp) pool.push_back(utf8_of(cp));  // katakana
        const std::string kanji = "世話会議資料確認本日打合担当者連絡東京支店大阪工場予定添付査収天気良新企画"
                                  "事録共有明午後時間先再送見積書週来今年月学校電話社員食事品質管理部長課";
        for (size_t i = 0; i + 3 <= kanji.size(); i += 3) pool.push_back(kanji.substr(i, 3));
        for (int i = 0; i < 1500; ++i) {
            std::string w;
            for (size_t n = 1 + rng() % 4; n > 0; --n) w += pool[std::min(rng() % pool.size(), rng() % pool.size())];
            vocab.push_back(w);
        }
    } else {
        const char* letters = "etaoinshrdlcumwfgypbvkjxqz";
        for (int i = 0; i < 3000; ++i) {
            std::string w;
            for (size_t n = 1 + rng() % 10; n > 0; --n) w += letters[std::min(rng() % 26, rng() % 26)];
            vocab.push_back(w);
        }
    }
    std::vector<double> cdf;  // Zipf: the k-th word with weight 1/k
    double sum = 0;
    for (size_t k = 1; k <= vocab.size(); ++k) cdf.push_back(sum += 1.0 / static_cast<double>(k));
    auto word = [&]() -> const std::string& {
        const double u = std::uniform_real_distribution<double>(0, sum)(rng);
        return vocab[std::min<size_t>(static_cast<size_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin()),
                                      vocab.size() - 1)];
    };
    std::string t;
    size_t line = 0, next_plant = 0;
    const size_t plant_every = plant.empty() ? SIZE_MAX : bytes / (plant.size() + 1);
    auto put = [&](const std::string& piece) {
        if (line + piece.size() > 72) {
            t += "\r\n";
            line = 0;
        }
        t += piece;
        line += piece.size();
    };
    while (t.size() < bytes) {
        if (next_plant < plant.size() && t.size() >= plant_every * (next_plant + 1)) put(" " + plant[next_plant++] + " ");
        const size_t words = japanese ? 8 + rng() % 18 : 6 + rng() % 13;
        for (size_t i = 0; i < words; ++i) {
            std::string w = word();
            if (!japanese && i == 0) w[0] = static_cast<char>(w[0] - 'a' + 'A');
            const bool last = i + 1 == words;
            if (japanese) w += last ? "。" : rng() % 6 == 0 ? "、" : "";
            else w += last ? ". " : rng() % 8 == 0 ? ", " : " ";
            put(w);
        }
    }
    while (next_plant < plant.size()) t += " " + plant[next_plant++] + "\r\n";
    return t + "\r\n";
}

struct message {
    std::string name;
    std::string content;        // DATA content as the server stores it (unstuffed)
    std::string wire;           // content dot-stuffed + ".\r\n"
    std::string decoded;        // decoded body text (UTF-8)
    std::set<std::string> planted;
};

std::string dot_stuff(const std::string& c) {
    std::string o;
    bool bol = true;
    for (char ch : c) {
        if (bol && ch == '.') o += '.';
        o += ch;
        bol = ch == '\n';
    }
    return o + ".\r\n";
}

std::vector<message> build_messages() {
    std::vector<message> m;
    const std::string hdr = "From: <sender@example.jp>\r\nTo: <friend@example.net>\r\nMessage-ID: <b@example.jp>\r\n"
                            "Date: Mon, 1 Jul 2024 10:00:00 +0900\r\nMIME-Version: 1.0\r\n";
    {
        message x{"utf8-8bit-48k", "", "", "", {"ja-deai", "ja-fukugyo", "re-earn-ja", "re-phone-ja"}};
        const std::string body = filler_text(48000, true, 1, {"素敵な出会いがあります", "副業で月収50万円", "連絡は090-1234-5678まで"});
        x.content = hdr + "Subject: =?UTF-8?B?" + base64("会議のお知らせ").substr(0, base64("会議のお知らせ").size() - 2) +
                    "?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body;
        m.push_back(x);
    }
    {
        message x{"iso2022jp-base64-32k", "", "", "", {"ja-koshunyu", "ja-hitozuma", "ja-kanzen-muryo"}};
        const std::string body = filler_text(30000, true, 2, {"高収入のお仕事", "人妻と完全無料で"});
        x.content = hdr + "Subject: hello\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n"
                          "Content-Transfer-Encoding: base64\r\n\r\n" + base64(to_iso2022jp(body));
        m.push_back(x);
    }
    {
        message x{"utf8-qp-60k", "", "", "", {"ja-sokujitsu", "ja-shakkin", "en-viagra"}};
        const std::string body = filler_text(20000, true, 3, {"即日融資OK", "借金帳消しの方法", "VIAGRA"});
        x.content = hdr + "Subject: info\r\nContent-Type: text/plain; charset=utf-8\r\n"
                          "Content-Transfer-Encoding: quoted-printable\r\n\r\n" + quoted_printable(body);
        m.push_back(x);
    }
    {
        message x{"ascii-7bit-24k", "", "", "", {"en-prince", "re-earn", "re-url-tld", "en-wallet"}};
        const std::string body = filler_text(24000, false, 4,
                                             {"A Nigerian Prince needs help", "Earn $500 per day",
                                              "see http://promo.example.xyz/ for",
                                              ". your Bitcoin Wallet is ready"});
        x.content = hdr + "Subject: status\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + body;
        m.push_back(x);
    }
    for (auto& x : m) x.wire = dot_stuff(x.content);
    return m;
}

// The decoded body, as the inspector's decoder produces it.
struct collect_sink : mail_decoder_sink {
    std::string body;
    void on_header(std::string_view, const uint8_t*, size_t, bool) override {}
    void on_body(const uint8_t* p, size_t n) override { body.append(reinterpret_cast<const char*>(p), n); }
};

// ------------------------------------------------------------- (a) whole --

struct driver final : smtp_observer {
    content_inspector& ci;
    const compiled_policy& pol;
    smtp_session* s = nullptr;
    flow_key key{};
    uint64_t now = 0;
    message_verdict verdict;
    bool ended = false;
    driver(content_inspector& c, const compiled_policy& p) : ci(c), pol(p) {}
    void on_command(const smtp_command_info&) override {}
    void on_reply(const smtp_reply_info&) override {}
    void on_message_start() override { ci.message_start(pol, key, now, s->sender_hash()); }
    void on_content(const uint8_t* d, size_t n) override { ci.content(pol, key, d, n, now); }
    void on_message_end() override {
        message_context mc;
        mc.now_ns = now;
        mc.recipients = s->message_recipients();
        mc.sender_domain_hash = s->sender_hash();
        mc.helo_ip_literal = s->helo_ip_literal();
        mc.helo_bare_ip = s->helo_bare_ip();
        mc.helo_not_fqdn = s->helo_not_fqdn();
        verdict = ci.message_end(pol, key, mc);
        ended = true;
    }
};

void feed(smtp_session& s, driver& d, bool client, const std::string& b) {
    const auto* p = reinterpret_cast<const uint8_t*>(b.data());
    const size_t n = client ? s.feed_client(p, b.size(), d) : s.feed_server(p, b.size(), d);
    if (n != b.size()) throw std::runtime_error("SMTP session stopped inspecting");
}

// One message's SMTP transaction up to DATA's 354, on a fresh session and flow.
void open_message(smtp_session& s, driver& d, uint32_t flow) {
    d.s = &s;
    d.key = flow_key{};
    d.key.family = 4;
    d.key.subscriber_port = static_cast<uint16_t>(40000 + (flow & 0x3fff));
    d.key.server_port = 25;
    std::memcpy(d.key.subscriber, &flow, 4);
    d.now += 1000;
    d.ended = false;
    feed(s, d, false, "220 mx.example.net ESMTP\r\n");
    feed(s, d, true, "EHLO pc1.example.jp\r\n");
    feed(s, d, false, "250 mx.example.net\r\n");
    feed(s, d, true, "MAIL FROM:<sender@example.jp>\r\n");
    feed(s, d, false, "250 ok\r\n");
    feed(s, d, true, "RCPT TO:<friend@example.net>\r\n");
    feed(s, d, false, "250 ok\r\n");
    feed(s, d, true, "DATA\r\n");
    feed(s, d, false, "354 go ahead\r\n");
}

// Segment `k` of the message's DATA content; false when there is none.
bool data_segment(smtp_session& s, driver& d, const message& m, size_t k) {
    const size_t off = k * segment;
    if (off >= m.wire.size()) return false;
    const size_t n = std::min(segment, m.wire.size() - off);
    if (s.feed_client(reinterpret_cast<const uint8_t*>(m.wire.data()) + off, n, d) != n)
        throw std::runtime_error("SMTP session stopped inspecting in DATA");
    return true;
}

message_verdict close_message(smtp_session& s, driver& d) {
    feed(s, d, false, "250 queued\r\n");
    if (!d.ended) throw std::runtime_error("no end of message");
    return d.verdict;
}

message_verdict inspect(driver& d, const message& m, uint32_t flow) {
    smtp_session s(false);
    open_message(s, d, flow);
    for (size_t k = 0; data_segment(s, d, m, k); ++k) {
    }
    return close_message(s, d);
}

// (a') the same messages at once, one segment of each in turn (as a worker sees concurrent
// sessions): every segment finds the worker's body stream holding another message's, which
// is compressed into its record and this one's expanded, as if no flow's segments ever
// followed each other. One driver per message; verdicts in message order.
// ds.size() sessions at once, session i sending message i % msgs.size(), one segment of each in
// turn.
void inspect_interleaved(std::vector<std::unique_ptr<driver>>& ds, const std::vector<message>& msgs, uint32_t flow,
                         std::vector<message_verdict>& out) {
    std::vector<std::unique_ptr<smtp_session>> ss;
    for (size_t i = 0; i < ds.size(); ++i) {
        ss.push_back(std::make_unique<smtp_session>(false));
        open_message(*ss[i], *ds[i], flow + static_cast<uint32_t>(i));
    }
    bool more = true;
    for (size_t k = 0; more; ++k) {
        more = false;
        for (size_t i = 0; i < ds.size(); ++i) more |= data_segment(*ss[i], *ds[i], msgs[i % msgs.size()], k);
    }
    out.clear();
    for (size_t i = 0; i < ds.size(); ++i) out.push_back(close_message(*ss[i], *ds[i]));
}

// --------------------------------------------------------------- (b) raw --

struct hits {
    std::vector<uint8_t> seen;
};
int raw_match(unsigned id, unsigned long long, unsigned long long, unsigned, void* ctx) {
    static_cast<hits*>(ctx)->seen[id] = 1;
    return 0;
}

void raw_scan(const hs_database_t* db, hs_scratch_t* scratch, const std::string& text, hits& h) {
    hs_stream_t* st = nullptr;
    if (hs_open_stream(db, 0, &st) != HS_SUCCESS) throw std::runtime_error("hs_open_stream");
    for (size_t off = 0; off < text.size(); off += segment)
        hs_scan_stream(st, text.data() + off, static_cast<unsigned>(std::min(segment, text.size() - off)), 0, scratch,
                       raw_match, &h);
    hs_close_stream(st, scratch, raw_match, &h);
}

// --------------------------------------------------- (d) decoding alone --

// Discards what the decoder produces (counts it, so nothing is optimised away).
struct counting_sink final : mail_decoder_sink {
    uint64_t bytes = 0;
    void on_header(std::string_view, const uint8_t*, size_t len, bool) override { bytes += len; }
    void on_body(const uint8_t*, size_t len) override { bytes += len; }
};

// The decoding step of (a) on its own: the DATA content in 1460-byte segments
// through a mail_decoder, nothing scanned or fingerprinted.
uint64_t decode_only(mail_decoder& dec, charset_converters& cv, const message& m, uint32_t max_body) {
    counting_sink cs;
    dec.reset(max_body);
    const auto* p = reinterpret_cast<const uint8_t*>(m.content.data());
    for (size_t off = 0; off < m.content.size(); off += segment)
        dec.feed(p + off, std::min(segment, m.content.size() - off), cs, cv);
    dec.finish(cs, cv);
    return cs.bytes;
}

// ------------------------------------------------------------- memory -----

int64_t mem_now() {
    int64_t m = 0;
    for (unsigned i = 0; i < rte_socket_count(); ++i) {
        rte_malloc_socket_stats s{};
        if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(i), &s) == 0)
            m += static_cast<int64_t>(s.heap_allocsz_bytes);
    }
    const struct mallinfo2 mi = mallinfo2();
    return m + static_cast<int64_t>(mi.uordblks + mi.hblkhd);
}

int64_t inspector_bytes(uint32_t capacity, worker_counters& wc) {
    const int64_t before = mem_now();
    auto ci = std::make_unique<content_inspector>(7, capacity, nullptr, wc);
    return mem_now() - before;
}

// ------------------------------------------------------- the run, step by step --

struct options {
    unsigned reps = 15, min_ms = 120;
    std::string only, only_message;
    double only_seconds = 5;
};

// The command line; false (usage printed) on anything it does not know.
bool parse_options(int argc, char** argv, options& o) {
    static const std::set<std::string> phases = {"inspected", "interleaved", "interleaved-many", "raw", "raw-decoded", "decode", "fingerprint", "regex"};
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--short") o.reps = 3, o.min_ms = 20;  // every self-check; the figures are rough
        else if (a == "--reps" && i + 1 < argc) o.reps = static_cast<unsigned>(std::atoi(argv[++i]));
        else if (a == "--min-ms" && i + 1 < argc) o.min_ms = static_cast<unsigned>(std::atoi(argv[++i]));
        else if (a == "--only" && i + 1 < argc && phases.count(argv[i + 1])) o.only = argv[++i];
        else if (a == "--seconds" && i + 1 < argc) o.only_seconds = std::atof(argv[++i]);
        else if (a == "--message" && i + 1 < argc) o.only_message = argv[++i];
        else {
            std::fprintf(stderr,
                         "usage: %s [--short] [--reps N] [--min-ms N] [--only inspected|interleaved|interleaved-many|raw|raw-decoded|decode|fingerprint|regex "
                         "[--seconds S] [--message NAME]]\n",
                         argv[0]);
            return false;
        }
    }
    if (o.reps == 0) o.reps = 1;
    return true;
}

// The self-checks: a failure is printed at once and fails the run at its end.
struct self_check {
    bool ok = true;
    void fail(const std::string& why) {
        std::fprintf(stderr, "SELF-CHECK FAILED: %s\n", why.c_str());
        ok = false;
    }
};

// The std::regex version of a body rule (same id).
struct rx {
    unsigned id;
    std::regex re;
};

// The rules, the messages decoded once, and what every matcher must find in each.
struct corpus {
    policy pol;
    std::unique_ptr<compiled_policy> cp;
    const content_rule_set* rules = nullptr;
    const hs_database_t* body_db = nullptr;
    unsigned nrules = 0;
    hs_scratch_ptr raw_scratch;
    std::vector<message> msgs;
    charset_converters cv;
    uint64_t wire_bytes = 0, decoded_bytes = 0;
    std::vector<rx> regexes;
    std::vector<std::vector<uint8_t>> expect;   // per message: the rules raw Hyperscan matched
    std::vector<int32_t> expect_score;          // per message: their scores' sum
};

void compile_rules(corpus& c) {
    c.pol = load_policy_text(policy_yaml(), "content_bench");
    c.cp = compile_policy(c.pol, 1, 1);
    c.rules = c.cp->content_rules();
    if (c.rules == nullptr || c.rules->database(content_db::body) == nullptr) throw std::runtime_error("no body rules");
    c.body_db = c.rules->database(content_db::body);
    c.nrules = static_cast<unsigned>(c.rules->rules().size());
    c.raw_scratch = c.rules->alloc_scratch();
}

// Each message's decoded body, which the raw and regex baselines scan.
void decode_corpus(corpus& c, self_check& sc) {
    c.msgs = build_messages();
    c.cv.open_all();
    for (auto& m : c.msgs) {
        mail_decoder dec;
        dec.reset(c.pol.inspection.max_body_bytes);
        collect_sink cs;
        dec.feed(reinterpret_cast<const uint8_t*>(m.content.data()), m.content.size(), cs, c.cv);
        dec.finish(cs, c.cv);
        if (dec.truncated()) sc.fail(m.name + ": decoded body truncated");
        m.decoded = std::move(cs.body);
        c.wire_bytes += m.wire.size();
        c.decoded_bytes += m.decoded.size();
    }
}

// std::regex versions of the same rules (body rules only, same ids).
void build_regexes(corpus& c) {
    for (unsigned id = 0; id < c.nrules; ++id) {
        const content_rule& r = c.rules->rule(id);
        if (r.where != content_target::body) continue;
        auto f = std::regex::ECMAScript | std::regex::optimize;
        if (r.caseless) f |= std::regex::icase;
        c.regexes.push_back({id, std::regex(r.pattern, f)});
    }
}

// Expected: raw Hyperscan's set == regex set, planted rules included. Prints each message.
void expected_hits(corpus& c, self_check& sc) {
    c.expect.assign(c.msgs.size(), {});
    c.expect_score.assign(c.msgs.size(), 0);
    for (size_t i = 0; i < c.msgs.size(); ++i) {
        hits h{std::vector<uint8_t>(c.nrules, 0)};
        raw_scan(c.body_db, c.raw_scratch.get(), c.msgs[i].decoded, h);
        std::vector<uint8_t> rxs(c.nrules, 0);
        for (const auto& r : c.regexes)
            if (std::regex_search(c.msgs[i].decoded, r.re)) rxs[r.id] = 1;
        if (h.seen != rxs) sc.fail(c.msgs[i].name + ": Hyperscan and std::regex matched different rules");
        std::string found;
        for (unsigned id = 0; id < c.nrules; ++id)
            if (h.seen[id]) {
                c.expect_score[i] += c.rules->rule(id).score;
                found += " " + c.rules->rule(id).id;
            }
        for (const auto& p : c.msgs[i].planted) {
            bool hit = false;
            for (unsigned id = 0; id < c.nrules; ++id) hit |= h.seen[id] && c.rules->rule(id).id == p;
            if (!hit) sc.fail(c.msgs[i].name + ": planted rule " + p + " not matched");
        }
        c.expect[i] = std::move(h.seen);
        std::printf("message %-22s %6zu bytes DATA, %6zu decoded; rules:%s (score %d)\n", c.msgs[i].name.c_str(),
                    c.msgs[i].wire.size(), c.msgs[i].decoded.size(), found.c_str(), c.expect_score[i]);
    }
}

// Memory per inspected flow: the record's parts; the compressed body stream measured mid-message.
struct memory_figures {
    size_t compressed_max = 0, flat_bytes = 0, stream_held = 0, bytes_per_flow = 0;
    double table_per_flow = 0;
};

memory_figures measure_memory(const corpus& c, worker_counters& wc) {
    memory_figures f;
    hs_scratch_t* sc = c.raw_scratch.get();
    for (const auto& m : c.msgs) {
        hs_stream_t* st = nullptr;
        hs_open_stream(c.body_db, 0, &st);
        hits h{std::vector<uint8_t>(c.nrules, 0)};
        hs_scan_stream(st, m.decoded.data(), static_cast<unsigned>(m.decoded.size() / 2), 0, sc, raw_match, &h);
        size_t used = 0;
        std::vector<char> buf(65536);
        if (hs_compress_stream(st, buf.data(), buf.size(), &used) == HS_SUCCESS)
            f.compressed_max = std::max(f.compressed_max, used);
        hs_close_stream(st, sc, nullptr, nullptr);
    }
    const int64_t small = inspector_bytes(1024, wc), large = inspector_bytes(1024 + 16384, wc);
    f.table_per_flow = static_cast<double>(large - small) / 16384;
    const size_t parts = sizeof(mail_decoder) + sizeof(message_fingerprint) + inspection_header_value_max;
    const content_scan_state* ws = c.cp->scan_states() ? c.cp->scan_states()->for_worker(0) : nullptr;
    f.flat_bytes = ws ? ws->body_flat_bytes : 0;
    f.stream_held = f.flat_bytes ? f.flat_bytes : f.compressed_max;  // the body stream in a record
    f.bytes_per_flow = parts + f.stream_held;
    return f;
}

// One pass over the corpus of each phase; each returns the DATA bytes it handled. The
// inspected passes check the inspector's verdict on every message.
struct passes {
    corpus& c;
    self_check& sc;
    worker_counters& wc;
    content_inspector ci;
    driver d;
    // Sessions of the interleaved passes: one per message (fewer than the worker keeps body
    // streams open), and each message from `copies` sessions, more than it keeps open.
    std::vector<std::unique_ptr<driver>> ds, ds_many;
    std::vector<message_verdict> verdicts;
    uint32_t flow = 0;
    hits h;
    mail_decoder bench_decoder;
    message_fingerprint bench_fingerprint;
    uint64_t sink = 0;   // what the passes produce, printed so that nothing is optimised away

    passes(corpus& co, self_check& s, worker_counters& w)
        : c(co), sc(s), wc(w), ci(0, co.pol.inspection.flows_per_worker, nullptr, w), d(ci, *co.cp),
          h{std::vector<uint8_t>(co.nrules, 0)} {
        const size_t copies = content_open_bodies / c.msgs.size() + 2;
        for (size_t i = 0; i < c.msgs.size(); ++i) ds.push_back(std::make_unique<driver>(ci, *c.cp));
        for (size_t i = 0; i < copies * c.msgs.size(); ++i) ds_many.push_back(std::make_unique<driver>(ci, *c.cp));
    }

    // The inspector's verdict on message i: the expected score, only expected rules.
    void check(size_t i, const message_verdict& v, const char* pass) {
        if (v.score != c.expect_score[i])
            sc.fail(c.msgs[i].name + ": inspector score " + std::to_string(v.score) + " != " +
                    std::to_string(c.expect_score[i]) + pass);
        for (unsigned k = 0; k < v.rule_count; ++k)
            if (!c.expect[i][v.rules[k]]) sc.fail(c.msgs[i].name + ": inspector reported an unexpected rule" + pass);
    }
    uint64_t inspected() {
        uint64_t bytes = 0;
        for (size_t i = 0; i < c.msgs.size(); ++i) {
            check(i, inspect(d, c.msgs[i], flow++), "");
            bytes += c.msgs[i].wire.size();
        }
        return bytes;
    }
    uint64_t interleaved_in(std::vector<std::unique_ptr<driver>>& sessions, const char* what) {
        inspect_interleaved(sessions, c.msgs, flow, verdicts);
        flow += static_cast<uint32_t>(sessions.size());
        uint64_t bytes = 0;
        for (size_t i = 0; i < sessions.size(); ++i) {
            check(i % c.msgs.size(), verdicts[i], what);
            bytes += c.msgs[i % c.msgs.size()].wire.size();
        }
        return bytes;
    }
    uint64_t interleaved() { return interleaved_in(ds, " (interleaved)"); }
    uint64_t interleaved_many() {
        return interleaved_in(ds_many, " (interleaved, more sessions than open streams)");
    }
    // Raw Hyperscan over each message's `text` (counted in DATA bytes, as every pass is).
    uint64_t raw_over(std::string message::*text) {
        uint64_t bytes = 0;
        for (const auto& m : c.msgs) {
            raw_scan(c.body_db, c.raw_scratch.get(), m.*text, h);
            bytes += m.wire.size();
        }
        return bytes;
    }
    uint64_t raw() { return raw_over(&message::wire); }  // the DATA bytes as (a) is fed them
    uint64_t raw_decoded() { return raw_over(&message::decoded); }
    uint64_t decode() {
        uint64_t bytes = 0;
        for (const auto& m : c.msgs) {
            sink += decode_only(bench_decoder, c.cv, m, c.pol.inspection.max_body_bytes);
            bytes += m.wire.size();
        }
        return bytes;
    }
    // The fingerprint alone over the decoded bodies, fed as the decoder hands them on.
    uint64_t fingerprint() {
        uint64_t bytes = 0;
        for (const auto& m : c.msgs) {
            bench_fingerprint.reset();
            const auto* p = reinterpret_cast<const uint8_t*>(m.decoded.data());
            for (size_t off = 0; off < m.decoded.size(); off += segment)
                bench_fingerprint.feed(p + off, std::min(segment, m.decoded.size() - off));
            sink += bench_fingerprint.fingerprint();
            bytes += m.wire.size();
        }
        return bytes;
    }
    uint64_t regex() {
        uint64_t bytes = 0;
        for (const auto& m : c.msgs) {
            for (const auto& r : c.regexes) sink += std::regex_search(m.decoded, r.re);
            bytes += m.wire.size();
        }
        return bytes;
    }
};

// Gbps of DATA bytes of repeated passes for at least `min_t`.
template <class Pass>
double rate(Pass&& pass, std::chrono::duration<double> min_t) {
    uint64_t bytes = 0;
    const auto t0 = clk::now();
    do bytes += pass();
    while (clk::now() - t0 < min_t);
    return bytes * 8 / std::chrono::duration<double>(clk::now() - t0).count() / 1e9;
}

// --only: one phase for a while (for a profiler), on the messages whose name has --message.
void run_only(passes& ps, corpus& c, const options& o) {
    const std::chrono::duration<double> t(o.only_seconds);
    for (size_t i = c.msgs.size(); i-- > 0;)
        if (c.msgs[i].name.find(o.only_message) == std::string::npos) {
            c.msgs.erase(c.msgs.begin() + static_cast<long>(i));
            c.expect.erase(c.expect.begin() + static_cast<long>(i));
            c.expect_score.erase(c.expect_score.begin() + static_cast<long>(i));
        }
    const std::string& only = o.only;
    const double g = only == "inspected"     ? rate([&] { return ps.inspected(); }, t)
                     : only == "interleaved" ? rate([&] { return ps.interleaved(); }, t)
                     : only == "interleaved-many" ? rate([&] { return ps.interleaved_many(); }, t)
                     : only == "raw"         ? rate([&] { return ps.raw(); }, t)
                     : only == "raw-decoded" ? rate([&] { return ps.raw_decoded(); }, t)
                     : only == "decode"      ? rate([&] { return ps.decode(); }, t)
                     : only == "fingerprint" ? rate([&] { return ps.fingerprint(); }, t)
                                             : rate([&] { return ps.regex(); }, t);
    std::printf("%s: %.3f Gbps of DATA bytes (%.1f s)%s\n", only.c_str(), g, o.only_seconds,
                ps.sink == 0 ? " " : "");
}

// Every repetition's figure of each phase, and the paired ratios.
struct repeated_figures {
    std::vector<double> g_whole, g_raw, g_raw_decoded, g_regex, g_decode, g_fingerprint, g_interleaved, g_many;
    std::vector<double> r_raw, r_raw_decoded, r_regex, r_interleaved, r_many;
};

// Ratios are paired: each repetition's inspected figure over the baseline measured next to it
// (the order alternating), then the median of those. On a shared, noisy machine (a VM:
// neighbours come and go) two figures taken moments apart see the same conditions; medians of
// figures taken seconds apart did not (ratio_raw 0.57-0.76 over runs of the same build).
repeated_figures measure_repeated(passes& ps, const options& o) {
    const auto min_t = std::chrono::milliseconds(o.min_ms);
    repeated_figures f;
    for (unsigned rep = 0; rep < o.reps; ++rep) {
        const bool raw_first = rep % 2 == 1;
        if (raw_first) f.g_raw.push_back(rate([&] { return ps.raw(); }, min_t));
        f.g_whole.push_back(rate([&] { return ps.inspected(); }, min_t));
        if (!raw_first) f.g_raw.push_back(rate([&] { return ps.raw(); }, min_t));
        f.g_interleaved.push_back(rate([&] { return ps.interleaved(); }, min_t));
        f.r_interleaved.push_back(f.g_interleaved.back() / f.g_raw.back());
        f.g_many.push_back(rate([&] { return ps.interleaved_many(); }, min_t));
        f.r_many.push_back(f.g_many.back() / f.g_raw.back());
        f.g_raw_decoded.push_back(rate([&] { return ps.raw_decoded(); }, min_t));
        f.g_decode.push_back(rate([&] { return ps.decode(); }, min_t));
        f.g_fingerprint.push_back(rate([&] { return ps.fingerprint(); }, min_t));
        f.g_regex.push_back(rate([&] { return ps.regex(); }, min_t));
        f.r_raw.push_back(f.g_whole.back() / f.g_raw.back());
        f.r_raw_decoded.push_back(f.g_whole.back() / f.g_raw_decoded.back());
        f.r_regex.push_back(f.g_whole.back() / f.g_regex.back());
    }
    return f;
}

// Per message kind: where the corpus figure comes from. Paired as above, 5 repetitions of 40 ms
// per variant: noisier than the corpus figures. Prints a line per kind; returns their JSON.
std::string measure_kinds(passes& ps) {
    const corpus& c = ps.c;
    std::string kinds_json;
    for (size_t i = 0; i < c.msgs.size(); ++i) {
        const std::chrono::milliseconds t(40);
        const message& m = c.msgs[i];
        auto raw_one = [&] {
            raw_scan(c.body_db, c.raw_scratch.get(), m.wire, ps.h);
            return m.wire.size();
        };
        std::vector<double> ga, gb, gc, ra;
        for (unsigned rep = 0; rep < 5; ++rep) {
            const bool raw_first = rep % 2 == 1;
            if (raw_first) gb.push_back(rate(raw_one, t));
            ga.push_back(rate([&] { inspect(ps.d, m, ps.flow++); return m.wire.size(); }, t));
            if (!raw_first) gb.push_back(rate(raw_one, t));
            gc.push_back(rate([&] { raw_scan(c.body_db, c.raw_scratch.get(), m.decoded, ps.h); return m.wire.size(); }, t));
            ra.push_back(ga.back() / gb.back());
        }
        const double a = bench::median(ga), b = bench::median(gb), cc = bench::median(gc), r = bench::median(ra);
        std::printf("  %-22s inspected %7.3f Gbps, raw %7.3f, raw over decoded %7.3f Gbps (DATA bytes); "
                    "inspected/raw %.3f\n",
                    m.name.c_str(), a, b, cc, r);
        char one[256];
        std::snprintf(one, sizeof one, "%s{\"name\":\"%s\",\"data_bytes\":%zu,\"gbps_inspected\":%.4f,\"gbps_raw\":%.4f,"
                      "\"ratio_raw\":%.4f}",
                      i ? "," : "", bench::json_escape(m.name).c_str(), m.wire.size(), a, b, r);
        kinds_json += one;
    }
    return kinds_json;
}

// The medians of the repetitions, and what follows from them.
struct summary {
    double whole, raw, raw_decoded, regex, decode, fingerprint;
    double t_whole, t_decode, t_fingerprint, t_scan, t_rest;   // time per DATA byte
    double ceiling;
    double ratio_raw, ratio_raw_decoded, ratio_regex, ratio_raw_lo, ratio_raw_hi;
    double interleaved, ratio_interleaved, many, ratio_many;
};

summary summarize(const repeated_figures& f) {
    summary s;
    s.whole = bench::median(f.g_whole);
    s.raw = bench::median(f.g_raw);
    s.raw_decoded = bench::median(f.g_raw_decoded);
    s.regex = bench::median(f.g_regex);
    s.decode = bench::median(f.g_decode);
    s.fingerprint = bench::median(f.g_fingerprint);
    // Where the inspected path's time goes, per DATA byte, from the parts timed alone in the
    // same run: decoding, fingerprinting and scanning the decoded text are each needed; the
    // rest is the SMTP parser, header fields, the inspector's state and scoring.
    s.t_whole = 1 / s.whole;
    s.t_decode = 1 / s.decode;
    s.t_fingerprint = 1 / s.fingerprint;
    s.t_scan = 1 / s.raw_decoded;
    s.t_rest = s.t_whole - s.t_decode - s.t_fingerprint - s.t_scan;
    // Decoding and scanning the decoded text are both needed per byte: even if nothing else
    // cost anything, the inspected path could reach at most raw_decoded / (raw_decoded +
    // decode time) of raw Hyperscan over the decoded text.
    s.ceiling = 1 / (1 + s.raw_decoded / s.decode);
    s.ratio_raw = bench::median(f.r_raw);
    s.ratio_raw_decoded = bench::median(f.r_raw_decoded);
    s.ratio_regex = bench::median(f.r_regex);
    const auto [lo, hi] = std::minmax_element(f.r_raw.begin(), f.r_raw.end());
    s.ratio_raw_lo = *lo;
    s.ratio_raw_hi = *hi;
    s.interleaved = bench::median(f.g_interleaved);
    s.ratio_interleaved = bench::median(f.r_interleaved);
    s.many = bench::median(f.g_many);
    s.ratio_many = bench::median(f.r_many);
    return s;
}

void print_throughput(const corpus& c, const passes& ps, const repeated_figures& f, const summary& s,
                      unsigned reps) {
    std::printf("corpus: %zu messages, %lu DATA bytes, %lu decoded body bytes; %u rules (%zu body); %u reps\n",
                c.msgs.size(), static_cast<unsigned long>(c.wire_bytes), static_cast<unsigned long>(c.decoded_bytes),
                c.nrules, c.regexes.size(), reps);
    std::printf("inspected (smtp_session + content_inspector, 1460 B segments): %8.3f Gbps  (spread %.0f%%)\n",
                s.whole, 100 * bench::spread(f.g_whole));
    std::printf("inspected, the %zu messages' segments interleaved:             %8.3f Gbps  (spread %.0f%%)\n",
                c.msgs.size(), s.interleaved, 100 * bench::spread(f.g_interleaved));
    std::printf("inspected, %zu sessions interleaved (> %u open body streams):  %8.3f Gbps  (spread %.0f%%)\n",
                ps.ds_many.size(), content_open_bodies, s.many, 100 * bench::spread(f.g_many));
    std::printf("raw hs_scan_stream over the same DATA bytes, 1460 B segments:  %8.3f Gbps  (spread %.0f%%)\n",
                s.raw, 100 * bench::spread(f.g_raw));
    std::printf("raw hs_scan_stream over the decoded bodies, 1460 B chunks:     %8.3f Gbps  (spread %.0f%%)\n",
                s.raw_decoded, 100 * bench::spread(f.g_raw_decoded));
    std::printf("std::regex_search loop (decoded body, per rule):               %8.4f Gbps  (spread %.0f%%)\n",
                s.regex, 100 * bench::spread(f.g_regex));
    std::printf("mail_decoder alone (no scan, no fingerprint, 1460 B segments): %8.3f Gbps  (spread %.0f%%)\n",
                s.decode, 100 * bench::spread(f.g_decode));
    std::printf("message_fingerprint alone (decoded bodies, 1460 B pieces):     %8.3f Gbps  (spread %.0f%%)\n",
                s.fingerprint, 100 * bench::spread(f.g_fingerprint));
    std::printf("  inspected time per DATA byte, by the parts timed alone: decode %.0f%%, fingerprint %.0f%%, "
                "scan of the decoded text %.0f%%, the rest (SMTP parser, header fields, state, score) %.0f%%\n",
                100 * s.t_decode / s.t_whole, 100 * s.t_fingerprint / s.t_whole, 100 * s.t_scan / s.t_whole,
                100 * s.t_rest / s.t_whole);
    std::printf("  (Gbps of SMTP DATA bytes as sent; raw Hyperscan over decoded text in decoded bytes: %.3f Gbps)\n",
                s.raw_decoded * static_cast<double>(c.decoded_bytes) / static_cast<double>(c.wire_bytes));
}

void print_ratios_and_memory(const corpus& c, const passes& ps, const summary& s, const memory_figures& mem) {
    std::printf("ratio inspected/raw over the same bytes %.3f (goal >= 0.7; paired per repetition, range "
                "%.3f-%.3f), inspected/regex %.1fx (goal >= 10)\n",
                s.ratio_raw, s.ratio_raw_lo, s.ratio_raw_hi, s.ratio_regex);
    std::printf("ratio inspected/raw with the messages interleaved (each keeps its open body stream) %.3f; with "
                "%zu sessions interleaved (a body stream put away and another brought back every segment: %lu "
                "evictions in the run) %.3f\n",
                s.ratio_interleaved, ps.ds_many.size(),
                static_cast<unsigned long>(ps.wc.inspection.body_evictions.load()), s.ratio_many);
    std::printf("ratio inspected/raw over the decoded bodies %.3f; its ceiling with decoding as measured "
                "(raw / (raw + decode) time) %.3f, reached to %.0f%%\n",
                s.ratio_raw_decoded, s.ceiling, 100 * s.ratio_raw_decoded / s.ceiling);
    std::printf("per inspected flow: mail_decoder %zu + fingerprint %zu + header %zu + body stream %zu (%s; "
                "state %zu bytes, compressed %zu) = %zu bytes; table measured %.0f bytes per unit of capacity\n",
                sizeof(mail_decoder), sizeof(message_fingerprint), inspection_header_value_max, mem.stream_held,
                mem.flat_bytes ? "its bytes: flat streams" : "compressed", c.rules->stream_size(content_db::body),
                mem.compressed_max, mem.bytes_per_flow, mem.table_per_flow);
}

// The figures as one JSON line, for scripts.
void print_json(const corpus& c, const passes& ps, const summary& s, const memory_figures& mem,
                const std::string& kinds_json, unsigned reps, bool ok) {
    const std::string cpu = bench::cpu_model();
    std::printf("{\"bench\":\"content\",\"gbps_inspected\":%.4f,\"gbps_raw_hyperscan\":%.4f,"
                "\"gbps_raw_hyperscan_decoded\":%.4f,\"gbps_regex\":%.5f,\"gbps_decode_only\":%.4f,"
                "\"gbps_fingerprint_only\":%.4f,\"share_decode\":%.3f,\"share_fingerprint\":%.3f,"
                "\"share_scan\":%.3f,\"share_rest\":%.3f,"
                "\"ratio_raw\":%.4f,\"ratio_raw_min\":%.4f,\"ratio_raw_max\":%.4f,"
                "\"gbps_inspected_interleaved\":%.4f,\"ratio_raw_interleaved\":%.4f,"
                "\"sessions_interleaved_many\":%zu,\"gbps_inspected_interleaved_many\":%.4f,"
                "\"ratio_raw_interleaved_many\":%.4f,"
                "\"ratio_raw_decoded\":%.4f,\"ratio_decoded_ceiling\":%.4f,"
                "\"ratio_regex\":%.2f,\"bytes_per_flow\":%zu,\"table_bytes_per_flow\":%.0f,"
                "\"body_stream_bytes\":%zu,\"body_stream_compressed\":%zu,\"body_stream_flat\":%s,\"rules\":%u,\"messages\":%zu,"
                "\"data_bytes\":%lu,\"decoded_bytes\":%lu,\"reps\":%u,\"kinds\":[%s],\"self_check\":%s,"
                "\"cpu\":\"%s\"}\n",
                s.whole, s.raw, s.raw_decoded, s.regex, s.decode, s.fingerprint, s.t_decode / s.t_whole,
                s.t_fingerprint / s.t_whole, s.t_scan / s.t_whole, s.t_rest / s.t_whole, s.ratio_raw, s.ratio_raw_lo,
                s.ratio_raw_hi, s.interleaved, s.ratio_interleaved, ps.ds_many.size(), s.many, s.ratio_many,
                s.ratio_raw_decoded, s.ceiling, s.ratio_regex, mem.bytes_per_flow, mem.table_per_flow,
                c.rules->stream_size(content_db::body), mem.compressed_max, mem.flat_bytes ? "true" : "false",
                c.nrules, c.msgs.size(), static_cast<unsigned long>(c.wire_bytes),
                static_cast<unsigned long>(c.decoded_bytes), reps, kinds_json.c_str(), ok ? "true" : "false",
                bench::json_escape(cpu).c_str());
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    if (!parse_options(argc, argv, o)) return 2;
    return bench::run_on_eal("content_bench", bench::init_eal(argv[0], 512), [&] {
        self_check sc;
        corpus c;
        compile_rules(c);
        decode_corpus(c, sc);
        build_regexes(c);
        expected_hits(c, sc);
        worker_counters wc{};
        const memory_figures mem = measure_memory(c, wc);
        passes ps(c, sc, wc);
        if (!o.only.empty()) {
            run_only(ps, c, o);
            return sc.ok ? 0 : 1;
        }
        const repeated_figures f = measure_repeated(ps, o);
        const std::string kinds_json = measure_kinds(ps);
        if (wc.inspection.stream_errors.load() || wc.inspection.stream_overflow.load() ||
            wc.inspection.table_full.load())
            sc.fail("inspector stream error, overflow or full table");
        const summary s = summarize(f);
        print_throughput(c, ps, f, s, o.reps);
        print_ratios_and_memory(c, ps, s, mem);
        std::printf("self-check: %s\n", sc.ok ? "ok" : "FAILED");
        if (ps.sink == 0) std::printf(" \n");
        print_json(c, ps, s, mem, kinds_json, o.reps, sc.ok);
        return sc.ok ? 0 : 1;
    });
}
