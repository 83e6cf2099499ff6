"""Packet builders and validators for the MUX tests (scapy for clarity, raw bytes for speed)."""

from __future__ import annotations

import ipaddress
import struct

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
)
from scapy.layers.l2 import Ether
from scapy.packet import Raw, raw

CLIENT_MAC = "02:00:00:00:01:01"
MUX_MAC = "02:00:00:00:0a:01"
ROUTER_MAC = "02:00:00:00:00:01"


def flow_frame(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    proto: int,
    *,
    flags: str = "A",
    payload: bytes = b"",
) -> bytes:
    """One client->VIP frame; IPv6 when the addresses are (no extension headers)."""
    l4 = TCP(sport=sport, dport=dport, flags=flags) if proto == 6 else UDP(sport=sport, dport=dport)
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    return raw(Ether(src=CLIENT_MAC, dst=MUX_MAC) / ip / l4 / Raw(payload))


def icmp_frag_needed(
    router: str, vip: str, vport: int, client: str, cport: int, proto: int
) -> bytes:
    """ICMP fragmentation-needed from ``router`` to the VIP about the reply VIP:vport->client."""
    inner_l4 = (
        TCPerror(sport=vport, dport=cport) if proto == 6 else UDPerror(sport=vport, dport=cport)
    )
    pkt = (
        Ether(src=CLIENT_MAC, dst=MUX_MAC)
        / IP(src=router, dst=vip)
        / ICMP(type=3, code=4, nexthopmtu=1400)
        / IPerror(src=vip, dst=client, proto=proto)
        / inner_l4
    )
    return raw(pkt)


ICMPV6_ERRORS = {
    1: ICMPv6DestUnreach(code=4),
    2: ICMPv6PacketTooBig(mtu=1280),
    3: ICMPv6TimeExceeded(code=0),
    4: ICMPv6ParamProblem(code=0, ptr=6),
}
"""ICMPv6 error types the MUX steers, each with a typical message."""


def icmp6_error(
    router: str, vip: str, vport: int, client: str, cport: int, proto: int, icmp_type: int = 2
) -> bytes:
    """ICMPv6 error ``icmp_type`` (2: packet too big) from ``router`` to the VIP about the reply
    VIP:vport->client."""
    inner_l4 = (
        TCPerror(sport=vport, dport=cport) if proto == 6 else UDPerror(sport=vport, dport=cport)
    )
    pkt = (
        Ether(src=CLIENT_MAC, dst=MUX_MAC)
        / IPv6(src=router, dst=vip)
        / ICMPV6_ERRORS[icmp_type].copy()
        / IPerror6(src=vip, dst=client, nh=proto)
        / inner_l4
    )
    return raw(pkt)


def ip_csum(hdr: bytes) -> int:
    s = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def fast_syn(template: bytes, src_int: int, sport: int) -> bytes:
    """``template`` (Ethernet+IPv4+TCP SYN) with a new source address and port, IP checksum fixed.

    The TCP checksum is left stale: the MUX does not read it (the server's kernel would)."""
    b = bytearray(template)
    b[26:30] = src_int.to_bytes(4, "big")
    b[34:36] = sport.to_bytes(2, "big")
    b[24:26] = b"\0\0"
    b[24:26] = ip_csum(bytes(b[14:34])).to_bytes(2, "big")
    return bytes(b)


