"""Topology files that are binary, huge, loosely typed, misspelt or subtly inconsistent fail with
one clear ConfigError (file, line, field, fix), fast, and ``dsrconform lab validate`` says so
(no privileges; nothing is created)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsrconform import cli
from dsrconform.errors import ConfigError
from dsrconform.topofile import (
    MAX_ADDRESSES_PER_NODE,
    MAX_ERROR_LINES,
    MAX_FILE_BYTES,
    MAX_NODES,
    MAX_SERVERS,
    MAX_SERVICES,
    load_topology,
)
from tests.unit.test_topology import GOOD

LABS = Path(__file__).resolve().parents[2] / "labs"
BASIC = (LABS / "basic.yaml").read_text()


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


def error_of(f: Path, **kw: object) -> str:
    with pytest.raises(ConfigError) as e:
        load_topology(f, **kw)  # type: ignore[arg-type]
    assert e.value.exit_code == 2
    return str(e.value)


# --- 1. binary files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        bytes(range(256)) * 4,
        b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 64,
        "nodes: é".encode("latin-1"),
    ],
    ids=["random", "elf-with-nul", "latin-1"],
)
def test_a_binary_file_is_a_config_error_naming_the_file(tmp_path: Path, data: bytes) -> None:
    f = tmp_path / "bin.yaml"
    f.write_bytes(data)
    msg = error_of(f)
    assert msg.startswith(f"{f}: ")
    assert "not a UTF-8 YAML text file" in msg


# --- 2. bounds, checked before any per-item work, and a capped report ---------------------------


def many_servers(n: int) -> str:
    """A valid-looking lab with ``n`` servers on one segment (the issue's 5,000-server file)."""
    out = GOOD.replace("  server1: {role: server}\n", "").replace(
        "  - ends: {server1: 198.18.20.1/24, router: 198.18.20.254/24}\n", ""
    )
    out = out.replace(
        "links:\n", "".join(f"  s{i}: {{role: server}}\n" for i in range(n)) + "links:\n"
    )
    members = "".join(
        f"      s{i}: 198.18.{64 + (i + 1) // 256}.{(i + 1) % 256}/18\n" for i in range(n)
    )
    return out + (
        "segments:\n  - name: srv\n    host: router\n    address: 198.18.127.254/18\n"
        "    members:\n" + members
    )


def test_a_lab_at_the_server_limit_loads(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, many_servers(MAX_SERVERS)))
    assert len(topo.of_role("server")) == MAX_SERVERS


def test_five_thousand_servers_are_refused_by_the_bounds(tmp_path: Path) -> None:
    # Before the bounds this validated for about 7 minutes; now it is refused before validation.
    f = write(tmp_path, many_servers(5000))
    msg = error_of(f)
    assert re.search(rf"{re.escape(str(f))}:3: nodes: 5003 nodes, more than {MAX_NODES} .*fix", msg)
    assert re.search(rf"5000 servers, more than {MAX_SERVERS} .*fix", msg)
    assert re.search(rf"segments\[0\]\.members: 5000 members, more than {MAX_NODES}", msg)


def test_too_many_addresses_on_a_node_is_one_error(tmp_path: Path) -> None:
    addrs = ", ".join(f"10.0.{i // 256}.{i % 256}" for i in range(1000))
    text = GOOD.replace("client: {role: client}", f"client: {{role: client, addresses: [{addrs}]}}")
    f = write(tmp_path, text)
    assert error_of(f).splitlines() == [
        f"{f}:3: nodes.client.addresses: 1000 addresses, more than {MAX_ADDRESSES_PER_NODE} "
        "per node (MAX_ADDRESSES_PER_NODE); fix: list fewer addresses"
    ]


def test_the_issues_hundred_thousand_addresses_are_one_error(tmp_path: Path) -> None:
    # Before: 36,250 error lines. The file is over MAX_FILE_BYTES, refused before it is parsed.
    addrs = ", ".join(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(100_000))
    text = GOOD.replace("client: {role: client}", f"client: {{role: client, addresses: [{addrs}]}}")
    f = write(tmp_path, text)
    size = f.stat().st_size
    assert error_of(f).splitlines() == [
        f"{f}: {size} bytes, more than the {MAX_FILE_BYTES} bytes a topology file may have "
        "(MAX_FILE_BYTES); fix: give a topology file (labs/*.yaml are a few KB)"
    ]


