"""Run profiles (dsrconform.profiles) and their wiring in the pytest plugin: which tests a
profile keeps on which platform, the variants its runs are built from, the coverage table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

# Imported once, here (as tests/unit/test_plugin.py does): pytester's in-process runs drop the
# modules a run imported, and PyYAML imported again leaves nodes untagged.
import dsrconform.topofile  # noqa: F401
from dsrconform.chaos.mixes import GATE_MIX, KILL_MIX, MIXES
from dsrconform.chaos.suite import SCENARIOS
from dsrconform.profiles import (
    FULL,
    GATE,
    GATE_PROBE_FLOWS,
    PROFILES,
    QUICK,
    STEADY_KILL,
    coverage_table,
    get_profile,
)
from dsrconform.runopts import PROFILES as PROFILE_NAMES
from dsrconform.spec import BY_ID
from dsrconform.target import load_target
from tests.unit.labfiles import basic_without_gateway

REPO = Path(__file__).resolve().parents[2]
BASIC = str(REPO / "labs" / "basic.yaml")

PROFILE_TESTS = """
    import pytest

    def _p(*case):
        return pytest.param(*case, marks=pytest.mark.requirement(case[-1]), id="-".join(case))

    @pytest.mark.dsr_every_mode
    @pytest.mark.dsr_scenario("steady")
    @pytest.mark.parametrize("req", [_p("RW-2"), _p("DP-1")])
    def test_steady(req, dsr_platform):
        pass

    # No marker: the scenario comes from the "scenario" parameter.
    @pytest.mark.parametrize(("scenario", "req"), [
        _p("mux-kill", "MF-1"), _p("mux-kill", "MF-2"), _p("scale", "SC-1"),
        _p("flood-scale", "SC-3"), _p("syn-flood", "SF-1"), _p("hostile", "RB-4"),
    ])
    def test_fault(scenario, req, dsr_platform):
        pass

    def test_no_lab():
        pass
