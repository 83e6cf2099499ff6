"""UDP flows: many 5-tuples sending periodically to a UDP VIP, each reply's server recorded.

Run inside a client node, like :mod:`dsrconform.traffic.streams` (standard library only). Each
flow is one socket bound to a client source: it sends ``--count`` datagrams, one every
``--interval`` seconds, each carrying its flow and sequence number, and matches every reply to
its datagram by the echo the reference app (and any conforming target) sends back
(``<server-id> <first 64 bytes of the request>``). Records go out as JSON lines in the
:mod:`dsrconform.observe.history` format: a ``flow`` record per 5-tuple, then ``sent`` and
``reply`` (with the server id) per datagram; an unanswered datagram has no reply record.

With ``--no-checksum-every K``, every K-th flow starts its datagrams with ``nocsum ``, which the
reference app answers without a UDP checksum (a rewrite must keep such a checksum 0).

Bounded: ``--flows`` x ``--count`` datagrams and a ``--deadline`` for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time

from dsrconform.traffic.common import (
    Recorder,
    add_marks_option,
    check_targets,
    family_of,
    run_recorded,
    set_marks,
)


class _Flow(asyncio.DatagramProtocol):
    def __init__(self, i: int, rec: Recorder, counts: dict[str, int]) -> None:
        self.i, self.rec, self.counts = i, rec, counts
        self.sent: dict[bytes, int] = {}  # payload[:64] -> seq

    def datagram_received(self, data: bytes, addr: object) -> None:
        server, _, echo = data.partition(b" ")
        seq = self.sent.pop(echo[:64], None)
        if seq is None:
            self.counts["unmatched"] += 1  # a duplicate, or not an answer to us
            return
        self.rec.write(kind="reply", flow=self.i, t=time.monotonic(), seq=seq,
                       server=server.decode(errors="replace") or "?")  # fmt: skip
        self.counts["replies"] += 1


async def _run_flow(i: int, args: argparse.Namespace, src: str, rec: Recorder,
                    counts: dict[str, int], deadline: float) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    sock = socket.socket(family_of(args.vip), socket.SOCK_DGRAM)
    set_marks(sock, i, args.marks)
    sock.bind((src, 0))
    transport, proto = await loop.create_datagram_endpoint(lambda: _Flow(i, rec, counts), sock=sock)
    try:
        rec.write(kind="flow", flow=i, t=time.monotonic(), proto="udp", src=src,
                  sport=sock.getsockname()[1], dst=args.vip, dport=args.port,
                  seed=args.seed)  # fmt: skip
        start = time.monotonic()
        for seq in range(args.count):
            due = start + seq * args.interval
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())  # pacing the flow's datagrams
            if time.monotonic() > deadline:
                break
            ask = "nocsum " if args.no_checksum_every and i % args.no_checksum_every == 0 else ""
            payload = f"{ask}seed {args.seed} flow {i} datagram {seq}".encode()
            proto.sent[payload[:64]] = seq
            try:
                transport.sendto(payload, (args.vip, args.port))
            except OSError:
                counts["send_errors"] += 1
                continue
            rec.write(kind="sent", flow=i, t=time.monotonic(), seq=seq)
            counts["sent"] += 1
        # Wait (bounded) for the last replies.
        end = min(deadline, time.monotonic() + args.timeout)
        while proto.sent and time.monotonic() < end:
            await asyncio.sleep(0.01)  # replies arrive on the event loop; bounded by `end`
    finally:
        transport.close()


async def run(args: argparse.Namespace, rec: Recorder) -> dict[str, int]:
    sources = args.sources.split(",")
    counts = dict.fromkeys(("sent", "replies", "unmatched", "send_errors"), 0)
    deadline = time.monotonic() + args.deadline
    await asyncio.gather(*(
        _run_flow(i, args, sources[i % len(sources)], rec, counts, deadline)
        for i in range(args.flows)
    ))  # fmt: skip
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dsrconform.traffic.udpflows")
    p.add_argument("--vip", required=True)
    p.add_argument("--port", type=int, default=7)
    p.add_argument("--sources", required=True, help="comma-separated client addresses")
    p.add_argument("--flows", type=int, default=100)
    p.add_argument("--count", type=int, default=10, help="datagrams per flow")
    p.add_argument("--interval", type=float, default=0.1, help="seconds between a flow's sends")
    p.add_argument("--timeout", type=float, default=2.0, help="wait for the last replies")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--no-checksum-every",
        type=int,
        default=0,
        metavar="K",
        help="every K-th flow asks for replies without a UDP checksum (0: none)",
    )
    p.add_argument("--deadline", type=float, default=120.0)
    p.add_argument("--out", default="-")
    add_marks_option(p)
    args = p.parse_args(argv)
    if not check_targets("udpflows", args):
        return 2
    return run_recorded(args, run)


if __name__ == "__main__":
    sys.exit(main())
