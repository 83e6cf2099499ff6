"""``dsrconform chaos``: run, plan, list and validate chaos scenarios.

- ``chaos run FILE [--dry-run] [--seed N] [--backend B] [--mutant M] [--results DIR]``: with
  ``--dry-run``, print the planned timeline without a lab (exit 0); else run it with live
  progress and write a run directory (``results/<UTC>-<target>-<scenario>-<seed>/``, linked
  from ``results/latest``). Exit 0: every requirement decided PASSed, the hypothesis held and
  every rollback ran clean; 1: not; 2: a bad file or option; 130: interrupted (after the
  rollbacks).
- ``chaos list``: the shipped scenarios (``labs/scenarios/``), one line each; ``--faults``: the
  fault kinds and their parameters.
- ``chaos validate FILE...``: check files without running them (exit 0 / 2).
- ``chaos schema``: print the scenario files' JSON Schema (``docs/scenario.schema.json``).
- ``chaos explore --lab FILE --budget N --seed S [--mutant M] ...``: generated schedules, each
  run in a fresh lab; a MUST violation is shrunk to a minimal schedule written as
  ``reproducer.yaml`` in the run directory (exit 1); none within the budget: exit 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dsrconform.errors import ConfigError

__all__ = ["SCENARIO_DIR", "add_parser", "scenario_schema", "shipped_scenarios"]

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "labs" / "scenarios"
"""The shipped scenarios."""


def shipped_scenarios() -> list[Path]:
    return sorted(SCENARIO_DIR.glob("*.yaml"))


def scenario_schema() -> dict[str, Any]:
    from dsrconform.chaos.scenario import Scenario

    schema = Scenario.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dsrconform chaos scenario"
    return schema


def _validate(args: argparse.Namespace) -> int:
    from dsrconform.chaos.plan import load_scenario, plan_scenario

    bad = 0
    for f in args.files:
        try:
            scn, topo = load_scenario(f)
            plan = plan_scenario(scn, topo)
        except ConfigError as e:
            print(str(e), file=sys.stderr)
            bad += 1
            continue
        warn = f", {len(plan.warnings)} warnings" if plan.warnings else ""
        print(
            f"{f}: ok ({scn.name}: {len(scn.method)} actions, decides "
            f"{', '.join(scn.decide) or 'nothing'}{warn})"
        )
        for w in plan.warnings:
            print(f"  warning: {w}")
    return 2 if bad else 0


def _list(args: argparse.Namespace) -> int:
    if args.faults:
        from dsrconform.chaos.kinds import FAULT_CLASSES

        for kind, cls in FAULT_CLASSES.items():
            params = [n for n in cls.model_fields if n != "kind"]
            para = " ".join((cls.__doc__ or "").split("\n\n")[0].split())
            doc = para.split(". ")[0].split(": ")[0].split(" (")[0]
            print(f"{kind:<16} {', '.join(params) or '-':<32} {doc}")
        return 0
    from dsrconform.chaos.plan import load_scenario

    for path in shipped_scenarios():
        try:
            scn, _ = load_scenario(path)
        except ConfigError as e:
            print(f"{path.name}: invalid: {str(e).splitlines()[0]}")
            continue
        print(f"{scn.name:<34} {scn.description}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(scenario_schema(), indent=1))
    return 0


class _Progress:
    """Live progress of a chaos run (rich): phase, elapsed, the faults in effect, the clients'
    connections alive, the last message."""

    def __init__(self, name: str) -> None:
        from rich.console import Console
        from rich.live import Live as RichLive

        from dsrconform.chaos.traffic import Live

        self.name, self.phase, self.last = name, "starting", ""
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self.status = Live()
        self.console = Console(stderr=True)
        self.live = RichLive(
            self._render(),
            console=self.console,
            refresh_per_second=4,
            get_renderable=self._render,
            transient=True,
        )

    def _render(self) -> Any:
        from rich.text import Text

        alive = self.status.alive()
        faults = self.status.faults()
        with self.lock:
            el = time.monotonic() - self.start
            conns = "-" if alive is None else str(alive)
            now = ", ".join(faults) or "none"
            return Text(
                f"chaos {self.name} | {self.phase} | {el:5.1f} s | connections alive {conns} | "
                f"faults: {now}\n  {self.last[:110]}"
            )

    def say(self, msg: str) -> None:
        with self.lock:
            self.last = msg
        self.console.print(f"[dim]{time.monotonic() - self.start:6.1f} s[/] {msg}", highlight=False)

    def set_phase(self, phase: str) -> None:
        with self.lock:
            self.phase = phase


def _run(args: argparse.Namespace) -> int:
    from dsrconform.chaos.plan import load_scenario, plan_scenario
    from dsrconform.target import check_mutant

    scn, topo = load_scenario(args.file)
    # an unknown target, option or mutant: before any lab
    check_mutant(scn.target, args.mutant, options=scn.target_options)
    plan = plan_scenario(scn, topo)
    if args.dry_run:
        print("\n".join(plan.lines()))
        return 0
    import os

    from dsrconform.chaos.runner import run_scenario
    from dsrconform.runcli import RESULTS_ROOT, link_latest, run_directory

    if os.geteuid() != 0:
        raise ConfigError(
            "chaos run brings a lab up and needs root; fix: run it as root "
            "(or --dry-run to see the plan)"
        )
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(2), "big")
    if args.results:
        run_dir, root = Path(args.results), None
        if run_dir.exists():
            raise ConfigError(
                f"--results {run_dir}: exists; fix: a new directory (a run never "
                "writes into an earlier one)"
            )
    else:
        root = Path(RESULTS_ROOT)
        root.mkdir(exist_ok=True)
        run_dir = run_directory(root, f"{scn.target}-{scn.name}", seed)
    progress = _Progress(scn.name)
    print(f"chaos {scn.name}: seed {seed}, run directory {run_dir}", file=sys.stderr)
    try:
        with progress.live:
            result = run_scenario(
                scn,
                topo,
                run_dir=run_dir,
                seed=seed,
                backend=args.backend,
                mutant=args.mutant,
                say=progress.say,
                on_phase=progress.set_phase,
                live=progress.status,
            )
    finally:
        if root is not None and run_dir.exists():
            link_latest(root, run_dir)
    for v in result.verdicts:
        print(f"{v.requirement:<6} {v.status.value:<8} {v.message.splitlines()[0][:100]}")
    if result.execution is not None:
        for e in result.execution.errors:
            print(f"error: {e}")
    for phase, failed in result.hypothesis.items():
        for f in failed:
            print(f"steady state {phase}: {f}")
    print(f"journal: {run_dir / 'journal.jsonl'}; report: dsrconform report {run_dir}")
    return result.exit_code


def _explore(args: argparse.Namespace) -> int:
    import os

    from dsrconform.chaos.explore import explore, lab_judge, reproducer_yaml
    from dsrconform.chaos.mixes import MIXES
    from dsrconform.chaos.scenario import Scenario, Traffic
    from dsrconform.runcli import RESULTS_ROOT, link_latest, run_directory
    from dsrconform.target import check_mutant
    from dsrconform.topofile import load_topology

    if args.mix not in MIXES:
        raise ConfigError(f"--mix {args.mix}: fix: one of {', '.join(MIXES)}")
    topo = load_topology(args.lab, mode=args.mode)
    check_mutant("reference", args.mutant)
    if os.geteuid() != 0:
        raise ConfigError("chaos explore runs labs and needs root; fix: run it as root")
    root = Path(RESULTS_ROOT)
    root.mkdir(exist_ok=True)
    out = Path(args.results) if args.results else run_directory(root, "explore", args.seed)
    if out.exists():
        raise ConfigError(f"--results {out}: exists; fix: a new directory")
    out.mkdir(parents=True)
    if not args.results:
        link_latest(root, out)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    judge = lab_judge(
        args.lab,
        topo,
        seed=args.seed,
        mutant=args.mutant,
        mix=args.mix,
        results=out,
        backend=args.backend,
        say=None,
    )
    found = explore(
        topo,
        judge,
        budget=args.budget,
        seed=args.seed,
        max_faults=args.max_faults,
        span=args.span,
        max_seconds=args.max_seconds,
        say=say,
    )
    (out / "explore.log").write_text("\n".join(found.log) + "\n")
    per_min = found.runs / (found.seconds / 60) if found.seconds else 0.0
    print(f"{found.runs} schedules judged in {found.seconds:.0f} s ({per_min:.1f}/min)")
    if found.minimal is None or found.requirement is None:
        print("no MUST requirement failed within the budget")
        return 0
    mutant = f" --mutant {args.mutant}" if args.mutant else ""
    path = out / "reproducer.yaml"
    scn = Scenario(
        name="explore-reproducer",
        description=f"{found.requirement} violated, found by explore",
        lab=str(Path(args.lab).resolve()),
        mode=topo.mode,
        traffic=Traffic(mix=args.mix),
        method=found.minimal,
        decide=[found.requirement],
        expect={found.requirement: "FAIL"},
    )
    how = (
        f"Found by: dsrconform chaos explore --lab {args.lab} --budget {args.budget} "
        f"--seed {args.seed}{mutant} ({found.runs_to_first} runs to the first failure, "
        f"{found.runs} in all)\nReproduce: dsrconform chaos run {path} --seed {args.seed}"
        f"{mutant}"
    )
    path.write_text(reproducer_yaml(scn, how=how))
    print(
        f"{found.requirement} FAILs with {len(found.minimal)} fault(s) (first failing schedule "
        f"had {len(found.first or [])}); reproducer: {path}"
    )
    return 1


def add_parser(sub: Any) -> None:
    chaos = sub.add_parser("chaos", help="chaos scenarios: run, plan, list, validate")
    csub = chaos.add_subparsers(dest="chaos_command", metavar="COMMAND", required=True)
    p = csub.add_parser("run", help="run a scenario file (or --dry-run: print its timeline)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--dry-run", action="store_true", help="print the planned timeline, no lab")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="default: random, shown")
    p.add_argument("--backend", choices=("netns", "docker"), default="netns")
    p.add_argument("--mutant", default=None, metavar="NAME", help="run a mutant of the target")
    p.add_argument(
        "--results",
        default=None,
        metavar="DIR",
        help="the run directory, exactly (default: a new one under results/)",
    )
    p.set_defaults(handler=_run)
    p = csub.add_parser("list", help="the shipped scenarios, one line each")
    p.add_argument("--faults", action="store_true", help="list the fault kinds instead")
    p.set_defaults(handler=_list)
    p = csub.add_parser("validate", help="check scenario files without running them")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(handler=_validate)
    p = csub.add_parser("schema", help="print the scenario files' JSON Schema")
    p.set_defaults(handler=_schema)
    p = csub.add_parser(
        "explore",
        help="generate fault schedules, shrink a MUST violation to a reproducer scenario",
    )
    p.add_argument("--lab", required=True, metavar="FILE", help="the topology to explore")
    p.add_argument(
        "--budget",
        type=int,
        required=True,
        metavar="N",
        help="runs at most, generation and shrinking together",
    )
    p.add_argument("--seed", type=int, required=True, metavar="S")
    p.add_argument("--mutant", default=None, metavar="NAME", help="explore a mutant of the target")
    p.add_argument("--mode", default=None, help="the lab's mode (default: the file's)")
    p.add_argument("--mix", default="chaos", help="the traffic mix (default: chaos)")
    p.add_argument("--max-faults", type=int, default=3, metavar="K", help="per schedule (3)")
    p.add_argument(
        "--span", type=int, default=16, metavar="S", help="latest start of a fault, seconds (16)"
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=3600.0,
        metavar="T",
        help="no run starts after this (3600)",
    )
    p.add_argument("--backend", choices=("netns", "docker"), default="netns")
    p.add_argument("--results", default=None, metavar="DIR", help="default: results/<UTC>-...")
    p.set_defaults(handler=_explore)
