"""Running a chaos scenario end to end: lab, steady-state hypothesis, traffic with the method's
faults, rollbacks, verdicts, and a run directory in the results model.

:func:`run_scenario` brings the scenario's lab up (or uses one given), checks the hypothesis's
probes (not met: no fault is injected, and what the scenario decides is UNKNOWN), runs the
traffic mix with :func:`dsrconform.chaos.schedule.execute` as its fault, checks the probes again
after the rollbacks, judges the requirements the scenario decides on the run's observations,
and writes to its run directory: ``results.json`` (one test, ``chaos::<name>``, in the model of
:mod:`dsrconform.report.model`, so ``dsrconform report`` and ``gate`` read it like a suite's),
``journal.jsonl`` (every step), ``timeline.json`` and the observations.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dsrconform.chaos.mixes import mix_for
from dsrconform.chaos.plan import plan_scenario
from dsrconform.chaos.scenario import Probe, Scenario
from dsrconform.chaos.schedule import Execution, Journal, execute
from dsrconform.errors import DsrConformError
from dsrconform.observe.observations import FaultWindow
from dsrconform.topology import Topology

if TYPE_CHECKING:
    from dsrconform.invariants.verdict import Verdict
    from dsrconform.lab.protocol import RunningLab
    from dsrconform.report.model import Results

__all__ = ["ChaosResult", "check_probes", "run_scenario"]

HTTP_TIMEOUT = 2.0
"""Seconds each HTTP probe request may take."""


@dataclass
class ChaosResult:
    scenario: str
    run_dir: Path
    verdicts: list[Verdict] = field(default_factory=list)
    execution: Execution | None = None
    hypothesis: dict[str, list[str]] = field(default_factory=dict)
    """Phase (before, during, after) -> the probes that did not hold."""
    results: Results | None = None

    @property
    def exit_code(self) -> int:
        """0: every decided requirement PASSed, the hypothesis held and the rollbacks ran
        clean; 1 otherwise."""
        from dsrconform.invariants.verdict import Status

        bad = any(v.status != Status.PASS for v in self.verdicts)
        broken = self.execution is None or not self.execution.ok
        return 1 if bad or broken or any(self.hypothesis.values()) else 0


def check_probes(lab: RunningLab, probes: list[Probe]) -> list[str]:
    """Each probe that does not hold, with what was seen (empty: all hold)."""
    from dsrconform.observe.routes import vip_next_hops
    from dsrconform.steady import traffic_clients

    topo = lab.topology
    failed: list[str] = []
    for p in probes:
        if p.probe == "routes":
            hops = vip_next_hops(lab)
            short = {v: h for v, h in hops.items() if len(h) < p.min_next_hops}
            if short:
                failed.append(f"routes: fewer than {p.min_next_hops} next hops for {short}")
            continue
        svc = next(
            (s for s in topo.services if s.proto == "tcp" and p.service in (None, s.name)), None
        )
        if svc is None:
            failed.append(f"http: no TCP service {p.service or ''} in lab {topo.name}")
            continue
        client = traffic_clients(topo)[0]
        url = f"http://{svc.vip}:{svc.port}/id"
        argv = [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            str(HTTP_TIMEOUT),
            url,
        ]
        ok = 0
        for _ in range(p.requests):
            res = lab.run(client, argv, timeout=HTTP_TIMEOUT + 3, check=False)
            ok += res.returncode == 0 and res.stdout.strip() == "200"
        if ok < p.min_success * p.requests:
            failed.append(
                f"http: {ok}/{p.requests} requests to {url} succeeded "
                f"(at least {p.min_success:.0%} asked)"
            )
    return failed


@contextmanager
def _lab_for(
    scn: Scenario,
    topo: Topology,
    lab: RunningLab | None,
    backend: str,
    mutant: str | None,
    say: Callable[[str], None],
) -> Iterator[RunningLab]:
    if lab is not None:
        yield lab
        return
    from dsrconform.lab.lab import Lab

    say(f"bringing lab {topo.name} up ({backend}, {topo.mode}, target {scn.target})")
    with Lab.up(
        scn.lab_path(), backend=backend, mode=scn.mode, target=scn.target, mutant=mutant
    ) as up:
        yield up


def run_scenario(
    scn: Scenario,
    topo: Topology,
    *,
    run_dir: Path,
    seed: int = 1,
    backend: str = "netns",
    mutant: str | None = None,
    lab: RunningLab | None = None,
    say: Callable[[str], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> ChaosResult:
    """Run ``scn`` (see the module's docstring) and write its run directory ``run_dir``. An
    interrupt is raised again once the rollbacks ran and the run directory was written."""
    from dsrconform.steady import observe_steady_state

    say = say or (lambda _m: None)
    phase = on_phase or (lambda _p: None)
    plan_scenario(scn, topo)  # refuses a timeline that cannot run, before any lab
    run_dir.mkdir(parents=True, exist_ok=False)
    journal = Journal(run_dir / "journal.jsonl")
    result = ChaosResult(scn.name, run_dir)
    started = time.time()
    journal.add("run", "start", detail=f"scenario {scn.name} seed {seed}", seed=seed)
    interrupt: BaseException | None = None
    obs = None
    try:
        with _lab_for(scn, topo, lab, backend, mutant, say) as running:
            phase("steady state (before)")
            before = check_probes(running, scn.steady_state.probes)
            result.hypothesis["before"] = before
            journal.add(
                "hypothesis",
                "before",
                outcome="ok" if not before else "failed",
                detail="; ".join(before),
            )
            if before:
                say("steady state not met before the method: " + "; ".join(before))
                result.execution = Execution(errors=["steady state not met before the method"])
            else:
                mix = mix_for(scn.traffic.mix, scn.traffic.overrides, seed)

                def method(lab_: RunningLab, say_: Callable[[str], None]) -> list[FaultWindow]:
                    phase("method")
                    timed = [a.timed(i) for i, a in enumerate(scn.method)]
                    result.execution = execute(lab_, timed, journal, say_)
                    phase("rollbacks done; traffic finishing")
                    return result.execution.windows

                run = observe_steady_state(
                    running,
                    mix,
                    out_dir=run_dir / "observations",
                    progress=say,
                    fault=method,
                    capture=False,
                )
                obs = run.observations
                from dsrconform.report.timeline import save_timeline

                save_timeline(obs, run_dir)
                phase("steady state (after)")
                after = check_probes(running, scn.steady_state.probes)
                result.hypothesis["after"] = after
                journal.add(
                    "hypothesis",
                    "after",
                    outcome="ok" if not after else "failed",
                    detail="; ".join(after),
                )
    except KeyboardInterrupt as e:
        interrupt = e
        journal.add("run", "interrupted", outcome="error", detail=str(e) or "SIGINT")
    except DsrConformError as e:
        journal.add("run", "error", outcome="error", detail=f"{type(e).__name__}: {e}")
        if result.execution is None:
            result.execution = Execution()
        result.execution.errors.append(f"{type(e).__name__}: {e}")
    finally:
        phase("verdicts")
        result.verdicts = _judge(scn, obs, result)
        result.results = _write_results(
            scn, topo, result, seed, started, backend, mutant, interrupted=interrupt is not None
        )
        journal.add("run", "end", outcome="ok" if result.exit_code == 0 else "failed")
    if interrupt is not None:
        raise interrupt
    return result


def _judge(scn: Scenario, obs: object, result: ChaosResult) -> list[Verdict]:
    from dsrconform.invariants import Observations, check_all
    from dsrconform.invariants.verdict import unknown

    if isinstance(obs, Observations) and scn.decide:
        verdicts = check_all(obs, ids=scn.decide)
        if obs.faults or not scn.method:
            return verdicts
    why = "the method did not run"
    if result.execution is not None and result.execution.errors:
        why += ": " + "; ".join(result.execution.errors)
    return [unknown(r, [why]) for r in scn.decide]


def _write_results(
    scn: Scenario,
    topo: Topology,
    result: ChaosResult,
    seed: int,
    started: float,
    backend: str,
    mutant: str | None,
    *,
    interrupted: bool,
) -> Results:
    from datetime import UTC, datetime

    from dsrconform.report.environment import environment, file_sha256
    from dsrconform.report.model import (
        RESULTS_FILE,
        Outcome,
        Results,
        RunInfo,
        TestResult,
        decide_requirements,
        decide_test,
    )

    ex = result.execution
    problems = [*(ex.errors if ex else ["the method did not run"])]
    problems += [f"hypothesis {k}: {'; '.join(v)}" for k, v in result.hypothesis.items() if v]
    outcome: Outcome = (
        "error"
        if interrupted or (ex is not None and ex.errors)
        else ("failed" if result.exit_code else "passed")
    )
    why = "; ".join(problems)
    test = TestResult(
        nodeid=f"chaos::{scn.name}",
        outcome=outcome,
        requirements=list(scn.decide),
        message=why,
        duration=time.time() - started,
        platform=f"{backend}-{topo.mode}",
        scenario=scn.name,
        run_dir=".",
        verdicts=result.verdicts,
        decisions=decide_test(scn.decide, result.verdicts, outcome, why),
    )
    lab_file = scn.lab_path()
    src = scn._source
    run = RunInfo(
        seed=seed,
        target=scn.target,
        mutant=mutant,
        lab=str(lab_file),
        lab_sha256=file_sha256(lab_file),
        backends=[backend],
        modes=[topo.mode],
        platforms=[f"{backend}-{topo.mode}"],
        level="MUST",
        requirements_asked=list(scn.decide),
        profile=f"chaos:{scn.name}",
        started=datetime.fromtimestamp(started, UTC),
        stopped=datetime.now(UTC),
        exit_status=2 if interrupted else result.exit_code,
        replay=shlex.join(
            ["dsrconform", "chaos", "run", str(src or scn.name), "--seed", str(seed)]
        ),
        environment=environment(),
    )
    results = Results(run=run, tests=[test], requirements=decide_requirements([test]))
    (result.run_dir / RESULTS_FILE).write_text(results.model_dump_json(indent=1) + "\n")
    return results
