"""The border router's routes to the VIPs, read from its kernel: which MUXes it sends each VIP to.

The lab's router is the lab's, not the target's: whatever routing daemon the target runs there,
what decides where client packets go is the router's kernel FIB. This module reads it
(``RTM_GETROUTE`` through pyroute2 inside the router's namespace) so fault scenarios can time a
MUX's withdrawal and its return (MF-3 measures recovery from the withdrawal), without knowing
anything of the stack under test.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dsrconform.errors import LabError
from dsrconform.netns import enter_netns

if TYPE_CHECKING:
    from dsrconform.lab.protocol import LabNodes

__all__ = ["vip_next_hops", "wait_routes"]

POLL = 0.02
"""Seconds between reads while waiting: a route change is timed to within this."""

RTNH_F_DEAD, RTNH_F_LINKDOWN = 1, 16  # <linux/rtnetlink.h>
UNUSABLE = RTNH_F_DEAD | RTNH_F_LINKDOWN
"""A next hop with either flag is still listed but not used (the lab's router ignores routes
over a link that is down), so it counts as withdrawn from the moment the kernel flags it."""

NextHops = dict[str, list[str]]


def vip_next_hops(lab: LabNodes) -> NextHops:
    """VIP -> sorted next-hop addresses the router's host route to it (/32, or /128 for an IPv6
    VIP) uses ([] when none): next hops flagged dead or link-down are left out. Addresses are
    in their canonical text form; an IPv6 multipath route counts whether the kernel dumps it as
    one route with next hops or as one route per next hop."""
    import ipaddress

    from pyroute2 import IPRoute

    topo = lab.topology
    vips = {str(ipaddress.ip_address(s.vip)) for s in topo.services}
    out: dict[str, list[str]] = {v: [] for v in vips}

    def keep(gw: str | None, flags: int, dst: str) -> None:
        if gw and not flags & UNUSABLE:
            out[dst].append(str(ipaddress.ip_address(gw)))

    with enter_netns(lab.netns(topo.router)):
        ipr = IPRoute()
    with ipr:
        for family, host in ((socket.AF_INET, 32), (socket.AF_INET6, 128)):
            if not any(":" in v for v in vips) and family == socket.AF_INET6:
                continue
            for r in ipr.get_routes(family=family):
                raw = r.get_attr("RTA_DST")
                dst = str(ipaddress.ip_address(raw)) if raw else None
                if r["dst_len"] != host or dst not in out:
                    continue
                keep(r.get_attr("RTA_GATEWAY"), r["flags"], dst)
                for nh in r.get_attr("RTA_MULTIPATH") or []:
                    keep(nh.get_attr("RTA_GATEWAY"), nh["flags"], dst)
    return {v: sorted(h) for v, h in out.items()}


def wait_routes(
    lab: LabNodes, ok: Callable[[NextHops], bool], *, timeout: float, what: str
) -> tuple[float, NextHops]:
    """Poll the router's VIP routes until ``ok(next_hops)``; return (monotonic time it first
    held, the routes then). Raises LabError naming ``what`` and the last routes seen at the
    deadline."""
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        hops = vip_next_hops(lab)
        if ok(hops):
            return now, hops
        if now >= deadline:
            raise LabError(
                f"{what}: not seen within {timeout:g} s; the router's VIP routes: {hops}"
            )
        time.sleep(POLL)  # polling the FIB, bounded by the deadline
