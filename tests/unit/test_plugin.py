"""The pytest plugin, exercised with ``pytester``: options, header seed, marker, level filter."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

# Imported once, here: pytester's in-process runs drop the modules a run imported, and PyYAML
# imported again around its C extension (loaded once per process) leaves nodes untagged.
import dsrconform.topofile  # noqa: F401
from dsrconform import features, pytest_progress
from dsrconform import pytest_plugin as plugin
from dsrconform.report.collect import RunRecorder
from dsrconform.report.model import (
    RESULTS_FILE,
    TIMELINE_FILE,
    Results,
    decide_requirements,
    load_results,
)
from dsrconform.report.timeline import Timeline
from tests.unit.labfiles import BASIC, basic_without_gateway


def test_options_appear_in_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*dsrconform: DSR load-balancer conformance*"])
    for opt in (
        plugin.OPT_LAB,
        plugin.OPT_BACKEND,
        plugin.OPT_TARGET,
        plugin.OPT_MODE,
        plugin.OPT_FAMILY,
        plugin.OPT_LEVEL,
        plugin.OPT_SEED,
        plugin.OPT_RESULTS,
        plugin.OPT_KEEP_LAB,
    ):
        result.stdout.fnmatch_lines([f"*{opt}*"])


def test_header_shows_given_seed_and_fixture_sees_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_seed(dsr_seed):\n    assert dsr_seed == 1234\n")
    result = pytester.runpytest("--dsr-seed", "1234", "--dsr-target", "acme")
    result.stdout.fnmatch_lines(
        [
            "dsrconform: target=acme backend=netns mode=the lab file's (steady suite: every mode "
            "of the target) seed=1234 (given)"
        ]
    )
    result.assert_outcomes(passed=1)


def test_lab_tests_run_once_per_backend_and_mode_asked_for(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        SEEN = []

        def test_a(dsr_platform):
            SEEN.append(dsr_platform)

        def test_b(dsr_platform):
            SEEN.append(dsr_platform)

        def test_no_lab():
            pass

        def test_zz_last():
            # Each platform's tests together (one lab up at a time), each platform once.
            assert len(SEEN) == 8
            firsts = [p for n, p in enumerate(SEEN) if n == 0 or SEEN[n - 1] != p]
            assert firsts == [("netns", "encap", "ipv4"), ("netns", "server-nat", "ipv4"),
                              ("docker", "encap", "ipv4"), ("docker", "server-nat", "ipv4")]
        """
    )
    result = pytester.runpytest("-v", "-p", "no:randomly", "--dsr-backend", "netns,docker",
                                "--dsr-mode", "encap,server-nat")  # fmt: skip
    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(
        ["*backend=netns,docker mode=encap,server-nat*",
         "*test_a?netns-encap? PASSED*", "*test_b?docker-server-nat? PASSED*"],
        consecutive=False,
    )  # fmt: skip
    one = pytester.runpytest("-v", "--dsr-mode", "gateway-nat")
    one.assert_outcomes(failed=1, passed=3)  # test_zz_last counts 8
    one.stdout.fnmatch_lines(["*::test_a PASSED*"])  # one platform: ids unchanged


EVERY_MODE_TESTS = """
    import pytest

    SEEN = []

    @pytest.mark.dsr_every_mode
    def test_steady(dsr_platform):
        SEEN.append(("steady", dsr_platform))

    def test_fault(dsr_platform):
        SEEN.append(("fault", dsr_platform))

    def test_zz_last():
        print("SEEN", sorted(SEEN))
"""


