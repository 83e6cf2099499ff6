"""The HTML report: one self-contained file showing one or more runs' results.

    dsrconform report RESULTS_DIR... -o report.html      (see :mod:`dsrconform.report.reportcli`)

:func:`render_report` reads each results directory with
:func:`~dsrconform.report.model.load_results` and writes one HTML page made from
``templates/report.html.j2``.

The contract:

- **One file, no network.** No external CSS, JS, fonts or images, no JavaScript at all
  (collapsibles are ``<details>``, links are anchors): the page works from ``file://``, as a
  CI artifact and as a mail attachment. Every ``src``/``href`` is a ``#fragment``, a ``data:``
  URI or a relative path into the report's ``<stem>_files/`` directory.
- **Hostile text is shown, never run.** Evidence carries strings from crafted packets. The
  template is rendered with autoescape on, and every value a template prints passes through
  :func:`printable` first: C0/C1 control characters and lone surrogates (bytes that were not
  UTF-8, decoded with ``surrogateescape``) are shown as ``\\xNN``/``\\uNNNN`` escapes. CSS
  classes and anchors never contain data: classes come from fixed tables, anchors from
  :func:`slug` and indices. Rendering never fails on a string's content.
- **Small enough to mail.** Each attachment (:class:`~dsrconform.report.model.Attachment`: pcap
  windows, ...) whose file is at most ``embed_limit`` bytes is embedded as a ``data:`` URI with
  ``download="<its file name>"`` (saved, a pcap opens in Wireshark) while the embedded files'
  sizes sum to at most ``total_embed_limit`` (sizes are the files', before base64's 4/3).
  Attachments are placed FAIL requirements' first, then UNKNOWN, then the rest, smallest first
  within each; those that do not fit are linked relatively: where they are when the file is
  under the HTML's directory (a report written into its results directory, e.g.
  ``results/latest/report.html``), else copied to ``<out stem>_files/run<N>/<path>`` beside
  the HTML (move the two together). An attachment whose file is missing,
  or whose path leaves its results directory, is listed as such; never a crash, never a file
  from outside a results directory.
- **Timelines once per scenario.** For each scenario run directory (``TestResult.run_dir``)
  holding ``timeline.json``, the run's "Scenarios" section draws it once as an inline SVG
  (:func:`dsrconform.report.timeline.timeline_svg`); requirements and tests link to it. Element
  ids inside each SVG are prefixed so that several SVGs on one page never share an id, and
  the SVG is compacted (no metadata or indentation, path coordinates to 0.1 pt, H/V lines:
  about 40% of the size). A timeline that does not load or draw, or a drawing holding
  anything active or fetching (script, handlers, external links), is noted in its place.
  Drawing is the report's slow part (matplotlib, about a second a timeline): several
  timelines are drawn in parallel worker processes (fork) when CPUs allow and the process has
  one thread.
  Evidence times are shown relative to the scenario's timeline origin (the SVG's x axis) when
  it has one, as CLOCK_MONOTONIC seconds otherwise.
- **Anchors** (every ``href="#..."`` of the page has its target): ``#summary``, ``#matrix``;
  per run N (0-based, in the order given): ``#run{N}``, ``#run{N}-env``, ``#run{N}-reqs``,
  ``#run{N}-tests``, ``#run{N}-scenarios``; per requirement ``#r{N}-{ID}`` (the matrix cell's
  link; :func:`slug` of the ID, ``_2``... appended when two odd IDs slug alike); per verdict
  ``#v{N}-{J}-{K}`` (J: the requirement's row in the run, K: its verdict); per test
  ``#t{N}-{K}`` (K: its row in ``Results.tests``); per scenario ``#s{N}-{K}``, the ids inside
  its SVG prefixed with ``s{N}-{K}-``.
- **Errors.** A directory without ``results.json``, or a malformed one: ConfigError naming the
  file (from :func:`~dsrconform.report.model.load_results`), before anything is written.
  ``out`` naming a directory: ConfigError. The output's directory is created if missing; the
  HTML is written atomically.

Jinja2 and matplotlib are imported when a report is rendered, not when this module is (only
markupsafe, Jinja2's escaping).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from markupsafe import Markup

from dsrconform.errors import ConfigError
from dsrconform.invariants.verdict import Status, Verdict
from dsrconform.report.model import (
    STATUS_RANK,
    TIMELINE_FILE,
    Attachment,
    Results,
    TestResult,
    load_results,
    results_path,
)
from dsrconform.spec import BY_ID, FAMILIES, LEVELS, REQUIREMENTS

if TYPE_CHECKING:
    import jinja2

    from dsrconform.report.timeline import Timeline

__all__ = [
    "EMBED_LIMIT",
    "TEMPLATE",
    "TIMELINE_FILE",
    "TOTAL_EMBED_LIMIT",
    "ReportInfo",
    "printable",
    "render_report",
    "slug",
]

EMBED_LIMIT = 256 * 1024
"""Bytes: an attachment's file at most this big is embedded (``--embed-limit``)."""
TOTAL_EMBED_LIMIT = 2 * 1024 * 1024
"""Bytes: the embedded attachments' files sum to at most this (``--total-embed-limit``)."""
TEMPLATE = "report.html.j2"
TEMPLATES_DIR = Path(__file__).with_name("templates")
MAX_DRAW_WORKERS = 8

