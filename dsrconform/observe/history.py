"""Connection histories: what each flow of the traffic saw, as JSON lines, and the flows rebuilt.

A traffic generator appends one record per event as it happens (:func:`write_jsonl` writes a
whole list; a generator may equally write ``record.model_dump_json(exclude_none=True)`` lines
itself). A file is an optional :class:`HistoryHeader`, then for every flow a :class:`FlowStart`
(the 5-tuple, which the generator knows as soon as it binds the socket, before connecting)
followed, in time order, by that flow's events::

    {"kind":"flow","flow":7,"t":1041.25,"proto":"tcp","src":"198.18.1.2","sport":40001,
     "dst":"198.19.0.10","dport":80,"seed":7,"expected_bytes":1000000}
    {"kind":"connected","flow":7,"t":1041.2512}
    {"kind":"first_byte","flow":7,"t":1041.2530,"server":"server2"}
    {"kind":"stall","flow":7,"t":1043.0,"seconds":2.5,"offset":524288}
    {"kind":"closed","flow":7,"t":1047.9,"received":1000000,"verified":1000000}

TCP events: connected, first_byte (with the ``X-Server-Id`` that answered), stall (a gap longer
than the header's ``stall_threshold``; ``t`` is when it began), reset, timeout, refused,
integrity_error (first byte that differs from the stream pattern), closed. UDP events: sent and
reply (with the replying server's id) per datagram. ``t`` is CLOCK_MONOTONIC seconds
(``time.monotonic()``), comparable with tap records and fault windows of the same host.

:func:`load_jsonl` reads the records back; :meth:`History.from_records` (or :func:`load_history`)
groups them into :class:`FlowHistory` objects, which answer what the checkers ask: when was the
flow established, which servers answered, did it break and when.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from dsrconform.errors import ConfigError
from dsrconform.observe.jsonl import read_jsonl, write_jsonl

__all__ = [
    "Closed",
    "Connected",
    "DatagramReply",
    "DatagramSent",
    "FirstByte",
    "FlowEvent",
    "FlowHistory",
    "FlowStart",
    "History",
    "HistoryHeader",
    "HistoryRecord",
    "IntegrityError",
    "Refused",
    "Reset",
    "Stall",
    "Timeout",
    "load_history",
    "load_jsonl",
    "write_history",
    "write_jsonl",
]


# Cached: a lab has few addresses, and a tap file repeats them a million times.
@functools.lru_cache(maxsize=65536)
def ip(value: str) -> str:
    """An IPv4 or IPv6 address in its canonical text form (pydantic validators call this).

    Records keep addresses as canonical strings of either family (dotted quad, or RFC 5952
    compressed IPv6: ``2001:2:0:1::2``), never packed bytes: a string compares equal only to the
    same address, whatever its family, so checkers match records across families without
    knowing which one a flow uses."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address (expected a dotted quad or an IPv6 address)"
        ) from None


Addr = Annotated[str, AfterValidator(ip)]


def hostport(addr: str, port: int | None) -> str:
    """``198.18.1.2:40001``, or ``[2001:2:0:1::2]:40001`` (RFC 3986's brackets: an IPv6
    address's colons would run into the port's); the bare address without a port."""
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


Time = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""CLOCK_MONOTONIC seconds."""
Port = Annotated[int, Field(ge=1, le=65535)]
Count = Annotated[int, Field(ge=0)]
Proto = Literal["tcp", "udp"]
PROTO_NUMBER: dict[str, int] = {"tcp": 6, "udp": 17}


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HistoryHeader(_Record):
    """First line of a history file: who recorded it and with which stall threshold."""

    kind: Literal["header"] = "header"
    version: Literal[1] = 1
    clock: Literal["CLOCK_MONOTONIC"] = "CLOCK_MONOTONIC"
    node: str
    """The client node the traffic ran in."""
    t: Time
    """When recording started."""
    stall_threshold: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    """Seconds without data after which a gap is recorded as a stall."""
    seed: int | None = None
    """The traffic's seed: a run is reproducible from it."""


class FlowStart(_Record):
    """A flow begins: the attempt to connect (TCP) or the first datagram (UDP) is about to go."""

    kind: Literal["flow"] = "flow"
    flow: Count
    """Identifier of the flow, unique within the file."""
    t: Time
    proto: Proto
    src: Addr
    """The client source address."""
    sport: Port
    dst: Addr
    """The address the client addressed: a VIP, or another address for non-VIP traffic."""
    dport: Port
    seed: int | None = None
    """Seed of the stream pattern the server sends (TCP streams)."""
    expected_bytes: Count | None = None
    """Bytes the server should send (the stream's Content-Length), when known in advance."""
    request_bytes: Count = 0
    """Bytes the client sends after its request line (uploads; encapsulation-overhead tests)."""

    def describe(self) -> str:
        src, dst = hostport(self.src, self.sport), hostport(self.dst, self.dport)
        return f"{self.proto} {src} > {dst} (flow {self.flow})"


class _Event(_Record):
    flow: Count
    t: Time


