"""The reference stack's target adapter: how dsrconform drives ``reference_impl``.

Registered under the ``dsrconform.targets`` entry point as ``reference`` (pyproject.toml), so the
framework reaches it with ``dsrconform.target.load_target("reference", mutant=...)`` and never
imports this package directly. A target built with a mutant runs that mutant everywhere it would
run the correct stack; unknown mutant names are rejected here, at construction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from dsrconform.errors import ConfigError
from dsrconform.target import BenchVip, Encapsulation, Family, MutantInfo
from dsrconform.topology import MODES
from reference_impl import mutants as _mutants

if TYPE_CHECKING:
    from dsrconform.target import MuxBench, Target
    from reference_impl.deploy import LabHandle, ReferenceDeployment


OPTIONS = {"gateway": ("per-port", "naive")}
"""The reference stack's options. ``gateway``: ``per-port`` (default) maps each server port to
one VIP and refuses a topology that serves one port through several VIPs (it cannot tell them
apart: it is stateless); ``naive`` deploys such a topology anyway, replying from the first VIP
of each port: the egress-gateway pitfall of per-MUX external VIPs, on purpose."""


def check_options(options: dict[str, str]) -> dict[str, str]:
    """``options`` if every one is known with a known value; else a ConfigError naming them."""
    for key, value in options.items():
        if key not in OPTIONS:
            raise ConfigError(
                f"reference target: unknown option {key!r}; fix: one of {', '.join(OPTIONS)}"
            )
        if value not in OPTIONS[key]:
            raise ConfigError(
                f"reference target: option {key}={value!r}; fix: one of {', '.join(OPTIONS[key])}"
            )
    return dict(options)


class ReferenceTarget:
    """The reference DSR stack (XDP MUX, tc agents, egress gateway), optionally as a mutant."""

    name = "reference"
    modes = MODES  # encapsulation, server-side NAT and the egress gateway's NAT: all of them
    families: tuple[Family, ...] = ("ipv4", "ipv6")
    encapsulations: tuple[Encapsulation, ...] = ("ipip",)

    def __init__(self, mutant: str | None = None, options: dict[str, str] | None = None) -> None:
        _mutants.get(mutant)  # ConfigError naming the known mutants
        self.mutant = mutant
        self.options = check_options(options or {})

    def __repr__(self) -> str:
        return f"ReferenceTarget(mutant={self.mutant!r})"

    def mutants(self) -> Sequence[MutantInfo]:
        return [m.info() for m in _mutants.CATALOGUE]

    def deploy(self, lab: LabHandle) -> ReferenceDeployment:
        """Deploy the reference stack (agents, applications, MUXes, BGP) into ``lab``."""
        from reference_impl.deploy import ReferenceDeployment

        dep = ReferenceDeployment(lab, self.mutant, options=self.options)
        try:
            dep.deploy()
        except BaseException:
            dep.close()
            raise
        return dep

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
        """Attach the reference MUX (built as this target's mutant) for the benchmark; IPv6
        backends need ``mux_addr6`` (the MUX config's ``address6``, their outer source)."""
        # Imported here: the MUX pulls in the BPF build and libbpf, which listing mutants or
        # reading the spec must not need.
        from reference_impl.mux import bench_attach

        with bench_attach(
            netns=netns,
            ifname=ifname,
            mux_addr=mux_addr,
            mux_addr6=mux_addr6,
            next_hop_mac=next_hop_mac,
            vip=vip,
            backends=backends,
            mutant=self.mutant,
        ):
            yield


if TYPE_CHECKING:

    def _is_a_target(target: ReferenceTarget) -> Target:
        return target  # mypy checks that ReferenceTarget keeps dsrconform.target.Target

    def _benches(target: ReferenceTarget) -> MuxBench:
        return target  # and the optional MuxBench capability (dsrconform bench mux)
