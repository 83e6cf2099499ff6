"""The BPF link tap on IPv6 (root): plain IPv6, IPv6-in-IPv6 (next header 41), IPv4-in-IPv6
(next header 4), GUE over IPv6, ICMPv6 errors with the flow they quote, extension headers and
fragments, checksums over the IPv6 pseudo-header, and an aggregated IPv6 flood network."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6PacketTooBig,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.packet import Packet, Raw

from dsrconform.observe.linktap import LinkTap, to_records
from dsrconform.observe.taps import GUE_PORT, TapFlow
from tests.integration.test_linktap import frame, pair, send
from tests.markers import requires_root

pytestmark = requires_root
__all__ = ["pair"]  # the fixture, imported for its tests here

CLI, VIP, MUX, SRV = "2001:2:0:1::2", "2001:2:0:100::10", "2001:2:0:10::2", "2001:2:0:20::2"
CLI4, VIP4 = "198.18.1.2", "198.19.0.13"


def test_ipv6_plain_encapsulated_and_quoted_flows(pair: tuple[str, str]) -> None:
    na, nb = pair
    syn = IPv6(src=CLI, dst=VIP, tc=(10 << 2) | 2) / TCP(sport=41000, dport=80, flags="S")
    bad = IPv6(src=CLI, dst=VIP) / TCP(sport=41001, dport=80, flags="A", chksum=9) / Raw(b"x")
    udp = IPv6(src=CLI, dst=VIP) / UDP(sport=41002, dport=7) / Raw(b"hello")
    in6 = IPv6(src=MUX, dst=SRV, nh=41) / syn  # outer traffic class 0: DSCP lost, ECN cleared
    in4 = IPv6(src=MUX, dst=SRV, nh=4) / (IP(src=CLI4, dst=VIP4) / TCP(sport=42000, dport=80))
    gue = IPv6(src=MUX, dst=SRV) / UDP(sport=1234, dport=GUE_PORT) / Raw(bytes(syn))
    reply = IPv6(src=VIP, dst=CLI) / TCP(sport=80, dport=41000, flags="SA")
    ptb = IPv6(src="2001:2:0:1::1", dst=VIP) / ICMPv6PacketTooBig(mtu=1280) / bytes(reply)[:48]
    pkts = [syn, syn, bad, udp, in6, in4, gue, ptb, IPv6(src=MUX, dst=SRV, nh=41) / ptb]
    with LinkTap(nb, "dsrc-tb") as tap:
        send(na, "dsrc-ta", [frame(na, "dsrc-ta", nb, "dsrc-tb", p) for p in pkts])
        flows = [f for f in tap.flows() if f.direction == "ingress"]
        records = to_records(tap, node="server1", link="l", peer="mux1", started=0.0)
        counters = tap.counters("ingress")
    assert counters["truncated"] == 0 and counters["overflow"] == 0
    plain = {f.sport: f for f in flows if f.inner is None and not f.icmp}
    s = plain[41000]
    assert (s.proto, s.src, s.dst, s.dport) == (6, CLI, VIP, 80)
    assert (s.packets, s.syn, s.bad_l3, s.bad_l4, s.l4_checked) == (2, 2, 0, 0, 2)
    assert (s.dscp_seen, s.ecn_seen) == (1 << 10, 1 << 2), "IPv6 traffic class not read"
    assert (plain[41001].bad_l4, plain[41001].l4_checked) == (1, 1), "IPv6 pseudo-header"
    assert (plain[41002].proto, plain[41002].bad_l4, plain[41002].l4_checked) == (17, 0, 1)
    inner = {(f.proto, f.inner[3]): f for f in flows if f.inner is not None and f.inner[3]}
    e6 = inner[(41, 41000)]
    assert (e6.src, e6.dst, e6.inner) == (MUX, SRV, (6, CLI, VIP, 41000, 80))
    assert (e6.bad_l4, e6.l4_checked, e6.dscp_changed, e6.ecn_bad) == (0, 1, 1, 0)
    assert inner[(4, 42000)].inner == (6, CLI4, VIP4, 42000, 80)
    g = inner[(17, 41000)]
    assert (g.sport, g.dport, g.inner) == (1234, GUE_PORT, (6, CLI, VIP, 41000, 80))
    errors = {f.proto: f for f in flows if f.embedded}
    assert errors[58].icmp == (2, 0) and errors[58].embedded == (6, VIP, CLI, 80, 41000)
    assert (errors[58].bad_l4, errors[58].l4_checked) == (0, 1), "ICMPv6 checksum"
    assert errors[41].inner == (58, "2001:2:0:1::1", VIP, 0, 0) and errors[41].icmp == (2, 0)
    recs = [r for r in records if isinstance(r, TapFlow) and r.embedded is not None]
    assert {r.embedded.src for r in recs} == {VIP}


def test_ipv6_extension_headers_and_fragments(pair: tuple[str, str]) -> None:
    """Extension headers are walked to the upper-layer header (ports read); a fragment has no
    ports and counts as a fragment, first or not; a header chain cut short is truncated."""
    na, nb = pair
    tcp = TCP(sport=43000, dport=80, flags="S")
    hbh = IPv6(src=CLI, dst=VIP) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / tcp
    first = IPv6(src=CLI, dst=VIP) / IPv6ExtHdrFragment(id=7, m=1, offset=0) / tcp
    later = IPv6(src=CLI, dst=VIP) / IPv6ExtHdrFragment(id=7, m=0, offset=3, nh=6) / Raw(b"y" * 8)
    cut = IPv6(src=CLI, dst=VIP, nh=0, plen=4) / Raw(b"\x06\x00\x00\x00")
    pkts: list[Packet] = [hbh, first, later, cut]
    with LinkTap(nb, "dsrc-tb") as tap:
        send(na, "dsrc-ta", [frame(na, "dsrc-ta", nb, "dsrc-tb", p) for p in pkts])
        flows = [f for f in tap.flows() if f.direction == "ingress"]
        counters = tap.counters("ingress")
    assert counters["truncated"] == 1, "an extension header beyond the payload not refused"
    ported = [f for f in flows if f.sport == 43000]
    assert len(ported) == 1 and (ported[0].proto, ported[0].syn, ported[0].fragments) == (6, 1, 0)
    frags = [f for f in flows if f.fragments]
    assert len(frags) == 1 and frags[0].packets == 2 and frags[0].fragments == 2
    assert (frags[0].proto, frags[0].sport, frags[0].dport) == (6, 0, 0)


def test_an_aggregated_ipv6_network_makes_one_record(pair: tuple[str, str]) -> None:
    na, nb = pair
    flood = [
        IPv6(src=f"2001:2:0:2{i % 16:x}0::{i + 1:x}", dst=VIP) / TCP(sport=1024 + i, dport=80)
        for i in range(40)
    ]
    nets = ["198.18.200.0/21", "2001:2:0:200::/56"]
    with LinkTap(nb, "dsrc-tb", max_flows=8, aggregate=nets) as tap:
        send(na, "dsrc-ta", [frame(na, "dsrc-ta", nb, "dsrc-tb", p) for p in flood])
        flows = [f for f in tap.flows() if f.direction == "ingress"]
        counters = tap.counters()
    assert counters["overflow"] == 0
    assert [(f.src, f.sport, f.packets) for f in flows] == [("2001:2:0:200::", 0, 40)]
