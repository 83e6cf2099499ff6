"""An unknown mutant is refused before any lab, BPF program or pytest runs, by ``run``,
``steady``, ``lab up``, ``bench mux``, ``chaos run`` and the plugin's ``--dsr-mutant`` alike,
whatever the target's constructor accepts: the framework checks the name against the target's
own ``mutants()`` (:func:`dsrconform.target.check_mutant`)."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dsrconform import cli, runcli, target
from dsrconform.errors import ConfigError
from dsrconform.target import MutantInfo, check_mutant


class LenientTarget:
    """A target whose constructor takes any mutant name (nothing obliges a target to check)."""

    name = "lenient"
    modes = ("encap",)
    families = ("ipv4",)

    def __init__(self, mutant: str | None = None) -> None:
        self.mutant = mutant

    def mutants(self) -> list[MutantInfo]:
        return [MutantInfo("real-bug", "a bug it has", ("RW-1",), "mux", system_level="why")]

    def mux_for_bench(self, **kw: Any) -> Any:
        raise AssertionError("not in these tests")

    def deploy(self, lab: Any) -> Any:
        raise AssertionError("a lab was deployed")


@pytest.fixture
def lenient(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Registers ``lenient`` beside the installed targets."""
    real = importlib.metadata.entry_points

    def entry_points(*, group: str) -> list[Any]:
        eps: list[Any] = list(real(group=group))
        if group == target.ENTRY_POINT_GROUP:
            eps.append(SimpleNamespace(name="lenient", load=lambda: LenientTarget))
        return eps

    monkeypatch.setattr(target, "entry_points", entry_points)
    yield


@pytest.fixture
def no_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if anything starts bringing a lab up or runs pytest."""
    from dsrconform.lab.lab import Lab

    def brought_up(*a: Any, **kw: Any) -> None:
        pytest.fail("a lab started coming up")

    monkeypatch.setattr(Lab, "_bring_up", brought_up)
    monkeypatch.setattr(runcli, "run_pytest", lambda argv: pytest.fail("pytest ran"))
    from dsrconform.bench import mux
    from dsrconform.chaos import runner

    monkeypatch.setattr(mux, "run_bench", lambda *a, **kw: pytest.fail("the MUX bench ran"))
    monkeypatch.setattr(runner, "run_scenario", lambda *a, **kw: pytest.fail("chaos ran"))


SCENARIOS = Path(__file__).resolve().parents[2] / "labs" / "scenarios"


@pytest.fixture
def lenient_scenario(tmp_path: Path) -> str:
    """A shipped chaos scenario whose target is ``lenient``."""
    text = (SCENARIOS / "server-drain.yaml").read_text()
    lab = (SCENARIOS / "../basic.yaml").resolve()
    text = text.replace("lab: ../basic.yaml", f"lab: {lab}") + "target: lenient\n"
    path = tmp_path / "drain.yaml"
    path.write_text(text)
    return str(path)


def test_check_mutant_knows_the_targets_mutants(lenient: None) -> None:
    assert check_mutant("lenient", None) is None
    info = check_mutant("lenient", "real-bug")
    assert info is not None and info.name == "real-bug"
    with pytest.raises(ConfigError) as e:
        check_mutant("lenient", "nope")
    assert str(e.value) == (
        "unknown mutant 'nope' of target 'lenient'; its mutants "
        "(`dsrconform mutants --target lenient`): real-bug"
    )
    with pytest.raises(ConfigError, match="unknown target 'acme'"):
        check_mutant("acme", "real-bug")


def test_the_reference_targets_mutants_are_known() -> None:
    names = [m.name for m in target.load_target("reference").mutants()]
    assert check_mutant("reference", names[0]) is not None
    with pytest.raises(ConfigError, match=f"its mutants .*: {names[0]}, "):
        check_mutant("reference", "no-such-bug")


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--target", "lenient", "--mutant", "nope"],
        ["steady", "labs/basic.yaml", "--target", "lenient", "--mutant", "nope"],
        ["lab", "up", "labs/basic.yaml", "--target", "lenient", "--mutant", "nope"],
        ["bench", "mux", "--target", "lenient", "--mutant", "nope"],
        ["chaos", "run", "SCENARIO", "--mutant", "nope"],
        ["chaos", "run", "SCENARIO", "--mutant", "nope", "--dry-run"],
    ],
    ids=["run", "steady", "lab-up", "bench-mux", "chaos-run", "chaos-dry-run"],
)
def test_an_unknown_mutant_is_refused_before_any_lab(
    lenient: None,
    no_lab: None,
    lenient_scenario: str,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    argv = [lenient_scenario if a == "SCENARIO" else a for a in argv]
    assert cli.main(argv) == ConfigError.exit_code
    err = capsys.readouterr().err
    assert err.startswith("dsrconform: error: unknown mutant 'nope' of target 'lenient'")
    assert err.rstrip().endswith(": real-bug")


def test_lab_start_checks_the_mutant_before_the_topology(
    lenient: None, no_lab: None, tmp_path: Any
) -> None:
    from dsrconform.lab.lab import Lab

    with pytest.raises(ConfigError, match="unknown mutant 'nope'"):
        Lab.start(tmp_path / "no-such-lab.yaml", target="lenient", mutant="nope")


def test_the_plugin_refuses_an_unknown_mutant_as_a_usage_error(
    lenient: None, pytester: pytest.Pytester
) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_inprocess("--dsr-target", "lenient", "--dsr-mutant", "nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--dsr-mutant: unknown mutant 'nope' of target 'lenient'*"])
    ok = pytester.runpytest_inprocess("--dsr-target", "lenient", "--dsr-mutant", "real-bug")
    ok.assert_outcomes(passed=1)


def test_bench_quick_refuses_an_unknown_mutant_before_its_first_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dsrconform.bench import quick

    monkeypatch.setattr(quick, "time_run", lambda *a, **kw: pytest.fail("a quick run started"))
    assert cli.main(["bench", "quick", "--mutant", "nope"]) == ConfigError.exit_code
    assert "unknown mutant 'nope' of target 'reference'" in capsys.readouterr().err
