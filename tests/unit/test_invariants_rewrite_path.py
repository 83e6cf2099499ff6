"""RW and DP checkers on synthetic observations: PASS, FAIL with evidence, UNKNOWN."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsrconform.invariants import Status, run_checker
from dsrconform.invariants.path import (
    check_mux_load_follows_inbound,
    check_return_path_bypasses_mux,
)
from dsrconform.invariants.rewrite import (
    check_bytes_intact,
    check_checksums_valid,
    check_encap_overhead_handled,
    check_icmp_errors_reach_flow_server,
    check_marks_kept,
    check_no_server_address_leaks,
    check_per_mux_vip_honoured,
    check_replies_carry_vip,
)
from dsrconform.observe.taps import FiveTuple, TapFlow
from tests.unit.observations_builder import (
    CLIENT,
    EDGE,
    LAB,
    MUX_ADDR,
    SERVER_ADDR,
    WEB,
    Run,
    encap,
    record,
    tcp,
)


def healthy() -> Run:
    run = Run()
    run.conn(1, 10.0, end_t=20.0, server="server1", mux="mux1")
    run.conn(2, 11.0, end_t=21.0, server="server2", mux="mux2", src="198.18.1.3")
    return run


# --- RW-1 / RW-4 -------------------------------------------------------------------------------


def test_rw1_pass() -> None:
    v = run_checker(check_replies_carry_vip, healthy().obs())
    assert v.status == Status.PASS, v.message
    assert v.measured["flows_with_replies"] == 2


def test_rw1_fail_names_flow_packet_link_and_time() -> None:
    run = healthy()
    run.conn(3, 12.0, end_t=22.0, reply_src=(SERVER_ADDR["server3"], 8080))
    v = run_checker(check_replies_carry_vip, run.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert e.flow == f"tcp {CLIENT}:40003 > {WEB}:80 (flow 3)"
    assert e.packet is not None and e.packet.startswith("tcp 198.18.20.3:8080 > 198.18.1.2:40003")
    assert e.link == "client:dsrc-router ingress (link-client from router)"
    assert (e.time, e.until) == (12.0, 22.0)
    assert "reply from 198.18.20.3:8080, but the client addressed 198.19.0.10:80" in e.message


def test_rw1_fail_even_when_another_tap_overflowed() -> None:
    run = healthy()
    run.conn(3, 12.0, end_t=22.0, reply_src=("198.19.0.99", 80))
    run.overflow("client-in")
    assert run_checker(check_replies_carry_vip, run.obs()).status == Status.FAIL


def test_rw1_unknown_cases() -> None:
    run = healthy()
    run.overflow("client-in", lost=12)
    v = run_checker(check_replies_carry_vip, run.obs())
    assert v.status == Status.UNKNOWN and "lost 12 records (overflow)" in v.message
    v = run_checker(check_replies_carry_vip, healthy().obs(history=False))
    assert v.status == Status.UNKNOWN and "connection histories" in v.message
    v = run_checker(check_replies_carry_vip, healthy().obs(lab=False))
    assert v.status == Status.UNKNOWN and "lab's facts" in v.message
    run = healthy()
    run.drop_taps("client-in")
    v = run_checker(check_replies_carry_vip, run.obs())
    assert v.status == Status.UNKNOWN and "a tap toward a client" in v.message
    v = run_checker(check_replies_carry_vip, healthy().obs(), {"min_flows": 3})
    assert v.status == Status.UNKNOWN and "replies of 2 recorded flows" in v.message


@settings(max_examples=40, deadline=None)
@given(st.ip_addresses(v=4).map(str), st.integers(1, 65535))
def test_rw1_any_other_reply_source_fails(addr: str, port: int) -> None:
    run = Run()
    run.conn(1, 10.0, end_t=20.0, reply_src=(addr, port))
    status = run_checker(check_replies_carry_vip, run.obs()).status
    assert status == (Status.PASS if (addr, port) == (WEB, 80) else Status.FAIL)


def test_rw4_per_mux_vip() -> None:
    run = healthy()
    run.conn(3, 12.0, end_t=22.0, dst=EDGE, mux="mux2")
    assert run_checker(check_per_mux_vip_honoured, run.obs()).status == Status.PASS
    run.conn(4, 13.0, end_t=23.0, dst=EDGE, mux="mux2", reply_src=(WEB, 80))
    v = run_checker(check_per_mux_vip_honoured, run.obs())
    assert v.status == Status.FAIL
    assert v.evidence[0].flow is not None and "198.19.0.12:80 (flow 4)" in v.evidence[0].flow
    v = run_checker(check_per_mux_vip_honoured, healthy().obs())  # no flow to a per-MUX VIP
    assert v.status == Status.UNKNOWN and "replies of 0 recorded flows" in v.message
    no_per_mux = healthy()
    no_per_mux.lab = LAB.model_copy(update={"services": LAB.services[:2]})
    v = run_checker(check_per_mux_vip_honoured, no_per_mux.obs())
    assert v.status == Status.UNKNOWN and "per-MUX external VIP" in v.message


def test_rw4_a_client_port_reused_toward_another_vip_is_not_a_wrong_reply() -> None:
    """Seen in a real run: the same client address and port, first a stream to the per-MUX
    VIP, then a short connection to the web VIP; each flow's replies come from its own VIP."""
    run = healthy()
    run.conn(3, 12.0, end_t=21.0, dst=EDGE, sport=45000)
    run.conn(4, 21.5, end_t=22.0, sport=45000)
    for check in (check_per_mux_vip_honoured, check_replies_carry_vip):
        v = run_checker(check, run.obs())
        assert v.status == Status.PASS, v.message
    run.conn(5, 13.0, end_t=23.0, dst=EDGE, sport=45000, reply_src=("198.19.0.99", 80))
    assert run_checker(check_per_mux_vip_honoured, run.obs()).status == Status.FAIL


