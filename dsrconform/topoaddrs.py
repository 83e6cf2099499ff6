"""Interface addresses in topology files: IPv4 alone, or IPv4 and IPv6 together.

A link end, a segment's address and a segment member's address are each written as one IPv4
address with its prefix, or as a list of one IPv4 and one IPv6 address (either order)::

    ends: {client: 198.18.1.1/24, router: 198.18.1.254/24}                      # IPv4 only
    ends: {client: [198.18.1.1/24, 2001:2:0:1::1/64],
           router: [198.18.1.254/24, 2001:2:0:1::fe/64]}                         # dual-stack

IPv4 is required on every link: the BGP sessions run over IPv4 (IPv6 routes are carried over them
with IPv6 next hops). IPv4 addresses lie in 198.18.0.0/15, IPv6 ones in 2001:2::/48
(:data:`~dsrconform.configfile.LAB_NET6`, RFC 5180), and a bad one fails with the same kind of
message in either family: what is wrong, then ``fix:``. :func:`parse_iface_addrs` is the
validator the topology model (:mod:`dsrconform.topology`) uses; :class:`IfAddrs` is what it keeps;
:func:`ipv6_problems` the model's cross-checks of where IPv6 is needed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dsrconform.configfile import LAB_NET, LAB_NET6, lab_address

if TYPE_CHECKING:
    from dsrconform.topology import Topology

EXAMPLE = "[198.18.1.1/24, 2001:2:0:1::1/64]"


@dataclass(frozen=True)
class IfAddrs:
    """One interface's addresses, each with its prefix: IPv4 always, IPv6 when the file gives it."""

    v4: str
    v6: str | None = None

    @property
    def all(self) -> tuple[str, ...]:
        return (self.v4,) if self.v6 is None else (self.v4, self.v6)

    def dump(self) -> str | list[str]:
        """As a file writes it (a model dump loads back to the same value)."""
        return self.v4 if self.v6 is None else [self.v4, self.v6]


def _one(v: object) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """One address with its prefix, inside its family's lab range, not the subnet's own."""
    if not isinstance(v, str):
        raise ValueError(
            f"{v!r} is not an address with a prefix; fix: write e.g. 198.18.1.1/24, or "
            f"{EXAMPLE} for IPv4 and IPv6"
        )
    try:
        iface = ipaddress.ip_interface(v)
    except ValueError:
        raise ValueError(
            f"{v!r} is not an address with a prefix; fix: write e.g. 198.18.1.1/24 or "
            "2001:2:0:1::1/64"
        ) from None
    bits = iface.max_prefixlen
    example = "198.18.1.1/24" if bits == 32 else "2001:2:0:1::1/64"
    if iface.network.prefixlen == bits or "/" not in v:
        raise ValueError(f"{v!r} needs a prefix length below {bits}; fix: write e.g. {example}")
    lab_address(str(iface.ip))
    net = LAB_NET if bits == 32 else LAB_NET6
    if not iface.network.subnet_of(net):  # type: ignore[arg-type]
        raise ValueError(f"{v}: the subnet leaves {net}; fix: use a longer prefix")
    if bits == 32 and iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        raise ValueError(
            f"{v} is the subnet's network or broadcast address; fix: use a host address"
        )
    if bits == 128 and iface.network.prefixlen < 127 and iface.ip == iface.network.network_address:
        raise ValueError(
            f"{v} is the subnet's network address (the subnet-router anycast address); fix: use "
            "a host address, e.g. ::1"
        )
    return iface


