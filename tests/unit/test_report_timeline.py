"""The run timeline (dsrconform.report.timeline): series from synthetic observations, its SVG."""

from __future__ import annotations

import sys
import tracemalloc
import xml.etree.ElementTree as ET
from pathlib import Path
from types import FrameType
from typing import Any

import matplotlib as mpl
import pytest
from pydantic import ValidationError

from dsrconform.observe.history import (
    DatagramSent,
    FlowStart,
    History,
    HistoryHeader,
    Reset,
)
from dsrconform.observe.observations import Observations
from dsrconform.observe.taps import TapFlow, TapInfo, TapSet, TapSpan
from dsrconform.report import timeline as report_timeline
from dsrconform.report.timeline import (
    MAX_BINS,
    OTHER,
    Timeline,
    save_timeline,
    timeline_of,
    timeline_svg,
)
from tests.unit.observations_builder import CLIENT, WEB, Run, tap_info

SVG = "{http://www.w3.org/2000/svg}"


def bin_of(t: float, width: float = 0.5) -> int:
    return int(t // width)


def short_run() -> Run:
    """A run whose taps stopped at 20 s (the builder's stop at 1000 s would stretch it)."""
    run = Run()
    for name, info in run.taps.items():
        run.taps[name] = info.model_copy(update={"stopped": 20.0})
    return run


def typical() -> Observations:
    run = short_run()
    for i in range(12):
        t = 1.0 + i
        if i in (5, 6):
            run.conn(i, t, end="refused")
        else:
            run.conn(i, t, end_t=t + 6, server=f"server{1 + i % 3}")
    run.udp(100, 2.0, ["server1"] * 5)
    run.fault("mux-fail", 6.0, 8.0, target="mux1")
    run.fault("syn-flood", 10.0, 12.0, target="router", rate=5000.0)
    return run.obs()


def tap_set(records: dict[str, list[tuple[float, float, int]]]) -> TapSet:
    """Taps named by ``records``'s keys, each with (first, last, packets) records."""
    infos = [
        TapInfo(
            tap=name,
            node=name,
            ifname="eth0",
            link=f"link-{name}",
            direction="egress",
            started=0.0,
            stopped=10.0,
        )
        for name in records
    ]
    flows = [
        TapFlow(
            tap=name,
            proto=17,
            src=CLIENT,
            dst=WEB,
            sport=1000 + i,
            dport=7,
            packets=packets,
            bytes=packets * 64,
            first=first,
            last=last,
        )
        for name, recs in records.items()
        for i, (first, last, packets) in enumerate(recs)
    ]
    return TapSet.from_records([*infos, *flows])


# --- connections -----------------------------------------------------------------------------


def test_alive_rises_and_falls_as_connections_open_and_close() -> None:
    run = short_run()
    run.conn(0, 1.0, end_t=5.0)  # established 1.01, closed 5.0
    run.conn(1, 2.0, end_t=3.0)  # established 2.01, closed 3.0
    run.conn(2, 4.0)  # established 4.01, still open at the end
    run.conn(3, 8.0, end_t=8.6, end="reset")
    run.conn(4, 9.5, end="refused")  # never established; the history ends at 9.51
    obs = run.obs(taps=False)
    tl = timeline_of(obs)

    assert tl.origin == 0.0 and tl.bin_seconds == 0.5
    assert tl.alive[bin_of(0.5)] == 0
    assert tl.alive[bin_of(1.5)] == 1
    assert tl.alive[bin_of(2.5)] == 2
    assert tl.alive[bin_of(3.5)] == 1  # flow 1 closed at 3.0
    assert tl.alive[bin_of(4.5)] == 2  # flow 2 joined
    assert tl.alive[bin_of(6.0)] == 1  # flow 0 closed at 5.0
    assert tl.alive[bin_of(8.5)] == 2  # flow 3 open until its reset at 8.6
    assert tl.alive[bin_of(9.0)] == 1
    assert len(tl.t) == 20 and tl.alive[-1] == 1  # flow 2 never ended
    assert max(tl.alive) == 2

    # Where no event falls inside a bin, the count is the history's own alive_at.
    assert obs.history is not None
    flows = list(obs.history.flows.values())
    for i, start in enumerate(tl.t):
        mid = start + 0.25
        if not any(start <= e.t < start + 0.5 for fh in flows for e in fh.events):
            assert tl.alive[i] == sum(fh.alive_at(mid) for fh in flows), f"bin {i}"


def test_failed_attempts_lower_the_success_rate_of_their_bin() -> None:
    run = short_run()
    run.conn(0, 1.0, end_t=2.0)
    run.conn(1, 1.1, end="refused")
    run.conn(2, 1.2, end="connect-timeout")  # the timeout comes 3 s later: binned by its start
    run.conn(3, 3.0, end_t=4.0)
    run.records += [
        FlowStart(flow=4, t=5.0, proto="tcp", src=CLIENT, sport=4004, dst=WEB, dport=80),
        Reset(flow=4, t=5.1),  # reset before connecting: a failed attempt
        # No outcome: the history ended while it was connecting.
        FlowStart(flow=5, t=6.0, proto="tcp", src=CLIENT, sport=4005, dst=WEB, dport=80),
    ]
    tl = timeline_of(run.obs(taps=False))

    b = bin_of(1.0)
    assert (tl.new_ok[b], tl.new_failed[b]) == (1, 2)
    assert tl.success_rate[b] == pytest.approx(1 / 3)
    assert tl.success_rate[bin_of(3.0)] == 1.0
    assert (tl.new_ok[bin_of(5.0)], tl.new_failed[bin_of(5.0)]) == (0, 1)
    assert tl.success_rate[bin_of(5.0)] == 0.0
    assert tl.new_ok[bin_of(6.0)] + tl.new_failed[bin_of(6.0)] == 0
    assert tl.success_rate[bin_of(6.0)] is None
    assert tl.success_rate[bin_of(2.0)] is None  # no attempt in that bin
    assert sum(tl.new_ok) == 2 and sum(tl.new_failed) == 3


def test_udp_datagrams_count_answered_and_unanswered_apart_from_tcp() -> None:
    run = short_run()
    run.udp(0, 1.0, ["server1"] * 4, step=0.1)  # 4 answered datagrams in bin 2
    run.records.append(DatagramSent(flow=0, t=1.45, seq=4))  # never answered
    tl = timeline_of(run.obs(taps=False))

    b = bin_of(1.0)
    assert (tl.udp_answered[b], tl.udp_unanswered[b]) == (4, 1)
    assert tl.udp_answer_rate[b] == pytest.approx(0.8)
    assert sum(tl.new_ok) + sum(tl.new_failed) == 0  # datagrams are not connection attempts
    assert sum(tl.alive) == 0


# --- faults and links ------------------------------------------------------------------------


def test_fault_windows_are_relative_to_the_runs_start_and_sorted() -> None:
    run = Run()
    run.records[0] = HistoryHeader(node="client", t=1000.0, stall_threshold=0.5)
    run.conn(0, 1001.0, end_t=1010.0)
    run.fault("route-withdrawn", 1004.0, target="mux1")
    run.fault("mux-fail", 1003.0, 1005.5, target="mux1")
    tl = timeline_of(run.obs(taps=False))

    assert tl.origin == 1000.0
    assert tl.faults == [(3.0, 5.5, "mux-fail mux1"), (4.0, None, "route-withdrawn mux1")]
    assert tl.t[0] == 0.0 and tl.t[-1] == pytest.approx(10.0)


def test_link_pps_keeps_the_busiest_taps_and_sums_the_rest_into_other() -> None:
    taps = tap_set(
        {
            "a": [(0.0, 10.0, 1000)],  # 100 packets/s, spread over every bin
            "b": [(2.0, 2.0, 500), (3.2, 7.9, 300)],
            "c": [(1.0, 2.0, 40)],
            "d": [(5.0, 6.0, 30)],
            "e": [(9.9, 9.9, 7)],
        }
    )
    tl = timeline_of(Observations(taps=taps), max_links=2)

    assert list(tl.link_pps) == ["a", "b", OTHER]
    width = tl.bin_seconds
    totals = {name: sum(v) * width for name, v in tl.link_pps.items()}
    assert totals == pytest.approx({"a": 1000, "b": 800, OTHER: 77})
    assert tl.link_pps["a"][bin_of(4.0)] == pytest.approx(100.0)  # uniform spread
    assert tl.link_pps["b"][bin_of(2.0)] == pytest.approx(500 / width)  # an instant: one bin
    assert tl.link_pps[OTHER][bin_of(9.9)] == pytest.approx(7 / width)
    assert tl.alive == [] and tl.success_rate == []  # no history: empty, not zeros

    wide = timeline_of(Observations(taps=taps), max_links=8)
    assert list(wide.link_pps) == ["a", "b", "c", "d", "e"]


def test_link_pps_spreads_a_records_spans_within_their_own_periods() -> None:
    info = TapInfo(tap="m", node="m", ifname="eth0", link="l", direction="ingress", started=0.0)
    periods = (TapSpan(first=0.0, last=2.0, packets=20), TapSpan(first=7.0, last=9.0, packets=10))
    spanned = TapFlow(
        tap="m",
        proto=6,
        src=CLIENT,
        dst=WEB,
        sport=1,
        dport=80,
        packets=30,
        bytes=0,
        first=0.0,
        last=9.0,
        spans=periods,
    )
    tl = timeline_of(Observations(taps=TapSet.from_records([info, spanned])), bin_seconds=1.0)

    pps = tl.link_pps["m"]
    assert pps[:2] == pytest.approx([10.0, 10.0])  # 20 packets over 0..2 s
    assert pps[2:7] == [0.0] * 5  # between the periods: nothing (not the record's 3.3/s)
    assert pps[7:9] == pytest.approx([5.0, 5.0])
    assert sum(pps) == pytest.approx(30.0)


# --- missing data, bins, the model -----------------------------------------------------------


def test_missing_parts_give_empty_series_and_a_no_data_svg() -> None:
    tl = timeline_of(Observations())
    assert tl.empty and tl.t == [] and tl.alive == [] and tl.link_pps == {} and tl.faults == []
    svg = timeline_svg(tl)
    assert svg.startswith("<svg")
    assert "no data" in _texts(svg)  # (parsed as XML)

    history_only = timeline_of(Observations(history=History()))
    assert history_only.empty  # a history without flows has nothing to bin

    run = short_run()
    run.conn(0, 1.0, end_t=2.0)
    no_taps = timeline_of(run.obs(taps=False))
    assert no_taps.link_pps == {} and len(no_taps.alive) == len(no_taps.t) > 0


def test_long_runs_get_wider_bins_not_more_than_max_bins() -> None:
    taps = tap_set({"a": [(0.0, 1.0, 10), (1_000_000.0, 1_000_000.0, 5)]})
    tl = timeline_of(Observations(taps=taps), bin_seconds=0.5)
    assert len(tl.t) <= MAX_BINS + 1
    assert tl.bin_seconds > 0.5 and (tl.bin_seconds / 0.5).is_integer()
    assert sum(tl.link_pps["a"]) * tl.bin_seconds == pytest.approx(15)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="bin_seconds"):
        timeline_of(Observations(), bin_seconds=0.0)
    with pytest.raises(ValueError, match="max_links"):
        timeline_of(Observations(), max_links=-1)


