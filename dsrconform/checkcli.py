"""``dsrconform steady`` and ``dsrconform check``: observe a lab in steady state, judge a run.

    dsrconform steady FILE [--mode MODE] [--target NAME] [--mutant NAME] [--out DIR]
                           [--ids RW-1,DP-2 | --families RW,DP,AF] [--quick] [--json]
    dsrconform check DIR [--ids ... | --families ...] [--set RW-6.upload_bytes=8192] [--json]

``steady`` brings the lab up (netns backend), runs the steady-state traffic mix with taps on
every link (:mod:`dsrconform.steady`), tears the lab down, checks the requirements (by default
every RW, DP and AF one: what a steady state decides) and prints one row per requirement with
what it measured (``--json``: the whole verdicts); the observations and verdicts go to
``--out`` (default ``results/steady-<lab>-<mode>``). ``check`` judges a saved run directory again:
a scenario's of ``dsrconform run`` on the requirements the suites checked on it (its
requirements.json), a ``steady`` one on RW, DP and AF, unless ``--ids``/``--families`` say
otherwise; given the results directory of ``dsrconform run``, every scenario's in turn, then
the worst status per requirement over them (``--json``: ``{"scenarios": {...},
"requirements": {...}}``). See :func:`_plan`.

Exit status: 0 when every requirement checked PASSes, 1 when one FAILs or is UNKNOWN, 2 for bad
arguments; errors (a bad topology file, a lab that cannot come up) print ``dsrconform: error``.
``steady --quick`` (too little traffic for some checks, AF-3) counts only the requirements at
the level ``dsrconform run`` counts by default (:data:`dsrconform.runopts.DEFAULT_LEVEL`, MUST)
or stricter; the others are shown, dimmed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsrconform.errors import ConfigError
from dsrconform.report.model import RESULTS_FILE, STATUS_COLOUR, STATUS_RANK, at_or_above
from dsrconform.runopts import DEFAULT_LEVEL

STEADY_FAMILIES = ("RW", "DP", "AF")


def _ids(args: argparse.Namespace) -> list[str]:
    """The requirements ``--ids`` or ``--families`` select (default: the steady families)."""
    from dsrconform import spec

    if args.ids:
        ids = [i.strip() for i in args.ids.split(",") if i.strip()]
        for i in ids:
            try:
                spec.get(i)
            except KeyError as e:
                raise ConfigError(f"--ids: {e.args[0]}") from None
        return ids
    given = ",".join(STEADY_FAMILIES) if args.families is None else args.families
    families = [f.strip().upper() for f in given.split(",") if f.strip()]
    known = sorted({r.family for r in spec.REQUIREMENTS})
    bad = [f for f in families if f not in known]
    if bad:
        raise ConfigError(f"--families: unknown {', '.join(bad)}; known: {', '.join(known)}")
    return [r.id for r in spec.REQUIREMENTS if r.family in families]


def _selected(args: argparse.Namespace) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The requirements to check and their parameter overrides, all checked before anything
    runs (a typo must not cost a lab run): no empty selection, no --set for a requirement
    outside it, no unknown parameter."""
    ids = _ids(args)
    if not ids:
        raise ConfigError("no requirement selected; fix: --ids RW-1,... or --families RW,DP,AF")
    params = _params(args.set)
    _check_overrides(params, ids)
    return ids, params


def _check_overrides(params: dict[str, dict[str, Any]], ids: list[str]) -> None:
    from dsrconform import spec

    for req, ps in params.items():
        if req not in ids:
            raise ConfigError(
                f"--set {req}...: {req} is not among the requirements checked "
                f"({', '.join(ids)}); fix: select it with --ids or --families"
            )
        spec.get(req).resolve_params(ps)  # ConfigError naming an unknown parameter


def _params(settings: list[str]) -> dict[str, dict[str, Any]]:
    """``--set RW-6.upload_bytes=8192`` -> {"RW-6": {"upload_bytes": 8192.0}}."""
    out: dict[str, dict[str, Any]] = {}
    for s in settings:
        key, eq, value = s.partition("=")
        req, dot, name = key.partition(".")
        if not (eq and dot and req and name):
            raise ConfigError(
                f"--set {s!r}: fix: write REQ.PARAM=VALUE, e.g. RW-6.upload_bytes=8192"
            )
        try:
            out.setdefault(req, {})[name] = float(value)
        except ValueError:
            raise ConfigError(f"--set {s!r}: {value!r} is not a number") from None
    return out


