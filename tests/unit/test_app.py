"""The lab server application, driven over AF_UNIX socketpairs (no IP sockets, no privileges).

``ServerApp.handle_http`` is the coroutine asyncio.start_server would run per connection; here
one end of a socketpair is wrapped in streams and handed to it, the other end is the client.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dsrconform import app as appmod
from dsrconform.app import (
    AppServer,
    ServerApp,
    UdpResponder,
    parse_endpoint,
    parse_stream_query,
    udp_reply,
    valid_server_id,
    write_ready_file,
)
from dsrconform.streampattern import PatternVerifier

T = TypeVar("T")
SID = "srv-7"


def run(coro: Coroutine[Any, Any, T], timeout: float = 5.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    server: asyncio.Task[None]

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def get(self, path: str, extra: str = "") -> None:
        await self.send(f"GET {path} HTTP/1.1\r\nHost: lab\r\n{extra}\r\n".encode())

    async def finish(self) -> None:
        """Close the client side and wait for the server's handler to return."""
        self.writer.close()
        await self.server


async def connect(app: ServerApp) -> Conn:
    server_sock, client_sock = socket.socketpair()
    sr, sw = await asyncio.open_connection(sock=server_sock)
    task = asyncio.create_task(app.handle_http(sr, sw))
    cr, cw = await asyncio.open_connection(sock=client_sock)
    return Conn(cr, cw, task)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    version, status, _ = status_line.decode("ascii").split(" ", 2)
    assert version == "HTTP/1.1"
    headers: dict[str, str] = {}
    while (line := await reader.readline()) != b"\r\n":
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status), headers


async def read_response(reader: asyncio.StreamReader) -> Response:
    status, headers = await read_head(reader)
    body = await reader.readexactly(int(headers["content-length"]))
    return Response(status, headers, body)


async def at_eof(reader: asyncio.StreamReader) -> bool:
    return await reader.read(1) == b""


# ---- who am I ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/id", "/id?x=1", "http://lab/id"])
def test_id(path: str) -> None:
    async def main() -> Response:
        c = await connect(ServerApp(SID))
        await c.get(path)
        r = await read_response(c.reader)
        await c.finish()
        return r

    r = run(main())
    assert r.status == 200
    assert r.body == b"srv-7\n"
    assert r.headers["x-server-id"] == SID
    assert r.headers["content-length"] == "6"
    assert r.headers["connection"] == "keep-alive"


def test_keep_alive_and_pipelining_then_close_on_request() -> None:
    async def main() -> list[Response]:
        c = await connect(ServerApp(SID))
        await c.send(b"GET /id HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n")
        out = [await read_response(c.reader), await read_response(c.reader)]
        await c.get("/", "Connection: close\r\n")
        out.append(await read_response(c.reader))
        assert await at_eof(c.reader)
        await c.finish()
        return out

    a, b, last = run(main())
    assert (a.status, b.status, last.status) == (200, 404, 200)
    assert b.headers["connection"] == "keep-alive"
    assert last.headers["connection"] == "close"
    assert all(r.headers["x-server-id"] == SID for r in (a, b, last))


