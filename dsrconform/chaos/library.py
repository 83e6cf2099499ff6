"""The fault library's base and its backend faults: each fault a small pydantic model whose fields
are its parameters (a scenario file's ``fault:`` mapping validates straight into one; ``kind``
picks the class, :mod:`dsrconform.chaos.kinds`). MUX faults are in
:mod:`dsrconform.chaos.muxfaults`, network, resource and traffic faults in
:mod:`dsrconform.chaos.netfaults`.

Every class follows the contract of :mod:`dsrconform.chaos.fault`. What acts on the lab is the
lab's own API (kill, pause, restart, link impairment, CPU limits, backend changes) and the border
router's FIB (:mod:`dsrconform.observe.routes`): nothing here knows the stack under test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from threading import Event
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from dsrconform.chaos.fault import Say, Step, window
from dsrconform.errors import ConfigError, LabError
from dsrconform.observe.observations import FaultWindow
from dsrconform.topology import Service, Topology

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab

__all__ = [
    "AgentRestart",
    "ConfigChange",
    "ServerAdd",
    "ServerDrain",
    "ServerMove",
    "ServerRemove",
    "change_kind",
]


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


def change_kind(before: dict[str, list[str]], after: dict[str, list[str]]) -> str:
    """The window kind of a change of backend sets, as the SC requirements judge it: a removal
    if it took any server out, else a drain if it drained one, else an add."""
    if set(before["active"]) - set(after["active"]) - set(after["draining"]):
        return "backend-remove"
    if set(after["draining"]) - set(before["draining"]):
        return "backend-drain"
    return "backend-add"


PROBE_LEAD = 0.8
"""Seconds of tuple probes before a probed change: every tuple's server before it."""
PROBE_TAIL = 2.6
"""Seconds of tuple probes after a probed change: past SC-4's convergence bound (tau, 2 s)."""


def probed(
    lab: RunningLab,
    say: Say,
    svc: Service,
    make: Callable[[], list[FaultWindow]],
    flows: int | None = None,
) -> list[FaultWindow]:
    """``make()`` (a backend change of ``svc``) inside a set of tuple probes toward it
    (:func:`~dsrconform.traffic.tupleprobes.probing`; ``flows`` tuples, None: its default), its
    windows noting the probe set. A lab without a probe network, or probes that fail, leave the
    change unprobed (SC-2 and SC-4 then answer UNKNOWN, saying why), said through ``say``."""
    from dsrconform.traffic.tupleprobes import probing

    with ExitStack() as stack:
        try:
            more = {} if flows is None else {"flows": flows}
            run = stack.enter_context(probing(lab, vip=svc.vip, port=svc.port, **more))
        except ConfigError as e:
            say(f"change not probed: {e}")
            return make()
        time.sleep(PROBE_LEAD)  # the schedule: probes before the change
        out = make()
        time.sleep(PROBE_TAIL)  # the schedule: probes after it
    if run.error is not None:
        say(f"tuple probes failed ({run.error}): SC-2 and SC-4 cannot judge this change")
    else:
        pps = run.result.delivered_pps if run.result is not None else 0.0
        say(f"probed {run.flows} tuples around it at {pps:,.0f} packets/s")
    # Failed probes are noted too (``probe_error``): the checkers then say why they could not
    # judge the change, not only that no tuple was probed.
    return [w.model_copy(update={"detail": {**w.detail, **run.detail()}}) for w in out]


