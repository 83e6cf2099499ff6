"""The SUT's own counters, through the target protocol: snapshots, a background sampler, deltas.

A target's :class:`~dsrconform.target.Deployment` reports ``counters()``: component (lab node:
``mux1``, ``server2``) -> counter name -> value, values never decreasing, names stable. This
module turns that into :class:`~dsrconform.observe.taps.CounterSnapshot` records (the kind
:func:`~dsrconform.observe.taps.load_counters_jsonl` reads back and
``Observations.counters`` holds)::

    snap = snapshot(lab.deployment)                     # one record, now
    with CounterSampler(lab.deployment, lab.dir / "counters.jsonl", interval=1.0) as s:
        ...                                             # traffic; a line per second
    s.snapshots[-1].components["mux1"]["tx"]

    delta = counter_deltas(before, after)               # per component, per name
    counter_decreases(before, after)                    # contract violations, named

The sampler's file always brackets its run: a snapshot when it starts and one when it stops
(unless reading failed, which it reports). :class:`CounterCarry` is for target adapters: it keeps
a deployment's counters monotonic across component restarts and slot reuse.

Nothing here imports a target: the framework reaches the reference stack only through
:func:`dsrconform.target.load_target`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Protocol, TextIO

from dsrconform.errors import ConfigError, DsrConformError
from dsrconform.observe.taps import CounterSnapshot

__all__ = [
    "CounterCarry",
    "CounterSampler",
    "CounterSource",
    "counter_decreases",
    "counter_deltas",
    "snapshot",
    "validate_counters",
]

DEFAULT_MAX_SAMPLES = 100_000
"""The sampler's bound when none is given (a little over a day at one sample per second)."""
JOIN_SECONDS = 10.0
"""How long :meth:`CounterSampler.stop` waits for the sampling thread (one read in flight)."""

Counters = dict[str, dict[str, int]]


class CounterSource(Protocol):
    """Anything with the deployment's ``counters()`` (a Deployment, or a fake in tests)."""

    def counters(self) -> Mapping[str, Mapping[str, int]]: ...


