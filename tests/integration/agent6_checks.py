"""Packet-level checks of the reference agent and gateway for IPv6 (BPF_PROG_TEST_RUN).

The IPv6 counterparts of ``agent_checks`` (whose helpers they reuse): IPv6-in-IPv6 (outer next
header 41) and IPv4-in-IPv6 (next header 4) decapsulation from the stack's MUXes, server-side NAT
of IPv6 flows, and the gateway's IPv6 rewrite. Same contract: each ``check_*`` builds its programs
as ``mutant`` (None: the correct stack) and raises AssertionError stating the broken property;
``test_agent6.py`` runs them against the correct stack, ``test_mutants_caught.py`` against the
mutants whose ``caught_by`` names them.

TCP/UDP checksums are verified with scapy (checksum deleted, packet rebuilt over the IPv6
pseudo-header, values compared) and, where the kernel has the flag, under CHECKSUM_COMPLETE.
UDP over IPv6 has no "no checksum" (RFC 8200, 8.1): a rewrite that comes out zero must carry
0xffff, and a datagram sent with 0 is not NATed.

Roles (inside 2001:2::/48): MUXes 2001:2:0:10::1 and ::2, the server 2001:2:0:20::1 (IPv4
198.18.20.1), clients 2001:2:0:1::/64 and, to vary the upper 96 bits, elsewhere in the range;
IPv6 VIPs 2001:2:0:100::10 and ::20; a foreign encapsulator 2001:2:0:200::1.
"""

from __future__ import annotations

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from dsrconform.bpf.libbpf import Program
from reference_impl.agent import AgentConfig, AgentProgram, GatewayConfig, GatewayProgram
from tests.integration.agent_checks import (
    CLIENT1,
    MUX1,
    ROUTER_MAC,
    SERVER,
    SERVER_MAC,
    TCP_APP,
    UDP_APP,
    VIP1,
    assert_checksums,
    assert_endpoints,
    assert_payload,
    assert_skb_csum_consistent,
    assert_untouched,
    check_rewrite,
    expect_action,
    l4_packet,
    run,
    server_frame,
    stat_delta,
)

MUX6_1, MUX6_2 = "2001:2:0:10::1", "2001:2:0:10::2"
SERVER6, SERVER6_2 = "2001:2:0:20::1", "2001:2:0:20::2"
VIP6_1, VIP6_2 = "2001:2:0:100::10", "2001:2:0:100::20"
CLIENT6_1, CLIENT6_2 = "2001:2:0:1::2", "2001:2:0:1::3"
FOREIGN6 = "2001:2:0:200::1"
NH_IPV6, NH_IPV4 = 41, 4  # outer next header of IPv6-in-IPv6 and IPv4-in-IPv6

# Clients whose addresses differ from the VIP and the server above the low 32 bits, in the low
# 32 bits only, and not at all there: an update that folds part of the address shows in some.
FLOW_CASES6: tuple[tuple[str, int, bytes], ...] = (
    (CLIENT6_1, 40000, b"GET / HTTP/1.0\r\n\r\n"),
    ("2001:2:0:1::ffff:fffe", 1024, b""),
    ("2001:2:ff:ffff:ffff:ffff:ffff:ffff", 65535, b"x"),
    ("2001:2:0:20::1", 33333, bytes(range(256)) * 3 + b"odd"),
)


# --- configurations ---------------------------------------------------------------------------


def nat6_config(mode: str = "server-nat") -> AgentConfig:
    """A dual-stack server: IPv4 MUX1 and IPv6 MUX6_1/MUX6_2; TCP and UDP services behind
    VIP6_1 and VIP6_2 on the same app ports, and IPv4 VIP1 (reached IPv4-in-IPv6 too)."""
    return AgentConfig(
        server_addr=SERVER,
        server_addr6=SERVER6,
        mode=mode,
        mux_addrs=[MUX1, MUX6_1, MUX6_2],
        nat_services=[
            {"vip": VIP6_1, "vport": 80, "proto": "tcp", "port": TCP_APP},
            {"vip": VIP6_1, "vport": 53, "proto": "udp", "port": UDP_APP},
            {"vip": VIP6_2, "vport": 443, "proto": "tcp", "port": TCP_APP},
            {"vip": VIP6_2, "vport": 5353, "proto": "udp", "port": UDP_APP},
            {"vip": VIP1, "vport": 80, "proto": "tcp", "port": TCP_APP},
            {"vip": VIP1, "vport": 53, "proto": "udp", "port": UDP_APP},
        ],
    )


