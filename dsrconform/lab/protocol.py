"""What a lab backend must do, and what a running lab offers the code that drives it.

Two layers, each a :class:`~typing.Protocol` checked by mypy, not by inheritance:

- :class:`LabBackend`: how a topology's nodes come to life (namespaces, containers). The
  :class:`~dsrconform.lab.lab.Lab` owns one (:func:`~dsrconform.lab.lab.make_backend`) and
  drives it; nothing else should. Implemented by
  :class:`~dsrconform.lab.netns_backend.NetnsBackend` and
  :class:`~dsrconform.lab.docker_backend.DockerBackend`.
- :class:`RunningLab`: a lab that is up, as targets (``Target.deploy``), traffic, observation,
  fault and scenario code see it. Implemented by :class:`~dsrconform.lab.lab.Lab`.
  :class:`LabNodes` is the narrower part that code working from the host through namespace
  names needs (route reads, floods, link impairments, CPU limits).

The backend's contract, member by member (``node`` is always a node name of the topology the
backend created; the lab checks names before calling):

- ``kind``: the backend's name (``netns``, ``docker``), as ``--dsr-backend`` and the lab record
  spell it.
- ``python``: the interpreter that runs Python programs inside a node (the host's
  ``sys.executable``, or the node image's ``python3``); ``run``/``spawn`` given an argv whose
  first element is the host's ``sys.executable`` must run it with this one.
- ``lab``: the lab's name; every object the backend makes is named after it
  (:func:`dsrconform.lab.registry.ns_name`) so :func:`dsrconform.lab.registry.reap` finds it.
- ``die_with_owner``: set by the lab before ``create``: whether processes ``spawn`` starts must
  die with this process (a backend whose nodes outlive it, containers, leaves them to the
  reaper).
- ``netns(node)``: the name of the node's network namespace under ``/run/netns``. Every backend
  makes each node's namespace visible under that name while the lab is up, so taps, captures,
  floods and impairments work from the host through it, whatever the backend.
- ``create(topo)``: bring every node, link, segment, address, route and sysctl of ``topo`` up;
  on error, raise (LabError, PrivilegeError) and leave the rest to the caller's teardown.
- ``destroy()``: remove everything ``create`` made (:func:`~dsrconform.lab.registry.reap`),
  returning what was removed by kind; safe to call twice.
- ``spawn(node, argv, log=..., env=...)``: start a long-running process in the node, its
  stdout and stderr appended to ``log`` (inside the lab's run directory), ``env`` added to its
  environment; return its host pid (0 if it already exited). Never waits for it.
- ``run(node, argv, timeout=, check=)``: run a command in the node to completion, text output
  captured; with ``check``, a non-zero exit is a LabError naming the command and its stderr.
  ``subprocess.TimeoutExpired`` past ``timeout``.
- ``run_argv(node, argv)`` / ``exec_argv(node, argv)``: the host command line that runs
  ``argv`` in the node, non-interactively (what ``run`` runs) or with the terminal attached
  (``dsrconform lab exec``).
- ``processes(node)``: the host pids of the node's own processes (not a container's namespace
  holder), sorted; [] for a killed node.
- ``kill(node)``: end every process of the node at once (SIGKILL or ``docker kill``, a paused
  node included) and return their pids once they are gone; the namespace and its interfaces
  stay.
- ``revive(node)``: make a killed node able to run processes again (``spawn`` works after it);
  nothing to do where a namespace needs nothing.
- ``pause(node)`` / ``resume(node, pids)``: freeze every process of the node (returning the
  pids, for ``resume``) and let them run again; the kernel data plane keeps running.
- ``set_link(node, ifname, up)``: set the node's interface up or down, also on a paused or
  killed node.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from dsrconform.lab.lab import Event
    from dsrconform.target import BgpSpeaker, Deployment, Encapsulation
    from dsrconform.topology import Topology

__all__ = ["LabBackend", "LabNodes", "RunningLab", "Undo"]


class LabBackend(Protocol):
    """How a lab's nodes exist: see the module doc for what each member must do."""

    kind: str
    python: str
    lab: str
    die_with_owner: bool

    def netns(self, node: str) -> str: ...

    def create(self, topo: Topology) -> None: ...

    def destroy(self) -> dict[str, list[str]]: ...

    def spawn(
        self, node: str, argv: list[str], *, log: Path, env: dict[str, str] | None = None
    ) -> int: ...

    def run(
        self, node: str, argv: list[str], *, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...

    def run_argv(self, node: str, argv: list[str]) -> list[str]: ...

    def exec_argv(self, node: str, argv: list[str]) -> list[str]: ...

    def processes(self, node: str) -> list[int]: ...

    def kill(self, node: str) -> list[int]: ...

    def revive(self, node: str) -> None: ...

    def pause(self, node: str) -> list[int]: ...

    def resume(self, node: str, pids: list[int]) -> None: ...

    def set_link(self, node: str, ifname: str, up: bool) -> None: ...


class Undo(Protocol):
    """A reversible fault's handle (:meth:`RunningLab.impair_link`, :meth:`RunningLab.limit_cpu`):
    ``undo()`` reverses the fault; a second call does nothing."""

    def undo(self) -> None: ...


class LabNodes(Protocol):
    """A running lab's nodes, as seen from the host: what code that works through namespace
    names needs (route reads, floods, link impairments, CPU limits).

    - ``name``: the lab's name (``dsrc-<name>.<node>`` namespaces, ``dsrc-<name>.*`` cgroups).
    - ``topology``: the topology it was brought up from (nodes, links, services, addresses).
    - ``netns(node)``: the node's namespace name under ``/run/netns``; ConfigError for a name
      that is not a node of the topology.
    - ``processes(node)``: host pids of the node's own processes, sorted.
    """

    name: str
    topology: Topology

    def netns(self, node: str) -> str: ...

    def processes(self, node: str) -> list[int]: ...


class RunningLab(LabNodes, Protocol):
    """A lab that is up, with its target deployed (bring-up done, teardown not begun): what
    targets, traffic, observation, fault and scenario code may use of it.

    Every ``node`` argument is a node name of :attr:`topology`: any other is a ConfigError,
    raised before anything changes.

    Where things are and run:

    - ``dir``: the lab's run directory (configurations, logs, captures); removed with the lab.
    - ``python``: the interpreter for Python programs inside a node (an argv for ``run`` or
      ``spawn`` starts with it); on a container backend, only the standard library and the
      repository (on ``PYTHONPATH``) are there.
    - ``deployment``: the target's stack running in the lab (:class:`dsrconform.target.Deployment`);
      None only while the target is being deployed and after teardown.
    - ``run(node, argv, timeout=, check=)``: run a command in the node and wait for it, output
      captured as text; with ``check`` a non-zero exit is a LabError.
    - ``spawn(node, argv, log=)``: start a long-running process in the node, its output
      appended to ``log`` (a file name relative to ``dir``); returns its host pid. It dies with
      the lab.
    - ``encapsulations``: the encapsulations the deployed target uses
      (:func:`dsrconform.target.target_encapsulations`, read when the lab is made): the
      hostile traffic forges packets in each of them (RB-4).
    - ``bgp(mux)``: the lab's BGP speaker on MUX node ``mux``
      (:class:`dsrconform.target.BgpSpeaker`): a target announces the VIPs it serves there.

    The lab owns the test environment (:mod:`dsrconform.lab.environment`): the server
    applications, the VIPs on the servers' ``lo`` in encap mode, BGP between the border router
    and every MUX, and the pass-through XDP program on the router's end of each MUX link. A
    target deploys only its own data plane and control plane into it.

    Faults, each recorded as an :class:`~dsrconform.lab.lab.Event` in ``events`` (monotonic
    time) and passed to every callable of ``listeners``, in the thread that caused it, once done:

    - ``kill_node(node)``: every process of the node dies at once and its interfaces go down (a
      dead box); ``restart_node(node)`` brings the interfaces up and has the deployment start
      again what runs there (:meth:`dsrconform.target.Deployment.restart`).
    - ``pause_node(node)`` / ``resume_node(node)``: freeze and thaw the node's processes (a hung
      control plane; the kernel data plane keeps forwarding).
    - ``link_set(node, ifname, up)``: one interface down or up.
    - ``set_backends(service, servers, draining=)``: as
      :meth:`dsrconform.target.Deployment.set_backends`; returns the sets before and after
      (``{"active": [...], "draining": [...]}``).
    - ``impair_link(a, b, loss=, drop=, rate_kbit=, direction=)`` and ``limit_cpu(node, cpus)``
      (:mod:`dsrconform.lab.faults`): return an :class:`Undo`, whose ``undo()`` is recorded too.

    ``fresh_client_ports(reserve)`` gives every client node a local port range that the last
    runs on this lab did not use and returns it (``reserve`` ports at its top left out of the
    kernel's range): each traffic run calls it first, so no run reuses an earlier run's
    5-tuples.
    """

    dir: Path
    python: str
    deployment: Deployment | None
    encapsulations: tuple[Encapsulation, ...]
    events: list[Event]
    listeners: list[Callable[[Event], None]]

    def run(
        self, node: str, argv: list[str], *, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...

    def spawn(self, node: str, argv: list[str], *, log: str) -> int: ...

    def bgp(self, mux: str) -> BgpSpeaker: ...

    def kill_node(self, node: str) -> None: ...

    def pause_node(self, node: str) -> None: ...

    def resume_node(self, node: str) -> None: ...

    def restart_node(self, node: str) -> None: ...

    def link_set(self, node: str, ifname: str, up: bool) -> None: ...

    def set_backends(
        self, service: str, servers: Sequence[str], *, draining: Sequence[str] = ()
    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]: ...

    def fresh_client_ports(self, reserve: int = 0) -> tuple[int, int]: ...

    def impair_link(
        self,
        a: str,
        b: str,
        *,
        loss: float = 0.0,
        drop: bool = False,
        rate_kbit: int | None = None,
        direction: str = "both",
    ) -> Undo: ...

    def limit_cpu(self, node: str, cpus: float) -> Undo: ...
