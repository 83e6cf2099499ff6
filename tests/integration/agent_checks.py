"""Packet-level checks of the reference server agent and egress gateway (BPF_PROG_TEST_RUN).

Each ``check_*`` function builds the program(s) it needs itself, as ``mutant`` when one is given
(None: the correct stack), runs scapy-built Ethernet frames through them and raises
AssertionError whose message states the broken property. They are called with ``mutant=None`` by
``test_agent.py`` (must pass) and with each agent/gateway mutant by ``test_mutants_caught.py``
(must fail); ``reference_impl/mutants.py`` names them in ``caught_by``.

Checksums are verified with scapy (checksum fields deleted, packet rebuilt, values compared), and
every rewrite also runs with BPF_F_TEST_SKB_CHECKSUM_COMPLETE: the kernel then seeds skb->csum
from the input and fails the run with EBADMSG when the program leaves it inconsistent with the
output, which is what a receiver trusting a CHECKSUM_COMPLETE NIC would trip over (kernels
before 6.11 lack the flag: that part is then skipped, and a missing BPF_F_PSEUDO_HDR goes unseen,
as the kernel fixes the checksum bytes of a CHECKSUM_NONE skb either way).

Roles (all inside the lab range): MUXes 198.18.10.x, the server 198.18.20.1, clients
198.18.1.x, VIPs 198.19.0.x, a foreign (spoofed) encapsulator 198.18.200.1.
"""

from __future__ import annotations

import errno

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

from dsrconform.bpf.libbpf import Program
from dsrconform.errors import BpfError
from reference_impl.agent import (
    AgentConfig,
    AgentProgram,
    GatewayConfig,
    GatewayProgram,
    run_packets,
)

MUX1, MUX2 = "198.18.10.1", "198.18.10.2"
SERVER, SERVER2 = "198.18.20.1", "198.18.20.2"
VIP1, VIP2 = "198.19.0.10", "198.19.0.20"
CLIENT1, CLIENT2 = "198.18.1.10", "198.18.1.20"
FOREIGN = "198.18.200.1"
ROUTER_MAC, SERVER_MAC = "02:00:5e:12:00:01", "02:00:5e:12:00:02"
TCP_APP, UDP_APP = 8080, 5353

BPF_F_TEST_SKB_CHECKSUM_COMPLETE = 1 << 2
_complete_supported = True

# A spread of flows for the deterministic checks: odd and even payload lengths matter to the
# one's-complement sums, the empty payload to the header-only case.
FLOW_CASES: tuple[tuple[str, int, bytes], ...] = (
    (CLIENT1, 40000, b"GET / HTTP/1.0\r\n\r\n"),
    ("198.18.1.1", 1024, b""),
    ("198.18.1.254", 65535, b"x"),
    ("198.18.1.77", 33333, bytes(range(256)) * 3 + b"odd"),
)


# --- configurations ---------------------------------------------------------------------------


def nat_config(mode: str = "server-nat") -> AgentConfig:
    """One TCP and one UDP service behind VIP1, plus VIP2 for the same app ports."""
    return AgentConfig(
        server_addr=SERVER,
        mode=mode,
        mux_addrs=[MUX1, MUX2],
        nat_services=[
            {"vip": VIP1, "vport": 80, "proto": "tcp", "port": TCP_APP},
            {"vip": VIP1, "vport": 53, "proto": "udp", "port": UDP_APP},
            {"vip": VIP2, "vport": 443, "proto": "tcp", "port": TCP_APP},
            {"vip": VIP2, "vport": 5353, "proto": "udp", "port": UDP_APP},
        ],
    )


def gateway_config() -> GatewayConfig:
    return GatewayConfig(
        mappings=[
            {"server": SERVER, "server_port": TCP_APP, "proto": "tcp", "external": VIP1,
             "external_port": 80},
            {"server": SERVER, "server_port": UDP_APP, "proto": "udp", "external": VIP1,
             "external_port": 53},
            {"server": SERVER2, "server_port": TCP_APP, "proto": "tcp", "external": VIP2,
             "external_port": 80},
        ]
    )  # fmt: skip


# --- packet builders --------------------------------------------------------------------------


