// RADIUS accounting (RFC 2866) as the source of subscriber bindings: the
// packet parser, the authenticators, the client list and the UDP listener.
//
// Every datagram is untrusted. The parser bounds-checks each field and
// returns a precise error ("attribute 8 (Framed-IP-Address) at offset 26:
// length 9 runs past the end of the packet (6 octets left)"); it never reads
// outside the span it is given. Shared secrets never appear in a message,
// an exception or a log line.
//
// The listener is driven by its owner's loop (poll_once(), non-blocking):
//
//   datagram ─► known client? ─► header sane? ─► code 4? ─► Request Authenticator
//     ─► answered already? ─► attributes ─► times sane? ─► binding_update
//     ─► apply callback ─► true: Accounting-Response
//
// Each arrow that fails drops the datagram silently (RFC 2866: no negative
// response exists) and counts it by reason. The response is sent only after
// the callback returned true (and, with set_commit(), after the poll's
// commit returned true): to the NAS a response means "the record is
// stored", so an update that could not be applied is left for the NAS to
// retransmit.
//
// Exact duplicates (same source address and port, Identifier and Request
// Authenticator: a NAS retransmitting because our response was lost) within
// listener_config::duplicate_window_seconds are not applied again: the
// cached Accounting-Response is sent again and the datagram counted as
// `duplicate`. Only answered requests are cached, so the retransmission of
// one that was not stored is applied. A resend after the window, or an old
// update sent again as a new packet, is applied: the binding history's rules
// make it change nothing that a newer event decided.
//
// Time sanity: the event time is bounded by the receive time (see
// check_event_time); an update outside the bounds is dropped as `bad_time`
// and logged with its values, never stored (an Event-Timestamp of 2^32-1
// would otherwise be a session in 2106).
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "control/identity/binding.h"
#include "control/policy/policy.h"

