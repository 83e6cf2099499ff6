"""Crafted and malformed IPv6 packets: :mod:`dsrconform.traffic.crafted` for IPv6 flows.

The builders mirror the IPv4 ones on a :class:`~dsrconform.traffic.crafted.Flow` whose addresses
are IPv6 (2001:2::/48), and :mod:`~dsrconform.traffic.crafted`'s own entry points
(``build_cases``, ``icmp_frag_needed``, ``non_vip_packets``, ``foreign_packets``...) call them
for such a flow, so a caller never picks the family. What differs from IPv4:

- no header checksum (no ``bad-ip-csum``) and no IP options: their place is taken by extension
  headers (``ext-headers``: hop-by-hop options, destination options, a routing header with no
  segments left), which a balancer must not take for the upper-layer header;
- fragments carry a Fragment header (next header 44): the first holds the TCP/UDP header, the
  later ones only payload (``fragments``);
- truncations: an IPv6 header cut short, a payload length beyond the frame, a TCP/UDP header
  cut short;
- the path-MTU error is ICMPv6 Packet Too Big (type 2, with the MTU), not ICMP fragmentation
  needed; the other errors are ICMPv6 time exceeded (3), destination unreachable port (1/4) and
  parameter problem (4); each quotes the server's reply (IPv6 VIP -> client and its L4 header);
- foreign encapsulation (RB-4) is IPv6-in-IPv6 (next header 41) for an IPv6 flow, IPv4-in-IPv6
  (next header 4) for an IPv4 flow sent to a server's IPv6 address, or GUE over IPv6.

Hop limit 1 (``hop-limit-1``) and next headers no stack knows (``unknown-proto``: 253, 254)
complete the catalogue (:data:`CASES6`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from scapy.layers.inet import IP, TCP, UDP, TCPerror, UDPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.packet import Packet, Raw

if TYPE_CHECKING:
    from dsrconform.traffic.crafted import Case, CaseParams, Flow

MARK = b"dsrconform-crafted"
IPV6_HLEN = 40
FRAG_HLEN = 8
MIN_MTU = 1280
"""IPv6's minimum link MTU (RFC 8200 5): a Packet Too Big never announces less."""


def _marked(flow: Flow, case: str) -> bytes:
    return MARK + b":" + case.encode() if flow.proto == "udp" else b""


def _l4(flow: Flow, payload: bytes = b"", *, flags: str = "S") -> Packet:
    seg: Packet
    if flow.proto == "tcp":
        seg = TCP(sport=flow.client_port, dport=flow.port, flags=flags, seq=1000)
    else:
        seg = UDP(sport=flow.client_port, dport=flow.port)
    return seg / Raw(payload) if payload else seg


def _flow_label(flow: Flow) -> int:
    """A deterministic flow label per 5-tuple (20 bits, never 0)."""
    return (flow.client_port * 31 + flow.port * 7 + flow.proto_number) % 0xFFFFF + 1


def vip_packet6(flow: Flow, payload: bytes = b"", *, flags: str = "S", hlim: int = 64) -> Packet:
    """A well-formed IPv6 packet of ``flow`` toward the VIP, as bytes parsed back (the L4
    checksum over the IPv6 pseudo-header filled in)."""
    pkt = IPv6(src=flow.client, dst=flow.vip, hlim=hlim, fl=_flow_label(flow)) / _l4(
        flow, payload, flags=flags
    )
    return IPv6(bytes(pkt))


def truncated_ip6(flow: Flow) -> list[Packet]:
    """An IPv6 header cut short (24 of its 40 bytes)."""
    return [Raw(bytes(vip_packet6(flow))[:24])]


def truncated_l4_6(flow: Flow) -> list[Packet]:
    """Valid IPv6 headers (payload length agrees with the frame) whose TCP/UDP header is cut
    short: 4 bytes (the ports only), and the full header less one byte."""
    whole = bytes(_l4(flow))
    nh = flow.proto_number
    return [
        IPv6(bytes(IPv6(src=flow.client, dst=flow.vip, nh=nh) / Raw(whole[:keep])))
        for keep in (4, len(whole) - 1)
    ]


