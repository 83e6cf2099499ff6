"""Scale-out and network changes (SC): additions break nothing, remapping is minimal, drains are
clean, changes are atomic and converge, and the breakage of a change followed by a MUX loss.

Backend changes are ``backend-add``/``backend-remove``/``backend-drain`` windows of the fault
timeline (``backends_before``/``backends_after`` list server ids; a drain's ``target`` is the
server). SC-2 and SC-4 compare the server answering the same client 5-tuple over time, so the
traffic must probe with tuples the SUT holds no state for (a stack with a connection table keeps
a reused tuple on its old server, which is correct and would hide the change).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from dsrconform.invariants.flows import describe_event, judge_survival, unterminated
from dsrconform.invariants.muxfail import carried_by, muxes_before
from dsrconform.invariants.observations import BACKEND_CHANGES, FaultWindow, Observations
from dsrconform.invariants.verdict import Judge, MissingData, Params, Verdict, checker
from dsrconform.observe.history import FirstByte, FlowEvent, FlowHistory, History

TupleKey = tuple[str, str, int, str, int]


@checker("SC-1")
def check_scale_out_breaks_nothing(obs: Observations, p: Params) -> Verdict:
    """No connection open when a server or a MUX is added breaks."""
    j = Judge("SC-1")
    history = obs.need_history()
    judged = 0
    for w in obs.need_windows("backend-add", "mux-add"):
        judged += judge_survival(
            j, history, history.flows.values(), w.start, w.stop + p["grace"], what=w.describe()
        )
    j.measured["connections_judged"] = judged
    j.thresholds["grace"] = p["grace"]
    if judged == 0:
        j.incomplete("no connection was open when a server or MUX was added")
    return j.verdict(
        passed=f"{judged} connections survived scale-out",
        failed=f"{j.violations} connections broke on scale-out",
    )


def _tuple(fh: FlowHistory) -> TupleKey:
    s = fh.start
    return (s.proto, s.src, s.sport, s.dst, s.dport)


def _by_tuple_all(flows: Iterable[FlowHistory]) -> dict[TupleKey, list[FlowHistory]]:
    """``flows`` by 5-tuple, each list in start order."""
    out: dict[TupleKey, list[FlowHistory]] = {}
    for fh in flows:
        out.setdefault(_tuple(fh), []).append(fh)
    for lst in out.values():
        lst.sort(key=lambda fh: fh.start.t)
    return out


def _by_tuple(history: History, vip: str | None = None) -> dict[TupleKey, list[FlowHistory]]:
    """Flows with a known server, by 5-tuple, in start order."""
    out: dict[TupleKey, list[FlowHistory]] = {}
    for fh in history.flows.values():
        s = fh.start
        if fh.server is None or (vip is not None and s.dst != vip):
            continue
        out.setdefault(_tuple(fh), []).append(fh)
    for flows in out.values():
        flows.sort(key=lambda fh: fh.start.t)
    return out


@checker("SC-2")
def check_minimal_remapping(obs: Observations, p: Params) -> Verdict:
    """Share of tuples answered by another server after a change <= changed/N + epsilon."""
    j = Judge("SC-2")
    history = obs.need_history()
    eps, need = p["epsilon"], p["min_samples"]
    j.thresholds.update(epsilon=eps, min_samples=need)
    decided = 0
    for w in obs.need_windows("backend-add", "backend-remove"):
        if w.backends_before is None or w.backends_after is None:
            j.incomplete(f"{w.describe()} does not list the backends before and after")
            continue
        before, after = set(w.backends_before), set(w.backends_after)
        ideal = len(before ^ after) / max(len(before), len(after), 1)
        pairs = []
        for flows in _by_tuple(history, w.vip).values():
            old = [fh for fh in flows if fh.start.t < w.start]
            new = [fh for fh in flows if fh.start.t >= w.stop]
            if old and new:
                pairs.append((old[-1], new[0]))
        j.measured[f"tuples_probed@{w.start:.3f}"] = len(pairs)
        if len(pairs) < need:
            j.incomplete(f"{len(pairs)} tuples probed before and after {w.describe()} ({need:g})")
            continue
        decided += 1
        moved = [(a, b) for a, b in pairs if a.server != b.server]
        share = len(moved) / len(pairs)
        j.measured[f"remapped_share@{w.start:.3f}"] = round(share, 6)
        j.thresholds[f"max_share@{w.start:.3f}"] = round(ideal + eps, 6)
        if share <= ideal + eps:
            continue
        j.violation(
            f"{w.describe()} remapped {share:.1%} of {len(pairs)} probed tuples; minimal "
            f"{ideal:.1%} + {eps:.1%} allowed"
        )
        for a, b in moved:
            if a.server in after and b.server not in after - before:
                j.violation(
                    f"moved from {a.server} (still a backend) to {b.server}",
                    flow=b.describe(),
                    time=b.start.t,
                )
    if decided == 0:
        j.incomplete("no backend change had enough tuples probed before and after")
    return j.verdict(
        passed=f"{decided} backend changes remapped no more than the minimum plus {eps:g}",
        failed="a backend change remapped more new flows than the minimum plus epsilon",
    )


def _until_next(obs: Observations, w: FaultWindow, kinds: Iterable[str]) -> float:
    later = [x.start for x in obs.faults if x.kind in kinds and x.start > w.start]
    return min(later, default=math.inf)


@checker("SC-3")
def check_drain(obs: Observations, p: Params) -> Verdict:
    """Connections to a drained server survive; no connection started after W goes to it."""
    j = Judge("SC-3")
    history = obs.need_history()
    judged = fresh = reused = 0
    for w in obs.need_windows("backend-drain"):
        target = w.target
        if target is None:
            j.incomplete(f"{w.describe()} does not name the drained server")
            continue
        # A drain names the service's VIP when it drains one service only: the server keeps
        # serving the others.
        flows = [fh for fh in history.flows.values() if w.vip is None or fh.start.dst == w.vip]
        on_it = [fh for fh in flows if fh.server == target]
        judged += judge_survival(
            j, history, on_it, w.start, w.stop + p["grace"], what=f"the drain of {target}"
        )
        until = _until_next(obs, w, ("backend-add", "config-change"))
        # A client reusing a 5-tuple the stack remembers on the drained server may be kept
        # there (connection affinity wins): that is no new connection. A tuple is remembered
        # there once a connection on it reached the drained server before the drain settled
        # (W). It stays remembered even if a later connection went elsewhere: state is per
        # MUX, and the router may carry one connection of the tuple through another MUX
        # (seen when a flood delayed BGP keepalives) while the first MUX keeps its entry.
        kept: set[int] = set()
        settled = w.start + p["settle"]
        for tuple_flows in _by_tuple_all(flows).values():
            pinned = False
            for fh in tuple_flows:
                if fh.start.t < settled:
                    pinned = pinned or fh.server == target
                elif pinned and fh.server == target:
                    kept.add(id(fh))
        for fh in flows:
            if not settled <= fh.start.t < until or fh.server is None:
                continue
            if id(fh) in kept:
                reused += 1
                continue
            fresh += 1
            if fh.server == target:
                first = next((e for e in fh.events if isinstance(e, FirstByte)), None)
                j.violation(
                    f"started {fh.start.t - w.start:.3f} s after the drain of {target} began "
                    f"and was answered by {target}",
                    flow=fh.describe(),
                    time=first.t if first is not None else fh.start.t,
                )
    j.measured.update(
        connections_judged=judged, new_connections_judged=fresh, reused_tuples_skipped=reused
    )
    j.thresholds.update(grace=p["grace"], settle=p["settle"])
    if judged == 0:
        j.incomplete("no connection to the drained server was open when the drain began")
    if fresh == 0:
        j.incomplete("no connection was started after the drain settled")
    return j.verdict(
        passed=f"{judged} connections to the drained server survived; none of {fresh} new "
        "ones reached it",
        failed=f"{j.violations} connections broke or reached the drained server",
    )


@checker("SC-4")
def check_atomic_convergence(obs: Observations, p: Params) -> Verdict:
    """Each probed tuple changes server at most once after a change, within tau."""
    j = Judge("SC-4")
    history = obs.need_history()
    tau = p["converge_seconds"]
    j.thresholds.update(converge_seconds=tau, min_tuples=p["min_tuples"])
    tuples = _by_tuple(history)
    slowest = 0.0
    for w in obs.need_windows("config-change", *BACKEND_CHANGES):
        until = _until_next(obs, w, ("config-change", *BACKEND_CHANGES))
        settled = changed = 0
        for flows in tuples.values():
            before = [fh for fh in flows if fh.start.t < w.start][-1:]
            after = [fh for fh in flows if w.start <= fh.start.t < until]
            if not after:
                continue
            runs = _runs(before + after)
            if any(fh.start.t >= w.start + tau for fh in after):
                settled += 1
            if len(runs) > 1:
                changed += 1
                slowest = max(slowest, runs[-1].start.t - w.start)
            if len(runs) > 2:
                path = " -> ".join(str(fh.server) for fh in runs)
                j.violation(
                    f"answered by {path} after {w.describe()}: not one atomic change",
                    flow=runs[2].describe(),
                    time=runs[2].start.t,
                )
            elif len(runs) == 2 and runs[1].start.t - w.start > tau:
                j.violation(
                    f"moved from {runs[0].server} to {runs[1].server} "
                    f"{runs[1].start.t - w.start:.3f} s after {w.describe()} began "
                    f"(more than {tau:g} s)",
                    flow=runs[1].describe(),
                    time=runs[1].start.t,
                )
        j.measured[f"tuples_settled@{w.start:.3f}"] = settled
        j.measured[f"tuples_changed@{w.start:.3f}"] = changed
        if settled < p["min_tuples"]:
            j.incomplete(
                f"{settled} tuples probed later than tau after {w.describe()} "
                f"({p['min_tuples']:g} needed)"
            )
        elif w.kind in BACKEND_CHANGES and changed == 0 and _expected_moves(w, settled) >= 5:
            j.incomplete(
                f"no probed tuple changed server after {w.describe()}: the change was not applied "
                "or the probes were not new to the SUT"
            )
    j.measured["slowest_convergence_seconds"] = slowest
    return j.verdict(
        passed=f"every probed tuple changed at most once, within {slowest:.3f} s",
        failed=f"{j.violations} tuples changed server more than once or later than tau",
    )


def _runs(flows: list[FlowHistory]) -> list[FlowHistory]:
    """The first flow of each run of consecutive flows answered by the same server."""
    out: list[FlowHistory] = []
    for fh in flows:
        if not out or fh.server != out[-1].server:
            out.append(fh)
    return out


def _expected_moves(w: FaultWindow, tuples: int) -> float:
    if w.backends_before is None or w.backends_after is None:
        return 0.0
    before, after = set(w.backends_before), set(w.backends_after)
    return tuples * len(before ^ after) / max(len(before), len(after), 1)


@checker("SC-5")
def check_change_then_mux_loss(obs: Observations, p: Params) -> Verdict:
    """Share of connections broken by a backend change followed by a MUX loss <= B."""
    j = Judge("SC-5")
    history = obs.need_history()
    changes = obs.backend_changes()
    try:
        seen = carried_by(j, obs)
    except MissingData:
        seen = {}
    total = pairs = lost = 0
    broken: list[tuple[FlowHistory, FlowEvent, str]] = []
    for f in obs.need_windows("mux-fail"):
        c = next((x for x in reversed(changes) if x.start < f.start), None)
        if c is None:
            continue
        pairs += 1
        for fh in history.flows.values():
            est = fh.established_at
            if est is None or est >= c.start or not fh.alive_at(f.start):
                continue
            if seen and f.target is not None and f.target not in muxes_before(fh, seen, f.start):
                continue
            if unterminated(fh):
                lost += 1
                continue
            total += 1
            e = fh.first_break(f.start, f.stop + p["grace"])
            if e is not None:
                broken.append((fh, e, f"after {c.describe()} then {f.describe()}"))
    if pairs == 0:
        raise MissingData("a backend change followed by a mux-fail window")
    share = len(broken) / total if total else 0.0
    j.measured.update(connections_judged=total, broken=len(broken), breakage=share)
    j.thresholds.update(max_breakage=p["max_breakage"], grace=p["grace"])
    if share > p["max_breakage"]:  # breakage within the bound is measured, not a violation
        for fh, e, when in broken:
            j.violation(f"{describe_event(fh, e)} {when}", flow=fh.describe(), time=e.t)
    if lost:
        j.incomplete(f"{lost} connections have no end in the history: survival unknown")
    if total == 0:
        j.incomplete("no connection established before the change was open when the MUX failed")
    return j.verdict(
        passed=f"{len(broken)} of {total} connections broke ({share:.1%}, at most "
        f"{p['max_breakage']:.1%} allowed)",
        failed=f"{len(broken)} of {total} connections broke ({share:.1%}, more than "
        f"{p['max_breakage']:.1%})",
    )
