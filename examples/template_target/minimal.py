"""A template target adapter: a minimal DSR stack of its own in two small BPF programs. Copy it,
replace the data plane with your stack's, keep the shape.

Data plane (encap mode only, IPv4), in ``bpf/`` beside this file:

- ``bpf/mux.bpf.c``, XDP on each MUX's uplink: a packet to a VIP:port/protocol the MUX serves
  gets a backend from a hash of its 5-tuple over the service's active servers, an outer IPv4
  header (IPIP: source the MUX, destination the server, the client's TOS) and a new Ethernet
  header, and goes back out to the router (``XDP_TX``); anything else passes to the MUX's
  kernel (its BGP session among it);
- ``bpf/decap.bpf.c``, tc ingress on each server's uplink: IPIP from a MUX to this server loses
  its outer header and the kernel delivers the inner packet to the VIP, which the lab has put
  on the server's ``lo``; the application answers the client directly (direct server return);
- once a MUX forwards its VIPs, it announces them through the lab's BGP speaker
  (``lab.bgp(mux).announce``).

No kernel tunnel device: kernels differ (this project's CI machines have no ``CONFIG_NET_IPIP``),
BPF programs need only XDP and tc. No connection table either, on purpose: the template is the
smallest thing that passes the steady-state suite. A backend change remaps established
connections through the hash, a draining server is a removed one, a MUX restart forgets
nothing because it remembers nothing. docs/targets.md lists what it therefore fails. Run it::

    PYTHONPATH=examples dsrconform target check template_target.minimal:MinimalTarget
    sudo env PYTHONPATH=examples .venv/bin/dsrconform run --suite steady_state \\
        --target template_target.minimal:MinimalTarget

or register it in your package's pyproject.toml::

    [project.entry-points."dsrconform.targets"]
    template = "template_target.minimal:MinimalTarget"
"""

from __future__ import annotations

import errno
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsrconform.bpf import libbpf
from dsrconform.bpf.build import compile_bpf
from dsrconform.bpf.libbpf import BpfObject
from dsrconform.errors import BpfError, ConfigError, LabError
from dsrconform.netns import enter_netns, link_mac
from dsrconform.target import (
    Encapsulation,
    Family,
    MutantInfo,
    check_backend_sets,
    service_named,
)

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab
    from dsrconform.target import Target
    from dsrconform.topology import Mode, Service

BPF_DIR = Path(__file__).resolve().parent / "bpf"
MUX_SOURCE = BPF_DIR / "mux.bpf.c"
DECAP_SOURCE = BPF_DIR / "decap.bpf.c"
MAX_BACKENDS = 64
"""Backends per service: ``MAX_BACKENDS`` in bpf/mux.bpf.c."""
TC_PRIORITY = 10
"""The decap's tc filter priority: after dsrconform's link taps (priority 1), which see every
frame as it arrived and pass it on."""
MUX_STATS = ("pass", "encap", "encap_bytes", "drop")
"""The MUX's counters, in the order of its ``STAT_*`` indices (bpf/mux.bpf.c)."""
DECAP_STATS = ("decap", "decap_bytes", "refused")
"""A server's counters, in the order of the decap's ``STAT_*`` indices (bpf/decap.bpf.c)."""

OPTIONS = {"hash": ("l4", "l3")}
"""``hash``: ``l4`` (default) spreads flows on the 5-tuple; ``l3`` on the addresses only."""
MUTANTS = (
    MutantInfo(
        name="outer-tos-zero",
        description="the MUX writes TOS 0 in the outer header: the client's DSCP and ECN are lost",
        requirements=("RW-8",),
        component="mux",
        caught_by=("suites/test_steady_state.py::test_steady_state[RW-8]",),
    ),
)


