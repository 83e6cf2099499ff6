"""Control plane of the reference server agent and egress gateway (``bpf/agent.bpf.c``,
``bpf/gateway.bpf.c``).

The configurations are pydantic models validated without root; the program classes compile the
BPF (as a mutant when asked), load it, program its maps and attach it to tc::

    cfg = AgentConfig(server_addr="198.18.20.1", mode="server-nat", mux_addrs=["198.18.10.1"],
                      nat_services=[{"vip": "198.19.0.10", "vport": 80, "proto": "tcp",
                                     "port": 8080}])
    with AgentProgram(cfg) as agent:
        action, out = run_packets(agent.ingress, [frame])[0]   # BPF_PROG_TEST_RUN
        agent.attach("dsrc-srv1", "eth0")                      # tc ingress + egress
        ...
        agent.detach()

Attachments are remembered and :meth:`detach` (also run by ``close``) removes exactly those
filters; the clsact qdisc is left in place, as it may hold filters of others.

Addresses may be IPv6 (inside 2001:2::/48) wherever a family is not implied: MUX addresses
(IPv6-in-IPv6 and IPv4-in-IPv6 from them is decapsulated), VIPs of NAT services (an IPv6 VIP is
translated to ``server_addr6``) and gateway mappings (both ends of one family). Each family has
its own maps (``dsrc_muxes6``, ``dsrc_nat_svc6``, ``dsrc_gw_map6``, ...).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from dsrconform.bpf import libbpf
from dsrconform.bpf.build import compile_bpf
from dsrconform.bpf.libbpf import BpfObject, Map, Program
from dsrconform.configfile import lab_address, load_model
from dsrconform.errors import BpfError, ConfigError, LabError
from dsrconform.netns import enter_netns
from dsrconform.target import FAMILIES
from reference_impl import layout, mutants

AGENT_SOURCE = layout.BPF_DIR / "agent.bpf.c"
GATEWAY_SOURCE = layout.BPF_DIR / "gateway.bpf.c"
# tc filter priority of the agent and gateway programs: after the framework's link taps
# (dsrconform.observe.linktap, priority 1), which pass every packet on.
TC_PRIORITY = 10
AGENT_PROGRAMS = ("dsrc_agent_in", "dsrc_agent_eg")
GATEWAY_PROGRAM = "dsrc_gw"
MODES = {"encap": "MODE_ENCAP", "server-nat": "MODE_SERVER_NAT"}
# The agent's maps per address family (of the MUX address, or of the VIP).
_MAPS = {
    "ipv4": {
        "muxes": "dsrc_muxes",
        "svc": "dsrc_nat_svc",
        "first": "dsrc_nat_first",
        "flows": "dsrc_nat_flows",
    },
    "ipv6": {
        "muxes": "dsrc_muxes6",
        "svc": "dsrc_nat_svc6",
        "first": "dsrc_nat_first6",
        "flows": "dsrc_nat_flows6",
    },
}

# --- configuration ----------------------------------------------------------------------------


def _lab_addr4(value: str, info: ValidationInfo) -> str:
    """An IPv4 address inside the lab range; the message names the field it came from."""
    return lab_address(value, info.field_name or "address", "ipv4")


def _lab_addr6(value: str, info: ValidationInfo) -> str:
    """An IPv6 address inside the lab's IPv6 range, in its compressed form."""
    return lab_address(value, info.field_name or "address", "ipv6")


def _lab_addr(value: str, info: ValidationInfo) -> str:
    """An IPv4 or IPv6 address inside its family's lab range."""
    if ":" in value:
        return _lab_addr6(value, info)
    return _lab_addr4(value, info)


def family(addr: str) -> str:
    """The family ("ipv4" or "ipv6", as dsrconform.target.FAMILIES) of a validated address."""
    return "ipv6" if ipaddress.ip_address(addr).version == 6 else "ipv4"


