"""``dsrconform bench traffic``: how much traffic the framework itself generates and judges.

Four sections, each printing its headline as it finishes and stored in the JSON result:

``flood``
    SYN flood packets/s delivered: our generator (:mod:`dsrconform.traffic.synflood`, with
    the best engine this kernel has: live frames, else AF_PACKET; named in the result) against
    ``trafgen`` (netsniff-ng) in the same harness: two throwaway
    namespaces and a veth pair, the same 64-byte SYN to 198.19.0.10:80 from 198.18.200.0/21, the
    same duration, one CPU each (trafgen ``--cpus 1``; ours pinned), rounds alternating
    ours-trafgen, trafgen-ours (ABBA). The receiving end is ``flood_sink.bpf.c`` (native XDP on
    the peer veth): a packet counts only if it arrived with the flood's exact shape and valid
    checksums. The rate is the steady-state slope of the sink's counter, sampled every
    :data:`SAMPLE_S` (:func:`steady_rate`: start-up and shutdown excluded for both). Headline:
    ours / trafgen.
``checkers``
    The RW, DP and AF checkers (:mod:`dsrconform.spec`) timed over a synthetic run of
    :data:`CHECK_RECORDS` tap records and its history (:func:`synthetic_observations`: the
    shapes a run of ``labs/basic.yaml`` records: 6 tap records per connection, encapsulated on
    the MUX and server links, UDP flows, a few ICMP errors). Construction (pydantic validation,
    as loading files does) is timed apart. Tap records checked per second, per checker and for
    all of them together, and the wall-clock time of one call checking all of them as
    ``dsrconform check`` does (:func:`dsrconform.parallelcheck.check_parallel`: two processes
    on a machine with two CPUs, and in one process); target: 1 M records through all of them
    in under :data:`CHECK_TARGET_S` s. A checker whose share is far over budget is profiled (top
    functions by cumulative time), not changed.
``streams``
    ``labs/basic.yaml`` brought up (netns backend, reference target) and
    :mod:`dsrconform.traffic.streams` run in the client node with N = :data:`STREAM_LEVELS`
    concurrent verified streams, each held open long enough for all N to overlap; the largest N
    where every stream connected, was answered and closed with every byte verified, with the
    client's and the servers' CPU time and the measured peak concurrency.
``newconns``
    New connections per second through the same lab (:func:`new_connections_per_second`, using
    :mod:`dsrconform.traffic.shortconns`): increasing target rates, the largest one achieved
    (>= :data:`NEWCONN_ACHIEVED_SHARE` of it) with every connection succeeding.

Measured here (2 vCPU, kernel 6.18; full run, ~2.5 min): flood ours ~4.7-5.3 M SYN/s, trafgen
~0.52-0.55 M/s, ratio ~9-10x, no malformed packet on either side. Checkers: 1 M tap records (and
783 k history records; ~15 s to construct) through the 12 RW/DP/AF checkers in ~4.5 s summed
one by one, ~4.1-4.2 s all at once with ``check_parallel`` (two processes), ~5.4 s all at once
in one process (20 s before the GC was paused and the shared indexes built once). Streams:
10,000 concurrent verified streams (the top level) with ~12-15 s of client CPU. New
connections: 4,000/s on a quiet machine, 1,000/s while another test suite ran.

Options: ``--quick`` (short runs, small sizes), ``--section`` (repeatable), ``--json FILE``.
Everything is removed in ``finally``: the flood namespaces (``dsrc-tgen-*``, ``dsrc-tsink-*``), the
XDP programs, the lab (``dsrc-benchtraf.*``), trafgen (stopped by its own pid/session).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import json
import os
import platform
import pstats
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsrconform.bench import progress_bars
from dsrconform.errors import ConfigError, LabError, PrivilegeError, ToolMissingError
from dsrconform.traffic.trafgen import flood_config as trafgen_config
from dsrconform.traffic.trafgen import parse_packets as parse_trafgen_packets
from dsrconform.traffic.trafgen import stop as stop_trafgen

if TYPE_CHECKING:
    from dsrconform.lab.lab import Lab
    from dsrconform.observe.history import History
    from dsrconform.observe.observations import Observations
    from dsrconform.traffic.synflood import FloodSink

SECTIONS = ("flood", "checkers", "streams", "newconns")
TITLES = {
    "flood": "1 SYN flood pps",
    "checkers": "2 checker throughput",
    "streams": "3 verified streams",
    "newconns": "4 new connections/s",
}
ProgressFn = Callable[[str, float], None]

# --- 1. flood ------------------------------------------------------------------------------------
GEN_IF, SINK_IF = "dsrc-tg0", "dsrc-ts0"
FLOOD_VIP, FLOOD_PORT = "198.19.0.10", 80
FLOOD_SECONDS, FLOOD_ROUNDS = 3.0, 2
QUICK_FLOOD_SECONDS, QUICK_FLOOD_ROUNDS = 1.0, 1
SAMPLE_S = 0.02  # sink counter sampling period
WARMUP_S = 0.2  # of each run's counter growth, left out of the steady rate
MAX_FLOOD_PPS = 20_000_000  # packet-count bound of every generator run: this rate x its time

# --- 2. checkers ---------------------------------------------------------------------------------
CHECK_RECORDS, QUICK_CHECK_RECORDS = 1_000_000, 100_000
CHECK_TARGET_S = 5.0  # for 1 M tap records through every RW/DP/AF checker
CHECK_FAMILIES = ("RW", "DP", "AF")
PROFILE_OVER_S = 1.0  # a checker slower than this per million records (gc frozen): profiled
PROFILE_TOP = 8

# --- 3. streams ----------------------------------------------------------------------------------
LAB_FILE = Path(__file__).resolve().parents[2] / "labs" / "basic.yaml"
LAB_NAME = "benchtraf"
STREAM_LEVELS, QUICK_STREAM_LEVELS = (1000, 4000, 10000), (100, 500)
STREAM_OPEN_RATE = 2000.0  # connections opened per second
# Every stream stays open this long after the last one opened:
STREAM_HOLD_S, QUICK_STREAM_HOLD_S = 10.0, 3.0
STREAM_RATE = 4  # bytes/s per stream: the server writes one byte at a time at this pace
STREAM_TIMEOUT = 15.0  # connect / read timeout of each stream

# --- 4. new connections --------------------------------------------------------------------------
NEWCONN_RATES, QUICK_NEWCONN_RATES = (500, 1000, 2000, 4000, 8000), (200, 500)
NEWCONN_SECONDS, QUICK_NEWCONN_SECONDS = 5.0, 2.0
NEWCONN_ACHIEVED_SHARE = 0.95


# =================================================================================================
# Pure helpers (unit-tested)
# =================================================================================================


def steady_rate(samples: Sequence[tuple[float, int]], warmup: float = WARMUP_S) -> float | None:
    """Packets/s of a counter sampled as ``(time, count)`` while a generator ran: the slope from
    ``warmup`` s after it first grew to the last sample where it still grew (start-up and the
    tail after the generator stopped excluded). None with too little growth to tell."""
    if len(samples) < 2:
        return None
    base = samples[0][1]
    first = next((i for i, (_, c) in enumerate(samples) if c > base), None)
    if first is None:
        return None
    last = max(i for i, (_, c) in enumerate(samples) if c > samples[i - 1][1] or i == first)
    # Start one sample before the first growth: the generator started in between.
    t_begin = samples[max(first - 1, 0)][0] + warmup
    start = next((i for i in range(first, last + 1) if samples[i][0] >= t_begin), None)
    if start is None or last - start < 2:
        start = max(first - 1, 0)
    t0, c0 = samples[start]
    t1, c1 = samples[last]
    if t1 <= t0:
        return None
    return (c1 - c0) / (t1 - t0)


def flood_order(rounds: int) -> list[str]:
    """ours, trafgen, trafgen, ours, ...: ABBA, so a drift of the machine hits both sides."""
    out: list[str] = []
    for r in range(rounds):
        out += ["ours", "trafgen"] if r % 2 == 0 else ["trafgen", "ours"]
    return out


def peak_concurrency(intervals: Sequence[tuple[float, float | None]]) -> int:
    """The largest number of ``(start, end)`` intervals open at once (``end`` None: open to the
    end; an interval ending at t no longer counts for one starting at t)."""
    events: list[tuple[float, int]] = []
    for start, end in intervals:
        events.append((start, 1))
        if end is not None:
            events.append((end, -1))
    events.sort(key=lambda e: (e[0], e[1]))
    peak = cur = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return peak


def stream_outcome(history: History, expected: int) -> dict[str, Any]:
    """How a streams run went: ``ok`` counts streams that connected, were answered and closed
    (eof) with every expected byte verified; the rest by how they ended; ``peak_concurrent``
    counts streams connected at once; ``all_verified`` says every one of ``expected`` was ok."""
    from dsrconform.observe.history import Closed

    kinds: dict[str, int] = {}
    ok = 0
    intervals: list[tuple[float, float | None]] = []
    for fh in history.flows.values():
        if fh.established_at is not None:
            intervals.append((fh.established_at, fh.ended_at))
        end = fh.end
        failure = fh.failure()
        if failure is not None:
            kind: str = "short" if isinstance(failure, Closed) else failure.kind
        elif isinstance(end, Closed) and end.reason == "eof":
            want = fh.start.expected_bytes
            if fh.server is not None and end.verified == end.received == want:
                ok += 1
                continue
            kind = "short"
        elif isinstance(end, Closed):
            kind = "deadline"
        else:
            kind = "unfinished"
        kinds[kind] = kinds.get(kind, 0) + 1
    flows = len(history.flows)
    return {
        "expected": expected,
        "flows": flows,
        "ok": ok,
        "failed": kinds,
        "peak_concurrent": peak_concurrency(intervals),
        "all_verified": flows == expected and ok == expected,
    }


def limit_found(levels: Sequence[dict[str, Any]], passed: str, tried: int) -> bool:
    """Whether a level failed (so the largest passing one is the limit), rather than every one
    of the ``tried`` levels passing (the limit is then above the top level)."""
    return len(levels) < tried or any(not lv.get(passed) for lv in levels)


def largest_passing(levels: Sequence[dict[str, Any]], key: str, passed: str) -> Any:
    """``level[key]`` of the largest passing level, counting only those before the first
    failure (levels are tried in increasing order and stop at the first failure)."""
    best = None
    for level in levels:
        if not level.get(passed):
            break
        best = level[key]
    return best


def checker_names(families: Sequence[str] = CHECK_FAMILIES) -> list[tuple[str, str]]:
    """(requirement id, checker ``module:function``) of every requirement in ``families``."""
    from dsrconform import spec

    return [(r.id, r.checker) for r in spec.REQUIREMENTS if r.family in families]


# =================================================================================================
# 1. SYN flood: ours vs trafgen
# =================================================================================================


@dataclass(frozen=True)
class _FloodLab:
    gen_ns: str
    sink_ns: str
    gen_mac: str
    sink_mac: str


@contextlib.contextmanager
def _flood_lab() -> Iterator[_FloodLab]:
    from dsrconform.netns import link_mac, throwaway_netns, veth_pair

    with (
        throwaway_netns("tgen") as gen_ns,
        throwaway_netns("tsink") as sink_ns,
        veth_pair(gen_ns, GEN_IF, SINK_IF, ns_b=sink_ns),
    ):
        yield _FloodLab(gen_ns, sink_ns, link_mac(gen_ns, GEN_IF), link_mac(sink_ns, SINK_IF))


def _sample(sink: FloodSink, running: Callable[[], bool], until: float,
            tick: Callable[[float], None]) -> list[tuple[float, int]]:  # fmt: skip
    """Sample the sink's SYN counter every SAMPLE_S while ``running()`` and before ``until``."""
    samples = [(time.monotonic(), sink.counts().syn)]
    start = samples[0][0]
    while running() and samples[-1][0] < until:
        time.sleep(SAMPLE_S)
        samples.append((time.monotonic(), sink.counts().syn))
        tick(min(1.0, (samples[-1][0] - start) / max(until - start, 1e-6)))
    return samples