@pytest.mark.parametrize(
    ("drop_gateway", "modes"),
    [(False, ["encap", "gateway-nat", "server-nat"]), (True, ["encap", "server-nat"])],
)
def test_without_a_mode_marked_tests_run_in_every_mode_the_target_and_lab_allow(
    pytester: pytest.Pytester, drop_gateway: bool, modes: list[str]
) -> None:
    """The default run covers every rewrite mode of the target (the reference: three) that the
    lab file can run (gateway-nat needs a gateway node): marked tests in each, the others in
    the lab file's mode only, named."""
    lab = basic_without_gateway() if drop_gateway else BASIC.read_text()
    (pytester.path / "lab.yaml").write_text(lab)
    pytester.makepyfile(EVERY_MODE_TESTS)
    result = pytester.runpytest("-s", "-v", "--dsr-lab", str(pytester.path / "lab.yaml"))
    result.assert_outcomes(passed=len(modes) + 2)
    want = sorted(
        [("fault", ("netns", "encap", "ipv4"))] + [("steady", ("netns", m, "ipv4")) for m in modes]
    )
    assert f"SEEN {want}" in result.stdout.str()
    result.stdout.fnmatch_lines(["*test_steady?netns-server-nat? PASSED*"])
    # Asked for modes: exactly those, for every test.
    one = pytester.runpytest(
        "-s", "-v", "--dsr-lab", str(pytester.path / "lab.yaml"), "--dsr-mode", "server-nat"
    )
    want = [("fault", ("netns", "server-nat", "ipv4")), ("steady", ("netns", "server-nat", "ipv4"))]
    assert f"SEEN {want}" in one.stdout.str()


@pytest.mark.parametrize(
    ("opt", "value"),
    [("--dsr-backend", "vm"), ("--dsr-mode", "encap,nat"), ("--dsr-backend", "netns,netns")],
)
def test_bad_backend_or_mode_is_a_usage_error(
    pytester: pytest.Pytester, opt: str, value: str
) -> None:
    result = pytester.runpytest(opt, value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{opt}*"])


def test_header_prints_a_random_seed_to_replay(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["dsrconform: target=reference * seed=* (random; replay with *)"])
    line = next(x for x in result.outlines if x.startswith("dsrconform: target="))
    seed = line.split("seed=")[1].split()[0]
    assert f"--dsr-seed {seed}" in line


def test_bad_seed_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--dsr-seed", "lots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--dsr-seed*takes an integer*"])


def test_requirement_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.requirement(*ids)*"])
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.requirement("RW-1", "RW-2")
        def test_marked():
            pass
        """
    )
    strict = pytester.runpytest("--strict-markers")
    strict.assert_outcomes(passed=1)


def test_unknown_requirement_id_stops_collection(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.requirement("RW-999")
        def test_marked():
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_marked*unknown requirement ID(s) 'RW-999'*"])


def test_level_deselects_less_strict_requirements(pytester: pytest.Pytester) -> None:
    # RW-1 is MUST, RW-7 is SHOULD, SC-5 is MAY (dsrconform.spec).
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.requirement("RW-1")
        def test_must():
            pass

        @pytest.mark.requirement("RW-7")
        def test_should():
            pass

        @pytest.mark.requirement("SC-5")
        def test_may():
            pass

        def test_unmarked():
            pass
        """
    )
    pytester.runpytest("--dsr-level", "MAY").assert_outcomes(passed=4)
    pytester.runpytest("--dsr-level", "SHOULD").assert_outcomes(passed=3, deselected=1)
    pytester.runpytest("--dsr-level", "MUST").assert_outcomes(passed=2, deselected=2)
    pytester.runpytest().assert_outcomes(passed=2, deselected=2)  # MUST, as dsrconform run


def test_a_case_of_a_scenario_built_for_a_should_runs_only_at_should(
    pytester: pytest.Pytester,
) -> None:
    # SC-3 is MUST, SF-3 SHOULD: SC-3 judged inside SF-3's scenario is not a MUST run's cost.
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.requirement("SC-3")
        def test_sc3_in_scale():
            pass

        @pytest.mark.dsr_scenario_for("SF-3")
        @pytest.mark.requirement("SC-3")
        def test_sc3_in_flood_scale():
            pass
        """
    )
    pytester.runpytest("--dsr-level", "MUST").assert_outcomes(passed=1, deselected=1)
    pytester.runpytest("--dsr-level", "SHOULD").assert_outcomes(passed=2)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.dsr_scenario_for("XX-9")
        def test_typo():
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*dsr_scenario_for('XX-9'): one known requirement ID expected*"])


def test_requirement_option_keeps_only_tests_citing_one_of_them(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.requirement("RW-1")
        def test_rw1():
            pass

        @pytest.mark.requirement("MF-1", "AF-1")
        def test_mf1_af1():
            pass

        @pytest.mark.requirement("RB-4")
        def test_rb4():
            pass

        def test_unmarked():
            pass
        """
    )
    result = pytester.runpytest("-v", "--dsr-requirement", "AF-1,RB-4")
    result.assert_outcomes(passed=2, deselected=2)
    result.stdout.fnmatch_lines(["*test_mf1_af1 PASSED*", "*test_rb4 PASSED*"])
    pytester.runpytest("--dsr-requirement", "RW-1", "--dsr-requirement", "RB-4").assert_outcomes(
        passed=2, deselected=2
    )
    bad = pytester.runpytest("--dsr-requirement", "XX-9")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--dsr-requirement: unknown requirement ID(s) 'XX-9'*"])


