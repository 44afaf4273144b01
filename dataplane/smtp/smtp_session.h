// Incremental parser of one SMTP session, as seen on the wire between a
// subscriber (client) and a mail server.
//
// The caller feeds the client->server bytes and the server->client bytes
// separately, each direction in TCP sequence order, each byte exactly once
// (retransmitted overlap trimmed), in whatever segments they came in: a command
// or a reply may be split anywhere and several may share one segment. The two
// directions must be fed in the order the gateway saw them, which TCP makes
// causal: the server's reply to a command always arrives after the command, and
// the client sends message content only after the server's 354. Parsing a
// segment reports what completed in it, synchronously, to an `smtp_observer`.
//
// Nothing is buffered: commands and replies are parsed byte by byte into a
// fixed state (sizeof(smtp_session) <= 192 bytes, checked below), so a line of
// any length costs no memory and the session can live in a per-flow table.
// No allocation, no exceptions, no DPDK dependency. A zero-filled session is a
// valid fresh session (not implicit TLS).
//
// When the parser cannot know what the two ends understand — a lost segment, a
// reply it cannot match, a command framing servers disagree on — it does not
// guess: the session becomes `uninspectable` (with a reason) and ignores all
// further bytes. After the server's 220 to STARTTLS, or from the first byte on
// an implicit-TLS port (465), the session is `tls`: opaque, bytes ignored.
//
// Counting, for the limits:
// - messages(): one per MAIL FROM command, at the command, whether or not the
//   server accepts it (the limit must be able to refuse the MAIL itself);
// - recipients(): one per RCPT TO command; message_recipients(): RCPTs since
//   the last MAIL FROM;
// - rejected_recipients(): 5xx replies to RCPT TO (fictitious addresses).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace sekisho {

// A client command, by verb (case-insensitive). `none` is what the greeting and
// an unsolicited 421 answer.
enum class smtp_command : uint8_t {
    helo, ehlo, mail, rcpt, data, bdat, rset, quit, starttls, auth, noop, vrfy, other, none
};
const char* to_string(smtp_command c);

// Why a session stopped being inspected. Order and names are stable: they
// index counters.
enum class smtp_desync : uint8_t {
    none = 0,
    gap,                    // mark_gap(): lost or out-of-order segment
    reply_without_command,  // a reply when no command is waiting for one
    bad_reply,              // a reply line that is not 2yz-5yz, or a multi-line reply changing code
    pipeline_overflow,      // more than smtp_max_pending runs of commands awaiting replies
    bare_lf,                // a command line ending in LF without CR: servers split it differently
    bad_bdat,               // BDAT without a usable chunk size: its length is unknown
    early_client_data,      // client bytes sent before the 354 / 220 / 334 that allows them
                            // (also the STARTTLS command-injection pattern, CVE-2011-0411)
    count_
};
constexpr size_t smtp_desync_count = static_cast<size_t>(smtp_desync::count_);
const char* to_string(smtp_desync d);

constexpr size_t smtp_max_command_line = 512;  // RFC 5321 4.5.3.1.4, CRLF included
constexpr size_t smtp_max_auth_line = 12288;   // RFC 4954 section 4 (AUTH and its responses)
constexpr size_t smtp_max_reply_line = 512;    // RFC 5321 4.5.3.1.5
constexpr size_t smtp_max_pending = 16;        // runs of identical commands awaiting replies
constexpr size_t smtp_max_auth_name = 64;      // bytes of the AUTH user name kept

namespace smtp_detail {
constexpr uint32_t fnv_basis = 2166136261u;
constexpr uint32_t fnv_prime = 16777619u;
constexpr uint8_t ascii_lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? static_cast<uint8_t>(c + 32) : c; }
constexpr uint32_t hash_step(uint32_t h, uint8_t c) { return (h ^ ascii_lower(c)) * fnv_prime; }
}  // namespace smtp_detail

