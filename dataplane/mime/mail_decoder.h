// Streaming decoder of one RFC 5322 / MIME message into what a mail reader
// shows, as UTF-8, for content inspection.
//
// The caller feeds the message content (smtp_observer::on_content: dot-stuffing
// already undone) in whatever pieces it comes, then calls finish(). The decoder
// reports, synchronously, to a `mail_decoder_sink`:
// - every header field, of the message and of each MIME part (and of a
//   message/rfc822 part's embedded message): name lowercased, value unfolded
//   (RFC 5322 2.2.3: CRLF before WSP removed, leading WSP of the value
//   skipped), RFC 2047 encoded words decoded (adjacent words joined, the
//   whitespace between them dropped; a multibyte character split across
//   adjacent words of one charset is joined) and converted to UTF-8;
// - the text of the body parts a reader displays (text/*, and a body with no
//   Content-Type): Content-Transfer-Encoding base64 / quoted-printable undone,
//   charset converted to UTF-8. Other parts (images, application/*, ...), the
//   preamble and epilogue of multiparts are not decoded;
// - on_part_boundary() when a MIME part (or an embedded message) starts.
// Output comes in pieces: a header value in chunks of at most
// mail_header_chunk bytes, the last one with field_end (possibly empty); body
// text in chunks of up to 4 KiB (UTF-8 and unknown-charset text may come as
// one larger run straight from the input); a UTF-8 character may straddle two
// pieces. The concatenated output is the same whatever the input segmentation
// (tests check every split point); where pieces end is not. Callbacks must not
// call back into the decoder.
//
// Structure (RFC 2045/2046): multipart boundaries nested up to mail_max_depth
// (deeper multiparts are skipped, too_deep()), boundary strings up to
// mail_max_boundary bytes (a longer one is matched on its first 70 bytes), a
// delimiter recognised at the start of a line by prefix (RFC 2046 5.1.1: the
// rest of the line is ignored); the line break before a delimiter belongs to
// the delimiter, not the part. An outer delimiter closes inner multiparts. A
// header-block line that is not a header field (no colon, an invalid name
// byte, a continuation with nothing to continue) starts the body, as MTAs
// treat it. Bare LF is accepted as a line break.
//
// Charsets: UTF-8 and unknown charsets pass through unchanged (so output is
// UTF-8 only as far as the input is). US-ASCII, or no charset, is decoded as
// ISO-2022-JP, an ASCII superset: old Japanese mail often sends raw
// ISO-2022-JP headers and bodies without declaring it, and readers show it.
// ISO-2022-JP is decoded here (escape sequences ESC ( B / ( J / ( I,
// ESC $ @ / $ B / $ ( D), its JIS X 0208 / 0212 / kana characters converted
// as glibc iconv "EUC-JP-MS" converts their EUC-JP form (which has the NEC and
// IBM extensions, e.g. circled digits, that mail in the wild uses and glibc's
// own "ISO-2022-JP" rejects): through a table of every such character's UTF-8,
// filled once per process from that converter (charset_converters), so no
// iconv call per character. The shift state is our own few bytes (mode, a
// partial escape sequence, a pending first byte), so it survives any split
// and needs no per-flow iconv_t. All three Japanese charsets thus use the
// Microsoft (= WHATWG) mapping: JIS 0x2141 is U+FF5E FULLWIDTH TILDE, not
// U+301C WAVE DASH (likewise minus, double vertical line): rules should be
// written with those. Shift_JIS (glibc "CP932"), EUC-JP
// ("EUC-JP-MS") go through tables of their converters' output filled once per
// process (a character the tables do not hold cleanly, e.g. an invalid one,
// and what follows it in that piece, go through iconv: same output); and
// GB2312/GBK/GB18030, Big5, EUC-KR, windows-1252 /
// ISO-8859-1, windows-1251, KOI8-R go through iconv; iconv_t handles are
// per worker (charset_converters, opened once, lazily or by open_all()), a
// character split across pieces is carried in the flow state (<= 4 bytes),
// stateless conversions only. Undecodable bytes become U+FFFD.
//
// Bounds: no allocation, no exceptions; per-flow state is this object
// (sizeof(mail_decoder) <= 512, checked below; output buffers, ~6.3 KiB, are
// on the stack of feed()). Work per input byte is bounded. Decoded body text
// is capped per message (reset(max_body_bytes), default 64 KiB): past the cap
// body decoding stops (truncated()); structure and headers go on.
//
// Throughput: docs/inspection.md ("Throughput") and docs/performance.md; without AVX2 /
// AVX-512 the scalar paths run (decode_kernels.h). The implementation is one file per concept
// (mail_decoder_internal.h lists them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace sekisho {

