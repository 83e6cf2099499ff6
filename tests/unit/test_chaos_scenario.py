"""Chaos scenario files (dsrconform.chaos.scenario, .plan): parsing, every validation error with
file, line, field and fix, the planner's order and overlaps, and the shipped scenarios."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from dsrconform.chaos.cli import SCENARIO_DIR, scenario_schema, shipped_scenarios
from dsrconform.chaos.kinds import FAULT_CLASSES, fault_from
from dsrconform.chaos.library import ServerDrain
from dsrconform.chaos.muxfaults import MuxKill
from dsrconform.chaos.plan import load_scenario, plan_scenario
from dsrconform.chaos.scenario import Action, Scenario
from dsrconform.errors import ConfigError
from dsrconform.topofile import load_topology

ROOT = Path(__file__).resolve().parents[2]
BASIC = str(ROOT / "labs" / "basic.yaml")
MULTI = str(ROOT / "labs" / "multi-mux-nat.yaml")

GOOD = f"""\
name: t
lab: {BASIC}
traffic: {{mix: chaos}}
method:
  - {{id: kill, fault: {{kind: mux-kill}}, at: 5, duration: 8}}
  - {{fault: {{kind: server-drain}}, after: kill, delay: 2, duration: 4}}
decide: [MF-1, SC-3]
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as e:
        load_scenario(write(tmp_path, text))
    return str(e.value)


def test_a_good_file_loads_with_its_faults(tmp_path: Path) -> None:
    scn, topo = load_scenario(write(tmp_path, GOOD))
    assert isinstance(scn.method[0].fault, MuxKill)
    assert isinstance(scn.method[1].fault, ServerDrain)
    assert topo.name == "basic"


@pytest.mark.parametrize(
    ("text", "line", "field", "fix"),
    [
        (GOOD.replace("kind: mux-kill", "kind: mux-explode"), 5, "method[0].fault", "mux-kill"),
        (GOOD.replace("at: 5,", "at: -1,"), 5, "method[0].at", "greater than or equal"),
        (GOOD.replace("at: 5,", "at: 5, after: kill,"), 5, "method[0]", "fix: keep one"),
        (GOOD.replace("after: kill", "after: nope"), 6, "method[1].after", "fix: one of kill"),
        (GOOD.replace("id: kill,", "id: kill, bogus: 1,"), 5, "method[0].bogus", "not permitted"),
        (GOOD.replace("mix: chaos", "mix: storm"), 3, "traffic.mix", "fix: one of steady"),
        (GOOD.replace("SC-3", "XX-9"), 7, "decide[1]", "fix: see docs/SPEC.md"),
        (GOOD.replace("name: t", "name: Bad Name"), 1, "name", "fix: lowercase"),
        (
            GOOD.replace("{kind: mux-kill}", "{kind: mux-kill, node: server1}"),
            5,
            "method[0].fault",
            "fix: one of mux1, mux2",
        ),
        (
            GOOD.replace("{kind: server-drain}", "{kind: server-drain, service: nope}"),
            6,
            "method[1].fault",
            "fix: one of web",
        ),
        (
            GOOD.replace("{kind: server-drain}", "{kind: syn-flood}"),
            6,
            "method[1]",
            "fix: remove duration",
        ),
        (GOOD.replace("delay: 2,", "delay: 2, at: 3,"), 6, "method[1]", "keep one"),
        (GOOD + "expect: {RW-1: PASS}\n", 8, "expect.RW-1", "fix: add it to decide"),
        (
            GOOD.replace("traffic: {mix: chaos}", "traffic: {mix: chaos, overrides: {strams: 3}}"),
            3,
            "traffic.overrides.strams",
            "fix: one of streams",
        ),
    ],
)
def test_every_validation_error_names_file_line_field_and_fix(
    tmp_path: Path, text: str, line: int, field: str, fix: str
) -> None:
    msg = error_of(tmp_path, text)
    assert f"s.yaml:{line}: {field}" in msg
    assert fix in msg


def test_a_lab_file_that_is_missing_is_named(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace(BASIC, "nowhere.yaml"))
    assert "s.yaml: lab:" in msg and "nowhere.yaml" in msg


def test_not_yaml_and_duplicate_keys_are_refused(tmp_path: Path) -> None:
    assert "not valid YAML" in error_of(tmp_path, "name: [t\n")
    assert "defined twice" in error_of(tmp_path, GOOD + "name: u\n")


def test_after_an_action_that_lasts_until_the_rollbacks_is_refused(tmp_path: Path) -> None:
    msg = error_of(tmp_path, GOOD.replace("at: 5, duration: 8}", "at: 5}"))
    assert "s.yaml:6: method[1].after: kill lasts until the rollbacks" in msg
    assert "fix: give kill a duration" in msg


def test_a_scenario_built_in_python_is_checked_before_it_is_planned() -> None:
    scn = Scenario(name="p", lab=BASIC, method=[Action(fault=MuxKill(), after="nope")])
    with pytest.raises(ConfigError, match=r"method\[0\]\.after: no earlier action"):
        plan_scenario(scn, load_topology(BASIC))


