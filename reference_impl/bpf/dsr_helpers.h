/* dsr_helpers.h - small inline helpers shared by the MUX, agent and gateway programs:
 * the flow hash (mirrored bit for bit by reference_impl/flowhash.py) and checksum arithmetic.
 */
#ifndef DSR_HELPERS_H
#define DSR_HELPERS_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

/* The ICMP header, spelled out: <linux/icmp.h> pulls in glibc's <sys/socket.h> (through
 * <linux/if.h>), which under -target bpf wants the 32-bit glibc headers (gnu/stubs-32.h) that a
 * plain Debian install lacks. The 4 bytes after the checksum vary by type (unused here). */
struct icmphdr {
	__u8 type;
	__u8 code;
	__be16 checksum;
	__be32 rest;
};

#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11

/* MurmurHash3's finaliser: a few multiplies, no loops, no tables: cheap in the fast path. */
static __always_inline __u32 fmix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* All inputs in host order. Every MUX must compute the same value for the same 5-tuple. */
static __always_inline __u32 flow_hash(__u32 saddr, __u32 daddr, __u16 sport, __u16 dport,
				       __u8 proto, __u32 seed)
{
	__u32 h = seed;

	h = fmix32(h ^ saddr);
	h = fmix32(h ^ daddr);
	h = fmix32(h ^ (((__u32)sport << 16) | dport));
	return fmix32(h ^ proto);
}

/* IPv6: every one of the 128 bits of both addresses (words in host order, most significant
 * first) goes through the mix, then the ports and protocol as flow_hash() does. Mirrored by
 * reference_impl/flowhash.py:flow_hash6. */
static __always_inline __u32 flow_hash6(const __u32 *saddr, const __u32 *daddr, __u16 sport,
					__u16 dport, __u8 proto, __u32 seed)
{
	__u32 h = seed;

#ifdef MUTANT_V6_HASH_LOW32
	/* The bug: only the low 32 bits of each address (the interface identifier's half): clients
	 * that differ above them hash alike. */
	h = fmix32(h ^ saddr[3]);
	h = fmix32(h ^ daddr[3]);
#else
	h = fmix32(h ^ saddr[0]);
	h = fmix32(h ^ saddr[1]);
	h = fmix32(h ^ saddr[2]);
	h = fmix32(h ^ saddr[3]);
	h = fmix32(h ^ daddr[0]);
	h = fmix32(h ^ daddr[1]);
	h = fmix32(h ^ daddr[2]);
	h = fmix32(h ^ daddr[3]);
#endif
	h = fmix32(h ^ (((__u32)sport << 16) | dport));
	return fmix32(h ^ proto);
}

/* The slot of a VIP service in one half of dsrc_vip_slots (VIP_SLOTS a power of 2; inputs in host
 * order). The control plane searches for a seed that gives every configured service its own slot
 * (a perfect hash), so a lookup is one array read and one key compare: no call into the kernel's
 * hash table code. Mirrored by reference_impl/flowhash.py:vip_slot. */
static __always_inline __u32 vip_slot(__u32 addr, __u16 port, __u8 proto, __u32 seed)
{
	return fmix32(seed ^ addr ^ ((((__u32)port << 8) | proto) * 0x9e3779b1u)) & (VIP_SLOTS - 1);
}

/* The Maglev slot of flow hash h in a table of ring_size entries: h * ring_size / 2^32. As uniform
 * as h % ring_size, but a multiply instead of a 64-bit division in the per-packet path. */
static __always_inline __u32 ring_slot(__u32 h, __u32 ring_size)
{
	return (__u32)(((__u64)h * ring_size) >> 32);
}

static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Checksum of a 20-byte IPv4 header (no options) whose check field is zero or is being verified:
 * the result is 0 for a header with a correct checksum. Five 32-bit loads summed in 64 bits (the
 * one's-complement sum does not care how the words are grouped), then folded: fewer loads and
 * adds than ten 16-bit words, and no loop for the verifier. */
static __always_inline __u16 ipv4_csum20(const void *hdr)
{
	const __u32 *p = hdr;
	__u64 sum = (__u64)p[0] + p[1] + p[2] + p[3] + p[4];

	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	return csum_fold32((__u32)(sum & 0xffff) + (__u32)(sum >> 16));
}

#endif /* DSR_HELPERS_H */