def gateway6_config() -> GatewayConfig:
    return GatewayConfig(
        mappings=[
            {
                "server": SERVER6,
                "server_port": TCP_APP,
                "proto": "tcp",
                "external": VIP6_1,
                "external_port": 80,
            },
            {
                "server": SERVER6,
                "server_port": UDP_APP,
                "proto": "udp",
                "external": VIP6_1,
                "external_port": 53,
            },
            {
                "server": SERVER6_2,
                "server_port": TCP_APP,
                "proto": "tcp",
                "external": VIP6_2,
                "external_port": 80,
            },
            {
                "server": SERVER,
                "server_port": TCP_APP,
                "proto": "tcp",
                "external": VIP1,
                "external_port": 80,
            },
        ]
    )


# --- packet builders --------------------------------------------------------------------------


def l4_packet6(
    src: str, dst: str, sport: int, dport: int, proto: str, payload: bytes = b"", **l4: int
) -> Packet:
    """An IPv6 TCP/UDP packet (no Ethernet); extra keywords go to the L4 layer (e.g. chksum)."""
    layer = TCP(sport=sport, dport=dport, flags="PA", seq=1000, **l4)
    if proto == "udp":
        layer = UDP(sport=sport, dport=dport, **l4)
    return IPv6(src=src, dst=dst, hlim=61, tc=0x28, fl=0x12345) / layer / Raw(payload)


def encap6_frame(outer_src: str, inner: Packet | bytes, *, dst: str = SERVER6) -> bytes:
    """What an IPv6 MUX sends the server: Ethernet / IPv6 (next header 41 for an IPv6 inner
    packet, 4 for IPv4, as the MUX builds it) / the client's packet (or raw bytes)."""
    raw = bytes(inner)
    nh = NH_IPV6 if raw[:1] and raw[0] >> 4 == 6 else NH_IPV4
    outer = IPv6(src=outer_src, dst=dst, nh=nh, hlim=64, plen=len(raw))
    return bytes(Ether(src=ROUTER_MAC, dst=SERVER_MAC, type=0x86DD) / outer / Raw(raw))


def server_frame6(inner: Packet) -> bytes:
    """A packet leaving the server toward the router (IPv4 or IPv6)."""
    return bytes(Ether(src=SERVER_MAC, dst=ROUTER_MAC) / inner)


def decapsulated6(frame: bytes) -> bytes:
    """The frame a correct decapsulation yields: the Ethernet addresses kept, the EtherType of
    the inner packet's family, the outer 40-byte IPv6 header gone."""
    inner = frame[54:]
    ethertype = b"\x86\xdd" if inner[0] >> 4 == 6 else b"\x08\x00"
    return frame[:12] + ethertype + inner


# --- verifying ----------------------------------------------------------------------------------


def _l4(pkt: Packet) -> Packet:
    if TCP in pkt:
        return pkt[TCP]
    if UDP in pkt:
        return pkt[UDP]
    raise AssertionError(f"output has no TCP/UDP header: {pkt.summary()}")


def assert_checksums6(frame: bytes, what: str) -> Packet:
    """The TCP/UDP checksum of an IPv6 ``frame`` is right, computed over the IPv6 pseudo-header
    (a UDP checksum is never 0). Returns the parsed frame."""
    pkt = Ether(frame)
    assert IPv6 in pkt, f"{what}: output is not IPv6: {pkt.summary()}"
    fresh = Ether(frame)
    del _l4(fresh).chksum
    want = _l4(Ether(bytes(fresh))).chksum
    got = _l4(pkt).chksum
    name = "TCP" if TCP in pkt else "UDP"
    assert got == want, (
        f"{what}: {name} checksum 0x{got:04x} is wrong for [{pkt[IPv6].src}]:{_l4(pkt).sport} -> "
        f"[{pkt[IPv6].dst}]:{_l4(pkt).dport}, expected 0x{want:04x} (the pseudo-header holds all "
        "128 bits of both addresses)"
    )
    assert not (name == "UDP" and got == 0), f"{what}: UDP checksum 0 is illegal in IPv6"
    return pkt


