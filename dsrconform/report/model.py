"""The results model: what one conformance run decided, in one typed, versioned file.

A run of the suites (the pytest plugin, through ``dsrconform run`` or plain pytest with
``--dsr-results DIR``) leaves ``DIR/results.json``, a :class:`Results`. Everything that reads a
run reads that file through :func:`load_results`: ``dsrconform run``'s table and exit status,
``dsrconform check``, ``dsrconform report`` and ``dsrconform gate``. Nothing else in a results
directory is needed to judge or show a run; the scenario run directories beside it hold the raw
observations (``dsrconform check`` judges them again) and the evidence files the report links.

The contract:

- :attr:`Results.schema_version` is :data:`SCHEMA_VERSION`. A change that an old reader would
  misread bumps it; :func:`load_results` refuses other versions, naming the file and the fix.
  The JSON Schema of the model is checked in (``docs/results.schema.json``, see
  :func:`json_schema`) and a unit test fails when the two differ.
- :attr:`Results.requirements`: per requirement the run decided (catalogue order), the **worst**
  status over the tests citing it (FAIL > UNKNOWN > PASS > NOT APPLICABLE, :data:`STATUS_RANK`)
  with that test's message. A requirement no test of the run cited is absent, never PASS. NOT
  APPLICABLE (the target lacks a capability the requirement needs; decided by the framework
  before checking, :mod:`dsrconform.applicability`) is neither a pass nor a failure: the run's
  exit status and the gate leave it out (:meth:`Results.decided`). Schema version 1 still: a
  file without the status reads as before, and a reader that predates it refuses the new status
  by name rather than misreading it.
- :attr:`Results.tests`: per test, its outcome, the requirements it cites, how it decided each
  (:class:`TestDecision`), its verdicts (measured values, thresholds, evidence) and the scenario
  run directory its observations came from (relative to the results directory).
- :attr:`Results.run`: what a reader needs to trust and replay the run: seed, target and its
  version, mutant, lab file and its hash, backends, modes, level, start and end, the kernel and
  tool versions, the kernel features the traffic probed, and the replay command.

This module imports only pydantic and the catalogue: the CLI and the plugin load it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dsrconform.errors import ConfigError
from dsrconform.invariants.verdict import Status, Verdict
from dsrconform.spec import BY_ID, LEVELS, REQUIREMENTS, Level

__all__ = [
    "OUTCOMES",
    "RESULTS_FILE",
    "SCHEMA_VERSION",
    "STATUS_COLOUR",
    "STATUS_RANK",
    "TIMELINE_FILE",
    "Attachment",
    "Environment",
    "RequirementResult",
    "Results",
    "RunInfo",
    "TestDecision",
    "TestResult",
    "at_or_above",
    "decide_requirements",
    "json_schema",
    "load_results",
    "worst",
]

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"
"""The results model's file in a results directory."""
TIMELINE_FILE = "timeline.json"
"""A scenario run directory's timeline (:class:`dsrconform.report.timeline.Timeline`), written by
the pytest plugin, drawn by the report."""

STATUS_RANK: dict[str, int] = {
    Status.NOT_APPLICABLE: -1,
    Status.PASS: 0,
    Status.UNKNOWN: 1,
    Status.FAIL: 2,
}
"""Worst wins, when several verdicts or tests decide one requirement: a requirement NOT
APPLICABLE on one platform and decided on another takes the other's status."""
STATUS_COLOUR: dict[str, str] = {
    Status.PASS: "green",
    Status.FAIL: "red",
    Status.UNKNOWN: "yellow",
    Status.NOT_APPLICABLE: "blue",
}
"""rich's colour of each status (the terminal tables); the HTML report has its own CSS."""

Outcome = Literal["passed", "failed", "error", "skipped"]
"""A test's outcome over its phases: error is a setup/teardown failure or an UNKNOWN."""
OUTCOMES: tuple[Outcome, ...] = ("passed", "skipped", "error", "failed")
"""Best first: a test's outcome is the worst of its phases'."""
OUTCOME_STATUS: dict[str, Status] = {
    "passed": Status.PASS,
    "failed": Status.FAIL,
    "error": Status.UNKNOWN,
    "skipped": Status.UNKNOWN,
}
"""A cited requirement no verdict decided takes its test's outcome (a skip decided nothing)."""


def at_or_above(level: str | None, lowest: str) -> bool:
    """Whether a requirement of ``level`` is as strict as ``lowest`` or stricter (MUST is above
    SHOULD, above MAY); an unknown level (None) is not."""
    rank: dict[str | None, int] = {lv: n for n, lv in enumerate(LEVELS)}
    return level in rank and rank[level] <= rank[lowest]


