/* dsr_shared.h - layouts and limits shared by the reference BPF programs and the Python
 * control plane. Python parses the #define lines of this file (reference_impl/layout.py), so
 * keep every constant a plain `#define NAME <integer>` and every struct free of implicit padding.
 * Addresses and ports are stored in network byte order unless a field says otherwise.
 */
#ifndef DSR_SHARED_H
#define DSR_SHARED_H

#include <linux/types.h>

/* ---- limits (override with -D at build time) ---- */
#ifndef MAX_VIPS
#define MAX_VIPS 64            /* VIPs (vip, port, proto) per MUX */
#endif
#ifndef MAX_BACKENDS
#define MAX_BACKENDS 4096      /* servers known to one MUX, all VIPs together */
#endif
#ifndef MAX_MUXES
#define MAX_MUXES 64           /* MUX addresses an agent accepts encapsulated traffic from */
#endif
#define DEFAULT_RING_SIZE 131071 /* Maglev table size per VIP (prime); set at load time */
#define DEFAULT_CONN_ENTRIES 262144
#define VIP_SLOTS 1024          /* perfect-hash slots per half of dsrc_vip_slots (a power of 2) */
#define RING_CHUNK 32           /* Maglev entries per dsrc_ring element: one 64-byte cache line */
#define RING_NO_BACKEND 65535   /* a Maglev entry of a VIP without backends */

/* ---- statistics: one percpu array of struct counter, laid out in three zones ---- */
#define STAT_VIP_BASE 0                                  /* [0, MAX_VIPS): per VIP      */
#define STAT_BACKEND_BASE 64                             /* [64, 64+MAX_BACKENDS)       */
#define STAT_GLOBAL_BASE 4160                            /* 64 + 4096: the named slots  */
#define STAT_PASS 0              /* non-VIP traffic handed to the stack untouched */
#define STAT_LRU_HIT 1           /* connection-table hits */
#define STAT_LRU_MISS 2          /* misses: backend chosen by Maglev */
#define STAT_LRU_INSERT 3        /* new connection-table entries */
#define STAT_LRU_INSERT_SKIPPED 4 /* new flows not remembered: over the new-connection rate */
#define STAT_ICMP_FORWARDED 5    /* ICMP errors sent to the flow's server */
/* Packets encapsulated and sent (tx) are not counted on their own: the control plane adds the
 * per-VIP counts (forwarded packets only) and icmp_forwarded, one counter less per packet. */
#define STAT_DROP_IP_TRUNCATED 6 /* IPv4 header or total length beyond the frame */
#define STAT_DROP_BAD_IHL 7      /* IHL < 5 */
#define STAT_DROP_IP_OPTIONS 8   /* IP options on VIP traffic (not load-balanced) */
#define STAT_DROP_FRAGMENT 9     /* fragments of VIP traffic: no ports to hash on */
#define STAT_DROP_L4_TRUNCATED 10 /* TCP/UDP header beyond the frame, or TCP doff < 5 */
#define STAT_DROP_BAD_IP_CSUM 11 /* IPv4 header checksum wrong */
#define STAT_DROP_NO_BACKEND 12  /* VIP without backends, or a bad table entry */
#define STAT_DROP_TOO_BIG 13     /* encapsulated frame would exceed the configured MTU */
#define STAT_DROP_ENCAP 14       /* no headroom for the outer header */
#define STAT_DROP_ICMP_MALFORMED 15 /* ICMP error to a VIP whose embedded header is unusable */
#define STAT_DROP_IPV6_EXTHDR 16 /* IPv6 VIP traffic whose next header is not TCP/UDP/ICMPv6 */
#define STAT_DROP_BAD_VERSION 17 /* IP version field disagrees with the EtherType */
#define STAT_GLOBAL_COUNT 18
#define STAT_SLOTS 4178          /* STAT_GLOBAL_BASE + STAT_GLOBAL_COUNT */

