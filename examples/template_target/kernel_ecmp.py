"""A template target adapter: DSR with nothing but the kernel (no BPF). Copy it, keep the shape.

Data plane, encap mode only:

- each MUX forwards a VIP with the kernel's ECMP: one IPIP tunnel per server (``local`` the MUX's
  uplink address, ``remote`` the server's; ``tos inherit`` keeps the client's DSCP and ECN on the
  outer header) and one multipath route per VIP over those tunnels, hashed on the 5-tuple
  (``net.ipv4.fib_multipath_hash_policy=1``; ``ip_forward`` on);
- each server decapsulates with the kernel's ``tunl0`` (up, ``rp_filter`` off: the inner source
  is a client, not routed back through ``tunl0``); the lab has put the VIPs on ``lo`` and started
  the applications, which answer the client directly (direct server return);
- once a MUX forwards its VIPs it announces them through the lab's BGP speaker
  (``lab.bgp(mux).announce``).

``set_backends`` replaces a VIP's multipath route (one netlink message: atomic per MUX);
``counters`` are the tunnels' link statistics. No connection table: a backend change remaps
established connections through the hash, a draining server is a removed one, and a MUX's
routes are per VIP (services sharing a VIP share its servers' union). Run it::

    PYTHONPATH=examples dsrconform target check template_target.kernel_ecmp:KernelEcmpTarget
    sudo env PYTHONPATH=examples .venv/bin/dsrconform run --suite steady_state \\
        --target template_target.kernel_ecmp:KernelEcmpTarget

or register it in your package's pyproject.toml::

    [project.entry-points."dsrconform.targets"]
    kernel-ecmp = "template_target.kernel_ecmp:KernelEcmpTarget"

It needs a kernel with IPIP tunnels (CONFIG_NET_IPIP). docs/targets.md walks through every
member.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from dsrconform.errors import ConfigError, LabError
from dsrconform.target import Family, MutantInfo

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab
    from dsrconform.target import Target
    from dsrconform.topology import Mode, Service

OPTIONS = {"hash": ("l4", "l3")}
"""``hash``: ``l4`` (default) spreads flows on the 5-tuple; ``l3`` on addresses only."""
HASH_POLICY = {"l4": "1", "l3": "0"}
MUTANTS = (
    MutantInfo(
        name="outer-tos-zero",
        description="the tunnels do not inherit the inner TOS: the outer DSCP and ECN are zero",
        requirements=("RW-8",),
        component="mux",
        caught_by=("suites/test_steady_state.py::test_steady_state[RW-8]",),
    ),
)
TUNNEL_PREFIX = "tpl-"


class KernelEcmpTarget:
    """The kernel-ECMP DSR stack (see the module docstring)."""

    name = "kernel-ecmp"
    modes: tuple[Mode, ...] = ("encap",)
    families: tuple[Family, ...] = ("ipv4",)

    def __init__(self, mutant: str | None = None, options: dict[str, str] | None = None) -> None:
        known = [m.name for m in MUTANTS]
        if mutant is not None and mutant not in known:
            raise ConfigError(
                f"kernel-ecmp: unknown mutant {mutant!r}; fix: one of {', '.join(known)}"
            )
        for key, value in (options or {}).items():
            if key not in OPTIONS:
                raise ConfigError(f"kernel-ecmp: unknown option {key!r}; fix: one of hash")
            if value not in OPTIONS[key]:
                raise ConfigError(f"kernel-ecmp: {key}={value!r}; fix: one of l4, l3")
        self.mutant = mutant
        self.options = dict(options or {})

    def mutants(self) -> Sequence[MutantInfo]:
        return list(MUTANTS)

    def deploy(self, lab: RunningLab) -> KernelEcmpDeployment:
        if lab.topology.mode not in self.modes:
            raise ConfigError(
                f"kernel-ecmp: mode {lab.topology.mode}; fix: mode: encap (its only mode)"
            )
        dep = KernelEcmpDeployment(lab, self.mutant, self.options.get("hash", "l4"))
        try:
            dep.deploy()
        except BaseException:
            dep.close()
            raise
        return dep


def tunnel(server: str) -> str:
    """The MUX's tunnel to ``server`` (node names are at most 10 characters: fits IFNAMSIZ)."""
    return TUNNEL_PREFIX + server


