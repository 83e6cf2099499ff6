// SPDX-License-Identifier: GPL-2.0
/* mux.bpf.c - the reference DSR MUX: an XDP program on the MUX's interface toward the border router.
 *
 * For each IPv4 or IPv6 packet to a VIP service (vip, port, proto):
 *   1. connection table (LRU hash, 5-tuple -> backend) first;
 *   2. on a miss, the VIP's Maglev table (computed by the control plane), indexed by a flow hash
 *      that is identical on every MUX, so a flow re-hashed to another MUX finds the same server;
 *   3. encapsulate in IPIP (outer source = this MUX, destination = the server) and XDP_TX back
 *      toward the router, which routes the outer packet to the server. A server with an IPv6
 *      address gets an outer IPv6 header instead: IPv6-in-IPv6 for IPv6 VIPs, IPv4-in-IPv6 for
 *      an IPv4 VIP whose backends are IPv6 (mux_ipv6.h).
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

/* (vip, port, proto) -> service: [half][VIP_SLOTS] slots of a perfect hash whose seed for each half
 * is in dsrc_vip_seed. The control plane writes the standby half and its seed, then flips
 * dsrc_vip_half. An array read instead of a hash-map lookup: on this kind of CPU every call and
 * return in the per-packet path is expensive (return thunks), and a hash-map lookup is four. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * VIP_SLOTS);
	__type(key, __u32);
	__type(value, struct vip_slot);
} dsrc_vip_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} dsrc_vip_seed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} dsrc_vip_half SEC(".maps");

/* VIP addresses alone: classifies fragments, optioned packets and ICMP, which have no ports. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VIPS);
	__type(key, __u32);
	__type(value, __u32);
} dsrc_vip_addrs SEC(".maps");

/* Per VIP: its state word (VIP_STATE_* in dsr_shared.h): which half of dsrc_ring is live, whether
 * SYNs must consult the connection table, and the VIP's incarnation. The control plane fills the
 * standby half of dsrc_ring, then writes this one word: a packet sees the old table or the new
 * one, never a mix. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_VIPS);
	__type(key, __u32);
	__type(value, __u32);
} dsrc_active SEC(".maps");

/* Maglev tables: [half][vip_index][chunk] of RING_CHUNK backend indices each, chunks =
 * ceil(ring_size / RING_CHUNK); max_entries set at load time to 2 * MAX_VIPS * chunks. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * MAX_VIPS * ((DEFAULT_RING_SIZE + RING_CHUNK - 1) / RING_CHUNK));
	__type(key, __u32);
	__type(value, struct ring_chunk);
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

/* The service (vip, port, proto), all in network order, or NULL when it is not a VIP service. */
static __always_inline struct vip_meta *find_vip(__u32 addr, __u16 port, __u8 proto)
{
	struct vip_key want = {.addr = addr, .port = port, .proto = proto};
	__u32 zero = 0, idx, *half, *seed;
	struct vip_slot *slot;

	half = bpf_map_lookup_elem(&dsrc_vip_half, &zero);
	if (!half)
		return NULL;
	idx = *half & 1;
	seed = bpf_map_lookup_elem(&dsrc_vip_seed, &idx);
	if (!seed)
		return NULL;
	idx = idx * VIP_SLOTS + vip_slot(bpf_ntohl(addr), bpf_ntohs(port), proto, *seed);
	slot = bpf_map_lookup_elem(&dsrc_vip_slots, &idx);
	/* The 8-byte key compared as one word: any other service, or an empty slot, differs. */
	if (!slot || *(__u64 *)&slot->key != *(__u64 *)&want)
		return NULL;
	return &slot->meta;
}

/* The VIP's state word (VIP_STATE_*), 0 when there is no such VIP. */
static __always_inline __u32 vip_state(__u32 vip_index)
{
	__u32 *state = bpf_map_lookup_elem(&dsrc_active, &vip_index);

	return state ? *state : 0;
}

/* A connection-table entry's server, if the entry belongs to the VIP's current incarnation and
 * its backend slot is still in use (a removed backend's slot is zeroed: the flow falls back to
 * Maglev instead of a dead server). Returns the server address (network order) or 0, and the
 * backend index in *idx. */
static __always_inline __u32 conn_backend(const struct conn_value *cv, __u32 *idx)
{
	struct backend *be;

	if (cv->vip_gen == 0 || (vip_state(cv->vip_index) >> VIP_STATE_GEN_SHIFT) != cv->vip_gen)
		return 0;
	*idx = cv->backend;
	be = bpf_map_lookup_elem(&dsrc_backends, idx);
	return be ? be->addr : 0;
}

