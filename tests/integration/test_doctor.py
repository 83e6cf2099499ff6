"""``dsrconform doctor`` on this machine, as root: every required check passes, every kernel
feature has a row of its own, nothing is left.

The feature probes create ``dsrc-feat-*`` namespaces with ``dsrc-fa``/``dsrc-fb`` veths; the
tests prove they are gone afterwards and that no XDP program stayed attached.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dsrconform import doctor, features
from tests.markers import requires_root

pytestmark = requires_root


def _lab_leftovers() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    namespaces = [n.split()[0] for n in out.stdout.splitlines() if n.startswith("dsrc-feat")]
    probe_links = [n for n in links.stdout.splitlines() if any(v in n for v in features.PROBE_VETH)]
    return namespaces + probe_links


def test_required_checks_pass_and_probes_clean_up() -> None:
    results = doctor.run_checks()
    failed = {r.name: f"{r.detail} -> fix: {r.fix}" for r in results if r.required and not r.ok}
    assert not failed, f"required doctor checks failed: {failed}"
    by_feature = {r.feature: r for r in results if r.feature}
    assert set(by_feature) == set(features.FEATURES), "every feature has a row"
    assert by_feature["bpf-test-run"].detail.endswith("returned XDP_PASS")
    assert "detached" in by_feature["xdp-native-veth"].detail
    for r in by_feature.values():
        # A missing feature's row says what it costs; a present one says what the attempt did.
        assert r.detail and (r.ok or r.fix.startswith("without it: ")), r
    assert doctor.exit_code(results) == 0
    assert _lab_leftovers() == []


def test_probe_failure_still_removes_the_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    from dsrconform.bpf import libbpf

    def refuse(*_: object, **__: object) -> int:
        raise libbpf.BpfError("query refused (injected)")

    monkeypatch.setattr(libbpf, "xdp_query_id", refuse)
    features.clear_cache()
    try:
        r = doctor.feature_check("xdp-native-veth")()
    finally:
        features.clear_cache()
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
    assert {r["feature"] for r in rows if "feature" in r} == set(features.FEATURES)
    assert _lab_leftovers() == []
