"""Running a method's timeline against a lab, with rollbacks that always run.

:class:`Method` is a context manager. Entering it sets every fault up (before the traffic
starts: a scale-out's server is taken out then). :meth:`Method.run` starts each action from its
own thread at its time (``at`` seconds from the call, or ``after`` another action ended, plus
``delay``), holds lasting faults for their ``duration`` and reverts them, then reverts every
fault still applied or changed by its setup, the last invoked first, each even when another
failed. Leaving the block does the same if ``run`` did not (an exception or an interrupt before
or during it). So the rollbacks run after a failed step, an exception, and SIGTERM or Ctrl-C
(which the lab turns into KeyboardInterrupt in the main thread): the signals are recorded, not
acted on, while the rollbacks run (:func:`signals_held`), and raised once they are done.
:func:`execute` is the whole life in one call.

Waiting here is the schedule (``Event.wait`` with a timeout, which an abort cuts short), never a
stand-in for the lab's state. Faults get the abort event as ``stop`` and end early when it is
set. Every step is written to the :class:`Journal` with monotonic and wall-clock times, its
outcome, and what the faults said. Nothing here knows how a fault works; the unit tests drive it
with synthetic faults.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsrconform.chaos.fault import Fault, Say
from dsrconform.observe.observations import FaultWindow

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab

__all__ = ["Execution", "Journal", "Timed", "execute", "signals_held"]

JOIN_TIMEOUT = 180.0
"""Seconds the rollbacks wait at most for an action's thread still invoking after an abort (each
fault bounds its own invoke; this bounds a fault that does not)."""


@dataclass(frozen=True)
class Timed:
    """A fault and when to run it (:class:`dsrconform.chaos.scenario.Action` without the
    parameters' validation: any object that keeps the fault contract)."""

    name: str
    fault: Fault
    at: float = 0.0
    after: str | None = None
    delay: float = 0.0
    duration: float | None = None
    revert_after: str | None = None
    revert_delay: float = 0.0


@dataclass
class Journal:
    """Every step of a chaos run, appended as JSON lines (to ``path`` when given)."""

    path: Path | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(
        self,
        phase: str,
        event: str,
        *,
        action: str = "",
        outcome: str = "ok",
        detail: str = "",
        **more: Any,
    ) -> dict[str, Any]:
        entry = {
            "t": time.monotonic(),
            "wall": time.time(),
            "phase": phase,
            "action": action,
            "event": event,
            "outcome": outcome,
            "detail": detail,
            **more,
        }
        with self._lock:
            self.entries.append(entry)
            if self.path is not None:
                with self.path.open("a") as f:
                    f.write(json.dumps(entry, default=str) + "\n")
        return entry

    def events(self, event: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.entries if e["event"] == event]


@dataclass
class Execution:
    """What :func:`execute` did: the windows of every fault, the errors, what was reverted."""

    windows: list[FaultWindow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reverted: list[str] = field(default_factory=list)
    """Action names in the order their faults were reverted."""
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and not self.interrupted


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM recorded, not acted on, while the block runs (in the main thread; a
    signal mask would not do: another thread may take the signal, and children forked meanwhile
    would inherit the mask); once it ends the handlers are back, and a signal that came meanwhile
    is raised as KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, _frame: came.append(signum)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if came:
        raise KeyboardInterrupt(f"signal {came[0]} (held during the rollbacks)")


class Method:
    """The life of a method's faults against a lab (see the module's docstring)."""

    def __init__(self, lab: RunningLab, actions: list[Timed], journal: Journal, say: Say) -> None:
        self.lab, self.actions, self.journal = lab, actions, journal
        self.names = [a.name for a in actions]
        self.ended = {n: threading.Event() for n in self.names}
        self.abort = threading.Event()
        self.lock = threading.Lock()
        self.applied: list[tuple[str, Fault]] = []
        """Faults to revert, in the order they were applied (set up or invoked)."""
        self.out = Execution()
        self.t0 = 0.0
        self.threads: list[threading.Thread] = []
        self._active: list[str] = []  # invoked and not yet reverted, for live progress
        self._finished = False
        self._outer_say = say

    def say(self, msg: str) -> None:
        self.journal.add("method", "said", detail=msg)
        self._outer_say(msg)

    def active(self) -> list[str]:
        """The faults in effect now (invoked, not reverted), for live progress."""
        with self.lock:
            return list(self._active)

    @property
    def ready(self) -> bool:
        """Every fault was set up (False: the method will not run; the rollbacks undid the
        setups)."""
        return not self.abort.is_set()

    # --- setup ----------------------------------------------------------------------------------

    def __enter__(self) -> Method:
        try:
            for name, act in zip(self.names, self.actions, strict=True):
                with self.lock:
                    self.applied.append((name, act.fault))  # setup may change the lab
                self.journal.add("setup", "setup", action=name, detail=act.fault.describe())
                act.fault.setup(self.lab, self.say)
        except Exception as e:
            self._fail("setup", "setup", e)
            self._finish()
        except BaseException:
            self._interrupted("setup")
            self._finish()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is KeyboardInterrupt and not self._finished:
            self._interrupted("method")
        self._finish()

    # --- the timeline ---------------------------------------------------------------------------

    def run(self) -> list[FaultWindow]:
        """Run the timeline, then the rollbacks; return every fault's windows. An interrupt is
        raised again once the rollbacks ran."""
        if not self.ready:
            return self.windows()
        try:
            self.t0 = time.monotonic()
            self.journal.add("method", "start", detail=f"{len(self.actions)} actions")
            for i in range(len(self.actions)):
                t = threading.Thread(
                    target=self._run_action, args=(i,), name=f"chaos-{self.names[i]}"
                )
                t.start()
                self.threads.append(t)
            for t in self.threads:
                while t.is_alive():
                    t.join(0.5)
        except BaseException:
            self._interrupted("method")
            raise
        finally:
            self._finish()
        return self.windows()

    def windows(self) -> list[FaultWindow]:
        return [w for act in self.actions for w in act.fault.windows()]

    def _interrupted(self, phase: str) -> None:
        self.out.interrupted = True
        self.journal.add(phase, "interrupted", outcome="error")
        self._outer_say("interrupted: reverting every fault applied")

    def _fail(self, name: str, what: str, e: BaseException) -> None:
        msg = f"{name}: {what} failed: {type(e).__name__}: {e}"
        self.journal.add("method", what, action=name, outcome="error", detail=str(e))
        self._outer_say(msg)
        with self.lock:
            self.out.errors.append(msg)
        self.abort.set()

    def _revert(self, name: str, fault: Fault, phase: str) -> None:
        with self.lock:
            if (name, fault) not in self.applied:
                return
            self.applied.remove((name, fault))
        self.journal.add(phase, "revert", action=name, outcome="started", detail=fault.describe())
        try:
            fault.revert(self.lab, self.say)
        except Exception as e:
            self._fail(name, "revert", e)
            return
        with self.lock:
            self.out.reverted.append(name)
            if fault.describe() in self._active:
                self._active.remove(fault.describe())
        self.journal.add(phase, "revert", action=name, outcome="done")

    def _run_action(self, i: int) -> None:
        act, name = self.actions[i], self.names[i]
        fault = act.fault
        try:
            if act.after is not None:
                while not self.ended[act.after].wait(0.2):
                    if self.abort.is_set():
                        return
                if self.abort.wait(act.delay):
                    return
            elif self.abort.wait(max(0.0, self.t0 + act.at - time.monotonic())):
                return
            with self.lock:
                if self.abort.is_set():
                    return
                if (name, fault) in self.applied:
                    self.applied.remove((name, fault))
                self.applied.append((name, fault))  # before invoke: a partial invoke is reverted
                self._active.append(fault.describe())
            at = time.monotonic() - self.t0
            self.journal.add(
                "method", "invoke", action=name, outcome="started", detail=fault.describe(), at=at
            )
            fault.invoke(self.lab, self.say, self.abort)
            self.journal.add("method", "invoke", action=name, outcome="done")
            if fault.lasting and act.duration is not None:
                if self.abort.wait(act.duration):
                    return
                self._revert(name, fault, "method")
            elif fault.lasting and act.revert_after is not None:
                while not self.ended[act.revert_after].wait(0.2):
                    if self.abort.is_set():
                        return
                if self.abort.wait(act.revert_delay):
                    return
                self._revert(name, fault, "method")
        except Exception as e:
            self._fail(name, "invoke", e)
        finally:
            self.ended[name].set()

    # --- the rollbacks ----------------------------------------------------------------------------

    def _finish(self) -> None:
        """Abort what has not started, wait (one deadline) for the actions still invoking, and
        revert every fault still applied, the last first; once."""
        if self._finished:
            return
        self._finished = True
        self.abort.set()
        with signals_held():
            deadline = time.monotonic() + JOIN_TIMEOUT
            for t in self.threads:
                t.join(max(0.0, deadline - time.monotonic()))
                if t.is_alive():
                    self.out.errors.append(f"{t.name} still running after {JOIN_TIMEOUT:g} s")
            self.journal.add("rollback", "start", detail=f"{len(self.applied)} faults to revert")
            for name, fault in reversed(list(self.applied)):
                try:
                    self._revert(name, fault, "rollback")
                except BaseException as e:  # a journal write failing must not skip the next
                    self.out.errors.append(f"{name}: rollback: {type(e).__name__}: {e}")
            self.journal.add("rollback", "done", outcome="ok" if self.out.ok else "error")


def execute(
    lab: RunningLab,
    actions: list[Timed],
    journal: Journal,
    say: Say,
    started: Callable[[], None] | None = None,
) -> Execution:
    """Set up, run and roll back ``actions`` against ``lab`` in one call (:class:`Method`);
    ``started`` is called once every fault is set up, just before the timeline's clock starts.
    Returns what happened, windows included; an interrupt is raised again after the
    rollbacks."""
    with Method(lab, actions, journal, say) as method:
        if method.ready and started is not None:
            started()
        method.out.windows = method.run()
    method.out.windows = method.windows()
    return method.out
