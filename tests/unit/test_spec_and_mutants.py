"""The requirement catalogue and the reference stack's mutant catalogue agree with each other.

Every mutant cites known requirement IDs and is either caught by named packet-level checks or
says why only a running system shows it; the reference target exposes exactly this catalogue and
rejects unknown mutants.
"""

from __future__ import annotations

import importlib
import re

import pytest

from dsrconform import spec
from dsrconform.errors import ConfigError
from dsrconform.target import Target, available_targets, load_target
from reference_impl import mutants

ID_RE = re.compile(r"^(RW|DP|AF|SF|MF|SC|RB)-\d+$")


def test_requirement_ids_are_unique_and_well_formed() -> None:
    ids = [r.id for r in spec.REQUIREMENTS]
    assert len(ids) == len(set(ids))
    for r in spec.REQUIREMENTS:
        assert ID_RE.match(r.id), r.id
        assert r.id.startswith(r.family + "-")
        assert r.level in ("MUST", "SHOULD", "MAY")
        assert r.statement.endswith("."), f"{r.id}: statement should be a sentence"


def test_spec_get_names_known_ids_on_a_miss() -> None:
    assert spec.get("RW-1").level == "MUST"
    with pytest.raises(KeyError, match="known: RW-1"):
        spec.get("XX-1")


@pytest.mark.parametrize("m", mutants.CATALOGUE, ids=lambda m: m.name)
def test_mutant_is_well_formed(m: mutants.Mutant) -> None:
    assert m.requirements, "a mutant must violate at least one requirement"
    assert set(m.requirements) <= set(spec.BY_ID), "cites unknown requirement IDs"
    assert bool(m.caught_by) != bool(m.system_level), "caught_by xor system_level"
    assert bool(m.defines) != bool(m.control), "one compile-time define xor one control switch"
    assert all(k.startswith("MUTANT_") for k in m.defines)
    for ref in m.caught_by:
        assert re.match(r"^[\w.]+:\w+$", ref), f"caught_by entry {ref!r} is not module:function"


@pytest.mark.parametrize(
    "ref", sorted({r for m in mutants.CATALOGUE for r in m.caught_by}), ids=str
)
def test_caught_by_names_an_existing_check(ref: str) -> None:
    module, func = ref.split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        pytest.skip(f"{module} is not written yet")
    assert callable(getattr(mod, func, None)), f"{module} has no function {func}"


def test_catalogue_has_enough_distinct_mutants() -> None:
    names = [m.name for m in mutants.CATALOGUE]
    assert len(names) >= 8
    assert len(set(names)) == len(names)
    assert {m.component for m in mutants.CATALOGUE} == {"mux", "agent", "gateway"}


def test_defines_only_apply_to_their_component() -> None:
    assert mutants.defines_for("mux", "modulo-hash") == {"MUTANT_MODULO_HASH": 1}
    assert mutants.defines_for("agent", "modulo-hash") == {}
    assert mutants.defines_for("mux", None) == {}
    assert mutants.control_switches("in-place-table") == {"in_place_tables"}


def test_reference_target_is_registered_and_exposes_the_catalogue() -> None:
    assert "reference" in available_targets()
    target = load_target("reference")
    assert isinstance(target, Target)
    assert target.name == "reference" and target.mutant is None
    assert [i.name for i in target.mutants()] == [m.name for m in mutants.CATALOGUE]
    assert load_target("reference", mutant="modulo-hash").mutant == "modulo-hash"


def test_reference_target_rejects_unknown_mutants() -> None:
    with pytest.raises(ConfigError, match="unknown mutant 'nope'"):
        load_target("reference", mutant="nope")
