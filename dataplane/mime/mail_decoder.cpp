#include "dataplane/mime/mail_decoder.h"

#include <iconv.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cerrno>
#include <cstring>

#include "dataplane/mime/decode_kernels.h"

namespace sekisho {

namespace {

// --- names -----------------------------------------------------------------------

constexpr uint32_t fnv_basis = 2166136261u;
constexpr uint32_t fnv_prime = 16777619u;
constexpr uint8_t ascii_lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? static_cast<uint8_t>(c + 32) : c; }
constexpr uint32_t hash_step(uint32_t h, uint8_t c) { return (h ^ ascii_lower(c)) * fnv_prime; }
constexpr uint32_t hash_of(std::string_view s) {
    uint32_t h = fnv_basis;
    for (char c : s) h = hash_step(h, static_cast<uint8_t>(c));
    return h;
}

struct charset_alias {
    std::string_view name;
    mail_charset cs;
};
constexpr charset_alias charset_aliases[] = {
    // US-ASCII and none: ISO-2022-JP is a superset, and undeclared ISO-2022-JP is common.
    {"", mail_charset::jis}, {"us-ascii", mail_charset::jis}, {"ascii", mail_charset::jis},
    {"ansi_x3.4-1968", mail_charset::jis}, {"iso646-us", mail_charset::jis}, {"csascii", mail_charset::jis},
    {"iso-2022-jp", mail_charset::jis}, {"csiso2022jp", mail_charset::jis}, {"iso-2022-jp-1", mail_charset::jis},
    {"iso-2022-jp-2", mail_charset::jis}, {"iso-2022-jp-3", mail_charset::jis},
    {"iso-2022-jp-2004", mail_charset::jis}, {"iso-2022-jp-ms", mail_charset::jis}, {"cp50220", mail_charset::jis},
    {"cp50221", mail_charset::jis}, {"cp50222", mail_charset::jis},
    {"utf-8", mail_charset::utf8}, {"utf8", mail_charset::utf8}, {"unicode-1-1-utf-8", mail_charset::utf8},
    {"shift_jis", mail_charset::sjis}, {"shift-jis", mail_charset::sjis}, {"sjis", mail_charset::sjis},
    {"x-sjis", mail_charset::sjis}, {"ms_kanji", mail_charset::sjis}, {"csshiftjis", mail_charset::sjis},
    {"windows-31j", mail_charset::sjis}, {"cp932", mail_charset::sjis}, {"ms932", mail_charset::sjis},
    {"x-ms-cp932", mail_charset::sjis}, {"shift_jis-2004", mail_charset::sjis},
    {"euc-jp", mail_charset::eucjp}, {"eucjp", mail_charset::eucjp}, {"x-euc-jp", mail_charset::eucjp},
    {"x-euc", mail_charset::eucjp}, {"cseucpkdfmtjapanese", mail_charset::eucjp},
    {"euc-jp-ms", mail_charset::eucjp}, {"eucjp-ms", mail_charset::eucjp}, {"eucjp-win", mail_charset::eucjp},
    {"cp51932", mail_charset::eucjp},
    {"gb2312", mail_charset::gb18030}, {"gbk", mail_charset::gb18030}, {"gb18030", mail_charset::gb18030},
    {"x-gbk", mail_charset::gb18030}, {"cp936", mail_charset::gb18030}, {"ms936", mail_charset::gb18030},
    {"windows-936", mail_charset::gb18030}, {"euc-cn", mail_charset::gb18030}, {"csgb2312", mail_charset::gb18030},
    {"big5", mail_charset::big5}, {"big5-hkscs", mail_charset::big5}, {"cn-big5", mail_charset::big5},
    {"x-x-big5", mail_charset::big5}, {"csbig5", mail_charset::big5}, {"cp950", mail_charset::big5},
    {"euc-kr", mail_charset::euckr}, {"ks_c_5601-1987", mail_charset::euckr}, {"ks_c_5601-1989", mail_charset::euckr},
    {"ksc5601", mail_charset::euckr}, {"cseuckr", mail_charset::euckr}, {"cp949", mail_charset::euckr},
    {"windows-949", mail_charset::euckr}, {"uhc", mail_charset::euckr},
    {"iso-8859-1", mail_charset::cp1252}, {"iso8859-1", mail_charset::cp1252}, {"iso_8859-1", mail_charset::cp1252},
    {"latin1", mail_charset::cp1252}, {"l1", mail_charset::cp1252}, {"csisolatin1", mail_charset::cp1252},
    {"cp819", mail_charset::cp1252}, {"windows-1252", mail_charset::cp1252}, {"cp1252", mail_charset::cp1252},
    {"x-cp1252", mail_charset::cp1252},
    {"windows-1251", mail_charset::cp1251}, {"cp1251", mail_charset::cp1251}, {"x-cp1251", mail_charset::cp1251},
    {"koi8-r", mail_charset::koi8r}, {"cskoi8r", mail_charset::koi8r}, {"koi8", mail_charset::koi8r},
};

// Names are matched by hash (a name is never stored): no two aliases may collide.
constexpr bool aliases_distinct() {
    for (size_t i = 0; i < std::size(charset_aliases); ++i)
        for (size_t j = i + 1; j < std::size(charset_aliases); ++j)
            if (hash_of(charset_aliases[i].name) == hash_of(charset_aliases[j].name)) return false;
    return true;
}
static_assert(aliases_distinct());

constexpr size_t max_charset_name = 40;

mail_charset charset_by_hash(uint32_t h) {
    for (const charset_alias& a : charset_aliases)
        if (hash_of(a.name) == h) return a.cs;
    return mail_charset::raw;
}

// glibc names, preferred first.
struct iconv_names {
    const char* first;
    const char* second;
};
iconv_names iconv_name(mail_charset c) {
    switch (c) {
    case mail_charset::sjis: return {"CP932", "SHIFT_JIS"};
    case mail_charset::eucjp: return {"EUC-JP-MS", "EUC-JP"};  // also ISO-2022-JP, rewritten to EUC-JP
    case mail_charset::gb18030: return {"GB18030", "GBK"};
    case mail_charset::big5: return {"BIG5-HKSCS", "BIG5"};
    case mail_charset::euckr: return {"CP949", "EUC-KR"};
    case mail_charset::cp1252: return {"CP1252", "ISO-8859-1"};
    case mail_charset::cp1251: return {"CP1251", nullptr};
    case mail_charset::koi8r: return {"KOI8-R", nullptr};
    default: return {nullptr, nullptr};
    }
}

// --- bytes -----------------------------------------------------------------------

constexpr bool is_wsp(uint8_t c) { return c == ' ' || c == '\t'; }
constexpr bool is_hex(uint8_t c) {
    return (c >= '0' && c <= '9') || (ascii_lower(c) >= 'a' && ascii_lower(c) <= 'f');
}
constexpr uint8_t hex_value(uint8_t c) {
    return static_cast<uint8_t>(c <= '9' ? c - '0' : ascii_lower(c) - 'a' + 10);
}
// RFC 2047 token: no SPACE, CTLs or especials.
constexpr bool is_ew_token(uint8_t c) {
    if (c <= 32 || c >= 127) return false;
    return std::string_view("()<>@,;:\"/[]?.=").find(static_cast<char>(c)) == std::string_view::npos;
}
// RFC 5322 ftext.
constexpr bool is_ftext(uint8_t c) { return c >= 33 && c <= 126 && c != ':'; }

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
constexpr base64_table b64;

struct hex_table {
    int8_t v[256];
    constexpr hex_table() : v() {
        for (int c = 0; c < 256; ++c) v[c] = is_hex(static_cast<uint8_t>(c)) ? static_cast<int8_t>(hex_value(static_cast<uint8_t>(c))) : -1;
    }
};
constexpr hex_table hex_digit;

constexpr uint8_t replacement[3] = {0xEF, 0xBF, 0xBD};  // U+FFFD
constexpr uint8_t crlf[2] = {'\r', '\n'};
constexpr uint8_t dashes[2] = {'-', '-'};
constexpr uint8_t spaces[16] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

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

constexpr uint32_t h_text = hash_of("text"), h_multipart = hash_of("multipart"), h_message = hash_of("message"),
                   h_rfc822 = hash_of("rfc822"), h_global = hash_of("global"), h_charset = hash_of("charset"),
                   h_boundary = hash_of("boundary"), h_base64 = hash_of("base64"),
                   h_qp = hash_of("quoted-printable");

}  // namespace