def l4_packet(
    src: str, dst: str, sport: int, dport: int, proto: str, payload: bytes = b"", **l4: int
) -> Packet:
    """An IPv4 TCP/UDP packet (no Ethernet); extra keywords go to the L4 layer (e.g. chksum)."""
    layer = TCP(sport=sport, dport=dport, flags="PA", seq=1000, **l4)
    if proto == "udp":
        layer = UDP(sport=sport, dport=dport, **l4)
    return IP(src=src, dst=dst, id=4242, ttl=61) / layer / Raw(payload)


def ipip_frame(outer_src: str, inner: Packet) -> bytes:
    """What a MUX sends the server: Ethernet / IPv4 (proto 4) / the client's packet."""
    return bytes(Ether(src=ROUTER_MAC, dst=SERVER_MAC) / IP(src=outer_src, dst=SERVER) / inner)


def ipip_raw_frame(outer_src: str, inner: bytes) -> bytes:
    """IPIP around arbitrary bytes (e.g. a truncated inner packet)."""
    outer = IP(src=outer_src, dst=SERVER, proto=4)
    return bytes(Ether(src=ROUTER_MAC, dst=SERVER_MAC) / outer / Raw(inner))


def server_frame(inner: Packet) -> bytes:
    """A packet leaving the server toward the router."""
    return bytes(Ether(src=SERVER_MAC, dst=ROUTER_MAC) / inner)


def decapsulated(frame: bytes) -> bytes:
    """The frame a correct decapsulation yields: Ethernet header kept, outer IPv4 removed."""
    return frame[:14] + frame[34:]


# --- running and verifying ----------------------------------------------------------------------


def run(program: Program, frame: bytes, what: str, *, complete: bool = False) -> tuple[str, bytes]:
    """One test run; ``complete`` seeds skb->csum and makes the kernel verify it afterwards."""
    global _complete_supported
    flags = BPF_F_TEST_SKB_CHECKSUM_COMPLETE if complete else 0
    try:
        [(action, out)] = run_packets(program, [frame], flags=flags)
    except BpfError as e:
        if complete and e.errno == errno.EBADMSG:
            raise AssertionError(
                f"{what}: skb->csum no longer matches the packet after the rewrite (EBADMSG "
                "under CHECKSUM_COMPLETE): the checksum updates did not follow every changed "
                "byte (e.g. the address fold without BPF_F_PSEUDO_HDR), so a receiver trusting "
                "its NIC's checksum drops the packet"
            ) from None
        if complete and e.errno == errno.EINVAL:  # kernel < 6.11: no such flag
            _complete_supported = False
            return run(program, frame, what)
        raise
    return action, out


def assert_skb_csum_consistent(program: Program, frame: bytes, out: bytes, what: str) -> None:
    """Run ``frame`` again with CHECKSUM_COMPLETE: the kernel must find skb->csum consistent and
    the output must be the ``out`` of the plain run. Call it after checking the bytes, so that a
    wrong checksum byte is reported as such rather than as EBADMSG."""
    if not _complete_supported:
        return
    _, out2 = run(program, frame, what, complete=True)
    assert out2 == out, f"{what}: the output differs between CHECKSUM_NONE and COMPLETE runs"


def expect_action(action: str, expected: str, what: str) -> None:
    assert action == expected, f"{what}: verdict {action}, expected {expected}"


def _l4(pkt: Packet) -> Packet:
    if TCP in pkt:
        return pkt[TCP]
    if UDP in pkt:
        return pkt[UDP]
    raise AssertionError(f"output has no TCP/UDP header: {pkt.summary()}")


def assert_checksums(frame: bytes, what: str, *, udp_none: bool = False) -> Packet:
    """IPv4 and TCP/UDP checksums of ``frame`` are right (``udp_none``: the UDP checksum must be
    0, "none", as it was sent). Returns the parsed frame."""
    pkt = Ether(frame)
    assert IP in pkt, f"{what}: output is not IPv4: {pkt.summary()}"
    fresh = Ether(frame)
    del fresh[IP].chksum
    del _l4(fresh).chksum
    rebuilt = Ether(bytes(fresh))
    got_ip, want_ip = pkt[IP].chksum, rebuilt[IP].chksum
    assert got_ip == want_ip, (
        f"{what}: IPv4 header checksum 0x{got_ip:04x} is wrong, expected 0x{want_ip:04x}"
    )
    name = "TCP" if TCP in pkt else "UDP"
    got, want = _l4(pkt).chksum, _l4(rebuilt).chksum
    if udp_none:
        assert got == 0, (
            f'{what}: UDP checksum 0 ("none") became 0x{got:04x}; it must stay 0 (a wrong '
            "non-zero checksum makes the receiver drop the datagram)"
        )
    else:
        assert got == want, (
            f"{what}: {name} checksum 0x{got:04x} is wrong for {pkt[IP].src}:{_l4(pkt).sport} -> "
            f"{pkt[IP].dst}:{_l4(pkt).dport}, expected 0x{want:04x}"
        )
    return pkt


