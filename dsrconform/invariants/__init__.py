"""Invariant checkers: pure functions from a run's observations to a verdict per requirement.

Every requirement of :mod:`dsrconform.spec` names its checker (``module:function``); a checker
reads :class:`~dsrconform.observe.observations.Observations` and returns a
:class:`~dsrconform.invariants.verdict.Verdict`: PASS, FAIL with evidence (flows, packets, links,
times), or UNKNOWN saying what data was missing. Nothing here touches the system: no sockets,
no netlink, no subprocesses, no clock; the same observations always give the same verdicts.

Modules by family: :mod:`.rewrite` (RW), :mod:`.path` (DP), :mod:`.affinity` (AF),
:mod:`.flood` (SF), :mod:`.muxfail` (MF), :mod:`.scale` (SC), :mod:`.robust` (RB); shared
pieces in :mod:`.observations` (what checkers read), :mod:`.flows` (survival, attempts),
:mod:`.served` (what the stack was seen to serve: the minimum evidence before a PASS) and
:mod:`.verdict` (the contract, :func:`run_checker`).

No checker passes a stack that forwards nothing: each states the minimum evidence it needs
(its docstring's "Minimum:", the catalogue's ``minimum``) and answers UNKNOWN below it::

    from dsrconform.invariants import Observations, check_all
    verdicts = check_all(Observations(lab=facts, history=history, taps=taps), ids=["RW-1"])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dsrconform import spec
from dsrconform.invariants.verdict import (
    Checker,
    Evidence,
    Status,
    Verdict,
    checker,
    resolve_checker,
    run_checker,
)
from dsrconform.observe.observations import FaultWindow, LabFacts, Observations, ServiceFacts

__all__ = [
    "Checker",
    "Evidence",
    "FaultWindow",
    "LabFacts",
    "Observations",
    "ServiceFacts",
    "Status",
    "Verdict",
    "check_all",
    "checker",
    "resolve_checker",
    "run_checker",
]


def check_all(
    observations: Observations,
    *,
    ids: Iterable[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Verdict]:
    """Run the checker of every requirement (or of ``ids``), in catalogue order, with
    per-requirement parameter overrides ``params[id]``."""
    wanted = set(ids) if ids is not None else None
    if wanted is not None:
        for req_id in wanted:
            spec.get(req_id)
    out = []
    for req in spec.REQUIREMENTS:
        if wanted is None or req.id in wanted:
            out.append(run_checker(req.checker, observations, (params or {}).get(req.id)))
    return out
