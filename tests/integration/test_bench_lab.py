"""The ``dsrconform bench lab`` harness: its topology, its schedule, its CLI, and short runs that
leave nothing behind.

Speed is the bench's business, not the tests': nothing here asserts a time or a ratio.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
from typing import Any

import pytest

from dsrconform.bench import lab as bench
from dsrconform.errors import ConfigError
from dsrconform.netns import NETNS_RUN_DIR
from tests.markers import requires_root

LAB_NET = ipaddress.IPv4Network("198.18.0.0/15")


def _bench_namespaces() -> list[str]:
    names = os.listdir(NETNS_RUN_DIR) if os.path.isdir(NETNS_RUN_DIR) else []
    prefixes = (f"dsrc-{bench.TOPO_LAB}.", f"dsrc-{bench.STACK_LAB}.")
    return sorted(n for n in names if n.startswith(prefixes))


def test_topology_mirrors_mininets_single_switch() -> None:
    topo = bench.bench_topology()
    assert topo.name == bench.TOPO_LAB
    assert topo.problems() == []
    assert len(topo.nodes) == bench.HOSTS + 1, "8 hosts and the router that hosts the bridge"
    assert topo.links == [] and topo.services == []
    (seg,) = topo.segments
    assert seg.host == "router" and len(seg.members) == bench.HOSTS
    assert sorted({topo.nodes[m].role for m in seg.members}) == ["client", "mux", "server"]
    for iface in topo.interfaces():
        assert ipaddress.IPv4Interface(iface.address).network.subnet_of(LAB_NET), iface


def test_schedule_alternates_who_goes_first() -> None:
    assert bench.topology_schedule(3, mininet=True) == [
        "ours", "mininet", "mininet", "ours", "ours", "mininet",
    ]  # fmt: skip
    assert bench.topology_schedule(2, mininet=False) == ["ours", "ours"]


def test_add_parser_registers_bench_lab() -> None:
    parser = argparse.ArgumentParser(prog="dsrconform")
    bench_sub = parser.add_subparsers(dest="command").add_parser("bench").add_subparsers()
    bench.add_parser(bench_sub)
    args = parser.parse_args(
        ["bench", "lab", "--rounds", "2", "--backend", "netns", "--backend", "docker",
         "--part", "topology", "--no-mininet", "--json"]
    )  # fmt: skip
    assert args.handler is bench.main
    assert (args.rounds, args.backend, args.part, args.no_mininet, args.json) == (
        2, ["netns", "docker"], ["topology"], True, True,
    )  # fmt: skip
    defaults = parser.parse_args(["bench", "lab"])
    assert (defaults.rounds, defaults.backend, defaults.part) == (bench.ROUNDS, None, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"rounds": 0}, "rounds 0"), ({"parts": ("nope",)}, "unknown part"),
     ({"backends": ("vm",)}, "unknown backend")],
)  # fmt: skip
def test_bad_arguments_fail_before_anything_is_made(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        bench.run_bench(**kwargs)
    assert _bench_namespaces() == []


@requires_root
def test_one_round_of_ours_has_the_shape_and_leaves_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _bench_namespaces() == [], "a bench lab is up before the test: `dsrconform lab down`"
    args = argparse.Namespace(rounds=1, part=["topology"], no_mininet=True, settle=0.0, json=True)
    assert bench.main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rounds"] == 1 and "stack" not in summary
    topo = summary["topology"]
    assert topo["ours"]["namespaces"] == bench.HOSTS + 1
    for key in ("up_ms", "down_ms"):
        stats = topo["ours"][key]
        assert len(stats["rounds"]) == 1
        assert 0 < stats["min"] <= stats["median"] <= stats["max"]
    assert topo["mininet"] == {"available": False, "reason": "not asked for (--no-mininet)"}
    assert topo["ratios"] is None and topo["meets_target"] is None
    assert summary["leftovers"] == []
    assert _bench_namespaces() == [], "bench namespaces left behind"


@requires_root
def test_one_round_against_mininet_leaves_nothing() -> None:
    reason = bench.mininet_unavailable()
    if reason is not None:
        pytest.skip(f"Mininet side unavailable: {reason}")
    summary = bench.run_bench(1, parts=("topology",), warmup=0, settle=0.0)
    topo = summary["topology"]
    assert topo["mininet"]["available"] is True
    for key in ("up_ms", "build_ms", "start_ms", "down_ms"):
        assert topo["mininet"][key]["median"] > 0, key
    assert set(topo["ratios"]) == {"up", "down"}
    assert isinstance(topo["meets_target"], bool)
    assert summary["leftovers"] == []
    assert bench.mininet_links() == [], "Mininet interfaces left in the host namespace"
    assert _bench_namespaces() == []
