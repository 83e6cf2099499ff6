"""Control plane of one reference MUX: load the XDP program, program its maps, read its counters.

Usage::

    with MuxProgram(load_mux_config("mux.yaml")) as mux:   # compiles (cached) and loads
        mux.attach("dsrc-lab-mux1", "eth0")                 # native XDP inside that namespace
        mux.set_backends(("198.19.0.10", 80, 6), ["198.18.20.1", "198.18.20.2"])
        print(mux.stats().globals)

VIPs and backends may be IPv6 (``mux_ipv6.h``): IPv6 services live in their own hash map and
connection table, and share the VIP indices, Maglev tables and backend indices with IPv4.

Table changes are atomic per VIP: the new Maglev table is written into the standby half of
``dsrc_ring`` and then one word (``dsrc_active[vip]``, the VIP's state) flips. Backend indices are
never reused while unused ones remain, so a stale connection-table entry cannot silently point at
a new server; a removed backend's slot is zeroed and its flows fall back to Maglev. A *draining*
backend (``set_backends(vip, active, draining=[...])``) is out of the Maglev table but keeps its
index, so connection-table entries still forward its established flows to it.

The state word also carries the VIP's incarnation (connection-table entries of a removed VIP stop
matching) and the SYN-lookup flag: after a table change, entries may disagree with the new table,
so bare SYNs consult the connection table again. :meth:`MuxProgram.refresh_syn_lookup` clears the
flag once no entry of the VIP disagrees (call it periodically; the lab's MUX daemon does).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dsrconform.bpf import libbpf
from dsrconform.bpf.build import compile_bpf
from dsrconform.errors import ConfigError
from dsrconform.netns import enter_netns
from dsrconform.target import BenchVip
from reference_impl import layout, maglev, mutants
from reference_impl.config import MuxConfig, MuxSettings, VipConfig
from reference_impl.flowhash import flow_hash, flow_hash6, ring_slot, vip_slot
from reference_impl.layout import IPPROTO, C, is_ipv6

MUX_SOURCE = layout.BPF_DIR / "mux.bpf.c"
NO_BACKEND = C("RING_NO_BACKEND")
VipKey = tuple[str, int, int]  # (address, port, IP protocol number)
# A table change is settled, for refresh_syn_lookup, once no packet that read the old state word
# can still be running: XDP runs take microseconds; this is a wide margin.
SETTLE_SECONDS = 1.0
MAX_SEED_TRIES = 100_000  # bound on the search for a collision-free VIP table seed

GLOBAL_STATS = (
    "pass", "lru_hit", "lru_miss", "lru_insert", "lru_insert_skipped", "icmp_forwarded",
    "drop_ip_truncated", "drop_bad_ihl", "drop_ip_options", "drop_fragment", "drop_l4_truncated",
    "drop_bad_ip_csum", "drop_no_backend", "drop_too_big", "drop_encap", "drop_icmp_malformed",
    "drop_ipv6_exthdr", "drop_bad_version",
)  # fmt: skip


@dataclass
class MuxStats:
    """Counters summed over CPUs: named globals (plus the derived ``tx``), per VIP and per
    backend (packets, bytes)."""

    globals: dict[str, int]
    vips: dict[VipKey, tuple[int, int]] = field(default_factory=dict)
    backends: dict[str, tuple[int, int]] = field(default_factory=dict)


def _stat_names_match_header() -> None:
    want = [f"STAT_{n.upper()}" for n in GLOBAL_STATS]
    have = [k for k, _ in sorted(layout.constants().items(), key=lambda kv: kv[1])
            if k in want]  # fmt: skip
    if len(have) != C("STAT_GLOBAL_COUNT") or [C(n) for n in want] != list(range(len(want))):
        raise RuntimeError("GLOBAL_STATS is out of step with dsr_shared.h")


_stat_names_match_header()


class MuxProgram:
    """One loaded instance of the MUX program and its maps."""

    def __init__(
        self, config: MuxConfig, *, mutant: str | None = None, source: Path = MUX_SOURCE
    ) -> None:
        self.settings: MuxSettings = config.mux
        chosen = mutants.get(mutant)
        self.mutant = chosen.name if chosen else None
        self._in_place = "in_place_tables" in mutants.control_switches(mutant)
        obj_path = compile_bpf(source, mutants.defines_for("mux", mutant))
        self._chunks = -(-self.settings.ring_size // C("RING_CHUNK"))
        self.obj = libbpf.BpfObject(
            obj_path,
            max_entries={
                "dsrc_ring": 2 * C("MAX_VIPS") * self._chunks,
                "dsrc_conn": self.settings.conn_table_size,
                "dsrc_conn6": self.settings.conn_table_size,
            },
        )
        self.program = self.obj.program("dsrc_mux")
        self._vip_index: dict[VipKey, int] = {}
        self._vip_state: dict[int, int] = {}  # vip index -> state word (VIP_STATE_*)
        self._vip_table: dict[int, list[int]] = {}  # vip index -> live Maglev table
        self._vip_changed: dict[int, float] = {}  # vip index -> monotonic time of last change
        self._next_gen = 1
        self._vip_meta: dict[VipKey, tuple[int, int]] = {}  # published: (vip index, backends)
        self._vip_half = 0  # live half of dsrc_vip_slots
        self._vip_backends: dict[VipKey, list[str]] = {}  # in the Maglev table
        self._vip_draining: dict[VipKey, list[str]] = {}  # out of it, index kept for entries
        self._backend_index: dict[str, int] = {}
        self._next_backend = 0
        self._attached: tuple[str | None, int, str] | None = None
        self._write_config()
        for vip in config.vips:
            self.set_backends(vip.key, vip.backends)

    # --- programming ----------------------------------------------------------------------

    def _write_config(self) -> None:
        s = self.settings
        raw = layout.mux_config(
            mux_addr=s.address, hash_seed=s.hash_seed, ring_size=s.ring_size,
            new_conn_rate=s.new_conn_rate, new_conn_burst=s.new_conn_burst, mtu=s.mtu,
            ttl=s.ttl, src_mac=s.mac, dst_mac=s.next_hop_mac, mux_addr6=s.address6,
        )  # fmt: skip
        self.obj.map("dsrc_cfg").update(layout.u32(0), raw)

    def _alloc_backend(self, addr: str) -> int:
        if addr in self._backend_index:
            return self._backend_index[addr]
        used = set(self._backend_index.values())
        limit = C("MAX_BACKENDS")
        # Round-robin allocation: a freed index is reused only after every other one was used.
        for _ in range(limit):
            idx = self._next_backend
            self._next_backend = (self._next_backend + 1) % limit
            if idx not in used:
                self._backend_index[addr] = idx
                self._zero_stat(C("STAT_BACKEND_BASE") + idx)  # not the previous owner's counts
                if is_ipv6(addr):  # the address first: the tag makes the slot live
                    self.obj.map("dsrc_backends6").update(layout.u32(idx), layout.ip6_be(addr))
                    self.obj.map("dsrc_backends").update(
                        layout.u32(idx), layout.backend6_tagged(idx)
                    )
                else:
                    self.obj.map("dsrc_backends").update(layout.u32(idx), layout.backend(addr))
                return idx
        raise libbpf.BpfError(f"more than {limit} backends")

    def _release_unused_backends(self) -> None:
        """Zero the slot of every backend no VIP uses, active or draining: entries pointing to
        it fall back to Maglev. A draining backend stays, so its entries keep forwarding."""
        live = {b for bes in self._vip_backends.values() for b in bes}
        live |= {b for bes in self._vip_draining.values() for b in bes}
        for addr in [a for a in self._backend_index if a not in live]:
            idx = self._backend_index.pop(addr)
            self.obj.map("dsrc_backends").update(layout.u32(idx), bytes(8))
            if is_ipv6(addr):
                self.obj.map("dsrc_backends6").update(layout.u32(idx), bytes(16))

    def set_backends(
        self, vip: VipKey, backends: Sequence[str], draining: Sequence[str] = ()
    ) -> None:
        """Create or update a VIP service with this backend set, atomically.

        ``draining``: backends that get no new flow (they are not in the Maglev table) but keep
        their index, so the connection-table entries of their established flows still forward
        to them; a backend in neither list that no other VIP uses is released (its entries fall
        back to Maglev). The table flip sets the SYN-lookup flag whenever the table changes, and
        :meth:`refresh_syn_lookup` keeps it while any entry names a draining backend (such an
        entry never agrees with a table that does not contain it)."""
        addr, port, _proto = vip
        # Validated and normalised: an IPv6 address has many spellings, a backend one name.
        backends = VipConfig(address=addr, port=port, backends=list(backends)).backends
        draining = VipConfig(address=addr, port=port, backends=sorted(set(draining))).backends
        both = sorted(set(backends) & set(draining))
        if both:
            raise ValueError(f"backends both active and draining: {', '.join(both)}")
        VipConfig(address=addr, port=port, backends=[*backends, *draining])  # one family
        v6 = sorted(b for b in {*backends, *draining} if is_ipv6(b))
        if v6 and self.settings.address6 is None:
            raise ConfigError(
                f"VIP {addr}: IPv6 backend {v6[0]} but this MUX has no address6 (the outer IPv6 "
                "source); fix: set mux.address6"
            )
        if vip not in self._vip_index:
            free = sorted(set(range(C("MAX_VIPS"))) - set(self._vip_index.values()))
            if not free:
                raise libbpf.BpfError(f"more than {C('MAX_VIPS')} VIPs")
            self._vip_index[vip] = free[0]
            self._zero_stat(C("STAT_VIP_BASE") + free[0])  # a removed VIP's counts stay its own
            # A new incarnation: entries left by an earlier VIP at this index stop matching.
            self._vip_state[free[0]] = self._next_gen << C("VIP_STATE_GEN_SHIFT")
            self._next_gen = self._next_gen % 0xFFFF + 1
        vi = self._vip_index[vip]
        names = sorted(set(backends))
        # Draining backends keep (or get) an index before the flip: the entries made from the
        # old table keep resolving to them while the new table sends new flows elsewhere.
        self._vip_draining[vip] = sorted(set(draining))
        for b in self._vip_draining[vip]:
            self._alloc_backend(b)
        self._vip_backends[vip] = names
        idx = [self._alloc_backend(b) for b in names]
        self._write_table(
            vi,
            [
                idx[i] if i >= 0 else NO_BACKEND
                for i in maglev.build_table(names, self.settings.ring_size)
            ],
        )
        bes = b"".join(layout.u32(i) for i in idx)
        if idx:
            base = vi * C("MAX_BACKENDS")
            keys = b"".join(layout.u32(base + n) for n in range(len(idx)))
            self.obj.map("dsrc_vip_bes").update_batch(keys, bes, len(idx))
        self._publish_vips({**self._vip_meta, vip: (vi, len(idx))})
        if is_ipv6(addr):
            self.obj.map("dsrc_vip6_addrs").update(layout.ip6_be(addr), layout.u32(1))
        else:
            self.obj.map("dsrc_vip_addrs").update(layout.ip_be(addr), layout.u32(1))
        self._release_unused_backends()

    def _publish_vips(self, meta: dict[VipKey, tuple[int, int]]) -> None:
        """Make ``meta`` the VIP service table: IPv6 services one entry each in dsrc_vip6; for the
        IPv4 ones, find a seed that gives every service its own slot, write the standby half of
        dsrc_vip_slots and its seed, then flip dsrc_vip_half."""
        if meta == self._vip_meta:
            return
        v6map = self.obj.map("dsrc_vip6")
        for k, m in meta.items():
            if is_ipv6(k[0]) and self._vip_meta.get(k) != m:
                v6map.update(layout.vip6_key(*k), layout.vip_meta(*m))
        for k in self._vip_meta:
            if is_ipv6(k[0]) and k not in meta:
                v6map.delete(layout.vip6_key(*k))
        v4 = {k: m for k, m in meta.items() if not is_ipv6(k[0])}
        if v4 == {k: m for k, m in self._vip_meta.items() if not is_ipv6(k[0])}:
            self._vip_meta = dict(meta)
            return
        self._publish_vips4(v4, meta)

    def _publish_vips4(
        self, meta: dict[VipKey, tuple[int, int]], full: dict[VipKey, tuple[int, int]]
    ) -> None:
        slots = C("VIP_SLOTS")
        ints = {k: (int.from_bytes(layout.ip_be(k[0]), "big"), k[1], k[2]) for k in meta}
        for seed in range(1, MAX_SEED_TRIES + 1):
            placed = {vip_slot(*ints[k], seed, slots): k for k in meta}
            if len(placed) == len(meta):
                break
        else:  # 64 services in 1,024 slots: a seed is found in a handful of tries
            raise libbpf.BpfError(f"no collision-free seed for {len(meta)} VIP services")
        standby = self._vip_half ^ 1
        table = bytearray(slots * 16)
        for n, k in placed.items():
            table[n * 16 : (n + 1) * 16] = layout.vip_slot(*k, *meta[k])
        keys = struct.pack(f"={slots}I", *range(standby * slots, (standby + 1) * slots))
        self.obj.map("dsrc_vip_slots").update_batch(keys, bytes(table), slots)
        self.obj.map("dsrc_vip_seed").update(layout.u32(standby), layout.u32(seed))
        self.obj.map("dsrc_vip_half").update(layout.u32(0), layout.u32(standby))  # the flip
        self._vip_half, self._vip_meta = standby, dict(full)

    def _write_table(self, vi: int, table: list[int]) -> None:
        ring, state = self.settings.ring_size, self._vip_state[vi]
        half_bit, syn_bit = C("VIP_STATE_HALF"), C("VIP_STATE_SYN_LOOKUP")
        previous = self._vip_table.get(vi)
        if previous is not None and previous != table:
            # Entries made from the old table may now disagree with Maglev: SYNs must look.
            state |= syn_bit
        half = state & half_bit if self._in_place else (state & half_bit) ^ 1
        state = (state & ~half_bit) | half
        chunk, n = C("RING_CHUNK"), self._chunks
        base = (half * C("MAX_VIPS") + vi) * n
        padded = table + [NO_BACKEND] * (n * chunk - ring)
        values = struct.pack(f"={n * chunk}H", *padded)
        ring_map = self.obj.map("dsrc_ring")
        self._vip_table[vi] = table
        self._vip_changed[vi] = time.monotonic()
        if self._in_place:  # the in-place-table mutant: rewrite the live half chunk by chunk
            self._vip_state[vi] = state
            self.obj.map("dsrc_active").update(layout.u32(vi), layout.u32(state))
            for i in range(n):
                ring_map.update(layout.u32(base + i), values[i * 2 * chunk : (i + 1) * 2 * chunk])
            return
        keys = struct.pack(f"={n}I", *range(base, base + n))
        ring_map.update_batch(keys, values, n)
        self._vip_state[vi] = state
        # The flip: one aligned word holds the live half, the SYN-lookup flag and the incarnation.
        self.obj.map("dsrc_active").update(layout.u32(vi), layout.u32(state))

    def refresh_syn_lookup(self, settle: float = SETTLE_SECONDS) -> dict[VipKey, int | None]:
        """Clear the SYN-lookup flag of every VIP whose connection-table entries all agree with
        its current Maglev table again. Returns the VIPs still flagged with their number of
        disagreeing entries (None: changed less than ``settle`` seconds ago, not examined yet)."""
        syn_bit, shift = C("VIP_STATE_SYN_LOOKUP"), C("VIP_STATE_GEN_SHIFT")
        now, ring = time.monotonic(), self.settings.ring_size
        flagged = {
            vi for vi, st in self._vip_state.items()
            if st & syn_bit and now - self._vip_changed.get(vi, 0.0) >= settle
        }  # fmt: skip
        live_backends = set(self._backend_index.values())
        disagree = dict.fromkeys(flagged, 0)
        for k, v in self._conn_entries() if flagged else []:
            backend, vi, gen = layout.conn_value_unpack(v)
            if vi not in disagree or gen != self._vip_state[vi] >> shift:
                continue
            if backend not in live_backends:
                continue  # a removed server's entry falls back to Maglev: it agrees
            # A draining server keeps its index (live) but is in no table: its entries always
            # disagree, so the flag stays while any remains and a reused tuple's SYN still
            # follows its entry, as its ACK will.
            if self._vip_table[vi][ring_slot(self._key_hash(k), ring)] != backend:
                disagree[vi] += 1
        for vi, n in disagree.items():
            if n == 0:
                self._vip_state[vi] &= ~syn_bit
                self.obj.map("dsrc_active").update(layout.u32(vi), layout.u32(self._vip_state[vi]))
        by_index = {vi: key for key, vi in self._vip_index.items()}
        return {
            by_index[vi]: disagree.get(vi)
            for vi, st in self._vip_state.items()
            if st & syn_bit and vi in by_index
        }

    def _conn_entries(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every entry of both connection tables (IPv4 keys are 16 bytes)."""
        for name in ("dsrc_conn", "dsrc_conn6"):
            m = self.obj.map(name)
            for k in list(m.keys()):
                v = m.lookup(k)
                if v is not None:
                    yield k, v

    def _key_hash(self, k: bytes) -> int:
        """The flow hash of a connection-table key (flow_key or flow_key6)."""
        seed = self.settings.hash_seed
        if len(k) == 16:
            saddr, daddr, sport, dport = struct.unpack("!IIHH", k[:12])
            return flow_hash(saddr, daddr, sport, dport, k[12], seed)
        sport, dport = struct.unpack("!HH", k[32:36])
        s6, d6 = int.from_bytes(k[0:16], "big"), int.from_bytes(k[16:32], "big")
        return flow_hash6(s6, d6, sport, dport, k[36], seed)

    def remove_vip(self, vip: VipKey) -> None:
        vi = self._vip_index.pop(vip)
        self._vip_backends.pop(vip, None)
        self._vip_draining.pop(vip, None)
        self._publish_vips({k: v for k, v in self._vip_meta.items() if k != vip})
        # Incarnation 0: the VIP's connection-table entries stop matching at once.
        self.obj.map("dsrc_active").update(layout.u32(vi), layout.u32(0))
        for d in (self._vip_state, self._vip_table, self._vip_changed):
            d.pop(vi, None)
        if not any(k[0] == vip[0] for k in self._vip_index):
            if is_ipv6(vip[0]):
                self.obj.map("dsrc_vip6_addrs").delete(layout.ip6_be(vip[0]))
            else:
                self.obj.map("dsrc_vip_addrs").delete(layout.ip_be(vip[0]))
        self._release_unused_backends()

    # --- observation ----------------------------------------------------------------------

    def backend_of_index(self, idx: int) -> str | None:
        return next((a for a, i in self._backend_index.items() if i == idx), None)

    def _zero_stat(self, slot: int) -> None:
        """Zero a per-VIP or per-backend counter slot before its index gets a new owner (nothing
        counts into it meanwhile: no table or connection entry refers to the index yet)."""
        m = self.obj.map("dsrc_stats")
        m.update(layout.u32(slot), bytes((m.value_size + 7) // 8 * 8 * libbpf.possible_cpus()))

    def _sum(self, slot: int) -> tuple[int, int]:
        vals = self.obj.map("dsrc_stats").lookup_percpu(layout.u32(slot))
        pk = sum(layout.counter_unpack(v)[0] for v in vals)
        by = sum(layout.counter_unpack(v)[1] for v in vals)
        return pk, by

    def stats(self) -> MuxStats:
        g = C("STAT_GLOBAL_BASE")
        out = MuxStats(globals={n: self._sum(g + i)[0] for i, n in enumerate(GLOBAL_STATS)})
        per_vip = [self._sum(C("STAT_VIP_BASE") + vi) for vi in range(C("MAX_VIPS"))]
        for vip, vi in self._vip_index.items():
            out.vips[vip] = per_vip[vi]
        # tx is derived, not counted per packet: every forwarded packet is a VIP's or an ICMP error.
        out.globals["tx"] = sum(p for p, _ in per_vip) + out.globals["icmp_forwarded"]
        for addr, bi in self._backend_index.items():
            out.backends[addr] = self._sum(C("STAT_BACKEND_BASE") + bi)
        return out

    def conn_table(self) -> dict[tuple[str, str, int, int, int], str | None]:
        """The connection tables of both families: 5-tuple -> backend address (None if the slot
        was freed)."""
        out = {}
        for k, v in self._conn_entries():
            if len(k) == 16:
                sport, dport = struct.unpack("!HH", k[8:12])
                flow = (layout.ip_str(k[0:4]), layout.ip_str(k[4:8]), sport, dport, k[12])
            else:
                sport, dport = struct.unpack("!HH", k[32:36])
                flow = (layout.ip6_str(k[0:16]), layout.ip6_str(k[16:32]), sport, dport, k[36])
            out[flow] = self.backend_of_index(layout.conn_value_unpack(v)[0])
        return out

    # --- attach ---------------------------------------------------------------------------

    def attach(self, netns: str | None, ifname: str, *, mode: str = "native") -> None:
        """Attach to ``ifname`` in ``netns`` (None: this namespace)."""
        from pyroute2 import IPRoute

        with enter_netns(netns), IPRoute() as ipr:
            found = ipr.link_lookup(ifname=ifname)
            if not found:
                raise libbpf.BpfError(f"no interface {ifname!r} in namespace {netns or 'host'}")
            libbpf.xdp_attach(found[0], self.program.fd, mode=mode)
            self._attached = (netns, found[0], mode)

    def detach(self) -> None:
        if self._attached:
            netns, ifindex, mode = self._attached
            self._attached = None
            with enter_netns(netns):
                libbpf.xdp_detach(ifindex, mode=mode)

    def close(self) -> None:
        try:
            self.detach()
        finally:
            self.obj.close()

    def __enter__(self) -> MuxProgram:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def bench_attach(
    *,
    netns: str,
    ifname: str,
    mux_addr: str,
    next_hop_mac: str,
    vip: BenchVip,
    backends: Sequence[str],
    mutant: str | None = None,
    mux_addr6: str | None = None,
) -> Iterator[MuxProgram]:
    """The reference MUX on ``ifname`` for ``dsrconform bench mux`` (Target.mux_for_bench);
    ``mux_addr6``: the outer IPv6 source (``mux.address6``), needed for IPv6 backends."""
    from dsrconform.netns import link_mac

    proto = {v: k for k, v in IPPROTO.items()}[vip.proto]
    cfg = MuxConfig.model_validate(
        {
            "mux": {"address": mux_addr, "address6": mux_addr6, "mac": link_mac(netns, ifname),
                    "next_hop_mac": next_hop_mac},
            "vips": [{"address": vip.addr, "port": vip.port, "proto": proto,
                      "backends": list(backends)}],
        }
    )  # fmt: skip
    with MuxProgram(cfg, mutant=mutant) as mux:
        mux.attach(netns, ifname)
        yield mux
