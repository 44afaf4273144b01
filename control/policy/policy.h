// The operator's policy: the model of the YAML file and its validation.
//
// Every key is documented in docs/policy.md. Errors name the file and line:
// "policy.yaml:12: subscribers.dynamic[2]: '198.51.100.1/24' has host bits set".
// All errors of a file are collected and reported together.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/compiled_policy.h"
#include "dataplane/inspect/content_rules.h"
#include "dataplane/inspect/inspection_policy.h"
#include "dataplane/limits/mail_limits.h"

namespace sekisho {

struct ip_prefix {
    uint8_t family = 4;                 // 4 or 6
    uint8_t length = 0;                 // prefix length in bits
    std::array<uint8_t, 16> bytes{};    // network order; IPv4 in the first 4
    int line = 0;                       // where the policy declared it

    uint32_t v4() const {
        return static_cast<uint32_t>(bytes[0]) << 24 | static_cast<uint32_t>(bytes[1]) << 16 |
               static_cast<uint32_t>(bytes[2]) << 8 | bytes[3];
    }
    std::string to_string() const;
    // Whether every address of `o` (a host or a longer prefix) is in this
    // prefix: same family, this one no longer, the same leading bits. Host
    // bits beyond the length are ignored.
    bool contains(const ip_prefix& o) const {
        if (family != o.family || length > o.length) return false;
        const unsigned full = length / 8, rest = length % 8;
        for (unsigned i = 0; i < full; ++i)
            if (bytes[i] != o.bytes[i]) return false;
        if (rest == 0) return true;
        const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
        return (bytes[full] & mask) == (o.bytes[full] & mask);
    }
    bool operator==(const ip_prefix& o) const {
        return family == o.family && length == o.length && bytes == o.bytes;
    }
    bool overlaps(const ip_prefix& o) const { return contains(o) || o.contains(*this); }
};

// Hashes what operator== compares (not the line).
struct ip_prefix_hash {
    size_t operator()(const ip_prefix& p) const {
        uint64_t h = (uint64_t{p.family} << 8 | p.length) * 0x9e3779b97f4a7c15ull;
        for (size_t i = 0; i < p.bytes.size(); i += 8) {
            uint64_t w = 0;
            for (size_t k = 0; k < 8; ++k) w = w << 8 | p.bytes[i + k];
            h = (h ^ w) * 0xff51afd7ed558ccdull;
            h ^= h >> 32;
        }
        return static_cast<size_t>(h);
    }
};

// Parses "198.51.100.0/24", "2001:db8::/32", or a bare address (a host
// prefix). On failure returns nullopt and sets `error`.
std::optional<ip_prefix> parse_prefix(std::string_view text, std::string& error);

// A duration as a policy writes it, in the largest unit that divides it
// exactly: "90d", "1h", "10s", "500ms", "0".
std::string duration_text(uint64_t ns);

struct limit_rule {
    std::string name;
    std::string applies_to = "any";   // any | dynamic | static | group:NAME
    limit_scope scope = limit_scope::address;
    limit_measure measure = limit_measure::messages;
    uint32_t max = 0;
    uint64_t window_ns = 0;           // not used by recipients_per_message
    uint32_t burst = 1;               // connections only
    limit_action action = limit_action::tempfail;
    uint64_t cooldown_ns = 0;
    int line = 0;
};

// One binding covers at most 2^16 IPv4 addresses or IPv6 subscriber
// prefixes (each is a table entry); wider prefixes are refused.
constexpr unsigned max_binding_host_bits = 16;

// An address or prefix bound to an account without RADIUS.
struct static_binding {
    ip_prefix prefix;
    std::string account;
    int line = 0;
};

struct tracking_config {
    uint32_t flows_per_worker = 65536;
    uint64_t flow_idle_timeout_ns = 300'000'000'000ull;
    uint32_t subscribers_per_worker = 262144;
    uint32_t max_bindings = 1u << 20;
    uint32_t max_accounts = 1u << 20;
};

// Where subscriber identity comes from and where its history goes.
struct identity_config {
    std::string radius_listen;        // "127.0.0.1:1813", "[::1]:1813"; empty: no listener
    std::string radius_clients_file;  // NAS addresses and shared secrets (never in the policy)
    std::string history_database;     // SQLite file; empty: no history
    uint64_t history_retention_ns = 90ull * 86'400'000'000'000ull;
};

// The event log (events: section, docs/events.md).
enum class events_fsync : uint8_t { never, rotate, interval, every };

struct events_config {
    std::string file = "/var/log/sekisho/events.jsonl";  // "-": standard output
    uint64_t rotate_bytes = 100ull << 20;                // 0: no size rotation
    uint64_t rotate_interval_ns = 86'400'000'000'000ull;  // 0: no time rotation
    uint32_t keep = 14;                                  // rotated files kept (FILE.1 ... FILE.keep)
    events_fsync fsync = events_fsync::interval;
    uint64_t fsync_interval_ns = 1'000'000'000ull;
    uint64_t aggregate_window_ns = 10'000'000'000ull;    // 0: one line per event
    uint32_t max_pending = 65536;                        // aggregation keys held at once (not in the policy)
    uint32_t ring_size = 8192;                           // events each worker's ring holds (read at start)
};

// Parses "500ms", "30s", "10m", "1h", "90d" into nanoseconds.
std::optional<uint64_t> parse_duration(std::string_view text);

struct policy {
    std::string source = "<policy>";   // file name used in messages
    int version = 1;
    std::vector<uint16_t> smtp_ports{25};            // blocked by OP25B
    std::vector<uint16_t> submission_ports{587, 465};
    std::vector<ip_prefix> dynamic_ranges;
    std::vector<ip_prefix> static_ranges;
    uint8_t ipv6_prefix_length = 56;
    std::vector<ip_prefix> relays;
    op25b_mode mode = op25b_mode::enforce;
    op25b_action action = op25b_action::reset;
    std::vector<uint16_t> implicit_tls_ports{465};   // TLS from the first byte
    std::vector<static_binding> bindings;
    std::vector<std::pair<std::string, std::vector<std::string>>> account_groups;
    std::vector<limit_rule> limits;
    tracking_config tracking;
    identity_config identity;
    events_config events;
    inspection_settings inspection;
    std::vector<content_rule> content_rules;   // inspection.rules
    uint64_t content_compile_timeout_ns = 60'000'000'000ull;   // inspection.compile_timeout (applies only)
    int inspection_line = 0;   // where the inspection section starts (0: absent)
    // Where each key the file sets was written ("events.file" -> 12), for
    // messages about keys after the read (start-only keys, files).
    std::map<std::string, int> key_lines;
    int line_of(const std::string& key) const {
        const auto it = key_lines.find(key);
        return it == key_lines.end() ? 0 : it->second;
    }
};

// Every problem found, each "name:line: message", kept in line order whatever
// order the checks found them in (policy text, files it names, rule compiles).
class policy_error : public std::runtime_error {
public:
    explicit policy_error(std::vector<std::string> errors);
    const std::vector<std::string>& errors() const { return errors_; }

private:
    std::vector<std::string> errors_;
};

// Throw policy_error with every problem found, each as "name:line: message".
// The policy file's text; policy_error "PATH:0: cannot open the policy file" if unreadable.
std::string read_policy_file(const std::string& path);
policy load_policy_file(const std::string& path);
policy load_policy_text(const std::string& text, const std::string& name);

// A key the running daemon read at start and cannot change while it runs
// (table sizes, listeners, the event log, the history): an apply that
// changes one is refused, naming it (docs/policy.md).
struct start_only_change {
    std::string key;               // "tracking.max_bindings"
    std::string running, wanted;   // the values as text
    int line = 0;                  // where `next` sets it (0: left to the default)
};
// Every such key `next` changes, in line order (keys left to their default first).
std::vector<start_only_change> start_only_changes(const policy& running, const policy& next);
// "policy.yaml:7: tracking.max_bindings: read at start only; running 1048576, this policy 2048 (restart to change it)"
std::string describe(const start_only_change& c, const std::string& source);


}  // namespace sekisho
