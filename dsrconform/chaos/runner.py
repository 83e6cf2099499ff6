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
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dsrconform.chaos.mixes import mix_for
from dsrconform.chaos.plan import plan_scenario
from dsrconform.chaos.scenario import Probe, Scenario
from dsrconform.chaos.schedule import Execution, Journal, signals_held
from dsrconform.errors import DsrConformError
from dsrconform.topology import Topology

if TYPE_CHECKING:
    from dsrconform.chaos.traffic import Live, SteadyRun
    from dsrconform.invariants.verdict import Verdict
    from dsrconform.lab.protocol import RunningLab
    from dsrconform.observe.observations import Observations
    from dsrconform.report.model import Attachment, Results

__all__ = ["ChaosResult", "check_probes", "run_scenario"]

HTTP_TIMEOUT = 2.0
"""Seconds each HTTP probe request may take."""
PROBE_JOIN_TIMEOUT = 60.0
"""Seconds the end of the method waits at most for a round of probes under way."""


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
    from dsrconform.chaos.traffic import traffic_clients
    from dsrconform.observe.routes import vip_next_hops

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
        scn.lab_path(),
        backend=backend,
        mode=scn.mode,
        target=scn.target,
        mutant=mutant,
        target_options=scn.target_options,
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
    live: Live | None = None,
) -> ChaosResult:
    """Run ``scn`` (see the module's docstring) and write its run directory ``run_dir``;
    ``live`` follows the faults in effect and the connections alive (live progress). An
    interrupt is raised again once the rollbacks ran and the run directory was written."""

    say = say or (lambda _m: None)
    phase = on_phase or (lambda _p: None)
    plan_scenario(scn, topo)  # refuses a timeline that cannot run, before any lab
    run_dir.mkdir(parents=True, exist_ok=False)
    journal = Journal(run_dir / "journal.jsonl")
    result = ChaosResult(scn.name, run_dir)
    started = time.time()
    journal.add("run", "start", detail=f"scenario {scn.name} seed {seed}", seed=seed)
    interrupt: BaseException | None = None
    obs: Observations | None = None
    attachments: list[Attachment] = []
    try:
        with _lab_for(scn, topo, lab, backend, mutant, say) as running:
            phase("steady state (before)")
            before = _hypothesis(running, scn, journal, result, "before")
            if before:
                say("steady state not met before the method: " + "; ".join(before))
                result.execution = Execution(errors=["steady state not met before the method"])
            else:
                done = _method(scn, running, run_dir, seed, journal, result, say, phase, live)
                obs = done.observations if done is not None else None
                phase("steady state (after)")
                _hypothesis(running, scn, journal, result, "after")
                if done is not None:  # the captures are cut while the lab (their rings) is up
                    phase("verdicts and evidence")
                    result.verdicts = _judge(scn, obs, result)
                    attachments = _evidence(done, result.verdicts, run_dir, say)
    except KeyboardInterrupt as e:
        interrupt = e
        journal.add("run", "interrupted", outcome="error", detail=str(e) or "SIGINT")
    except Exception as e:  # recorded as the run's error: its results still get written
        what = f"{type(e).__name__}: {e}"
        journal.add("run", "error", outcome="error", detail=what)
        say(f"error: {what}")
        if result.execution is None:
            result.execution = Execution()
        result.execution.errors.append(what)
    finally:
        phase("verdicts")
        with signals_held():  # the results are written whatever comes meanwhile
            if not result.verdicts or interrupt is not None:
                result.verdicts = _judge(scn, obs, result)
            result.results = _write_results(
                scn,
                topo,
                result,
                seed,
                started,
                backend,
                mutant,
                attachments,
                interrupted=interrupt is not None,
            )
            journal.add("run", "end", outcome="ok" if result.exit_code == 0 else "failed")
    if interrupt is not None:
        raise interrupt
    return result


