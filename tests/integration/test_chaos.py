"""Chaos scenarios on the reference stack (root): the shipped scenarios give the verdicts their
comments promise; SIGINT while faults are applied still runs every rollback and leaves the lab as
it was; ``chaos explore`` finds and shrinks a catalogued mutant's violation, and the file it
writes reproduces it in a fresh run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from dsrconform.chaos.cli import shipped_scenarios
from dsrconform.chaos.library import ServerDrain
from dsrconform.chaos.muxfaults import MuxKill
from dsrconform.chaos.netfaults import CpuStarve, LinkLoss
from dsrconform.chaos.runner import run_scenario
from dsrconform.chaos.scenario import Action, Scenario
from dsrconform.lab.faults import cpu_groups
from dsrconform.lab.lab import Lab
from dsrconform.observe.routes import vip_next_hops
from dsrconform.report.model import load_results
from dsrconform.topofile import load_topology
from tests.markers import requires_root
from tests.waiting import wait_for

pytestmark = requires_root
REPO = Path(__file__).resolve().parents[2]
BASIC = REPO / "labs" / "basic.yaml"


def chaos_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dsrconform.cli", "chaos", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def statuses(run_dir: Path) -> dict[str, str]:
    return {r: row.status.value for r, row in load_results(run_dir).requirements.items()}


CI_SCENARIOS = ("gateway-naive-per-mux-vips",)
"""Shipped scenarios ``make test`` proves (short, and one FAIL shown with its evidence); the
others are ``make proof``'s (about a minute each: 8 of them would take a third of CI's time)."""


def _shipped() -> list[Any]:
    return [
        pytest.param(p, id=p.stem, marks=() if p.stem in CI_SCENARIOS else pytest.mark.proof)
        for p in shipped_scenarios()
    ]


@pytest.mark.parametrize("path", _shipped())
def test_each_shipped_scenario_gives_the_verdicts_its_comment_promises(
    path: Path, tmp_path: Path
) -> None:
    promised = yaml.safe_load(path.read_text())["expect"]
    out = tmp_path / "run"
    res = chaos_cli("run", str(path), "--seed", "1", "--results", str(out))
    got = statuses(out)
    assert got == promised, f"{path.name}: rc {res.returncode}\n{res.stdout}\n{res.stderr[-3000:]}"
    assert res.returncode == (0 if set(promised.values()) == {"PASS"} else 1)
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    assert journal[-1]["event"] == "end"
    assert [e for e in journal if e["phase"] == "rollback"][-1]["outcome"] == "ok"
    failed = [r for r, st in promised.items() if st == "FAIL"]
    attachments = {a.requirement for t in load_results(out).tests for a in t.attachments}
    assert set(failed) <= attachments, "every FAIL has its pcap evidence"


def _snapshot(lab: Lab) -> dict[str, Any]:
    """What a fault could leave changed: links up/down, nftables tables, process counts, the
    router's VIP routes, the backend sets, the lab's CPU cgroups."""
    state: dict[str, Any] = {}
    for node in lab.topology.nodes:
        ns = lab.netns(node)
        links = json.loads(
            subprocess.run(
                ["ip", "-j", "-n", ns, "link"], capture_output=True, text=True, check=True
            ).stdout
        )
        nft = subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "list", "tables"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        state[node] = {
            "links": sorted((link["ifname"], "UP" in link["flags"]) for link in links),
            "nft": sorted(nft.split("\n")),
            "processes": len(lab.processes(node)),
        }
    state["routes"] = vip_next_hops(lab)
    assert lab.deployment is not None
    state["backends"] = {s.name: lab.deployment.backends(s.name) for s in lab.topology.services}
    state["cgroups"] = sorted(p.name for p in cpu_groups() if lab.name in p.name)
    return state


def test_sigint_while_faults_are_applied_runs_every_rollback_and_leaves_the_lab_as_it_was(
    tmp_path: Path,
) -> None:
    topo = load_topology(BASIC)
    faults = [
        Action(id="kill", fault=MuxKill(node="mux2"), at=1),
        Action(id="loss", fault=LinkLoss(a="client", b="router", percent=5), at=1.2),
        Action(id="cpu", fault=CpuStarve(node="server1", cpus=0.2), at=1.4),
        Action(id="drain", fault=ServerDrain(service="web", server="server3"), at=1.6),
    ]  # all lasting, no duration: applied until the rollbacks
    scn = Scenario(
        name="sigint", lab=str(BASIC), traffic={"mix": "quick"}, method=faults, decide=["MF-1"]
    )
    run_dir = tmp_path / "run"
    journal = run_dir / "journal.jsonl"

    def invoked() -> int:
        if not journal.exists():
            return 0
        entries = [json.loads(line) for line in journal.read_text().splitlines()]
        return sum(e["event"] == "invoke" and e["outcome"] == "done" for e in entries)

    with Lab.up(BASIC, name=f"cs{os.getpid() % 10000}") as lab:
        before = _snapshot(lab)

        def interrupt_once_all_applied() -> None:
            wait_for(lambda: invoked() == len(faults), 60, "every fault applied")
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, to this (the main) thread's handler

        watcher = threading.Thread(target=interrupt_once_all_applied, daemon=True)
        watcher.start()
        with pytest.raises(KeyboardInterrupt):
            run_scenario(scn, topo, run_dir=run_dir, seed=1, lab=lab)
        watcher.join(5)
        entries = [json.loads(line) for line in journal.read_text().splitlines()]
        reverted = [
            e["action"] for e in entries if e["event"] == "revert" and e["outcome"] == "done"
        ]
        assert reverted == ["drain", "cpu", "loss", "kill"]  # the last invoked first
        assert any(e["event"] == "interrupted" for e in entries)
        assert _snapshot(lab) == before
    results = load_results(run_dir)
    assert results.run.exit_status == 2
    assert results.tests[0].outcome == "error"
    assert {r.status.value for r in results.requirements.values()} == {"UNKNOWN"}


@pytest.mark.proof  # two lab runs (~1 minute): `make proof`
def test_explore_shrinks_a_mutant_violation_and_its_file_reproduces_it(tmp_path: Path) -> None:
    out = tmp_path / "explore"
    res = chaos_cli(
        "explore",
        "--lab",
        str(BASIC),
        "--budget",
        "3",
        "--seed",
        "1",
        "--mutant",
        "no-conn-table",
        "--max-faults",
        "2",
        "--mix",
        "quick",
        "--span",
        "3",
        "--results",
        str(out),
        timeout=900,
    )
    assert res.returncode == 1, res.stdout + res.stderr[-3000:]
    reproducer = out / "reproducer.yaml"
    scn = yaml.safe_load(reproducer.read_text())
    (req,) = scn["decide"]
    assert scn["expect"] == {req: "FAIL"} and req.startswith(("SC-", "MF-", "AF-", "RW-"))
    assert 1 <= len(scn["method"]) <= 2
    again = tmp_path / "again"
    rerun = chaos_cli(
        "run", str(reproducer), "--seed", "1", "--mutant", "no-conn-table", "--results", str(again)
    )
    assert statuses(again) == {req: "FAIL"}, rerun.stdout + rerun.stderr[-3000:]
    assert rerun.returncode == 1
