// SPDX-License-Identifier: GPL-2.0
/* The template's MUX: a minimal, stateless DSR load balancer in one XDP program. Copy it and
 * replace it with your stack; it is here to show the shape, not to be good at the job.
 *
 * Attached (native XDP) to the MUX's uplink, the link to the border router. For each frame:
 *
 *   1. IPv4 TCP or UDP to a VIP:port/protocol in tpl_services, or an ICMP error about such a
 *      flow (its server must see it: path MTU discovery)? Anything else (BGP to this MUX,
 *      ARP, IPv6, a ping, another address) is XDP_PASS: the MUX's own kernel takes it.
 *   2. Pick a backend: a hash of the 5-tuple scaled to the VIP's backend count. No connection
 *      table: the same 5-tuple always picks the same backend *while the array stays the same*;
 *      change the array and established connections remap with the hash. What this design
 *      therefore FAILs (docs/targets.md, measured): SC-1 and SC-3 (a scale-out or a drain
 *      breaks connections), SC-2 (scaling the hash to the array is no consistent hash), SF-1
 *      and SF-3 (every spoofed SYN reaches the servers), RB-3 (later fragments have no ports).
 *   3. Push an outer IPv4 header (IPIP, protocol 4): source this MUX's address, destination
 *      the backend, TTL 64, the client's TOS (DSCP and ECN, RFC 6040 normal mode), the
 *      client's DF bit; rewrite Ethernet (source this MUX's MAC, destination the router's);
 *      XDP_TX: back out of the uplink to the router, which routes it to the server. The server
 *      decapsulates (decap.bpf.c) and answers the client directly: direct server return.
 *
 * The Python side (minimal.py) fills tpl_config once and one tpl_services entry per service;
 * a backend change replaces a service's whole entry in one map update, which the kernel
 * swaps in atomically (a hash map update installs a new element; a packet sees the old value
 * or the new one, never a mix). The counters are per-CPU (no atomics on the fast path): the
 * Python side sums them over CPUs.
 *
 * Build-time switches (clang -D, dsrconform.bpf.build.compile_bpf(defines=...)):
 *   MUTANT_OUTER_TOS_ZERO  the mutant "outer-tos-zero": the outer TOS is 0 (violates RW-8);
 *   HASH_L3                the option hash=l3: hash the addresses only, not the ports.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_BACKENDS 64 /* per service; the Python side refuses more */
#define OUTER_TTL 64
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IP_DF 0x4000

/* The MUX itself: one entry, index 0. Addresses in network byte order. */
struct tpl_config {
	__u32 mux_addr;              /* the outer source: this MUX's uplink address */
	__u8 src_mac[ETH_ALEN];      /* this MUX's uplink MAC */
	__u8 dst_mac[ETH_ALEN];      /* the router's MAC on the link: the next hop to any server */
};

/* A service: VIP, port (network byte order), IP protocol. */
struct tpl_service_key {
	__u32 vip;
	__u16 port;
	__u8 proto;
	__u8 pad; /* always 0: the key is hashed as raw bytes */
};

/* A service's active backends (server addresses, network byte order), count of them used. */
struct tpl_backends {
	__u32 count;
	__u32 addr[MAX_BACKENDS];
};

/* The counters, one slot per index per CPU. The Python side names them (minimal.py). */
enum {
	STAT_PASS = 0,     /* not for a VIP:port/protocol we serve: XDP_PASS */
	STAT_ENCAP = 1,    /* encapsulated and sent (XDP_TX) */
	STAT_ENCAP_BYTES = 2, /* their inner IPv4 bytes */
	STAT_DROP = 3,     /* for a service, but could not be sent (no backend, no headroom) */
	STAT_MAX = 4,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tpl_config);
} tpl_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct tpl_service_key);
	__type(value, struct tpl_backends);
} tpl_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} tpl_stats SEC(".maps");

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *slot = bpf_map_lookup_elem(&tpl_stats, &idx);

	if (slot)
		*slot += n; /* per-CPU: no other CPU writes this slot */
}

/* A 32-bit mix (the finaliser of MurmurHash3): every input bit moves every output bit, so
 * flows that differ in one port spread over the backends. Any good hash will do; a real stack
 * would add a random seed so clients cannot aim at one backend. */
