#include "dataplane/ports.h"

#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <stdexcept>

namespace sekisho {

namespace {
[[noreturn]] void fail(uint16_t port, const char* step, int rc) {
    throw std::runtime_error("port " + std::to_string(port) + " (" + port_name(port) + "): " + step +
                             " failed: " + rte_strerror(rc < 0 ? -rc : rc));
}
}  // namespace

std::string port_name(uint16_t port_id) {
    char name[RTE_ETH_NAME_MAX_LEN] = {};
    if (rte_eth_dev_get_name_by_port(port_id, name) != 0) return "?";
    return name;
}

void start_port(const port_setup& s, rte_mempool* pool) {
    rte_eth_dev_info info{};
    int rc = rte_eth_dev_info_get(s.port_id, &info);
    if (rc != 0) fail(s.port_id, "device info", rc);
    if (s.rx_queues > info.max_rx_queues || s.tx_queues > info.max_tx_queues)
        throw std::runtime_error("port " + std::to_string(s.port_id) + " (" + port_name(s.port_id) +
                                 ") offers " + std::to_string(info.max_rx_queues) + " RX / " +
                                 std::to_string(info.max_tx_queues) + " TX queues, " +
                                 std::to_string(s.rx_queues) + " needed (one per worker)");

    rte_eth_conf conf{};
    // A key repeating every 16 bits makes Toeplitz symmetric: the hash of
    // (S, 0) equals that of (0, S), so a subscriber's address hashed as the
    // access port's source and as the core port's destination picks the
    // same queue on both ports.
    static uint8_t symmetric_key[40];
    for (size_t i = 0; i < sizeof symmetric_key; i += 2) {
        symmetric_key[i] = 0x6d;
        symmetric_key[i + 1] = 0x5a;
    }
    if (s.rx_queues > 1) {
        const uint64_t wanted = RTE_ETH_RSS_IP |
            (s.side == ingress::access ? RTE_ETH_RSS_L3_SRC_ONLY : RTE_ETH_RSS_L3_DST_ONLY);
        const uint64_t hf = wanted & info.flow_type_rss_offloads;
        if (hf != 0) {
            conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = hf;
            if (info.hash_key_size == sizeof symmetric_key) {
                conf.rx_adv_conf.rss_conf.rss_key = symmetric_key;
                conf.rx_adv_conf.rss_conf.rss_key_len = sizeof symmetric_key;
            }
        }
    }
    rc = rte_eth_dev_configure(s.port_id, s.rx_queues, s.tx_queues, &conf);
    if (rc != 0) fail(s.port_id, "configure", rc);

    uint16_t rxd = s.rx_descriptors, txd = s.tx_descriptors;
    rc = rte_eth_dev_adjust_nb_rx_tx_desc(s.port_id, &rxd, &txd);
    if (rc != 0) fail(s.port_id, "descriptor sizing", rc);
    const int socket = rte_eth_dev_socket_id(s.port_id);
    const unsigned sock = socket < 0 ? 0 : static_cast<unsigned>(socket);
    for (uint16_t q = 0; q < s.rx_queues; ++q) {
        rc = rte_eth_rx_queue_setup(s.port_id, q, rxd, sock, nullptr, pool);
        if (rc != 0) fail(s.port_id, "RX queue setup", rc);
    }
    for (uint16_t q = 0; q < s.tx_queues; ++q) {
        rc = rte_eth_tx_queue_setup(s.port_id, q, txd, sock, nullptr);
        if (rc != 0) fail(s.port_id, "TX queue setup", rc);
    }
    rc = rte_eth_dev_start(s.port_id);
    if (rc != 0) fail(s.port_id, "start", rc);
    // A bump in the wire must see every frame, whatever its destination MAC.
    rc = rte_eth_promiscuous_enable(s.port_id);
    if (rc != 0 && rc != -ENOTSUP) fail(s.port_id, "promiscuous mode", rc);
}

void stop_port(uint16_t port_id) {
    rte_eth_dev_stop(port_id);
    rte_eth_dev_close(port_id);
}

void transmit(uint16_t port_id, uint16_t queue, rte_mbuf** pkts, uint16_t n, port_counters& counters) {
    if (n == 0) return;
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < n; ++i) bytes += pkts[i]->pkt_len;
    const uint16_t sent = rte_eth_tx_burst(port_id, queue, pkts, n);
    if (sent < n) {
        for (uint16_t i = sent; i < n; ++i) bytes -= pkts[i]->pkt_len;
        rte_pktmbuf_free_bulk(pkts + sent, n - sent);
        counters.tx_full_drops.add(n - sent);
    }
    counters.tx_packets.add(sent);
    counters.tx_bytes.add(bytes);
}

}  // namespace sekisho
