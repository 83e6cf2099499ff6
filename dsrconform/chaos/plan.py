"""Loading a scenario and planning its timeline, without a lab.

:func:`load_scenario` reads a scenario file (errors name file, line, field and fix, exit 2) and
checks it against its topology: every fault plans its steps there, so an unknown node or a MUX
whose failure would take a service down is refused before anything is created.
:func:`plan_scenario` turns the method into a timeline: each action's planned start and end
(seconds from the start of the traffic), its steps, which actions overlap, and warnings (a fault
planned after the traffic has ended decides nothing). Times after a step that waits for the lab
(a route withdrawal) are lower bounds, marked ``>=``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dsrconform.chaos.fault import Step
from dsrconform.chaos.mixes import mix_for
from dsrconform.chaos.scenario import Scenario
from dsrconform.configfile import _line_of, _loc_str, load_model
from dsrconform.errors import ConfigError
from dsrconform.topofile import load_topology
from dsrconform.topology import Topology

__all__ = ["Plan", "PlannedAction", "load_scenario", "plan_scenario", "traffic_seconds"]


@dataclass(frozen=True)
class PlannedAction:
    index: int
    name: str
    """The action's id, else ``method[i]``."""
    fault: str
    """The fault's one-line description."""
    start: float
    end: float | None
    """None: reverted in the rollback phase."""
    start_bound: bool
    """True when start is a lower bound: an action it follows waits for the lab."""
    end_bound: bool
    """True when end is a lower bound (its invoke waits for the lab, or its start is one)."""
    steps: tuple[Step, ...]


@dataclass
class Plan:
    scenario: Scenario
    actions: list[PlannedAction]
    overlaps: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    setup: list[tuple[str, Step]] = field(default_factory=list)
    """Steps that run before the traffic starts (a scale-out's server taken out first)."""

    def lines(self) -> list[str]:
        """The timeline as printable lines."""
        out = [f"scenario {self.scenario.name}: {len(self.actions)} actions"]
        for name, step in self.setup:
            out.append(f"  before traffic  [{name}] {step}")
        for a in sorted(self.actions, key=lambda a: (a.start, a.index)):
            ge, ge_end = (">=" if a.start_bound else ""), (">=" if a.end_bound else "")
            end = "rollback" if a.end is None else f"{ge_end}{a.end:.1f} s"
            out.append(f"  {ge:>2}{a.start:6.1f} s .. {end:<10} [{a.name}] {a.fault}")
            out += [f"      {s}" for s in a.steps if s.phase != "setup"]
        for first, second in self.overlaps:
            out.append(f"  overlap: {first} and {second}")
        out.append("  rollbacks: every fault still applied is reverted, the last invoked first")
        out += [f"  warning: {w}" for w in self.warnings]
        return out


def load_scenario(path: str | Path) -> tuple[Scenario, Topology]:
    """The scenario in ``path`` and its topology; ConfigError naming file, line, field and fix
    for anything wrong, the topology's own problems and every fault's plan included."""
    p = Path(path)
    scn = load_model(p, Scenario)
    scn._source = p.resolve()
    if scn.lab is None:
        raise ConfigError(f"{p}: lab: a scenario file names its lab; fix: lab: ../basic.yaml")
    lab = scn.lab_path()
    try:
        topo = load_topology(lab, mode=scn.mode)
    except ConfigError as e:
        raise ConfigError(f"{p}: lab: {lab}: {e}") from None
    problems = fault_problems(scn, topo)
    if problems:
        import yaml

        tree = yaml.compose(p.read_text())
        lines = []
        for loc, msg in problems:
            line = _line_of(tree, loc)
            lines.append(f"{p}:{line}: {_loc_str(loc)}: {msg}" if line else f"{p}: {msg}")
        raise ConfigError("\n".join(lines))
    return scn, topo


def fault_problems(scn: Scenario, topo: Topology) -> list[tuple[tuple[object, ...], str]]:
    """Each fault's plan against ``topo``: the ConfigErrors, located at the fault."""
    out: list[tuple[tuple[object, ...], str]] = []
    for i, act in enumerate(scn.method):
        try:
            act.faulty().plan(topo)
        except ConfigError as e:
            out.append((("method", i, "fault"), str(e)))
    return out


def traffic_seconds(scn: Scenario) -> float:
    """About how long the scenario's traffic keeps flows open (its longest stream, or its new
    connections, whichever lasts longer)."""
    mix = mix_for(scn.traffic.mix, scn.traffic.overrides, seed=1)
    streams = mix.stream_bytes / mix.stream_rate if mix.streams else 0.0
    shorts = mix.short_conns / mix.short_rate if mix.short_conns else 0.0
    return min(mix.deadline, max(streams, shorts))


def plan_scenario(scn: Scenario, topo: Topology) -> Plan:
    """The planned timeline (pure: no lab, no clock). ConfigError for a scenario whose
    cross-references do not hold (one built in Python skips the file's checks)."""
    problems = scn.problems()
    if problems:
        raise ConfigError("; ".join(f"{_loc_str(loc)}: {msg}" for loc, msg in problems))
    actions: list[PlannedAction] = []
    plan = Plan(scn, actions)
    ids = {a.id: k for k, a in enumerate(scn.method) if a.id is not None}
    steps = [act.faulty().plan(topo) for act in scn.method]
    memo: dict[int, tuple[float, bool, float | None, bool]] = {}

    def times(i: int) -> tuple[float, bool, float | None, bool]:
        """(start, start is a lower bound, end or None: the rollbacks, end is a bound); no
        circle: problems() refused those."""
        if i in memo:
            return memo[i]
        act, fault = scn.method[i], scn.method[i].faulty()
        bound = False
        if act.after is not None:
            _, _, end, bound = times(ids[act.after])
            assert end is not None  # problems() refused an after on a fault until rollback
            start = end + act.delay
        else:
            start = act.start()
        end_bound = bound or any(s.waits for s in steps[i] if s.phase == "invoke")
        invoked = start + fault.expected_seconds()
        end_at: float | None = invoked
        if act.revert_after is not None:
            _, _, ref_end, ref_bound = times(ids[act.revert_after])
            assert ref_end is not None
            end_at, end_bound = max(invoked, ref_end + act.revert_delay), end_bound or ref_bound
        elif fault.lasting:
            end_at = None if act.duration is None else invoked + act.duration
        memo[i] = (start, bound, end_at, end_bound)
        return memo[i]

    for i, act in enumerate(scn.method):
        name = act.id or f"method[{i}]"
        plan.setup += [(name, s) for s in steps[i] if s.phase == "setup"]
        start, bound, end_at, end_bound = times(i)
        actions.append(
            PlannedAction(
                i, name, act.faulty().describe(), start, end_at, bound, end_bound, tuple(steps[i])
            )
        )
    for j, a in enumerate(actions):
        for b in actions[j + 1 :]:
            a_end = float("inf") if a.end is None else a.end
            b_end = float("inf") if b.end is None else b.end
            if a.start < b_end and b.start < a_end:
                plan.overlaps.append((a.name, b.name))
    span = traffic_seconds(scn)
    for a in actions:
        if a.start >= span:
            plan.warnings.append(
                f"{a.name} starts at {a.start:.1f} s, after the {scn.traffic.mix} mix's traffic "
                f"(~{span:.0f} s): no flow sees it; fix: an earlier time or a longer mix"
            )
    return plan
