// SPDX-License-Identifier: GPL-2.0
/* mux.bpf.c - the reference DSR MUX: an XDP program on the MUX's interface toward the border router.
 *
 * For each IPv4 packet to a VIP service (vip, port, proto):
 *   1. connection table (LRU hash, 5-tuple -> backend) first;
 *   2. on a miss, the VIP's Maglev table (computed by the control plane), indexed by a flow hash
 *      that is identical on every MUX, so a flow re-hashed to another MUX finds the same server;
 *   3. encapsulate in IPIP (outer source = this MUX, destination = the server) and XDP_TX back
 *      toward the router, which routes the outer packet to the server.
 * ICMP errors about a VIP flow are steered by their embedded header to that flow's server.
 * Anything not addressed to a VIP passes untouched; malformed VIP traffic is dropped and counted
 * per reason, never emitted.
 *
 * SYN-flood policy (docs/mux.md): a TCP SYN never creates a connection-table entry; it is forwarded
 * by Maglev alone, which gives the same answer on every MUX while the backend set is stable. The
 * first non-SYN packet of a flow (the handshake's ACK, which a spoofed source never sends) creates
 * the entry, and those inserts are bounded per CPU by a token bucket, so no flood, SYN or ACK,
 * can evict established entries faster than new_conn_rate per CPU.
 *
 * Mutants (reference_impl/mutants.py) are built from this file with -DMUTANT_*.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/icmp.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dsr_shared.h"
#include "dsr_helpers.h"

#define NO_BACKEND 0xffffffff
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IP_DF 0x4000

/* ---- maps (programmed by reference_impl/mux.py) ---- */

/* The MUX's own settings: one entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mux_config);
} dsrc_cfg SEC(".maps");

/* (vip, port, proto) -> service. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct vip_key);
	__type(value, struct vip_meta);
} dsrc_vips SEC(".maps");

/* VIP addresses alone: classifies fragments, optioned packets and ICMP, which have no ports. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VIPS);
	__type(key, __u32);
	__type(value, __u32);
} dsrc_vip_addrs SEC(".maps");

/* Per VIP: which half (0 or 1) of dsrc_ring is live. The control plane fills the standby half,
 * then flips this one word: a packet sees the old table or the new one, never a mix. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_VIPS);
	__type(key, __u32);
	__type(value, __u32);
} dsrc_active SEC(".maps");

/* Maglev tables: [half][vip_index][ring_size] backend indices; max_entries set at load time to
 * 2 * MAX_VIPS * ring_size. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * MAX_VIPS * DEFAULT_RING_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} dsrc_ring SEC(".maps");

/* Per VIP: its backend indices in order (used only by the modulo-hash mutant and for tooling). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_VIPS * MAX_BACKENDS);
	__type(key, __u32);
	__type(value, __u32);
} dsrc_vip_bes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
} dsrc_backends SEC(".maps");

/* The connection table: 5-tuple -> backend. LRU, so idle entries age out under pressure. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DEFAULT_CONN_ENTRIES);
	__type(key, struct flow_key);
	__type(value, struct conn_value);
} dsrc_conn SEC(".maps");

/* Per-CPU token bucket bounding connection-table inserts. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct insert_budget);
} dsrc_budget SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_SLOTS);
	__type(key, __u32);
	__type(value, struct counter);
} dsrc_stats SEC(".maps");

/* ---- helpers ---- */

static __always_inline void count(__u32 slot, __u64 bytes)
{
	struct counter *c = bpf_map_lookup_elem(&dsrc_stats, &slot);

	if (c) { /* per-CPU slot: no atomics needed */
		c->packets++;
		c->bytes += bytes;
	}
}

static __always_inline int drop(__u32 reason, __u64 bytes)
{
	count(STAT_GLOBAL_BASE + reason, bytes);
	return XDP_DROP;
}

