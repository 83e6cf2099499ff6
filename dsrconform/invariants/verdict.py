"""Verdicts, and the contract every checker keeps.

A checker is a pure function ``(observations, params) -> Verdict`` decorated with
``@checker("RW-1")``: it reads :class:`~dsrconform.observe.observations.Observations` (no
system access, no clock, no randomness) and decides one requirement of
:mod:`dsrconform.spec`:

- **PASS**: the data needed was there and complete, and shows no violation;
- **FAIL**: at least one violation was seen; the evidence names the flows, packets, links and
  times. A violation seen in the data that was recorded is a FAIL even if other data is missing;
- **UNKNOWN**: no violation was seen, but data was missing, incomplete (a tap that overflowed) or
  too small to decide; ``missing`` says what. A checker that crashes is UNKNOWN, never PASS.

A fourth status, **NOT APPLICABLE**, is never a checker's: the framework gives it, before
checking, to a requirement the target cannot be asked about (:mod:`dsrconform.applicability`).

Checkers build their verdict with a :class:`Judge`. A helper that finds data missing raises
:class:`MissingData`; the decorator turns it into UNKNOWN. Callers use :func:`run_checker`, which
also fills the requirement's default parameters and turns any exception into UNKNOWN::

    verdict = run_checker("dsrconform.invariants.rewrite:check_replies_carry_vip", obs)
    verdict = run_checker(check_spread_within_bound, obs, {"epsilon": 0.02})
"""

from __future__ import annotations

import gc
import importlib
import traceback
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from dsrconform import spec
from dsrconform.errors import ConfigError
from dsrconform.observe.observations import MissingData

if TYPE_CHECKING:
    from dsrconform.observe.observations import Observations

MAX_EVIDENCE = 20
"""Evidence items kept per verdict; the rest are counted in ``evidence_omitted``."""

Value = float | int | str | None
Params = Mapping[str, float]


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    UNKNOWN = "UNKNOWN"
    NOT_APPLICABLE = "NOT APPLICABLE"
    """Not a checker's answer: the framework's, before checking, for a requirement the target
    cannot be asked about (:mod:`dsrconform.applicability`). A checker returning it is UNKNOWN."""


class Evidence(BaseModel):
    """One observed fact behind a verdict: what, which flow, which packet, where, when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message: str
    flow: str | None = None
    """The flow, as the traffic saw it: ``tcp 198.18.1.2:40001 > 198.19.0.10:80 (flow 7)``."""
    packet: str | None = None
    """The packets, as a tap saw them: ``tcp 198.19.0.10:80 > 198.18.1.2:40001 flags SA, ...``."""
    link: str | None = None
    """The tap: ``mux1:dsrc-router ingress (link1 from router)``."""
    time: float | None = None
    """CLOCK_MONOTONIC seconds: when it happened (or began)."""
    until: float | None = None


class Verdict(BaseModel):
    """The decision on one requirement, with what was measured and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requirement: str
    level: spec.Level
    status: Status
    message: str
    checker: str = ""
    """``module:function`` of the checker (filled by :func:`run_checker`)."""
    params: dict[str, float] = Field(default_factory=dict)
    """The parameter values the checker ran with (filled by :func:`run_checker`)."""
    measured: dict[str, Value] = Field(default_factory=dict)
    thresholds: dict[str, Value] = Field(default_factory=dict)
    evidence: list[Evidence] = Field(default_factory=list)
    evidence_omitted: Annotated[int, Field(ge=0)] = 0
    missing: list[str] = Field(default_factory=list)
    """Why the verdict is UNKNOWN: the data that was missing, incomplete or too small."""
    error: str | None = None
    """The traceback's tail when the checker crashed."""

    @model_validator(mode="after")
    def _contract(self) -> Verdict:
        if self.status == Status.FAIL and not self.evidence:
            raise ValueError(f"{self.requirement}: a FAIL verdict needs evidence")
        if self.status == Status.UNKNOWN and not (self.missing or self.error):
            raise ValueError(f"{self.requirement}: an UNKNOWN verdict must say what is missing")
        return self

    @property
    def passed(self) -> bool:
        return self.status == Status.PASS


VERDICT_LIST: TypeAdapter[list[Verdict]] = TypeAdapter(list[Verdict])
"""Verdicts to and from JSON (run directories, the checking child of check_parallel)."""


