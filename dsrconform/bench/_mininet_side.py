"""The Mininet side of ``dsrconform bench lab``: one round, run by the SYSTEM python.

Debian's ``mininet`` package installs the ``mininet`` module for ``/usr/bin/python3`` only, so
:mod:`dsrconform.bench.lab` runs this file as a subprocess (it imports nothing of dsrconform and
must stay Python 3 stdlib + mininet). It builds one LinuxBridge switch with ``HOSTS`` hosts, no
controller, times the build (host shells, veths, addresses), ``net.start()`` (the bridge) and
``net.stop()``, checks that nothing of it is left, and prints one JSON line on stdout::

    {"build_ms": ..., "start_ms": ..., "up_ms": ..., "down_ms": ..., "leftovers": [...]}

Safety: Mininet's ``init()`` raises host-wide sysctls (buffer sizes, neighbour tables) and
rlimits; it is skipped (``Mininet.inited = True``), so the host keeps its settings. The switch is
a bridge in the host's namespace (Mininet's default for switches), so the round refuses to start
if any interface with one of its names already exists there, and ``net.stop()`` deletes the
bridge and its veths (checked afterwards). ``mn -c`` is never run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

HOSTS = 8
IP_BASE = "198.18.64.0/24"
# Mininet's names: switch s1 with ports s1-eth<N>, hosts h<N> with h<N>-eth0.
NAME_RE = re.compile(r"^(s1|s1-eth\d+|h\d+-eth\d+)(@.*)?$")


def host_links() -> list[str]:
    """Names of the host-namespace interfaces that look like Mininet's."""
    out = subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    names = []
    for line in out.splitlines():
        name = line.split(":", 2)[1].strip()
        if NAME_RE.match(name):
            names.append(name.split("@", 1)[0])
    return names


def mininet_shells(pids_before: set[int]) -> list[int]:
    """``mnexec`` host shells started since ``pids_before`` that are still alive."""
    left = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in pids_before:
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"mnexec"):
            left.append(int(d))
    return left


def main() -> int:
    if os.geteuid() != 0:
        print(json.dumps({"error": "Mininet needs root"}))
        return 2
    clash = host_links()
    if clash:
        print(json.dumps({"error": f"interfaces with Mininet's names already exist: {clash}"}))
        return 3
    from mininet.log import setLogLevel  # type: ignore[import-not-found]
    from mininet.net import Mininet  # type: ignore[import-not-found]
    from mininet.nodelib import LinuxBridge  # type: ignore[import-not-found]
    from mininet.topo import SingleSwitchTopo  # type: ignore[import-not-found]

    setLogLevel("error")
    Mininet.inited = True  # skip init(): it raises host-wide sysctls and rlimits
    pids_before = {int(d) for d in os.listdir("/proc") if d.isdigit()}
    topo = SingleSwitchTopo(k=HOSTS)
    t0 = time.perf_counter()
    net = Mininet(topo=topo, switch=LinuxBridge, controller=None, ipBase=IP_BASE, build=False)
    try:
        net.build()  # host namespaces (mnexec shells), veths, addresses
        t1 = time.perf_counter()
        net.start()  # the bridge, its ports
        t2 = time.perf_counter()
    finally:
        t3 = time.perf_counter()
        net.stop()
        t4 = time.perf_counter()
    # Host shells get SIGHUP in stop() and may take a moment to go: wait for them (untimed).
    deadline = time.monotonic() + 2.0
    while mininet_shells(pids_before) and time.monotonic() < deadline:
        time.sleep(0.01)
    leftovers = [f"link {n}" for n in host_links()]
    leftovers += [f"process {p}" for p in mininet_shells(pids_before)]
    print(
        json.dumps(
            {
                "build_ms": (t1 - t0) * 1e3,
                "start_ms": (t2 - t1) * 1e3,
                "up_ms": (t2 - t0) * 1e3,
                "down_ms": (t4 - t3) * 1e3,
                "hosts": len(net.hosts),
                "leftovers": leftovers,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