# --- RW-2 --------------------------------------------------------------------------------------


def test_rw2_checksums() -> None:
    assert run_checker(check_checksums_valid, healthy().obs()).status == Status.PASS
    run = healthy()
    run.add(
        encap(
            "mux1-out",
            "mux1",
            "server1",
            tcp(CLIENT, 40009, WEB, 80),
            15.0,
            16.0,
            l3_valid=7,
            l3_invalid=3,
        )
    )
    v = run_checker(check_checksums_valid, run.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert e.link is not None and e.link.startswith("mux1:dsrc-router egress")
    assert e.packet is not None and "inner tcp 198.18.1.2:40009" in e.packet
    assert "3 packets with an invalid IPv4 checksum" in e.message and e.time == 15.0


def test_rw2_ignores_crafted_windows_and_needs_verified_checksums() -> None:
    run = healthy()
    run.fault("crafted", 30.0, 40.0)
    run.add(record("client-in", tcp(WEB, 80, CLIENT, 40010), 31.0, 32.0, l4_valid=0, l4_invalid=10))
    assert run_checker(check_checksums_valid, run.obs()).status == Status.PASS
    # Replies whose checksums the taps could not judge (all offloaded): none verified.
    unverified = Run()
    unverified.conn(1, 10.0, end_t=20.0, wire=False)
    unverified.add(
        record(
            "client-in",
            tcp(WEB, 80, CLIENT, 40001),
            10.0,
            20.0,
            l3_valid=0,
            l4_valid=0,
            l4_unchecked=10,
        )
    )
    v = run_checker(check_checksums_valid, unverified.obs())
    assert v.status == Status.UNKNOWN
    assert v.missing == [
        "0 checksums verified in the replies from 198.19.0.10:80/tcp (web) to clients (1 needed)"
    ]
    # Packets that no client's traffic asked for decide nothing.
    bare = Run()
    bare.add(record("server1-out", tcp(WEB, 80, CLIENT, 1), 1.0, 2.0))
    v = run_checker(check_checksums_valid, bare.obs())
    assert v.status == Status.UNKNOWN
    assert v.missing == ["traffic to a VIP (no recorded flow addressed a service)"]


def test_rw1_rw2_rw3_dp1_need_a_reply_from_every_addressed_service() -> None:
    """The edge VIP was addressed and never answered: what the web VIP's replies show says
    nothing of the edge's rewrites."""
    run = healthy()
    run.conn(3, 12.0, dst=EDGE, end="connect-timeout", wire=False)
    for check in (
        check_replies_carry_vip,
        check_checksums_valid,
        check_no_server_address_leaks,
        check_return_path_bypasses_mux,
    ):
        v = run_checker(check, run.obs())
        assert v.status == Status.UNKNOWN, (check, v.message)
        assert v.missing == [
            "a reply from 198.19.0.12:80/tcp (edge) reaching a client: the traffic addressed it "
            "and no tap toward a client saw one"
        ]
        assert v.measured["services_answered"] == "1 of 2 addressed"


# --- RW-3 --------------------------------------------------------------------------------------


def test_rw3_server_address_leak() -> None:
    assert run_checker(check_no_server_address_leaks, healthy().obs()).status == Status.PASS
    run = healthy()
    run.conn(3, 12.0, end_t=22.0, reply_src=(SERVER_ADDR["server2"], 80))
    v = run_checker(check_no_server_address_leaks, run.obs())
    assert v.status == Status.FAIL
    assert "198.18.20.2 (server2's address) reached client 198.18.1.2" in v.evidence[0].message
    # ICMP quoting a rewritten packet leaks too.
    run = healthy()
    run.add(
        record(
            "client-in",
            FiveTuple(proto=1, src="198.18.1.254", dst=CLIENT),
            14.0,
            14.0,
            icmp_type=3,
            icmp_code=3,
            embedded=tcp(CLIENT, 40001, SERVER_ADDR["server1"], 8080),
        )
    )
    assert run_checker(check_no_server_address_leaks, run.obs()).status == Status.FAIL


def test_rw3_direct_conversations_are_not_leaks_and_unknowns() -> None:
    run = healthy()
    run.add(
        record(
            "client-out", tcp(CLIENT, 33000, SERVER_ADDR["server1"], 22), 5.0, 6.0, tcp_flags=0x12
        ),
        record("client-in", tcp(SERVER_ADDR["server1"], 22, CLIENT, 33000), 5.001, 6.0),
    )
    assert run_checker(check_no_server_address_leaks, run.obs()).status == Status.PASS
    run.drop_taps("client-in")
    assert run_checker(check_no_server_address_leaks, run.obs()).status == Status.UNKNOWN
    no_servers = healthy()
    no_servers.lab = LAB.model_copy(update={"roles": {"client": "client"}})
    v = run_checker(check_no_server_address_leaks, no_servers.obs())
    assert v.status == Status.UNKNOWN and "servers' addresses" in v.message


def _leak_answered(**client: Any) -> Run:
    """A SYN-ACK from server1's address to client port 40001 at t=5, and the client's record of
    that 5-tuple back (its kernel's RST, or what ``client`` says)."""
    run = healthy()
    s1 = SERVER_ADDR["server1"]
    kw: dict[str, Any] = {"first": 5.0004, "flags": 0x04, "sport": 40001, "dport": 8080, "dst": s1}
    kw.update(client)
    run.add(
        record("client-in", tcp(s1, 8080, CLIENT, 40001), 5.0, 5.0, tcp_flags=0x12),
        record(
            "client-out",
            tcp(CLIENT, kw["sport"], kw["dst"], kw["dport"]),
            kw["first"],
            kw["first"],
            tcp_flags=kw["flags"],
        ),
    )
    return run


@pytest.mark.parametrize(
    ("client", "why"),
    [
        ({}, "in no conversation"),  # its kernel's RST: not an opening (no SYN)
        ({"flags": 0x02}, "before the client began"),  # a SYN, but after the leak
        ({"flags": 0x02, "first": 4.0, "sport": 40002}, "in no conversation"),  # another port
        ({"flags": 0x02, "first": 4.0, "dport": 22}, "in no conversation"),
        ({"flags": 0x02, "first": 4.0, "dst": SERVER_ADDR["server2"]}, "in no conversation"),
    ],
)
def test_rw3_a_leak_the_client_answers_is_still_a_leak(client: dict[str, Any], why: str) -> None:
    """Conversations by 5-tuple and time: a leaked server address that the client's kernel
    answers (an RST), or that shares only addresses with what the client sent, exempts nothing."""
    v = run_checker(check_no_server_address_leaks, _leak_answered(**client).obs())
    assert v.status == Status.FAIL, v.message
    assert "198.18.20.1 (server1's address) reached client" in v.evidence[0].message
    assert why in v.evidence[0].message


def test_rw3_replies_in_conversations_the_client_began_pass() -> None:
    # The same 5-tuple, begun by the client's SYN before the reply: a direct conversation.
    v = run_checker(check_no_server_address_leaks, _leak_answered(flags=0x12, first=4.9).obs())
    assert v.status == Status.PASS, v.message
    # UDP to a server's port, answered by the server's ICMP port unreachable quoting it; an echo
    # request answered by the reply (ICMP has no ports).
    run = healthy()
    s1 = SERVER_ADDR["server1"]
    udp = FiveTuple(proto=17, src=CLIENT, dst=s1, sport=20000, dport=8080)
    run.add(
        record("client-out", udp, 6.0, 6.0),
        record(
            "client-in",
            FiveTuple(proto=1, src=s1, dst=CLIENT),
            6.001,
            6.001,
            icmp_type=3,
            icmp_code=3,
            embedded=udp,
        ),
        record(
            "client-out", FiveTuple(proto=1, src=CLIENT, dst=s1), 7.0, 7.0, icmp_type=8, icmp_code=0
        ),
        record(
            "client-in",
            FiveTuple(proto=1, src=s1, dst=CLIENT),
            7.001,
            7.001,
            icmp_type=0,
            icmp_code=0,
        ),
    )
    v = run_checker(check_no_server_address_leaks, run.obs())
    assert v.status == Status.PASS, v.message


def test_rw3_an_error_from_a_server_address_about_a_vip_conversation_is_a_leak() -> None:
    """The client began the quoted conversation, but with the VIP: an error whose source is a
    server's address (a stack that un-NATs the quoted header and not the outer source) leaks it,
    even though the same client also pinged that server directly."""
    run = healthy()
    s1 = SERVER_ADDR["server1"]
    run.add(
        record("client-out", tcp(CLIENT, 40001, WEB, 80), 10.0, 20.0, tcp_flags=0x12),
        record("client-out", FiveTuple(proto=1, src=CLIENT, dst=s1), 4.0, 4.0, icmp_type=8),
        record("client-in", FiveTuple(proto=1, src=s1, dst=CLIENT), 4.001, 4.001, icmp_type=0),
        record(
            "client-in",
            FiveTuple(proto=1, src=s1, dst=CLIENT),
            14.0,
            14.0,
            icmp_type=3,
            icmp_code=3,
            embedded=tcp(CLIENT, 40001, WEB, 80),  # flow 1, opened by the client's SYN at 10.0
        ),
    )
    v = run_checker(check_no_server_address_leaks, run.obs())
    assert v.status == Status.FAIL, v.message
    (e,) = v.evidence
    assert "about the client's conversation with 198.19.0.10, not with that address" in e.message


# --- RW-8 --------------------------------------------------------------------------------------

AF11, EF = 1 << 10, 1 << 46  # DSCP bitmaps
NOT_ECT, ECT1, ECT0, CE = 1, 1 << 1, 1 << 2, 1 << 3  # ECN bitmaps


def marked(
    client: tuple[int, int] = (AF11, ECT0), inner: tuple[int, int] | None = None, **mux: int
) -> Run:
    """healthy() plus a flow whose client packets carried ``client`` (DSCP, ECN bitmaps) and
    whose encapsulated packets leaving mux1 carried ``inner`` (default: the same), with the
    tap's counts ``mux`` (dscp_changed, ecn_bad)."""
    run = healthy()
    fwd = tcp(CLIENT, 40100, WEB, 80)
    d, e = inner if inner is not None else client
    run.add(
        record("client-out", fwd, 30.0, 31.0, dscp_seen=client[0], ecn_seen=client[1]),
        encap("mux1-out", "mux1", "server1", fwd, 30.0, 31.0, dscp_seen=d, ecn_seen=e, **mux),
    )
    return run


def test_rw8_marks_kept_pass_and_ce_on_an_ect_flow_is_a_routers_mark() -> None:
    v = run_checker(check_marks_kept, marked().obs())
    assert v.status == Status.PASS, v.message
    assert (v.measured["marked_packets"], v.measured["ecn_capable_packets"]) == (10, 10)
    v = run_checker(check_marks_kept, marked(inner=(AF11, ECT0 | CE)).obs())
    assert v.status == Status.PASS, v.message


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"dscp_changed": 3}, "3 of 10 encapsulated packets carried an outer DSCP other"),
        ({"ecn_bad": 2}, "neither the inner one's nor Not-ECT (RFC 6040"),
        ({"inner": (1, ECT0)}, "carried DSCP 0 and ECN ECT(0); the client sent DSCP 10"),
        ({"inner": (AF11 | EF, ECT0)}, "carried DSCP 10, 46"),
        (
            {"client": (AF11, NOT_ECT), "inner": (AF11, NOT_ECT | ECT0)},
            "the client sent DSCP 10 and ECN Not-ECT",
        ),
        ({"client": (AF11, NOT_ECT), "inner": (AF11, CE)}, "ECN CE"),  # CE on a Not-ECT flow
    ],
)
def test_rw8_changed_marks_fail(kw: dict[str, Any], why: str) -> None:
    v = run_checker(check_marks_kept, marked(**kw).obs())
    assert v.status == Status.FAIL, v.message
    assert why in v.evidence[0].message
    assert v.evidence[0].link is not None and "mux1" in v.evidence[0].link


