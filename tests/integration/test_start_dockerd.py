"""``scripts/start-dockerd.sh`` (root): the engine it starts holds none of the caller's open
files, and its pid file never names a process that is gone.

The first tests run the script with a fake ``docker`` and ``dockerd`` first on ``PATH`` (and
their own pid file and log), so they never touch a real engine; the last one starts the real
engine, only when none answers, and stops it by its pid file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.markers import docker_engine_reachable, requires_root

pytestmark = requires_root
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "start-dockerd.sh"

FAKE_DOCKERD = """#!/bin/bash
# A dockerd that answers (through the fake docker) once it has started, or fails at start.
echo $$ >"$FAKE_DIR/pid"
if [[ -n ${FAKE_DIE:-} ]]; then echo "fake dockerd: bad configuration"; exit 1; fi
touch "$FAKE_DIR/up"
trap 'exit 0' TERM
while :; do sleep 0.05; done
"""
FAKE_DOCKER = """#!/bin/bash
[[ $1 == info && -e $FAKE_DIR/up ]]
"""


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A directory with the fakes and the environment that puts them first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("dockerd", FAKE_DOCKERD), ("docker", FAKE_DOCKER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_DIR": str(tmp_path),
        "DOCKERD_PIDFILE": str(tmp_path / "dockerd.pid"),
        "DOCKERD_LOG": str(tmp_path / "dockerd.log"),
        "DOCKERD_WAIT": "5",
    }
    yield tmp_path, env
    pid_file = tmp_path / "pid"
    if pid_file.exists():  # the fake dockerd, if it still runs
        _stop(int(pid_file.read_text()))


def _stop(pid: int, deadline_s: float = 30) -> None:
    """SIGTERM ``pid`` and wait, bounded, until it is gone (it is not our child)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + deadline_s
    while Path(f"/proc/{pid}").exists() and _state(pid) not in ("Z", "X"):
        assert time.monotonic() < end, f"pid {pid} still runs {deadline_s} s after SIGTERM"
        time.sleep(0.05)  # polling the process's exit, bounded by the deadline


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return "X"


def _run_holding(lock: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the script from a shell that holds ``lock`` open on fd 9 (as a caller taking a
    lock with ``flock 9`` does)."""
    argv = ["bash", "-c", f'exec 9>>"{lock}"; exec "{SCRIPT}"']
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=90)


def _fds(pid: int) -> dict[int, str]:
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
    return out


def test_the_engine_holds_no_descriptor_of_the_caller_and_its_pid_file_names_it(
    fake: tuple[Path, dict[str, str]],
) -> None:
    tmp, env = fake
    lock = tmp / "caller.lock"
    res = _run_holding(lock, env)
    assert res.returncode == 0, res.stdout + res.stderr
    pid = int((tmp / "pid").read_text())
    assert (tmp / "dockerd.pid").read_text().strip() == str(pid), "pid file names another pid"
    fds = _fds(pid)
    assert str(lock) not in fds.values(), f"dockerd holds the caller's lock file: {fds}"
    # Beyond stdin/stdout/stderr, only bash's own descriptor of the fake script itself.
    extra = {fd: t for fd, t in fds.items() if fd > 2 and t != str(tmp / "bin" / "dockerd")}
    assert not extra, f"dockerd inherited descriptors: {extra}"
    assert fds[0] == "/dev/null" and fds[1] == fds[2] == str(tmp / "dockerd.log"), fds
    assert os.getsid(pid) == pid, "dockerd is not in a session of its own"


def test_a_dockerd_that_exits_during_start_leaves_no_pid_file(
    fake: tuple[Path, dict[str, str]],
) -> None:
    tmp, env = fake
    res = _run_holding(tmp / "caller.lock", {**env, "FAKE_DIE": "1"})
    assert res.returncode != 0 and "dockerd exited" in res.stderr, res.stdout + res.stderr
    assert "bad configuration" in res.stderr, "the end of dockerd's log is not shown"
    assert not (tmp / "dockerd.pid").exists(), "pid file of a dockerd that exited"


def test_a_stale_pid_file_is_replaced(fake: tuple[Path, dict[str, str]]) -> None:
    """A pid file naming a process that is gone, or one that is not dockerd (its pid reused):
    the script starts the engine, instead of waiting on that process."""
    tmp, env = fake
    other = subprocess.Popen(["sleep", "60"])  # alive, but no dockerd
    try:
        for stale in (str(other.pid), "4194304"):  # above pid_max: never a process
            (tmp / "up").unlink(missing_ok=True)
            (tmp / "dockerd.pid").write_text(stale + "\n")
            res = _run_holding(tmp / "caller.lock", env)
            assert res.returncode == 0, res.stdout + res.stderr
            assert "stale pid file" in res.stdout, res.stdout
            pid = int((tmp / "pid").read_text())
            assert (tmp / "dockerd.pid").read_text().strip() == str(pid)
            _stop(pid)
    finally:
        other.kill()
        other.wait()


def test_the_real_engine_holds_no_descriptor_of_the_caller(tmp_path: Path) -> None:
    """With the real dockerd, started by the script only when no engine answers, and stopped
    by its pid file afterwards."""
    if docker_engine_reachable():
        pytest.skip("a Docker engine runs (maybe someone else's): the fake tests cover this")
    pid_file = tmp_path / "dockerd.pid"
    env = {**os.environ, "DOCKERD_PIDFILE": str(pid_file), "DOCKERD_WAIT": "60"}
    lock = tmp_path / "caller.lock"
    res = _run_holding(lock, env)
    pid = int(pid_file.read_text()) if pid_file.exists() else 0
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd"
        fds = _fds(pid)
        assert str(lock) not in fds.values(), f"dockerd holds the caller's lock file: {fds}"
    finally:
        if pid:
            _stop(pid)
