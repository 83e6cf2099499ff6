"""The test environment a lab owns around a target's data plane.

Whatever the target, the lab brings up and owns (in this order, before ``Target.deploy``):

- the **server applications**: on every server, the project's app (``python -m dsrconform.app``:
  ``/id``, ``/stream``, uploads, ``X-Server-Id``, a UDP echo of the server's id) or a
  user-chosen command (:class:`ServerCommand`, e.g. nginx). In encap mode they listen on each
  served VIP:port, and the lab puts those VIPs on the server's ``lo`` (a decapsulated packet is
  addressed to the VIP); in the NAT modes, on the server's own address and the service's
  server port;
- a pass-through XDP program on the **router's end of each MUX link**: a MUX that answers with
  XDP_TX (the reference MUX, Katran) reaches a veth peer only when the peer runs native XDP
  (docs/kernel.md); harmless for a MUX that forwards through the kernel;
- **BGP** (BIRD 2): the border router peers with a BIRD on every MUX node and installs each VIP
  as an ECMP route over the MUXes announcing it. Sessions come up with nothing announced: the
  target announces a VIP on a MUX (:class:`BirdSpeaker`, ``lab.bgp(mux)``) once its data plane
  there is ready, and may withdraw it. A killed MUX's session dies with it (BIRD is one of the
  node's processes); the lab starts it again, announcing nothing, when the node restarts.

Readiness (:meth:`Environment.wait_ready`): every application listening, and the router's VIP
routes equal to what the MUXes announce (BGP converged). Nothing here touches the host's own
interfaces.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dsrconform.bpf import PASS_PROGRAM
from dsrconform.errors import ConfigError, LabError
from dsrconform.netns import enter_netns

if TYPE_CHECKING:
    from dsrconform.topology import Service, Topology

# BGP timers: a hung MUX is detected in ~3 s, sessions come up in ~1.5 s and retry at once
# after an error. graceful restart off: else the router keeps a killed MUX's routes for 120 s.
BIRD_TIMERS = (
    "hold time 3; keepalive time 1; connect delay time 1; connect retry time 1; "
    "error wait time 1, 2; error forget time 10; startup hold time 3; graceful restart off;"
)
BIRD_COMMON = "timeformat protocol iso long;\n"
BIRDC_TIMEOUT = 10.0
"""Seconds an announcement waits for its MUX's BIRD to take the new configuration (a BIRD
started a moment ago opens its control socket within a few milliseconds)."""


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
class BirdSpeaker:
    """The BGP speaker of one MUX node (``lab.bgp(mux)``): what it announces to the router.

    ``announce``/``withdraw`` are idempotent; each rewrites the node's BIRD configuration and,
    while BIRD runs, has it reload (``birdc configure``: the session stays up, only the route
    changes). A restarted node's speaker announces nothing until the target announces again."""

    node: str
    conf: Path
    sock: Path
    header: str
    vips_served: frozenset[str] = frozenset()
    """The VIPs of the services this MUX fronts (the topology's): the only ones it may announce."""
    lab_name: str = "lab"
    dead: Callable[[], list[str]] = field(default=lambda: [], repr=False)
    """The lab's daemons that have exited (an announcement stops waiting on a BIRD that died)."""
    running: bool = False
    vips: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def announce(self, vip: str) -> None:
        self._change(vip, add=True)

    def withdraw(self, vip: str) -> None:
        self._change(vip, add=False)

    def announced(self) -> list[str]:
        with self.lock:
            return sorted(self.vips)

    def _change(self, vip: str, *, add: bool) -> None:
        if vip not in self.vips_served:
            raise ConfigError(
                f"bgp {self.node}: {vip!r} is not a VIP this MUX fronts; fix: one of "
                f"{', '.join(sorted(self.vips_served)) or 'none (no service names this MUX)'}"
            )
        with self.lock:
            if (vip in self.vips) == add:
                return
            if add:
                self.vips.add(vip)
            else:
                self.vips.discard(vip)
            self.write()
            if self.running:
                self._reload()

    def write(self) -> None:
        routes = "".join(f"  route {v}/32 blackhole;\n" for v in sorted(self.vips))
        # Whole or not at all: a BIRD starting or reloading never reads a half-written file.
        tmp = self.conf.with_name(self.conf.name + ".tmp")
        tmp.write_text(self.header.replace("@ROUTES@", routes))
        os.replace(tmp, self.conf)

    def reset(self) -> None:
        """Forget every announcement (the node was killed: its BIRD is gone)."""
        with self.lock:
            self.vips.clear()
            self.running = False
            self.write()

    def _reload(self) -> None:
        deadline = time.monotonic() + BIRDC_TIMEOUT
        last = ""
        while True:
            try:
                res = subprocess.run(
                    ["birdc", "-s", str(self.sock), "configure"],
                    capture_output=True,
                    text=True,
                    timeout=max(0.5, deadline - time.monotonic()),
                )
            except subprocess.TimeoutExpired:  # a paused BIRD accepts, then never answers
                raise LabError(
                    f"bgp {self.node}: BIRD did not answer `birdc configure` within "
                    f"{BIRDC_TIMEOUT:.0f} s (is the node paused?)"
                ) from None
            if res.returncode == 0 and "Reconfigur" in res.stdout:
                return
            last = (res.stdout + res.stderr).strip().replace("\n", " | ")
            dead = self.dead()
            if dead:
                raise LabError(f"lab {self.lab_name} cannot get ready: {'; '.join(dead)}")
            if time.monotonic() > deadline:
                raise LabError(f"bgp {self.node}: BIRD did not take the new routes: {last}")
            time.sleep(0.02)  # BIRD opening its control socket; bounded by the deadline


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
            addr = topo.uplink(server).ip
            http = sorted({(addr, s.server_port) for s in services if s.proto == "tcp"})
            udp = sorted({(addr, s.server_port) for s in services if s.proto == "udp"})
        else:
            from pyroute2 import IPRoute

            with enter_netns(ns):
                ipr = IPRoute()
            with ipr:
                lo = ipr.link_lookup(ifname="lo")[0]
                for vip in sorted({s.vip for s in services}):
                    ipr.addr("add", index=lo, address=vip, prefixlen=32)
            http = [(s.vip, s.port) for s in services if s.proto == "tcp"]
            udp = [(s.vip, s.port) for s in services if s.proto == "udp"]
        self.listen[server] = http
        if self.server_command is not None:
            own = self.lab.dir / f"server-{server}"
            own.mkdir(exist_ok=True)
            env = {
                "DSRC_SERVER_ID": server,
                "DSRC_HTTP": " ".join(f"{a}:{p}" for a, p in http),
                "DSRC_UDP": " ".join(f"{a}:{p}" for a, p in udp),
                "DSRC_DIR": str(own),
            }
            exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
            argv = ["sh", "-c", f"export {exports}; exec {shlex.join(self.server_command.argv)}"]
            self.app_argv[server] = argv
        else:
            argv = [self.lab.python, "-m", "dsrconform.app", "--server-id", server]
            for a, p in http:
                argv += ["--http", f"{a}:{p}"]
            for a, p in udp:
                argv += ["--udp", f"{a}:{p}"]
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
        rtr_id = topo.uplink(muxes[0], router).peer_ip
        peers = []
        for mux in muxes:
            up = topo.uplink(mux)
            peers.append(
                f"protocol bgp {mux} from muxes {{\n  local {up.peer_ip} as "
                f"{topo.nodes[router].asn};\n  neighbor {up.ip} as {topo.nodes[mux].asn};\n}}\n"
            )
        conf = self.lab.dir / f"bird-{router}.conf"
        conf.write_text(
            f"{BIRD_COMMON}router id {rtr_id};\nprotocol device {{ scan time 10; }}\n"
            # merge paths: one ECMP route per VIP over every MUX announcing it.
            "protocol kernel {\n  ipv4 { import none; export where source = RTS_BGP; };\n"
            "  merge paths yes;\n  learn off;\n  persist off;\n  scan time 10;\n}\n"
            f"template bgp muxes {{\n  {BIRD_TIMERS}\n  ipv4 {{ import all; export none; }};\n}}\n"
            + "".join(peers)
        )
        self.bird_sockets[router] = self.lab.dir / f"bird-{router}.ctl"
        for mux in muxes:
            up = topo.uplink(mux)
            header = (
                f"{BIRD_COMMON}router id {up.ip};\nprotocol device {{ scan time 10; }}\n"
                "protocol static vips {\n  ipv4;\n@ROUTES@}\n"
                f"protocol bgp border {{\n  local {up.ip} as {topo.nodes[mux].asn};\n"
                f"  neighbor {up.peer_ip} as {topo.nodes[router].asn};\n  {BIRD_TIMERS}\n"
                '  ipv4 { import none; export where proto = "vips"; next hop self; };\n}\n'
            )
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
        with ipr:
            for r in ipr.get_routes(family=2):
                dst = r.get_attr("RTA_DST")
                if r["dst_len"] != 32 or dst not in vips:
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
            for vip in speaker.announced():
                want.setdefault(vip, set()).add(topo.uplink(mux).ip)
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
    """Whether ``addr:port`` accepts a TCP connection inside ``netns``."""
    with enter_netns(netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
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


_BIRD_ROW = re.compile(
    r"^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)\s*(.*)$"
)


def parse_bird_protocols(text: str) -> dict[str, dict[str, str]]:
    """BGP rows of ``birdc show protocols`` (with ``timeformat protocol iso long``)."""
    rows: dict[str, dict[str, str]] = {}
    for line in text.splitlines()[2:]:
        m = _BIRD_ROW.match(line.rstrip())
        if m and m.group(2) == "BGP":
            rows[m.group(1)] = {"state": m.group(4), "since": m.group(5), "info": m.group(6)}
    return rows


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
