"""Packet captures on lab links, cut into small "evidence windows" afterwards.

A :class:`PacketCapture` runs ``tcpdump`` on one interface inside one lab namespace, bounded in
every direction: a ring of ``files`` files of ``file_mb`` million bytes each (``-C``/``-W``), at
most ``max_packets`` packets (``-c``), ``snaplen`` bytes of each (``-s``), and ``max_seconds``
of running time (coreutils ``timeout``, which ends tcpdump even if this process dies). It is
started by ``ip netns exec`` (so it works for every backend whose namespaces are named under
/run/netns: netns and docker), and stopped by its pid only: SIGINT, a wait with a deadline,
then SIGKILL to the process group it was started in (its own session: ``timeout`` and tcpdump).

Afterwards, :meth:`PacketCapture.window` cuts ``[t0, t1]`` (``time.monotonic()`` seconds, the
clock every observation uses) into one small pcap file, optionally only the packets of some
flows (a client address of either family, and port; matched on the outer header, the encapsulated
one (IP-in-IP, GUE) and the header an ICMP or ICMPv6 error quotes)::

    with capture_link(lab, "router", "mux1") as cap:    # router's interface toward mux1
        t0 = time.monotonic()
        ...                                             # traffic
        t1 = time.monotonic()
    w = cap.window(t0, t1, flows=[ClientEnd("198.18.1.2", 40001)])
    w.path, w.packets, w.complete, w.gaps

pcap timestamps are wall-clock (CLOCK_REALTIME); the capture measures the offset between the
two clocks when it starts (and again when it stops, to report drift) and converts with it.
A window says whether it is complete: not if the capture started after ``t0`` or stopped before
``t1``, if the ring overwrote packets from the window, or if the kernel dropped packets.

The files live in the lab's run directory (``/run/dsrconform/labs/<lab>/pcap/``, removed with the
lab: cut windows before ``down()``, or give another ``directory``).
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import os
import re
import signal
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from dsrconform.errors import ConfigError, LabError, ToolMissingError
from dsrconform.observe.taps import GUE_PORT

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab

__all__ = [
    "CaptureStats",
    "ClientEnd",
    "ClockOffset",
    "EvidenceWindow",
    "PacketCapture",
    "PcapError",
    "PcapReader",
    "capture_link",
    "cut_window",
    "frame_headers",
    "read_pcap",
    "write_pcap",
]

TCPDUMP = "/usr/bin/tcpdump"
TIMEOUT = "timeout"  # coreutils: the time bound that outlives this process
NS_PREFIX = "dsrc-"
NETNS_DIR = Path("/run/netns")
DEFAULT_SNAPLEN = 256
"""Bytes kept of each packet: Ethernet + outer IP + encapsulated IP + TCP with options + some
payload (IPv6 in IPv6 with a full TCP header and options fits in 14 + 40 + 40 + 60)."""
DEFAULT_FILE_MB = 8
DEFAULT_FILES = 4
DEFAULT_MAX_PACKETS = 2_000_000
DEFAULT_MAX_SECONDS = 900.0
START_SECONDS = 10.0
"""Deadline for tcpdump to say it is listening."""
STOP_SECONDS = 10.0
"""Deadline for tcpdump to exit after SIGINT, before SIGKILL."""
STDERR_LINES = 50
_names = itertools.count()

# --- clocks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClockOffset:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds, measured by bracketing one
    ``time.time_ns()`` between two ``time.monotonic_ns()`` reads (``uncertainty_ns``: half the
    bracket)."""

    offset_ns: int
    uncertainty_ns: int = 0

    @classmethod
    def measure(cls, *, tries: int = 5, realtime_ns: Any = time.time_ns,
                monotonic_ns: Any = time.monotonic_ns) -> ClockOffset:  # fmt: skip
        """The tightest of ``tries`` brackets (a preemption widens one, rarely all)."""
        best: ClockOffset | None = None
        for _ in range(max(1, tries)):
            m0 = monotonic_ns()
            r = realtime_ns()
            m1 = monotonic_ns()
            cand = cls(r - (m0 + m1) // 2, (m1 - m0 + 1) // 2)
            if best is None or cand.uncertainty_ns < best.uncertainty_ns:
                best = cand
        assert best is not None
        return best

    def to_monotonic_ns(self, realtime_ns: int) -> int:
        return realtime_ns - self.offset_ns

    def to_realtime_ns(self, monotonic_ns: int) -> int:
        return monotonic_ns + self.offset_ns

    def to_monotonic(self, realtime: float) -> float:
        """Wall-clock seconds (a pcap timestamp) -> time.monotonic() seconds."""
        return realtime - self.offset_ns / 1e9

    def to_realtime(self, monotonic: float) -> float:
        return monotonic + self.offset_ns / 1e9


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


# --- pcap files ----------------------------------------------------------------------------------


class PcapError(ConfigError):
    """A file is not a classic pcap file this module can read (pcapng, truncated header)."""


_MAGICS = {  # magic as read little-endian -> (byte order, nanosecond timestamps)
    0xA1B2C3D4: ("<", False),
    0xD4C3B2A1: (">", False),
    0xA1B23C4D: ("<", True),
    0x4D3CB2A1: (">", True),
}
PCAPNG_MAGIC = 0x0A0D0D0A
LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6 = 1, 101, 228, 229
LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2 = 113, 276


@dataclass(frozen=True)
class PcapHeader:
    byteorder: str  # "<" or ">"
    nanos: bool
    snaplen: int
    linktype: int
    version: tuple[int, int] = (2, 4)

    def pack(self) -> bytes:
        magic = 0xA1B23C4D if self.nanos else 0xA1B2C3D4
        return struct.pack(self.byteorder + "IHHiIII", magic, *self.version, 0, 0,
                           self.snaplen, self.linktype)  # fmt: skip


@dataclass(frozen=True)
class PcapRecord:
    ts_ns: int  # wall clock
    orig_len: int
    data: bytes


class PcapReader:
    """A classic pcap file (micro- or nanosecond timestamps, either byte order), read record by
    record; a context manager. A record cut short at the end (a file still being written) ends
    the iteration quietly."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._f: BinaryIO = self.path.open("rb")
        try:
            self.header = self._read_header()
        except BaseException:
            self._f.close()
            raise

    def _read_header(self) -> PcapHeader:
        head = self._f.read(24)
        if len(head) < 24:
            raise PcapError(f"{self.path}: {len(head)} bytes, too short for a pcap header")
        magic = struct.unpack("<I", head[:4])[0]
        if magic == PCAPNG_MAGIC:
            raise PcapError(f"{self.path}: a pcapng file; fix: classic pcap (tcpdump -w writes it)")
        if magic not in _MAGICS:
            raise PcapError(f"{self.path}: not a pcap file (magic {magic:#010x})")
        order, nanos = _MAGICS[magic]
        major, minor, _zone, _sig, snaplen, linktype = struct.unpack(order + "HHiIII", head[4:])
        return PcapHeader(order, nanos, snaplen, linktype & 0x0FFFFFFF, (major, minor))

    def __iter__(self) -> Iterator[PcapRecord]:
        h = self.header
        rec = struct.Struct(h.byteorder + "IIII")
        scale = 1 if h.nanos else 1000
        while True:  # bounded by the file's length: every pass consumes a record or stops
            raw = self._f.read(16)
            if len(raw) < 16:
                return
            sec, frac, incl, orig = rec.unpack(raw)
            data = self._f.read(incl)
            if len(data) < incl:
                return
            yield PcapRecord(sec * 1_000_000_000 + frac * scale, orig, data)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_pcap(path: str | Path) -> tuple[PcapHeader, list[PcapRecord]]:
    """The header and every record of a pcap file."""
    with PcapReader(path) as r:
        return r.header, list(r)


def write_pcap(path: str | Path, header: PcapHeader, records: Iterable[PcapRecord]) -> int:
    """Write records (kept byte for byte) under ``header``'s precision and link type."""
    rec = struct.Struct(header.byteorder + "IIII")
    unit = 1 if header.nanos else 1000
    n = 0
    with Path(path).open("wb") as f:
        f.write(header.pack())
        for r in records:
            sec, rem = divmod(r.ts_ns, 1_000_000_000)
            f.write(rec.pack(sec, rem // unit, len(r.data), r.orig_len))
            f.write(r.data)
            n += 1
    return n


# --- flows ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """One IP header of a packet (either family) with its L4 ports (0 when none or cut off)."""

    proto: int
    src: str
    dst: str
    sport: int = 0
    dport: int = 0
    layer: str = "outer"  # "outer", "inner" (IP-in-IP, GUE), "embedded" (quoted by an error)


@dataclass(frozen=True)
class ClientEnd:
    """A flow's client end: its address, and port and protocol if given (None: any). A packet
    matches if any of its headers has the address as source with the port as source port, or
    as destination with the port as destination port."""

    addr: str
    port: int | None = None
    proto: int | None = None

    def __post_init__(self) -> None:
        # ValueError for a bad address; kept canonical, as the headers' addresses are.
        object.__setattr__(self, "addr", str(ipaddress.ip_address(self.addr)))
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range")

    def matches(self, h: Header) -> bool:
        if self.proto is not None and h.proto != self.proto:
            return False
        if h.src == self.addr and (self.port is None or h.sport == self.port):
            return True
        return h.dst == self.addr and (self.port is None or h.dport == self.port)


_ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})
_ICMP6_ERRORS = frozenset({1, 2, 3, 4})  # unreachable, packet too big, time exceeded, param
_IPV6_EXT = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44
_MAX_EXT = 8  # extension headers walked before giving up on the upper-layer header
_VLAN = frozenset({0x8100, 0x88A8})
_ETHERTYPES = {0x0800: 4, 0x86DD: 6}


def _ip_at(data: bytes, linktype: int) -> int | None:
    """Offset of the IP header (IPv4 or IPv6) in a frame of ``linktype``, or None (not IP)."""
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return 0 if data[:1] and data[0] >> 4 in (4, 6) else None
    if linktype == LINKTYPE_ETHERNET:
        off, etype = 14, int.from_bytes(data[12:14], "big") if len(data) >= 14 else -1
        for _ in range(2):  # at most two VLAN tags
            if etype not in _VLAN:
                break
            etype = int.from_bytes(data[off + 2 : off + 4], "big") if len(data) >= off + 4 else -1
            off += 4
        return off if etype in _ETHERTYPES else None
    if linktype == LINKTYPE_LINUX_SLL:
        return 16 if int.from_bytes(data[14:16], "big") in _ETHERTYPES else None
    if linktype == LINKTYPE_LINUX_SLL2:
        return 20 if int.from_bytes(data[0:2], "big") in _ETHERTYPES else None
    return None


def _ports(data: bytes, proto: int, l4: int) -> tuple[int, int]:
    if proto in (6, 17) and len(data) >= l4 + 4:
        sport, dport = struct.unpack("!HH", data[l4 : l4 + 4])
        return sport, dport
    return 0, 0


def _ipv6_upper(data: bytes, off: int) -> tuple[int, int, bool]:
    """(upper-layer protocol, its offset, fragment) after the IPv6 header at ``off`` and its
    extension headers; a chain cut short or too long stops at the header it reached."""
    nh, l4, frag = data[off + 6], off + 40, False
    for _ in range(_MAX_EXT):
        if (nh not in _IPV6_EXT and nh != _IPV6_FRAGMENT) or len(data) < l4 + 8:
            break
        if nh == _IPV6_FRAGMENT:
            frag = frag or int.from_bytes(data[l4 + 2 : l4 + 4], "big") & 0xFFF9 != 0
            nh, l4 = data[l4], l4 + 8
        else:
            nh, l4 = data[l4], l4 + (data[l4 + 1] + 1) * 8
    return nh, l4, frag


def _ip_headers(data: bytes, off: int, layer: str, depth: int) -> list[Header]:
    """The IP header at ``off`` (either family, its version nibble says) and those inside it."""
    version = data[off] >> 4 if len(data) > off else 0
    if version == 4 and len(data) >= off + 20:
        ihl = (data[off] & 0x0F) * 4
        proto = data[off + 9]
        src = str(ipaddress.IPv4Address(data[off + 12 : off + 16]))
        dst = str(ipaddress.IPv4Address(data[off + 16 : off + 20]))
        frag = int.from_bytes(data[off + 6 : off + 8], "big") & 0x1FFF != 0
        l4 = off + ihl
        if ihl < 20:
            return [Header(proto, src, dst, 0, 0, layer)]
    elif version == 6 and len(data) >= off + 40:
        src = str(ipaddress.IPv6Address(data[off + 8 : off + 24]))
        dst = str(ipaddress.IPv6Address(data[off + 24 : off + 40]))
        proto, l4, frag = _ipv6_upper(data, off)
    else:
        return []
    sport, dport = (0, 0) if frag else _ports(data, proto, l4)
    out = [Header(proto, src, dst, sport, dport, layer)]
    if depth >= 3 or frag:
        return out
    if proto in (4, 41):  # IP-in-IP: IPv4 (4) or IPv6 (41) inside either family
        out += _ip_headers(data, l4, "inner", depth + 1)
    elif proto == 17 and dport == GUE_PORT and len(data) > l4 + 8 and data[l4 + 8] >> 4 in (4, 6):
        out += _ip_headers(data, l4 + 8, "inner", depth + 1)  # GUE: IP directly in UDP
    elif len(data) >= l4 + 8 and (
        (proto == 1 and data[l4] in _ICMP_ERRORS) or (proto == 58 and data[l4] in _ICMP6_ERRORS)
    ):
        out += _ip_headers(data, l4 + 8, "embedded", depth + 1)
    return out


def frame_headers(data: bytes, linktype: int = LINKTYPE_ETHERNET) -> list[Header]:
    """Every IP header of a frame, IPv4 or IPv6: outer, encapsulated (IP-in-IP of either family,
    or GUE to ``taps.GUE_PORT``), and quoted by an ICMP or ICMPv6 error (an encapsulated error's
    quote too). An IPv6 header's protocol is its upper-layer header's, past extension headers;
    a fragment has no ports. Empty for non-IP frames (ARP)."""
    off = _ip_at(data, linktype)
    return [] if off is None else _ip_headers(data, off, "outer", 0)


# --- windows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceWindow:
    """One cut window: where it was written, what it holds, and whether it is complete."""

    path: Path
    t0: float
    t1: float
    packets: int
    first: float | None  # monotonic time of the first packet written, None if none
    last: float | None
    flows: tuple[ClientEnd, ...] = ()
    complete: bool = True
    gaps: tuple[str, ...] = ()
    """Why the window may be missing packets (empty when complete)."""
    source: str = ""
    """Where the packets were captured (``netns:ifname``)."""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


@dataclass(frozen=True)
class CutResult:
    packets: int
    first_ns: int | None
    last_ns: int | None
    earliest_ns: int | None  # earliest packet kept in the files (wall clock), for ring wrap
    retained: int  # packets in the files


def cut_window(files: Sequence[str | Path], t0: float, t1: float, out: str | Path, *,
               offset: ClockOffset, flows: Sequence[ClientEnd] = ()) -> CutResult:  # fmt: skip
    """Write the packets of ``files`` timestamped in ``[t0, t1]`` (monotonic seconds, converted
    with ``offset``) to ``out``, in time order (a wrapped ring's files in any order), keeping only
    those of ``flows`` if any are given. Files must share one link type."""
    if t1 < t0:
        raise ConfigError(f"window end {t1} is before its start {t0}")
    lo, hi = offset.to_realtime_ns(_ns(t0)), offset.to_realtime_ns(_ns(t1))
    retained = 0
    earliest: int | None = None

    def kept(i: int, reader: PcapReader) -> Iterator[tuple[int, int, int, PcapRecord]]:
        nonlocal retained, earliest
        linktype = reader.header.linktype
        # A microsecond file's stamps are truncated: compare at the file's precision, so that
        # a packet at exactly t1 (stamped floor(t1)) is in, and one a microsecond later is out.
        tick = 1 if reader.header.nanos else 1000
        first_ok, last_ok = lo - lo % tick, hi - hi % tick
        for seq, r in enumerate(reader):
            retained += 1
            earliest = r.ts_ns if earliest is None else min(earliest, r.ts_ns)
            if first_ok <= r.ts_ns <= last_ok and (
                not flows
                or any(f.matches(x) for x in frame_headers(r.data, linktype) for f in flows)
            ):
                yield r.ts_ns, i, seq, r

    with ExitStack() as stack:
        readers = [stack.enter_context(PcapReader(p)) for p in files]
        kinds = {r.header.linktype for r in readers}
        if len(kinds) > 1:
            raise PcapError(f"{', '.join(map(str, files))}: mixed link types {sorted(kinds)}")
        h = readers[0].header if readers else None
        header = PcapHeader("<", h.nanos if h else True, h.snaplen if h else DEFAULT_SNAPLEN,
                            h.linktype if h else LINKTYPE_ETHERNET)  # fmt: skip
        first: int | None = None
        last: int | None = None

        def merged() -> Iterator[PcapRecord]:
            nonlocal first, last
            # Each file is in time order; merging keeps the output so across a wrapped ring.
            for ts, _i, _seq, r in heapq.merge(*(kept(i, rd) for i, rd in enumerate(readers))):
                first = ts if first is None else first
                last = ts
                yield r

        count = write_pcap(out, header, merged())
    return CutResult(count, first, last, earliest, retained)


# --- capturing -----------------------------------------------------------------------------------


@dataclass
class CaptureStats:
    """What tcpdump said when it exited, and how the capture ended."""

    captured: int | None = None
    received_by_filter: int | None = None
    dropped_by_kernel: int | None = None
    dropped_by_interface: int | None = None
    returncode: int | None = None
    timed_out: bool = False  # ended by max_seconds
    packet_cap_reached: bool = False  # ended by max_packets
    killed: bool = False  # did not exit on SIGINT within the deadline

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_STAT_RE = re.compile(
    r"^(\d+) packets? (captured|received by filter|dropped by kernel|dropped by interface)"
)


@dataclass
class _Stderr:
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_LINES))
    listening: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)
    settled: threading.Event = field(default_factory=threading.Event)  # listening or closed
    closed_at: float | None = None


