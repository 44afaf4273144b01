// One connection to the fleet's Redis, for the fleet threads (never a worker,
// never the control thread).
//
// The address is "unix:/PATH" or "HOST:PORT" (HOST may be [v6]); with a CA
// file the TCP connection is TLS (OpenSSL, TLS 1.2+, the server certificate
// verified against the CA and HOST), as Redis 7 serves it with tls-port.
// Commands are formatted and replies parsed by hiredis (its RESP writer and
// reader); the transport is this class's own so that TLS does not depend on
// the hiredis build (Debian 12's 0.14 has none).
//
// The password, when the fleet file names one, comes from its credential
// file and is sent with AUTH. Every read and write has the timeout (1 s by
// default): a Redis that hangs fails the call instead of the thread. Errors
// throw redis_error naming the command's first word, never its arguments
// (they may carry an account); Redis's own message is cut before the first
// quote, where Redis echoes arguments back.
//
// Threading: one thread at a time per connection.
#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace sekisho {

class redis_error : public std::runtime_error {
public:
    redis_error(const std::string& what, bool connection_lost)
        : std::runtime_error(what), connection_lost_(connection_lost) {}
    bool connection_lost() const { return connection_lost_; }

private:
    bool connection_lost_;
};

struct redis_reply_deleter {
    void operator()(redisReply* r) const { freeReplyObject(r); }
};
using redis_reply = std::unique_ptr<redisReply, redis_reply_deleter>;

struct redis_endpoint {
    std::string address;         // unix:/PATH or HOST:PORT
    std::string password_file;   // empty: no AUTH
    std::string tls_ca_file;     // empty: plain; else TLS verified against it (TCP only)
    std::chrono::milliseconds timeout{1000};
};

struct fleet_config;
// The fleet file's Redis: address, password file, CA file.
redis_endpoint redis_endpoint_of(const fleet_config& config);

class redis_connection {
public:
    // Connects (TLS handshake included) and authenticates. Throws redis_error
    // (connection_lost for anything but a refused AUTH or a bad address) or
    // fleet_config_error (the password file).
    explicit redis_connection(const redis_endpoint& endpoint);
    redis_connection(const std::string& address, const std::string& password_file,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(1000));
    ~redis_connection();
    redis_connection(const redis_connection&) = delete;
    redis_connection& operator=(const redis_connection&) = delete;

    // One command, its arguments binary-safe. A Redis error reply throws
    // redis_error (not connection_lost).
    redis_reply command(const std::vector<std::string>& args);

    // Pipelining: append commands (buffered), then read as many replies in
    // order; the first reply() sends what is buffered.
    void append(const std::vector<std::string>& args);
    redis_reply reply();

    bool tls() const { return ssl_ != nullptr; }

private:
    void release();
    [[noreturn]] void lost(const std::string& what, const std::string& detail);
    void connect_socket();
    void start_tls();
    void flush();
    void write_all(const char* data, size_t size, const std::string& what);
    size_t read_some(char* buf, size_t size, const std::string& what);

    redis_endpoint endpoint_;
    std::string host_;   // TCP: for SNI and the certificate check
    int fd_ = -1;
    void* ssl_ctx_ = nullptr;   // SSL_CTX*
    void* ssl_ = nullptr;       // SSL*
    redisReader* reader_ = nullptr;
    std::string out_;                    // formatted commands not yet sent
    std::deque<std::string> pending_;    // first words of commands whose replies are due
};

}  // namespace sekisho
