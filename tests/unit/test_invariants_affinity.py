"""AF checkers on synthetic observations: PASS, FAIL with evidence, UNKNOWN."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsrconform.invariants import Status, run_checker
from dsrconform.invariants.affinity import (
    check_connection_affinity,
    check_spread_loosely_bounded,
    check_spread_within_bound,
    check_udp_affinity,
)
from dsrconform.observe.observations import ServiceFacts
from tests.unit.observations_builder import (
    CLIENT,
    LAB,
    SERVERS,
    WEB,
    Run,
    encap,
    probe_tuple,
    tcp,
)


def three_conns() -> Run:
    run = Run()
    for i, server in enumerate(SERVERS, 1):
        run.conn(i, 10.0 + i, end_t=20.0 + i, server=server, mux="mux1" if i % 2 else "mux2")
    return run


def test_af1_pass() -> None:
    v = run_checker(check_connection_affinity, three_conns().obs())
    assert v.status == Status.PASS and v.measured["connections_judged"] == 3


def test_af1_fail_when_a_connection_reaches_two_servers() -> None:
    run = three_conns()
    run.add(encap("server2-in", "mux2", "server2", tcp(CLIENT, 40001, WEB, 80), 15.5, 16.0))
    v = run_checker(check_connection_affinity, run.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert "reached 2 servers: server1 (from t=11.000), server2 (from t=15.500)" in e.message
    assert e.flow == "tcp client 198.18.1.2:40001 > 198.19.0.10:80"
    assert e.link is not None and e.link.startswith("server2:dsrc-router ingress")
    assert e.time == 15.5


def test_af1_fail_when_the_history_names_another_server() -> None:
    run = three_conns()
    run.conn(9, 12.0, end_t=22.0, server="server3", wire=False)
    run.wire(CLIENT, 40009, WEB, 80, 12.0, 22.0, server="server1")
    v = run_checker(check_connection_affinity, run.obs())
    assert v.status == Status.FAIL
    assert "the history says server3 answered, but the packets reached server1" in (
        v.evidence[0].message
    )


def test_af1_a_client_port_reused_toward_another_vip_is_another_connection() -> None:
    """Seen in a real run: one client address and port, a stream to the per-MUX VIP on one
    server and, overlapping it, a short connection to the web VIP on another: two flows."""
    from tests.unit.observations_builder import EDGE

    run = three_conns()
    run.conn(4, 30.0, end_t=40.0, server="server1", dst=EDGE, sport=45000)
    run.conn(5, 39.5, end_t=39.8, server="server2", sport=45000)
    v = run_checker(check_connection_affinity, run.obs())
    assert v.status == Status.PASS, v.message
    assert v.measured["connections_judged"] == 5
    run.add(encap("server3-in", "mux1", "server3", tcp(CLIENT, 45000, EDGE, 80), 35.0, 35.1))
    assert run_checker(check_connection_affinity, run.obs()).status == Status.FAIL


def test_af1_a_flood_aggregated_by_the_tap_is_not_a_connection() -> None:
    """Taps record a SYN flood's spoofed sources as one network address with port 0; the MUX
    spreads those SYNs over every server, which says nothing about any connection."""
    run = three_conns()
    for server in SERVERS:
        run.add(encap(f"{server}-in", "mux1", server, tcp("198.18.200.0", 0, WEB, 80), 30.0, 40.0))
    v = run_checker(check_connection_affinity, run.obs())
    assert v.status == Status.PASS, v.message
    assert v.measured["connections_judged"] == 3


def test_af1_leaves_out_connections_overlapping_a_backend_change() -> None:
    run = three_conns()
    run.conn(4, 30.0, end_t=40.0, server="server1")
    run.add(encap("server2-in", "mux1", "server2", tcp(CLIENT, 40004, WEB, 80), 35.5, 36.0))
    run.fault("backend-add", 35.0, 35.2, backends_before=SERVERS[:2], backends_after=SERVERS)
    v = run_checker(check_connection_affinity, run.obs())
    assert v.status == Status.PASS and v.measured["tap_flows_overlapping_backend_change"] == 1
    assert v.measured["connections_judged"] == 3


def reused_tuple_run(*, split: bool) -> Run:
    """A client reuses a 5-tuple after a backend change: the taps have one record per server
    for both connections. ``split``: the second connection's SYN reached server2 and its ACK
    the old entry's server1 (a MUX whose SYNs skip the connection table)."""
    run = three_conns()
    t = tcp(CLIENT, 45000, WEB, 80)
    run.fault("backend-add", 25.0, 25.2, backends_before=SERVERS[:2], backends_after=SERVERS)
    run.conn(4, 10.0, end_t=20.0, server="server1", sport=45000, wire=False)
    run.conn(5, 30.0, end_t=30.05, end="reset" if split else "closed",
             server="server2" if split else "server1", sport=45000, wire=False)  # fmt: skip
    if split:
        run.add(encap("server1-in", "mux1", "server1", t, 10.0, 30.02))
        run.add(encap("server2-in", "mux1", "server2", t, 30.001, 30.001, packets=1))
    else:
        run.add(encap("server1-in", "mux1", "server1", t, 10.0, 30.05))
    return run


