"""The oracle (root): the suites, run as users run them, FAIL every requirement each mutant of
the reference stack names, and pass every MUST (and, in ``make proof``, every SHOULD) on the
correct stack.

The correct stack runs once here, as `dsrconform run` does (the steady suite in every mode of
the target), at MUST in ``make test`` and at SHOULD in ``make proof``, and in IPv6 at MUST in
``make proof`` (labs/dual.yaml; the IPv6 mutants likewise, :data:`IPV6`) (a minute more than CI's
25 can hold); the MAY requirement (SC-5) measures breakage, and the benchmark runs it.
Its stability proof (five runs in a row with identical verdicts) is a benchmark, run and
reported, not CI's: ``dsrconform bench suites --runs 5`` (five full runs cost ~20 minutes of a
2-core CI). Where this kernel has live frames, the requirements judged by floods and tuple
probes run once more with live frames disabled, as a kernel that refuses them does, and must
pass alike; where it lacks them, the main run already used AF_PACKET.

Each run is ``pytest suites/`` in a subprocess with the plugin's options and ``--dsr-results``,
judged from the ``results.json`` it leaves (the worst status per requirement over the tests
citing it). A mutant runs only the tests citing its requirements (``--dsr-requirement``), at
every level, on the lab and mode its bug shows in, and where several scenarios judge one of
its requirements, only the tests of the scenario that shows it (:data:`ONLY`). A mutant no
suite catches yet is listed in :data:`NOT_CAUGHT_YET` with the reason, as a strict xfail: it is
a gap of the suites (the issue stays open while it is), and the day a suite catches it the
xfail fails until it is removed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dsrconform import spec
from dsrconform.errors import ConfigError
from dsrconform.invariants.flood import FLOOD_RATE_SHARE
from dsrconform.report.model import TIMELINE_FILE, Results, load_results
from dsrconform.target import load_target
from dsrconform.topology import MODES
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
    # A TCP and a UDP service share one VIP:port in basic.yaml (web, webudp).
    "nat-svc-no-proto": ("basic", "server-nat"),
}
"""Lab file and mode a mutant's bug shows in (default: basic.yaml, encap)."""

ONLY: dict[str, str] = {
    # MF-1 and AF-1 are judged across a killed MUX; a hung one, steady state and backend
    # changes would add ~90 s and show nothing more of a per-MUX hash seed.
    "per-mux-hash-seed": "mux-kill",
    # A reused tuple's SYN meets a backend change only in the scale scenario.
    "syn-skips-conn-table": "scale-AF-1",
}
"""``pytest -k`` for a mutant whose requirements several scenarios judge: the tests where its
bug shows (the others cost minutes of CI and cannot fail on it)."""

NOT_CAUGHT_YET: dict[str, str] = {}
"""Mutants no suite catches yet, with why (strict xfails: see the module docstring)."""

IPV6: dict[str, tuple[str, str]] = {
    "v6-nat-csum-low32": ("dual", "server-nat"),
    "v6-hash-low32": ("dual", "encap"),
    "v6-outer-plen": ("dual", "encap"),
    "v6-ptb-outer": ("dual", "encap"),
}
"""Mutants of the IPv6 paths: lab file and mode, run with ``--dsr-family ipv6`` (an IPv4 run
cannot reach their bug). Each costs a dual-stack lab and minutes of suites, more than
``make test``'s budget holds beside the IPv4 catalogue, so they run in ``make proof``; their
packet-level checks (test_mutants_caught.py) catch them in ``make test``."""


def run_suites(
    tmp: Path, *args: str, env: dict[str, str] | None = None, evidence: bool = False
) -> tuple[int, Results | None, str]:
    """``pytest suites`` with ``args``; (exit status, its results, its output)."""
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "suites",
            "--dsr-results",
            str(tmp),
            # The oracle judges verdicts; the pcap evidence of a FAIL is test_reports.py's
            # (cutting windows costs seconds per FAIL, minutes over the catalogue).
            *(() if evidence else ("--dsr-no-evidence",)),
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    try:
        results: Results | None = load_results(tmp)
    except ConfigError:  # no results.json: the output's tail says why
        results = None
    return res.returncode, results, res.stdout


def statuses(results: Results | None) -> dict[str, str]:
    return {} if results is None else {k: str(r.status) for k, r in results.requirements.items()}


def _mutant_param(m: Any) -> Any:
    marks = []
    if m.name in NOT_CAUGHT_YET:
        marks.append(pytest.mark.xfail(reason=NOT_CAUGHT_YET[m.name], strict=True))
    if m.name in IPV6:
        marks.append(pytest.mark.proof)
    return pytest.param(m, id=m.name, marks=marks)


@pytest.mark.parametrize("mutant", [_mutant_param(m) for m in MUTANTS])
def test_every_mutant_fails_each_requirement_it_names(mutant: Any, tmp_path: Path) -> None:
    lab, mode = WHERE.get(mutant.name) or IPV6.get(mutant.name) or ("basic", "encap")
    rc, results, out = run_suites(
        tmp_path,
        *(["--dsr-family", "ipv6"] if mutant.name in IPV6 else []),
        "--dsr-mutant",
        mutant.name,
        "--dsr-lab",
        str(REPO / "labs" / f"{lab}.yaml"),
        "--dsr-mode",
        mode,
        "--dsr-level",
        "MAY",
        "--dsr-seed",
        "3",
        "--dsr-requirement",
        ",".join(mutant.requirements),
        *(["-k", ONLY[mutant.name]] if mutant.name in ONLY else []),
    )
    got = statuses(results)
    assert rc == 1, out[-4000:]
    assert {r: got.get(r) for r in mutant.requirements} == dict.fromkeys(
        mutant.requirements, "FAIL"
    ), out[-4000:]


