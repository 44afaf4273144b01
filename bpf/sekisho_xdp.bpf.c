// SPDX-License-Identifier: BSD-3-Clause
/* Sekisho's XDP program: OP25B and per-subscriber SYN rate limits in the
 * driver, the second backend next to the DPDK data plane.
 *
 * The parser is a line-by-line twin of dataplane/net/packet_parser.cpp (same
 * bounds, same errors, same order of checks) and the decision a twin of
 * classify_op25b() plus the verdict part of pipeline::process(); the
 * differential test (tests/xdp/xdp_differential_test.cpp) proves the verdicts
 * equal frame by frame. Bytes are read with bpf_xdp_load_bytes() so that any
 * offset the DPDK parser reaches (an IPv6 chain of 8 headers of up to 2 KiB
 * each) is reachable here too, without variable-offset packet pointers.
 *
 * One policy generation is element 0 or 1 of policy_sets plus the LPM entries
 * whose first key byte is that set; active_set[0] picks the generation, read
 * once per packet, so a packet is always judged by exactly one generation.
 */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "sekisho_xdp.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_P_IPV4 0x0800
#define ETH_P_IPV6_ 0x86dd
#define ETH_P_VLAN 0x8100
#define ETH_P_QINQ 0x88a8
#define ETH_P_QINQ_LEGACY 0x9100
#define ETH_P_PPPOE_SESSION 0x8864
#define PPP_IPV4 0x0021
#define PPP_IPV6 0x0057
#define PROTO_TCP 6

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* --- Maps ---------------------------------------------------------------- */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} active_set SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 2);
    __type(key, __u32);
    __type(value, struct sx_policy_set);
} policy_sets SEC(".maps");

/* Value: sx_subscriber_class. Longest prefix wins (static inside dynamic). */
struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 262144);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct sx_lpm4_key);
    __type(value, __u8);
} subscribers4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 262144);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct sx_lpm6_key);
    __type(value, __u8);
} subscribers6 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct sx_lpm4_key);
    __type(value, __u8);
} relays4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 65536);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct sx_lpm6_key);
    __type(value, __u8);
} relays6 SEC(".maps");

/* Which side an interface is: sx_ingress by ifindex; absent = access. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u32);
} interface_roles SEC(".maps");

struct sx_bucket {
    __u64 tat_ns;                 /* GCRA theoretical arrival time */
    __u64 cooldown_until_ns;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 262144);  /* resized by the loader (tracking.subscribers_per_worker) */
    __type(key, struct sx_bucket_key);
    __type(value, struct sx_bucket);
} syn_buckets SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct sx_counters);
} counters SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20);
} events SEC(".maps");

/* --- Parsing --------------------------------------------------------------- */
struct parsed {
    __u8 kind, error, ip_version, l4_proto, vlan_tags, pppoe, fragment, tcp_flags;
    __u16 l3_offset, pppoe_offset, l4_offset, l3_len, l4_len, tcp_header_len;
    __u16 src_port, dst_port;
    __u32 seq, ack;
    __u8 src[16], dst[16];        /* IPv4 in the first four bytes, wire order */
};

static __always_inline int parse_fail(struct parsed *p, int e)
{
    p->kind = SX_KIND_MALFORMED;
    p->error = e;
    return p->kind;
}

static __always_inline __u16 be16(const __u8 *b) { return (__u16)(b[0] << 8 | b[1]); }
static __always_inline __u32 be32(const __u8 *b)
{
    return (__u32)b[0] << 24 | (__u32)b[1] << 16 | (__u32)b[2] << 8 | b[3];
}