const char* to_string(mail_charset c) {
    switch (c) {
    case mail_charset::raw: return "raw";
    case mail_charset::utf8: return "utf-8";
    case mail_charset::jis: return "iso-2022-jp";
    case mail_charset::sjis: return "shift_jis";
    case mail_charset::eucjp: return "euc-jp";
    case mail_charset::gb18030: return "gb18030";
    case mail_charset::big5: return "big5";
    case mail_charset::euckr: return "euc-kr";
    case mail_charset::cp1252: return "windows-1252";
    case mail_charset::cp1251: return "windows-1251";
    case mail_charset::koi8r: return "koi8-r";
    case mail_charset::count_: break;
    }
    return "unknown";
}

mail_charset mail_charset_from_name(std::string_view name) {
    if (name.size() > max_charset_name) return mail_charset::raw;
    return charset_by_hash(hash_of(name));
}

// --- per-worker converters ----------------------------------------------------------

charset_converters::~charset_converters() {
    for (void* cd : cd_)
        if (cd) iconv_close(static_cast<iconv_t>(cd));
}

void* charset_converters::get(mail_charset c) {
    const size_t i = static_cast<size_t>(c);
    if (i >= mail_charset_count) return nullptr;
    if (!tried_[i]) {
        tried_[i] = true;
        const iconv_names n = iconv_name(c);
        for (const char* name : {n.first, n.second}) {
            if (!name) continue;
            const iconv_t cd = iconv_open("UTF-8", name);
            if (cd != reinterpret_cast<iconv_t>(-1)) {
                cd_[i] = cd;
                break;
            }
        }
    }
    return cd_[i];
}

// Every JIS character ISO-2022-JP can name, as UTF-8, converted once by the same glibc converter
// that converts EUC-JP (so the mapping is exactly iconv's): ISO-2022-JP then needs no iconv call per
// character. 71 KiB, shared read-only by every worker.
namespace {
// One character's UTF-8. Four bytes, so a converter copies the whole entry with one store and
// advances by its length (the output buffers have room for the extra byte).
struct jis_utf8 {
    uint8_t b[3];  // the UTF-8; U+FFFD for a code that is not a character
    uint8_t len;   // bytes of b (jis_len_mask), with jis_invalid or jis_by_iconv
};
static_assert(sizeof(jis_utf8) == 4);
static_assert(std::endian::native == std::endian::little, "an entry read as one word: its len byte on top");
constexpr uint8_t jis_len_mask = 0x03;
constexpr uint8_t jis_invalid = 0x80;   // not a character: b is U+FFFD, 3 bytes
constexpr uint8_t jis_by_iconv = 0x40;  // iconv must convert it (b unused)
struct jis_table_t {
    jis_utf8 x0208[94 * 94];  // [(row - 0x21) * 94 + cell - 0x21]
    jis_utf8 x0212[94 * 94];
    jis_utf8 kana[63];        // 0x21-0x5f
};

void jis_fill(iconv_t cd, const uint8_t* euc, size_t n, jis_utf8& e) {
    iconv(cd, nullptr, nullptr, nullptr, nullptr);
    char in[3], out[16];
    std::memcpy(in, euc, n);
    char* ip = in;
    char* op = out;
    size_t il = n, ol = sizeof out;
    const size_t r = iconv(cd, &ip, &il, &op, &ol);
    const size_t len = sizeof out - ol;
    if (r != static_cast<size_t>(-1) && il == 0 && len >= 1 && len <= 3) {
        e.len = static_cast<uint8_t>(len);
        std::memcpy(e.b, out, len);
    } else if (r == static_cast<size_t>(-1) && errno == EILSEQ && len == 0) {
        e.len = jis_invalid | 3;
        std::memcpy(e.b, replacement, 3);
    } else {
        e.len = jis_by_iconv;  // anything unusual: leave it to iconv, as before
    }
}

const jis_table_t* build_jis_table(const iconv_names& names) {
    static jis_table_t table;
    for (const char* name : {names.first, names.second}) {
        if (!name) continue;
        const iconv_t cd = iconv_open("UTF-8", name);
        if (cd == reinterpret_cast<iconv_t>(-1)) continue;
        for (unsigned r = 0; r < 94; ++r)
            for (unsigned c = 0; c < 94; ++c) {
                const uint8_t two[2] = {static_cast<uint8_t>(0xa1 + r), static_cast<uint8_t>(0xa1 + c)};
                const uint8_t three[3] = {0x8f, two[0], two[1]};
                jis_fill(cd, two, 2, table.x0208[r * 94 + c]);
                jis_fill(cd, three, 3, table.x0212[r * 94 + c]);
            }
        for (unsigned c = 0; c < 63; ++c) {
            const uint8_t two[2] = {0x8e, static_cast<uint8_t>(0xa1 + c)};
            jis_fill(cd, two, 2, table.kana[c]);
        }
        iconv_close(cd);
        return &table;
    }
    return nullptr;
}
// Shift_JIS (CP932) and EUC-JP (EUC-JP-MS), stateless: a byte that is a character alone, and the
// double-byte characters, as the charset's own converter converts each on its own. Anything the
// table does not hold as one clean character (invalid or unusual sequences, a lead byte at the end
// of a piece) is left to iconv, so the output is exactly iconv's. Shift_JIS: 95 KiB; EUC-JP reuses
// the ISO-2022-JP table (its pair array stays untouched BSS). Shared read-only by every worker.
struct mb_table_t {
    mail_charset cs;
    jis_utf8 single[256];        // jis_by_iconv: not a character alone
    jis_utf8 pair[124 * 189];    // Shift_JIS: leads 0x81-0xfc x trails 0x40-0xfc (EUC-JP: jis_table_t)
    const jis_table_t* euc;      // EUC-JP: JIS X 0208 / 0212 / kana, same converter
};

const mb_table_t* build_mb_table(mail_charset c, const jis_table_t* jis) {
    static mb_table_t sjis_table, euc_table;
    mb_table_t& t = c == mail_charset::sjis ? sjis_table : euc_table;
    const iconv_names names = iconv_name(c);
    for (const char* name : {names.first, names.second}) {
        if (!name) continue;
        const iconv_t cd = iconv_open("UTF-8", name);
        if (cd == reinterpret_cast<iconv_t>(-1)) continue;
        t.cs = c;
        for (unsigned b = 0; b < 256; ++b) {
            const uint8_t one[1] = {static_cast<uint8_t>(b)};
            jis_fill(cd, one, 1, t.single[b]);
            if (t.single[b].len & jis_invalid) t.single[b].len = jis_by_iconv;  // invalid alone: iconv decides
        }
        if (c == mail_charset::sjis) {
            for (unsigned l = 0; l < 124; ++l)
                for (unsigned r = 0; r < 189; ++r) {
                    const uint8_t two[2] = {static_cast<uint8_t>(0x81 + l), static_cast<uint8_t>(0x40 + r)};
                    jis_utf8& e = t.pair[l * 189 + r];
                    jis_fill(cd, two, 2, e);
                    if (e.len & jis_invalid) e.len = jis_by_iconv;
                }
        }
        t.euc = jis;
        iconv_close(cd);
        return &t;
    }
    return nullptr;
}
}  // namespace

const void* charset_converters::mb_table(mail_charset c) {
    if (c == mail_charset::sjis) {
        if (!sjis_tried_) {
            sjis_tried_ = true;
            if (get(c)) {
                static const mb_table_t* shared = build_mb_table(c, nullptr);
                sjis_ = shared;
            }
        }
        return sjis_;
    }
    if (c == mail_charset::eucjp) {
        if (!eucjp_tried_) {
            eucjp_tried_ = true;
            const auto* jis = static_cast<const jis_table_t*>(jis_table());
            if (get(c) && jis) {
                static const mb_table_t* shared = build_mb_table(c, jis);
                eucjp_ = shared;
            }
        }
        return eucjp_;
    }
    return nullptr;
}

const void* charset_converters::jis_table() {
    if (!jis_tried_) {
        jis_tried_ = true;
        if (get(mail_charset::eucjp)) {
            static const jis_table_t* shared = build_jis_table(iconv_name(mail_charset::eucjp));
            jis_ = shared;
        }
    }
    return jis_;
}

bool charset_converters::available(mail_charset c) {
    switch (c) {
    case mail_charset::raw:
    case mail_charset::utf8: return true;
    case mail_charset::jis: return get(mail_charset::eucjp) != nullptr && (jis_table(), true);
    case mail_charset::sjis:
    case mail_charset::eucjp: return get(c) != nullptr && (mb_table(c), true);
    default: return get(c) != nullptr;
    }
}

size_t charset_converters::open_all() {
    size_t n = 0;
    for (size_t i = 0; i < mail_charset_count; ++i) n += available(static_cast<mail_charset>(i));
    return n;
}

// --- feed()'s context: output buffers on the stack -------------------------------------------

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

// --- life cycle ---------------------------------------------------------------------------

