"""Link taps: per-flow packet accounting on a lab interface, in BPF (``bpf/progs/tap.bpf.c``).

A tap attaches to the tc ingress and egress hooks of one interface in one namespace (priority
1, before any target's tc programs, which it never affects: it returns TC_ACT_UNSPEC) and counts,
per flow and direction, IPv4 and IPv6 alike: packets, bytes, first and last time, TCP
SYN/FIN/RST, fragments, and packets with a bad IPv4 header or TCP/UDP/ICMP/ICMPv6 checksum (L4
checksums on ingress only: at egress a locally generated packet may not have its checksum yet; a
GUE packet's outer UDP checksum is verified too). A flow is its outer 5-tuple, plus the
encapsulated 5-tuple of an IP-in-IP packet (either family in either: protocol 4 or 41) or a GUE
one (IPv4 or IPv6 in UDP to ``taps.GUE_PORT``) and, for ICMP and ICMPv6, the type, code and the
5-tuple an error quotes. Addresses come out as canonical text of their family. Its flow table
never evicts: a full table counts the packets it could not record (``overflow``), and a checker
that sees overflow must answer UNKNOWN.

:meth:`LinkTap.new_period` starts a new period (a :class:`~dsrconform.observe.labtaps.LabTaps`
does at each lab event: a backend change, a node killed). The tap keeps each period's packets of
a flow apart; :meth:`LinkTap.flows` gives one record per flow still, with the ``spans`` (first
and last time, packets) of the periods it had packets in when there were several: a 5-tuple a
client reuses across a backend change then shows where its packets went after the change.

    with LinkTap("dsrc-basic.router", "dsrc-mux1") as tap:
        ...  # traffic
        flows = tap.flows()         # TapFlow records
        tap.counters()["overflow"]  # packets not recorded per flow

Times are ``bpf_ktime_get_ns`` (CLOCK_MONOTONIC), the clock ``time.monotonic_ns()`` reads.
"""

from __future__ import annotations

import ipaddress
import struct
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from dsrconform.bpf import libbpf
from dsrconform.bpf.build import compile_bpf
from dsrconform.errors import LabError
from dsrconform.netns import enter_netns
from dsrconform.observe.taps import GUE_PORT

if TYPE_CHECKING:
    from dsrconform.observe.taps import Direction

SOURCE = Path(__file__).resolve().parent.parent / "bpf" / "progs" / "tap.bpf.c"
PRIORITY = 1
DEFAULT_MAX_FLOWS = 262144
"""Records (flow, direction and period) a tap holds; allocated as they appear. The busiest tap of
the suites (the router's server segment in the ``scale`` scenario) holds ~44,000."""
_TUPLE = "16s16s2s2sBBBx"  # struct tap_tuple (ports in network order; then the family)
_KEY = struct.Struct("=" + _TUPLE * 3 + "BBBxI")  # struct tap_key: 3 tuples, ICMP, period
_VAL = struct.Struct("=15Q")  # struct tap_val
_META = ("packets", "non_ip", "overflow", "truncated")  # TAP_* slots
DIRECTIONS: tuple[Direction, ...] = ("ingress", "egress")
_ICMP_END = 3 * 7 + 3  # key fields before the period: 3 tuples, ICMP type, code, is_icmp


Tuple5 = tuple[int, str, str, int, int]
"""(protocol, source, destination, source port, destination port)."""


_TUPLE_FIELDS = 7


def _address(raw: bytes, family: int) -> str:
    """A ``struct tap_tuple`` address as text: IPv4 in its first 4 bytes, or all 16 for IPv6."""
    if family == 6:
        return str(ipaddress.IPv6Address(raw))
    return str(ipaddress.IPv4Address(raw[:4]))


def _tuple(raw: tuple[Any, ...]) -> tuple[Tuple5, int]:
    """(tuple, present) from the unpacked fields of a ``struct tap_tuple``."""
    src, dst, sport, dport, proto, present, family = raw
    return (proto, _address(src, family), _address(dst, family),
            int.from_bytes(sport, "big"), int.from_bytes(dport, "big")), present  # fmt: skip


