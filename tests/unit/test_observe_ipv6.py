"""pcap decoding, evidence filters and flow texts in IPv6: plain IPv6, IPv6-in-IPv6 (next header
41), IPv4-in-IPv6 (4), GUE over IPv6, ICMPv6 errors, extension headers and fragments, on
scapy-built frames; the evidence capture filter keeps the IPv6 SYN flood out (tcpdump itself
applies it, reading a file needs no privileges)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6PacketTooBig,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.packet import Packet, Raw
from scapy.utils import rdpcap

from dsrconform.observe.evidence import capture_filter, parse_ends
from dsrconform.observe.history import hostport
from dsrconform.observe.pcap import ClientEnd, Header, frame_headers
from dsrconform.observe.taps import GUE_PORT
from tests.unit.test_observe_pcap import MS, S, at, eth, tag, write

CLIENT, VIP = "2001:2:0:1::2", "2001:2:0:100::10"
MUX, SERVER = "2001:2:0:10::2", "2001:2:0:20::2"
CLIENT4, VIP4 = "198.18.1.2", "198.19.0.13"


def syn6(src: str = CLIENT, sport: int = 40001, mark: str = "") -> Packet:
    return IPv6(src=src, dst=VIP) / TCP(sport=sport, dport=80, flags="S") / Raw(f"|{mark}".encode())


def test_plain_ipv6() -> None:
    assert frame_headers(bytes(eth(syn6()))) == [Header(6, CLIENT, VIP, 40001, 80)]
    raw = frame_headers(bytes(syn6()), linktype=229)  # LINKTYPE_IPV6
    assert raw == [Header(6, CLIENT, VIP, 40001, 80)]


@pytest.mark.parametrize(
    ("outer", "inner", "want"),
    [
        (IPv6(src=MUX, dst=SERVER, nh=41), syn6(), Header(6, CLIENT, VIP, 40001, 80, "inner")),
        (
            IPv6(src=MUX, dst=SERVER, nh=4),
            IP(src=CLIENT4, dst=VIP4) / TCP(sport=40002, dport=80),
            Header(6, CLIENT4, VIP4, 40002, 80, "inner"),
        ),
        (
            IPv6(src=MUX, dst=SERVER) / UDP(sport=999, dport=GUE_PORT),
            syn6(),
            Header(6, CLIENT, VIP, 40001, 80, "inner"),
        ),
    ],
    ids=["ip6ip6", "ipip6", "gue6"],
)
def test_encapsulated_in_ipv6(outer: Packet, inner: Packet, want: Header) -> None:
    headers = frame_headers(bytes(eth(outer / inner)))
    assert len(headers) == 2 and headers[1] == want
    assert (headers[0].src, headers[0].dst) == (MUX, SERVER)
    assert headers[0].proto == {"ip6ip6": 41, "ipip6": 4}.get(_kind(outer), 17)


def _kind(outer: Packet) -> str:
    return "ip6ip6" if outer.nh == 41 else "ipip6" if outer.nh == 4 else "gue6"


def test_icmpv6_packet_too_big_quotes_its_flow() -> None:
    reply = IPv6(src=VIP, dst=CLIENT) / TCP(sport=80, dport=40001, flags="SA")
    ptb = IPv6(src="2001:2:0:1::1", dst=VIP) / ICMPv6PacketTooBig(mtu=1280) / bytes(reply)[:48]
    headers = frame_headers(bytes(eth(ptb)))
    assert headers[0].proto == 58
    assert headers[1] == Header(6, VIP, CLIENT, 80, 40001, "embedded")
    encap = frame_headers(bytes(eth(IPv6(src=MUX, dst=SERVER, nh=41) / ptb)))
    assert [h.layer for h in encap] == ["outer", "inner", "embedded"]


def test_extension_headers_and_fragments() -> None:
    tcp = TCP(sport=40003, dport=80)
    chain = IPv6(src=CLIENT, dst=VIP) / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting()
    assert frame_headers(bytes(eth(chain / IPv6ExtHdrDestOpt() / tcp)))[0] == Header(
        6, CLIENT, VIP, 40003, 80
    )
    first = IPv6(src=CLIENT, dst=VIP) / IPv6ExtHdrFragment(m=1, offset=0) / tcp
    later = IPv6(src=CLIENT, dst=VIP) / IPv6ExtHdrFragment(m=0, offset=5, nh=6) / Raw(b"x" * 8)
    assert frame_headers(bytes(eth(first))) == [Header(6, CLIENT, VIP)]  # no ports: a fragment
    assert frame_headers(bytes(eth(later))) == [Header(6, CLIENT, VIP)]
    whole = IPv6(src=CLIENT, dst=VIP) / IPv6ExtHdrFragment(m=0, offset=0) / tcp  # atomic
    assert frame_headers(bytes(eth(whole)))[0].sport == 40003
    assert frame_headers(bytes(eth(IPv6(src=CLIENT, dst=VIP)))[:30]) == []  # cut short


def test_client_ends_match_ipv6_in_any_header() -> None:
    end = ClientEnd("2001:2:0:1:0:0:0:2", 40001)
    assert end.addr == CLIENT, "kept canonical, as the headers' addresses are"
    inside = frame_headers(bytes(eth(IPv6(src=MUX, dst=SERVER, nh=41) / syn6())))
    assert [end.matches(h) for h in inside] == [False, True]


def test_flow_texts_bracket_ipv6_and_parse_back() -> None:
    assert hostport(CLIENT, 40001) == "[2001:2:0:1::2]:40001"
    assert hostport(CLIENT4, 40001) == "198.18.1.2:40001" and hostport(CLIENT, None) == CLIENT
    text = (
        f"udp [{MUX}]:999 > [{SERVER}]:{GUE_PORT} [inner tcp [{CLIENT}]:40001 > [{VIP}]:80], "
        "3 packets/300 bytes"
    )
    assert parse_ends(text) == [ClientEnd(CLIENT, 40001, 6)]
    assert parse_ends(f"icmp6 2001:2:0:1::1 > {VIP}") == [ClientEnd("2001:2:0:1::1")]
    assert parse_ends(f"tcp [{CLIENT}]:40001 > [{VIP}]:80 (flow 3)", first_is_client=True) == [
        ClientEnd(CLIENT, 40001, 6)
    ]


def test_capture_filter_keeps_the_ipv6_syn_flood_out(tmp_path: Path) -> None:
    tcpdump = shutil.which("tcpdump") or "/usr/bin/tcpdump"
    if not Path(tcpdump).exists():
        pytest.skip("tcpdump is not installed (apt-get install tcpdump)")
    flood, flood4 = "2001:2:0:2ab::7", "198.18.201.7"

    def syn4(src: str, mark: str) -> Packet:
        return (
            IP(src=src, dst=VIP4) / TCP(sport=40001, dport=80, flags="S") / Raw(f"|{mark}".encode())
        )

    gue = IPv6(src=MUX, dst=SERVER) / UDP(sport=9, dport=GUE_PORT)
    pkts = [
        eth(syn6(flood, mark="flood")),
        eth(IPv6(src=VIP, dst=flood) / TCP(sport=80, dport=40001, flags="SA") / Raw(b"|reply")),
        eth(IPv6(src=MUX, dst=SERVER, nh=41) / syn6(flood, mark="flood-ip6ip6")),
        eth(IPv6(src=MUX, dst=SERVER, nh=4) / syn4(flood4, "flood-ipip6")),
        eth(gue / syn6(flood, mark="flood-gue6")),
        eth(gue / syn4(flood4, "flood4-gue6")),
        eth(syn6(mark="client")),
        eth(IPv6(src=MUX, dst=SERVER, nh=41) / syn6(mark="client-ip6ip6")),
        eth(IPv6(src=MUX, dst=SERVER, nh=4) / syn4(CLIENT4, "client-ipip6")),
        eth(gue / syn6(mark="client-gue6")),
        eth(syn6("2001:2:0:300::1", mark="outside-the-flood-range")),
    ]
    src = write(tmp_path / "all.pcap", [at(p, 100 * S + i * MS) for i, p in enumerate(pkts)])
    out = tmp_path / "kept.pcap"
    res = subprocess.run(
        [tcpdump, "-r", str(src), "-w", str(out), capture_filter()],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    kept = [tag(p) for p in rdpcap(str(out))]
    assert kept == [
        "client",
        "client-ip6ip6",
        "client-ipip6",
        "client-gue6",
        "outside-the-flood-range",
    ]
