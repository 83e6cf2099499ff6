"""Packet evidence for FAIL verdicts: captures that run with a scenario, windows cut from them.

A verdict's evidence (:class:`~dsrconform.invariants.verdict.Evidence`) names flows, tap records,
links and times, aggregates of what the taps saw; a reader wants the packets. While a scenario
runs, :func:`start_captures` keeps a bounded :class:`~dsrconform.observe.pcap.PacketCapture` on
the links a FAIL is about:

- each traffic client's uplink, at the client's end: the requests as sent and the DSR replies
  as received;
- each MUX's link to the router, at the router's end: the VIP traffic the MUX received and the
  packets it sent back (encapsulated or rewritten), as the rest of the lab saw them. The
  router's end, because a MUX that answers with XDP (``XDP_TX``) hides both from a capture on
  its own interface; and packets the router then drops (a bad outer checksum) are still there.

Every capture keeps :data:`SNAPLEN` bytes of each packet in a ring of :data:`RING_FILES` files
of :data:`RING_FILE_MB` million bytes, ends by itself after ``max_seconds``, and its filter
(:func:`capture_filter`) leaves out the SYN floods' spoofed packets (source in
:data:`~dsrconform.traffic.synflood.FLOOD_NET` or ``FLOOD_NET6``, on the outer header or the
encapsulated one): at 60-130k packets/s, copying them to tcpdump would take the CPU the flood
and the MUX need. The kernel still runs the filter on them; nothing reaches user space. And
tcpdump takes what passes a block at a time (:class:`BatchedCapture`), not with a wake-up per
packet.

After the scenario, for each FAIL verdict, :func:`cut_evidence` cuts one small pcap file per
capture: the packets of the evidence's flows (:func:`evidence_flows`, at most ``max_flows``)
within the evidence's times (:func:`evidence_window`, widened by ``margin`` and capped at
``max_seconds``), and returns them as report :class:`~dsrconform.report.model.Attachment` rows.
A window that may be missing packets (the ring overwrote them, the kernel dropped some, the
capture did not cover it) says so in its note. The ring files stay in the lab's run directory
until the lab is torn down; cut windows before.

The helpers that read evidence (:func:`parse_ends`, :func:`evidence_flows`,
:func:`evidence_window`) are pure: no lab, no clock, no files.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import time
from collections.abc import Collection, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsrconform.errors import ConfigError
from dsrconform.observe.history import hostport
from dsrconform.observe.pcap import NS_PREFIX, ClientEnd, PacketCapture
from dsrconform.observe.taps import GUE_PORT, PROTO_NAMES
from dsrconform.traffic.synflood import FLOOD_NET, FLOOD_NET6

if TYPE_CHECKING:
    from dsrconform.invariants.verdict import Evidence, Verdict
    from dsrconform.lab.protocol import RunningLab
    from dsrconform.report.model import Attachment

__all__ = [
    "BLOCK_SECONDS",
    "RING_FILES",
    "RING_FILE_MB",
    "SNAPLEN",
    "BatchedCapture",
    "Window",
    "capture_filter",
    "capture_label",
    "capture_summary",
    "cut_evidence",
    "evidence_flows",
    "evidence_window",
    "parse_ends",
    "start_captures",
]

SNAPLEN = 256
"""Bytes kept of each packet: Ethernet, outer IP, encapsulated IP, TCP with options, some
payload."""
RING_FILES = 4
RING_FILE_MB = 4
"""A ring of RING_FILES files of RING_FILE_MB million bytes each: 16 MB per capture at most."""
DEFAULT_MAX_SECONDS = 120.0
"""A capture's running time when the caller gives none (the steady run gives its own)."""
_PROTOS = {name: number for number, name in PROTO_NAMES.items()}
_dirs = itertools.count()


BLOCK_SECONDS = 1.0
"""How long tcpdump's kernel ring may hold packets before handing them over, when not in
immediate mode (tcpdump's buffer timeout): at most this much before a capture stops may be
missing from its files."""


# --- capturing ---------------------------------------------------------------------------------


class BatchedCapture(PacketCapture):
    """A :class:`PacketCapture` whose tcpdump takes packets from the kernel a block at a time
    and writes them through its stdio buffer (no ``--immediate-mode``, no ``-U``): a wake-up
    and a write per block, not per packet. Measured on the suites' flood scenario: the client
    capture's tcpdump used 0.06 s of CPU instead of 1.3 s. The price: packets of the last
    :data:`BLOCK_SECONDS` before the capture stops may not reach the files (a window that
    reaches that far says so, see :func:`cut_evidence`); the files are complete only once it
    stopped."""

    def argv(self) -> list[str]:
        return [a for a in super().argv() if a not in ("-U", "--immediate-mode")]


