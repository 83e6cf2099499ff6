"""Deploy the reference stack into a running lab (``ReferenceTarget.deploy``).

The lab owns the test environment (:mod:`dsrconform.lab.environment`: the applications, the
VIPs on the servers' ``lo``, BGP, the pass-through program on the router's end of each MUX
link); this module installs only the reference stack's own data plane, per node role:

- every **server**: the tc agent on its uplink (decapsulates IPIP from the lab's MUX addresses;
  NAT modes also rewrite VIP:port to the application's port);
- the **gateway** (gateway-nat only): the stateless source rewrite on its server-facing ingress;
- every **MUX**: the XDP MUX on its link to the router, programmed with the services it fronts
  and their current servers (the topology's until :meth:`ReferenceDeployment.set_backends`
  changes them; a restarted MUX gets the current ones); once attached, the MUX's VIPs are
  announced through the lab's BGP speaker on that node (``lab.bgp(mux)``).

Nothing here touches the host's own interfaces.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dsrconform.errors import ConfigError, LabError
from dsrconform.netns import link_mac
from dsrconform.observe.counters import CounterCarry
from dsrconform.target import BgpSpeaker, check_backend_sets, service_named
from dsrconform.topology import Service, Topology

LAB_CONN_ENTRIES = 65_536
"""A lab MUX's connection-table size. A SYN flood at SF-1's rate (50,000 packets/s for 10 s, split
over the MUXes by ECMP) must overflow the table several times, as a flood a production table is
sized for overflows that one; with the 262,144-entry default only the fastest generator (live
frames) does, so on a kernel that refuses it a MUX whose flood evicts established flows
(mutant syn-evicts-established) went unseen. The lab's own flows need a few thousand entries."""


class LabHandle(Protocol):
    """What this target needs from a lab: the part of :class:`dsrconform.lab.protocol.RunningLab`
    (which :class:`dsrconform.lab.Lab` implements) it uses, with the same types, so every
    running lab is one. Declared here, as a target written outside dsrconform would: its types
    come from the target API (:mod:`dsrconform.target`, :mod:`dsrconform.topology`) only."""

    name: str
    topology: Topology
    dir: Path
    python: str  # the interpreter for Python programs inside a node (backend-specific)

    def netns(self, node: str) -> str: ...

    def spawn(self, node: str, argv: list[str], *, log: str) -> int: ...

    def bgp(self, mux: str) -> BgpSpeaker: ...