namespace sekisho::radius {

constexpr uint8_t code_accounting_request = 4;
constexpr uint8_t code_accounting_response = 5;
constexpr size_t header_size = 20;          // Code, Identifier, Length, Authenticator
constexpr size_t max_packet_size = 4096;    // RFC 2865 3

// The attribute types Sekisho reads (RFC 2865, 2866, 3162, 4818).
enum attribute_type : uint8_t {
    attr_user_name = 1,
    attr_nas_ip_address = 4,
    attr_framed_ip_address = 8,
    attr_nas_identifier = 32,
    attr_proxy_state = 33,
    attr_acct_status_type = 40,
    attr_acct_delay_time = 41,
    attr_acct_session_id = 44,
    attr_acct_session_time = 46,
    attr_event_timestamp = 55,
    attr_nas_ipv6_address = 95,
    attr_framed_ipv6_prefix = 97,
    attr_delegated_ipv6_prefix = 123,
};

// Acct-Status-Type values that change bindings. Others (Tunnel-*, Failed)
// are valid, acknowledged and otherwise ignored.
enum class acct_status : uint32_t {
    start = 1,
    stop = 2,
    interim_update = 3,
    accounting_on = 7,
    accounting_off = 8,
};

// The binding kind of an Acct-Status-Type, or nullopt for the others.
std::optional<binding_kind> binding_kind_of(uint32_t status_type);

// "Framed-IP-Address" for 8, "" for types this file does not know.
const char* attribute_name(uint8_t type);

using authenticator = std::array<uint8_t, 16>;

// A value or the reason there is none.
template <typename T>
class result {
public:
    result(T value) : value_(std::move(value)) {}   // NOLINT: implicit on purpose
    static result failure(std::string why) {
        result r;
        r.error_ = std::move(why);
        return r;
    }
    bool ok() const { return value_.has_value(); }
    explicit operator bool() const { return ok(); }
    const T& value() const { return *value_; }
    const T& operator*() const { return *value_; }
    const T* operator->() const { return &*value_; }
    const std::string& error() const { return error_; }

private:
    result() = default;
    std::optional<T> value_;
    std::string error_;
};

struct packet_header {
    uint8_t code = 0;
    uint8_t identifier = 0;
    uint16_t length = 0;   // the Length field; octets after it are padding
    authenticator auth{};
};

// The attributes of one Accounting-Request. Text values are the raw octets
// (untrusted; to_binding_update escapes them). Single-valued attributes
// that appear twice make the packet malformed.
struct accounting_request {
    packet_header header;
    std::optional<uint32_t> status_type;
    std::optional<std::string> user_name;
    std::optional<std::string> session_id;
    std::optional<std::string> nas_identifier;
    std::optional<ip_prefix> framed_ip;    // /32
    std::optional<ip_prefix> nas_ip;       // /32
    std::optional<ip_prefix> nas_ipv6;     // /128
    std::vector<ip_prefix> framed_ipv6_prefixes;      // may repeat (RFC 3162)
    std::vector<ip_prefix> delegated_ipv6_prefixes;   // may repeat (RFC 4818)
    std::optional<uint32_t> event_timestamp;
    std::optional<uint32_t> delay_time;
    std::optional<uint32_t> session_time;
    // Every Proxy-State attribute (type, length, value), in order: a proxy
    // needs them back in the response (RFC 2865 5.33).
    std::vector<uint8_t> proxy_state;
};

// Checks the fixed header of a datagram: at least 20 octets, 20 <= Length
// <= 4096, Length <= the octets received. Any code.
result<packet_header> parse_header(std::span<const uint8_t> datagram);

// The whole Accounting-Request: header, Code 4, every attribute within
// Length (each 2 <= length <= what is left; the known ones with their RFC
// sizes and formats). Does not check the authenticator.
result<accounting_request> parse_accounting_request(std::span<const uint8_t> datagram);

// MD5(Code + Identifier + Length + 16 zero octets + attributes + secret)
// over the first Length octets of `packet` (RFC 2866 3). `packet` must have
// passed parse_header.
authenticator request_authenticator(std::span<const uint8_t> packet, std::string_view secret);

// Compares the packet's Request Authenticator with the expected one in
// constant time (CRYPTO_memcmp).
bool verify_request_authenticator(std::span<const uint8_t> packet, std::string_view secret);

// The Accounting-Response (Code 5) to `request`: same Identifier,
// `attributes` (already encoded: the request's Proxy-State), Response
// Authenticator MD5(Code + Identifier + Length + Request Authenticator +
// attributes + secret).
std::vector<uint8_t> build_accounting_response(const packet_header& request, std::span<const uint8_t> attributes,
                                               std::string_view secret);

// Time bounds of an accounting update, against the time it was received.
struct time_bounds {
    // An Event-Timestamp at most this far ahead of the receive time (the
    // NAS's clock a little ahead of ours).
    int64_t max_future_seconds = 300;
    // An event at most this old: an Event-Timestamp this far behind the
    // receive time, an Acct-Delay-Time this long. A NAS or a RADIUS proxy
    // replays accounting it buffered during an outage; a week covers a long
    // weekend's outage of this gateway. Older records are refused rather than
    // rewriting who held an address a week ago.
    int64_t max_age_seconds = 7 * 86400;
    // An Acct-Session-Time at most this long: no NAS keeps a session for ten
    // years (it reboots for upgrades); 2^32-1 would date the session's start
    // to 1890.
    int64_t max_session_seconds = 10LL * 365 * 86400;
};

// Why the times of `request` are not believable, or nullopt: Event-Timestamp
// (55) more than max_future_seconds after `receive_time` or more than
// max_age_seconds before it; Acct-Delay-Time (41) above max_age_seconds;
// Acct-Session-Time (46) above max_session_seconds. The message names the
// attribute, its value and the receive time, as Unix seconds and UTC.
std::optional<std::string> check_event_time(const accounting_request& request, int64_t receive_time,
                                            const time_bounds& bounds = {});

// The update a request means, or why it means none: Acct-Status-Type missing
// or not a binding kind; Start/Interim/Stop without Acct-Session-Id; no
// NAS-IP-Address, NAS-IPv6-Address or NAS-Identifier (RFC 2866 4.1).
// `receive_time` (Unix seconds) is the event time when the packet has no
// Event-Timestamp.
result<binding_update> to_binding_update(const accounting_request& request, int64_t receive_time);

// "alice\x01" for the octets a,l,i,c,e,0x01: valid UTF-8 passes unchanged
// except control characters and backslash, which are escaped.
std::string escape_text(std::string_view octets);

// ---------------------------------------------------------------- clients

struct client {
    ip_prefix address;        // a host or a prefix
    std::string name;         // for log lines; the address when not given
    std::string secret;       // never printed
    int line = 0;
};

// The NASes allowed to send accounting, each with its shared secret.
class client_table {
public:
    client_table() = default;
    explicit client_table(std::vector<client> clients);
    // Longest prefix containing the source address (IPv4-mapped IPv6
    // sources match IPv4 entries); nullptr for an unknown source.
    const client* find(const sockaddr_storage& source) const;
    const client* find(const ip_prefix& host) const;
    size_t size() const { return clients_.size(); }

private:
    std::vector<client> clients_;   // longest prefix first
};

// Reads
//   clients:
//     - address: 192.0.2.1            # or a prefix: 192.0.2.0/28, "2001:db8::/64"
//       secret: "a long random string"
//       name: bng-1                   # optional
// Throws policy_error listing every problem as "file:line: message". No
// message contains a secret.
client_table load_clients_file(const std::string& path);
client_table load_clients_text(const std::string& text, const std::string& name);

// ---------------------------------------------------------------- listener

struct listener_config {
    std::string address = "127.0.0.1";   // "192.0.2.1", "::1", "[::1]", "0.0.0.0", "::"
    uint16_t port = 1813;                 // 0: the kernel picks one (see port())
    int receive_buffer_bytes = 0;         // SO_RCVBUF; 0 keeps the system default
    size_t max_datagrams_per_poll = 256;  // poll_once() returns after this many
    time_bounds times;
    // Answered requests remembered for duplicate detection: this long, at
    // most this many (the oldest forgotten first; ~100 bytes each). A NAS
    // retransmits within seconds to a minute; five minutes covers its
    // whole retry schedule.
    int64_t duplicate_window_seconds = 300;
    size_t duplicate_cache_entries = 65536;
};

// radius.listen as the listener reads it: "127.0.0.1:1813", "[2001:db8::1]:1813"
// (an IPv6 address in brackets), a numeric address and a port 0..65535.
// Throws std::invalid_argument naming what is wrong ("'127.0.0.1' is not
// ADDRESS:PORT"). Start and `sekishod --check-policy` both use it, so the
// check refuses what start would.
listener_config parse_listen(const std::string& text);

struct listener_counters {
    uint64_t received = 0;            // datagrams read
    uint64_t accepted = 0;            // applied and answered
    uint64_t ignored = 0;             // authentic, Acct-Status-Type not a binding event: answered, not applied
    uint64_t duplicate = 0;           // an exact retransmission of an answered (or pending) request: not applied
                                      // again, the cached response sent again
    uint64_t unknown_client = 0;      // source not in the client table
    uint64_t malformed = 0;           // header, attributes, or a required attribute missing
    uint64_t unsupported_code = 0;    // a RADIUS code other than Accounting-Request
    uint64_t bad_authenticator = 0;   // Request Authenticator does not match the client's secret
    uint64_t bad_time = 0;            // event time outside time_bounds: not applied, not answered
    uint64_t bad_address = 0;         // an address the data plane cannot bind (update_refused): not answered
    uint64_t apply_failed = 0;        // the callback returned false or threw: not answered
    uint64_t send_failed = 0;         // applied (or a duplicate), but the response could not be sent
    uint64_t receive_errors = 0;      // recvfrom failures other than "nothing to read"
    // Applied updates by kind.
    uint64_t starts = 0, interims = 0, stops = 0, accounting_ons = 0, accounting_offs = 0;

