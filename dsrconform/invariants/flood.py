"""SYN flood (SF): established connections survive, new ones complete, the MUX keeps forwarding.

Every checker here reads ``syn-flood`` windows of the fault timeline. A flood counts only if it
reached ``FLOOD_RATE_SHARE`` of the stated rate R for at least T seconds (``rate`` is what the
generator achieved); weaker floods are ignored, and with none left the answer is UNKNOWN.
"""

from __future__ import annotations

import math

from dsrconform.invariants.flows import (
    attempts,
    connect_latency,
    describe_failure,
    judge_survival,
    percentile,
)
from dsrconform.invariants.verdict import Judge, MissingData, Params, Verdict, checker
from dsrconform.observe.history import FlowHistory
from dsrconform.observe.observations import (
    Endpoint,
    FaultWindow,
    Observations,
    Sighting,
    overlaps_any,
    sightings,
    toward_role,
)

FLOOD_RATE_SHARE = 0.95
"""A flood counts if its achieved rate is at least this share of R (generators pace roughly)."""


def _floods(j: Judge, obs: Observations, p: Params) -> list[FaultWindow]:
    """The syn-flood windows strong and long enough; MissingData (naming them) if none is."""
    rate, secs = p["flood_rate"], p["flood_seconds"]
    j.thresholds.update(flood_rate=rate, flood_seconds=secs)
    strong, weak = [], []
    for w in obs.need_windows("syn-flood"):
        got = w.rate if w.rate is not None else 0.0
        if got >= FLOOD_RATE_SHARE * rate and w.stop - w.start >= secs:
            strong.append(w)
        else:
            weak.append(
                f"{w.describe()} reached {got:,.0f} packets/s for {w.stop - w.start:.1f} s "
                f"(needed: {FLOOD_RATE_SHARE:.0%} of {rate:,.0f} packets/s for {secs:g} s)"
            )
    j.measured["floods_too_weak"] = len(weak)
    if not strong:
        raise MissingData(*weak)
    return strong


@checker("SF-1")
def check_established_survive_flood(obs: Observations, p: Params) -> Verdict:
    """Connections established before a flood (no backend change) survive it.

    Minimum: a flood of R packets/s for T s overlapping no backend change, and a connection
    established (handshake completed) before it and still open at its start."""
    j = Judge("SF-1")
    history = obs.need_history()
    changes = obs.backend_changes()
    floods = [w for w in _floods(j, obs, p) if overlaps_any(changes, w.start, w.stop) is None]
    if not floods:
        raise MissingData("a flood that overlaps no backend change (the others are SF-3's)")
    judged = 0
    for w in floods:
        judged += judge_survival(
            j, history, history.flows.values(), w.start, w.stop + p["grace"], what="the flood"
        )
    j.measured.update(floods=len(floods), connections_judged=judged)
    j.thresholds["grace"] = p["grace"]
    if judged == 0:
        j.incomplete("no connection was established before a flood and still open at its start")
    return j.verdict(
        passed=f"{judged} established connections survived {len(floods)} floods",
        failed=f"{j.violations} established connections broke during a flood",
    )


@checker("SF-2")
def check_new_connections_during_flood(obs: Observations, p: Params) -> Verdict:
    """During a flood, a share >= S of new connections succeeds, p99 connect latency <= L.

    Minimum: N attempts during floods of R packets/s for T s; PASS needs a share S of them to
    succeed (a stack that forwards nothing fails them all: FAIL)."""
    j = Judge("SF-2")
    history = obs.need_history()
    tried: list[FlowHistory] = []
    for w in _floods(j, obs, p):
        tried += attempts(history, w.start, w.stop, lab=obs.lab)
    ok = [fh for fh in tried if fh.succeeded()]
    latencies = [lat for fh in ok if (lat := connect_latency(fh)) is not None]
    share = len(ok) / len(tried) if tried else math.nan
    p99 = percentile(latencies, 0.99) if latencies else None
    j.measured.update(attempts=len(tried), succeeded=len(ok), success_share=share, p99_latency=p99)
    j.thresholds.update(
        min_success=p["min_success"], max_latency=p["max_latency"], min_attempts=p["min_attempts"]
    )
    if len(tried) < p["min_attempts"]:
        j.incomplete(
            f"{len(tried)} connections attempted during floods ({p['min_attempts']:g} needed)"
        )
        return j.verdict(passed="not decided", failed="not decided")
    if share < p["min_success"]:
        for fh in tried:
            if not fh.succeeded():
                j.violation(
                    f"attempt during the flood failed: {describe_failure(fh)}",
                    flow=fh.describe(),
                    time=fh.start.t,
                )
    if p99 is not None and p99 > p["max_latency"]:
        for fh in ok:
            lat = connect_latency(fh)
            if lat is not None and lat > p["max_latency"]:
                j.violation(f"connected after {lat:.3f} s", flow=fh.describe(), time=fh.start.t)
    return j.verdict(
        passed=f"{len(ok)} of {len(tried)} attempts succeeded during floods, p99 connect "
        f"latency {p99 if p99 is not None else float('nan'):.3f} s",
        failed=f"new connections during floods: {share:.1%} succeeded (needed "
        f"{p['min_success']:.1%}), p99 latency "
        f"{p99 if p99 is not None else float('nan'):.3f} s (allowed {p['max_latency']:g} s)",
    )