class MinimalTarget:
    """The template's stack (see the module docstring)."""

    name = "template"
    modes: tuple[Mode, ...] = ("encap",)
    families: tuple[Family, ...] = ("ipv4",)
    encapsulations: tuple[Encapsulation, ...] = ("ipip",)

    def __init__(self, mutant: str | None = None, options: dict[str, str] | None = None) -> None:
        known = [m.name for m in MUTANTS]
        if mutant is not None and mutant not in known:
            raise ConfigError(
                f"template: unknown mutant {mutant!r}; fix: one of {', '.join(known)}"
            )
        for key, value in (options or {}).items():
            if key not in OPTIONS:
                raise ConfigError(f"template: unknown option {key!r}; fix: one of hash")
            if value not in OPTIONS[key]:
                raise ConfigError(f"template: {key}={value!r}; fix: one of l4, l3")
        self.mutant = mutant
        self.options = dict(options or {})

    def mutants(self) -> Sequence[MutantInfo]:
        return list(MUTANTS)

    def defines(self) -> dict[str, str | int]:
        """The MUX program's build switches: the mutant and the options are ``-D`` defines."""
        out: dict[str, str | int] = {}
        if self.mutant == "outer-tos-zero":
            out["MUTANT_OUTER_TOS_ZERO"] = 1
        if self.options.get("hash") == "l3":
            out["HASH_L3"] = 1
        return out

    def deploy(self, lab: RunningLab) -> MinimalDeployment:
        if lab.topology.mode not in self.modes:
            raise ConfigError(
                f"template: mode {lab.topology.mode}; fix: mode: encap (its only mode)"
            )
        dep = MinimalDeployment(lab, self.defines())
        try:
            dep.deploy()
        except BaseException:
            dep.close()
            raise
        return dep


# --- the maps' C layouts (bpf/*.bpf.c), packed from Python --------------------------------------


def ip4(addr: str) -> bytes:
    """An IPv4 address in network byte order, as the programs keep them."""
    return socket.inet_aton(addr)


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def mux_config(mux_addr: str, src_mac: str, dst_mac: str) -> bytes:
    """``struct tpl_config``."""
    return ip4(mux_addr) + mac(src_mac) + mac(dst_mac)


def service_key(vip: str, port: int, proto: str) -> bytes:
    """``struct tpl_service_key``: VIP, port (network byte order), IP protocol, a zero pad."""
    number = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}[proto]
    return ip4(vip) + struct.pack("!HBB", port, number, 0)


def backends_value(addrs: Sequence[str]) -> bytes:
    """``struct tpl_backends``: the count, then every address, zero-padded to the array's size."""
    if not 0 < len(addrs) <= MAX_BACKENDS:
        raise ConfigError(f"template: {len(addrs)} backends; fix: 1 to {MAX_BACKENDS}")
    slots = b"".join(ip4(a) for a in addrs) + bytes(4 * (MAX_BACKENDS - len(addrs)))
    return struct.pack("<I", len(addrs)) + slots


def percpu_totals(obj: BpfObject, map_name: str, names: Sequence[str]) -> dict[str, int]:
    """A per-CPU counter array summed over the CPUs, each index under its name."""
    m = obj.map(map_name)
    return {
        name: sum(struct.unpack("<Q", v)[0] for v in m.lookup_percpu(struct.pack("<I", i)))
        for i, name in enumerate(names)
    }


# --- one program attached to one node ------------------------------------------------------------


@dataclass
class Attached:
    """A node's loaded object and where its program is attached; ``detach`` undoes it."""

    obj: BpfObject
    netns: str
    ifindex: int
    detach_fn: Callable[[int], None]

    def detach(self) -> None:
        """Detach and unload. The node's interface (or namespace) may be gone with it."""
        try:
            with enter_netns(self.netns):
                self.detach_fn(self.ifindex)
        except LabError:
            pass  # the namespace is gone, and its interfaces with it
        except BpfError as e:
            if e.errno not in (errno.ENODEV, errno.ENOENT):
                raise
        finally:
            self.obj.close()


def xdp_detach(index: int) -> None:
    libbpf.xdp_detach(index, mode="native")


def ifindex(netns: str, ifname: str) -> int:
    with enter_netns(netns):
        try:
            return socket.if_nametoindex(ifname)
        except OSError:
            raise LabError(f"no interface {ifname!r} in namespace {netns}") from None


