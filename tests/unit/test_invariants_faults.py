"""SF, MF and SC checkers on synthetic histories and fault timelines: PASS, FAIL, UNKNOWN."""

from __future__ import annotations

import pytest

from dsrconform.invariants import Status, run_checker
from dsrconform.invariants.flood import (
    check_established_survive_flood,
    check_mux_forwards_during_flood,
    check_new_connections_during_flood,
    check_survive_flood_with_backend_change,
)
from dsrconform.invariants.muxfail import (
    check_healthy_mux_connections_untouched,
    check_new_connections_recover,
    check_rehashed_connections_survive,
    check_rejoin_breaks_nothing,
)
from dsrconform.invariants.scale import (
    check_change_then_mux_loss,
    check_drain,
    check_scale_out_breaks_nothing,
)
from tests.unit.observations_builder import CLIENT, EDGE, SERVERS, WEB, Run

FLOOD = {"rate": 120_000.0}


def flood_run(**fault: object) -> Run:
    """Two long connections open across a flood from t=100 to t=112."""
    run = Run()
    run.conn(1, 50.0, end_t=200.0, server="server1")
    run.conn(2, 51.0, end_t=200.0, server="server2", mux="mux2")
    run.fault("syn-flood", 100.0, 112.0, **{**FLOOD, **fault})
    return run


# --- SF-1 --------------------------------------------------------------------------------------


def test_sf1_a_connection_without_an_end_is_unknown_not_survived() -> None:
    run = flood_run()
    run.conn(3, 52.0, server="server3")  # its recorder lost it: no end event
    v = run_checker(check_established_survive_flood, run.obs())
    assert v.status == Status.UNKNOWN
    assert "1 connections open at the flood have no end in the history" in v.message


