"""The suites' scenarios: chaos scenarios the conformance suites run on the session's lab.

Each is a :class:`~dsrconform.chaos.scenario.Scenario` without a lab of its own (``lab`` is the
session's): a named traffic mix, a method of faults, and the requirements it decides. The
suites' test tables are generated from ``decide`` (:func:`cases`), and the text the progress
shows from the description and ``decide`` (:func:`about`): nothing kept by hand twice. The
pytest plugin's ``dsr_scenario`` fixture runs each at most once per session
(:func:`dsrconform.chaos.traffic.observe_scenario`); the quick profile has shorter variants
(:mod:`dsrconform.profiles`).

Nothing here knows the stack under test: the faults act on the lab (its nodes, links and
backend sets) and read the lab's border router.
"""

from __future__ import annotations

from typing import Any

from dsrconform import spec
from dsrconform.chaos.scenario import Scenario

__all__ = ["SCENARIOS", "STEADY_REQUIREMENTS", "about", "cases"]

STEADY_REQUIREMENTS = [r.id for r in spec.REQUIREMENTS if r.family in ("RW", "DP", "AF")]
"""What the steady state decides: every RW, DP and AF requirement."""


def _scenario(name: str, description: str, mix: str, method: list[dict[str, Any]],
              decide: list[str]) -> Scenario:  # fmt: skip
    return Scenario.model_validate({
        "name": name, "description": description, "traffic": {"mix": mix}, "method": method,
        "decide": decide,
    })  # fmt: skip


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        _scenario("steady", "the steady-state mix, no fault", "steady", [], STEADY_REQUIREMENTS),
        _scenario(
            "syn-flood",
            # The drain breaks nothing on a correct stack, but shows a flood that destroyed the
            # state of established flows: it meets the flood mix's idle UDP flows' datagram at
            # 22 s (SF-1). It starts 0.5 s after the flood's last send, overlapping no flood.
            "a 12 s spoofed SYN flood, then a drain that shows lost state",
            "flood",
            [
                {"id": "flood", "fault": {"kind": "syn-flood", "seconds": 12}, "at": 4},
                {
                    "fault": {"kind": "server-drain", "every_service": True},
                    "after": "flood",
                    "delay": 0.5,
                    "duration": 8,
                },
            ],
            ["SF-1", "SF-2", "SF-4"],
        ),
        _scenario(
            "mux-kill",
            "a MUX killed, withdrawn, restarted empty",
            "chaos",
            [{"fault": {"kind": "mux-kill"}, "at": 5, "duration": 8}],
            ["MF-1", "MF-2", "MF-3", "MF-4", "AF-1", "AF-2"],
        ),
        _scenario(
            "mux-hang",
            "a MUX hung until its BGP hold timer expires, then resumed",
            "chaos",
            [{"fault": {"kind": "mux-hang"}, "at": 5, "duration": 8}],
            ["MF-1", "MF-2", "MF-3", "AF-1", "AF-2"],
        ),
        _scenario(
            "scale",
            # Each change inside its own set of tuple probes (0.8 s before, 2.6 s after): the
            # removal at ~5 s, the adding back at ~9 s, the drain at ~13 s, active again ~19 s.
            "a server removed and added back, another drained and made active again, each "
            "change inside tuple probes",
            "scale",
            [
                {
                    "id": "remove",
                    "fault": {"kind": "server-remove", "probe": True},
                    "at": 4.2,
                    "duration": 0.6,
                },
                {
                    "fault": {"kind": "server-drain", "server_index": 1, "probe": True},
                    "at": 12.2,
                    "duration": 2.6,
                },
            ],
            ["SC-1", "SC-2", "SC-3", "SC-4", "AF-1"],
        ),
        _scenario(
            "flood-scale",
            "a SYN flood during which a server is drained and made active again",
            "flood",
            [
                {"fault": {"kind": "syn-flood", "seconds": 12}, "at": 4},
                {
                    "fault": {"kind": "server-drain", "every_service": True},
                    "at": 13,
                    "duration": 12,
                },
            ],
            ["SF-3", "SC-3"],
        ),
        _scenario(
            "scale-mux-loss",
            # The server comes back 15 s after the MUX did: past SC-5's grace, so nothing else
            # changes while it is judged.
            "a server removed, then a MUX killed and restarted (breakage measured)",
            "chaos",
            [
                {
                    "id": "remove",
                    "fault": {"kind": "server-remove"},
                    "at": 5,
                    "revert_after": "kill",
                    "revert_delay": 15,
                },
                {"id": "kill", "fault": {"kind": "mux-kill"}, "at": 8, "duration": 8},
            ],
            ["SC-5"],
        ),
        _scenario(
            "hostile",
            "malformed, non-VIP and foreign encapsulated packets during traffic",
            "hostile",
            [{"fault": {"kind": "hostile-packets"}, "at": 4}],
            ["RB-1", "RB-2", "RB-3", "RB-4"],
        ),
    )
}
"""The scenarios the suites run, by name."""


def about(scn: Scenario) -> str:
    """One line: what the scenario does and what it decides."""
    return f"{scn.description} ({', '.join(scn.decide)})"


def cases(*names: str) -> list[tuple[str, str]]:
    """(scenario, requirement) for every requirement each of ``names`` decides: a suite's
    test table."""
    return [(n, r) for n in names for r in SCENARIOS[n].decide]
