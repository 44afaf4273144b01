#include "backends/interface_driver.h"

#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace sekisho {

std::string interface_driver(const std::string& ifname) {
    if (ifname.empty() || ifname.size() >= IFNAMSIZ) return "";
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return "";
    ethtool_drvinfo info{};
    info.cmd = ETHTOOL_GDRVINFO;
    ifreq req{};
    std::memcpy(req.ifr_name, ifname.c_str(), ifname.size());
    req.ifr_data = reinterpret_cast<char*>(&info);
    const int rc = ioctl(fd, SIOCETHTOOL, &req);
    close(fd);
    if (rc != 0) return "";
    return std::string(info.driver, strnlen(info.driver, sizeof info.driver));
}

std::string veth_warning(const std::string& ifname, bool forwards_raw_frames) {
    if (interface_driver(ifname) != "veth") return "";
    if (forwards_raw_frames)
        return "warning: " + ifname +
               " is a veth (a lab): TCP forwarded from it arrives with partial checksums and dies unless the "
               "sending peer's TX checksum offload is off (ethtool -K PEER tx off; README, lab mode on veth)";
    return "warning: " + ifname +
           " is a veth (a lab): native XDP_TX (the resets) reaches the peer at once only when the peer has an "
           "XDP program of its own; with GRO alone they wait for the peer's next frame (docs/xdp.md)";
}

}  // namespace sekisho