def _ip6_prefix_test(offset: int, net: ipaddress.IPv6Network) -> str:
    """A tcpdump test that the IPv6 address at ``ip6[offset]`` is in ``net`` (32 bits a word:
    tcpdump loads at most 4 bytes at a time)."""
    value, tests = int(net.network_address), []
    for bit in range(0, net.prefixlen, 32):
        width = min(32, net.prefixlen - bit)
        mask = ((1 << width) - 1) << (32 - width)
        word = (value >> (96 - bit)) & 0xFFFFFFFF
        tests.append(f"ip6[{offset + bit // 8}:4] & {mask:#x} = {word & mask:#x}")
    return " and ".join(tests) or "1 = 1"


def capture_filter(flood_net: str = FLOOD_NET, flood_net6: str = FLOOD_NET6) -> str:
    """The tcpdump filter of an evidence capture: every packet except the SYN floods', whose
    spoofed sources are in ``flood_net`` (IPv4) or ``flood_net6`` (IPv6), on the outer header
    (the SYNs, and anything sent to those sources) or on the encapsulated one, IP-in-IP of
    either family or GUE (the SYNs a MUX passes on). Encapsulated IPv6 is recognised directly
    after its outer header (no extension headers between: the MUXes add none)."""
    net = ipaddress.IPv4Network(flood_net)
    net6 = ipaddress.IPv6Network(flood_net6)
    base, mask = int(net.network_address), int(net.netmask)
    inner_src = "ip[(ip[0] & 0xf) * 4 + 12:4]"  # the IPIP-encapsulated header's source address
    gue_src = "ip[(ip[0] & 0xf) * 4 + 20:4]"  # the GUE-encapsulated one's (after 8 bytes of UDP)
    v4_in_v6, gue4_in_v6 = "ip6[52:4]", "ip6[60:4]"  # IPv4 source after 40 (+ 8 UDP) bytes
    return (
        f"not net {net} and not (ip proto 4 and {inner_src} & {mask:#x} = {base:#x})"
        f" and not (udp dst port {GUE_PORT} and {gue_src} & {mask:#x} = {base:#x})"
        f" and not net {net6}"
        f" and not (ip6 proto 41 and {_ip6_prefix_test(48, net6)})"
        f" and not (ip6 proto 4 and {v4_in_v6} & {mask:#x} = {base:#x})"
        f" and not (ip6 and udp dst port {GUE_PORT} and ({_ip6_prefix_test(56, net6)}"
        f" or {gue4_in_v6} & {mask:#x} = {base:#x}))"
    )


def _evidence_links(topo: Any, mux_links: bool = True) -> list[tuple[str, str]]:
    """(node, peer) of every captured link: each traffic client toward the router, and (with
    ``mux_links``) the router toward each MUX (see the module doc)."""
    # As dsrconform.chaos.traffic.traffic_clients (not imported: that module imports this).
    clients = [n for n, node in topo.nodes.items() if node.role == "client" and node.traffic]
    muxes = [(topo.router, m) for m in topo.of_role("mux")] if mux_links else []
    return [(c, topo.router) for c in clients] + muxes


def start_captures(
    lab: RunningLab,
    stack: ExitStack,
    *,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    directory: Path | None = None,
    flood_net: str = FLOOD_NET,
    mux_links: bool = True,
) -> list[PacketCapture]:
    """Start the evidence captures of a running :class:`dsrconform.lab.Lab` (see the module
    doc for the links and bounds), each listening when this returns, each stopped (its files
    kept) when ``stack`` closes. ``max_seconds``: how long each may run at most, the scenario's
    deadline and a margin. Files go to a new directory under ``directory`` (default: the lab's
    ``pcap`` directory, removed with the lab). Without ``mux_links``, the clients' links only:
    a scenario whose SYN flood crosses the MUX links spares them even the filter's cost (the
    flood's delivered rate decides SF-1..SF-4, with little margin on 2 CPUs). A capture that
    cannot start raises (LabError,
    ToolMissingError, ConfigError) after stopping those already started."""
    parent = directory if directory is not None else Path(lab.dir) / "pcap"
    where = parent / f"evidence-{next(_dirs)}"
    while where.exists():  # another run's in this lab: a fresh directory, never shared
        where = parent / f"evidence-{next(_dirs)}"
    captures: list[PacketCapture] = []
    with ExitStack() as started:  # all or none: a failure stops those already listening
        for node, peer in _evidence_links(lab.topology, mux_links):
            cap = BatchedCapture(
                lab.netns(node),
                lab.topology.uplink(node, peer).ifname,
                where,
                name=f"{node}-to-{peer}",
                snaplen=SNAPLEN,
                file_mb=RING_FILE_MB,
                files=RING_FILES,
                max_seconds=max_seconds,
                bpf_filter=capture_filter(flood_net),
            )
            captures.append(started.enter_context(cap))
        stack.push(started.pop_all())
    return captures