def test_a_failed_scenario_runs_once_and_leaves_its_tests_undecided(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        import pytest
        import dsrconform.chaos.traffic
        from types import SimpleNamespace

        CALLS = []

        def broken(lab, scenario, mix, **kw):
            CALLS.append(mix.seed)
            raise RuntimeError("the MUX never came back")

        @pytest.fixture(scope="session")
        def dsr_lab(monkeypatch_session):
            return SimpleNamespace(topology=SimpleNamespace(services=[]))

        @pytest.fixture(scope="session")
        def monkeypatch_session():
            mp = pytest.MonkeyPatch()
            mp.setattr(dsrconform.chaos.traffic, "observe_scenario", broken)
            yield mp
            mp.undo()
        """
    )
    pytester.makepyfile(
        """
        import pytest
        from conftest import CALLS

        @pytest.mark.requirement("MF-1")
        def test_one(dsr_scenario):
            dsr_scenario("mux-kill")

        @pytest.mark.requirement("MF-2")
        def test_two(dsr_scenario):
            dsr_scenario("mux-kill")

        def test_ran_once():
            assert len(CALLS) == 1

        def test_unknown_name(dsr_scenario):
            dsr_scenario("no-such-scenario")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--dsr-seed", "5", "-rE")
    result.assert_outcomes(passed=1, failed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*scenario mux-kill failed: RuntimeError: the MUX never came back*",
            "*scenario mux-kill failed earlier in this session: RuntimeError*",
            "*unknown dsrconform scenario 'no-such-scenario'; known: steady, syn-flood*",
        ]
    )


CHECKS = """
import pytest
from tests.unit.observations_builder import one_conn_obs as obs


@pytest.mark.requirement("RW-1")
def test_pass(dsr_check):
    dsr_check(obs(), "RW-1")

@pytest.mark.requirement("RW-1")
def test_fail(dsr_check):
    dsr_check(obs(broken=True), "RW-1")

@pytest.mark.requirement("RW-1")
def test_unknown(dsr_check):
    dsr_check(obs(), "RW-1", params={"RW-1": {"min_flows": 5}})
"""


