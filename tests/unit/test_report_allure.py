"""allure results with the requirements and verdicts (dsrconform.report.allure).

The ``allure`` command line (which would build the report from the results) is not installed
here: the tests read the ``*-result.json`` files back and check their shape against what allure
reads (uuid, name, status, labels and links and parameters, attachments whose files exist).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

# Imported once, here: pytester's in-process runs drop the modules a run imported, and PyYAML
# imported again around its C extension (loaded once per process) leaves nodes untagged.
import dsrconform.topofile  # noqa: F401
from dsrconform.report.allure import (
    LINK_TYPE,
    VERDICTS_NAME,
    labels_of,
    severity_of,
    spec_link,
)
from dsrconform.report.pytest_hooks import ALLURE_PLUGIN
from dsrconform.spec import REQUIREMENTS

SPEC = Path(__file__).resolve().parents[2] / "SPEC.md"
ALLURE_STATUSES = {"passed", "failed", "broken", "skipped", "unknown"}


def _github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation but - and _ dropped,
    spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_point_at_the_catalogues_headings() -> None:
    headings = {
        _github_anchor(line.lstrip("#")): line
        for line in SPEC.read_text().splitlines()
        if line.startswith("### ")
    }
    for r in REQUIREMENTS:
        file, _, anchor = spec_link(r.id).partition("#")
        assert file == "SPEC.md"
        assert anchor in headings, r.id
        assert headings[anchor] == f"### {r.id}"
    assert spec_link("RW-1") == "SPEC.md#rw-1"


def test_labels_and_severity_of_requirements() -> None:
    # RW-1 MUST, RW-7 SHOULD, SC-5 MAY, AF-1 MUST (dsrconform.spec)
    assert labels_of(["RW-7", "AF-1", "RW-1", "RW-7"]) == [
        ("epic", "RW: Rewrite correctness"),
        ("epic", "AF: Affinity"),
        ("feature", "RW-7"),
        ("feature", "AF-1"),
        ("feature", "RW-1"),
    ]
    assert severity_of(["SC-5"]) == "minor"
    assert severity_of(["SC-5", "RW-7"]) == "normal"
    assert severity_of(["RW-7", "RW-1"]) == "critical"
    assert severity_of(["XX-1"]) is None and severity_of([]) is None


SUITE = """
import pytest
import allure
from tests.unit.observations_builder import one_conn_obs as obs
from dsrconform.pytest_plugin import ATTACHMENTS_KEY
from dsrconform.report.model import Attachment


@pytest.mark.requirement("RW-1", "AF-1", "RW-7")
def test_pass(dsr_check):
    dsr_check(obs(), "RW-1", "AF-1")

@pytest.mark.requirement("RW-1")
def test_fail(dsr_check, request):
    request.node.stash[ATTACHMENTS_KEY] = [
        Attachment(name="RW-1 evidence", path="steady/rw-1.pcap", kind="pcap", requirement="RW-1"),
        Attachment(name="timeline", path="steady/timeline.svg", kind="svg"),
        Attachment(name="never written", path="steady/gone.pcap", kind="pcap"),
    ]
    dsr_check(obs(broken=True), "RW-1")

@pytest.mark.requirement("RW-1")
def test_unknown(dsr_check):
    dsr_check(obs(), "RW-1", params={"RW-1": {"min_flows": 5}})

@pytest.mark.requirement("SC-5")
def test_skip():
    pytest.skip("needs root")

@pytest.fixture
def broken():
    raise RuntimeError("setup broke")

@pytest.mark.requirement("RW-7")
def test_setup_error(broken):
    pass

@allure.severity(allure.severity_level.BLOCKER)
@pytest.mark.requirement("SC-5")
def test_own_severity():
    pass

def test_plain(request):
    pass
