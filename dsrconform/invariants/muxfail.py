"""MUX failure (MF): re-hashed connections survive, others are untouched, new ones recover.

The checkers read ``mux-fail`` windows (``target``: the MUX; ``end``: when it was restored, None
if it stayed down), ``route-withdrawn`` instants (when the border router dropped the failed
MUX's route) and ``mux-rejoin`` windows. Which MUX carried a connection before the failure comes
from taps on the MUXes' receiving side: the client endpoint's packets seen there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from dsrconform.invariants.flows import attempts, describe_failure, judge_survival
from dsrconform.invariants.verdict import Judge, MissingData, Params, Verdict, checker
from dsrconform.observe.history import FlowHistory, History
from dsrconform.observe.observations import (
    BACKEND_CHANGES,
    Endpoint,
    FaultWindow,
    Observations,
    Sighting,
    overlaps_any,
    sightings,
    toward_role,
)


def carried_by(j: Judge, obs: Observations) -> dict[Endpoint, Sighting]:
    """Which MUX received each client endpoint's packets (taps toward every MUX needed)."""
    lab = obs.need_lab()
    taps = obs.need_taps(
        j,
        "toward a MUX",
        toward_role(lab, "mux"),
        expect=lab.nodes("mux"),
        covers=lambda t: t.receiver,
    )
    return sightings(taps, lab, lambda t: t.receiver)


def muxes_before(fh: FlowHistory, seen: dict[Endpoint, Sighting], t: float) -> set[str]:
    """The MUXes that carried ``fh`` between its start and ``t``."""
    s = seen.get(fh.endpoint)
    return set(s.nodes_during(fh.start.t, t, slack=0)) if s is not None else set()


def _failures(j: Judge, obs: Observations) -> Iterator[FaultWindow]:
    """mux-fail windows with a target that overlap no backend change (MF-1/MF-2)."""
    changes = obs.backend_changes()
    for w in obs.need_windows("mux-fail"):
        if w.target is None:
            j.incomplete(f"{w.describe()} does not name the failed MUX")
        elif overlaps_any(changes, w.start, w.stop) is None:
            yield w
        else:
            j.measured["failures_with_backend_change"] = (
                int(j.measured.get("failures_with_backend_change") or 0) + 1
            )


def _judge_by_mux(obs: Observations, p: Params, *, failed_mux: bool, j: Judge) -> int:
    history = obs.need_history()
    seen = carried_by(j, obs)
    judged = windows = 0
    for w in _failures(j, obs):
        windows += 1
        target = w.target
        flows = []
        for fh in history.flows.values():
            via = muxes_before(fh, seen, w.start)
            if via and (target in via) == failed_mux:
                flows.append(fh)
        judged += judge_survival(
            j,
            history,
            flows,
            w.start,
            w.stop + p["grace"],
            what=f"the failure of {target}",
            max_stall=None if failed_mux else p["max_stall"],
        )
    if windows == 0:
        raise MissingData(*(j.missing or ["a mux-fail window that overlaps no backend change"]))
    j.thresholds.update({k: p[k] for k in ("grace", "max_stall") if k in p})
    j.measured["connections_judged"] = judged
    return judged


@checker("MF-1")
def check_rehashed_connections_survive(obs: Observations, p: Params) -> Verdict:
    """Connections the failed MUX carried survive being re-hashed to another MUX.

    Minimum: a mux-fail window naming its MUX and overlapping no backend change, and a
    connection that MUX carried, established before the failure and open at its start."""
    j = Judge("MF-1")
    n = _judge_by_mux(obs, p, failed_mux=True, j=j)
    if n == 0:
        j.incomplete("no connection carried by the failed MUX was open when it failed")
    return j.verdict(
        passed=f"{n} connections of the failed MUX survived the re-hash",
        failed=f"{j.violations} connections of the failed MUX broke",
    )