def validate_counters(raw: object, *, source: str = "counters()") -> Counters:
    """``raw`` as a plain dict of dicts of non-negative ints; ConfigError naming the bad entry
    (a target bug: a float, a bool, a negative value, a non-string name)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source} returned {type(raw).__name__}, not a mapping of components")
    out: Counters = {}
    for comp, names in raw.items():
        if not isinstance(comp, str) or not comp:
            raise ConfigError(f"{source}: component name {comp!r} is not a non-empty string")
        if not isinstance(names, Mapping):
            raise ConfigError(f"{source}: component {comp!r} maps to {type(names).__name__}")
        row: dict[str, int] = {}
        for name, value in names.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{source}: {comp}: counter name {name!r} is not a string")
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"{source}: {comp}.{name} = {value!r}; fix: counters are integers >= 0"
                )
            row[name] = int(value)
        out[comp] = row
    return out


def snapshot(
    source: CounterSource, *, clock: Callable[[], float] = time.monotonic
) -> CounterSnapshot:
    """Read ``source.counters()`` once. ``t`` is the middle of the read on ``clock``
    (time.monotonic, the clock every observation uses): reading several BPF maps takes a few
    milliseconds, and the midpoint is the best single time for all of them."""
    before = clock()
    raw = source.counters()
    after = clock()
    return CounterSnapshot(t=(before + after) / 2, components=validate_counters(raw))


def counter_deltas(before: CounterSnapshot, after: CounterSnapshot) -> Counters:
    """``after - before`` per component and name, for the names ``after`` reports (a name new
    in ``after`` counts from 0). Negative values mean the target broke its contract."""
    out: Counters = {}
    for comp, names in after.components.items():
        base = before.components.get(comp, {})
        out[comp] = {n: v - base.get(n, 0) for n, v in names.items()}
    return out


def counter_decreases(before: CounterSnapshot, after: CounterSnapshot) -> list[str]:
    """Every way ``after`` breaks the contract relative to ``before``: a counter that went down,
    or a component or name reported before and missing after. Empty when it holds."""
    problems = []
    for comp, names in before.components.items():
        now = after.components.get(comp)
        if now is None:
            problems.append(f"component {comp} disappeared")
            continue
        for n, v in names.items():
            if n not in now:
                problems.append(f"{comp}.{n} disappeared")
            elif now[n] < v:
                problems.append(f"{comp}.{n} went down from {v} to {now[n]}")
    return problems


class CounterCarry:
    """Monotonic bookkeeping for a target adapter's counters.

    ``retire(component, final)`` when an instance goes away (a MUX restarted with fresh maps): its
    final values are carried into the new instance's. ``report(raw)`` returns the carried totals,
    and also absorbs resets nobody announced (a value below the last one reported: the last value
    is kept and counting resumes from it, which undercounts by whatever the old instance counted
    after the last report). Names and components once reported stay reported.
    Not thread-safe: the adapter calls it under its own lock.
    """

    def __init__(self) -> None:
        self._base: Counters = {}
        self._last: Counters = {}

    def retire(self, component: str, final: Mapping[str, int]) -> None:
        base = self._base.setdefault(component, {})
        for name, value in final.items():
            base[name] = base.get(name, 0) + value

    def report(self, raw: Mapping[str, Mapping[str, int]]) -> Counters:
        for comp, names in raw.items():
            base = self._base.setdefault(comp, {})
            last = self._last.setdefault(comp, {})
            for name, value in names.items():
                total = base.get(name, 0) + value
                prev = last.get(name, 0)
                if total < prev:  # an unannounced reset: resume from the last value reported
                    base[name] = prev - value
                    total = prev
                last[name] = total
        return {comp: dict(names) for comp, names in self._last.items()}


class CounterSampler:
    """Snapshots ``source`` every ``interval`` seconds in a background thread, writing one JSON
    line per snapshot to ``path`` (replaced), flushed as it goes.

    Bounded: at most ``max_samples`` snapshots (the final one included) and, with
    ``max_seconds``, no sampling after that long. Ticks are on a fixed schedule from the start;
    a tick missed because a read was slow is skipped, not made up in a burst. Stoppable:
    :meth:`stop` wakes the thread at once, it takes the final snapshot and ends. If a read fails,
    sampling ends there; :attr:`error` holds the exception and :meth:`stop` raises it (as a
    DsrConformError naming the sample) unless ``raise_error=False``.
    """

    def __init__(self, source: CounterSource, path: str | Path, *, interval: float = 1.0,
                 max_samples: int = DEFAULT_MAX_SAMPLES, max_seconds: float | None = None,
                 final: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        if not interval > 0:
            raise ConfigError(f"counter sampler interval must be > 0 s, got {interval}")
        if max_samples < 1:
            raise ConfigError(f"counter sampler max_samples must be >= 1, got {max_samples}")
        if max_seconds is not None and not max_seconds > 0:
            raise ConfigError(f"counter sampler max_seconds must be > 0, got {max_seconds}")
        self.source, self.path = source, Path(path)
        self.interval, self.max_samples, self.max_seconds = interval, max_samples, max_seconds
        self.final, self.clock = final, clock
        self.snapshots: list[CounterSnapshot] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._out: TextIO | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> CounterSampler:
        if self._thread is not None:
            raise ConfigError("this counter sampler was already started")
        self._out = self.path.open("w", encoding="utf-8")
        self._thread = threading.Thread(target=self._run, name="dsrc-counters", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, raise_error: bool = True, timeout: float = JOIN_SECONDS) -> int:
        """Stop sampling (after the final snapshot) and close the file; returns the number of
        snapshots written. Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # a read hung in the target: leave it, say so
                raise DsrConformError(
                    f"counter sampler: a counters() read did not return within {timeout:.0f} s"
                )
        if self._out is not None:
            self._out.close()
            self._out = None
        if self.error is not None and raise_error:
            err, self.error = self.error, None
            raise DsrConformError(
                f"counter sampler: reading counters failed after {len(self.snapshots)} "
                f"snapshots ({self.path}): {err}"
            ) from err
        return len(self.snapshots)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float) -> bool:
        """Block until sampling ends by its own bounds (``max_samples``, ``max_seconds``, a
        failed read) or ``timeout`` seconds pass; True if it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def __enter__(self) -> CounterSampler:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        # An exception already in flight wins over a sampling error (still in .error).
        self.stop(raise_error=t is None)

    # --- the thread ----------------------------------------------------------------------------

    def _take(self) -> bool:
        """One snapshot, written; False (and .error set) if reading failed."""
        try:
            snap = snapshot(self.source, clock=self.clock)
        except Exception as e:  # the target's failure is reported by stop()
            self.error = e
            return False
        assert self._out is not None
        self._out.write(snap.model_dump_json() + "\n")
        self._out.flush()
        self.snapshots.append(snap)
        return True

    def _run(self) -> None:
        start = self.clock()
        end = start + self.max_seconds if self.max_seconds is not None else None
        if not self._take():  # the first snapshot, at once
            return
        reserve = 1 if self.final and self.max_samples > 1 else 0
        tick = 0
        # Bounded: every pass takes a snapshot or leaves, and snapshots are capped.
        while len(self.snapshots) < self.max_samples - reserve:
            now = self.clock()
            tick = max(tick + 1, int((now - start) / self.interval) + 1)  # skip missed ticks
            due = start + tick * self.interval
            if end is not None and due > end:
                break
            if self._stop.wait(max(0.0, due - now)):
                break
            if not self._take():
                return
        if reserve:
            # The final snapshot: at stop(), or at the time bound, whichever comes first.
            self._stop.wait(None if end is None else max(0.0, end - self.clock()))
            self._take()
