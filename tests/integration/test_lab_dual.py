"""Dual-stack labs (issue 18; root): labs/dual.yaml comes up with the null target (the lab's own
routers, BGP and applications, no data plane), IPv6 exactly where the file gives it, the border
router's IPv6 VIP route spread over the MUXes announcing it, and nothing left afterwards.

A few seconds: one lab, no traffic beyond one ICMPv6 echo (a raw socket in the client's namespace:
no ``ping`` binary needed).
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from pathlib import Path

from dsrconform.lab import Lab
from dsrconform.netns import enter_netns
from tests.markers import requires_root

pytestmark = requires_root
LABS = Path(__file__).resolve().parents[2] / "labs"
NULL = "dsrconform.targets.null:NullTarget"
FLOOD6 = (
    "  - ends: {flood: [198.18.2.1/24, 2001:2:0:2::1/64], "
    "router: [198.18.2.254/24, 2001:2:0:2::254/64]}\n"
)
FLOOD4 = "  - ends: {flood: 198.18.2.1/24, router: 198.18.2.254/24}\n"
HOST_SYSCTLS = (
    "ipv6/conf/all/disable_ipv6",
    "ipv6/conf/all/forwarding",
    "ipv6/fib_multipath_hash_policy",
    "ipv4/ip_forward",
)


def host_snapshot() -> dict[str, str]:
    """What a lab must leave as it found it on the host, in both families."""
    cmds = {
        "links": ["ip", "-br", "link"],
        "addrs": ["ip", "-br", "addr"],
        "routes": ["ip", "route", "show", "table", "all"],
        "routes6": ["ip", "-6", "route", "show", "table", "all"],
        "netns": ["ip", "netns", "list"],
    }
    snap = {k: subprocess.run(c, capture_output=True, text=True).stdout for k, c in cmds.items()}
    for key in HOST_SYSCTLS:
        snap[key] = Path(f"/proc/sys/net/{key}").read_text()
    return snap


def sysctl(lab: Lab, node: str, key: str) -> str:
    with enter_netns(lab.netns(node)):
        return Path(f"/proc/sys/net/{key}").read_text().strip()


def icmp6_echo(netns: str, dst: str, timeout: float = 2.0) -> bool:
    """One ICMPv6 echo request from inside ``netns`` to ``dst``; whether its reply came within
    ``timeout`` (``ping -6 -c 1 -W 2``; the kernel fills in an ICMPv6 raw socket's checksum)."""
    with enter_netns(netns):
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    ident = os.getpid() & 0xFFFF
    deadline = time.monotonic() + timeout
    with s:
        s.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, 1) + b"dsrconform", (dst, 0))
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                data, addr = s.recvfrom(2048)
            except TimeoutError:
                return False
            # A raw ICMPv6 socket also sees neighbour discovery: only our echo reply counts.
            if addr[0] == dst and data[0] == 129 and struct.unpack("!H", data[4:6])[0] == ident:
                return True
    return False


def read_all(s: socket.socket) -> bytes:
    s.settimeout(2)
    out = b""
    while chunk := s.recv(4096):
        out += chunk
    return out


def router_routes6(lab: Lab, dst: str) -> list[str]:
    """The next hops of the router's kernel route to ``dst``/128 (read with pyroute2)."""
    from pyroute2 import IPRoute

    with enter_netns(lab.netns(lab.topology.router)):
        ipr = IPRoute()
    hops: list[str] = []
    with ipr:
        for r in ipr.get_routes(family=socket.AF_INET6):
            if r.get_attr("RTA_DST") != dst or r["dst_len"] != 128:
                continue
            if r.get_attr("RTA_GATEWAY"):
                hops.append(r.get_attr("RTA_GATEWAY"))
            hops += [nh.get_attr("RTA_GATEWAY") for nh in r.get_attr("RTA_MULTIPATH") or []]
    return sorted(hops)


