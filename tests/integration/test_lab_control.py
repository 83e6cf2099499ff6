"""Faults and backend changes on a lab brought up by ``dsrconform lab up``, each from its own
process (``lab fault``, ``lab backends``) through the lab's controller; then ``lab down`` leaves
nothing. And a controller killed with SIGKILL leaves a lab that ``lab down --all`` removes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dsrconform.lab import ctlproto, registry
from dsrconform.lab.faultcli import controller_of
from dsrconform.observe.routes import vip_next_hops
from dsrconform.topofile import load_topology
from tests.markers import requires_root
from tests.waiting import wait_for

pytestmark = requires_root
REPO = Path(__file__).resolve().parents[2]
BASIC = REPO / "labs" / "basic.yaml"
MUX1, MUX2 = "198.18.10.1", "198.18.10.5"  # their addresses toward the router (basic.yaml)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dsrconform.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def ok(*args: str) -> str:
    res = cli(*args)
    assert res.returncode == 0, f"{' '.join(args)}: exit {res.returncode}: {res.stderr}"
    return res.stdout


def routes(name: str) -> dict[str, list[str]]:
    """The router's usable next hops per VIP, read from its FIB (observe/routes.py)."""
    lab = SimpleNamespace(
        topology=load_topology(BASIC), netns=lambda node: registry.ns_name(name, node)
    )
    return vip_next_hops(lab)


def controller_status(name: str) -> dict[str, Any]:
    (st,) = json.loads(ok("lab", "status", name, "--json"))
    assert st["controller"] and "error" not in st["controller"], st["controller"]
    return dict(st["controller"])


def leftovers(name: str, pid: int) -> list[str]:
    left = [f"namespace {ns}" for ns in registry.lab_namespaces(name)]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left += [f"ip netns: {ln}" for ln in netns.splitlines() if ln.startswith(f"dsrc-{name}.")]
    if registry.pid_running(pid):
        left.append(f"controller pid {pid}")
    for path in (
        ctlproto.socket_path(name),
        registry.lab_dir(name),
        registry.RUN_DIR / f"{name}.json",
    ):
        if path.exists():
            left.append(str(path))
    return left


def up(name: str) -> int:
    """``lab up`` in a subprocess; returns the controller's pid (the lab's recorded owner)."""
    out = ok("lab", "up", "labs/basic.yaml", "--name", name)
    assert f"lab {name} is up" in out and f"dsrconform lab fault {name}" in out, out
    rec = registry.LabRecord.load(name)
    assert rec is not None and "controller" in rec.info, rec
    assert registry.owner_alive(rec), "the controller is not running"
    assert ctlproto.socket_path(name).is_socket()
    return rec.owner_pid


def test_faults_and_backends_from_other_processes() -> None:
    name = f"ctl{os.getpid() % 100000}"
    pid = up(name)
    try:
        full = routes(name)
        assert full["198.19.0.10"] == [MUX1, MUX2], full

        # Backends: show, drain a server, bring it back.
        assert "active server1,server2,server3; draining -" in ok("lab", "backends", name, "web")
        out = ok("lab", "backends", name, "web", "--drain", "server2")
        assert "after:  active server1,server3; draining server2" in out, out
        out = ok("lab", "backends", name, "web", "--active", "server1,server2,server3")
        assert "before: active server1,server3; draining server2" in out, out
        assert "after:  active server1,server2,server3; draining -" in out, out

        # Kill a MUX: its routes go; restart it: the target re-deploys it, its routes return.
        assert "kill mux2" in ok("lab", "fault", name, "mux2", "kill")
        wait_for(lambda: all(MUX2 not in h for h in routes(name).values()), 10, "mux2 withdrawn")
        assert controller_status(name)["killed"] == ["mux2"]
        assert "restart mux2" in ok("lab", "fault", name, "mux2", "restart")
        wait_for(lambda: routes(name) == full, 30, "the VIP routes back over mux2")

        ok("lab", "fault", name, "mux1", "pause")  # (its BIRD answers no `lab status` query)
        assert ctlproto.call(name, {"op": "status"})["result"]["paused"] == ["mux1"]
        ok("lab", "fault", name, "mux1", "resume")
        assert controller_status(name)["paused"] == []

        # 100 % loss between mux1 and the router: BGP's hold timer (3 s) withdraws mux1.
        out = ok("lab", "fault", name, "mux1", "loss", "100", "--peer", "router")
        assert f"lift it: dsrconform lab fault {name} mux1 undo 1" in out, out
        (fault,) = controller_status(name)["faults"]
        assert fault["id"] == 1 and fault["node"] == "mux1", fault
        assert "impair 1: 100 % loss between mux1 and router" in ok("lab", "status", name)
        wait_for(lambda: all(MUX1 not in h for h in routes(name).values()), 15, "mux1 withdrawn")
        assert "lifted impair 1" in ok("lab", "fault", name, "mux1", "undo", "1")
        assert controller_status(name)["faults"] == []
        wait_for(lambda: routes(name) == full, 30, "the VIP routes back over mux1")

        # What is wrong is named, exit 2; the lab is unchanged.
        bad = cli("lab", "fault", name, "mux9", "kill")
        assert bad.returncode == 2 and "no node 'mux9'" in bad.stderr, bad.stderr
        bad = cli("lab", "backends", name, "nosvc")
        assert bad.returncode == 2 and "unknown service 'nosvc'" in bad.stderr, bad.stderr
        bad = cli("lab", "fault", name, "mux1", "undo", "7")
        assert bad.returncode == 2 and "no impairment or CPU limit 7" in bad.stderr, bad.stderr

        events = [json.loads(ln) for ln in ctlproto.events_path(name).read_text().splitlines()]
        actions = [
            "up",
            "backends",
            "backends",
            "kill",
            "restart",
            "pause",
            "resume",
            "impair",
            "unimpair",
        ]
        assert [e["action"] for e in events] == actions
        assert all(e["t"] > 0 and e["wall"] > 1.6e9 for e in events)
        assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    finally:
        down = cli("lab", "down", name)
    assert down.returncode == 0, down.stderr
    wait_for(lambda: not leftovers(name, pid), 5, "nothing of the lab left")


def test_a_controller_killed_with_sigkill_leaves_a_lab_lab_down_all_removes() -> None:
    name = f"ctk{os.getpid() % 100000}"
    pid = up(name)
    try:
        daemons = list(registry.pids_in_namespaces(registry.lab_namespaces(name)))
        assert len(daemons) >= 6, daemons
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not registry.pid_running(pid), 5, "the controller's exit")
        wait_for(lambda: not any(registry.pid_running(p) for p in daemons), 5, "its daemons' exit")
        rec = registry.LabRecord.load(name)
        assert registry.owner_state(rec) == registry.DEAD
        bad = cli("lab", "fault", name, "mux1", "kill")
        assert bad.returncode == 2 and "has no controller" in bad.stderr, bad.stderr
        records = {lab: registry.LabRecord.load(lab) for lab in registry.labs_up()}
        plan = registry.plan_down_all(list(records), records)
        others = [lab for lab in plan.remove if lab != name]
        others += [lab for lab in records if lab != name and controller_of(lab) is not None]
        if others:
            pytest.skip(f"lab down --all would also remove labs of others: {others}")
        out = ok("lab", "down", "--all")
        assert "9 namespaces" in out, out
    finally:
        if registry.lab_namespaces(name):
            cli("lab", "down", name)
    assert not leftovers(name, pid)
