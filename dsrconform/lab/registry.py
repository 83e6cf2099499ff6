"""Where labs are recorded, how their objects are named, and the reaper that removes leftovers.

Naming: a lab called ``basic`` puts node ``router`` in network namespace ``dsrc-basic.router``;
its files (configs, sockets, logs) live in ``/run/dsrconform/labs/basic/`` next to the record
``/run/dsrconform/labs/basic.json``; Docker objects carry the label ``dsrconform.lab=basic``.
Throwaway namespaces of probes and benchmarks are ``dsrc-<purpose>-<pid>-<n>`` (no dot).

The reaper does not trust records (a crashed run may not have written one): it removes Docker
containers with the label (the docker backend's nodes; their namespaces are attached under the
same ``dsrc-<lab>.<node>`` names), finds lab namespaces by name, stops every process whose network
namespace is one of them (these can only be processes the lab started inside its own
namespaces), deletes the namespaces and the lab's run directory. It touches nothing else: the host's
interfaces and processes in other namespaces are never looked at twice.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsrconform.errors import ConfigError
from dsrconform.netns import LAB_PREFIX, host_netns_ids

RUN_DIR = Path(os.environ.get("DSRCONFORM_RUN_DIR", "/run/dsrconform/labs"))
NETNS_DIR = Path("/run/netns")
DOCKER_LABEL = "dsrconform.lab"
_THROWAWAY_RE = re.compile(rf"^{LAB_PREFIX}[a-z0-9-]+-(\d+)-\d+$")


def LAB_NAME_OK(name: str) -> bool:
    return re.match(r"^[a-z][a-z0-9]{0,11}$", name) is not None


def ns_name(lab: str, node: str) -> str:
    return f"{LAB_PREFIX}{lab}.{node}"


def lab_of_ns(name: str) -> str | None:
    if not name.startswith(LAB_PREFIX) or "." not in name:
        return None
    return name[len(LAB_PREFIX) :].split(".", 1)[0]


def lab_dir(lab: str) -> Path:
    return RUN_DIR / lab


@dataclass
class LabRecord:
    """What a lab left on the machine, written when it comes up (``lab status`` reads it)."""

    name: str
    topology: str
    backend: str
    mode: str
    target: str
    mutant: str | None
    owner_pid: int
    created: float
    nodes: dict[str, str] = field(default_factory=dict)  # node -> namespace
    info: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        tmp = RUN_DIR / f".{self.name}.json.tmp"
        tmp.write_text(json.dumps(self.__dict__, indent=2, sort_keys=True))
        tmp.replace(RUN_DIR / f"{self.name}.json")

    @classmethod
    def load(cls, name: str) -> LabRecord | None:
        p = RUN_DIR / f"{name}.json"
        try:
            return cls(**json.loads(p.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def recorded_labs() -> list[str]:
    return sorted(p.stem for p in RUN_DIR.glob("*.json")) if RUN_DIR.is_dir() else []


def lab_namespaces(lab: str | None = None) -> list[str]:
    """Namespaces of ``lab`` (every lab when None), found by name, not by record."""
    if not NETNS_DIR.is_dir():
        return []
    out = []
    for p in NETNS_DIR.iterdir():
        owner = lab_of_ns(p.name)
        if owner is not None and (lab is None or owner == lab):
            out.append(p.name)
    return sorted(out)


def stale_throwaways() -> list[str]:
    """Throwaway namespaces (``dsrc-<purpose>-<pid>-<n>``) whose creating process is gone."""
    if not NETNS_DIR.is_dir():
        return []
    out = []
    for p in NETNS_DIR.iterdir():
        m = _THROWAWAY_RE.match(p.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            out.append(p.name)
    return sorted(out)


def _ns_inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def pids_in_namespaces(names: list[str]) -> dict[int, str]:
    """Processes whose network namespace is one of ``names`` (pid -> namespace)."""
    host = host_netns_ids()
    inodes = {}
    for n in names:
        try:
            st = os.stat(NETNS_DIR / n)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in host:
            continue  # a lab name that points at the host's namespace: never ours to kill in
        inodes[st.st_ino] = n
    found: dict[int, str] = {}
    if not inodes:
        return found
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        ino = _ns_inode(d / "ns" / "net")
        if ino in inodes and int(d.name) != os.getpid():
            found[int(d.name)] = inodes[ino]
    return found


def kill_pids(pids: list[int], *, deadline_s: float = 5.0) -> None:
    """SIGKILL each pid (continuing stopped ones) and wait, with a deadline, until they are gone."""
    for pid in pids:
        for sig in (signal.SIGKILL, signal.SIGCONT):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
    end = time.monotonic() + deadline_s
    for pid in pids:
        while time.monotonic() < end:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)  # our child: reap it
                if done:
                    break
            except ChildProcessError:
                if not pid_running(pid):  # not our child: gone once /proc says so
                    break
            time.sleep(0.01)  # polling a process's exit, bounded by the deadline above


def pid_running(pid: int) -> bool:
    """Whether ``pid`` is a running (or stopped) process: not gone and not a zombie, which
    still has a ``/proc`` entry until its parent reaps it (a lab's daemons are children of the
    process that spawned them, which does not wait on them)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] not in "ZX"
    except (OSError, IndexError):
        return False


