"""Every checker on the observations of a stack that forwards nothing: never PASS.

A run of the ``null`` target (an adapter that deploys nothing) records what the lab does by
itself: clients' SYNs and datagrams to the VIPs that nobody answers (the border router has no
route: its ICMP errors come back), BGP keepalives on the MUX links, the hostile scenario's
packets (fragments and non-VIP packets into the MUXes, which the bare kernel routes on
unencapsulated; IPIP from a client to a server, which nothing decapsulates), non-VIP flows
that succeed (nothing is in their way), the fault timeline of every scenario, and no counters
(or counters that never moved). Each checker must answer UNKNOWN saying what it missed, or
FAIL where a violation is visible (attempts that had to succeed did not), never PASS.
"""

from __future__ import annotations

import pytest

from dsrconform import spec
from dsrconform.invariants import Status, run_checker
from dsrconform.observe.history import DatagramSent, FlowStart
from dsrconform.observe.observations import Observations
from dsrconform.observe.taps import CounterSnapshot, FiveTuple
from tests.unit.observations_builder import (
    CLIENT,
    EDGE,
    MUX_ADDR,
    SERVER_ADDR,
    SERVERS,
    UDP_VIP,
    WEB,
    Run,
    probe_tuple,
    record,
    tcp,
)

ROUTER = "198.18.1.254"
ROUTER_TO_MUX = {"mux1": "198.18.10.2", "mux2": "198.18.10.6"}

FAILS: dict[str, str] = {
    "SF-2": "attempt during the flood failed",
    "SF-4": "new connections attempted in",
    "MF-3": "route was withdrawn failed",
    "RB-1": "legitimate connection failed during/after crafted packets",
}
"""What a stack that forwards nothing visibly violates: new connections that must succeed (during
a flood, after a MUX's route was withdrawn, after crafted packets) fail. Every other
requirement is UNKNOWN."""


