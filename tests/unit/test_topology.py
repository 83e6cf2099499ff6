"""Topology files: the shipped labs load, and bad files fail with file, line, field and a fix
(no privileges; nothing is created)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from dsrconform.errors import ConfigError
from dsrconform.topofile import load_topology
from dsrconform.topology import Node

LABS = Path(__file__).resolve().parents[2] / "labs"

GOOD = """\
name: t
nodes:
  client: {role: client}
  router: {role: router, asn: 65000}
  mux1: {role: mux, asn: 65101}
  server1: {role: server}
links:
  - ends: {client: 198.18.1.1/24, router: 198.18.1.254/24}
  - ends: {mux1: 198.18.10.1/30, router: 198.18.10.2/30}
  - ends: {server1: 198.18.20.1/24, router: 198.18.20.254/24}
services:
  - {name: web, vip: 198.19.0.10, port: 80}
"""


@pytest.mark.parametrize("name", ["basic", "dual", "multi-mux-nat", "scale"])
def test_shipped_labs_load(name: str) -> None:
    topo = load_topology(LABS / f"{name}.yaml")
    assert topo.of_role("router") == ["router"]
    assert topo.of_role("mux") and topo.of_role("server") and topo.services
    for node in topo.nodes:
        if node != topo.router:
            assert topo.uplink(node).peer == topo.router
    names = [(i.node, i.ifname) for i in topo.interfaces()]
    assert len(names) == len(set(names)), "two interfaces with one name in a node"
    assert all(len(ifname) <= 15 for _, ifname in names)


def test_shipped_lab_sizes() -> None:
    assert len(load_topology(LABS / "basic.yaml").of_role("mux")) == 2
    assert len(load_topology(LABS / "basic.yaml").of_role("server")) == 3
    scale = load_topology(LABS / "scale.yaml")
    assert (len(scale.of_role("mux")), len(scale.of_role("server"))) == (4, 16)
    multi = load_topology(LABS / "multi-mux-nat.yaml")
    fronted = {m: {s.vip for s in multi.services_of_mux(m)} for m in multi.of_role("mux")}
    assert fronted["mux1"].isdisjoint(fronted["mux2"]), "each MUX fronts its own VIPs"


def test_good_file_and_defaults(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(GOOD)
    topo = load_topology(f)
    assert topo.mode == "encap" and topo.blackhole == ["198.18.200.0/21", "198.18.208.0/21"]
    assert topo.uplink("server1").peer_ip == "198.18.20.254"
    assert load_topology(f, mode="server-nat").mode == "server-nat"


BAD = [
    # (what, replace this, with this, expected line, pattern in the message)
    (
        "address outside the lab range",
        "198.18.1.1/24",
        "10.0.0.1/24",
        8,
        r"outside the lab range 198\.18\.0\.0/15.*fix",
    ),
    ("VIP outside the lab range", "vip: 198.19.0.10", "vip: 192.0.2.10", 12, r"outside the lab"),
    (
        "unknown node in a link",
        "mux1: 198.18.10.1/30",
        "mux9: 198.18.10.1/30",
        9,
        r"unknown node 'mux9'; fix: define it under nodes \(known: client, mux1, router, server1\)",
    ),
    (
        "duplicate address",
        "server1: 198.18.20.1/24",
        "server1: 198.18.20.254/24",
        10,
        r"address 198\.18\.20\.254 is already used at links\.2\.ends\.(server1|router)",
    ),
    (
        "address inside a black-holed network",
        "client: 198.18.1.1/24, router: 198.18.1.254/24",
        "client: 198.18.208.1/24, router: 198.18.208.254/24",
        8,
        r"address 198\.18\.208\.1 is inside blackhole\[1\] 198\.18\.208\.0/21.*fix",
    ),
    (
        "link ends in different subnets",
        "server1: 198.18.20.1/24",
        "server1: 198.18.1.1/24",
        10,
        r"different subnets",
    ),
    ("empty server list", "port: 80}", "port: 80, servers: []}", 12, r"at least 1 item"),
    (
        "bad node name",
        "  server1: {role: server}",
        "  Server_1: {role: server}",
        6,
        r"name 'Server_1' is not allowed; fix",
    ),
    ("missing asn", "mux1: {role: mux, asn: 65101}", "mux1: {role: mux}", 5, r"needs asn"),
    ("unknown role", "{role: server}", "{role: balancer}", 6, r"role"),
    ("unknown field", "{role: server}", "{role: server, colour: red}", 6, r"colour"),
    (
        "gateway-nat without gateway",
        "name: t\n",
        "name: t\nmode: gateway-nat\n",
        2,
        r"gateway-nat needs a node with role gateway",
    ),
]


@pytest.mark.parametrize("what,old,new,line,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_files_name_file_line_field_and_fix(
    tmp_path: Path, what: str, old: str, new: str, line: int, pattern: str
) -> None:
    assert old in GOOD, what
    f = tmp_path / "bad.yaml"
    f.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        load_topology(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}:{line}:"), f"{what}: wrong file:line in {msg!r}"
    assert re.search(pattern, msg), f"{what}: {msg!r} does not match {pattern!r}"


def test_the_lab_refuses_a_mux_behind_a_segment(tmp_path: Path) -> None:
    from dsrconform.lab.environment import check_topology

    f = tmp_path / "seg.yaml"
    text = GOOD.replace("  - ends: {mux1: 198.18.10.1/30, router: 198.18.10.2/30}\n", "")
    text += (
        "segments:\n  - {name: lan, host: router, address: 198.18.10.254/24, "
        "members: {mux1: 198.18.10.1/24}}\n"
    )
    f.write_text(text)
    problems = check_topology(load_topology(f))
    assert problems and "mux1 needs a link of its own to the router" in problems[0]
    assert check_topology(load_topology(LABS / "basic.yaml")) == []


def test_two_interfaces_with_one_name_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "names.yaml"
    text = GOOD.replace("  server1: {role: server}\n", "  server1: {role: server}\n"
                        "  srv: {role: server}\n")  # fmt: skip
    text = text.replace(
        "links:\n", "links:\n  - ends: {server1: 198.18.40.1/30, srv: 198.18.40.2/30}\n"
    )
    text += (
        "segments:\n  - {name: srv, host: router, address: 198.18.30.254/24, "
        "members: {server1: 198.18.30.1/24, srv: 198.18.30.2/24}}\n"
    )
    f.write_text(text)
    with pytest.raises(ConfigError, match=r"two interfaces named dsrc-srv in server1"):
        load_topology(f)


def test_duplicate_node_names_are_caught_by_yaml_mapping_rules(tmp_path: Path) -> None:
    f = tmp_path / "dup.yaml"
    f.write_text(GOOD.replace("  server1: {role: server}\n", "  server1: {role: server}\n"
                              "  server1: {role: client}\n"))  # fmt: skip
    with pytest.raises(ConfigError, match=r"dup\.yaml:\d+: .*server1.*defined twice"):
        load_topology(f)


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "x.yaml"
    f.write_text("nodes: [unclosed\n")
    with pytest.raises(ConfigError, match=r"x\.yaml:\d+: not valid YAML"):
        load_topology(f)
    with pytest.raises(ConfigError, match="cannot read"):
        load_topology(tmp_path / "missing.yaml")


def test_a_client_without_traffic_is_the_flood_source_and_only_clients_may_be() -> None:
    from dsrconform.chaos.traffic import traffic_clients

    topo = load_topology(LABS / "basic.yaml")
    assert topo.of_role("client") == ["client", "flood"]
    assert traffic_clients(topo) == ["client"]
    with pytest.raises(ValidationError, match="traffic: false is for client nodes"):
        Node(role="server", traffic=False)
