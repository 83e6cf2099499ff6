"""The suites as users run them (root): `pytest suites/...` with the plugin's options brings the
reference stack up, and every verdict lands in the results directory.

The fault suites on the correct stack, and each mutant through the suites, are the oracle's
(test_oracle.py): one run each, not again here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dsrconform import spec
from dsrconform.invariants.verdict import Verdict
from dsrconform.report.model import TIMELINE_FILE, load_results
from tests.markers import requires_root

pytestmark = requires_root
REPO = Path(__file__).resolve().parents[2]


def run_suite(
    tmp: Path, *args: str, suite: str = "suites/test_steady_state.py"
) -> tuple[int, list[Verdict], str]:
    """Run one suite into ``tmp``; (exit status, every verdict in test order, its output)."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", suite]
    argv += ["--dsr-results", str(tmp), "--dsr-seed", "3", "--dsr-level", "MAY", *args]
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    verdicts = [v for t in load_results(tmp).tests for v in t.verdicts]
    return res.returncode, verdicts, res.stdout


def test_the_steady_state_suite_passes_on_the_reference_stack(tmp_path: Path) -> None:
    # One mode here, every requirement of the suite; the oracle's MUST run covers every mode.
    rc, rows, out = run_suite(tmp_path, "--dsr-mode", "encap")
    assert rc == 0, out[-3000:]
    want = [r.id for r in spec.REQUIREMENTS if r.family in ("RW", "DP", "AF")]
    assert [v.requirement for v in rows] == want, out[-3000:]
    assert {v.status for v in rows} == {"PASS"}, out[-3000:]
    assert (tmp_path / "steady" / "taps.jsonl").exists()
    # Packet captures ran (the evidence of a FAIL), but nothing failed: no evidence was cut.
    assert "packet captures for the evidence of FAILs" in out
    assert not (tmp_path / "steady" / "evidence").exists()
    assert (tmp_path / "steady" / TIMELINE_FILE).is_file()
    results = load_results(tmp_path)
    assert {t.scenario for t in results.tests} == {"steady"}
    assert {t.run_dir for t in results.tests} == {"steady"}  # relative to the results