def test_timeline_json_round_trip(tmp_path: Path) -> None:
    tl = timeline_of(typical())
    assert None in tl.success_rate and tl.faults and tl.link_pps  # every kind of value
    path = tmp_path / "timeline.json"
    path.write_text(tl.model_dump_json())
    back = Timeline.model_validate_json(path.read_text())
    assert back == tl


def test_save_timeline_replaces_the_file_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "timeline.json").write_text("old")
    path = save_timeline(typical(), tmp_path)
    assert path == tmp_path / "timeline.json" and [p.name for p in tmp_path.iterdir()] == [
        path.name
    ]
    assert Timeline.model_validate_json(path.read_text()) == timeline_of(typical())

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_timeline.os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        save_timeline(Observations(), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    assert Timeline.model_validate_json(path.read_text()) == timeline_of(typical())  # the old one


def test_timeline_model_refuses_misaligned_series_and_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="alive has 1 values"):
        Timeline(bin_seconds=0.5, t=[0.0, 0.5], alive=[1])
    with pytest.raises(ValidationError, match="extra"):
        Timeline.model_validate({"bin_seconds": 0.5, "colour": "red"})


# --- the SVG ---------------------------------------------------------------------------------


def _text_items(svg: str) -> list[str]:
    """Each text element's characters, whitespace removed (tspans joined)."""
    root = ET.fromstring(svg)
    return ["".join("".join(el.itertext()).split()) for el in root.iter(f"{SVG}text")]


