"""The ``dsrconform`` command line without privileges: listings, JSON, exit codes, doctor rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsrconform import __version__, cli, doctor, spec
from dsrconform.doctor import CheckResult
from dsrconform.errors import ConfigError, PrivilegeError, ToolMissingError
from dsrconform.report.model import RESULTS_FILE, Results


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"dsrconform {__version__}"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys)
    assert code == 2
    assert "COMMAND" in err


def test_mutants_json_lists_catalogue_with_known_requirements(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "mutants", "--json")
    assert code == 0
    mutants = json.loads(out)
    assert len(mutants) >= 8
    assert len({m["name"] for m in mutants}) == len(mutants), "mutant names must be unique"
    for m in mutants:
        assert m["requirements"], f"{m['name']} cites no requirement"
        unknown = [r for r in m["requirements"] if r not in spec.BY_ID]
        assert not unknown, f"{m['name']} cites unknown requirement IDs {unknown}"
        assert bool(m["caught_by"]) != bool(m["system_level"]), (
            f"{m['name']} must have packet-level catchers or a system-level reason, not both"
        )
        assert m["component"] in {"mux", "agent", "gateway"}


def test_mutants_table_names_every_mutant(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "mutants")
    assert code == 0
    assert "per-mux-hash-seed" in out
    assert "system-level:" in out


def test_spec_json_matches_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "spec", "--json")
    assert code == 0
    reqs = json.loads(out)
    assert [r["id"] for r in reqs] == [r.id for r in spec.REQUIREMENTS]
    assert {r["level"] for r in reqs} <= {"MUST", "SHOULD", "MAY"}


def test_unknown_target_exits_with_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "mutants", "--target", "no-such-stack")
    assert code == ConfigError.exit_code
    assert err.startswith("dsrconform: error: unknown target 'no-such-stack'")
    assert "reference" in err  # the message lists the registered targets


def test_unknown_mutant_is_rejected_before_the_benchmark(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "bench", "mux", "--mutant", "no-such-bug", "--seconds", "0.1")
    assert code == ConfigError.exit_code
    assert "unknown mutant 'no-such-bug'" in err
    assert "dsrconform mutants" in err  # the message names where to find the known ones


def test_bench_suites_times_one_run_per_backend_and_round(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dsrconform.bench import suites

    calls: list[tuple[str, str, str | None, int]] = []

    def fake(backend: str, level: str, lab: str | None, seed: int) -> dict[str, object]:
        calls.append((backend, level, lab, seed))
        ok = backend == "netns"
        row = {"backend": backend, "seed": seed, "seconds": 1.0, "exit": 0 if ok else 1,
               "requirements": {"RW-1": "PASS", "SF-1": "PASS" if ok else "UNKNOWN"}}  # fmt: skip
        return row if ok else row | {"results": "/tmp/dsrc-bench-suites-x"}

    monkeypatch.setattr(suites, "time_run", fake)
    code, out, _ = run(capsys, "bench", "suites", "--backend", "netns", "--rounds", "2",
                       "--seed", "7", "--json")  # fmt: skip
    assert code == 0 and [r["seconds"] for r in json.loads(out)["runs"]] == [1.0, 1.0]
    assert json.loads(out)["stability"]["netns"] == {
        "runs": 2,
        "passed": 2,
        "identical": True,
        "differ": [],
        "seconds": [1.0, 1.0],
    }
    assert calls == [("netns", "MUST", None, 7), ("netns", "MUST", None, 8)]
    code, _, err = run(capsys, "bench", "suites", "--backend", "docker", "--level", "MAY")
    assert code == 1 and "docker: 1.0 s" in err and "1/2 requirements PASS" in err
    # a run that did not pass names what did not, its seed, and where its results were kept
    assert "not PASS: SF-1 UNKNOWN; seed 1; results kept in /tmp/dsrc-bench-suites-x" in err


def test_bench_suites_runs_fail_the_stability_proof_when_verdicts_differ(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dsrconform.bench import suites

    def fake(backend: str, level: str, lab: str | None, seed: int) -> dict[str, object]:
        # Every run exits 0, but the third judged SC-4 UNKNOWN where the others passed it
        # (a MAY-level gate would let that through): the proof is about identical verdicts.
        sc4 = "UNKNOWN" if seed == 3 else "PASS"
        return {
            "backend": backend,
            "seed": seed,
            "seconds": 2.0,
            "exit": 0,
            "requirements": {"RW-1": "PASS", "SC-4": sc4},
        }

    monkeypatch.setattr(suites, "time_run", fake)
    code, _, err = run(capsys, "bench", "suites", "--runs", "5")
    assert code == 1
    assert "netns: 5/5 runs passed, verdicts DIFFERENT (SC-4)" in err


@pytest.mark.parametrize("exit_code", [0, 1])
def test_bench_suites_keeps_the_results_of_a_run_that_did_not_pass(
    exit_code: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import subprocess

    from dsrconform.bench import suites

    monkeypatch.setattr(suites.tempfile, "tempdir", str(tmp_path))
    seen: list[list[str]] = []

    def fake_run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        seen.append(argv)
        results = Path(argv[argv.index("--results") + 1])
        status = "PASS" if exit_code == 0 else "FAIL"
        row = {"id": "RW-1", "level": "MUST", "status": status, "message": "m", "tests": []}
        run = {"seed": 3, "target": "reference", "lab": "x.yaml", "backends": ["docker"]}
        run |= {"level": "MUST", "started": "2026-12-07T00:00:00Z"}
        Results.model_validate({"run": run, "requirements": {"RW-1": row}}).save(results)
        return subprocess.CompletedProcess(argv, exit_code, "", "")

    monkeypatch.setattr(suites.subprocess, "run", fake_run)
    row = suites.time_run("docker", "MUST", None, seed=3)
    assert row["requirements"] == {"RW-1": "PASS" if exit_code == 0 else "FAIL"}
    assert seen[0][seen[0].index("--seed") + 1] == "3" and row["seed"] == 3
    left = list(tmp_path.glob("dsrc-bench-suites-*"))
    if exit_code == 0:
        assert left == [] and "results" not in row
    else:
        assert [str(p) for p in left] == [row["results"]]
        assert (Path(row["results"]) / RESULTS_FILE).exists()


def test_bench_requires_what(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "bench")
    assert code == 2


# --- doctor -----------------------------------------------------------------------------------


def _ok(name: str) -> CheckResult:
    return CheckResult(name, True, "fine")


def test_doctor_json_rows_and_exit_code(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = (
        lambda: _ok("a"),
        lambda: CheckResult("docker engine", False, "down", "start dockerd", required=False),
    )
    monkeypatch.setattr(doctor, "CHECKS", checks)
    code, out, _ = run(capsys, "doctor", "--json")
    rows = json.loads(out)
    assert code == 0, "a failed optional check is only a warning"
    assert [r["status"] for r in rows] == ["ok", "warn"]
    assert set(rows[0]) == {"name", "status", "ok", "required", "detail", "fix"}
    assert rows[1]["fix"] == "start dockerd"


def test_doctor_exit_code_is_the_first_required_failure() -> None:
    rows = [
        _ok("a"),
        CheckResult("w", False, "x", "y", required=False, exit_code=9),
        CheckResult("privileges", False, "not root", "sudo", exit_code=PrivilegeError.exit_code),
        CheckResult("clang", False, "missing", "apt", exit_code=ToolMissingError.exit_code),
    ]
    assert doctor.exit_code(rows) == PrivilegeError.exit_code
    assert doctor.exit_code(rows[:2]) == 0
    assert doctor.exit_code([rows[3]]) == ToolMissingError.exit_code


def test_doctor_table_shows_fix_for_failures(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [_ok("kernel"), CheckResult("clang", False, "not on PATH", "apt-get install clang")]
    doctor.print_table(rows)
    out = capsys.readouterr().out
    assert "FAIL" in out and "apt-get install clang" in out
    assert "cannot run" in out


# --- doctor's check functions, fed fabricated system state -------------------------------------

ROOT_STATUS = "Name:\tpython\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n"
USER_STATUS = "Name:\tpython\nCapEff:\t0000000000000000\n"
NET_ADMIN_ONLY = f"CapEff:\t{1 << 12:016x}\n"


def test_privileges_from_capeff() -> None:
    ok = doctor.check_privileges(ROOT_STATUS)
    assert ok.ok and ok.status == "ok"
    bad = doctor.check_privileges(USER_STATUS)
    assert (bad.ok, bad.status, bad.required) == (False, "FAIL", True)
    assert bad.exit_code == PrivilegeError.exit_code
    assert "CAP_BPF" in bad.detail and "run as root" in bad.fix
    partial = doctor.check_privileges(NET_ADMIN_ONLY)
    assert not partial.ok
    assert "CAP_SYS_ADMIN" in partial.detail and "CAP_NET_ADMIN" not in partial.detail


def test_bpffs_unmounted_is_a_warning_with_the_mount_command() -> None:
    mounted = "sysfs /sys sysfs rw 0 0\nbpf /sys/fs/bpf bpf rw,relatime,mode=700 0 0\n"
    assert doctor.check_bpffs(mounted).ok
    r = doctor.check_bpffs("sysfs /sys sysfs rw 0 0\nnone /sys/fs/bpf tmpfs rw 0 0\n")
    assert (r.ok, r.status) == (False, "warn")
    assert r.fix == "mount -t bpf bpf /sys/fs/bpf"


def test_kernel_release_parsing() -> None:
    assert doctor.kernel_version("6.18.44-fc-v509") == (6, 18)
    assert doctor.check_kernel("6.1.0-18-amd64").ok
    old = doctor.check_kernel("5.10.0-28-amd64")
    assert old.status == "warn" and "5.18" in old.fix


def test_a_missing_feature_is_a_warning_saying_what_it_costs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dsrconform import features

    monkeypatch.setattr(features, "BTF_VMLINUX", tmp_path / "no-vmlinux")
    features.clear_cache()
    try:
        r = doctor.feature_check("btf")()
    finally:
        features.clear_cache()
    assert (r.status, r.feature) == ("warn", "btf")
    assert "FileNotFoundError" in r.detail
    assert r.fix == "without it: " + features.FEATURES["btf"].when_missing
    assert r.as_dict()["feature"] == "btf"


def test_missing_tool_names_its_package() -> None:
    check = doctor.tool_check("dsrc-no-such-tool", ["--version"], "pkgname", required=True, why="x")
    r = check()
    assert (r.name, r.status, r.exit_code) == ("dsrc-no-such-tool", "FAIL", 4)
    assert r.fix == "apt-get install pkgname"


def test_a_crashing_check_becomes_a_failed_row() -> None:
    @doctor.check("boom", fix="do the thing")
    def boom() -> CheckResult:
        raise RuntimeError("probe exploded")

    @doctor.check("no-tool", required=False)
    def no_tool() -> CheckResult:
        raise ToolMissingError("clang is needed: apt-get install clang")

    r = boom()
    assert (r.name, r.status, r.fix) == ("boom", "FAIL", "do the thing")
    assert "probe exploded" in r.detail
    t = no_tool()
    assert (t.status, t.exit_code) == ("warn", ToolMissingError.exit_code)
    assert "apt-get install clang" in t.fix


def test_every_registered_check_is_named_and_unique() -> None:
    names = [c.check_name for c in doctor.CHECKS]  # type: ignore[attr-defined]
    assert len(names) == len(set(names))
    for required in ("privileges", "clang", "libbpf", "native XDP on veth", "BPF_PROG_TEST_RUN"):
        assert required in names
    assert "docker engine" in names
