"""Synthetic observations for the checker tests: a small lab, and a run that records flows.

:class:`Run` accumulates connection-history records, tap records and fault windows the way a
real run of ``labs/basic.yaml``-like lab would produce them; :meth:`Run.conn` records one TCP
connection end to end (history events, and the packets every tap on its path saw), so a test
states the healthy run in a few lines and then injects exactly the fault it is about.

Roles: ``client`` (198.18.1.2-5), ``router``, ``mux1`` (198.18.10.1), ``mux2`` (198.18.10.5),
``server1..3`` (198.18.20.1-3), ``gw``. Services: ``web`` 198.19.0.10:80/tcp, ``echo``
198.19.0.11:7/udp, ``edge`` 198.19.0.12:80/tcp announced by mux2 only (a per-MUX VIP). Taps
(``client-out``, ``client-in``, ``mux1-in``, ``mux1-out``, ``server1-in``, ``server1-out``, ...)
sit on each node's uplink, named by node and direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dsrconform.observe.history import (
    Closed,
    Connected,
    DatagramReply,
    DatagramSent,
    FirstByte,
    FlowStart,
    History,
    HistoryHeader,
    HistoryRecord,
    IntegrityError,
    Refused,
    Reset,
    Stall,
    Timeout,
)
from dsrconform.observe.observations import FaultWindow, LabFacts, Observations, ServiceFacts
from dsrconform.observe.taps import FiveTuple, TapFlow, TapInfo, TapSet

CLIENT = "198.18.1.2"
WEB, UDP_VIP, EDGE = "198.19.0.10", "198.19.0.11", "198.19.0.12"
MUX_ADDR = {"mux1": "198.18.10.1", "mux2": "198.18.10.5"}
SERVER_ADDR = {f"server{i}": f"198.18.20.{i}" for i in (1, 2, 3)}
SERVERS = list(SERVER_ADDR)
MUXES = list(MUX_ADDR)

LAB = LabFacts(
    roles={
        "client": "client",
        "router": "router",
        "mux1": "mux",
        "mux2": "mux",
        "server1": "server",
        "server2": "server",
        "server3": "server",
        "gw": "gateway",
    },
    addresses={
        "client": ["198.18.1.1", CLIENT, "198.18.1.3", "198.18.1.4", "198.18.1.5"],
        "router": ["198.18.1.254", "198.18.10.2", "198.18.10.6", "198.18.20.254"],
        "mux1": [MUX_ADDR["mux1"]],
        "mux2": [MUX_ADDR["mux2"]],
        **{n: [a] for n, a in SERVER_ADDR.items()},
        "gw": ["198.18.20.253"],
    },
    services=[
        ServiceFacts(name="web", vip=WEB, port=80, proto="tcp"),
        ServiceFacts(name="echo", vip=UDP_VIP, port=7, proto="udp"),
        ServiceFacts(name="edge", vip=EDGE, port=80, proto="tcp", muxes=["mux2"]),
    ],
    client_networks=["198.18.200.0/21", "198.18.208.0/21"],
    probe_networks=["198.18.208.0/21"],
)

# tap name -> (node, peer, direction)
TAP_POINTS: dict[str, tuple[str, str, str]] = {
    "client-out": ("client", "router", "egress"),
    "client-in": ("client", "router", "ingress"),
    **{
        f"{m}-{d}": (m, "router", "ingress" if d == "in" else "egress")
        for m in MUXES
        for d in ("in", "out")
    },
    **{
        f"{s}-{d}": (s, "router", "ingress" if d == "in" else "egress")
        for s in SERVERS
        for d in ("in", "out")
    },
}


def tap_info(name: str, *, lost: int = 0, malformed: int = 0) -> TapInfo:
    node, peer, direction = TAP_POINTS[name]
    return TapInfo(
        tap=name,
        node=node,
        ifname="dsrc-router",
        link=f"link-{node}",
        peer=peer,
        direction=direction,  # type: ignore[arg-type]
        started=0.0,
        stopped=1000.0,
        lost_records=lost,
        malformed=malformed,
    )


def tcp(src: str, sport: int, dst: str, dport: int) -> FiveTuple:
    return FiveTuple(proto=6, src=src, dst=dst, sport=sport, dport=dport)


def record(tap: str, t: FiveTuple, first: float, last: float, **kw: Any) -> TapFlow:
    """A tap record of ``t``'s packets; checksums all valid unless ``kw`` says otherwise."""
    packets = kw.pop("packets", 10)
    base: dict[str, Any] = {"l3_valid": packets, "l4_valid": packets, "bytes": packets * 100}
    base.update(kw)
    return TapFlow(
        tap=tap,
        proto=t.proto,
        src=t.src,
        dst=t.dst,
        sport=t.sport,
        dport=t.dport,
        packets=packets,
        first=first,
        last=last,
        **base,
    )


