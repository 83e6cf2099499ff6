// SPDX-License-Identifier: GPL-2.0
/* agent.bpf.c - the server agent of the reference DSR stack: two tc (clsact, direct-action)
 * programs on the server's interface toward the router.
 *
 * dsrc_agent_in (ingress): decapsulates IPIP, IPv6-in-IPv6 (next header 41) and IPv4-in-IPv6 (next
 *   header 4) sent by one of the stack's MUXes (the kernel here has no ipip or ip6_tunnel module,
 *   so this is the only decapsulation there is). In server-nat mode it then rewrites VIP:port to
 *   this server's address:app port (of the inner packet's family) and remembers the flow, keyed
 *   as its replies will look.
 * dsrc_agent_eg (egress, server-nat only): rewrites replies back to the VIP:port the flow came
 *   through, so a client of a per-MUX VIP gets its answers from that VIP.
 *
 * Mutants (compile-time, see reference_impl/mutants.py):
 *   MUTANT_NAT_NO_PSEUDO_HDR  address change folded into the L4 checksum without
 *                             BPF_F_PSEUDO_HDR (wrong for CHECKSUM_PARTIAL and COMPLETE skbs)
 *   MUTANT_UDP_ZERO_CSUM      a UDP checksum of 0 ("none") is updated as if it were real
 *   MUTANT_NAT_WRONG_VIP      replies go out from the first VIP configured for the service
 *   MUTANT_DECAP_ANY_SOURCE   IPIP (and IPv6 encapsulation) from any source is decapsulated
 *   MUTANT_NAT_SVC_NO_PROTO   services found by VIP and port alone (TCP's wins a shared one)
 *   MUTANT_NAT_CSUM_LOW32     IPv6 NAT folds only the low 32 bits of the addresses into the
 *                             TCP/UDP checksum
 */
#include "dsr_nat.h"

#ifndef MAX_NAT_SERVICES
#define MAX_NAT_SERVICES 256   /* VIP:port -> app port translations per server */
#endif
#ifndef NAT_FLOW_ENTRIES
#define NAT_FLOW_ENTRIES 65536 /* remembered server-nat flows; resized at load time */
#endif

#if defined(MUTANT_NAT_NO_PSEUDO_HDR)
#define AGENT_CSUM (NAT_CSUM_ALL & ~NAT_PSEUDO_HDR)
#elif defined(MUTANT_UDP_ZERO_CSUM)
#define AGENT_CSUM (NAT_CSUM_ALL & ~NAT_UDP_ZERO)
#elif defined(MUTANT_NAT_CSUM_LOW32)
#define AGENT_CSUM (NAT_CSUM_ALL & ~NAT_ADDR6_FULL)
#else
#define AGENT_CSUM NAT_CSUM_ALL
#endif

/* Mode and own address, written once by the control plane. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct agent_config);
} dsrc_agent_cfg SEC(".maps");

/* Outer source addresses whose IPIP we decapsulate: only the stack's MUXes may inject traffic
 * for the VIPs past the load balancer. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_MUXES);
	__type(key, __u32);
	__type(value, __u32);
} dsrc_muxes SEC(".maps");

/* server-nat: (VIP, port, proto) delivered by a MUX -> (server address, app port). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NAT_SERVICES);
	__type(key, struct nat_service_key);
	__type(value, struct nat_service);
} dsrc_nat_svc SEC(".maps");

/* server-nat: flows seen at ingress, keyed as their replies look at egress. LRU: a flow that
 * stops sending is forgotten eventually without a control-plane sweep. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NAT_FLOW_ENTRIES);
	__type(key, struct nat_flow_key);
	__type(value, struct nat_flow);
} dsrc_nat_flows SEC(".maps");

/* server-nat: (server address, app port, proto) -> the first VIP:port configured for it. The
 * correct program uses it only to tell "reply of a NAT service without a flow" (SNAT_MISS) from
 * other traffic; MUTANT_NAT_WRONG_VIP also rewrites replies to it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NAT_SERVICES);
	__type(key, struct gw_key);
	__type(value, struct gw_value);
} dsrc_nat_first SEC(".maps");

/* The IPv6 counterparts of dsrc_muxes, dsrc_nat_svc, dsrc_nat_flows and dsrc_nat_first. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_MUXES);
	__type(key, struct mux6_key);
	__type(value, __u32);
} dsrc_muxes6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NAT_SERVICES);
	__type(key, struct nat_service6_key);
	__type(value, struct nat_service6);
} dsrc_nat_svc6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NAT_FLOW_ENTRIES);
	__type(key, struct nat_flow6_key);
	__type(value, struct nat_flow6);
} dsrc_nat_flows6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NAT_SERVICES);
	__type(key, struct gw6_key);
	__type(value, struct gw6_value);
} dsrc_nat_first6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AGENT_STAT_COUNT);
	__type(key, __u32);
	__type(value, struct counter);
} dsrc_agent_st SEC(".maps");

static __always_inline int verdict(struct __sk_buff *skb, __u32 stat, int action)
{
	stat_add(&dsrc_agent_st, stat, skb->len);
	return action;
}

static __always_inline bool nat_mode(void)
{
	__u32 zero = 0;
	struct agent_config *cfg = bpf_map_lookup_elem(&dsrc_agent_cfg, &zero);

	return cfg && cfg->mode == MODE_SERVER_NAT;
}

/* True when the inner packet at the cursor (just past the outer header) is too short to be
 * delivered: its IPv4 header, or in server-nat mode the TCP/UDP header we must rewrite. */
