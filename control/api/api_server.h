// The control API's transport: HTTP/1.1 + JSON on a local Unix socket (mode
// 0660, group configurable: the socket's permissions are the authorisation)
// and optionally on TCP with TLS and a bearer token (http_listener.h: one
// epoll thread per listener, connection, memory and idle bounds).
//
// The two listeners are separate: what happens on TCP (up to tcp_max_connections,
// tcp_max_connections_per_peer from one address, unauthenticated floods) never
// takes the Unix socket's connections, descriptors, body budget or turn at the
// control thread. Over TCP the bearer token is checked when the headers are
// complete, before any body byte is read: a client without the token gets 401
// and costs no body memory. Bodies: 1 MiB, POST /v1/policy 64 MiB
// (api_max_body_bytes, api_request.h); a larger declared Content-Length is 413
// before reading.
//
// Requests are answered asynchronously: a complete request is queued for the
// control thread, which hands each to its handler between its other duties
// (serve_pending) so every request sees and changes the gateway's state from
// one thread; the handler answers through the api_reply, then or later, from
// any thread. The HTTP threads never wait for the control thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <variant>

#include "control/api/http_listener.h"

namespace sekisho {

struct api_request {
    std::string method;
    // Percent-decoded (decode_target): may hold any byte, NUL included; parse_api_request refuses
    // control characters.
    std::string path;
    std::map<std::string, std::string> query;   // URL arguments, decoded; a repeated one: the last
    std::string body;
    // Who asked: "uid 0 (root) pid 1234" on the Unix socket (SO_PEERCRED), "token from
    // 192.0.2.1:40000" over TLS; empty for requests made in-process (SIGHUP, tests).
    std::string caller;
};

// The request the control API sees for an HTTP request: its target decoded
// (decode_target; a repeated argument keeps its last value), the body, and who
// asked (`caller`).
api_request make_api_request(http_request request, std::string caller);

// An answer: status, body (JSON unless content_type says otherwise).
using api_response = http_response;

// The answer to one request. Copyable; thread-safe; the first call answers the
// client, later calls are ignored. A reply never called is answered 503
// "sekishod is stopping" when the server stops (500 if its last copy is
// destroyed before); a reply called after the server is gone does nothing.
// api_reply(std::function<void(api_response)>) makes one for in-process
// requests (SIGHUP, tests).
using api_reply = http_reply;

struct api_config {
    std::string unix_path;        // e.g. /run/sekisho/api.sock; empty: none
    std::string unix_group;       // group owning the socket (mode 0660); empty: the daemon's
    std::string tcp_listen;       // "127.0.0.1:8443"; empty: none
    std::string tls_cert_file, tls_key_file;   // PEM; required with tcp_listen
    std::string token_file;       // bearer token for TCP clients; required with tcp_listen
    unsigned idle_timeout_s = 10;
    // Operators on the socket; any number of local clients fits (one request at a time each).
    unsigned unix_max_connections = 64;
    // TCP: room for monitoring and automation clients, far below the descriptors the daemon has.
    unsigned tcp_max_connections = 256;
    unsigned tcp_max_connections_per_peer = 16;
    // Bodies held at once per listener (being received or waiting for their answer):
    // four policies of the 64 MiB maximum.
    size_t max_buffered_body_bytes = 256u << 20;
};

class api_server {
public:
    explicit api_server(const api_config& config);   // throws std::runtime_error
    // Stops both listeners: requests not yet answered get 503.
    ~api_server();
    api_server(const api_server&) = delete;
    api_server& operator=(const api_server&) = delete;

    using handler_fn = std::function<void(const api_request&, api_reply)>;
    // Control thread: hands each request waiting to `handler`, Unix socket ones
    // first, without blocking. A handler that throws answers 500 with the
    // exception's message (unless it had answered).
    void serve_pending(const handler_fn& handler);

    uint64_t requests() const { return requests_; }
    uint64_t unauthorised() const { return unauthorised_; }

private:
    // HTTP threads.
    std::variant<size_t, http_response> admit(const http_head& head, bool needs_token);
    void enqueue(http_request request, api_reply reply, bool from_unix);
    bool check_token(const std::string& authorization) const;

    api_config config_;
    std::string token_;
    std::mutex mutex_;
    using pending = std::pair<api_request, api_reply>;
    std::deque<pending> unix_queue_, tcp_queue_;
    std::atomic<uint64_t> requests_{0}, unauthorised_{0};
    std::unique_ptr<http_listener> unix_listener_, tcp_listener_;   // last: stopped first
};

}  // namespace sekisho
