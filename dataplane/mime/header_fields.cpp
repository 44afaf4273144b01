// mail_decoder: header blocks (RFC 5322 2.2, RFC 2045). Field names are lowercased and kept up
// to mail_max_header_name bytes; values are unfolded and handed, a byte at a time, to the
// encoded-word reader (encoded_words.cpp), and those of Content-Type and
// Content-Transfer-Encoding also to a small parser that keeps only hashes and the boundary
// parameter (no value is stored). A line that is no header field starts the body, as MTAs
// treat it; the end of a block decides what its part is (text, multipart, embedded message,
// skipped).
#include "dataplane/mime/mail_decoder_internal.h"

namespace sekisho {

using namespace mail_decoding;

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

}  // namespace sekisho
