"""The CI gate: may this run's results be merged (or released)?

``dsrconform gate RESULTS_DIR [--baseline DIR] [--level MUST] [--allow FILE]`` passes (exit 0)
only when

1. every requirement the run decided at ``--level`` or stricter PASSed: a FAIL fails the gate,
   and so does an UNKNOWN (a requirement whose traffic never happened is not a pass), unless
   the allow file *waives* it, with a reason the summary repeats;
2. the run decided at least one requirement at that level (nothing decided is not a pass), it
   ran through (pytest's exit status 0 or 1 and an end time: an interrupted or crashed run is
   incomplete, whatever it decided), and every requirement it was asked for
   (``--requirement``) at that level was decided (one no test judged is UNKNOWN: not run);
3. no measured value regressed beyond its allowance against the baseline run: each metric of
   :data:`METRICS` (and any the allow file adds) is compared, the worst value over the run's
   verdicts against the baseline's worst. A value regresses when it got worse by more than its
   allowance: an absolute amount in the value's unit, or a share of the baseline's value
   (``"50%"``); both given, the larger. A metric neither run measured is skipped; one only the
   baseline measured is reported (the run lost the measurement) and fails when the baseline
   measured it and the requirement is at the level (it is then UNKNOWN in the run anyway).

A requirement NOT APPLICABLE to the target (:mod:`dsrconform.applicability`) never fails the
gate and does not count as decided; the summary and ``gate.md`` list it apart, with its reason.
A run of several address families (``--family ipv4,ipv6``) is gated on every family: a
requirement FAILed in one is failed, named with the families that failed it (``RW-6 (ipv6)``);
a waiver names the requirement and covers every family.

It writes a short summary for CI logs (stdout) and a markdown one for a pull-request comment
(``RESULTS_DIR/gate.md``). Exit status: 0 pass, 1 the gate failed, 2 bad input (results or
baseline missing or malformed, an allow file that does not validate: file, line, field, fix).

The allow file (YAML)::

    allowances:                      # how much worse than the baseline a value may get
      MF-3.recovery_seconds: 50%     # a share of the baseline's value
      SF-2.success_share: 0.02       # an absolute amount, in the value's unit
      SC-2.remapped_share: {allow: 0.05, worse: higher}   # a metric not in METRICS needs 'worse'
    waivers:                         # FAIL or UNKNOWN requirements that do not fail the gate
      RW-6: the stack under test does not steer ICMP PTB yet (issue 17)
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dsrconform.configfile import load_model
from dsrconform.errors import ConfigError
from dsrconform.invariants.verdict import Status
from dsrconform.report.model import Results, at_or_above
from dsrconform.spec import BY_ID

Worse = Literal["higher", "lower"]
GATE_MARKDOWN = "gate.md"
"""The markdown summary's file name, in the results directory."""


@dataclass(frozen=True)
class Metric:
    """A measured value the gate compares with the baseline."""

    requirement: str
    key: str
    """The verdict's ``measured`` key; a glob (``remapped_share*``) matches keys with a suffix
    (a change's time)."""
    worse: Worse
    absolute: float = 0.0
    relative: float = 0.0
    """A share of the baseline's value (0.5: 50 %)."""

    @property
    def name(self) -> str:
        return f"{self.requirement}.{self.key}"

    def allowance(self, baseline: float) -> float:
        return max(self.absolute, abs(baseline) * self.relative)


METRICS: tuple[Metric, ...] = (
    Metric("MF-3", "recovery_seconds", "higher", absolute=1.0, relative=0.5),
    Metric("SF-2", "success_share", "lower", absolute=0.02),
    Metric("SF-2", "p99_latency", "higher", absolute=0.1, relative=0.5),
    Metric("SC-2", "remapped_share*", "higher", absolute=0.05),
    Metric("SC-4", "slowest_convergence_seconds", "higher", absolute=0.5, relative=0.5),
    Metric("SC-5", "breakage", "higher", absolute=0.05),
    Metric("AF-3", "*_max_deviation", "higher", absolute=0.02),
)
"""The values a run is held to against its baseline, with their default allowances."""


