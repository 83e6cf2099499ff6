"""The run's timeline: connections alive, new-connection success, link packet rates, faults.

A fault or flood scenario's verdicts say *whether* connections survived; the timeline shows
*what happened when*: how many connections were open, how many new ones succeeded, how busy each
link was, with the fault windows shaded over it. The HTML report embeds it; a run may save it as
``timeline.json`` beside its files and load it back (:class:`Timeline` is a pydantic model).

The contract:

- :func:`timeline_of` is a pure function of the run's
  :class:`~dsrconform.observe.observations.Observations` (no system access, no clock, no
  randomness). It is linear in the number of history events and tap records (a flood run holds
  about a million records): one pass gathers their times into arrays, and every series is a
  histogram of them (numpy ``bincount``, difference arrays), never a loop over bins per record.
- Times are seconds since the run's start: the earliest time in the history (its headers and
  flow starts) or the taps (their start times and records), CLOCK_MONOTONIC seconds
  :attr:`Timeline.origin`. The run ends at the latest such time (last event, last packet, a
  tap's stop). ``t`` holds the bin starts, ``bin_seconds`` apart.
- A series is either aligned with ``t`` or empty: empty means its source was not recorded (no
  history, no taps), which is not the same as zeros. Missing parts never raise.
- :func:`save_timeline` writes ``timeline.json`` atomically (a temporary file in the same
  directory, then renamed over it): a reader sees the old file or the new one, never half of one.
- Drawing lives in :mod:`dsrconform.report.timeline_svg`; :func:`timeline_svg` (an inline SVG,
  ``<svg`` first, no XML prolog, deterministic) is re-exported here.

How each series is computed, and what it approximates:

- ``alive``: TCP connections open at any moment of the bin: the handshake completed (the flow's
  first ``connected`` event) before the bin's end and the flow not ended (its first closed,
  reset, timeout or refused event) before the bin's start. A connection still open when
  the history ends counts to the last bin. Counting "at any moment" rather than at one instant
  keeps connections shorter than a bin visible.
- ``new_ok`` / ``new_failed``: TCP connection attempts, in the bin of their ``flow`` record
  (when the connect began). OK: the flow got ``connected``. Failed: it ended (refused, a connect
  timeout, a reset) before connecting. An attempt with neither (the history ended while it was
  still connecting) is in neither series. ``success_rate`` is ok / (ok + failed), None for a
  bin without attempts.
- ``udp_answered`` / ``udp_unanswered`` / ``udp_answer_rate``: UDP datagrams in the bin they were
  sent, answered when a reply with the same sequence number arrived (whenever it did). A datagram
  sent just before the history ended counts as unanswered. UDP is kept apart from the TCP series:
  a datagram is not a connection attempt.
- ``link_pps``: packets per second on each tap (a link, one direction, at one end: the two ends
  of a link are two series), for the ``max_links`` taps that accounted the most packets, busiest
  first; the rest are summed into ``"other"``. A tap
  record says only how many packets its flow had between its first and last packet (per period
  of the tap when it has ``spans``), so those packets are **spread uniformly** over that
  interval: an approximation (a burst inside a long flow is smeared over its lifetime); the
  totals are exact. Packets a tap saw but could not account (``lost_records``) are not in it. A
  tap that accounted no packet has no series.
- ``faults``: (start, end, label) per fault window, relative, sorted by start; the label is the
  kind and the target (``mux-fail mux1``). ``end`` is None for a window without one (a fault
  never lifted, or an instant such as ``route-withdrawn``): the SVG draws it as an instant, a
  dashed line at its start.

Bins: ``bin_seconds`` wide, widened (to a multiple of it) when the run would need more than
:data:`MAX_BINS` bins (a tap stop time far off should not make a huge timeline).
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dsrconform.observe.history import (
    Closed,
    Connected,
    DatagramReply,
    DatagramSent,
    History,
    Refused,
    Reset,
    Timeout,
)
from dsrconform.observe.observations import FaultWindow, Observations
from dsrconform.observe.taps import TapSet
from dsrconform.report.model import TIMELINE_FILE
from dsrconform.report.timeline_svg import timeline_svg

__all__ = [
    "MAX_BINS",
    "OTHER",
    "TIMELINE_FILE",
    "Timeline",
    "save_timeline",
    "timeline_of",
    "timeline_svg",
]


MAX_BINS = 10_000
"""Most bins a timeline holds; a longer run gets wider bins."""
OTHER = "other"
"""The ``link_pps`` key of the taps beyond ``max_links``, summed."""

_ENDS = frozenset({Closed, Reset, Timeout, Refused})
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Timeline(BaseModel):
    """The series of one run, aligned with ``t`` (each either ``len(t)`` long or empty)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    origin: float = 0.0
    """CLOCK_MONOTONIC seconds of t=0 (the run's earliest recorded time)."""
    bin_seconds: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    t: list[float] = Field(default_factory=list)
    """Bin starts, seconds since ``origin``."""
    alive: list[int] = Field(default_factory=list)
    new_ok: list[int] = Field(default_factory=list)
    new_failed: list[int] = Field(default_factory=list)
    success_rate: list[float | None] = Field(default_factory=list)
    udp_answered: list[int] = Field(default_factory=list)
    udp_unanswered: list[int] = Field(default_factory=list)
    udp_answer_rate: list[float | None] = Field(default_factory=list)
    link_pps: dict[str, list[float]] = Field(default_factory=dict)
    """Tap -> packets per second, busiest first, then ``"other"``."""
    faults: list[tuple[float, float | None, str]] = Field(default_factory=list)
    """(start, end or None, label), seconds since ``origin``."""

    @model_validator(mode="after")
    def _aligned(self) -> Timeline:
        n = len(self.t)
        series: dict[str, Sequence[object]] = {
            "alive": self.alive,
            "new_ok": self.new_ok,
            "new_failed": self.new_failed,
            "success_rate": self.success_rate,
            "udp_answered": self.udp_answered,
            "udp_unanswered": self.udp_unanswered,
            "udp_answer_rate": self.udp_answer_rate,
            **{f"link_pps[{k!r}]": v for k, v in self.link_pps.items()},
        }
        for name, values in series.items():
            if len(values) not in (0, n):
                raise ValueError(f"{name} has {len(values)} values, t has {n} (or give none)")
        return self

    @property
    def empty(self) -> bool:
        """Nothing to draw: no bins."""
        return not self.t

    @property
    def end(self) -> float:
        """Where the last bin ends, seconds since ``origin``."""
        return len(self.t) * self.bin_seconds