static __always_inline bool inner_malformed(struct cursor *c, bool nat)
{
	struct l4_info l4;
	struct iphdr *ip = parse_ipv4(c);

	if (!ip)
		return true;
	if (!nat || ipv4_later_fragment(ip))
		return false;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return false;
	return parse_l4(c, ip->protocol, 0, &l4) != 0;
}

/* Records (or refreshes) the flow so that egress can find its VIP. Only written when missing or
 * changed: an update per packet would churn the LRU and cost a hash insert each time. */
static __always_inline void remember_flow(const struct nat_flow_key *key, const struct nat_flow *val)
{
	struct nat_flow *cur = bpf_map_lookup_elem(&dsrc_nat_flows, key);

	if (cur && cur->vip == val->vip && cur->vport == val->vport &&
	    cur->mux_addr == val->mux_addr && addr6_eq(cur->mux_addr6, val->mux_addr6))
		return;
	bpf_map_update_elem(&dsrc_nat_flows, key, val, BPF_ANY);
}

/* server-nat ingress on the decapsulated packet: VIP:port -> server address:app port. The MUX is
 * mux (IPIP) or mux6 (IPv4-in-IPv6; NULL for IPIP). */
static __always_inline int dnat_to_server(struct __sk_buff *skb, __u32 mux, const __u32 *mux6)
{
	struct nat_service_key skey = {};
	struct nat_flow_key fkey = {};
	struct nat_flow flow = {};
	struct nat_service *svc;
	struct l4_info l4;
	struct cursor c;
	struct iphdr *ip;
	__u32 l4_off;

	cursor_init(&c, skb);
	if (parse_eth(&c) != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ip = parse_ipv4(&c);
	/* Already validated before decapsulation; these only satisfy the verifier. */
	if (!ip || ipv4_later_fragment(ip))
		return TC_ACT_OK;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	l4_off = ETH_HLEN + (__u32)ip->ihl * 4;
	if (parse_l4(&c, ip->protocol, l4_off, &l4))
		return verdict(skb, AGENT_STAT_MALFORMED, TC_ACT_SHOT);

	skey.vip = ip->daddr;
	skey.vport = l4.dport;
#ifdef MUTANT_NAT_SVC_NO_PROTO
	/* Services as if keyed by VIP and port alone: the TCP service of a VIP:port answers for
	 * a UDP one there too (a service alone on its VIP:port is still found). */
	skey.proto = IPPROTO_TCP;
	svc = bpf_map_lookup_elem(&dsrc_nat_svc, &skey);
	skey.proto = l4.proto;
	if (!svc)
		svc = bpf_map_lookup_elem(&dsrc_nat_svc, &skey);
#else
	skey.proto = l4.proto;
	svc = bpf_map_lookup_elem(&dsrc_nat_svc, &skey);
#endif
	if (!svc)
		return TC_ACT_OK;

	fkey.local_addr = svc->addr;
	fkey.local_port = svc->port;
	fkey.remote_addr = ip->saddr;
	fkey.remote_port = l4.sport;
	fkey.proto = l4.proto;
	flow.vip = ip->daddr;
	flow.vport = l4.dport;
	flow.mux_addr = mux;
	if (mux6)
		addr6_copy(flow.mux_addr6, mux6);
	remember_flow(&fkey, &flow);

	if (rewrite_endpoint(skb, ETH_HLEN, &l4, false, flow.vip, fkey.local_addr, flow.vport,
			     fkey.local_port, AGENT_CSUM))
		return verdict(skb, AGENT_STAT_MALFORMED, TC_ACT_SHOT);
	return verdict(skb, AGENT_STAT_DNAT, TC_ACT_OK);
}

/* IPIP: the outer IPv4 header is at the cursor. */
static __always_inline int agent_in4(struct __sk_buff *skb, struct cursor *c)
{
	struct iphdr *outer = parse_ipv4(c);
	__u32 mux;
	bool nat;

	if (!outer || outer->protocol != IPPROTO_IPIP)
		return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);
	mux = outer->saddr;
#ifndef MUTANT_DECAP_ANY_SOURCE
	if (!bpf_map_lookup_elem(&dsrc_muxes, &mux))
		return verdict(skb, AGENT_STAT_FOREIGN_IPIP, TC_ACT_OK);
#endif
	/* Our MUXes send a bare 20-byte outer header and never fragment it; anything else is not
	 * theirs to decapsulate, and stripping exactly 20 bytes would leave options behind. */
	if (outer->ihl != 5 || ipv4_any_fragment(outer))
		return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);

	nat = nat_mode();
	if (inner_malformed(c, nat))
		return verdict(skb, AGENT_STAT_MALFORMED, TC_ACT_SHOT);
	/* BPF_ADJ_ROOM_MAC removes the 20 bytes right after the Ethernet header: the outer IPv4
	 * header. The EtherType stays IPv4, which the inner packet is. */
	if (bpf_skb_adjust_room(skb, -(__s32)sizeof(struct iphdr), BPF_ADJ_ROOM_MAC, 0))
		return verdict(skb, AGENT_STAT_MALFORMED, TC_ACT_SHOT);
	stat_add(&dsrc_agent_st, AGENT_STAT_DECAP, skb->len);
	if (!nat)
		return TC_ACT_OK; /* encap mode: the VIP lives on lo, the stack takes it as is */
	return dnat_to_server(skb, mux, NULL);
}

