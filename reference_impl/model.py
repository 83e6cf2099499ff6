"""A pure-Python model of the reference MUX's decisions: the oracle the tests compare against.

It mirrors the BPF program's choice for well-formed traffic: the connection table first, the
VIP's Maglev table (:mod:`reference_impl.maglev`) indexed by :func:`flowhash.flow_hash` (IPv4) or
:func:`flowhash.flow_hash6` (IPv6) on a miss, and the same insert rule (a bare SYN never creates an
entry; ICMP and ICMPv6 errors never do). The insert rate limit is not modelled: compare against a
MUX configured with ``new_conn_rate: 0``. :meth:`MuxModel.encapsulation` says which outer header a
decision gets (IPIP, IPv6-in-IPv6 or IPv4-in-IPv6) and its IPv6 flow label.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from reference_impl import maglev
from reference_impl.config import MuxConfig
from reference_impl.flowhash import flow_hash_str, flow_label, ring_slot

Flow = tuple[str, str, int, int, int]  # (client, vip, client port, vip port, proto)
VipKey = tuple[str, int, int]


@dataclass(frozen=True)
class Decision:
    backend: str | None  # None: the VIP has no backend (the MUX drops)
    from_conn_table: bool


@dataclass(frozen=True)
class Encapsulation:
    """The outer header the MUX puts on a packet of a flow sent to ``backend``."""

    outer: str  # "ipip" (IPv4 in IPv4), "ip6ip6" (next header 41) or "ipip6" (next header 4)
    flow_label: int | None  # the outer IPv6 flow label; None for an outer IPv4 header


class MuxModel:
    def __init__(self, config: MuxConfig) -> None:
        self.seed = config.mux.hash_seed
        self.ring = config.mux.ring_size
        self.tables: dict[VipKey, list[str | None]] = {}
        self.conn: dict[Flow, str] = {}
        for v in config.vips:
            self.set_backends(v.key, v.backends)

    def set_backends(self, vip: VipKey, backends: Sequence[str]) -> None:
        self.tables[vip] = maglev.table_as_names(backends, self.ring)
        live = {b for t in self.tables.values() for b in t if b}
        # A connection pinned to a backend that no longer exists falls back to Maglev.
        self.conn = {f: b for f, b in self.conn.items() if b in live}

    def hash(self, flow: Flow) -> int:
        """The flow hash of ``flow`` (IPv4 or IPv6, by its addresses)."""
        return flow_hash_str(*flow, seed=self.seed)

    def maglev_choice(self, flow: Flow) -> str | None:
        _src, dst, _sport, dport, proto = flow
        return self.tables[(dst, dport, proto)][ring_slot(self.hash(flow), self.ring)]

    def encapsulation(self, flow: Flow, backend: str) -> Encapsulation:
        """The outer header of ``flow``'s packets (and of ICMP errors about it) to ``backend``."""
        if ipaddress.ip_address(backend).version == 4:
            return Encapsulation("ipip", None)
        inner6 = ipaddress.ip_address(flow[0]).version == 6
        return Encapsulation("ip6ip6" if inner6 else "ipip6", flow_label(self.hash(flow)))

    def decide(self, flow: Flow, *, may_insert: bool) -> Decision:
        """The backend for one packet of ``flow``; updates the modelled connection table."""
        if flow in self.conn:
            return Decision(self.conn[flow], True)
        be = self.maglev_choice(flow)
        if be is not None and may_insert:
            self.conn[flow] = be
        return Decision(be, False)

    def packet(self, flow: Flow, *, tcp_flags: str = "A") -> Decision:
        """:meth:`decide` with the MUX's insert rule for a TCP packet with these flags (or UDP)."""
        bare_syn = flow[4] == 6 and "S" in tcp_flags and "A" not in tcp_flags
        return self.decide(flow, may_insert=not bare_syn)

    def icmp_error(self, flow: Flow) -> Decision:
        """An ICMP or ICMPv6 error about ``flow`` (client->VIP direction): looked up, never
        inserted."""
        return self.decide(flow, may_insert=False)