def assert_flow5_split(run: Run, syn_t: float, ack_t: float) -> None:
    """AF-1 FAILs ``run`` with one piece of evidence: connection 5's SYN reached server2 at
    ``syn_t``, the rest server1 from ``ack_t``."""
    v = run_checker(check_connection_affinity, run.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert e.message == (
        "packets of one connection on a reused 5-tuple reached 2 servers: server2 (at "
        f"t={syn_t:.3f}), server1 (at t={ack_t:.3f})"
    )
    assert e.time == ack_t and e.flow is not None and e.flow.endswith("(flow 5)")


def assert_misnamed(run: Run, flow: int, span: tuple[float, float], *, reached: str) -> None:
    """With the history of reused-tuple connection ``flow`` saying server3 answered, AF-1 FAILs
    ``run``: the packets reached ``reached`` (so that connection was judged)."""
    run.records = [r for r in run.records if getattr(r, "flow", None) != flow]
    run.conn(flow, span[0], end_t=span[1], server="server3", sport=45000, wire=False)
    v = run_checker(check_connection_affinity, run.obs())
    assert v.status == Status.FAIL
    assert v.evidence[0].message == (
        f"the history says server3 answered, but the packets reached {reached}"
    )


def test_af1_judges_each_connection_of_a_tuple_reused_across_a_change() -> None:
    v = run_checker(check_connection_affinity, reused_tuple_run(split=False).obs())
    assert v.status == Status.PASS and v.measured["connections_judged"] == 4
    assert_flow5_split(reused_tuple_run(split=True), 30.001, 30.02)
    # The reused tuple's first connection went to server1 before the change: not a split.
    run = reused_tuple_run(split=True)
    run.records = [r for r in run.records if getattr(r, "flow", None) != 5]
    v = run_checker(check_connection_affinity, run.obs())
    assert v.status == Status.PASS and v.measured["tap_flows_overlapping_backend_change"] == 0


def test_af1_a_reused_tuple_moving_legitimately_between_connections_is_no_split() -> None:
    """The next connection on the tuple starts within the index's slack after the last one
    ended, on another server (its MUX had no entry): each connection stays on one server."""
    run = three_conns()
    t = tcp(CLIENT, 45000, WEB, 80)
    run.fault("backend-add", 5.0, 5.2, backends_before=SERVERS[:2], backends_after=SERVERS)
    run.conn(4, 1.0, end_t=2.0, server="server1", sport=45000, wire=False)
    run.conn(6, 10.0, end_t=20.0, server="server1", sport=45000, wire=False)
    run.conn(7, 20.5, end_t=30.0, server="server2", sport=45000, wire=False)
    run.add(encap("server1-in", "mux1", "server1", t, 1.0, 20.0))
    run.add(encap("server2-in", "mux2", "server2", t, 20.5, 30.0))
    v = run_checker(check_connection_affinity, run.obs())
    assert v.status == Status.PASS, v.evidence
    # The history naming another server than the packets reached is caught here too.
    assert_misnamed(run, 7, (20.5, 30.0), reached="server2")


def split_mid_run(*, spans: bool, split: bool = True) -> Run:
    """What the ``syn-skips-conn-table`` mutant does to a reused tuple in the scale scenario:
    the tuple's MUX entry names server1 all along; while server3 is out (22-26 s) Maglev maps
    the tuple to server2, so connection 5's SYN reaches server2 and its ACK server1; once
    server3 is back the tuple maps to server1 again and connection 6 is whole. Over the run,
    server1's record starts before and ends after connection 5: only the record's spans (its
    tap's periods, started at each change) place its ACK inside it."""
    run = three_conns()
    t = tcp(CLIENT, 45000, WEB, 80)
    run.fault("backend-remove", 22.0, 22.2, backends_before=SERVERS, backends_after=SERVERS[:2])
    run.fault("backend-add", 26.0, 26.2, backends_before=SERVERS[:2], backends_after=SERVERS)
    run.conn(4, 10.0, end_t=20.0, server="server1", sport=45000, wire=False)
    run.conn(5, 24.0, end_t=24.05, end="reset" if split else "closed",
             server="server2" if split else "server1", sport=45000, wire=False)  # fmt: skip
    run.conn(6, 30.0, end_t=30.05, server="server1", sport=45000, wire=False)
    parts = [(10.0, 20.0, 8), (24.02, 24.02, 1), (30.0, 30.05, 8)]
    if not split:
        parts[1] = (24.0, 24.05, 8)
    extra = {"spans": [{"first": a, "last": b, "packets": n} for a, b, n in parts]} if spans else {}
    run.add(encap("server1-in", "mux1", "server1", t, 10.0, 30.05,
                  packets=sum(n for *_, n in parts), **extra))  # fmt: skip
    if split:
        run.add(encap("server2-in", "mux1", "server2", t, 24.001, 24.001, packets=1))
    return run


def test_af1_a_split_mid_run_shows_in_the_spans_of_the_taps_periods() -> None:
    assert_flow5_split(split_mid_run(spans=True), 24.001, 24.02)
    # The same stack with the same spans but no split: each connection on one server.
    v = run_checker(check_connection_affinity, split_mid_run(spans=True, split=False).obs())
    assert v.status == Status.PASS, v.evidence
    # ...and connection 5 was judged by its span: a history naming server3 for it FAILs.
    run = split_mid_run(spans=True, split=False)
    assert_misnamed(run, 5, (24.0, 24.05), reached="server1")
    # Without spans the records say nothing about connection 5 but server2's SYN: it is
    # judged on that alone, and passes (why taps keep periods).
    v = run_checker(check_connection_affinity, split_mid_run(spans=False).obs())
    assert v.status == Status.PASS, v.evidence


def test_af1_tuple_probes_are_no_connections() -> None:
    run = three_conns()
    probe = probe_tuple(7)  # bare SYNs that moved between servers: SC-4's, not AF-1's
    run.add(encap("server1-in", "mux1", "server1", probe, 10.0, 11.0))
    run.add(encap("server2-in", "mux1", "server2", probe, 11.5, 12.0))
    v = run_checker(check_connection_affinity, run.obs())
    assert v.status == Status.PASS and v.measured["connections_judged"] == 3
    run.lab = LAB.model_copy(update={"probe_networks": []})
    assert run_checker(check_connection_affinity, run.obs()).status == Status.FAIL


def test_af1_unknown_cases() -> None:
    run = three_conns()
    run.drop_taps("server3")
    v = run_checker(check_connection_affinity, run.obs())
    assert v.status == Status.UNKNOWN and "no tap toward a server for server3" in v.message
    run = three_conns()
    run.overflow("server1-in")
    assert run_checker(check_connection_affinity, run.obs()).status == Status.UNKNOWN
    run = three_conns()
    run.drop_taps("server")
    v = run_checker(check_connection_affinity, run.obs())
    assert v.status == Status.UNKNOWN and "a tap toward a server" in v.message
    v = run_checker(check_connection_affinity, Run().obs())
    assert v.status == Status.UNKNOWN and "0 answered connections seen by server taps" in v.message


def test_af2_udp_affinity() -> None:
    run = Run()
    run.udp(1, 10.0, ["server1"] * 5)
    run.udp(2, 10.0, ["server2"] * 5)
    v = run_checker(check_udp_affinity, run.obs())
    assert v.status == Status.PASS and v.measured["udp_flows_judged"] == 2
    run.udp(3, 10.0, ["server1", "server1", "server3", "server1"])
    v = run_checker(check_udp_affinity, run.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert e.flow == "udp 198.18.1.2:50003 > 198.19.0.11:7 (flow 3)"
    assert "replies came from server1 (from t=10.001) and then from server3" in e.message
    assert e.time == pytest.approx(10.201)


def test_af2_left_out_across_backend_changes_and_unknown_without_data() -> None:
    run = Run()
    run.udp(1, 10.0, ["server1", "server2"])
    run.fault("backend-remove", 10.05, 10.06, backends_before=SERVERS, backends_after=SERVERS[1:])
    v = run_checker(check_udp_affinity, run.obs())
    assert v.status == Status.UNKNOWN and "0 answered UDP flows" in v.message
    v = run_checker(check_udp_affinity, Run().obs(lab=False, taps=False))
    assert v.status == Status.UNKNOWN


def spread(counts: dict[str, int], *, dst: str = WEB) -> Run:
    run = Run()
    i = 0
    for server, n in counts.items():
        for _ in range(n):
            i += 1
            run.conn(
                i,
                10.0 + i * 1e-3,
                end_t=11.0 + i * 1e-3,
                server=server,
                dst=dst,
                sport=1024 + i,
                wire=False,
            )
    return run


def test_af3_pass_and_fail() -> None:
    v = run_checker(
        check_spread_within_bound, spread({"server1": 700, "server2": 660, "server3": 640}).obs()
    )
    assert v.status == Status.PASS, v.message
    assert v.measured["web_flows"] == 2000 and v.measured["web_max_deviation"] == 0.016667
    v = run_checker(
        check_spread_within_bound, spread({"server1": 1000, "server2": 500, "server3": 500}).obs()
    )
    assert v.status == Status.FAIL
    assert [e.message for e in v.evidence] == [
        f"{s} answered {share} of 2000 new flows to 198.19.0.10:80/tcp (expected 33.3% +- 5.0%)"
        for s, share in (("server1", "50.0%"), ("server2", "25.0%"), ("server3", "25.0%"))
    ]


def test_af3_a_server_that_is_no_backend_fails() -> None:
    run = spread({"server1": 30, "server2": 30, "server3": 1})
    run.lab = LAB.model_copy(
        update={"services": [ServiceFacts(name="web", vip=WEB, port=80, servers=SERVERS[:2])]}
    )
    v = run_checker(check_spread_within_bound, run.obs(), {"min_samples": 50})
    assert v.status == Status.FAIL
    assert "server3 is no backend of 198.19.0.10:80/tcp yet answered 1 flows" in [
        e.message for e in v.evidence
    ]


def test_af3_unknown_below_the_sample_size() -> None:
    v = run_checker(check_spread_within_bound, spread({"server1": 100, "server2": 0}).obs())
    assert v.status == Status.UNKNOWN
    assert "no service had 2000 new flows with a known server (most: 100)" in v.message


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 400), min_size=3, max_size=3))
def test_af3_verdict_follows_the_largest_share_deviation(counts: list[int]) -> None:
    total = sum(counts)
    run = spread(dict(zip(SERVERS, counts, strict=True)))
    v = run_checker(check_spread_within_bound, run.obs(), {"min_samples": 100, "epsilon": 0.1})
    if total < 100:
        assert v.status == Status.UNKNOWN
    else:
        worst = max(abs(c / total - 1 / 3) for c in counts)
        assert v.status == (Status.FAIL if worst > 0.1 else Status.PASS)


