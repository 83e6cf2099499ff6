"""Scale-out and network changes (SC): additions break nothing, remapping is minimal, drains are
clean, changes are atomic and converge, and the breakage of a change followed by a MUX loss.

Backend changes are ``backend-add``/``backend-remove``/``backend-drain`` windows of the fault
timeline (``backends_before``/``backends_after`` list server ids; a drain's ``target`` is the
server). SC-2 and SC-4 compare the server each new flow of the same client 5-tuple reaches over
time, so they read repeated bare-SYN probes (:mod:`dsrconform.traffic.tupleprobes`), which the SUT
keeps no state for (a stack with a connection table keeps a reused connection's tuple on its old
server, which is correct and would hide the change): the taps on the links out of each MUX show
which server each probe tuple was sent to, from when to when (:func:`probe_paths`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from dsrconform.invariants.flows import describe_event, judge_survival, unterminated
from dsrconform.invariants.muxfail import carried_by, muxes_before
from dsrconform.invariants.verdict import Judge, MissingData, Params, Verdict, checker
from dsrconform.observe.history import FirstByte, FlowEvent, FlowHistory, hostport
from dsrconform.observe.observations import (
    BACKEND_CHANGES,
    PROTO_NUMBERS,
    FaultKind,
    FaultWindow,
    Observations,
    from_role,
)

TupleKey = tuple[str, str, int, str, int]
ProbeTuple = tuple[int, str, int, str, int]
"""A probe's 5-tuple: (IP protocol number, source, source port, destination, port)."""
_PROTO_NAMES = {n: name for name, n in PROTO_NUMBERS.items()}


@checker("SC-1")
def check_scale_out_breaks_nothing(obs: Observations, p: Params) -> Verdict:
    """No connection open when a server or a MUX is added breaks.

    Minimum: a backend-add or mux-add window, and a connection established before it and open
    at its start."""
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


@dataclass(frozen=True)
class ProbeSpan:
    """A probe tuple's packets that one MUX sent to one server: from ``first`` to ``last``."""

    server: str
    first: float
    last: float
    packets: int


ProbePaths = dict[ProbeTuple, dict[str, list[ProbeSpan]]]
"""Probe tuple -> MUX -> the servers it sent the tuple's packets to, earliest first."""


def probe_paths(j: Judge, obs: Observations) -> ProbePaths:
    """Where each tuple probe went: the encapsulated packets from a probe source (the lab's
    probe networks) on the taps of the links out of each MUX, by tuple, MUX and server (the
    outer destination). A MUX's XDP_TX bypasses its own tc egress, so the receiving end's tap
    sees them; both ends' records of one server are merged."""
    lab = obs.need_lab()
    if not lab.probe_networks:
        raise MissingData("the lab's tuple-probe network (a family's second black-holed network)")
    taps = obs.need_taps(
        j, "on a link out of a MUX", from_role(lab, "mux"), expect=lab.nodes("mux"),
        covers=lambda t: t.sender,
    )  # fmt: skip

    def build() -> ProbePaths:
        spans: dict[tuple[ProbeTuple, str, str], ProbeSpan] = {}
        for info, recs in taps:
            mux = info.sender
            if mux is None:
                continue
            for r in recs:
                inner = r.inner
                if inner is None or not lab.is_probe(inner.src):
                    continue
                server = lab.node_of(r.dst)
                if server is None or lab.role(server) != "server":
                    continue
                key = ((inner.proto, inner.src, inner.sport, inner.dst, inner.dport), mux, server)
                old = spans.get(key)
                if old is not None:  # the same packets at the link's other end
                    r_first, r_last = min(old.first, r.first), max(old.last, r.last)
                    span = ProbeSpan(server, r_first, r_last, max(old.packets, r.packets))
                else:
                    span = ProbeSpan(server, r.first, r.last, r.packets)
                spans[key] = span
        out: ProbePaths = {}
        for (tup, mux, _), span in spans.items():
            out.setdefault(tup, {}).setdefault(mux, []).append(span)
        for per_mux in out.values():
            for lst in per_mux.values():
                lst.sort(key=lambda x: x.first)
        return out

    paths: ProbePaths = obs.derived("probe_paths", build)
    return paths


