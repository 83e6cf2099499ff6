"""The fault library: each fault a small pydantic model whose fields are its parameters (a
scenario file's ``fault:`` mapping validates straight into one; ``kind`` picks the class).

Every class follows the contract of :mod:`dsrconform.chaos.fault`. What acts on the lab is the
lab's own API (kill, pause, restart, link impairment, CPU limits, backend changes) and the border
router's FIB (:mod:`dsrconform.observe.routes`): nothing here knows the stack under test.
"""

from __future__ import annotations

import subprocess
import time
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from dsrconform.chaos.fault import Say, Step, window
from dsrconform.errors import ConfigError, LabError
from dsrconform.observe.observations import FaultWindow
from dsrconform.topology import Service, Topology

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab

__all__ = [
    "ConfigChange",
    "MuxAdd",
    "MuxHang",
    "MuxKill",
    "MuxRestart",
    "RouteWithdraw",
    "ServerAdd",
    "ServerDrain",
    "ServerMove",
    "ServerRemove",
    "failover_mux",
]

ROUTE_TIMEOUT = 20.0
"""Seconds a MUX fault waits at most for the router's VIP routes to change."""
BGP_PORT = 179


class _Base(BaseModel):
    """Parameters, validated; runtime state in private attributes (not parameters)."""

    model_config = ConfigDict(extra="forbid", frozen=False)
    kind: str
    lasting: ClassVar[bool] = True
    _windows: list[FaultWindow] = PrivateAttr(default_factory=list)

    def describe(self) -> str:
        params = self.model_dump(exclude={"kind"}, exclude_none=True, exclude_defaults=True)
        args = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
        return f"{self.kind}({args})"

    def expected_seconds(self) -> float:
        return 0.0

    def setup(self, lab: RunningLab, say: Say) -> None:
        self._windows = []

    def windows(self) -> list[FaultWindow]:
        return list(self._windows)


def _short(value: object) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return f"[{len(value)} faults]"
    return str(value)


# --- MUX faults -----------------------------------------------------------------------------------


def failover_mux(topo: Topology) -> str:
    """The MUX a failure fails by default: the last one every service of which another MUX also
    serves (failing a per-MUX VIP's only MUX takes the service down, which no requirement asks
    to survive)."""
    muxes = topo.of_role("mux")
    for mux in reversed(muxes):
        if all(
            any(other != mux and svc in topo.services_of_mux(other) for other in muxes)
            for svc in topo.services_of_mux(mux)
        ):
            return mux
    raise ConfigError(
        f"lab {topo.name}: no MUX can fail with its services still served by another MUX; "
        "fix: a topology with at least two MUXes announcing each VIP of one of them, or name "
        "the MUX (node: ...)"
    )


def _mux(topo: Topology, node: str | None) -> str:
    if node is None:
        return failover_mux(topo)
    if node not in topo.nodes or topo.nodes[node].role != "mux":
        raise ConfigError(
            f"node {node!r} is not a MUX of lab {topo.name}; fix: one of "
            f"{', '.join(topo.of_role('mux'))}"
        )
    return node


class _MuxFault(_Base):
    node: str | None = None
    """The MUX (default: the failover MUX, :func:`failover_mux`)."""
    _target: str = PrivateAttr(default="")
    _addr: str = PrivateAttr(default="")
    _before: dict[str, list[str]] = PrivateAttr(default_factory=dict)
    _started: float | None = PrivateAttr(default=None)
    _withdrawn: float | None = PrivateAttr(default=None)

    def setup(self, lab: RunningLab, say: Say) -> None:
        from dsrconform.observe.routes import vip_next_hops

        super().setup(lab, say)
        self._target = _mux(lab.topology, self.node)
        self._addr = lab.topology.uplink(self._target).ip
        self._before = vip_next_hops(lab)
        self._started = self._withdrawn = None
        if not any(self._addr in hops for hops in self._before.values()):
            raise LabError(
                f"{self._target} ({self._addr}) carries no VIP route before its {self.kind}: "
                f"{self._before}"
            )

    def _wait_withdrawn(self, lab: RunningLab, say: Say, what: str) -> None:
        from dsrconform.observe.routes import wait_routes

        addr = self._addr
        self._withdrawn, _ = wait_routes(
            lab,
            lambda hops: all(addr not in h for h in hops.values()),
            timeout=ROUTE_TIMEOUT,
            what=f"the withdrawal of {self._target}'s routes after its {what}",
        )
        self._windows.append(window("route-withdrawn", self._withdrawn, target=self._target))
        say(
            f"{self._target}'s routes withdrawn {self._withdrawn - (self._started or 0):.2f} s "
            f"after the {what}"
        )

    def _wait_back(self, lab: RunningLab, say: Say, since: float) -> float:
        from dsrconform.observe.routes import wait_routes

        before = self._before
        returned, _ = wait_routes(
            lab,
            lambda hops: hops == before,
            timeout=ROUTE_TIMEOUT,
            what=f"the return of {self._target}'s routes",
        )
        say(f"{self._target} back; its routes returned {returned - since:.2f} s later")
        return returned


