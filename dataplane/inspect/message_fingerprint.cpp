// Streaming body fingerprint: normalise, shingle, one-permutation MinHash.
// The choices and their robustness are described in message_fingerprint.h.
#include "dataplane/inspect/message_fingerprint.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "dataplane/inspect/mix64.h"
#include "dataplane/mime/decode_kernels.h"

namespace sekisho {
namespace {

// A word's hash is polynomial (Rabin-Karp, mod 2^32): seed * K^n + sum of
// byte_i * K^(n-1-i). Read byte by byte it is one multiply-add a byte (step),
// as FNV-1a was; but its value for a whole word can also be computed from all
// its bytes at once (each times its power of K, summed), which the AVX2 word
// kernel below does without a branch or a loop per word. Both give the same
// value, so a word split across pieces hashes as a whole one.
constexpr uint32_t hash_k = 0x9e3779b1u;  // odd: multiplying by it is a bijection
constexpr uint32_t step(uint32_t h, uint32_t v) { return h * hash_k + v; }

// Distinct starting points, so a word, a URL host and an address domain with
// the same letters are different tokens.
constexpr uint32_t seed_word = 2166136261u;
constexpr uint32_t seed_host = 0x9e3779b9u;
constexpr uint32_t seed_email = 0x85ebca6bu;
// Words never contain '#' or '~': these cannot be the hash of a real word's letters.
constexpr uint32_t token_number = step(seed_word, '#');
constexpr uint32_t token_long = step(seed_word, '~');
constexpr uint32_t token_end = 0xffffffffu;  // closes the one shingle of a very short message
constexpr uint8_t max_word_bytes = 40;

constexpr uint32_t word_hash(std::string_view w) {
    uint32_t h = seed_word;
    for (char c : w) h = step(h, static_cast<uint8_t>(c));
    return h;
}
constexpr uint32_t hash_http = word_hash("http");
constexpr uint32_t hash_https = word_hash("https");

// Powers of K for the word kernel: lanes read from pw + 16 - n weigh a word's
// n <= 16 bytes K^(n-1) ... K^0 and whatever follows it 0.
constexpr unsigned kernel_word_max = 16;
constexpr size_t kernel_window = 32;                                  // text bytes classified at a time
constexpr size_t kernel_min_bytes = kernel_window + kernel_word_max;  // readable for a window and its words' loads
constexpr unsigned kernel_window_words = kernel_window / 2;           // a word and its separator: 2 bytes at least
struct word_powers {
    uint32_t pw[2 * kernel_word_max] = {};      // pw[j] = K^(15-j) for j < 16, then 0
    uint32_t seed[kernel_word_max + 1] = {};    // seed_word * K^n
    constexpr word_powers() {
        uint32_t k = 1;
        for (unsigned j = kernel_word_max; j-- > 0;) {
            pw[j] = k;
            k *= hash_k;
        }
        uint32_t h = seed_word;
        for (unsigned n = 0; n <= kernel_word_max; ++n) {
            seed[n] = h;
            h *= hash_k;
        }
    }
};
alignas(64) constexpr word_powers powers;
static_assert(powers.seed[4] + 'h' * powers.pw[12] + 't' * powers.pw[13] + 't' * powers.pw[14] + 'p' * powers.pw[15] ==
              hash_http);

// A shingle's hash is built from the hashes of its two token pairs: (a, b)
// and (b, c), the second rotated so its high half meets the first's low half.
// Each pair is one mix64 of the two tokens side by side (a bijection of the
// pair), so the shingle's 64 bits are as good as a hash of the three tokens,
// and where tokens come one at a time (the hot loop) the pair (b, c) is
// hashed once and reused as the next shingle's first pair: one mix64 a token
// (two multiplies) instead of two of them chained.
static_assert(fingerprint_shingle_tokens == 3);
constexpr uint64_t pair_hash(uint32_t a, uint32_t b) { return mix64(static_cast<uint64_t>(a) << 32 | b); }
constexpr uint64_t shingle_of_pairs(uint64_t ab, uint64_t bc) { return ab ^ (bc << 32 | bc >> 32); }
constexpr uint64_t shingle_hash(uint32_t a, uint32_t b, uint32_t c) {
    return shingle_of_pairs(pair_hash(a, b), pair_hash(b, c));
}

// A code point that is a token by itself (kana, kanji, symbols): the code
// point, offset so no such token is a small number. Words' tokens are
// polynomial hashes, spread over all 32-bit values: one equals one of these
// ~2^17 values with a probability of 2^-15, and would then only read as that
// character. The pair hash does the mixing.
constexpr uint32_t char_token(uint32_t cp) { return cp ^ 0x5ca1ab1eu; }

constexpr bool is_alpha(uint8_t c) { return c >= 'a' && c <= 'z'; }
constexpr bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
constexpr uint8_t lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? static_cast<uint8_t>(c + 32) : c; }
// Joins two word characters; dropped at a word's ends.
constexpr bool is_joiner(uint8_t c) {
    return c == '.' || c == ',' || c == '-' || c == '_' || c == '\'' || c == '+' || c == '%';
}
// Ends a URL's path/query/fragment (RFC 3986 never allows these unescaped).
constexpr bool ends_url(uint8_t c) {
    return c <= ' ' || c == 0x7f || c == '"' || c == '\'' || c == '<' || c == '>' || c == '`' || c == '{' ||
           c == '}' || c == '|' || c == '\\' || c == '^';
}

// Invisible characters used to break words up: read as nothing.
constexpr bool is_ignorable(uint32_t cp) {
    return cp == 0xad || (cp >= 0x300 && cp <= 0x36f) || cp == 0x34f || cp == 0x180e ||
           (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2060 && cp <= 0x2064) || (cp >= 0xfe00 && cp <= 0xfe0f) ||
           cp == 0xfeff || (cp >= 0xe0100 && cp <= 0xe01ef);
}
// Letters of alphabetic scripts that write words with spaces: part of a word.
constexpr bool is_word_letter(uint32_t cp) {
    return (cp >= 0xc0 && cp <= 0x24f && cp != 0xd7 && cp != 0xf7) || (cp >= 0x370 && cp <= 0x52f);
}
constexpr uint32_t lower_letter(uint32_t cp) {
    if ((cp >= 0xc0 && cp <= 0xde && cp != 0xd7) || (cp >= 0x391 && cp <= 0x3a9) || (cp >= 0x410 && cp <= 0x42f))
        return cp + 0x20;
    return cp;
}
// Spaces and punctuation: separate tokens.
constexpr bool is_separator(uint32_t cp) {
    return cp < 0xc0 ||                          // C1 controls, NBSP, Latin-1 punctuation and signs
           (cp >= 0x2000 && cp <= 0x206f) ||     // general punctuation, typographic spaces and quotes
           (cp >= 0x3000 && cp <= 0x3004) ||     // ideographic space, 、。〃
           (cp >= 0x3008 && cp <= 0x301f) ||     // CJK brackets 「」『』【】 ...
           cp == 0x30fb ||                       // katakana middle dot
           (cp >= 0xfe10 && cp <= 0xfe6f) ||     // vertical, small and compatibility forms
           cp == 0xff00 || (cp >= 0xff5f && cp <= 0xff65);  // full-width brackets, half-width punctuation
}

// What the feed() fast path does with an ASCII byte in text mode.
enum : uint8_t { fc_other = 0, fc_alnum, fc_digit, fc_sep, fc_joiner };
struct fast_class_table {
    uint8_t cls[256];
    uint8_t low[256];
    constexpr fast_class_table() : cls(), low() {
        for (int c = 0; c < 256; ++c) {
            low[c] = lower(static_cast<uint8_t>(c));
            const uint8_t l = low[c];
            if (c >= 0x80) cls[c] = fc_other;  // UTF-8: the 3-byte fast path or byte()
            else if (is_digit(l)) cls[c] = fc_digit;
            else if (is_alpha(l)) cls[c] = fc_alnum;
            else if (is_joiner(l)) cls[c] = fc_joiner;  // the hot loop only; feed()'s other paths: byte()
            else if (l == '@' || l == ':') cls[c] = fc_other;  // depend on context: byte()
            else cls[c] = fc_sep;
        }
    }
};
constexpr fast_class_table fast_class;

// Code points that are one token each whatever their neighbours (kana and
// CJK ideographs): not ignorable, not word letters, not separators.
constexpr bool is_plain_cjk(uint32_t cp) { return cp >= 0x3040 && cp < 0xa000 && cp != 0x30fb; }
constexpr bool plain_cjk_checked() {
    for (uint32_t cp = 0x3040; cp < 0xa000; ++cp)
        if (cp != 0x30fb && (is_separator(cp) || is_ignorable(cp) || is_word_letter(cp) || (cp >= 0xff01 && cp <= 0xff5e)))
            return false;
    return true;
}
static_assert(plain_cjk_checked());

// A whole 3-byte UTF-8 sequence at data[i] that the fast paths may read at once: not overlong,
// since an overlong one's code point (below U+0800) may be a word letter, which byte() reads
// as part of a word, also when a piece boundary falls inside the sequence.
inline bool fast_3byte_at(const uint8_t* data, size_t i, size_t len) {
    const uint8_t c = data[i];
    return (c & 0xf0) == 0xe0 && i + 2 < len && (data[i + 1] & 0xc0) == 0x80 && (data[i + 2] & 0xc0) == 0x80 &&
           (c != 0xe0 || data[i + 1] >= 0xa0);
}
inline uint32_t code_point_3byte(const uint8_t* p) {
    return (p[0] & 0x0fu) << 12 | (p[1] & 0x3fu) << 6 | (p[2] & 0x3fu);
}

#if defined(__x86_64__)
// The hash of a word of 1 to 16 ASCII letters and digits at w (16 bytes
// readable), as step() would make it from seed_word: letters lowercased, each
// byte times its power of K, summed.
[[gnu::target("avx2")]] inline uint32_t word_hash_avx2(const uint8_t* w, unsigned n) {
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
    const __m128i upper = _mm_and_si128(_mm_cmpgt_epi8(b, _mm_set1_epi8('A' - 1)), _mm_cmpgt_epi8(_mm_set1_epi8('Z' + 1), b));
    b = _mm_or_si128(b, _mm_and_si128(upper, _mm_set1_epi8(0x20)));
    const __m256i lo = _mm256_cvtepu8_epi32(b), hi = _mm256_cvtepu8_epi32(_mm_srli_si128(b, 8));
    const __m256i pw_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(powers.pw + kernel_word_max - n));
    const __m256i pw_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(powers.pw + kernel_word_max + 8 - n));
    const __m256i sum = _mm256_add_epi32(_mm256_mullo_epi32(lo, pw_lo), _mm256_mullo_epi32(hi, pw_hi));
    __m128i x = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0x4e));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0xb1));
    return powers.seed[n] + static_cast<uint32_t>(_mm_cvtsi128_si32(x));
}