"""


def _selected(pytester: pytest.Pytester, *args: str) -> set[str]:
    """The node ids a collect-only run keeps (file name dropped)."""
    result = pytester.runpytest("--collect-only", "-q", "--dsr-lab", BASIC, *args)
    return {
        line.split("::", 1)[1]
        for line in result.stdout.lines
        if "::" in line and not line.startswith(" ")
    }


def test_quick_keeps_the_tests_its_runs_judge_on_their_platforms(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(PROFILE_TESTS)
    assert _selected(pytester, "--dsr-profile", "quick") == {
        # the gate run, in server-nat: RW-2 (not DP-1), SC-1 (not flood-scale's SC-3), RB-4
        "test_steady[netns-server-nat-RW-2]",
        "test_fault[netns-server-nat-scale-SC-1]",
        "test_fault[netns-server-nat-hostile-RB-4]",
        # the kill run, in gateway-nat: every steady MUST, and MF-1 (not MF-2)
        "test_steady[netns-gateway-nat-RW-2]",
        "test_steady[netns-gateway-nat-DP-1]",
        "test_fault[netns-gateway-nat-mux-kill-MF-1]",
        "test_no_lab",
    }


def test_full_keeps_every_test_in_the_usual_modes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PROFILE_TESTS)
    every = {
        *(
            f"test_steady[netns-{m}-{r}]"
            for m in ("encap", "server-nat", "gateway-nat")
            for r in ("RW-2", "DP-1")
        ),
        *(
            f"test_fault[netns-encap-{c}]"
            for c in (
                "mux-kill-MF-1",
                "mux-kill-MF-2",
                "scale-SC-1",
                "flood-scale-SC-3",
                "syn-flood-SF-1",
                "hostile-RB-4",
            )
        ),
        "test_no_lab",
    }
    assert _selected(pytester) == every
    assert _selected(pytester, "--dsr-profile", "full") == every


def test_quick_in_a_mode_asked_for_runs_only_its_main_run_there(
    pytester: pytest.Pytester,
) -> None:
    """--dsr-mode names the main platform: the gate run stands in there; the kill run, tied
    to gateway-nat as an extra platform, does not run (MF-1 is left out)."""
    pytester.makepyfile(PROFILE_TESTS)
    assert _selected(pytester, "--dsr-profile", "quick", "--dsr-mode", "encap") == {
        "test_steady[RW-2]",
        "test_fault[scale-SC-1]",
        "test_fault[hostile-RB-4]",
        "test_no_lab",
    }


def test_quick_in_both_modes_asked_for_runs_each_run_in_its_mode(
    pytester: pytest.Pytester,
) -> None:
    """A run tied to a mode stands in on any platform of that mode, also one --dsr-mode asked
    for: with server-nat and gateway-nat asked, the kill run still judges MF-1 in gateway-nat."""
    pytester.makepyfile(PROFILE_TESTS)
    got = _selected(pytester, "--dsr-profile", "quick", "--dsr-mode", "server-nat,gateway-nat")
    assert "test_fault[netns-gateway-nat-mux-kill-MF-1]" in got
    assert "test_fault[netns-server-nat-scale-SC-1]" in got
    assert "test_fault[netns-server-nat-mux-kill-MF-1]" not in got  # the gate run judges no MF


def test_the_header_says_a_run_whose_mode_no_platform_has_does_not_run() -> None:
    text = "\n".join(coverage_table(QUICK, {"encap"}))
    assert "run steady-kill in gateway-nat -- NOT RUN here" in text
    assert "NOT RUN" not in "\n".join(coverage_table(QUICK, {"server-nat", "gateway-nat"}))


def test_a_lab_without_a_gateway_runs_quick_in_server_nat_only(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "lab.yaml").write_text(basic_without_gateway())
    pytester.makepyfile(PROFILE_TESTS)
    path = str(pytester.path / "lab.yaml")
    result = pytester.runpytest("--collect-only", "-q", "--dsr-profile", "quick", "--dsr-lab", path)
    ids = {ln.split("::", 1)[1] for ln in result.stdout.lines if "::" in ln}
    # One platform left (server-nat, named by the profile, not the lab file's encap): no ids.
    assert ids == {
        "test_steady[RW-2]",
        "test_fault[scale-SC-1]",
        "test_fault[hostile-RB-4]",
        "test_no_lab",
    }


def test_quick_scenarios_run_their_profile_variant(pytester: pytest.Pytester) -> None:
    """dsr_scenario runs the profile's variant, once for every scenario it stands in for."""
    pytester.makeconftest(
        """
        import pytest
        from types import SimpleNamespace
        import dsrconform.chaos.traffic

        RAN = []

        def fake_run(lab, scenario, mix, **kw):
            RAN.append((mix, scenario.name, bool(scenario.method)))
            return SimpleNamespace(observations=object())

        @pytest.fixture(scope="session")
        def dsr_lab():
            mp = pytest.MonkeyPatch()
            mp.setattr(dsrconform.chaos.traffic, "observe_scenario", fake_run)
            yield SimpleNamespace(topology=SimpleNamespace(services=[]))
            mp.undo()
        """
    )
    pytester.makepyfile(
        """
        import pytest
        from conftest import RAN
        from dsrconform.chaos.mixes import GATE_MIX

        @pytest.mark.requirement("RW-2")
        @pytest.mark.dsr_scenario("steady")
        def test_a(dsr_scenario):
            dsr_scenario("steady")

        @pytest.mark.requirement("SC-1")
        @pytest.mark.dsr_scenario("scale")
        def test_b(dsr_scenario):
            dsr_scenario("scale")

        def test_zz_last():
            from dataclasses import replace
            assert RAN == [(replace(GATE_MIX, seed=7), "gate", True)]
        """
    )
    result = pytester.runpytest(
        "-p",
        "no:randomly",
        "--dsr-profile",
        "quick",
        "--dsr-mode",
        "server-nat",
        "--dsr-lab",
        BASIC,
        "--dsr-seed",
        "7",
    )
    result.assert_outcomes(passed=3)


