"""The pytest plugin, exercised with ``pytester``: options, header seed, marker, level filter."""

from __future__ import annotations

import pytest

from dsrconform import pytest_plugin as plugin


def test_options_appear_in_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*dsrconform: DSR load-balancer conformance*"])
    for opt in (
        plugin.OPT_LAB,
        plugin.OPT_BACKEND,
        plugin.OPT_TARGET,
        plugin.OPT_MODE,
        plugin.OPT_LEVEL,
        plugin.OPT_SEED,
        plugin.OPT_RESULTS,
        plugin.OPT_KEEP_LAB,
    ):
        result.stdout.fnmatch_lines([f"*{opt}*"])


def test_header_shows_given_seed_and_fixture_sees_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_seed(dsr_seed):\n    assert dsr_seed == 1234\n")
    result = pytester.runpytest("--dsr-seed", "1234", "--dsr-target", "acme")
    result.stdout.fnmatch_lines(["dsrconform: target=acme backend=netns seed=1234 (given)"])
    result.assert_outcomes(passed=1)


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
    pytester.runpytest().assert_outcomes(passed=4)
    pytester.runpytest("--dsr-level", "SHOULD").assert_outcomes(passed=3, deselected=1)
    pytester.runpytest("--dsr-level", "MUST").assert_outcomes(passed=2, deselected=2)


CHECKS = """
import pytest
from tests.unit.observations_builder import SERVER_ADDR, Run

def obs(broken=False):
    run = Run()
    run.conn(1, 10.0, end_t=20.0, server="server1", mux="mux1")
    if broken:
        run.conn(2, 11.0, end_t=21.0, reply_src=(SERVER_ADDR["server3"], 8080))
    return run.obs()

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
    import json

    pytester.makepyfile(test_checks=CHECKS)
    results = pytester.path / "results"
    result = pytester.runpytest_inprocess("--dsr-results", str(results), "-rf")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*RW-1 FAIL: *",
            "*evidence: reply from 198.18.20.3:8080*",
            "*RequirementUnknown: RW-1 UNKNOWN: cannot decide*",
        ]
    )
    rows = [json.loads(x) for x in (results / "verdicts.jsonl").read_text().splitlines()]
    assert [(r["test"].split("::")[1], r["status"]) for r in rows] == [
        ("test_pass", "PASS"),
        ("test_fail", "FAIL"),
        ("test_unknown", "UNKNOWN"),
    ]
