"""Dual-stack topology files (issue 18): IPv6 beside IPv4 in 2001:2::/48, validated like IPv4
(file, line, field and a fix), the model's IPv6 views, and IPv4-only files exactly as before
(no privileges; nothing is created)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from dsrconform.configfile import LAB_NET6, lab_address
from dsrconform.errors import ConfigError
from dsrconform.topofile import load_topology
from dsrconform.topology import BLACKHOLE6, MODES, PROBE_NET6, Topology

LABS = Path(__file__).resolve().parents[2] / "labs"
IPV4_LABS = ["basic", "multi-mux-nat", "multi-mux-gateway", "scale"]

GOOD6 = """\
name: t
nodes:
  client: {role: client, addresses: [198.18.1.2, 2001:2:0:1::2]}
  router: {role: router, asn: 65000}
  mux1: {role: mux, asn: 65101}
  server1: {role: server}
  server2: {role: server}
links:
  - ends: {client: [198.18.1.1/24, 2001:2:0:1::1/64], router: [198.18.1.254/24, 2001:2:0:1::fe/64]}
  - ends: {mux1: [198.18.10.1/30, 2001:2:0:10::1/64], router: [198.18.10.2/30, 2001:2:0:10::2/64]}
segments:
  - name: srv
    host: router
    address: [198.18.20.254/24, 2001:2:0:20::fe/64]
    members: {server1: [198.18.20.1/24, 2001:2:0:20::1/64], server2: 198.18.20.2/24}
services:
  - {name: web, vip: 198.19.0.10, port: 80}
  - {name: web6, vip: 2001:2:0:100::10, port: 80, servers: [server1]}