def counted(verdicts: list[Any], level: str | None) -> list[Any]:
    """The verdicts an exit status counts: those at ``level`` or stricter (all with None, or
    when none is: a selection of less strict requirements only is judged on them)."""
    if level is None:
        return list(verdicts)
    return [v for v in verdicts if at_or_above(v.level, level)] or list(verdicts)


def print_verdicts(verdicts: list[Any], *, title: str, level: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    gating = counted(verdicts, level)
    dim = len(gating) < len(verdicts)
    table = Table(
        title=title, caption=f"dim: less strict than {level}, not counted" if dim else None
    )
    for col in ("requirement", "level", "verdict", "measured / why"):
        table.add_column(col, overflow="fold")
    for v in verdicts:
        detail = v.message
        if v.status == "FAIL" and v.evidence:
            e = v.evidence[0]
            detail += f"\n  e.g. {e.message}" + (f" [{e.flow}]" if e.flow else "")
        elif v.status == "UNKNOWN" and v.missing:
            detail += "\n  missing: " + "; ".join(v.missing[:2])
        status = f"[{STATUS_COLOUR[v.status]}]{v.status}[/]"
        style = None if any(v is g for g in gating) else "dim"
        table.add_row(v.requirement, v.level, status, detail, style=style)
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 140)
    console.print(table)


def _finish(
    verdicts: list[Any], args: argparse.Namespace, title: str, level: str | None = None
) -> int:
    """Print the verdicts; exit 0 when every one counted (at ``level`` or stricter) PASSed."""
    if args.json:
        print(json.dumps([v.model_dump(mode="json") for v in verdicts], indent=1))
    else:
        print_verdicts(verdicts, title=title, level=level)
    return 0 if all(v.status == "PASS" for v in counted(verdicts, level)) else 1


def _cmd_steady(args: argparse.Namespace) -> int:
    from dsrconform.chaos.mixes import QUICK_MIX, STEADY_MIX
    from dsrconform.chaos.traffic import observe_steady_state
    from dsrconform.lab import Lab
    from dsrconform.parallelcheck import check_parallel
    from dsrconform.runfiles import save_observations, save_verdicts
    from dsrconform.target import check_mutant
    from dsrconform.topofile import load_topology

    ids, params = _selected(args)
    check_mutant(args.target, args.mutant)  # an unknown target or mutant: before any lab
    topo = load_topology(args.file, mode=args.mode)
    out = Path(args.out or f"results/steady-{args.name or topo.name}-{topo.mode}")
    mix = QUICK_MIX if args.quick else STEADY_MIX

    def say(msg: str) -> None:
        print(f"steady: {msg}", file=sys.stderr)

    say(f"bringing {args.file} up ({topo.mode}, target {args.target}"
        f"{', mutant ' + args.mutant if args.mutant else ''})")  # fmt: skip
    with Lab.up(args.file, mode=args.mode, name=args.name, target=args.target,
                mutant=args.mutant) as lab:  # fmt: skip
        say(f"up in {lab.ready_seconds:.1f} s; traffic for about {4 if args.quick else 10} s")
        run = observe_steady_state(lab, mix, progress=say)
    files = save_observations(run.observations, out)  # first: a run is never lost
    verdicts = check_parallel(run.observations, ids=ids, params=params)
    save_verdicts(verdicts, out)
    say(f"observations and verdicts in {out}/ ({', '.join(p.name for p in files.values())})")
    # --quick has too few flows for some checks (AF-3): it gates like `dsrconform run`
    level = DEFAULT_LEVEL if args.quick else None
    return _finish(verdicts, args, f"steady state: {args.file} ({topo.mode})", level)


@dataclass(frozen=True)
class _Judging:
    """One run directory ``check`` judges: with which requirements and parameters."""

    label: str
    """The directory as given, or a scenario's path inside a results directory."""
    directory: Path
    ids: list[str]
    params: dict[str, dict[str, Any]]