def assert_endpoints(pkt: Packet, src: tuple[str, int], dst: tuple[str, int], what: str) -> None:
    got_src, got_dst = (pkt[IP].src, _l4(pkt).sport), (pkt[IP].dst, _l4(pkt).dport)
    assert got_src == src, f"{what}: source is {_ep(got_src)}, expected {_ep(src)}"
    assert got_dst == dst, f"{what}: destination is {_ep(got_dst)}, expected {_ep(dst)}"


def assert_payload(pkt: Packet, payload: bytes, what: str) -> None:
    got = bytes(_l4(pkt).payload)
    assert got == payload, f"{what}: payload changed ({len(got)} bytes, sent {len(payload)})"


def _ep(ep: tuple[str, int]) -> str:
    return f"{ep[0]}:{ep[1]}"


def check_rewrite(
    program: Program,
    frame: bytes,
    what: str,
    *,
    src: tuple[str, int],
    dst: tuple[str, int],
    payload: bytes,
    udp_none: bool = False,
) -> Packet:
    """``frame`` goes through ``program`` as TC_ACT_OK with the endpoints ``src`` -> ``dst``,
    valid checksums (in the bytes and in skb->csum), its Ethernet header and its payload intact."""
    action, out = run(program, frame, what)
    expect_action(action, "TC_ACT_OK", what)
    pkt = assert_checksums(out, what, udp_none=udp_none)
    assert_endpoints(pkt, src, dst, what)
    assert_payload(pkt, payload, what)
    assert out[:14] == frame[:14], f"{what}: Ethernet header changed"
    assert_skb_csum_consistent(program, frame, out, what)
    return pkt


# --- server-nat round trip (also used by the hypothesis tests) ---------------------------------


