"""RB checkers on synthetic observations: PASS, FAIL with evidence, UNKNOWN."""

from __future__ import annotations

from dsrconform.invariants import Status, run_checker
from dsrconform.invariants.robust import (
    check_decap_only_from_muxes,
    check_fragments_consistent,
    check_hostile_packets_harmless,
    check_non_vip_untouched,
)
from dsrconform.observe.taps import FiveTuple, TapFlow
from tests.unit.observations_builder import (
    CLIENT,
    MUX_ADDR,
    SERVER_ADDR,
    UDP_VIP,
    WEB,
    Run,
    encap,
    record,
    tap_info,
    tcp,
)


def crafted_run(*, failing: int = 0) -> Run:
    """Crafted packets from t=100 to 110; 20 legitimate connections from 100 to 119.5."""
    run = Run()
    run.fault("crafted", 100.0, 110.0)
    for i in range(20):
        t = 100.0 + i
        run.conn(i, t, end_t=t + 0.2, end="refused" if i < failing else "closed")
    return run


# --- RB-1 --------------------------------------------------------------------------------------


def test_rb1_pass() -> None:
    v = run_checker(check_hostile_packets_harmless, crafted_run().obs())
    assert v.status == Status.PASS and v.measured["legitimate_attempts"] == 20


def test_rb1_counts_each_attempt_once_over_overlapping_windows() -> None:
    run = crafted_run(failing=1)
    run.fault("crafted", 105.0, 106.0)  # a second sending: attempts from 105 on are in both
    v = run_checker(check_hostile_packets_harmless, run.obs())
    assert v.measured["legitimate_attempts"] == 20 and v.measured["succeeded"] == 19


