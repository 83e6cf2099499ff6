"""Lab topology files (``labs/*.yaml``): the schema, its checks, and the derived plan.

A topology names nodes with roles (client, router, mux, server, gateway), the point-to-point
links between them, optional bridge segments (a server LAN), the services (VIP, port, protocol)
and the data-plane mode. Every address lies in 198.18.0.0/15, or in 2001:2::/48 for IPv6 (an
interface takes one IPv4 address, or IPv4 and IPv6 as a list: :mod:`dsrconform.topoaddrs`; a node
gets IPv6 only where the file gives it some). A bad file fails in
:func:`dsrconform.topofile.load_topology`, before anything is created, with the file, line, field
and a fix::

    labs/bad.yaml:12: links[3].ends: unknown node 'mux9'; fix: define it under nodes (known: ...)

Example (``labs/basic.yaml`` is the full one)::

    name: basic
    mode: encap
    nodes:
      client: {role: client, addresses: [198.18.1.1, 198.18.1.2]}
      router: {role: router, asn: 65000}
      mux1: {role: mux, asn: 65101}
      server1: {role: server}
    links:
      - ends: {client: 198.18.1.254/24, router: 198.18.1.1/24}   # or the reverse
    segments:
      - {name: srv, host: router, address: 198.18.20.254/24, mtu: 1600,
         members: {server1: 198.18.20.1/24}}
    services:
      - {name: web, vip: 198.19.0.10, port: 80, proto: tcp, app_port: 8080}

Dual-stack (``labs/dual.yaml`` is the full one): an end is ``[198.18.10.1/30, 2001:2:0:10::1/64]``,
a client's ``addresses`` may hold IPv6 ones, a service's VIP may be IPv6 (its family,
:attr:`Service.family`), and ``backend_family: ipv6`` carries an IPv4 VIP's packets to IPv6
server addresses (IPv4-in-IPv6, as Katran does; an IPv6 VIP always has IPv6 backends). The
servers and MUXes of a service that needs IPv6 must have IPv6 toward the router.

Interfaces are named after the peer: in node ``mux1`` the link to ``router`` is ``dsrc-router``;
a segment member's interface is ``dsrc-<segment>``, its other end is the bridge port
``dsrc<member>`` on the segment's host, and the bridge there is ``dsrc-br-<segment>``. Node names
are short (at most 10 characters) so that every interface name fits Linux's 15.

Numbers and booleans are strict: ``port: true`` or ``port: '80'`` is an error, not port 1 or 80.
This module is the model: its fields, their checks and the cross-references between them
(:meth:`Topology.problems`), and the views derived from it. Reading a file, bounded in size, YAML
and counts (the ``MAX_*`` limits) before any of it is validated, is :mod:`dsrconform.topofile`.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dsrconform.configfile import LAB_NET, LAB_NET6, lab_address
from dsrconform.target import FAMILIES, Family
from dsrconform.topoaddrs import IfAddrs, ip_of, ipv6_problems, network, parse_iface_addrs

Role = Literal["client", "router", "mux", "server", "gateway"]
Mode = Literal["encap", "server-nat", "gateway-nat"]
MODES: tuple[Mode, ...] = ("encap", "server-nat", "gateway-nat")
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
LAB_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
IF_PREFIX = "dsrc-"


def _name(v: str) -> str:
    if not NAME_RE.match(v):
        raise ValueError(
            f"name {v!r} is not allowed; fix: 1-10 characters, a lower-case letter first, then "
            "lower-case letters and digits (interface names derive from it)"
        )
    return v


def _seg_name(v: str) -> str:
    if not re.match(r"^[a-z][a-z0-9]{0,5}$", v):
        raise ValueError(
            f"segment name {v!r} is not allowed; fix: 1-6 lower-case letters and digits, a letter "
            "first (the bridge is named dsrc-br-<name>, and Linux allows 15 characters)"
        )
    return v


def _whole(v: object) -> object:
    # bool is an int in Python and pydantic's lax mode turns "80" into 80: neither is a number.
    if v is not None and type(v) is not int:
        raise ValueError(
            f"{v!r} is not a whole number; fix: write a plain number such as 80 (no quotes, not "
            "true/false, no decimal point)"
        )
    return v


def _flag(v: object) -> object:
    if type(v) is not bool:
        raise ValueError(f"{v!r} is not true or false; fix: write true or false (no quotes)")
    return v


Int = Annotated[int, BeforeValidator(_whole)]
OptInt = Annotated[int | None, BeforeValidator(_whole)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Name = Annotated[str, AfterValidator(_name)]
SegName = Annotated[str, AfterValidator(_seg_name)]
LabAddr = Annotated[str, AfterValidator(lab_address)]
IfaceAddr = Annotated[IfAddrs, PlainValidator(parse_iface_addrs), PlainSerializer(IfAddrs.dump)]
Loc = tuple[Any, ...]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Node(_Model):
    """A lab host. Per-role fields: ``addresses`` (client: extra source addresses on its uplink,
    IPv4 or IPv6; an IPv6 one needs IPv6 on the uplink),
    ``asn`` (router and mux: the BGP AS number), ``traffic`` (client: false for a client that
    runs no traffic mix, a SYN flood's source, so the flood shares no link with the clients)."""

    role: Role
    addresses: list[LabAddr] = Field(default_factory=list)
    asn: OptInt = Field(default=None, ge=1, le=4294967294)
    traffic: Flag = True

    def addresses_of(self, family: Family) -> list[str]:
        """The extra ``addresses`` of one family (``addresses`` holds both in a dual-stack lab)."""
        return [a for a in self.addresses if _family(a) == family]

    @model_validator(mode="after")
    def _traffic_is_for_clients(self) -> Node:
        if not self.traffic and self.role != "client":
            raise ValueError(
                f"traffic: false is for client nodes; fix: remove it from a {self.role}"
            )
        return self


class Link(_Model):
    """A veth pair between two nodes: ``ends`` maps each node to its address on the link (or
    its IPv4 and IPv6 addresses: both ends have IPv6, or neither)."""

    ends: dict[Name, IfaceAddr]
    mtu: Int = Field(default=1500, ge=1280, le=9000)
    tx_checksum_offload: Flag = False  # off by default: native XDP drops CHECKSUM_PARTIAL

    @field_validator("ends")
    @classmethod
    def _two(cls, v: dict[str, IfAddrs]) -> dict[str, IfAddrs]:
        if len(v) != 2:
            raise ValueError(
                f"a link has exactly two ends, got {len(v)}; fix: {{a: ADDR, b: ADDR}}"
            )
        (a, aa), (b, ba) = v.items()
        if len({network(aa.v4), network(ba.v4)}) != 1:
            raise ValueError(f"the two ends are in different subnets ({aa.v4}, {ba.v4})")
        if (aa.v6 is None) != (ba.v6 is None):
            has, lacks = (a, b) if aa.v6 is not None else (b, a)
            raise ValueError(
                f"{has} has an IPv6 address on the link and {lacks} none; fix: give {lacks} one "
                f"in the same subnet ({v[has].v6}), or neither end one"
            )
        if aa.v6 is not None and ba.v6 is not None and network(aa.v6) != network(ba.v6):
            raise ValueError(f"the two ends are in different IPv6 subnets ({aa.v6}, {ba.v6})")
        return v


class Segment(_Model):
    """A bridge on ``host`` (which owns ``address`` on it) joining ``members`` by veths. A member
    may have IPv6 only where ``address`` has (the host routes it); one without keeps IPv4 only."""

    name: SegName
    host: Name
    address: IfaceAddr
    members: dict[Name, IfaceAddr]
    mtu: Int = Field(default=1500, ge=1280, le=9000)
    tx_checksum_offload: Flag = False


class Service(_Model):
    """A load-balanced service. ``muxes`` announce it (default: every MUX); ``servers`` serve it
    (default: every server). ``app_port``: the application's port on the servers in the NAT modes
    (default: ``port``). ``backend_family``: the family of the server addresses a MUX sends the
    VIP's packets to (default: the VIP's; ``ipv6`` for an IPv4 VIP is IPv4-in-IPv6)."""

    name: Name
    vip: LabAddr
    port: Int = Field(ge=1, le=65535)
    proto: Literal["tcp", "udp"] = "tcp"
    app_port: OptInt = Field(default=None, ge=1, le=65535)
    muxes: Annotated[list[Name], Field(min_length=1)] | None = None
    servers: Annotated[list[Name], Field(min_length=1)] | None = None
    backend_family: Family = Field(default=None, validate_default=True)

    @field_validator("backend_family", mode="before")
    @classmethod
    def _backend_family(cls, v: object, info: ValidationInfo) -> object:
        vip = info.data.get("vip")
        family = _family(vip) if vip is not None else "ipv4"
        if v is None:
            return family
        if family == "ipv6" and v == "ipv4":
            raise ValueError(
                f"VIP {vip} is IPv6 and backend_family ipv4: an IPv6 packet cannot be carried "
                "to an IPv4 server address here; fix: remove backend_family (an IPv6 VIP has "
                "IPv6 backends) or write ipv6"
            )
        return v

    @property
    def family(self) -> Family:
        """The VIP's address family."""
        return _family(self.vip)

    @property
    def proto_number(self) -> int:
        return 6 if self.proto == "tcp" else 17

    @property
    def server_port(self) -> int:
        return self.app_port or self.port


class Topology(_Model):
    name: Annotated[str, Field(pattern=LAB_NAME_RE.pattern)] | None = None
    mode: Mode = "encap"
    nodes: dict[Name, Node]
    links: list[Link] = Field(default_factory=list)
    segments: list[Segment] = Field(default_factory=list)
    services: list[Service] = Field(default_factory=list)
    blackhole: list[str] = Field(default_factory=lambda: ["198.18.200.0/21", "198.18.208.0/21"])
    """Networks the border router drops: spoofed sources nothing may answer. Of each family,
    the first is the SYN flood's (the taps aggregate it), the second the tuple probes' (SC-2,
    SC-4; :meth:`probe_network`). IPv6 ones may follow the IPv4 ones (in 2001:2::/48); a file
    that uses IPv6 and gives no list gets :data:`BLACKHOLES6` added, the IPv6 SYN flood's and
    the IPv6 tuple probes'."""
    ambiguous_gateway: bool = False
    """gateway-nat: accept services that reach one server on one port and protocol (refused by
    default: a stateless egress gateway cannot tell them apart). For a lab that shows that
    pitfall on purpose (labs/multi-mux-gateway.yaml)."""

    @field_validator("blackhole")
    @classmethod
    def _blackholes(cls, v: list[str]) -> list[str]:
        for net in v:
            n = ipaddress.ip_network(net)
            lab = LAB_NET if n.version == 4 else LAB_NET6
            if not n.subnet_of(lab):  # type: ignore[arg-type]
                raise ValueError(f"blackhole {net} is outside {lab}; fix: a network inside it")
        return v

    @model_validator(mode="wrap")
    @classmethod
    def _ipv6_blackhole(cls, data: Any, handler: ModelWrapValidatorHandler[Topology]) -> Topology:
        topo = handler(data)
        if "blackhole" in topo.model_fields_set or not topo.uses_ipv6:
            return topo
        return topo.model_copy(update={"blackhole": [*topo.blackhole, *BLACKHOLES6]})

    # --- cross-references, reported with their location by topofile.load_topology -------------

    def problems(self) -> list[tuple[Loc, str]]:
        return list(self._problems())

    def _problems(self) -> Iterator[tuple[Loc, str]]:
        known = ", ".join(sorted(self.nodes))
        roles: dict[str, list[str]] = {
            r: [n for n, node in self.nodes.items() if node.role == r] for r in _ROLES
        }
        for role, want in (("router", "exactly one"), ("mux", "at least one"),
                           ("server", "at least one"), ("client", "at least one")):  # fmt: skip
            count = len(roles[role])
            if (want == "exactly one" and count != 1) or count == 0:
                yield ("nodes",), f"{want} node with role {role} is needed, found {count}"
        for name, node in self.nodes.items():
            if node.role in ("router", "mux") and node.asn is None:
                yield ("nodes", name), f"a {node.role} needs asn (its BGP AS number)"
            if node.addresses and node.role != "client":
                yield ("nodes", name, "addresses"), "only clients take extra addresses"
        if len(roles["router"]) == 1:
            rtr = roles["router"][0]
            rasn = self.nodes[rtr].asn
            for mux in roles["mux"]:
                if rasn is not None and self.nodes[mux].asn == rasn:
                    yield (
                        ("nodes", mux, "asn"),
                        f"{rasn} is also nodes.{rtr}.asn; fix: give the MUX an AS number of its "
                        "own (it peers with the router over eBGP, which needs different ASNs)",
                    )
        seen_addr: dict[str, Loc] = {}  # IP address -> where it is first used
        pairs: set[frozenset[str]] = set()
        seg_names = Counter(s.name for s in self.segments)
        for i, link in enumerate(self.links):
            ends = list(link.ends)
            for n in ends:
                if n not in self.nodes:
                    yield (
                        ("links", i, "ends", n),
                        f"unknown node {n!r}; fix: define it under nodes (known: {known})",
                    )
            if len(set(ends)) == 1:
                yield ("links", i, "ends"), "a link joins two different nodes"
            pair = frozenset(ends)
            if pair in pairs:
                yield (
                    ("links", i, "ends"),
                    f"a second link between {' and '.join(ends)}; fix: one link per pair",
                )
            pairs.add(pair)
            for n, addrs in link.ends.items():
                for a in addrs.all:
                    yield from self._dup(seen_addr, a, ("links", i, "ends", n))
        for i, seg in enumerate(self.segments):
            if seg.host not in self.nodes:
                yield ("segments", i, "host"), f"unknown node {seg.host!r} (known: {known})"
            if seg.host in seg.members:
                yield (
                    ("segments", i, "members", seg.host),
                    "the host joins its own segment through the bridge",
                )
            for n, addrs in seg.members.items():
                if n not in self.nodes:
                    yield ("segments", i, "members", n), f"unknown node {n!r} (known: {known})"
                if network(addrs.v4) != network(seg.address.v4):
                    yield (
                        ("segments", i, "members", n),
                        f"{addrs.v4} is not in the segment's subnet {seg.address.v4}",
                    )
                if addrs.v6 is not None and seg.address.v6 is None:
                    yield (
                        ("segments", i, "members", n),
                        f"{n} has IPv6 ({addrs.v6}) but the segment's address has none, so "
                        f"{seg.host} cannot route it; fix: give address an IPv6 address in the "
                        "same subnet, or remove the member's",
                    )
                elif (
                    addrs.v6 is not None
                    and seg.address.v6 is not None
                    and network(addrs.v6) != network(seg.address.v6)
                ):
                    yield (
                        ("segments", i, "members", n),
                        f"{addrs.v6} is not in the segment's IPv6 subnet {seg.address.v6}",
                    )
                for a in addrs.all:
                    yield from self._dup(seen_addr, a, ("segments", i, "members", n))
            for a in seg.address.all:
                yield from self._dup(seen_addr, a, ("segments", i, "address"))
            if seg_names[seg.name] > 1:
                yield ("segments", i, "name"), f"segment name {seg.name!r} used twice"
        for name in self.nodes:
            for a in self.nodes[name].addresses:
                host = a + ("/128" if ":" in a else "/32")
                yield from self._dup(seen_addr, host, ("nodes", name, "addresses"))
        holes = [ipaddress.ip_network(n) for n in self.blackhole]
        for a, loc in seen_addr.items():
            ip = ipaddress.ip_address(a)
            for k, net in enumerate(holes):
                if ip in net:
                    yield (
                        loc,
                        f"address {ip} is inside blackhole[{k}] {net}, which the router drops; "
                        "fix: use another address, or list other black-holed networks under "
                        "'blackhole'",
                    )
        names = Counter(s.name for s in self.services)
        keys: set[tuple[str, int, str]] = set()
        for i, svc in enumerate(self.services):
            if names[svc.name] > 1:
                yield ("services", i, "name"), f"service name {svc.name!r} used twice"
            vip_key = (svc.vip, svc.port, svc.proto)
            if vip_key in keys:
                yield ("services", i), f"{svc.vip}:{svc.port}/{svc.proto} is defined twice"
            keys.add(vip_key)
            if svc.vip in seen_addr:
                yield ("services", i, "vip"), f"VIP {svc.vip} is also an interface address"
            for field, role in (("muxes", "mux"), ("servers", "server")):
                listed: set[str] = set()
                for j, n in enumerate(getattr(svc, field) or []):
                    if self.nodes.get(n) is None or self.nodes[n].role != role:
                        yield (
                            ("services", i, field, j),
                            f"{n!r} is not a {role} node (known {role}s: {', '.join(roles[role])})",
                        )
                    if n in listed:
                        yield (("services", i, field, j), f"{n!r} is listed twice; fix: once")
                    listed.add(n)
        router = roles["router"][0] if len(roles["router"]) == 1 else None
        if router:
            for name in self.nodes:
                if name != router and self._uplink(name, router) is None:
                    yield ("nodes", name), f"{name} has no link or segment to the router {router}"
        seen_if: dict[tuple[str, str], str] = {}
        for iface in self.interfaces():
            where = f"{iface.group}"
            key = (iface.node, iface.ifname)
            if key in seen_if:
                yield (
                    ("nodes", iface.node),
                    (
                        f"two interfaces named {iface.ifname} in {iface.node} ({seen_if[key]} and "
                        f"{where}); fix: rename the segment or the node"
                    ),
                )
            seen_if[key] = where
        for seg in self.segments:
            for member in seg.members:
                key = (seg.host, "dsrc" + member)
                if key in seen_if:
                    yield ("segments",), f"{member} joins two segments on {seg.host}"
                seen_if[key] = seg.name
        if self.mode == "gateway-nat" and roles["gateway"]:
            gw = roles["gateway"][0]
            for server in roles["server"]:
                if self._uplink(server, gw) is None:
                    yield (
                        ("nodes", server),
                        (f"gateway-nat: {server} shares no link or segment with the gateway {gw}"),
                    )
        if self.mode == "gateway-nat" and not roles["gateway"]:
            yield ("mode",), "gateway-nat needs a node with role gateway"
        if self.mode == "gateway-nat" and not self.ambiguous_gateway:
            yield from self._shared_server_ports()
        if router:
            yield from ipv6_problems(self, router)

    def _shared_server_ports(self) -> Iterator[tuple[Loc, str]]:
        """gateway-nat: two services that reach one server on one port and protocol collide.

        How a service maps to a server port, per mode (reference_impl/deploy.py): in encap the
        application binds VIP:port on the server's loopback (``app_port`` is unused; two services
        with one VIP:port/proto are refused above). In server-nat the agent rewrites VIP:port to
        server:``server_port`` and remembers each flow, so replies regain the VIP they came to:
        services may share a port (labs/multi-mux-nat.yaml does, one VIP per MUX). In gateway-nat
        the egress gateway rewrites a reply's source by (server, port, protocol) alone, from a
        static table: one such triple can stand for one VIP:port only. TCP and UDP never collide,
        nor do IPv4 and IPv6 services (the server's addresses differ).
        """
        first: dict[tuple[int, str, str], list[int]] = {}
        for i, svc in enumerate(self.services):
            # A reply's family is its VIP's: the server answers from its address of that family.
            same = first.setdefault((svc.server_port, svc.proto, svc.family), [])
            mine = self.servers_of(svc)
            for k in same:
                other = self.services[k]
                theirs = set(self.servers_of(other))
                shared = [n for n in mine if n in theirs]
                if not shared:
                    continue
                listed = ", ".join(shared[:6]) + (
                    f" and {len(shared) - 6} more" if len(shared) > 6 else ""
                )
                yield (
                    ("services", i, "app_port" if svc.app_port is not None else "port"),
                    f"{svc.name} and {other.name} both reach {listed} on {svc.proto} port "
                    f"{svc.server_port}, which gateway-nat cannot tell apart (its gateway rewrites "
                    "a reply's source by server, port and protocol alone, to one VIP:port); "
                    f"fix: give {svc.name} another app_port, serve the two on different servers, "
                    "or use server-nat (which remembers each flow's VIP)",
                )
                break
            same.append(i)

    @staticmethod
    def _dup(seen: dict[str, Loc], addr: str, loc: Loc) -> Iterator[tuple[Loc, str]]:
        ip = ipaddress.ip_interface(addr).ip.compressed
        prior = seen.get(ip)
        if prior is not None:
            yield loc, f"address {ip} is already used at {'.'.join(map(str, prior))}"
        else:
            seen[ip] = loc

    # --- derived views -------------------------------------------------------------------------

    def of_role(self, role: Role) -> list[str]:
        return [n for n, node in self.nodes.items() if node.role == role]

    @property
    def router(self) -> str:
        return self.of_role("router")[0]

    def _uplink(self, node: str, peer: str) -> tuple[str, IfAddrs, IfAddrs] | None:
        """(node's interface, node's address, peer's address) on a link or segment to ``peer``."""
        for link in self.links:
            if node in link.ends and peer in link.ends:
                return IF_PREFIX + peer, link.ends[node], link.ends[peer]
        for seg in self.segments:
            if seg.host == peer and node in seg.members:
                return IF_PREFIX + seg.name, seg.members[node], seg.address
            if seg.host == node and peer in seg.members:
                return f"{IF_PREFIX}br-{seg.name}", seg.address, seg.members[peer]
            if node in seg.members and peer in seg.members:
                return IF_PREFIX + seg.name, seg.members[node], seg.members[peer]
        return None

    def uplink(self, node: str, peer: str | None = None) -> Uplink:
        """How ``node`` reaches ``peer`` (default: the router) in one hop."""
        peer = peer or self.router
        found = self._uplink(node, peer)
        if found is None:
            raise KeyError(f"{node} has no link or segment to {peer}")
        ifname, mine, theirs = found
        if mine.v6 is None or theirs.v6 is None:  # IPv4 only (e.g. a segment member without)
            return Uplink(peer, ifname, mine.v4, theirs.v4)
        return Uplink(peer, ifname, mine.v4, theirs.v4, mine.v6, theirs.v6)

    def address6_of(self, node: str) -> str | None:
        """``node``'s IPv6 address toward the router (no prefix), or None if it has none there.
        KeyError for a node without a link or segment to the router (the router itself)."""
        if node == self.router:
            raise KeyError(f"{node} is the router")
        return self.uplink(node).ip6

    @property
    def families(self) -> tuple[Family, ...]:
        """The address families of the services' VIPs, ipv4 first."""
        return tuple(f for f in FAMILIES if any(s.family == f for s in self.services))

    def blackholes_of(self, family: Family) -> list[str]:
        """The black-holed networks of one family, in order (see :attr:`blackhole`)."""
        return [n for n in self.blackhole if _family_of_network(n) == family]

    def probe_network(self, family: Family) -> str | None:
        """The tuple probes' source network toward a VIP of ``family``: the family's second
        black-holed network (None if it has fewer than two)."""
        holes = self.blackholes_of(family)
        return holes[1] if len(holes) > 1 else None

    @property
    def uses_ipv6(self) -> bool:
        """Whether the file gives IPv6 anywhere (an interface, a client address, a VIP)."""
        return (
            any(i.address6 is not None for i in self.interfaces())
            or any(":" in a for n in self.nodes.values() for a in n.addresses)
            or any(s.family == "ipv6" or s.backend_family == "ipv6" for s in self.services)
        )

    def has_ipv6(self, node: str) -> bool:
        """Whether ``node`` gets IPv6 in a lab: the file gives it an IPv6 address (the router
        also when it black-holes an IPv6 network)."""
        if any(i.node == node and i.address6 is not None for i in self.interfaces()):
            return True
        if node == self.router and any(":" in n for n in self.blackhole):
            return True
        return any(":" in a for a in self.nodes[node].addresses)

    def services_of_mux(self, mux: str) -> list[Service]:
        return [s for s in self.services if s.muxes is None or mux in s.muxes]

    def servers_of(self, svc: Service) -> list[str]:
        return svc.servers if svc.servers is not None else self.of_role("server")

    def interfaces(self) -> Iterator[Interface]:
        """Every interface the lab creates (veths and bridges), in creation order."""
        for i, link in enumerate(self.links):
            (a, aa), (b, ba) = link.ends.items()
            off = link.tx_checksum_offload
            yield Interface(a, IF_PREFIX + b, aa.v4, link.mtu, f"link{i}", b, off, address6=aa.v6)
            yield Interface(b, IF_PREFIX + a, ba.v4, link.mtu, f"link{i}", a, off, address6=ba.v6)
        for seg in self.segments:
            br = f"{IF_PREFIX}br-{seg.name}"
            addr = seg.address
            yield Interface(
                seg.host, br, addr.v4, seg.mtu, seg.name, None, True, bridge=True, address6=addr.v6
            )
            for n, addrs in seg.members.items():
                yield Interface(n, IF_PREFIX + seg.name, addrs.v4, seg.mtu, seg.name, seg.host,
                                seg.tx_checksum_offload, address6=addrs.v6)  # fmt: skip


_ROLES: tuple[Role, ...] = ("client", "router", "mux", "server", "gateway")
BLACKHOLE6 = "2001:2:0:200::/56"
"""The IPv6 SYN flood's spoofed sources, black-holed at the router in a lab that uses IPv6."""
PROBE_NET6 = "2001:2:0:300::/56"
"""The IPv6 tuple probes' spoofed sources (SC-2, SC-4), black-holed beside :data:`BLACKHOLE6`
(the IPv4 probes' are the default second network, 198.18.208.0/21)."""
BLACKHOLES6 = (BLACKHOLE6, PROBE_NET6)
"""What a file that uses IPv6 and gives no ``blackhole`` list gets black-holed besides IPv4."""


def _family(addr: str) -> Family:
    return "ipv6" if ipaddress.ip_address(addr).version == 6 else "ipv4"


def _family_of_network(net: str) -> Family:
    return "ipv6" if ipaddress.ip_network(net).version == 6 else "ipv4"


@dataclass(frozen=True)
class Uplink:
    peer: str
    ifname: str  # this node's interface
    address: str  # this node's IPv4 address on it (with prefix)
    peer_address: str  # the peer's IPv4 address on it (with prefix)
    address6: str | None = None  # this node's IPv6 address on it (with prefix), if any
    peer_address6: str | None = None  # the peer's, if any

    @property
    def peer_ip(self) -> str:
        return str(ipaddress.IPv4Interface(self.peer_address).ip)

    @property
    def ip(self) -> str:
        return str(ipaddress.IPv4Interface(self.address).ip)

    @property
    def ip6(self) -> str | None:
        return ip_of(self.address6)

    @property
    def peer_ip6(self) -> str | None:
        return ip_of(self.peer_address6)


@dataclass(frozen=True)
class Interface:
    node: str
    ifname: str
    address: str
    mtu: int
    group: str  # the link ("link3") or segment name it belongs to
    peer: str | None  # the node at the other end (for a segment member: the segment's host)
    tx_offload: bool
    bridge: bool = False
    address6: str | None = None  # its IPv6 address (with prefix), if the file gives one
