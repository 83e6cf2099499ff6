"""The template adapter (examples/template_target/minimal.py) without root: it passes
``dsrconform target check``, refuses bad mutants, options and modes, packs its maps' C layouts
as bpf/*.bpf.c declares them, validates backend changes before touching anything, and carries
its counters over a restart. Its BPF programs run in tests/integration/test_template_bpf.py."""

from __future__ import annotations

import contextlib
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsrconform import cli
from dsrconform.errors import ConfigError
from dsrconform.target import load_target
from dsrconform.topofile import load_topology
from dsrconform.topology import Mode
from examples.template_target import minimal
from tests.unit.labfiles import BASIC

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAME = "template_target.minimal:MinimalTarget"


@pytest.fixture(autouse=True)
def examples_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(EXAMPLES))  # as a user runs it: PYTHONPATH=examples
    yield


class Speaker:
    def __init__(self) -> None:
        self.vips = {"198.19.0.10", "198.19.0.11"}

    def withdraw(self, vip: str) -> None:
        self.vips.discard(vip)


class FakeLab:
    def __init__(self, mode: Mode | None = None) -> None:
        self.topology = load_topology(BASIC, mode=mode) if mode else load_topology(BASIC)
        self.name = "t"
        self.speakers: dict[str, Speaker] = {}

    def bgp(self, mux: str) -> Speaker:
        return self.speakers.setdefault(mux, Speaker())


def test_the_template_passes_target_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["target", "check", NAME]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "PASS  Deployment (MinimalDeployment).close: method" in out


def test_unknown_mutants_options_and_modes_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown mutant 'nope'; fix: one of outer-tos-zero"):
        load_target(NAME, mutant="nope")
    with pytest.raises(ConfigError, match="hash='l7'; fix: one of l4, l3"):
        load_target(NAME, options={"hash": "l7"})
    with pytest.raises(ConfigError, match="unknown option 'seed'"):
        load_target(NAME, options={"seed": "1"})
    with pytest.raises(ConfigError, match="mode server-nat; fix: mode: encap"):
        minimal.MinimalTarget().deploy(FakeLab("server-nat"))  # type: ignore[arg-type]


def test_the_mutant_and_the_options_are_build_switches() -> None:
    assert minimal.MinimalTarget().defines() == {}
    both = minimal.MinimalTarget(mutant="outer-tos-zero", options={"hash": "l3"}).defines()
    assert both == {"MUTANT_OUTER_TOS_ZERO": 1, "HASH_L3": 1}
    mux_c = minimal.MUX_SOURCE.read_text()
    for define in both:
        assert f"#ifdef {define}" in mux_c  # the program knows every switch the adapter sets


def c_define(name: str) -> int:
    match = re.search(rf"#define {name} (\d+)", minimal.MUX_SOURCE.read_text())
    assert match is not None
    return int(match.group(1))


def test_the_map_layouts_match_the_c_structs() -> None:
    assert c_define("MAX_BACKENDS") == minimal.MAX_BACKENDS
    cfg = minimal.mux_config("198.18.10.1", "02:00:00:00:0a:01", "02:00:00:00:00:01")
    assert cfg == bytes([198, 18, 10, 1, 2, 0, 0, 0, 10, 1, 2, 0, 0, 0, 0, 1])
    # VIP, port in network order, protocol, pad: the key the program builds from a packet.
    assert minimal.service_key("198.19.0.10", 80, "udp") == bytes([198, 19, 0, 10, 0, 80, 17, 0])
    value = minimal.backends_value(["198.18.20.2", "198.18.20.1"])
    assert len(value) == 4 + 4 * minimal.MAX_BACKENDS
    assert value[:12] == struct.pack("<I", 2) + bytes([198, 18, 20, 2, 198, 18, 20, 1])
    assert value[12:] == bytes(len(value) - 12)
    for bad in ([], ["198.18.20.1"] * (minimal.MAX_BACKENDS + 1)):
        with pytest.raises(ConfigError, match="backends; fix: 1 to 64"):
            minimal.backends_value(bad)
    stats_c = minimal.MUX_SOURCE.read_text()
    for i, name in enumerate(minimal.MUX_STATS):
        assert f"STAT_{name.upper()} = {i}," in stats_c
    decap_c = minimal.DECAP_SOURCE.read_text()
    for i, name in enumerate(minimal.DECAP_STATS):
        assert f"STAT_{name.upper()} = {i}," in decap_c


def test_set_backends_validates_first_and_keeps_the_sets() -> None:
    dep = minimal.MinimalDeployment(FakeLab(), {})  # type: ignore[arg-type]
    assert dep.backends("echo") == {"active": ["server1", "server2", "server3"], "draining": []}
    dep.set_backends("echo", ["server2", "server1"], draining=["server3"])
    assert dep.backends("echo") == {"active": ["server1", "server2"], "draining": ["server3"]}
    for active, draining, why in [
        (["server9"], [], "no server 'server9' in lab t"),
        ([], [], "keep at least one server active"),
        (["server1"], ["server1"], "server1 listed as both active and draining"),
    ]:
        with pytest.raises(ConfigError, match=why):
            dep.set_backends("echo", active, draining=draining)
    with pytest.raises(ConfigError, match="unknown service 'nope'"):
        dep.set_backends("nope", ["server1"])
    assert dep.backends("echo")["active"] == ["server1", "server2"]  # nothing changed
    assert dep.backends("web")["active"] == ["server1", "server2", "server3"]  # untouched


class FakeMap:
    def __init__(self, counts: list[int]) -> None:
        self.counts = counts

    def lookup_percpu(self, key: bytes) -> list[bytes]:
        (i,) = struct.unpack("<I", key)
        return [struct.pack("<Q", self.counts[i]), struct.pack("<Q", 1)]  # two CPUs


class FakeObj:
    def __init__(self, counts: list[int]) -> None:
        self.stats, self.closed = FakeMap(counts), False

    def map(self, name: str) -> FakeMap:
        assert name in ("tpl_stats", "tpl_decap_stats")
        return self.stats

    def close(self) -> None:
        self.closed = True


def attach(dep: Any, node: str, counts: list[int], detached: list[str]) -> FakeObj:
    obj = FakeObj(counts)
    dep.nodes[node].attached = minimal.Attached(obj, node, 1, lambda i: detached.append(node))  # type: ignore[arg-type]
    return obj


def test_counters_sum_the_cpus_and_survive_a_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(minimal, "enter_netns", lambda ns: contextlib.nullcontext())
    lab = FakeLab()
    dep = minimal.MinimalDeployment(lab, {})  # type: ignore[arg-type]
    detached: list[str] = []
    old = attach(dep, "mux1", [5, 10, 1000, 0], detached)
    attach(dep, "server1", [3, 300, 0], detached)
    got = dep.counters()
    assert got["mux1"] == {"pass": 6, "encap": 11, "encap_bytes": 1001, "drop": 1}
    assert got["server1"] == {"decap": 4, "decap_bytes": 301, "refused": 1}
    assert "mux2" not in got  # nothing attached there: no counters, not zeros
    dep._retire("mux1")  # what a restart does before attaching afresh
    assert detached == ["mux1"] and old.closed
    attach(dep, "mux1", [0, 2, 100, 0], detached)  # the new program counts from zero
    after = dep.counters()["mux1"]
    assert after == {"pass": 7, "encap": 14, "encap_bytes": 1102, "drop": 2}
    dep.close()
    assert sorted(detached) == ["mux1", "mux1", "server1"]
    assert lab.speakers["mux1"].vips == set() and lab.speakers["mux2"].vips == set()
    dep.close()  # safe twice
    assert len(detached) == 3
