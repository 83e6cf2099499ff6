// SPDX-License-Identifier: GPL-2.0
/* tap: per-flow packet accounting on one lab interface (tc ingress and egress), for checkers.
 *
 * For every IPv4 packet it updates the record of (source, destination, ports, protocol,
 * direction): packets, bytes, first and last time seen, TCP SYN/FIN/RST counts, and how many
 * packets had a bad IPv4 header checksum or a bad TCP/UDP/ICMP checksum. IPIP packets (a MUX's
 * output) are recorded under their outer header with protocol 4.
 *
 * L4 checksums are verified on ingress only: what arrives is what crossed the link. At the egress
 * hook a locally generated packet may still be CHECKSUM_PARTIAL (the stack completes it after tc),
 * which a tap cannot tell from a broken one; l4_checked says how many packets were verified.
 *
 * Honest accounting: the flow table is a plain hash map, never LRU. When it is full, the packet
 * is counted in TAP_OVERFLOW instead of silently evicting another flow, so a checker can answer
 * UNKNOWN rather than PASS on incomplete data.
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

#define TAP_DIR_INGRESS 0
#define TAP_DIR_EGRESS 1

#define TAP_PACKETS 0   /* every packet seen */
#define TAP_NON_IPV4 1  /* not IPv4 (not recorded per flow) */
#define TAP_OVERFLOW 2  /* IPv4 packets of flows that found the table full */
#define TAP_TRUNCATED 3 /* IPv4 packets too short to parse (counted, not per flow) */
#define TAP_META_SLOTS 4

#define CSUM_CHUNK 256  /* bytes summed per bpf_csum_diff call */
#define CSUM_CHUNKS 8   /* so segments up to 2048 bytes are checked; longer ones count as bad */

struct tap_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 dir;
	__u8 pad[2];
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
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* set at load time */
	__type(key, struct tap_key);
	__type(value, struct tap_val);
} dsrc_tap_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TAP_META_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} dsrc_tap_meta SEC(".maps");

static __always_inline void meta(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&dsrc_tap_meta, &slot);

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
static __always_inline __s64 sum_bytes(struct __sk_buff *skb, __u32 off, __u32 len)
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
		/* n = ((n - 1) & 255) + 1: a no-op for n in 1..256 that shows the verifier n is in
		 * 1..256 (bpf_skb_load_bytes refuses a size that may be 0); in asm because clang,
		 * knowing it is a no-op, would drop it. CSUM_CHUNK must stay 256 for it. */
		asm volatile("%[n] += -1; %[n] &= 255; %[n] += 1" : [n] "+r"(n));
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

static __always_inline void record(struct __sk_buff *skb, __u8 dir)
{
	struct tap_key key = {.dir = dir};
	struct tap_val *v, fresh = {};
	struct iphdr *iph;
	void *data, *data_end;
	__u32 ihl, tot, l4len, flags = 0;
	__u64 now = bpf_ktime_get_ns();
	int bad_l3 = 0, bad_l4 = 0, checked = 0;
	__s64 s;

	meta(TAP_PACKETS);
	if (skb->protocol != bpf_htons(ETH_P_IP)) {
		meta(TAP_NON_IPV4);
		return;
	}
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	iph = data + sizeof(struct ethhdr);
	if ((void *)(iph + 1) > data_end || iph->ihl < 5) {
		meta(TAP_TRUNCATED);
		return;
	}
	ihl = iph->ihl * 4;
	tot = bpf_ntohs(iph->tot_len);
	if (tot < ihl || ihl > 60) {
		meta(TAP_TRUNCATED);
		return;
	}
	key.saddr = iph->saddr;
	key.daddr = iph->daddr;
	key.proto = iph->protocol;
	s = sum_bytes(skb, sizeof(struct ethhdr), ihl);
	bad_l3 = s < 0 || fold(s) != 0xffff;
	l4len = tot - ihl;
	if (!(iph->frag_off & bpf_htons(0x3fff))) { /* not a fragment: ports and an L4 checksum */
		void *l4 = (void *)iph + ihl;
		__u64 pseudo = 0;

		if (l4 + 4 <= data_end &&
		    (iph->protocol == IPPROTO_TCP || iph->protocol == IPPROTO_UDP)) {
			key.sport = ((__be16 *)l4)[0];
			key.dport = ((__be16 *)l4)[1];
		}
		if (iph->protocol == IPPROTO_TCP && l4 + sizeof(struct tcphdr) <= data_end)
			flags = ((__u8 *)l4)[13];
		if (iph->protocol == IPPROTO_TCP || iph->protocol == IPPROTO_UDP) {
			/* Pseudo-header: addresses, protocol, L4 length (network order words). */
			pseudo = (__u64)(iph->saddr & 0xffff) + (iph->saddr >> 16) +
				 (iph->daddr & 0xffff) + (iph->daddr >> 16) +
				 bpf_htons(iph->protocol) + bpf_htons(l4len);
		}
		if (iph->protocol == IPPROTO_UDP && l4 + sizeof(struct udphdr) <= data_end &&
		    ((struct udphdr *)l4)->check == 0) {
			bad_l4 = 0; /* UDP without a checksum: nothing to verify */
			checked = dir == TAP_DIR_INGRESS;
		} else if (dir == TAP_DIR_INGRESS && (iph->protocol == IPPROTO_TCP ||
			   iph->protocol == IPPROTO_UDP || iph->protocol == IPPROTO_ICMP)) {
			s = sum_bytes(skb, sizeof(struct ethhdr) + ihl, l4len);
			bad_l4 = s < 0 || fold(s + pseudo) != 0xffff;
			checked = 1;
		}
	}
	v = bpf_map_lookup_elem(&dsrc_tap_flows, &key);
	if (!v) {
		fresh.first_ns = now;
		/* BPF_NOEXIST: a racing CPU may have inserted it; then update that one below. */
		if (bpf_map_update_elem(&dsrc_tap_flows, &key, &fresh, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&dsrc_tap_flows, &key)) {
			meta(TAP_OVERFLOW); /* table full: say so, never evict */
			return;
		}
		v = bpf_map_lookup_elem(&dsrc_tap_flows, &key);
		if (!v)
			return;
	}
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, skb->len);
	__sync_fetch_and_add(&v->bad_l3, bad_l3);
	__sync_fetch_and_add(&v->bad_l4, bad_l4);
	__sync_fetch_and_add(&v->l4_checked, checked);
	__sync_fetch_and_add(&v->syn, (flags >> 1) & 1);
	__sync_fetch_and_add(&v->fin, flags & 1);
	__sync_fetch_and_add(&v->rst, (flags >> 2) & 1);
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
