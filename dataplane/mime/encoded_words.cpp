// mail_decoder: RFC 2047 encoded words in header values, and the plain text around them
// (ISO-2022-JP-aware: raw ISO-2022-JP headers are common). "=?charset?X?" is held (at most 40
// bytes, ew_hold_) until it is known to open a word, and given back as plain text if it does
// not; B and Q are decoded byte by byte into the charset converter. Adjacent words are joined:
// the whitespace between them is dropped, and a character split across two words of one
// charset comes out whole.
#include "dataplane/mime/mail_decoder_internal.h"

#include <cassert>

namespace sekisho {

using namespace mail_decoding;

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

}  // namespace sekisho
