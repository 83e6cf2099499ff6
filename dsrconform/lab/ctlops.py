"""The lab controller's operations: what each :mod:`dsrconform.lab.ctlproto` request does to the
:class:`~dsrconform.lab.Lab` the controller holds (:mod:`dsrconform.lab.controller` is the process
around it, and says why a process holds the lab).

Requests are served one at a time, so two shells never change one lab at once. Node faults go
through the Lab's own methods (each recorded as a lab event, which the controller appends to
``events.jsonl``); impairments and CPU limits get an id, listed by ``status`` until ``undo``.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from dsrconform.errors import ConfigError, DsrConformError, LabError
from dsrconform.lab import ctlproto as proto
from dsrconform.lab import faults, registry
from dsrconform.lab.lab import Event, Lab
from dsrconform.topology import Topology

READ_TIMEOUT = 10.0
"""Seconds the controller waits for a connected client's request line."""


def neighbours(topo: Topology, node: str) -> list[str]:
    """The nodes one hop from ``node`` (links, and segments it hosts or is a member of)."""
    out: list[str] = []
    for link in topo.links:
        if node in link.ends:
            out += [n for n in link.ends if n != node]
    for seg in topo.segments:
        if seg.host == node:
            out += list(seg.members)
        elif node in seg.members:
            out.append(seg.host)
    return sorted(set(out))


@dataclass
class Fault:
    """An impairment or a CPU limit made through the controller, until ``undo``."""

    id: int
    node: str
    kind: str  # "impair" | "cpu"
    description: str
    undo: Callable[[], object]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "node": self.node,
            "kind": self.kind,
            "description": self.description,
        }


