"""NOT APPLICABLE: a target's capabilities (modes, families) decide, before any lab, which
requirements it is not asked about; results, the run's exit status and the gate leave them out."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

import dsrconform.topofile  # noqa: F401  # once, here (see tests/unit/test_plugin.py)
from dsrconform import spec
from dsrconform.applicability import (
    Capabilities,
    family_of,
    lab_test_reasons,
    not_applicable,
)
from dsrconform.invariants.verdict import Status, Verdict, checker, run_checker
from dsrconform.report.gate import decide
from dsrconform.report.junit import NOT_APPLICABLE_TYPE, rewrite_junit
from dsrconform.report.model import RESULTS_FILE, Results, load_results
from dsrconform.runcli import exit_code
from tests.unit.labfiles import BASIC
from tests.unit.test_report_gate import results, verdict

ENCAP_ONLY = Capabilities("acme", ("encap",), ("ipv4",))
TARGET = "tests.unit.test_target_sdk:Good"  # modes ("encap",), families ("ipv4",)


def test_a_mode_or_family_the_target_lacks_makes_every_requirement_not_applicable() -> None:
    got = not_applicable(ENCAP_ONLY, "server-nat", "ipv4", ["RW-1", "AF-1", "XX-9"])
    assert list(got) == ["RW-1", "AF-1"]  # an ID the catalogue does not know is left alone
    assert got["RW-1"] == (
        "target 'acme' does not support rewrite mode server-nat (its capability modes: encap)"
    )
    fam = not_applicable(ENCAP_ONLY, "encap", "ipv6", ["RW-1"])
    assert fam == {"RW-1": "target 'acme' does not serve ipv6 (its capability families: ipv4)"}
    assert not_applicable(ENCAP_ONLY, "encap", "ipv4", ["RW-1", "AF-1"]) == {}


def test_a_requirement_of_a_mode_the_target_lacks_is_not_applicable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nat_only = dataclasses.replace(spec.BY_ID["RW-3"], modes=("server-nat", "gateway-nat"))
    monkeypatch.setitem(spec.BY_ID, "RW-3", nat_only)
    got = not_applicable(ENCAP_ONLY, "encap", "ipv4", ["RW-1", "RW-3"])
    assert list(got) == ["RW-3"]
    assert "RW-3 concerns rewrite mode server-nat, gateway-nat only" in got["RW-3"]
    both = Capabilities("acme", ("encap", "server-nat"), ("ipv4",))
    assert not_applicable(both, "encap", "ipv4", ["RW-3"]) == {}
    # A test is not run only when every requirement it cites is not applicable.
    assert lab_test_reasons(ENCAP_ONLY, "encap", "ipv4", ["RW-1", "RW-3"]) is None
    assert lab_test_reasons(ENCAP_ONLY, "encap", "ipv4", ["RW-3"]) == got
    assert lab_test_reasons(ENCAP_ONLY, "gateway-nat", "ipv4", []) == {
        "": "target 'acme' does not support rewrite mode gateway-nat (its capability modes: encap)"
    }


def test_the_labs_family_comes_from_its_vips() -> None:
    assert family_of(["198.19.0.10", "198.19.0.11/32"]) == "ipv4"
    assert family_of(["198.19.0.10", "2001:db8::1"]) == "ipv6"


def test_every_catalogue_mode_is_a_rewrite_mode() -> None:
    from dsrconform.topology import MODES

    for req in spec.REQUIREMENTS:
        assert set(req.modes) <= set(MODES), req.id


def test_a_checker_cannot_answer_not_applicable() -> None:
    @checker("RW-1")
    def says_na(obs: Any, params: Any) -> Verdict:
        return Verdict(requirement="RW-1", level="MUST", status=Status.NOT_APPLICABLE, message="")

    v = run_checker(says_na, None)  # type: ignore[arg-type]
    assert v.status == Status.UNKNOWN
    assert "answered NOT APPLICABLE, which only the framework decides" in v.missing[0]


def with_not_applicable(base: Results, req: str, why: str) -> Results:
    """``base`` plus a test NOT APPLICABLE for ``req``."""
    from dsrconform.report.model import TestResult, decide_requirements, decide_test

    na = {req: why}
    t = TestResult(
        nodeid=f"suites/t.py::test_na[{req}]",
        outcome="skipped",
        requirements=[req],
        message=f"NOT APPLICABLE: {why}",
        decisions=decide_test([req], [], "skipped", "skipped", None, na),
        not_applicable=na,
    )
    tests = [*base.tests, t]
    return base.model_copy(update={"tests": tests, "requirements": decide_requirements(tests)})


def test_not_applicable_neither_passes_nor_fails_a_run_or_the_gate() -> None:
    run = with_not_applicable(results(verdict("RW-1")), "AF-1", "no such mode")
    assert run.requirements["AF-1"].status == Status.NOT_APPLICABLE
    assert run.requirements["AF-1"].message == "no such mode"
    assert list(run.decided("MUST")) == ["RW-1"]
    assert run.verdict() == Status.PASS and exit_code(run, "MUST", 0) == 0
    gate = decide(run)
    assert gate.passed and gate.decided == 1
    assert gate.not_applicable == [("AF-1", "no such mode")]
    # A FAIL is still a FAIL; only NOT APPLICABLE ones are left out.
    failing = with_not_applicable(results(verdict("RW-1", "FAIL")), "AF-1", "no such mode")
    assert not decide(failing).passed and exit_code(failing, "MUST", 1) == 1


def test_decided_elsewhere_wins_over_not_applicable_and_nothing_else_is_no_pass() -> None:
    # AF-1 PASSed on one platform and was not applicable on another: PASS.
    mixed = with_not_applicable(results(verdict("AF-1")), "AF-1", "no such mode")
    assert mixed.requirements["AF-1"].status == Status.PASS
    only_na = with_not_applicable(results(), "AF-1", "no such mode")
    assert only_na.verdict() == Status.UNKNOWN  # nothing decided
    assert exit_code(only_na, "MUST", 0) == 1
    gate = decide(only_na)
    assert not gate.passed and gate.decided == 0


def test_junit_marks_a_not_applicable_test_as_such() -> None:
    run = with_not_applicable(results(), "AF-1", "target 'acme' lacks server-nat")
    xml = (
        b'<testsuites><testsuite name="pytest" tests="1" failures="0" errors="0" skipped="1">'
        b'<testcase classname="suites.t" name="test_na[AF-1]" time="0.0">'
        b'<skipped type="pytest.skip" message="NOT APPLICABLE: x">x</skipped></testcase>'
        b"</testsuite></testsuites>"
    )
    root = ET.fromstring(rewrite_junit(xml, run))
    skipped = root.find(".//skipped")
    assert skipped is not None and skipped.get("type") == NOT_APPLICABLE_TYPE
    assert skipped.get("message") == "NOT APPLICABLE: target 'acme' lacks server-nat"
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["verdict:AF-1"] == "NOT APPLICABLE"


def test_the_html_report_shows_not_applicable_apart(tmp_path: Path) -> None:
    from dsrconform import cli

    run = with_not_applicable(results(verdict("RW-1")), "AF-1", "target 'acme' lacks server-nat")
    run.save(tmp_path / "run")
    out = tmp_path / "report.html"
    assert cli.main(["report", str(tmp_path / "run"), "-o", str(out)]) == 0
    html = out.read_text()
    assert 'class="st-na"' in html and "NOT APPLICABLE" in html
    assert "target &#39;acme&#39; lacks server-nat" in html


LAB_TESTS = """
    import pytest

    @pytest.mark.requirement("RW-1")
    def test_rw1(dsr_lab):
        pass

    @pytest.mark.requirement("RW-3")
    def test_rw3(dsr_lab):
        pass
