#include "dataplane/worker.h"

#include <rte_ethdev.h>
#include <rte_pause.h>

#include "dataplane/limits/mail_tracker.h"
#include "dataplane/ports.h"

namespace sekisho {

unsigned worker_turn(live_worker& w, rte_mbuf** rx, burst_output& out) {
    const compiled_policy* policy = w.store->current();
    unsigned received = 0;
    for (unsigned side = 0; side < ingress_count; ++side) {
        const uint16_t n = rte_eth_rx_burst(w.port[side], w.queue, rx, burst_size);
        if (n == 0) continue;
        received += n;
        out.n_forward = out.n_reply = 0;
        w.pipe->process(*policy, static_cast<ingress>(side), rx, n, out);
        const unsigned other = side ^ 1;
        transmit(w.port[other], w.queue, out.forward, out.n_forward, w.counters->port[other]);
        transmit(w.port[side], w.queue, out.reply, out.n_reply, w.counters->port[side]);
    }
    // End of this burst's use of `policy`: the control thread may free it
    // once every worker has passed here.
    w.store->quiescent(w.id);
    // Between bursts, the support desk's look into this worker's limit records.
    if (w.limit_requests && w.limit_requests->pending()) w.mail->serve(*w.limit_requests);
    return received;
}

int run_live_worker(void* arg) {
    live_worker& w = *static_cast<live_worker*>(arg);
    w.store->register_reader(w.id);
    rte_mbuf* rx[burst_size];
    burst_output out;

    while (!w.stop->load(std::memory_order_relaxed)) {
        if (worker_turn(w, rx, out) != 0) {
            w.counters->busy_polls.add();
        } else {
            w.counters->idle_polls.add();
            rte_pause();
        }
    }
    w.store->unregister_reader(w.id);
    return 0;
}

}  // namespace sekisho