def _not_a_number(value: object) -> object:
    """YAML 1.1 reads an unquoted IPv6 address made of small decimal groups (2001:2:0:1:2:3:4:5)
    as a base-60 integer: say so rather than "not a valid string"."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            "an address was read as the number "
            f"{value} (YAML takes unquoted groups of digits separated by ':' for base 60); "
            "fix: quote the address"
        )
    return value


LabAddr = Annotated[str, BeforeValidator(_not_a_number), AfterValidator(_lab_addr)]
LabAddr4 = Annotated[str, BeforeValidator(_not_a_number), AfterValidator(_lab_addr4)]
LabAddr6 = Annotated[str, BeforeValidator(_not_a_number), AfterValidator(_lab_addr6)]
Port = Annotated[int, Field(ge=1, le=65535)]
Proto = Literal["tcp", "udp"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "config") -> Self:
        """Validate ``data``; a failure is a ConfigError naming ``source`` and each bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            lines = [
                f"{'.'.join(str(p) for p in err['loc'])}: "
                + str(err["msg"]).removeprefix("Value error, ")
                for err in e.errors()
            ]
            raise ConfigError(f"{source}: invalid {cls.__name__}:\n  " + "\n  ".join(lines)) from e


class NatService(_Model):
    """server-nat: traffic to ``vip:vport`` is handed to the application on ``port`` (at the
    server's address of the VIP's family: ``server_addr`` or ``server_addr6``)."""

    vip: LabAddr
    vport: Port
    proto: Proto
    port: Port


class AgentConfig(_Model):
    """``server_addr`` is the server's IPv4 address (IPv4 is on every link); ``server_addr6`` its
    IPv6 one, needed by NAT services with an IPv6 VIP. ``mux_addrs`` lists the MUXes of either
    family whose encapsulated traffic is decapsulated."""

    server_addr: LabAddr4
    server_addr6: LabAddr6 | None = None
    mode: Literal["encap", "server-nat"] = "encap"
    mux_addrs: list[LabAddr] = Field(default_factory=list)
    nat_services: list[NatService] = Field(default_factory=list)

    @model_validator(mode="after")
    def _limits(self) -> Self:
        limit = layout.C("MAX_MUXES")
        for fam in FAMILIES:
            n = sum(1 for a in self.mux_addrs if family(a) == fam)
            if n > limit:
                raise ValueError(f"mux_addrs: {n} {fam} entries, at most {limit} per family")
        seen = [(s.vip, s.vport, s.proto) for s in self.nat_services]
        dups = {k for k in seen if seen.count(k) > 1}
        if dups:
            raise ValueError(f"nat_services: VIP:port/proto listed twice: {sorted(dups)}")
        for i, s in enumerate(self.nat_services):
            if family(s.vip) == "ipv6" and self.server_addr6 is None:
                raise ValueError(
                    f"nat_services.{i}: IPv6 VIP {s.vip} needs the server's IPv6 address; "
                    "fix: set server_addr6"
                )
        return self

    def server_addr_for(self, vip: str) -> str:
        """The server address a NAT service of ``vip`` translates to: the VIP's family's."""
        if family(vip) == "ipv6":
            assert self.server_addr6 is not None  # the validator requires it
            return self.server_addr6
        return self.server_addr


class GatewayMapping(_Model):
    """gateway-nat: replies from ``server:server_port`` leave as ``external:external_port``
    (both IPv4 or both IPv6)."""

    server: LabAddr
    server_port: Port
    proto: Proto
    external: LabAddr
    external_port: Port

    @model_validator(mode="after")
    def _one_family(self) -> Self:
        if family(self.server) != family(self.external):
            raise ValueError(
                f"server {self.server} and external {self.external} differ in family; fix: map "
                "an IPv4 server to an IPv4 address and an IPv6 one to an IPv6 address"
            )
        return self


class GatewayConfig(_Model):
    mappings: list[GatewayMapping] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        seen = [(m.server, m.server_port, m.proto) for m in self.mappings]
        dups = {k for k in seen if seen.count(k) > 1}
        if dups:
            raise ValueError(f"mappings: server:port/proto mapped twice: {sorted(dups)}")
        return self


# --- running programs -------------------------------------------------------------------------


def run_packets(
    program: Program, frames: list[bytes], *, flags: int = 0
) -> list[tuple[str, bytes]]:
    """Run each Ethernet frame through a tc program (BPF_PROG_TEST_RUN, with ``flags``).

    Returns ``(action name, output frame)`` per input; the output is the skb as the program left
    it (decapsulated, rewritten, or unchanged).
    """
    out = []
    for frame in frames:
        res = program.test_run(frame, flags=flags)
        out.append((libbpf.tc_action_name(res.retval), res.data))
    return out


