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

Owners: the record names the process that brought the lab up (``owner_pid``, with its start
time so that a reused pid is not mistaken for it) and whether the lab outlives it on purpose
(``detached``: ``lab up``, ``Lab.up(keep=True)``). From that, each lab found on the machine is
(:func:`owner_state`):

- ``alive``: its owner runs. ``lab down --all`` skips it (``--force`` removes it);
- ``dead``: its owner is gone without tearing it down (SIGKILL, a crash): the next ``lab up`` /
  ``Lab.start`` reaps it (:func:`reap_dead`), and so does ``lab down --all``;
- ``detached``: its owner is gone on purpose (or the record predates owner tracking): only
  ``lab down NAME`` or ``lab down --all`` removes it;
- ``unrecorded``: namespaces or containers without a record: ``lab down --all`` removes them.

``lab up``'s labs are owned by a lab controller process (:mod:`dsrconform.lab.controller`; the
record's ``info["controller"]``): ``lab down`` asks it to tear down, and the reaper stops it
first when it does not (it holds the lab's BPF objects).

BPF: a lab's programs and maps are freed by the kernel after the last reference goes, which for
programs attached to a deleted namespace's interfaces is some time after the namespace's name is
removed (its devices are destroyed by a kernel worker). The record keeps the ids the lab loaded
(``bpf_progs``, ``bpf_maps``), and the reaper returns only once the kernel no longer lists them
(:func:`wait_bpf_released`, bounded).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dsrconform.errors import ConfigError, LabError
from dsrconform.netns import LAB_PREFIX, host_netns_ids

RUN_DIR = Path(os.environ.get("DSRCONFORM_RUN_DIR", "/run/dsrconform/labs"))
NETNS_DIR = Path("/run/netns")
DOCKER_LABEL = "dsrconform.lab"
_THROWAWAY_RE = re.compile(rf"^{LAB_PREFIX}[a-z0-9-]+-(\d+)-\d+$")
BPF_RELEASE_S = 10.0
"""How long the reaper waits for the kernel to free a removed lab's BPF programs and maps
(typically 0.1-0.3 s after the namespaces are deleted)."""

# Owner states (see the module docstring).
ALIVE, DEAD, DETACHED, UNRECORDED = "alive", "dead", "detached", "unrecorded"


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
    owner_start: int | None = None
    """The owner's start time (/proc/<pid>/stat field 22, clock ticks after boot): a process
    that got the owner's pid later is not the owner. None: not recorded (any process with the
    pid counts)."""
    detached: bool | None = None
    """True: the lab outlives its owner on purpose (``lab up``, ``Lab.up(keep=True)``); False:
    it dies with it (a lab left after the owner is gone is a crash's). None: a record written
    before owners were tracked, treated as detached (never reaped behind a user's back)."""
    bpf_progs: list[int] = field(default_factory=list)
    """Ids of the BPF programs the lab loaded (what the reaper waits for the kernel to free)."""
    bpf_maps: list[int] = field(default_factory=list)

    def save(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        tmp = RUN_DIR / f".{self.name}.json.tmp"
        tmp.write_text(json.dumps(self.__dict__, indent=2, sort_keys=True))
        tmp.replace(RUN_DIR / f"{self.name}.json")

    @classmethod
    def load(cls, name: str) -> LabRecord | None:
        """The record of lab ``name``, or None (none, unreadable, or not a record). Keys this
        version does not know are ignored, so a newer record still loads."""
        p = RUN_DIR / f"{name}.json"
        known = {f.name for f in fields(cls)}
        try:
            data = json.loads(p.read_text())
            return cls(**{k: v for k, v in data.items() if k in known})
        except (OSError, ValueError, TypeError, AttributeError):
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


def labs_up() -> list[str]:
    """Labs that have namespaces (whatever their records say)."""
    return sorted({lab for n in lab_namespaces() if (lab := lab_of_ns(n))})


# --- owners -------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` from field 3 (state) on; the command name may hold ") "."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None


def pid_running(pid: int) -> bool:
    """Whether ``pid`` is a running (or stopped) process: not gone and not a zombie, which
    still has a ``/proc`` entry until its parent reaps it (a lab's daemons are children of the
    process that spawned them, which does not wait on them)."""
    if pid <= 0:
        return False
    st = _stat_fields(pid)
    return st is not None and st[0] not in ("Z", "X")


def process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot, field 22 of /proc/<pid>/stat), or None."""
    st = _stat_fields(pid)
    try:
        return int(st[19]) if st is not None else None
    except (IndexError, ValueError):
        return None


def owner_alive(rec: LabRecord) -> bool:
    """Whether the process that brought ``rec``'s lab up still runs (the same process: a pid
    reused by another one, told apart by its start time, is not the owner)."""
    if not pid_running(rec.owner_pid):
        return False
    return rec.owner_start is None or process_start(rec.owner_pid) == rec.owner_start


def owner_state(rec: LabRecord | None, alive: Callable[[LabRecord], bool] = owner_alive) -> str:
    """:data:`ALIVE`, :data:`DEAD`, :data:`DETACHED` or :data:`UNRECORDED` (module docstring)."""
    if rec is None:
        return UNRECORDED
    if alive(rec):
        return ALIVE
    return DEAD if rec.detached is False else DETACHED


def owner_text(rec: LabRecord | None, state: str) -> str:
    """``owner pid 123 (python3) is alive`` and the like, for messages."""
    if rec is None:
        return "no record"
    what = f"owner pid {rec.owner_pid}"
    if state == ALIVE:
        with suppress(OSError):
            what += f" ({Path(f'/proc/{rec.owner_pid}/comm').read_text().strip()})"
        return what + " is alive"
    if state == DETACHED:
        return what + " has exited, leaving it up on purpose (lab up / keep)"
    return what + " is gone"


@dataclass(frozen=True)
class DownPlan:
    """What ``lab down --all`` does with each lab found (:func:`plan_down_all`)."""

    remove: dict[str, str]  # lab -> its owner state
    skip: list[str]  # labs whose owner is alive (not --force)


def plan_down_all(
    labs: Iterable[str],
    records: Mapping[str, LabRecord | None],
    *,
    alive: Callable[[LabRecord], bool] = owner_alive,
    force: bool = False,
) -> DownPlan:
    """Which of ``labs`` ``lab down --all`` removes: every one whose owner is not alive (dead,
    detached or unrecorded), and, with ``force``, the others too; the rest is skipped."""
    remove: dict[str, str] = {}
    skip: list[str] = []
    for lab in sorted(set(labs)):
        state = owner_state(records.get(lab), alive)
        if state == ALIVE and not force:
            skip.append(lab)
        else:
            remove[lab] = state
    return DownPlan(remove, skip)


def plan_reap_dead(
    records: Mapping[str, LabRecord | None], *, alive: Callable[[LabRecord], bool] = owner_alive
) -> list[str]:
    """The labs of ``records`` whose owner died without tearing them down (what the next
    ``lab up`` reaps): never a lab whose owner runs, one left up on purpose, or one without a
    record (whose owner is unknown)."""
    return sorted(lab for lab, rec in records.items() if owner_state(rec, alive) == DEAD)


def throwaway_owner(name: str) -> int | None:
    """The pid in a throwaway namespace's name (``dsrc-<purpose>-<pid>-<n>``), else None."""
    m = _THROWAWAY_RE.match(name)
    return int(m.group(1)) if m else None


