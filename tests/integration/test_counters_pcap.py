"""SUT counters and pcap evidence windows in a real lab (root): labs/basic.yaml on the netns
backend with the reference stack, a little TCP and UDP through the VIPs, and

- the MUXes' counters (through Deployment.counters) moved by exactly the VIP packets each MUX
  received, as tcpdump on the router's link toward it saw them, summing to what the servers'
  agents decapsulated and to at least what the client sent;
- a window cut from those captures holds the encapsulated packets of every flow sent inside it
  and nothing from before or after it (those flows are in the capture, just not the window);
- a capture's own bounds (time, packet count, ring) end it or wrap it, and the window says so.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.utils import rdpcap

from dsrconform.lab import Lab
from dsrconform.lab.registry import pids_in_namespaces
from dsrconform.netns import enter_netns, throwaway_netns, veth_pair
from dsrconform.observe.counters import (
    CounterSampler,
    counter_decreases,
    counter_deltas,
    snapshot,
)
from dsrconform.observe.pcap import ClientEnd, PacketCapture, capture_link, read_pcap
from dsrconform.observe.taps import CounterSnapshot, load_counters_jsonl
from dsrconform.topology import Topology
from tests.markers import requires_root

pytestmark = requires_root
BASIC = Path(__file__).resolve().parents[2] / "labs" / "basic.yaml"
WEB, ECHO = ("198.19.0.10", 80), ("198.19.0.11", 7)
HTTP_CONNS, UDP_FLOWS, UDP_COUNT = 30, 10, 5
QUIET, SETTLE_DEADLINE = 0.5, 15.0


def client_sources(topo: Topology) -> str:
    client = topo.of_role("client")[0]
    return ",".join([topo.uplink(client).ip, *topo.nodes[client].addresses])


def probe(lab: Lab, kind: str, *args: str) -> list[dict]:
    client = lab.topology.of_role("client")[0]
    res = lab.run(client, [lab.python, "-m", "dsrconform.traffic.probe", kind, *args],
                  timeout=120)  # fmt: skip
    return json.loads(res.stdout)


def udp(lab: Lab, flows: int, count: int) -> list[dict]:
    recs = probe(lab, "udp", "--vip", ECHO[0], "--port", str(ECHO[1]), "--flows", str(flows),
                 "--count", str(count), "--sources", client_sources(lab.topology))  # fmt: skip
    assert sum(r["lost"] for r in recs) == 0, f"UDP replies lost: {recs}"
    return recs


def forwarded(snap: CounterSnapshot, mux: str) -> int:
    return sum(v for n, v in snap.components[mux].items() if n.startswith("vip_packets["))


def settle(lab: Lab) -> CounterSnapshot:
    """The counters once no VIP packet has been forwarded for QUIET seconds (the last FINs and
    ACKs of closed connections), within SETTLE_DEADLINE; BGP's own packets only move ``pass``."""
    muxes = lab.topology.of_role("mux")
    deadline = time.monotonic() + SETTLE_DEADLINE
    last = snapshot(lab.deployment)
    quiet_since = last.t
    while time.monotonic() < deadline:  # bounded by the deadline
        time.sleep(0.1)  # polling the counters for the quiet condition, not synchronising
        now = snapshot(lab.deployment)
        if any(forwarded(now, m) != forwarded(last, m) for m in muxes):
            quiet_since = now.t
        last = now
        if now.t - quiet_since >= QUIET:
            return now
    raise AssertionError(f"VIP traffic did not stop within {SETTLE_DEADLINE} s")


def flows_in(path: Path, mux_addr: str) -> tuple[Counter, Counter]:
    """From a window file (read with scapy, independently of dsrconform's reader): packets the
    router sent the MUX for a VIP, per client end (proto, src, sport), and encapsulated packets
    the MUX sent back, per the inner packet's client end."""
    to_mux: Counter = Counter()
    encap: Counter = Counter()
    for p in rdpcap(str(path)):
        if IP not in p:
            continue
        ip = p[IP]
        if ip.proto == 4 and ip.src == mux_addr:
            inner = ip.payload
            l4 = inner[TCP] if TCP in inner else inner[UDP]
            encap[(inner.proto, inner.src, l4.sport)] += 1
        elif ip.proto in (6, 17) and ip.dst.startswith("198.19.0."):
            l4 = ip[TCP] if TCP in ip else ip[UDP]
            to_mux[(ip.proto, ip.src, l4.sport)] += 1
    return to_mux, encap


@pytest.fixture
def lab() -> Iterator[Lab]:
    # Function scope on purpose: Lab.up's SIGTERM handler stays installed while the lab is up,
    # and pyroute2's NetNS children (the throwaway namespaces below) inherit it.
    with Lab.up(BASIC, backend="netns", name="tcntpcap") as lab:  # down() in its finally
        yield lab


