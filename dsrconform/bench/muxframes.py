"""The frames of ``dsrconform bench mux``, per address family (pure: no BPF, no namespace).

IPv4: 64 bytes, Ethernet + IPv4 + TCP (padded), the template livegen copies, or the AF_PACKET
generator's pool built from it (:func:`dsrconform.traffic.synflood.syn_frames`). IPv6: 74 bytes,
Ethernet + IPv6 (no extension header, traffic class and flow label 0, hop limit 64) + TCP, for the
AF_PACKET generator only (livegen writes IPv4 headers). IPv6 has no header checksum; the TCP
checksum covers the IPv6 pseudo-header (RFC 8200 8.1).

Either template has source address and port zero and its checksums computed over those zeroes:
the per-flow values are added to them incrementally (RFC 1624 with old value 0 is exact).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Literal

from scapy.utils import checksum  # the Internet checksum (RFC 1071)

from dsrconform.errors import ConfigError
from dsrconform.target import BenchVip, Family

Mode = Literal["syn", "established"]

FRAME_LEN = 64
FRAME_LEN6 = 74
ESTABLISHED_FLOWS = 1024
SPORT_BASE = 1024
AF_PACKET_CLIENTS = ipaddress.IPv4Network("198.18.1.0/24")
AF_PACKET_CLIENTS6 = ipaddress.IPv6Network("2001:2:0:1::/64")
CLIENT6_FIRST = 2  # 2001:2:0:1::1 is the client link's router end in the lab's address plan
AF_PACKET_SYN_FLOWS = 65_536  # distinct flows prebuilt for the AF_PACKET generator's syn mode

_TCP_SYN, _TCP_ACK = 0x02, 0x10
_ETH_P_IP, _ETH_P_IPV6 = 0x0800, 0x86DD
_HOP_LIMIT = 64
# IPv6 frame offsets: the source address (Ethernet 14 + 8), TCP source port and checksum.
_SRC6_OFF, _SPORT6_OFF, _TCP6_CHECK_OFF = 22, 54, 70


def family_of(addr: str) -> Family:
    """``"ipv4"`` or ``"ipv6"``: the family of an address (ValueError for no address)."""
    return "ipv6" if ipaddress.ip_address(addr).version == 6 else "ipv4"


def frame_len(family: Family) -> int:
    """The bytes of each bench frame of ``family``."""
    return FRAME_LEN6 if family == "ipv6" else FRAME_LEN


def _eth(dst_mac: str, src_mac: str, ethertype: int) -> bytes:
    return (
        bytes.fromhex(dst_mac.replace(":", ""))
        + bytes.fromhex(src_mac.replace(":", ""))
        + struct.pack("!H", ethertype)
    )


def _tcp(port: int, mode: Mode) -> bytes:
    flags = _TCP_SYN if mode == "syn" else _TCP_ACK
    ack = 0 if mode == "syn" else 1
    return struct.pack("!HHIIBBHHH", 0, port, 1, ack, 5 << 4, flags, 65535, 0, 0)


def build_template(dst_mac: str, src_mac: str, vip: BenchVip, mode: Mode) -> bytes:
    """The frame every flow's frame is made from: Ethernet + IP + TCP to the VIP, of the VIP's
    family (64 bytes for IPv4, 74 for IPv6), source address and port zero, checksums computed
    over those zeroes: livegen or :func:`af_packet_frames` add the per-flow values to them."""
    if vip.proto != 6:
        raise ConfigError(f"bench VIP protocol {vip.proto}: the generator sends TCP (6) only")
    tcp = _tcp(vip.port, mode)
    if family_of(vip.addr) == "ipv6":
        dst6 = ipaddress.IPv6Address(vip.addr).packed
        pseudo6 = bytes(16) + dst6 + struct.pack("!I3xB", len(tcp), 6)
        tcp = tcp[:16] + struct.pack("!H", checksum(pseudo6 + tcp)) + tcp[18:]
        ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, _HOP_LIMIT, bytes(16), dst6)
        return _eth(dst_mac, src_mac, _ETH_P_IPV6) + ip6 + tcp
    dst_ip = ipaddress.IPv4Address(vip.addr).packed
    pseudo = bytes(4) + dst_ip + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, bytes(4), dst_ip)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    frame = _eth(dst_mac, src_mac, _ETH_P_IP) + ip + tcp
    return frame + bytes(FRAME_LEN - len(frame))


def _csum_add(csum: int, add: int) -> int:
    """A checksum field with ``add`` (a sum of 16-bit words) added: RFC 1624 eqn. 3, old 0."""
    s = (~csum & 0xFFFF) + add
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def flow_source6(flow: int) -> tuple[str, int]:
    """(source address, source port) of IPv6 flow ``flow``: a new address of
    :data:`AF_PACKET_CLIENTS6` per flow from ``::2`` on, port :data:`SPORT_BASE`."""
    addr = int(AF_PACKET_CLIENTS6.network_address) + CLIENT6_FIRST + flow
    return str(ipaddress.IPv6Address(addr)), SPORT_BASE


def syn_frames6(template: bytes, n: int) -> bytes:
    """IPv6 flows ``0 .. n-1`` (:func:`flow_source6`), back to back (``n * 74`` bytes): the
    template with each flow's source written and the TCP checksum patched."""
    if len(template) != FRAME_LEN6:
        raise ValueError(f"IPv6 template of {len(template)} bytes, expected {FRAME_LEN6}")
    tcp_check = struct.unpack_from("!H", template, _TCP6_CHECK_OFF)[0]
    first = int(AF_PACKET_CLIENTS6.network_address) + CLIENT6_FIRST  # flow_source6(0), inlined
    out = bytearray(template * n)
    pack = struct.pack_into
    for i in range(n):
        addr = first + i
        words = sum((addr >> s) & 0xFFFF for s in range(0, 128, 16)) + SPORT_BASE
        off = i * FRAME_LEN6
        out[off + _SRC6_OFF : off + _SRC6_OFF + 16] = addr.to_bytes(16, "big")
        pack("!H", out, off + _SPORT6_OFF, SPORT_BASE)
        pack("!H", out, off + _TCP6_CHECK_OFF, _csum_add(tcp_check, words))
    return bytes(out)


def af_packet_frames(template: bytes, mode: Mode) -> bytes:
    """The AF_PACKET generator's pool for ``template`` (its family by its length): in ``syn``
    mode :data:`AF_PACKET_SYN_FLOWS` distinct flows, in ``established`` the
    :data:`ESTABLISHED_FLOWS` that repeat (connection-table hits)."""
    flows = AF_PACKET_SYN_FLOWS if mode == "syn" else ESTABLISHED_FLOWS
    if len(template) == FRAME_LEN6:
        return syn_frames6(template, flows)
    from dsrconform.traffic.synflood import syn_frames

    return syn_frames(template, AF_PACKET_CLIENTS, 0, flows)