enum class mail_part : uint8_t { header, body };

// Charsets the decoder knows. Order is stable (charset_converters indexes it).
enum class mail_charset : uint8_t {
    raw = 0,   // unknown: bytes as they are
    utf8,      // passes through
    jis,       // ISO-2022-JP, and US-ASCII / none (decoded the same way)
    sjis,      // Shift_JIS (CP932)
    eucjp,     // EUC-JP (EUC-JP-MS)
    gb18030,   // GB2312, GBK, GB18030
    big5,      // Big5 (BIG5-HKSCS)
    euckr,     // EUC-KR (CP949)
    cp1252,    // windows-1252, ISO-8859-1, US-ASCII supersets of Western Europe
    cp1251,    // windows-1251
    koi8r,     // KOI8-R
    count_
};
constexpr size_t mail_charset_count = static_cast<size_t>(mail_charset::count_);
const char* to_string(mail_charset c);
// A MIME charset name (case-insensitive, with the common aliases) to what the
// decoder does with it; unknown names are `raw`, the empty name `jis`.
mail_charset mail_charset_from_name(std::string_view name);

constexpr size_t mail_max_header_name = 64;   // bytes of a field name kept (longer: truncated)
constexpr size_t mail_header_chunk = 256;     // header value bytes per on_header call, at most
constexpr size_t mail_max_boundary = 70;      // RFC 2046 5.1.1
constexpr size_t mail_max_depth = 4;          // nested multiparts decoded
constexpr uint32_t mail_default_body_limit = 65536;

class mail_decoder_sink {
public:
    // An unfolded header field value, decoded, possibly in several calls; field_end on the last
    // (which may be empty). `name_lowercase` is at most mail_max_header_name bytes.
    virtual void on_header(std::string_view name_lowercase, const uint8_t* utf8, size_t len, bool field_end) = 0;
    // Decoded text of body parts, possibly many calls (never empty).
    virtual void on_body(const uint8_t* utf8, size_t len) = 0;
    // A MIME part starts (its header fields follow): per-part scanning state can be reset.
    virtual void on_part_boundary() {}

protected:
    ~mail_decoder_sink() = default;
};

// Per-worker charset converters (glibc iconv_t, to UTF-8), shared by every flow
// of the worker and used by one thread only. iconv_open allocates: call
// open_all() at worker start to keep it off the data path (otherwise each
// converter opens on first use). A converter glibc lacks stays closed and its
// charset passes through raw.
class charset_converters {
public:
    charset_converters() = default;
    ~charset_converters();
    charset_converters(const charset_converters&) = delete;
    charset_converters& operator=(const charset_converters&) = delete;

    // Opens every converter; returns how many are available.
    size_t open_all();
    bool available(mail_charset c);

private:
    friend class mail_decoder;
    void* get(mail_charset c);  // iconv_t, or nullptr

    // JIS X 0208 / 0212 / kana to UTF-8, read from the EUC-JP converter once per process
    // (charsets.cpp: jis_table_t); nullptr when glibc lacks it.
    const void* jis_table();
    // Shift_JIS and EUC-JP: every character's UTF-8 as that charset's converter gives it, read
    // once per process (charsets.cpp: mb_table_t); nullptr for other charsets or without iconv.
    const void* mb_table(mail_charset c);

