/* mux_ipv6.h - the IPv6 half of the reference MUX (included by mux.bpf.c, after the helpers that
 * both halves share: counters, the VIP state word, pick_backend).
 *
 * An IPv6 packet to a VIP service goes the IPv4 way: the connection table (dsrc_conn6), then the
 * VIP's Maglev table indexed by flow_hash6() over all 128 bits of both addresses, and out in an
 * outer IPv6 header (next header 41, IPv6-in-IPv6) toward the server's IPv6 address. The outer
 * header: payload length = the whole inner packet, hop limit = the MUX's ttl, traffic class
 * copied from the inner packet, flow label = the low 20 bits of the flow hash (so routers that
 * spread by flow label keep one flow on one path). IPv4 VIPs whose backends are IPv6 use the
 * same outer header with next header 4 (IPv4-in-IPv6).
 *
 * Only TCP, UDP and ICMPv6 directly after the fixed header are load-balanced: a VIP packet with
 * any extension header (a Fragment header included) has no ports where the hash needs them and
 * is dropped and counted, never forwarded on a guessed port. ICMPv6 errors (destination
 * unreachable, packet too big, time exceeded, parameter problem) about a VIP flow are steered by
 * their embedded header, reversed, to that flow's server, as IPv4's ICMP errors are.
 *
 * Tables: IPv6 services in a hash map (dsrc_vip6) beside IPv4's perfect-hash slots; the VIP
 * index space, Maglev tables, state words and backend indices are shared with IPv4.
 */
#ifndef MUX_IPV6_H
#define MUX_IPV6_H

#include <linux/ipv6.h>

#define NEXTHDR_FRAGMENT 44
#define IPPROTO_ICMPV6_ 58 /* spelled out: <linux/in6.h> defines it only as an enum */
#define ICMPV6_ERROR_MIN 1 /* destination unreachable */
#define ICMPV6_ERROR_MAX 4 /* parameter problem; 2 = packet too big, 3 = time exceeded */
#define FLOW_LABEL_MASK 0xfffff
#define IPV6_MAX_PAYLOAD 65535

/* ---- maps (programmed by reference_impl/mux.py) ---- */

/* IPv6 (vip, port, proto) -> service. A hash map: the services are few and an entry is written in
 * one update, so a packet sees a service's old meta or its new one. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct vip6_key);
	__type(value, struct vip_meta);
} dsrc_vip6 SEC(".maps");

/* IPv6 VIP addresses alone (16 bytes, network order): classifies ICMPv6, fragments, extension
 * headers and cut ports, which have no usable port. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VIPS);
	__uint(key_size, 16);
	__uint(value_size, 4);
} dsrc_vip6_addrs SEC(".maps");

/* The IPv6 address of backend index i (see BACKEND6_TAG); zero for IPv4 backends. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend6);
} dsrc_backends6 SEC(".maps");

/* The IPv6 connection table: a second LRU, so IPv4's 16-byte key and fast path stay as they are;
 * sized like dsrc_conn at load time. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DEFAULT_CONN_ENTRIES);
	__type(key, struct flow_key6);
	__type(value, struct conn_value);
} dsrc_conn6 SEC(".maps");

/* ---- helpers ---- */

/* Is this backend address (network order, from dsrc_backends) an IPv6 server's tag? */
static __always_inline int is_backend6(__u32 addr)
{
	return (addr & bpf_htonl(BACKEND6_TAG)) == bpf_htonl(BACKEND6_TAG); /* no byte swap */
}

static __always_inline __u32 flow_hash6_of(const struct flow_key6 *fk, const struct mux_config *cfg)
{
	__u32 s[4] = {bpf_ntohl(fk->saddr[0]), bpf_ntohl(fk->saddr[1]), bpf_ntohl(fk->saddr[2]),
		      bpf_ntohl(fk->saddr[3])};
	__u32 d[4] = {bpf_ntohl(fk->daddr[0]), bpf_ntohl(fk->daddr[1]), bpf_ntohl(fk->daddr[2]),
		      bpf_ntohl(fk->daddr[3])};

	return flow_hash6(s, d, bpf_ntohs(fk->sport), bpf_ntohs(fk->dport), fk->proto,
			  hash_seed(cfg));
}

