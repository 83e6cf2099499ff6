"""The lab environment's readiness wait notices a daemon that exited (no privileges: the
lab is a stand-in, the daemons are real processes of this test)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dsrconform.errors import LabError
from dsrconform.lab.registry import pid_running
from dsrconform.topofile import load_topology

BASIC = Path(__file__).resolve().parents[2] / "labs" / "basic.yaml"
TRUE = shutil.which("true") or "/bin/true"


def zombie() -> int:
    """A child that has exited and is not reaped yet (as a lab daemon is, once it died)."""
    pid = os.posix_spawn(TRUE, [TRUE], dict(os.environ))
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z":
        assert time.monotonic() < deadline, "the child did not exit within 10 s"
        time.sleep(0.01)  # waiting for the child's exit, bounded by the deadline
    return pid


def test_pid_running_tells_live_from_exited_and_reaped() -> None:
    assert pid_running(os.getpid())
    pid = zombie()
    try:
        assert Path(f"/proc/{pid}").exists() and not pid_running(pid)  # a zombie is not running
    finally:
        os.waitpid(pid, 0)
    assert not pid_running(pid)  # reaped: gone


def deployment(tmp_path: Path, pids: dict[str, int]) -> Any:
    from dsrconform.lab.environment import Environment

    topo = load_topology(BASIC)
    spawned = iter(pids.items())

    def spawn(node: str, argv: list[str], *, log: str) -> int:
        return next(spawned)[1]

    lab = SimpleNamespace(name="t", topology=topo, dir=tmp_path, spawn=spawn, python="python3")
    dep = Environment(lab)  # type: ignore[arg-type]
    for log in pids:
        node = log.removesuffix(".log").split("-", 1)[1]
        dep._spawn(node, ["x"], log=log)
    dep.ready_files.append(tmp_path / "app-server1.ready")  # never written: not ready
    dep.vip_routes = lambda: {}  # type: ignore[method-assign]  # no route yet: not converged
    return dep


def test_wait_ready_names_the_daemon_that_exited_with_its_log(tmp_path: Path) -> None:
    dead = zombie()
    try:
        (tmp_path / "bird-mux1.log").write_text("bird: starting\nbird: /x.conf:3 syntax error\n")
        dep = deployment(tmp_path, {"app-server1.log": os.getpid(), "bird-mux1.log": dead})
        with pytest.raises(LabError) as e:
            dep.wait_ready(timeout=5)
    finally:
        os.waitpid(dead, 0)
    msg = str(e.value)
    assert "cannot get ready: bird on mux1 exited" in msg and "syntax error" in msg
    assert "app on server1" not in msg  # the live one is not blamed


def test_wait_ready_times_out_when_every_daemon_lives(tmp_path: Path) -> None:
    dep = deployment(tmp_path, {"app-server1.log": os.getpid()})
    with pytest.raises(LabError, match=r"not ready after 0 s: apps not listening: \['app-server1"):
        dep.wait_ready(timeout=0.2)