void mail_decoder::reset(uint32_t max_body_bytes) {
    std::memset(static_cast<void*>(this), 0, sizeof *this);
    body_limit_ = max_body_bytes;
    flags_ = f_top;
    mode_ = m_headers;
    lstate_ = ls_bol;
    hstate_ = hs::line_start;
    reset_part_info();
    conv_reset(mail_charset::jis);
}

void mail_decoder::reset_part_info() {
    ctype_ = ct::text;
    cte_ = xfer::identity;
    charset_ = mail_charset::jis;
    pblen_ = 0;
}

void mail_decoder::feed(const uint8_t* p, size_t n, mail_decoder_sink& sink, charset_converters& cv) {
    if ((flags_ & f_finished) || n == 0) return;
    io x(sink, cv, where());
    size_t i = 0;
    while (i < n) {
        switch (lstate_) {
        case ls_bol:
            if (!depth_) {
                lstate_ = ls_mid;
                break;
            }
            bm_k_ = 0;
            bm_alive_ = static_cast<uint8_t>((1u << depth_) - 1);
            lstate_ = ls_match;
            [[fallthrough]];
        case ls_match: i = match_boundary(x, p, i, n); break;
        case ls_delim:
            if (p[i] == '-' && bm_dash_ < 2) {
                ++i;
                if (++bm_dash_ == 2) {
                    lstate_ = ls_skipline;
                    apply_delimiter(x, bm_level_, true);
                }
            } else {  // not a close delimiter; the rest of the line is ignored either way
                lstate_ = ls_skipline;
                apply_delimiter(x, bm_level_, false);
            }
            break;
        case ls_skipline: {
            const void* lf = std::memchr(p + i, '\n', n - i);
            if (!lf) {
                i = n;
            } else {
                i = static_cast<size_t>(static_cast<const uint8_t*>(lf) - p) + 1;
                lstate_ = ls_bol;
            }
            break;
        }
        default: i = mid_line(x, p, i, n); break;
        }
    }
    end_feed(x);
}

void mail_decoder::finish(mail_decoder_sink& sink, charset_converters& cv) {
    if (flags_ & f_finished) return;
    io x(sink, cv, where());
    switch (lstate_) {
    case ls_match: not_delimiter(x); break;
    case ls_delim: apply_delimiter(x, bm_level_, false); break;
    case ls_mid:
        if (flags_ & f_cr_held) {
            flags_ &= static_cast<uint16_t>(~f_cr_held);
            deliver(x, crlf, 1);
        }
        break;
    default: break;
    }
    lstate_ = ls_bol;
    // A last line with no colon and no line break is body (twice at most: an embedded message's
    // header block takes the line too, then it is text).
    for (int k = 0; k < 3 && mode_ == m_headers && (hstate_ == hs::name || hstate_ == hs::name_ws); ++k)
        not_a_header(x, nullptr, 0, 0);
    if (mode_ == m_headers && (flags_ & f_field_open)) end_field(x);
    if (mode_ == m_text) {
        if (eol_) text_eol(x, eol_);  // the message's last line break is part of the last part
        eol_ = 0;
        text_end(x);
    }
    end_feed(x);
    flags_ |= f_finished;
}

void mail_decoder::end_feed(io& x) {
    dec_flush(x);
    euc_flush(x);
    flush_out(x);
}

// --- line layer: lines, delimiters -------------------------------------------------------

size_t mail_decoder::mid_line(io& x, const uint8_t* p, size_t i, size_t n) {
    if (flags_ & f_cr_held) {
        flags_ &= static_cast<uint16_t>(~f_cr_held);
        if (p[i] == '\n') {
            lstate_ = ls_bol;
            deliver_eol(x, 2);
            return i + 1;
        }
        deliver(x, crlf, 1);  // a bare CR is content
    }
    if (mode_ != m_headers && !depth_) {
        // A body outside any multipart: no delimiter can follow, so its line breaks need not be
        // found at all. They are content (identity: CR and LF convert as themselves), ignored
        // (base64, skipped) or read by text_bytes (quoted-printable, which only needs a CR at
        // the end held back until it is known whether LF follows): the whole piece in one run.
        size_t end = n;
        if (cte_ == xfer::qp && mode_ == m_text && p[end - 1] == '\r') {
            --end;
            flags_ |= f_cr_held;
        }
        deliver(x, p + i, end - i);
        return n;
    }
    const void* lf = std::memchr(p + i, '\n', n - i);
    if (lf && mode_ != m_headers) {
        // Lines followed by one that cannot be a delimiter (no '-' first, or no multipart open)
        // go as one run: their line breaks are content (identity), ignored (base64, skipped), or
        // read by text_bytes (quoted-printable). Header lines need their line breaks one by one.
        const uint8_t* l = static_cast<const uint8_t*>(lf);
        const uint8_t* const e = p + n;
        while (l + 1 < e && l[1] != '-') {
            l = static_cast<const uint8_t*>(std::memchr(l + 1, '\n', static_cast<size_t>(e - l - 1)));
            if (!l) break;
        }
        lf = l;
    }
    if (!lf) {
        size_t end = n;
        if (p[end - 1] == '\r') {  // maybe the CR of a CRLF
            --end;
            flags_ |= f_cr_held;
        }
        deliver(x, p + i, end - i);
        return n;
    }
    const size_t at = static_cast<size_t>(static_cast<const uint8_t*>(lf) - p);
    size_t end = at;
    uint8_t kind = 1;
    if (end > i && p[end - 1] == '\r') {
        --end;
        kind = 2;
    }
    deliver(x, p + i, end - i);
    lstate_ = ls_bol;
    deliver_eol(x, kind);
    return at + 1;
}

// Matches "--" boundary at a line start against every open level at once. The bytes held
// meanwhile are "--" and a prefix of a boundary still matching, so they need no buffer.
// The first level to match entirely wins (innermost on a tie): conforming boundaries are never
// a prefix of an enclosing one (RFC 2046 5.1.1).
size_t mail_decoder::match_boundary(io& x, const uint8_t* p, size_t i, size_t n) {
    while (i < n) {
        const uint8_t c = p[i];
        uint8_t next = 0, full = 0;
        for (uint8_t l = 0; l < depth_; ++l) {
            const uint8_t bit = static_cast<uint8_t>(1u << l);
            if (!(bm_alive_ & bit)) continue;
            const uint8_t want = bm_k_ < 2 ? '-' : boundary_[l][bm_k_ - 2];
            if (c != want) continue;
            next |= bit;
            if (bm_k_ + 1u == 2u + blen_[l]) full = static_cast<uint8_t>(l + 1);
        }
        if (!next) {
            not_delimiter(x);
            lstate_ = ls_mid;
            return i;
        }
        ++i;
        ++bm_k_;
        bm_alive_ = next;
        if (full) {
            bm_level_ = static_cast<uint8_t>(full - 1);
            bm_dash_ = 0;
            lstate_ = ls_delim;
            return i;
        }
    }
    return i;
}

void mail_decoder::not_delimiter(io& x) {
    const uint8_t k = bm_k_;
    bm_k_ = 0;
    if (!k) return;
    uint8_t w = 0;
    while (!(bm_alive_ & (1u << w))) ++w;
    deliver(x, dashes, k < 2 ? k : 2);
    if (k > 2) deliver(x, boundary_[w], k - 2u);
}

void mail_decoder::apply_delimiter(io& x, uint8_t level, bool close) {
    if (mode_ == m_headers && (flags_ & f_field_open)) end_field(x);
    if (mode_ == m_text) text_end(x);
    eol_ = 0;  // the line break before a delimiter is the delimiter's
    hstate_ = hs::line_start;
    if (close) {
        depth_ = level;  // and inner levels closed with it
        mode_ = m_skip;  // the epilogue
        return;
    }
    depth_ = static_cast<uint8_t>(level + 1);
    flush_out(x);
    ++parts_;
    mode_ = m_headers;
    flags_ &= static_cast<uint16_t>(~f_top);
    reset_part_info();
    x.target = mail_part::header;
    x.sink.on_part_boundary();
}

void mail_decoder::deliver(io& x, const uint8_t* p, size_t n) {
    if (!n) return;
    switch (mode_) {
    case m_headers: header_bytes(x, p, n); return;
    case m_text:
        if (eol_) {
            const uint8_t k = eol_;
            eol_ = 0;
            text_eol(x, k);
        }
        text_bytes(x, p, n);
        return;
    default: return;
    }
}

void mail_decoder::deliver_eol(io& x, uint8_t kind) {
    switch (mode_) {
    case m_headers: header_eol(x, kind); return;
    case m_text:
        if (eol_) text_eol(x, eol_);
        eol_ = kind;  // held until the next line is known not to be a delimiter
        return;
    default: return;
    }
}

