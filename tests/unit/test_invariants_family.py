"""Checkers are family-agnostic: the IPv6 twin of a synthetic run (tests/unit/family6.py) gets
the verdict its IPv4 original gets, for AF, RW, SC, RB and DP checkers, PASS and FAIL alike;
RW-6 judges ICMPv6 packet-too-big for IPv6 flows as it judges fragmentation-needed for IPv4."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dsrconform.invariants import Status, Verdict, run_checker
from dsrconform.invariants.affinity import check_connection_affinity
from dsrconform.invariants.path import check_return_path_bypasses_mux
from dsrconform.invariants.rewrite import (
    check_encap_overhead_handled,
    check_icmp_errors_reach_flow_server,
    check_no_server_address_leaks,
    check_replies_carry_vip,
)
from dsrconform.invariants.robust import check_decap_only_from_muxes, check_fragments_consistent
from dsrconform.invariants.scale import check_drain, check_scale_out_breaks_nothing
from tests.unit.family6 import ipv6_run, twin, v6
from tests.unit.observations_builder import (
    CLIENT,
    MUX_ADDR,
    SERVER_ADDR,
    SERVERS,
    WEB,
    Run,
    encap,
    tcp,
)
from tests.unit.test_invariants_affinity import three_conns
from tests.unit.test_invariants_faults import drain_run, mux_fail_run
from tests.unit.test_invariants_rewrite_path import _icmp, healthy
from tests.unit.test_invariants_robust import foreign_ipip, forwarding, frag

Checker = Callable[..., Verdict]


def af1_split() -> Run:
    run = three_conns()
    run.add(encap("server2-in", "mux2", "server2", tcp(CLIENT, 40001, WEB, 80), 15.5, 16.0))
    return run


def rw1_wrong_source() -> Run:
    run = healthy()
    run.conn(3, 12.0, end_t=22.0, reply_src=(SERVER_ADDR["server3"], 8080))
    return run


def with_errors(*errors: tuple[str, int, int]) -> Callable[[], Run]:
    def build() -> Run:
        run = healthy()
        run.add(*(_icmp(tap, t, c, 15.0) for tap, t, c in errors))
        return run

    return build


def sc1(broken: bool) -> Callable[[], Run]:
    def build() -> Run:
        run = mux_fail_run()
        run.faults = []
        run.fault("backend-add", 100.0, 101.0, backends_before=SERVERS[:2], backends_after=SERVERS)
        run.fault("mux-add", 120.0, 121.0, target="mux3")
        if broken:
            run.conn(3, 60.0, end_t=125.0, end="reset")
        return run

    return build


def sc3_late() -> Run:
    run = drain_run()
    run.conn(20, 108.0, end_t=109.0, server="server2")
    return run


def rb3(*parts: tuple[str, str | None, int]) -> Callable[[], Run]:
    def build() -> Run:
        run = forwarding()
        run.add(*(frag(tap, server, n) for tap, server, n in parts))
        return run

    return build


def rb4(answered: bool) -> Callable[[], Run]:
    def build() -> Run:
        run = Run()
        run.conn(1, 10.0, end_t=20.0)
        foreign_ipip(run, answered=answered)
        return run

    return build


SCENARIOS: list[tuple[str, Checker, Callable[[], Run], Status]] = [
    ("AF-1 pass", check_connection_affinity, three_conns, Status.PASS),
    ("AF-1 split", check_connection_affinity, af1_split, Status.FAIL),
    ("RW-1 pass", check_replies_carry_vip, healthy, Status.PASS),
    ("RW-1 server source", check_replies_carry_vip, rw1_wrong_source, Status.FAIL),
    ("RW-3 leak", check_no_server_address_leaks, rw1_wrong_source, Status.FAIL),
    (
        "RW-6 ptb delivered",
        check_encap_overhead_handled,
        with_errors(("mux1-in", 3, 4), ("server1-in", 3, 4)),
        Status.PASS,
    ),
    (
        "RW-6 ptb astray",
        check_encap_overhead_handled,
        with_errors(("mux1-in", 3, 4), ("server2-in", 3, 4)),
        Status.FAIL,
    ),
    (
        "RW-7 time exceeded",
        check_icmp_errors_reach_flow_server,
        with_errors(("mux1-in", 11, 0), ("server1-in", 11, 0)),
        Status.PASS,
    ),
    (
        "RW-7 unreachable lost",
        check_icmp_errors_reach_flow_server,
        with_errors(("mux1-in", 3, 3)),
        Status.FAIL,
    ),
    (
        "RW-7 leaves ptb to RW-6",
        check_icmp_errors_reach_flow_server,
        with_errors(("mux1-in", 3, 4)),
        Status.UNKNOWN,
    ),
    ("SC-1 pass", check_scale_out_breaks_nothing, sc1(False), Status.PASS),
    ("SC-1 reset", check_scale_out_breaks_nothing, sc1(True), Status.FAIL),
    ("SC-3 pass", check_drain, drain_run, Status.PASS),
    ("SC-3 drained server answered", check_drain, sc3_late, Status.FAIL),
    ("RB-3 consistent", check_fragments_consistent, rb3(("mux1-in", None, 4)), Status.PASS),
    (
        "RB-3 split",
        check_fragments_consistent,
        rb3(("mux1-in", None, 4), ("server1-in", "server1", 2), ("server2-in", "server2", 2)),
        Status.FAIL,
    ),
    ("RB-4 unanswered", check_decap_only_from_muxes, rb4(False), Status.PASS),
    ("RB-4 answered", check_decap_only_from_muxes, rb4(True), Status.FAIL),
    ("DP-1 pass", check_return_path_bypasses_mux, healthy, Status.PASS),
]


def numbers(v: Verdict) -> dict[str, Any]:
    """The verdict's measured numbers (texts name addresses, which differ by family)."""
    return {k: x for k, x in v.measured.items() if isinstance(x, int | float)}


