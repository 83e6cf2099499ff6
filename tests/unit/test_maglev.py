"""Maglev table properties: balance, disruption, determinism (pure Python, no privileges)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_impl import maglev

M = maglev.DEFAULT_TABLE_SIZE


def names(n: int, start: int = 0) -> list[str]:
    return [f"198.18.{20 + i // 250}.{i % 250 + 1}" for i in range(start, start + n)]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 64, 100, 333, 1000])
def test_every_backend_share_is_within_one_percent_of_m_over_n(n: int) -> None:
    table = maglev.build_table(names(n))
    counts = [0] * n
    for i in table:
        counts[i] += 1
    ideal = M / n
    worst = max(abs(c - ideal) / ideal for c in counts)
    assert worst <= 0.01, f"N={n}: a backend's share is {worst:.2%} away from M/N"


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 1000), seed=st.integers(0, 2**32 - 1), add=st.booleans())
def test_one_backend_change_remaps_at_most_1_over_n_plus_1_percent(n, seed, add) -> None:
    rng = random.Random(seed)
    pool = names(1200)
    base = rng.sample(pool, n)
    if add:
        changed = [*base, rng.choice([p for p in pool if p not in base])]
    else:
        victim = rng.choice(base)
        changed = [b for b in base if b != victim]
    d = maglev.disruption(maglev.table_as_names(base), maglev.table_as_names(changed))
    bound = 1 / n + 0.01
    assert d <= bound, f"N={n} {'add' if add else 'remove'}: {d:.3%} remapped, bound {bound:.3%}"


def test_the_table_depends_only_on_the_set_of_backends() -> None:
    a = maglev.table_as_names(names(10))
    b = maglev.table_as_names(list(reversed(names(10))) + names(3))
    assert a == b


def test_known_values_pin_the_algorithm() -> None:
    # A change here changes every MUX's decisions: it must be deliberate (and versioned).
    a, b, c = "198.18.20.1", "198.18.20.2", "198.18.20.3"
    t = maglev.table_as_names([a, b, c], 7)
    assert t == [c, a, b, b, a, c, a]
    assert maglev.permutation_params(a, 65537) == maglev.permutation_params(a, 65537)


def test_bad_sizes_and_empty_sets() -> None:
    with pytest.raises(ValueError, match="prime"):
        maglev.build_table(["a"], 65536)
    assert maglev.build_table([], 7) == [-1] * 7
    with pytest.raises(ValueError, match="do not fit"):
        maglev.build_table(names(8), 7)


def test_the_bpf_default_table_size_is_the_control_planes() -> None:
    from reference_impl.layout import C

    assert C("DEFAULT_RING_SIZE") == maglev.DEFAULT_TABLE_SIZE


def test_a_remembered_table_is_a_fresh_list_each_time() -> None:
    """Tables are remembered per set (every MUX builds the same one); a caller changing the
    list it got changes nothing for the next caller."""
    names = ["s1", "s2", "s3"]
    first = maglev.build_table(names, 251)
    first[0] = 99
    again = maglev.build_table(list(reversed(names)), 251)
    assert again[0] != 99 and again == maglev.build_table(names, 251)
    assert all(0 <= i < 3 for i in again)