// --- header blocks ------------------------------------------------------------------------

void mail_decoder::header_bytes(io& x, const uint8_t* p, size_t n) {
    size_t i = 0;
    while (i < n) {
        const uint8_t c = p[i];
        switch (hstate_) {
        case hs::line_start:
            if (is_wsp(c)) {
                if (!(flags_ & f_field_open)) {  // a continuation of nothing
                    name_len_ = 0;
                    name_ws_ = 0;
                    not_a_header(x, p + i, n - i, 0);
                    return;
                }
                hstate_ = (flags_ & f_value_started) ? hs::value : hs::value_lead;  // unfolding: WSP stays
                continue;
            }
            if (flags_ & f_field_open) end_field(x);
            name_len_ = 0;
            name_ws_ = 0;
            hstate_ = hs::name;
            [[fallthrough]];
        case hs::name:
            if (c == ':' && name_len_) {
                ++i;
                begin_value(x);
                continue;
            }
            if (is_ftext(c)) {
                if (name_len_ < mail_max_header_name) name_[name_len_++] = static_cast<char>(c);
                ++i;
                continue;
            }
            if (is_wsp(c) && name_len_) {
                hstate_ = hs::name_ws;
                continue;
            }
            not_a_header(x, p + i, n - i, 0);
            return;
        case hs::name_ws:
            if (is_wsp(c)) {
                if (name_ws_ < UINT8_MAX) ++name_ws_;
                ++i;
                continue;
            }
            if (c == ':') {
                ++i;
                begin_value(x);
                continue;
            }
            not_a_header(x, p + i, n - i, 0);
            return;
        case hs::value_lead:
            if (is_wsp(c)) {
                ++i;
                continue;
            }
            hstate_ = hs::value;
            [[fallthrough]];
        default: {  // hs::value: the rest of the line
            flags_ |= f_value_started;
            if (field_kind_ != fk::other)
                for (size_t j = i; j < n; ++j) ct_byte(p[j]);
            while (i < n) {
                if (ew_state_ == ew::text) {  // plain text up to the next '='
                    const void* eq = std::memchr(p + i, '=', n - i);
                    const size_t end = eq ? static_cast<size_t>(static_cast<const uint8_t*>(eq) - p) : n;
                    if (end > i) {
                        raw_mode(x);
                        dec_flush(x);
                        convert(x, p + i, end - i);
                    }
                    i = end;
                    if (i == n) break;
                }
                ew_byte(x, p[i++]);
            }
            return;
        }
        }
    }
}

void mail_decoder::header_eol(io& x, uint8_t kind) {
    switch (hstate_) {
    case hs::line_start: end_headers(x); return;  // the empty line
    case hs::name:
    case hs::name_ws: not_a_header(x, nullptr, 0, kind); return;
    default: hstate_ = hs::line_start; return;  // the field may go on (folded) on the next line
    }
}

// The line being read is not a header field: the header block ended before it, and it is the
// first line of the body (name_ holds its first bytes, name_ws_ the blanks after them).
void mail_decoder::not_a_header(io& x, const uint8_t* rest, size_t n, uint8_t eol_kind) {
    uint8_t head[mail_max_header_name];
    const uint8_t head_len = name_len_, ws = name_ws_;
    std::memcpy(head, name_, head_len);
    name_len_ = 0;
    name_ws_ = 0;
    hstate_ = hs::line_start;
    end_headers(x);
    deliver(x, head, head_len);
    for (uint8_t left = ws; left;) {
        const uint8_t k = left < sizeof spaces ? left : sizeof spaces;
        deliver(x, spaces, k);
        left = static_cast<uint8_t>(left - k);
    }
    deliver(x, rest, n);
    if (eol_kind) {
        lstate_ = ls_bol;
        deliver_eol(x, eol_kind);
    }
}

void mail_decoder::begin_value(io& x) {
    for (uint8_t k = 0; k < name_len_; ++k) name_[k] = static_cast<char>(ascii_lower(static_cast<uint8_t>(name_[k])));
    const std::string_view name(name_, name_len_);
    field_kind_ = name == "content-type" ? fk::ctype : name == "content-transfer-encoding" ? fk::cte : fk::other;
    ct_state_ = cts::type_lead;
    ct_param_ = prm::other;
    ct_major_ = major::none;
    flags_ = static_cast<uint16_t>((flags_ | f_field_open) & ~(f_value_started | f_ew_after | f_ew_conv));
    hstate_ = hs::value_lead;
    ew_state_ = ew::text;
    ew_hold_len_ = 0;
    ew_ws_ = 0;
    set_target(x, mail_part::header);
    conv_reset(mail_charset::jis);
}

void mail_decoder::end_field(io& x) {
    ew_finish(x);
    if (field_kind_ == fk::cte) {
        if (ct_state_ != cts::type_lead)
            cte_ = ct_hash_ == h_base64 ? xfer::base64 : ct_hash_ == h_qp ? xfer::qp : xfer::identity;
    } else if (field_kind_ == fk::ctype) {
        if (ct_state_ == cts::subtype) ct_byte(';');  // ends the subtype
        if (ct_state_ == cts::ptoken || ct_state_ == cts::pquoted || ct_state_ == cts::pquoted_esc) ct_value_end();
    }
    field_kind_ = fk::other;
    set_target(x, mail_part::header);
    x.sink.on_header(std::string_view(name_, name_len_), x.out, x.out_len, true);
    x.out_len = 0;
    flags_ &= static_cast<uint16_t>(~(f_field_open | f_value_started));
}

void mail_decoder::end_headers(io& x) {
    if (flags_ & f_field_open) end_field(x);
    hstate_ = hs::line_start;
    eol_ = 0;
    switch (ctype_) {
    case ct::multipart:
        if (depth_ >= mail_max_depth) {
            flags_ |= f_too_deep;
            mode_ = m_skip;
            return;
        }
        if (pblen_) {
            blen_[depth_++] = pblen_;
            mode_ = m_skip;  // the preamble
            return;
        }
        break;  // no boundary: shown as text
    case ct::message:
        if (cte_ != xfer::identity) {
            mode_ = m_skip;
            return;
        }
        // An embedded message: its header block follows.
        flush_out(x);
        ++parts_;
        flags_ &= static_cast<uint16_t>(~f_top);
        reset_part_info();
        mode_ = m_headers;
        x.target = mail_part::header;
        x.sink.on_part_boundary();
        return;
    case ct::other: mode_ = m_skip; return;
    default: break;
    }
    if (flags_ & f_truncated) {
        mode_ = m_skip;
        return;
    }
    mode_ = m_text;
    start_text(x);
}

// Content-Type (type/subtype; parameters) and Content-Transfer-Encoding, from the raw unfolded
// value. Only charset= and boundary= are kept: the boundary straight into the next free level.
void mail_decoder::ct_byte(uint8_t c) {
    const bool wsp = is_wsp(c);
    if (field_kind_ == fk::cte) {
        switch (ct_state_) {
        case cts::type_lead:
            if (wsp) return;
            ct_state_ = cts::type;
            ct_hash_ = fnv_basis;
            [[fallthrough]];
        case cts::type:
            if (wsp || c == ';' || c == '(') ct_state_ = cts::done;
            else ct_hash_ = hash_step(ct_hash_, c);
            return;
        default: return;
        }
    }
    switch (ct_state_) {
    case cts::type_lead:
        if (wsp) return;
        ct_state_ = cts::type;
        ct_hash_ = fnv_basis;
        [[fallthrough]];
    case cts::type:
        if (c == '/') {
            ct_major_ = ct_hash_ == h_text        ? major::text
                        : ct_hash_ == h_multipart ? major::multipart
                        : ct_hash_ == h_message   ? major::message
                                                  : major::other;
            ct_state_ = cts::subtype;
            ct_hash_ = fnv_basis;
        } else if (wsp || c == ';') {
            ct_state_ = cts::params;  // no subtype: not a usable type, the default stays
        } else {
            ct_hash_ = hash_step(ct_hash_, c);
        }
        return;
    case cts::subtype:
        if (wsp || c == ';' || c == '(') {
            switch (ct_major_) {
            case major::text: ctype_ = ct::text; break;
            case major::multipart: ctype_ = ct::multipart; break;
            case major::message: ctype_ = ct_hash_ == h_rfc822 || ct_hash_ == h_global ? ct::message : ct::other; break;
            default: ctype_ = ct::other; break;
            }
            ct_state_ = cts::params;
        } else {
            ct_hash_ = hash_step(ct_hash_, c);
        }
        return;
    case cts::params:
        if (wsp || c == ';') return;
        ct_state_ = cts::pname;
        ct_hash_ = fnv_basis;
        [[fallthrough]];
    case cts::pname:
    case cts::pname_ws:
        if (c == '=') {
            ct_param_ = ct_hash_ == h_charset ? prm::charset : ct_hash_ == h_boundary ? prm::boundary : prm::other;
            ct_hash_ = fnv_basis;
            ct_len_ = 0;
            if (ct_param_ == prm::boundary) pblen_ = 0;
            ct_state_ = cts::pvalue_lead;
        } else if (c == ';') {
            ct_state_ = cts::params;
        } else if (wsp) {
            ct_state_ = cts::pname_ws;
        } else if (ct_state_ == cts::pname_ws) {  // "a b": a new name
            ct_hash_ = hash_step(fnv_basis, c);
            ct_state_ = cts::pname;
        } else {
            ct_hash_ = hash_step(ct_hash_, c);
        }
        return;
    case cts::pvalue_lead:
        if (wsp) return;
        if (c == '"') {
            ct_state_ = cts::pquoted;
            return;
        }
        ct_state_ = cts::ptoken;
        [[fallthrough]];
    case cts::ptoken:
    case cts::pquoted:
        if (ct_state_ == cts::ptoken ? (wsp || c == ';') : c == '"') {
            ct_value_end();
            ct_state_ = cts::params;
            return;
        }
        if (ct_state_ == cts::pquoted && c == '\\') {
            ct_state_ = cts::pquoted_esc;
            return;
        }
        break;
    case cts::pquoted_esc: ct_state_ = cts::pquoted; break;
    default: return;
    }
    // A parameter value byte.
    if (ct_param_ == prm::charset) {
        ct_hash_ = hash_step(ct_hash_, c);
        if (ct_len_ < UINT8_MAX) ++ct_len_;
    } else if (ct_param_ == prm::boundary && depth_ < mail_max_depth && pblen_ < mail_max_boundary) {
        boundary_[depth_][pblen_++] = c;
    }
}

