"""NOT APPLICABLE: requirements a target cannot be asked about, decided before any checking.

A target declares its capabilities (:mod:`dsrconform.target`): the rewrite ``modes`` it deploys
and the address ``families`` it serves. A requirement is NOT APPLICABLE to a run of a target on a
platform when

- the platform's rewrite mode is not among the target's ``modes`` (the target cannot deploy
  there: every requirement of that platform's tests), or
- the platform's address family (``--dsr-family``: the family whose services the tests drive)
  is not among the target's ``families`` (likewise), or the lab file has services of a family
  the target does not serve (it could not deploy the lab), or
- the requirement concerns only some modes (:attr:`dsrconform.spec.Requirement.modes`) and the
  target supports none of them.

The framework decides it (the pytest plugin, at collection, before any lab comes up), never a
checker (:func:`dsrconform.invariants.verdict.run_checker` turns a checker's NOT APPLICABLE into
UNKNOWN). A test every requirement of which is NOT APPLICABLE is not run: reported as
``NOT APPLICABLE`` with the reason (naming the target and the capability), in the results model
(:attr:`~dsrconform.report.model.TestResult.not_applicable`), the HTML report, JUnit and allure.
NOT APPLICABLE never fails the gate nor counts as decided: a run where everything is NOT
APPLICABLE decided nothing.

This module imports only the catalogue: the plugin calls it at collection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dsrconform.spec import BY_ID, Requirement

if TYPE_CHECKING:
    from dsrconform.topology import Topology


@dataclass(frozen=True)
class Capabilities:
    """What a target says it can do (read from its ``modes`` and ``families``)."""

    target: str
    modes: tuple[str, ...]
    families: tuple[str, ...]


def family_of(addresses: Iterable[str]) -> str:
    """``ipv6`` when any of ``addresses`` (the lab's VIPs) is IPv6, else ``ipv4``."""
    v6 = any(ipaddress.ip_address(a.split("/")[0]).version == 6 for a in addresses)
    return "ipv6" if v6 else "ipv4"


def platform_reason(
    caps: Capabilities, mode: str, family: str, lab_families: Iterable[str] = ()
) -> str | None:
    """Why no requirement can be asked of the target in ``mode`` and address ``family`` (None:
    they can). ``lab_families``: the families of the lab file's services; the target deploys
    them all whatever family the tests drive, so one it does not serve makes the lab one it
    cannot deploy."""
    if mode not in caps.modes:
        return (
            f"target {caps.target!r} does not support rewrite mode {mode} (its capability modes: "
            f"{', '.join(caps.modes) or 'none'})"
        )
    for fam in dict.fromkeys([family, *lab_families]):
        if fam not in caps.families:
            served = ", ".join(caps.families) or "none"
            if fam == family:
                return (
                    f"target {caps.target!r} does not serve {fam} (its capability families: "
                    f"{served})"
                )
            return (
                f"the lab file has {fam} services and target {caps.target!r} does not serve "
                f"{fam} (its capability families: {served}); fix: a lab of its families only"
            )
    return None


def refuse_unsupported(
    target: str, topology: Topology, options: Mapping[str, str] | None = None
) -> None:
    """ConfigError when target ``target`` cannot deploy ``topology`` at all (its mode, or a
    family of its services, is not among the target's capabilities): what ``lab up``,
    ``steady`` and ``chaos run`` check before anything comes up (the suites report such a run
    NOT APPLICABLE)."""
    from dsrconform.errors import ConfigError
    from dsrconform.families import lab_families
    from dsrconform.target import load_target

    t = load_target(target, options=options)
    caps = Capabilities(target, tuple(t.modes), tuple(t.families))
    families = lab_families(topology.services) or ("ipv4",)
    why = platform_reason(caps, topology.mode, families[0], families)
    if why is not None:
        raise ConfigError(f"{why}; fix: a mode and lab the target supports (--mode)")


def requirement_reason(caps: Capabilities, req: Requirement) -> str | None:
    """Why ``req`` cannot be asked of the target in any mode (None: it can)."""
    if req.modes and not set(req.modes) & set(caps.modes):
        return (
            f"{req.id} concerns rewrite mode {', '.join(req.modes)} only, and target "
            f"{caps.target!r} supports none of it (its capability modes: "
            f"{', '.join(caps.modes) or 'none'})"
        )
    return None


def not_applicable(
    caps: Capabilities,
    mode: str,
    family: str,
    requirements: Sequence[str],
    lab_families: Iterable[str] = (),
) -> dict[str, str]:
    """Requirement ID -> why it is NOT APPLICABLE to the target on this platform (``mode``,
    address ``family``, a lab of ``lab_families``), for each of ``requirements`` that is (IDs
    the catalogue does not know are left to the caller)."""
    whole = platform_reason(caps, mode, family, lab_families)
    out: dict[str, str] = {}
    for rid in requirements:
        req = BY_ID.get(rid)
        if req is None:
            continue
        why = whole or requirement_reason(caps, req)
        if why is not None:
            out[rid] = why
    return out


def lab_test_reasons(
    caps: Capabilities,
    mode: str,
    family: str,
    requirements: Sequence[str],
    lab_families: Iterable[str] = (),
) -> dict[str, str] | None:
    """For a lab test citing ``requirements`` on this platform: requirement ID -> reason when
    the test is NOT APPLICABLE (every requirement it cites is, or the platform itself is: then a
    test citing none has the reason under ``""``); None when it is to run."""
    lab_families = tuple(lab_families)
    whole = platform_reason(caps, mode, family, lab_families)
    if whole is not None:
        return {r: whole for r in requirements} or {"": whole}
    reasons = not_applicable(caps, mode, family, requirements, lab_families)
    if requirements and len(reasons) == len(set(requirements)):
        return reasons
    return None
