"""SC-2 and SC-4 on synthetic tuple-probe tap records: PASS, FAIL, UNKNOWN.

A probe tuple's records are what the taps on the links out of each MUX saw: per MUX and server,
when its encapsulated SYNs went there first and last (``Run.probe``).
"""

from __future__ import annotations

import pytest

from dsrconform.invariants import Status, run_checker
from dsrconform.invariants.scale import check_atomic_convergence, check_minimal_remapping
from tests.unit.observations_builder import LAB, SERVERS, Run

# A change from t=100.0 to 100.2; probes from 99.0 to 102.5.
START, STOP = 100.0, 100.2


def remove_run(tuples: int, moved_from_kept: int = 0, *, mux_of=lambda i: "mux1") -> Run:
    """server3 removed from [server1..3] at START: tuple i sat on SERVERS[i % 3]; those on
    server3 move to server1/2 at 100.1; ``moved_from_kept`` of the others move too (a
    remapping that is not minimal)."""
    run = Run()
    run.fault("backend-remove", START, STOP, target="server3", backends_before=SERVERS,
              backends_after=SERVERS[:2], vip="198.19.0.10")  # fmt: skip
    kept_moved = 0
    for i in range(tuples):
        old = SERVERS[i % 3]
        new = old
        if old == "server3":
            new = SERVERS[i % 2]
        elif kept_moved < moved_from_kept:
            new = "server2" if old == "server1" else "server1"
            kept_moved += 1
        mux = mux_of(i)
        if new == old:
            run.probe(i, [(mux, old, 99.0 + i * 1e-4, 102.5)])
        else:
            run.probe(i, [(mux, old, 99.0 + i * 1e-4, 100.09), (mux, new, 100.11, 102.5)])
    return run


# --- SC-2 --------------------------------------------------------------------------------------


def test_sc2_minimal_remapping_passes_and_excess_fails() -> None:
    v = run_checker(check_minimal_remapping, remove_run(300).obs(), {"min_samples": 100})
    assert v.status == Status.PASS, v.message
    assert v.measured["remapped_share@100.000"] == pytest.approx(1 / 3, abs=1e-6)
    assert v.measured["tuples_probed@100.000"] == 300
    v = run_checker(check_minimal_remapping, remove_run(300, 60).obs(), {"min_samples": 100})
    assert v.status == Status.FAIL
    assert "remapped 53.3% of 300 probed tuples; minimal 33.3% + 5.0% allowed" in (
        v.evidence[0].message
    )
    e = v.evidence[1]
    assert "moved from server1 (still a backend) to server2: last sent to server1 at" in e.message
    assert e.flow == "tcp 198.18.208.0:5000 -> 198.19.0.10:80" and e.time == 100.11


def test_sc2_judges_each_tuple_across_muxes() -> None:
    """The router may carry a tuple through another MUX: old and new are the earliest and the
    latest server, whichever MUX sent the tuple there."""
    run = remove_run(300)
    for i in range(30):  # mux1 sent it to server1, then mux2 to server2: it moved
        run.probe(1000 + i, [("mux1", "server1", 99.0, 100.05), ("mux2", "server2", 100.3, 102.5)])
    v = run_checker(check_minimal_remapping, run.obs(), {"min_samples": 100})
    assert v.status == Status.FAIL
    assert v.measured["remapped_share@100.000"] == pytest.approx(130 / 330, abs=1e-6)
    assert "moved from server1 (still a backend) to server2" in v.evidence[1].message
    still = remove_run(0)
    for i in range(150):
        still.probe(i, [("mux1", "server1", 99.0, 100.5), ("mux2", "server1", 100.6, 102.5)])
    v = run_checker(check_minimal_remapping, still.obs(), {"min_samples": 100})
    # Nothing moved where a third of the tuples should have: not a PASS.
    assert v.status == Status.UNKNOWN
    assert "the stack keeps state for bare SYNs" in v.message


def test_sc2_tuples_not_probed_around_only_this_change_are_not_judged() -> None:
    run = remove_run(300)
    run.fault("backend-add", 101.0, 101.1, target="server3", backends_before=SERVERS[:2],
              backends_after=SERVERS, vip="198.19.0.10")  # fmt: skip
    v = run_checker(check_minimal_remapping, run.obs(), {"min_samples": 100})
    # Every tuple's probes span the add's start too: neither change has tuples of its own.
    assert v.status == Status.UNKNOWN
    assert v.measured["tuples_probed@100.000"] == 0 and v.measured["tuples_probed@101.000"] == 0


