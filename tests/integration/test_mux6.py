"""The reference MUX's IPv6 paths through BPF_PROG_TEST_RUN: IPv6 VIPs (IPv6-in-IPv6), an IPv4
VIP with IPv6 servers (IPv4-in-IPv6), the IPv6 connection table, ICMPv6 errors, extension headers,
fragments and malformed IPv6, and hypothesis against the Python model. Root only (loads BPF)."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import TCP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import Ether
from scapy.packet import raw

from reference_impl.model import MuxModel
from reference_impl.mux import MuxProgram
from tests.integration import mux_checks
from tests.integration.mux_checks import (
    BACKENDS6,
    MUX_ADDR6,
    ROUTER6,
    TCP_VIP6,
    UDP_VIP6,
    VIP46,
    mux_config6,
    random_flows6,
    send,
)
from tests.integration.packets import (
    CLIENT_MAC,
    MUX_MAC,
    assert_valid_encap6,
    flow_frame,
    icmp6_error,
    icmp_frag_needed,
)
from tests.markers import requires_root

pytestmark = requires_root
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX = 0, 1, 2, 3
HYP = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLIENT = "2001:2:0:1::7"
GROWN6 = [*BACKENDS6, "2001:2:0:20::4", "2001:2:0:20::5"]

clients6 = st.integers(2, 2**64 - 1).map(
    lambda n: str(ipaddress.IPv6Address(int(ipaddress.IPv6Address("2001:2:0:1::")) + n))
)
clients4 = st.integers(1, 4094).map(lambda n: str(ipaddress.IPv4Address(0xC6120100 + n)))
ports = st.integers(1, 65535)


@pytest.fixture(scope="module")
def mux_and_model() -> Iterator[tuple[MuxProgram, MuxModel]]:
    cfg = mux_config6()
    with MuxProgram(cfg) as mux:
        yield mux, MuxModel(cfg)


def _outer_dst(out: bytes) -> str:
    return str(ipaddress.IPv6Address(out[38:54]))


def _encap(model: MuxModel, flow: tuple, frame: bytes, out: bytes, backend: str | None) -> None:
    label = model.encapsulation(flow, backend or BACKENDS6[0]).flow_label
    assert_valid_encap6(out, frame, mux_addr6=MUX_ADDR6, backend=backend, flow_label=label)


@HYP
@given(
    c6=clients6,
    c4=clients4,
    sport=ports,
    vip=st.sampled_from([TCP_VIP6, UDP_VIP6, VIP46]),
    flags=st.sampled_from(["S", "A", "PA", "FA", "R"]),
    payload=st.binary(max_size=1400),
    tclass=st.integers(0, 255),
)
def test_ipv6_vip_packets_are_encapsulated_as_the_model_says(
    mux_and_model, c6, c4, sport, vip, flags, payload, tclass
) -> None:
    mux, model = mux_and_model
    flow = (c6 if ":" in vip[0] else c4, vip[0], sport, vip[1], vip[2])
    frame = bytearray(flow_frame(*flow, flags=flags, payload=payload))
    if ":" in vip[0]:  # the traffic class: bits 4..11 of the first word
        frame[14] = 0x60 | tclass >> 4
        frame[15] = (frame[15] & 0x0F) | (tclass & 0x0F) << 4
    action, out = send(mux, bytes(frame))
    assert action == XDP_TX, f"{flow}: action {action}, expected XDP_TX"
    want = model.packet(flow, tcp_flags=flags if vip[2] == 6 else "").backend
    _encap(model, flow, bytes(frame), out, want)


def test_syn_then_established_ipv6_flows_keep_their_server_across_a_backend_change() -> None:
    cfg = mux_config6()
    model = MuxModel(cfg)
    with MuxProgram(cfg) as mux:
        flows = [
            *random_flows6(random.Random(31), 80),
            *random_flows6(random.Random(32), 40, VIP46),
        ]
        before = {}
        for flow in flows:
            for flags in ("S", "A"):
                frame = flow_frame(*flow, flags=flags)
                action, out = send(mux, frame)
                assert action == XDP_TX, f"{flow} {flags}: action {action}"
                _encap(model, flow, frame, out, model.packet(flow, tcp_flags=flags).backend)
            before[flow] = _outer_dst(out)
        table = mux.conn_table()
        assert all(table.get(f) == before[f] for f in flows), "an IPv6 flow is not in the table"
        for vip in (TCP_VIP6, VIP46):
            mux.set_backends(vip, GROWN6)
            model.set_backends(vip, GROWN6)
        for flow in flows:
            frame = flow_frame(*flow, flags="PA", payload=b"data")
            action, out = send(mux, frame)
            assert action == XDP_TX and _outer_dst(out) == before[flow], (
                f"established {flow} left {before[flow]} after a backend change"
            )
        assert mux.refresh_syn_lookup(settle=0).get(TCP_VIP6), "IPv6 entries disagree: flag kept"
        for flow in random_flows6(random.Random(33), 80):
            frame = flow_frame(*flow, flags="S")
            action, out = send(mux, frame)
            want = model.packet(flow, tcp_flags="S").backend
            assert action == XDP_TX and _outer_dst(out) == want, f"new {flow}: not the new table"


def test_icmpv6_packet_too_big_follows_the_flows_connection_entry() -> None:
    """After a backend change, a PTB about an established flow reaches the flow's server (its
    connection-table entry), not the new table's choice."""
    cfg = mux_config6()
    model = MuxModel(cfg)
    with MuxProgram(cfg) as mux:
        flows = random_flows6(random.Random(34), 60)
        for flow in flows:
            send(mux, flow_frame(*flow, flags="A"))
            model.packet(flow, tcp_flags="A")
        mux.set_backends(TCP_VIP6, GROWN6)
        model.set_backends(TCP_VIP6, GROWN6)
        moved = 0
        for flow in flows:
            client, vaddr, cport, vport, proto = flow
            frame = icmp6_error(ROUTER6, vaddr, vport, client, cport, proto, icmp_type=2)
            action, out = send(mux, frame)
            want = model.icmp_error(flow)
            assert want.from_conn_table
            assert action == XDP_TX, f"PTB about {flow}: action {action}"
            _encap(model, flow, frame, out, want.backend)
            moved += model.maglev_choice(flow) != want.backend
        assert moved, "no flow's table choice changed: the test proves nothing"