def stale_throwaways() -> list[str]:
    """Throwaway namespaces (``dsrc-<purpose>-<pid>-<n>``) whose creating process is gone."""
    if not NETNS_DIR.is_dir():
        return []
    out = []
    for p in NETNS_DIR.iterdir():
        pid = throwaway_owner(p.name)
        if pid is not None and not pid_running(pid):
            out.append(p.name)
    return sorted(out)


# --- processes ----------------------------------------------------------------------------------


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


# --- BPF ids ------------------------------------------------------------------------------------


def bpf_fd_ids(pid: int | str = "self") -> tuple[set[int], set[int]]:
    """Ids of the BPF programs and maps process ``pid`` holds a file descriptor of (programs
    also through BPF links), read from ``/proc/<pid>/fdinfo``."""
    progs: set[int] = set()
    maps: set[int] = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return progs, maps
    for fd in fds:
        try:
            if not os.readlink(f"{fd_dir}/{fd}").startswith("anon_inode:bpf"):
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue  # closed meanwhile
        for line in info.splitlines():
            key, _, value = line.partition(":")
            if key == "prog_id":
                progs.add(int(value))
            elif key == "map_id":
                maps.add(int(value))
    return progs, maps


_LIBBPF: list[ctypes.CDLL] = []


def bpf_ids_present() -> tuple[set[int], set[int]]:
    """Ids of every BPF program and map the kernel lists (``bpftool prog``/``map``), walked with
    ``BPF_{PROG,MAP}_GET_NEXT_ID``, which takes no reference on them. Needs root."""
    if not _LIBBPF:
        lib = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
        for fn in (lib.bpf_prog_get_next_id, lib.bpf_map_get_next_id):
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]
        _LIBBPF.append(lib)
    lib = _LIBBPF[0]
    out = []
    for fn in (lib.bpf_prog_get_next_id, lib.bpf_map_get_next_id):
        ids: set[int] = set()
        nxt = ctypes.c_uint32(0)
        while fn(nxt.value, ctypes.byref(nxt)) == 0:
            ids.add(nxt.value)
        err = ctypes.get_errno()
        if err != errno.ENOENT:  # ENOENT: past the last id
            raise LabError(f"listing BPF object ids: {os.strerror(err)} (needs root)")
        out.append(ids)
    return out[0], out[1]


