"""Crafted and malformed packets for the robustness and ICMP requirements (RB-1, RB-3, RW-6, RW-7).

Builders are pure functions of a :class:`Flow` (a client's 5-tuple toward a VIP) that return
scapy IP packets of the flow's family (IPv6 flows: :mod:`dsrconform.traffic.crafted6`, whose
builders the entry points here call for them); :func:`frame` puts Ethernet headers on them.
Each case of the catalogue (:data:`CASES`, :data:`CASES6` for IPv6) has a stable name, and
:func:`build_cases` builds "all" of them or a list::

    live = Flow("198.18.1.2", 40000, "198.19.0.10", 80, "tcp")   # a connection in progress
    cases = build_cases(live, "all", icmp_src="198.18.1.253")
    frames = frame_cases(cases, src_mac="02:..", dst_mac="02:..")
    sent = send_crafted("dsrc-basic.client", "dsrc-router", frames, deadline=5.0)
    window = sent.fault_window(target="router")                 # FaultWindow(kind="crafted")

In a lab, :func:`lab_injection` does the addressing (the client node's interface toward the
router, or the router's toward a MUX, with the MACs read from the namespaces).

Which 5-tuple each case uses:

- ICMP errors (``icmp-*``) quote the *live* flow's reply as the server sent it (source VIP:port,
  destination client:port), and go from ``icmp_src`` (a router-ish address; a port unreachable
  comes from the client's own address, as a closed client socket would send it) to the VIP.
- Every other case is a packet from the client toward VIP:port from ``probe_port``, a client port
  no connection uses: a hostile packet never lands in a live connection's byte stream, and its
  tap records (which aggregate per 5-tuple) lie wholly inside the crafted window, where RW-2
  leaves them to RB-1. Use a fresh probe port for each window (:func:`next_probe_port`).

Only addresses in 198.18.0.0/15 or 2001:2::/48 are accepted; a builder refuses any other with a
ValueError naming the field. Record-route slots are 0.0.0.0, as RFC 791 has them before a
router fills them.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from scapy.layers.inet import (
    ICMP,
    IP,
    TCP,
    UDP,
    IPerror,
    IPOption_Router_Alert,
    IPOption_RR,
    TCPerror,
    UDPerror,
)
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from dsrconform.errors import LabError
from dsrconform.netns import LAB_PREFIX, enter_netns, link_mac
from dsrconform.observe.observations import FaultWindow
from dsrconform.traffic import crafted6
from dsrconform.traffic.common import LAB_NET, LAB_NET6

if TYPE_CHECKING:
    from dsrconform.topology import Interface, Topology, Uplink

Proto = Literal["tcp", "udp"]
PROTO_NUMBERS: dict[str, int] = {"tcp": 6, "udp": 17}
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_HLEN = 14
MARK = b"dsrconform-crafted"
"""Payload marker, so a capture shows which packets the harness made."""

PROBE_PORTS = range(20000, 30000)
"""Client ports for hostile packets: below Linux's ephemeral range (32768-60999), so no
connection of the traffic programs (kernel-chosen ports) shares their 5-tuple."""


def _lab_addr(value: str, fieldname: str) -> str:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{fieldname}: {value!r} is not an IP address") from None
    net = LAB_NET if addr.version == 4 else LAB_NET6
    if addr not in net:
        raise ValueError(
            f"{fieldname}: {value} is outside the lab range {net}; crafted packets only "
            "carry lab addresses"
        )
    return str(addr)


def is_ipv6(addr: str) -> bool:
    return ipaddress.ip_address(addr).version == 6


def _port(value: int, fieldname: str) -> int:
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{fieldname}: {value!r} is not a port (1-65535)")
    return value


@dataclass(frozen=True)
class Flow:
    """A client's flow to a service: ``client:client_port -> vip:port`` over ``proto``."""

    client: str
    client_port: int
    vip: str
    port: int
    proto: Proto = "tcp"

    def __post_init__(self) -> None:
        _lab_addr(self.client, "client")
        _lab_addr(self.vip, "vip")
        if is_ipv6(self.client) != is_ipv6(self.vip):
            raise ValueError(f"client: {self.client} is not of the VIP {self.vip}'s family")
        _port(self.client_port, "client_port")
        _port(self.port, "port")
        if self.proto not in PROTO_NUMBERS:
            raise ValueError(f"proto: {self.proto!r} is not 'tcp' or 'udp'")

    @property
    def proto_number(self) -> int:
        return PROTO_NUMBERS[self.proto]

    @property
    def family(self) -> str:
        """``"ipv4"`` or ``"ipv6"``: the VIP's (and the client's) family."""
        return "ipv6" if is_ipv6(self.vip) else "ipv4"

    def from_port(self, client_port: int) -> Flow:
        """The same service from another client port (a probe port)."""
        return replace(self, client_port=client_port)

    def describe(self) -> str:
        def end(addr: str, port: int) -> str:
            return f"[{addr}]:{port}" if is_ipv6(addr) else f"{addr}:{port}"

        return f"{self.proto} {end(self.client, self.client_port)} > {end(self.vip, self.port)}"