def test_header_prints_the_coverage_table_for_quick_only(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    quick = pytester.runpytest("--dsr-profile", "quick", "--dsr-lab", BASIC)
    quick.stdout.fnmatch_lines(
        [
            "dsrconform: profile quick: *",
            "dsrconform:   run gate in server-nat (main platform): *",
            "dsrconform:     for scale tests: SC-1, SC-3, SC-4",
            "dsrconform:   run steady-kill in gateway-nat: *",
            "dsrconform:     for mux-kill tests: MF-1",
            "dsrconform:   left to the full run:",
        ]
    )
    full = pytester.runpytest("--dsr-profile", "full", "--dsr-lab", BASIC)
    assert "profile" not in full.stdout.str()


def test_the_profiles_are_those_dsrconform_run_offers() -> None:
    assert set(PROFILES) == set(PROFILE_NAMES)
    assert get_profile(None) is FULL
    assert get_profile("quick") is QUICK
    with pytest.raises(KeyError):
        get_profile("nightly")


def test_full_runs_the_scenarios_as_they_are() -> None:
    for name, sc in SCENARIOS.items():
        assert FULL.variant(name, "server-nat", extra=False) is sc
        assert FULL.selects(name, "gateway-nat", ["MF-1"], extra=True)


def test_quick_stands_in_for_scenarios_with_its_runs() -> None:
    gate = QUICK.variant("steady", "server-nat", extra=False)
    assert gate.name == "gate"
    assert QUICK.variant("scale", "server-nat", extra=False) is gate
    assert QUICK.variant("hostile", "encap", extra=False) is gate
    kill = QUICK.variant("mux-kill", "gateway-nat", extra=True)
    assert kill.name == "steady-kill"
    assert QUICK.variant("steady", "gateway-nat", extra=True) is kill
    # Not stood in for: the full scenario (its tests are deselected anyway).
    assert QUICK.variant("syn-flood", "server-nat", extra=False) is SCENARIOS["syn-flood"]
    assert QUICK.variant("mux-kill", "server-nat", extra=False) is SCENARIOS["mux-kill"]
    assert QUICK.run_for("steady", "encap", extra=True) is None
    assert not QUICK.selects("steady", "server-nat", ["DP-1"], extra=False)
    assert QUICK.selects("steady", "gateway-nat", ["DP-1"], extra=True)
    assert QUICK.selects(None, "server-nat", ["RW-1"], extra=False)


def test_quick_mixes_are_short_and_fit_their_faults() -> None:
    def seconds(mix: Any) -> float:
        return float(mix.stream_bytes / mix.stream_rate)

    full_seconds = seconds(MIXES[SCENARIOS["scale"].traffic.mix])
    # The gate's streams stay open across both changes and the hostile packets (~11 s from
    # the first probes), shorter than the full scale scenario's.
    assert 11.0 <= seconds(GATE_MIX) < full_seconds
    assert GATE_MIX.short_reuse_ports == 16  # reused tuples meet each change (AF-1)
    # New connections go on after the streams, past the hostile packets at the fault's end
    # (RB-1 counts the attempts after them).
    assert seconds(GATE_MIX) <= GATE_MIX.short_conns / GATE_MIX.short_rate <= 16.0
    assert GATE_MIX.icmp_errors > 0 and GATE_MIX.uploads > 0  # RW-6 judged on it
    # AF-4's floor: enough new flows for the first TCP service.
    assert GATE_MIX.short_conns >= 3 * BY_ID["AF-4"].defaults()["min_samples"]
    # The kill run's streams outlast the kill (~3 s in) and its return (~3 s later).
    assert 6.0 <= seconds(KILL_MIX) <= 8.0
    assert KILL_MIX.short_conns >= BY_ID["AF-4"].defaults()["min_samples"]


def test_quick_runs_are_the_full_faults_with_shorter_parameters() -> None:
    assert GATE.traffic.mix == "gate" and STEADY_KILL.traffic.mix == "kill"
    drain, hostile = (a.faulty() for a in GATE.method)
    assert drain.kind == "server-drain"  # the drain and the making active again only
    assert drain.probe and drain.server_index == 1  # as the full scale scenario's drain
    assert BY_ID["SC-4"].defaults()["min_tuples"] <= drain.probe_flows == GATE_PROBE_FLOWS
    assert GATE_PROBE_FLOWS < 2048  # fewer than the full probes (SC-2 is not judged)
    assert hostile.kind == "hostile-packets" and hostile.repeats < 20
    assert GATE.method[1].after == "drain"  # the hostile packets once the drain is undone
    (kill,) = STEADY_KILL.method
    (full_kill,) = SCENARIOS["mux-kill"].method
    assert kill.faulty().kind == full_kill.faulty().kind == "mux-kill"
    assert kill.duration is not None and full_kill.duration is not None
    assert kill.duration < full_kill.duration and kill.start() < full_kill.start()


def test_quick_judges_known_requirements_and_no_should_it_cannot_decide() -> None:
    for run in QUICK.runs or ():
        for scenario, ids in run.judges.items():
            assert scenario in SCENARIOS
            for i in ids:
                assert i in BY_ID
            # Too few flows or probes in a short run: left out, not UNKNOWN.
            assert not {"AF-3", "SC-2", "DP-2", "RB-3"} & set(ids)


def test_every_mutant_is_accounted_for_in_the_quick_table() -> None:
    names = {m.name for m in load_target("reference").mutants()}
    meant = [m for run in QUICK.runs or () for m in run.mutants]
    assert len(meant) == len(set(meant))  # each meant for one run
    left = {what for what, _ in QUICK.left_out if what in names}
    assert set(meant) | left == names
    assert not set(meant) & left
    # What each run is meant to catch is a plan; what it catches is measured by
    # `dsrconform bench quick` (15 of 16 on 2026-12-07), not here.


def test_coverage_table_names_runs_modes_requirements_and_mutants() -> None:
    lines = coverage_table(QUICK)
    text = "\n".join(lines)
    assert lines[0] == f"profile quick: {QUICK.about}"
    for run in QUICK.runs or ():
        assert f"run {run.scenario.name} in " in text
        for scenario, ids in run.judges.items():
            assert f"    for {scenario} tests: {', '.join(ids)}" in lines
        assert f"    mutants meant to be caught: {', '.join(run.mutants)}" in lines
    kill = QUICK.variant("mux-kill", "gateway-nat", extra=True)
    assert f"  run steady-kill in gateway-nat: {kill.description}" in lines
    for what, why in QUICK.left_out:
        assert f"    {what}: {why}" in lines
    assert coverage_table(FULL) == [f"profile full: {FULL.about}"]


def test_bench_quick_tells_fail_catches_from_unknown_ones() -> None:
    from dsrconform.bench import quick

    assert quick.verdict(1, {"RW-2": "FAIL", "RB-1": "UNKNOWN"}) == quick.CAUGHT
    assert quick.verdict(1, {"RW-2": "PASS", "RB-1": "UNKNOWN"}) == quick.UNKNOWN_ONLY
    assert quick.verdict(0, {"RW-2": "PASS"}) == quick.MISSED
    assert quick.verdict(1, {}) == quick.BROKEN  # exit 1 without a verdict: not a catch
    assert quick.verdict(4, {"RW-2": "FAIL"}) == quick.BROKEN


def test_bench_quick_summary_counts_only_fail_catches_in_the_share() -> None:
    from dsrconform.bench import quick

    correct = [{"seconds": 55.0, "exit": 0}, {"seconds": 61.0, "exit": 0}]
    verdicts = [quick.CAUGHT] * 4 + [quick.UNKNOWN_ONLY, quick.MISSED]
    mutants = [{"mutant": f"m{i}", "verdict": v} for i, v in enumerate(verdicts)]
    out = quick.summary(correct, mutants)
    assert (out["caught"], out["caught_unknown_only"], out["missed"]) == (4, 1, 1)
    assert out["share"] == round(4 / 6, 3)
    assert not out["share_ok"]  # 67% < 80%
    assert not out["time_ok"]  # one correct run over 60 s
    assert out["correct_passed"] == 2
    assert quick.summary(correct[:1], mutants[:4])["share_ok"]