def capture_label(cap: PacketCapture) -> str:
    """``node:ifname`` of a capture (its namespace's node name: ``dsrc-<lab>.<node>``)."""
    node = cap.netns.removeprefix(NS_PREFIX).rpartition(".")[2] or cap.netns
    return f"{node}:{cap.ifname}"


def capture_summary(captures: Iterable[PacketCapture]) -> dict[str, dict[str, Any]]:
    """Per capture (:func:`capture_label`), after it stopped: packets captured, dropped by the
    kernel, the bytes its ring files hold, and whether it ended by its own time bound."""
    out: dict[str, dict[str, Any]] = {}
    for cap in captures:
        out[capture_label(cap)] = {
            "captured": cap.stats.captured,
            "dropped_by_kernel": cap.stats.dropped_by_kernel,
            "ring_bytes": sum(f.stat().st_size for f in cap.ring_files()),
            "timed_out": cap.stats.timed_out,
        }
    return out


# --- reading evidence --------------------------------------------------------------------------

_ADDR = r"\d{1,3}(?:\.\d{1,3}){3}"
_ADDR6 = r"[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}"
_END = rf"(?:\[({_ADDR6})\]:(\d{{1,5}})|({_ADDR6})(?![:\w])|({_ADDR})(?::(\d{{1,5}}))?)"
"""An end: ``[v6]:port``, a bare IPv6 address, or ``v4[:port]`` (see history.hostport)."""
_PROTO = r"\b(tcp|udp|icmp6|icmp|ipip|ip6|proto \d+)\s+(?:client\s+)?"
_TUPLE = re.compile(rf"{_PROTO}{_END}(?:\s*(?:>|->)\s*{_END})?")
"""``proto src[:port] [> or -> dst[:port]]``, as flow texts and tap records describe packets."""
_INNER = re.compile(r"\s*\[inner ")


def _end(groups: Sequence[str | None]) -> tuple[str, int | None] | None:
    """(address, port) from one :data:`_END` match's groups (None: that end is absent);
    ValueError when the address is none."""
    bracketed, bport, bare6, v4, v4port = groups
    if bracketed is not None:
        return str(ipaddress.IPv6Address(bracketed)), int(bport or 0)
    if bare6 is not None:
        return str(ipaddress.IPv6Address(bare6)), None
    if v4 is not None:
        return str(ipaddress.IPv4Address(v4)), int(v4port) if v4port else None
    return None


def parse_ends(
    text: str, *, first_is_client: bool = False, clients: Collection[str] = ()
) -> list[ClientEnd]:
    """The client ends of the flows named in ``text`` (an evidence ``flow`` or ``packet``), in
    order, without repeats. Every ``proto src:port > dst:port`` in it counts (an encapsulated
    packet's ``[inner ...]``, an ICMP error's ``about ...``) but a GUE packet's outer UDP header;
    headers with ports are preferred to those without (the outer header of an encapsulated
    packet is the MUX's, not the flow's). Which
    end is the client's: the one whose address is in ``clients`` (the lab's client addresses,
    when known); else the source when ``first_is_client`` (a flow as the traffic saw it);
    else the end with the higher port (a client's ephemeral port against a service's), the
    source on a tie."""
    with_ports: list[ClientEnd] = []
    bare: list[ClientEnd] = []
    for m in _TUPLE.finditer(text):
        proto_text, groups = m.group(1), m.groups()[1:]
        proto = _PROTOS.get(proto_text, int(proto_text.split()[-1]) if " " in proto_text else 0)
        try:
            ends = [e for e in (_end(groups[:5]), _end(groups[5:])) if e is not None]
        except ValueError:
            continue  # not an address after all (999.1.2.3)
        if not ends:
            continue
        if (
            proto == 17
            and len(ends) == 2
            and ends[1][1] == GUE_PORT
            and _INNER.match(text, m.end())
        ):
            continue  # a GUE packet's outer header: the MUX's, its port a hash (the flow's inside)
        chosen = next((e for e in ends if e[0] in clients), None)
        if chosen is None and (first_is_client or len(ends) == 1):
            chosen = ends[0]
        elif chosen is None:
            chosen = max(ends, key=lambda e: e[1] or 0)  # max keeps the first on a tie
        if chosen[1] is not None and chosen[1] > 65535:
            continue
        has_ports = any(port is not None for _, port in ends)
        end = ClientEnd(chosen[0], chosen[1], proto if chosen[1] is not None else None)
        target = with_ports if has_ports else bare
        if end not in target:
            target.append(end)
    return with_ports or bare