def test_sc2_a_window_noting_its_probe_set_judges_that_set_only() -> None:
    run = remove_run(300)
    run.faults[0] = run.faults[0].model_copy(update={"detail": {"probe_sport": 6000}})
    for i in range(120):
        run.probe(1000 + i, [("mux1", "server1", 99.0, 102.5)], sport=6000)
    v = run_checker(check_minimal_remapping, run.obs(), {"min_samples": 100})
    assert v.measured["tuples_probed@100.000"] == 120
    assert v.status == Status.UNKNOWN and "no probed tuple moved" in v.message


def test_sc2_unknown_cases() -> None:
    v = run_checker(check_minimal_remapping, remove_run(300).obs())
    assert v.status == Status.UNKNOWN and "300 tuples probed before and after" in v.message
    run = remove_run(300)
    run.faults[0] = run.faults[0].model_copy(update={"backends_before": None})
    v = run_checker(check_minimal_remapping, run.obs(), {"min_samples": 100})
    assert v.status == Status.UNKNOWN and "does not list the backends" in v.message
    run = remove_run(300)
    run.lab = LAB.model_copy(update={"probe_networks": []})
    v = run_checker(check_minimal_remapping, run.obs(), {"min_samples": 100})
    assert v.status == Status.UNKNOWN and "tuple-probe network" in v.message
    run = remove_run(300)
    run.drop_taps("mux2-out")
    v = run_checker(check_minimal_remapping, run.obs(), {"min_samples": 100})
    assert v.status == Status.UNKNOWN and "no tap on a link out of a MUX for mux2" in v.message


# --- SC-4 --------------------------------------------------------------------------------------


def two_mux_run(tuples: int = 60) -> Run:
    """remove_run with tuples spread over both MUXes; mux1 flips at 100.10, mux2 at 100.15."""
    run = remove_run(0)
    for i in range(tuples):
        mux = "mux1" if i % 2 else "mux2"
        flip = 100.10 if mux == "mux1" else 100.15
        old = SERVERS[i % 3]
        if old != "server3":
            run.probe(i, [(mux, old, 99.0, 102.5)])
            continue
        run.probe(i, [(mux, old, 99.0, flip - 0.004 + i * 1e-5),
                      (mux, SERVERS[i % 2], flip + 0.001 + i * 1e-5, 102.5)])  # fmt: skip
    return run


def test_sc4_atomic_per_mux_passes() -> None:
    v = run_checker(check_atomic_convergence, two_mux_run().obs())
    assert v.status == Status.PASS, v.message
    assert v.measured["tuples_changed@100.000"] == 20
    assert v.measured["tear_seconds@100.000:mux1"] == 0.0
    assert v.measured["slowest_convergence_seconds"] == pytest.approx(0.15156, abs=1e-6)


