"""The requirement catalogue: IDs that tests, checkers, mutants, report rows and gates cite.

Each :class:`Requirement` has an ID (family and number), a level (MUST/SHOULD/MAY), a statement
written with the symbols of its named parameters, the measurement that decides it (which
observations, which rule), the parameters with their defaults, and the checker (a pure function
in :mod:`dsrconform.invariants`, named ``module:function``) that returns its verdict. IDs are
stable: never renumber, only add; a changed statement keeps its ID's meaning.

``SPEC.md`` at the repository root is generated from this module, never edited by hand::

    python -m dsrconform.spec --write SPEC.md     # or: dsrconform spec --markdown > SPEC.md
    python -m dsrconform.spec --check SPEC.md     # exit 1 if it is out of date

This module imports nothing heavy (``dsrconform spec`` must stay fast): checkers are named, not
imported; :func:`dsrconform.invariants.verdict.resolve_checker` imports them when they run.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dsrconform.errors import ConfigError

Level = Literal["MUST", "SHOULD", "MAY"]
Family = Literal["RW", "DP", "AF", "SF", "MF", "SC", "RB"]
LEVELS: tuple[Level, ...] = ("MUST", "SHOULD", "MAY")
FAMILIES: dict[Family, str] = {
    "RW": "Rewrite correctness",
    "DP": "DSR path",
    "AF": "Affinity",
    "SF": "SYN flood",
    "MF": "MUX failure",
    "SC": "Scale-out and network changes",
    "RB": "Robustness",
}

ADDRESS_FAMILY_NAMES: dict[str, str] = {"ipv4": "IPv4", "ipv6": "IPv6"}
"""How the catalogue and the reports write an address family (``family_notes``' keys)."""


@dataclass(frozen=True)
class Param:
    """A named parameter of a requirement: ``symbol`` is how the statement writes it, ``name``
    how a checker and a caller's overrides spell it."""

    name: str
    symbol: str
    default: float
    unit: str
    meaning: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "symbol": self.symbol,
            "default": self.default,
            "unit": self.unit,
            "meaning": self.meaning,
        }


@dataclass(frozen=True)
class Requirement:
    id: str
    family: Family
    level: Level
    statement: str
    measure: str
    """How it is decided: the observations read and the rule applied to them."""
    checker: str
    """The deciding checker, ``module:function``."""
    params: tuple[Param, ...] = ()
    modes: tuple[str, ...] = ()
    """The rewrite modes (:data:`dsrconform.topology.MODES`) the requirement concerns; empty:
    every mode. A target supporting none of them is not asked
    (:mod:`dsrconform.applicability`: NOT APPLICABLE)."""
    minimum: str = ""
    """The least the checker must have seen of the stack working to PASS (below it: UNKNOWN
    naming what was missing; a violation seen is FAIL all the same). A stack that forwards
    nothing (the ``null`` target) never reaches it."""
    family_notes: tuple[tuple[str, str], ...] = ()
    """(address family, note) pairs: how the requirement reads in that family (``ipv4``,
    ``ipv6``) where the statement or its measure is family-specific (an ICMP type, a header
    field); the reports show the note of each family the requirement was judged in. A family
    without a note reads the text as it is."""

    def family_note(self, family: str) -> str:
        """The note for address ``family`` ("" when there is none)."""
        return dict(self.family_notes).get(family, "")

    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.params}

    def resolve_params(self, overrides: Mapping[str, Any]) -> dict[str, float]:
        """The defaults with ``overrides`` applied; ConfigError names an unknown parameter or a
        value that is not a finite, non-negative number."""
        known = self.defaults()
        out = dict(known)
        for name, value in overrides.items():
            if name not in known:
                raise ConfigError(
                    f"{self.id}: unknown parameter {name!r}; known: {', '.join(known) or 'none'}"
                )
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{self.id}: parameter {name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(
                    f"{self.id}: parameter {name} must be finite and >= 0, got {value}"
                )
            out[name] = float(value)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "family": self.family,
            "level": self.level,
            "statement": self.statement,
            "measure": self.measure,
            "params": [p.as_dict() for p in self.params],
            "minimum": self.minimum,
            "checker": self.checker,
            "modes": list(self.modes),
            "family_notes": dict(self.family_notes),
        }


# --- parameters shared by several requirements (each requirement carries its own copy) --------

