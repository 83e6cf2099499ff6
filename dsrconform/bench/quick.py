"""``dsrconform bench quick``: the quick profile's wall time and the share of mutants it catches.

Each round is one ``dsrconform run --profile quick`` (a separate process, as a pull-request gate
runs it), timed from start to exit: first the correct stack once per seed (``--seeds``; each
must pass), then every catalogued mutant of the target (``dsrconform mutants``; or those of
``--mutant``) at the first seed. A mutant is *caught* when its run exits 1 with a requirement
FAIL, *caught by UNKNOWN only* when it exits 1 with UNKNOWNs and no FAIL (a weak catch: the
stack broke something the checkers could not decide), and *missed* when the run passes. The
issue's targets: :data:`TARGET_SECONDS` per run of the correct stack on 2 cores, and at least
:data:`TARGET_SHARE` of the mutants caught. A benchmark, not a test: it reports; its exit
status is 1 when a target is not met or a run did not go through.

The machine's 1-minute load average before and after each run is in its row: a time measured
on a busy machine says little (repeat it when the load was high).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from typing import Any

from dsrconform.bench.suites import timed_run

TARGET_SECONDS = 60.0
"""A quick run of the correct stack must take at most this long (2 cores)."""
TARGET_SHARE = 0.8
"""The quick profile must catch at least this share of the catalogued mutants."""

CAUGHT, UNKNOWN_ONLY, MISSED, BROKEN = "caught", "caught (UNKNOWN only)", "missed", "no result"


def verdict(exit_status: int, statuses: dict[str, str]) -> str:
    """How a mutant's quick run went: :data:`CAUGHT` (exit 1, some requirement FAIL),
    :data:`UNKNOWN_ONLY` (exit 1, UNKNOWNs and no FAIL), :data:`MISSED` (exit 0), or
    :data:`BROKEN` (any other exit, or exit 1 with neither: the run did not go through)."""
    values = set(statuses.values())
    if exit_status == 0:
        return MISSED
    if exit_status == 1 and "FAIL" in values:
        return CAUGHT
    if exit_status == 1 and "UNKNOWN" in values:
        return UNKNOWN_ONLY
    return BROKEN


def _load() -> float:
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def time_run(seed: int, mutant: str | None, lab: str | None) -> dict[str, Any]:
    """One ``dsrconform run --profile quick`` at ``seed`` (of ``mutant`` when given): seconds,
    exit status, statuses per requirement, load before and after. Its results go to a fresh
    temporary directory, removed afterwards unless the run went differently than a correct
    stack's should (kept: ``results`` in the row)."""
    tmp = tempfile.mkdtemp(prefix="dsrc-bench-quick-")
    argv = [
        sys.executable,
        "-m",
        "dsrconform.cli",
        "run",
        "--profile",
        "quick",
        "--seed",
        str(seed),
        "--results",
        tmp,
    ]
    if mutant is not None:
        argv += ["--mutant", mutant]
    if lab is not None:
        argv += ["--lab", lab]
    load_before = _load()
    res, seconds, statuses = timed_run(argv, tmp, timeout=1800)
    row: dict[str, Any] = {
        "mutant": mutant,
        "seed": seed,
        "seconds": round(seconds, 1),
        "exit": res.returncode,
        "requirements": statuses,
        "load_before": load_before,
        "load_after": _load(),
    }
    if mutant is not None:
        row["verdict"] = verdict(res.returncode, statuses)
        row["failed"] = sorted(q for q, s in statuses.items() if s == "FAIL")
        row["unknown"] = sorted(q for q, s in statuses.items() if s == "UNKNOWN")
    if (mutant is None) != (res.returncode == 0) or row.get("verdict") == BROKEN:
        row["results"] = tmp
        row["tail"] = res.stdout[-2000:] + res.stderr[-2000:]
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return row


def summary(correct: list[dict[str, Any]], mutants: list[dict[str, Any]]) -> dict[str, Any]:
    """The benchmark's verdict: the correct runs' seconds and passes, each mutant's verdict, the
    share caught (by FAIL), and whether both targets are met."""
    caught = sum(r["verdict"] == CAUGHT for r in mutants)
    share = caught / len(mutants) if mutants else 0.0
    return {
        "correct_seconds": [r["seconds"] for r in correct],
        "correct_passed": sum(r["exit"] == 0 for r in correct),
        "correct_runs": len(correct),
        "mutants": {r["mutant"]: r["verdict"] for r in mutants},
        "caught": caught,
        "caught_unknown_only": sum(r["verdict"] == UNKNOWN_ONLY for r in mutants),
        "missed": sum(r["verdict"] == MISSED for r in mutants),
        "share": round(share, 3),
        "time_ok": all(r["seconds"] <= TARGET_SECONDS for r in correct),
        "share_ok": share >= TARGET_SHARE,
    }


def main(args: argparse.Namespace) -> int:
    from dsrconform.target import check_mutant, load_target

    for name in args.mutant or ():  # an unknown one: before the first (minute-long) run
        check_mutant("reference", name)
    names = args.mutant or [m.name for m in load_target("reference").mutants()]
    correct, mutants = [], []
    for seed in args.seeds:
        print(f"bench quick: correct stack, seed {seed} ...", file=sys.stderr)
        r = time_run(seed, None, args.lab)
        correct.append(r)
        print(
            f"  {r['seconds']:.1f} s (target {TARGET_SECONDS:.0f} s), exit {r['exit']}, "
            f"load {r['load_before']:.1f} -> {r['load_after']:.1f}",
            file=sys.stderr,
        )
    for name in names:
        print(f"bench quick: mutant {name} ...", file=sys.stderr)
        r = time_run(args.seeds[0] if args.seeds else 1, name, args.lab)
        mutants.append(r)
        why = ", ".join(r["failed"]) or ", ".join(r["unknown"]) or "-"
        print(f"  {r['verdict']} ({why}) in {r['seconds']:.1f} s", file=sys.stderr)
    out = summary(correct, mutants)
    print(
        f"bench quick: correct stack {out['correct_passed']}/{out['correct_runs']} passed in "
        f"{out['correct_seconds']} s; mutants caught {out['caught']}/{len(mutants)} "
        f"({out['share']:.0%}, target {TARGET_SHARE:.0%}), by UNKNOWN only "
        f"{out['caught_unknown_only']}, missed {out['missed']}",
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps({"correct": correct, "mutants": mutants, "summary": out}, indent=2))
    ok = out["correct_passed"] == out["correct_runs"] and out["time_ok"]
    ok = ok and (out["share_ok"] or not mutants or bool(args.mutant))
    return 0 if ok else 1


def add_parser(bench_subparsers: Any) -> argparse.ArgumentParser:
    """Register ``bench quick`` under ``dsrconform bench``; its handler is :func:`main`."""
    p: argparse.ArgumentParser = bench_subparsers.add_parser(
        "quick",
        help="wall time of `dsrconform run --profile quick` and the mutants it catches "
        "(needs root)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="*",
        default=[1, 2, 3],
        metavar="N",
        help="the correct stack's runs (default: 1 2 3; none: mutants only)",
    )
    p.add_argument(
        "--mutant",
        action="append",
        default=None,
        metavar="NAME",
        help="only these mutants (repeatable; default: every one; the share "
        "target is then not applied)",
    )
    p.add_argument("--lab", default=None, metavar="FILE", help="default: labs/basic.yaml")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(handler=main)
    return p
