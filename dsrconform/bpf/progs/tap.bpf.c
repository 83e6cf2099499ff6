// SPDX-License-Identifier: GPL-2.0
/* tap: per-flow packet accounting on one lab interface (tc ingress and egress), for checkers.
 *
 * For every IPv4 or IPv6 packet it updates the record of its flow and direction: packets, bytes,
 * first and last time seen, TCP SYN/FIN/RST counts, fragments, and how many packets had a bad
 * IPv4 header checksum or a bad TCP/UDP/ICMP/ICMPv6 checksum. A flow is keyed by what checkers
 * need to tell packets apart on a DSR path:
 * - the outer 5-tuple (ports 0 for fragments and port-less protocols, IP-in-IP among them);
 *   addresses of either family are kept in 16 bytes with the family beside them; an IPv6
 *   packet's protocol is its upper-layer header's, after up to TAP_MAX_EXT extension headers
 *   (hop-by-hop, routing, destination options, fragment);
 * - for an encapsulated packet (a MUX's output), the encapsulated 5-tuple: DSR never rewrites the
 *   client's end, so the inner tuple ties an encapsulated packet to its connection. Understood:
 *   IP-in-IP of either family in either family (IPv4 protocol / IPv6 next header 4 for IPv4
 *   inside, 41 for IPv6 inside) and GUE variant 1 as Katran sends it, IPv4 or IPv6 directly in
 *   UDP to port TAP_GUE_PORT (no GUE header: the inner header's version nibble, 4 or 6, tells
 *   it). The port is a build define, from dsrconform.observe.taps.GUE_PORT; a UDP datagram to
 *   it whose payload does not start with an IP version nibble is plain UDP. For GUE, the outer
 *   UDP checksum (when not zero) is verified too, as part of the L4 one;
 * - for ICMP and ICMPv6, type and code, and for errors the 5-tuple of the header they quote
 *   (which flow the error is about), of the outer or of the encapsulated ICMP.
 * Ports, TCP flags and the L4 checksum are those of the innermost header.
 *
 * Per record also: which DSCP values and ECN codepoints the innermost header carried (bitmaps),
 * and for IPIP how many packets had an outer DSCP other than the inner one's, or an outer ECN
 * field RFC 6040 does not allow (neither the inner's nor Not-ECT): the client's marks as the
 * MUX and the servers' rewrites passed them on.
 *
 * Records are also keyed by the tap's period, a number user space raises at each event of the
 * lab (a backend change, a node killed): a flow's packets in each period make their own record,
 * with their own first and last time. User space merges them into one record per flow that
 * keeps the periods' spans, so a 5-tuple a client reuses across a change shows which servers
 * its packets reached after the change, not only over the whole run.
 *
 * L4 checksums are verified on ingress only: what arrives is what crossed the link. At the egress
 * hook a locally generated packet may still be CHECKSUM_PARTIAL (the stack completes it after tc),
 * which a tap cannot tell from a broken one; l4_checked says how many packets were verified.
 *
 * Honest accounting: the flow table is a plain hash map, never LRU. When it is full (or, not
 * preallocated, an entry cannot be allocated), the packet is counted in TAP_OVERFLOW instead of
 * silently evicting another flow, so a checker can answer UNKNOWN rather than PASS on incomplete
 * data. Entries are allocated as flows appear (BPF_F_NO_PREALLOC): a tap on every interface of a
 * lab, each sized for the busiest, would otherwise pin ~50 MB of kernel memory apiece.
 *
 * Headers are read with bpf_skb_load_bytes into the stack: it copes with
 * non-linear skbs and keeps the verifier's view simple (no packet-pointer range proofs at
 * variable offsets).
 *
 * The programs return TC_ACT_UNSPEC: the next filter on the hook (a server agent, say) still
 * runs, and without one the packet goes on as if no tap were there.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* The ICMP types the tap reads, spelled out: <linux/icmp.h> pulls in glibc's <sys/socket.h>
 * (through <linux/if.h>), which under -target bpf wants the 32-bit glibc headers
 * (gnu/stubs-32.h) that a plain Debian install lacks. */
#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
/* Likewise for IPv6 (<linux/ipv6.h>, <linux/icmpv6.h> and <linux/in6.h> pull in the same). */
#define IPPROTO_ICMPV6 58
#define IPV6_HOPOPTS 0
#define IPV6_ROUTING 43
#define IPV6_FRAGMENT 44
#define IPV6_DSTOPTS 60
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PARAMPROB 4 /* errors are types 1 (unreachable) to 4 (parameter problem) */

