"""Address families in a run: which services a family's tests drive, and whether a lab has any.

A run's lab tests run once per address family asked for (``--dsr-family ipv4,ipv6``,
``dsrconform run --family``), as they run once per rewrite mode: each family is part of the
test's platform (:mod:`dsrconform.pytest_platforms`), the suites see it as the ``dsr_family``
fixture, and a family's scenarios drive that family's services only (:func:`services_of`,
:func:`for_family`). A service belongs to its VIP's family (``Service.family``) and to its
backends' (``Service.backend_family``): a service with an IPv4 VIP and IPv6 backends
(IPv4-in-IPv6, labs/dual.yaml's web46) is driven in both runs, since an IPv6 run judges every
IPv6 path of the stack, its IPv6 encapsulation included.

A lab that has no service of a family asked for cannot judge that family: that is the run's
configuration error, refused before any lab comes up (:func:`missing_family`, the message
naming the lab file and the fix), never a pass and never a verdict about the target.

This module imports nothing heavy: the plugin and ``dsrconform run`` call it before any lab.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from dsrconform.runopts import FAMILY_LABS

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab
    from dsrconform.topology import Topology


class _Served(Protocol):
    """What a family needs of a service (:class:`dsrconform.topology.Service` has it)."""

    @property
    def vip(self) -> str: ...

    @property
    def family(self) -> str: ...

    @property
    def backend_family(self) -> str: ...


S = TypeVar("S", bound=_Served)


def family_of_address(address: str) -> str:
    """``ipv4`` or ``ipv6``: the family of ``address`` (a prefix length is ignored)."""
    version = ipaddress.ip_address(address.split("/")[0]).version
    return "ipv6" if version == 6 else "ipv4"


def services_of(services: Iterable[S], family: str) -> list[S]:
    """The services among ``services`` (a topology's ``services``) a test of address family
    ``family`` drives: those whose VIP or backends are of it, in the topology's order."""
    return [s for s in services if family in (s.family, s.backend_family)]


def family_services(topology: Topology, family: str) -> list[Any]:
    """The services of ``topology`` a test running in ``family`` drives (may be empty: see
    :func:`missing_family`)."""
    return services_of(topology.services, family)


def lab_families(services: Iterable[_Served]) -> tuple[str, ...]:
    """The families ``services`` (a topology's) can be judged in, ipv4 first."""
    present = {f for s in services for f in (s.family, s.backend_family)}
    return tuple(f for f in ("ipv4", "ipv6") if f in present)


def missing_family(
    path: str, services: Sequence[Any], family: str, *, flag: str = "--lab"
) -> str | None:
    """Why the lab file ``path`` (whose topology has ``services``) cannot run the tests of
    ``family``: it has no service of it. The message names the file, its services and the fix
    (another lab, or none: each family then brings up its own default). None: it can."""
    if services_of(services, family):
        return None
    names = ", ".join(f"{s.name} ({s.vip})" for s in services) or "none"
    own = FAMILY_LABS.get(family)
    fix = f"{flag} {own}, or leave {flag} out ({family} then runs on {own})" if own else flag
    return (
        f"lab file {path} has no {family} service (its services: {names}), so no {family} "
        f"requirement can be judged on it; fix: {fix}"
    )


class FamilyLab:
    """A running lab as a family's scenario sees it: the same lab (every method and attribute
    is the lab's own), with a topology whose services are that family's only, so the traffic,
    faults and checkers of the scenario address that family's VIPs. The lab itself, and the
    target deployed in it, keep every service of the file."""

    def __init__(self, lab: RunningLab, topology: Topology) -> None:
        self._lab = lab
        self.topology = topology

    def __getattr__(self, name: str) -> Any:
        # Only what is not set here (everything but topology) is the lab's: a delegating
        # view rather than a copy, so events, listeners and nodes stay the lab's one state.
        return getattr(self._lab, name)


def for_family(lab: RunningLab, family: str) -> RunningLab:
    """``lab`` as the scenarios of ``family`` drive it: itself when every service of its
    topology is of ``family`` (an IPv4-only lab in an IPv4 run: unchanged), else a
    :class:`FamilyLab` whose topology keeps only ``family``'s services."""
    topo = lab.topology
    mine = services_of(topo.services, family)
    if len(mine) == len(topo.services):
        return lab
    return cast("RunningLab", FamilyLab(lab, topo.model_copy(update={"services": mine})))