@dataclass
class ReferenceDeployment:
    lab: LabHandle
    mutant: str | None
    options: dict[str, str] = field(default_factory=dict)
    """The target's options (:data:`reference_impl.target.OPTIONS`)."""
    muxes: dict[str, Any] = field(default_factory=dict)
    agents: dict[str, Any] = field(default_factory=dict)
    gateway: Any = None
    # counters() may run in a sampler thread while restart() or close() replaces or closes the
    # BPF objects it reads: both take this lock (a closed map's fd could be reused by another).
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    carry: CounterCarry = field(default_factory=CounterCarry, repr=False)
    # Service name -> {"active": [...], "draining": [...]} (server names), once set_backends
    # changed it (else the topology's servers, none draining). Read under the lock.
    backend_sets: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    # --- deploy ------------------------------------------------------------------------------

    def deploy(self) -> None:
        topo = self.lab.topology
        for server in topo.of_role("server"):
            self._agent(server)
        if topo.mode == "gateway-nat":
            self._gateway()
        for mux in topo.of_role("mux"):
            self._mux(mux)

    def mux_addresses(self) -> list[str]:
        """Every MUX's outer source: its IPv4 address, and its IPv6 one when it has one."""
        topo = self.lab.topology
        ups = [topo.uplink(m) for m in topo.of_role("mux")]
        return [up.ip for up in ups] + [up.ip6 for up in ups if up.ip6]

    def _server_services(self, server: str) -> list[Service]:
        topo = self.lab.topology
        return [s for s in topo.services if server in topo.servers_of(s)]

    def _agent(self, server: str) -> None:
        """Attach ``server``'s agent (decapsulation, and NAT in the NAT modes), empty."""
        from reference_impl.agent import AgentConfig, AgentProgram, NatService

        topo, ns = self.lab.topology, self.lab.netns(server)
        up = topo.uplink(server)
        services = self._server_services(server)
        nat = topo.mode in ("server-nat", "gateway-nat")
        cfg = AgentConfig(
            server_addr=up.ip,
            server_addr6=up.ip6,
            mode="server-nat" if nat else "encap",
            mux_addrs=self.mux_addresses(),
            nat_services=[
                NatService(vip=s.vip, vport=s.port, proto=s.proto, port=s.server_port)
                for s in services
            ]
            if nat
            else [],
        )
        agent = AgentProgram(cfg, mutant=self.mutant)
        agent.attach(ns, up.ifname, egress=topo.mode != "gateway-nat")
        self.agents[server] = agent

    def restart_agent(self, server: str) -> None:
        """Replace ``server``'s agent by a new one whose flow and NAT state start empty, as when
        an agent crashes and is restarted (Deployment capability AgentRestart); its counters
        carry on."""
        if self.lab.topology.nodes[server].role != "server":
            raise ConfigError(f"{server} is not a server: only servers run an agent")
        with self.lock:
            old = self.agents.pop(server, None)
            if old is not None:
                with suppress(Exception):  # its counters, for monotonic totals; best effort
                    self.carry.retire(server, old.stats())
                old.close()
            self._agent(server)

    def _gateway(self) -> None:
        from reference_impl.agent import GatewayConfig, GatewayMapping, GatewayProgram

        topo = self.lab.topology
        gw = topo.of_role("gateway")[0]
        mappings = []
        for server in topo.of_role("server"):
            up = topo.uplink(server)
            for s in self._server_services(server):
                # The reply leaves the server from its address of the VIP's family (web46's
                # IPv4 VIP is translated to the server's IPv4 address: its backend family only
                # decides the encapsulation).
                addr = up.ip6 if s.family == "ipv6" else up.ip
                if addr is None:
                    raise LabError(f"{server} serves IPv6 service {s.name} without IPv6")
                mappings.append(
                    GatewayMapping(
                        server=addr,
                        server_port=s.server_port,
                        proto=s.proto,
                        external=s.vip,
                        external_port=s.port,
                    )
                )
        if self.options.get("gateway") == "naive":
            # On purpose (a scenario shows the pitfall): the first VIP of each server port wins,
            # so replies of flows that came through another VIP leave from the wrong one.
            first: dict[tuple[str, int, str], GatewayMapping] = {}
            for m in mappings:
                first.setdefault((m.server, m.server_port, m.proto), m)
            mappings = list(first.values())
        try:
            cfg = GatewayConfig(mappings=mappings)
        except ValueError as e:
            raise LabError(
                f"gateway-nat needs a 1:1 mapping of server ports to VIPs: {e}; (the target "
                "option gateway=naive deploys it anyway, replying from each port's first VIP)"
            ) from e
        self.gateway = GatewayProgram(cfg, mutant=self.mutant)
        # The gateway's interface toward the servers: its segment (or link) shared with them.
        first_server = topo.of_role("server")[0]
        self.gateway.attach(self.lab.netns(gw), topo.uplink(gw, first_server).ifname, "ingress")

    def _mux(self, mux: str) -> None:
        from reference_impl.config import MuxConfig
        from reference_impl.mux import MuxProgram

        topo, router = self.lab.topology, self.lab.topology.router
        up = topo.uplink(mux)
        back = topo.uplink(router, mux)
        mtu = next(i.mtu for i in topo.interfaces() if i.node == mux and i.ifname == up.ifname)
        settings = {"address6": up.ip6} if up.ip6 else {}
        cfg = MuxConfig.model_validate(
            {
                "mux": {
                    "address": up.ip,
                    **settings,
                    "mac": link_mac(self.lab.netns(mux), up.ifname),
                    "next_hop_mac": link_mac(self.lab.netns(router), back.ifname),
                    "mtu": mtu,
                    "conn_table_size": LAB_CONN_ENTRIES,
                },
                "vips": [
                    {
                        "address": s.vip,
                        "port": s.port,
                        "proto": s.proto,
                        "backends": self._addrs(self.backends(s.name)["active"], s),
                    }
                    for s in topo.services_of_mux(mux)
                ],
            }
        )
        prog = MuxProgram(cfg, mutant=self.mutant)
        for s in topo.services_of_mux(mux):  # draining servers keep their index (same table)
            sets = self.backends(s.name)
            if sets["draining"]:
                prog.set_backends(
                    _vip_key(s), self._addrs(sets["active"], s), self._addrs(sets["draining"], s)
                )
        prog.attach(self.lab.netns(mux), up.ifname)
        self.muxes[mux] = prog
        speaker = self.lab.bgp(mux)
        for vip in sorted({s.vip for s in topo.services_of_mux(mux)}):
            speaker.announce(vip)

    # --- backend changes (Deployment.set_backends) ------------------------------------------------

    def _service(self, name: str) -> Service:
        return service_named(self.lab.topology, name, self.lab.name)

    def _addrs(self, servers: Sequence[str], svc: Service) -> list[str]:
        """The servers' addresses as ``svc``'s MUX backends: IPv4, or IPv6 when the service's
        backend family is (an IPv6 VIP's always is; IPv4-in-IPv6 otherwise)."""
        topo = self.lab.topology
        if svc.backend_family != "ipv6":
            return [topo.uplink(n).ip for n in servers]
        out = []
        for n in servers:
            addr6 = topo.address6_of(n)
            if addr6 is None:
                raise LabError(
                    f"lab {self.lab.name}: service {svc.name} has IPv6 backends but server {n} "
                    "has no IPv6 address; fix: give its link an IPv6 address (2001:2:0:20::/64)"
                )
            out.append(addr6)
        return out

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
        """Make ``servers`` the active set of ``service`` and ``draining`` its draining set on
        every MUX that serves it (Deployment.set_backends): each MUX's table flips atomically
        (:meth:`reference_impl.mux.MuxProgram.set_backends`); draining servers keep their
        backend index, so the connection-table entries of their flows still forward to them.
        The sets are remembered: a MUX restarted later is programmed with them."""
        topo = self.lab.topology
        svc = self._service(service)
        active, drain = check_backend_sets(topo, self.lab.name, svc, servers, draining)
        key = _vip_key(svc)
        with self.lock:
            # Recorded first: a MUX restarted from here on gets the new sets.
            self.backend_sets[svc.name] = {"active": sorted(active), "draining": sorted(drain)}
            for mux in topo.of_role("mux"):
                prog = self.muxes.get(mux)
                if prog is None or svc not in topo.services_of_mux(mux):
                    continue
                before = mux_counters(prog)
                prog.set_backends(key, self._addrs(active, svc), self._addrs(drain, svc))
                # A released backend's counters restart at 0 if it comes back (a new index):
                # carry its totals, so backend_packets[...] never goes back.
                after = mux_counters(prog)
                gone = {
                    k: v for k, v in before.items() if k.startswith("backend_") and k not in after
                }
                if gone:
                    self.carry.retire(mux, gone)

    def restart(self, node: str) -> None:
        """Start again what runs on ``node`` after it was killed (its links are up again); a
        MUX comes back with the services' current backend sets (:meth:`set_backends`)."""
        topo = self.lab.topology
        role = topo.nodes[node].role
        if role == "mux":
            with self.lock:
                old = self.muxes.pop(node, None)
                if old is not None:
                    # Its counters live on in the new instance's (counters() never decrease).
                    with suppress(Exception):
                        self.carry.retire(node, mux_counters(old))
                    old.close()  # detach: the new MUX starts with an empty connection table
                self._mux(node)

    # --- readiness and status -------------------------------------------------------------------

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Ready as soon as deployed: every program is attached and every VIP announced by
        :meth:`deploy` (the lab then waits for the applications and BGP)."""
        return 0.0

    def status(self) -> dict[str, Any]:
        return {"mux_stats": self._mux_globals()}

    def _mux_globals(self) -> dict[str, dict[str, int]]:
        with self.lock:
            return {m: p.stats().globals for m, p in self.muxes.items()}

    def counters(self) -> dict[str, dict[str, int]]:
        """The stack's counters (Deployment.counters): per MUX, its XDP program's statistics
        (:func:`mux_counters`); per server, its agent's (``decap``, ``dnat``...); for the
        gateway node in gateway-nat mode, the gateway program's (``gw_rewrite``, ``pass``).
        Read from the BPF objects this deployment holds; monotonic across MUX restarts."""
        with self.lock:
            raw: dict[str, dict[str, int]] = {m: mux_counters(p) for m, p in self.muxes.items()}
            for server, agent in self.agents.items():
                raw[server] = agent.stats()
            if self.gateway is not None:
                raw[self.lab.topology.of_role("gateway")[0]] = self.gateway.stats()
            return self.carry.report(raw)

    def close(self) -> None:
        """Detach every program this deployment attached (processes go with the lab)."""

        with self.lock:
            progs = [*self.muxes.values(), *self.agents.values(), self.gateway]
            self.muxes, self.agents, self.gateway = {}, {}, None
        for prog in progs:
            if prog is not None:
                with suppress(Exception):  # the namespace may be gone with its interfaces
                    prog.close()


PROTO_NAMES = {6: "tcp", 17: "udp"}


def _vip_key(svc: Service) -> tuple[str, int, int]:
    return (svc.vip, svc.port, svc.proto_number)


def mux_counters(mux: Any) -> dict[str, int]:
    """One MUX's counters (a :class:`reference_impl.mux.MuxProgram`), per-CPU slots summed.

    The named statistics (``STAT_*`` of dsr_shared.h in lower case: ``pass``, ``lru_hit``,
    ``lru_miss``, ``lru_insert``, ``lru_insert_skipped``, ``icmp_forwarded``, ``drop_*``), the
    derived ``tx`` (packets forwarded: every VIP's plus ``icmp_forwarded``), and per VIP and per
    backend ``vip_packets[198.19.0.10:80/tcp]``, ``vip_bytes[...]``,
    ``backend_packets[198.18.20.1]``, ``backend_bytes[...]``. A VIP's count is of the TCP/UDP
    packets forwarded for it (ICMP errors count only in ``icmp_forwarded``); a backend's, of
    the packets the MUX chose it for (ICMP errors included, and packets then dropped as
    ``drop_too_big``/``drop_encap``). Bytes are of the inner IP packets."""
    st = mux.stats()
    out = dict(st.globals)
    for (addr, port, proto), (pk, by) in st.vips.items():
        host = f"[{addr}]" if ":" in addr else addr  # an IPv6 VIP in brackets, as in URLs
        label = f"{host}:{port}/{PROTO_NAMES.get(proto, proto)}"
        out[f"vip_packets[{label}]"], out[f"vip_bytes[{label}]"] = pk, by
    for addr, (pk, by) in st.backends.items():
        out[f"backend_packets[{addr}]"], out[f"backend_bytes[{addr}]"] = pk, by
    return out