@pytest.mark.parametrize(
    ("checker", "build", "expected"),
    [pytest.param(c, b, e, id=name) for name, c, b, e in SCENARIOS],
)
def test_the_ipv6_twin_gets_the_ipv4_verdict(
    checker: Checker, build: Callable[[], Run], expected: Status
) -> None:
    run = build()
    six = ipv6_run(run)
    assert ":" in six.lab.services[0].vip and all(":" in r.src for r in six.tap_records)
    v4 = run_checker(checker, run.obs())
    v6_ = run_checker(checker, six.obs())
    assert v4.status == expected, v4.message
    assert v6_.status == expected, f"IPv6: {v6_.message}"
    assert len(v6_.evidence) == len(v4.evidence)
    assert numbers(v6_) == numbers(v4)


def test_ipv6_evidence_names_ipv6_addresses_with_bracketed_ports() -> None:
    v = run_checker(check_connection_affinity, ipv6_run(af1_split()).obs())
    (e,) = v.evidence
    assert e.flow == f"tcp client [{v6(CLIENT)}]:40001 > [{v6(WEB)}]:80"
    assert e.packet == (
        f"ip6 {v6(MUX_ADDR['mux2'])} > {v6(SERVER_ADDR['server2'])} "
        f"[inner tcp [{v6(CLIENT)}]:40001 > [{v6(WEB)}]:80], 10 packets/1000 bytes"
    )


def test_rw6_ipv6_only_packet_too_big_counts_not_other_icmpv6_errors() -> None:
    """In IPv6, ICMPv6 type 2 is the path-MTU error; an ICMPv6 destination unreachable
    (type 1) reaching the wrong server is RW-7's business, never RW-6's."""
    run = ipv6_run(with_errors(("mux1-in", 3, 4), ("server1-in", 3, 4))())
    v = run_checker(check_encap_overhead_handled, run.obs())
    assert v.status == Status.PASS and v.measured["fragmentation_needed_judged"] == 1
    ptb = [r for r in run.tap_records if r.icmp_type is not None]
    assert {(r.payload.proto, r.icmp_type, r.icmp_code) for r in ptb} == {(58, 2, 0)}
    other = ipv6_run(with_errors(("mux1-in", 3, 3), ("server2-in", 3, 3))())
    v = run_checker(check_encap_overhead_handled, other.obs())
    assert v.status == Status.UNKNOWN, "an ICMPv6 unreachable judged as packet-too-big"
    # ICMPv4's type 3 code 4 means nothing in ICMPv6 (type 3 is time exceeded).
    lookalike = ipv6_run(healthy())
    err = twin(_icmp("mux1-in", 11, 0, 15.0))  # ICMPv6 type 3 (time exceeded) ...
    lookalike.add(err.model_copy(update={"icmp_code": 4}), err)  # ... codes 4 and 0
    assert (err.proto, err.icmp_type) == (58, 3)
    assert run_checker(check_encap_overhead_handled, lookalike.obs()).status == Status.UNKNOWN