def _frame6(dst: str, *layers: object, src: str = CLIENT) -> bytes:
    pkt = Ether(src=CLIENT_MAC, dst=MUX_MAC) / IPv6(src=src, dst=dst)
    for layer in layers:
        pkt = pkt / layer
    return raw(pkt)


def _tcp(dport: int = 80) -> TCP:
    return TCP(sport=4242, dport=dport, flags="S")


def _with(frame: bytes, offset: int, value: bytes) -> bytes:
    return frame[:offset] + value + frame[offset + len(value) :]


def _cut(frame: bytes, keep: int) -> bytes:
    """The frame cut ``keep`` bytes after the IPv6 header, its payload length saying so."""
    return _with(frame[: 14 + 40 + keep], 18, keep.to_bytes(2, "big"))


VIP = TCP_VIP6[0]
DROPS = {
    "fragment": (lambda: _frame6(VIP, IPv6ExtHdrFragment(m=1), _tcp()), "drop_fragment"),
    "fragment_last": (lambda: _frame6(VIP, IPv6ExtHdrFragment(offset=8), _tcp()), "drop_fragment"),
    "hop_by_hop": (lambda: _frame6(VIP, IPv6ExtHdrHopByHop(), _tcp()), "drop_ipv6_exthdr"),
    "dest_opts": (lambda: _frame6(VIP, IPv6ExtHdrDestOpt(), _tcp()), "drop_ipv6_exthdr"),
    "routing": (lambda: _frame6(VIP, IPv6ExtHdrRouting(), _tcp()), "drop_ipv6_exthdr"),
    "no_next_header": (lambda: _frame6(VIP, IPv6(nh=59).payload), "drop_ipv6_exthdr"),
    "bad_version": (
        lambda: _with(flow_frame(CLIENT, VIP, 4242, 80, 6), 14, b"\x40"),
        "drop_bad_version",
    ),
    "ip_truncated": (
        lambda: _with(flow_frame(CLIENT, VIP, 4242, 80, 6), 18, b"\x01\x00"),
        "drop_ip_truncated",
    ),
    "l4_truncated": (
        lambda: _with(flow_frame(CLIENT, VIP, 4242, 80, 6), 18, b"\x00\x0a"),
        "drop_l4_truncated",
    ),
    "ports_cut": (lambda: _cut(flow_frame(CLIENT, VIP, 4242, 80, 6), 2), "drop_l4_truncated"),
    "icmp6_inner_cut": (
        lambda: _cut(icmp6_error(ROUTER6, VIP, 80, CLIENT, 4242, 6), 8 + 20),
        "drop_icmp_malformed",
    ),
}


