"""Katran's XDP balancer, loaded and programmed the way Katran's control plane (``KatranLb``) does.

One :class:`KatranBalancer` is one loaded ``balancer.bpf.c`` (see :mod:`katran_target.sources`)
and its maps:

- ``lru_mapping`` (array of maps): per possible CPU, its own LRU connection table
  (``BPF_MAP_TYPE_LRU_HASH``, flow_key -> real_pos_lru), made before the object is loaded and
  given to ``lru_mapping`` as its inner-map shape, as ``KatranLb::initLrus``/``attachLrus`` do.
- ``ctl_array[0]``: the default router's MAC, the destination of every encapsulated frame.
- ``vip_miss_stats[0]``: an all-zero VIP, as ``KatranLb::loadBpfProgs`` writes.
- ``pckt_srcs[0]`` / ``pckt_srcs[1]`` (GUE builds only): the outer IPv4 / IPv6 source
  (``KatranConfig::katranSrcV4`` / ``katranSrcV6``, ``KatranLb::setupGueEnvironment``).
- ``vip_map``: vip_definition -> vip_meta {flags, vip_num}; VIP numbers are handed out lowest
  first and returned when a VIP goes (``KatranLb::addVip``/``delVip``).
- ``reals``: real number -> real_definition; numbers start at 1 (0 is "no real") and are
  shared by every VIP that uses the address, freed when none does (``increaseRefCountForReal``).
- ``ch_rings``: ``vip_num * RING_SIZE + slot`` -> real number, from :mod:`katran_target.maglev`;
  a change of reals rewrites only the slots whose real changed (``modifyRealsForVip`` ->
  ``programHashRing``), in one batch.

The data plane reads ``stats`` (per VIP and global counters) and ``reals_stats`` (per real),
both per-CPU: :meth:`KatranBalancer.counters` sums them under stable names.

Layouts are x86-64's (little-endian, natural alignment) and checked against the map sizes the
loaded object reports, so a Katran whose structures changed is refused, not misprogrammed.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from dsrconform.bpf import libbpf
from dsrconform.errors import BpfError, ConfigError
from dsrconform.netns import enter_netns
from katran_target import maglev

PROGRAM = "balancer_ingress"
RING_SIZE = maglev.DEFAULT_RING_SIZE  # RING_SIZE (balancer_consts.h)
MAX_VIPS = maglev.MAX_VIPS
MAX_REALS = 4096  # MAX_REALS
LRU_SIZE = 65_536
"""Entries of each CPU's connection table here (KatranLb's default, 8M spread over the
forwarding cores, is a production figure; the lab carries a few thousand flows)."""
BPF_MAP_TYPE_LRU_HASH = 9
PROTO_NAMES = {6: "tcp", 17: "udp"}

# Global slots of the `stats` map, at MAX_VIPS + n (balancer_consts.h), and the names of their
# two values (v1, v2) here; None: not a counter (NEW_CONN_RATE holds a rate and a timestamp).
GLOBAL_STATS: dict[int, tuple[str | None, str | None]] = {
    0: ("lru_total", "lru_miss"),  # LRU_CNTRS: packets to a VIP; of them, routed by the ring
    1: ("lru_miss_tcp_syn", "lru_miss_tcp_nonsyn"),  # LRU_MISS_CNTR
    3: ("fallback_lru", None),  # FALLBACK_LRU_CNTR: no per-CPU LRU (never, here)
    4: ("icmp_toobig_v4", "icmp_toobig_v6"),  # ICMP_TOOBIG_CNTRS
    7: ("encap_fail_v4", "encap_fail_v6"),  # ENCAP_FAIL_CNTR
    9: ("ch_drop_no_real", "ch_drop_real_0"),  # CH_DROP_STATS
    16: ("xdp_total_packets", "xdp_total_bytes"),  # XDP_TOTAL_CNTR
    17: ("xdp_tx_packets", "xdp_tx_bytes"),  # XDP_TX_CNTR
    18: ("xdp_drop_packets", "xdp_drop_bytes"),  # XDP_DROP_CNTR
    19: ("xdp_pass_packets", "xdp_pass_bytes"),  # XDP_PASS_CNTR
}

VipKey = tuple[str, int, int]  # (address, port, IP protocol number)


def vip_label(addr: str) -> str:
    """An address as it stands before ``:port`` in a counter name (IPv6 in brackets)."""
    return f"[{addr}]" if ":" in addr else addr


# --- map layouts -----------------------------------------------------------------------------


F_IPV6 = 1 << 0
"""``real_definition.flags`` of an IPv6 real (balancer_consts.h): Katran encapsulates toward it
in IPv6 (IPv6-in-IPv6, IPv4-in-IPv6, or GUE over IPv6)."""
V4_SRC_INDEX, V6_SRC_INDEX = 0, 1  # pckt_srcs keys of the GUE outer sources (balancer_consts.h)


def _addr16(addr: str) -> bytes:
    """An address as Katran's 16-byte unions hold it: IPv4 in the first 4 bytes, or IPv6."""
    ip = ipaddress.ip_address(addr)
    return ip.packed if ip.version == 6 else ip.packed + bytes(12)


