"""A steady-state run on the reference stack (root), through the library (observe_steady_state,
check_all): every RW, DP and AF requirement PASSes, in server-nat (the suites judge every mode
through pytest: test_oracle.py's correct-stack run; each mutant a steady state can expose FAILs
the requirements it names there too).

The run (:func:`dsrconform.chaos.traffic.observe_steady_state`): verified streams, short
connections, uploads, UDP flows and ICMP errors about live streams, with taps on every interface of
``labs/basic.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from dsrconform import spec
from dsrconform.chaos.mixes import Mix
from dsrconform.chaos.traffic import observe_scenario, observe_steady_state
from dsrconform.invariants import Status, Verdict, check_all
from dsrconform.lab import Lab
from tests.markers import requires_root

pytestmark = requires_root
LABS = Path(__file__).resolve().parents[2] / "labs"
STEADY_IDS = [r.id for r in spec.REQUIREMENTS if r.family in ("RW", "DP", "AF")]
SMALL = Mix(
    streams=30,
    stream_bytes=90_000,
    short_conns=150,
    uploads=10,
    udp_flows=40,
    udp_datagrams=4,
    icmp_errors=12,
)
"""A small mix: enough traffic around a fault to see it land in the timeline."""


def explain(verdicts: list[Verdict]) -> str:
    lines = []
    for v in verdicts:
        lines.append(f"{v.requirement} {v.status}: {v.message} {v.measured}")
        lines += [f"    missing: {m}" for m in v.missing]
        lines += [f"    error: {v.error}"] if v.error else []
        lines += [f"    {e.message} | {e.flow} | {e.packet} | {e.link}" for e in v.evidence[:3]]
    return "\n".join(lines)


def test_reference_stack_passes_every_rw_dp_af_requirement(tmp_path: Path) -> None:
    mode = "server-nat"  # the richest mode: NAT on the servers, encapsulation by the MUX
    with Lab.up(LABS / "basic.yaml", name="tssn", mode=mode) as lab:
        run = observe_steady_state(lab, Mix(), out_dir=tmp_path)
    verdicts = check_all(run.observations, ids=STEADY_IDS)
    assert [v.requirement for v in verdicts] == STEADY_IDS
    not_passed = [v for v in verdicts if v.status != Status.PASS]
    assert not not_passed, f"{mode}: counts {run.counts}\n" + explain(not_passed)


def test_a_fault_injected_during_the_traffic_lands_in_the_timeline(tmp_path: Path) -> None:
    """The plumbing the flood suite builds on: a short, slow SYN flood during the traffic, the
    taps aggregating its spoofed sources (no overflow), its window in the observations."""
    from dsrconform.chaos.scenario import Scenario

    flood = Scenario.model_validate(
        {
            "name": "short-flood",
            "method": [{"fault": {"kind": "syn-flood", "seconds": 2, "rate": 20_000}, "at": 1}],
        }
    )
    with Lab.up(LABS / "basic.yaml", name="tssf") as lab:
        run = observe_scenario(lab, flood, SMALL, out_dir=tmp_path)
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
