// Scored sender signals, from what smtp_session reports
// (EHLO flags, the MAIL FROM domain hash) and what the header decoder reports
// (the From header's value):
//
//   from_mismatch    the header From domain is not the MAIL FROM domain
//                    (compared as smtp_domain_hash values: ASCII case and one
//                    trailing dot do not matter). Not evaluated for a null
//                    sender (MAIL FROM:<>, bounces) or a From without a
//                    domain. `relaxed` alignment also accepts a MAIL FROM
//                    domain that is a parent of the header From domain
//                    (From news.example.jp, MAIL FROM example.jp); the other
//                    direction (MAIL FROM bounce.example.jp) cannot be told
//                    from a hash and stays a mismatch.
//   sender_domains   more than `sender_domains_max` distinct MAIL FROM
//                    domains from one subscriber in one window (epoch-
//                    aligned). Counted in a sender_domain_set, 64 bytes in
//                    the subscriber's record (owned by its worker): exact up
//                    to 14 distinct domains; a 15th and beyond read as 15
//                    ("more than 14"), so sender_domains_max must be <= 14.
//   ehlo_ip_literal  EHLO [192.0.2.1] / [IPv6:2001:db8::1]
//   ehlo_bare_ip     EHLO 192.0.2.1 / 2001:db8::1
//   ehlo_not_fqdn    EHLO localhost, EHLO mypc, EHLO with no argument
//
// Each signal has a name (to_string, for events and counters) and a score
// set by policy; a score of 0 disables it. A signal adds its score at most
// once to one signal_hits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sekisho {

class smtp_session;

// Order and names are stable: they index counters.
enum class sender_signal : uint8_t {
    from_mismatch = 0,
    sender_domains,
    ehlo_ip_literal,
    ehlo_bare_ip,
    ehlo_not_fqdn,
    count_
};
constexpr size_t sender_signal_count = static_cast<size_t>(sender_signal::count_);
const char* to_string(sender_signal s);

enum class from_alignment : uint8_t { strict, relaxed };

struct sender_signal_policy {
    int32_t from_mismatch = 0;
    from_alignment alignment = from_alignment::strict;
    int32_t ehlo_ip_literal = 0;
    int32_t ehlo_bare_ip = 0;
    int32_t ehlo_not_fqdn = 0;
    int32_t sender_domains = 0;
    uint32_t sender_domains_max = 0;      // fires above this many distinct domains (<= 14)
    uint64_t sender_domains_window_ns = 0;
};

// The signals that fired for one message (or session), and their total score.
struct signal_hits {
    uint32_t mask = 0;
    int32_t score = 0;

    bool has(sender_signal s) const { return mask & bit(s); }
    void add(sender_signal s, int32_t points) {
        if (points == 0 || has(s)) return;
        mask |= bit(s);
        score += points;
    }

private:
    static constexpr uint32_t bit(sender_signal s) { return 1u << static_cast<unsigned>(s); }
};

// --- header From ---

// Bytes of a From header value read at most (RFC 5322's line limit, folded
// lines unfolded by the caller); a mailbox starting later is not found.
constexpr size_t header_from_max_bytes = 998;

// The domain of the first mailbox of a From header value, as a view into
// `value`: "\"Name\" <user@example.jp>", "Name <user@example.jp>",
// "user@example.jp (Name)", "<@relay.example:user@example.jp>",
// "\"a@b\" <user@example.jp>", "group: user@example.jp;". Quoted strings,
// comments and escapes are skipped; an angle address wins over bare words
// before it; a domain literal keeps its brackets (as MAIL FROM's hash does).
// Empty when there is no such mailbox or its domain has bytes a domain cannot
// have. One pass, no allocation.
std::string_view header_from_domain(std::string_view value);

// Whether the From domain fails to align with the MAIL FROM domain hash (the
// from_mismatch signal's condition). False when either is missing.
bool from_mismatch(uint32_t mail_from_hash, std::string_view header_from_domain,
                   from_alignment alignment = from_alignment::strict);

// --- distinct MAIL FROM domains per subscriber ---

class sender_domain_set {
public:
    static constexpr unsigned capacity = 14;

    // Books a MAIL FROM domain (0, a null sender: not a domain, not booked)
    // and returns the distinct domains in the window so far, capacity + 1
    // meaning "more than capacity".
    uint32_t observe(uint32_t domain_hash, uint64_t now_ns, uint64_t window_ns);
    uint32_t distinct() const { return count_; }

private:
    uint32_t window_ = 0;  // window index (mod 2^32) of what the set holds
    uint16_t count_ = 0;   // distinct domains booked, saturating at capacity + 1
    uint16_t stored_ = 0;  // entries of hashes_ in use
    uint32_t hashes_[capacity] = {};
};
static_assert(sizeof(sender_domain_set) == 64);

// --- evaluation: each adds the signals that fire to `hits` ---

void ehlo_signals(const sender_signal_policy& p, bool ip_literal, bool bare_ip, bool not_fqdn, signal_hits& hits);
// The session's last EHLO/HELO; nothing if it sent none.
void ehlo_signals(const sender_signal_policy& p, const smtp_session& s, signal_hits& hits);
// At each MAIL FROM, with the subscriber's set.
void sender_domain_signal(const sender_signal_policy& p, sender_domain_set& set, uint32_t mail_from_hash,
                          uint64_t now_ns, signal_hits& hits);
// At the message's From header (its value, unfolded).
void from_signal(const sender_signal_policy& p, uint32_t mail_from_hash, std::string_view header_from_value,
                 signal_hits& hits);

}  // namespace sekisho
