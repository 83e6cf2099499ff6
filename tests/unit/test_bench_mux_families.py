"""``dsrconform bench mux`` per address family, without privileges: the IPv6 frames, which
families a target is measured in, what its MUX is given, and the shape of the output."""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from scapy.layers.inet import TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from dsrconform import cli
from dsrconform.bench import mux, muxframes, muxreport
from dsrconform.errors import ConfigError
from dsrconform.target import BenchVip, Family, MuxBench, load_target
from katran_target.target import _bench_gue_source

HERE = "tests.unit.test_bench_mux_families"
GEN_MAC, DUT_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"


def _tcp_checksum_ok(frame: bytes) -> bool:
    pkt = Ether(frame)
    sent = pkt[TCP].chksum
    del pkt[TCP].chksum
    return bool(Ether(bytes(pkt))[TCP].chksum == sent)


@pytest.mark.parametrize(("mode", "flags"), [("syn", "S"), ("established", "A")])
def test_ipv6_template_is_a_tcp_frame_to_the_ipv6_vip(mode: muxframes.Mode, flags: str) -> None:
    frame = muxframes.build_template(DUT_MAC, GEN_MAC, mux.VIP6, mode)
    assert len(frame) == muxframes.FRAME_LEN6 == 74
    pkt = Ether(frame)
    assert (pkt.dst, pkt.src, pkt.type) == (DUT_MAC, GEN_MAC, 0x86DD)
    ip6 = pkt[IPv6]
    assert (ip6.dst, ip6.src, ip6.nh, ip6.plen, ip6.hlim) == (mux.VIP6.addr, "::", 6, 20, 64)
    assert (ip6.tc, ip6.fl) == (0, 0)
    assert (pkt[TCP].dport, pkt[TCP].sport, str(pkt[TCP].flags)) == (80, 0, flags)
    assert _tcp_checksum_ok(frame), "the template's checksum must hold for a zero source"


def test_ipv4_template_is_unchanged_by_the_family_split() -> None:
    frame = muxframes.build_template(DUT_MAC, GEN_MAC, mux.VIP, "syn")
    assert len(frame) == mux.FRAME_LEN == 64
    assert frame[12:14] == b"\x08\x00" and frame[30:34] == bytes([198, 19, 0, 10])


def test_ipv6_syn_pool_is_a_new_client_per_frame_with_valid_checksums() -> None:
    template = muxframes.build_template(DUT_MAC, GEN_MAC, mux.VIP6, "syn")
    pool = muxframes.af_packet_frames(template, "syn")
    n = len(pool) // muxframes.FRAME_LEN6
    assert n == muxframes.AF_PACKET_SYN_FLOWS and len(pool) == n * muxframes.FRAME_LEN6
    sources = {pool[i * 74 + 22 : i * 74 + 38] for i in range(n)}
    assert len(sources) == n, "syn mode must send a new flow per frame"
    clients = ipaddress.IPv6Network("2001:2:0:1::/64")
    for i in (0, 1, n - 1):
        pkt = Ether(pool[i * 74 : (i + 1) * 74])
        assert ipaddress.IPv6Address(pkt[IPv6].src) in clients
        assert (pkt[IPv6].src, pkt[TCP].sport) == muxframes.flow_source6(i)
        assert _tcp_checksum_ok(pool[i * 74 : (i + 1) * 74]), f"flow {i}: bad TCP checksum"
    assert muxframes.flow_source6(0) == ("2001:2:0:1::2", 1024)


def test_ipv6_established_pool_repeats_the_established_flows() -> None:
    template = muxframes.build_template(DUT_MAC, GEN_MAC, mux.VIP6, "established")
    pool = muxframes.af_packet_frames(template, "established")
    assert len(pool) == muxframes.ESTABLISHED_FLOWS * 74
    last = pool[-74:]
    assert Ether(last)[IPv6].src == "2001:2:0:1::401" and _tcp_checksum_ok(last)


def test_bench_addresses_follow_the_lab_address_plan() -> None:
    six = mux.BENCH_FAMILIES["ipv6"]
    assert six.vip == BenchVip("2001:2:0:100::10", 80, 6)
    assert six.backends == ("2001:2:0:20::1", "2001:2:0:20::2", "2001:2:0:20::3")
    assert six.mux_addr == "2001:2:0:10::1" and six.frame_bytes == 74
    assert (
        mux.BENCH_FAMILIES["ipv4"].vip == mux.VIP and mux.BENCH_FAMILIES["ipv4"].frame_bytes == 64
    )


