"""GUE (Katran's encapsulation: IPv4 directly in UDP to GUE_PORT) through the framework's decoder
and the checkers that look inside encapsulated packets: the same verdicts as for IPIP.

Packets are built with scapy as Katran builds them (:mod:`tests.unit.gue_packets`); the checker
tests switch :func:`tests.unit.observations_builder.encap` to GUE, so every encapsulated record
of a synthetic run is decoded from such a packet.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from dsrconform.invariants import Status, run_checker
from dsrconform.invariants.rewrite import check_checksums_valid, check_marks_kept
from dsrconform.invariants.robust import check_decap_only_from_muxes, check_non_vip_untouched
from dsrconform.invariants.scale import check_atomic_convergence
from dsrconform.observe.pcap import frame_headers
from dsrconform.observe.taps import GUE_PORT, FiveTuple
from tests.unit import observations_builder as ob
from tests.unit.gue_packets import decode, gue_record, inner_packet, katran_gue, katran_sport
from tests.unit.observations_builder import CLIENT, MUX_ADDR, SERVER_ADDR, WEB, Run, encap, tcp

MUX, SRV = MUX_ADDR["mux1"], SERVER_ADDR["server1"]


@pytest.fixture
def gue(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(ob, "ENCAPSULATION", "gue")
    yield


def heads(pkt: object) -> list[tuple[str, int, str, str, int, int]]:
    return [
        (h.layer, h.proto, h.src, h.dst, h.sport, h.dport)
        for h in frame_headers(bytes(Ether() / pkt))  # type: ignore[operator]
    ]


# --- the decoder -------------------------------------------------------------------------------


def test_katrans_gue_layout_is_decoded_to_its_inner_packet() -> None:
    flow = tcp(CLIENT, 40001, WEB, 80)
    pkt = katran_gue(MUX, SRV, inner_packet(flow))
    sport = katran_sport(flow)
    assert sport != flow.sport  # the outer port is Katran's mix, not the client's
    assert heads(pkt) == [
        ("outer", 17, MUX, SRV, sport, GUE_PORT),
        ("inner", 6, CLIENT, WEB, 40001, 80),
    ]
    # An ICMP error inside GUE: the flow it quotes, as inside IPIP.
    quoted = IP(src=WEB, dst=CLIENT) / TCP(sport=80, dport=40001)
    ptb = IP(src="198.18.1.1", dst=WEB) / ICMP(type=3, code=4) / bytes(quoted)[:28]
    assert [h[:2] for h in heads(katran_gue(MUX, SRV, ptb))] == [
        ("outer", 17),
        ("inner", 1),
        ("embedded", 6),
    ]
    assert heads(katran_gue(MUX, SRV, ptb))[2][2:] == (WEB, CLIENT, 80, 40001)


def test_only_ip_in_udp_to_the_gue_port_is_encapsulated() -> None:
    inner = inner_packet(tcp(CLIENT, 40001, WEB, 80))
    other_port = katran_gue(MUX, SRV, inner, dport=GUE_PORT + 1)
    assert [h[0] for h in heads(other_port)] == ["outer"]
    not_ip = IP(src=MUX, dst=SRV) / UDP(sport=1, dport=GUE_PORT) / Raw(b"\x50" + b"\0" * 40)
    assert [h[0] for h in heads(not_ip)] == ["outer"]  # version 5: neither IPv4 nor IPv6
    short = IP(src=MUX, dst=SRV) / UDP(sport=1, dport=GUE_PORT)
    assert [h[0] for h in heads(short)] == ["outer"]


def test_checksums_inside_and_outside_gue_are_verified() -> None:
    flow = tcp(CLIENT, 40001, WEB, 80)
    assert decode(katran_gue(MUX, SRV, inner_packet(flow)))[2:] == (0, 0)
    # A bad inner TCP checksum: Katran's outer checksum is derived from it, so it is bad too.
    assert decode(katran_gue(MUX, SRV, inner_packet(flow, l4_chksum=0x1234)))[2:] == (0, 1)
    # A bad outer UDP checksum over a good inner packet, and none at all (fine).
    assert decode(katran_gue(MUX, SRV, inner_packet(flow), udp_chksum=0x4321))[2:] == (0, 1)
    assert decode(katran_gue(MUX, SRV, inner_packet(flow), udp_chksum=0))[2:] == (0, 0)


# --- the checkers ------------------------------------------------------------------------------


def test_gue_records_carry_the_inner_flow(gue: None) -> None:
    rec = encap("mux1-out", "mux1", "server1", tcp(CLIENT, 40001, WEB, 80), 1.0, 2.0)
    assert (rec.proto, rec.src, rec.dst, rec.dport) == (17, MUX, SRV, GUE_PORT)
    assert rec.inner == tcp(CLIENT, 40001, WEB, 80)
    assert "udp 198.18.10.1:" in rec.describe() and "[inner tcp 198.18.1.2:40001" in rec.describe()


def healthy() -> Run:
    run = Run()
    run.conn(1, 10.0, end_t=20.0, server="server1", mux="mux1")
    run.conn(2, 11.0, end_t=21.0, server="server2", mux="mux2", src="198.18.1.3")
    return run


def test_rw2_checks_the_checksums_inside_gue(gue: None) -> None:
    assert run_checker(check_checksums_valid, healthy().obs()).status == Status.PASS
    run = healthy()
    bad = gue_record("mux1-out", MUX, SRV, tcp(CLIENT, 40009, WEB, 80), 15.0, 16.0, l4_chksum=7)
    run.add(bad)
    v = run_checker(check_checksums_valid, run.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert "10 with an invalid L4 checksum" in e.message
    assert e.packet is not None and "[inner tcp 198.18.1.2:40009 > 198.19.0.10:80]" in e.packet
    # The same packet crafted by the suite (a bad checksum on purpose): its own record, in the
    # crafted window, judged by its inner flow and not by a whole run's outer UDP "flow".
    run = healthy()
    run.fault("crafted", 14.0, 17.0)
    run.add(bad)
    assert run_checker(check_checksums_valid, run.obs()).status == Status.PASS


def marked(**shape: int) -> Run:
    """healthy() plus a client flow marked AF11 + ECT(0), GUE-encapsulated by mux1."""
    run = healthy()
    fwd = tcp(CLIENT, 40100, WEB, 80)
    tos = (10 << 2) | 2
    run.add(ob.record("client-out", fwd, 30.0, 31.0, dscp_seen=1 << 10, ecn_seen=1 << 2))
    outer_tos = shape.get("outer_tos", tos)
    run.add(
        gue_record(
            "mux1-out",
            MUX,
            SRV,
            fwd,
            30.0,
            31.0,
            inner_tos=tos,
            outer_tos=outer_tos,
            dscp_seen=1 << 10,
            ecn_seen=1 << 2,
            dscp_changed=10 * int(outer_tos >> 2 != tos >> 2),
            ecn_bad=10 * int(bool(outer_tos & 3) and outer_tos & 3 != tos & 3),
        )
    )
    return run


def test_rw8_judges_the_marks_of_gue_packets(gue: None) -> None:
    v = run_checker(check_marks_kept, marked().obs())  # COPY_INNER_PACKET_TOS: Katran's default
    assert v.status == Status.PASS, v.message
    assert v.measured["marked_packets"] == 10 and v.measured["encapsulated_packets"] > 10
    v = run_checker(check_marks_kept, marked(outer_tos=0).obs())  # Katran's DEFAULT_TOS instead
    assert v.status == Status.FAIL
    assert "carried an outer DSCP other than their own" in v.evidence[0].message


def test_sc4_probes_seen_inside_gue(gue: None) -> None:
    from tests.unit.test_invariants_probes import two_mux_run

    run = two_mux_run()
    assert all(r.proto == 17 and r.inner is not None for r in run.tap_records)
    v = run_checker(check_atomic_convergence, run.obs())
    assert v.status == Status.PASS, v.message
    assert v.measured["tuples_changed@100.000"] == 20


def test_rb2_non_vip_traffic_inside_gue_fails(gue: None) -> None:
    run = Run()
    run.conn(1, 10.0, end_t=11.0, dst=MUX_ADDR["mux1"], dport=22, wire=False)
    run.conn(2, 10.0, end_t=11.0)
    v = run_checker(check_non_vip_untouched, run.obs())
    assert v.status == Status.PASS and v.measured["encapsulated_packets"] > 0
    run.add(encap("mux1-out", "mux1", "server2", tcp(CLIENT, 40007, "198.18.20.254", 22), 12, 13))
    v = run_checker(check_non_vip_untouched, run.obs())
    assert v.status == Status.FAIL
    assert v.evidence[0].message == "mux1 encapsulated packets to 198.18.20.254, which is no VIP"


def test_rb4_foreign_gue_answered_fails(gue: None) -> None:
    def foreign(answered: bool) -> Run:
        run = Run()
        run.conn(1, 10.0, end_t=20.0)
        inner = tcp("198.18.1.3", 41000, WEB, 80)
        run.add(gue_record("server1-in", CLIENT, SRV, inner, 30.0, 30.0, packets=1))
        if answered:
            reply = tcp(WEB, 80, "198.18.1.3", 41000)
            run.add(ob.record("server1-out", reply, 30.001, 30.001, packets=1, tcp_flags=0x12))
        return run

    v = run_checker(check_decap_only_from_muxes, foreign(False).obs())
    assert v.status == Status.PASS, v.message
    assert v.measured["foreign_encapsulated_records"] == 1
    v = run_checker(check_decap_only_from_muxes, foreign(True).obs())
    assert v.status == Status.FAIL
    assert "server1 accepted GUE-encapsulated packets from 198.18.1.2" in v.evidence[0].message


def test_a_gue_record_is_the_records_own_five_tuple() -> None:
    """The checkers' records: outer 5-tuple UDP to GUE_PORT, inner the client's flow."""
    rec = gue_record(
        "server1-in", MUX, SRV, FiveTuple(proto=17, src=CLIENT, dst=WEB, sport=5, dport=7), 1.0, 1.0
    )
    assert rec.payload == FiveTuple(proto=17, src=CLIENT, dst=WEB, sport=5, dport=7)
    assert (rec.l4_valid, rec.l4_invalid) == (10, 0)
