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

// One turn of the worker's loop: a burst of up to burst_size frames from each
// port (access, then core) through the pipeline under the policy in force and
// out (forwarded frames through the other port, injected replies back out of
// the ingress one), then the RCU quiescent state and the support desk's
// pending request. Returns the frames received (0: an idle turn). `rx` holds
// burst_size pointers; `out` is scratch. The live loop below and the
// benchmarks that measure it through real ports run exactly this. The caller
// must be registered as reader w.id of w.store.
unsigned worker_turn(live_worker& w, rte_mbuf** rx, burst_output& out);

// rte_eal_remote_launch entry point; `arg` is a live_worker*.
int run_live_worker(void* arg);

}  // namespace sekisho