/* May this CPU add a connection-table entry now? Refills rate tokens per second up to burst. */
static __always_inline int insert_allowed(const struct mux_config *cfg)
{
#ifdef MUTANT_UNBOUNDED_INSERTS
	return 1;
#else
	__u32 zero = 0;
	struct insert_budget *b;
	__u64 now, elapsed, cap;

	if (cfg->new_conn_rate == 0)
		return 1; /* 0 = no limit, by configuration */
	b = bpf_map_lookup_elem(&dsrc_budget, &zero);
	if (!b)
		return 0;
	now = bpf_ktime_get_ns();
	elapsed = now - b->last_ns;
	b->last_ns = now;
	cap = (__u64)cfg->new_conn_burst * 1000;
	/* Capping elapsed at 1 s keeps elapsed * rate inside 64 bits; a bucket idle that long is
	 * simply refilled to its cap. */
	if (elapsed > 1000000000ULL)
		b->tokens_milli = cap;
	else
		b->tokens_milli += elapsed * cfg->new_conn_rate / 1000000;
	if (b->tokens_milli > cap)
		b->tokens_milli = cap;
	if (b->tokens_milli < 1000)
		return 0;
	b->tokens_milli -= 1000;
	return 1;
#endif
}

/* Choose the server for a flow. may_insert: remember the choice in the connection table. Returns
 * the backend's address (network order) or 0 when the VIP has none. */
static __always_inline __u32 pick_backend(const struct flow_key *fk, const struct vip_meta *vm,
					  const struct mux_config *cfg, int may_insert, __u64 bytes)
{
	__u32 vip_index = vm->vip_index, idx, h, seed, *slot;
	struct backend *be;

	if (vip_index >= MAX_VIPS) /* bounds the table arithmetic for the verifier */
		return 0;
#ifndef MUTANT_NO_CONN_TABLE
	struct conn_value *cv = bpf_map_lookup_elem(&dsrc_conn, fk);

	if (cv && cv->vip_index == vip_index) {
		idx = cv->backend;
		be = bpf_map_lookup_elem(&dsrc_backends, &idx);
		/* A removed backend's slot is zeroed: fall through to Maglev instead of a dead server. */
		if (be && be->addr && idx < MAX_BACKENDS) {
			count(STAT_GLOBAL_BASE + STAT_LRU_HIT, 0);
			count(STAT_BACKEND_BASE + idx, bytes);
			return be->addr;
		}
	}
#endif
	count(STAT_GLOBAL_BASE + STAT_LRU_MISS, 0);
	seed = cfg->hash_seed;
#ifdef MUTANT_PER_MUX_SEED
	seed ^= bpf_ntohl(cfg->mux_addr);
#endif
	h = flow_hash(bpf_ntohl(fk->saddr), bpf_ntohl(fk->daddr), bpf_ntohs(fk->sport),
		      bpf_ntohs(fk->dport), fk->proto, seed);
#ifdef MUTANT_MODULO_HASH
	if (vm->num_backends == 0)
		return 0;
	idx = vip_index * MAX_BACKENDS + h % vm->num_backends;
	slot = bpf_map_lookup_elem(&dsrc_vip_bes, &idx);
#else
	__u32 *active = bpf_map_lookup_elem(&dsrc_active, &vip_index);

	if (!active || cfg->ring_size == 0)
		return 0;
	idx = (((*active) & 1) * MAX_VIPS + vip_index) * cfg->ring_size + h % cfg->ring_size;
	slot = bpf_map_lookup_elem(&dsrc_ring, &idx);
#endif
	if (!slot || *slot == NO_BACKEND)
		return 0;
	idx = *slot;
	be = bpf_map_lookup_elem(&dsrc_backends, &idx);
	if (!be || !be->addr)
		return 0;
#ifndef MUTANT_NO_CONN_TABLE
	if (may_insert) {
		if (insert_allowed(cfg)) {
			struct conn_value v = {.backend = idx, .vip_index = vip_index};

			bpf_map_update_elem(&dsrc_conn, fk, &v, BPF_ANY);
			count(STAT_GLOBAL_BASE + STAT_LRU_INSERT, 0);
		} else {
			count(STAT_GLOBAL_BASE + STAT_LRU_INSERT_SKIPPED, 0);
		}
	}
#endif
	if (idx < MAX_BACKENDS)
		count(STAT_BACKEND_BASE + idx, bytes);
	return be->addr;
}

