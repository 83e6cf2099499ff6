"""The reference agent's and gateway's configurations with IPv6 (no BPF, no root): which
addresses each field takes, the errors that name the field and the fix, and the record packers
of dsr_shared.h's IPv6 structs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsrconform.errors import ConfigError
from reference_impl import layout
from reference_impl.agent import (
    AgentConfig,
    GatewayConfig,
    family,
    load_agent_config,
    load_gateway_config,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SERVER, SERVER6 = "198.18.20.1", "2001:2:0:20::1"
VIP6 = "2001:2:0:100::10"


def _svc(vip: str, vport: int = 80, proto: str = "tcp", port: int = 8080) -> dict[str, object]:
    return {"vip": vip, "vport": vport, "proto": proto, "port": port}


def test_dual_stack_config_is_accepted_and_addresses_normalised() -> None:
    cfg = AgentConfig.from_dict(
        {
            "server_addr": SERVER,
            "server_addr6": "2001:0002:0000:0020:0000:0000:0000:0001",
            "mode": "server-nat",
            "mux_addrs": ["198.18.10.1", "2001:2:0:10:0::1"],
            "nat_services": [_svc("2001:2:0:100:0:0:0:10"), _svc("198.19.0.13", port=8082)],
        }
    )
    assert cfg.server_addr6 == SERVER6
    assert cfg.mux_addrs == ["198.18.10.1", "2001:2:0:10::1"]
    assert cfg.nat_services[0].vip == VIP6
    assert cfg.server_addr_for(VIP6) == SERVER6
    assert cfg.server_addr_for("198.19.0.13") == SERVER
    assert [family(a) for a in cfg.mux_addrs] == ["ipv4", "ipv6"]


def test_ipv6_outside_the_lab_range_names_field_and_range() -> None:
    with pytest.raises(
        ConfigError,
        match=r"mux_addrs\.0: mux_addrs 2001:db8::1 is outside the "
        r"lab range 2001:2::/48; fix",
    ):
        AgentConfig.from_dict({"server_addr": SERVER, "mux_addrs": ["2001:db8::1"]})
    with pytest.raises(ConfigError, match=r"server_addr6: .* is outside the lab range 2001:2::/48"):
        AgentConfig.from_dict({"server_addr": SERVER, "server_addr6": "2001:3::1"})
    with pytest.raises(ConfigError, match=r"nat_services\.0\.vip: '2001:2::zz' is not an IPv6"):
        AgentConfig.from_dict({"server_addr": SERVER, "nat_services": [_svc("2001:2::zz")]})


def test_each_server_address_field_takes_its_own_family() -> None:
    with pytest.raises(ConfigError, match=r"server_addr: .* is not an IPv4 address"):
        AgentConfig.from_dict({"server_addr": SERVER6})
    with pytest.raises(ConfigError, match=r"server_addr6: '198.18.20.1' is not an IPv6 address"):
        AgentConfig.from_dict({"server_addr": SERVER, "server_addr6": SERVER})


def test_ipv6_vip_needs_the_server_ipv6_address() -> None:
    with pytest.raises(
        ConfigError,
        match=r"nat_services\.1: IPv6 VIP 2001:2:0:100::10 needs .* "
        r"fix: set server_addr6",
    ):
        AgentConfig.from_dict(
            {"server_addr": SERVER, "nat_services": [_svc("198.19.0.10"), _svc(VIP6)]}
        )


def test_mux_limit_is_per_family() -> None:
    v4 = [f"198.18.10.{i}" for i in range(1, 65)]
    v6 = [f"2001:2:0:10::{i:x}" for i in range(1, 65)]
    AgentConfig.from_dict({"server_addr": SERVER, "mux_addrs": v4 + v6})
    with pytest.raises(ConfigError, match="65 ipv6 entries, at most 64 per family"):
        AgentConfig.from_dict({"server_addr": SERVER, "mux_addrs": [*v6, "2001:2:0:10::ff"]})


def test_duplicate_ipv6_services_are_rejected() -> None:
    with pytest.raises(ConfigError, match="listed twice"):
        AgentConfig.from_dict(
            {
                "server_addr": SERVER,
                "server_addr6": SERVER6,
                "nat_services": [_svc(VIP6), _svc("2001:2:0:100:0::10")],
            }
        )


def test_gateway_mapping_keeps_its_family() -> None:
    ok = {
        "server": SERVER6,
        "server_port": 8080,
        "proto": "tcp",
        "external": VIP6,
        "external_port": 80,
    }
    GatewayConfig.from_dict({"mappings": [ok]})
    with pytest.raises(
        ConfigError,
        match=r"mappings\.0: server 2001:2:0:20::1 and external "
        r"198.19.0.10 differ in family; fix",
    ):
        GatewayConfig.from_dict({"mappings": [{**ok, "external": "198.19.0.10"}]})


def test_an_unquoted_ipv6_address_read_as_a_number_says_to_quote_it(tmp_path: Path) -> None:
    bad = tmp_path / "agent.yaml"
    bad.write_text("server_addr: 198.18.20.1\nserver_addr6: 2001:2:0:20:0:0:0:1\n")
    with pytest.raises(ConfigError, match=r"agent.yaml:2: server_addr6: .* fix: quote the address"):
        load_agent_config(bad)


def test_the_ipv6_examples_load() -> None:
    cfg = load_agent_config(EXAMPLES / "agent-demo6.yaml")
    assert {family(s.vip) for s in cfg.nat_services} == {"ipv4", "ipv6"}
    assert {family(a) for a in cfg.mux_addrs} == {"ipv4", "ipv6"}
    gw = load_gateway_config(EXAMPLES / "gateway-demo6.yaml")
    assert {family(m.server) for m in gw.mappings} == {"ipv4", "ipv6"}


# --- the packers of dsr_shared.h's agent records --------------------------------------------------


def test_records_take_the_layout_of_their_address_family() -> None:
    assert layout.nat_service_key("198.19.0.10", 80, 6) == bytes.fromhex("c6 13 00 0a 0050 06 00")
    key6 = layout.nat_service_key(VIP6, 80, 6)
    assert key6 == bytes.fromhex("20010002000001000000000000000010 0050 0600")
    assert len(layout.nat_service(SERVER6, 8080)) == 20  # struct nat_service6
    assert len(layout.gw_key(SERVER6, 8080, 17)) == len(layout.gw_value(VIP6, 53)) == 20
    assert len(layout.gw_key(SERVER, 8080, 17)) == 8


def test_flow_records_unpack_by_size() -> None:
    key6 = (
        layout.addr_be(SERVER6)
        + layout.addr_be("2001:2:0:1::2")
        + bytes.fromhex("1f90 9c40")
        + bytes([6, 0, 0, 0])
    )
    assert len(key6) == layout.NAT_FLOW6_KEY_SIZE
    assert layout.nat_flow_key_unpack(key6) == (SERVER6, "2001:2:0:1::2", 8080, 40000, 6)
    val6 = layout.addr_be(VIP6) + bytes.fromhex("0050 0000") + layout.addr_be("2001:2:0:10::1")
    assert len(val6) == layout.NAT_FLOW6_SIZE
    assert layout.nat_flow_unpack(val6) == (VIP6, 80, "2001:2:0:10::1")
    # IPv4 flows: the MUX is the IPv4 word, or the IPv6 address after it (IPv4-in-IPv6)
    ipip = (
        layout.addr_be("198.19.0.10")
        + bytes.fromhex("0050 0000")
        + layout.addr_be("198.18.10.1")
        + bytes(16)
    )
    assert layout.nat_flow_unpack(ipip) == ("198.19.0.10", 80, "198.18.10.1")
    over6 = (
        layout.addr_be("198.19.0.10")
        + bytes.fromhex("0050 0000")
        + bytes(4)
        + layout.addr_be("2001:2:0:10::2")
    )
    assert layout.nat_flow_unpack(over6) == ("198.19.0.10", 80, "2001:2:0:10::2")
