"""Traffic in IPv6: crafted IPv6 packets are what they claim (scapy parses them back), the
IPv6 SYN flood's frames (checksum over the IPv6 pseudo-header, sources from 2001:2:0:200::/56),
and the traffic programs' address checks and socket families."""

from __future__ import annotations

import argparse
import ipaddress
import socket
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from dsrconform.errors import ConfigError
from dsrconform.observe.pcap import frame_headers
from dsrconform.observe.taps import GUE_PORT
from dsrconform.traffic import crafted, crafted6, flood6
from dsrconform.traffic import synflood as sf
from dsrconform.traffic.common import (
    check_targets,
    family_of,
    host_header,
    mixed_families,
    outside_lab,
    set_marks,
)

CLIENT, VIP, ROUTER = "2001:2:0:1::2", "2001:2:0:100::10", "2001:2:0:1::1"
SERVER, OTHER = "2001:2:0:20::2", "2001:2:0:1::3"
LIVE = crafted.Flow(CLIENT, 40000, VIP, 80, "tcp")
PROBE = LIVE.from_port(20001)
UDP_PROBE = crafted.Flow(CLIENT, 40002, "2001:2:0:100::11", 7, "udp")
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def cases(names: list[str], live: crafted.Flow = LIVE) -> dict[str, list[Any]]:
    """The named cases' packets, parsed back from their bytes (a header cut short: raw)."""
    built = crafted.build_cases(live, names, probe_port=20001, icmp_src=ROUTER)
    return {c.name: [parsed(bytes(p)) for p in c.packets] for c in built}


def parsed(raw: bytes) -> Any:
    return IPv6(raw) if len(raw) >= 40 else Raw(raw)


def checksum_ok(pkt: IPv6) -> bool:
    """Does the L4 checksum verify? (scapy recomputes it once deleted.)"""
    l4 = pkt.lastlayer() if not pkt.haslayer(TCP) else pkt[TCP]
    l4 = pkt[UDP] if pkt.haslayer(UDP) else l4
    got = l4.chksum
    del l4.chksum
    return IPv6(bytes(pkt)).getlayer(type(l4)).chksum == got


def test_an_ipv6_flow_gets_the_ipv6_catalogue_and_aliases() -> None:
    assert LIVE.family == "ipv6" and LIVE.describe() == f"tcp [{CLIENT}]:40000 > [{VIP}]:80"
    names = crafted.select_cases("all", "ipv6")
    assert names == list(crafted.CASE_NAMES6) and "ext-headers" in names
    ipv4_list = ["ip-options", "ttl-1", "bad-ip-csum", "icmp-frag-needed", "fragments"]
    assert crafted.select_cases(ipv4_list, "ipv6") == [
        "ext-headers",
        "hop-limit-1",
        "icmp-packet-too-big",
        "fragments",
    ]
    assert crafted.select_cases(["ext-headers", "hop-limit-1"], "ipv4") == ["ip-options", "ttl-1"]
    with pytest.raises(ValueError, match="not of the VIP"):
        crafted.Flow("198.18.1.2", 1, VIP, 80)
    with pytest.raises(ValueError, match="outside the lab range 2001:2::/48"):
        crafted.Flow("2001:db8::1", 1, VIP, 80)


def test_every_ipv6_case_parses_back_as_ipv6_between_lab_addresses() -> None:
    built = crafted.build_cases(LIVE, "all", probe_port=20001, icmp_src=ROUTER)
    assert [c.name for c in built] == list(crafted.CASE_NAMES6)
    for c in built:
        assert c.packets, c.name
        for data in crafted.frame(c.packets, MAC_A, MAC_B):
            assert int.from_bytes(data[12:14], "big") == 0x86DD, c.name
            crafted.check_frame(data)


