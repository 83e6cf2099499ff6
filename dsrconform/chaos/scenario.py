"""A chaos scenario: the lab, the traffic, a steady-state hypothesis, a method (a timeline of
faults) and the requirements it decides. Written as a YAML file or built in Python::

    from dsrconform.chaos.muxfaults import MuxKill
    from dsrconform.chaos.runner import run_scenario
    from dsrconform.chaos.scenario import Action, Scenario

    scn = Scenario(name="mux-down", lab="labs/basic.yaml", traffic={"mix": "chaos"},
                   method=[Action(fault=MuxKill(), at=5, duration=8)],
                   decide=["MF-1", "MF-2", "MF-3", "MF-4"])
    result = run_scenario(scn, load_topology(scn.lab), run_dir=Path("results/mux-down"))

A file (``labs/scenarios/*.yaml``; the JSON Schema is ``docs/scenario.schema.json``)::

    name: mux-failure-under-load
    lab: ../basic.yaml            # relative to the scenario file
    traffic: {mix: chaos}
    steady_state:
      probes: [{probe: http}, {probe: routes}]
    method:
      - {id: kill, fault: {kind: mux-kill}, at: 5, duration: 8}
    decide: [MF-1, MF-2, MF-3, MF-4]

Timing: ``at`` is seconds from the start of the traffic; ``after: ID`` starts when that action
ended (its fault reverted, or its invoke returned for a fault that is not lasting), plus
``delay``. ``duration`` holds a lasting fault that long after its invoke returned, then reverts
it; a lasting fault without one stays until the rollback phase. Every fault invoked is reverted
whatever happens (:mod:`dsrconform.chaos.runner`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from dsrconform import spec
from dsrconform.chaos.fault import Fault
from dsrconform.chaos.kinds import AnyFault
from dsrconform.chaos.mixes import MIXES, mix_fields
from dsrconform.chaos.schedule import Timed
from dsrconform.errors import ConfigError
from dsrconform.topology import Mode

__all__ = ["MAX_ACTIONS", "MAX_SECONDS", "Action", "Probe", "Scenario", "SteadyState", "Traffic"]

MAX_SECONDS = 600.0
"""Longest offset, delay or duration a scenario may ask for."""
MAX_ACTIONS = 32
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)]


class Traffic(_Model):
    """The traffic mix that runs all along: a named mix and overrides of its fields."""

    mix: str = "chaos"
    """One of :data:`dsrconform.chaos.mixes.MIXES`."""
    overrides: dict[str, int | float | bool] = Field(default_factory=dict)
    """Fields of :class:`dsrconform.chaos.mixes.Mix` to change, e.g. ``{streams: 30}``."""


class Probe(_Model):
    """A check of the steady state: ``http`` (requests to a TCP service's ``/id`` from the first
    traffic client; at least ``min_success`` of them must succeed) or ``routes`` (every VIP has
    at least ``min_next_hops`` next hops at the border router)."""

    probe: Literal["http", "routes"]
    service: str | None = None
    requests: Annotated[int, Field(ge=1, le=200)] = 10
    min_success: Annotated[float, Field(ge=0, le=1)] = 1.0
    min_next_hops: Annotated[int, Field(ge=1, le=64)] = 1


class SteadyState(_Model):
    """The hypothesis: probes checked before the method (not met: no fault is injected), every
    ``during_every`` seconds while it runs (recorded, tolerance ``min_success``), and after the
    rollbacks (the lab is as it was)."""

    probes: list[Probe] = Field(default_factory=lambda: [Probe(probe="routes")], max_length=8)
    during_every: Annotated[float, Field(ge=1, le=MAX_SECONDS)] | None = None


class Action(_Model):
    """One entry of the method: a fault and when."""

    id: str | None = None
    fault: AnyFault
    at: Seconds | None = None
    after: str | None = None
    delay: Seconds = 0.0
    duration: Seconds | None = None
    revert_after: str | None = None
    """A lasting fault reverted once that action ended, plus ``revert_delay`` (instead of a
    ``duration``): a server added back 15 s after a MUX it overlapped came back."""
    revert_delay: Seconds = 0.0

    @model_validator(mode="after")
    def _timing(self) -> Action:
        if self.at is not None and self.after is not None:
            raise ValueError("both at and after given; fix: keep one of them")
        if self.after is None and self.delay:
            raise ValueError("delay counts from another action's end; fix: use at, or add after")
        if self.duration is not None and not self.faulty().lasting:
            raise ValueError(
                f"duration: a {self.fault.kind} fault ends by itself; fix: remove duration "
                "(or use its own length parameter, e.g. seconds)"
            )
        if self.revert_after is not None and self.duration is not None:
            raise ValueError("both duration and revert_after given; fix: keep one of them")
        if self.revert_after is not None and not self.faulty().lasting:
            raise ValueError(
                f"revert_after: a {self.fault.kind} fault ends by itself; fix: remove it"
            )
        if self.revert_after is None and self.revert_delay:
            raise ValueError("revert_delay counts from revert_after's end; fix: add revert_after")
        return self

    def lasts_until_rollback(self) -> bool:
        """Whether this action's fault stays applied until the rollback phase."""
        return self.faulty().lasting and self.duration is None and self.revert_after is None

    def faulty(self) -> Fault:
        fault: Fault = self.fault
        return fault

    def start(self) -> float:
        return self.at if self.at is not None else 0.0

    def timed(self, index: int) -> Timed:
        """This action for :func:`dsrconform.chaos.schedule.execute`."""
        return Timed(
            self.id or f"method[{index}]",
            self.faulty(),
            self.start(),
            self.after,
            self.delay,
            self.duration,
            self.revert_after,
            self.revert_delay,
        )


