"""The HTML report's page model: the plain dataclasses its template renders.

:mod:`dsrconform.report.build` makes them from :class:`~dsrconform.report.model.Results`;
:mod:`dsrconform.report.html` hands them to ``templates/report.html.j2``.

The contract:

- Every string field is already :func:`~dsrconform.report.text.printable` (the template
  escapes it too); anchors and CSS classes never hold data: anchors are made of
  :func:`~dsrconform.report.text.slug` and indices, classes come from :data:`STATUS_CLASS` and
  :data:`OUTCOME_CLASS`.
- The only markup is :attr:`ScenarioView.svg` (a checked, prefixed inline SVG,
  :mod:`dsrconform.report.svg`).
- No logic beyond trivial properties: these are data for the template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dsrconform.invariants.verdict import Status
from dsrconform.report.attachments import Link

__all__ = [
    "OUTCOME_CLASS",
    "STATUS_CLASS",
    "EvidenceRow",
    "MatrixCell",
    "MatrixRow",
    "ParamRow",
    "ReqTestRow",
    "ReqView",
    "RunView",
    "ScenarioView",
    "TestView",
    "VerdictView",
]

STATUS_CLASS: dict[str | None, str] = {
    Status.PASS: "st-pass",
    Status.FAIL: "st-fail",
    Status.UNKNOWN: "st-unknown",
    Status.NOT_APPLICABLE: "st-na",
    None: "st-none",
}
"""CSS class of a status (None: the run did not decide the requirement)."""
OUTCOME_CLASS: dict[str, str] = {
    "passed": "st-pass",
    "failed": "st-fail",
    "error": "st-unknown",
    "skipped": "st-skip",
}
"""CSS class of a test's outcome (every one of :data:`~dsrconform.report.model.OUTCOMES`)."""


@dataclass
class ParamRow:
    symbol: str
    name: str
    value: str
    unit: str
    meaning: str
    default: str


@dataclass
class EvidenceRow:
    message: str
    flow: str
    packet: str
    link: str
    when: str
    when_title: str


@dataclass
class VerdictView:
    anchor: str
    status: str
    css: str
    message: str
    test: str
    test_anchor: str
    platform: str
    checker: str
    params: list[tuple[str, str]]
    values: list[tuple[str, str, str]]
    """(key, measured, threshold)."""
    missing: list[str]
    error: str
    evidence: list[EvidenceRow]
    evidence_omitted: int
    scenario_anchor: str
    scenario_title: str

    @property
    def open(self) -> bool:
        return self.status != Status.PASS


@dataclass
class ReqTestRow:
    test: str
    anchor: str
    outcome: str
    outcome_css: str
    status: str
    css: str
    message: str


@dataclass
class ReqView:
    id: str
    anchor: str
    level: str
    family: str
    family_name: str
    statement: str
    measure: str
    known: bool
    family_notes: list[tuple[str, str]]
    """(address family's name, the catalogue's note) for each family it was judged in whose
    text the catalogue qualifies (:meth:`dsrconform.spec.Requirement.family_note`)."""
    params: list[ParamRow]
    status: str
    css: str
    message: str
    verdicts: list[VerdictView]
    tests: list[ReqTestRow]
    attachments: list[Link]
    scenarios: list[tuple[str, str]]
    """(anchor, title) of the scenarios whose timelines show it."""


@dataclass
class TestView:
    anchor: str
    nodeid: str
    outcome: str
    css: str
    duration: str
    platform: str
    scenario: str
    scenario_anchor: str
    message: str
    requirements: list[tuple[str, str]]
    """(ID, anchor or "")."""
    attachments: list[Link]


@dataclass
class ScenarioView:
    anchor: str
    title: str
    run_dir: str
    tests: list[tuple[str, str]]
    svg: Any = None
    """Markup of the inline SVG, or None."""
    note: str = ""
    origin: float | None = None
    drawn: bool = False
    """Its timeline loaded and is being drawn."""
    where: str = ""
    """``run<N>/<run dir>/timeline.json``, for :attr:`ReportInfo.missing`."""


@dataclass
class RunView:
    index: int
    anchor: str
    label: list[str]
    """The matrix column's lines (target, mutant, modes, backends, seed)."""
    title: str
    directory: str
    verdict: str
    verdict_css: str
    level: str
    counts: list[tuple[str, int, int, int, int]]
    """(level, PASS, FAIL, UNKNOWN, NOT APPLICABLE)."""
    outcomes: list[tuple[str, int, str]]
    facts: list[tuple[str, str]]
    replay: str
    pytest_args: str
    environment: list[tuple[str, str]]
    tools: list[tuple[str, str]]
    features: list[tuple[str, str]]
    anchors: dict[str, str] = field(default_factory=dict)
    """Requirement ID (as in the results) -> its anchor."""
    requirements: list[ReqView] = field(default_factory=list)
    tests: list[TestView] = field(default_factory=list)
    scenarios: list[ScenarioView] = field(default_factory=list)


@dataclass
class MatrixCell:
    status: str
    css: str
    href: str
    title: str


@dataclass
class MatrixRow:
    id: str
    level: str
    statement: str
    cells: list[MatrixCell]