def test_extension_headers_lead_to_the_flows_tcp_header() -> None:
    pkts = cases(["ext-headers"])["ext-headers"]
    chains = [
        [type(layer) for layer in p.iterpayloads() if type(layer).__name__.startswith("IPv6Ext")]
        for p in pkts
    ]
    assert chains == [
        [IPv6ExtHdrHopByHop],
        [IPv6ExtHdrDestOpt],
        [IPv6ExtHdrRouting],
        [IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt],
    ]
    for p in pkts:
        assert (p[TCP].sport, p[TCP].dport) == (20001, 80) and checksum_ok(p)
        assert p[IPv6ExtHdrRouting].segleft == 0 if p.haslayer(IPv6ExtHdrRouting) else True


def test_fragments_are_first_and_non_first_and_reassemble() -> None:
    pkts = cases(["fragments"], UDP_PROBE)["fragments"]
    frags = [p[IPv6ExtHdrFragment] for p in pkts]
    assert len(pkts) >= 2 and len({f.id for f in frags}) == 1
    assert [f.offset == 0 for f in frags] == [True] + [False] * (len(frags) - 1)
    assert [f.m for f in frags] == [1] * (len(frags) - 1) + [0]
    assert all(len(bytes(p)) <= crafted6.MIN_MTU for p in pkts)
    whole = b"".join(bytes(f.payload) for f in frags)
    datagram = UDP(whole)
    assert (datagram.sport, datagram.dport, datagram.len) == (
        20001,
        7,
        len(whole),
    )  # the probe port
    # The tap and pcap view: a fragment has no ports, the first one neither.
    assert all(frame_headers(d)[0].sport == 0 for d in crafted.frame(pkts, MAC_A, MAC_B))


def test_truncations_and_bad_checksums_are_what_they_claim() -> None:
    got = cases(["truncated-ip", "truncated-l4", "ip-len-overrun", "bad-l4-csum"])
    (cut,) = got["truncated-ip"]
    assert len(bytes(cut)) == 24 < 40
    assert [len(p.payload) for p in got["truncated-l4"]] == [4, 19]
    assert all(p.plen == len(p.payload) for p in got["truncated-l4"])
    (over,) = got["ip-len-overrun"]
    assert over.plen == len(bytes(over)) - 40 + 100
    (bad,) = got["bad-l4-csum"]
    assert not checksum_ok(bad)
    (ok,) = cases(["hop-limit-1"])["hop-limit-1"]
    assert ok.hlim == 1 and checksum_ok(ok)
    unknown = cases(["unknown-proto"])["unknown-proto"]
    assert [p.nh for p in unknown] == [253, 254]


def test_icmpv6_errors_quote_the_live_flows_reply() -> None:
    names = ["icmp-packet-too-big", "icmp-time-exceeded", "icmp-port-unreach", "icmp-param-problem"]
    got = cases(names)
    kinds = {
        "icmp-packet-too-big": (ICMPv6PacketTooBig, 2, 0, ROUTER),
        "icmp-time-exceeded": (ICMPv6TimeExceeded, 3, 0, ROUTER),
        "icmp-port-unreach": (ICMPv6DestUnreach, 1, 4, CLIENT),
        "icmp-param-problem": (ICMPv6ParamProblem, 4, 0, ROUTER),
    }
    for name, (layer, type_, code, src) in kinds.items():
        (p,) = got[name]
        err = p[layer]
        assert (err.type, err.code, p.src, p.dst, p.nh) == (type_, code, src, VIP, 58), name
        q = p[IPerror6]
        assert (q.src, q.dst, q.nh) == (VIP, CLIENT, 6), name
        assert (p[IPerror6].payload.sport, p[IPerror6].payload.dport) == (80, 40000), name
        assert checksum_ok(p), f"{name}: ICMPv6 checksum over the pseudo-header"
    assert got["icmp-packet-too-big"][0][ICMPv6PacketTooBig].mtu == 1400
    # The entry points chaos uses pick ICMPv6 for an IPv6 flow.
    (ptb,) = crafted.icmp_frag_needed(LIVE, src=ROUTER, next_hop_mtu=600)
    assert ptb[ICMPv6PacketTooBig].mtu == crafted6.MIN_MTU
    assert crafted.icmp_port_unreachable(LIVE)[0].haslayer(ICMPv6DestUnreach)
    assert crafted.icmp_time_exceeded(LIVE, src=ROUTER)[0].haslayer(ICMPv6TimeExceeded)
    assert crafted.icmp_echo(CLIENT, VIP, ident=7).haslayer(ICMPv6EchoRequest)
    headers = frame_headers(crafted.frame([ptb], MAC_A, MAC_B)[0])
    assert headers[1].layer == "embedded" and (headers[1].src, headers[1].sport) == (VIP, 80)