# --- computing -------------------------------------------------------------------------------


class _HistoryTimes:
    """The times :func:`timeline_of` bins, gathered in one pass over the history."""

    def __init__(self, history: History | None) -> None:
        self.lo = math.inf
        self.hi = -math.inf
        self.est: list[float] = []
        self.ended: list[float] = []  # inf: still open at the end
        self.ok: list[float] = []
        self.failed: list[float] = []
        self.udp_ok: list[float] = []
        self.udp_lost: list[float] = []
        if history is None:
            return
        for hd in history.headers:
            self.lo = min(self.lo, hd.t)
        lo, hi = self.lo, self.hi
        for fh in history.flows.values():
            start = fh.start
            t0 = start.t
            events = fh.events
            last = events[-1].t if events else t0
            lo = t0 if t0 < lo else lo
            hi = last if last > hi else hi
            if start.proto == "tcp":
                est: float | None = None
                end: float | None = None
                for e in events:
                    kind = type(e)
                    if kind is Connected:
                        if est is None:
                            est = e.t
                    elif kind in _ENDS:
                        end = e.t
                        break
                if est is not None:
                    self.ok.append(t0)
                    self.est.append(est)
                    self.ended.append(end if end is not None else math.inf)
                elif end is not None:
                    self.failed.append(t0)
            else:
                sent: dict[int, float] = {}
                answered: set[int] = set()
                for e in events:
                    kind = type(e)
                    if kind is DatagramSent:
                        sent.setdefault(e.seq, e.t)  # type: ignore[union-attr]
                    elif kind is DatagramReply:
                        answered.add(e.seq)  # type: ignore[union-attr]
                for seq, ts in sent.items():
                    (self.udp_ok if seq in answered else self.udp_lost).append(ts)
        self.lo, self.hi = lo, hi