/* The traffic class of an IPv6 header (its first word: version 4, class 8, label 20 bits). */
static __always_inline __u8 traffic_class(const struct ipv6hdr *ip6)
{
	return (bpf_ntohl(*(const __u32 *)ip6) >> 20) & 0xff;
}

/* The IPv6 service (vip, port, proto), or NULL. addr points at 16 bytes (network order). */
static __always_inline struct vip_meta *find_vip6(const void *addr, __u16 port, __u8 proto)
{
	struct vip6_key k = {.port = port, .proto = proto};

	__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&dsrc_vip6, &k);
}

/* Prepend an outer IPv6 header (next header nexthdr: 41 for IPv6, 4 for IPv4 inside) and a new
 * Ethernet header toward the IPv6 server tagged be, then send the frame back out. */
static __always_inline int encap6_and_tx(struct xdp_md *ctx, const struct mux_config *cfg, __u32 be,
					 __u32 inner_len, __u8 tclass, __u32 label, __u8 nexthdr)
{
	__u32 idx = bpf_ntohl(be) & BACKEND6_INDEX_MASK, plen;
	struct backend6 *server = bpf_map_lookup_elem(&dsrc_backends6, &idx);
	void *data, *data_end;
	struct ethhdr *eth;
	__u32 *outer;

	if (!server)
		return drop(STAT_DROP_NO_BACKEND, inner_len);
	/* The outer payload length is 16 bits; no jumbograms. */
	if (inner_len > IPV6_MAX_PAYLOAD ||
	    (cfg->mtu && inner_len + sizeof(struct ipv6hdr) > cfg->mtu))
		return drop(STAT_DROP_TOO_BIG, inner_len);
	if (bpf_xdp_adjust_head(ctx, 0 - (int)sizeof(struct ipv6hdr)))
		return drop(STAT_DROP_ENCAP, inner_len);
	/* adjust_head invalidated every packet pointer: re-derive and re-check them. */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	outer = data + sizeof(struct ethhdr);
	if ((void *)outer + sizeof(struct ipv6hdr) > data_end)
		return drop(STAT_DROP_ENCAP, inner_len);
	__builtin_memcpy(eth->h_dest, cfg->dst_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, cfg->src_mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IPV6);
#ifdef MUTANT_V6_OUTER_PLEN
	/* The bug: the inner header's own payload length, as if the inner header were not payload. */
	plen = inner_len - (nexthdr == IPPROTO_IPV6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr));
#else
	plen = inner_len;
#endif
	outer[0] = bpf_htonl(0x60000000 | ((__u32)tclass << 20) | (label & FLOW_LABEL_MASK));
	outer[1] = bpf_htonl((plen << 16) | ((__u32)nexthdr << 8) | cfg->ttl);
	__builtin_memcpy(&outer[2], cfg->mux_addr6, 16);
	__builtin_memcpy(&outer[6], server->addr, 16);
	return XDP_TX;
}

/* Forward a valid IPv6 VIP packet to server be (an IPv6 server's tag), or drop it. */
static __always_inline int forward6(struct xdp_md *ctx, const struct ipv6hdr *ip6,
				    const struct mux_config *cfg, __u32 be, __u32 vip_index,
				    __u32 len, __u32 h)
{
	if (!be || !is_backend6(be)) /* an IPv6 VIP has IPv6 servers only (the control plane) */
		return drop(STAT_DROP_NO_BACKEND, len);
	if (encap6_and_tx(ctx, cfg, be, len, traffic_class(ip6), h, IPPROTO_IPV6) != XDP_TX)
		return XDP_DROP; /* counted by encap6_and_tx */
	if (vip_index < MAX_VIPS)
		count(STAT_VIP_BASE + vip_index, len);
	return XDP_TX;
}

/* The checks every IPv6 packet to a VIP service passes before it is forwarded (its next header
 * is TCP or UDP). Returns 0 and sets *len (the whole IPv6 packet), or the STAT_DROP_* reason. */