@pytest.mark.parametrize("name", sorted(DROPS))
def test_ipv6_vip_packets_with_extension_headers_or_malformed_are_dropped_and_counted(
    mux_and_model, name: str
) -> None:
    mux, _ = mux_and_model
    frame, counter = DROPS[name][0](), DROPS[name][1]
    before = mux.stats().globals[counter]
    action, _ = send(mux, frame)
    assert action == XDP_DROP, f"{name}: action {action}, expected XDP_DROP"
    assert mux.stats().globals[counter] == before + 1, f"{counter} did not count the {name} drop"


@pytest.mark.parametrize(
    "frame",
    [
        flow_frame(CLIENT, VIP, 1000, 81, 6),  # VIP address, not a service port
        flow_frame(CLIENT, VIP, 1000, 80, 17),  # service port, other protocol
        _frame6(VIP, ICMPv6EchoRequest()),  # echo to the VIP: the MUX's stack answers
        _frame6("ff02::1:ff00:10", ICMPv6ND_NS(tgt=VIP), src="fe80::1"),  # neighbour discovery
        _frame6(MUX_ADDR6, IPv6ExtHdrFragment(m=1), _tcp()),  # a fragment to the MUX itself
        _frame6("2001:2:0:20::1", IPv6ExtHdrHopByHop(), _tcp()),  # not a VIP: passes
    ],
    ids=["vip-other-port", "vip-other-proto", "echo", "nd", "mux-fragment", "non-vip-hbh"],
)
def test_other_ipv6_traffic_passes_untouched(mux_and_model, frame: bytes) -> None:
    action, out = send(mux_and_model[0], frame)
    assert (action, out) == (XDP_PASS, frame)


@HYP
@given(
    dst=st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n))),
    proto=st.sampled_from([6, 17]),
    sport=ports,
    dport=ports,
    payload=st.binary(max_size=200),
)
def test_non_vip_ipv6_traffic_passes_untouched(
    mux_and_model, dst, proto, sport, dport, payload
) -> None:
    if dst in (TCP_VIP6[0], UDP_VIP6[0]):
        return
    frame = flow_frame(CLIENT, dst, sport, dport, proto, payload=payload)
    action, out = send(mux_and_model[0], frame)
    assert (action, out) == (XDP_PASS, frame), f"non-VIP packet to {dst}: action {action}"


def test_outer_ipv6_header_over_the_mtu_is_dropped_and_counted() -> None:
    cfg = mux_config6(mtu=200)
    with MuxProgram(cfg) as mux:
        fits = flow_frame(CLIENT, VIP, 1000, 80, 6, payload=b"x" * (200 - 40 - 40 - 20))
        assert send(mux, fits)[0] == XDP_TX, "a packet that fits with its outer header dropped"
        big = flow_frame(CLIENT, VIP, 1000, 80, 6, payload=b"x" * (200 - 40 - 40 - 20 + 1))
        assert send(mux, big)[0] == XDP_DROP, "an encapsulated packet over the MTU was sent"
        v46 = flow_frame("198.18.1.9", VIP46[0], 1000, 80, 6, payload=b"x" * (200 - 40 - 20 - 20))
        assert send(mux, v46)[0] == XDP_TX
        v46big = flow_frame("198.18.1.9", VIP46[0], 1000, 80, 6, payload=b"x" * (200 - 80 + 1))
        assert send(mux, v46big)[0] == XDP_DROP
        assert mux.stats().globals["drop_too_big"] == 2