#ifndef TAP_MAX_EXT
#define TAP_MAX_EXT 4 /* IPv6 extension headers walked before the upper-layer header */
#endif

#define TAP_DIR_INGRESS 0
#define TAP_DIR_EGRESS 1

#define TAP_PACKETS 0   /* every packet seen */
#define TAP_NON_IP 1    /* neither IPv4 nor IPv6 (not recorded per flow) */
#define TAP_OVERFLOW 2  /* IP packets of flows that found the table full */
#define TAP_TRUNCATED 3 /* IP packets too short to parse (counted, not per flow) */
#define TAP_META_PER_DIR 4 /* the slots above, for ingress, then again for egress */
#define TAP_META_SLOTS (2 * TAP_META_PER_DIR)

#ifndef TAP_GUE_PORT
#error "TAP_GUE_PORT (the GUE destination port) must be defined: see dsrconform.observe.taps"
#endif

#define CSUM_CHUNK 128  /* bytes summed per bpf_csum_diff call (a small stack buffer) */
#define CSUM_CHUNKS 16  /* so segments up to 2048 bytes are checked; longer ones count as bad */

/* One header's 5-tuple (addresses and ports in network order). Addresses are 16 bytes for
 * either family: an IPv4 address is the first 4 (the rest zero), and family says which. */
struct tap_tuple {
	__be32 saddr[4];
	__be32 daddr[4];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 present; /* outer: the direction; inner, embedded: 1 when there is one */
	__u8 family;  /* 4 or 6 (0: no header) */
	__u8 pad;
};

/* The fixed IPv6 header, spelled out (see above for why not <linux/ipv6.h>). */
struct tap_ip6hdr {
	__u8 vtc;        /* version (4 bits), then the traffic class's upper 4 bits */
	__u8 tc_flow[3]; /* the traffic class's lower 4 bits, then the flow label */
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__be32 saddr[4];
	__be32 daddr[4];
};

struct tap_key {
	struct tap_tuple outer;
	struct tap_tuple inner;    /* the encapsulated header's (IP-in-IP of either family, GUE) */
	struct tap_tuple embedded; /* the header an ICMP error quotes */
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 is_icmp; /* type and code are meaningful (type 0 is echo reply) */
	__u8 pad;
	__u32 period; /* dsrc_tap_period when the packet was seen */
};

struct tap_val {
	__u64 packets;
	__u64 bytes;
	__u64 first_ns;
	__u64 last_ns;
	__u64 bad_l3;
	__u64 bad_l4;
	__u64 syn;       /* TCP segments with SYN set, */
	__u64 fin;       /* FIN set, */
	__u64 rst;       /* RST set (counted with atomic adds: BPF ISA v1 has no atomic OR) */
	__u64 l4_checked; /* packets whose L4 checksum was verified (ingress only) */
	__u64 fragments;  /* packets that were fragments (outer or encapsulated header) */
	__u64 dscp_seen;  /* bit d: the innermost header carried DSCP d (bits are only set) */
	__u64 ecn_seen;   /* bit e (0-3): the innermost header carried ECN codepoint e */
	__u64 dscp_changed; /* encapsulated packets whose outer DSCP is not the inner one's */
	__u64 ecn_bad;    /* encapsulated packets whose outer ECN is neither the inner's nor
			   * Not-ECT (RFC 6040: normal mode copies, compatibility mode clears) */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144); /* set at load time */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tap_key);
	__type(value, struct tap_val);
} dsrc_tap_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TAP_META_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} dsrc_tap_meta SEC(".maps");

/* The current period (one slot, written by user space; 0 until the first lab event). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} dsrc_tap_period SEC(".maps");

/* The initial value of a new flow record, per CPU: zero but for first_ns and last_ns, which
 * are set before the insert so that a reader never sees a record without its times. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tap_val);
} dsrc_tap_zero SEC(".maps");

static __always_inline void meta(__u8 dir, __u32 slot)
{
	__u32 key = slot + (dir ? TAP_META_PER_DIR : 0);
	__u64 *c = bpf_map_lookup_elem(&dsrc_tap_meta, &key);

	if (c)
		(*c)++;
}

static __always_inline __u16 fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* One's-complement sum (not folded) of len bytes at offset off of the packet, or -1 when they
 * cannot be read or len is too long. Bytes are copied chunk by chunk into a stack buffer
 * (bpf_skb_load_bytes copes with non-linear skbs; the verifier accepts a bounded variable size
 * on the stack where it would not on packet memory), the last chunk zero-padded to whole words.
 * A global function: the verifier checks it once, not at each of its call sites (with the IPv6
 * and encapsulation paths, checking it per site went past the verifier's 1M instructions). */
