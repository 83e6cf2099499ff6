"""JUnit XML rewritten with the run's verdicts (dsrconform.report.junit, its pytest hook)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
import xmlschema
from _pytest.junitxml import bin_xml_escape
from _pytest.junitxml import mangle_test_address as pytest_mangle

# Imported once, here: pytester's in-process runs drop the modules a run imported, and PyYAML
# imported again around its C extension (loaded once per process) leaves nodes untagged.
import dsrconform.topofile  # noqa: F401
from dsrconform.invariants.verdict import Evidence, Status, Verdict
from dsrconform.report import model
from dsrconform.report.junit import (
    JUNIT_XSD,
    UNKNOWN_TYPE,
    junit_address,
    mangle_test_address,
    rewrite_junit,
    xml_safe,
)
from dsrconform.report.model import Attachment, Results, RunInfo
from dsrconform.report.pytest_hooks import ReportHooks, junit_path

SCHEMA = xmlschema.XMLSchema(JUNIT_XSD)
# What XML 1.0 allows (the Char production).
FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# --- the node id -> (classname, name) mapping ----------------------------------------------------

ADDRESSES = [
    ("test_a.py::test_b", ["test_a", "test_b"]),
    ("tests/unit/test_a.py::TestC::test_d", ["tests.unit.test_a", "TestC", "test_d"]),
    ("test_a.py::test_b[x-y]", ["test_a", "test_b[x-y]"]),
    ("a/test_b.py::test_c[1/2-a::b]", ["a.test_b", "test_c[1/2-a::b]"]),
    ("test_x.py::test_y[c-d[e]]", ["test_x", "test_y[c-d[e]]"]),
    ("test_x.py::Cls::test_y[[nested]-]", ["test_x", "Cls", "test_y[[nested]-]"]),
    ("dir[1]/test_x.py::test_y[p]", ["dir[1].test_x", "test_y[p]"]),
    ("suites/netns-encap/test_z.py::test_w[netns-server-nat]", None),
    ("test_only.py", ["test_only"]),  # a collection error's testcase
]


@pytest.mark.parametrize(("nodeid", "expected"), ADDRESSES)
def test_mangle_is_pytests_for_brackets_dashes_slashes(
    nodeid: str, expected: list[str] | None
) -> None:
    ours = mangle_test_address(nodeid)
    assert ours == pytest_mangle(nodeid)
    if expected is not None:
        assert ours == expected


def test_junit_address_has_the_prefix_and_pytests_escapes() -> None:
    assert junit_address("tests/test_a.py::TestC::test_d[x]") == ("tests.test_a.TestC", "test_d[x]")
    assert junit_address("test_a.py::test_b", "ci") == ("ci.test_a", "test_b")
    nodeid = "test_a.py::test_b[bell\x07-del\x7f-\udcff]"
    _, name = junit_address(nodeid)
    assert name == bin_xml_escape(pytest_mangle(nodeid)[-1]) == "test_b[bell#x07-del#x7F-#xDCFF]"


def test_xml_safe_escapes_only_what_xml_forbids() -> None:
    assert (
        xml_safe("a\x00b\x07c\x1b\udcff\ufffe\uffffd") == "a\\x00b\\x07c\\x1b\\udcff\\ufffe\\uffffd"
    )
    kept = "tab\tnl\nok <script>\"'& \x7f é 😀"
    assert xml_safe(kept) == kept


# --- rewrite_junit on a file as pytest writes it --------------------------------------------------

PYTEST_XML = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">\
<testsuite name="pytest" errors="1" failures="3" skipped="1" tests="8" time="1.5" \
timestamp="2025-01-01T00:00:00.000000+00:00" hostname="ci">\
<testcase classname="test_s" name="test_pass" time="0.1"><properties>\
<property name="dsrconform_requirements" value="['RW-1']"/>\
<property name="note" value="kept"/></properties></testcase>\
<testcase classname="test_s" name="test_fail" time="0.2"><properties>\
<property name="dsrconform_requirements" value="['RW-1']"/>\
<property name="dsrconform_verdicts" value="[{'requirement': 'RW-1'}]"/></properties>\
<failure message="Failed: RW-1 FAIL: wrong source">RW-1 FAIL: wrong source</failure>\
<system-out>out</system-out></testcase>\
<testcase classname="test_s" name="test_unknown" time="0.3">\
<failure message="RequirementUnknown: RW-1 UNKNOWN">E RequirementUnknown</failure></testcase>\
<testcase classname="test_s" name="test_setup" time="0.0">\
<error message="failed on setup with &quot;RuntimeError: boom&quot;">RuntimeError</error>\
</testcase>\
<testcase classname="test_s" name="test_skip" time="0.0">\
<skipped type="pytest.skip" message="needs root">test_s.py:9: needs root</skipped></testcase>\
<testcase classname="test_s" name="test_twice" time="0.5">\
<failure message="AssertionError">assert 1 == 2</failure></testcase>\
<testcase classname="test_s" name="test_twice" time="0.25">\
<error message="failed on teardown with &quot;OSError&quot;">OSError</error></testcase>\
<testcase classname="test_s" name="test_plain" time="0.1"/>\
</testsuite></testsuites>"""

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _run(**kw: object) -> RunInfo:
    base: dict[str, object] = {
        "seed": 42,
        "target": "reference",
        "target_version": "dsrconform 0.1.0",
        "lab": "labs/basic.yaml",
        "lab_sha256": "ab" * 32,
        "backends": ["netns", "docker"],
        "modes": ["encap"],
        "platforms": ["netns-encap", "docker-encap"],
        "level": "MUST",
        "started": T0,
        "replay": "pytest --dsr-seed 42",
    }
    base.update(kw)
    return RunInfo.model_validate(base)


