"""Node and link faults on a running lab (root): each reversible, recorded, and seen by the
traffic or by BGP the way production would see it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsrconform.lab import Lab
from dsrconform.lab.faults import cpu_groups
from tests.markers import requires_docker, requires_root
from tests.waiting import wait_for

pytestmark = requires_root
BASIC = Path(__file__).resolve().parents[2] / "labs" / "basic.yaml"
VIP = "198.19.0.10"


@pytest.fixture(scope="module", params=["netns", pytest.param("docker", marks=requires_docker)])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    with Lab.up(BASIC, name="tfault", backend=request.param) as lab:
        yield lab


def routes(lab: Lab) -> list[str]:
    return lab.environment.vip_routes()[VIP]


def curl_ok(lab: Lab, timeout: float = 2) -> bool:
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(timeout),
            f"http://{VIP}/id"]  # fmt: skip
    res = lab.run("client", argv, check=False)
    return res.stdout == "200"


def udp(lab: Lab, flows: int, count: int, timeout: float = 0.3) -> list[dict]:
    argv = [lab.python, "-m", "dsrconform.traffic.probe", "udp", "--vip", "198.19.0.11",
            "--port", "7", "--flows", str(flows), "--count", str(count), "--timeout", str(timeout),
            "--sources", "198.18.1.1"]  # fmt: skip
    res = lab.run("client", argv)
    return json.loads(res.stdout)


def test_a_partition_stops_traffic_and_undo_restores_it(lab: Lab) -> None:
    assert curl_ok(lab)
    cut = lab.impair_link("client", "router", drop=True)
    assert not curl_ok(lab, timeout=1), "traffic crossed a partitioned link"
    cut.undo()
    cut.undo()  # idempotent
    assert curl_ok(lab)
    assert [e.action for e in lab.events[-2:]] == ["impair", "unimpair"]


def test_loss_drops_about_the_share_asked(lab: Lab) -> None:
    lossy = lab.impair_link("client", "router", loss=50, direction="a->b")
    try:
        # ~50 datagrams are lost, each waited for: 0.15 s each (echoes here take < 1 ms).
        recs = udp(lab, flows=20, count=5, timeout=0.15)
    finally:
        lossy.undo()
    # Unanswered, not the probe's "lost": a reply later than the wait counts as mismatched and
    # takes the next datagram's turn, which would hide losses on a loaded machine.
    lost = 100 - sum(len(r["servers"]) for r in recs)
    assert 20 < lost < 80, f"{lost}/100 unanswered with 50% loss one way"  # 50 +- 6 sigma
    assert sum(r["lost"] for r in udp(lab, flows=5, count=4)) == 0, "loss outlived undo"


def test_impairing_the_router_to_mux_direction_works_despite_the_mux_xdp(lab: Lab) -> None:
    cut = lab.impair_link("router", "mux1", drop=True, direction="a->b")
    try:
        before = lab.deployment.muxes["mux1"].stats().globals["lru_miss"]
        udp(lab, flows=20, count=1)
        after = lab.deployment.muxes["mux1"].stats().globals["lru_miss"]
        assert after == before, "packets reached the MUX through a dropped direction"
    finally:
        cut.undo()


def test_cpu_limit_and_undo(lab: Lab) -> None:
    lim = lab.limit_cpu("server1", 0.2)
    try:
        groups = [g for g in cpu_groups() if g.name == "dsrc-tfault.server1"]
        assert groups, "no cgroup for the limited node"
        procs = (groups[0] / "cgroup.procs").read_text().split()
        assert set(map(int, procs)) == set(lab.processes("server1"))
        assert curl_ok(lab)
    finally:
        lim.undo()
    assert not [g for g in cpu_groups() if g.name == "dsrc-tfault.server1"]


def test_a_killed_mux_restarts_with_empty_state_and_reannounces(lab: Lab) -> None:
    lab.kill_node("mux1")
    wait_for(lambda: routes(lab) == ["198.18.10.5"], 10, "withdrawal after kill")
    lab.restart_node("mux1")
    wait_for(lambda: routes(lab) == ["198.18.10.1", "198.18.10.5"], 15, "re-announcement")
    assert lab.deployment.muxes["mux1"].conn_table() == {}, "restarted MUX kept state"
    assert curl_ok(lab)
