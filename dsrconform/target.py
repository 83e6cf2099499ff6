"""The target protocol: how dsrconform drives a DSR stack without knowing whose it is.

A target is found by name through the ``dsrconform.targets`` entry-point group (the reference
stack registers ``reference``, and dsrconform's own :mod:`dsrconform.targets.null`, a stack that
deploys nothing, ``null``), or as ``module:Class`` for an adapter that is not installed;
:func:`load_target` instantiates it, optionally as one of its
mutants. The protocol grows with the lab issue (deploy, backends, MUX failure); for now it covers
what the first brick needs: the mutant catalogue and a MUX the benchmark can attach.

Contracts:
- ``modes`` are the rewrite modes (:data:`dsrconform.topology.MODES`) the target can deploy:
  without ``--dsr-mode``, a run covers each (the steady suite in every one the lab file allows).
- ``mutants()`` lists the deliberate bugs the target can be built with; ``load_target(name,
  mutant=M)`` gives a target that runs M everywhere it would run the correct stack.
- ``mux_for_bench(...)`` is a context manager that attaches the target's MUX data plane to
  ``ifname`` inside network namespace ``netns``, programmed with one VIP and its backends, sending
  encapsulated packets back out of the same interface toward ``next_hop_mac``; leaving the
  context detaches everything it attached.
- ``deploy(lab)`` returns a :class:`Deployment`, whose ``counters()`` are the stack's own
  counters (per component, never decreasing, stable names) for the checkers that read them.
- ``Deployment.set_backends(service, servers, draining=...)`` changes a service's active and
  draining servers on the running stack, every MUX atomically, and the change outlives MUX
  restarts; ``Deployment.backends(service)`` reads the current sets.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from dsrconform.errors import ConfigError

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab
    from dsrconform.topology import Mode

ENTRY_POINT_GROUP = "dsrconform.targets"


@dataclass(frozen=True)
class MutantInfo:
    """One deliberate bug a target can be built with.

    ``requirements`` are the IDs it violates (see :mod:`dsrconform.spec`). ``system_level`` is
    empty when a packet-level test catches it, else the reason only a running system shows it.
    """

    name: str
    description: str
    requirements: tuple[str, ...]
    component: str
    system_level: str = ""
    caught_by: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchVip:
    addr: str
    port: int
    proto: int


@runtime_checkable
class Target(Protocol):
    """A DSR stack under test."""

    name: str
    mutant: str | None
    modes: tuple[Mode, ...]
    """The rewrite modes this target can deploy (a lab's ``mode``)."""

    def mutants(self) -> Sequence[MutantInfo]: ...

    def mux_for_bench(
        self,
        *,
        netns: str,
        ifname: str,
        mux_addr: str,
        next_hop_mac: str,
        vip: BenchVip,
        backends: Sequence[str],
    ) -> AbstractContextManager[None]: ...

    def deploy(self, lab: RunningLab) -> Deployment:
        """Deploy the stack into ``lab`` (a :class:`~dsrconform.lab.protocol.RunningLab`:
        topology, namespaces, ``spawn``/``run`` per node, a run directory; its ``deployment`` is
        still None) and return a handle on it."""
        ...


class BgpSpeaker(Protocol):
    """A MUX node's BGP speaker, owned by the lab (``lab.bgp(mux)``): the border router installs
    a VIP as an ECMP route over every MUX announcing it. A target announces a VIP on a MUX once
    its data plane there forwards it, and withdraws it to take the MUX out of the VIP's ECMP
    group. Both are idempotent. A killed MUX's session dies with the node; when the lab restarts
    the node, its speaker announces nothing until the target announces again
    (:meth:`Deployment.restart`)."""

    def announce(self, vip: str) -> None: ...

    def withdraw(self, vip: str) -> None: ...

    def announced(self) -> list[str]: ...


@runtime_checkable
class AgentRestart(Protocol):
    """A deployment capability (optional): restart a server's agent with empty state, as when
    it crashes and comes back: its flow and NAT tables are lost (the ``agent-restart`` fault;
    a deployment without it makes that fault a LabError, so its requirements are UNKNOWN)."""

    def restart_agent(self, server: str) -> None: ...


class Deployment(Protocol):
    """A target's stack running in a lab."""

    def wait_ready(self, timeout: float) -> float:
        """Block until traffic can flow (routes converged, applications listening); return the
        seconds waited, or raise LabError naming what is missing at the deadline."""
        ...

    def status(self) -> dict[str, Any]:
        """What the stack reports about itself, for ``dsrconform lab status`` (JSON-able; merged
        into the lab's own status)."""
        ...

    def restart(self, node: str) -> None:
        """Start again what the stack runs on ``node``, after the lab killed it and brought its
        interfaces back up (:meth:`dsrconform.lab.Lab.restart_node`). A restarted component
        comes back with the deployment's current configuration (backend sets included,
        :meth:`set_backends`) and empty state; a node where the stack runs nothing is left
        as it is."""
        ...

    def counters(self) -> dict[str, dict[str, int]]:
        """The stack's own counters now: component -> counter name -> value.

        Components are named after the lab node they run on (``mux1``, ``server2``, ``gw``); a
        component the target does not have, or does not count, is absent (never an empty dict
        standing in for "unknown"). Values are non-negative integers that never decrease over
        the deployment's life, even across a component's restart (the target carries the old
        instance's totals over). Names are stable: a name always means the same thing, and once
        reported it keeps being reported. Reading must be cheap enough to call every second and
        safe from any thread; :mod:`dsrconform.observe.counters` snapshots it into
        :class:`~dsrconform.observe.taps.CounterSnapshot` records."""
        ...

    def set_backends(
        self, service: str, servers: Sequence[str], *, draining: Sequence[str] = ()
    ) -> None:
        """Change the servers of ``service`` on the running stack (scale out, scale in, drain).

        ``service`` is a topology service name; ``servers`` and ``draining`` are server node
        names. After the call, for every MUX that serves the service:

        - **active** (``servers``): the servers new connections are spread over. Not empty. A
          server may be one the service did not start with only if it runs the service's
          application (in a topology without a ``servers:`` list on the service, every server
          does).
        - **draining** (``draining``): receives no new connection, but every connection
          established to it when the call was made keeps reaching it (its packets are still
          forwarded to it) until it ends. Must not overlap ``servers``.
        - **removed** (a server of the previous sets in neither): receives no new connection;
          its established connections may break (that is what removing means).

        A *new connection* is one whose first packet (TCP SYN, or a UDP flow's first datagram)
        reaches the MUX after the call returns, on a 5-tuple the MUX carries no connection for.
        A client reusing the 5-tuple of a connection the MUX still remembers is that connection
        as far as the MUX can tell, and may be kept on its server (connection affinity wins).
        A connection is *established* once a packet after its SYN (the handshake's ACK) has
        crossed the MUX; one whose handshake straddles the call (SYN before, ACK after) may end
        up on either side or break: that window is one round trip.
        Established connections to a draining server survive only as long as the MUX carrying
        them keeps its state: a MUX restart, or the router moving them to another MUX, gives
        them the same fate as any connection whose server the current table no longer picks.

        Each MUX switches atomically (a packet sees the old sets or the new ones, never a mix);
        the call returns once every MUX serving the service has the new sets. MUXes switch one
        after another, so for a moment two MUXes may disagree; a suite must not expect more.
        The sets persist for the deployment's life: a MUX that restarts later (``restart``, or
        :meth:`dsrconform.lab.Lab.restart_node`) comes back with the current sets (draining
        included), never the topology's original ones. Services not named are untouched.

        Raises :class:`~dsrconform.errors.ConfigError`, changing nothing, for an unknown service
        or server (the message names it and lists the known ones), an empty ``servers``, a
        server in both lists, or a server that does not run the service's application.
        """
        ...

    def backends(self, service: str) -> dict[str, list[str]]:
        """The current sets of ``service``: ``{"active": [...], "draining": [...]}``, server node
        names sorted (the topology's servers of the service until :meth:`set_backends` changes
        them). ConfigError for an unknown service. The framework records it before and after
        a change (``backends_before`` / ``backends_after``)."""
        ...

    def close(self) -> None:
        """Detach whatever the deployment attached (the lab removes namespaces and processes)."""
        ...


def parse_target_options(items: Sequence[str], *, flag: str = "--target-opt") -> dict[str, str]:
    """``KEY=VALUE`` items (``--target-opt``, repeatable) as a dict; a ConfigError naming the
    bad item and the fix. Which keys a target knows is for its constructor to check."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {item!r}: fix: KEY=VALUE, e.g. {flag} katran_src=/src")
        out[key.strip()] = value
    return out


def available_targets() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def check_mutant(
    target_name: str, mutant: str | None, *, options: Mapping[str, str] | None = None
) -> MutantInfo | None:
    """The :class:`MutantInfo` of ``mutant`` among the mutants target ``target_name`` lists
    (None for the correct stack), checked before anything is built or brought up: every command
    and fixture that takes a mutant name calls this first, so an unknown target or mutant is a
    ConfigError (exit 2) naming the target's mutants, whatever the target's own constructor
    would accept."""
    infos = load_target(target_name, options=options).mutants()
    if mutant is None:
        return None
    for info in infos:
        if info.name == mutant:
            return info
    names = ", ".join(i.name for i in infos) or "none"
    raise ConfigError(
        f"unknown mutant {mutant!r} of target {target_name!r}; its mutants "
        f"(`dsrconform mutants --target {target_name}`): {names}"
    )


def load_target(
    name: str = "reference",
    *,
    mutant: str | None = None,
    options: Mapping[str, str] | None = None,
) -> Target:
    """Instantiate the target registered as ``name`` (optionally as mutant ``mutant``). With
    ``options`` (the target's own settings, e.g. the reference gateway's ``gateway: naive``),
    its constructor is called with ``options=``; a target that takes none refuses them.

    ``name`` may also be ``module:Class`` (``my_adapter.target:MyTarget``, or the built-in
    ``dsrconform.targets.null:NullTarget``): the class is imported from the module on
    ``sys.path``, without an entry point. That runs an adapter that is not installed (a
    checkout on ``PYTHONPATH``, an adapter under development) exactly as a registered one::

        dsrconform run --target my_adapter.target:MyTarget
        pytest suites --dsr-target my_adapter.target:MyTarget

    ConfigError names an unknown registered name (listing the registered ones), a module that
    cannot be imported, or a class the module lacks."""
    cls = _target_class(name)
    if options:
        try:
            target = cls(mutant=mutant, options=dict(options))
        except TypeError:
            raise ConfigError(
                f"target {name!r} takes no options (given: {', '.join(options)}); fix: leave "
                "them out"
            ) from None
    else:
        target = cls(mutant=mutant)
    if not isinstance(target, Target):
        raise ConfigError(f"target {name!r} ({cls}) does not implement dsrconform.target.Target")
    return target


def _target_class(name: str) -> Any:
    """The class ``name`` stands for: an entry point's, or ``module:Class``'s."""
    module, sep, attr = name.partition(":")
    if sep:
        if not module or not attr.isidentifier():
            raise ConfigError(
                f"target {name!r}: fix: name a registered target, or a class as module:Class "
                "(e.g. dsrconform.targets.null:NullTarget)"
            )
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(
                f"target {name!r}: cannot import module {module!r} ({e}); fix: install it, or "
                "put its directory on PYTHONPATH"
            ) from None
        cls = getattr(mod, attr, None)
        if cls is None:
            raise ConfigError(f"target {name!r}: module {module!r} has no {attr!r}")
        if not isinstance(cls, type):
            raise ConfigError(
                f"target {name!r}: {attr!r} of module {module!r} is no class; fix: name the "
                "target's class"
            )
        return cls
    eps = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none (is the package installed? `pip install -e .`)"
        raise ConfigError(
            f"unknown target {name!r}; registered targets: {known} (or name a class as "
            "module:Class)"
        )
    return eps[name].load()


def target_version(name: str) -> str | None:
    """The version of the distribution that registers target ``name`` (its package's version,
    e.g. ``dsrconform 0.1.0`` for the reference stack); None for an unknown target."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            dist = ep.dist
            return f"{dist.name} {dist.version}" if dist is not None else None
    return None