// The hash the parser reports for a domain: 32-bit FNV-1a of the ASCII-lowercased
// bytes, one trailing dot ignored; 0 for an empty domain. The policy compiler
// hashes configured domains with this same function.
constexpr uint32_t smtp_domain_hash(std::string_view domain) {
    if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
    if (domain.empty()) return 0;
    uint32_t h = smtp_detail::fnv_basis;
    for (char c : domain) h = smtp_detail::hash_step(h, static_cast<uint8_t>(c));
    return h;
}

// A complete command line (CRLF seen). Fields not relevant to `cmd` are 0/false.
struct smtp_command_info {
    smtp_command cmd = smtp_command::other;
    // EHLO/HELO: the argument; MAIL: the sender's domain; RCPT: the recipient's
    // domain (smtp_domain_hash; 0 when there is none, e.g. <> or <postmaster>).
    uint32_t domain_hash = 0;
    uint32_t bdat_size = 0;      // BDAT: chunk bytes that follow the line
    bool null_sender = false;    // MAIL FROM:<>
    bool ip_literal = false;     // EHLO/HELO [192.0.2.1] or [IPv6:...]
    bool bare_ip = false;        // EHLO/HELO 192.0.2.1 or 2001:db8::1 (no brackets)
    bool not_fqdn = false;       // EHLO/HELO with no dot (localhost, mypc) or no argument
    bool bdat_last = false;      // BDAT n LAST
    bool bad_syntax = false;     // MAIL/RCPT without FROM:/TO: and a path
    bool too_long = false;       // longer than smtp_max_command_line (smtp_max_auth_line for AUTH);
                                 // parsed all the same, nothing is stored
};

// A complete reply (the final line of a multi-line reply seen).
struct smtp_reply_info {
    uint16_t code = 0;
    smtp_command to = smtp_command::none;  // the command it answers
    bool greeting = false;       // the server's first reply (to == none)
    bool end_of_data = false;    // answers a message: CRLF.CRLF after DATA, or BDAT LAST (to == data / bdat)
    bool intermediate = false;   // 334 to AUTH: the exchange goes on, the AUTH still waits for its reply
    bool unsolicited = false;    // 421 with nothing waiting (server closing, e.g. idle timeout; to == none)
};

// What the session reports, synchronously, from inside feed_client/feed_server.
// A callback may read the session's state (counters already include the event)
// and may call smtp_session::stop() to end parsing there.
class smtp_observer {
public:
    virtual void on_command(const smtp_command_info& c) = 0;
    virtual void on_reply(const smtp_reply_info& r) = 0;
    // The client's message content begins: right after the 354 to DATA (before any content byte),
    // or at the first BDAT command of a message (after its on_command).
    virtual void on_message_start() {}
    // Message content, exactly as the receiving server stores it, in order, split anywhere (a call
    // per run of bytes; never empty). DATA: every byte after the 354 up to the terminating ".CRLF"
    // line, the CRLF that ends the last line included (RFC 5321 4.1.1.4: it belongs to the
    // message), dot-stuffing undone (the first '.' of a line is dropped, RFC 5321 4.5.2); an empty
    // message (".CRLF" right after the 354) has no content. BDAT: the chunk bytes as sent.
    virtual void on_content(const uint8_t* /*data*/, size_t /*len*/) {}
    // The client finished a message: CRLF.CRLF after DATA, or the last byte of the BDAT LAST chunk.
    virtual void on_message_end() {}
    // AUTH PLAIN/LOGIN sent a user name in clear (base64): PLAIN's authcid, or its authzid if the
    // authcid is empty; LOGIN's first response. At most smtp_max_auth_name bytes; `truncated` if it
    // was longer. Whether it authenticated is the reply to AUTH (2xx; smtp_session::authenticated()).
    virtual void on_auth_name(std::string_view /*name*/, bool /*truncated*/) {}
    // The argument of an envelope command (EHLO, HELO, MAIL, RCPT): the bytes after the verb and
    // its space up to the CR, as sent, in order, split anywhere (a call per run of a segment's
    // bytes); the last call of a line has `line_end` (and may be empty), and comes before that
    // line's on_command. Only while the session is inspectable (not after STARTTLS).
    virtual void on_envelope(smtp_command /*cmd*/, const uint8_t* /*data*/, size_t /*len*/, bool /*line_end*/) {}

protected:
    ~smtp_observer() = default;
};