class MuxKill(_MuxFault):
    """Kill every process of a MUX and bring its links down (its BGP session is lost); revert
    restarts it with empty state. Windows: ``mux-fail`` (kill to restart), ``route-withdrawn``,
    ``mux-rejoin`` (restart until its routes are back)."""

    kind: Literal["mux-kill"] = "mux-kill"

    def expected_seconds(self) -> float:
        return 1.0

    def plan(self, topo: Topology) -> list[Step]:
        mux = _mux(topo, self.node)
        return [
            Step("invoke", "kill", mux, "every process killed, its links down"),
            Step("invoke", "wait-routes", mux, "the router withdraws its VIP routes", waits=True),
            Step("revert", "restart", mux, "links up, the target restarts it, empty"),
            Step("revert", "wait-routes", mux, "its VIP routes are back", waits=True),
        ]

    def invoke(self, lab: RunningLab, say: Say) -> None:
        say(f"kill {self._target}")
        self._started = time.monotonic()
        lab.kill_node(self._target)
        self._wait_withdrawn(lab, say, "kill")

    def revert(self, lab: RunningLab, say: Say) -> None:
        if self._started is None:
            return
        back = time.monotonic()
        started, self._started = self._started, None
        lab.restart_node(self._target)
        self._windows.append(
            window("mux-fail", started, back, target=self._target, detail={"how": "kill"})
        )
        returned = self._wait_back(lab, say, back)
        self._windows.append(window("mux-rejoin", back, returned, target=self._target))


class MuxHang(_MuxFault):
    """Stop every process of a MUX (SIGSTOP: its data plane keeps running, the router withdraws
    it when the BGP hold timer expires); revert resumes it with its state intact. Windows:
    ``mux-fail`` (how: hang), ``route-withdrawn``."""

    kind: Literal["mux-hang"] = "mux-hang"

    def expected_seconds(self) -> float:
        return 3.5  # the lab's BGP hold time, 3 s

    def plan(self, topo: Topology) -> list[Step]:
        mux = _mux(topo, self.node)
        return [
            Step("invoke", "pause", mux, "every process stopped (SIGSTOP)"),
            Step("invoke", "wait-routes", mux, "hold timer expired, routes withdrawn", waits=True),
            Step("revert", "resume", mux, "processes continue, state intact"),
            Step("revert", "wait-routes", mux, "its VIP routes are back", waits=True),
        ]

    def invoke(self, lab: RunningLab, say: Say) -> None:
        say(f"hang {self._target}")
        self._started = time.monotonic()
        lab.pause_node(self._target)
        self._wait_withdrawn(lab, say, "hang")

    def revert(self, lab: RunningLab, say: Say) -> None:
        if self._started is None:
            return
        back = time.monotonic()
        started, self._started = self._started, None
        lab.resume_node(self._target)
        self._windows.append(
            window("mux-fail", started, back, target=self._target, detail={"how": "hang"})
        )
        self._wait_back(lab, say, back)


