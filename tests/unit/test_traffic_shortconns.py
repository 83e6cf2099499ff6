"""The short-connection generator without privileges: its argument checks, its schedule and
pacer, its summary over a synthetic history, and whole runs of its core against in-process
servers on loopback (the CLI refuses loopback; the core takes it only when told to)."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from dsrconform.app import ServerApp
from dsrconform.observe import history as h
from dsrconform.traffic import shortconns as sc
from dsrconform.traffic.common import Recorder
from tests.unit.loopback import Handler, loopback_server

LAB_ARGS = ["--vip", "198.19.0.10", "--sources", "198.18.1.2,198.18.1.3"]
SUMMARY_KEYS = {"attempted", "succeeded", "failed", "failures", "cut", "success_rate", "span_s",
                "achieved_rate", "latency_ms", "connect_ms", "servers"}  # fmt: skip


# --- arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vip", "sources", "culprit"),
    [
        ("10.0.0.1", "198.18.1.2", "10.0.0.1"),
        ("198.19.0.10", "198.18.1.2,8.8.8.8", "8.8.8.8"),
        ("127.0.0.1", "127.0.0.1", "127.0.0.1"),  # loopback too: only the core's tests use it
        ("198.20.0.1", "198.18.1.2", "198.20.0.1"),  # just past 198.18.0.0/15
    ],
)
def test_the_cli_refuses_addresses_outside_the_lab(
    vip: str, sources: str, culprit: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "h.jsonl"
    rc = sc.main(["--vip", vip, "--sources", sources, "--count", "1", "--out", str(out)])
    assert rc == 2
    assert f"address {culprit} is outside the lab range 198.18.0.0/15" in capsys.readouterr().err
    assert not out.exists(), "nothing is recorded (or sent) for a refused run"


@pytest.mark.parametrize(
    "bad",
    [
        ["--rate", "0"],
        ["--rate", "-5"],
        ["--rate", "nan"],
        ["--duration", "0"],
        ["--timeout", "inf"],
        ["--count", "-1"],
        ["--max-in-flight", "0"],
        ["--port", "0"],
        ["--port", "65536"],
        ["--timeout", "3", "--deadline", "3"],
    ],
)
def test_bad_numbers_are_refused_with_status_2(
    bad: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        sc.parse_args([*LAB_ARGS, *bad])
    assert e.value.code == 2
    assert bad[0] in capsys.readouterr().err


def test_defaults_and_the_default_deadline() -> None:
    args = sc.parse_args(LAB_ARGS)
    assert (args.port, args.rate, args.count, args.duration, args.timeout) == (80, 500, 5000, 10, 2)
    assert args.max_in_flight == 512 and args.seed == 1 and args.out == "-"
    assert args.deadline == 10 + 2 + 5
    assert sc.parse_args([*LAB_ARGS, "--deadline", "30"]).deadline == 30


@pytest.mark.parametrize(
    ("vip", "sources", "allow"),
    [("10.0.0.1", "198.18.1.2", False), ("127.0.0.1", "127.0.0.1", False),
     ("10.0.0.1", "127.0.0.1", True), ("127.0.0.1", "127.0.0.1,10.0.0.1", True)],
)  # fmt: skip
def test_the_core_refuses_too(vip: str, sources: str, allow: bool, tmp_path: Path) -> None:
    args = sc.parse_args(["--vip", vip, "--sources", sources, "--count", "1"])
    with (tmp_path / "h.jsonl").open("w") as f:
        rec = Recorder(f)
        with pytest.raises(ValueError, match="outside the lab range"):
            asyncio.run(sc.run(args, rec, allow_loopback=allow))
    assert rec.n == 0


# --- the schedule and the pacer -------------------------------------------------------------------


def test_the_schedule_is_absolute_and_bounded_by_count_and_duration() -> None:
    offsets = list(sc.schedule(500, 5000, 10))
    assert len(offsets) == 5000
    assert offsets == [i / 500 for i in range(5000)]  # i / rate: no summed-interval drift
    assert offsets[-1] == 9.998
    assert len(list(sc.schedule(100, 10**9, 0.5))) == 50  # the duration stops it
    assert list(sc.schedule(3, 2, 100)) == [0.0, 1 / 3]  # the count stops it
    assert list(sc.schedule(3, 0, 100)) == []
    with pytest.raises(ValueError, match="rate must be positive"):
        next(sc.schedule(0, 5, 1))


def test_the_source_order_comes_from_the_seed() -> None:
    srcs = [f"198.18.1.{i}" for i in range(2, 9)]
    orders = {seed: sc.source_order(srcs, seed) for seed in range(6)}
    assert all(sorted(o) == sorted(srcs) for o in orders.values())
    assert all(sc.source_order(srcs, seed) == o for seed, o in orders.items())  # reproducible
    assert len({tuple(o) for o in orders.values()}) > 1, "the seed does not change the order"


Launch = Callable[[int], Coroutine[Any, Any, None]]


def _pace(offsets: list[float], launch: Launch, *, start_ago: float = 0, stop_in: float = 60,
          deadline_in: float = 60, cap: int = 100) -> sc.PaceStats:  # fmt: skip
    async def go() -> sc.PaceStats:
        now = time.monotonic()
        return await sc.pace(offsets, launch, start=now - start_ago, stop_at=now + stop_in,
                             deadline=now + deadline_in, max_in_flight=cap)  # fmt: skip

    return asyncio.run(go())


def test_a_late_pacer_catches_up_but_never_over_the_in_flight_cap() -> None:
    active = peak = 0
    order: list[int] = []

    async def launch(i: int) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        order.append(i)
        for _ in range(3):
            await asyncio.sleep(0)  # yield, so that launches the pacer let through overlap
        active -= 1

    # Every launch is 100 s overdue: all due at once, held back only by the cap.
    stats = _pace([i / 10 for i in range(12)], launch, start_ago=100, cap=3)
    assert stats.opened == 12 and order == list(range(12))
    assert peak == 3 and stats.in_flight_max == 3
    assert stats.lag_max > 98
    assert stats.cut == 0


def test_the_pacer_never_launches_early() -> None:
    launched: dict[int, float] = {}
    offsets = [i / 200 for i in range(10)]

    async def launch(i: int) -> None:
        launched[i] = time.monotonic()

    t0 = time.monotonic()
    stats = _pace(offsets, launch)
    assert stats.opened == 10 and sorted(launched) == list(range(10))
    assert all(launched[i] >= t0 + offsets[i] for i in range(10)), "a launch came early"


def test_the_pacer_launches_nothing_after_stop_at() -> None:
    launched: list[int] = []

    async def launch(i: int) -> None:
        launched.append(i)

    # 100 s late, but the opening window closed 1 s ago: nothing goes.
    stats = _pace([float(i) for i in range(5)], launch, start_ago=100, stop_in=-1)
    assert stats.opened == 0 and launched == []


def test_the_deadline_cancels_what_is_still_running() -> None:
    cancelled: list[int] = []

    async def launch(i: int) -> None:
        try:
            await asyncio.Event().wait()  # never set: only the deadline ends it
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    t0 = time.monotonic()
    stats = _pace([0.0] * 4, launch, deadline_in=0.2)
    assert stats.opened == 4 and stats.cut == 4 and sorted(cancelled) == [0, 1, 2, 3]
    assert time.monotonic() - t0 < 0.2 + sc.CUT_GRACE


# --- the summary ----------------------------------------------------------------------------------


def _synthetic() -> h.History:
    recs: list[Any] = []

    def flow(i: int, t: float, proto: str = "tcp") -> None:
        recs.append(h.FlowStart(flow=i, t=t, proto=proto, src="198.18.1.2", sport=40000 + i,  # type: ignore[arg-type]
                                dst="198.19.0.10", dport=80))  # fmt: skip

    flow(0, 10.0)  # succeeded: 10 ms
    recs += [h.Connected(flow=0, t=10.001), h.FirstByte(flow=0, t=10.004, server="server1"),
             h.Closed(flow=0, t=10.010, received=8, verified=8)]  # fmt: skip
    flow(1, 10.1)  # succeeded: 30 ms
    recs += [h.Connected(flow=1, t=10.103), h.FirstByte(flow=1, t=10.12, server="server2"),
             h.Closed(flow=1, t=10.13, received=8, verified=8)]  # fmt: skip
    flow(2, 10.2)
    recs.append(h.Refused(flow=2, t=10.2005))
    flow(3, 10.3)
    recs.append(h.Timeout(flow=3, t=12.3, phase="connect"))
    flow(4, 10.4)  # connected in 5 ms, then no answer
    recs += [h.Connected(flow=4, t=10.405), h.Timeout(flow=4, t=12.4, phase="read")]
    flow(5, 10.5)
    recs += [h.Connected(flow=5, t=10.502), h.Reset(flow=5, t=10.51)]
    flow(6, 10.6)  # a wrong body: integrity error at byte 3, then closed
    recs += [h.Connected(flow=6, t=10.601), h.FirstByte(flow=6, t=10.602, server="server3"),
             h.IntegrityError(flow=6, t=10.603, offset=3),
             h.Closed(flow=6, t=10.603, received=8, verified=3)]  # fmt: skip
    flow(7, 10.7)  # cut by the generator's deadline after connecting
    recs += [h.Connected(flow=7, t=10.701), h.Closed(flow=7, t=12.0, received=0, verified=0,
                                                     reason="deadline")]  # fmt: skip
    flow(8, 10.8)  # cut before it connected: no end at all
    flow(9, 10.9, proto="udp")  # not a short connection: left out
    recs.append(h.DatagramSent(flow=9, t=10.9, seq=0))
    return h.History.from_records(recs)


def test_the_summary_of_a_synthetic_history() -> None:
    hist = _synthetic()
    assert hist.flows[0].succeeded() and not hist.flows[0].breaks(), "a short close is no break"
    s = sc.summarize(hist)
    assert set(s) == SUMMARY_KEYS
    assert s["attempted"] == 9 and s["succeeded"] == 2 and s["cut"] == 2
    assert s["failed"] == 5
    assert s["failures"] == {"refused": 1, "timeout_connect": 1, "timeout_read": 1, "reset": 1,
                             "bad_reply": 1}  # fmt: skip
    assert s["success_rate"] == round(2 / 9, 6)
    assert s["span_s"] == pytest.approx(0.8)
    assert s["achieved_rate"] == pytest.approx(8 / 0.8, abs=1e-3)  # 9 starts, 8 gaps in 0.8 s
    assert s["latency_ms"] == {"p50": 10.0, "p90": 30.0, "p99": 30.0, "max": 30.0}
    # Connect times of every flow that connected: 1, 3, 5, 2, 1, 1 ms.
    assert s["connect_ms"] == {"p50": 1.0, "p90": 5.0, "p99": 5.0, "max": 5.0}
    assert s["servers"] == {"server1": 1, "server2": 1}  # server3's answer was wrong


def test_the_summary_of_some_flows_and_of_none() -> None:
    hist = _synthetic()
    some = sc.summarize([hist.flows[0], hist.flows[2]])
    assert (some["attempted"], some["succeeded"], some["failures"]["refused"]) == (2, 1, 1)
    assert some["success_rate"] == 0.5
    empty = sc.summarize(h.History())
    assert empty["attempted"] == 0 and empty["success_rate"] is None
    assert empty["achieved_rate"] is None and empty["latency_ms"]["p99"] is None


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert [sc.percentile(values, p) for p in (1, 50, 90, 99, 100)] == [1, 50, 90, 99, 100]
    assert sc.percentile([7.0], 50) == 7.0
    assert sc.percentile([1.0, 2.0], 50) == 1.0 and sc.percentile([1.0, 2.0], 51) == 2.0
    with pytest.raises(ValueError):
        sc.percentile([], 50)


def test_an_unknown_outcome_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        sc.summary_of([sc.Outcome(1.0, None, None, "lost")])


# --- whole runs on loopback -----------------------------------------------------------------------


async def _drive(tmp_path: Path, port: int, *extra: str) -> tuple[dict[str, Any], h.History]:
    """Run the core against 127.0.0.1:port; its counts, and the history it recorded."""
    out = tmp_path / "h.jsonl"
    args = sc.parse_args(["--vip", "127.0.0.1", "--port", str(port), "--sources",
                          "127.0.0.1,127.0.0.2", *extra])  # fmt: skip
    with out.open("w") as f:
        counts = await sc.run(args, Recorder(f), allow_loopback=True)
    hist = h.load_history(out)
    summary = {k: v for k, v in counts.items() if k in SUMMARY_KEYS}
    assert summary == sc.summarize(hist), "the printed summary differs from the history's"
    return counts, hist


def test_a_run_against_the_reference_app_succeeds_and_loads(tmp_path: Path) -> None:
    app = ServerApp("s1", linger=1.0)

    async def go() -> tuple[dict[str, Any], h.History]:
        async with loopback_server(app.handle_http) as port:
            try:
                return await _drive(tmp_path, port, "--rate", "2000", "--count", "200",
                                    "--timeout", "5", "--max-in-flight", "50",
                                    "--seed", "3")  # fmt: skip
            finally:
                await app.close_connections()

    counts, hist = asyncio.run(go())
    assert counts["opened"] == counts["attempted"] == 200, counts
    assert counts["succeeded"] == 200 and counts["success_rate"] == 1.0, counts
    assert counts["servers"] == {"s1": 200}
    assert counts["in_flight_max"] <= 50 and counts["bind_errors"] == 0
    assert counts["achieved_rate"] > 0 and counts["latency_ms"]["max"] is not None
    order = sc.source_order(["127.0.0.1", "127.0.0.2"], 3)
    assert len(hist.flows) == 200
    for i, fh in hist.flows.items():
        assert [e.kind for e in fh.events] == ["connected", "first_byte", "closed"]
        assert fh.succeeded() and fh.server == "s1" and fh.start.src == order[i % 2]
        assert fh.start.expected_bytes is None and fh.start.seed is None
        closed = fh.events[-1]
        assert isinstance(closed, h.Closed) and closed.received == closed.verified == 3  # "s1\n"


def test_reused_ports_bring_the_same_tuples_back(tmp_path: Path) -> None:
    """With --reuse-ports every connection binds one of the fixed ports: the same 5-tuples again
    and again, each one's earlier connection closed before it comes back."""
    app = ServerApp("s1", linger=0.05)

    async def go() -> tuple[dict[str, Any], h.History]:
        async with loopback_server(app.handle_http) as port:
            try:
                return await _drive(tmp_path, port, "--rate", "50", "--count", "24",
                                    "--timeout", "5", "--reuse-ports", "41000-41002",
                                    "--seed", "3")  # fmt: skip
            finally:
                await app.close_connections()

    counts, hist = asyncio.run(go())
    assert counts["succeeded"] == 24, counts
    tuples = [(fh.start.src, fh.start.sport) for fh in hist.flows.values()]
    busy = counts.get("reuse_busy", 0)
    assert sum(41000 <= sport <= 41002 for _, sport in tuples) == 24 - busy
    assert busy <= 2, counts
    assert len(set(tuples)) <= 6 + busy, "2 sources x 3 ports, reused"