__noinline __s64 sum_bytes(struct __sk_buff *skb, __u32 off, __u32 len)
{
	__u8 buf[CSUM_CHUNK];
	__u64 sum = 0;
	__u32 done = 0;
	int i;

	if (len > CSUM_CHUNK * CSUM_CHUNKS)
		return -1;
	for (i = 0; i < CSUM_CHUNKS; i++) {
		__u32 n, words;
		__s64 s;

		if (done >= len)
			break;
		n = len - done;
		if (n > CSUM_CHUNK)
			n = CSUM_CHUNK;
		/* n = ((n - 1) & 127) + 1: a no-op for n in 1..128 that shows the verifier n is in
		 * 1..128 (bpf_skb_load_bytes refuses a size that may be 0); in asm because clang,
		 * knowing it is a no-op, would drop it. CSUM_CHUNK must stay 128 for it. */
		asm volatile("%[n] += -1; %[n] &= 127; %[n] += 1" : [n] "+r"(n));
		words = (n + 3) & (2 * CSUM_CHUNK - 4); /* whole words; the zeroed padding adds 0 */
		if (n == 0 || words > CSUM_CHUNK)
			return -1;
		if (n & 3) /* a partial last word: its padding must be zero (constant-size write) */
			__builtin_memset(buf, 0, CSUM_CHUNK);
		if (bpf_skb_load_bytes(skb, off + done, buf, n))
			return -1;
		s = bpf_csum_diff(NULL, 0, (__be32 *)buf, words, 0);
		if (s < 0)
			return -1;
		sum += (__u32)s;
		done += n;
	}
	return done == len ? (__s64)sum : -1;
}

/* ICMPv6 at off: type and code, and for an error (types 1 to 4: unreachable, packet too big,
 * time exceeded, parameter problem) the 5-tuple of the IPv6 header it quotes after its own 8
 * bytes (ports when the quoted header is directly followed by TCP or UDP). */
static __always_inline void parse_icmp6(struct __sk_buff *skb, __u32 off, struct tap_key *key)
{
	struct tap_ip6hdr q;
	__be16 ports[2];
	__u8 h[2];
	int i;

	if (bpf_skb_load_bytes(skb, off, h, sizeof(h)))
		return;
	key->is_icmp = 1;
	key->icmp_type = h[0];
	key->icmp_code = h[1];
	if (h[0] < ICMPV6_DEST_UNREACH || h[0] > ICMPV6_PARAMPROB ||
	    bpf_skb_load_bytes(skb, off + 8, &q, sizeof(q)) || (q.vtc >> 4) != 6)
		return;
#pragma unroll
	for (i = 0; i < 4; i++) {
		key->embedded.saddr[i] = q.saddr[i];
		key->embedded.daddr[i] = q.daddr[i];
	}
	key->embedded.proto = q.nexthdr;
	key->embedded.family = 6;
	key->embedded.present = 1;
	if ((q.nexthdr == IPPROTO_TCP || q.nexthdr == IPPROTO_UDP) &&
	    !bpf_skb_load_bytes(skb, off + 8 + sizeof(q), ports, sizeof(ports))) {
		key->embedded.sport = ports[0];
		key->embedded.dport = ports[1];
	}
}

/* Ports (TCP/UDP) and flags (TCP) of the L4 header at off into t; for ICMP, type and code, and
 * for an ICMP error the 5-tuple of the header it quotes. Best effort: what cannot be read (a
 * truncated packet) stays zero, and the packet is still counted under what was read. */
