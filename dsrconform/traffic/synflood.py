"""Spoofed TCP SYN flood toward a VIP: the fault of the SF requirements (SPEC.md SF-1..SF-4).

Every frame is 64 bytes: Ethernet, IPv4 (no options, DF, TTL 64, total length 40), TCP SYN (no
options, sequence 1, window 65535) to ``vip:port``, from a source in ``src_net`` (default
198.18.200.0/21, the range the lab's border router black-holes, so nothing answers the spoofed
sources). Flow ``n`` has source address ``net + n % size(net)`` and source port
``1024 + (n // size(net)) % 64512``: a new 5-tuple per packet for ~132 M packets with the /21.

Three engines send the frames out of one interface of a lab namespace, the best this kernel has
first (:mod:`dsrconform.features` probes each; ``engine="auto"`` takes the best that works):

``live-frames``
    ``BPF_PROG_TEST_RUN`` with ``BPF_F_TEST_XDP_LIVE_FRAMES`` runs ``livegen.bpf.c`` (the
    generator of ``dsrconform bench mux``, configured with the flood's source range): the kernel
    builds each frame from the template, the program writes its source and patches the
    checksums, and XDP_TX sends it. Every test run ends with ~20-40 ms of waiting in the kernel
    whatever its size (the page pool's teardown), so two threads pinned to the same CPU take
    turns (:data:`LIVE_THREADS`). A veth delivers live frames only if its peer has NAPI (native
    XDP, or GRO on: ``peer=``); otherwise they vanish without a counter moving
    (docs/kernel.md, "XDP on veth").
``af-packet``
    An ``AF_PACKET`` raw socket with ``PACKET_QDISC_BYPASS``, sending a pool of prebuilt frames
    (:data:`POOL_FRAMES` of them) with ``sendmmsg(2)`` through ctypes; each time the pool has
    gone out it is rewritten in place as the next flows (:class:`FlowRounds`), so this engine too
    sends a new flow per packet. Slower, but works on any interface whose peer is a plain veth.
``trafgen``
    netsniff-ng's trafgen (:mod:`dsrconform.traffic.trafgen`), one worker, paced with
    ``--rate``: the last resort where neither of the others works.

Measured here (2 vCPU, kernel 6.18, one CPU for the flood): into a veth whose peer counts and
drops (native XDP), ~5.2 M packets/s flat out with live frames, ~0.65 M/s with AF_PACKET
(trafgen, same harness: ~0.55 M/s; ``dsrconform bench traffic``). Paced runs land within ~1%
of the rate asked. Into ``labs/basic.yaml`` from the client (GRO on at the router's end), the
router's forwarding on one core is the limit: ~135-160 k SYN/s delivered with live frames, ~100 k
with AF_PACKET (live frames are processed synchronously, in the flood's own softirqs).

``engine="auto"`` detects rather than assumes: it sends a probe of :data:`PROBE_FRAMES` live
frames and keeps that engine only if the kernel accepted the test run and the peer's queue took
the probe (the sender's ethtool counter ``tx_queue_*_xdp_xmit``; a veth without NAPI on the
other end drops live frames without counting them anywhere); otherwise it falls back to
AF_PACKET and says why (:attr:`FloodResult.fallback_reason`). A forced engine that cannot work
raises.

Bounded: ``count`` packets and ``duration`` seconds, whichever comes first (both required).
``rate`` paces the flood in bursts (one test run or one ``sendmmsg`` per ~:data:`TICK` s) against
``time.monotonic()``; ``None`` sends as fast as the engine goes. A paced flood that falls behind
catches up in test runs of about :data:`PACED_CHUNK_SECONDS` at most, by the speed the last run
went, none reaching past the deadline (unbounded, one run of 340 k frames went on 3 s past its
flood's end, into the backend change meant to follow it). ``progress`` gets the share done as
the flood goes, and 1.0 once, when the last run returned: the flood is over. The result
reports what was submitted, what the interface's counters say the peer took in, and the
matching fault-timeline entry (:meth:`FloodResult.fault_window`)::

    from dsrconform.traffic.synflood import flood, lab_flood

    res = flood("dsrc-basic.client", "dsrc-router", dst_mac=router_mac, vip="198.19.0.10",
                port=80, rate=100_000, count=1_000_000, duration=10)
    print(res.engine, res.pps, res.delivered_pps)
    faults.append(res.fault_window())
    res = lab_flood(lab, vip="198.19.0.10", port=80, rate=200_000, count=2_000_000, duration=10)

An IPv6 VIP gets an IPv6 flood (74-byte frames from :data:`FLOOD_NET6`, 2001:2:0:200::/56),
sent by the AF_PACKET engine only (:mod:`dsrconform.traffic.flood6`).

Safety: only namespaces and interfaces named ``dsrc-...`` (never the host's), only addresses in
198.18.0.0/15 or 2001:2::/48 (:func:`check_flood_args`).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import ipaddress
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from scapy.utils import checksum  # the Internet checksum (RFC 1071)

from dsrconform.errors import BpfError, ConfigError, DsrConformError, LabError
from dsrconform.features import FLOOD_ENGINES, pick_engine
from dsrconform.traffic import flood6

if TYPE_CHECKING:
    from dsrconform.bpf.libbpf import BpfObject
    from dsrconform.lab.protocol import LabNodes
    from dsrconform.observe.observations import FaultWindow

Engine = Literal["live-frames", "af-packet", "trafgen"]
EngineChoice = Literal["auto", "live-frames", "af-packet", "trafgen"]
ENGINES: tuple[EngineChoice, ...] = ("auto", "live-frames", "af-packet", "trafgen")

FLOOD_NET = "198.18.200.0/21"
FLOOD_NET6 = "2001:2:0:200::/56"
"""The IPv6 flood's spoofed sources (issue 18's address plan), black-holed at the router."""
LAB_NET = ipaddress.IPv4Network("198.18.0.0/15")
LAB_NET6 = ipaddress.IPv6Network("2001:2::/48")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
NAME_PREFIX = "dsrc-"
FRAME_LEN = 64
SPORT_BASE = 1024
SPORT_SPAN = 65536 - SPORT_BASE
TCP_SYN = 0x02

MAX_COUNT = 10_000_000_000
MAX_SECONDS = 3600.0
TICK = 0.002  # paced floods: bursts of at least TICK seconds' worth (and one batch)
CHUNK_SECONDS = 0.03  # unpaced floods: test runs sized to about this long, from the rate seen
PACED_CHUNK_SECONDS = 1.0  # paced floods: test runs of at most about this long
LIVE_BATCH = 64  # frames per live-frames batch (the kernel flushes the veth ring after each)
LIVE_FIRST_CHUNK = 16_384
LIVE_MAX_CHUNK = 1_000_000
# Every live-frames test run ends with ~20-40 ms of waiting in the kernel (measured here: the
# page pool's teardown waits for an RCU grace period), whatever its size. Two threads on the
# same CPU take turns: one sends while the other waits.
LIVE_THREADS = 2
MMSG_MAX = 1024  # UIO_MAXIOV: messages per sendmmsg call
POOL_FRAMES = 65_536  # af-packet: frames prebuilt (rewritten as the next flows each round)
PROBE_FRAMES = 256  # auto: live frames sent to see whether the interface delivers them
MAX_CALLS = 50_000_000  # bound on send calls, whatever the clock says

PROGS_DIR = Path(__file__).resolve().parent.parent / "bpf" / "progs"
_LG_MODE_NEW_FLOWS = 0
_LG_MODE_REPEAT_FLOWS = 1
_SOL_PACKET = 263
_PACKET_QDISC_BYPASS = 20

ProgressFn = Callable[[float], None]
PROGRESS_BELOW_DONE = 0.999  # what a worker reports at most: 1.0 means the flood is over


# --- arguments and frames (pure) -----------------------------------------------------------------


def check_flood_args(
    netns: str | None,
    ifname: str,
    *,
    vip: str,
    port: int,
    src_net: str | None,
    rate: float | None,
    count: int,
    duration: float,
    engine: str = "auto",
    sport_base: int = SPORT_BASE,
    repeat: int = 0,
) -> IPNetwork:
    """ConfigError unless the flood stays in the lab: a ``dsrc-`` namespace and interface,
    addresses in the lab range of the VIP's family (198.18.0.0/15, 2001:2::/48), sources of
    that family (``src_net`` None: :data:`FLOOD_NET` or :data:`FLOOD_NET6`), an engine that
    builds that family's frames (IPv6: AF_PACKET only), and finite bounds. Returns the source
    network."""
    if not netns or not netns.startswith(NAME_PREFIX):
        raise ConfigError(
            f"flood namespace {netns!r}: only a lab namespace (named {NAME_PREFIX}...) may flood"
        )
    if not ifname.startswith(NAME_PREFIX):
        raise ConfigError(
            f"flood interface {ifname!r}: only a lab interface (named {NAME_PREFIX}...) may flood"
        )
    try:
        dst = ipaddress.ip_address(vip)
        net = ipaddress.ip_network(src_net or (FLOOD_NET6 if dst.version == 6 else FLOOD_NET))
    except ValueError as e:
        raise ConfigError(f"flood addresses: {e}") from None
    lab: IPNetwork = LAB_NET6 if dst.version == 6 else LAB_NET
    if net.version != dst.version:
        raise ConfigError(
            f"flood source range {net} is not of the destination {dst}'s family; fix: "
            f"src_net in {FLOOD_NET6 if dst.version == 6 else FLOOD_NET} or omit it"
        )
    if not net.subnet_of(lab):  # type: ignore[arg-type]  # same family, checked above
        raise ConfigError(f"flood source range {net} is outside the lab range {lab}")
    if dst not in lab:
        raise ConfigError(f"flood destination {dst} is outside the lab range {lab}")
    if dst.version == 6 and engine not in ("auto", "af-packet"):
        raise ConfigError(
            f"flood engine {engine!r} builds IPv4 frames only; fix: 'af-packet' or 'auto' for "
            f"the IPv6 VIP {dst}"
        )
    if not 1 <= port <= 65535:
        raise ConfigError(f"flood port {port}: expected 1..65535")
    if not 1 <= count <= MAX_COUNT:
        raise ConfigError(f"flood count {count}: expected 1..{MAX_COUNT}")
    if not 0 < duration <= MAX_SECONDS:
        raise ConfigError(f"flood duration {duration}: expected (0, {MAX_SECONDS:g}] seconds")
    if rate is not None and not 0 < rate <= 1e9:
        raise ConfigError(f"flood rate {rate}: expected a positive packets/s (or None)")
    if engine not in ENGINES:
        raise ConfigError(f"flood engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if not SPORT_BASE <= sport_base <= 65535:
        raise ConfigError(f"flood source port base {sport_base}: expected {SPORT_BASE}..65535")
    if not 0 <= repeat <= min(POOL_FRAMES, net.num_addresses * (65536 - sport_base)):
        raise ConfigError(
            f"flood repeat {repeat}: expected 0 (a new flow per packet) up to "
            f"{min(POOL_FRAMES, net.num_addresses * (65536 - sport_base))} distinct flows"
        )
    return net


def _mac(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ConfigError(f"MAC address {text!r}: expected six bytes, e.g. 02:00:00:00:00:01")
    return raw


def syn_template(dst_mac: str, src_mac: str, vip: str, port: int) -> bytes:
    """The flood's 64-byte frame with source address and port zero, and both checksums computed
    over those zeroes (so adding the real words later is exact: RFC 1624 with old value 0).
    The same shape as ``dsrconform bench mux``'s SYN template."""
    dst_ip = ipaddress.IPv4Address(vip).packed
    eth = _mac(dst_mac) + _mac(src_mac) + struct.pack("!H", 0x0800)
    tcp = struct.pack("!HHIIBBHHH", 0, port, 1, 0, 5 << 4, TCP_SYN, 65535, 0, 0)
    pseudo = bytes(4) + dst_ip + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, bytes(4), dst_ip)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    frame = eth + ip + tcp
    return frame + bytes(FRAME_LEN - len(frame))


