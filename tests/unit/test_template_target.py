"""The template adapter (examples/template_target/kernel_ecmp.py) without root: it passes
``dsrconform target check``, and on a recording stand-in for the lab it issues the data plane the
docs describe (tunnels, multipath routes, announcements after the routes, route replacement on a
backend change, counters carried over a restart)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsrconform import cli
from dsrconform.errors import ConfigError, LabError
from dsrconform.target import load_target
from dsrconform.topofile import load_topology
from tests.unit.labfiles import BASIC

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAME = "template_target.kernel_ecmp:KernelEcmpTarget"


@pytest.fixture(autouse=True)
def examples_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    yield


class Speaker:
    def __init__(self, log: list[tuple[str, ...]], mux: str) -> None:
        self.log, self.mux, self.vips = log, mux, set[str]()

    def announce(self, vip: str) -> None:
        self.log.append((self.mux, "announce", vip))
        self.vips.add(vip)

    def withdraw(self, vip: str) -> None:
        self.vips.discard(vip)

    def announced(self) -> list[str]:
        return sorted(self.vips)


class FakeLab:
    """Records every command; ``ip -s -j link show`` answers with ``self.stats``."""

    def __init__(self) -> None:
        self.topology = load_topology(BASIC)
        self.log: list[tuple[str, ...]] = []
        self.speakers: dict[str, Speaker] = {}
        self.stats: dict[str, int] = {}
        self.fail_ipip = False

    def run(
        self, node: str, argv: list[str], *, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        self.log.append((node, *argv))
        out, code, err = "", 0, ""
        if argv[:3] == ["ip", "link", "show"] and argv[-1] == "tunl0":
            code = 1  # no fallback tunnel yet: the template makes it
        elif argv[:3] == ["ip", "link", "add"] and self.fail_ipip:
            code, err = 2, "Error: Unknown device type."
        elif argv[:3] == ["ip", "-s", "-j"]:
            links = [
                {"ifname": f"tpl-{s}", "stats64": {"tx": {"packets": n, "bytes": 100 * n}}}
                for s, n in self.stats.items()
            ]
            out = json.dumps([{"ifname": "tunl0"}, *links])
        elif argv[:3] == ["ip", "route", "show"]:
            out = "198.19.0.10 proto static\n198.19.0.11 proto static\n198.19.0.12 x\n"
        return subprocess.CompletedProcess(argv, code, out, err)

    def bgp(self, mux: str) -> Speaker:
        return self.speakers.setdefault(mux, Speaker(self.log, mux))

    def on(self, node: str) -> list[tuple[str, ...]]:
        return [e[1:] for e in self.log if e[0] == node]


def deploy(lab: FakeLab, **kw: Any) -> Any:
    return load_target(NAME, **kw).deploy(lab)  # type: ignore[arg-type]


def test_the_template_passes_target_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["target", "check", NAME]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "PASS  Deployment (KernelEcmpDeployment).close: method" in out


def test_unknown_mutants_options_and_modes_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown mutant 'nope'; fix: one of outer-tos-zero"):
        load_target(NAME, mutant="nope")
    with pytest.raises(ConfigError, match="hash='l7'; fix: one of l4, l3"):
        load_target(NAME, options={"hash": "l7"})
    lab = FakeLab()
    lab.topology = load_topology(BASIC, mode="server-nat")
    with pytest.raises(ConfigError, match="mode server-nat; fix: mode: encap"):
        deploy(lab)
    assert lab.log == []


def test_deploy_tunnels_routes_then_announces() -> None:
    lab = FakeLab()
    dep = deploy(lab)
    mux1 = lab.on("mux1")
    assert ("sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1") in mux1
    add = ("ip", "link", "add", "tpl-server2", "type", "ipip", "local", "198.18.10.1")
    assert (*add, "remote", "198.18.20.2", "tos", "inherit") in mux1
    route = ("ip", "route", "replace", "198.19.0.10/32")
    hops = ("nexthop", "dev", "tpl-server1", "nexthop", "dev", "tpl-server2")
    assert (*route, *hops, "nexthop", "dev", "tpl-server3") in mux1
    # Announced only once every route is in, and edge (mux1 only) not from mux2.
    last_route = max(i for i, e in enumerate(mux1) if e[:3] == ("ip", "route", "replace"))
    first_announce = min(i for i, e in enumerate(mux1) if e[0] == "announce")
    assert last_route < first_announce
    assert lab.speakers["mux1"].announced() == ["198.19.0.10", "198.19.0.11", "198.19.0.12"]
    assert lab.speakers["mux2"].announced() == ["198.19.0.10", "198.19.0.11"]
    assert ("ip", "link", "set", "tunl0", "up") in lab.on("server1")
    assert ("sysctl", "-qw", "net.ipv4.conf.tunl0.rp_filter=0") in lab.on("server3")
    assert dep.wait_ready(5) >= 0


def test_the_mutant_and_the_l3_option_change_the_data_plane() -> None:
    lab = FakeLab()
    deploy(lab, mutant="outer-tos-zero", options={"hash": "l3"})
    mux2 = lab.on("mux2")
    assert ("sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=0") in mux2
    adds = [e for e in mux2 if e[:3] == ("ip", "link", "add")]
    assert adds and all("inherit" not in e for e in adds)


def test_set_backends_replaces_the_vips_route_and_validates_first() -> None:
    lab = FakeLab()
    dep = deploy(lab)
    lab.log.clear()
    dep.set_backends("echo", ["server1"], draining=["server2"])
    assert dep.backends("echo") == {"active": ["server1"], "draining": ["server2"]}
    for mux in ("mux1", "mux2"):
        assert lab.on(mux) == [
            ("ip", "route", "replace", "198.19.0.11/32", "nexthop", "dev", "tpl-server1")
        ]
    lab.log.clear()
    for active, draining, why in [
        (["server9"], [], "'server9' is not a server running its application"),
        ([], [], "keep at least one server active"),
        (["server1"], ["server1"], "server1 both active and draining"),
    ]:
        with pytest.raises(ConfigError, match=why):
            dep.set_backends("echo", active, draining=draining)
    with pytest.raises(ConfigError, match="unknown service 'nope'"):
        dep.set_backends("nope", ["server1"])
    assert lab.log == []  # nothing changed
    assert dep.backends("echo")["active"] == ["server1"]


def test_counters_come_from_the_tunnels_and_survive_a_restart() -> None:
    lab = FakeLab()
    dep = deploy(lab)
    lab.stats = {"server1": 5, "server2": 7}
    got = dep.counters()
    assert got["mux1"] == {
        "tx_bytes": 1200,
        "tx_packets": 12,
        "tx_packets.server1": 5,
        "tx_packets.server2": 7,
    }
    dep.restart("mux1")  # tunnels replaced: their totals carry over
    assert ("ip", "link", "del", "tpl-server1") in lab.on("mux1")
    lab.stats = {"server1": 1, "server2": 0}
    after = dep.counters()["mux1"]
    assert after["tx_packets"] == 13 and after["tx_packets.server1"] == 6
    assert after["tx_packets.server2"] == 7
    assert dep.counters()["mux2"]["tx_packets"] == 1  # never restarted: read as it is


def test_a_kernel_without_ipip_is_named_as_the_cause() -> None:
    lab = FakeLab()
    lab.fail_ipip = True
    with pytest.raises(LabError, match=r"no IPIP tunnels: CONFIG_NET_IPIP"):
        deploy(lab)
