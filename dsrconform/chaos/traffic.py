"""The traffic of a scenario: the mix of the seed's services, watched on every link.

:func:`observe_steady_state` drives, concurrently and from every client node of a running lab:

- long-lived verified streams to every TCP service (``/stream``),
- short connections at a target rate to the first TCP service (``/id``; enough of them for the
  spread requirement, AF-3) and uploads of full-sized segments (``POST /upload``, RW-6),
- UDP flows to every UDP service,
- once streams are established, ICMP errors about some of them (fragmentation needed, time
  exceeded, port unreachable) sent by their client toward the VIP, as a client host whose own
  link is narrower would (RW-6, RW-7),
- an echo request from each client address to each server's own address: DSR servers are
  ordinary hosts that clients may also reach directly, so a checker that exempted every server
  address a client ever sent to would be blind (RW-3 judges conversations by 5-tuple and time),

with a :class:`~dsrconform.observe.labtaps.LabTaps` on every interface of the lab, and returns
the :class:`~dsrconform.invariants.Observations` the checkers read: the lab's facts, the merged
connection histories, the tap records and the target's counters before and after. Nothing here
knows which stack is under test: the lab brought its target up, the traffic uses only the
service addresses of the topology.

Every generator is bounded in count and time (each has a deadline, and the run waits at most
``Mix.deadline`` plus a margin for them); the histories and tap records are also written to
``out_dir`` when given, for a later look or a re-check.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsrconform.chaos.mixes import STEADY_MIX, Mix
from dsrconform.errors import DsrConformError, LabError
from dsrconform.families import family_of_address
from dsrconform.observe.counters import snapshot
from dsrconform.observe.history import History, load_history
from dsrconform.observe.labtaps import LabTaps
from dsrconform.observe.observations import FaultWindow, LabFacts, Observations
from dsrconform.topology import Service, Topology

if TYPE_CHECKING:
    from dsrconform.chaos.scenario import Scenario
    from dsrconform.chaos.schedule import Execution, Journal, Method
    from dsrconform.lab.protocol import RunningLab
    from dsrconform.observe.pcap import PacketCapture

__all__ = [
    "FaultCallback",
    "SteadyRun",
    "observe_scenario",
    "observe_steady_state",
    "run_method",
    "traffic_clients",
]

ICMP_KINDS = (("frag-needed", 3, 4), ("time-exceeded", 11, 0), ("port-unreachable", 3, 3))
"""(name, type, code) of the ICMP errors sent about live streams, in turn."""
PTB_MTU = 1400
"""Next-hop MTU the fragmentation-needed errors announce (above any TCP minimum)."""
MARGIN = 30.0
"""Seconds beyond a generator's own deadline before the run gives up on it."""
CAPTURE_MARGIN = 30.0
"""Seconds a packet capture may run beyond the generators' limit (the end of the run)."""