def test_foreign_encapsulated_packets_for_rb4() -> None:
    (six,) = crafted.foreign_packets("ipip", LIVE, outer_src=OTHER, server=SERVER)
    assert (six.src, six.dst, six.nh) == (OTHER, SERVER, 41)
    inner = six[IPv6].payload
    assert isinstance(inner, IPv6) and (inner.src, inner[TCP].sport) == (CLIENT, 40000)
    flow4 = crafted.Flow("198.18.1.2", 40001, "198.19.0.13", 80, "tcp")
    (four,) = crafted.foreign_packets("ipip", flow4, outer_src=OTHER, server=SERVER)
    assert four.nh == 4 and four[IP].src == "198.18.1.2" and four[IP].dst == "198.19.0.13"
    (gue,) = crafted.foreign_packets("gue", LIVE, outer_src=OTHER, server=SERVER)
    assert gue[UDP].dport == GUE_PORT and IPv6(bytes(gue[UDP].payload)).src == CLIENT
    (six_in_four,) = crafted.foreign_packets(
        "ipip", LIVE, outer_src="198.18.1.3", server="198.18.20.1"
    )
    assert six_in_four[IP].proto == 41 and six_in_four[IP].payload.src == CLIENT
    (gue4,) = crafted.foreign_packets("gue", LIVE, outer_src="198.18.1.3", server="198.18.20.1")
    assert IPv6(bytes(gue4[UDP].payload)).dst == VIP
    heads = frame_headers(crafted.frame([six_in_four], MAC_A, MAC_B)[0])
    assert [(h.layer, h.src) for h in heads] == [("outer", "198.18.1.3"), ("inner", CLIENT)]
    with pytest.raises(ValueError, match="not of the server"):
        crafted.foreign_packets("ipip", LIVE, outer_src="198.18.1.3", server=SERVER)
    echo, syn, datagram = crafted.non_vip_packets(CLIENT, SERVER)
    assert echo.haslayer(ICMPv6EchoRequest) and syn[TCP].flags == "S" and datagram.haslayer(UDP)


def test_the_ipv6_flood_frame_and_its_flows() -> None:
    template = flood6.syn_template6(MAC_B, MAC_A, VIP, 80)
    net = ipaddress.IPv6Network(sf.FLOOD_NET6)
    frames = flood6.syn_frames6(template, net, 5, 3, sport_base=1024)
    assert len(frames) == 3 * flood6.FRAME_LEN6
    for i in range(3):
        pkt = Ether(frames[i * 74 : (i + 1) * 74])
        src, sport = sf.flow_source(5 + i, net)
        assert (pkt[IPv6].src, pkt[TCP].sport, pkt[IPv6].dst, pkt[TCP].dport) == (
            src,
            sport,
            VIP,
            80,
        )
        assert ipaddress.ip_address(src) in net and pkt[TCP].flags == "S"
        assert (pkt[IPv6].plen, pkt[IPv6].hlim, pkt[IPv6].nh) == (20, 64, 6)
        assert checksum_ok(pkt[IPv6]), "TCP checksum over the IPv6 pseudo-header"
    rounds = flood6.FlowRounds6(template, net, 3, sport_base=1024)
    import ctypes

    buf = ctypes.create_string_buffer(frames, len(frames))
    rounds(buf)
    assert bytes(buf) == flood6.syn_frames6(template, net, 3, 3, sport_base=1024)


