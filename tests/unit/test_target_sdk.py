"""The target SDK without a lab: ``load_target`` and ``dsrconform target check`` on tiny adapters,
good and broken, named as ``module:Class`` (this module's classes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from dsrconform import cli
from dsrconform.errors import ConfigError
from dsrconform.target import MutantInfo, load_target, target_version
from dsrconform.targetcli import check_target, deployment_class

HERE = __name__


class GoodDeployment:
    def wait_ready(self, timeout: float) -> float:
        return 0.0

    def status(self) -> dict[str, Any]:
        return {}

    def restart(self, node: str) -> None:
        pass

    def counters(self) -> dict[str, dict[str, int]]:
        return {}

    def set_backends(
        self, service: str, servers: Sequence[str], *, draining: Sequence[str] = ()
    ) -> None:
        pass

    def backends(self, service: str) -> dict[str, list[str]]:
        return {"active": [], "draining": []}

    def close(self) -> None:
        pass


class NoCloseDeployment(GoodDeployment):
    close = None  # type: ignore[assignment]


MUTANTS = [MutantInfo("bug", "a deliberate bug", ("RW-1",), "mux", caught_by=("steady",))]


class Good:
    """A minimal adapter that keeps every rule."""

    name = "good"
    modes = ("encap",)
    families = ("ipv4",)

    def __init__(self, mutant: str | None = None, options: dict[str, str] | None = None) -> None:
        if mutant is not None and mutant not in [m.name for m in self.mutants()]:
            raise ConfigError(f"unknown mutant {mutant!r}; known: bug")
        if options:
            raise ConfigError(f"unknown option(s) {', '.join(options)}; this target has none")
        self.mutant = mutant

    def mutants(self) -> list[MutantInfo]:
        return list(MUTANTS)

    def deploy(self, lab: Any) -> GoodDeployment:
        raise AssertionError("no lab in these tests")


class NoFamiliesNoDeploy:
    name = "broken"
    modes = ("encap",)

    def __init__(self, mutant: str | None = None, options: dict[str, str] | None = None) -> None:
        self.mutant = mutant

    def mutants(self) -> list[MutantInfo]:
        return []


class WrongKinds(Good):
    mutants = MUTANTS  # type: ignore[assignment]  # data where a method belongs

    def modes(self) -> tuple[str, ...]:  # type: ignore[override]  # a method where data belongs
        return ("encap",)


class NoOptions(Good):
    def __init__(self, mutant: str | None = None) -> None:
        super().__init__(mutant)


class Lenient(Good):
    """Accepts any mutant and any option."""

    def __init__(self, mutant: str | None = None, options: dict[str, str] | None = None) -> None:
        self.mutant = mutant


class BadMutants(Good):
    def mutants(self) -> list[MutantInfo]:
        return [
            MutantInfo("typo", "cites no real requirement", ("RW-99",), "mux"),
            MutantInfo("typo", "repeats a name", ("RW-1",), "mux"),
        ]

    def __init__(self, mutant: str | None = None, options: dict[str, str] | None = None) -> None:
        if mutant not in (None, "typo") or options:
            raise ConfigError("unknown mutant or option")
        self.mutant = mutant


class BadCapabilities(Good):
    modes = ("dsr",)  # type: ignore[assignment]
    families = ("ipx",)  # type: ignore[assignment]


class IncompleteDeploy(Good):
    def deploy(self, lab: Any) -> NoCloseDeployment:
        raise AssertionError("no lab")


class UnannotatedDeploy(Good):
    def deploy(self, lab):  # type: ignore[no-untyped-def]
        raise AssertionError("no lab")


def outcomes(name: str) -> dict[str, str]:
    """check -> PASS/FAIL/SKIP/INFO plus the detail, for target ``name``."""
    return {c.what: f"{c.outcome} {c.detail}" for c in check_target(f"{HERE}:{name}")}


def test_a_good_adapter_passes_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["target", "check", f"{HERE}:Good"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert not [line for line in out if line.startswith("FAIL")]
    assert "PASS  unknown mutant: refused with ConfigError" in out
    assert "PASS  Deployment (GoodDeployment).close: method" in out
    assert out[-1].startswith(f"target {HERE}:Good: ") and out[-1].endswith(" 0 failed")


def test_the_reference_adapter_passes_and_its_deployment_resolves() -> None:
    assert all(c.outcome != "FAIL" for c in check_target("reference"))
    from reference_impl.target import ReferenceTarget

    dep, why = deployment_class(ReferenceTarget)
    assert dep is not None and dep.__name__ == "ReferenceDeployment", why


def test_load_target_names_every_missing_member() -> None:
    with pytest.raises(ConfigError) as e:
        load_target(f"{HERE}:NoFamiliesNoDeploy")
    msg = str(e.value)
    assert "does not implement dsrconform.target.Target" in msg
    assert "missing attribute 'families'" in msg and "missing method 'deploy'" in msg
    assert "'modes'" not in msg and "'mutants'" not in msg  # present members are not named
    assert "target check" in msg


def test_target_check_names_each_missing_member(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["target", "check", f"{HERE}:NoFamiliesNoDeploy"]) == 1
    fails = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("FAIL")]
    assert [f.split(":")[0] for f in fails] == [
        "FAIL  Target.families",
        "FAIL  Target.deploy",
        "FAIL  unknown mutant",  # it accepts any mutant and any option, too
        "FAIL  unknown option",
    ]
    assert "fix: define families" in fails[0]


def test_members_of_the_wrong_kind_are_named() -> None:
    got = outcomes("WrongKinds")
    assert got["Target.mutants"].startswith("FAIL 'mutants' must be a method")
    assert got["Target.modes"].startswith("FAIL 'modes' must be an attribute")
    assert got["Target.families"] == "PASS attribute"


def test_a_constructor_without_options_fails_its_check() -> None:
    got = outcomes("NoOptions")
    assert got["constructor"] == "FAIL does not take options="
    assert "unknown option" not in got  # nothing to ask it


def test_unknown_mutants_and_options_must_be_refused() -> None:
    got = outcomes("Lenient")
    assert got["unknown mutant"].startswith("FAIL mutant='dsrconform-check-no-such-mutant' was")
    assert got["unknown option"].startswith("FAIL options=")
    assert outcomes("Good")["unknown option"] == "PASS refused with ConfigError"


def test_mutant_infos_must_cite_catalogue_requirements_under_unique_names() -> None:
    fails = {c.what: c.detail for c in check_target(f"{HERE}:BadMutants") if c.outcome == "FAIL"}
    assert list(fails) == ["mutant 'typo'"]  # the first for RW-99, the second for its name
    results = [c for c in check_target(f"{HERE}:BadMutants") if c.what == "mutant 'typo'"]
    assert [c.outcome for c in results] == ["FAIL", "FAIL"]
    assert "not in the catalogue: RW-99" in results[0].detail
    assert "repeated name" in results[1].detail


def test_capabilities_must_be_known_modes_and_families() -> None:
    got = outcomes("BadCapabilities")
    assert got["capability modes"].startswith("FAIL ('dsr',): unknown ['dsr']")
    assert got["capability families"].startswith("FAIL ('ipx',): unknown ['ipx']")


def test_deployment_members_are_checked_on_the_annotated_class() -> None:
    got = outcomes("IncompleteDeploy")
    assert got["Deployment (NoCloseDeployment).close"].startswith("FAIL 'close' must be a method")
    assert got["Deployment (NoCloseDeployment).wait_ready"] == "PASS method"
    skipped = outcomes("UnannotatedDeploy")["Deployment"]
    assert skipped == (
        "SKIP could not be checked: deploy has no return annotation; annotate deploy with the "
        "deployment class"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("acme", "unknown target 'acme'; registered targets: "),
        ("no_such_module_x:Cls", "no module 'no_such_module_x'; fix: put the directory"),
        (f"{HERE}:Nope", f"module {HERE!r} has no 'Nope'"),
    ],
)
def test_an_unknown_target_exits_2(
    capsys: pytest.CaptureFixture[str], name: str, message: str
) -> None:
    assert cli.main(["target", "check", name]) == 2
    assert message in capsys.readouterr().err


def test_target_list_shows_the_reference_with_its_capabilities(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["target", "list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("reference"))
    assert "reference_impl.target:ReferenceTarget" in line and "families ipv4" in line


def test_a_module_class_target_loads_and_has_no_installed_version() -> None:
    t = load_target(f"{HERE}:Good", mutant="bug")
    assert (t.name, t.mutant, t.families) == ("good", "bug", ("ipv4",))
    assert target_version(f"{HERE}:Good") is None
    assert target_version("reference") is not None


def test_bench_mux_refuses_a_target_without_the_mux_bench_capability(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["bench", "mux", "--target", f"{HERE}:Good"]) == 2
    assert "has no mux_for_bench (the optional MuxBench capability" in capsys.readouterr().err


class NoMutantArg(Good):
    def __init__(self) -> None:  # type: ignore[override]  # the rule broken on purpose
        self.mutant = None


def test_load_target_names_a_constructor_without_mutant_or_options() -> None:
    with pytest.raises(ConfigError, match="its constructor takes no mutant=; fix: def __init__"):
        load_target(f"{HERE}:NoMutantArg")
    with pytest.raises(ConfigError, match=r"takes no options \(given: a\); fix: leave them out"):
        load_target(f"{HERE}:NoOptions", options={"a": "b"})
    assert load_target(f"{HERE}:NoOptions").mutant is None  # without options it loads
    fails = {c.what for c in check_target(f"{HERE}:NoMutantArg") if c.outcome == "FAIL"}
    assert "constructor" in fails


@pytest.mark.parametrize(
    "name", ["reference", "null", "katran", "examples.template_target.minimal:MinimalTarget"]
)
def test_every_shipped_adapter_passes_target_check(name: str) -> None:
    fails = {c.what: c.detail for c in check_target(name) if c.outcome == "FAIL"}
    assert not fails, f"{name}: {fails}"