class MuxRestart(_MuxFault):
    """Kill a MUX and restart it at once (a rolling restart's step); returns once its routes are
    back. Not lasting: nothing to revert once it is back. Windows: ``mux-fail``,
    ``route-withdrawn`` (if the router noticed), ``mux-rejoin``."""

    kind: Literal["mux-restart"] = "mux-restart"
    lasting: ClassVar[bool] = False
    _killed: bool = PrivateAttr(default=False)

    def expected_seconds(self) -> float:
        return 3.0

    def plan(self, topo: Topology) -> list[Step]:
        mux = _mux(topo, self.node)
        return [
            Step("invoke", "kill", mux, "every process killed, its links down"),
            Step("invoke", "wait-routes", mux, "the router withdraws its VIP routes", waits=True),
            Step("invoke", "restart", mux, "links up, the target restarts it, empty"),
            Step("invoke", "wait-routes", mux, "its VIP routes are back", waits=True),
            Step("revert", "restart", mux, "only if the invoke stopped before the restart"),
        ]

    def invoke(self, lab: RunningLab, say: Say) -> None:
        say(f"restart {self._target}")
        self._started = time.monotonic()
        self._killed = True
        lab.kill_node(self._target)
        self._wait_withdrawn(lab, say, "kill")
        self._bring_back(lab, say)

    def _bring_back(self, lab: RunningLab, say: Say) -> None:
        back = time.monotonic()
        self._killed = False
        lab.restart_node(self._target)
        self._windows.append(
            window(
                "mux-fail",
                self._started or back,
                back,
                target=self._target,
                detail={"how": "restart"},
            )
        )
        returned = self._wait_back(lab, say, back)
        self._windows.append(window("mux-rejoin", back, returned, target=self._target))

    def revert(self, lab: RunningLab, say: Say) -> None:
        if self._killed:
            self._bring_back(lab, say)


class MuxAdd(_MuxFault):
    """A MUX joins: setup takes it out (before the traffic: killed, its routes withdrawn),
    invoke starts it and waits for its routes. Window ``mux-add`` (start until its routes are
    back). Revert brings it back if it is still out."""

    kind: Literal["mux-add"] = "mux-add"
    lasting: ClassVar[bool] = False
    _out: bool = PrivateAttr(default=False)

    def expected_seconds(self) -> float:
        return 2.0

    def plan(self, topo: Topology) -> list[Step]:
        mux = _mux(topo, self.node)
        return [
            Step("setup", "kill", mux, "taken out before the traffic starts"),
            Step("setup", "wait-routes", mux, "its VIP routes withdrawn", waits=True),
            Step("invoke", "restart", mux, "it joins, empty"),
            Step("invoke", "wait-routes", mux, "its VIP routes are there", waits=True),
            Step("revert", "restart", mux, "only if it is still out"),
        ]

    def setup(self, lab: RunningLab, say: Say) -> None:
        super().setup(lab, say)
        self._started = time.monotonic()
        self._out = True
        lab.kill_node(self._target)
        self._wait_withdrawn(lab, say, "removal")
        self._windows = []  # the removal is the starting state, not part of the fault

    def invoke(self, lab: RunningLab, say: Say) -> None:
        say(f"add {self._target}")
        start = time.monotonic()
        self._out = False
        lab.restart_node(self._target)
        returned = self._wait_back(lab, say, start)
        self._windows.append(window("mux-add", start, returned, target=self._target))

    def revert(self, lab: RunningLab, say: Say) -> None:
        if self._out:
            self._out = False
            lab.restart_node(self._target)
            self._wait_back(lab, say, time.monotonic())


