"""``dsrconform bench traffic``: its pure parts (rates from counter samples, trafgen's frame,
stream outcomes, the synthetic run the checkers are timed on)."""

from __future__ import annotations

import argparse

import pytest

from dsrconform.bench import traffic as bt
from dsrconform.cli import build_parser
from dsrconform.invariants.verdict import run_checker
from tests.unit.observations_builder import Run


def test_steady_rate_skips_start_up_and_the_idle_tail() -> None:
    # Idle for 0.1 s, then 1000 packets/s for 1 s (100 per 0.1 s), then idle again.
    samples = [(0.0, 0), (0.1, 0)]
    samples += [(0.1 + 0.1 * k, 100 * k) for k in range(1, 11)]
    samples += [(1.2, 1000), (1.3, 1000), (1.4, 1000)]
    assert bt.steady_rate(samples, warmup=0.2) == pytest.approx(1000)


def test_steady_rate_ignores_a_slow_start() -> None:
    # 10 packets in the first 0.2 s (start-up), then 1000 packets/s.
    samples = [(0.0, 0), (0.1, 5), (0.2, 10)] + [
        (0.2 + 0.1 * k, 10 + 100 * k) for k in range(1, 11)
    ]
    assert bt.steady_rate(samples, warmup=0.2) == pytest.approx(1000)


def test_steady_rate_short_or_flat_runs() -> None:
    assert bt.steady_rate([]) is None
    assert bt.steady_rate([(0.0, 5), (1.0, 5)]) is None
    # Too short for the warm-up: the whole growth is used.
    assert bt.steady_rate([(0.0, 0), (0.1, 100), (0.2, 200)], warmup=1.0) == pytest.approx(1000)


def test_trafgen_config_describes_the_flood_frame() -> None:
    cfg = bt.trafgen_config("02:00:00:00:00:02", "02:00:00:00:00:01", "198.19.0.10", 80,
                            "198.18.200.0/21")  # fmt: skip
    assert "eth(da=02:00:00:00:00:02, sa=02:00:00:00:00:01, type=0x0800)" in cfg
    # 198.18.200.0/21: the last two bytes count from 200*256 to 207*256+255.
    assert "sa=198.18.200.0, sa[2:2]=dinc(51200, 53247), da=198.19.0.10" in cfg
    assert "len=40" in cfg and "df" in cfg and "ttl=64" in cfg
    assert "tcp(sp=dinc(1024, 65535), dp=80, seq=1, aseq=0, doff=5, syn, win=65535)" in cfg
    # 10 bytes of padding to 64, the first word cancelling trafgen's extra pseudo-header length.
    assert cfg.strip().endswith("c16(0xfff5), fill(0x00, 8)\n}")
    assert (0xFFF5 + 10) == 0xFFFF, "one's-complement zero"
    with pytest.raises(Exception, match="at most a /16"):
        bt.trafgen_config("02:00:00:00:00:02", "02:00:00:00:00:01", "198.19.0.10", 80,
                          "198.18.0.0/15")  # fmt: skip


def test_parse_trafgen_packets() -> None:
    out = (
        "Running! Hang up with ^C!\n\n     1631232 packets outgoing\n   104398848 bytes outgoing\n"
    )
    assert bt.parse_trafgen_packets(out) == 1631232
    assert bt.parse_trafgen_packets("trafgen: invalid option") is None


def test_flood_order_alternates_abba() -> None:
    assert bt.flood_order(1) == ["ours", "trafgen"]
    assert bt.flood_order(2) == ["ours", "trafgen", "trafgen", "ours"]


def test_flood_summary_ratio_and_malformed_counts() -> None:
    def run(side: str, pps: float | None, bad: int = 0) -> dict:
        return {"side": side, "steady_pps": pps, "bad_checksum": bad, "other_ipv4": 0}

    s = bt.flood_summary([run("ours", 4e6), run("trafgen", 5e5, bad=3), run("trafgen", 3e5),
                          run("ours", 2e6)], 1.0, 2)  # fmt: skip
    assert s["ours_pps"] == 3e6 and s["trafgen_pps"] == 4e5
    assert s["ratio"] == pytest.approx(7.5)
    assert (s["ours_malformed"], s["trafgen_malformed"]) == (0, 3)
    none = bt.flood_summary([run("ours", 1e6)], 1.0, 1, trafgen_missing=True)
    assert none["ratio"] is None and "netsniff-ng" in none["trafgen_missing"]


def test_peak_concurrency() -> None:
    assert bt.peak_concurrency([]) == 0
    assert bt.peak_concurrency([(0, 10), (1, 2), (2, 3), (5, None)]) == 2
    assert bt.peak_concurrency([(0, 10), (1, 4), (2, 3), (5, None)]) == 3
    assert bt.peak_concurrency([(0, 1), (1, 2)]) == 1, "one ends as the next starts"


