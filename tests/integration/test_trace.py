"""``dsrconform-ref mux-run`` on a pcap: outputs, verdicts, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.utils import rdpcap

from reference_impl.cli import main
from tests.markers import requires_root

EXAMPLES = Path(__file__).parents[2] / "examples"


@requires_root
def test_mux_run_writes_outputs_and_one_verdict_per_packet(tmp_path: Path) -> None:
    out = tmp_path / "out.pcap"
    rc = main(["mux-run", "--config", str(EXAMPLES / "mux-demo.yaml"),
               "--in", str(EXAMPLES / "demo.pcap"), "--out", str(out)])  # fmt: skip
    assert rc == 0
    n_in = len(rdpcap(str(EXAMPLES / "demo.pcap")))
    verdicts = [json.loads(x) for x in out.with_suffix(".verdicts.jsonl").read_text().splitlines()]
    assert [v["index"] for v in verdicts] == list(range(n_in))
    forwarded = [v for v in verdicts if v["action"] in ("XDP_TX", "XDP_PASS")]
    outputs = rdpcap(str(out))
    assert len(outputs) == len(forwarded)
    tx = [v for v in verdicts if v["action"] == "XDP_TX"]
    assert tx and all(v["outer_src"] == "198.18.10.1" for v in tx)
    assert {v["action"] for v in verdicts} == {"XDP_TX", "XDP_PASS", "XDP_DROP"}
    # The handshake, data and the ICMP error of client 198.18.1.1 all reach one server.
    c1 = [
        v["outer_dst"]
        for v in tx
        if "198.18.1.1:40000 > 198.19.0.10" in v["summary"] or "ICMP" in v["summary"]
    ]
    assert len(c1) == 4 and len(set(c1)) == 1, c1
    assert all(p[IP].proto == 4 for p in outputs if IP in p and p[IP].dst.startswith("198.18.20."))


@requires_root
def test_mux_run_takes_an_ipv6_config_and_reports_its_decisions(tmp_path: Path) -> None:
    out = tmp_path / "out6.pcap"
    config, pcap = str(EXAMPLES / "mux-demo6.yaml"), str(EXAMPLES / "demo6.pcap")
    rc = main(["mux-run", "--config", config, "--in", pcap, "--out", str(out)])
    assert rc == 0
    verdicts = [json.loads(x) for x in out.with_suffix(".verdicts.jsonl").read_text().splitlines()]
    tx = [v for v in verdicts if v["action"] == "XDP_TX"]
    assert tx and all(v["outer_src"] == "2001:2:0:10::2" for v in tx)
    assert all(v["outer_dst"].startswith("2001:2:0:20::") for v in tx)
    assert {v["action"] for v in verdicts} == {"XDP_TX", "XDP_PASS", "XDP_DROP"}
    # The IPv6 handshake of 2001:2:0:1::2 and the packet-too-big about it reach one server.
    c1 = [
        v["outer_dst"]
        for v in tx
        if "2001:2:0:1::2:40000 > 2001:2:0:100::10:http" in v["summary"]
        or "PacketTooBig" in v["summary"]
    ]
    assert len(c1) == 3 and len(set(c1)) == 1, c1
    outputs = [p for p in rdpcap(str(out)) if IPv6 in p and p[IPv6].src == "2001:2:0:10::2"]
    assert {p[IPv6].nh for p in outputs} == {4, 41}, "expected IPv6-in-IPv6 and IPv4-in-IPv6"


def test_mux_run_names_a_missing_pcap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["mux-run", "--config", str(EXAMPLES / "mux-demo.yaml"),
               "--in", str(tmp_path / "nope.pcap"), "--out", str(tmp_path / "o.pcap")])  # fmt: skip
    assert rc == 2
    assert "nope.pcap: no such pcap file" in capsys.readouterr().err


def test_mux_run_names_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("mux: {address: 192.168.1.1}\n")
    rc = main(["mux-run", "--config", str(bad), "--in", str(EXAMPLES / "demo.pcap"),
               "--out", str(tmp_path / "o.pcap")])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "bad.yaml:1: mux.address" in err and "198.18.0.0/15" in err


@requires_root
def test_agent_and_gateway_run_on_the_example_configs(tmp_path: Path) -> None:
    from scapy.layers.inet import TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:14:01")
    inner = IP(src="198.18.1.1", dst="198.19.0.20") / TCP(sport=40000, dport=80, flags="S")
    wrpcap(str(tmp_path / "in.pcap"), [eth / IP(src="198.18.10.2", dst="198.18.20.1") / inner])
    rc = main(["agent-run", "--config", str(EXAMPLES / "agent-demo.yaml"),
               "--in", str(tmp_path / "in.pcap"), "--out", str(tmp_path / "a.pcap")])  # fmt: skip
    assert rc == 0
    [out] = rdpcap(str(tmp_path / "a.pcap"))
    assert (out[IP].src, out[IP].dst, out[TCP].dport) == ("198.18.1.1", "198.18.20.1", 8080)

    reply = eth / IP(src="198.18.20.2", dst="198.18.1.1") / TCP(sport=8080, dport=40000, flags="SA")
    wrpcap(str(tmp_path / "r.pcap"), [reply])
    rc = main(["gateway-run", "--config", str(EXAMPLES / "gateway-demo.yaml"),
               "--in", str(tmp_path / "r.pcap"), "--out", str(tmp_path / "g.pcap")])  # fmt: skip
    assert rc == 0
    [out] = rdpcap(str(tmp_path / "g.pcap"))
    assert (out[IP].src, out[TCP].sport) == ("198.19.0.11", 80)
