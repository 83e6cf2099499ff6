"""The target SDK: how dsrconform drives a DSR stack without knowing whose it is.

A *target* is the adapter between dsrconform and one DSR stack (the reference stack in
``reference_impl``, Katran, your own). docs/targets.md is the step-by-step guide; this module is
the contract, member by member, and ``dsrconform target check NAME`` checks an adapter against it
without a lab.

Finding a target. ``--target NAME`` (and :func:`load_target`) takes either a name registered in
the ``dsrconform.targets`` entry-point group (the reference stack registers ``reference``,
dsrconform's own :mod:`dsrconform.targets.null`, a stack that deploys nothing, ``null``; an
installed adapter adds its own in its ``pyproject.toml``), or ``module:Class`` for an adapter that
is importable but not installed (``PYTHONPATH=examples dsrconform target check
template_target.minimal:MinimalTarget``).

Constructing it. The framework calls ``cls(mutant=None, options=None)`` (keywords):

- ``mutant``: None for the correct stack, else the name of one of ``mutants()``: the target is
  then built with that deliberate bug wherever it would run the correct stack. An unknown name
  must be refused *here*, with :class:`~dsrconform.errors.ConfigError` naming the known ones.
  (Every command also checks the name against ``mutants()`` first, :func:`check_mutant`, before
  any lab or BPF program comes up; refusing in the constructor keeps a direct caller safe.)
- ``options``: the target's own settings, ``KEY=VALUE`` strings (``--target-opt KEY=VALUE``,
  ``--dsr-target-opt``, a chaos scenario's ``target_options``; e.g. the reference gateway's
  ``gateway=naive``); None or ``{}`` when there are none. An unknown key or value must be
  refused with ConfigError naming the known ones.
- Construction is cheap and touches nothing: no lab, no BPF, no process. ``dsrconform mutants``,
  ``target check`` and every command's argument checks construct targets freely.

Capabilities (class attributes, read without a lab):

- ``modes``: the rewrite modes (:data:`dsrconform.topology.MODES`) the target can deploy. Without
  ``--mode``, the steady suite runs in each of them the lab file allows; a run in a mode it does
  not list reports that mode's requirements NOT APPLICABLE (:mod:`dsrconform.applicability`).
- ``families``: the address families (:data:`FAMILIES`) it serves VIPs in, e.g. ``("ipv4",)``;
  a lab of another family is NOT APPLICABLE the same way.
- ``encapsulations`` (optional): how its MUXes encapsulate and its servers decapsulate
  (:data:`ENCAPSULATIONS`: ``ipip``, ``gue``), e.g. ``("gue",)``; it may be a property when an
  option decides it. Read through :func:`target_encapsulations`, which gives
  :data:`DEFAULT_ENCAPSULATIONS` (``("ipip",)``) for a target that does not declare it. The
  hostile traffic forges "foreign" encapsulated packets (RB-4) in each of them.

The lab (:class:`dsrconform.lab.protocol.RunningLab`) owns the environment: namespaces, links,
the border router's BIRD and one BIRD per MUX (sessions Established, nothing announced), the
server applications (listening, and in encap mode each served VIP on the server's ``lo``), a
pass-through XDP program on the router's side of each MUX link, the clients. ``deploy(lab)``
installs only the target's data plane and control plane (MUX program on each MUX's uplink
``lab.topology.uplink(mux).ifname``, server-side decapsulation or NAT, the gateway), then announces
each VIP on each MUX that serves it through ``lab.bgp(mux).announce(vip)`` (:class:`BgpSpeaker`).

Encapsulation. In encap mode a MUX sends each VIP packet on to its server encapsulated, and the
checkers judge it by the packet inside (its client's 5-tuple, checksums, DSCP and ECN). The taps
and decoders (:mod:`dsrconform.observe`) understand two encapsulations, whatever the target:
IPIP (IPv4 protocol 4) and GUE variant 1 as Katran sends it, IPv4 directly in UDP to port
:data:`dsrconform.observe.taps.GUE_PORT` (6080; no GUE header, any outer source port: Katran
mixes the client's port into it), the one place that port is set. Observing needs no
declaration; the hostile traffic forges packets in the ``encapsulations`` a target declares
(IPIP if it declares none). A stack that encapsulates otherwise is judged by its outer headers
only (its encapsulated checks UNKNOWN or, where the outer header is what is checked, FAIL),
until the observe layer learns its format.

Optional capabilities are separate protocols a deployment or target may also satisfy, checked with
``isinstance``: :class:`AgentRestart` (the ``agent-restart`` fault), :class:`MuxBench`
(``dsrconform bench mux``). Without one, what needs it is UNKNOWN or refused, never a FAIL.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points, packages_distributions
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, runtime_checkable

from dsrconform.errors import ConfigError

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab
    from dsrconform.topology import Mode, Service, Topology

ENTRY_POINT_GROUP = "dsrconform.targets"
GUIDE = "docs/targets.md"

Family = Literal["ipv4", "ipv6"]
FAMILIES: tuple[Family, ...] = ("ipv4", "ipv6")
"""The address families a target may list in ``families``."""

Encapsulation = Literal["ipip", "gue"]
ENCAPSULATIONS: tuple[Encapsulation, ...] = ("ipip", "gue")
"""The encapsulations a target may list in ``encapsulations``: IPIP (IPv4 protocol 4), GUE
variant 1 (IPv4 directly in UDP to :data:`dsrconform.observe.taps.GUE_PORT`)."""
DEFAULT_ENCAPSULATIONS: tuple[Encapsulation, ...] = ("ipip",)
"""What a target that does not declare ``encapsulations`` is taken to use."""


def encapsulations_problem(value: object) -> str | None:
    """Why ``value`` is no valid ``encapsulations`` capability (None: it is one)."""
    if isinstance(value, str) or not isinstance(value, tuple | list) or not value:
        return f"{value!r}: a non-empty tuple expected"
    bad = [v for v in value if v not in ENCAPSULATIONS]
    if bad:
        return f"{value!r}: unknown {bad}"
    if len(set(value)) != len(value):
        return f"{value!r}: listed twice"
    return None


def capability_problem(field: str, value: object) -> str | None:
    """Why ``value`` is no valid value of capability ``field`` (``modes``, ``families`` or
    ``encapsulations``; None: it is one): a non-empty tuple (or list) of known values, none
    twice. What :func:`load_target` and ``dsrconform target check`` both check."""
    if field == "encapsulations":
        return encapsulations_problem(value)
    allowed = capability_values(field)
    if isinstance(value, str) or not isinstance(value, tuple | list) or not value:
        return f"{value!r}: a non-empty tuple expected"
    bad = [v for v in value if v not in allowed]
    if bad:
        return f"{value!r}: unknown {bad}"
    if len(set(value)) != len(value):
        return f"{value!r}: listed twice"
    return None


def capability_values(field: str) -> tuple[str, ...]:
    """The values capability ``field`` may list (``modes``, ``families``, ``encapsulations``)."""
    if field == "modes":
        from dsrconform.topology import MODES  # pydantic: loaded only when a target is checked

        return tuple(MODES)
    return {"families": FAMILIES, "encapsulations": ENCAPSULATIONS}[field]


CAPABILITIES = ("modes", "families", "encapsulations")
"""The capabilities a target declares (``encapsulations`` optional: None when not declared)."""


def check_capabilities(name: str, target: object) -> None:
    """ConfigError for the first capability of ``target`` (called ``name``) whose value is
    invalid: a typo in ``modes`` (``"nat"``), ``families`` (``"ip6"``) or ``encapsulations``
    would otherwise make every requirement NOT APPLICABLE, or pass unnoticed. The message names
    the target, the field and the known values. A member that is missing or a method is
    reported by :func:`member_problems` instead."""
    for attr in CAPABILITIES:
        value = getattr(target, attr, None)
        if value is None or callable(value):
            continue
        problem = capability_problem(attr, value)
        if problem is not None:
            raise ConfigError(
                f"target {name}: capability {attr} {problem}; fix: a tuple of some of "
                f"{', '.join(capability_values(attr))} (`dsrconform target check {name}`)"
            )


def target_encapsulations(target: object) -> tuple[Encapsulation, ...]:
    """The encapsulations ``target`` declares (its optional ``encapsulations`` capability), or
    :data:`DEFAULT_ENCAPSULATIONS` when it declares none; ConfigError for an invalid one."""
    value = getattr(target, "encapsulations", None)
    if value is None:
        return DEFAULT_ENCAPSULATIONS
    problem = encapsulations_problem(value)
    if problem is not None:
        name = getattr(target, "name", type(target).__name__)
        raise ConfigError(
            f"target {name}: capability encapsulations {problem}; fix: a tuple of some of "
            f"{', '.join(ENCAPSULATIONS)} (`dsrconform target check`)"
        )
    return tuple(cast(Sequence[Encapsulation], value))


@dataclass(frozen=True)
class MutantInfo:
    """One deliberate bug a target can be built with (``mutants()`` lists them).

    - ``name``: what ``--mutant`` takes (unique among the target's mutants);
    - ``description``: the bug, in a sentence;
    - ``requirements``: the IDs it violates (each one of :mod:`dsrconform.spec`, at least one);
    - ``component``: where the bug lives (``mux``, ``agent``, ``gateway``, ...);
    - ``system_level``: empty when a packet-level test catches it, else the reason only a running
      system shows it;
    - ``caught_by``: the tests (pytest node ids or scenario names) that catch it, for the table of
      ``dsrconform mutants``.
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
    """The one VIP of ``dsrconform bench mux``: address (IPv4 or IPv6), port, IP protocol."""

    addr: str
    port: int
    proto: int


class BgpSpeaker(Protocol):
    """A MUX node's BGP speaker, owned by the lab (``lab.bgp(mux)``): the border router installs
    a VIP as an ECMP route over every MUX announcing it. A target announces a VIP on a MUX once
    its data plane there forwards it, and withdraws it to take the MUX out of the VIP's ECMP
    group. Both are idempotent. A killed MUX's session dies with the node; when the lab restarts
    the node, its speaker announces nothing until the target announces again
    (:meth:`Deployment.restart`)."""

    def announce(self, vip: str) -> None:
        """Announce ``vip`` (an address, no prefix length) from this MUX."""
        ...

    def withdraw(self, vip: str) -> None:
        """Stop announcing ``vip`` from this MUX."""
        ...

    def announced(self) -> list[str]:
        """The VIPs this MUX announces now."""
        ...


@runtime_checkable
class Target(Protocol):
    """A DSR stack under test (the module docstring: construction, mutants, capabilities)."""

    name: str
    """The target's name, as results, run directories and ``lab status`` show it."""
    mutant: str | None
    """The mutant it was built as (None: the correct stack)."""
    modes: tuple[Mode, ...]
    """Capability: the rewrite modes it can deploy (a subset of dsrconform.topology.MODES)."""
    families: tuple[Family, ...]
    """Capability: the address families it serves VIPs in (a subset of :data:`FAMILIES`)."""

    def mutants(self) -> Sequence[MutantInfo]:
        """Every mutant the target can be built with (the same list whatever ``mutant`` it was
        built as); empty when it has none."""
        ...

    def deploy(self, lab: RunningLab) -> Deployment:
        """Install the stack into ``lab`` and return a handle on it.

        ``lab`` is a :class:`~dsrconform.lab.protocol.RunningLab` whose environment is up (its
        ``deployment`` is still None): topology, ``netns``/``run``/``spawn`` per node, ``dir``,
        ``bgp(mux)``. Install the data plane and control plane only (the module docstring says
        what the lab already runs), in the mode ``lab.topology.mode``, then announce each VIP a
        MUX serves (``lab.topology.services_of_mux(mux)``) with ``lab.bgp(mux).announce(vip)``.
        Raise LabError (or ConfigError for a topology it cannot serve, naming the field) on
        failure, having undone what it attached; return without waiting for readiness
        (:meth:`Deployment.wait_ready` does)."""
        ...


@runtime_checkable
class MuxBench(Protocol):
    """A target capability (optional): attach its MUX alone for ``dsrconform bench mux``."""

    def mux_for_bench(
        self,
        *,
        netns: str,
        ifname: str,
        mux_addr: str,
        next_hop_mac: str,
        vip: BenchVip,
        backends: Sequence[str],
        mux_addr6: str | None = None,
    ) -> AbstractContextManager[None]:
        """A context manager that attaches the MUX data plane to ``ifname`` inside network
        namespace ``netns``, programmed with one VIP and its backends, sending encapsulated
        packets back out of the same interface toward ``next_hop_mac``; leaving the context
        detaches everything it attached.

        Families: ``vip`` and ``backends`` are of one family, the one being measured (an IPv6
        VIP has IPv6 backends: IPv6 in IPv6). ``mux_addr`` is always the MUX's IPv4 address,
        the outer source toward IPv4 backends; ``mux_addr6`` its IPv6 address, the outer source
        toward IPv6 backends, passed only when the VIP is IPv6 (the bench measures IPv6 only for
        a target whose ``families`` has ``ipv6``, and whose ``mux_for_bench`` takes this
        keyword: an adapter written without it keeps working for IPv4)."""
        ...


@runtime_checkable
class AgentRestart(Protocol):
    """A deployment capability (optional): restart a server's agent with empty state, as when
    it crashes and comes back: its flow and NAT tables are lost (the ``agent-restart`` fault;
    a deployment without it makes that fault a LabError, so its requirements are UNKNOWN)."""

    def restart_agent(self, server: str) -> None: ...


class Deployment(Protocol):
    """A target's stack running in a lab (what ``Target.deploy`` returns)."""

    def wait_ready(self, timeout: float) -> float:
        """Block until the target's own parts are ready (programs attached, agents up, VIPs
        announced); return the seconds waited, or raise LabError naming what is missing at the
        deadline. The lab then waits itself until the applications listen and the router's
        routes equal the announcements."""
        ...

    def status(self) -> dict[str, Any]:
        """What the stack reports about itself, for ``dsrconform lab status`` (JSON-able; merged
        into the lab's own status)."""
        ...

    def restart(self, node: str) -> None:
        """Start again what the stack runs on ``node``, after the lab killed it and brought it
        back (:meth:`dsrconform.lab.Lab.restart_node`: interfaces up, the node's BGP speaker
        announcing nothing; the lab starts the node's BIRD and application right after this call,
        so an announcement made here is in the configuration BIRD starts with). Re-attach what
        the target runs there with the deployment's current configuration (backend sets
        included, :meth:`set_backends`) and empty state, and announce the node's VIPs again; a
        node where the stack runs nothing is left as it is."""
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
        A target that cannot drain (no connection table) lists that in its docs: its SC-3
        verdicts are then FAILs, as they should be.
        """
        ...

    def backends(self, service: str) -> dict[str, list[str]]:
        """The current sets of ``service``: ``{"active": [...], "draining": [...]}``, server node
        names sorted (the topology's servers of the service until :meth:`set_backends` changes
        them). ConfigError for an unknown service. The framework records it before and after
        a change (``backends_before`` / ``backends_after``)."""
        ...

    def close(self) -> None:
        """Detach whatever the deployment attached and stop what it started; safe to call twice
        and after a failed deploy (the lab removes namespaces, its own daemons and processes)."""
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


# --- the members, for checking an adapter (load_target, `dsrconform target check`) ----------------

MemberKind = Literal["attribute", "method"]


@dataclass(frozen=True)
class Member:
    """One member of a protocol: its name, whether it is data or a method, and what it is."""

    name: str
    kind: MemberKind
    what: str


TARGET_MEMBERS: tuple[Member, ...] = (
    Member("name", "attribute", "the target's name, a str"),
    Member("mutant", "attribute", "the mutant it was built as (str), or None"),
    Member("modes", "attribute", 'the rewrite modes it deploys, e.g. ("encap",)'),
    Member("families", "attribute", 'the address families it serves, e.g. ("ipv4",)'),
    Member("mutants", "method", "mutants() -> Sequence[MutantInfo] ([] if none)"),
    Member("deploy", "method", "deploy(lab) -> Deployment"),
)
"""Every member of :class:`Target`."""

DEPLOYMENT_MEMBERS: tuple[Member, ...] = (
    Member("wait_ready", "method", "wait_ready(timeout) -> seconds waited"),
    Member("status", "method", "status() -> dict (JSON-able)"),
    Member("restart", "method", "restart(node) -> None"),
    Member("counters", "method", "counters() -> {component: {counter: int}}"),
    Member("set_backends", "method", "set_backends(service, servers, *, draining=()) -> None"),
    Member("backends", "method", 'backends(service) -> {"active": [...], "draining": [...]}'),
    Member("close", "method", "close() -> None"),
)
"""Every member of :class:`Deployment`."""

_MISSING = object()


def member_problems(obj: object, members: Sequence[Member]) -> list[str]:
    """What ``obj`` (an instance or a class) lacks of ``members``: one line per member missing
    or of the wrong kind (a method where data belongs, or the reverse), naming it and what it
    should be; empty when it has them all."""
    out: list[str] = []
    for m in members:
        value = getattr(obj, m.name, _MISSING)
        if value is _MISSING:
            out.append(f"missing {m.kind} {m.name!r} ({m.what})")
        elif m.kind == "method" and not callable(value):
            out.append(f"{m.name!r} must be a method ({m.what}), not a {type(value).__name__}")
        elif m.kind == "attribute" and callable(value):
            out.append(f"{m.name!r} must be an attribute ({m.what}), not a method")
    return out


# --- finding and loading targets ----------------------------------------------------------------


def available_targets() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def resolve_target(name: str) -> tuple[Any, str]:
    """(the adapter class of target ``name``, where it comes from: ``module:Class``). ``name`` is
    a registered entry point or ``module:Class`` (importable: installed, or on ``PYTHONPATH``);
    ConfigError (exit 2) names what is unknown and the fix."""
    if ":" in name:
        module, _, attr = name.partition(":")
        if not module or not attr.isidentifier():
            raise ConfigError(
                f"target {name!r}: fix: name a registered target, or a class as module:Class "
                "(e.g. dsrconform.targets.null:NullTarget)"
            )
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
                raise  # the adapter's own import failed: its error, not an unknown target
            raise ConfigError(
                f"unknown target {name!r}: no module {module!r}; fix: put the directory holding "
                f"it on PYTHONPATH, or install the adapter and use its entry-point name"
            ) from None
        cls = getattr(mod, attr, None) if attr else None
        if cls is None:
            raise ConfigError(
                f"unknown target {name!r}: module {module!r} has no {attr!r}; fix: "
                "module:Class naming the adapter class"
            )
        if not isinstance(cls, type):
            raise ConfigError(
                f"target {name!r}: {attr!r} of module {module!r} is no class; fix: "
                "module:Class naming the adapter class"
            )
        return cls, name
    eps = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none (is the package installed? `pip install -e .`)"
        raise ConfigError(
            f"unknown target {name!r}; registered targets: {known}; or name an adapter that is "
            "not installed as module:Class"
        )
    ep = eps[name]
    return ep.load(), str(getattr(ep, "value", name))


INIT = "def __init__(self, mutant: str | None = None, options: dict[str, str] | None = None)"
"""The constructor every adapter has (the module docstring)."""


def accepts_keyword(cls: Any, keyword: str) -> bool | None:
    """Whether ``cls(...)`` takes ``keyword`` (None: its signature cannot be read)."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    return any(
        (p.name == keyword and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        or p.kind == p.VAR_KEYWORD
        for p in params
    )


def construct(name: str, cls: Any, mutant: str | None, options: Mapping[str, str] | None) -> Any:
    """``cls(mutant=..., options=...)`` (``options`` only when given: an older adapter may take
    none, and is then told so). A constructor without ``mutant=`` is a ConfigError naming it."""
    if accepts_keyword(cls, "mutant") is False:
        raise ConfigError(f"target {name!r}: its constructor takes no mutant=; fix: {INIT}")
    if not options:
        return cls(mutant=mutant)
    if accepts_keyword(cls, "options") is False:
        raise ConfigError(
            f"target {name!r} takes no options (given: {', '.join(options)}); fix: leave them "
            f"out, or give it {INIT}"
        )
    return cls(mutant=mutant, options=dict(options))


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
    """Instantiate target ``name`` (a registered name or ``module:Class``), optionally as mutant
    ``mutant``, with its own ``options``. ConfigError names an unknown target, and every
    :class:`Target` member the adapter lacks or has of the wrong kind, and a capability
    (``modes``, ``families``, ``encapsulations``) listing a value that is not a known one
    (:func:`check_capabilities`)."""
    cls, where = resolve_target(name)
    target = construct(name, cls, mutant, options)
    problems = member_problems(target, TARGET_MEMBERS)
    if problems:
        raise ConfigError(
            f"target {name!r} ({where}) does not implement dsrconform.target.Target: "
            + "; ".join(problems)
            + f"; fix: add them ({GUIDE}; `dsrconform target check {name}` checks an adapter)"
        )
    check_capabilities(name, target)
    if not isinstance(target, Target):  # the checks above are the protocol's: never reached
        raise ConfigError(f"target {name!r} ({where}) does not implement dsrconform.target.Target")
    return target


def target_version(name: str) -> str | None:
    """The version of the distribution that provides target ``name`` (its package's version,
    e.g. ``dsrconform 0.1.0`` for the reference stack); None for an unknown target or an adapter
    that is not installed."""
    if ":" in name:
        top = name.partition(":")[0].split(".")[0]
        dists = packages_distributions().get(top, [])
        if not dists:
            return None
        from importlib.metadata import version

        return f"{dists[0]} {version(dists[0])}"
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            dist = ep.dist
            return f"{dist.name} {dist.version}" if dist is not None else None
    return None


# --- helpers every adapter's Deployment may use ------------------------------------------------


def service_named(topo: Topology, name: str, lab: str) -> Service:
    """The service ``name`` of ``topo``; ConfigError naming the known ones (what
    :meth:`Deployment.backends` and :meth:`Deployment.set_backends` raise for an unknown one)."""
    for s in topo.services:
        if s.name == name:
            return s
    known = ", ".join(s.name for s in topo.services) or "none"
    raise ConfigError(f"unknown service {name!r}; services of lab {lab}: {known}")


def check_backend_sets(
    topo: Topology, lab: str, svc: Service, servers: Sequence[str], draining: Sequence[str]
) -> tuple[list[str], list[str]]:
    """The active and draining sets of a :meth:`Deployment.set_backends` call, each without
    repeats, after the checks its contract asks of every target (known servers that run the
    service's application, a non-empty active set, none in both, lists not bare strings):
    ConfigError naming what is wrong and the fix, before anything changes."""
    sets = []
    for what, names in (("servers", servers), ("draining", draining)):
        if isinstance(names, str):
            raise ConfigError(
                f"service {svc.name!r}: {what} must be a list of server names, not the string "
                f"{names!r}; fix: [{names!r}]"
            )
        sets.append(list(dict.fromkeys(names)))
    active, drain = sets
    known, runs = topo.of_role("server"), topo.servers_of(svc)
    for name in [*active, *drain]:
        if name not in known:
            raise ConfigError(
                f"service {svc.name!r}: no server {name!r} in lab {lab}; servers: "
                f"{', '.join(known)}"
            )
        if name not in runs:
            raise ConfigError(
                f"service {svc.name!r}: server {name!r} does not run its application; "
                f"servers that do: {', '.join(runs)}"
            )
    if not active:
        raise ConfigError(
            f"service {svc.name!r}: an empty active set would leave VIP {svc.vip}:{svc.port} "
            "with no server for new connections; fix: keep at least one server active"
        )
    both = sorted(set(active) & set(drain))
    if both:
        raise ConfigError(
            f"service {svc.name!r}: {', '.join(both)} listed as both active and draining; "
            "fix: list each server in one of them"
        )
    return active, drain
