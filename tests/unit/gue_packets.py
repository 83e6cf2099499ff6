"""Synthetic GUE packets as Katran's ``GUE_ENCAP`` build sends them, and the tap records a tap
would make of them (for the checker tests).

Katran's ``gue_encap_v4`` (katran/lib/bpf/pckt_encap.h): outer IPv4 from the MUX to the server
(protocol UDP, the inner TOS copied: ``COPY_INNER_PACKET_TOS``), then UDP from a source port
mixing the client's port and address (``htons(sport) ^ (saddr >> 16)``) to ``GUE_DPORT`` (6080),
its checksum computed over the whole datagram, then the client's IPv4 packet directly (GUE
variant 1: no GUE header, the inner version nibble says IPv4).

:func:`gue_record` builds the packet with scapy and decodes it with the framework's own pcap
decoder (:func:`dsrconform.observe.pcap.frame_headers`), so the record's outer and inner 5-tuples
are what decoding the bytes gives, and its checksum counts what verifying them gives.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from dsrconform.observe.pcap import frame_headers
from dsrconform.observe.taps import GUE_PORT, FiveTuple, TapFlow


def katran_sport(inner: FiveTuple) -> int:
    """The outer UDP source port Katran derives from the client's port and address."""
    src = int(ipaddress.IPv4Address(inner.src)).to_bytes(4, "big")
    # flow.src is in network order in a little-endian u32: ">> 16" keeps its last two bytes,
    # which htons() order puts low byte first.
    return inner.sport ^ int.from_bytes(src[2:4], "little")


def inner_packet(inner: FiveTuple, *, tos: int = 0, l4_chksum: int | None = None) -> Packet:
    ip = IP(src=inner.src, dst=inner.dst, tos=tos, proto=inner.proto)
    if inner.proto == 6:
        return ip / TCP(sport=inner.sport, dport=inner.dport, flags="A", chksum=l4_chksum)
    if inner.proto == 17:
        return ip / UDP(sport=inner.sport, dport=inner.dport, chksum=l4_chksum) / Raw(b"ping")
    return ip / ICMP() / Raw(b"ping")


def katran_gue(
    mux: str,
    server: str,
    inner: Packet,
    *,
    outer_tos: int | None = None,
    udp_chksum: int | None = None,
    dport: int = GUE_PORT,
) -> Packet:
    """``inner`` GUE-encapsulated from ``mux`` to ``server`` as Katran does (outer TOS: the
    inner one's unless given)."""
    raw = bytes(inner)
    tos = raw[1] if outer_tos is None else outer_tos
    sport = katran_sport(_five(IP(raw)))
    return (
        IP(src=mux, dst=server, tos=tos)
        / UDP(sport=sport, dport=dport, chksum=udp_chksum)
        / (Raw(raw))
    )


def _five(ip: IP) -> FiveTuple:
    ports = (ip.payload.sport, ip.payload.dport) if ip.proto in (6, 17) else (0, 0)
    return FiveTuple(proto=ip.proto, src=ip.src, dst=ip.dst, sport=ports[0], dport=ports[1])


def _sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _l3_ok(raw: bytes) -> bool:
    return _sum(raw[: (raw[0] & 0x0F) * 4]) == 0xFFFF


def _l4_ok(raw: bytes) -> bool:
    """Whether the TCP/UDP checksum of the IPv4 packet ``raw`` is right (UDP's zero: none)."""
    ihl, proto = (raw[0] & 0x0F) * 4, raw[9]
    seg = raw[ihl : int.from_bytes(raw[2:4], "big")]
    if proto == 17 and seg[6:8] == b"\0\0":
        return True
    pseudo = raw[12:20] + bytes([0, proto]) + len(seg).to_bytes(2, "big")
    return _sum(pseudo + seg) == 0xFFFF


def _tuple(h: Any) -> FiveTuple:
    return FiveTuple(proto=h.proto, src=h.src, dst=h.dst, sport=h.sport, dport=h.dport)


def decode(pkt: Packet) -> tuple[FiveTuple, FiveTuple | None, int, int]:
    """(outer 5-tuple, inner 5-tuple or None, 1 if an IPv4 header checksum is bad, 1 if an L4
    one is) of one packet, as the tap decodes and verifies it: for GUE the outer UDP checksum
    and the inner packet's L4 checksum both count as L4."""
    raw = bytes(pkt)
    heads = frame_headers(bytes(Ether(type=0x0800)) + raw)
    inner = next((h for h in heads if h.layer == "inner"), None)
    packets = [raw]
    if inner is not None:
        packets.append(raw[(raw[0] & 0x0F) * 4 + (8 if raw[9] == 17 else 0) :])
    bad_l3 = int(not all(_l3_ok(p) for p in packets))
    bad_l4 = int(not all(_l4_ok(p) for p in packets if p[9] in (6, 17)))
    return _tuple(heads[0]), None if inner is None else _tuple(inner), bad_l3, bad_l4


def gue_record(
    tap: str, mux: str, server: str, inner: FiveTuple, first: float, last: float, **kw: Any
) -> TapFlow:
    """The tap record of ``packets`` (default 10) packets of ``inner`` GUE-encapsulated by
    ``mux`` to ``server`` (``outer_tos``, ``inner_tos``, ``l4_chksum`` and ``udp_chksum`` shape
    the packet; other ``kw`` go to the record as given, and override what decoding gives)."""
    from tests.unit.observations_builder import record

    shape = {k: kw.pop(k) for k in ("outer_tos", "inner_tos", "l4_chksum", "udp_chksum") if k in kw}
    pkt = katran_gue(
        mux,
        server,
        inner_packet(inner, tos=shape.get("inner_tos", 0), l4_chksum=shape.get("l4_chksum")),
        outer_tos=shape.get("outer_tos"),
        udp_chksum=shape.get("udp_chksum"),
    )
    outer, decoded, bad_l3, bad_l4 = decode(pkt)
    n = kw.get("packets", 10)
    fields: dict[str, Any] = {
        "inner": decoded,
        "l3_valid": n * (1 - bad_l3),
        "l3_invalid": n * bad_l3,
        "l4_valid": n * (1 - bad_l4),
        "l4_invalid": n * bad_l4,
    }
    fields.update(kw)
    return record(tap, outer, first, last, **fields)
