"""Packet-level checks of the MUX, run through BPF_PROG_TEST_RUN against a build of the program.

Each ``check_*`` takes a mutant name (None for the correct stack), builds that MUX, drives packets
through it and raises AssertionError naming the broken property. ``test_mux.py`` runs them on the
correct stack (they must pass); ``test_mutants_caught.py`` runs them on the mutants that the
catalogue says they catch (they must fail).
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from reference_impl.config import MuxConfig
from reference_impl.model import Flow, MuxModel
from reference_impl.mux import MuxProgram
from tests.integration.packets import (
    MUX_MAC,
    ROUTER_MAC,
    assert_valid_encap,
    assert_valid_encap6,
    fast_syn,
    flow_frame,
    icmp6_error,
    icmp_frag_needed,
    ip_csum,
)

MUX_ADDR = "198.18.10.1"
TCP_VIP = ("198.19.0.10", 80, 6)
UDP_VIP = ("198.19.0.11", 53, 17)
BACKENDS = ["198.18.20.1", "198.18.20.2", "198.18.20.3"]
XDP_TX, XDP_PASS, XDP_DROP = 3, 2, 1


def mux_config(**mux: Any) -> MuxConfig:
    settings = {
        "address": MUX_ADDR, "mac": MUX_MAC, "next_hop_mac": ROUTER_MAC,
        "ring_size": 4099, "conn_table_size": 8192, "new_conn_rate": 0,
    }  # fmt: skip
    settings.update(mux)
    vips = [
        {"address": a, "port": p, "proto": "tcp" if pr == 6 else "udp", "backends": BACKENDS}
        for a, p, pr in (TCP_VIP, UDP_VIP)
    ]
    return MuxConfig.model_validate({"mux": settings, "vips": vips})


def random_flows(rng: random.Random, n: int, vip: tuple[str, int, int] = TCP_VIP) -> list[Flow]:
    base = int(ipaddress.IPv4Address("198.18.1.0"))
    return [
        (str(ipaddress.IPv4Address(base + rng.randrange(1, 4096))), vip[0],
         rng.randrange(1024, 65536), vip[1], vip[2])
        for _ in range(n)
    ]  # fmt: skip


def send(mux: MuxProgram, frame: bytes) -> tuple[int, bytes]:
    r = mux.program.test_run(frame)
    return r.retval, r.data


def check_encap_matches_model(mutant: str | None) -> None:
    """Every VIP packet is encapsulated validly toward the server the Python model predicts."""
    cfg = mux_config()
    model = MuxModel(cfg)
    rng = random.Random(2)
    with MuxProgram(cfg, mutant=mutant) as mux:
        for vip in (TCP_VIP, UDP_VIP):
            for flow in random_flows(rng, 150, vip):
                frame = flow_frame(*flow, flags="S" if vip[2] == 6 else "", payload=b"x" * 10)
                action, out = send(mux, frame)
                assert action == XDP_TX, f"VIP packet {flow} got action {action}, expected XDP_TX"
                want = model.packet(flow, tcp_flags="S").backend
                assert_valid_encap(out, frame, mux_addr=MUX_ADDR, backend=want)


MARKS = (0, 10 << 2, 46 << 2 | 1, 34 << 2 | 2, 8 << 2 | 3)
"""TOS bytes: best effort, AF11, EF with ECT(1), AF41 with ECT(0), CS1 with CE."""


def check_encap_keeps_marks(mutant: str | None) -> None:
    """The outer header carries the client's TOS byte: its DSCP, and its ECN field copied (RFC
    6040 normal mode); the inner packet is untouched."""
    cfg = mux_config()
    rng = random.Random(7)
    with MuxProgram(cfg, mutant=mutant) as mux:
        for vip in (TCP_VIP, UDP_VIP):
            for n, flow in enumerate(random_flows(rng, 40, vip)):
                tos = MARKS[n % len(MARKS)]
                frame = bytearray(flow_frame(*flow, flags="A" if vip[2] == 6 else ""))
                frame[15] = tos  # the IPv4 TOS byte, and the header checksum again
                frame[24:26] = b"\0\0"
                frame[24:26] = ip_csum(bytes(frame[14:34])).to_bytes(2, "big")
                action, out = send(mux, bytes(frame))
                assert action == XDP_TX, f"VIP packet {flow} got action {action}, expected XDP_TX"
                assert_valid_encap(out, bytes(frame), mux_addr=MUX_ADDR, backend=None)
                assert out[15] == tos, (
                    f"outer TOS {out[15]:#04x} for an inner TOS {tos:#04x}: DSCP "
                    f"{out[15] >> 2} instead of {tos >> 2}, ECN {out[15] & 3} instead of {tos & 3}"
                )


def _establish(mux: MuxProgram, model: MuxModel, flows: list[Flow]) -> dict[Flow, str]:
    """Handshake-like SYN then ACK per flow; returns the backend each flow was sent to."""
    seen = {}
    for flow in flows:
        for flags in ("S", "A"):
            action, out = send(mux, flow_frame(*flow, flags=flags))
            assert action == XDP_TX, f"{flow} {flags}: action {action}, expected XDP_TX"
            model.packet(flow, tcp_flags=flags)
        seen[flow] = _backend_of(out)
    return seen


def _establish_then_grow(mux: MuxProgram, model: MuxModel, flows: list[Flow]) -> dict[Flow, str]:
    """Establish ``flows``, then add two backends to the TCP VIP (on the MUX and the model)."""
    before = _establish(mux, model, flows)
    grown = [*BACKENDS, "198.18.20.4", "198.18.20.5"]
    mux.set_backends(TCP_VIP, grown)
    model.set_backends(TCP_VIP, grown)
    return before


def _backend_of(out: bytes) -> str:
    return str(ipaddress.IPv4Address(out[30:34]))


def check_conn_table_survives_swap(mutant: str | None) -> None:
    """Established flows keep their server across a backend change; new flows take the new table."""
    cfg = mux_config()
    model = MuxModel(cfg)
    rng = random.Random(3)
    with MuxProgram(cfg, mutant=mutant) as mux:
        flows = random_flows(rng, 200)
        before = _establish_then_grow(mux, model, flows)
        moved = []
        for flow in flows:
            action, out = send(mux, flow_frame(*flow, flags="A"))
            if action != XDP_TX or _backend_of(out) != before[flow]:
                moved.append((flow, before[flow], _backend_of(out) if action == XDP_TX else action))
        assert not moved, (
            f"{len(moved)}/{len(flows)} established flows changed server after a backend was added,"
            f" e.g. {moved[:3]}"
        )
        for flow in random_flows(rng, 200):
            action, out = send(mux, flow_frame(*flow, flags="S"))
            want = model.packet(flow, tcp_flags="S").backend
            assert action == XDP_TX and _backend_of(out) == want, (
                f"new flow {flow} went to {_backend_of(out)}, the new table says {want}"
            )


def check_reused_tuple_syn_follows_entry(mutant: str | None) -> None:
    """After a backend change, a SYN on a 5-tuple that still has a connection-table entry goes
    where its ACK will go (the entry), until no entry disagrees with the new table."""
    cfg = mux_config()
    model = MuxModel(cfg)
    rng = random.Random(7)
    with MuxProgram(cfg, mutant=mutant) as mux:
        flows = random_flows(rng, 200)
        before = _establish_then_grow(mux, model, flows)
        split = []
        for flow in flows:
            syn = send(mux, flow_frame(*flow, flags="S"))
            ack = send(mux, flow_frame(*flow, flags="A"))
            if syn[0] != XDP_TX or ack[0] != XDP_TX or _backend_of(syn[1]) != _backend_of(ack[1]):
                split.append((flow, _backend_of(syn[1]), _backend_of(ack[1]), before[flow]))
        assert not split, (
            f"{len(split)}/{len(flows)} reused 5-tuples sent their SYN and ACK to different "
            f"servers after a backend change (flow, SYN to, ACK to, entry), e.g. {split[:3]}"
        )
        still = mux.refresh_syn_lookup(settle=0)
        assert still.get(TCP_VIP), f"SYN lookup cleared while entries disagree: {still}"


def check_flood_keeps_established(mutant: str | None) -> None:
    """A spoofed SYN flood larger than the connection table does not evict established flows."""
    cfg = mux_config(conn_table_size=2048, new_conn_rate=25_000, new_conn_burst=5_000)
    model = MuxModel(cfg)
    rng = random.Random(4)
    with MuxProgram(cfg, mutant=mutant) as mux:
        flows = random_flows(rng, 64)
        before = _establish(mux, model, flows)
        template = flow_frame("198.18.200.1", TCP_VIP[0], 40000, TCP_VIP[1], 6, flags="S")
        spoof = int(ipaddress.IPv4Address("198.18.200.0"))
        # 20,000 SYNs: 10,000 distinct spoofed 5-tuples from 198.18.200.0/21, each sent twice, as
        # retransmitting or looping flood tools do. The repeat matters: the kernel's LRU gives a
        # referenced entry a second chance, so only repeated flood entries compete with live flows.
        for i in range(20_000):
            n = i // 2
            action, _ = send(mux, fast_syn(template, spoof + n % 2048, 1024 + n // 2048))
            assert action == XDP_TX, "the MUX stopped forwarding during the flood"
        grown = [*BACKENDS, "198.18.20.4", "198.18.20.5"]
        mux.set_backends(TCP_VIP, grown)
        broken = []
        for flow in flows:
            action, out = send(mux, flow_frame(*flow, flags="A"))
            if action != XDP_TX or _backend_of(out) != before[flow]:
                broken.append(flow)
        assert not broken, (
            f"{len(broken)}/{len(flows)} established flows lost their server after a SYN flood "
            f"and a backend change (their connection-table entries were evicted): {broken[:3]}"
        )


def check_icmp_reaches_flow_server(mutant: str | None) -> None:
    """ICMP fragmentation-needed about a VIP flow is sent to that flow's server."""
    cfg = mux_config()
    model = MuxModel(cfg)
    rng = random.Random(5)
    with MuxProgram(cfg, mutant=mutant) as mux:
        for vip in (TCP_VIP, UDP_VIP):
            for flow in random_flows(rng, 60, vip):
                client, vaddr, cport, vport, proto = flow
                frame = icmp_frag_needed("198.18.0.1", vaddr, vport, client, cport, proto)
                action, out = send(mux, frame)
                want = model.icmp_error(flow).backend
                assert action == XDP_TX, f"ICMP error about {flow}: action {action}, expected TX"
                assert_valid_encap(out, frame, mux_addr=MUX_ADDR, backend=want)
        assert mux.stats().globals["icmp_forwarded"] == 120, "icmp_forwarded counter is wrong"