def test_rb1_fail_on_malformed_emission() -> None:
    run = crafted_run()
    run.taps["mux1-out"] = tap_info("mux1-out", malformed=3)
    v = run_checker(check_hostile_packets_harmless, run.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert e.message == "mux1 emitted 3 malformed packets"
    assert e.link == "mux1:dsrc-router egress (link-mux1 to router)"


def test_rb1_fail_when_legitimate_traffic_stops() -> None:
    v = run_checker(check_hostile_packets_harmless, crafted_run(failing=5).obs())
    assert v.status == Status.FAIL and len(v.evidence) == 5
    assert v.evidence[0].message.endswith("refused") and v.evidence[0].time == 100.0


def test_rb1_unknown_cases() -> None:
    run = Run()
    run.conn(1, 10.0, end_t=11.0)
    run.fault("crafted", 100.0, 110.0)
    v = run_checker(check_hostile_packets_harmless, run.obs())
    assert v.status == Status.UNKNOWN and "no legitimate connection was attempted" in v.message
    v = run_checker(check_hostile_packets_harmless, Run().obs())
    assert v.status == Status.UNKNOWN
    no_window = crafted_run()
    no_window.faults = []
    v = run_checker(check_hostile_packets_harmless, no_window.obs())
    assert v.status == Status.UNKNOWN and "a crafted window" in v.message


# --- RB-2 --------------------------------------------------------------------------------------


def test_rb2_non_vip_flows_pass_and_encapsulated_non_vip_fails() -> None:
    run = Run()
    run.conn(1, 10.0, end_t=11.0, dst=MUX_ADDR["mux1"], dport=22, wire=False)
    run.conn(2, 10.0, end_t=11.0)
    v = run_checker(check_non_vip_untouched, run.obs())
    assert v.status == Status.PASS and v.measured["non_vip_flows"] == 1
    run.add(encap("mux1-out", "mux1", "server2", tcp(CLIENT, 40007, "198.18.20.254", 22), 12, 13))
    v = run_checker(check_non_vip_untouched, run.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert e.message == "mux1 encapsulated packets to 198.18.20.254, which is no VIP"
    assert e.packet is not None and "inner tcp 198.18.1.2:40007 > 198.18.20.254:22" in e.packet


def test_rb2_fail_when_a_non_vip_flow_fails_and_unknown_without_non_vip_traffic() -> None:
    run = Run()
    run.conn(1, 10.0, end="refused", dst=MUX_ADDR["mux2"], dport=22, wire=False)
    v = run_checker(check_non_vip_untouched, run.obs())
    assert v.status == Status.FAIL and v.evidence[0].message == "non-VIP flow failed: refused"
    vip_only = Run()
    vip_only.conn(1, 10.0, end_t=11.0)
    v = run_checker(check_non_vip_untouched, vip_only.obs())
    assert v.status == Status.UNKNOWN and "no non-VIP flow in the histories" in v.message


# --- RB-3 --------------------------------------------------------------------------------------


def frag(tap: str, server: str | None, n: int, at: float = 10.0) -> TapFlow:
    udp = FiveTuple(proto=17, src=CLIENT, dst=UDP_VIP)  # non-first fragments: no ports
    if server is None:
        return record(tap, udp, at, at + 0.01, packets=n, fragments=n)
    return encap(tap, "mux1", server, udp, at, at + 0.01, packets=n, fragments=n)


def forwarding() -> Run:
    """A run whose MUXes forward one connection (RB-3's fixtures had no VIP traffic at all,
    so a stack forwarding nothing passed them)."""
    run = Run()
    run.conn(1, 5.0, end_t=6.0)
    return run


def test_rb3_fragments() -> None:
    run = forwarding()
    run.add(frag("mux1-in", None, 4), frag("server1-in", "server1", 4))
    v = run_checker(check_fragments_consistent, run.obs())
    assert v.status == Status.PASS and v.measured["fragmented_streams"] == 1
    dropped = forwarding()
    dropped.add(frag("mux1-in", None, 4))
    assert run_checker(check_fragments_consistent, dropped.obs()).status == Status.PASS
    split = forwarding()
    split.add(
        frag("mux1-in", None, 4),
        frag("server1-in", "server1", 2),
        frag("server2-in", "server2", 2),
    )
    v = run_checker(check_fragments_consistent, split.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert "reached several servers: server1 (2), server2 (2)" in e.message
    assert e.link is not None and e.link.startswith("mux1:dsrc-router ingress")
    partial = forwarding()
    partial.add(frag("mux1-in", None, 4), frag("server1-in", "server1", 3))
    v = run_checker(check_fragments_consistent, partial.obs())
    assert v.status == Status.FAIL and "3 of 4 fragments" in v.evidence[0].message


def test_rb3_unknown_without_fragments() -> None:
    run = Run()
    run.conn(1, 10.0, end_t=11.0)
    v = run_checker(check_fragments_consistent, run.obs())
    assert v.status == Status.UNKNOWN and "no fragment" in v.message


def test_rb3_unknown_when_no_mux_forwards_anything() -> None:
    """Fragments that reach no server, from MUXes that forward nothing: a stack without a data
    plane drops them all "consistently"."""
    run = Run()
    run.add(frag("mux1-in", None, 4))
    v = run_checker(check_fragments_consistent, run.obs())
    assert v.status == Status.UNKNOWN
    assert v.missing == ["VIP traffic forwarded by a MUX toward a server: the taps saw none"]


# --- RB-4 --------------------------------------------------------------------------------------


def foreign_ipip(run: Run, answered: bool) -> None:
    inner = tcp("198.18.1.3", 41000, WEB, 80)
    outer = FiveTuple(proto=4, src=CLIENT, dst=SERVER_ADDR["server1"])
    run.add(record("server1-in", outer, 30.0, 30.0, packets=1, inner=inner))
    if answered:
        run.add(
            record(
                "server1-out",
                tcp(WEB, 80, "198.18.1.3", 41000),
                30.001,
                30.001,
                packets=1,
                tcp_flags=0x12,
            )
        )


def test_rb4_decap_only_from_muxes() -> None:
    run = Run()
    run.conn(1, 10.0, end_t=20.0)
    foreign_ipip(run, answered=False)
    v = run_checker(check_decap_only_from_muxes, run.obs())
    assert v.status == Status.PASS and v.measured["foreign_encapsulated_records"] == 1
    run = Run()
    run.conn(1, 10.0, end_t=20.0)
    foreign_ipip(run, answered=True)
    v = run_checker(check_decap_only_from_muxes, run.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert "server1 accepted IPIP-encapsulated packets from 198.18.1.2 (not a MUX)" in e.message
    assert e.packet is not None and "flags SA" in e.packet
    assert e.link == "server1:dsrc-router egress (link-server1 to router)" and e.time == 30.001


def test_rb4_unknown_cases() -> None:
    run = Run()
    run.conn(1, 10.0, end_t=20.0)  # MUX-sent IPIP only
    v = run_checker(check_decap_only_from_muxes, run.obs())
    assert (
        v.status == Status.UNKNOWN and "no encapsulated packet from a non-MUX source" in v.message
    )
    blind = Run()
    foreign_ipip(blind, answered=False)
    blind.drop_taps("server1-out", "server2-out", "server3-out")
    v = run_checker(check_decap_only_from_muxes, blind.obs())
    assert v.status == Status.UNKNOWN and "server's sending side" in v.message


def test_rb4_unknown_when_the_servers_answer_nothing_from_the_muxes_either() -> None:
    """A server that decapsulates nothing leaves the foreign packets unanswered too: no PASS
    until an encapsulated packet from a MUX was seen answered."""
    run = Run()
    run.conn(1, 10.0, end_t=20.0, wire=False)
    run.add(encap("server1-in", "mux1", "server1", tcp(CLIENT, 40001, WEB, 80), 10.0, 20.0))
    foreign_ipip(run, answered=False)
    v = run_checker(check_decap_only_from_muxes, run.obs())
    assert v.status == Status.UNKNOWN
    assert v.missing == [
        "an answer to a packet in IPIP that a MUX sent a server: the servers were never "
        "seen decapsulating the stack's own IPIP traffic, so an unanswered foreign one says "
        "nothing"
    ]
    foreign_ipip(run, answered=True)  # a violation seen is a FAIL all the same
    assert run_checker(check_decap_only_from_muxes, run.obs()).status == Status.FAIL


def test_rb2_unknown_when_no_mux_forwards_vip_traffic() -> None:
    """Non-VIP flows that succeed past MUXes forwarding nothing show no data plane leaving
    them alone."""
    run = Run()
    run.conn(1, 10.0, end_t=11.0, dst=MUX_ADDR["mux1"], dport=22, wire=False)
    v = run_checker(check_non_vip_untouched, run.obs())
    assert v.status == Status.UNKNOWN
    assert v.missing == ["VIP traffic forwarded by a MUX toward a server: the taps saw none"]