def pack_vip_definition(addr: str, port: int, proto: int) -> bytes:
    """struct vip_definition: address (16 bytes, IPv4 in the first 4), port (network order),
    proto, one byte of padding: 20 bytes."""
    return _addr16(addr) + struct.pack("!H", port) + struct.pack("=Bx", proto)


def pack_vip_meta(flags: int, vip_num: int) -> bytes:
    return struct.pack("=II", flags, vip_num)


def pack_real_definition(addr: str, flags: int = 0) -> bytes:
    """struct real_definition: address (16 bytes), flags (:data:`F_IPV6` set for an IPv6
    address, as ``KatranLb`` sets it), padding."""
    if ipaddress.ip_address(addr).version == 6:
        flags |= F_IPV6
    return _addr16(addr) + struct.pack("=B3x", flags)


def pack_ctl_mac(mac: str) -> bytes:
    """struct ctl_value holding a MAC: 6 bytes and 2 of padding."""
    raw = bytes.fromhex(mac.replace(":", ""))
    if len(raw) != 6:
        raise ConfigError(f"katran target: {mac!r} is not a MAC address")
    return raw + bytes(2)


def pack_u32(value: int) -> bytes:
    return struct.pack("=I", value)


def sum_lb_stats(slots: Sequence[bytes]) -> tuple[int, int]:
    """struct lb_stats {v1, v2} summed over the per-CPU slots."""
    v1 = v2 = 0
    for raw in slots:
        a, b = struct.unpack("=QQ", raw[:16])
        v1, v2 = v1 + a, v2 + b
    return v1, v2


LAYOUT = {
    # map: (key size, value size) this module packs
    "vip_map": (20, 8),
    "reals": (4, 20),
    "ch_rings": (4, 4),
    "ctl_array": (4, 8),
    "stats": (4, 16),
    "reals_stats": (4, 16),
    "lru_mapping": (4, 4),
    "vip_miss_stats": (4, 20),
}
FLOW_KEY_SIZE, REAL_POS_LRU_SIZE = 40, 16  # struct flow_key, struct real_pos_lru


# --- control-plane state ---------------------------------------------------------------------


@dataclass
class _Vip:
    num: int
    flags: int
    reals: dict[int, int] = field(default_factory=dict)  # in the ring: real number -> weight
    held: set[int] = field(default_factory=set)  # out of the ring, numbers kept (draining)
    ring: list[int] = field(default_factory=list)


@dataclass
class _Real:
    num: int
    refs: int


