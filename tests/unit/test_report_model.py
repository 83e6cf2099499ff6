"""The results model: round trip, clear errors for bad files, how tests decide requirements, and
the checked-in JSON Schema."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from dsrconform.errors import ConfigError
from dsrconform.invariants.verdict import Evidence, Status, Verdict
from dsrconform.report import model
from dsrconform.report.model import (
    RESULTS_FILE,
    Results,
    RunInfo,
    TestResult,
    decide_requirements,
    decide_test,
    load_results,
)

REPO = Path(__file__).resolve().parents[2]


def verdict(req: str, status: str, message: str = "m") -> Verdict:
    extra: dict[str, Any] = {}
    if status == "FAIL":
        extra["evidence"] = [Evidence(message="reply from 198.18.20.3 <script>", time=1.5)]
    if status == "UNKNOWN":
        extra["missing"] = ["replies"]
    level = "SHOULD" if req == "RW-7" else "MUST"
    return Verdict(requirement=req, level=level, status=Status(status), message=message, **extra)


def run_info(**kw: Any) -> RunInfo:
    base: dict[str, Any] = {"seed": 1, "target": "reference", "lab": "labs/basic.yaml"}
    base |= {"backends": ["netns"], "level": "MUST", "started": "2026-12-07T01:00:00+00:00"}
    return RunInfo.model_validate(base | kw)


def make_test(nodeid: str, outcome: str, ids: list[str], verdicts: list[Verdict]) -> TestResult:
    why = "" if outcome == "passed" else f"{outcome} here"
    failure = why if outcome == "failed" else None
    return TestResult(
        nodeid=nodeid,
        outcome=outcome,  # type: ignore[arg-type]
        requirements=ids,
        message=why,
        verdicts=verdicts,
        decisions=decide_test(ids, verdicts, outcome, why, failure),
    )


def sample() -> Results:
    tests = [
        make_test("s::a", "passed", ["RW-1"], [verdict("RW-1", "PASS")]),
        make_test("s::b", "failed", ["RW-1"], [verdict("RW-1", "FAIL", "leak")]),
        make_test("s::c", "error", ["AF-1"], [verdict("AF-1", "UNKNOWN")]),
        make_test("s::d", "passed", ["RW-7"], []),
    ]
    return Results(run=run_info(), requirements=decide_requirements(tests), tests=tests)


def test_results_round_trip_through_the_file(tmp_path: Path) -> None:
    res = sample()
    path = res.save(tmp_path / "r")
    assert path == tmp_path / "r" / RESULTS_FILE
    back = load_results(tmp_path / "r")
    assert back == res
    assert load_results(path) == res  # the file itself is accepted too
    assert not list((tmp_path / "r").glob("*.tmp")), "the atomic write left its temp file"


def test_worst_status_and_counts() -> None:
    res = sample()
    assert {k: r.status for k, r in res.requirements.items()} == {
        "RW-1": "FAIL",
        "RW-7": "PASS",
        "AF-1": "UNKNOWN",
    }
    assert list(res.requirements) == ["RW-1", "RW-7", "AF-1"]  # catalogue order
    assert res.requirements["RW-1"].message == "leak"
    assert res.counts()["MUST"] == {"PASS": 0, "FAIL": 1, "UNKNOWN": 1, "NOT APPLICABLE": 0}
    assert res.counts()["SHOULD"] == {"PASS": 1, "FAIL": 0, "UNKNOWN": 0, "NOT APPLICABLE": 0}
    assert res.verdict() == "FAIL"
    assert res.verdict("MUST") == "FAIL"
    assert [t.nodeid for t, _ in res.verdicts_of("RW-1")] == ["s::a", "s::b"]
    empty = Results(run=run_info())
    assert empty.verdict() == "UNKNOWN", "a run that decided nothing is not a PASS"


def test_a_test_that_failed_on_its_own_assertion_fails_what_it_cites() -> None:
    d = decide_test(["RW-3", "RW-4"], [verdict("RW-3", "PASS")], "failed", "x", "assert 1 == 2")
    assert {k: (v.status, v.message) for k, v in d.items()} == {
        "RW-3": ("FAIL", "assert 1 == 2"),
        "RW-4": ("FAIL", "x"),
    }
    skipped = decide_test(["AF-1"], [], "skipped", "Skipped: needs root")
    assert (skipped["AF-1"].status, skipped["AF-1"].message) == ("UNKNOWN", "Skipped: needs root")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "no such file"),
        ("{not json", "not a JSON results file"),
        ("[]", "a JSON object expected"),
        ('{"schema_version": 99}', "schema_version 99, this dsrconform reads 1"),
        ('{"run": {}}', "schema_version None"),
        ('{"schema_version": 1, "run": {"seed": "x"}}', "run.seed:"),
        ('{"schema_version": 1, "run": {}, "extra": 1}', "(and "),
    ],
)
def test_malformed_results_are_refused_naming_file_and_field(
    tmp_path: Path, content: str | None, says: str
) -> None:
    if content is not None:
        (tmp_path / RESULTS_FILE).write_text(content)
    with pytest.raises(ConfigError) as e:
        load_results(tmp_path)
    assert str(e.value).startswith(f"{tmp_path / RESULTS_FILE}: ")
    assert says in str(e.value)


def test_binary_garbage_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / RESULTS_FILE).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not a JSON results file"):
        load_results(tmp_path)


def test_the_checked_in_json_schema_is_current() -> None:
    path = REPO / "docs" / "results.schema.json"
    assert json.loads(path.read_text()) == model.json_schema(), (
        "docs/results.schema.json is out of date: "
        "python -m dsrconform.report.model --write docs/results.schema.json"
    )
    assert model._main(["--check", str(path)]) == 0


def test_results_validate_against_the_exported_schema() -> None:
    import jsonschema

    schema = model.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(sample().model_dump_json()), schema)
    bad = json.loads(sample().model_dump_json())
    bad["requirements"]["RW-1"]["status"] = "MAYBE"
    with pytest.raises(jsonschema.ValidationError, match="MAYBE"):
        jsonschema.validate(bad, schema)


def test_at_or_above_orders_levels() -> None:
    assert model.at_or_above("MUST", "SHOULD") and model.at_or_above("SHOULD", "SHOULD")
    assert not model.at_or_above("MAY", "SHOULD")
    assert not model.at_or_above(None, "MAY")


def test_evidence_with_bytes_that_were_not_utf8_saves_and_loads_back(tmp_path: Path) -> None:
    hostile = "payload \udcff\udc80 <script>alert(1)</script>"  # surrogateescape'd bytes
    res = sample()
    res.tests[1].verdicts[0] = verdict("RW-1", "FAIL").model_copy(
        update={"evidence": [Evidence(message=hostile)]}
    )
    res.save(tmp_path)
    back = load_results(tmp_path)
    assert back.tests[1].verdicts[0].evidence[0].message == hostile
    (tmp_path / RESULTS_FILE).read_text(encoding="ascii")  # escaped, so any reader can read it


def test_numbers_json_cannot_hold_are_saved_as_null(tmp_path: Path) -> None:
    res = sample()
    v = verdict("RW-1", "PASS").model_copy(
        update={"measured": {"share": math.nan, "ratio": math.inf, "n": 3}}
    )
    res.tests[0].verdicts[0] = v
    res.save(tmp_path)
    text = (tmp_path / RESULTS_FILE).read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in results.json"))
    measured = load_results(tmp_path).tests[0].verdicts[0].measured
    assert measured == {"share": None, "ratio": None, "n": 3}


def test_a_cited_requirement_without_a_verdict_says_why_it_is_not_a_pass() -> None:
    d = decide_test(["AF-1"], [], "error", "")
    assert (d["AF-1"].status, d["AF-1"].message) == ("UNKNOWN", "test error, no reason given")
    d = decide_test(["AF-1"], [], "passed", "")
    assert (d["AF-1"].status, d["AF-1"].message) == ("PASS", "test passed (no verdict recorded)")
