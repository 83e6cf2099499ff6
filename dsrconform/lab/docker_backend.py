"""The ``docker`` lab backend: each node is a container (``--network none``) whose network namespace
is made visible as ``/run/netns/dsrc-<lab>.<node>``, so everything that works through namespace
names (links and segments, addresses, routes, sysctls: :func:`~dsrconform.lab.netns_backend.plumb`;
tc/XDP attach from the host, the reaper's process lookup) is the netns backend's, unchanged.

Each node is two containers, as in a Kubernetes pod: ``dsrc-<lab>.<node>.net`` only holds the
network namespace (it runs ``sleep``), and ``dsrc-<lab>.<node>`` runs the node's programs inside
that namespace (``--network container:...``). So ``docker kill`` of a node ends its programs
while its interfaces stay, and ``docker start`` brings it back into the same namespace.

What differs from the netns backend:

- a node's processes run *inside* its container (``docker exec``): its own file system (the
  node image, :mod:`dsrconform.lab.image`), its own PID namespace, and ``docker pause`` /
  ``docker kill`` as the node faults;
- Python programs run with the image's ``python3`` (:attr:`DockerBackend.python`), on the
  repository bind-mounted read-only at its host path (``PYTHONPATH``), so they may use only the
  standard library;
- the lab's run directory is bind-mounted at its host path: configurations, BIRD's control
  sockets, logs and ready files are the same files on both sides.

Containers are named like the namespaces (``dsrc-<lab>.<node>``, a legal container name) and
carry the label ``dsrconform.lab=<lab>``; :func:`dsrconform.lab.registry.reap` removes them.
No container is privileged: the data plane is attached from the host; BIRD gets CAP_NET_ADMIN
and CAP_NET_RAW to install routes.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any

import dsrconform
from dsrconform.errors import LabError
from dsrconform.lab import image, registry
from dsrconform.lab.netns_backend import plumb, run_in_node
from dsrconform.topology import Topology

REPO = Path(dsrconform.__file__).resolve().parent.parent  # the directory holding dsrconform/
NODE_LABEL = "dsrconform.node"
CAPS = ["NET_ADMIN", "NET_RAW"]
# Runs a detached ``docker exec`` with its output appended to a file of the shared run directory.
_LOGGED = 'exec "$@" >>"$DSRC_LOG" 2>&1 </dev/null'


class DockerBackend:
    """Brings a :class:`~dsrconform.topology.Topology` to life in containers named
    ``dsrc-<lab>.<node>`` whose namespaces are attached under the same names (a
    :class:`~dsrconform.lab.protocol.LabBackend`)."""

    kind = "docker"
    python = "python3"  # the image's interpreter

    def __init__(self, lab: str) -> None:
        self.lab = lab
        self.die_with_owner = False
        """Not used: a node's processes run in its container, which outlives this process until
        ``lab down`` or the reaper removes it (:mod:`dsrconform.lab.registry`)."""
        self._client: Any = None
        self._local = threading.local()

    def netns(self, node: str) -> str:
        return registry.ns_name(self.lab, node)

    def container(self, node: str) -> str:
        return registry.ns_name(self.lab, node)

    def holder(self, node: str) -> str:
        """The container that holds ``node``'s network namespace."""
        return registry.ns_name(self.lab, node) + ".net"

    @property
    def client(self) -> Any:
        """The engine client, or a :class:`LabError` telling how to start the engine."""
        if self._client is None:
            self._client = image.docker_client()
        return self._client

    # --- lifecycle -------------------------------------------------------------------------------

    def create(self, topo: Topology) -> None:
        client = self.client
        left = registry.lab_containers(self.lab)
        taken = [n for n in topo.nodes if (registry.NETNS_DIR / self.netns(n)).exists()]
        if left or taken:
            raise LabError(
                f"lab {self.lab!r} left {len(left)} container(s) and {len(taken)} namespace(s) "
                f"behind; fix: `dsrconform lab down {self.lab}`"
            )
        ref = image.ensure(client=client)
        labdir = registry.lab_dir(self.lab)
        labdir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=min(8, len(topo.nodes))) as pool:
            for fut in [pool.submit(self._start, node, ref, labdir) for node in topo.nodes]:
                fut.result()  # the first failure raises; the caller tears everything down
        plumb(topo, self.netns)

    def destroy(self) -> dict[str, list[str]]:
        """Containers and namespaces (:func:`dsrconform.lab.registry.reap` removes both)."""
        return registry.reap(self.lab)

    def _thread_client(self) -> Any:
        """One engine client per thread (containers are started in parallel)."""
        if getattr(self._local, "client", None) is None:
            self._local.client = image.docker_client()
        return self._local.client

    def _start(self, node: str, ref: str, labdir: Path) -> None:
        from docker.errors import APIError

        client = self._thread_client()
        labels = {registry.DOCKER_LABEL: self.lab, NODE_LABEL: node}
        try:
            holder = client.containers.run(
                ref, ["sleep", "infinity"], name=self.holder(node), hostname=node, detach=True,
                network_mode="none", init=True, labels=labels,
            )  # fmt: skip
            client.containers.run(
                ref, ["sleep", "infinity"], name=self.container(node), detach=True,
                network_mode=f"container:{self.holder(node)}", cap_add=CAPS, init=True,
                labels=labels,
                volumes={str(labdir): {"bind": str(labdir), "mode": "rw"},
                         str(REPO): {"bind": str(REPO), "mode": "ro"}},
                environment={"PYTHONPATH": str(REPO)}, working_dir=str(REPO),
            )  # fmt: skip
        except APIError as e:
            raise LabError(f"{node}: starting its containers: {e.explanation or e}") from None
        holder.reload()
        pid = holder.attrs["State"]["Pid"]
        res = subprocess.run(["ip", "netns", "attach", self.netns(node), str(pid)],
                             capture_output=True, text=True)  # fmt: skip
        if res.returncode != 0:
            raise LabError(
                f"{node}: ip netns attach {self.netns(node)} {pid}: {res.stderr.strip()}"
            )

    # --- processes ------------------------------------------------------------------------------

    def _argv(self, argv: list[str]) -> list[str]:
        """The host's interpreter path means nothing inside a node: use the image's."""
        return [self.python, *argv[1:]] if argv[:1] == [sys.executable] else list(argv)

    def spawn(
        self, node: str, argv: list[str], *, log: Path, env: dict[str, str] | None = None
    ) -> int:
        """Start a long-running process inside ``node``'s container (a detached ``docker exec``)
        with its output appended to ``log`` (in the lab's directory, shared with the container);
        returns its host pid. ``env`` adds to the container's environment."""
        labdir = registry.lab_dir(self.lab)
        if not log.resolve().is_relative_to(labdir.resolve()):
            raise LabError(f"{node}: log {log} must be inside the lab directory {labdir}")
        log.parent.mkdir(parents=True, exist_ok=True)
        api = self.client.api
        cmd = ["sh", "-c", _LOGGED, "sh", *self._argv(argv)]
        try:
            ex = api.exec_create(self.container(node), cmd, stdout=False, stderr=False,
                                 environment={**(env or {}), "DSRC_LOG": str(log)})  # fmt: skip
            api.exec_start(ex["Id"], detach=True)
        except Exception as e:
            state = self._container(node).status
            if state != "running":
                raise LabError(
                    f"{node}: cannot start {argv[0]}: its container is {state}; fix: "
                    "restart_node() first"
                ) from None
            raise LabError(f"{node}: docker exec {argv[0]}: {e}") from None
        deadline = time.monotonic() + 5
        while True:
            info = api.exec_inspect(ex["Id"])
            if info.get("Pid") or (not info.get("Running") and info.get("ExitCode") is not None):
                return int(info.get("Pid") or 0)
            if time.monotonic() > deadline:
                raise LabError(f"{node}: docker exec {argv[0]} did not start in 5 s")
            time.sleep(0.01)  # the exec is being started; bounded by the deadline above

    def run(
        self, node: str, argv: list[str], *, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside ``node``'s container and wait for it (:meth:`run_argv`)."""
        return run_in_node(self.run_argv(node, argv), node, argv, timeout=timeout, check=check)

    def run_argv(self, node: str, argv: list[str]) -> list[str]:
        """``docker exec`` into ``node``'s container (what :meth:`run` runs)."""
        return ["docker", "exec", self.container(node), *self._argv(argv)]

    def exec_argv(self, node: str, argv: list[str]) -> list[str]:
        tty = ["-t"] if sys.stdin.isatty() and sys.stdout.isatty() else []
        return ["docker", "exec", "-i", *tty, self.container(node), *self._argv(argv)]

    # --- node faults -----------------------------------------------------------------------------

    def _container(self, node: str) -> Any:
        from docker.errors import NotFound

        try:
            return self.client.containers.get(self.container(node))
        except NotFound:
            raise LabError(f"{node}: container {self.container(node)} is gone") from None

    def processes(self, node: str) -> list[int]:
        """The node container's processes (not the namespace holder's)."""
        c = self._container(node)
        init = c.attrs.get("State", {}).get("Pid") if c.status in ("running", "paused") else 0
        if not init:
            return []
        try:
            pidns = Path(f"/proc/{init}/ns/pid").stat().st_ino
        except OSError:
            return []
        out = []
        for pid in registry.pids_in_namespaces([self.netns(node)]):
            with suppress(OSError):
                if Path(f"/proc/{pid}/ns/pid").stat().st_ino == pidns:
                    out.append(pid)
        return sorted(out)

    def kill(self, node: str) -> list[int]:
        """``docker kill`` of the node's container: its programs die at once; the namespace and
        interfaces stay with the holder container, as a dead box's cables do."""
        pids = self.processes(node)
        c = self._container(node)
        if c.status == "paused":
            c.unpause()  # a frozen process cannot die; the kill follows at once
        c.kill()
        c.wait(timeout=10)  # the container's processes are gone when it has stopped
        return pids

    def revive(self, node: str) -> None:
        """``docker start``: the node's container runs again, in the same namespace."""
        c = self._container(node)
        if c.status != "running":
            c.start()
            c.reload()
            if c.status != "running":
                raise LabError(f"{node}: container {c.name} is {c.status} after docker start")

    def pause(self, node: str) -> list[int]:
        """``docker pause``: the node's processes are frozen (cgroup freezer)."""
        pids = self.processes(node)
        self._container(node).pause()
        return pids

    def resume(self, node: str, pids: list[int]) -> None:
        c = self._container(node)
        if c.status == "paused":
            c.unpause()

    def set_link(self, node: str, ifname: str, up: bool) -> None:
        """From the host, through the namespace's name: works on a paused or killed node too."""
        res = subprocess.run(
            ["ip", "-n", self.netns(node), "link", "set", ifname, "up" if up else "down"],
            capture_output=True, text=True,
        )  # fmt: skip
        if res.returncode != 0:
            raise LabError(f"{node}: ip link set {ifname}: {res.stderr.strip()}")
