"""``dsrconform bench mux``: how many packets per second a target's MUX encapsulates and sends back.

Topology (two throwaway namespaces, nothing on the host)::

    dsrc-bgen-* namespace                      dsrc-bdut-* namespace
    livegen (BPF_PROG_TEST_RUN, live frames), or AF_PACKET sendmmsg where the kernel refuses them
        | XDP_TX out of dsrc-bg0
    dsrc-bg0 [count_drop, native XDP] <==veth==> dsrc-bd0 [DUT, native XDP]
        ^ counts what the DUT sent back             reflector (MAC swap, XDP_TX): the baseline
                                                    or the target's MUX (IPIP encap, XDP_TX)

The generator submits 64-byte TCP frames to the VIP; the DUT sends each one back (swapped or
encapsulated); ``count_drop`` on the generator side counts what arrives. The rate is the
*delivered* count divided by wall time, never the submitted count: the veth rings drop what the
DUT cannot keep up with. Everything runs on one core (the test run's softirqs process the veth
NAPI polls), so a packet's time is generator + DUT + receiver: ``mux +ns/pkt`` is the MUX's cost
per packet over the reflector's, which the ratio alone dilutes.

Cases: ``reflector-syn``, ``mux-syn`` (a new flow per packet: connection-table misses),
``reflector-established``, ``mux-established`` (1024 flows repeated: hits). The headline is
mux/reflector per mode; the goal is >= 0.8. Each case's budget is split into rounds, reflector
and MUX alternating (:func:`schedule`), so the machine's drift hits both sides of a ratio. Every
round attaches afresh, and the counter is read after the receiving program is detached (which
waits for the veth's NAPI poll): no frame of one round is counted in another, and no sleep is
needed. Measured here (2 vCPU, kernel 6.18, live frames): reflector ~3.8-4.0 M packets/s; the
~2.2 M/s of docs/kernel.md matches what this harness shows with ``kernel.bpf_stats_enabled=1``
(reported as a warning). With the AF_PACKET generator (a kernel that refuses live frames):
reflector ~0.5 M/s, the generator's own limit.

Families: ``family="ipv4"`` (the above) or ``"ipv6"``: 74-byte frames to :data:`VIP6` from
2001:2:0:1::/64, backends :data:`BACKENDS6`, the MUX's IPv6 address :data:`MUX_ADDR6` given as
``mux_addr6`` (:class:`dsrconform.target.MuxBench`), over AF_PACKET only (livegen writes IPv4
headers), counted apart from the links' own ICMPv6. Each family is its own run of the four
cases, with the same bounds; the summary names it. :mod:`dsrconform.bench.muxreport` decides
which families run (``--family``, default: each one the target declares) and prints them.

Use :func:`run_bench` from code (``dut="reflector"`` puts the reflector in the MUX's place, to
check the harness without a target), :func:`main` from the CLI.
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from dsrconform.bench.muxframes import (
    AF_PACKET_CLIENTS,
    AF_PACKET_SYN_FLOWS,
    ESTABLISHED_FLOWS,
    FRAME_LEN,
    FRAME_LEN6,
    Mode,
    af_packet_frames,
    build_template,
    frame_len,
)
from dsrconform.bpf.build import compile_bpf
from dsrconform.bpf.libbpf import (
    BPF_F_TEST_XDP_LIVE_FRAMES,
    BpfObject,
    Program,
    possible_cpus,
    xdp_attach,
    xdp_detach,
)
from dsrconform.errors import ConfigError
from dsrconform.features import EngineChoice, pick_engine
from dsrconform.netns import enter_netns, link_mac, throwaway_netns, veth_pair
from dsrconform.target import FAMILIES, BenchVip, Family, MuxBench, check_mutant, load_target

__all__ = [  # the frames' names, re-exported: the bench's callers and tests use them from here
    "AF_PACKET_CLIENTS",
    "AF_PACKET_SYN_FLOWS",
    "ESTABLISHED_FLOWS",
    "FRAME_LEN",
    "FRAME_LEN6",
    "Mode",
    "af_packet_frames",
    "build_template",
]

PROGS_DIR = Path(__file__).resolve().parent.parent / "bpf" / "progs"
GEN_IF = "dsrc-bg0"
DUT_IF = "dsrc-bd0"
MUX_ADDR = "198.18.10.1"
VIP = BenchVip("198.19.0.10", 80, 6)
BACKENDS = ("198.18.20.1", "198.18.20.2", "198.18.20.3", "198.18.20.4")
MUX_ADDR6 = "2001:2:0:10::1"
VIP6 = BenchVip("2001:2:0:100::10", 80, 6)
BACKENDS6 = ("2001:2:0:20::1", "2001:2:0:20::2", "2001:2:0:20::3")
TARGET_RATIO = 0.8
BATCH_SIZE = 64
FIRST_CHUNK = 65_536  # frames in the first test run of a case (~10-30 ms here)
MAX_CHUNK = 2_000_000
CHUNK_SECONDS = 0.2  # later chunks are sized to about this long, from the measured rate
MAX_CHUNKS = 10_000  # bound on test runs per case, whatever the clock says
MAX_SECONDS = 600.0
ROUNDS = 4  # each case's budget is split into rounds, reflector and MUX alternating (ABBA)
MAX_ROUNDS = 20

GENERATORS: tuple[str, ...] = ("live-frames", "af-packet")
"""Frame generators, best first (each a key of dsrconform.features.FEATURES): live frames submit
~5 M frames/s; AF_PACKET sendmmsg of prebuilt frames ~0.4 M/s, below what the reflector and the
MUX forward, so its ratios say only that the MUX keeps up with that rate."""
Dut = Literal["reflector", "mux"]
CASES: tuple[tuple[Dut, Mode], ...] = (
    ("reflector", "syn"),
    ("mux", "syn"),
    ("reflector", "established"),
    ("mux", "established"),
)
# dsrc_lg_cfg modes (livegen.bpf.c)
_LG_MODE = {"syn": 0, "established": 1}
_TCP_SYN, _TCP_ACK = 0x02, 0x10
# dsrc_cd_stats slots (count_drop.bpf.c): the bench traffic of each family; the rest is the
# links' own IPv6 neighbour discovery (and MLD), which must not be counted as delivered.
_CD_SLOT_IPV4, _CD_SLOT_OTHER, _CD_SLOT_IPV6 = 0, 1, 2
_CD_SLOTS: dict[Family, int] = {"ipv4": _CD_SLOT_IPV4, "ipv6": _CD_SLOT_IPV6}


@dataclass(frozen=True)
class BenchFamily:
    """What the bench sends in one address family: the VIP, its backends, the MUX's address."""

    family: Family
    vip: BenchVip
    backends: tuple[str, ...]
    mux_addr: str

    @property
    def frame_bytes(self) -> int:
        return frame_len(self.family)


