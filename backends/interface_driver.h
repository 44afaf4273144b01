// Which kernel driver runs a Linux interface (ETHTOOL_GDRVINFO over the
// SIOCETHTOOL ioctl), and the start-up warning for lab interfaces: a veth
// pair hands frames over with the sender's TCP checksum only partly done
// (CHECKSUM_PARTIAL), which the kernel itself forgives but a data plane
// reading raw frames (net_af_packet, net_af_xdp) forwards as a bad checksum,
// so TCP through the gateway dies unless the sending peer's TX checksum
// offload is off (README, "Lab mode on veth").
#pragma once

#include <string>

namespace sekisho {

// The driver's name ("veth", "ixgbe", ...); empty when the interface does
// not exist or answers no driver information. Any thread; one ioctl.
std::string interface_driver(const std::string& ifname);

// The warning to print at start when `ifname` is a veth, for a backend that
// forwards itself (`forwards_raw_frames`: DPDK) or lets the kernel forward
// (XDP, where the trap is only native XDP_TX); empty otherwise.
std::string veth_warning(const std::string& ifname, bool forwards_raw_frames);

}  // namespace sekisho