def payload_len_overrun(flow: Flow, *, extra: int = 100) -> list[Packet]:
    """A packet whose IPv6 payload length claims ``extra`` bytes more than the frame holds."""
    if extra < 1:
        raise ValueError(f"extra: {extra} must be at least 1")
    pkt = vip_packet6(flow, _marked(flow, "ip-len-overrun"))
    if pkt.plen + extra > 0xFFFF:
        raise ValueError(f"extra: {extra} makes the payload length exceed 65535")
    raw = bytearray(bytes(pkt))
    raw[4:6] = (pkt.plen + extra).to_bytes(2, "big")
    return [Raw(bytes(raw))]


def extension_headers(flow: Flow) -> list[Packet]:
    """Packets of ``flow`` behind extension headers: hop-by-hop options (PadN), destination
    options, a routing header (type 0 with no segments left: RFC 5095 lets a node ignore it),
    and all three chained. The upper-layer header and its checksum are right in each."""
    payload = _marked(flow, "ext-headers")
    chains: list[Sequence[Packet]] = [
        [IPv6ExtHdrHopByHop()],
        [IPv6ExtHdrDestOpt()],
        [IPv6ExtHdrRouting(type=0, segleft=0, addresses=[])],
        [IPv6ExtHdrHopByHop(), IPv6ExtHdrRouting(type=0, segleft=0), IPv6ExtHdrDestOpt()],
    ]
    out: list[Packet] = []
    for chain in chains:
        pkt: Packet = IPv6(src=flow.client, dst=flow.vip, fl=_flow_label(flow))
        for ext in chain:
            pkt = pkt / ext
        out.append(IPv6(bytes(pkt / _l4(flow, payload))))
    return out


