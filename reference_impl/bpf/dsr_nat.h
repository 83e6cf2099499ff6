/* dsr_nat.h - packet parsing and checksum-safe rewriting of one TCP/UDP endpoint, IPv4 or IPv6,
 * shared by the server agent (agent.bpf.c) and the egress gateway (gateway.bpf.c). tc programs only.
 *
 * Rewrites go through the skb checksum helpers rather than through packet pointers so that the
 * kernel keeps its checksum state right: skb->csum for CHECKSUM_COMPLETE on receive, and the
 * pseudo-header seed of CHECKSUM_PARTIAL packets the local stack sends. Those helpers invalidate
 * every packet pointer, so callers copy what they need into locals before rewriting.
 */
#ifndef DSR_NAT_H
#define DSR_NAT_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "dsr_shared.h"

#ifndef IPPROTO_IPIP
#define IPPROTO_IPIP 4
#endif
#ifndef IPPROTO_IPV6
#define IPPROTO_IPV6 41 /* IPv6-in-IPv6 (an IPv6 next header, as IPPROTO_IPIP is IPv4-in-) */
#endif

/* Fragment offset bits of iphdr.frag_off (host order before bpf_htons). */
#define IP_OFFSET_MASK 0x1fff
#define IP_MF 0x2000

/* A parse position inside the linear packet data. Every helper checks the bounds against `end`
 * before it reads, because the verifier rejects any packet read it cannot prove in bounds. */
struct cursor {
	void *pos;
	void *end;
};

static __always_inline void cursor_init(struct cursor *c, struct __sk_buff *skb)
{
	c->pos = (void *)(long)skb->data;
	c->end = (void *)(long)skb->data_end;
}

/* Returns the EtherType (network order), or -1 when the frame is shorter than its header. */
static __always_inline int parse_eth(struct cursor *c)
{
	struct ethhdr *eth = c->pos;

	/* The whole Ethernet header must be inside the frame before h_proto is read. */
	if ((void *)(eth + 1) > c->end)
		return -1;
	c->pos = eth + 1;
	return eth->h_proto;
}

/* The IPv4 header including its options, or NULL when it is truncated or not a sane IPv4 header
 * (version != 4, IHL < 5). The cursor moves past the options. */
static __always_inline struct iphdr *parse_ipv4(struct cursor *c)
{
	struct iphdr *ip = c->pos;
	__u32 hlen;

	/* The fixed 20 bytes first: IHL itself lives inside them. */
	if ((void *)(ip + 1) > c->end)
		return NULL;
	if (ip->version != 4 || ip->ihl < 5)
		return NULL;
	/* IHL is 4 bits, so hlen is at most 60: a bounded offset the verifier can follow. */
	hlen = (__u32)ip->ihl * 4;
	/* The options as announced by IHL must be inside the frame too. */
	if (c->pos + hlen > c->end)
		return NULL;
	c->pos += hlen;
	return ip;
}

/* The fixed 40-byte IPv6 header, or NULL when it is truncated or its version is not 6. Extension
 * headers are not walked: callers treat a next header they do not expect as not theirs. */
static __always_inline struct ipv6hdr *parse_ipv6(struct cursor *c)
{
	struct ipv6hdr *ip6 = c->pos;

	/* All 40 bytes: the addresses the callers copy are its last 32. */
	if ((void *)(ip6 + 1) > c->end)
		return NULL;
	if (ip6->version != 6)
		return NULL;
	c->pos = ip6 + 1;
	return ip6;
}

static __always_inline void addr6_copy(__u32 *dst, const void *src)
{
	__builtin_memcpy(dst, src, 16);
}