static __always_inline __u32 vip6_packet_problem(const struct ipv6hdr *ip6, void *data_end,
						 __u32 *len)
{
	__u32 l4_min;

	if (ip6->version != 6)
		return STAT_DROP_BAD_VERSION;
	*len = bpf_ntohs(ip6->payload_len) + sizeof(struct ipv6hdr);
	if ((void *)ip6 + *len > data_end)
		return STAT_DROP_IP_TRUNCATED;
	if (ip6->nexthdr == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)(ip6 + 1);

		if ((void *)(tcp + 1) > data_end || tcp->doff < 5)
			return STAT_DROP_L4_TRUNCATED;
		l4_min = tcp->doff * 4;
	} else {
		if ((void *)(ip6 + 1) + sizeof(struct udphdr) > data_end)
			return STAT_DROP_L4_TRUNCATED;
		l4_min = sizeof(struct udphdr);
	}
	/* The L4 header must also lie inside the IP packet, not just inside the frame. */
	if (sizeof(struct ipv6hdr) + l4_min > *len)
		return STAT_DROP_L4_TRUNCATED;
	return 0;
}

/* ICMPv6 error to a VIP: the embedded header is the server's reply (VIP:port -> client:port);
 * reverse it to find the client->VIP flow. len: the whole ICMPv6 packet, inside the frame. */
static __always_inline int handle_icmp6(struct xdp_md *ctx, struct ipv6hdr *ip6, void *data_end,
					const struct mux_config *cfg, __u32 len)
{
	struct icmphdr *icmp = (void *)(ip6 + 1); /* ICMPv6 shares ICMP's first 8 bytes' shape */
	struct ipv6hdr *inner;
	struct flow_key6 fk = {};
	struct vip_meta *vm;
	__be16 *ports;
	__u32 be, state, h;

	if ((void *)(icmp + 1) > data_end)
		return drop(STAT_DROP_L4_TRUNCATED, len);
	if (icmp->type < ICMPV6_ERROR_MIN || icmp->type > ICMPV6_ERROR_MAX)
		goto pass; /* echo, neighbour discovery and friends are for the MUX's own stack */
	inner = (void *)(icmp + 1);
	ports = (void *)(inner + 1);
	/* Need the embedded IPv6 header plus the first 4 bytes of its L4 header (the ports). */
	if ((void *)(ports + 2) > data_end)
		return drop(STAT_DROP_ICMP_MALFORMED, len);
	if (inner->nexthdr != IPPROTO_TCP && inner->nexthdr != IPPROTO_UDP)
		goto pass;
	vm = find_vip6(&inner->saddr, ports[0], inner->nexthdr);
	if (!vm)
		goto pass;
#ifdef MUTANT_V6_PTB_OUTER
	/* The bug: the error steered by its own (router -> VIP) header, not the flow it is about. */
	__builtin_memcpy(fk.saddr, &ip6->saddr, 16);
	__builtin_memcpy(fk.daddr, &ip6->daddr, 16);
	fk.proto = IPPROTO_ICMPV6_;
#else
	__builtin_memcpy(fk.saddr, &inner->daddr, 16);
	__builtin_memcpy(fk.daddr, &inner->saddr, 16);
	fk.sport = ports[1];
	fk.dport = ports[0];
	fk.proto = inner->nexthdr;
#endif
	state = vip_state(vm->vip_index);
	if (!(state >> VIP_STATE_GEN_SHIFT))
		goto pass; /* being removed */
	h = flow_hash6_of(&fk, cfg);
	/* An error never creates flow state, and always consults the connection table. */
	be = pick_backend(&dsrc_conn6, &fk, h, vm, cfg, state, 1, 0, len);
	if (!be || !is_backend6(be))
		return drop(STAT_DROP_NO_BACKEND, len);
	if (encap6_and_tx(ctx, cfg, be, len, traffic_class(ip6), h, IPPROTO_IPV6) != XDP_TX)
		return XDP_DROP; /* counted by encap6_and_tx */
	count(STAT_GLOBAL_BASE + STAT_ICMP_FORWARDED, len);
	return XDP_TX;
pass:
	count(STAT_GLOBAL_BASE + STAT_PASS, 0);
	return XDP_PASS;
}

