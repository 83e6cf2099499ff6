"""The short-connection generator in a lab (root): dsrconform.traffic.shortconns from the client
node of labs/basic.yaml (netns backend), through the VIP; every connection succeeds, several
servers answer, and the history it writes loads and gives back the summary it printed."""

from __future__ import annotations

import json
from pathlib import Path

from dsrconform.lab import Lab
from dsrconform.topology import Topology
from dsrconform.traffic.shortconns import summarize
from tests.markers import requires_root

pytestmark = requires_root
BASIC = Path(__file__).resolve().parents[2] / "labs" / "basic.yaml"
BASIC_SERVERS = {"server1", "server2", "server3"}


def client_sources(topo: Topology) -> str:
    client = topo.of_role("client")[0]
    return ",".join([topo.uplink(client).ip, *topo.nodes[client].addresses])


def test_short_connections_through_the_vip_all_succeed(tmp_path: Path) -> None:
    from dsrconform.observe.history import load_history

    out = tmp_path / "short.jsonl"
    with Lab.up(BASIC, name="tshort") as lab:
        client = lab.topology.of_role("client")[0]
        res = lab.run(client, [lab.python, "-m", "dsrconform.traffic.shortconns", "--vip",
                               "198.19.0.10", "--port", "80", "--rate", "200", "--count", "300",
                               "--duration", "10", "--timeout", "5", "--max-in-flight", "100",
                               "--sources", client_sources(lab.topology), "--seed", "7",
                               "--out", str(out)], timeout=60)  # fmt: skip
    printed = json.loads(res.stderr.strip().splitlines()[-1])
    assert printed["attempted"] == printed["opened"] == 300, printed
    assert printed["success_rate"] == 1.0, printed
    assert 150 < printed["achieved_rate"] <= 201, printed  # 200/s asked, one run at a time
    history = load_history(out)
    assert len(history.flows) == 300
    summary = summarize(history)
    assert summary == {k: v for k, v in printed.items() if k in summary}, (summary, printed)
    assert all(fh.succeeded() for fh in history.flows.values())
    assert set(summary["servers"]) <= BASIC_SERVERS
    assert len(summary["servers"]) > 1, f"one server answered everything: {summary['servers']}"