/* As inner_malformed(), for an inner IPv6 packet: its fixed header, or in server-nat mode the
 * TCP/UDP header right behind it. */
static __always_inline bool inner6_malformed(struct cursor *c, bool nat)
{
	struct l4_info l4;
	struct ipv6hdr *ip6 = parse_ipv6(c);

	if (!ip6)
		return true;
	if (!nat || (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP))
		return false;
	return parse_l4(c, ip6->nexthdr, 0, &l4) != 0;
}

/* Removes the 40-byte outer IPv6 header behind the Ethernet header. IPv4-in-IPv6 changes the
 * family: skb->protocol and the EtherType must say IPv4 then, or the stack would take the inner
 * IPv4 packet for IPv6 and drop it. bpf_skb_change_proto() pops 20 of the 40 bytes and sets
 * skb->protocol (and the GSO type) on every kernel since 4.8, adjust_room pops the other 20
 * (BPF_F_ADJ_ROOM_DECAP_L3_IPV4 would do both in one call, but only from 6.3 on). */
static __always_inline int decap6(struct __sk_buff *skb, __u8 inner)
{
	__be16 ipv4 = bpf_htons(ETH_P_IP);
	int ret;

	if (inner == IPPROTO_IPV6)
		return bpf_skb_adjust_room(skb, -(__s32)sizeof(struct ipv6hdr), BPF_ADJ_ROOM_MAC, 0);
	ret = bpf_skb_change_proto(skb, ipv4, 0);
	if (ret)
		return ret;
	ret = bpf_skb_adjust_room(skb, -(__s32)(sizeof(struct ipv6hdr) - sizeof(struct iphdr)),
				  BPF_ADJ_ROOM_MAC, 0);
	if (ret)
		return ret;
	return bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &ipv4, sizeof(ipv4), 0);
}

static __always_inline void remember_flow6(const struct nat_flow6_key *key,
					   const struct nat_flow6 *val)
{
	struct nat_flow6 *cur = bpf_map_lookup_elem(&dsrc_nat_flows6, key);

	if (cur && addr6_eq(cur->vip, val->vip) && cur->vport == val->vport &&
	    addr6_eq(cur->mux_addr, val->mux_addr))
		return;
	bpf_map_update_elem(&dsrc_nat_flows6, key, val, BPF_ANY);
}

