"""Run directories: observations saved and loaded back give the same verdicts; ``dsrconform
check`` judges a directory and says what is wrong with a bad one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dsrconform import spec
from dsrconform.cli import main
from dsrconform.errors import ConfigError
from dsrconform.invariants import check_all
from dsrconform.invariants.verdict import Evidence, Status, Verdict
from dsrconform.runfiles import (
    load_observations,
    load_requirements,
    record_requirements,
    save_observations,
)
from tests.unit.observations_builder import SERVER_ADDR, Run


def a_run() -> Run:
    run = Run()
    run.conn(1, 10.0, end_t=20.0, server="server1", mux="mux1")
    run.conn(2, 11.0, end_t=21.0, server="server2", mux="mux2", src="198.18.1.3")
    run.fault("backend-add", 30.0, 31.0, backends_before=["server1"], backends_after=["server1"])
    return run


def test_saved_observations_load_back_to_the_same_verdicts(tmp_path: Path) -> None:
    obs = a_run().obs()
    files = save_observations(obs, tmp_path)
    assert set(files) == {"lab", "history", "taps", "faults"}
    back = load_observations(tmp_path)
    assert back.lab is not None and obs.lab is not None  # (equality would compare lookup caches)
    assert back.lab.model_dump() == obs.lab.model_dump() and back.faults == obs.faults
    assert back.history is not None and obs.history is not None
    assert len(back.history) == len(obs.history)
    assert [v.model_dump() for v in check_all(back)] == [v.model_dump() for v in check_all(obs)]


def test_check_exit_status_follows_the_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    save_observations(a_run().obs(), good)
    broken = a_run()
    broken.conn(3, 12.0, end_t=22.0, reply_src=(SERVER_ADDR["server3"], 8080))
    save_observations(broken.obs(), bad)
    assert main(["check", str(good), "--ids", "RW-1,AF-1"]) == 0
    assert main(["check", str(bad), "--ids", "RW-1", "--json"]) == 1
    assert '"status": "FAIL"' in capsys.readouterr().out
    assert main(["check", str(good), "--ids", "RW-9"]) == 2  # ConfigError naming the ID
    assert "unknown requirement 'RW-9'" in capsys.readouterr().err


def test_a_bad_run_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such run directory"):
        load_observations(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"no lab\.json"):
        load_observations(tmp_path)
    (tmp_path / "lab.json").write_text('{"roles": {"a": "wizard"}}')
    with pytest.raises(ConfigError, match=r"lab.json: roles.a: "):
        load_observations(tmp_path)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--ids", ","], "no requirement selected"),
        (["--families", ""], "no requirement selected"),
        (["--ids", "RW-1", "--set", "RW-6.upload_bytes=1"], "RW-6 is not among"),
        (["--ids", "RW-6", "--set", "RW-6.bogus=1"], "unknown parameter 'bogus'"),
        (["--ids", "RW-6", "--set", "RW-6upload"], "fix: write REQ.PARAM=VALUE"),
    ],
)
def test_bad_selections_are_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    save_observations(a_run().obs(), tmp_path)
    assert main(["check", str(tmp_path), *argv]) == 2
    assert says in capsys.readouterr().err
    # steady checks the same before bringing a lab up (this would need root otherwise)
    assert main(["steady", "labs/basic.yaml", *argv]) == 2
    assert says in capsys.readouterr().err


def test_a_part_an_earlier_run_left_is_removed(tmp_path: Path) -> None:
    save_observations(a_run().obs(), tmp_path)
    assert (tmp_path / "faults.jsonl").exists()
    later = Run()
    later.conn(1, 10.0, end_t=20.0)
    save_observations(later.obs(), tmp_path)
    assert not (tmp_path / "faults.jsonl").exists(), "an old run's fault windows would be read"
    assert load_observations(tmp_path).faults == ()


def _verdict(req: str, status: str) -> Verdict:
    from dsrconform import spec

    extra: dict[str, Any] = {}
    if status == "FAIL":
        extra["evidence"] = [Evidence(message="seen")]
    if status == "UNKNOWN":
        extra["missing"] = ["too few flows"]
    level = spec.get(req).level
    return Verdict(requirement=req, level=level, status=Status(status), message="m", **extra)


@pytest.fixture
def fake_steady(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Verdict]:
    """``dsrconform steady`` without a lab: the run's checks give the verdicts in the list."""
    import dsrconform.chaos.traffic
    import dsrconform.parallelcheck
    from dsrconform.lab import Lab

    verdicts: list[Verdict] = []

    @contextmanager
    def up(*a: Any, **kw: Any) -> Iterator[Any]:
        yield SimpleNamespace(ready_seconds=1.0)

    monkeypatch.setattr(Lab, "up", up)

    def observe(lab: Any, mix: Any, progress: Any) -> Any:
        return SimpleNamespace(observations=a_run().obs())

    monkeypatch.setattr(dsrconform.chaos.traffic, "observe_steady_state", observe)
    monkeypatch.setattr(dsrconform.parallelcheck, "check_parallel", lambda *a, **kw: verdicts)
    monkeypatch.chdir(tmp_path)
    return verdicts


