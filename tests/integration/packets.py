"""Packet builders and validators for the MUX tests (scapy for clarity, raw bytes for speed)."""

from __future__ import annotations

import struct

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
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
    l4 = TCP(sport=sport, dport=dport, flags=flags) if proto == 6 else UDP(sport=sport, dport=dport)
    return raw(Ether(src=CLIENT_MAC, dst=MUX_MAC) / IP(src=src, dst=dst) / l4 / Raw(payload))


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
