"""The lab's server application: who-am-I and pattern streams over HTTP, a UDP echo of identity.

Run on every lab server (one process per server, asyncio, no threads)::

    python -m dsrconform.app --server-id ID [--http ADDR:PORT ...] [--udp ADDR:PORT ...]
                                 [--ready-file PATH]      (at least one --http or --udp)

HTTP/1.1 (a minimal server: request line and headers; GET, and POST for uploads)
    ``GET /`` and ``GET /id``
        ``200``, ``text/plain``, body ``ID\\n``; the connection stays open (keep-alive) unless the
        client asked otherwise (``Connection: close``, or HTTP/1.0 without ``keep-alive``).
    ``GET /stream?seed=S&bytes=N[&rate=R]``
        ``200``, ``Content-Length: N``, body :func:`dsrconform.streampattern.pattern_bytes`
        ``(S, 0, N)``, paced to ``R`` bytes per second if ``R > 0``; then the server closes the
        connection. ``S`` in ``0..2**64-1`` and ``N``, ``R`` in ``0..2**40``, decimal; ``seed``
        and ``bytes`` are required, ``rate`` defaults to 0 (unlimited), other parameters are
        ignored.
    ``POST /upload`` with ``Content-Length: N`` (``N`` up to ``MAX_UPLOAD``)
        reads exactly the ``N`` body bytes, then ``200``, ``text/plain``, body ``ID N\n``: the
        server saw every byte of a client's upload (full-sized segments through the tunnel,
        the encapsulation-overhead requirement). The connection then closes. No body or a
        chunked one: ``411``; too large: ``413``.
    Errors
        ``400`` for a malformed request or a bad parameter (the body names it), ``404`` for any
        other path, ``405`` (``Allow: GET, POST``) for any other method or a POST elsewhere than
        ``/upload``; 400, 405, 411 and 413 close the connection.
    Every response carries ``X-Server-Id: ID`` and ``Content-Length``.

UDP, on each ``--udp`` address
    Every datagram is answered, to its sender, with ``udp_reply(ID, request)``, that is the bytes
    ``ID.encode("ascii") + b" " + request[:64]``: the server identity, one space, then the first
    (at most) 64 bytes of the request, unchanged. ``ID`` contains no space, so the reply splits
    unambiguously at the first space. A request starting with ``nocsum `` is answered with the
    UDP checksum field 0 ("no checksum", as RFC 768 allows over IPv4), so a target's rewrite of
    such replies (which must keep it 0) is exercised. Over IPv6, where a zero checksum is not
    allowed (RFC 8200), the kernel computes it regardless: the reply is otherwise the same.

Addresses are IPv4 or IPv6 (``[ADDR]:PORT``, e.g. ``--http [2001:2:0:100::10]:80``), served
alike; in a dual-stack lab one process listens on the server's VIPs (or addresses) of both.

``--ready-file PATH``
    Once every socket is bound the process writes ``ready\\n`` to PATH atomically (a temporary
    file in the same directory renamed over PATH), so a supervisor waits for PATH to appear
    instead of sleeping. The supervisor removes a stale PATH before starting the process.

SIGTERM or SIGINT closes the listeners, drops open connections and exits 0 within a second. One
line per error goes to stderr (nothing per request unless ``--verbose``); client disconnects are
not errors. Exit status: 0 after a signal, 1 if a socket cannot be bound, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from dsrconform.streampattern import SEED_MAX, pattern_bytes

log = logging.getLogger("dsrconform.app")

MAX_BYTES = 2**40
"""Largest ``bytes`` (and ``rate``) accepted by ``/stream``."""
NO_CHECKSUM_PREFIX = b"nocsum "
"""A UDP request starting with this is answered without a UDP checksum (field 0)."""
SO_NO_CHECK = 11  # Linux <asm-generic/socket.h>: send UDP without a checksum
UDP_ECHO_MAX = 64
"""How many request bytes a UDP reply echoes."""
STREAM_CHUNK = 16384
"""Bytes per write for an unpaced stream (bounds per-connection memory with thousands of them)."""
PACE_HZ = 10
"""Writes per second a paced stream aims at (chunk = rate / PACE_HZ, at most STREAM_CHUNK). 10,
not 50: a lab's 60 slow streams at 50 writes/s kept its servers and stream clients busy enough
to cost the SYN flood scenario a third of its rate on 2 vCPUs."""
MAX_UPLOAD = 64 * 2**20
"""Largest body ``POST /upload`` accepts."""
MAX_HEAD = 16384
"""Largest request head (request line + headers) accepted."""
MAX_HEADERS = 100
IDLE_TIMEOUT = 60.0
"""Seconds a connection may take to send (the rest of) a request before it is dropped."""
LINGER = 2.0
"""Seconds to wait for the client's EOF after a response that closes the connection."""
SHUTDOWN_GRACE = 0.5
"""Seconds given to connection tasks and listeners to finish after SIGTERM."""

