"""Tests of the reference server agent and egress gateway: every packet-level check of
``agent_checks`` against the correct programs, property tests over random flows, the control-plane
API (configs, stats, flow table, pcap runs), a real tc attach/detach in a throwaway namespace and
a UDP exchange through a real stack.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap, wrpcap

from dsrconform.errors import ConfigError
from dsrconform.netns import enter_netns, link_mac, throwaway_netns, veth_pair
from reference_impl.agent import (
    AgentConfig,
    AgentProgram,
    GatewayConfig,
    GatewayProgram,
    run_packets,
)
from reference_impl.trace import trace_pcap
from tests.integration import agent_checks as ac

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CAP_BPF, CAP_NET_ADMIN)"),
]

CHECKS = [
    "check_server_nat_checksums",
    "check_udp_zero_checksum_preserved",
    "check_nat_reply_uses_flow_vip",
    "check_decap_only_from_muxes",
    "check_gateway_rewrite",
    "check_decap_output_is_inner",
    "check_encap_mode_no_rewrite",
    "check_non_ipip_untouched",
    "check_truncated_inner_dropped",
    "check_outer_options_not_decapsulated",
    "check_snat_miss_passes",
]


@pytest.mark.parametrize("name", CHECKS)
def test_check_passes_on_the_correct_stack(name: str) -> None:
    getattr(ac, name)(None)


# --- property tests -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nat_agent() -> Iterator[AgentProgram]:
    with AgentProgram(ac.nat_config()) as agent:
        yield agent


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProgram]:
    with GatewayProgram(ac.gateway_config()) as gw:
        yield gw


clients = st.integers(1, 254).map(lambda h: f"198.18.1.{h}")
ports = st.integers(1, 65535)
payloads = st.binary(max_size=300)
# (proto, vip, vport, app port, mux) as configured by ac.nat_config()
services = st.sampled_from(
    [
        ("tcp", ac.VIP1, 80, ac.TCP_APP, ac.MUX1),
        ("udp", ac.VIP1, 53, ac.UDP_APP, ac.MUX1),
        ("tcp", ac.VIP2, 443, ac.TCP_APP, ac.MUX2),
        ("udp", ac.VIP2, 5353, ac.UDP_APP, ac.MUX2),
    ]
)


@settings(max_examples=60, deadline=None)
@given(client=clients, sport=ports, payload=payloads, reply=payloads, service=services)
def test_nat_round_trip_keeps_checksums_valid(
    nat_agent: AgentProgram,
    client: str,
    sport: int,
    payload: bytes,
    reply: bytes,
    service: tuple[str, str, int, int, str],
) -> None:
    proto, vip, vport, app, mux = service
    ac.nat_round_trip(
        nat_agent, proto=proto, client=client, sport=sport, vip=vip, vport=vport, app_port=app,
        mux=mux, payload=payload, reply_payload=reply,
    )  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    client=clients,
    sport=ports,
    dport=ports,
    payload=payloads,
    proto=st.sampled_from(["tcp", "udp"]),
)
def test_decapsulation_yields_the_inner_packet(
    client: str, sport: int, dport: int, payload: bytes, proto: str
) -> None:
    with AgentProgram(ac.nat_config("encap")) as agent:
        frame = ac.ipip_frame(ac.MUX1, ac.l4_packet(client, ac.VIP1, sport, dport, proto, payload))
        action, out = ac.run(agent.ingress, frame, "decapsulation")
        assert action == "TC_ACT_OK"
        assert out == ac.decapsulated(frame)


@settings(max_examples=40, deadline=None)
@given(client=clients, cport=ports, payload=payloads)
def test_gateway_rewrites_any_client_flow(
    gateway: GatewayProgram, client: str, cport: int, payload: bytes
) -> None:
    frame = ac.server_frame(ac.l4_packet(ac.SERVER, client, ac.TCP_APP, cport, "tcp", payload))
    ac.check_rewrite(gateway.program, frame, "gateway", src=(ac.VIP1, 80), dst=(client, cport),
                     payload=payload)  # fmt: skip


def test_zero_sum_payload_really_sums_to_zero() -> None:
    payload = ac.payload_for_zero_sum(ac.CLIENT1, ac.SERVER, 41000, ac.UDP_APP, b"tail")
    pkt = IP(bytes(ac.l4_packet(ac.CLIENT1, ac.SERVER, 41000, ac.UDP_APP, "udp", payload)))
    assert pkt[UDP].chksum == 0xFFFF  # a computed zero, as sent on the wire


# --- control-plane API ------------------------------------------------------------------------


def test_addresses_outside_the_lab_are_rejected_naming_the_field() -> None:
    with pytest.raises(
        ConfigError, match=r"server_addr: server_addr 10\.0\.0\.1 is outside the lab range"
    ):
        AgentConfig.from_dict({"server_addr": "10.0.0.1"}, source="agent.yaml")
    with pytest.raises(ConfigError, match=r"mux_addrs\.0: mux_addrs 192\.0\.2\.1 is outside"):
        AgentConfig.from_dict({"server_addr": ac.SERVER, "mux_addrs": ["192.0.2.1"]})
    with pytest.raises(ConfigError, match=r"external: .* is not an IPv4 address"):
        GatewayConfig.from_dict(
            {"mappings": [{"server": ac.SERVER, "server_port": 1, "proto": "tcp",
                           "external": "nope", "external_port": 2}]}
        )  # fmt: skip


def test_duplicate_services_and_too_many_muxes_are_rejected() -> None:
    svc = {"vip": ac.VIP1, "vport": 80, "proto": "tcp", "port": 8080}
    with pytest.raises(ConfigError, match="listed twice"):
        AgentConfig.from_dict({"server_addr": ac.SERVER, "nat_services": [svc, svc]})
    muxes = [f"198.18.10.{i}" for i in range(1, 70)]
    with pytest.raises(ConfigError, match="at most 64"):
        AgentConfig.from_dict({"server_addr": ac.SERVER, "mux_addrs": muxes})


def test_unknown_mutant_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown mutant"):
        AgentProgram(ac.nat_config(), "no-such-mutant")


def test_flow_table_size_is_set_at_load() -> None:
    with AgentProgram(ac.nat_config(), nat_flow_entries=128) as agent:
        assert agent.map("dsrc_nat_flows").max_entries == 128


def test_stats_and_flow_table_after_a_dnat() -> None:
    with AgentProgram(ac.nat_config()) as agent:
        inner = ac.l4_packet(ac.CLIENT2, ac.VIP2, 40404, 443, "tcp", b"x")
        [(action, _)] = run_packets(agent.ingress, [ac.ipip_frame(ac.MUX2, inner)])
        assert action == "TC_ACT_OK"
        stats = agent.stats()
        assert (stats["decap"], stats["dnat"]) == (1, 1)
        [flow] = agent.nat_flows()
        assert (flow.local_addr, flow.local_port) == (ac.SERVER, ac.TCP_APP)
        assert (flow.remote_addr, flow.remote_port, flow.proto) == (ac.CLIENT2, 40404, 6)
        assert (flow.vip, flow.vport, flow.mux_addr) == (ac.VIP2, 443, ac.MUX2)


def test_trace_pcap_writes_what_passed(tmp_path: Path) -> None:
    inner = ac.l4_packet(ac.CLIENT1, ac.VIP1, 1234, 80, "tcp", b"a")
    frames = [ac.ipip_frame(ac.MUX1, inner), ac.ipip_raw_frame(ac.MUX1, bytes(inner)[:12])]
    src, dst = tmp_path / "in.pcap", tmp_path / "out.pcap"
    wrpcap(str(src), [Ether(f) for f in frames])
    with AgentProgram(ac.nat_config()) as agent:
        counts = trace_pcap(agent.ingress, "tc", src, dst)
    assert counts == {"TC_ACT_OK": 1, "TC_ACT_SHOT": 1}
    [out] = rdpcap(str(dst))
    assert (out[IP].dst, out[IP].dport) == (ac.SERVER, ac.TCP_APP)


# --- real interfaces --------------------------------------------------------------------------


def _tc_filters(ns: str, dev: str, direction: str) -> str:
    res = subprocess.run(
        ["tc", "-netns", ns, "filter", "show", "dev", dev, direction],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return res.stdout


def test_attach_and_detach_on_a_veth() -> None:
    with (
        throwaway_netns("agent") as ns,
        veth_pair(ns, "dsrc-ag0", "dsrc-ag1"),
        AgentProgram(ac.nat_config()) as agent,
    ):
        agent.attach(ns, "dsrc-ag0")
        try:
            assert "dsrc_agent_in" in _tc_filters(ns, "dsrc-ag0", "ingress")
            assert "dsrc_agent_eg" in _tc_filters(ns, "dsrc-ag0", "egress")
            assert agent.attachments == [(ns, "dsrc-ag0", "ingress"), (ns, "dsrc-ag0", "egress")]
        finally:
            agent.detach()
        assert "dsrc_agent" not in _tc_filters(ns, "dsrc-ag0", "ingress")
        assert "dsrc_agent" not in _tc_filters(ns, "dsrc-ag0", "egress")
        assert agent.attachments == []


def _configure(ns: str, dev: str, addr: str, gateway: str | None = None) -> None:
    from pyroute2 import NetNS

    with NetNS(ns) as ipr:
        idx = ipr.link_lookup(ifname=dev)[0]
        ipr.addr("add", index=idx, address=addr, prefixlen=24)
        if gateway:
            ipr.route("add", dst="0.0.0.0/0", gateway=gateway)


def _capture_udp_from(sock: socket.socket, src: str, timeout: float) -> Ether:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            pkt = Ether(sock.recv(65535))
        except TimeoutError:
            break
        if UDP in pkt and pkt[IP].src == src:
            return pkt
    raise AssertionError(f"no UDP reply from {src} within {timeout}s")


def test_server_nat_udp_exchange_through_a_real_stack() -> None:
    """A MUX-encapsulated UDP datagram to VIP1:53 reaches a socket on the server's app port, and
    the socket's reply leaves the server from VIP1:53 with a valid checksum."""
    with (
        throwaway_netns("agent-srv") as srv,
        throwaway_netns("agent-net") as net,
        veth_pair(srv, "dsrc-srv0", "dsrc-net0", ns_b=net),
        AgentProgram(ac.nat_config()) as agent,
    ):
        _configure(srv, "dsrc-srv0", ac.SERVER, gateway="198.18.20.254")
        _configure(net, "dsrc-net0", "198.18.20.254")
        agent.attach(srv, "dsrc-srv0")
        with enter_netns(srv):
            app = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with enter_netns(net):
            wire = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        with app, wire:
            app.bind((ac.SERVER, ac.UDP_APP))
            app.settimeout(3)
            wire.bind(("dsrc-net0", 0))
            inner = ac.l4_packet(ac.CLIENT1, ac.VIP1, 40000, 53, "udp", b"question")
            outer = IP(src=ac.MUX1, dst=ac.SERVER) / inner
            mac_net, mac_srv = link_mac(net, "dsrc-net0"), link_mac(srv, "dsrc-srv0")
            wire.send(bytes(Ether(src=mac_net, dst=mac_srv) / outer))
            data, peer = app.recvfrom(2048)
            assert (data, peer) == (b"question", (ac.CLIENT1, 40000))
            app.sendto(b"answer", peer)
            reply = _capture_udp_from(wire, ac.VIP1, timeout=3)
        pkt = ac.assert_checksums(bytes(reply), "UDP reply on the wire")
        ac.assert_endpoints(pkt, (ac.VIP1, 53), (ac.CLIENT1, 40000), "UDP reply on the wire")
        stats = agent.stats()
        assert (stats["decap"], stats["dnat"], stats["snat"]) == (1, 1, 1)
