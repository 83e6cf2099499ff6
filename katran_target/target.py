"""The Katran target adapter: how dsrconform drives Meta's Katran, an external DSR stack.

Registered under the ``dsrconform.targets`` entry point as ``katran`` (pyproject.toml). Katran
is GPL-2.0 and stays outside the project: its sources are read at build time from a checkout
(:mod:`katran_target.sources` says where) and only this adapter, written here, programs it.

What it deploys (:mod:`katran_target.deploy`): Katran's XDP balancer on each MUX's uplink,
programmed as Katran's control plane would program it, and Katran's own tc decapsulation on
each server. Encapsulation (target option ``encap``):

- ``gue`` (default): the balancer built with ``GUE_ENCAP`` (outer IPv4 or IPv6 + UDP to port
  6080, outer source the MUX's address of that family, Katran's ``katranSrcV4``/``katranSrcV6``),
  decapsulated on the servers by Katran's ``tc_decap.bpf.c`` (tc ingress). Works on any kernel
  with BPF (no tunnel module).
- ``ipip``: Katran's default build (outer IPv4, source 198.18.x.y from the flow; toward IPv6
  reals outer IPv6 from 2001:2::/96), decapsulated by the kernel's tunnels (collect-metadata
  ``ipip`` and ``ip6tnl`` devices in each server, rp_filter off): needs CONFIG_NET_IPIP (and
  CONFIG_IPV6_TUNNEL for IPv6 reals), which some kernels (this project's CI's) lack.

Other options: ``katran_src`` (the Katran checkout) and ``hash`` (``maglev``, KatranLb's default,
or ``maglev_v2``). Katran rewrites nothing on the servers, so only the ``encap`` mode is offered;
both families: IPv6 VIPs (IPv6 in IPv6), and IPv4 VIPs whose service has ``backend_family: ipv6``
(IPv4 in IPv6, Katran's "v4 VIP, v6 real").

Mutants (:data:`MUTANTS`) are Katran run with a VIP flag of its own that breaks a requirement:
genuine Katran configurations, not patches to its code.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from dsrconform.errors import ConfigError
from dsrconform.target import BenchVip, Encapsulation, Family, MutantInfo
from katran_target import maglev
from katran_target.sources import OPTION as SRC_OPTION

if TYPE_CHECKING:
    from dsrconform.target import MuxBench, Target
    from dsrconform.topology import Mode
    from katran_target.deploy import KatranDeployment, LabHandle

Encap = Literal["gue", "ipip"]
OPTIONS: dict[str, tuple[str, ...] | None] = {
    SRC_OPTION: None,  # a directory: any value
    "encap": ("gue", "ipip"),
    "hash": ("maglev", "maglev_v2"),
}
DEFAULT_ENCAP: Encap = "gue"
GUE_DEFINES: dict[str, str | int] = {"GUE_ENCAP": 1}
TC_DECAP_SOURCE = Path("katran/decap/tc_bpf/tc_decap.bpf.c")
TC_DECAP_DEFINES: dict[str, str | int] = {"__KERNEL__": 1, "INLINE_DECAP_GUE": 1}
F_HASH_NO_SRC_PORT = 1 << 0  # balancer_consts.h VIP flags
F_LRU_BYPASS = 1 << 1

MUTANTS: dict[str, tuple[int, MutantInfo]] = {
    "lru-bypass": (
        F_LRU_BYPASS,
        MutantInfo(
            name="lru-bypass",
            description="every VIP flagged F_LRU_BYPASS: Katran keeps no connection table, so "
            "a ring change moves the established connections of every slot that changed (a "
            "drained server's, and a share of the others' when a server is added)",
            requirements=("SC-1", "SC-3"),
            component="mux",
            system_level="only a backend change under established connections shows it: "
            "each packet alone is forwarded as the current ring says",
        ),
    ),
    "hash-no-src-port": (
        F_HASH_NO_SRC_PORT,
        MutantInfo(
            name="hash-no-src-port",
            description="every VIP flagged F_HASH_NO_SRC_PORT: the flow hash leaves the source "
            "port out, so all connections of one client address go to one server",
            requirements=("AF-4",),
            component="mux",
            system_level="the spread over many connections of one client address shows it, "
            "not any one packet",
        ),
    ),
}


def check_options(options: dict[str, str]) -> dict[str, str]:
    """``options`` if every one is known with a known value; else a ConfigError naming it."""
    for key, value in options.items():
        if key not in OPTIONS:
            raise ConfigError(
                f"katran target: unknown option {key!r}; fix: one of {', '.join(OPTIONS)}"
            )
        allowed = OPTIONS[key]
        if allowed is not None and value not in allowed:
            raise ConfigError(
                f"katran target: option {key}={value!r}; fix: one of {', '.join(allowed)}"
            )
    return dict(options)


def _bench_gue_source(
    encap: str, backends: Sequence[str], mux_addr: str, mux_addr6: str | None
) -> str | None:
    """The outer source of ``bench mux``'s GUE frames: of the backends' family (None with IPIP,
    where Katran derives the outer source itself)."""
    if encap != "gue":
        return None
    if not any(ipaddress.ip_address(b).version == 6 for b in backends):
        return mux_addr
    if mux_addr6 is None:
        raise ConfigError("katran: IPv6 backends with GUE need mux_addr6, the outer IPv6 source")
    return mux_addr6


class KatranTarget:
    """Katran (XDP balancer + tc decap), driven by this adapter's own control plane."""

    name = "katran"
    modes: tuple[Mode, ...] = ("encap",)
    families: tuple[Family, ...] = ("ipv4", "ipv6")

    def __init__(self, mutant: str | None = None, options: dict[str, str] | None = None) -> None:
        if mutant is not None and mutant not in MUTANTS:
            raise ConfigError(
                f"katran target: unknown mutant {mutant!r}; its mutants: {', '.join(MUTANTS)}"
                " (`dsrconform mutants --target katran`); fix: one of them, or no --mutant"
            )
        self.mutant = mutant
        self.options = check_options(options or {})
        if SRC_OPTION in self.options:
            # A directory given explicitly is checked now (a file test: cheap, touches nothing),
            # so a wrong one stops the command before any lab comes up.
            self.sources()

    def __repr__(self) -> str:
        return f"KatranTarget(mutant={self.mutant!r}, options={self.options!r})"

    @property
    def vip_flags(self) -> int:
        """Katran VIP flags every VIP gets: 0, or the mutant's."""
        return MUTANTS[self.mutant][0] if self.mutant else 0

    @property
    def encap(self) -> Encap:
        return cast(Encap, self.options.get("encap", DEFAULT_ENCAP))

    @property
    def encapsulations(self) -> tuple[Encapsulation, ...]:
        """Capability: the one encapsulation it is built with (option ``encap``)."""
        return (self.encap,)

    @property
    def hash_function(self) -> maglev.HashFunction:
        return cast(maglev.HashFunction, self.options.get("hash", maglev.DEFAULT_HASH))

    def mutants(self) -> Sequence[MutantInfo]:
        return [info for _, info in MUTANTS.values()]

    def sources(self) -> Path:
        """The Katran checkout (ConfigError naming the option, variable and fix if none)."""
        from katran_target.sources import find_sources

        return find_sources(self.options)

    def balancer_object(self) -> Path:
        """Katran's balancer built for this target's encapsulation (cached)."""
        from katran_target.sources import build_balancer

        return build_balancer(self.sources(), GUE_DEFINES if self.encap == "gue" else {})

    def decap_object(self) -> Path:
        """Katran's tc decapsulation (GUE), built (cached)."""
        from katran_target.sources import build_object

        src = self.sources()
        return build_object(src, src / TC_DECAP_SOURCE, TC_DECAP_DEFINES)

    def deploy(self, lab: LabHandle) -> KatranDeployment:
        """Deploy Katran into ``lab``: decapsulation on every server, the balancer on every
        MUX, then each MUX's VIPs announced (:class:`katran_target.deploy.KatranDeployment`)."""
        from katran_target.deploy import KatranDeployment

        dep = KatranDeployment(lab, self)
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
        """Katran's balancer with one VIP and its backends on ``ifname`` (in ``netns``), sending
        encapsulated frames to ``next_hop_mac``; with GUE, the outer source is ``mux_addr``
        toward IPv4 backends and ``mux_addr6`` toward IPv6 ones (with IPIP Katran makes its own
        outer source, IPv4 or IPv6)."""
        from katran_target.balancer import bench_balancer

        with bench_balancer(
            self.balancer_object(),
            netns=netns,
            ifname=ifname,
            next_hop_mac=next_hop_mac,
            vip=(vip.addr, vip.port, vip.proto),
            backends=backends,
            hash_function=self.hash_function,
            gue_source=_bench_gue_source(self.encap, backends, mux_addr, mux_addr6),
            vip_flags=self.vip_flags,
        ):
            yield


if TYPE_CHECKING:

    def _is_a_target(target: KatranTarget) -> Target:
        return target  # mypy checks that KatranTarget keeps dsrconform.target.Target

    def _can_bench(target: KatranTarget) -> MuxBench:
        return target  # and the optional MuxBench capability
