// SPDX-License-Identifier: GPL-2.0
/* An XDP program that passes every frame: the e2e tests attach it to the
 * subscriber-side veth peer in native mode. A veth schedules its peer's NAPI
 * after XDP_TX only when the peer has an XDP program; with GRO alone the
 * resets Sekisho sends wait in the peer's ring until its next frame. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
    (void)ctx;
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
