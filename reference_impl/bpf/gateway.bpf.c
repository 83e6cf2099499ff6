// SPDX-License-Identifier: GPL-2.0
/* gateway.bpf.c - the egress gateway of the reference DSR stack (gateway-nat mode).
 *
 * Servers answer from their own address; the gateway, on the path from the servers to the
 * clients, rewrites the source (server addr, port, proto) -> (external addr, port) from a static
 * 1:1 table, one for IPv4 and one for IPv6 (a mapping never changes the family). Stateless: correct only while no two VIPs map to the same server port, which is the
 * limitation the mode is there to show. Attach dsrc_gw at the tc ingress of the gateway's
 * server-facing interface (it works at either hook: it only rewrites and returns TC_ACT_OK).
 *
 * Mutant (compile-time, see reference_impl/mutants.py):
 *   MUTANT_GW_NO_L4_CSUM  only the IP header checksum is fixed; TCP/UDP checksums go out stale
 */
#include "dsr_nat.h"

#ifndef MAX_GW_MAPPINGS
#define MAX_GW_MAPPINGS 1024 /* (server, port, proto) -> external mappings */
#endif

#ifdef MUTANT_GW_NO_L4_CSUM
#define GW_CSUM 0
#else
#define GW_CSUM NAT_CSUM_ALL
#endif

/* (server address, server port, proto) -> (external address, external port). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_GW_MAPPINGS);
	__type(key, struct gw_key);
	__type(value, struct gw_value);
} dsrc_gw_map SEC(".maps");

/* Indexed by AGENT_STAT_*; only GW_REWRITE and PASS are used here. */
/* (server IPv6 address, server port, proto) -> (external IPv6 address, external port). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_GW_MAPPINGS);
	__type(key, struct gw6_key);
	__type(value, struct gw6_value);
} dsrc_gw_map6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AGENT_STAT_COUNT);
	__type(key, __u32);
	__type(value, struct counter);
} dsrc_gw_st SEC(".maps");

static __always_inline int pass(struct __sk_buff *skb)
{
	stat_add(&dsrc_gw_st, AGENT_STAT_PASS, skb->len);
	return TC_ACT_OK;
}

static __always_inline int gw4(struct __sk_buff *skb, struct cursor *c)
{
	struct gw_key key = {};
	struct gw_value *ext;
	struct l4_info l4;
	struct iphdr *ip;
	__u32 new_addr;
	__u16 new_port;

	ip = parse_ipv4(c);
	/* Later fragments have no ports to match: they pass with the server address (a known
	 * limit of stateless port-based rewriting). */
	if (!ip || ipv4_later_fragment(ip))
		return pass(skb);
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return pass(skb);
	if (parse_l4(c, ip->protocol, ETH_HLEN + (__u32)ip->ihl * 4, &l4))
		return pass(skb);

	key.addr = ip->saddr;
	key.port = l4.sport;
	key.proto = l4.proto;
	ext = bpf_map_lookup_elem(&dsrc_gw_map, &key);
	if (!ext)
		return pass(skb);
	new_addr = ext->addr;
	new_port = ext->port;
	if (rewrite_endpoint(skb, ETH_HLEN, &l4, true, key.addr, new_addr, key.port, new_port,
			     GW_CSUM))
		return TC_ACT_SHOT;
	stat_add(&dsrc_gw_st, AGENT_STAT_GW_REWRITE, skb->len);
	return TC_ACT_OK;
}

static __always_inline int gw6(struct __sk_buff *skb, struct cursor *c)
{
	struct gw6_key key = {};
	struct gw6_value *ext;
	struct ipv6hdr *ip6;
	struct l4_info l4;
	__u32 new_addr[4];
	__u16 new_port;

	ip6 = parse_ipv6(c);
	/* Extension headers (a Fragment header among them) hide the ports: such packets pass, as
	 * IPv4's later fragments do. */
	if (!ip6 || (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP))
		return pass(skb);
	if (parse_l4(c, ip6->nexthdr, ETH_HLEN + sizeof(struct ipv6hdr), &l4))
		return pass(skb);

	addr6_copy(key.addr, &ip6->saddr);
	key.port = l4.sport;
	key.proto = l4.proto;
	ext = bpf_map_lookup_elem(&dsrc_gw_map6, &key);
	if (!ext)
		return pass(skb);
	addr6_copy(new_addr, ext->addr);
	new_port = ext->port;
	/* Refused (dropped) only for a UDP datagram without checksum, which IPv6 forbids. */
	if (rewrite_endpoint6(skb, ETH_HLEN, &l4, true, key.addr, new_addr, key.port, new_port,
			      GW_CSUM))
		return TC_ACT_SHOT;
	stat_add(&dsrc_gw_st, AGENT_STAT_GW_REWRITE, skb->len);
	return TC_ACT_OK;
}

SEC("tc")
int dsrc_gw(struct __sk_buff *skb)
{
	struct cursor c;
	int proto;

	cursor_init(&c, skb);
	proto = parse_eth(&c);
	if (proto == bpf_htons(ETH_P_IP))
		return gw4(skb, &c);
	if (proto == bpf_htons(ETH_P_IPV6))
		return gw6(skb, &c);
	return pass(skb);
}

char LICENSE[] SEC("license") = "GPL";
