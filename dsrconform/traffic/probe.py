"""Short traffic probes run inside a lab node: many verified HTTP streams, or UDP flows.

Run as ``python -m dsrconform.traffic.probe http|udp ...`` inside the client's namespace (the lab
does: ``lab.run("client", [sys.executable, "-m", "dsrconform.traffic.probe", ...])``). It prints
one JSON document: per connection or flow, the source, the server that answered (``X-Server-Id``
or the UDP reply's id), the bytes verified, and the error if any. Every run is bounded: a total
deadline, a per-connection timeout, and a fixed number of connections or datagrams.

Only lab addresses are accepted (198.18.0.0/15, 2001:2::/48): the probe refuses any other
destination.

It needs only the standard library: on the docker backend it runs with the node image's
``python3``, which has no third-party packages (so no ``dsrconform.configfile``, which needs
pydantic and PyYAML).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from typing import Any

from dsrconform.streampattern import PatternVerifier
from dsrconform.traffic.common import check_targets, family_of, host_header


async def _http_one(i: int, src: str, vip: str, port: int, nbytes: int, timeout: float,
                    sem: asyncio.Semaphore) -> dict[str, Any]:  # fmt: skip
    rec: dict[str, Any] = {"i": i, "src": src, "server": None, "verified": 0, "error": None}
    async with sem:
        start = time.monotonic()
        writer = None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(vip, port, local_addr=(src, 0))
                rec["sport"] = writer.get_extra_info("sockname")[1]
                writer.write(
                    f"GET /stream?seed={i}&bytes={nbytes} HTTP/1.1\r\nHost: {host_header(vip)}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = lines[0].split(" ")[1] if " " in lines[0] else "?"
                hdrs = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
                rec["server"] = hdrs.get("x-server-id")
                if status != "200":
                    rec["error"] = f"status {status}"
                    return rec
                ver = PatternVerifier(seed=i)
                while ver.received < nbytes:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    ver.feed(chunk)
                rec["verified"] = ver.received
                if ver.error_offset is not None:
                    rec["error"] = f"integrity error at byte {ver.error_offset}"
                elif ver.received != nbytes:
                    rec["error"] = f"short: {ver.received} of {nbytes} bytes"
        except TimeoutError:
            rec["error"] = "timeout"
        except (OSError, asyncio.IncompleteReadError) as e:
            rec["error"] = f"{type(e).__name__}: {e}"
        finally:
            rec["seconds"] = round(time.monotonic() - start, 4)
            if writer is not None:
                writer.close()
    return rec


async def _http(args: argparse.Namespace) -> list[dict[str, Any]]:
    sem = asyncio.Semaphore(args.parallel)
    sources = args.sources.split(",")
    jobs = [
        _http_one(i, sources[i % len(sources)], args.vip, args.port, args.bytes, args.timeout, sem)
        for i in range(args.conns)
    ]
    tasks = [asyncio.ensure_future(j) for j in jobs]
    done, pending = await asyncio.wait(tasks, timeout=args.deadline)
    for t in pending:  # over the run's deadline: stop them, and say so in their records
        t.cancel()
    out = []
    for i, t in enumerate(tasks):
        if t in done and not t.cancelled() and t.exception() is None:
            out.append(t.result())
        else:
            out.append({"i": i, "src": sources[i % len(sources)], "server": None,
                        "verified": 0, "error": "deadline"})  # fmt: skip
    return out


def _udp(args: argparse.Namespace) -> list[dict[str, Any]]:
    sources = args.sources.split(",")
    out = []
    deadline = time.monotonic() + args.deadline
    for i in range(args.flows):
        src = sources[i % len(sources)]
        rec: dict[str, Any] = {"i": i, "src": src, "servers": [], "lost": 0}
        with socket.socket(family_of(args.vip), socket.SOCK_DGRAM) as s:
            s.bind((src, 0))
            s.settimeout(args.timeout)
            rec["sport"] = s.getsockname()[1]
            for n in range(args.count):
                if time.monotonic() > deadline:
                    break
                payload = f"flow {i} datagram {n}".encode()
                try:
                    s.sendto(payload, (args.vip, args.port))
                    data, _ = s.recvfrom(2048)
                    server, _, echo = data.partition(b" ")
                    if echo != payload[:64]:
                        rec.setdefault("mismatched", 0)
                        rec["mismatched"] += 1  # a late reply to an earlier datagram
                        continue
                    rec["servers"].append(server.decode(errors="replace"))
                except (TimeoutError, OSError):
                    rec["lost"] += 1
        out.append(rec)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dsrconform.traffic.probe")
    sub = p.add_subparsers(dest="kind", required=True)
    for kind in ("http", "udp"):
        q = sub.add_parser(kind)
        q.add_argument("--vip", required=True)
        q.add_argument("--port", type=int, required=True)
        q.add_argument("--sources", required=True, help="comma-separated source addresses")
        q.add_argument("--timeout", type=float, default=10.0, help="per connection / reply")
        q.add_argument("--deadline", type=float, default=120.0, help="for the whole run")
    h = sub.choices["http"]
    h.add_argument("--conns", type=int, default=100)
    h.add_argument("--bytes", type=int, default=10000)
    h.add_argument("--parallel", type=int, default=100)
    u = sub.choices["udp"]
    u.add_argument("--flows", type=int, default=20)
    u.add_argument("--count", type=int, default=5)
    args = p.parse_args(argv)
    if not check_targets("probe", args):
        return 2
    result = asyncio.run(_http(args)) if args.kind == "http" else _udp(args)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
