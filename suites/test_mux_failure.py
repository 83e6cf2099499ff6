"""MUX failure: connections through a failed MUX survive the re-hash to another MUX, the others
are untouched, new connections recover within the bound, and a MUX rejoining with empty state
breaks nothing (MF-1..MF-4); flows keep their server throughout (AF-1, AF-2).

Two scenarios (``dsr_scenario``, each once per session), on the MUX whose services another MUX
also serves (:func:`dsrconform.chaos.muxfaults.failover_mux`), while streams, UDP flows and new
connections run: ``mux-kill`` (its processes killed and links down: the BGP session is lost; it
comes back with empty state, MF-4) and ``mux-hang`` (its processes stopped until the router's
BGP hold timer withdraws it; resumed with its state). Recovery (MF-3) is measured from the
router's withdrawal of the MUX's routes, read from the router's kernel.
"""

from __future__ import annotations

from typing import Any

import pytest

from dsrconform.chaos.suite import cases

CASES = cases("mux-kill", "mux-hang")
"""(scenario, requirement), from what each scenario decides. Affinity (AF-1, AF-2) is judged
across the failure too: the backend set stays the same, so a flow re-hashed to another MUX must
still reach the same server."""


@pytest.mark.parametrize(
    ("scenario", "req"),
    [
        pytest.param(
            s, r, marks=[pytest.mark.requirement(r), pytest.mark.dsr_scenario(s)], id=f"{s}-{r}"
        )
        for s, r in CASES
    ],
)
def test_mux_failure(scenario: str, req: str, dsr_scenario: Any, dsr_check: Any) -> None:
    dsr_check(dsr_scenario(scenario).observations, req)