class _BackendFault(_Base):
    service: str | None = None
    """The service (default: the lab's first TCP service)."""
    probe: bool = False
    """Each change of the service (and its undoing) inside its own set of tuple probes toward
    it, :data:`PROBE_LEAD` s before and :data:`PROBE_TAIL` s after (SC-2, SC-4)."""
    probe_flows: Annotated[int, Field(ge=20, le=65536)] | None = None
    """Tuples per probe set (None: the probes' default, enough for SC-2)."""
    _start: dict[str, dict[str, list[str]]] = PrivateAttr(default_factory=dict)
    _changed: bool = PrivateAttr(default=False)
    _target: str | None = PrivateAttr(default=None)

    def expected_seconds(self) -> float:
        return (PROBE_LEAD + PROBE_TAIL if self.probe else 0.0) + 0.1

    def _services(self, topo: Topology) -> list[Service]:
        return [_service(topo, self.service)]

    def setup(self, lab: RunningLab, say: Say) -> None:
        super().setup(lab, say)
        if lab.deployment is None:
            raise LabError(f"lab {lab.name} has no deployment to change backends on")
        self._start = {
            s.name: lab.deployment.backends(s.name) for s in self._services(lab.topology)
        }
        self._changed = False

    @staticmethod
    def _now(lab: RunningLab, svc: Service) -> dict[str, list[str]]:
        """``svc``'s sets now: a change applies to them, so two faults overlapping on one service
        both take effect (each revert restores the sets its setup saw: the first revert of
        two overlapping ones restores them early)."""
        assert lab.deployment is not None  # setup refused a lab without one
        return lab.deployment.backends(svc.name)

    def _maybe_probed(
        self, lab: RunningLab, say: Say, make: Callable[[], list[FaultWindow]]
    ) -> list[FaultWindow]:
        if not self.probe:
            return make()
        return probed(lab, say, self._services(lab.topology)[0], make, self.probe_flows)

    def _set(
        self,
        lab: RunningLab,
        say: Say,
        kind: str,
        svc: Service,
        active: list[str],
        draining: list[str],
        target: str | None,
        **detail: object,
    ) -> FaultWindow:
        """One change of ``svc``'s sets, and its window."""
        self._changed = True
        self._target = target
        t = time.monotonic()
        before, after = lab.set_backends(svc.name, active, draining=draining)
        drain = f", draining {', '.join(after['draining'])}" if after["draining"] else ""
        say(f"{svc.name}: {kind} {target or ''} -> {', '.join(after['active'])}{drain}")
        return window(
            kind,
            t,
            time.monotonic(),
            target=target,
            vip=svc.vip,
            backends_before=before["active"],
            backends_after=after["active"],
            detail={"service": svc.name, **detail},
        )

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
        changed = self._maybe_probed(
            lab, say, lambda: [self._set(lab, say, kind, svc, active, draining, target)]
        )
        self._windows = [*self._windows, *changed]

    def revert(self, lab: RunningLab, say: Say) -> None:
        """Every service this fault changed gets its starting sets back, each on its own (one
        failing does not keep the others changed), inside tuple probes with ``probe``; a
        failure is raised once all were tried."""
        if not self._changed or lab.deployment is None:
            return
        self._changed = False
        failed: list[str] = []

        def restore() -> list[FaultWindow]:
            assert lab.deployment is not None
            out: list[FaultWindow] = []
            for name, sets in self._start.items():
                try:
                    now = lab.deployment.backends(name)
                    if now == sets:
                        continue
                    svc = _service(lab.topology, name)
                    kind = change_kind(now, sets)
                    w = self._set(
                        lab,
                        say,
                        kind,
                        svc,
                        sets["active"],
                        sets["draining"],
                        self._target,
                        revert=True,
                    )
                except (ConfigError, LabError, OSError) as e:
                    failed.append(f"{name}: {type(e).__name__}: {e}")
                    continue
                self._close_windows(w.start, svc.name)
                out.append(w)
            return out

        restored = self._maybe_probed(lab, say, restore)  # first: it closes the drains' windows
        self._windows = [*self._windows, *restored]
        self._changed = False
        if failed:
            raise LabError("backend sets not restored: " + "; ".join(failed))

    def _close_windows(self, at: float, service: str) -> None:
        """A drain lasts until it is undone: its window ends when the service's sets are back."""
        self._windows = [
            w.model_copy(update={"end": at})
            if w.kind == "backend-drain"
            and w.detail.get("service") == service
            and not w.detail.get("revert")
            else w
            for w in self._windows
        ]


class _OneServer(_BackendFault):
    server: str | None = None
    """The server (default: the service's last server)."""
    server_index: int | None = None
    """Instead of ``server``: the service's servers' N-th (0 the first, -1 the last), for
    scenarios that run on any lab."""

    def _server(self, topo: Topology, svc: Service) -> str:
        servers = topo.servers_of(svc)
        if self.server is not None and self.server_index is not None:
            raise ConfigError("both server and server_index given; fix: keep one of them")
        if self.server_index is not None:
            if not -len(servers) <= self.server_index < len(servers):
                raise ConfigError(
                    f"server_index {self.server_index}: service {svc.name} has "
                    f"{len(servers)} servers; fix: an index from {-len(servers)} to "
                    f"{len(servers) - 1}"
                )
            return servers[self.server_index]
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

    def invoke(self, lab: RunningLab, say: Say, stop: Event) -> None:
        svc = _service(lab.topology, self.service)
        gone = self._server(lab.topology, svc)
        sets = self._now(lab, svc)
        active = [s for s in sets["active"] if s != gone]
        self._change(lab, say, "backend-remove", svc, active, sets["draining"], gone)