/* server-nat ingress on a decapsulated IPv6 packet: VIP6:port -> server6:app port. */
static __always_inline int dnat_to_server6(struct __sk_buff *skb, const __u32 *mux)
{
	struct nat_service6_key skey = {};
	struct nat_flow6_key fkey = {};
	struct nat_flow6 flow = {};
	struct nat_service6 *svc;
	struct ipv6hdr *ip6;
	struct l4_info l4;
	struct cursor c;

	cursor_init(&c, skb);
	if (parse_eth(&c) != bpf_htons(ETH_P_IPV6))
		return TC_ACT_OK;
	ip6 = parse_ipv6(&c);
	/* Already validated before decapsulation; this only satisfies the verifier. */
	if (!ip6)
		return TC_ACT_OK;
	/* Extension headers (fragments among them) are not NATed: the MUX does not balance them. */
	if (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP)
		return TC_ACT_OK;
	if (parse_l4(&c, ip6->nexthdr, ETH_HLEN + sizeof(struct ipv6hdr), &l4))
		return verdict(skb, AGENT_STAT_MALFORMED, TC_ACT_SHOT);

	addr6_copy(skey.vip, &ip6->daddr);
	skey.vport = l4.dport;
#ifdef MUTANT_NAT_SVC_NO_PROTO
	skey.proto = IPPROTO_TCP;
	svc = bpf_map_lookup_elem(&dsrc_nat_svc6, &skey);
	skey.proto = l4.proto;
	if (!svc)
		svc = bpf_map_lookup_elem(&dsrc_nat_svc6, &skey);
#else
	skey.proto = l4.proto;
	svc = bpf_map_lookup_elem(&dsrc_nat_svc6, &skey);
#endif
	if (!svc)
		return TC_ACT_OK;
	/* A zero UDP checksum is illegal in IPv6 and the stack would drop the datagram anyway;
	 * dropping it here keeps it out of the flow table. */
	if (l4.proto == IPPROTO_UDP && l4.csum_absent)
		return verdict(skb, AGENT_STAT_MALFORMED, TC_ACT_SHOT);

	addr6_copy(fkey.local_addr, svc->addr);
	fkey.local_port = svc->port;
	addr6_copy(fkey.remote_addr, &ip6->saddr);
	fkey.remote_port = l4.sport;
	fkey.proto = l4.proto;
	addr6_copy(flow.vip, skey.vip);
	flow.vport = l4.dport;
	addr6_copy(flow.mux_addr, mux);
	remember_flow6(&fkey, &flow);

	if (rewrite_endpoint6(skb, ETH_HLEN, &l4, false, flow.vip, fkey.local_addr, flow.vport,
			      fkey.local_port, AGENT_CSUM))
		return verdict(skb, AGENT_STAT_MALFORMED, TC_ACT_SHOT);
	return verdict(skb, AGENT_STAT_DNAT, TC_ACT_OK);
}

/* IPv6-in-IPv6 and IPv4-in-IPv6: the outer IPv6 header is at the cursor. An outer header with
 * extension headers names them as its next header and passes as not ours, as IPv4 options do. */
static __always_inline int agent_in6(struct __sk_buff *skb, struct cursor *c)
{
	struct ipv6hdr *outer = parse_ipv6(c);
	struct mux6_key mux = {};
	__u8 inner;
	bool nat;

	if (!outer || (outer->nexthdr != IPPROTO_IPV6 && outer->nexthdr != IPPROTO_IPIP))
		return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);
	inner = outer->nexthdr;
	addr6_copy(mux.addr, &outer->saddr);
#ifndef MUTANT_DECAP_ANY_SOURCE
	if (!bpf_map_lookup_elem(&dsrc_muxes6, &mux))
		return verdict(skb, AGENT_STAT_FOREIGN_IPIP, TC_ACT_OK);
#endif

	nat = nat_mode();
	if (inner == IPPROTO_IPV6 ? inner6_malformed(c, nat) : inner_malformed(c, nat))
		return verdict(skb, AGENT_STAT_MALFORMED, TC_ACT_SHOT);
	if (decap6(skb, inner))
		return verdict(skb, AGENT_STAT_MALFORMED, TC_ACT_SHOT);
	stat_add(&dsrc_agent_st, AGENT_STAT_DECAP, skb->len);
	if (!nat)
		return TC_ACT_OK;
	if (inner == IPPROTO_IPV6)
		return dnat_to_server6(skb, mux.addr);
	return dnat_to_server(skb, 0, mux.addr);
}

SEC("tc")
int dsrc_agent_in(struct __sk_buff *skb)
{
	struct cursor c;
	int proto;

	cursor_init(&c, skb);
	proto = parse_eth(&c);
	if (proto == bpf_htons(ETH_P_IP))
		return agent_in4(skb, &c);
	if (proto == bpf_htons(ETH_P_IPV6))
		return agent_in6(skb, &c);
	return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);
}

