// Sender signals: see sender_signals.h.
#include "dataplane/inspect/sender_signals.h"

#include "dataplane/smtp/smtp_session.h"

namespace sekisho {

const char* to_string(sender_signal s) {
    switch (s) {
    case sender_signal::from_mismatch: return "from_mismatch";
    case sender_signal::sender_domains: return "sender_domains";
    case sender_signal::ehlo_ip_literal: return "ehlo_ip_literal";
    case sender_signal::ehlo_bare_ip: return "ehlo_bare_ip";
    case sender_signal::ehlo_not_fqdn: return "ehlo_not_fqdn";
    case sender_signal::count_: break;
    }
    return "?";
}

namespace {

constexpr size_t npos = std::string_view::npos;

constexpr bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// A domain as a mailbox can carry it: letters, digits, '.', '-', '_' (and
// UTF-8 for internationalised names), or a [domain literal].
std::string_view checked_domain(std::string_view d) {
    while (!d.empty() && is_space(d.front())) d.remove_prefix(1);
    while (!d.empty() && is_space(d.back())) d.remove_suffix(1);
    if (d.empty()) return {};
    if (d.front() == '[') {
        if (d.size() < 3 || d.back() != ']') return {};
        for (char c : d.substr(1, d.size() - 2))
            if (is_space(c) || c == '[' || c == ']' || c == '\\') return {};
        return d;
    }
    for (char c : d) {
        const auto u = static_cast<unsigned char>(c);
        const bool ok = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u == '.' ||
                        u == '-' || u == '_' || u >= 0x80;
        if (!ok) return {};
    }
    return d;
}

}  // namespace

std::string_view header_from_domain(std::string_view v) {
    if (v.size() > header_from_max_bytes) v = v.substr(0, header_from_max_bytes);
    enum class state : uint8_t { normal, quoted, comment, angle, angle_quoted };
    state st = state::normal;
    unsigned depth = 0;  // comment nesting
    bool escape = false;
    size_t token = npos, token_at = npos;  // the bare word being read, and its last '@'
    size_t bare_begin = npos, bare_end = 0;  // the first bare addr-spec's domain
    size_t angle_at = npos;
    auto end_token = [&](size_t i) {
        if (token != npos && token_at != npos && bare_begin == npos) {
            bare_begin = token_at + 1;
            bare_end = i;
        }
        token = token_at = npos;
    };
    for (size_t i = 0; i < v.size(); ++i) {
        const char c = v[i];
        if (escape) {
            escape = false;
            continue;
        }
        switch (st) {
        case state::quoted:
            if (c == '\\') escape = true;
            else if (c == '"') st = state::normal;  // "john doe"@example.jp: the word goes on
            continue;
        case state::comment:
            if (c == '\\') escape = true;
            else if (c == '(') ++depth;
            else if (c == ')' && --depth == 0) st = state::normal;
            continue;
        case state::angle_quoted:
            if (c == '\\') escape = true;
            else if (c == '"') st = state::angle;
            continue;
        case state::angle:
            if (c == '"') st = state::angle_quoted;
            else if (c == '@') angle_at = i;  // the last '@': source routes <@a,@b:user@d> too
            else if (c == '>') return angle_at == npos ? std::string_view{} : checked_domain(v.substr(angle_at + 1, i - angle_at - 1));
            continue;
        case state::normal:
            break;
        }
        if (c == '"') {
            if (token == npos) token = i;
            st = state::quoted;
        } else if (c == '\\') {
            if (token == npos) token = i;
            escape = true;
        } else if (c == '(') {
            end_token(i);
            st = state::comment;
            depth = 1;
        } else if (c == '<') {
            end_token(i);  // an angle address wins over bare words before it
            st = state::angle;
            angle_at = npos;
        } else if (c == ',' || c == ';') {
            end_token(i);
            if (bare_begin != npos) break;  // the end of the first mailbox
        } else if (is_space(c) || c == ':' || c == '>') {
            end_token(i);
        } else {
            if (token == npos) token = i;
            if (c == '@') token_at = i;
        }
    }
    end_token(v.size());
    if (bare_begin == npos) return {};
    return checked_domain(v.substr(bare_begin, bare_end - bare_begin));
}

bool from_mismatch(uint32_t mail_from_hash, std::string_view domain, from_alignment alignment) {
    if (mail_from_hash == 0 || domain.empty()) return false;
    if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
    if (smtp_domain_hash(domain) == mail_from_hash) return false;
    if (alignment == from_alignment::relaxed) {
        // Parents of the From domain with two labels or more.
        for (size_t dot = domain.find('.'); dot != npos; dot = domain.find('.', dot + 1)) {
            const std::string_view parent = domain.substr(dot + 1);
            if (parent.find('.') == npos) break;
            if (smtp_domain_hash(parent) == mail_from_hash) return false;
        }
    }
    return true;
}

uint32_t sender_domain_set::observe(uint32_t domain_hash, uint64_t now_ns, uint64_t window_ns) {
    if (window_ns == 0) return count_;
    const auto index = static_cast<uint32_t>(now_ns / window_ns);
    if (count_ == 0) {
        window_ = index;
    } else if (index != window_ && static_cast<int32_t>(index - window_) > 0) {
        *this = sender_domain_set();  // a new window
        window_ = index;
    }  // an older clock counts in the window the set holds
    if (domain_hash == 0) return count_;
    for (uint16_t i = 0; i < stored_; ++i)
        if (hashes_[i] == domain_hash) return count_;
    if (stored_ < capacity) {
        hashes_[stored_++] = domain_hash;
        ++count_;
    } else {
        count_ = capacity + 1;  // not among the first `capacity`: more than capacity
    }
    return count_;
}

void ehlo_signals(const sender_signal_policy& p, bool ip_literal, bool bare_ip, bool not_fqdn, signal_hits& hits) {
    if (ip_literal) hits.add(sender_signal::ehlo_ip_literal, p.ehlo_ip_literal);
    if (bare_ip) hits.add(sender_signal::ehlo_bare_ip, p.ehlo_bare_ip);
    if (not_fqdn) hits.add(sender_signal::ehlo_not_fqdn, p.ehlo_not_fqdn);
}

void ehlo_signals(const sender_signal_policy& p, const smtp_session& s, signal_hits& hits) {
    if (!s.helo_seen()) return;
    ehlo_signals(p, s.helo_ip_literal(), s.helo_bare_ip(), s.helo_not_fqdn(), hits);
}

void sender_domain_signal(const sender_signal_policy& p, sender_domain_set& set, uint32_t mail_from_hash,
                          uint64_t now_ns, signal_hits& hits) {
    if (p.sender_domains == 0 || p.sender_domains_max == 0 || p.sender_domains_window_ns == 0) return;
    if (set.observe(mail_from_hash, now_ns, p.sender_domains_window_ns) > p.sender_domains_max)
        hits.add(sender_signal::sender_domains, p.sender_domains);
}

void from_signal(const sender_signal_policy& p, uint32_t mail_from_hash, std::string_view header_from_value,
                 signal_hits& hits) {
    if (p.from_mismatch == 0) return;
    if (from_mismatch(mail_from_hash, header_from_domain(header_from_value), p.alignment))
        hits.add(sender_signal::from_mismatch, p.from_mismatch);
}

}  // namespace sekisho
