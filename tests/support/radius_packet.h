// RADIUS Accounting-Requests built attribute by attribute and signed as a NAS
// would (RFC 2866 3), computed here with libcrypto's one-call MD5 — not the
// incremental code control/identity/radius_accounting.cpp uses — so a test checks the
// implementation against an independent computation. Header-only; used by
// the listener's unit tests and the subscriber identity tests.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "control/identity/radius_accounting.h"

namespace sekisho::test {

using bytes = std::vector<uint8_t>;

// MD5 in one call over one buffer.
inline radius::authenticator md5_of(const bytes& data) {
    radius::authenticator out{};
    unsigned size = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &size, EVP_md5(), nullptr) != 1 || size != 16)
        throw std::runtime_error("EVP_Digest failed");
    return out;
}

inline bytes u32(uint32_t v) {
    return {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16), static_cast<uint8_t>(v >> 8),
            static_cast<uint8_t>(v)};
}
inline bytes text(std::string_view s) { return bytes(s.begin(), s.end()); }
inline bytes v4(const char* a) {
    bytes b(4);
    EXPECT_EQ(inet_pton(AF_INET, a, b.data()), 1) << a;
    return b;
}
inline bytes v6(const char* a) {
    bytes b(16);
    EXPECT_EQ(inet_pton(AF_INET6, a, b.data()), 1) << a;
    return b;
}
// RFC 3162 format: Reserved, Prefix-Length, the first `octets` prefix octets.
inline bytes v6prefix(const char* a, uint8_t length, size_t octets = 16) {
    bytes b{0, length};
    const bytes full = v6(a);
    b.insert(b.end(), full.begin(), full.begin() + static_cast<long>(octets));
    return b;
}

struct radius_packet {
    uint8_t code = radius::code_accounting_request;
    uint8_t id = 42;
    bytes attrs;
    std::vector<size_t> boundaries;   // attribute start offsets within the packet

    radius_packet& add(uint8_t type, const bytes& value) {
        boundaries.push_back(radius::header_size + attrs.size());
        attrs.push_back(type);
        attrs.push_back(static_cast<uint8_t>(value.size() + 2));
        attrs.insert(attrs.end(), value.begin(), value.end());
        return *this;
    }
    radius_packet& raw(const bytes& b) {
        attrs.insert(attrs.end(), b.begin(), b.end());
        return *this;
    }
    bytes unsigned_bytes() const {
        const size_t length = radius::header_size + attrs.size();
        bytes p{code, id, static_cast<uint8_t>(length >> 8), static_cast<uint8_t>(length)};
        p.resize(radius::header_size, 0);
        p.insert(p.end(), attrs.begin(), attrs.end());
        return p;
    }
    bytes finish(std::string_view secret) const {
        bytes p = unsigned_bytes();
        bytes signing = p;
        signing.insert(signing.end(), secret.begin(), secret.end());
        const radius::authenticator a = md5_of(signing);
        std::copy(a.begin(), a.end(), p.begin() + 4);
        return p;
    }
};

// A NAS on loopback: sends to 127.0.0.1 or ::1, receives the responses.
class nas_socket {
public:
    explicit nas_socket(int family = AF_INET) : family_(family) {
        fd_ = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) throw std::runtime_error("socket");
    }
    ~nas_socket() { ::close(fd_); }
    void send(const bytes& d, uint16_t port) {
        sockaddr_storage ss{};
        socklen_t len = 0;
        if (family_ == AF_INET) {
            auto& in = reinterpret_cast<sockaddr_in&>(ss);
            in.sin_family = AF_INET;
            in.sin_port = htons(port);
            inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
            len = sizeof in;
        } else {
            auto& in6 = reinterpret_cast<sockaddr_in6&>(ss);
            in6.sin6_family = AF_INET6;
            in6.sin6_port = htons(port);
            inet_pton(AF_INET6, "::1", &in6.sin6_addr);
            len = sizeof in6;
        }
        ASSERT_EQ(::sendto(fd_, d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&ss), len),
                  static_cast<ssize_t>(d.size()));
    }
    // The next datagram within `ms`, or nullopt.
    std::optional<bytes> receive(int ms = 1000) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, ms) <= 0) return std::nullopt;
        bytes b(4096);
        const ssize_t n = ::recv(fd_, b.data(), b.size(), 0);
        if (n < 0) return std::nullopt;
        b.resize(static_cast<size_t>(n));
        return b;
    }

private:
    int family_;
    int fd_;
};

}  // namespace sekisho::test
