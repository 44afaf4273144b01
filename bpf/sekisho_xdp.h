/* The contract between the XDP program (sekisho_xdp.bpf.c) and its loader
 * (backends/xdp/xdp_backend.cpp): map keys and values, counter layout, events.
 *
 * Plain C, included by the BPF program (after vmlinux.h) and by C++ (after
 * <linux/types.h>). Enumerations mirror the DPDK data plane's
 * (packet_parser.h, op25b_classifier.h, compiled_policy.h, mail_limits.h);
 * backends/xdp/xdp_backend.cpp static_asserts that they stay equal.
 */
#ifndef SEKISHO_XDP_H
#define SEKISHO_XDP_H

/* --- Parser (packet_parser.h) ------------------------------------------- */
enum sx_frame_kind {
    SX_KIND_MALFORMED = 0,
    SX_KIND_NON_IP,
    SX_KIND_IP_OTHER,
    SX_KIND_IP_TCP,
    SX_KIND_IP_FRAGMENT_LATER,
    SX_KIND_IP_FIRST_FRAGMENT_INCOMPLETE,
};

enum sx_parse_error {
    SX_ERR_NONE = 0,
    SX_ERR_TRUNCATED_ETHERNET,
    SX_ERR_TRUNCATED_VLAN,
    SX_ERR_VLAN_TOO_DEEP,
    SX_ERR_TRUNCATED_PPPOE,
    SX_ERR_BAD_PPPOE,
    SX_ERR_TRUNCATED_IPV4,
    SX_ERR_BAD_IPV4_HEADER,
    SX_ERR_BAD_IPV4_LENGTH,
    SX_ERR_TRUNCATED_IPV6,
    SX_ERR_BAD_IPV6_HEADER,
    SX_ERR_BAD_IPV6_LENGTH,
    SX_ERR_IPV6_CHAIN_TOO_LONG,
    SX_ERR_BAD_IPV6_EXTENSION,
    SX_ERR_TRUNCATED_TCP,
    SX_ERR_BAD_TCP_OFFSET,
    SX_ERR_TCP_FRAGMENT_OVERLAP,
    SX_ERR_COUNT,
};

#define SX_MAX_VLAN_TAGS 2
#define SX_MAX_IPV6_EXTENSION_HEADERS 8

/* --- Classifier (op25b_classifier.h, compiled_policy.h) ------------------ */
enum sx_ingress { SX_INGRESS_ACCESS = 0, SX_INGRESS_CORE = 1, SX_INGRESS_COUNT = 2 };
enum sx_outcome { SX_PASS = 0, SX_BLOCK_PORT, SX_BLOCK_INCOMPLETE_FRAGMENT, SX_DROP_MALFORMED };
enum sx_block_reason { SX_REASON_PORT = 0, SX_REASON_INCOMPLETE_FRAGMENT, SX_REASON_COUNT };
enum sx_subscriber_class { SX_CLASS_NONE = 0, SX_CLASS_DYNAMIC = 1, SX_CLASS_STATIC = 2 };
enum sx_mode { SX_MODE_ENFORCE = 0, SX_MODE_MONITOR = 1 };
enum sx_action { SX_ACTION_DROP = 0, SX_ACTION_RESET = 1 };

/* --- Connection limits (mail_limits.h) ----------------------------------- */
enum sx_limit_scope { SX_SCOPE_ADDRESS = 0, SX_SCOPE_PREFIX = 1 };
enum sx_limit_action { SX_LIMIT_DROP_SYN = 0, SX_LIMIT_RESET = 1, SX_LIMIT_TEMPFAIL = 2, SX_LIMIT_MONITOR = 3 };
enum sx_limit_target { SX_TARGET_ANY = 0, SX_TARGET_DYNAMIC = 1, SX_TARGET_STATIC = 2 };

#define SX_MAX_LIMITS 16          /* max_limits: indices into the policy's limits */
#define SX_MAX_CONN_LIMITS 8      /* connection limits the XDP program evaluates */

