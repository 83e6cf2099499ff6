"""Reports of a real run (root): ``dsrconform run`` as a user runs it, with a mutant that FAILs
RW-2 (outer-csum-missing: the MUX sends encapsulated packets without an outer IPv4 checksum),
``--junitxml`` and ``--alluredir``; then ``dsrconform report`` and ``dsrconform gate`` on its
results. The JUnit XML, the allure results, the HTML page and the gate must all carry the FAIL
with its evidence, and the page must link pcap windows of that evidence that scapy reads back,
holding packets of the flows the evidence names (among them the router's link from the MUX,
where the encapsulated packets with the missing checksum are). The correct stack's runs leave
no evidence (test_oracle.py's correct-stack run)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import unquote

from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Packet
from scapy.utils import rdpcap

from dsrconform.report.model import load_results
from tests.markers import requires_root

pytestmark = requires_root
REPO = Path(__file__).resolve().parents[2]
CLIENT_END = re.compile(r"\b(tcp|udp) (?:client )?(198\.18\.\d+\.\d+):(\d+) >")


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


def dsrconform(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "dsrconform.cli", *args]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_a_mutant_run_fails_in_junit_allure_the_report_and_the_gate(tmp_path: Path) -> None:
    results, junit, allure = tmp_path / "run", tmp_path / "junit.xml", tmp_path / "allure"
    run = dsrconform(
        *("run", "--suite", "steady_state", "--mode", "encap", "--requirement", "RW-2"),
        *("--mutant", "outer-csum-missing", "--seed", "3", "--results", str(results)),
        *("--", f"--junitxml={junit}", f"--alluredir={allure}"),
    )
    out = run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode == 1, out
    res = load_results(results)
    assert res.requirements["RW-2"].status == "FAIL", out
    assert res.run.mutant == "outer-csum-missing" and res.run.seed == 3
    assert res.run.replay.startswith("dsrconform run --suite steady_state"), res.run.replay
    (test,) = [t for t in res.tests if "RW-2" in t.requirements]
    assert (test.scenario, test.run_dir) == ("steady", "steady")

    # JUnit: the FAIL is a <failure> carrying the verdict and its evidence; IDs are properties.
    root = ET.parse(junit).getroot()
    (case,) = [c for c in root.iter("testcase") if "RW-2" in c.get("name", "")]
    props = {(p.get("name"), p.get("value")) for p in case.iter("property")}
    assert ("requirement", "RW-2") in props and ("verdict:RW-2", "FAIL") in props
    failure = case.find("failure")
    assert failure is not None and "RW-2 FAIL" in (failure.get("message") or "")
    assert test.verdicts[0].evidence[0].message in (failure.text or "")
    suite_props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert suite_props.get("mutant") == "outer-csum-missing"

    # allure: the test failed, labelled with its requirement and level.
    found = [json.loads(p.read_text()) for p in allure.glob("*-result.json")]
    (result,) = [r for r in found if "RW-2" in r["name"]]
    labels = {(x["name"], x["value"]) for x in result["labels"]}
    assert result["status"] == "failed"
    assert ("feature", "RW-2") in labels and ("severity", "critical") in labels

    # The report: the FAIL cell links its detail, which shows the evidence and a pcap window.
    page = tmp_path / "report.html"
    made = dsrconform("report", str(results), "-o", str(page), timeout=120)
    assert made.returncode == 0, made.stderr
    html = page.read_text()
    cell = re.search(r'<td class="st-fail"><a href="#(r\d+-RW-2)"[^>]*>FAIL</a>', html)
    assert cell, "the matrix's FAIL cell, linking the requirement's detail"
    assert f'id="{cell.group(1)}"' in html
    assert "<svg" in html, "the steady scenario's timeline"
    pcaps = [a for a in test.attachments if a.kind == "pcap"]
    assert pcaps, test.attachments
    assert all(a.requirement == "RW-2" and a.path.startswith("steady/evidence/") for a in pcaps)
    assert any("router:dsrc-mux" in a.name for a in pcaps), [a.name for a in pcaps]
    texts = [t for e in test.verdicts[0].evidence for t in (e.flow, e.packet) if t]
    wanted = flow_ends(texts)
    assert wanted, texts
    matched = 0
    for a in pcaps:
        path = tmp_path / Path(a.path).name
        path.write_bytes(_attachment_bytes(html, page, a.path))  # as a reader downloads it
        assert path.read_bytes() == (results / a.path).read_bytes()
        matched += sum(1 for p in rdpcap(str(path)) if packet_ends(p) & wanted)
    assert matched >= 1, (wanted, [a.name for a in pcaps])

    # The gate: FAIL at MUST, exit 1, and a markdown summary naming it.
    gate = dsrconform("gate", str(results), timeout=60)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "RW-2 FAIL" in gate.stdout
    assert "| RW-2 | FAIL |" in (results / "gate.md").read_text()


def _attachment_bytes(html: str, page: Path, rel: str) -> bytes:
    """The bytes of attachment ``rel`` as the page offers them: an embedded ``data:`` link
    (named by its download attribute) or a file linked beside the page."""
    name = Path(rel).name
    for m in re.finditer(r'<a [^>]*href="([^"]+)"[^>]*download="([^"]+)"', html):
        href, download = m.group(1), m.group(2)
        if download == name and href.startswith("data:"):
            return base64.b64decode(href.split(",", 1)[1])
    for m in re.finditer(r'href="([^"#]+)"', html):
        href = unquote(m.group(1))
        if href.endswith(name) and not href.startswith(("data:", "http")):
            return (page.parent / href).read_bytes()
    raise AssertionError(f"{rel}: not linked from the page")