def _ep(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def check_rewrite6(
    program: Program,
    frame: bytes,
    what: str,
    *,
    src: tuple[str, int],
    dst: tuple[str, int],
    payload: bytes,
) -> Packet:
    """As ``agent_checks.check_rewrite`` for an IPv6 output: TC_ACT_OK, endpoints ``src`` ->
    ``dst``, a valid checksum (bytes and skb->csum), Ethernet addresses, hop limit, traffic class,
    flow label and payload intact."""
    action, out = run(program, frame, what)
    expect_action(action, "TC_ACT_OK", what)
    pkt = assert_checksums6(out, what)
    ip6, l4 = pkt[IPv6], _l4(pkt)
    got_src, got_dst = (ip6.src, l4.sport), (ip6.dst, l4.dport)
    assert got_src == src, f"{what}: source is {_ep(*got_src)}, expected {_ep(*src)}"
    assert got_dst == dst, f"{what}: destination is {_ep(*got_dst)}, expected {_ep(*dst)}"
    got = bytes(l4.payload)
    assert got == payload, f"{what}: payload changed ({len(got)} bytes, sent {len(payload)})"
    assert out[:12] == frame[:12], f"{what}: Ethernet addresses changed"
    assert (ip6.hlim, ip6.tc, ip6.fl) == (61, 0x28, 0x12345), (
        f"{what}: hop limit, traffic class or flow label changed "
        f"({ip6.hlim}, 0x{ip6.tc:02x}, 0x{ip6.fl:05x})"
    )
    assert_skb_csum_consistent(program, frame, out, what)
    return pkt


def nat6_round_trip(
    agent: AgentProgram,
    *,
    proto: str,
    client: str,
    sport: int,
    vip: str,
    vport: int,
    app_port: int,
    mux: str,
    payload: bytes,
    reply_payload: bytes | None = None,
) -> None:
    """Client -> IPv6 VIP through ``mux`` (IPv6-in-IPv6): DNAT to the server's IPv6 app port
    with a valid checksum; the server's reply: SNAT back to the VIP:port."""
    reply_payload = payload if reply_payload is None else reply_payload
    what = f"server-nat ingress {proto.upper()} {_ep(client, sport)} -> {_ep(vip, vport)} via {mux}"
    frame = encap6_frame(mux, l4_packet6(client, vip, sport, vport, proto, payload))
    check_rewrite6(
        agent.ingress, frame, what, src=(client, sport), dst=(SERVER6, app_port), payload=payload
    )
    reply_to = _ep(client, sport)
    what = f"server-nat egress {proto.upper()} reply {_ep(SERVER6, app_port)} -> {reply_to}"
    frame = server_frame6(l4_packet6(SERVER6, client, app_port, sport, proto, reply_payload))
    check_rewrite6(
        agent.egress, frame, what, src=(vip, vport), dst=(client, sport), payload=reply_payload
    )


def payload_for_zero_sum6(src: str, dst: str, sport: int, dport: int, tail: bytes) -> bytes:
    """A UDP payload (2 chosen bytes + ``tail``) whose IPv6 checksum from src:sport to dst:dport
    is zero (sent as 0xffff): as ``agent_checks.payload_for_zero_sum``, over IPv6."""
    probe = l4_packet6(src, dst, sport, dport, "udp", b"\0\0" + tail)
    c0 = IPv6(bytes(probe))[UDP].chksum
    c0 = 0 if c0 == 0xFFFF else c0
    return c0.to_bytes(2, "big") + tail


# --- the checks ----------------------------------------------------------------------------------


def check_server_nat6_checksums(mutant: str | None) -> None:
    """server-nat of IPv6 flows (DNAT at ingress, SNAT at egress) leaves valid TCP/UDP
    checksums over the 128-bit pseudo-header addresses, in the bytes and in skb->csum; a result
    of zero goes out as 0xffff."""
    with AgentProgram(nat6_config(), mutant) as agent:
        for proto, vport, app in (("tcp", 80, TCP_APP), ("udp", 53, UDP_APP)):
            for client, sport, payload in FLOW_CASES6:
                nat6_round_trip(
                    agent,
                    proto=proto,
                    client=client,
                    sport=sport,
                    vip=VIP6_1,
                    vport=vport,
                    app_port=app,
                    mux=MUX6_1,
                    payload=payload,
                )
        nat6_round_trip(
            agent,
            proto="udp",
            client=CLIENT6_1,
            sport=41000,
            vip=VIP6_1,
            vport=53,
            app_port=UDP_APP,
            mux=MUX6_1,
            payload=payload_for_zero_sum6(CLIENT6_1, SERVER6, 41000, UDP_APP, b"zero-sum in"),
            reply_payload=payload_for_zero_sum6(VIP6_1, CLIENT6_1, 53, 41000, b"zero-sum out"),
        )


def check_udp6_zero_checksum_not_natted(mutant: str | None) -> None:
    """An IPv6 UDP datagram to a NAT service with checksum 0 (illegal in IPv6) is dropped and
    counted as malformed, not rewritten into a wrong non-zero checksum or remembered."""
    with AgentProgram(nat6_config(), mutant) as agent:
        inner = l4_packet6(CLIENT6_1, VIP6_1, 40000, 53, "udp", b"q", chksum=0)
        what = "server-nat ingress of an IPv6 UDP datagram with checksum 0"
        action, _ = run(agent.ingress, encap6_frame(MUX6_1, inner), what)
        expect_action(action, "TC_ACT_SHOT", what)
        got = agent.stats()
        assert (got["malformed"], got["dnat"]) == (1, 0), f"{what}: counted as {got}"
        assert not agent.nat_flows(), f"{what}: a flow was remembered for it"


def check_ipv4_in_ipv6_nat(mutant: str | None) -> None:
    """IPv4-in-IPv6 from an IPv6 MUX to an IPv4 VIP: DNAT to the server's IPv4 address with
    valid IPv4 and TCP/UDP checksums, the flow remembered with its IPv6 MUX, and the IPv4 reply
    SNATed back to the VIP."""
    with AgentProgram(nat6_config(), mutant) as agent:
        for proto, vport, app in (("tcp", 80, TCP_APP), ("udp", 53, UDP_APP)):
            what = f"server-nat ingress IPv4-in-IPv6 {proto.upper()} {CLIENT1}:40000 -> {VIP1}"
            frame = encap6_frame(MUX6_2, l4_packet(CLIENT1, VIP1, 40000, vport, proto, b"v4"))
            action, out = run(agent.ingress, frame, what)
            expect_action(action, "TC_ACT_OK", what)
            pkt = assert_checksums(out, what)
            assert_endpoints(pkt, (CLIENT1, 40000), (SERVER, app), what)
            assert_payload(pkt, b"v4", what)
            assert out[:14] == frame[:12] + b"\x08\x00", (
                f"{what}: Ethernet header is {out[:14].hex()}, expected the addresses kept and "
                "EtherType IPv4"
            )
            assert_skb_csum_consistent(agent.ingress, frame, out, what)
            reply = server_frame(l4_packet(SERVER, CLIENT1, app, 40000, proto, b"back"))
            check_rewrite(
                agent.egress,
                reply,
                f"{what}: reply",
                src=(VIP1, vport),
                dst=(CLIENT1, 40000),
                payload=b"back",
            )
        muxes = {(f.vip, f.vport): f.mux_addr for f in agent.nat_flows()}
        assert muxes == {(VIP1, 80): MUX6_2, (VIP1, 53): MUX6_2}, (
            f"IPv4-in-IPv6 flows remembered as {muxes}, expected both via {MUX6_2}"
        )


def check_nat6_reply_uses_flow_vip(mutant: str | None) -> None:
    """Two IPv6 VIPs through two IPv6 MUXes map to the same server app ports: each client's
    replies leave from the VIP:port its own flow addressed, and the flow table says which MUX."""
    flows = (  # (client, sport, vip, vport, mux, proto, app port)
        (CLIENT6_1, 41001, VIP6_1, 80, MUX6_1, "tcp", TCP_APP),
        (CLIENT6_2, 41002, VIP6_2, 443, MUX6_2, "tcp", TCP_APP),
        (CLIENT6_1, 41003, VIP6_1, 53, MUX6_1, "udp", UDP_APP),
        (CLIENT6_2, 41004, VIP6_2, 5353, MUX6_2, "udp", UDP_APP),
    )
    with AgentProgram(nat6_config(), mutant) as agent:
        for client, sport, vip, vport, mux, proto, _ in flows:
            frame = encap6_frame(mux, l4_packet6(client, vip, sport, vport, proto, b"hi"))
            expect_action(run(agent.ingress, frame, "ingress")[0], "TC_ACT_OK", "ingress")
        table = {(f.remote_addr, f.remote_port): f for f in agent.nat_flows()}
        for client, sport, vip, vport, mux, proto, app in flows:
            f = table.get((client, sport))
            assert f is not None, f"no server-nat flow remembered for {_ep(client, sport)}"
            assert (f.local_addr, f.local_port) == (SERVER6, app), f"flow keyed as {f}"
            assert (f.vip, f.vport, f.mux_addr) == (vip, vport, mux), (
                f"flow of {_ep(client, sport)} remembered as {_ep(f.vip, f.vport)} via "
                f"{f.mux_addr}, expected {_ep(vip, vport)} via {mux}"
            )
            what = f"{proto.upper()} reply {_ep(SERVER6, app)} -> {_ep(client, sport)}"
            reply = server_frame6(l4_packet6(SERVER6, client, app, sport, proto, b"ok"))
            check_rewrite6(
                agent.egress, reply, what, src=(vip, vport), dst=(client, sport), payload=b"ok"
            )


def _inner_packets6() -> list[Packet]:
    """Inner packets of both families that match no NAT service of nat6_config()."""
    return [
        l4_packet6(CLIENT6_1, VIP6_1, 40002, 9999, "tcp", b"port with no service"),
        IPv6(src=CLIENT6_1, dst=VIP6_1) / ICMPv6EchoRequest(id=7, seq=1, data=b"ping"),
        IPv6(src=CLIENT6_2, dst=VIP6_2) / IPv6ExtHdrHopByHop() / UDP(sport=1, dport=53) / b"x",
        l4_packet(CLIENT1, VIP1, 40003, 9999, "udp", b"IPv4 inside"),
    ]


def check_ipv6_decap_yields_inner(mutant: str | None) -> None:
    """IPv6-in-IPv6 and IPv4-in-IPv6 from a known MUX decapsulate to exactly the inner packet
    behind the original Ethernet addresses, with the inner family's EtherType (in server-nat
    mode: for traffic that matches no NAT service), and are counted."""
    for mode in ("encap", "server-nat"):
        with AgentProgram(nat6_config(mode), mutant) as agent:
            inners = _inner_packets6()
            if mode == "encap":  # service traffic too: encap mode rewrites nothing
                inners += [
                    l4_packet6(CLIENT6_1, VIP6_1, 40000, 80, "tcp", b"GET /"),
                    l4_packet(CLIENT1, VIP1, 40000, 80, "tcp", b"GET /"),
                ]
            for inner in inners:
                what = f"{mode} decapsulation of {inner.summary()}"
                frame = encap6_frame(MUX6_1, inner)
                action, out = run(agent.ingress, frame, what)
                expect_action(action, "TC_ACT_OK", what)
                assert out == decapsulated6(frame), (
                    f"{what}: output is not the inner packet behind the Ethernet header "
                    f"(got {Ether(out).summary()})"
                )
                assert_skb_csum_consistent(agent.ingress, frame, out, what)
            got = agent.stats()
            assert got["decap"] == 2 * len(inners), f"{mode}: decapsulations counted as {got}"
            assert got["dnat"] == 0, f"{mode}: traffic without a NAT service was NATed: {got}"


def check_ipv6_decap_only_from_muxes(mutant: str | None) -> None:
    """IPv6-encapsulated traffic (next header 41 or 4) from a source that is not an IPv6 MUX
    passes untouched (byte-identical) and is counted as foreign, like foreign IPIP; an IPv4
    MUX's address does not admit IPv6 traffic from anyone else."""
    inners = [
        l4_packet6(CLIENT6_1, VIP6_1, 40000, 80, "tcp", b"payload"),
        l4_packet(CLIENT1, VIP1, 40000, 80, "tcp", b"payload"),
    ]
    spoofers = (FOREIGN6, "2001:2:0:10::99", SERVER6_2, "::ffff:198.18.10.1")
    with AgentProgram(nat6_config("encap"), mutant) as agent:
        before = agent.stats()
        for spoofer in spoofers:
            for inner in inners:
                what = f"IPv6-encapsulated {inner.summary()} from {spoofer}, which is not a MUX"
                frame = encap6_frame(spoofer, inner)
                action, out = run(agent.ingress, frame, what)
                expect_action(action, "TC_ACT_OK", what)
                assert out == frame, (
                    f"{what}: was decapsulated or changed; only the stack's MUXes may inject "
                    "traffic past the load balancer"
                )
        delta = stat_delta(before, agent.stats())
        n = len(spoofers) * len(inners)
        assert delta == {"foreign_ipip": n}, f"counters moved by {delta}, expected foreign {n}"


def check_ipv6_truncated_inner_dropped(mutant: str | None) -> None:
    """IPv6-encapsulated traffic from a MUX whose inner packet is cut short is dropped and
    counted as malformed: an inner IPv6 or IPv4 header beyond the frame, or (server-nat) a
    TCP/UDP header beyond it."""
    inner6 = bytes(l4_packet6(CLIENT6_1, VIP6_1, 40000, 80, "tcp", b"data"))
    inner4 = bytes(l4_packet(CLIENT1, VIP1, 40000, 80, "tcp", b"data"))
    cases = [
        ("encap", inner6[:39]),
        ("server-nat", inner6[:39]),
        ("encap", inner6[:1]),
        ("server-nat", inner6[: 40 + 12]),
        ("encap", inner4[:19]),
        ("server-nat", inner4[: 20 + 12]),
    ]
    for mode, inner in cases:
        with AgentProgram(nat6_config(mode), mutant) as agent:
            what = f"{mode}: IPv6-encapsulated from {MUX6_1} with a {len(inner)}-byte inner packet"
            action, _ = run(agent.ingress, encap6_frame(MUX6_1, inner), what)
            expect_action(action, "TC_ACT_SHOT", what)
            got = agent.stats()
            assert (got["malformed"], got["decap"]) == (1, 0), f"{what}: counted as {got}"


def check_ipv6_not_ours_untouched(mutant: str | None) -> None:
    """IPv6 traffic that is not IPv6-in-IPv6/IPv4-in-IPv6 passes ingress untouched and counted as
    pass: plain IPv6 to the server or a VIP, ICMPv6, and an outer header whose first next header
    is an extension header (not what our MUXes send, as outer IPv4 options are not)."""
    inner = l4_packet6(CLIENT6_1, VIP6_1, 40000, 80, "tcp", b"x")
    frames = [
        server_frame6(l4_packet6(CLIENT6_1, SERVER6, 40000, 22, "tcp", b"ssh")),
        server_frame6(l4_packet6(CLIENT6_1, VIP6_1, 40000, 80, "tcp", b"direct to the VIP")),
        server_frame6(IPv6(src=CLIENT6_1, dst=SERVER6) / ICMPv6EchoRequest()),
        bytes(
            Ether(src=ROUTER_MAC, dst=SERVER_MAC)
            / IPv6(src=MUX6_1, dst=SERVER6)
            / IPv6ExtHdrHopByHop(nh=41)
            / inner
        ),
    ]
    for mode in ("encap", "server-nat"):
        with AgentProgram(nat6_config(mode), mutant) as agent:
            assert_untouched(agent.ingress, frames, f"{mode} ingress of non-encapsulated IPv6")
            got = agent.stats()
            assert got["pass"] == len(frames), f"{mode}: counters {got}"


def check_snat6_miss_passes(mutant: str | None) -> None:
    """An IPv6 reply from a NAT service port with no remembered flow passes untouched and is
    counted as snat_miss; IPv6 replies from other ports are plain pass."""
    with AgentProgram(nat6_config(), mutant) as agent:
        miss = server_frame6(l4_packet6(SERVER6, CLIENT6_2, TCP_APP, 50000, "tcp", b"who?"))
        other = server_frame6(l4_packet6(SERVER6, CLIENT6_2, 22, 50000, "tcp", b"ssh"))
        before = agent.stats()
        assert_untouched(agent.egress, [miss, other], "server-nat IPv6 egress without a flow")
        delta = stat_delta(before, agent.stats())
        assert delta == {"snat_miss": 1, "pass": 1}, f"counters moved by {delta}"


def check_gateway6_rewrite(mutant: str | None) -> None:
    """The gateway rewrites mapped IPv6 server sources to their external IPv6 address:port with
    valid TCP/UDP checksums (zero results as 0xffff), leaves unmapped IPv6 traffic and IPv6 UDP
    without a checksum alone (the latter dropped: IPv6 forbids it), and keeps IPv4 mappings."""
    with GatewayProgram(gateway6_config(), mutant) as gw:
        cases = (  # (server, sport, proto, external, external port)
            (SERVER6, TCP_APP, "tcp", VIP6_1, 80),
            (SERVER6, UDP_APP, "udp", VIP6_1, 53),
            (SERVER6_2, TCP_APP, "tcp", VIP6_2, 80),
        )
        for server, sport, proto, ext, eport in cases:
            for client, cport, payload in FLOW_CASES6:
                what = f"gateway {proto.upper()} {_ep(server, sport)} -> {_ep(client, cport)}"
                frame = server_frame6(l4_packet6(server, client, sport, cport, proto, payload))
                check_rewrite6(
                    gw.program, frame, what, src=(ext, eport), dst=(client, cport), payload=payload
                )
        tail = b"zero-sum via gateway"
        payload = payload_for_zero_sum6(VIP6_1, CLIENT6_1, 53, 40000, tail)
        frame = server_frame6(l4_packet6(SERVER6, CLIENT6_1, UDP_APP, 40000, "udp", payload))
        check_rewrite6(
            gw.program,
            frame,
            "gateway UDP with zero-sum checksum",
            src=(VIP6_1, 53),
            dst=(CLIENT6_1, 40000),
            payload=payload,
        )
        before = gw.stats()
        unmapped = [
            server_frame6(l4_packet6(SERVER6, CLIENT6_1, 22, 40000, "tcp", b"ssh")),
            server_frame6(l4_packet6(SERVER6, CLIENT6_1, TCP_APP, 40000, "udp", b"x")),
            server_frame6(l4_packet6("2001:2:0:20::3", CLIENT6_1, TCP_APP, 40000, "tcp")),
            server_frame6(IPv6(src=SERVER6, dst=CLIENT6_1) / ICMPv6EchoRequest()),
        ]
        assert_untouched(gw.program, unmapped, "gateway, unmapped IPv6 traffic")
        delta = stat_delta(before, gw.stats())
        assert delta == {"pass": len(unmapped)}, f"unmapped IPv6 traffic counted as {delta}"
        zero = server_frame6(l4_packet6(SERVER6, CLIENT6_1, UDP_APP, 40000, "udp", b"z", chksum=0))
        action, _ = run(gw.program, zero, "gateway, IPv6 UDP with checksum 0")
        expect_action(action, "TC_ACT_SHOT", "gateway, IPv6 UDP with checksum 0")
        what = "gateway IPv4 mapping beside the IPv6 ones"
        frame = server_frame6(l4_packet(SERVER, CLIENT1, TCP_APP, 40000, "tcp", b"v4"))
        action, out = run(gw.program, frame, what)
        expect_action(action, "TC_ACT_OK", what)
        pkt = Ether(out)
        assert (pkt[IP].src, pkt[TCP].sport) == (VIP1, 80), f"{what}: source {pkt[IP].src}"