def test_http10_closes_unless_keep_alive() -> None:
    async def main() -> tuple[Response, Response]:
        c = await connect(ServerApp(SID))
        await c.send(b"GET /id HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        kept = await read_response(c.reader)
        await c.send(b"GET /id HTTP/1.0\r\n\r\n")
        closed = await read_response(c.reader)
        assert await at_eof(c.reader)
        await c.finish()
        return kept, closed

    kept, closed = run(main())
    assert kept.headers["connection"] == "keep-alive"
    assert closed.headers["connection"] == "close"


def test_client_closing_between_requests_ends_the_handler_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        c = await connect(ServerApp(SID))
        await c.finish()

    run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_idle_connection_is_dropped() -> None:
    async def main() -> bool:
        c = await connect(ServerApp(SID, idle_timeout=0.05))
        await c.send(b"GET /id HT")  # never completes the request
        eof = await at_eof(c.reader)
        await c.finish()
        return eof

    assert run(main())


# ---- stream -----------------------------------------------------------------------------------


async def fetch_stream(app: ServerApp, query: str) -> tuple[int, dict[str, str], PatternVerifier]:
    c = await connect(app)
    await c.get(f"/stream?{query}")
    status, headers = await read_head(c.reader)
    params = dict(p.split("=") for p in query.split("&"))
    v = PatternVerifier(int(params["seed"]))
    while chunk := await c.reader.read(65536):
        v.feed(chunk)
    await c.finish()
    return status, headers, v


@pytest.mark.parametrize("nbytes", [0, 1, 4095, 4097, 300_000])
def test_stream_bytes_verify(nbytes: int) -> None:
    status, headers, v = run(fetch_stream(ServerApp(SID), f"seed=1234567&bytes={nbytes}"))
    assert status == 200
    assert headers["x-server-id"] == SID
    assert headers["content-length"] == str(nbytes)
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/octet-stream"
    assert v.ok, f"first bad byte at {v.error_offset}"
    assert v.received == nbytes  # then EOF: the server closes after a stream


def test_stream_big_seed_and_rate_zero() -> None:
    status, _, v = run(fetch_stream(ServerApp(SID), f"seed={2**64 - 1}&bytes=5000&rate=0"))
    assert status == 200 and v.ok and v.received == 5000


def test_stream_pacing_is_not_a_single_burst() -> None:
    nbytes, rate = 65536, 1 << 20

    async def main() -> tuple[int, float, PatternVerifier]:
        c = await connect(ServerApp(SID))
        loop = asyncio.get_running_loop()
        start = loop.time()
        await c.get(f"/stream?seed=5&bytes={nbytes}&rate={rate}")
        await read_head(c.reader)
        v, reads = PatternVerifier(5), 0
        while chunk := await c.reader.read(1 << 20):
            reads += 1
            v.feed(chunk)
        elapsed = loop.time() - start
        await c.finish()
        return reads, elapsed, v

    reads, elapsed, v = run(main())
    assert v.ok and v.received == nbytes
    assert reads > 1
    # Sanity lower bound only: everything after the first chunk (rate / 50) waits for tokens.
    assert elapsed >= 0.5 * (nbytes - rate // appmod.PACE_HZ) / rate


def test_client_disconnect_mid_stream_is_clean(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        c = await connect(ServerApp(SID))
        await c.get(f"/stream?seed=1&bytes={2**40}")
        await read_head(c.reader)
        await c.reader.readexactly(100_000)
        await c.finish()  # the handler must notice and return, not raise
        assert c.server.exception() is None

    run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_many_concurrent_streams_without_threads() -> None:
    n, size = 300, 20_000

    async def one(app: ServerApp, seed: int) -> PatternVerifier:
        _, _, v = await fetch_stream(app, f"seed={seed}&bytes={size}")
        return v

    async def main() -> list[PatternVerifier]:
        app = ServerApp(SID)
        threads = threading.active_count()
        results = await asyncio.gather(*(one(app, s) for s in range(n)))
        assert threading.active_count() == threads
        assert app.active_connections == 0
        return results

    results = run(main(), timeout=20)
    assert all(v.ok and v.received == size for v in results)


# ---- errors -----------------------------------------------------------------------------------


async def exchange(raw: bytes, app: ServerApp | None = None) -> tuple[Response, bool]:
    """Send ``raw``, read one response, and tell whether the server then closed."""
    c = await connect(app or ServerApp(SID))
    await c.send(raw)
    r = await read_response(c.reader)
    closed = await at_eof(c.reader)
    await c.finish()
    return r, closed


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("bytes=10", "seed"),
        ("seed=1", "bytes"),
        ("seed=abc&bytes=10", "seed"),
        ("seed=-1&bytes=10", "seed"),
        (f"seed={2**64}&bytes=10", "seed"),
        ("seed=1&bytes=-5", "bytes"),
        (f"seed=1&bytes={2**40 + 1}", "bytes"),
        ("seed=1&bytes=1_000", "bytes"),
        ("seed=1&bytes=%201", "bytes"),
        ("seed=1&bytes=10&rate=fast", "rate"),
        ("seed=1&bytes=10&bytes=10", "bytes"),
    ],
)
def test_stream_bad_parameters_are_400_naming_the_parameter(query: str, names: str) -> None:
    r, closed = run(exchange(f"GET /stream?{query} HTTP/1.1\r\n\r\n".encode()))
    assert r.status == 400
    assert f"'{names}'" in r.body.decode()
    assert r.headers["x-server-id"] == SID
    assert closed


def test_parse_stream_query() -> None:
    assert parse_stream_query("seed=3&bytes=4") == (3, 4, 0)
    assert parse_stream_query("bytes=4&rate=9&seed=3&cachebust=x") == (3, 4, 9)


@pytest.mark.parametrize(
    "raw",
    [
        b"garbage\r\n\r\n",
        b"GET /id\r\n\r\n",
        b"GET  /id HTTP/1.1\r\n\r\n",
        b"GET /id HTTP/2.0\r\n\r\n",
        b"GET /id HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /id HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET /id HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        b"GET /id HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
        "GET /\u00e9 HTTP/1.1\r\n\r\n".encode(),
        b"GET /id HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 20_000 + b"\r\n\r\n",
        b"GET /id HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n",
        b"GET id HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_requests_are_400(raw: bytes) -> None:
    r, closed = run(exchange(raw))
    assert r.status == 400
    assert r.headers["x-server-id"] == SID
    assert closed


def test_unknown_path_is_404_and_keeps_the_connection() -> None:
    async def main() -> tuple[Response, Response]:
        c = await connect(ServerApp(SID))
        await c.get("/nope")
        missing = await read_response(c.reader)
        await c.get("/id")
        found = await read_response(c.reader)
        await c.finish()
        return missing, found

    missing, found = run(main())
    assert missing.status == 404 and missing.headers["x-server-id"] == SID
    assert found.status == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD", "OPTIONS"])
def test_other_methods_are_405(method: str) -> None:
    r, closed = run(exchange(f"{method} /id HTTP/1.1\r\n\r\n".encode()))
    assert r.status == 405
    assert r.headers["allow"] == "GET, POST"
    assert r.headers["x-server-id"] == SID
    assert closed


@pytest.mark.parametrize("size", [0, 1, 4096, 200_000])
def test_upload_reads_every_byte_then_answers_with_the_count(size: int) -> None:
    body = bytes(i % 251 for i in range(size))
    head = f"POST /upload HTTP/1.1\r\nContent-Length: {size}\r\n\r\n".encode()
    r, closed = run(exchange(head + body))
    assert r.status == 200 and r.body == f"{SID} {size}\n".encode()
    assert closed


def test_upload_cut_short_gets_no_answer() -> None:
    async def main() -> bool:
        c = await connect(ServerApp(SID))
        c.writer.write(b"POST /upload HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        c.writer.write_eof()
        eof = await at_eof(c.reader)
        await c.finish()
        return eof

    assert run(main()), "the server answered an upload it did not receive whole"


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"POST /upload HTTP/1.1\r\n\r\n", 411),
        (b"POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b"POST /upload HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n", 413),
        (b"POST /stream HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 405),
    ],
)
def test_bad_uploads_are_refused(head: bytes, status: int) -> None:
    r, closed = run(exchange(head))
    assert r.status == status and closed


def test_request_with_body_is_answered_then_closed() -> None:
    r, closed = run(exchange(b"GET /id HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"))
    assert r.status == 200 and r.headers["connection"] == "close"
    assert closed


# ---- UDP, arguments, ready file, shutdown -----------------------------------------------------


def test_udp_reply_format() -> None:
    assert udp_reply("srv-7", b"ping") == b"srv-7 ping"
    assert udp_reply("s", b"") == b"s "
    long = bytes(range(200))
    assert udp_reply("s", long) == b"s " + long[:64]


class FakeDatagramTransport(asyncio.DatagramTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: Any, addr: Any = None) -> None:
        self.sent.append((bytes(data), addr))


def test_udp_responder_answers_the_sender() -> None:
    responder, transport = UdpResponder(SID), FakeDatagramTransport()
    responder.connection_made(transport)
    responder.datagram_received(b"x" * 100, ("198.18.0.9", 4000))
    assert transport.sent == [(b"srv-7 " + b"x" * 64, ("198.18.0.9", 4000))]


class NoCheckSocket:
    """Records SO_NO_CHECK as the responder sets it."""

    def __init__(self) -> None:
        self.no_check = 0

    def setsockopt(self, level: int, opt: int, value: int) -> None:
        assert (level, opt) == (socket.SOL_SOCKET, appmod.SO_NO_CHECK)
        self.no_check = value


def test_udp_responder_answers_nocsum_requests_without_a_checksum() -> None:
    sock = NoCheckSocket()
    states: list[int] = []

    class Transport(FakeDatagramTransport):
        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return sock if name == "socket" else default

        def sendto(self, data: Any, addr: Any = None) -> None:
            states.append(sock.no_check)  # the option as the datagram leaves
            super().sendto(data, addr)

    responder, transport = UdpResponder(SID), Transport()
    responder.connection_made(transport)
    responder.datagram_received(b"nocsum seed 1 flow 0", ("198.18.0.9", 4000))
    responder.datagram_received(b"seed 1 flow 1", ("198.18.0.9", 4001))
    assert states == [1, 0] and sock.no_check == 0  # only the asking datagram, then reset
    assert transport.sent[0][0] == b"srv-7 nocsum seed 1 flow 0"


def test_udp_responder_on_a_real_datagram_endpoint(tmp_path: Path) -> None:
    """The same protocol under asyncio's own datagram transport, over AF_UNIX (no IP)."""

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        server_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server_sock.bind(str(tmp_path / "srv"))
        transport, _ = await loop.create_datagram_endpoint(
            lambda: UdpResponder(SID), sock=server_sock
        )
        client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        client.bind(str(tmp_path / "cli"))
        client.setblocking(False)
        try:
            await loop.sock_sendto(client, b"probe-1", str(tmp_path / "srv"))
            return await loop.sock_recv(client, 200)
        finally:
            client.close()
            transport.close()

    assert run(main()) == b"srv-7 probe-1"


def test_parse_endpoint() -> None:
    assert parse_endpoint("198.18.1.2:80") == ("198.18.1.2", 80)
    assert parse_endpoint("[2001:db8::1]:8080") == ("2001:db8::1", 8080)
    for bad in ["198.18.1.2", "host:80", "198.18.1.2:x", "198.18.1.2:70000", "2001:db8::1:80"]:
        with pytest.raises(ValueError):
            parse_endpoint(bad)


def test_server_id_validation() -> None:
    assert valid_server_id("srv-7")
    assert not valid_server_id("two words")
    assert not valid_server_id("")
    assert not valid_server_id("caf\u00e9")
    with pytest.raises(ValueError):
        ServerApp("bad\r\nid")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--server-id", "a b", "--http", "198.18.0.1:80"],
        ["--server-id", "a", "--http", "localhost:80"],
        ["--server-id", "a"],
    ],
)
def test_cli_rejects_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        appmod.main(argv)
    assert exc.value.code == 2


def test_ready_file_is_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "ready"
    write_ready_file(target)
    write_ready_file(target)  # replaces an existing file
    assert target.read_text() == "ready\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready"]


def test_sigterm_stops_the_server_within_a_second(tmp_path: Path) -> None:
    ready = tmp_path / "app.ready"

    async def main() -> float:
        app = ServerApp(SID)
        server = AppServer(app, http=[], udp=[], ready_file=ready)
        await server.start()  # no IP listener in unit tests: the handlers and ready file only
        assert ready.read_text() == "ready\n"
        c = await connect(app)  # a slow stream that would last ~1000 s
        await c.get("/stream?seed=1&bytes=1000000&rate=1000")
        await read_head(c.reader)
        os.kill(os.getpid(), signal.SIGTERM)
        start = time.monotonic()
        await server.wait()
        await server.close()
        elapsed = time.monotonic() - start
        assert c.server.done()  # the stream was dropped, not left running
        assert not c.server.cancelled() and c.server.exception() is None  # ended quietly
        c.writer.close()
        return elapsed

    assert run(main()) < 1.0


def test_run_returns_zero_after_stop() -> None:
    async def main() -> int:
        server = AppServer(ServerApp(SID), http=[], udp=[])
        server.stopping.set()  # as the SIGTERM handler does
        return await appmod.run(server)

    assert run(main()) == 0
