"""The suites as users run them (root): `pytest suites/...` with the plugin's options brings the
reference stack up, and every verdict lands in the results directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dsrconform import spec
from dsrconform.invariants.flood import FLOOD_RATE_SHARE
from tests.markers import requires_root

pytestmark = requires_root
REPO = Path(__file__).resolve().parents[2]


def run_suite(tmp: Path, *args: str, suite: str = "suites/test_steady_state.py"
              ) -> tuple[int, list[dict[str, str]], str]:  # fmt: skip
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         suite, "--dsr-results", str(tmp), "--dsr-seed", "3", "--dsr-level", "MAY", *args],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    path = tmp / "verdicts.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return res.returncode, rows, res.stdout[-3000:]


def test_the_steady_state_suite_passes_on_the_reference_stack(tmp_path: Path) -> None:
    # One mode here, every requirement of the suite; the oracle's MUST run covers every mode.
    rc, rows, out = run_suite(tmp_path, "--dsr-mode", "encap")
    assert rc == 0, out
    want = [r.id for r in spec.REQUIREMENTS if r.family in ("RW", "DP", "AF")]
    assert [r["requirement"] for r in rows] == want, out
    assert {r["status"] for r in rows} == {"PASS"}, out
    assert (tmp_path / "steady" / "taps.jsonl").exists()


def test_the_suite_fails_a_mutant_on_the_requirement_it_names(tmp_path: Path) -> None:
    rc, rows, out = run_suite(
        tmp_path, "--dsr-mutant", "outer-csum-missing", "--dsr-mode", "encap", "-k", "RW-2"
    )
    assert rc == 1, out
    assert [(r["requirement"], r["status"]) for r in rows] == [("RW-2", "FAIL")], out
    assert "invalid IPv4 checksum" in out


def test_the_syn_flood_suite_passes_on_the_reference_stack(tmp_path: Path) -> None:
    rc, rows, out = run_suite(tmp_path, suite="suites/test_syn_flood.py")
    assert rc == 0, out
    assert [(r["requirement"], r["status"]) for r in rows] == [
        ("SF-1", "PASS"),
        ("SF-2", "PASS"),
        ("SF-4", "PASS"),
    ], out
    lines = (tmp_path / "syn-flood" / "faults.jsonl").read_text().splitlines()
    windows = [json.loads(x) for x in lines]  # one per line: details may hold spaces
    (window,) = [w for w in windows if w["kind"] == "syn-flood"]  # then the drain's windows
    # The flood counted: at least the share of R (SF-1's default) the checkers ask for.
    need = FLOOD_RATE_SHARE * spec.get("SF-1").defaults()["flood_rate"]
    assert window["rate"] >= need, window
