"""The IPv6 twin of a synthetic run: every lab address mapped into 2001:2::/48, IP-in-IP made
IPv6-in-IPv6 (protocol 41), ICMP made ICMPv6 (fragmentation-needed becomes packet-too-big).

Checkers must be family-agnostic (issue 18): a run's IPv6 twin must get the verdicts its IPv4
original gets. :func:`ipv6_run` builds the twin of a :class:`~tests.unit.observations_builder.Run`
by rewriting every record, so the checker tests' scenarios run again in IPv6 without a second
copy of each builder.

The mapping keeps the lab's structure: 198.18.A.B -> 2001:2:0:A::B and 198.19.A.B ->
2001:2:0:1A::B (hex; the second octet's low bit and the third octet make the fourth group), so
an IPv4 /n network (n <= 24) maps to an IPv6 /(40 + n) holding the images of its addresses.
"""

from __future__ import annotations

import ipaddress
from typing import Any, TypeVar

from pydantic import BaseModel

from tests.unit.observations_builder import Run

LAB4 = ipaddress.IPv4Network("198.18.0.0/15")
PREFIX6 = 0x2001_0002_0000 << 80
M = TypeVar("M", bound=BaseModel)

ICMP_TO_ICMPV6 = {
    (3, 4): (2, 0),  # fragmentation needed -> packet too big
    (3, 3): (1, 4),  # port unreachable
    (3, 1): (1, 3),  # host unreachable -> address unreachable
    (11, 0): (3, 0),  # time exceeded in transit
    (0, 0): (129, 0),  # echo reply
    (8, 0): (128, 0),  # echo request
}


def v6(addr: str) -> str:
    """The IPv6 twin of a lab IPv4 address (others unchanged)."""
    ip = ipaddress.IPv4Address(addr)
    if ip not in LAB4:
        return addr
    n = int(ip)
    return str(ipaddress.IPv6Address(PREFIX6 | ((n >> 8) & 0x1FF) << 64 | (n & 0xFF)))


def v6_net(text: str) -> str:
    net = ipaddress.IPv4Network(text)
    if net.prefixlen == 32:
        return f"{v6(str(net.network_address))}/128"
    if net.prefixlen > 24 or not net.subnet_of(LAB4):
        raise ValueError(f"{net}: only lab networks of /24 or shorter (or /32) have a twin")
    return f"{v6(str(net.network_address))}/{40 + net.prefixlen}"


def _text(value: str) -> str:
    try:
        return v6(value)
    except ValueError:
        pass
    if "/" in value:
        try:
            return v6_net(value)
        except ValueError:
            return value
    return value


def _walk(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, list | tuple):
        return [_walk(v) for v in value]
    if not isinstance(value, dict):
        return value
    inner = value.get("inner")
    # A record's ICMP type and code are its innermost header's (an encapsulated error's too).
    icmp = value.get("proto") == 1 or (isinstance(inner, dict) and inner.get("proto") == 1)
    out = {k: _walk(v) for k, v in value.items()}
    if out.get("proto") == 4:  # IPv4 in IPv4 -> IPv6 in IPv6
        out["proto"] = 41
    elif out.get("proto") == 1:
        out["proto"] = 58
    if icmp and out.get("icmp_type") is not None:
        kind = (out["icmp_type"], out["icmp_code"])
        out["icmp_type"], out["icmp_code"] = ICMP_TO_ICMPV6[kind]
    return out


def twin(model: M) -> M:
    """``model`` (a record, a fault window, lab facts) with every lab address in IPv6."""
    return type(model).model_validate(_walk(model.model_dump()))


def ipv6_run(run: Run) -> Run:
    """The IPv6 twin of ``run`` (its taps' overflow and malformed counts kept)."""
    out = Run()
    out.lab = twin(run.lab)
    out.records = [twin(r) for r in run.records]
    out.tap_records = [twin(r) for r in run.tap_records]
    out.taps = {name: twin(info) for name, info in run.taps.items()}
    out.faults = [twin(f) for f in run.faults]
    return out