def _fail(message: str = "1 reply came from another address", **evidence: object) -> Verdict:
    ev = {
        "message": "reply from 198.18.20.3:8080",
        "flow": "tcp 198.18.1.2:40002 > 198.19.0.10:80 (flow 2)",
        "packet": "tcp 198.18.20.3:8080 > 198.18.1.2:40002 flags SA",
        "link": "client:dsrc-router ingress",
        "time": 11.0,
        "until": 12.5,
    }
    ev.update(evidence)
    return Verdict(
        requirement="RW-1",
        level="MUST",
        status=Status.FAIL,
        message=message,
        measured={"wrong_source": 1},
        thresholds={"max_wrong": 0},
        evidence=[Evidence.model_validate(ev)],
    )


UNKNOWN = Verdict(
    requirement="RW-1",
    level="MUST",
    status=Status.UNKNOWN,
    message="cannot decide: replies of 1 recorded flows (5 needed)",
    missing=["replies of 1 recorded flows (5 needed)"],
)


def _test(name: str, outcome: str, verdicts: list[Verdict], **kw: object) -> model.TestResult:
    status = {"passed": "PASS", "failed": "FAIL", "error": "UNKNOWN", "skipped": "UNKNOWN"}
    data: dict[str, object] = {
        "nodeid": f"test_s.py::{name}",
        "outcome": outcome,
        "requirements": ["RW-1"],
        "verdicts": verdicts,
        "decisions": {"RW-1": model.TestDecision(status=Status(status[outcome]), message="m")},
    }
    data.update(kw)
    return model.TestResult.model_validate(data)


