"""The requirement catalogue, SPEC.md, and the reference stack's mutant catalogue agree.

Every requirement has well-formed parameters and a checker; SPEC.md is exactly what the code
generates; every mutant cites known requirement IDs and is either caught by named packet-level
checks or says why only a running system shows it; the reference target exposes exactly this
catalogue and rejects unknown mutants.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

from dsrconform import cli, spec
from dsrconform.errors import ConfigError
from dsrconform.target import Target, available_targets, load_target
from reference_impl import mutants

ID_RE = re.compile(r"^(RW|DP|AF|SF|MF|SC|RB)-\d+$")
SPEC_MD = Path(__file__).resolve().parents[2] / "SPEC.md"
DRAFT_IDS = (
    [f"RW-{i}" for i in range(1, 8)]
    + ["DP-1", "DP-2", "AF-1", "AF-2", "AF-3"]
    + [f"{f}-{i}" for f in ("SF", "MF", "RB") for i in range(1, 5)]
    + [f"SC-{i}" for i in range(1, 6)]
)


def test_requirement_ids_are_unique_and_well_formed() -> None:
    ids = [r.id for r in spec.REQUIREMENTS]
    assert len(ids) == len(set(ids))
    for r in spec.REQUIREMENTS:
        assert ID_RE.match(r.id), r.id
        assert r.id.startswith(r.family + "-")
        assert r.level in ("MUST", "SHOULD", "MAY")
        assert r.statement.endswith("."), f"{r.id}: statement should be a sentence"


def test_every_draft_id_is_kept_with_its_level() -> None:
    assert set(DRAFT_IDS) <= set(spec.BY_ID)
    assert [r.id for r in spec.REQUIREMENTS if r.id in DRAFT_IDS and r.level != "MUST"] == [
        "RW-7",
        "DP-2",
        "AF-3",
        "SF-2",
        "SF-3",
        "SC-2",
        "SC-5",
        "RB-3",
    ]
    assert spec.get("SC-5").level == "MAY"
    assert {r.family for r in spec.REQUIREMENTS} == set(spec.FAMILIES)


def test_parameters_and_checkers_are_well_formed() -> None:
    for r in spec.REQUIREMENTS:
        assert re.match(r"^dsrconform\.invariants\.\w+:check_\w+$", r.checker), r.checker
        names = [p.name for p in r.params]
        assert len(names) == len(set(names)), f"{r.id}: a parameter is listed twice"
        for p in r.params:
            assert re.match(r"^[a-z_]+$", p.name) and p.default >= 0 and p.meaning
            assert re.search(rf"\b{re.escape(p.symbol)}\b", r.statement + " " + r.measure), (
                f"{r.id}: parameter {p.symbol} ({p.name}) is not used in its statement or measure"
            )
    assert spec.get("AF-3").defaults() == {"epsilon": 0.05, "min_samples": 2000}
    assert {"flood_rate", "flood_seconds"} <= set(spec.get("SF-1").defaults())
    assert "recovery_seconds" in spec.get("MF-3").defaults()


def test_every_requirement_states_its_minimum_evidence() -> None:
    """What a checker must have seen of the stack working before it may PASS (issue 17: a
    stack that deploys nothing passed RW-2, RW-3 and RB-4), stated for every requirement,
    listed by ``dsrconform spec --json`` and in SPEC.md."""
    for r in spec.REQUIREMENTS:
        assert len(r.minimum) > 20 and r.minimum.endswith("."), r.id
        assert r.as_dict()["minimum"] == r.minimum
        assert f"*Minimum evidence to PASS (else UNKNOWN):* {r.minimum}" in spec.render_markdown()


def test_spec_md_is_generated_from_the_code() -> None:
    assert SPEC_MD.exists(), "SPEC.md is missing; fix: python -m dsrconform.spec --write SPEC.md"
    assert SPEC_MD.read_text(encoding="utf-8") == spec.render_markdown(), (
        "SPEC.md is out of date; fix: python -m dsrconform.spec --write SPEC.md"
    )


def test_spec_module_writes_and_checks_the_markdown(tmp_path: Path) -> None:
    out = tmp_path / "SPEC.md"
    assert spec.main(["--check", str(out)]) == 1
    assert spec.main(["--write", str(out)]) == 0
    assert spec.main(["--check", str(out)]) == 0
    text = out.read_text()
    for r in spec.REQUIREMENTS:
        assert f"### {r.id}" in text and r.checker in text


def test_cli_spec_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["spec", "--json"]) == 0
    reqs = json.loads(capsys.readouterr().out)
    sf1 = next(r for r in reqs if r["id"] == "SF-1")
    assert sf1["checker"] == spec.get("SF-1").checker and sf1["measure"]
    assert {p["name"]: p["default"] for p in sf1["params"]} == spec.get("SF-1").defaults()
    assert cli.main(["spec", "--markdown"]) == 0
    assert capsys.readouterr().out == spec.render_markdown()
    assert cli.main(["spec"]) == 0
    table = capsys.readouterr().out
    assert "check_spread_within_bound" in table and "epsilon=0.05" in table
    assert cli.main(["spec", "--json", "--markdown"]) == 2


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