# --- the allow file -------------------------------------------------------------------------------


def _parse_amount(value: float | str) -> tuple[float, float]:
    """``0.02`` -> (absolute 0.02, relative 0); ``"50%"`` -> (0, 0.5)."""
    if isinstance(value, bool):
        raise ValueError("a number or a percentage ('50%') expected")
    if isinstance(value, int | float):
        amount, rel = float(value), False
    else:
        text = value.strip()
        rel = text.endswith("%")
        try:
            amount = float(text.removesuffix("%"))
        except ValueError:
            raise ValueError(f"{value!r}: a number or a percentage ('50%') expected") from None
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"{value!r}: must be finite and >= 0")
    return (0.0, amount / 100) if rel else (amount, 0.0)


class Allowance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow: float | str
    worse: Worse | None = None
    """Which way is worse; needed for a metric :data:`METRICS` does not list."""

    @field_validator("allow")
    @classmethod
    def _amount(cls, v: float | str) -> float | str:
        _parse_amount(v)
        return v


class AllowFile(BaseModel):
    """The ``--allow`` file."""

    model_config = ConfigDict(extra="forbid")

    allowances: dict[str, float | str | Allowance] = Field(default_factory=dict)
    waivers: dict[str, str] = Field(default_factory=dict)

    @field_validator("allowances")
    @classmethod
    def _known_metrics(
        cls, v: dict[str, float | str | Allowance]
    ) -> dict[str, float | str | Allowance]:
        known = {m.name for m in METRICS}
        for name, value in v.items():
            req, dot, key = name.partition(".")
            if not dot or not key or req not in BY_ID:
                raise ValueError(
                    f"{name!r}: a metric is REQ.key, e.g. MF-3.recovery_seconds, with a "
                    "requirement ID of the catalogue (`dsrconform spec`)"
                )
            if isinstance(value, Allowance):
                if value.worse is None and name not in known:
                    raise ValueError(
                        f"{name}: not a metric the gate knows; fix: say which way is worse, "
                        f"{{allow: ..., worse: higher}} (known: {', '.join(sorted(known))})"
                    )
            else:
                if name not in known:
                    raise ValueError(
                        f"{name}: not a metric the gate knows; fix: {{allow: {value}, worse: "
                        f"higher|lower}} (known: {', '.join(sorted(known))})"
                    )
                _parse_amount(value)
        return v

    @field_validator("waivers")
    @classmethod
    def _known_requirements(cls, v: dict[str, str]) -> dict[str, str]:
        for req, why in v.items():
            if req not in BY_ID:
                raise ValueError(f"{req!r}: not a requirement ID (`dsrconform spec` lists them)")
            if not why.strip():
                raise ValueError(f"{req}: a waiver needs its reason")
        return v


def load_allow(path: str | Path) -> AllowFile:
    return load_model(path, AllowFile)


def metrics_with(allow: AllowFile | None) -> list[Metric]:
    """:data:`METRICS` with the allow file's allowances and extra metrics."""
    out = {m.name: m for m in METRICS}
    for name, value in (allow.allowances if allow else {}).items():
        amount = value.allow if isinstance(value, Allowance) else value
        absolute, relative = _parse_amount(amount)
        given = value.worse if isinstance(value, Allowance) else None
        worse = given or out[name].worse
        req, _, key = name.partition(".")
        out[name] = Metric(req, key, worse, absolute=absolute, relative=relative)
    return list(out.values())


# --- the decision ---------------------------------------------------------------------------------


def worst_value(results: Results, metric: Metric) -> float | None:
    """The worst value of ``metric`` over the run's verdicts (None: never measured). NaN (a
    share of nothing: no attempts) is no measurement; an infinity counts (the worst there is,
    when it is on the bad side)."""
    values: list[float] = []
    for _, v in results.verdicts_of(metric.requirement):
        for key, value in v.measured.items():
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and fnmatch.fnmatchcase(key, metric.key):
                x = float(value)  # type: ignore[arg-type]
                if not math.isnan(x):
                    values.append(x)
    if not values:
        return None
    return max(values) if metric.worse == "higher" else min(values)