class RouteWithdraw(_MuxFault):
    """The MUX's BGP session is cut (TCP port 179 dropped on the router's link to it, by
    nftables) while the MUX keeps running: the router withdraws its routes when the hold timer
    expires. Revert lifts the filter and waits for the routes. Window ``route-withdrawn``."""

    kind: Literal["route-withdraw"] = "route-withdraw"
    _table: str = PrivateAttr(default="")

    def expected_seconds(self) -> float:
        return 3.5

    def plan(self, topo: Topology) -> list[Step]:
        mux = _mux(topo, self.node)
        return [
            Step("invoke", "nft-drop", f"{topo.router}-{mux}", "BGP (TCP 179) dropped"),
            Step("invoke", "wait-routes", mux, "hold timer expired, routes withdrawn", waits=True),
            Step("revert", "nft-delete", f"{topo.router}-{mux}", "BGP allowed again"),
            Step("revert", "wait-routes", mux, "its VIP routes are back", waits=True),
        ]

    def invoke(self, lab: RunningLab, say: Say) -> None:
        topo = lab.topology
        router = topo.router
        ifname = topo.uplink(router, self._target).ifname
        table = f"dsrc_bgp_{self._target}"
        say(f"cut {self._target}'s BGP session")
        self._started = time.monotonic()
        self._table = table
        _nft(
            lab.netns(router),
            (
                f'table netdev {table} {{\n chain in {{ type filter hook ingress device "{ifname}" '
                f"priority -500; tcp sport {BGP_PORT} drop; tcp dport {BGP_PORT} drop; }}\n}}\n"
            ),
        )
        self._wait_withdrawn(lab, say, "BGP cut")

    def revert(self, lab: RunningLab, say: Say) -> None:
        if not self._table:
            return
        back = time.monotonic()
        table, self._table = self._table, ""
        _nft(lab.netns(lab.topology.router), f"delete table netdev {table}\n")
        if self._started is not None:
            self._wait_back(lab, say, back)


def _nft(ns: str, script: str) -> None:
    res = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"],
        input=script,
        text=True,
        capture_output=True,
        timeout=10,
    )
    if res.returncode != 0:
        raise LabError(f"nft in {ns}: {res.stderr.strip()}")


# --- backend changes ------------------------------------------------------------------------------


def _service(topo: Topology, name: str | None) -> Service:
    if name is None:
        svc = next((s for s in topo.services if s.proto == "tcp"), None)
        if svc is None:
            raise ConfigError(f"lab {topo.name} has no TCP service; fix: name the service")
        return svc
    for s in topo.services:
        if s.name == name:
            return s
    raise ConfigError(
        f"no service {name!r} in lab {topo.name}; fix: one of "
        f"{', '.join(s.name for s in topo.services)}"
    )


class _BackendFault(_Base):
    service: str | None = None
    """The service (default: the lab's first TCP service)."""
    _start: dict[str, dict[str, list[str]]] = PrivateAttr(default_factory=dict)
    _changed: bool = PrivateAttr(default=False)

    def expected_seconds(self) -> float:
        return 0.1

    def _services(self, topo: Topology) -> list[Service]:
        return [_service(topo, self.service)]

    def _sets(self, topo: Topology, svc: Service, active: list[str]) -> dict[str, list[str]]:
        raise NotImplementedError

    def setup(self, lab: RunningLab, say: Say) -> None:
        super().setup(lab, say)
        if lab.deployment is None:
            raise LabError(f"lab {lab.name} has no deployment to change backends on")
        self._start = {
            s.name: lab.deployment.backends(s.name) for s in self._services(lab.topology)
        }
        self._changed = False

    def _change(
        self,
        lab: RunningLab,
        say: Say,
        kind: str,
        svc: Service,
        active: list[str],
        draining: list[str],
        target: str | None,
    ) -> None:
        self._changed = True
        t = time.monotonic()
        before, after = lab.set_backends(svc.name, active, draining=draining)
        self._windows.append(
            window(
                kind,
                t,
                time.monotonic(),
                target=target,
                vip=svc.vip,
                backends_before=before["active"],
                backends_after=after["active"],
            )
        )
        drain = f", draining {', '.join(after['draining'])}" if after["draining"] else ""
        say(f"{svc.name}: {kind} {target or ''} -> {', '.join(after['active'])}{drain}")

    def revert(self, lab: RunningLab, say: Say) -> None:
        """Every service this fault changed gets its starting sets back, each on its own (one
        failing does not keep the others changed); a failure is raised once all were tried."""
        if not self._changed or lab.deployment is None:
            return
        self._changed = False
        failed: list[str] = []
        for name, sets in self._start.items():
            try:
                if lab.deployment.backends(name) == sets:
                    continue
                t = time.monotonic()
                before, after = lab.set_backends(name, sets["active"], draining=sets["draining"])
            except (ConfigError, LabError, OSError) as e:
                failed.append(f"{name}: {type(e).__name__}: {e}")
                continue
            svc = _service(lab.topology, name)
            self._close_windows(t)
            self._windows.append(
                window(
                    "backend-add",
                    t,
                    time.monotonic(),
                    target=None,
                    vip=svc.vip,
                    backends_before=before["active"],
                    backends_after=after["active"],
                    detail={"revert": True},
                )
            )
            say(f"{name}: restored -> {', '.join(after['active'])}")
        if failed:
            raise LabError("backend sets not restored: " + "; ".join(failed))

    def _close_windows(self, at: float) -> None:
        """A drain lasts until it is undone: its window ends when the sets are restored."""
        self._windows = [
            w.model_copy(update={"end": at}) if w.kind == "backend-drain" else w
            for w in self._windows
        ]