def _texts(svg: str) -> str:
    root = ET.fromstring(svg)
    return "\n".join("".join(el.itertext()) for el in root.iter(f"{SVG}text"))


def test_svg_is_inline_xml_with_the_fault_labels_and_deterministic() -> None:
    before = (mpl.rcParams["svg.fonttype"], mpl.rcParams["svg.hashsalt"])
    tl = timeline_of(typical())
    svg = timeline_svg(tl, title="mux failover")

    assert svg.startswith("<svg") and "<?xml" not in svg and "DOCTYPE" not in svg
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    texts = _texts(svg)
    for label in ("mux failover", "mux-fail mux1", "syn-flood router", "connections", "client-in"):
        assert label in texts, label
    assert "<dc:date>" not in svg
    assert timeline_svg(tl, title="mux failover") == svg
    assert (mpl.rcParams["svg.fonttype"], mpl.rcParams["svg.hashsalt"]) == before


def test_svg_draws_wide_packet_rates_on_a_log_scale_and_notes_missing_parts() -> None:
    wide = tap_set({"busy": [(0.0, 10.0, 1_000_000)], "quiet": [(0.0, 10.0, 10)]})
    svg = timeline_svg(timeline_of(Observations(taps=wide)))
    # Log ticks are 10 with a superscript exponent: "10", "5" in separate tspans.
    ticks = _text_items(svg)
    assert "105" in ticks and "101" in ticks
    assert "no connection history" in _texts(svg) and "no link taps" not in svg

    run = short_run()
    run.conn(0, 1.0, end_t=2.0)
    svg = timeline_svg(timeline_of(run.obs(taps=False)))
    assert "no link taps" in _texts(svg) and "no connection history" not in svg
    assert "105" not in _text_items(svg)


