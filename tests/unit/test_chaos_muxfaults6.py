"""MUX faults time themselves by the router's VIP routes in both families (no privileges): a MUX
of a dual-stack lab is withdrawn when neither its IPv4 nor its IPv6 next hop is left, and back
when both are (the first IPv6 run timed mux-kill by the IPv4 next hop alone)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dsrconform.chaos.muxfaults import MuxKill
from dsrconform.errors import LabError
from dsrconform.observe import routes
from dsrconform.observe.observations import FaultWindow
from dsrconform.topofile import load_topology

DUAL = Path(__file__).resolve().parents[2] / "labs" / "dual.yaml"
V4, V6 = "198.19.0.10", "2001:2:0:100::10"
MUX1 = ["198.18.10.1", "2001:2:0:10::1"]
MUX2 = ["198.18.10.5", "2001:2:0:11::5"]


def hops(via4: list[list[str]], via6: list[list[str]]) -> dict[str, list[str]]:
    """The VIP routes when the MUXes ``via4`` carry the IPv4 VIP and ``via6`` the IPv6 one."""
    return {V4: [mux[0] for mux in via4], V6: [mux[1] for mux in via6]}


BOTH = hops([MUX1, MUX2], [MUX1, MUX2])
ONLY_MUX1 = hops([MUX1], [MUX1])
V4_ONLY_GONE = hops([MUX1], [MUX1, MUX2])  # mux2 out of IPv4 routes, still in IPv6 ones
V4_ONLY_BACK = hops([MUX1, MUX2], [MUX1])  # mux2 back in IPv4 routes, not yet in IPv6 ones


class ScriptedLab:
    """A dual-stack lab whose router shows the VIP routes of ``script``, one per poll."""

    def __init__(self, script: list[dict[str, list[str]]]) -> None:
        self.name = "fake"
        self.topology = load_topology(DUAL)
        self.script = list(script)
        self.polled: list[tuple[float, dict[str, list[str]]]] = []

    def next_hops(self) -> dict[str, list[str]]:
        state = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        self.polled.append((time.monotonic(), state))
        return state

    def kill_node(self, node: str) -> None:
        assert node == "mux2"

    def restart_node(self, node: str) -> None:
        assert node == "mux2"


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> type[ScriptedLab]:
    monkeypatch.setattr(routes, "vip_next_hops", lambda lab: lab.next_hops())
    monkeypatch.setattr(routes, "POLL", 0.001)
    return ScriptedLab


def say(_message: str) -> None:
    pass


def life(fault: MuxKill, lab: Any) -> list[FaultWindow]:
    """The windows of ``fault`` set up, invoked and reverted on ``lab``."""
    fault.setup(lab, say)
    fault.invoke(lab, say, threading.Event())
    fault.revert(lab, say)
    return fault.windows()


def when(lab: ScriptedLab, state: dict[str, list[str]]) -> float:
    """When the router first showed ``state``."""
    return next(t for t, s in lab.polled if s is state)


def test_mux_kill_waits_for_both_families_of_next_hops(scripted: type[ScriptedLab]) -> None:
    lab: Any = scripted([BOTH, V4_ONLY_GONE, ONLY_MUX1, V4_ONLY_BACK, BOTH])
    w = {x.kind: x for x in life(MuxKill(node="mux2"), lab)}
    assert set(w) == {"route-withdrawn", "mux-fail", "mux-rejoin"}
    # Withdrawn only once its IPv6 next hop is gone too; back only once it is back too.
    assert w["route-withdrawn"].start > when(lab, V4_ONLY_GONE)
    rejoined = w["mux-rejoin"].end
    assert rejoined is not None and rejoined > when(lab, V4_ONLY_BACK)
    assert lab.script == [BOTH]


def test_a_mux_routed_to_by_ipv6_alone_can_fail(scripted: type[ScriptedLab]) -> None:
    v6_only = {V4: [MUX1[0]], V6: [MUX1[1], MUX2[1]]}
    lab: Any = scripted([v6_only, {V4: [MUX1[0]], V6: [MUX1[1]]}])
    fault = MuxKill(node="mux2")
    fault.setup(lab, say)
    fault.invoke(lab, say, threading.Event())
    assert [x.kind for x in fault.windows()] == ["route-withdrawn"]


def test_a_mux_in_no_vip_route_is_refused(scripted: type[ScriptedLab]) -> None:
    lab: Any = scripted([ONLY_MUX1])
    with pytest.raises(LabError, match=r"mux2 \(198.18.10.5, 2001:2:0:11::5\) carries no VIP"):
        MuxKill(node="mux2").setup(lab, say)
