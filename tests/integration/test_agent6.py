"""Tests of the reference agent and gateway for IPv6: every check of ``agent6_checks`` against the
correct programs, property tests over random IPv6 flows, the IPv6 maps' layouts, ``agent-run`` /
``gateway-run`` on the IPv6 examples, and real stacks in throwaway namespaces receiving
IPv6-in-IPv6 and IPv4-in-IPv6 (the latter shows the decapsulated skb is handed to IPv4).
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.utils import checksum, rdpcap, wrpcap

from dsrconform.configfile import LAB_NET6
from dsrconform.netns import enter_netns, link_mac, throwaway_netns, veth_pair
from reference_impl import layout
from reference_impl.agent import AgentProgram, GatewayProgram
from reference_impl.cli import main
from tests.integration import agent6_checks as c6
from tests.integration import agent_checks as ac

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CAP_BPF, CAP_NET_ADMIN)"),
]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CHECKS = [
    "check_server_nat6_checksums",
    "check_udp6_zero_checksum_not_natted",
    "check_ipv4_in_ipv6_nat",
    "check_nat6_reply_uses_flow_vip",
    "check_ipv6_decap_yields_inner",
    "check_ipv6_decap_only_from_muxes",
    "check_ipv6_truncated_inner_dropped",
    "check_ipv6_not_ours_untouched",
    "check_snat6_miss_passes",
    "check_gateway6_rewrite",
]


@pytest.mark.parametrize("name", CHECKS)
def test_check_passes_on_the_correct_stack(name: str) -> None:
    getattr(c6, name)(None)


# --- property tests -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nat6_agent() -> Iterator[AgentProgram]:
    with AgentProgram(c6.nat6_config()) as agent:
        yield agent


@pytest.fixture(scope="module")
def encap6_agent() -> Iterator[AgentProgram]:
    with AgentProgram(c6.nat6_config("encap")) as agent:
        yield agent


# Anywhere in the lab's IPv6 range: the upper 96 bits vary as much as the lower 32.
clients6 = st.integers(0, LAB_NET6.num_addresses - 1).map(lambda n: str(LAB_NET6[n]))
ports = st.integers(1, 65535)
payloads = st.binary(max_size=300)
# (proto, vip, vport, app port, mux) as configured by c6.nat6_config()
services6 = st.sampled_from(
    [
        ("tcp", c6.VIP6_1, 80, ac.TCP_APP, c6.MUX6_1),
        ("udp", c6.VIP6_1, 53, ac.UDP_APP, c6.MUX6_1),
        ("tcp", c6.VIP6_2, 443, ac.TCP_APP, c6.MUX6_2),
        ("udp", c6.VIP6_2, 5353, ac.UDP_APP, c6.MUX6_2),
    ]
)


@settings(max_examples=60, deadline=None)
@given(client=clients6, sport=ports, payload=payloads, reply=payloads, service=services6)
def test_nat6_round_trip_keeps_checksums_valid(
    nat6_agent: AgentProgram,
    client: str,
    sport: int,
    payload: bytes,
    reply: bytes,
    service: tuple[str, str, int, int, str],
) -> None:
    proto, vip, vport, app, mux = service
    c6.nat6_round_trip(
        nat6_agent,
        proto=proto,
        client=client,
        sport=sport,
        vip=vip,
        vport=vport,
        app_port=app,
        mux=mux,
        payload=payload,
        reply_payload=reply,
    )


@settings(max_examples=40, deadline=None)
@given(
    client=clients6,
    sport=ports,
    dport=ports,
    payload=payloads,
    proto=st.sampled_from(["tcp", "udp"]),
    inner_v4=st.booleans(),
)
def test_ipv6_decapsulation_yields_the_inner_packet(
    encap6_agent: AgentProgram,
    client: str,
    sport: int,
    dport: int,
    payload: bytes,
    proto: str,
    inner_v4: bool,
) -> None:
    if inner_v4:
        inner = ac.l4_packet(ac.CLIENT1, ac.VIP1, sport, dport, proto, payload)
    else:
        inner = c6.l4_packet6(client, c6.VIP6_1, sport, dport, proto, payload)
    frame = c6.encap6_frame(c6.MUX6_2, inner)
    action, out = ac.run(encap6_agent.ingress, frame, "IPv6 decapsulation")
    assert action == "TC_ACT_OK"
    assert out == c6.decapsulated6(frame)


# --- layouts and control plane -------------------------------------------------------------------


def test_ipv6_map_layouts_match_the_packers() -> None:
    """The C structs of the IPv6 maps have the sizes the Python packers produce."""
    with AgentProgram(c6.nat6_config()) as agent, GatewayProgram(c6.gateway6_config()) as gw:
        sizes = {
            "dsrc_muxes6": (len(layout.addr_be(c6.MUX6_1)), 4),
            "dsrc_nat_svc6": (
                len(layout.nat_service_key(c6.VIP6_1, 80, 6)),
                len(layout.nat_service(c6.SERVER6, 8080)),
            ),
            "dsrc_nat_first6": (
                len(layout.gw_key(c6.SERVER6, 8080, 6)),
                len(layout.gw_value(c6.VIP6_1, 80)),
            ),
            "dsrc_nat_flows6": (layout.NAT_FLOW6_KEY_SIZE, layout.NAT_FLOW6_SIZE),
        }
        for name, want in sizes.items():
            m = agent.map(name)
            assert (m.key_size, m.value_size) == want, name
        m = gw.map("dsrc_gw_map6")
        assert (m.key_size, m.value_size) == (20, 20)


def test_flow_tables_of_both_families_are_sized_at_load() -> None:
    with AgentProgram(c6.nat6_config(), nat_flow_entries=128) as agent:
        assert agent.map("dsrc_nat_flows").max_entries == 128
        assert agent.map("dsrc_nat_flows6").max_entries == 128


def test_stats_and_flow_table_after_an_ipv6_dnat() -> None:
    with AgentProgram(c6.nat6_config()) as agent:
        inner = c6.l4_packet6(c6.CLIENT6_2, c6.VIP6_2, 40404, 443, "tcp", b"x")
        action, _ = ac.run(agent.ingress, c6.encap6_frame(c6.MUX6_2, inner), "IPv6 DNAT")
        assert action == "TC_ACT_OK"
        stats = agent.stats()
        assert (stats["decap"], stats["dnat"]) == (1, 1)
        [flow] = agent.nat_flows()
        assert (flow.local_addr, flow.local_port) == (c6.SERVER6, ac.TCP_APP)
        assert (flow.remote_addr, flow.remote_port, flow.proto) == (c6.CLIENT6_2, 40404, 6)
        assert (flow.vip, flow.vport, flow.mux_addr) == (c6.VIP6_2, 443, c6.MUX6_2)


def test_agent_and_gateway_run_on_the_ipv6_examples(tmp_path: Path) -> None:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:14:01")
    web6 = IPv6(src="2001:2:0:1::2", dst="2001:2:0:100::10") / TCP(sport=40000, dport=80)
    web46 = IP(src="198.18.1.2", dst="198.19.0.13") / TCP(sport=40001, dport=80, flags="S")
    frames = [
        eth / IPv6(src="2001:2:0:10::1", dst="2001:2:0:20::1", nh=41) / web6,
        eth / IPv6(src="2001:2:0:10::2", dst="2001:2:0:20::1", nh=4) / web46,
        eth / IPv6(src="2001:2:0:200::1", dst="2001:2:0:20::1", nh=41) / web6,  # not a MUX
    ]
    wrpcap(str(tmp_path / "in.pcap"), frames)
    config = str(EXAMPLES / "agent-demo6.yaml")
    rc = main(
        [
            "agent-run",
            "--config",
            config,
            "--in",
            str(tmp_path / "in.pcap"),
            "--out",
            str(tmp_path / "a.pcap"),
        ]
    )
    assert rc == 0
    out6, out46, foreign = rdpcap(str(tmp_path / "a.pcap"))
    assert (out6[IPv6].dst, out6[TCP].dport) == ("2001:2:0:20::1", 8080)
    assert (out46[IP].dst, out46[TCP].dport, out46.type) == ("198.18.20.1", 8082, 0x0800)
    assert bytes(foreign) == bytes(frames[2])

    reply = eth / IPv6(src="2001:2:0:20::2", dst="2001:2:0:1::2") / TCP(sport=8080, dport=40000)
    wrpcap(str(tmp_path / "r.pcap"), [reply])
    config = str(EXAMPLES / "gateway-demo6.yaml")
    rc = main(
        [
            "gateway-run",
            "--config",
            config,
            "--in",
            str(tmp_path / "r.pcap"),
            "--out",
            str(tmp_path / "g.pcap"),
        ]
    )
    assert rc == 0
    [out] = rdpcap(str(tmp_path / "g.pcap"))
    assert (out[IPv6].src, out[TCP].sport) == ("2001:2:0:100::10", 80)


# --- real stacks ------------------------------------------------------------------------------


def _configure(ns: str, dev: str, addrs: list[tuple[str, int]], gateways: list[str]) -> None:
    """Addresses (IPv6 ones without duplicate address detection, so that they are usable at
    once) and default routes."""
    from pyroute2 import NetNS

    with NetNS(ns) as ipr:
        idx = ipr.link_lookup(ifname=dev)[0]
        for addr, plen in addrs:
            if ":" in addr:
                ipr.addr("add", index=idx, address=addr, prefixlen=plen, flags=0x02)  # NODAD
            else:
                ipr.addr("add", index=idx, address=addr, prefixlen=plen)
        for gw in gateways:
            dst = "::/0" if ":" in gw else "0.0.0.0/0"
            ipr.route("add", dst=dst, gateway=gw)


def _capture(sock: socket.socket, match: str, timeout: float) -> Ether:
    """The first frame on ``sock`` with a UDP datagram from ``match`` (an IPv4 or IPv6 source)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            pkt = Ether(sock.recv(65535))
        except TimeoutError:
            break
        ip = pkt.getlayer(IPv6) or pkt.getlayer(IP)
        if UDP in pkt and ip is not None and ip.src == match:
            return pkt
    raise AssertionError(f"no UDP datagram from {match} within {timeout}s")