def test_mux_counters_match_the_captured_packets_and_windows_cut_cleanly(
    lab: Lab, tmp_path: Path
) -> None:
    topo = lab.topology
    muxes = topo.of_role("mux")
    mux_addr = {m: topo.uplink(m).ip for m in muxes}
    caps = {m: capture_link(lab, topo.router, m, name=f"toward-{m}", max_seconds=300)
            for m in muxes}  # fmt: skip
    with ExitStack() as stack:
        for c in caps.values():
            stack.enter_context(c)
        sampler = stack.enter_context(
            CounterSampler(lab.deployment, lab.dir / "counters.jsonl", interval=0.2)
        )
        early = udp(lab, UDP_FLOWS, 2)  # before the window
        before = settle(lab)
        t0 = time.monotonic()
        http = probe(lab, "http", "--vip", WEB[0], "--port", str(WEB[1]), "--conns",
                     str(HTTP_CONNS), "--bytes", "5000", "--parallel", "10",
                     "--sources", client_sources(topo))  # fmt: skip
        inside = udp(lab, UDP_FLOWS, UDP_COUNT)
        after = settle(lab)
        t1 = time.monotonic()
        late = udp(lab, UDP_FLOWS, 2)  # after the window
        settle(lab)
    assert not any(c.running for c in caps.values())
    assert not [r for r in http if r["error"]], http

    # (a) the counters, through the target protocol.
    assert counter_decreases(before, after) == []
    delta = counter_deltas(before, after)
    fwd = {m: forwarded(after, m) - forwarded(before, m) for m in muxes}
    for m in muxes:
        drops = {n: v for n, v in delta[m].items() if n.startswith("drop_") and v}
        assert not drops, f"{m} dropped VIP traffic: {drops}"
        assert delta[m]["tx"] == fwd[m] + delta[m]["icmp_forwarded"]
        assert delta[m]["lru_hit"] + delta[m]["lru_miss"] == fwd[m], delta[m]
    total = sum(fwd.values())
    sent_at_least = 3 * HTTP_CONNS + UDP_FLOWS * UDP_COUNT  # SYN, request, FIN; each datagram
    assert total >= sent_at_least, f"MUXes forwarded {fwd}, the client sent >= {sent_at_least}"
    decap = sum(delta[s]["decap"] for s in topo.of_role("server"))
    assert decap == total, f"agents decapsulated {decap}, the MUXes forwarded {fwd}"
    assert "gw" not in after.components  # encap mode: no gateway program, so no component

    # The sampler's file brackets the run and never goes down.
    series = load_counters_jsonl(lab.dir / "counters.jsonl")
    assert series == sampler.snapshots and len(series) >= 3
    assert series[0].t <= before.t and series[-1].t >= after.t
    for a, b in itertools.pairwise(series):
        assert counter_decreases(a, b) == [], (a.t, b.t)

    # (b) windows on the router's link toward each MUX: exactly the counted packets.
    http_ends = {(6, r["src"], r["sport"]) for r in http}
    inside_ends = {(17, r["src"], r["sport"]) for r in inside}
    outside_ends = {(17, r["src"], r["sport"]) for r in early + late} - inside_ends
    seen_encap: Counter = Counter()
    for m, cap in caps.items():
        w = cap.window(t0, t1, tmp_path / f"{m}.pcap")
        assert w.complete, w.gaps
        _, recs = read_pcap(w.path)
        stamps = [cap.offset.to_monotonic_ns(r.ts_ns) / 1e9 for r in recs]  # type: ignore[union-attr]
        assert stamps and all(t0 <= t <= t1 for t in stamps), "a packet outside the window"
        to_mux, encap = flows_in(w.path, mux_addr[m])
        assert sum(to_mux.values()) == fwd[m], f"{m}: captured {to_mux}, counted {fwd[m]}"
        assert sum(encap.values()) == fwd[m], f"{m}: captured {encap}, counted {fwd[m]}"
        assert not set(encap) & outside_ends, f"{m}: flows from outside the window in it"
        seen_encap.update(encap)
        # The whole capture did hold the flows from before and after: the cut removed them.
        whole = cap.window(cap.started - 1, cap.stopped + 1, tmp_path / f"{m}-all.pcap")
        assert whole.packets > w.packets and not whole.complete  # it starts before the capture
    assert http_ends | inside_ends <= set(seen_encap), "a flow sent in the window is missing"
    _, encap_all = zip(*(flows_in(tmp_path / f"{m}-all.pcap", mux_addr[m]) for m in muxes),
                       strict=True)  # fmt: skip
    assert outside_ends <= set().union(*encap_all), "the flows outside were never captured"

    # A window filtered to one connection: that connection's packets, all of them.
    end = sorted(http_ends)[0]
    proto, src, sport = end
    m = next(m for m in muxes if end in flows_in(tmp_path / f"{m}.pcap", mux_addr[m])[1])
    one = caps[m].window(t0, t1, tmp_path / "one.pcap", flows=[ClientEnd(src, sport, proto)])
    to_mux, encap = flows_in(one.path, mux_addr[m])
    full_to, full_encap = flows_in(tmp_path / f"{m}.pcap", mux_addr[m])
    assert to_mux == Counter({end: full_to[end]}) and encap == Counter({end: full_encap[end]})
    assert one.packets == full_to[end] + full_encap[end] >= 2 * 3