class Connected(_Event):
    """The TCP handshake completed."""

    kind: Literal["connected"] = "connected"


class FirstByte(_Event):
    """The first response byte arrived; ``server`` is the ``X-Server-Id`` that answered."""

    kind: Literal["first_byte"] = "first_byte"
    server: str | None = None


class Stall(_Event):
    """No data for ``seconds`` (over the header's threshold), starting at ``t``, at ``offset``."""

    kind: Literal["stall"] = "stall"
    seconds: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    offset: Count


class Reset(_Event):
    """The connection was reset after ``received`` bytes."""

    kind: Literal["reset"] = "reset"
    received: Count = 0


class Timeout(_Event):
    """The connection timed out while connecting or reading, after ``received`` bytes."""

    kind: Literal["timeout"] = "timeout"
    phase: Literal["connect", "read"] = "read"
    received: Count = 0


class Refused(_Event):
    """The connection was refused (a RST or ICMP unreachable answered the SYN)."""

    kind: Literal["refused"] = "refused"


class IntegrityError(_Event):
    """Byte ``offset`` of the stream differs from the pattern (the first such byte)."""

    kind: Literal["integrity_error"] = "integrity_error"
    offset: Count


class Closed(_Event):
    """The stream ended: ``received`` bytes arrived, of which ``verified`` matched the pattern.

    ``reason``: ``eof`` when the server closed it, ``deadline`` when the traffic generator cut
    it at the end of its run (then a short stream is the harness's doing, not a break).
    """

    kind: Literal["closed"] = "closed"
    received: Count
    verified: Count
    reason: Literal["eof", "deadline"] = "eof"


class DatagramSent(_Event):
    """UDP datagram ``seq`` of the flow was sent."""

    kind: Literal["sent"] = "sent"
    seq: Count


class DatagramReply(_Event):
    """The reply to datagram ``seq`` arrived from ``server`` (its id in the reply)."""

    kind: Literal["reply"] = "reply"
    seq: Count
    server: str


FlowEvent = (
    Connected
    | FirstByte
    | Stall
    | Reset
    | Timeout
    | Refused
    | IntegrityError
    | Closed
    | DatagramSent
    | DatagramReply
)
HistoryRecord = Annotated[HistoryHeader | FlowStart | FlowEvent, Field(discriminator="kind")]
HISTORY_RECORD: TypeAdapter[HistoryRecord] = TypeAdapter(HistoryRecord)  # type: ignore[arg-type]

TERMINAL = (Closed, Reset, Timeout, Refused)
"""Events after which a flow carries no more data."""


def load_jsonl(path: str | Path) -> list[HistoryRecord]:
    """Every record of a history file, in file order (ConfigError names a bad line)."""
    return read_jsonl(
        path, HISTORY_RECORD, what="history record", kinds_in="dsrconform.observe.history"
    )


def load_history(path: str | Path) -> History:
    """A history file grouped into flows."""
    return History.from_records(load_jsonl(path), source=str(path))


@dataclass
class FlowHistory:
    """One flow and its events, in time order."""

    start: FlowStart
    events: list[FlowEvent] = field(default_factory=list)
    _memo: dict[str, tuple[int, Any]] = field(default_factory=dict, repr=False, compare=False)
    """Answers derived from the events, valid while their count is unchanged (the checkers ask
    the same questions of every flow, several times)."""

    def _cached(self, name: str, compute: Callable[[], Any]) -> Any:
        n = len(self.events)
        hit = self._memo.get(name)
        if hit is not None and hit[0] == n:
            return hit[1]
        value = compute()
        self._memo[name] = (n, value)
        return value

    @property
    def id(self) -> int:
        return self.start.flow

    @property
    def proto_number(self) -> int:
        return PROTO_NUMBER[self.start.proto]

    @property
    def endpoint(self) -> tuple[int, str, int]:
        """The client's end: (protocol number, source address, source port)."""
        return self.proto_number, self.start.src, self.start.sport

    def describe(self) -> str:
        return self.start.describe()

    @property
    def established_at(self) -> float | None:
        """When the flow could carry data: the handshake (TCP) or the first reply (UDP)."""
        want = Connected if self.start.proto == "tcp" else DatagramReply
        return next((e.t for e in self.events if isinstance(e, want)), None)

    @property
    def end(self) -> Closed | Reset | Timeout | Refused | None:
        """The event that ended the flow, if any."""
        found: Closed | Reset | Timeout | Refused | None = self._cached(
            "end", lambda: next((e for e in self.events if isinstance(e, TERMINAL)), None)
        )
        return found

    @property
    def ended_at(self) -> float | None:
        end = self.end
        return end.t if end is not None else None

    @property
    def last_t(self) -> float:
        return self.events[-1].t if self.events else self.start.t

    @property
    def servers(self) -> list[tuple[float, str]]:
        """Every (time, server id) that answered, in order (shared: do not modify it)."""
        found: list[tuple[float, str]] = self._cached("servers", self._servers)
        return found

    def _servers(self) -> list[tuple[float, str]]:
        return [
            (e.t, e.server)
            for e in self.events
            if isinstance(e, FirstByte | DatagramReply) and e.server is not None
        ]

    @property
    def server(self) -> str | None:
        """The first server that answered."""
        found = self.servers
        return found[0][1] if found else None

    def breaks(self) -> list[FlowEvent]:
        """Events that broke the connection: reset, timeout (after connecting), integrity error,
        or a close short of the expected bytes or with unverified bytes. Refusals and connect
        timeouts are failed attempts, not breaks (see :meth:`failure`)."""
        out: list[FlowEvent] = []
        for e in self.events:
            broke = isinstance(e, Reset | IntegrityError)
            timed_out = isinstance(e, Timeout) and e.phase == "read"
            if broke or timed_out or (isinstance(e, Closed) and self.short_close(e)):
                out.append(e)
        return out

    def short_close(self, e: Closed) -> bool:
        """Did this close end the stream early, or with bytes that failed verification?"""
        if e.verified < e.received:
            return True
        expected = self.start.expected_bytes
        return e.reason == "eof" and expected is not None and e.verified != expected

    def first_break(self, since: float, until: float) -> FlowEvent | None:
        """The first break with ``since <= t <= until``."""
        return next((e for e in self.breaks() if since <= e.t <= until), None)

    def failure(self) -> FlowEvent | None:
        """Why the flow did not succeed: a refusal, a timeout or any break; None if it did."""
        for e in self.events:
            if isinstance(e, Refused | Timeout):
                return e
        found = self.breaks()
        return found[0] if found else None

    def succeeded(self) -> bool:
        """Established and never broken (a TCP flow may still be open at the history's end)."""
        return self.established_at is not None and self.failure() is None

    def alive_at(self, t: float) -> bool:
        """Established before ``t`` and not ended before it."""
        est = self.established_at
        ended = self.ended_at
        return est is not None and est < t and (ended is None or ended >= t)


