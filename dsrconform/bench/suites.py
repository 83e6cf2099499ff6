"""``dsrconform bench suites``: wall time of the conformance suites, per lab backend.

Each round is one ``dsrconform run`` (a separate process, as a CI gate runs it: lab up, every
scenario, checks, lab down) at ``--level`` (default MUST) on the lab file given, timed from
start to exit; the exit status and the per-requirement statuses come from its ``results.json``.
The issue's target: the MUST suite on ``labs/basic.yaml`` with the netns backend within
:data:`TARGET_SECONDS` on a 2-core machine, so it fits a CI gate. A benchmark, not a test: it
reports, it does not fail on the time.

It is also the correct stack's stability proof (``--runs 5``, seeds 1..5): every run must pass
every requirement at the level, with identical verdicts (:func:`stability`). CI runs the suites
once (tests/integration/test_oracle.py); the repeated runs are this benchmark's, run and
reported, not CI's: five full runs cost ~20 of CI's minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from dsrconform.errors import ConfigError
from dsrconform.report.model import load_results

TARGET_SECONDS = 300.0
BACKENDS = ("netns", "docker")


def time_run(backend: str, level: str, lab: str | None, seed: int) -> dict[str, Any]:
    """One ``dsrconform run`` on ``backend``: seconds, exit status, statuses per requirement.

    The run writes its results to a fresh ``dsrc-bench-suites-*`` directory under the temp dir.
    A run that passed leaves nothing; one that did not keeps its directory (``results`` in the
    returned row), so which requirement failed, and its evidence, can be read afterwards
    (``dsrconform report``): an intermittent failure is not seen twice on demand.
    """
    tmp = tempfile.mkdtemp(prefix="dsrc-bench-suites-")
    argv = [sys.executable, "-m", "dsrconform.cli", "run", "--backend", backend,
            "--level", level, "--seed", str(seed), "--results", tmp]  # fmt: skip
    if lab is not None:
        argv += ["--lab", lab]
    res, seconds, statuses = timed_run(argv, tmp, timeout=3600)
    row: dict[str, Any] = {
        "backend": backend,
        "level": level,
        "seed": seed,
        "seconds": round(seconds, 1),
        "exit": res.returncode,
        "requirements": statuses,
        "tail": "" if res.returncode == 0 else res.stdout[-2000:] + res.stderr[-2000:],
    }
    if res.returncode == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        row["results"] = tmp
    return row


def timed_run(
    argv: list[str], results: str, *, timeout: float
) -> tuple[subprocess.CompletedProcess[str], float, dict[str, str]]:
    """Run a ``dsrconform run`` command line whose results go to ``results``: (the finished
    process, its wall seconds, the status per requirement it recorded; none when it wrote no
    results: its exit status and output say why). ``results`` is removed if the run itself
    raises (interrupted, timed out)."""
    start = time.monotonic()
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except BaseException:
        shutil.rmtree(results, ignore_errors=True)
        raise
    seconds = time.monotonic() - start
    try:
        statuses = {req: str(r.status) for req, r in load_results(results).requirements.items()}
    except ConfigError:
        statuses = {}
    return res, seconds, statuses


def stability(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per backend: runs, runs that passed, whether every run judged the same requirements with
    the same statuses, and the requirements whose status differed between runs."""
    out: dict[str, Any] = {}
    for backend in dict.fromkeys(r["backend"] for r in results):
        rows = [r for r in results if r["backend"] == backend]
        reqs = sorted({q for r in rows for q in r["requirements"]})
        differ = [q for q in reqs if len({r["requirements"].get(q) for r in rows}) > 1]
        out[backend] = {
            "runs": len(rows),
            "passed": sum(r["exit"] == 0 for r in rows),
            "identical": not differ,
            "differ": differ,
            "seconds": [r["seconds"] for r in rows],
        }
    return out


def main(args: argparse.Namespace) -> int:
    results = []
    for backend in args.backend or ["netns"]:
        for n in range(args.rounds):
            print(f"bench suites: {backend} round {n + 1}/{args.rounds} ...", file=sys.stderr)
            r = time_run(backend, args.level, args.lab, seed=args.seed + n)
            results.append(r)
            passed = sum(s == "PASS" for s in r["requirements"].values())
            print(
                f"  {backend}: {r['seconds']:.1f} s (target {TARGET_SECONDS:.0f} s), exit "
                f"{r['exit']}, {passed}/{len(r['requirements'])} requirements PASS",
                file=sys.stderr,
            )
            if r["exit"] != 0:
                bad = [f"{req} {s}" for req, s in r["requirements"].items() if s != "PASS"]
                print(f"  not PASS: {', '.join(bad) or 'no summary written'}; seed "
                      f"{r['seed']}; results kept in {r['results']}", file=sys.stderr)  # fmt: skip
    stable = stability(results)
    for backend, st in stable.items():
        same = "identical" if st["identical"] else f"DIFFERENT ({', '.join(st['differ'])})"
        print(
            f"bench suites: {backend}: {st['passed']}/{st['runs']} runs passed, verdicts "
            f"{same}, seconds {st['seconds']}",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps({"runs": results, "stability": stable}, indent=2))
    ok = all(r["exit"] == 0 for r in results) and all(st["identical"] for st in stable.values())
    return 0 if ok else 1


def add_parser(bench_subparsers: Any) -> argparse.ArgumentParser:
    """Register ``bench suites`` under ``dsrconform bench``; its handler is :func:`main`."""
    p: argparse.ArgumentParser = bench_subparsers.add_parser(
        "suites", help="wall time of `dsrconform run` per lab backend (needs root)"
    )
    p.add_argument("--backend", choices=BACKENDS, action="append", default=None,
                   help="repeat for both (default: netns)")  # fmt: skip
    p.add_argument("--level", choices=("MUST", "SHOULD", "MAY"), default="MUST")
    p.add_argument("--lab", default=None, metavar="FILE", help="default: labs/basic.yaml")
    p.add_argument(
        "--runs",
        "--rounds",
        dest="rounds",
        type=int,
        default=1,
        metavar="N",
        help="runs per backend, seeds --seed.. (5: the stability proof)",
    )
    p.add_argument("--seed", type=int, default=1, metavar="N", help="first round's seed")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=main)
    return p