def test_a_bad_fault_parameter_points_at_its_line_with_a_fix(tmp_path: Path) -> None:
    text = f"""\
name: t
lab: {BASIC}
method:
  - at: 5
    fault:
      kind: server-drain
      sevrer: server1
"""
    msg = error_of(tmp_path, text)
    assert "s.yaml:7: method[0].fault.server-drain.sevrer" in msg
    assert "fix: remove it, or check its spelling" in msg


def test_the_plan_orders_and_overlaps_actions_as_written() -> None:
    topo = load_topology(BASIC)
    scn = Scenario(
        name="p",
        lab=BASIC,
        method=[
            Action(id="late", fault=fault_from({"kind": "server-drain"}), at=20, duration=2),
            Action(id="kill", fault=MuxKill(), at=5, duration=8),
            Action(
                id="next",
                fault=fault_from({"kind": "server-remove"}),
                after="kill",
                delay=1,
                duration=3,
            ),
            Action(fault=fault_from({"kind": "syn-flood", "seconds": 10}), at=4),
        ],
    )
    plan = plan_scenario(scn, topo)
    by = {a.name: a for a in plan.actions}
    assert by["kill"].start == 5 and by["kill"].end == pytest.approx(5 + 1 + 8)
    assert by["kill"].end_bound and not by["kill"].start_bound  # waits for the withdrawal
    assert by["next"].start == pytest.approx(15) and by["next"].start_bound
    assert by["method[3]"].end == pytest.approx(14)
    assert ("kill", "method[3]") in plan.overlaps
    assert ("late", "kill") not in plan.overlaps and ("kill", "next") not in plan.overlaps
    starts = [m.group(1) for line in plan.lines() if (m := re.search(r"\[(\S+)\] ", line))]
    assert starts == ["method[3]", "kill", "next", "late"]


def test_a_fault_after_the_traffic_is_warned_about() -> None:
    topo = load_topology(BASIC)
    scn = Scenario(
        name="w",
        lab=BASIC,
        traffic={"mix": "quick"},
        method=[Action(fault=MuxKill(), at=50, duration=1)],
    )
    assert any("after the quick mix's traffic" in w for w in plan_scenario(scn, topo).warnings)


def test_every_fault_kind_plans_printable_steps_on_some_lab() -> None:
    params = {
        "config-change": {"active": ["server1"]},
        "agent-restart": {"server": "server2"},
        "link-loss": {"a": "router", "b": "mux1", "percent": 5},
        "partition": {"a": "router", "b": "mux1"},
        "cpu-starve": {"node": "mux1"},
        "server-move": {"server": "server2", "source": "weba", "destination": "webb"},
        "sequence": {"faults": [{"kind": "mux-restart", "node": "mux1"}], "gap": 1},
        "overlap": {"faults": [{"kind": "syn-flood", "service": "weba"}, {"kind": "mux-hang"}]},
    }
    for kind in FAULT_CLASSES:
        fault = fault_from({"kind": kind, **params.get(kind, {})})
        topo = load_topology(MULTI if kind in ("server-move", "overlap") else BASIC)
        if kind == "overlap":
            fault = fault_from(
                {
                    "kind": kind,
                    "faults": [{"kind": "syn-flood", "service": "weba"}, {"kind": "server-drain"}],
                }
            )
        steps = fault.plan(topo)
        assert steps and all(str(s) for s in steps), kind
        assert fault.describe().startswith(kind)


def test_shipped_scenarios_validate_and_say_what_they_show() -> None:
    files = shipped_scenarios()
    assert files and all(p.parent == SCENARIO_DIR for p in files)
    for path in files:
        scn, topo = load_scenario(path)
        plan = plan_scenario(scn, topo)
        assert not plan.warnings, (path, plan.warnings)
        assert path.read_text().startswith("# "), f"{path.name}: a comment saying what it shows"
        assert scn.decide and scn.expect, path.name


def test_the_scenario_schema_is_checked_in_and_accepts_the_shipped_files() -> None:
    schema = scenario_schema()
    assert json.loads((ROOT / "docs" / "scenario.schema.json").read_text()) == schema, (
        "docs/scenario.schema.json is stale; fix: dsrconform chaos schema > "
        "docs/scenario.schema.json"
    )
    for path in shipped_scenarios():
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_revert_after_is_checked_and_a_circle_of_waits_is_refused(tmp_path: Path) -> None:
    ok = GOOD.replace("at: 5, duration: 8}", "at: 5, revert_after: last, revert_delay: 2}")
    ok = ok.replace(
        "{fault: {kind: server-drain}, after: kill", "{id: last, fault: {kind: server-drain}, at: 6"
    )
    ok = ok.replace("delay: 2, duration: 4}", "duration: 4}")
    scn, topo = load_scenario(write(tmp_path, ok))
    kill, last = plan_scenario(scn, topo).actions
    assert kill.end == pytest.approx((last.end or 0) + 2)
    circle = GOOD.replace("at: 5, duration: 8}", "at: 5, revert_after: nope}")
    assert "s.yaml:5: method[0].revert_after: no other action has id 'nope'" in error_of(
        tmp_path, circle
    )
    loop = GOOD.replace("at: 5, duration: 8}", "at: 5, revert_after: d}").replace(
        "{fault: {kind: server-drain}, after: kill",
        "{id: d, fault: {kind: server-drain}, after: kill",
    )
    assert "the timing waits in a circle" in error_of(tmp_path, loop)
