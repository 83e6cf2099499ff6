"""``dsrconform gate``: its decisions and exit codes for each case, on synthetic results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from dsrconform import cli
from dsrconform.invariants.verdict import Evidence, Status, Verdict
from dsrconform.report.gate import GATE_MARKDOWN, METRICS, decide, load_allow, metrics_with
from dsrconform.report.model import (
    Results,
    RunInfo,
    TestResult,
    decide_requirements,
    decide_test,
)
from dsrconform.spec import BY_ID


def verdict(req: str, status: str = "PASS", **measured: Any) -> Verdict:
    extra: dict[str, Any] = {}
    if status == "FAIL":
        extra["evidence"] = [Evidence(message="broke")]
    if status == "UNKNOWN":
        extra["missing"] = ["no traffic"]
    return Verdict(
        requirement=req,
        level=BY_ID[req].level,
        status=Status(status),
        message=f"{req} {status}",
        measured=measured,
        **extra,
    )


def results(*verdicts: Verdict, target: str = "reference", **run_fields: Any) -> Results:
    tests = []
    for n, v in enumerate(verdicts):
        outcome = {"PASS": "passed", "FAIL": "failed", "UNKNOWN": "error"}[v.status]
        tests.append(
            TestResult(
                nodeid=f"suites/t.py::test[{n}]",
                outcome=outcome,  # type: ignore[arg-type]
                requirements=[v.requirement],
                verdicts=[v],
                decisions=decide_test([v.requirement], [v], outcome, "why"),
            )
        )
    run = RunInfo.model_validate(
        {"seed": 1, "target": target, "lab": "labs/basic.yaml", "backends": ["netns"]}
        | {"level": "MUST", "started": "2026-12-07T01:00:00+00:00", "replay": "dsrconform run"}
        | {"stopped": "2026-12-07T01:05:00+00:00", "exit_status": 0}
        | run_fields
    )
    return Results(run=run, requirements=decide_requirements(tests), tests=tests)


GOOD = results(verdict("RW-1"), verdict("MF-3", recovery_seconds=2.0), verdict("RW-7"))


def test_every_must_pass_passes() -> None:
    d = decide(GOOD)
    assert (d.passed, d.exit_code, d.decided, d.passed_count) == (True, 0, 2, 2)


@pytest.mark.parametrize("status", ["FAIL", "UNKNOWN"])
def test_a_fail_or_unknown_at_the_level_fails(status: str) -> None:
    d = decide(results(verdict("RW-1"), verdict("MF-1", status)))
    assert not d.passed and d.exit_code == 1
    assert [(r, s) for r, s, _ in d.failed] == [("MF-1", status)]


def test_the_level_decides_what_counts() -> None:
    res = results(verdict("RW-1"), verdict("RW-7", "FAIL"))  # RW-7 is SHOULD
    assert decide(res, level="MUST").passed
    assert not decide(res, level="SHOULD").passed


def test_nothing_decided_is_not_a_pass() -> None:
    d = decide(results(verdict("RW-7")), level="MUST")
    assert not d.passed and d.decided == 0
    assert "decided no requirement" in d.notes[0]


def test_a_waiver_keeps_a_fail_from_failing_the_gate(tmp_path: Path) -> None:
    f = tmp_path / "allow.yaml"
    f.write_text("waivers:\n  MF-1: the stack drops state on failover (issue 17)\n")
    d = decide(results(verdict("RW-1"), verdict("MF-1", "FAIL")), allow=load_allow(f))
    assert d.passed
    assert d.waived == [("MF-1", "FAIL", "the stack drops state on failover (issue 17)")]


@pytest.mark.parametrize(
    ("current", "regressed"),
    [
        (2.0, False),
        (3.0, False),  # +1.0 s: within max(1.0 s, 50 % of 2.0 s)
        (3.01, True),
        (1.0, False),  # better
    ],
)
def test_a_value_worse_than_the_baseline_beyond_its_allowance_fails(
    current: float, regressed: bool
) -> None:
    now = results(verdict("RW-1"), verdict("MF-3", recovery_seconds=current))
    d = decide(now, baseline=GOOD)
    (c,) = [c for c in d.comparisons if c.metric.requirement == "MF-3"]
    assert (c.current, c.baseline, c.regressed) == (current, 2.0, regressed)
    assert d.passed is not regressed


def test_lower_is_worse_for_a_success_share() -> None:
    base = results(verdict("SF-2", success_share=0.99))  # SF-2 is SHOULD
    ok = decide(results(verdict("SF-2", success_share=0.975)), baseline=base, level="SHOULD")
    assert ok.passed
    d = decide(results(verdict("SF-2", success_share=0.95)), baseline=base, level="SHOULD")
    assert not decide(results(verdict("SF-2", success_share=0.95)), baseline=base).comparisons
    assert [c.metric.name for c in d.regressions] == ["SF-2.success_share"]


def test_the_worst_of_several_values_and_glob_keys() -> None:
    base = results(verdict("SC-2", **{"remapped_share@1.0": 0.25, "remapped_share@9.0": 0.26}))
    now = results(verdict("SC-2", **{"remapped_share@1.5": 0.25, "remapped_share@9.5": 0.40}))
    d = decide(now, baseline=base, level="SHOULD")  # SC-2 is SHOULD
    (c,) = d.comparisons
    assert (c.current, c.baseline, c.regressed) == (0.40, 0.26, True)


def test_a_lost_measurement_is_a_regression() -> None:
    d = decide(results(verdict("RW-1"), verdict("MF-3", "PASS")), baseline=GOOD)
    (c,) = d.regressions
    assert c.current is None and "not measured" in c.describe()


def test_allowances_from_the_file_override_and_add(tmp_path: Path) -> None:
    f = tmp_path / "allow.yaml"
    f.write_text(
        "allowances:\n"
        "  MF-3.recovery_seconds: 10%\n"
        "  RW-1.streams_completed: {allow: 5, worse: lower}\n"
    )
    ms = {m.name: m for m in metrics_with(load_allow(f))}
    assert (ms["MF-3.recovery_seconds"].absolute, ms["MF-3.recovery_seconds"].relative) == (0, 0.1)
    assert ms["RW-1.streams_completed"].worse == "lower"
    now = results(verdict("RW-1", streams_completed=90), verdict("MF-3", recovery_seconds=2.3))
    base = results(verdict("RW-1", streams_completed=100), verdict("MF-3", recovery_seconds=2.0))
    d = decide(now, baseline=base, allow=load_allow(f))
    assert sorted(c.metric.name for c in d.regressions) == [
        "MF-3.recovery_seconds",
        "RW-1.streams_completed",
    ]
    assert len(ms) == len(METRICS) + 1


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("allowances:\n  MF-3.recovery_seconds: lots\n", "'lots': a number or a percentage"),
        ("allowances:\n  RW-1.streams: 5\n", "not a metric the gate knows; fix: {allow: 5"),
        ("allowances:\n  XX-9.y: 5\n", "a metric is REQ.key"),
        ("waivers:\n  RW-99: x\n", "'RW-99': not a requirement ID"),
        ("waivers:\n  RW-1: ' '\n", "RW-1: a waiver needs its reason"),
        ("allowances: {}\nwaiver: {}\n", "waiver"),
    ],
)
def test_a_bad_allow_file_names_file_line_and_fix(
    tmp_path: Path, text: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    GOOD.save(tmp_path / "r")
    f = tmp_path / "allow.yaml"
    f.write_text(text)
    assert cli.main(["gate", str(tmp_path / "r"), "--allow", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dsrconform: error: {f}:"), err
    assert says in err


# --- the command ----------------------------------------------------------------------------------


def test_gate_command_exit_codes_and_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    GOOD.save(tmp_path / "base")
    worse = results(verdict("RW-1"), verdict("MF-3", recovery_seconds=9.0))
    worse.save(tmp_path / "now")
    assert cli.main(["gate", str(tmp_path / "base")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dsrconform gate PASSED at MUST: 2/2 requirement(s) PASS")
    assert cli.main(["gate", str(tmp_path / "now"), "--baseline", str(tmp_path / "base")]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out.splitlines()[0] and "1 regression(s)" in out
    assert "regressed: MF-3.recovery_seconds: 9 vs baseline 2" in out
    md = (tmp_path / "now" / GATE_MARKDOWN).read_text()
    assert md.startswith("## ❌ dsrconform gate failed at MUST")
    assert "| MF-3.recovery_seconds (higher is worse) | 9 | 2 | 1 | regressed |" in md
    assert "Replay: `dsrconform run`" in md


def test_missing_results_or_baseline_are_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["gate", str(tmp_path / "nothing")]) == 2
    assert "no such file" in capsys.readouterr().err
    GOOD.save(tmp_path / "r")
    missing = str(tmp_path / "no-baseline")
    assert cli.main(["gate", str(tmp_path / "r"), "--baseline", missing]) == 2
    err = capsys.readouterr().err
    assert "--baseline:" in err and "--baseline-optional" in err
    argv = ["gate", str(tmp_path / "r"), "--baseline", missing, "--baseline-optional"]
    assert cli.main(argv) == 0
    assert f"note: no baseline at {missing}: regressions not checked" in capsys.readouterr().out


def test_a_baseline_of_another_target_is_noted() -> None:
    d = decide(GOOD, baseline=results(verdict("RW-1"), target="katran"))
    assert "the baseline's target is 'katran', this run's 'reference'" in d.notes


# --- incomplete runs, undecided requirements, values that are not numbers -------------------------


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"exit_status": 2}, "pytest's exit status was 2"),
        ({"exit_status": None}, "pytest's exit status was None"),
        ({"stopped": None}, "no end time"),
    ],
)
def test_an_interrupted_or_crashed_run_never_passes(fields: dict[str, Any], says: str) -> None:
    d = decide(results(verdict("RW-1"), **fields))
    assert not d.passed and d.exit_code == 1
    assert any(says in why for why in d.incomplete), d.incomplete


def test_a_requirement_asked_for_and_never_judged_is_unknown(tmp_path: Path) -> None:
    res = results(verdict("RW-1"), requirements_asked=["RW-1", "MF-1", "RW-7"])
    d = decide(res)  # RW-7 is SHOULD: not counted at MUST
    assert [(r, s) for r, s, _ in d.failed] == [("MF-1", "UNKNOWN")]
    f = tmp_path / "allow.yaml"
    f.write_text("waivers:\n  MF-1: no MUX failure in this lab (one MUX)\n")
    assert decide(res, allow=load_allow(f)).passed


def test_a_share_of_nothing_is_no_measurement_whatever_its_order() -> None:
    base = results(verdict("SF-2", success_share=0.99))
    for values in ([math.nan, 0.30], [0.30, math.nan]):
        now = results(*(verdict("SF-2", success_share=v) for v in values))
        (c,) = decide(now, baseline=base, level="SHOULD").comparisons
        assert (c.current, c.regressed) == (0.30, True), values
    only_nan = results(verdict("SF-2", success_share=math.nan))
    (c,) = decide(only_nan, baseline=base, level="SHOULD").comparisons
    assert c.current is None and c.regressed  # lost the measurement


def test_hostile_text_and_an_unwritable_summary_do_not_change_the_decision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = verdict("RW-1", "FAIL").model_copy(update={"message": "bad \udcff <b>|x"})
    res = results(bad)
    res.save(tmp_path / "r")
    assert cli.main(["gate", str(tmp_path / "r")]) == 1
    out = capsys.readouterr().out
    assert "RW-1 FAIL: bad \\udcff <b>|x" in out
    assert "bad \\udcff <b>\\|x" in (tmp_path / "r" / GATE_MARKDOWN).read_text()
    (tmp_path / "r" / GATE_MARKDOWN).unlink()
    (tmp_path / "r" / GATE_MARKDOWN).mkdir()  # cannot be written as a file
    assert cli.main(["gate", str(tmp_path / "r")]) == 1
    assert "markdown summary not written" in capsys.readouterr().out
