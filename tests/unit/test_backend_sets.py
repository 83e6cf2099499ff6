"""The reference deployment's backend sets (Deployment.set_backends / backends) over fake MUX
programs: validation, which MUXes are reprogrammed with which addresses, the sets a restarted
MUX gets, and per-backend counters across a removal and a return (pure Python, no privileges)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dsrconform.errors import ConfigError
from dsrconform.topofile import load_topology
from dsrconform.topology import Topology

BASIC = Path(__file__).resolve().parents[2] / "labs" / "basic.yaml"
ADDR = {"server1": "198.18.20.1", "server2": "198.18.20.2", "server3": "198.18.20.3"}
ALL = {"active": ["server1", "server2", "server3"], "draining": []}


class FakeMux:
    """A MuxProgram stand-in: records set_backends; counts per backend address in use."""

    def __init__(self, backends: dict[tuple, list[str]]) -> None:
        self.calls: list[tuple[tuple, list[str], list[str]]] = []
        self.tables = dict(backends)
        self.draining: dict[tuple, list[str]] = {}
        self.packets: dict[str, int] = {a: 0 for bes in backends.values() for a in bes}

    def set_backends(self, vip: tuple, backends: list[str], draining: Sequence[str] = ()) -> None:
        self.calls.append((vip, list(backends), list(draining)))
        self.tables[vip], self.draining[vip] = list(backends), list(draining)
        live = {a for t in (self.tables, self.draining) for bes in t.values() for a in bes}
        self.packets = {a: self.packets.get(a, 0) for a in sorted(live)}  # released: gone

    def stats(self) -> Any:
        from reference_impl.mux import GLOBAL_STATS, MuxStats

        return MuxStats(
            globals={n: 0 for n in GLOBAL_STATS} | {"tx": 0},
            backends={a: (n, 100 * n) for a, n in self.packets.items()},
        )


def deployment(topo: Topology | None = None) -> Any:
    from reference_impl.deploy import ReferenceDeployment

    topo = topo or load_topology(BASIC)
    lab = SimpleNamespace(name="t", topology=topo, dir=Path("/nonexistent"), python="python3")
    dep = ReferenceDeployment(lab, None)  # type: ignore[arg-type]
    for mux in topo.of_role("mux"):
        dep.muxes[mux] = FakeMux(
            {(s.vip, s.port, s.proto_number): [ADDR[n] for n in topo.servers_of(s)]
             for s in topo.services_of_mux(mux)}
        )  # fmt: skip
    return dep


WEB, EDGE = ("198.19.0.10", 80, 6), ("198.19.0.12", 80, 6)


def test_sets_start_from_the_topology_and_every_serving_mux_gets_the_change() -> None:
    dep = deployment()
    assert dep.backends("web") == ALL
    dep.set_backends("web", ["server3", "server1", "server1"], draining=["server2"])
    assert dep.backends("web") == {"active": ["server1", "server3"], "draining": ["server2"]}
    for mux in ("mux1", "mux2"):
        assert dep.muxes[mux].calls == [(WEB, [ADDR["server3"], ADDR["server1"]],
                                         [ADDR["server2"]])]  # fmt: skip
    dep.set_backends("edge", ["server2"])  # only mux1 serves edge
    assert dep.muxes["mux1"].calls[-1] == (EDGE, [ADDR["server2"]], [])
    assert len(dep.muxes["mux2"].calls) == 1
    assert dep.backends("echo") == ALL, "a service not named changed"


def test_a_restarted_mux_is_built_from_the_current_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """_mux reads backends(): the active set goes into the MuxConfig, the draining one follows."""
    dep = deployment()
    dep.set_backends("web", ["server1"], draining=["server2"])
    seen: dict[str, Any] = {}

    class Built(FakeMux):
        def __init__(self, cfg: Any, mutant: str | None = None) -> None:
            super().__init__({v.key: v.backends for v in cfg.vips})
            seen["prog"] = self

        def attach(self, *a: Any) -> None:
            raise _Stop

    class _Stop(Exception):
        pass

    import reference_impl.deploy as deploy_mod
    import reference_impl.mux as mux_mod

    monkeypatch.setattr(mux_mod, "MuxProgram", Built)
    monkeypatch.setattr(deploy_mod, "link_mac", lambda ns, ifname: "02:00:00:00:00:01")
    dep.lab.netns = lambda node: f"dsrc-t.{node}"
    with pytest.raises(_Stop):
        dep._mux("mux1")
    prog = seen["prog"]
    assert prog.tables[WEB] == [ADDR["server1"]]
    assert prog.draining[WEB] == [ADDR["server2"]]
    assert prog.tables[EDGE] == [ADDR[n] for n in ALL["active"]], "an unchanged service moved"


def _restricted() -> Topology:
    topo = load_topology(BASIC)
    web = topo.services[0].model_copy(update={"servers": ["server1", "server2"]})
    return topo.model_copy(update={"services": [web, *topo.services[1:]]})


@pytest.mark.parametrize(
    ("service", "servers", "draining", "match"),
    [
        ("nope", ["server1"], [], r"unknown service 'nope'; .*: web, echo, edge"),
        ("web", ["server9"], [], r"no server 'server9' .*servers: server1, server2, server3"),
        ("web", ["server1"], ["router"], r"no server 'router'"),
        ("web", ["server1", "server3"], [], r"'server3' does not run its application.*server1, "
         "server2$"),
        ("web", ["server1"], ["server3"], r"'server3' does not run its application"),
        ("web", [], ["server1"], r"empty active set"),
        ("web", ["server1", "server2"], ["server2"], r"server2 listed as both active and draining"),
        ("web", "server1", [], r"a list of server names, not the string 'server1'"),
        ("web", ["server1"], "server2", r"draining must be a list"),
    ],
)  # fmt: skip
def test_bad_changes_are_refused_and_change_nothing(
    service: str, servers: Any, draining: Any, match: str
) -> None:
    dep = deployment(_restricted())
    with pytest.raises(ConfigError, match=match):
        dep.set_backends(service, servers, draining=draining)
    assert dep.backends("web") == {"active": ["server1", "server2"], "draining": []}
    assert all(m.calls == [] for m in dep.muxes.values())


def test_unknown_service_in_backends_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown service 'x'"):
        deployment().backends("x")


def test_backend_counters_never_go_back_across_a_removal_and_a_return() -> None:
    """A released backend gets a fresh (zeroed) index when it returns: the deployment carries
    the old totals, so backend_packets[...] counts on from them."""
    dep = deployment()
    name = f"backend_packets[{ADDR['server3']}]"
    for m in dep.muxes.values():
        m.packets[ADDR["server3"]] = 5
    assert dep.counters()["mux1"][name] == 5
    for m in dep.muxes.values():  # server3 gone from every service: released
        m.packets[ADDR["server3"]] = 7  # counted after the last read
    every = [s.name for s in dep.lab.topology.services]
    for svc in every:
        dep.set_backends(svc, ["server1", "server2"])
    assert name not in dep.muxes["mux1"].stats().backends
    assert dep.counters()["mux1"][name] == 5, "a reported name vanished or moved"
    for svc in every:
        dep.set_backends(svc, ["server1", "server2", "server3"])
    dep.muxes["mux1"].packets[ADDR["server3"]] = 1  # the new index counts from 0
    assert dep.counters()["mux1"][name] == 8