# --- IPv6 ---------------------------------------------------------------------------------------

MUX_ADDR6 = "2001:2:0:10::2"
TCP_VIP6 = ("2001:2:0:100::10", 80, 6)
UDP_VIP6 = ("2001:2:0:100::11", 7, 17)
VIP46 = ("198.19.0.13", 80, 6)  # an IPv4 VIP with IPv6 backends: IPv4-in-IPv6
BACKENDS6 = ["2001:2:0:20::1", "2001:2:0:20::2", "2001:2:0:20::3"]
ROUTER6 = "2001:2:0:10::1"


def mux_config6(**mux: Any) -> MuxConfig:
    """The dual-stack MUX: the IPv4 VIPs of :func:`mux_config`, two IPv6 VIPs and an IPv4 VIP
    with IPv6 backends."""
    base = mux_config(address6=MUX_ADDR6, **mux).model_dump()
    base["vips"] += [
        {"address": a, "port": p, "proto": "tcp" if pr == 6 else "udp", "backends": BACKENDS6}
        for a, p, pr in (TCP_VIP6, UDP_VIP6, VIP46)
    ]
    return MuxConfig.model_validate(base)


def random_flows6(rng: random.Random, n: int, vip: tuple[str, int, int] = TCP_VIP6) -> list[Flow]:
    """Client flows from 2001:2:0:1::/64 (IPv6 VIPs) or 198.18.1.0/24, with interface
    identifiers random in all 64 bits: clients differ above the low 32 bits of their address."""
    if ":" not in vip[0]:
        return random_flows(rng, n, vip)
    base = int(ipaddress.IPv6Address("2001:2:0:1::"))
    return [
        (
            str(ipaddress.IPv6Address(base + rng.randrange(2, 2**64))),
            vip[0],
            rng.randrange(1024, 65536),
            vip[1],
            vip[2],
        )
        for _ in range(n)
    ]


