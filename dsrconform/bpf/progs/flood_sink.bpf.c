// SPDX-License-Identifier: GPL-2.0
/* flood_sink: the receiving end of a SYN flood under test (dsrconform/traffic/synflood.py, its
 * integration test, and `dsrconform bench traffic`). Attached natively to the peer of the
 * flooding interface, it classifies every frame, counts it (packets and bytes, per CPU) and
 * drops it:
 *
 * - FS_SLOT_SYN: the flood's shape exactly: IPv4 without options, total length 40, TCP without
 *   options, flags SYN only, source inside the configured network, destination the configured
 *   address and port, and both checksums correct;
 * - FS_SLOT_BAD_CSUM: that shape, but the IPv4 or the TCP checksum is wrong (a router or a MUX
 *   would drop it: a flood of those floods nothing);
 * - FS_SLOT_OTHER_IPV4: any other IPv4 frame (a source outside the range, another destination,
 *   other flags, another length);
 * - FS_SLOT_NON_IPV4: the rest (IPv6 neighbour discovery of the link coming up).
 *
 * Being native XDP it also enables the veth's NAPI, which live-frames XDP_TX from the peer
 * needs to be delivered at all (docs/kernel.md, "XDP on veth"). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define FS_SLOT_SYN 0
#define FS_SLOT_BAD_CSUM 1
#define FS_SLOT_OTHER_IPV4 2
#define FS_SLOT_NON_IPV4 3
#define FS_SLOTS 4

struct dsrc_fs_counter {
	__u64 packets;
	__u64 bytes;
};

/* What the flood must look like; every field in network byte order. */
struct dsrc_fs_config {
	__u32 src_net;  /* source network address (already masked) */
	__u32 src_mask; /* its netmask */
	__u32 dst;      /* the VIP */
	__u16 dport;    /* the VIP's port */
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FS_SLOTS);
	__type(key, __u32);
	__type(value, struct dsrc_fs_counter);
} dsrc_fs_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dsrc_fs_config);
} dsrc_fs_cfg SEC(".maps");

static __always_inline __u32 fold(__s64 sum)
{
	__u32 s = (__u32)sum;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return s;
}

static __always_inline __u32 classify(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct tcphdr *tcp = data + ETH_HLEN + sizeof(*ip);
	__u32 key = 0, pseudo;
	struct dsrc_fs_config *cfg;
	__u8 flags;

	if (data + sizeof(*eth) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return FS_SLOT_NON_IPV4;
	/* One bound for the whole fixed shape: Ethernet + 20 bytes IPv4 + 20 bytes TCP. */
	if ((void *)(tcp + 1) > data_end)
		return FS_SLOT_OTHER_IPV4;
	cfg = bpf_map_lookup_elem(&dsrc_fs_cfg, &key);
	if (!cfg)
		return FS_SLOT_OTHER_IPV4;
	flags = ((__u8 *)tcp)[13];
	if (ip->ihl != 5 || ip->protocol != IPPROTO_TCP || ip->tot_len != bpf_htons(40) ||
	    tcp->doff != 5 || (flags & 0x17) != 0x02 /* FIN, SYN, RST, ACK: SYN only */ ||
	    (ip->saddr & cfg->src_mask) != cfg->src_net || ip->daddr != cfg->dst ||
	    tcp->dest != cfg->dport)
		return FS_SLOT_OTHER_IPV4;
	/* A correct Internet checksum makes the covered words sum to 0xffff. */
	if (fold(bpf_csum_diff(0, 0, (__be32 *)ip, sizeof(*ip), 0)) != 0xffff)
		return FS_SLOT_BAD_CSUM;
	/* TCP: the pseudo-header (addresses, protocol, TCP length) seeds the sum. One's-complement
	 * sums do not depend on byte order, so the network-order words are added as they are. */
	pseudo = fold((__u64)(ip->saddr & 0xffff) + (ip->saddr >> 16) + (ip->daddr & 0xffff) +
		      (ip->daddr >> 16) + bpf_htons(IPPROTO_TCP) + bpf_htons(sizeof(*tcp)));
	if (fold(bpf_csum_diff(0, 0, (__be32 *)tcp, sizeof(*tcp), pseudo)) != 0xffff)
		return FS_SLOT_BAD_CSUM;
	return FS_SLOT_SYN;
}

SEC("xdp")
int dsrc_flood_sink(struct xdp_md *ctx)
{
	__u32 key = classify(ctx);
	struct dsrc_fs_counter *c = bpf_map_lookup_elem(&dsrc_fs_stats, &key);

	if (c) {
		c->packets++;
		c->bytes += ctx->data_end - ctx->data;
	}
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
