// A port free on 127.0.0.1 now, for a listener the test starts a moment later
// (another process could take it in between; none does in the test suites).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <stdexcept>

namespace sekisho::test {

// `type`: SOCK_STREAM (TCP) or SOCK_DGRAM (UDP). Throws std::runtime_error
// when the kernel gives none.
inline uint16_t free_port(int type) {
    const int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof in;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&in), sizeof in) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&in), &len) != 0) {
        if (fd >= 0) ::close(fd);
        throw std::runtime_error("no free port on 127.0.0.1");
    }
    ::close(fd);
    return ntohs(in.sin_port);
}

}  // namespace sekisho::test
