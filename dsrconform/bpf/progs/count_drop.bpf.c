// SPDX-License-Identifier: GPL-2.0
/* count_drop: the receiving end of `dsrconform bench mux`. Attached natively to the generator
 * side of the bench veth, it counts every frame that comes back from the device under test
 * (packets and bytes, per CPU; IPv4, bench IPv6 and the rest apart) and drops it.
 *
 * It must be a *native* XDP program for two reasons: native XDP_TX on a veth is delivered only
 * when the peer veth runs native XDP (otherwise the reflected frames are silently lost, see
 * docs/kernel.md "XDP on veth"), and counting here is the only honest figure: the generator's
 * submitted count says nothing about what survived the DUT and the veth rings. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define CD_SLOT_IPV4 0  /* what the IPv4 bench sends and DUTs send back: counted as delivered */
#define CD_SLOT_OTHER 1 /* anything else (IPv6 neighbour discovery of the links coming up) */
#define CD_SLOT_IPV6 2  /* IPv6 but neither ICMPv6 nor hop-by-hop (ND, MLD): the IPv6 bench's */

#define NEXTHDR_HOP 0
#define NEXTHDR_ICMPV6 58

struct dsrc_counter {
	__u64 packets;
	__u64 bytes;
};

/* Per CPU, so no atomics on the hot path; user space sums the CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, struct dsrc_counter);
} dsrc_cd_stats SEC(".maps");

SEC("xdp")
int dsrc_count_drop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 *nexthdr = data + sizeof(*eth) + 6; /* struct ipv6hdr's nexthdr */
	__u32 key = CD_SLOT_OTHER;
	struct dsrc_counter *c;

	/* Bounds check before reading the EtherType: the verifier requires it. */
	if (data + sizeof(*eth) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP))
		key = CD_SLOT_IPV4;
	/* The links' own IPv6 (neighbour discovery is ICMPv6, MLD reports carry a hop-by-hop
	 * router alert) is not the bench's: what the DUT sends back is TCP, IPv6 in IPv6, or UDP. */
	else if ((void *)(nexthdr + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IPV6) &&
		 *nexthdr != NEXTHDR_HOP && *nexthdr != NEXTHDR_ICMPV6)
		key = CD_SLOT_IPV6;
	c = bpf_map_lookup_elem(&dsrc_cd_stats, &key);
	if (c) {
		c->packets++;
		c->bytes += ctx->data_end - ctx->data;
	}
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
