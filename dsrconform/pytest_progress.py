"""Progress lines of the pytest plugin's long fixture steps (a lab coming up, a scenario).

Written through pytest's terminal reporter with capturing suspended for the write (as pytest's
live logging does); nothing in an xdist worker (its terminal is not shown)."""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from types import TracebackType
from typing import Any

import pytest

from dsrconform.report.model import one_line


def is_worker(config: pytest.Config) -> bool:
    """True inside a pytest-xdist worker (the controller and plain runs have no workerinput)."""
    return hasattr(config, "workerinput")


PROGRESS_EVERY = 5.0
"""Seconds between the progress lines of a step still running, on a terminal."""


def _heartbeat(tr: Any) -> float | None:
    """How often to say a step is still running: every PROGRESS_EVERY s on a terminal, never
    otherwise (a log gets a line per phase only)."""
    return PROGRESS_EVERY if tr is not None and bool(tr.isatty) else None


class Progress:
    """Progress lines while a long step of a fixture runs (a lab coming up, a scenario), so a
    run is not a minute of silence: ``dsrconform: <subject> <elapsed> s  <phase>``, one when it
    starts, one per phase (:meth:`say`, the ``progress`` callback of
    :func:`dsrconform.chaos.traffic.observe_steady_state`), one when it ends (:attr:`last`, or
    how it failed) and, on a terminal, one after every :data:`PROGRESS_EVERY` s without one.

    The step runs inside a test's setup or call, whose output pytest captures: lines go
    through the terminal reporter with capturing suspended for the write (as pytest's live
    logging does), under a lock, from this thread or the ticker's, which stops before the
    step returns. Nothing is written in an xdist worker (its terminal is not shown)."""

    def __init__(self, config: pytest.Config, subject: str, about: str = "") -> None:
        self.subject = subject
        self.about = about
        self.phase = "starting"
        self.last = "done"
        """The end line, when the step ends without an exception."""
        worker = is_worker(config)
        self._tr = None if worker else config.pluginmanager.get_plugin("terminalreporter")
        self._capman = config.pluginmanager.get_plugin("capturemanager")
        self._every = _heartbeat(self._tr)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._t0 = self._said = time.monotonic()

    def __enter__(self) -> Progress:
        self._t0 = time.monotonic()
        self._write("starting" + (f": {self.about}" if self.about else ""))
        if self._tr is not None and self._every:
            self._ticker = threading.Thread(target=self._tick, name="dsr-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self._write(self.last if exc is None else f"failed: {type(exc).__name__}: {exc}")

    def say(self, message: str) -> None:
        """A new phase: say so now."""
        self.phase = message
        self._write(message)

    def _tick(self) -> None:
        """A line when nothing was said for ``_every`` s (a phase line resets the wait)."""
        every = self._every or PROGRESS_EVERY
        while not self._stop.wait(max(0.0, self._said + every - time.monotonic())):
            if time.monotonic() >= self._said + every:
                self._write(f"(running) {self.phase}")

    def _write(self, message: str) -> None:
        if self._tr is None:
            return
        elapsed = time.monotonic() - self._t0
        line = one_line(f"dsrconform: {self.subject} {elapsed:6.1f} s  {message}", 160)
        with self._lock:
            suspended = self._capman.global_and_fixture_disabled() if self._capman else None
            with suspended or nullcontext():
                self._tr.write_line(line)
            self._said = time.monotonic()