/* Every frame with EtherType IPv6. */
static __always_inline int mux_ipv6(struct xdp_md *ctx, void *data, void *data_end)
{
	struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
	struct flow_key6 fk = {};
	struct mux_config *cfg;
	struct vip_meta *vm;
	__be16 *ports;
	__u32 zero = 0, problem, state, be, h, len = 0;
	int bare_syn = 0, looked_up = 0;

	if ((void *)(ip6 + 1) > data_end)
		return drop(STAT_DROP_IP_TRUNCATED, 0);
	ports = (void *)(ip6 + 1);

	/* TCP/UDP right after the fixed header, ports inside the frame: the IPv4 fast path's shape. */
	if ((ip6->nexthdr == IPPROTO_TCP || ip6->nexthdr == IPPROTO_UDP) &&
	    (void *)(ports + 2) <= data_end) {
		cfg = bpf_map_lookup_elem(&dsrc_cfg, &zero);
		if (!cfg)
			return XDP_ABORTED;
		__builtin_memcpy(fk.saddr, &ip6->saddr, 16);
		__builtin_memcpy(fk.daddr, &ip6->daddr, 16);
		fk.sport = ports[0];
		fk.dport = ports[1];
		fk.proto = ip6->nexthdr;
		if (ip6->nexthdr == IPPROTO_TCP) {
			struct tcphdr *tcp = (void *)(ip6 + 1);

			/* A SYN alone never creates state (the SYN-flood policy in mux.bpf.c). */
			if ((void *)(tcp + 1) <= data_end && tcp->syn && !tcp->ack)
				bare_syn = 1;
		}
#ifndef MUTANT_NO_CONN_TABLE
		if (!bare_syn) {
			struct conn_value *cv = bpf_map_lookup_elem(&dsrc_conn6, &fk);
			__u32 idx;

			looked_up = 1;
			be = cv ? conn_backend(cv, &idx) : 0;
			if (be) {
				problem = vip6_packet_problem(ip6, data_end, &len);
				if (problem)
					return drop(problem, len);
				count_hit(idx, len);
				return forward6(ctx, ip6, cfg, be, cv->vip_index, len,
						flow_hash6_of(&fk, cfg));
			}
		}
#endif
		vm = find_vip6(fk.daddr, fk.dport, fk.proto);
		if (!vm)
			goto pass;
		problem = vip6_packet_problem(ip6, data_end, &len);
		if (problem)
			return drop(problem, len);
		state = vip_state(vm->vip_index);
#ifdef MUTANT_SYN_SKIPS_TABLE
		state &= ~VIP_STATE_SYN_LOOKUP;
#endif
		h = flow_hash6_of(&fk, cfg);
		be = pick_backend(&dsrc_conn6, &fk, h, vm, cfg, state,
				  !looked_up && (state & VIP_STATE_SYN_LOOKUP),
#ifdef MUTANT_UNBOUNDED_INSERTS
				  1,
#else
				  !bare_syn,
#endif
				  len);
		return forward6(ctx, ip6, cfg, be, vm->vip_index, len, h);
	}

	/* Other shapes (ICMPv6, extension headers, fragments, cut ports) need the VIP address set. */
	if (!bpf_map_lookup_elem(&dsrc_vip6_addrs, &ip6->daddr))
		goto pass;
	if (ip6->version != 6)
		return drop(STAT_DROP_BAD_VERSION, 0);
	len = bpf_ntohs(ip6->payload_len) + sizeof(struct ipv6hdr);
	if ((void *)ip6 + len > data_end)
		return drop(STAT_DROP_IP_TRUNCATED, 0);
	if (ip6->nexthdr == NEXTHDR_FRAGMENT)
		return drop(STAT_DROP_FRAGMENT, len);
	if (ip6->nexthdr == IPPROTO_ICMPV6_) {
		cfg = bpf_map_lookup_elem(&dsrc_cfg, &zero);
		if (!cfg)
			return XDP_ABORTED;
		return handle_icmp6(ctx, ip6, data_end, cfg, len);
	}
	if (ip6->nexthdr == IPPROTO_TCP || ip6->nexthdr == IPPROTO_UDP)
		return drop(STAT_DROP_L4_TRUNCATED, len); /* the ports are cut off */
	return drop(STAT_DROP_IPV6_EXTHDR, len);
pass:
	count(STAT_GLOBAL_BASE + STAT_PASS, 0);
	return XDP_PASS;
}

#endif /* MUX_IPV6_H */