# --- AF-4: the loose MUST bound ------------------------------------------------------------------


def by_address(flows: dict[str, dict[str, int]]) -> Run:
    """New flows to the web VIP: ``flows[client address][server]`` of them, each its own port."""
    run = Run()
    i = 0
    for src, counts in flows.items():
        for server, n in counts.items():
            for _ in range(n):
                i += 1
                run.conn(
                    i,
                    10.0 + i * 1e-3,
                    end_t=11.0 + i * 1e-3,
                    server=server,
                    src=src,
                    sport=1024 + i,
                    wire=False,
                )
    return run


EVEN = {"server1": 40, "server2": 35, "server3": 38}


def test_af4_passes_an_even_spread_over_addresses_and_ports() -> None:
    run = by_address({"198.18.1.7": EVEN, "198.18.1.8": EVEN, "198.18.1.9": {"server1": 5}})
    v = run_checker(check_spread_loosely_bounded, run.obs())
    assert v.status == Status.PASS, v.message
    assert v.measured["web_flows"] == 2 * 113 + 5
    # 198.18.1.9's five flows, all on one server, are too few to judge that address.
    assert v.measured["web_addresses_judged"] == 2


def test_af4_fails_a_hash_that_leaves_out_the_source_port() -> None:
    """hash-no-sport: each address's flows all on one server. Over three addresses the
    service's totals look fine (a server each), so only the per-address judge sees it."""
    run = by_address(
        {
            "198.18.1.7": {"server1": 40},
            "198.18.1.8": {"server2": 40},
            "198.18.1.9": {"server3": 40},
        }
    )
    v = run_checker(check_spread_loosely_bounded, run.obs())
    assert v.status == Status.FAIL
    assert len(v.evidence) == 3
    e = v.evidence[0]
    assert e.message.startswith(
        "server1 answered 40 of the 40 distinct 5-tuples of the 40 new flows from 198.18.1.7 to "
    )
    assert "(100%; at most 66.7%): a flow hash that leaves out part of the 5-tuple" in e.message
    assert e.flow == "198.18.1.7 -> 198.19.0.10:80/tcp"
    # AF-3, the strict SHOULD, passes the same run (each server a third): AF-4 is not AF-3.
    v3 = run_checker(check_spread_within_bound, run.obs(), {"min_samples": 100})
    assert v3.status == Status.PASS