OUTER_TTL = 37
"""The hop limit check_encap6_matches_model's MUX sets (the inner packets carry 64)."""


def _check_encap6(
    model: MuxModel, flow: Flow, frame: bytes, out: bytes, backend: str | None
) -> None:
    want = model.encapsulation(flow, backend or BACKENDS6[0])
    assert_valid_encap6(
        out,
        frame,
        mux_addr6=MUX_ADDR6,
        backend=backend,
        flow_label=want.flow_label,
        ttl=OUTER_TTL,
    )


def check_encap6_matches_model(mutant: str | None) -> None:
    """Every packet to an IPv6 VIP (and to an IPv4 VIP with IPv6 servers) leaves in an outer IPv6
    header toward the server the Python model predicts, with the model's flow label, the whole
    inner packet as payload length, the MUX's hop limit and the inner traffic class."""
    # A MUX hop limit unlike the inner packets' 64: a MUX copying the inner one fails.
    cfg = mux_config6(ttl=OUTER_TTL)
    model = MuxModel(cfg)
    rng = random.Random(21)
    with MuxProgram(cfg, mutant=mutant) as mux:
        for vip in (TCP_VIP6, UDP_VIP6, VIP46):
            for n, flow in enumerate(random_flows6(rng, 120, vip)):
                flags = ("S", "A", "PA")[n % 3] if vip[2] == 6 else ""
                frame = flow_frame(*flow, flags=flags, payload=b"x" * (n % 40))
                action, out = send(mux, frame)
                assert action == XDP_TX, f"VIP packet {flow} got action {action}, expected XDP_TX"
                want = model.packet(flow, tcp_flags=flags).backend
                _check_encap6(model, flow, frame, out, want)


