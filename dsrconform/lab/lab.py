"""A running lab: a topology brought up by a backend, with a target's DSR stack deployed in it.

For scripts::

    from dsrconform.lab import Lab

    with Lab.up("labs/basic.yaml") as lab:          # netns backend, reference target
        print(lab.run("client", ["curl", "-s", "http://198.19.0.10/id"]).stdout)
        lab.kill_node("mux1")                        # BGP session loss; traffic moves on

Teardown runs in ``finally`` and on SIGINT/SIGTERM, and returns once the kernel has freed the
lab's BPF programs and maps. A lab dies with the process that brought it up (its owner): the
daemons it spawned get SIGKILL when the owner ends (``PR_SET_PDEATHSIG``), unless it was brought
up to outlive it (``lab up``, ``Lab.up(keep=True)``: ``detach``). What an owner killed with
SIGKILL leaves (namespaces, BPF attached to their interfaces, containers) is reaped by the next
:meth:`Lab.start` on the machine, with a one-line notice on stderr, and by ``dsrconform lab down
--all``, which skips labs whose owner still runs (:mod:`dsrconform.lab.registry`).
Every node operation (kill, pause, resume, link down/up) is recorded in :attr:`Lab.events` with a
monotonic timestamp, for the checkers that later judge what traffic saw, and passed to each
callable in :attr:`Lab.listeners` (the lab's taps start a new period on each).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from dsrconform.errors import ConfigError, LabError
from dsrconform.lab import registry
from dsrconform.lab.environment import Environment, ServerCommand, check_topology
from dsrconform.lab.netns_backend import NetnsBackend
from dsrconform.target import load_target, target_encapsulations
from dsrconform.topofile import load_topology
from dsrconform.topology import Mode, Topology

if TYPE_CHECKING:
    from dsrconform.lab.protocol import LabBackend, Undo
    from dsrconform.target import BgpSpeaker, Deployment

BACKENDS = ("netns", "docker")


@dataclass(frozen=True)
class Event:
    t: float  # time.monotonic()
    action: str
    subject: str
    detail: str = ""


PORT_BLOCKS = 16
"""Client port ranges a lab cycles through, one per traffic run (see Lab.fresh_client_ports)."""


class Lab:
    """A lab that is up (a :class:`~dsrconform.lab.protocol.RunningLab`). Create it with
    :meth:`up` (a context manager) or :meth:`start`."""

    def __init__(
        self,
        topology: Topology,
        *,
        backend: str = "netns",
        target: str = "reference",
        mutant: str | None = None,
        source: str = "",
        target_options: Mapping[str, str] | None = None,
        server_command: str | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.topology = topology
        self.name = topology.name or "lab"
        self.source = source
        self.backend = make_backend(backend, self.name)
        self.python = self.backend.python  # the interpreter for Python programs in a node
        self.target = load_target(target, mutant=mutant, options=target_options)
        self.encapsulations = target_encapsulations(self.target)
        self.dir = registry.lab_dir(self.name)
        self.deployment: Deployment | None = None
        self.environment = Environment(
            self,
            server_command=ServerCommand.parse(server_command) if server_command else None,
        )
        self.events: list[Event] = []
        self.listeners: list[Callable[[Event], None]] = []
        """Called with each event as it is recorded (in the thread that caused it)."""
        self._paused: dict[str, list[int]] = {}
        self._killed: set[str] = set()  # killed and not restarted since (restart_node kills first)
        self._port_blocks = 0  # client port ranges handed out by fresh_client_ports()
        self._created = False  # set once this object starts creating the lab's objects
        self.created = time.time()
        self.ready_seconds: float | None = None
        self.detached = False  # brought up to outlive this process (Lab.start(detach=True))
        # BPF program and map ids this process loaded for the lab (teardown waits for them).
        self._bpf: tuple[set[int], set[int]] = (set(), set())

    # --- lifecycle -----------------------------------------------------------------------------

    @classmethod
    @contextmanager
    def up(cls, path: str | Path, *, backend: str = "netns", mode: Mode | None = None,
           name: str | None = None, target: str = "reference", mutant: str | None = None,
           keep: bool = False, timeout: float = 60.0,
           target_options: Mapping[str, str] | None = None,
           server_command: str | None = None) -> Iterator[Lab]:  # fmt: skip
        """Bring the lab up, yield it, tear it down (unless ``keep``) whatever happens. A kept
        lab outlives this process (``detach``, :meth:`start`)."""
        lab = cls.start(
            path,
            backend=backend,
            mode=mode,
            name=name,
            target=target,
            mutant=mutant,
            timeout=timeout,
            detach=keep,
            target_options=target_options,
            server_command=server_command,
        )
        previous = _install_signal_handlers()
        try:
            yield lab
        finally:
            if not keep:
                lab.down()  # with SIGINT/SIGTERM held back until it is done
            _restore_signal_handlers(previous)

    @classmethod
    def start(
        cls,
        path: str | Path,
        *,
        backend: str = "netns",
        mode: Mode | None = None,
        name: str | None = None,
        target: str = "reference",
        mutant: str | None = None,
        timeout: float = 60.0,
        detach: bool = False,
        target_options: Mapping[str, str] | None = None,
        server_command: str | None = None,
    ) -> Lab:
        """Bring the lab up and return it (the caller owns :meth:`down`). First, labs whose
        owner died without tearing them down are reaped (a notice on stderr says which).

        The lab belongs to this process: its daemons are killed when it ends, and a lab left
        behind is reaped by the next ``Lab.start``. ``detach=True`` (``lab up``): the lab
        outlives this process, until ``lab down``. ``target_options``: the target's own
        settings (:func:`dsrconform.target.load_target`). ``server_command``: the servers'
        application instead of the project's (:class:`~dsrconform.lab.environment.ServerCommand`).
        """
        from dsrconform.applicability import refuse_unsupported
        from dsrconform.target import check_mutant

        check_mutant(target, mutant)  # an unknown target or mutant: before anything exists
        topo = load_topology(path, mode=mode)  # a bad file fails here, before anything exists
        refuse_unsupported(target, topo, target_options)  # a mode the target lacks: now
        problems = check_topology(topo)
        if problems:
            raise ConfigError(f"{path}: " + "; ".join(problems))
        if name is not None:
            if not registry.LAB_NAME_OK(name):
                raise ConfigError(
                    f"lab name {name!r}: fix: 1-12 lower-case letters and digits, a letter first"
                )
            topo = topo.model_copy(update={"name": name})
        lab = cls(topo, backend=backend, target=target, mutant=mutant, source=str(path),
                  target_options=target_options, server_command=server_command)  # fmt: skip
        lab._bring_up(timeout, detach=detach)
        return lab

    def _bring_up(self, timeout: float, *, detach: bool = False) -> None:
        reaped = registry.reap_dead()
        if reaped:
            print(f"dsrconform: reaped what dead runs left: {'; '.join(reaped)}", file=sys.stderr)
        if registry.lab_namespaces(self.name):
            rec = registry.LabRecord.load(self.name)
            owner = registry.owner_text(rec, registry.owner_state(rec))
            raise LabError(
                f"lab {self.name!r} is already up ({owner}); "
                f"fix: `dsrconform lab down {self.name}`, or pick another --name"
            )
        self.detached = detach
        self.backend.die_with_owner = not detach
        self.dir.mkdir(parents=True, exist_ok=True)
        previous = _install_signal_handlers()
        try:
            self._created = True  # from here on, what exists under this name is this lab's
            self._record()
            held = registry.bpf_fd_ids()
            try:
                self.backend.create(self.topology)
                self.environment.start()  # the lab's own: apps, BGP, pass-through programs
                self.deployment = self.target.deploy(self)
            finally:
                # What this process loaded meanwhile is the lab's (teardown waits for it).
                now = registry.bpf_fd_ids()
                self._bpf = (now[0] - held[0], now[1] - held[1])
            self._record()  # with the BPF ids, before the wait (a crash there leaves them)
            start = time.monotonic()
            self.deployment.wait_ready(timeout)
            self.environment.wait_ready(max(1.0, timeout - (time.monotonic() - start)))
            self.ready_seconds = time.monotonic() - start
            self._record()
        except BaseException as e:
            kept = None
            with suppress(Exception):
                kept = self._keep_logs()
            self.down()
            if kept is not None and isinstance(e, LabError):
                raise LabError(f"{e}\nlogs and configs kept in {kept}") from e
            raise
        finally:
            _restore_signal_handlers(previous)

    def _keep_logs(self) -> Path | None:
        """Copy the run directory's logs and configs out before teardown removes them."""
        files = [p for p in self.dir.glob("*") if p.suffix in (".log", ".conf")]
        if not files:
            return None
        keep = Path(tempfile.gettempdir()) / f"dsrconform-{self.name}-{time.strftime('%H%M%S')}"
        keep.mkdir(parents=True, exist_ok=True)
        for p in files:
            shutil.copy2(p, keep / p.name)
        return keep

    def down(self) -> dict[str, list[str]]:
        """Remove everything the lab created (safe to call twice), and return once the kernel
        has freed its BPF programs and maps (those it loaded at bring-up and since, e.g. a
        restarted MUX's; a :class:`LabError` names what is still listed after
        :data:`registry.BPF_RELEASE_S`). SIGINT and SIGTERM are held back meanwhile, so a
        second Ctrl-C cannot leave half a lab behind."""
        held = {signal.SIGINT, signal.SIGTERM}
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            progs, maps = set(self._bpf[0]), set(self._bpf[1])
            try:
                if self.deployment is not None:
                    before = registry.bpf_fd_ids()
                    try:
                        self.deployment.close()
                    finally:
                        after = registry.bpf_fd_ids()
                        progs |= before[0] - after[0]  # closed now: the lab's to wait for
                        maps |= before[1] - after[1]
                before = registry.bpf_fd_ids()
                try:
                    self.environment.close()
                finally:
                    after = registry.bpf_fd_ids()
                    progs |= before[0] - after[0]
                    maps |= before[1] - after[1]
            finally:
                self.deployment = None
                removed = registry.reap(self.name, bpf=(progs, maps)) if self._created else {}
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return removed

    def _record(self) -> None:
        registry.LabRecord(
            name=self.name, topology=self.source, backend=self.backend.kind,
            mode=self.topology.mode, target=self.target.name, mutant=self.target.mutant,
            owner_pid=os.getpid(), created=self.created,
            owner_start=registry.process_start(os.getpid()), detached=self.detached,
            nodes={n: self.netns(n) for n in self.topology.nodes},
            info={"ready_seconds": self.ready_seconds},
            bpf_progs=sorted(self._bpf[0]), bpf_maps=sorted(self._bpf[1]),
        ).save()  # fmt: skip

    # --- what targets and users use ------------------------------------------------------------

    def netns(self, node: str) -> str:
        self._node(node)
        return self.backend.netns(node)

    def spawn(self, node: str, argv: list[str], *, log: str) -> int:
        return self.backend.spawn(self._node(node), argv, log=self.dir / log)

    def run(self, node: str, argv: list[str], *, timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return self.backend.run(self._node(node), argv, timeout=timeout, check=check)

    def _node(self, node: str) -> str:
        if node not in self.topology.nodes:
            raise ConfigError(
                f"no node {node!r} in lab {self.name}; nodes: {', '.join(self.topology.nodes)}"
            )
        return node

    # --- faults (each reversible and recorded) ---------------------------------------------------

    def _event(self, action: str, subject: str, detail: str = "") -> None:
        event = Event(time.monotonic(), action, subject, detail)
        self.events.append(event)
        for listener in list(self.listeners):
            listener(event)

    def processes(self, node: str) -> list[int]:
        return self.backend.processes(self._node(node))

    def kill_node(self, node: str) -> None:
        """Kill every process of ``node`` (SIGKILL: a MUX's BGP session drops at once; on docker,
        ``docker kill``) and bring its interfaces down, so it neither routes nor answers: a dead
        box."""
        pids = self.backend.kill(self._node(node))
        self._killed.add(node)
        self.environment.killed(node)
        for ifname in self._ifnames(node):
            self.backend.set_link(node, ifname, False)
        self._event("kill", node, f"pids {pids}")

    def pause_node(self, node: str) -> None:
        """SIGSTOP every process of ``node`` (on docker, ``docker pause``): a silent hang (BGP
        notices by hold-timer expiry). The kernel data plane (XDP, routes) keeps running, as on a
        wedged control plane."""
        pids = self.backend.pause(self._node(node))
        self._paused[node] = pids
        self._event("pause", node, f"pids {pids}")

    def resume_node(self, node: str) -> None:
        self.backend.resume(self._node(node), self._paused.pop(node, []))
        self._event("resume", node)

    def link_set(self, node: str, ifname: str, up: bool) -> None:
        self.backend.set_link(self._node(node), ifname, up)
        self._event("link-up" if up else "link-down", f"{node}:{ifname}")

    def _ifnames(self, node: str) -> list[str]:
        return [i.ifname for i in self.topology.interfaces() if i.node == node]

    def restart_node(self, node: str) -> None:
        """Bring a killed node back: its links up, the target restarts what runs there (a MUX
        comes back with empty state and announces its VIPs again), then the lab its own (the
        node's BIRD, which picks up those announcements, and its application), even when the
        target's restart fails. A node that was not killed is killed first: a restart is a
        kill and a start, never a second BIRD or application beside the running ones."""
        if self._node(node) not in self._killed:
            self.kill_node(node)
        self.backend.revive(node)
        for ifname in self._ifnames(node):
            self.backend.set_link(node, ifname, True)
        self._killed.discard(node)
        try:
            if self.deployment is not None:
                self.deployment.restart(node)
        finally:
            self.environment.restart(node)
            self._event("restart", node)

    def bgp(self, mux: str) -> BgpSpeaker:
        """The BGP speaker of MUX node ``mux``: what it announces to the border router
        (:class:`dsrconform.target.BgpSpeaker`)."""
        return self.environment.bgp(self._node(mux))

    def set_backends(
        self, service: str, servers: Sequence[str], *, draining: Sequence[str] = ()
    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """Change ``service``'s active and draining servers on every MUX that serves it
        (:meth:`dsrconform.target.Deployment.set_backends` says what each set means); recorded
        as a ``backends`` event. Returns the sets before and after (``{"active": [...],
        "draining": [...]}``). ConfigError for a bad service or server, with nothing changed."""
        if self.deployment is None:
            raise LabError(f"lab {self.name} has no deployment to change backends on")
        before = self.deployment.backends(service)
        self.deployment.set_backends(service, servers, draining=draining)
        after = self.deployment.backends(service)
        self._event("backends", service, f"active {after['active']} draining {after['draining']}")
        return before, after

    def fresh_client_ports(self, reserve: int = 0) -> tuple[int, int]:
        """Give every client node a local port range the last :data:`PORT_BLOCKS` - 1 runs on
        this lab did not use (the next of that many blocks of 32768-65535, cycling: the suites
        run 8 scenarios a session) and return it. A stateful MUX
        keeps a client 5-tuple it remembers on that tuple's old server, which is correct, but a
        run that reused a tuple from an earlier run could not tell a new connection from an old
        one; with a fresh range every connection of a run is new to the stack (the crafted
        packets' probe ports, 20000-29999, stay outside every range). The block's last
        ``reserve`` ports are left out of the kernel's range: the run's own fixed ports (a
        traffic generator that reuses ports binds them)."""
        from dsrconform.lab.netns_backend import set_sysctls
        from dsrconform.netns import enter_netns

        size = (65536 - 32768) // PORT_BLOCKS
        if not 0 <= reserve <= size // 2:
            raise ValueError(f"reserve {reserve}: expected 0..{size // 2} ports of a {size} block")
        lo = 32768 + (self._port_blocks % PORT_BLOCKS) * size
        self._port_blocks += 1
        for node in self.topology.of_role("client"):
            with enter_netns(self.netns(node)):
                set_sysctls({"net/ipv4/ip_local_port_range": f"{lo} {lo + size - 1 - reserve}"})
        return lo, lo + size - 1

    def impair_link(
        self,
        a: str,
        b: str,
        *,
        loss: float = 0.0,
        drop: bool = False,
        rate_kbit: int | None = None,
        direction: str = "both",
    ) -> Undo:
        """Loss (percent), a partition (``drop``) or a rate limit on the link a-b; returns a
        handle whose ``undo()`` lifts it (see :mod:`dsrconform.lab.faults`)."""
        from dsrconform.lab import faults

        imp = faults.impair_link(self, self._node(a), self._node(b), loss=loss, drop=drop,
                                 rate_kbit=rate_kbit, direction=direction)  # fmt: skip
        self._event("impair", f"{a}-{b}", imp.description)
        return _Undo(imp.undo, lambda: self._event("unimpair", f"{a}-{b}"))

    def limit_cpu(self, node: str, cpus: float) -> Undo:
        """Cap ``node``'s processes at ``cpus`` CPUs; returns a handle with ``undo()``."""
        from dsrconform.lab import faults

        lim = faults.limit_cpu(self, self._node(node), cpus)
        self._event("cpu-limit", node, f"{cpus} CPUs")
        return _Undo(lim.undo, lambda: self._event("cpu-unlimit", node))

    # --- status -----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        topo = self.topology
        out: dict[str, Any] = {
            "name": self.name, "backend": self.backend.kind, "mode": topo.mode,
            "target": self.target.name, "mutant": self.target.mutant,
            "ready_seconds": self.ready_seconds,
            "nodes": {n: {"role": s.role, "netns": self.netns(n),
                          "processes": len(self.processes(n))}
                      for n, s in topo.nodes.items()},
            "links": [{"node": i.node, "ifname": i.ifname, "address": i.address, "mtu": i.mtu,
                       **({"address6": i.address6} if i.address6 else {})}
                      for i in topo.interfaces()],
        }  # fmt: skip
        out.update(self.environment.status())
        if self.deployment is not None:
            out.update(self.deployment.status())
        return out


class _Undo:
    """A fault's handle: ``undo()`` reverses it once and records that it did."""

    def __init__(self, undo: Callable[[], None], record: Callable[[], None]) -> None:
        self._undo: Callable[[], None] | None = undo
        self._record = record

    def undo(self) -> None:
        if self._undo is not None:
            self._undo()
            self._record()
            self._undo = None


def make_backend(kind: str, lab: str) -> LabBackend:
    """The backend object of ``kind`` for lab ``lab`` (nothing is created yet)."""
    if kind == "docker":
        from dsrconform.lab.docker_backend import DockerBackend

        return DockerBackend(lab)
    return NetnsBackend(lab)


def _install_signal_handlers() -> dict[int, Any]:
    """SIGTERM becomes KeyboardInterrupt, so ``finally`` blocks tear the lab down.

    Only in this process: a child forked meanwhile (pyroute2's NetNS helpers are, and are
    stopped with SIGTERM) inherits the handler, and must exit at once rather than unwind the
    parent's stack and run its cleanup (tearing down the parent's lab) a second time."""
    owner = os.getpid()

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            os._exit(128 + signum)
        raise KeyboardInterrupt(f"signal {signum}")

    previous: dict[int, Any] = {}
    with suppress(ValueError):  # not the main thread: the caller's handlers stay
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, handler)
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, h in previous.items():
        signal.signal(sig, h)
