// One hiredis connection to the fleet's Redis, for the fleet threads (never a
// worker, never the control thread).
//
// The address is "unix:/PATH" or "HOST:PORT"; the password, when the fleet
// file names one, comes from its credential file and is sent with AUTH. Every
// call has a timeout (1 s by default): a Redis that hangs fails the call
// instead of the thread. Errors throw redis_error naming the command's first
// word, never its arguments (they may carry an account).
//
// TLS: hiredis 0.14 (Debian 12's) has no TLS; docs/security.md says how to
// reach a remote Redis (a local stunnel or an SSH tunnel to a Unix socket).
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

class redis_connection {
public:
    // Connects and authenticates. Throws redis_error (connection_lost) or
    // fleet_config_error (the password file).
    redis_connection(const std::string& address, const std::string& password_file,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(1000));
    ~redis_connection();
    redis_connection(const redis_connection&) = delete;
    redis_connection& operator=(const redis_connection&) = delete;

    // One command, its arguments binary-safe. A Redis error reply throws
    // redis_error (not connection_lost).
    redis_reply command(const std::vector<std::string>& args);

    // Pipelining: append commands, then read as many replies in order.
    void append(const std::vector<std::string>& args);
    redis_reply reply();

    redisContext* raw() { return ctx_; }

private:
    [[noreturn]] void fail(const std::string& what);
    redisContext* ctx_ = nullptr;
    std::string address_;
    std::deque<std::string> pending_names_;   // first words of appended commands, in order (FIFO)
};

}  // namespace sekisho