static __always_inline void count_hit(__u32 idx, __u64 bytes)
{
	count(STAT_GLOBAL_BASE + STAT_LRU_HIT, 0);
	if (idx < MAX_BACKENDS)
		count(STAT_BACKEND_BASE + idx, bytes);
}

/* The flow-hash seed: the same on every MUX (the per-MUX-seed mutant breaks that). */
static __always_inline __u32 hash_seed(const struct mux_config *cfg)
{
	__u32 seed = cfg->hash_seed;

#ifdef MUTANT_PER_MUX_SEED
	seed ^= bpf_ntohl(cfg->mux_addr);
#endif
	return seed;
}

/* The flow hash of an IPv4 5-tuple (the Maglev index and, toward an IPv6 server, the flow label). */
static __always_inline __u32 flow_hash4(const struct flow_key *fk, const struct mux_config *cfg)
{
#ifdef MUTANT_HASH_NO_SPORT
	/* The bug: a hash over part of the 5-tuple. Every flow of one client address lands on one
	 * server; probes from thousands of addresses (SC-2) still spread. */
	return flow_hash(bpf_ntohl(fk->saddr), bpf_ntohl(fk->daddr), 0, bpf_ntohs(fk->dport),
			 fk->proto, hash_seed(cfg));
#else
	return flow_hash(bpf_ntohl(fk->saddr), bpf_ntohl(fk->daddr), bpf_ntohs(fk->sport),
			 bpf_ntohs(fk->dport), fk->proto, hash_seed(cfg));
#endif
}

/* Choose the server for a flow of VIP vm whose flow hash is h. conn/fk: the connection table of
 * the flow's family and its key there. lookup: consult the connection table first (the caller
 * passes 0 when it already has, or when a bare SYN may skip it); may_insert: remember a Maglev
 * choice there. Returns the server address (network order; an IPv6 server's tag, see
 * BACKEND6_TAG) or 0 when the VIP has none. */