    // The datagrams by result, each counted once: the `result` label of
    // sekisho_radius_packets_total and the --summary report.
    std::vector<std::pair<std::string, uint64_t>> by_result() const;
};

// Thrown by an apply callback for an update that can never be stored as it
// is (an address the data plane cannot bind): counted as bad_address, not
// answered, nothing of it applied.
class update_refused : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class accounting_listener {
public:
    // Called for each authentic binding update; true means it is stored and
    // the NAS may be answered. An exception counts as false; update_refused
    // counts as bad_address.
    using apply_fn = std::function<bool(const binding_update&)>;
    // One line per dropped datagram or failure: source, reason, identifier.
    using log_fn = std::function<void(const std::string&)>;
    // Unix seconds; the receive time of packets without Event-Timestamp.
    using clock_fn = std::function<int64_t()>;

    // Opens and binds the non-blocking UDP socket. Throws std::runtime_error
    // ("radius: cannot bind 127.0.0.1:1813: Address already in use").
    accounting_listener(const listener_config& config, client_table clients, apply_fn apply, log_fn log = {},
                        clock_fn clock = {});
    ~accounting_listener();
    accounting_listener(const accounting_listener&) = delete;
    accounting_listener& operator=(const accounting_listener&) = delete;

    // Optional batching. When set, the responses to the updates applied
    // during one poll_once() are held back until the end of that call, which
    // calls `commit` once (also when every apply of the poll failed, so the
    // owner can close what it opened): true sends them all, false (or an
    // exception) sends none and counts each as apply_failed. Lets the owner store a
    // poll's updates in one transaction — collect them in `apply`, then
    // binding_history::apply(span) in `commit` — at ~150k updates/s instead
    // of ~11k/s with a transaction per update.
    using commit_fn = std::function<bool()>;
    void set_commit(commit_fn commit) { commit_ = std::move(commit); }