def reused_ports(tuples: dict[str, tuple[int, int]]) -> Run:
    """New flows from 198.18.1.5 to the web VIP: for ``tuples[server] = (ports, reuse)``, that
    many distinct source ports each used ``reuse`` times (a correct hash sends every reuse
    where the first went); plus 113 flows of distinct ports, evenly spread, from 198.18.1.7."""
    run = by_address({"198.18.1.7": EVEN})
    i, port = 1000, 0
    for server, (n, reuse) in tuples.items():
        for _ in range(n):
            port += 1
            for _ in range(reuse):
                i += 1
                run.conn(
                    i,
                    10.0 + i * 1e-3,
                    end_t=10.5 + i * 1e-3,
                    server=server,
                    src="198.18.1.5",
                    sport=34800 + port,
                    wire=False,
                )
    return run


def test_af4_per_address_counts_distinct_5_tuples_not_flows() -> None:
    """The Katran run's case: 20 source ports reused by 58 flows. The per-address clause asks
    whether the source port is in the hash: 20 ports are 20 draws, not 58."""
    # server1's 12 ports happened to be reused more: 72 of 88 flows (82%), 12 of 20 tuples (60%).
    run = reused_ports({"server1": (12, 6), "server2": (4, 2), "server3": (4, 2)})
    v = run_checker(check_spread_loosely_bounded, run.obs())
    assert v.status == Status.PASS, v.message
    assert v.measured["web_flows"] == 88 + 113 and v.measured["web_addresses_judged"] == 2
    # Below a distinct tuples the address is not judged at all (its 88 flows would be).
    v = run_checker(check_spread_loosely_bounded, run.obs(), {"min_per_address": 30})
    assert v.status == Status.PASS and v.measured["web_addresses_judged"] == 1
    # Concentrated by tuple, it still fails, and says how many tuples and flows it judged.
    run = reused_ports({"server1": (16, 2), "server2": (2, 2), "server3": (2, 2)})
    v = run_checker(check_spread_loosely_bounded, run.obs())
    assert v.status == Status.FAIL
    assert [e.message for e in v.evidence if e.flow is not None] == [
        "server1 answered 16 of the 20 distinct 5-tuples of the 40 new flows from 198.18.1.5 to "
        "198.19.0.10:80/tcp (80%; at most 66.7%): a flow hash that leaves out part of the "
        "5-tuple (the source port?)"
    ]


