"""The ``dsrconform`` command line.

Subcommands::

    dsrconform doctor [--json]                      can this machine run the labs? (exit 0: yes)
    dsrconform mutants [--json] [--target NAME]     the target's deliberate bugs and their catchers
    dsrconform spec [--json | --markdown]           the requirement catalogue (SPEC.md)
    dsrconform bench mux [--target NAME] [--family F[,F]] [--mutant NAME] [--seconds S] [--json]
    dsrconform bench traffic [--quick] [--section NAME] [--json FILE]   flood, checkers, streams
    dsrconform bench suites [--backend netns|docker ...] [--level L] [--rounds N] [--json]
    dsrconform bench quick [--seeds N ...] [--mutant NAME ...] [--json]   the quick profile
    dsrconform lab up FILE [--backend netns] [--mode MODE] [--name NAME] [--mutant NAME]
    dsrconform lab status [NAME] [--json] | lab exec NODE -- CMD... | lab down [NAME | --all]
    dsrconform image build [--force] | image status [--json]   the docker backend's node image
    dsrconform steady FILE [--mode MODE] [--mutant NAME] [--out DIR] [--quick]   observe + check
    dsrconform check DIR [--ids ID,... | --families RW,DP] [--set REQ.PARAM=V]   re-check a run
    dsrconform run [--suite NAME ...] [--target NAME] [--mutant NAME] [--level MUST] [--seed N]
                   [--requirement ID,...] [--lab FILE] [--backend B] [--mode M]
                   [--profile full|quick] [--results DIR] [--keep-lab]
                   [-- PYTEST-ARGS...]              the suites through pytest, a status each
    dsrconform report RESULTS_DIR... [-o FILE] [--embed-limit SIZE] [--total-embed-limit SIZE]
                                                    one self-contained HTML report of the runs
    dsrconform gate RESULTS_DIR [--baseline DIR] [--level MUST] [--allow FILE]
                                                    the CI gate: exit 0 only if it may merge
    dsrconform target check NAME | target list      an adapter checked without a lab (exit 0/1/2)

Targets are reached only through the registry (:func:`dsrconform.target.load_target`), never by
importing a stack. Heavy modules (doctor's probes, the benchmark) are imported inside their
handlers so ``--help`` and ``spec`` stay fast. :func:`main` returns the exit code: a
:class:`~dsrconform.errors.DsrConformError` is printed as ``dsrconform: error: <message>`` and
exits with its class's ``exit_code``; argparse usage errors exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dsrconform import __version__
from dsrconform.errors import DsrConformError

if TYPE_CHECKING:
    from rich.console import Console

PROG = "dsrconform"

Handler = Callable[[argparse.Namespace], int]


def _cmd_doctor(args: argparse.Namespace) -> int:
    from dsrconform import doctor

    return doctor.main(as_json=args.json, console=None if args.json else _console())


def _cmd_mutants(args: argparse.Namespace) -> int:
    from dsrconform.target import load_target

    infos = load_target(args.target).mutants()
    if args.json:
        print(json.dumps([m.as_dict() for m in infos], indent=2))
        return 0
    from rich.table import Table

    table = Table(title=f"mutants of target {args.target!r}")
    for col in ("mutant", "component", "requirements", "caught by"):
        table.add_column(col, overflow="fold")
    for m in infos:
        caught = "\n".join(m.caught_by) if m.caught_by else f"system-level: {m.system_level}"
        table.add_row(m.name, m.component, ", ".join(m.requirements), caught)
    _console().print(table)
    return 0


def _cmd_spec(args: argparse.Namespace) -> int:
    from dsrconform.spec import REQUIREMENTS, render_markdown

    if args.json:
        print(json.dumps([r.as_dict() for r in REQUIREMENTS], indent=2))
        return 0
    if args.markdown:
        sys.stdout.write(render_markdown())
        return 0
    from rich.table import Table

    table = Table(title="dsrconform requirements")
    for col in ("id", "level", "statement", "parameters", "checker"):
        table.add_column(col, overflow="fold")
    for r in REQUIREMENTS:
        params = ", ".join(f"{p.symbol}={p.default:g}{p.unit and ' ' + p.unit}" for p in r.params)
        table.add_row(r.id, r.level, r.statement, params or "-", r.checker.partition(":")[2])
    _console().print(table)
    return 0


def _cmd_bench_mux(args: argparse.Namespace) -> int:
    from dsrconform.bench import mux

    # An unknown target or mutant, or a target that cannot bench: before any lab or BPF (several
    # targets, comma-separated, are measured one after the other and compared).
    for name in args.target.split(","):
        mux.bench_target(name, args.mutant)

    return int(mux.main(args) or 0)


def _cmd_image_build(args: argparse.Namespace) -> int:
    from dsrconform.lab import image

    ref = image.build(force=args.force)
    st = image.status()
    print(f"{ref}: {st.size_mb} MB, id {st.id}")
    return 0


def _cmd_image_status(args: argparse.Namespace) -> int:
    from dsrconform.lab import image

    st = image.status()
    if args.json:
        print(json.dumps(st.as_dict(), indent=2))
    elif st.present:
        print(f"{st.ref}: present, {st.size_mb} MB, id {st.id}, created {st.created}")
    else:
        print(f"{st.ref}: not built; fix: `dsrconform image build` (a minute or so, once)")
    for old in st.stale:
        print(f"older image {old} (the next build removes it)")
    return 0 if st.present else 1


def _console() -> Console:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped: keep rows on one line where possible
        console.width = max(console.width, 140)
    return console


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Chaos and conformance testing for Direct Server Return load balancers.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("doctor", help="check privileges, kernel features and tools")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.set_defaults(handler=_cmd_doctor)

    p = sub.add_parser("mutants", help="list the target's mutants and what catches them")
    p.add_argument("--json", action="store_true", help="print the mutants as JSON")
    p.add_argument("--target", default="reference", metavar="NAME", help="default: reference")
    p.set_defaults(handler=_cmd_mutants)

    p = sub.add_parser("spec", help="list the requirement catalogue")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the requirements as JSON")
    fmt.add_argument("--markdown", action="store_true", help="print SPEC.md (generated)")
    p.set_defaults(handler=_cmd_spec)

    from dsrconform.runopts import FAMILIES, choice_list

    bench = sub.add_parser("bench", help="performance benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", metavar="WHAT", required=True)
    p = bench_sub.add_parser("mux", help="packets/s through the target's MUX (needs root)")
    p.add_argument(
        "--target",
        default="reference",
        metavar="NAME[,NAME...]",
        help="default: reference; several (reference,katran) are measured in turn, compared",
    )
    p.add_argument(
        "--family",
        type=choice_list(FAMILIES),
        default=None,
        metavar="FAMILY[,FAMILY]",
        help="ipv4, ipv6 or both (default: each family the target declares; one it does not "
        "declare is skipped and said so)",
    )
    p.add_argument("--mutant", default=None, metavar="NAME", help="benchmark a mutant instead")
    p.add_argument("--seconds", type=float, default=3.0, metavar="S", help="default: 3")
    p.add_argument(
        "--generator",
        choices=("auto", "live-frames", "af-packet"),
        default="auto",
        help="frame generator (default: the best this kernel has; `doctor` shows them)",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=_cmd_bench_mux)
    from dsrconform.bench.lab import add_parser as add_bench_lab
    from dsrconform.bench.quick import add_parser as add_bench_quick
    from dsrconform.bench.suites import add_parser as add_bench_suites
    from dsrconform.bench.traffic import add_parser as add_bench_traffic

    add_bench_lab(bench_sub)
    add_bench_traffic(bench_sub)
    add_bench_suites(bench_sub)
    add_bench_quick(bench_sub)

    img = sub.add_parser("image", help="the docker backend's node image (built locally)")
    img_sub = img.add_subparsers(dest="image", metavar="ACTION", required=True)
    p = img_sub.add_parser("build", help="build the node image with debootstrap (needs root)")
    p.add_argument("--force", action="store_true", help="rebuild even if it exists")
    p.set_defaults(handler=_cmd_image_build)
    p = img_sub.add_parser("status", help="is the node image built? (exit 0: yes)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_image_status)

    from dsrconform.chaos.cli import add_parser as add_chaos_parser
    from dsrconform.checkcli import add_parsers as add_check_parsers
    from dsrconform.lab.cli import add_parser as add_lab_parser
    from dsrconform.report.gatecli import add_parser as add_gate_parser
    from dsrconform.report.reportcli import add_parser as add_report_parser
    from dsrconform.runcli import add_parser as add_run_parser
    from dsrconform.targetcli import add_parser as add_target_parser

    add_lab_parser(sub)
    add_check_parsers(sub)
    add_run_parser(sub)
    add_report_parser(sub)
    add_gate_parser(sub)
    add_chaos_parser(sub)
    add_target_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (never raises SystemExit itself)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    handler: Handler = args.handler
    try:
        return handler(args)
    except DsrConformError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