void mail_decoder::ct_value_end() {
    if (ct_param_ == prm::charset)
        charset_ = ct_len_ > max_charset_name ? mail_charset::raw : charset_by_hash(ct_hash_);
    ct_param_ = prm::other;
}

// --- RFC 2047 encoded words -----------------------------------------------------------------

// A byte of plain header text: ISO-2022-JP-aware (raw ISO-2022-JP headers are common), other
// bytes as they are.
void mail_decoder::raw_mode(io& x) {
    if (flags_ & f_ew_conv) {  // the converter served an encoded word
        convert_end(x);
        conv_reset(mail_charset::jis);
        flags_ &= static_cast<uint16_t>(~f_ew_conv);
    }
}

void mail_decoder::raw_byte(io& x, uint8_t c) {
    raw_mode(x);
    if (x.dec_len == io::dec_size) dec_flush(x);
    x.dec[x.dec_len++] = c;
}

// "=?charset?X?" is held in ew_hold_ until it is known to open an encoded word.
void mail_decoder::ew_byte(io& x, uint8_t c) {
    auto hold = [this](uint8_t b) {  // room checked by each state
        assert(ew_hold_len_ < sizeof ew_hold_);
        ew_hold_[ew_hold_len_++] = b;
    };
    auto put_dec = [&x, this](uint8_t b) {
        if (x.dec_len == io::dec_size) dec_flush(x);
        x.dec[x.dec_len++] = b;
    };
    switch (ew_state_) {
    case ew::text:
        if (c == '=') {
            ew_hold_len_ = 0;
            hold(c);
            flags_ &= static_cast<uint16_t>(~f_ew_after);
            ew_state_ = ew::eq;
            return;
        }
        raw_byte(x, c);
        return;
    case ew::after:  // an encoded word just ended: whitespace is held (dropped before another one)
        if (is_wsp(c)) {
            if (ew_ws_ < UINT16_MAX) ++ew_ws_;
            return;
        }
        if (c == '=') {
            ew_hold_len_ = 0;
            hold(c);
            flags_ |= f_ew_after;
            ew_state_ = ew::eq;
            return;
        }
        ew_leave(x);
        raw_byte(x, c);
        return;
    case ew::eq:
        if (c == '?') {
            hold(c);
            ew_cs_len_ = 0;
            ew_state_ = ew::charset;
            return;
        }
        break;
    case ew::charset:
        if (ew_hold_len_ >= sizeof ew_hold_) break;  // too long for a prefix: not decoded
        if ((c == '?' || c == '*') && ew_cs_len_) {
            hold(c);
            ew_state_ = c == '?' ? ew::enc : ew::lang;
            return;
        }
        if (is_ew_token(c) && ew_cs_len_ < max_charset_name) {
            hold(c);
            ++ew_cs_len_;
            return;
        }
        break;
    case ew::lang:  // RFC 2231 language: ignored
        if (ew_hold_len_ >= sizeof ew_hold_) break;
        if (c == '?') {
            hold(c);
            ew_state_ = ew::enc;
            return;
        }
        if (is_ew_token(c)) {
            hold(c);
            return;
        }
        break;
    case ew::enc:
        if (ew_hold_len_ >= sizeof ew_hold_) break;
        if (ascii_lower(c) == 'b' || ascii_lower(c) == 'q') {
            hold(c);
            ew_state_ = ew::enc_q;
            return;
        }
        break;
    case ew::enc_q:
        if (c == '?') {
            ew_commit(x);
            return;
        }
        break;
    case ew::b:
        if (c == '?') {
            ew_state_ = ew::end_q;
        } else if (is_wsp(c)) {  // unterminated: the word ends here
            ew_state_ = ew::text;
            raw_byte(x, c);
        } else if (b64.v[c] >= 0) {
            const unsigned acc = static_cast<unsigned>(ew_bits_) << 6 | static_cast<unsigned>(b64.v[c]);
            const unsigned nb = ew_bits_n_ + 6u;
            if (nb >= 8) {
                ew_bits_n_ = static_cast<uint8_t>(nb - 8);
                ew_bits_ = static_cast<uint16_t>(acc & ((1u << ew_bits_n_) - 1));
                put_dec(static_cast<uint8_t>(acc >> ew_bits_n_));
            } else {
                ew_bits_n_ = static_cast<uint8_t>(nb);
                ew_bits_ = static_cast<uint16_t>(acc);
            }
        } else if (c == '=') {  // padding
            ew_bits_ = 0;
            ew_bits_n_ = 0;
        }
        return;
    case ew::q:
        if (c == '?') ew_state_ = ew::end_q;
        else if (is_wsp(c)) {  // unterminated: the word ends here
            ew_state_ = ew::text;
            raw_byte(x, c);
        }
        else if (c == '_') put_dec(' ');
        else if (c == '=') ew_state_ = ew::q_eq;
        else put_dec(c);
        return;
    case ew::q_eq:
        if (is_hex(c)) {
            ew_hex_ = c;
            ew_state_ = ew::q_eq1;
            return;
        }
        put_dec('=');
        ew_state_ = ew::q;
        ew_byte(x, c);
        return;
    case ew::q_eq1:
        ew_state_ = ew::q;
        if (is_hex(c)) {
            put_dec(static_cast<uint8_t>(hex_value(ew_hex_) << 4 | hex_value(c)));
            return;
        }
        put_dec('=');
        put_dec(ew_hex_);
        ew_byte(x, c);
        return;
    case ew::end_q:
        if (c == '=') {
            ew_state_ = ew::after;
            ew_ws_ = 0;
            return;
        }
        ew_state_ = (flags_ & f_ew_q) ? ew::q : ew::b;  // a stray '?' inside the word: ignored
        ew_byte(x, c);
        return;
    default: return;
    }
    // Not an encoded word after all: what was held is text.
    ew_abort(x);
    ew_byte(x, c);
}

void mail_decoder::ew_commit(io& x) {
    uint32_t h = fnv_basis;
    for (uint8_t k = 0; k < ew_cs_len_; ++k) h = hash_step(h, ew_hold_[2 + k]);
    const mail_charset cs = charset_by_hash(h);
    const bool q = ascii_lower(ew_hold_[ew_hold_len_ - 1]) == 'q';
    // Adjacent words of one charset share the converter, so a character split between them joins.
    const bool joined = (flags_ & f_ew_after) && (flags_ & f_ew_conv) && conv_.charset == cs;
    if (!joined) {
        convert_end(x);
        conv_reset(cs);
    }
    flags_ = static_cast<uint16_t>((flags_ | f_ew_conv) & ~f_ew_after);
    flags_ = static_cast<uint16_t>(q ? (flags_ | f_ew_q) : (flags_ & ~f_ew_q));
    ew_ws_ = 0;  // whitespace between encoded words is dropped
    ew_hold_len_ = 0;
    ew_bits_ = 0;
    ew_bits_n_ = 0;
    ew_state_ = q ? ew::q : ew::b;
}

