// One HTTP/1.1 listener (libmicrohttpd) shared by the control API and the
// Prometheus endpoint: a Unix socket or a TCP address (optionally TLS), served
// by one internal thread with epoll, so descriptor numbers have no FD_SETSIZE
// bound and one slow client never holds up another.
//
// Bounds, per listener (http_listener_config):
// - connections: at most max_connections at once; over it a new connection is
//   accepted and closed at once (never left waiting in the backlog); on TCP at
//   most max_connections_per_peer from one client address (closed at once too;
//   an address is an address: a client with many IPv6 addresses is bounded by
//   max_connections only). The descriptors come out of the process's open-file
//   budget (RLIMIT_NOFILE's soft limit is raised to the hard limit at the first
//   listener), which keeps 256 for everything else: a listener gets fewer
//   connections (and says so on standard error) rather than starve the daemon.
// - memory per connection: libmicrohttpd's pool (connection_memory: request
//   line, headers, read buffer; bigger headers get 431) plus the body, which
//   is read only after the head was admitted (admit_fn: method, target,
//   Authorization, Content-Length are known, no body byte has been read) and
//   only up to the limit admit_fn gave; a declared Content-Length above it is
//   refused with 413 before reading, an undeclared (chunked) body that outgrows
//   it is cut off (the connection is closed). All bodies being read or waiting
//   for their answer together stay within max_buffered_body_bytes (503 over it).
// - time: a connection idle for idle_timeout_s (nothing received or sent) is
//   closed, also mid-headers or mid-TLS-handshake; not while its request waits
//   for its answer (the answer comes, or the listener stops). A client that
//   trickles bytes keeps its connection, within the connection bounds.
//
// Answers are asynchronous: handle_fn gets the request and an http_reply, and
// may answer at once or later from any thread; meanwhile the connection is
// suspended (MHD_ALLOW_SUSPEND_RESUME) and the listener's thread serves the
// other connections.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

struct MHD_Daemon;

namespace sekisho {

struct http_response {
    int status = 200;
    std::string body;                           // JSON unless content_type says otherwise
    std::string content_type = "application/json";
};

// What is known of a request when its headers are complete, before its body.
struct http_head {
    std::string method;
    std::string target;                         // the request-target as sent, not unescaped
    std::optional<std::string> authorization;   // the Authorization header
    std::optional<uint64_t> content_length;     // none: no body, or a chunked one
    // Who is on the other end: "192.0.2.1:40000" or "[2001:db8::1]:40000" over TCP; on a Unix
    // socket "uid 0 (root) pid 1234" (SO_PEERCRED), "unix socket (peer unknown)" if unavailable.
    std::string peer;
    bool tcp = false;
};

struct http_request {
    http_head head;
    std::string body;
};

// A request-target split and percent-decoded the way libmicrohttpd decodes
// (%XX anywhere; '+' is a space in the query only; a malformed escape stays as
// it is), but into std::string: a decoded NUL or other control character is
// kept for validation to see, where libmicrohttpd's C strings would end at
// the NUL ("/v1/status%00/x" would read as "/v1/status").
struct http_target {
    std::string path;
    std::vector<std::pair<std::string, std::string>> args;   // in order; "k" alone is ("k", "")
};
http_target decode_target(std::string_view target);

namespace detail {
struct http_reply_state;
}

// The answer to one request. Copyable; thread-safe: the first call answers,
// later calls are ignored. A listener's reply that is never called is
// answered by its listener's stopping_response when the listener stops, or
// with 500 when its last copy is destroyed first; a reply called after its
// listener is gone does nothing.
class http_reply {
public:
    // A reply that hands the response to `deliver` (on the caller's thread, at
    // most once; never if the reply is dropped unanswered): for requests made
    // in-process (SIGHUP, tests).
    explicit http_reply(std::function<void(http_response)> deliver);
    // The listener's replies (http_listener.cpp).
    explicit http_reply(std::shared_ptr<detail::http_reply_state> state);
    void operator()(http_response response) const;

private:
    std::shared_ptr<detail::http_reply_state> state_;
};

struct http_listener_config {
    std::string name;                  // in error messages: "api socket /run/sekisho/api.sock"
    int unix_fd = -1;                  // a listening AF_UNIX socket, closed when the listener stops; -1: TCP
    std::string tcp_address;           // "127.0.0.1:8443", "[::1]:9108" (with unix_fd == -1)
    std::string tls_cert_pem, tls_key_pem;   // TCP only; empty: plain HTTP
    unsigned max_connections = 64;
    unsigned max_connections_per_peer = 0;   // TCP: per client address; 0: no per-peer bound
    unsigned idle_timeout_s = 10;
    size_t connection_memory = 32 * 1024;    // libmicrohttpd's pool per connection
    size_t max_buffered_body_bytes = 0;      // all bodies held at once
    // The body of an error the listener answers by itself (413, 503, 500).
    std::function<http_response(int status, const std::string& message)> error_response;
    http_response stopping_response{503, "the server is stopping\n", "text/plain; charset=utf-8"};
};

class http_listener {
public:
    // Listener thread, once per request when its headers are complete: the
    // largest body to read (0: none), or a response that refuses it now
    // (the body is then never read and the connection is closed after it).
    using admit_fn = std::function<std::variant<size_t, http_response>(const http_head&)>;
    // Listener thread, once per admitted request with its whole body; must not
    // block: answer through the reply, now or later from any thread.
    using handle_fn = std::function<void(http_request, http_reply)>;

    // Starts serving; throws std::runtime_error (naming config.name) if it cannot.
    http_listener(http_listener_config config, admit_fn admit, handle_fn handle);
    // Stops accepting, answers the requests still waiting (stopping_response),
    // gives them up to a second to be sent, closes every connection.
    ~http_listener();
    http_listener(const http_listener&) = delete;
    http_listener& operator=(const http_listener&) = delete;

    // The connection limit in force (max_connections, or less if the
    // descriptor budget could not cover it).
    unsigned max_connections() const;

    struct core;   // what the replies and libmicrohttpd's callbacks share (http_listener.cpp)

private:
    std::shared_ptr<core> core_;
    MHD_Daemon* daemon_ = nullptr;
};

// "ADDRESS:PORT" or "[IPV6]:PORT" into a socket address; throws std::runtime_error naming `what`.
sockaddr_storage parse_listen_address(const std::string& text, const std::string& what);

}  // namespace sekisho