def _plan(args: argparse.Namespace) -> list[_Judging]:
    """What ``check DIR`` judges, all decided before any checker runs.

    A run directory whose requirements.json records what its scenario decides (a scenario of
    ``dsrconform run``) is judged on those requirements, with the parameters the suites gave;
    ``--ids``/``--families`` judge others instead, and without either record or selection a
    run directory is judged on RW, DP and AF (a ``steady`` run). Over a results directory of
    ``dsrconform run``, each scenario is judged on what it records, narrowed to the selection
    when there is one (scenarios deciding none of it are left out). ``--set`` overrides
    parameters of requirements judged somewhere."""
    from dsrconform import spec
    from dsrconform.runfiles import REQUIREMENTS, is_results_dir, load_requirements, scenario_dirs

    d = Path(args.dir)
    explicit = bool(args.ids) or args.families is not None
    selected = _ids(args) if explicit else None
    if selected == []:
        raise ConfigError("no requirement selected; fix: --ids RW-1,... or --families RW,DP,AF")
    overrides = _params(args.set)
    plan: list[_Judging] = []
    if not is_results_dir(d):
        decided = load_requirements(d) if d.is_dir() else None
        if selected is not None or decided is None:
            plan.append(_Judging(str(d), d, selected or _ids(args), {}))
        else:
            plan.append(_Judging(str(d), d, list(decided.requirements), decided.params))
    else:
        unrecorded = []
        for sd in scenario_dirs(d):
            rel = sd.relative_to(d).as_posix()
            decided = load_requirements(sd)
            if decided is None:
                if selected is None:
                    unrecorded.append(rel)
                else:
                    plan.append(_Judging(rel, sd, selected, {}))
                continue
            ids = [i for i in decided.requirements if selected is None or i in selected]
            if ids:
                plan.append(_Judging(rel, sd, ids, decided.params))
        if unrecorded:
            raise ConfigError(
                f"{d}: {', '.join(unrecorded)}: no {REQUIREMENTS} saying which requirements "
                "the scenario decides (a run from before dsrconform recorded it); fix: choose "
                "them with --ids or --families, or judge one scenario directory at a time"
            )
        if not plan:
            raise ConfigError(
                f"{d}: no scenario decides {', '.join(selected or ())}; fix: "
                f"--ids among those its scenarios record in {REQUIREMENTS}"
            )
    for j in plan:
        for i in j.ids:
            try:
                spec.get(i)
            except KeyError as e:
                raise ConfigError(f"{j.directory / REQUIREMENTS}: {e.args[0]}") from None
    _check_overrides(overrides, list(dict.fromkeys(i for j in plan for i in j.ids)))
    return [_Judging(j.label, j.directory, j.ids, _merge(j.params, overrides, j.ids)) for j in plan]


def _merge(
    recorded: dict[str, dict[str, Any]], overrides: dict[str, dict[str, Any]], ids: list[str]
) -> dict[str, dict[str, Any]]:
    """The recorded parameters of ``ids`` with ``--set`` on top."""
    out = {req: dict(ps) for req, ps in recorded.items() if req in ids}
    for req, ps in overrides.items():
        if req in ids:
            out[req] = {**out.get(req, {}), **ps}
    return out


def _cmd_check(args: argparse.Namespace) -> int:
    from dsrconform.parallelcheck import check_parallel
    from dsrconform.runfiles import is_results_dir, load_observations

    plan = _plan(args)
    if not is_results_dir(args.dir):
        (one,) = plan
        verdicts = check_parallel(load_observations(one.directory), ids=one.ids, params=one.params)
        return _finish(verdicts, args, f"checked {args.dir}")
    judged = []
    for j in plan:
        obs = load_observations(j.directory)
        judged.append((j, check_parallel(obs, ids=j.ids, params=j.params)))
    return _finish_results(judged, args)


def worst_per_requirement(judged: list[tuple[_Judging, list[Any]]]) -> dict[str, dict[str, Any]]:
    """Per requirement (catalogue order): its level, the worst status over the scenarios that
    decide it (FAIL > UNKNOWN > PASS) and each scenario's status."""
    from dsrconform.spec import REQUIREMENTS

    out: dict[str, dict[str, Any]] = {}
    for j, verdicts in judged:
        for v in verdicts:
            row = out.setdefault(
                v.requirement, {"level": v.level, "status": "PASS", "scenarios": {}}
            )
            row["scenarios"][j.label] = str(v.status)
            if STATUS_RANK[v.status] > STATUS_RANK[row["status"]]:
                row["status"] = str(v.status)
    order = {r.id: n for n, r in enumerate(REQUIREMENTS)}
    return {req: out[req] for req in sorted(out, key=lambda r: (order.get(r, len(order)), r))}


