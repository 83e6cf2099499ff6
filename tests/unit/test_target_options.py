"""Target options (dsrconform.target.load_target(options=...)) and the lab that shows the
stateless gateway's pitfall on purpose (ambiguous_gateway)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsrconform.errors import ConfigError
from dsrconform.target import load_target
from dsrconform.topofile import load_topology

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_LAB = ROOT / "labs" / "multi-mux-gateway.yaml"


def test_the_reference_target_takes_its_gateway_option_and_refuses_unknown_ones() -> None:
    assert load_target("reference", options={"gateway": "naive"}).options == {"gateway": "naive"}
    assert load_target("reference").options == {}
    with pytest.raises(ConfigError, match="unknown option 'colour'; fix: one of gateway"):
        load_target("reference", options={"colour": "red"})
    with pytest.raises(ConfigError, match="fix: one of per-port, naive"):
        load_target("reference", options={"gateway": "clever"})


def test_a_shared_server_port_in_gateway_nat_is_refused_unless_on_purpose(tmp_path: Path) -> None:
    assert load_topology(GATEWAY_LAB).ambiguous_gateway
    plain = tmp_path / "plain.yaml"
    plain.write_text(GATEWAY_LAB.read_text().replace("ambiguous_gateway: true\n", ""))
    with pytest.raises(ConfigError, match="which gateway-nat cannot tell apart"):
        load_topology(plain)