BENCH_FAMILIES: dict[Family, BenchFamily] = {
    "ipv4": BenchFamily("ipv4", VIP, BACKENDS, MUX_ADDR),
    "ipv6": BenchFamily("ipv6", VIP6, BACKENDS6, MUX_ADDR6),
}
IPV6_GENERATORS: tuple[str, ...] = ("af-packet",)
"""IPv6 frames go out over AF_PACKET only: livegen writes IPv4 headers."""

ProgressFn = Callable[[str, float], None]


@dataclass(frozen=True)
class CaseResult:
    """One case (or one round of it): what was submitted, what came back, in how long."""

    name: str
    dut: Dut
    mode: Mode
    submitted: int
    delivered: int
    delivered_bytes: int
    seconds: float
    ignored: int = 0
    """Frames counted that were not the bench's (the links' own neighbour discovery)."""
    rounds_pps: tuple[float, ...] = ()
    family: Family = "ipv4"

    @property
    def pps(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # Named by family: "ignored_non_ipv4" as before for IPv4, "ignored_non_ipv6" for IPv6.
        d[f"ignored_non_{self.family}"] = d.pop("ignored")
        d["rounds_pps"] = list(self.rounds_pps)
        d["pps"] = self.pps
        d["delivered_fraction"] = self.delivered / self.submitted if self.submitted else 0.0
        return d

    @staticmethod
    def combine(rounds: list[CaseResult]) -> CaseResult:
        """The rounds of one case as one result: totals, and each round's rate."""
        first = rounds[0]
        return CaseResult(
            name=first.name,
            dut=first.dut,
            mode=first.mode,
            submitted=sum(r.submitted for r in rounds),
            delivered=sum(r.delivered for r in rounds),
            delivered_bytes=sum(r.delivered_bytes for r in rounds),
            seconds=sum(r.seconds for r in rounds),
            ignored=sum(r.ignored for r in rounds),
            rounds_pps=tuple(r.pps for r in rounds),
            family=first.family,
        )


def schedule(rounds: int) -> list[tuple[Dut, Mode]]:
    """The order of the runs: per mode and round, reflector and MUX, alternating who goes first.

    The machine's speed drifts (other load, frequency): alternating reflector-MUX, MUX-reflector
    (ABBA) makes a linear drift hit both sides of each ratio equally.
    """
    order: list[tuple[Dut, Mode]] = []
    for r in range(rounds):
        for mode in ("syn", "established"):
            duts: tuple[Dut, Dut] = ("reflector", "mux") if r % 2 == 0 else ("mux", "reflector")
            order.extend((dut, mode) for dut in duts)
    return order


# --- frames ----------------------------------------------------------------------------------


def _xdp_md(ingress_ifindex: int) -> bytes:
    # struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    # Live frames insist on data_end == frame length and data_meta == egress_ifindex == 0.
    return struct.pack("=6I", 0, FRAME_LEN, 0, ingress_ifindex, 0, 0)


# --- BPF objects -----------------------------------------------------------------------------


@dataclass
class BenchPrograms:
    """The three bench programs, loaded (not attached). Close them when done."""

    livegen: BpfObject
    count_drop: BpfObject
    reflector: BpfObject

    def close(self) -> None:
        for obj in (self.livegen, self.count_drop, self.reflector):
            obj.close()

    def delivered(self, slot: int = _CD_SLOT_IPV4) -> tuple[int, int]:
        """Packets and bytes counted by count_drop in ``slot`` so far, summed over CPUs."""
        m = self.count_drop.map("dsrc_cd_stats")
        packets = octets = 0
        for raw in m.lookup_percpu(struct.pack("=I", slot)):
            p, b = struct.unpack("=QQ", raw)
            packets, octets = packets + p, octets + b
        return packets, octets

    def configure(self, template: bytes, mode: Mode) -> None:
        """Give livegen its frame and mode, and restart its flow sequence."""
        self.livegen.map("dsrc_lg_tmpl").update(bytes(4), template)
        # Source range fields zero: livegen's default client range (198.18.1.0-7.255, ports
        # 1024-65535). The SYN flood (dsrconform.traffic.synflood) sets its own.
        self.livegen.map("dsrc_lg_cfg").update(
            bytes(4), struct.pack("=6I", _LG_MODE[mode], ESTABLISHED_FLOWS, 0, 0, 0, 0)
        )
        # Restart the sequence on every CPU: one u64 slot per possible CPU.
        self.livegen.map("dsrc_lg_seq").update(bytes(4), bytes(8 * possible_cpus()))


def load_programs() -> BenchPrograms:
    """Compile (cached) and load livegen, count_drop and the reflector."""
    with ExitStack() as stack:
        objs = [
            stack.enter_context(BpfObject(compile_bpf(PROGS_DIR / f"{name}.bpf.c")))
            for name in ("livegen", "count_drop", "reflector")
        ]
        stack.pop_all()
    return BenchPrograms(*objs)


@contextmanager
def _attached(ns: str, ifindex: int, prog: Program) -> Iterator[None]:
    """Native XDP on ``ifindex`` in ``ns`` for the body; detached explicitly afterwards."""
    with enter_netns(ns):
        xdp_attach(ifindex, prog.fd, mode="native")
    try:
        yield
    finally:
        with enter_netns(ns):
            xdp_detach(ifindex, mode="native")


# --- running ---------------------------------------------------------------------------------


@contextmanager
def pinned_to_one_cpu() -> Iterator[None]:
    """Pin the calling thread to one CPU: livegen's sequence number is per CPU."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _generate_af_packet(
    ns: str, template: bytes, mode: Mode, seconds: float, tick: Callable[[float], None]
) -> tuple[int, float]:
    """The AF_PACKET generator: prebuilt frames of the template's family (a pool of distinct
    flows in ``syn`` mode, :data:`ESTABLISHED_FLOWS` repeated in ``established``) sent with
    sendmmsg until ``seconds`` have passed; returns (submitted, elapsed)."""
    from dsrconform.traffic.synflood import MAX_CALLS, MMSG_MAX, PacketSocket

    frames = af_packet_frames(template, mode)
    sock = PacketSocket(ns, GEN_IF, frames, frame_len=len(template))
    submitted = 0
    start = time.monotonic()
    deadline = start + seconds
    try:
        for i in range(MAX_CALLS):
            now = time.monotonic()
            if now >= deadline:
                break
            submitted += sock.send(MMSG_MAX)
            if i % 256 == 0:
                tick(min(1.0, (now - start) / seconds))
    finally:
        sock.close()
    return submitted, time.monotonic() - start


def _generate(
    gen: Program, frame: bytes, ctx: bytes, seconds: float, tick: Callable[[float], None]
) -> tuple[int, float]:
    """Run livegen in chunks until ``seconds`` have passed; return (submitted, elapsed)."""
    submitted = 0
    chunk = FIRST_CHUNK
    start = time.monotonic()
    deadline = start + seconds
    for _ in range(MAX_CHUNKS):
        t0 = time.monotonic()
        if t0 >= deadline:
            break
        gen.test_run(
            frame, ctx=ctx, repeat=chunk, flags=BPF_F_TEST_XDP_LIVE_FRAMES, batch_size=BATCH_SIZE
        )
        submitted += chunk
        now = time.monotonic()
        tick(min(1.0, (now - start) / seconds))
        # Size the next chunk from the rate just seen, so the last one ends near the deadline.
        rate = chunk / max(now - t0, 1e-6)
        chunk = int(rate * min(CHUNK_SECONDS, max(deadline - now, 0.0)))
        chunk = max(BATCH_SIZE, min(MAX_CHUNK, chunk))
    return submitted, time.monotonic() - start


@dataclass(frozen=True)
class _Lab:
    gen_ns: str
    dut_ns: str
    gen_ifindex: int
    dut_ifindex: int
    gen_mac: str
    dut_mac: str


@contextmanager
def _lab() -> Iterator[_Lab]:
    with (
        throwaway_netns("bgen") as gen_ns,
        throwaway_netns("bdut") as dut_ns,
        veth_pair(gen_ns, GEN_IF, DUT_IF, ns_b=dut_ns) as (gi, di),
    ):
        yield _Lab(gen_ns, dut_ns, gi, di, link_mac(gen_ns, GEN_IF), link_mac(dut_ns, DUT_IF))


def _run_round(
    lab: _Lab,
    progs: BenchPrograms,
    dut: Dut,
    mode: Mode,
    mux: Callable[[], AbstractContextManager[None]] | None,
    seconds: float,
    tick: Callable[[float], None],
    generator: str = "live-frames",
    bench: BenchFamily = BENCH_FAMILIES["ipv4"],
) -> CaseResult:
    template = build_template(lab.dut_mac, lab.gen_mac, bench.vip, mode)
    if generator == "live-frames":
        progs.configure(template, mode)
    slot = _CD_SLOTS[bench.family]
    others = [s for s in (_CD_SLOT_IPV4, _CD_SLOT_OTHER, _CD_SLOT_IPV6) if s != slot]
    with ExitStack() as stack:
        # Receiver first: the DUT's XDP_TX is lost unless the generator side runs native XDP.
        stack.enter_context(
            _attached(lab.gen_ns, lab.gen_ifindex, progs.count_drop.program("dsrc_count_drop"))
        )
        if dut == "mux" and mux is not None:
            stack.enter_context(mux())
        else:
            stack.enter_context(
                _attached(lab.dut_ns, lab.dut_ifindex, progs.reflector.program("dsrc_reflect"))
            )
        base_pkts, base_bytes = progs.delivered(slot)
        base_other = sum(progs.delivered(s)[0] for s in others)
        if generator == "live-frames":
            gen = progs.livegen.program("dsrc_livegen")
            with enter_netns(lab.gen_ns), pinned_to_one_cpu():
                ctx = _xdp_md(lab.gen_ifindex)
                submitted, elapsed = _generate(gen, template, ctx, seconds, tick)
        else:
            with pinned_to_one_cpu():
                submitted, elapsed = _generate_af_packet(lab.gen_ns, template, mode, seconds, tick)
    # Both programs are detached now: the veth NAPI polls are over, the counter is final.
    pkts, octets = progs.delivered(slot)
    other = sum(progs.delivered(s)[0] for s in others)
    return CaseResult(
        name=f"{dut}-{mode}",
        dut=dut,
        mode=mode,
        submitted=submitted,
        delivered=pkts - base_pkts,
        delivered_bytes=octets - base_bytes,
        seconds=elapsed,
        ignored=other - base_other,
        family=bench.family,
    )


def bench_target(name: str, mutant: str | None) -> MuxBench:
    """Target ``name`` built as ``mutant``, if it has the optional :class:`MuxBench` capability
    (ConfigError otherwise, or for an unknown target or mutant: before any BPF is loaded)."""
    check_mutant(name, mutant)
    target = load_target(name, mutant=mutant)
    if not isinstance(target, MuxBench):
        raise ConfigError(
            f"target {name!r} has no mux_for_bench (the optional MuxBench capability of "
            "dsrconform.target): `bench mux` cannot attach its MUX alone"
        )
    return target


def takes_mux_addr6(target: MuxBench) -> bool:
    """Whether ``target.mux_for_bench`` accepts the ``mux_addr6`` keyword (an adapter written
    before IPv6 came to the bench does not: its IPv6 cases are skipped, not attempted)."""
    params = inspect.signature(target.mux_for_bench).parameters.values()
    return any(p.name == "mux_addr6" or p.kind is p.VAR_KEYWORD for p in params)


def bench_families(
    declared: Sequence[str],
    requested: Sequence[str] | None = None,
    *,
    takes_addr6: bool = True,
) -> tuple[list[Family], dict[Family, str]]:
    """The families to measure and, for each requested one left out, why.

    ``declared``: the target's ``families`` (every family for the reflector check);
    ``requested``: ``--family`` (None: every declared family). A family the target does not
    declare, or IPv6 for an adapter whose ``mux_for_bench`` takes no ``mux_addr6``, is
    skipped with its reason: reported, not an error."""
    run: list[Family] = []
    skipped: dict[Family, str] = {}
    for family in FAMILIES:
        if requested is not None and family not in requested:
            continue
        if family not in declared:
            if requested is not None:
                skipped[family] = (
                    f"the target declares families {', '.join(declared)}: {family} not measured"
                )
        elif family == "ipv6" and not takes_addr6:
            skipped[family] = (
                "its mux_for_bench takes no mux_addr6 keyword (dsrconform.target.MuxBench): "
                "ipv6 not measured"
            )
        else:
            run.append(family)
    return run, skipped


def _mux_factory(
    target: MuxBench, lab: _Lab, bench: BenchFamily
) -> Callable[[], AbstractContextManager[None]]:
    # mux_addr6 only for IPv6: an adapter written before it keeps working for IPv4.
    extra = {"mux_addr6": bench.mux_addr} if bench.family == "ipv6" else {}

    def mux() -> AbstractContextManager[None]:
        return target.mux_for_bench(
            netns=lab.dut_ns,
            ifname=DUT_IF,
            mux_addr=MUX_ADDR,
            next_hop_mac=lab.gen_mac,
            vip=bench.vip,
            backends=list(bench.backends),
            **extra,
        )

    return mux


def check_generator(generator: str, family: Family) -> None:
    """ConfigError if ``generator`` cannot send ``family``'s frames (live frames: IPv4 only)."""
    if family == "ipv6" and generator not in ("auto", *IPV6_GENERATORS):
        raise ConfigError(
            f"--generator {generator}: livegen writes IPv4 headers, IPv6 frames go out over "
            "AF_PACKET; fix: --generator auto or af-packet, or --family ipv4"
        )