_ID_RE = re.compile(r"[!-~]{1,128}")  # visible ASCII, no spaces: fits a header and a UDP reply
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION_RE = re.compile(r"HTTP/1\.[0-9]")
_DIGITS_RE = re.compile(r"[0-9]{1,20}")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
}


def udp_reply(server_id: str, request: bytes) -> bytes:
    """The UDP answer to ``request``: ``b"ID " + request[:64]``."""
    return server_id.encode("ascii") + b" " + request[:UDP_ECHO_MAX]


def valid_server_id(server_id: str) -> bool:
    """1 to 128 visible ASCII characters, no space (used in a header and in UDP replies)."""
    return _ID_RE.fullmatch(server_id) is not None


def parse_endpoint(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``[V6ADDR]:PORT`` for IPv6) to ``(addr, port)``; ValueError if malformed.

    ADDR must be an IP literal: the lab never resolves names.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or _DIGITS_RE.fullmatch(port_text) is None:
        raise ValueError(f"{text!r} is not ADDR:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ipaddress.ip_address(host).version != 6:
            raise ValueError(f"{text!r}: only IPv6 addresses go in brackets")
    elif ipaddress.ip_address(host).version != 4:
        raise ValueError(f"{text!r}: write an IPv6 address as [ADDR]:PORT")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"{text!r}: port {port} is outside 0..65535")
    return host, port


class BadRequest(Exception):
    """A client error answered with ``status`` and a one-line ``message`` body."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)
    """Lower-case names; repeated fields joined with ``", "``."""

    def connection_tokens(self) -> set[str]:
        value = self.headers.get("connection", "")
        return {t.strip().lower() for t in value.split(",") if t.strip()}

    @property
    def keep_alive(self) -> bool:
        tokens = self.connection_tokens()
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    @property
    def has_body(self) -> bool:
        """True if the client sent (or announced) a body, which this server never reads."""
        if "transfer-encoding" in self.headers:
            return True
        return self.headers.get("content-length", "0") != "0"


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request head, or None if the client closed the connection between requests.

    Raises BadRequest for a malformed head and asyncio.IncompleteReadError if the client
    closes in the middle of one.
    """
    size = 0

    async def line() -> bytes:
        nonlocal size
        try:
            data = await reader.readline()
        except ValueError:  # longer than the reader's limit (the excess has been consumed)
            raise BadRequest("request head too large") from None
        size += len(data)
        if size > MAX_HEAD:
            raise BadRequest("request head too large")
        if data and not data.endswith(b"\n"):
            raise asyncio.IncompleteReadError(data, None)
        return data

    first = await line()
    for _ in range(4):  # RFC 9112 2.2: ignore empty lines before the request line
        if first not in (b"\r\n", b"\n"):
            break
        first = await line()
    if not first:
        return None
    try:
        text = first.rstrip(b"\r\n").decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("request line is not ASCII") from None
    parts = text.split(" ")
    if len(parts) != 3 or not parts[1] or _TOKEN_RE.fullmatch(parts[0]) is None:
        raise BadRequest("malformed request line")
    method, target, version = parts
    if _VERSION_RE.fullmatch(version) is None:
        raise BadRequest(f"unsupported protocol version {version[:16]!r}")
    request = Request(method, target, version)
    for _ in range(MAX_HEADERS + 1):
        data = await line()
        if not data:
            raise asyncio.IncompleteReadError(b"", None)
        if data in (b"\r\n", b"\n"):
            break
        if data[:1] in (b" ", b"\t"):
            raise BadRequest("obsolete header line folding")
        name_b, colon, value_b = data.rstrip(b"\r\n").partition(b":")
        name = name_b.decode("latin-1")
        if not colon or _TOKEN_RE.fullmatch(name) is None:
            raise BadRequest("malformed header line")
        key = name.lower()
        value = value_b.decode("latin-1").strip(" \t")
        old = request.headers.get(key)
        request.headers[key] = value if old is None else f"{old}, {value}"
    else:
        raise BadRequest("too many header fields")
    content_length = request.headers.get("content-length")
    if content_length is not None and _DIGITS_RE.fullmatch(content_length) is None:
        raise BadRequest("malformed Content-Length")
    return request


