"""``dsrconform report``: one self-contained HTML page of one or more runs.

    dsrconform report RESULTS_DIR... [-o report.html] [--embed-limit SIZE]
                      [--total-embed-limit SIZE]

Each RESULTS_DIR is a run's results directory (``results/latest``, a ``--results DIR``) or its
``results.json``; several make a requirements-by-runs matrix, one column each, in the order
given. The page (:func:`dsrconform.report.html.render_report`) needs no network; attachments
too big to embed are copied to ``<report stem>_files/`` beside it. SIZE is bytes, or with a
K/KiB, M/MiB or G/GiB suffix (binary multiples); 0 embeds nothing.

Prints where the report is and its size (and, on stderr, the attachments it could not
include). Exit status: 0 written; 2 bad arguments or a results directory without a readable
``results.json`` (``dsrconform: error: <file>: ...``).

Importing this module is light (the CLI's ``--help`` stays fast): Jinja2 and matplotlib load
when a report is made.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from dsrconform.report.html import EMBED_LIMIT, TOTAL_EMBED_LIMIT
from dsrconform.report.text import human_size

DEFAULT_OUTPUT = "report.html"
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?", re.I)
_MULTIPLIER = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """``"256K"`` -> 262144: bytes, or K/KiB/KB, M/MiB/MB, G/GiB/GB (all binary multiples)."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size; write bytes or e.g. 256K, 2M, 2MiB (0: embed nothing)"
        )
    return int(float(m.group(1)) * _MULTIPLIER[m.group(2).lower()])


def cmd_report(args: argparse.Namespace) -> int:
    from dsrconform.report.html import render_report

    info = render_report(
        [Path(d) for d in args.results],
        Path(args.output),
        embed_limit=args.embed_limit,
        total_embed_limit=args.total_embed_limit,
    )
    parts = [f"{info.runs} run{'s' if info.runs != 1 else ''}"]
    if info.timelines:
        parts.append(f"{info.timelines} timeline{'s' if info.timelines != 1 else ''}")
    parts.append(f"{len(info.embedded)} attachment(s) embedded")
    if info.copied:
        parts.append(f"{len(info.copied)} copied to {info.files_dir}")
    if info.linked:
        parts.append(f"{len(info.linked)} linked where they are")
    size = human_size(info.size)
    print(f"report: {info.path} ({size}; {', '.join(parts)}; {info.seconds:.1f} s)")
    for what in info.missing:
        print(f"dsrconform: note: not in the report: {what}", file=sys.stderr)
    return 0


def add_parser(sub: Any) -> None:
    """The ``report`` subcommand, on ``sub`` (the CLI's subparsers)."""
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report of one or more runs' results",
        description="One HTML file (no network needed) of the runs' verdicts, evidence, "
        "attachments and timelines; several results directories make a requirements x runs "
        "matrix.",
    )
    p.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS_DIR",
        help="a run's results directory (or its results.json); several: one column each",
    )
    p.add_argument(
        "-o",
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="FILE",
        help=f"the HTML file to write (default: {DEFAULT_OUTPUT}); its directory is created",
    )
    p.add_argument(
        "--embed-limit",
        type=parse_size,
        default=EMBED_LIMIT,
        metavar="SIZE",
        help=f"embed attachments up to SIZE each (default: {EMBED_LIMIT // 1024}K); bigger ones "
        "are copied to <report stem>_files/ beside the report",
    )
    p.add_argument(
        "--total-embed-limit",
        type=parse_size,
        default=TOTAL_EMBED_LIMIT,
        metavar="SIZE",
        help=f"embed at most SIZE of attachments in all (default: {TOTAL_EMBED_LIMIT // 1024**2}M)",
    )
    p.set_defaults(handler=cmd_report)