/* Prepend the outer IPv4 header and a new Ethernet header, then send the frame back out. */
static __always_inline int encap_and_tx(struct xdp_md *ctx, const struct mux_config *cfg,
					__u32 backend_addr, __u16 inner_len, __u8 tos, __u16 frag)
{
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *outer;

	if (cfg->mtu && (__u32)inner_len + sizeof(struct iphdr) > cfg->mtu)
		return drop(STAT_DROP_TOO_BIG, inner_len);
	if (bpf_xdp_adjust_head(ctx, 0 - (int)sizeof(struct iphdr)))
		return drop(STAT_DROP_ENCAP, inner_len);
	/* adjust_head invalidated every packet pointer: re-derive and re-check them. */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	outer = data + sizeof(struct ethhdr);
	if ((void *)(outer + 1) > data_end)
		return drop(STAT_DROP_ENCAP, inner_len);
	__builtin_memcpy(eth->h_dest, cfg->dst_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, cfg->src_mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);
	outer->version = 4;
	outer->ihl = 5;
	outer->tos = tos;
	outer->tot_len = bpf_htons(inner_len + sizeof(struct iphdr));
	outer->id = 0;
	outer->frag_off = frag & bpf_htons(IP_DF); /* keep the client's DF: PMTU keeps working */
	outer->ttl = cfg->ttl;
	outer->protocol = IPPROTO_IPIP;
	outer->check = 0;
	outer->saddr = cfg->mux_addr;
	outer->daddr = backend_addr;
#ifndef MUTANT_NO_OUTER_CSUM
	outer->check = ipv4_csum20(outer);
#endif
	count(STAT_GLOBAL_BASE + STAT_TX, inner_len + sizeof(struct iphdr));
	return XDP_TX;
}

/* ICMP destination-unreachable / time-exceeded addressed to a VIP: the embedded header is the
 * server's reply (VIP:port -> client:port); reverse it to find the client->VIP flow. */
static __always_inline int handle_icmp(struct xdp_md *ctx, struct iphdr *iph, void *data_end,
				       const struct mux_config *cfg)
{
	struct icmphdr *icmp = (void *)(iph + 1);
	struct iphdr *inner;
	__be16 *ports;
	struct flow_key fk = {};
	struct vip_key vk = {};
	struct vip_meta *vm;
	__u16 len = bpf_ntohs(iph->tot_len);
	__u32 be;

	if ((void *)(icmp + 1) > data_end)
		return drop(STAT_DROP_L4_TRUNCATED, len);
	if (icmp->type != ICMP_DEST_UNREACH && icmp->type != ICMP_TIME_EXCEEDED)
		return XDP_PASS; /* echo and friends are for the MUX's own stack */
	inner = (void *)(icmp + 1);
	/* Need the embedded IPv4 header plus the first 4 bytes of its L4 header (the ports). */
	if ((void *)(inner + 1) > data_end || inner->ihl != 5)
		return drop(STAT_DROP_ICMP_MALFORMED, len);
	ports = (void *)(inner + 1);
	if ((void *)(ports + 2) > data_end)
		return drop(STAT_DROP_ICMP_MALFORMED, len);
	if (inner->protocol != IPPROTO_TCP && inner->protocol != IPPROTO_UDP)
		return XDP_PASS;
	vk.addr = inner->saddr;
	vk.port = ports[0];
	vk.proto = inner->protocol;
	vm = bpf_map_lookup_elem(&dsrc_vips, &vk);
	if (!vm)
		return XDP_PASS;
#ifdef MUTANT_ICMP_OUTER_HASH
	fk.saddr = iph->saddr;
	fk.daddr = iph->daddr;
	fk.proto = IPPROTO_ICMP;
#else
	fk.saddr = inner->daddr;
	fk.daddr = inner->saddr;
	fk.sport = ports[1];
	fk.dport = ports[0];
	fk.proto = inner->protocol;
#endif
	be = pick_backend(&fk, vm, cfg, 0, len); /* an error never creates flow state */
	if (!be)
		return drop(STAT_DROP_NO_BACKEND, len);
	count(STAT_GLOBAL_BASE + STAT_ICMP_FORWARDED, len);
	return encap_and_tx(ctx, cfg, be, len, iph->tos, iph->frag_off);
}