class smtp_session {
public:
    explicit smtp_session(bool implicit_tls = false) : flags_(implicit_tls ? f_tls : 0) {}
    void reset(bool implicit_tls) { *this = smtp_session(implicit_tls); }

    // Feed the next bytes of one direction. Returns the offset where parsing
    // ended: `len`, or less if the session stopped inspecting during the call
    // (stop(), STARTTLS, desync); 0 if it was not inspecting on entry.
    size_t feed_client(const uint8_t* data, size_t len, smtp_observer& obs);
    size_t feed_server(const uint8_t* data, size_t len, smtp_observer& obs);

    // The caller saw a hole in either direction's sequence: uninspectable (gap).
    // No effect on a session that is already tls, uninspectable or stopped.
    void mark_gap() { desync(smtp_desync::gap); }
    // The caller is done with this session (e.g. it refused the command just
    // reported): ignore all further bytes. Not counted as a desync.
    void stop() { flags_ |= f_stopped; }

    bool inspecting() const { return !(flags_ & (f_tls | f_uninspectable | f_stopped)); }
    bool tls() const { return flags_ & f_tls; }
    bool uninspectable() const { return flags_ & f_uninspectable; }
    smtp_desync desync_reason() const { return desync_; }
    bool stopped() const { return flags_ & f_stopped; }
    bool in_data() const { return c_mode_ != client_mode::line; }   // DATA content or a BDAT chunk
    bool greeting_seen() const { return flags_ & f_greeting_seen; }
    bool authenticated() const { return flags_ & f_authenticated; }  // 2xx to AUTH
    size_t pending() const;                                    // commands awaiting a reply

    // The last EHLO/HELO.
    bool helo_seen() const { return flags_ & f_helo_seen; }
    bool helo_ip_literal() const { return helo_flags_ & h_ip_literal; }
    bool helo_bare_ip() const { return helo_flags_ & h_bare_ip; }
    bool helo_not_fqdn() const { return helo_flags_ & h_not_fqdn; }
    // The sender domain of the last MAIL FROM (0 for <> or none).
    uint32_t sender_hash() const { return sender_hash_; }
    // The user name of the last AUTH PLAIN/LOGIN attempt (never the password).
    std::string_view auth_name() const { return {name_, name_len_}; }
    bool auth_name_truncated() const { return flags_ & f_name_truncated; }

    uint32_t messages() const { return messages_; }
    uint32_t recipients() const { return recipients_; }
    uint32_t rejected_recipients() const { return rejected_recipients_; }
    uint32_t message_recipients() const { return message_recipients_; }
    uint32_t long_lines() const { return long_lines_; }          // command, AUTH or reply lines over the bound

private:
    enum class client_mode : uint8_t { line = 0, data, bdat };
    struct pending_run {
        uint8_t kind;    // smtp_command | kind_end_of_data
        uint8_t count;   // 1..255 identical commands in a row
    };
    static constexpr uint8_t kind_end_of_data = 0x80;

    static constexpr uint16_t f_tls = 1 << 0, f_uninspectable = 1 << 1, f_stopped = 1 << 2,
                              f_greeting_seen = 1 << 3, f_authenticated = 1 << 5,
                              f_auth_response_due = 1 << 6, f_helo_seen = 1 << 7,
                              f_name_truncated = 1 << 8, f_chunk_last = 1 << 9,
                              f_message_open = 1 << 10;  // on_message_start() sent, no end yet
    static constexpr uint8_t h_ip_literal = 1, h_bare_ip = 2, h_not_fqdn = 4;

