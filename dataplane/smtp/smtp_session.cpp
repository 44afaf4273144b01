#include "dataplane/smtp/smtp_session.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "dataplane/mime/decode_kernels.h"

namespace sekisho {

const char* to_string(smtp_command c) {
    switch (c) {
    case smtp_command::helo: return "helo";
    case smtp_command::ehlo: return "ehlo";
    case smtp_command::mail: return "mail";
    case smtp_command::rcpt: return "rcpt";
    case smtp_command::data: return "data";
    case smtp_command::bdat: return "bdat";
    case smtp_command::rset: return "rset";
    case smtp_command::quit: return "quit";
    case smtp_command::starttls: return "starttls";
    case smtp_command::auth: return "auth";
    case smtp_command::noop: return "noop";
    case smtp_command::vrfy: return "vrfy";
    case smtp_command::other: return "other";
    case smtp_command::none: return "none";
    }
    return "unknown";
}

const char* to_string(smtp_desync d) {
    switch (d) {
    case smtp_desync::none: return "none";
    case smtp_desync::gap: return "gap";
    case smtp_desync::reply_without_command: return "reply_without_command";
    case smtp_desync::bad_reply: return "bad_reply";
    case smtp_desync::pipeline_overflow: return "pipeline_overflow";
    case smtp_desync::bare_lf: return "bare_lf";
    case smtp_desync::bad_bdat: return "bad_bdat";
    case smtp_desync::early_client_data: return "early_client_data";
    case smtp_desync::count_: break;
    }
    return "unknown";
}

namespace {

using smtp_detail::ascii_lower;
using smtp_detail::fnv_basis;
using smtp_detail::hash_step;

// Where the client line parser is within a command line.
namespace arg_state {
enum : uint8_t {
    verb = 0,       // the command verb, up to the first space
    skip,           // nothing more to learn from this line
    helo_lead,      // spaces before the EHLO/HELO argument
    helo_domain,    // the EHLO/HELO argument
    keyword_lead,   // spaces before FROM: / TO:
    keyword,        // matching FROM: / TO: (index in c_word_len_)
    path_lead,      // spaces after the colon
    path,           // the reverse/forward path
    bdat_lead,      // spaces before the chunk size
    bdat_size,      // chunk size digits
    bdat_kw_lead,   // spaces before LAST
    bdat_kw,        // matching LAST (index in c_word_len_)
    bdat_trail,     // after LAST: only spaces allowed
    mech_lead,      // spaces before the AUTH mechanism
    mech,           // the AUTH mechanism (in c_word_)
    ir_lead,        // spaces before the AUTH initial response
    base64,         // an AUTH initial response or a response line
};
}

// Token facts of the current line (c_flags_).
constexpr uint32_t cf_cr = 1u << 0,            // the previous byte was CR
    cf_domain_nonempty = 1u << 1,              // some byte folded into c_hash_
    cf_pending_dot = 1u << 2,                  // a '.' not folded yet (maybe the trailing dot)
    cf_inner_dot = 1u << 3,                    // a '.' followed by more domain
    cf_literal = 1u << 4,                      // EHLO argument starts with '['
    cf_not_digits_dots = 1u << 5,              // EHLO argument has a byte outside [0-9.]
    cf_not_hex_colon = 1u << 6,                // EHLO argument has a byte outside [0-9A-Fa-f:.]
    cf_colon = 1u << 7,                        // EHLO argument has a ':'
    cf_angle = 1u << 8,                        // the path opened with '<'
    cf_path_nonempty = 1u << 9,                // the path has bytes
    cf_null_path = 1u << 10,                   // the path is <>
    cf_quote = 1u << 11,                       // inside a quoted local part
    cf_escape = 1u << 12,                      // after a backslash in a quoted local part
    cf_at = 1u << 13,                          // an '@' outside quotes: c_hash_ is the domain
    cf_path_done = 1u << 14,                   // the path was read
    cf_bad = 1u << 15,                         // syntax the parser cannot use
    cf_size = 1u << 16,                        // BDAT size read
    cf_last = 1u << 17,                        // BDAT LAST
    cf_response = 1u << 18,                    // this line answers a 334 (not a command)
    cf_name_ready = 1u << 19,                  // a whole user name was decoded in this line
    cf_helo_done = 1u << 20,                   // the EHLO argument was read
    cf_envelope = 1u << 21,                    // an envelope command's argument is being handed on
    cf_envelope_done = 1u << 22;               // its CR was seen: the argument is complete

bool is_envelope(smtp_command c) {
    return c == smtp_command::ehlo || c == smtp_command::helo || c == smtp_command::mail || c == smtp_command::rcpt;
}

// What decoded AUTH bytes are.
namespace name_phase {
enum : uint8_t {
    off = 0,        // not decoding
    plain_authzid,  // PLAIN: before the first NUL
    plain_second,   // PLAIN: right after the first NUL (is the authcid empty?)
    plain_authcid,  // PLAIN: between the NULs
    login_user,     // LOGIN: the user name
};
}

// What the next response to a 334 carries.
namespace auth_step {
enum : uint8_t { none = 0, plain, login_user, login_password, other };
}

// The end-of-data matcher: CRLF "." CRLF, the first CRLF possibly the DATA line's own.
namespace data_state {
enum : uint8_t { mid_line = 0, cr, line_start, dot, dot_cr };
}

// Reply line parser states.
namespace reply_state {
enum : uint8_t { digit0 = 0, digit1, digit2, separator, text_more, text_last };
}

constexpr uint64_t pack(std::string_view s) {
    uint64_t w = 0;
    for (size_t i = 0; i < s.size() && i < 8; ++i) w |= static_cast<uint64_t>(static_cast<uint8_t>(s[i])) << (8 * i);
    return w;
}

struct verb_entry {
    uint64_t word;
    uint8_t len;
    smtp_command cmd;
};
constexpr verb_entry verbs[] = {
    {pack("helo"), 4, smtp_command::helo}, {pack("ehlo"), 4, smtp_command::ehlo},
    {pack("mail"), 4, smtp_command::mail}, {pack("rcpt"), 4, smtp_command::rcpt},
    {pack("data"), 4, smtp_command::data}, {pack("bdat"), 4, smtp_command::bdat},
    {pack("rset"), 4, smtp_command::rset}, {pack("quit"), 4, smtp_command::quit},
    {pack("starttls"), 8, smtp_command::starttls}, {pack("auth"), 4, smtp_command::auth},
    {pack("noop"), 4, smtp_command::noop}, {pack("vrfy"), 4, smtp_command::vrfy},
};

constexpr bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
constexpr bool is_hex(uint8_t c) { return is_digit(c) || (ascii_lower(c) >= 'a' && ascii_lower(c) <= 'f'); }

constexpr int8_t base64_value(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return static_cast<int8_t>(c - 'A');
    if (c >= 'a' && c <= 'z') return static_cast<int8_t>(c - 'a' + 26);
    if (is_digit(c)) return static_cast<int8_t>(c - '0' + 52);
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

constexpr bool is_positive(uint16_t code) { return code >= 200 && code < 300; }
constexpr bool is_permanent_failure(uint16_t code) { return code >= 500 && code < 600; }

}  // namespace

// --- bookkeeping -------------------------------------------------------------

void smtp_session::desync(smtp_desync why) {
    if (!inspecting()) return;
    flags_ |= f_uninspectable;
    desync_ = why;
}

size_t smtp_session::pending() const {
    size_t n = 0;
    for (uint8_t r = 0; r < pending_runs_; ++r) n += pending_[(pending_head_ + r) % smtp_max_pending].count;
    return n;
}

bool smtp_session::push_pending(uint8_t kind) {
    if (pending_runs_) {
        pending_run& last = pending_[(pending_head_ + pending_runs_ - 1) % smtp_max_pending];
        if (last.kind == kind && last.count < 255) {
            ++last.count;
            return true;
        }
    }
    if (pending_runs_ == smtp_max_pending) {
        desync(smtp_desync::pipeline_overflow);
        return false;
    }
    pending_[(pending_head_ + pending_runs_) % smtp_max_pending] = {kind, 1};
    ++pending_runs_;
    return true;
}

bool smtp_session::only_pending_is_front() const {
    return pending_runs_ == 1 && pending_[pending_head_].count == 1;
}

// --- client: command lines ---------------------------------------------------

size_t smtp_session::feed_client(const uint8_t* data, size_t len, smtp_observer& obs) {
    if (!inspecting()) return 0;
    size_t i = 0;
    while (i < len && inspecting()) {
        switch (c_mode_) {
        case client_mode::line: i = client_line(data, i, len, obs); break;
        case client_mode::data: i = client_data(data, i, len, obs); break;
        case client_mode::bdat: i = client_chunk(data, i, len, obs); break;
        }
    }
    return i;
}

size_t smtp_session::client_line(const uint8_t* p, size_t i, size_t n, smtp_observer& obs) {
    if (c_line_len_ == 0 && (flags_ & f_auth_response_due)) {
        // The first byte of the line that answers a 334: not a command.
        flags_ &= static_cast<uint16_t>(~f_auth_response_due);
        c_flags_ |= cf_response;
        c_state_ = arg_state::base64;
        switch (auth_step_) {
        case auth_step::plain: start_name(name_phase::plain_authzid); auth_step_ = auth_step::none; break;
        case auth_step::login_user: start_name(name_phase::login_user); auth_step_ = auth_step::login_password; break;
        default: break;  // a password or another mechanism's data: not decoded
        }
    }
    // The argument of an envelope command (EHLO/HELO, MAIL, RCPT) goes to
    // on_envelope as it arrives: from the byte after the verb's space to the
    // CR, one call per run of this segment.
    size_t envelope_from = (c_flags_ & cf_envelope) && !(c_flags_ & cf_envelope_done) ? i : SIZE_MAX;
    auto hand_on = [&](size_t end, bool line_end) {
        if (envelope_from != SIZE_MAX && end > envelope_from)
            obs.on_envelope(static_cast<smtp_command>(c_cmd_), p + envelope_from, end - envelope_from, line_end);
        else if (line_end && (c_flags_ & cf_envelope))
            obs.on_envelope(static_cast<smtp_command>(c_cmd_), nullptr, 0, true);
        envelope_from = SIZE_MAX;
    };
    auto take = [&](size_t k) {   // k bytes, none of them CR or LF, consumed in one go
        i += k;
        c_line_len_ = static_cast<uint16_t>(std::min<size_t>(UINT16_MAX, c_line_len_ + k));
        c_flags_ &= ~cf_cr;
    };
    // A command's first four bytes, and the keyword of MAIL FROM: and RCPT TO:,
    // are taken whole when the segment holds them (the usual case), with the
    // same effect as byte by byte.
    if (c_state_ == arg_state::verb && c_word_len_ == 0 && n - i >= 4) {
        uint64_t word = 0;
        bool letters = true;
        for (unsigned k = 0; k < 4; ++k) {
            const uint8_t c = p[i + k];
            letters &= c != ' ' && c != '\r' && c != '\n';
            word |= static_cast<uint64_t>(ascii_lower(c)) << (8 * k);
        }
        if (letters) {
            c_word_ = word;
            c_word_len_ = 4;
            take(4);
        }
    }
    while (i < n) {
        if (c_state_ == arg_state::keyword_lead && p[i] != ' ') {
            const std::string_view kw = path_keyword();
            size_t k = 0;
            while (k < kw.size() && i + k < n && ascii_lower(p[i + k]) == static_cast<uint8_t>(kw[k])) ++k;
            if (k == kw.size()) {
                c_word_len_ = static_cast<uint8_t>(kw.size());
                c_state_ = arg_state::path_lead;
                take(k);
                if (i == n) break;
            }
        }
        // Runs of bytes that only move the line along are taken in one go,
        // with the same effect as byte by byte: what follows an argument
        // (ESMTP parameters and the like) up to the line's end, and a path's
        // bytes outside quotes (its domain folded into the hash).
        if (c_state_ == arg_state::skip || (c_state_ == arg_state::path && !(c_flags_ & (cf_quote | cf_escape)))) {
            size_t end = i;
            if (c_state_ == arg_state::skip)
                while (end < n && p[end] != '\r' && p[end] != '\n') ++end;
            else
                end = path_run(p, i, n);
            if (end > i) take(end - i);
            if (i == n) break;
        }
        const uint8_t c = p[i++];
        if (c_line_len_ != UINT16_MAX) ++c_line_len_;
        if (c == '\n') {
            if (!(c_flags_ & cf_cr)) {
                desync(smtp_desync::bare_lf);
                return i;
            }
            hand_on(i - 1, true);
            end_line(obs);
            return i;
        }
        if (c == '\r') {
            // CR ends what the line says; anything between a bare CR and the LF is ignored.
            if (!(c_flags_ & cf_envelope_done)) {
                hand_on(i - 1, false);
                if (c_flags_ & cf_envelope) c_flags_ |= cf_envelope_done;
            }
            end_token();
            c_state_ = arg_state::skip;
            c_flags_ |= cf_cr;
            continue;
        }
        c_flags_ &= ~cf_cr;
        const bool in_verb = c_state_ == arg_state::verb;
        line_byte(c);
        if (in_verb && c_state_ != arg_state::verb && is_envelope(static_cast<smtp_command>(c_cmd_)) &&
            !(c_flags_ & cf_envelope)) {
            c_flags_ |= cf_envelope;
            envelope_from = i;  // the byte after the verb's space
        }
    }
    hand_on(n, false);
    return i;
}

void smtp_session::start_domain() {
    c_hash_ = fnv_basis;
    c_flags_ &= ~(cf_domain_nonempty | cf_pending_dot | cf_inner_dot);
}

// Folds one domain byte into hash `h` and flags `f`, holding back a '.' until
// something follows it so that a trailing dot is not part of the hash
// (smtp_domain_hash does the same).
static inline void fold_domain_byte(uint32_t& h, uint32_t& f, uint8_t c) {
    if (f & cf_pending_dot) {
        h = hash_step(h, '.');
        f |= cf_inner_dot | cf_domain_nonempty;
    }
    if (c == '.') {
        f |= cf_pending_dot;
        return;
    }
    f &= ~cf_pending_dot;
    h = hash_step(h, c);
    f |= cf_domain_nonempty;
}

void smtp_session::fold_domain(uint8_t c) { fold_domain_byte(c_hash_, c_flags_, c); }

size_t smtp_session::path_run(const uint8_t* p, size_t i, size_t n) {
    // The bytes that mean something to a path outside quotes, as a table: one load a byte.
    static constexpr auto ends = [] {
        std::array<bool, 256> t{};
        for (uint8_t c : {'>', ' ', '"', '@', '\r', '\n'}) t[c] = true;
        return t;
    }();
    auto ends_run = [](uint8_t c) { return ends[c]; };
    const size_t from = i;
    if (!(c_flags_ & cf_at)) {
        while (i < n && !ends_run(p[i])) ++i;
    } else {
        // On locals: the session's fields are not reloaded after every byte.
        uint32_t h = c_hash_, f = c_flags_;
        for (; i < n && !ends_run(p[i]); ++i) fold_domain_byte(h, f, p[i]);
        c_hash_ = h;
        c_flags_ = f;
    }
    if (i > from) c_flags_ |= cf_path_nonempty;
    return i;
}

void smtp_session::line_byte(uint8_t c) {
    switch (c_state_) {
    case arg_state::verb:
        if (c == ' ') {
            end_verb();
        } else if (c_word_len_ < 8) {
            c_word_ |= static_cast<uint64_t>(ascii_lower(c)) << (8 * c_word_len_);
            ++c_word_len_;
        } else {
            c_word_len_ = 9;  // longer than any verb
        }
        return;
    case arg_state::skip:
        return;
    case arg_state::helo_lead:
        if (c == ' ') return;
        c_state_ = arg_state::helo_domain;
        start_domain();
        if (c == '[') c_flags_ |= cf_literal;
        [[fallthrough]];
    case arg_state::helo_domain:
        if (c == ' ') {
            end_token();
            c_state_ = arg_state::skip;
            return;
        }
        if (!is_digit(c) && c != '.') c_flags_ |= cf_not_digits_dots;
        if (!is_hex(c) && c != ':' && c != '.') c_flags_ |= cf_not_hex_colon;
        if (c == ':') c_flags_ |= cf_colon;
        fold_domain(c);
        return;
    case arg_state::keyword_lead:
        if (c == ' ') return;
        c_state_ = arg_state::keyword;
        c_word_len_ = 0;
        [[fallthrough]];
    case arg_state::keyword: {
        const std::string_view kw = path_keyword();
        if (ascii_lower(c) != static_cast<uint8_t>(kw[c_word_len_])) {
            c_flags_ |= cf_bad;
            c_state_ = arg_state::skip;
        } else if (++c_word_len_ == kw.size()) {
            c_state_ = arg_state::path_lead;
        }
        return;
    }
    case arg_state::path_lead:
        if (c == ' ') return;
        c_state_ = arg_state::path;
        start_domain();
        if (c == '<') {
            c_flags_ |= cf_angle;
            return;
        }
        [[fallthrough]];
    case arg_state::path:
        if (c_flags_ & cf_escape) {
            c_flags_ &= ~cf_escape;
        } else if (c_flags_ & cf_quote) {
            if (c == '"') c_flags_ &= ~cf_quote;
            if (c == '\\') c_flags_ |= cf_escape;
        } else if (c == '>' || c == ' ') {
            if (c == '>' && !(c_flags_ & cf_path_nonempty)) c_flags_ |= cf_null_path;
            if (c == ' ' && (c_flags_ & cf_angle)) c_flags_ |= cf_bad;  // "<a b>": not a path
            c_flags_ |= cf_path_done;
            c_state_ = arg_state::skip;  // ESMTP parameters (SIZE=, BODY=, ...) follow
            return;
        } else if (c == '"') {
            c_flags_ |= cf_quote;
        } else if (c == '@') {
            c_flags_ |= cf_at;  // the domain is what follows the last '@' (source routes too)
            start_domain();
            c_flags_ |= cf_path_nonempty;
            return;
        }
        c_flags_ |= cf_path_nonempty;
        if ((c_flags_ & cf_at) && !(c_flags_ & cf_quote)) fold_domain(c);
        return;
    case arg_state::bdat_lead:
        if (c == ' ') return;
        c_state_ = arg_state::bdat_size;
        c_number_ = 0;
        [[fallthrough]];
    case arg_state::bdat_size: {
        if (c == ' ') {
            c_state_ = arg_state::bdat_kw_lead;
            return;
        }
        const uint64_t next = static_cast<uint64_t>(c_number_) * 10 + static_cast<uint64_t>(c - '0');
        if (!is_digit(c) || next > UINT32_MAX) {
            c_flags_ |= cf_bad;
            c_state_ = arg_state::skip;
            return;
        }
        c_number_ = static_cast<uint32_t>(next);
        c_flags_ |= cf_size;
        return;
    }
    case arg_state::bdat_kw_lead:
        if (c == ' ') return;
        c_state_ = arg_state::bdat_kw;
        c_word_len_ = 0;
        [[fallthrough]];
    case arg_state::bdat_kw:
        if (c == ' ' && c_word_len_ == 4) {
            c_flags_ |= cf_last;
            c_state_ = arg_state::bdat_trail;
        } else if (c_word_len_ < 4 && ascii_lower(c) == static_cast<uint8_t>("last"[c_word_len_])) {
            ++c_word_len_;
        } else {
            c_flags_ |= cf_bad;
            c_state_ = arg_state::skip;
        }
        return;
    case arg_state::bdat_trail:
        if (c != ' ') {
            c_flags_ |= cf_bad;
            c_state_ = arg_state::skip;
        }
        return;
    case arg_state::mech_lead:
        if (c == ' ') return;
        c_state_ = arg_state::mech;
        c_word_ = 0;
        c_word_len_ = 0;
        [[fallthrough]];
    case arg_state::mech:
        if (c == ' ') {
            end_token();
            c_state_ = arg_state::ir_lead;
        } else if (c_word_len_ < 8) {
            c_word_ |= static_cast<uint64_t>(ascii_lower(c)) << (8 * c_word_len_);
            ++c_word_len_;
        } else {
            c_word_len_ = 9;
        }
        return;
    case arg_state::ir_lead:
        if (c == ' ') return;
        c_state_ = arg_state::base64;
        // An initial response: PLAIN's is the credentials, LOGIN's the user name.
        if (auth_step_ == auth_step::plain) {
            start_name(name_phase::plain_authzid);
            auth_step_ = auth_step::none;
        } else if (auth_step_ == auth_step::login_user) {
            start_name(name_phase::login_user);
            auth_step_ = auth_step::login_password;
        }
        [[fallthrough]];
    case arg_state::base64:
        if (c == ' ') {
            stop_name();
            c_state_ = arg_state::skip;
            return;
        }
        base64_char(c);
        return;
    default:
        return;
    }
}

void smtp_session::end_verb() {
    smtp_command cmd = smtp_command::other;
    for (const verb_entry& v : verbs) {
        if (v.word == c_word_ && v.len == c_word_len_) {
            cmd = v.cmd;
            break;
        }
    }
    c_cmd_ = static_cast<uint8_t>(cmd);
    switch (cmd) {
    case smtp_command::helo:
    case smtp_command::ehlo: c_state_ = arg_state::helo_lead; break;
    case smtp_command::mail:
    case smtp_command::rcpt: c_state_ = arg_state::keyword_lead; break;
    case smtp_command::bdat: c_state_ = arg_state::bdat_lead; break;
    case smtp_command::auth: c_state_ = arg_state::mech_lead; break;
    default: c_state_ = arg_state::skip; break;
    }
}

// The current token ended (space, or CR for the last one).
void smtp_session::end_token() {
    switch (c_state_) {
    case arg_state::verb: end_verb(); break;
    case arg_state::helo_domain: c_flags_ |= cf_helo_done; break;
    case arg_state::path:
        if (c_flags_ & cf_angle) c_flags_ |= cf_bad;  // no closing '>'
        c_flags_ |= cf_path_done;
        break;
    case arg_state::bdat_kw:
        if (c_word_len_ == 4) c_flags_ |= cf_last;
        else c_flags_ |= cf_bad;
        break;
    case arg_state::mech:
        if (c_word_ == pack("plain") && c_word_len_ == 5) auth_step_ = auth_step::plain;
        else if (c_word_ == pack("login") && c_word_len_ == 5) auth_step_ = auth_step::login_user;
        else auth_step_ = auth_step::other;
        break;
    case arg_state::base64: stop_name(); break;
    default: break;
    }
}

void smtp_session::reset_line() {
    c_word_ = 0;
    c_hash_ = 0;
    c_flags_ = 0;
    c_line_len_ = 0;
    c_state_ = arg_state::verb;
    c_word_len_ = 0;
    c_cmd_ = 0;
    name_phase_ = name_phase::off;
    b64_bits_ = 0;
    b64_nbits_ = 0;
}

void smtp_session::end_line(smtp_observer& obs) {
    const uint32_t f = c_flags_;
    const bool auth_line = (f & cf_response) || static_cast<smtp_command>(c_cmd_) == smtp_command::auth;
    const bool too_long = c_line_len_ > (auth_line ? smtp_max_auth_line : smtp_max_command_line);
    if (too_long) ++long_lines_;

    if (f & cf_response) {
        reset_line();
        if (f & cf_name_ready) obs.on_auth_name(auth_name(), auth_name_truncated());
        return;
    }

    smtp_command_info info;
    info.cmd = static_cast<smtp_command>(c_cmd_);
    info.too_long = too_long;
    const uint32_t domain = (f & cf_domain_nonempty) ? c_hash_ : 0;
    switch (info.cmd) {
    case smtp_command::helo:
    case smtp_command::ehlo:
        info.domain_hash = (f & cf_helo_done) ? domain : 0;
        info.ip_literal = (f & cf_helo_done) && (f & cf_literal);
        info.bare_ip = (f & cf_helo_done) && !info.ip_literal && (f & cf_domain_nonempty) &&
                       ((!(f & cf_not_digits_dots) && (f & cf_inner_dot)) ||
                        (!(f & cf_not_hex_colon) && (f & cf_colon)));
        info.not_fqdn = !info.ip_literal && !info.bare_ip && !(f & cf_inner_dot);
        flags_ |= f_helo_seen;
        helo_flags_ = static_cast<uint8_t>((info.ip_literal ? h_ip_literal : 0) | (info.bare_ip ? h_bare_ip : 0) |
                                           (info.not_fqdn ? h_not_fqdn : 0));
        break;
    case smtp_command::mail:
    case smtp_command::rcpt:
        info.bad_syntax = (f & cf_bad) || !(f & cf_path_done);
        info.null_sender = info.cmd == smtp_command::mail && !info.bad_syntax && (f & cf_null_path);
        info.domain_hash = (f & cf_at) ? domain : 0;
        if (info.cmd == smtp_command::mail) {
            flags_ &= static_cast<uint16_t>(~f_message_open);  // a new transaction: BDAT starts afresh
            ++messages_;
            message_recipients_ = 0;
            sender_hash_ = info.domain_hash;
        } else {
            ++recipients_;
            ++message_recipients_;
        }
        break;
    case smtp_command::bdat:
        if ((f & cf_bad) || !(f & cf_size)) {
            desync(smtp_desync::bad_bdat);
            return;
        }
        info.bdat_size = c_number_;
        info.bdat_last = f & cf_last;
        break;
    case smtp_command::rset: flags_ &= static_cast<uint16_t>(~f_message_open); break;
    case smtp_command::noop:
    case smtp_command::vrfy:
    default: break;
    }

    uint8_t kind = static_cast<uint8_t>(info.cmd);
    if (info.bdat_last) kind |= kind_end_of_data;
    if (!push_pending(kind)) return;
    reset_line();
    if (info.cmd == smtp_command::bdat) {
        c_mode_ = client_mode::bdat;  // c_number_ bytes of chunk follow, whatever they are
        flags_ = static_cast<uint16_t>(info.bdat_last ? (flags_ | f_chunk_last) : (flags_ & ~f_chunk_last));
    }
    obs.on_command(info);
    if ((f & cf_name_ready) && inspecting()) obs.on_auth_name(auth_name(), auth_name_truncated());
    if (info.cmd == smtp_command::bdat && !(flags_ & f_message_open) && inspecting()) {
        flags_ |= f_message_open;  // the first chunk of a message
        obs.on_message_start();
    }
    // A zero-length chunk ends here (BDAT 0 LAST ends the message).
    if (c_mode_ == client_mode::bdat && c_number_ == 0 && inspecting()) client_chunk(nullptr, 0, 0, obs);
}

// --- client: AUTH user names ---------------------------------------------------

void smtp_session::start_name(uint8_t phase) {
    name_phase_ = phase;
    name_len_ = 0;
    flags_ &= static_cast<uint16_t>(~f_name_truncated);
    b64_bits_ = 0;
    b64_nbits_ = 0;
}

// Stops decoding and drops any undecoded bits.
void smtp_session::stop_name() {
    if (name_phase_ == name_phase::login_user && (name_len_ || (flags_ & f_name_truncated)))
        c_flags_ |= cf_name_ready;
    name_phase_ = name_phase::off;
    b64_bits_ = 0;
    b64_nbits_ = 0;
}

// Decodes eagerly: a byte is handed on as soon as its 8 bits are in, so the
// state never holds more than the few bits of a byte not yet complete, and it
// holds none once the name is over (PLAIN's password is never decoded).
void smtp_session::base64_char(uint8_t c) {
    if (name_phase_ == name_phase::off) return;
    const int8_t v = base64_value(c);
    if (v < 0) {  // '=' padding ends the data; anything else is not base64
        stop_name();
        return;
    }
    const unsigned acc = static_cast<unsigned>(b64_bits_) << 6 | static_cast<unsigned>(v);
    const unsigned nbits = b64_nbits_ + 6u;
    if (nbits >= 8) {
        b64_nbits_ = static_cast<uint8_t>(nbits - 8);
        b64_bits_ = static_cast<uint8_t>(acc & ((1u << b64_nbits_) - 1));
        name_byte(static_cast<uint8_t>(acc >> b64_nbits_));
    } else {
        b64_nbits_ = static_cast<uint8_t>(nbits);
        b64_bits_ = static_cast<uint8_t>(acc);
    }
}

// PLAIN is authzid NUL authcid NUL password (RFC 4616).
void smtp_session::name_byte(uint8_t b) {
    auto append = [this](uint8_t x) {
        if (name_len_ < smtp_max_auth_name) name_[name_len_++] = static_cast<char>(x);
        else flags_ |= f_name_truncated;
    };
    switch (name_phase_) {
    case name_phase::plain_authzid:
        if (b == 0) name_phase_ = name_phase::plain_second;
        else append(b);
        return;
    case name_phase::plain_second:
        if (b == 0) {  // empty authcid: the authzid is the name
            c_flags_ |= cf_name_ready;
            stop_name();
            return;
        }
        name_len_ = 0;
        flags_ &= static_cast<uint16_t>(~f_name_truncated);
        append(b);
        name_phase_ = name_phase::plain_authcid;
        return;
    case name_phase::plain_authcid:
        if (b == 0) {  // the password follows: stop here
            c_flags_ |= cf_name_ready;
            stop_name();
            return;
        }
        append(b);
        return;
    case name_phase::login_user: append(b); return;
    default: return;
    }
}

// --- client: message content ---------------------------------------------------

// Content is delivered in runs straight from the caller's buffer: everything but
// the first '.' of each line (dot-stuffing, or the end marker) and the final
// ".CRLF". A CR right after a line's leading dot is held back (it is content only
// if no LF follows); it is known to be a CR, so holding it costs no buffer.
size_t smtp_session::client_data(const uint8_t* p, size_t i, size_t n, smtp_observer& obs) {
    static constexpr uint8_t held_cr = '\r';
    size_t run = i;  // content [run, i) not yet delivered
    while (i < n) {
        if (c_data_state_ == data_state::mid_line) {
            // Only a CR LF '.' changes anything: a CR, LF and other byte lead back to mid_line.
            const size_t cr = i + kernels::find_line_dot(p + i, n - i);
            if (cr == n) {
                i = n;
                break;
            }
            i = cr + 1;
            c_data_state_ = data_state::cr;
            continue;
        }
        const uint8_t c = p[i++];
        switch (c_data_state_) {
        case data_state::cr:
            c_data_state_ = c == '\n' ? data_state::line_start : c == '\r' ? data_state::cr : data_state::mid_line;
            break;
        case data_state::line_start:
            if (c == '.') {  // never content: a dot-stuffed line's first dot, or the end marker
                if (i - 1 > run) {
                    obs.on_content(p + run, i - 1 - run);
                    if (!inspecting()) return i;
                }
                run = i;
                c_data_state_ = data_state::dot;
            } else {
                c_data_state_ = c == '\r' ? data_state::cr : data_state::mid_line;
            }
            break;
        case data_state::dot:  // ".." is a dot-stuffed content line
            if (c == '\r') {
                run = i;  // hold the CR: ".CRLF" ends the message
                c_data_state_ = data_state::dot_cr;
            } else {
                c_data_state_ = data_state::mid_line;
            }
            break;
        case data_state::dot_cr:
            if (c == '\n') {
                c_mode_ = client_mode::line;
                c_data_state_ = data_state::mid_line;
                flags_ &= static_cast<uint16_t>(~f_message_open);
                if (push_pending(static_cast<uint8_t>(smtp_command::data) | kind_end_of_data)) obs.on_message_end();
                return i;
            }
            obs.on_content(&held_cr, 1);  // ".\rX": the CR was content after all
            if (!inspecting()) return i;
            run = i - 1;
            c_data_state_ = c == '\r' ? data_state::cr : data_state::mid_line;
            break;
        default: c_data_state_ = data_state::mid_line; break;
        }
    }
    if (i > run) obs.on_content(p + run, i - run);
    return i;
}

size_t smtp_session::client_chunk(const uint8_t* p, size_t i, size_t n, smtp_observer& obs) {
    const size_t take = n - i < c_number_ ? n - i : c_number_;
    if (take) obs.on_content(p + i, take);
    i += take;
    c_number_ -= static_cast<uint32_t>(take);
    if (c_number_ == 0 && inspecting()) {
        c_mode_ = client_mode::line;
        if (flags_ & f_chunk_last) {
            flags_ &= static_cast<uint16_t>(~(f_chunk_last | f_message_open));
            obs.on_message_end();
        }
    }
    return i;
}

// --- server: replies -------------------------------------------------------------

size_t smtp_session::feed_server(const uint8_t* data, size_t len, smtp_observer& obs) {
    if (!inspecting()) return 0;
    auto bad_reply = [this](size_t at) {
        desync(smtp_desync::bad_reply);
        return at;
    };
    size_t i = 0;
    while (i < len && inspecting()) {
        // A reply line's code and separator taken whole when the segment holds
        // them (the usual case), with the same effect as byte by byte.
        if (s_state_ == reply_state::digit0 && len - i >= 4) {
            const uint8_t d0 = data[i], d1 = data[i + 1], d2 = data[i + 2], sep = data[i + 3];
            if (d0 >= '2' && d0 <= '5' && is_digit(d1) && is_digit(d2) && (sep == '-' || sep == ' ' || sep == '\r')) {
                s_code_ = static_cast<uint16_t>((d0 - '0') * 100 + (d1 - '0') * 10 + (d2 - '0'));
                s_state_ = sep == '-' ? reply_state::text_more : reply_state::text_last;
                s_line_len_ = static_cast<uint16_t>(std::min<size_t>(UINT16_MAX, s_line_len_ + 4u));
                i += 4;
                continue;
            }
        }
        if (s_state_ == reply_state::text_more || s_state_ == reply_state::text_last) {
            const void* lf = std::memchr(data + i, '\n', len - i);
            const size_t end = lf ? static_cast<size_t>(static_cast<const uint8_t*>(lf) - data) : len;
            const size_t line = s_line_len_ + (end - i);
            s_line_len_ = static_cast<uint16_t>(line > UINT16_MAX ? UINT16_MAX : line);
            i = end;
            if (!lf) break;
        }
        const uint8_t c = data[i++];
        if (s_line_len_ != UINT16_MAX) ++s_line_len_;
        bool line_end = false;
        switch (s_state_) {
        case reply_state::digit0:
            if (c < '2' || c > '5') return bad_reply(i);  // SMTP codes are 2yz..5yz
            s_code_ = static_cast<uint16_t>((c - '0') * 100);
            s_state_ = reply_state::digit1;
            break;
        case reply_state::digit1:
        case reply_state::digit2:
            if (!is_digit(c)) return bad_reply(i);
            s_code_ = static_cast<uint16_t>(s_code_ + (c - '0') * (s_state_ == reply_state::digit1 ? 10 : 1));
            ++s_state_;
            break;
        case reply_state::separator:
            if (c == '-') s_state_ = reply_state::text_more;
            else if (c == ' ' || c == '\r') s_state_ = reply_state::text_last;
            else if (c == '\n') s_state_ = reply_state::text_last, line_end = true;
            else return bad_reply(i);
            break;
        default:  // text: only the LF gets here
            line_end = true;
            break;
        }
        if (!line_end) continue;

        if (s_line_len_ > smtp_max_reply_line) ++long_lines_;
        const bool last = s_state_ == reply_state::text_last;
        s_state_ = reply_state::digit0;
        s_line_len_ = 0;
        if (s_multi_code_ && s_multi_code_ != s_code_) return bad_reply(i);  // one reply, one code
        s_multi_code_ = last ? 0 : s_code_;
        if (last) final_reply(s_code_, obs);
    }
    return i;
}

void smtp_session::final_reply(uint16_t code, smtp_observer& obs) {
    smtp_reply_info r;
    r.code = code;
    if (!(flags_ & f_greeting_seen)) {
        flags_ |= f_greeting_seen;
        r.greeting = true;
        obs.on_reply(r);
        return;
    }
    if (!pending_runs_) {
        if (code != 421) {
            desync(smtp_desync::reply_without_command);
            return;
        }
        r.unsolicited = true;
        obs.on_reply(r);
        return;
    }
    pending_run& front = pending_[pending_head_];
    r.to = static_cast<smtp_command>(front.kind & ~kind_end_of_data);
    r.end_of_data = front.kind & kind_end_of_data;

    if (r.to == smtp_command::auth && code == 334) {
        // A challenge: the client's next line answers it, so nothing else may be in flight.
        if (!only_pending_is_front() || !client_at_line_start()) {
            desync(smtp_desync::early_client_data);
            return;
        }
        flags_ |= f_auth_response_due;
        r.intermediate = true;
        obs.on_reply(r);
        return;
    }

    if (--front.count == 0) {
        pending_head_ = static_cast<uint8_t>((pending_head_ + 1) % smtp_max_pending);
        --pending_runs_;
    }

    // 354 and STARTTLS's 220 change what the client stream is: DATA / STARTTLS must have been
    // the last command sent (RFC 2920 3.1, RFC 3207 4.2), with no byte of the client after it.
    const bool opens_data = r.to == smtp_command::data && !r.end_of_data && code == 354;
    const bool opens_tls = r.to == smtp_command::starttls && code == 220;
    if ((opens_data || opens_tls) && (pending_runs_ || !client_at_line_start())) {
        desync(smtp_desync::early_client_data);
        return;
    }

    switch (r.to) {
    case smtp_command::rcpt:
        if (is_permanent_failure(code)) ++rejected_recipients_;
        break;
    case smtp_command::auth:
        auth_step_ = auth_step::none;
        flags_ &= static_cast<uint16_t>(~f_auth_response_due);
        if (is_positive(code)) flags_ |= f_authenticated;
        break;
    default: break;
    }
    if (opens_data) {
        c_mode_ = client_mode::data;
        c_data_state_ = data_state::line_start;
    }
    if (opens_tls) flags_ |= f_tls;
    obs.on_reply(r);
    if (opens_data && inspecting()) {
        flags_ |= f_message_open;
        obs.on_message_start();
    }
}

}  // namespace sekisho