def _results(fail: Verdict | None = None, **run: object) -> Results:
    passed = Verdict(requirement="RW-1", level="MUST", status=Status.PASS, message="ok")
    return Results(
        run=_run(**run),
        tests=[
            _test(
                "test_pass",
                "passed",
                [passed],
                scenario="steady",
                platform="netns-encap",
                attachments=[Attachment(name="t", path="steady/timeline.svg", kind="svg")],
            ),
            _test(
                "test_fail",
                "failed",
                [fail or _fail(), UNKNOWN],
                attachments=[
                    Attachment(name="w", path="steady/rw-1.pcap", kind="pcap", requirement="RW-1")
                ],
            ),
            _test("test_unknown", "error", [UNKNOWN]),
            _test("test_setup", "error", []),
            _test("test_skip", "skipped", []),
            _test("test_twice", "failed", []),
        ],
    )


def _props(element: ET.Element | None) -> list[tuple[str | None, str | None]]:
    if element is None:
        return []
    return [(p.get("name"), p.get("value")) for p in element.findall("properties/property")]


def _case(root: ET.Element, name: str) -> ET.Element:
    cases = [c for c in root.iter("testcase") if c.get("name") == name]
    assert len(cases) == 1, f"{name}: {len(cases)} testcases"
    return cases[0]


