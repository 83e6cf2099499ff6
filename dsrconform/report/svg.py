"""The HTML report's inline SVGs: timelines drawn (in parallel), checked, compacted, prefixed.

The contract:

- :func:`draw_all` draws each (timeline, title) job with
  :func:`dsrconform.report.timeline.timeline_svg` (looked up there at each call, so a test may
  replace it) and gives, per job in order, the SVG text made :func:`printable
  <dsrconform.report.text.printable>` and compacted (:func:`compact_svg`), or None and why it
  could not be drawn. It never raises for a drawing that fails. Drawing is the report's slow
  part (matplotlib, about a second a timeline): several jobs are drawn in worker processes
  (fork; at most :data:`MAX_DRAW_WORKERS`, no more than CPUs) when the calling process has one
  thread (a lock another thread holds would stay held in the child); otherwise, or when no
  process can be forked, in line. The results are the same either way.
- :func:`compact_svg`: the same drawing, about 40% of its size: no ``<metadata>``, no
  indentation, path coordinates rounded to 0.1 pt, horizontal and vertical lines as H/V.
- :func:`prefix_ids`: every ``id`` inside the SVG, and every reference to one (``href="#..."``,
  ``url(#...)``), prefixed, so that several SVGs on one page never share an id.
- :func:`active_content`: whether an SVG holds anything that runs or fetches (script, handlers,
  foreign objects, images, links but to its own ids, CSS imports or URLs). Such a drawing is
  never inlined (matplotlib's never holds any: the data in it is escaped).
- :func:`inline_timelines` puts these together: per job, Markup ready to inline, or None and why
  not.

Importing this module loads neither matplotlib nor the timeline model (numpy, pydantic):
:func:`draw` imports them in the process that draws.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from markupsafe import Markup

from dsrconform.report.text import printable

if TYPE_CHECKING:
    from dsrconform.report.timeline import Timeline

__all__ = [
    "MAX_DRAW_WORKERS",
    "active_content",
    "compact_svg",
    "draw",
    "draw_all",
    "inline_timelines",
    "prefix_ids",
]

MAX_DRAW_WORKERS = 8
"""Most worker processes drawing timelines at once."""

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


def active_content(svg: str) -> bool:
    """Whether ``svg`` holds anything active or fetching (see the module contract)."""
    return _SVG_FORBIDDEN.search(svg) is not None


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


def compact_svg(svg: str) -> str:
    """The drawing, smaller (about 40% of it): no metadata, no indentation, path coordinates to
    a tenth of a point (a 9-inch drawing is 648 points wide: invisible), horizontal and vertical
    lines as H/V."""
    svg = _SVG_METADATA.sub("", svg)
    svg = _SVG_PATH_DATA.sub(_path_data, svg)
    return _SVG_INDENT.sub("><", svg)


def prefix_ids(svg: str, prefix: str) -> str:
    """Every id inside ``svg``, and every reference to one, prefixed (one page, many SVGs)."""
    svg = _SVG_ID.sub(lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = _SVG_HREF.sub(lambda m: f'{m.group(1)}="#{prefix}{m.group(2)}"', svg)
    return _SVG_URL.sub(lambda m: f"url(#{prefix}{m.group(1)})", svg)


def draw(tl: Timeline, title: str) -> tuple[str | None, str]:
    """The timeline's SVG, printable and compacted, or None and why (run in a worker process
    or in line)."""
    try:
        from dsrconform.report import timeline

        svg = timeline.timeline_svg(tl, title=title)
    except Exception as e:
        return None, f"the timeline could not be drawn ({type(e).__name__}: {printable(e)})"
    return compact_svg(printable(svg)), ""


def draw_all(jobs: Sequence[tuple[Timeline, str]]) -> list[tuple[str | None, str]]:
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
                return list(pool.map(draw, *zip(*jobs, strict=True)))
        except (ValueError, OSError, BrokenProcessPool):
            pass  # no fork here, or no processes: draw in line
    return [draw(tl, title) for tl, title in jobs]


def inline_timelines(
    jobs: Sequence[tuple[Timeline, str]], prefixes: Sequence[str]
) -> list[tuple[Markup | None, str]]:
    """Each job drawn (:func:`draw_all`) as Markup to inline in the page, its ids prefixed with
    the job's prefix; or None and why not (it did not draw, or held active content)."""
    out: list[tuple[Markup | None, str]] = []
    for prefix, (svg, why) in zip(prefixes, draw_all(jobs), strict=True):
        if svg is None:
            out.append((None, why))
        elif active_content(svg):
            out.append((None, "the drawing held active content: not included"))
        else:
            out.append((Markup(prefix_ids(printable(svg), prefix)), ""))
    return out