def test_ipv6_counters_and_vip_removal() -> None:
    cfg = mux_config6()
    with MuxProgram(cfg) as mux:
        frames = [flow_frame(CLIENT, VIP, 2000 + i, 80, 6, payload=b"ab") for i in range(20)]
        for f in frames:
            assert send(mux, f)[0] == XDP_TX
        st_ = mux.stats()
        assert st_.vips[TCP_VIP6] == (20, 20 * (len(frames[0]) - 14))
        assert sum(st_.backends[b][0] for b in BACKENDS6) == 20
        assert st_.globals["lru_insert"] == 20 and st_.globals["tx"] == 20
        mux.remove_vip(TCP_VIP6)
        assert send(mux, frames[0])[0] == XDP_PASS, "a removed IPv6 VIP was still served"
        ptb = icmp6_error(ROUTER6, VIP, 80, CLIENT, 2000, 6)
        assert send(mux, ptb) == (XDP_PASS, ptb), "ICMPv6 about a removed VIP was not passed"
        mux.set_backends(TCP_VIP6, BACKENDS6[:1])
        action, out = send(mux, frames[1])
        assert action == XDP_TX and _outer_dst(out) == BACKENDS6[0], "new incarnation not clean"


def test_ipv6_backends_need_the_mux_address6() -> None:
    from dsrconform.errors import ConfigError

    with MuxProgram(mux_checks.mux_config()) as mux, pytest.raises(ConfigError, match="address6"):
        mux.set_backends(VIP46, BACKENDS6)


def test_ipv4_vips_keep_ipip_on_a_dual_stack_mux(mux_and_model) -> None:
    """IPv4 fast path untouched by IPv6 VIPs: an IPv4 VIP with IPv4 backends still gets IPIP."""
    mux, model = mux_and_model
    flow = ("198.18.1.5", mux_checks.TCP_VIP[0], 1234, 80, 6)
    frame = flow_frame(*flow, flags="S", payload=b"x")
    action, out = send(mux, frame)
    assert action == XDP_TX and out[12:14] == b"\x08\x00" and out[23] == 4
    assert str(ipaddress.IPv4Address(out[30:34])) == model.packet(flow, tcp_flags="S").backend


@HYP
@given(
    payload=st.binary(max_size=64),
    cut=st.integers(0, 120),
    edits=st.lists(st.tuples(st.integers(14, 100), st.integers(0, 255)), max_size=4),
    vip=st.sampled_from([TCP_VIP6, UDP_VIP6]),
)
def test_mutated_ipv6_vip_packets_are_never_emitted_malformed(
    mux_and_model, payload, cut, edits, vip
) -> None:
    mux, _ = mux_and_model
    b = bytearray(flow_frame(CLIENT, vip[0], 4242, vip[1], vip[2], payload=payload))
    for off, val in edits:
        if off < len(b):
            b[off] = val
    frame = bytes(b[: max(14, len(b) - cut)])
    action, out = send(mux, frame)
    assert action in (XDP_DROP, XDP_PASS, XDP_TX), f"action {action} (XDP_ABORTED is a bug)"
    if action == XDP_PASS:
        assert out == frame, "a passed packet was modified"
    if action == XDP_TX:
        assert_valid_encap6(out, frame, mux_addr6=MUX_ADDR6, backend=None, flow_label=None)
        inner = out[54:]
        assert inner[0] >> 4 == 6, "emitted an inner packet that is not IPv6"
        assert 40 + int.from_bytes(inner[4:6], "big") <= len(inner), "inner longer than frame"
        assert inner[6] in (6, 17, 58), f"emitted an inner next header {inner[6]}"


def test_icmp_errors_about_an_ipv4_vip_with_ipv6_servers_go_ipip6_to_the_flows_server(
    mux_and_model,
) -> None:
    mux, model = mux_and_model
    for flow in random_flows6(random.Random(35), 40, VIP46):
        client, vaddr, cport, vport, proto = flow
        frame = icmp_frag_needed("198.18.0.1", vaddr, vport, client, cport, proto)
        action, out = send(mux, frame)
        assert action == XDP_TX, f"ICMP error about {flow}: action {action}"
        _encap(model, flow, frame, out, model.icmp_error(flow).backend)


def test_ipv6_backend_spellings_are_normalised() -> None:
    cfg = mux_config6()
    with MuxProgram(cfg) as mux:
        mux.set_backends(TCP_VIP6, ["2001:0002:0000:0020:0000:0000:0000:0001"])
        action, out = send(mux, flow_frame(CLIENT, VIP, 1000, 80, 6, flags="S"))
        assert action == XDP_TX and _outer_dst(out) == BACKENDS6[0]
        assert BACKENDS6[0] in mux.stats().backends