def worst(statuses: Iterable[str]) -> Status:
    """The worst of ``statuses`` (PASS for none)."""
    return Status(max(statuses, key=STATUS_RANK.__getitem__, default=Status.PASS))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Environment(_Model):
    """The machine and tools a run ran on."""

    kernel: str = ""
    """``uname -r``."""
    machine: str = ""
    """``uname -m``."""
    cpus: int | None = None
    python: str = ""
    tools: dict[str, str] = Field(default_factory=dict)
    """Tool and library versions (dsrconform, pytest, scapy, clang, bpftool, bird, ...): the first
    line each printed of its version, or "not found"."""
    features: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """The kernel features the run's traffic probed (live frames, AF_PACKET, ...) and what each
    probe found: why a flood or a probe used the engine its fault windows name."""


class RunInfo(_Model):
    """What was run, where and when: enough to trust the verdicts and to replay the run."""

    seed: int
    target: str
    target_version: str | None = None
    mutant: str | None = None
    lab: str
    """The lab file, as given."""
    lab_sha256: str | None = None
    """The lab file's SHA-256 at the start of the run (None: it could not be read)."""
    backends: list[str]
    modes: list[str] = Field(default_factory=list)
    """The rewrite modes asked for (empty: the lab file's, and the steady suite's others)."""
    platforms: list[str] = Field(default_factory=list)
    """Every ``<backend>-<mode>`` the selected tests ran on."""
    families: list[str] = Field(default_factory=list)
    """The address families asked for (``--dsr-family``; empty: a run recorded before
    families, IPv4 only)."""
    family_labs: dict[str, str] = Field(default_factory=dict)
    """Address family -> the lab file its tests brought up (``lab`` is the first family's)."""
    level: Level
    """The lowest requirement level the run tested (and its exit status counted)."""
    requirements_asked: list[str] = Field(default_factory=list)
    """``--dsr-requirement`` IDs (empty: all at the level)."""
    profile: str | None = None
    """The ``dsrconform run --profile`` the run was made with (None: plain)."""
    started: datetime
    stopped: datetime | None = None
    exit_status: int | None = None
    """pytest's exit status (0 all passed, 1 some did not, 2 interrupted, ...)."""
    pytest_args: list[str] = Field(default_factory=list)
    replay: str = ""
    """A command that runs the same tests with the same seed."""
    environment: Environment = Field(default_factory=Environment)


class TestDecision(_Model):
    """How one test decided one requirement it cites or judged."""

    __test__: ClassVar[bool] = False  # not a pytest test class, whatever its name

    status: Status
    message: str


class Attachment(_Model):
    """A file that shows a test's evidence (a pcap window of a FAIL, a timeline), in the results
    directory."""

    name: str
    """What it shows, for a reader: ``RW-1 evidence, mux1:dsrc-router, 12.3-13.1 s``."""
    path: str
    """Relative to the results directory (POSIX separators)."""
    kind: Literal["pcap", "svg", "json", "text"]
    requirement: str | None = None
    """The requirement whose evidence it is (None: the whole test's, e.g. a timeline)."""
    note: str = ""
    """What a reader should know: an incomplete window, how many packets."""


class TestResult(_Model):
    """One test of the run (one pytest node id)."""

    __test__: ClassVar[bool] = False

    nodeid: str
    outcome: Outcome
    requirements: list[str] = Field(default_factory=list)
    """The requirement IDs the test cites (its ``requirement`` markers)."""
    message: str = ""
    """Why it did not pass: the first line of its failure, error or skip ("" when passed)."""
    duration: float = 0.0
    """Seconds, over its phases."""
    platform: str | None = None
    """``<backend>-<mode>`` when the run had several (``-<family>`` added when the run asked
    for any address family but ipv4 alone)."""
    family: str | None = None
    """The address family (``ipv4``/``ipv6``) whose services a lab test drove; None for a test
    of no lab."""
    scenario: str | None = None
    """The scenario whose observations it judged."""
    run_dir: str | None = None
    """That scenario's run directory, relative to the results directory (POSIX separators)."""
    verdicts: list[Verdict] = Field(default_factory=list)
    decisions: dict[str, TestDecision] = Field(default_factory=dict)
    """Requirement ID -> what this test decided (see :func:`decide_requirements`)."""
    attachments: list[Attachment] = Field(default_factory=list)
    not_applicable: dict[str, str] = Field(default_factory=dict)
    """Requirement ID -> why the framework did not run this test for it: the target lacks a
    capability its platform or the requirement needs (:mod:`dsrconform.applicability`); empty
    for a test that ran. A NOT APPLICABLE test's outcome is ``skipped``."""


class RequirementTest(_Model):
    """One test's part in a requirement's row."""

    test: str
    outcome: Outcome
    status: Status
    message: str