    void desync(smtp_desync why);
    bool push_pending(uint8_t kind);
    bool only_pending_is_front() const;
    bool client_at_line_start() const { return c_mode_ == client_mode::line && c_line_len_ == 0; }

    size_t client_line(const uint8_t* p, size_t i, size_t n, smtp_observer& obs);
    size_t client_data(const uint8_t* p, size_t i, size_t n, smtp_observer& obs);
    size_t client_chunk(const uint8_t* p, size_t i, size_t n, smtp_observer& obs);
    void line_byte(uint8_t c);
    // What precedes the path of the current command: "from:" (MAIL) or "to:" (RCPT).
    std::string_view path_keyword() const {
        return static_cast<smtp_command>(c_cmd_) == smtp_command::mail ? "from:" : "to:";
    }
    // A run of path bytes outside quotes from p[i], up to the next byte that
    // means something to the path (or n): the domain's bytes folded into its
    // hash. Returns where the run ended.
    size_t path_run(const uint8_t* p, size_t i, size_t n);
    void end_token();
    void end_verb();
    void end_line(smtp_observer& obs);
    void reset_line();
    void fold_domain(uint8_t c);
    void start_domain();
    void start_name(uint8_t phase);
    void base64_char(uint8_t c);
    void name_byte(uint8_t b);
    void stop_name();
    void final_reply(uint16_t code, smtp_observer& obs);

    // --- client line parser (per line unless noted) ---
    uint64_t c_word_ = 0;        // verb, then AUTH mechanism: up to 8 bytes lowercased, packed
    uint32_t c_number_ = 0;      // BDAT size; then chunk bytes still to skip (across lines)
    uint32_t c_hash_ = 0;        // domain hash being built
    uint32_t c_flags_ = 0;       // token facts (smtp_session.cpp: cf_*)
    uint16_t c_line_len_ = 0;    // bytes of this line so far, saturating
    client_mode c_mode_ = client_mode::line;
    uint8_t c_state_ = 0;        // where in the line (smtp_session.cpp: arg_state)
    uint8_t c_word_len_ = 0;     // bytes in c_word_, or keyword match index
    uint8_t c_cmd_ = 0;          // smtp_command of this line
    uint8_t c_data_state_ = 0;   // end-of-data marker matcher (DATA content)
    uint8_t b64_bits_ = 0;       // base64 bits not yet a byte (< 8; never password bits)
    uint8_t b64_nbits_ = 0;
    uint8_t name_phase_ = 0;     // what decoded AUTH bytes are (smtp_session.cpp: name_phase)
    uint8_t auth_step_ = 0;      // what the next AUTH response line carries (across lines)

    // --- server reply parser ---
    uint16_t s_code_ = 0;        // code of the current line
    uint16_t s_multi_code_ = 0;  // code of the multi-line reply in progress, 0 if none
    uint16_t s_line_len_ = 0;
    uint8_t s_state_ = 0;

    // --- commands awaiting replies, run-length encoded (300 pipelined RCPTs = 1 run) ---
    uint8_t pending_head_ = 0, pending_runs_ = 0;
    pending_run pending_[smtp_max_pending] = {};

    // --- session facts and counters ---
    uint16_t flags_ = 0;
    uint8_t helo_flags_ = 0;
    smtp_desync desync_ = smtp_desync::none;
    uint32_t sender_hash_ = 0;
    uint32_t messages_ = 0, recipients_ = 0, rejected_recipients_ = 0;
    uint32_t message_recipients_ = 0, long_lines_ = 0;
    uint8_t name_len_ = 0;
    char name_[smtp_max_auth_name] = {};
};

// 176 bytes on x86-64: the per-flow cost of SMTP tracking.
static_assert(sizeof(smtp_session) <= 192, "smtp_session is per flow: keep it within 192 bytes");
static_assert(std::is_trivially_copyable_v<smtp_session>);

}  // namespace sekisho