def test_too_many_services(tmp_path: Path) -> None:
    n = MAX_SERVICES + 1
    svcs = "".join(f"  - {{name: s{i}, vip: 198.19.1.{i}, port: 80}}\n" for i in range(1, n + 1))
    f = write(tmp_path, GOOD + svcs)
    assert re.search(rf":12: services: {n + 1} services, more than {MAX_SERVICES} ", error_of(f))


def test_a_file_full_of_errors_prints_the_first_ones_and_a_count(tmp_path: Path) -> None:
    addrs = ", ".join(
        f"10.0.0.{i}" for i in range(1, 61)
    )  # within the bound, all outside the lab range
    f = write(
        tmp_path,
        GOOD.replace("client: {role: client}", f"client: {{role: client, addresses: [{addrs}]}}"),
    )
    lines = error_of(f).splitlines()
    assert len(lines) == MAX_ERROR_LINES + 1
    assert all(line.startswith(f"{f}:3: nodes.client.addresses[") for line in lines[:-1])
    assert lines[-1] == f"... and {60 - MAX_ERROR_LINES} more errors in {f}"


def test_yaml_aliases_cannot_blow_a_small_file_up(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    f = write(tmp_path, GOOD + "\n".join(levels) + "\n")
    assert re.search(
        r"more than \d+ YAML values once anchors and aliases are expanded", error_of(f)
    )
    f = write(tmp_path, GOOD + "loop: &l [1, *l]\n")  # recursive: walking it never ended
    assert error_of(f).startswith(f"{f}:13: an alias refers to its own anchor; fix")
    f = write(tmp_path, GOOD + "deep: " + "[" * 40 + "]" * 40 + "\n")
    assert re.search(r":13: nested deeper than 32 \(MAX_YAML_DEPTH\)", error_of(f))


# --- 3. eBGP needs different ASNs ---------------------------------------------------------------


def test_a_mux_with_the_routers_asn_is_refused(tmp_path: Path) -> None:
    f = write(
        tmp_path, GOOD.replace("mux1: {role: mux, asn: 65101}", "mux1: {role: mux, asn: 65000}")
    )
    msg = error_of(f)
    assert msg == (
        f"{f}:5: nodes.mux1.asn: 65000 is also nodes.router.asn; fix: give the MUX an AS number "
        "of its own (it peers with the router over eBGP, which needs different ASNs)"
    )


# --- 4. strict types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "old,new,line,field",
    [
        ("port: 80}", "port: true}", 12, "services[0].port"),
        ("port: 80}", "port: '80'}", 12, "services[0].port"),
        ("port: 80}", "port: 80, app_port: 80.0}", 12, "services[0].app_port"),
        ("asn: 65101}", "asn: '65101'}", 5, "nodes.mux1.asn"),
        (
            "- ends: {client: 198.18.1.1/24, router: 198.18.1.254/24}",
            "- {ends: {client: 198.18.1.1/24, router: 198.18.1.254/24}, mtu: yes}",
            8,
            "links[0].mtu",
        ),
        ("{role: client}", "{role: client, traffic: 0}", 3, "nodes.client.traffic"),
    ],
)
def test_numbers_and_booleans_are_strict(
    tmp_path: Path, old: str, new: str, line: int, field: str
) -> None:
    f = write(tmp_path, GOOD.replace(old, new, 1))
    msg = error_of(f)
    assert msg.startswith(f"{f}:{line}: {field}: "), msg
    assert re.search(r"is not (a whole number|true or false); fix: write", msg), msg


# --- 5. services sharing a server's app port -----------------------------------------------------