@dataclass
class History:
    """The flows of one or more history files (flow ids must not collide)."""

    flows: dict[int, FlowHistory] = field(default_factory=dict)
    headers: list[HistoryHeader] = field(default_factory=list)

    @classmethod
    def from_records(cls, records: Iterable[HistoryRecord], *, source: str = "history") -> History:
        """Group records into flows; ConfigError for an event of an undeclared flow, a flow
        declared twice, or time going backwards within a flow (not a monotonic clock)."""
        h = cls()
        for i, rec in enumerate(records, 1):
            if isinstance(rec, HistoryHeader):
                h.headers.append(rec)
            elif isinstance(rec, FlowStart):
                if rec.flow in h.flows:
                    raise ConfigError(
                        f"{source}: record {i}: flow {rec.flow} is declared twice; fix: give "
                        "every flow its own id (merge files with distinct id ranges)"
                    )
                h.flows[rec.flow] = FlowHistory(rec)
            else:
                fh = h.flows.get(rec.flow)
                if fh is None:
                    raise ConfigError(
                        f"{source}: record {i}: {rec.kind} event for flow {rec.flow}, which no "
                        "earlier 'flow' record declares; fix: write the flow record first"
                    )
                if rec.t < fh.last_t:
                    raise ConfigError(
                        f"{source}: record {i}: {rec.kind} of flow {rec.flow} at t={rec.t} is "
                        f"earlier than its previous record (t={fh.last_t}); fix: timestamps "
                        "must come from time.monotonic() and be written in order"
                    )
                fh.events.append(rec)
        return h

    @classmethod
    def merge(cls, parts: Iterable[History]) -> History:
        """One history of several (one per generator, each numbering its flows from 0): flow
        ids are renumbered, part by part, after the previous part's largest id."""
        out = cls()
        base = 0
        for part in parts:
            out.headers += part.headers
            for fid, fh in part.flows.items():
                new = base + fid
                moved = FlowHistory(fh.start.model_copy(update={"flow": new}))
                moved.events = [e.model_copy(update={"flow": new}) for e in fh.events]
                out.flows[new] = moved
            base += max(part.flows, default=-1) + 1
        return out

    def records(self) -> Iterator[HistoryRecord]:
        """Headers, then each flow's start and events (the order :meth:`from_records` needs)."""
        yield from self.headers
        for fh in self.flows.values():
            yield fh.start
            yield from fh.events

    @property
    def end_time(self) -> float | None:
        """The last timestamp recorded (None for an empty history)."""
        if not self.flows:
            return None
        return max(fh.last_t for fh in self.flows.values())

    @property
    def stall_threshold(self) -> float | None:
        return min((hd.stall_threshold for hd in self.headers), default=None)

    def of_proto(self, proto: Proto) -> list[FlowHistory]:
        return [fh for fh in self.flows.values() if fh.start.proto == proto]

    def __len__(self) -> int:
        return len(self.flows)


def write_history(path: str | Path, history: History) -> int:
    """Write a grouped history back to a file (see :func:`write_jsonl`)."""
    return write_jsonl(path, history.records())