def test_counters_never_go_down_across_a_mux_restart(lab: Lab) -> None:
    """A restarted MUX has fresh BPF maps; its counters carry on from the old instance's."""
    muxes = lab.topology.of_role("mux")
    udp(lab, UDP_FLOWS, 3)
    before = settle(lab)
    old = lab.deployment.muxes["mux1"]
    lab.kill_node("mux1")
    lab.restart_node("mux1")
    assert lab.deployment.muxes["mux1"] is not old
    assert lab.deployment.muxes["mux1"].stats().globals["tx"] == 0, "not a fresh instance"
    lab.deployment.wait_ready(30)
    restarted = snapshot(lab.deployment)
    assert counter_decreases(before, restarted) == []
    assert restarted.components["mux1"]["tx"] == before.components["mux1"]["tx"]
    udp(lab, UDP_FLOWS, 3)
    after = settle(lab)
    assert counter_decreases(restarted, after) == []
    moved = sum(forwarded(after, m) - forwarded(restarted, m) for m in muxes)
    assert moved == UDP_FLOWS * 3, f"{moved} VIP packets counted for {UDP_FLOWS * 3} datagrams"


# --- a capture's own bounds, on a throwaway veth pair ------------------------------------------


A, B = "198.18.77.1", "198.18.77.2"


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    with throwaway_netns("pcapa") as na, throwaway_netns("pcapb") as nb, \
            veth_pair(na, "dsrc-pa", "dsrc-pb", ns_b=nb):  # fmt: skip
        for ns, dev, addr in ((na, "dsrc-pa", A), (nb, "dsrc-pb", B)):
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev], check=True)
        yield na, nb


def blast(ns: str, count: int, size: int = 64) -> None:
    with enter_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.bind((A, 0))
        for _ in range(count):
            s.sendto(b"x" * size, (B, 9))


def test_a_capture_ends_at_its_time_bound_and_says_so(pair: tuple[str, str],
                                                      tmp_path: Path) -> None:  # fmt: skip
    na, nb = pair
    cap = PacketCapture(nb, "dsrc-pb", tmp_path, max_seconds=1)
    with cap:
        blast(na, 5)
        assert cap.wait(15), "tcpdump outlived its time bound"
    assert cap.stats.timed_out and cap.stats.returncode == 124
    assert cap.stopped is not None and cap.stopped - cap.started < 10
    w = cap.window(cap.started, cap.stopped + 5)
    assert not w.complete and any("before the window's end" in g for g in w.gaps)
    assert w.packets >= 5
    assert not pids_in_namespaces([nb]), "something still runs in the capture's namespace"


def test_a_capture_stops_at_its_packet_cap(pair: tuple[str, str], tmp_path: Path) -> None:
    na, nb = pair
    with PacketCapture(nb, "dsrc-pb", tmp_path, max_packets=5) as cap:
        blast(na, 20)
        assert cap.wait(15), "tcpdump did not stop at -c"
    assert cap.stats.captured == 5 and cap.stats.packet_cap_reached
    _, recs = read_pcap(cap.ring_files()[0])
    assert len(recs) == 5


def test_a_ring_is_bounded_and_a_window_older_than_it_is_incomplete(
    pair: tuple[str, str], tmp_path: Path
) -> None:
    na, nb = pair
    with PacketCapture(nb, "dsrc-pb", tmp_path, snaplen=1500, file_mb=1, files=2) as cap:
        t0 = time.monotonic()
        blast(na, 4000, size=1000)  # ~4 MB through a 2 MB ring
    files = cap.ring_files()
    assert 1 <= len(files) <= 2
    assert all(f.stat().st_size <= 1_000_000 + 1600 for f in files)
    assert cap.stats.captured is not None
    retained = sum(len(read_pcap(f)[1]) for f in files)
    assert cap.stats.captured > retained, "the ring did not wrap"
    w = cap.window(t0, time.monotonic())
    assert not w.complete and any("overwrote" in g for g in w.gaps), w.gaps


def test_leaving_the_context_on_an_exception_stops_tcpdump(pair: tuple[str, str],
                                                           tmp_path: Path) -> None:  # fmt: skip
    _, nb = pair
    with pytest.raises(RuntimeError), PacketCapture(nb, "dsrc-pb", tmp_path) as cap:
        pid = cap._proc.pid  # type: ignore[union-attr]
        assert pids_in_namespaces([nb]), "tcpdump is not running in the namespace"
        raise RuntimeError("the test body failed")
    assert not cap.running and not os.path.exists(f"/proc/{pid}")
    assert not pids_in_namespaces([nb])
    assert cap.stats.returncode == 0 and not cap.stats.killed
