"""Short connections: new TCP connections to a VIP at a target rate, each asking ``GET /id``.

Run inside a client node, like :mod:`dsrconform.traffic.streams` (standard library only, so it
also runs in a docker node's image)::

    python -m dsrconform.traffic.shortconns --vip 198.19.0.10 --port 80 --rate 500 \\
        --count 5000 --duration 10 --sources 198.18.1.2,198.18.1.3 --seed 1 --timeout 2 \\
        --max-in-flight 512 --out h.jsonl

Each connection binds the next client source (round robin over ``--sources`` in an order drawn
from ``--seed``), records its ``flow`` (the 5-tuple, known before connecting), connects, sends
``GET /id`` with ``Connection: close`` (or, with ``--upload N``, ``POST /upload`` with ``N``
pattern bytes, answered ``<id> N``: the server saw the whole upload), reads the whole reply and
records, in the format of :mod:`dsrconform.observe.history`: ``connected``, ``first_byte``
(with the ``X-Server-Id`` that answered) and ``closed``; or ``refused`` (the SYN was answered
by a RST or an ICMP error), ``timeout`` (with the phase, ``connect`` or ``read``), ``reset``. A
reply that is not ``200`` with the body ``<X-Server-Id>\\n`` (the reference app's, see
``dsrconform/app.py``) is recorded as an ``integrity_error`` at the first wrong byte, then
``closed``.

The flow records carry no ``seed`` and no ``expected_bytes`` (the reply's length is the server
id's, unknown in advance); ``closed`` says ``received`` body bytes, of which ``verified`` matched
``<id>\\n``. So :meth:`FlowHistory.succeeded` holds exactly for a connection that connected, got
the id and closed, and a completed short connection is never judged a stream closed short.

With ``--reuse-ports LO-HI`` each connection binds one of those local ports (the sources take
turns, each cycling through the ports), so the same 5-tuples come back again and again, as from
clients that reuse ports: a connection's tuple may be one the stack remembers from an earlier
connection, across a backend change (AF-1). A port whose last connection has not closed yet is
skipped for the kernel's choice (``reuse_busy``).

Pacing: connection ``i`` is due at ``start + i / rate`` (:func:`schedule`, absolute times, so no
drift); a late opener catches up at once, but never has more than ``--max-in-flight``
connections open. Bounded: no connection is opened after ``--count`` of them, after
``--duration`` seconds, or later than ``--timeout`` before the ``--deadline`` (default:
duration + timeout + 5 s); each connection has ``--timeout`` seconds from its connect call to its
close; at the deadline whatever is still open is cancelled (and recorded as ``closed`` with
reason ``deadline`` if it had connected).

At the end one JSON line on stderr: ``opened``, ``bind_errors``, ``in_flight_max``,
``lag_max_ms`` (how late the latest opening was) and the :func:`summarize` keys, which the
history file gives back: ``summarize(load_history(path))``.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import math
import random
import resource
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from dsrconform.streampattern import pattern_bytes
from dsrconform.traffic.common import (
    Recorder,
    add_marks_option,
    check_targets,
    family_of,
    host_header,
    mixed_families,
    outside_lab,
    run_recorded,
    set_marks,
)

if TYPE_CHECKING:  # the history models need pydantic, which a docker node's python3 lacks
    from dsrconform.observe.history import FlowHistory, History

MAX_REPLY = 65536
"""Largest reply body read (the reference app's /id body is the server id and a newline)."""
FAILURES = ("refused", "timeout_connect", "timeout_read", "reset", "bad_reply")
"""How a connection can fail (``failures`` in the summary); see :func:`outcome_of`."""
CUT_GRACE = 5.0
"""Seconds given to connections cancelled at the deadline to record that."""


# --- the schedule ---------------------------------------------------------------------------------


def schedule(rate: float, count: int, duration: float) -> Iterator[float]:
    """When each connection is due, in seconds after the start: ``i / rate`` for ``i`` from 0,
    while ``i < count`` and ``i / rate < duration``. Absolute offsets (not sums of intervals),
    so the schedule does not drift however long it runs."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, not {rate}")
    for i in range(count):
        offset = i / rate
        if offset >= duration:
            return
        yield offset


@dataclass
class PaceStats:
    opened: int = 0
    """Connections launched."""
    in_flight_max: int = 0
    """Most connections open at once (never more than ``max_in_flight``)."""
    lag_max: float = 0.0
    """Seconds the latest launch came after its due time."""
    cut: int = 0
    """Connections still open at the deadline, cancelled."""


async def pace(
    offsets: Iterable[float],
    launch: Callable[[int], Coroutine[Any, Any, None]],
    *,
    start: float,
    stop_at: float,
    deadline: float,
    max_in_flight: int,
) -> PaceStats:
    """Launch ``launch(i)`` at ``start + offsets[i]`` (``time.monotonic()`` seconds), never more
    than ``max_in_flight`` running at once; a launch behind its time (the cap, a busy loop) goes
    as soon as it can. Nothing is launched at or after ``stop_at``. Returns once every launch has
    finished, or at ``deadline``, when the ones still running are cancelled (each gets
    :data:`CUT_GRACE` seconds to finish its records)."""
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
    stats = PaceStats()
    slots = asyncio.Semaphore(max_in_flight)
    running: set[asyncio.Task[None]] = set()

    def finished(task: asyncio.Task[None]) -> None:
        running.discard(task)
        slots.release()

    async def opener() -> None:
        for i, offset in enumerate(offsets):
            due = start + offset
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing: the due time is absolute
            if slots.locked():
                try:
                    await asyncio.wait_for(slots.acquire(), stop_at - time.monotonic())
                except TimeoutError:
                    return
            else:
                await slots.acquire()  # free: returns at once
            now = time.monotonic()
            if now >= stop_at:
                slots.release()
                return
            stats.lag_max = max(stats.lag_max, now - due)
            task = asyncio.create_task(launch(i))
            running.add(task)
            task.add_done_callback(finished)
            stats.opened += 1
            stats.in_flight_max = max(stats.in_flight_max, len(running))

    open_task = asyncio.create_task(opener())
    done, _ = await asyncio.wait({open_task}, timeout=max(0.0, deadline - time.monotonic()))
    if not done:
        open_task.cancel()
        await asyncio.wait({open_task})  # it is in a sleep or an acquire: cancelled at once
    elif open_task.exception() is not None:
        raise open_task.exception()  # type: ignore[misc]
    if running:
        _, pending = await asyncio.wait(set(running), timeout=max(0.0, deadline - time.monotonic()))
        if pending:
            stats.cut = len(pending)
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=CUT_GRACE)
    return stats


def source_order(sources: Sequence[str], seed: int) -> list[str]:
    """The client sources in the order connections take them (round robin), drawn from
    ``seed``: the same seed gives the same order."""
    order = list(sources)
    random.Random(seed).shuffle(order)
    return order


# --- the summary ----------------------------------------------------------------------------------


class Outcome(NamedTuple):
    """How one connection went, as :func:`summarize` counts it."""

    start: float
    """The flow record's time (just before the connect call)."""
    connected: float | None
    end: float | None
    """When it closed (succeeded connections; None otherwise is fine)."""
    result: str
    """``succeeded``, ``cut`` (ended by the run's deadline, not a failure) or one of FAILURES."""
    server: str | None = None


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of non-empty ``values``."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    k = max(0, math.ceil(p / 100 * len(ordered)) - 1)
    return ordered[min(k, len(ordered) - 1)]


def _spread_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    if not seconds:
        return dict.fromkeys(("p50", "p90", "p99", "max"))
    ms = [s * 1000 for s in seconds]
    return {"p50": round(percentile(ms, 50), 3), "p90": round(percentile(ms, 90), 3),
            "p99": round(percentile(ms, 99), 3), "max": round(max(ms), 3)}  # fmt: skip


def summary_of(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The summary of a set of connections (see :func:`summarize` for the keys)."""
    results = Counter(o.result for o in outcomes)
    unknown = set(results) - {"succeeded", "cut", *FAILURES}
    if unknown:
        raise ValueError(f"unknown outcome {sorted(unknown)}")
    attempted = len(outcomes)
    ok = [o for o in outcomes if o.result == "succeeded"]
    starts = [o.start for o in outcomes]
    span = max(starts) - min(starts) if starts else 0.0
    return {
        "attempted": attempted,
        "succeeded": len(ok),
        "failed": sum(results[k] for k in FAILURES),
        "failures": {k: results[k] for k in FAILURES},
        "cut": results["cut"],
        "success_rate": round(len(ok) / attempted, 6) if attempted else None,
        "span_s": round(span, 6),
        "achieved_rate": round((attempted - 1) / span, 3) if span > 0 else None,
        "latency_ms": _spread_ms([o.end - o.start for o in ok if o.end is not None]),
        "connect_ms": _spread_ms(
            [o.connected - o.start for o in outcomes if o.connected is not None]
        ),
        "servers": dict(sorted(Counter(o.server or "?" for o in ok).items())),
    }


def outcome_of(fh: FlowHistory) -> Outcome:
    """How a recorded connection went, by the history's own judgement: it succeeded if
    :meth:`FlowHistory.succeeded` and it closed (``eof``) after a server answered; a refusal,
    a timeout (by phase), a reset, an integrity error or a close short of the bytes received is
    a failure; a flow the generator's deadline ended (or left without an end) is ``cut``."""
    connected = fh.established_at
    start = fh.start.t
    failure = fh.failure()
    if failure is not None:
        if failure.kind == "timeout":
            result = f"timeout_{failure.phase}"  # type: ignore[union-attr]
        elif failure.kind in ("refused", "reset"):
            result = failure.kind
        else:  # integrity_error, or a short close
            result = "bad_reply"
        return Outcome(start, connected, failure.t, result, fh.server)
    end = fh.end
    if end is None or end.kind != "closed" or end.reason != "eof":  # type: ignore[union-attr]
        return Outcome(start, connected, None, "cut", fh.server)
    if fh.server is None or not fh.succeeded():
        return Outcome(start, connected, end.t, "bad_reply", fh.server)
    return Outcome(start, connected, end.t, "succeeded", fh.server)


def summarize(history: History | Iterable[FlowHistory]) -> dict[str, Any]:
    """The short-connection summary of a history's TCP flows (or of the given flows):

    ``attempted`` (flows), ``succeeded``, ``failed`` and ``failures`` (by kind: refused,
    timeout_connect, timeout_read, reset, bad_reply), ``cut`` (ended by the generator's deadline:
    neither), ``success_rate`` (succeeded / attempted, None without attempts), ``span_s`` (first
    to last connect call), ``achieved_rate`` (connections opened per second over that span,
    None for fewer than two), ``latency_ms`` (connect call to close, succeeded connections) and
    ``connect_ms`` (connect call to handshake, every connection that connected), each
    ``{p50, p90, p99, max}`` in milliseconds (nearest rank; None when empty), and ``servers``
    (succeeded connections per ``X-Server-Id``).
    """
    flows = history.flows.values() if hasattr(history, "flows") else history
    return summary_of([outcome_of(fh) for fh in flows if fh.start.proto == "tcp"])


# --- one connection -------------------------------------------------------------------------------

REFUSALS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET,
            errno.EHOSTDOWN}  # fmt: skip
"""errnos of a connect call answered by a RST or an ICMP error: a refusal."""


def _check_reply(head: bytes, body: bytes, upload: int = 0) -> tuple[str | None, int | None]:
    """The answering server, and the offset of the first wrong byte of the body (None if the
    reply is right: 200, an ``X-Server-Id``, body ``<id>\\n`` of the announced length, or
    ``<id> <upload>\\n`` after an upload)."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ")
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    server = hdrs.get("x-server-id") or None
    if len(status) < 2 or status[1] != "200" or server is None:
        return server, 0
    want = (f"{server} {upload}\n" if upload else server + "\n").encode("latin-1")
    same = 0
    for a, b in zip(body, want, strict=False):
        if a != b:
            break
        same += 1
    length = hdrs.get("content-length")
    if body != want or (length is not None and length != str(len(body))):
        return server, same
    return server, None


def _reused_port(i: int, args: argparse.Namespace) -> int:
    """Connection ``i``'s fixed local port with ``--reuse-ports`` (the sources take turns, and
    each cycles through the ports), else 0 (the kernel's choice)."""
    if args.reuse_ports is None:
        return 0
    lo, hi = args.reuse_ports
    return lo + (i // len(args.sources.split(","))) % (hi - lo + 1)


async def _connection(i: int, src: str, args: argparse.Namespace, rec: Recorder,
                      outcomes: list[Outcome], counts: dict[str, int]) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    sock = socket.socket(family_of(args.vip), socket.SOCK_STREAM)
    sock.setblocking(False)
    writer: asyncio.StreamWriter | None = None
    start = connected = end = None
    result, server, ended = "cut", None, False
    body = b""

    def fail(kind: str, result_: str, **extra: Any) -> None:
        nonlocal result, end, ended
        end = time.monotonic()
        rec.write(kind=kind, flow=i, t=end, **extra)
        result, ended = result_, True

    try:
        try:
            set_marks(sock, i, args.marks)
            port = _reused_port(i, args)
            if port:
                try:
                    sock.bind((src, port))
                except OSError as e:  # its last connection has not closed yet: a new port
                    if e.errno != errno.EADDRINUSE:
                        raise
                    counts["reuse_busy"] = counts.get("reuse_busy", 0) + 1
                    port = 0
            if not port:
                sock.bind((src, 0))
        except OSError as e:
            counts["bind_errors"] += 1
            counts[f"error:{type(e).__name__}"] = counts.get(f"error:{type(e).__name__}", 0) + 1
            return
        start = time.monotonic()
        rec.write(kind="flow", flow=i, t=start, proto="tcp", src=src,
                  sport=sock.getsockname()[1], dst=args.vip, dport=args.port,
                  **({"request_bytes": args.upload} if args.upload else {}))  # fmt: skip
        try:
            async with asyncio.timeout(args.timeout):
                try:
                    await loop.sock_connect(sock, (args.vip, args.port))
                except OSError as e:
                    if e.errno not in REFUSALS:
                        name = f"error:{type(e).__name__}"
                        counts[name] = counts.get(name, 0) + 1
                    fail("refused", "refused")
                    return
                connected = time.monotonic()
                rec.write(kind="connected", flow=i, t=connected)
                reader, writer = await asyncio.open_connection(sock=sock)
                if args.upload:
                    n = args.upload
                    host = host_header(args.vip)
                    writer.write(f"POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: "
                                 f"{n}\r\nConnection: close\r\n\r\n".encode()
                                 + pattern_bytes(args.seed, i * n, n))  # fmt: skip
                else:
                    writer.write(f"GET /id HTTP/1.1\r\nHost: {host_header(args.vip)}\r\n"
                                 "Connection: close\r\n\r\n".encode())  # fmt: skip
                await writer.drain()
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    head = b""  # closed before a whole head, or a head too large
                else:
                    server, _ = _check_reply(head, b"")
                    rec.write(kind="first_byte", flow=i, t=time.monotonic(), server=server)
                    while len(body) <= MAX_REPLY:
                        chunk = await reader.read(MAX_REPLY)
                        if not chunk:
                            break
                        body += chunk
        except TimeoutError:
            phase = "connect" if connected is None else "read"
            fail("timeout", f"timeout_{phase}", phase=phase, received=len(body))
            return
        server, bad = _check_reply(head, body, args.upload) if head else (None, 0)
        if bad is not None:
            fail("integrity_error", "bad_reply", offset=bad)
        end = time.monotonic()
        rec.write(kind="closed", flow=i, t=end, received=len(body),
                  verified=len(body) if bad is None else bad, reason="eof")  # fmt: skip
        result, ended = ("succeeded" if bad is None else "bad_reply"), True
    except ConnectionResetError:
        fail("reset", "reset", received=len(body))
    except OSError as e:
        name = f"error:{type(e).__name__}"
        counts[name] = counts.get(name, 0) + 1
        fail("reset", "reset", received=len(body))
    except asyncio.CancelledError:
        # The run's deadline: not the target's doing; record it so, if it had connected.
        if connected is not None and not ended:
            rec.write(kind="closed", flow=i, t=time.monotonic(), received=len(body),
                      verified=len(body), reason="deadline")  # fmt: skip
            ended = True
        raise
    finally:
        if writer is not None:
            writer.close()
        else:
            sock.close()
        if start is not None:
            outcomes.append(Outcome(start, connected, end, result, server))


# --- the run --------------------------------------------------------------------------------------


def _lab_or_loopback(args: argparse.Namespace, allow_loopback: bool) -> None:
    addresses = [args.vip, *args.sources.split(",")]
    if allow_loopback and all(ipaddress.ip_address(a).is_loopback for a in addresses):
        return
    problem = outside_lab(addresses) or mixed_families(addresses[0], addresses[1:])
    if problem:
        raise ValueError(f"shortconns: {problem}")


async def run(args: argparse.Namespace, rec: Recorder, *,
              allow_loopback: bool = False) -> dict[str, Any]:  # fmt: skip
    """Open the connections ``args`` asks for, record them in ``rec`` and return the counts and
    the summary. Refuses (ValueError) addresses outside the lab range; ``allow_loopback`` lets
    tests drive it against a local server with every address in 127.0.0.0/8."""
    _lab_or_loopback(args, allow_loopback)
    sources = source_order(args.sources.split(","), args.seed)
    outcomes: list[Outcome] = []
    counts = {"bind_errors": 0}
    start = time.monotonic()
    deadline = start + args.deadline
    stats = await pace(
        schedule(args.rate, args.count, args.duration),
        lambda i: _connection(i, sources[i % len(sources)], args, rec, outcomes, counts),
        start=start,
        stop_at=min(start + args.duration, deadline - args.timeout),
        deadline=deadline,
        max_in_flight=args.max_in_flight,
    )
    return {"opened": stats.opened, "in_flight_max": stats.in_flight_max,
            "lag_max_ms": round(stats.lag_max * 1000, 3), **counts,
            **summary_of(outcomes)}  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dsrconform.traffic.shortconns")
    p.add_argument("--vip", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--sources", required=True, help="comma-separated client addresses")
    p.add_argument("--rate", type=float, default=500.0, help="connections opened per second")
    p.add_argument("--count", type=int, default=5000, help="at most this many connections")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of opening, at most")
    p.add_argument("--timeout", type=float, default=2.0, help="per connection, connect to close")
    p.add_argument("--max-in-flight", type=int, default=512, help="connections open at once")
    p.add_argument("--deadline", type=float, default=None,
                   help="for the whole run (default: duration + timeout + 5)")  # fmt: skip
    p.add_argument("--upload", type=int, default=0, metavar="BYTES",
                   help="POST /upload this many bytes, not GET /id (0: no upload)")  # fmt: skip
    p.add_argument("--reuse-ports", type=_port_range, default=None, metavar="LO-HI",
                   help="bind each connection to one of these local ports, cycling: the same "
                   "5-tuples again and again (keep them out of ip_local_port_range)")  # fmt: skip
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="-", help="history file (JSON lines); - for stdout")
    add_marks_option(p)
    return p


def _port_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi if sep else lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LO-HI, e.g. 30000-30015") from None
    if not 1024 <= a <= b <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 1024 <= LO <= HI <= 65535")
    return a, b


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The arguments, checked (argparse exits 2 on a bad one); the deadline filled in."""
    p = parser()
    args = p.parse_args(argv)
    for name in ("rate", "duration", "timeout"):
        value = getattr(args, name)
        if not (value > 0 and math.isfinite(value)):
            p.error(f"--{name} must be a positive number, not {value}")
    if not 0 <= args.upload <= 64 * 2**20:
        p.error(f"--upload must be in 0..{64 * 2**20} bytes, not {args.upload}")
    if args.count < 0:
        p.error(f"--count must not be negative, not {args.count}")
    if args.max_in_flight < 1:
        p.error(f"--max-in-flight must be at least 1, not {args.max_in_flight}")
    if not 1 <= args.port <= 65535:
        p.error(f"--port must be in 1..65535, not {args.port}")
    if args.deadline is None:
        args.deadline = args.duration + args.timeout + 5.0
    if not (math.isfinite(args.deadline) and args.deadline > args.timeout):
        p.error(f"--deadline must be more than --timeout ({args.timeout} s), not {args.deadline}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not check_targets("shortconns", args):
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, args.max_in_flight + 1024)  # a socket per connection in flight, and slack
    if hard != resource.RLIM_INFINITY:
        want = min(hard, want)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return run_recorded(args, run, stall=args.timeout)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