"""


@pytest.fixture
def no_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lab that starts coming up is an error of the test that asked for it."""
    from dsrconform.lab import Lab

    def up(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("a lab started coming up")

    monkeypatch.setattr(Lab, "up", up)
    monkeypatch.setattr("os.geteuid", lambda: 0)  # as root: only NOT APPLICABLE keeps it down


def test_the_plugin_skips_not_applicable_tests_before_any_lab(
    pytester: pytest.Pytester, no_lab: None
) -> None:
    pytester.makepyfile(LAB_TESTS)
    res = pytester.path / "res"
    args = ["-v", "--dsr-lab", str(BASIC), "--dsr-target", TARGET, "--dsr-results", str(res)]
    result = pytester.runpytest_inprocess(*args, "--dsr-mode", "server-nat")
    result.stdout.fnmatch_lines(["*test_rw1 NOT APPLICABLE*", "*2 not applicable*"])
    assert result.ret == 0
    run = load_results(res)
    row = run.requirements["RW-1"]
    assert row.status == Status.NOT_APPLICABLE
    assert row.message == (
        f"target {TARGET!r} does not support rewrite mode server-nat (its capability modes: encap)"
    )
    t = next(t for t in run.tests if t.nodeid.endswith("test_rw1"))
    assert t.outcome == "skipped" and t.not_applicable == {"RW-1": row.message}
    raw = json.loads((res / RESULTS_FILE).read_text())
    assert raw["requirements"]["RW-3"]["status"] == "NOT APPLICABLE"


def test_a_supported_mode_runs_and_only_the_mode_specific_requirement_is_not_applicable(
    pytester: pytest.Pytester, no_lab: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    nat_only = dataclasses.replace(spec.BY_ID["RW-3"], modes=("server-nat",))
    monkeypatch.setitem(spec.BY_ID, "RW-3", nat_only)
    pytester.makepyfile(LAB_TESTS)
    result = pytester.runpytest_inprocess(
        "-v", "--dsr-lab", str(BASIC), "--dsr-target", TARGET, "--dsr-mode", "encap"
    )
    result.stdout.fnmatch_lines(["*test_rw1 ERROR*", "*test_rw3 NOT APPLICABLE*"])
    assert "a lab started coming up" in result.stdout.str()  # RW-1 did ask for one


@pytest.mark.parametrize(
    "argv",
    [
        ["lab", "up", str(BASIC), "--target", TARGET, "--mode", "server-nat"],
        ["steady", str(BASIC), "--target", TARGET, "--mode", "server-nat"],
    ],
    ids=["lab-up", "steady"],
)
def test_a_lab_in_a_mode_the_target_lacks_is_refused_before_it_comes_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    from dsrconform import cli
    from dsrconform.lab import Lab, faultcli

    def started(*a: Any, **kw: Any) -> Any:
        raise AssertionError("a lab started coming up")

    monkeypatch.setattr(faultcli, "launch", started)
    monkeypatch.setattr(Lab, "_bring_up", started)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"target {TARGET!r} does not support rewrite mode server-nat" in err
    assert "(its capability modes: encap); fix:" in err


def test_allure_shows_a_not_applicable_test_as_a_tagged_skip(
    pytester: pytest.Pytester, no_lab: None
) -> None:
    pytester.makepyfile(LAB_TESTS)
    out = pytester.path / "allure"
    args = ["--dsr-lab", str(BASIC), "--dsr-target", TARGET, "--dsr-mode", "server-nat"]
    pytester.runpytest_inprocess(*args, f"--alluredir={out}")
    results = [json.loads(p.read_text()) for p in out.glob("*-result.json")]
    assert len(results) == 2
    for r in results:
        assert r["status"] == "skipped"
        assert {"name": "tag", "value": "NOT APPLICABLE"} in r["labels"]
        assert "does not support rewrite mode server-nat" in r["statusDetails"]["message"]