# --- scale -----------------------------------------------------------------------------------


STEPS_PER_ITEM = 40
"""Python lines dsrconform may run per tap record and per bin (about 7 are run)."""
BYTES_PER_ITEM = 1_000
"""Bytes it may allocate at its peak per tap record and per bin (about 110 are)."""


def test_cost_is_linear_in_records_not_records_times_bins() -> None:
    """20k tap records, each over 1000 of 10k bins: spreading them with difference arrays is
    linear in records + bins; visiting the bins of every record is 20M steps. Checked by
    counting, not timing (speed targets live in the benchmarks): the Python lines of dsrconform
    run (a loop over the bins of each record) and the peak memory
    allocated (a records x bins array) are both bounded by a multiple of records + bins. The
    line count stops the call as soon as it is over budget."""
    infos = [tap_info(name) for name in ("client-out", "mux1-in", "server1-in")]
    flows = [
        TapFlow.model_construct(
            tap=infos[i % 3].tap,
            proto=6,
            src=CLIENT,
            dst=WEB,
            sport=i % 60000,
            dport=80,
            packets=1 + i % 7,
            bytes=0,
            first=i * 0.045,
            last=i * 0.045 + 100.0,
            spans=None,
        )
        for i in range(20_000)
    ]
    by_tap = {t.tap: flows[j::3] for j, t in enumerate(infos)}
    obs = Observations(taps=TapSet(taps={t.tap: t for t in infos}, flows=by_tap))
    bins = 10_001
    items = len(flows) + bins
    steps, budget = 0, STEPS_PER_ITEM * items
    package = str(Path(report_timeline.__file__).parents[1])  # dsrconform/

    def count(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal steps
        if event == "line":
            steps += 1
            if steps > budget:
                raise AssertionError(f"over {budget} lines run: a loop over bins per record?")
        return count

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        return count if frame.f_code.co_filename.startswith(package) else None

    was_tracing_memory = tracemalloc.is_tracing()
    if not was_tracing_memory:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    old_trace = sys.gettrace()  # a coverage tracer's, put back after
    sys.settrace(calls)
    try:
        tl = timeline_of(obs, bin_seconds=0.1)
    finally:
        sys.settrace(old_trace)
        peak = tracemalloc.get_traced_memory()[1] - before
        if not was_tracing_memory:
            tracemalloc.stop()
    assert len(tl.t) == bins
    assert sum(sum(v) for v in tl.link_pps.values()) * 0.1 == pytest.approx(
        sum(f.packets for f in flows)
    )
    assert len(flows) < steps <= budget
    assert peak <= BYTES_PER_ITEM * items, f"{peak} bytes at the peak: a records x bins array?"