def _ours_run(lab: _FloodLab, sink: FloodSink, seconds: float,
              tick: Callable[[float], None]) -> dict[str, Any]:  # fmt: skip
    from dsrconform.traffic.synflood import flood

    box: dict[str, Any] = {}

    def go() -> None:
        try:
            box["result"] = flood(
                lab.gen_ns,
                GEN_IF,
                dst_mac=lab.sink_mac,
                vip=FLOOD_VIP,
                port=FLOOD_PORT,
                count=int(MAX_FLOOD_PPS * seconds),
                duration=seconds,
            )
        except BaseException as e:
            box["error"] = e

    before = sink.counts()
    thread = threading.Thread(target=go, name="bench-flood")
    thread.start()
    try:
        samples = _sample(sink, thread.is_alive, time.monotonic() + seconds + 30, tick)
    finally:
        thread.join()
    if "error" in box:
        raise box["error"]
    time.sleep(0.1)  # the sink's NAPI drains the veth ring
    got = sink.counts() - before
    res = box["result"]
    return _run_figures("ours", samples, got, res.seconds, res.packets,
                        {"engine": res.engine, "generator_pps": res.pps})  # fmt: skip


def _trafgen_run(lab: _FloodLab, sink: FloodSink, seconds: float, cfg: Path,
                 tick: Callable[[float], None]) -> dict[str, Any]:  # fmt: skip
    argv = ["ip", "netns", "exec", lab.gen_ns, "trafgen", "--dev", GEN_IF, "--in", str(cfg),
            "--cpus", "1", "--num", str(int(MAX_FLOOD_PPS * seconds)),
            "--no-sock-mem", "--notouch-irq"]  # fmt: skip
    before = sink.counts()
    # Its own session: trafgen forks a worker per CPU; SIGINT goes to that group only.
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    t0 = time.monotonic()
    try:
        samples = _sample(sink, lambda: proc.poll() is None, t0 + seconds, tick)
    finally:
        output = stop_trafgen(proc)
    elapsed = time.monotonic() - t0
    time.sleep(0.1)
    got = sink.counts() - before
    return _run_figures("trafgen", samples, got, elapsed, parse_trafgen_packets(output),
                        {"exit_status": proc.returncode,
                         "output_tail": output.strip().splitlines()[-3:]})  # fmt: skip