def recorded_changes(results_dir: Path, worst: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Requirement -> ``"<recorded> -> <now>"`` where judging again changed the status the run's
    results.json recorded (empty when it has none: a results directory of an older run)."""
    from dsrconform.report.model import load_results

    if not (results_dir / RESULTS_FILE).is_file():
        return {}
    try:
        recorded = load_results(results_dir).requirements
    except ConfigError as e:  # judging again does not need it: say so, compare nothing
        print(f"dsrconform: note: not compared with what the run recorded: {e}", file=sys.stderr)
        return {}
    return {
        req: f"{recorded[req].status} -> {row['status']}"
        for req, row in worst.items()
        if req in recorded and recorded[req].status != row["status"]
    }


def _finish_results(judged: list[tuple[_Judging, list[Any]]], args: argparse.Namespace) -> int:
    """Print each scenario's verdicts, then the worst status per requirement, then where that
    differs from what the run recorded (its results.json: other parameters, a newer checker, or
    tests that failed for a reason of their own); exit 0 when every verdict PASSed."""
    worst = worst_per_requirement(judged)
    changed = recorded_changes(Path(args.dir), worst)
    if args.json:
        scenarios = {
            j.label: {
                "dir": str(j.directory),
                "verdicts": [v.model_dump(mode="json") for v in verdicts],
            }
            for j, verdicts in judged
        }
        out = {"scenarios": scenarios, "requirements": worst, "changed": changed}
        print(json.dumps(out, indent=1))
    else:
        from rich.console import Console
        from rich.table import Table

        for j, verdicts in judged:
            print_verdicts(verdicts, title=f"scenario {j.label} ({j.directory})")
        table = Table(title=f"worst status per requirement ({len(judged)} scenarios)")
        for col in ("requirement", "level", "status", "scenarios"):
            table.add_column(col, overflow="fold")
        for req, row in worst.items():
            status = f"[{STATUS_COLOUR[row['status']]}]{row['status']}[/]"
            each = ", ".join(f"{label} {st}" for label, st in row["scenarios"].items())
            table.add_row(req, row["level"], status, each)
        console = Console()
        if not console.is_terminal:
            console.width = max(console.width, 140)
        console.print(table)
        for req, what in changed.items():
            print(f"{req}: {what} (recorded in {Path(args.dir) / RESULTS_FILE})")
    return 0 if all(row["status"] == "PASS" for row in worst.values()) else 1


def _selection(p: argparse.ArgumentParser, default: str = ",".join(STEADY_FAMILIES)) -> None:
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--ids", metavar="ID,...", help="requirements to check, e.g. RW-1,AF-3")
    sel.add_argument(
        "--families",
        default=None,
        metavar="FAM,...",
        help=f"requirement families to check (default: {default})",
    )
    p.add_argument("--set", action="append", default=[], metavar="REQ.PARAM=VALUE",
                   help="override a requirement's parameter (repeatable)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the verdicts as JSON")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("steady", help="observe a lab in steady state and check RW/DP/AF")
    p.add_argument("file", metavar="FILE", help="topology file, e.g. labs/basic.yaml")
    p.add_argument("--mode", choices=("encap", "server-nat", "gateway-nat"), default=None,
                   help="data-plane mode (default: the file's)")  # fmt: skip
    p.add_argument("--name", default=None, help="lab name (default: the file's)")
    p.add_argument("--target", default="reference", metavar="NAME", help="default: reference")
    p.add_argument("--mutant", default=None, metavar="NAME", help="run a mutant of the target")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="run directory (default: results/steady-<lab>-<mode>)")  # fmt: skip
    p.add_argument(
        "--quick",
        action="store_true",
        help="less traffic (AF-3 stays UNKNOWN); the exit status counts only the requirements "
        f"at {DEFAULT_LEVEL} or stricter, as `dsrconform run` does by default",
    )
    _selection(p)
    p.set_defaults(handler=_cmd_steady)

    p = sub.add_parser("check", help="check the requirements over a saved run directory")
    p.add_argument(
        "dir",
        metavar="DIR",
        help="a run directory (steady --out, or a scenario's of `dsrconform run`), or the "
        "results directory of `dsrconform run` (each scenario judged on its requirements)",
    )
    _selection(p, "the requirements the directory records its scenario decides, else RW,DP,AF")
    p.set_defaults(handler=_cmd_check)
