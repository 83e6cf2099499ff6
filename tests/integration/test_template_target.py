"""The template adapter (examples/template_target) through the steady-state suite on
labs/basic.yaml (root, one lab bring-up), named as ``module:Class`` on PYTHONPATH as a user's
uninstalled adapter would be. Its own BPF data plane needs no kernel tunnel module, so it runs
on any machine the project runs on; about 20 s.

What a stateless MUX gets right in a steady state is all of the steady suite (docs/targets.md,
"The template adapter"); what it cannot do (SC-1, SC-3: no connection table) the scale and
failure suites show, not this one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dsrconform.report.model import load_results
from tests.markers import requires_root

ROOT = Path(__file__).resolve().parents[2]
NAME = "template_target.minimal:MinimalTarget"
pytestmark = requires_root

STEADY = [f"RW-{i}" for i in range(1, 9)] + ["DP-1", "DP-2"] + [f"AF-{i}" for i in range(1, 5)]
"""Every requirement of the steady suite, MAY and up: the template PASSes them all."""


def test_the_template_runs_the_steady_suite(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'examples'}")
    argv = [sys.executable, "-m", "dsrconform.cli", "run", "--suite", "steady_state"]
    argv += ["--level", "MAY", "--target", NAME, "--results", str(tmp_path / "res")]
    argv += ["--seed", "1"]
    start = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    took = time.monotonic() - start
    print(f"template steady suite: {took:.1f} s, exit {done.returncode}")
    tail = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, tail
    run = load_results(tmp_path / "res")
    assert run.run.platforms in ([], ["netns-encap"])  # its only mode
    statuses = {req: row.status.value for req, row in run.requirements.items()}
    assert statuses == dict.fromkeys(STEADY, "PASS"), f"{statuses}\n{tail}"
