"""Faults of the network and of nodes' resources, and traffic faults: link loss and partitions
(nftables, :mod:`dsrconform.lab.faults`), CPU starvation of a node (cgroups), a spoofed SYN flood
and hostile packets. Each follows the contract of :mod:`dsrconform.chaos.fault`.
"""

from __future__ import annotations

import threading
import time
from threading import Event
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, Protocol

from pydantic import Field, PrivateAttr

from dsrconform.chaos.fault import Say, Step, window
from dsrconform.chaos.library import _Base, _service
from dsrconform.errors import ConfigError, LabError
from dsrconform.observe.observations import FaultWindow
from dsrconform.topology import Topology

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab
    from dsrconform.traffic.synflood import FloodResult

__all__ = ["CpuStarve", "HostilePackets", "LinkLoss", "Partition", "SynFlood"]

Direction = Literal["both", "a->b", "b->a"]


class _Undoable(Protocol):
    def undo(self) -> None: ...


def _node(topo: Topology, name: str, field: str) -> str:
    if name not in topo.nodes:
        raise ConfigError(
            f"{field}: no node {name!r} in lab {topo.name}; fix: one of {', '.join(topo.nodes)}"
        )
    return name


def _link(topo: Topology, a: str, b: str) -> None:
    from dsrconform.lab.faults import link_interfaces

    _node(topo, a, "a")
    _node(topo, b, "b")
    link_interfaces(topo, a, b)  # ConfigError naming both when they share no link


class _Undone(_Base):
    """A fault the lab applies and hands back a handle to undo (an impairment, a CPU limit):
    ``invoke`` applies it, ``revert`` undoes it once and records its window."""

    _handle: _Undoable | None = PrivateAttr(default=None)
    _start: float = PrivateAttr(default=0.0)

    def _apply(self, lab: RunningLab) -> _Undoable:
        raise NotImplementedError

    def _window(self, end: float) -> FaultWindow:
        raise NotImplementedError

    def _what(self) -> str:
        raise NotImplementedError

    def invoke(self, lab: RunningLab, say: Say, stop: Event) -> None:
        say(self._what())
        self._start = time.monotonic()
        self._handle = self._apply(lab)

    def revert(self, lab: RunningLab, say: Say) -> None:
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        handle.undo()
        self._windows.append(self._window(time.monotonic()))
        say(f"lifted: {self._what()}")


class _Impair(_Undone):
    a: str
    b: str
    direction: Direction = "both"

    def _impairment(self) -> str:
        raise NotImplementedError

    def _what(self) -> str:
        return f"{self._impairment()} on {self.a}-{self.b} ({self.direction})"

    def plan(self, topo: Topology) -> list[Step]:
        _link(topo, self.a, self.b)
        link = f"{self.a}-{self.b}"
        return [
            Step("invoke", "nft-impair", link, f"{self._impairment()}, {self.direction}"),
            Step("revert", "nft-delete", link, "impairment lifted"),
        ]

    def _window(self, end: float) -> FaultWindow:
        return window(
            "link-impair",
            self._start,
            end,
            target=f"{self.a}-{self.b}",
            detail={"what": self._impairment(), "direction": self.direction},
        )


class LinkLoss(_Impair):
    """Drop ``percent`` of the packets on the link a-b (window ``link-impair``)."""

    kind: Literal["link-loss"] = "link-loss"
    percent: Annotated[float, Field(gt=0, le=100)]

    def _impairment(self) -> str:
        return f"{self.percent:g}% loss"

    def _apply(self, lab: RunningLab) -> _Undoable:
        return lab.impair_link(self.a, self.b, loss=self.percent, direction=self.direction)


class Partition(_Impair):
    """Drop every packet on the link a-b (window ``link-impair``)."""

    kind: Literal["partition"] = "partition"

    def _impairment(self) -> str:
        return "partition"

    def _apply(self, lab: RunningLab) -> _Undoable:
        return lab.impair_link(self.a, self.b, drop=True, direction=self.direction)


class CpuStarve(_Undone):
    """Cap every process of a node at ``cpus`` CPUs (window ``cpu-limit``)."""

    kind: Literal["cpu-starve"] = "cpu-starve"
    node: str
    cpus: Annotated[float, Field(gt=0, le=64)] = 0.05

    def plan(self, topo: Topology) -> list[Step]:
        _node(topo, self.node, "node")
        return [
            Step("invoke", "cpu-limit", self.node, f"{self.cpus:g} CPUs"),
            Step("revert", "cpu-unlimit", self.node, "limit lifted"),
        ]

    def _what(self) -> str:
        return f"{self.node} limited to {self.cpus:g} CPUs"

    def _apply(self, lab: RunningLab) -> _Undoable:
        return lab.limit_cpu(self.node, self.cpus)

    def _window(self, end: float) -> FaultWindow:
        return window("cpu-limit", self._start, end, target=self.node, detail={"cpus": self.cpus})


