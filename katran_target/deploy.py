"""Deploy Katran into a running lab (``KatranTarget.deploy``).

The lab owns the environment (applications, the VIPs on the servers' ``lo``, BGP, the
pass-through program on the router's end of each MUX link); this module installs Katran:

- every **server**: decapsulation on its uplink. With GUE (the default), Katran's own
  ``tc_decap.bpf.c`` on tc ingress (it strips the outer IPv4 + UDP/6080 headers with
  ``bpf_skb_adjust_room``; the inner packet goes up the stack to the VIP on ``lo``). With IPIP,
  the kernel's tunnel: a collect-metadata ``ipip`` device receiving every IPIP packet, its
  rp_filter off (the decapsulated packet's source is the client, reached through the uplink).
- every **MUX**: Katran's XDP balancer on its uplink (:class:`katran_target.balancer.
  KatranBalancer`), default router MAC = the router's end of the link, one Katran VIP per
  service the MUX fronts, reals = the service's active servers (their IPv6 addresses for a
  service whose ``backend_family`` is ipv6: Katran then encapsulates in IPv6, an IPv4 VIP's
  packets as IPv4-in-IPv6); then each of the MUX's VIPs is announced through the lab's BGP
  speaker. GUE over IPv6 leaves from the MUX's IPv6 address (``pckt_srcs[1]``).

Backend changes (:meth:`KatranDeployment.set_backends`) go through Katran's control-plane path
(ring recomputed, changed slots written). Katran has no draining state: its per-CPU LRU keeps a
flow on the real it chose while the ring changes. A draining server is therefore taken out of
the ring (no new flow reaches it) while its real number stays allocated, so LRU entries that
name it keep forwarding to it; a removed server's number is freed (reused only by a later new
server, as in ``KatranLb``). The LRU is per CPU, as in Katran: a flow whose packets reach the
MUX on another CPU misses it and follows the current ring.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dsrconform.errors import BpfError, LabError
from dsrconform.netns import enter_netns, link_mac
from dsrconform.observe.counters import CounterCarry
from dsrconform.target import BgpSpeaker, check_backend_sets, service_named
from dsrconform.topology import Service, Topology
from katran_target.balancer import KatranBalancer, VipKey, pack_u32

if TYPE_CHECKING:
    import subprocess

    from dsrconform.bpf.libbpf import BpfObject
    from katran_target.target import KatranTarget

IPIP_DEVICE = "katran-ipip"
IP6TNL_DEVICE = "katran-ip6tnl"  # IPv6 outer headers (ip6ip6, ipip6) with encap=ipip
TC_DECAP_PROGRAM = "tcdecap"
TC_PRIORITY = 10
"""tc filter priority of Katran's decap: after the framework's link taps (priority 1,
:mod:`dsrconform.observe.linktap`), which see the encapsulated packet and pass it on."""


class LabHandle(Protocol):
    """The part of :class:`dsrconform.lab.protocol.RunningLab` this target uses."""

    name: str
    topology: Topology
    dir: Path

    def netns(self, node: str) -> str: ...

    def run(
        self, node: str, argv: list[str], *, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...

    def bgp(self, mux: str) -> BgpSpeaker: ...


def _ifindex(netns: str, ifname: str) -> int:
    from pyroute2 import IPRoute

    with enter_netns(netns), IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"katran target: no interface {ifname} in namespace {netns}")
    return int(found[0])


@dataclass
class _Decap:
    """Katran's tc decap attached to one server's uplink."""

    obj: BpfObject
    netns: str
    ifindex: int

    def counters(self) -> dict[str, int]:
        v4 = v6 = total = 0
        for raw in self.obj.map("decap_counters").lookup_percpu(pack_u32(0)):
            a, b, c = struct.unpack("=QQQ", raw[:24])
            v4, v6, total = v4 + a, v6 + b, total + c
        return {"decap_gue_v4": v4, "decap_gue_v6": v6, "decap_seen": total}

    def close(self) -> None:
        from dsrconform.bpf import libbpf

        try:
            with enter_netns(self.netns):
                libbpf.tc_detach(self.ifindex, "ingress", priority=TC_PRIORITY)
        finally:
            self.obj.close()


@dataclass
class KatranDeployment:
    lab: LabHandle
    target: KatranTarget
    muxes: dict[str, KatranBalancer] = field(default_factory=dict)
    decaps: dict[str, _Decap] = field(default_factory=dict)
    ipip_servers: list[str] = field(default_factory=list)
    # counters() may run in a sampler thread while restart() or close() replaces the objects.
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    carry: CounterCarry = field(default_factory=CounterCarry, repr=False)
    backend_sets: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    balancer_obj: Path | None = None

    # --- deploy ------------------------------------------------------------------------------

    def deploy(self) -> None:
        topo = self.lab.topology
        problems = check_topology(topo)
        if problems:
            raise LabError("the katran target cannot run this topology: " + "; ".join(problems))
        # Build first: a build failure leaves nothing attached.
        self.balancer_obj = self.target.balancer_object()
        decap_obj = self.target.decap_object() if self.target.encap == "gue" else None
        for server in topo.of_role("server"):
            self._decap(server, decap_obj)
        for mux in topo.of_role("mux"):
            self._mux(mux)

    def _decap(self, server: str, decap_obj: Path | None) -> None:
        from dsrconform.bpf import libbpf

        topo = self.lab.topology
        if decap_obj is None:
            self._kernel_ipip(server)
            return
        ns = self.lab.netns(server)
        idx = _ifindex(ns, topo.uplink(server).ifname)
        obj = libbpf.BpfObject(decap_obj)
        try:
            with enter_netns(ns):
                prog = obj.program(TC_DECAP_PROGRAM)
                libbpf.tc_attach(idx, prog.fd, "ingress", priority=TC_PRIORITY)
        except BaseException:
            obj.close()
            raise
        self.decaps[server] = _Decap(obj, ns, idx)

    def _kernel_ipip(self, server: str) -> None:
        argv = ["ip", "link", "add", "name", IPIP_DEVICE, "type", "ipip", "external"]
        res = self.lab.run(server, argv, check=False)
        if res.returncode != 0 and "File exists" not in res.stderr:
            raise LabError(
                f"katran target: {server}: cannot create the kernel's IPIP decapsulation "
                f"device ({res.stderr.strip()}): this kernel likely lacks CONFIG_NET_IPIP; "
                "fix: use the target option encap=gue (Katran's tc decap)"
            )
        self.lab.run(server, ["ip", "link", "set", IPIP_DEVICE, "up"])
        self.lab.run(server, ["sysctl", "-qw", f"net.ipv4.conf.{IPIP_DEVICE}.rp_filter=0"])
        if any(s.backend_family == "ipv6" for s in self.lab.topology.services):
            argv = ["ip", "-6", "link", "add", "name", IP6TNL_DEVICE, "type", "ip6tnl"]
            res = self.lab.run(server, [*argv, "external"], check=False)
            if res.returncode != 0 and "File exists" not in res.stderr:
                raise LabError(
                    f"katran target: {server}: cannot create the kernel's IPv6 tunnel device "
                    f"({res.stderr.strip()}): this kernel likely lacks CONFIG_IPV6_TUNNEL; fix: "
                    "use the target option encap=gue (Katran's tc decap)"
                )
            self.lab.run(server, ["ip", "link", "set", IP6TNL_DEVICE, "up"])
        if server not in self.ipip_servers:
            self.ipip_servers.append(server)

    def _mux(self, mux: str) -> None:
        topo, router = self.lab.topology, self.lab.topology.router
        up = topo.uplink(mux)
        back = topo.uplink(router, mux)
        if self.balancer_obj is None:
            self.balancer_obj = self.target.balancer_object()
        lb = KatranBalancer(
            self.balancer_obj,
            default_mac=link_mac(self.lab.netns(router), back.ifname),
            hash_function=self.target.hash_function,
            gue_source=up.ip if self.target.encap == "gue" else None,
            gue_source6=up.ip6 if self.target.encap == "gue" else None,
        )
        try:
            for s in topo.services_of_mux(mux):
                sets = self.backends(s.name)
                lb.add_vip(_vip_key(s), self.target.vip_flags)
                lb.set_reals(
                    _vip_key(s),
                    self._addrs(s, sets["active"]),
                    hold=self._addrs(s, sets["draining"]),
                )
            lb.attach(self.lab.netns(mux), up.ifname)
        except BaseException:
            lb.close()
            raise
        self.muxes[mux] = lb
        speaker = self.lab.bgp(mux)
        for vip in sorted({s.vip for s in topo.services_of_mux(mux)}):
            speaker.announce(vip)

    # --- backend changes (Deployment.set_backends) ------------------------------------------------

    def _service(self, name: str) -> Service:
        return service_named(self.lab.topology, name, self.lab.name)

    def _addrs(self, svc: Service, servers: Sequence[str]) -> list[str]:
        """The servers' addresses Katran encapsulates toward: of the service's backend family
        (the topology guarantees a server of an IPv6 service has an IPv6 uplink address)."""
        topo = self.lab.topology
        if svc.backend_family == "ipv6":
            return [_required(topo.uplink(n).ip6, n) for n in servers]
        return [topo.uplink(n).ip for n in servers]

    def backends(self, service: str) -> dict[str, list[str]]:
        """The current sets of ``service`` (Deployment.backends): server names, sorted."""
        svc = self._service(service)
        with self.lock:
            cur = self.backend_sets.get(svc.name)
            if cur is None:
                return {"active": sorted(self.lab.topology.servers_of(svc)), "draining": []}
            return {k: list(v) for k, v in cur.items()}

    def set_backends(
        self, service: str, servers: Sequence[str], *, draining: Sequence[str] = ()
    ) -> None:
        """Make ``servers`` the ring of ``service`` on every MUX serving it, ``draining`` out
        of the ring with their real numbers kept (see the module doc); each MUX's ring is
        rewritten in one batch of its changed slots. Remembered for MUX restarts."""
        svc = self._service(service)
        active, drain = check_backend_sets(self.lab.topology, self.lab.name, svc, servers, draining)
        with self.lock:
            self.backend_sets[svc.name] = {"active": sorted(active), "draining": sorted(drain)}
            for mux, lb in self.muxes.items():
                if svc in self.lab.topology.services_of_mux(mux):
                    lb.set_reals(
                        _vip_key(svc), self._addrs(svc, active), hold=self._addrs(svc, drain)
                    )

    def restart(self, node: str) -> None:
        """A restarted MUX gets a new balancer (empty LRUs) with the current backend sets, and
        announces its VIPs again; a server's decapsulation is kernel state that survived."""
        if self.lab.topology.nodes[node].role != "mux":
            return
        with self.lock:
            old = self.muxes.pop(node, None)
            if old is not None:
                try:
                    self.carry.retire(node, old.counters())
                finally:
                    with suppress(OSError, LabError, BpfError):  # its interface may be gone
                        old.close()
            self._mux(node)

    # --- readiness, status, counters --------------------------------------------------------------

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Ready once deployed: programs attached, VIPs announced (the lab waits for the rest)."""
        return 0.0

    def decap_kind(self) -> str:
        if self.target.encap == "gue":
            return "katran tc_decap (GUE, UDP 6080) on each server's uplink ingress"
        return f"kernel IPIP ({IPIP_DEVICE}, collect-metadata ipip device) on each server"

    def status(self) -> dict[str, Any]:
        with self.lock:
            stats = {m: lb.counters() for m, lb in self.muxes.items()}
        return {
            "katran": {
                "encap": self.target.encap,
                "decap": self.decap_kind(),
                "hash": self.target.hash_function,
                "sources": str(self.target.sources()),
            },
            "mux_stats": {
                m: {k: v for k, v in c.items() if "[" not in k} for m, c in stats.items()
            },
        }

    def counters(self) -> dict[str, dict[str, int]]:
        """Per MUX, Katran's balancer counters (:meth:`KatranBalancer.counters`); per server
        with Katran's tc decap, its ``decap_counters`` (``decap_gue_v4``, ``decap_gue_v6``,
        ``decap_seen``); monotonic across MUX restarts."""
        with self.lock:
            raw: dict[str, dict[str, int]] = {m: lb.counters() for m, lb in self.muxes.items()}
            for server, dec in self.decaps.items():
                raw[server] = dec.counters()
            return self.carry.report(raw)

    def close(self) -> None:
        """Detach everything this deployment attached (namespaces go with the lab)."""
        with self.lock:
            items: list[KatranBalancer | _Decap] = [*self.muxes.values(), *self.decaps.values()]
            self.muxes, self.decaps = {}, {}
        for item in items:
            with suppress(OSError, LabError, BpfError):  # its namespace may be gone
                item.close()


def _vip_key(svc: Service) -> VipKey:
    return (svc.vip, svc.port, svc.proto_number)


def _required(addr: str | None, node: str) -> str:
    if addr is None:
        raise LabError(f"katran target: {node} has no IPv6 address toward the router")
    return addr


def check_topology(topo: Topology) -> list[str]:
    """What Katran needs beyond a valid topology."""
    out = []
    if topo.mode != "encap":
        out.append(
            f"mode {topo.mode}: Katran only encapsulates (no server-side NAT); fix: mode encap"
        )
    for mux in topo.of_role("mux"):
        if not any(set(link.ends) == {mux, topo.router} for link in topo.links):
            out.append(
                f"{mux} needs a link of its own to the router {topo.router} (Katran sends "
                "encapsulated packets back out of it); fix: a link, not a segment"
            )
    return out