[[gnu::target("avx2")]] inline __m256i bytes_eq(__m256i v, char x) { return _mm256_cmpeq_epi8(v, _mm256_set1_epi8(x)); }
// Bytes in [lo, hi]; signed compares: bytes >= 0x80 are in no ASCII range.
[[gnu::target("avx2")]] inline __m256i bytes_in(__m256i v, char lo, char hi) {
    return _mm256_and_si256(_mm256_cmpgt_epi8(v, _mm256_set1_epi8(static_cast<char>(lo - 1))),
                            _mm256_cmpgt_epi8(_mm256_set1_epi8(static_cast<char>(hi + 1)), v));
}

// The fingerprint's ASCII words, 32 bytes at a time (AVX2). Called in text
// mode at a token boundary (no word open), it reads what the byte loop would
// read the same way without a branch per byte or per word: separators and
// joiners (nothing at a boundary), and words of 1 to 16 ASCII letters and
// digits ended by a separator, possibly after joiners ("end." then a space:
// the joiners are dropped), each one token (token_number if it has a digit).
// It stops before anything else: a byte >= 0x80, '@' or ':' (which depend on
// context), a longer word, one with a joiner inside ("e-mail"), one whose
// separator it cannot see; and when fewer than kernel_min_bytes are left (a
// word's 16 bytes are loaded from anywhere in the window) or `room` tokens
// could not take a window's. Returns the bytes read (a token boundary); the
// tokens, in order, are at out[0, count).
[[gnu::target("avx2,bmi,bmi2")]] size_t ascii_words_avx2(const uint8_t* p, size_t n, uint32_t* out, unsigned room,
                                                          unsigned& count) {
    constexpr size_t window = kernel_window;
    size_t i = 0;
    unsigned c = 0;
    while (i + kernel_min_bytes <= n && c + kernel_window_words <= room) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
        const __m256i digit = bytes_in(v, '0', '9');
        const __m256i alnum = _mm256_or_si256(_mm256_or_si256(bytes_in(v, 'a', 'z'), bytes_in(v, 'A', 'Z')), digit);
        const __m256i joiner =
            _mm256_or_si256(_mm256_or_si256(_mm256_or_si256(bytes_eq(v, '.'), bytes_eq(v, ',')),
                                            _mm256_or_si256(bytes_eq(v, '-'), bytes_eq(v, '_'))),
                            _mm256_or_si256(_mm256_or_si256(bytes_eq(v, '\''), bytes_eq(v, '+')), bytes_eq(v, '%')));
        const __m256i other = _mm256_or_si256(_mm256_cmpgt_epi8(_mm256_setzero_si256(), v),
                                              _mm256_or_si256(bytes_eq(v, '@'), bytes_eq(v, ':')));
        const uint32_t A = static_cast<uint32_t>(_mm256_movemask_epi8(alnum));
        const uint32_t D = static_cast<uint32_t>(_mm256_movemask_epi8(digit));
        const uint32_t J = static_cast<uint32_t>(_mm256_movemask_epi8(joiner));
        const uint32_t O = static_cast<uint32_t>(_mm256_movemask_epi8(other));
        const uint32_t S = ~(A | J | O);
        unsigned pos = 0;
        for (;;) {
            const uint32_t items = pos < window ? (A | O) & (~0u << pos) : 0;
            if (items == 0) {  // separators and joiners to the window's end
                i += window;
                break;
            }
            const unsigned q = static_cast<unsigned>(_tzcnt_u32(items));
            if (O >> q & 1) {
                count = c;
                return i + q;
            }
            const uint32_t after_word = ~A & (~0u << q);
            const unsigned e = after_word ? static_cast<unsigned>(_tzcnt_u32(after_word)) : window;
            const uint32_t past = e < window ? ~J & (~0u << e) : 0;  // the first byte past the word's joiners
            if (past == 0) {  // the word or its joiners reach the window's end: start a window at the word
                if (q == 0) {
                    count = c;
                    return i;
                }
                i += q;
                break;
            }
            const unsigned t = static_cast<unsigned>(_tzcnt_u32(past)), len = e - q;
            if (len > kernel_word_max || !(S >> t & 1)) {
                count = c;
                return i + q;
            }
            out[c++] = (D >> q) & ((1u << len) - 1) ? token_number : word_hash_avx2(p + i + q, len);
            pos = t + 1;  // past the separator
        }
    }
    count = c;
    return i;
}