class KernelEcmpDeployment:
    """The stack running in a lab: tunnels and routes on the MUXes, ``tunl0`` on the servers."""

    def __init__(self, lab: RunningLab, mutant: str | None, hash_name: str) -> None:
        self.lab = lab
        self.mutant = mutant
        self.hash_policy = HASH_POLICY[hash_name]
        topo = lab.topology
        self.lock = threading.Lock()
        self.sets: dict[str, dict[str, list[str]]] = {
            s.name: {"active": sorted(topo.servers_of(s)), "draining": []} for s in topo.services
        }
        self.last: dict[str, dict[str, int]] = {}
        """Per MUX, the counters read last (a MUX whose netns cannot be read keeps them)."""
        self.carried: dict[str, dict[str, int]] = {}
        """Per MUX, the totals of tunnels a restart replaced (counters never decrease)."""

    # --- deploying -------------------------------------------------------------------------------

    def deploy(self) -> None:
        for server in self.lab.topology.of_role("server"):
            self._server(server)
        for mux in self.lab.topology.of_role("mux"):
            self._mux(mux)

    def _run(self, node: str, *argv: str) -> None:
        self.lab.run(node, list(argv))

    def _add_ipip(self, node: str, *argv: str) -> None:
        """``ip link add ... type ipip ...``; a kernel without IPIP is named as the cause."""
        done = self.lab.run(node, ["ip", "link", "add", *argv], check=False)
        if done.returncode != 0:
            why = done.stderr.strip()
            if "Unknown device type" in why:
                why += " (this kernel has no IPIP tunnels: CONFIG_NET_IPIP; the template needs it)"
            raise LabError(f"{node}: ip link add {' '.join(argv)}: {why}")

    def _server(self, server: str) -> None:
        """Decapsulate IPIP with the kernel's fallback tunnel, whatever its source."""
        for conf in ("all", "default"):
            self._run(server, "sysctl", "-qw", f"net.ipv4.conf.{conf}.rp_filter=0")
        if self.lab.run(server, ["ip", "link", "show", "tunl0"], check=False).returncode != 0:
            self._add_ipip(server, "name", "tunl0", "type", "ipip")
        self._run(server, "sysctl", "-qw", "net.ipv4.conf.tunl0.rp_filter=0")
        self._run(server, "ip", "link", "set", "tunl0", "up")

    def _mux_servers(self, mux: str) -> list[str]:
        topo = self.lab.topology
        return sorted({n for s in topo.services_of_mux(mux) for n in topo.servers_of(s)})

    def _mux(self, mux: str) -> None:
        """Tunnels to every server the MUX's services may use, a route per VIP, announced."""
        topo = self.lab.topology
        self._run(mux, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self._run(mux, "sysctl", "-qw", f"net.ipv4.fib_multipath_hash_policy={self.hash_policy}")
        local = topo.uplink(mux).ip
        tos = [] if self.mutant == "outer-tos-zero" else ["tos", "inherit"]
        for server in self._mux_servers(mux):
            dev, remote = tunnel(server), topo.uplink(server).ip
            self.lab.run(mux, ["ip", "link", "del", dev], check=False)  # a restart: afresh
            self._add_ipip(mux, dev, "type", "ipip", "local", local, "remote", remote, *tos)
            self._run(mux, "ip", "link", "set", dev, "up")
        vips = self._vips(mux)
        for vip in vips:
            self._route(mux, vip)
        speaker = self.lab.bgp(mux)
        for vip in vips:
            speaker.announce(vip)

    def _vips(self, mux: str) -> list[str]:
        return sorted({s.vip for s in self.lab.topology.services_of_mux(mux)})

    def _route_servers(self, mux: str, vip: str) -> list[str]:
        """The active servers of every service of ``vip`` on ``mux`` (a route is per VIP)."""
        with self.lock:
            return sorted(
                {
                    n
                    for s in self.lab.topology.services_of_mux(mux)
                    if s.vip == vip
                    for n in self.sets[s.name]["active"]
                }
            )

    def _route(self, mux: str, vip: str) -> None:
        hops = [x for n in self._route_servers(mux, vip) for x in ("nexthop", "dev", tunnel(n))]
        self._run(mux, "ip", "route", "replace", f"{vip}/32", *hops)

    # --- Deployment ------------------------------------------------------------------------------

    def wait_ready(self, timeout: float) -> float:
        """Deploying is synchronous: check once that every MUX routes and announces its VIPs."""
        start = time.monotonic()
        missing = []
        for mux in self.lab.topology.of_role("mux"):
            routes = self.lab.run(mux, ["ip", "route", "show", "table", "main"]).stdout
            announced = set(self.lab.bgp(mux).announced())
            for vip in self._vips(mux):
                if f"{vip} " not in routes and f"{vip}/32" not in routes:
                    missing.append(f"{mux}: no route to {vip}")
                if vip not in announced:
                    missing.append(f"{mux}: {vip} not announced")
        if missing:
            raise LabError("kernel-ecmp not ready: " + "; ".join(missing))
        return time.monotonic() - start

    def status(self) -> dict[str, Any]:
        return {
            "kernel-ecmp": {
                mux: {vip: self._route_servers(mux, vip) for vip in self._vips(mux)}
                for mux in self.lab.topology.of_role("mux")
            }
        }

    def restart(self, node: str) -> None:
        role = self.lab.topology.nodes[node].role
        if role == "mux":
            with self.lock:  # the tunnels are replaced: their totals carry over
                carried = self.carried.setdefault(node, {})
                for name, value in self._read(node).items():
                    carried[name] = carried.get(name, 0) + value
                self.last.pop(node, None)
            self._mux(node)
        elif role == "server":
            self._server(node)

    def _read(self, mux: str) -> dict[str, int]:
        """The MUX's tunnel statistics now (empty when its namespace cannot be read)."""
        out = self.lab.run(mux, ["ip", "-s", "-j", "link", "show", "type", "ipip"], check=False)
        if out.returncode != 0:
            return {}
        counts: dict[str, int] = {"tx_packets": 0, "tx_bytes": 0}
        for link in json.loads(out.stdout or "[]"):
            name = str(link.get("ifname", ""))
            if not name.startswith(TUNNEL_PREFIX):
                continue
            tx = link.get("stats64", {}).get("tx", {})
            server = name.removeprefix(TUNNEL_PREFIX)
            counts[f"tx_packets.{server}"] = int(tx.get("packets", 0))
            counts["tx_packets"] += int(tx.get("packets", 0))
            counts["tx_bytes"] += int(tx.get("bytes", 0))
        return counts

    def counters(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for mux in self.lab.topology.of_role("mux"):
            now = self._read(mux)
            with self.lock:
                if now:
                    self.last[mux] = now
                now = self.last.get(mux, {})
                carried = self.carried.get(mux, {})
                names = set(now) | set(carried)
                if names:
                    out[mux] = {n: now.get(n, 0) + carried.get(n, 0) for n in sorted(names)}
        return out

    def _service(self, name: str) -> Service:
        for s in self.lab.topology.services:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.lab.topology.services)
        raise ConfigError(f"unknown service {name!r}; services: {known}")

    def backends(self, service: str) -> dict[str, list[str]]:
        svc = self._service(service)
        with self.lock:
            return {k: list(v) for k, v in self.sets[svc.name].items()}

    def set_backends(
        self, service: str, servers: Sequence[str], *, draining: Sequence[str] = ()
    ) -> None:
        """New sets for ``service``; its VIP's route replaced on every MUX serving it. Without
        a connection table, a draining server gets nothing more: it is removed."""
        topo = self.lab.topology
        svc = self._service(service)
        runs = topo.servers_of(svc)
        for name in [*servers, *draining]:
            if name not in runs:
                raise ConfigError(
                    f"service {service!r}: {name!r} is not a server running its application; "
                    f"those that do: {', '.join(runs)}"
                )
        if not servers:
            raise ConfigError(f"service {service!r}: fix: keep at least one server active")
        both = sorted(set(servers) & set(draining))
        if both:
            raise ConfigError(f"service {service!r}: {', '.join(both)} both active and draining")
        with self.lock:
            self.sets[svc.name] = {"active": sorted(set(servers)), "draining": sorted(draining)}
        for mux in topo.of_role("mux"):
            if svc in topo.services_of_mux(mux):
                self._route(mux, svc.vip)

    def close(self) -> None:
        """Withdraw the VIPs, remove the routes and tunnels (the lab may be going: best effort,
        each step on its own)."""
        topo = self.lab.topology
        for mux in topo.of_role("mux"):
            for vip in self._vips(mux):
                with suppress(LabError):  # the MUX's BIRD may already be gone
                    self.lab.bgp(mux).withdraw(vip)
                self.lab.run(mux, ["ip", "route", "del", f"{vip}/32"], check=False)
            for server in self._mux_servers(mux):
                self.lab.run(mux, ["ip", "link", "del", tunnel(server)], check=False)


if TYPE_CHECKING:

    def _is_a_target(target: KernelEcmpTarget) -> Target:
        return target  # mypy checks that the template keeps dsrconform.target.Target