def test_gateway_nat_refuses_two_services_on_one_server_port(tmp_path: Path) -> None:
    # web and edge both reach the servers on tcp 8080: the stateless gateway cannot tell which
    # VIP a reply from server:8080 belongs to.
    text = BASIC.replace("mode: encap", "mode: gateway-nat").replace(
        "app_port: 8081", "app_port: 8080"
    )
    f = write(tmp_path, text)
    msg = error_of(f)
    assert re.search(
        rf"^{re.escape(str(f))}:\d+: services\[2\]\.app_port: edge and web both reach server1, "
        r"server2, server3 on tcp port 8080, which gateway-nat cannot tell apart.*"
        r"fix: give edge another app_port",
        msg,
    ), msg
    # The same file in encap (app_port unused) and server-nat (the agent keeps each flow's VIP)
    # is fine; --mode gateway-nat on it fails at load, not 40 s into `lab up`.
    encap = write(tmp_path, text.replace("mode: gateway-nat", "mode: encap"), "e.yaml")
    assert load_topology(encap).mode == "encap"
    assert load_topology(encap, mode="server-nat").mode == "server-nat"
    msg = error_of(encap, mode="gateway-nat")
    assert re.search(r"--mode gateway-nat: edge and web both reach", msg), msg


def test_tcp_and_udp_services_on_one_port_do_not_collide(tmp_path: Path) -> None:
    text = BASIC.replace("mode: encap", "mode: gateway-nat").replace(
        "app_port: 7007", "app_port: 8080"
    )
    assert load_topology(write(tmp_path, text)).mode == "gateway-nat"


def test_a_default_app_port_collides_with_an_explicit_one(tmp_path: Path) -> None:
    text = BASIC.replace("mode: encap", "mode: gateway-nat").replace(
        "port: 80, proto: tcp, app_port: 8081", "port: 8080, proto: tcp"
    )
    assert re.search(
        r"services\[2\]\.port: edge and web both reach", error_of(write(tmp_path, text))
    )


def test_a_server_listed_twice_for_a_service_is_refused(tmp_path: Path) -> None:
    f = write(tmp_path, GOOD.replace("port: 80}", "port: 80, servers: [server1, server1]}"))
    assert error_of(f) == f"{f}:12: services[0].servers[1]: 'server1' is listed twice; fix: once"


# --- 6. misspelt keys ---------------------------------------------------------------------------


def test_a_misspelt_key_lists_the_allowed_keys(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        GOOD.replace("client: {role: client}", "client:\n    role: client\n    adresses: []"),
    )
    msg = error_of(f)
    assert msg == (
        f"{f}:5: nodes.client.adresses: unknown key 'adresses' (did you mean 'addresses'?); "
        "fix: a node's keys are role, addresses, asn, traffic"
    )
    f = write(tmp_path, GOOD.replace("name: t", "nmae: t"))
    assert (
        "fix: a topology's keys are name, mode, nodes, links, segments, services, blackhole, "
        "ambiguous_gateway" in error_of(f)
    )


# --- 7. dsrconform lab validate -----------------------------------------------------------------


@pytest.mark.parametrize("lab", sorted(p.name for p in LABS.glob("*.yaml")))
def test_lab_validate_accepts_every_shipped_lab(
    lab: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["lab", "validate", str(LABS / lab)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith(f"{LABS / lab}: valid: lab ")
    assert re.search(
        r"mode (encap|server-nat|gateway-nat), \d+ nodes \(.*\d+ server.*\), .*\d+ services", out
    )


def test_lab_validate_summary_and_mode(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["lab", "validate", str(LABS / "basic.yaml"), "--mode", "server-nat"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert out.splitlines()[0] == (
        f"{LABS / 'basic.yaml'}: valid: lab basic, mode server-nat, 9 nodes (2 client, 1 router, "
        "2 mux, 3 server, 1 gateway), 5 links, 1 segment, 4 services"
    )


def test_lab_validate_a_bad_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write(tmp_path, GOOD.replace("asn: 65101", "asn: 65000"))
    code = cli.main(["lab", "validate", str(f)])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith(f"dsrconform: error: {f}:5: nodes.mux1.asn: ")
