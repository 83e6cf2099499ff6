"""The ``encapsulations`` target capability (its default and its check), the foreign packets
forged in each encapsulation, and RB-4 judged per encapsulation (GUE as Katran sends it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.l2 import Ether

from dsrconform.errors import ConfigError
from dsrconform.invariants import Status, run_checker
from dsrconform.invariants.robust import check_decap_only_from_muxes
from dsrconform.observe.pcap import frame_headers
from dsrconform.observe.taps import GUE_PORT
from dsrconform.target import DEFAULT_ENCAPSULATIONS, target_encapsulations
from dsrconform.targetcli import check_target
from dsrconform.targets.null import NullTarget
from dsrconform.traffic import crafted
from katran_target.target import KatranTarget
from reference_impl.target import ReferenceTarget
from tests.unit import observations_builder as ob
from tests.unit.gue_packets import gue_record
from tests.unit.observations_builder import CLIENT, SERVER_ADDR, WEB, Run, tcp
from tests.unit.test_target_sdk import Good

HERE = __name__
SRV = SERVER_ADDR["server1"]


# --- the capability ----------------------------------------------------------------------------


class GueOnly(Good):
    encapsulations = ("gue",)


class BadEncapsulations(Good):
    encapsulations = ("vxlan",)


class EncapsulationsAsStr(Good):
    encapsulations = "gue"


def test_a_target_that_declares_nothing_is_taken_to_use_ipip() -> None:
    assert not hasattr(Good(), "encapsulations")
    assert target_encapsulations(Good()) == DEFAULT_ENCAPSULATIONS == ("ipip",)
    assert target_encapsulations(GueOnly()) == ("gue",)


def test_each_shipped_target_declares_its_encapsulations() -> None:
    assert target_encapsulations(KatranTarget()) == ("gue",)
    assert target_encapsulations(KatranTarget(options={"encap": "ipip"})) == ("ipip",)
    assert target_encapsulations(ReferenceTarget()) == ("ipip",)
    assert target_encapsulations(NullTarget()) == ("ipip", "gue")


def test_an_invalid_declaration_is_a_config_error_and_fails_target_check() -> None:
    with pytest.raises(ConfigError, match=r"encapsulations \('vxlan',\): unknown \['vxlan'\]"):
        target_encapsulations(BadEncapsulations())
    with pytest.raises(ConfigError, match="a non-empty tuple expected"):
        target_encapsulations(EncapsulationsAsStr())
    got = {c.what: (c.outcome, c.detail) for c in check_target(f"{HERE}:BadEncapsulations")}
    assert got["capability encapsulations"] == ("FAIL", "('vxlan',): unknown ['vxlan']")
    got = {c.what: (c.outcome, c.detail) for c in check_target(f"{HERE}:GueOnly")}
    assert got["capability encapsulations"] == ("PASS", "gue")
    got = {c.what: (c.outcome, c.detail) for c in check_target(f"{HERE}:Good")}
    assert got["optional capability encapsulations"] == ("INFO", "not declared: ipip assumed")


# --- the foreign packets -----------------------------------------------------------------------


def test_foreign_gue_is_ipv4_in_udp_to_the_gue_port_from_the_client() -> None:
    flow = crafted.Flow(CLIENT, 41000, WEB, 80)
    (pkt,) = crafted.foreign_packets("gue", flow, outer_src=CLIENT, server=SRV)
    heads = frame_headers(bytes(Ether(type=0x0800)) + bytes(pkt))
    outer, inner = heads[0], heads[1]
    assert (outer.layer, outer.proto, outer.src, outer.dst, outer.dport) == (
        "outer",
        17,
        CLIENT,
        SRV,
        GUE_PORT,
    )
    assert outer.sport not in (0, GUE_PORT, flow.client_port)
    assert (inner.layer, inner.proto, inner.src, inner.dst, inner.sport, inner.dport) == (
        "inner",
        6,
        CLIENT,
        WEB,
        41000,
        80,
    )
    (ipip,) = crafted.foreign_packets("ipip", flow, outer_src=CLIENT, server=SRV)
    assert ipip.proto == 4
    with pytest.raises(ValueError, match="'vxlan' is not 'ipip' or 'gue'"):
        crafted.foreign_packets("vxlan", flow, outer_src=CLIENT, server=SRV)


# --- RB-4 per encapsulation --------------------------------------------------------------------


@pytest.fixture
def gue(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The MUXes' own traffic GUE-encapsulated, as Katran's."""
    monkeypatch.setattr(ob, "ENCAPSULATION", "gue")
    yield


