#include "dataplane/op25b_classifier.h"

namespace sekisho {

const char* to_string(ingress i) { return i == ingress::access ? "access" : "core"; }

const char* to_string(block_reason r) {
    switch (r) {
    case block_reason::op25b_port: return "op25b_port";
    case block_reason::op25b_incomplete_fragment: return "op25b_incomplete_fragment";
    case block_reason::count_: break;
    }
    return "unknown";
}

subscriber_class source_class(const parsed_packet& p, const compiled_policy& policy) {
    if (p.ip_version == 4) return policy.subscriber4(p.src4);
    if (p.ip_version == 6) return policy.subscriber6(p.src6());
    return subscriber_class::none;
}

namespace {
bool to_relay(const parsed_packet& p, const compiled_policy& policy) {
    return p.ip_version == 4 ? policy.is_relay4(p.dst4) : policy.is_relay6(p.dst6());
}
}  // namespace

op25b_outcome classify_op25b(const parsed_packet& p, ingress in, const compiled_policy& policy) {
    if (in != ingress::access) return op25b_outcome::pass;
    switch (p.kind) {
    case frame_kind::ip_tcp:
        // The one port check every TCP packet pays; lookups only for mail ports.
        if (!policy.is_blocked_port(p.dst_port)) return op25b_outcome::pass;
        if (source_class(p, policy) != subscriber_class::dynamic) return op25b_outcome::pass;
        if (to_relay(p, policy)) return op25b_outcome::pass;
        return op25b_outcome::block_port;
    case frame_kind::ip_first_fragment_incomplete:
        if (source_class(p, policy) != subscriber_class::dynamic) return op25b_outcome::pass;
        return op25b_outcome::block_incomplete_fragment;
    case frame_kind::malformed:
        // Sekisho cannot tell what a malformed frame carries, and the next
        // hop would discard it anyway: from subscribers it does not pass.
        return op25b_outcome::drop_malformed;
    case frame_kind::non_ip:
    case frame_kind::ip_other:
    case frame_kind::ip_fragment_later:
        return op25b_outcome::pass;
    }
    return op25b_outcome::pass;
}

}  // namespace sekisho