MIME: dict[str, str] = {
    "pcap": "application/vnd.tcpdump.pcap",
    "svg": "image/svg+xml",
    "json": "application/json",
    "text": "text/plain;charset=utf-8",
}
STATUS_CLASS: dict[str | None, str] = {
    Status.PASS: "st-pass",
    Status.FAIL: "st-fail",
    Status.UNKNOWN: "st-unknown",
    None: "st-none",
}
"""CSS class of a status (None: the run did not decide the requirement)."""
OUTCOME_CLASS: dict[str, str] = {
    "passed": "st-pass",
    "failed": "st-fail",
    "error": "st-unknown",
    "skipped": "st-skip",
}


@dataclass(frozen=True)
class ReportInfo:
    """What :func:`render_report` wrote."""

    path: Path
    """The HTML file."""
    size: int
    """Its size in bytes (the copied attachments not included)."""
    runs: int
    timelines: int
    """Timeline SVGs drawn into the page."""
    embedded: tuple[str, ...] = ()
    """Attachments embedded as data: URIs (``run<N>/<path>``)."""
    copied: tuple[Path, ...] = ()
    """Files copied beside the HTML (into :attr:`files_dir`)."""
    linked: tuple[Path, ...] = ()
    """Files linked where they are (under the HTML's directory), not copied."""
    missing: tuple[str, ...] = ()
    """Attachments (and timelines) not included, each with why."""
    files_dir: Path | None = None
    """``<out stem>_files/`` when something was copied there."""
    seconds: float = 0.0
    """Time taken."""


# --- text -------------------------------------------------------------------------------------

_UNPRINTABLE = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # C0 but tab, newline, CR; DEL; C1
    r"\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]"  # lone surrogates, non-characters
)


def _escape_char(m: re.Match[str]) -> str:
    c = ord(m.group())
    if 0xDC80 <= c <= 0xDCFF:  # surrogateescape: the byte that was not UTF-8
        return f"\\x{c - 0xDC00:02x}"
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def printable(value: object) -> str:
    """``value`` as text safe to put in HTML once escaped: control characters (but tab, newline,
    carriage return), lone surrogates and non-characters as ``\\xNN``/``\\uNNNN`` escapes (a
    surrogateescape'd byte as the byte it was)."""
    text = value if isinstance(value, str) else str(value)
    return _UNPRINTABLE.sub(_escape_char, text)


_SLUG = re.compile(r"[^A-Za-z0-9_.-]")


def slug(text: str) -> str:
    """An id-safe form of a requirement ID (``RW-1`` stays ``RW-1``)."""
    return _SLUG.sub("_", text) or "_"


def _num(v: object) -> str:
    """A measured or threshold value as text."""
    if v is None:
        return "\u2014"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return printable(v)


def _human_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "\u2014"
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s"


