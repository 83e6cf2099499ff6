"""The byte pattern streamed by a target's servers, and its verifier (a wire protocol).

A server under test streams a deterministic, seeded pattern so that a client can check every byte
it receives (after failovers, MUX deaths, scale events) without the server's help and without
importing any target's code. Any third-party target implements the same definition.

Pattern definition (version 1)
------------------------------
The stream for a seed ``S`` (an integer, ``0 <= S < 2**64``) is an unbounded sequence of bytes
made of blocks of ``BLOCK = 4096`` bytes. Block ``k`` (``k = 0, 1, 2, ...``) is::

    SHAKE128(b"dsrconform-pattern-v1" || S as 8 bytes big-endian || k as 8 bytes big-endian)

read to 4096 bytes of output (SHAKE128 as in FIPS 202, an extendable-output function available
in every mainstream crypto library; in Python ``hashlib.shake_128(msg).digest(4096)``). The byte
at absolute position ``p`` is byte ``p % 4096`` of block ``p // 4096``: it depends only on
``(S, p)``, so any range can be produced or checked on its own.

Test vectors (``pattern_bytes(seed, offset, length)`` in hex; the second straddles blocks 0 and 1)::

    pattern_bytes(0, 0, 8)                 == 10a2fee82210c533
    pattern_bytes(1, 4094, 4)              == d898925e
    pattern_bytes(2**64 - 1, 2**40 - 4, 4) == b2303756

HTTP endpoint carrying it
-------------------------
``GET /stream?seed=S&bytes=N[&rate=R]`` answers ``200`` with ``Content-Length: N`` and the body
``pattern_bytes(S, 0, N)``, paced to ``R`` bytes per second when ``R > 0`` (unlimited when ``R``
is absent or 0), then closes the connection. ``S`` is in ``0..2**64-1``, ``N`` in ``0..2**40``,
all decimal; a bad or missing parameter is a ``400`` whose body names it. Every response carries
``X-Server-Id``, the identity of the server that produced it.
"""

from __future__ import annotations

import hashlib

BLOCK = 4096
"""Bytes per pattern block."""
DOMAIN = b"dsrconform-pattern-v1"
"""Prefix of every block's SHAKE128 input (versions the definition)."""
SEED_MAX = 2**64 - 1
"""Largest seed."""

PATTERN_V1_VECTORS: dict[tuple[int, int, int], str] = {
    (0, 0, 8): "10a2fee82210c533",
    (1, 4094, 4): "d898925e",
    (SEED_MAX, 2**40 - 4, 4): "b2303756",
}
"""The docstring's test vectors: ``(seed, offset, length)`` -> expected bytes in hex."""

# One-entry cache of the last block generated: streaming in chunks that are not multiples of
# BLOCK asks for the same boundary block twice in a row.
_last: tuple[int, int, bytes] = (-1, -1, b"")


def block(seed: int, k: int) -> bytes:
    """Block ``k`` (4096 bytes) of seed ``seed``'s pattern."""
    global _last
    last = _last
    if last[0] == seed and last[1] == k:
        return last[2]
    data = hashlib.shake_128(DOMAIN + seed.to_bytes(8, "big") + k.to_bytes(8, "big")).digest(BLOCK)
    _last = (seed, k, data)
    return data


def _check(seed: int, offset: int, length: int) -> None:
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"pattern seed {seed} is outside 0..2**64-1")
    if offset < 0 or length < 0:
        raise ValueError(f"pattern offset ({offset}) and length ({length}) must be >= 0")
    if (offset + length) // BLOCK >= 2**64:
        raise ValueError("pattern position beyond 2**64 blocks")


def pattern_bytes(seed: int, offset: int, length: int) -> bytes:
    """``length`` bytes of seed ``seed``'s pattern, from absolute position ``offset``."""
    _check(seed, offset, length)
    if length == 0:
        return b""
    first, start = divmod(offset, BLOCK)
    last, end = divmod(offset + length - 1, BLOCK)
    if first == last:
        return block(seed, first)[start : end + 1]
    parts = [block(seed, first)[start:] if start else block(seed, first)]
    parts.extend(block(seed, k) for k in range(first + 1, last))
    parts.append(block(seed, last)[: end + 1])
    return b"".join(parts)


class PatternVerifier:
    """Checks a received byte stream against the pattern, chunk by chunk.

    ``feed`` the bytes in the order they arrived. ``received`` counts them; ``error_offset`` is
    the absolute stream position of the first byte that differs from the pattern (``None`` while
    every byte matched). After a mismatch the rest is only counted. A stream that simply stops
    early is not an error here: compare ``received`` with the expected length (Content-Length).
    """

    __slots__ = ("error_offset", "offset", "received", "seed")

    def __init__(self, seed: int, offset: int = 0) -> None:
        _check(seed, offset, 0)
        self.seed = seed
        self.offset = offset
        """Absolute position of the first byte fed (0 for a whole stream)."""
        self.received = 0
        self.error_offset: int | None = None

    @property
    def ok(self) -> bool:
        """True while every byte fed so far matched."""
        return self.error_offset is None

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Check the next ``chunk`` of the stream."""
        n = len(chunk)
        if n == 0:
            return
        pos = self.offset + self.received
        self.received += n
        if self.error_offset is not None:
            return
        expected = pattern_bytes(self.seed, pos, n)
        if expected == chunk:
            return
        self.error_offset = pos + _first_difference(expected, bytes(chunk))


def _first_difference(a: bytes, b: bytes) -> int:
    """Index of the first differing byte of two unequal, equally long byte strings."""
    lo, hi = 0, len(a)
    # Bisect on slice equality (C-speed compares), then finish byte by byte.
    while hi - lo > 64:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    for i in range(lo, hi):
        if a[i] != b[i]:
            return i
    raise AssertionError("unreachable: inputs are equal")  # pragma: no cover