static __always_inline void parse_l4(struct __sk_buff *skb, __u32 off, __u8 proto,
				     struct tap_tuple *t, struct tap_key *key, __u32 *flags)
{
	struct iphdr q;
	__be16 ports[2];
	__u8 h[2];

	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)))
			return;
		t->sport = ports[0];
		t->dport = ports[1];
		if (proto == IPPROTO_TCP && !bpf_skb_load_bytes(skb, off + 13, h, 1))
			*flags = h[0];
		return;
	}
	if (proto == IPPROTO_ICMPV6) {
		parse_icmp6(skb, off, key);
		return;
	}
	if (proto != IPPROTO_ICMP || bpf_skb_load_bytes(skb, off, h, sizeof(h)))
		return;
	key->is_icmp = 1;
	key->icmp_type = h[0];
	key->icmp_code = h[1];
	if (h[0] != ICMP_DEST_UNREACH && h[0] != ICMP_TIME_EXCEEDED && h[0] != ICMP_PARAMETERPROB)
		return;
	/* An error quotes the offending IPv4 header (after its own 8 bytes) and at least 8 bytes
	 * of that header's payload: the ports, unless it quotes a non-first fragment. */
	if (bpf_skb_load_bytes(skb, off + 8, &q, sizeof(q)) || q.ihl < 5)
		return;
	key->embedded.saddr[0] = q.saddr;
	key->embedded.daddr[0] = q.daddr;
	key->embedded.proto = q.protocol;
	key->embedded.family = 4;
	key->embedded.present = 1;
	if ((q.protocol == IPPROTO_TCP || q.protocol == IPPROTO_UDP) &&
	    !(q.frag_off & bpf_htons(0x1fff)) &&
	    !bpf_skb_load_bytes(skb, off + 8 + q.ihl * 4, ports, sizeof(ports))) {
		key->embedded.sport = ports[0];
		key->embedded.dport = ports[1];
	}
}

#if defined(TAP_AGG_MASK) || defined(TAP_AGG6_MASK)
#define TAP_AGGREGATE 1
/* Aggregation (built with -DTAP_AGG_NET=... -DTAP_AGG_MASK=... for an IPv4 network, and/or
 * -DTAP_AGG6_NET=... -DTAP_AGG6_MASK=... for an IPv6 one of prefix length 64 or less, as its
 * upper 64 bits; host order): an address in that network (a SYN flood's spoofed sources) is
 * recorded as the network's address with port 0, so a flood of millions of 5-tuples makes a
 * few records instead of overflowing the table. */
static __always_inline int in_agg(const __be32 *a, __u8 family)
{
#ifdef TAP_AGG_MASK
	if (family == 4 && (bpf_ntohl(a[0]) & TAP_AGG_MASK) == TAP_AGG_NET)
		return 1;
#endif
#ifdef TAP_AGG6_MASK
	if (family == 6 &&
	    ((((__u64)bpf_ntohl(a[0]) << 32) | bpf_ntohl(a[1])) & TAP_AGG6_MASK) == TAP_AGG6_NET)
		return 1;
#endif
	return 0;
}

static __always_inline void agg_addr(__be32 *a, __u8 family)
{
#ifdef TAP_AGG_MASK
	if (family == 4) {
		a[0] = bpf_htonl(TAP_AGG_NET);
		return;
	}
#endif
#ifdef TAP_AGG6_MASK
	a[0] = bpf_htonl((__u32)((__u64)TAP_AGG6_NET >> 32));
	a[1] = bpf_htonl((__u32)TAP_AGG6_NET);
	a[2] = 0;
	a[3] = 0;
#endif
}

static __always_inline void aggregate(struct tap_tuple *t)
{
	if (in_agg(t->saddr, t->family)) {
		agg_addr(t->saddr, t->family);
		t->sport = 0;
	}
	if (in_agg(t->daddr, t->family)) {
		agg_addr(t->daddr, t->family);
		t->dport = 0;
	}
}
#endif

/* One IP header, parsed: where its payload starts and how long it is, what it carries. */
struct l3info {
	__u64 pseudo; /* the addresses' part of the L4 pseudo-header sum (not folded) */
	__u32 off;    /* offset of the payload (after IPv6 extension headers) */
	__u32 len;    /* bytes of payload (to the end of the IP packet) */
	__u8 proto;   /* IPv4 protocol, or the IPv6 upper-layer header after extension headers */
	__u8 tos;     /* IPv4 TOS byte, or IPv6 traffic class */
	__u8 frag;    /* a fragment (IPv4 MF or offset; an IPv6 fragment header with either) */
	__u8 bad;     /* the IPv4 header checksum is wrong (IPv6 has none) */
};

static __always_inline __u64 word_sum(__be32 w)
{
	return (__u64)(w & 0xffff) + (w >> 16);
}

