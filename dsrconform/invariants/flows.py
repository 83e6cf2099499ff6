"""Flow-level judgements shared by the fault checkers: survival across a window, attempts.

"Survive" means: a connection established before a fault and still open when it began is not
reset, does not time out while reading, has no integrity error and does not close short of its
expected bytes, from the fault's start until ``until``; a UDP flow keeps being answered by the
same server. "Attempt" means a flow whose start (the connect call, the first datagram) falls in
a window; it succeeded if it was established and never failed.

Only established flows are judged for survival (:meth:`FlowHistory.alive_at`: the TCP handshake
completed, or a UDP reply came, before the fault): that is the survival checkers' minimum
evidence, so a stack that answers nothing gives them nothing to judge (UNKNOWN).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from dsrconform.invariants.verdict import Judge
from dsrconform.observe.history import Closed, FlowEvent, FlowHistory, History, Stall
from dsrconform.observe.observations import LabFacts


def describe_event(fh: FlowHistory, e: FlowEvent) -> str:
    if isinstance(e, Closed):
        expected = fh.start.expected_bytes
        want = f" of {expected}" if expected is not None else ""
        return f"closed short ({e.verified}{want} bytes verified, {e.received} received)"
    if isinstance(e, Stall):
        return f"stalled {e.seconds:.3f} s at byte {e.offset}"
    return e.kind.replace("_", " ")


def unterminated(fh: FlowHistory) -> bool:
    """A TCP flow without an end: every TCP flow of a finished history ends (closed, even if
    cut at its generator's deadline, or broken), so one without was lost by its recorder, and
    judging it "alive" would pass it whatever happened to it."""
    return fh.start.proto == "tcp" and fh.ended_at is None


def judge_survival(
    j: Judge,
    history: History,
    flows: Iterable[FlowHistory],
    start: float,
    until: float,
    *,
    what: str,
    max_stall: float | None = None,
) -> int:
    """Record a violation for every flow alive at ``start`` that breaks (or, with ``max_stall``,
    stalls longer) between ``start`` and ``until``; return how many flows were judged."""
    end = history.end_time
    if end is not None and end < start:
        j.incomplete(f"the history ends at t={end:.3f}, before {what} began")
    judged = lost = 0
    for fh in flows:
        if not fh.alive_at(start):
            continue
        judged += 1
        if unterminated(fh):
            lost += 1
            continue
        e = fh.first_break(start, until)
        if e is not None:
            j.violation(
                f"{describe_event(fh, e)} {e.t - start:.3f} s after {what} began "
                f"(server {fh.server or 'unknown'})",
                flow=fh.describe(),
                time=e.t,
            )
            continue
        moved = _udp_server_change(fh, start, until)
        if moved is not None:
            t, old, new = moved
            j.violation(
                f"answered by {new} instead of {old} {t - start:.3f} s after {what} began",
                flow=fh.describe(),
                time=t,
            )
            continue
        if max_stall is not None:
            for ev in fh.events:
                if isinstance(ev, Stall) and start <= ev.t <= until and ev.seconds > max_stall:
                    j.violation(
                        f"stalled {ev.seconds:.3f} s (more than {max_stall:g} s) during {what}",
                        flow=fh.describe(),
                        time=ev.t,
                        until=ev.t + ev.seconds,
                    )
                    break
    if lost:
        j.incomplete(
            f"{lost} connections open at {what} have no end in the history (their "
            "generator stopped recording them): their survival is unknown"
        )
    return judged


def _udp_server_change(
    fh: FlowHistory, start: float, until: float
) -> tuple[float, str, str] | None:
    if fh.start.proto != "udp":
        return None
    before = [s for t, s in fh.servers if t < start]
    if not before:
        return None
    old = before[-1]
    for t, s in fh.servers:
        if start <= t <= until and s != old:
            return t, old, s
    return None


def attempts(
    history: History, since: float, until: float, *, lab: LabFacts | None = None
) -> list[FlowHistory]:
    """TCP flows started in ``[since, until)`` (to a VIP service, when ``lab`` is given)."""
    out = []
    for fh in history.flows.values():
        s = fh.start
        if s.proto != "tcp" or not since <= s.t < until:
            continue
        if lab is not None and lab.service(s.dst, s.dport, 6) is None:
            continue
        out.append(fh)
    return out


def connect_latency(fh: FlowHistory) -> float | None:
    est = fh.established_at
    return est - fh.start.t if est is not None else None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def describe_failure(fh: FlowHistory) -> str:
    e = fh.failure()
    if e is None:
        return "never established"
    return describe_event(fh, e)