static __always_inline bool addr6_eq(const __u32 *a, const __u32 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

/* Only the first fragment carries the TCP/UDP header; later ones have no ports to look at. */
static __always_inline bool ipv4_later_fragment(const struct iphdr *ip)
{
	return (ip->frag_off & bpf_htons(IP_OFFSET_MASK)) != 0;
}

static __always_inline bool ipv4_any_fragment(const struct iphdr *ip)
{
	return (ip->frag_off & bpf_htons(IP_OFFSET_MASK | IP_MF)) != 0;
}

/* What a rewrite needs to know about a TCP or UDP header. Offsets count from skb->data. */
struct l4_info {
	__u32 off;       /* start of the TCP/UDP header */
	__u32 csum_off;  /* its checksum field */
	__u16 sport;     /* network order */
	__u16 dport;
	__u8 proto;
	bool csum_absent; /* UDP checksum 0: the sender computed none (RFC 768) */
};

/* Parses the TCP or UDP header at the cursor, which sits `off` bytes into the packet.
 * Returns 0, or -1 when the header is cut short by the end of the frame. */
static __always_inline int parse_l4(struct cursor *c, __u8 proto, __u32 off, struct l4_info *l4)
{
	l4->off = off;
	l4->proto = proto;
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = c->pos;

		/* The fixed TCP header holds the ports and the checksum (offset 16). */
		if ((void *)(tcp + 1) > c->end)
			return -1;
		l4->sport = tcp->source;
		l4->dport = tcp->dest;
		l4->csum_off = off + offsetof(struct tcphdr, check);
		l4->csum_absent = false;
		return 0;
	}
	{
		struct udphdr *udp = c->pos;

		/* All 8 bytes of the UDP header: ports, length and checksum. */
		if ((void *)(udp + 1) > c->end)
			return -1;
		l4->sport = udp->source;
		l4->dport = udp->dest;
		l4->csum_off = off + offsetof(struct udphdr, check);
		l4->csum_absent = udp->check == 0;
		return 0;
	}
}

/* How rewrite_endpoint() treats the TCP/UDP checksum. The correct programs use NAT_CSUM_ALL;
 * each mutant clears the bit whose loss it models. */
#define NAT_L4_CSUM (1u << 0)    /* update the TCP/UDP checksum at all */
#define NAT_PSEUDO_HDR (1u << 1) /* the address is in the pseudo-header: BPF_F_PSEUDO_HDR */
#define NAT_UDP_ZERO (1u << 2)   /* UDP checksum 0 means "none" and must stay 0 */
#define NAT_ADDR6_FULL (1u << 3) /* IPv6: all 128 bits of the address enter the checksum */
#define NAT_CSUM_ALL (NAT_L4_CSUM | NAT_PSEUDO_HDR | NAT_UDP_ZERO | NAT_ADDR6_FULL)

/* Rewrites the source (source=true) or destination endpoint of an IPv4 TCP/UDP packet whose
 * IPv4 header starts at ip_off, from old_addr:old_port to new_addr:new_port (network order).
 * Returns 0 or the negative error of the first helper that failed. */
static __always_inline int rewrite_endpoint(struct __sk_buff *skb, __u32 ip_off,
					    const struct l4_info *l4, bool source, __u32 old_addr,
					    __u32 new_addr, __u16 old_port, __u16 new_port, __u32 how)
{
	__u32 addr_off = ip_off + (source ? offsetof(struct iphdr, saddr)
					  : offsetof(struct iphdr, daddr));
	__u32 port_off = l4->off + (source ? 0 : 2);
	__u64 mangled = 0, port_store = 0, pseudo = 0;
	int ret;

	if (l4->proto == IPPROTO_UDP && (how & NAT_UDP_ZERO)) {
		/* A zero result must go out as 0xffff, or it would read as "no checksum". */
		mangled = BPF_F_MARK_MANGLED_0;
		/* With no checksum to absorb the port change, skb->csum (CHECKSUM_COMPLETE) has to
		 * follow the changed bytes itself; the helper only does that when asked. */
		if (l4->csum_absent)
			port_store = BPF_F_RECOMPUTE_CSUM;
	}
	if (how & NAT_PSEUDO_HDR)
		pseudo = BPF_F_PSEUDO_HDR;
	if ((how & NAT_L4_CSUM) && !(mangled && l4->csum_absent)) {
		ret = bpf_l4_csum_replace(skb, l4->csum_off, old_addr, new_addr,
					  pseudo | mangled | sizeof(new_addr));
		if (ret)
			return ret;
		ret = bpf_l4_csum_replace(skb, l4->csum_off, old_port, new_port,
					  mangled | sizeof(new_port));
		if (ret)
			return ret;
	}
	ret = bpf_l3_csum_replace(skb, ip_off + offsetof(struct iphdr, check), old_addr, new_addr,
				  sizeof(new_addr));
	if (ret)
		return ret;
	ret = bpf_skb_store_bytes(skb, addr_off, &new_addr, sizeof(new_addr), 0);
	if (ret)
		return ret;
	return bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), port_store);
}