/* The IPv4 header at off, in at most room bytes, into t (addresses, protocol) and h. Returns 0,
 * or -1 when it is cut short or its lengths disagree (nothing written then). */
static __always_inline int parse_ipv4(struct __sk_buff *skb, __u32 off, __u32 room,
				      struct tap_tuple *t, struct l3info *h)
{
	struct iphdr ip;
	__u32 ihl, tot;
	__s64 s;

	if (room < sizeof(ip) || bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) ||
	    ip.version != 4 || ip.ihl < 5)
		return -1;
	ihl = ip.ihl * 4;
	tot = bpf_ntohs(ip.tot_len);
	if (tot < ihl || tot > room)
		return -1;
	s = sum_bytes(skb, off, ihl);
	h->bad = s < 0 || fold(s) != 0xffff;
	h->pseudo = word_sum(ip.saddr) + word_sum(ip.daddr);
	h->off = off + ihl;
	h->len = tot - ihl;
	h->proto = ip.protocol;
	h->tos = ip.tos;
	h->frag = !!(ip.frag_off & bpf_htons(0x3fff)); /* MF set or a non-zero offset */
	t->saddr[0] = ip.saddr;
	t->daddr[0] = ip.daddr;
	t->proto = ip.protocol;
	t->family = 4;
	return 0;
}

/* The IPv6 header at off and its extension headers (hop-by-hop, routing, destination options,
 * fragment; at most TAP_MAX_EXT of them), as parse_ipv4. The recorded protocol is the header
 * after the extension headers (one past TAP_MAX_EXT is recorded as the extension header it
 * stopped at); a fragment header makes the packet a fragment (offset or M set). The L4
 * pseudo-header takes the IPv6 destination as it stands: a routing header with segments left
 * (whose final destination the checksum covers instead) would count as a bad checksum; the
 * harness sends none (crafted6's routing headers have no segments left). */
static __always_inline int parse_ipv6(struct __sk_buff *skb, __u32 off, __u32 room,
				      struct tap_tuple *t, struct l3info *h)
{
	struct tap_ip6hdr ip;
	__u32 len, i;
	__u8 nh, frag = 0;

	if (room < sizeof(ip) || bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) ||
	    (ip.vtc >> 4) != 6)
		return -1;
	len = bpf_ntohs(ip.payload_len);
	if (len + sizeof(ip) > room)
		return -1;
	off += sizeof(ip);
	nh = ip.nexthdr;
#pragma unroll
	for (i = 0; i < TAP_MAX_EXT; i++) {
		__u8 ext[8];
		__u32 n;

		if (nh != IPV6_HOPOPTS && nh != IPV6_ROUTING && nh != IPV6_DSTOPTS &&
		    nh != IPV6_FRAGMENT)
			break;
		if (len < sizeof(ext) || bpf_skb_load_bytes(skb, off, ext, sizeof(ext)))
			return -1;
		/* A fragment header is 8 bytes (its second byte is reserved); the others say their
		 * length in 8-byte units past the first 8. */
		n = nh == IPV6_FRAGMENT ? 8 : ((__u32)ext[1] + 1) * 8;
		if (nh == IPV6_FRAGMENT)
			frag |= (ext[2] | (ext[3] & 0xf9)) != 0; /* offset bits or M */
		if (n > len)
			return -1;
		nh = ext[0];
		off += n;
		len -= n;
	}
	h->pseudo = 0;
#pragma unroll
	for (i = 0; i < 4; i++) {
		h->pseudo += word_sum(ip.saddr[i]) + word_sum(ip.daddr[i]);
		t->saddr[i] = ip.saddr[i];
		t->daddr[i] = ip.daddr[i];
	}
	h->bad = 0;
	h->off = off;
	h->len = len;
	h->proto = nh;
	h->tos = (ip.vtc << 4) | (ip.tc_flow[0] >> 4);
	h->frag = frag;
	t->proto = nh;
	t->family = 6;
	return 0;
}

/* The IP header at off whatever its family (its version nibble says), as parse_ipv4. */
static __always_inline int parse_ip(struct __sk_buff *skb, __u32 off, __u32 room,
				    struct tap_tuple *t, struct l3info *h)
{
	__u8 ver;

