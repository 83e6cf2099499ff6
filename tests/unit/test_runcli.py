"""``dsrconform run`` without a lab: its options mapped to pytest's, suites, the exit status."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

import pytest

from dsrconform import cli, runcli
from dsrconform.errors import ConfigError
from dsrconform.invariants.verdict import Status
from dsrconform.report.model import RESULTS_FILE, Results, load_results


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(["run", *argv])


@pytest.fixture
def suites(tmp_path: Path) -> Path:
    d = tmp_path / "suites"
    d.mkdir()
    for name in ("test_steady_state.py", "test_syn_flood.py", "conftest.py", "helper.py"):
        (d / name).write_text("")
    return d


FIXED = ["-p", "no:cacheprovider", "-v", "-o", "console_output_style=progress"]


def test_defaults_run_every_suite_at_must(suites: Path) -> None:
    args = parse()
    assert (args.results, args.seed, args.profile) == (None, None, None)  # chosen by the command
    args.results = "results/x"
    results = str(Path("results/x").absolute())
    assert runcli.pytest_argv(args, suites, python="PY") == [
        *("PY", "-m", "pytest", str(suites)),
        *FIXED,
        *("--dsr-level", "MUST", "--dsr-results", results),
    ]


def test_every_option_maps_to_the_plugin(suites: Path, tmp_path: Path) -> None:
    args = parse(
        *("--suite", "syn_flood", "--suite", "test_steady_state.py", "--suite", "syn_flood"),
        *("--target", "acme", "--mutant", "no-rewrite", "--level", "SHOULD"),
        *("--lab", "labs/x.yaml", "--backend", "docker,netns", "--mode", "gateway-nat"),
        *("--seed", "0x10", "--results", str(tmp_path / "out"), "--keep-lab"),
        *("--profile", "quick"),
        *("--requirement", "MF-1,AF-1", "--requirement", "RB-4"),
        *("--", "-x", "-k", "RW and not RW-6", "--", "--dsr-seed", "3"),
    )
    assert runcli.pytest_argv(args, suites, python="PY") == [
        *("PY", "-m", "pytest"),
        *(str(suites / "test_syn_flood.py"), str(suites / "test_steady_state.py")),  # no dup
        *FIXED,
        *("--dsr-level", "SHOULD", "--dsr-results", str(tmp_path / "out")),
        *("--dsr-profile", "quick", "--dsr-target", "acme", "--dsr-mutant", "no-rewrite"),
        *("--dsr-lab", str(Path("labs/x.yaml").absolute())),
        *("--dsr-backend", "docker,netns", "--dsr-mode", "gateway-nat", "--dsr-seed", "16"),
        *("--dsr-requirement", "MF-1,AF-1", "--dsr-requirement", "RB-4"),
        "--dsr-keep-lab",
        *("-x", "-k", "RW and not RW-6", "--", "--dsr-seed", "3"),  # verbatim, after ours
    ]


def test_unknown_suite_lists_the_available_ones(suites: Path) -> None:
    with pytest.raises(ConfigError) as e:
        runcli.pytest_argv(parse("--suite", "steady_state", "--suite", "helper"), suites)
    assert str(e.value).endswith("available: steady_state, syn_flood")
    assert "'helper'" in str(e.value)


def test_unknown_suite_is_a_usage_error_before_pytest_runs(
    suites: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(runcli, "repo_root", lambda: suites.parent)
    monkeypatch.setattr(runcli, "run_pytest", lambda argv: pytest.fail("pytest ran"))
    assert cli.main(["run", "--suite", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dsrconform: error: --suite 'nope': no such suite")
    assert "available: steady_state, syn_flood" in err


def test_the_real_suites_directory_is_found_from_the_package() -> None:
    directory = runcli.suites_dir()
    assert directory == Path(runcli.__file__).resolve().parent.parent / "suites"
    assert "steady_state" in runcli.available_suites(directory)


def test_pytest_options_need_the_double_dash(suites: Path) -> None:
    with pytest.raises(ConfigError, match="after `--`"):
        runcli.extra_args(["-x"])
    with pytest.raises(ConfigError, match="'steady_state'"):
        runcli.pytest_argv(parse("steady_state"), suites)
    assert runcli.extra_args(["--"]) == []
    assert runcli.extra_args([]) == []


@pytest.mark.parametrize(
    "argv",
    [
        ("--level", "must"),
        ("--seed", "-1"),
        ("--seed", "x"),
        ("--backend", "vm"),
        ("--mode", "encap,encap"),
        ("-x",),
    ],
)
def test_bad_options_are_usage_errors(argv: tuple[str, ...]) -> None:
    assert cli.main(["run", *argv]) == 2


# --- exit status from results.json ---------------------------------------------------------------


def summary(**statuses: tuple[str, str]) -> Results:
    """summary(RW_1=("MUST", "PASS"), ...): results deciding those requirements so."""
    reqs = {
        k.replace("_", "-"): {
            "id": k.replace("_", "-"),
            "level": lvl,
            "status": st,
            "message": "m",
            "tests": [],
        }
        for k, (lvl, st) in statuses.items()
    }
    run = {"seed": 1, "target": "reference", "lab": "x.yaml", "backends": ["netns"]}
    run |= {"level": "MUST", "started": "2026-12-07T00:00:00Z"}
    return Results.model_validate({"run": run, "requirements": reqs})


ALL_PASS = summary(RW_1=("MUST", "PASS"), RW_7=("SHOULD", "PASS"), SC_5=("MAY", "PASS"))


@pytest.mark.parametrize(
    ("statuses", "level", "code"),
    [
        ({}, "MUST", 0),
        ({"RW_1": "FAIL"}, "MUST", 1),
        ({"RW_1": "UNKNOWN"}, "MUST", 1),
        ({"RW_7": "FAIL"}, "MUST", 0),  # SHOULD does not count at MUST
        ({"RW_7": "FAIL"}, "SHOULD", 1),
        ({"RW_7": "UNKNOWN"}, "MAY", 1),
        ({"SC_5": "FAIL"}, "SHOULD", 0),
        ({"SC_5": "FAIL"}, "MAY", 1),
    ],
)
def test_exit_status_counts_the_level_and_stricter(
    statuses: dict[str, str], level: str, code: int
) -> None:
    s = ALL_PASS.model_copy(deep=True)
    for k, st in statuses.items():
        s.requirements[k.replace("_", "-")].status = Status(st)
    assert runcli.exit_code(s, level, 1 if statuses else 0) == code


def test_a_requirement_asked_for_and_never_judged_is_not_a_pass() -> None:
    s = ALL_PASS.model_copy(deep=True)
    s.run.requirements_asked = ["RW-1", "MF-2", "SC-5"]  # MF-2 (MUST) judged by no test
    assert runcli.not_judged(s, "MUST") == ["MF-2"]
    assert runcli.exit_code(s, "MUST", 0) == 1
    assert runcli.not_judged(s, "MAY") == ["MF-2"]  # SC-5 (MAY) was judged
    s.run.requirements_asked = ["RW-1", "SC-5"]
    assert runcli.exit_code(s, "MUST", 0) == 0


@pytest.mark.parametrize("pytest_code", [2, 3, 4, 5])
def test_pytest_not_running_through_wins(pytest_code: int) -> None:
    assert runcli.exit_code(ALL_PASS, "MUST", pytest_code) == pytest_code
    assert runcli.exit_code(None, "MUST", pytest_code) == pytest_code


def test_exit_status_without_anything_to_judge() -> None:
    assert runcli.exit_code(None, "MUST", 0) == 1  # no summary: nothing was decided
    only_may = summary(SC_5=("MAY", "FAIL"))
    assert runcli.exit_code(only_may, "MUST", 0) == 1  # nothing decided at MUST: not a pass
    assert runcli.exit_code(only_may, "MUST", 1) == 1
    assert runcli.exit_code(only_may, "MAY", 0) == 1  # the FAIL itself, at MAY
    assert runcli.exit_code(ALL_PASS, "MUST", -9) == 137  # pytest killed by SIGKILL


# --- the whole command with a stand-in for pytest ------------------------------------------------


def test_run_clears_old_results_prints_the_command_and_the_table(
    suites: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = tmp_path / "res"
    results.mkdir()
    ALL_PASS.save(results)
    (results / "steady").mkdir()
    seen: list[list[str]] = []

    def fake_pytest(argv: list[str]) -> int:
        assert not (results / RESULTS_FILE).exists(), "a previous run's results remain"
        seen.append(argv)
        s = summary(RW_1=("MUST", "PASS"), AF_1=("MUST", "UNKNOWN"), RW_7=("SHOULD", "FAIL"))
        s.save(results)
        return 1

    monkeypatch.setattr(runcli, "repo_root", lambda: suites.parent)
    monkeypatch.setattr(runcli, "run_pytest", fake_pytest)
    code = cli.main(["run", "--results", str(results), "--seed", "5", "--", "-x"])
    out = capsys.readouterr().out
    assert code == 1  # AF-1 (MUST) is UNKNOWN
    assert (results / "steady").is_dir()  # only results.json is cleared
    replay = load_results(results).run.replay  # the command's own, recorded
    assert replay == "dsrconform run --level MUST --seed 5 -- -x"
    assert len(seen) == 1 and seen[0][-3:] == ["--dsr-seed", "5", "-x"]
    assert shlex.split(out.splitlines()[0]) == seen[0]  # the command, on one line, first
    assert "2 requirement(s) at MUST or stricter: 1 PASS, 0 FAIL, 1 UNKNOWN" in out
    cells = [line.replace("│", " ").split() for line in out.splitlines()]
    rows = {c[0]: (c[1], c[2]) for c in cells if len(c) == 3 and c[0][:3] in ("RW-", "AF-")}
    assert rows == {
        "RW-1": ("MUST", "PASS"),
        "AF-1": ("MUST", "UNKNOWN"),
        "RW-7": ("SHOULD", "FAIL"),
    }


def test_run_without_results_is_not_a_pass(
    suites: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(runcli, "repo_root", lambda: suites.parent)
    monkeypatch.setattr(runcli, "run_pytest", lambda argv: 0)
    assert cli.main(["run", "--results", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'r' / RESULTS_FILE}: no such file" in err
    assert "was the dsrconform plugin disabled?" in err


def test_unknown_mutant_is_rejected_before_pytest(
    suites: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(runcli, "repo_root", lambda: suites.parent)
    monkeypatch.setattr(runcli, "run_pytest", lambda argv: pytest.fail("pytest ran"))
    assert cli.main(["run", "--mutant", "no-such-bug"]) == ConfigError.exit_code
    assert "unknown mutant 'no-such-bug'" in capsys.readouterr().err


# --- bad input refused before pytest runs (exit 2, nothing started) -------------------------------


@pytest.fixture
def no_pytest(suites: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runcli, "repo_root", lambda: suites.parent)
    monkeypatch.setattr(runcli, "run_pytest", lambda argv: pytest.fail("pytest ran"))


def test_a_bad_lab_file_is_refused_with_its_error(
    no_pytest: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nnodes: 3\n")
    assert cli.main(["run", "--lab", str(bad), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dsrconform: error: {bad}:2: nodes:")  # the topology loader's message
    assert not (tmp_path / "r").exists()
    assert cli.main(["run", "--lab", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_a_lab_file_is_checked_in_every_mode_asked_for(
    no_pytest: None, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = str(Path(__file__).resolve().parents[2] / "labs" / "scale.yaml")  # has no gateway
    assert cli.main(["run", "--lab", lab, "--mode", "encap,gateway-nat"]) == 2
    assert "--mode gateway-nat: gateway-nat needs a node with role gateway" in (
        capsys.readouterr().err
    )


def test_an_unknown_requirement_is_refused_naming_it(
    no_pytest: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "--requirement", "RW-1,XX-99", "--requirement", "RB-4, YY-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dsrconform: error: --requirement: unknown requirement ID(s) 'XX-99',")
    assert "'YY-1'" in err and "'RW-1'" not in err
    assert "`dsrconform spec`" in err
    assert cli.main(["run", "--requirement", ","]) == 2
    assert "--requirement" in capsys.readouterr().err


def test_run_and_the_plugin_default_to_the_same_level(pytester: pytest.Pytester) -> None:
    assert runcli.DEFAULT_LEVEL == "MUST"
    assert parse().level == runcli.DEFAULT_LEVEL
    assert pytester.parseconfig().getoption("dsr_level") == runcli.DEFAULT_LEVEL


# --- run directories accumulate -------------------------------------------------------------------


def test_each_run_gets_its_own_directory_and_latest_follows(
    suites: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[Path] = []

    def fake_pytest(argv: list[str]) -> int:
        where = Path(argv[argv.index("--dsr-results") + 1])
        seed = argv[argv.index("--dsr-seed") + 1]
        assert f"-reference-{seed}" in where.name, where
        assert (tmp_path / "results" / "latest").resolve() == where.resolve()
        summary(RW_1=("MUST", "PASS")).save(where)
        seen.append(where)
        return 0

    from datetime import UTC, datetime

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runcli, "repo_root", lambda: suites.parent)
    monkeypatch.setattr(runcli, "run_pytest", fake_pytest)
    monkeypatch.setattr(runcli, "utc_now", lambda: datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC))
    assert cli.main(["run"]) == 0
    assert cli.main(["run", "--seed", "7"]) == 0
    assert cli.main(["run", "--seed", "7"]) == 0  # same second, same seed: a distinct directory
    assert len({p.resolve() for p in seen}) == 3
    assert seen[1].name.endswith("-reference-7") and seen[2].name.endswith("-reference-7-2")
    assert os.readlink(tmp_path / "results" / "latest") == seen[2].name  # relative link
    assert all(load_results(p).requirements for p in seen)  # none overwritten
    assert f"results in {Path('results') / seen[2].name}" in capsys.readouterr().out


def test_run_directory_names_sort_by_time(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    early = runcli.run_directory(tmp_path, "katran", 3, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    late = runcli.run_directory(tmp_path, "katran", 1, datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert early.name == "20260102T030405Z-katran-3"
    assert early.name < late.name


def test_latest_never_replaces_a_users_file(tmp_path: Path) -> None:
    (tmp_path / "latest").write_text("mine")
    with pytest.raises(ConfigError, match="not a symlink"):
        runcli.link_latest(tmp_path, tmp_path / "run1")
    assert (tmp_path / "latest").read_text() == "mine"


def test_a_module_class_target_makes_a_run_directory_without_colons(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    path = runcli.run_directory(tmp_path, "template_target.minimal:MinimalTarget", 7, when)
    assert path.name == "20260102T030405Z-template_target.minimal_MinimalTarget-7"


def test_target_options_and_the_server_command_reach_the_plugin_and_the_replay(
    suites: Path,
) -> None:
    args = parse(
        *("--target", "katran", "--target-opt", "katran_src=/src", "--target-opt", "hash=maglev"),
        *("--server-command", "sh examples/servers/nginx.sh"),
    )
    args.results = "results/x"
    argv = runcli.pytest_argv(args, suites, python="PY")
    i = argv.index("--dsr-target-opt")
    assert argv[i : i + 4] == [
        "--dsr-target-opt",
        "katran_src=/src",
        "--dsr-target-opt",
        "hash=maglev",
    ]
    assert argv[argv.index("--dsr-server-command") + 1] == "sh examples/servers/nginx.sh"
    replay = shlex.split(runcli.replay_command(args))
    assert replay[replay.index("--target-opt") + 1] == "katran_src=/src"
    assert replay[replay.index("--server-command") + 1] == "sh examples/servers/nginx.sh"


def test_a_target_option_without_a_value_is_refused_before_any_lab() -> None:
    with pytest.raises(ConfigError, match="--target-opt 'katran_src': fix: KEY=VALUE"):
        runcli._cmd_run(parse("--target-opt", "katran_src"))