    void* cd_[mail_charset_count] = {};
    bool tried_[mail_charset_count] = {};
    const void* jis_ = nullptr;
    bool jis_tried_ = false;
    const void* sjis_ = nullptr;
    const void* eucjp_ = nullptr;
    bool sjis_tried_ = false;
    bool eucjp_tried_ = false;
};

class mail_decoder {
public:
    mail_decoder() { reset(); }
    // A fresh message (call at each smtp_observer::on_message_start). A zero-filled decoder is
    // not ready: its body limit is 0.
    void reset(uint32_t max_body_bytes = mail_default_body_limit);

    // The next bytes of the message, in order, each exactly once.
    void feed(const uint8_t* data, size_t len, mail_decoder_sink& sink, charset_converters& cv);
    // The message ended: completes what is pending (an open header field, the last line, a part).
    // Later feed()s are ignored until reset().
    void finish(mail_decoder_sink& sink, charset_converters& cv);

    size_t body_bytes() const { return body_bytes_; }  // bytes given to on_body
    bool truncated() const { return flags_ & f_truncated; }  // body text cut at the limit
    bool too_deep() const { return flags_ & f_too_deep; }    // a multipart nested deeper than mail_max_depth
    bool finished() const { return flags_ & f_finished; }
    // Where the decoder is: a header block or a body.
    mail_part where() const { return mode_ == m_headers ? mail_part::header : mail_part::body; }

private:
    struct io;  // feed()'s stack context: output buffers (mail_decoder_internal.h)

    // What the current bytes are.
    enum : uint8_t { m_headers = 0, m_text, m_skip };
    // Where in the line (boundary recognition).
    enum : uint8_t { ls_bol = 0, ls_match, ls_delim, ls_skipline, ls_mid };

    static constexpr uint16_t f_finished = 1 << 0, f_truncated = 1 << 1, f_too_deep = 1 << 2,
                              f_field_open = 1 << 4, f_value_started = 1 << 5, f_cr_held = 1 << 6,
                              f_ew_after = 1 << 7, f_ew_conv = 1 << 8, f_ew_q = 1 << 9;

    // Charset conversion state (headers and bodies take turns).
    struct conv_state {
        mail_charset charset;
        uint8_t mode;       // ISO-2022-JP: character set in use
        uint8_t esc;        // ISO-2022-JP: escape sequence in progress
        uint8_t lead;       // ISO-2022-JP: first byte of a double-byte character, 0 if none
        uint8_t carry_len;  // iconv: bytes of an incomplete character
        uint8_t carry[4];
    };

    // line layer
    void deliver(io& x, const uint8_t* p, size_t n);
    void deliver_eol(io& x, uint8_t kind);
    size_t match_boundary(io& x, const uint8_t* p, size_t i, size_t n);
    void not_delimiter(io& x);
    void apply_delimiter(io& x, uint8_t level, bool close);
    size_t mid_line(io& x, const uint8_t* p, size_t i, size_t n);
    // header blocks
    void header_bytes(io& x, const uint8_t* p, size_t n);
    void header_eol(io& x, uint8_t kind);
    void not_a_header(io& x, const uint8_t* rest, size_t n, uint8_t eol_kind);
    void begin_value(io& x);
    void end_field(io& x);
    void end_headers(io& x);
    void reset_part_info();
    void ct_byte(uint8_t c);
    void ct_value_end();
    void ew_byte(io& x, uint8_t c);
    void ew_abort(io& x);
    void ew_commit(io& x);
    void ew_leave(io& x);
    void ew_finish(io& x);
    void raw_mode(io& x);
    void raw_byte(io& x, uint8_t c);
    // bodies
    void start_text(io& x);
    void text_bytes(io& x, const uint8_t* p, size_t n);
    void text_eol(io& x, uint8_t kind);
    void text_end(io& x);
    void qp_flush_ws(io& x);
    // charsets and output
    void conv_reset(mail_charset c);
    void convert(io& x, const uint8_t* p, size_t n);
    void convert_end(io& x);
    void jis_convert(io& x, const uint8_t* p, size_t n);
    void iconv_convert(io& x, const uint8_t* p, size_t n);
    size_t iconv_run(io& x, void* cd, const uint8_t* p, size_t n, bool euc = false);
    size_t mb_table_run(io& x, const void* table, const uint8_t* p, size_t n);
    void euc_flush(io& x);
    void dec_flush(io& x);
    void set_target(io& x, mail_part t);
    void put(io& x, const uint8_t* p, size_t n);
    void flush_out(io& x);
    void emit_body(io& x, const uint8_t* p, size_t n);
    void end_feed(io& x);