def test_stream_outcome_counts_verified_streams_and_failures() -> None:
    r = Run()
    for i in range(5):
        r.conn(i, 1.0 + i * 0.1, end_t=10.0, wire=False)
    r.conn(5, 1.0, end_t=5.0, end="reset", wire=False)
    r.conn(6, 1.0, end_t=5.0, end="short", wire=False)
    r.conn(7, 1.0, end_t=5.0, end="integrity", wire=False)
    r.conn(8, 1.0, end_t=5.0, end="deadline", wire=False)
    r.conn(9, 1.0, end="connect-timeout", wire=False)
    out = bt.stream_outcome(r.obs(taps=False).history, 10)  # type: ignore[arg-type]
    assert out["ok"] == 5
    assert out["failed"] == {"reset": 1, "short": 1, "integrity_error": 1, "deadline": 1,
                             "timeout": 1}  # fmt: skip
    assert out["peak_concurrent"] == 9
    assert not out["all_verified"]
    good = Run()
    for i in range(3):
        good.conn(i, 1.0, end_t=2.0, wire=False)
    assert bt.stream_outcome(good.obs(taps=False).history, 3)["all_verified"]  # type: ignore[arg-type]
    assert not bt.stream_outcome(good.obs(taps=False).history, 4)["all_verified"]  # type: ignore[arg-type]


def test_largest_passing_stops_at_the_first_failure() -> None:
    levels = [
        {"n": 1, "ok": True},
        {"n": 2, "ok": True},
        {"n": 3, "ok": False},
        {"n": 4, "ok": True},
    ]
    assert bt.largest_passing(levels, "n", "ok") == 2
    assert bt.largest_passing([{"n": 1, "ok": False}], "n", "ok") is None
    assert bt.limit_found(levels[:3], "ok", 3), "N=3 failed: 2 is the limit"
    assert not bt.limit_found(levels[:2], "ok", 2), "every level passed: the limit is higher"
    assert bt._at_least({"n": 2, "limit_found": False}, "n") == ">=2"
    assert bt._at_least({"n": 2, "limit_found": True}, "n") == "2"


def test_checker_names_cover_rw_dp_af() -> None:
    names = bt.checker_names()
    ids = [i for i, _ in names]
    assert ids == [
        *(f"RW-{i}" for i in range(1, 9)),
        "DP-1",
        "DP-2",
        "AF-1",
        "AF-2",
        "AF-3",
        "AF-4",
    ]
    assert all(ref.startswith("dsrconform.invariants.") and ":check_" in ref for _, ref in names)


def test_synthetic_run_is_healthy_for_every_timed_checker() -> None:
    obs, built = bt.synthetic_observations(9000)
    assert built["tap_records"] >= 9000 - 6 and built["flows"] == 1500
    assert built["construction_s"] > 0
    assert obs.taps is not None and len(obs.taps) == built["tap_records"]
    # AF-3 wants 2000 new flows per service by default: this run is smaller.
    params = {"AF-3": {"min_samples": 100}}
    not_pass = {req: run_checker(ref, obs, params.get(req)) for req, ref in bt.checker_names()}
    bad = {req: (v.status, v.message) for req, v in not_pass.items() if not v.passed}
    assert not bad, f"a realistic healthy run must pass: {bad}"


def test_checker_totals() -> None:
    per = {"RW-1": {"seconds": 1.0}, "AF-1": {"seconds": 1.5}}
    t = bt.checker_totals(per, 500_000, 100_000)
    assert t["total_check_s"] == 2.5
    assert t["tap_records_per_s"] == 200_000
    assert t["seconds_per_million_tap_records"] == 5.0 and not t["meets_target"]


def test_cli_wires_bench_traffic() -> None:
    args = build_parser().parse_args(["bench", "traffic", "--quick", "--section", "checkers",
                                      "--json", "out.json"])  # fmt: skip
    assert isinstance(args, argparse.Namespace)
    assert args.handler is bt.main
    assert (args.quick, args.section, args.json) == (True, ["checkers"], "out.json")


def test_run_bench_rejects_an_unknown_section() -> None:
    with pytest.raises(Exception, match="unknown section"):
        bt.run_bench(["nope"])


def test_newconn_level_passed() -> None:
    good = {"failed": 0, "succeeded": 10_000, "achieved_rate": 1999.9}
    assert bt.newconn_level_passed(good, 2000, 10_000, 0)
    assert not bt.newconn_level_passed(good, 2000, 10_000, 1), "the generator failed"
    assert not bt.newconn_level_passed({**good, "failed": 1}, 2000, 10_000, 0)
    # Held back by its in-flight cap: 7715 attempted of 10000, even at a high opening rate.
    assert not bt.newconn_level_passed({**good, "succeeded": 7713}, 2000, 10_000, 0)
    assert not bt.newconn_level_passed({**good, "achieved_rate": 1500.0}, 2000, 10_000, 0)
    assert not bt.newconn_level_passed({"error": "no history"}, 2000, 10_000, 0)


def test_trafgen_frames_config_lists_each_frame_as_its_bytes() -> None:
    from dsrconform.errors import ConfigError
    from dsrconform.traffic.trafgen import frames_config

    cfg = frames_config(bytes(range(4)) + bytes([255, 254, 253, 252]), 4)
    assert cfg == "{0x00,0x01,0x02,0x03}\n{0xff,0xfe,0xfd,0xfc}\n"
    with pytest.raises(ConfigError, match="not a whole number of frames"):
        frames_config(bytes(6), 4)
