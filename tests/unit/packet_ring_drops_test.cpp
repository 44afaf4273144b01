// packet_ring_drops: the kernel's drops on this process's packet sockets,
// matched to a side by interface, accumulated across reads (which reset the
// kernel's counters). A real AF_PACKET socket on lo whose buffer overflows
// (root: CAP_NET_RAW).
#include "backends/dpdk/packet_ring_drops.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>

namespace sekisho {
namespace {

struct fd_guard {
    int fd;
    ~fd_guard() {
        if (fd >= 0) close(fd);
    }
};

void send_udp_to_lo(int datagrams) {
    fd_guard u{socket(AF_INET, SOCK_DGRAM, 0)};
    ASSERT_GE(u.fd, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(9);   // discard: nobody listens, the packet socket still sees the frames
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char payload[1000] = {};
    for (int i = 0; i < datagrams; ++i)
        sendto(u.fd, payload, sizeof payload, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
}

TEST(packet_ring_drops, counts_an_overflowing_packet_socket_by_interface) {
    fd_guard p{socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL))};
    if (p.fd < 0 && (errno == EPERM || errno == EACCES)) GTEST_SKIP() << "needs CAP_NET_RAW (run as root)";
    ASSERT_GE(p.fd, 0) << std::strerror(errno);
    const int small = 1;   // the kernel's minimum receive buffer: a few frames
    ASSERT_EQ(setsockopt(p.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    sockaddr_ll ll{};
    ll.sll_family = AF_PACKET;
    ll.sll_protocol = htons(ETH_P_ALL);
    ll.sll_ifindex = static_cast<int>(if_nametoindex("lo"));
    ASSERT_GT(ll.sll_ifindex, 0);
    ASSERT_EQ(bind(p.fd, reinterpret_cast<const sockaddr*>(&ll), sizeof ll), 0) << std::strerror(errno);

    packet_ring_drops on_lo("lo", ""), elsewhere("", "lo-does-not-exist");
    const uint64_t before = on_lo.poll()[0];
    send_udp_to_lo(2000);   // never read: all but the first few are dropped
    const auto after = on_lo.poll();
    EXPECT_GT(after[0] - before, 1000u) << "the drops of the socket bound to lo";
    EXPECT_EQ(after[1], 0u) << "the core side has no interface";
    // The kernel's counter was reset by the read: the total stays, nothing is counted twice.
    EXPECT_EQ(on_lo.poll()[0], after[0]);
    // Sockets on other interfaces are not counted (another reader, after this one: the
    // kernel's counters restart at each read, so it sees only new drops, which it ignores).
    send_udp_to_lo(500);
    EXPECT_EQ(elsewhere.poll()[0], 0u);
    EXPECT_EQ(elsewhere.poll()[1], 0u);
}

}  // namespace
}  // namespace sekisho