#endif  // __x86_64__

}  // namespace

void message_fingerprint::byte(uint8_t c) {
    if (utf8_need_) {
        if ((c & 0xc0) == 0x80) {
            cp_ = cp_ << 6 | (c & 0x3fu);
            if (--utf8_need_ == 0) code_point(cp_);
            return;
        }
        utf8_need_ = 0;
        code_point(0x80);  // a truncated sequence: a separator; c starts afresh
    }
    if (c < 0x80) {
        ascii(c);
        if (c == '\n') line_end();
    } else if ((c & 0xe0) == 0xc0) {
        cp_ = c & 0x1fu;
        utf8_need_ = 1;
    } else if ((c & 0xf0) == 0xe0) {
        cp_ = c & 0x0fu;
        utf8_need_ = 2;
    } else if ((c & 0xf8) == 0xf0) {
        cp_ = c & 0x07u;
        utf8_need_ = 3;
    } else {
        code_point(0x80);  // a stray continuation byte or an invalid lead byte
    }
}

void message_fingerprint::code_point(uint32_t cp) {
    if (cp >= 0xff01 && cp <= 0xff5e) {  // full-width ASCII
        ascii(static_cast<uint8_t>(cp - 0xfee0));
        return;
    }
    if (is_ignorable(cp)) return;
    // Anything else non-ASCII ends a URL or an address.
    switch (mode_) {
    case mode::text: break;
    case mode::scheme_colon:
    case mode::scheme_slash: end_word(); break;
    case mode::host:
    case mode::email_domain: end_host(); break;
    case mode::url_rest: break;
    }
    mode_ = mode::text;
    if (is_word_letter(cp)) {
        if (word_len_ == 0) {
            word_ = seed_word;
            word_flags_ = 0;
        }
        word_ = step(word_, lower_letter(cp));
        word_alnum_ = word_;
        if (word_len_ < 255) ++word_len_;
    } else if (is_separator(cp)) {
        end_word();
    } else {  // kana, kanji, hangul, other scripts, symbols, emoji: one token each
        end_word();
        emit(char_token(cp));
    }
}