class _TapTimes:
    """Per tap, arrays of the (first, last, packets) of every record, or of its spans."""

    def __init__(self, taps: TapSet | None) -> None:
        self.lo = math.inf
        self.hi = -math.inf
        self.parts: dict[str, tuple[FloatArray, FloatArray, FloatArray]] = {}
        self.totals: dict[str, int] = {}
        if taps is None:
            return
        for info in taps.taps.values():
            self.lo = min(self.lo, info.started)
            self.hi = max(self.hi, info.started if info.stopped is None else info.stopped)
        for name, records in taps.flows.items():
            if not records:
                continue
            firsts_: list[float] = []
            lasts_: list[float] = []
            counts_: list[int] = []
            add_first, add_last, add_count = firsts_.append, lasts_.append, counts_.append
            # One pass, each record touched once (a flood run holds a million). The fields are
            # read from the model's __dict__: a quarter faster than attribute access.
            for r in records:
                d = r.__dict__
                spans = d["spans"]
                if spans:
                    for p in spans:
                        add_first(p.first)
                        add_last(p.last)
                        add_count(p.packets)
                else:
                    add_first(d["first"])
                    add_last(d["last"])
                    add_count(d["packets"])
            firsts = np.array(firsts_, dtype=np.float64)
            lasts = np.array(lasts_, dtype=np.float64)
            counts = np.array(counts_, dtype=np.float64)
            self.lo = min(self.lo, float(firsts.min()))
            self.hi = max(self.hi, float(lasts.max()))
            self.parts[name] = (firsts, lasts, counts)
            self.totals[name] = int(counts.sum())


def _bins(values: list[float], origin: float, width: float, n: int) -> IntArray:
    """The bin index of each time (clipped into the timeline)."""
    rel = (np.asarray(values, dtype=np.float64) - origin) / width
    return np.clip(np.floor(rel), 0, n - 1).astype(np.int64)


def _histogram(values: list[float], origin: float, width: float, n: int) -> list[int]:
    counts = np.bincount(_bins(values, origin, width, n), minlength=n)
    return [int(c) for c in counts]


def _rate(ok: list[int], failed: list[int]) -> list[float | None]:
    return [a / (a + b) if a + b else None for a, b in zip(ok, failed, strict=True)]


def _alive(h: _HistoryTimes, origin: float, width: float, n: int) -> list[int]:
    """Open connections per bin: +1 at the establishing bin, -1 after the ending bin."""
    first = _bins(h.est, origin, width, n)
    ended = np.asarray(h.ended, dtype=np.float64)
    last = np.where(np.isinf(ended), n - 1, _bins(h.ended, origin, width, n))
    last = np.maximum(last, first)
    delta = np.bincount(first, minlength=n + 1) - np.bincount(last + 1, minlength=n + 1)
    return [int(c) for c in np.cumsum(delta)[:n]]


def _spread(
    firsts: FloatArray,
    lasts: FloatArray,
    packets: FloatArray,
    group: IntArray,
    groups: int,
    n: int,
) -> FloatArray:
    """Packets per (group, bin), each part's packets spread uniformly over [first, last].

    Times are in bin units. A part within one bin puts all its packets there; otherwise its
    first and last bins get their covered fraction and the bins between a constant share, added
    as a difference array (+rate at the first full bin, -rate after the last): O(1) per part.
    """
    i0 = np.clip(np.floor(firsts), 0, n - 1).astype(np.int64)
    i1 = np.clip(np.floor(lasts), 0, n - 1).astype(np.int64)
    same = i0 == i1
    span = np.where(same, 1.0, lasts - firsts)
    rate = np.where(same, 0.0, packets / span)
    head = np.where(same, packets, rate * (i0 + 1 - firsts))
    tail = np.where(same, 0.0, rate * (lasts - i1))
    row = group * (n + 1)
    size = groups * (n + 1)
    direct = np.bincount(row + i0, weights=head, minlength=size)
    direct += np.bincount(row + i1, weights=tail, minlength=size)
    middle = np.bincount(row + i0 + 1, weights=rate, minlength=size)
    middle -= np.bincount(row + i1, weights=rate, minlength=size)
    per_bin = direct.reshape(groups, n + 1) + np.cumsum(middle.reshape(groups, n + 1), axis=1)
    return np.asarray(per_bin[:, :n], dtype=np.float64)