def _pseudo_seed(src: str, dst: str, proto: int, length: int) -> int:
    """What a CHECKSUM_PARTIAL packet carries in its TCP/UDP checksum field until the checksum is
    completed: the folded (not complemented) sum of its pseudo-header."""
    if ":" in src:
        tail = struct.pack("!IxxxB", length, proto)
    else:
        tail = struct.pack("!xBH", proto, length)
    return ~checksum(layout.addr_be(src) + layout.addr_be(dst) + tail) & 0xFFFF


def _assert_partial_seed(reply: Ether, what: str) -> None:
    """The reply left CHECKSUM_PARTIAL: its UDP checksum field must hold the seed of its own
    (rewritten) pseudo-header, or the checksum completed later is wrong."""
    ip = reply.getlayer(IPv6) or reply[IP]
    want = _pseudo_seed(ip.src, ip.dst, 17, reply[UDP].len)
    got = reply[UDP].chksum
    assert got == want, (
        f"{what}: checksum field 0x{got:04x}, expected the pseudo-header seed 0x{want:04x} for "
        f"{ip.src} -> {ip.dst}: the address rewrite of a CHECKSUM_PARTIAL packet must move the "
        "seed (BPF_F_PSEUDO_HDR)"
    )


@pytest.mark.parametrize("offload", [False, True], ids=["tx-csum-off", "tx-csum-partial"])
@pytest.mark.parametrize("inner_family", ["ipv6", "ipv4"])
def test_server_nat_udp_through_a_real_stack_over_ipv6(inner_family: str, offload: bool) -> None:
    """A datagram IPv6-encapsulated by an IPv6 MUX (IPv6-in-IPv6 to an IPv6 VIP, IPv4-in-IPv6 to
    an IPv4 VIP) reaches a socket on the server's app port of the inner family, and the socket's
    reply leaves from the VIP with a valid checksum; with transmit checksum offload on, the reply
    is CHECKSUM_PARTIAL at egress and must carry the seed of its rewritten pseudo-header."""
    if inner_family == "ipv6":
        client, vip, vport, server = c6.CLIENT6_1, c6.VIP6_1, 53, c6.SERVER6
        af = socket.AF_INET6
        inner = c6.l4_packet6(client, vip, 40000, vport, "udp", b"question")
    else:
        client, vip, vport, server = ac.CLIENT1, ac.VIP1, 53, ac.SERVER
        af = socket.AF_INET
        inner = ac.l4_packet(client, vip, 40000, vport, "udp", b"question")
    with (
        throwaway_netns("agent6-srv") as srv,
        throwaway_netns("agent6-net") as net,
        veth_pair(srv, "dsrc-s6", "dsrc-n6", ns_b=net),
        AgentProgram(c6.nat6_config()) as agent,
    ):
        _configure(
            srv,
            "dsrc-s6",
            [(ac.SERVER, 24), (c6.SERVER6, 64)],
            ["198.18.20.254", "2001:2:0:20::fe"],
        )
        _configure(net, "dsrc-n6", [("198.18.20.254", 24), ("2001:2:0:20::fe", 64)], [])
        if offload:
            subprocess.run(
                ["ip", "netns", "exec", srv, "ethtool", "-K", "dsrc-s6", "tx", "on"],
                check=True,
                capture_output=True,
            )
        agent.attach(srv, "dsrc-s6")
        with enter_netns(srv):
            app = socket.socket(af, socket.SOCK_DGRAM)
        with enter_netns(net):
            wire = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        with app, wire:
            app.bind((server, ac.UDP_APP))
            app.settimeout(3)
            wire.bind(("dsrc-n6", 0))
            mac_net, mac_srv = link_mac(net, "dsrc-n6"), link_mac(srv, "dsrc-s6")
            frame = Ether(c6.encap6_frame(c6.MUX6_1, inner))
            frame.src, frame.dst = mac_net, mac_srv
            wire.send(bytes(frame))
            data, peer = app.recvfrom(2048)
            assert (data, peer[:2]) == (b"question", (client, 40000))
            app.sendto(b"answer", peer)
            reply = _capture(wire, vip, timeout=3)
        ip = reply.getlayer(IPv6) or reply[IP]
        got = (ip.src, reply[UDP].sport, ip.dst, reply[UDP].dport)
        assert got == (vip, vport, client, 40000)
        if offload:
            _assert_partial_seed(reply, "UDP reply on the wire")
        elif inner_family == "ipv6":
            c6.assert_checksums6(bytes(reply), "UDP reply on the wire")
        else:
            ac.assert_checksums(bytes(reply), "UDP reply on the wire")
        stats = agent.stats()
        assert (stats["decap"], stats["dnat"], stats["snat"]) == (1, 1, 1)
