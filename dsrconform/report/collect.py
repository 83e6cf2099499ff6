"""What the pytest plugin records of a session, and the :class:`~.model.Results` built from it.

Each test report carries, in its ``user_properties`` (which pytest-xdist sends from its workers
to the controller, so a distributed run records the same as a plain one), the requirement IDs
the test cites, and on its call report the verdicts it recorded, whether it ended UNKNOWN, and
the scenario run it judged. The controller's :class:`RunRecorder` collects them per test;
:func:`build_results` makes the results of the run.

Property names are this module's ``PROP_*``. They are the plugin's contract with itself: the
JUnit rewriting (:mod:`dsrconform.report.junit`) drops them from the XML it keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from dsrconform.invariants.verdict import VERDICT_LIST, Verdict
from dsrconform.report.model import (
    OUTCOMES,
    Attachment,
    Outcome,
    Results,
    RunInfo,
    TestResult,
    decide_requirements,
    decide_test,
    one_line,
)

PROP_VERDICTS = "dsrconform_verdicts"  # call report: the verdicts' JSON rows
PROP_REQUIREMENTS = "dsrconform_requirements"  # every report: the IDs the test cites
PROP_UNKNOWN = "dsrconform_unknown"  # call report: the test ended on RequirementUnknown
PROP_SCENARIO = "dsrconform_scenario"  # call report: (scenario name, run dir relative or None)
PROP_PLATFORM = "dsrconform_platform"  # every report of a lab test: "<backend>-<mode>"
PROP_FAMILY = "dsrconform_family"  # every report of a lab test: its address family
PROP_ATTACHMENTS = "dsrconform_attachments"  # call report: Attachment rows (pcap windows, ...)
PROP_NOT_APPLICABLE = "dsrconform_not_applicable"  # setup report: {requirement: why}, not run
PROPS = (
    PROP_VERDICTS,
    PROP_REQUIREMENTS,
    PROP_UNKNOWN,
    PROP_SCENARIO,
    PROP_PLATFORM,
    PROP_ATTACHMENTS,
    PROP_NOT_APPLICABLE,
)


def prop(report: pytest.TestReport, name: str) -> Any:
    """The value of the user property ``name`` (None when absent)."""
    return next((v for k, v in report.user_properties if k == name), None)


def is_unknown(report: pytest.TestReport) -> bool:
    """A call that failed on RequirementUnknown: an UNKNOWN, reported as an error."""
    return report.when == "call" and report.failed and bool(prop(report, PROP_UNKNOWN))


def is_not_applicable(report: pytest.TestReport) -> bool:
    """A test the framework did not run: NOT APPLICABLE to the target (a skip in setup)."""
    return report.skipped and prop(report, PROP_NOT_APPLICABLE) is not None


def outcome_of(report: pytest.TestReport) -> Outcome:
    """passed, failed, error (setup/teardown failure, or an UNKNOWN), skipped."""
    if report.failed and (report.when != "call" or is_unknown(report)):
        return "error"
    if report.failed:
        return "failed"
    return "skipped" if report.skipped else "passed"


def crash_line(report: pytest.TestReport) -> str:
    """The first line of why a report did not pass ("" when it passed)."""
    if report.passed:
        return ""
    longrepr: Any = report.longrepr
    if isinstance(longrepr, tuple | list) and len(longrepr) == 3:  # a skip: (path, line, reason)
        text = str(longrepr[2])
    elif getattr(longrepr, "reprcrash", None) is not None:  # pytest's ReprExceptionInfo
        text = longrepr.reprcrash.message
    else:
        text = str(longrepr or "")
    return one_line(text)


@dataclass
class _Test:
    ids: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    phases: dict[str, tuple[Outcome, str]] = field(default_factory=dict)
    duration: float = 0.0
    platform: str | None = None
    family: str | None = None
    scenario: str | None = None
    run_dir: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    not_applicable: dict[str, str] = field(default_factory=dict)


class RunRecorder:
    """A pytest plugin object (registered on every process; only the controller's is read):
    the start time and, per test citing a requirement or recording a verdict, what it did."""

    def __init__(self) -> None:
        self.started = datetime.now(UTC)
        self.tests: dict[str, _Test] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """On the xdist controller this sees every worker's reports, user_properties included."""
        ids = prop(report, PROP_REQUIREMENTS) or []
        rows = prop(report, PROP_VERDICTS) or []
        if not ids and not rows:
            return
        test = self.tests.setdefault(report.nodeid, _Test())
        test.ids += [i for i in ids if i not in test.ids]
        test.verdicts += VERDICT_LIST.validate_python(rows)
        test.phases[report.when] = (outcome_of(report), crash_line(report))
        test.duration += report.duration
        test.platform = prop(report, PROP_PLATFORM) or test.platform
        test.family = prop(report, PROP_FAMILY) or test.family
        test.attachments += [
            Attachment.model_validate(a) for a in prop(report, PROP_ATTACHMENTS) or []
        ]
        test.not_applicable.update(prop(report, PROP_NOT_APPLICABLE) or {})
        scenario = prop(report, PROP_SCENARIO)
        if scenario:
            test.scenario, test.run_dir = scenario

    def test_results(self) -> list[TestResult]:
        return [_result(nodeid, t) for nodeid, t in self.tests.items()]


def _result(nodeid: str, t: _Test) -> TestResult:
    outcome, why = max(t.phases.values(), key=lambda p: OUTCOMES.index(p[0]))
    call = t.phases.get("call")
    call_failure = call[1] if call is not None and call[0] == "failed" else None
    na = {r: why for r, why in t.not_applicable.items() if r}  # "": the platform's, no ID
    decisions = decide_test(t.ids, t.verdicts, outcome, why, call_failure, na)
    return TestResult(
        nodeid=nodeid,
        outcome=outcome,
        requirements=t.ids,
        message=why,
        duration=round(t.duration, 3),
        platform=t.platform,
        family=t.family,
        scenario=t.scenario,
        run_dir=t.run_dir,
        verdicts=t.verdicts,
        decisions=decisions,
        attachments=t.attachments,
        not_applicable=na,
    )


def build_results(recorder: RunRecorder, run: RunInfo) -> Results:
    """The run's results: its tests, and per requirement the worst over them."""
    tests = recorder.test_results()
    return Results(run=run, requirements=decide_requirements(tests), tests=tests)
