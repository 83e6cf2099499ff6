"""The HTML report: one self-contained file showing one or more runs' results.

    dsrconform report RESULTS_DIR... -o report.html      (see :mod:`dsrconform.report.reportcli`)

:func:`render_report` reads each results directory with
:func:`~dsrconform.report.model.load_results` and writes one HTML page made from
``templates/report.html.j2``. The work is shared among:

- :mod:`dsrconform.report.text`: hostile text made printable, anchors (:func:`slug`), values;
- :mod:`dsrconform.report.attachments`: each attachment embedded, linked, copied or missing,
  within the embedding budget;
- :mod:`dsrconform.report.svg`: the timelines drawn (in parallel), checked, compacted and their
  ids prefixed;
- :mod:`dsrconform.report.build` and :mod:`dsrconform.report.views`: the page's parts, built
  from the results;
- this module: the rendering, and the contract of the page as a whole.

The contract (each part detailed in the module named):

- **One file, no network.** No external CSS, JS, fonts or images, no JavaScript at all
  (collapsibles are ``<details>``, links are anchors): the page works from ``file://``, as a
  CI artifact and as a mail attachment. Every ``src``/``href`` is a ``#fragment``, a ``data:``
  URI or a relative path into the report's ``<stem>_files/`` directory or under its directory.
- **Hostile text is shown, never run.** The template is rendered with autoescape on, and every
  value it prints passes through :func:`printable` first (:mod:`~dsrconform.report.text`).
  CSS classes and anchors never contain data. Rendering never fails on a string's content.
- **Small enough to mail.** Attachments up to ``embed_limit`` bytes each, ``total_embed_limit``
  in all, are embedded (FAIL requirements' first); the others are linked where they are (under
  the HTML's directory) or copied to ``<out stem>_files/run<N>/<path>`` beside it; never a
  file from outside a results directory (:mod:`~dsrconform.report.attachments`).
- **Timelines once per scenario**, inline SVGs with prefixed ids, compacted; a timeline that
  does not load or draw, or a drawing holding anything active, is noted in its place
  (:mod:`~dsrconform.report.build`, :mod:`~dsrconform.report.svg`).
- **Anchors** (every ``href="#..."`` of the page has its target): ``#summary``, ``#matrix``;
  per run N ``#run{N}``, ``#run{N}-env``, ``#run{N}-reqs``, ``#run{N}-tests``,
  ``#run{N}-scenarios``; per requirement, verdict, test and scenario as
  :mod:`~dsrconform.report.build` says.
- **Errors.** No directory, or negative embed limits: ConfigError. A directory without
  ``results.json``, or a malformed one: ConfigError naming the file (from
  :func:`~dsrconform.report.model.load_results`), before anything is written. ``out`` naming a
  directory: ConfigError. The output's directory is created if missing; the HTML is written
  atomically (a temporary file beside it, then renamed); a failed write or attachment copy is a
  ConfigError.
- :func:`render_report` returns a :class:`ReportInfo`: what was written, embedded, copied,
  linked and left out.

Jinja2 and matplotlib are imported when a report is rendered, not when this module is (only
markupsafe, Jinja2's escaping).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from dsrconform.errors import ConfigError
from dsrconform.report.attachments import EMBED_LIMIT, TOTAL_EMBED_LIMIT, Placer
from dsrconform.report.build import Builder, matrix
from dsrconform.report.model import TIMELINE_FILE, Results, load_results, results_path
from dsrconform.report.text import human_size, printable, slug
from dsrconform.report.views import STATUS_CLASS, RunView
from dsrconform.spec import LEVELS

if TYPE_CHECKING:
    import jinja2

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

TEMPLATE = "report.html.j2"
TEMPLATES_DIR = Path(__file__).with_name("templates")


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
    placer = Placer(out, embed_limit, total_embed_limit)
    builder = Builder(placer)
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
            matrix=matrix(runs),
            levels=LEVELS,
            version=__version__,
            generated=datetime.now(UTC).isoformat(timespec="seconds"),
            embed_limit=human_size(embed_limit),
            total_embed_limit=human_size(total_embed_limit),
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