@dataclass
class SteadyRun:
    observations: Observations
    counts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per generator job, the counts it printed (and ``icmp`` for the injected errors)."""
    files: dict[str, Path] = field(default_factory=dict)
    started: float = 0.0
    stopped: float = 0.0
    captures: list[PacketCapture] = field(default_factory=list)
    """The evidence captures (``capture=True``), stopped; their files are in the lab's run
    directory until it is torn down (:func:`dsrconform.observe.evidence.cut_evidence`)."""


@dataclass(frozen=True)
class _Job:
    name: str
    node: str
    argv: list[str]


def traffic_clients(topo: Topology) -> list[str]:
    """The client nodes that run the traffic mix (not those marked ``traffic: false``)."""
    return [n for n, node in topo.nodes.items() if node.role == "client" and node.traffic]


def client_sources(topo: Topology, node: str, family: str = "ipv4") -> list[str]:
    """``node``'s source addresses of ``family``: its extra ``addresses`` of that family, else
    its address on its uplink (none when the uplink has no address of the family)."""
    own = topo.nodes[node].addresses_of("ipv6" if family == "ipv6" else "ipv4")
    if own:
        return own
    up = topo.uplink(node)
    addr = up.ip6 if family == "ipv6" else up.ip
    return [addr] if addr else []


def _jobs(
    topo: Topology, python: str, mix: Mix, reuse: tuple[int, int] | None = None
) -> list[_Job]:
    """The generator commands, per client node and service; ``reuse``: the short
    connections' fixed local ports (first, last), if they reuse ports."""
    tcp = [s for s in topo.services if s.proto == "tcp"]
    udp = [s for s in topo.services if s.proto == "udp"]
    clients = traffic_clients(topo)
    if not clients or not topo.services:
        raise LabError(
            f"lab {topo.name}: a steady-state run needs a client node with traffic and a service"
        )
    jobs: list[_Job] = []
    marks = ["--marks", ",".join(f"{t}:{ttl}" for t, ttl in mix.marks)] if mix.marks else []
    for ci, client in enumerate(clients):
        seed = mix.seed * 7919 + ci

        def job(
            name: str,
            module: str,
            svc: Service,
            *args: object,
            client: str = client,
            seed: int = seed,
        ) -> None:
            # Sources of the VIP's family (a dual-stack client has both).
            src = client_sources(topo, client, svc.family)
            if not src:
                raise LabError(
                    f"lab {topo.name}: client {client} has no {svc.family} address for "
                    f"service {svc.name}; fix: give its link an {svc.family} address"
                )
            argv = [
                python,
                "-m",
                f"dsrconform.traffic.{module}",
                "--vip",
                svc.vip,
                "--port",
                str(svc.port),
                "--sources",
                ",".join(src),
                "--seed",
                str(seed),
                *map(str, args),
                *marks,
                "--out",
                "-",
            ]
            jobs.append(_Job(f"{client}-{name}-{svc.name}", client, argv))

        for svc in tcp:
            job(
                "streams",
                "streams",
                svc,
                "--conns",
                mix.streams,
                "--bytes",
                mix.stream_bytes,
                "--rate",
                mix.stream_rate,
                "--open-rate",
                200,
                "--timeout",
                10,
                "--deadline",
                mix.deadline,
            )
        if tcp and mix.short_conns:
            job(
                "short",
                "shortconns",
                tcp[0],
                "--count",
                mix.short_conns // len(clients),
                "--rate",
                mix.short_rate / len(clients),
                "--duration",
                mix.deadline / 2,
                "--deadline",
                mix.deadline,
                *(["--reuse-ports", f"{reuse[0]}-{reuse[1]}"] if reuse else []),
            )
        if tcp and mix.uploads:
            job(
                "upload",
                "shortconns",
                tcp[-1],
                "--count",
                mix.uploads,
                "--rate",
                20,
                "--upload",
                mix.upload_bytes,
                "--duration",
                mix.deadline / 2,
                "--deadline",
                mix.deadline,
            )
        for svc in udp:
            job(
                "udp",
                "udpflows",
                svc,
                "--flows",
                mix.udp_flows,
                "--count",
                mix.udp_datagrams,
                "--interval",
                mix.udp_interval,
                "--deadline",
                mix.deadline,
                "--no-checksum-every",
                mix.udp_no_checksum_every,
            )
    return jobs


FaultCallback = Callable[["RunningLab", Callable[[str], None]], list[FaultWindow]]
"""What runs while the traffic runs: ``fault(lab, say)`` does it (bounded in time) and returns
its windows for the fault timeline (a :class:`dsrconform.chaos.schedule.Method`'s ``run``)."""