_probe_seq = itertools.count((os.getpid() * 7919) % len(PROBE_PORTS))


def next_probe_port() -> int:
    """A client port from :data:`PROBE_PORTS`, a different one on each call (cycling)."""
    return PROBE_PORTS[next(_probe_seq) % len(PROBE_PORTS)]


# --- building blocks -----------------------------------------------------------------------------


def _l4(flow: Flow, payload: bytes = b"", *, flags: str = "S", seq: int = 1000) -> Packet:
    seg: Packet
    if flow.proto == "tcp":
        seg = TCP(sport=flow.client_port, dport=flow.port, flags=flags, seq=seq)
    else:
        seg = UDP(sport=flow.client_port, dport=flow.port)
    return seg / Raw(payload) if payload else seg


def _ip_id(flow: Flow) -> int:
    """A deterministic IP id per 5-tuple (never 0)."""
    return (flow.client_port * 31 + flow.port * 7 + flow.proto_number) % 0xFFFF + 1


def vip_packet(
    flow: Flow, payload: bytes = b"", *, flags: str = "S", ttl: int = 64, ip_id: int | None = None
) -> Packet:
    """A well-formed packet of ``flow`` toward the VIP (TCP with ``flags``, or UDP)."""
    return IP(
        src=flow.client, dst=flow.vip, ttl=ttl, id=_ip_id(flow) if ip_id is None else ip_id
    ) / _l4(flow, payload, flags=flags)


def _with_mark(flow: Flow, case: str) -> bytes:
    return MARK + b":" + case.encode() if flow.proto == "udp" else b""


# --- truncations ---------------------------------------------------------------------------------


def truncated_ip(flow: Flow) -> list[Packet]:
    """IPv4 headers cut short: 10 bytes of a header, and a header whose IHL claims options that
    the frame does not hold (IHL 8, 20 bytes present, total length claiming 52)."""
    cut = Raw(bytes(vip_packet(flow))[:10])
    claim = IP(src=flow.client, dst=flow.vip, ihl=8, len=52, id=_ip_id(flow), proto=6)
    return [cut, Raw(bytes(claim))]


def truncated_l4(flow: Flow) -> list[Packet]:
    """Valid IPv4 headers (length and checksum agree with the frame) whose TCP/UDP header is cut
    short: 4 bytes (the ports only), and the full header less one byte."""
    whole = bytes(_l4(flow))
    out: list[Packet] = []
    for keep in (4, len(whole) - 1):
        out.append(
            IP(src=flow.client, dst=flow.vip, id=_ip_id(flow), proto=flow.proto_number)
            / Raw(whole[:keep])
        )
    return out


def ip_len_overrun(flow: Flow, *, extra: int = 100) -> list[Packet]:
    """A packet whose IPv4 total length claims ``extra`` bytes more than the frame holds (the
    header checksum is valid for the lying header)."""
    if extra < 1:
        raise ValueError(f"extra: {extra} must be at least 1")
    pkt = IP(bytes(vip_packet(flow, _with_mark(flow, "ip-len-overrun"))))  # L4 checksum fixed
    if pkt.len + extra > 0xFFFF:
        raise ValueError(f"extra: {extra} makes the total length exceed 65535")
    pkt.len += extra
    del pkt.chksum
    return [IP(bytes(pkt))]


# --- IP options, fragments, checksums, TTL, protocols --------------------------------------------


def ip_options(flow: Flow) -> list[Packet]:
    """Packets of ``flow`` with IP options: record route (9 empty slots, IHL 15) and router
    alert (IHL 6)."""
    out: list[Packet] = []
    for opts in ([IPOption_RR(pointer=4, routers=["0.0.0.0"] * 9)], [IPOption_Router_Alert()]):
        pkt = IP(src=flow.client, dst=flow.vip, id=_ip_id(flow), options=opts) / _l4(
            flow, _with_mark(flow, "ip-options")
        )
        out.append(IP(bytes(pkt)))
    return out


def fragment_packet(pkt: Packet, mtu: int) -> list[Packet]:
    """Split an IPv4 packet (no options, DF clear) into fragments of at most ``mtu`` bytes.

    The first fragment carries the L4 header (so its ports), provided ``mtu`` leaves room for
    it; later fragments carry only payload bytes."""
    ip = IP(bytes(pkt))
    if ip.ihl != 5:
        raise ValueError("pkt: fragmenting a packet with IP options is not supported")
    if ip.flags.DF:
        raise ValueError("pkt: the packet has DF (don't fragment) set")
    body = bytes(ip.payload)
    step = (mtu - 20) // 8 * 8
    l4_hdr = 20 if ip.proto == 6 else 8 if ip.proto == 17 else 0
    if step < 8 or step < l4_hdr:
        raise ValueError(f"mtu: {mtu} leaves no room for the L4 header in the first fragment")
    if len(body) <= step:
        raise ValueError(f"mtu: {mtu} does not fragment a packet of {len(bytes(ip))} bytes")
    out: list[Packet] = []
    for off in range(0, len(body), step):
        chunk = body[off : off + step]
        last = off + step >= len(body)
        frag = IP(
            src=ip.src,
            dst=ip.dst,
            id=ip.id,
            ttl=ip.ttl,
            tos=ip.tos,
            proto=ip.proto,
            flags=0 if last else "MF",
            frag=off // 8,
        ) / Raw(chunk)
        out.append(IP(bytes(frag)))
    return out