class Controller:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.faults: dict[int, Fault] = {}
        self._ids = itertools.count(1)
        self.killed: set[str] = set()
        self.paused: set[str] = set()
        self.done = False
        self._recorded: list[dict[str, Any]] = []
        self._events = proto.events_path(lab.name).open("a", encoding="utf-8")
        lab.listeners.append(self.on_event)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = proto.socket_path(lab.name)
        path.unlink(missing_ok=True)
        old = os.umask(0o077)  # root's only: the socket changes the lab
        try:
            self.sock.bind(str(path))
        finally:
            os.umask(old)
        self.sock.listen(16)

    # --- events and the record -------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        rec = proto.event_record(event.t, time.time(), event.action, event.subject, event.detail)
        self._recorded.append(rec)
        with suppress(OSError, ValueError):  # the run directory is gone (teardown)
            self._events.write(proto.json_line(rec))
            self._events.flush()

    def sync_record(self) -> None:
        """Name the controller in the lab's record, with every BPF id it holds (a MUX restarted
        since bring-up loaded new ones): a reaper that finds the controller alive stops it first
        and waits for those."""
        rec = registry.LabRecord.load(self.lab.name)
        if rec is None or rec.owner_pid != os.getpid():
            return
        progs, maps = registry.bpf_fd_ids()
        rec.bpf_progs = sorted(set(rec.bpf_progs) | progs)
        rec.bpf_maps = sorted(set(rec.bpf_maps) | maps)
        rec.info["controller"] = {"pid": os.getpid(), "socket": str(proto.socket_path(rec.name))}
        rec.save()

    # --- serving ---------------------------------------------------------------------------------

    def serve(self) -> None:
        while not self.done:
            conn, _ = self.sock.accept()
            with conn:
                self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        try:
            line = proto.read_line(conn, time.monotonic() + READ_TIMEOUT, "request")
        except LabError:
            return  # a client that sent no whole line: nothing to answer
        try:
            resp = self.handle(proto.decode(line))
        except DsrConformError as e:
            resp = proto.error_response(e)
        except Exception as e:  # an operation's own failure (OSError...): answered, not fatal
            resp = proto.error_response(e)
        with suppress(OSError):
            conn.settimeout(READ_TIMEOUT)
            conn.sendall(proto.encode(resp))

    def handle(self, raw: object) -> proto.Response:
        req = proto.check_request(raw)
        op = req["op"]
        self._recorded = []
        if op == "down":
            return self.down()
        result = getattr(self, "op_" + op.replace("-", "_"))(req)
        if op not in ("ping", "status"):
            self.sync_record()
        return proto.ok(result, self._recorded)

    def down(self) -> proto.Response:
        self.done = True
        removed = self.lab.down()
        progs, maps = registry.bpf_fd_ids()  # this process's: freed when it exits
        self._events.close()
        return proto.ok(
            {"removed": removed, "held": {"progs": sorted(progs), "maps": sorted(maps)}}
        )

    def close(self) -> None:
        """Tear the lab down unless done, and remove the socket (safe to call twice)."""
        with suppress(OSError):
            self.sock.close()
        if not self.done:
            self.done = True
            self.lab.down()
        proto.socket_path(self.lab.name).unlink(missing_ok=True)
        with suppress(OSError):
            self._events.close()

    # --- operations ------------------------------------------------------------------------------

    def _node(self, req: dict[str, Any]) -> str:
        node = str(req["node"])
        self.lab.netns(node)  # ConfigError naming the nodes
        return node

    def _peers(self, node: str, peer: str | None) -> list[str]:
        topo = self.lab.topology
        if peer is None:
            return neighbours(topo, node)
        if peer not in topo.nodes:
            self.lab.netns(peer)
        if peer not in neighbours(topo, node):
            raise ConfigError(
                f"{node} has no link to {peer!r}; fix: --peer one of "
                f"{', '.join(neighbours(topo, node))}"
            )
        return [peer]

    def op_ping(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"pid": os.getpid(), "lab": self.lab.name}

    def op_status(self, req: dict[str, Any]) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "faults": [f.as_dict() for f in self.faults.values()],
            "killed": sorted(self.killed),
            "paused": sorted(self.paused),
        }

    def op_kill(self, req: dict[str, Any]) -> dict[str, Any]:
        node = self._node(req)
        self.lab.kill_node(node)
        self.killed.add(node)
        self.paused.discard(node)
        return {"node": node}

    def op_pause(self, req: dict[str, Any]) -> dict[str, Any]:
        node = self._node(req)
        if node in self.paused:
            raise ConfigError(f"{node} is already paused; fix: `resume` it first")
        self.lab.pause_node(node)
        self.paused.add(node)
        return {"node": node}

    def op_resume(self, req: dict[str, Any]) -> dict[str, Any]:
        node = self._node(req)
        if node not in self.paused:
            raise ConfigError(
                f"{node} is not paused (paused: {', '.join(sorted(self.paused)) or 'none'})"
            )
        self.lab.resume_node(node)
        self.paused.discard(node)
        return {"node": node}

    def op_restart(self, req: dict[str, Any]) -> dict[str, Any]:
        """Bring a killed node back; a node that runs is killed first (a reboot)."""
        node = self._node(req)
        if node not in self.killed:
            self.lab.kill_node(node)
        self.paused.discard(node)
        self.lab.restart_node(node)
        self.killed.discard(node)
        return {"node": node}

    def _links(self, req: dict[str, Any], up: bool) -> dict[str, Any]:
        node = self._node(req)
        peer = req.get("peer")
        if peer is None:
            names = [i.ifname for i in self.lab.topology.interfaces() if i.node == node]
        else:
            self._peers(node, peer)
            names = [faults.link_interfaces(self.lab.topology, node, peer)[0]]
        for ifname in names:
            self.lab.link_set(node, ifname, up)
        return {"node": node, "interfaces": names}

    def op_link_down(self, req: dict[str, Any]) -> dict[str, Any]:
        return self._links(req, False)

    def op_link_up(self, req: dict[str, Any]) -> dict[str, Any]:
        return self._links(req, True)

    def _impair(
        self, req: dict[str, Any], *, loss: float = 0.0, drop: bool = False
    ) -> dict[str, Any]:
        node = self._node(req)
        direction = {"both": "both", "out": "a->b", "in": "b->a"}[req["direction"]]
        done: list[Any] = []
        try:
            for peer in self._peers(node, req.get("peer")):
                done.append(
                    self.lab.impair_link(node, peer, loss=loss, drop=drop, direction=direction)
                )
        except BaseException:
            for handle in done:
                with suppress(Exception):
                    handle.undo()
            raise
        peers = req.get("peer") or "every neighbour"
        what = "partition" if drop else f"{loss:g} % loss"
        desc = f"{what} between {node} and {peers} (direction {req['direction']})"
        return self._remember(node, "impair", desc, lambda: [h.undo() for h in done])

    def _remember(
        self, node: str, kind: str, desc: str, undo: Callable[[], object]
    ) -> dict[str, Any]:
        fault = Fault(next(self._ids), node, kind, desc, undo)
        self.faults[fault.id] = fault
        return fault.as_dict()

    def op_loss(self, req: dict[str, Any]) -> dict[str, Any]:
        return self._impair(req, loss=float(req["pct"]))

    def op_partition(self, req: dict[str, Any]) -> dict[str, Any]:
        return self._impair(req, drop=True)

    def op_cpu(self, req: dict[str, Any]) -> dict[str, Any]:
        node = self._node(req)
        for f in self.faults.values():
            if f.node == node and f.kind == "cpu":
                raise ConfigError(
                    f"{node} already has CPU limit {f.id} ({f.description}); "
                    f"fix: `undo {f.id}` first"
                )
        cpus = float(req["cpus"])
        handle = self.lab.limit_cpu(node, cpus)
        return self._remember(node, "cpu", f"{node} limited to {cpus:g} CPUs", handle.undo)

    def op_undo(self, req: dict[str, Any]) -> dict[str, Any]:
        node = self._node(req)
        mine = [f for f in self.faults.values() if f.node == node]
        if req["id"] == "all":
            chosen = mine
        else:
            chosen = [f for f in mine if f.id == req["id"]]
            if not chosen:
                listed = ", ".join(f"{f.id} ({f.description})" for f in mine) or "none"
                raise ConfigError(
                    f"no impairment or CPU limit {req['id']} on {node}; "
                    f"{node}'s: {listed} (`dsrconform lab status` lists all)"
                )
        for f in chosen:
            f.undo()
            del self.faults[f.id]
        return {"undone": [f.as_dict() for f in chosen]}

    def op_backends(self, req: dict[str, Any]) -> dict[str, Any]:
        dep = self.lab.deployment
        if dep is None:
            raise LabError(f"lab {self.lab.name} has no deployment")
        service = str(req["service"])
        current = dep.backends(service)
        active, draining = req.get("active"), req.get("draining")
        if active is None and draining is None:
            return {"service": service, "before": current, "after": current}
        drain = list(draining or [])
        if active is None:  # drain some of the active servers: the others stay active
            active = [s for s in current["active"] if s not in drain]
        before, after = self.lab.set_backends(service, active, draining=drain)
        return {"service": service, "before": before, "after": after}