def _hypothesis(
    lab: RunningLab, scn: Scenario, journal: Journal, result: ChaosResult, when: str
) -> list[str]:
    """The hypothesis's probes, ``when`` (before, after): what did not hold, also recorded."""
    failed = check_probes(lab, scn.steady_state.probes)
    result.hypothesis[when] = failed
    journal.add("hypothesis", when, outcome="failed" if failed else "ok", detail="; ".join(failed))
    return failed


def _method(
    scn: Scenario,
    lab: RunningLab,
    run_dir: Path,
    seed: int,
    journal: Journal,
    result: ChaosResult,
    say: Callable[[str], None],
    phase: Callable[[str], None],
    live: Live | None = None,
) -> SteadyRun | None:
    """The faults set up (before the traffic), then the traffic with the timeline and the
    rollbacks inside it, and the probes during it, with packet captures for the evidence of
    FAILs; the run (None: a setup failed, so no traffic ran)."""
    from dsrconform.chaos.traffic import run_method
    from dsrconform.report.timeline import save_timeline

    def during() -> _DuringProbes:
        phase("method")
        return _DuringProbes(lab, scn, journal, result)

    phase("setup")
    mix = mix_for(scn.traffic.mix, scn.traffic.overrides, seed)
    done, result.execution = run_method(
        lab,
        scn,
        mix,
        journal,
        out_dir=run_dir / "observations",
        progress=say,
        around=during,
        capture=True,
        live=live,
    )
    if done is None:
        return None
    phase("rollbacks done")
    save_timeline(done.observations, run_dir)
    return done


def _evidence(
    done: SteadyRun, verdicts: list[Verdict], run_dir: Path, say: Callable[[str], None]
) -> list[Attachment]:
    """The pcap windows of each FAIL (:func:`dsrconform.observe.evidence.cut_evidence`) in
    ``run_dir/evidence``; a cut that fails costs its evidence, said, not the run."""
    from dsrconform.invariants.verdict import Status
    from dsrconform.observe.evidence import cut_evidence

    out: list[Attachment] = []
    for v in verdicts:
        if v.status != Status.FAIL or not done.captures:
            continue
        try:
            out += cut_evidence(done.captures, v, run_dir / "evidence", run_dir)
        except (DsrConformError, OSError) as e:
            say(f"no pcap evidence for {v.requirement}: {type(e).__name__}: {e}")
    return out


class _DuringProbes:
    """The hypothesis's probes every ``during_every`` seconds while the method runs (from a
    thread; bounded: it stops when the block ends, within one probe round); failures go to
    ``result.hypothesis["during"]`` and the journal."""

    def __init__(
        self, lab: RunningLab, scn: Scenario, journal: Journal, result: ChaosResult
    ) -> None:
        self.lab, self.every = lab, scn.steady_state.during_every
        self.probes, self.journal, self.result = scn.steady_state.probes, journal, result
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _loop(self) -> None:
        assert self.every is not None
        failed = self.result.hypothesis.setdefault("during", [])
        while not self.stop.wait(self.every):  # the probes' schedule
            try:
                bad = check_probes(self.lab, self.probes)
            except DsrConformError as e:
                bad = [f"probe error: {type(e).__name__}: {e}"]
            self.journal.add(
                "hypothesis", "during", outcome="ok" if not bad else "failed", detail="; ".join(bad)
            )
            failed += bad

    def __enter__(self) -> _DuringProbes:
        if self.every is not None:
            self.thread = threading.Thread(target=self._loop, name="chaos-probes", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(PROBE_JOIN_TIMEOUT)


def _judge(scn: Scenario, obs: object, result: ChaosResult) -> list[Verdict]:
    from dsrconform.invariants import Observations, check_all
    from dsrconform.invariants.verdict import unknown

    failed = result.execution is not None and bool(result.execution.errors)
    if isinstance(obs, Observations) and scn.decide and not failed:
        verdicts = check_all(obs, ids=scn.decide)
        if obs.faults or not scn.method:
            return verdicts
    why = "the method did not run as written"
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
    attachments: list[Attachment],
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
        attachments=attachments,
    )
    lab_file = scn.lab_path() if scn.lab is not None else Path(topo.name or "lab")
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
