"""Crafted packets (no privileges): each builder's bytes carry exactly the intended defect and
nothing else; non-lab addresses are refused; the catalogue, framing and fault window."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror, defragment
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from dsrconform.topofile import load_topology
from dsrconform.traffic import crafted
from dsrconform.traffic.crafted import (
    CASE_NAMES,
    CaseSent,
    CraftedFrames,
    Flow,
    SendRecord,
    build_cases,
    check_frame,
    client_node_of,
    frame,
    frame_cases,
    free_address,
    select_cases,
    send_crafted,
)

LABS = Path(__file__).resolve().parents[2] / "labs"
CLIENT, VIP, UDP_VIP, ROUTERISH = "198.18.1.2", "198.19.0.10", "198.19.0.11", "198.18.1.253"
LIVE = Flow(CLIENT, 40000, VIP, 80, "tcp")
LIVE_UDP = Flow(CLIENT, 40001, UDP_VIP, 7, "udp")
PROBE = LIVE.from_port(20001)
PROBE_UDP = LIVE_UDP.from_port(20002)
FLOWS = pytest.mark.parametrize("flow", [PROBE, PROBE_UDP], ids=["tcp", "udp"])
SRC_MAC, DST_MAC = "02:00:00:00:01:01", "02:00:00:00:00:01"


# --- checksum oracles (scapy recomputes) -------------------------------------------------------


def ip_csum_ok(b: bytes) -> bool:
    pkt = IP(b)
    again = pkt.copy()
    del again.chksum
    return IP(bytes(again)).chksum == pkt.chksum


def l4_csum_ok(b: bytes) -> bool:
    pkt = IP(b)
    layer = TCP if TCP in pkt else UDP if UDP in pkt else ICMP
    again = pkt.copy()
    del again[layer].chksum
    return IP(bytes(again))[layer].chksum == pkt[layer].chksum


# --- truncations --------------------------------------------------------------------------------


def test_truncated_ip_frames_are_shorter_than_their_header_claims() -> None:
    cut, claim = (bytes(p) for p in crafted.truncated_ip(PROBE))
    assert len(cut) == 10 < 20, "the first is not cut inside the minimal header"
    assert cut[0] >> 4 == 4 and cut[:10] == bytes(crafted.vip_packet(PROBE))[:10]
    ihl = (claim[0] & 0x0F) * 4
    total = int.from_bytes(claim[2:4], "big")
    assert (ihl, total, len(claim)) == (32, 52, 20), "IHL/total length do not overrun the bytes"
    assert IP(claim).src == CLIENT and IP(claim).dst == VIP


@FLOWS
def test_truncated_l4_keeps_a_valid_ip_header_around_a_short_l4_header(flow: Flow) -> None:
    full_hdr = 20 if flow.proto == "tcp" else 8
    pkts = [bytes(p) for p in crafted.truncated_l4(flow)]
    assert [len(b) - 20 for b in pkts] == [4, full_hdr - 1]
    for b in pkts:
        assert int.from_bytes(b[2:4], "big") == len(b), "IP total length disagrees with the frame"
        assert ip_csum_ok(b)
        assert b[9] == flow.proto_number
        assert int.from_bytes(b[20:22], "big") == flow.client_port
        assert int.from_bytes(b[22:24], "big") == flow.port


@FLOWS
def test_ip_len_overrun_claims_more_than_the_frame_with_a_valid_checksum(flow: Flow) -> None:
    (pkt,) = crafted.ip_len_overrun(flow, extra=77)
    b = bytes(pkt)
    assert int.from_bytes(b[2:4], "big") == len(b) + 77
    assert ip_csum_ok(b)
    assert (
        b[20:] == bytes(crafted.vip_packet(flow, crafted._with_mark(flow, "ip-len-overrun")))[20:]
    ), "the L4 part changed"


# --- options, checksums, TTL, protocols -----------------------------------------------------------


@FLOWS
def test_ip_options_have_a_longer_header_and_valid_checksums(flow: Flow) -> None:
    rr, ra = (bytes(p) for p in crafted.ip_options(flow))
    assert (rr[0] & 0x0F, ra[0] & 0x0F) == (15, 6)
    assert rr[20] == 7 and rr[21] == 39 and rr[22] == 4, "no empty record-route option"
    assert ra[20:24] == bytes([0x94, 4, 0, 0]), "no router-alert option"
    for b in (rr, ra):
        assert ip_csum_ok(b) and l4_csum_ok(b)
        assert int.from_bytes(b[2:4], "big") == len(b)
        sport = int.from_bytes(b[(b[0] & 15) * 4 :][:2], "big")
        assert sport == flow.client_port


@FLOWS
def test_bad_ip_checksum_is_wrong_and_nothing_else(flow: Flow) -> None:
    (pkt,) = crafted.bad_ip_checksum(flow)
    b = bytes(pkt)
    assert not ip_csum_ok(b)
    assert l4_csum_ok(b)
    good = bytes(crafted.vip_packet(flow, crafted._with_mark(flow, "bad-ip-csum")))
    assert b[:10] + b[12:] == good[:10] + good[12:], "more than the checksum differs"


@FLOWS
def test_bad_l4_checksum_is_wrong_and_nothing_else(flow: Flow) -> None:
    (pkt,) = crafted.bad_l4_checksum(flow)
    b = bytes(pkt)
    assert ip_csum_ok(b)
    assert not l4_csum_ok(b)
    off = 20 + (16 if flow.proto == "tcp" else 6)
    assert b[off : off + 2] != b"\0\0", "a UDP checksum of 0 means 'none', not 'wrong'"
    good = bytes(crafted.vip_packet(flow, crafted._with_mark(flow, "bad-l4-csum")))
    assert b[:off] + b[off + 2 :] == good[:off] + good[off + 2 :]


@given(st.integers(0, 0xFFFF))
def test_a_wrong_checksum_never_verifies(csum: int) -> None:
    bad = crafted._wrong(csum)
    # one's complement: 0x0000 and 0xFFFF are the same value, so csum ^ 0xFFFF would verify
    assert bad not in (csum, csum ^ 0xFFFF) and bad != 0


@FLOWS
def test_ttl_one_and_unknown_protocols(flow: Flow) -> None:
    (ttl,) = (bytes(p) for p in crafted.ttl_one(flow))
    assert ttl[8] == 1 and ip_csum_ok(ttl) and l4_csum_ok(ttl)
    unknown = [bytes(p) for p in crafted.unknown_protocols(flow)]
    assert [b[9] for b in unknown] == [253, 254]
    for b in unknown:
        assert ip_csum_ok(b) and IP(b).dst == flow.vip and IP(b).src == flow.client
    with pytest.raises(ValueError, match="protos: 6 is not an unknown"):
        crafted.unknown_protocols(flow, (6,))


# --- fragments ------------------------------------------------------------------------------------


def check_fragments(flow: Flow, mtu: int, payload_len: int) -> None:
    frags = crafted.fragments(flow, mtu=mtu, payload_len=payload_len)
    raw = [bytes(f) for f in frags]
    assert len(raw) >= 2
    assert all(len(b) <= mtu for b in raw), "a fragment exceeds the MTU"
    assert all(ip_csum_ok(b) for b in raw)
    assert len({IP(b).id for b in raw}) == 1, "fragments of one datagram with different ids"
    offsets = [IP(b).frag for b in raw]
    mf = [bool(IP(b).flags.MF) for b in raw]
    assert offsets[0] == 0 and all(o > 0 for o in offsets[1:]), "only the first has offset 0"
    assert mf == [True] * (len(raw) - 1) + [False]
    first = IP(raw[0])
    l4 = TCP if flow.proto == "tcp" else UDP
    assert l4 in first and first[l4].sport == flow.client_port and first[l4].dport == flow.port
    for b in raw[1:]:
        assert TCP not in IP(b) and UDP not in IP(b), "a later fragment parsed as carrying ports"
    original = bytes(crafted.vip_packet(flow, crafted.fragments_payload(payload_len), flags="PA"))
    (whole,) = defragment([IP(b) for b in raw])
    assert bytes(whole) == original, "the fragments do not reassemble to the original"
    assert l4_csum_ok(bytes(whole))


@FLOWS
def test_fragments_reassemble_and_only_the_first_carries_ports(flow: Flow) -> None:
    check_fragments(flow, 576, 1200)


@settings(max_examples=60, deadline=None)
@given(
    proto=st.sampled_from(["tcp", "udp"]),
    mtu=st.integers(68, 1500),
    payload_len=st.integers(1, 4000),
)
def test_fragments_reassemble_for_any_size(proto: str, mtu: int, payload_len: int) -> None:
    flow = PROBE if proto == "tcp" else PROBE_UDP
    hdr = 20 if proto == "tcp" else 8
    if payload_len + hdr <= (mtu - 20) // 8 * 8:  # fits in one: nothing to fragment
        with pytest.raises(ValueError, match="does not fragment"):
            crafted.fragments(flow, mtu=mtu, payload_len=payload_len)
        return
    check_fragments(flow, mtu, payload_len)


def test_fragment_refusals() -> None:
    with pytest.raises(ValueError, match="mtu: 30 leaves no room"):
        crafted.fragments(PROBE, mtu=30)
    with pytest.raises(ValueError, match="DF"):
        crafted.fragment_packet(IP(src=CLIENT, dst=VIP, flags="DF") / ("x" * 2000), 576)


# --- ICMP errors ----------------------------------------------------------------------------------


def quoted(pkt: Packet) -> tuple[str, int, str, int, int]:
    q = IP(bytes(pkt))[IPerror]
    l4 = q[TCPerror] if TCPerror in q else q[UDPerror]
    return q.src, l4.sport, q.dst, l4.dport, q.proto


@pytest.mark.parametrize("live", [LIVE, LIVE_UDP], ids=["tcp", "udp"])
@pytest.mark.parametrize(
    ("build", "type_code", "src"),
    [
        (lambda f: crafted.icmp_frag_needed(f, src=ROUTERISH), (3, 4), ROUTERISH),
        (lambda f: crafted.icmp_time_exceeded(f, src=ROUTERISH), (11, 0), ROUTERISH),
        (lambda f: crafted.icmp_port_unreachable(f), (3, 3), CLIENT),
        (lambda f: crafted.icmp_param_problem(f, src=ROUTERISH), (12, 0), ROUTERISH),
    ],
    ids=["frag-needed", "time-exceeded", "port-unreach", "param-problem"],
)
def test_icmp_errors_quote_the_reply_vip_to_client(
    live: Flow, build: object, type_code: tuple[int, int], src: str
) -> None:
    (pkt,) = build(live)  # type: ignore[operator]
    b = bytes(pkt)
    outer = IP(b)
    assert (outer.src, outer.dst, outer.proto) == (src, live.vip, 1)
    assert (outer[ICMP].type, outer[ICMP].code) == type_code
    assert quoted(pkt) == (live.vip, live.port, live.client, live.client_port, live.proto_number)
    assert ip_csum_ok(b) and l4_csum_ok(b), "the ICMP error itself has a bad checksum"
    assert ip_csum_ok(b[28:48]), "the quoted IPv4 header's checksum is wrong"
    assert len(b) == 20 + 8 + 20 + (20 if live.proto == "tcp" else 8)


def test_frag_needed_carries_the_next_hop_mtu_and_a_longer_df_quote() -> None:
    (pkt,) = crafted.icmp_frag_needed(LIVE, src=ROUTERISH, next_hop_mtu=1380, quoted_len=1500)
    b = bytes(pkt)
    assert int.from_bytes(b[26:28], "big") == 1380
    q = IP(b)[IPerror]
    assert q.len == 1500 and q.flags.DF
    with pytest.raises(ValueError, match="next_hop_mtu"):
        crafted.icmp_frag_needed(LIVE, src=ROUTERISH, next_hop_mtu=1500, quoted_len=1500)


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"client": "10.0.0.1"}, "client"),
        ({"vip": "8.8.8.8"}, "vip"),
        ({"client": "198.20.0.1"}, "client"),  # just past 198.18.0.0/15
        ({"vip": "not-an-ip"}, "vip"),
        ({"client_port": 0}, "client_port"),
        ({"proto": "sctp"}, "proto"),
    ],
)
def test_flows_outside_the_lab_are_refused(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"client": CLIENT, "client_port": 1, "vip": VIP, "port": 80}
    with pytest.raises(ValueError, match=rf"^{field}: "):
        Flow(**{**args, **kwargs})  # type: ignore[arg-type]


def test_icmp_sources_and_frames_outside_the_lab_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^src: 192\.0\.2\.1 is outside the lab range"):
        crafted.icmp_time_exceeded(LIVE, src="192.0.2.1")
    with pytest.raises(ValueError, match=r"^icmp_src: "):
        build_cases(LIVE, ["icmp-frag-needed"], icmp_src="172.16.0.1", probe_port=20001)
    foreign = frame([IP(src=CLIENT, dst="8.8.8.8") / UDP()], SRC_MAC, DST_MAC)[0]
    with pytest.raises(ValueError, match=r"frame IPv4 destination: 8\.8\.8\.8"):
        check_frame(foreign)
    check_frame(frame(crafted.truncated_ip(PROBE)[:1], SRC_MAC, DST_MAC)[0])  # too short to tell
    with pytest.raises(ValueError, match="neither IPv4 nor IPv6"):
        check_frame(bytes(Ether(src=SRC_MAC, dst=DST_MAC, type=0x0806) / (b"\0" * 40)))
    with pytest.raises(ValueError, match=r"frame IPv6 source: :: is outside the lab range"):
        check_frame(bytes(Ether(src=SRC_MAC, dst=DST_MAC, type=0x86DD) / (b"\0" * 40)))


def test_send_refuses_non_lab_namespaces_and_interfaces_before_touching_anything() -> None:
    frames = [CraftedFrames("ttl-1", tuple(frame(crafted.ttl_one(PROBE), SRC_MAC, DST_MAC)))]
    with pytest.raises(ValueError, match="netns: 'blue' is not a lab namespace"):
        send_crafted("blue", "dsrc-a", frames)
    with pytest.raises(ValueError, match="ifname: 'eth0' is not a lab interface"):
        send_crafted("dsrc-x", "eth0", frames)
    with pytest.raises(ValueError, match="count_per_frame"):
        send_crafted("dsrc-x", "dsrc-a", frames, count_per_frame=0)
    bad = [CraftedFrames("x", (frame([IP(src="10.1.1.1", dst=VIP)], SRC_MAC, DST_MAC)[0],))]
    with pytest.raises(ValueError, match=r"frame IPv4 source: 10\.1\.1\.1"):
        send_crafted("dsrc-x", "dsrc-a", bad)


# --- catalogue, framing, fault window -------------------------------------------------------------


def test_catalogue_names_and_selection() -> None:
    assert CASE_NAMES == (
        "truncated-ip", "truncated-l4", "ip-len-overrun", "ip-options", "fragments",
        "bad-ip-csum", "bad-l4-csum", "icmp-frag-needed", "icmp-time-exceeded",
        "icmp-port-unreach", "icmp-param-problem", "ttl-1", "unknown-proto",
    )  # fmt: skip
    assert select_cases("all") == list(CASE_NAMES)
    assert select_cases("ttl-1, fragments,ttl-1") == ["ttl-1", "fragments"]
    assert select_cases(["bad-ip-csum"]) == ["bad-ip-csum"]
    with pytest.raises(ValueError, match=r"unknown crafted case.*nope"):
        select_cases("ttl-1,nope")
    with pytest.raises(ValueError, match="no case named"):
        select_cases("")


@pytest.mark.parametrize("live", [LIVE, LIVE_UDP], ids=["tcp", "udp"])
def test_build_cases_uses_the_probe_port_except_for_icmp_quotes(live: Flow) -> None:
    built = build_cases(live, "all", probe_port=20001, icmp_src=ROUTERISH)
    assert [c.name for c in built] == list(CASE_NAMES)
    for c in built:
        assert c.packets, f"{c.name} built nothing"
        for p in c.packets:
            b = bytes(p)
            if c.name.startswith("icmp-"):
                assert quoted(p)[2:4] == (live.client, live.client_port)
            elif len(b) >= 24 and b[9] in (6, 17) and not IP(b).frag:
                ihl = (b[0] & 0x0F) * 4
                assert int.from_bytes(b[ihl : ihl + 2], "big") == 20001, (
                    f"{c.name} not from the probe port"
                )
    with pytest.raises(ValueError, match="icmp_src: an ICMP error case needs"):
        build_cases(live, ["icmp-time-exceeded"], probe_port=20001)
    with pytest.raises(ValueError, match="probe_port: must differ"):
        build_cases(live, ["ttl-1"], probe_port=live.client_port)
    assert build_cases(live, ["icmp-port-unreach"], probe_port=20001)[0].packets  # no icmp_src


def test_probe_ports_stay_below_the_ephemeral_range_and_change() -> None:
    ports = [crafted.next_probe_port() for _ in range(5)]
    assert all(20000 <= p < 30000 for p in ports) and len(set(ports)) == 5


def test_framing_puts_the_given_macs_and_ipv4_type_in_front() -> None:
    cases = build_cases(LIVE, ["truncated-ip", "ttl-1"], probe_port=20001)
    framed = frame_cases(cases, SRC_MAC, DST_MAC)
    assert [f.name for f in framed] == ["truncated-ip", "ttl-1"]
    for fc, c in zip(framed, cases, strict=True):
        assert len(fc.frames) == len(c.packets)
        for f, p in zip(fc.frames, c.packets, strict=True):
            eth = Ether(f)
            assert (eth.src, eth.dst, eth.type) == (SRC_MAC, DST_MAC, 0x0800)
            assert f[14:] == bytes(p), "framing changed the packet"


def test_send_record_makes_the_crafted_fault_window() -> None:
    rec = SendRecord(
        "dsrc-basic.client", "dsrc-router", 100.0, 101.5,
        (CaseSent("ttl-1", 1, 2, 0, 100.0, 100.1), CaseSent("fragments", 3, 6, 1, 100.1, 101.4)),
    )  # fmt: skip
    w = rec.fault_window("router", lab="basic")
    assert (w.kind, w.start, w.end, w.target) == ("crafted", 100.0, 101.5, "router")
    assert w.detail["cases"] == "ttl-1,fragments" and w.detail["packets"] == 8
    assert w.detail["sent.fragments"] == 6 and w.detail["failed"] == 1
    assert w.detail["netns"] == "dsrc-basic.client" and w.detail["lab"] == "basic"
    assert rec.by_case() == {"ttl-1": 2, "fragments": 6}


# --- lab addressing (no namespaces needed) --------------------------------------------------


def test_client_node_and_free_router_ish_address_in_the_basic_lab() -> None:
    topo = load_topology(LABS / "basic.yaml")
    assert client_node_of(topo, "198.18.1.5") == "client"
    assert client_node_of(topo, "198.18.1.1") == "client"  # its interface address
    with pytest.raises(ValueError, match=r"client: 198\.18\.20\.1 is no client node's address"):
        client_node_of(topo, "198.18.20.1")
    assert free_address(topo, "client") == "198.18.1.253"  # .254 is the router's


def test_icmp_echo_is_a_lab_request_with_a_valid_checksum() -> None:
    b = bytes(crafted.icmp_echo("198.18.1.2", "198.18.20.1", ident=0x1D5C0, seq=3))
    pkt = IP(b)
    assert (pkt.src, pkt.dst) == ("198.18.1.2", "198.18.20.1")
    assert (pkt[ICMP].type, pkt[ICMP].id, pkt[ICMP].seq) == (8, 0xD5C0, 3)
    assert ip_csum_ok(b) and l4_csum_ok(b)
    with pytest.raises(ValueError, match="outside the lab range"):
        crafted.icmp_echo("198.18.1.2", "10.0.0.1", ident=1)