/* TCP header at `off`, `avail` bytes of it. packet_parser.cpp: parse_tcp. */
static __always_inline int parse_tcp(struct xdp_md *ctx, __u32 off, __u32 avail, int first_fragment,
                                     struct parsed *p)
{
    __u8 t[20];
    p->l4_offset = off;
    p->l4_len = avail;
    if (avail >= 4) {
        if (bpf_xdp_load_bytes(ctx, off, t, 4))
            return parse_fail(p, SX_ERR_TRUNCATED_TCP);
        p->src_port = be16(t);
        p->dst_port = be16(t + 2);
    }
    if (avail < 20) {
        if (first_fragment) {
            p->kind = SX_KIND_IP_FIRST_FRAGMENT_INCOMPLETE;
            return p->kind;
        }
        return parse_fail(p, SX_ERR_TRUNCATED_TCP);
    }
    if (bpf_xdp_load_bytes(ctx, off, t, 20))
        return parse_fail(p, SX_ERR_TRUNCATED_TCP);
    __u32 hlen = (__u32)(t[12] >> 4) * 4;
    if (hlen < 20)
        return parse_fail(p, SX_ERR_BAD_TCP_OFFSET);
    if (hlen > avail) {
        if (first_fragment) {
            p->kind = SX_KIND_IP_FIRST_FRAGMENT_INCOMPLETE;
            return p->kind;
        }
        return parse_fail(p, SX_ERR_TRUNCATED_TCP);
    }
    p->tcp_header_len = hlen;
    p->seq = be32(t + 4);
    p->ack = be32(t + 8);
    p->tcp_flags = t[13];
    p->kind = SX_KIND_IP_TCP;
    return p->kind;
}

static __always_inline int parse_ipv4(struct xdp_md *ctx, __u32 off, __u32 len, struct parsed *p)
{
    __u8 h[20];
    if (len < off + 20)
        return parse_fail(p, SX_ERR_TRUNCATED_IPV4);
    if (bpf_xdp_load_bytes(ctx, off, h, 20))
        return parse_fail(p, SX_ERR_TRUNCATED_IPV4);
    __u32 ihl = (__u32)(h[0] & 0x0f) * 4;
    if ((h[0] >> 4) != 4 || ihl < 20)
        return parse_fail(p, SX_ERR_BAD_IPV4_HEADER);
    __u32 total = be16(h + 2);
    if (total < ihl || off + total > len)
        return parse_fail(p, SX_ERR_BAD_IPV4_LENGTH);

    p->ip_version = 4;
    p->l3_offset = off;
    p->l3_len = total;
    __builtin_memcpy(p->src, h + 12, 4);
    __builtin_memcpy(p->dst, h + 16, 4);
    __u8 proto = h[9];
    p->l4_proto = proto;

    __u16 frag = be16(h + 6);
    int more_fragments = (frag & 0x2000) != 0;
    __u16 frag_offset = frag & 0x1fff;
    p->fragment = more_fragments || frag_offset != 0;
    if (frag_offset != 0) {
        /* RFC 1858 sec. 4: a TCP fragment at offset 8 only overwrites flags. */
        if (proto == PROTO_TCP && frag_offset == 1)
            return parse_fail(p, SX_ERR_TCP_FRAGMENT_OVERLAP);
        p->kind = SX_KIND_IP_FRAGMENT_LATER;
        return p->kind;
    }
    if (proto != PROTO_TCP) {
        p->kind = SX_KIND_IP_OTHER;
        return p->kind;
    }
    return parse_tcp(ctx, off + ihl, total - ihl, more_fragments, p);
}

