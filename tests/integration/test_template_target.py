"""The template adapter (examples/template_target) through the steady-state suite on
labs/basic.yaml (root, one lab bring-up), named as ``module:Class`` on PYTHONPATH as a user's
uninstalled adapter would be.

It needs the kernel's IPIP tunnels (CONFIG_NET_IPIP): skipped, saying so, on a kernel without
them. Marked proof (``make proof``): its wall time has not been measured on a kernel with IPIP
(the development machine's has none), and ``make test`` has no minute to spare.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsrconform.report.model import load_results
from tests.markers import requires_root

ROOT = Path(__file__).resolve().parents[2]
NAME = "template_target.kernel_ecmp:KernelEcmpTarget"
pytestmark = [requires_root, pytest.mark.proof]


def kernel_has_ipip() -> tuple[bool, str]:
    """Whether an ipip link can be made, tried in a throwaway namespace."""
    ns = f"dsrc-tplprobe-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        made = subprocess.run(
            ["ip", "-n", ns, "link", "add", "probe", "type", "ipip", "remote", "198.18.0.1"],
            capture_output=True,
            text=True,
        )
        return made.returncode == 0, made.stderr.strip()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


def test_the_template_runs_the_steady_suite(tmp_path: Path) -> None:
    ok, why = kernel_has_ipip()
    if not ok:
        pytest.skip(f"this kernel has no IPIP tunnels (CONFIG_NET_IPIP): {why}")
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'examples'}")
    argv = [sys.executable, "-m", "dsrconform.cli", "run", "--suite", "steady_state"]
    argv += ["--target", NAME, "--results", str(tmp_path / "res"), "--seed", "1"]
    start = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    took = time.monotonic() - start
    print(f"template steady suite: {took:.1f} s, exit {done.returncode}")
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    run = load_results(tmp_path / "res")
    assert run.run.platforms in ([], ["netns-encap"])  # its only mode
    statuses = {req: row.status.value for req, row in run.requirements.items()}
    # What a kernel ECMP over IPIP gets right in a steady state, whatever else it does not.
    for req in ("RW-1", "RW-3", "RW-5", "DP-1", "AF-1", "AF-2"):
        assert statuses.get(req) == "PASS", f"{req}: {statuses}\n{done.stdout[-3000:]}"