# R's default is what the reference lab's flood reaches on a 2-vCPU machine with margin while
# the flood mix runs (measured: 60-105 k/s delivered, flood asked 130 k/s; ~130 k/s idle); a
# stack on real hardware should be judged with a higher one (``params=``).
_R = Param("flood_rate", "R", 50_000, "packets/s", "spoofed SYN rate the flood must reach")
_T = Param("flood_seconds", "T", 10, "s", "how long the flood must last")
_G = Param(
    "grace",
    "G",
    15,
    "s",
    "after the fault window, how long a break is still attributed to it (covers the clients' "
    "read timeout)",
)


def _n(name: str, symbol: str, default: float, what: str) -> Param:
    return Param(name, symbol, default, "", what)


_INV = "dsrconform.invariants"
_RW, _DP, _AF = f"{_INV}.rewrite", f"{_INV}.path", f"{_INV}.affinity"
_SF, _MF, _SC, _RB = f"{_INV}.flood", f"{_INV}.muxfail", f"{_INV}.scale", f"{_INV}.robust"
_BREAK = "is reset, times out, fails integrity or closes short"
_SURVIVE = (
    f"no connection established before it and still open at its start {_BREAK} between its "
    "start and G s after its end"
)

_Q = Requirement
REQUIREMENTS: tuple[Requirement, ...] = (
    _Q(
        "RW-1",
        "RW",
        "MUST",
        "Replies carry the VIP:port the client addressed, in every mode and via every MUX.",
        "Taps toward clients and histories: every TCP/UDP packet sent to the client endpoint "
        "(address, port) of a recorded flow while that flow lived has the flow's VIP:port as "
        "its source; decided on at least N flows whose replies were seen.",
        f"{_RW}:check_replies_carry_vip",
        (_n("min_flows", "N", 1, "flows with replies seen needed to decide"),),
        minimum=(
            "the replies of N recorded flows seen on taps toward clients, and a reply from every "
            "service the recorded flows addressed."
        ),
    ),
    _Q(
        "RW-2",
        "RW",
        "MUST",
        "IP and L4 checksums are valid on every packet after every rewrite.",
        "Taps on SUT nodes' sending side (MUX, server, gateway) and toward clients: no packet "
        "with an invalid IPv4 checksum (outer or inner) or TCP/UDP/ICMP checksum; at least N "
        "checksums verified in the replies of every service the traffic addressed. Tap records "
        "lying wholly inside a 'crafted' fault window "
        "(deliberately bad input) are judged by RB-1 instead.",
        f"{_RW}:check_checksums_valid",
        (_n("min_packets", "N", 1, "verified checksums in each addressed service's replies"),),
        minimum=(
            "for every service the traffic addressed, its replies (from its VIP:port: the "
            "rewritten packets) seen reaching clients with N checksums verified in them."
        ),
        family_notes=(
            ("ipv4", "IPv4 header checksums (outer and inner) and TCP/UDP/ICMP checksums."),
            (
                "ipv6",
                "IPv6 has no header checksum: TCP, UDP and ICMPv6 checksums over the "
                "pseudo-header with 128-bit addresses (ICMPv6's covers it too, unlike ICMP's); "
                "a zero UDP checksum is invalid over IPv6. An IPv4-in-IPv6 inner header keeps "
                "its IPv4 checksum.",
            ),
        ),
    ),
    _Q(
        "RW-3",
        "RW",
        "MUST",
        "No server address leaks to clients.",
        "Taps toward clients: no packet has a server's address as its source (outer, inner or "
        "quoted by an ICMP error), except in a conversation the client began with that address: "
        "the same 5-tuple (for an ICMP error, the quoted header's, whose peer must be that "
        "address), whose first packet from the client (for TCP, in a record holding a SYN) came "
        "no later; at least N replies of every service the traffic addressed seen toward clients.",
        f"{_RW}:check_no_server_address_leaks",
        (_n("min_packets", "N", 1, "replies of each addressed service toward clients needed"),),
        minimum=(
            "for every service the traffic addressed, N of its replies (the packets a stack "
            "rewrites, or leaks) seen reaching clients."
        ),
    ),
    _Q(
        "RW-4",
        "RW",
        "MUST",
        "Per-MUX external VIPs are honoured: a reply leaves from the VIP its flow came through.",
        "As RW-1, for the flows addressed to VIPs that only some MUXes announce (per-MUX "
        "external VIPs); decided on at least N such flows.",
        f"{_RW}:check_per_mux_vip_honoured",
        (_n("min_flows", "N", 1, "flows to per-MUX VIPs with replies seen needed to decide"),),
        minimum=(
            "the replies of N recorded flows to per-MUX VIPs, and a reply from every per-MUX "
            "service the recorded flows addressed."
        ),
    ),
    _Q(
        "RW-5",
        "RW",
        "MUST",
        "Bytes arrive intact end to end.",
        "Histories: no integrity error; every stream that closed delivered exactly its expected "
        "bytes, all verified against the stream pattern; at least N streams completed with "
        "verified bytes. Streams "
        "cut by a reset or timeout are judged by the survival requirements.",
        f"{_RW}:check_bytes_intact",
        (_n("min_streams", "N", 1, "completed streams needed to decide"),),
        minimum="N TCP streams to a VIP closed by their server after delivering verified bytes.",
    ),
    _Q(
        "RW-6",
        "RW",
        "MUST",
        "Encapsulation overhead is handled: MSS clamp or working PMTU "
        "(packet-too-big for a flow reaches its server).",
        "Histories: every established flow that sent at least U request bytes (full-sized "
        "segments toward the VIP) succeeded. Taps: every ICMP fragmentation-needed quoting a VIP "
        "flow that "
        "entered a MUX reached that flow's server and no other.",
        f"{_RW}:check_encap_overhead_handled",
        (Param("upload_bytes", "U", 4096, "bytes", "request size that needs full segments"),),
        minimum=(
            "an upload of U bytes whose connection was established, or a fragmentation-needed "
            "error about a VIP flow with a known server entering a MUX."
        ),
        family_notes=(
            (
                "ipv4",
                "PMTU signal: ICMP destination unreachable, fragmentation needed (type 3, code "
                "4), quoting the flow's IPv4 header; IPIP adds 20 bytes.",
            ),
            (
                "ipv6",
                "PMTU signal: ICMPv6 Packet Too Big (type 2, code 0), quoting the flow's IPv6 "
                "header; IPv6 routers never fragment, so a PTB that misses the flow's server "
                "is a black hole. IPv6-in-IPv6 and IPv4-in-IPv6 add 40 bytes (IPv6's minimum "
                "MTU is 1280).",
            ),
        ),
    ),
    _Q(
        "RW-7",
        "RW",
        "SHOULD",
        "ICMP errors about a flow reach the flow's server.",
        "Taps: every ICMP error other than fragmentation-needed (unreachable, time exceeded, "
        "parameter problem) quoting a VIP flow that entered a MUX reached that flow's server "
        "and no other.",
        f"{_RW}:check_icmp_errors_reach_flow_server",
        minimum="an ICMP error about a VIP flow with a known server entering a MUX.",
        family_notes=(
            (
                "ipv4",
                "ICMP destination unreachable (type 3, codes other than 4), time exceeded "
                "(11), parameter problem (12).",
            ),
            (
                "ipv6",
                "ICMPv6 destination unreachable (type 1), time exceeded (3), parameter "
                "problem (4); Packet Too Big (2) is RW-6's.",
            ),
        ),
    ),
    _Q(
        "RW-8",
        "RW",
        "MUST",
        "Encapsulation keeps the client's DSCP, and its ECN field follows RFC 6040.",
        "Taps on the MUXes' sending side: no encapsulated packet whose outer DSCP differs from "
        "its inner header's, or whose outer ECN field is neither the inner one's (normal mode) "
        "nor Not-ECT (compatibility mode); no encapsulated flow carrying a DSCP or an ECN "
        "codepoint its client's packets did not (but CE on an ECN-capable flow); at least N "
        "encapsulated packets with a DSCP mark and N ECN-capable ones seen.",
        f"{_RW}:check_marks_kept",
        (_n("min_packets", "N", 1, "marked and ECN-capable encapsulated packets needed"),),
        minimum="N encapsulated packets with a DSCP mark and N ECN-capable ones sent by the MUXes.",
        family_notes=(
            ("ipv4", "DSCP and ECN: the IPv4 TOS byte's six and two bits."),
            (
                "ipv6",
                "DSCP and ECN: the IPv6 Traffic Class's six and two bits; the outer IPv6 "
                "header takes them from the inner header (IPv4-in-IPv6: its TOS byte).",
            ),
        ),
    ),
    _Q(
        "DP-1",
        "DP",
        "MUST",
        "No server-to-client packet crosses a MUX.",
        "Taps on every MUX's links: no packet whose destination, outer or encapsulated, is a "
        "client address (the clients' and the flood sources').",
        f"{_DP}:check_return_path_bypasses_mux",
        minimum=(
            "client packets to a VIP on a MUX's link, and a reply from every service the traffic "
            "addressed reaching a client."
        ),
    ),
    _Q(
        "DP-2",
        "DP",
        "SHOULD",
        "MUX load follows inbound traffic only.",
        "Taps: bytes the MUXes receive (their own control traffic aside) are at most (1 + s) "
        "times the bytes clients sent to VIPs; decided once clients sent at least B bytes to "
        "VIPs. The reply bytes are reported to show the asymmetry.",
        f"{_DP}:check_mux_load_follows_inbound",
        (
            _n("slack", "s", 0.10, "allowed excess over the inbound bytes"),
            Param("min_inbound_bytes", "B", 10_000, "bytes", "inbound bytes needed to decide"),
        ),
        minimum=(
            "B bytes from clients to VIPs, B bytes of client-to-VIP traffic received by the MUXes, "
            "and a reply from every service the traffic addressed reaching a client."
        ),
    ),
    _Q(
        "AF-1",
        "AF",
        "MUST",
        "Every packet of a TCP connection reaches one server while the backend set is stable.",
        "Taps on every server's receiving side, and histories when present: the packets of each "
        "client TCP endpoint reach one server, the one the history says answered; connections "
        "overlapping a backend change are left out; a 5-tuple reused across a change (the taps "
        "add a tuple up over the run) is judged per connection that overlaps none, by the "
        "servers certainly reached during it (a record whose first or last packet falls "
        "inside); tuple probes are no connections; decided on at least N connections the stack "
        "answered.",
        f"{_AF}:check_connection_affinity",
        (_n("min_flows", "N", 1, "connections needed to decide"),),
        minimum=(
            "N connections seen by the server taps that the stack answered (their handshake "
            "completed, or the server's packets reached the client)."
        ),
    ),
    _Q(
        "AF-2",
        "AF",
        "MUST",
        "Every packet of a UDP 5-tuple reaches one server while the backend set is stable.",
        "Histories (the server id in each reply) and, when present, taps on servers' receiving "
        "side: each UDP 5-tuple is answered by and reaches one server; flows overlapping a "
        "backend change are left out; decided on at least N flows the stack answered.",
        f"{_AF}:check_udp_affinity",
        (_n("min_flows", "N", 1, "UDP flows needed to decide"),),
        minimum=(
            "N UDP flows the stack answered (a reply in the history or on a tap toward the client) "
            "among those judged."
        ),
    ),
    _Q(
        "AF-3",
        "AF",
        "SHOULD",
        "New flows spread across servers within a stated bound: each of a service's k servers "
        "answers within epsilon of 1/k of them.",
        "Histories: for each service with at least n new flows started outside backend changes, "
        "each backend's share of the flows' first answers is within epsilon of 1/k; the "
        "chi-square statistic is reported. Services with fewer flows are left out; if none is "
        "left, UNKNOWN.",
        f"{_AF}:check_spread_within_bound",
        (
            _n("epsilon", "epsilon", 0.05, "allowed deviation of a share from 1/k"),
            _n("min_samples", "n", 2000, "new flows per service needed to decide"),
        ),
        minimum="n new flows of one service answered by a known server.",
    ),
    _Q(
        "AF-4",
        "AF",
        "MUST",
        "New flows spread loosely over a service's servers: none left without new flows, none "
        "above m times its share, over many client addresses and ports.",
        "Histories: for each service with at least n new flows started outside backend changes, "
        "every backend answered at least one and none more than m/k of them; for each client "
        "address with at least a distinct 5-tuples (source ports) among its new flows to the "
        "service, no server answered more than m/k of those 5-tuples (a flow hash over part of "
        "the 5-tuple sends one address's flows to one server; a reused 5-tuple counts once); "
        "for a service with two or more backends, of the source ports used by at least b client "
        "addresses among its new flows, at most a share s had all their flows on one server (a "
        "hash over part of the client address, e.g. IPv6's low 32 bits, sends one port's flows "
        "from addresses differing elsewhere to one server; a fair one, with probability "
        "k^(1-b) per port), judged when at least p such ports were seen, else that clause is "
        "not judged (the verdict's measurements say so). Services with fewer flows are left "
        "out; if none is left, UNKNOWN. AF-3 is the strict bound (SHOULD).",
        f"{_AF}:check_spread_loosely_bounded",
        (
            _n("max_multiple", "m", 2.0, "most a server may get, in multiples of its share 1/k"),
            _n("min_samples", "n", 100, "new flows per service needed to decide"),
            _n("min_per_address", "a", 20, "distinct 5-tuples from one client address to judge it"),
            _n(
                "min_addresses_per_port",
                "b",
                4,
                "client addresses sharing a source port to count it",
            ),
            _n("min_shared_ports", "p", 20, "source ports shared by b addresses to judge them"),
            _n(
                "max_one_server_share",
                "s",
                0.5,
                "most of those ports whose flows may all reach one server",
            ),
        ),
        minimum="n new flows of one service answered by a known server.",
    ),
    _Q(
        "SF-1",
        "SF",
        "MUST",
        "Established connections survive a spoofed SYN flood of R packets/s for T s.",
        "Fault timeline and histories: for each syn-flood window that reached 95% of R for T s "
        f"and overlaps no backend change, {_SURVIVE}.",
        f"{_SF}:check_established_survive_flood",
        (_R, _T, _G),
        minimum=(
            "a flood of R packets/s for T s overlapping no backend change, and a connection "
            "established (handshake completed) before it and open at its start."
        ),
    ),
    _Q(
        "SF-2",
        "SF",
        "SHOULD",
        "Legitimate new connections complete during a flood of R packets/s: at least a share S "
        "succeeds and the 99th percentile of connect latency is at most L.",
        "Histories: of the TCP connections attempted during each syn-flood window (95% of R, "
        "T s), the share that succeeded is at least S and the 99th percentile of the time to "
        "connect is at most L; at least N attempts.",
        f"{_SF}:check_new_connections_during_flood",
        (
            _R,
            _T,
            _n("min_success", "S", 0.99, "share of attempts that must succeed"),
            Param("max_latency", "L", 1.0, "s", "99th percentile of connect latency"),
            _n("min_attempts", "N", 50, "attempts during the flood needed to decide"),
        ),
        minimum=(
            "N connections attempted during floods of R packets/s for T s (a share S of them must "
            "succeed to PASS)."
        ),
    ),
    _Q(
        "SF-3",
        "SF",
        "SHOULD",
        "Established connections survive a flood that coincides with a backend change.",
        "Fault timeline and histories: for each syn-flood window (95% of R, T s) that overlaps "
        "a backend change (add, remove, drain), no connection established before both and "
        f"still open when the first began {_BREAK} until G s after the later one ended.",
        f"{_SF}:check_survive_flood_with_backend_change",
        (_R, _T, _G),
        minimum=(
            "a flood of R packets/s for T s overlapping a backend change, and a connection "
            "established before both and open when the first began."
        ),
    ),
    _Q(
        "SF-4",
        "SF",
        "MUST",
        "The MUX keeps forwarding during a flood.",
        "Histories, and taps on MUX links to tell which MUX carried each attempt: in every "
        "I-second interval of each syn-flood window (95% of R, T s), every MUX that received "
        "new legitimate connection attempts completed at least one of them.",
        f"{_SF}:check_mux_forwards_during_flood",
        (_R, _T, Param("interval", "I", 1.0, "s", "length of each interval judged")),
        minimum=(
            "legitimate connections attempted during a flood of R packets/s for T s (every MUX "
            "must complete one in each interval to PASS)."
        ),
    ),
    _Q(
        "MF-1",
        "MF",
        "MUST",
        "Connections through a failed MUX survive when re-hashed to another MUX "
        "(backend set stable).",
        "Fault timeline, taps on MUX links (which MUX carried each connection before the "
        "failure) and histories: for each mux-fail window that overlaps no backend change, no "
        "connection carried by the failed MUX before it and still open at its start "
        f"{_BREAK} between its start and G s after its end.",
        f"{_MF}:check_rehashed_connections_survive",
        (_G,),
        minimum=(
            "a mux-fail window naming its MUX and overlapping no backend change, and a connection "
            "that MUX carried, established before the failure and open at its start."
        ),
    ),
    _Q(
        "MF-2",
        "MF",
        "MUST",
        "Connections through healthy MUXes are untouched by another MUX's failure.",
        "As MF-1, for the connections carried only by the other MUXes: none breaks or stalls "
        "longer than S between the failure's start and G s after its end.",
        f"{_MF}:check_healthy_mux_connections_untouched",
        (_G, Param("max_stall", "S", 1.0, "s", "longest stall allowed")),
        minimum="as MF-1, a connection carried only by the other MUXes.",
    ),
    _Q(
        "MF-3",
        "MF",
        "MUST",
        "New connections recover within tau after the failed MUX's route is withdrawn.",
        "Fault timeline (mux-fail and route-withdrawn) and histories: every new connection "
        "attempted later than tau after the withdrawal succeeds; the recovery time (start of "
        "the last failed attempt minus the withdrawal) is reported; at least N attempts after "
        "tau.",
        f"{_MF}:check_new_connections_recover",
        (
            Param("recovery_seconds", "tau", 5.0, "s", "recovery time bound"),
            _n("min_attempts", "N", 10, "attempts after tau needed to decide"),
        ),
        minimum=(
            "a mux-fail window with its route withdrawal, and N connections attempted later than "
            "tau after it (all must succeed to PASS)."
        ),
    ),
    _Q(
        "MF-4",
        "MF",
        "MUST",
        "A MUX rejoining with empty state breaks no connection.",
        f"Fault timeline (mux-rejoin) and histories: for each rejoin, {_SURVIVE}.",
        f"{_MF}:check_rejoin_breaks_nothing",
        (_G,),
        minimum="a mux-rejoin window, and a connection established before it and open at its "
        "start.",
    ),
    _Q(
        "SC-1",
        "SC",
        "MUST",
        "Adding a server or a MUX breaks no established connection.",
        f"Fault timeline (backend-add, mux-add) and histories: for each addition, {_SURVIVE}.",
        f"{_SC}:check_scale_out_breaks_nothing",
        (_G,),
        minimum=(
            "a backend-add or mux-add window, and a connection established before it and open at "
            "its start."
        ),
    ),
    _Q(
        "SC-2",
        "SC",
        "SHOULD",
        "A backend change remaps at most 1/(N+1) + epsilon of new flows "
        "(in general: the servers changed over the larger backend count, plus epsilon).",
        "Fault timeline (backend-add or backend-remove, with the backends before and after) and "
        "taps on the links out of each MUX: of the tuple probes (repeated bare SYNs of fixed "
        "5-tuples from the lab's probe network, which no stack keeps state for) sent both before "
        "the change began and after it ended, the share sent to another server afterwards is at "
        "most changed / max(N_before, N_after) + epsilon; at least n tuples. No tuple moving at "
        "all where some should is UNKNOWN (the change was not applied, or the stack keeps state "
        "for bare SYNs).",
        f"{_SC}:check_minimal_remapping",
        (
            _n("epsilon", "epsilon", 0.05, "allowed remapping above the minimum"),
            _n("min_samples", "n", 1000, "tuples probed before and after needed to decide"),
        ),
        minimum=(
            "n tuple probes the MUXes were seen sending to servers before and after a backend "
            "change that lists its backends, and some moved where some should."
        ),
    ),
    _Q(
        "SC-3",
        "SC",
        "MUST",
        "Draining a server moves no established connection and sends it no new one.",
        "Fault timeline (backend-drain naming the server) and histories: no connection to the "
        f"drained server established before the drain and open at its start {_BREAK} until G s "
        "after the drain ends; no connection started later than W after the drain began is "
        "answered by the drained server, unless its 5-tuple is one the stack remembers there (a "
        "connection on it reached that server before W: MUXes keep state); a drain naming a "
        "VIP judges that service only.",
        f"{_SC}:check_drain",
        (_G, Param("settle", "W", 1.0, "s", "time for the drain to reach every MUX")),
        minimum=(
            "a connection to the drained server established before the drain and open at its "
            "start, and a new connection started later than W whose server is known."
        ),
    ),
    _Q(
        "SC-4",
        "SC",
        "MUST",
        "Configuration changes apply atomically and converge on every MUX within tau.",
        "Fault timeline (config-change and backend changes) and taps on the links out of each "
        "MUX, for the tuple probes sent before the change began and after it (repeated "
        "bare SYNs of fixed 5-tuples): each MUX sends each tuple to at most two servers, one "
        "after the other (never old, other, new; never back, give or take S); its change comes "
        "within tau of the change's start; no MUX sends a tuple to a removed or drained server "
        "later than tau; a MUX that moves none of its tuples where about five or more should "
        "move, while another MUX moves its own, never applied the change; and one instant "
        "separates every tuple's last packet to its old server from every tuple's first to its "
        "new one on that MUX, within S (a table rewritten in place sends some tuples to new "
        "servers while others still go to old ones); at least N tuples probed later than tau.",
        f"{_SC}:check_atomic_convergence",
        (
            Param("converge_seconds", "tau", 2.0, "s", "convergence time bound"),
            Param("atomic_slack", "S", 0.005, "s", "timing slack of the one-instant check"),
            _n("min_tuples", "N", 20, "tuples probed after tau needed to decide"),
        ),
        minimum=(
            "N tuple probes the MUXes were seen sending to servers later than tau after each "
            "change, and some moved where about five or more should."
        ),
    ),
    _Q(
        "SC-5",
        "SC",
        "MAY",
        "A backend change followed by a MUX loss breaks no connection (breakage is measured).",
        "Fault timeline (a backend change, then a mux-fail) and histories: of the connections "
        "established before the backend change and open when the MUX fails (carried by that "
        "MUX, when MUX-link taps tell), the share that breaks by G s after the failure's end is "
        "at most B (a daisy-chaining stack such as Beamer keeps it at zero).",
        f"{_SC}:check_change_then_mux_loss",
        (_G, _n("max_breakage", "B", 0.0, "share of those connections allowed to break")),
        minimum=(
            "a backend change then a mux-fail, and a connection established before the change and "
            "open when the MUX failed."
        ),
    ),
    _Q(
        "RB-1",
        "RB",
        "MUST",
        "Malformed and hostile packets never crash, detach or mis-forward, "
        "and are never emitted malformed.",
        "Fault timeline (crafted windows), taps and histories: no tap on a SUT node's sending "
        "side counts a malformed packet; of the legitimate connections attempted during and "
        "after each crafted window, a share of at least S succeeds (the data plane is still "
        "attached and forwarding).",
        f"{_RB}:check_hostile_packets_harmless",
        (_n("min_success", "S", 0.99, "share of legitimate attempts that must succeed"),),
        minimum=(
            "a crafted window, and legitimate connections attempted during or after it (a share S "
            "of them must succeed to PASS)."
        ),
        family_notes=(
            (
                "ipv6",
                "Hostile IPv6 includes extension-header chains (hop-by-hop, routing, "
                "destination options) ahead of TCP/UDP on VIP traffic: a stack that does not "
                "walk them drops them (the reference stack drops and counts them), never "
                "forwards them balanced on a guessed port.",
            ),
        ),
    ),
    _Q(
        "RB-2",
        "RB",
        "MUST",
        "Non-VIP traffic passes untouched.",
        "Taps on MUX links and histories: no MUX sends an encapsulated packet whose inner "
        "destination is not a VIP; every recorded flow to a non-VIP address succeeded.",
        f"{_RB}:check_non_vip_untouched",
        minimum=(
            "a MUX seen forwarding VIP traffic toward a server (a data plane on the path), and "
            "non-VIP flows recorded or non-VIP packets into a MUX whose sending side is tapped."
        ),
    ),
    _Q(
        "RB-3",
        "RB",
        "SHOULD",
        "Fragments are handled consistently.",
        "Taps: for each (client address, VIP, protocol) whose IPv4 fragments entered a MUX, the "
        "fragments reach one server or none, and all of them arrive or none does.",
        f"{_RB}:check_fragments_consistent",
        minimum=(
            "IPv4 fragments from a client to a VIP entering a MUX, and a MUX seen forwarding VIP "
            "traffic toward a server."
        ),
        family_notes=(
            (
                "ipv4",
                "IPv4 fragments: the MF flag or a non-zero offset; only the first carries the "
                "ports.",
            ),
            (
                "ipv6",
                "IPv6 fragments: a Fragment header (next header 44); only the first carries "
                "the ports. Dropping every fragment to a VIP is consistent (the reference stack "
                "drops and counts them).",
            ),
        ),
    ),
    _Q(
        "RB-4",
        "RB",
        "MUST",
        "Servers accept encapsulated traffic only from the stack's own MUXes.",
        "Taps: for every encapsulated packet (IPIP, or GUE: each encapsulation the target "
        "declares is forged) reaching a server from a source that is not a MUX, no packet "
        "answering its inner flow (to the inner source address and port) appears afterwards on "
        "any tapped link.",
        f"{_RB}:check_decap_only_from_muxes",
        minimum=(
            "per encapsulation forged: a foreign packet in it reaching a server, and an answer to "
            "a packet in it a MUX sent a server (the servers decapsulate the stack's own traffic)."
        ),
        family_notes=(
            ("ipv4", "Foreign packets: IPIP (IPv4 protocol 4) or GUE from a non-MUX source."),
            (
                "ipv6",
                "Foreign packets: IPv6-in-IPv6 (next header 41) or IPv4-in-IPv6 (next header 4) "
                "from a non-MUX IPv6 source.",
            ),
        ),
    ),
)