static __always_inline int parse_ipv6(struct xdp_md *ctx, __u32 off, __u32 len, struct parsed *p)
{
    __u8 h[40];
    if (len < off + 40)
        return parse_fail(p, SX_ERR_TRUNCATED_IPV6);
    if (bpf_xdp_load_bytes(ctx, off, h, 40))
        return parse_fail(p, SX_ERR_TRUNCATED_IPV6);
    if ((h[0] >> 4) != 6)
        return parse_fail(p, SX_ERR_BAD_IPV6_HEADER);
    __u32 payload = be16(h + 4);
    if (off + 40 + payload > len)
        return parse_fail(p, SX_ERR_BAD_IPV6_LENGTH);

    p->ip_version = 6;
    p->l3_offset = off;
    p->l3_len = 40 + payload;
    __builtin_memcpy(p->src, h + 8, 16);
    __builtin_memcpy(p->dst, h + 24, 16);
    __u32 end = off + 40 + payload;

    __u8 next = h[6];
    __u32 pos = off + 40;
    __u32 headers = 0;
    int first_fragment = 0;
    __u8 e[4];
    /* Each pass either counts a header (more than 8 fail) or leaves the
     * loop, so 10 passes cover every outcome the DPDK parser has. */
    for (int i = 0; i < SX_MAX_IPV6_EXTENSION_HEADERS + 2; i++) {
        __u32 hlen;
        switch (next) {
        case 0:   /* hop-by-hop */
        case 43:  /* routing */
        case 60:  /* destination options */
        case 135: /* mobility */
        case 139: /* HIP */
        case 140: /* shim6 */
            if (pos + 2 > end)
                goto chain_cut;
            if (bpf_xdp_load_bytes(ctx, pos, e, 2))
                goto chain_cut;
            hlen = ((__u32)e[1] + 1) * 8;
            break;
        case 51: /* AH */
            if (pos + 2 > end)
                goto chain_cut;
            if (bpf_xdp_load_bytes(ctx, pos, e, 2))
                goto chain_cut;
            hlen = ((__u32)e[1] + 2) * 4;
            break;
        case 44: { /* fragment */
            if (++headers > SX_MAX_IPV6_EXTENSION_HEADERS)
                return parse_fail(p, SX_ERR_IPV6_CHAIN_TOO_LONG);
            if (pos + 8 > end)
                goto chain_cut;
            if (bpf_xdp_load_bytes(ctx, pos, e, 4))
                goto chain_cut;
            __u16 fo = be16(e + 2);
            p->fragment = 1;
            next = e[0];
            pos += 8;
            if ((fo & 0xfff8) != 0) {
                p->l4_proto = next;
                p->kind = SX_KIND_IP_FRAGMENT_LATER;
                return p->kind;
            }
            first_fragment = (fo & 1) != 0;
            continue;
        }
        default:
            goto upper_layer;
        }
        if (++headers > SX_MAX_IPV6_EXTENSION_HEADERS)
            return parse_fail(p, SX_ERR_IPV6_CHAIN_TOO_LONG);
        if (pos + hlen > end)
            goto chain_cut;
        next = e[0];
        pos += hlen;
    }
    return parse_fail(p, SX_ERR_IPV6_CHAIN_TOO_LONG); /* not reached: see the bound above */

upper_layer:
    p->l4_proto = next;
    if (next != PROTO_TCP) {
        p->kind = SX_KIND_IP_OTHER;
        return p->kind;
    }
    return parse_tcp(ctx, pos, end - pos, first_fragment, p);

chain_cut:
    if (first_fragment) {
        p->l4_proto = next;
        p->kind = SX_KIND_IP_FIRST_FRAGMENT_INCOMPLETE;
        return p->kind;
    }
    return parse_fail(p, SX_ERR_BAD_IPV6_EXTENSION);
}

static __noinline int parse_frame(struct xdp_md *ctx, __u32 len, struct parsed *p)
{
    __u8 b[8];
    if (len < 14)
        return parse_fail(p, SX_ERR_TRUNCATED_ETHERNET);
    if (bpf_xdp_load_bytes(ctx, 12, b, 2))
        return parse_fail(p, SX_ERR_TRUNCATED_ETHERNET);
    __u16 ethertype = be16(b);
    __u32 off = 14;
    for (int i = 0; i <= SX_MAX_VLAN_TAGS; i++) {
        if (ethertype != ETH_P_VLAN && ethertype != ETH_P_QINQ && ethertype != ETH_P_QINQ_LEGACY)
            break;
        if (p->vlan_tags == SX_MAX_VLAN_TAGS)
            return parse_fail(p, SX_ERR_VLAN_TOO_DEEP);
        if (len < off + 4)
            return parse_fail(p, SX_ERR_TRUNCATED_VLAN);
        if (bpf_xdp_load_bytes(ctx, off + 2, b, 2))
            return parse_fail(p, SX_ERR_TRUNCATED_VLAN);
        ethertype = be16(b);
        off += 4;
        p->vlan_tags++;
    }

    if (ethertype == ETH_P_PPPOE_SESSION) {
        if (len < off + 7)
            return parse_fail(p, SX_ERR_TRUNCATED_PPPOE);
        if (bpf_xdp_load_bytes(ctx, off, b, 7))
            return parse_fail(p, SX_ERR_TRUNCATED_PPPOE);
        if (b[0] != 0x11 || b[1] != 0x00)
            return parse_fail(p, SX_ERR_BAD_PPPOE);
        __u32 pppoe_len = be16(b + 4);
        __u16 protocol;
        __u32 proto_len;
        if (b[6] & 1) {
            protocol = b[6];
            proto_len = 1;
        } else {
            if (len < off + 8)
                return parse_fail(p, SX_ERR_TRUNCATED_PPPOE);
            if (bpf_xdp_load_bytes(ctx, off + 7, b + 7, 1))
                return parse_fail(p, SX_ERR_TRUNCATED_PPPOE);
            protocol = be16(b + 6);
            proto_len = 2;
        }
        if (pppoe_len < proto_len || off + 6 + pppoe_len > len)
            return parse_fail(p, SX_ERR_BAD_PPPOE);
        p->pppoe = 1;
        p->pppoe_offset = off;
        off += 6 + proto_len;
        if (protocol == PPP_IPV4)
            return parse_ipv4(ctx, off, len, p);
        if (protocol == PPP_IPV6)
            return parse_ipv6(ctx, off, len, p);
        p->kind = SX_KIND_NON_IP;
        return p->kind;
    }
    if (ethertype == ETH_P_IPV4)
        return parse_ipv4(ctx, off, len, p);
    if (ethertype == ETH_P_IPV6_)
        return parse_ipv6(ctx, off, len, p);
    p->kind = SX_KIND_NON_IP;
    return p->kind;
}