void message_fingerprint::ascii(uint8_t c) {
    c = lower(c);
    for (;;) {
        switch (mode_) {
        case mode::text:
            if (is_alpha(c) || is_digit(c)) {
                if (word_len_ == 0) {
                    word_ = seed_word;
                    word_flags_ = 0;
                }
                if (is_digit(c)) word_flags_ |= w_digit;
                word_ = step(word_, c);
                word_alnum_ = word_;
                if (word_len_ < 255) ++word_len_;
            } else if (word_len_ > 0 && is_joiner(c)) {
                word_ = step(word_, c);
                if (word_len_ < 255) ++word_len_;
            } else if (c == '@' && word_len_ > 0) {
                // user@domain: the local part (often the recipient's name) is dropped.
                word_len_ = 0;
                word_ = word_alnum_ = seed_email;
                word_flags_ = 0;
                mode_ = mode::email_domain;
            } else if (c == ':' && word_len_ > 0 && word_ == word_alnum_ &&
                       ((word_len_ == 4 && word_ == hash_http) || (word_len_ == 5 && word_ == hash_https))) {
                mode_ = mode::scheme_colon;  // the word waits: a URL drops it, anything else emits it
            } else {
                end_word();
            }
            return;
        case mode::scheme_colon:
            if (c == '/') {
                mode_ = mode::scheme_slash;
                return;
            }
            end_word();
            mode_ = mode::text;
            continue;  // the ':' separated; c starts afresh
        case mode::scheme_slash:
            if (c == '/') {
                word_len_ = 0;
                word_ = word_alnum_ = seed_host;
                word_flags_ = 0;
                mode_ = mode::host;
                return;
            }
            end_word();
            mode_ = mode::text;
            continue;
        case mode::host:
        case mode::email_domain:
            if (is_digit(c)) {
                if (!(word_flags_ & w_in_digits)) word_ = step(word_, '#');
                word_flags_ |= w_in_digits;
                word_alnum_ = word_;
                if (word_len_ < 255) ++word_len_;
                return;
            }
            if (is_alpha(c) || c == '.' || c == '-' || c == '_') {
                word_flags_ &= static_cast<uint8_t>(~w_in_digits);
                word_ = step(word_, c);
                if (is_alpha(c)) word_alnum_ = word_;
                if (word_len_ < 255) ++word_len_;
                return;
            }
            end_host();
            if (mode_ == mode::host && (c == '/' || c == '?' || c == '#' || c == ':')) {
                mode_ = mode::url_rest;
                return;
            }
            mode_ = mode::text;
            continue;
        case mode::url_rest:
            if (!ends_url(c)) return;
            mode_ = mode::text;
            continue;
        }
    }
}

