// A fingerprint of a message body that survives the small per-recipient
// changes of a bulk campaign: the recipient's name in the
// greeting, a tracking number or token in a link, a date, an order number.
//
// Fed the decoded body as UTF-8 text (after MIME, transfer-encoding and
// charset decoding) in pieces split anywhere; the result does not depend on
// the split. Fixed state (sizeof <= 128 bytes, checked below; no text is
// kept, only hashes), no allocation: it can live in a per-flow record. A zero-filled object is a
// valid empty fingerprint.
//
// 1. Normalisation, byte by byte, into a stream of 32-bit token hashes:
//    - words: runs of ASCII letters and digits (plus Latin-1/Latin Extended,
//      Greek and Cyrillic letters), ASCII lowercased (and Latin-1 capitals),
//      hashed polynomially mod 2^32 (h * K + byte: the same value read byte
//      by byte across pieces or, for plain ASCII words of up to 16 bytes, by
//      an AVX2 kernel from all the word's bytes at once, 32 bytes of text at a
//      time; where the CPU has no AVX2 the byte loop reads everything);
//      . , - _ ' + % join two word characters ("e-mail", "1,000", "o'clock")
//      and are dropped at a word's ends ("end." is "end");
//    - a word containing any digit is the one token `#`: numbers, dates,
//      times, order numbers, prices, mixed codes like A7X9K2 all look alike;
//      a word longer than 40 bytes is the one token `~` (blobs, random ids);
//    - http:// and https:// URLs keep only their host (digit runs in it
//      collapsed to `#`); path, query and fragment are dropped, so per-
//      recipient tracking paths and parameters do not matter;
//    - an e-mail address keeps only its domain (the local part, which often
//      names the recipient, is dropped);
//    - any other code point (kana, kanji, hangul, other scripts, symbols,
//      emoji) is a token by itself (the code point, offset: the shingle hash
//      does the mixing): Japanese has no spaces, characters shingle well;
//    - full-width ASCII (U+FF01-U+FF5E) is read as ASCII (１２３ is 123);
//      zero-width characters, soft hyphens and variation selectors (used to
//      break up words against filters) are ignored; whitespace, ASCII and
//      CJK punctuation separate tokens and are otherwise dropped; invalid
//      UTF-8 separates;
//    - a first line (the first that has tokens) of at most
//      fingerprint_lead_tokens = 6 tokens is dropped when at least
//      fingerprint_greeting_rest = 24 tokens follow it: that is the greeting
//      ("Dear Taro Yamada,", "山田太郎様", "Hello Mr. Bob Example,"), the most
//      common personalisation. A longer first line is text and kept; so is a
//      short one followed by little (else "See you at 5\n" + a signature
//      would be the signature alone, the same for everyone).
// 2. Shingles: every run of fingerprint_shingle_tokens = 3 consecutive tokens,
//    hashed to 64 bits (a message shorter than that: one shingle of what it
//    has): the splitmix64 finaliser of each of its two token pairs, the
//    second rotated by 32 bits, xored. Tokens coming one at a time, each pair
//    is hashed once and serves two shingles: two multiplies a token. (Measured
//    against an ideal random hash of the triple over generated text: the same
//    similarity and fingerprint agreement statistics.)
// 3. Signature: one-permutation MinHash (Li, Owen, Zhang 2012) with 16 bins:
//    the top 4 bits of a shingle's hash pick a bin, which keeps the largest
//    32-bit rest seen (a max-hash: 0 means empty, so zeroed state is fresh).
//    One hash per shingle whatever the number of bins. Empty bins (messages
//    of fewer than ~50 shingles) are filled by rotation densification
//    (Shrivastava & Li 2014) when the signature is read. The fraction of
//    equal bins of two signatures estimates the Jaccard similarity J of their
//    shingle sets (standard error sqrt(J(1-J)/16), about 0.06 at J = 0.9).
// 4. Fingerprint (for exact-match counting, campaign_table): a 64-bit hash of
//    one LSH band, the first fingerprint_band_bins = 4 bins. Two messages get
//    the same fingerprint with probability about J^4. Variants that differ
//    only in numbers, links' paths and queries, addresses' local parts or
//    the greeting line normalise to the same tokens and always share it. A
//    name elsewhere in the text changes 2-3 shingles per name token: on a
//    100-token message J ~ 0.95 and 0.95^4 = 0.8 of the variants share the
//    fingerprint (the tests measure 0.8-1.0 on generated campaigns), while
//    unrelated messages sharing only boilerplate (a footer, "Sent from my
//    phone": J <= 0.1) practically never do (<= 1e-4; none among 500k pairs
//    in the tests; with one bin instead of four, 0.4% of those pairs
//    collided). So counting undercounts a campaign by a fraction 1 - J^4
//    (some variants land elsewhere) but does not merge unrelated mail: a
//    threshold is reached a little later, not falsely.
//    Messages of fewer than fingerprint_min_tokens = 8 tokens get no
//    fingerprint (0): too little text to tell bulk from a short reply.
//
// 5. Sample: only the first fingerprint_max_tokens = 1024 shingled tokens are
//    read (about 6 KB of English, 3 KB of Japanese; more than the whole text
//    of most spam). The 16-bin signature is no more precise with more
//    shingles; the bound caps the per-message work (every byte was half the
//    inspected path's time) and makes a random tail appended to bust hashes
//    irrelevant. feed() returns at once after it; tokens() saturates there.
//
// The hash seeds are fixed, so every worker, every gateway and a replay
// compute the same fingerprint for the same text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace sekisho {