def pick_generator(generator: str, family: Family) -> EngineChoice:
    """The frame generator for ``family``: :func:`dsrconform.features.pick_engine` over
    :data:`GENERATORS` for IPv4; for IPv6 AF_PACKET only (livegen writes IPv4 headers), with
    that said as why live frames were passed over, and ConfigError if they were forced."""
    if family == "ipv4":
        return pick_engine(generator, GENERATORS, what="bench mux generator")
    check_generator(generator, family)
    choice = pick_engine(generator, IPV6_GENERATORS, what="bench mux generator (IPv6)")
    if generator == "auto":
        why = (("live-frames", "livegen writes IPv4 headers only"),)
        choice = EngineChoice(choice.engine, why + choice.passed_over)
    return choice


def run_bench(
    target_name: str = "reference",
    mutant: str | None = None,
    seconds: float = 3.0,
    *,
    dut: Literal["target", "reflector"] = "target",
    progress: ProgressFn | None = None,
    rounds: int = ROUNDS,
    generator: str = "auto",
    family: Family = "ipv4",
) -> dict[str, Any]:
    """Run the four cases in one address family and return the results as a JSON-ready dict.

    ``family``: ``ipv4`` (VIP :data:`VIP`, 64-byte frames) or ``ipv6`` (VIP :data:`VIP6`,
    74-byte frames, the AF_PACKET generator); the summary names it. The caller decides whether
    the target serves the family (:func:`bench_families`).

    ``generator``: ``auto`` (the best of :data:`GENERATORS` this kernel has, by
    :mod:`dsrconform.features`, for the family: :func:`pick_generator`), or one of them forced
    (FeatureUnavailableError if missing). The summary names the generator used and why a better
    one was passed over.

    ``seconds`` is the budget of each case, split into ``rounds`` runs interleaved with the
    other cases (see :func:`schedule`). ``dut="reflector"`` runs the reflector where the
    target's MUX would be (no target is loaded): a check of the harness itself.
    ``progress(case_name, fraction)`` is called after every generator chunk.
    """
    if not 0 < seconds <= MAX_SECONDS:
        raise ConfigError(f"--seconds {seconds}: expected a duration in (0, {MAX_SECONDS:g}]")
    if not 1 <= rounds <= MAX_ROUNDS:
        raise ConfigError(f"rounds {rounds}: expected 1..{MAX_ROUNDS}")
    if family not in BENCH_FAMILIES:
        raise ConfigError(f"family {family!r}: choose from {', '.join(BENCH_FAMILIES)}")
    bench = BENCH_FAMILIES[family]
    choice = pick_generator(generator, family)
    target = bench_target(target_name, mutant) if dut == "target" else None
    per_case: dict[str, list[CaseResult]] = {f"{d}-{m}": [] for d, m in CASES}
    progs = load_programs()
    try:
        with _lab() as lab:
            mux = _mux_factory(target, lab, bench) if target is not None else None
            for case_dut, mode in schedule(rounds):
                name = f"{case_dut}-{mode}"
                done = len(per_case[name])

                def tick(fraction: float, name: str = name, done: int = done) -> None:
                    if progress is not None:
                        progress(name, (done + fraction) / rounds)

                share = seconds / rounds
                result = _run_round(
                    lab, progs, case_dut, mode, mux, share, tick, choice.engine, bench
                )
                per_case[name].append(result)
    finally:
        progs.close()
    results = {name: CaseResult.combine(runs) for name, runs in per_case.items()}
    summary = _summary(target_name, mutant, dut, seconds, rounds, results, bench)
    summary["generator"] = choice.engine
    summary["generator_passed_over"] = choice.why
    if choice.engine != "live-frames":
        summary["warnings"].append(
            f"generator {choice.engine} ({choice.why}): it submits fewer frames per second than "
            "the reflector forwards, so a ratio near 1 says the MUX kept up with that rate, not "
            "that it matches the reflector's capacity"
        )
    return summary