def gue_run(*, foreign: bool, answered: bool, sent: tuple[str, ...] = ("gue",)) -> Run:
    """A MUX connection at 10..20 (encapsulated as ``ob.ENCAPSULATION``), the harness's foreign
    windows at 29..31 (one per ``sent``), a foreign GUE packet at 30 if ``foreign``."""
    run = Run()
    run.conn(1, 10.0, end_t=20.0)
    for enc in sent:
        run.fault("crafted", 29.0, 31.0, detail={"encapsulation": enc})
    inner = tcp("198.18.1.3", 41000, WEB, 80)
    if foreign:
        run.add(gue_record("server1-in", CLIENT, SRV, inner, 30.0, 30.0, packets=1))
    if answered:
        reply = tcp(WEB, 80, "198.18.1.3", 41000)
        run.add(ob.record("server1-out", reply, 30.001, 30.001, packets=1, tcp_flags=0x12))
    return run


def test_rb4_foreign_gue_unanswered_passes_answered_fails(gue: None) -> None:
    v = run_checker(check_decap_only_from_muxes, gue_run(foreign=True, answered=False).obs())
    assert v.status == Status.PASS, v.message
    assert v.measured["foreign_gue_records"] == 1 and "(GUE)" in v.message
    assert v.measured["mux_flow_answered_encapsulations"] == "gue"
    v = run_checker(check_decap_only_from_muxes, gue_run(foreign=True, answered=True).obs())
    assert v.status == Status.FAIL
    (e,) = v.evidence
    assert e.message.startswith("server1 accepted GUE-encapsulated packets from 198.18.1.2")


def test_rb4_unknown_when_gue_was_sent_but_none_reached_a_server(gue: None) -> None:
    v = run_checker(check_decap_only_from_muxes, gue_run(foreign=False, answered=False).obs())
    assert v.status == Status.UNKNOWN
    assert v.missing == ["a foreign GUE packet (sent by the harness) reaching a server"]


def test_rb4_unknown_for_an_encapsulation_the_muxes_were_not_seen_answered_in() -> None:
    """The MUXes' traffic is IPIP here: an unanswered foreign GUE packet says nothing."""
    v = run_checker(check_decap_only_from_muxes, gue_run(foreign=True, answered=False).obs())
    assert v.status == Status.UNKNOWN
    assert v.missing == [
        "an answer to a packet in GUE that a MUX sent a server: the servers were never seen "
        "decapsulating the stack's own GUE traffic, so an unanswered foreign one says nothing"
    ]


def test_rb4_judges_each_encapsulation_sent(gue: None) -> None:
    """Both sent (the null target's declaration), only GUE reached a server: UNKNOWN naming
    IPIP, whatever GUE showed."""
    run = gue_run(foreign=True, answered=False, sent=("ipip", "gue"))
    v = run_checker(check_decap_only_from_muxes, run.obs())
    assert v.status == Status.UNKNOWN
    assert "a foreign IPIP packet (sent by the harness) reaching a server" in v.missing
    assert v.measured["foreign_sent_encapsulations"] == "gue,ipip"
    assert (v.measured["foreign_gue_records"], v.measured["foreign_ipip_records"]) == (1, 0)
