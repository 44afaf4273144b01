#include "backends/dpdk/packet_ring_drops.h"

#include <dirent.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdlib>

namespace sekisho {

packet_ring_drops::packet_ring_drops(const std::string& access_if, const std::string& core_if) {
    ifindex_[0] = access_if.empty() ? 0 : static_cast<int>(if_nametoindex(access_if.c_str()));
    ifindex_[1] = core_if.empty() ? 0 : static_cast<int>(if_nametoindex(core_if.c_str()));
}

std::array<uint64_t, 2> packet_ring_drops::poll() {
    DIR* d = opendir("/proc/self/fd");
    if (d == nullptr) return totals_;
    const int dir_fd = dirfd(d);
    while (const dirent* e = readdir(d)) {
        char* end = nullptr;
        const long fd = std::strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end != '\0' || fd == dir_fd) continue;
        struct stat st{};
        if (fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
        int domain = 0;
        socklen_t len = sizeof domain;
        if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || domain != AF_PACKET)
            continue;
        sockaddr_ll ll{};
        len = sizeof ll;
        if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&ll), &len) != 0) continue;
        for (unsigned side = 0; side < 2; ++side) {
            if (ifindex_[side] == 0 || ll.sll_ifindex != ifindex_[side]) continue;
            tpacket_stats ts{};
            len = sizeof ts;
            if (getsockopt(static_cast<int>(fd), SOL_PACKET, PACKET_STATISTICS, &ts, &len) == 0)
                totals_[side] += ts.tp_drops;
        }
    }
    closedir(d);
    return totals_;
}

}  // namespace sekisho