def observe_steady_state(
    lab: RunningLab,
    mix: Mix = STEADY_MIX,
    *,
    out_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    fault: FaultCallback | None = None,
    capture: bool = False,
    watch: Callable[[LabTaps], None] | None = None,
) -> SteadyRun:
    """Run the mix in ``lab`` (a :class:`dsrconform.lab.Lab` that is up) and return what was
    observed; with ``fault``, inject it (from this thread) once the traffic is under way.
    ``watch`` is given the taps once they run (live progress may read them meanwhile).
    With ``capture``, bounded packet captures run alongside the taps
    (:func:`dsrconform.observe.evidence.start_captures`, at most the generators' time limit
    and :data:`CAPTURE_MARGIN`), stopped when the run ends and kept on ``SteadyRun.captures``;
    captures that cannot start cost the evidence, not the run (``counts["captures"]`` says why).
    Raises LabError if a generator could not run at all (a bad argument, a missing module);
    traffic that failed is data, not an error: the checkers judge it."""
    say = progress or (lambda _msg: None)
    topo: Topology = lab.topology
    reuse: tuple[int, int] | None = None
    lo, hi = lab.fresh_client_ports(reserve=mix.short_reuse_ports)
    if mix.short_reuse_ports:
        reuse = (hi - mix.short_reuse_ports + 1, hi)
    say(f"client ports {lo}-{hi}: new to the stack under test")
    jobs = _jobs(topo, lab.python, mix, reuse)
    facts = LabFacts.from_topology(topo)
    run = SteadyRun(Observations(lab=facts))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    counters = []
    limit = mix.deadline + MARGIN
    with ExitStack() as stack:
        # The captures first (listening before the taps, so before any traffic) and last out.
        if capture:
            from dsrconform.observe.evidence import start_captures

            try:
                run.captures = start_captures(
                    lab,
                    stack,
                    max_seconds=limit + CAPTURE_MARGIN,
                    mux_links=mix.capture_mux_links,
                )
            except DsrConformError as e:  # evidence is lost, not the run: the counts say why
                run.counts["captures"] = {"started": 0, "error": f"{type(e).__name__}: {e}"}
                say(f"no packet captures (FAILs will have no pcap evidence): {e}")
            else:
                run.counts["captures"] = {"started": len(run.captures)}
                say(f"{len(run.captures)} packet captures for the evidence of FAILs")
        taps = stack.enter_context(LabTaps(lab))
        if watch is not None:
            watch(taps)
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=len(jobs)))
        if lab.deployment is not None:
            counters.append(snapshot(lab.deployment))
        run.started = time.monotonic()
        say(f"{len(jobs)} traffic jobs on {len(taps.interfaces)} tapped interfaces")
        futures = {
            j.name: pool.submit(lab.run, j.node, j.argv, timeout=limit, check=False) for j in jobs
        }
        if mix.pings:
            run.counts["pings"] = _send_pings(lab, facts, mix, say)
        if mix.icmp_errors:
            run.counts["icmp"] = _send_icmp_errors(lab, taps, mix, say)
        windows = fault(lab, say) if fault is not None else []
        parts: list[History] = []
        for j in jobs:
            try:
                res = futures[j.name].result()
            except subprocess.TimeoutExpired:
                raise LabError(
                    f"traffic job {j.name} ran past its deadline ({limit:.0f} s) and was "
                    "killed; fix: a smaller Mix, or a longer Mix.deadline"
                ) from None
            text = res.stdout
            counts = _last_json(res.stderr)
            if res.returncode != 0 or counts is None:
                raise LabError(
                    f"traffic job {j.name} ({' '.join(j.argv[2:4])}) exited {res.returncode}: "
                    f"{res.stderr.strip()[-500:]}"
                )
            run.counts[j.name] = counts
            path = (out_dir or Path(lab.dir)) / f"history-{j.name}.jsonl"
            path.write_text(text)
            run.files[j.name] = path
            parts.append(load_history(path))
            say(f"{j.name}: {counts}")
        run.stopped = time.monotonic()
        tapset = taps.collect()
        if counters and lab.deployment is not None:
            counters.append(snapshot(lab.deployment))
    if run.captures:  # stopped: how much each kept
        from dsrconform.observe.evidence import capture_summary

        run.counts["captures"]["links"] = links = capture_summary(run.captures)
        for k, c in links.items():
            say(f"capture {k}: {c['captured']} packets, {c['ring_bytes'] / 1e6:.1f} MB kept")
    run.observations = Observations(
        lab=run.observations.lab,
        history=History.merge(parts),
        taps=tapset,
        counters=tuple(counters),
        faults=tuple(windows),
    )
    if out_dir is not None:
        from dsrconform.runfiles import save_observations

        run.files.update(save_observations(run.observations, out_dir))
    return run


def _last_json(stderr: str) -> dict[str, Any] | None:
    """The counts a generator prints as its last stderr line."""
    for line in reversed(stderr.strip().splitlines()):
        try:
            out = json.loads(line)
        except ValueError:
            continue
        return out if isinstance(out, dict) else None
    return None