def test_steady_quick_gates_on_the_level_run_gates_on(
    fake_steady: list[Verdict], capsys: pytest.CaptureFixture[str]
) -> None:
    # --quick has too few flows for AF-3 (SHOULD): UNKNOWN, not counted at MUST, as in `run`
    lab = str(Path(__file__).resolve().parents[2] / "labs" / "basic.yaml")
    fake_steady += [_verdict("RW-1", "PASS"), _verdict("AF-3", "UNKNOWN")]
    assert main(["steady", lab, "--quick"]) == 0
    out = capsys.readouterr().out
    assert "less strict than MUST" in out
    assert main(["steady", lab]) == 1  # without --quick every requirement checked counts
    fake_steady[0] = _verdict("RW-1", "FAIL")
    assert main(["steady", lab, "--quick"]) == 1
    fake_steady[:] = [_verdict("AF-3", "UNKNOWN")]  # only less strict ones asked for: they count
    assert main(["steady", lab, "--quick", "--ids", "AF-3"]) == 1


# --- `check` over what `dsrconform run` leaves: each scenario with its own requirements ----------


def a_broken_run() -> Run:
    """a_run() plus a reply from a server's own address: RW-1 FAILs, AF-1 still PASSes."""
    run = a_run()
    run.conn(3, 12.0, end_t=22.0, reply_src=(SERVER_ADDR["server3"], 8080))
    return run


def results_dir(root: Path, scenarios: dict[str, tuple[Run, list[str] | None]]) -> Path:
    """A `dsrconform run` results directory: summary.json, verdicts.jsonl and, per scenario (a
    relative path: several platforms nest them), its run directory with the requirements the
    suites checked on it (None: a directory without that record)."""
    root.mkdir(parents=True)
    (root / "summary.json").write_text(json.dumps({"run": {}, "requirements": {}}))
    (root / "verdicts.jsonl").write_text("")
    for rel, (run, ids) in scenarios.items():
        save_observations(run.obs(), root / rel)
        if ids is not None:
            record_requirements(root / rel, Path(rel).name, ids)
    return root