def _run_figures(side: str, samples: list[tuple[float, int]], got: Any, seconds: float,
                 submitted: int | None, extra: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    steady = steady_rate(samples)
    return {
        "side": side,
        "steady_pps": steady,
        "delivered": got.syn,
        "bad_checksum": got.bad_checksum,
        "other_ipv4": got.other_ipv4,
        "seconds": seconds,
        "delivered_pps": got.syn / seconds if seconds > 0 else 0.0,
        "submitted": submitted,
        "samples": len(samples),
        **extra,
    }


def bench_flood(seconds: float, rounds: int, tick: Callable[[float], None]) -> dict[str, Any]:
    """Section 1: ours vs trafgen, ``rounds`` ABBA rounds of ``seconds`` per side."""
    from dsrconform.traffic.synflood import FLOOD_NET, FloodSink

    trafgen = shutil.which("trafgen")
    order = flood_order(rounds)
    runs: list[dict[str, Any]] = []
    with (
        _flood_lab() as lab,
        FloodSink(vip=FLOOD_VIP, port=FLOOD_PORT) as sink,
        sink.attached(lab.sink_ns, SINK_IF),
        tempfile.TemporaryDirectory(prefix="dsrc-bench-") as tmp,
    ):
        cfg = Path(tmp) / "syn.trafgen"
        cfg.write_text(trafgen_config(lab.sink_mac, lab.gen_mac, FLOOD_VIP, FLOOD_PORT, FLOOD_NET))
        for i, side in enumerate(order):

            def sub(f: float, i: int = i) -> None:
                tick((i + f) / len(order))

            if side == "ours":
                runs.append(_ours_run(lab, sink, seconds, sub))
            elif trafgen is not None:
                runs.append(_trafgen_run(lab, sink, seconds, cfg, sub))
    return flood_summary(runs, seconds, rounds, trafgen_missing=trafgen is None)


def flood_summary(runs: list[dict[str, Any]], seconds: float, rounds: int, *,
                  trafgen_missing: bool = False) -> dict[str, Any]:  # fmt: skip
    """Per side: mean steady pps over its runs; the ratio ours / trafgen; any malformed packet."""
    out: dict[str, Any] = {"seconds_per_run": seconds, "rounds": rounds, "runs": runs}
    for side in ("ours", "trafgen"):
        mine = [r for r in runs if r["side"] == side and r["steady_pps"] is not None]
        out[f"{side}_pps"] = sum(r["steady_pps"] for r in mine) / len(mine) if mine else None
        out[f"{side}_malformed"] = sum(r["bad_checksum"] + r["other_ipv4"]
                                       for r in runs if r["side"] == side)  # fmt: skip
    ours, theirs = out["ours_pps"], out["trafgen_pps"]
    out["ratio"] = ours / theirs if ours and theirs else None
    # The engine ours used: the best this kernel has (live frames, else AF_PACKET).
    engines = sorted({r["engine"] for r in runs if r["side"] == "ours" and "engine" in r})
    out["ours_engine"] = ", ".join(engines) or None
    if trafgen_missing:
        out["trafgen_missing"] = "trafgen not found; fix: apt-get install -y netsniff-ng"
    return out


# =================================================================================================
# 2. Checker throughput
# =================================================================================================


def _tap_infos(topo: Any) -> dict[str, Any]:
    """A tap per direction on every client, MUX and server uplink, named ``<node>-in|out``."""
    from dsrconform.observe.taps import Direction, TapInfo

    sides: tuple[tuple[str, Direction], ...] = (("in", "ingress"), ("out", "egress"))
    infos: dict[str, Any] = {}
    for iface in topo.interfaces():
        role = topo.nodes[iface.node].role
        if role not in ("client", "mux", "server") or iface.bridge:
            continue
        peer = iface.peer if iface.peer is not None else topo.router
        for d, direction in sides:
            name = f"{iface.node}-{d}"
            infos[name] = TapInfo(tap=name, node=iface.node, ifname=iface.ifname,
                                  link=iface.group, peer=peer, direction=direction,
                                  started=0.0, stopped=1e6)  # fmt: skip
    return infos


def synthetic_observations(tap_records: int, *, lab_file: Path = LAB_FILE, seed: int = 1,
                           ) -> tuple[Observations, dict[str, Any]]:  # fmt: skip
    """A healthy run of ``lab_file``'s lab with about ``tap_records`` tap records: per TCP or
    UDP flow, the 6 records its packets leave on the client, MUX and server taps (encapsulated
    between MUX and server), and every 500th flow an ICMP error about its replies entering the
    MUX and reaching the flow's server. Returns the observations and construction figures."""
    import random

    from dsrconform.chaos.mixes import HEADER_MARKS
    from dsrconform.observe.history import (
        Closed,
        Connected,
        DatagramReply,
        DatagramSent,
        FirstByte,
        FlowStart,
        History,
        HistoryHeader,
    )
    from dsrconform.observe.observations import LabFacts, Observations
    from dsrconform.observe.taps import FiveTuple, TapFlow, TapSet
    from dsrconform.topofile import load_topology

    t_begin = time.perf_counter()
    rnd = random.Random(seed)
    topo = load_topology(lab_file)
    lab = LabFacts.from_topology(topo)
    infos = _tap_infos(topo)
    client = topo.of_role("client")[0]
    sources = list(lab.addresses[client])
    muxes, servers = topo.of_role("mux"), topo.of_role("server")
    mux_ip = {m: topo.uplink(m).ip for m in muxes}
    rtr_ip = {m: topo.uplink(m).peer_ip for m in muxes}
    srv_ip = {s: topo.uplink(s).ip for s in servers}
    tcp_svcs = [s for s in topo.services if s.proto == "tcp"]
    udp_svcs = [s for s in topo.services if s.proto == "udp"]
    flows = max(1, tap_records // 6)
    span = 600.0  # seconds the synthetic run lasts
    recs: list[TapFlow] = []
    hist: list[Any] = [HistoryHeader(node=client, t=0.0, stall_threshold=1.0, seed=seed)]

    def rec(tap: str, t: FiveTuple, first: float, last: float, packets: int, nbytes: int,
            flags: int, **kw: Any) -> TapFlow:  # fmt: skip
        return TapFlow(tap=tap, proto=t.proto, src=t.src, dst=t.dst, sport=t.sport,
                       dport=t.dport, packets=packets, bytes=nbytes, first=first, last=last,
                       l3_valid=packets, l4_valid=packets, tcp_flags=flags, **kw)  # fmt: skip

    turns: Counter[str] = Counter()
    for i in range(flows):
        udp = udp_svcs and i % 10 == 9
        svc = udp_svcs[0] if udp else tcp_svcs[i % len(tcp_svcs)]
        src = sources[i % len(sources)]
        sport = 1024 + (i // len(sources)) % 64000
        proto = 17 if udp else 6
        mux = (svc.muxes or muxes)[rnd.randrange(len(svc.muxes or muxes))]
        # Each service's flows over its servers in turn: an even spread (AF-3), the same in
        # every process (hash() of a str is salted per process, and gave some an uneven one).
        pool = svc.servers or servers
        server = pool[turns[svc.name] % len(pool)]
        turns[svc.name] += 1
        t0 = i * span / flows
        t1 = t0 + 2.0
        fwd = FiveTuple(proto=proto, src=src, dst=svc.vip, sport=sport, dport=svc.port)
        rev = FiveTuple(proto=proto, src=svc.vip, dst=src, sport=svc.port, dport=sport)
        outer = FiveTuple(proto=4, src=mux_ip[mux], dst=srv_ip[server])
        fp, fb = (5, 300) if udp else (12, 900)
        rp, rb = (5, 200) if udp else (40, 60_000)
        ff, rf = (0, 0) if udp else (0x1B, 0x1B)
        # The steady mix's header marks, per flow in turn: TCP's ECN is the kernel's (Not-ECT
        # on the handshake, ECT(0) on the data), a UDP flow's the mark's own.
        tos = HEADER_MARKS[i % len(HEADER_MARKS)][0]
        marks = {"dscp_seen": 1 << (tos >> 2), "ecn_seen": 1 << (tos & 3) if udp else 1 | 1 << 2}
        plain = {"dscp_seen": 1, "ecn_seen": 1}
        recs += [
            rec(f"{client}-out", fwd, t0, t1, fp, fb, ff, **marks),
            rec(f"{mux}-in", fwd, t0, t1, fp, fb, ff, **marks),
            rec(f"{mux}-out", outer, t0, t1, fp, fb + 20 * fp, ff, inner=fwd, **marks),
            rec(f"{server}-in", outer, t0, t1, fp, fb + 20 * fp, ff, inner=fwd, **marks),
            rec(f"{server}-out", rev, t0, t1, rp, rb, rf, **plain),
            rec(f"{client}-in", rev, t0, t1, rp, rb, rf, **plain),
        ]
        if i % 500 == 250 and not udp:
            # The router says the reply was too big (or unreachable): the error goes to the VIP,
            # enters the MUX, and must reach the flow's server.
            code = 4 if i % 1000 == 250 else 3
            icmp = FiveTuple(proto=1, src=rtr_ip[mux], dst=svc.vip)
            kw = {"icmp_type": 3, "icmp_code": code, "embedded": rev}
            recs += [
                rec(f"{mux}-in", icmp, t0 + 0.5, t0 + 0.5, 1, 70, 0, **kw),
                rec(f"{server}-in", outer, t0 + 0.5, t0 + 0.5, 1, 90, 0, inner=icmp, **kw),
            ]
        start = FlowStart(flow=i, t=t0, proto="udp" if udp else "tcp", src=src, sport=sport,
                          dst=svc.vip, dport=svc.port, seed=None if udp else i,
                          expected_bytes=None if udp else rb)  # fmt: skip
        hist.append(start)
        if udp:
            for seq in range(fp):
                ts = t0 + seq * 0.3
                hist += [DatagramSent(flow=i, t=ts, seq=seq),
                         DatagramReply(flow=i, t=ts + 0.001, seq=seq, server=server)]  # fmt: skip
        else:
            hist += [
                Connected(flow=i, t=t0 + 0.001),
                FirstByte(flow=i, t=t0 + 0.002, server=server),
                Closed(flow=i, t=t1, received=rb, verified=rb),
            ]
    t_records = time.perf_counter()
    taps = TapSet.from_records([*infos.values(), *recs])
    history = History.from_records(hist)
    t_end = time.perf_counter()
    obs = Observations(lab=lab, history=history, taps=taps)
    return obs, {
        "tap_records": len(recs),
        "history_records": len(hist),
        "history_events": len(hist) - 1 - flows,
        "flows": flows,
        "taps": len(infos),
        "build_s": t_records - t_begin,
        "group_s": t_end - t_records,
        "construction_s": t_end - t_begin,
    }


def _profile(fn: Callable[[], Any]) -> list[dict[str, Any]]:
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(file).name}:{line}:{name}", "calls": calls,
                     "tottime_s": round(tottime, 3), "cumtime_s": round(cumtime, 3)})  # fmt: skip
    rows.sort(key=lambda r: -r["tottime_s"])
    return rows[:PROFILE_TOP]


