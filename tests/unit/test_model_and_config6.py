"""IPv6 in the MUX's pure-Python parts: flow_hash6, the model's IPv6 decisions and outer headers,
and the config's rules for IPv6 VIPs, backends and ``address6`` (no privileges)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from reference_impl import layout
from reference_impl.config import MuxConfig, load_mux_config
from reference_impl.flowhash import (
    DEFAULT_SEED,
    flow_hash,
    flow_hash6,
    flow_hash_str,
    flow_label,
    fmix32,
    ring_slot,
)
from reference_impl.model import MuxModel

CLIENT6, VIP6 = "2001:2:0:1::2", "2001:2:0:100::10"
KNOWN_FLOW_HASH6 = 0x7736D440
BACKENDS6 = ["2001:2:0:20::1", "2001:2:0:20::2", "2001:2:0:20::3"]
CFG6 = {
    "mux": {"address": "198.18.10.1", "address6": "2001:2:0:10::2", "ring_size": 4099},
    "vips": [
        {"address": VIP6, "port": 80, "backends": BACKENDS6},
        {"address": "198.19.0.13", "port": 80, "backends": BACKENDS6},
        {"address": "198.19.0.10", "port": 80, "backends": ["198.18.20.1", "198.18.20.2"]},
    ],
}


def _by_hand(saddr: int, daddr: int, sport: int, dport: int, proto: int, seed: int) -> int:
    """flow_hash6 spelled out as dsr_helpers.h does it: eight address words, then ports, proto."""
    words = [(a >> (96 - 32 * i)) & 0xFFFFFFFF for a in (saddr, daddr) for i in range(4)]
    h = seed
    for w in words:
        h = fmix32(h ^ w)
    return fmix32(fmix32(h ^ ((sport << 16) | dport)) ^ proto)


def test_flow_hash6_known_answers() -> None:
    # Pinned: the BPF twin is held to the same bits by the MUX packet tests (outer flow label
    # and Maglev choice against the model).
    assert flow_hash_str(CLIENT6, VIP6, 1000, 80, 6) == KNOWN_FLOW_HASH6
    assert flow_hash6(0, 0, 0, 0, 0, 0) == 0
    assert flow_hash6(2**128 - 1, 1, 65535, 1, 17, 0xFFFFFFFF) == 0x97387F2A
    s, d = int.from_bytes(layout.ip6_be(CLIENT6), "big"), int.from_bytes(layout.ip6_be(VIP6), "big")
    assert flow_hash6(s, d, 1000, 80, 6, DEFAULT_SEED) == _by_hand(s, d, 1000, 80, 6, DEFAULT_SEED)


@pytest.mark.parametrize("word", range(4))
def test_flow_hash6_uses_every_word_of_both_addresses(word: int) -> None:
    s = int.from_bytes(layout.ip6_be(CLIENT6), "big")
    d = int.from_bytes(layout.ip6_be(VIP6), "big")
    base = flow_hash6(s, d, 1000, 80, 6, DEFAULT_SEED)
    bit = 1 << (96 - 32 * word)  # the lowest bit of this 32-bit word
    assert flow_hash6(s ^ bit, d, 1000, 80, 6, DEFAULT_SEED) != base
    assert flow_hash6(s, d ^ bit, 1000, 80, 6, DEFAULT_SEED) != base


def test_flow_hash_str_dispatches_by_family_and_refuses_mixed() -> None:
    assert flow_hash_str("198.18.1.1", "198.19.0.10", 1, 2, 6) == flow_hash(
        0xC6120101, 0xC613000A, 1, 2, 6, DEFAULT_SEED
    )
    with pytest.raises(ValueError, match="different address families"):
        flow_hash_str("198.18.1.1", VIP6, 1, 2, 6)


def test_model_decides_ipv6_flows_by_flow_hash6_and_pins_them() -> None:
    m = MuxModel(MuxConfig.model_validate(CFG6))
    flow = (CLIENT6, VIP6, 1000, 80, 6)
    h = flow_hash6(
        int.from_bytes(layout.ip6_be(CLIENT6), "big"),
        int.from_bytes(layout.ip6_be(VIP6), "big"),
        1000,
        80,
        6,
        DEFAULT_SEED,
    )
    first = m.packet(flow, tcp_flags="S")
    assert first.backend == m.tables[(VIP6, 80, 6)][ring_slot(h, 4099)]
    assert first.backend in BACKENDS6 and flow not in m.conn, "a bare SYN inserted"
    m.packet(flow, tcp_flags="A")
    m.set_backends((VIP6, 80, 6), [*BACKENDS6, "2001:2:0:20::9"])
    assert m.packet(flow).from_conn_table and m.packet(flow).backend == first.backend
    assert not m.icmp_error((CLIENT6, VIP6, 1001, 80, 6)).from_conn_table


def test_model_names_the_outer_header_and_flow_label() -> None:
    m = MuxModel(MuxConfig.model_validate(CFG6))
    f6 = (CLIENT6, VIP6, 1000, 80, 6)
    f46 = ("198.18.1.1", "198.19.0.13", 1000, 80, 6)
    f4 = ("198.18.1.1", "198.19.0.10", 1000, 80, 6)
    e6 = m.encapsulation(f6, BACKENDS6[0])
    assert (e6.outer, e6.flow_label) == ("ip6ip6", KNOWN_FLOW_HASH6 & 0xFFFFF)
    e46 = m.encapsulation(f46, BACKENDS6[0])
    assert (e46.outer, e46.flow_label) == ("ipip6", flow_label(flow_hash_str(*f46)))
    assert m.encapsulation(f4, "198.18.20.1").outer == "ipip"
    assert m.encapsulation(f4, "198.18.20.1").flow_label is None


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({"vips": [{"address": "2001:db8::1", "port": 80}]}, r"outside the lab range 2001:2::/48"),
        (
            {"vips": [{"address": VIP6, "port": 80, "backends": ["198.18.20.1"]}]},
            r"IPv6 VIP .* with IPv4 backends",
        ),
        (
            {
                "vips": [
                    {
                        "address": "198.19.0.1",
                        "port": 80,
                        "backends": ["198.18.20.1", "2001:2:0:20::1"],
                    }
                ]
            },
            r"both address families",
        ),
        (
            {
                "vips": [{"address": VIP6, "port": 80, "backends": ["2001:2:0:20::1"]}],
                "mux": {"address": "198.18.10.1"},
            },
            r"mux\.address6 is not set",
        ),
        ({"mux": {"address": "198.18.10.1", "address6": "198.18.10.2"}}, r"not an IPv6 address"),
        (
            {"mux": {"address": "198.18.10.1", "address6": "2001:db8::2"}},
            r"outside the lab range 2001:2::/48",
        ),
        ({"mux": {"address": "2001:2:0:10::2"}}, r"not an IPv4 address"),
    ],
)
def test_config_rejects_bad_ipv6_settings(change: dict[str, object], expect: str) -> None:
    with pytest.raises(ValidationError, match=expect):
        MuxConfig.model_validate({**CFG6, **change})


def test_config_normalises_ipv6_addresses_and_reports_the_family() -> None:
    cfg = MuxConfig.model_validate(
        {
            "mux": {"address": "198.18.10.1", "address6": "2001:2:0:10:0:0:0:2"},
            "vips": [{"address": "2001:0002:0:100::10", "port": 80, "backends": BACKENDS6}],
        }
    )
    assert cfg.mux.address6 == "2001:2:0:10::2"
    assert cfg.vips[0].address == VIP6 and cfg.vips[0].family == "ipv6"


def test_the_shipped_ipv6_example_config_loads() -> None:
    cfg = load_mux_config(Path(__file__).parents[2] / "examples" / "mux-demo6.yaml")
    assert {v.family for v in cfg.vips} == {"ipv4", "ipv6"}
    assert cfg.mux.address6
