"""Randomised chaos (dsrconform.chaos.explore): schedules from a seed, and shrinking a failing one
to the minimal schedule, on synthetic predicates (no lab)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings

from dsrconform.chaos.explore import explore, palette, reproducer_yaml, schedules
from dsrconform.chaos.plan import load_scenario, plan_scenario
from dsrconform.chaos.scenario import Action, Scenario
from dsrconform.errors import ConfigError
from dsrconform.topofile import load_topology

ROOT = Path(__file__).resolve().parents[2]
BASIC = str(ROOT / "labs" / "basic.yaml")
TOPO = load_topology(BASIC)


def kinds(schedule: list[Action]) -> list[str]:
    return [a.faulty().kind for a in schedule]


@settings(max_examples=40, deadline=None)
@given(schedules(TOPO, max_faults=3, span=16))
def test_every_generated_schedule_plans_on_its_lab(schedule: list[Action]) -> None:
    assert 1 <= len(schedule) <= 3
    scn = Scenario(name="g", lab=BASIC, method=schedule)
    plan = plan_scenario(scn, TOPO)
    for a in plan.actions:
        assert 1 <= a.start <= 16
    for act in schedule:
        assert (act.duration is not None) == act.faulty().lasting


def test_the_palette_starts_with_the_simplest_faults() -> None:
    p = palette(TOPO)
    assert p[0]["kind"] == "server-drain" and p[1]["kind"] == "server-remove"
    assert {f["kind"] for f in p} >= {"mux-kill", "mux-hang", "mux-restart", "link-loss"}


def test_a_schedule_with_a_mux_kill_shrinks_to_that_kill_alone_at_the_earliest_time() -> None:
    def judge(schedule: list[Action]) -> list[str]:
        return ["MF-1"] if "mux-kill" in kinds(schedule) else []

    found = explore(TOPO, judge, budget=200, seed=3)
    assert found.requirement == "MF-1"
    assert found.minimal is not None
    (only,) = found.minimal
    assert only.faulty().kind == "mux-kill"
    assert (only.at, only.duration) == (1.0, 2.0)
    assert found.runs <= 200 and found.runs_to_first >= 1


def test_an_overlap_of_two_faults_shrinks_to_those_two() -> None:
    def judge(schedule: list[Action]) -> list[str]:
        spans = {a.faulty().kind: (a.start(), a.start() + (a.duration or 0)) for a in schedule}
        kill, drain = spans.get("mux-kill"), spans.get("server-drain")
        return ["SC-3"] if kill and drain and kill[0] < drain[1] and drain[0] < kill[1] else []

    found = explore(TOPO, judge, budget=300, seed=7)
    assert found.minimal is not None and found.requirement == "SC-3"
    assert sorted(kinds(found.minimal)) == ["mux-kill", "server-drain"]


def test_unknown_and_should_failures_are_not_violations() -> None:
    found = explore(TOPO, lambda _s: ["AF-3", "UNKNOWN-ish"], budget=20, seed=1)
    assert found.minimal is None and found.requirement is None and 1 <= found.runs <= 20


def test_the_budget_bounds_every_run_shrinking_included() -> None:
    calls = []

    def judge(schedule: list[Action]) -> list[str]:
        calls.append(schedule)
        return ["RW-1"] if sum(a.start() for a in schedule) > 20 else []

    found = explore(TOPO, judge, budget=5, seed=1)
    assert len(calls) == found.runs <= 5
    unlimited = explore(TOPO, judge, budget=500, seed=1)
    assert unlimited.runs > 5  # the search wanted more than the budget allowed
    with pytest.raises(ConfigError, match="at least 1"):
        explore(TOPO, judge, budget=0, seed=1)


def test_the_first_schedule_tried_is_the_simplest() -> None:
    found = explore(TOPO, lambda _s: ["RW-1"], budget=50, seed=1)
    assert found.runs == 1  # nothing simpler to shrink to
    assert found.minimal is not None and kinds(found.minimal) == ["server-drain"]


def test_the_same_seed_gives_the_same_search() -> None:
    def judge(schedule: list[Action]) -> list[str]:
        return ["MF-1"] if len(schedule) == 3 else []

    a = explore(TOPO, judge, budget=30, seed=11)
    b = explore(TOPO, judge, budget=30, seed=11)
    assert a.log == b.log


def test_the_reproducer_is_a_valid_scenario_file(tmp_path: Path) -> None:
    schedule = [Action(id="f1", fault={"kind": "mux-kill", "node": "mux2"}, at=1, duration=2)]
    scn = Scenario(
        name="found", lab=BASIC, method=schedule, decide=["MF-1"], expect={"MF-1": "FAIL"}
    )
    path = tmp_path / "found.yaml"
    path.write_text(reproducer_yaml(scn, how="found by chaos explore\nreproduce: ..."))
    assert path.read_text().startswith("# found by chaos explore\n# reproduce: ...\n")
    again, _ = load_scenario(path)
    assert again.method[0].faulty().describe() == "mux-kill(node=mux2)"
    assert again.expect == {"MF-1": "FAIL"}