def _fresh(obs: Observations) -> Observations:
    """The same observations without anything derived from them yet (the checkers' shared
    indexes, the flows' memos, the lab's address cache): each timing pass pays for them, as a
    real run's checks do."""
    if obs.history is not None:
        for fh in obs.history.flows.values():
            fh._memo.clear()
    from dsrconform.observe.observations import Observations

    lab = obs.lab.model_copy() if obs.lab is not None else None
    return Observations(lab=lab, history=obs.history, taps=obs.taps, counters=obs.counters,
                        faults=obs.faults)  # fmt: skip


def _time_checkers(obs: Observations, names: list[tuple[str, str]], n_tap: int, n_hist: int,
                   tick: Callable[[float], None]) -> dict[str, Any]:  # fmt: skip
    from dsrconform.invariants.verdict import resolve_checker, run_checker

    obs = _fresh(obs)
    per: dict[str, Any] = {}
    for k, (req, ref) in enumerate(names):
        fn = resolve_checker(ref)
        t0 = time.perf_counter()
        verdict = run_checker(fn, obs)
        dt = time.perf_counter() - t0
        per[req] = {
            "checker": ref.partition(":")[2],
            "seconds": dt,
            "tap_records_per_s": n_tap / dt if dt > 0 else None,
            "history_records_per_s": n_hist / dt if dt > 0 else None,
            "status": str(verdict.status),
            "message": verdict.message,
        }
        tick((k + 1) / len(names))
    return per