@dataclass
class NodeState:
    attached: Attached | None = None
    carried: dict[str, int] = field(default_factory=dict)
    """The totals of the programs a restart replaced (counters never decrease)."""


class MinimalDeployment:
    """The stack running in a lab: the MUX program on every MUX, the decap on every server."""

    def __init__(self, lab: RunningLab, defines: dict[str, str | int]) -> None:
        self.lab = lab
        self.defines = defines
        topo = lab.topology
        self.lock = threading.Lock()
        self.sets: dict[str, dict[str, list[str]]] = {
            s.name: {"active": sorted(topo.servers_of(s)), "draining": []} for s in topo.services
        }
        self.nodes: dict[str, NodeState] = {
            n: NodeState() for n in [*topo.of_role("mux"), *topo.of_role("server")]
        }

    # --- deploying -------------------------------------------------------------------------------

    def deploy(self) -> None:
        """The servers first (so the first encapsulated packet finds its decap), then the MUXes,
        each announcing its VIPs once its program is in."""
        for server in self.lab.topology.of_role("server"):
            self._server(server)
        for mux in self.lab.topology.of_role("mux"):
            self._mux(mux)

    def _server(self, server: str) -> None:
        """Load the decap, tell it this server's address and the MUXes', attach it."""
        self._retire(server)
        topo = self.lab.topology
        obj = BpfObject(compile_bpf(DECAP_SOURCE))
        try:
            obj.map("tpl_decap_config").update(struct.pack("<I", 0), ip4(topo.uplink(server).ip))
            for mux in topo.of_role("mux"):  # the only hosts whose tunnels are accepted
                obj.map("tpl_muxes").update(ip4(topo.uplink(mux).ip), b"\x01")
            ns = self.lab.netns(server)
            index = ifindex(ns, topo.uplink(server).ifname)
            with enter_netns(ns):
                prog = obj.program("tpl_decap")
                handle = libbpf.tc_attach(index, prog.fd, "ingress", priority=TC_PRIORITY)

            def detach(i: int) -> None:
                libbpf.tc_detach(i, "ingress", priority=TC_PRIORITY, handle=handle)

        except BaseException:
            obj.close()
            raise
        self.nodes[server].attached = Attached(obj, ns, index, detach)

    def _mux(self, mux: str) -> None:
        """Load the MUX program with its addresses and services, attach it, announce."""
        self._retire(mux)
        topo = self.lab.topology
        router = topo.router
        up = topo.uplink(mux)
        ns = self.lab.netns(mux)
        obj = BpfObject(compile_bpf(MUX_SOURCE, self.defines))
        try:
            cfg = mux_config(
                up.ip,
                link_mac(ns, up.ifname),
                link_mac(self.lab.netns(router), topo.uplink(router, mux).ifname),
            )
            obj.map("tpl_config").update(struct.pack("<I", 0), cfg)
            for svc in topo.services_of_mux(mux):
                self._write_service(obj, svc)
            index = ifindex(ns, up.ifname)
            with enter_netns(ns):
                libbpf.xdp_attach(index, obj.program("tpl_mux").fd, mode="native")
        except BaseException:
            obj.close()
            raise
        self.nodes[mux].attached = Attached(obj, ns, index, xdp_detach)
        speaker = self.lab.bgp(mux)
        for vip in self._vips(mux):
            speaker.announce(vip)

    def _retire(self, node: str) -> None:
        """Detach the node's program, if any, before a new one takes its place (a restart);
        its totals carry over (counters never decrease)."""
        state = self.nodes[node]
        with self.lock:
            old, state.attached = state.attached, None
            if old is not None:
                for name, value in self._read(node, old).items():
                    state.carried[name] = state.carried.get(name, 0) + value
        if old is not None:
            with suppress(LabError, BpfError):  # gone with the node, or already detached
                old.detach()

    def _write_service(self, obj: BpfObject, svc: Service) -> None:
        """One map update: the kernel swaps the service's whole entry in (atomic per MUX)."""
        topo = self.lab.topology
        with self.lock:
            active = list(self.sets[svc.name]["active"])
        addrs = [topo.uplink(n).ip for n in active]
        obj.map("tpl_services").update(
            service_key(svc.vip, svc.port, svc.proto), backends_value(addrs)
        )

    def _vips(self, mux: str) -> list[str]:
        return sorted({s.vip for s in self.lab.topology.services_of_mux(mux)})

    # --- Deployment ------------------------------------------------------------------------------

    def wait_ready(self, timeout: float) -> float:
        """Deploying is synchronous: check once that every node has its program and every MUX
        announces its VIPs."""
        start = time.monotonic()
        missing = [f"{n}: no program attached" for n, s in self.nodes.items() if s.attached is None]
        for mux in self.lab.topology.of_role("mux"):
            announced = set(self.lab.bgp(mux).announced())
            missing += [
                f"{mux}: {vip} not announced" for vip in self._vips(mux) if vip not in announced
            ]
        if missing:
            raise LabError("template not ready: " + "; ".join(missing))
        return time.monotonic() - start

    def status(self) -> dict[str, Any]:
        topo = self.lab.topology
        with self.lock:
            return {
                "template": {
                    mux: {
                        f"{s.vip}:{s.port}/{s.proto}": list(self.sets[s.name]["active"])
                        for s in topo.services_of_mux(mux)
                    }
                    for mux in topo.of_role("mux")
                }
            }

    def restart(self, node: str) -> None:
        """A MUX or server comes back: a fresh program (empty state: it has none anyway) with
        the current backend sets; the MUX announces its VIPs again."""
        role = self.lab.topology.nodes[node].role
        if role == "mux":
            self._mux(node)
        elif role == "server":
            self._server(node)

    def _read(self, node: str, attached: Attached) -> dict[str, int]:
        if self.lab.topology.nodes[node].role == "mux":
            return percpu_totals(attached.obj, "tpl_stats", MUX_STATS)
        return percpu_totals(attached.obj, "tpl_decap_stats", DECAP_STATS)

    def counters(self) -> dict[str, dict[str, int]]:
        """The programs' per-CPU counters, per node, plus what replaced programs had counted."""
        out: dict[str, dict[str, int]] = {}
        with self.lock:
            for node, state in self.nodes.items():
                now = self._read(node, state.attached) if state.attached is not None else {}
                names = set(now) | set(state.carried)
                if names:
                    out[node] = {n: now.get(n, 0) + state.carried.get(n, 0) for n in sorted(names)}
        return out

    def _service(self, name: str) -> Service:
        return service_named(self.lab.topology, name, self.lab.name)

    def backends(self, service: str) -> dict[str, list[str]]:
        svc = self._service(service)
        with self.lock:
            return {k: list(v) for k, v in self.sets[svc.name].items()}

    def set_backends(
        self, service: str, servers: Sequence[str], *, draining: Sequence[str] = ()
    ) -> None:
        """New sets for ``service``, written to every MUX serving it. Without a connection
        table a draining server gets no packet at all: draining is removing (SC-3 FAILs)."""
        topo = self.lab.topology
        svc = self._service(service)
        active, drain = check_backend_sets(topo, self.lab.name, svc, servers, draining)
        backends_value([topo.uplink(n).ip for n in active])  # too many: refused here
        with self.lock:
            self.sets[svc.name] = {"active": sorted(active), "draining": sorted(drain)}
        for mux in topo.of_role("mux"):
            attached = self.nodes[mux].attached
            if attached is not None and svc in topo.services_of_mux(mux):
                self._write_service(attached.obj, svc)

    def close(self) -> None:
        """Withdraw the VIPs, detach every program (the lab may be going: best effort, each
        step on its own)."""
        for mux in self.lab.topology.of_role("mux"):
            for vip in self._vips(mux):
                with suppress(LabError):  # the MUX's BIRD may already be gone
                    self.lab.bgp(mux).withdraw(vip)
        for state in self.nodes.values():
            with self.lock:
                attached, state.attached = state.attached, None
            if attached is not None:
                with suppress(LabError, BpfError):
                    attached.detach()


if TYPE_CHECKING:

    def _is_a_target(target: MinimalTarget) -> Target:
        return target  # mypy checks that the template keeps dsrconform.target.Target