class _OneServer(_BackendFault):
    server: str | None = None
    """The server (default: the service's last server)."""

    def _server(self, topo: Topology, svc: Service) -> str:
        servers = topo.servers_of(svc)
        if self.server is None:
            return servers[-1]
        if self.server not in servers:
            raise ConfigError(
                f"server {self.server!r} does not run service {svc.name}; fix: one of "
                f"{', '.join(servers)}"
            )
        return self.server


class ServerRemove(_OneServer):
    """Take a server out of a service's active set; revert puts the starting sets back
    (window ``backend-remove``, then ``backend-add``)."""

    kind: Literal["server-remove"] = "server-remove"

    def plan(self, topo: Topology) -> list[Step]:
        svc = _service(topo, self.service)
        gone = self._server(topo, svc)
        if len(topo.servers_of(svc)) < 2:
            raise ConfigError(f"service {svc.name} has one server: removing it leaves none")
        return [
            Step("invoke", "set-backends", svc.name, f"{gone} removed"),
            Step("revert", "set-backends", svc.name, "starting sets restored"),
        ]

    def invoke(self, lab: RunningLab, say: Say) -> None:
        svc = _service(lab.topology, self.service)
        gone = self._server(lab.topology, svc)
        sets = self._start[svc.name]
        active = [s for s in sets["active"] if s != gone]
        self._change(lab, say, "backend-remove", svc, active, sets["draining"], gone)


class ServerDrain(_OneServer):
    """Drain a server: no new flows, its established flows stay; revert makes it active again
    (window ``backend-drain`` until then, then ``backend-add``)."""

    kind: Literal["server-drain"] = "server-drain"

    def plan(self, topo: Topology) -> list[Step]:
        svc = _service(topo, self.service)
        return [
            Step("invoke", "set-backends", svc.name, f"{self._server(topo, svc)} draining"),
            Step("revert", "set-backends", svc.name, "starting sets restored"),
        ]

    def invoke(self, lab: RunningLab, say: Say) -> None:
        svc = _service(lab.topology, self.service)
        drained = self._server(lab.topology, svc)
        sets = self._start[svc.name]
        active = [s for s in sets["active"] if s != drained]
        draining = sorted({*sets["draining"], drained})
        self._change(lab, say, "backend-drain", svc, active, draining, drained)


class ServerAdd(_OneServer):
    """Scale out: setup takes the server out (before the traffic starts), invoke adds it
    (window ``backend-add``); revert puts the starting sets back."""

    kind: Literal["server-add"] = "server-add"
    lasting: ClassVar[bool] = False

    def plan(self, topo: Topology) -> list[Step]:
        svc = _service(topo, self.service)
        added = self._server(topo, svc)
        return [
            Step("setup", "set-backends", svc.name, f"{added} out before the traffic"),
            Step("invoke", "set-backends", svc.name, f"{added} added"),
            Step("revert", "set-backends", svc.name, "starting sets restored"),
        ]

    def setup(self, lab: RunningLab, say: Say) -> None:
        super().setup(lab, say)
        svc = _service(lab.topology, self.service)
        added = self._server(lab.topology, svc)
        sets = self._start[svc.name]
        if added in sets["active"]:
            self._changed = True
            lab.set_backends(
                svc.name, [s for s in sets["active"] if s != added], draining=sets["draining"]
            )

    def invoke(self, lab: RunningLab, say: Say) -> None:
        svc = _service(lab.topology, self.service)
        added = self._server(lab.topology, svc)
        sets = self._start[svc.name]
        active = sorted({*sets["active"], added})
        self._change(lab, say, "backend-add", svc, active, sets["draining"], added)