def evidence_flows(
    evidence: Iterable[Evidence], *, max_flows: int = 8, clients: Collection[str] = ()
) -> list[ClientEnd]:
    """The client ends of the flows the evidence names (its ``flow`` text, the client's end
    first; else its ``packet`` text), in evidence order, without repeats, at most
    ``max_flows``. Empty when no evidence names a flow."""
    out: list[ClientEnd] = []
    for e in evidence:
        ends = parse_ends(e.flow, first_is_client=True, clients=clients) if e.flow else []
        if not ends and e.packet:
            ends = parse_ends(e.packet, clients=clients)
        for end in ends:
            if end not in out:
                out.append(end)
            if len(out) >= max_flows:
                return out
    return out


@dataclass(frozen=True)
class Window:
    """The time window evidence points at (``time.monotonic()`` seconds)."""

    t0: float
    t1: float
    capped: bool = False
    """The evidence spans longer than the cap: the window is its first ``max_seconds``."""


def evidence_window(
    evidence: Iterable[Evidence], *, margin: float = 0.5, max_seconds: float = 10.0
) -> Window | None:
    """``[earliest time - margin, latest until (or time) + margin]`` of the evidence that has
    times, ending at most ``max_seconds`` after its start (the first evidence's time - margin);
    None when no evidence has a time (the caller uses the captures' whole span)."""
    if margin < 0 or max_seconds <= 0:
        raise ConfigError(f"evidence window: margin {margin} must be >= 0, max_seconds > 0")
    starts: list[float] = []
    ends: list[float] = []
    for e in evidence:
        if e.time is None and e.until is None:
            continue
        start = e.time if e.time is not None else e.until
        end = e.until if e.until is not None else e.time
        assert start is not None and end is not None
        starts.append(min(start, end))
        ends.append(max(start, end))
    if not starts:
        return None
    t0 = min(starts) - margin
    t1 = max(ends) + margin
    cap = t0 + max_seconds
    return Window(t0, min(t1, cap), capped=t1 > cap)


# --- cutting -------------------------------------------------------------------------------------