Span = tuple[int, int, int]
"""(first_ns, last_ns, packets) of a flow within one period of its tap."""


@dataclass(frozen=True)
class TapFlow:
    """One flow and direction as a tap saw it."""

    src: str
    dst: str
    sport: int
    dport: int
    proto: int
    direction: str  # "ingress" (arrived on the interface) or "egress" (left it)
    packets: int
    bytes: int
    first_ns: int
    last_ns: int
    bad_l3: int  # packets with a bad IPv4 header checksum (IPv6 has none)
    bad_l4: int  # packets with a bad TCP/UDP/ICMP checksum (UDP without a checksum is fine)
    syn: int
    fin: int
    rst: int
    l4_checked: int  # packets whose L4 checksum was verified: ingress only (egress may be partial)
    fragments: int = 0  # packets that were fragments (outer or encapsulated)
    dscp_seen: int = 0  # bitmap: bit d set if the innermost header carried DSCP d
    ecn_seen: int = 0  # bitmap: bit e set if it carried ECN codepoint e (0-3)
    dscp_changed: int = 0  # encapsulated packets whose outer DSCP was not the inner one's
    ecn_bad: int = 0  # encapsulated packets whose outer ECN was neither the inner's nor Not-ECT
    inner: Tuple5 | None = None  # the IP-in-IP or GUE payload's 5-tuple
    icmp: tuple[int, int] | None = None  # ICMP type and code
    embedded: Tuple5 | None = None  # the 5-tuple an ICMP error quotes
    spans: tuple[Span, ...] = ()  # per period with packets, in period order, if more than one

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LinkTap:
    """A tap on ``ifname`` inside namespace ``netns`` (None: this namespace)."""

    def __init__(self, netns: str | None, ifname: str, *, max_flows: int = DEFAULT_MAX_FLOWS,
                 aggregate: str | Sequence[str] | None = None) -> None:  # fmt: skip
        """``aggregate``: networks (a SYN flood's spoofed sources; at most one per family, an
        IPv6 one no longer than /64) whose addresses are recorded as the network's own address
        with port 0: one record for the whole flood."""
        self.netns, self.ifname = netns, ifname
        obj = compile_bpf(SOURCE, tap_defines(aggregate))
        self._obj = libbpf.BpfObject(obj, max_entries={"dsrc_tap_flows": max_flows})
        self._ifindex: int | None = None
        self._attached: list[str] = []
        self.period = 0
        self._period_lock = threading.Lock()  # lab events may come from several fault threads
        self._closed = False

    def attach(self) -> LinkTap:
        from pyroute2 import IPRoute

        with enter_netns(self.netns):
            ipr = IPRoute()
        with ipr:
            found = ipr.link_lookup(ifname=self.ifname)
        if not found:
            raise LabError(f"no interface {self.ifname!r} in namespace {self.netns or 'host'}")
        self._ifindex = found[0]
        with enter_netns(self.netns):
            for direction, prog in zip(DIRECTIONS, ("dsrc_tap_in", "dsrc_tap_eg"), strict=True):
                libbpf.tc_attach(self._ifindex, self._obj.program(prog).fd, direction,
                                 priority=PRIORITY)  # fmt: skip
                self._attached.append(direction)
        return self

    def detach(self) -> None:
        """Remove the tap's filters (a deleted namespace took them with it: fine)."""
        while self._attached:
            direction = self._attached.pop()
            try:
                with enter_netns(self.netns):
                    libbpf.tc_detach(self._ifindex or 0, direction, priority=PRIORITY)
            except (LabError, libbpf.BpfError):
                continue

    def close(self) -> None:
        with self._period_lock:  # a lab event racing with close starts no period on a freed map
            self._closed = True
        try:
            self.detach()
        finally:
            self._obj.close()

    def __enter__(self) -> LinkTap:
        return self.attach()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()

    def new_period(self) -> int:
        """Start the next period: packets from now on make records of their own (merged back
        by :meth:`flows`, which keeps each period's span). Returns the new period's number
        (once closed, a no-op)."""
        with self._period_lock:  # numbered and written together: a period never goes back
            if self._closed:
                return self.period
            self.period += 1
            self._obj.map("dsrc_tap_period").update(struct.pack("=I", 0),
                                                    struct.pack("=I", self.period))  # fmt: skip
            return self.period

    # --- reading ------------------------------------------------------------------------------

    def flows(self) -> list[TapFlow]:
        """One record per flow and direction, its periods' records added up (with their spans
        when there are several)."""
        m = self._obj.map("dsrc_tap_flows")
        parts: dict[tuple[Any, ...], list[tuple[int, tuple[int, ...]]]] = {}
        for k in list(m.keys()):
            v = m.lookup(k)
            if v is None:
                continue
            fields = _KEY.unpack(k[: _KEY.size])
            counts = _VAL.unpack(v[: _VAL.size])
            # The map is read while packets arrive: a record inserted but not yet counted, or
            # counts torn between two atomic adds. Skip the first, keep the rest consistent.
            if counts[0] == 0:
                continue
            parts.setdefault(fields[:_ICMP_END], []).append((fields[_ICMP_END], counts))
        out = [_merged(fields, periods) for fields, periods in parts.items()]
        return sorted(out, key=lambda f: (f.first_ns, f.src, f.sport, f.direction))

    def counters(self, direction: str | None = None) -> dict[str, int]:
        """Packets seen, not IP (neither IPv4 nor IPv6), not recorded because the table was full,
        too short to parse: of one direction, or of both (None)."""
        m = self._obj.map("dsrc_tap_meta")
        dirs = DIRECTIONS if direction is None else (direction,)
        out = dict.fromkeys(_META, 0)
        for d in dirs:
            for slot, name in enumerate(_META):
                key = struct.pack("=I", slot + len(_META) * DIRECTIONS.index(d))
                out[name] += sum(struct.unpack("=Q", v[:8])[0] for v in m.lookup_percpu(key))
        return out


