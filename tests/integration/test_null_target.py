"""The suites against the ``null`` target (root): a stack that deploys nothing passes nothing.

An adapter that deploys nothing once got RW-2, RW-3 and RB-4 PASS (issue 17): checkers passed on
no evidence. Here the suites run, as users run them, against
:class:`dsrconform.targets.null.NullTarget` on labs/basic.yaml (one lab, in encap: the lab has
its routers, BGP sessions and applications, and no VIP is ever announced, so no request to a VIP
is answered), and every requirement judged must come out UNKNOWN or FAIL, each UNKNOWN saying
what was missing. The target is named as ``module:Class``, as an adapter that is not installed
would be (the entry point ``null`` names the same class).

``make test`` runs the quick profile (the pull-request gate's short run: every RW, AF-1/2/4,
SC-1/3/4, RB-1/2/4; ~40 s); ``make proof`` every MUST suite in full (~3 minutes).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsrconform import spec
from dsrconform.errors import ConfigError
from dsrconform.report.model import Results, load_results
from tests.markers import requires_root

pytestmark = requires_root
REPO = Path(__file__).resolve().parents[2]
NULL = "dsrconform.targets.null:NullTarget"
MUST = {r.id for r in spec.REQUIREMENTS if r.level == "MUST"}


def run_null(tmp: Path, *args: str) -> tuple[int, Results, str, float]:
    """``pytest suites`` against the null target on basic.yaml in encap, at MUST: (exit status,
    results, output tail, seconds)."""
    began = time.monotonic()
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "suites",
            "--dsr-target",
            NULL,
            "--dsr-lab",
            str(REPO / "labs" / "basic.yaml"),
            "--dsr-mode",
            "encap",
            "--dsr-level",
            "MUST",
            "--dsr-seed",
            "1",
            "--dsr-results",
            str(tmp),
            "--dsr-no-evidence",
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    took = time.monotonic() - began
    try:
        results = load_results(tmp)
    except ConfigError:
        pytest.fail(f"no results.json; the run's output:\n{res.stdout[-4000:]}{res.stderr[-2000:]}")
    return res.returncode, results, res.stdout[-4000:], took


def assert_nothing_passed(rc: int, results: Results, out: str) -> None:
    statuses = {k: str(r.status) for k, r in results.requirements.items()}
    assert results.run.target == NULL and results.run.modes == ["encap"]
    assert rc == 1, out  # UNKNOWN and FAIL fail the run
    passed = sorted(k for k, s in statuses.items() if s == "PASS")
    assert not passed, f"the null target passed {passed}: {statuses}"
    assert set(statuses.values()) <= {"UNKNOWN", "FAIL"}, statuses
    for test in results.tests:
        for req, decision in test.decisions.items():
            if decision.status != "UNKNOWN":
                continue
            verdicts = [v for v in test.verdicts if v.requirement == req]
            if verdicts:  # the checker ran: it names the data it missed
                assert all(v.missing or v.error for v in verdicts), (test.nodeid, verdicts)
                assert all(all(m.strip() for m in v.missing) for v in verdicts), test.nodeid
            else:  # the scenario could not run on such a stack: its error says why
                assert "Scenario" in decision.message or "LabError" in decision.message, (
                    test.nodeid,
                    decision.message,
                )
    # The three the issue found passing are judged, and decided on what was missing.
    for req in ("RW-2", "RW-3", "RB-4"):
        assert statuses.get(req) == "UNKNOWN", (req, statuses.get(req))


def test_the_null_target_passes_nothing_in_the_quick_profile(tmp_path: Path) -> None:
    rc, results, out, took = run_null(tmp_path, "--dsr-profile", "quick")
    assert_nothing_passed(rc, results, out)
    judged = set(results.requirements)
    assert {"RW-1", "RW-2", "RW-3", "AF-1", "SC-4", "RB-1", "RB-2", "RB-4"} <= judged, judged
    print(f"quick profile against the null target: {took:.1f} s")


@pytest.mark.proof
def test_the_null_target_passes_no_must_requirement(tmp_path: Path) -> None:
    rc, results, out, took = run_null(tmp_path)
    assert_nothing_passed(rc, results, out)
    assert set(results.requirements) == MUST
    print(f"every MUST suite against the null target: {took:.1f} s")