/* --- Classification (op25b_classifier.cpp) ------------------------------- */
static __always_inline int port_bit(const __u64 *bitmap, __u16 port)
{
    return (bitmap[(port >> 6) & 1023] >> (port & 63)) & 1;
}

static __always_inline __u8 lookup_class(__u32 set, const struct parsed *p)
{
    __u8 *v;
    if (p->ip_version == 4) {
        struct sx_lpm4_key k = {.prefixlen = 8 + 32, .set = set};
        __builtin_memcpy(k.addr, p->src, 4);
        v = bpf_map_lookup_elem(&subscribers4, &k);
    } else if (p->ip_version == 6) {
        struct sx_lpm6_key k = {.prefixlen = 8 + 128, .set = set};
        __builtin_memcpy(k.addr, p->src, 16);
        v = bpf_map_lookup_elem(&subscribers6, &k);
    } else {
        return SX_CLASS_NONE;
    }
    return v ? *v : SX_CLASS_NONE;
}

static __always_inline int to_relay(__u32 set, const struct parsed *p)
{
    if (p->ip_version == 4) {
        struct sx_lpm4_key k = {.prefixlen = 8 + 32, .set = set};
        __builtin_memcpy(k.addr, p->dst, 4);
        return bpf_map_lookup_elem(&relays4, &k) != 0;
    }
    struct sx_lpm6_key k = {.prefixlen = 8 + 128, .set = set};
    __builtin_memcpy(k.addr, p->dst, 16);
    return bpf_map_lookup_elem(&relays6, &k) != 0;
}

/* classify_op25b(); *cls is the source class when it was looked up. */
static __always_inline int classify(__u32 set, const struct sx_policy_set *ps, const struct parsed *p,
                                    __u32 in, int *cls)
{
    if (in != SX_INGRESS_ACCESS)
        return SX_PASS;
    switch (p->kind) {
    case SX_KIND_IP_TCP:
        if (!port_bit(ps->blocked_ports, p->dst_port))
            return SX_PASS;
        *cls = lookup_class(set, p);
        if (*cls != SX_CLASS_DYNAMIC)
            return SX_PASS;
        if (to_relay(set, p))
            return SX_PASS;
        return SX_BLOCK_PORT;
    case SX_KIND_IP_FIRST_FRAGMENT_INCOMPLETE:
        *cls = lookup_class(set, p);
        if (*cls != SX_CLASS_DYNAMIC)
            return SX_PASS;
        return SX_BLOCK_INCOMPLETE_FRAGMENT;
    case SX_KIND_MALFORMED:
        return SX_DROP_MALFORMED;
    default:
        return SX_PASS;
    }
}

/* --- Events ------------------------------------------------------------------ */
static __always_inline void emit(struct sx_counters *c, const struct sx_policy_set *ps, const struct parsed *p,
                                 __u32 in, __u8 type, __u8 reason, __u8 action)
{
    struct sx_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        c->events_ring_full++;
        return;
    }
    e->time_ns = bpf_ktime_get_ns();
    e->generation = ps->generation;
    e->type = type;
    e->reason = reason;
    e->ip_version = p->ip_version;
    e->ingress = in;
    e->action = action;
    e->cpu = bpf_get_smp_processor_id();
    e->tcp_flags = p->tcp_flags;
    e->pad = 0;
    e->src_port = p->src_port;
    e->dst_port = p->dst_port;
    __builtin_memcpy(e->src, p->src, 16);
    __builtin_memcpy(e->dst, p->dst, 16);
    bpf_ringbuf_submit(e, 0);
    c->events_emitted++;
}