def test_af4_fails_a_server_left_without_flows_or_far_over_its_share() -> None:
    v = run_checker(check_spread_loosely_bounded, spread({"server1": 60, "server2": 60}).obs())
    assert v.status == Status.FAIL
    assert "server3 answered none of 120 new flows to 198.19.0.10:80/tcp" in [
        e.message for e in v.evidence
    ]
    v = run_checker(
        check_spread_loosely_bounded,
        spread({"server1": 170, "server2": 15, "server3": 15}).obs(),
        {"min_per_address": 1000},
    )
    assert v.status == Status.FAIL
    assert [e.message for e in v.evidence] == [
        "server1 answered 85.0% of 200 new flows to 198.19.0.10:80/tcp (at most 2 x 1/3 = 66.7%)"
    ]


def test_af4_unknown_below_the_sample_size() -> None:
    v = run_checker(check_spread_loosely_bounded, spread({"server1": 50, "server2": 40}).obs())
    assert v.status == Status.UNKNOWN
    assert "no service had 100 new flows with a known server (most: 90)" in v.message


# --- AF-4's per-port clause: a hash over part of the client address -------------------------------

WEB6 = "2001:2:0:100::10"
LAB6 = LAB.model_copy(
    update={"services": [*LAB.services, ServiceFacts(name="web6", vip=WEB6, port=80, proto="tcp")]}
)
# Clients that differ only above the low 32 bits (dual.yaml's IPv6 clients), and IPv4 ones that
# differ only above the low 16 bits.
CLIENTS6 = ["2001:2:0:1::2", *(f"2001:2:0:1:{n}::2" for n in range(1, 7))]
CLIENTS4 = [f"198.{18 + n}.1.2" for n in range(7)]

