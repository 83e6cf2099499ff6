"""Steady state: every RW, DP and AF requirement over one steady-state run of the lab.

One run of the traffic mix (streams, short connections, uploads, UDP flows, ICMP errors about
live streams) with taps on every link (``dsr_steady``, once per session), then one test per
requirement, each citing it: a FAIL shows the evidence, an UNKNOWN says what was missing.

A rewrite mode changes what these requirements judge, so without ``--dsr-mode`` they run in
the lab file's mode and again in every other mode the target supports and the lab file allows
(``dsr_every_mode``); the fault suites run in the lab file's mode.
"""

from __future__ import annotations

from typing import Any

import pytest

from dsrconform.chaos.suite import SCENARIOS

pytestmark = [pytest.mark.dsr_every_mode, pytest.mark.dsr_scenario("steady")]

STEADY = SCENARIOS["steady"].decide


@pytest.mark.parametrize(
    "req", [pytest.param(r, marks=pytest.mark.requirement(r), id=r) for r in STEADY]
)
def test_steady_state(req: str, dsr_steady: Any, dsr_check: Any) -> None:
    dsr_check(dsr_steady.observations, req)
