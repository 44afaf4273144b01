// mail_decoder: the decoder itself (mail_decoder.h states the contract). It reads the message a
// line at a time: recognises multipart delimiters at line starts (every open level matched at
// once, no buffer: what is held is a prefix of a boundary), hands each line to the header block
// or body reader of the part it belongs to, and owns the output to the sink: UTF-8 gathered in
// feed()'s stack buffer, header values in mail_header_chunk pieces, body text cut at the body
// cap on a UTF-8 character boundary that does not depend on where input pieces end.
#include "dataplane/mime/mail_decoder_internal.h"

namespace sekisho {

using namespace mail_decoding;

// --- life cycle ---------------------------------------------------------------------------

void mail_decoder::reset(uint32_t max_body_bytes) {
    std::memset(static_cast<void*>(this), 0, sizeof *this);
    body_limit_ = max_body_bytes;
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
    mode_ = m_headers;
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


// --- output ---------------------------------------------------------------------------------------

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