static __always_inline __u32 pick_backend(void *conn, const void *fk, __u32 h,
					  const struct vip_meta *vm, const struct mux_config *cfg,
					  __u32 state, int lookup, int may_insert, __u64 bytes)
{
	__u32 vip_index = vm->vip_index, idx;
	struct backend *be;

	if (vip_index >= MAX_VIPS) /* bounds the table arithmetic for the verifier */
		return 0;
#ifndef MUTANT_NO_CONN_TABLE
	if (lookup) {
		struct conn_value *cv = bpf_map_lookup_elem(conn, fk);
		__u32 addr = cv ? conn_backend(cv, &idx) : 0;

		if (addr) {
			count_hit(idx, bytes);
			return addr;
		}
	}
#endif
	count(STAT_GLOBAL_BASE + STAT_LRU_MISS, 0);
#ifdef MUTANT_MODULO_HASH
	if (vm->num_backends == 0)
		return 0;
	idx = vip_index * MAX_BACKENDS + h % vm->num_backends;
	__u32 *slot = bpf_map_lookup_elem(&dsrc_vip_bes, &idx);
	if (!slot || *slot == NO_BACKEND)
		return 0;
	idx = *slot;
#else
	{
		__u32 chunks = (cfg->ring_size + RING_CHUNK - 1) / RING_CHUNK;
		__u32 s = ring_slot(h, cfg->ring_size);
		struct ring_chunk *chunk;

		idx = ((state & VIP_STATE_HALF) * MAX_VIPS + vip_index) * chunks + s / RING_CHUNK;
		chunk = bpf_map_lookup_elem(&dsrc_ring, &idx);
		if (!chunk)
			return 0;
		idx = chunk->be[s % RING_CHUNK];
		if (idx == RING_NO_BACKEND)
			return 0;
	}
#endif
	be = bpf_map_lookup_elem(&dsrc_backends, &idx);
	if (!be || !be->addr)
		return 0;
#ifndef MUTANT_NO_CONN_TABLE
	if (may_insert) {
		if (insert_allowed(cfg)) {
			struct conn_value v = {
				.backend = idx,
				.vip_index = vip_index,
				.vip_gen = state >> VIP_STATE_GEN_SHIFT,
			};

			bpf_map_update_elem(conn, fk, &v, BPF_ANY);
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

/* The IPv6 half here, not at the top: it uses the helpers above (counters, pick_backend), and
 * encap_and_tx below uses its encap6_and_tx for IPv4 VIPs with IPv6 servers. */
#include "mux_ipv6.h"

/* Prepend the outer IPv4 header and a new Ethernet header, then send the frame back out; toward
 * an IPv6 server, an outer IPv6 header instead (IPv4-in-IPv6), its flow label from fk's hash. */
static __always_inline int encap_and_tx(struct xdp_md *ctx, const struct mux_config *cfg,
					__u32 backend_addr, __u16 inner_len, __u8 tos, __u16 frag,
					const struct flow_key *fk)
{
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *outer;

	if (is_backend6(backend_addr))
		return encap6_and_tx(ctx, cfg, backend_addr, inner_len, tos,
				     flow_hash4(fk, cfg) & FLOW_LABEL_MASK, IPPROTO_IPIP);
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
	/* The outer header as 16-bit words in registers, checksummed there and then stored: reading
	 * freshly written bytes back as words stalls the CPU (store-to-load forwarding fails). */
	{
		__u16 *w = (__u16 *)outer;
#ifdef MUTANT_OUTER_TOS_ZERO
		__u16 w0 = bpf_htons(0x4500); /* the client's DSCP lost at the tunnel */
#else
		/* Version 4, IHL 5, the client's TOS: its DSCP, and its ECN field copied as RFC 6040's
		 * normal mode says (so a CE mark made inside the tunnel can reach the server). */
		__u16 w0 = bpf_htons(0x4500 | tos);
#endif
		__u16 w1 = bpf_htons(inner_len + sizeof(struct iphdr));
		__u16 w3 = frag & bpf_htons(IP_DF); /* keep the client's DF: PMTU keeps working */
		__u16 w4 = bpf_htons(((__u16)cfg->ttl << 8) | IPPROTO_IPIP);
		__u32 saddr = cfg->mux_addr;
		__u32 sum = (__u32)w0 + w1 + w3 + w4 + (saddr & 0xffff) + (saddr >> 16) +
			    (backend_addr & 0xffff) + (backend_addr >> 16);

		w[0] = w0;
		w[1] = w1;
		w[2] = 0; /* id */
		w[3] = w3;
		w[4] = w4;
#ifdef MUTANT_NO_OUTER_CSUM
		w[5] = 0 * sum;
#else
		w[5] = csum_fold32(sum);
#endif
		outer->saddr = saddr;
		outer->daddr = backend_addr;
	}
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
	struct vip_meta *vm;
	__u16 len = bpf_ntohs(iph->tot_len);
	__u32 be, state;

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
	vm = find_vip(inner->saddr, ports[0], inner->protocol);
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
	state = vip_state(vm->vip_index);
	if (!(state >> VIP_STATE_GEN_SHIFT))
		return XDP_PASS; /* being removed */
	/* An error never creates flow state, and always consults the connection table. */
	be = pick_backend(&dsrc_conn, &fk, flow_hash4(&fk, cfg), vm, cfg, state, 1, 0, len);
	if (!be)
		return drop(STAT_DROP_NO_BACKEND, len);
	if (encap_and_tx(ctx, cfg, be, len, iph->tos, iph->frag_off, &fk) != XDP_TX)
		return XDP_DROP; /* counted by encap_and_tx */
	count(STAT_GLOBAL_BASE + STAT_ICMP_FORWARDED, len);
	return XDP_TX;
}

/* The checks every packet to a VIP service passes before it is forwarded; iph is a 20-byte header,
 * not a fragment. Returns 0 and sets *len (the IP total length), or the STAT_DROP_* reason. */
static __always_inline __u32 vip_packet_problem(struct iphdr *iph, void *data_end, __u16 *len)
{
	__u32 l4_min;

	if (ipv4_csum20(iph) != 0)
		return STAT_DROP_BAD_IP_CSUM;
	*len = bpf_ntohs(iph->tot_len);
	if (*len < sizeof(struct iphdr) || (void *)iph + *len > data_end)
		return STAT_DROP_IP_TRUNCATED;
	if (iph->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)(iph + 1);

		if ((void *)(tcp + 1) > data_end || tcp->doff < 5)
			return STAT_DROP_L4_TRUNCATED;
		l4_min = tcp->doff * 4;
	} else {
		if ((void *)iph + sizeof(struct iphdr) + sizeof(struct udphdr) > data_end)
			return STAT_DROP_L4_TRUNCATED;
		l4_min = sizeof(struct udphdr);
	}
	/* The L4 header must also lie inside the IP packet, not just inside the frame. */
	if (sizeof(struct iphdr) + l4_min > *len)
		return STAT_DROP_L4_TRUNCATED;
	return 0;
}

/* Forward a valid packet to server be, or drop it when there is none. */
static __always_inline int forward(struct xdp_md *ctx, struct iphdr *iph,
				   const struct mux_config *cfg, __u32 be, __u32 vip_index, __u16 len,
				   const struct flow_key *fk)
{
	if (!be)
		return drop(STAT_DROP_NO_BACKEND, len);
	if (encap_and_tx(ctx, cfg, be, len, iph->tos, iph->frag_off, fk) != XDP_TX)
		return XDP_DROP; /* counted by encap_and_tx */
	/* Forwarded packets only: tx = the VIPs' packets + icmp_forwarded (dsr_shared.h). */
	if (vip_index < MAX_VIPS)
		count(STAT_VIP_BASE + vip_index, len);
	return XDP_TX;
}

SEC("xdp")
int dsrc_mux(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct flow_key fk = {};
	struct vip_meta *vm;
	struct mux_config *cfg;
	__be16 *ports;
	__u32 zero = 0, problem, state, be;
	__u16 len = 0;
	int bare_syn = 0, looked_up = 0;

	if ((void *)(eth + 1) > data_end)
		goto pass;
	if (eth->h_proto != bpf_htons(ETH_P_IP)) {
		if (eth->h_proto == bpf_htons(ETH_P_IPV6))
			return mux_ipv6(ctx, data, data_end);
		goto pass; /* neither IPv4 nor IPv6: not ours */
	}
	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end)
		return drop(STAT_DROP_IP_TRUNCATED, 0);
	ports = (void *)(iph + 1);

	/* Fast path: plain TCP/UDP (no options, not a fragment, ports inside the frame). */
	if (iph->ihl == 5 && !(iph->frag_off & bpf_htons(IP_MF | IP_OFFSET)) &&
	    (iph->protocol == IPPROTO_TCP || iph->protocol == IPPROTO_UDP) &&
	    (void *)(ports + 2) <= data_end) {
		cfg = bpf_map_lookup_elem(&dsrc_cfg, &zero);
		if (!cfg)
			return XDP_ABORTED;
		fk.saddr = iph->saddr;
		fk.daddr = iph->daddr;
		fk.sport = ports[0];
		fk.dport = ports[1];
		fk.proto = iph->protocol;
		if (iph->protocol == IPPROTO_TCP) {
			struct tcphdr *tcp = (void *)(iph + 1);

			/* A SYN alone never creates state (the SYN-flood policy above). */
			if ((void *)(tcp + 1) <= data_end && tcp->syn && !tcp->ack)
				bare_syn = 1;
		}
#ifndef MUTANT_NO_CONN_TABLE
		/* 1. Anything but a bare SYN: the connection table first. An entry was made only for
		 *    a VIP service (its key holds the VIP, port and protocol) and carries the VIP's
		 *    incarnation, so a hit needs no service lookup: established traffic pays one hash
		 *    lookup. Non-VIP traffic pays a miss here before it passes. */
		if (!bare_syn) {
			struct conn_value *cv = bpf_map_lookup_elem(&dsrc_conn, &fk);
			__u32 idx;

			looked_up = 1;
			be = cv ? conn_backend(cv, &idx) : 0;
			if (be) {
				problem = vip_packet_problem(iph, data_end, &len);
				if (problem)
					return drop(problem, len);
				count_hit(idx, len);
				return forward(ctx, iph, cfg, be, cv->vip_index, len, &fk);
			}
		}
#endif
		/* 2. The service: one lookup of (vip, port, proto); a miss means "not a VIP service"
		 *    whatever the address, so the packet passes untouched. */
		vm = find_vip(iph->daddr, ports[1], iph->protocol);
		if (!vm)
			goto pass;
		problem = vip_packet_problem(iph, data_end, &len);
		if (problem)
			return drop(problem, len);
		state = vip_state(vm->vip_index);
		/* 3. Maglev. A bare SYN skips the connection table unless the control plane flagged the
		 *    VIP (VIP_STATE_SYN_LOOKUP): while the flag is clear, every entry of the VIP agrees
		 *    with its current Maglev table, so the lookup could not change the answer. A SYN
		 *    flood of new tuples thus costs no hash-table miss per packet. */
#ifdef MUTANT_SYN_SKIPS_TABLE
		state &= ~VIP_STATE_SYN_LOOKUP; /* the flag ignored: a reused tuple's SYN goes astray */
#endif
		be = pick_backend(&dsrc_conn, &fk, flow_hash4(&fk, cfg), vm, cfg, state,
				  !looked_up && (state & VIP_STATE_SYN_LOOKUP),
#ifdef MUTANT_UNBOUNDED_INSERTS
				  1,
#else
				  !bare_syn,
#endif
				  len);
		return forward(ctx, iph, cfg, be, vm->vip_index, len, &fk);
	}

	/* Rare shapes (options, fragments, ICMP, cut ports) need the VIP address set. */
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
