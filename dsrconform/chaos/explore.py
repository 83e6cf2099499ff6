"""Randomised chaos: generate fault schedules from a seed, judge each, and shrink a failing one to
a minimal schedule written as a scenario file that reproduces the failure.

A schedule is a list of actions (1 to ``max_faults``), each a fault from the lab's *palette*
(:func:`palette`: what the topology allows, simplest first) at a whole second within ``span``,
lasting faults held 2 to 8 s. Hypothesis generates them (:func:`schedules`) and shrinks a
failing one (:func:`hypothesis.find`): fewer actions, simpler faults (earlier in the palette),
earlier times, shorter durations. A schedule *fails* when the judge names a MUST requirement
that FAILed (UNKNOWN is not a failure: nothing was shown); once one failed, shrinking keeps to
that requirement, so the minimal schedule shows the same violation.

Bounded: at most ``budget`` judged runs, generation and shrinking together, and at most
``max_seconds``; past either, no more runs (the smallest failing schedule so far is the
result). The judge is a callable (:class:`Judge`), so the search and the shrinking are
unit-tested on synthetic predicates; :func:`lab_judge` runs each schedule as a scenario in a
fresh lab.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from dsrconform import spec
from dsrconform.chaos.kinds import fault_from
from dsrconform.chaos.muxfaults import failover_mux
from dsrconform.chaos.scenario import Action, Scenario, Traffic
from dsrconform.errors import ConfigError
from dsrconform.topology import Topology

__all__ = [
    "Exploration",
    "Judge",
    "explore",
    "lab_judge",
    "palette",
    "reproducer_yaml",
    "schedules",
]

MIN_AT, MIN_HOLD, MAX_HOLD = 1, 2, 8
"""Seconds: the earliest start, and the shortest and longest hold of a lasting fault."""

Judge = Callable[[list[Action]], list[str]]
"""``judge(schedule) -> [requirement IDs that FAILed]`` (MUST ones count)."""


def palette(topo: Topology) -> list[dict[str, Any]]:
    """The faults a schedule draws from on ``topo``, simplest first (shrinking moves toward the
    start of the list): backend changes of the first TCP service, then MUX faults of the
    failover MUX, then link loss on its link."""
    out: list[dict[str, Any]] = []
    tcp = [s for s in topo.services if s.proto == "tcp"]
    if tcp and len(topo.servers_of(tcp[0])) >= 2:
        svc = tcp[0].name
        out += [{"kind": "server-drain", "service": svc}, {"kind": "server-remove", "service": svc}]
    try:
        mux = failover_mux(topo)
    except ConfigError:
        mux = None
    if mux is not None:
        out += [
            {"kind": "mux-restart", "node": mux},
            {"kind": "mux-kill", "node": mux},
            {"kind": "mux-hang", "node": mux},
            {"kind": "link-loss", "a": topo.router, "b": mux, "percent": 20},
        ]
    if not out:
        raise ConfigError(
            f"lab {topo.name}: nothing to explore (no TCP service with two servers, no MUX that "
            "can fail); fix: a lab like labs/basic.yaml"
        )
    return out


def _action(i: int, params: dict[str, Any], at: int, hold: int) -> Action:
    fault = fault_from(dict(params))
    duration = float(hold) if fault.lasting else None
    return Action.model_validate(
        {"id": f"f{i + 1}", "fault": params, "at": float(at), "duration": duration}
    )


def schedules(topo: Topology, *, max_faults: int = 3, span: int = 16) -> st.SearchStrategy[Any]:
    """Schedules on ``topo``: lists of (palette index, start, hold) made into actions."""
    kinds = palette(topo)
    gene = st.tuples(
        st.integers(0, len(kinds) - 1),
        st.integers(MIN_AT, max(MIN_AT, span)),
        st.integers(MIN_HOLD, MAX_HOLD),
    )
    return st.lists(gene, min_size=1, max_size=max_faults).map(
        lambda genes: [_action(i, kinds[k], at, hold) for i, (k, at, hold) in enumerate(genes)]
    )


@dataclass
class Exploration:
    """What :func:`explore` found."""

    runs: int = 0
    seconds: float = 0.0
    requirement: str | None = None
    """The MUST requirement the minimal schedule violates (None: no failing schedule)."""
    first: list[Action] | None = None
    """The first failing schedule generated."""
    minimal: list[Action] | None = None
    """The smallest failing schedule after shrinking."""
    runs_to_first: int = 0
    log: list[str] = field(default_factory=list)


def explore(
    topo: Topology,
    judge: Judge,
    *,
    budget: int,
    seed: int,
    max_faults: int = 3,
    span: int = 16,
    max_seconds: float = 3600.0,
    say: Callable[[str], None] | None = None,
) -> Exploration:
    """Search schedules on ``topo`` for a MUST violation and shrink it (see the module's
    docstring)."""
    if budget < 1:
        raise ConfigError(f"budget {budget}: fix: at least 1 run")
    say = say or (lambda _m: None)
    out = Exploration()
    start = time.monotonic()
    must = {r.id for r in spec.REQUIREMENTS if r.level == "MUST"}

    seen: dict[tuple[tuple[str, float, float | None], ...], list[str]] = {}

    def fails(schedule: list[Action]) -> bool:
        key = tuple((a.faulty().describe(), a.start(), a.duration) for a in schedule)
        if key in seen:  # judged already (hypothesis replays): the same answer, no new run
            return out.requirement is not None and out.requirement in seen[key]
        if out.runs >= budget or time.monotonic() - start > max_seconds:
            return False  # spent: no more runs; the smallest failure so far stands
        out.runs += 1
        text = "; ".join(
            f"{a.faulty().describe()}@{a.start():g}s"
            + (f" for {a.duration:g}s" if a.duration is not None else "")
            for a in schedule
        )
        failed = seen[key] = sorted(set(judge(schedule)) & must)
        line = f"run {out.runs}/{budget}: {text} -> {', '.join(failed) or 'no MUST FAIL'}"
        out.log.append(line)
        say(line)
        if out.requirement is None and failed:
            out.requirement, out.first, out.runs_to_first = failed[0], schedule, out.runs
            say(f"found a violation of {failed[0]}; shrinking")
        return out.requirement is not None and out.requirement in failed

    strategy = schedules(topo, max_faults=max_faults, span=span)
    conf = settings(
        max_examples=budget,
        database=None,
        deadline=None,
        phases=(Phase.generate, Phase.shrink),  # no replay of old examples, no explaining
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
    )
    try:
        out.minimal = find(strategy, fails, settings=conf, random=random.Random(seed))
    except NoSuchExample:
        out.minimal = None
    out.seconds = time.monotonic() - start
    return out


def reproducer_yaml(scn: Scenario, *, how: str) -> str:
    """``scn`` as a scenario file (YAML) whose first lines say how it was found (``how``)."""
    import yaml

    data = scn.model_dump(mode="json", exclude_none=True)
    for act in data["method"]:
        for key in ("delay", "revert_delay"):  # only meaningful with after / revert_after
            if not act.get(key):
                act.pop(key, None)
    head = "".join(f"# {line}\n" for line in how.splitlines())
    return head + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def lab_judge(
    lab_file: str | Path,
    topo: Topology,
    *,
    seed: int,
    mutant: str | None,
    mix: str,
    results: Path,
    backend: str = "netns",
    say: Callable[[str], None] | None = None,
) -> Judge:
    """A judge that runs each schedule as a scenario in a fresh lab (``results/run-N``) and
    returns the MUST requirements that FAILed (the families the palette's faults decide)."""
    from dsrconform.chaos.runner import run_scenario
    from dsrconform.invariants.verdict import Status

    decide = [
        r.id
        for r in spec.REQUIREMENTS
        if r.level == "MUST" and r.id.split("-")[0] in ("MF", "SC", "AF", "RW")
    ]
    counter = {"n": 0}

    def judge(schedule: list[Action]) -> list[str]:
        counter["n"] += 1
        scn = Scenario(
            name=f"explore-{counter['n']}",
            lab=str(lab_file),
            mode=topo.mode,
            traffic=Traffic(mix=mix),
            method=schedule,
            decide=decide,
        )
        result = run_scenario(
            scn,
            topo,
            run_dir=results / f"run-{counter['n']}",
            seed=seed,
            backend=backend,
            mutant=mutant,
            say=say,
        )
        return [v.requirement for v in result.verdicts if v.status == Status.FAIL]

    return judge
