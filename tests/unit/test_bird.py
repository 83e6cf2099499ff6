"""Parsing BIRD's protocol table (lab status, BGP readiness): no privileges."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dsrconform.errors import ConfigError
from dsrconform.lab.bird import BirdSpeaker, mux_header, router_config
from dsrconform.topofile import load_topology
from dsrconform.topology import Topology


def test_bird_protocol_rows_parse() -> None:
    from dsrconform.lab.environment import parse_bird_protocols

    text = (
        "BIRD 2.0.12 ready.\nName       Proto      Table      State  Since         Info\n"
        "device1    Device     ---        up     2026-11-26 07:35:17\n"
        "mux1       BGP        ---        up     2026-11-26 07:35:17  Established\n"
        "mux2       BGP        ---        start  2026-11-26 07:33:54  Idle          BGP Error: "
        "Hold timer expired\n"
    )
    rows = parse_bird_protocols(text)
    assert set(rows) == {"mux1", "mux2"}
    assert rows["mux1"] == {"state": "up", "since": "2026-11-26 07:35:17", "info": "Established"}
    assert rows["mux2"]["info"].startswith("Idle") and "Hold timer" in rows["mux2"]["info"]


# --- configurations (no BIRD running; `bird -p` only parses, where BIRD is installed) -----------

LABS = Path(__file__).resolve().parents[2] / "labs"


def configs(name: str) -> tuple[Topology, str, dict[str, str]]:
    topo = load_topology(LABS / f"{name}.yaml")
    return topo, router_config(topo), {m: mux_header(topo, m) for m in topo.of_role("mux")}


@pytest.mark.parametrize("name", ["basic", "multi-mux-nat", "scale"])
def test_an_ipv4_lab_gets_no_ipv6_in_its_bird_configurations(name: str) -> None:
    _, router, muxes = configs(name)
    for text in (router, *muxes.values()):
        assert "ipv6" not in text and "@ROUTES6@" not in text and "kernel6" not in text
    assert router.count("merge paths yes;") == 1


def test_a_dual_lab_carries_ipv6_vips_over_each_mux_session() -> None:
    topo, router, muxes = configs("dual")
    assert router.count("merge paths yes;") == 2  # one kernel protocol per family
    assert "protocol kernel kernel6 {\n  ipv6 { import none; export where source = RTS_BGP; };" in (
        router
    )
    for mux, header in muxes.items():
        up = topo.uplink(mux)
        # The session runs over IPv4; its ipv6 channel announces the MUX link's IPv6 address.
        assert f"neighbor {up.ip} as {topo.nodes[mux].asn};\n  ipv6 {{ import all;" in router
        assert f"local {up.ip} as" in header and "protocol static vips6 {\n  ipv6;\n@ROUTES6@}" in (
            header
        )
        assert f"next hop address {topo.address6_of(mux)};" in header


def test_a_speaker_announces_ipv6_vips_in_its_ipv6_static_protocol(tmp_path: Path) -> None:
    topo, _, muxes = configs("dual")
    speaker = BirdSpeaker(
        node="mux1",
        conf=tmp_path / "bird.conf",
        sock=tmp_path / "bird.ctl",
        header=muxes["mux1"],
        vips_served=frozenset(s.vip for s in topo.services_of_mux("mux1")),
    )
    speaker.announce("2001:2:0:100:0:0:0:10")  # any spelling of web6's VIP
    speaker.announce("198.19.0.10")
    assert speaker.announced() == ["198.19.0.10", "2001:2:0:100::10"]
    text = (tmp_path / "bird.conf").read_text()
    v4, v6 = text.index("protocol static vips {"), text.index("protocol static vips6 {")
    assert v4 < text.index("route 198.19.0.10/32 blackhole;") < v6
    assert v6 < text.index("route 2001:2:0:100::10/128 blackhole;") < text.index("protocol bgp")
    with pytest.raises(ConfigError, match="not a VIP this MUX fronts"):
        speaker.announce("2001:2:0:100::99")
    speaker.withdraw("2001:2:0:100::10")
    assert "2001:2:0:100::10" not in (tmp_path / "bird.conf").read_text()
    if shutil.which("bird") is not None:  # BIRD itself accepts what the lab writes
        argv = ["bird", "-p", "-c", str(tmp_path / "bird.conf")]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        assert res.returncode == 0, res.stderr