"""


def load_text(tmp_path: Path, text: str) -> Topology:
    f = tmp_path / "t.yaml"
    f.write_text(text)
    return load_topology(f)


def test_the_range_and_lab_address_take_both_families() -> None:
    assert str(LAB_NET6) == "2001:2::/48"
    assert lab_address("2001:2:0:100:0:0:0:10") == "2001:2:0:100::10"  # canonical form
    assert lab_address("198.19.0.10") == "198.19.0.10"
    with pytest.raises(ValueError, match=r"2001:db8::1 is outside the lab range 2001:2::/48; fix"):
        lab_address("2001:db8::1")
    with pytest.raises(ValueError, match=r"outside the lab range 198\.18\.0\.0/15; fix"):
        lab_address("10.0.0.1")
    with pytest.raises(ValueError, match=r"'nope' is not an IPv4 address"):
        lab_address("nope")


def test_dual_lab_loads_with_its_ipv6_services_and_addresses() -> None:
    for mode in MODES:
        topo = load_topology(LABS / "dual.yaml", mode=mode)
        assert topo.families == ("ipv4", "ipv6")
    topo = load_topology(LABS / "dual.yaml")
    svc = {s.name: s for s in topo.services}
    assert (svc["web6"].vip, svc["web6"].port, svc["web6"].proto) == ("2001:2:0:100::10", 80, "tcp")
    assert svc["web6"].server_port == 8080
    assert (svc["echo6"].vip, svc["echo6"].proto, svc["echo6"].server_port) == (
        "2001:2:0:100::11",
        "udp",
        7007,
    )
    assert (svc["web46"].vip, svc["web46"].server_port) == ("198.19.0.13", 8082)
    families = {n: (s.family, s.backend_family) for n, s in svc.items()}
    assert families["web"] == ("ipv4", "ipv4") and families["web6"] == ("ipv6", "ipv6")
    assert families["echo6"] == ("ipv6", "ipv6") and families["web46"] == ("ipv4", "ipv6")
    # Like basic.yaml, plus IPv6 everywhere.
    basic = load_topology(LABS / "basic.yaml")
    assert set(topo.nodes) == set(basic.nodes)
    assert [s.name for s in topo.services][: len(basic.services)] == [
        s.name for s in basic.services
    ]
    for iface in topo.interfaces():
        assert iface.address6 is not None, iface
    for node in topo.nodes:
        if node != topo.router:
            ip6 = topo.address6_of(node)
            assert ip6 is not None and ipaddress.ip_address(ip6) in LAB_NET6
    assert (
        topo.blackhole
        == [*basic.blackhole, BLACKHOLE6, PROBE_NET6]
        == [
            "198.18.200.0/21",
            "198.18.208.0/21",
            "2001:2:0:200::/56",
            "2001:2:0:300::/56",
        ]
    )
    client = topo.nodes["client"]
    assert "2001:2:0:1::2" in client.addresses and "198.18.1.2" in client.addresses
    # Alike in their low 32 bits (::2), so a flow hash reading only those shows (AF-4).
    assert client.addresses_of("ipv6") == [
        "2001:2:0:1::2",
        *(f"2001:2:0:1:{i}::2" for i in range(1, 7)),
    ]
    assert client.addresses_of("ipv4") == basic.nodes["client"].addresses


def test_the_ipv6_views_of_uplinks_and_interfaces(tmp_path: Path) -> None:
    topo = load_text(tmp_path, GOOD6)
    up = topo.uplink("mux1")
    assert (up.address, up.peer_address) == ("198.18.10.1/30", "198.18.10.2/30")
    assert (up.address6, up.peer_address6) == ("2001:2:0:10::1/64", "2001:2:0:10::2/64")
    assert (up.ip6, up.peer_ip6, up.ip, up.peer_ip) == (
        "2001:2:0:10::1",
        "2001:2:0:10::2",
        "198.18.10.1",
        "198.18.10.2",
    )
    assert topo.address6_of("server1") == "2001:2:0:20::1"
    # A segment member without IPv6 keeps IPv4 only, on a segment that has both.
    assert topo.address6_of("server2") is None
    assert topo.uplink("server2").peer_ip6 is None
    with pytest.raises(KeyError):
        topo.address6_of("router")
    by_name = {(i.node, i.ifname): i for i in topo.interfaces()}
    assert by_name[("router", "dsrc-br-srv")].address6 == "2001:2:0:20::fe/64"
    assert by_name[("server2", "dsrc-srv")].address6 is None
    assert by_name[("client", "dsrc-router")].address == "198.18.1.1/24"
    assert [n for n in topo.nodes if topo.has_ipv6(n)] == [
        "client",
        "router",
        "mux1",
        "server1",
    ]


@pytest.mark.parametrize("name", IPV4_LABS)
def test_ipv4_only_files_load_exactly_as_before(name: str) -> None:
    topo = load_topology(LABS / f"{name}.yaml")
    assert topo.families == ("ipv4",)
    assert not topo.uses_ipv6 and not any(topo.has_ipv6(n) for n in topo.nodes)
    assert topo.blackhole == ["198.18.200.0/21", "198.18.208.0/21"]
    assert all(i.address6 is None for i in topo.interfaces())
    assert all(s.backend_family == "ipv4" for s in topo.services)
    for node in topo.nodes:
        if node != topo.router:
            up = topo.uplink(node)
            assert up.address6 is None and up.ip6 is None and topo.address6_of(node) is None
    # The model dumps an address as the file wrote it: one string.
    dumped = topo.model_dump()
    assert all(isinstance(a, str) for link in dumped["links"] for a in link["ends"].values())
    assert type(topo).model_validate(dumped) == topo


def test_a_dumped_dual_topology_loads_back_the_same() -> None:
    topo = load_topology(LABS / "dual.yaml")
    dumped = topo.model_dump()
    assert dumped["links"][0]["ends"]["client"] == ["198.18.1.1/24", "2001:2:0:1::1/64"]
    again = type(topo).model_validate(dumped)
    assert (
        again == topo
        and again.blackhole.count(BLACKHOLE6) == again.blackhole.count(PROBE_NET6) == 1
    )


M1 = "mux1: [198.18.10.1/30, 2001:2:0:10::1/64]"
WEB6 = "{name: web6, vip: 2001:2:0:100::10, port: 80, servers: [server1]}"
S1 = "server1: [198.18.20.1/24, 2001:2:0:20::1/64]"
BAD6 = [
    # (what, replace this, with this, expected line, field, pattern in the message)
    (
        "IPv6 address outside the lab range",
        M1,
        "mux1: [198.18.10.1/30, 2001:db8::1/64]",
        10,
        "links[1].ends.mux1",
        r"2001:db8::1 is outside the lab range 2001:2::/48; fix: use an address from",
    ),
    (
        "IPv6 VIP outside the lab range",
        "vip: 2001:2:0:100::10",
        "vip: 2001:db8::10",
        18,
        "services[1].vip",
        r"2001:db8::10 is outside the lab range 2001:2::/48; fix",
    ),
    (
        "IPv6 client address outside the lab range",
        "2001:2:0:1::2]",
        "2001:3::2]",
        3,
        "nodes.client.addresses[1]",
        r"outside the lab range 2001:2::/48; fix",
    ),
    (
        "IPv6 subnet leaves the range",
        M1,
        "mux1: [198.18.10.1/30, 2001:2:0:10::1/40]",
        10,
        "links[1].ends.mux1",
        r"the subnet leaves 2001:2::/48; fix: use a longer prefix",
    ),
    (
        "IPv6 without a prefix",
        M1,
        "mux1: [198.18.10.1/30, 2001:2:0:10::1]",
        10,
        "links[1].ends.mux1",
        r"needs a prefix length below 128; fix",
    ),
    (
        "IPv6 subnet's own address",
        M1,
        "mux1: [198.18.10.1/30, 2001:2:0:10::/64]",
        10,
        "links[1].ends.mux1",
        r"network address .*; fix: use a host address",
    ),
    (
        "IPv6 alone on a link",
        M1,
        "mux1: 2001:2:0:10::1/64",
        10,
        "links[1].ends.mux1",
        r"IPv6 alone, and every link needs IPv4 .*; fix: give both",
    ),
    (
        "two addresses of one family",
        M1,
        "mux1: [198.18.10.1/30, 198.18.10.2/30]",
        10,
        "links[1].ends.mux1",
        r"two IPv4 addresses; fix: a list holds one IPv4 and one IPv6",
    ),
    (
        "three addresses",
        M1,
        "mux1: [198.18.10.1/30, 2001:2:0:10::1/64, 2001:2:0:10::3/64]",
        10,
        "links[1].ends.mux1",
        r"3 addresses; fix",
    ),
    (
        "IPv6 on one end of a link only",
        M1,
        "mux1: 198.18.10.1/30",
        10,
        "links[1].ends",
        r"router has an IPv6 address on the link and mux1 none; fix: give mux1 one",
    ),
    (
        "link ends in different IPv6 subnets",
        M1,
        "mux1: [198.18.10.1/30, 2001:2:0:11::1/64]",
        10,
        "links[1].ends",
        r"different IPv6 subnets",
    ),
    (
        "segment member outside the segment's IPv6 subnet",
        S1,
        "server1: [198.18.20.1/24, 2001:2:0:21::1/64]",
        15,
        "segments[0].members.server1",
        r"2001:2:0:21::1/64 is not in the segment's IPv6 subnet 2001:2:0:20::fe/64",
    ),
    (
        "segment member with IPv6 on a segment without",
        "address: [198.18.20.254/24, 2001:2:0:20::fe/64]",
        "address: 198.18.20.254/24",
        15,
        "segments[0].members.server1",
        r"server1 has IPv6 .* but the segment's address has none.*; fix",
    ),
    (
        "duplicate IPv6 address",
        S1,
        "server1: [198.18.20.1/24, 2001:2:0:10::1/64]",
        15,
        "segments[0].members.server1",
        r"(not in the segment's IPv6 subnet|address 2001:2:0:10::1 is already used)",
    ),
    (
        "duplicate IPv6 client address",
        "2001:2:0:1::2]",
        "2001:2:0:1::fe]",
        3,
        "nodes.client.addresses",
        r"address 2001:2:0:1::fe is already used at links\.0\.ends\.router",
    ),
    (
        "IPv6 address inside the IPv6 black hole",
        "2001:2:0:1::2]",
        "2001:2:0:200::2]",
        3,
        "nodes.client.addresses",
        r"2001:2:0:200::2 is inside blackhole\[2\] 2001:2:0:200::/56, which the router drops; fix",
    ),
    (
        "IPv6 black hole outside the range",
        "name: t\n",
        "name: t\nblackhole: [198.18.200.0/21, 2001:3::/56]\n",
        2,
        "blackhole",
        r"blackhole 2001:3::/56 is outside 2001:2::/48; fix",
    ),
    (
        "IPv6 VIP with IPv4 backends",
        WEB6,
        WEB6.replace("}", ", backend_family: ipv4}"),
        18,
        "services[1].backend_family",
        r"VIP 2001:2:0:100::10 is IPv6 and backend_family ipv4.*; fix: remove backend_family",
    ),
    (
        "IPv6 service on a server without IPv6",
        "servers: [server1]}",
        "servers: [server2]}",
        18,
        "services[1].servers",
        r"web6 needs IPv6 on server2 \(its VIP is IPv6\), which has no IPv6 address toward "
        r"router; fix",
    ),
    (
        "IPv6 backends on a server without IPv6",
        "{name: web, vip: 198.19.0.10, port: 80}",
        "{name: web, vip: 198.19.0.10, port: 80, backend_family: ipv6}",
        17,
        "services[0].vip",
        r"web needs IPv6 on server2 \(its backend_family is ipv6\).*; fix",
    ),
    (
        "IPv6 service behind a MUX without IPv6",
        "  - ends: {mux1: [198.18.10.1/30, 2001:2:0:10::1/64], router: [198.18.10.2/30, "
        "2001:2:0:10::2/64]}",
        "  - ends: {mux1: 198.18.10.1/30, router: 198.18.10.2/30}",
        18,
        "services[1].vip",
        r"web6 needs IPv6 on mux1 .*; fix",
    ),
    (
        "IPv6 VIP that no client reaches",
        "  - ends: {client: [198.18.1.1/24, 2001:2:0:1::1/64], router: [198.18.1.254/24, "
        "2001:2:0:1::fe/64]}",
        "  - ends: {client: 198.18.1.1/24, router: 198.18.1.254/24}",
        3,
        "nodes.client.addresses[1]",
        r"2001:2:0:1::2 is IPv6 but client has no IPv6 address toward router; fix",
    ),
]


@pytest.mark.parametrize(
    "what,old,new,line,field,pattern", BAD6, ids=[b[0].replace(" ", "-") for b in BAD6]
)
def test_bad_ipv6_files_name_file_line_field_and_fix(
    tmp_path: Path, what: str, old: str, new: str, line: int, field: str, pattern: str
) -> None:
    assert old in GOOD6, what
    f = tmp_path / "bad.yaml"
    f.write_text(GOOD6.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        load_topology(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}:{line}: {field}: "), f"{what}: wrong file:line: field in {msg!r}"
    assert re.search(pattern, msg), f"{what}: {msg!r} does not match {pattern!r}"


def test_no_client_with_ipv6_for_an_ipv6_vip_is_refused(tmp_path: Path) -> None:
    text = GOOD6.replace(", 2001:2:0:1::2]", "]").replace(
        "{client: [198.18.1.1/24, 2001:2:0:1::1/64], router: [198.18.1.254/24, 2001:2:0:1::fe/64]}",
        "{client: 198.18.1.1/24, router: 198.18.1.254/24}",
    )
    f = tmp_path / "noclient.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_topology(f)
    assert str(e.value).startswith(f"{f}:18: services[1].vip: no client has IPv6 toward router, ")
    assert "nothing reaches 2001:2:0:100::10; fix" in str(e.value)


def test_ipv4_and_ipv6_services_on_one_server_port_do_not_collide_in_gateway_nat() -> None:
    # web and web6 share app_port 8080/tcp on every server: the gateway tells them apart by
    # the server's address family.
    topo = load_topology(LABS / "dual.yaml", mode="gateway-nat")
    assert topo.mode == "gateway-nat"


def test_an_explicit_blackhole_list_is_kept_as_written(tmp_path: Path) -> None:
    topo = load_text(tmp_path, "blackhole: [198.18.200.0/21, 2001:2:0:300::/56]\n" + GOOD6)
    assert topo.blackhole == ["198.18.200.0/21", "2001:2:0:300::/56"]
