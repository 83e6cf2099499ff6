"""A TCP server on 127.0.0.1 for the traffic generators' unit tests (no lab, no root)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def loopback_server(handler: Handler) -> AsyncIterator[int]:
    """Serve ``handler`` on 127.0.0.1 and yield the port; closed on leaving."""
    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