static __always_inline __u32 mix(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 flow_hash(__u32 saddr, __u32 daddr, __u32 ports, __u8 proto)
{
#ifdef HASH_L3
	ports = 0; /* hash=l3: every connection of a client address goes to one backend */
#endif
	return mix(mix(mix(saddr ^ proto) ^ daddr) ^ ports);
}

/* One's-complement sum folded to 16 bits, inverted: the IPv4 header checksum. */
static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* An ICMP error about a flow to a VIP (destination unreachable, fragmentation needed among
 * them: path MTU discovery; time exceeded) must reach the server of that flow: the server sent
 * the packet the error is about. The error quotes the server's reply, VIP:port -> client:port;
 * reversed, it is the client's flow, whose service and hash inputs this fills in. Returns 0
 * for such an error, -1 for anything else. Without it, PMTU discovery breaks (RW-6, RW-7). */
static __always_inline int icmp_error_flow(struct iphdr *ip, void *icmp, void *data_end,
					   struct tpl_service_key *key, __u32 *client, __u32 *ports)
{
	__u8 *type = icmp;
	struct iphdr *quoted = icmp + 8; /* after type, code, checksum and 4 bytes */
	__u32 *qports;

	if ((void *)(quoted + 1) > data_end || (*type != 3 && *type != 11))
		return -1;
	if (quoted->ihl < 5 || quoted->saddr != ip->daddr)
		return -1; /* not about a packet from the VIP this error is addressed to */
	if (quoted->protocol != IPPROTO_TCP && quoted->protocol != IPPROTO_UDP)
		return -1;
	qports = (void *)quoted + quoted->ihl * 4;
	if ((void *)(qports + 1) > data_end)
		return -1;
	key->port = *(__u16 *)qports; /* the quoted source port: the VIP's */
	key->proto = quoted->protocol;
	*client = quoted->daddr;
	/* The quoted ports are (VIP port, client port); the client's flow has them swapped. */
	*ports = (*qports >> 16) | (*qports << 16);
	return 0;
}

SEC("xdp")
int tpl_mux(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct tpl_service_key key = {};
	struct tpl_backends *backends;
	struct tpl_config *cfg;
	struct ethhdr *eth = data;
	struct iphdr *ip, *outer;
	__u32 zero = 0, backend, client, ports = 0, ihl, inner_len, count_, idx;
	__u16 *l4, *w, w0, w1, w3, w4;
	__u8 tos;

	/* 1. Parse. The verifier refuses any packet read not proven to lie before data_end. */
	ip = data + sizeof(*eth);
	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		goto pass;
	ihl = ip->ihl;
	if (ip->version != 4 || ihl < 5)
		goto pass;
	l4 = (void *)ip + ihl * 4;
	client = ip->saddr;
	key.vip = ip->daddr;
	key.proto = ip->protocol;
	if (ip->protocol == IPPROTO_ICMP) {
		if (icmp_error_flow(ip, l4, data_end, &key, &client, &ports))
			goto pass;
	} else if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		/* The ports: the first 4 bytes after the IP header (options included). Only a
		 * first fragment (or an unfragmented packet) has them: a later fragment finds no
		 * service (port 0) and is passed to the MUX's kernel, which does not forward it. A
		 * stateless MUX cannot tell which flow a later fragment belongs to (RB-3). */
		if (!(ip->frag_off & bpf_htons(IP_OFFSET))) {
			if ((void *)(l4 + 2) > data_end)
				goto pass;
			key.port = l4[1];     /* destination port */
			ports = *(__u32 *)l4; /* source and destination ports, as in the packet */
		}
	} else {
		goto pass;
	}
	backends = bpf_map_lookup_elem(&tpl_services, &key);
	if (!backends)
		goto pass;
	cfg = bpf_map_lookup_elem(&tpl_config, &zero);
	if (!cfg)
		goto pass;

	/* 2. Pick a backend: the hash scaled to [0, count) (a multiply, not a division). */
	count_ = backends->count;
	if (count_ == 0 || count_ > MAX_BACKENDS)
		goto drop;
	idx = (__u32)(((__u64)flow_hash(client, key.vip, ports, key.proto) * count_) >> 32);
	/* The verifier wants to see the index bounded where it is used; the compiler knows it is
	 * below count and would drop a plain mask, so hide the value from it first. */
	barrier_var(idx);
	backend = backends->addr[idx & (MAX_BACKENDS - 1)];

	/* 3. Encapsulate: what the outer header needs from the inner one, read before the move. */
	tos = ip->tos;
	inner_len = bpf_ntohs(ip->tot_len);
	/* A length the frame does not hold (a hostile packet) would make a malformed outer
	 * header: drop it rather than send it on. */
	if (inner_len < ihl * 4 || inner_len + sizeof(*eth) > ctx->data_end - ctx->data)
		goto drop;
	w3 = ip->frag_off & bpf_htons(IP_DF); /* the client's DF: path MTU discovery keeps working */
	/* Grow the frame at the front by one IPv4 header; the Ethernet header moves with data. */
	if (bpf_xdp_adjust_head(ctx, 0 - (int)sizeof(struct iphdr)))
		goto drop;
	/* adjust_head invalidated every packet pointer: derive and check them again. */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	outer = data + sizeof(*eth);
	if ((void *)(outer + 1) > data_end)
		goto drop;
	__builtin_memcpy(eth->h_dest, cfg->dst_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, cfg->src_mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);
#ifdef MUTANT_OUTER_TOS_ZERO
	tos = 0; /* the bug: the client's DSCP and ECN are lost at the tunnel */
#endif
	/* The outer header as ten 16-bit words, the checksum summed over them as they are built. */
	w0 = bpf_htons(0x4500 | tos);                         /* version 4, IHL 5, TOS */
	w1 = bpf_htons(inner_len + sizeof(struct iphdr));     /* total length */
	w4 = bpf_htons((OUTER_TTL << 8) | IPPROTO_IPIP);      /* TTL, protocol 4 */
	w = (__u16 *)outer;
	w[0] = w0;
	w[1] = w1;
	w[2] = 0; /* identification */
	w[3] = w3;
	w[4] = w4;
	outer->saddr = cfg->mux_addr;
	outer->daddr = backend;
	w[5] = csum_fold((__u32)w0 + w1 + w3 + w4 + (cfg->mux_addr & 0xffff) +
			 (cfg->mux_addr >> 16) + (backend & 0xffff) + (backend >> 16));
	count(STAT_ENCAP, 1);
	count(STAT_ENCAP_BYTES, inner_len);
	return XDP_TX;

pass:
	count(STAT_PASS, 1);
	return XDP_PASS;
drop:
	count(STAT_DROP, 1);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