_CHANGES: tuple[FaultKind, ...] = ("config-change", *BACKEND_CHANGES)


def probed_around(
    obs: Observations, paths: ProbePaths, w: FaultWindow, *, after: float
) -> ProbePaths:
    """The probe tuples that judge change ``w``: to its VIP (if it names one), of its probe
    set (``probe_sport`` in its detail, if noted), probed before it began and after ``after``,
    and while no other change began."""
    sport = w.detail.get("probe_sport")
    others = [x.start for x in obs.windows(*_CHANGES) if x != w]
    out: ProbePaths = {}
    for tup, per_mux in paths.items():
        if (w.vip is not None and tup[3] != w.vip) or (sport is not None and tup[2] != sport):
            continue
        spans = [x for lst in per_mux.values() for x in lst]
        first, last = min(x.first for x in spans), max(x.last for x in spans)
        if first < w.start and last > after and not any(first <= t <= last for t in others):
            out[tup] = per_mux
    return out


def probes_failed(j: Judge, w: FaultWindow) -> bool:
    """True (and ``w`` noted as undecidable, with the probe sender's own error) when the tuple
    probes around change ``w`` failed: its window carries ``probe_error``."""
    error = w.detail.get("probe_error")
    if error is None:
        return False
    j.incomplete(f"the tuple probes around {w.describe()} failed: {error}")
    return True


def _describe_tuple(tup: ProbeTuple) -> str:
    proto, src, sport, dst, dport = tup
    return f"{_PROTO_NAMES.get(proto, proto)} {hostport(src, sport)} -> {hostport(dst, dport)}"


@checker("SC-2")
def check_minimal_remapping(obs: Observations, p: Params) -> Verdict:
    """Share of probe tuples answered by another server after a change <= changed/N + eps.

    Minimum: n tuple probes the MUXes were seen sending to servers before and after a backend
    change that lists its backends, some of them moved where some should."""
    j = Judge("SC-2")
    paths = probe_paths(j, obs)
    eps, need = p["epsilon"], p["min_samples"]
    j.thresholds.update(epsilon=eps, min_samples=need)
    decided = 0
    for w in obs.need_windows("backend-add", "backend-remove"):
        if w.backends_before is None or w.backends_after is None:
            j.incomplete(f"{w.describe()} does not list the backends before and after")
            continue
        if probes_failed(j, w):
            continue
        before, after = set(w.backends_before), set(w.backends_after)
        changed = len(before ^ after)
        ideal = changed / max(len(before), len(after), 1)
        pairs: list[tuple[ProbeTuple, ProbeSpan, ProbeSpan]] = []
        for tup, per_mux in probed_around(obs, paths, w, after=w.stop).items():
            spans = [x for lst in per_mux.values() for x in lst]
            old = min(spans, key=lambda x: x.first)
            new = max(spans, key=lambda x: x.last)
            pairs.append((tup, old, new))
        at = f"@{w.start:.3f}"
        j.measured["tuples_probed" + at] = len(pairs)
        if len(pairs) < need:
            j.incomplete(f"{len(pairs)} tuples probed before and after {w.describe()} ({need:g})")
            continue
        moved = [(tup, a, b) for tup, a, b in pairs if a.server != b.server]
        share = len(moved) / len(pairs)
        j.measured["remapped_share" + at] = round(share, 6)
        j.thresholds["max_share" + at] = round(ideal + eps, 6)
        if not moved and changed and len(pairs) * ideal >= 5:
            j.incomplete(
                f"no probed tuple moved after {w.describe()}: the change was not applied, or "
                "the stack keeps state for bare SYNs (the probes were not new to it)"
            )
            continue
        decided += 1
        if share <= ideal + eps:
            continue
        j.violation(
            f"{w.describe()} remapped {share:.1%} of {len(pairs)} probed tuples; minimal "
            f"{ideal:.1%} + {eps:.1%} allowed"
        )
        for tup, a, b in moved:
            if a.server in after and b.server not in after - before:
                j.violation(
                    f"moved from {a.server} (still a backend) to {b.server}: last sent to "
                    f"{a.server} at {a.last:.3f}, to {b.server} from {b.first:.3f}",
                    flow=_describe_tuple(tup),
                    time=b.first,
                )
    if decided == 0:
        j.incomplete("no backend change had enough tuples probed before and after")
    return j.verdict(
        passed=f"{decided} backend changes remapped no more than the minimum plus {eps:g}",
        failed="a backend change remapped more new flows than the minimum plus epsilon",
    )