Hash = Callable[[str, int], str]


def fair_hash(src: str, sport: int) -> str:
    """A flow hash over the whole address and the port (sha256: deterministic, uniform)."""
    digest = hashlib.sha256(f"{src}|{sport}".encode()).digest()
    return SERVERS[int.from_bytes(digest[:8], "big") % len(SERVERS)]


def low_bits_hash(bits: int) -> Hash:
    """The mutant's hash: only the address's low ``bits`` bits (and the port)."""

    def pick(src: str, sport: int) -> str:
        low = int(ipaddress.ip_address(src)) & ((1 << bits) - 1)
        return fair_hash(str(low), sport)

    return pick


def shared_ports(clients: list[str], vip: str, pick: Hash, ports: int = 40) -> Run:
    """New flows to ``vip``:80 from every client on the same ``ports`` source ports (the steady
    mix's short connections with --reuse-ports), each to the server ``pick`` chooses."""
    run = Run()
    run.lab = LAB6
    i = 0
    for sport in range(30000, 30000 + ports):
        for src in clients:
            i += 1
            t = 10.0 + i * 1e-3
            run.conn(
                i,
                t,
                end_t=t + 1,
                server=pick(src, sport),
                src=src,
                sport=sport,
                dst=vip,
                wire=False,
            )
    return run


