"""Observation records: histories and tap records round-trip through JSON lines, and bad files
fail with the file, the line and the field (pure Python, no privileges)."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsrconform.errors import ConfigError
from dsrconform.observe import history as h
from dsrconform.observe import taps as tp
from dsrconform.traffic.common import Recorder

TIMES = st.floats(0, 1e7, allow_nan=False, allow_infinity=False)
COUNTS = st.integers(0, 2**40)
PORTS = st.integers(1, 65535)
ADDRS = st.ip_addresses(v=4).map(str)
FLOWS = st.integers(0, 10**9)
IDS = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)

EVENTS = st.one_of(
    st.builds(h.Connected, flow=FLOWS, t=TIMES),
    st.builds(h.FirstByte, flow=FLOWS, t=TIMES, server=st.none() | IDS),
    st.builds(
        h.Stall,
        flow=FLOWS,
        t=TIMES,
        seconds=st.floats(1e-6, 1e4, allow_nan=False, allow_infinity=False),
        offset=COUNTS,
    ),
    st.builds(h.Reset, flow=FLOWS, t=TIMES, received=COUNTS),
    st.builds(
        h.Timeout, flow=FLOWS, t=TIMES, received=COUNTS, phase=st.sampled_from(["connect", "read"])
    ),
    st.builds(h.Refused, flow=FLOWS, t=TIMES),
    st.builds(h.IntegrityError, flow=FLOWS, t=TIMES, offset=COUNTS),
    st.builds(
        h.Closed,
        flow=FLOWS,
        t=TIMES,
        received=COUNTS,
        verified=COUNTS,
        reason=st.sampled_from(["eof", "deadline"]),
    ),
    st.builds(h.DatagramSent, flow=FLOWS, t=TIMES, seq=COUNTS),
    st.builds(h.DatagramReply, flow=FLOWS, t=TIMES, seq=COUNTS, server=IDS),
)
STARTS = st.builds(
    h.FlowStart,
    flow=FLOWS,
    t=TIMES,
    proto=st.sampled_from(["tcp", "udp"]),
    src=ADDRS,
    sport=PORTS,
    dst=ADDRS,
    dport=PORTS,
    seed=st.none() | st.integers(0, 2**64 - 1),
    expected_bytes=st.none() | COUNTS,
    request_bytes=COUNTS,
)
HEADERS = st.builds(
    h.HistoryHeader,
    node=IDS,
    t=TIMES,
    stall_threshold=st.floats(1e-3, 100, allow_nan=False),
    seed=st.none() | st.integers(),
)


def _roundtrip(records: list, load):  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "records.jsonl"
        assert h.write_jsonl(path, records) == len(records)
        return load(path)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(HEADERS, STARTS, EVENTS), max_size=30))
def test_history_records_roundtrip(records: list[h.HistoryRecord]) -> None:
    assert _roundtrip(records, h.load_jsonl) == records


FIVE = st.builds(
    tp.FiveTuple,
    proto=st.integers(0, 255),
    src=ADDRS,
    dst=ADDRS,
    sport=st.integers(0, 65535),
    dport=st.integers(0, 65535),
)


@st.composite
def tap_flows(draw: st.DrawFn) -> tp.TapFlow:
    packets = draw(st.integers(1, 10**9))
    first = draw(TIMES)
    l3 = draw(st.integers(0, packets))
    l4 = draw(st.integers(0, packets))
    last = first + draw(st.floats(0, 1e4, allow_nan=False))
    spans = None
    if packets > 1 and draw(st.booleans()):  # two periods: one at each end
        k = draw(st.integers(1, packets - 1))
        spans = (tp.TapSpan(first=first, last=first, packets=k),
                 tp.TapSpan(first=last, last=last, packets=packets - k))  # fmt: skip
    return tp.TapFlow(
        tap=draw(IDS),
        proto=draw(st.integers(0, 255)),
        src=draw(ADDRS),
        dst=draw(ADDRS),
        sport=draw(st.integers(0, 65535)),
        dport=draw(st.integers(0, 65535)),
        inner=draw(st.none() | FIVE),
        icmp_type=draw(st.none() | st.integers(0, 255)),
        icmp_code=draw(st.none() | st.integers(0, 255)),
        embedded=draw(st.none() | FIVE),
        packets=packets,
        bytes=draw(COUNTS),
        first=first,
        last=last,
        l3_valid=l3,
        l3_invalid=packets - l3,
        l4_valid=l4,
        l4_invalid=draw(st.integers(0, packets - l4)),
        tcp_flags=draw(st.integers(0, 255)),
        fragments=draw(st.integers(0, packets)),
        spans=spans,
    )


TAP_INFOS = st.builds(
    tp.TapInfo,
    tap=IDS,
    node=IDS,
    ifname=IDS,
    link=IDS,
    peer=st.none() | IDS,
    direction=st.sampled_from(["ingress", "egress"]),
    started=TIMES,
    stopped=st.none() | TIMES,
    packets=COUNTS,
    malformed=COUNTS,
    lost_records=COUNTS,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(TAP_INFOS, tap_flows()), max_size=20))
def test_tap_records_roundtrip(records: list[tp.TapRecord]) -> None:
    assert _roundtrip(records, tp.load_jsonl) == records


def test_counter_snapshots_roundtrip(tmp_path: Path) -> None:
    snaps = [
        tp.CounterSnapshot(t=1.5, components={"mux1": {"xdp_tx": 10, "drop_bad_ihl": 0}}),
        tp.CounterSnapshot(t=2.5, components={"mux1": {"xdp_tx": 20}, "server1": {"decap": 3}}),
    ]
    tp.write_jsonl(tmp_path / "c.jsonl", snaps)
    assert tp.load_counters_jsonl(tmp_path / "c.jsonl") == snaps


def test_the_stream_generator_writes_history_records(tmp_path: Path) -> None:
    # the traffic programs write plain JSON with their own Recorder: it must load as is.
    buf = io.StringIO()
    rec = Recorder(buf)
    rec.write(kind="header", node="client", t=1.0, stall_threshold=1.0, seed=1)
    rec.write(
        kind="flow",
        flow=0,
        t=1.5,
        proto="tcp",
        src="198.18.1.2",
        sport=40000,
        dst="198.19.0.10",
        dport=80,
        seed=1000003,
        expected_bytes=100,
    )
    rec.write(kind="connected", flow=0, t=1.6)
    rec.write(kind="first_byte", flow=0, t=1.7, server=None)
    rec.write(kind="stall", flow=0, t=1.7, seconds=1.25, offset=0)
    rec.write(kind="timeout", flow=0, t=3.0, phase="read", received=0)
    (tmp_path / "h.jsonl").write_text(buf.getvalue())
    hist = h.load_history(tmp_path / "h.jsonl")
    fh = hist.flows[0]
    assert fh.established_at == 1.6 and fh.server is None
    assert [e.kind for e in fh.breaks()] == ["timeout"]


def test_a_bad_line_names_file_line_and_field(tmp_path: Path) -> None:
    p = tmp_path / "h.jsonl"
    good = h.Connected(flow=1, t=1.0).model_dump_json()
    p.write_text(good + "\n\n" + json.dumps({"kind": "connected", "flow": 1, "t": -1}) + "\n")
    with pytest.raises(ConfigError, match=r"h\.jsonl:3: history record connected\.t: .*greater"):
        h.load_jsonl(p)
    p.write_text(json.dumps({"kind": "teleported", "flow": 1, "t": 1}) + "\n")
    with pytest.raises(ConfigError, match=r":1: .*'teleported'.*dsrconform\.observe\.history"):
        h.load_jsonl(p)
    with pytest.raises(ConfigError, match="cannot read"):
        h.load_jsonl(tmp_path / "missing.jsonl")
    p.write_text(
        json.dumps(
            {
                "kind": "tap_flow",
                "tap": "x",
                "proto": 6,
                "src": "1.2.3.4",
                "dst": "1.2.3.5",
                "packets": 1,
                "bytes": 1,
                "first": 2,
                "last": 1,
            }
        )
    )
    with pytest.raises(ConfigError, match=r":1: tap record .*last \(1\.0\) is before first"):
        tp.load_jsonl(p)


def _start(
    flow: int, t: float, proto: Literal["tcp", "udp"] = "tcp", expected: int | None = 100
) -> h.FlowStart:
    return h.FlowStart(
        flow=flow,
        t=t,
        proto=proto,
        src="198.18.1.2",
        sport=40000 + flow,
        dst="198.19.0.10",
        dport=80,
        expected_bytes=expected,
    )


def test_grouping_rejects_undeclared_duplicate_and_backwards_records() -> None:
    with pytest.raises(ConfigError, match="flow 3, which no earlier 'flow' record declares"):
        h.History.from_records([h.Connected(flow=3, t=1.0)])
    with pytest.raises(ConfigError, match="flow 1 is declared twice"):
        h.History.from_records([_start(1, 1.0), _start(1, 2.0)])
    with pytest.raises(ConfigError, match=r"earlier than its previous record.*monotonic"):
        h.History.from_records([_start(1, 5.0), h.Connected(flow=1, t=4.0)])


def test_flow_history_answers_what_checkers_ask() -> None:
    hist = h.History.from_records(
        [
            _start(1, 1.0),
            h.Connected(flow=1, t=1.1),
            h.FirstByte(flow=1, t=1.2, server="server2"),
            h.Closed(flow=1, t=2.0, received=100, verified=100),
            _start(2, 1.0),
            h.Connected(flow=2, t=1.1),
            h.Closed(flow=2, t=2.0, received=40, verified=40),
            _start(3, 1.0),
            h.Connected(flow=3, t=1.1),
            h.Closed(flow=3, t=2.0, received=40, verified=40, reason="deadline"),
            _start(4, 1.0),
            h.Refused(flow=4, t=1.01),
            _start(5, 1.0, "udp", None),
            h.DatagramReply(flow=5, t=1.3, seq=0, server="server1"),
            h.DatagramReply(flow=5, t=1.4, seq=1, server="server3"),
        ]
    )
    f = hist.flows
    assert f[1].succeeded() and f[1].server == "server2" and f[1].alive_at(1.5)
    assert not f[1].alive_at(2.5) and not f[1].alive_at(1.05)
    assert [e.kind for e in f[2].breaks()] == ["closed"] and not f[2].succeeded()
    assert f[3].breaks() == [] and f[3].succeeded()  # the generator's deadline cut it
    assert f[4].established_at is None and isinstance(f[4].failure(), h.Refused)
    assert f[5].established_at == 1.3 and [s for _, s in f[5].servers] == ["server1", "server3"]
    assert hist.end_time == 2.0 and hist.stall_threshold is None and len(hist) == 5
    assert list(h.History.from_records(hist.records()).records()) == list(hist.records())


def test_tap_set_groups_and_checks_declarations() -> None:
    info = tp.TapInfo(
        tap="a",
        node="mux1",
        ifname="dsrc-router",
        link="link1",
        peer="router",
        direction="ingress",
        started=0.0,
        lost_records=2,
    )
    rec = tp.TapFlow(
        tap="a",
        proto=6,
        src="198.18.1.2",
        dst="198.19.0.10",
        sport=1,
        dport=80,
        packets=3,
        bytes=180,
        first=1.0,
        last=2.0,
        tcp_flags=0x12,
    )
    ts = tp.TapSet.from_records([rec, info])
    assert ts.flows["a"] == [rec] and len(ts) == 1
    assert (info.sender, info.receiver, info.overflowed) == ("router", "mux1", True)
    assert info.describe() == "mux1:dsrc-router ingress (link1 from router)"
    assert "flags SA" in rec.describe() and "3 packets/180 bytes" in rec.describe()
    with pytest.raises(ConfigError, match="tap 'b', which no 'tap' record declares"):
        tp.TapSet.from_records([info, rec.model_copy(update={"tap": "b"})])
    with pytest.raises(ConfigError, match="declared twice"):
        tp.TapSet.from_records([info, info])


def test_tap_flow_counts_cannot_exceed_packets() -> None:
    base = {
        "tap": "a",
        "proto": 6,
        "src": "198.18.1.2",
        "dst": "198.19.0.10",
        "packets": 2,
        "bytes": 1,
        "first": 1.0,
        "last": 1.0,
    }
    for bad in ({"l3_valid": 2, "l3_invalid": 1}, {"l4_unchecked": 3}, {"fragments": 3}):
        with pytest.raises(ValueError, match="exceed packets"):
            tp.TapFlow.model_validate({**base, **bad})
    with pytest.raises(ValueError, match="not an IP address"):
        tp.TapFlow.model_validate({**base, "src": "198.18.1.256"})
    six = tp.TapFlow.model_validate({**base, "src": "2001:2:0:1:0::2", "dst": "2001:2:0:100::10"})
    assert six.src == "2001:2:0:1::2", "IPv6 addresses are kept in their canonical form"


def test_tap_flow_spans_add_up_and_lie_within_the_record() -> None:
    base = {"tap": "a", "proto": 6, "src": "198.18.1.2", "dst": "198.19.0.10", "packets": 5,
            "bytes": 1, "first": 1.0, "last": 9.0}  # fmt: skip
    good = [{"first": 1.0, "last": 2.0, "packets": 2}, {"first": 8.0, "last": 9.0, "packets": 3}]
    rec = tp.TapFlow.model_validate({**base, "spans": good})
    assert [(p.first, p.packets) for p in rec.parts] == [(1.0, 2), (8.0, 3)]
    assert [(p.first, p.last, p.packets) for p in tp.TapFlow.model_validate(base).parts] == [
        (1.0, 9.0, 5)
    ]
    with pytest.raises(ValueError, match="do not add up"):
        tp.TapFlow.model_validate({**base, "spans": good[:1]})
    for bad in ({"first": 0.5, "last": 2.0}, {"first": 8.0, "last": 9.5}, {"first": 3, "last": 2}):
        spans = [{**good[0], **bad}, good[1]]
        with pytest.raises(ValueError, match="not within"):
            tp.TapFlow.model_validate({**base, "spans": spans})


def test_tcp_flags_text() -> None:
    assert tp.tcp_flags_text(0x02) == "S"
    assert tp.tcp_flags_text(0x12) == "SA"
    assert tp.tcp_flags_text(0x11) == "FA"
    assert tp.tcp_flags_text(0) == "-"