@pytest.mark.parametrize(
    ("declared", "requested", "addr6", "run", "skipped"),
    [
        (("ipv4", "ipv6"), None, True, ["ipv4", "ipv6"], []),
        (("ipv4",), None, True, ["ipv4"], []),  # the default: no skip to report
        (("ipv4",), ("ipv4", "ipv6"), True, ["ipv4"], ["ipv6"]),
        (("ipv4",), ("ipv6",), True, [], ["ipv6"]),
        (("ipv6", "ipv4"), ("ipv6",), True, ["ipv6"], []),
        (("ipv4", "ipv6"), None, False, ["ipv4"], ["ipv6"]),
    ],
)
def test_bench_families_runs_the_declared_ones_and_says_why_not_the_others(
    declared: tuple[str, ...],
    requested: tuple[str, ...] | None,
    addr6: bool,
    run: list[str],
    skipped: list[str],
) -> None:
    got_run, got_skipped = mux.bench_families(declared, requested, takes_addr6=addr6)
    assert got_run == run and list(got_skipped) == skipped
    for why in got_skipped.values():
        assert "not measured" in why


class _OldStyleBench:
    """An adapter written before mux_addr6: it keeps working for IPv4."""

    def mux_for_bench(
        self,
        *,
        netns: str,
        ifname: str,
        mux_addr: str,
        next_hop_mac: str,
        vip: BenchVip,
        backends: Sequence[str],
    ) -> AbstractContextManager[None]:
        raise AssertionError("not attached in these tests")


@pytest.mark.parametrize("name", ["reference", "katran", "null"])
def test_shipped_adapters_take_mux_addr6(name: str) -> None:
    target = load_target(name)
    assert isinstance(target, MuxBench) and mux.takes_mux_addr6(target)
    assert "ipv6" in target.families


def test_an_adapter_without_mux_addr6_is_recognised() -> None:
    assert not mux.takes_mux_addr6(_OldStyleBench())  # type: ignore[arg-type]


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    @contextmanager
    def mux_for_bench(self, **kwargs: Any) -> Iterator[None]:
        self.calls.append(kwargs)
        yield


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_the_mux_is_given_the_family_s_vip_and_mux_addr6_only_for_ipv6(family: Family) -> None:
    rec = _Recorder()
    lab = mux._Lab("dsrc-bgen-x", "dsrc-bdut-x", 1, 2, GEN_MAC, DUT_MAC)
    with mux._mux_factory(rec, lab, mux.BENCH_FAMILIES[family])():  # type: ignore[arg-type]
        pass
    (call,) = rec.calls
    bench = mux.BENCH_FAMILIES[family]
    assert call["vip"] == bench.vip and call["backends"] == list(bench.backends)
    assert call["mux_addr"] == mux.MUX_ADDR and call["next_hop_mac"] == GEN_MAC
    if family == "ipv6":
        assert call["mux_addr6"] == mux.MUX_ADDR6
    else:
        assert "mux_addr6" not in call, "an adapter without mux_addr6 must keep working for IPv4"


def test_ipv6_refuses_the_ipv4_only_live_frames_generator() -> None:
    with pytest.raises(ConfigError, match=r"livegen writes IPv4 headers.*--generator auto"):
        mux.check_generator("live-frames", "ipv6")
    mux.check_generator("live-frames", "ipv4")
    mux.check_generator("auto", "ipv6")
    mux.check_generator("af-packet", "ipv6")


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_case_result_names_its_ignored_frames_by_family(family: Family) -> None:
    r = mux.CaseResult("mux-syn", "mux", "syn", 10, 8, 800, 1.0, ignored=3, family=family)
    d = r.as_dict()
    assert d[f"ignored_non_{family}"] == 3 and "ignored" not in d and d["family"] == family
    combined = mux.CaseResult.combine([r, r])
    assert (combined.ignored, combined.family) == (6, family)


def _summary(target: str, family: str) -> dict[str, Any]:
    return {"target": target, "family": family}