def test_rw8_unknown_without_marked_traffic_or_marks_in_the_taps() -> None:
    v = run_checker(check_marks_kept, marked(client=(1, NOT_ECT)).obs())
    assert v.status == Status.UNKNOWN
    assert "0 packets with a DSCP mark" in v.message and "0 packets ECN-capable" in v.message
    v = run_checker(check_marks_kept, healthy().obs())  # records without the marks' fields
    assert v.status == Status.UNKNOWN and "DSCP and ECN in the taps' records" in v.message


# --- RW-5 --------------------------------------------------------------------------------------


def test_rw5_bytes_intact() -> None:
    v = run_checker(check_bytes_intact, healthy().obs())
    assert v.status == Status.PASS and v.measured["streams_completed"] == 2
    run = healthy()
    run.conn(3, 12.0, end_t=22.0, end="integrity")
    run.conn(4, 12.0, end_t=23.0, end="short")
    v = run_checker(check_bytes_intact, run.obs())
    assert v.status == Status.FAIL
    integrity, short = v.evidence
    assert "byte 5 differs from the stream pattern" in integrity.message
    assert integrity.time == 21.999 and integrity.flow is not None and "(flow 3)" in integrity.flow
    assert "closed after 10 verified bytes of 10 received, 1000 expected" in short.message