class Scenario(_Model):
    """A chaos scenario; the module's docstring explains each part."""

    name: str
    description: str = ""
    lab: str | None = None
    """The topology file, relative to the scenario file (or the working directory). A file must
    name one; None: the lab it is run on (the suites' scenarios run on the session's)."""
    mode: Mode | None = None
    target: str = "reference"
    target_options: dict[str, str] = Field(default_factory=dict)
    """The target's own settings (e.g. the reference stack's ``gateway: naive``)."""
    traffic: Traffic = Field(default_factory=Traffic)
    steady_state: SteadyState = Field(default_factory=SteadyState)
    method: Annotated[list[Action], Field(max_length=MAX_ACTIONS)]
    """The faults; none: the steady state alone."""
    decide: list[str] = Field(default_factory=list)
    """Requirement IDs judged on the run's observations at the end."""
    expect: dict[str, Literal["PASS", "FAIL", "UNKNOWN"]] = Field(default_factory=dict)
    """What the scenario is written to show, by requirement (its comment's promise, which the
    integration tests check)."""
    _source: Path | None = PrivateAttr(default=None)

    def problems(self) -> list[tuple[tuple[Any, ...], str]]:
        """Cross-references, each with the location it concerns (configfile reports them)."""
        out: list[tuple[tuple[Any, ...], str]] = []
        if not NAME.match(self.name):
            out.append((("name",), f"{self.name!r}: fix: lowercase letters, digits and '-'"))
        if self.traffic.mix not in MIXES:
            out.append(
                (
                    ("traffic", "mix"),
                    f"unknown mix {self.traffic.mix!r}; fix: one of {', '.join(MIXES)}",
                )
            )
        fields = mix_fields()
        for key in self.traffic.overrides:
            if key not in fields:
                out.append(
                    (
                        ("traffic", "overrides", key),
                        f"not a traffic mix field; fix: one of {', '.join(fields)}",
                    )
                )
        seen: dict[str, int] = {}
        for i, act in enumerate(self.method):
            if act.id is not None:
                if act.id in seen:
                    out.append(
                        (
                            ("method", i, "id"),
                            f"{act.id!r} is already the id of method[{seen[act.id]}]; "
                            "fix: a unique id",
                        )
                    )
                seen.setdefault(act.id, i)
            if act.after is not None and act.after not in seen:
                out.append(
                    (
                        ("method", i, "after"),
                        f"no earlier action has id {act.after!r}; fix: one of "
                        f"{', '.join(seen) or '(none: give an earlier action an id)'}",
                    )
                )
            elif act.after is not None:
                first = self.method[seen[act.after]]
                if first.lasts_until_rollback():
                    out.append(
                        (
                            ("method", i, "after"),
                            f"{act.after} lasts until the rollbacks, so nothing comes after it; "
                            f"fix: give {act.after} a duration",
                        )
                    )
        ids = {a.id: k for k, a in enumerate(self.method) if a.id is not None}
        for i, act in enumerate(self.method):
            ref = act.revert_after
            if ref is None:
                continue
            if ref not in ids or ids[ref] == i:
                out.append(
                    (
                        ("method", i, "revert_after"),
                        f"no other action has id {ref!r}; fix: one of "
                        f"{', '.join(k for k in ids if ids[k] != i) or '(none)'}",
                    )
                )
            elif self.method[ids[ref]].lasts_until_rollback():
                out.append(
                    (
                        ("method", i, "revert_after"),
                        f"{ref} lasts until the rollbacks; fix: give {ref} a duration",
                    )
                )
        cycle = self._cycle(ids)
        if cycle:
            out.append((("method",), f"the timing waits in a circle: {cycle}; fix: break it"))
        known = {r.id for r in spec.REQUIREMENTS}
        for i, rid in enumerate(self.decide):
            if rid not in known:
                out.append((("decide", i), f"unknown requirement {rid!r}; fix: see docs/SPEC.md"))
        for rid in self.expect:
            if rid not in self.decide:
                out.append((("expect", rid), f"{rid} is not decided; fix: add it to decide"))
        return out

    def _cycle(self, ids: dict[str, int]) -> str:
        """A circle of waits (an action starting after another that is reverted after it), as
        text, or "" (none)."""
        deps: dict[tuple[str, int], list[tuple[str, int]]] = {}
        for i, act in enumerate(self.method):
            deps[("start", i)] = [("end", ids[act.after])] if act.after in ids else []
            deps[("end", i)] = [("start", i)]
            if act.revert_after in ids:
                deps[("end", i)].append(("end", ids[act.revert_after]))
        state: dict[tuple[str, int], int] = {}
        path: list[tuple[str, int]] = []

        def visit(node: tuple[str, int]) -> bool:
            state[node] = 1
            path.append(node)
            for nxt in deps.get(node, []):
                if state.get(nxt) == 1 or (nxt not in state and visit(nxt)):
                    return True
            state[node] = 2
            path.pop()
            return False

        for node in deps:
            if node not in state and visit(node):
                names = [self.method[i].id or f"method[{i}]" for _, i in path]
                return " -> ".join(
                    f"{what} of {n}" for (what, _), n in zip(path, names, strict=True)
                )
        return ""

    def lab_path(self) -> Path:
        """The topology file; ConfigError for a scenario that names none."""
        if self.lab is None:
            raise ConfigError(f"scenario {self.name} names no lab; fix: lab: <topology file>")
        p = Path(self.lab)
        if not p.is_absolute() and self._source is not None:
            beside = self._source.parent / p
            if beside.exists() or not p.exists():
                return beside
        return p