void mail_decoder::ew_abort(io& x) {
    if (flags_ & f_ew_after) ew_leave(x);
    flags_ &= static_cast<uint16_t>(~f_ew_after);
    ew_state_ = ew::text;
    const uint8_t n = ew_hold_len_;
    ew_hold_len_ = 0;
    for (uint8_t k = 0; k < n; ++k) raw_byte(x, ew_hold_[k]);
}

// The whitespace held after an encoded word is text after all (as spaces).
void mail_decoder::ew_leave(io& x) {
    const uint16_t n = ew_ws_;
    ew_ws_ = 0;
    ew_state_ = ew::text;
    for (uint16_t k = 0; k < n; ++k) raw_byte(x, ' ');
}

// The field ended.
void mail_decoder::ew_finish(io& x) {
    switch (ew_state_) {
    case ew::eq:
    case ew::charset:
    case ew::lang:
    case ew::enc:
    case ew::enc_q: ew_abort(x); break;
    default: break;  // an unterminated word ends; trailing whitespace after a word is dropped
    }
    convert_end(x);
    ew_state_ = ew::text;
    ew_ws_ = 0;
    flags_ &= static_cast<uint16_t>(~(f_ew_after | f_ew_conv));
}

// --- bodies -------------------------------------------------------------------------------------

void mail_decoder::start_text(io& x) {
    set_target(x, mail_part::body);
    conv_reset(charset_);
    xstate_ = qp::normal;
    qp_ws_n_ = 0;
    qp_ws_mask_ = 0;
    b64_n_ = 0;
    b64_bits_ = 0;
}

void mail_decoder::text_bytes(io& x, const uint8_t* p, size_t n) {
    if (flags_ & f_truncated) return;
    switch (cte_) {
    case xfer::base64: {
        unsigned bits = b64_bits_, nb = b64_n_;
        size_t d = x.dec_len;
        for (size_t i = 0; i < n; ++i) {
            // Runs of alphabet characters and the line breaks between them: blocks of 32 by the
            // SIMD kernel (if the CPU has one), then quads, then byte by byte.
            while (nb == 0 && n - i >= kernels::base64_block && b64.v[p[i]] >= 0) {
                // As much input as dec has room for the output of (3 bytes per 4 characters at most).
                const size_t room = (io::dec_size - d) / 24 * kernels::base64_block;
                if (room < kernels::base64_block) {  // dec is full
                    x.dec_len = d;
                    dec_flush(x);
                    d = 0;
                    if (flags_ & f_truncated) return;
                    continue;
                }
                const size_t view = std::min(n - i, room);
                size_t written = 0;
                const size_t used = kernels::base64_blocks(p + i, view, x.dec + d, written);
                d += written;
                i += used;
                if (used == 0 || view - used >= kernels::base64_block) break;  // a byte it does not take
            }
            while (nb == 0 && i + 4 <= n) {  // four characters at a time
                const int v0 = b64.v[p[i]], v1 = b64.v[p[i + 1]], v2 = b64.v[p[i + 2]], v3 = b64.v[p[i + 3]];
                if ((v0 | v1 | v2 | v3) < 0) break;
                if (d + 3 > io::dec_size) {
                    x.dec_len = d;
                    dec_flush(x);
                    d = 0;
                    if (flags_ & f_truncated) return;
                }
                const unsigned q = static_cast<unsigned>(v0 << 18 | v1 << 12 | v2 << 6 | v3);
                x.dec[d] = static_cast<uint8_t>(q >> 16);
                x.dec[d + 1] = static_cast<uint8_t>(q >> 8);
                x.dec[d + 2] = static_cast<uint8_t>(q);
                d += 3;
                i += 4;
            }
            if (i == n) break;
            const int8_t v = b64.v[p[i]];
            if (v < 0) {
                if (p[i] == '=') bits = 0, nb = 0;  // padding; what follows starts afresh
                continue;
            }
            bits = bits << 6 | static_cast<unsigned>(v);
            nb += 6;
            if (nb >= 8) {
                nb -= 8;
                if (d == io::dec_size) {
                    x.dec_len = d;
                    dec_flush(x);
                    d = 0;
                    if (flags_ & f_truncated) return;
                }
                x.dec[d++] = static_cast<uint8_t>(bits >> nb);
                bits &= (1u << nb) - 1;
            }
        }
        x.dec_len = d;
        b64_bits_ = static_cast<uint16_t>(bits);
        b64_n_ = static_cast<uint8_t>(nb);
        return;
    }
    case xfer::qp: {
        auto put_dec = [&x, this](uint8_t b) {
            if (x.dec_len == io::dec_size) dec_flush(x);
            x.dec[x.dec_len++] = b;
        };
        // The text may hold line breaks: runs of lines come in one piece (mid_line). A line
        // break inside is what text_eol() does at the end of a line; CR LF and LF are literal
        // bytes when no whitespace is held and no escape is open, which the fast path relies on.
        const bool blocks = simd_active() >= simd_level::avx512;
        size_t i = 0;
        while (i < n) {
            if (xstate_ == qp::normal && qp_ws_n_ == 0) {
                // Fast path: literal bytes (line breaks too), whole =XX escapes and soft line
                // breaks, straight into dec, 64 bytes at a time by the SIMD kernel where the
                // CPU has it. Whitespace that may be trailing (held), '=' without two hex
                // digits or a line break in this piece, and everything after them go through
                // the state machine below, byte by byte.
                size_t d = x.dec_len;
                while (i < n) {
                    if (blocks) {
                        const size_t avail = std::min(n - i, io::dec_size - d + 2);  // output <= input - 2
                        if (avail >= kernels::qp_lookahead) {
                            size_t written = 0;
                            i += kernels::qp_blocks(p + i, avail, x.dec + d, written);
                            d += written;
                            if (i == n) break;
                        }
                    }
                    const uint8_t c = p[i];
                    uint8_t b = c;
                    if (c == '=') {
                        if (i + 2 >= n) break;
                        const int8_t h1 = hex_digit.v[p[i + 1]], h2 = hex_digit.v[p[i + 2]];
                        if ((h1 | h2) >= 0) {
                            b = static_cast<uint8_t>(h1 << 4 | h2);
                            i += 3;
                        } else if (p[i + 1] == '\n' || (p[i + 1] == '\r' && p[i + 2] == '\n')) {
                            i += p[i + 1] == '\n' ? 2 : 3;  // a soft line break
                            continue;
                        } else {
                            break;
                        }
                    } else if (is_wsp(c)) {  // literal if what follows is neither whitespace nor a line break
                        if (i + 1 >= n || is_wsp(p[i + 1]) || p[i + 1] == '\r' || p[i + 1] == '\n') break;
                        ++i;
                    } else {
                        ++i;
                    }
                    if (d == io::dec_size) {
                        x.dec_len = d;
                        dec_flush(x);
                        d = x.dec_len;
                    }
                    x.dec[d++] = b;
                }
                x.dec_len = d;
                if (i == n) break;
            }
            const uint8_t c = p[i];
            if (c == '\n' || (c == '\r' && i + 1 < n && p[i + 1] == '\n')) {
                const uint8_t kind = c == '\n' ? 1 : 2;
                text_eol(x, kind);
                i += kind;
                continue;
            }
            switch (xstate_) {
            case qp::normal:
                if (c == '=') {
                    qp_flush_ws(x);
                    xstate_ = qp::eq;
                } else if (is_wsp(c)) {  // held: trailing whitespace is transport padding (RFC 2045 6.7)
                    if (qp_ws_n_ == 32) qp_flush_ws(x);
                    if (c == '\t') qp_ws_mask_ |= 1u << qp_ws_n_;
                    ++qp_ws_n_;
                } else {
                    if (qp_ws_n_) qp_flush_ws(x);
                    put_dec(c);
                }
                ++i;
                break;
            case qp::eq:
                if (is_hex(c)) {
                    qp_hex_ = c;
                    xstate_ = qp::eq_hex1;
                    ++i;
                } else if (is_wsp(c)) {
                    ++i;  // whitespace before a soft line break
                } else {
                    put_dec('=');  // not an escape: kept as is
                    xstate_ = qp::normal;
                }
                break;
            default:  // qp::eq_hex1
                xstate_ = qp::normal;
                if (is_hex(c)) {
                    put_dec(static_cast<uint8_t>(hex_value(qp_hex_) << 4 | hex_value(c)));
                    ++i;
                } else {
                    put_dec('=');
                    put_dec(qp_hex_);
                }
                break;
            }
        }
        return;
    }
    default:
        if ((conv_.charset == mail_charset::utf8 || conv_.charset == mail_charset::raw) && n >= 256) {
            flush_out(x);  // large runs straight from the input
            emit_body(x, p, n);
            return;
        }
        convert(x, p, n);
        return;
    }
}

