// Events from the data plane: fixed-size records on a per-worker lock-free
// ring (single producer: the worker; single consumer: the control thread).
// A full ring drops the event and counts it (worker_counters.events_ring_full);
// nothing blocks the packet path.
#pragma once

#include <cstdint>

struct rte_ring;

namespace sekisho {

enum class event_type : uint8_t {
    op25b_block = 1, op25b_monitor = 2, limit_exceeded = 3, account_suspended = 4, content_verdict = 5,
    mail_session = 6   // an SMTP connection ended: what it carried (the abuse desk's counters)
};

// mail_session: `action` carries these bits; `count` the messages (MAIL FROM),
// `recipients` and `rejected_recipients` the RCPT TOs and their 5xx replies.
namespace session_bits {
constexpr uint8_t tls = 1;  // went TLS (STARTTLS or port 465): later commands were not seen
}

// event_record.flags.
namespace event_flags {
// limit_exceeded: the first hit of a monitor-action limit on this connection (the event log
// counts these as the connections a limit would have stopped).
constexpr uint8_t first_monitored_hit = 1;
}

struct event_record {
    uint64_t time_ns;        // packet clock (capture time in replay)
    uint64_t generation;     // policy generation that judged the packet
    event_type type;
    uint8_t reason;          // block_reason, or the limit's index in the policy
    uint8_t ip_version;
    uint8_t ingress;
    uint8_t action;          // op25b_action, or limit_action
    uint8_t worker;
    uint8_t tcp_flags;
    uint8_t flags;           // event_flags
    uint16_t src_port, dst_port;
    uint8_t src[16], dst[16];  // IPv4 in the first four bytes, network order
    uint32_t account;          // account id (0: unbound), limit events
    uint32_t count;            // the count that tripped the limit
    // content_verdict: the message's score, matched rule indices, fingerprint,
    // sender signal bits. Never message text.
    int32_t score;
    uint64_t fingerprint;
    uint16_t rules[8];
    uint8_t rule_count;
    uint8_t signals;
    uint8_t reserved2[2];
    // mail_session
    uint32_t recipients;
    uint32_t rejected_recipients;
};
static_assert(sizeof(event_record) % 4 == 0, "rte_ring element size must be a multiple of 4");

class event_ring {
public:
    // Creates a ring holding `capacity` events (rounded up to a power of two).
    event_ring(const char* name, unsigned capacity);
    ~event_ring();
    event_ring(const event_ring&) = delete;
    event_ring& operator=(const event_ring&) = delete;

    bool push(const event_record& e);                 // worker side
    unsigned pop(event_record* out, unsigned max);     // control side

private:
    rte_ring* ring_;
};

}  // namespace sekisho
