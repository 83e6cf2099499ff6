"""``dsrconform run``: the conformance suites through pytest, then a verdict per requirement.

    dsrconform run [--suite NAME ...] [--target NAME] [--mutant NAME] [--level MUST|SHOULD|MAY]
                   [--requirement ID,...] [--lab FILE] [--backend netns|docker] [--mode MODE]
                   [--family ipv4,ipv6] [--profile full|quick] [--seed N] [--results DIR]
                   [--keep-lab]
                   [-- PYTEST-OPTIONS...]

It runs ``sys.executable -m pytest`` on the repository's ``suites/`` (all of it, or
``suites/test_<NAME>.py`` per ``--suite``) as a child process whose output goes straight to the
terminal, one line per test (``-v``), with the ``--dsr-*`` options of the pytest plugin mapped
from its own; the command is printed first so it can be rerun by hand. Arguments after ``--``
go to pytest verbatim (and win over the mapped ones).

Address families: ``--family ipv4,ipv6`` runs every lab test once per family (as ``--mode``
does per mode), each driving its family's services only (:mod:`dsrconform.families`). Without
``--lab`` each family brings up its own lab, so that the defaults just work: IPv4 on
labs/basic.yaml (the run it always was), IPv6 on labs/dual.yaml. With ``--lab``, every family
runs on that file, and one with no service of a family asked for is refused before anything
runs (exit 2, naming the file and the fix: ``--lab labs/dual.yaml`` or no ``--lab``), rather
than reported UNKNOWN after a lab came up for nothing. The table at the end names the families
each requirement was judged in, and the catalogue's note for a family where its text differs
(RW-6: ICMPv6 Packet Too Big).

Results accumulate: each run gets its own directory, ``results/<UTC time>-<target>-<seed>/``
(the seed is drawn here when ``--seed`` is not given, so the name says it), and
``results/latest`` links to the newest. ``--results DIR`` names the directory exactly (a
previous run's ``results.json`` there goes first). The plugin writes ``results.json`` (the
results model, :mod:`dsrconform.report.model`); the table printed at the end is read from it,
and this command records its own replay command line in it.

Exit status: 0 when every requirement decided by the run at or above ``--level`` (default
MUST) PASSed, 1 when one of them is FAIL or UNKNOWN; pytest's own code when pytest did not run
the tests through (2 interrupted, 3 internal error, 4 usage error, 5 no test collected); 2 for
bad arguments (an unknown suite, requirement ID, target or mutant, a lab file that does not load
in a mode asked for), refused before pytest starts. A requirement no test of the run cites is
not judged. A requirement NOT APPLICABLE to the target (its capabilities lack the run's mode or
family, :mod:`dsrconform.applicability`) is shown with its reason and counted neither way; a
run that decided nothing else exits 1 (nothing decided is not a pass).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsrconform.errors import ConfigError
from dsrconform.report.model import (
    RESULTS_FILE,
    STATUS_COLOUR,
    Results,
    load_results,
    status_counts,
)
from dsrconform.runopts import (
    BACKENDS,
    DEFAULT_FAMILIES,
    DEFAULT_LEVEL,
    FAMILIES,
    FAMILY_LABS,
    MODES,
    PROFILES,
    add_environment_options,
    choice_list,
    default_lab,
    parse_seed,
)
from dsrconform.spec import LEVELS

if TYPE_CHECKING:
    from dsrconform.topology import Mode

RESULTS_ROOT = "results"
"""Where run directories accumulate (``<UTC time>-<target>-<seed>``) unless --results says."""
LATEST = "latest"
"""The link in :data:`RESULTS_ROOT` to the newest run directory."""
PYTEST_RAN = (0, 1)  # pytest exit codes of a run that went through: all passed, some did not


def repo_root() -> Path:
    """The checkout the package runs from: the parent of the ``dsrconform`` package directory."""
    return Path(__file__).resolve().parent.parent


def suites_dir(root: Path | None = None) -> Path:
    return (root or repo_root()) / "suites"


def available_suites(directory: Path) -> list[str]:
    """Suite names, from the ``test_<name>.py`` files present."""
    return sorted(p.stem.removeprefix("test_") for p in directory.glob("test_*.py"))


def suite_paths(names: Sequence[str], directory: Path) -> list[Path]:
    """The files of the suites named (``steady_state`` -> ``test_steady_state.py``; a
    ``test_`` prefix or ``.py`` suffix is accepted), or the whole directory when none is."""
    if not directory.is_dir():
        raise ConfigError(
            f"no suites directory at {directory}; `dsrconform run` needs a checkout of the "
            f"repository (pip install -e .)"
        )
    if not names:
        return [directory]
    known = available_suites(directory)
    out: list[Path] = []
    for name in names:
        stem = name.removesuffix(".py").removeprefix("test_")
        if stem not in known:
            raise ConfigError(
                f"--suite {name!r}: no such suite in {directory}; available: "
                f"{', '.join(known) or '(none)'}"
            )
        path = directory / f"test_{stem}.py"
        if path not in out:
            out.append(path)
    return out


def pytest_argv(
    args: argparse.Namespace, directory: Path, python: str = sys.executable
) -> list[str]:
    """The pytest command line for ``args`` (parsed by :func:`add_parser`'s parser)."""
    argv = [python, "-m", "pytest", *map(str, suite_paths(args.suite, directory))]
    rest = extra_args(args.pytest_args)
    argv += ["-p", "no:cacheprovider", "-v", "-o", "console_output_style=progress"]
    argv += ["--dsr-level", args.level, "--dsr-results", str(Path(args.results).absolute())]
    optional: list[tuple[str, Any]] = [
        ("--dsr-profile", args.profile),
        ("--dsr-target", args.target),
        ("--dsr-mutant", args.mutant),
        ("--dsr-lab", None if args.lab is None else Path(args.lab).absolute()),
        ("--dsr-backend", None if args.backend is None else ",".join(args.backend)),
        ("--dsr-mode", None if args.mode is None else ",".join(args.mode)),
        ("--dsr-family", None if args.family is None else ",".join(args.family)),
        ("--dsr-seed", args.seed),
    ]
    for opt, value in optional:
        if value is not None:
            argv += [opt, str(value)]
    for item in args.target_opt:
        argv += ["--dsr-target-opt", item]
    if args.server_command is not None:
        argv += ["--dsr-server-command", args.server_command]
    for ids in args.requirement:
        argv += ["--dsr-requirement", ids]
    if args.keep_lab:
        argv.append("--dsr-keep-lab")
    return argv + rest


def extra_args(rest: Sequence[str]) -> list[str]:
    """What follows ``--`` (argparse keeps the ``--`` itself in a REMAINDER argument)."""
    if not rest:
        return []
    if rest[0] != "--":
        raise ConfigError(
            f"unexpected argument {rest[0]!r}; pytest options go after `--`, e.g. "
            f"dsrconform run --suite steady_state -- -x -k RW"
        )
    return list(rest[1:])


def clear_results(results: Path) -> None:
    """Remove a previous run's results.json (nothing else)."""
    (results / RESULTS_FILE).unlink(missing_ok=True)


def utc_now() -> datetime:
    return datetime.now(UTC)


def run_directory(root: Path, target: str, seed: int, now: datetime | None = None) -> Path:
    """A new run directory under ``root``: ``<UTC time>-<target>-<seed>`` (``-2``, ``-3``...
    when two runs start in the same second with the same target and seed). A target named
    ``module:Class`` is written ``module_Class``: CI artifact stores refuse colons in paths."""
    stamp = (now or utc_now()).strftime("%Y%m%dT%H%M%SZ")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", target)
    base = f"{stamp}-{safe}-{seed}"
    path, n = root / base, 1
    while path.exists():
        n += 1
        path = root / f"{base}-{n}"
    return path


def link_latest(root: Path, run: Path) -> None:
    """Point ``root/latest`` at ``run`` (relative, replaced atomically); a ``latest`` that is
    not a symlink is left alone (ConfigError: it would be a user's file)."""
    link = root / LATEST
    if link.exists() and not link.is_symlink():
        raise ConfigError(f"{link} exists and is not a symlink; fix: move it away")
    tmp = root / f".{LATEST}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run.name if run.parent == root else run.absolute())
    tmp.replace(link)


def exit_code(results: Results | None, level: str, pytest_code: int) -> int:
    """0 if every requirement at or above ``level`` PASSed (NOT APPLICABLE ones left out), 1 if
    one FAILed or is UNKNOWN;
    pytest's own code when it did not run the tests through (interrupted, internal or usage
    error, nothing collected, killed: 128 + signal). With no results (the plugin did not run),
    or none of its requirements at or above the level, the run decided nothing: 1 (as the
    gate: nothing decided is not a pass)."""
    if pytest_code < 0:  # killed by a signal
        return 128 - pytest_code
    if pytest_code not in PYTEST_RAN:
        return pytest_code
    if results is None:
        return 1
    rows = results.decided(level)  # NOT APPLICABLE: neither a pass nor a failure
    if not rows or not_judged(results, level):
        return 1
    return 0 if all(r.status == "PASS" for r in rows.values()) else 1


def not_judged(results: Results, level: str) -> list[str]:
    """The requirements at or above ``level`` the run was asked for (``--requirement``) that
    no test of it judged (deselected by a profile, a ``-k``): UNKNOWN, never a pass."""
    from dsrconform.report.model import at_or_above
    from dsrconform.spec import BY_ID

    return [
        r
        for r in results.run.requirements_asked
        if r not in results.requirements and r in BY_ID and at_or_above(BY_ID[r].level, level)
    ]


def print_summary(results: Results, level: str) -> None:
    from rich.console import Console
    from rich.table import Table

    counted = results.gating(level)
    dim = len(counted) < len(results.requirements)
    table = Table(caption=f"dim: less strict than {level}, not counted" if dim else None)
    several = results.run.families not in ([], list(DEFAULT_FAMILIES))
    for col in ("requirement", "level", "status", *(["families"] if several else [])):
        table.add_column(col)
    for req, row in results.requirements.items():
        status = f"[{STATUS_COLOUR.get(row.status, 'white')}]{row.status}[/]"
        style = None if req in counted else "dim"
        cells = [req, row.level or "?", status, *([", ".join(row.families)] if several else [])]
        table.add_row(*cells, style=style)
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 100)
    console.print(table)
    why: dict[str, list[str]] = {}
    for req, row in results.requirements.items():
        if row.status == "NOT APPLICABLE":
            why.setdefault(row.message, []).append(req)
    for reason, reqs in why.items():
        console.print(f"NOT APPLICABLE ({', '.join(reqs)}): {reason}", highlight=False)
    if several:
        for line in family_note_lines(results):
            console.print(line, highlight=False)