def test_sf1_pass_and_fail() -> None:
    v = run_checker(check_established_survive_flood, flood_run().obs())
    assert v.status == Status.PASS and v.measured["connections_judged"] == 2
    run = flood_run()
    run.conn(3, 60.0, end_t=105.5, end="reset", server="server3")
    run.conn(4, 60.0, end_t=140.0, end="reset")  # after the flood + grace: not the flood's
    v = run_checker(check_established_survive_flood, run.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert e.flow is not None and e.flow.endswith("(flow 3)") and e.time == 105.5
    assert e.message == "reset 5.500 s after the flood began (server server3)"


def test_sf1_unknown_weak_flood_no_connections_or_backend_change() -> None:
    v = run_checker(check_established_survive_flood, flood_run(rate=1000.0).obs())
    assert v.status == Status.UNKNOWN
    assert "reached 1,000 packets/s for 12.0 s (needed: 95% of 50,000 packets/s" in v.message
    short = Run()
    short.conn(1, 50.0, end_t=200.0)
    short.fault("syn-flood", 100.0, 105.0, **FLOOD)
    assert run_checker(check_established_survive_flood, short.obs()).status == Status.UNKNOWN
    late = Run()
    late.conn(1, 101.0, end_t=200.0)
    late.fault("syn-flood", 100.0, 112.0, **FLOOD)
    v = run_checker(check_established_survive_flood, late.obs())
    assert v.status == Status.UNKNOWN and "no connection was established before" in v.message
    mixed = flood_run()
    mixed.fault("backend-add", 104.0, 105.0)
    v = run_checker(check_established_survive_flood, mixed.obs())
    assert v.status == Status.UNKNOWN and "SF-3" in v.message
    assert run_checker(check_established_survive_flood, Run().obs()).status == Status.UNKNOWN


# --- SF-2 --------------------------------------------------------------------------------------


def attempts_during(
    run: Run,
    n: int,
    *,
    first_id: int = 100,
    start: float = 100.0,
    latency: float = 0.01,
    end: str = "closed",
) -> None:
    for i in range(n):
        t = start + i * 0.1
        run.conn(first_id + i, t, end_t=t + latency + 0.05, latency=latency, end=end)


def test_sf2_success_share_and_latency() -> None:
    run = flood_run()
    attempts_during(run, 60)
    v = run_checker(check_new_connections_during_flood, run.obs())
    assert v.status == Status.PASS and v.measured["success_share"] == 1.0
    attempts_during(run, 5, first_id=200, start=106.0, end="refused")
    v = run_checker(check_new_connections_during_flood, run.obs())
    assert v.status == Status.FAIL and len(v.evidence) == 5
    assert v.evidence[0].message == "attempt during the flood failed: refused"
    assert v.evidence[0].time == 106.0
    slow = flood_run()
    attempts_during(slow, 60, latency=2.0)
    v = run_checker(check_new_connections_during_flood, slow.obs())
    assert v.status == Status.FAIL and v.evidence[0].message == "connected after 2.000 s"


def test_sf2_unknown_with_too_few_attempts() -> None:
    run = flood_run()
    attempts_during(run, 10)
    v = run_checker(check_new_connections_during_flood, run.obs())
    assert v.status == Status.UNKNOWN and "10 connections attempted during floods" in v.message


# --- SF-3 --------------------------------------------------------------------------------------


def test_sf3_flood_with_backend_change() -> None:
    run = flood_run()
    run.fault("backend-add", 104.0, 105.0)
    assert run_checker(check_survive_flood_with_backend_change, run.obs()).status == Status.PASS
    run.conn(3, 60.0, end_t=106.0, end="timeout")
    v = run_checker(check_survive_flood_with_backend_change, run.obs())
    assert v.status == Status.FAIL
    assert v.evidence[0].message.startswith("timeout 6.000 s after the flood with backend-add")
    v = run_checker(check_survive_flood_with_backend_change, flood_run().obs())
    assert v.status == Status.UNKNOWN and "overlapping a backend change" in v.message


# --- SF-4 --------------------------------------------------------------------------------------


def sf4_run(mux2_dead: tuple[float, float] | None = None) -> Run:
    """Attempts every 0.25 s of the flood, alternating MUXes; through mux2 none completes
    while it is ``mux2_dead``."""
    run = flood_run()
    for i in range(48):
        t, mux = 100.0 + i * 0.25, ("mux1", "mux2")[i % 2]
        dead = mux == "mux2" and mux2_dead is not None and mux2_dead[0] <= t < mux2_dead[1]
        end = "connect-timeout" if dead else "closed"
        run.conn(100 + i, t, end_t=t + 0.1, end=end, mux=mux, wire=False)
        run.wire(CLIENT, 40100 + i, WEB, 80, t, t + 0.1, mux=mux)
    return run


def test_sf4_mux_keeps_forwarding() -> None:
    v = run_checker(check_mux_forwards_during_flood, sf4_run().obs())
    assert v.status == Status.PASS and v.measured["intervals_judged"] == 24
    v = run_checker(check_mux_forwards_during_flood, sf4_run(mux2_dead=(104.0, 105.0)).obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert e.message == (
        "mux2: none of 2 new connections attempted in [104.000, 105.000) completed (timeout)"
    )
    assert (e.time, e.until) == (104.0, 105.0)


def test_sf4_unknown_without_attempts() -> None:
    v = run_checker(check_mux_forwards_during_flood, flood_run().obs())
    assert v.status == Status.UNKNOWN and "no legitimate connection was attempted" in v.message


# --- MF-1 / MF-2 -------------------------------------------------------------------------------


def mux_fail_run() -> Run:
    run = Run()
    run.conn(1, 50.0, end_t=200.0, server="server1", mux="mux1")
    run.conn(2, 51.0, end_t=200.0, server="server2", mux="mux2")
    run.fault("mux-fail", 100.0, target="mux1")
    return run


def test_mf1_connections_of_the_failed_mux() -> None:
    v = run_checker(check_rehashed_connections_survive, mux_fail_run().obs())
    assert v.status == Status.PASS and v.measured["connections_judged"] == 1
    run = mux_fail_run()
    run.conn(3, 52.0, end_t=103.0, end="reset", mux="mux1", server="server3")
    run.conn(4, 52.0, end_t=103.0, end="reset", mux="mux2")  # MF-2's business
    v = run_checker(check_rehashed_connections_survive, run.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert "after the failure of mux1 began" in e.message and e.flow is not None
    assert e.flow.endswith("(flow 3)")


def test_mf1_unknown_cases() -> None:
    run = mux_fail_run()
    run.drop_taps("mux1-in", "mux2-in")
    v = run_checker(check_rehashed_connections_survive, run.obs())
    assert v.status == Status.UNKNOWN and "a tap toward a MUX" in v.message
    run = mux_fail_run()
    run.fault("backend-remove", 99.0, 101.0)
    v = run_checker(check_rehashed_connections_survive, run.obs())
    assert v.status == Status.UNKNOWN and "overlaps no backend change" in v.message
    run = Run()
    run.conn(2, 51.0, end_t=200.0, mux="mux2")
    run.fault("mux-fail", 100.0, target="mux1")
    v = run_checker(check_rehashed_connections_survive, run.obs())
    assert v.status == Status.UNKNOWN and "no connection carried by the failed MUX" in v.message
    anonymous = Run()
    anonymous.conn(1, 50.0, end_t=200.0)
    anonymous.fault("mux-fail", 100.0)
    v = run_checker(check_rehashed_connections_survive, anonymous.obs())
    assert v.status == Status.UNKNOWN and "does not name the failed MUX" in v.message


def test_mf2_healthy_connections_neither_break_nor_stall() -> None:
    def run_with_stall(seconds: float) -> Run:
        run = Run()
        run.conn(1, 50.0, end_t=200.0, server="server1", mux="mux1")
        run.conn(2, 51.0, end_t=200.0, server="server2", mux="mux2", stalls=((102.0, seconds),))
        run.fault("mux-fail", 100.0, target="mux1")
        return run

    ok = run_checker(check_healthy_mux_connections_untouched, run_with_stall(0.6).obs())
    assert ok.status == Status.PASS
    v = run_checker(check_healthy_mux_connections_untouched, run_with_stall(3.0).obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert "stalled 3.000 s (more than 1 s)" in e.message and (e.time, e.until) == (102.0, 105.0)
    quiet = Run()
    quiet.conn(1, 50.0, end_t=200.0, mux="mux1")
    quiet.fault("mux-fail", 100.0, target="mux1")
    assert run_checker(check_healthy_mux_connections_untouched, quiet.obs()).status == (
        Status.UNKNOWN
    )


# --- MF-3 / MF-4 -------------------------------------------------------------------------------


def recovery_run(last_failure: float) -> Run:
    """Attempts every 0.5 s from 100 to 119.5; those before ``last_failure`` time out."""
    run = Run()
    run.fault("mux-fail", 100.0, target="mux1")
    run.fault("route-withdrawn", 102.0, target="mux1")
    for i in range(40):
        t = 100.0 + i * 0.5
        end = "connect-timeout" if t <= last_failure else "closed"
        run.conn(i, t, end_t=t + 0.2, end=end, wire=False)
    return run


def test_mf3_new_connections_recover() -> None:
    v = run_checker(check_new_connections_recover, recovery_run(103.0).obs())
    assert v.status == Status.PASS
    assert v.measured["recovery_seconds"] == 1.0 and v.measured["attempts_after_tau"] == 26
    v = run_checker(check_new_connections_recover, recovery_run(108.0).obs())
    assert v.status == Status.FAIL
    assert v.measured["recovery_seconds"] == 6.0
    assert [e.time for e in v.evidence] == [107.0, 107.5, 108.0]
    assert (
        v.evidence[0].message
    ) == "attempt 5.000 s after mux1's route was withdrawn failed: timeout"


def test_mf3_unknown_cases() -> None:
    run = recovery_run(103.0)
    run.faults = [f for f in run.faults if f.kind != "route-withdrawn"]
    v = run_checker(check_new_connections_recover, run.obs())
    assert v.status == Status.UNKNOWN and "no route-withdrawn event" in v.message
    v = run_checker(check_new_connections_recover, recovery_run(103.0).obs(), {"min_attempts": 30})
    assert v.status == Status.UNKNOWN and "26 connections attempted later than tau" in v.message


def test_mf4_rejoin() -> None:
    run = mux_fail_run()
    run.fault("mux-rejoin", 150.0, 151.0, target="mux1")
    assert run_checker(check_rejoin_breaks_nothing, run.obs()).status == Status.PASS
    run.conn(3, 60.0, end_t=152.0, end="integrity")
    v = run_checker(check_rejoin_breaks_nothing, run.obs())
    assert v.status == Status.FAIL and "integrity error" in v.evidence[0].message
    assert run_checker(check_rejoin_breaks_nothing, mux_fail_run().obs()).status == Status.UNKNOWN


# --- SC-1 --------------------------------------------------------------------------------------


def test_sc1_scale_out() -> None:
    run = mux_fail_run()
    run.faults = []
    run.fault("backend-add", 100.0, 101.0, backends_before=SERVERS[:2], backends_after=SERVERS)
    run.fault("mux-add", 120.0, 121.0, target="mux3")
    assert run_checker(check_scale_out_breaks_nothing, run.obs()).status == Status.PASS
    run.conn(3, 60.0, end_t=125.0, end="reset")
    v = run_checker(check_scale_out_breaks_nothing, run.obs())
    assert v.status == Status.FAIL and "after mux-add of mux3" in v.evidence[0].message
    assert run_checker(check_scale_out_breaks_nothing, Run().obs()).status == Status.UNKNOWN


# --- SC-3 --------------------------------------------------------------------------------------


def drain_run() -> Run:
    run = Run()
    run.conn(1, 50.0, end_t=200.0, server="server2")
    run.fault("backend-drain", 100.0, 130.0, target="server2")
    for i in range(5):
        run.conn(10 + i, 102.0 + i, end_t=103.0 + i, server=SERVERS[i % 2 * 2])
    return run


def test_sc3_drain() -> None:
    v = run_checker(check_drain, drain_run().obs())
    assert v.status == Status.PASS and v.measured["new_connections_judged"] == 5
    run = drain_run()
    run.conn(20, 108.0, end_t=109.0, server="server2")
    v = run_checker(check_drain, run.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert "started 8.000 s after the drain of server2 began and was answered by server2" in (
        e.message
    )
    assert e.time == pytest.approx(108.011)
    broken = drain_run()
    broken.conn(2, 60.0, end_t=101.0, end="reset", server="server2")
    assert run_checker(check_drain, broken.obs()).status == Status.FAIL


def test_sc3_drain_of_one_service_leaves_its_others_alone() -> None:
    run = drain_run()
    run.faults[0] = run.faults[0].model_copy(update={"vip": WEB})
    run.conn(20, 108.0, end_t=109.0, server="server2", dst=EDGE)  # another service: fine
    assert run_checker(check_drain, run.obs()).status == Status.PASS
    run.conn(21, 109.0, end_t=110.0, server="server2")  # the drained service: not fine
    v = run_checker(check_drain, run.obs())
    assert v.status == Status.FAIL and len(v.evidence) == 1


def test_sc3_services_sharing_a_vip_address_are_judged_each_in_its_own_drain() -> None:
    """Seen with Katran (flood-scale): web (TCP) and webudp (UDP) share 198.19.0.10:80 and are
    drained in windows of their own; a UDP flow that left the drained server broke once, not
    once per window of that address."""
    from dsrconform.observe.history import DatagramReply, DatagramSent, FlowStart
    from dsrconform.observe.observations import ServiceFacts

    run = drain_run()
    webudp = ServiceFacts(name="webudp", vip=WEB, port=80, proto="udp")
    run.lab = run.lab.model_copy(update={"services": [*run.lab.services, webudp]})
    run.faults[0] = run.faults[0].model_copy(update={"vip": WEB, "detail": {"service": "web"}})
    run.records.append(
        FlowStart(flow=30, t=50.0, proto="udp", src=CLIENT, sport=50030, dst=WEB, dport=80)
    )
    for i, (t, server) in enumerate(((50.0, "server2"), (110.0, "server1"))):
        run.records += [
            DatagramSent(flow=30, t=t, seq=i),
            DatagramReply(flow=30, t=t + 0.001, seq=i, server=server),
        ]
    v = run_checker(check_drain, run.obs())
    assert v.status == Status.PASS, v.message  # web's drain: the UDP flow is not web's
    run.fault(
        "backend-drain", 100.5, 130.0, target="server2", vip=WEB, detail={"service": "webudp"}
    )
    v = run_checker(check_drain, run.obs())
    assert v.status == Status.FAIL and len(v.evidence) == 1, [e.message for e in v.evidence]
    assert "flow 30" in (v.evidence[0].flow or "")


def test_sc3_a_server_moved_to_another_service_is_judged_until_its_own_service_changes() -> None:
    run = drain_run()
    run.faults[0] = run.faults[0].model_copy(update={"vip": WEB})
    run.fault("backend-add", 100.1, 100.2, target="server2", vip=EDGE)  # added there at once
    v = run_checker(check_drain, run.obs())
    assert v.status == Status.PASS and v.measured["new_connections_judged"] == 5
    run.conn(22, 110.0, end_t=111.0, server="server2")  # a new web connection on it: not fine
    assert run_checker(check_drain, run.obs()).status == Status.FAIL
    run.fault("backend-add", 105.0, 105.1, target="server2", vip=WEB)  # web's own change
    assert run_checker(check_drain, run.obs()).measured["new_connections_judged"] == 3


def test_sc3_a_reused_tuple_is_no_new_connection() -> None:
    run = drain_run()
    run.conn(30, 90.0, end_t=91.0, server="server2", sport=41000)  # before the drain
    run.conn(31, 108.0, end_t=109.0, server="server2", sport=41000)  # the same tuple again
    v = run_checker(check_drain, run.obs())
    assert v.status == Status.PASS and v.measured["reused_tuples_skipped"] == 1
    run.conn(32, 109.0, end_t=110.0, server="server2", sport=41001)  # a new tuple: violation
    assert run_checker(check_drain, run.obs()).status == Status.FAIL
    during = drain_run()  # first used just after the drain began, before it settled
    during.conn(35, 100.2, end_t=100.3, server="server2", sport=41003)
    during.conn(36, 110.0, end_t=111.0, server="server2", sport=41003)  # kept there: fine
    assert run_checker(check_drain, during.obs()).status == Status.PASS
    via_other_mux = drain_run()  # remembered by one MUX while another carried it elsewhere once
    via_other_mux.conn(37, 90.0, end_t=91.0, server="server2", sport=41004)
    via_other_mux.conn(38, 108.0, end_t=108.5, server="server1", sport=41004, mux="mux2")
    via_other_mux.conn(39, 112.0, end_t=112.5, server="server2", sport=41004)
    v = run_checker(check_drain, via_other_mux.obs())
    assert v.status == Status.PASS and v.measured["reused_tuples_skipped"] == 1
    elsewhere = drain_run()
    elsewhere.conn(33, 90.0, end_t=91.0, server="server1", sport=41002)  # before: server1
    elsewhere.conn(34, 108.0, end_t=109.0, server="server2", sport=41002)  # now the drained one
    v = run_checker(check_drain, elsewhere.obs())
    assert v.status == Status.FAIL and v.measured["reused_tuples_skipped"] == 0


def test_sc3_unknown_without_new_connections() -> None:
    run = Run()
    run.conn(1, 50.0, end_t=200.0, server="server2")
    run.fault("backend-drain", 100.0, 130.0, target="server2")
    v = run_checker(check_drain, run.obs())
    assert v.status == Status.UNKNOWN and "no connection was started after the drain" in v.message


# --- SC-5 --------------------------------------------------------------------------------------


def change_then_loss(broken: int) -> Run:
    run = Run()
    run.fault("backend-add", 60.0, 61.0, backends_before=SERVERS[:2], backends_after=SERVERS)
    run.fault("mux-fail", 100.0, target="mux1")
    for i in range(4):
        end = "reset" if i < broken else "closed"
        run.conn(i, 10.0 + i, end_t=101.0 if i < broken else 200.0, end=end, mux="mux1")
    run.conn(9, 10.0, end_t=200.0, mux="mux2")  # carried by the healthy MUX: not counted
    return run


def test_sc5_breakage_is_measured() -> None:
    v = run_checker(check_change_then_mux_loss, change_then_loss(0).obs())
    assert v.status == Status.PASS and v.measured["connections_judged"] == 4
    v = run_checker(check_change_then_mux_loss, change_then_loss(2).obs())
    assert v.status == Status.FAIL and v.measured["breakage"] == 0.5 and len(v.evidence) == 2
    v = run_checker(check_change_then_mux_loss, change_then_loss(2).obs(), {"max_breakage": 0.5})
    assert v.status == Status.PASS and v.measured["broken"] == 2


def test_sc5_unknown_without_a_change_before_the_loss() -> None:
    run = change_then_loss(0)
    run.faults = [f for f in run.faults if f.kind == "mux-fail"]
    v = run_checker(check_change_then_mux_loss, run.obs())
    assert v.status == Status.UNKNOWN and "a backend change followed by a mux-fail" in v.message