void mail_decoder::qp_flush_ws(io& x) {
    for (uint8_t k = 0; k < qp_ws_n_; ++k) {
        if (x.dec_len == io::dec_size) dec_flush(x);
        x.dec[x.dec_len++] = (qp_ws_mask_ >> k) & 1 ? '\t' : ' ';
    }
    qp_ws_n_ = 0;
    qp_ws_mask_ = 0;
}

// A line break inside a text part (the one before a delimiter never gets here).
void mail_decoder::text_eol(io& x, uint8_t kind) {
    if (flags_ & f_truncated) return;
    const uint8_t* eol = kind == 2 ? crlf : crlf + 1;
    switch (cte_) {
    case xfer::base64: return;
    case xfer::qp:
        if (xstate_ == qp::eq) {  // soft line break
            xstate_ = qp::normal;
            return;
        }
        if (xstate_ == qp::eq_hex1) {
            if (x.dec_len + 2 > io::dec_size) dec_flush(x);
            x.dec[x.dec_len++] = '=';
            x.dec[x.dec_len++] = qp_hex_;
        }
        xstate_ = qp::normal;
        qp_ws_n_ = 0;  // trailing whitespace dropped
        qp_ws_mask_ = 0;
        for (uint8_t k = 0; k < kind; ++k) {
            if (x.dec_len == io::dec_size) dec_flush(x);
            x.dec[x.dec_len++] = eol[k];
        }
        return;
    default: convert(x, eol, kind); return;
    }
}

void mail_decoder::text_end(io& x) {
    if (cte_ == xfer::qp && xstate_ == qp::eq_hex1 && !(flags_ & f_truncated)) {
        if (x.dec_len + 2 > io::dec_size) dec_flush(x);
        x.dec[x.dec_len++] = '=';
        x.dec[x.dec_len++] = qp_hex_;
    }
    xstate_ = qp::normal;
    qp_ws_n_ = 0;
    qp_ws_mask_ = 0;
    b64_n_ = 0;
    b64_bits_ = 0;
    convert_end(x);
    flush_out(x);
}

// --- charsets ------------------------------------------------------------------------------------

void mail_decoder::conv_reset(mail_charset c) {
    conv_ = {};
    conv_.charset = c;
}

void mail_decoder::dec_flush(io& x) {
    if (!x.dec_len) return;
    const size_t n = x.dec_len;
    x.dec_len = 0;
    convert(x, x.dec, n);
}

void mail_decoder::convert(io& x, const uint8_t* p, size_t n) {
    if (!n) return;
    switch (conv_.charset) {
    case mail_charset::raw:
    case mail_charset::utf8: put(x, p, n); return;
    case mail_charset::jis: jis_convert(x, p, n); return;
    default: iconv_convert(x, p, n); return;
    }
}

// Ends a run of one charset: what is incomplete becomes U+FFFD.
void mail_decoder::convert_end(io& x) {
    dec_flush(x);
    if (conv_.charset == mail_charset::jis) {
        euc_flush(x);
        if (conv_.lead) put(x, replacement, sizeof replacement);
    } else if (conv_.carry_len) {
        put(x, replacement, sizeof replacement);
    }
    conv_reset(conv_.charset);
}

// ISO-2022-JP: ASCII runs are copied; double-byte characters are rewritten to EUC-JP (JIS X 0208
// row/cell | 0x80, JIS X 0212 behind 0x8F, half-width kana behind 0x8E) and converted by iconv.
// With the table (charset_converters::jis_table), characters go straight to UTF-8; without it, or
// for a character the table leaves to iconv, through the EUC-JP buffer as described.
// The shift state (mode, escape sequence in progress, pending first byte) lives in locals while
// a piece is converted and goes back into conv_ at the end: kept in the object, the byte stores
// to it and the wider loads of it the compiler merges stalled store forwarding at every byte.
void mail_decoder::jis_convert(io& x, const uint8_t* p, size_t n) {
    const auto* table = static_cast<const jis_table_t*>(x.cv.jis_table());
    uint8_t mode = conv_.mode, esc = conv_.esc, lead = conv_.lead;
    auto euc = [&x, this, table](uint8_t a, uint8_t b, uint8_t c, size_t k) {
        if (table) {
            const jis_utf8& e = a == 0x8e   ? table->kana[b - 0xa1]
                                : a == 0x8f ? table->x0212[(b - 0xa1) * 94 + (c - 0xa1)]
                                            : table->x0208[(a - 0xa1) * 94 + (b - 0xa1)];
            if (!(e.len & jis_by_iconv)) {
                euc_flush(x);
                if (x.cap() - x.out_len < 3) flush_out(x);
                std::memcpy(x.out + x.out_len, &e, 4);
                x.out_len += e.len & jis_len_mask;
                return;
            }
        }
        if (x.euc_len + 3 > sizeof x.euc) euc_flush(x);
        x.euc[x.euc_len] = a;
        x.euc[x.euc_len + 1] = b;
        x.euc[x.euc_len + 2] = c;
        x.euc_len += k;
    };
    auto set_mode = [&](uint8_t m) {
        if (lead) {  // half a character
            euc_flush(x);
            put(x, replacement, sizeof replacement);
            lead = 0;
        }
        mode = m;
        esc = je::none;
    };
    size_t i = 0;
    while (i < n) {
        if (esc) {  // an escape sequence: ESC ( B / ( J / ( H / ( I, ESC $ @ / $ B, ESC $ ( D / ( B / ( O / ( Q
            const uint8_t c = p[i];
            switch (esc) {
            case je::esc:
                if (c == '$' || c == '(') {
                    esc = c == '$' ? je::dollar : je::paren;
                    ++i;
                    continue;
                }
                break;
            case je::dollar:  // ESC $ @ (JIS C 6226-1978), ESC $ B (JIS X 0208)
                if (c == 'B' || c == '@') {
                    set_mode(jm::x0208);
                    ++i;
                    continue;
                }
                if (c == '(') {
                    esc = je::dollar_paren;
                    ++i;
                    continue;
                }
                break;
            case je::dollar_paren:  // ESC $ ( D (JIS X 0212); JIS X 0213 plane 1 read as JIS X 0208
                if (c == 'D' || c == 'B' || c == 'O' || c == 'Q') {
                    set_mode(c == 'D' ? jm::x0212 : jm::x0208);
                    ++i;
                    continue;
                }
                break;
            case je::paren:  // ESC ( B (ASCII), ESC ( J (JIS X 0201 Roman, read as ASCII), ESC ( I (kana)
                if (c == 'B' || c == 'J' || c == 'H' || c == 'I') {
                    set_mode(c == 'I' ? jm::kana : jm::ascii);
                    ++i;
                    continue;
                }
                break;
            default: break;
            }
            // An escape sequence this decoder does not know: dropped, the byte is read as text.
            esc = je::none;
            continue;
        }
        if (mode == jm::ascii) {
            const void* e = std::memchr(p + i, 0x1b, n - i);
            const size_t end = e ? static_cast<size_t>(static_cast<const uint8_t*>(e) - p) : n;
            if (end > i) {
                euc_flush(x);
                put(x, p + i, end - i);
            }
            i = end;
            if (e) {
                esc = je::esc;
                ++i;
            }
            continue;
        }
        if (table && mode == jm::x0208 && !lead && x.euc_len == 0) {
            // Runs of whole JIS X 0208 characters: as many at a time as the output has room for,
            // one table load and one store each.
            for (;;) {
                const size_t k = std::min((n - i) / 2, (x.cap() - x.out_len) / 3);
                if (k == 0) {
                    if (n - i < 2 || x.out_len == 0) break;
                    flush_out(x);
                    continue;
                }
                const uint8_t* q = p + i;
                const uint8_t* const end = q + 2 * k;
                uint8_t* o = x.out + x.out_len;
                const jis_utf8* const x0208 = table->x0208;  // a local: the stores through o may alias anything
                for (; q < end; q += 2) {
                    const unsigned row = q[0] - 0x21u, cell = q[1] - 0x21u;
                    if ((row >= 94) | (cell >= 94)) break;
                    // The entry in one load (bytes, then the length byte on top): the compiler read
                    // the length byte apart, twice, besides the word it stores.
                    uint32_t e;
                    std::memcpy(&e, &x0208[row * 94 + cell], 4);
                    std::memcpy(o, &e, 4);
                    // Kana and kanji are 3 bytes of UTF-8: o moves by a constant, so the next
                    // store's address does not wait for this load (a length read from the entry
                    // chained every character's store to the previous one's load).
                    if ((e >> 24 & ~jis_invalid) == 3) {
                        o += 3;
                        continue;
                    }
                    if (e >> 24 & jis_by_iconv) break;
                    o += e >> 24 & jis_len_mask;  // Latin, Greek, Cyrillic signs: 2 bytes
                }
                x.out_len = static_cast<size_t>(o - x.out);
                i = static_cast<size_t>(q - p);
                if (q < end) break;  // a byte that does not start a whole character here
            }
            if (i == n) break;
        }
        const uint8_t c = p[i++];
        if (c == 0x1b) {
            esc = je::esc;
            continue;
        }
        if (c >= 0x21 && c <= 0x7e) {
            if (mode == jm::kana) {
                if (c <= 0x5f) {
                    euc(0x8e, static_cast<uint8_t>(c | 0x80), 0, 2);
                    continue;
                }
            } else if (!lead) {
                lead = c;
                continue;
            } else {
                const uint8_t first = static_cast<uint8_t>(lead | 0x80);
                lead = 0;
                if (mode == jm::x0212) euc(0x8f, first, static_cast<uint8_t>(c | 0x80), 3);
                else euc(first, static_cast<uint8_t>(c | 0x80), 0, 2);
                continue;
            }
        }
        // Not a character byte of this set (controls such as CR LF, space, 8-bit): as it is.
        euc_flush(x);
        if (lead) {
            put(x, replacement, sizeof replacement);
            lead = 0;
        }
        put(x, &c, 1);
    }
    conv_.mode = mode;
    conv_.esc = esc;
    conv_.lead = lead;
}