@pytest.mark.parametrize("prefix", ["/56", "/96"])
def test_an_ipv6_flood_round_rewritten_in_place_equals_the_round_built(prefix: str) -> None:
    # A pool of 65,536 frames over a range of 2**32 addresses or more: a round moves one word
    # of every source address in place, and the pool is rebuilt where that word wraps (or the
    # range ends); every round's frames (sampled) are those syn_frames6 builds for its flows.
    import ctypes

    template = flood6.syn_template6(MAC_B, MAC_A, VIP, 80)
    net = ipaddress.IPv6Network("2001:2:0:200::" + prefix)
    size, length = 1 << 16, flood6.FRAME_LEN6
    rounds = flood6.FlowRounds6(template, net, size, sport_base=1024)
    frames = flood6.syn_frames6(template, net, 0, size, sport_base=1024)
    buf = ctypes.create_string_buffer(frames, len(frames))
    for k in (1, 2, None, 65535, 65536, 65537):
        if k is None:  # on to the rounds around the wrap of the word the rounds move
            rounds.first = 65534 * size
            frames = flood6.syn_frames6(template, net, rounds.first, size, sport_base=1024)
            buf = ctypes.create_string_buffer(frames, len(frames))
            continue
        rounds(buf)
        assert rounds.first == k * size
        for i in (0, 1, 4097, size - 1):
            want = flood6.syn_frames6(template, net, k * size + i, 1, sport_base=1024)
            assert bytes(buf[i * length : (i + 1) * length]) == want, (k, i)


def test_flood_arguments_by_family() -> None:
    kw = {"port": 80, "rate": None, "count": 10, "duration": 1.0}
    for vip, default in ((VIP, sf.FLOOD_NET6), ("198.19.0.10", sf.FLOOD_NET)):
        net = sf.check_flood_args("dsrc-a", "dsrc-b", vip=vip, src_net=None, **kw)  # type: ignore[arg-type]
        assert str(net) == default
    for bad, why in (
        ({"src_net": sf.FLOOD_NET}, "not of the destination"),
        ({"src_net": "2001:db8::/56"}, "outside the lab range 2001:2::/48"),
        ({"engine": "live-frames"}, "builds IPv4 frames only"),
        ({"vip": "2001:db8::10"}, "outside the lab range"),
    ):
        args = {"vip": VIP, "src_net": None, **kw, **bad}
        with pytest.raises(ConfigError, match=why):
            sf.check_flood_args("dsrc-a", "dsrc-b", **args)  # type: ignore[arg-type]


def test_traffic_programs_take_ipv6_vips_and_sources() -> None:
    assert outside_lab([VIP, CLIENT, "198.18.1.2"]) is None
    assert "outside the lab range 2001:2::/48" in (outside_lab(["2001:db8::1"]) or "")
    assert mixed_families(VIP, [CLIENT]) is None
    assert "not of the VIP" in (mixed_families(VIP, ["198.18.1.2"]) or "")
    assert family_of(VIP) == socket.AF_INET6 and family_of("198.19.0.10") == socket.AF_INET
    assert host_header(VIP) == f"[{VIP}]" and host_header("198.19.0.10") == "198.19.0.10"
    assert check_targets("t", argparse.Namespace(vip=VIP, sources=f"{CLIENT},{OTHER}"))
    assert not check_targets("t", argparse.Namespace(vip=VIP, sources="198.18.1.2"))
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        set_marks(s, 0, [(0x2A, 9)])
        assert s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS) == 0x2A
        assert s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS) == 9


def test_raw_bytes_of_a_truncated_ipv6_header_are_framed_as_ipv6() -> None:
    (cut,) = crafted6.truncated_ip6(PROBE)
    assert isinstance(cut, Raw)
    (data,) = crafted.frame([cut], MAC_A, MAC_B)
    assert data[12:14] == b"\x86\xdd" and len(data) == 14 + 24