def parse_iface_addrs(v: object) -> IfAddrs:
    """An interface's address(es) as a file writes them (see the module doc), checked."""
    if isinstance(v, IfAddrs):
        return v
    if isinstance(v, list | tuple):
        if len(v) != 2:
            raise ValueError(
                f"{len(v)} addresses; fix: give one address, or a list of one IPv4 and one IPv6 "
                f"address such as {EXAMPLE}"
            )
        a, b = (_one(x) for x in v)
        if a.version == b.version:
            raise ValueError(
                f"two IPv{a.version} addresses; fix: a list holds one IPv4 and one IPv6 address, "
                f"such as {EXAMPLE}"
            )
        v4, v6 = (a, b) if a.version == 4 else (b, a)
        return IfAddrs(str(v4), str(v6))
    one = _one(v)
    if one.version == 6:
        raise ValueError(
            f"{v} is IPv6 alone, and every link needs IPv4 (the BGP sessions run over it); fix: "
            f"give both, e.g. [198.18.1.1/24, {v}]"
        )
    return IfAddrs(str(one))


def endpoint(addr: str, port: int) -> str:
    """``ADDR:PORT``, an IPv6 address in brackets (``[2001:2:0:100::10]:80``)."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def network(addr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_interface(addr).network


def ip_of(addr: str | None) -> str | None:
    """The address without its prefix (None stays None)."""
    return None if addr is None else str(ipaddress.ip_interface(addr).ip)


def ipv6_problems(topo: Topology, router: str) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Where IPv6 is asked for, the nodes that carry it have it toward the router: a client's
    IPv6 addresses, and the MUXes, servers (and gateway, in gateway-nat) of a service whose VIP
    or backends are IPv6. Nodes without a way to the router are reported elsewhere."""

    def reaches(node: str, peer: str = router) -> bool:
        try:
            topo.uplink(node, peer)
        except KeyError:
            return False
        return node in topo.nodes

    def has6(node: str, peer: str = router) -> bool:
        return topo.uplink(node, peer).ip6 is not None

    for name, node in topo.nodes.items():
        for j, a in enumerate(node.addresses):
            if ":" in a and reaches(name) and not has6(name):
                yield (
                    ("nodes", name, "addresses", j),
                    f"{a} is IPv6 but {name} has no IPv6 address toward {router}; fix: give its "
                    f"link an IPv6 address on both ends (such as {EXAMPLE}), or remove it",
                )
    clients6 = [
        c for c in topo.of_role("client") if topo.nodes[c].traffic and reaches(c) and has6(c)
    ]
    gateways = topo.of_role("gateway")
    for i, svc in enumerate(topo.services):
        if svc.family != "ipv6" and svc.backend_family != "ipv6":
            continue
        why = "its VIP is IPv6" if svc.family == "ipv6" else "its backend_family is ipv6"
        for field, nodes in (
            ("muxes", svc.muxes or topo.of_role("mux")),
            ("servers", topo.servers_of(svc)),
        ):
            for n in nodes:
                if reaches(n) and not has6(n):
                    yield (
                        ("services", i, field if getattr(svc, field) else "vip"),
                        f"{svc.name} needs IPv6 on {n} ({why}), which has no IPv6 address "
                        f"toward {router}; fix: give {n}'s link or segment toward {router} an "
                        f"IPv6 address ({EXAMPLE}), or leave {n} out of the service",
                    )
        if svc.family == "ipv6" and not clients6:
            yield (
                ("services", i, "vip"),
                f"no client has IPv6 toward {router}, so nothing reaches {svc.vip}; fix: give a "
                f"client's link an IPv6 address ({EXAMPLE})",
            )
        if svc.family == "ipv6" and topo.mode == "gateway-nat" and gateways:
            gw = gateways[0]
            lacking = [s for s in topo.servers_of(svc) if reaches(s, gw) and not has6(s, gw)]
            if reaches(gw) and not has6(gw):
                lacking.append(gw)
            if lacking:
                yield (
                    ("services", i, "vip"),
                    f"gateway-nat: {svc.name}'s IPv6 replies leave through {gw}, and "
                    f"{', '.join(lacking)} lack IPv6 on the way; fix: give the links between the "
                    f"servers, {gw} and {router} IPv6 addresses",
                )
