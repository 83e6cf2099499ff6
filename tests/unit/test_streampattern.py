"""The stream pattern (a wire protocol) and its verifier: pure Python, no privileges."""

from __future__ import annotations

import hashlib

import pytest

from dsrconform.streampattern import (
    BLOCK,
    DOMAIN,
    PATTERN_V1_VECTORS,
    SEED_MAX,
    PatternVerifier,
    pattern_bytes,
)


@pytest.mark.parametrize(("args", "hexbytes"), sorted(PATTERN_V1_VECTORS.items()))
def test_published_vectors(args: tuple[int, int, int], hexbytes: str) -> None:
    assert pattern_bytes(*args).hex() == hexbytes


def test_definition_matches_the_docstring() -> None:
    seed, k = 0xDEADBEEF, 3
    block = hashlib.shake_128(DOMAIN + seed.to_bytes(8, "big") + k.to_bytes(8, "big")).digest(BLOCK)
    assert pattern_bytes(seed, k * BLOCK, BLOCK) == block


def test_deterministic() -> None:
    a = pattern_bytes(42, 0, 100_000)
    pattern_bytes(43, 0, 5000)  # disturb the one-block cache
    assert pattern_bytes(42, 0, 100_000) == a
    assert len(a) == 100_000


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 1), (1, 10), (4095, 1), (4095, 2), (4096, 4096), (100, 9000), (12_287, 8194), (0, 0)],
)
def test_position_addressable(offset: int, length: int) -> None:
    whole = pattern_bytes(9, 0, 30_000)
    assert pattern_bytes(9, offset, length) == whole[offset : offset + length]


def test_chunked_generation_equals_one_shot() -> None:
    whole = pattern_bytes(5, 0, 50_000)
    pieces, pos = [], 0
    for size in [1, 4095, 3, 5000, 4096, 7, 20_000, 16_798]:
        pieces.append(pattern_bytes(5, pos, size))
        pos += size
    assert b"".join(pieces) == whole


def test_seeds_differ() -> None:
    streams = {pattern_bytes(s, 0, 64) for s in [0, 1, 2, 2**32, SEED_MAX]}
    assert len(streams) == 5
    assert pattern_bytes(1, 8192, 64) != pattern_bytes(2, 8192, 64)


def test_rejects_bad_arguments() -> None:
    for args in [(-1, 0, 1), (2**64, 0, 1), (0, -1, 1), (0, 0, -1)]:
        with pytest.raises(ValueError):
            pattern_bytes(*args)


def test_verifier_accepts_the_stream_in_any_chunking() -> None:
    data = pattern_bytes(77, 0, 40_000)
    v = PatternVerifier(77)
    for start in range(0, len(data), 3333):
        v.feed(data[start : start + 3333])
    assert v.ok and v.error_offset is None
    assert v.received == 40_000


@pytest.mark.parametrize("flip", [0, 1, 4095, 4096, 12_345, 39_999])
def test_verifier_finds_a_flipped_byte_at_its_offset(flip: int) -> None:
    data = bytearray(pattern_bytes(3, 0, 40_000))
    data[flip] ^= 0x01
    v = PatternVerifier(3)
    for start in range(0, len(data), 10_000):
        v.feed(bytes(data[start : start + 10_000]))
    assert v.error_offset == flip
    assert v.received == 40_000


def test_verifier_keeps_the_first_error_and_counts_the_rest() -> None:
    data = bytearray(pattern_bytes(3, 0, 10_000))
    data[500] ^= 0xFF
    data[9000] ^= 0xFF
    v = PatternVerifier(3)
    v.feed(data[:5000])
    v.feed(data[5000:])
    assert v.error_offset == 500
    assert v.received == 10_000


def test_verifier_with_a_start_offset_reports_absolute_positions() -> None:
    data = bytearray(pattern_bytes(8, 100_000, 5000))
    data[10] ^= 0x80
    v = PatternVerifier(8, offset=100_000)
    v.feed(memoryview(bytes(data)))
    assert v.error_offset == 100_010


def test_wrong_seed_fails_at_the_first_byte_it_differs() -> None:
    v = PatternVerifier(1)
    v.feed(pattern_bytes(2, 0, 1000))
    assert v.error_offset is not None and v.error_offset < 1000


def test_truncation_is_not_an_error_by_itself() -> None:
    v = PatternVerifier(11)
    v.feed(pattern_bytes(11, 0, 1234))
    v.feed(b"")
    assert v.ok
    assert v.received == 1234  # the caller compares with the Content-Length it expected