def _json_text(v: object) -> str:
    if isinstance(v, str):
        return v
    try:
        return json.dumps(v, sort_keys=True, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(v)


# --- the page's parts -------------------------------------------------------------------------


@dataclass
class Link:
    """An attachment as the page shows it."""

    name: str
    note: str
    kind: str
    state: Literal["embedded", "copied", "linked", "missing"]
    href: str = ""
    download: str = ""
    size: int = 0
    why: str = ""

    @property
    def size_text(self) -> str:
        return _human_size(self.size)


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
    counts: list[tuple[str, int, int, int]]
    """(level, PASS, FAIL, UNKNOWN)."""
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


# --- attachments ------------------------------------------------------------------------------


def _inside(root: Path, rel: str) -> tuple[Path | None, str]:
    """The file ``rel`` names under ``root`` (resolved), or None and why not."""
    try:
        p = PurePosixPath(rel)
        if p.is_absolute() or not rel:
            return None, "not a path relative to the results directory"
        full = (root / p).resolve()
        if not full.is_relative_to(root):
            return None, "outside the results directory: not included"
        if not full.is_file():
            return None, "missing from the results directory"
        return full, ""
    except (OSError, ValueError, RuntimeError) as e:  # NUL, unencodable, a symlink loop
        return None, f"unreadable path ({type(e).__name__})"


class _Placer:
    """Decides, for each attachment, embedded, copied or missing (see the module contract)."""

    def __init__(self, out: Path, embed_limit: int, total_limit: int) -> None:
        self.out_dir = out.parent.resolve()
        self.files_dir = out.parent / f"{out.stem}_files"
        self.rel_files = f"{out.stem}_files"
        self.embed_limit = embed_limit
        self.total_left = total_limit
        self.embedded: list[str] = []
        self.copied: dict[tuple[int, Path], Path] = {}
        self.linked: dict[Path, None] = {}
        self.missing: list[str] = []

    def place(self, run: int, root: Path, att: Attachment) -> Link:
        name, note, kind = printable(att.name), printable(att.note), att.kind
        full, why = _inside(root, att.path)
        label = f"run{run}/{printable(att.path)}"
        if full is None:
            self.missing.append(f"{label}: {why}")
            return Link(name, note, kind, "missing", why=why)
        try:
            size = full.stat().st_size
        except OSError as e:
            self.missing.append(f"{label}: unreadable ({e.strerror})")
            return Link(name, note, kind, "missing", why=f"unreadable ({e.strerror})")
        download = printable(full.name)
        if size <= self.embed_limit and size <= self.total_left:
            try:
                data = full.read_bytes()
            except OSError as e:
                self.missing.append(f"{label}: unreadable ({e.strerror})")
                return Link(name, note, kind, "missing", why=f"unreadable ({e.strerror})")
            self.total_left -= len(data)
            self.embedded.append(label)
            b64 = base64.b64encode(data).decode("ascii")
            href = f"data:{MIME.get(kind, 'application/octet-stream')};base64,{b64}"
            return Link(name, note, kind, "embedded", href, download, len(data))
        if full.is_relative_to(self.out_dir):
            self.linked[full] = None
            href = quote(os.fsencode(full.relative_to(self.out_dir).as_posix()), safe="/")
            return Link(name, note, kind, "linked", href, download, size)
        rel = full.relative_to(root)
        dest = self.files_dir / f"run{run}" / rel
        if (run, full) not in self.copied:
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(full, dest)
            except OSError as e:
                raise ConfigError(
                    f"{dest}: cannot copy the attachment there ({e.strerror}); fix: give -o "
                    "a writable place"
                ) from None
            self.copied[run, full] = dest
        href = quote(os.fsencode(f"{self.rel_files}/run{run}/{rel.as_posix()}"), safe="/")
        return Link(name, note, kind, "copied", href, download, size)


def _priority(status: str | None) -> int:
    return -STATUS_RANK.get(status or "", -1)


# --- timelines --------------------------------------------------------------------------------

_SVG_ID = re.compile(r'\bid="([^"]*)"')
_SVG_HREF = re.compile(r'\b((?:xlink:)?href)="#([^"]*)"')
_SVG_URL = re.compile(r"url\(#([^)]*)\)")
_SVG_FORBIDDEN = re.compile(
    r"<\s*(script|foreignobject|iframe|object|embed|image|a)\b"  # elements that run or fetch
    r"|<[^>]*\s(on[a-z]+|src)\s*="  # handlers, sources (in a tag: escaped text has no "<")
    r"|<[^>]*\s(xlink:)?href\s*=\s*\"(?!#)"  # links but to the drawing's own ids
    r"|url\(\s*['\"]?(?!#)|@import",  # CSS fetches
    re.I,
)
"""What an inline SVG must not hold (matplotlib's never does: the data in it is escaped)."""


_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>", re.S)
_SVG_PATH_DATA = re.compile(r'\bd="([^"]*)"')
_SVG_DECIMAL = re.compile(r"-?\d+\.\d+(?![\deE])")
_SVG_PATH_COMMAND = re.compile(r" ?([MLHVCSQTAZmlhvcsqtaz]) ?")
_SVG_PATH_TOKEN = re.compile(r"[A-Za-z]|-?\d*\.?\d+(?:[eE][-+]?\d+)?")
_SVG_INDENT = re.compile(r">\s*\n\s*<")


def _tenth(m: re.Match[str]) -> str:
    text = f"{round(float(m.group()), 1):.1f}"
    text = text.removesuffix(".0")
    return "0" if text == "-0" else text


def _lines(tokens: list[str]) -> str | None:
    """A path of moves, lines and closes (matplotlib's lines and areas) with each horizontal or
    vertical line as H/V (a step line is all of them); None for another path."""
    out: list[str] = []
    cmd = ""
    x0 = y0 = cx = cy = ""
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t in ("z", "Z"):
            out.append("z")
            cx, cy = x0, y0
            i += 1
        elif t in ("M", "L"):
            cmd = t
            i += 1
        elif not cmd or t.isalpha() or i + 1 >= len(tokens) or tokens[i + 1].isalpha():
            return None  # another command, or a malformed path: left as it is
        else:
            x, y = t, tokens[i + 1]
            i += 2
            if cmd == "L" and x == cx:
                out.append(f"V{y}")
            elif cmd == "L" and y == cy:
                out.append(f"H{x}")
            else:
                out.append(f"{cmd}{x} {y}")
            if cmd == "M":
                x0, y0, cmd = x, y, "L"  # further pairs after a move are lines
            cx, cy = x, y
    return "".join(out)


def _path_data(m: re.Match[str]) -> str:
    d = _SVG_DECIMAL.sub(_tenth, m.group(1))
    shorter = _lines(_SVG_PATH_TOKEN.findall(d))
    if shorter is None:
        shorter = _SVG_PATH_COMMAND.sub(r"\1", " ".join(d.split()))
    return f'd="{shorter}"'


def _compact_svg(svg: str) -> str:
    """The drawing, smaller (about 40% of it): no metadata, no indentation, path coordinates to
    a tenth of a point (a 9-inch drawing is 648 points wide: invisible), horizontal and vertical
    lines as H/V."""
    svg = _SVG_METADATA.sub("", svg)
    svg = _SVG_PATH_DATA.sub(_path_data, svg)
    return _SVG_INDENT.sub("><", svg)


def _prefix_ids(svg: str, prefix: str) -> str:
    """Every id inside ``svg``, and every reference to one, prefixed (one page, many SVGs)."""
    svg = _SVG_ID.sub(lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = _SVG_HREF.sub(lambda m: f'{m.group(1)}="#{prefix}{m.group(2)}"', svg)
    return _SVG_URL.sub(lambda m: f"url(#{prefix}{m.group(1)})", svg)


def _draw(tl: Timeline, title: str) -> tuple[str | None, str]:
    """The timeline's SVG, printable and compacted, or None and why (run in a worker process
    or in line)."""
    try:
        from dsrconform.report.timeline import timeline_svg

        svg = timeline_svg(tl, title=title)
    except Exception as e:
        return None, f"the timeline could not be drawn ({type(e).__name__}: {printable(e)})"
    return _compact_svg(printable(svg)), ""


def _draw_all(jobs: Sequence[tuple[Timeline, str]]) -> list[tuple[str | None, str]]:
    """Each job drawn; in parallel processes (fork) when there are several and CPUs allow."""
    workers = min(len(jobs), os.cpu_count() or 1, MAX_DRAW_WORKERS)
    # fork only a single-threaded process: a lock another thread holds would stay held.
    if workers > 1 and threading.active_count() == 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        try:
            import importlib

            for module in ("matplotlib.figure", "matplotlib.backends.backend_svg"):
                importlib.import_module(module)  # once here, not in each forked worker

            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                return list(pool.map(_draw, *zip(*jobs, strict=True)))
        except (ValueError, OSError, BrokenProcessPool):
            pass  # no fork here, or no processes: draw in line
    return [_draw(tl, title) for tl, title in jobs]


def _load_timeline(root: Path, run_dir: str) -> tuple[Timeline | None, str, bool]:
    """(timeline, why not, whether a timeline.json exists) of a scenario run directory."""
    full, why = _inside(root, f"{run_dir.rstrip('/')}/{TIMELINE_FILE}")
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


# --- building the page ------------------------------------------------------------------------


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
            ParamRow(printable(k), printable(k), " / ".join(map(_num, sorted(vs))), "", "", "")
            for k, vs in used.items()
        ]
    rows = []
    for p in BY_ID[req_id].params:
        values = sorted({v.params[p.name] for v in verdicts if p.name in v.params})
        shown = " / ".join(_num(x) for x in values) if values else _num(p.default)
        default = "" if values in ([], [p.default]) else _num(p.default)
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
            _num(v.measured[k]) if k in v.measured else "",
            _num(v.thresholds[k]) if k in v.thresholds else "",
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
        platform=printable(test.platform or ""),
        checker=printable(v.checker),
        params=[(printable(k), _num(val)) for k, val in v.params.items()],
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
        ("backends", ", ".join(r.backends) or "\u2014"),
        ("profile", r.profile or "none"),
        ("requirements asked", ", ".join(r.requirements_asked) or "all at the level"),
        ("started", r.started.isoformat(timespec="seconds")),
        ("stopped", stopped),
        ("duration", _duration(took)),
        ("exit status", "\u2014" if r.exit_status is None else str(r.exit_status)),
        ("lab", r.lab),
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
        (printable(k), printable(", ".join(f"{a}={_json_text(b)}" for a, b in sorted(v.items()))))
        for k, v in sorted(env.features.items())
    ]
    return [(k, printable(v)) for k, v in rows], tools, features