def family_note_lines(results: Results) -> list[str]:
    """``RW-6 (IPv6): <the catalogue's note>`` for each requirement judged in a family whose
    text the catalogue qualifies (:meth:`dsrconform.spec.Requirement.family_note`), in the
    families' order; none for an IPv4-only run (its text is the catalogue's as written)."""
    from dsrconform.spec import ADDRESS_FAMILY_NAMES, BY_ID

    out = []
    for req, row in results.requirements.items():
        for fam in row.families:
            note = BY_ID[req].family_note(fam) if req in BY_ID else ""
            if note and fam not in DEFAULT_FAMILIES:
                out.append(f"{req} ({ADDRESS_FAMILY_NAMES.get(fam, fam)}): {note}")
    return out


def run_pytest(argv: Sequence[str]) -> int:
    """Run pytest in the foreground; a ^C reaches it too (same process group), so wait for it
    to tear its lab down and report instead of killing it."""
    proc = subprocess.Popen(list(argv))
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


def check_requirements(values: Sequence[str]) -> list[str]:
    """The requirement IDs of the ``--requirement`` options, each one of the catalogue's
    (ConfigError naming those that are not)."""
    from dsrconform.spec import BY_ID

    ids = list(dict.fromkeys(i.strip() for v in values for i in v.split(",") if i.strip()))
    if values and not ids:
        raise ConfigError(
            "--requirement: no requirement ID given; fix: e.g. --requirement RW-1,AF-1 "
            "(`dsrconform spec` lists them)"
        )
    bad = [i for i in ids if i not in BY_ID]
    if bad:
        raise ConfigError(
            f"--requirement: unknown requirement ID(s) {', '.join(map(repr, bad))}; "
            "`dsrconform spec` lists the valid ones"
        )
    return ids


