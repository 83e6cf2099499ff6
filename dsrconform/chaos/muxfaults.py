"""MUX faults: kill, hang, restart, add a MUX, and cut its BGP session. Each follows the contract
of :mod:`dsrconform.chaos.fault`, acts through the lab's API and times itself by the border
router's FIB (:mod:`dsrconform.observe.routes`): nothing here knows the stack under test.
"""

from __future__ import annotations

import time
from threading import Event
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import PrivateAttr

from dsrconform.chaos.fault import Say, Step, window
from dsrconform.chaos.library import _Base
from dsrconform.errors import ConfigError, LabError
from dsrconform.lab.faults import nft
from dsrconform.topology import Topology

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab

__all__ = ["MuxAdd", "MuxHang", "MuxKill", "MuxRestart", "RouteWithdraw", "failover_mux"]

ROUTE_TIMEOUT = 20.0
"""Seconds a MUX fault waits at most for the router's VIP routes to change."""
BGP_PORT = 179
WITHDRAW_SECONDS = 3.5
"""About how long the router takes to withdraw a MUX whose BGP session went silent: the lab's
hold time (3 s) and a little (for the plan's timeline only)."""


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
    """The MUX's IPv4 address toward the router (its BGP session's)."""
    _hops: frozenset[str] = PrivateAttr(default_factory=frozenset)
    """Its next hops in the router's VIP routes: that address, and its IPv6 one where it has
    one (IPv6 VIPs are routed to it there)."""
    _before: dict[str, list[str]] = PrivateAttr(default_factory=dict)
    _started: float | None = PrivateAttr(default=None)
    _withdrawn: float | None = PrivateAttr(default=None)

    def setup(self, lab: RunningLab, say: Say) -> None:
        from dsrconform.observe.routes import vip_next_hops

        super().setup(lab, say)
        self._target = _mux(lab.topology, self.node)
        up = lab.topology.uplink(self._target)
        self._addr = up.ip
        self._hops = frozenset(a for a in (up.ip, up.ip6) if a is not None)
        self._before = vip_next_hops(lab)
        self._started = self._withdrawn = None
        if not any(self._hops & set(hops) for hops in self._before.values()):
            raise LabError(
                f"{self._target} ({', '.join(sorted(self._hops))}) carries no VIP route before "
                f"its {self.kind}: {self._before}"
            )

    def _wait_withdrawn(self, lab: RunningLab, say: Say, what: str) -> None:
        from dsrconform.observe.routes import wait_routes

        mine = self._hops
        self._withdrawn, _ = wait_routes(
            lab,
            lambda hops: not any(mine & set(h) for h in hops.values()),
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

        had = {vip: self._hops & set(hops) for vip, hops in self._before.items()}
        returned, _ = wait_routes(
            lab,
            # this MUX back wherever it was (another fault may keep other MUXes out meanwhile)
            lambda hops: all(mine <= set(hops.get(vip, [])) for vip, mine in had.items()),
            timeout=ROUTE_TIMEOUT,
            what=f"the return of {self._target}'s routes",
        )
        say(f"{self._target} back; its routes returned {returned - since:.2f} s later")
        return returned


class _FailMux(_MuxFault):
    """A MUX failed by ``invoke`` until ``revert`` brings it back: the two ways differ in what
    they do to it (:attr:`_how`, its steps) and whether it comes back empty (a ``mux-rejoin``
    window until its routes are back)."""

    _how: ClassVar[str]
    _steps: ClassVar[tuple[tuple[str, str], ...]]
    """(action, detail) of invoke's failing step and revert's bringing back."""

    def plan(self, topo: Topology) -> list[Step]:
        mux = _mux(topo, self.node)
        (fail, fail_detail), (back, back_detail) = self._steps
        return [
            Step("invoke", fail, mux, fail_detail),
            Step("invoke", "wait-routes", mux, "the router withdraws its VIP routes", waits=True),
            Step("revert", back, mux, back_detail),
            Step("revert", "wait-routes", mux, "its VIP routes are back", waits=True),
        ]

    def _fail(self, lab: RunningLab) -> None:
        raise NotImplementedError

    def _bring_back(self, lab: RunningLab) -> None:
        raise NotImplementedError

    def invoke(self, lab: RunningLab, say: Say, stop: Event) -> None:
        say(f"{self._how} {self._target}")
        self._started = time.monotonic()
        self._fail(lab)
        self._wait_withdrawn(lab, say, self._how)

    def revert(self, lab: RunningLab, say: Say) -> None:
        if self._started is None:
            return
        back = time.monotonic()
        started, self._started = self._started, None
        # The window first: a return that fails still leaves the failure on the timeline.
        self._windows.append(
            window("mux-fail", started, back, target=self._target, detail={"how": self._how})
        )
        self._bring_back(lab)
        returned = self._wait_back(lab, say, back)
        if self._how == "kill":  # back empty: MF-4 judges the rejoin
            self._windows.append(window("mux-rejoin", back, returned, target=self._target))


class MuxKill(_FailMux):
    """Kill every process of a MUX and bring its links down (its BGP session is lost); revert
    restarts it with empty state. Windows: ``mux-fail`` (kill to restart), ``route-withdrawn``,
    ``mux-rejoin`` (restart until its routes are back)."""

    kind: Literal["mux-kill"] = "mux-kill"
    _how: ClassVar[str] = "kill"
    _steps: ClassVar[tuple[tuple[str, str], ...]] = (
        ("kill", "every process killed, its links down"),
        ("restart", "links up, the target restarts it, empty"),
    )

    def expected_seconds(self) -> float:
        return 1.0

    def _fail(self, lab: RunningLab) -> None:
        lab.kill_node(self._target)

    def _bring_back(self, lab: RunningLab) -> None:
        lab.restart_node(self._target)


class MuxHang(_FailMux):
    """Stop every process of a MUX (SIGSTOP: its data plane keeps running, the router withdraws
    it when the BGP hold timer expires); revert resumes it with its state intact. Windows:
    ``mux-fail`` (how: hang), ``route-withdrawn``."""

    kind: Literal["mux-hang"] = "mux-hang"
    _how: ClassVar[str] = "hang"
    _steps: ClassVar[tuple[tuple[str, str], ...]] = (
        ("pause", "every process stopped (SIGSTOP)"),
        ("resume", "processes continue, state intact"),
    )

    def expected_seconds(self) -> float:
        return WITHDRAW_SECONDS

    def _fail(self, lab: RunningLab) -> None:
        lab.pause_node(self._target)

    def _bring_back(self, lab: RunningLab) -> None:
        lab.resume_node(self._target)


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

    def invoke(self, lab: RunningLab, say: Say, stop: Event) -> None:
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

    def invoke(self, lab: RunningLab, say: Say, stop: Event) -> None:
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
        return WITHDRAW_SECONDS

    def plan(self, topo: Topology) -> list[Step]:
        mux = _mux(topo, self.node)
        if not any(set(link.ends) == {topo.router, mux} for link in topo.links):
            raise ConfigError(
                f"route-withdraw: {mux} shares no point-to-point link with {topo.router}; fix: "
                "a MUX on its own link to the router"
            )
        return [
            Step("invoke", "nft-drop", f"{topo.router}-{mux}", "BGP (TCP 179) dropped"),
            Step("invoke", "wait-routes", mux, "hold timer expired, routes withdrawn", waits=True),
            Step("revert", "nft-delete", f"{topo.router}-{mux}", "BGP allowed again"),
            Step("revert", "wait-routes", mux, "its VIP routes are back", waits=True),
        ]

    def invoke(self, lab: RunningLab, say: Say, stop: Event) -> None:
        topo = lab.topology
        router = topo.router
        ifname = topo.uplink(router, self._target).ifname
        table = f"dsrc_bgp_{self._target}"
        say(f"cut {self._target}'s BGP session")
        self._started = time.monotonic()
        self._table = table
        nft(
            lab.netns(router),
            (
                f'table netdev {table} {{\n chain in {{ type filter hook ingress device "{ifname}" '
                f"priority -500; ip saddr {self._addr} tcp sport {BGP_PORT} drop; "
                f"ip saddr {self._addr} tcp dport {BGP_PORT} drop; }}\n}}\n"
            ),
        )
        self._wait_withdrawn(lab, say, "BGP cut")

    def revert(self, lab: RunningLab, say: Say) -> None:
        if not self._table:
            return
        back = time.monotonic()
        table, self._table = self._table, ""
        # add-then-delete: idempotent, also when the invoke's table never got created
        nft(
            lab.netns(lab.topology.router),
            f"add table netdev {table}\ndelete table netdev {table}\n",
        )
        if self._started is not None:
            self._wait_back(lab, say, back)