def checker_totals(per: dict[str, Any], n_tap: int, n_hist: int) -> dict[str, Any]:
    """Total time of the checkers in ``per`` and the rates it gives (pure)."""
    total = sum(v["seconds"] for v in per.values())
    scaled = total * 1e6 / max(n_tap, 1)
    return {
        "total_check_s": total,
        "tap_records_per_s": n_tap / total if total > 0 else None,
        "history_records_per_s": n_hist / total if total > 0 else None,
        "seconds_per_million_tap_records": scaled,
        "meets_target": scaled < CHECK_TARGET_S,
    }


def bench_checkers(tap_records: int, tick: Callable[[float], None]) -> dict[str, Any]:
    """Section 2: every RW/DP/AF checker over a synthetic run; only the checking is timed.

    Twice: as a run checks today (the garbage collector on: with millions of live records every
    full collection walks them all, and its pauses land in whichever checker allocates), then
    with the loaded observations moved out of the collector's sight (``gc.freeze()``), which
    shows what the checkers' own code costs. Checkers over :data:`PROFILE_OVER_S` s per million
    records (frozen) are profiled: top functions by own time."""
    import gc

    from dsrconform.invariants.verdict import resolve_checker, run_checker

    obs, built = synthetic_observations(tap_records)
    tick(0.3)
    names = checker_names()
    n_tap, n_hist = built["tap_records"], built["history_records"]
    gc.collect()
    per = _time_checkers(obs, names, n_tap, n_hist, lambda f: tick(0.3 + 0.3 * f))
    gc.freeze()
    try:
        frozen = _time_checkers(obs, names, n_tap, n_hist, lambda f: tick(0.6 + 0.2 * f))
        slow = [
            req for req, v in frozen.items() if v["seconds"] * 1e6 / max(n_tap, 1) > PROFILE_OVER_S
        ]
        refs = dict(names)
        for k, req in enumerate(slow):
            fn = resolve_checker(refs[req])
            per[req]["profile"] = _profile(functools.partial(run_checker, fn, obs))
            tick(0.8 + 0.2 * (k + 1) / len(slow))
    finally:
        gc.unfreeze()
    for req, v in frozen.items():
        per[req]["seconds_gc_frozen"] = v["seconds"]
        per[req]["tap_records_per_s_gc_frozen"] = v["tap_records_per_s"]
    as_is = checker_totals(per, n_tap, n_hist)
    without_gc = checker_totals(frozen, n_tap, n_hist)
    # What `dsrconform check` and `steady` run: all of them in one call, in one process and
    # split over two (the checkers are pure: a forked child checks part of them).
    from dsrconform.invariants import check_all
    from dsrconform.parallelcheck import check_parallel

    ids = [req for req, _ in names]
    gc.collect()
    t0 = time.perf_counter()
    check_all(_fresh(obs), ids=ids)
    one = time.perf_counter() - t0
    gc.collect()
    t0 = time.perf_counter()
    verdicts = check_parallel(_fresh(obs), ids=ids, workers=2)
    two = time.perf_counter() - t0
    wall = {
        "one_process_s": one,
        "two_processes_s": two,
        "two_processes_s_per_million": two * 1e6 / max(n_tap, 1),
        "two_processes_tap_records_per_s": n_tap / two if two > 0 else None,
        "meets_target": two * 1e6 / max(n_tap, 1) < CHECK_TARGET_S,
        "not_pass": {v.requirement: str(v.status) for v in verdicts if v.status != "PASS"},
    }
    tick(1.0)
    return {
        "wall_clock": wall,
        "construction": built,
        "checkers": per,
        **as_is,
        "gc_frozen": without_gc,
        "gc_share": 1 - without_gc["total_check_s"] / as_is["total_check_s"]
        if as_is["total_check_s"] > 0
        else None,
        "target_s_per_million": CHECK_TARGET_S,
        "profiled": slow,
        "not_pass": {r: v["status"] for r, v in per.items() if v["status"] != "PASS"},
    }


