// Every frame of a capture file, as bytes. Kept apart from the BPF code:
// <pcap/pcap.h> and libbpf's <linux/bpf.h> both define struct bpf_insn.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sekisho::test {

// Throws std::runtime_error naming the file and libpcap's message.
std::vector<std::vector<uint8_t>> read_pcap_frames(const std::string& path);

}  // namespace sekisho::test
