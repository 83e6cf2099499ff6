"""Every fault kind by name, and the composites: a sequence of faults one after the other, or an
overlap of faults at once (each follows the contract of :mod:`dsrconform.chaos.fault`; their
children are any faults, composites included).

:data:`AnyFault` is the discriminated union a scenario's ``fault:`` mapping validates into
(``kind`` picks the class); :func:`fault_from` builds one from plain parameters.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from threading import Event
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, Field, PrivateAttr

from dsrconform.chaos.fault import Fault, Say, Step
from dsrconform.chaos.library import (
    AgentRestart,
    ConfigChange,
    ServerAdd,
    ServerDrain,
    ServerMove,
    ServerRemove,
    _Base,
)
from dsrconform.chaos.muxfaults import MuxAdd, MuxHang, MuxKill, MuxRestart, RouteWithdraw
from dsrconform.chaos.netfaults import CpuStarve, HostilePackets, LinkLoss, Partition, SynFlood
from dsrconform.errors import LabError
from dsrconform.observe.observations import FaultWindow
from dsrconform.topology import Topology

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab

__all__ = ["FAULT_CLASSES", "AnyFault", "Overlap", "Sequence", "fault_from"]


class _Composite(_Base):
    faults: Annotated[list[AnyFault], Field(min_length=1, max_length=16)]
    _pending: list[Fault] = PrivateAttr(default_factory=list)
    """Children to revert: every child set up (its setup may change the lab), those invoked
    moved to the end as they are, so the last invoked is reverted first."""

    def _children(self) -> list[Fault]:
        return list(self.faults)

    def setup(self, lab: RunningLab, say: Say) -> None:
        super().setup(lab, say)
        self._pending = []
        for f in self._children():
            self._pending.append(f)  # before its setup: a partial setup is reverted too
            f.setup(lab, say)

    def _invoking(self, f: Fault) -> None:
        if f in self._pending:
            self._pending.remove(f)
        self._pending.append(f)

    def revert(self, lab: RunningLab, say: Say) -> None:
        """Every child set up or invoked is reverted, the last invoked first, each even when
        another's revert failed; the first failure is raised once all were tried."""
        errors: list[Exception] = []
        while self._pending:
            f = self._pending.pop()
            try:
                f.revert(lab, say)
            except Exception as e:
                say(f"revert of {f.describe()} failed: {type(e).__name__}: {e}")
                errors.append(e)
        if errors:
            raise errors[0]

    def windows(self) -> list[FaultWindow]:
        return [w for f in self._children() for w in f.windows()]


class Sequence(_Composite):
    """Each fault in turn: invoked, held ``hold`` seconds if lasting, reverted, then ``gap``
    seconds before the next. Not lasting: every child is reverted when ``invoke`` returns."""

    kind: Literal["sequence"] = "sequence"
    lasting: ClassVar[bool] = False
    hold: Annotated[float, Field(ge=0, le=600)] = 0.0
    gap: Annotated[float, Field(ge=0, le=600)] = 0.0

    def expected_seconds(self) -> float:
        kids = self._children()
        held = sum(self.hold for f in kids if f.lasting)
        return sum(f.expected_seconds() for f in kids) + held + self.gap * (len(kids) - 1)

    def plan(self, topo: Topology) -> list[Step]:
        out: list[Step] = []
        for i, f in enumerate(self._children()):
            steps = f.plan(topo)
            out += [s for s in steps if s.phase == "setup"]
            body = [s for s in steps if s.phase == "invoke"]
            if f.lasting:
                body.append(Step("invoke", "hold", f.describe(), f"{self.hold:g} s"))
                body += [
                    Step("invoke", s.action, s.subject, s.detail, s.waits)
                    for s in steps
                    if s.phase == "revert"
                ]
            if i and self.gap:
                out.append(Step("invoke", "wait", "sequence", f"{self.gap:g} s gap"))
            out += body
        out.append(Step("revert", "revert", "sequence", "any child left applied, last first"))
        return out

    def invoke(self, lab: RunningLab, say: Say, stop: Event) -> None:
        """Children in turn; an abort (``stop``) ends it early, leaving what is applied to
        ``revert``."""
        for i, f in enumerate(self._children()):
            if i and self.gap and stop.wait(self.gap):  # the schedule: the gap between faults
                return
            if stop.is_set():
                return
            self._invoking(f)
            f.invoke(lab, say, stop)
            if f.lasting:
                if stop.wait(self.hold):  # the schedule: how long the fault is held
                    return
                self._pending.remove(f)
                f.revert(lab, say)


class Overlap(_Composite):
    """Every fault at once, each from its own thread; lasting if any child is. Once all have
    returned, the first error in order is raised (the others are reported)."""

    kind: Literal["overlap"] = "overlap"

    @property
    def lasting(self) -> bool:  # type: ignore[override]  # a property of the children here
        return any(f.lasting for f in self._children())

    def expected_seconds(self) -> float:
        return max(f.expected_seconds() for f in self._children())

    def plan(self, topo: Topology) -> list[Step]:
        out: list[Step] = []
        for f in self._children():
            steps = f.plan(topo)
            out += [s for s in steps if s.phase == "setup"]
            out += [
                Step("invoke", s.action, s.subject, f"{s.detail} (at once)".strip(), s.waits)
                for s in steps
                if s.phase == "invoke"
            ]
        for f in reversed(self._children()):
            out += [s for s in f.plan(topo) if s.phase == "revert"]
        return out

    def invoke(self, lab: RunningLab, say: Say, stop: Event) -> None:
        kids = self._children()
        for f in kids:
            self._invoking(f)
        with ThreadPoolExecutor(max_workers=len(kids)) as pool:
            futures = [pool.submit(f.invoke, lab, say, stop) for f in kids]
            wait(futures)
        errors = [e for fut in futures if (e := fut.exception()) is not None]
        for e in errors[1:]:
            say(f"another fault of the overlap failed too: {type(e).__name__}: {e}")
        if errors:
            raise LabError(f"overlap: {type(errors[0]).__name__}: {errors[0]}") from errors[0]


AnyFault = Annotated[
    MuxKill
    | MuxHang
    | MuxRestart
    | MuxAdd
    | RouteWithdraw
    | ServerRemove
    | ServerDrain
    | ServerAdd
    | ServerMove
    | ConfigChange
    | LinkLoss
    | Partition
    | CpuStarve
    | SynFlood
    | HostilePackets
    | AgentRestart
    | Sequence
    | Overlap,
    Field(discriminator="kind"),
]
"""Any fault: ``kind`` picks the class."""

Sequence.model_rebuild()
Overlap.model_rebuild()

FAULT_CLASSES: dict[str, type[_Base]] = {
    c.model_fields["kind"].default: c
    for c in (
        MuxKill,
        MuxHang,
        MuxRestart,
        MuxAdd,
        RouteWithdraw,
        ServerRemove,
        ServerDrain,
        ServerAdd,
        ServerMove,
        ConfigChange,
        LinkLoss,
        Partition,
        CpuStarve,
        SynFlood,
        HostilePackets,
        AgentRestart,
        Sequence,
        Overlap,
    )
}
"""Fault kind -> class (``dsrconform chaos list --faults``)."""


class _Box(BaseModel):
    fault: AnyFault


def fault_from(data: dict[str, Any]) -> Fault:
    """A fault object from its parameters; pydantic's ValidationError for bad ones."""
    fault: Fault = _Box.model_validate({"fault": data}).fault
    return fault