/* server-nat egress, IPv4: the reply's IPv4 header is at the cursor. */
static __always_inline int agent_eg4(struct __sk_buff *skb, struct cursor *c)
{
	struct nat_flow_key fkey = {};
	struct gw_key skey = {};
	struct nat_flow *flow;
	struct l4_info l4;
	struct iphdr *ip;
	__u32 new_addr, old_addr;
	__u16 new_port;

	ip = parse_ipv4(c);
	if (!ip || ipv4_later_fragment(ip))
		return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);
	if (parse_l4(c, ip->protocol, ETH_HLEN + (__u32)ip->ihl * 4, &l4))
		return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);

	old_addr = ip->saddr;
	fkey.local_addr = old_addr;
	fkey.remote_addr = ip->daddr;
	fkey.local_port = l4.sport;
	fkey.remote_port = l4.dport;
	fkey.proto = l4.proto;
	skey.addr = old_addr;
	skey.port = l4.sport;
	skey.proto = l4.proto;
	flow = bpf_map_lookup_elem(&dsrc_nat_flows, &fkey);
	if (!flow) {
		/* A service port answering a flow we never saw (evicted, or the agent restarted):
		 * leaving it alone leaks the server address, which the counter makes visible. */
		if (bpf_map_lookup_elem(&dsrc_nat_first, &skey))
			return verdict(skb, AGENT_STAT_SNAT_MISS, TC_ACT_OK);
		return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);
	}
	new_addr = flow->vip;
	new_port = flow->vport;
#ifdef MUTANT_NAT_WRONG_VIP
	{
		struct gw_value *first = bpf_map_lookup_elem(&dsrc_nat_first, &skey);

		if (first) {
			new_addr = first->addr;
			new_port = first->port;
		}
	}
#endif
	if (rewrite_endpoint(skb, ETH_HLEN, &l4, true, old_addr, new_addr, l4.sport, new_port,
			     AGENT_CSUM))
		return verdict(skb, AGENT_STAT_MALFORMED, TC_ACT_SHOT);
	return verdict(skb, AGENT_STAT_SNAT, TC_ACT_OK);
}

/* server-nat egress, IPv6: the reply's IPv6 header is at the cursor. */
static __always_inline int agent_eg6(struct __sk_buff *skb, struct cursor *c)
{
	struct nat_flow6_key fkey = {};
	struct gw6_key skey = {};
	struct nat_flow6 *flow;
	struct ipv6hdr *ip6;
	struct l4_info l4;
	__u32 new_addr[4];
	__u16 new_port;

	ip6 = parse_ipv6(c);
	if (!ip6 || (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP))
		return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);
	if (parse_l4(c, ip6->nexthdr, ETH_HLEN + sizeof(struct ipv6hdr), &l4))
		return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);

	addr6_copy(fkey.local_addr, &ip6->saddr);
	addr6_copy(fkey.remote_addr, &ip6->daddr);
	fkey.local_port = l4.sport;
	fkey.remote_port = l4.dport;
	fkey.proto = l4.proto;
	addr6_copy(skey.addr, fkey.local_addr);
	skey.port = l4.sport;
	skey.proto = l4.proto;
	flow = bpf_map_lookup_elem(&dsrc_nat_flows6, &fkey);
	if (!flow) {
		if (bpf_map_lookup_elem(&dsrc_nat_first6, &skey))
			return verdict(skb, AGENT_STAT_SNAT_MISS, TC_ACT_OK);
		return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);
	}
	addr6_copy(new_addr, flow->vip);
	new_port = flow->vport;
#ifdef MUTANT_NAT_WRONG_VIP
	{
		struct gw6_value *first = bpf_map_lookup_elem(&dsrc_nat_first6, &skey);

		if (first) {
			addr6_copy(new_addr, first->addr);
			new_port = first->port;
		}
	}
#endif
	if (rewrite_endpoint6(skb, ETH_HLEN, &l4, true, fkey.local_addr, new_addr, l4.sport,
			      new_port, AGENT_CSUM))
		return verdict(skb, AGENT_STAT_MALFORMED, TC_ACT_SHOT);
	return verdict(skb, AGENT_STAT_SNAT, TC_ACT_OK);
}

SEC("tc")
int dsrc_agent_eg(struct __sk_buff *skb)
{
	struct cursor c;
	int proto;

	if (!nat_mode())
		return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);
	cursor_init(&c, skb);
	proto = parse_eth(&c);
	if (proto == bpf_htons(ETH_P_IP))
		return agent_eg4(skb, &c);
	if (proto == bpf_htons(ETH_P_IPV6))
		return agent_eg6(skb, &c);
	return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);
}

char LICENSE[] SEC("license") = "GPL";
