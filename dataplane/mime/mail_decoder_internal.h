// The mail decoder's private vocabulary, shared by the files that implement mail_decoder
// (mail_decoder.h) and by nothing else:
//   mail_decoder.cpp        the decoder: reset / feed / finish, lines and multipart delimiters,
//                           the output to the sink and the body cap;
//   header_fields.cpp       header blocks and the Content-Type / -Transfer-Encoding values;
//   encoded_words.cpp       RFC 2047 encoded words in header values;
//   transfer_encodings.cpp  body text: base64, quoted-printable, identity;
//   charsets.cpp            charset names, the per-worker converters and per-process tables,
//                           conversion to UTF-8 (ISO-2022-JP's shift states, tables, iconv).
// What is here (name hashing, byte classes, the state codes of the per-flow fields, feed()'s
// stack context) changes with the decoder; the contract for callers is mail_decoder.h alone.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "dataplane/mime/decode_kernels.h"
#include "dataplane/mime/mail_decoder.h"

namespace sekisho {

namespace mail_decoding {

// --- names: matched by a case-insensitive FNV-1a hash, never stored ------------------------
inline constexpr uint32_t fnv_basis = 2166136261u;
inline constexpr uint32_t fnv_prime = 16777619u;
inline constexpr uint8_t ascii_lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? static_cast<uint8_t>(c + 32) : c; }
inline constexpr uint32_t hash_step(uint32_t h, uint8_t c) { return (h ^ ascii_lower(c)) * fnv_prime; }
inline constexpr uint32_t hash_of(std::string_view s) {
    uint32_t h = fnv_basis;
    for (char c : s) h = hash_step(h, static_cast<uint8_t>(c));
    return h;
}

inline constexpr size_t max_charset_name = 40;  // a longer charset name is unknown (raw)
// A charset name's hash_of() to what the decoder does with it; `raw` if unknown (charsets.cpp).
mail_charset charset_by_hash(uint32_t h);

// --- bytes -----------------------------------------------------------------------

inline constexpr bool is_wsp(uint8_t c) { return c == ' ' || c == '\t'; }
inline constexpr bool is_hex(uint8_t c) {
    return (c >= '0' && c <= '9') || (ascii_lower(c) >= 'a' && ascii_lower(c) <= 'f');
}
inline constexpr uint8_t hex_value(uint8_t c) {
    return static_cast<uint8_t>(c <= '9' ? c - '0' : ascii_lower(c) - 'a' + 10);
}
// RFC 2047 token: no SPACE, CTLs or especials.
inline constexpr bool is_ew_token(uint8_t c) {
    if (c <= 32 || c >= 127) return false;
    return std::string_view("()<>@,;:\"/[]?.=").find(static_cast<char>(c)) == std::string_view::npos;
}
// RFC 5322 ftext.
inline constexpr bool is_ftext(uint8_t c) { return c >= 33 && c <= 126 && c != ':'; }

struct base64_table {
    int8_t v[256];
    constexpr base64_table() : v() {
        for (int c = 0; c < 256; ++c) v[c] = -1;
        for (int c = 'A'; c <= 'Z'; ++c) v[c] = static_cast<int8_t>(c - 'A');
        for (int c = 'a'; c <= 'z'; ++c) v[c] = static_cast<int8_t>(c - 'a' + 26);
        for (int c = '0'; c <= '9'; ++c) v[c] = static_cast<int8_t>(c - '0' + 52);
        v[static_cast<int>('+')] = 62;
        v[static_cast<int>('/')] = 63;
    }
};
inline constexpr base64_table b64;

struct hex_table {
    int8_t v[256];
    constexpr hex_table() : v() {
        for (int c = 0; c < 256; ++c) v[c] = is_hex(static_cast<uint8_t>(c)) ? static_cast<int8_t>(hex_value(static_cast<uint8_t>(c))) : -1;
    }
};
inline constexpr hex_table hex_digit;

inline constexpr uint8_t replacement[3] = {0xEF, 0xBF, 0xBD};  // U+FFFD
inline constexpr uint8_t crlf[2] = {'\r', '\n'};
inline constexpr uint8_t dashes[2] = {'-', '-'};
inline constexpr uint8_t spaces[16] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

// --- states ------------------------------------------------------------------------

// Header block line states (hstate_).
namespace hs {
enum : uint8_t { line_start = 0, name, name_ws, value_lead, value };
}
// Fields whose value the decoder itself reads (field_kind_).
namespace fk {
enum : uint8_t { other = 0, ctype, cte };
}
// What the part's body is (ctype_); text/plain is the default (RFC 2045 5.2).
namespace ct {
enum : uint8_t { text = 0, multipart, message, other };
}
namespace major {
enum : uint8_t { none = 0, text, multipart, message, other };
}
// Content-Transfer-Encoding (cte_).
namespace xfer {
enum : uint8_t { identity = 0, base64, qp };
}
// Content-Type / Content-Transfer-Encoding value parser (ct_state_).
namespace cts {
enum : uint8_t {
    type_lead = 0, type, subtype, params, pname, pname_ws, pvalue_lead, ptoken, pquoted, pquoted_esc, done
};
}
namespace prm {
enum : uint8_t { other = 0, charset, boundary };
}
// RFC 2047 encoded words (ew_state_).
namespace ew {
enum : uint8_t { text = 0, after, eq, charset, lang, enc, enc_q, b, q, q_eq, q_eq1, end_q };
}
// Quoted-printable (xstate_).
namespace qp {
enum : uint8_t { normal = 0, eq, eq_hex1 };
}
// ISO-2022-JP character sets (conv_.mode) and escape sequence progress (conv_.esc).
namespace jm {
enum : uint8_t { ascii = 0, x0208, x0212, kana };
}
namespace je {
enum : uint8_t { none = 0, esc, dollar, paren, dollar_paren };
}

inline constexpr uint32_t h_text = hash_of("text"), h_multipart = hash_of("multipart"), h_message = hash_of("message"),
                   h_rfc822 = hash_of("rfc822"), h_global = hash_of("global"), h_charset = hash_of("charset"),
                   h_boundary = hash_of("boundary"), h_base64 = hash_of("base64"),
                   h_qp = hash_of("quoted-printable");

}  // namespace mail_decoding