@dataclass(frozen=True)
class Comparison:
    metric: Metric
    current: float | None
    baseline: float | None

    @property
    def regressed(self) -> bool:
        if self.baseline is None:
            return False
        if self.current is None:
            return True  # the run lost a measurement its baseline had
        delta = self.current - self.baseline
        worse_by = delta if self.metric.worse == "higher" else -delta
        return worse_by > self.metric.allowance(self.baseline) + 1e-12

    def describe(self) -> str:
        m = self.metric
        allowed = m.allowance(self.baseline or 0.0)
        if self.current is None:
            return f"{m.name}: not measured (baseline {_fmt(self.baseline)})"
        return (
            f"{m.name}: {_fmt(self.current)} vs baseline {_fmt(self.baseline)} "
            f"({m.worse} is worse, allowance {_fmt(allowed)})"
        )


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


@dataclass
class GateDecision:
    level: str
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    """(requirement, status, message) that fail the gate; the requirement names the address
    families that failed it, ``RW-6 (ipv6)``, when the run asked for any but ipv4 alone."""
    waived: list[tuple[str, str, str]] = field(default_factory=list)
    """(requirement, status, reason) FAIL/UNKNOWN that the allow file waives."""
    not_applicable: list[tuple[str, str]] = field(default_factory=list)
    """(requirement, reason) NOT APPLICABLE to the target: neither decided nor failing."""
    comparisons: list[Comparison] = field(default_factory=list)
    passed_count: int = 0
    decided: int = 0
    incomplete: list[str] = field(default_factory=list)
    """Why the run cannot pass whatever it decided (interrupted, crashed)."""
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.regressed]

    @property
    def passed(self) -> bool:
        return self.decided > 0 and not self.incomplete and not self.failed and not self.regressions

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def decide(
    results: Results,
    *,
    level: str = "MUST",
    baseline: Results | None = None,
    allow: AllowFile | None = None,
) -> GateDecision:
    """The gate's decision on ``results`` (pure: no files)."""
    d = GateDecision(level=level)
    waivers = allow.waivers if allow else {}
    rows = results.decided(level)
    d.decided = len(rows)
    d.not_applicable = [
        (req, row.message)
        for req, row in results.gating(level).items()
        if row.status == Status.NOT_APPLICABLE
    ]
    for req, row in rows.items():
        if row.status == Status.PASS:
            d.passed_count += 1
            continue
        key = req
        if results.names_families():  # which family failed it: "RW-6 (ipv6)"
            key = f"{req} ({', '.join(results.families_at(req, row.status)) or '?'})"
        if req in waivers:
            d.waived.append((key, row.status.value, waivers[req]))
        else:
            d.failed.append((key, row.status.value, row.message))
    for req in results.run.requirements_asked:
        if req in results.requirements or not at_or_above(BY_ID[req].level, level):
            continue
        if req in waivers:
            d.waived.append((req, Status.UNKNOWN.value, waivers[req]))
        else:
            d.failed.append((req, Status.UNKNOWN.value, "asked for; no test of the run judged it"))
    run = results.run
    if run.exit_status not in (0, 1):
        d.incomplete.append(
            f"pytest's exit status was {run.exit_status} (0 or 1: a run that went through)"
        )
    if run.stopped is None:
        d.incomplete.append("the run has no end time (it did not finish writing its results)")
    if not rows:
        d.notes.append(f"the run decided no requirement at {level} or stricter: not a pass")
    if baseline is not None:
        for what in ("target", "mutant", "level"):
            mine, theirs = getattr(results.run, what), getattr(baseline.run, what)
            if mine != theirs:
                d.notes.append(f"the baseline's {what} is {theirs!r}, this run's {mine!r}")
        mine_f, theirs_f = results.run.families or ["ipv4"], baseline.run.families or ["ipv4"]
        if mine_f != theirs_f:  # a run before families was IPv4 only
            d.notes.append(
                f"the baseline's address families are {', '.join(theirs_f)}, this run's "
                f"{', '.join(mine_f)}: a metric compares the worst over each run's families"
            )
        for m in metrics_with(allow):
            if not at_or_above(BY_ID[m.requirement].level, level):
                continue
            c = Comparison(m, worst_value(results, m), worst_value(baseline, m))
            if c.current is not None or c.baseline is not None:
                d.comparisons.append(c)
    return d