/* --- The reset (tcp_segment.cpp: build_tcp_segment toward the sender) ----- */
static __always_inline __u32 csum_add(__u32 sum, const __u8 *b, int words)
{
    for (int i = 0; i < words; i++)
        sum += (__u32)b[2 * i] << 8 | b[2 * i + 1];
    return sum;
}
static __always_inline __u16 csum_fold(__u32 sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)~sum;
}
static __always_inline void put16(__u8 *b, __u16 v) { b[0] = v >> 8; b[1] = v; }
static __always_inline void put32(__u8 *b, __u32 v) { b[0] = v >> 24; b[1] = v >> 16; b[2] = v >> 8; b[3] = v; }

/* Rewrites the frame into a segment back to its sender with `seq`, `ack`,
 * `flags`, keeping the encapsulation. Returns 0 when the frame is ready for
 * XDP_TX. */
struct reset_spec {
    __u32 seq, ack;
    __u8 flags;
};

static __noinline int rewrite_as_reset(struct xdp_md *ctx, const struct parsed *p, __u32 len,
                                       const struct reset_spec *spec)
{
    __u8 h[60] = {};
    __u32 l3 = p->l3_offset;
    __u32 ip_hdr = p->ip_version == 4 ? 20 : 40;
    __u32 ip_len = ip_hdr + 20;
    __u32 end = l3 + ip_len;
    __u32 frame_len = end < 60 ? 60 : end;
    __u32 pseudo;
    __u8 *tcp;

    if (l3 > 64) /* deeper than 2 tags + PPPoE: never produced by parse_frame */
        return -1;
    if (p->ip_version == 4) {
        h[0] = 0x45;
        put16(h + 2, ip_len);
        put16(h + 6, 0x4000);
        h[8] = 64;
        h[9] = PROTO_TCP;
        __builtin_memcpy(h + 12, p->dst, 4);
        __builtin_memcpy(h + 16, p->src, 4);
        put16(h + 10, csum_fold(csum_add(0, h, 10)));
        pseudo = csum_add(0, h + 12, 4);
        tcp = h + 20;
    } else {
        put32(h, 0x60000000);
        put16(h + 4, 20);
        h[6] = PROTO_TCP;
        h[7] = 64;
        __builtin_memcpy(h + 8, p->dst, 16);
        __builtin_memcpy(h + 24, p->src, 16);
        pseudo = csum_add(0, h + 8, 16);
        tcp = h + 40;
    }
    pseudo += PROTO_TCP + 20;
    put16(tcp, p->dst_port);
    put16(tcp + 2, p->src_port);
    put32(tcp + 4, spec->seq);
    put32(tcp + 8, spec->ack);
    tcp[12] = 5 << 4;
    tcp[13] = spec->flags;
    put16(tcp + 16, csum_fold(csum_add(pseudo, tcp, 10)));

    if (bpf_xdp_adjust_tail(ctx, (int)frame_len - (int)len))
        return -1;
    __u8 macs[12], swapped[12];
    if (bpf_xdp_load_bytes(ctx, 0, macs, 12))
        return -1;
    __builtin_memcpy(swapped, macs + 6, 6);
    __builtin_memcpy(swapped + 6, macs, 6);
    if (bpf_xdp_store_bytes(ctx, 0, swapped, 12))
        return -1;
    if (p->pppoe) {
        __u8 l[2];
        put16(l, (l3 - p->pppoe_offset - 6) + ip_len);
        if (bpf_xdp_store_bytes(ctx, p->pppoe_offset + 4, l, 2))
            return -1;
    }
    if (p->ip_version == 4) {
        if (bpf_xdp_store_bytes(ctx, l3, h, 40))
            return -1;
    } else {
        if (bpf_xdp_store_bytes(ctx, l3, h, 60))
            return -1;
    }
    /* Zero padding up to the Ethernet minimum (at most 60 - 14 - 40 bytes). */
    __u8 zero = 0;
    for (int i = 0; i < 6; i++) {
        if (end + i >= 60)
            break;
        if (bpf_xdp_store_bytes(ctx, end + i, &zero, 1))
            return -1;
    }
    return 0;
}