[[gnu::always_inline]] inline void message_fingerprint::end_word() {
    if (word_len_ == 0) return;
    const uint32_t token = (word_flags_ & w_digit) ? token_number : word_len_ > max_word_bytes ? token_long : word_alnum_;
    word_len_ = 0;
    emit(token);
}

// A URL host or an address domain (possibly empty: "user@ ..." still drops the user).
void message_fingerprint::end_host() {
    const uint32_t token = word_alnum_;
    word_len_ = 0;
    emit(token);
}

// The first line's tokens wait in lead_ until it ends (a greeting: dropped) or
// grows too long for one (text: shingled).
[[gnu::always_inline]] inline void message_fingerprint::emit(uint32_t token) {
    if (!lead_done_) {
        if (lead_count_ < fingerprint_lead_tokens) {
            lead_[lead_count_++] = token;
            return;
        }
        lead_done_ = true;
        const unsigned n = lead_count_;
        lead_count_ = 0;
        for (unsigned i = 0; i < n; ++i) shingle(lead_[i]);
    }
    shingle(token);
}

// The first line ends: if it was short, it is dropped, but kept in lead_ in
// case too little follows (restore_lead).
void message_fingerprint::line_end() {
    if (lead_done_ || lead_count_ == 0) return;  // no first line yet: blank lines before it
    lead_done_ = true;
}

