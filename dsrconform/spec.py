"""The requirement catalogue: IDs that tests, checkers, mutants, report rows and gates cite.

This is the first cut, taken from the draft in ARCHITECTURE.md; the traffic/observation issue
grows each entry with its parameters and checker and generates SPEC.md from it. IDs are stable:
never renumber, only add.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["MUST", "SHOULD", "MAY"]


@dataclass(frozen=True)
class Requirement:
    id: str
    family: str
    level: Level
    statement: str


_R = Requirement
REQUIREMENTS: tuple[Requirement, ...] = (
    _R(
        "RW-1",
        "RW",
        "MUST",
        "Replies carry the VIP:port the client addressed, in every mode and via every MUX.",
    ),
    _R("RW-2", "RW", "MUST", "IP and L4 checksums are valid on every packet after every rewrite."),
    _R("RW-3", "RW", "MUST", "No server address leaks to clients."),
    _R(
        "RW-4",
        "RW",
        "MUST",
        "Per-MUX external VIPs are honoured: a reply leaves from the VIP its flow came through.",
    ),
    _R("RW-5", "RW", "MUST", "Bytes arrive intact end to end."),
    _R(
        "RW-6",
        "RW",
        "MUST",
        "Encapsulation overhead is handled: MSS clamp or working PMTU "
        "(packet-too-big for a flow reaches its server).",
    ),
    _R("RW-7", "RW", "SHOULD", "ICMP errors about a flow reach the flow's server."),
    _R("DP-1", "DP", "MUST", "No server-to-client packet crosses a MUX."),
    _R("DP-2", "DP", "SHOULD", "MUX load follows inbound traffic only."),
    _R(
        "AF-1",
        "AF",
        "MUST",
        "Every packet of a TCP connection reaches one server while the backend set is stable.",
    ),
    _R(
        "AF-2",
        "AF",
        "MUST",
        "Every packet of a UDP 5-tuple reaches one server while the backend set is stable.",
    ),
    _R("AF-3", "AF", "SHOULD", "New flows spread across servers within a stated bound."),
    _R(
        "SF-1",
        "SF",
        "MUST",
        "Established connections survive a spoofed SYN flood of R packets/s for T s.",
    ),
    _R(
        "SF-2",
        "SF",
        "SHOULD",
        "Legitimate new connections complete during a flood at the stated rate and latency.",
    ),
    _R(
        "SF-3",
        "SF",
        "SHOULD",
        "Established connections survive a flood that coincides with a backend change.",
    ),
    _R("SF-4", "SF", "MUST", "The MUX keeps forwarding during a flood."),
    _R(
        "MF-1",
        "MF",
        "MUST",
        "Connections through a failed MUX survive when re-hashed to another MUX "
        "(backend set stable).",
    ),
    _R(
        "MF-2",
        "MF",
        "MUST",
        "Connections through healthy MUXes are untouched by another MUX's failure.",
    ),
    _R(
        "MF-3",
        "MF",
        "MUST",
        "New connections recover within a stated time after the failed MUX's route is withdrawn.",
    ),
    _R("MF-4", "MF", "MUST", "A MUX rejoining with empty state breaks no connection."),
    _R("SC-1", "SC", "MUST", "Adding a server or a MUX breaks no established connection."),
    _R("SC-2", "SC", "SHOULD", "A backend change remaps at most 1/(N+1) + epsilon of new flows."),
    _R(
        "SC-3",
        "SC",
        "MUST",
        "Draining a server moves no established connection and sends it no new one.",
    ),
    _R(
        "SC-4",
        "SC",
        "MUST",
        "Configuration changes apply atomically and converge on every MUX within a stated time.",
    ),
    _R(
        "SC-5",
        "SC",
        "MAY",
        "A backend change followed by a MUX loss breaks no connection (breakage is measured).",
    ),
    _R(
        "RB-1",
        "RB",
        "MUST",
        "Malformed and hostile packets never crash, detach or mis-forward, "
        "and are never emitted malformed.",
    ),
    _R("RB-2", "RB", "MUST", "Non-VIP traffic passes untouched."),
    _R("RB-3", "RB", "SHOULD", "Fragments are handled consistently."),
    _R(
        "RB-4", "RB", "MUST", "Servers accept encapsulated traffic only from the stack's own MUXes."
    ),
)

BY_ID: dict[str, Requirement] = {r.id: r for r in REQUIREMENTS}


def get(req_id: str) -> Requirement:
    """The requirement with this ID; a KeyError names the known IDs."""
    try:
        return BY_ID[req_id]
    except KeyError:
        raise KeyError(f"unknown requirement {req_id!r}; known: {', '.join(BY_ID)}") from None
