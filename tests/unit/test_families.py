"""Suites per address family, without a lab: --dsr-family / run --family parsing, platform ids
(mode x family), the dsr_family fixture, the family's services, NOT APPLICABLE by family, a lab
without the family refused early, capability typos refused by load_target, and the family in
results, run table, HTML, JUnit and the gate, with the catalogue's per-family notes."""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import dsrconform.topofile  # noqa: F401  # once, here (see tests/unit/test_plugin.py)
from dsrconform import cli, runcli, spec
from dsrconform.applicability import Capabilities, lab_test_reasons
from dsrconform.errors import ConfigError
from dsrconform.families import FamilyLab, for_family, lab_families, missing_family, services_of
from dsrconform.invariants.verdict import Status
from dsrconform.report.gate import decide, markdown
from dsrconform.report.junit import junit_address, rewrite_junit
from dsrconform.report.model import TestResult, decide_requirements, load_results
from dsrconform.runopts import FAMILIES, FAMILY_LABS, choice_list
from dsrconform.target import load_target
from dsrconform.topofile import load_topology
from dsrconform.topology import Service
from tests.unit.labfiles import BASIC
from tests.unit.test_not_applicable import LAB_TESTS, no_lab  # noqa: F401  (a fixture)
from tests.unit.test_report_gate import results, verdict

V4 = Service(name="web", vip="198.19.0.10", port=80)
V6 = Service(name="web6", vip="2001:2:0:100::10", port=80)
V46 = Service(name="web46", vip="198.19.0.13", port=80, backend_family="ipv6")  # both runs
BOTH = Capabilities("acme", ("encap",), ("ipv4", "ipv6"))
V4_ONLY = Capabilities("acme", ("encap",), ("ipv4",))
GOOD = "tests.unit.test_target_sdk:Good"  # modes ("encap",), families ("ipv4",)
DUAL_TARGET = "tests.unit.test_families:DualTarget"


# --- options --------------------------------------------------------------------------------------


def test_a_family_list_is_parsed_and_a_bad_one_named() -> None:
    parse = choice_list(FAMILIES)
    assert parse("ipv4,ipv6") == ("ipv4", "ipv6")
    with pytest.raises(argparse.ArgumentTypeError, match="'ipv5': choose from ipv4, ipv6"):
        parse("ipv4,ipv5")
    with pytest.raises(argparse.ArgumentTypeError, match="names a value twice"):
        parse("ipv6,ipv6")