[[gnu::always_inline]] inline void message_fingerprint::shingle(uint32_t token) {
    if (tokens_ >= fingerprint_max_tokens) return;  // the sample is complete
    if (lead_count_ > 0 && tokens_ < fingerprint_shingle_tokens - 1) head_[tokens_] = token;
    ++tokens_;
    if (tokens_ >= fingerprint_shingle_tokens) add_shingle(shingle_hash(prev_[0], prev_[1], token));
    prev_[0] = prev_[1];
    prev_[1] = token;
}

// Too little followed a dropped first line: shingle it after all, as if it had
// never been dropped. The shingles missing are those ending within the first
// line or the first two tokens after it.
void message_fingerprint::restore_lead() {
    constexpr unsigned k = fingerprint_shingle_tokens - 1;
    uint32_t seq[fingerprint_lead_tokens + k];
    const unsigned n = lead_count_, after = tokens_ < k ? tokens_ : k;
    for (unsigned i = 0; i < n; ++i) seq[i] = lead_[i];
    for (unsigned i = 0; i < after; ++i) seq[n + i] = head_[i];
    const unsigned len = n + after;
    for (unsigned p = k; p < len; ++p) add_shingle(shingle_hash(seq[p - 2], seq[p - 1], seq[p]));
    if (after < k) {  // the last tokens of the message are in the first line
        prev_[0] = len >= 2 ? seq[len - 2] : 0;
        prev_[1] = seq[len - 1];
    }
    tokens_ += n;
    lead_count_ = 0;
}

[[gnu::always_inline]] inline void message_fingerprint::add_shingle(uint64_t h) {
    const unsigned bin = static_cast<unsigned>(h >> 60);
    static_assert(fingerprint_bins == 16);
    const uint32_t v = static_cast<uint32_t>(h) | 1u;  // never 0: 0 is an empty bin
    if (v > bins_[bin]) bins_[bin] = v;
}

// What the end of the text would do: close the open token; a message shorter
// than one shingle gets one shingle of what it has.
void message_fingerprint::flush() {
    switch (mode_) {
    case mode::text:
    case mode::scheme_colon:
    case mode::scheme_slash: end_word(); break;
    case mode::host:
    case mode::email_domain: end_host(); break;
    case mode::url_rest: break;
    }
    mode_ = mode::text;
    utf8_need_ = 0;
    if (!lead_done_) {  // a message of one short line: it is all there is
        lead_done_ = true;
        const unsigned n = lead_count_;
        lead_count_ = 0;
        for (unsigned i = 0; i < n; ++i) shingle(lead_[i]);
    } else if (lead_count_ > 0 && tokens_ < fingerprint_greeting_rest) {
        restore_lead();
    }
    if (tokens_ > 0 && tokens_ < fingerprint_shingle_tokens) add_shingle(shingle_hash(prev_[0], prev_[1], token_end));
}

