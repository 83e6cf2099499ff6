// SPDX-License-Identifier: GPL-2.0
/* tap: per-flow packet accounting on one lab interface (tc ingress and egress), for checkers.
 *
 * For every IPv4 packet it updates the record of its flow and direction: packets, bytes, first
 * and last time seen, TCP SYN/FIN/RST counts, fragments, and how many packets had a bad IPv4
 * header checksum or a bad TCP/UDP/ICMP checksum. A flow is keyed by what checkers need to tell
 * packets apart on a DSR path:
 * - the outer 5-tuple (ports 0 for fragments and port-less protocols, IPIP among them);
 * - for an encapsulated packet (a MUX's output), the encapsulated 5-tuple: DSR never rewrites the
 *   client's end, so the inner tuple ties an encapsulated packet to its connection. Two
 *   encapsulations are understood: IPIP (IPv4 protocol 4) and GUE variant 1 as Katran sends it,
 *   IPv4 directly in UDP to port TAP_GUE_PORT (no GUE header: the inner header's version
 *   nibble, 4, tells it). The port is a build define, from dsrconform.observe.taps.GUE_PORT;
 *   a UDP datagram to it whose payload does not start like an IPv4 header is plain UDP. For
 *   GUE, the outer UDP checksum (when not zero) is verified too, as part of the L4 one;
 * - for ICMP, type and code, and for ICMP errors the 5-tuple of the header they quote (which
 *   flow the error is about), of the outer or of the encapsulated ICMP.
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
 * Headers past the outer IPv4 one are read with bpf_skb_load_bytes into the stack: it copes with
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

#define TAP_DIR_INGRESS 0
#define TAP_DIR_EGRESS 1

#define TAP_PACKETS 0   /* every packet seen */
#define TAP_NON_IPV4 1  /* not IPv4 (not recorded per flow) */
#define TAP_OVERFLOW 2  /* IPv4 packets of flows that found the table full */
#define TAP_TRUNCATED 3 /* IPv4 packets too short to parse (counted, not per flow) */
#define TAP_META_PER_DIR 4 /* the slots above, for ingress, then again for egress */
#define TAP_META_SLOTS (2 * TAP_META_PER_DIR)

#ifndef TAP_GUE_PORT
#error "TAP_GUE_PORT (the GUE destination port) must be defined: see dsrconform.observe.taps"
#endif

#define CSUM_CHUNK 128  /* bytes summed per bpf_csum_diff call (a small stack buffer) */
#define CSUM_CHUNKS 16  /* so segments up to 2048 bytes are checked; longer ones count as bad */

/* One header's 5-tuple (addresses and ports in network order). */
struct tap_tuple {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 present; /* outer: the direction; inner, embedded: 1 when there is one */
	__u8 pad[2];
};

struct tap_key {
	struct tap_tuple outer;
	struct tap_tuple inner;    /* the IPIP payload's */
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
 * on the stack where it would not on packet memory), the last chunk zero-padded to whole words. */
static __noinline __s64 sum_bytes(struct __sk_buff *skb, __u32 off, __u32 len)
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
	key->embedded.saddr = q.saddr;
	key->embedded.daddr = q.daddr;
	key->embedded.proto = q.protocol;
	key->embedded.present = 1;
	if ((q.protocol == IPPROTO_TCP || q.protocol == IPPROTO_UDP) &&
	    !(q.frag_off & bpf_htons(0x1fff)) &&
	    !bpf_skb_load_bytes(skb, off + 8 + q.ihl * 4, ports, sizeof(ports))) {
		key->embedded.sport = ports[0];
		key->embedded.dport = ports[1];
	}
}

#ifdef TAP_AGG_MASK
/* Aggregation (built with -DTAP_AGG_NET=... -DTAP_AGG_MASK=..., host order): an address in that
 * network (a SYN flood's spoofed sources) is recorded as the network's address with port 0, so
 * a flood of millions of 5-tuples makes a few records instead of overflowing the table. */
static __always_inline void aggregate(struct tap_tuple *t)
{
	if ((bpf_ntohl(t->saddr) & TAP_AGG_MASK) == TAP_AGG_NET) {
		t->saddr = bpf_htonl(TAP_AGG_NET);
		t->sport = 0;
	}
	if ((bpf_ntohl(t->daddr) & TAP_AGG_MASK) == TAP_AGG_NET) {
		t->daddr = bpf_htonl(TAP_AGG_NET);
		t->dport = 0;
	}
}
#endif

