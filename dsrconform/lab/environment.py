"""The test environment a lab owns around a target's data plane.

Whatever the target, the lab brings up and owns (in this order, before ``Target.deploy``):

- the **server applications**: on every server, the project's app (``python -m dsrconform.app``:
  ``/id``, ``/stream``, uploads, ``X-Server-Id``, a UDP echo of the server's id) or a
  user-chosen command (:class:`ServerCommand`, e.g. nginx). In encap mode they listen on each
  served VIP:port, and the lab puts those VIPs on the server's ``lo`` (/32, or /128 for an IPv6
  VIP: a decapsulated packet is addressed to the VIP); in the NAT modes, on the server's own
  address of the VIP's family and the service's server port;
- a pass-through XDP program on the **router's end of each MUX link**: a MUX that answers with
  XDP_TX (the reference MUX, Katran) reaches a veth peer only when the peer runs native XDP
  (docs/kernel.md); harmless for a MUX that forwards through the kernel;
- **BGP** (BIRD 2, :mod:`dsrconform.lab.bird`): the border router peers with a BIRD on every
  MUX node and installs each VIP (IPv4 or IPv6) as an ECMP route over the MUXes announcing it.
  Sessions come up with nothing announced: the target announces a VIP on a MUX
  (:class:`BirdSpeaker`, ``lab.bgp(mux)``) once its data plane there is ready, and may withdraw
  it. A killed MUX's session dies with it (BIRD is one of the
  node's processes); the lab starts it again, announcing nothing, when the node restarts.

Readiness (:meth:`Environment.wait_ready`): every application listening, and the router's VIP
routes (IPv4 and IPv6) equal to what the MUXes announce (BGP converged). Nothing here touches
the host's own interfaces.
"""

from __future__ import annotations

import functools
import shlex
import socket
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dsrconform.bpf import PASS_PROGRAM
from dsrconform.errors import ConfigError, LabError
from dsrconform.lab.bird import (
    BIRDC_TIMEOUT,
    BirdSpeaker,
    mux_header,
    parse_bird_protocols,
    router_config,
)
from dsrconform.netns import enter_netns
from dsrconform.topoaddrs import endpoint

__all__ = ["BirdSpeaker", "Environment", "ServerCommand", "check_topology", "parse_bird_protocols"]

if TYPE_CHECKING:
    from dsrconform.topology import Service, Topology


class EnvLab(Protocol):
    """What the environment needs of the lab (:class:`dsrconform.lab.lab.Lab` is one)."""

    name: str
    topology: Topology
    dir: Path
    python: str

    def netns(self, node: str) -> str: ...

    def spawn(self, node: str, argv: list[str], *, log: str) -> int: ...


@dataclass(frozen=True)
class ServerCommand:
    """A user-chosen server application instead of the project's app.

    ``argv`` runs on every server (as ``sh -c`` when given as one string), with these in its
    environment: ``DSRC_SERVER_ID`` (the server's node name), ``DSRC_HTTP`` and ``DSRC_UDP``
    (space-separated ``ADDR:PORT`` it must listen on, per the mode: VIP:port in encap, the
    server's address and the service's server port in the NAT modes), ``DSRC_DIR`` (a
    directory of its own for configuration and logs). The suites' HTTP traffic needs ``GET
    /id`` answered with the server's id in an ``X-Server-Id`` header (docs/lab.md shows
    nginx doing it); a stream needs ``/stream`` as the project's app serves it. The lab calls
    it ready once every HTTP address accepts a connection."""

    argv: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> ServerCommand:
        if not text.strip():
            raise ConfigError("server command: empty; fix: a command line, e.g. 'nginx -c ...'")
        return cls(argv=("sh", "-c", text))


