// The control API's transport: HTTP/1.1 + JSON (libmicrohttpd) on a local
// Unix socket (mode 0660, group configurable: the socket's permissions are the
// authorisation) and optionally on TCP with TLS and a bearer token.
//
// libmicrohttpd serves connections on its own thread; a complete request is
// queued for the control thread, which answers it between its other duties
// (serve_pending), so every request sees and changes the gateway's state from
// one thread. A client that connects and never sends only holds its own
// connection until the idle timeout. Bodies are bounded (1 MiB).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

struct MHD_Daemon;

namespace sekisho {

struct api_request {
    std::string method;
    std::string path;
    std::map<std::string, std::string> query;   // URL arguments
    std::string body;
    // Who asked: "uid 0 (root) pid 1234" on the Unix socket (SO_PEERCRED), "token from
    // 192.0.2.1:40000" over TLS; empty for requests made in-process (SIGHUP, tests).
    std::string caller;
};

struct api_response {
    int status = 200;
    std::string body;                           // JSON unless content_type says otherwise
    std::string content_type = "application/json";
};

// The answer to one request. Copyable; thread-safe; the first call answers
// the client, later calls are ignored. A reply never called is answered 503
// "sekishod is stopping" when the server stops; a reply called after the
// server is gone does nothing.
class api_reply {
public:
    api_reply() = default;   // answers nobody
    explicit api_reply(std::function<void(api_response)> deliver);
    void operator()(api_response response) const;
    bool answered() const;

private:
    struct state;
    std::shared_ptr<state> state_;
};

struct api_config {
    std::string unix_path;        // e.g. /run/sekisho/api.sock; empty: none
    std::string unix_group;       // group owning the socket (mode 0660); empty: the daemon's
    std::string tcp_listen;       // "127.0.0.1:8443"; empty: none
    std::string tls_cert_file, tls_key_file;   // PEM; required with tcp_listen
    std::string token_file;       // bearer token for TCP clients; required with tcp_listen
    unsigned idle_timeout_s = 10;
};

class api_server {
public:
    explicit api_server(const api_config& config);   // throws std::runtime_error
    ~api_server();
    api_server(const api_server&) = delete;
    api_server& operator=(const api_server&) = delete;

    using handler_fn = std::function<void(const api_request&, api_reply)>;
    // Control thread: hands each request waiting to `handler`, without blocking.
    void serve_pending(const handler_fn& handler);

    // Called from libmicrohttpd's thread.
    api_response submit(api_request request);
    bool check_token(const std::string& authorization) const;

    // Which listener a request came through (TCP ones need the token).
    struct listener_context {
        api_server* server;
        bool needs_token;
    };

    uint64_t requests() const { return requests_; }
    uint64_t unauthorised() const { return unauthorised_; }
    void count_unauthorised() { ++unauthorised_; }

private:
    struct pending {
        api_request request;
        api_response response;
        bool done = false;
    };
    api_config config_;
    listener_context unix_ctx_{this, false}, tcp_ctx_{this, true};
    MHD_Daemon* unix_daemon_ = nullptr;
    MHD_Daemon* tcp_daemon_ = nullptr;
    int unix_fd_ = -1;
    std::string token_, tls_cert_, tls_key_;
    std::mutex mutex_;
    std::condition_variable answered_;
    std::deque<std::shared_ptr<pending>> queue_;
    bool stopping_ = false;
    std::atomic<uint64_t> requests_{0}, unauthorised_{0};
};

}  // namespace sekisho
