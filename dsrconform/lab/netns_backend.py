"""The ``netns`` lab backend: each node is a network namespace, links are veth pairs, segments are
Linux bridges, all configured over netlink (pyroute2) from inside each namespace.

Nothing is created in the host's namespace: a veth is created inside one node's namespace with
its peer placed directly in the other's, so the host never sees it, even for an instant.
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

from dsrconform.errors import LabError, PrivilegeError
from dsrconform.lab import registry
from dsrconform.netns import create_netns, enter_netns
from dsrconform.topology import IF_PREFIX, Topology

# Per-namespace sysctls (paths under /proc/sys); IPv6 off where the topology gives a node none
# (keeps neighbour discovery out of the measurements), rp_filter off because DSR replies leave
# by another path than requests arrive.
_IPV6_OFF = {
    "net/ipv6/conf/all/disable_ipv6": "1",
    "net/ipv6/conf/default/disable_ipv6": "1",
}
# A node the topology gives IPv6: on, with no duplicate address detection (an address is usable
# at once: an application binding it, or a route through it, never meets a tentative address),
# no router advertisements or autoconfiguration (the file says every address and route), and
# addresses kept when an interface goes down: IPv6 otherwise flushes them on `ip link set down`
# (IPv4 keeps its), so a killed and restarted node (kill_node/restart_node, a link-down fault)
# came back with IPv4 only, and the router's IPv6 next hop through it never resolved again.
# Written before the node's interfaces are made, so "default" covers them all.
_IPV6_ON = {
    f"net/ipv6/conf/{conf}/{key}": value
    for conf in ("all", "default")
    for key, value in (
        ("disable_ipv6", "0"),
        ("accept_dad", "0"),
        ("accept_ra", "0"),
        ("autoconf", "0"),
        ("ignore_routes_with_linkdown", "1"),
        ("keep_addr_on_down", "1"),
    )
}
_ALL_NODES = {
    "net/ipv4/conf/all/rp_filter": "0",
    "net/ipv4/conf/default/rp_filter": "0",
    # A next hop whose link is down leaves its ECMP group at once (not after BGP's hold time).
    "net/ipv4/conf/all/ignore_routes_with_linkdown": "1",
    "net/ipv4/conf/default/ignore_routes_with_linkdown": "1",
}
_FORWARDING = {"net/ipv4/ip_forward": "1"}
_FORWARDING6 = {"net/ipv6/conf/all/forwarding": "1"}
# Clients ask for ECN on every TCP connection (RFC 3168), as many real clients do: the stack
# under test then carries ECN-capable TCP, whose marks RW-8 follows through encapsulation.
_CLIENTS = {"net/ipv4/tcp_ecn": "1"}
# ECMP on the 5-tuple read from each packet, as a border router hashes it: a 5-tuple always
# reaches the same MUX. Policy 1 ("L4") is not that: it takes the hash already on the packet,
# which a sender's TCP socket sets from its random per-socket txhash (re-drawn on timeouts), so
# a 5-tuple reused by a later connection, or a RST the client sends without a socket, could
# reach another MUX. Seen in CI: a false AF-1 FAIL. Policy 3 hashes the fields chosen below.
_ROUTER = {
    "net/ipv4/fib_multipath_hash_policy": "3",
    "net/ipv4/fib_multipath_hash_fields": "0x0037",  # src and dst IP, IP protocol, both ports
}
# The same for IPv6 (the same field bits; the flow label, 0x0008, left out: a sender re-draws it
# with its txhash, as above, so a 5-tuple would move between MUXes).
_ROUTER6 = {
    "net/ipv6/fib_multipath_hash_policy": "3",
    "net/ipv6/fib_multipath_hash_fields": "0x0037",
}
IFA_F_NODAD = 0x02  # <linux/if_addr.h>: an address usable at once (no DAD, belt and braces)


SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17  # the legacy "tx" feature of `ethtool -K DEV tx off`


def tx_checksum_off(sock: socket.socket, dev: str) -> None:
    """``ethtool -K DEV tx off`` as one ioctl on ``sock`` (opened in the device's namespace):
    a subprocess per interface cost ~20 ms per lab."""
    value = ctypes.create_string_buffer(struct.pack("=II", ETHTOOL_STXCSUM, 0))
    ifreq = struct.pack("16sP", dev.encode(), ctypes.addressof(value)).ljust(40, b"\0")
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)


def set_sysctls(values: dict[str, str]) -> None:
    """Write ``/proc/sys`` values (paths relative to it) in the calling thread's namespace."""
    for path, value in values.items():
        with open(f"/proc/sys/{path}", "w") as f:  # the calling thread's namespace
            f.write(value)


PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.restype = ctypes.c_int
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _die_with(owner: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGKILL when the thread that forked it ends
    (``PR_SET_PDEATHSIG``, kept across exec). Resolved before the fork, so the child only calls
    into libc. If the owner died before the call, no signal would ever come: exit instead."""

    def preexec() -> None:
        if _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0 or os.getppid() != owner:
            os._exit(127)

    return preexec


_SPAWNER: list[tuple[int, ThreadPoolExecutor]] = []
_SPAWNER_LOCK = threading.Lock()


def _spawner() -> ThreadPoolExecutor:
    """The one thread of this process that forks the daemons which die with it.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child ends, not the process: a
    MUX restarted by a scenario's fault from a worker thread would be killed when that worker
    finishes. This thread lives as long as the process (a fork of the process gets its own)."""
    with _SPAWNER_LOCK:
        if not _SPAWNER or _SPAWNER[0][0] != os.getpid():
            _SPAWNER[:] = [(os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="dsrc-spawn"))]
        return _SPAWNER[0][1]


# --- namespace plumbing (every backend whose nodes' namespaces are named under /run/netns) -------

NetnsOf = Callable[[str], str]
"""A node name -> its namespace's name under /run/netns (a backend's ``netns``)."""


def plumb(topo: Topology, netns: NetnsOf) -> None:
    """Links, segments, addresses, routes, sysctls and offloads between the nodes' named
    namespaces, all configured from the host through the names (any backend that makes its
    nodes' namespaces visible under /run/netns uses this)."""
    with ExitStack() as stack:
        ipr = {n: stack.enter_context(_ipr(netns(n))) for n in topo.nodes}
        for node, spec in topo.nodes.items():
            ipv6 = topo.has_ipv6(node)
            with enter_netns(netns(node)):
                set_sysctls(_IPV6_ON if ipv6 else _IPV6_OFF)
                set_sysctls(_ALL_NODES)
                if spec.role in ("router", "gateway"):
                    set_sysctls(_FORWARDING)
                    if ipv6:
                        set_sysctls(_FORWARDING6)
                if spec.role == "router":
                    set_sysctls(_ROUTER)
                    if ipv6:
                        set_sysctls(_ROUTER6)
                if spec.role == "client":
                    set_sysctls(_CLIENTS)
            lo = ipr[node].link_lookup(ifname="lo")[0]
            ipr[node].link("set", index=lo, state="up")
        _links(topo, ipr, netns)
        _segments(topo, ipr, netns)
        _addresses(topo, ipr)
        _routes(topo, ipr)
    _checksum_offload(topo, netns)


@contextmanager
def _ipr(ns: str) -> Iterator[Any]:
    """A netlink socket bound to namespace ``ns`` (opened from inside it)."""
    from pyroute2 import IPRoute

    with enter_netns(ns):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _veth(ipr: Any, a_if: str, b_node: str, b_ns: str, b_if: str) -> None:
    try:
        ipr.link("add", ifname=a_if, kind="veth", peer={"ifname": b_if, "net_ns_fd": b_ns})
    except Exception as e:
        raise LabError(f"creating veth {a_if}/{b_if} ({b_node}): {e}") from e


def _links(topo: Topology, ipr: dict[str, Any], netns: NetnsOf) -> None:
    for link in topo.links:
        (a, _), (b, _) = link.ends.items()
        _veth(ipr[a], IF_PREFIX + b, b, netns(b), IF_PREFIX + a)


def _segments(topo: Topology, ipr: dict[str, Any], netns: NetnsOf) -> None:
    for seg in topo.segments:
        host = ipr[seg.host]
        br = f"{IF_PREFIX}br-{seg.name}"
        host.link("add", ifname=br, kind="bridge")
        br_idx = host.link_lookup(ifname=br)[0]
        for member in seg.members:
            port = "dsrc" + member
            _veth(ipr[member], IF_PREFIX + seg.name, seg.host, netns(seg.host), port)
            idx = host.link_lookup(ifname=port)[0]
            host.link("set", index=idx, master=br_idx, mtu=seg.mtu, state="up")


def _addresses(topo: Topology, ipr: dict[str, Any]) -> None:
    for iface in topo.interfaces():
        sock = ipr[iface.node]
        idx = sock.link_lookup(ifname=iface.ifname)[0]
        net = ipaddress.IPv4Interface(iface.address)
        sock.addr("add", index=idx, address=str(net.ip), prefixlen=net.network.prefixlen)
        if iface.address6 is not None:
            add_address6(sock, idx, iface.address6)
        sock.link("set", index=idx, mtu=iface.mtu, state="up")
    for node in topo.of_role("client"):
        up = topo.uplink(node)
        idx = ipr[node].link_lookup(ifname=up.ifname)[0]
        plen = ipaddress.IPv4Interface(up.address).network.prefixlen
        for extra in topo.nodes[node].addresses:
            if ":" not in extra:
                ipr[node].addr("add", index=idx, address=extra, prefixlen=plen)
            elif up.address6 is not None:  # the model refuses an IPv6 address without
                plen6 = ipaddress.IPv6Interface(up.address6).network.prefixlen
                add_address6(ipr[node], idx, f"{extra}/{plen6}")


def add_address6(ipr: Any, index: int, address: str) -> None:
    """An IPv6 address (with prefix) on interface ``index``, usable at once (no DAD)."""
    net = ipaddress.IPv6Interface(address)
    ipr.addr(
        "add",
        index=index,
        address=str(net.ip),
        prefixlen=net.network.prefixlen,
        family=socket.AF_INET6,
        flags=IFA_F_NODAD,
    )


def _routes(topo: Topology, ipr: dict[str, Any]) -> None:
    router = topo.router
    gateways = topo.of_role("gateway")
    for node, spec in topo.nodes.items():
        if node == router:
            for net in topo.blackhole:
                if ":" not in net:
                    ipr[node].route("add", dst=net, type="blackhole")
                else:
                    ipr[node].route("add", dst=net, type="blackhole", family=socket.AF_INET6)
            continue
        via = up = topo.uplink(node)
        if spec.role == "server" and topo.mode == "gateway-nat":
            via = topo.uplink(node, gateways[0])  # replies leave through the egress gateway
        ipr[node].route("add", dst="0.0.0.0/0", gateway=via.peer_ip)
        # IPv6 likewise (through the router when the gateway has no IPv6 toward the server).
        via6 = via.peer_ip6 or up.peer_ip6
        if via6 is not None:
            ipr[node].route("add", dst="::/0", gateway=via6, family=socket.AF_INET6)


def _checksum_offload(topo: Topology, netns: NetnsOf) -> None:
    """Transmit checksum offload off where the topology says so (the default): native XDP
    drops CHECKSUM_PARTIAL, and the receiver would see bad TCP/UDP checksums."""
    per_node: dict[str, list[str]] = {}
    for iface in topo.interfaces():
        if not iface.tx_offload and not iface.bridge:
            per_node.setdefault(iface.node, []).append(iface.ifname)
    for seg in topo.segments:
        if not seg.tx_checksum_offload:
            per_node.setdefault(seg.host, []).extend("dsrc" + m for m in seg.members)
    for node, devs in per_node.items():
        with enter_netns(netns(node)):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound to the node
        with sock:
            for dev in devs:
                try:
                    tx_checksum_off(sock, dev)
                except OSError as e:
                    raise LabError(f"{node}: tx checksum offload off on {dev}: {e}") from e


def run_in_node(
    host_argv: list[str], node: str, argv: list[str], *, timeout: float, check: bool
) -> subprocess.CompletedProcess[str]:
    """Run ``host_argv`` (a backend's ``run_argv(node, argv)``) and wait for it, output
    captured as text; with ``check``, a non-zero exit is a LabError naming ``argv``."""
    res = subprocess.run(host_argv, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise LabError(f"{node}: {' '.join(argv)} exited {res.returncode}: {res.stderr.strip()}")
    return res


class NetnsBackend:
    """Brings a :class:`~dsrconform.topology.Topology` to life in namespaces named
    ``dsrc-<lab>.<node>``."""

    kind = "netns"
    python = sys.executable  # the interpreter that runs Python programs inside a node

    def __init__(self, lab: str) -> None:
        self.lab = lab
        self.die_with_owner = False
        """Whether :meth:`spawn`'s daemons get SIGKILL when this process ends (the lab sets it
        unless it is brought up to outlive it)."""

    def netns(self, node: str) -> str:
        return registry.ns_name(self.lab, node)

    # --- lifecycle -------------------------------------------------------------------------------

    def create(self, topo: Topology) -> None:
        """Namespaces, links, segments, addresses, routes and sysctls of ``topo``. On any error the
        caller tears down (:meth:`destroy`); nothing is left half-made on purpose."""
        self._namespaces(topo)
        plumb(topo, self.netns)

    def destroy(self) -> dict[str, list[str]]:
        return registry.reap(self.lab)

    # --- pieces ----------------------------------------------------------------------------------

    def _namespaces(self, topo: Topology) -> None:
        """One named namespace per node (``/run/netns/dsrc-<lab>.<node>``)."""
        try:
            create_netns([self.netns(node) for node in topo.nodes])
        except FileExistsError as e:
            raise LabError(
                f"namespace {Path(str(e.filename)).name} already exists: lab {self.lab!r} is up or"
                f" was left behind; fix: `dsrconform lab down {self.lab}`"
            ) from None
        except PermissionError:
            raise PrivilegeError("creating network namespaces needs root") from None

    # --- processes ------------------------------------------------------------------------------

    def spawn(
        self, node: str, argv: list[str], *, log: Path, env: dict[str, str] | None = None
    ) -> int:
        """Start a long-running process inside ``node``; returns its pid. Its output goes to
        ``log``. It runs in its own session, so a terminal's Ctrl-C reaches the lab, not it.
        With :attr:`die_with_owner` it is forked by the spawner thread (:func:`_spawner`) and
        killed when this process ends."""
        log.parent.mkdir(parents=True, exist_ok=True)
        ns = self.netns(node)
        preexec = _die_with(os.getpid()) if self.die_with_owner else None

        def start() -> subprocess.Popen[bytes]:
            with enter_netns(ns), open(log, "ab") as out:
                try:
                    return subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        env=env,
                        preexec_fn=preexec,
                    )
                except FileNotFoundError:
                    raise LabError(f"{node}: cannot start {argv[0]!r}: not installed") from None

        proc = _spawner().submit(start).result() if self.die_with_owner else start()
        return proc.pid

    def run(
        self, node: str, argv: list[str], *, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside ``node`` and wait for it (:meth:`run_argv` says how)."""
        return run_in_node(self.run_argv(node, argv), node, argv, timeout=timeout, check=check)

    def run_argv(self, node: str, argv: list[str]) -> list[str]:
        """The host command line that runs ``argv`` inside ``node`` (``ip netns exec``, which
        also gives the command the namespace's view of /sys)."""
        return ["ip", "netns", "exec", self.netns(node), *argv]

    def exec_argv(self, node: str, argv: list[str]) -> list[str]:
        """The host command line that runs ``argv`` inside ``node`` interactively."""
        return self.run_argv(node, argv)

    # --- node faults (the lab records them) ------------------------------------------------------

    def processes(self, node: str) -> list[int]:
        return sorted(registry.pids_in_namespaces([self.netns(node)]))

    def revive(self, node: str) -> None:
        """Make a killed node able to run processes again (a namespace needs nothing)."""

    def kill(self, node: str) -> list[int]:
        """SIGKILL every process of ``node``; returns their pids once they are gone."""
        pids = self.processes(node)
        registry.kill_pids(pids)
        return pids

    def pause(self, node: str) -> list[int]:
        """SIGSTOP every process of ``node``; returns the pids (for :meth:`resume`)."""
        pids = self.processes(node)
        for pid in pids:
            with suppress(ProcessLookupError):  # exited meanwhile
                os.kill(pid, signal.SIGSTOP)
        return pids

    def resume(self, node: str, pids: list[int]) -> None:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def set_link(self, node: str, ifname: str, up: bool) -> None:
        self.run(node, ["ip", "link", "set", ifname, "up" if up else "down"])
