"""Katran in labs/basic.yaml (root, netns backend): the lab brought up with ``target="katran"``,
HTTP through both TCP VIPs answered over DSR, Katran's counters per MUX and per server, a backend
change (drain) and a MUX restart that announces again. One bring-up, a few seconds."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from dsrconform.errors import ConfigError
from dsrconform.lab import Lab
from katran_target.target import KatranTarget
from tests.markers import requires_root

pytestmark = requires_root
BASIC = Path(__file__).resolve().parents[2] / "labs" / "basic.yaml"


def _fetch(lab: Lab, vip: str, source: str) -> str:
    res = lab.run(
        "client",
        ["curl", "-s", "--max-time", "5", "--interface", source, f"http://{vip}/id"],
        check=False,
    )
    assert res.returncode == 0, f"curl {vip} from {source}: exit {res.returncode} {res.stderr}"
    return res.stdout.strip()


def test_katran_serves_the_basic_lab() -> None:
    try:
        KatranTarget().sources()
    except ConfigError as e:
        pytest.skip(f"Katran's sources are not available: {e}")
    with Lab.up(BASIC, target="katran", name="tkatran") as lab:
        sources = [lab.topology.uplink("client").ip, *lab.topology.nodes["client"].addresses]
        answers = Counter(_fetch(lab, "198.19.0.10", s) for s in sources)
        assert set(answers) <= {"server1", "server2", "server3"}
        assert sum(answers.values()) == len(sources)
        assert _fetch(lab, "198.19.0.12", sources[0]) in {"server1", "server2", "server3"}
        dep = lab.deployment
        assert dep is not None
        status = dep.status()
        assert status["katran"]["encap"] == "gue"
        json.dumps(status)  # JSON-able, for `lab status`
        counters = dep.counters()
        decapped = sum(counters[s]["decap_gue_v4"] for s in ("server1", "server2", "server3"))
        tx = sum(counters[m]["xdp_tx_packets"] for m in ("mux1", "mux2"))
        assert tx > 0 and decapped == tx  # every packet Katran sent was Katran-decapsulated
        assert counters["mux1"]["vip_packets[198.19.0.12:80/tcp]"] > 0
        lab.set_backends("web", ["server1"], draining=["server2"])
        assert dep.backends("web") == {"active": ["server1"], "draining": ["server2"]}
        assert {_fetch(lab, "198.19.0.10", s) for s in sources} == {"server1"}
        before = dep.counters()["mux1"]["xdp_tx_packets"]
        lab.kill_node("mux1")
        lab.restart_node("mux1")
        assert sorted(lab.bgp("mux1").announced()) == ["198.19.0.10", "198.19.0.11", "198.19.0.12"]
        assert dep.backends("web")["active"] == ["server1"]
        assert dep.counters()["mux1"]["xdp_tx_packets"] >= before  # carried over the restart
