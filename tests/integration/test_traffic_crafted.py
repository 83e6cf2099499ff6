"""Crafted packets on a real veth (root): the whole catalogue crosses byte for byte, the sender
counts what it sent and stops at its bounds, and the lab helper addresses client -> router."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsrconform.errors import LabError
from dsrconform.netns import enter_netns, link_mac, throwaway_netns, veth_pair
from dsrconform.topofile import load_topology
from dsrconform.traffic.crafted import (
    CASE_NAMES,
    CraftedFrames,
    Flow,
    build_cases,
    frame_cases,
    lab_injection,
    send_crafted,
)
from tests.markers import requires_root

pytestmark = requires_root
LABS = Path(__file__).resolve().parents[2] / "labs"
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
# Interface names as in labs/basic.yaml: the client's toward the router, the router's toward it.
CLIENT_IF, ROUTER_IF = "dsrc-router", "dsrc-client"
LIVE = Flow("198.18.1.2", 40000, "198.19.0.10", 80, "tcp")
LIVE_UDP = Flow("198.18.1.3", 40001, "198.19.0.11", 7, "udp")


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    """Namespace ``na`` (the client) and ``nb`` (the router) joined by a veth."""
    with throwaway_netns("crfa") as na, throwaway_netns("crfb") as nb, \
            veth_pair(na, CLIENT_IF, ROUTER_IF, ns_b=nb):  # fmt: skip
        yield na, nb


class Receiver:
    """An AF_PACKET socket in ``ns`` keeping the IPv4 frames arriving on ``ifname`` from
    ``src_mac`` (IPv6 chatter and the namespace's own packets are left out)."""

    def __init__(self, ns: str, ifname: str, src_mac: str) -> None:
        with enter_netns(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((ifname, ETH_P_ALL))
        self.sock.settimeout(0.05)
        self.src = bytes.fromhex(src_mac.replace(":", ""))

    def collect(self, want: int, *, timeout: float = 5.0, linger: float = 0.3) -> list[bytes]:
        """Frames until ``want`` arrived (or ``timeout``), then ``linger`` seconds more to catch
        extras."""
        got: list[bytes] = []
        end = time.monotonic() + timeout
        stop_at: float | None = None
        while time.monotonic() < (stop_at or end):
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            if addr[2] == PACKET_OUTGOING or data[6:12] != self.src or data[12:14] != b"\x08\x00":
                continue
            got.append(data)
            if len(got) >= want and stop_at is None:
                stop_at = time.monotonic() + linger
        return got

    def close(self) -> None:
        self.sock.close()


def catalogue(na: str, nb: str) -> list[CraftedFrames]:
    src, dst = link_mac(na, CLIENT_IF), link_mac(nb, ROUTER_IF)
    out = []
    for live, port in ((LIVE, 20001), (LIVE_UDP, 20002)):
        cases = build_cases(live, "all", probe_port=port, icmp_src="198.18.1.253")
        out += frame_cases(cases, src, dst)
    return out


def test_the_whole_catalogue_arrives_byte_identical_and_is_counted(
    pair: tuple[str, str],
) -> None:
    na, nb = pair
    frames = catalogue(na, nb)
    expected = Counter(f for cf in frames for f in cf.frames for _ in range(2))
    rx = Receiver(nb, ROUTER_IF, link_mac(na, CLIENT_IF))
    try:
        rec = send_crafted(na, CLIENT_IF, frames, count_per_frame=2, deadline=10.0)
        got = rx.collect(sum(expected.values()))
    finally:
        rx.close()
    assert rec.stopped_by is None and rec.failed == 0
    assert [c.case for c in rec.cases] == list(CASE_NAMES) * 2
    for c, cf in zip(rec.cases, frames, strict=True):
        assert (c.frames, c.sent, c.failed, c.error) == (
            len(cf.frames),
            2 * len(cf.frames),
            0,
            None,
        )
        assert rec.start <= c.start <= c.end <= rec.end
    assert rec.sent == sum(expected.values())
    missing = expected - Counter(got)
    extra = Counter(got) - expected
    assert not missing, f"{sum(missing.values())} frames never arrived or arrived altered"
    assert not extra, f"{sum(extra.values())} frames arrived that were not sent"
    assert min(len(f) for f in got) == 14 + 10, "the 10-byte truncated IP header did not cross"
    w = rec.fault_window("router")
    assert (w.kind, w.start, w.end, w.detail["packets"]) == (
        "crafted",
        rec.start,
        rec.end,
        rec.sent,
    )


def test_the_sender_stops_at_its_packet_and_time_bounds(pair: tuple[str, str]) -> None:
    na, nb = pair
    frames = catalogue(na, nb)
    ordered = [f for cf in frames for f in cf.frames]
    rx = Receiver(nb, ROUTER_IF, link_mac(na, CLIENT_IF))
    try:
        rec = send_crafted(na, CLIENT_IF, frames, max_packets=3)
        got = rx.collect(3)
        late = send_crafted(na, CLIENT_IF, frames, deadline=0.0)
        none = rx.collect(1, timeout=0.3)
    finally:
        rx.close()
    assert (rec.sent, rec.stopped_by) == (3, "max_packets")
    assert got == ordered[:3], "not the first three frames, in order"
    assert (late.sent, late.stopped_by, len(late.cases)) == (0, "deadline", 1)
    assert none == [], "a sender past its deadline still sent"


def test_a_missing_interface_is_a_lab_error(pair: tuple[str, str]) -> None:
    na, nb = pair
    with pytest.raises(LabError, match="cannot bind to dsrc-nope"):
        send_crafted(na, "dsrc-nope", catalogue(na, nb)[:1])


def test_lab_injection_addresses_client_to_router(pair: tuple[str, str]) -> None:
    na, nb = pair
    topo = load_topology(LABS / "basic.yaml")
    spaces = {"client": na, "router": nb}
    inj = lab_injection(topo, spaces.__getitem__, LIVE, "fragments,icmp-frag-needed,ttl-1")
    assert (inj.netns, inj.ifname, inj.target) == (na, CLIENT_IF, "router")
    assert inj.src_mac == link_mac(na, CLIENT_IF) and inj.dst_mac == link_mac(nb, ROUTER_IF)
    assert inj.icmp_src == "198.18.1.253" and 20000 <= inj.probe_port < 30000
    assert [f.name for f in inj.frames] == ["fragments", "icmp-frag-needed", "ttl-1"]
    expected = Counter(f for cf in inj.frames for f in cf.frames)
    rx = Receiver(nb, ROUTER_IF, inj.src_mac)
    try:
        rec = inj.send(deadline=5.0)
        got = rx.collect(sum(expected.values()))
    finally:
        rx.close()
    assert Counter(got) == expected
    assert rec.by_case() == {"fragments": 3, "icmp-frag-needed": 1, "ttl-1": 1}
    with pytest.raises(ValueError, match="entry_mux: 'server1' is not a MUX"):
        lab_injection(topo, spaces.__getitem__, LIVE, entry_mux="server1")