// The fast path once the first line is settled (every token is shingled at
// once): the state it touches lives in locals, so the compiler keeps it in
// registers instead of reloading it after every store (the input bytes may
// alias the object). Returns where it stopped: at the end, or at a byte it
// leaves to feed()'s slower paths.
size_t message_fingerprint::hot_loop(const uint8_t* data, size_t i, size_t len) {
    uint32_t w = word_, walnum = word_alnum_, tokens = tokens_;
    unsigned wlen = word_len_;
    uint8_t flags = word_flags_;
    uint32_t bins[fingerprint_bins];
    for (unsigned k = 0; k < fingerprint_bins; ++k) bins[k] = bins_[k];
    // The last two tokens side by side, as pair_hash() reads them, in one 64-bit variable: a
    // token shifts in at the bottom. (As two 32-bit ones, GCC spilled the newer and reloaded it
    // 64 bits wide from a 32-bit store, which store forwarding does not serve: a stall a token.)
    uint64_t last2 = static_cast<uint64_t>(prev_[0]) << 32 | prev_[1];
    uint64_t pair = mix64(last2);  // pair_hash of the last two tokens: the next shingle's first pair
    // No lambda here calls another: when one captured the other, GCC kept all these locals in
    // memory, each token's work chained through stores and reloads.
    auto push = [&](uint32_t token) {
        if (tokens >= fingerprint_max_tokens) return;  // the sample is complete (as shingle())
        ++tokens;
        last2 = last2 << 32 | token;
        const uint64_t next = mix64(last2);
        if (tokens >= fingerprint_shingle_tokens) {
            const uint64_t h = shingle_of_pairs(pair, next);
            const unsigned bin = static_cast<unsigned>(h >> 60);
            const uint32_t v = static_cast<uint32_t>(h) | 1u;
            if (v > bins[bin]) bins[bin] = v;
        }
        pair = next;
    };
    auto take_word = [&] {  // the open word's token; the word is closed
        const uint32_t t = (flags & w_digit) ? token_number : wlen > max_word_bytes ? token_long : walnum;
        wlen = 0;
        return t;
    };
#if defined(__x86_64__)
    const bool simd = simd_active() >= simd_level::avx2;
#endif
    while (i < len && tokens < fingerprint_max_tokens) {
        const uint8_t c = data[i];
#if defined(__x86_64__)
        if (simd && wlen == 0 && c < 0x80 && len - i >= kernel_min_bytes) {  // ASCII at a token boundary: words in bulk
            uint32_t found[2 * kernel_window_words];
            unsigned k = 0;
            const size_t used = ascii_words_avx2(data + i, len - i, found, 2 * kernel_window_words, k);
            for (unsigned j = 0; j < k; ++j) push(found[j]);
            i += used;
            if (used != 0) continue;
        }
#endif
        const uint8_t cls = fast_class.cls[c];
        if (cls == fc_alnum || cls == fc_digit) {
            if (wlen == 0) {
                w = seed_word;
                flags = 0;
            }
            if (cls == fc_digit) flags |= w_digit;
            w = step(w, fast_class.low[c]);
            walnum = w;
            if (wlen < 255) ++wlen;
            ++i;
        } else if (cls == fc_sep) {
            if (wlen != 0) push(take_word());
            ++i;
        } else if (cls == fc_joiner) {  // inside a word: part of it; elsewhere: nothing
            if (wlen > 0) {
                w = step(w, c);
                if (wlen < 255) ++wlen;
            }
            ++i;
        } else if (fast_3byte_at(data, i, len)) {
            // As code_point() reads a 3-byte code point in text mode (never a word letter).
            const uint32_t cp = code_point_3byte(data + i);
            if (is_plain_cjk(cp)) {
                if (wlen != 0) push(take_word());
                push(char_token(cp));
            } else if (cp >= 0xff01 && cp <= 0xff5e) {
                break;  // full-width ASCII: read as ASCII, by code_point()
            } else if (is_ignorable(cp)) {
            } else if (is_separator(cp)) {
                if (wlen != 0) push(take_word());
            } else {
                if (wlen != 0) push(take_word());
                push(char_token(cp));
            }
            i += 3;
        } else {
            break;
        }
    }
    word_ = w;
    word_alnum_ = walnum;
    word_len_ = static_cast<uint8_t>(wlen);
    word_flags_ = flags;
    prev_[0] = static_cast<uint32_t>(last2 >> 32);
    prev_[1] = static_cast<uint32_t>(last2);
    tokens_ = tokens;
    for (unsigned k = 0; k < fingerprint_bins; ++k) bins_[k] = bins[k];
    return i;
}

