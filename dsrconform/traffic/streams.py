"""Long-lived verified streams: N concurrent TCP connections to a VIP's ``/stream`` endpoint.

Run inside a client node (``lab.run(client, [lab.python, "-m", "dsrconform.traffic.streams",
...])``); standard library only, so it also runs in a docker node's image. Each connection binds
a client source, connects, asks ``GET /stream?seed=S&bytes=N&rate=R``, verifies every byte it
receives against the pattern (:mod:`dsrconform.streampattern`) and records, as JSON lines in the
format of :mod:`dsrconform.observe.history`: the flow (its 5-tuple, known before connecting),
connected, first_byte (with the ``X-Server-Id`` that answered), stall (no byte for longer than
``--stall``), reset, timeout, refused, integrity_error, closed. ``t`` is ``time.monotonic()``.

Bounded in count and time: ``--conns`` connections opened at ``--open-rate`` per second, each
with a read timeout, and a ``--deadline`` for the whole run after which every connection still
open is closed (and recorded as such). Reproducible: seeds derive from ``--seed``. Refuses any
destination or source outside the lab ranges (198.18.0.0/15, 2001:2::/48), or sources of another
family than the VIP's (IPv6 VIPs: AF_INET6 sockets).

    python -m dsrconform.traffic.streams --vip 198.19.0.10 --port 80 --conns 10000 \\
        --bytes 200000 --rate 20000 --open-rate 2000 --sources 198.18.1.1,... --out h.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import sys
import time
import traceback
from collections.abc import Callable

from dsrconform.streampattern import SEED_MAX, PatternVerifier
from dsrconform.traffic.common import (
    Recorder,
    add_marks_option,
    check_targets,
    family_of,
    host_header,
    run_recorded,
    set_marks,
)

READ_CHUNK = 65536


async def _stream(i: int, args: argparse.Namespace, src: str, rec: Recorder,
                  stop: asyncio.Event, counts: dict[str, int]) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    seed = (args.seed * 1_000_003 + i) % (SEED_MAX + 1)  # any --seed gives pattern seeds
    sock = socket.socket(family_of(args.vip), socket.SOCK_STREAM)
    sock.setblocking(False)
    writer = None
    received = 0
    try:
        set_marks(sock, i, args.marks)
        sock.bind((src, 0))
        rec.write(kind="flow", flow=i, t=time.monotonic(), proto="tcp", src=src,
                  sport=sock.getsockname()[1], dst=args.vip, dport=args.port, seed=seed,
                  expected_bytes=args.bytes)  # fmt: skip
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (args.vip, args.port)), args.timeout)
        except TimeoutError:
            rec.write(kind="timeout", flow=i, t=time.monotonic(), phase="connect")
            counts["timeout"] += 1
            return
        except ConnectionRefusedError:
            rec.write(kind="refused", flow=i, t=time.monotonic())
            counts["refused"] += 1
            return
        rec.write(kind="connected", flow=i, t=time.monotonic())
        reader, writer = await asyncio.open_connection(sock=sock)
        host = host_header(args.vip)
        writer.write(f"GET /stream?seed={seed}&bytes={args.bytes}&rate={args.rate} HTTP/1.1\r\n"
                     f"Host: {host}\r\nConnection: close\r\n\r\n".encode())  # fmt: skip
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), args.timeout)
        lines = head.decode("latin-1").split("\r\n")
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        rec.write(kind="first_byte", flow=i, t=time.monotonic(), server=hdrs.get("x-server-id"))
        status = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "?"
        if status != "200":  # the server refused the stream: not one byte of it will verify
            rec.write(kind="integrity_error", flow=i, t=time.monotonic(), offset=0)
            counts["integrity_error"] += 1
            return
        ver = PatternVerifier(seed=seed)
        last = time.monotonic()
        reported_error = False
        while received < args.bytes and not stop.is_set():
            read = asyncio.ensure_future(reader.read(READ_CHUNK))
            done, _ = await asyncio.wait({read}, timeout=args.timeout)
            if not done:
                read.cancel()
                rec.write(kind="timeout", flow=i, t=time.monotonic(), phase="read",
                          received=received)  # fmt: skip
                counts["timeout"] += 1
                return
            chunk = read.result()
            now = time.monotonic()
            if now - last > args.stall:
                rec.write(kind="stall", flow=i, t=last, seconds=round(now - last, 6),
                          offset=received)  # fmt: skip
            last = now
            if not chunk:
                break
            ver.feed(chunk)
            received += len(chunk)
            if ver.error_offset is not None and not reported_error:
                rec.write(kind="integrity_error", flow=i, t=now, offset=ver.error_offset)
                counts["integrity_error"] += 1
                reported_error = True
        verified = received if ver.error_offset is None else ver.error_offset
        # "deadline": this generator cut the stream at its run deadline, not the server or the
        # network; checkers must not read the missing bytes as a broken connection.
        reason = "deadline" if stop.is_set() and received < args.bytes else "eof"
        rec.write(kind="closed", flow=i, t=time.monotonic(), received=received,
                  verified=verified, reason=reason)  # fmt: skip
        counts["closed"] += 1
    except ConnectionResetError:
        rec.write(kind="reset", flow=i, t=time.monotonic(), received=received)
        counts["reset"] += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
        rec.write(kind="reset", flow=i, t=time.monotonic(), received=received)
        counts["reset"] += 1
        counts.setdefault(f"error:{type(e).__name__}", 0)
        counts[f"error:{type(e).__name__}"] += 1
    except Exception:  # a bug of this generator, not the stack's: fail the run loudly
        traceback.print_exc(file=sys.stderr)
        counts["generator_errors"] = counts.get("generator_errors", 0) + 1
    finally:
        if writer is not None:
            writer.close()
        else:
            sock.close()


async def run(
    args: argparse.Namespace,
    rec: Recorder,
    progress: Callable[[dict[str, int]], None] | None = None,
) -> dict[str, int]:
    sources = args.sources.split(",")
    stop = asyncio.Event()
    counts = dict.fromkeys(("opened", "closed", "reset", "timeout", "refused",
                            "integrity_error"), 0)  # fmt: skip
    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    deadline = start + args.deadline

    async def opener() -> None:
        for i in range(args.conns):
            due = start + i / args.open_rate if args.open_rate > 0 else start
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())  # pacing the opening rate
            if time.monotonic() > deadline:
                return
            t = asyncio.create_task(_stream(i, args, sources[i % len(sources)], rec, stop, counts))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            counts["opened"] += 1

    open_task = asyncio.create_task(opener())
    while not (open_task.done() and not tasks):
        await asyncio.sleep(0.2)  # a progress tick, bounded by the deadline below
        if progress:
            progress(counts)
        if time.monotonic() > deadline:
            stop.set()
            open_task.cancel()
            if tasks:
                await asyncio.wait(set(tasks), timeout=args.timeout + 5)
            break
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dsrconform.traffic.streams")
    p.add_argument("--vip", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--sources", required=True, help="comma-separated client addresses")
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--bytes", type=int, default=100_000, help="per stream")
    p.add_argument("--rate", type=int, default=0, help="bytes/s per stream (0: unlimited)")
    p.add_argument("--open-rate", type=float, default=500.0, help="connections opened per second")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stall", type=float, default=1.0, help="a gap longer than this is a stall")
    p.add_argument("--timeout", type=float, default=10.0, help="connect / read timeout")
    p.add_argument("--deadline", type=float, default=300.0, help="for the whole run")
    p.add_argument("--out", default="-", help="history file (JSON lines); - for stdout")
    add_marks_option(p)
    args = p.parse_args(argv)
    if not check_targets("streams", args):
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.conns + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return run_recorded(args, run, stall=args.stall)


if __name__ == "__main__":
    sys.exit(main())