"""


def _results(alluredir: Path) -> dict[str, dict[str, Any]]:
    """Every test result of ``alluredir`` by test name, its shape checked as allure reads it."""
    out: dict[str, dict[str, Any]] = {}
    for path in alluredir.glob("*-result.json"):
        r = json.loads(path.read_text())
        assert re.fullmatch(r"[0-9a-f-]{36}", r["uuid"])
        assert isinstance(r["name"], str) and r["status"] in ALLURE_STATUSES
        assert isinstance(r["start"], int) and isinstance(r["stop"], int)
        for key, fields in (
            ("labels", {"name", "value"}),
            ("links", {"type", "url", "name"}),
            ("attachments", {"name", "source", "type"}),
        ):
            assert isinstance(r.get(key, []), list)
            for row in r.get(key, []):
                assert set(row) == fields and all(isinstance(v, str) for v in row.values())
        for p in r.get("parameters", []):
            assert isinstance(p["name"], str) and isinstance(p["value"], str)
        for a in r.get("attachments", []):
            assert (alluredir / a["source"]).is_file(), a
        out[r["name"]] = r
    return out


def _labels(r: dict[str, Any], name: str) -> list[str]:
    return [x["value"] for x in r["labels"] if x["name"] == name]


def _params(r: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    return {p["name"]: (p["value"], p.get("excluded", False)) for p in r.get("parameters", [])}


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, Path]:
    pytester.makepyfile(test_suite=SUITE)
    alluredir = pytester.path / "allure"
    results = pytester.path / "results"
    (results / "steady").mkdir(parents=True)
    (results / "steady" / "rw-1.pcap").write_bytes(b"\xd4\xc3\xb2\xa1pcap")
    (results / "steady" / "timeline.svg").write_text("<svg/>")
    result = pytester.runpytest_inprocess(
        "-p",
        "no:cacheprovider",
        "--dsr-seed",
        "9",
        "--dsr-level",
        "MAY",
        "--dsr-results",
        str(results),
        f"--alluredir={alluredir}",
        *args,
    )
    return result, alluredir


def test_allure_results_carry_requirements_verdicts_and_evidence(
    pytester: pytest.Pytester,
) -> None:
    result, alluredir = _run(pytester)
    result.assert_outcomes(passed=3, failed=1, errors=2, skipped=1)
    tests = _results(alluredir)
    assert set(tests) == {
        "test_pass",
        "test_fail",
        "test_unknown",
        "test_skip",
        "test_setup_error",
        "test_own_severity",
        "test_plain",
    }
    # statuses: an UNKNOWN is broken, never failed
    assert {k: r["status"] for k, r in tests.items()} == {
        "test_pass": "passed",
        "test_fail": "failed",
        "test_unknown": "broken",
        "test_skip": "skipped",
        "test_setup_error": "broken",
        "test_own_severity": "passed",
        "test_plain": "passed",
    }
    assert "RequirementUnknown" in tests["test_unknown"]["statusDetails"]["message"]
    passed = tests["test_pass"]
    assert _labels(passed, "epic") == ["RW: Rewrite correctness", "AF: Affinity"]
    assert _labels(passed, "feature") == ["RW-1", "AF-1", "RW-7"]
    assert _labels(passed, "severity") == ["critical"]
    assert [(x["type"], x["url"], x["name"]) for x in passed["links"]] == [
        (LINK_TYPE, "SPEC.md#rw-1", "RW-1"),
        (LINK_TYPE, "SPEC.md#af-1", "AF-1"),
        (LINK_TYPE, "SPEC.md#rw-7", "RW-7"),
    ]
    assert _params(passed) == {
        "target": ("'reference'", False),
        "backend": ("'netns'", False),
        "mode": ("'lab-mode'", False),
        "seed": ("9", True),  # out of allure's history id: a new seed is the same test
    }
    [verdicts] = passed["attachments"]
    assert (verdicts["name"], verdicts["type"]) == (VERDICTS_NAME, "application/json")
    rows = json.loads((alluredir / verdicts["source"]).read_text())
    assert [(v["requirement"], v["status"]) for v in rows] == [("RW-1", "PASS"), ("AF-1", "PASS")]
    # a FAIL: its verdicts, and the evidence files that exist, with their MIME types
    failed = tests["test_fail"]
    assert [(a["name"], a["type"]) for a in failed["attachments"]] == [
        (VERDICTS_NAME, "application/json"),
        ("RW-1 evidence", "application/vnd.tcpdump.pcap"),
        ("timeline", "image/svg+xml"),
    ]
    pcap = alluredir / failed["attachments"][1]["source"]
    assert pcap.read_bytes() == b"\xd4\xc3\xb2\xa1pcap" and pcap.suffix == ".pcap"
    rows = json.loads((alluredir / failed["attachments"][0]["source"]).read_text())
    assert rows[0]["status"] == "FAIL" and rows[0]["evidence"][0]["flow"].startswith("tcp ")
    unknown = json.loads(
        (alluredir / tests["test_unknown"]["attachments"][0]["source"]).read_text()
    )
    assert unknown[0]["status"] == "UNKNOWN" and unknown[0]["missing"]
    # setup failed, skipped: labelled all the same, no verdicts to attach
    for name, feature, severity in (
        ("test_setup_error", "RW-7", "normal"),
        ("test_skip", "SC-5", "minor"),
    ):
        assert _labels(tests[name], "feature") == [feature]
        assert _labels(tests[name], "severity") == [severity]
        assert "attachments" not in tests[name]
    assert _labels(tests["test_own_severity"], "severity") == ["blocker"]
    plain = tests["test_plain"]
    assert not _labels(plain, "epic") and not _labels(plain, "feature")
    assert "links" not in plain and "seed" not in _params(plain)


def test_the_platform_and_mutant_are_parameters(pytester: pytest.Pytester) -> None:
    result, alluredir = _run(
        pytester,
        "-k",
        "test_pass",
        "--dsr-mode",
        "encap",
        "--dsr-backend",
        "docker",
        "--dsr-mutant",
        "modulo-hash",
    )
    result.assert_outcomes(passed=1, deselected=6)
    params = _params(_results(alluredir)["test_pass"])
    assert params["backend"] == ("'docker'", False)
    assert params["mode"] == ("'encap'", False)
    assert params["mutant"] == ("'modulo-hash'", False)


CHECK_REGISTERED = """
def test_registered(request):
    print("ALLURE-HOOKS", request.config.pluginmanager.get_plugin("{name}") is not None)
"""


def test_nothing_of_allure_without_alluredir(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CHECK_REGISTERED.format(name=ALLURE_PLUGIN))
    without = pytester.runpytest_inprocess("-s", "-p", "no:cacheprovider")
    without.assert_outcomes(passed=1)
    assert "ALLURE-HOOKS False" in without.stdout.str()
    with_ = pytester.runpytest_inprocess(
        "-s", "-p", "no:cacheprovider", f"--alluredir={pytester.path / 'a'}"
    )
    with_.assert_outcomes(passed=1)
    assert "ALLURE-HOOKS True" in with_.stdout.str()
