// OP25B: the stateless decision on one parsed frame.
//
// Any access->core TCP packet to a blocked port from a dynamic, non-static
// source to a non-relay destination is blocked, SYN or not. A first fragment
// that hides its TCP header (RFC 7112, RFC 1858 tiny fragment) from a dynamic
// source is blocked whatever its port. Malformed IP from the access side is
// dropped. Everything else passes. Mode (enforce/monitor) and action
// (drop/reset) are applied by the pipeline, not here.
#pragma once

#include <cstdint>

#include "dataplane/compiled_policy.h"
#include "dataplane/net/packet_parser.h"

namespace sekisho {

enum class ingress : uint8_t { access = 0, core = 1 };
constexpr unsigned ingress_count = 2;
const char* to_string(ingress i);

enum class op25b_outcome : uint8_t {
    pass = 0,
    block_port,                 // TCP to a blocked port from a dynamic source
    block_incomplete_fragment,  // header chain split across fragments
    drop_malformed,             // malformed IP from the access side
};

// Counter slots for blocked traffic (summary.json "blocked_by_reason").
enum class block_reason : uint8_t { op25b_port = 0, op25b_incomplete_fragment, count_ };
constexpr unsigned block_reason_count = static_cast<unsigned>(block_reason::count_);
const char* to_string(block_reason r);

// Which class the frame's source address belongs to (none if not IP).
subscriber_class source_class(const parsed_packet& p, const compiled_policy& policy);

op25b_outcome classify_op25b(const parsed_packet& p, ingress in, const compiled_policy& policy);

}  // namespace sekisho
