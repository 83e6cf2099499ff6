"""What the traffic programs share: the lab-range check, the history recorder and the run
harness that writes a history file. Standard library only: these programs also run inside
docker nodes, whose image has no pydantic (dsrconform.configfile holds the same range for
topology files)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

LAB_NET = ipaddress.IPv4Network("198.18.0.0/15")
LAB_NET6 = ipaddress.IPv6Network("2001:2::/48")
"""The lab ranges of each family (as dsrconform.configfile's LAB_NET and LAB_NET6)."""


def outside_lab(addresses: list[str]) -> str | None:
    """A message naming the first address that is not in its family's lab range, or None."""
    for a in addresses:
        try:
            addr = ipaddress.ip_address(a)
        except ValueError:
            return f"{a!r} is not an IP address (expected a dotted quad or an IPv6 address)"
        net = LAB_NET if addr.version == 4 else LAB_NET6
        if addr not in net:
            return f"address {a} is outside the lab range {net}"
    return None


def mixed_families(vip: str, sources: list[str]) -> str | None:
    """A message naming the first source whose family is not the VIP's, or None (addresses
    already checked)."""
    version = ipaddress.ip_address(vip).version
    for a in sources:
        if ipaddress.ip_address(a).version != version:
            return f"source {a} is not of the VIP {vip}'s family (IPv{version})"
    return None


def family_of(addr: str) -> socket.AddressFamily:
    """The socket family for ``addr``: AF_INET6 for an IPv6 address, else AF_INET."""
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


def host_header(addr: str) -> str:
    """An address as an HTTP Host (RFC 7230: an IPv6 literal in brackets)."""
    return f"[{addr}]" if ":" in addr else addr


def check_targets(prog: str, args: argparse.Namespace) -> bool:
    """``--vip`` and every ``--sources`` address in the lab range of its family, the sources of
    the VIP's family; else say so on stderr."""
    sources = args.sources.split(",")
    problem = outside_lab([args.vip, *sources]) or mixed_families(args.vip, sources)
    if problem:
        print(f"{prog}: {problem}", file=sys.stderr)
    return problem is None


Mark = tuple[int, int]
"""(TOS byte: DSCP << 2 | ECN, TTL) a connection's packets leave with (IPv6: traffic class and
hop limit)."""


def parse_marks(text: str) -> list[Mark]:
    """``--marks TOS:TTL,...`` (argparse type): the header marks connections cycle through."""
    out = []
    for part in filter(None, text.split(",")):
        try:
            tos, ttl = (int(x, 0) for x in part.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r}: expected TOS:TTL, e.g. 0:64,0x2a:255"
            ) from None
        if not (0 <= tos <= 255 and 1 <= ttl <= 255):
            raise argparse.ArgumentTypeError(f"{part!r}: TOS 0-255 and TTL 1-255")
        out.append((tos, ttl))
    return out


def set_marks(sock: socket.socket, i: int, marks: list[Mark]) -> None:
    """Give connection ``i``'s socket the ``i``-th mark, cycling (none: the kernel's defaults).
    On a TCP socket the kernel keeps the DSCP and sets the ECN bits itself: ECT(0) on the
    packets of a connection that negotiated ECN (the lab's clients ask for it: net.ipv4.tcp_ecn
    = 1), Not-ECT otherwise; a UDP socket sends the whole TOS byte as given."""
    if not marks:
        return
    tos, ttl = marks[i % len(marks)]
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tos)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
        return
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)


def add_marks_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--marks",
        type=parse_marks,
        default=[],
        metavar="TOS:TTL,...",
        help="IP TOS and TTL per connection, cycling (default: the kernel's)",
    )


class Recorder:
    """Writes history records as JSON lines (buffered; flushed at the end and every 1000)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.n = 0

    def write(self, **rec: Any) -> None:
        self.out.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.n += 1
        if self.n % 1000 == 0:
            self.out.flush()


def run_recorded(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, Recorder], Coroutine[Any, Any, dict[str, int]]],
    *, stall: float = 1.0,
) -> int:  # fmt: skip
    """Write a history header to ``args.out`` ("-": stdout), run ``run(args, recorder)``, and
    print its counts as one JSON line on stderr."""
    out = sys.stdout if args.out == "-" else open(args.out, "w")  # noqa: SIM115
    try:
        rec = Recorder(out)
        rec.write(kind="header", node=socket.gethostname(), t=time.monotonic(),
                  stall_threshold=stall, seed=args.seed)  # fmt: skip
        counts = asyncio.run(run(args, rec))
    finally:
        out.flush()
        if out is not sys.stdout:
            out.close()
    print(json.dumps(counts), file=sys.stderr)
    if counts.get("generator_errors"):
        print(f"{counts['generator_errors']} flows failed inside this generator (a bug, see the "
              "tracebacks above): its history is incomplete", file=sys.stderr)  # fmt: skip
        return 3
    return 0