def nat_round_trip(
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
    """Client -> VIP through ``mux``: DNAT to the server's app port with valid checksums; the
    server's reply: SNAT back to the VIP:port with valid checksums."""
    reply_payload = payload if reply_payload is None else reply_payload
    what = f"server-nat ingress {proto.upper()} {client}:{sport} -> {vip}:{vport} via {mux}"
    frame = ipip_frame(mux, l4_packet(client, vip, sport, vport, proto, payload))
    check_rewrite(agent.ingress, frame, what, src=(client, sport), dst=(SERVER, app_port),
                  payload=payload)  # fmt: skip
    what = f"server-nat egress {proto.upper()} reply {SERVER}:{app_port} -> {client}:{sport}"
    frame = server_frame(l4_packet(SERVER, client, app_port, sport, proto, reply_payload))
    check_rewrite(agent.egress, frame, what, src=(vip, vport), dst=(client, sport),
                  payload=reply_payload)  # fmt: skip


# --- the checks the mutant catalogue names -----------------------------------------------------


def check_server_nat_checksums(mutant: str | None) -> None:
    """server-nat rewrites (DNAT at ingress, SNAT at egress) leave valid IPv4 and TCP/UDP
    checksums, both in the bytes and in skb->csum."""
    with AgentProgram(nat_config(), mutant) as agent:
        for proto, vport, app in (("tcp", 80, TCP_APP), ("udp", 53, UDP_APP)):
            for client, sport, payload in FLOW_CASES:
                nat_round_trip(
                    agent, proto=proto, client=client, sport=sport, vip=VIP1, vport=vport,
                    app_port=app, mux=MUX1, payload=payload,
                )  # fmt: skip


def payload_for_zero_sum(src: str, dst: str, sport: int, dport: int, tail: bytes) -> bytes:
    """A UDP payload (2 chosen bytes + ``tail``) whose checksum from src:sport to dst:dport is
    zero, sent as 0xffff. With the 2 bytes zero the checksum is c0 = ~sum; putting c0 there
    completes the one's-complement sum to 0xffff."""
    probe = l4_packet(src, dst, sport, dport, "udp", b"\0\0" + tail)
    c0 = IP(bytes(probe))[UDP].chksum
    c0 = 0 if c0 == 0xFFFF else c0  # scapy already maps a zero result to 0xffff
    return c0.to_bytes(2, "big") + tail


def check_udp_zero_checksum_preserved(mutant: str | None) -> None:
    """A UDP checksum of 0 ("none") stays 0 through server-nat and the gateway, and a real
    checksum whose correct value after the rewrite is zero goes out as 0xffff, not 0."""
    with AgentProgram(nat_config(), mutant) as agent:
        for client, sport, payload in FLOW_CASES:
            what = f"server-nat ingress UDP without checksum {client}:{sport} -> {VIP1}:53"
            inner = l4_packet(client, VIP1, sport, 53, "udp", payload, chksum=0)
            check_rewrite(agent.ingress, ipip_frame(MUX1, inner), what, src=(client, sport),
                          dst=(SERVER, UDP_APP), payload=payload, udp_none=True)  # fmt: skip
            what = f"server-nat egress UDP reply without checksum to {client}:{sport}"
            reply = l4_packet(SERVER, client, UDP_APP, sport, "udp", payload, chksum=0)
            check_rewrite(agent.egress, server_frame(reply), what, src=(VIP1, 53),
                          dst=(client, sport), payload=payload, udp_none=True)  # fmt: skip
        # Rewritten packets whose correct checksum is zero: they must carry 0xffff, never 0.
        nat_round_trip(
            agent, proto="udp", client=CLIENT1, sport=41000, vip=VIP1, vport=53,
            app_port=UDP_APP, mux=MUX1,
            payload=payload_for_zero_sum(CLIENT1, SERVER, 41000, UDP_APP, b"zero-sum in"),
            reply_payload=payload_for_zero_sum(VIP1, CLIENT1, 53, 41000, b"zero-sum out"),
        )  # fmt: skip
    with GatewayProgram(gateway_config(), mutant) as gw:
        what = f"gateway UDP without checksum from {SERVER}:{UDP_APP}"
        reply = l4_packet(SERVER, CLIENT1, UDP_APP, 40000, "udp", b"dns", chksum=0)
        check_rewrite(gw.program, server_frame(reply), what, src=(VIP1, 53),
                      dst=(CLIENT1, 40000), payload=b"dns", udp_none=True)  # fmt: skip
        tail = b"zero-sum via gateway"
        reply = l4_packet(SERVER, CLIENT1, UDP_APP, 40000, "udp",
                          payload_for_zero_sum(VIP1, CLIENT1, 53, 40000, tail))  # fmt: skip
        check_rewrite(gw.program, server_frame(reply), "gateway UDP with zero-sum checksum",
                      src=(VIP1, 53), dst=(CLIENT1, 40000), payload=bytes(reply[Raw]))  # fmt: skip


def check_nat_reply_uses_flow_vip(mutant: str | None) -> None:
    """Two VIPs reached through two MUXes map to the same server app port: each client's replies
    leave from the VIP:port its own flow addressed, and the flow table says which MUX it was."""
    flows = (  # (client, sport, vip, vport, mux, proto, app port)
        (CLIENT1, 41001, VIP1, 80, MUX1, "tcp", TCP_APP),
        (CLIENT2, 41002, VIP2, 443, MUX2, "tcp", TCP_APP),
        (CLIENT1, 41003, VIP1, 53, MUX1, "udp", UDP_APP),
        (CLIENT2, 41004, VIP2, 5353, MUX2, "udp", UDP_APP),
    )
    with AgentProgram(nat_config(), mutant) as agent:
        for client, sport, vip, vport, mux, proto, _ in flows:
            frame = ipip_frame(mux, l4_packet(client, vip, sport, vport, proto, b"hi"))
            expect_action(run(agent.ingress, frame, "ingress")[0], "TC_ACT_OK", "ingress")
        table = {(f.remote_addr, f.remote_port): f for f in agent.nat_flows()}
        for client, sport, vip, vport, mux, proto, app in flows:
            f = table.get((client, sport))
            assert f is not None, f"no server-nat flow remembered for {client}:{sport}"
            assert (f.vip, f.vport, f.mux_addr) == (vip, vport, mux), (
                f"flow of {client}:{sport} remembered as {f.vip}:{f.vport} via {f.mux_addr}, "
                f"expected {vip}:{vport} via {mux}"
            )
            what = f"{proto.upper()} reply {SERVER}:{app} -> {client}:{sport}"
            reply = server_frame(l4_packet(SERVER, client, app, sport, proto, b"ok"))
            action, out = run(agent.egress, reply, what)
            expect_action(action, "TC_ACT_OK", what)
            pkt = assert_checksums(out, what)
            got = (pkt[IP].src, _l4(pkt).sport)
            assert got == (vip, vport), (
                f"{what}: reply source was {_ep(got)}, expected the flow's VIP {vip}:{vport} "
                f"(the client addressed {vip}:{vport} through {mux})"
            )


def check_nat_services_keyed_by_protocol(mutant: str | None) -> None:
    """A TCP and a UDP service on one VIP:port (VIP1:80) with different app ports: each
    protocol's packets reach its own service's port."""
    base = nat_config()
    shared = {"vip": VIP1, "vport": 80, "proto": "udp", "port": UDP_APP}
    cfg = AgentConfig.model_validate(
        {**base.model_dump(), "nat_services": [*base.model_dump()["nat_services"], shared]}
    )
    with AgentProgram(cfg, mutant) as agent:
        for proto, app in (("tcp", TCP_APP), ("udp", UDP_APP)):
            what = f"server-nat ingress {proto.upper()} {CLIENT1}:41010 -> {VIP1}:80"
            frame = ipip_frame(MUX1, l4_packet(CLIENT1, VIP1, 41010, 80, proto, b"hi"))
            check_rewrite(
                agent.ingress, frame, what, src=(CLIENT1, 41010), dst=(SERVER, app), payload=b"hi"
            )


def check_decap_only_from_muxes(mutant: str | None) -> None:
    """IPIP from a configured MUX is decapsulated; IPIP from any other source passes untouched
    (byte-identical) and is counted as foreign."""
    inner = l4_packet(CLIENT1, VIP1, 40000, 80, "tcp", b"payload")
    with AgentProgram(nat_config("encap"), mutant) as agent:
        frame = ipip_frame(MUX2, inner)
        action, out = run(agent.ingress, frame, f"IPIP from MUX {MUX2}")
        expect_action(action, "TC_ACT_OK", f"IPIP from MUX {MUX2}")
        assert out == decapsulated(frame), f"IPIP from MUX {MUX2} was not decapsulated"
        before = agent.stats()
        for spoofer in (FOREIGN, "198.18.200.77", SERVER2):
            what = f"IPIP from {spoofer}, which is not a MUX"
            frame = ipip_frame(spoofer, inner)
            action, out = run(agent.ingress, frame, what)
            expect_action(action, "TC_ACT_OK", what)
            assert out == frame, (
                f"{what}: was decapsulated or changed; only the stack's MUXes may inject "
                "traffic past the load balancer"
            )
        after = agent.stats()
        assert after["foreign_ipip"] - before["foreign_ipip"] == 3, (
            f"foreign IPIP counter moved by {after['foreign_ipip'] - before['foreign_ipip']}, "
            "expected 3"
        )
        assert after["decap"] == before["decap"], "foreign IPIP was counted as decapsulated"


def check_gateway_rewrite(mutant: str | None) -> None:
    """The gateway rewrites mapped server sources to their external address:port with valid
    IPv4 and TCP/UDP checksums, leaves unmapped traffic untouched and counts both."""
    with GatewayProgram(gateway_config(), mutant) as gw:
        cases = (  # (server, sport, proto, external, external port)
            (SERVER, TCP_APP, "tcp", VIP1, 80),
            (SERVER, UDP_APP, "udp", VIP1, 53),
            (SERVER2, TCP_APP, "tcp", VIP2, 80),
        )
        for server, sport, proto, ext, eport in cases:
            for client, cport, payload in FLOW_CASES:
                what = f"gateway {proto.upper()} {server}:{sport} -> {client}:{cport}"
                frame = server_frame(l4_packet(server, client, sport, cport, proto, payload))
                check_rewrite(gw.program, frame, what, src=(ext, eport), dst=(client, cport),
                              payload=payload)  # fmt: skip
        before = gw.stats()
        for frame in _unmapped_server_traffic():
            action, out = run(gw.program, frame, "gateway unmapped traffic")
            expect_action(action, "TC_ACT_OK", "gateway unmapped traffic")
            assert out == frame, f"gateway changed unmapped traffic: {Ether(frame).summary()}"
        after = gw.stats()
        n = len(_unmapped_server_traffic())
        assert after["pass"] - before["pass"] == n, "unmapped traffic not counted as pass"
        assert after["gw_rewrite"] == before["gw_rewrite"], "unmapped traffic counted as rewrite"


def _unmapped_server_traffic() -> list[bytes]:
    return [
        server_frame(l4_packet(SERVER, CLIENT1, 22, 40000, "tcp", b"ssh")),  # port not mapped
        server_frame(l4_packet(SERVER, CLIENT1, TCP_APP, 40000, "udp", b"x")),  # proto not mapped
        server_frame(l4_packet("198.18.20.3", CLIENT1, TCP_APP, 40000, "tcp")),  # other server
        server_frame(IP(src=SERVER, dst=CLIENT1) / ICMP()),
        bytes(Ether(src=SERVER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=SERVER, pdst=CLIENT1)),
    ]


# --- further checks of correct behaviour --------------------------------------------------------


def assert_untouched(program: Program, frames: list[bytes], what: str) -> None:
    """Every frame comes back TC_ACT_OK and byte-identical."""
    for frame in frames:
        label = f"{what} ({Ether(frame).summary()})"
        action, out = run(program, frame, label)
        expect_action(action, "TC_ACT_OK", label)
        assert out == frame, f"{label}: the packet was changed"


def stat_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def _inner_packets() -> list[Packet]:
    return [
        l4_packet(CLIENT1, VIP1, 40000, 80, "tcp", b"GET /"),
        l4_packet(CLIENT2, VIP2, 40001, 5353, "udp", b"q" * 33),
        IP(src=CLIENT1, dst=VIP1) / ICMP(type=8, id=7, seq=1) / Raw(b"ping"),
        l4_packet(CLIENT1, VIP1, 40002, 9999, "tcp", b"port with no service"),
    ]


def check_decap_output_is_inner(mutant: str | None) -> None:
    """Decapsulation yields exactly the inner packet behind the original Ethernet header (in
    server-nat mode: for traffic that matches no NAT service), and counts it."""
    for mode in ("encap", "server-nat"):
        with AgentProgram(nat_config(mode), mutant) as agent:
            inners = _inner_packets() if mode == "encap" else _inner_packets()[2:]
            for inner in inners:
                what = f"{mode} decapsulation of {inner.summary()}"
                frame = ipip_frame(MUX1, inner)
                action, out = run(agent.ingress, frame, what)
                expect_action(action, "TC_ACT_OK", what)
                assert out == decapsulated(frame), (
                    f"{what}: output is not the inner packet behind the Ethernet header"
                )
                assert_skb_csum_consistent(agent.ingress, frame, out, what)
            assert agent.stats()["decap"] == 2 * len(inners), "decapsulations miscounted"


def check_encap_mode_no_rewrite(mutant: str | None) -> None:
    """In encap mode (VIP on lo) nothing is rewritten: the VIP stays the destination at ingress
    and egress passes replies untouched, even with NAT services configured."""
    with AgentProgram(nat_config("encap"), mutant) as agent:
        frame = ipip_frame(MUX1, l4_packet(CLIENT1, VIP1, 40000, 80, "tcp", b"x"))
        action, out = run(agent.ingress, frame, "encap-mode ingress")
        expect_action(action, "TC_ACT_OK", "encap-mode ingress")
        pkt = Ether(out)
        assert (pkt[IP].dst, pkt[TCP].dport) == (VIP1, 80), (
            f"encap mode rewrote the destination to {pkt[IP].dst}:{pkt[TCP].dport}"
        )
        replies = [
            server_frame(l4_packet(VIP1, CLIENT1, 80, 40000, "tcp", b"reply from the VIP")),
            server_frame(l4_packet(SERVER, CLIENT1, TCP_APP, 40000, "tcp", b"from app port")),
        ]
        assert_untouched(agent.egress, replies, "encap-mode egress")
        assert not agent.nat_flows(), "encap mode remembered server-nat flows"


def check_non_ipip_untouched(mutant: str | None) -> None:
    """Traffic that is not IPIP (plain IPv4, ARP, IPv6, a truncated IPv4 header) passes ingress
    untouched and is counted as pass."""
    frames = [
        server_frame(l4_packet(CLIENT1, SERVER, 40000, 22, "tcp", b"ssh")),
        server_frame(l4_packet(CLIENT1, VIP1, 40000, 80, "tcp", b"direct to the VIP")),
        bytes(Ether(src=ROUTER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=MUX1, pdst=SERVER)),
        bytes.fromhex("02005e120002 02005e120001 86dd") + bytes(40),
        # IHL announces options beyond the frame (test runs refuse frames shorter than 20 bytes
        # of IPv4, so this is the shortest truncation they can carry).
        bytes(Ether(src=ROUTER_MAC, dst=SERVER_MAC) / IP(src=MUX1, dst=SERVER, proto=4, ihl=7)),
    ]
    for mode in ("encap", "server-nat"):
        with AgentProgram(nat_config(mode), mutant) as agent:
            assert_untouched(agent.ingress, frames, f"{mode} ingress of non-IPIP traffic")
            got = agent.stats()
            assert got["pass"] == len(frames), f"{mode}: pass counter {got['pass']}"


def check_truncated_inner_dropped(mutant: str | None) -> None:
    """IPIP from a MUX whose inner packet is cut short is dropped and counted as malformed: an
    inner IPv4 header beyond the frame, or (server-nat) a TCP/UDP header beyond the frame."""
    inner_ip = bytes(l4_packet(CLIENT1, VIP1, 40000, 80, "tcp", b"data"))
    cases = [("encap", inner_ip[:12]), ("server-nat", inner_ip[:12]),
             ("server-nat", inner_ip[:20 + 12])]  # fmt: skip
    for mode, inner in cases:
        with AgentProgram(nat_config(mode), mutant) as agent:
            what = f"{mode}: IPIP from {MUX1} with a {len(inner)}-byte inner packet"
            action, _ = run(agent.ingress, ipip_raw_frame(MUX1, inner), what)
            expect_action(action, "TC_ACT_SHOT", what)
            assert agent.stats()["malformed"] == 1, f"{what}: not counted as malformed"


def check_outer_options_not_decapsulated(mutant: str | None) -> None:
    """IPIP from a MUX with IPv4 options or fragmentation in the outer header is not ours to
    strip 20 bytes from: it passes untouched."""
    inner = l4_packet(CLIENT1, VIP1, 40000, 80, "tcp", b"x")
    frames = [
        bytes(Ether(src=ROUTER_MAC, dst=SERVER_MAC)
              / IP(src=MUX1, dst=SERVER, options=[b"\x01\x01\x01\x00"]) / inner),
        bytes(Ether(src=ROUTER_MAC, dst=SERVER_MAC)
              / IP(src=MUX1, dst=SERVER, flags="MF") / inner),
    ]  # fmt: skip
    with AgentProgram(nat_config("encap"), mutant) as agent:
        assert_untouched(agent.ingress, frames, "IPIP with outer options or fragment")


def check_snat_miss_passes(mutant: str | None) -> None:
    """A reply from a NAT service port with no remembered flow passes untouched and is counted
    as snat_miss; replies from other ports are plain pass."""
    with AgentProgram(nat_config(), mutant) as agent:
        miss = server_frame(l4_packet(SERVER, CLIENT2, TCP_APP, 50000, "tcp", b"who?"))
        other = server_frame(l4_packet(SERVER, CLIENT2, 22, 50000, "tcp", b"ssh"))
        before = agent.stats()
        assert_untouched(agent.egress, [miss, other], "server-nat egress without a flow")
        delta = stat_delta(before, agent.stats())
        assert delta == {"snat_miss": 1, "pass": 1}, f"counters moved by {delta}"