def assert_valid_encap(
    out: bytes, inp: bytes, *, mux_addr: str, backend: str | None, ttl: int = 64
) -> None:
    """An XDP_TX output is a well-formed IPIP packet carrying exactly the input's IP packet."""
    assert len(out) >= 14 + 20, f"output of {len(out)} bytes is too short for Ethernet + IPv4"
    eth = Ether(out)
    assert eth.dst == ROUTER_MAC, (
        f"outer Ethernet destination {eth.dst}, expected next hop {ROUTER_MAC}"
    )
    assert eth.src == MUX_MAC, f"outer Ethernet source {eth.src}, expected the MUX's {MUX_MAC}"
    outer = out[14:34]
    assert outer[0] == 0x45, f"outer version/IHL byte {outer[0]:#x}, expected 0x45"
    assert outer[9] == 4, f"outer protocol {outer[9]}, expected 4 (IPIP)"
    assert ip_csum(outer) == 0, "outer IPv4 header checksum is wrong"
    assert outer[8] == ttl, f"outer TTL {outer[8]}, expected {ttl}"
    inner_len = struct.unpack("!H", inp[16:18])[0]
    tot = struct.unpack("!H", outer[2:4])[0]
    assert tot == inner_len + 20, f"outer total length {tot}, expected inner {inner_len} + 20"
    src, dst = IP(outer).src, IP(outer).dst
    assert src == mux_addr, f"outer source {src}, expected the MUX address {mux_addr}"
    if backend is not None:
        assert dst == backend, f"outer destination {dst}, the model predicts backend {backend}"
    assert out[34 : 34 + inner_len] == inp[14 : 14 + inner_len], "inner packet bytes changed"


def inner_packet_length(inp: bytes) -> int:
    """The IP packet's length in an input frame (IPv4 total length, or IPv6's 40 + payload)."""
    if inp[12:14] == b"\x86\xdd":
        return 40 + struct.unpack("!H", inp[18:20])[0]
    return struct.unpack("!H", inp[16:18])[0]


def assert_valid_encap6(
    out: bytes,
    inp: bytes,
    *,
    mux_addr6: str,
    backend: str | None,
    flow_label: int | None,
    ttl: int = 64,
) -> None:
    """An XDP_TX output is a well-formed IPv6-in-IPv6 (inner IPv6) or IPv4-in-IPv6 (inner IPv4)
    packet carrying exactly the input's IP packet: payload length = the whole inner packet, hop
    limit = ttl, traffic class copied, flow label as the model predicts (None: any)."""
    assert len(out) >= 14 + 40, f"output of {len(out)} bytes is too short for Ethernet + IPv6"
    eth = Ether(out)
    assert eth.dst == ROUTER_MAC, f"outer Ethernet destination {eth.dst}, expected {ROUTER_MAC}"
    assert eth.src == MUX_MAC, f"outer Ethernet source {eth.src}, expected the MUX's {MUX_MAC}"
    assert eth.type == 0x86DD, f"outer EtherType {eth.type:#06x}, expected 0x86dd (IPv6)"
    outer = IPv6(out[14:54])
    inner6 = inp[12:14] == b"\x86\xdd"
    inner_len = inner_packet_length(inp)
    assert outer.version == 6, f"outer version {outer.version}, expected 6"
    want_nh = 41 if inner6 else 4
    assert outer.nh == want_nh, f"outer next header {outer.nh}, expected {want_nh}"
    assert outer.plen == inner_len, (
        f"outer payload length {outer.plen}, expected the whole inner packet's {inner_len}"
    )
    assert outer.hlim == ttl, f"outer hop limit {outer.hlim}, expected {ttl}"
    tclass = IPv6(inp[14:54]).tc if inner6 else inp[15]
    assert outer.tc == tclass, f"outer traffic class {outer.tc:#04x}, inner {tclass:#04x}"
    if backend is not None:
        dst = str(ipaddress.IPv6Address(outer.dst))
        assert dst == backend, f"outer destination {dst}, the model predicts backend {backend}"
    if flow_label is not None:
        assert outer.fl == flow_label, (
            f"outer flow label {outer.fl:#07x}, the flow hash gives {flow_label:#07x}"
        )
    src = str(ipaddress.IPv6Address(outer.src))
    assert src == str(ipaddress.IPv6Address(mux_addr6)), (
        f"outer source {src}, expected the MUX's address6 {mux_addr6}"
    )
    assert out[54 : 54 + inner_len] == inp[14 : 14 + inner_len], "inner packet bytes changed"
