#include "backends/xdp/xdp_counters.h"

#include <iterator>

namespace sekisho {

namespace {

// Each counter of the program's sx_port_counters and the port_counters member it fills.
// port_counters::tx_full_drops has none: XDP_TX has no queue the program sees full.
struct port_counter_copy {
    __u64 sx_port_counters::*from;
    counter port_counters::*to;
};
constexpr port_counter_copy port_counter_copies[] = {
    {&sx_port_counters::rx_packets, &port_counters::rx_packets},
    {&sx_port_counters::rx_bytes, &port_counters::rx_bytes},
    {&sx_port_counters::tx_packets, &port_counters::tx_packets},
    {&sx_port_counters::tx_bytes, &port_counters::tx_bytes},
    {&sx_port_counters::forwarded, &port_counters::forwarded},
    {&sx_port_counters::blocked, &port_counters::blocked},
    {&sx_port_counters::monitored, &port_counters::monitored},
    {&sx_port_counters::limited, &port_counters::limited},
    {&sx_port_counters::malformed, &port_counters::malformed},
    {&sx_port_counters::malformed_dropped, &port_counters::malformed_dropped},
    {&sx_port_counters::resets_sent, &port_counters::resets_sent},
    {&sx_port_counters::reset_failures, &port_counters::reset_failures},
    {&sx_port_counters::non_ip, &port_counters::non_ip},
    {&sx_port_counters::fragments, &port_counters::fragments},
};

// Each scalar counter of sx_counters and the worker_counters counter it fills.
struct scalar_counter_copy {
    __u64 sx_counters::*from;
    counter& (*to)(worker_counters&);
};
constexpr scalar_counter_copy scalar_counter_copies[] = {
    {&sx_counters::events_emitted, [](worker_counters& w) -> counter& { return w.events_emitted; }},
    {&sx_counters::events_ring_full, [](worker_counters& w) -> counter& { return w.events_ring_full; }},
    {&sx_counters::syns_dropped, [](worker_counters& w) -> counter& { return w.mail.syns_dropped; }},
    {&sx_counters::limit_resets_sent, [](worker_counters& w) -> counter& { return w.mail.resets_sent; }},
    {&sx_counters::bucket_table_full, [](worker_counters& w) -> counter& { return w.mail.subscriber_state_full; }},
};

// Every counter the program keeps is copied: the tables above, and the arrays copied whole below.
static_assert(sizeof(sx_port_counters) == std::size(port_counter_copies) * sizeof(__u64),
              "an sx_port_counters counter missing from port_counter_copies");
static_assert(sizeof(sx_counters) == sizeof(sx_counters::port) + sizeof(sx_counters::malformed_by_reason) +
                                         sizeof(sx_counters::blocked_by_reason) +
                                         sizeof(sx_counters::monitored_by_reason) + sizeof(sx_counters::limit_hits) +
                                         std::size(scalar_counter_copies) * sizeof(__u64),
              "an sx_counters counter missing from scalar_counter_copies");

}  // namespace

void copy_xdp_counters(const sx_counters& from, worker_counters& to) {
    for (unsigned side = 0; side < ingress_count; ++side)
        for (const port_counter_copy& c : port_counter_copies) (to.port[side].*c.to).set(from.port[side].*c.from);
    for (unsigned e = 0; e < parse_error_count; ++e) to.malformed_by_reason[e].set(from.malformed_by_reason[e]);
    for (unsigned r = 0; r < block_reason_count; ++r) {
        to.blocked_by_reason[r].set(from.blocked_by_reason[r]);
        to.monitored_by_reason[r].set(from.monitored_by_reason[r]);
    }
    for (const scalar_counter_copy& c : scalar_counter_copies) c.to(to).set(from.*c.from);
    for (unsigned i = 0; i < max_limits; ++i) to.mail.limit_hits[i].set(from.limit_hits[i]);
}

}  // namespace sekisho
