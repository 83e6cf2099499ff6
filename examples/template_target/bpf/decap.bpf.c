// SPDX-License-Identifier: GPL-2.0
/* The template's server side: strip the MUX's outer IPv4 header, in one tc program. Copy it
 * and replace it with your stack's decapsulation.
 *
 * Attached at tc ingress (clsact, direct action) on the server's uplink, at priority 10: after
 * dsrconform's link taps (priority 1), which see every frame as it arrived and pass it on.
 * For each frame:
 *
 *   - IPv4, protocol 4 (IPIP), outer destination this server's address (tpl_decap_config),
 *     outer source one of the MUXes (tpl_muxes): remove the outer header and let the kernel
 *     route the inner packet. Its destination is a VIP, which the lab put on the server's
 *     lo in encap mode: the kernel delivers it to the application listening on VIP:port,
 *     whose reply leaves from the VIP straight to the client (direct server return).
 *   - anything else: TC_ACT_OK, untouched. IPIP from a host that is not a MUX is not
 *     decapsulated (a spoofed tunnel cannot reach the VIPs): the kernel, without an IPIP
 *     module here, drops it.
 *
 * No kernel tunnel device is needed: kernels differ (CONFIG_NET_IPIP may be off), a tc program
 * runs on any kernel with clsact and bpf_skb_adjust_room (5.2 and newer for the flags used).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* This server: one entry, index 0. Network byte order. */
struct tpl_decap_config {
	__u32 server_addr; /* the outer destination it accepts: its own uplink address */
};

enum {
	STAT_DECAP = 0,       /* decapsulated */
	STAT_DECAP_BYTES = 1, /* their inner IPv4 bytes */
	STAT_REFUSED = 2,     /* IPIP to this server from a host that is not a MUX, or malformed */
	STAT_MAX = 3,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tpl_decap_config);
} tpl_decap_config SEC(".maps");

/* The MUX addresses (network byte order) whose tunnels are accepted; the value is unused. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} tpl_muxes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} tpl_decap_stats SEC(".maps");

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *slot = bpf_map_lookup_elem(&tpl_decap_stats, &idx);

	if (slot)
		*slot += n;
}

SEC("tc")
int tpl_decap(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct tpl_decap_config *cfg;
	struct ethhdr *eth = data;
	struct iphdr *outer, *inner;
	__u32 zero = 0;

	outer = data + sizeof(*eth);
	/* Outer and inner headers both in the linear part (a tc program may see a frame whose
	 * headers are not; such a frame is left to the kernel). */
	inner = (void *)(outer + 1);
	if ((void *)(inner + 1) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || outer->protocol != IPPROTO_IPIP)
		return TC_ACT_OK;
	cfg = bpf_map_lookup_elem(&tpl_decap_config, &zero);
	if (!cfg || outer->daddr != cfg->server_addr)
		return TC_ACT_OK; /* not a tunnel to this server */
	/* The MUX writes a 20-byte outer header (IHL 5) around an IPv4 packet, never fragmented
	 * (the MUX links' MTU has room): anything else is not one of ours. */
	if (outer->version != 4 || outer->ihl != 5 || inner->version != 4 ||
	    outer->frag_off & bpf_htons(0x3fff) || !bpf_map_lookup_elem(&tpl_muxes, &outer->saddr)) {
		count(STAT_REFUSED, 1);
		return TC_ACT_SHOT;
	}
	count(STAT_DECAP, 1);
	count(STAT_DECAP_BYTES, bpf_ntohs(inner->tot_len));
	/* Remove the 20 bytes right after the Ethernet header (BPF_ADJ_ROOM_MAC): the outer IPv4
	 * header. The EtherType stays IPv4, which the inner packet is (an IPv6 inner packet would
	 * need BPF_F_ADJ_ROOM_DECAP_L3_IPV6, kernel 6.3+). BPF_F_ADJ_ROOM_FIXED_GSO: a GRO'd
	 * frame's segments keep their size (only the outer headers go), so the kernel must not
	 * grow gso_size by the 20 bytes removed. */
	if (bpf_skb_adjust_room(skb, -(__s32)sizeof(struct iphdr), BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO)) {
		count(STAT_REFUSED, 1);
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK; /* the kernel now routes the inner packet: to the VIP on lo */
}

char LICENSE[] SEC("license") = "GPL";
