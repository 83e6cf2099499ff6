"""The oracle (root): the suites, run as users run them, FAIL every requirement each mutant of
the reference stack names, and pass every MUST on the correct stack, five runs in a row with
identical verdicts.

Each run is ``pytest suites/`` in a subprocess with the plugin's options and ``--dsr-results``,
judged from the ``summary.json`` it leaves (the worst status per requirement over the tests
citing it). A mutant runs only the tests citing its requirements (``--dsr-requirement``), at
every level, on the lab and mode its bug shows in. A mutant no suite catches yet is listed in
:data:`NOT_CAUGHT_YET` with the reason, as a strict xfail: it is a gap of the suites (the issue
stays open while it is), and the day a suite catches it the xfail fails until it is removed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dsrconform import spec
from dsrconform.target import load_target
from tests.markers import requires_root

pytestmark = requires_root
REPO = Path(__file__).resolve().parents[2]
MUTANTS = load_target("reference").mutants()

WHERE: dict[str, tuple[str, str]] = {
    "nat-no-pseudo-hdr": ("basic", "server-nat"),
    "udp-zero-csum-lost": ("basic", "server-nat"),
    # Several VIPs share one server port there: a reply's VIP must come from its flow.
    "nat-wrong-vip": ("multi-mux-nat", "server-nat"),
    "gateway-no-l4-csum": ("basic", "gateway-nat"),
}
"""Lab file and mode a mutant's bug shows in (default: basic.yaml, encap)."""

NOT_CAUGHT_YET: dict[str, str] = {}
"""Mutants no suite catches yet, with why (strict xfails: see the module docstring)."""


def run_suites(tmp: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """``pytest suites`` with ``args``; (exit status, summary.json, the output's tail)."""
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "suites",
         "--dsr-results", str(tmp), *args],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    path = tmp / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {"requirements": {}}
    return res.returncode, summary, res.stdout[-4000:]


def statuses(summary: dict[str, Any]) -> dict[str, str]:
    return {req: row["status"] for req, row in summary["requirements"].items()}


def _mutant_param(m: Any) -> Any:
    marks = []
    if m.name in NOT_CAUGHT_YET:
        marks.append(pytest.mark.xfail(reason=NOT_CAUGHT_YET[m.name], strict=True))
    return pytest.param(m, id=m.name, marks=marks)


@pytest.mark.parametrize("mutant", [_mutant_param(m) for m in MUTANTS])
def test_every_mutant_fails_each_requirement_it_names(mutant: Any, tmp_path: Path) -> None:
    lab, mode = WHERE.get(mutant.name, ("basic", "encap"))
    rc, summary, out = run_suites(
        tmp_path, "--dsr-mutant", mutant.name, "--dsr-lab", str(REPO / "labs" / f"{lab}.yaml"),
        "--dsr-mode", mode, "--dsr-level", "MAY", "--dsr-seed", "3",
        "--dsr-requirement", ",".join(mutant.requirements),
    )  # fmt: skip
    got = statuses(summary)
    assert rc == 1, out
    assert {r: got.get(r) for r in mutant.requirements} == dict.fromkeys(
        mutant.requirements, "FAIL"
    ), out


def test_the_correct_stack_passes_every_must_five_times_alike(tmp_path: Path) -> None:
    must = {r.id for r in spec.REQUIREMENTS if r.level == "MUST"}
    runs = []
    for seed in range(1, 6):
        rc, summary, out = run_suites(
            tmp_path / str(seed), "--dsr-level", "MUST", "--dsr-seed", str(seed)
        )
        got = statuses(summary)
        assert rc == 0 and set(got.values()) == {"PASS"}, f"seed {seed}:\n{out}"
        assert set(got) == must, f"seed {seed}: judged {sorted(got)}"
        runs.append(got)
    assert all(r == runs[0] for r in runs), runs
