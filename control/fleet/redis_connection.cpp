#include "control/fleet/redis_connection.h"

#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "control/fleet/fleet_config.h"

namespace sekisho {

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

std::string first_word(const std::vector<std::string>& args) { return args.empty() ? "command" : args[0]; }

std::string openssl_error() {
    const unsigned long e = ERR_get_error();
    if (e == 0) return std::strerror(errno);
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

SSL* ssl_of(void* p) { return static_cast<SSL*>(p); }

}  // namespace

redis_endpoint redis_endpoint_of(const fleet_config& config) {
    redis_endpoint e;
    e.address = config.redis_address;
    e.password_file = config.redis_password_file;
    e.tls_ca_file = config.redis_tls_ca_file;
    return e;
}

redis_connection::redis_connection(const std::string& address, const std::string& password_file,
                                   std::chrono::milliseconds timeout)
    : redis_connection(redis_endpoint{address, password_file, "", timeout}) {}

redis_connection::redis_connection(const redis_endpoint& endpoint) : endpoint_(endpoint) {
    reader_ = redisReaderCreate();
    if (reader_ == nullptr) throw redis_error("redis: cannot allocate a reply reader", true);
    try {
        connect_socket();
        if (!endpoint_.tls_ca_file.empty()) start_tls();
        if (!endpoint_.password_file.empty())
            command({"AUTH", read_credential_file(endpoint_.password_file, "redis.password_file")});
    } catch (...) {
        release();   // a constructor that throws gets no destructor call
        throw;
    }
}

redis_connection::~redis_connection() { release(); }

void redis_connection::release() {
    if (ssl_) {
        SSL_free(ssl_of(ssl_));
        ssl_ = nullptr;
    }
    if (ssl_ctx_) {
        SSL_CTX_free(static_cast<SSL_CTX*>(ssl_ctx_));
        ssl_ctx_ = nullptr;
    }
    if (fd_ >= 0) {
        close(fd_);
        fd_ = -1;
    }
    if (reader_) {
        redisReaderFree(reader_);
        reader_ = nullptr;
    }
}

void redis_connection::lost(const std::string& what, const std::string& detail) {
    throw redis_error("redis: " + endpoint_.address + ": " + what + ": " + detail, true);
}

// A connected socket with the timeout on every read and write.
void redis_connection::connect_socket() {
    const std::string& a = endpoint_.address;
    const int timeout_ms = static_cast<int>(endpoint_.timeout.count());
    auto finish = [&](int fd, const sockaddr* sa, socklen_t len) {
        // Non-blocking connect bounded by the timeout, then blocking I/O with SO_RCVTIMEO/SO_SNDTIMEO.
        const int flags = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        int rc = ::connect(fd, sa, len);
        if (rc != 0 && errno == EINPROGRESS) {
            pollfd p{fd, POLLOUT, 0};
            rc = poll(&p, 1, timeout_ms);
            if (rc == 0) {
                errno = ETIMEDOUT;
                rc = -1;
            } else if (rc > 0) {
                int err = 0;
                socklen_t l = sizeof err;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
                errno = err;
                rc = err == 0 ? 0 : -1;
            }
        }
        if (rc != 0) return false;
        fcntl(fd, F_SETFL, flags);
        timeval tv{};
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        return true;
    };
    if (a.rfind("unix:", 0) == 0) {
        if (!endpoint_.tls_ca_file.empty())
            throw redis_error("redis: " + a + ": TLS is for TCP; a Unix socket is local (drop tls_ca_file)", false);
        sockaddr_un sun{};
        sun.sun_family = AF_UNIX;
        const std::string path = a.substr(5);
        if (path.empty() || path.size() >= sizeof sun.sun_path)
            throw redis_error("redis: address '" + a + "': the socket path is empty or too long", false);
        std::memcpy(sun.sun_path, path.data(), path.size());
        fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) lost("socket", std::strerror(errno));
        if (!finish(fd_, reinterpret_cast<const sockaddr*>(&sun), sizeof sun)) lost("connect", std::strerror(errno));
        return;
    }
    const size_t colon = a.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == a.size())
        throw redis_error("redis: address '" + a + "' is neither unix:/PATH nor HOST:PORT", false);
    const std::string port = a.substr(colon + 1);
    if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 || std::stoi(port) == 0 ||
        std::stoi(port) > 65535)
        throw redis_error("redis: address '" + a + "': bad port", false);
    host_ = a.substr(0, colon);
    if (host_.size() > 2 && host_.front() == '[' && host_.back() == ']') host_ = host_.substr(1, host_.size() - 2);
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (const int rc = getaddrinfo(host_.c_str(), port.c_str(), &hints, &found); rc != 0)
        lost("resolve " + host_, gai_strerror(rc));
    std::string last = "no address";
    for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
        const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        if (finish(fd, ai->ai_addr, ai->ai_addrlen)) {
            fd_ = fd;
            break;
        }
        last = std::strerror(errno);
        close(fd);
    }
    freeaddrinfo(found);
    if (fd_ < 0) lost("connect", last);
}