def test_rw5_unknown_without_completed_streams() -> None:
    run = Run()
    run.conn(1, 10.0, end_t=20.0, end="reset")
    run.conn(2, 10.0, end_t=20.0, end="deadline")  # cut by the generator: neither break nor done
    v = run_checker(check_bytes_intact, run.obs())
    assert v.status == Status.UNKNOWN and "0 streams completed" in v.message
    assert run_checker(check_bytes_intact, run.obs(history=False)).status == Status.UNKNOWN


# --- RW-6 / RW-7 -------------------------------------------------------------------------------


def _icmp(tap: str, type_: int, code: int, at: float, sport: int = 40001) -> TapFlow:
    about = tcp(WEB, 80, CLIENT, sport)  # the server's reply the error quotes
    icmp = FiveTuple(proto=1, src="198.18.1.254", dst=WEB)
    if tap.startswith("server"):
        server = tap.split("-")[0]
        return encap(
            tap, "mux1", server, icmp, at, at, icmp_type=type_, icmp_code=code, embedded=about
        )
    return record(tap, icmp, at, at, icmp_type=type_, icmp_code=code, embedded=about)


def test_rw6_uploads_and_packet_too_big() -> None:
    run = healthy()
    run.conn(3, 12.0, end_t=22.0, request_bytes=9000)
    assert run_checker(check_encap_overhead_handled, run.obs()).status == Status.PASS
    run.conn(4, 12.0, end_t=13.0, request_bytes=9000, end="timeout")
    v = run_checker(check_encap_overhead_handled, run.obs())
    assert v.status == Status.FAIL and "sending 9000 bytes to the VIP failed: timeout" in (
        v.evidence[0].message
    )
    ptb = healthy()
    ptb.add(_icmp("mux1-in", 3, 4, 15.0), _icmp("server1-in", 3, 4, 15.0))
    v = run_checker(check_encap_overhead_handled, ptb.obs())
    assert v.status == Status.PASS and v.measured["fragmentation_needed_judged"] == 1
    astray = healthy()
    astray.add(_icmp("mux1-in", 3, 4, 15.0), _icmp("server2-in", 3, 4, 15.0))
    v = run_checker(check_encap_overhead_handled, astray.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert "reached server2; the flow's server is server1" in e.message
    assert e.link is not None and e.link.startswith("mux1:dsrc-router ingress")
    v = run_checker(check_encap_overhead_handled, healthy().obs())
    assert v.status == Status.UNKNOWN
    assert "neither an established upload of at least 4096 bytes" in v.message
    # An upload that never connected sent no full-sized segment: it is no evidence either way.
    unconnected = healthy()
    unconnected.conn(3, 12.0, request_bytes=9000, end="connect-timeout")
    v = run_checker(check_encap_overhead_handled, unconnected.obs())
    assert v.status == Status.UNKNOWN and "(1 never connected)" in v.message


def test_rw6_the_error_is_judged_by_the_flow_it_quotes_not_by_the_client_port() -> None:
    """Seen in a real run (a false FAIL): one client port carried a short connection to the
    web VIP (server1) and, 0.1 s later, an upload to the edge VIP (server2; its flow recorded
    first); an error quoting the web VIP's reply reached server1, its server, during the upload."""
    run = Run()
    run.conn(1, 10.2, end_t=14.0, server="server2", dst=EDGE, sport=44043, request_bytes=9000)
    run.conn(2, 10.0, end_t=10.1, server="server1", sport=44043)
    run.add(_icmp("mux2-in", 3, 4, 10.7, 44043), _icmp("server1-in", 3, 4, 10.7, 44043))
    v = run_checker(check_encap_overhead_handled, run.obs())
    assert v.status == Status.PASS, v.message
    assert v.measured["fragmentation_needed_judged"] == 1
    astray = Run()
    astray.conn(1, 10.2, end_t=14.0, server="server2", dst=EDGE, sport=44043)
    astray.conn(2, 10.0, end_t=10.1, server="server1", sport=44043)
    astray.add(_icmp("mux2-in", 3, 4, 10.7, 44043), _icmp("server2-in", 3, 4, 10.7, 44043))
    v = run_checker(check_encap_overhead_handled, astray.obs())
    assert v.status == Status.FAIL
    assert "reached server2; the flow's server is server1" in v.evidence[0].message


def test_rw6_without_histories_the_server_is_the_one_the_quoted_5_tuple_reached() -> None:
    """No history names the servers (packets only): the client port's flows to two VIPs reached
    server1 and server2; an error quoting the web VIP's reply belongs to server1's."""
    run = Run()
    run.wire(CLIENT, 44043, WEB, 80, 10.0, 12.0, server="server1")
    run.wire(CLIENT, 44043, EDGE, 80, 10.0, 12.0, server="server2")
    run.add(_icmp("mux2-in", 3, 4, 11.0, 44043), _icmp("server1-in", 3, 4, 11.0, 44043))
    v = run_checker(check_encap_overhead_handled, run.obs())
    assert v.status == Status.PASS, v.message
    assert v.measured["fragmentation_needed_judged"] == 1


def test_rw7_icmp_errors_reach_the_flow_server() -> None:
    run = healthy()
    run.add(_icmp("mux1-in", 11, 0, 15.0), _icmp("server1-in", 11, 0, 15.0))
    assert run_checker(check_icmp_errors_reach_flow_server, run.obs()).status == Status.PASS
    lost = healthy()
    lost.add(_icmp("mux1-in", 3, 3, 15.0))
    v = run_checker(check_icmp_errors_reach_flow_server, lost.obs())
    assert v.status == Status.FAIL and "reached no server" in v.evidence[0].message
    v = run_checker(check_icmp_errors_reach_flow_server, healthy().obs())
    assert v.status == Status.UNKNOWN and "no ICMP error quoting a VIP flow" in v.message
    # A packet-too-big is RW-6's, not RW-7's.
    ptb = healthy()
    ptb.add(_icmp("mux1-in", 3, 4, 15.0))
    assert run_checker(check_icmp_errors_reach_flow_server, ptb.obs()).status == Status.UNKNOWN


def test_rw7_an_error_seen_at_both_ends_of_the_link_into_a_mux_counts_once() -> None:
    """Seen with Katran (a time-exceeded error XDP_PASSed to the MUX's own stack): the router's
    egress toward the MUX and the MUX's ingress both recorded the error; it is one error."""
    from dsrconform.observe.taps import TapInfo

    run = healthy()
    run.taps["router-to-mux1"] = TapInfo(
        tap="router-to-mux1",
        node="router",
        ifname="dsrc-mux1",
        link="link-mux1",
        peer="mux1",
        direction="egress",
        started=0.0,
        stopped=1000.0,
    )
    lost = _icmp("mux1-in", 11, 0, 15.0)
    run.add(lost, lost.model_copy(update={"tap": "router-to-mux1"}))
    v = run_checker(check_icmp_errors_reach_flow_server, run.obs())
    assert v.status == Status.FAIL
    assert v.measured["icmp_error_judged"] == 1 and len(v.evidence) == 1
    assert v.message.startswith("1 ICMP errors did not reach")


# --- DP-1 / DP-2 -------------------------------------------------------------------------------


def test_dp1_no_reply_crosses_a_mux() -> None:
    v = run_checker(check_return_path_bypasses_mux, healthy().obs())
    assert v.status == Status.PASS and v.measured["mux_link_packets"] == 40
    run = healthy()
    run.add(record("mux2-in", tcp(WEB, 80, CLIENT, 40001), 13.0, 14.0))
    v = run_checker(check_return_path_bypasses_mux, run.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert e.message == "packets to client 198.18.1.2 crossed mux2's link"
    assert e.link == "mux2:dsrc-router ingress (link-mux2 from router)" and e.time == 13.0


def test_dp1_encapsulated_reply_and_flood_sources_count() -> None:
    run = healthy()
    run.add(encap("mux1-out", "mux1", "server1", tcp(WEB, 80, "198.18.203.9", 1234), 1.0, 2.0))
    v = run_checker(check_return_path_bypasses_mux, run.obs())
    assert v.status == Status.FAIL and "client 198.18.203.9" in v.evidence[0].message


def test_dp1_unknown_cases() -> None:
    run = healthy()
    run.drop_taps("mux2")
    v = run_checker(check_return_path_bypasses_mux, run.obs())
    assert v.status == Status.UNKNOWN and "no tap on a MUX's link for mux2" in v.message
    run = healthy()
    run.overflow("mux1-in")
    assert run_checker(check_return_path_bypasses_mux, run.obs()).status == Status.UNKNOWN
    v = run_checker(check_return_path_bypasses_mux, Run().obs())
    assert v.status == Status.UNKNOWN and "the MUXes carried none" in v.message
    v = run_checker(check_return_path_bypasses_mux, healthy().obs(taps=False))
    assert v.status == Status.UNKNOWN and "link taps" in v.message


def test_dp2_mux_load_follows_inbound() -> None:
    small = {"min_inbound_bytes": 100}
    v = run_checker(check_mux_load_follows_inbound, healthy().obs(), small)
    assert v.status == Status.PASS
    assert {k: v.measured[k] for k in ("inbound_bytes", "mux_received_bytes", "reply_bytes")} == {
        "inbound_bytes": 2000,
        "mux_received_bytes": 2000,
        "reply_bytes": 10000,
    }
    assert "mux1:dsrc-router ingress" in str(v.measured["mux_bytes_tapped_at"])
    run = healthy()
    run.add(record("mux1-in", tcp(WEB, 80, CLIENT, 40001), 13.0, 14.0, packets=30))
    run.add(record("mux1-in", tcp("198.18.10.2", 179, MUX_ADDR["mux1"], 40000), 1, 99, packets=99))
    v = run_checker(check_mux_load_follows_inbound, run.obs(), small)
    assert v.status == Status.FAIL
    summary, worst = v.evidence[:2]
    assert "received 5000 bytes, more than (1 + 0.1) x 2000" in summary.message  # BGP excluded
    assert worst.packet is not None and worst.packet.startswith("tcp 198.19.0.10:80 > 198.18.1.2")


def test_dp2_counts_a_link_tapped_at_both_ends_once() -> None:
    """With a tap on every interface, the router's end of the client link sees the same
    packets as the client's end, and the MUX's own ingress (after its XDP program) sees less
    than the router's egress toward it: the sending end is counted, once."""
    from dsrconform.observe.taps import TapInfo

    run = healthy()
    both = [("router-from-client", "client-out", "client", "link-client")]
    both += [(f"router-to-{m}", f"{m}-in", m, f"link-{m}") for m in ("mux1", "mux2")]
    for name, twin, node, link in both:
        ingress = name.startswith("router-from")
        run.taps[name] = TapInfo(
            tap=name, node="router", ifname=f"dsrc-{node}", link=link, peer=node,
            direction="ingress" if ingress else "egress", started=0.0, stopped=1000.0,
        )  # fmt: skip
        run.tap_records += [r.model_copy(update={"tap": name}) for r in run.tap_records
                            if r.tap == twin]  # fmt: skip
    v = run_checker(check_mux_load_follows_inbound, run.obs(), {"min_inbound_bytes": 100})
    assert v.status == Status.PASS
    assert (v.measured["inbound_bytes"], v.measured["mux_received_bytes"]) == (2000, 2000)


def test_dp2_unknown_cases() -> None:
    v = run_checker(check_mux_load_follows_inbound, healthy().obs())
    assert v.status == Status.UNKNOWN and "clients sent 2000 bytes to VIPs" in v.message
    run = healthy()
    run.add(record("mux1-in", tcp(WEB, 80, CLIENT, 40001), 13.0, 14.0, packets=300))
    run.overflow("client-out")  # inbound undercounted: no decision, not even FAIL
    v = run_checker(check_mux_load_follows_inbound, run.obs(), {"min_inbound_bytes": 100})
    assert v.status == Status.UNKNOWN and "client:dsrc-router egress" in v.message
