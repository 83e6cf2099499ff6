"""SUT counters through the target protocol: snapshots, the background sampler, deltas, the
monotonic bookkeeping a target adapter uses, and the reference deployment's counters() over
fake BPF objects (pure Python, no privileges)."""

from __future__ import annotations

import itertools
import json
import re
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dsrconform.errors import ConfigError, DsrConformError
from dsrconform.observe.counters import (
    CounterCarry,
    CounterSampler,
    counter_decreases,
    counter_deltas,
    snapshot,
    validate_counters,
)
from dsrconform.observe.taps import CounterSnapshot, load_counters_jsonl
from dsrconform.target import Deployment
from dsrconform.topofile import load_topology

BASIC = Path(__file__).resolve().parents[2] / "labs" / "basic.yaml"
WAIT = 10.0  # deadline for conditions the sampler thread must reach (it reaches them in ms)


class FakeDeployment:
    """Counters that grow by one per read; ``fail_at`` makes that read raise; ``reached`` is set
    once ``signal_at`` reads were made."""

    def __init__(self, *, fail_at: int | None = None, signal_at: int = 3) -> None:
        self.reads = 0
        self.fail_at, self.signal_at = fail_at, signal_at
        self.reached = threading.Event()
        self.lock = threading.Lock()

    def counters(self) -> dict[str, dict[str, int]]:
        with self.lock:
            self.reads += 1
            n = self.reads
        if n >= self.signal_at:
            self.reached.set()
        if self.fail_at is not None and n >= self.fail_at:
            raise RuntimeError("map fd gone")
        return {"mux1": {"tx": 10 * n, "pass": n}, "server1": {"decap": 2 * n}}


# --- snapshot and validation --------------------------------------------------------------------