def _int_param(params: dict[str, str], name: str, high: int, default: int | None = None) -> int:
    text = params.get(name)
    if text is None:
        if default is None:
            raise BadRequest(f"missing parameter {name!r}")
        return default
    if _DIGITS_RE.fullmatch(text) is None or int(text) > high:
        raise BadRequest(f"bad parameter {name!r}: expected an integer in 0..{high}")
    return int(text)


def parse_stream_query(query: str) -> tuple[int, int, int]:
    """``(seed, bytes, rate)`` from a ``/stream`` query string; BadRequest naming a bad one."""
    try:
        pairs = urllib.parse.parse_qsl(
            query, keep_blank_values=True, max_num_fields=32, errors="strict"
        )
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("malformed query string") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise BadRequest(f"bad parameter {name!r}: given more than once")
        params[name] = value
    seed = _int_param(params, "seed", SEED_MAX)
    nbytes = _int_param(params, "bytes", MAX_BYTES)
    rate = _int_param(params, "rate", MAX_BYTES, default=0)
    return seed, nbytes, rate


class ServerApp:
    """The HTTP side of one lab server; ``handle_http`` is the per-connection coroutine."""

    def __init__(
        self,
        server_id: str,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        linger: float = LINGER,
        verbose: bool = False,
    ) -> None:
        if not valid_server_id(server_id):
            raise ValueError(f"server id {server_id!r}: use 1-128 visible ASCII characters")
        self.server_id = server_id
        self.idle_timeout = idle_timeout
        self.linger = linger
        self.verbose = verbose
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._id_body = f"{server_id}\n".encode("ascii")

    @property
    def active_connections(self) -> int:
        return len(self._tasks)

    async def close_connections(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Cancel every connection task and wait (at most ``grace`` s) for them to finish."""
        self._closing = True
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)

    async def handle_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection until either side ends it; never raises, except a cancellation
        that is not part of :meth:`close_connections`."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        clean = False
        try:
            while True:
                keep_alive = await self._serve_one(reader, writer)
                if keep_alive is None:  # client closed between requests
                    break
                if not keep_alive:
                    await self._lingering_close(reader, writer)
                    break
            clean = True
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away or stalled: not an error of ours
        except asyncio.CancelledError:
            # Shutting down: end normally. Python 3.11's start_server logs a cancelled
            # connection task as an error (it calls task.exception() on it).
            if not self._closing:
                raise
        except Exception as exc:
            log.error("http %s: %s: %s", _peer(writer), type(exc).__name__, exc)
        finally:
            if task is not None:
                self._tasks.discard(task)
            if clean:
                writer.close()
            else:
                writer.transport.abort()

    async def _serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool | None:
        """Read and answer one request; None on EOF, else whether to keep the connection."""
        try:
            async with asyncio.timeout(self.idle_timeout):
                request = await read_request(reader)
        except BadRequest as exc:
            await self._respond(writer, exc.status, exc.message, keep_alive=False)
            return False
        if request is None:
            return None
        keep_alive = request.keep_alive and not request.has_body
        try:
            path, query = _split_target(request.target)
            if request.method == "POST" and path == "/upload":
                received = await self._upload(reader, request)
                status = 200
                await self._respond(writer, 200, f"{self.server_id} {received}", False)
                keep_alive = False
            elif request.method != "GET":
                raise BadRequest(f"method {request.method} not allowed on {path[:200]!r}", 405)
            elif path in ("/", "/id"):
                status = 200
                await self._respond(writer, 200, self._id_body, keep_alive, "text/plain")
            elif path == "/stream":
                seed, nbytes, rate = parse_stream_query(query)
                status = 200
                await self._stream(writer, seed, nbytes, rate)
                keep_alive = False
            else:
                status = 404
                await self._respond(writer, 404, f"no such path {path[:200]!r}", keep_alive)
        except BadRequest as exc:
            status = exc.status
            keep_alive = False
            await self._respond(writer, exc.status, exc.message, keep_alive=False)
        if self.verbose:
            log.info("%s %s %s -> %d", _peer(writer), request.method, request.target, status)
        return keep_alive

    async def _upload(self, reader: asyncio.StreamReader, request: Request) -> int:
        """Read a ``POST /upload`` body whole (within the idle timeout); return its length."""
        if "transfer-encoding" in request.headers or "content-length" not in request.headers:
            raise BadRequest("POST /upload needs a Content-Length (no chunked bodies)", 411)
        length = int(request.headers["content-length"])
        if length > MAX_UPLOAD:
            raise BadRequest(f"upload of {length} bytes is over the {MAX_UPLOAD} limit", 413)
        left = length
        async with asyncio.timeout(self.idle_timeout):
            while left:
                data = await reader.read(min(left, 65536))
                if not data:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(data)
        return length

    def _head(self, status: int, length: int, keep_alive: bool, content_type: str) -> bytes:
        lines = [
            f"HTTP/1.1 {status} {_REASONS[status]}",
            f"X-Server-Id: {self.server_id}",
            f"Content-Type: {content_type}",
            f"Content-Length: {length}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
        ]
        if status == 405:
            lines.append("Allow: GET, POST")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _respond(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes | str,
        keep_alive: bool,
        content_type: str = "text/plain",
    ) -> None:
        if isinstance(body, str):
            body = (body + "\n").encode("utf-8", "replace")
        writer.write(self._head(status, len(body), keep_alive, content_type) + body)
        await writer.drain()

    async def _stream(
        self, writer: asyncio.StreamWriter, seed: int, nbytes: int, rate: int
    ) -> None:
        writer.write(self._head(200, nbytes, False, "application/octet-stream"))
        chunk = STREAM_CHUNK if rate == 0 else max(1, min(STREAM_CHUNK, rate // PACE_HZ))
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        while sent < nbytes:
            size = min(chunk, nbytes - sent)
            writer.write(pattern_bytes(seed, sent, size))
            sent += size
            await writer.drain()
            if rate == 0 or sent >= nbytes:
                # drain() does not yield while the socket keeps up: let the others run.
                await asyncio.sleep(0)
                continue
            now = loop.time()
            due = start + sent / rate
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > chunk / rate:
                # Fell behind (slow reader): resume from now, never burst more than one chunk.
                start = now - sent / rate

    async def _lingering_close(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Half-close, then wait briefly for the client's EOF before closing.

        Closing with unread client bytes in the kernel would send a RST, which can destroy the
        tail of the response before the client reads it.
        """
        if not writer.can_write_eof():
            return
        writer.write_eof()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.linger):
                while await reader.read(65536):
                    pass