def tap_defines(aggregate: str | Sequence[str] | None = None) -> dict[str, str | int]:
    """The build defines of a tap aggregating ``aggregate`` (see :class:`LinkTap`); ValueError
    for a network that is not one, two of a family, or an IPv6 prefix longer than /64."""
    defines: dict[str, str | int] = {"TAP_GUE_PORT": GUE_PORT}
    nets = [aggregate] if isinstance(aggregate, str) else list(aggregate or [])
    for text in nets:
        net = ipaddress.ip_network(text)
        name = "TAP_AGG" if net.version == 4 else "TAP_AGG6"
        if f"{name}_NET" in defines:
            raise ValueError(f"aggregate: two IPv{net.version} networks ({nets}); fix: one each")
        if net.version == 4:
            defines |= {"TAP_AGG_NET": int(net.network_address), "TAP_AGG_MASK": int(net.netmask)}
        elif net.prefixlen > 64:
            raise ValueError(f"aggregate: {net} is longer than /64; fix: a /64 or shorter prefix")
        else:
            # Upper 64 bits, unsigned (the mask is beyond a signed literal's range).
            defines["TAP_AGG6_NET"] = f"{int(net.network_address) >> 64:#x}ULL"
            defines["TAP_AGG6_MASK"] = f"{int(net.netmask) >> 64:#x}ULL"
    return defines


