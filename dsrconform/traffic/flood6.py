"""The IPv6 SYN flood's frames (the AF_PACKET engine of :mod:`dsrconform.traffic.synflood`).

Every frame is 74 bytes: Ethernet, IPv6 (no extension headers, traffic class 0, flow label 0, hop
limit 64, payload length 20), TCP SYN (no options, sequence 1, window 65535) to ``vip:port``, from
a source in ``net`` (default :data:`~dsrconform.traffic.synflood.FLOOD_NET6`,
2001:2:0:200::/56, which the lab's router black-holes). IPv6 has no header checksum; the TCP
checksum covers the IPv6 pseudo-header (RFC 8200 8.1: both 128-bit addresses, the upper-layer
length as 32 bits, three zero bytes and the next header). Flow ``n`` has source address
``net + n % size(net)`` and source port ``sport_base + (n // size(net)) % (65536 - sport_base)``
(with a /56, a new address per packet and the port fixed), as the IPv4 flood counts them.

Only the AF_PACKET engine sends IPv6: livegen (live frames) and trafgen's flood description
write IPv4 headers, so :func:`~dsrconform.traffic.synflood.flood` picks AF_PACKET for an IPv6 VIP
and says why.
"""

from __future__ import annotations

import ctypes
import ipaddress
import struct
import sys
from array import array

from scapy.utils import checksum  # the Internet checksum (RFC 1071)

FRAME_LEN6 = 74
ETH_P_IPV6 = 0x86DD
SRC_OFF = 22  # the IPv6 source address (Ethernet 14 + 8)
SPORT_OFF = 54  # the TCP source port (14 + 40)
TCP_CHECK_OFF = 70  # the TCP checksum (14 + 40 + 16)
HOP_LIMIT = 64
TCP_SYN = 0x02


def _mac(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"MAC address {text!r}: expected six bytes, e.g. 02:00:00:00:00:01")
    return raw


def syn_template6(dst_mac: str, src_mac: str, vip: str, port: int) -> bytes:
    """The 74-byte frame with source address and port zero and the TCP checksum computed over
    those zeroes (adding the real words later is exact: RFC 1624 with old value 0)."""
    dst_ip = ipaddress.IPv6Address(vip).packed
    eth = _mac(dst_mac) + _mac(src_mac) + struct.pack("!H", ETH_P_IPV6)
    tcp = struct.pack("!HHIIBBHHH", 0, port, 1, 0, 5 << 4, TCP_SYN, 65535, 0, 0)
    pseudo = bytes(16) + dst_ip + struct.pack("!I3xB", len(tcp), 6)
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, HOP_LIMIT, bytes(16), dst_ip)
    frame = eth + ip6 + tcp
    assert len(frame) == FRAME_LEN6
    return frame


def flow_source6(
    flow: int, net: ipaddress.IPv6Network, *, sport_base: int, repeat: int = 0
) -> tuple[str, int]:
    """(source address, source port) of packet number ``flow`` (``repeat``: the same ``repeat``
    flows come round again)."""
    if repeat:
        flow %= repeat
    span = net.num_addresses
    addr = int(net.network_address) + flow % span
    return str(ipaddress.IPv6Address(addr)), sport_base + (flow // span) % (65536 - sport_base)


def _csum_add(csum: int, add: int) -> int:
    s = (~csum & 0xFFFF) + add
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def syn_frames6(
    template: bytes, net: ipaddress.IPv6Network, first: int, n: int, *, sport_base: int
) -> bytes:
    """Frames of flows ``first .. first+n-1``, back to back (``n * 74`` bytes): the template
    with each flow's source address and port written and the TCP checksum patched."""
    base, span = int(net.network_address), net.num_addresses
    sport_span = 65536 - sport_base
    tcp_check = struct.unpack_from("!H", template, TCP_CHECK_OFF)[0]
    out = bytearray(template * n)
    for i in range(n):
        flow = first + i
        saddr = base + flow % span
        sport = sport_base + (flow // span) % sport_span
        words = sum((saddr >> s) & 0xFFFF for s in range(0, 128, 16))
        off = i * FRAME_LEN6
        out[off + SRC_OFF : off + SRC_OFF + 16] = saddr.to_bytes(16, "big")
        struct.pack_into("!H", out, off + SPORT_OFF, sport)
        struct.pack_into("!H", out, off + TCP_CHECK_OFF, _csum_add(tcp_check, words + sport))
    return bytes(out)


ROUND_WORD_OFF = SRC_OFF + 12  # the source address's bits 16..31 (a 16-bit word)


class FlowRounds6:
    """Rewrites a pool of :func:`syn_frames6` frames in place as the next ``size`` flows each
    time it is called (a new 5-tuple per packet however long the flood, as the IPv4 flood's
    :class:`~dsrconform.traffic.synflood.FlowRounds`).

    With a pool of 65,536 frames and a source range of at least 2**32 addresses (the flood's
    /56), a round moves every source address up by 65,536 and leaves the ports: one 16-bit
    word of the address (bits 16..31) takes the round's number in every frame and the TCP
    checksum goes up by one, a table lookup per frame (~15 ms for 65,536 frames). Otherwise, or
    when that word would wrap, the pool is rebuilt (~0.15 s, time the flood does not send: an
    IPv6 flood then fell short of its rate where the IPv4 one did not)."""

    def __init__(
        self, template: bytes, net: ipaddress.IPv6Network, size: int, *, sport_base: int
    ) -> None:
        self.template, self.net, self.size, self.sport_base = template, net, size, sport_base
        self.first = 0
        self._check: array[int] | None = None
        if size == 1 << 16 and net.prefixlen <= 96:
            swap = sys.byteorder == "little"  # native words of big-endian fields

            def be(x: int) -> int:
                return ((x & 0xFF) << 8) | (x >> 8) if swap else x

            self._be = be
            self._check = array("H", (be(_csum_add(be(w), 1)) for w in range(65536)))

    def __call__(self, buf: ctypes.Array[ctypes.c_char]) -> None:
        self.first += self.size
        word = (self.first >> 16) & 0xFFFF  # the round's bits 16..31 of every source address
        if (
            self._check is not None
            and word != 0
            and self.first + self.size <= self.net.num_addresses
        ):
            # The last round's flows one word step up, ports unchanged (flow < the range size).
            words = memoryview(buf).cast("B").cast("H")
            per, n = FRAME_LEN6 // 2, self.size * (FRAME_LEN6 // 2)
            words[ROUND_WORD_OFF // 2 : n : per] = array("H", [self._be(word)]) * self.size
            check = words[TCP_CHECK_OFF // 2 : n : per]
            words[TCP_CHECK_OFF // 2 : n : per] = array(
                "H", map(self._check.__getitem__, check.tolist())
            )
            return
        frames = syn_frames6(
            self.template, self.net, self.first, self.size, sport_base=self.sport_base
        )
        ctypes.memmove(buf, frames, len(frames))