def _summary(
    target_name: str,
    mutant: str | None,
    dut: str,
    seconds: float,
    rounds: int,
    results: dict[str, CaseResult],
    bench: BenchFamily = BENCH_FAMILIES["ipv4"],
) -> dict[str, Any]:
    ratios: dict[str, float | None] = {}
    extra_ns: dict[str, float | None] = {}
    for mode in ("syn", "established"):
        base, mux = results[f"reflector-{mode}"].pps, results[f"mux-{mode}"].pps
        ratios[mode] = mux / base if base > 0 else None
        # The pipeline is one core: time per packet adds up, so this is what the MUX costs.
        extra_ns[mode] = 1e9 / mux - 1e9 / base if base > 0 and mux > 0 else None
    return {
        "target": target_name,
        "mutant": mutant,
        "dut": dut,
        "seconds_per_case": seconds,
        "rounds": rounds,
        "kernel": platform.release(),
        "family": bench.family,
        "frame_bytes": bench.frame_bytes,
        "established_flows": ESTABLISHED_FLOWS,
        "vip": asdict(bench.vip),
        "backends": list(bench.backends),
        "cases": {name: r.as_dict() for name, r in results.items()},
        "ratios": ratios,
        "mux_extra_ns_per_packet": extra_ns,
        "target_ratio": TARGET_RATIO,
        "meets_target": all(r is not None and r >= TARGET_RATIO for r in ratios.values()),
        "warnings": _warnings(),
    }


def _warnings() -> list[str]:
    """Machine settings that make the figures incomparable with the reference figures."""
    warnings = []
    try:
        stats = Path("/proc/sys/kernel/bpf_stats_enabled").read_text().strip()
    except OSError:
        stats = "0"
    if stats != "0":
        # Measured here: the reflector fell from ~3.9 to ~2.0 M packets/s with stats on.
        warnings.append(
            "kernel.bpf_stats_enabled=1: every BPF program run is timed, which roughly halves "
            "these rates; set it to 0 for comparable figures"
        )
    return warnings


# --- CLI -------------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    """``dsrconform bench mux``: :func:`dsrconform.bench.muxreport.main` (tables and JSON)."""
    from dsrconform.bench.muxreport import main as report_main

    return report_main(args)
