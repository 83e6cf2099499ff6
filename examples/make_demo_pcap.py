"""Regenerate examples/demo.pcap and demo6.pcap: short client-side traces toward the MUX of
mux-demo.yaml and mux-demo6.yaml.

demo.pcap holds TCP handshakes and data from six clients, UDP queries, an ICMP
fragmentation-needed about one flow, traffic that is not for a VIP, and a few malformed packets,
so ``mux-run`` shows every kind of verdict. demo6.pcap does the same in IPv6 (an ICMPv6 packet
too big, a fragment, an extension header) plus IPv4 flows to a VIP with IPv6 servers.
Run: ``.venv/bin/python examples/make_demo_pcap.py``.
"""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    IPerror6,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
)
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:0a:01")
VIP, UVIP = "198.19.0.10", "198.19.0.11"


def packets() -> list:
    out = []
    for i in range(6):
        c, sp = f"198.18.1.{i + 1}", 40000 + i
        out.append(ETH / IP(src=c, dst=VIP) / TCP(sport=sp, dport=80, flags="S", seq=100))
        out.append(ETH / IP(src=c, dst=VIP) / TCP(sport=sp, dport=80, flags="A", seq=101, ack=1))
        get = Raw(b"GET /stream?seed=1&bytes=1000 HTTP/1.1\r\nHost: vip\r\n\r\n")
        out.append(ETH / IP(src=c, dst=VIP) / TCP(sport=sp, dport=80, flags="PA", seq=101) / get)
        out.append(ETH / IP(src=c, dst=UVIP) / UDP(sport=sp, dport=53) / Raw(b"id?"))
    out.append(ETH / IP(src="198.18.0.1", dst=VIP) / ICMP(type=3, code=4, nexthopmtu=1400)
               / IPerror(src=VIP, dst="198.18.1.1") / TCPerror(sport=80, dport=40000))  # fmt: skip
    out.append(ETH / IP(src="198.18.1.1", dst="198.18.10.1") / ICMP())  # to the MUX itself
    out.append(ETH / IP(src="198.18.1.1", dst=VIP, flags="MF") / TCP(sport=1, dport=80))
    out.append(ETH / IP(src="198.18.1.1", dst=VIP, chksum=0xDEAD) / TCP(sport=2, dport=80))
    return out


VIP6, UVIP6, VIP46 = "2001:2:0:100::10", "2001:2:0:100::11", "198.19.0.13"


def packets6() -> list:
    out = []
    for i in range(4):
        c, c4, sp = f"2001:2:0:1::{i + 2:x}", f"198.18.1.{i + 1}", 40000 + i
        for src, dst in ((c, VIP6), (c4, VIP46)):
            ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
            out.append(ETH / ip / TCP(sport=sp, dport=80, flags="S", seq=100))
            out.append(ETH / ip / TCP(sport=sp, dport=80, flags="A", seq=101, ack=1))
        out.append(ETH / IPv6(src=c, dst=UVIP6) / UDP(sport=sp, dport=7) / Raw(b"echo?"))
    out.append(
        ETH
        / IPv6(src="2001:2:0:10::1", dst=VIP6)
        / ICMPv6PacketTooBig(mtu=1280)
        / IPerror6(src=VIP6, dst="2001:2:0:1::2")
        / TCPerror(sport=80, dport=40000)
    )
    out.append(ETH / IPv6(src="2001:2:0:1::2", dst="2001:2:0:10::2") / ICMPv6EchoRequest())
    out.append(
        ETH / IPv6(src="2001:2:0:1::2", dst=VIP6) / IPv6ExtHdrFragment(m=1) / TCP(sport=1, dport=80)
    )
    out.append(
        ETH / IPv6(src="2001:2:0:1::2", dst=VIP6) / IPv6ExtHdrDestOpt() / TCP(sport=2, dport=80)
    )
    return out


if __name__ == "__main__":
    for name, pkts in (("demo.pcap", packets()), ("demo6.pcap", packets6())):
        dest = Path(__file__).with_name(name)
        wrpcap(str(dest), pkts)
        print(f"wrote {dest}")