	if (bpf_skb_load_bytes(skb, off, &ver, 1))
		return -1;
	if ((ver >> 4) == 4)
		return parse_ipv4(skb, off, room, t, h);
	if ((ver >> 4) == 6)
		return parse_ipv6(skb, off, room, t, h);
	return -1;
}

static __always_inline void record(struct __sk_buff *skb, __u8 dir)
{
	struct tap_key key = {};
	struct tap_tuple *t = &key.outer; /* the innermost header's tuple: ports go there */
	struct tap_val *v;
	struct l3info h = {}, in = {}; /* initialised: clang may copy an unset field on the error path, which the verifier refuses */
	__u32 *period;
	__u32 off, l4len, room, flags = 0, zero = 0;
	__u64 now = bpf_ktime_get_ns();
	int bad_l3 = 0, bad_l4 = 0, checked = 0, frag, encap = 0, rc;
	__u8 proto, tos, outer_tos;
	__s64 s;

	meta(dir, TAP_PACKETS);
	/* The outer packet fits the frame, as received: a GSO packet's headers describe one
	 * segment (or none: BIG TCP), so only non-GSO packets are held to it. */
	room = skb->gso_size ? 0xffff + 40 : skb->len - sizeof(struct ethhdr);
	if (skb->len < sizeof(struct ethhdr))
		room = 0;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		rc = parse_ipv4(skb, sizeof(struct ethhdr), room, &key.outer, &h);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		rc = parse_ipv6(skb, sizeof(struct ethhdr), room, &key.outer, &h);
	} else {
		meta(dir, TAP_NON_IP);
		return;
	}
	if (rc) {
		meta(dir, TAP_TRUNCATED);
		return;
	}
	key.outer.present = dir;
	proto = h.proto;
	tos = outer_tos = h.tos;
	bad_l3 = h.bad;
	off = h.off;
	l4len = h.len;
	frag = h.frag;

	if (!frag && proto == IPPROTO_UDP && l4len >= sizeof(struct udphdr) + sizeof(struct iphdr)) {
		/* GUE variant 1 (IPv4 or IPv6 in UDP to the GUE port): verify the outer UDP checksum
		 * (as for any UDP, on ingress, not for GSO, not when zero), then go on to the inner
		 * header as for IP-in-IP. */
		struct udphdr uh;
		__u8 ver = 0;

		if (!bpf_skb_load_bytes(skb, off, &uh, sizeof(uh)) &&
		    uh.dest == bpf_htons(TAP_GUE_PORT) &&
		    !bpf_skb_load_bytes(skb, off + sizeof(uh), &ver, 1) &&
		    ((ver >> 4) == 4 || (ver >> 4) == 6)) {
			if (dir == TAP_DIR_INGRESS && !skb->gso_size && uh.check) {
				__u64 pseudo = h.pseudo + bpf_htons(IPPROTO_UDP) + bpf_htons(l4len);

				s = sum_bytes(skb, off, l4len);
				bad_l4 = s < 0 || fold(s + pseudo) != 0xffff;
				checked = 1;
			}
			key.outer.sport = uh.source; /* the outer header's own ports: kept */
			key.outer.dport = uh.dest;
			encap = 2;
			off += sizeof(uh);
			l4len -= sizeof(uh);
		}
	}
	if (!frag && (proto == IPPROTO_IPIP || proto == IPPROTO_IPV6 || encap)) {
		/* Encapsulated (IPv4 or IPv6 in IPv4 or IPv6, or in GUE): the inner header names the
		 * connection; ports, flags and the L4 checksum are the inner packet's. An inner
		 * header that does not fit its outer one, or whose version is not the one the outer
		 * header announces, is malformed: the packet is counted under its outer header. */
		rc = parse_ip(skb, off, l4len, &key.inner, &in);
		if (rc || (proto == IPPROTO_IPIP && key.inner.family != 4) ||
		    (proto == IPPROTO_IPV6 && key.inner.family != 6)) {
			__builtin_memset(&key.inner, 0, sizeof(key.inner));
			meta(dir, TAP_TRUNCATED);
			goto account;
		}
		h = in;
		bad_l3 |= h.bad;
		proto = h.proto;
		tos = h.tos;
		encap = 1;
		t = &key.inner;
		t->present = 1;
		off = h.off;
		l4len = h.len;
		frag = h.frag;
	}
	if (!frag) { /* a fragment has no ports and no checkable L4 checksum */
		__u64 pseudo = 0;

		parse_l4(skb, off, proto, t, &key, &flags);
		/* Pseudo-header: addresses, protocol, L4 length (network order words); ICMPv6 has
		 * one too, ICMP not. */
		if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_ICMPV6)
			pseudo = h.pseudo + bpf_htons(proto) + bpf_htons(l4len);
		if (proto == IPPROTO_UDP && (t->sport | t->dport)) {
			__be16 ucheck = 1;

			bpf_skb_load_bytes(skb, off + 6, &ucheck, sizeof(ucheck));
			/* UDP without a checksum: nothing to verify (IPv6 forbids it: RFC 8200 8.1) */
			if (ucheck == 0 && t->family == 4) {
				checked |= dir == TAP_DIR_INGRESS;
				goto account;
			}
		}
		/* A GRO/GSO super-packet carries one segment's checksum (or a partial one) for
		 * many: it cannot be verified here and counts as unchecked, not as bad. */
		if (dir == TAP_DIR_INGRESS && !skb->gso_size &&
		    (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_ICMP ||
		     proto == IPPROTO_ICMPV6)) {
			s = sum_bytes(skb, off, l4len);
			bad_l4 |= s < 0 || fold(s + pseudo) != 0xffff;
			checked = 1;
		}
	}
