// Frames the kernel dropped because a net_af_packet RX ring was full.
//
// The af_packet PMD of DPDK 22.11 (Debian's) does not report these:
// rte_eth_stats.imissed stays 0 however far the workers fall behind, so an
// RX overload on a Linux interface would be invisible. The kernel counts them
// per packet socket (PACKET_STATISTICS tp_drops); this reads them from the
// PMD's own sockets in this process (found through /proc/self/fd, matched to
// a port by the interface they are bound to) and keeps the running total.
// Reading PACKET_STATISTICS resets the kernel's counters, which the 22.11 PMD
// never reads, so this is their only reader. A PMD that fills imissed itself
// (a physical NIC, a later af_packet) needs none of this: it is used for
// --if-driver af_packet only.
//
// Control thread only; a few syscalls per socket per call (every ~200 ms).
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace sekisho {

class packet_ring_drops {
public:
    // The interfaces of side 0 (access) and side 1 (core); unknown names never match.
    packet_ring_drops(const std::string& access_if, const std::string& core_if);

    // Adds what the kernel dropped since the last call; returns the totals per side.
    std::array<uint64_t, 2> poll();
    std::array<uint64_t, 2> totals() const { return totals_; }

private:
    std::array<int, 2> ifindex_{};
    std::array<uint64_t, 2> totals_{};
};

}  // namespace sekisho