def test_dual_lab_carries_ipv6_where_asked_and_spreads_an_ipv6_vip_over_both_muxes(
    tmp_path: Path,
) -> None:
    # labs/dual.yaml with the flood's link left IPv4-only: a node the file gives no IPv6 keeps
    # IPv6 off, as every node of an IPv4 lab does.
    text = (LABS / "dual.yaml").read_text()
    assert FLOOD6 in text
    f = tmp_path / "dual.yaml"
    f.write_text(text.replace(FLOOD6, FLOOD4))
    before = host_snapshot()
    began = time.monotonic()
    with Lab.up(f, name="tdual", target=NULL) as lab:
        topo = lab.topology
        assert topo.families == ("ipv4", "ipv6")
        # IPv6 where the file gives it: on, no DAD, no router advertisements or autoconf.
        for node in topo.nodes:
            off = "1" if node == "flood" else "0"
            assert sysctl(lab, node, "ipv6/conf/all/disable_ipv6") == off, node
            assert sysctl(lab, node, "ipv6/conf/default/disable_ipv6") == off, node
            if node != "flood":
                for key in ("accept_dad", "accept_ra", "autoconf"):
                    assert sysctl(lab, node, f"ipv6/conf/default/{key}") == "0", (node, key)
                assert sysctl(lab, node, "ipv6/conf/all/keep_addr_on_down") == "1", node
            forwards = "1" if topo.nodes[node].role in ("router", "gateway") else "0"
            assert sysctl(lab, node, "ipv4/ip_forward") == forwards, node
            if node != "flood":
                assert sysctl(lab, node, "ipv6/conf/all/forwarding") == forwards, node
        # The router hashes IPv6 on the 5-tuple, as IPv4 (policy 3 on the fields, not the
        # sender's socket hash or flow label).
        for family in ("ipv4", "ipv6"):
            assert sysctl(lab, "router", f"{family}/fib_multipath_hash_policy") == "3"
            assert int(sysctl(lab, "router", f"{family}/fib_multipath_hash_fields"), 0) == 0x37

        # Both MUXes announce web6's VIP over their IPv4 sessions: one route, two next hops.
        web6 = next(s for s in topo.services if s.name == "web6")
        muxes = topo.of_role("mux")
        for mux in muxes:
            lab.bgp(mux).announce(web6.vip)
        lab.environment.wait_ready(timeout=20)
        hops = {topo.address6_of(m) for m in muxes}
        assert router_routes6(lab, web6.vip) == sorted(hops) and len(hops) == 2
        lab.bgp(muxes[0]).withdraw(web6.vip)
        lab.environment.wait_ready(timeout=20)
        assert router_routes6(lab, web6.vip) == [topo.address6_of(muxes[1])]

        # The servers hold the IPv6 VIPs on lo and the app listens on them.
        for server in topo.servers_of(web6):
            addrs = lab.run(server, ["ip", "-6", "-o", "addr", "show", "dev", "lo"]).stdout
            assert f"{web6.vip}/128" in addrs, (server, addrs)
            listening = lab.run(server, ["ss", "-Hltn"]).stdout
            assert f"[{web6.vip}]:{web6.port}" in listening, (server, listening)
        # The app serves them as it serves IPv4 VIPs: /id names the server, UDP echoes it.
        echo6 = next(s for s in topo.services if s.name == "echo6")
        with enter_netns(lab.netns("server2")):
            tcp = socket.create_connection((web6.vip, web6.port), timeout=2)
            udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        with tcp, udp:
            tcp.sendall(b"GET /id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert b"X-Server-Id: server2\r\n" in read_all(tcp)
            udp.settimeout(2)
            udp.sendto(b"hello", (echo6.vip, echo6.port))
            assert udp.recvfrom(200)[0] == b"server2 hello"
        # A client reaches a server's IPv6 address through the router.
        server6 = topo.address6_of("server1")
        assert server6 is not None
        assert icmp6_echo(lab.netns("client"), server6), f"no echo reply from {server6}"
    took = time.monotonic() - began
    assert host_snapshot() == before
    assert "dsrc-tdual" not in before["netns"]
    print(f"dual-stack lab up, checked and down in {took:.1f} s")


def addresses6(lab: Lab, node: str) -> set[str]:
    """``node``'s global IPv6 addresses (with prefix) on the interfaces the topology gives it."""
    out: set[str] = set()
    for iface in lab.topology.interfaces():
        if iface.node == node and iface.address6 is not None:
            shown = lab.run(node, ["ip", "-6", "-o", "addr", "show", "dev", iface.ifname]).stdout
            out |= {w for w in shown.split() if w.startswith("2001:")}
    return out


def test_a_killed_mux_comes_back_with_its_ipv6_addresses_and_next_hop(tmp_path: Path) -> None:
    # A MUX kill brings its links down, and Linux flushes an interface's IPv6 addresses when it
    # goes down (IPv4 ones stay): the restarted MUX then announced its IPv6 VIP with a next hop
    # nobody answered for, and the router black-holed the flows hashed to it (MF-1/MF-4 FAIL in
    # the first IPv6 run, mux-kill only).
    with Lab.up(LABS / "dual.yaml", name="tdualk", target=NULL) as lab:
        topo = lab.topology
        web6 = next(s for s in topo.services if s.name == "web6")
        mux = topo.of_role("mux")[-1]
        hop = topo.address6_of(mux)
        assert hop is not None
        before = addresses6(lab, mux)
        assert f"{hop}/64" in before, before
        lab.kill_node(mux)
        lab.restart_node(mux)
        assert addresses6(lab, mux) == before
        lab.bgp(mux).announce(web6.vip)
        lab.environment.wait_ready(timeout=20)
        assert hop in router_routes6(lab, web6.vip)
        # The router reaches the next hop it was given (neighbour discovery answered).
        assert icmp6_echo(lab.netns(topo.router), hop), f"{mux} does not answer at {hop}"


def test_reference_stack_carries_verified_streams_to_ipv6_and_ipv4_in_ipv6_vips(
    tmp_path: Path,
) -> None:
    """The reference stack (XDP MUXes, tc agents) on labs/dual.yaml: streams from the client's
    IPv6 addresses to web6 (IPv6-in-IPv6) and from its IPv4 addresses to web46 (IPv4-in-IPv6)
    each deliver every byte verified, answered by every server. The MUXes' own counters show the
    encapsulation: web46's packets (streamed first, alone) went to the servers' IPv6 addresses
    (IPv4-in-IPv6, not IPIP to their IPv4 ones), and the IPv6 VIP's counter grew."""
    import json

    from dsrconform.observe.history import load_history

    with Lab.up(LABS / "dual.yaml", name="tdualref") as lab:
        topo = lab.topology
        client = topo.nodes["client"]
        servers = set(topo.of_role("server"))
        six = [topo.address6_of(n) for n in sorted(servers)]
        four = [topo.uplink(n).ip for n in sorted(servers)]
        seen: dict[str, dict[str, int]] = {}
        for vip, family in (("198.19.0.13", "ipv4"), ("2001:2:0:100::10", "ipv6")):
            out = tmp_path / f"{family}.jsonl"
            argv = [
                lab.python,
                "-m",
                "dsrconform.traffic.streams",
                "--vip",
                vip,
                "--port",
                "80",
                "--conns",
                "60",
                "--bytes",
                "20000",
                "--rate",
                "100000",
                "--open-rate",
                "500",
                "--sources",
                ",".join(client.addresses_of(family)),
                "--out",
                str(out),
                "--deadline",
                "30",
            ]
            res = lab.run("client", argv, timeout=60)
            counts = json.loads(res.stderr.strip().splitlines()[-1])
            assert counts["closed"] == counts["opened"] == 60, counts
            flows = load_history(out).flows.values()
            assert all(f.events[-1].verified == 20000 for f in flows)
            assert {f.events[1].server for f in flows} == servers
            totals: dict[str, int] = {}
            for mux_counters in lab.deployment.counters().values():
                for name, value in mux_counters.items():
                    totals[name] = totals.get(name, 0) + value
            seen[family] = totals
    web46 = seen["ipv4"]
    assert web46["vip_packets[198.19.0.13:80/tcp]"] > 0, web46
    assert all(web46.get(f"backend_packets[{a}]", 0) > 0 for a in six), web46
    assert not any(web46.get(f"backend_packets[{a}]", 0) for a in four), web46
    assert seen["ipv6"]["vip_packets[[2001:2:0:100::10]:80/tcp]"] > 0, seen["ipv6"]
