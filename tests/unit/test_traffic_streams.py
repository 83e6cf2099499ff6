"""The streams generator's core on loopback: any --seed gives valid pattern seeds, a refused
stream is an integrity error, and a crash inside the generator fails its run."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import pytest

from dsrconform.app import ServerApp
from dsrconform.observe import history as h
from dsrconform.streampattern import SEED_MAX
from dsrconform.traffic import common, streams
from dsrconform.traffic.common import Recorder
from tests.unit.loopback import Handler, loopback_server


def _args(port: int, **kw: Any) -> argparse.Namespace:
    base = dict(vip="127.0.0.1", port=port, sources="127.0.0.1", conns=3, bytes=20_000, rate=0,
                open_rate=0.0, seed=1, stall=5.0, timeout=5.0, deadline=20.0,
                marks=[(10 << 2, 33)])  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def _drive(tmp_path: Path, handler: Handler, **kw: Any) -> tuple[dict[str, int], h.History]:
    out = tmp_path / "h.jsonl"

    async def go() -> dict[str, int]:
        async with loopback_server(handler) as port:
            with out.open("w") as f:
                rec = Recorder(f)
                rec.write(kind="header", node="t", t=0.0, stall_threshold=5.0, seed=1)
                return await streams.run(_args(port, **kw), rec)

    counts = asyncio.run(asyncio.wait_for(go(), 30))
    return counts, h.load_history(out)


def test_a_seed_whose_stream_seeds_pass_2_to_the_64_still_streams(tmp_path: Path) -> None:
    seed = 2**60  # times 1,000,003: far beyond the pattern's 64-bit seeds
    app = ServerApp("s1")
    counts, hist = _drive(tmp_path, app.handle_http, seed=seed)
    assert counts["closed"] == 3 and counts["integrity_error"] == 0, counts
    for fh in hist.flows.values():
        assert 0 <= (fh.start.seed or 0) <= SEED_MAX
        closed = [e for e in fh.events if isinstance(e, h.Closed)]
        assert fh.succeeded() and [e.verified for e in closed] == [20_000]


def test_a_refused_stream_is_an_integrity_error_not_a_silent_flow(tmp_path: Path) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 400 Bad Request\r\nX-Server-Id: s1\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(10)  # never closes on its own: the client must not wait for it

    counts, hist = _drive(tmp_path, refuse)
    assert counts["integrity_error"] == 3 and counts["closed"] == 0
    assert all(not fh.succeeded() for fh in hist.flows.values())


def test_a_crash_inside_the_generator_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*_: Any, **__: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(streams, "PatternVerifier", boom)
    app = ServerApp("s1")
    counts, _ = _drive(tmp_path, app.handle_http)
    assert counts["generator_errors"] == 3
    assert "RuntimeError: a bug" in capsys.readouterr().err

    async def crashed(args: argparse.Namespace, rec: Recorder) -> dict[str, int]:
        return {"opened": 1, "generator_errors": 1}

    args = argparse.Namespace(out=str(tmp_path / "x.jsonl"), seed=1)
    assert common.run_recorded(args, crashed) == 3
    assert "history is incomplete" in capsys.readouterr().err


def test_marks_parse_and_each_connection_gets_its_own() -> None:
    """``--marks TOS:TTL,...``: connection i takes the i-th, cycling; on a TCP socket the kernel
    keeps the DSCP and leaves the ECN bits to TCP, on a UDP socket the whole byte goes out."""
    import socket

    marks = common.parse_marks("0:64,0x2a:255,136:32")
    assert marks == [(0, 64), (42, 255), (136, 32)]
    for bad in ("64", "300:64", "0:0", "x:1"):
        with pytest.raises(argparse.ArgumentTypeError, match="TOS"):
            common.parse_marks(bad)
    for kind, want_tos in ((socket.SOCK_DGRAM, 42), (socket.SOCK_STREAM, 40)):
        with socket.socket(socket.AF_INET, kind) as s:
            common.set_marks(s, 4, marks)  # the second mark, again
            assert s.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == want_tos
            assert s.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 255
    with socket.socket() as s:
        common.set_marks(s, 0, [])
        assert s.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == 0