# =================================================================================================
# 3. Concurrent verified streams, 4. new connections per second (both in a lab)
# =================================================================================================


def _cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of ``pids`` (gone ones count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all CPUs), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(x) for x in fields[:8]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def _run_in_client(lab: Lab, argv: list[str], timeout: float,
                   tick: Callable[[float], None], expect_s: float,
                   ) -> tuple[subprocess.CompletedProcess[str], float]:  # fmt: skip
    """Run ``argv`` in the client node (bounded by ``timeout``), ticking progress against
    ``expect_s``; returns the result and the child's CPU seconds."""
    client = lab.topology.of_role("client")[0]
    full = lab.backend.run_argv(client, argv)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    t0 = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            time.sleep(0.2)
            tick(min(0.99, (time.monotonic() - t0) / max(expect_s, 1e-3)))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # our own child, by pid
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    out, err = proc.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return subprocess.CompletedProcess(full, proc.returncode, out, err), cpu


def _server_pids(lab: Lab) -> list[int]:
    return [p for s in lab.topology.of_role("server") for p in lab.processes(s)]


def _client_sources(lab: Lab) -> list[str]:
    topo = lab.topology
    client = topo.of_role("client")[0]
    return [*topo.nodes[client].addresses, topo.uplink(client).ip]


def stream_level(lab: Lab, n: int, hold: float, tick: Callable[[float], None],
                 workdir: Path) -> dict[str, Any]:  # fmt: skip
    """One run of ``n`` concurrent streams; the outcome and the CPU it took."""
    from dsrconform.observe.history import load_history

    svc = next(s for s in lab.topology.services if s.proto == "tcp")
    open_s = n / STREAM_OPEN_RATE
    life = open_s + hold  # the first stream lives until after the last has opened + hold
    nbytes = max(1, int(STREAM_RATE * life))
    deadline = life + open_s + STREAM_TIMEOUT + 10
    out = workdir / f"streams-{n}.jsonl"
    argv = [lab.python, "-m", "dsrconform.traffic.streams", "--vip", svc.vip, "--port",
            str(svc.port), "--sources", ",".join(_client_sources(lab)), "--conns", str(n),
            "--bytes", str(nbytes), "--rate", str(STREAM_RATE), "--open-rate",
            str(STREAM_OPEN_RATE), "--stall", "5", "--timeout", str(STREAM_TIMEOUT),
            "--deadline", str(deadline), "--seed", "1", "--out", str(out)]  # fmt: skip
    servers = _server_pids(lab)
    srv0, busy0, t0 = _cpu_seconds(servers), _machine_busy_seconds(), time.monotonic()
    res, client_cpu = _run_in_client(lab, argv, deadline + 30, tick, life + open_s)
    wall = time.monotonic() - t0
    srv_cpu, busy = _cpu_seconds(servers) - srv0, _machine_busy_seconds() - busy0
    outcome: dict[str, Any]
    try:
        outcome = stream_outcome(load_history(out), n)
    except Exception as e:
        outcome = {"expected": n, "all_verified": False, "error": f"{type(e).__name__}: {e}"}
    if res.returncode != 0:
        outcome["all_verified"] = False
        outcome["exit_status"] = res.returncode
        outcome["stderr_tail"] = res.stderr.strip().splitlines()[-3:]
    return {
        "n": n,
        "bytes_per_stream": nbytes,
        "stream_rate_Bps": STREAM_RATE,
        "wall_s": wall,
        "client_cpu_s": client_cpu,
        "servers_cpu_s": srv_cpu,
        "machine_busy_cpu_s": busy,
        **outcome,
    }


def bench_streams(lab: Lab, levels: Sequence[int], hold: float,
                  tick: Callable[[float], None]) -> dict[str, Any]:  # fmt: skip
    """Section 3: increasing N until one fails; the largest N that verified entirely."""
    done: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dsrc-bench-streams-") as tmp:
        for k, n in enumerate(levels):

            def sub(f: float, k: int = k) -> None:
                tick((k + f) / len(levels))

            level = stream_level(lab, n, hold, sub, Path(tmp))
            done.append(level)
            print(f"  streams N={n}: {level.get('ok', 0)}/{n} verified, peak "
                  f"{level.get('peak_concurrent', 0)} concurrent, client CPU "
                  f"{level['client_cpu_s']:.1f} s")  # fmt: skip
            if not level["all_verified"]:
                break
    return {
        "levels": done,
        "max_verified_streams": largest_passing(done, "n", "all_verified"),
        "limit_found": limit_found(done, "all_verified", len(levels)),
        "hold_s": hold,
        "open_rate": STREAM_OPEN_RATE,
    }


def newconn_level_passed(summary: dict[str, Any], rate: float, count: int, status: int) -> bool:
    """A new-connection rate is sustained when the generator exited cleanly, no connection
    failed, at least :data:`NEWCONN_ACHIEVED_SHARE` of the ``count`` asked for succeeded (an
    opener held back by its in-flight cap attempts fewer), and the opening rate over their span
    reached that share of ``rate``."""
    share = NEWCONN_ACHIEVED_SHARE
    return (
        status == 0
        and summary.get("failed", 1) == 0
        and summary.get("succeeded", 0) >= share * count
        and (summary.get("achieved_rate") or 0.0) >= share * rate
    )