/* --- Connection limits (mail_tracker.cpp: check() for connections) ------- */
static __always_inline int severity(__u8 a)
{
    switch (a) {
    case SX_LIMIT_MONITOR: return 1;
    case SX_LIMIT_TEMPFAIL: return 2;
    case SX_LIMIT_DROP_SYN: return 3;
    case SX_LIMIT_RESET: return 4;
    }
    return 0;
}

/* The limit action the SYN gets (SX_LIMIT_MONITOR: pass), GCRA per
 * subscriber with the same arithmetic as limit_cell.h's gcra_take(). */
static __noinline int check_conn_limits(const struct sx_policy_set *ps, struct sx_counters *c, const struct parsed *p,
                                        __u32 in, int cls)
{
    int result = SX_LIMIT_MONITOR, acted = 0;
    __u64 now = bpf_ktime_get_ns();
    __u32 n = ps->conn_limit_count;
    for (__u32 i = 0; i < SX_MAX_CONN_LIMITS; i++) {
        if (i >= n)
            break;
        const struct sx_conn_limit *l = &ps->conn_limits[i];
        if (l->target == SX_TARGET_DYNAMIC && cls != SX_CLASS_DYNAMIC)
            continue;
        if (l->target == SX_TARGET_STATIC && cls != SX_CLASS_STATIC)
            continue;
        struct sx_bucket_key k = {.policy_index = l->policy_index, .family = p->ip_version};
        if (p->ip_version == 4) {
            k.length = 32;
            __builtin_memcpy(k.addr, p->src, 4);
        } else {
            __builtin_memcpy(k.addr, p->src, 16);
            k.length = 128;
            if (l->scope == SX_SCOPE_PREFIX) {
                /* subscriber_key::v6(): the delegated prefix only. */
                k.length = ps->ipv6_prefix_length;
                for (int j = 0; j < 16; j++)
                    k.addr[j] &= ps->ipv6_prefix_mask[j];
            }
        }
        struct sx_bucket *b = bpf_map_lookup_elem(&syn_buckets, &k);
        if (!b) {
            struct sx_bucket fresh = {};
            bpf_map_update_elem(&syn_buckets, &k, &fresh, BPF_NOEXIST);
            b = bpf_map_lookup_elem(&syn_buckets, &k);
            if (!b) {
                c->bucket_table_full++;  /* fail open, counted */
                continue;
            }
        }
        /* gcra_take(): compare-and-swap on the theoretical arrival time, so
         * SYNs of one subscriber on several CPUs book exactly. A CPU that
         * loses the race 8 times in a row (8 SYNs of one subscriber at the
         * same instant) counts its SYN as beyond the rate. */
        int exceeded = 1;
        int cooling = *(volatile __u64 *)&b->cooldown_until_ns > now;
        if (!cooling) {
            for (int t = 0; t < 8; t++) {
                __u64 tat = *(volatile __u64 *)&b->tat_ns;
                __u64 base = tat > now ? tat : now;
                if (base - now > l->tolerance_ns)
                    break;
                if (__sync_val_compare_and_swap(&b->tat_ns, tat, base + l->interval_ns) == tat) {
                    exceeded = 0;
                    break;
                }
            }
        }
        if (exceeded && !cooling && l->cooldown_ns)
            *(volatile __u64 *)&b->cooldown_until_ns = now + l->cooldown_ns;
        if (!exceeded)
            continue;
        c->limit_hits[l->policy_index & (SX_MAX_LIMITS - 1)]++;
        emit(c, ps, p, in, SX_EVENT_LIMIT_EXCEEDED, l->policy_index, l->action);
        if (l->action != SX_LIMIT_MONITOR && (!acted || severity(l->action) > severity(result))) {
            result = l->action;
            acted = 1;
        }
    }
    return result;
}

