"""``dsrconform gate``: the command line of :mod:`dsrconform.report.gate` (see it for the rules)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dsrconform.runopts import DEFAULT_LEVEL
from dsrconform.spec import LEVELS

EPILOG = """exit status:
  0  the gate passed: every requirement at --level or stricter PASSed (or is waived) and no
     measured value regressed beyond its allowance against --baseline
  1  the gate failed: a FAIL, an UNKNOWN, nothing decided at the level, or a regression
  2  bad input: results or baseline missing or malformed, an --allow file that does not
     validate (the message names file, line, field and the fix)
"""


def _cmd_gate(args: argparse.Namespace) -> int:
    from dsrconform.report.gate import (
        GATE_MARKDOWN,
        decide,
        load_allow,
        load_baseline,
        markdown,
        summary_lines,
    )
    from dsrconform.report.model import load_results

    results = load_results(args.results)
    allow = load_allow(args.allow) if args.allow else None
    baseline = None
    if args.baseline is not None:
        baseline = load_baseline(args.baseline, optional=args.baseline_optional)
    d = decide(results, level=args.level, baseline=baseline, allow=allow)
    if args.baseline is not None and baseline is None:
        d.notes.append(f"no baseline at {args.baseline}: regressions not checked")
    shown_baseline = args.baseline if baseline is not None else None
    md_dir = Path(args.results)
    md_dir = md_dir if md_dir.is_dir() else md_dir.parent
    md = md_dir / GATE_MARKDOWN
    for line in summary_lines(d, str(args.results), shown_baseline):
        print(_safe(line))
    try:  # atomically: a pipeline posting gate.md never posts half of one
        tmp = md.with_name(md.name + ".tmp")
        tmp.write_text(_safe(markdown(d, results, shown_baseline)), encoding="utf-8")
        tmp.replace(md)
    except OSError as e:  # the decision stands; the comment is what is lost
        print(f"  markdown summary not written: {md}: {e}")
    else:
        print(f"  markdown summary: {md}")
    return d.exit_code


def _safe(text: str) -> str:
    """``text`` encodable as UTF-8: evidence from crafted packets may hold lone surrogates
    (bytes that were not UTF-8), shown as ``\\udcxx``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "gate",
        help="CI gate: exit 0 only if the run passed at a level and did not regress",
        description="Decide whether a run's results pass: no FAIL or UNKNOWN at --level or "
        "stricter, and no measured value worse than --baseline's beyond its allowance. "
        "Writes a markdown summary (gate.md) beside the results.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("results", metavar="RESULTS_DIR", help="a run's results (e.g. results/latest)")
    p.add_argument("--baseline", metavar="DIR", default=None, help="an earlier run to compare")
    p.add_argument(
        "--baseline-optional",
        action="store_true",
        help="a missing --baseline is a note, not an error (a pipeline's first run)",
    )
    p.add_argument(
        "--level",
        choices=LEVELS,
        default=DEFAULT_LEVEL,
        help=f"lowest level that must pass (default: {DEFAULT_LEVEL})",
    )
    p.add_argument(
        "--allow",
        metavar="FILE",
        default=None,
        help="YAML: allowances per metric and waivers per requirement (docs/reports.md)",
    )
    p.set_defaults(handler=_cmd_gate)
