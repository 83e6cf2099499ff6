// SPDX-License-Identifier: GPL-2.0
/* agent.bpf.c - the server agent of the reference DSR stack: two tc (clsact, direct-action)
 * programs on the server's interface toward the router.
 *
 * dsrc_agent_in (ingress): decapsulates IPIP sent by one of the stack's MUXes (the kernel here has
 *   no ipip module, so this is the only decapsulation there is). In server-nat mode it then
 *   rewrites VIP:port to this server's address:app port and remembers the flow, keyed as its
 *   replies will look.
 * dsrc_agent_eg (egress, server-nat only): rewrites replies back to the VIP:port the flow came
 *   through, so a client of a per-MUX VIP gets its answers from that VIP.
 *
 * Mutants (compile-time, see reference_impl/mutants.py):
 *   MUTANT_NAT_NO_PSEUDO_HDR  address change folded into the L4 checksum without
 *                             BPF_F_PSEUDO_HDR (wrong for CHECKSUM_PARTIAL and COMPLETE skbs)
 *   MUTANT_UDP_ZERO_CSUM      a UDP checksum of 0 ("none") is updated as if it were real
 *   MUTANT_NAT_WRONG_VIP      replies go out from the first VIP configured for the service
 *   MUTANT_DECAP_ANY_SOURCE   IPIP from any source is decapsulated
 *   MUTANT_NAT_SVC_NO_PROTO   services found by VIP and port alone (TCP's wins a shared one)
 */
#include "dsr_nat.h"

#ifndef MAX_NAT_SERVICES
#define MAX_NAT_SERVICES 256   /* VIP:port -> app port translations per server */
#endif
#ifndef NAT_FLOW_ENTRIES
#define NAT_FLOW_ENTRIES 65536 /* remembered server-nat flows; resized at load time */
#endif

#if defined(MUTANT_NAT_NO_PSEUDO_HDR)
#define AGENT_CSUM (NAT_L4_CSUM | NAT_UDP_ZERO)
#elif defined(MUTANT_UDP_ZERO_CSUM)
#define AGENT_CSUM (NAT_L4_CSUM | NAT_PSEUDO_HDR)
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

	if (cur && cur->vip == val->vip && cur->vport == val->vport && cur->mux_addr == val->mux_addr)
		return;
	bpf_map_update_elem(&dsrc_nat_flows, key, val, BPF_ANY);
}

/* server-nat ingress on the decapsulated packet: VIP:port -> server address:app port. */
static __always_inline int dnat_to_server(struct __sk_buff *skb, __u32 mux)
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
	remember_flow(&fkey, &flow);

	if (rewrite_endpoint(skb, ETH_HLEN, &l4, false, flow.vip, fkey.local_addr, flow.vport,
			     fkey.local_port, AGENT_CSUM))
		return verdict(skb, AGENT_STAT_MALFORMED, TC_ACT_SHOT);
	return verdict(skb, AGENT_STAT_DNAT, TC_ACT_OK);
}

SEC("tc")
int dsrc_agent_in(struct __sk_buff *skb)
{
	struct iphdr *outer;
	struct cursor c;
	__u32 mux;
	bool nat;

	cursor_init(&c, skb);
	if (parse_eth(&c) != bpf_htons(ETH_P_IP))
		return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);
	outer = parse_ipv4(&c);
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
	if (inner_malformed(&c, nat))
		return verdict(skb, AGENT_STAT_MALFORMED, TC_ACT_SHOT);
	/* BPF_ADJ_ROOM_MAC removes the 20 bytes right after the Ethernet header: the outer IPv4
	 * header. The EtherType stays IPv4, which the inner packet is. */
	if (bpf_skb_adjust_room(skb, -(__s32)sizeof(struct iphdr), BPF_ADJ_ROOM_MAC, 0))
		return verdict(skb, AGENT_STAT_MALFORMED, TC_ACT_SHOT);
	stat_add(&dsrc_agent_st, AGENT_STAT_DECAP, skb->len);
	if (!nat)
		return TC_ACT_OK; /* encap mode: the VIP lives on lo, the stack takes it as is */
	return dnat_to_server(skb, mux);
}

SEC("tc")
int dsrc_agent_eg(struct __sk_buff *skb)
{
	struct nat_flow_key fkey = {};
	struct gw_key skey = {};
	struct nat_flow *flow;
	struct l4_info l4;
	struct cursor c;
	struct iphdr *ip;
	__u32 new_addr, old_addr;
	__u16 new_port;

	if (!nat_mode())
		return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);
	cursor_init(&c, skb);
	if (parse_eth(&c) != bpf_htons(ETH_P_IP))
		return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);
	ip = parse_ipv4(&c);
	if (!ip || ipv4_later_fragment(ip))
		return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return verdict(skb, AGENT_STAT_PASS, TC_ACT_OK);
	if (parse_l4(&c, ip->protocol, ETH_HLEN + (__u32)ip->ihl * 4, &l4))
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

char LICENSE[] SEC("license") = "GPL";