def check_lab(
    path: str, modes: Sequence[Mode] | None, families: Sequence[str] = DEFAULT_FAMILIES
) -> None:
    """Load the lab file as the run will, in each mode asked for: its ConfigError (file, line,
    field) now rather than as an error in every lab test's setup; and a ConfigError naming the
    file and the fix when it has no service of a family asked for (nothing of that family could
    be judged on it: refused before any lab, :func:`dsrconform.families.missing_family`)."""
    from dsrconform.families import missing_family
    from dsrconform.topofile import load_topology

    for mode in modes or (None,):
        topo = load_topology(path, mode=mode)
    for family in families:
        why = missing_family(path, topo.services, family)
        if why is not None:
            raise ConfigError(f"--family {family}: {why}")


def family_labs(lab: str | None, families: Sequence[str], root: Path | None = None) -> list[str]:
    """The lab file each family's tests bring up, as the plugin picks it: ``lab`` for every
    family, else each family's own (:data:`dsrconform.runopts.FAMILY_LABS`, in the checkout)."""
    if lab is not None:
        return [lab] * len(families)
    return [str((root or repo_root()) / default_lab(f)) for f in families]


def replay_command(args: argparse.Namespace) -> str:
    """A ``dsrconform run`` command line that runs what ``args`` ran, with its seed (pytest
    options after ``--`` included; the results go to a new directory)."""
    out = ["dsrconform", "run"]
    for name in args.suite:
        out += ["--suite", name]
    pairs: list[tuple[str, Any]] = [
        ("--target", args.target),
        ("--mutant", args.mutant),
        *[("--target-opt", item) for item in args.target_opt],
        ("--server-command", args.server_command),
        ("--level", args.level),
        ("--lab", args.lab),
        ("--backend", None if args.backend is None else ",".join(args.backend)),
        ("--mode", None if args.mode is None else ",".join(args.mode)),
        ("--family", None if args.family is None else ",".join(args.family)),
        ("--profile", args.profile),
        ("--seed", args.seed),
    ]
    out += [x for opt, value in pairs if value is not None for x in (opt, str(value))]
    for ids in args.requirement:
        out += ["--requirement", ids]
    return shlex.join(out + list(args.pytest_args))


