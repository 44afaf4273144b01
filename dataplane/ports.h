// Port setup and transmission shared by live mode and replay.
#pragma once

#include <cstdint>
#include <string>

#include "dataplane/op25b_classifier.h"
#include "dataplane/worker_counters.h"

struct rte_mbuf;
struct rte_mempool;

namespace sekisho {

struct port_setup {
    uint16_t port_id = 0;
    uint16_t rx_queues = 1;
    uint16_t tx_queues = 1;
    uint16_t rx_descriptors = 1024;
    uint16_t tx_descriptors = 1024;
    // Subscriber affinity: hash on the subscriber-side address only, so both
    // directions of one subscriber reach the same worker (access: source,
    // core: destination). Used when the device offers RSS with these fields.
    ingress side = ingress::access;
};

// Configures, sets up queues, enables promiscuous mode and starts the port.
// Throws std::runtime_error naming the port and the failing step.
void start_port(const port_setup& setup, rte_mempool* pool);
void stop_port(uint16_t port_id);
std::string port_name(uint16_t port_id);

// Sends `n` frames on (port, queue). What the TX queue does not take is freed
// and counted in `counters.tx_full_drops`; what it takes in tx_packets/bytes.
void transmit(uint16_t port_id, uint16_t queue, rte_mbuf** pkts, uint16_t n, port_counters& counters);

}  // namespace sekisho