@checker("MF-2")
def check_healthy_mux_connections_untouched(obs: Observations, p: Params) -> Verdict:
    """Connections carried only by other MUXes neither break nor stall longer than S.

    Minimum: as MF-1, a connection carried only by the other MUXes."""
    j = Judge("MF-2")
    n = _judge_by_mux(obs, p, failed_mux=False, j=j)
    if n == 0:
        j.incomplete("no connection carried by a healthy MUX was open when another one failed")
    return j.verdict(
        passed=f"{n} connections through healthy MUXes were untouched",
        failed=f"{j.violations} connections through healthy MUXes broke or stalled",
    )


def _next_change(obs: Observations, after: float) -> float:
    kinds = ("mux-fail", "mux-rejoin", "mux-add", *BACKEND_CHANGES)
    return min((w.start for w in obs.windows(*kinds) if w.start > after), default=math.inf)


def _withdrawal(obs: Observations, w: FaultWindow) -> FaultWindow | None:
    for r in obs.windows("route-withdrawn"):
        if r.start >= w.start and (r.target is None or w.target is None or r.target == w.target):
            return r
    return None


def _pending(fh: FlowHistory, history: History) -> bool:
    """An attempt the history ended before it could succeed or fail."""
    return not fh.events and fh.start.t >= (history.end_time or 0.0)


@checker("MF-3")
def check_new_connections_recover(obs: Observations, p: Params) -> Verdict:
    """Every new connection attempted later than tau after the route withdrawal succeeds.

    Minimum: a mux-fail window with its route withdrawal, and N attempts later than tau after
    it; PASS needs them all to succeed."""
    j = Judge("MF-3")
    history = obs.need_history()
    tau = p["recovery_seconds"]
    j.thresholds.update(recovery_seconds=tau, min_attempts=p["min_attempts"])
    late = 0
    recovery = 0.0
    windows = 0
    for w in obs.need_windows("mux-fail"):
        r = _withdrawal(obs, w)
        if r is None:
            j.incomplete(f"no route-withdrawn event after {w.describe()}")
            continue
        windows += 1
        until = w.end if w.end is not None else _next_change(obs, w.start)
        tried = [
            fh for fh in attempts(history, w.start, until, lab=obs.lab) if not _pending(fh, history)
        ]
        failed = [fh for fh in tried if not fh.succeeded()]
        if failed:
            recovery = max(recovery, max(fh.start.t for fh in failed) - r.start)
        for fh in tried:
            if fh.start.t < r.start + tau:
                continue
            late += 1
            if not fh.succeeded():
                j.violation(
                    f"attempt {fh.start.t - r.start:.3f} s after {w.target or 'the MUX'}'s route "
                    f"was withdrawn failed: {describe_failure(fh)}",
                    flow=fh.describe(),
                    time=fh.start.t,
                )
    j.measured.update(recovery_seconds=max(recovery, 0.0), attempts_after_tau=late)
    if windows and late < p["min_attempts"]:
        j.incomplete(
            f"{late} connections attempted later than tau after a withdrawal "
            f"({p['min_attempts']:g} needed)"
        )
    return j.verdict(
        passed=f"new connections recovered {max(recovery, 0.0):.3f} s after the withdrawal",
        failed=f"{j.violations} new connections failed later than {tau:g} s after the withdrawal",
    )


@checker("MF-4")
def check_rejoin_breaks_nothing(obs: Observations, p: Params) -> Verdict:
    """No connection open when a MUX rejoins (with empty state) breaks.

    Minimum: a mux-rejoin window, and a connection established before it and open at its
    start."""
    j = Judge("MF-4")
    history = obs.need_history()
    judged = 0
    for w in obs.need_windows("mux-rejoin"):
        judged += judge_survival(
            j,
            history,
            history.flows.values(),
            w.start,
            w.stop + p["grace"],
            what=f"the rejoin of {w.target or 'a MUX'}",
        )
    j.measured["connections_judged"] = judged
    j.thresholds["grace"] = p["grace"]
    if judged == 0:
        j.incomplete("no connection was open when the MUX rejoined")
    return j.verdict(
        passed=f"{judged} connections survived the MUX rejoining",
        failed=f"{j.violations} connections broke when the MUX rejoined",
    )