BY_ID: dict[str, Requirement] = {r.id: r for r in REQUIREMENTS}


def get(req_id: str) -> Requirement:
    """The requirement with this ID; a KeyError names the known IDs."""
    try:
        return BY_ID[req_id]
    except KeyError:
        raise KeyError(f"unknown requirement {req_id!r}; known: {', '.join(BY_ID)}") from None


# --- SPEC.md ----------------------------------------------------------------------------------


def _num(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(requirements: Sequence[Requirement] = REQUIREMENTS) -> str:
    """The catalogue as Markdown: the text of ``SPEC.md``."""
    out = [
        "# dsrconform requirement catalogue",
        "",
        "<!-- Generated from dsrconform/spec.py: do not edit. Regenerate with",
        "     `python -m dsrconform.spec --write SPEC.md`; a unit test fails when it drifts. -->",
        "",
        "Every requirement has an ID (stable: never renumbered), a level (MUST, SHOULD, MAY as in",
        "RFC 2119), a statement written with the symbols of its parameters, how it is measured,",
        "and the checker that decides it: a pure function in `dsrconform.invariants` that reads",
        "the run's observations (connection histories, link taps, SUT counters, the fault",
        "timeline) and answers PASS, FAIL with evidence (flows, packets, links, times), or",
        "UNKNOWN when data is missing, incomplete (an overflowed tap) or too small to decide.",
        "A checker that crashes answers UNKNOWN, never PASS, and so does one that has not seen",
        "the minimum evidence it states (the stack serving what it judges: a stack that forwards",
        "nothing passes no requirement). Parameters can be overridden per",
        "run; the defaults are listed here. Times are CLOCK_MONOTONIC seconds.",
        "",
        "| ID | Level | Requirement | Checker |",
        "| --- | --- | --- | --- |",
    ]
    for r in requirements:
        fn = r.checker.partition(":")[2]
        out.append(f"| [{r.id}](#{r.id.lower()}) | {r.level} | {_cell(r.statement)} | `{fn}` |")
    for fam, title in FAMILIES.items():
        members = [r for r in requirements if r.family == fam]
        if not members:
            continue
        out += ["", f"## {fam}: {title}"]
        for r in members:
            out += ["", f"### {r.id}", "", f"**{r.level}.** {r.statement}", ""]
            out += [f"*Measured:* {r.measure}", ""]
            out += [f"*Minimum evidence to PASS (else UNKNOWN):* {r.minimum}", ""]
            if r.params:
                out += ["| Parameter | Name | Default | Unit | Meaning |"]
                out += ["| --- | --- | --- | --- | --- |"]
                for p in r.params:
                    out.append(
                        f"| {p.symbol} | `{p.name}` | {_num(p.default)} | {p.unit or '-'} "
                        f"| {_cell(p.meaning)} |"
                    )
                out.append("")
            if r.modes:
                out += [f"*Modes:* {', '.join(r.modes)} only", ""]
            for af, note in r.family_notes:
                out += [f"*{ADDRESS_FAMILY_NAMES.get(af, af)}:* {note}", ""]
            out.append(f"*Checker:* `{r.checker}`")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dsrconform.spec [--write FILE | --check FILE]`` (default: print)."""
    ap = argparse.ArgumentParser(prog="python -m dsrconform.spec", description=__doc__)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--write", metavar="FILE", help="write the Markdown catalogue to FILE")
    g.add_argument("--check", metavar="FILE", help="exit 1 if FILE differs from the catalogue")
    args = ap.parse_args(argv)
    text = render_markdown()
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
    elif args.check:
        p = Path(args.check)
        if not p.exists() or p.read_text(encoding="utf-8") != text:
            print(
                f"{p} is out of date; fix: python -m dsrconform.spec --write {p}", file=sys.stderr
            )
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
