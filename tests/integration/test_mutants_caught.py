"""Every mutant of the reference stack is caught: its packet-level checks fail against it.

A mutant the packet tests cannot see must say why (``system_level``); the conformance suites
catch those. A check that passes against its mutant is a bug in the check, not in the catalogue.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pytest

from reference_impl.mutants import CATALOGUE, Mutant
from tests.markers import requires_root


def _resolve(ref: str) -> Callable[[str | None], None]:
    module, func = ref.split(":")
    return getattr(importlib.import_module(module), func)


@requires_root
@pytest.mark.parametrize("mutant", [m for m in CATALOGUE if m.caught_by], ids=lambda m: m.name)
def test_packet_checks_catch_the_mutant(mutant: Mutant) -> None:
    for ref in mutant.caught_by:
        with pytest.raises(AssertionError) as caught:
            _resolve(ref)(mutant.name)
        print(f"{mutant.name} caught by {ref}: {str(caught.value).splitlines()[0]}")


@requires_root
@pytest.mark.parametrize("ref", sorted({r for m in CATALOGUE for r in m.caught_by}))
def test_the_same_checks_pass_on_the_correct_stack(ref: str) -> None:
    _resolve(ref)(None)


def test_every_mutant_is_caught_or_says_why_not() -> None:
    for m in CATALOGUE:
        assert bool(m.caught_by) != bool(m.system_level), (
            f"mutant {m.name}: give either packet checks (caught_by) or a system_level reason"
        )
        for ref in m.caught_by:
            assert callable(_resolve(ref)), f"{m.name}: {ref} is not a function"
