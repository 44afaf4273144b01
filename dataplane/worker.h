// Live-mode worker lcore: its own RX/TX queue on both ports, one burst loop.
#pragma once

#include <atomic>
#include <cstdint>

#include "dataplane/limits/limit_request_box.h"
#include "dataplane/pipeline.h"
#include "dataplane/policy_store.h"

namespace sekisho {

struct live_worker {
    unsigned id = 0;                   // also the RCU reader id and queue index
    uint16_t port[ingress_count] = {};  // port id by side (access, core)
    uint16_t queue = 0;
    pipeline* pipe = nullptr;
    policy_store* store = nullptr;
    worker_counters* counters = nullptr;
    mail_tracker* mail = nullptr;                       // its limit records, for limit_requests
    limit_request_box* limit_requests = nullptr;        // the control thread's, polled once per turn
    const std::atomic<bool>* stop = nullptr;
};

// rte_eal_remote_launch entry point; `arg` is a live_worker*.
int run_live_worker(void* arg);

}  // namespace sekisho