class KatranBalancer:
    """One loaded Katran balancer: program its VIPs and reals, attach it, read its counters.

    ``default_mac``: the next hop's MAC (``KatranConfig::defaultMac``). ``hash_function``:
    Katran's ring algorithm (:data:`katran_target.maglev.DEFAULT_HASH`, KatranLb's default).
    ``lru_size``: entries of each CPU's connection table. ``gue_source``: the outer source of
    GUE packets, for an object built with ``GUE_ENCAP`` (None for Katran's IPIP build);
    ``gue_source6``: the outer source of GUE packets over IPv6 (toward IPv6 reals).
    """

    def __init__(
        self,
        obj_path: str | Path,
        *,
        default_mac: str,
        hash_function: maglev.HashFunction = maglev.DEFAULT_HASH,
        lru_size: int = LRU_SIZE,
        gue_source: str | None = None,
        gue_source6: str | None = None,
    ) -> None:
        self.hash_function = hash_function
        self._lrus: list[libbpf.Map] = []
        cpus = libbpf.possible_cpus()
        try:
            for cpu in range(cpus):
                self._lrus.append(
                    libbpf.create_map(
                        BPF_MAP_TYPE_LRU_HASH,
                        f"katran_lru{cpu}",
                        FLOW_KEY_SIZE,
                        REAL_POS_LRU_SIZE,
                        lru_size,
                    )
                )
            self.obj = libbpf.BpfObject(obj_path, inner_maps={"lru_mapping": self._lrus[0].fd})
        except BaseException:
            self._close_lrus()
            raise
        try:
            self._check_layout()
            self.program = self.obj.program(PROGRAM)
            mapping = self.obj.map("lru_mapping")
            for cpu, lru in enumerate(self._lrus):
                mapping.update(pack_u32(cpu), pack_u32(lru.fd))
            self.obj.map("ctl_array").update(pack_u32(0), pack_ctl_mac(default_mac))
            self.obj.map("vip_miss_stats").update(pack_u32(0), bytes(20))
            for index, source in ((V4_SRC_INDEX, gue_source), (V6_SRC_INDEX, gue_source6)):
                if source is not None:
                    self.obj.map("pckt_srcs").update(pack_u32(index), pack_real_definition(source))
        except BaseException:
            self.close()
            raise
        self._vips: dict[VipKey, _Vip] = {}
        self._free_vips: deque[int] = deque(range(MAX_VIPS))
        self._reals: dict[str, _Real] = {}
        self._free_reals: deque[int] = deque(range(1, MAX_REALS))
        self._attached: tuple[str | None, int] | None = None
        # Per real number: its reals_stats when its current address got it (numbers are reused).
        self._real_base: dict[int, tuple[int, int]] = {}
        # Per address no longer a real: what its number counted for it.
        self._released: dict[str, tuple[int, int]] = {}

    def _check_layout(self) -> None:
        for name, (key, value) in LAYOUT.items():
            m = self.obj.map(name)
            if (m.key_size, m.value_size) != (key, value):
                raise BpfError(
                    f"Katran's map {name} has key/value sizes {m.key_size}/{m.value_size}, "
                    f"this adapter packs {key}/{value}: an unsupported Katran version"
                )
        rings = self.obj.map("ch_rings").max_entries
        if rings != MAX_VIPS * RING_SIZE:
            raise BpfError(
                f"Katran's ch_rings has {rings} entries, expected MAX_VIPS * RING_SIZE = "
                f"{MAX_VIPS * RING_SIZE}: built with other sizes than this adapter's"
            )

    # --- VIPs and reals (KatranLb::addVip, modifyRealsForVip) --------------------------------

    def vip_num(self, vip: VipKey) -> int:
        return self._vips[vip].num

    def add_vip(self, vip: VipKey, flags: int = 0) -> int:
        """Add a VIP (no reals yet: its ring is empty, its packets dropped); its number."""
        if vip in self._vips:
            raise ConfigError(f"katran target: VIP {vip} added twice")
        if not self._free_vips:
            raise ConfigError(f"katran target: more than {MAX_VIPS} VIPs")
        num = self._free_vips.popleft()
        self._vips[vip] = _Vip(num=num, flags=flags, ring=[-1] * RING_SIZE)
        addr, port, proto = vip
        self.obj.map("vip_map").update(
            pack_vip_definition(addr, port, proto), pack_vip_meta(flags, num)
        )
        return num

    def _real_num(self, addr: str) -> int:
        real = self._reals.get(addr)
        if real is not None:
            real.refs += 1
            return real.num
        if not self._free_reals:
            raise ConfigError(f"katran target: more than {MAX_REALS - 1} reals")
        num = self._free_reals.popleft()
        self._reals[addr] = _Real(num=num, refs=1)
        self._real_base[num] = self._real_stats(num)
        self.obj.map("reals").update(pack_u32(num), pack_real_definition(addr))
        return num

    def _drop_real(self, addr: str) -> None:
        real = self._reals[addr]
        real.refs -= 1
        if real.refs == 0:
            pk, by = self._real_stats(real.num)
            base = self._real_base.pop(real.num, (0, 0))
            old = self._released.get(addr, (0, 0))
            self._released[addr] = (old[0] + pk - base[0], old[1] + by - base[1])
            del self._reals[addr]
            self._free_reals.append(real.num)

    def set_reals(
        self, vip: VipKey, reals: Sequence[str], weight: int = 1, *, hold: Sequence[str] = ()
    ) -> int:
        """Make ``reals`` the VIP's reals (all of weight ``weight``), as a batch of
        ``modifyRealsForVip`` deletions and additions: the ring is recomputed and only its
        changed slots written, in one batch. Returns how many slots changed. An empty set
        leaves the ring as it was (Katran's behaviour), so callers keep at least one real.

        ``hold``: reals out of the ring whose numbers stay allocated (and in ``reals``), so LRU
        entries naming them keep forwarding there: how this adapter drains a server."""
        state = self._vips[vip]
        ring_addrs = list(dict.fromkeys(reals))
        held_addrs = [a for a in dict.fromkeys(hold) if a not in ring_addrs]
        by_num = {r.num: a for a, r in self._reals.items()}
        current = {by_num[n] for n in [*state.reals, *state.held]}
        wanted = {*ring_addrs, *held_addrs}
        for addr in sorted(current - wanted):
            self._drop_real(addr)
        for addr in [a for a in [*ring_addrs, *held_addrs] if a not in current]:
            self._real_num(addr)
        state.reals = {self._reals[a].num: weight for a in ring_addrs}
        state.held = {self._reals[a].num for a in held_addrs}
        if not state.reals:
            return 0
        by_num = {r.num: a for a, r in self._reals.items()}
        eps = maglev.endpoints([(n, by_num[n], w) for n, w in state.reals.items()])
        new = maglev.generate_ring(eps, RING_SIZE, self.hash_function)
        delta = maglev.ring_delta(state.ring, new)
        if delta:
            base = state.num * RING_SIZE
            keys = b"".join(pack_u32(base + pos) for pos, _ in delta)
            values = b"".join(pack_u32(real) for _, real in delta)
            self.obj.map("ch_rings").update_batch(keys, values, len(delta))
        state.ring = new
        return len(delta)

    def reals_of(self, vip: VipKey) -> list[str]:
        """The VIP's reals in its ring, sorted."""
        nums = self._vips[vip].reals
        return sorted(a for a, r in self._reals.items() if r.num in nums)

    def ring_of(self, vip: VipKey) -> list[int]:
        """The VIP's ring as programmed (real numbers, -1 for none)."""
        return list(self._vips[vip].ring)

    def real_address(self, num: int) -> str | None:
        return next((a for a, r in self._reals.items() if r.num == num), None)

    # --- counters ------------------------------------------------------------------------------

    def _real_stats(self, num: int) -> tuple[int, int]:
        return sum_lb_stats(self.obj.map("reals_stats").lookup_percpu(pack_u32(num)))

    def counters(self) -> dict[str, int]:
        """Katran's counters, per-CPU slots summed: the global ones (:data:`GLOBAL_STATS`
        names, plus ``lru_hit`` = ``lru_total - lru_miss``), per VIP
        ``vip_packets[198.19.0.10:80/tcp]`` (``[2001:2:0:100::10]:80/tcp`` for IPv6) /
        ``vip_bytes[...]`` and per real ``backend_packets[198.18.20.1]`` /
        ``backend_bytes[...]`` (bytes of the inner IP packets; a real's totals stay reported
        after it is removed)."""
        stats = self.obj.map("stats")
        out: dict[str, int] = {}
        for slot, names in GLOBAL_STATS.items():
            values = sum_lb_stats(stats.lookup_percpu(pack_u32(MAX_VIPS + slot)))
            for name, value in zip(names, values, strict=True):
                if name is not None:
                    out[name] = value
        out["lru_hit"] = max(0, out["lru_total"] - out["lru_miss"])
        for (addr, port, proto), state in self._vips.items():
            pk, by = sum_lb_stats(stats.lookup_percpu(pack_u32(state.num)))
            label = f"{vip_label(addr)}:{port}/{PROTO_NAMES.get(proto, proto)}"
            out[f"vip_packets[{label}]"], out[f"vip_bytes[{label}]"] = pk, by
        backends = dict(self._released)
        for addr, real in self._reals.items():
            pk, by = self._real_stats(real.num)
            base = self._real_base.get(real.num, (0, 0))
            old = backends.get(addr, (0, 0))
            backends[addr] = (old[0] + pk - base[0], old[1] + by - base[1])
        for addr, (pk, by) in backends.items():
            out[f"backend_packets[{addr}]"], out[f"backend_bytes[{addr}]"] = pk, by
        return out

    # --- attach / close --------------------------------------------------------------------------

    def attach(self, netns: str | None, ifname: str) -> None:
        """Attach natively (driver mode) to ``ifname`` in ``netns``."""
        from pyroute2 import IPRoute

        with enter_netns(netns):
            with IPRoute() as ipr:
                found = ipr.link_lookup(ifname=ifname)
            if not found:
                raise ConfigError(f"katran target: no interface {ifname!r} in {netns or 'host'}")
            libbpf.xdp_attach(found[0], self.program.fd, mode="native")
        self._attached = (netns, found[0])

    def detach(self) -> None:
        if self._attached is None:
            return
        netns, idx = self._attached
        self._attached = None
        with enter_netns(netns):
            libbpf.xdp_detach(idx, mode="native")

    def _close_lrus(self) -> None:
        for lru in self._lrus:
            with suppress(OSError):
                os.close(lru.fd)
        self._lrus = []

    def close(self) -> None:
        """Detach (when attached) and release every map and program."""
        try:
            self.detach()
        finally:
            self.obj.close()
            self._close_lrus()

    def __enter__(self) -> KatranBalancer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def bench_balancer(
    obj_path: Path,
    *,
    netns: str,
    ifname: str,
    next_hop_mac: str,
    vip: VipKey,
    backends: Sequence[str],
    hash_function: maglev.HashFunction = maglev.DEFAULT_HASH,
    gue_source: str | None = None,
    vip_flags: int = 0,
) -> Iterator[KatranBalancer]:
    """A balancer with one VIP and its backends, attached to ``ifname`` in ``netns`` for the
    body, detached and closed after it. ``gue_source`` of either family: the outer source
    toward reals of that family."""
    v6 = gue_source is not None and ipaddress.ip_address(gue_source).version == 6
    with KatranBalancer(
        obj_path,
        default_mac=next_hop_mac,
        hash_function=hash_function,
        gue_source=None if v6 else gue_source,
        gue_source6=gue_source if v6 else None,
    ) as lb:
        lb.add_vip(vip, vip_flags)
        lb.set_reals(vip, backends)
        lb.attach(netns, ifname)
        yield lb


def ipip_outer_source(src: str, sport: int, prefix: int) -> str:
    """The outer IPv4 source Katran's IPIP build writes (``create_encap_ipv4_src``): the two
    bytes of ``prefix`` (``IPIP_V4_PREFIX`` as the little-endian CPU stores it), then the
    client address's last two bytes XOR the source port (low byte first)."""
    raw = ipaddress.IPv4Address(src).packed
    head = prefix.to_bytes(2, "little")
    return str(
        ipaddress.IPv4Address(head + bytes([raw[2] ^ (sport & 0xFF), raw[3] ^ (sport >> 8)]))
    )