def test_rewrite_properties_failure_error_split_and_counts() -> None:
    out = rewrite_junit(PYTEST_XML.encode(), _results())
    SCHEMA.validate(out.decode())
    SCHEMA.validate(PYTEST_XML)  # pytest's own output is valid too
    root = ET.fromstring(out)
    assert b"dsrconform_" not in out  # the reprs are gone
    suite = root.find("testsuite")
    assert suite is not None
    assert dict(_props(suite)) == {
        "seed": "42",
        "target": "reference",
        "target_version": "dsrconform 0.1.0",
        "level": "MUST",
        "lab": "labs/basic.yaml",
        "lab_sha256": "ab" * 32,
        "backends": "netns,docker",
        "modes": "encap",
        "platforms": "netns-encap,docker-encap",
        "replay": "pytest --dsr-seed 42",
    }  # no mutant, no profile: left out
    assert _props(_case(root, "test_pass")) == [
        ("note", "kept"),
        ("requirement", "RW-1"),
        ("verdict:RW-1", "PASS"),
        ("scenario", "steady"),
        ("platform", "netns-encap"),
        ("attachment", "steady/timeline.svg"),
    ]
    fail = _case(root, "test_fail")
    assert _props(fail) == [
        ("requirement", "RW-1"),
        ("verdict:RW-1", "FAIL"),
        ("attachment", "steady/rw-1.pcap"),
    ]
    failure = fail.find("failure")
    assert failure is not None and fail.find("error") is None
    assert failure.get("message") == "RW-1 FAIL: 1 reply came from another address"
    assert failure.get("type") == "dsrconform.FAIL"
    text = failure.text or ""
    for line in (
        "RW-1 FAIL (MUST): 1 reply came from another address",
        "  measured: wrong_source=1",
        "  thresholds: max_wrong=0",
        "  evidence 1: reply from 198.18.20.3:8080",
        "    flow: tcp 198.18.1.2:40002 > 198.19.0.10:80 (flow 2)",
        "    packet: tcp 198.18.20.3:8080 > 198.18.1.2:40002 flags SA",
        "    link: client:dsrc-router ingress",
        "    time: 11.000 s to 12.500 s",
        "RW-1 UNKNOWN (MUST): cannot decide: replies of 1 recorded flows (5 needed)",
        "  missing: replies of 1 recorded flows (5 needed)",
        "RW-1 FAIL: wrong source",  # pytest's report follows
    ):
        assert line in text.splitlines(), line
    assert [c.tag for c in fail] == ["properties", "failure", "system-out"]
    # UNKNOWN: an error of its own type, listing what was missing
    unknown = _case(root, "test_unknown")
    assert unknown.find("failure") is None
    error = unknown.find("error")
    assert error is not None and error.get("type") == UNKNOWN_TYPE
    assert error.get("message") == (
        "RW-1 UNKNOWN: cannot decide: replies of 1 recorded flows (5 needed)"
    )
    assert "  missing: replies of 1 recorded flows (5 needed)" in (error.text or "").splitlines()
    assert (error.text or "").endswith("E RequirementUnknown")
    # a setup error stays pytest's, without a dsrconform type
    setup = _case(root, "test_setup")
    assert [(c.tag, c.get("type")) for c in setup if c.tag != "properties"] == [("error", None)]
    assert ("verdict:RW-1", "UNKNOWN") in _props(setup)
    assert ("verdict:RW-1", "UNKNOWN") in _props(_case(root, "test_skip"))
    # a failed call then a teardown error: one testcase, its times summed, counted a failure
    twice = _case(root, "test_twice")
    assert [c.tag for c in twice if c.tag != "properties"] == ["failure", "error"]
    assert twice.get("time") == "0.750"
    assert twice.find("failure").get("message") == "AssertionError"  # type: ignore[union-attr]
    assert _props(_case(root, "test_plain")) == []
    assert _case(root, "test_plain").find("properties") is None
    counts = {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": "7", "failures": "2", "errors": "2", "skipped": "1"}


def test_a_scenario_that_failed_is_an_error_with_pytests_message() -> None:
    results = _results()
    results.tests[2] = _test("test_unknown", "error", [], message="ScenarioFailed: no MUX")
    root = ET.fromstring(rewrite_junit(PYTEST_XML.encode(), results))
    error = _case(root, "test_unknown").find("error")
    assert error is not None
    assert (error.get("type"), error.get("message")) == (UNKNOWN_TYPE, "ScenarioFailed: no MUX")
    assert error.text == "E RequirementUnknown"


def test_a_root_testsuite_and_the_junit_prefix() -> None:
    xml = (
        '<testsuite name="pytest" tests="1" failures="1" errors="0">'
        '<testcase classname="ci.test_s" name="test_unknown"><failure message="x">t</failure>'
        "</testcase></testsuite>"
    )
    root = ET.fromstring(rewrite_junit(xml.encode(), _results(), prefix="ci"))
    assert root.tag == "testsuite"
    assert (root.get("failures"), root.get("errors")) == ("0", "1")
    assert _case(root, "test_unknown").find("error") is not None
    unprefixed = ET.fromstring(rewrite_junit(xml.encode(), _results()))
    assert _case(unprefixed, "test_unknown").find("failure") is not None  # no match: as is


HOSTILE = "<script>alert('x')</script> \"q\" &amp; \x00\x07\x1b\x7f \udcfe\udcff \ufffe end"


def test_hostile_evidence_stays_well_formed_and_valid() -> None:
    fail = _fail(
        message=HOSTILE,
        flow=HOSTILE,
        packet="payload " + b"\xff\xfe<>".decode("utf-8", "surrogateescape"),
        link="]]> <!-- -->",
    )
    results = _results(fail, target=HOSTILE, replay="pytest -k '" + HOSTILE + "'")
    results.tests[0].scenario = HOSTILE
    results.tests[0].attachments[0].path = "x/\x01<a>.svg"
    out = rewrite_junit(PYTEST_XML.encode(), results)
    text = out.decode("utf-8")  # encodable: no lone surrogate left
    assert not FORBIDDEN.search(text)
    assert "<script>" not in text
    SCHEMA.validate(text)
    root = ET.fromstring(out)
    suite_props = dict(_props(root.find("testsuite")))
    cleaned = xml_safe(HOSTILE)
    assert suite_props["target"] == cleaned
    assert cleaned.startswith("<script>alert('x')</script> \"q\" &amp; \\x00\\x07\\x1b\x7f \\udcfe")
    assert ("scenario", cleaned) in _props(_case(root, "test_pass"))
    assert ("attachment", "x/\\x01<a>.svg") in _props(_case(root, "test_pass"))
    failure = _case(root, "test_fail").find("failure")
    assert failure is not None
    assert failure.get("message") == "RW-1 FAIL: " + cleaned
    lines = (failure.text or "").splitlines()
    assert f"    flow: {cleaned}" in lines
    assert "    packet: payload \\udcff\\udcfe<>" in lines
    assert "    link: ]]> <!-- -->" in lines


# --- the hook: pytest's file, rewritten at the end of the session ---------------------------------

SUITE = """
import pytest
from tests.unit.observations_builder import one_conn_obs as obs


@pytest.fixture
def broken_setup():
    raise RuntimeError("setup broke")

@pytest.fixture
def broken_teardown():
    yield
    raise OSError("teardown broke")

@pytest.mark.requirement("RW-1")
def test_pass(dsr_check, record_property):
    record_property("note", "kept")
    dsr_check(obs(), "RW-1")

@pytest.mark.requirement("RW-1")
def test_fail(dsr_check):
    dsr_check(obs(broken=True), "RW-1")

@pytest.mark.requirement("RW-1")
def test_unknown(dsr_check):
    dsr_check(obs(), "RW-1", params={"RW-1": {"min_flows": 5}})

@pytest.mark.requirement("AF-1")
def test_skip():
    pytest.skip("needs root")

@pytest.mark.requirement("RW-3")
def test_setup_error(broken_setup):
    pass

@pytest.mark.requirement("RW-1")
def test_fail_then_teardown_error(dsr_check, broken_teardown):
    dsr_check(obs(broken=True), "RW-1")

@pytest.mark.requirement("RW-3", "AF-1")
@pytest.mark.parametrize("x", ["a/b", "c-d[e]", "f::g"])
def test_param(dsr_check, x):
    dsr_check(obs(), "RW-3", "AF-1")

def test_plain(record_testsuite_property):
    record_testsuite_property("build", "123")
"""


def _junit(
    pytester: pytest.Pytester, *args: str, results: bool = True
) -> tuple[pytest.RunResult, ET.Element, bytes]:
    pytester.makepyfile(test_suite=SUITE)
    xml = pytester.path / "out" / "junit.xml"
    more = ["--dsr-results", str(pytester.path / "results")] if results else []
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--dsr-seed", "7", f"--junitxml={xml}", *more, *args
    )
    data = xml.read_bytes()
    SCHEMA.validate(data.decode())
    return result, ET.fromstring(data), data


