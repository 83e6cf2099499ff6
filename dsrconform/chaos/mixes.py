"""The traffic mixes: how much of each kind of traffic a scenario runs (:class:`Mix`), and the
named mixes a scenario picks (``traffic: {mix: NAME}``, :data:`MIXES`), whose fields
``traffic.overrides`` may change."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any

from dsrconform.traffic.common import Mark

__all__ = [
    "CHAOS_MIX",
    "FLOOD_MIX",
    "GATE_MIX",
    "HEADER_MARKS",
    "HOSTILE_MIX",
    "KILL_MIX",
    "MIXES",
    "QUICK_MIX",
    "SCALE_MIX",
    "Mix",
    "mix_fields",
    "mix_for",
]

HEADER_MARKS: tuple[Mark, ...] = (
    (0, 64),
    (10 << 2 | 2, 64),  # AF11, ECT(0)
    (46 << 2 | 1, 255),  # EF, ECT(1)
    (34 << 2, 32),  # AF41, Not-ECT
    (8 << 2 | 3, 128),  # CS1, CE (marked upstream)
)
"""Real clients are not uniform: DSCP marks, ECN codepoints and initial TTLs vary per
connection (TCP keeps the DSCP; its ECN bits are the kernel's: ECT(0) once ECN is negotiated,
which the lab's clients ask for). RW-8 needs marked and ECN-capable packets to decide."""


@dataclass(frozen=True)
class Mix:
    """How much of each kind of traffic; the defaults take about ten seconds on basic.yaml."""

    seed: int = 1
    streams: int = 90
    """Long-lived streams per TCP service."""
    stream_bytes: int = 240_000
    stream_rate: int = 60_000
    """Bytes per second per stream (so each lasts stream_bytes / stream_rate seconds)."""
    short_conns: int = 2400
    """Short connections to the first TCP service (AF-3 decides on at least 2000)."""
    short_rate: float = 600.0
    short_reuse_ports: int = 0
    """With N > 0, the short connections bind N fixed local ports per source, cycling (the
    same 5-tuples again and again, across any backend change: AF-1); 0: the kernel's choice.
    The sources take turns, so every source uses the same ports: with N at least a source's
    share of the connections (:data:`SHARED_PORTS`), no tuple comes back, yet each port is used
    from every client address (AF-4's per-port clause: a hash over part of the address)."""
    uploads: int = 30
    upload_bytes: int = 16384
    """Bytes each upload sends: several full-sized segments (RW-6's default is 4096)."""
    udp_flows: int = 120
    """UDP 5-tuples per UDP service."""
    udp_datagrams: int = 8
    udp_interval: float = 0.25
    udp_no_checksum_every: int = 4
    """Every K-th UDP flow asks for replies without a UDP checksum (0: none)."""
    icmp_errors: int = 12
    """ICMP errors about live streams (cycling through ICMP_KINDS), each about another stream."""
    pings: int = 1
    """Echo requests from each client address to each server's own address (0: none)."""
    deadline: float = 60.0
    """Seconds each generator may run at most."""
    marks: tuple[Mark, ...] = HEADER_MARKS
    """(TOS, TTL) the connections and UDP flows of each generator cycle through."""
    capture_mux_links: bool = True
    """With evidence captures (``capture=True``), capture the MUX links too; False for a mix
    that runs beside a SYN flood (:func:`dsrconform.observe.evidence.start_captures`)."""


SHARED_PORTS = 1024
"""The steady mixes' short connections' fixed ports per source: more than a source's share of
them (2400 over basic.yaml's 7 addresses: ~343), so every tuple is new, and every port is used
from each client address (a correct flow hash spreads one port's flows from several addresses;
one that reads part of the address, e.g. IPv6's low 32 bits, may not: AF-4). The kernel's
range keeps the other half of the run's port block for streams, uploads and UDP flows."""

STEADY_MIX = Mix(short_reuse_ports=SHARED_PORTS)
"""The steady mix (~10 s on basic.yaml, every RW/DP/AF requirement)."""

QUICK_MIX = Mix(short_conns=300, streams=30, udp_flows=40, short_reuse_ports=SHARED_PORTS)
"""The steady mix of ``dsrconform steady --quick`` and the quick profile (~7 s of traffic on
basic.yaml): enough for every RW, DP and AF MUST requirement (AF-4 needs 100 new flows per
service, 30 per busy client address), not for AF-3 (a SHOULD: 2000 new flows)."""


FLOOD_MIX = Mix(
    streams=60, stream_bytes=600_000, stream_rate=20_000,  # 30 s streams: open across the flood
    short_conns=1400, short_rate=50.0,  # ~28 s of new connections, 500 during a 10 s flood
    uploads=0, udp_flows=40, udp_datagrams=3, udp_interval=22.0, icmp_errors=0, pings=0,
    deadline=60.0, capture_mux_links=False,  # the flood crosses them: evidence on clients only
)  # fmt: skip
"""Long streams established before the flood and open after it (plus the grace), new
connections at a steady rate all along (SF-1, SF-2, SF-4), and UDP flows idle across the whole
flood (datagrams at 0, 22 and 44 s; the flood runs from ~4 to ~17 s): a stack whose flood
evicts the state of idle flows shows it when the datagram at 22 s meets a backend change
(SF-1: a drain from the flood's end for 8 s; SF-3: a drain from ~13 s, inside the flood)."""

CHAOS_MIX = Mix(
    streams=60, stream_bytes=560_000, stream_rate=20_000,  # 28 s streams: across fail and rejoin
    short_conns=1300, short_rate=50.0,  # ~26 s of new connections: before, during and after
    uploads=0, udp_flows=40, udp_datagrams=26, udp_interval=1.0, icmp_errors=0, pings=0,
    deadline=60.0,
)  # fmt: skip
"""Streams and UDP flows open for ~28 s, new connections all along: open from before a MUX
fails until after it is back (MF-1..MF-4: the failure starts ~5 s in, the MUX is down ~8 s
after its withdrawal), or across a series of backend changes (SC-1, SC-3, SC-5)."""

SCALE_MIX = replace(CHAOS_MIX, short_reuse_ports=16)
"""CHAOS_MIX whose short connections cycle through 16 fixed local ports per client address: each
5-tuple comes back every ~2 s, across every backend change, as from clients that reuse ports.
A connection on a tuple the stack remembers must reach one server, the one it remembers (AF-1:
a MUX whose SYNs skip the connection table sends the SYN to the new server, the ACK to the old)."""


HOSTILE_MIX = Mix(
    streams=40, stream_bytes=300_000, stream_rate=20_000,  # 15 s streams, open across the sending
    short_conns=900, short_rate=40.0,  # ~22 s of new connections: RB-1's legitimate attempts
    uploads=0, udp_flows=40, udp_datagrams=20, udp_interval=1.0, icmp_errors=0, pings=0,
    deadline=45.0,
)  # fmt: skip
"""Legitimate traffic all along while hostile packets are sent (RB-1..RB-4)."""


KILL_MIX = replace(QUICK_MIX, stream_bytes=420_000, udp_datagrams=16)
"""QUICK_MIX whose streams last 7 s (and UDP flows 4 s): open across a MUX killed ~2-3 s
into the traffic and back ~3 s later (MF-1)."""


GATE_MIX = replace(
    SCALE_MIX,
    streams=30,
    stream_bytes=260_000,  # 13 s streams: open across the drain and the making active again
    # ~15 s of new connections on 16 reused ports per client address: across both changes
    # (AF-1) and after the hostile packets, the last part of the fault (RB-1's attempts)
    short_conns=525,
    short_rate=35.0,
    udp_flows=40,
    udp_datagrams=12,
    uploads=30,
    icmp_errors=12,
    pings=1,
    deadline=40.0,
)
"""The quick gate run's mix: the scale mix (short connections reusing 16 local ports per
client address, so a reused tuple's SYN meets each backend change: AF-1) shortened to 13-15 s,
with the steady mix's uploads, ICMP errors about live streams and pings (RW-6, RW-7, RW-3), so
one run judges steady state, the backend changes and the hostile packets."""


MIXES: dict[str, Mix] = {
    "steady": STEADY_MIX,
    "quick": QUICK_MIX,
    "chaos": CHAOS_MIX,
    "scale": SCALE_MIX,
    "flood": FLOOD_MIX,
    "hostile": HOSTILE_MIX,
    "kill": KILL_MIX,
    "gate": GATE_MIX,
}
"""Named mixes: ``steady`` (~10 s, every RW/DP/AF requirement), ``quick`` (~7 s), ``chaos``
(streams and UDP flows open ~28 s, new connections all along: faults from ~5 s), ``scale``
(chaos, reusing client ports: AF-1), ``flood`` (MUX links left out of the evidence captures: a
flood crosses them), ``hostile``, and the quick profile's ``kill`` and ``gate``."""

_SETTABLE = ("marks", "seed")  # not overridable: the seed is the run's, marks are a tuple


def mix_fields() -> list[str]:
    """The Mix fields a scenario may override."""
    return [f.name for f in dataclasses.fields(Mix) if f.name not in _SETTABLE]


def mix_for(name: str, overrides: dict[str, Any], seed: int) -> Mix:
    """The named mix with ``overrides`` and the run's seed."""
    return replace(MIXES[name], seed=seed, **overrides)