class Judge:
    """Collects a checker's measurements, violations and gaps, then decides the verdict."""

    def __init__(self, requirement: str) -> None:
        self.requirement = requirement
        self.measured: dict[str, Value] = {}
        self.thresholds: dict[str, Value] = {}
        self.evidence: list[Evidence] = []
        self.missing: list[str] = []

    @property
    def violations(self) -> int:
        return len(self.evidence)

    def violation(
        self,
        message: str,
        *,
        flow: str | None = None,
        packet: str | None = None,
        link: str | None = None,
        time: float | None = None,
        until: float | None = None,
    ) -> None:
        self.evidence.append(
            Evidence(message=message, flow=flow, packet=packet, link=link, time=time, until=until)
        )

    def incomplete(self, what: str) -> None:
        """Record data that is missing or incomplete: the verdict cannot be PASS."""
        if what not in self.missing:
            self.missing.append(what)

    def verdict(self, *, passed: str, failed: str) -> Verdict:
        """FAIL if a violation was recorded, else UNKNOWN if data was incomplete, else PASS."""
        if self.evidence:
            status, message = Status.FAIL, failed
        elif self.missing:
            status, message = Status.UNKNOWN, "cannot decide: " + "; ".join(self.missing)
        else:
            status, message = Status.PASS, passed
        kept = self.evidence[:MAX_EVIDENCE]
        return Verdict(
            requirement=self.requirement,
            level=spec.get(self.requirement).level,
            status=status,
            message=message,
            measured=self.measured,
            thresholds=self.thresholds,
            evidence=kept,
            evidence_omitted=len(self.evidence) - len(kept),
            missing=self.missing if status == Status.UNKNOWN else [],
        )


def unknown(requirement: str, missing: Iterable[str], *, error: str | None = None) -> Verdict:
    """An UNKNOWN verdict stating what is missing."""
    what = list(missing)
    return Verdict(
        requirement=requirement,
        level=spec.get(requirement).level,
        status=Status.UNKNOWN,
        message="cannot decide: " + "; ".join(what),
        missing=what,
        error=error,
    )


CheckFn = Callable[["Observations", Params], Verdict]


class Checker:
    """A checker function bound to the requirement it decides (made by :func:`checker`)."""

    def __init__(self, requirement: str, fn: CheckFn) -> None:
        spec.get(requirement)  # a typo in an ID fails at import, naming the known ones
        self.requirement = requirement
        self.fn = fn
        self.__name__ = fn.__name__
        self.__module__ = fn.__module__
        self.__doc__ = fn.__doc__

    @property
    def name(self) -> str:
        return f"{self.__module__}:{self.__name__}"

    def __call__(self, observations: Observations, params: Params) -> Verdict:
        try:
            return self.fn(observations, params)
        except MissingData as e:
            return unknown(self.requirement, e.what)

    def __repr__(self) -> str:
        return f"<checker {self.name} for {self.requirement}>"


def checker(requirement: str) -> Callable[[CheckFn], Checker]:
    """Decorator: ``fn`` decides ``requirement``; MissingData inside it becomes UNKNOWN."""

    def wrap(fn: CheckFn) -> Checker:
        return Checker(requirement, fn)

    return wrap


def resolve_checker(ref: str) -> Checker:
    """The checker named ``module:function``; ConfigError if there is none."""
    module, _, name = ref.partition(":")
    try:
        obj: Any = getattr(importlib.import_module(module), name, None)
    except ModuleNotFoundError:
        obj = None
    if not isinstance(obj, Checker):
        raise ConfigError(
            f"checker {ref!r} not found; fix: name a function decorated with @checker in "
            "dsrconform.invariants as module:function"
        )
    return obj


def run_checker(
    check: Checker | str, observations: Observations, params: Mapping[str, Any] | None = None
) -> Verdict:
    """Run a checker with its requirement's defaults overridden by ``params``.

    Unknown parameter names or non-numeric values raise ConfigError (a caller's mistake, before
    anything runs). Any exception inside the checker, or a result that is not a Verdict for the
    checker's requirement, gives UNKNOWN stating so: never PASS.

    The cyclic garbage collector is paused while the checker runs: with a million tap records
    alive, every collection the checker's own allocations trigger walks all of them, which
    tripled the checking time (records form no cycles; refcounting frees what the checker drops).
    """
    was_enabled = gc.isenabled()
    gc.disable()  # first: even resolving the checker allocates, and may trigger a collection
    try:
        fn = resolve_checker(check) if isinstance(check, str) else check
        req = spec.get(fn.requirement)
        merged = req.resolve_params(params or {})
    except BaseException:
        if was_enabled:
            gc.enable()
        raise
    try:
        verdict = fn(observations, merged)
    except Exception as e:
        tail = "".join(traceback.format_exception(e)[-3:]).strip()
        crashed = f"the checker {fn.name} crashed ({type(e).__name__}: {e}); this says nothing"
        return unknown(req.id, [crashed + " about the SUT"], error=tail).model_copy(
            update={"checker": fn.name, "params": merged}
        )
    finally:
        if was_enabled:
            gc.enable()
    if isinstance(verdict, Verdict) and verdict.status == Status.NOT_APPLICABLE:
        return unknown(
            req.id,
            [f"the checker {fn.name} answered NOT APPLICABLE, which only the framework decides"],
        ).model_copy(update={"checker": fn.name, "params": merged})
    if not isinstance(verdict, Verdict) or verdict.requirement != req.id:
        got = verdict.requirement if isinstance(verdict, Verdict) else type(verdict).__name__
        return unknown(
            req.id, [f"the checker {fn.name} returned a verdict for {got}, not {req.id}"]
        ).model_copy(update={"checker": fn.name, "params": merged})
    return verdict.model_copy(update={"checker": fn.name, "params": merged})