/* bpf_l4_csum_replace() with a checksum difference (from = 0, size 0). BPF_F_IPV6 tells the kernel
 * that an IPv6 address has no header checksum to balance it: under CHECKSUM_COMPLETE skb->csum
 * must then stay as it is (the address bytes and the checksum field change by opposite amounts).
 * Kernels before 6.16 (and stables without the backport) refuse the flag with -EINVAL: the
 * checksum bytes come out right there without it, only a CHECKSUM_COMPLETE skb->csum would not. */
static __always_inline int l4_csum_diff6(struct __sk_buff *skb, __u32 csum_off, __s64 diff,
					 __u64 flags)
{
	int ret;

	if (!(flags & BPF_F_PSEUDO_HDR))
		return bpf_l4_csum_replace(skb, csum_off, 0, diff, flags);
	ret = bpf_l4_csum_replace(skb, csum_off, 0, diff, flags | BPF_F_IPV6);
	if (ret == -22 /* EINVAL */)
		ret = bpf_l4_csum_replace(skb, csum_off, 0, diff, flags);
	return ret;
}

/* The IPv6 counterpart of rewrite_endpoint(): the IPv6 header starts at ip_off, addresses are four
 * network-order words. There is no IP header checksum; the 128-bit address enters the TCP/UDP
 * checksum through the pseudo-header, as one csum_diff over its 16 bytes. UDP over IPv6 must
 * carry a checksum (RFC 8200, 8.1): a zero one is refused (-1) rather than "updated" into a wrong
 * non-zero value, and a result of zero goes out as 0xffff. */
static __always_inline int rewrite_endpoint6(struct __sk_buff *skb, __u32 ip_off,
					     const struct l4_info *l4, bool source,
					     const __u32 *old_addr, const __u32 *new_addr,
					     __u16 old_port, __u16 new_port, __u32 how)
{
	__u32 addr_off = ip_off + (source ? offsetof(struct ipv6hdr, saddr)
					  : offsetof(struct ipv6hdr, daddr));
	__u32 port_off = l4->off + (source ? 0 : 2);
	__u64 mangled = l4->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__u64 pseudo = (how & NAT_PSEUDO_HDR) ? BPF_F_PSEUDO_HDR : 0;
	__u32 from[4], to[4];
	__s64 diff;
	int ret;

	if (l4->proto == IPPROTO_UDP && l4->csum_absent)
		return -1;
	/* bpf_csum_diff reads stack or map memory, not packet pointers the helpers invalidate. */
	addr6_copy(from, old_addr);
	addr6_copy(to, new_addr);
	if (how & NAT_L4_CSUM) {
		if (how & NAT_ADDR6_FULL)
			diff = bpf_csum_diff(from, sizeof(from), to, sizeof(to), 0);
		else /* the low 32 bits only (a mutant): wrong whenever the upper 96 differ */
			diff = bpf_csum_diff(&from[3], sizeof(from[3]), &to[3], sizeof(to[3]), 0);
		if (diff < 0)
			return (int)diff;
		ret = l4_csum_diff6(skb, l4->csum_off, diff, pseudo | mangled);
		if (ret)
			return ret;
		ret = bpf_l4_csum_replace(skb, l4->csum_off, old_port, new_port,
					  mangled | sizeof(new_port));
		if (ret)
			return ret;
	}
	ret = bpf_skb_store_bytes(skb, addr_off, to, sizeof(to), 0);
	if (ret)
		return ret;
	return bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), 0);
}

/* Adds one packet of `len` bytes to slot `idx` of a percpu array of struct counter. */
static __always_inline void stat_add(void *map, __u32 idx, __u32 len)
{
	struct counter *c = bpf_map_lookup_elem(map, &idx);

	/* Per-CPU slot: no other CPU writes it, so plain adds are race-free. */
	if (c) {
		c->packets += 1;
		c->bytes += len;
	}
}

#endif /* DSR_NAT_H */
