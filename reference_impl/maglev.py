"""Maglev consistent hashing (Eisenbud et al., NSDI 2016), in pure Python.

The control plane computes each VIP's lookup table here and writes it into the MUX's maps; the
tests use the very same function as the oracle that predicts every MUX decision.

Properties we rely on (and test):
- balance: every backend owns ``floor(M/N)`` or ``ceil(M/N)`` entries;
- low disruption: adding or removing one backend remaps about ``1/N`` of the entries when
  ``M >> N``. The excess over ``1/N`` grows as M/N shrinks: with M = 65,537 it reached 1.0%
  around N = 372 (found by hypothesis), so the default is M = 131,071 (2^17 - 1, prime), which
  keeps it near 0.6-0.7% for N up to 1000;
- determinism: the table depends only on the *set* of backend names and ``M``, never on the
  order they were given in, the process, or the machine.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence

DEFAULT_TABLE_SIZE = 131071  # prime (2^17 - 1); see the disruption note above


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def _h(name: str, salt: bytes) -> int:
    # blake2b is stable across runs and platforms (Python's hash() is salted per process).
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8, salt=salt).digest(), "big")


def permutation_params(name: str, size: int) -> tuple[int, int]:
    """The (offset, skip) pair that defines backend ``name``'s preference list."""
    offset = _h(name, b"maglev-offset") % size
    skip = _h(name, b"maglev-skip") % (size - 1) + 1
    return offset, skip


def build_table(backends: Iterable[str], size: int = DEFAULT_TABLE_SIZE) -> list[int]:
    """The lookup table: entry ``i`` is an index into ``sorted(set(backends))``.

    An empty backend set gives a table of ``-1`` (no backend: the MUX drops and counts).
    Computed once per (set, size) and remembered (a fresh list each call): every MUX of a
    deployment builds the same table for a backend change, and a change undone comes back to a
    set seen before. Uncached, a table of 131,071 entries took ~150 ms of Python per MUX, over
    a second for a change on two MUXes on a loaded machine (SC-4's convergence)."""
    return list(_build_table(tuple(sorted(set(backends))), size))


@functools.lru_cache(maxsize=32)
def _build_table(names: tuple[str, ...], size: int) -> tuple[int, ...]:
    if not is_prime(size):
        raise ValueError(f"Maglev table size must be prime, got {size}")
    n = len(names)
    if n == 0:
        return (-1,) * size
    if n > size:
        raise ValueError(f"{n} backends do not fit a table of {size} entries")
    params = [permutation_params(b, size) for b in names]
    nxt = [0] * n
    table = [-1] * size
    filled = 0
    while True:
        for i in range(n):
            offset, skip = params[i]
            c = (offset + nxt[i] * skip) % size
            while table[c] >= 0:
                nxt[i] += 1
                c = (offset + nxt[i] * skip) % size
            table[c] = i
            nxt[i] += 1
            filled += 1
            if filled == size:
                return tuple(table)


def table_as_names(backends: Iterable[str], size: int = DEFAULT_TABLE_SIZE) -> list[str | None]:
    """The lookup table with backend names instead of indices."""
    names = sorted(set(backends))
    return [names[i] if i >= 0 else None for i in build_table(names, size)]


def disruption(before: Sequence[str | None], after: Sequence[str | None]) -> float:
    """Fraction of table entries whose backend differs between two tables of one size."""
    if len(before) != len(after):
        raise ValueError("tables of different sizes")
    return sum(1 for a, b in zip(before, after, strict=True) if a != b) / len(before)