/* Agent and gateway statistics: a percpu array of struct counter indexed by these. */
#define AGENT_STAT_DECAP 0        /* IPIP or IPv6-encapsulated from a known MUX, decapsulated */
#define AGENT_STAT_FOREIGN_IPIP 1 /* the same from an unknown source: passed untouched */
#define AGENT_STAT_DNAT 2         /* server-nat: VIP:port rewritten to server:app port */
#define AGENT_STAT_SNAT 3         /* server-nat: reply rewritten back to the flow's VIP:port */
#define AGENT_STAT_SNAT_MISS 4    /* reply from a NAT service port with no remembered flow */
#define AGENT_STAT_MALFORMED 5    /* truncated inner packets (IPv6: UDP without checksum): dropped */
#define AGENT_STAT_PASS 6         /* everything else: untouched */
#define AGENT_STAT_GW_REWRITE 7   /* gateway-nat: source rewritten */
#define AGENT_STAT_COUNT 8

/* Data-plane modes of the server agent (agent_config.mode). */
#define MODE_ENCAP 0
#define MODE_SERVER_NAT 1

struct counter {
	__u64 packets;
	__u64 bytes;
};

/* MUX: (vip, port, proto) -> service. */
struct vip_key {
	__u32 addr;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

struct vip_meta {
	__u32 vip_index;     /* 0..MAX_VIPS-1: selects the Maglev tables and the stats slot */
	__u32 num_backends;  /* size of this VIP's backend list (vip_backends) */
};

/* MUX: one slot of the VIP table, a perfect hash (see vip_slot() in dsr_helpers.h). An all-zero
 * key is an empty slot (no VIP has protocol 0). */
struct vip_slot {
	struct vip_key key;
	struct vip_meta meta;
};

/* MUX: one per backend index; addr 0 means "unused slot". */
/* MUX: RING_CHUNK consecutive Maglev entries (backend indices, host order). Packing them keeps a
 * 131,071-entry table in 256 KiB (an array map pads every element to 8 bytes: one u32 per element
 * would take 1 MiB), which matters when every new flow reads a random entry. */
struct ring_chunk {
	__u16 be[RING_CHUNK];
};

struct backend {
	__u32 addr;
	__u32 flags;
};

/* MUX, IPv6: a backend with an IPv6 address keeps its index's dsrc_backends slot in use with
 * addr = htonl(BACKEND6_TAG | index) (255.x.x.x is never a server) and flags = BACKEND_F_IPV6;
 * its address is dsrc_backends6[index]. The IPv4 path thus carries one 32-bit word per backend
 * whatever its family, and one compare tells it to build an IPv6 outer header instead. */
#define BACKEND6_TAG 0xff000000
#define BACKEND6_INDEX_MASK 0x00ffffff
#define BACKEND_F_IPV6 1

struct backend6 {
	__u32 addr[4];
};

/* MUX, IPv6: (vip, port, proto) -> service (dsrc_vip6, a hash map beside IPv4's slot table). */
struct vip6_key {
	__u32 addr[4];
	__u16 port;
	__u8 proto;
	__u8 pad;
};

/* MUX, IPv6: the connection-table key of a client->VIP flow (dsrc_conn6, an LRU beside IPv4's:
 * IPv4's 16-byte key and its fast path stay as they are). */
struct flow_key6 {
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* 5-tuple of a client->VIP flow: the connection-table key. */
struct flow_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct conn_value {
	__u32 backend;   /* backend index */
	__u16 vip_index;
	__u16 vip_gen;   /* the VIP's incarnation when the entry was made (see VIP_STATE_*) */
};

/* MUX: dsrc_active[vip_index], the VIP's state word. The control plane writes it in one aligned
 * store, so a packet sees either the old state or the new one. */
#define VIP_STATE_HALF 1          /* which half of dsrc_ring is live */
#define VIP_STATE_SYN_LOOKUP 2    /* SYNs must consult the connection table (docs/mux.md) */
#define VIP_STATE_GEN_SHIFT 16    /* bits 16..31: the VIP's incarnation, never 0 while it exists */

struct mux_config {
	__u32 mux_addr;        /* outer source address */
	__u32 hash_seed;       /* host order; identical on every MUX */
	__u32 ring_size;       /* host order; Maglev table size M (prime) */
	__u32 new_conn_rate;   /* host order; connection-table inserts per second per CPU */
	__u32 new_conn_burst;  /* host order; token-bucket depth for those inserts */
	__u16 mtu;             /* host order; largest IP packet the MUX may emit (0: no check) */
	__u8 ttl;              /* outer TTL */
	__u8 pad;
	__u8 src_mac[6];       /* MUX interface MAC (outer Ethernet source) */
	__u8 dst_mac[6];       /* next hop toward the servers (the border router) */
	__u32 mux_addr6[4];    /* outer IPv6 source (all zero: no IPv6 backends) */
};

/* Per-CPU token bucket that bounds connection-table inserts (the SYN-flood policy). */
struct insert_budget {
	__u64 tokens_milli;    /* tokens x 1000 */
	__u64 last_ns;
};

/* Agent (server side). */
struct agent_config {
	__u32 server_addr;     /* this server's own address */
	__u32 mode;            /* host order; MODE_ENCAP or MODE_SERVER_NAT */
};

/* server-nat: VIP:port the MUX delivers -> server address:app port. */
struct nat_service_key {
	__u32 vip;
	__u16 vport;
	__u8 proto;
	__u8 pad;
};

struct nat_service {
	__u32 addr;            /* server address */
	__u16 port;            /* application port */
	__u16 pad;
};

/* server-nat: a flow seen at ingress, keyed as the reply will look at egress
 * (local = server addr:app port, remote = client addr:port). */
struct nat_flow_key {
	__u32 local_addr;
	__u32 remote_addr;
	__u16 local_port;
	__u16 remote_port;
	__u8 proto;
	__u8 pad[3];
};

struct nat_flow {
	__u32 vip;             /* the VIP:port the client addressed */
	__u16 vport;
	__u16 pad;
	__u32 mux_addr;        /* which MUX delivered it (diagnostics); 0 when it came over IPv6 */
	__u32 mux_addr6[4];    /* the MUX of an IPv4-in-IPv6 flow (all zero for IPIP) */
};

/* gateway-nat: (server addr, server port, proto) -> (external addr, port). Stateless, 1:1. */
struct gw_key {
	__u32 addr;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

struct gw_value {
	__u32 addr;
	__u16 port;
	__u16 pad;
};

/* Agent and gateway, IPv6: the same records with 128-bit addresses, each four network-order words
 * (the IPv6 header's byte order), in maps beside the IPv4 ones. */

/* dsrc_muxes6: outer IPv6 source addresses whose IPv6-in-IPv6 / IPv4-in-IPv6 we decapsulate. */
struct mux6_key {
	__u32 addr[4];
};

/* server-nat: IPv6 VIP:port the MUX delivers -> server IPv6 address:app port. */
struct nat_service6_key {
	__u32 vip[4];
	__u16 vport;
	__u8 proto;
	__u8 pad;
};

struct nat_service6 {
	__u32 addr[4];         /* server IPv6 address */
	__u16 port;            /* application port */
	__u16 pad;
};

/* server-nat: an IPv6 flow seen at ingress, keyed as the reply will look at egress. */
struct nat_flow6_key {
	__u32 local_addr[4];
	__u32 remote_addr[4];
	__u16 local_port;
	__u16 remote_port;
	__u8 proto;
	__u8 pad[3];
};

struct nat_flow6 {
	__u32 vip[4];          /* the VIP:port the client addressed */
	__u16 vport;
	__u16 pad;
	__u32 mux_addr[4];     /* which MUX delivered it (diagnostics) */
};

/* gateway-nat and the agent's dsrc_nat_first6: (server IPv6, port, proto) -> (IPv6, port). */
struct gw6_key {
	__u32 addr[4];
	__u16 port;
	__u8 proto;
	__u8 pad;
};

struct gw6_value {
	__u32 addr[4];
	__u16 port;
	__u16 pad;
};

#endif /* DSR_SHARED_H */
