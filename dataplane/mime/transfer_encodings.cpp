// mail_decoder: body text, Content-Transfer-Encoding undone (RFC 2045 6): base64 (characters
// outside the alphabet skipped, blocks of 32 by the SIMD kernel where the CPU has one),
// quoted-printable (soft line breaks, trailing whitespace dropped: held until the line's end is
// seen), identity. The decoded bytes go to the charset converter (charsets.cpp) in runs of up
// to io::dec_size; a body past the cap is not decoded at all. State that must survive a split
// (pending base64 bits, a '=' and its first hex digit, held whitespace) is in the flow.
#include "dataplane/mime/mail_decoder_internal.h"

namespace sekisho {

using namespace mail_decoding;

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

}  // namespace sekisho