constexpr unsigned fingerprint_bins = 16;
constexpr unsigned fingerprint_shingle_tokens = 3;
constexpr unsigned fingerprint_band_bins = 4;
constexpr uint32_t fingerprint_min_tokens = 8;
constexpr unsigned fingerprint_lead_tokens = 6;
constexpr uint32_t fingerprint_greeting_rest = 24;
constexpr uint32_t fingerprint_max_tokens = 1024;

// A densified MinHash signature: compare two with similarity().
struct message_signature {
    uint32_t bin[fingerprint_bins] = {};  // all 0: no token at all
    bool empty() const { return bin[0] == 0; }
};

// Estimated Jaccard similarity of the two messages' shingle sets, in [0, 1]:
// the fraction of equal bins. 0 if either is empty.
double similarity(const message_signature& a, const message_signature& b);
unsigned matching_bins(const message_signature& a, const message_signature& b);

class message_fingerprint {
public:
    void reset() { *this = message_fingerprint(); }

    void feed(const uint8_t* data, size_t len);
    void feed(std::string_view text) { feed(reinterpret_cast<const uint8_t*>(text.data()), text.size()); }

    // Normalised tokens shingled if the message ended here (a dropped greeting
    // line not counted).
    uint32_t tokens() const;

    // Read at any time (end of message, usually); feeding may go on after.
    message_signature signature() const;
    // 0 when the message has fewer than fingerprint_min_tokens tokens; never 0 otherwise.
    uint64_t fingerprint() const;
    // The band hash of a signature (what fingerprint() returns for enough tokens).
    static uint64_t band_hash(const message_signature& s);

private:
    enum class mode : uint8_t {
        text,           // words and single-character tokens
        scheme_colon,   // "http:" / "https:" seen, expecting '/'
        scheme_slash,   // "http:/", expecting '/'
        host,           // URL host
        url_rest,       // URL port, path, query, fragment: dropped
        email_domain,   // after user@
    };
    static constexpr uint8_t w_digit = 1, w_in_digits = 2, w_scheme = 4;

    size_t hot_loop(const uint8_t* data, size_t i, size_t len);
    void byte(uint8_t c);
    void code_point(uint32_t cp);
    void ascii(uint8_t c);
    void end_word();
    void end_host();
    void emit(uint32_t token);
    void shingle(uint32_t token);
    void line_end();
    void restore_lead();
    void add_shingle(uint64_t h);
    void flush();

    uint32_t bins_[fingerprint_bins] = {};
    uint32_t prev_[fingerprint_shingle_tokens - 1] = {};  // the last tokens, oldest first
    uint32_t lead_[fingerprint_lead_tokens] = {};          // the first line's tokens, held back
    uint32_t head_[fingerprint_shingle_tokens - 1] = {};   // the first tokens after a dropped first line
    uint32_t word_ = 0;         // hash of the word / host / domain being read
    uint32_t word_alnum_ = 0;   // word_ as of its last letter or digit (trailing joiners dropped)
    uint32_t cp_ = 0;           // UTF-8 code point being decoded
    uint32_t tokens_ = 0;
    uint8_t word_len_ = 0;      // bytes in word_ (saturating)
    uint8_t utf8_need_ = 0;     // continuation bytes still expected
    mode mode_ = mode::text;
    uint8_t word_flags_ = 0;
    uint8_t lead_count_ = 0;    // tokens in lead_ (after the first line: dropped ones)
    bool lead_done_ = false;    // the first line is over (dropped or shingled)
};

static_assert(sizeof(message_fingerprint) <= 128, "message_fingerprint is per flow: keep it within 128 bytes");
static_assert(std::is_trivially_copyable_v<message_fingerprint>);

}  // namespace sekisho
