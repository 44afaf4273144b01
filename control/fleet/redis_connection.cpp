#include "control/fleet/redis_connection.h"

#include "control/fleet/fleet_config.h"

namespace sekisho {

redis_connection::redis_connection(const std::string& address, const std::string& password_file,
                                   std::chrono::milliseconds timeout)
    : address_(address) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    if (address.rfind("unix:", 0) == 0) {
        ctx_ = redisConnectUnixWithTimeout(address.substr(5).c_str(), tv);
    } else {
        const size_t colon = address.rfind(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 == address.size())
            throw redis_error("redis: address '" + address + "' is neither unix:/PATH nor HOST:PORT", false);
        int port = 0;
        try {
            port = std::stoi(address.substr(colon + 1));
        } catch (const std::exception&) {
            port = 0;
        }
        if (port <= 0 || port > 65535) throw redis_error("redis: address '" + address + "': bad port", false);
        std::string host = address.substr(0, colon);
        if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
        ctx_ = redisConnectWithTimeout(host.c_str(), port, tv);
    }
    if (ctx_ == nullptr) throw redis_error("redis: " + address + ": cannot allocate a context", true);
    if (ctx_->err) fail("connect");
    if (redisSetTimeout(ctx_, tv) != REDIS_OK) fail("set the timeout");
    if (!password_file.empty()) {
        const std::string password = read_credential_file(password_file, "redis.password_file");
        command({"AUTH", password});
    }
}

redis_connection::~redis_connection() {
    if (ctx_) redisFree(ctx_);
}

void redis_connection::fail(const std::string& what) {
    const std::string m = ctx_ ? std::string(ctx_->errstr) : "no context";
    throw redis_error("redis: " + address_ + ": " + what + ": " + m, true);
}

namespace {

// Redis quotes arguments back in some errors ("unknown command 'X', with args
// beginning with: ..."): the message up to its first quote, which is Redis's
// own words.
std::string error_text(const redisReply& r) {
    std::string m(r.str, r.len);
    const size_t quote = m.find('\'');
    if (quote != std::string::npos) m.resize(quote);
    while (!m.empty() && m.back() == ' ') m.pop_back();
    return m;
}

std::vector<const char*> argv_of(const std::vector<std::string>& args, std::vector<size_t>& lens) {
    std::vector<const char*> argv;
    argv.reserve(args.size());
    lens.clear();
    for (const std::string& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    return argv;
}

}  // namespace

redis_reply redis_connection::command(const std::vector<std::string>& args) {
    std::vector<size_t> lens;
    std::vector<const char*> argv = argv_of(args, lens);
    redis_reply r(static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data())));
    if (!r) fail(args.empty() ? "command" : args[0]);
    if (r->type == REDIS_REPLY_ERROR)
        throw redis_error("redis: " + (args.empty() ? std::string("command") : args[0]) + ": " + error_text(*r),
                          false);
    return r;
}

void redis_connection::append(const std::vector<std::string>& args) {
    std::vector<size_t> lens;
    std::vector<const char*> argv = argv_of(args, lens);
    if (redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data()) != REDIS_OK)
        fail("append " + (args.empty() ? std::string("command") : args[0]));
    pending_names_.push_back(args.empty() ? std::string("command") : args[0]);
}

redis_reply redis_connection::reply() {
    const std::string name = pending_names_.empty() ? std::string("reply") : pending_names_.front();
    if (!pending_names_.empty()) pending_names_.pop_front();
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) fail(name);
    redis_reply r(static_cast<redisReply*>(raw));
    if (r->type == REDIS_REPLY_ERROR) throw redis_error("redis: " + name + ": " + error_text(*r), false);
    return r;
}

}  // namespace sekisho
