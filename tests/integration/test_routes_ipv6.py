"""The router's VIP routes read from its FIB (observe/routes.py) in both families (root): an
IPv6 VIP's multipath /128 gives its next hops as an IPv4 VIP's /32 does, a next hop over a link
that is down is left out."""

from __future__ import annotations

import subprocess
from types import SimpleNamespace

from dsrconform.netns import throwaway_netns, veth_pair
from dsrconform.observe.routes import vip_next_hops
from tests.integration.test_traffic_ipv6 import sysctl
from tests.markers import requires_root

pytestmark = requires_root
VIP4, VIP6 = "198.19.0.10", "2001:2:0:100::10"


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, timeout=10)


def test_next_hops_of_ipv4_and_ipv6_vips() -> None:
    with throwaway_netns("rt6") as ns:
        for scope in ("all", "default"):
            sysctl(ns, f"net.ipv6.conf.{scope}.disable_ipv6", "0")
        sysctl(ns, "net.ipv6.conf.all.ignore_routes_with_linkdown", "1")
        with veth_pair(ns, "dsrc-r1", "dsrc-m1"), veth_pair(ns, "dsrc-r2", "dsrc-m2"):
            for dev, n in (("dsrc-r1", 1), ("dsrc-r2", 2)):
                ip(ns, "addr", "add", f"198.18.10.{4 * n - 3}/30", "dev", dev)
                ip(ns, "-6", "addr", "add", f"2001:2:0:1{n}::1/64", "dev", dev, "nodad")
            ip(
                ns,
                "route",
                "add",
                f"{VIP4}/32",
                "nexthop",
                "via",
                "198.18.10.2",
                "nexthop",
                "via",
                "198.18.10.6",
            )
            ip(
                ns,
                "-6",
                "route",
                "add",
                f"{VIP6}/128",
                "nexthop",
                "via",
                "2001:2:0:11::2",
                "dev",
                "dsrc-r1",
                "nexthop",
                "via",
                "2001:2:0:12::2",
                "dev",
                "dsrc-r2",
            )
            lab = SimpleNamespace(
                topology=SimpleNamespace(
                    router="router",
                    services=[SimpleNamespace(vip=VIP4), SimpleNamespace(vip=VIP6)],
                ),
                netns=lambda node: ns,
            )
            hops = vip_next_hops(lab)  # type: ignore[arg-type]
            assert hops == {
                VIP4: ["198.18.10.2", "198.18.10.6"],
                VIP6: ["2001:2:0:11::2", "2001:2:0:12::2"],
            }
            ip(ns, "link", "set", "dsrc-m2", "down")  # the peer end: dsrc-r2 loses its carrier
            hops = vip_next_hops(lab)  # type: ignore[arg-type]
            assert hops[VIP6] == ["2001:2:0:11::2"], hops
