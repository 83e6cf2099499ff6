"""What a checker reads: the run's observations, the lab's facts, and the fault timeline.

:class:`Observations` bundles everything a run recorded; each part may be absent (a checker
that needs an absent part answers UNKNOWN and says which). :class:`LabFacts` is the little a
checker must know about the lab (roles, addresses, services), built from a topology with
:meth:`LabFacts.from_topology` or written directly in tests. :class:`FaultWindow` is one entry of
the fault timeline the chaos runner keeps (what it did, to what, from when to when).

The helpers at the bottom match tap records to flows by the client's end of the 5-tuple
(protocol, client address, client port): DSR never rewrites it, so it identifies a connection on
every link, encapsulated or not, in every mode.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from dsrconform.observe.history import TERMINAL, Addr, FlowHistory, History, Time, hostport
from dsrconform.observe.taps import CounterSnapshot, FiveTuple, TapFlow, TapInfo, TapSet
from dsrconform.target import FAMILIES
from dsrconform.traffic.synflood import FLOOD_NET6

if TYPE_CHECKING:
    from dsrconform.topology import Topology


class MissingData(Exception):
    """Raised inside a checker when data it needs is absent; the checker answers UNKNOWN
    (:func:`dsrconform.invariants.verdict.run_checker`). Defined with the observations it is
    about, so that what records them never imports the checkers."""

    def __init__(self, *what: str) -> None:
        self.what = list(what)
        super().__init__("; ".join(what))


class Judge(Protocol):
    """What :meth:`Observations.need_taps` asks of a checker's judge
    (:class:`dsrconform.invariants.verdict.Judge`)."""

    def incomplete(self, what: str) -> None: ...


Role = Literal["client", "router", "mux", "server", "gateway"]
Endpoint = tuple[int, str, int]
"""The client's end of a flow: (IP protocol number, client address, client port)."""

FaultKind = Literal[
    "syn-flood",
    "mux-fail",
    "route-withdrawn",
    "mux-rejoin",
    "mux-add",
    "backend-add",
    "backend-remove",
    "backend-drain",
    "config-change",
    "crafted",
    "link-impair",
    "cpu-limit",
    "agent-restart",
]
BACKEND_CHANGES: tuple[FaultKind, ...] = ("backend-add", "backend-remove", "backend-drain")
PROTO_NUMBERS = {"tcp": 6, "udp": 17}
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceFacts(_Model):
    """A load-balanced service. Empty ``muxes``/``servers`` mean every MUX/server."""

    name: str
    vip: Addr
    port: Annotated[int, Field(ge=1, le=65535)]
    proto: Literal["tcp", "udp"] = "tcp"
    muxes: list[str] = Field(default_factory=list)
    servers: list[str] = Field(default_factory=list)

    @property
    def proto_number(self) -> int:
        return PROTO_NUMBERS[self.proto]

    def describe(self) -> str:
        return f"{hostport(self.vip, self.port)}/{self.proto}"