class ServerDrain(_OneServer):
    """Drain a server: no new flows, its established flows stay; revert makes it active again
    (window ``backend-drain`` until then, then ``backend-add``). With ``every_service``, the
    server is drained from every service it serves, one window each (the named or default
    service's first)."""

    kind: Literal["server-drain"] = "server-drain"
    every_service: bool = False

    def _services(self, topo: Topology) -> list[Service]:
        first = _service(topo, self.service)
        if not self.every_service:
            return [first]
        server = self._server(topo, first)
        others = [s for s in topo.services if s.name != first.name]
        return [first, *(s for s in others if server in topo.servers_of(s))]

    def plan(self, topo: Topology) -> list[Step]:
        svc = _service(topo, self.service)
        server = self._server(topo, svc)
        names = ", ".join(s.name for s in self._services(topo))
        return [
            Step("invoke", "set-backends", names, f"{server} draining"),
            Step("revert", "set-backends", names, "starting sets restored"),
        ]

    def invoke(self, lab: RunningLab, say: Say, stop: Event) -> None:
        topo = lab.topology
        drained = self._server(topo, _service(topo, self.service))

        def drain() -> list[FaultWindow]:
            out = []
            for svc in self._services(topo):
                sets = self._now(lab, svc)
                active = [s for s in sets["active"] if s != drained]
                if not active:
                    continue  # its only server: left alone
                draining = sorted({*sets["draining"], drained})
                out.append(self._set(lab, say, "backend-drain", svc, active, draining, drained))
            return out

        drained_windows = self._maybe_probed(lab, say, drain)
        self._windows = [*self._windows, *drained_windows]


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

    def invoke(self, lab: RunningLab, say: Say, stop: Event) -> None:
        svc = _service(lab.topology, self.service)
        added = self._server(lab.topology, svc)
        sets = self._now(lab, svc)
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

    def invoke(self, lab: RunningLab, say: Say, stop: Event) -> None:
        """The window's kind says what the push did to the servers (the SC requirements judge
        backend changes by kind): a removal if it took any out, else a drain, else an add."""
        svc = _service(lab.topology, self.service)
        after = {"active": self.active, "draining": self.draining}
        kind = change_kind(self._start[svc.name], after)
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

    def invoke(self, lab: RunningLab, say: Say, stop: Event) -> None:
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


class AgentRestart(_Base):
    """Restart a server's agent: its flow and NAT state start empty (the seed's state-management
    problem: in server-nat mode the agent remembers each flow's VIP). Not lasting. Window
    ``agent-restart``. A target without the capability
    (:class:`dsrconform.target.AgentRestart`) makes it a LabError."""

    kind: Literal["agent-restart"] = "agent-restart"
    lasting: ClassVar[bool] = False
    server: str

    def expected_seconds(self) -> float:
        return 0.5

    def plan(self, topo: Topology) -> list[Step]:
        if self.server not in topo.of_role("server"):
            raise ConfigError(
                f"agent-restart: {self.server!r} is not a server; fix: one of "
                f"{', '.join(topo.of_role('server'))}"
            )
        return [Step("invoke", "restart-agent", self.server, "its flow and NAT state lost")]

    def invoke(self, lab: RunningLab, say: Say, stop: Event) -> None:
        from dsrconform.target import AgentRestart as Capability

        dep = lab.deployment
        if not isinstance(dep, Capability):
            raise LabError(
                f"target {type(dep).__name__} cannot restart a server's agent (no restart_agent)"
            )
        say(f"restart {self.server}'s agent (its state is lost)")
        t = time.monotonic()
        dep.restart_agent(self.server)
        self._windows.append(window("agent-restart", t, time.monotonic(), target=self.server))

    def revert(self, lab: RunningLab, say: Say) -> None:
        """Nothing to undo: the new agent runs."""