def _cmd_run(args: argparse.Namespace) -> int:
    directory = suites_dir()
    suite_paths(args.suite, directory)  # ConfigError for an unknown suite, before anything runs
    extra_args(args.pytest_args)
    check_requirements(args.requirement)
    if args.target is not None or args.mutant is not None or args.target_opt:
        # unknown target, mutant or option: now, not in every lab test's setup
        from dsrconform.target import check_mutant, parse_target_options

        options = parse_target_options(args.target_opt)
        check_mutant(args.target or "reference", args.mutant, options=options)
    families = args.family or DEFAULT_FAMILIES
    for family, path in zip(families, family_labs(args.lab, families), strict=True):
        if args.lab is not None or family not in DEFAULT_FAMILIES:  # the default: as it was
            check_lab(path, args.mode, (family,))
    if args.seed is None:  # drawn here, so that the run directory's name can say it
        args.seed = random.SystemRandom().randrange(2**32)
    if args.results is None:
        root = Path(RESULTS_ROOT)
        args.results = str(run_directory(root, args.target or "reference", args.seed))
        Path(args.results).mkdir(parents=True)
        link_latest(root, Path(args.results))
    argv = pytest_argv(args, directory)
    results = Path(args.results)
    clear_results(results)
    print(shlex.join(argv), flush=True)
    code = run_pytest(argv)
    try:
        run = load_results(results)
    except ConfigError as e:
        why = f"pytest exit {code}; was the dsrconform plugin disabled?"
        print(f"dsrconform: error: {e} ({why})", file=sys.stderr)
        return exit_code(None, args.level, code)
    run.run.replay = replay_command(args)
    run.save(results)
    if run.requirements:
        print_summary(run, args.level)
    status = exit_code(run, args.level, code)
    for req in not_judged(run, args.level):
        print(f"{req}: UNKNOWN: asked for, but no test of the run judged it")
    counts = status_counts(run.gating(args.level))
    print(
        f"{sum(counts.values())} requirement(s) at {args.level} or stricter: "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + f"; results in {results}; exit {status}"
    )
    return status


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the conformance suites (pytest) and print a verdict per requirement",
        description="Run suites/ through pytest with the dsrconform plugin; "
        "arguments after -- go to pytest.",
    )
    p.add_argument("--suite", action="append", default=[], metavar="NAME",
                   help="suites/test_NAME.py only (repeatable; default: every suite)")  # fmt: skip
    p.add_argument("--target", default=None, metavar="NAME", help="default: reference")
    p.add_argument("--mutant", default=None, metavar="NAME", help="run a mutant of the target")
    add_environment_options(p)
    p.add_argument(
        "--level",
        choices=LEVELS,
        default=DEFAULT_LEVEL,
        help=f"lowest requirement level tested and counted (default: {DEFAULT_LEVEL})",
    )
    p.add_argument(
        "--requirement",
        action="append",
        default=[],
        metavar="ID[,ID...]",
        help="only the tests citing one of these requirement IDs (repeatable)",
    )
    p.add_argument(
        "--lab",
        default=None,
        metavar="FILE",
        help="the lab of every family (default: per family, "
        + ", ".join(f"{f} {lab}" for f, lab in FAMILY_LABS.items())
        + ")",
    )
    p.add_argument("--backend", type=choice_list(BACKENDS), default=None, metavar="NAME[,NAME]",
                   help="netns or docker, or both (default: netns)")  # fmt: skip
    p.add_argument("--mode", type=choice_list(MODES), default=None, metavar="MODE[,MODE...]",
                   help="rewrite mode(s) of every suite (default: the lab file's, and the "
                        "steady suite also in the target's other modes)")  # fmt: skip
    p.add_argument(
        "--family",
        type=choice_list(FAMILIES),
        default=None,
        metavar="FAMILY[,FAMILY]",
        help="address families whose services the lab tests drive, ipv4/ipv6 (default: ipv4); "
        "several run every lab test in each. Without --lab each family runs on its own lab: "
        + ", ".join(f"{f} {lab}" for f, lab in FAMILY_LABS.items()),
    )
    p.add_argument("--seed", type=parse_seed, default=None, metavar="N",
                   help="seed of every random choice (default: random, shown)")  # fmt: skip
    p.add_argument(
        "--results",
        default=None,
        metavar="DIR",
        help=f"the run's results directory, exactly (default: a new {RESULTS_ROOT}/<UTC time>-"
        f"<target>-<seed>/, linked from {RESULTS_ROOT}/{LATEST})",
    )
    p.add_argument(
        "--profile",
        choices=PROFILES,
        default=None,
        help="quick: the short scenarios of a pull-request gate (see docs/reports.md); "
        "full (default): every scenario",
    )
    p.add_argument("--keep-lab", action="store_true", help="leave the lab up after the run")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="-- PYTEST-OPTIONS",
                   help="passed to pytest verbatim")  # fmt: skip
    p.set_defaults(handler=_cmd_run)
