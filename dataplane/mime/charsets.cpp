// mail_decoder: charsets. Names and aliases to mail_charset; the per-worker iconv converters
// (charset_converters, one thread each); the per-process tables of the Japanese charsets, read
// once from glibc's own converters so their mapping is exactly iconv's; and the conversion of
// decoded bytes to UTF-8: UTF-8 and unknown charsets as they are, ISO-2022-JP by its escape
// sequences and the JIS table, Shift_JIS and EUC-JP by table, the others through iconv. The
// shift state and an incomplete character (<= 4 bytes) are carried in the flow; what cannot be
// decoded becomes U+FFFD.
#include "dataplane/mime/mail_decoder_internal.h"

#include <iconv.h>

#include <bit>
#include <cerrno>

namespace sekisho {

using namespace mail_decoding;

namespace {

// --- names -----------------------------------------------------------------------

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

}  // namespace

mail_charset mail_decoding::charset_by_hash(uint32_t h) {
    for (const charset_alias& a : charset_aliases)
        if (hash_of(a.name) == h) return a.cs;
    return mail_charset::raw;
}

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

}  // namespace sekisho