# --- output ---------------------------------------------------------------------------------------


def summary_lines(d: GateDecision, results_dir: str, baseline_dir: str | None) -> list[str]:
    """The short summary for CI logs."""
    head = "PASSED" if d.passed else "FAILED"
    out = [
        f"dsrconform gate {head} at {d.level}: {d.passed_count}/{d.decided} requirement(s) "
        f"PASS, {len(d.failed)} not, {len(d.waived)} waived; "
        + (
            f"{len(d.regressions)} regression(s) vs {baseline_dir}"
            if baseline_dir
            else "no baseline"
        )
    ]
    out += [f"  incomplete: {why}" for why in d.incomplete]
    out += [f"  {req} {status}: {msg}" for req, status, msg in d.failed]
    out += [f"  {req} {status} waived: {why}" for req, status, why in d.waived]
    out += [f"  {req} NOT APPLICABLE (not counted): {why}" for req, why in d.not_applicable]
    out += [f"  regressed: {c.describe()}" for c in d.regressions]
    out += [f"  note: {n}" for n in d.notes]
    out.append(f"  results: {results_dir}")
    return out


def markdown(d: GateDecision, results: Results, baseline_dir: str | None) -> str:
    """The markdown summary (a pull-request comment)."""
    icon = {True: "✅", False: "❌"}[d.passed]
    run = results.run
    lines = [
        f"## {icon} dsrconform gate {'passed' if d.passed else 'failed'} at {d.level}",
        "",
        f"Target **{run.target}**"
        + (f" (mutant `{run.mutant}`)" if run.mutant else "")
        + f", seed {run.seed}, {', '.join(run.platforms or run.backends)}"
        + (f", families {', '.join(run.families)}" if results.names_families() else "")
        + "; "
        f"{d.passed_count}/{d.decided} requirements PASS.",
        "",
    ]
    lines += [f"- **incomplete run**: {why}" for why in d.incomplete]
    if d.incomplete:
        lines.append("")
    if d.failed or d.waived:
        lines += ["| requirement | status | why |", "|---|---|---|"]
        lines += [f"| {r} | {s} | {_cell(m)} |" for r, s, m in d.failed]
        lines += [f"| {r} | {s} (waived) | {_cell(m)} |" for r, s, m in d.waived]
        lines.append("")
    if d.not_applicable:
        lines += ["Not applicable to the target (not counted):", ""]
        lines += [f"- {r}: {_cell(why)}" for r, why in d.not_applicable]
        lines.append("")
    if d.comparisons:
        lines += [
            f"Against the baseline `{baseline_dir}`:",
            "",
            "| metric | this run | baseline | allowance | |",
            "|---|---|---|---|---|",
        ]
        for c in d.comparisons:
            mark = "regressed" if c.regressed else "ok"
            allowed = _fmt(c.metric.allowance(c.baseline or 0.0))
            lines.append(
                f"| {c.metric.name} ({c.metric.worse} is worse) | {_fmt(c.current)} | "
                f"{_fmt(c.baseline)} | {allowed} | {mark} |"
            )
        lines.append("")
    lines += [f"- {n}" for n in d.notes]
    if run.replay:
        lines += ["", f"Replay: `{run.replay}`"]
    return "\n".join(lines).rstrip() + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def load_baseline(path: str | Path, *, optional: bool) -> Results | None:
    """The baseline's results; None (noted by the caller) when it is missing and ``optional``."""
    from dsrconform.report.model import load_results, results_path

    if optional and not results_path(path).is_file():
        return None
    try:
        return load_results(path)
    except ConfigError as e:
        raise ConfigError(
            f"--baseline: {e}; fix: give the results directory of an earlier run "
            "(--baseline-optional makes a missing one a note, e.g. on a pipeline's first run)"
        ) from None