def check_icmp6_reaches_flow_server(mutant: str | None) -> None:
    """ICMPv6 errors about an IPv6 VIP flow (packet too big, unreachable, time exceeded,
    parameter problem) are sent to that flow's server, found by the embedded header."""
    from tests.integration.packets import ICMPV6_ERRORS

    cfg = mux_config6(ttl=OUTER_TTL)
    model = MuxModel(cfg)
    rng = random.Random(22)
    sent = 0
    with MuxProgram(cfg, mutant=mutant) as mux:
        for vip in (TCP_VIP6, UDP_VIP6):
            for n, flow in enumerate(random_flows6(rng, 60, vip)):
                client, vaddr, cport, vport, proto = flow
                icmp_type = sorted(ICMPV6_ERRORS)[n % len(ICMPV6_ERRORS)]
                frame = icmp6_error(ROUTER6, vaddr, vport, client, cport, proto, icmp_type)
                action, out = send(mux, frame)
                want = model.icmp_error(flow).backend
                assert action == XDP_TX, (
                    f"ICMPv6 type {icmp_type} about {flow}: action {action}, expected XDP_TX"
                )
                _check_encap6(model, flow, frame, out, want)
                sent += 1
        got = mux.stats().globals["icmp_forwarded"]
        assert got == sent, f"icmp_forwarded counted {got}, {sent} ICMPv6 errors were forwarded"
