"""A steady-state run on the reference stack (root): every RW, DP and AF requirement PASSes in
every data-plane mode, and each mutant a steady state can expose FAILs the requirement it names.

The run (:func:`dsrconform.steady.observe_steady_state`): verified streams, short connections,
uploads, UDP flows and ICMP errors about live streams, with taps on every interface of
``labs/basic.yaml``. Mutants whose bug shows only under a fault (a MUX failing, a backend
change, a flood: per-mux-hash-seed, syn-skips-conn-table, modulo-hash, no-conn-table,
in-place-table, syn-evicts-established) are the chaos suites' to catch; decap-any-source needs
forged tunnel packets (RB-4); udp-zero-csum-lost needs replies without a UDP checksum, which the
lab's application does not send.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dsrconform import spec
from dsrconform.invariants import Status, Verdict, check_all
from dsrconform.lab import Lab
from dsrconform.steady import Mix, observe_steady_state
from tests.markers import requires_root

pytestmark = requires_root
LABS = Path(__file__).resolve().parents[2] / "labs"
STEADY_IDS = [r.id for r in spec.REQUIREMENTS if r.family in ("RW", "DP", "AF")]
SMALL = Mix(streams=30, stream_bytes=90_000, short_conns=150, uploads=10, udp_flows=40,
            udp_datagrams=4, icmp_errors=12)  # fmt: skip
"""Enough to decide every requirement a mutant names (AF-3 is not among them)."""


def explain(verdicts: list[Verdict]) -> str:
    lines = []
    for v in verdicts:
        lines.append(f"{v.requirement} {v.status}: {v.message} {v.measured}")
        lines += [f"    missing: {m}" for m in v.missing]
        lines += [f"    error: {v.error}"] if v.error else []
        lines += [f"    {e.message} | {e.flow} | {e.packet} | {e.link}" for e in v.evidence[:3]]
    return "\n".join(lines)


@pytest.mark.parametrize("mode", ["encap", "server-nat", "gateway-nat"])
def test_reference_stack_passes_every_rw_dp_af_requirement(mode: str, tmp_path: Path) -> None:
    name = {"encap": "tsse", "server-nat": "tssn", "gateway-nat": "tssg"}[mode]
    with Lab.up(LABS / "basic.yaml", name=name, mode=mode) as lab:
        run = observe_steady_state(lab, Mix(), out_dir=tmp_path)
    verdicts = check_all(run.observations, ids=STEADY_IDS)
    assert [v.requirement for v in verdicts] == STEADY_IDS
    not_passed = [v for v in verdicts if v.status != Status.PASS]
    assert not not_passed, f"{mode}: counts {run.counts}\n" + explain(not_passed)


MUTANTS = [
    ("outer-csum-missing", "basic", "encap"),
    ("icmp-outer-hash", "basic", "encap"),
    ("nat-no-pseudo-hdr", "basic", "server-nat"),
    ("gateway-no-l4-csum", "basic", "gateway-nat"),
    # Several VIPs share one server port there: a reply's VIP must come from its flow.
    ("nat-wrong-vip", "multi-mux-nat", "server-nat"),
]


@pytest.mark.parametrize(("mutant", "lab_file", "mode"), MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_fails_the_requirements_it_names(mutant: str, lab_file: str, mode: str,
                                                tmp_path: Path) -> None:  # fmt: skip
    from dsrconform.target import load_target

    named = next(m for m in load_target("reference").mutants() if m.name == mutant).requirements
    with Lab.up(LABS / f"{lab_file}.yaml", name="tssm", mode=mode, mutant=mutant) as lab:
        run = observe_steady_state(lab, SMALL, out_dir=tmp_path)
    verdicts = check_all(run.observations, ids=named)
    not_failed = [v for v in verdicts if v.status != Status.FAIL]
    assert not not_failed, f"{mutant}: counts {run.counts}\n" + explain(not_failed)


def test_a_fault_injected_during_the_traffic_lands_in_the_timeline(tmp_path: Path) -> None:
    """The plumbing the flood suite builds on: a short, slow SYN flood during the traffic, the
    taps aggregating its spoofed sources (no overflow), its window in the observations."""
    from dsrconform.scenarios import syn_flood

    with Lab.up(LABS / "basic.yaml", name="tssf") as lab:
        run = observe_steady_state(
            lab, SMALL, out_dir=tmp_path, fault=syn_flood(delay=1.0, seconds=2.0, rate=20_000)
        )
    (window,) = run.observations.faults
    assert window.kind == "syn-flood" and window.end is not None
    assert window.rate is not None and 10_000 < window.rate <= 20_500
    assert window.end - window.start >= 1.9
    taps = run.observations.taps
    assert taps is not None and not any(info.overflowed for info in taps.taps.values())
    flood = [f for flows in taps.flows.values() for f in flows if f.src == "198.18.200.0"]
    assert flood and all(f.sport == 0 for f in flood)
    verdicts = check_all(run.observations, ids=["AF-1", "RW-1", "DP-1"])
    assert all(v.status == Status.PASS for v in verdicts), explain(verdicts)
    assert (tmp_path / "faults.jsonl").exists()