def _send_on_uplink(lab: RunningLab, client: str, name: str, packets: list[Any]) -> Any:
    """Send ``packets`` once each, framed, on ``client``'s uplink (within 5 s): the
    :class:`~dsrconform.traffic.crafted.SendRecord`."""
    from dsrconform.netns import link_mac
    from dsrconform.traffic import crafted

    topo: Topology = lab.topology
    up = topo.uplink(client)
    peer_if = topo.uplink(up.peer, client).ifname
    src_mac = link_mac(lab.netns(client), up.ifname)
    frames = tuple(crafted.frame(packets, src_mac, link_mac(lab.netns(up.peer), peer_if)))
    return crafted.send_crafted(
        lab.netns(client),
        up.ifname,
        [crafted.CraftedFrames(name, frames)],
        max_packets=len(frames),
        deadline=5.0,
    )


def _send_pings(
    lab: RunningLab, facts: LabFacts, mix: Mix, say: Callable[[str], None]
) -> dict[str, Any]:
    """``mix.pings`` echo requests from each address of each traffic client to each server's
    own address, sent on the client's uplink (the servers answer from their addresses)."""
    from dsrconform.traffic import crafted

    topo: Topology = lab.topology
    servers = [a for n in facts.nodes("server") for a in facts.addresses.get(n, [])]
    sent = failed = 0
    for i, client in enumerate(traffic_clients(topo)):
        # Each family of the run's services, from the client's addresses of it to the
        # servers' addresses of it.
        packets = [
            crafted.icmp_echo(src, dst, ident=0xD5C0 + i, seq=seq)
            for fam in topo.families
            for src in client_sources(topo, client, fam)
            for dst in servers
            if family_of_address(dst) == fam
            for seq in range(mix.pings)
        ]
        rec = _send_on_uplink(lab, client, "pings", packets)
        sent += rec.sent
        failed += rec.failed
    say(f"sent {sent} echo requests from the clients to the servers' own addresses")
    return {"sent": sent, "failed": failed}


def _send_icmp_errors(
    lab: RunningLab, taps: LabTaps, mix: Mix, say: Callable[[str], None]
) -> dict[str, Any]:
    """Once enough streams are established (their client's tap saw data flowing), send one ICMP
    error about each of ``mix.icmp_errors`` of them, from the stream's client toward the VIP."""
    from dsrconform.traffic import crafted

    topo: Topology = lab.topology
    client = traffic_clients(topo)[0]
    up = topo.uplink(client)
    tcp = {(s.vip, s.port) for s in topo.services if s.proto == "tcp"}
    tap = taps.tap(client, up.ifname)
    deadline = time.monotonic() + min(20.0, mix.deadline)
    live: list[Any] = []
    while time.monotonic() < deadline:
        live = [f for f in open_streams(tap, tcp) if f.packets >= 4]
        if len(live) >= mix.icmp_errors:
            break
        time.sleep(0.1)  # polling the tap for established streams, bounded by `deadline`
    chosen = sorted(live, key=lambda f: (f.first_ns, f.src, f.sport))[: mix.icmp_errors]
    packets = []
    for i, f in enumerate(chosen):
        flow = crafted.Flow(f.src, f.sport, f.dst, f.dport, "tcp")
        kind = ICMP_KINDS[i % len(ICMP_KINDS)][0]
        if kind == "frag-needed":
            packets += crafted.icmp_frag_needed(flow, src=f.src, next_hop_mtu=PTB_MTU)
        elif kind == "time-exceeded":
            packets += crafted.icmp_time_exceeded(flow, src=f.src)
        else:
            packets += crafted.icmp_port_unreachable(flow, src=f.src)
    sent = _send_on_uplink(lab, client, "icmp-errors", packets)
    say(f"sent {sent.sent} ICMP errors about live streams ({len(live)} were live)")
    return {"sent": sent.sent, "failed": sent.failed, "live_streams": len(live)}


ALIVE_WITHIN = 2.0
"""Seconds since its last packet within which a client's TCP connection counts as alive."""
LIVE_EVERY = 1.0
"""Seconds between two reads of the client taps for live progress (each reads a BPF map)."""