@pytest.mark.parametrize(
    ("clients", "vip", "name", "bits"),
    [
        (CLIENTS6, WEB6, "web6", 32),
        (CLIENTS4, WEB, "web", 16),
    ],
)
def test_af4_per_port_passes_a_fair_hash_and_fails_one_over_low_address_bits(
    clients: list[str], vip: str, name: str, bits: int
) -> None:
    v = run_checker(check_spread_loosely_bounded, shared_ports(clients, vip, fair_hash).obs())
    assert v.status == Status.PASS, v.message
    assert v.measured[f"{name}_shared_ports"] == 40
    # 7 addresses a port: a fair hash puts one port's flows on one server 1 time in 3^6.
    assert v.measured[f"{name}_one_server_port_share"] < 0.1
    assert v.measured[f"{name}_addresses_judged"] == 7
    v = run_checker(
        check_spread_loosely_bounded, shared_ports(clients, vip, low_bits_hash(bits)).obs()
    )
    assert v.status == Status.FAIL
    assert v.measured[f"{name}_one_server_port_share"] == 1.0
    # Per address the ports still spread, and so do the service's totals: only this clause.
    assert len(v.evidence) == 1, [e.message for e in v.evidence]
    e = v.evidence[0]
    where = f"[{vip}]:80/tcp" if ":" in vip else f"{vip}:80/tcp"
    assert e.message.startswith(
        f"40 of the 40 source ports used from 4 or more client addresses toward {where} had "
        "all their flows on one server (at most 50%; "
    ), e.message
    assert "e.g. port 30000: 7 addresses, all to server" in e.message
    assert "a flow hash that leaves out part of the client address" in e.message
    # Reading all 32 (IPv4) or 128 bits, the same hash is fair again.
    full = low_bits_hash(128)
    v = run_checker(check_spread_loosely_bounded, shared_ports(clients, vip, full).obs())
    assert v.status == Status.PASS, v.message


def test_af4_per_port_clause_needs_enough_shared_ports_and_servers() -> None:
    mutant = low_bits_hash(32)
    # 19 shared ports (p = 20): the clause is not judged, and the verdict says so (no UNKNOWN).
    v = run_checker(
        check_spread_loosely_bounded,
        shared_ports(CLIENTS6, WEB6, mutant, ports=19).obs(),
        {"min_per_address": 10},
    )
    assert v.status == Status.PASS, v.message
    assert v.measured["web6_shared_ports"] == 19
    assert v.measured["web6_shared_ports_clause"] == (
        "not judged: 19 source ports used from 4 or more client addresses (at least 20 needed)"
    )
    # Ports shared by 3 addresses only (b = 4): none counted.
    v = run_checker(
        check_spread_loosely_bounded, shared_ports(CLIENTS6[:3], WEB6, mutant, ports=60).obs()
    )
    assert v.status == Status.PASS and v.measured["web6_shared_ports"] == 0
    # Each flow its own port (the kernel's choice): nothing shared, nothing judged.
    run = by_address({"198.18.1.7": EVEN, "198.18.1.8": EVEN})
    v = run_checker(check_spread_loosely_bounded, run.obs())
    assert v.status == Status.PASS and v.measured["web_shared_ports"] == 0
    # A service of one backend sends every port's flows to it: that is no hash at fault.
    run = shared_ports(CLIENTS6, WEB6, lambda _src, _sport: "server1")
    run.lab = LAB.model_copy(
        update={"services": [ServiceFacts(name="web6", vip=WEB6, port=80, servers=["server1"])]}
    )
    v = run_checker(check_spread_loosely_bounded, run.obs())
    assert v.status == Status.PASS, v.message
    assert "web6_shared_ports" not in v.measured