def flow_source(
    flow: int, net: IPNetwork, *, sport_base: int = SPORT_BASE, repeat: int = 0
) -> tuple[str, int]:
    """(source address, source port) of packet number ``flow``: what livegen writes. With
    ``repeat`` the same ``repeat`` flows come round again (livegen's repeat mode)."""
    if isinstance(net, ipaddress.IPv6Network):
        return flood6.flow_source6(flow, net, sport_base=sport_base, repeat=repeat)
    if repeat:
        flow %= repeat
    span = net.num_addresses
    addr = int(net.network_address) + flow % span
    return str(ipaddress.IPv4Address(addr)), sport_base + (flow // span) % (65536 - sport_base)


def _csum_add(csum: int, add: int) -> int:
    s = (~csum & 0xFFFF) + add
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def syn_frames(
    template: bytes, net: ipaddress.IPv4Network, first: int, n: int, *,
    sport_base: int = SPORT_BASE,
) -> bytes:  # fmt: skip
    """Frames of flows ``first .. first+n-1``, back to back (``n * 64`` bytes), built as livegen
    builds them: the template with the flow's source written and the checksums patched."""
    base = int(net.network_address)
    span = net.num_addresses
    sport_span = 65536 - sport_base
    ip_check = struct.unpack_from("!H", template, 24)[0]
    tcp_check = struct.unpack_from("!H", template, 50)[0]
    out = bytearray(template * n)
    pack = struct.pack_into
    for i in range(n):
        flow = first + i
        saddr = base + flow % span
        sport = sport_base + (flow // span) % sport_span
        words = (saddr >> 16) + (saddr & 0xFFFF)
        off = i * FRAME_LEN
        pack("!HI", out, off + 24, _csum_add(ip_check, words), saddr)
        pack("!H", out, off + 34, sport)
        pack("!H", out, off + 50, _csum_add(tcp_check, words + sport))
    return bytes(out)


class FlowRounds:
    """Rewrites a pool of :func:`syn_frames` frames (flows ``0 .. size-1``) in place as the next
    ``size`` flows each time it is called: an AF_PACKET flood longer than its pool still sends a
    new 5-tuple per packet, as the other engines do. (A flood that cycles a fixed set of flows
    gets their connection-table entries referenced again, and the kernel's LRU gives referenced
    entries a second chance: a MUX whose flood evicts established flows went unseen.)

    When the pool spans whole rounds of the source range (``size`` a multiple of its address
    count) a round only moves every source port up by ``size / addresses``: two table lookups
    per frame on 16-bit words (~30 ms for 65,536 frames). Otherwise, or when the ports would
    wrap, the pool is rebuilt (~170 ms)."""

    def __init__(
        self,
        template: bytes,
        net: ipaddress.IPv4Network,
        size: int,
        *,
        sport_base: int = SPORT_BASE,
    ) -> None:
        self.template, self.net, self.size, self.sport_base = template, net, size, sport_base
        self.first = 0  # the pool's first flow
        span = net.num_addresses
        self.step = size // span if size % span == 0 else 0  # source ports per round
        self._sport: array[int] | None = None
        self._check: array[int] | None = None
        if self.step:
            # Native 16-bit words of big-endian fields: byte-swapped on little-endian hosts.
            swap = sys.byteorder == "little"

            def be(x: int) -> int:
                return ((x & 0xFF) << 8) | (x >> 8) if swap else x

            words = range(65536)
            self._sport = array("H", (be((be(w) + self.step) & 0xFFFF) for w in words))
            self._check = array("H", (be(_csum_add(be(w), self.step)) for w in words))

    def __call__(self, buf: ctypes.Array[ctypes.c_char]) -> None:
        self.first += self.size
        sport_span = 65536 - self.sport_base
        low = (self.first // self.net.num_addresses) % sport_span  # the round's lowest port
        if (
            self._sport is not None
            and self._check is not None
            and self.step <= low <= sport_span - self.step
        ):
            # The last round's flows with their ports one step up, none wrapping.
            words = memoryview(buf).cast("B").cast("H")
            per = FRAME_LEN // 2
            for off, table in ((34 // 2, self._sport), (50 // 2, self._check)):
                field = words[off : self.size * per : per]
                words[off : self.size * per : per] = array(
                    "H", map(table.__getitem__, field.tolist())
                )
            return
        frames = syn_frames(
            self.template, self.net, self.first, self.size, sport_base=self.sport_base
        )
        ctypes.memmove(buf, frames, len(frames))


def xdp_md(ingress_ifindex: int) -> bytes:
    # struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    return struct.pack("=6I", 0, FRAME_LEN, 0, ingress_ifindex, 0, 0)


class Pacer:
    """A token bucket: ``rate`` packets/s since ``start``, sent in bursts of ``burst`` (the
    first one at once), never past ``count`` nor the deadline. ``rate=None``: no pacing."""

    def __init__(self, rate: float | None, count: int, start: float, deadline: float,
                 burst: int) -> None:  # fmt: skip
        self.rate, self.count, self.start, self.deadline = rate, count, start, deadline
        self.burst = max(1, burst)
        self.sent = 0

    def _need(self) -> int:
        return min(self.burst, self.count - self.sent)

    def allowed(self, now: float) -> int:
        """Packets that may go at ``now``: 0 until a whole burst (or what is left) is due."""
        left = self.count - self.sent
        if self.rate is None:
            return left
        # (+1e-6: 1000/s * 0.05 s is 50 packets, not 49.999...)
        due = int(self.rate * (now - self.start) + 1e-6)
        tokens = min(left, due + self.burst - self.sent)
        return tokens if tokens >= self._need() else 0

    def wait(self, now: float) -> float:
        """Seconds until the next burst is due (0 if it is due now), capped at the deadline."""
        if self.rate is None:
            return 0.0
        due_at = self.start + (self.sent + self._need() - self.burst) / self.rate
        return max(0.0, min(due_at, self.deadline) - now)

    def done(self, now: float) -> bool:
        return self.sent >= self.count or now >= self.deadline


# --- the result ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloodResult:
    """What a flood did. ``packets`` were submitted from ``start`` to ``end`` (monotonic, from
    the first send call to the return of the last: its frames went by then). The ``link_*``
    fields are the sending interface's counter deltas over the flood (None when unreadable):
    on a veth, ``tx_packets`` counts what the peer took in (other traffic on the link
    included), ``tx_dropped`` what it refused; ``xdp_xmit``/``xdp_xmit_errors`` (ethtool's
    ``tx_queue_*_xdp_xmit``) count the live frames the peer's queue accepted and refused (a
    full ring)."""

    engine: Engine
    packets: int
    start: float
    end: float
    vip: str
    port: int
    src_net: str
    netns: str
    ifname: str
    target_rate: float | None
    stopped_by: Literal["count", "deadline", "stop"]
    link_tx_packets: int | None = None
    link_tx_dropped: int | None = None
    link_xdp_xmit: int | None = None
    link_xdp_xmit_errors: int | None = None
    fallback_reason: str | None = None
    distinct_flows: int = 0

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 0.0)

    @property
    def pps(self) -> float:
        """Submitted packets per second."""
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    @property
    def delivered(self) -> int:
        """What reached the peer by the interface's own counters: the live frames its queue
        accepted, or what was submitted minus what the interface dropped (AF_PACKET)."""
        if self.engine == "live-frames" and self.link_xdp_xmit is not None:
            return max(0, min(self.packets, self.link_xdp_xmit))
        dropped = max(0, self.link_tx_dropped or 0)
        return max(0, self.packets - dropped)

    @property
    def delivered_pps(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    def fault_window(self, *, target: str | None = None) -> FaultWindow:
        """The fault-timeline entry of this flood; ``rate`` is the delivered rate."""
        from dsrconform.observe.observations import FaultWindow

        return FaultWindow(
            kind="syn-flood",
            start=self.start,
            end=self.end,
            target=target or self.vip,
            rate=self.delivered_pps,
            vip=self.vip,
            detail={
                "engine": self.engine,
                **({"engine_fallback": self.fallback_reason} if self.fallback_reason else {}),
                "packets": self.packets,
                "submitted_pps": round(self.pps, 1),
                "port": self.port,
                "src_net": self.src_net,
            },
        )

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(seconds=self.seconds, pps=self.pps, delivered=self.delivered,
                 delivered_pps=self.delivered_pps)  # fmt: skip
        return d


# --- system helpers ------------------------------------------------------------------------------


class LinkCounters(NamedTuple):
    """Transmit counters of an interface (see :class:`FloodResult`)."""

    tx_packets: int | None
    tx_dropped: int | None
    xdp_xmit: int | None
    xdp_xmit_errors: int | None

    def __sub__(self, other: LinkCounters) -> LinkCounters:  # type: ignore[override]
        return LinkCounters(*(None if a is None or b is None else a - b
                              for a, b in zip(self, other, strict=True)))  # fmt: skip


def link_stats(netns: str, ifname: str) -> LinkCounters:
    """The transmit counters of ``ifname`` in ``netns`` (None for what is unreadable)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    from dsrconform.netns import enter_netns

    tx = dropped = xmit = xmit_err = None
    try:
        with enter_netns(netns):
            ipr = IPRoute()
        with ipr:
            links = ipr.get_links(ifname=ifname)
        stats = links[0].get_attr("IFLA_STATS64") if links else None
        if stats is not None:
            tx, dropped = int(stats["tx_packets"]), int(stats["tx_dropped"])
    except (OSError, NetlinkError, LabError):
        # Unreadable (the interface is gone): None, which the result reports as unknown and
        # FloodResult.delivered treats as nothing known to be dropped.
        tx = dropped = None
    out = subprocess.run(["ip", "netns", "exec", netns, "ethtool", "-S", ifname],
                         capture_output=True, text=True, check=False)  # fmt: skip
    for line in out.stdout.splitlines():
        name, _, value = line.strip().partition(":")
        if name.startswith("tx_queue_") and value.strip().isdigit():
            if name.endswith("_xdp_xmit"):
                xmit = (xmit or 0) + int(value)
            elif name.endswith("_xdp_xmit_errors"):
                xmit_err = (xmit_err or 0) + int(value)
    return LinkCounters(tx, dropped, xmit, xmit_err)


def _ifindex(netns: str, ifname: str) -> int:
    from dsrconform.netns import enter_netns

    with enter_netns(netns):
        try:
            return socket.if_nametoindex(ifname)
        except OSError:
            raise LabError(f"no interface {ifname!r} in namespace {netns}") from None


@contextmanager
def pinned_cpu(cpu: int | None) -> Iterator[int]:
    """Pin the calling thread to one CPU (livegen's flow sequence is per CPU); yields it."""
    before = os.sched_getaffinity(0)
    chosen = cpu if cpu is not None else min(before)
    os.sched_setaffinity(0, {chosen})
    try:
        yield chosen
    finally:
        os.sched_setaffinity(0, before)


def gro_enabled(netns: str, ifname: str) -> bool | None:
    """Whether ``ifname`` in ``netns`` has GRO on (None: unknown)."""
    out = subprocess.run(["ip", "netns", "exec", netns, "ethtool", "-k", ifname],
                         capture_output=True, text=True, check=False)  # fmt: skip
    for line in out.stdout.splitlines():
        if line.startswith("generic-receive-offload:"):
            return "on" in line.split(":", 1)[1]
    return None


def _set_gro(netns: str, ifname: str, on: bool) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "ethtool", "-K", ifname, "gro",
                    "on" if on else "off"], capture_output=True, check=False)  # fmt: skip


@contextmanager
def peer_napi(peer: tuple[str, str] | None) -> Iterator[None]:
    """GRO on at the peer ``(netns, ifname)`` for the body (restored after): a veth takes
    live-frames XDP_TX only when its peer has NAPI (native XDP or GRO)."""
    if peer is None:
        yield
        return
    ns, ifname = peer
    if not ns.startswith(NAME_PREFIX) or not ifname.startswith(NAME_PREFIX):
        raise ConfigError(f"peer {ns}:{ifname}: only lab namespaces and interfaces (dsrc-...)")
    was = gro_enabled(ns, ifname)
    if was is False:
        _set_gro(ns, ifname, True)
    try:
        yield
    finally:
        if was is False:
            _set_gro(ns, ifname, False)


# --- engines -------------------------------------------------------------------------------------


class LiveFrames:
    """livegen loaded and configured for a flood; close it when done (or use ``with``)."""

    def __init__(self) -> None:
        from dsrconform.bpf.build import compile_bpf
        from dsrconform.bpf.libbpf import BpfObject

        self.obj: BpfObject = BpfObject(compile_bpf(PROGS_DIR / "livegen.bpf.c"))
        self.prog = self.obj.program("dsrc_livegen")

    def configure(self, template: bytes, net: ipaddress.IPv4Network, *,
                  sport_base: int = SPORT_BASE, repeat: int = 0) -> None:  # fmt: skip
        """Template, source range (``repeat``: that many flows over and over, else a new flow
        per packet), and the flow sequence restarted on every CPU."""
        from dsrconform.bpf.libbpf import possible_cpus

        self.obj.map("dsrc_lg_tmpl").update(bytes(4), template)
        mode = _LG_MODE_REPEAT_FLOWS if repeat else _LG_MODE_NEW_FLOWS
        cfg = struct.pack("=6I", mode, repeat, int(net.network_address), net.num_addresses,
                          sport_base, 65536 - sport_base)  # fmt: skip
        self.obj.map("dsrc_lg_cfg").update(bytes(4), cfg)
        self.obj.map("dsrc_lg_seq").update(bytes(4), bytes(8 * possible_cpus()))

    def send(self, template: bytes, ctx: bytes, n: int) -> int:
        """One test run of ``n`` live frames (in the calling thread's namespace); returns n."""
        from dsrconform.bpf.libbpf import BPF_F_TEST_XDP_LIVE_FRAMES

        self.prog.test_run(template, ctx=ctx, repeat=n, flags=BPF_F_TEST_XDP_LIVE_FRAMES,
                           batch_size=LIVE_BATCH)  # fmt: skip
        return n

    def close(self) -> None:
        self.obj.close()

    def __enter__(self) -> LiveFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
_libc.sendmmsg.restype = ctypes.c_int


class PacketSocket:
    """An AF_PACKET socket on ``ifname`` in ``netns`` (qdisc bypassed when the kernel lets it)
    sending a prebuilt pool of frames with sendmmsg(2)."""

    def __init__(
        self,
        netns: str,
        ifname: str,
        frames: bytes,
        next_round: Callable[[ctypes.Array[ctypes.c_char]], None] | None = None,
        frame_len: int = FRAME_LEN,
    ) -> None:
        """``next_round``: called with the frame buffer each time all of it has been sent and
        before any frame is sent again (rewriting it in place; None: the same frames again).
        ``frame_len``: the bytes of each frame in ``frames`` (74 for the IPv6 flood's)."""
        from dsrconform.netns import enter_netns

        with enter_netns(netns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self.sock.bind((ifname, 0))
            self.qdisc_bypass = True
            try:
                self.sock.setsockopt(_SOL_PACKET, _PACKET_QDISC_BYPASS, 1)
            except OSError:
                self.qdisc_bypass = False
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        except BaseException:
            self.sock.close()
            raise
        self.n = len(frames) // frame_len
        self._buf = ctypes.create_string_buffer(frames, len(frames))
        base = ctypes.addressof(self._buf)
        self._iov = (_Iovec * self.n)()
        self._msgs = (_Mmsghdr * self.n)()
        for i in range(self.n):
            self._iov[i].iov_base = base + i * frame_len
            self._iov[i].iov_len = frame_len
            self._msgs[i].msg_hdr.msg_iov = ctypes.addressof(self._iov[i])
            self._msgs[i].msg_hdr.msg_iovlen = 1
        self._next = 0
        self._next_round = next_round

    def send(self, n: int) -> int:
        """Send up to ``n`` frames (one sendmmsg call, at most MMSG_MAX); returns how many."""
        k = min(n, MMSG_MAX, self.n - self._next)
        ptr = ctypes.addressof(self._msgs) + self._next * ctypes.sizeof(_Mmsghdr)
        sent = _libc.sendmmsg(self.sock.fileno(), ptr, k, 0)
        if sent < 0:
            err = ctypes.get_errno()
            if err in (11, 105):  # EAGAIN, ENOBUFS: the device is busy, try again
                return 0
            raise LabError(f"sendmmsg on AF_PACKET socket: {os.strerror(err)}")
        self._next = (self._next + sent) % self.n
        if self._next == 0 and sent > 0 and self._next_round is not None:
            self._next_round(self._buf)  # sendmmsg copied the frames: the buffer is ours again
        return sent

    def close(self) -> None:
        self.sock.close()


# --- the flood -----------------------------------------------------------------------------------


SendFn = Callable[[int], int]
"""``send(n)``: send up to n frames; returns (sent, seconds the frames took or None)."""


class _Runner:
    """Sends through ``send`` from one or more threads until the pacer says done. Each thread
    reserves its packets from the shared pacer under a lock, then sends them."""

    def __init__(self, send: SendFn, pacer: Pacer, *, max_chunk: int, first_chunk: int,
                 duration: float, progress: ProgressFn | None,
                 stop: threading.Event | None = None) -> None:  # fmt: skip
        self.send, self.pacer = send, pacer
        self.max_chunk, self.chunk, self.duration = max_chunk, first_chunk, duration
        self.progress = progress
        self.lock = threading.Lock()
        self.last_end = pacer.start
        self.error: BaseException | None = None
        self.speed: float | None = None  # frames/s of the last call, by the wall clock
        # Set by the caller (or when it is interrupted): the workers finish now.
        self.stop = stop if stop is not None else threading.Event()

    def _take(self) -> tuple[int, float]:
        """(packets reserved, 0) or (0, seconds to wait); (-1, 0) when done."""
        pacer = self.pacer
        with self.lock:
            now = time.monotonic()
            if self.error is not None or self.stop.is_set() or pacer.done(now):
                return -1, 0.0
            n = pacer.allowed(now)
            if n <= 0:
                return 0, pacer.wait(now)
            if pacer.rate is None:
                n = min(n, self.chunk)
            else:
                # Catching up after falling behind: runs of bounded length, none reaching past
                # the deadline at the speed the last run went (by the wall clock).
                speed = min(pacer.rate, self.speed or pacer.rate)
                ahead = min(PACED_CHUNK_SECONDS, max(pacer.deadline - now, 0.0))
                n = min(n, max(pacer.burst, int(speed * ahead)))
            n = min(n, self.max_chunk)
            pacer.sent += n
            return n, 0.0

    def worker(self, enter: Callable[[], contextlib.AbstractContextManager[Any]]) -> None:
        pacer = self.pacer
        try:
            with enter():
                for _ in range(MAX_CALLS):
                    n, wait = self._take()
                    if n < 0:
                        return
                    if n == 0:
                        self.stop.wait(wait)
                        continue
                    t0 = time.monotonic()
                    try:
                        sent = self.send(n)
                    finally:
                        t1 = time.monotonic()
                    with self.lock:
                        pacer.sent -= n - sent
                        # The flood ends when the last call returned. Not by the kernel's own
                        # run time (a test run's duration): it leaves out the time the run was
                        # preempted and the frames' softirq processing; on a loaded machine a
                        # run's frames went over 3-4 times that, and a window ending there was
                        # seconds short.
                        self.last_end = max(self.last_end, t1)
                        if sent > 0:
                            self.speed = sent / max(t1 - t0, 1e-6)
                            if pacer.rate is None:
                                ahead = min(CHUNK_SECONDS, max(pacer.deadline - t1, 0.0))
                                self.chunk = max(LIVE_BATCH, int(self.speed * ahead))
                        done = pacer.sent / pacer.count
                    if self.progress is not None:
                        # 1.0 is reported once, by run(), when the flood is over.
                        share = max(done, (t1 - pacer.start) / self.duration)
                        self.progress(min(PROGRESS_BELOW_DONE, share))
        except BaseException as e:
            with self.lock:
                if self.error is None:
                    self.error = e

    def run(self, enter: Callable[[], contextlib.AbstractContextManager[Any]],
            threads: int = 1) -> float:  # fmt: skip
        """Run ``threads`` workers (each inside ``enter()``); returns when the last call
        returned (the flood's end), having reported progress 1.0. A worker's exception is
        raised here once all have stopped."""
        if threads <= 1:
            self.worker(enter)
        else:
            pool = [threading.Thread(target=self.worker, args=(enter,), name=f"synflood-{i}")
                    for i in range(threads)]  # fmt: skip
            for t in pool:
                t.start()
            try:
                for t in pool:
                    t.join()
            except BaseException:
                # Ctrl-C in the caller: the workers stop after their current call.
                self.stop.set()
                for t in pool:
                    t.join()
                raise
        if self.error is not None:
            raise self.error
        if self.progress is not None:
            self.progress(1.0)
        return self.last_end


def flood(
    netns: str,
    ifname: str,
    *,
    dst_mac: str,
    vip: str,
    port: int = 80,
    count: int,
    duration: float,
    rate: float | None = None,
    src_mac: str | None = None,
    src_net: str | None = None,
    engine: EngineChoice = "auto",
    peer: tuple[str, str] | None = None,
    cpu: int | None = None,
    progress: ProgressFn | None = None,
    live: LiveFrames | None = None,
    sport_base: int = SPORT_BASE,
    repeat: int = 0,
    stop: threading.Event | None = None,
) -> FloodResult:
    """Flood ``vip:port`` with spoofed SYNs out of ``ifname`` in ``netns``; see the module doc.

    ``dst_mac``: the next hop's MAC on that link (e.g. the router's end). ``src_mac``: default
    the interface's own. ``peer``: the other end ``(netns, ifname)``; given, GRO is turned on
    there for the flood (and restored), so a veth delivers live frames. ``cpu``: the one CPU the
    sending thread runs on (default: the lowest allowed). ``live``: a loaded :class:`LiveFrames`
    to reuse across floods. ``sport_base``: the first source port. ``repeat``: send the same
    ``repeat`` flows over and over (repeated probes of fixed 5-tuples) instead of a new flow
    per packet. ``stop``: an event that ends the flood early when set. Returns when ``count``
    packets went, ``duration`` passed or ``stop`` was set. ``src_net``: the spoofed sources
    (default the VIP's family's: :data:`FLOOD_NET`, or :data:`FLOOD_NET6` for an IPv6 VIP,
    which only the AF_PACKET engine floods: :mod:`dsrconform.traffic.flood6`).
    """
    from dsrconform.netns import link_mac

    net = check_flood_args(netns, ifname, vip=vip, port=port, src_net=src_net, rate=rate,
                           count=count, duration=duration, engine=engine,
                           sport_base=sport_base, repeat=repeat)  # fmt: skip
    if isinstance(net, ipaddress.IPv6Network):
        mac = src_mac or link_mac(netns, ifname)
        with pinned_cpu(cpu):
            return _flood6(
                netns,
                ifname,
                dst_mac,
                mac,
                vip,
                port,
                net,
                rate,
                count,
                duration,
                progress,
                sport_base,
                repeat,
                stop,
            )
    space = _FlowSpace(net, sport_base, repeat)
    template = syn_template(dst_mac, src_mac or link_mac(netns, ifname), vip, port)
    ifindex = _ifindex(netns, ifname)
    # The best engine this kernel has, by its probes (dsrconform.features; cached per process):
    # a kernel that refuses live frames goes straight to AF_PACKET, saying why. A forced engine
    # it lacks raises FeatureUnavailableError naming the feature.
    choice = pick_engine(engine, FLOOD_ENGINES)
    fallback = choice.why
    with peer_napi(peer), pinned_cpu(cpu) as chosen:
        if choice.engine == "trafgen":
            return _flood_trafgen(
                netns,
                ifname,
                template,
                space,
                vip,
                port,
                rate,
                count,
                duration,
                progress,
                stop,
                fallback,
            )
        if choice.engine == "live-frames":
            own = live is None
            gen, fallback = (live, None) if live is not None else _load_live(engine)
            try:
                if gen is not None:
                    result, fallback = _flood_live(gen, netns, ifname, ifindex, template, space,
                                                   vip, port, rate, count, duration, engine,
                                                   progress, chosen, stop)  # fmt: skip
                    if result is not None:
                        return result
            finally:
                if own and gen is not None:
                    gen.close()
        pool = repeat or min(count, POOL_FRAMES)
        frames = syn_frames(template, net, 0, pool, sport_base=sport_base)
        rounds = None if repeat else FlowRounds(template, net, pool, sport_base=sport_base)
        sock = PacketSocket(netns, ifname, frames, next_round=rounds)
        return _af_packet_flood(
            sock,
            pool,
            rounds is not None,
            vip,
            port,
            net,
            netns,
            ifname,
            rate,
            count,
            duration,
            progress,
            fallback,
            stop,
        )


def _af_packet_flood(
    sock: PacketSocket,
    pool: int,
    new_flows: bool,
    vip: str,
    port: int,
    net: IPNetwork,
    netns: str,
    ifname: str,
    rate: float | None,
    count: int,
    duration: float,
    progress: ProgressFn | None,
    note: str | None,
    stop: threading.Event | None,
) -> FloodResult:
    """Send ``sock``'s frames (either family's) paced at ``rate`` for ``duration``, close it,
    and report; ``new_flows``: the pool is rewritten each round (every frame a new flow), else
    its ``pool`` frames repeat."""
    try:
        before = link_stats(netns, ifname)
        start = time.monotonic()
        pacer = Pacer(rate, count, start, start + duration, _burst(rate))
        runner = _Runner(
            sock.send,
            pacer,
            max_chunk=MMSG_MAX,
            first_chunk=MMSG_MAX,
            duration=duration,
            progress=progress,
            stop=stop,
        )
        end = runner.run(contextlib.nullcontext)
    finally:
        sock.close()
    after = _settled_stats(netns, ifname)
    flows = pacer.sent if new_flows else min(pool, pacer.sent)
    return _result(
        "af-packet",
        pacer,
        start,
        end,
        before,
        after,
        vip,
        port,
        net,
        netns,
        ifname,
        rate,
        note,
        flows,
        stop,
    )


def _flood6(
    netns: str,
    ifname: str,
    dst_mac: str,
    src_mac: str,
    vip: str,
    port: int,
    net: ipaddress.IPv6Network,
    rate: float | None,
    count: int,
    duration: float,
    progress: ProgressFn | None,
    sport_base: int,
    repeat: int,
    stop: threading.Event | None,
) -> FloodResult:
    """The IPv6 flood: AF_PACKET with :mod:`~dsrconform.traffic.flood6`'s frames."""
    template = flood6.syn_template6(dst_mac, src_mac, vip, port)
    pool = repeat or min(count, POOL_FRAMES)
    frames = flood6.syn_frames6(template, net, 0, pool, sport_base=sport_base)
    rounds = None if repeat else flood6.FlowRounds6(template, net, pool, sport_base=sport_base)
    sock = PacketSocket(netns, ifname, frames, next_round=rounds, frame_len=flood6.FRAME_LEN6)
    return _af_packet_flood(
        sock,
        pool,
        rounds is not None,
        vip,
        port,
        net,
        netns,
        ifname,
        rate,
        count,
        duration,
        progress,
        IPV6_ENGINE_NOTE,
        stop,
    )


IPV6_ENGINE_NOTE = "an IPv6 VIP: live frames and trafgen build IPv4 SYNs only"
"""Why an IPv6 flood uses AF_PACKET (its result's ``fallback_reason``)."""

TRAFGEN_POOL = 4096
"""trafgen with a first source port other than 1024: that many prebuilt flows, cycled."""


def _flood_trafgen(
    netns: str,
    ifname: str,
    template: bytes,
    space: _FlowSpace,
    vip: str,
    port: int,
    rate: float | None,
    count: int,
    duration: float,
    progress: ProgressFn | None,
    stop: threading.Event | None,
    fallback: str | None,
) -> FloodResult:
    """The flood sent by trafgen (:mod:`dsrconform.traffic.trafgen`): a new flow per packet
    counted up by trafgen itself, or the repeated tuples as prebuilt frames sent in turn."""
    import tempfile

    from dsrconform.traffic import trafgen

    net = space.net
    with tempfile.TemporaryDirectory(prefix="dsrc-flood-") as tmp:
        cfg = Path(tmp) / "flood.trafgen"
        if space.repeat or space.sport_base != SPORT_BASE:
            pool = space.repeat or min(count, TRAFGEN_POOL)
            frames = syn_frames(template, net, 0, pool, sport_base=space.sport_base)
            cfg.write_text(trafgen.frames_config(frames, FRAME_LEN))
        else:
            dst_mac, src_mac = (":".join(f"{b:02x}" for b in template[i : i + 6]) for i in (0, 6))
            cfg.write_text(trafgen.flood_config(dst_mac, src_mac, vip, port, str(net)))
        before = link_stats(netns, ifname)
        run = trafgen.run(
            netns,
            ifname,
            cfg,
            count=count,
            duration=duration,
            rate=rate,
            stop_event=stop,
            progress=progress,
        )
    after = _settled_stats(netns, ifname)
    pacer = Pacer(rate, count, run.start, run.start + duration, _burst(rate))
    pacer.sent = run.packets
    flows = min(run.packets, space.repeat) if space.repeat else run.packets
    return _result(
        "trafgen",
        pacer,
        run.start,
        run.end,
        before,
        after,
        vip,
        port,
        net,
        netns,
        ifname,
        rate,
        fallback,
        flows,
        stop,
    )


def _burst(rate: float | None) -> int:
    return LIVE_BATCH if rate is None else max(LIVE_BATCH, int(rate * TICK))


def _load_live(engine: str) -> tuple[LiveFrames | None, str | None]:
    """livegen loaded, or (None, why) when ``auto`` may fall back (a forced engine raises)."""
    try:
        return LiveFrames(), None
    except DsrConformError as e:
        if engine == "live-frames":
            raise
        return None, f"livegen could not be loaded: {type(e).__name__}: {e}"


def _settled_stats(netns: str, ifname: str) -> LinkCounters:
    # The peer's NAPI may still hold the last frames: let it drain before reading tx_packets.
    time.sleep(0.05)
    return link_stats(netns, ifname)


class _FlowSpace(NamedTuple):
    """The flows a flood sends: source network, first source port, repeated flows (0: none)."""

    net: ipaddress.IPv4Network  # IPv6 floods take their own path (_flood6)
    sport_base: int
    repeat: int


def _flood_live(gen: LiveFrames, netns: str, ifname: str, ifindex: int, template: bytes,
                space: _FlowSpace, vip: str, port: int, rate: float | None, count: int,
                duration: float, engine: str, progress: ProgressFn | None, cpu: int,
                stop: threading.Event | None) -> tuple[FloodResult | None, str | None]:  # fmt: skip
    """The live-frames flood, or (None, why) when ``auto`` should fall back."""
    from dsrconform.netns import enter_netns

    net = space.net
    gen.configure(template, net, sport_base=space.sport_base, repeat=space.repeat)
    ctx = xdp_md(ifindex)
    before = link_stats(netns, ifname)
    start = time.monotonic()
    pacer = Pacer(rate, count, start, start + duration, _burst(rate))
    with enter_netns(netns):
        probe = min(PROBE_FRAMES, count)
        try:
            pacer.sent += gen.send(template, ctx, probe)
        except BpfError as e:
            if engine == "live-frames":
                raise
            return None, f"live frames refused by the kernel ({e})"
        mid = link_stats(netns, ifname) - before
    if mid.xdp_xmit is not None:
        # The peer's queue counts what it accepted; a veth whose peer has no NAPI (no native
        # XDP, no GRO) takes none, silently: no error counter moves.
        took = mid.xdp_xmit
    elif mid.tx_dropped is not None:
        took = probe - mid.tx_dropped
    else:
        took = probe  # nothing to tell by: trust the kernel's acceptance of the test run
    if took < probe // 2:
        why = (
            f"{ifname}'s peer took {took} of {probe} live frames (it needs NAPI: native XDP "
            "there, or GRO on, e.g. flood(..., peer=(netns, ifname)))"
        )
        if engine == "live-frames":
            raise LabError(f"live-frames flood: {why}")
        return None, why

    def send(n: int) -> int:
        return gen.send(template, ctx, n)

    @contextmanager
    def enter() -> Iterator[None]:
        # Each sending thread: in the namespace, on the flood's CPU (livegen's flow sequence
        # is per CPU, and two threads on one CPU never interleave inside a run).
        with enter_netns(netns), pinned_cpu(cpu):
            yield

    runner = _Runner(send, pacer, max_chunk=LIVE_MAX_CHUNK, first_chunk=LIVE_FIRST_CHUNK,
                     duration=duration, progress=progress, stop=stop)  # fmt: skip
    end = runner.run(enter, threads=LIVE_THREADS)
    after = _settled_stats(netns, ifname)
    flows = min(pacer.sent, space.repeat) if space.repeat else pacer.sent
    return _result("live-frames", pacer, start, end, before, after, vip, port, net, netns, ifname,
                   rate, None, flows, stop), None  # fmt: skip


def _result(engine: Engine, pacer: Pacer, start: float, end: float, before: LinkCounters,
            after: LinkCounters, vip: str, port: int, net: IPNetwork, netns: str,
            ifname: str, rate: float | None, fallback: str | None, flows: int,
            stop: threading.Event | None = None) -> FloodResult:  # fmt: skip
    delta = after - before
    return FloodResult(
        engine=engine,
        packets=pacer.sent,
        start=start,
        end=end,
        vip=vip,
        port=port,
        src_net=str(net),
        netns=netns,
        ifname=ifname,
        target_rate=rate,
        stopped_by="count"
        if pacer.sent >= pacer.count
        else "stop"
        if stop is not None and stop.is_set()
        else "deadline",
        link_tx_packets=delta.tx_packets,
        link_tx_dropped=delta.tx_dropped,
        link_xdp_xmit=delta.xdp_xmit,
        link_xdp_xmit_errors=delta.xdp_xmit_errors,
        fallback_reason=fallback,
        distinct_flows=min(flows, net.num_addresses * SPORT_SPAN),
    )


def lab_flood(lab: LabNodes, *, vip: str, port: int = 80, count: int, duration: float,
              rate: float | None = None, node: str | None = None, engine: EngineChoice = "auto",
              enable_peer_napi: bool = True, progress: ProgressFn | None = None,
              src_net: str | None = None, sport_base: int = SPORT_BASE, repeat: int = 0,
              stop: threading.Event | None = None) -> FloodResult:  # fmt: skip
    """Flood from a lab's client node (default: a client marked ``traffic: false``, else the
    first client) out of its link to the router, with the router's MAC as destination.
    ``enable_peer_napi``: GRO on at the router's end for the flood, so the live-frames engine's
    frames are delivered. ``src_net``, ``sport_base``, ``repeat``, ``stop``: as :func:`flood`."""
    from dsrconform.netns import link_mac

    topo = lab.topology
    # A client with no traffic mix (``traffic: false``) if the lab has one: a flood from the
    # legitimate clients' own link competes with their traffic for the router's receive ring
    # and reaches less than half its rate.
    quiet = [n for n in topo.of_role("client") if not topo.nodes[n].traffic]
    node = node or (quiet or topo.of_role("client"))[0]
    up = topo.uplink(node)
    router_if = next(i.ifname for i in topo.interfaces()
                     if i.node == up.peer and i.peer == node)  # fmt: skip
    peer_ns = lab.netns(up.peer)
    return flood(
        lab.netns(node),
        up.ifname,
        dst_mac=link_mac(peer_ns, router_if),
        vip=vip,
        port=port,
        count=count,
        duration=duration,
        rate=rate,
        engine=engine,
        peer=(peer_ns, router_if) if enable_peer_napi else None,
        progress=progress,
        src_net=src_net,
        sport_base=sport_base,
        repeat=repeat,
        stop=stop,
    )


# --- the receiving end (tests and benches) ------------------------------------------------------


@dataclass(frozen=True)
class SinkCounts:
    """What :class:`FloodSink` counted: frames of the flood's exact shape (``syn``), that shape
    with a wrong checksum, other IPv4, and non-IPv4 (IPv6 neighbour discovery)."""

    syn: int = 0
    bad_checksum: int = 0
    other_ipv4: int = 0
    non_ipv4: int = 0
    syn_bytes: int = 0

    def __sub__(self, other: SinkCounts) -> SinkCounts:
        return SinkCounts(*(a - b for a, b in zip(astuple(self), astuple(other), strict=True)))


class FloodSink:
    """``flood_sink.bpf.c``: counts and drops what reaches an interface, classifying each frame
    against the flood's shape (see the program). Native XDP: it also gives the veth NAPI, so
    live frames from the peer are delivered. Attach with :meth:`attached`."""

    SLOTS = 4

    def __init__(self, *, vip: str, port: int, src_net: str = FLOOD_NET) -> None:
        from dsrconform.bpf.build import compile_bpf
        from dsrconform.bpf.libbpf import BpfObject

        self.obj = BpfObject(compile_bpf(PROGS_DIR / "flood_sink.bpf.c"))
        self.configure(vip=vip, port=port, src_net=src_net)

    def configure(self, *, vip: str, port: int, src_net: str = FLOOD_NET) -> None:
        net = ipaddress.IPv4Network(src_net)
        dst = ipaddress.IPv4Address(vip).packed
        cfg = net.network_address.packed + net.netmask.packed + dst + struct.pack("!HH", port, 0)
        self.obj.map("dsrc_fs_cfg").update(bytes(4), cfg)

    def counts(self) -> SinkCounts:
        """The counters so far, summed over CPUs."""
        m = self.obj.map("dsrc_fs_stats")
        packets, octets = [0] * self.SLOTS, [0] * self.SLOTS
        for slot in range(self.SLOTS):
            for raw in m.lookup_percpu(struct.pack("=I", slot)):
                p, b = struct.unpack("=QQ", raw)
                packets[slot] += p
                octets[slot] += b
        return SinkCounts(packets[0], packets[1], packets[2], packets[3], octets[0])

    @contextmanager
    def attached(self, netns: str, ifname: str) -> Iterator[None]:
        """Native XDP on ``ifname`` in ``netns`` for the body, detached afterwards (which waits
        for the veth's NAPI poll: counters read after the body are final)."""
        from dsrconform.bpf.libbpf import xdp_attach, xdp_detach
        from dsrconform.netns import enter_netns

        ifindex = _ifindex(netns, ifname)
        with enter_netns(netns):
            xdp_attach(ifindex, self.obj.program("dsrc_flood_sink").fd, mode="native")
        try:
            yield
        finally:
            with enter_netns(netns):
                xdp_detach(ifindex, mode="native")

    def close(self) -> None:
        self.obj.close()

    def __enter__(self) -> FloodSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- CLI -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dsrconform.traffic.synflood",
        description="Spoofed SYN flood from a lab namespace (root).",
    )
    p.add_argument("--netns", required=True, help="lab namespace (dsrc-...)")
    p.add_argument("--ifname", required=True, help="interface in it (dsrc-...)")
    p.add_argument("--dst-mac", required=True, help="next hop's MAC on that link")
    p.add_argument("--src-mac", default=None)
    p.add_argument("--vip", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--rate", type=float, default=None, help="packets/s (default: flat out)")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--duration", type=float, required=True, help="seconds, at most")
    p.add_argument("--src-net", default=FLOOD_NET)
    p.add_argument("--engine", choices=ENGINES, default="auto")
    p.add_argument("--peer", default=None, metavar="NETNS:IFNAME",
                   help="the link's other end: GRO on there during the flood")  # fmt: skip
    args = p.parse_args(argv)
    peer = tuple(args.peer.split(":", 1)) if args.peer else None
    try:
        res = flood(args.netns, args.ifname, dst_mac=args.dst_mac, src_mac=args.src_mac,
                    vip=args.vip, port=args.port, rate=args.rate, count=args.count,
                    duration=args.duration, src_net=args.src_net, engine=args.engine,
                    peer=peer)  # type: ignore[arg-type]  # fmt: skip
    except (ConfigError, LabError, BpfError) as e:
        print(f"synflood: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