@pytest.mark.parametrize(
    "level",
    [
        pytest.param("MUST", id="MUST"),
        # Every MUST again and the SHOULDs (~1 minute more: the flood during a drain, SF-3):
        # `make proof`, beside CI's MUST run.
        pytest.param("SHOULD", id="SHOULD", marks=pytest.mark.proof),
    ],
)
def test_the_correct_stack_passes_every_requirement_at_the_level(
    tmp_path: Path, level: str
) -> None:
    levels = ("MUST",) if level == "MUST" else ("MUST", "SHOULD")
    judged = {r.id for r in spec.REQUIREMENTS if r.level in levels}
    rc, results, out = run_suites(tmp_path, "--dsr-level", level, "--dsr-seed", "1", evidence=True)
    got = statuses(results)
    assert results is not None and rc == 0 and set(got.values()) == {"PASS"}, out[-4000:]
    assert set(got) == judged, f"judged {sorted(got)}"
    # As `dsrconform run` does: the steady suite in every mode of the target, the rest in one.
    tests = [t.test for t in results.requirements["RW-1"].tests]
    for mode in MODES:
        assert any(f"netns-{mode}" in t for t in tests), f"RW-1 not judged in {mode}: {tests}"
    assert all("netns-encap" in t.test for t in results.requirements["SF-1"].tests)
    assert sorted(results.run.platforms) == sorted(f"netns-{m}" for m in MODES)
    # As users run them: packet captures ran for the evidence of FAILs, none failed, so nothing
    # was cut; every scenario left its timeline for the report; each test names its scenario.
    timelines = {p.parent.relative_to(tmp_path).as_posix() for p in tmp_path.rglob(TIMELINE_FILE)}
    assert {t.run_dir for t in results.tests} == timelines
    captured = out.count("packet captures for the evidence of FAILs")
    assert captured == len(timelines), f"{captured} of {len(timelines)} scenarios captured"
    assert not list(tmp_path.rglob("evidence")), "evidence cut without a FAIL"
    assert all(t.scenario and t.attachments == [] for t in results.tests)
    # The flood counted: at least the share of R (SF-1's default) the checkers ask for.
    lines = (tmp_path / "netns-encap" / "syn-flood" / "faults.jsonl").read_text().splitlines()
    (flood,) = [w for w in map(json.loads, lines) if w["kind"] == "syn-flood"]
    assert flood["rate"] >= FLOOD_RATE_SHARE * spec.get("SF-1").defaults()["flood_rate"], flood


@pytest.mark.proof
def test_the_correct_stack_passes_every_must_in_ipv6(tmp_path: Path) -> None:
    """The IPv6 run (labs/dual.yaml, the IPv6 services and web46's IPv4-in-IPv6), as
    ``dsrconform run --family ipv6`` does it: every MUST judged, every one PASS, and in IPv6
    only. In ``make proof`` (about five minutes beside CI's IPv4 run)."""
    judged = {r.id for r in spec.REQUIREMENTS if r.level == "MUST"}
    rc, results, out = run_suites(
        tmp_path, "--dsr-family", "ipv6", "--dsr-level", "MUST", "--dsr-seed", "1"
    )
    got = statuses(results)
    assert results is not None and rc == 0 and set(got.values()) == {"PASS"}, out[-4000:]
    assert set(got) == judged, f"judged {sorted(got)}"
    tests = [t.test for r in results.requirements.values() for t in r.tests]
    assert tests and all("-ipv6" in t for t in tests), tests


FLOOD_AND_PROBE_REQUIREMENTS = ("SF-1", "SF-2", "SF-4", "SC-2", "SC-4")
"""The MUST requirements whose traffic is a flood or tuple probes (the engines' consumers)."""


def test_flood_and_probe_verdicts_alike_without_live_frames(tmp_path: Path) -> None:
    from dsrconform.features import DISABLE_ENV, probe

    if not probe("live-frames").ok:
        pytest.skip(
            "this kernel lacks live frames, so the correct stack's MUST run above already "
            f"flooded and probed with AF_PACKET ({probe('live-frames').reason})"
        )
    env = {**os.environ, DISABLE_ENV: "live-frames"}
    reqs = [r for r in FLOOD_AND_PROBE_REQUIREMENTS if spec.get(r).level == "MUST"]
    rc, results, out = run_suites(
        tmp_path,
        "--dsr-level",
        "MUST",
        "--dsr-seed",
        "2",
        "--dsr-requirement",
        ",".join(reqs),
        env=env,
    )
    got = statuses(results)
    assert rc == 0 and got == dict.fromkeys(reqs, "PASS"), out[-4000:]
    engines = _flood_engines(tmp_path)
    assert engines == {"af-packet"}, f"floods and probes used {engines}"


def _flood_engines(results: Path) -> set[str]:
    """The engines the runs' floods and tuple probes used, from their fault windows."""
    found: set[str] = set()
    for path in results.rglob("faults.jsonl"):
        for line in path.read_text().splitlines():
            detail = json.loads(line).get("detail") or {}
            for key in ("engine", "probe_engine"):
                if key in detail:
                    found.add(detail[key])
    return found
