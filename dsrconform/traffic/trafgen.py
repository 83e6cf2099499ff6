"""netsniff-ng's ``trafgen`` as a frame generator: the SYN flood's third engine (after live frames
and AF_PACKET, :mod:`dsrconform.traffic.synflood`) and ``bench traffic``'s baseline.

- :func:`flood_config`: the flood's frame with source address and port counting up at run time
  through a source network (a new flow per packet).
- :func:`frames_config`: a fixed list of prebuilt frames, which trafgen sends in turn (the
  repeated tuples of the tuple probes).
- :func:`run`: trafgen in a lab namespace on one CPU, bounded by a packet count, a deadline and a
  stop event, paced with ``--rate Npps``; returns the packets it says it sent. It runs in its own
  session (trafgen forks a worker per CPU) and is stopped by SIGINT to that group only, SIGKILL
  if it lingers: never by name.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dsrconform.errors import ConfigError, FeatureUnavailableError, LabError

STOP_TIMEOUT = 10.0
POLL_S = 0.05


def flood_config(dst_mac: str, src_mac: str, vip: str, port: int, src_net: str) -> str:
    """trafgen's description of the flood's frame: the synflood shape (64 bytes; IPv4 total
    length 40, DF, TTL 64; TCP SYN, sequence 1, window 65535) with the source address and port
    counting up at run time through ``src_net`` and 1024..65535.

    trafgen checksums TCP over the rest of the frame, padding included (its pseudo-header length
    counts the 10 pad bytes too): the pad's first word is 0xfff5, which cancels those extra 10
    in one's-complement arithmetic, so the TCP checksum is the one of the 20-byte segment."""
    net = ipaddress.IPv4Network(src_net)
    if net.prefixlen < 16:
        raise ConfigError(f"trafgen source range {net}: at most a /16 (two varying bytes)")
    lo = int(net.network_address) & 0xFFFF
    hi = lo + net.num_addresses - 1
    return (
        "{\n"
        f"  eth(da={dst_mac}, sa={src_mac}, type=0x0800),\n"
        f"  ipv4(ihl=5, len=40, id=0, df, ttl=64, proto=6, sa={net.network_address}, "
        f"sa[2:2]=dinc({lo}, {hi}), da={vip}),\n"
        f"  tcp(sp=dinc(1024, 65535), dp={port}, seq=1, aseq=0, doff=5, syn, win=65535),\n"
        "  c16(0xfff5), fill(0x00, 8)\n"
        "}\n"
    )


def frames_config(frames: bytes, frame_len: int) -> str:
    """One trafgen packet per ``frame_len`` bytes of ``frames``, as raw bytes (sent in turn)."""
    if not frames or len(frames) % frame_len:
        raise ConfigError(f"trafgen frames: {len(frames)} bytes is not a whole number of frames")
    out = []
    for off in range(0, len(frames), frame_len):
        body = ",".join(f"0x{b:02x}" for b in frames[off : off + frame_len])
        out.append("{" + body + "}\n")
    return "".join(out)


def parse_packets(output: str) -> int | None:
    """The ``N packets outgoing`` trafgen prints on exit, or None."""
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1:3] == ["packets", "outgoing"] and parts[0].isdigit():
            return int(parts[0])
    return None


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGINT to trafgen's own process group (started by us), then SIGKILL if it lingers;
    returns what it printed."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out or ""


@dataclass(frozen=True)
class TrafgenRun:
    """What one :func:`run` did: packets trafgen reported, when it started and stopped."""

    packets: int
    start: float
    end: float
    stopped_by: str  # "count", "deadline" or "stop"


def run(
    netns: str,
    ifname: str,
    config: Path,
    *,
    count: int,
    duration: float,
    rate: float | None,
    stop_event: threading.Event | None = None,
    progress: Callable[[float], None] | None = None,
) -> TrafgenRun:
    """trafgen on ``ifname`` in ``netns`` with ``config``: ``count`` packets at most, for
    ``duration`` seconds at most, at ``rate`` packets/s (None: flat out), one worker."""
    path = shutil.which("trafgen")
    if path is None:
        raise FeatureUnavailableError(
            "trafgen not on PATH; fix: apt-get install netsniff-ng", feature="trafgen"
        )
    argv = [
        "ip",
        "netns",
        "exec",
        netns,
        path,
        "--dev",
        ifname,
        "--in",
        str(config),
        "--cpus",
        "1",
        "--num",
        str(count),
        "--no-sock-mem",
    ]
    if rate is not None:
        argv += ["--rate", f"{max(1, round(rate))}pps"]
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = start + duration
    stopped_by = "count"
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if now >= deadline:
                stopped_by = "deadline"
                break
            if stop_event is not None and stop_event.is_set():
                stopped_by = "stop"
                break
            if progress is not None:
                progress(min(0.999, (now - start) / duration))
            # Bounded poll of the process, stoppable by the event: not a wait standing in for
            # a state, the flood's own schedule.
            if stop_event is not None:
                stop_event.wait(POLL_S)
            else:
                time.sleep(POLL_S)
    finally:
        output = stop(proc)
    end = time.monotonic()
    packets = parse_packets(output)
    if packets is None:
        raise LabError(
            f"trafgen in {netns} exited {proc.returncode} without a packet count: "
            f"{output.strip()[-500:]}"
        )
    if progress is not None:
        progress(1.0)
    return TrafgenRun(packets, start, end, stopped_by)