def _until_next(obs: Observations, w: FaultWindow, kinds: Iterable[str]) -> float:
    """When the next change of ``kinds`` after ``w`` starts, among those of ``w``'s service (a
    window without a VIP concerns every service): a server moved to another MUX's VIP is added
    there right after its drain here, which changes nothing of the drained service."""
    later = [
        x.start
        for x in obs.faults
        if x.kind in kinds and x.start > w.start and (None in (x.vip, w.vip) or x.vip == w.vip)
    ]
    return min(later, default=math.inf)


def _of_drained_service(obs: Observations, w: FaultWindow, fh: FlowHistory) -> bool:
    """Whether ``fh`` is of what ``w`` drained: the service its detail names, if the lab knows
    it (two services may share a VIP address, e.g. TCP and UDP on port 80, each drained in a
    window of its own: judged by address, a flow would count once per window), else ``w``'s VIP
    (every flow, if it names none)."""
    name = w.detail.get("service")
    lab = obs.lab
    svc = next((s for s in lab.services if s.name == name), None) if lab and name else None
    if svc is not None:
        return (fh.start.proto, fh.start.dst, fh.start.dport) == (svc.proto, svc.vip, svc.port)
    return w.vip is None or fh.start.dst == w.vip


@checker("SC-3")
def check_drain(obs: Observations, p: Params) -> Verdict:
    """Connections to a drained server survive; no connection started after W goes to it.

    Minimum: a connection to the drained server established before the drain and open at its
    start, and a new connection started later than W whose server is known (it was answered)."""
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
        flows = [fh for fh in history.flows.values() if _of_drained_service(obs, w, fh)]
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
    """Per MUX, every probe tuple changes server at most once, all at one instant, within tau.

    Minimum: N tuple probes the MUXes were seen sending to servers later than tau after each
    change, some of them moved where about five or more should."""
    j = Judge("SC-4")
    paths = probe_paths(j, obs)
    tau, slack = p["converge_seconds"], p["atomic_slack"]
    j.thresholds.update(converge_seconds=tau, atomic_slack=slack, min_tuples=p["min_tuples"])
    slowest = 0.0
    for w in obs.need_windows(*_CHANGES):
        if probes_failed(j, w):
            continue
        at = f"@{w.start:.3f}"
        # A drain's window lasts until the server is back: its change is at its start.
        judged = probed_around(obs, paths, w, after=w.start)
        settled = sum(
            1 for per_mux in judged.values()
            if any(x.last >= w.start + tau for lst in per_mux.values() for x in lst)
        )  # fmt: skip
        changed = 0
        # Per MUX: when each changed tuple was last sent to its old server, and first to its
        # new one. An atomic flip lies between the two for every tuple at once.
        flips: dict[str, list[tuple[ProbeTuple, ProbeSpan, ProbeSpan]]] = {}
        # Per MUX: tuples probed past tau, and those it changed (a MUX that never applies the
        # change moves none of them while the others do).
        per_mux_settled: dict[str, int] = {}
        per_mux_changed: dict[str, int] = {}
        gone = set(w.backends_before or ()) - set(w.backends_after or ())
        for tup, per_mux in judged.items():
            for mux, spans in per_mux.items():
                if spans[-1].last >= w.start + tau:
                    per_mux_settled[mux] = per_mux_settled.get(mux, 0) + 1
                stale = next((x for x in spans if x.server in gone), None)
                if stale is not None and stale.last > w.start + tau:
                    j.violation(
                        f"{mux} still sent it to {stale.server}, no backend after "
                        f"{w.describe()}, {stale.last - w.start:.3f} s after the change began "
                        f"(more than {tau:g} s)",
                        flow=_describe_tuple(tup),
                        time=stale.last,
                    )
                    continue
                if len(spans) < 2:
                    continue
                per_mux_changed[mux] = per_mux_changed.get(mux, 0) + 1
                changed += 1
                path = " -> ".join(x.server for x in spans)
                if len(spans) > 2:
                    j.violation(
                        f"{mux} sent it to {path} around {w.describe()}: not one atomic change",
                        flow=_describe_tuple(tup),
                        time=spans[2].first,
                    )
                    continue
                old, new = spans
                if old.last > new.first + slack:
                    j.violation(
                        f"{mux} sent it to {old.server}, {new.server}, and {old.server} again "
                        f"({new.first:.6f}..{old.last:.6f}) around {w.describe()}: not one "
                        "atomic change",
                        flow=_describe_tuple(tup),
                        time=new.first,
                    )
                    continue
                flips.setdefault(mux, []).append((tup, old, new))
                delay = new.first - w.start
                slowest = max(slowest, delay)
                if delay > tau:
                    j.violation(
                        f"{mux} moved it from {old.server} to {new.server} {delay:.3f} s after "
                        f"{w.describe()} began (more than {tau:g} s)",
                        flow=_describe_tuple(tup),
                        time=new.first,
                    )
        for mux, moves in sorted(flips.items()):
            late = max(moves, key=lambda m: m[1].last)  # still sent to its old server
            early = min(moves, key=lambda m: m[2].first)  # already sent to its new server
            tear = late[1].last - early[2].first
            j.measured[f"tear_seconds{at}:{mux}"] = round(max(tear, 0.0), 6)
            if tear > slack:
                j.violation(  # (times to the microsecond: the taps' clock is the host's)
                    f"{mux} sent {_describe_tuple(early[0])} to its new server "
                    f"{early[2].server} at {early[2].first:.6f} but {_describe_tuple(late[0])} "
                    f"to its old server {late[1].server} until {late[1].last:.6f}, {tear:.6f} s "
                    f"later, around {w.describe()}: the table was neither the old nor the new "
                    f"one (allowed: {slack:g} s)",
                    flow=_describe_tuple(late[0]),
                    time=late[1].last,
                )
        j.measured["tuples_settled" + at] = settled
        j.measured["tuples_changed" + at] = changed
        if changed and w.kind in BACKEND_CHANGES:
            for mux, n in sorted(per_mux_settled.items()):
                if per_mux_changed.get(mux, 0) == 0 and _expected_moves(w, n) >= 5:
                    j.violation(
                        f"{mux} sent none of its {n} probed tuples to another server after "
                        f"{w.describe()}, where about {_expected_moves(w, n):.0f} should have "
                        "moved and other MUXes moved theirs: the change never reached it",
                        time=w.start + tau,
                    )
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
    j.measured["slowest_convergence_seconds"] = round(slowest, 6)
    return j.verdict(
        passed=f"every probed tuple changed at most once, per MUX all at one instant, within "
        f"{slowest:.3f} s",
        failed=f"{j.violations} violations of atomic convergence",
    )


def _expected_moves(w: FaultWindow, tuples: int) -> float:
    if w.backends_before is None or w.backends_after is None:
        return 0.0
    before, after = set(w.backends_before), set(w.backends_after)
    return tuples * len(before ^ after) / max(len(before), len(after), 1)


@checker("SC-5")
def check_change_then_mux_loss(obs: Observations, p: Params) -> Verdict:
    """Share of connections broken by a backend change followed by a MUX loss <= B.

    Minimum: a backend change then a mux-fail, and a connection established before the change
    and open when the MUX failed."""
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