class LabFacts(_Model):
    """Roles, addresses and services of a lab: what checkers need to classify packets."""

    roles: dict[str, Role]
    addresses: dict[str, list[Addr]] = Field(default_factory=dict)
    """Every address of each node (interfaces and extra client addresses)."""
    services: list[ServiceFacts] = Field(default_factory=list)
    client_networks: list[str] = Field(default_factory=list)
    """Networks whose addresses count as clients too (the spoofed flood sources)."""
    probe_networks: list[str] = Field(default_factory=list)
    """Networks the tuple probes come from (SC-2, SC-4), one per family (the topology's
    :meth:`~dsrconform.topology.Topology.probe_network`): a source there is a probe."""
    server_ids: dict[str, str] = Field(default_factory=dict)
    """Server id (``X-Server-Id``, UDP reply id) -> node, where they differ."""

    _clients: frozenset[str] = PrivateAttr(default=frozenset())
    _nets: tuple[IPNetwork, ...] = PrivateAttr(default=())
    _probe_nets: tuple[IPNetwork, ...] = PrivateAttr(default=())
    _owner: dict[str, str] = PrivateAttr(default_factory=dict)
    _vips: dict[tuple[str, int, int], ServiceFacts] = PrivateAttr(default_factory=dict)
    _vip_addrs: frozenset[str] = PrivateAttr(default=frozenset())
    _client_memo: dict[str, bool] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: object) -> None:
        self._owner = {a: n for n, addrs in self.addresses.items() for a in addrs}
        self._clients = frozenset(
            a for a, n in self._owner.items() if self.roles.get(n) == "client"
        )
        self._nets = tuple(ipaddress.ip_network(n) for n in self.client_networks)
        self._probe_nets = tuple(ipaddress.ip_network(n) for n in self.probe_networks)
        self._vips = {(s.vip, s.port, s.proto_number): s for s in self.services}
        self._vip_addrs = frozenset(s.vip for s in self.services)
        self._client_memo = {}

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A validated copy (the lookup caches are rebuilt, unlike pydantic's plain copy)."""
        return self.model_validate({**self.model_dump(), **(update or {})})

    @classmethod
    def from_topology(cls, topo: Topology) -> LabFacts:
        addresses: dict[str, list[str]] = {
            n: list(node.addresses) for n, node in topo.nodes.items()
        }
        for iface in topo.interfaces():
            addresses[iface.node].append(str(ipaddress.IPv4Interface(iface.address).ip))
            if iface.address6:
                addresses[iface.node].append(str(ipaddress.IPv6Interface(iface.address6).ip))
        holes = list(topo.blackhole)
        if FLOOD_NET6 not in holes:  # the IPv6 flood's spoofed sources are clients too
            holes.append(FLOOD_NET6)
        return cls(
            roles={n: node.role for n, node in topo.nodes.items()},
            addresses=addresses,
            services=[
                ServiceFacts(
                    name=s.name,
                    vip=s.vip,
                    port=s.port,
                    proto=s.proto,
                    muxes=list(s.muxes or []),
                    servers=list(s.servers or []),
                )
                for s in topo.services
            ],
            client_networks=holes,
            probe_networks=[n for f in FAMILIES if (n := topo.probe_network(f)) is not None],
        )

    def nodes(self, role: Role) -> list[str]:
        return [n for n, r in self.roles.items() if r == role]

    def role(self, node: str | None) -> Role | None:
        return self.roles.get(node) if node is not None else None

    # The lookups below run per tap record (millions in a long run): they read the private
    # caches from __pydantic_private__ directly, since ``self._x`` on a pydantic model goes
    # through BaseModel.__getattr__, several times slower than the lookup itself.

    def node_of(self, addr: str) -> str | None:
        return self.__pydantic_private__["_owner"].get(addr)  # type: ignore[index]

    def role_of_address(self, addr: str) -> Role | None:
        return self.role(self.node_of(addr))

    def is_client(self, addr: str) -> bool:
        private = self.__pydantic_private__
        memo = private["_client_memo"]  # type: ignore[index]
        known = memo.get(addr)
        if known is None:
            ip = ipaddress.ip_address(addr)
            known = addr in private["_clients"] or any(  # type: ignore[index]
                ip in net
                for net in private["_nets"]  # type: ignore[index]
            )
            memo[addr] = known
        return known

    def client_test(self) -> Callable[[str], bool]:
        """:meth:`is_client` for a hot loop: a memo lookup first, the method only on a miss."""
        memo: dict[str, bool] = self.__pydantic_private__["_client_memo"]  # type: ignore[index]
        is_client = self.is_client

        def test(addr: str) -> bool:
            known = memo.get(addr)
            return known if known is not None else is_client(addr)

        return test

    def is_probe(self, addr: str) -> bool:
        """Is ``addr`` a tuple probe's source?"""
        if not self.probe_networks:
            return False
        ip = ipaddress.ip_address(addr)
        return any(ip in net for net in self.__pydantic_private__["_probe_nets"])  # type: ignore[index]

    def is_vip(self, addr: str) -> bool:
        return addr in self.__pydantic_private__["_vip_addrs"]  # type: ignore[index]

    def service(self, addr: str, port: int, proto: int) -> ServiceFacts | None:
        return self.__pydantic_private__["_vips"].get((addr, port, proto))  # type: ignore[index]

    def server_node(self, server_id: str) -> str:
        return self.server_ids.get(server_id, server_id)

    def backends(self, svc: ServiceFacts) -> list[str]:
        return svc.servers or self.nodes("server")

    def per_mux_services(self) -> list[ServiceFacts]:
        """Services only some MUXes announce (the seed's per-MUX external addresses)."""
        every = set(self.nodes("mux"))
        return [s for s in self.services if s.muxes and set(s.muxes) != every]


class FaultWindow(_Model):
    """One entry of the fault timeline: what the chaos runner did, to what, when.

    ``end`` is when the fault was lifted (a MUX restarted, the flood stopped); None for an
    instant or a fault never lifted. ``rate`` is the achieved packet rate of a flood.
    ``backends_before``/``backends_after`` list the backends (server ids) of a backend change.
    """

    kind: FaultKind
    start: Time
    end: Time | None = None
    target: str | None = None
    rate: float | None = None
    vip: Addr | None = None
    backends_before: list[str] | None = None
    backends_after: list[str] | None = None
    detail: dict[str, str | float | int] = Field(default_factory=dict)

    @property
    def stop(self) -> float:
        return self.end if self.end is not None else self.start

    def overlaps(self, other: FaultWindow) -> bool:
        return self.start <= other.stop and other.start <= self.stop

    def describe(self) -> str:
        target = f" of {self.target}" if self.target else ""
        span = f"t={self.start:.3f}" + (f"..{self.end:.3f}" if self.end is not None else "")
        return f"{self.kind}{target} at {span}"


@dataclass(frozen=True)
class Observations:
    """Everything a run recorded; any part may be missing."""

    lab: LabFacts | None = None
    history: History | None = None
    taps: TapSet | None = None
    counters: tuple[CounterSnapshot, ...] = ()
    faults: tuple[FaultWindow, ...] = field(default=())
    _derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    """What several checkers derive alike from the same observations (an index of the flows,
    the server taps' records grouped by flow), built once: the parts are never modified. Not a
    constructor argument, so a copy with other parts (``dataclasses.replace``) starts empty;
    a key must name everything its value is built from."""

    def derived(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()``, computed once per ``key`` for these observations."""
        if key not in self._derived:
            self._derived[key] = build()
        return self._derived[key]

    def flow_index(self) -> FlowIndex:
        """The history's flows by client endpoint (an empty index without a history)."""
        index: FlowIndex = self.derived("flow_index", lambda: FlowIndex(self.history))
        return index

    def need_lab(self) -> LabFacts:
        if self.lab is None:
            raise MissingData("the lab's facts (roles, addresses, services)")
        return self.lab

    def need_history(self) -> History:
        if self.history is None or not self.history.flows:
            raise MissingData("connection histories (no flow was recorded)")
        return self.history

    def windows(self, *kinds: FaultKind) -> list[FaultWindow]:
        return sorted((w for w in self.faults if w.kind in kinds), key=lambda w: w.start)

    def need_windows(self, *kinds: FaultKind) -> list[FaultWindow]:
        found = self.windows(*kinds)
        if not found:
            raise MissingData(f"a {' or '.join(kinds)} window in the fault timeline")
        return found

    def backend_changes(self) -> list[FaultWindow]:
        return self.windows(*BACKEND_CHANGES)

    def need_taps_into(self, judge: Judge, role: Role) -> list[tuple[TapInfo, list[TapFlow]]]:
        """:meth:`need_taps` for the taps whose packets a node of ``role`` receives, expecting
        one for every such node (what several checkers ask of MUXes and servers)."""
        lab = self.need_lab()
        return self.need_taps(
            judge,
            f"toward a {'MUX' if role == 'mux' else role}",
            toward_role(lab, role),
            expect=lab.nodes(role),
            covers=lambda t: t.receiver,
        )

    def need_taps(
        self,
        judge: Judge,
        what: str,
        select: Callable[[TapInfo], bool],
        *,
        expect: Iterable[str] = (),
        covers: Callable[[TapInfo], str | None] | None = None,
    ) -> list[tuple[TapInfo, list[TapFlow]]]:
        """The taps ``select`` accepts. None at all: MissingData. An expected node (``expect``)
        that no accepted tap covers (``covers`` names the node a tap covers), or an overflowed
        tap: recorded as incomplete on ``judge`` (the verdict cannot be PASS)."""
        if self.taps is None or not self.taps.taps:
            raise MissingData(f"link taps ({what})")
        chosen = [(info, flows) for info, flows in self.taps.items() if select(info)]
        if not chosen:
            raise MissingData(f"a tap {what}")
        if covers is not None:
            covered = {covers(info) for info, _ in chosen}
            for node in expect:
                if node not in covered:
                    judge.incomplete(f"no tap {what} for {node}")
        for info, _ in chosen:
            if info.overflowed:
                judge.incomplete(
                    f"tap {info.describe()} lost {info.lost_records} records (overflow)"
                )
        return chosen


# --- tap classification and flow matching ----------------------------------------------------


def toward_role(lab: LabFacts, role: Role) -> Callable[[TapInfo], bool]:
    """Taps whose packets are received by a node of ``role``."""
    return lambda t: lab.role(t.receiver) == role


def from_role(lab: LabFacts, *roles: Role) -> Callable[[TapInfo], bool]:
    """Taps whose packets are sent by a node of one of ``roles``."""
    return lambda t: lab.role(t.sender) in roles


def on_role_link(lab: LabFacts, role: Role) -> Callable[[TapInfo], bool]:
    """Taps on a link one of whose ends is a node of ``role`` (either direction)."""
    return lambda t: lab.role(t.node) == role or lab.role(t.peer) == role


def one_per_link(
    taps: list[tuple[TapInfo, list[TapFlow]]],
) -> list[tuple[TapInfo, list[TapFlow]]]:
    """Of the taps at both ends of one link and direction (sender to receiver), only the
    sending end's: summing both would count every packet twice. The sending end, because a
    receiver's tc ingress runs after its XDP program, so it misses what XDP forwarded."""
    egress = {(t.link, t.sender, t.receiver) for t, _ in taps if t.direction == "egress"}
    return [
        (t, flows)
        for t, flows in taps
        if t.direction == "egress" or (t.link, t.sender, t.receiver) not in egress
    ]


def mux_of_tap(lab: LabFacts, t: TapInfo) -> str | None:
    return t.node if lab.role(t.node) == "mux" else t.peer if lab.role(t.peer) == "mux" else None


def client_end(t: FiveTuple, lab: LabFacts) -> Endpoint | None:
    """The client's end of a 5-tuple (source if it is a client, else destination), or None."""
    if lab.is_client(t.src):
        return t.proto, t.src, t.sport
    if lab.is_client(t.dst):
        return t.proto, t.dst, t.dport
    return None


class FlowIndex:
    """History flows by client endpoint, for matching tap records to them."""

    SLACK = 1.0
    """Seconds after a flow's end its packets may still be seen (the last ACKs and
    retransmissions)."""

    def __init__(self, history: History | None) -> None:
        # (start, end + slack or +inf, flow) per endpoint and per whole 5-tuple: find() runs
        # once per tap record, so the spans are computed here, once (hot loops read them).
        self.spans: dict[Endpoint, list[tuple[float, float, FlowHistory]]] = {}
        self.spans5: dict[tuple[int, str, int, str, int], list[tuple[float, float, FlowHistory]]]
        self.spans5 = {}
        if history is not None:
            for fh in history.flows.values():
                st = fh.start
                proto = PROTO_NUMBERS[st.proto]
                endpoint = (proto, st.src, st.sport)
                end = next((e.t for e in fh.events if isinstance(e, TERMINAL)), None)
                span = (st.t, math.inf if end is None else end + self.SLACK, fh)
                found = self.spans.get(endpoint)
                if found is None:
                    self.spans[endpoint] = [span]
                else:
                    found.append(span)
                key5 = (proto, st.src, st.sport, st.dst, st.dport)
                same = self.spans5.get(key5)
                if same is None:
                    self.spans5[key5] = [span]
                else:
                    same.append(span)

    def find(self, end: Endpoint | None, first: float, last: float) -> list[FlowHistory]:
        """Flows of client endpoint ``end`` that could own packets seen from first to last."""
        if end is None:
            return []
        return [fh for s, e, fh in self.spans.get(end, ()) if s <= last and first <= e]

    def find5(
        self, key: tuple[int, str, int, str, int], first: float, last: float
    ) -> list[FlowHistory]:
        """Flows of the whole 5-tuple ``key`` (protocol, client address and port, VIP and
        port) that could own packets seen from first to last. A client port may serve flows to
        several VIPs at once: what is about one of them must not be matched by the client's
        end alone."""
        return [fh for s, e, fh in self.spans5.get(key, ()) if s <= last and first <= e]


@dataclass
class Sighting:
    """Where a client endpoint's packets were seen: node -> the records there."""

    records: dict[str, list[tuple[TapInfo, TapFlow]]] = field(default_factory=dict)

    def add(self, node: str, info: TapInfo, rec: TapFlow) -> None:
        self.records.setdefault(node, []).append((info, rec))

    @property
    def nodes(self) -> list[str]:
        return sorted(self.records)

    def span(self) -> tuple[float, float]:
        recs = [r for lst in self.records.values() for _, r in lst]
        return min(r.first for r in recs), max(r.last for r in recs)

    def first_seen(self, node: str) -> float:
        return min(r.first for _, r in self.records[node])

    def nodes_during(self, first: float, last: float, slack: float = 0.5) -> list[str]:
        """Nodes with a record overlapping ``[first, last]`` (``slack`` seconds either side),
        earliest first."""
        hits: dict[str, float] = {}
        for node, recs in self.records.items():
            firsts = [
                r.first for _, r in recs if r.first <= last + slack and first - slack <= r.last
            ]
            if firsts:
                hits[node] = min(firsts)
        return sorted(hits, key=hits.__getitem__)


def sightings(
    taps: list[tuple[TapInfo, list[TapFlow]]],
    lab: LabFacts,
    node_of: Callable[[TapInfo], str | None],
    *,
    keep: Callable[[TapFlow], bool] = lambda r: True,
) -> dict[Endpoint, Sighting]:
    """For each client endpoint, the nodes (``node_of`` a tap) whose taps saw its packets (the
    carried 5-tuple: inner if encapsulated), keeping only records ``keep`` accepts."""
    out: dict[Endpoint, Sighting] = {}
    for info, flows in taps:
        node = node_of(info)
        if node is None:
            continue
        for rec in flows:
            if not keep(rec):
                continue
            end = client_end(rec.payload, lab)
            if end is not None:
                out.setdefault(end, Sighting()).add(node, info, rec)
    return out


def describe_end(end: Endpoint) -> str:
    name = {6: "tcp", 17: "udp", 1: "icmp"}.get(end[0], f"proto {end[0]}")
    return f"{name} client {hostport(end[1], end[2])}"


def overlaps_any(windows: Iterable[FaultWindow], first: float, last: float) -> FaultWindow | None:
    return next((w for w in windows if w.start <= last and first <= w.stop), None)