@dataclass
class Environment:
    """The lab-owned environment of one lab (see the module doc)."""

    lab: EnvLab
    server_command: ServerCommand | None = None
    speakers: dict[str, BirdSpeaker] = field(default_factory=dict)
    bird_sockets: dict[str, Path] = field(default_factory=dict)
    app_argv: dict[str, list[str]] = field(default_factory=dict)
    ready_files: list[Path] = field(default_factory=list)
    listen: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    """Per server, the HTTP addresses a user-chosen command must accept connections on."""
    daemons: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Every long-running process started, by its log's name: (node, host pid)."""
    passers: list[tuple[str, int]] = field(default_factory=list)

    # --- bring-up -------------------------------------------------------------------------------

    def start(self) -> None:
        topo = self.lab.topology
        for server in topo.of_role("server"):
            self._server(server)
        for mux in topo.of_role("mux"):
            self._passer(mux)
        self._bird()

    def _services(self, server: str) -> list[Service]:
        topo = self.lab.topology
        return [s for s in topo.services if server in topo.servers_of(s)]

    def _server(self, server: str) -> None:
        topo, ns = self.lab.topology, self.lab.netns(server)
        services = self._services(server)
        nat = topo.mode in ("server-nat", "gateway-nat")
        if nat:
            # The agent rewrites VIP:port to the server's address of the VIP's family.
            # (The model refuses an IPv6 service on a server without IPv6 toward the router.)
            up = topo.uplink(server)
            own = {s.name: (up.ip6 if s.family == "ipv6" else None) or up.ip for s in services}
            http = sorted({(own[s.name], s.server_port) for s in services if s.proto == "tcp"})
            udp = sorted({(own[s.name], s.server_port) for s in services if s.proto == "udp"})
        else:
            from pyroute2 import IPRoute

            from dsrconform.lab.netns_backend import add_address6

            with enter_netns(ns):
                ipr = IPRoute()
            with ipr:
                lo = ipr.link_lookup(ifname="lo")[0]
                for vip in sorted({s.vip for s in services}):
                    if ":" in vip:
                        add_address6(ipr, lo, f"{vip}/128")
                    else:
                        ipr.addr("add", index=lo, address=vip, prefixlen=32)
            http = [(s.vip, s.port) for s in services if s.proto == "tcp"]
            udp = [(s.vip, s.port) for s in services if s.proto == "udp"]
        self.listen[server] = http
        if self.server_command is not None:
            own_dir = self.lab.dir / f"server-{server}"
            own_dir.mkdir(exist_ok=True)
            env = {
                "DSRC_SERVER_ID": server,
                "DSRC_HTTP": " ".join(endpoint(a, p) for a, p in http),
                "DSRC_UDP": " ".join(endpoint(a, p) for a, p in udp),
                "DSRC_DIR": str(own_dir),
            }
            exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
            argv = ["sh", "-c", f"export {exports}; exec {shlex.join(self.server_command.argv)}"]
            self.app_argv[server] = argv
        else:
            argv = [self.lab.python, "-m", "dsrconform.app", "--server-id", server]
            for a, p in http:
                argv += ["--http", endpoint(a, p)]
            for a, p in udp:
                argv += ["--udp", endpoint(a, p)]
            ready = self.lab.dir / f"app-{server}.ready"
            ready.unlink(missing_ok=True)
            self.ready_files.append(ready)
            self.app_argv[server] = [*argv, "--ready-file", str(ready)]
        self._spawn(server, self.app_argv[server], log=f"app-{server}.log")

    def _passer(self, mux: str) -> None:
        from pyroute2 import IPRoute

        from dsrconform.bpf import libbpf

        topo = self.lab.topology
        router = topo.router
        back = topo.uplink(router, mux)
        with enter_netns(self.lab.netns(router)):
            ipr = IPRoute()
            with ipr:
                idx = ipr.link_lookup(ifname=back.ifname)[0]
            libbpf.xdp_attach(idx, _pass_program().fd, mode="native")
        if (router, idx) not in self.passers:
            self.passers.append((router, idx))

    def _bird(self) -> None:
        """BIRD 2: eBGP between the router and each MUX (docs/lab.md says why each timer: BIRD's
        defaults take 5-8 s to converge and 60 s to recover after a hold expiry)."""
        topo = self.lab.topology
        router = topo.router
        muxes = topo.of_role("mux")
        if not muxes:
            return
        conf = self.lab.dir / f"bird-{router}.conf"
        conf.write_text(router_config(topo))
        self.bird_sockets[router] = self.lab.dir / f"bird-{router}.ctl"
        for mux in muxes:
            header = mux_header(topo, mux)
            speaker = BirdSpeaker(
                node=mux,
                conf=self.lab.dir / f"bird-{mux}.conf",
                sock=self.lab.dir / f"bird-{mux}.ctl",
                header=header,
                lab_name=self.lab.name,
                dead=functools.partial(self.dead_daemons, f"bird on {mux} "),
                vips_served=frozenset(s.vip for s in topo.services_of_mux(mux)),
            )
            speaker.write()
            self.speakers[mux] = speaker
            self.bird_sockets[mux] = speaker.sock
        for node in self.bird_sockets:
            self._start_bird(node)

    def _start_bird(self, node: str) -> None:
        conf = self.lab.dir / f"bird-{node}.conf"
        sock = self.bird_sockets[node]
        argv = ["bird", "-f", "-c", str(conf), "-s", str(sock)]
        speaker = self.speakers.get(node)
        if speaker is None:
            sock.unlink(missing_ok=True)
            self._spawn(node, argv, log=f"bird-{node}.log")
            return
        # Under the speaker's lock: an announcement either lands in the file BIRD starts with or
        # reloads the running BIRD (it waits for the control socket), never neither.
        with speaker.lock:
            sock.unlink(missing_ok=True)
            self._spawn(node, argv, log=f"bird-{node}.log")
            speaker.running = True

    def _spawn(self, node: str, argv: list[str], *, log: str) -> None:
        self.daemons[log] = (node, self.lab.spawn(node, argv, log=log))

    # --- what targets use -----------------------------------------------------------------------

    def bgp(self, mux: str) -> BirdSpeaker:
        speaker = self.speakers.get(mux)
        if speaker is None:
            known = ", ".join(self.speakers) or "none"
            raise ConfigError(f"bgp: {mux!r} is not a MUX of lab {self.lab.name}; MUXes: {known}")
        return speaker

    # --- faults ---------------------------------------------------------------------------------

    def killed(self, node: str) -> None:
        """``node``'s processes were killed: its BIRD announces nothing any more."""
        if node in self.speakers:
            self.speakers[node].reset()

    def restart(self, node: str) -> None:
        """Start again what the environment runs on ``node`` (its BIRD, announcing what the
        target announced since the kill; its application)."""
        if node in self.bird_sockets:
            self._start_bird(node)
        argv = self.app_argv.get(node)
        if argv is not None:
            ready = self.lab.dir / f"app-{node}.ready"
            ready.unlink(missing_ok=True)
            self._spawn(node, argv, log=f"app-{node}.log")

    # --- readiness and status -------------------------------------------------------------------

    def dead_daemons(self, prefix: str = "") -> list[str]:
        """The daemons started in the lab that have exited, each with the end of its log (with
        ``prefix``, only those whose description starts with it: ``"bird on mux1 "``)."""
        from dsrconform.lab.registry import pid_running

        out = []
        for log, (node, pid) in sorted(self.daemons.items()):
            if pid and pid_running(pid):
                continue
            path = self.lab.dir / log
            try:
                tail = " | ".join(path.read_text(errors="replace").strip().splitlines()[-3:])
            except OSError:
                tail = ""
            what = log.removesuffix(".log").split("-", 1)[0]
            out.append(f"{what} on {node} exited ({log}: {tail or 'empty'})")
        return [d for d in out if d.startswith(prefix)]

    def vip_routes(self) -> dict[str, list[str]]:
        """The router's kernel routes for each VIP: VIP -> next-hop addresses."""
        from pyroute2 import IPRoute

        topo = self.lab.topology
        with enter_netns(self.lab.netns(topo.router)):
            ipr = IPRoute()
        vips = {s.vip for s in topo.services}
        out: dict[str, list[str]] = {v: [] for v in vips}
        # (family, host prefix length) of the VIPs' families: IPv6 only where there are IPv6 VIPs.
        tables = [(socket.AF_INET, 32)] + (
            [(socket.AF_INET6, 128)] if any(":" in v for v in vips) else []
        )
        with ipr:
            routes = [(r, plen) for family, plen in tables for r in ipr.get_routes(family=family)]
            for r, plen in routes:
                dst = r.get_attr("RTA_DST")
                if r["dst_len"] != plen or dst not in vips:
                    continue
                if r.get_attr("RTA_GATEWAY"):
                    out[dst].append(r.get_attr("RTA_GATEWAY"))
                for nh in r.get_attr("RTA_MULTIPATH") or []:
                    if nh.get_attr("RTA_GATEWAY"):
                        out[dst].append(nh.get_attr("RTA_GATEWAY"))
        return {v: sorted(h) for v, h in out.items()}

    def expected_routes(self) -> dict[str, list[str]]:
        """VIP -> the MUX addresses announcing it (every VIP of the topology, [] if none)."""
        topo = self.lab.topology
        want: dict[str, set[str]] = {s.vip: set() for s in topo.services}
        for mux, speaker in self.speakers.items():
            up = topo.uplink(mux)
            for vip in speaker.announced():
                # A MUX fronts IPv6 VIPs only with IPv6 on its link (the model checks).
                hop = up.ip6 if ":" in vip else up.ip
                want.setdefault(vip, set()).add(hop or up.ip)
        return {v: sorted(h) for v, h in want.items()}

    def _not_listening(self) -> list[str]:
        missing = [p.name for p in self.ready_files if not p.exists()]
        if self.server_command is not None:
            for server, addrs in self.listen.items():
                if not all(_accepts(self.lab.netns(server), a, p) for a, p in addrs):
                    missing.append(f"server-command on {server}")
        return missing

    def wait_ready(self, timeout: float) -> float:
        """Wait until every application listens and the router's VIP routes are what the MUXes
        announce. Returns the seconds waited; LabError at the deadline, or at once when a daemon
        it waits on has exited (naming it, with its log's end)."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            missing_apps = self._not_listening()
            want = self.expected_routes()
            routes = self.vip_routes()
            if not missing_apps and routes == want:
                return time.monotonic() - start
            dead = self.dead_daemons()
            if dead:  # it will not get ready: say so now, and why, rather than at the deadline
                raise LabError(f"lab {self.lab.name} cannot get ready: {'; '.join(dead)}")
            if time.monotonic() > deadline:
                raise LabError(
                    f"lab {self.lab.name} not ready after {timeout:.0f} s: apps not listening: "
                    f"{missing_apps or 'none'}; router VIP routes {routes}, announced {want}"
                )
            time.sleep(0.05)  # polling kernel routes and files, bounded by the deadline

    def bgp_state(self) -> dict[str, dict[str, dict[str, str]]]:
        """BGP sessions per node, from BIRD: node -> protocol -> {state, since, info}; a session
        is healthy when state is "up" and info starts with "Established"."""
        out: dict[str, dict[str, dict[str, str]]] = {}
        for node, sock in self.bird_sockets.items():
            try:
                res = subprocess.run(
                    ["birdc", "-s", str(sock), "show", "protocols"],
                    capture_output=True,
                    text=True,
                    timeout=BIRDC_TIMEOUT,
                )
            except subprocess.TimeoutExpired:  # a paused node's BIRD: no sessions to report
                out[node] = {}
                continue
            out[node] = parse_bird_protocols(res.stdout) if res.returncode == 0 else {}
        return out

    def status(self) -> dict[str, Any]:
        return {
            "vip_routes": self.vip_routes(),
            "announced": {m: s.announced() for m, s in self.speakers.items()},
            "bgp": self.bgp_state(),
            "server_app": "dsrconform.app"
            if self.server_command is None
            else shlex.join(self.server_command.argv),
        }

    def close(self) -> None:
        """Detach the pass-through programs (processes and namespaces go with the lab)."""
        from dsrconform.bpf import libbpf

        for router, idx in self.passers:
            # The namespace may already be gone with its interfaces: nothing left to detach.
            with suppress(OSError, LabError), enter_netns(self.lab.netns(router)):
                libbpf.xdp_detach(idx, mode="native")
        self.passers = []


def _accepts(netns: str, addr: str, port: int) -> bool:
    """Whether ``addr:port`` accepts a TCP connection inside ``netns`` (either family)."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with enter_netns(netns):
        s = socket.socket(family, socket.SOCK_STREAM)
    with s:
        s.settimeout(0.5)
        try:
            s.connect((addr, port))
        except OSError:
            return False
        return True


_PASS: list[Any] = []  # [object, program], loaded once per process


def _pass_program() -> Any:
    """The XDP_PASS program (dsrconform/bpf/progs/xdp_pass.bpf.c), loaded once per process."""
    if not _PASS:
        from dsrconform.bpf.build import compile_bpf
        from dsrconform.bpf.libbpf import BpfObject

        progs = Path(__file__).resolve().parent.parent / "bpf" / "progs"
        obj = BpfObject(compile_bpf(progs / "xdp_pass.bpf.c"))
        _PASS.extend([obj, obj.program(PASS_PROGRAM)])
    return _PASS[1]


def check_topology(topo: Topology) -> list[str]:
    """What the environment needs beyond a valid topology: each MUX on a link of its own to the
    router (the pass-through program, and a MUX answering with XDP_TX, need one)."""
    out = []
    router = topo.router
    for mux in topo.of_role("mux"):
        if not any(set(link.ends) == {mux, router} for link in topo.links):
            out.append(
                f"{mux} needs a link of its own to the router {router} (a MUX sends "
                "encapsulated packets back over it); fix: a link, not a segment"
            )
    return out