struct sx_conn_limit {
    __u64 interval_ns;            /* GCRA: window / max */
    __u64 tolerance_ns;           /* GCRA: interval * (burst - 1) */
    __u64 cooldown_ns;
    __u8 policy_index;            /* position in the policy's limits (events, metrics) */
    __u8 scope;                   /* sx_limit_scope */
    __u8 action;                  /* sx_limit_action (tempfail acts as drop_syn: see docs/xdp.md) */
    __u8 target;                  /* sx_limit_target */
    __u8 pad[4];
};

/* One policy generation's settings: element 0 or 1 of the policy_sets array;
 * active_set[0] says which one packets use. */
struct sx_policy_set {
    __u64 generation;
    __u8 mode;                    /* sx_mode */
    __u8 action;                  /* sx_action */
    __u8 ipv6_prefix_length;
    __u8 conn_limit_count;
    __u8 pad[4];
    __u8 ipv6_prefix_mask[16];    /* ipv6_prefix_length as a byte mask */
    struct sx_conn_limit conn_limits[SX_MAX_CONN_LIMITS];
    __u64 blocked_ports[1024];    /* bit per TCP port: OP25B (ports.smtp) */
    __u64 mail_ports[1024];       /* bit per TCP port: connection limits (smtp + submission) */
};

/* LPM keys: the first data byte is the policy set (0 or 1), so both
 * generations live in one trie and a lookup only sees its own set. */
struct sx_lpm4_key {
    __u32 prefixlen;              /* 8 + prefix length */
    __u8 set;
    __u8 addr[4];
};
struct sx_lpm6_key {
    __u32 prefixlen;              /* 8 + prefix length */
    __u8 set;
    __u8 addr[16];
};

/* Token bucket (GCRA) state, one per (limit, subscriber). */
struct sx_bucket_key {
    __u8 policy_index;
    __u8 family;                  /* 4 or 6 */
    __u8 length;                  /* 32, 128 or the IPv6 subscriber prefix length */
    __u8 pad;
    __u8 addr[16];                /* masked to `length` bits */
};

/* --- Counters: one per-CPU array element holding all of them ------------- */
struct sx_port_counters {
    __u64 rx_packets, rx_bytes;
    __u64 tx_packets, tx_bytes;   /* frames sent back out (XDP_TX: resets) */
    __u64 forwarded;              /* XDP_PASS of a received frame */
    __u64 blocked, monitored, limited;
    __u64 malformed, malformed_dropped;
    __u64 resets_sent, reset_failures;
    __u64 non_ip, fragments;
};

struct sx_counters {
    struct sx_port_counters port[SX_INGRESS_COUNT];
    __u64 malformed_by_reason[SX_ERR_COUNT];
    __u64 blocked_by_reason[SX_REASON_COUNT];
    __u64 monitored_by_reason[SX_REASON_COUNT];
    __u64 events_emitted, events_ring_full;
    __u64 syns_dropped, limit_resets_sent, bucket_table_full;
    __u64 limit_hits[SX_MAX_LIMITS];
};

/* --- Events through the ring buffer (event_ring.h's event_record) -------- */
enum sx_event_type { SX_EVENT_OP25B_BLOCK = 1, SX_EVENT_OP25B_MONITOR = 2, SX_EVENT_LIMIT_EXCEEDED = 3 };

struct sx_event {
    __u64 time_ns;                /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
    __u64 generation;
    __u8 type;                    /* sx_event_type */
    __u8 reason;                  /* block reason, or the limit's policy index */
    __u8 ip_version;
    __u8 ingress;
    __u8 action;                  /* sx_action, or sx_limit_action */
    __u8 cpu;
    __u8 tcp_flags;
    __u8 pad;
    __u16 src_port, dst_port;
    __u8 src[16], dst[16];        /* IPv4 in the first four bytes */
};

#endif