/* --- The program -------------------------------------------------------------- */
SEC("xdp")
int sekisho_xdp(struct xdp_md *ctx)
{
    __u32 zero = 0;
    struct sx_counters *c = bpf_map_lookup_elem(&counters, &zero);
    __u32 *active = bpf_map_lookup_elem(&active_set, &zero);
    if (!c || !active)
        return XDP_PASS;
    __u32 set = *active & 1;
    const struct sx_policy_set *ps = bpf_map_lookup_elem(&policy_sets, &set);
    if (!ps)
        return XDP_PASS;
    __u32 ifindex = ctx->ingress_ifindex;
    __u32 *role = bpf_map_lookup_elem(&interface_roles, &ifindex);
    __u32 in = role && *role == SX_INGRESS_CORE ? SX_INGRESS_CORE : SX_INGRESS_ACCESS;
    struct sx_port_counters *pc = &c->port[in];

    __u32 len = (__u32)(ctx->data_end - ctx->data);
    struct parsed p = {};
    parse_frame(ctx, len, &p);
    pc->rx_packets++;
    pc->rx_bytes += len;
    if (p.kind == SX_KIND_NON_IP)
        pc->non_ip++;
    if (p.fragment)
        pc->fragments++;

    int cls = -1;
    int outcome = classify(set, ps, &p, in, &cls);
    if (p.kind == SX_KIND_MALFORMED) {
        pc->malformed++;
        c->malformed_by_reason[p.error < SX_ERR_COUNT ? p.error : 0]++;
    }
    int enforce = ps->mode == SX_MODE_ENFORCE;

    if (outcome == SX_PASS) {
        /* A client SYN to a mail port: the connection limits. */
        if (in == SX_INGRESS_ACCESS && p.kind == SX_KIND_IP_TCP && ps->conn_limit_count &&
            (p.tcp_flags & TCP_SYN) && !(p.tcp_flags & TCP_ACK) && port_bit(ps->mail_ports, p.dst_port)) {
            if (cls < 0)
                cls = lookup_class(set, &p);
            int a = check_conn_limits(ps, c, &p, in, cls);
            if (a == SX_LIMIT_RESET) {
                /* mail_tracker: a refused SYN gets RST+ACK of seq + 1. */
                struct reset_spec rs = {.seq = 0, .ack = p.seq + 1, .flags = TCP_RST | TCP_ACK};
                if (rewrite_as_reset(ctx, &p, len, &rs) == 0) {
                    c->limit_resets_sent++;
                    pc->limited++;
                    pc->tx_packets++;
                    pc->tx_bytes += ctx->data_end - ctx->data;
                    return XDP_TX;
                }
                pc->reset_failures++;
                pc->limited++;
                return XDP_DROP;
            }
            if (a == SX_LIMIT_DROP_SYN || a == SX_LIMIT_TEMPFAIL) {
                c->syns_dropped++;
                pc->limited++;
                return XDP_DROP;
            }
        }
        pc->forwarded++;
        return XDP_PASS;
    }
    if (outcome == SX_DROP_MALFORMED) {
        if (!enforce) {
            pc->forwarded++;
            return XDP_PASS;
        }
        pc->malformed_dropped++;
        return XDP_DROP;
    }

    __u8 reason = outcome == SX_BLOCK_PORT ? SX_REASON_PORT : SX_REASON_INCOMPLETE_FRAGMENT;
    emit(c, ps, &p, in, enforce ? SX_EVENT_OP25B_BLOCK : SX_EVENT_OP25B_MONITOR, reason, ps->action);
    if (!enforce) {
        pc->monitored++;
        c->monitored_by_reason[reason]++;
        pc->forwarded++;
        return XDP_PASS;
    }
    pc->blocked++;
    c->blocked_by_reason[reason]++;
    if (ps->action == SX_ACTION_RESET && p.kind == SX_KIND_IP_TCP && !(p.tcp_flags & TCP_RST)) {
        /* RFC 9293 sec. 3.10.7.1, as build_tcp_reset(). */
        __u32 seg_len = (__u32)p.l4_len - p.tcp_header_len;
        if (p.tcp_flags & TCP_SYN)
            seg_len++;
        if (p.tcp_flags & TCP_FIN)
            seg_len++;
        struct reset_spec rs = {.seq = 0, .ack = p.seq + seg_len, .flags = TCP_RST | TCP_ACK};
        if (p.tcp_flags & TCP_ACK) {
            rs.seq = p.ack;
            rs.ack = 0;
            rs.flags = TCP_RST;
        }
        if (rewrite_as_reset(ctx, &p, len, &rs) == 0) {
            pc->resets_sent++;
            pc->tx_packets++;
            pc->tx_bytes += ctx->data_end - ctx->data;
            return XDP_TX;
        }
        pc->reset_failures++;
    }
    return XDP_DROP;
}
