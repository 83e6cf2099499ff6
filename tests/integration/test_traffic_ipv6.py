"""Traffic and taps in IPv6 between two lab-prefixed namespaces (root, a few seconds): an IPv6
TCP stream and a UDP exchange with the lab's server application pass, the tap on the server's
link records them with IPv6 addresses, and a bounded IPv6 SYN flood from 2001:2:0:200::/56 is
counted by the tap, packet for packet."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsrconform.netns import enter_netns, link_mac, throwaway_netns, veth_pair
from dsrconform.observe.history import load_history
from dsrconform.observe.linktap import LinkTap
from dsrconform.traffic.synflood import FLOOD_NET6, flood
from tests.markers import requires_root

pytestmark = requires_root
CLIENT, ROUTER, VIP = "2001:2:0:1::2", "2001:2:0:1::1", "2001:2:0:100::10"
CLI_IF, SRV_IF = "dsrc-c6", "dsrc-s6"
ROOT = Path(__file__).resolve().parents[2]


def sysctl(ns: str, key: str, value: str) -> None:
    with enter_netns(ns), open(f"/proc/sys/{key.replace('.', '/')}", "w") as f:
        f.write(value)


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    """A client namespace and a server namespace holding the VIP on its loopback, joined by a
    veth with IPv6 (no duplicate address detection: addresses usable at once)."""
    with throwaway_netns("t6c") as cli, throwaway_netns("t6s") as srv:
        for ns in (cli, srv):
            for scope in ("all", "default"):
                sysctl(ns, f"net.ipv6.conf.{scope}.disable_ipv6", "0")
                sysctl(ns, f"net.ipv6.conf.{scope}.accept_dad", "0")
        with veth_pair(cli, CLI_IF, SRV_IF, ns_b=srv):
            ip(cli, "-6", "addr", "add", f"{CLIENT}/64", "dev", CLI_IF, "nodad")
            ip(srv, "-6", "addr", "add", f"{ROUTER}/64", "dev", SRV_IF, "nodad")
            ip(srv, "-6", "addr", "add", f"{VIP}/128", "dev", "lo", "nodad")
            ip(cli, "-6", "route", "add", "2001:2:0:100::/64", "via", ROUTER)
            yield cli, srv


def app(srv: str, ready: Path) -> subprocess.Popen[bytes]:
    """The lab's server application on the VIP (HTTP port 80, UDP port 7), started; waits for
    its ready file (written once every socket is bound)."""
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            srv,
            sys.executable,
            "-m",
            "dsrconform.app",
            "--server-id",
            "s6",
            "--http",
            f"[{VIP}]:80",
            "--udp",
            f"[{VIP}]:7",
            "--ready-file",
            str(ready),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            err = proc.communicate(timeout=5)[1].decode(errors="replace")
            pytest.fail(f"the server application did not start: {err}")
        time.sleep(0.02)  # polling the ready file: the application's own signal
    return proc


def run_in(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_an_ipv6_stream_and_udp_exchange_pass_and_the_tap_records_them(
    pair: tuple[str, str], tmp_path: Path
) -> None:
    cli, srv = pair
    proc = app(srv, tmp_path / "ready")
    try:
        with LinkTap(srv, SRV_IF) as tap:
            streams = run_in(
                cli,
                "dsrconform.traffic.streams",
                "--vip",
                VIP,
                "--port",
                "80",
                "--sources",
                CLIENT,
                "--conns",
                "2",
                "--bytes",
                "200000",
                "--timeout",
                "5",
                "--deadline",
                "10",
                "--out",
                str(tmp_path / "s.jsonl"),
            )
            udp = run_in(
                cli,
                "dsrconform.traffic.udpflows",
                "--vip",
                VIP,
                "--port",
                "7",
                "--sources",
                CLIENT,
                "--flows",
                "2",
                "--count",
                "3",
                "--interval",
                "0.01",
                "--timeout",
                "2",
                "--out",
                str(tmp_path / "u.jsonl"),
            )
            flows = tap.flows()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert streams.returncode == 0, streams.stderr
    assert udp.returncode == 0, udp.stderr
    history = load_history(tmp_path / "s.jsonl")
    assert len(history.flows) == 2
    for fh in history.flows.values():
        assert fh.start.src == CLIENT and fh.start.dst == VIP
        assert fh.succeeded(), fh.describe()
    replies = load_history(tmp_path / "u.jsonl")
    assert [len(fh.servers) for fh in replies.flows.values()] == [3, 3], udp.stderr
    assert all(s == "s6" for fh in replies.flows.values() for _, s in fh.servers)
    ingress = {(f.proto, f.sport): f for f in flows if f.direction == "ingress" and f.src == CLIENT}
    egress = {(f.proto, f.dport): f for f in flows if f.direction == "egress" and f.src == VIP}
    for fh in [*history.flows.values(), *replies.flows.values()]:
        proto = 6 if fh.start.proto == "tcp" else 17
        into = ingress[(proto, fh.start.sport)]
        assert (into.dst, into.dport) == (VIP, fh.start.dport)
        assert into.bad_l4 == 0 and into.l4_checked > 0, "checksums over the IPv6 pseudo-header"
        assert egress[(proto, fh.start.sport)].packets > 0, "replies from the VIP not recorded"
    tcp_in = [f for f in ingress.values() if f.proto == 6]
    assert all(f.syn == 1 and f.fin >= 1 for f in tcp_in)


def test_a_bounded_ipv6_syn_flood_is_counted_by_the_tap(pair: tuple[str, str]) -> None:
    cli, srv = pair
    with LinkTap(srv, SRV_IF, aggregate=[FLOOD_NET6]) as tap:
        res = flood(
            cli,
            CLI_IF,
            dst_mac=link_mac(srv, SRV_IF),
            vip=VIP,
            port=80,
            count=3000,
            duration=5.0,
            engine="auto",
        )
        flows = [f for f in tap.flows() if f.direction == "ingress" and f.dst == VIP]
    assert res.engine == "af-packet" and res.packets == 3000 and res.stopped_by == "count"
    assert res.src_net == FLOOD_NET6 and res.fallback_reason is not None
    assert [(f.src, f.sport, f.proto, f.dport, f.packets, f.syn, f.bad_l4) for f in flows] == [
        ("2001:2:0:200::", 0, 6, 80, 3000, 3000, 0)
    ]