@checker("SF-3")
def check_survive_flood_with_backend_change(obs: Observations, p: Params) -> Verdict:
    """Connections survive a flood that overlaps a backend change.

    Minimum: such a flood, and a connection established before both and open when the first
    began."""
    j = Judge("SF-3")
    history = obs.need_history()
    changes = obs.backend_changes()
    judged = pairs = 0
    for w in _floods(j, obs, p):
        c = overlaps_any(changes, w.start, w.stop)
        if c is None:
            continue
        pairs += 1
        start, stop = min(w.start, c.start), max(w.stop, c.stop)
        judged += judge_survival(
            j,
            history,
            history.flows.values(),
            start,
            stop + p["grace"],
            what=f"the flood with {c.describe()}",
        )
    if pairs == 0:
        raise MissingData("a flood overlapping a backend change (backend-add/remove/drain)")
    j.measured.update(floods_with_backend_change=pairs, connections_judged=judged)
    j.thresholds["grace"] = p["grace"]
    if judged == 0:
        j.incomplete("no connection was established before the flood and backend change")
    return j.verdict(
        passed=f"{judged} connections survived floods coinciding with backend changes",
        failed=f"{j.violations} connections broke during a flood with a backend change",
    )


@checker("SF-4")
def check_mux_forwards_during_flood(obs: Observations, p: Params) -> Verdict:
    """In every interval of a flood, each MUX that got new attempts completed one of them.

    Minimum: legitimate attempts during a flood of R packets/s for T s; PASS needs every MUX
    to complete one per interval (a stack that forwards nothing completes none: FAIL)."""
    j = Judge("SF-4")
    history = obs.need_history()
    floods = _floods(j, obs, p)
    carried = _mux_sightings(j, obs)
    step = p["interval"]
    if step <= 0:
        raise MissingData("a positive interval I")
    j.thresholds["interval"] = step
    buckets = empty = 0
    for w in floods:
        n = max(1, math.ceil((w.stop - w.start) / step))
        for i in range(n):
            a, b = w.start + i * step, min(w.start + (i + 1) * step, w.stop)
            groups: dict[str, list[FlowHistory]] = {}
            for fh in attempts(history, a, b, lab=obs.lab):
                groups.setdefault(_mux_of(fh, carried), []).append(fh)
            if not groups:
                empty += 1
            for mux, tried in sorted(groups.items()):
                buckets += 1
                if not any(fh.succeeded() for fh in tried):
                    j.violation(
                        f"{mux}: none of {len(tried)} new connections attempted in "
                        f"[{a:.3f}, {b:.3f}) completed ({describe_failure(tried[0])})",
                        flow=tried[0].describe(),
                        time=a,
                        until=b,
                    )
    j.measured.update(intervals_judged=buckets, intervals_without_attempts=empty)
    if buckets == 0:
        j.incomplete("no legitimate connection was attempted during a flood")
    return j.verdict(
        passed=f"every MUX completed new connections in each of {buckets} flood intervals",
        failed=f"{j.violations} flood intervals in which a MUX completed no new connection",
    )


def _mux_sightings(j: Judge, obs: Observations) -> dict[Endpoint, Sighting]:
    """Which MUX received each client endpoint's packets, when taps toward MUXes exist."""
    if obs.lab is None or obs.taps is None:
        return {}
    lab = obs.lab
    try:
        taps = obs.need_taps(j, "toward a MUX", toward_role(lab, "mux"))
    except MissingData:
        return {}
    return sightings(taps, lab, lambda t: t.receiver)


def _mux_of(fh: FlowHistory, carried: dict[Endpoint, Sighting]) -> str:
    seen = carried.get(fh.endpoint)
    during = seen.nodes_during(fh.start.t, fh.last_t) if seen is not None else []
    return during[0] if during else "any MUX"
