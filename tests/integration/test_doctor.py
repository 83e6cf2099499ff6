"""``dsrconform doctor`` on this machine, as root: every required check passes, nothing is left.

The XDP and tc probes create ``dsrc-doctor-*`` namespaces with ``dsrc-dra``/``dsrc-drb`` veths;
the test proves they are gone afterwards and that no XDP program stayed attached.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dsrconform import doctor
from tests.markers import requires_root

pytestmark = requires_root


def _lab_leftovers() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    return [
        line.split()[0] for line in out.stdout.splitlines() if line.startswith("dsrc-doctor")
    ] + [line for line in links.stdout.splitlines() if "dsrc-dr" in line]


def test_required_checks_pass_and_probes_clean_up() -> None:
    results = doctor.run_checks()
    failed = {r.name: f"{r.detail} -> fix: {r.fix}" for r in results if r.required and not r.ok}
    assert not failed, f"required doctor checks failed: {failed}"
    by_name = {r.name: r for r in results}
    assert by_name["BPF_PROG_TEST_RUN"].detail == "dsrc_pass returned XDP_PASS"
    assert "detached" in by_name["XDP native attach"].detail
    assert doctor.exit_code(results) == 0
    assert _lab_leftovers() == []


def test_probe_failure_still_removes_the_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    from dsrconform.bpf import libbpf

    def refuse(*_: object, **__: object) -> int:
        raise libbpf.BpfError("query refused (injected)")

    monkeypatch.setattr(libbpf, "xdp_query_id", refuse)
    r = doctor.check_xdp_attach()
    assert (r.ok, r.status) == (False, "FAIL")
    assert "injected" in r.detail
    assert _lab_leftovers() == []


def test_cli_doctor_json_exits_zero() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dsrconform.cli", "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(proc.stdout)
    assert {r["status"] for r in rows if r["required"]} == {"ok"}
    assert _lab_leftovers() == []