def fragment_packet6(pkt: Packet, mtu: int, *, ident: int = 0x5EED) -> list[Packet]:
    """Split an IPv6 packet (no extension headers) into fragments of at most ``mtu`` bytes:
    the unfragmentable part (the IPv6 header) and a Fragment header on each; the first carries
    the L4 header (so its ports), provided ``mtu`` leaves room for it."""
    ip = IPv6(bytes(pkt))
    if ip.nh not in (6, 17, 58):
        raise ValueError("pkt: fragmenting a packet with extension headers is not supported")
    body = bytes(ip.payload)
    step = (mtu - IPV6_HLEN - FRAG_HLEN) // 8 * 8
    l4_hdr = 20 if ip.nh == 6 else 8
    if step < 8 or step < l4_hdr:
        raise ValueError(f"mtu: {mtu} leaves no room for the L4 header in the first fragment")
    if len(body) <= step:
        raise ValueError(f"mtu: {mtu} does not fragment a packet of {len(bytes(ip))} bytes")
    out: list[Packet] = []
    for off in range(0, len(body), step):
        last = off + step >= len(body)
        frag = (
            IPv6(src=ip.src, dst=ip.dst, hlim=ip.hlim, fl=ip.fl, tc=ip.tc)
            / IPv6ExtHdrFragment(nh=ip.nh, offset=off // 8, m=0 if last else 1, id=ident)
            / Raw(body[off : off + step])
        )
        out.append(IPv6(bytes(frag)))
    return out


def fragments6(flow: Flow, *, mtu: int = MIN_MTU, payload_len: int = 2000) -> list[Packet]:
    """A ``payload_len``-byte TCP segment or UDP datagram of ``flow``, fragmented to ``mtu``:
    a first fragment (with the ports) and non-first ones."""
    from dsrconform.traffic.crafted import fragments_payload

    return fragment_packet6(vip_packet6(flow, fragments_payload(payload_len), flags="PA"), mtu)


def bad_l4_checksum6(flow: Flow) -> list[Packet]:
    """A packet of ``flow`` whose TCP/UDP checksum (over the IPv6 pseudo-header) is wrong."""
    from dsrconform.traffic.crafted import _wrong

    good = vip_packet6(flow, _marked(flow, "bad-l4-csum"))
    l4 = good[TCP] if flow.proto == "tcp" else good[UDP]
    l4.chksum = _wrong(l4.chksum)
    return [IPv6(bytes(good))]


def hop_limit_one(flow: Flow) -> list[Packet]:
    """A packet of ``flow`` with hop limit 1 (the first router must drop it and answer)."""
    return [vip_packet6(flow, _marked(flow, "hop-limit-1"), hlim=1)]


def unknown_next_headers(flow: Flow, protos: Sequence[int] = (253, 254)) -> list[Packet]:
    """Packets to the VIP with next headers no stack handles (RFC 3692's 253 and 254)."""
    out: list[Packet] = []
    for p in protos:
        if not 0 <= p <= 255 or p in (0, 4, 6, 17, 41, 43, 44, 58, 60):
            raise ValueError(f"protos: {p} is not an unknown next header")
        pkt = IPv6(src=flow.client, dst=flow.vip, nh=p) / Raw(MARK + b":unknown-proto")
        out.append(IPv6(bytes(pkt)))
    return out


def icmp6_error(
    flow: Flow, *, src: str, error: Packet, quoted_len: int | None = None, seq: int = 0
) -> Packet:
    """An ICMPv6 ``error`` (its header, e.g. ``ICMPv6PacketTooBig(mtu=1280)``) from ``src`` to
    the VIP quoting the server's reply of ``flow``: an IPv6 header from VIP to client and the
    reply's TCP header (ports, ``seq``) or UDP header. ``quoted_len``: the quoted packet's
    length in all (default: what is quoted)."""
    l4: Packet
    if flow.proto == "tcp":
        l4 = TCPerror(sport=flow.port, dport=flow.client_port, flags="A", seq=seq)
    else:
        l4 = UDPerror(sport=flow.port, dport=flow.client_port, len=8 + len(MARK))
    plen = None if quoted_len is None else quoted_len - IPV6_HLEN
    quoted = IPerror6(src=flow.vip, dst=flow.client, nh=flow.proto_number, plen=plen) / l4
    return IPv6(bytes(IPv6(src=src, dst=flow.vip) / error / quoted))


def icmp6_packet_too_big(
    flow: Flow, *, src: str, mtu: int = MIN_MTU, quoted_len: int = 1500
) -> list[Packet]:
    """Packet Too Big (type 2) announcing ``mtu``, quoting a ``quoted_len``-byte reply."""
    if not MIN_MTU <= mtu < quoted_len:
        raise ValueError(
            f"mtu: {mtu} must be at least {MIN_MTU} (IPv6's minimum) and below quoted_len "
            f"{quoted_len}"
        )
    return [icmp6_error(flow, src=src, error=ICMPv6PacketTooBig(mtu=mtu), quoted_len=quoted_len)]


def icmp6_time_exceeded(flow: Flow, *, src: str) -> list[Packet]:
    """Time exceeded, hop limit exceeded in transit (type 3 code 0), about a reply of ``flow``."""
    return [icmp6_error(flow, src=src, error=ICMPv6TimeExceeded(code=0))]


def icmp6_port_unreachable(flow: Flow, *, src: str | None = None) -> list[Packet]:
    """Destination unreachable, port unreachable (type 1 code 4), from ``src`` (default the
    client's address: the host whose port is closed)."""
    return [icmp6_error(flow, src=src or flow.client, error=ICMPv6DestUnreach(code=4))]


def icmp6_param_problem(flow: Flow, *, src: str) -> list[Packet]:
    """Parameter problem (type 4 code 0) pointing at the quoted header's hop limit (byte 7)."""
    return [icmp6_error(flow, src=src, error=ICMPv6ParamProblem(code=0, ptr=7))]


def icmp6_echo(src: str, dst: str, *, ident: int, seq: int = 0) -> Packet:
    """An ICMPv6 echo request from ``src`` to ``dst``."""
    return IPv6(src=src, dst=dst) / ICMPv6EchoRequest(id=ident & 0xFFFF, seq=seq, data=MARK)


def non_vip_packets6(src: str, to: str, *, port: int, sport: int) -> list[Packet]:
    """An ICMPv6 echo, a TCP SYN and a UDP datagram from ``src`` to ``to`` (no VIP: RB-2)."""
    return [
        IPv6(bytes(icmp6_echo(src, to, ident=sport, seq=1))),
        IPv6(bytes(IPv6(src=src, dst=to) / TCP(sport=sport, dport=port, flags="S"))),
        IPv6(bytes(IPv6(src=src, dst=to) / UDP(sport=sport, dport=port) / Raw(MARK + b":non-vip"))),
    ]


def foreign_in_ipv6(flow: Flow, *, outer_src: str, server: str, gue: bool = False) -> list[Packet]:
    """``flow``'s SYN (or datagram) to the VIP encapsulated in IPv6 by ``outer_src`` (not a MUX)
    straight to ``server``: IPv6-in-IPv6 (next header 41) for an IPv6 flow, IPv4-in-IPv6 (4)
    for an IPv4 one; or, with ``gue``, in UDP to the GUE port (RB-4)."""
    from dsrconform.observe.taps import GUE_PORT
    from dsrconform.traffic.crafted import vip_packet

    inner: Packet
    if ipaddress.ip_address(flow.vip).version == 6:
        inner, nh = vip_packet6(flow, _marked(flow, "foreign")), 41
    else:
        inner, nh = IP(bytes(vip_packet(flow, _marked(flow, "foreign")))), 4
    if gue:
        outer = IPv6(src=outer_src, dst=server) / UDP(sport=flow.client_port, dport=GUE_PORT)
        return [IPv6(bytes(outer / Raw(bytes(inner))))]
    return [IPv6(bytes(IPv6(src=outer_src, dst=server, nh=nh) / inner))]


def cases6() -> dict[str, Case]:
    """The IPv6 catalogue, by name (see the module doc; names shared with IPv4's where the case
    means the same)."""
    from dsrconform.traffic.crafted import Case

    def add(name: str, req: str, doc: str, build: Callable[[CaseParams], list[Packet]]) -> None:
        out[name] = Case(name, req, doc, build)

    out: dict[str, Case] = {}
    add("truncated-ip", "RB-1", "IPv6 header cut short", lambda p: truncated_ip6(p.probe))
    add("truncated-l4", "RB-1", "TCP/UDP header cut short", lambda p: truncated_l4_6(p.probe))
    add(
        "ip-len-overrun",
        "RB-1",
        "IPv6 payload length beyond the frame",
        lambda p: payload_len_overrun(p.probe),
    )
    add(
        "ext-headers",
        "RB-1",
        "hop-by-hop, destination options, routing headers",
        lambda p: extension_headers(p.probe),
    )
    add(
        "fragments",
        "RB-3",
        "a VIP-bound TCP/UDP packet in IPv6 fragments (first, non-first)",
        lambda p: fragments6(
            p.probe, mtu=max(p.frag_mtu, MIN_MTU), payload_len=max(p.frag_payload, 2 * MIN_MTU)
        ),
    )
    add("bad-l4-csum", "RB-1", "a wrong TCP/UDP checksum", lambda p: bad_l4_checksum6(p.probe))
    add(
        "icmp-packet-too-big",
        "RW-6",
        "ICMPv6 packet too big about the live flow's reply",
        lambda p: icmp6_packet_too_big(
            p.live, src=p.need_icmp_src(), mtu=max(p.next_hop_mtu, MIN_MTU)
        ),
    )
    add(
        "icmp-time-exceeded",
        "RW-7",
        "ICMPv6 time exceeded about the live flow's reply",
        lambda p: icmp6_time_exceeded(p.live, src=p.need_icmp_src()),
    )
    add(
        "icmp-port-unreach",
        "RW-7",
        "ICMPv6 port unreachable (from the client)",
        lambda p: icmp6_port_unreachable(p.live),
    )
    add(
        "icmp-param-problem",
        "RW-7",
        "ICMPv6 parameter problem about the live flow's reply",
        lambda p: icmp6_param_problem(p.live, src=p.need_icmp_src()),
    )
    add("hop-limit-1", "RB-1", "hop limit 1 toward the VIP", lambda p: hop_limit_one(p.probe))
    add(
        "unknown-proto", "RB-1", "next headers 253 and 254", lambda p: unknown_next_headers(p.probe)
    )
    return out


ALIASES: dict[str, dict[str, str | None]] = {
    "ipv6": {
        "ip-options": "ext-headers",
        "ttl-1": "hop-limit-1",
        "icmp-frag-needed": "icmp-packet-too-big",
        "bad-ip-csum": None,  # IPv6 has no header checksum: nothing to corrupt
    },
    "ipv4": {
        "ext-headers": "ip-options",
        "hop-limit-1": "ttl-1",
        "icmp-packet-too-big": "icmp-frag-needed",
    },
}
"""A case named for one family, in the other: its counterpart there (None: it has none and is
left out), so one list of names serves flows of either family."""