def _merged(fields: tuple[Any, ...], periods: list[tuple[int, tuple[int, ...]]]) -> TapFlow:
    """One flow's record from its periods' records (key fields without the period)."""
    n = _TUPLE_FIELDS
    (proto, src, dst, sport, dport), d = _tuple(fields[0:n])
    inner, has_inner = _tuple(fields[n : 2 * n])
    embedded, has_embedded = _tuple(fields[2 * n : 3 * n])
    icmp_type, icmp_code, is_icmp = fields[3 * n : _ICMP_END]
    total = [0] * 11  # packets, bytes, bad_l3, bad_l4, syn, fin, rst, checked, fragments, ...
    dscp = ecn = 0
    spans: list[Span] = []
    for _, counts in sorted(periods):
        pk, by, first, last, b3, b4, syn, fin, rst, chk, frag, dseen, eseen, dchg, ebad = counts
        first = first or last
        last = max(last, first)
        b3, chk = min(b3, pk), min(chk, pk)
        b4 = min(b4, chk)
        dchg, ebad = min(dchg, pk), min(ebad, pk)
        for i, n in enumerate((pk, by, b3, b4, syn, fin, rst, chk, frag, dchg, ebad)):
            total[i] += n
        dscp |= dseen
        ecn |= eseen
        spans.append((first, last, pk))
    pk, by, b3, b4, syn, fin, rst, chk, frag, dchg, ebad = total
    return TapFlow(
        src, dst, sport, dport, proto, DIRECTIONS[d & 1], pk, by,
        min(s[0] for s in spans), max(s[1] for s in spans), b3, b4, syn, fin, rst, chk, frag,
        dscp, ecn, dchg, ebad,
        inner if has_inner else None, (icmp_type, icmp_code) if is_icmp else None,
        embedded if has_embedded else None, tuple(spans) if len(spans) > 1 else (),
    )  # fmt: skip


def to_records(
    tap: LinkTap, *, node: str, link: str, peer: str | None, started: float,
    stopped: float | None = None,
) -> list[Any]:  # fmt: skip
    """The tap's counts as :mod:`dsrconform.observe.taps` records (what the checkers read): one
    ``TapInfo`` per direction, named ``<node>:<ifname>:<direction>``, and its ``TapFlow``\\ s.

    The overflow counter is taken for the interface, not per direction: each direction's
    ``TapInfo`` carries both directions' losses, so a lossy tap makes both directions answer
    UNKNOWN, never PASS. ``malformed`` is the direction's own."""
    from dsrconform.observe import taps as t

    counters = tap.counters()
    flows = tap.flows()
    out: list[Any] = []
    for direction in DIRECTIONS:
        name = f"{node}:{tap.ifname}:{direction}"
        mine = [f for f in flows if f.direction == direction]
        own = tap.counters(direction)
        out.append(t.TapInfo(
            tap=name, node=node, ifname=tap.ifname, link=link, peer=peer, direction=direction,
            started=started, stopped=stopped,
            packets=own["packets"] - own["non_ip"],
            malformed=own["truncated"], lost_records=counters["overflow"],
        ))  # fmt: skip
        for f in mine:
            flags = (
                (t.TCP_SYN if f.syn else 0)
                | (t.TCP_FIN if f.fin else 0)
                | (t.TCP_RST if f.rst else 0)
            )
            out.append(t.TapFlow(
                tap=name, proto=f.proto, src=f.src, dst=f.dst, sport=f.sport, dport=f.dport,
                inner=_five(f.inner), embedded=_five(f.embedded), fragments=f.fragments,
                icmp_type=f.icmp[0] if f.icmp else None, icmp_code=f.icmp[1] if f.icmp else None,
                packets=f.packets, bytes=f.bytes, first=f.first_ns / 1e9, last=f.last_ns / 1e9,
                l3_valid=f.packets - f.bad_l3, l3_invalid=f.bad_l3,
                l4_valid=f.l4_checked - f.bad_l4, l4_invalid=f.bad_l4,
                l4_unchecked=f.packets - f.l4_checked, tcp_flags=flags,
                dscp_seen=f.dscp_seen, ecn_seen=f.ecn_seen, dscp_changed=f.dscp_changed,
                ecn_bad=f.ecn_bad,
                spans=tuple(t.TapSpan(first=a / 1e9, last=b / 1e9, packets=n)
                            for a, b, n in f.spans) or None,
            ))  # fmt: skip
    return out


def _five(t: Tuple5 | None) -> Any:
    from dsrconform.observe.taps import FiveTuple

    if t is None:
        return None
    return FiveTuple(proto=t[0], src=t[1], dst=t[2], sport=t[3], dport=t[4])