def check_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(["check", *argv, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out else err


def test_check_judges_each_scenario_of_a_run_with_its_own_requirements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # mux-kill's data would FAIL RW-1, but the suites judged only AF-1 on it
    res = results_dir(
        tmp_path / "run",
        {"steady": (a_run(), ["RW-1", "AF-1"]), "mux-kill": (a_broken_run(), ["AF-1"])},
    )
    code, out = check_json(capsys, str(res))
    assert code == 0
    assert {k: [v["requirement"] for v in s["verdicts"]] for k, s in out["scenarios"].items()} == {
        "mux-kill": ["AF-1"],
        "steady": ["RW-1", "AF-1"],
    }
    assert out["requirements"] == {
        "RW-1": {"level": "MUST", "status": "PASS", "scenarios": {"steady": "PASS"}},
        "AF-1": {
            "level": "MUST",
            "status": "PASS",
            "scenarios": {"mux-kill": "PASS", "steady": "PASS"},
        },
    }
    assert main(["check", str(res)]) == 0
    text = capsys.readouterr().out
    assert "mux-kill" in text and "steady" in text and "worst status" in text


def test_check_of_a_run_reports_the_worst_status_per_requirement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res = results_dir(
        tmp_path / "run",
        {
            "netns-encap/steady": (a_run(), ["RW-1"]),  # several platforms: one level deeper
            "docker-encap/steady": (a_broken_run(), ["RW-1"]),
        },
    )
    code, out = check_json(capsys, str(res))
    assert code == 1
    assert out["requirements"]["RW-1"] == {
        "level": "MUST",
        "status": "FAIL",
        "scenarios": {"docker-encap/steady": "FAIL", "netns-encap/steady": "PASS"},
    }
    assert main(["check", str(res)]) == 1
    capsys.readouterr()


def test_check_of_one_scenario_directory_judges_its_requirements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res = results_dir(tmp_path / "run", {"mux-kill": (a_broken_run(), ["AF-1"])})
    code, out = check_json(capsys, str(res / "mux-kill"))
    assert (code, [v["requirement"] for v in out]) == (0, ["AF-1"])
    code, out = check_json(capsys, str(res / "mux-kill"), "--ids", "RW-1")  # asked for: judged
    assert (code, [v["requirement"] for v in out]) == (1, ["RW-1"])


def test_a_plain_steady_run_directory_keeps_the_default_families(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_observations(a_run().obs(), tmp_path)
    _, out = check_json(capsys, str(tmp_path))
    assert {spec.get(v["requirement"]).family for v in out} == {"RW", "DP", "AF"}


def test_a_selection_narrows_a_run_to_the_scenarios_deciding_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res = results_dir(
        tmp_path / "run",
        {"steady": (a_run(), ["RW-1", "AF-1"]), "mux-kill": (a_broken_run(), ["AF-1"])},
    )
    code, out = check_json(capsys, str(res), "--ids", "RW-1")
    assert (code, list(out["scenarios"]), list(out["requirements"])) == (0, ["steady"], ["RW-1"])
    code, err = check_json(capsys, str(res), "--ids", "DP-1")
    assert code == 2 and "no scenario" in err and "DP-1" in err
    code, err = check_json(capsys, str(res), "--set", "RW-6.upload_bytes=1")
    assert code == 2 and "RW-6 is not among" in err


def test_a_run_directory_without_the_record_needs_a_selection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res = results_dir(tmp_path / "run", {"steady": (a_run(), None)})
    code, err = check_json(capsys, str(res))
    assert code == 2 and "steady" in err and "--ids" in err
    code, out = check_json(capsys, str(res), "--ids", "RW-1")
    assert (code, list(out["requirements"])) == (0, ["RW-1"])


def test_a_directory_with_neither_lab_nor_scenarios_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(tmp_path)]) == 2
    assert "no lab.json" in capsys.readouterr().err


def test_the_requirements_record_merges_and_goes_with_a_new_run(tmp_path: Path) -> None:
    save_observations(a_run().obs(), tmp_path)
    record_requirements(tmp_path, "steady", ["RW-6", "AF-1"])
    record_requirements(tmp_path, "steady", ["RW-1"], {"RW-1": {"min_flows": 2}})
    decided = load_requirements(tmp_path)
    assert decided is not None
    assert (decided.scenario, decided.requirements) == ("steady", ("RW-1", "RW-6", "AF-1"))
    assert decided.params == {"RW-1": {"min_flows": 2}}
    save_observations(a_run().obs(), tmp_path)  # a later run in the same directory
    assert load_requirements(tmp_path) is None
    (tmp_path / "requirements.json").write_text('{"scenario": 1}')
    with pytest.raises(ConfigError, match=r"requirements\.json"):
        load_requirements(tmp_path)


def test_check_uses_the_parameters_the_suites_checked_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_observations(a_run().obs(), tmp_path)
    record_requirements(tmp_path, "steady", ["RW-1"], {"RW-1": {"min_flows": 5}})
    code, out = check_json(capsys, str(tmp_path))
    assert (code, out[0]["status"], out[0]["params"]) == (1, "UNKNOWN", {"min_flows": 5.0})
    code, out = check_json(capsys, str(tmp_path), "--set", "RW-1.min_flows=1")
    assert (code, out[0]["status"], out[0]["params"]) == (0, "PASS", {"min_flows": 1.0})