def fragments(flow: Flow, *, mtu: int = 576, payload_len: int = 1200) -> list[Packet]:
    """A ``payload_len``-byte TCP segment or UDP datagram of ``flow``, fragmented to ``mtu``."""
    payload = fragments_payload(payload_len)
    return fragment_packet(vip_packet(flow, payload, flags="PA"), mtu)


def fragments_payload(payload_len: int) -> bytes:
    """The payload :func:`fragments` sends: the marker, repeated to ``payload_len`` bytes."""
    if payload_len < 1:
        raise ValueError(f"payload_len: {payload_len} must be at least 1")
    unit = MARK + b":fragments:"
    return (unit * (payload_len // len(unit) + 1))[:payload_len]


def _wrong(csum: int) -> int:
    """A checksum that does not verify where ``csum`` does. XOR with 0x5A5A never yields the
    one's-complement twin of ``csum`` (0x0000 and 0xFFFF are equal), and for UDP never 0
    ("no checksum")."""
    bad = csum ^ 0x5A5A
    return bad if bad != 0 else csum ^ 0x0F0F


def bad_ip_checksum(flow: Flow) -> list[Packet]:
    """A packet of ``flow`` whose IPv4 header checksum is wrong (everything else right)."""
    good = IP(bytes(vip_packet(flow, _with_mark(flow, "bad-ip-csum"))))
    good.chksum = _wrong(good.chksum)
    return [IP(bytes(good))]


def bad_l4_checksum(flow: Flow) -> list[Packet]:
    """A packet of ``flow`` whose TCP/UDP checksum is wrong (everything else right)."""
    good = IP(bytes(vip_packet(flow, _with_mark(flow, "bad-l4-csum"))))
    l4 = good[TCP] if flow.proto == "tcp" else good[UDP]
    l4.chksum = _wrong(l4.chksum)
    return [IP(bytes(good))]


def ttl_one(flow: Flow) -> list[Packet]:
    """A packet of ``flow`` with TTL 1 (the first router must drop it and answer)."""
    return [IP(bytes(vip_packet(flow, _with_mark(flow, "ttl-1"), ttl=1)))]


def unknown_protocols(flow: Flow, protos: Sequence[int] = (253, 254)) -> list[Packet]:
    """Packets from the client to the VIP with IP protocols no stack handles (RFC 3692's
    experimental 253 and 254 by default)."""
    out: list[Packet] = []
    for p in protos:
        if not 0 <= p <= 255 or p in (1, 4, 6, 17):
            raise ValueError(f"protos: {p} is not an unknown IP protocol")
        pkt = IP(src=flow.client, dst=flow.vip, id=_ip_id(flow), proto=p) / Raw(
            MARK + b":unknown-proto"
        )
        out.append(IP(bytes(pkt)))
    return out


def foreign_ipip(flow: Flow, *, outer_src: str, server: str) -> list[Packet]:
    """``flow``'s SYN (or UDP datagram) to the VIP, IPIP-encapsulated by ``outer_src`` (not a
    MUX) straight to ``server``: what someone bypassing the load balancer would send (RB-4). A
    server that decapsulates it answers the inner flow; one that does not, does not. A server's
    IPv6 address gets IPv6-in-IPv6 or IPv4-in-IPv6 (:func:`crafted6.foreign_in_ipv6`); an
    IPv6 flow to a server's IPv4 address, IPv6-in-IPv4 (protocol 41)."""
    if is_ipv6(_lab_addr(server, "server")):
        return crafted6.foreign_in_ipv6(flow, outer_src=_same(outer_src, server), server=server)
    src = _same(outer_src, server)
    outer = IP(src=src, dst=server, proto=41 if flow.family == "ipv6" else 4)
    return [IP(bytes(outer / _inner(flow, "foreign-ipip")))]


def _inner(flow: Flow, case: str) -> Packet:
    """``flow``'s packet to the VIP (its family's), marked as ``case``, parsed back."""
    if flow.family == "ipv6":
        return crafted6.vip_packet6(flow, _with_mark(flow, case))
    return IP(bytes(vip_packet(flow, _with_mark(flow, case))))


def foreign_gue(flow: Flow, *, outer_src: str, server: str) -> list[Packet]:
    """As :func:`foreign_ipip`, GUE-encapsulated the way Katran sends it (RB-4): outer IPv4 and
    UDP to :data:`~dsrconform.observe.taps.GUE_PORT` carrying the IPv4 packet directly (GUE
    variant 1, no GUE header), from a source port Katran would pick (the client's port mixed
    with its address) so that only the outer source says it comes from no MUX."""
    from dsrconform.observe.taps import GUE_PORT

    src, dst = _lab_addr(outer_src, "outer_src"), _lab_addr(server, "server")
    if is_ipv6(dst):
        return crafted6.foreign_in_ipv6(flow, outer_src=_same(src, dst), server=dst, gue=True)
    client = ipaddress.ip_address(flow.client).packed[-4:]
    sport = flow.client_port ^ int.from_bytes(client[2:4], "little") or flow.client_port
    inner = bytes(_inner(flow, "foreign-gue"))
    return [IP(bytes(IP(src=src, dst=dst) / UDP(sport=sport, dport=GUE_PORT) / Raw(inner)))]


def _same(outer_src: str, server: str) -> str:
    """``outer_src``, once it is of ``server``'s family."""
    if is_ipv6(_lab_addr(outer_src, "outer_src")) != is_ipv6(server):
        raise ValueError(f"outer_src: {outer_src} is not of the server {server}'s family")
    return outer_src


def foreign_packets(encapsulation: str, flow: Flow, *, outer_src: str, server: str) -> list[Packet]:
    """:func:`foreign_ipip` or :func:`foreign_gue`, by ``encapsulation`` (one of
    :data:`dsrconform.target.ENCAPSULATIONS`)."""
    if encapsulation == "ipip":
        return foreign_ipip(flow, outer_src=outer_src, server=server)
    if encapsulation == "gue":
        return foreign_gue(flow, outer_src=outer_src, server=server)
    raise ValueError(f"encapsulation: {encapsulation!r} is not 'ipip' or 'gue'")


def non_vip_packets(client: str, dst: str, *, port: int = 8080, sport: int = 20000) -> list[Packet]:
    """Packets from ``client`` to ``dst``, an address that is no VIP (a MUX's own, a server's):
    an ICMP echo, a TCP SYN and a UDP datagram to ``port`` (RB-2: a MUX passes them untouched,
    never encapsulates them)."""
    src, to = _lab_addr(client, "client"), _lab_addr(dst, "dst")
    if is_ipv6(src) != is_ipv6(to):
        raise ValueError(f"client: {client} is not of {dst}'s family")
    if is_ipv6(src):
        return crafted6.non_vip_packets6(src, to, port=port, sport=_port(sport, "sport"))
    return [
        IP(bytes(IP(src=src, dst=to) / ICMP(type=8, id=sport, seq=1) / Raw(MARK))),
        IP(bytes(IP(src=src, dst=to) / TCP(sport=_port(sport, "sport"), dport=port, flags="S"))),
        IP(bytes(IP(src=src, dst=to) / UDP(sport=sport, dport=port) / Raw(MARK + b":non-vip"))),
    ]


# --- ICMP errors about a live flow ---------------------------------------------------------------


def icmp_error(
    flow: Flow,
    *,
    src: str,
    type: int,
    code: int,
    next_hop_mtu: int | None = None,
    ptr: int | None = None,
    quoted_len: int | None = None,
    quoted_df: bool = False,
    seq: int = 0,
) -> Packet:
    """An ICMP error from ``src`` to the VIP quoting the server's reply of ``flow``: an IPv4
    header from VIP to client and the reply's TCP header (ports, ``seq``) or UDP header.

    ``quoted_len`` is the quoted packet's total length (default: what is quoted)."""
    _lab_addr(src, "src")
    l4: Packet
    if flow.proto == "tcp":
        l4 = TCPerror(sport=flow.port, dport=flow.client_port, flags="A", seq=seq)
    else:
        udp_len = quoted_len - 20 if quoted_len is not None else 8 + len(MARK)
        l4 = UDPerror(sport=flow.port, dport=flow.client_port, len=udp_len)
    quoted = (
        IPerror(
            src=flow.vip,
            dst=flow.client,
            proto=flow.proto_number,
            ttl=64,
            id=_ip_id(flow),
            flags="DF" if quoted_df else 0,
            len=quoted_len,
        )
        / l4
    )
    icmp = ICMP(type=type, code=code)
    if next_hop_mtu is not None:
        icmp.nexthopmtu = next_hop_mtu
    if ptr is not None:
        icmp.ptr = ptr
    return IP(bytes(IP(src=src, dst=flow.vip, id=_ip_id(flow)) / icmp / quoted))


def icmp_frag_needed(
    flow: Flow, *, src: str, next_hop_mtu: int = 1400, quoted_len: int = 1500
) -> list[Packet]:
    """Fragmentation needed (type 3 code 4) with ``next_hop_mtu``, quoting a ``quoted_len``-byte
    reply of ``flow`` sent with DF. For an IPv6 flow, its counterpart: ICMPv6 Packet Too Big
    announcing ``next_hop_mtu`` (at least 1280, IPv6's minimum)."""
    if flow.family == "ipv6":
        _lab_addr(src, "src")
        mtu = max(next_hop_mtu, crafted6.MIN_MTU)
        return crafted6.icmp6_packet_too_big(
            flow, src=src, mtu=mtu, quoted_len=max(quoted_len, mtu + 1)
        )
    if not 68 <= next_hop_mtu < quoted_len:
        raise ValueError(
            f"next_hop_mtu: {next_hop_mtu} must be at least 68 and below quoted_len {quoted_len}"
        )
    return [
        icmp_error(
            flow,
            src=src,
            type=3,
            code=4,
            next_hop_mtu=next_hop_mtu,
            quoted_len=quoted_len,
            quoted_df=True,
        )
    ]


def icmp_time_exceeded(flow: Flow, *, src: str) -> list[Packet]:
    """Time exceeded in transit (type 11 code 0) about a reply of ``flow`` (ICMPv6 type 3 for
    an IPv6 flow)."""
    if flow.family == "ipv6":
        return crafted6.icmp6_time_exceeded(flow, src=_lab_addr(src, "src"))
    return [icmp_error(flow, src=src, type=11, code=0)]


def icmp_port_unreachable(flow: Flow, *, src: str | None = None) -> list[Packet]:
    """Port unreachable (type 3 code 3) about a reply of ``flow``, from ``src`` (default the
    client's address: the host whose port is closed); ICMPv6 type 1 code 4 for an IPv6 flow."""
    if flow.family == "ipv6":
        return crafted6.icmp6_port_unreachable(flow, src=src and _lab_addr(src, "src"))
    return [icmp_error(flow, src=src or flow.client, type=3, code=3)]


def icmp_echo(src: str, dst: str, *, ident: int, seq: int = 0) -> Packet:
    """An echo request (type 8) from ``src`` to ``dst``, both lab addresses (ICMPv6 echo
    request for IPv6 ones)."""
    _lab_addr(src, "src")
    _lab_addr(dst, "dst")
    if is_ipv6(src):
        return crafted6.icmp6_echo(src, dst, ident=ident, seq=seq)
    return IP(src=src, dst=dst) / ICMP(type=8, id=ident & 0xFFFF, seq=seq) / Raw(MARK)


def icmp_param_problem(flow: Flow, *, src: str) -> list[Packet]:
    """Parameter problem (type 12 code 0) pointing at the quoted header's TTL byte (ICMPv6
    type 4, at the hop limit, for an IPv6 flow)."""
    if flow.family == "ipv6":
        return crafted6.icmp6_param_problem(flow, src=_lab_addr(src, "src"))
    return [icmp_error(flow, src=src, type=12, code=0, ptr=8)]


# --- the catalogue -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseParams:
    """What the catalogue's cases are built from."""

    live: Flow
    """The flow ICMP errors quote (a connection in progress)."""
    probe_port: int
    """The client port of every other case."""
    icmp_src: str | None = None
    """Source of the router-originated ICMP errors."""
    frag_mtu: int = 576
    frag_payload: int = 1200
    next_hop_mtu: int = 1400

    @property
    def probe(self) -> Flow:
        return self.live.from_port(self.probe_port)

    def need_icmp_src(self) -> str:
        if self.icmp_src is None:
            raise ValueError("icmp_src: an ICMP error case needs a router-ish source address")
        return self.icmp_src


@dataclass(frozen=True)
class Case:
    name: str
    requirement: str
    """The requirement whose checker judges what the case provokes."""
    doc: str
    build: Callable[[CaseParams], list[Packet]]


CASES: dict[str, Case] = {}
"""The catalogue, by name, in the order :func:`build_cases` builds "all"."""


def _add(
    name: str, requirement: str, doc: str, build: Callable[[CaseParams], list[Packet]]
) -> None:
    CASES[name] = Case(name, requirement, doc, build)


_add("truncated-ip", "RB-1", "IPv4 header cut short", lambda p: truncated_ip(p.probe))
_add("truncated-l4", "RB-1", "TCP/UDP header cut short", lambda p: truncated_l4(p.probe))
_add("ip-len-overrun", "RB-1", "IPv4 total length beyond the frame",
     lambda p: ip_len_overrun(p.probe))  # fmt: skip
_add("ip-options", "RB-1", "record route; router alert", lambda p: ip_options(p.probe))
_add("fragments", "RB-3", "a VIP-bound TCP/UDP packet in IPv4 fragments",
     lambda p: fragments(p.probe, mtu=p.frag_mtu, payload_len=p.frag_payload))  # fmt: skip
_add("bad-ip-csum", "RB-1", "a wrong IPv4 header checksum", lambda p: bad_ip_checksum(p.probe))
_add("bad-l4-csum", "RB-1", "a wrong TCP/UDP checksum", lambda p: bad_l4_checksum(p.probe))
_add("icmp-frag-needed", "RW-6", "fragmentation needed about the live flow's reply",
     lambda p: icmp_frag_needed(p.live, src=p.need_icmp_src(),
                                next_hop_mtu=p.next_hop_mtu))  # fmt: skip
_add("icmp-time-exceeded", "RW-7", "time exceeded about the live flow's reply",
     lambda p: icmp_time_exceeded(p.live, src=p.need_icmp_src()))  # fmt: skip
_add("icmp-port-unreach", "RW-7", "port unreachable (from the client) about the live flow",
     lambda p: icmp_port_unreachable(p.live))  # fmt: skip
_add("icmp-param-problem", "RW-7", "parameter problem about the live flow's reply",
     lambda p: icmp_param_problem(p.live, src=p.need_icmp_src()))  # fmt: skip
_add("ttl-1", "RB-1", "TTL 1 toward the VIP", lambda p: ttl_one(p.probe))
_add("unknown-proto", "RB-1", "IP protocols 253 and 254", lambda p: unknown_protocols(p.probe))
CASE_NAMES: tuple[str, ...] = tuple(CASES)
CASES6: dict[str, Case] = crafted6.cases6()
"""The IPv6 catalogue (:mod:`dsrconform.traffic.crafted6`), built for IPv6 flows."""
CASE_NAMES6: tuple[str, ...] = tuple(CASES6)


def catalogue(family: str = "ipv4") -> dict[str, Case]:
    """The cases of ``family`` ("ipv4" or "ipv6"), by name."""
    return CASES6 if family == "ipv6" else CASES


def select_cases(cases: str | Iterable[str] = "all", family: str = "ipv4") -> list[str]:
    """Case names of ``family``'s catalogue from ``"all"``, a comma-separated string or a list
    (order kept, no repeats). A name of the other family's catalogue stands for its counterpart
    (``ttl-1`` and ``hop-limit-1``, ``ip-options`` and ``ext-headers``, ``icmp-frag-needed`` and
    ``icmp-packet-too-big``: :data:`crafted6.ALIASES`), or is left out when there is none
    (``bad-ip-csum`` for IPv6), so one list serves flows of either family."""
    known = catalogue(family)
    aliases = crafted6.ALIASES[family]
    names = cases.split(",") if isinstance(cases, str) else list(cases)
    names = [n.strip() for n in names if n.strip()]
    if names == ["all"]:
        return list(known)
    every = set(CASES) | set(CASES6)
    unknown = [n for n in names if n not in every]
    if unknown:
        raise ValueError(
            f"cases: unknown crafted case(s) {', '.join(unknown)}; known: all, "
            + ", ".join(dict.fromkeys([*CASE_NAMES, *CASE_NAMES6]))
        )
    if not names:
        raise ValueError("cases: no case named; fix: 'all' or a list of " + ", ".join(known))
    resolved = [n if n in known else aliases.get(n) for n in names]
    return list(dict.fromkeys(n for n in resolved if n is not None))


@dataclass(frozen=True)
class CraftedCase:
    name: str
    packets: tuple[Packet, ...]


def build_cases(
    live: Flow,
    cases: str | Iterable[str] = "all",
    *,
    probe_port: int | None = None,
    icmp_src: str | None = None,
    frag_mtu: int = 576,
    frag_payload: int = 1200,
    next_hop_mtu: int = 1400,
) -> list[CraftedCase]:
    """Build the selected cases (packets of ``live``'s family: its catalogue, see
    :func:`select_cases`) for ``live`` (see the module's docstring).

    ``probe_port`` defaults to :func:`next_probe_port`; ``icmp_src`` is needed by the
    router-originated ICMP errors."""
    params = CaseParams(
        live=live,
        probe_port=_port(next_probe_port() if probe_port is None else probe_port, "probe_port"),
        icmp_src=None if icmp_src is None else _lab_addr(icmp_src, "icmp_src"),
        frag_mtu=frag_mtu,
        frag_payload=frag_payload,
        next_hop_mtu=next_hop_mtu,
    )
    if params.probe_port == live.client_port:
        raise ValueError("probe_port: must differ from the live flow's client port")
    known = catalogue(live.family)
    return [CraftedCase(n, tuple(known[n].build(params))) for n in select_cases(cases, live.family)]


# --- framing -------------------------------------------------------------------------------------


def frame(packets: Iterable[Packet], src_mac: str, dst_mac: str) -> list[bytes]:
    """Ethernet frames around ``packets``, as bytes: type IPv6 for packets whose first byte
    says version 6 (a truncated header kept as raw bytes too), else IPv4."""
    out = []
    for p in packets:
        raw = bytes(p)
        etype = ETH_P_IPV6 if raw[:1] and raw[0] >> 4 == 6 else ETH_P_IP
        out.append(bytes(Ether(src=src_mac, dst=dst_mac, type=etype)) + raw)
    return out


@dataclass(frozen=True)
class CraftedFrames:
    name: str
    frames: tuple[bytes, ...]


def frame_cases(cases: Iterable[CraftedCase], src_mac: str, dst_mac: str) -> list[CraftedFrames]:
    return [CraftedFrames(c.name, tuple(frame(c.packets, src_mac, dst_mac))) for c in cases]


# --- sending -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseSent:
    """What :func:`send_crafted` did with one case."""

    case: str
    frames: int
    """Distinct frames of the case."""
    sent: int
    """Packets sent (frames times repeats, unless a bound stopped it)."""
    failed: int
    start: float
    end: float
    error: str | None = None
    """The first send error, if any (e.g. ENOBUFS from a full queue)."""


@dataclass(frozen=True)
class SendRecord:
    """What was sent, where, and when (``time.monotonic()``)."""

    netns: str | None
    ifname: str
    start: float
    end: float
    cases: tuple[CaseSent, ...]
    stopped_by: str | None = None
    """"max_packets" or "deadline" when a bound cut the sending short."""

    @property
    def sent(self) -> int:
        return sum(c.sent for c in self.cases)

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.cases)

    def by_case(self) -> dict[str, int]:
        return {c.case: c.sent for c in self.cases}

    def fault_window(self, target: str, **detail: str | float | int) -> FaultWindow:
        """The fault-timeline entry for this sending (``target``: the node or link it hit)."""
        info: dict[str, str | float | int] = {
            "cases": ",".join(c.case for c in self.cases),
            "packets": self.sent,
            "failed": self.failed,
            "ifname": self.ifname,
        }
        if self.netns is not None:
            info["netns"] = self.netns
        if self.stopped_by is not None:
            info["stopped_by"] = self.stopped_by
        info.update({f"sent.{c.case}": c.sent for c in self.cases})
        info.update(detail)
        return FaultWindow(
            kind="crafted", start=self.start, end=self.end, target=target, detail=info
        )


def check_frame(data: bytes) -> None:
    """Refuse a frame that is no IPv4 or IPv6 Ethernet frame, or whose source or destination
    address (as far as the frame holds them) is outside the lab range."""
    if len(data) < ETH_HLEN + 1:
        raise ValueError(f"frame: {len(data)} bytes is too short for Ethernet and IP")
    etype = int.from_bytes(data[12:14], "big")
    if etype not in (ETH_P_IP, ETH_P_IPV6):
        raise ValueError(f"frame: ethertype {data[12:14].hex()} is neither IPv4 nor IPv6")
    v6 = etype == ETH_P_IPV6
    size, fields = (
        (16, (("source", 8), ("destination", 24)))
        if v6
        else (4, (("source", 12), ("destination", 16)))
    )
    for name, off in fields:
        raw = data[ETH_HLEN + off : ETH_HLEN + off + size]
        if len(raw) == size:
            _lab_addr(str(ipaddress.ip_address(raw)), f"frame IPv{6 if v6 else 4} {name}")


DEFAULT_MAX_PACKETS = 10_000
ENOBUFS_RETRIES = 20


def send_crafted(
    netns: str | None,
    ifname: str,
    frames: Sequence[CraftedFrames],
    *,
    count_per_frame: int = 1,
    max_packets: int = DEFAULT_MAX_PACKETS,
    deadline: float = 10.0,
    gap: float = 0.0,
) -> SendRecord:
    """Send each case's frames ``count_per_frame`` times on ``ifname`` in namespace ``netns``
    (a raw AF_PACKET socket opened inside it), case by case, in order.

    Bounded: at most ``max_packets`` packets and ``deadline`` seconds (from the call); a bound
    that cuts the sending short is named in :attr:`SendRecord.stopped_by`. ``gap`` seconds pass
    between packets. Only lab namespaces and interfaces (``dsrc`` prefix) are accepted, and
    only IPv4 and IPv6 frames between lab addresses (:func:`check_frame`)."""
    if netns is None or not netns.startswith(LAB_PREFIX):
        raise ValueError(
            f"netns: {netns!r} is not a lab namespace (prefix {LAB_PREFIX}); crafted packets "
            "are never sent from the host's own namespace"
        )
    if not ifname.startswith("dsrc"):
        raise ValueError(f"ifname: {ifname!r} is not a lab interface (prefix dsrc)")
    if count_per_frame < 1 or max_packets < 0 or deadline < 0 or gap < 0:
        raise ValueError("count_per_frame must be >= 1; max_packets, deadline, gap >= 0")
    frames = list(frames)
    for cf in frames:
        for f in cf.frames:
            check_frame(f)
    with enter_netns(netns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # 0: send only, never receive
        try:
            sock.bind((ifname, 0))
        except OSError as e:
            sock.close()
            raise LabError(f"cannot bind to {ifname} in {netns or 'this namespace'}: {e}") from e
    t0 = time.monotonic()
    until = t0 + deadline
    budget = max_packets
    stopped: str | None = None
    done: list[CaseSent] = []
    with sock:
        for cf in frames:
            start = time.monotonic()
            sent = failed = 0
            error: str | None = None
            for data in cf.frames:
                for _ in range(count_per_frame):
                    if stopped is None and budget <= 0:
                        stopped = "max_packets"
                    if stopped is None and time.monotonic() >= until:
                        stopped = "deadline"
                    if stopped is not None:
                        break
                    budget -= 1
                    problem = _send_one(sock, data, until)
                    if problem is None:
                        sent += 1
                    else:
                        failed += 1
                        error = error or problem
                    if gap:
                        time.sleep(min(gap, max(0.0, until - time.monotonic())))
                if stopped is not None:
                    break
            end = time.monotonic()
            done.append(CaseSent(cf.name, len(cf.frames), sent, failed, start, end, error))
            if stopped is not None:
                break
    return SendRecord(netns, ifname, t0, time.monotonic(), tuple(done), stopped)


def _send_one(sock: socket.socket, data: bytes, until: float) -> str | None:
    """Send one frame; retry briefly (bounded) while the queue is full. An error text, or None."""
    for _ in range(ENOBUFS_RETRIES):
        try:
            n = sock.send(data)
        except OSError as e:
            if e.errno in (errno.ENOBUFS, errno.EAGAIN) and time.monotonic() < until:
                time.sleep(0.001)
                continue
            return f"{errno.errorcode.get(e.errno or 0, e.errno)}: {e.strerror}"
        return None if n == len(data) else f"short send: {n} of {len(data)} bytes"
    return "ENOBUFS: the interface's queue stayed full"


# --- in a lab ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Injection:
    """Frames to inject and where: send with ``send_crafted(netns, ifname, frames)`` and record
    ``record.fault_window(target)``."""

    netns: str
    ifname: str
    target: str
    """The node the frames enter (the router, or a MUX)."""
    frames: list[CraftedFrames] = field(default_factory=list)
    src_mac: str = ""
    dst_mac: str = ""
    probe_port: int = 0
    icmp_src: str | None = None

    def send(self, **bounds: Any) -> SendRecord:
        """:func:`send_crafted` of these frames (``bounds``: its keyword arguments)."""
        return send_crafted(self.netns, self.ifname, self.frames, **bounds)


def client_node_of(topo: Topology, addr: str) -> str:
    """The client node that owns ``addr`` (an extra address or its interface's)."""
    for name in topo.of_role("client"):
        own = set(topo.nodes[name].addresses)
        for i in topo.interfaces():
            if i.node == name:
                own.update(str(ipaddress.ip_interface(a).ip) for a in _interface_addresses(i))
        if addr in own:
            return name
    raise ValueError(
        f"client: {addr} is no client node's address; fix: pass client_node explicitly "
        f"(client nodes: {', '.join(topo.of_role('client'))})"
    )


def _interface_addresses(iface: Interface | Uplink) -> list[str]:
    """An interface's addresses with prefix: its IPv4 one, and its IPv6 one in a dual-stack
    lab."""
    return [iface.address, *([iface.address6] if iface.address6 else [])]


def free_address(
    topo: Topology, node: str, peer: str | None = None, *, family: str = "ipv4"
) -> str:
    """The highest host address of ``node``'s link (to ``peer``, default the router) in
    ``family`` that no node uses: a router-ish source for ICMP errors."""
    link = [ipaddress.ip_interface(a) for a in _interface_addresses(topo.uplink(node, peer))]
    nets = [a.network for a in link if (a.version == 6) == (family == "ipv6")]
    if not nets:
        raise ValueError(f"icmp_src: {node}'s link has no {family} address; pass one")
    net = nets[0]
    used = {
        str(ipaddress.ip_interface(a).ip)
        for i in topo.interfaces()
        for a in _interface_addresses(i)
    }
    used.update(a for n in topo.nodes.values() for a in n.addresses)
    used.update(s.vip for s in topo.services)
    for k in range(1, min(net.num_addresses - 1, 4096)):
        h = str(net.broadcast_address - k)
        if h not in used:
            return h
    raise ValueError(f"icmp_src: no free address on {node}'s link {net}; pass one")


def lab_injection(
    topo: Topology,
    netns_of: Callable[[str], str],
    live: Flow,
    cases: str | Iterable[str] = "all",
    *,
    client_node: str | None = None,
    entry_mux: str | None = None,
    probe_port: int | None = None,
    icmp_src: str | None = None,
    frag_mtu: int = 576,
) -> Injection:
    """The frames of ``cases`` for ``live`` in a lab, and where to send them.

    Default: from the client node's interface toward the router (source MAC the client's, dest
    MAC the router's interface on that link). The lab's Linux router drops ``truncated-ip``,
    ``ip-len-overrun`` and ``bad-ip-csum`` and answers ``ttl-1`` itself, so those never reach a
    MUX that way; with ``entry_mux`` the frames go from the router's interface toward that MUX
    instead (bypassing the router's stack). ``netns_of`` maps a node to its namespace
    (e.g. ``lab.netns``); MACs are read from the namespaces. ``icmp_src`` defaults to a free
    address on the client's link."""
    client = client_node or client_node_of(topo, live.client)
    if topo.nodes.get(client) is None or topo.nodes[client].role != "client":
        raise ValueError(f"client_node: {client!r} is not a client node of the topology")
    router = topo.router
    if entry_mux is None:
        sender, receiver = client, router
    else:
        if topo.nodes.get(entry_mux) is None or topo.nodes[entry_mux].role != "mux":
            raise ValueError(f"entry_mux: {entry_mux!r} is not a MUX node of the topology")
        sender, receiver = router, entry_mux
    out_if = topo.uplink(sender, receiver).ifname
    in_if = topo.uplink(receiver, sender).ifname
    src_mac = link_mac(netns_of(sender), out_if)
    dst_mac = link_mac(netns_of(receiver), in_if)
    port = probe_port
    while port is None or (probe_port is None and port == live.client_port):
        port = next_probe_port()  # at most twice: consecutive probe ports differ
    src = icmp_src or free_address(topo, client, family=live.family)
    built = build_cases(live, cases, probe_port=port, icmp_src=src, frag_mtu=frag_mtu)
    return Injection(
        netns=netns_of(sender),
        ifname=out_if,
        target=receiver,
        frames=frame_cases(built, src_mac, dst_mac),
        src_mac=src_mac,
        dst_mac=dst_mac,
        probe_port=port,
        icmp_src=src,
    )
