"""The checker contract: three-valued verdicts, a crashing checker is UNKNOWN, parameters come
from the catalogue, and the checkers stay pure (pure Python, no privileges)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from dsrconform import spec
from dsrconform.errors import ConfigError
from dsrconform.invariants import Observations, Status, Verdict, check_all, checker, run_checker
from dsrconform.invariants.path import check_return_path_bypasses_mux
from dsrconform.invariants.verdict import (
    MAX_EVIDENCE,
    Evidence,
    Judge,
    MissingData,
    Params,
    resolve_checker,
)
from dsrconform.observe.observations import LabFacts
from dsrconform.topofile import load_topology
from tests.unit.observations_builder import CLIENT, Run, record, tcp

ROOT = Path(__file__).resolve().parents[2]


@checker("RW-1")
def _crashes(obs: Observations, p: Params) -> Verdict:
    raise ZeroDivisionError("division by zero in the checker")


@checker("RW-1")
def _answers_for_another(obs: Observations, p: Params) -> Verdict:
    return Judge("RW-2").verdict(passed="fine", failed="")


@checker("RW-1")
def _returns_garbage(obs: Observations, p: Params) -> Verdict:
    return "PASS"  # type: ignore[return-value]


@checker("RW-1")
def _fails_without_evidence(obs: Observations, p: Params) -> Verdict:
    return Verdict(requirement="RW-1", level="MUST", status=Status.FAIL, message="trust me")


@checker("RW-1")
def _misses_data(obs: Observations, p: Params) -> Verdict:
    raise MissingData("the answer to everything")


def test_a_crashing_checker_is_unknown_never_pass() -> None:
    v = run_checker(_crashes, Observations())
    assert v.status == Status.UNKNOWN
    assert "crashed (ZeroDivisionError: division by zero in the checker)" in v.message
    assert v.error is not None and "ZeroDivisionError" in v.error
    assert v.checker.endswith(":_crashes")


@pytest.mark.parametrize("fn", [_answers_for_another, _returns_garbage, _fails_without_evidence])
def test_a_checker_breaking_the_contract_is_unknown(fn: object) -> None:
    v = run_checker(fn, Observations())  # type: ignore[arg-type]
    assert v.status == Status.UNKNOWN


def test_missing_data_is_unknown_and_says_what() -> None:
    v = run_checker(_misses_data, Observations())
    assert v.status == Status.UNKNOWN and v.missing == ["the answer to everything"]
    assert _misses_data(Observations(), {}).status == Status.UNKNOWN  # also when called directly


def test_verdict_contract() -> None:
    with pytest.raises(ValidationError, match="a FAIL verdict needs evidence"):
        Verdict(requirement="RW-1", level="MUST", status=Status.FAIL, message="x")
    with pytest.raises(ValidationError, match="must say what is missing"):
        Verdict(requirement="RW-1", level="MUST", status=Status.UNKNOWN, message="x")
    v = Verdict(
        requirement="RW-1",
        level="MUST",
        status=Status.FAIL,
        message="x",
        evidence=[Evidence(message="m", flow="f", time=1.0)],
    )
    assert Verdict.model_validate_json(v.model_dump_json()) == v


def test_parameters_default_from_the_catalogue_and_overrides_are_checked() -> None:
    run = Run()
    run.conn(1, 10.0, end_t=20.0)
    v = run_checker("dsrconform.invariants.affinity:check_spread_within_bound", run.obs())
    assert v.params == {"epsilon": 0.05, "min_samples": 2000.0}
    v = run_checker(
        "dsrconform.invariants.affinity:check_spread_within_bound",
        run.obs(),
        {"min_samples": 1, "epsilon": 1},
    )
    assert v.params["min_samples"] == 1.0 and v.thresholds["epsilon"] == 1.0
    for bad, msg in (
        ({"epsilom": 1}, "unknown parameter 'epsilom'; known: epsilon, min_samples"),
        ({"epsilon": True}, "must be a number"),
        ({"epsilon": -1}, "finite and >= 0"),
        ({"epsilon": float("nan")}, "finite"),
    ):
        with pytest.raises(ConfigError, match=msg):
            run_checker("dsrconform.invariants.affinity:check_spread_within_bound", run.obs(), bad)


def test_resolve_checker_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="checker 'nowhere:nothing' not found"):
        resolve_checker("nowhere:nothing")
    with pytest.raises(ConfigError, match="not found"):
        resolve_checker("dsrconform.invariants.flows:attempts")  # a function, not a checker
    with pytest.raises(KeyError, match="unknown requirement 'XX-9'"):
        checker("XX-9")(_crashes.fn)


def test_every_requirement_has_a_resolvable_checker_for_its_id() -> None:
    for r in spec.REQUIREMENTS:
        c = resolve_checker(r.checker)
        assert c.requirement == r.id, f"{r.checker} decides {c.requirement}, not {r.id}"
        assert c.name == r.checker


def test_check_all_runs_every_checker_and_nothing_passes_on_no_data() -> None:
    verdicts = check_all(Observations())
    assert [v.requirement for v in verdicts] == [r.id for r in spec.REQUIREMENTS]
    assert {v.status for v in verdicts} == {Status.UNKNOWN}
    assert all(v.missing for v in verdicts)
    assert [v.requirement for v in check_all(Observations(), ids=["DP-1", "RW-5"])] == [
        "RW-5",
        "DP-1",
    ]
    with pytest.raises(KeyError):
        check_all(Observations(), ids=["XX-1"])


def test_evidence_is_capped_and_the_rest_counted() -> None:
    run = Run()
    run.conn(1, 10.0, end_t=20.0)
    for i in range(MAX_EVIDENCE + 10):
        run.add(record("mux1-in", tcp("198.19.0.10", 80, CLIENT, 30000 + i), 11.0, 12.0))
    v = run_checker(check_return_path_bypasses_mux, run.obs())
    assert v.status == Status.FAIL
    assert len(v.evidence) == MAX_EVIDENCE and v.evidence_omitted == 10


def test_lab_facts_from_the_shipped_topology() -> None:
    facts = LabFacts.from_topology(load_topology(ROOT / "labs" / "basic.yaml"))
    assert facts.nodes("mux") == ["mux1", "mux2"]
    assert facts.is_client("198.18.1.5") and facts.is_client("198.18.201.7")  # flood sources
    assert not facts.is_client("198.18.20.1") and facts.role_of_address("198.18.20.1") == "server"
    assert facts.is_vip("198.19.0.10") and facts.service("198.19.0.11", 7, 17) is not None
    assert [s.name for s in facts.per_mux_services()] == ["edge"]
    assert facts.backends(facts.services[0]) == ["server1", "server2", "server3"]
    # A changed copy rebuilds its lookups (pydantic's plain copy would keep stale caches).
    assert not facts.model_copy(update={"client_networks": []}).is_client("198.18.201.7")
    assert not facts.model_copy(update={"services": []}).is_vip("198.19.0.10")


PURE_MODULES = [
    *sorted((ROOT / "dsrconform" / "invariants").glob("*.py")),
    *(ROOT / "dsrconform" / "observe" / f for f in ("history.py", "taps.py", "jsonl.py")),
]
FORBIDDEN = (
    "subprocess",
    "socket",
    "os",
    "time",
    "random",
    "pyroute2",
    "scapy",
    "docker",
    "dsrconform.lab",
    "dsrconform.netns",
    "dsrconform.bpf",
    "dsrconform.observe.linktap",
)


@pytest.mark.parametrize("path", PURE_MODULES, ids=lambda p: p.name)
def test_checkers_and_records_import_nothing_that_touches_the_system(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            bad = [f for f in FORBIDDEN if name == f or name.startswith(f + ".")]
            assert not bad, f"{path.name} imports {name}: checkers must stay pure"
