#include "pcap_frames.h"

#include <pcap/pcap.h>

#include <stdexcept>

namespace sekisho::test {

std::vector<std::vector<uint8_t>> read_pcap_frames(const std::string& path) {
    char err[PCAP_ERRBUF_SIZE] = {};
    pcap_t* p = pcap_open_offline(path.c_str(), err);
    if (p == nullptr) throw std::runtime_error(path + ": " + err);
    std::vector<std::vector<uint8_t>> frames;
    pcap_pkthdr* h = nullptr;
    const u_char* data = nullptr;
    int rc;
    while ((rc = pcap_next_ex(p, &h, &data)) == 1) frames.emplace_back(data, data + h->caplen);
    const std::string why = rc == PCAP_ERROR ? pcap_geterr(p) : "";
    pcap_close(p);
    if (rc == PCAP_ERROR) throw std::runtime_error(path + ": " + why);
    return frames;
}

}  // namespace sekisho::test