def probe_tuple(i: int, *, sport: int = 5000, vip: str = WEB) -> FiveTuple:
    """Tuple probe ``i``'s 5-tuple: from 198.18.208.0/21 + i to ``vip``:80."""
    return tcp(f"198.18.{208 + i // 256}.{i % 256}", sport, vip, 80)


ENCAPSULATION = "ipip"
"""How :func:`encap` encapsulates: ``"ipip"``, or ``"gue"`` (Katran's GUE, decoded from a scapy
packet by :func:`tests.unit.gue_packets.gue_record`); tests switch it with ``monkeypatch``."""


def encap(
    tap: str, mux: str, server: str, inner: FiveTuple, first: float, last: float, **kw: Any
) -> TapFlow:
    if ENCAPSULATION == "gue":
        from tests.unit.gue_packets import gue_record

        return gue_record(tap, MUX_ADDR[mux], SERVER_ADDR[server], inner, first, last, **kw)
    outer = FiveTuple(proto=4, src=MUX_ADDR[mux], dst=SERVER_ADDR[server])
    return record(tap, outer, first, last, inner=inner, **kw)


@dataclass
class Run:
    """What one synthetic run recorded."""

    lab: LabFacts = LAB
    records: list[HistoryRecord] = field(default_factory=list)
    tap_records: list[TapFlow] = field(default_factory=list)
    taps: dict[str, TapInfo] = field(default_factory=dict)
    faults: list[FaultWindow] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.records.append(HistoryHeader(node="client", t=0.0, stall_threshold=0.5))
        for name in TAP_POINTS:
            self.taps[name] = tap_info(name)

    # --- history and wire --------------------------------------------------------------------

    def conn(
        self,
        flow: int,
        t: float,
        *,
        end_t: float | None = None,
        end: str = "closed",
        server: str = "server1",
        mux: str = "mux1",
        src: str = CLIENT,
        sport: int | None = None,
        dst: str = WEB,
        dport: int = 80,
        expected: int = 1000,
        request_bytes: int = 0,
        latency: float = 0.01,
        wire: bool = True,
        reply_src: tuple[str, int] | None = None,
        stalls: tuple[tuple[float, float], ...] = (),
    ) -> None:
        """A TCP connection from ``t`` to ``end_t`` (None: still open), answered by ``server``
        through ``mux``; ``end`` is closed, reset, timeout, short, integrity, refused or
        connect-timeout; ``stalls`` are (start, seconds). With ``wire``, every tap on its path
        saw its packets."""
        sport = sport if sport is not None else 40000 + flow
        self.records.append(
            FlowStart(
                flow=flow,
                t=t,
                proto="tcp",
                src=src,
                sport=sport,
                dst=dst,
                dport=dport,
                seed=flow,
                expected_bytes=expected,
                request_bytes=request_bytes,
            )
        )
        if end == "refused":
            self.records.append(Refused(flow=flow, t=t + latency))
            return
        if end == "connect-timeout":
            self.records.append(Timeout(flow=flow, t=t + 3, phase="connect"))
            return
        up = t + latency
        self.records += [
            Connected(flow=flow, t=up),
            FirstByte(flow=flow, t=up + 0.001, server=server),
        ]
        self.records += [Stall(flow=flow, t=st, seconds=sec, offset=100) for st, sec in stalls]
        if end_t is not None:
            self.records += self._ending(flow, end, end_t, expected)
        if wire:
            last = end_t if end_t is not None else t + 100
            self.wire(src, sport, dst, dport, t, last, mux=mux, server=server, reply_src=reply_src)

    @staticmethod
    def _ending(flow: int, end: str, t: float, expected: int) -> list[HistoryRecord]:
        if end == "closed":
            return [Closed(flow=flow, t=t, received=expected, verified=expected)]
        if end == "reset":
            return [Reset(flow=flow, t=t, received=10)]
        if end == "timeout":
            return [Timeout(flow=flow, t=t, received=10)]
        if end == "short":
            return [Closed(flow=flow, t=t, received=10, verified=10)]
        if end == "deadline":
            return [Closed(flow=flow, t=t, received=10, verified=10, reason="deadline")]
        if end == "integrity":
            return [
                IntegrityError(flow=flow, t=t - 0.001, offset=5),
                Closed(flow=flow, t=t, received=expected, verified=5),
            ]
        raise ValueError(end)

    def wire(
        self,
        src: str,
        sport: int,
        dst: str,
        dport: int,
        first: float,
        last: float,
        *,
        mux: str = "mux1",
        server: str = "server1",
        reply_src: tuple[str, int] | None = None,
    ) -> None:
        """The packets of one TCP connection on every tap of its path."""
        fwd = tcp(src, sport, dst, dport)
        rs, rp = reply_src if reply_src is not None else (dst, dport)
        rev = tcp(rs, rp, src, sport)
        self.tap_records += [
            record("client-out", fwd, first, last),
            record(f"{mux}-in", fwd, first, last),
            encap(f"{mux}-out", mux, server, fwd, first, last),
            encap(f"{server}-in", mux, server, fwd, first, last),
            record(f"{server}-out", rev, first, last, packets=50),
            record("client-in", rev, first, last, packets=50),
        ]

    def udp(
        self,
        flow: int,
        t: float,
        servers: list[str],
        *,
        src: str = CLIENT,
        sport: int | None = None,
        step: float = 0.1,
    ) -> None:
        """A UDP flow: one datagram per ``step``, answered by ``servers[i]``."""
        sport = sport if sport is not None else 50000 + flow
        self.records.append(
            FlowStart(flow=flow, t=t, proto="udp", src=src, sport=sport, dst=UDP_VIP, dport=7)
        )
        for i, server in enumerate(servers):
            ts = t + i * step
            self.records += [
                DatagramSent(flow=flow, t=ts, seq=i),
                DatagramReply(flow=flow, t=ts + 0.001, seq=i, server=server),
            ]

    def fault(self, kind: str, start: float, end: float | None = None, **kw: Any) -> None:
        self.faults.append(FaultWindow(kind=kind, start=start, end=end, **kw))  # type: ignore[arg-type]

    def add(self, *recs: TapFlow) -> None:
        self.tap_records += recs

    def probe(self, i: int, path: list[tuple[str, str, float, float]], *, sport: int = 5000,
              vip: str = WEB) -> FiveTuple:  # fmt: skip
        """Tuple probe ``i`` (source 198.18.208.0/21 + i): for each (MUX, server, first, last)
        of ``path``, a record of its encapsulated SYNs on that MUX's outbound tap."""
        t = probe_tuple(i, sport=sport, vip=vip)
        for mux, server, first, last in path:
            self.add(encap(f"{mux}-out", mux, server, t, first, last, tcp_flags=0x02))
        return t

    def overflow(self, tap: str, lost: int = 7) -> None:
        self.taps[tap] = tap_info(tap, lost=lost)

    def drop_taps(self, *prefixes: str) -> None:
        for name in [n for n in self.taps if n.startswith(prefixes)]:
            del self.taps[name]
        self.tap_records = [r for r in self.tap_records if r.tap in self.taps]

    # --- the result --------------------------------------------------------------------------

    def obs(self, *, lab: bool = True, history: bool = True, taps: bool = True) -> Observations:
        ts = TapSet.from_records([*self.taps.values(), *self.tap_records]) if taps else None
        return Observations(
            lab=self.lab if lab else None,
            history=History.from_records(self.records) if history else None,
            taps=ts,
            faults=tuple(self.faults),
        )


def one_conn_obs(broken: bool = False) -> Observations:
    """One connection to server1 through mux1 (RW-1 and AF-1 PASS; RW-4 UNKNOWN); ``broken``
    adds one whose replies come from server3's own address (RW-1 FAIL). The synthetic suites
    of the plugin's, JUnit's and allure's tests import it as ``obs``."""
    run = Run()
    run.conn(1, 10.0, end_t=20.0, server="server1", mux="mux1")
    if broken:
        run.conn(2, 11.0, end_t=21.0, reply_src=(SERVER_ADDR["server3"], 8080))
    return run.obs()
