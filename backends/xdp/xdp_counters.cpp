#include "backends/xdp/xdp_counters.h"

namespace sekisho {

void copy_xdp_counters(const sx_counters& from, worker_counters& to) {
    for (unsigned side = 0; side < ingress_count; ++side) {
        const sx_port_counters& f = from.port[side];
        port_counters& t = to.port[side];
        t.rx_packets.set(f.rx_packets);
        t.rx_bytes.set(f.rx_bytes);
        t.tx_packets.set(f.tx_packets);
        t.tx_bytes.set(f.tx_bytes);
        t.forwarded.set(f.forwarded);
        t.blocked.set(f.blocked);
        t.monitored.set(f.monitored);
        t.limited.set(f.limited);
        t.malformed.set(f.malformed);
        t.malformed_dropped.set(f.malformed_dropped);
        t.resets_sent.set(f.resets_sent);
        t.reset_failures.set(f.reset_failures);
        t.non_ip.set(f.non_ip);
        t.fragments.set(f.fragments);
    }
    for (unsigned e = 0; e < parse_error_count; ++e) to.malformed_by_reason[e].set(from.malformed_by_reason[e]);
    for (unsigned r = 0; r < block_reason_count; ++r) {
        to.blocked_by_reason[r].set(from.blocked_by_reason[r]);
        to.monitored_by_reason[r].set(from.monitored_by_reason[r]);
    }
    to.events_emitted.set(from.events_emitted);
    to.events_ring_full.set(from.events_ring_full);
    to.mail.syns_dropped.set(from.syns_dropped);
    to.mail.resets_sent.set(from.limit_resets_sent);
    to.mail.subscriber_state_full.set(from.bucket_table_full);
    for (unsigned i = 0; i < max_limits; ++i) to.mail.limit_hits[i].set(from.limit_hits[i]);
}

}  // namespace sekisho