class _Builder:
    """Builds the page's parts of every run, then draws the timelines."""

    def __init__(self, placer: _Placer) -> None:
        self.placer = placer
        self.draw_jobs: list[tuple[Timeline, str]] = []
        self.pending: list[tuple[tuple[int, ...], list[Link], int, Path, Attachment]] = []
        self.draw_into: list[ScenarioView] = []
        self.missing: list[str] = []

    def run(self, index: int, root: Path, given: str, results: Results) -> RunView:
        verdict = results.verdict()
        counts = results.counts()
        outcomes = {o: 0 for o in ("passed", "failed", "error", "skipped")}
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
                (lv, counts[lv]["PASS"], counts[lv]["FAIL"], counts[lv]["UNKNOWN"]) for lv in LEVELS
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
            tl, why, exists = _load_timeline(root, run_dir)
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
                    platform=printable(t.platform or ""),
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
        """Each attachment to place once (:meth:`place`): under its requirement when the run
        decided it, else under its test."""
        for k, t in enumerate(results.tests):
            for n, att in enumerate(t.attachments):
                rv = by_req.get(att.requirement or "")
                into = rv.attachments if rv else view.tests[k].attachments
                status = results.requirements[att.requirement or ""].status if rv else None
                size = _size(root, att.path)
                self.pending.append(
                    ((_priority(status), size, view.index, k, n), into, view.index, root, att)
                )

    def place(self) -> None:
        """Place every run's attachments: FAIL requirements' first, then UNKNOWN, then the
        rest, smallest first within each (see :class:`_Placer`); each list then in test order."""
        placed = []
        for key, into, run, root, att in sorted(self.pending, key=lambda x: x[0]):
            placed.append((key[2:], into, self.placer.place(run, root, att)))
        for _, into, link in sorted(placed, key=lambda x: x[0]):
            into.append(link)
        self.pending.clear()

    def draw(self) -> int:
        """Draw every timeline into its scenario; the number drawn."""
        drawn = 0
        for sv, (svg, why) in zip(self.draw_into, _draw_all(self.draw_jobs), strict=True):
            if svg is None or _SVG_FORBIDDEN.search(svg):
                sv.note = why if svg is None else "the drawing held active content: not included"
                self.missing.append(f"{sv.where}: {sv.note}")
                continue
            sv.svg = Markup(_prefix_ids(printable(svg), f"{sv.anchor}-"))
            drawn += 1
        return drawn


