"""SYN flood: established streams survive a spoofed flood, new connections still complete, and
every MUX keeps forwarding (SF-1, SF-2, SF-4).

One run of the flood mix (``dsr_flood``, once per session): streams established first and
open across the flood, new connections at a steady rate all along, UDP flows idle across it,
and a 12 s SYN flood from 198.18.200.0/21 (black-holed at the router) sent from the lab's flood
node, followed by an 8 s drain of one server from every service: a drain breaks nothing on a
correct stack, but shows a flood that destroyed the state of established flows (SF-1). The
flood during a backend change (SF-3) is in test_scale.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from dsrconform.chaos.suite import SCENARIOS

pytestmark = pytest.mark.dsr_scenario("syn-flood")

FLOOD = SCENARIOS["syn-flood"].decide


@pytest.mark.parametrize(
    "req", [pytest.param(r, marks=pytest.mark.requirement(r), id=r) for r in FLOOD]
)
def test_syn_flood(req: str, dsr_flood: Any, dsr_check: Any) -> None:
    dsr_check(dsr_flood.observations, req)
