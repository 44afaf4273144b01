#include "dataplane/event_ring.h"

#include <rte_errno.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <stdexcept>
#include <string>

namespace sekisho {

event_ring::event_ring(const char* name, unsigned capacity) {
    ring_ = rte_ring_create_elem(name, sizeof(event_record), rte_align32pow2(capacity + 1),
                                 SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (ring_ == nullptr)
        throw std::runtime_error(std::string("cannot create event ring ") + name + ": " +
                                 rte_strerror(rte_errno));
}

event_ring::~event_ring() { rte_ring_free(ring_); }

bool event_ring::push(const event_record& e) {
    return rte_ring_sp_enqueue_elem(ring_, const_cast<event_record*>(&e), sizeof e) == 0;
}

unsigned event_ring::pop(event_record* out, unsigned max) {
    return rte_ring_sc_dequeue_burst_elem(ring_, out, sizeof(event_record), max, nullptr);
}

}  // namespace sekisho