class ConfigChange(_BackendFault):
    """A configuration push: a service's whole backend configuration replaced on every MUX that
    serves it (a backend-change window, :meth:`invoke`); revert restores the starting sets."""

    kind: Literal["config-change"] = "config-change"
    active: list[str]
    draining: list[str] = Field(default_factory=list)

    def plan(self, topo: Topology) -> list[Step]:
        svc = _service(topo, self.service)
        runs = topo.servers_of(svc)
        bad = [s for s in [*self.active, *self.draining] if s not in runs]
        if bad or not self.active:
            raise ConfigError(
                f"config-change of {svc.name}: active must name at least one of "
                f"{', '.join(runs)}" + (f"; not servers of it: {', '.join(bad)}" if bad else "")
            )
        drain = f", draining {', '.join(self.draining)}" if self.draining else ""
        return [
            Step("invoke", "set-backends", svc.name, f"-> {', '.join(self.active)}{drain}"),
            Step("revert", "set-backends", svc.name, "starting sets restored"),
        ]

    def invoke(self, lab: RunningLab, say: Say) -> None:
        """The window's kind says what the push did to the servers (the SC requirements judge
        backend changes by kind): a removal if it took any out, else a drain, else an add."""
        svc = _service(lab.topology, self.service)
        start = self._start[svc.name]
        if set(start["active"]) - set(self.active) - set(self.draining):
            kind = "backend-remove"
        elif set(self.draining) - set(start["draining"]):
            kind = "backend-drain"
        else:
            kind = "backend-add"
        self._change(lab, say, kind, svc, self.active, self.draining, None)


class ServerMove(_BackendFault):
    """A server re-associated from one service (one MUX's VIP) to another (the seed's "Server D
    is now associated with MUX 3"): drained from ``source`` (its flows there keep running) and
    added to ``destination``. Revert restores both services' sets."""

    kind: Literal["server-move"] = "server-move"
    server: str
    source: str
    destination: str

    def _services(self, topo: Topology) -> list[Service]:
        return [_service(topo, self.source), _service(topo, self.destination)]

    def plan(self, topo: Topology) -> list[Step]:
        src, dst = self._services(topo)
        for svc in (src, dst):
            if self.server not in topo.servers_of(svc):
                raise ConfigError(
                    f"server-move: {self.server} does not run service {svc.name}'s application; "
                    f"fix: a server of both (of {src.name}: {', '.join(topo.servers_of(src))})"
                )
        return [
            Step("setup", "set-backends", dst.name, f"{self.server} out before the traffic"),
            Step("invoke", "set-backends", src.name, f"{self.server} draining"),
            Step("invoke", "set-backends", dst.name, f"{self.server} added"),
            Step("revert", "set-backends", f"{src.name}, {dst.name}", "starting sets restored"),
        ]

    def setup(self, lab: RunningLab, say: Say) -> None:
        super().setup(lab, say)
        dst = _service(lab.topology, self.destination)
        sets = self._start[dst.name]
        if self.server in sets["active"]:
            self._changed = True
            lab.set_backends(
                dst.name, [s for s in sets["active"] if s != self.server], draining=sets["draining"]
            )

    def invoke(self, lab: RunningLab, say: Say) -> None:
        src, dst = self._services(lab.topology)
        s_sets, d_sets = self._start[src.name], self._start[dst.name]
        self._change(
            lab,
            say,
            "backend-drain",
            src,
            [s for s in s_sets["active"] if s != self.server],
            sorted({*s_sets["draining"], self.server}),
            self.server,
        )
        self._change(
            lab,
            say,
            "backend-add",
            dst,
            sorted({*d_sets["active"], self.server}),
            d_sets["draining"],
            self.server,
        )