def load_agent_config(path: str | Path) -> AgentConfig:
    """An agent config file; errors name the file, line and field."""
    return load_model(path, AgentConfig)


def load_gateway_config(path: str | Path) -> GatewayConfig:
    """A gateway config file; errors name the file, line and field."""
    return load_model(path, GatewayConfig)


@dataclass(frozen=True)
class NatFlow:
    """A server-nat flow the agent remembers, as its replies look (local = this server). The
    addresses are of the flow's family; ``mux_addr`` may be IPv6 for an IPv4 flow that came
    IPv4-in-IPv6."""

    local_addr: str
    local_port: int
    remote_addr: str
    remote_port: int
    proto: int
    vip: str
    vport: int
    mux_addr: str


@dataclass(frozen=True)
class _Attachment:
    netns: str | None
    ifname: str
    ifindex: int
    direction: str
    handle: int


class _TcProgram:
    """A loaded BPF object with tc programs: stats, attach/detach bookkeeping, close."""

    _stats_map = ""
    _stat_names: tuple[str, ...] = ()

    def __init__(self, obj: BpfObject) -> None:
        self._obj = obj
        self._attached: list[_Attachment] = []

    def map(self, name: str) -> Map:
        return self._obj.map(name)

    def stats(self) -> dict[str, int]:
        """Packets per statistic (``AGENT_STAT_<NAME>`` as lower-case ``name``), all CPUs."""
        m = self._obj.map(self._stats_map)
        out = {}
        for name in self._stat_names:
            idx = layout.C(f"AGENT_STAT_{name.upper()}")
            out[name] = sum(layout.counter_unpack(v)[0] for v in m.lookup_percpu(layout.u32(idx)))
        return out

    def _attach(self, netns: str | None, ifname: str, programs: list[tuple[Program, str]]) -> None:
        with enter_netns(netns):
            try:
                ifindex = socket.if_nametoindex(ifname)
            except OSError:
                raise LabError(f"no interface {ifname!r} in namespace {netns or 'host'}") from None
            for prog, direction in programs:
                handle = libbpf.tc_attach(ifindex, prog.fd, direction, priority=TC_PRIORITY)
                self._attached.append(_Attachment(netns, ifname, ifindex, direction, handle))

    def detach(self) -> None:
        """Remove every tc filter this object attached (and nothing else). Filters whose
        interface or namespace is gone went with it; any other failure is raised after every
        attachment has been tried."""
        first_error: Exception | None = None
        while self._attached:
            a = self._attached.pop()
            try:
                with enter_netns(a.netns):
                    libbpf.tc_detach(a.ifindex, a.direction, priority=TC_PRIORITY, handle=a.handle)
            except LabError:
                continue  # the namespace was deleted, and its interfaces with it
            except BpfError as e:
                if e.errno not in (errno.ENODEV, errno.ENOENT) and first_error is None:
                    first_error = e
        if first_error is not None:
            raise first_error

    @property
    def attachments(self) -> list[tuple[str | None, str, str]]:
        """(netns, ifname, direction) of each live attachment."""
        return [(a.netns, a.ifname, a.direction) for a in self._attached]

    def close(self) -> None:
        try:
            self.detach()
        finally:
            self._obj.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AgentProgram(_TcProgram):
    """The server agent: ``ingress`` (dsrc_agent_in) and ``egress`` (dsrc_agent_eg)."""

    _stats_map = "dsrc_agent_st"
    _stat_names = ("decap", "foreign_ipip", "dnat", "snat", "snat_miss", "malformed", "pass")

    def __init__(
        self, config: AgentConfig, mutant: str | None = None, nat_flow_entries: int = 65536
    ) -> None:
        if nat_flow_entries < 1:
            raise ConfigError(f"nat_flow_entries must be at least 1, got {nat_flow_entries}")
        self.config = config
        self.mutant = mutant
        path = compile_bpf(AGENT_SOURCE, mutants.defines_for("agent", mutant))
        sizes = {maps["flows"]: nat_flow_entries for maps in _MAPS.values()}
        super().__init__(BpfObject(path, max_entries=sizes))
        try:
            self.ingress = self._obj.program(AGENT_PROGRAMS[0])
            self.egress = self._obj.program(AGENT_PROGRAMS[1])
            self._program_maps()
        except BaseException:
            self._obj.close()
            raise

    def _program_maps(self) -> None:
        cfg = self.config
        mode = layout.C(MODES[cfg.mode])
        self.map("dsrc_agent_cfg").update(layout.u32(0), layout.agent_config(cfg.server_addr, mode))
        for addr in cfg.mux_addrs:
            self.map(_MAPS[family(addr)]["muxes"]).update(layout.addr_be(addr), layout.u32(1))
        for fam, maps in _MAPS.items():
            services = [s for s in cfg.nat_services if family(s.vip) == fam]
            svc_map, first_map = self.map(maps["svc"]), self.map(maps["first"])
            if len(services) > svc_map.max_entries:
                raise ConfigError(
                    f"nat_services: {len(services)} {fam} entries, the agent holds at most "
                    f"{svc_map.max_entries}"
                )
            for s in services:
                proto = layout.IPPROTO[s.proto]
                server = cfg.server_addr_for(s.vip)
                svc_map.update(
                    layout.nat_service_key(s.vip, s.vport, proto),
                    layout.nat_service(server, s.port),
                )
                first = layout.gw_key(server, s.port, proto)
                if first_map.lookup(first) is None:  # config order: the first VIP wins
                    first_map.update(first, layout.gw_value(s.vip, s.vport))

    def nat_flows(self) -> list[NatFlow]:
        """Every flow in the server-nat flow tables (IPv4 first, then IPv6)."""
        flows = []
        for maps in _MAPS.values():
            m = self.map(maps["flows"])
            for key in m.keys():  # noqa: SIM118 (a BPF map, not a dict)
                raw = m.lookup(key)
                if raw is None:  # evicted while iterating
                    continue
                vip, vport, mux = layout.nat_flow_unpack(raw)
                local, remote, lport, rport, proto = layout.nat_flow_key_unpack(key)
                flows.append(NatFlow(local, lport, remote, rport, proto, vip, vport, mux))
        return flows

    def attach(self, netns: str | None, ifname: str, *, egress: bool = True) -> None:
        """Attach ingress (and egress unless ``egress=False``: gateway-nat leaves reply rewriting
        to the egress gateway) to ``ifname`` in ``netns`` (None: this namespace)."""
        progs = [(self.ingress, "ingress")] + ([(self.egress, "egress")] if egress else [])
        self._attach(netns, ifname, progs)


