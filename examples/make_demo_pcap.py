"""Regenerate examples/demo.pcap: a short client-side trace toward the MUX of mux-demo.yaml.

It holds TCP handshakes and data from six clients, UDP queries, an ICMP fragmentation-needed
about one flow, traffic that is not for a VIP, and a few malformed packets, so ``mux-run`` shows
every kind of verdict. Run: ``.venv/bin/python examples/make_demo_pcap.py``.
"""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror
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


if __name__ == "__main__":
    dest = Path(__file__).with_name("demo.pcap")
    wrpcap(str(dest), packets())
    print(f"wrote {dest}")