class Live:
    """What live progress shows of a run under way: the faults in effect and the clients' TCP
    connections alive (unfinished, a packet within :data:`ALIVE_WITHIN` s, on the first traffic
    client's uplink), read at most every :data:`LIVE_EVERY` s."""

    def __init__(self) -> None:
        self.method: Method | None = None
        self._taps: LabTaps | None = None
        self._lab: RunningLab | None = None
        self._alive: int | None = None
        self._read = 0.0

    def watch(self, taps: LabTaps) -> None:
        self._taps = taps

    def done(self) -> None:
        """The method ended: stop reading the taps (they close soon after)."""
        self._taps = None

    def faults(self) -> list[str]:
        return self.method.active() if self.method is not None else []

    def alive(self) -> int | None:
        """The clients' live TCP connections (None: no taps yet)."""
        taps = self._taps
        if taps is None:
            return None
        now = time.monotonic()
        if now - self._read >= LIVE_EVERY:
            self._read = now
            try:
                self._alive = _alive(taps, now)
            except (DsrConformError, OSError, KeyError):
                self._alive = None  # the taps closed meanwhile: nothing to show
        return self._alive


def open_streams(tap: Any, vips: set[tuple[str, int]]) -> list[Any]:
    """The TCP connections a client's uplink ``tap`` saw leave toward one of ``vips`` and not
    finished (no FIN or RST)."""
    return [
        f
        for f in tap.flows()
        if f.direction == "egress"
        and f.proto == 6
        and (f.dst, f.dport) in vips
        and not (f.fin or f.rst)
    ]


def _alive(taps: LabTaps, now: float) -> int:
    topo = taps.lab.topology
    client = traffic_clients(topo)[0]
    tap = taps.tap(client, topo.uplink(client).ifname)
    vips = {(s.vip, s.port) for s in topo.services if s.proto == "tcp"}
    recent = int((now - ALIVE_WITHIN) * 1e9)
    return sum(1 for f in open_streams(tap, vips) if f.last_ns >= recent)


def run_method(
    lab: RunningLab,
    scenario: Scenario,
    mix: Mix,
    journal: Journal,
    *,
    out_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    capture: bool = False,
    around: Callable[[], AbstractContextManager[object]] | None = None,
    live: Live | None = None,
) -> tuple[SteadyRun | None, Execution]:
    """``scenario``'s faults set up before the traffic (none if a setup failed: (None, what
    happened)), then ``mix`` with the timeline and its rollbacks while it runs
    (:class:`~dsrconform.chaos.schedule.Method`), inside ``around()`` when given (the chaos
    runner's probes during the method), ``live`` told of the method and the taps (live
    progress). Errors of faults are in the Execution, not raised."""
    from dsrconform.chaos.schedule import Method

    say = progress or (lambda _msg: None)
    timed = [a.timed(i) for i, a in enumerate(scenario.method)]
    with Method(lab, timed, journal, say) as method:
        if not method.ready:
            return None, method.out
        if live is not None:
            live.method = method

        def run(_lab: RunningLab, _say: Callable[[str], None]) -> list[FaultWindow]:
            try:
                with around() if around is not None else nullcontext():
                    return method.run()
            finally:
                if live is not None:
                    live.done()

        done = observe_steady_state(
            lab,
            mix,
            out_dir=out_dir,
            progress=say,
            fault=run if timed else None,
            capture=capture,
            watch=live.watch if live is not None else None,
        )
    return done, method.out


def observe_scenario(
    lab: RunningLab,
    scenario: Scenario,
    mix: Mix,
    *,
    out_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    capture: bool = False,
) -> SteadyRun:
    """Run ``scenario`` in ``lab`` under ``mix`` (:func:`run_method`), the journal in
    ``out_dir/journal.jsonl``, for the suites: a fault that failed, or a rollback, is a
    LabError naming them once the rollbacks ran, so the scenario's requirements are not judged
    (the suites report them UNKNOWN)."""
    from dsrconform.chaos.schedule import Journal

    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal(out_dir / "journal.jsonl" if out_dir is not None else None)
    run, execution = run_method(
        lab, scenario, mix, journal, out_dir=out_dir, progress=progress, capture=capture
    )
    if run is None or execution.errors:
        raise LabError(f"scenario {scenario.name}: " + "; ".join(execution.errors))
    return run
