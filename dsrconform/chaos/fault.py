"""The fault contract: what every fault of a chaos scenario promises, in the manner of Jepsen's
nemesis (setup, invoke, teardown).

A fault is a small object built from plain parameters (a scenario file's ``fault:`` mapping or a
Python call). Its life, driven by :mod:`dsrconform.chaos.runner`:

``plan(topo) -> [Step]``
    Pure: no lab, no clock, no I/O. Resolves defaults against the topology (which MUX, which
    server) and returns the printable steps ``invoke`` and ``revert`` will take, in order. Raises
    :class:`~dsrconform.errors.ConfigError` (naming the parameter and the fix) for parameters the
    topology cannot satisfy. ``--dry-run`` prints these steps; unit tests check them.
``setup(lab, say)``
    Runs before the traffic starts. Checks preconditions on the live lab and records what
    ``revert`` must restore (the backend sets before a change, the routes before a MUX fails).
    Changes nothing, unless the fault's plan has ``setup`` steps: a scale-out takes its server
    out first, a MUX that joins is taken out first; ``revert`` then restores that too. Raises
    LabError when the lab is not in a state the fault can start from.
``invoke(lab, say, stop)``
    Applies the fault and returns once it is in effect (a killed MUX's routes are withdrawn),
    bounded in time, or early once ``stop`` (a threading.Event: the run is aborting) is set. It
    notes each change as it makes it, so that ``revert`` undoes exactly what was done even when
    ``invoke`` raised half-way.
``revert(lab, say)``
    Undoes whatever ``invoke`` did, and only that; returns once the lab is back (the MUX's routes
    returned). Idempotent, bounded in time, and safe after an ``invoke`` that failed or never ran:
    the runner calls it for every fault it set up or invoked, whatever happened (a failed step,
    an exception, SIGTERM, Ctrl-C), in the reverse order of invocation.
``windows()``
    The :class:`~dsrconform.observe.observations.FaultWindow` s of what happened (read after
    ``revert``), for the checkers and the timeline.

A fault is *lasting* when its effect stays until ``revert`` (a killed MUX, a partition, a drained
server): a scenario may give it a ``duration``, or leave its revert to the rollback phase. A
fault that is not lasting has ended when ``invoke`` returns (a SYN flood of a given length, a
MUX restart); its ``revert`` only restores what it may have left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from threading import Event
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from dsrconform.observe.observations import FaultWindow

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab
    from dsrconform.topology import Topology

__all__ = ["Fault", "Phase", "Say", "Step"]

Say = Callable[[str], None]
"""Where a fault reports what it does, one line at a time (the journal and the progress)."""

Phase = Literal["setup", "invoke", "revert"]


@dataclass(frozen=True)
class Step:
    """One planned step of a fault: printable, comparable, free of any lab object."""

    phase: Phase
    action: str
    """What is done, e.g. ``kill``, ``wait-routes``, ``set-backends``."""
    subject: str
    """What it is done to: a node, a link ``a-b``, a service."""
    detail: str = ""
    waits: bool = False
    """True when the step waits for the lab's state (a route change), so its duration is not
    known in advance: the plan's later times are lower bounds."""

    def __str__(self) -> str:
        text = f"{self.phase:<6} {self.action} {self.subject}"
        return text + (f": {self.detail}" if self.detail else "")


@runtime_checkable
class Fault(Protocol):
    """A fault of a chaos scenario; the module's docstring is its contract."""

    @property
    def kind(self) -> str:
        """The fault's name in scenario files (``mux-kill``)."""
        ...

    @property
    def lasting(self) -> bool:
        """Whether its effect stays until ``revert`` (see the module's docstring)."""
        ...

    def describe(self) -> str:
        """One line: the fault and its parameters."""
        ...

    def expected_seconds(self) -> float:
        """About how long ``invoke`` takes, for the plan's timeline (a lower bound)."""
        ...

    def plan(self, topo: Topology) -> list[Step]: ...

    def setup(self, lab: RunningLab, say: Say) -> None: ...

    def invoke(self, lab: RunningLab, say: Say, stop: Event) -> None: ...

    def revert(self, lab: RunningLab, say: Say) -> None: ...

    def windows(self) -> list[FaultWindow]: ...


def window(kind: str, start: float, end: float | None = None, **more: object) -> FaultWindow:
    """A FaultWindow, validated (``kind`` must be a known fault kind)."""
    return FaultWindow.model_validate({"kind": kind, "start": start, "end": end, **more})
