"""BGP in a lab: the BIRD 2 configurations of the border router and of each MUX node, and the
speaker a target drives on each MUX (:class:`BirdSpeaker`, ``lab.bgp(mux)``).

The router (its own AS) runs one eBGP session with each MUX (AS of their own), over the IPv4
addresses of their link, and installs each VIP as one route whose next hops are the MUXes
announcing it (``merge paths``: ECMP). IPv6 VIPs travel over the *same* sessions: where a MUX's
link has IPv6, both ends add an ``ipv6`` channel (multiprotocol BGP, RFC 4760), and the MUX
gives its link's global IPv6 address as the routes' next hop (``next hop address``); the router
installs them in the IPv6 table through a second kernel protocol, with merge paths too. Why
not a second, IPv6 session per MUX: one session per MUX keeps one failure detector per MUX
(a MUX's death withdraws both families at once, as a real box's does), the session state the
lab reports stays one row per MUX, and the IPv4-only configuration is unchanged. BIRD 2.0.12
here carries the ipv6 channel over an IPv4 session reliably (tests/integration/test_lab_dual.py);
left to itself it takes a global IPv6 address of the session's interface as next hop (seen
here: the right one, plus the link-local), and ``next hop address`` pins it to the address the
file gives the MUX, the one the lab's readiness check expects, whatever else the link holds.
Extended next hop (RFC 8950) is the other direction, IPv4 routes over IPv6 next hops: not
needed, every link has IPv4.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dsrconform.errors import ConfigError, LabError

if TYPE_CHECKING:
    from dsrconform.topology import Topology

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


def router_config(topo: Topology) -> str:
    """The border router's BIRD configuration: a session with every MUX, VIP routes installed
    with merge paths (ECMP), IPv6 ones too where a MUX link has IPv6."""
    router = topo.router
    muxes = topo.of_role("mux")
    rtr_id = topo.uplink(muxes[0], router).peer_ip
    six = [m for m in muxes if topo.address6_of(m) is not None]
    peers = []
    for mux in muxes:
        up = topo.uplink(mux)
        channel6 = "  ipv6 { import all; export none; };\n" if mux in six else ""
        peers.append(
            f"protocol bgp {mux} from muxes {{\n  local {up.peer_ip} as "
            f"{topo.nodes[router].asn};\n  neighbor {up.ip} as {topo.nodes[mux].asn};\n"
            f"{channel6}}}\n"
        )
    kernel6 = (
        "protocol kernel kernel6 {\n  ipv6 { import none; export where source = RTS_BGP; };\n"
        "  merge paths yes;\n  learn off;\n  persist off;\n  scan time 10;\n}\n"
        if six
        else ""
    )
    return (
        f"{BIRD_COMMON}router id {rtr_id};\nprotocol device {{ scan time 10; }}\n"
        # merge paths: one ECMP route per VIP over every MUX announcing it.
        "protocol kernel {\n  ipv4 { import none; export where source = RTS_BGP; };\n"
        "  merge paths yes;\n  learn off;\n  persist off;\n  scan time 10;\n}\n"
        + kernel6
        + f"template bgp muxes {{\n  {BIRD_TIMERS}\n  ipv4 {{ import all; export none; }};\n}}\n"
        + "".join(peers)
    )


def mux_header(topo: Topology, mux: str) -> str:
    """A MUX's BIRD configuration with ``@ROUTES@`` (and ``@ROUTES6@`` where its link has
    IPv6) where :meth:`BirdSpeaker.write` puts the VIPs announced."""
    router = topo.router
    up = topo.uplink(mux)
    static6 = channel6 = ""
    if up.ip6 is not None:
        static6 = "protocol static vips6 {\n  ipv6;\n@ROUTES6@}\n"
        channel6 = (
            f'  ipv6 {{ import none; export where proto = "vips6"; next hop address {up.ip6}; }};\n'
        )
    return (
        f"{BIRD_COMMON}router id {up.ip};\nprotocol device {{ scan time 10; }}\n"
        "protocol static vips {\n  ipv4;\n@ROUTES@}\n"
        + static6
        + f"protocol bgp border {{\n  local {up.ip} as {topo.nodes[mux].asn};\n"
        f"  neighbor {up.peer_ip} as {topo.nodes[router].asn};\n  {BIRD_TIMERS}\n"
        '  ipv4 { import none; export where proto = "vips"; next hop self; };\n' + channel6 + "}\n"
    )


@dataclass
class BirdSpeaker:
    """The BGP speaker of one MUX node (``lab.bgp(mux)``): what it announces to the router,
    IPv4 and IPv6 VIPs alike (IPv6 ones over the same session, see the module doc).

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
        with suppress(ValueError):  # an IPv6 VIP in any spelling; a bad one is refused below
            vip = str(ipaddress.ip_address(vip))
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
        vips = sorted(self.vips)
        routes = "".join(f"  route {v}/32 blackhole;\n" for v in vips if ":" not in v)
        routes6 = "".join(f"  route {v}/128 blackhole;\n" for v in vips if ":" in v)
        text = self.header.replace("@ROUTES@", routes).replace("@ROUTES6@", routes6)
        # Whole or not at all: a BIRD starting or reloading never reads a half-written file.
        tmp = self.conf.with_name(self.conf.name + ".tmp")
        tmp.write_text(text)
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