def _size(root: Path, rel: str) -> int:
    full, _ = _inside(root, rel)
    try:
        return full.stat().st_size if full else 0
    except OSError:
        return 0


def _matrix(runs: Sequence[tuple[Results, RunView]]) -> list[MatrixRow]:
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


# --- rendering --------------------------------------------------------------------------------


def _finalize(value: Any) -> Any:
    """Every printed value through :func:`printable` (Markup, i.e. the SVGs, as it is)."""
    if isinstance(value, Markup) or (
        isinstance(value, int | float) and not isinstance(value, bool)
    ):
        return value
    return printable("" if value is None else value)


@lru_cache(maxsize=1)
def _environment_jinja() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["status_class"] = lambda s: STATUS_CLASS.get(s, "st-none")
    return env


def render_report(
    results_dirs: Sequence[Path | str],
    out: Path | str,
    *,
    embed_limit: int = EMBED_LIMIT,
    total_embed_limit: int = TOTAL_EMBED_LIMIT,
) -> ReportInfo:
    """Write the report of ``results_dirs`` (one column each, in this order) to ``out``.

    See the module docstring for the contract. ConfigError for no directory, a directory
    without a readable results.json (naming the file), ``out`` naming a directory, or a file
    that cannot be written."""
    started = time.perf_counter()
    if not results_dirs:
        raise ConfigError("no results directory given; fix: name one, e.g. results/latest")
    if embed_limit < 0 or total_embed_limit < 0:
        raise ConfigError("embed limits must be 0 (embed nothing) or more bytes")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{out}: is a directory; fix: name the HTML file, e.g. {out}/report.html")
    loaded = [(Path(d), load_results(d)) for d in results_dirs]  # every ConfigError first
    out = out.absolute()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{out.parent}: cannot create it ({e.strerror})") from None
    placer = _Placer(out, embed_limit, total_embed_limit)
    builder = _Builder(placer)
    runs: list[tuple[Results, RunView]] = []
    for i, (d, res) in enumerate(loaded):
        root = results_path(d).parent.resolve()
        runs.append((res, builder.run(i, root, str(d), res)))
    builder.place()
    timelines = builder.draw()
    from dsrconform import __version__

    page = (
        _environment_jinja()
        .get_template(TEMPLATE)
        .render(
            runs=[v for _, v in runs],
            matrix=_matrix(runs),
            levels=LEVELS,
            version=__version__,
            generated=datetime.now(UTC).isoformat(timespec="seconds"),
            embed_limit=_human_size(embed_limit),
            total_embed_limit=_human_size(total_embed_limit),
        )
    )
    data = page.encode("utf-8", "backslashreplace")
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(out)
    except OSError as e:
        raise ConfigError(f"{out}: cannot write the report ({e.strerror})") from None
    return ReportInfo(
        path=out,
        size=len(data),
        runs=len(runs),
        timelines=timelines,
        embedded=tuple(placer.embedded),
        copied=tuple(placer.copied.values()),
        linked=tuple(placer.linked),
        missing=tuple(placer.missing + builder.missing),
        files_dir=placer.files_dir if placer.copied else None,
        seconds=time.perf_counter() - started,
    )
