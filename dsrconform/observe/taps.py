"""Link-tap records (per link, direction and flow) and SUT counter snapshots.

A tap sits on one interface of one lab node and one direction (``ingress``: packets the node
receives on it, ``egress``: packets it sends). It accounts every IPv4 and IPv6 packet to a flow
record keyed by the outer 5-tuple, plus the encapsulated 5-tuple (``inner``) for IP-in-IP and GUE
and the header an ICMP or ICMPv6 error quotes (``embedded``). A tap file holds one
:class:`TapInfo` per tap, then :class:`TapFlow` records that name their tap::

    {"kind":"tap","tap":"mux1-in","node":"mux1","ifname":"dsrc-router","link":"link1",
     "peer":"router","direction":"ingress","started":1000.0,"stopped":1060.0,"packets":91234,
     "lost_records":0}
    {"kind":"tap_flow","tap":"mux1-in","proto":6,"src":"198.18.1.2","dst":"198.19.0.10",
     "sport":40001,"dport":80,"packets":812,"bytes":42224,"first":1001.5,"last":1059.9,
     "l3_valid":812,"l4_valid":812,"tcp_flags":24}

A flow record that spans several of its tap's periods (a tap starts one at every lab event: a
backend change, a node killed) may list them in ``spans``, each with its own first and last time
and packets, in period order: ``"spans":[{"first":1001.5,"last":1020.1,"packets":400},
{"first":1024.2,"last":1059.9,"packets":412}]``. Without it a record says only when its flow's
first and last packets were seen over the whole run.

Records are family-agnostic: addresses are canonical strings of either family (``198.18.1.2``,
``2001:2:0:1::2``; see :func:`dsrconform.observe.history.ip`), so a checker compares them without
knowing the family. ``proto`` is the IP protocol, for IPv6 the upper-layer header after any
extension headers (TCP 6, UDP 17, ICMPv6 58); IP-in-IP is protocol 4 (IPv4 inside) or 41 (IPv6
inside) in either outer family.

``lost_records`` is the tap's overflow counter: packets it saw but could not account (its flow
map full, its ring buffer overrun). A tap that lost records says so, and a checker that needs
it then cannot answer PASS. ``malformed`` counts packets it could not parse as IPv4 or IPv6 and
their L4 header (truncated, bad IHL, a length beyond the frame, an extension header beyond the
payload).

Checksum counts are per packet: ``l3_valid`` when every IPv4 header in it (outer and inner) has a
correct checksum (IPv6 headers have none: always valid); ``l4_*`` for the innermost
TCP/UDP/ICMP/ICMPv6 checksum (over the IPv6 pseudo-header for IPv6). ``l4_unchecked`` counts
packets whose L4 checksum could not be judged: a GRO/GSO super-packet (one checksum for many
segments), a packet seen at egress (its checksum may be left for offload), or a UDP checksum of
zero ("none").

:class:`CounterSnapshot` is the SUT's own counters at one moment (per component: ``mux1``,
``server2``...), as the target reports them; it lives in its own file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from dsrconform.errors import ConfigError
from dsrconform.observe.history import Addr, Count, Time, hostport
from dsrconform.observe.jsonl import read_jsonl, write_jsonl

__all__ = [
    "CounterSnapshot",
    "FiveTuple",
    "TapFlow",
    "TapInfo",
    "TapRecord",
    "TapSet",
    "TapSpan",
    "load_counters_jsonl",
    "load_jsonl",
    "load_taps",
    "tcp_flags_text",
    "write_jsonl",
    "write_taps",
]

Direction = Literal["ingress", "egress"]
Port = Annotated[int, Field(ge=0, le=65535)]
ProtoNumber = Annotated[int, Field(ge=0, le=255)]
PROTO_NAMES = {1: "icmp", 4: "ipip", 6: "tcp", 17: "udp", 41: "ip6", 58: "icmp6"}
GUE_PORT = 6080
"""The UDP destination port of GUE encapsulation (variant 1, IPv4 or IPv6 directly in UDP, as
Katran's ``GUE_ENCAP`` build sends it, its ``GUE_DPORT``). Taps (``bpf/progs/tap.bpf.c``), pcap
decoding and evidence filters take a UDP datagram to this port whose payload starts with an IP
version nibble (4 or 6) as encapsulated, like IP-in-IP: its ``inner`` 5-tuple is the carried
packet's. The one place to change it; the suites' own traffic never uses this port."""
TCP_FLAG_LETTERS = "FSRPAUEC"  # bit 0 (FIN) .. bit 7 (CWR)


def tcp_flags_text(flags: int) -> str:
    """``0x12`` -> ``"SA"``: the letters of the TCP flags set, FIN first."""
    return "".join(c for i, c in enumerate(TCP_FLAG_LETTERS) if flags >> i & 1) or "-"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FiveTuple(_Record):
    """Addresses, protocol and ports of one IP header (either family) and its L4 header (ports
    0 if none)."""

    proto: ProtoNumber
    src: Addr
    dst: Addr
    sport: Port = 0
    dport: Port = 0

    def describe(self) -> str:
        name = PROTO_NAMES.get(self.proto, f"proto {self.proto}")
        if self.sport or self.dport:
            return f"{name} {hostport(self.src, self.sport)} > {hostport(self.dst, self.dport)}"
        return f"{name} {self.src} > {self.dst}"


class TapInfo(_Record):
    """One tap: where it sat, how long, and whether it accounted every packet."""

    kind: Literal["tap"] = "tap"
    tap: str
    """Identifier the tap's flow records refer to."""
    node: str
    ifname: str
    link: str
    """The topology link ("link3") or segment name ("srv") the interface belongs to."""
    peer: str | None = None
    """The node at the other end of the link (a segment member's peer is the segment's host)."""
    direction: Direction
    started: Time
    stopped: Time | None = None
    packets: Count = 0
    """IP packets seen, IPv4 and IPv6 (accounted or not)."""
    malformed: Count = 0
    lost_records: Count = 0
    """Overflow counter: packets seen but not accounted to any flow record."""

    @property
    def sender(self) -> str | None:
        """The node that sent the packets this tap saw (None: somewhere on a segment)."""
        return self.node if self.direction == "egress" else self.peer

    @property
    def receiver(self) -> str | None:
        """The node that received them (None: somewhere on a segment)."""
        return self.peer if self.direction == "egress" else self.node

    @property
    def overflowed(self) -> bool:
        return self.lost_records > 0

    def describe(self) -> str:
        towards = f" from {self.peer}" if self.direction == "ingress" else f" to {self.peer}"
        return (
            f"{self.node}:{self.ifname} {self.direction} ({self.link}"
            f"{towards if self.peer else ''})"
        )


class TapSpan(_Record):
    """A flow record's packets within one period of its tap (between two lab events)."""

    first: Time
    last: Time
    packets: Annotated[int, Field(ge=1)]


TCP_FIN, TCP_SYN, TCP_RST = 0x01, 0x02, 0x04
"""The TCP flag bits a tap keeps in :attr:`TapFlow.tcp_flags`."""


class TapFlow(_Record):
    """Packets of one flow seen by one tap."""

    kind: Literal["tap_flow"] = "tap_flow"
    tap: str
    proto: ProtoNumber
    src: Addr
    dst: Addr
    sport: Port = 0
    dport: Port = 0
    inner: FiveTuple | None = None
    """The encapsulated packet's 5-tuple (IP-in-IP of either family, or GUE to
    :data:`GUE_PORT`)."""
    icmp_type: Annotated[int, Field(ge=0, le=255)] | None = None
    icmp_code: Annotated[int, Field(ge=0, le=255)] | None = None
    embedded: FiveTuple | None = None
    """The header an ICMP error quotes (of the outer or the encapsulated ICMP)."""
    packets: Annotated[int, Field(ge=1)]
    bytes: Count
    first: Time
    last: Time
    l3_valid: Count = 0
    l3_invalid: Count = 0
    l4_valid: Count = 0
    l4_invalid: Count = 0
    l4_unchecked: Count = 0
    tcp_flags: Annotated[int, Field(ge=0, le=255)] = 0
    """OR of the TCP flags of every packet (of the innermost TCP header): TCP_FIN, TCP_SYN and
    TCP_RST are kept."""
    fragments: Count = 0
    """Packets that were fragments (IPv4: MF set or a non-zero offset; IPv6: a fragment header
    with either)."""
    dscp_seen: Annotated[int, Field(ge=0, lt=2**64)] = 0
    """Bitmap: bit d set when the innermost IP header of a packet carried DSCP d (IPv6: in its
    traffic class)."""
    ecn_seen: Annotated[int, Field(ge=0, le=15)] = 0
    """Bitmap: bit e set when it carried ECN codepoint e (0 Not-ECT, 1 ECT(1), 2 ECT(0), 3 CE)."""
    dscp_changed: Count = 0
    """Encapsulated packets whose outer DSCP was not the inner header's."""
    ecn_bad: Count = 0
    """Encapsulated packets whose outer ECN field was neither the inner's nor Not-ECT."""
    spans: tuple[TapSpan, ...] | None = None
    """The record's packets per period of its tap, in period order, when it spans several
    (periods are started by lab events: a backend change, a node killed)."""

    @model_validator(mode="after")
    def _consistent(self) -> TapFlow:
        if self.last < self.first:
            raise ValueError(f"last ({self.last}) is before first ({self.first})")
        if self.l3_valid + self.l3_invalid > self.packets:
            raise ValueError("l3_valid + l3_invalid exceed packets")
        if self.l4_valid + self.l4_invalid + self.l4_unchecked > self.packets:
            raise ValueError("l4_valid + l4_invalid + l4_unchecked exceed packets")
        if self.fragments > self.packets:
            raise ValueError("fragments exceed packets")
        if self.dscp_changed > self.packets or self.ecn_bad > self.packets:
            raise ValueError("dscp_changed or ecn_bad exceed packets")
        if self.spans is not None:
            if sum(p.packets for p in self.spans) != self.packets:
                raise ValueError("the spans' packets do not add up to the record's")
            for p in self.spans:
                if not self.first <= p.first <= p.last <= self.last:
                    raise ValueError(
                        f"span {p.first}..{p.last} is not within the record's {self.first}.."
                        f"{self.last} (or ends before it starts)"
                    )
        return self

    @property
    def parts(self) -> tuple[TapSpan, ...]:
        """The record's spans, or the whole record as one span."""
        if self.spans:
            return self.spans
        return (TapSpan.model_construct(first=self.first, last=self.last, packets=self.packets),)

    @property
    def outer(self) -> FiveTuple:
        # Fields already validated: construct without validating again (checkers ask this of
        # every record).
        return FiveTuple.model_construct(
            proto=self.proto, src=self.src, dst=self.dst, sport=self.sport, dport=self.dport
        )

    @property
    def payload(self) -> FiveTuple:
        """The 5-tuple of what is carried: the inner one if encapsulated, else the outer."""
        return self.inner if self.inner is not None else self.outer

    @property
    def is_icmp_error(self) -> bool:
        return self.embedded is not None

    def describe(self) -> str:
        out = self.outer.describe()
        if self.inner is not None:
            out += f" [inner {self.inner.describe()}]"
        if self.icmp_type is not None:
            out += f" icmp type {self.icmp_type} code {self.icmp_code}"
        if self.embedded is not None:
            out += f" about {self.embedded.describe()}"
        if self.tcp_flags:
            out += f" flags {tcp_flags_text(self.tcp_flags)}"
        return f"{out}, {self.packets} packets/{self.bytes} bytes"


TapRecord = Annotated[TapInfo | TapFlow, Field(discriminator="kind")]
TAP_RECORD: TypeAdapter[TapRecord] = TypeAdapter(TapRecord)  # type: ignore[arg-type]


class CounterSnapshot(_Record):
    """The SUT's counters at time ``t``: per component (``mux1``, ``server2``), name -> value."""

    kind: Literal["counters"] = "counters"
    t: Time
    components: dict[str, dict[str, int]]


COUNTER_SNAPSHOT: TypeAdapter[CounterSnapshot] = TypeAdapter(CounterSnapshot)


def load_jsonl(path: str | Path) -> list[TapRecord]:
    """Every record of a tap file, in file order (ConfigError names a bad line)."""
    return read_jsonl(path, TAP_RECORD, what="tap record", kinds_in="dsrconform.observe.taps")


def load_counters_jsonl(path: str | Path) -> list[CounterSnapshot]:
    """Every snapshot of a SUT counter file, in file order."""
    return read_jsonl(
        path, COUNTER_SNAPSHOT, what="counter snapshot", kinds_in="dsrconform.observe.taps"
    )


def load_taps(path: str | Path) -> TapSet:
    return TapSet.from_records(load_jsonl(path), source=str(path))


@dataclass
class TapSet:
    """Taps and their flow records, grouped by tap."""

    taps: dict[str, TapInfo] = field(default_factory=dict)
    flows: dict[str, list[TapFlow]] = field(default_factory=dict)

    @classmethod
    def from_records(cls, records: Iterable[TapRecord], *, source: str = "taps") -> TapSet:
        """Group records by tap; ConfigError for a flow of an undeclared tap or a tap declared
        twice (a flow record may come before or after its tap's declaration)."""
        ts = cls()
        orphans: dict[str, int] = {}
        for i, rec in enumerate(records, 1):
            if isinstance(rec, TapInfo):
                if rec.tap in ts.taps:
                    raise ConfigError(
                        f"{source}: record {i}: tap {rec.tap!r} is declared twice; fix: one "
                        "'tap' record per tap, with the final counters"
                    )
                ts.taps[rec.tap] = rec
                ts.flows.setdefault(rec.tap, [])
            else:
                ts.flows.setdefault(rec.tap, []).append(rec)
                orphans.setdefault(rec.tap, i)
        for tap, i in orphans.items():
            if tap not in ts.taps:
                raise ConfigError(
                    f"{source}: record {i}: flow of tap {tap!r}, which no 'tap' record declares; "
                    f"fix: write the tap's record (declared: {', '.join(ts.taps) or 'none'})"
                )
        return ts

    def records(self) -> Iterator[TapRecord]:
        for name, info in self.taps.items():
            yield info
            yield from self.flows.get(name, [])

    def items(self) -> Iterator[tuple[TapInfo, list[TapFlow]]]:
        for name, info in self.taps.items():
            yield info, self.flows.get(name, [])

    def __len__(self) -> int:
        return sum(len(v) for v in self.flows.values())


def write_taps(path: str | Path, taps: TapSet) -> int:
    """Write a tap set to a file (see :func:`write_jsonl`)."""
    return write_jsonl(path, taps.records())