def _docker_containers(lab: str | None) -> list[str]:
    flt = f"label={DOCKER_LABEL}" + (f"={lab}" if lab else "")
    try:
        res = subprocess.run(
            ["docker", "ps", "-aq", "--filter", flt], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return res.stdout.split() if res.returncode == 0 else []


def lab_containers(lab: str | None = None) -> list[str]:
    """Ids of the Docker containers of ``lab`` (of every lab when None), found by label; empty
    when no engine answers."""
    return _docker_containers(lab)


def reap(lab: str | None = None) -> dict[str, list[str]]:
    """Remove everything of ``lab`` (of every lab and stale throwaway when None). Returns what was
    removed, by kind. Safe to run twice, and on a lab that is half up."""
    from pyroute2 import netns

    if lab is not None and not LAB_NAME_OK(lab):
        # The name becomes a path under RUN_DIR: never let "/", "..", "" or a file name through.
        raise ConfigError(
            f"lab name {lab!r} is not valid; fix: 1-12 lower-case letters and digits, a letter "
            "first (see `dsrconform lab status`), or --all"
        )
    names = lab_namespaces(lab)
    if lab is None:
        names += stale_throwaways()
    # Containers first: `docker rm -f` also ends a paused (frozen) one at once, where SIGKILL
    # waits for a thaw that never comes.
    record = LabRecord.load(lab) if lab is not None else None
    # A lab recorded as netns has no containers: skip asking the engine (~12 ms of a teardown).
    containers = [] if record and record.backend == "netns" else _docker_containers(lab)
    if containers:
        # On a timeout, go on with namespaces and processes; `docker ps` shows what is left.
        with suppress(subprocess.TimeoutExpired):
            subprocess.run(["docker", "rm", "-f", *containers], capture_output=True, timeout=120)
    procs = pids_in_namespaces(names)
    kill_pids(list(procs))
    for base in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/cpu")):  # CPU limits (faults.py)
        pattern = f"{LAB_PREFIX}{lab}.*" if lab is not None else f"{LAB_PREFIX}*.*"
        for group in base.glob(pattern) if base.is_dir() else []:
            with suppress(OSError):
                group.rmdir()
    for n in names:
        with suppress(OSError):
            netns.remove(n)
    labs = [lab] if lab is not None else recorded_labs()
    dirs = []
    for name in labs:
        for p in (RUN_DIR / f"{name}.json", lab_dir(name)):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                dirs.append(str(p))
            elif p.exists():
                p.unlink(missing_ok=True)
                dirs.append(str(p))
    return {
        "namespaces": names,
        "processes": [str(p) for p in procs],
        "containers": containers,
        "files": dirs,
    }


def iter_leftovers() -> Iterator[str]:
    """Human-readable lines for whatever of ours is still on the machine (for checks)."""
    for n in lab_namespaces() + stale_throwaways():
        yield f"namespace {n}"
    for c in _docker_containers(None):
        yield f"container {c}"
