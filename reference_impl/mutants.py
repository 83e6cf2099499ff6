"""The catalogue of deliberate bugs ("mutants") of the reference stack.

Each mutant is the same source built with one compile-time define (``MUTANT_*`` in the BPF C) or
one control-plane switch, and names the requirement(s) it violates. A mutant either has packet-
level checks that catch it (``caught_by``: test functions under ``tests/integration``, run against
the mutant by ``tests/integration/test_mutants_caught.py``), or is marked ``system_level`` with
the reason only a running system shows it; the conformance suites must catch those.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dsrconform.errors import ConfigError
from dsrconform.target import MutantInfo


@dataclass(frozen=True)
class Mutant:
    name: str
    component: str  # "mux" | "agent" | "gateway"
    description: str
    requirements: tuple[str, ...]
    defines: dict[str, int] = field(default_factory=dict)  # -D flags for the component's BPF
    control: frozenset[str] = frozenset()  # control-plane switches
    caught_by: tuple[str, ...] = ()  # "module:function" packet-level checks that must fail
    system_level: str = ""

    def info(self) -> MutantInfo:
        return MutantInfo(
            name=self.name,
            description=self.description,
            requirements=self.requirements,
            component=self.component,
            system_level=self.system_level,
            caught_by=self.caught_by,
        )


_MUX = "tests.integration.mux_checks"
_AGENT = "tests.integration.agent_checks"
_AGENT6 = "tests.integration.agent6_checks"

CATALOGUE: tuple[Mutant, ...] = (
    Mutant(
        "per-mux-hash-seed",
        "mux",
        "Each MUX mixes its own address into the flow-hash seed, so two MUXes pick different "
        "servers for the same flow: a flow re-hashed to another MUX lands on another server.",
        ("MF-1", "AF-1"),
        defines={"MUTANT_PER_MUX_SEED": 1},
        caught_by=(f"{_MUX}:check_encap_matches_model",),
    ),
    Mutant(
        "hash-no-sport",
        "mux",
        "The flow hash leaves out the client's source port: every new flow from one client "
        "address reaches the same server. Tuple probes from thousands of addresses still spread, "
        "so only the spread of new flows per client address shows it (AF-4, and AF-3).",
        ("AF-4",),
        defines={"MUTANT_HASH_NO_SPORT": 1},
        caught_by=(f"{_MUX}:check_encap_matches_model",),
    ),
    Mutant(
        "outer-tos-zero",
        "mux",
        "The outer IPv4 header is built with TOS 0: the client's DSCP does not reach the tunnel "
        "(QoS along the path to the servers sees every packet as best effort). Clients that all "
        "send TOS 0 never show it; marked traffic does (RW-8).",
        ("RW-8",),
        defines={"MUTANT_OUTER_TOS_ZERO": 1},
        caught_by=(f"{_MUX}:check_encap_keeps_marks",),
    ),
    Mutant(
        "modulo-hash",
        "mux",
        "Backend = hash mod N over the VIP's backend list instead of the Maglev table: any change "
        "of N remaps almost every new flow.",
        ("SC-2",),
        defines={"MUTANT_MODULO_HASH": 1},
        caught_by=(f"{_MUX}:check_encap_matches_model",),
    ),
    Mutant(
        "no-conn-table",
        "mux",
        "The connection table is never consulted or filled: established flows follow the new "
        "Maglev table after a backend change and break.",
        ("SC-1",),
        defines={"MUTANT_NO_CONN_TABLE": 1},
        caught_by=(f"{_MUX}:check_conn_table_survives_swap",),
    ),
    Mutant(
        "syn-skips-conn-table",
        "mux",
        "Bare SYNs never consult the connection table, even after a backend change: a client "
        "reusing a 5-tuple whose entry predates the change sends its SYN to the new server and "
        "its ACK to the old one, and the connection never opens. (It breaks no connection "
        "established before a change, so SC-1 cannot see it: the packets of one new connection "
        "reach two servers, which AF-1 judges.)",
        ("AF-1",),
        defines={"MUTANT_SYN_SKIPS_TABLE": 1},
        caught_by=(f"{_MUX}:check_reused_tuple_syn_follows_entry",),
    ),
    Mutant(
        "syn-evicts-established",
        "mux",
        "New-flow inserts are not rate-bounded: a SYN flood fills the LRU connection table and "
        "evicts established flows, which then break on the next backend change.",
        ("SF-1", "SF-3"),
        defines={"MUTANT_UNBOUNDED_INSERTS": 1},
        caught_by=(f"{_MUX}:check_flood_keeps_established",),
    ),
    Mutant(
        "icmp-outer-hash",
        "mux",
        "ICMP errors about a VIP flow are hashed on the ICMP packet's own addresses instead of the "
        "embedded header, so packet-too-big reaches a random server.",
        ("RW-6", "RW-7"),
        defines={"MUTANT_ICMP_OUTER_HASH": 1},
        caught_by=(f"{_MUX}:check_icmp_reaches_flow_server",),
    ),
    Mutant(
        "outer-csum-missing",
        "mux",
        "The outer IPv4 header is emitted with a zero checksum.",
        ("RW-2",),
        defines={"MUTANT_NO_OUTER_CSUM": 1},
        caught_by=(f"{_MUX}:check_encap_matches_model",),
    ),
    Mutant(
        "in-place-table",
        "mux",
        "The control plane rewrites the live Maglev table entry by entry instead of filling the "
        "standby half and flipping the active index: new flows arriving during the rewrite hash "
        "into a table that is neither the old nor the new one.",
        ("SC-4",),
        control=frozenset({"in_place_tables"}),
        system_level="a torn table is visible only to packets that race the rewrite on a running "
        "MUX; one BPF_PROG_TEST_RUN at a time sees either state. The SC suite catches it.",
    ),
    Mutant(
        "nat-no-pseudo-hdr",
        "agent",
        "server-nat rewrites addresses without folding them into the TCP/UDP pseudo-header "
        "checksum: clients count checksum errors and drop every reply.",
        ("RW-2",),
        defines={"MUTANT_NAT_NO_PSEUDO_HDR": 1},
        caught_by=(f"{_AGENT}:check_server_nat_checksums",),
    ),
    Mutant(
        "udp-zero-csum-lost",
        "agent",
        'server-nat updates a UDP checksum of zero ("no checksum") as if it were real, emitting '
        "a non-zero, wrong checksum.",
        ("RW-2",),
        defines={"MUTANT_UDP_ZERO_CSUM": 1},
        caught_by=(f"{_AGENT}:check_udp_zero_checksum_preserved",),
    ),
    Mutant(
        "nat-wrong-vip",
        "agent",
        "server-nat egress rewrites replies to the first VIP configured for the service port, not "
        "to the VIP the flow came through: with per-MUX external VIPs, clients of the second VIP "
        "get replies from the wrong address.",
        ("RW-1", "RW-4"),
        defines={"MUTANT_NAT_WRONG_VIP": 1},
        caught_by=(
            f"{_AGENT}:check_nat_reply_uses_flow_vip",
            f"{_AGENT6}:check_nat6_reply_uses_flow_vip",
        ),
    ),
    Mutant(
        "nat-svc-no-proto",
        "agent",
        "server-nat finds a service by VIP and port without the protocol: where a TCP and a UDP "
        "service share a VIP:port, the UDP datagrams go to the TCP service's app port, where "
        "nothing listens, and the server's port-unreachable errors reach the clients from its "
        "own address. Only a lab with such a pair shows it (basic.yaml's web and webudp). The "
        "steady mix's clients also ping the servers' own addresses: only RW-3's judging by "
        "conversation (5-tuple and time) catches it; exempting every server address a client "
        "ever sent to did not.",
        ("RW-3",),
        defines={"MUTANT_NAT_SVC_NO_PROTO": 1},
        caught_by=(f"{_AGENT}:check_nat_services_keyed_by_protocol",),
    ),
    Mutant(
        "decap-any-source",
        "agent",
        "The agent decapsulates IPIP from any source, not only from the stack's MUXes: anyone can "
        "inject traffic to the VIP past the load balancer.",
        ("RB-4",),
        defines={"MUTANT_DECAP_ANY_SOURCE": 1},
        caught_by=(
            f"{_AGENT}:check_decap_only_from_muxes",
            f"{_AGENT6}:check_ipv6_decap_only_from_muxes",
        ),
    ),
    Mutant(
        "gateway-no-l4-csum",
        "gateway",
        "The egress gateway rewrites the source address and port but leaves the TCP/UDP checksum "
        "as it was.",
        ("RW-2",),
        defines={"MUTANT_GW_NO_L4_CSUM": 1},
        caught_by=(f"{_AGENT}:check_gateway_rewrite", f"{_AGENT6}:check_gateway6_rewrite"),
    ),
    # --- IPv6 agent (issue 18) ---
    Mutant(
        "v6-nat-csum-low32",
        "agent",
        "server-nat folds only the low 32 bits of the old and new IPv6 addresses into the TCP/UDP "
        "checksum (the pseudo-header holds all 128): every IPv6 packet whose VIP and server "
        "addresses differ above the low 32 bits leaves with a wrong checksum and is dropped by "
        "its receiver; IPv4 is unaffected. The inbound rewrite is wrong too, so no IPv6 "
        "connection through server-nat ever completes: the suites see legitimate connections "
        "fail (RB-1), while the steady state's reply checks have no reply to judge (UNKNOWN).",
        ("RB-1",),
        defines={"MUTANT_NAT_CSUM_LOW32": 1},
        caught_by=(f"{_AGENT6}:check_server_nat6_checksums",),
    ),
    # --- the MUX's IPv6 paths (mux_ipv6.h) ---
    Mutant(
        "v6-hash-low32",
        "mux",
        "The IPv6 flow hash reads only the low 32 bits of each address: clients that differ "
        "only above them (other /64s, other upper interface-identifier bits) hash alike, so new "
        "flows from many prefixes sharing low bits crowd onto few servers: dual.yaml's IPv6 "
        "clients differ only above them, so one source port's flows from all of them reach one "
        "server (AF-4's per-port clause). The packet check sees it against the model at once.",
        ("AF-4",),
        defines={"MUTANT_V6_HASH_LOW32": 1},
        caught_by=(f"{_MUX}:check_encap6_matches_model",),
    ),
    Mutant(
        "v6-outer-plen",
        "mux",
        "The outer IPv6 header's payload length is the inner packet's own payload length instead "
        "of the whole inner packet: the outer packet claims 40 (or 20) bytes too few. In the lab "
        "no IPv6-encapsulated packet is delivered on the servers (measured: no IPv6 connection "
        "through a MUX completes): the suites see legitimate connections fail (RB-1), while the "
        "steady state's reply and stream checks have nothing to judge (UNKNOWN).",
        ("RB-1",),
        defines={"MUTANT_V6_OUTER_PLEN": 1},
        caught_by=(f"{_MUX}:check_encap6_matches_model",),
    ),
    Mutant(
        "v6-ptb-outer",
        "mux",
        "ICMPv6 errors about an IPv6 VIP flow (packet too big above all) are steered by the "
        "ICMPv6 packet's own router->VIP header instead of the embedded flow: PMTU discovery "
        "for an IPv6 flow reaches a random server, and the flow's server never lowers its MSS.",
        ("RW-6", "RW-7"),
        defines={"MUTANT_V6_PTB_OUTER": 1},
        caught_by=(f"{_MUX}:check_icmp6_reaches_flow_server",),
    ),
)

BY_NAME: dict[str, Mutant] = {m.name: m for m in CATALOGUE}


def get(name: str | None) -> Mutant | None:
    """The mutant called ``name`` (None for the correct stack); unknown names are a ConfigError."""
    if name is None:
        return None
    try:
        return BY_NAME[name]
    except KeyError:
        raise ConfigError(
            f"unknown mutant {name!r}; `dsrconform mutants` lists them: {', '.join(BY_NAME)}"
        ) from None


def defines_for(component: str, mutant: str | None) -> dict[str, int]:
    """The -D flags to build ``component`` as ``mutant`` (empty for the correct stack)."""
    m = get(mutant)
    return dict(m.defines) if m and m.component == component else {}


def control_switches(mutant: str | None) -> frozenset[str]:
    m = get(mutant)
    return m.control if m else frozenset()
