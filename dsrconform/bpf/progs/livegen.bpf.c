// SPDX-License-Identifier: GPL-2.0
/* livegen: the packet generator of `dsrconform bench mux` and of the SYN flood
 * (dsrconform/traffic/synflood.py).
 *
 * User space runs this program with BPF_PROG_TEST_RUN and BPF_F_TEST_XDP_LIVE_FRAMES: the
 * kernel then builds `repeat` real frames from page-pool pages, runs the program on each, and
 * turns XDP_TX into a transmission out of the ctx's ingress interface (the bench veth), so each
 * run of this program is one packet on the wire.
 *
 * Every run copies the whole 64-byte frame from dsrc_lg_tmpl, then writes a per-packet source
 * address and port (from a per-CPU sequence number) and patches both checksums incrementally.
 * Modes (dsrc_lg_cfg):
 * - LG_MODE_NEW_FLOWS: flow number = sequence number, i.e. a new (address, port) per packet for
 *   ~115 M packets: connection-table misses, like a SYN flood of real clients.
 * - LG_MODE_REPEAT_FLOWS: flow number = sequence % nflows: the same nflows flows over and over,
 *   i.e. connection-table hits after the first pass.
 * The TCP flags (SYN or ACK) and the destination come from the template; user space builds it
 * per mode. The source range comes from dsrc_lg_cfg too (src_base, src_span, sport_base,
 * sport_span); a span of 0 selects the bench's defaults below, so flow n is always address
 * src_base + n % src_span, port sport_base + (n / src_span) % sport_span.
 *
 * The template holds source address 0 and source port 0, and checksums computed over those
 * zeroes, so adding the new words to the checksums is exact (RFC 1624 with old value 0).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define LG_FRAME_LEN 64
#define LG_MODE_NEW_FLOWS 0
#define LG_MODE_REPEAT_FLOWS 1

/* Default sources (a zero span in dsrc_lg_cfg): 198.18.1.0 .. 198.18.7.255 (the bench's client
 * range) x ports 1024..65535. */
#define LG_SRC_BASE 0xc6120100 /* 198.18.1.0, host order */
#define LG_SRC_SPAN (7 * 256)
#define LG_SPORT_BASE 1024
#define LG_SPORT_SPAN (65536 - LG_SPORT_BASE)

struct dsrc_lg_frame {
	__u8 bytes[LG_FRAME_LEN];
};

struct dsrc_lg_config {
	__u32 mode;       /* LG_MODE_* */
	__u32 nflows;     /* LG_MODE_REPEAT_FLOWS: number of distinct flows (0 acts as 1) */
	__u32 src_base;   /* first source address, host order (src_span 0: LG_SRC_BASE) */
	__u32 src_span;   /* number of source addresses (0: LG_SRC_SPAN and LG_SRC_BASE) */
	__u32 sport_base; /* first source port (sport_span 0: LG_SPORT_BASE) */
	__u32 sport_span; /* number of source ports (0: LG_SPORT_SPAN and LG_SPORT_BASE) */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dsrc_lg_frame);
} dsrc_lg_tmpl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dsrc_lg_config);
} dsrc_lg_cfg SEC(".maps");

/* Per CPU, so the hot path needs no atomics. User space pins the generating thread to one CPU,
 * otherwise two CPUs would replay the same "new" flows. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} dsrc_lg_seq SEC(".maps");

/* Add 16-bit words (already summed into `add`) to a one's-complement checksum field. */
static __always_inline __u16 csum_add(__u16 csum, __u32 add)
{
	__u32 sum = (__u16)~csum + add;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

SEC("xdp")
int dsrc_livegen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 key = 0;
	struct dsrc_lg_frame *tmpl = bpf_map_lookup_elem(&dsrc_lg_tmpl, &key);
	struct dsrc_lg_config *cfg = bpf_map_lookup_elem(&dsrc_lg_cfg, &key);
	__u64 *seq = bpf_map_lookup_elem(&dsrc_lg_seq, &key);
	struct iphdr *ip = data + ETH_HLEN;
	struct tcphdr *tcp = data + ETH_HLEN + sizeof(*ip);
	__u64 flow, *dst = data;
	const __u64 *src;
	__u32 saddr, src_base, src_span, sport_base, sport_span;
	__u16 sport;
	int i;

	if (!tmpl || !cfg || !seq)
		return XDP_DROP;
	/* One check covers every write below: the frame is the template's size (user space passes
	 * exactly LG_FRAME_LEN bytes), and the verifier needs it proven before any packet access. */
	if (data + LG_FRAME_LEN > data_end)
		return XDP_DROP;

	/* Live frames recycle their page-pool pages without re-copying the original frame: a page
	 * comes back as the last program that touched it left it (a MUX has written an outer IP
	 * header over the start of it, a reflector has swapped the MACs). Only the frame pointers
	 * are reset. So rebuild the whole frame every time, never just the varying fields. */
	src = (const __u64 *)tmpl->bytes;
#pragma unroll
	for (i = 0; i < LG_FRAME_LEN / 8; i++)
		dst[i] = src[i];

	src_base = cfg->src_span ? cfg->src_base : LG_SRC_BASE;
	src_span = cfg->src_span ? cfg->src_span : LG_SRC_SPAN;
	sport_base = cfg->sport_span ? cfg->sport_base : LG_SPORT_BASE;
	sport_span = cfg->sport_span ? cfg->sport_span : LG_SPORT_SPAN;

	flow = (*seq)++;
	if (cfg->mode == LG_MODE_REPEAT_FLOWS)
		flow = cfg->nflows ? flow % cfg->nflows : 0;
	saddr = bpf_htonl(src_base + (__u32)(flow % src_span));
	sport = bpf_htons(sport_base + (__u32)((flow / src_span) % sport_span));

	ip->saddr = saddr;
	tcp->source = sport;
	/* One's-complement sums do not depend on byte order, so the raw network-order words are
	 * added as they lie in memory. The TCP checksum covers the source address through the
	 * pseudo-header. */
	ip->check = csum_add(ip->check, (saddr & 0xffff) + (saddr >> 16));
	tcp->check = csum_add(tcp->check, (saddr & 0xffff) + (saddr >> 16) + sport);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