class GatewayProgram(_TcProgram):
    """The stateless egress gateway: ``program`` (dsrc_gw)."""

    _stats_map = "dsrc_gw_st"
    _stat_names = ("gw_rewrite", "pass")

    def __init__(self, config: GatewayConfig, mutant: str | None = None) -> None:
        self.config = config
        self.mutant = mutant
        path = compile_bpf(GATEWAY_SOURCE, mutants.defines_for("gateway", mutant))
        super().__init__(BpfObject(path))
        try:
            self.program = self._obj.program(GATEWAY_PROGRAM)
            for fam, name in (("ipv4", "dsrc_gw_map"), ("ipv6", "dsrc_gw_map6")):
                gw = self.map(name)
                mappings = [m for m in config.mappings if family(m.server) == fam]
                if len(mappings) > gw.max_entries:
                    raise ConfigError(
                        f"mappings: {len(mappings)} {fam} entries, the gateway holds at most "
                        f"{gw.max_entries}"
                    )
                for m in mappings:
                    gw.update(
                        layout.gw_key(m.server, m.server_port, layout.IPPROTO[m.proto]),
                        layout.gw_value(m.external, m.external_port),
                    )
        except BaseException:
            self._obj.close()
            raise

    def attach(self, netns: str | None, ifname: str, direction: str = "ingress") -> None:
        """Attach to ``ifname``'s tc ``direction`` hook (the server-facing ingress, normally)."""
        self._attach(netns, ifname, [(self.program, direction)])
