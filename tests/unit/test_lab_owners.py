"""Lab owners without root: which labs ``lab down --all`` and the next ``lab up`` remove, given
records and live pids, and what ``lab down``/``lab exec`` say about labs that are not there.

The machine is faked: records in a temporary ``RUN_DIR``, namespaces as empty files in a
temporary ``NETNS_DIR``, no Docker engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from dsrconform import cli
from dsrconform.lab import registry
from dsrconform.lab.registry import ALIVE, DEAD, DETACHED, UNRECORDED, LabRecord


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


class Machine:
    def __init__(self, tmp: Path) -> None:
        self.run_dir = tmp / "labs"
        self.netns_dir = tmp / "netns"
        self.run_dir.mkdir()
        self.netns_dir.mkdir()

    def record(self, name: str, owner: int, *, detached: bool | None = False) -> None:
        data = {
            "name": name,
            "topology": "labs/basic.yaml",
            "backend": "netns",
            "mode": "encap",
            "target": "reference",
            "mutant": None,
            "owner_pid": owner,
            "created": time.time(),
            "nodes": {},
            "info": {},
        }
        if detached is not None:  # None: a record written before owners were tracked
            data["detached"] = detached
            data["owner_start"] = registry.process_start(owner)
        (self.run_dir / f"{name}.json").write_text(json.dumps(data))
        (self.run_dir / name).mkdir()

    def namespaces(self, lab: str, *nodes: str) -> None:
        for node in nodes:
            (self.netns_dir / registry.ns_name(lab, node)).touch()

    def labs_left(self) -> set[str]:
        recorded = {p.stem for p in self.run_dir.glob("*.json")}
        return recorded | {registry.lab_of_ns(p.name) or "" for p in self.netns_dir.iterdir()}


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Machine:
    from pyroute2 import netns

    m = Machine(tmp_path)
    monkeypatch.setattr(registry, "RUN_DIR", m.run_dir)
    monkeypatch.setattr(registry, "NETNS_DIR", m.netns_dir)
    monkeypatch.setattr(registry, "_docker_containers", lambda lab: [])
    monkeypatch.setattr(registry, "_docker_containers_by_lab", lambda: {}, raising=False)
    monkeypatch.setattr(netns, "remove", lambda name: (m.netns_dir / name).unlink())
    return m


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- the decisions, pure --------------------------------------------------------------------


def _rec(name: str, detached: bool | None) -> LabRecord:
    return LabRecord(
        name=name,
        topology="",
        backend="netns",
        mode="encap",
        target="reference",
        mutant=None,
        owner_pid=1,
        created=0.0,
        detached=detached,
    )


RECORDS: dict[str, LabRecord | None] = {
    "live": _rec("live", False),
    "livekept": _rec("livekept", True),  # Lab.up(keep=True) while its session runs
    "crashed": _rec("crashed", False),
    "detached": _rec("detached", True),  # `lab up`: its owner exits on purpose
    "legacy": _rec("legacy", None),
    "orphan": None,  # namespaces without a record
}
ALIVE_OWNERS = {"live", "livekept"}


def alive(rec: LabRecord) -> bool:
    return rec.name in ALIVE_OWNERS


def test_owner_states() -> None:
    states = {lab: registry.owner_state(rec, alive) for lab, rec in RECORDS.items()}
    assert states == {
        "live": ALIVE,
        "livekept": ALIVE,
        "crashed": DEAD,
        "detached": DETACHED,
        "legacy": DETACHED,
        "orphan": UNRECORDED,
    }


def test_down_all_removes_every_lab_whose_owner_is_gone_and_skips_the_live_ones() -> None:
    plan = registry.plan_down_all(RECORDS, RECORDS, alive=alive)
    assert sorted(plan.remove) == ["crashed", "detached", "legacy", "orphan"]
    assert plan.skip == ["live", "livekept"]
    forced = registry.plan_down_all(RECORDS, RECORDS, alive=alive, force=True)
    assert sorted(forced.remove) == sorted(RECORDS) and forced.skip == []


def test_lab_up_reaps_only_labs_whose_owner_died_without_tearing_them_down() -> None:
    assert registry.plan_reap_dead(RECORDS, alive=alive) == ["crashed"]


def test_an_owner_is_the_process_that_started_with_its_pid() -> None:
    me = os.getpid()
    start = registry.process_start(me)
    assert start is not None
    rec = _rec("x", False)
    for pid, started, expected in [
        (me, start, True),
        (me, None, True),  # no start time recorded: the pid alone
        (me, start + 1, False),  # the pid now belongs to another process
        (dead_pid(), None, False),
    ]:
        rec.owner_pid, rec.owner_start = pid, started
        assert registry.owner_alive(rec) is expected, (pid, started)


def test_a_zombie_owner_is_dead() -> None:
    proc = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while registry.pid_running(proc.pid):  # exits, unreaped: a zombie
        assert time.monotonic() < deadline
        time.sleep(0.01)  # polling the child's exit, bounded by the deadline
    assert Path(f"/proc/{proc.pid}").exists()
    rec = _rec("x", False)
    rec.owner_pid = proc.pid
    assert not registry.owner_alive(rec)
    proc.wait()


def test_a_record_loads_whatever_keys_it_has(machine: Machine) -> None:
    machine.record("hcold", dead_pid(), detached=None)
    rec = LabRecord.load("hcold")
    assert rec is not None and rec.detached is None and rec.owner_start is None
    assert registry.owner_state(rec) == DETACHED, "an old record's lab is never reaped unasked"
    data = json.loads((machine.run_dir / "hcold.json").read_text())
    (machine.run_dir / "hcold.json").write_text(json.dumps({**data, "from_the_future": 1}))
    assert LabRecord.load("hcold") is not None


def test_throwaway_owner() -> None:
    assert registry.throwaway_owner("dsrc-doctor-1234-0") == 1234
    assert registry.throwaway_owner("dsrc-basic.router") is None


# --- on a faked machine ---------------------------------------------------------------------


def test_down_all_leaves_the_labs_whose_owner_runs(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.record("hclive", os.getpid())
    machine.namespaces("hclive", "router", "client")
    machine.record("hcdead", dead_pid())
    machine.namespaces("hcdead", "router")
    machine.record("hcup", dead_pid(), detached=True)
    machine.namespaces("hcorph", "router")
    code, out, err = run(capsys, "lab", "down", "--all")
    assert code == 0, err
    assert machine.labs_left() == {"hclive"}
    assert f"skipped lab hclive: owner pid {os.getpid()}" in out and "is alive" in out, out
    assert "--force" in out
    code, out, err = run(capsys, "lab", "down", "--all", "--force")
    assert code == 0, err
    assert machine.labs_left() == set()


def test_lab_up_reaps_the_labs_of_dead_owners(machine: Machine) -> None:
    owner = dead_pid()
    machine.record("hcdead", owner)
    machine.namespaces("hcdead", "router", "mux1")
    machine.record("hclive", os.getpid())
    machine.record("hcup", dead_pid(), detached=True)
    machine.record("hcold", dead_pid(), detached=None)
    said = registry.reap_dead()
    assert machine.labs_left() == {"hclive", "hcup", "hcold"}
    assert said == [f"lab hcdead (owner pid {owner} is gone: 2 namespaces)"], said


def test_down_of_an_unknown_lab_is_a_config_error_naming_the_labs(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.record("hca", os.getpid())
    machine.namespaces("hca", "router")
    machine.namespaces("hcb", "router")
    code, out, err = run(capsys, "lab", "down", "hcnope")
    assert code == 2, out + err
    assert "no lab 'hcnope'" in err and "hca, hcb" in err, err
    assert machine.labs_left() == {"hca", "hcb"}


def test_exec_with_several_labs_up_asks_which(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    machine.namespaces("hca", "client")
    machine.namespaces("hcb", "client")
    code, _, err = run(capsys, "lab", "exec", "client", "--", "true")
    assert code == 2
    assert "several labs are up (hca, hcb)" in err, err
    assert "dsrconform lab exec --name LAB client -- true" in err, err


def test_a_record_alone_is_not_a_lab_that_is_up(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record without namespaces (what a crash leaves) does not make `lab exec` ask which
    lab: with one lab up, the command goes to it."""
    machine.namespaces("hca", "client")
    machine.record("hczz", dead_pid())
    code, _, err = run(capsys, "lab", "exec", "nosuchnode", "--", "true")
    assert code == 2
    assert "lab hca has no node 'nosuchnode'" in err, err