def _split_target(target: str) -> tuple[str, str]:
    if target.startswith("/"):
        path, _, query = target.partition("?")
        return path, query.partition("#")[0]
    parts = urllib.parse.urlsplit(target)
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        return parts.path or "/", parts.query
    raise BadRequest("malformed request target")


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "?")


class UdpResponder(asyncio.DatagramProtocol):
    """Answers every datagram with :func:`udp_reply`."""

    def __init__(self, server_id: str) -> None:
        self.server_id = server_id
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an asyncio.DatagramTransport subclass on every Python (3.11's selector one isn't).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.transport is None:
            return
        reply = udp_reply(self.server_id, data)
        if not data.startswith(NO_CHECKSUM_PREFIX):
            self.transport.sendto(reply, addr)
            return
        # The kernel leaves the checksum field 0 while SO_NO_CHECK is set; a datagram transport
        # sends at once (it queues only when the socket would block, never on a lab link).
        sock = self.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        try:
            self.transport.sendto(reply, addr)
        finally:
            sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 0)

    def error_received(self, exc: Exception) -> None:
        log.error("udp: %s: %s", type(exc).__name__, exc)


def write_ready_file(path: Path) -> None:
    """Write ``ready\\n`` to ``path`` atomically (temporary file in the same directory + rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write("ready\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class AppServer:
    """The whole process: listeners, ready file, signals. ``start``, ``wait``, ``close``."""

    def __init__(
        self,
        app: ServerApp,
        http: Sequence[tuple[str, int]],
        udp: Sequence[tuple[str, int]] = (),
        ready_file: Path | None = None,
    ) -> None:
        self.app = app
        self.http = list(http)
        self.udp = list(udp)
        self.ready_file = ready_file
        self.stopping = asyncio.Event()
        self._servers: list[asyncio.Server] = []
        self._udp: list[asyncio.DatagramTransport] = []
        self._signals: list[int] = []

    async def start(self) -> None:
        """Bind every socket, install the signal handlers, then write the ready file.

        OSError (after closing what was opened) if a socket cannot be bound.
        """
        loop = asyncio.get_running_loop()
        try:
            for host, port in self.http:
                server = await asyncio.start_server(
                    self.app.handle_http, host, port, backlog=4096, limit=MAX_HEAD
                )
                self._servers.append(server)
            for host, port in self.udp:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: UdpResponder(self.app.server_id), local_addr=(host, port)
                )
                self._udp.append(transport)
        except OSError:
            await self.close()
            raise
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
            self._signals.append(sig)
        if self.ready_file is not None:
            write_ready_file(self.ready_file)

    async def wait(self) -> None:
        """Until SIGTERM/SIGINT (or ``stopping.set()``)."""
        await self.stopping.wait()

    async def close(self) -> None:
        """Stop listening, drop every connection, remove the signal handlers."""
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()
        for server in self._servers:
            server.close()
        for transport in self._udp:
            transport.close()
        self._udp.clear()
        await self.app.close_connections()
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), SHUTDOWN_GRACE)
        self._servers.clear()


def _loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    exc = context.get("exception")
    detail = f"{type(exc).__name__}: {exc}" if exc is not None else ""
    log.error("%s %s", context.get("message", "asyncio error"), detail)


async def run(server: AppServer) -> int:
    asyncio.get_running_loop().set_exception_handler(_loop_exception_handler)
    try:
        await server.start()
    except OSError as exc:
        log.error("cannot bind: %s", exc)
        return 1
    try:
        await server.wait()
    finally:
        await server.close()
    return 0


def _endpoint_arg(text: str) -> tuple[str, int]:
    try:
        return parse_endpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _server_id_arg(text: str) -> str:
    if not valid_server_id(text):
        raise argparse.ArgumentTypeError(f"{text!r}: use 1-128 visible ASCII characters, no space")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dsrconform.app",
        description="The lab's server application: /id and /stream over HTTP, UDP identity echo.",
    )
    parser.add_argument("--server-id", required=True, type=_server_id_arg, metavar="ID")
    parser.add_argument(
        "--http", action="append", default=[], type=_endpoint_arg, metavar="ADDR:PORT"
    )
    parser.add_argument(
        "--udp", action="append", default=[], type=_endpoint_arg, metavar="ADDR:PORT"
    )
    parser.add_argument("--ready-file", type=Path, metavar="PATH")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=IDLE_TIMEOUT,
        metavar="S",
        help="drop a connection that sends no complete request for S seconds (default 60)",
    )
    parser.add_argument("--verbose", action="store_true", help="log one line per request")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.http and not args.udp:
        parser.error("nothing to serve: give at least one --http or --udp ADDR:PORT")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"app[{args.server_id}] %(levelname)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO if args.verbose else logging.WARNING)
    log.propagate = False
    app = ServerApp(args.server_id, idle_timeout=args.idle_timeout, verbose=args.verbose)
    server = AppServer(app, args.http, args.udp, args.ready_file)
    return asyncio.run(run(server))


if __name__ == "__main__":
    sys.exit(main())