def null_run(*, bgp: bool = True) -> Run:
    """What a run of the null target records (``bgp``: the lab's BGP sessions on the MUX links,
    as the lab brings them up; without: a lab where nothing speaks BGP either)."""
    run = Run()
    flow = 0

    def attempt(t: float, **kw: object) -> None:
        nonlocal flow
        flow += 1
        run.conn(flow, t, end="connect-timeout", wire=False, **kw)  # type: ignore[arg-type]
        sport = 40000 + flow
        dst = str(kw.get("dst", WEB))
        syn = tcp(CLIENT, sport, dst, 80)
        run.add(
            record("client-out", syn, t, t + 3, packets=3, tcp_flags=0x02),
            record(
                "client-in",
                FiveTuple(proto=1, src=ROUTER, dst=CLIENT),
                t,
                t + 3,
                packets=3,
                icmp_type=3,
                icmp_code=0,
                embedded=syn,
            ),
        )

    # Steady traffic, then every scenario's: streams, short connections, uploads, UDP, floods.
    for i in range(60):
        attempt(10.0 + i * 0.5, dst=EDGE if i % 3 == 0 else WEB)
    for i in range(5):
        attempt(12.0 + i, request_bytes=9000)
    for i in range(10):
        sport = 50000 + i
        run.records += [
            FlowStart(
                flow=1000 + i,
                t=11.0 + i,
                proto="udp",
                src=CLIENT,
                sport=sport,
                dst=UDP_VIP,
                dport=7,
            ),
            DatagramSent(flow=1000 + i, t=11.0 + i, seq=0),
        ]
        run.add(
            record(
                "client-out",
                FiveTuple(proto=17, src=CLIENT, dst=UDP_VIP, sport=sport, dport=7),
                11.0 + i,
                12.0 + i,
            )
        )
    # Non-VIP flows succeed: nothing stands in their way.
    run.conn(2000, 15.0, end_t=16.0, dst=MUX_ADDR["mux1"], dport=22, wire=False)
    if bgp:
        for mux, addr in MUX_ADDR.items():
            bgp_out = tcp(addr, 179, ROUTER_TO_MUX[mux], 40179)
            bgp_in = tcp(ROUTER_TO_MUX[mux], 40179, addr, 179)
            run.add(
                record(f"{mux}-out", bgp_out, 1.0, 300.0, packets=40),
                record(f"{mux}-in", bgp_in, 1.0, 300.0, packets=40),
            )
    # The hostile packets: fragments and non-VIP packets into each MUX, routed on by its
    # kernel unencapsulated; IPIP from a client to every server, unanswered.
    frag = FiveTuple(proto=17, src=CLIENT, dst=UDP_VIP)
    non_vip = tcp(CLIENT, 41000, SERVER_ADDR["server1"], 22)
    for mux in MUX_ADDR:
        run.add(
            record(f"{mux}-in", frag, 101.0, 101.1, packets=4, fragments=4),
            record(f"{mux}-out", frag, 101.0, 101.1, packets=4, fragments=4),
            record(f"{mux}-in", non_vip, 102.0, 102.0, packets=1),
            record(f"{mux}-out", non_vip, 102.0, 102.0, packets=1),
        )
    for n, (server, addr) in enumerate(SERVER_ADDR.items()):
        outer = FiveTuple(proto=4, src=CLIENT, dst=addr)
        run.add(
            record(
                f"{server}-in",
                outer,
                103.0,
                103.0,
                packets=1,
                inner=tcp(CLIENT, 41001 + n, WEB, 80),
            )
        )
    # Tuple probes: bare SYNs the router drops (no VIP route); none reaches a MUX.
    for i in range(50):
        run.add(record("client-out", probe_tuple(i), 200.0, 210.0, tcp_flags=0x02))
    # Attempts during and after every fault.
    for i in range(200):
        attempt(100.0 + i * 0.2)
    run.fault("crafted", 100.0, 104.0)
    run.fault("syn-flood", 100.0, 112.0, rate=120_000.0)
    run.fault("mux-fail", 120.0, 128.0, target="mux2")
    run.fault("route-withdrawn", 121.0, target="mux2")
    run.fault("mux-rejoin", 128.0, 129.0, target="mux2")
    run.fault("mux-add", 130.0, 131.0, target="mux2")
    run.fault(
        "backend-remove",
        140.0,
        140.1,
        target="server3",
        vip=WEB,
        backends_before=SERVERS,
        backends_after=SERVERS[:2],
    )
    run.fault(
        "backend-add",
        144.0,
        144.1,
        target="server3",
        vip=WEB,
        backends_before=SERVERS[:2],
        backends_after=SERVERS,
    )
    run.fault(
        "backend-drain",
        148.0,
        154.0,
        target="server2",
        vip=WEB,
        backends_before=SERVERS,
        backends_after=["server1", "server3"],
    )
    run.fault("config-change", 160.0, 160.1)
    return run


VARIANTS = {
    "lab-with-bgp": lambda: null_run().obs(),
    "no-bgp": lambda: null_run(bgp=False).obs(),
    "zero-counters": lambda: _with_counters(null_run().obs()),
    "no-taps": lambda: null_run().obs(taps=False),
}


def _with_counters(obs: Observations) -> Observations:
    zero = {"mux1": {"rx_packets": 0}, "mux2": {"rx_packets": 0}}
    snaps = (CounterSnapshot(t=1.0, components=zero), CounterSnapshot(t=300.0, components=zero))
    return Observations(
        lab=obs.lab, history=obs.history, taps=obs.taps, counters=snaps, faults=obs.faults
    )


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("req", [r.id for r in spec.REQUIREMENTS])
def test_a_stack_that_forwards_nothing_passes_nothing(req: str, variant: str) -> None:
    v = run_checker(spec.get(req).checker, VARIANTS[variant]())
    assert v.error is None, v.error
    if req in FAILS:
        assert v.status == Status.FAIL, v.message
        assert FAILS[req] in v.evidence[0].message
    else:
        assert v.status == Status.UNKNOWN, v.message
        assert v.missing and all(m.strip() for m in v.missing)