def _file_part(text: str) -> str:
    """``text`` safe as (part of) a file name, and as a relative link (no ':' that reads as a
    URL scheme)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"


def cut_evidence(
    captures: Sequence[PacketCapture],
    verdict: Verdict,
    out_dir: Path,
    results_dir: Path,
    *,
    margin: float = 0.5,
    max_seconds: float = 10.0,
    max_flows: int = 8,
    origin: float | None = None,
    clients: Collection[str] = (),
) -> list[Attachment]:
    """Cut the packet evidence of a FAIL ``verdict`` from ``captures`` (stopped ones: a running
    capture's last packets may still be buffered) into ``out_dir``.

    The window is :func:`evidence_window` of the verdict's evidence (each capture's whole span
    when no evidence has a time); the packets are those of :func:`evidence_flows` (every packet
    of the window when the evidence names no flow; nothing at all when it names neither a flow
    nor a time: that would be the whole capture). One file per capture that has packets in the
    window, ``<out_dir>/<REQ>-<node>-<ifname>.pcap``, each returned as an ``Attachment`` of kind
    ``pcap`` for the requirement, its path relative to ``results_dir`` (which must contain
    ``out_dir``), named with the capture and the window's times (seconds after ``origin``,
    default the earliest capture start), its note saying how many packets, which flows, and,
    when the window is not complete, why. Empty windows are deleted and not returned. Not a
    FAIL: nothing. Raises ConfigError for bad bounds, LabError for a capture never started,
    PcapError / OSError for unreadable files; ConfigError for an ``out_dir`` outside
    ``results_dir``."""
    from dsrconform.invariants.verdict import Status
    from dsrconform.report.model import Attachment

    if verdict.status != Status.FAIL or not captures:
        return []
    if max_flows < 1:
        raise ConfigError(f"evidence: max_flows must be >= 1, got {max_flows}")
    results_dir = Path(results_dir)
    out_dir = Path(out_dir)
    if not out_dir.is_relative_to(results_dir):
        raise ConfigError(f"evidence directory {out_dir} is not inside {results_dir}")
    window = evidence_window(verdict.evidence, margin=margin, max_seconds=max_seconds)
    flows = evidence_flows(verdict.evidence, max_flows=max_flows, clients=clients)
    if window is None and not flows:
        return []
    started = [c.started for c in captures if c.started is not None]
    zero = origin if origin is not None else min(started, default=0.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    req = verdict.requirement
    attachments: list[Attachment] = []
    for cap in captures:
        label = capture_label(cap)
        if window is not None:
            t0, t1 = window.t0, window.t1
        else:
            if cap.started is None:
                continue  # never listened: no span
            t0 = cap.started
            t1 = cap.stopped if cap.stopped is not None else time.monotonic()
        path = out_dir / f"{_file_part(req)}-{_file_part(label)}.pcap"
        for n in itertools.count(2):  # a second FAIL of the requirement in one test
            if not path.exists():
                break
            path = out_dir / f"{_file_part(req)}-{_file_part(label)}-{n}.pcap"
        w = cap.window(t0, t1, path, flows=flows)
        if w.packets == 0:
            path.unlink(missing_ok=True)
            continue
        note = [f"{w.packets} packets"]
        if flows:
            shown = ", ".join(_describe_end(f) for f in flows)
            note.append(f"flows of {shown}")
        else:
            note.append("every packet (the evidence names no flow)")
        if window is not None and window.capped:
            note.append(f"the first {max_seconds:g} s of the evidence")
        gaps = list(w.gaps)
        stopped = cap.stopped if isinstance(cap, BatchedCapture) else None
        if stopped is not None and t1 > stopped - BLOCK_SECONDS:
            gaps.append(
                f"the capture stopped at {stopped - zero:.1f} s; its last {BLOCK_SECONDS:g} s "
                "may be missing"
            )
        if gaps:
            note.append("incomplete: " + "; ".join(gaps))
        attachments.append(
            Attachment(
                name=f"{req} evidence on {label}, {t0 - zero:.1f}-{t1 - zero:.1f} s",
                path=path.relative_to(results_dir).as_posix(),
                kind="pcap",
                requirement=req,
                note="; ".join(note),
            )
        )
    return attachments


def _describe_end(end: ClientEnd) -> str:
    name = "" if end.proto is None or end.proto == 4 else PROTO_NAMES.get(end.proto, "")
    where = hostport(end.addr, end.port)
    return f"{name} {where}".strip()


def attach_evidence(
    run: Any,
    failed: Sequence[Verdict],
    run_dir: Path,
    results_dir: Path,
    test_name: str,
) -> tuple[list[Attachment], list[str]]:
    """The attachments of a test's FAIL verdicts (``failed``) judged on scenario run ``run``
    (a :class:`~dsrconform.chaos.traffic.SteadyRun`) saved in ``run_dir``: its captures' windows cut
    into ``<run_dir>/evidence/<test name>/`` (:func:`cut_evidence`), and the warnings to show.
    Nothing when the run had no captures asked for. A verdict whose windows cannot be cut, or
    whose run's captures never started, gets ``<REQ>-error.txt`` saying why, attached as text
    (the verdict stands); if even that cannot be written, a warning says so."""
    not_started = run.counts.get("captures", {}).get("error")
    if not run.captures and not_started is None:
        return [], []  # captures were not asked for
    out_dir = run_dir / "evidence" / _file_part(test_name)
    lab = run.observations.lab
    clients = [a for n in lab.nodes("client") for a in lab.addresses.get(n, [])] if lab else []
    attached: list[Attachment] = []
    warnings: list[str] = []
    for v in failed:
        if not run.captures:
            why = f"the scenario's packet captures did not start: {not_started}"
        else:
            try:
                attached += cut_evidence(
                    run.captures, v, out_dir, results_dir, origin=run.started, clients=clients
                )
                continue
            except Exception as e:  # the verdict stands; the reader learns why it has no packets
                why = f"{type(e).__name__}: {e}"
        try:
            attached.append(_error_attachment(v.requirement, out_dir, results_dir, why))
        except OSError as e:
            warnings.append(f"{v.requirement}: no pcap evidence: {why} (and writing why: {e})")
    return attached, warnings


def _error_attachment(requirement: str, out_dir: Path, results_dir: Path, why: str) -> Attachment:
    """``<out_dir>/<REQ>-error.txt`` saying why a FAIL has no pcap evidence, as an attachment."""
    from dsrconform.report.model import Attachment, one_line

    text = f"{requirement}: no pcap evidence: {why}"
    path = out_dir / f"{_file_part(requirement)}-error.txt"
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return Attachment(
        name=f"{requirement}: why there is no pcap evidence",
        path=path.relative_to(results_dir).as_posix(),
        kind="text",
        requirement=requirement,
        note=one_line(text, 200),
    )