def _link_pps(
    taps: _TapTimes, origin: float, width: float, n: int, max_links: int
) -> dict[str, list[float]]:
    busiest = sorted(taps.totals, key=lambda name: (-taps.totals[name], name))
    kept = busiest[:max_links]
    rest = busiest[max_links:]
    labels = [*kept, *([OTHER if OTHER not in kept else f"{OTHER} taps"] if rest else [])]
    if not labels:
        return {}
    order = {name: i for i, name in enumerate(kept)}
    chosen = [taps.parts[name] for name in busiest]
    per_bin = _spread(
        (np.concatenate([f for f, _, _ in chosen]) - origin) / width,
        (np.concatenate([last for _, last, _ in chosen]) - origin) / width,
        np.concatenate([c for _, _, c in chosen]),
        np.concatenate(
            [
                np.full(len(c), order.get(name, len(kept)))
                for name, (_, _, c) in zip(busiest, chosen, strict=True)
            ]
        ),
        len(labels),
        n,
    )
    return {label: [float(v) / width for v in per_bin[i]] for i, label in enumerate(labels)}


def _label(w: FaultWindow) -> str:
    return f"{w.kind} {w.target}" if w.target else w.kind


def timeline_of(obs: Observations, *, bin_seconds: float = 0.5, max_links: int = 8) -> Timeline:
    """The run's timeline in ``bin_seconds`` bins (see the module's contract).

    ``max_links``: taps drawn one by one (the busiest); the others are summed into ``"other"``.
    ValueError for a bin width that is not a positive finite number or a negative ``max_links``.
    """
    if not (math.isfinite(bin_seconds) and bin_seconds > 0):
        raise ValueError(f"bin_seconds must be a positive number of seconds, not {bin_seconds}")
    if max_links < 0:
        raise ValueError(f"max_links must be 0 or more, not {max_links}")
    h = _HistoryTimes(obs.history)
    taps = _TapTimes(obs.taps)
    lo = min(h.lo, taps.lo)
    hi = max(h.hi, taps.hi, lo)
    has_history = obs.history is not None and bool(obs.history.flows)
    has_taps = bool(taps.parts)
    if not (has_history or has_taps):
        origin = min((w.start for w in obs.faults), default=0.0)
        return Timeline(origin=origin, bin_seconds=bin_seconds, faults=_faults(obs, origin))
    origin = lo
    duration = hi - lo
    width = bin_seconds * max(1, math.ceil(duration / (bin_seconds * MAX_BINS)))
    n = math.floor(duration / width) + 1
    series: dict[str, Any] = {}
    if has_history:
        ok = _histogram(h.ok, origin, width, n)
        failed = _histogram(h.failed, origin, width, n)
        udp_ok = _histogram(h.udp_ok, origin, width, n)
        udp_lost = _histogram(h.udp_lost, origin, width, n)
        series.update(
            alive=_alive(h, origin, width, n),
            new_ok=ok,
            new_failed=failed,
            success_rate=_rate(ok, failed),
            udp_answered=udp_ok,
            udp_unanswered=udp_lost,
            udp_answer_rate=_rate(udp_ok, udp_lost),
        )
    if has_taps:
        series["link_pps"] = _link_pps(taps, origin, width, n, max_links)
    return Timeline(
        origin=origin,
        bin_seconds=width,
        t=[round(i * width, 9) for i in range(n)],
        faults=_faults(obs, origin),
        **series,
    )


def _faults(obs: Observations, origin: float) -> list[tuple[float, float | None, str]]:
    return [
        (w.start - origin, None if w.end is None else w.end - origin, _label(w))
        for w in sorted(obs.faults, key=lambda w: (w.start, w.kind, w.target or ""))
    ]


def save_timeline(obs: Observations, directory: str | Path) -> Path:
    """Write ``obs``'s timeline to ``directory/timeline.json``, atomically: into a temporary
    file in ``directory`` (a name of its own, so concurrent writers never share it), then
    renamed over ``timeline.json``. On an error the temporary file is removed."""
    path = Path(directory) / TIMELINE_FILE
    text = timeline_of(obs).model_dump_json() + "\n"
    tmp = path.with_name(f".{TIMELINE_FILE}.{secrets.token_hex(8)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:  # O_EXCL, the umask's mode
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