@pytest.mark.parametrize("bad", ["x-y", "100-200", "41002-41000", "65535-65536"])
def test_a_bad_reuse_port_range_is_refused(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert sc.parse_args([*LAB_ARGS, "--reuse-ports", "41000"]).reuse_ports == (41000, 41000)
    with pytest.raises(SystemExit) as e:
        sc.parse_args([*LAB_ARGS, "--reuse-ports", bad])
    assert e.value.code == 2 and "--reuse-ports" in capsys.readouterr().err


def test_uploads_reach_the_reference_app_whole(tmp_path: Path) -> None:
    app = ServerApp("s1", linger=1.0)

    async def go() -> tuple[dict[str, Any], h.History]:
        async with loopback_server(app.handle_http) as port:
            try:
                return await _drive(tmp_path, port, "--rate", "500", "--count", "20",
                                    "--timeout", "5", "--upload", "70000")  # fmt: skip
            finally:
                await app.close_connections()

    counts, hist = asyncio.run(go())
    assert counts["succeeded"] == 20, counts
    for fh in hist.flows.values():
        assert fh.start.request_bytes == 70000 and fh.succeeded()
        closed = fh.events[-1]
        assert isinstance(closed, h.Closed) and closed.verified == len(b"s1 70000\n")


def test_an_upload_answered_with_a_short_count_is_an_integrity_error() -> None:
    head = b"HTTP/1.1 200 OK\r\nX-Server-Id: s1\r\nContent-Length: 9\r\n\r\n"
    assert sc._check_reply(head, b"s1 16384\n", 16384) == ("s1", None)
    assert sc._check_reply(head, b"s1 16383\n", 16384) == ("s1", 7)
    assert sc._check_reply(head, b"s1\n", 16384)[1] == 2


async def _wrong_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nX-Server-Id: s1\r\nContent-Length: 3\r\n\r\ns2\n")
    await writer.drain()
    writer.close()


async def _not_found(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 404 Not Found\r\nX-Server-Id: s1\r\nContent-Length: 3\r\n\r\ns1\n")
    await writer.drain()
    writer.close()


async def _no_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.close()  # a FIN instead of an answer


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # with SO_LINGER 0: a RST


@pytest.mark.parametrize(
    ("handler", "failure", "kinds"),
    [
        (_wrong_body, "bad_reply", ["connected", "first_byte", "integrity_error", "closed"]),
        (_not_found, "bad_reply", ["connected", "first_byte", "integrity_error", "closed"]),
        (_no_reply, "bad_reply", ["connected", "integrity_error", "closed"]),
        (_reset, "reset", ["connected", "reset"]),
    ],
)
def test_wrong_answers_are_failures(handler: Handler, failure: str, kinds: list[str],
                                    tmp_path: Path) -> None:  # fmt: skip
    async def go() -> tuple[dict[str, Any], h.History]:
        async with loopback_server(handler) as port:
            return await _drive(tmp_path, port, "--rate", "1000", "--count", "20", "--timeout",
                                "5")  # fmt: skip

    counts, hist = asyncio.run(go())
    assert counts["attempted"] == 20 and counts["succeeded"] == 0, counts
    assert counts["failures"][failure] == 20 and counts["failed"] == 20, counts
    for fh in hist.flows.values():
        assert [e.kind for e in fh.events] == kinds and not fh.succeeded()


def test_a_closed_port_is_refused(tmp_path: Path) -> None:
    with socket.socket() as bound:  # bound, not listening: the SYN gets a RST
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        counts, hist = asyncio.run(_drive(tmp_path, port, "--count", "10", "--rate", "1000"))
    assert counts["failures"]["refused"] == 10 and counts["succeeded"] == 0, counts
    assert all([e.kind for e in fh.events] == ["refused"] for fh in hist.flows.values())


def test_silence_times_out_in_the_right_phase(tmp_path: Path) -> None:
    """A listener that never accepts, with a backlog of 0: the first connection completes its
    handshake (and then hears nothing: a read timeout), the kernel drops the other SYNs (connect
    timeouts)."""
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        port = lsock.getsockname()[1]
        counts, hist = asyncio.run(_drive(tmp_path, port, "--count", "4", "--rate", "1000",
                                          "--timeout", "0.5"))  # fmt: skip
    assert counts["failed"] == 4 and counts["succeeded"] == 0, counts
    assert counts["failures"]["timeout_read"] >= 1 and counts["failures"]["timeout_connect"] >= 1
    for fh in hist.flows.values():
        end = fh.end
        assert isinstance(end, h.Timeout)
        assert end.phase == ("read" if fh.established_at is not None else "connect")
        assert 0.5 <= end.t - fh.start.t < 1.5, "the per-connection timeout did not hold"