def new_connections_per_second(lab: Lab, rates: Sequence[float] = NEWCONN_RATES,
                               seconds: float = NEWCONN_SECONDS,
                               tick: Callable[[float], None] = lambda f: None,
                               ) -> dict[str, Any]:  # fmt: skip
    """Section 4 -- NEW CONNECTIONS PER SECOND (the lead's to refine).

    For each target rate (increasing, stopping at the first miss), run
    :mod:`dsrconform.traffic.shortconns` in the client node for ``seconds`` and summarize its
    history (``summarize``: achieved_rate, success_rate, latency); a rate passes as
    :func:`newconn_level_passed` says. Returns the levels and the largest passing rate, or
    ``unavailable`` if the module is missing."""
    try:
        from dsrconform.traffic import shortconns
    except ImportError as e:
        return {"unavailable": f"dsrconform.traffic.shortconns: {e}"}
    from dsrconform.observe.history import load_history

    svc = next(s for s in lab.topology.services if s.proto == "tcp")
    levels: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dsrc-bench-conns-") as tmp:
        for k, rate in enumerate(rates):
            out = Path(tmp) / f"conns-{rate}.jsonl"
            count = int(rate * seconds)
            argv = [lab.python, "-m", "dsrconform.traffic.shortconns", "--vip", svc.vip,
                    "--port", str(svc.port), "--rate", str(rate), "--count", str(count),
                    "--duration", str(seconds), "--sources", ",".join(_client_sources(lab)),
                    "--seed", "1", "--out", str(out)]  # fmt: skip
            servers = _server_pids(lab)
            srv0 = _cpu_seconds(servers)

            def sub(f: float, k: int = k) -> None:
                tick((k + f) / len(rates))

            res, client_cpu = _run_in_client(lab, argv, seconds + 60, sub, seconds + 2)
            try:
                summary = shortconns.summarize(load_history(out))
            except Exception as e:
                summary = {"error": f"{type(e).__name__}: {e}"}
            achieved = summary.get("achieved_rate") or 0.0
            ok = newconn_level_passed(summary, rate, count, res.returncode)
            levels.append({"target_rate": rate, "passed": ok, "client_cpu_s": client_cpu,
                           "servers_cpu_s": _cpu_seconds(servers) - srv0,
                           "exit_status": res.returncode, **summary})  # fmt: skip
            print(f"  new conns {rate}/s: achieved {achieved:.0f}/s, success "
                  f"{summary.get('success_rate')}, p99 "
                  f"{(summary.get('latency_ms') or {}).get('p99')} ms")  # fmt: skip
            if not ok:
                break
    return {
        "levels": levels,
        "max_rate": largest_passing(levels, "target_rate", "passed"),
        "limit_found": limit_found(levels, "passed", len(rates)),
    }


# =================================================================================================
# The bench
# =================================================================================================


def run_bench(sections: Sequence[str] = SECTIONS, *, quick: bool = False,
              progress: ProgressFn | None = None) -> dict[str, Any]:  # fmt: skip
    """Run the sections asked for; returns a JSON-ready dict (one key per section)."""
    for s in sections:
        if s not in SECTIONS:
            raise ConfigError(f"unknown section {s!r}; choose from {', '.join(SECTIONS)}")
    needs_root = {"flood", "streams", "newconns"} & set(sections)
    if needs_root and os.geteuid() != 0:
        raise PrivilegeError(f"bench traffic ({', '.join(sorted(needs_root))}) needs root")

    def ticker(section: str) -> Callable[[float], None]:
        def tick(f: float) -> None:
            if progress is not None:
                progress(TITLES[section], f)

        return tick

    summary: dict[str, Any] = {"kernel": platform.release(), "cpus": os.cpu_count(),
                               "quick": quick, "sections": list(sections)}  # fmt: skip
    if "flood" in sections:
        secs, rounds = (QUICK_FLOOD_SECONDS, QUICK_FLOOD_ROUNDS) if quick else (
            FLOOD_SECONDS, FLOOD_ROUNDS)  # fmt: skip
        f = summary["flood"] = bench_flood(secs, rounds, ticker("flood"))
        print(f"1. SYN flood: ours ({f['ours_engine']}) {_mpps(f['ours_pps'])}, "
              f"trafgen {_mpps(f['trafgen_pps'])}, "
              f"ratio {_x(f['ratio'])}")  # fmt: skip
    if "checkers" in sections:
        c = summary["checkers"] = bench_checkers(
            QUICK_CHECK_RECORDS if quick else CHECK_RECORDS, ticker("checkers")
        )
        print(f"2. checkers: {c['construction']['tap_records']:,} tap records through "
              f"{len(c['checkers'])} checkers in {c['total_check_s']:.2f} s "
              f"({c['tap_records_per_s']:,.0f} records/s; "
              f"{c['seconds_per_million_tap_records']:.2f} s per million; with gc.freeze() "
              f"{c['gc_frozen']['seconds_per_million_tap_records']:.2f} s per million; "
              f"construction {c['construction']['construction_s']:.1f} s); all at once in "
              f"two processes: {c['wall_clock']['two_processes_s']:.2f} s")  # fmt: skip
    if {"streams", "newconns"} & set(sections):
        summary.update(_lab_sections(sections, quick, ticker))
    return summary


def _lab_sections(sections: Sequence[str], quick: bool,
                  ticker: Callable[[str], Callable[[float], None]]) -> dict[str, Any]:  # fmt: skip
    from dsrconform.lab import registry
    from dsrconform.lab.lab import Lab

    if not LAB_FILE.is_file():
        raise ConfigError(f"{LAB_FILE} not found: the lab sections run from a source checkout")
    if registry.lab_namespaces(LAB_NAME):
        raise LabError(f"lab {LAB_NAME!r} is up (or left behind); fix: dsrconform lab down "
                       f"{LAB_NAME}")  # fmt: skip
    out: dict[str, Any] = {}
    t0 = time.monotonic()
    with Lab.up(LAB_FILE, name=LAB_NAME) as lab:
        out["lab_up_s"] = time.monotonic() - t0
        if "streams" in sections:
            s = out["streams"] = bench_streams(
                lab,
                QUICK_STREAM_LEVELS if quick else STREAM_LEVELS,
                QUICK_STREAM_HOLD_S if quick else STREAM_HOLD_S,
                ticker("streams"),
            )
            print(f"3. verified streams: max N = {_at_least(s, 'max_verified_streams')}")
        if "newconns" in sections:
            n = out["newconns"] = new_connections_per_second(
                lab,
                QUICK_NEWCONN_RATES if quick else NEWCONN_RATES,
                QUICK_NEWCONN_SECONDS if quick else NEWCONN_SECONDS,
                ticker("newconns"),
            )
            print(f"4. new connections: max {_at_least(n, 'max_rate')}/s "
                  f"{n.get('unavailable', '')}")  # fmt: skip
    return out