account:
#ifdef TAP_AGGREGATE
	aggregate(&key.outer);
	aggregate(&key.inner);
	aggregate(&key.embedded);
#endif
	/* Read after the clock: a packet timed just before user space raises the period may land
	 * in the next one, so periods may overlap by a packet's processing time, never leave a
	 * packet out. */
	period = bpf_map_lookup_elem(&dsrc_tap_period, &zero);
	if (period)
		key.period = *period;
	v = bpf_map_lookup_elem(&dsrc_tap_flows, &key);
	if (!v) {
		struct tap_val *fresh = bpf_map_lookup_elem(&dsrc_tap_zero, &zero);

		if (!fresh)
			return;
		fresh->first_ns = now;
		fresh->last_ns = now;
		/* BPF_NOEXIST: a racing CPU may have inserted it; then update that one below. The
		 * initial value comes from a map: a 120-byte stack copy would not fit beside
		 * sum_bytes' buffer in the 512-byte stack the call chain shares. */
		if (bpf_map_update_elem(&dsrc_tap_flows, &key, fresh, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&dsrc_tap_flows, &key)) {
			meta(dir, TAP_OVERFLOW); /* table full: say so, never evict */
			return;
		}
		v = bpf_map_lookup_elem(&dsrc_tap_flows, &key);
		if (!v)
			return;
	}
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, skb->len);
	__sync_fetch_and_add(&v->bad_l3, bad_l3);
	/* checked before bad: a reader racing with these adds never sees bad > checked. */
	__sync_fetch_and_add(&v->l4_checked, checked);
	__sync_fetch_and_add(&v->bad_l4, bad_l4);
	__sync_fetch_and_add(&v->syn, (flags >> 1) & 1);
	__sync_fetch_and_add(&v->fin, flags & 1);
	__sync_fetch_and_add(&v->rst, (flags >> 2) & 1);
	__sync_fetch_and_add(&v->fragments, frag);
	{
		__u64 dscp_bit = 1ULL << (tos >> 2), ecn_bit = 1ULL << (tos & 3);

		/* Bits only ever set, without an atomic OR (BPF ISA v1 has none): two CPUs setting
		 * different bits at the same moment may lose one, which the next packet carrying
		 * that value sets again. Tested first so a steady flow writes nothing. */
		if (!(v->dscp_seen & dscp_bit))
			v->dscp_seen |= dscp_bit;
		if (!(v->ecn_seen & ecn_bit))
			v->ecn_seen |= ecn_bit;
	}
	if (encap) {
		__sync_fetch_and_add(&v->dscp_changed, (outer_tos >> 2) != (tos >> 2));
		__sync_fetch_and_add(&v->ecn_bad, (outer_tos & 3) && (outer_tos & 3) != (tos & 3));
	}
	if (now > v->last_ns) /* a CPU delayed since it read the clock must not move it back */
		v->last_ns = now;
}

SEC("tc")
int dsrc_tap_in(struct __sk_buff *skb)
{
	record(skb, TAP_DIR_INGRESS);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int dsrc_tap_eg(struct __sk_buff *skb)
{
	record(skb, TAP_DIR_EGRESS);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "GPL";