@pytest.mark.parametrize("value", ["ipv5", "ipv4,ipv4", "IPv6"])
def test_a_bad_family_is_exit_2_for_the_cli_and_a_usage_error_for_pytest(
    value: str, pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "--family", value]) == 2
    assert "dsrconform run: error: argument --family: " in capsys.readouterr().err
    result = pytester.runpytest_inprocess("--dsr-family", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--dsr-family*"])


def test_run_maps_family_to_the_plugin_and_replays_it(tmp_path: Path) -> None:
    args = cli.build_parser().parse_args(["run", "--family", "ipv4,ipv6", "--mode", "encap"])
    args.results = str(tmp_path)
    argv = runcli.pytest_argv(args, tmp_path, python="PY")
    assert argv[argv.index("--dsr-family") + 1] == "ipv4,ipv6"
    assert "--family ipv4,ipv6" in runcli.replay_command(args)
    plain = cli.build_parser().parse_args(["run"])
    plain.results = str(tmp_path)
    assert "--dsr-family" not in runcli.pytest_argv(plain, tmp_path, python="PY")


def test_without_a_lab_each_family_has_its_own_and_ipv4_keeps_basic() -> None:
    assert FAMILY_LABS == {"ipv4": "labs/basic.yaml", "ipv6": "labs/dual.yaml"}
    root = Path("/repo")
    assert runcli.family_labs(None, ("ipv4", "ipv6"), root) == [
        "/repo/labs/basic.yaml",
        "/repo/labs/dual.yaml",
    ]
    assert runcli.family_labs("my.yaml", ("ipv4", "ipv6"), root) == ["my.yaml", "my.yaml"]


def test_run_refuses_a_lab_without_the_familys_services_before_pytest(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_pytest(argv: Any) -> int:
        raise AssertionError("pytest started")

    monkeypatch.setattr(runcli, "run_pytest", no_pytest)
    code = cli.main(["run", "--family", "ipv6", "--lab", str(BASIC), "--results", "/nonexistent"])
    assert code == ConfigError.exit_code == 2
    err = capsys.readouterr().err
    assert f"--family ipv6: lab file {BASIC} has no ipv6 service" in err
    assert "fix: --lab labs/dual.yaml, or leave --lab out (ipv6 then runs on labs/dual.yaml)" in err


# --- the family's services ------------------------------------------------------------------------


def test_a_family_drives_the_services_whose_vip_or_backends_are_of_it() -> None:
    assert services_of([V4, V6, V46], "ipv6") == [V6, V46]
    assert services_of([V4, V6, V46], "ipv4") == [V4, V46]
    assert lab_families([V6, V4]) == ("ipv4", "ipv6")
    assert missing_family("lab.yaml", [V4, V6], "ipv6") is None
    why = missing_family("labs/basic.yaml", [V4], "ipv6", flag="--dsr-lab")
    assert why == (
        "lab file labs/basic.yaml has no ipv6 service (its services: web (198.19.0.10)), so no "
        "ipv6 requirement can be judged on it; fix: --dsr-lab labs/dual.yaml, or leave "
        "--dsr-lab out (ipv6 then runs on labs/dual.yaml)"
    )


def test_a_familys_scenarios_see_its_services_and_the_lab_stays_whole() -> None:
    basic = load_topology(BASIC)
    lab = SimpleNamespace(topology=basic, events=["up"], name="s1")
    assert for_family(lab, "ipv4") is lab  # an IPv4-only lab in an IPv4 run: unchanged
    dual = basic.model_copy(update={"services": [*basic.services, V6]})
    lab = SimpleNamespace(topology=dual, events=["up"], name="s1")
    six = for_family(lab, "ipv6")
    assert isinstance(six, FamilyLab)
    assert six.topology.services == [V6] and six.topology.nodes == dual.nodes
    assert (six.name, six.events) == ("s1", lab.events)  # the lab's own state, not a copy
    assert lab.topology is dual
    four = for_family(lab, "ipv4")
    assert [s.name for s in four.topology.services] == [s.name for s in basic.services]


# --- parametrisation --------------------------------------------------------------------------

PLATFORM_TESTS = """
    SEEN = []

    def test_a(dsr_platform, dsr_family):
        assert dsr_family == dsr_platform[2]
        SEEN.append(dsr_platform)

    def test_zz_last():
        print("SEEN", sorted(set(SEEN)))
"""


def test_lab_tests_run_once_per_mode_and_family_with_ids_naming_both(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(PLATFORM_TESTS)
    modes = ("--dsr-mode", "encap,server-nat")
    result = pytester.runpytest_inprocess(
        "-v", "-s", "-p", "no:randomly", *modes, "--dsr-family", "ipv4,ipv6"
    )
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "*mode=encap,server-nat family=ipv4,ipv6 seed=*",
            "*test_a?netns-encap-ipv4? PASSED*",
            "*test_a?netns-server-nat-ipv6? PASSED*",
        ],
        consecutive=False,
    )
    want = sorted(("netns", m, f) for m in ("encap", "server-nat") for f in ("ipv4", "ipv6"))
    assert f"SEEN {want}" in result.stdout.str()


def test_ipv4_alone_keeps_the_ids_it_had_and_one_family_keeps_plain_ids(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(PLATFORM_TESTS)
    modes = ("--dsr-mode", "encap,server-nat")
    for family in ((), ("--dsr-family", "ipv4")):
        result = pytester.runpytest_inprocess("-v", "-s", *modes, *family)
        result.stdout.fnmatch_lines(["*test_a?netns-server-nat? PASSED*"])
    one = pytester.runpytest_inprocess("-v", "-s", "--dsr-family", "ipv6")
    one.stdout.fnmatch_lines(["*::test_a PASSED*"])
    assert "SEEN [('netns', None, 'ipv6')]" in one.stdout.str()


# --- NOT APPLICABLE by family ----------------------------------------------------------------


def test_a_family_the_target_does_not_serve_is_not_applicable() -> None:
    got = lab_test_reasons(V4_ONLY, "encap", "ipv6", ["RW-6", "RB-3"])
    why = "target 'acme' does not serve ipv6 (its capability families: ipv4)"
    assert got == {"RW-6": why, "RB-3": why}
    # An IPv4 test on a lab with IPv6 services: the target could not deploy that lab.
    lab = lab_test_reasons(V4_ONLY, "encap", "ipv4", ["RW-1"], ("ipv4", "ipv6"))
    assert lab is not None and lab["RW-1"].startswith("the lab file has ipv6 services and ")
    assert lab_test_reasons(BOTH, "encap", "ipv6", ["RW-6"], ("ipv4", "ipv6")) is None


class DualTarget:
    """An adapter serving both families (for the plugin's family checks; never deployed)."""

    name = "dual"
    mutant = None
    modes = ("encap",)
    families = ("ipv4", "ipv6")

    def __init__(self, mutant: str | None = None, options: dict[str, str] | None = None) -> None:
        pass

    def mutants(self) -> list[Any]:
        return []

    def deploy(self, lab: Any) -> Any:
        raise AssertionError("never deployed")


def test_the_plugin_skips_a_family_the_target_lacks_before_any_lab(
    pytester: pytest.Pytester,
    no_lab: None,  # noqa: F811
) -> None:
    pytester.makepyfile(LAB_TESTS)
    res = pytester.path / "res"
    args = ["-v", "--dsr-lab", str(BASIC), "--dsr-target", GOOD, "--dsr-results", str(res)]
    result = pytester.runpytest_inprocess(*args, "--dsr-family", "ipv6")
    result.stdout.fnmatch_lines(["*test_rw1 NOT APPLICABLE*", "*2 not applicable*"])
    run = load_results(res)
    assert run.run.families == ["ipv6"]
    assert run.requirements["RW-1"].status == Status.NOT_APPLICABLE
    assert run.requirements["RW-1"].families == ["ipv6"]
    assert "does not serve ipv6" in run.requirements["RW-1"].message
    assert {t.family for t in run.tests} == {"ipv6"}


def test_the_plugin_refuses_a_lab_without_the_family_before_any_lab(
    pytester: pytest.Pytester,
    no_lab: None,  # noqa: F811
) -> None:
    pytester.makepyfile(LAB_TESTS)
    result = pytester.runpytest_inprocess(
        "--dsr-lab", str(BASIC), "--dsr-target", DUAL_TARGET, "--dsr-family", "ipv4,ipv6"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*--dsr-family ipv6: lab file {BASIC} has no ipv6 service*fix: --dsr-lab labs/dual.yaml*"]
    )
    assert "a lab started coming up" not in result.stdout.str()


# --- capabilities ------------------------------------------------------------------------------


class TypoTarget(DualTarget):
    families = ("ipv4", "ip6")


class ModeTypoTarget(DualTarget):
    modes = ("encap", "nat")


@pytest.mark.parametrize(
    ("cls", "field", "known"),
    [("TypoTarget", "families", "ipv4, ipv6"), ("ModeTypoTarget", "modes", "encap, server-nat")],
)
def test_load_target_names_the_target_field_and_known_values_of_a_typo(
    cls: str, field: str, known: str
) -> None:
    name = f"tests.unit.test_families:{cls}"
    with pytest.raises(ConfigError) as e:
        load_target(name)
    text = str(e.value)
    assert text.startswith(f"target {name}: capability {field} ")
    assert f"fix: a tuple of some of {known}" in text


def test_target_check_reports_the_same_typo(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["target", "check", "tests.unit.test_families:TypoTarget"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  capability families: ('ipv4', 'ip6'): unknown ['ip6']" in out


# --- catalogue notes -----------------------------------------------------------------------------


def test_requirements_that_differ_by_family_say_so() -> None:
    rw6 = spec.BY_ID["RW-6"]
    assert "fragmentation needed (type 3, code 4)" in rw6.family_note("ipv4")
    assert "ICMPv6 Packet Too Big (type 2" in rw6.family_note("ipv6")
    assert "extension-header" in spec.BY_ID["RB-1"].family_note("ipv6")
    assert "Fragment header (next header 44)" in spec.BY_ID["RB-3"].family_note("ipv6")
    assert spec.BY_ID["AF-1"].family_note("ipv6") == ""
    for r in spec.REQUIREMENTS:  # every note is of a known family
        assert {f for f, _ in r.family_notes} <= set(FAMILIES), r.id
    text = spec.render_markdown()
    assert "*IPv6:* PMTU signal: ICMPv6 Packet Too Big (type 2, code 0)" in text
    assert spec.BY_ID["RW-6"].as_dict()["family_notes"]["ipv6"] == rw6.family_note("ipv6")


# --- results, run table, HTML, JUnit, gate ---------------------------------------------------


def two_family_results() -> Any:
    base = results(verdict("RW-6"), verdict("RW-6", "FAIL"), verdict("RW-1"))
    families = ("ipv4", "ipv6", "ipv6")
    tests = [t.model_copy(update={"family": f}) for t, f in zip(base.tests, families, strict=True)]
    run = base.run.model_copy(update={"families": ["ipv4", "ipv6"]})
    return base.model_copy(
        update={"tests": tests, "requirements": decide_requirements(tests), "run": run}
    )


def test_results_and_the_gate_name_the_family_a_requirement_failed_in() -> None:
    r = two_family_results()
    assert r.requirements["RW-6"].families == ["ipv4", "ipv6"]
    assert r.families_at("RW-6", Status.FAIL) == ["ipv6"]
    d = decide(r)
    assert [(req, status) for req, status, _ in d.failed] == [("RW-6 (ipv6)", "FAIL")]
    assert "families ipv4, ipv6" in markdown(d, r, None)
    plain = results(verdict("RW-6", "FAIL"))  # an IPv4-only run: keys as they were
    assert [req for req, _, _ in decide(plain).failed] == ["RW-6"]


def test_the_run_table_and_the_html_report_show_the_note_of_the_family_judged(
    tmp_path: Path,
) -> None:
    r = two_family_results()
    lines = runcli.family_note_lines(r)
    assert lines == [f"RW-6 (IPv6): {spec.BY_ID['RW-6'].family_note('ipv6')}"]
    assert runcli.family_note_lines(results(verdict("RW-6"))) == []
    r.save(tmp_path / "run")
    out = tmp_path / "report.html"
    assert cli.main(["report", str(tmp_path / "run"), "-o", str(out)]) == 0
    html = out.read_text()
    assert "ICMPv6 Packet Too Big (type 2, code 0)" in html
    assert "fragmentation needed (type 3, code 4)" in html  # judged in IPv4 too
    assert "address families" in html


def test_junit_carries_each_tests_family() -> None:
    r = two_family_results()
    t: TestResult = r.tests[1]
    classname, name = junit_address(t.nodeid)
    xml = (
        f'<testsuites><testsuite name="pytest" tests="1"><testcase classname="{classname}" '
        f'name="{name}" time="0.0"/></testsuite></testsuites>'
    ).encode()
    root = ET.fromstring(rewrite_junit(xml, r))
    testcase = root.find(".//testcase")
    assert testcase is not None
    case = {p.get("name"): p.get("value") for p in testcase.iter("property")}
    assert case["family"] == "ipv6"
    suite = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert suite["families"] == "ipv4,ipv6"
