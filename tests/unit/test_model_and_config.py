"""The flow hash, the MUX model and the MUX config schema (pure Python, no privileges)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsrconform.errors import ConfigError
from reference_impl import layout
from reference_impl.config import MuxConfig, load_mux_config
from reference_impl.flowhash import DEFAULT_SEED, flow_hash, flow_hash_str, fmix32
from reference_impl.model import MuxModel

KNOWN_FLOW_HASH = 0xD71ECDAC
CFG = {"mux": {"address": "198.18.10.1", "ring_size": 4099},
       "vips": [{"address": "198.19.0.10", "port": 80,
                 "backends": ["198.18.20.1", "198.18.20.2"]}]}  # fmt: skip


def test_fmix32_known_answers() -> None:
    # MurmurHash3 fmix32 reference values: 0 -> 0, and the avalanche of 1.
    assert fmix32(0) == 0
    assert fmix32(1) == 0x514E28B7


def test_flow_hash_is_deterministic_and_uses_every_field() -> None:
    base = flow_hash_str("198.18.1.1", "198.19.0.10", 1000, 80, 6)
    assert base == flow_hash_str("198.18.1.1", "198.19.0.10", 1000, 80, 6, DEFAULT_SEED)
    variants = [
        flow_hash_str("198.18.1.2", "198.19.0.10", 1000, 80, 6),
        flow_hash_str("198.18.1.1", "198.19.0.11", 1000, 80, 6),
        flow_hash_str("198.18.1.1", "198.19.0.10", 1001, 80, 6),
        flow_hash_str("198.18.1.1", "198.19.0.10", 1000, 81, 6),
        flow_hash_str("198.18.1.1", "198.19.0.10", 1000, 80, 17),
        flow_hash(1, 2, 3, 4, 6, DEFAULT_SEED + 1),
    ]
    assert base not in variants


def test_flow_hash_known_answer() -> None:
    # Pinned: the C twin in dsr_helpers.h is checked against this by the MUX packet tests.
    assert flow_hash_str("198.18.1.1", "198.19.0.10", 1000, 80, 6) == KNOWN_FLOW_HASH


def test_python_and_c_hash_have_the_same_constants() -> None:
    c_src = (layout.BPF_DIR / "dsr_helpers.h").read_text()
    for const in ("0x85ebca6b", "0xc2b2ae35"):
        assert const in c_src
    assert re.search(r"h >> 16;.*h >> 13;.*h >> 16;", c_src, re.S)


def test_model_pins_flows_and_never_inserts_for_bare_syn() -> None:
    cfg = MuxConfig.model_validate(CFG)
    m = MuxModel(cfg)
    flow = ("198.18.1.1", "198.19.0.10", 1000, 80, 6)
    first = m.packet(flow, tcp_flags="S")
    assert not first.from_conn_table and flow not in m.conn
    m.packet(flow, tcp_flags="A")
    assert m.conn[flow] == first.backend
    m.set_backends(("198.19.0.10", 80, 6), ["198.18.20.1", "198.18.20.2", "198.18.20.9"])
    assert m.packet(flow).backend == first.backend and m.packet(flow).from_conn_table


def test_layout_packers_match_the_header_sizes() -> None:
    assert len(layout.flow_key("198.18.1.1", "198.19.0.1", 1, 2, 6)) == 16
    assert len(layout.vip_key("198.19.0.1", 80, 6)) == 8
    raw = layout.mux_config(mux_addr="198.18.10.1", hash_seed=1, ring_size=7, new_conn_rate=1,
                            new_conn_burst=1, mtu=0, ttl=64, src_mac="02:00:00:00:00:01",
                            dst_mac="02:00:00:00:00:02")  # fmt: skip
    assert len(raw) == 52  # 36 + the 16-byte mux_addr6
    assert len(layout.flow_key6("2001:2::1", "2001:2::2", 1, 2, 6)) == 40
    assert len(layout.vip6_key("2001:2::1", 80, 6)) == 20
    c = layout.constants()
    assert c["STAT_GLOBAL_BASE"] == c["MAX_VIPS"] + c["MAX_BACKENDS"]
    assert c["STAT_SLOTS"] == c["STAT_GLOBAL_BASE"] + c["STAT_GLOBAL_COUNT"]


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        (
            "mux: {address: 10.0.0.1}\n",
            r"f\.yaml:1: mux\.address: MUX address 10\.0\.0\.1 is outside",
        ),
        (
            "mux:\n  address: 198.18.10.1\n  ring_size: 65536\n",
            r":3: mux\.ring_size: ring_size 65536 is not prime",
        ),
        (
            "mux: {address: 198.18.10.1}\nvips:\n"
            "  - {address: 198.19.0.1, port: 80, backends: [8.8.8.8]}\n",
            r":3: vips\[0\]\.backends: backend 8\.8\.8\.8 is outside",
        ),
        ("mux: {address: 198.18.10.1, mac: nope}\n", r"mux\.mac: 'nope' is not a MAC"),
        ("mux: {address: 198.18.10.1, colour: red}\n", r"mux\.colour: Extra inputs"),
        ("mux: [\n", r"not valid YAML"),
    ],
)
def test_bad_config_files_name_file_line_and_field(tmp_path: Path, text: str, expect: str) -> None:
    f = tmp_path / "f.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=expect):
        load_mux_config(f)


def test_the_shipped_example_config_loads() -> None:
    cfg = load_mux_config(Path(__file__).parents[2] / "examples" / "mux-demo.yaml")
    assert cfg.vips
