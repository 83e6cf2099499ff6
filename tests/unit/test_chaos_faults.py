"""Faults of the library on a lab whose backend sets change in memory (no privileges): the
windows they record, what revert restores, and the suites' scenarios planned on a lab."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from dsrconform.chaos.kinds import fault_from
from dsrconform.chaos.plan import plan_scenario
from dsrconform.chaos.suite import SCENARIOS, STEADY_REQUIREMENTS, about, cases
from dsrconform.errors import ConfigError
from dsrconform.topofile import load_topology

ROOT = Path(__file__).resolve().parents[2]
BASIC = ROOT / "labs" / "basic.yaml"
STOP = threading.Event()


class FakeBackends:
    """A lab whose services' backend sets change in memory."""

    def __init__(self) -> None:
        self.name = "fake"
        self.topology = load_topology(BASIC)
        self.sets = {
            s.name: {"active": list(self.topology.servers_of(s)), "draining": []}
            for s in self.topology.services
        }
        self.deployment = self

    def backends(self, name: str) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.sets[name].items()}

    def set_backends(
        self, name: str, active: list[str], *, draining: Any = ()
    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        before = self.backends(name)
        self.sets[name] = {"active": list(active), "draining": list(draining)}
        return before, self.backends(name)


def life(fault: Any, lab: FakeBackends) -> list[Any]:
    fault.setup(lab, lambda _m: None)
    fault.invoke(lab, lambda _m: None, STOP)
    fault.revert(lab, lambda _m: None)
    fault.revert(lab, lambda _m: None)  # idempotent: nothing more happens
    return fault.windows()


@pytest.mark.parametrize(
    ("params", "kinds"),
    [
        ({"kind": "server-remove"}, ["backend-remove", "backend-add"]),
        ({"kind": "server-drain"}, ["backend-drain", "backend-add"]),
        ({"kind": "server-drain", "server_index": 1}, ["backend-drain", "backend-add"]),
        ({"kind": "config-change", "active": ["server1"]}, ["backend-remove", "backend-add"]),
    ],
)
def test_a_backend_fault_records_its_change_and_restores_the_starting_sets(
    params: dict[str, Any], kinds: list[str]
) -> None:
    lab = FakeBackends()
    start = {k: dict(v) for k, v in lab.sets.items()}
    windows = life(fault_from(params), lab)
    assert [w.kind for w in windows] == kinds
    assert lab.sets == start
    change, back = windows
    assert change.vip == back.vip == "198.19.0.10" and back.detail.get("revert")
    if change.kind == "backend-drain":
        assert change.end == back.start  # the drain lasts until the server is back
        assert change.target == back.target
    if "server_index" in params:
        assert change.target == "server2"


def test_a_drain_of_every_service_drains_the_server_wherever_it_serves() -> None:
    lab = FakeBackends()
    windows = life(fault_from({"kind": "server-drain", "every_service": True}), lab)
    drains = [w for w in windows if w.kind == "backend-drain"]
    services = [w.detail["service"] for w in drains]
    assert services == ["web", "echo", "edge", "webudp"]  # every service server3 runs
    assert all(w.target == "server3" for w in drains)
    for w in drains:  # each ends when its own service's sets came back
        (back,) = [
            b
            for b in windows
            if b.kind == "backend-add" and b.detail["service"] == w.detail["service"]
        ]
        assert w.end == back.start


def test_a_removal_that_leaves_no_server_or_a_bad_index_is_refused_at_planning() -> None:
    topo = load_topology(BASIC)
    with pytest.raises(ConfigError, match="fix: an index from -3 to 2"):
        fault_from({"kind": "server-drain", "server_index": 3}).plan(topo)
    with pytest.raises(ConfigError, match="keep one of them"):
        fault_from({"kind": "server-drain", "server": "server1", "server_index": 0}).plan(topo)


def test_the_suites_scenarios_plan_on_the_basic_lab_and_decide_what_their_tests_judge() -> None:
    topo = load_topology(BASIC)
    for name, scn in SCENARIOS.items():
        assert scn.lab is None and scn.decide, name  # the session's lab
        plan = plan_scenario(scn, topo)
        assert not plan.warnings, (name, plan.warnings)
        assert about(scn).endswith(f"({', '.join(scn.decide)})")
    assert SCENARIOS["steady"].decide == STEADY_REQUIREMENTS and not SCENARIOS["steady"].method
    assert cases("mux-hang") == [("mux-hang", r) for r in ("MF-1", "MF-2", "MF-3", "AF-1", "AF-2")]
    # scale: the removal at ~5 s, back ~9 s; the drain ~13 s, back ~19 s (probes 0.8 s before)
    remove, drain = plan_scenario(SCENARIOS["scale"], topo).actions
    assert remove.start + 0.8 == pytest.approx(5.0) and drain.start + 0.8 == pytest.approx(13.0)
    # scale-mux-loss: the server is back 15 s after the MUX was
    loss = {a.name: a for a in plan_scenario(SCENARIOS["scale-mux-loss"], topo).actions}
    assert loss["remove"].end == pytest.approx((loss["kill"].end or 0) + 15)