FLOOD_WIND_DOWN = 120.0
"""Seconds the flood's revert waits at most for its sender to wind down after its time is up."""


class SynFlood(_Base):
    """A spoofed SYN flood from the lab's black-holed network at a TCP service, for ``seconds``
    at ``rate`` packets/s (paced); its window carries the rate delivered. The SF requirements
    judge floods of at least 10 s. Not lasting: ``invoke`` returns when the flood's time is up
    (its last send returned), not when the sender has wound down and put the router's link
    back, which took 7 s once on a loaded machine: what follows the flood (``after``) follows
    it closely. ``revert`` waits for the sender (bounded) and records the window."""

    kind: Literal["syn-flood"] = "syn-flood"
    lasting: ClassVar[bool] = False
    service: str | None = None
    seconds: Annotated[float, Field(gt=0, le=120)] = 12.0
    rate: Annotated[float, Field(gt=0, le=2_000_000)] = 130_000
    _sender: threading.Thread | None = PrivateAttr(default=None)
    _outcome: list[FloodResult | Exception] = PrivateAttr(default_factory=list)

    def expected_seconds(self) -> float:
        return self.seconds

    def plan(self, topo: Topology) -> list[Step]:
        svc = _service(topo, self.service)
        if svc.proto != "tcp":
            raise ConfigError(f"syn-flood: service {svc.name} is {svc.proto}; fix: a TCP service")
        detail = f"{self.rate:,.0f} SYN/s for {self.seconds:g} s"
        return [
            Step("invoke", "flood", f"{svc.vip}:{svc.port}", detail),
            Step("revert", "join", "the flood's sender", "its window recorded"),
        ]

    def invoke(self, lab: RunningLab, say: Say, stop: Event) -> None:
        from dsrconform.traffic.synflood import lab_flood

        svc = _service(lab.topology, self.service)
        say(f"SYN flood at {svc.vip}:{svc.port} for {self.seconds:g} s")
        ended = threading.Event()
        self._outcome = []

        def progress(done: float) -> None:
            if done >= 1.0:
                ended.set()

        def send() -> None:
            try:
                self._outcome.append(
                    lab_flood(
                        lab,
                        vip=svc.vip,
                        port=svc.port,
                        count=int(self.rate * self.seconds * 1.2),
                        duration=self.seconds,
                        rate=self.rate,
                        stop=stop,
                        progress=progress,
                    )
                )
            except Exception as e:  # raised again by revert, in the runner's thread
                self._outcome.append(e)
            finally:
                ended.set()

        self._sender = threading.Thread(target=send, name="chaos-flood", daemon=True)
        self._sender.start()
        deadline = self.seconds * 2 + FLOOD_WIND_DOWN
        if not ended.wait(deadline):
            raise LabError(f"the SYN flood did not end within {deadline:g} s")
        if self._outcome and isinstance(self._outcome[0], Exception):
            raise self._outcome[0]

    def revert(self, lab: RunningLab, say: Say) -> None:
        """Wait for the sender to wind down (it restores the router's link) and record the
        flood's window; its error, if it failed, is raised."""
        sender, self._sender = self._sender, None
        if sender is None:
            return
        sender.join(FLOOD_WIND_DOWN)
        if sender.is_alive():
            raise LabError(f"the SYN flood's sender still runs {FLOOD_WIND_DOWN:g} s after its end")
        (outcome,) = self._outcome
        if isinstance(outcome, Exception):
            raise outcome
        w = outcome.fault_window()
        self._windows.append(w)
        say(f"flood: {w.rate or 0:,.0f} packets/s for {(w.end or w.start) - w.start:.1f} s")


class HostilePackets(_Base):
    """Malformed, non-VIP and foreign encapsulated packets, each frame sent ``repeats`` times
    (windows ``crafted``; RB-1..RB-4)."""

    kind: Literal["hostile-packets"] = "hostile-packets"
    lasting: ClassVar[bool] = False
    repeats: Annotated[int, Field(ge=1, le=1000)] = 20

    def expected_seconds(self) -> float:
        return 2.0

    def plan(self, topo: Topology) -> list[Step]:
        return [
            Step(
                "invoke",
                "send-crafted",
                "every service",
                f"malformed, non-VIP and foreign encapsulated, x{self.repeats}",
            )
        ]

    def invoke(self, lab: RunningLab, say: Say, stop: Event) -> None:
        from dsrconform.chaos.hostile import send_hostile

        self._windows.extend(send_hostile(lab, say, repeats=self.repeats))

    def revert(self, lab: RunningLab, say: Say) -> None:
        """Nothing to undo: the packets were sent."""