    // --- message ---
    uint32_t body_limit_ = 0;
    uint32_t body_bytes_ = 0;
    uint16_t flags_ = 0;
    uint8_t mode_ = m_headers;

    // --- line layer ---
    uint8_t lstate_ = ls_bol;
    uint8_t eol_ = 0;          // line break held back (body): 0, 1 = LF, 2 = CRLF
    uint8_t bm_k_ = 0;         // delimiter bytes matched at the line start
    uint8_t bm_alive_ = 0;     // levels still matching (bit per level)
    uint8_t bm_level_ = 0;     // the level whose delimiter matched
    uint8_t bm_dash_ = 0;      // '-' after the boundary (2: close delimiter)
    uint8_t depth_ = 0;        // multipart levels open
    uint8_t blen_[mail_max_depth] = {};

    // --- current header block / part ---
    uint8_t ctype_ = 0;        // mail_decoder_internal.h: ct::
    uint8_t cte_ = 0;          // mail_decoder_internal.h: xfer::
    mail_charset charset_ = mail_charset::jis;
    uint8_t pblen_ = 0;        // boundary parameter bytes stored in boundary_[depth_]
    uint8_t hstate_ = 0;       // mail_decoder_internal.h: hs::
    uint8_t field_kind_ = 0;   // mail_decoder_internal.h: fk::
    uint8_t name_len_ = 0;
    uint8_t name_ws_ = 0;      // WSP between the name and the colon
    uint8_t ct_state_ = 0;     // Content-Type / -Transfer-Encoding parser (mail_decoder_internal.h: cts::)
    uint8_t ct_param_ = 0;     // the parameter whose value is being read
    uint8_t ct_major_ = 0;     // type of the Content-Type being read
    uint8_t ct_len_ = 0;       // bytes in the token being hashed
    uint32_t ct_hash_ = 0;     // hash of the token being read

    // --- RFC 2047 encoded words ---
    uint8_t ew_state_ = 0;     // mail_decoder_internal.h: ew::
    uint8_t ew_hold_len_ = 0;  // "=?charset?X" held until the word is known to be one
    uint8_t ew_cs_len_ = 0;    // charset bytes in ew_hold_ (after "=?")
    uint8_t ew_bits_n_ = 0;    // base64 bits pending (< 8)
    uint16_t ew_bits_ = 0;
    uint16_t ew_ws_ = 0;       // whitespace after an encoded word, held (dropped before another)
    uint8_t ew_hex_ = 0;       // Q: first hex digit after '='

    // --- transfer decoding ---
    uint8_t xstate_ = 0;       // quoted-printable state
    uint8_t qp_hex_ = 0;       // first hex digit after '='
    uint8_t qp_ws_n_ = 0;      // trailing-whitespace candidates held
    uint8_t b64_n_ = 0;        // base64 bits pending (< 8)
    uint16_t b64_bits_ = 0;
    uint32_t qp_ws_mask_ = 0;  // held whitespace: bit set = TAB, clear = SP

    conv_state conv_ = {};

    char name_[mail_max_header_name] = {};
    uint8_t ew_hold_[40] = {};
    uint8_t boundary_[mail_max_depth][mail_max_boundary] = {};
};

// 456 bytes on x86-64: the per-flow cost of decoding (boundaries 4 x 70 = 280, field name 64,
// encoded-word prefix 40, charset converter 9, counters and parser states ~63).
static_assert(sizeof(mail_decoder) <= 512, "mail_decoder is per flow: keep it within 512 bytes");
static_assert(std::is_trivially_copyable_v<mail_decoder>);

}  // namespace sekisho
