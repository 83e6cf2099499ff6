"""The ``null`` target: a stack that deploys nothing and announces nothing.

It keeps the target protocol (:mod:`dsrconform.target`) to the letter and forwards no packet:
no MUX program, no server agent, no gateway, no VIP announced over the lab's BGP speakers. The
lab around it still has what the lab owns (routers, BGP sessions, applications, clients), so
traffic runs and is observed, and no request addressed to a VIP is ever answered.

What it is for: the conformance suites run against it must give no requirement PASS, since a
checker that passes a stack that forwards nothing passes on no evidence (every checker states
the minimum evidence it needs, see :mod:`dsrconform.invariants`). It is also the smallest
example of an adapter::

    dsrconform run --target null --mode encap      # every verdict UNKNOWN or FAIL

Backend sets (:meth:`NullDeployment.set_backends`) are kept in memory with the same checks as
any target's (the contract :class:`dsrconform.target.Deployment` documents), so scenarios that
change backends run and record their changes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dsrconform.errors import ConfigError
from dsrconform.target import (
    ENCAPSULATIONS,
    FAMILIES,
    BenchVip,
    MutantInfo,
    check_backend_sets,
    service_named,
)
from dsrconform.topology import MODES

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab
    from dsrconform.topology import Service, Topology


class NullTarget:
    """A target that deploys nothing (see the module's docstring); it has no mutants."""

    name = "null"
    modes = MODES  # nothing is deployed in any of them, equally
    families = FAMILIES  # nor in any family
    encapsulations = ENCAPSULATIONS  # nor decapsulated in any

    def __init__(self, mutant: str | None = None, options: dict[str, str] | None = None) -> None:
        if mutant is not None:
            raise ConfigError(f"unknown mutant {mutant!r} of target 'null'; it has none")
        if options:
            raise ConfigError(
                f"target 'null' takes no options (given: {', '.join(options)}); fix: leave them out"
            )
        self.mutant: str | None = None

    def __repr__(self) -> str:
        return "NullTarget()"

    def mutants(self) -> Sequence[MutantInfo]:
        return []

    def deploy(self, lab: RunningLab) -> NullDeployment:
        """Deploy nothing into ``lab``: no program, no agent, no announcement."""
        return NullDeployment(lab.topology, lab.name)

    @contextmanager
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
    ) -> Iterator[None]:
        """Attach nothing: the benchmark's packets meet the bare kernel."""
        yield


class NullDeployment:
    """The null stack "running" in a lab: backend sets in memory, nothing else."""

    def __init__(self, topology: Topology, lab_name: str) -> None:
        self.topology = topology
        self.lab_name = lab_name
        self.lock = threading.Lock()
        self.backend_sets: dict[str, dict[str, list[str]]] = {}

    def wait_ready(self, timeout: float) -> float:
        return 0.0

    def status(self) -> dict[str, Any]:
        return {"deployed": "nothing (the null target)"}

    def restart(self, node: str) -> None:
        """Nothing runs on any node: nothing to start again."""

    def counters(self) -> dict[str, dict[str, int]]:
        return {}  # no component counts anything: every one is absent

    def close(self) -> None:
        """Nothing was attached."""

    def _service(self, name: str) -> Service:
        return service_named(self.topology, name, self.lab_name)

    def backends(self, service: str) -> dict[str, list[str]]:
        svc = self._service(service)
        with self.lock:
            cur = self.backend_sets.get(svc.name)
            if cur is None:
                return {"active": sorted(self.topology.servers_of(svc)), "draining": []}
            return {k: list(v) for k, v in cur.items()}

    def set_backends(
        self, service: str, servers: Sequence[str], *, draining: Sequence[str] = ()
    ) -> None:
        """Remember the new sets after the checks every target makes (changing nothing when
        one fails): a known service, known servers that run its application, a non-empty
        active set, no server both active and draining."""
        svc = self._service(service)
        active, drain = check_backend_sets(self.topology, self.lab_name, svc, servers, draining)
        with self.lock:
            self.backend_sets[svc.name] = {"active": sorted(active), "draining": sorted(drain)}