// The common cases in a tight loop: in text mode, runs of ASCII letters and
// digits, ASCII separators, and whole 3-byte UTF-8 sequences of kana and CJK
// ideographs. Everything else (URLs, addresses, joiners, other code points,
// sequences split across pieces, invalid UTF-8) goes byte by byte through
// byte(). Both read the same: the result does not depend on the path (tests
// compare a whole feed with a byte-by-byte one).
void message_fingerprint::feed(const uint8_t* data, size_t len) {
    size_t i = 0;
    while (i < len) {
        if (tokens_ >= fingerprint_max_tokens) return;  // the sample is complete: the rest is not read
        if (utf8_need_ != 0 || mode_ != mode::text) {
            byte(data[i++]);
            continue;
        }
        if (lead_done_ && (lead_count_ == 0 || tokens_ >= fingerprint_shingle_tokens - 1)) {
            i = hot_loop(data, i, len);
            if (i == len || tokens_ >= fingerprint_max_tokens) break;
        }
        const uint8_t c = data[i];
        const uint8_t cls = fast_class.cls[c];
        if (cls == fc_alnum || cls == fc_digit) {
            uint32_t w = word_;
            uint8_t flags = word_flags_;
            unsigned n = word_len_;
            if (n == 0) {
                w = seed_word;
                flags = 0;
            }
            size_t j = i;
            do {
                const uint8_t b = data[j];
                if (fast_class.cls[b] == fc_digit) flags |= w_digit;
                w = step(w, fast_class.low[b]);
                ++n;
                ++j;
            } while (j < len && static_cast<unsigned>(fast_class.cls[data[j]] - fc_alnum) < 2u);
            word_ = word_alnum_ = w;
            word_flags_ = flags;
            word_len_ = static_cast<uint8_t>(n < 255 ? n : 255);
            i = j;
            continue;
        }
        if (cls == fc_sep) {
            end_word();
            if (c == '\n') line_end();
            ++i;
            continue;
        }
        if (fast_3byte_at(data, i, len)) {
            const uint32_t cp = code_point_3byte(data + i);
            i += 3;
            if (is_plain_cjk(cp)) {
                end_word();
                emit(char_token(cp));
            } else {
                code_point(cp);
            }
            continue;
        }
        byte(c);
        ++i;
    }
}

message_signature message_fingerprint::signature() const {
    message_fingerprint f = *this;
    f.flush();
    message_signature s;
    unsigned filled = 0;
    for (uint32_t b : f.bins_) filled += b != 0;
    if (filled == 0) return s;
    // Rotation densification: an empty bin takes the next non-empty bin's value
    // to its right (circularly), mixed with the distance so that two empty bins
    // borrowing from one bin differ.
    for (unsigned j = 0; j < fingerprint_bins; ++j) {
        if (f.bins_[j]) {
            s.bin[j] = f.bins_[j];
            continue;
        }
        unsigned d = 1;
        while (!f.bins_[(j + d) % fingerprint_bins]) ++d;
        s.bin[j] = static_cast<uint32_t>(mix64(static_cast<uint64_t>(d) << 32 | f.bins_[(j + d) % fingerprint_bins])) | 1u;
    }
    return s;
}

uint64_t message_fingerprint::band_hash(const message_signature& s) {
    uint64_t h = 0x6a09e667f3bcc908ull;
    for (unsigned i = 0; i < fingerprint_band_bins; ++i) h = mix64(h ^ s.bin[i]) + i;
    return h ? h : 1;
}

uint32_t message_fingerprint::tokens() const {
    message_fingerprint f = *this;
    f.flush();
    return f.tokens_;
}

uint64_t message_fingerprint::fingerprint() const {
    message_fingerprint f = *this;
    f.flush();
    if (f.tokens_ < fingerprint_min_tokens) return 0;
    return band_hash(f.signature());
}

unsigned matching_bins(const message_signature& a, const message_signature& b) {
    if (a.empty() || b.empty()) return 0;
    unsigned n = 0;
    for (unsigned i = 0; i < fingerprint_bins; ++i) n += a.bin[i] == b.bin[i];
    return n;
}

double similarity(const message_signature& a, const message_signature& b) {
    return static_cast<double>(matching_bins(a, b)) / fingerprint_bins;
}

}  // namespace sekisho