def _check_namespace(netns: str) -> None:
    """Only the project's namespaces, never the host's (even under a project name)."""
    if not netns.startswith(NS_PREFIX) or "/" in netns:
        raise ConfigError(f"namespace {netns!r}: captures run only in {NS_PREFIX}* namespaces")
    from dsrconform.netns import host_netns_ids

    try:
        st = os.stat(NETNS_DIR / netns)
    except FileNotFoundError:
        raise LabError(f"network namespace {netns!r} does not exist") from None
    if (st.st_dev, st.st_ino) in host_netns_ids():
        raise LabError(f"namespace {netns!r} is the host's own namespace; refusing to capture")


class PacketCapture:
    """A bounded tcpdump on ``ifname`` inside namespace ``netns``, writing to ``directory``.

    A context manager: entering starts it (and returns once tcpdump is listening), leaving
    stops it, whatever happened inside. ``bpf_filter`` is an optional tcpdump filter expression.
    """

    def __init__(self, netns: str, ifname: str, directory: str | Path, *,
                 name: str | None = None, snaplen: int = DEFAULT_SNAPLEN,
                 file_mb: int = DEFAULT_FILE_MB, files: int = DEFAULT_FILES,
                 max_packets: int = DEFAULT_MAX_PACKETS,
                 max_seconds: float = DEFAULT_MAX_SECONDS, bpf_filter: str | None = None,
                 tcpdump: str = TCPDUMP) -> None:  # fmt: skip
        if not ifname or "/" in ifname or ifname.startswith("-") or len(ifname) > 15:
            raise ConfigError(f"interface name {ifname!r} is not valid")
        if not netns.startswith(NS_PREFIX):
            raise ConfigError(f"namespace {netns!r}: captures run only in {NS_PREFIX}* namespaces")
        for what, v, least in (("snaplen", snaplen, 64), ("file_mb", file_mb, 1),
                               ("files", files, 1), ("max_packets", max_packets, 1)):  # fmt: skip
            if not isinstance(v, int) or v < least:
                raise ConfigError(f"capture {what} must be an integer >= {least}, got {v!r}")
        if not 0 < max_seconds < 7 * 86400:
            raise ConfigError(f"capture max_seconds must be in (0, 1 week), got {max_seconds}")
        self.netns, self.ifname = netns, ifname
        self.directory = Path(directory)
        self.name = name or f"{ifname}-{os.getpid()}-{next(_names)}"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ConfigError(f"capture name {self.name!r}: letters, digits, '.', '_', '-'")
        self.snaplen, self.file_mb, self.files = snaplen, file_mb, files
        self.max_packets, self.max_seconds = max_packets, max_seconds
        self.bpf_filter, self.tcpdump = bpf_filter, tcpdump
        self.offset: ClockOffset | None = None
        self.offset_at_stop: ClockOffset | None = None
        self.started: float | None = None  # monotonic, once tcpdump listens
        self.stopped: float | None = None  # monotonic, when its output closed
        self.stats = CaptureStats()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr = _Stderr()
        self._reader: threading.Thread | None = None

    @property
    def source(self) -> str:
        return f"{self.netns}:{self.ifname}"

    @property
    def base(self) -> Path:
        """The ring's file name before tcpdump's number suffix (``<name>.pcap0``...)."""
        return self.directory / f"{self.name}.pcap"

    def argv(self) -> list[str]:
        """The command line (run from the host)."""
        cmd = [
            "ip", "netns", "exec", self.netns,
            TIMEOUT, "--signal=INT", f"--kill-after={STOP_SECONDS:g}", f"{self.max_seconds:g}",
            self.tcpdump, "-i", self.ifname, "-n", "-p", "-U", "--immediate-mode",
            "-s", str(self.snaplen), "-Z", "root", "-w", str(self.base),
            "-C", str(self.file_mb), "-W", str(self.files), "-c", str(self.max_packets),
        ]  # fmt: skip
        if self.bpf_filter:
            cmd += ["--", self.bpf_filter]
        return cmd

    def ring_files(self) -> list[Path]:
        """The capture's files (``-W`` numbers them ``<name>.pcap0``, ``.pcap1``...)."""
        pat = re.compile(re.escape(self.base.name) + r"\d+")
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if pat.fullmatch(p.name))

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = START_SECONDS) -> PacketCapture:
        if self._proc is not None:
            raise LabError(f"capture {self.name} was already started")
        if not Path(self.tcpdump).exists():
            raise ToolMissingError(f"{self.tcpdump} not found; fix: apt-get install tcpdump")
        _check_namespace(self.netns)
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.ring_files():
            raise LabError(f"capture files {self.base}* already exist; fix: another name")
        self.offset = ClockOffset.measure()
        # Its own session: a terminal's Ctrl-C reaches us (we stop it), and the group holds
        # exactly `timeout` and tcpdump, for SIGKILL if SIGINT is not enough.
        self._proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      start_new_session=True)  # fmt: skip
        self._reader = threading.Thread(target=self._read_stderr, name="dsrc-pcap", daemon=True)
        self._reader.start()
        try:
            # Wakes when tcpdump says it is listening, or its output closes (it failed).
            self._stderr.settled.wait(timeout)
            if not self._stderr.listening.is_set():
                raise LabError(
                    f"tcpdump on {self.source} did not start listening within {timeout:g} s: "
                    + (" | ".join(self._stderr.lines) or "no output")
                )
        except BaseException:
            self.stop()
            raise
        self.started = time.monotonic()
        return self

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        with self._proc.stderr:
            for raw in self._proc.stderr:  # ends at EOF: when tcpdump and timeout are gone
                line = raw.decode(errors="replace").rstrip()
                self._stderr.lines.append(line)
                if line.startswith("tcpdump: listening on") or line.startswith("listening on"):
                    self._stderr.listening.set()
                    self._stderr.settled.set()
                m = _STAT_RE.match(line)
                if m:
                    setattr(self.stats, m.group(2).replace(" ", "_"), int(m.group(1)))
        self._stderr.closed_at = time.monotonic()
        self._stderr.closed.set()
        self._stderr.settled.set()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait(self, timeout: float) -> bool:
        """Block until the capture ends by its own bounds (``max_packets``, ``max_seconds``) or
        ``timeout`` seconds pass; True if it has ended. :meth:`stop` is still needed after."""
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, timeout: float = STOP_SECONDS) -> CaptureStats:
        """Stop tcpdump (SIGINT to the pid we started; SIGKILL to its group after ``timeout``)
        and wait for it. Safe to call twice; afterwards nothing of it runs."""
        proc = self._proc
        if proc is None:
            return self.stats
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)  # `timeout` passes it on to tcpdump
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.stats.killed = True
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the session we created: ours only
                proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        if self.offset_at_stop is None:
            self.offset_at_stop = ClockOffset.measure()
            self.stopped = self._stderr.closed_at or time.monotonic()
            rc = proc.returncode
            self.stats.returncode = rc
            self.stats.timed_out = rc == 124
            cap = self.stats.captured
            self.stats.packet_cap_reached = cap is not None and cap >= self.max_packets
        return self.stats

    def __enter__(self) -> PacketCapture:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()

    # --- windows -------------------------------------------------------------------------------

    def window(self, t0: float, t1: float, out: str | Path | None = None, *,
               flows: Sequence[ClientEnd] = ()) -> EvidenceWindow:  # fmt: skip
        """Cut ``[t0, t1]`` (monotonic seconds) into one pcap file (default: next to the ring,
        ``<name>-<t0>-<t1>.pcap``), keeping only ``flows`` if given. Best after :meth:`stop`
        (while running, packets still buffered are not in the files yet)."""
        if self.offset is None or self.started is None:
            raise LabError(f"capture {self.name} was never started")
        out = Path(out) if out is not None else (
            self.directory / f"{self.name}-{t0:.3f}-{t1:.3f}.pcap"
        )  # fmt: skip
        # A file tcpdump just rotated to may not hold its header yet: nothing in it to cut.
        files = [f for f in self.ring_files() if f.stat().st_size >= 24]
        res = cut_window(files, t0, t1, out, offset=self.offset, flows=flows)
        gaps = []
        end = self.stopped if self.stopped is not None else time.monotonic()
        if t0 < self.started:
            gaps.append(f"the capture started at {self.started:.3f}, after the window's start")
        if t1 > end:
            how = "stopped" if self.stopped is not None else "is still running; written up to"
            gaps.append(f"the capture {how} {end:.3f}, before the window's end")
        cap = self.stats.captured
        if cap is not None and cap > res.retained and res.earliest_ns is not None:
            earliest = self.offset.to_monotonic_ns(res.earliest_ns) / 1e9
            if earliest > t0:
                gaps.append(
                    f"the ring overwrote {cap - res.retained} packets; the oldest kept is from "
                    f"{earliest:.3f}, after the window's start"
                )
        for what in ("dropped_by_kernel", "dropped_by_interface"):
            n = getattr(self.stats, what)
            if n:
                gaps.append(f"tcpdump reports {n} packets {what.replace('_', ' ')}")
        if self.stats.killed:
            gaps.append("tcpdump was killed, not stopped: its last packets may be missing")
        conv = self.offset.to_monotonic_ns
        return EvidenceWindow(
            path=out, t0=t0, t1=t1, packets=res.packets,
            first=conv(res.first_ns) / 1e9 if res.first_ns is not None else None,
            last=conv(res.last_ns) / 1e9 if res.last_ns is not None else None,
            flows=tuple(flows), complete=not gaps, gaps=tuple(gaps), source=self.source,
        )  # fmt: skip


def capture_link(lab: RunningLab, node: str, peer: str | None = None, *,
                 directory: str | Path | None = None, **kwargs: Any) -> PacketCapture:  # fmt: skip
    """A capture (not started; use it as a context manager) on ``node``'s interface toward
    ``peer`` (default: the router) in a running :class:`dsrconform.lab.Lab`; files under the
    lab's run directory (``<lab dir>/pcap``) unless ``directory`` is given."""
    ifname = lab.topology.uplink(node, peer).ifname
    return PacketCapture(lab.netns(node), ifname, directory or Path(lab.dir) / "pcap", **kwargs)