def test_junitxml_of_a_run_carries_the_verdicts(pytester: pytest.Pytester) -> None:
    # The rewrite runs after pytest's junitxml wrote the file (trylast): were it before,
    # pytest's file would be left, with its dsrconform_* reprs and an UNKNOWN as a failure.
    result, root, data = _junit(pytester)
    result.assert_outcomes(passed=5, failed=2, errors=3, skipped=1)
    assert b"dsrconform_" not in data
    suite = root.find("testsuite")
    assert suite is not None
    counts = {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": "10", "failures": "2", "errors": "2", "skipped": "1"}
    run = dict(_props(suite))
    assert (run["seed"], run["target"], run["level"], run["backends"]) == (
        "7",
        "reference",
        "MUST",
        "netns",
    )
    assert (run["replay"] or "").startswith("pytest ") and "mutant" not in run
    assert run["build"] == "123"  # the suite's own properties stay
    assert _props(_case(root, "test_pass")) == [
        ("note", "kept"),
        ("requirement", "RW-1"),
        ("verdict:RW-1", "PASS"),
    ]
    failure = _case(root, "test_fail").find("failure")
    assert failure is not None and failure.get("type") == "dsrconform.FAIL"
    assert (failure.get("message") or "").startswith("RW-1 FAIL: 1 reply records came from")
    lines = (failure.text or "").splitlines()
    assert "    flow: tcp 198.18.1.2:40002 > 198.19.0.10:80 (flow 2)" in lines
    assert "    time: 11.000 s to 21.000 s" in lines
    unknown = _case(root, "test_unknown")
    assert unknown.find("failure") is None
    error = unknown.find("error")
    assert error is not None and error.get("type") == UNKNOWN_TYPE
    assert (
        "  missing: replies of 1 recorded flows seen by taps toward clients (5 needed)"
        in (error.text or "").splitlines()
    )
    setup = _case(root, "test_setup_error")
    assert [c.tag for c in setup] == ["properties", "error"]
    assert setup.find("error").get("type") is None  # type: ignore[union-attr]
    assert ("verdict:RW-3", "UNKNOWN") in _props(setup)
    skip = _case(root, "test_skip")
    assert skip.find("skipped") is not None
    assert _props(skip) == [("requirement", "AF-1"), ("verdict:AF-1", "UNKNOWN")]
    twice = _case(root, "test_fail_then_teardown_error")  # pytest wrote two testcases
    assert [c.tag for c in twice if c.tag != "properties"] == ["failure", "error"]
    for param in ("a/b", "c-d[e]", "f::g"):
        case = _case(root, f"test_param[{param}]")
        assert case.get("classname") == "test_suite"
        assert _props(case) == [
            ("requirement", "RW-3"),
            ("requirement", "AF-1"),
            ("verdict:RW-3", "PASS"),
            ("verdict:AF-1", "PASS"),
        ]
    assert _case(root, "test_plain").find("properties") is None


def test_junitxml_without_a_results_dir_legacy_family_and_prefix(
    pytester: pytest.Pytester,
) -> None:
    result, root, _ = _junit(
        pytester,
        "-o",
        "junit_family=xunit1",
        "--junitprefix",
        "ci",
        "-k",
        "unknown or param",
        results=False,
    )
    result.assert_outcomes(passed=3, errors=1, deselected=6)
    assert not (pytester.path / "results").exists()
    unknown = _case(root, "test_unknown")
    assert unknown.get("classname") == "ci.test_suite" and unknown.get("file") == "test_suite.py"
    assert unknown.find("error") is not None and unknown.find("failure") is None
    assert ("verdict:AF-1", "PASS") in _props(_case(root, "test_param[c-d[e]]"))


def test_only_the_controller_rewrites(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig("--junitxml=x/j.xml")
    assert junit_path(config) == pytester.path / "x" / "j.xml"
    config.workerinput = {"workerid": "gw0"}  # type: ignore[attr-defined]
    assert junit_path(config) is None
    assert junit_path(pytester.parseconfig()) is None


def test_a_file_that_is_not_xml_is_left_alone(pytester: pytest.Pytester) -> None:
    xml = pytester.path / "j.xml"
    config = pytester.parseconfigure(f"--junitxml={xml}")
    xml.write_bytes(b"<testsuites><not closed")
    session = pytest.Session.from_config(config)
    ReportHooks(config).pytest_sessionfinish(session, 0)
    assert xml.read_bytes() == b"<testsuites><not closed"


def test_the_schema_rejects_what_ci_reporters_would_misread() -> None:
    for bad in (
        '<testsuite name="s" tests="x" failures="0" errors="0"/>',  # a count that is not one
        '<testsuite name="s" tests="1" failures="0" errors="0"><testcase name="t"/></testsuite>',
        '<testsuite name="s" tests="1" failures="0" errors="0"><testcase classname="c" '
        'name="t"><failure/><properties><property name="a" value="b"/></properties>'
        "</testcase></testsuite>",  # properties after the outcome
        '<testsuite name="s" tests="0" failures="0" errors="0"><properties>'
        '<property name="" value="b"/></properties></testsuite>',
    ):
        assert not SCHEMA.is_valid(bad), bad
    assert SCHEMA.is_valid(
        '<testsuites><testsuite name="s" tests="0" failures="0" errors="0"/></testsuites>'
    )


def test_the_schema_is_next_to_the_module() -> None:
    assert Path(__file__).parents[2] / "dsrconform" / "report" / "junit.xsd" == JUNIT_XSD
    assert JUNIT_XSD.is_file()