/* Checks and forwarding of a packet to a VIP service; iph is a 20-byte header, not a fragment. */
static __always_inline int handle_vip(struct xdp_md *ctx, struct iphdr *iph, void *data_end,
				      const struct vip_meta *vm)
{
	struct flow_key fk = {};
	struct mux_config *cfg;
	__u32 zero = 0, be, l4_min;
	__u16 len;
	int may_insert = 1;

	if (ipv4_csum20(iph) != 0)
		return drop(STAT_DROP_BAD_IP_CSUM, 0);
	len = bpf_ntohs(iph->tot_len);
	if (len < sizeof(struct iphdr) || (void *)iph + len > data_end)
		return drop(STAT_DROP_IP_TRUNCATED, 0);
	if (iph->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)(iph + 1);

		if ((void *)(tcp + 1) > data_end || tcp->doff < 5)
			return drop(STAT_DROP_L4_TRUNCATED, len);
		l4_min = tcp->doff * 4;
		fk.sport = tcp->source;
		fk.dport = tcp->dest;
		/* A SYN alone never creates state (the SYN-flood policy above). */
		if (tcp->syn && !tcp->ack)
			may_insert = 0;
#ifdef MUTANT_UNBOUNDED_INSERTS
		may_insert = 1;
#endif
	} else {
		struct udphdr *udp = (void *)(iph + 1);

		if ((void *)(udp + 1) > data_end)
			return drop(STAT_DROP_L4_TRUNCATED, len);
		l4_min = sizeof(struct udphdr);
		fk.sport = udp->source;
		fk.dport = udp->dest;
	}
	/* The L4 header must also lie inside the IP packet, not just inside the frame. */
	if (sizeof(struct iphdr) + l4_min > len)
		return drop(STAT_DROP_L4_TRUNCATED, len);
	cfg = bpf_map_lookup_elem(&dsrc_cfg, &zero);
	if (!cfg)
		return XDP_ABORTED;
	fk.saddr = iph->saddr;
	fk.daddr = iph->daddr;
	fk.proto = iph->protocol;
	be = pick_backend(&fk, vm, cfg, may_insert, len);
	if (!be)
		return drop(STAT_DROP_NO_BACKEND, len);
	if (vm->vip_index < MAX_VIPS)
		count(STAT_VIP_BASE + vm->vip_index, len);
	return encap_and_tx(ctx, cfg, be, len, iph->tos, iph->frag_off);
}

SEC("xdp")
int dsrc_mux(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct vip_key vk = {};
	struct vip_meta *vm;
	struct mux_config *cfg;
	__be16 *ports;
	__u32 zero = 0;
	__u16 len;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		goto pass; /* not IPv4: not ours */
	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end)
		return drop(STAT_DROP_IP_TRUNCATED, 0);
	ports = (void *)(iph + 1);

	/* Fast path: a plain TCP/UDP packet is classified by one lookup of (vip, port, proto); a miss
	 * means "not a VIP service" whatever the address, so it passes untouched. Only the rare shapes
	 * below (options, fragments, ICMP, cut ports) need the VIP address set. */
	if (iph->ihl == 5 && !(iph->frag_off & bpf_htons(IP_MF | IP_OFFSET)) &&
	    (iph->protocol == IPPROTO_TCP || iph->protocol == IPPROTO_UDP) &&
	    (void *)(ports + 2) <= data_end) {
		vk.addr = iph->daddr;
		vk.port = ports[1];
		vk.proto = iph->protocol;
		vm = bpf_map_lookup_elem(&dsrc_vips, &vk);
		if (!vm)
			goto pass;
		return handle_vip(ctx, iph, data_end, vm);
	}

	if (!bpf_map_lookup_elem(&dsrc_vip_addrs, &iph->daddr))
		goto pass;
	/* Addressed to a VIP: validate before trusting any field. */
	if (iph->ihl < 5)
		return drop(STAT_DROP_BAD_IHL, 0);
	if (iph->ihl != 5)
		return drop(STAT_DROP_IP_OPTIONS, 0);
	if (ipv4_csum20(iph) != 0)
		return drop(STAT_DROP_BAD_IP_CSUM, 0);
	len = bpf_ntohs(iph->tot_len);
	if (len < sizeof(struct iphdr) || (void *)iph + len > data_end)
		return drop(STAT_DROP_IP_TRUNCATED, 0);
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return drop(STAT_DROP_FRAGMENT, len);
	if (iph->protocol == IPPROTO_ICMP) {
		cfg = bpf_map_lookup_elem(&dsrc_cfg, &zero);
		if (!cfg)
			return XDP_ABORTED;
		return handle_icmp(ctx, iph, data_end, cfg);
	}
	if (iph->protocol == IPPROTO_TCP || iph->protocol == IPPROTO_UDP)
		return drop(STAT_DROP_L4_TRUNCATED, len); /* the ports are cut off */
pass:
	count(STAT_GLOBAL_BASE + STAT_PASS, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