def test_sc4_torn_table_fails() -> None:
    """One MUX sends a tuple to its new server while another still goes to its old one: the
    in-place rewrite's half-old, half-new table."""
    run = two_mux_run()
    run.probe(500, [("mux1", "server1", 99.0, 100.090), ("mux1", "server2", 100.091, 102.5)])
    run.probe(501, [("mux1", "server2", 99.0, 100.130), ("mux1", "server1", 100.131, 102.5)])
    v = run_checker(check_atomic_convergence, run.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert e.message.startswith(
        "mux1 sent tcp 198.18.209.244:5000 -> 198.19.0.10:80 to its new server server2 at "
        "100.091000 but tcp 198.18.209.245:5000 -> 198.19.0.10:80 to its old server server2 "
        "until 100.130000, 0.039000 s later"
    )
    assert "the table was neither the old nor the new one" in e.message and e.time == 100.130
    assert v.measured["tear_seconds@100.000:mux1"] == pytest.approx(0.039)
    assert v.measured["tear_seconds@100.000:mux2"] == 0.0
    # Within the slack: one instant, give or take the taps' timing.
    v = run_checker(check_atomic_convergence, run.obs(), {"atomic_slack": 0.05})
    assert v.status == Status.PASS


def test_sc4_back_and_forth_three_servers_and_late_changes_fail() -> None:
    run = two_mux_run()
    run.probe(600, [("mux2", "server1", 99.0, 102.4), ("mux2", "server2", 100.16, 102.5)])
    run.probe(601, [("mux2", "server1", 99.0, 100.14), ("mux2", "server3", 100.16, 100.3),
                    ("mux2", "server2", 100.31, 102.5)])  # fmt: skip
    run.probe(602, [("mux1", "server1", 99.0, 102.0), ("mux1", "server2", 102.3, 102.5)])
    # (A slack that lets tuple 602's late move pass the one-instant check.)
    v = run_checker(check_atomic_convergence, run.obs(), {"atomic_slack": 2.0})
    assert v.status == Status.FAIL
    assert len(v.evidence) == 3
    back, three, late = sorted(v.evidence, key=lambda e: e.time or 0.0)
    assert (
        "mux2 sent it to server1, server2, and server1 again (100.160000..102.400000)"
        in back.message
    )
    assert "mux2 sent it to server1 -> server3 -> server2 around backend-remove" in three.message
    assert three.time == 100.31
    assert "mux1 moved it from server1 to server2 2.300 s after backend-remove" in late.message


def test_sc4_unknown_cases() -> None:
    run = two_mux_run(6)
    v = run_checker(check_atomic_convergence, run.obs())
    assert v.status == Status.UNKNOWN and "6 tuples probed later than tau" in v.message
    sticky = remove_run(0)
    for i in range(30):
        sticky.probe(i, [("mux1", "server1", 99.0, 102.5)])
    v = run_checker(check_atomic_convergence, sticky.obs())
    assert v.status == Status.UNKNOWN and "no probed tuple changed server" in v.message
    v = run_checker(check_atomic_convergence, Run().obs())
    assert v.status == Status.UNKNOWN


def test_sc4_judges_a_drain_by_its_start() -> None:
    """A drain's window lasts until the server is back; its probes end long before."""
    run = two_mux_run()
    run.faults[0] = run.faults[0].model_copy(
        update={"kind": "backend-drain", "end": 106.0, "backends_after": SERVERS[:2]}
    )
    v = run_checker(check_atomic_convergence, run.obs())
    assert v.status == Status.PASS, v.message
    assert v.measured["tuples_settled@100.000"] == 60


def test_sc4_back_and_forth_within_the_slack_is_timing_not_a_change() -> None:
    run = two_mux_run()
    run.probe(600, [("mux2", "server3", 99.0, 100.15105), ("mux2", "server1", 100.151, 102.5)])
    assert run_checker(check_atomic_convergence, run.obs()).status == Status.PASS
    v = run_checker(check_atomic_convergence, run.obs(), {"atomic_slack": 0.00001})
    assert v.status == Status.FAIL and "and server3 again (100.151000..100.151050)" in (
        v.evidence[0].message
    )


def test_sc4_a_mux_that_never_applies_the_change_fails() -> None:
    """mux1 flips; mux2 keeps sending server3's tuples to the removed server3."""
    run = remove_run(0)
    for i in range(120):
        mux, old = ("mux1" if i % 2 else "mux2"), SERVERS[i % 3]
        if old == "server3" and mux == "mux1":
            run.probe(i, [(mux, old, 99.0, 100.09), (mux, SERVERS[i % 2], 100.1, 102.5)])
        else:
            run.probe(i, [(mux, old, 99.0, 102.5)])
    v = run_checker(check_atomic_convergence, run.obs())
    assert v.status == Status.FAIL
    stale = [
        e for e in v.evidence if "mux2 still sent it to server3, no backend after" in e.message
    ]
    assert len(stale) == 20 and stale[0].time == 102.5
    # An addition names no server that must not be used: the MUX that moved nothing is caught
    # by its count alone.
    add = remove_run(0)
    add.faults[0] = add.faults[0].model_copy(
        update={"kind": "backend-add", "backends_before": SERVERS[:2], "backends_after": SERVERS}
    )
    for i in range(120):
        mux, old = ("mux1" if i % 2 else "mux2"), SERVERS[i % 2]
        if i % 3 == 0 and mux == "mux1":
            add.probe(i, [(mux, old, 99.0, 100.09), (mux, "server3", 100.1, 102.5)])
        else:
            add.probe(i, [(mux, old, 99.0, 102.5)])
    v = run_checker(check_atomic_convergence, add.obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert e.message.startswith("mux2 sent none of its 60 probed tuples to another server")


# --- probes that failed -------------------------------------------------------------------------


def _probes_failed(run: Run) -> Run:
    """The window of a change whose tuple probes failed: the sender's own error noted, no probe
    record (what a kernel that refuses every probe engine leaves)."""
    error = "FeatureUnavailableError: no flood engine works on this machine: live-frames: ..."
    run.faults[0] = run.faults[0].model_copy(
        update={"detail": {"probe_sport": 6000, "probe_error": error}}
    )
    return run


@pytest.mark.parametrize("checker", [check_minimal_remapping, check_atomic_convergence])
def test_failed_probes_are_unknown_with_the_senders_own_error(checker: object) -> None:
    v = run_checker(checker, _probes_failed(remove_run(0)).obs(), {})  # type: ignore[arg-type]
    assert v.status == Status.UNKNOWN
    assert "tuple probes around" in v.message and "failed: FeatureUnavailableError" in v.message
    assert "no flood engine works on this machine" in v.message
    # Even with records of another probe set that would decide it, the failed change is not
    # judged by them: it stays undecided, naming why.
    v = run_checker(checker, _probes_failed(remove_run(300)).obs(), {})  # type: ignore[arg-type]
    assert v.status == Status.UNKNOWN and "failed: FeatureUnavailableError" in v.message