    // Handles the datagrams waiting on the socket (at most
    // max_datagrams_per_poll); never blocks. Returns how many it read.
    size_t poll_once();

    int fd() const { return fd_; }                 // for poll()/epoll in the owner's loop
    uint16_t port() const { return port_; }        // the bound port
    const std::string& local() const { return local_; }   // "127.0.0.1:1813", "[::1]:1813"
    const listener_counters& counters() const { return counters_; }
    // SIGHUP: new clients and secrets, same socket. Forgets the answered
    // requests (their responses were signed with the old secrets).
    void replace_clients(client_table clients);

private:
    struct pending_response {
        std::vector<uint8_t> response;
        sockaddr_storage to;
        socklen_t to_len;
        std::optional<binding_kind> kind;   // nullopt: an ignored status type
        std::string source;
        std::string ident;
        std::string key;   // request_key
    };
    // An answered request: its response, for an exact retransmission.
    // `response` empty: applied, awaiting the poll's commit.
    struct answered {
        std::vector<uint8_t> response;
        int64_t at = 0;   // receive time, Unix seconds
    };
    using request_key = std::string;   // source address, port, Identifier, Request Authenticator
    void handle(std::span<const uint8_t> datagram, size_t received, const sockaddr_storage& from, socklen_t from_len);
    void drop(uint64_t& counter, const std::string& source, const std::string& why);
    bool send(const pending_response& r);
    void respond(const pending_response& r);
    void finish_batch();
    void remember(const request_key& key, std::vector<uint8_t> response, int64_t now);
    void forget_expired(int64_t now);

    int fd_ = -1;
    uint16_t port_ = 0;
    std::string local_;
    size_t max_per_poll_;
    client_table clients_;
    apply_fn apply_;
    commit_fn commit_;
    std::vector<pending_response> pending_;
    bool applied_this_poll_ = false;
    time_bounds times_;
    int64_t duplicate_window_;
    size_t duplicate_capacity_;
    std::unordered_map<request_key, answered> answered_;
    std::deque<std::pair<int64_t, request_key>> answered_order_;   // oldest first
    log_fn log_;
    clock_fn clock_;
    listener_counters counters_;
    std::vector<uint8_t> buffer_;
};

}  // namespace sekisho::radius
