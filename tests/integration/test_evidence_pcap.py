"""Pcap evidence of FAILs through the suites as users run them (root): a mutant whose MUX sends
encapsulated packets without an outer IPv4 checksum (outer-csum-missing) FAILs RW-2 in the
steady scenario, and the failing test carries pcap windows, in the results directory, that
scapy reads back holding packets of the flows its evidence names; the correct stack's run
passes and leaves no evidence at all (windows are cut only for a FAIL).

Also measured, and printed (``-s``): the scenario's and the suite's time with the captures
(``--dsr-results``) and without (no results directory: no captures), and the windows' sizes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Packet
from scapy.utils import rdpcap

from dsrconform.report.model import load_results
from tests.markers import requires_root

pytestmark = requires_root
REPO = Path(__file__).resolve().parents[2]
ARGS = ["--dsr-mode", "encap", "--dsr-requirement", "RW-2", "--dsr-seed", "3"]
ARGS += ["--dsr-level", "MAY"]
SCENARIO_DONE = re.compile(r"scenario steady +([\d.]+) s +done")
CLIENT_END = re.compile(r"\b(tcp|udp) (?:client )?(198\.18\.\d+\.\d+):(\d+) >")


def run_steady(results: Path | None, *args: str) -> tuple[int, str, float, float | None]:
    """The steady suite (RW-2 only) in a subprocess: (exit status, output, wall seconds, the
    scenario's own seconds from its progress line, if printed)."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    argv += ["suites/test_steady_state.py", *ARGS, *args]
    if results is not None:
        argv += ["--dsr-results", str(results)]
    t0 = time.monotonic()
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - t0
    m = SCENARIO_DONE.search(res.stdout)
    return res.returncode, res.stdout + res.stderr, wall, float(m.group(1)) if m else None


def flow_ends(texts: list[str]) -> set[tuple[str, str, int]]:
    """(proto, client address, client port) of every flow named in evidence texts, parsed
    here independently of dsrconform.observe.evidence: the first end of each ``proto a:p >``."""
    return {(m[0], m[1], int(m[2])) for t in texts for m in CLIENT_END.findall(t)}


def packet_ends(pkt: Packet) -> set[tuple[str, str, int]]:
    """(proto, address, port) of both ends of every IP header of a packet (outer, inner)."""
    out: set[tuple[str, str, int]] = set()
    layer = pkt.getlayer(IP)
    while layer is not None:
        for proto, l4 in (("tcp", TCP), ("udp", UDP)):
            if isinstance(layer.payload, l4):
                out |= {(proto, layer.src, layer.payload.sport)}
                out |= {(proto, layer.dst, layer.payload.dport)}
        layer = layer.payload if isinstance(layer.payload, IP) else None
    return out


def test_a_fail_carries_pcap_windows_of_its_flows_and_a_pass_none(tmp_path: Path) -> None:
    mutant = tmp_path / "mutant"
    rc, out, wall_fail, _ = run_steady(mutant, "--dsr-mutant", "outer-csum-missing")
    assert rc == 1, out[-3000:]
    (test,) = [t for t in load_results(mutant).tests if "RW-2" in t.requirements]
    assert test.outcome == "failed", out[-3000:]
    (verdict,) = [v for v in test.verdicts if v.requirement == "RW-2"]
    assert verdict.status == "FAIL"
    texts = [t for e in verdict.evidence for t in (e.flow, e.packet) if t]
    wanted = flow_ends(texts)
    assert wanted, texts
    pcaps = [a for a in test.attachments if a.kind == "pcap"]
    assert pcaps, (test.attachments, out[-3000:])
    sizes = {}
    matched = 0
    for a in pcaps:
        path = mutant / a.path
        assert a.requirement == "RW-2" and path.is_file(), a
        assert a.path.startswith("steady/evidence/"), a
        pkts = rdpcap(str(path))
        assert len(pkts) >= 1, a
        sizes[a.name] = (path.stat().st_size, len(pkts), a.note)
        matched += sum(1 for p in pkts if packet_ends(p) & wanted)
    assert matched >= 1, (wanted, sizes)
    # The encapsulated packets with the missing checksum, on the router's link from the MUX.
    assert any("router:dsrc-mux" in name for name in sizes), sizes

    correct = tmp_path / "correct"
    rc, out_with, wall_with, scenario_with = run_steady(correct)
    out = out_with
    assert rc == 0, out[-3000:]
    verdicts = [v for t in load_results(correct).tests for v in t.verdicts]
    assert verdicts and {v.status for v in verdicts} == {"PASS"}, out[-3000:]
    assert not (correct / "steady" / "evidence").exists()
    assert all(not t.attachments for t in load_results(correct).tests)
    assert "packet captures for the evidence" in out, out[-3000:]

    rc, out, wall_without, scenario_without = run_steady(None)
    assert rc == 0, out[-3000:]
    assert "packet captures" not in out

    rings = re.findall(r"capture (\S+): (\d+) packets, ([\d.]+) MB kept", out_with)
    print(
        f"\nevidence windows (mutant run {wall_fail:.1f} s):\n"
        + "\n".join(f"  {n}: {s} bytes, {k} packets ({note})" for n, (s, k, note) in sizes.items())
        + f"\nsteady suite, correct stack: {wall_with:.1f} s with captures (scenario "
        f"{scenario_with} s), {wall_without:.1f} s without (scenario {scenario_without} s)"
        + "\ncapture rings: "
        + ", ".join(f"{link} {n} packets {mb} MB" for link, n, mb in rings)
    )
    # Not noticeably slower: the scenario's time is its traffic's, with or without captures.
    assert scenario_with is not None and scenario_without is not None, out_with[-3000:]
    assert scenario_with <= scenario_without * 1.25 + 3.0, (scenario_with, scenario_without)
