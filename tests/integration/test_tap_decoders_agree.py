"""The tap program and the pcap decoder read IPv6 alike (root, BPF_PROG_TEST_RUN, no
namespaces): hypothesis builds IPv6 packets (plain, behind extension headers, fragmented,
IPv6-in-IPv6, IPv4-in-IPv6, GUE over IPv6, ICMPv6 errors quoting a flow) and the tap's record
of each must name the headers :func:`dsrconform.observe.pcap.frame_headers` finds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6PacketTooBig,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from dsrconform.observe.linktap import LinkTap, TapFlow
from dsrconform.observe.pcap import Header, frame_headers
from dsrconform.observe.taps import GUE_PORT
from tests.markers import requires_root

pytestmark = requires_root

LAB6 = st.tuples(*[st.integers(0, 0xFFFF)] * 4).map(
    lambda g: f"2001:2:{g[0]:x}:{g[1]:x}::{g[2]:x}:{g[3]:x}"
)
LAB4 = st.integers(min_value=0, max_value=2**17 - 1).map(
    lambda n: f"198.{18 + (n >> 16)}.{(n >> 8) & 0xFF}.{n & 0xFF}"
)
PORTS = st.integers(min_value=1, max_value=65535)


@st.composite
def l4(draw: st.DrawFn) -> Packet:
    sport, dport = draw(PORTS), draw(PORTS)
    if draw(st.booleans()):
        return TCP(sport=sport, dport=dport, flags=draw(st.sampled_from(["S", "SA", "A", "F"])))
    return UDP(sport=sport, dport=dport if dport != GUE_PORT else 7) / Raw(
        b"x" * draw(st.integers(0, 40))
    )


@st.composite
def plain6(draw: st.DrawFn) -> Packet:
    pkt: Packet = IPv6(src=draw(LAB6), dst=draw(LAB6), tc=draw(st.integers(0, 255)))
    for ext in draw(st.lists(st.sampled_from(["hbh", "dst"]), max_size=3)):
        pkt = pkt / (IPv6ExtHdrHopByHop() if ext == "hbh" else IPv6ExtHdrDestOpt())
    if draw(st.booleans()):
        pkt = pkt / IPv6ExtHdrFragment(offset=draw(st.integers(0, 3)), m=draw(st.integers(0, 1)))
    return pkt / draw(l4())


@st.composite
def packets(draw: st.DrawFn) -> Packet:
    kind = draw(st.sampled_from(["plain", "ip6ip6", "ipip6", "gue6", "icmp6"]))
    outer = IPv6(src=draw(LAB6), dst=draw(LAB6))
    if kind == "plain":
        return draw(plain6())
    if kind == "ip6ip6":
        return IPv6(bytes(outer / draw(plain6())))
    if kind == "ipip6":
        return IPv6(bytes(outer / IP(src=draw(LAB4), dst=draw(LAB4)) / draw(l4())))
    if kind == "gue6":
        inner = bytes(draw(plain6()))
        return IPv6(bytes(outer / UDP(sport=draw(PORTS), dport=GUE_PORT) / Raw(inner)))
    quoted = IPv6(src=draw(LAB6), dst=draw(LAB6)) / draw(l4())
    error = draw(
        st.sampled_from(
            [ICMPv6PacketTooBig(mtu=1280), ICMPv6TimeExceeded(), ICMPv6DestUnreach(code=4)]
        )
    )
    return IPv6(bytes(outer / error / bytes(quoted)[:48]))


@pytest.fixture(scope="module")
def tap() -> Iterator[LinkTap]:
    t = LinkTap(None, "unattached")  # loaded, never attached: test runs only
    try:
        yield t
    finally:
        t.close()


def as_header(t: tuple[int, str, str, int, int], layer: str) -> Header:
    return Header(t[0], t[1], t[2], t[3], t[4], layer)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pkt=packets())
def test_the_tap_records_the_headers_the_pcap_decoder_finds(tap: LinkTap, pkt: Packet) -> None:
    flows_map = tap._obj.map("dsrc_tap_flows")
    for key in list(flows_map.keys()):
        flows_map.delete(key)
    frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt)
    tap._obj.program("dsrc_tap_in").test_run(frame)
    (rec,) = tap.flows()
    assert isinstance(rec, TapFlow) and rec.bad_l4 == 0, rec
    # Ports: the tap keeps them on the innermost header (and GUE's outer UDP header), as
    # the pcap decoder finds none on an IP-in-IP outer header: the same headers either way.
    got = [Header(rec.proto, rec.src, rec.dst, rec.sport, rec.dport, "outer")]
    if rec.inner is not None:
        got.append(as_header(rec.inner, "inner"))
    if rec.embedded is not None:
        got.append(as_header(rec.embedded, "embedded"))
    assert got == frame_headers(frame), (pkt.summary(), rec)