static __always_inline void record(struct __sk_buff *skb, __u8 dir)
{
	struct tap_key key = {};
	struct tap_tuple *t = &key.outer; /* the innermost header's tuple: ports go there */
	struct tap_val *v;
	__u32 *period;
	struct iphdr *iph, in;
	void *data, *data_end;
	__u32 off, ihl, tot, l4len, saddr, daddr, flags = 0, zero = 0;
	__u64 now = bpf_ktime_get_ns();
	int bad_l3 = 0, bad_l4 = 0, checked = 0, frag, encap = 0;
	__u8 proto, tos, outer_tos;
	__s64 s;

	meta(dir, TAP_PACKETS);
	if (skb->protocol != bpf_htons(ETH_P_IP)) {
		meta(dir, TAP_NON_IPV4);
		return;
	}
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	iph = data + sizeof(struct ethhdr);
	if ((void *)(iph + 1) > data_end || iph->ihl < 5) {
		meta(dir, TAP_TRUNCATED);
		return;
	}
	ihl = iph->ihl * 4;
	tot = bpf_ntohs(iph->tot_len);
	/* A total length below the header or beyond the frame (as received: a GSO packet's
	 * headers describe one segment, so only non-GSO packets are held to it). */
	if (tot < ihl || (!skb->gso_size && tot > skb->len - sizeof(struct ethhdr))) {
		meta(dir, TAP_TRUNCATED);
		return;
	}
	saddr = iph->saddr;
	daddr = iph->daddr;
	proto = iph->protocol;
	tos = outer_tos = iph->tos;
	key.outer.saddr = saddr;
	key.outer.daddr = daddr;
	key.outer.proto = proto;
	key.outer.present = dir;
	s = sum_bytes(skb, sizeof(struct ethhdr), ihl);
	bad_l3 = s < 0 || fold(s) != 0xffff;
	off = sizeof(struct ethhdr) + ihl;
	l4len = tot - ihl;
	frag = !!(iph->frag_off & bpf_htons(0x3fff)); /* MF set or a non-zero offset */

	if (!frag && proto == IPPROTO_UDP && l4len >= sizeof(struct udphdr) + sizeof(in)) {
		/* GUE variant 1 (IPv4 in UDP to the GUE port): verify the outer UDP checksum (as
		 * for any UDP, on ingress, not for GSO, not when zero), then go on to the inner
		 * header as for IPIP. */
		struct udphdr uh;
		__u8 ver = 0;

		if (!bpf_skb_load_bytes(skb, off, &uh, sizeof(uh)) &&
		    uh.dest == bpf_htons(TAP_GUE_PORT) &&
		    !bpf_skb_load_bytes(skb, off + sizeof(uh), &ver, 1) && (ver >> 4) == 4) {
			if (dir == TAP_DIR_INGRESS && !skb->gso_size && uh.check) {
				__u64 pseudo = (__u64)(saddr & 0xffff) + (saddr >> 16) +
					       (daddr & 0xffff) + (daddr >> 16) +
					       bpf_htons(IPPROTO_UDP) + bpf_htons(l4len);

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
	if (!frag && (proto == IPPROTO_IPIP || encap)) {
		/* Encapsulated: the inner header names the connection; ports, flags and the L4
		 * checksum are the inner packet's. An inner header that does not fit its outer
		 * one is malformed: the packet is counted under its outer header only. */
		if (bpf_skb_load_bytes(skb, off, &in, sizeof(in)) || in.ihl < 5 ||
		    bpf_ntohs(in.tot_len) < in.ihl * 4 || bpf_ntohs(in.tot_len) > l4len) {
			meta(dir, TAP_TRUNCATED);
			goto account;
		}
		ihl = in.ihl * 4;
		s = sum_bytes(skb, off, ihl);
		bad_l3 |= s < 0 || fold(s) != 0xffff;
		saddr = in.saddr;
		daddr = in.daddr;
		proto = in.protocol;
		tos = in.tos;
		encap = 1;
		t = &key.inner;
		t->saddr = saddr;
		t->daddr = daddr;
		t->proto = proto;
		t->present = 1;
		l4len = bpf_ntohs(in.tot_len) - ihl;
		off += ihl;
		frag = !!(in.frag_off & bpf_htons(0x3fff));
	}
	if (!frag) { /* a fragment has no ports and no checkable L4 checksum */
		__u64 pseudo = 0;

		parse_l4(skb, off, proto, t, &key, &flags);
		if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
			/* Pseudo-header: addresses, protocol, L4 length (network order words). */
			pseudo = (__u64)(saddr & 0xffff) + (saddr >> 16) + (daddr & 0xffff) +
				 (daddr >> 16) + bpf_htons(proto) + bpf_htons(l4len);
		}
		if (proto == IPPROTO_UDP && (t->sport | t->dport)) {
			__be16 ucheck = 1;

			bpf_skb_load_bytes(skb, off + 6, &ucheck, sizeof(ucheck));
			if (ucheck == 0) { /* UDP without a checksum: nothing to verify */
				checked |= dir == TAP_DIR_INGRESS;
				goto account;
			}
		}
		/* A GRO/GSO super-packet carries one segment's checksum (or a partial one) for
		 * many: it cannot be verified here and counts as unchecked, not as bad. */
		if (dir == TAP_DIR_INGRESS && !skb->gso_size &&
		    (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_ICMP)) {
			s = sum_bytes(skb, off, l4len);
			bad_l4 |= s < 0 || fold(s + pseudo) != 0xffff;
			checked = 1;
		}
	}
account:
#ifdef TAP_AGG_MASK
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