void mail_decoder::euc_flush(io& x) {
    if (!x.euc_len) return;
    const size_t n = x.euc_len;
    x.euc_len = 0;
    void* cd = x.cv.get(mail_charset::eucjp);
    if (!cd) {
        put(x, replacement, sizeof replacement);
        return;
    }
    // Whole characters only: an invalid one is skipped whole, so pairs never shift.
    if (iconv_run(x, cd, x.euc, n, true)) put(x, replacement, sizeof replacement);
}

// Converts as much as iconv can; returns the length of an incomplete character at the end. An
// invalid sequence becomes U+FFFD and one byte is skipped (a whole EUC-JP character if `euc`).
size_t mail_decoder::iconv_run(io& x, void* cd, const uint8_t* p, size_t n, bool euc) {
    char* in = reinterpret_cast<char*>(const_cast<uint8_t*>(p));
    size_t left = n;
    while (left) {
        if (x.cap() - x.out_len < 8) flush_out(x);
        char* out = reinterpret_cast<char*>(x.out + x.out_len);
        size_t room = x.cap() - x.out_len;
        const size_t r = iconv(static_cast<iconv_t>(cd), &in, &left, &out, &room);
        x.out_len = static_cast<size_t>(reinterpret_cast<uint8_t*>(out) - x.out);
        if (r != static_cast<size_t>(-1)) break;
        if (errno == E2BIG) {
            flush_out(x);
            continue;
        }
        if (errno == EINVAL) return left;
        put(x, replacement, sizeof replacement);  // EILSEQ
        size_t skip = euc ? (static_cast<uint8_t>(*in) == 0x8f ? 3 : 2) : 1;
        if (skip > left) skip = left;
        in += skip;
        left -= skip;
    }
    return 0;
}

// Stateless multibyte charsets: an incomplete character at the end of a piece is carried.
void mail_decoder::iconv_convert(io& x, const uint8_t* p, size_t n) {
    void* cd = x.cv.get(conv_.charset);
    if (!cd) {  // glibc lacks it: as it is
        put(x, p, n);
        return;
    }
    if (conv_.carry_len) {  // the carried bytes and the first new ones, together
        uint8_t buf[8];
        const size_t c = conv_.carry_len;
        const size_t k = n < sizeof buf - c ? n : sizeof buf - c;
        std::memcpy(buf, conv_.carry, c);
        std::memcpy(buf + c, p, k);
        conv_.carry_len = 0;
        const size_t rest = iconv_run(x, cd, buf, c + k);
        const size_t used = c + k - rest;
        if (used >= c) {  // the carried character is done; an incomplete tail is read again from p
            p += used - c;
            n -= used - c;
        } else if (k == n && rest <= sizeof conv_.carry) {  // still incomplete: every new byte went into it
            std::memcpy(conv_.carry, buf + used, rest);
            conv_.carry_len = static_cast<uint8_t>(rest);
            return;
        } else {  // cannot happen: characters are at most 4 bytes
            put(x, replacement, sizeof replacement);
            p += k;
            n -= k;
        }
    }
    if (!n) return;
    if (const void* t = x.cv.mb_table(conv_.charset)) {
        const size_t k = mb_table_run(x, t, p, n);
        p += k;
        n -= k;
        if (!n) return;
    }
    const size_t rest = iconv_run(x, cd, p, n);
    if (rest <= sizeof conv_.carry) {
        std::memcpy(conv_.carry, p + n - rest, rest);
        conv_.carry_len = static_cast<uint8_t>(rest);
    } else {
        put(x, replacement, sizeof replacement);
    }
}

// Converts the whole, clean characters at the start of p by table; returns the bytes used. Stops at
// the first byte the table leaves to iconv (which then goes on from there, as before).
size_t mail_decoder::mb_table_run(io& x, const void* table, const uint8_t* p, size_t n) {
    const auto& t = *static_cast<const mb_table_t*>(table);
    size_t i = 0;
    while (i < n) {
        const uint8_t b = p[i];
        const jis_utf8* e = &t.single[b];
        size_t used = 1;
        if (e->len == jis_by_iconv) {
            if (i + 1 >= n) break;
            const uint8_t b1 = p[i + 1];
            if (t.cs == mail_charset::sjis) {
                if (b < 0x81 || b > 0xfc || b1 < 0x40 || b1 > 0xfc) break;
                e = &t.pair[(b - 0x81) * 189 + (b1 - 0x40)];
                used = 2;
            } else if (b >= 0xa1 && b <= 0xfe && b1 >= 0xa1 && b1 <= 0xfe) {
                e = &t.euc->x0208[(b - 0xa1) * 94 + (b1 - 0xa1)];
                used = 2;
            } else if (b == 0x8e && b1 >= 0xa1 && b1 <= 0xdf) {
                e = &t.euc->kana[b1 - 0xa1];
                used = 2;
            } else if (b == 0x8f && i + 2 < n && b1 >= 0xa1 && b1 <= 0xfe && p[i + 2] >= 0xa1 && p[i + 2] <= 0xfe) {
                e = &t.euc->x0212[(b1 - 0xa1) * 94 + (p[i + 2] - 0xa1)];
                used = 3;
            } else {
                break;
            }
            if (e->len & (jis_invalid | jis_by_iconv)) break;  // invalid or unusual: iconv's business
        }
        if (x.cap() - x.out_len < 3) flush_out(x);
        std::memcpy(x.out + x.out_len, e, 4);
        x.out_len += e->len & jis_len_mask;
        i += used;
    }
    return i;
}

// --- output ----------------------------------------------------------------------------------------

void mail_decoder::set_target(io& x, mail_part t) {
    if (x.target == t) return;
    flush_out(x);
    x.target = t;
}

void mail_decoder::put(io& x, const uint8_t* p, size_t n) {
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

void mail_decoder::flush_out(io& x) {
    if (!x.out_len) return;
    const size_t n = x.out_len;
    x.out_len = 0;
    if (x.target == mail_part::header) x.sink.on_header(std::string_view(name_, name_len_), x.out, n, false);
    else emit_body(x, x.out, n);
}

// The body cap: cut at a UTF-8 character boundary, then nothing more.
void mail_decoder::emit_body(io& x, const uint8_t* p, size_t n) {
    if (flags_ & f_truncated) return;
    const size_t room = body_limit_ - body_bytes_;
    // The cap never splits a UTF-8 character, and where it cuts depends on the text only, not on
    // where pieces end: a lead byte goes out only if its whole sequence fits, any other byte if it
    // does. (Looking ahead at the byte after the cap instead gave a different cut when a piece
    // ended exactly at the cap, and backed over stray continuation bytes after ASCII.)
    if (n + 3 > room) {
        for (size_t i = 0; i < n; ++i) {
            const uint8_t b = p[i];
            const size_t need = b >= 0xF0 && b <= 0xF7 ? 4 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xC0 && b <= 0xDF ? 2 : 1;
            if (i + need > room) {
                n = i;
                flags_ |= f_truncated;
                break;
            }
        }
    }
    if (!n) return;
    x.sink.on_body(p, n);
    body_bytes_ += static_cast<uint32_t>(n);
}

}  // namespace sekisho