def test_json_keeps_the_one_summary_shape_for_one_target_in_one_family() -> None:
    one = {"reference": {"ipv4": _summary("reference", "ipv4")}}
    assert muxreport.json_output(one, {"reference": {}}) == _summary("reference", "ipv4")  # type: ignore[arg-type]
    both = {
        "reference": {f: _summary("reference", f) for f in ("ipv4", "ipv6")},
        "katran": {"ipv4": _summary("katran", "ipv4")},
    }
    out = muxreport.json_output(both, {"katran": {"ipv6": "why"}})  # type: ignore[arg-type]
    assert out == {
        "targets": {
            "reference": {"families": both["reference"], "skipped": {}},
            "katran": {"families": both["katran"], "skipped": {"ipv6": "why"}},
        }
    }
    skipped_only = muxreport.json_output({"t": {}}, {"t": {"ipv6": "why"}})
    assert skipped_only == {"targets": {"t": {"families": {}, "skipped": {"ipv6": "why"}}}}


class Ipv4OnlyBench:
    """A target serving IPv4 only, with the MuxBench capability (the template's case)."""

    name = "v4only"
    modes = ("encap",)
    families = ("ipv4",)

    def __init__(self, mutant: str | None = None, options: dict[str, str] | None = None) -> None:
        self.mutant = mutant

    def mutants(self) -> list[Any]:
        return []

    def deploy(self, lab: Any) -> Any:
        raise AssertionError("not deployed here")

    @contextmanager
    def mux_for_bench(self, **kwargs: Any) -> Iterator[None]:
        raise AssertionError("nothing may run for a skipped family")
        yield


def test_ipv6_of_an_ipv4_only_target_is_reported_skipped_not_an_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    monkeypatch.setattr(muxreport, "run_bench", lambda *a, **k: ran.append(k["family"]))
    assert cli.main(["bench", "mux", "--target", f"{HERE}:Ipv4OnlyBench", "--family", "ipv6"]) == 0
    out = capsys.readouterr().out
    assert ran == []
    assert "ipv6 skipped: the target declares families ipv4: ipv6 not measured" in out


def test_family_option_is_parsed_and_checked() -> None:
    args = cli.build_parser().parse_args(["bench", "mux", "--family", "ipv6,ipv4"])
    assert args.family == ("ipv6", "ipv4")
    assert cli.build_parser().parse_args(["bench", "mux"]).family is None
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["bench", "mux", "--family", "ipv5"])


def test_main_runs_each_declared_family_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[tuple[str, str]] = []

    def fake(name: str, *a: Any, family: str, **k: Any) -> dict[str, Any]:
        ran.append((name, family))
        return _summary(name, family)

    monkeypatch.setattr(muxreport, "run_bench", fake)
    args = argparse.Namespace(target="reference,null", family=None, json=True)
    assert muxreport.main(args) == 0
    assert ran == [("reference", "ipv4"), ("reference", "ipv6"), ("null", "ipv4"), ("null", "ipv6")]


def test_katran_bench_gue_source_follows_the_backends_family() -> None:
    v6 = ["2001:2:0:20::1"]
    assert _bench_gue_source("gue", ["198.18.20.1"], "198.18.10.1", None) == "198.18.10.1"
    assert _bench_gue_source("gue", v6, "198.18.10.1", "2001:2:0:10::1") == "2001:2:0:10::1"
    assert _bench_gue_source("ipip", v6, "198.18.10.1", "2001:2:0:10::1") is None
    with pytest.raises(ConfigError, match="need mux_addr6"):
        _bench_gue_source("gue", v6, "198.18.10.1", None)


def test_the_table_names_the_family_and_shows_the_ipv6_vip_verbatim(
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = {"pps": 5e5, "delivered_fraction": 1.0}
    summary = {
        "family": "ipv6",
        "target": "reference",
        "generator": "af-packet",
        "mutant": None,
        "dut": "target",
        "frame_bytes": 74,
        "vip": {"addr": mux.VIP6.addr},
        "cases": {f"{d}-{m}": case for d, m in mux.CASES},
        "ratios": {"syn": 1.0, "established": 0.9},
        "mux_extra_ns_per_packet": {"syn": 0.0, "established": 222.0},
        "target_ratio": 0.8,
        "meets_target": True,
        "warnings": [],
    }
    muxreport._render(summary)
    out = " ".join(capsys.readouterr().out.split())
    assert "MUX throughput (IPv6): target reference" in out
    assert "2001:2:0:100::10" in out, "rich must not read ':100:' as an emoji"
    assert "+222" in out