class RequirementResult(_Model):
    """One requirement the run decided: the worst status over the tests citing it."""

    id: str
    level: Level | None
    """None for an ID the catalogue does not know (a test citing a removed requirement)."""
    status: Status
    message: str
    """The worst test's message for it."""
    tests: list[RequirementTest]
    families: list[str] = Field(default_factory=list)
    """The address families it was judged in (its lab tests'), ipv4 first; the report shows
    the catalogue's note for each (:meth:`dsrconform.spec.Requirement.family_note`)."""


class Results(_Model):
    """A run's results (see the module docstring for the contract)."""

    schema_version: Literal[1] = 1  # SCHEMA_VERSION
    run: RunInfo
    requirements: dict[str, RequirementResult] = Field(default_factory=dict)
    tests: list[TestResult] = Field(default_factory=list)

    def gating(self, level: str) -> dict[str, RequirementResult]:
        """The requirements at or above ``level``."""
        return {k: r for k, r in self.requirements.items() if at_or_above(r.level, level)}

    def decided(self, level: str) -> dict[str, RequirementResult]:
        """The requirements at or above ``level`` the run decided: NOT APPLICABLE ones left out
        (they neither pass nor fail a run or a gate)."""
        return {k: r for k, r in self.gating(level).items() if r.status != Status.NOT_APPLICABLE}

    def counts(self) -> dict[str, dict[str, int]]:
        """Per level (strictest first), how many requirements PASSed, FAILed, are UNKNOWN or
        NOT APPLICABLE."""
        out: dict[str, dict[str, int]] = {lv: {s.value: 0 for s in Status} for lv in LEVELS}
        for r in self.requirements.values():
            if r.level is not None:
                out[r.level][r.status.value] += 1
        return out

    def verdict(self, level: str | None = None) -> Status:
        """The run's verdict at ``level`` (default: the run's): the worst status of the
        requirements at or above it it decided; UNKNOWN when it decided none (nothing, or only
        NOT APPLICABLE, is not a PASS)."""
        rows = self.decided(level or self.run.level)
        return worst(r.status for r in rows.values()) if rows else Status.UNKNOWN

    def names_families(self) -> bool:
        """Whether the run asked for any address family but ipv4 alone (its tables then say
        in which family each requirement was decided)."""
        return self.run.families not in ([], ["ipv4"])

    def families_at(self, requirement: str, status: Status) -> list[str]:
        """The address families of the tests that decided ``requirement`` as ``status``
        (ipv4 first): where a FAIL or an UNKNOWN happened."""
        fams = {
            t.family
            for t in self.tests
            if t.family is not None
            and requirement in t.decisions
            and t.decisions[requirement].status == status
        }
        return sorted(fams)

    def verdicts_of(self, requirement: str) -> list[tuple[TestResult, Verdict]]:
        """Every verdict on ``requirement``, with its test."""
        return [(t, v) for t in self.tests for v in t.verdicts if v.requirement == requirement]

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/results.json`` (atomically: a reader never sees half a file)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / (RESULTS_FILE + ".tmp")
        # json.dumps, not model_dump_json: evidence from crafted packets may hold lone
        # surrogates (bytes that were not UTF-8), which pydantic refuses to encode; ensure_ascii
        # writes them as \udcxx escapes, which load back as they were.
        data = _finite(self.model_dump(mode="json"))
        text = json.dumps(data, indent=1, ensure_ascii=True, allow_nan=False)
        tmp.write_text(text + "\n")
        tmp.replace(d / RESULTS_FILE)
        return d / RESULTS_FILE


def _finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None: JSON has no such numbers (a
    checker measures a share of nothing as NaN), and a reader must not meet ``NaN`` tokens."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def results_path(where: str | Path) -> Path:
    """``where`` itself if it is a file, else ``where/results.json``; a ``latest`` link (or any
    symlink) is followed."""
    p = Path(where)
    return p if p.is_file() else p / RESULTS_FILE


