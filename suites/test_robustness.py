"""Robustness: malformed and hostile packets at the VIPs never crash, detach or mis-forward and
are never emitted malformed (RB-1); non-VIP traffic passes untouched (RB-2); fragments are
handled consistently (RB-3); servers decapsulate only what the stack's MUXes sent (RB-4).

One run of the ``hostile`` scenario (``dsr_scenario``, once per session): legitimate traffic
all along while :func:`dsrconform.chaos.hostile.send_hostile` sends the crafted cases of
:mod:`dsrconform.traffic.crafted` through the router and straight into each MUX, non-VIP packets
into each MUX, and IPIP from a client (not a MUX) to every server.
"""

from __future__ import annotations

from typing import Any

import pytest

from dsrconform.chaos.suite import SCENARIOS

pytestmark = pytest.mark.dsr_scenario("hostile")

ROBUST = SCENARIOS["hostile"].decide


@pytest.mark.parametrize(
    "req", [pytest.param(r, marks=pytest.mark.requirement(r), id=r) for r in ROBUST]
)
def test_robustness(req: str, dsr_scenario: Any, dsr_check: Any) -> None:
    dsr_check(dsr_scenario("hostile").observations, req)
