"""Taps on a running lab's links: one :class:`~dsrconform.observe.linktap.LinkTap` per interface.

A :class:`LabTaps` attaches a tap (both directions) to every interface the lab's topology creates
(or those of the nodes asked for), and turns their counts into the checkers' tap records, each
named ``<node>:<ifname>:<direction>`` and placed on its link with the peer at the other end (a
segment member's peer is the segment's host; a segment's bridge has none)::

    with LabTaps(lab) as taps:
        ...                      # traffic
        tapset = taps.collect()  # a TapSet: TapInfo + TapFlow records

Each link is tapped at both ends, so each packet is seen twice (by its sender's egress tap and
its receiver's ingress tap); a byte count must take one end of a link (see
``observe.observations.one_per_link``). A node's ingress tap runs after its XDP program:
what XDP forwarded (a MUX's VIP traffic) only its sender's egress tap sees.

While attached, the taps start a new period at every event the lab records (a backend change,
a node killed or restarted, a link down: :attr:`dsrconform.lab.Lab.listeners`), so a flow's
records keep where its packets went between two events (``TapFlow.spans``).

Attaching is all or nothing: if one tap cannot attach, those already attached are removed
before the error propagates, and leaving the context always detaches every tap.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from dsrconform.observe.linktap import DEFAULT_MAX_FLOWS, LinkTap, to_records
from dsrconform.observe.taps import TapSet
from dsrconform.topology import Interface

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab

__all__ = ["LabTaps"]


class LabTaps:
    """Taps on every interface of ``lab`` (a :class:`dsrconform.lab.Lab`) or of ``nodes``."""

    def __init__(self, lab: RunningLab, *, nodes: Iterable[str] | None = None,
                 max_flows: int = DEFAULT_MAX_FLOWS) -> None:  # fmt: skip
        """The lab topology's first black-holed network (the SYN flood's sources) and the IPv6
        flood's (:data:`~dsrconform.traffic.synflood.FLOOD_NET6`) are aggregated into one
        record per flow shape (see :class:`LinkTap`), so a flood never overflows."""
        from dsrconform.traffic.synflood import FLOOD_NET6

        self.lab = lab
        holes = list(getattr(lab.topology, "blackhole", []) or [])
        self.aggregate: list[str] = [*holes[:1], FLOOD_NET6]
        wanted = set(nodes) if nodes is not None else set(lab.topology.nodes)
        unknown = wanted - set(lab.topology.nodes)
        if unknown:
            from dsrconform.errors import ConfigError

            raise ConfigError(
                f"no node {', '.join(sorted(unknown))} in lab {lab.name}; "
                f"nodes: {', '.join(lab.topology.nodes)}"
            )
        self.interfaces: list[Interface] = [
            i for i in lab.topology.interfaces() if i.node in wanted
        ]
        self.max_flows = max_flows
        self._taps: list[tuple[Interface, LinkTap]] = []
        self.started: float | None = None

    def attach(self) -> LabTaps:
        try:
            for iface in self.interfaces:
                tap = LinkTap(self.lab.netns(iface.node), iface.ifname, max_flows=self.max_flows,
                              aggregate=self.aggregate)  # fmt: skip
                try:
                    tap.attach()
                except BaseException:
                    tap.close()
                    raise
                self._taps.append((iface, tap))
        except BaseException:
            self.close()
            raise
        listeners = getattr(self.lab, "listeners", None)
        if listeners is not None and self._on_event not in listeners:
            listeners.append(self._on_event)
        self.started = time.monotonic()
        return self

    def _on_event(self, event: Any) -> None:
        self.new_period()

    def new_period(self) -> None:
        """Every tap starts its next period (see :meth:`LinkTap.new_period`)."""
        for _, tap in self._taps:
            tap.new_period()

    def collect(self) -> TapSet:
        """Every tap's records so far (taps keep counting: call again for a later view)."""
        if self.started is None:
            raise RuntimeError("LabTaps.collect() before attach()")
        now = time.monotonic()
        records: list[Any] = []
        for iface, tap in self._taps:
            records += to_records(
                tap, node=iface.node, link=iface.group, peer=iface.peer,
                started=self.started, stopped=now,
            )  # fmt: skip
        return TapSet.from_records(records, source=f"taps of lab {self.lab.name}")

    def tap(self, node: str, ifname: str) -> LinkTap:
        """The tap on ``node``'s interface ``ifname`` (to read flows while traffic runs)."""
        for iface, tap in self._taps:
            if (iface.node, iface.ifname) == (node, ifname):
                return tap
        raise KeyError(f"no tap on {node}:{ifname}")

    def close(self) -> None:
        """Detach and free every tap (a tap whose namespace is gone is simply freed)."""
        listeners = getattr(self.lab, "listeners", None)
        if listeners is not None and self._on_event in listeners:
            listeners.remove(self._on_event)
        while self._taps:
            _, tap = self._taps.pop()
            tap.close()

    def __enter__(self) -> LabTaps:
        return self.attach()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()