void redis_connection::start_tls() {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    ssl_ctx_ = ctx;
    if (ctx == nullptr) lost("TLS", openssl_error());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_load_verify_locations(ctx, endpoint_.tls_ca_file.c_str(), nullptr) != 1)
        throw redis_error("redis: " + endpoint_.tls_ca_file + ": cannot load the CA: " + openssl_error(), false);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    SSL* ssl = SSL_new(ctx);
    ssl_ = ssl;
    if (ssl == nullptr) lost("TLS", openssl_error());
    SSL_set_tlsext_host_name(ssl, host_.c_str());
    SSL_set1_host(ssl, host_.c_str());
    SSL_set_fd(ssl, fd_);
    if (SSL_connect(ssl) != 1) {
        const long verify = SSL_get_verify_result(ssl);
        lost("TLS handshake", verify != X509_V_OK ? std::string("certificate verify failed: ") +
                                                        X509_verify_cert_error_string(verify)
                                                  : openssl_error());
    }
}

void redis_connection::write_all(const char* data, size_t size, const std::string& what) {
    while (size > 0) {
        ssize_t n;
        if (ssl_) {
            const int w = SSL_write(ssl_of(ssl_), data, static_cast<int>(size));
            n = w > 0 ? w : -1;
            if (n < 0) lost(what, "TLS write: " + openssl_error());
        } else {
            n = send(fd_, data, size, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) lost(what, errno == EAGAIN ? "timed out writing" : std::strerror(errno));
        }
        data += n;
        size -= static_cast<size_t>(n);
    }
}

size_t redis_connection::read_some(char* buf, size_t size, const std::string& what) {
    for (;;) {
        ssize_t n;
        if (ssl_) {
            const int r = SSL_read(ssl_of(ssl_), buf, static_cast<int>(size));
            if (r > 0) return static_cast<size_t>(r);
            const int e = SSL_get_error(ssl_of(ssl_), r);
            lost(what, e == SSL_ERROR_ZERO_RETURN ? "closed by Redis"
                       : errno == EAGAIN           ? "timed out waiting for the reply"
                                                   : "TLS read: " + openssl_error());
        }
        n = recv(fd_, buf, size, 0);
        if (n > 0) return static_cast<size_t>(n);
        if (n < 0 && errno == EINTR) continue;
        lost(what, n == 0 ? "closed by Redis" : errno == EAGAIN ? "timed out waiting for the reply" : std::strerror(errno));
    }
}

void redis_connection::append(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    argv.reserve(args.size());
    lens.reserve(args.size());
    for (const std::string& s : args) {
        argv.push_back(s.data());
        lens.push_back(s.size());
    }
    char* formatted = nullptr;
    const int len = redisFormatCommandArgv(&formatted, static_cast<int>(argv.size()), argv.data(), lens.data());
    if (len < 0) throw redis_error("redis: " + first_word(args) + ": cannot format the command", false);
    out_.append(formatted, static_cast<size_t>(len));
    redisFreeCommand(formatted);
    pending_.push_back(first_word(args));
}

void redis_connection::flush() {
    if (out_.empty()) return;
    const std::string what = pending_.empty() ? "send" : pending_.front();
    std::string out;
    out.swap(out_);
    write_all(out.data(), out.size(), what);
}

redis_reply redis_connection::reply() {
    if (pending_.empty()) throw redis_error("redis: reply() without a command", false);
    const std::string name = pending_.front();
    flush();
    void* raw = nullptr;
    for (;;) {
        if (redisReaderGetReply(reader_, &raw) != REDIS_OK) lost(name, "protocol error in the reply");
        if (raw != nullptr) break;
        char buf[16384];
        const size_t n = read_some(buf, sizeof buf, name);
        if (redisReaderFeed(reader_, buf, n) != REDIS_OK) lost(name, "protocol error in the reply");
    }
    pending_.pop_front();
    redis_reply r(static_cast<redisReply*>(raw));
    if (r->type == REDIS_REPLY_ERROR) throw redis_error("redis: " + name + ": " + error_text(*r), false);
    return r;
}

redis_reply redis_connection::command(const std::vector<std::string>& args) {
    append(args);
    return reply();
}

}  // namespace sekisho