def _bpf_holders(progs: set[int], maps: set[int]) -> dict[str, str]:
    """Which process holds a descriptor of each of these BPF objects ("prog 12" -> "pid 345
    (bpftool)"); for a message when they outlive their lab."""
    held: dict[str, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        p, m = bpf_fd_ids(d.name)
        for kind, ids in (("prog", p & progs), ("map", m & maps)):
            for i in ids:
                comm = ""
                with suppress(OSError):
                    comm = f" ({(d / 'comm').read_text().strip()})"
                held.setdefault(f"{kind} {i}", f"pid {d.name}{comm}")
    return held


def wait_bpf_released(
    progs: Iterable[int], maps: Iterable[int], *, what: str, deadline_s: float = BPF_RELEASE_S
) -> float:
    """Wait until the kernel no longer lists these BPF programs and maps: the last reference
    to one (an interface of a deleted namespace, a process's descriptor) goes asynchronously,
    and the kernel frees it after that. Ids this process still holds a descriptor of are
    skipped: they are this process's to keep (a program loaded once per process). Returns the
    seconds waited; raises :class:`LabError` naming what is still listed, and who holds it, at
    the deadline."""
    own_progs, own_maps = bpf_fd_ids()
    want_progs, want_maps = set(progs) - own_progs, set(maps) - own_maps
    if not want_progs and not want_maps:
        return 0.0
    start = time.monotonic()
    while True:
        live_progs, live_maps = bpf_ids_present()
        left_progs, left_maps = want_progs & live_progs, want_maps & live_maps
        if not left_progs and not left_maps:
            return time.monotonic() - start
        if time.monotonic() - start > deadline_s:
            holders = _bpf_holders(left_progs, left_maps)
            items = [f"prog {i}" for i in sorted(left_progs)] + [
                f"map {i}" for i in sorted(left_maps)
            ]
            listed = ", ".join(
                f"{item} (held by {holders[item]})" if item in holders else item for item in items
            )
            raise LabError(
                f"{what}: {deadline_s:.0f} s after its removal the kernel still lists "
                f"{len(left_progs)} BPF program(s) and {len(left_maps)} map(s) it loaded: "
                f"{listed}; those held by no process are still referenced by an interface or "
                "another program being freed; fix: `bpftool prog show id ID` / `bpftool map "
                "show id ID` says what they are, stop the processes holding them"
            )
        time.sleep(0.01)  # polling the kernel's id tables, bounded by the deadline above


# --- Docker -------------------------------------------------------------------------------------


def _docker_containers(lab: str | None) -> list[str]:
    flt = f"label={DOCKER_LABEL}" + (f"={lab}" if lab else "")
    try:
        res = subprocess.run(
            ["docker", "ps", "-aq", "--filter", flt], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return res.stdout.split() if res.returncode == 0 else []


def _docker_containers_by_lab() -> dict[str, list[str]]:
    """Every labelled container's id, by lab (one ``docker ps``); empty without an engine."""
    fmt = '{{.ID}} {{.Label "' + DOCKER_LABEL + '"}}'
    try:
        res = subprocess.run(
            ["docker", "ps", "-a", "--filter", f"label={DOCKER_LABEL}", "--format", fmt],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out: dict[str, list[str]] = {}
    for line in res.stdout.splitlines() if res.returncode == 0 else []:
        cid, _, lab = line.partition(" ")
        if cid:
            out.setdefault(lab.strip(), []).append(cid)
    return out


def lab_containers(lab: str | None = None) -> list[str]:
    """Ids of the Docker containers of ``lab`` (of every lab when None), found by label; empty
    when no engine answers."""
    return _docker_containers(lab)


# --- the reaper ---------------------------------------------------------------------------------


def check_name(lab: str) -> None:
    """A ConfigError unless ``lab`` is a valid lab name."""
    if not LAB_NAME_OK(lab):
        # The name becomes a path under RUN_DIR: never let "/", "..", "" or a file name through.
        raise ConfigError(
            f"lab name {lab!r} is not valid; fix: 1-12 lower-case letters and digits, a letter "
            "first (see `dsrconform lab status`), or --all"
        )


def _merge(into: dict[str, list[str]], more: dict[str, list[str]]) -> None:
    for k, v in more.items():
        into.setdefault(k, []).extend(v)


def _remove_lab(
    lab: str, containers: list[str] | None = None
) -> tuple[dict[str, list[str]], set[int], set[int]]:
    """Remove what lab ``lab`` has on the machine (containers, processes, cgroups, namespaces,
    record and run directory). Returns what was removed, and the BPF ids its record lists."""
    from pyroute2 import netns

    record = LabRecord.load(lab)
    names = lab_namespaces(lab)
    if containers is None:
        # A lab recorded as netns has no containers: skip asking the engine (~12 ms).
        containers = [] if record and record.backend == "netns" else _docker_containers(lab)
    # Containers first: `docker rm -f` also ends a paused (frozen) one at once, where SIGKILL
    # waits for a thaw that never comes.
    if containers:
        # On a timeout, go on with namespaces and processes; `docker ps` shows what is left.
        with suppress(subprocess.TimeoutExpired):
            subprocess.run(["docker", "rm", "-f", *containers], capture_output=True, timeout=120)
    # `lab up`'s controller holds the lab's BPF objects: it goes first.
    ctl = record is not None and "controller" in record.info and record.owner_pid != os.getpid()
    if ctl and record is not None and owner_alive(record):
        kill_pids([record.owner_pid])
    procs = pids_in_namespaces(names)
    kill_pids(list(procs))
    for base in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/cpu")):  # CPU limits (faults.py)
        for group in base.glob(f"{LAB_PREFIX}{lab}.*") if base.is_dir() else []:
            with suppress(OSError):
                group.rmdir()
    for n in names:
        with suppress(OSError):
            netns.remove(n)
    files = []
    for p in (RUN_DIR / f"{lab}.json", lab_dir(lab)):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            files.append(str(p))
        elif p.exists():
            p.unlink(missing_ok=True)
            files.append(str(p))
    removed = {
        "namespaces": names,
        "processes": [str(p) for p in procs],
        "containers": list(containers),
        "files": files,
    }
    if record is None:
        return removed, set(), set()
    return removed, set(record.bpf_progs), set(record.bpf_maps)


def _remove_throwaways(names: list[str]) -> dict[str, list[str]]:
    from pyroute2 import netns

    procs = pids_in_namespaces(names)
    kill_pids(list(procs))
    for n in names:
        with suppress(OSError):
            netns.remove(n)
    return {"namespaces": names, "processes": [str(p) for p in procs]}


def _wait_bpf(
    removed: dict[str, list[str]], progs: set[int], maps: set[int], what: str
) -> dict[str, list[str]]:
    own_progs, own_maps = bpf_fd_ids()  # this process's to keep: not the lab's to free
    progs, maps = progs - own_progs, maps - own_maps
    if progs or maps:
        wait_bpf_released(progs, maps, what=what)
        removed["BPF programs"] = [str(i) for i in sorted(progs)]
        removed["BPF maps"] = [str(i) for i in sorted(maps)]
    return removed


def reap(
    lab: str | None = None, *, bpf: tuple[Iterable[int], Iterable[int]] = ((), ())
) -> dict[str, list[str]]:
    """Remove everything of ``lab``, whoever owns it, and return only once the kernel has freed
    the BPF programs and maps its record lists, and ``bpf`` (program ids, map ids) adds (a
    :class:`LabError` names what is still listed after :data:`BPF_RELEASE_S`). Returns what was
    removed, by kind. Safe to run twice, and on a lab that is half up. ``lab=None``: every lab
    and stale throwaway, live owners or not (``reap_all(force=True)``)."""
    if lab is None:
        return reap_all(force=True)[0]
    check_name(lab)
    removed, progs, maps = _remove_lab(lab)
    return _wait_bpf(removed, progs | set(bpf[0]), maps | set(bpf[1]), f"lab {lab}")


def reap_all(*, force: bool = False) -> tuple[dict[str, list[str]], dict[str, str]]:
    """``lab down --all``: remove every lab whose owner is not alive (:func:`plan_down_all`;
    all of them with ``force``) and every stale throwaway namespace. Returns what was removed
    and the labs skipped (lab -> why)."""
    containers = _docker_containers_by_lab()
    found = set(recorded_labs()) | set(labs_up()) | set(containers)
    labs = sorted(lab for lab in found if LAB_NAME_OK(lab))
    records = {lab: LabRecord.load(lab) for lab in labs}
    plan = plan_down_all(labs, records, force=force)
    removed: dict[str, list[str]] = {}
    progs: set[int] = set()
    maps: set[int] = set()
    for lab in plan.remove:
        r, p, m = _remove_lab(lab, containers.get(lab, []))
        _merge(removed, r)
        progs |= p
        maps |= m
    _merge(removed, _remove_throwaways(stale_throwaways()))
    skipped = {lab: owner_text(records[lab], owner_state(records[lab])) for lab in plan.skip}
    return _wait_bpf(removed, progs, maps, "lab down --all"), skipped


def reap_dead() -> list[str]:
    """Remove the labs whose owner died without tearing them down (:func:`plan_reap_dead`) and
    the stale throwaway namespaces; what ``Lab.start`` does first. Returns one phrase per thing
    reaped (``lab x (owner pid 12 is gone: 9 namespaces, 6 processes)``), empty when nothing
    was."""
    records = {lab: LabRecord.load(lab) for lab in recorded_labs() if LAB_NAME_OK(lab)}
    said: list[str] = []
    progs: set[int] = set()
    maps: set[int] = set()
    for lab in plan_reap_dead(records):
        rec, first = LabRecord.load(lab), records[lab]  # again: still the same dead owner?
        if rec is None or first is None or rec.created != first.created:
            continue
        if owner_state(rec) != DEAD:
            continue
        r, p, m = _remove_lab(lab)
        progs |= p
        maps |= m
        what = ", ".join(f"{len(v)} {k}" for k, v in r.items() if v and k != "files")
        said.append(f"lab {lab} ({owner_text(rec, DEAD)}: {what or 'its record'})")
    stale = stale_throwaways()
    if stale:
        _remove_throwaways(stale)
        said.append(f"{len(stale)} throwaway namespace(s) of dead processes ({', '.join(stale)})")
    if progs or maps:
        wait_bpf_released(progs, maps, what="reaping labs of dead owners")
        said.append(f"{len(progs)} BPF programs and {len(maps)} maps freed")
    return said


def iter_leftovers() -> Iterator[str]:
    """Human-readable lines for whatever of ours is still on the machine (for checks)."""
    for n in lab_namespaces() + stale_throwaways():
        yield f"namespace {n}"
    for c in _docker_containers(None):
        yield f"container {c}"
