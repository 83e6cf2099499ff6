"""Running a method's timeline against a lab, with rollbacks that always run.

:func:`execute` sets every fault up, starts each action from its own thread at its time (``at``
from the start, or ``after`` another action ended, plus ``delay``), holds lasting faults for
their ``duration`` and reverts them, and then, in ``finally``, reverts every fault still applied
(or changed by its setup), the last invoked first, each even when another failed. So the
rollbacks run after a failed step, an exception, and SIGTERM or Ctrl-C (which the lab turns into
KeyboardInterrupt in the main thread): SIGINT and SIGTERM are held back while they run, and the
interrupt is raised again once they are done. Waiting here is the schedule (``Event.wait`` with
a timeout, which an abort cuts short), never a stand-in for the lab's state.

Every step is written to the :class:`Journal` with monotonic and wall-clock times and its
outcome. Nothing here knows how a fault works; the unit tests drive it with synthetic faults.
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
    """SIGINT and SIGTERM held back (delivered once the block ends), in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _Run:
    def __init__(self, lab: RunningLab, actions: list[Timed], journal: Journal, say: Say) -> None:
        self.lab, self.actions, self.journal, self.say = lab, actions, journal, say
        self.names = [a.name for a in actions]
        self.ended = {n: threading.Event() for n in self.names}
        self.abort = threading.Event()
        self.lock = threading.Lock()
        self.applied: list[tuple[str, Fault]] = []
        """Faults to revert, in the order they were applied (set up or invoked)."""
        self.out = Execution()
        self.t0 = 0.0

    def fail(self, name: str, what: str, e: BaseException) -> None:
        msg = f"{name}: {what} failed: {type(e).__name__}: {e}"
        self.journal.add("method", what, action=name, outcome="error", detail=str(e))
        self.say(msg)
        with self.lock:
            self.out.errors.append(msg)
        self.abort.set()

    def revert(self, name: str, fault: Fault, phase: str) -> None:
        with self.lock:
            if (name, fault) not in self.applied:
                return
            self.applied.remove((name, fault))
        self.journal.add(phase, "revert", action=name, outcome="started", detail=fault.describe())
        try:
            fault.revert(self.lab, self.say)
        except Exception as e:
            self.fail(name, "revert", e)
            return
        finally:
            with self.lock:
                self.out.reverted.append(name)
        self.journal.add(phase, "revert", action=name, outcome="done")

    def run_action(self, i: int) -> None:
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
            if self.abort.is_set():
                return
            with self.lock:
                if (name, fault) in self.applied:
                    self.applied.remove((name, fault))
                self.applied.append((name, fault))  # before invoke: a partial invoke is reverted
            self.journal.add(
                "method",
                "invoke",
                action=name,
                outcome="started",
                detail=fault.describe(),
                at=time.monotonic() - self.t0,
            )
            fault.invoke(self.lab, self.say)
            self.journal.add("method", "invoke", action=name, outcome="done")
            if fault.lasting and act.duration is not None:
                if self.abort.wait(act.duration):
                    return
                self.revert(name, fault, "method")
        except Exception as e:
            self.fail(name, "invoke", e)
        finally:
            self.ended[name].set()


def execute(
    lab: RunningLab,
    actions: list[Timed],
    journal: Journal,
    say: Say,
    started: Callable[[], None] | None = None,
) -> Execution:
    """Run ``actions`` against ``lab`` (see the module's docstring); ``started`` is called once
    every fault is set up, when the timeline's clock starts. Returns what happened; an interrupt
    (KeyboardInterrupt) is raised again after the rollbacks."""
    run = _Run(lab, actions, journal, say)
    threads: list[threading.Thread] = []
    interrupt: BaseException | None = None
    try:
        for name, act in zip(run.names, actions, strict=True):
            fault = act.fault
            with run.lock:
                run.applied.append((name, fault))  # setup may change the lab (a scale-out)
            journal.add("setup", "setup", action=name, detail=fault.describe())
            fault.setup(lab, say)
        if started is not None:
            started()
        run.t0 = time.monotonic()
        journal.add("method", "start", detail=f"{len(actions)} actions")
        for i in range(len(actions)):
            t = threading.Thread(target=run.run_action, args=(i,), name=f"chaos-{run.names[i]}")
            t.start()
            threads.append(t)
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt as e:
        interrupt = e
        run.out.interrupted = True
        journal.add("method", "interrupted", outcome="error", detail=str(e) or "SIGINT")
        say("interrupted: reverting every fault applied")
    except Exception as e:
        run.fail("setup", "setup", e)
    finally:
        run.abort.set()
        with signals_held():
            for t in threads:
                t.join(JOIN_TIMEOUT)
                if t.is_alive():
                    run.out.errors.append(f"{t.name} still running after {JOIN_TIMEOUT:g} s")
            journal.add("rollback", "start", detail=f"{len(run.applied)} faults to revert")
            for name, fault in reversed(list(run.applied)):
                run.revert(name, fault, "rollback")
            journal.add("rollback", "done", outcome="ok" if run.out.ok else "error")
    for act in actions:
        run.out.windows += act.fault.windows()
    if interrupt is not None:
        raise interrupt
    return run.out