def test_dsr_check_passes_fails_and_never_passes_unknown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_checks=CHECKS)
    results = pytester.path / "results"
    result = pytester.runpytest_inprocess("--dsr-results", str(results), "-rfE", "-v")
    result.assert_outcomes(passed=1, failed=1, errors=1)  # UNKNOWN: an error, not a failure
    result.stdout.fnmatch_lines(
        [
            "*::test_pass PASSED*",
            "*::test_fail FAILED*",
            "*::test_unknown ERROR*",
            "*ERROR at call of test_unknown*",
            "*RequirementUnknown: RW-1 UNKNOWN: cannot decide*",
            "*missing: replies of 1 recorded flows*",  # the evidence stays in the longrepr
            "*RW-1 FAIL: *",
            "*evidence: reply from 198.18.20.3:8080*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*short test summary info*",
            "FAILED test_checks.py::test_fail - *RW-1 FAIL*",
            "ERROR test_checks.py::test_unknown - *RequirementUnkn*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    tests = load_results(results).tests
    assert [(t.nodeid.split("::")[1], [v.status for v in t.verdicts]) for t in tests] == [
        ("test_pass", ["PASS"]),
        ("test_fail", ["FAIL"]),
        ("test_unknown", ["UNKNOWN"]),
    ]
    assert tests[1].verdicts[0].evidence[0].message.startswith("reply from 198.18.20.3:8080")


# RW-7 is SHOULD, AF-1 MUST, RW-3 MUST (dsrconform.spec); obs() passes RW-1, RW-3, AF-1 and is
# UNKNOWN for RW-4.
MORE = """

@pytest.mark.requirement("RW-7")
def test_no_verdict():
    pass

@pytest.mark.requirement("AF-1")
def test_skipped():
    pytest.skip("needs root")

@pytest.mark.requirement("RW-3", "RW-4")
def test_own_assert_after_a_pass(dsr_check):
    dsr_check(obs(), "RW-3")
    assert 1 == 2, "own check"

@pytest.mark.requirement("AF-1")
def test_af1(dsr_check):
    dsr_check(obs(), "AF-1")
"""


def _results(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, Results]:
    results = pytester.path / "results"
    result = pytester.runpytest_inprocess("--dsr-results", str(results), *args)
    return result, load_results(results)


def test_results_json_worst_status_per_requirement(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_checks=CHECKS + MORE)
    pytester.path.joinpath("labs").mkdir()
    pytester.path.joinpath("labs/basic.yaml").write_text("nodes: {}\n")
    result, res = _results(
        pytester, "--dsr-seed", "77", "--dsr-mutant", "modulo-hash", "--dsr-level", "MAY"
    )
    result.assert_outcomes(passed=3, failed=2, errors=1, skipped=1)
    reqs = res.requirements
    assert list(reqs) == ["RW-1", "RW-3", "RW-4", "RW-7", "AF-1"]  # catalogue order
    rw1 = reqs["RW-1"]
    assert (rw1.level, rw1.status) == ("MUST", "FAIL")  # FAIL > UNKNOWN > PASS
    assert rw1.message.startswith("1 reply records came from another address")
    assert [(t.test.split("::")[1], t.outcome, t.status) for t in rw1.tests] == [
        ("test_pass", "passed", "PASS"),
        ("test_fail", "failed", "FAIL"),
        ("test_unknown", "error", "UNKNOWN"),
    ]
    # the test failed on its own assertion although RW-3's verdict PASSed: RW-3 and RW-4 fail
    assert reqs["RW-3"].status == reqs["RW-4"].status == "FAIL"
    assert "own check" in reqs["RW-3"].message
    assert (reqs["RW-7"].level, reqs["RW-7"].status) == ("SHOULD", "PASS")
    # a skip decides nothing: UNKNOWN is worse than the PASS of test_af1
    af1 = reqs["AF-1"]
    assert (af1.status, af1.message) == ("UNKNOWN", "Skipped: needs root")
    assert [t.status for t in af1.tests] == ["UNKNOWN", "PASS"]
    run = res.run
    assert run.seed == 77
    assert run.environment.features == features.probed(), "the features the traffic probed"
    assert run.environment.kernel == os.uname().release
    assert run.environment.tools["dsrconform"] == "0.1.0"
    assert (run.target, run.target_version, run.mutant, run.backends, run.modes) == (
        "reference",
        "dsrconform 0.1.0",
        "modulo-hash",
        ["netns"],
        [],
    )
    assert run.lab == str(pytester.path / "labs/basic.yaml")
    assert run.lab_sha256 == hashlib.sha256(b"nodes: {}\n").hexdigest()
    assert run.level == "MAY"
    assert run.exit_status == pytest.ExitCode.TESTS_FAILED
    assert "--dsr-seed 77" in run.replay and run.replay.startswith("pytest ")
    assert run.stopped is not None and run.started <= run.stopped
    assert run.started.tzinfo is not None
    assert res.verdict() == "FAIL" and res.counts()["MUST"] == {
        "PASS": 0,
        "FAIL": 3,
        "UNKNOWN": 1,
        "NOT APPLICABLE": 0,
    }
    # the terminal section: one line per requirement
    result.stdout.fnmatch_lines(
        [
            "*= dsrconform: requirements =*",
            "RW-1   MUST   FAIL    1 reply records came from another address than the VIP:port",
            "RW-3   MUST   FAIL    AssertionError: own check",
            "RW-4   MUST   FAIL    AssertionError: own check",
            "RW-7   SHOULD PASS    test passed (no verdict recorded)",
            "AF-1   MUST   UNKNOWN Skipped: needs root",
        ]
    )


def test_results_follow_the_level_filter_and_exit_status(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_checks=CHECKS + MORE)
    result, res = _results(pytester, "--dsr-level", "MUST", "-k", "test_pass or no_verdict")
    result.assert_outcomes(passed=1, deselected=6)
    assert list(res.requirements) == ["RW-1"]  # RW-7 (SHOULD) was deselected
    assert res.requirements["RW-1"].status == "PASS"
    assert (res.run.level, res.run.exit_status) == ("MUST", 0)
    assert "--dsr-seed" in res.run.replay, "a random seed is named in the replay command"


def test_no_terminal_section_without_a_verdict(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_checks=CHECKS + MORE)
    result, res = _results(pytester, "-k", "no_verdict or skipped", "--dsr-level", "MAY")
    result.assert_outcomes(passed=1, skipped=1)
    assert "dsrconform: requirements" not in result.stdout.str()
    assert list(res.requirements) == ["RW-7", "AF-1"]  # results.json all the same


def test_no_results_without_results_dir(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_checks=CHECKS)
    result = pytester.runpytest_inprocess("-k", "test_pass")
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines(["*= dsrconform: requirements =*", "RW-1   MUST   PASS    *"])
    assert not list(pytester.path.rglob(RESULTS_FILE))


STALE = '{"schema_version": 1, "stale": true}'


def test_a_rerun_replaces_stale_results(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_checks=CHECKS)
    results = pytester.path / "results"
    results.mkdir()
    (results / RESULTS_FILE).write_text(STALE)
    result = pytester.runpytest_inprocess("--dsr-results", str(results), "-k", "test_pass")
    result.assert_outcomes(passed=1, deselected=2)
    res = load_results(results)
    assert [t.nodeid.split("::")[-1] for t in res.tests] == ["test_pass"]
    assert list(res.requirements) == ["RW-1"]


def test_an_xdist_worker_neither_clears_nor_writes_the_results(pytester: pytest.Pytester) -> None:
    # A worker is recognised by config.workerinput (set by pytest-xdist); fake one.
    pytester.makeconftest(
        "def pytest_configure(config):\n    config.workerinput = {'workerid': 'gw0'}\n"
    )
    pytester.makepyfile(test_checks=CHECKS)
    results = pytester.path / "results"
    results.mkdir()
    (results / RESULTS_FILE).write_text(STALE)
    result = pytester.runpytest_inprocess("--dsr-results", str(results), "-k", "test_pass")
    result.assert_outcomes(passed=1, deselected=2)
    assert (results / RESULTS_FILE).read_text() == STALE  # the controller writes it
    assert "dsrconform: requirements" not in result.stdout.str()


def test_results_are_the_same_from_reports_sent_by_an_xdist_worker(
    pytester: pytest.Pytester,
) -> None:
    # pytest-xdist ships reports to the controller through pytest_report_to_serializable; a
    # JSON round trip is stricter still (tuples come back as lists).
    import json

    pytester.makepyfile(test_checks=CHECKS + MORE)
    rec = pytester.inline_run("-k", "not test_pass", "--dsr-level", "MAY")
    reports = [r for r in rec.getreports("pytest_runtest_logreport") if r.when]
    config = pytester.parseconfig()
    hook = config.hook

    def trip(r: pytest.TestReport) -> Any:
        data = json.loads(json.dumps(hook.pytest_report_to_serializable(config=config, report=r)))
        return hook.pytest_report_from_serializable(config=config, data=data)

    local, remote = RunRecorder(), RunRecorder()
    for r in reports:
        local.pytest_runtest_logreport(r)
        remote.pytest_runtest_logreport(trip(r))
    decided = decide_requirements(remote.test_results())
    assert remote.test_results() == local.test_results()
    assert {k: v.status for k, v in decided.items()} == {
        "RW-1": "FAIL",
        "RW-3": "FAIL",
        "RW-4": "FAIL",
        "RW-7": "PASS",
        "AF-1": "UNKNOWN",
    }
    unknown = next(r for r in reports if r.nodeid.endswith("test_unknown") and r.when == "call")
    assert hook.pytest_report_teststatus(report=trip(unknown), config=config)[0] == "error"


SCENARIO_CONFTEST = """
import pytest
from types import SimpleNamespace
import dsrconform.chaos.traffic
from dsrconform.runfiles import save_observations
from tests.unit.observations_builder import Run

def fake_run(lab, scenario, mix, *, out_dir=None, **kw):
    run = Run()
    run.conn(1, 10.0, end_t=20.0, server="server1", mux="mux1")
    obs = run.obs()
    if out_dir is not None:
        save_observations(obs, out_dir)
    return SimpleNamespace(observations=obs)

@pytest.fixture(scope="session")
def dsr_lab(patched):
    return SimpleNamespace(topology=SimpleNamespace(services=[]))  # no service: no narrowing

@pytest.fixture(scope="session")
def patched():
    mp = pytest.MonkeyPatch()
    mp.setattr(dsrconform.chaos.traffic, "observe_scenario", fake_run)
    yield mp
    mp.undo()
"""


def test_each_scenario_directory_records_the_requirements_checked_on_it(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from dsrconform.cli import main

    pytester.makeconftest(SCENARIO_CONFTEST)
    pytester.makepyfile(
        """
        import pytest
        from tests.unit.observations_builder import Run

        @pytest.mark.requirement("AF-1")
        def test_af1(dsr_scenario, dsr_check):
            dsr_check(dsr_scenario("mux-kill").observations, "AF-1")

        @pytest.mark.requirement("RW-1")
        def test_rw1(dsr_scenario, dsr_check):
            obs = dsr_scenario("mux-kill").observations
            dsr_check(obs, "RW-1", params={"RW-1": {"min_flows": 1}})

        @pytest.mark.requirement("RW-3")
        def test_steady(dsr_steady, dsr_check):
            dsr_check(dsr_steady.observations, "RW-3")

        @pytest.mark.requirement("RW-2")
        def test_not_a_scenario(dsr_check):
            dsr_check(Run().obs(), "RW-2")  # no scenario's: recorded nowhere
        """
    )
    results = pytester.path / "results"
    result = pytester.runpytest_inprocess("--dsr-results", str(results), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)  # RW-2 of an empty run: UNKNOWN
    recorded = {
        p.parent.name: json.loads(p.read_text()) for p in results.glob("*/requirements.json")
    }
    assert recorded == {
        "mux-kill": {
            "scenario": "mux-kill",
            "requirements": ["RW-1", "AF-1"],
            "params": {"RW-1": {"min_flows": 1.0}},
        },
        "steady": {"scenario": "steady", "requirements": ["RW-3"], "params": {}},
    }
    # what the results model says each test judged, and each scenario's timeline for the report
    tests = {t.nodeid.split("::")[-1]: t for t in load_results(results).tests}
    assert {k: (t.scenario, t.run_dir) for k, t in tests.items()} == {
        "test_af1": ("mux-kill", "mux-kill"),
        "test_rw1": ("mux-kill", "mux-kill"),
        "test_steady": ("steady", "steady"),
        "test_not_a_scenario": (None, None),
    }
    for scenario in ("mux-kill", "steady"):
        timeline = Timeline.model_validate_json((results / scenario / TIMELINE_FILE).read_text())
        assert timeline.alive and max(timeline.alive) == 1  # the fake run's one connection
    capsys.readouterr()
    assert main(["check", str(results), "--json"]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert {
        k: [v["requirement"] for v in s["verdicts"]] for k, s in checked["scenarios"].items()
    } == {
        "mux-kill": ["RW-1", "AF-1"],
        "steady": ["RW-3"],
    }
    assert checked["changed"] == {}  # judged again as the run recorded it
    assert main(["check", str(results), "--json", "--set", "RW-1.min_flows=50"]) == 1
    assert json.loads(capsys.readouterr().out)["changed"] == {"RW-1": "PASS -> UNKNOWN"}
    (results / RESULTS_FILE).write_text('{"schema_version": 7}')  # judging needs it not
    assert main(["check", str(results), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["changed"] == {}
    assert "not compared with what the run recorded" in captured.err


PROGRESS_CONFTEST = """
import time
import pytest
from types import SimpleNamespace
import dsrconform.chaos.traffic

def fake_run(lab, scenario, mix, *, progress, **kw):
    progress("traffic under way")
    time.sleep(0.4)
    progress("kill mux2")
    return SimpleNamespace(observations=None)

@pytest.fixture(scope="session")
def dsr_lab(patched):
    return SimpleNamespace(topology=SimpleNamespace(services=[]))  # no service: no narrowing

@pytest.fixture(scope="session")
def patched():
    mp = pytest.MonkeyPatch()
    mp.setattr(dsrconform.chaos.traffic, "observe_scenario", fake_run)
    yield mp
    mp.undo()
"""

PROGRESS_TEST = """
def test_scenario(dsr_scenario):
    print("the test's own output stays captured")
    dsr_scenario("mux-kill")
"""


def test_a_running_scenario_says_what_it_is_doing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(PROGRESS_CONFTEST)
    pytester.makepyfile(PROGRESS_TEST)
    monkeypatch.setattr(pytest_progress, "_heartbeat", lambda tr: 0.1)  # a terminal, but quicker
    result = pytester.runpytest_inprocess("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_scenario ",
            "dsrconform: scenario mux-kill    0.0 s  starting: a MUX killed, withdrawn, *",
            "dsrconform: scenario mux-kill    0.0 s  traffic under way",
            "dsrconform: scenario mux-kill    0.? s  (running) traffic under way",
            "dsrconform: scenario mux-kill    0.? s  kill mux2",
            "dsrconform: scenario mux-kill    0.? s  done",
            "*::test_scenario PASSED*",
        ]
    )
    assert "stays captured" not in result.stdout.str()
    said = [x.split(" s  ")[1] for x in result.outlines if x.startswith("dsrconform: scenario")]
    running = said[2:-2]  # a line per 0.1 s of silence only: none right after a phase
    assert said[1:2] + said[-2:] == ["traffic under way", "kill mux2", "done"]
    assert running and set(running) == {"(running) traffic under way"}


def test_progress_off_a_terminal_is_a_line_per_phase(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(PROGRESS_CONFTEST)
    pytester.makepyfile(PROGRESS_TEST)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")  # not a terminal
    result.assert_outcomes(passed=1)
    lines = [x.split(" s  ")[1] for x in result.outlines if x.startswith("dsrconform: scenario")]
    assert [x.split(":")[0] for x in lines] == [
        "starting",
        "traffic under way",
        "kill mux2",
        "done",
    ]


def test_a_lab_coming_up_says_so(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contextlib import contextmanager
    from types import SimpleNamespace

    from dsrconform.lab import Lab

    @contextmanager
    def up(*a: Any, **kw: Any) -> Iterator[Any]:
        yield SimpleNamespace(ready_seconds=2.5)

    monkeypatch.setattr(Lab, "up", up)
    monkeypatch.setattr(plugin.os, "geteuid", lambda: 0)
    pytester.makepyfile("def test_lab(dsr_lab):\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "dsrconform: lab s*    0.0 s  starting: */labs/basic.yaml, netns, its mode",
            "dsrconform: lab s*    0.0 s  up (ready 2.5 s after deploying)",
        ]
    )


CAPTURE_CONFTEST = """
import json
import pytest
from types import SimpleNamespace
import dsrconform.chaos.traffic
from tests.unit.observations_builder import Run

def fake_run(lab, scenario, mix, *, out_dir=None, capture=False, **kw):
    with open("capture.json", "w") as f:
        json.dump({"capture": capture}, f)
    return SimpleNamespace(observations=Run().obs(), captures=[], counts={}, started=0.0)

@pytest.fixture(scope="session")
def dsr_lab(patched):
    return SimpleNamespace(topology=SimpleNamespace(services=[]))  # no service: no narrowing

@pytest.fixture(scope="session")
def patched():
    mp = pytest.MonkeyPatch()
    mp.setattr(dsrconform.chaos.traffic, "observe_scenario", fake_run)
    yield mp
    mp.undo()
"""


@pytest.mark.parametrize(
    ("args", "captured"),
    [
        ((), False),
        (("--dsr-results", "r"), True),
        (("--dsr-results", "r", "--dsr-no-evidence"), False),
    ],
)
def test_scenarios_capture_packets_for_evidence_only_with_results_and_unless_told_not(
    pytester: pytest.Pytester, args: tuple[str, ...], captured: bool
) -> None:
    import json

    pytester.makeconftest(CAPTURE_CONFTEST)
    pytester.makepyfile("def test_one(dsr_scenario):\n    dsr_scenario('steady')\n")
    pytester.runpytest_inprocess(*args, "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert json.loads((pytester.path / "capture.json").read_text()) == {"capture": captured}
