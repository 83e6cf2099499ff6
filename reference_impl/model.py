"""A pure-Python model of the reference MUX's decisions: the oracle the tests compare against.

It mirrors the BPF program's choice for well-formed traffic: the connection table first, the
VIP's Maglev table (:mod:`reference_impl.maglev`) indexed by :func:`flowhash.flow_hash` on a miss,
and the same insert rule (a bare SYN never creates an entry; ICMP errors never do). The insert rate
limit is not modelled: compare against a MUX configured with ``new_conn_rate: 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reference_impl import maglev
from reference_impl.config import MuxConfig
from reference_impl.flowhash import flow_hash, ip_int, ring_slot

Flow = tuple[str, str, int, int, int]  # (client, vip, client port, vip port, proto)
VipKey = tuple[str, int, int]


@dataclass(frozen=True)
class Decision:
    backend: str | None  # None: the VIP has no backend (the MUX drops)
    from_conn_table: bool


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

    def maglev_choice(self, flow: Flow) -> str | None:
        src, dst, sport, dport, proto = flow
        h = flow_hash(ip_int(src), ip_int(dst), sport, dport, proto, self.seed)
        return self.tables[(dst, dport, proto)][ring_slot(h, self.ring)]

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
        """An ICMP error about ``flow`` (client->VIP direction): looked up, never inserted."""
        return self.decide(flow, may_insert=False)