def _at_least(section: dict[str, Any], key: str) -> str:
    """The figure, marked ">=" when every level passed (the limit lies above the top one)."""
    value = section.get(key)
    return f">={value}" if value is not None and not section.get("limit_found") else str(value)


def _mpps(v: float | None) -> str:
    return "n/a" if v is None else f"{v / 1e6:.2f} Mpps"


def _x(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def _render(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="bench traffic" + (" (quick)" if summary["quick"] else ""))
    table.add_column("section")
    table.add_column("figure", justify="right")
    table.add_column("detail")
    f = summary.get("flood")
    if f:
        table.add_row(
            "SYN flood, ours",
            _mpps(f["ours_pps"]),
            f"{f.get('ours_engine')}, delivered, {f['rounds']} rounds x {f['seconds_per_run']:g} s",
        )
        table.add_row(
            "SYN flood, trafgen",
            _mpps(f["trafgen_pps"]),
            f.get("trafgen_missing") or "--cpus 1, same veth and sink",
        )
        table.add_row(
            "ours / trafgen",
            _x(f["ratio"]),
            f"malformed: ours {f['ours_malformed']}, trafgen {f['trafgen_malformed']}",
        )
    c = summary.get("checkers")
    if c:
        n = c["construction"]["tap_records"]
        ok = "[green]meets[/]" if c["meets_target"] else "[red]misses[/]"
        table.add_row("checkers, all", f"{c['tap_records_per_s']:,.0f} rec/s",
                      f"{n:,} tap records in {c['total_check_s']:.2f} s; "
                      f"{c['seconds_per_million_tap_records']:.2f} s/M ({ok} < "
                      f"{c['target_s_per_million']:g} s)")  # fmt: skip
        w = c["wall_clock"]
        ok2 = "[green]meets[/]" if w["meets_target"] else "[red]misses[/]"
        rate = f"{w['two_processes_tap_records_per_s']:,.0f} rec/s"
        table.add_row("checkers, check_parallel", rate,
                      f"all at once, 2 processes: {w['two_processes_s']:.2f} s "
                      f"({w['two_processes_s_per_million']:.2f} s/M, {ok2} < "
                      f"{c['target_s_per_million']:g} s); 1 process: "
                      f"{w['one_process_s']:.2f} s")  # fmt: skip
        fz = c["gc_frozen"]
        table.add_row("checkers, gc.freeze()", f"{fz['tap_records_per_s']:,.0f} rec/s",
                      f"{fz['total_check_s']:.2f} s; {fz['seconds_per_million_tap_records']:.2f} "
                      f"s/M (the collector's share as is: {c['gc_share']:.0%})")  # fmt: skip
        for req, v in c["checkers"].items():
            top = (v.get("profile") or [{}])[0].get("function")
            table.add_row(f"  {req} {v['checker']}", f"{v['tap_records_per_s']:,.0f} rec/s",
                          f"{v['seconds']:.3f} s ({v['seconds_gc_frozen']:.3f} s frozen), "
                          f"{v['status']}" + (f"; hottest: {top}" if top else ""))  # fmt: skip
        table.add_row(
            "  construction",
            f"{c['construction']['construction_s']:.1f} s",
            f"{c['construction']['history_records']:,} history records",
        )
    s = summary.get("streams")
    if s:
        table.add_row("verified streams", _at_least(s, "max_verified_streams"),
                      ", ".join(f"N={lv['n']}: {lv.get('ok', 0)} ok, "
                                f"CPU client {lv['client_cpu_s']:.1f} s / servers "
                                f"{lv['servers_cpu_s']:.1f} s" for lv in s["levels"]))  # fmt: skip
    n4 = summary.get("newconns")
    if n4:
        table.add_row("new connections/s", _at_least(n4, "max_rate"),
                      n4.get("unavailable") or ", ".join(
                          f"{lv['target_rate']}: {lv.get('achieved_rate')}/s "
                          f"ok={lv.get('success_rate')}" for lv in n4["levels"]))  # fmt: skip
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 160)
    console.print(table)


def add_parser(bench_subparsers: Any) -> argparse.ArgumentParser:
    """Register ``bench traffic`` under ``dsrconform bench``; its handler is :func:`main`."""
    p: argparse.ArgumentParser = bench_subparsers.add_parser(
        "traffic", help="flood pps vs trafgen, checker throughput, streams, new conns (root)"
    )
    p.add_argument("--quick", action="store_true", help="short runs and small sizes")
    p.add_argument("--section", choices=SECTIONS, action="append", default=None,
                   help="run only this section; repeatable (default: all)")  # fmt: skip
    p.add_argument("--json", default=None, metavar="FILE", help="write the results to FILE")
    p.set_defaults(handler=main)
    return p


def main(args: argparse.Namespace) -> int:
    """``dsrconform bench traffic``: run, print each section's figure and a table; ``--json FILE``
    also writes every figure. Progress bars go to stderr."""
    sections = tuple(dict.fromkeys(getattr(args, "section", None) or SECTIONS))
    if "flood" in sections and shutil.which("trafgen") is None:
        print("warning: trafgen not found (apt-get install -y netsniff-ng): the flood section "
              "measures ours only", file=sys.stderr)  # fmt: skip
    if "flood" in sections and not shutil.which("clang"):
        raise ToolMissingError("clang is needed for the flood section's BPF programs")
    with progress_bars([TITLES[s] for s in sections], transient=False) as progress:
        summary = run_bench(sections, quick=bool(getattr(args, "quick", False)),
                            progress=progress)  # fmt: skip
    _render(summary)
    path = getattr(args, "json", None)
    if path:
        Path(path).write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"results written to {path}")
    return 0