def load_results(where: str | Path) -> Results:
    """The results of a results directory (or of a results.json file).

    ConfigError names the file and what is wrong with it, and the fix: no such file, not JSON,
    another schema version, a field that does not validate (its JSON path)."""
    path = results_path(where)
    if not path.is_file():
        raise ConfigError(
            f"{path}: no such file; fix: give a results directory written by `dsrconform run` "
            f"(or pytest --dsr-results DIR), e.g. results/latest"
        )
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a JSON results file ({e}); fix: rerun the suites") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a JSON object expected, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: schema_version {version!r}, this dsrconform reads {SCHEMA_VERSION}; fix: "
            "rerun the suites with this version, or read it with the dsrconform that wrote it"
        )
    try:
        return Results.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where_ = ".".join(str(x) for x in err["loc"]) or "(top level)"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise ConfigError(f"{path}: {where_}: {err['msg']}{more}") from None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`Results` (``docs/results.schema.json``)."""
    schema = Results.model_json_schema()
    schema["$id"] = f"https://dsrconform.invalid/schema/results-v{SCHEMA_VERSION}.json"
    schema["title"] = "dsrconform results"
    return schema


# --- deciding requirements from tests -------------------------------------------------------------


def decide_test(
    ids: Iterable[str],
    verdicts: Iterable[Verdict],
    outcome: str,
    why: str,
    call_failure: str | None = None,
    not_applicable: Mapping[str, str] | None = None,
) -> dict[str, TestDecision]:
    """Requirement ID -> how one test decided it.

    A requirement in ``not_applicable`` (the framework did not run the test for it) is NOT
    APPLICABLE with its reason, whatever the test's outcome (a skip).

    The test's verdicts decide the requirements they are about (the worst verdict of each). A
    requirement the test cites but has no verdict for takes the test's outcome: passed is PASS,
    failed is FAIL, an error or a skip is UNKNOWN (it was not decided). A test whose call
    failed (``call_failed``) although every verdict it recorded PASSed failed for another reason
    (an assertion of its own): each requirement it cites is then FAIL, with ``why``."""
    out: dict[str, TestDecision] = {}
    for v in verdicts:
        if (
            v.requirement not in out
            or STATUS_RANK[v.status] > STATUS_RANK[out[v.requirement].status]
        ):
            out[v.requirement] = TestDecision(status=v.status, message=one_line(v.message))
    unexplained = call_failure is not None and all(d.status == Status.PASS for d in out.values())
    for req in ids:
        if not_applicable and req in not_applicable and req not in out:
            out[req] = TestDecision(status=Status.NOT_APPLICABLE, message=not_applicable[req])
        elif req not in out:
            message = why or (
                "test passed (no verdict recorded)"
                if outcome == "passed"
                else f"test {outcome}, no reason given"
            )
            out[req] = TestDecision(status=OUTCOME_STATUS[outcome], message=message)
        elif unexplained:
            out[req] = TestDecision(status=Status.FAIL, message=call_failure or "")
    return out


def decide_requirements(tests: Iterable[TestResult]) -> dict[str, RequirementResult]:
    """Per requirement some test decided (catalogue order, unknown IDs last): the worst status
    over those tests with that test's message (the first of the worst), and every test's part."""
    per: dict[str, list[RequirementTest]] = {}
    fams: dict[str, set[str]] = {}
    for t in tests:
        for req, d in t.decisions.items():
            if t.family is not None:
                fams.setdefault(req, set()).add(t.family)
            row = RequirementTest(
                test=t.nodeid, outcome=t.outcome, status=d.status, message=d.message
            )
            per.setdefault(req, []).append(row)
    order = {r.id: n for n, r in enumerate(REQUIREMENTS)}
    out: dict[str, RequirementResult] = {}
    for req in sorted(per, key=lambda r: (order.get(r, len(order)), r)):
        rows = per[req]
        first_worst = max(rows, key=lambda r: STATUS_RANK[r.status])
        out[req] = RequirementResult(
            id=req,
            level=BY_ID[req].level if req in BY_ID else None,
            status=first_worst.status,
            message=first_worst.message,
            tests=rows,
            families=sorted(fams.get(req, ())),  # "ipv4" < "ipv6": ipv4 first
        )
    return out


def one_line(text: str, width: int = 200) -> str:
    """The first line of ``text``, cut to ``width`` characters (with ``...``)."""
    line = text.strip().partition("\n")[0]
    return line if len(line) <= width else line[: width - 3] + "..."


def status_counts(rows: Mapping[str, RequirementResult]) -> dict[str, int]:
    """How many of ``rows`` are PASS, FAIL, UNKNOWN, NOT APPLICABLE (every status present)."""
    return {s.value: sum(r.status == s for r in rows.values()) for s in Status}


def _main(argv: list[str] | None = None) -> int:
    """``python -m dsrconform.report.model --write FILE | --check FILE``: export the JSON Schema,
    or exit 1 when FILE is not the current one (CI runs --check via the unit tests)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m dsrconform.report.model")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", metavar="FILE")
    g.add_argument("--check", metavar="FILE")
    a = p.parse_args(argv)
    text = json.dumps(json_schema(), indent=1, sort_keys=True) + "\n"
    if a.write:
        Path(a.write).write_text(text)
        return 0
    current = Path(a.check).read_text() if Path(a.check).is_file() else ""
    if current != text:
        print(f"{a.check} is out of date: python -m dsrconform.report.model --write {a.check}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
