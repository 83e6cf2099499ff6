"""The HTML report's page, built: :class:`~dsrconform.report.model.Results` to page views.

:class:`Builder` turns each run's results into a :class:`~dsrconform.report.views.RunView`
(its summary, requirements with their verdicts and evidence, tests, scenarios), queues its
attachments with the :class:`~dsrconform.report.attachments.Placer` and its timelines for
drawing; :func:`matrix` makes the requirements-by-runs matrix.

The contract:

- **Anchors** (every ``href="#..."`` of the page has its target): per run N (0-based, in the
  order given): ``#run{N}`` (the template adds ``#run{N}-env``, ``-reqs``, ``-tests``,
  ``-scenarios``); per requirement ``#r{N}-{ID}`` (the matrix cell's link;
  :func:`~dsrconform.report.text.slug` of the ID, ``_2``... appended when two odd IDs slug
  alike); per verdict ``#v{N}-{J}-{K}`` (J: the requirement's row in the run, K: its verdict);
  per test ``#t{N}-{K}`` (K: its row in ``Results.tests``); per scenario ``#s{N}-{K}``, the ids
  inside its SVG prefixed with ``s{N}-{K}-``. A link is only made to an anchor that exists.
- **Timelines once per scenario.** Each scenario run directory (``TestResult.run_dir``) holding
  ``timeline.json`` is one :class:`~dsrconform.report.views.ScenarioView`, drawn once
  (:meth:`Builder.draw`, :mod:`dsrconform.report.svg`); requirements and tests link to it. A
  timeline that does not load or draw is noted in its place and in :attr:`Builder.missing`.
  Evidence times are shown relative to the scenario's timeline origin (the SVG's x axis) when it
  has one, as CLOCK_MONOTONIC seconds otherwise.
- **Attachments** go under their requirement when the run decided it, else under their test;
  each is placed once, by :meth:`Placer.place_all
  <dsrconform.report.attachments.Placer.place_all>` (:meth:`Builder.place`).
- Every text shown passes through :func:`~dsrconform.report.text.printable`; a requirement
  not in this dsrconform's catalogue is shown as such, never a crash.

Importing this module loads neither Jinja2 nor matplotlib (nor the timeline model, until a
timeline is loaded).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dsrconform.invariants.verdict import Status, Verdict
from dsrconform.report.attachments import Placer, inside
from dsrconform.report.model import OUTCOMES, TIMELINE_FILE, Results, TestResult
from dsrconform.report.svg import inline_timelines
from dsrconform.report.text import duration, json_text, num, printable, slug
from dsrconform.report.views import (
    OUTCOME_CLASS,
    STATUS_CLASS,
    EvidenceRow,
    MatrixCell,
    MatrixRow,
    ParamRow,
    ReqTestRow,
    ReqView,
    RunView,
    ScenarioView,
    TestView,
    VerdictView,
)
from dsrconform.spec import ADDRESS_FAMILY_NAMES, BY_ID, FAMILIES, LEVELS, REQUIREMENTS, Requirement

if TYPE_CHECKING:
    from dsrconform.report.timeline import Timeline

__all__ = ["Builder", "load_timeline", "matrix"]


def load_timeline(root: Path, run_dir: str) -> tuple[Timeline | None, str, bool]:
    """(timeline, why not, whether a timeline.json exists) of a scenario run directory."""
    full, why = inside(root, f"{run_dir.rstrip('/')}/{TIMELINE_FILE}")
    if full is None:
        return None, why, "missing" not in why
    try:
        from dsrconform.report.timeline import Timeline
    except ImportError as e:
        return None, f"timelines cannot be drawn here ({e})", True
    try:
        return Timeline.model_validate_json(full.read_bytes()), "", True
    except Exception as e:  # pydantic's ValidationError, OSError
        first = printable(str(e)).splitlines()[0] if str(e) else type(e).__name__
        return None, f"{TIMELINE_FILE} does not load: {first}", True


def _label(results: Results) -> list[str]:
    r = results.run
    target = r.target + (f" {r.target_version}" if r.target_version else "")
    modes = ", ".join(r.modes) or ", ".join(sorted({p.split("-", 1)[-1] for p in r.platforms}))
    return [
        printable(target),
        printable(f"mutant {r.mutant}" if r.mutant else "no mutant"),
        printable(modes or "lab's modes"),
        printable(", ".join(r.backends) or "\u2014"),
        f"seed {r.seed}",
    ]


def _family_notes(req: Requirement | None, families: Iterable[str]) -> list[tuple[str, str]]:
    """(family's name, note) of ``req`` for each address family it was judged in: what the
    report shows under the statement (nothing for a family the catalogue does not qualify)."""
    if req is None:
        return []
    notes = [(ADDRESS_FAMILY_NAMES.get(f, f), req.family_note(f)) for f in families]
    return [(name, printable(note)) for name, note in notes if note]


def platform_text(test: TestResult) -> str:
    """A test's platform as the report shows it: its ``platform`` (which names the family when
    the run asked for several), else its address family when that is not IPv4 (a run of one
    family other than the default keeps plain test ids)."""
    if test.platform:
        return test.platform
    return test.family if test.family is not None and test.family != "ipv4" else ""


def _when(t: float | None, until: float | None, origin: float | None) -> tuple[str, str]:
    if t is None:
        return "", ""
    absolute = f"CLOCK_MONOTONIC {t:.6f} s" + (f" to {until:.6f} s" if until is not None else "")
    if origin is None:
        text = f"{t:.3f}" + (f"\u2013{until:.3f}" if until is not None else "") + " s (monotonic)"
        return text, absolute
    text = f"+{t - origin:.3f}" + (f"\u2013{until - origin:.3f}" if until is not None else "")
    return text + " s", absolute


def _param_rows(req_id: str, verdicts: Iterable[Verdict]) -> list[ParamRow]:
    if req_id not in BY_ID:
        used: dict[str, set[float]] = {}
        for v in verdicts:
            for k, val in v.params.items():
                used.setdefault(k, set()).add(val)
        return [
            ParamRow(printable(k), printable(k), " / ".join(map(num, sorted(vs))), "", "", "")
            for k, vs in used.items()
        ]
    rows = []
    for p in BY_ID[req_id].params:
        values = sorted({v.params[p.name] for v in verdicts if p.name in v.params})
        shown = " / ".join(num(x) for x in values) if values else num(p.default)
        default = "" if values in ([], [p.default]) else num(p.default)
        rows.append(ParamRow(p.symbol, p.name, shown, p.unit, p.meaning, default))
    return rows


def _verdict_view(
    anchor: str,
    test: TestResult,
    v: Verdict,
    test_anchor: str,
    scenario: ScenarioView | None,
) -> VerdictView:
    origin = scenario.origin if scenario else None
    keys = list(dict.fromkeys([*v.measured, *v.thresholds]))
    values = [
        (
            printable(k),
            num(v.measured[k]) if k in v.measured else "",
            num(v.thresholds[k]) if k in v.thresholds else "",
        )
        for k in keys
    ]
    evidence = [
        EvidenceRow(
            printable(e.message),
            printable(e.flow or ""),
            printable(e.packet or ""),
            printable(e.link or ""),
            *_when(e.time, e.until, origin),
        )
        for e in v.evidence
    ]
    return VerdictView(
        anchor=anchor,
        status=v.status.value,
        css=STATUS_CLASS[v.status],
        message=printable(v.message),
        test=printable(test.nodeid),
        test_anchor=test_anchor,
        platform=printable(platform_text(test)),
        checker=printable(v.checker),
        params=[(printable(k), num(val)) for k, val in v.params.items()],
        values=values,
        missing=[printable(m) for m in v.missing],
        error=printable(v.error or ""),
        evidence=evidence,
        evidence_omitted=v.evidence_omitted,
        scenario_anchor=scenario.anchor if scenario and scenario.drawn else "",
        scenario_title=scenario.title if scenario else "",
    )


def _facts(results: Results) -> list[tuple[str, str]]:
    r = results.run
    stopped = r.stopped.isoformat(timespec="seconds") if r.stopped else "\u2014 (did not finish)"
    try:
        took = (r.stopped - r.started).total_seconds() if r.stopped else None
    except TypeError:  # one has a time zone, the other not
        took = None
    rows = [
        ("target", r.target + (f" (version {r.target_version})" if r.target_version else "")),
        ("mutant", r.mutant or "none"),
        ("seed", str(r.seed)),
        ("level", r.level),
        ("modes", ", ".join(r.modes) or "the lab file's"),
        ("platforms", ", ".join(r.platforms) or "\u2014"),
        ("address families", ", ".join(r.families) or "ipv4 (not recorded)"),
        ("backends", ", ".join(r.backends) or "\u2014"),
        ("profile", r.profile or "none"),
        ("requirements asked", ", ".join(r.requirements_asked) or "all at the level"),
        ("started", r.started.isoformat(timespec="seconds")),
        ("stopped", stopped),
        ("duration", duration(took)),
        ("exit status", "\u2014" if r.exit_status is None else str(r.exit_status)),
        ("lab", r.lab),
        *[(f"lab ({f})", lab) for f, lab in r.family_labs.items() if lab != r.lab],
        ("lab sha256", r.lab_sha256 or "unknown (the file could not be read)"),
    ]
    return [(k, printable(v)) for k, v in rows]


def _environment(results: Results) -> tuple[list[tuple[str, str]], ...]:
    env = results.run.environment
    rows = [
        ("kernel", env.kernel or "\u2014"),
        ("machine", env.machine or "\u2014"),
        ("cpus", "\u2014" if env.cpus is None else str(env.cpus)),
        ("python", env.python or "\u2014"),
    ]
    tools = [(printable(k), printable(v)) for k, v in sorted(env.tools.items())]
    features = [
        (printable(k), printable(", ".join(f"{a}={json_text(b)}" for a, b in sorted(v.items()))))
        for k, v in sorted(env.features.items())
    ]
    return [(k, printable(v)) for k, v in rows], tools, features


class Builder:
    """Builds the page's parts of every run, then draws the timelines."""

    def __init__(self, placer: Placer) -> None:
        self.placer = placer
        self.draw_jobs: list[tuple[Timeline, str]] = []
        self.draw_into: list[ScenarioView] = []
        self.missing: list[str] = []

    def run(self, index: int, root: Path, given: str, results: Results) -> RunView:
        verdict = results.verdict()
        counts = results.counts()
        outcomes = {o: 0 for o in OUTCOMES}
        for t in results.tests:
            outcomes[t.outcome] += 1
        env, tools, features = _environment(results)
        label = _label(results)
        view = RunView(
            index=index,
            anchor=f"run{index}",
            label=label,
            title=" \u00b7 ".join(label),
            directory=printable(given),
            verdict=verdict.value,
            verdict_css=STATUS_CLASS[verdict],
            level=results.run.level,
            counts=[
                (
                    lv,
                    counts[lv][Status.PASS],
                    counts[lv][Status.FAIL],
                    counts[lv][Status.UNKNOWN],
                    counts[lv][Status.NOT_APPLICABLE],
                )
                for lv in LEVELS
            ],
            outcomes=[(o, n, OUTCOME_CLASS[o]) for o, n in outcomes.items()],
            facts=_facts(results),
            replay=printable(results.run.replay),
            pytest_args=printable(" ".join(results.run.pytest_args)),
            environment=env,
            tools=tools,
            features=features,
        )
        req_anchor = {rid: f"r{index}-{slug(rid)}" for rid in results.requirements}
        self._dedupe(req_anchor)
        view.anchors = req_anchor
        test_anchor: dict[str, str] = {}
        for k, t in enumerate(results.tests):
            test_anchor.setdefault(t.nodeid, f"t{index}-{k}")
        scen = self._scenarios(view, root, results, test_anchor)
        self._tests(view, root, results, req_anchor, scen)
        self._requirements(view, root, results, req_anchor, test_anchor, scen)
        return view

    @staticmethod
    def _dedupe(anchors: dict[str, str]) -> None:
        seen: set[str] = set()
        for rid, a in anchors.items():
            n, cand = 1, a
            while cand in seen:
                n, cand = n + 1, f"{a}_{n}"
            anchors[rid] = cand
            seen.add(cand)

    def _scenarios(
        self, view: RunView, root: Path, results: Results, test_anchor: dict[str, str]
    ) -> dict[str, ScenarioView]:
        """run_dir -> its scenario (those with a timeline.json, or one that does not load)."""
        groups: dict[str, list[TestResult]] = {}
        for t in results.tests:
            if t.run_dir:
                groups.setdefault(t.run_dir, []).append(t)
        out: dict[str, ScenarioView] = {}
        for run_dir, tests in groups.items():
            tl, why, exists = load_timeline(root, run_dir)
            if not exists:
                continue
            names = sorted({t.scenario or run_dir for t in tests})
            platforms = sorted({t.platform for t in tests if t.platform})
            title = ", ".join(names) + (f" ({', '.join(platforms)})" if platforms else "")
            sv = ScenarioView(
                anchor=f"s{view.index}-{len(view.scenarios)}",
                title=printable(title),
                run_dir=printable(run_dir),
                where=f"run{view.index}/{printable(run_dir)}/{TIMELINE_FILE}",
                tests=[(printable(t.nodeid), test_anchor[t.nodeid]) for t in tests],
                note=why,
                origin=tl.origin if tl is not None and not tl.empty else None,
            )
            if tl is None:
                self.missing.append(f"{sv.where}: {why}")
            else:
                self.draw_jobs.append((tl, title))
                self.draw_into.append(sv)
                sv.drawn = True
            view.scenarios.append(sv)
            out[run_dir] = sv
        return out

    def _tests(
        self,
        view: RunView,
        root: Path,
        results: Results,
        req_anchor: dict[str, str],
        scen: dict[str, ScenarioView],
    ) -> None:
        for k, t in enumerate(results.tests):
            sv = scen.get(t.run_dir or "")
            view.tests.append(
                TestView(
                    anchor=f"t{view.index}-{k}",
                    nodeid=printable(t.nodeid),
                    outcome=t.outcome,
                    css=OUTCOME_CLASS[t.outcome],
                    duration=f"{t.duration:.1f} s",
                    platform=printable(platform_text(t)),
                    scenario=printable(t.scenario or ""),
                    scenario_anchor=sv.anchor if sv else "",
                    message=printable(t.message),
                    requirements=[(printable(r), req_anchor.get(r, "")) for r in t.requirements],
                    attachments=[],
                )
            )

    def _requirements(
        self,
        view: RunView,
        root: Path,
        results: Results,
        req_anchor: dict[str, str],
        test_anchor: dict[str, str],
        scen: dict[str, ScenarioView],
    ) -> None:
        by_req: dict[str, ReqView] = {}
        for j, (rid, rr) in enumerate(results.requirements.items()):
            req = BY_ID.get(rid)
            pairs = results.verdicts_of(rid)
            anchor = req_anchor[rid]
            verdicts = [
                _verdict_view(
                    f"v{view.index}-{j}-{k}", t, v, test_anchor[t.nodeid], scen.get(t.run_dir or "")
                )
                for k, (t, v) in enumerate(pairs)
            ]
            citing = {row.test for row in rr.tests} | {t.nodeid for t, _ in pairs}
            scenarios = list(
                dict.fromkeys(
                    (sv.anchor, sv.title)
                    for t in results.tests
                    if t.nodeid in citing
                    and (sv := scen.get(t.run_dir or "")) is not None
                    and sv.drawn
                )
            )
            rv = ReqView(
                id=printable(rid),
                anchor=anchor,
                level=rr.level or "?",
                family=req.family if req else printable(rid.partition("-")[0]),
                family_name=FAMILIES[req.family] if req else "not in this catalogue",
                statement=printable(req.statement) if req else "not in this dsrconform's catalogue",
                measure=printable(req.measure) if req else "",
                known=req is not None,
                family_notes=_family_notes(req, rr.families),
                params=_param_rows(rid, (v for _, v in pairs)),
                status=rr.status.value,
                css=STATUS_CLASS[rr.status],
                message=printable(rr.message),
                verdicts=verdicts,
                tests=[
                    ReqTestRow(
                        printable(row.test),
                        test_anchor.get(row.test, ""),
                        row.outcome,
                        OUTCOME_CLASS[row.outcome],
                        row.status.value,
                        STATUS_CLASS[row.status],
                        printable(row.message),
                    )
                    for row in rr.tests
                ],
                attachments=[],
                scenarios=scenarios,
            )
            by_req[rid] = rv
            view.requirements.append(rv)
        self._attachments(view, root, results, by_req)

    def _attachments(
        self, view: RunView, root: Path, results: Results, by_req: dict[str, ReqView]
    ) -> None:
        """Each attachment queued to place once (:meth:`place`): under its requirement when the
        run decided it, else under its test."""
        for k, t in enumerate(results.tests):
            for n, att in enumerate(t.attachments):
                rv = by_req.get(att.requirement or "")
                into = rv.attachments if rv else view.tests[k].attachments
                status = results.requirements[att.requirement or ""].status if rv else None
                self.placer.add(into, view.index, root, att, status, (k, n))

    def place(self) -> None:
        """Place every run's attachments (:meth:`Placer.place_all
        <dsrconform.report.attachments.Placer.place_all>`)."""
        self.placer.place_all()

    def draw(self) -> int:
        """Draw every timeline into its scenario; the number drawn."""
        drawn = 0
        prefixes = [f"{sv.anchor}-" for sv in self.draw_into]
        inlined = inline_timelines(self.draw_jobs, prefixes)
        for sv, (svg, why) in zip(self.draw_into, inlined, strict=True):
            if svg is None:
                sv.note = why
                self.missing.append(f"{sv.where}: {sv.note}")
                continue
            sv.svg = svg
            drawn += 1
        return drawn


def matrix(runs: Sequence[tuple[Results, RunView]]) -> list[MatrixRow]:
    """Requirements (catalogue order, unknown IDs last) x runs."""
    order = {r.id: n for n, r in enumerate(REQUIREMENTS)}
    ids = sorted(
        {rid for res, _ in runs for rid in res.requirements},
        key=lambda r: (order.get(r, len(order)), r),
    )
    rows = []
    for rid in ids:
        cells = []
        for res, view in runs:
            rr = res.requirements.get(rid)
            if rr is None:
                cells.append(
                    MatrixCell("\u2014", STATUS_CLASS[None], "", "not decided by this run")
                )
                continue
            cells.append(
                MatrixCell(
                    rr.status.value,
                    STATUS_CLASS[rr.status],
                    view.anchors[rid],
                    printable(rr.message),
                )
            )
        req = BY_ID.get(rid)
        level = req.level if req else "?"
        statement = printable(req.statement) if req else "not in this dsrconform's catalogue"
        rows.append(MatrixRow(printable(rid), level, statement, cells))
    return rows