def test_snapshot_is_timed_at_the_middle_of_the_read() -> None:
    clock = iter([10.0, 10.5])
    snap = snapshot(FakeDeployment(), clock=lambda: next(clock))
    assert snap.t == 10.25
    assert snap.components == {"mux1": {"tx": 10, "pass": 1}, "server1": {"decap": 2}}
    assert snap.kind == "counters"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"mux1": {"tx": 1.5}}, "mux1.tx = 1.5"),
        ({"mux1": {"tx": True}}, "mux1.tx = True"),
        ({"mux1": {"tx": -1}}, "mux1.tx = -1"),
        ({"mux1": {3: 1}}, "counter name 3"),
        ({"": {"tx": 1}}, "component name ''"),
        ({"mux1": [1, 2]}, "maps to list"),
        ([("mux1", {})], "not a mapping"),
    ],
)
def test_bad_counters_are_refused_naming_the_entry(raw: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        validate_counters(raw)


def test_deltas_and_decreases() -> None:
    a = CounterSnapshot(t=1, components={"mux1": {"tx": 10, "pass": 5}, "mux2": {"tx": 1}})
    b = CounterSnapshot(t=2, components={"mux1": {"tx": 25, "pass": 4, "new": 3}})
    assert counter_deltas(a, b) == {"mux1": {"tx": 15, "pass": -1, "new": 3}}
    assert counter_decreases(a, b) == [
        "mux1.pass went down from 5 to 4",
        "component mux2 disappeared",
    ]
    assert counter_decreases(a, a) == []


def test_deployment_protocol_documents_counters() -> None:
    doc = getattr(Deployment, "counters", None).__doc__ or ""
    assert "never decrease" in doc and "absent" in doc and "stable" in doc


# --- carry-over across restarts -----------------------------------------------------------------


def test_carry_keeps_counters_monotonic_across_a_retired_instance() -> None:
    c = CounterCarry()
    assert c.report({"mux1": {"tx": 100, "pass": 7}}) == {"mux1": {"tx": 100, "pass": 7}}
    c.retire("mux1", {"tx": 120, "pass": 9})  # the old instance's final values
    assert c.report({"mux1": {"tx": 0, "pass": 0}}) == {"mux1": {"tx": 120, "pass": 9}}
    assert c.report({"mux1": {"tx": 5, "pass": 1}}) == {"mux1": {"tx": 125, "pass": 10}}


def test_carry_absorbs_an_unannounced_reset_and_keeps_vanished_names() -> None:
    c = CounterCarry()
    c.report({"mux1": {"tx": 50, "vip_packets[a]": 8}, "server1": {"decap": 3}})
    out = c.report({"mux1": {"tx": 4}})  # reset; a VIP and a component went away
    assert out == {"mux1": {"tx": 50, "vip_packets[a]": 8}, "server1": {"decap": 3}}
    assert c.report({"mux1": {"tx": 10, "vip_packets[a]": 2}})["mux1"] == {
        "tx": 56,
        "vip_packets[a]": 8,  # came back lower: resumes from its last value
    }


# --- the sampler --------------------------------------------------------------------------------


def test_sampler_writes_every_snapshot_and_a_final_one(tmp_path: Path) -> None:
    dep = FakeDeployment(signal_at=4)
    path = tmp_path / "counters.jsonl"
    with CounterSampler(dep, path, interval=0.005) as s:
        assert dep.reached.wait(WAIT), "the sampler did not sample periodically"
    assert not s.running
    written = load_counters_jsonl(path)
    assert written == s.snapshots
    assert len(written) == dep.reads >= 5  # at least 4 periodic + the final one
    times = [w.t for w in written]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert [w.components["mux1"]["pass"] for w in written] == list(range(1, dep.reads + 1))


def test_sampler_is_bounded_by_max_samples(tmp_path: Path) -> None:
    dep = FakeDeployment()
    s = CounterSampler(dep, tmp_path / "c.jsonl", interval=0.001, max_samples=3, final=False)
    s.start()
    assert s.wait(WAIT), "the sampler kept running past max_samples"
    assert s.stop() == 3 and dep.reads == 3
    assert len((tmp_path / "c.jsonl").read_text().splitlines()) == 3


def test_sampler_keeps_room_for_the_final_snapshot(tmp_path: Path) -> None:
    dep = FakeDeployment(signal_at=2)
    s = CounterSampler(dep, tmp_path / "c.jsonl", interval=0.001, max_samples=3).start()
    assert dep.reached.wait(WAIT)
    assert s.running, "the sampler ended before its final snapshot"
    assert s.stop() == 3 and dep.reads == 3


def test_sampler_is_bounded_in_time_with_a_final_snapshot_at_the_bound(tmp_path: Path) -> None:
    dep = FakeDeployment()
    s = CounterSampler(dep, tmp_path / "c.jsonl", interval=0.01, max_seconds=0.1).start()
    assert s.wait(WAIT), "the sampler kept running past max_seconds"
    n = s.stop()
    first, last = s.snapshots[0], s.snapshots[-1]
    assert last.t - first.t >= 0.1 - 0.01  # the final one at the bound (t is mid-read)
    assert 2 <= n <= 0.1 / 0.01 + 2


def test_sampler_stops_at_once_on_stop(tmp_path: Path) -> None:
    dep = FakeDeployment(signal_at=1)
    s = CounterSampler(dep, tmp_path / "c.jsonl", interval=3600.0).start()
    assert dep.reached.wait(WAIT)
    stopped = threading.Event()
    threading.Thread(target=lambda: (s.stop(), stopped.set()), daemon=True).start()
    assert stopped.wait(WAIT), "stop() waited for the next tick instead of waking the thread"
    assert [x.components["mux1"]["pass"] for x in s.snapshots] == [1, 2]


def test_sampler_reports_a_failed_read(tmp_path: Path) -> None:
    dep = FakeDeployment(fail_at=3)
    path = tmp_path / "c.jsonl"
    s = CounterSampler(dep, path, interval=0.001).start()
    assert s.wait(WAIT), "a failed read did not end sampling"
    with pytest.raises(DsrConformError, match=r"failed after 2 snapshots.*map fd gone"):
        s.stop()
    assert len(load_counters_jsonl(path)) == 2


def test_sampler_error_does_not_mask_an_exception_in_flight(tmp_path: Path) -> None:
    dep = FakeDeployment(fail_at=1)
    with pytest.raises(KeyError), CounterSampler(dep, tmp_path / "c.jsonl", interval=0.01) as s:
        assert s.wait(WAIT)
        raise KeyError("the caller's own failure")
    assert isinstance(s.error, RuntimeError)


@pytest.mark.parametrize(
    "kwargs", [{"interval": 0}, {"max_samples": 0}, {"max_seconds": -1.0}, {"interval": -1}]
)
def test_sampler_refuses_unbounded_or_bad_settings(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        CounterSampler(FakeDeployment(), tmp_path / "c.jsonl", **kwargs)


# --- the reference deployment's counters() over fake BPF objects ---------------------------------


class FakeMux:
    """A MuxProgram stand-in: stats() as the real one returns them."""

    def __init__(self, scale: int) -> None:
        self.scale, self.closed = scale, False

    def stats(self) -> Any:
        from reference_impl.mux import GLOBAL_STATS, MuxStats

        g = {n: self.scale * (i + 1) for i, n in enumerate(GLOBAL_STATS)}
        g["tx"] = 3 * self.scale
        return MuxStats(
            globals=g,
            vips={("198.19.0.10", 80, 6): (2 * self.scale, 200), ("198.19.0.11", 7, 17): (1, 50)},
            backends={"198.18.20.1": (3 * self.scale, 300)},
        )

    def close(self) -> None:
        self.closed = True


class FakeAgent:
    def __init__(self, stats: dict[str, int]) -> None:
        self._stats = stats

    def stats(self) -> dict[str, int]:
        return dict(self._stats)

    def close(self) -> None:
        pass


def fake_deployment(tmp_path: Path) -> Any:
    from reference_impl.deploy import ReferenceDeployment

    topo = load_topology(BASIC, mode="gateway-nat")
    lab = SimpleNamespace(name="t", topology=topo, dir=tmp_path, python="python3",
                          netns=lambda n: f"dsrc-t.{n}")  # fmt: skip
    dep = ReferenceDeployment(lab, None)  # type: ignore[arg-type]
    dep.muxes = {"mux1": FakeMux(10), "mux2": FakeMux(1)}
    dep.agents = {"server1": FakeAgent({"decap": 7, "pass": 1})}
    dep.gateway = FakeAgent({"gw_rewrite": 4, "pass": 2})
    return dep


def test_reference_counters_name_every_statistic(tmp_path: Path) -> None:
    from reference_impl.mux import GLOBAL_STATS

    dep = fake_deployment(tmp_path)
    snap = snapshot(dep)
    mux1 = snap.components["mux1"]
    assert set(GLOBAL_STATS) | {"tx"} <= set(mux1)
    assert mux1["lru_hit"] == 20 and mux1["tx"] == 30 and snap.components["mux2"]["tx"] == 3
    assert mux1["vip_packets[198.19.0.10:80/tcp]"] == 20
    assert mux1["vip_bytes[198.19.0.11:7/udp]"] == 50
    assert mux1["backend_packets[198.18.20.1]"] == 30
    assert mux1["backend_bytes[198.18.20.1]"] == 300
    assert snap.components["server1"] == {"decap": 7, "pass": 1}
    assert snap.components["gw"] == {"gw_rewrite": 4, "pass": 2}
    assert set(snap.components) == {"mux1", "mux2", "server1", "gw"}  # absent: no agent, no gw
    json.loads(snap.model_dump_json())


def test_reference_counters_survive_a_mux_restart(tmp_path: Path, monkeypatch: Any) -> None:
    dep = fake_deployment(tmp_path)
    before = snapshot(dep)
    old = dep.muxes["mux1"]
    monkeypatch.setattr(dep, "_mux", lambda node: dep.muxes.__setitem__(node, FakeMux(0)))
    dep.restart("mux1")
    assert old.closed and dep.muxes["mux1"] is not old
    after = snapshot(dep)
    assert counter_decreases(before, after) == []
    assert after.components["mux1"]["tx"] == 30  # carried over from the closed instance
    dep.muxes["mux1"].scale = 2  # the new instance counts on
    assert snapshot(dep).components["mux1"]["tx"] == 36


def test_reference_counters_after_close_keep_the_last_values(tmp_path: Path) -> None:
    dep = fake_deployment(tmp_path)
    last = snapshot(dep)
    dep.close()
    assert dep.muxes == {} and dep.gateway is None
    assert snapshot(dep).components == last.components


def test_counters_read_concurrently_with_restarts_never_decrease(
    tmp_path: Path, monkeypatch: Any
) -> None:
    dep = fake_deployment(tmp_path)
    scales = itertools.count(0)
    monkeypatch.setattr(
        dep, "_mux", lambda node: dep.muxes.__setitem__(node, FakeMux(next(scales) % 3))
    )
    with CounterSampler(dep, tmp_path / "c.jsonl", interval=0.0005) as s:
        for _ in range(50):
            dep.restart("mux1")
    snaps = s.snapshots
    assert len(snaps) >= 2
    for a, b in itertools.pairwise(snaps):
        assert counter_decreases(a, b) == []
