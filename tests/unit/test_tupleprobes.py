"""Tuple probes and the scenarios' schedules, without a lab: where the probes come from, their
sender's lifecycle, a change that cannot be probed, a drain that follows a flood's end."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dsrconform.chaos.library import probed
from dsrconform.errors import ConfigError
from dsrconform.observe.observations import FaultWindow, LabFacts
from dsrconform.topofile import load_topology
from dsrconform.traffic.synflood import check_flood_args
from dsrconform.traffic.tupleprobes import probe_net, probing
from tests.waiting import wait_for

BASIC = Path(__file__).resolve().parents[2] / "labs" / "basic.yaml"
DUAL = BASIC.with_name("dual.yaml")


def test_probes_come_from_the_second_black_holed_network() -> None:
    topo = load_topology(BASIC)
    assert probe_net(topo) == "198.18.208.0/21"
    facts = LabFacts.from_topology(topo)
    assert facts.probe_networks == ["198.18.208.0/21"]
    assert facts.is_probe("198.18.215.255") and facts.is_client("198.18.215.255")
    assert not facts.is_probe("198.18.200.1") and not facts.is_probe("198.18.1.2")


def test_a_lab_without_a_probe_network_says_which_field_to_fix() -> None:
    topo = load_topology(BASIC).model_copy(update={"blackhole": ["198.18.200.0/21"]})
    with pytest.raises(
        ConfigError, match=r"lab basic: .*second black-holed ipv4 network .*'blackhole'"
    ):
        probe_net(topo)
    assert not LabFacts.from_topology(topo).is_probe("198.18.208.1")


def test_ipv6_probes_come_from_the_ipv6_probe_network() -> None:
    """A dual-stack lab black-holes 2001:2:0:300::/56 for the probes toward its IPv6 VIPs (the
    IPv4 one cannot be their source: the first IPv6 run's SC-4 was UNKNOWN for that)."""
    topo = load_topology(DUAL)
    assert probe_net(topo) == "198.18.208.0/21"
    assert probe_net(topo, "ipv6") == "2001:2:0:300::/56" in topo.blackhole
    facts = LabFacts.from_topology(topo)
    assert facts.probe_networks == ["198.18.208.0/21", "2001:2:0:300::/56"]
    assert facts.is_probe("2001:2:0:300::7ff") and facts.is_client("2001:2:0:300::7ff")
    assert facts.is_probe("198.18.208.1")
    assert not facts.is_probe("2001:2:0:200::1") and not facts.is_probe("2001:2:0:1::2")


def test_probing_an_ipv6_vip_sends_flood_arguments_the_flood_accepts(monkeypatch: Any) -> None:
    from dsrconform.traffic import tupleprobes

    fake = FakeSender()
    monkeypatch.setattr(tupleprobes, "lab_flood", fake)
    lab = SimpleNamespace(topology=load_topology(DUAL))
    with probing(lab, vip="2001:2:0:100::10", port=80) as run:
        assert fake.kw["src_net"] == "2001:2:0:300::/56" and fake.kw["repeat"] == 2048
    assert run.error is None and run.detail()["probe_net"] == "2001:2:0:300::/56"
    kw = {k: fake.kw[k] for k in ("vip", "port", "src_net", "rate", "count", "duration")}
    kw |= {"repeat": fake.kw["repeat"], "sport_base": fake.kw["sport_base"]}
    net = check_flood_args("dsrc-dual-flood", "dsrc-router", **kw)
    assert str(net) == "2001:2:0:300::/56"


def test_an_ipv6_vip_without_an_ipv6_probe_network_is_not_probed() -> None:
    topo = load_topology(DUAL).model_copy(
        update={"blackhole": ["198.18.200.0/21", "198.18.208.0/21", "2001:2:0:200::/56"]}
    )
    with pytest.raises(ConfigError, match=r"second black-holed ipv6 network .*2001:2:0:300::/56"):
        probe_net(topo, "ipv6")
    assert LabFacts.from_topology(topo).probe_networks == ["198.18.208.0/21"]
    with (
        pytest.raises(ConfigError),
        probing(SimpleNamespace(topology=topo), vip="2001:2:0:100::10", port=80),
    ):
        pass


def test_too_many_probe_flows_for_the_network_is_refused_before_sending() -> None:
    lab = SimpleNamespace(topology=load_topology(BASIC))
    want = re.escape("4096 flows from 198.18.208.0/21: expected 1..2048")
    with (
        pytest.raises(ConfigError, match=want),
        probing(lab, vip="198.19.0.10", port=80, flows=4096),
    ):
        pass


def test_an_unprobed_change_still_happens_and_says_why() -> None:
    topo = load_topology(BASIC).model_copy(update={"blackhole": ["198.18.200.0/21"]})
    said: list[str] = []
    window = FaultWindow(kind="backend-add", start=1.0, end=2.0)
    svc = topo.services[0]
    out = probed(SimpleNamespace(topology=topo), said.append, svc, lambda: [window])
    assert out == [window]
    assert len(said) == 1 and said[0].startswith("change not probed: lab basic:")


class FakeSender:
    """Stands in for lab_flood: starts (progress), then sends until told to stop."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail, self.kw, self.stopped = fail, {}, False

    def __call__(self, lab: object, **kw: object) -> Any:
        self.kw = kw
        if self.fail:
            raise RuntimeError("no live frames here")
        kw["progress"](0.0)  # type: ignore[operator]
        self.stopped = kw["stop"].wait(10)  # type: ignore[attr-defined]
        return SimpleNamespace(delivered_pps=49_000.04, engine="af-packet")


def test_probing_sends_repeated_tuples_until_the_block_ends(monkeypatch: Any) -> None:
    from dsrconform.traffic import tupleprobes

    fake = FakeSender()
    monkeypatch.setattr(tupleprobes, "lab_flood", fake)
    lab = SimpleNamespace(topology=load_topology(BASIC))
    with probing(lab, vip="198.19.0.10", port=80) as first:
        assert fake.kw["repeat"] == 2048 and fake.kw["src_net"] == "198.18.208.0/21"
    assert fake.stopped and first.result is not None and first.error is None
    with probing(lab, vip="198.19.0.10", port=80) as second:
        pass
    assert second.sport == first.sport + 1, "every probe set is new to the stack"
    assert first.detail() == {
        "probe_net": "198.18.208.0/21",
        "probe_sport": first.sport,
        "probe_pps": 49_000.0,
        "probe_engine": "af-packet",
    }


def test_a_failing_sender_or_body_leaves_nothing_running(monkeypatch: Any) -> None:
    from dsrconform.traffic import tupleprobes

    lab = SimpleNamespace(topology=load_topology(BASIC))
    monkeypatch.setattr(tupleprobes, "lab_flood", FakeSender(fail=True))
    with probing(lab, vip="198.19.0.10", port=80) as run:
        pass  # the change goes on
    assert run.error == "RuntimeError: no live frames here" and run.result is None
    # What the change's window records: the checkers report this error (SC-2, SC-4 UNKNOWN).
    assert run.detail()["probe_error"] == "RuntimeError: no live frames here"
    fake = FakeSender()
    monkeypatch.setattr(tupleprobes, "lab_flood", fake)
    with pytest.raises(KeyError), probing(lab, vip="198.19.0.10", port=80):
        raise KeyError("the change failed")
    assert fake.stopped, "the sender was stopped and joined"
    assert not [t for t in threading.enumerate() if t.name.startswith("dsrc-probes")]


def test_the_drain_follows_the_flood_s_end_not_its_sender_s_wind_down(monkeypatch: Any) -> None:
    """The syn-flood scenario: the drain (after the flood) starts when the flood's time is up,
    though the sender took long to return (seen once on a loaded machine: 7 s)."""
    from dsrconform.chaos.schedule import Journal, execute
    from dsrconform.chaos.suite import SCENARIOS
    from dsrconform.traffic import synflood

    returned = threading.Event()
    changes: list[tuple[list[str], bool]] = []

    def slow_flood(lab: object, **kw: Any) -> Any:
        kw["progress"](1.0)  # the flood's time is up ...
        wait_for(lambda: bool(changes), 5.0, "the drain")
        returned.set()  # ... and only now does the sender return
        window = FaultWindow(kind="syn-flood", start=0.0, end=1.0, rate=1.0)
        return SimpleNamespace(fault_window=lambda: window)

    class Deployment:
        sets = {"active": ["server1", "server2", "server3"], "draining": []}

        def backends(self, name: str) -> dict[str, list[str]]:
            return {k: list(v) for k, v in self.sets.items()}

    dep = Deployment()

    def set_backends(name: str, active: list[str], draining: tuple[str, ...] = ()) -> Any:
        changes.append((list(active), returned.is_set()))
        before = dep.backends(name)
        dep.sets = {"active": list(active), "draining": list(draining)}
        return before, dep.backends(name)

    monkeypatch.setattr(synflood, "lab_flood", slow_flood)
    lab: Any = SimpleNamespace(
        topology=load_topology(BASIC), deployment=dep, set_backends=set_backends, name="t"
    )
    flood, drain = SCENARIOS["syn-flood"].method
    timed = [
        flood.model_copy(update={"at": 0.0}).timed(0),
        drain.model_copy(update={"delay": 0.0, "duration": 0.0}).timed(1),
    ]
    out = execute(lab, timed, Journal(), lambda _msg: None)
    assert out.ok, out.errors
    assert changes[0] == (["server1", "server2"], False), "drained before the sender returned"
    assert {w.kind for w in out.windows} >= {"syn-flood", "backend-drain"}