// --- feed()'s context: output buffers on the stack, ~6.3 KiB, so the per-flow state stays small ---

struct mail_decoder::io {
    io(mail_decoder_sink& s, charset_converters& c, mail_part t) : sink(s), cv(c), target(t) {}
    static constexpr size_t out_size = 4096;
    size_t cap() const { return target == mail_part::header ? mail_header_chunk : out_size; }

    mail_decoder_sink& sink;
    charset_converters& cv;
    mail_part target;        // what `out` holds
    size_t out_len = 0;      // UTF-8 ready for the sink
    size_t dec_len = 0;      // transfer-decoded bytes waiting for charset conversion
    size_t euc_len = 0;      // ISO-2022-JP characters rewritten to EUC-JP, waiting for iconv
    static constexpr size_t dec_size = 2048;
    uint8_t out[out_size + 4];  // + the slack of a converter's 4-byte store (jis_utf8)
    uint8_t dec[dec_size + std::max(kernels::base64_slack, kernels::qp_slack)];  // + the kernels' slack
    uint8_t euc[192];
};

// --- output: every part writes its UTF-8 through these (inline: called per character) ---------

// Output now belongs to a header value or to the body: what is pending goes to the sink first.
inline void mail_decoder::set_target(io& x, mail_part t) {
    if (x.target == t) return;
    flush_out(x);
    x.target = t;
}

// UTF-8 for the sink; flushed to it whenever `out` is full (a header value in mail_header_chunk
// pieces, body text through the cap).
inline void mail_decoder::put(io& x, const uint8_t* p, size_t n) {
    while (n) {
        if (x.out_len == x.cap()) flush_out(x);
        const size_t room = x.cap() - x.out_len;
        const size_t k = n < room ? n : room;
        std::memcpy(x.out + x.out_len, p, k);
        x.out_len += k;
        p += k;
        n -= k;
    }
}

}  // namespace sekisho
