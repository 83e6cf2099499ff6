"""The pcap evidence of FAIL verdicts, without a lab: which window and which flows a verdict's
evidence points at, cutting it from (synthetic) capture rings into report attachments, the
capture filter that keeps the SYN flood out, and the plugin's wiring of it. The captures
themselves, in a real run of the suites, are tests/integration/test_evidence_pcap.py's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Raw
from scapy.utils import rdpcap

from dsrconform import pytest_plugin as plugin
from dsrconform.errors import ConfigError
from dsrconform.invariants.verdict import Evidence, Status, Verdict
from dsrconform.observe.evidence import (
    BatchedCapture,
    capture_filter,
    capture_label,
    capture_summary,
    cut_evidence,
    evidence_flows,
    evidence_window,
    parse_ends,
)
from dsrconform.observe.pcap import CaptureStats, ClientEnd, PacketCapture
from dsrconform.observe.taps import GUE_PORT
from tests.unit.test_observe_pcap import (
    CLIENT,
    MS,
    OFFSET,
    OTHER,
    VIP,
    S,
    at,
    client_udp,
    encapsulated,
    eth,
    icmp_about,
    tag,
    write,
)

FLOW = "tcp 198.18.1.2:40001 > 198.19.0.10:80 (flow 7)"


def ev(
    flow: str | None = None,
    packet: str | None = None,
    time: float | None = None,
    until: float | None = None,
) -> Evidence:
    return Evidence(message="bad", flow=flow, packet=packet, time=time, until=until)


def fail(*evidence: Evidence, req: str = "RW-2") -> Verdict:
    return Verdict(
        requirement=req, level="MUST", status=Status.FAIL, message="x", evidence=list(evidence)
    )


# --- flows named by evidence --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kw", "want"),
    [
        (FLOW, {"first_is_client": True}, [ClientEnd(CLIENT, 40001, 6)]),
        ("udp 198.18.1.2:40001 > 198.19.0.11:7 (flow 3)", {}, [ClientEnd(CLIENT, 40001, 17)]),
        # A reply: the client's end is the higher (ephemeral) port...
        (
            "tcp 198.19.0.10:80 > 198.18.1.2:40001 flags SA, 3 packets/180 bytes",
            {},
            [ClientEnd(CLIENT, 40001, 6)],
        ),
        # ... or the address among the clients', when they are known.
        (
            "tcp 198.18.20.1:8080 > 198.18.1.2:2000",
            {"clients": {CLIENT}},
            [ClientEnd(CLIENT, 2000, 6)],
        ),
        # IPIP: the inner header's flow, not the MUX -> server outer header.
        (
            "ipip 198.18.10.1 > 198.18.20.1 [inner tcp 198.18.1.2:40001 > 198.19.0.10:80] flags S,"
            " 7 packets/658 bytes",
            {},
            [ClientEnd(CLIENT, 40001, 6)],
        ),
        (
            "proto 4 198.18.10.1 > 198.18.20.1 [inner udp 198.18.1.3:40002 > 198.19.0.11:7]",
            {},
            [ClientEnd(OTHER, 40002, 17)],
        ),
        # GUE (Katran): the outer UDP header's ports are the MUX's hash and the GUE port, not a
        # flow's; only the inner flow counts, also without the lab's client addresses.
        (
            "udp 198.18.10.1:53010 > 198.18.20.1:6080 [inner tcp 198.18.1.3:40002 > "
            "198.19.0.10:80], 3 packets/300 bytes",
            {},
            [ClientEnd(OTHER, 40002, 6)],
        ),
        # A UDP flow to the GUE port that carries nothing encapsulated is a flow like another.
        ("udp 198.18.1.3:40003 > 198.19.0.11:6080", {}, [ClientEnd(OTHER, 40003, 17)]),
        # An ICMP error: the flow it quotes.
        (
            "icmp 198.18.1.2 > 198.19.0.10 icmp type 3 code 4 about tcp 198.18.1.2:40001 > "
            "198.19.0.10:80, 1 packets/70 bytes",
            {},
            [ClientEnd(CLIENT, 40001, 6)],
        ),
        # An echo request: no ports, the client's address.
        (
            "icmp 198.18.1.2 > 198.18.20.1, 1 packets/84 bytes",
            {"clients": {CLIENT}},
            [ClientEnd(CLIENT)],
        ),
        (
            "tcp client 198.18.1.2:40001 > 198.19.0.10:80",
            {"first_is_client": True},
            [ClientEnd(CLIENT, 40001, 6)],
        ),
        (
            "tcp 198.18.1.2:40001 -> 198.19.0.10:80",
            {"first_is_client": True},
            [ClientEnd(CLIENT, 40001, 6)],
        ),
        (
            "two: tcp 198.18.1.2:40001 > 198.19.0.10:80, tcp 198.18.1.2:40001 > 198.19.0.10:80",
            {"first_is_client": True},
            [ClientEnd(CLIENT, 40001, 6)],
        ),  # no repeats
        # No client address in it (a probe's flow): the higher port, as without clients.
        (
            "tcp 198.18.20.1:8080 > 198.18.40.2:20001",
            {"clients": {CLIENT}},
            [ClientEnd("198.18.40.2", 20001, 6)],
        ),
        ("tcp 999.1.2.3:80 > 198.18.1.2:70000", {}, []),  # not an address, not a port
        ("the MUX lost its table", {}, []),
    ],
)
def test_client_ends_of_evidence_texts(text: str, kw: dict[str, Any], want: list) -> None:
    assert parse_ends(text, **kw) == want


def test_evidence_flows_prefer_the_flow_text_keep_order_and_stop_at_the_cap() -> None:
    evidence = [
        ev(flow=FLOW, packet="tcp 198.19.0.10:80 > 198.18.1.9:50000"),  # the flow text wins
        ev(packet="udp 198.18.1.3:40002 > 198.19.0.11:7"),
        ev(flow=FLOW),  # a repeat
        ev(),  # names nothing
        *(ev(flow=f"tcp 198.18.1.4:{p} > 198.19.0.10:80") for p in range(41000, 41010)),
    ]
    got = evidence_flows(evidence, max_flows=4)
    assert got == [
        ClientEnd(CLIENT, 40001, 6),
        ClientEnd(OTHER, 40002, 17),
        ClientEnd("198.18.1.4", 41000, 6),
        ClientEnd("198.18.1.4", 41001, 6),
    ]
    assert evidence_flows([ev(), ev(packet="the MUX lost its table")]) == []


# --- the window evidence points at --------------------------------------------------------------


def test_window_spans_every_evidence_time_plus_the_margin() -> None:
    w = evidence_window([ev(time=12.0, until=12.5), ev(time=11.0), ev(time=13.0, until=13.25)])
    assert w is not None and (w.t0, w.t1, w.capped) == (10.5, 13.75, False)
    assert evidence_window([ev(time=5.0)], margin=0.0) == type(w)(5.0, 5.0)
    assert evidence_window([ev(until=7.0)], margin=1.0) == type(w)(6.0, 8.0)  # until alone
    reversed_ = evidence_window([ev(time=9.0, until=8.0)], margin=0.0)
    assert reversed_ is not None and (reversed_.t0, reversed_.t1) == (8.0, 9.0)


def test_window_is_capped_after_the_first_evidence() -> None:
    w = evidence_window([ev(time=100.0), ev(time=130.0, until=160.0)], max_seconds=10.0)
    assert w is not None and (w.t0, w.t1, w.capped) == (99.5, 109.5, True)


def test_evidence_without_times_has_no_window() -> None:
    assert evidence_window([ev(flow=FLOW)]) is None
    assert evidence_window([]) is None


@pytest.mark.parametrize("kw", [{"margin": -1.0}, {"max_seconds": 0.0}])
def test_window_refuses_bad_bounds(kw: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        evidence_window([ev(time=1.0)], **kw)


# --- cutting from capture rings ---------------------------------------------------------------


def ring(tmp_path: Path, node: str, ifname: str, pkts: list, **stats: Any) -> PacketCapture:
    """A stopped capture (from t=99.5 to 101 s) on ``node``'s ``ifname`` holding ``pkts``."""
    where = tmp_path / "lab" / "pcap"
    where.mkdir(parents=True, exist_ok=True)
    cap = PacketCapture(f"dsrc-lab1.{node}", ifname, where, name=f"{node}-{ifname}")
    write(where / f"{node}-{ifname}.pcap0", pkts)
    cap.offset, cap.started, cap.stopped = OFFSET, 99.5, 101.0
    cap.stats = CaptureStats(**stats)
    return cap


def client_ring(tmp_path: Path, **stats: Any) -> PacketCapture:
    """The client's uplink: its flow (a0..a9, 1 ms apart from t=100 s) and another client's."""
    pkts = [at(client_udp(f"a{i}"), 100 * S + i * MS) for i in range(10)]
    pkts[5] = at(client_udp("other5", src=OTHER, sport=40001), 100 * S + 5 * MS)
    return ring(tmp_path, "client", "dsrc-router", pkts, captured=10, **stats)


def mux_ring(tmp_path: Path) -> PacketCapture:
    """The router's link toward mux1: the flow encapsulated, and an ICMP error about it."""
    pkts = [at(encapsulated("enc2"), 100 * S + 2 * MS), at(icmp_about("icmp8"), 100 * S + 8 * MS)]
    return ring(tmp_path, "router", "dsrc-mux1", pkts, captured=2)


UDP_FLOW = "udp 198.18.1.2:40001 > 198.19.0.10:7 (flow 1)"


def test_a_fail_is_cut_from_every_capture_into_attachments(tmp_path: Path) -> None:
    results = tmp_path / "results"
    out = results / "steady" / "evidence" / "test_x"
    caps = [client_ring(tmp_path), mux_ring(tmp_path)]
    v = fail(ev(flow=UDP_FLOW, time=100.0035, until=100.0065), req="RW-2")
    got = cut_evidence(caps, v, out, results, margin=0.002, origin=90.0)
    assert [a.path for a in got] == [
        "steady/evidence/test_x/RW-2-client-dsrc-router.pcap",
        "steady/evidence/test_x/RW-2-router-dsrc-mux1.pcap",
    ]
    client, mux = got
    assert client.kind == "pcap" and client.requirement == "RW-2"
    assert client.name == "RW-2 evidence on client:dsrc-router, 10.0-10.0 s"
    assert client.note == "6 packets; flows of udp 198.18.1.2:40001"
    # The window [100.0015, 100.0085] of the flow: not a0, a1, a9, nor the other client's.
    want = ["a2", "a3", "a4", "a6", "a7", "a8"]
    assert [tag(p) for p in rdpcap(str(results / client.path))] == want
    # The encapsulated packet is TCP (another protocol than the flow's UDP): only the ICMP
    # error, which quotes the UDP flow, is the flow's.
    assert [tag(p) for p in rdpcap(str(results / mux.path))] == ["icmp8"]


def test_only_non_empty_windows_are_kept(tmp_path: Path) -> None:
    results = tmp_path / "results"
    caps = [client_ring(tmp_path), mux_ring(tmp_path)]
    v = fail(ev(flow="tcp 198.18.1.2:40001 > 198.19.0.10:80", time=100.002, until=100.003))
    (only,) = cut_evidence(caps, v, results / "ev", results, margin=0.0)
    assert only.path == "ev/RW-2-router-dsrc-mux1.pcap"  # enc2; no TCP on the client's ring
    assert sorted(p.name for p in (results / "ev").iterdir()) == ["RW-2-router-dsrc-mux1.pcap"]


def test_an_incomplete_window_says_why(tmp_path: Path) -> None:
    results = tmp_path / "results"
    cap = client_ring(tmp_path, dropped_by_kernel=3)
    v = fail(ev(flow=UDP_FLOW, time=99.2, until=100.001))  # before the capture started
    (a,) = cut_evidence([cap], v, results / "ev", results, margin=0.0)
    assert a.note.startswith("2 packets; flows of udp 198.18.1.2:40001; incomplete: ")
    assert "started at 99.500" in a.note and "3 packets dropped by kernel" in a.note


def test_evidence_without_times_cuts_each_capture_s_whole_span_of_its_flows(
    tmp_path: Path,
) -> None:
    results = tmp_path / "results"
    v = fail(ev(flow=UDP_FLOW))
    (a,) = cut_evidence([client_ring(tmp_path)], v, results / "ev", results, origin=99.5)
    assert a.name == "RW-2 evidence on client:dsrc-router, 0.0-1.5 s"
    assert [tag(p) for p in rdpcap(str(results / a.path))] == [
        f"a{i}" for i in (0, 1, 2, 3, 4, 6, 7, 8, 9)
    ]


def test_evidence_with_times_and_no_flow_keeps_every_packet_of_the_window(
    tmp_path: Path,
) -> None:
    results = tmp_path / "results"
    v = fail(ev(packet="the MUX lost its table", time=100.004), req="MF-1")
    (a,) = cut_evidence([client_ring(tmp_path)], v, results / "ev", results, margin=0.001)
    assert "every packet" in a.note
    assert [tag(p) for p in rdpcap(str(results / a.path))] == ["a3", "a4", "other5"]


def test_long_evidence_is_cut_to_its_first_seconds_and_says_so(tmp_path: Path) -> None:
    results = tmp_path / "results"
    v = fail(ev(flow=UDP_FLOW, time=100.0, until=200.0))
    (a,) = cut_evidence(
        [client_ring(tmp_path)], v, results / "ev", results, max_seconds=0.0045, margin=0.0
    )
    assert "the first 0.0045 s of the evidence" in a.note
    assert [tag(p) for p in rdpcap(str(results / a.path))] == ["a0", "a1", "a2", "a3", "a4"]


def test_nothing_to_cut(tmp_path: Path) -> None:
    results = tmp_path / "results"
    caps = [client_ring(tmp_path)]
    passed = Verdict(requirement="RW-2", level="MUST", status=Status.PASS, message="ok")
    assert cut_evidence(caps, passed, results / "ev", results) == []
    assert cut_evidence([], fail(ev(flow=UDP_FLOW, time=100.0)), results / "ev", results) == []
    # Neither a flow nor a time: that would be the whole capture.
    assert cut_evidence(caps, fail(ev(packet="no flow")), results / "ev", results) == []
    assert not (results / "ev").exists()


def test_a_second_cut_of_a_requirement_gets_its_own_file(tmp_path: Path) -> None:
    results = tmp_path / "results"
    caps = [client_ring(tmp_path)]
    v = fail(ev(flow=UDP_FLOW, time=100.0))
    first = cut_evidence(caps, v, results / "ev", results)
    second = cut_evidence(caps, v, results / "ev", results)
    assert [a.path for a in first + second] == [
        "ev/RW-2-client-dsrc-router.pcap",
        "ev/RW-2-client-dsrc-router-2.pcap",
    ]


def test_cut_refuses_an_out_dir_outside_the_results_and_bad_bounds(tmp_path: Path) -> None:
    caps = [client_ring(tmp_path)]
    v = fail(ev(flow=UDP_FLOW, time=100.0))
    with pytest.raises(ConfigError, match="not inside"):
        cut_evidence(caps, v, tmp_path / "elsewhere", tmp_path / "results")
    with pytest.raises(ConfigError, match="max_flows"):
        cut_evidence(caps, v, tmp_path / "results" / "ev", tmp_path / "results", max_flows=0)


# --- captures ----------------------------------------------------------------------------------


def test_capture_label_and_summary(tmp_path: Path) -> None:
    cap = client_ring(tmp_path)
    assert capture_label(cap) == "client:dsrc-router"
    summary = capture_summary([cap])
    assert summary["client:dsrc-router"]["captured"] == 10
    assert summary["client:dsrc-router"]["ring_bytes"] == (cap.ring_files()[0]).stat().st_size


def test_capture_filter_keeps_the_syn_flood_out(tmp_path: Path) -> None:
    """Compiled and applied by tcpdump itself (reading a file needs no privileges)."""
    tcpdump = shutil.which("tcpdump") or "/usr/bin/tcpdump"
    if not Path(tcpdump).exists():
        pytest.skip("tcpdump is not installed (apt-get install tcpdump)")
    flood, lab_client = "198.18.201.7", CLIENT
    mux, server = "198.18.10.1", "198.18.20.1"

    def syn(src: str, mark: str) -> Any:
        return (
            IP(src=src, dst=VIP) / TCP(sport=40001, dport=80, flags="S") / Raw(f"|{mark}".encode())
        )

    pkts = [
        eth(syn(flood, "flood")),
        eth(IP(src=mux, dst=server, proto=4) / syn(flood, "flood-encapsulated")),
        eth(IP(src=mux, dst=server, proto=4, options=[b"\x01\x01\x01\x00"]) / syn(flood, "opt")),
        eth(IP(src=VIP, dst=flood) / TCP(sport=80, dport=40001, flags="SA") / Raw(b"|reply")),
        eth(syn(lab_client, "client")),
        eth(IP(src=mux, dst=server, proto=4) / syn(lab_client, "client-encapsulated")),
        eth(syn("198.18.208.1", "outside-the-flood-range")),
        # GUE (Katran: IPv4 directly in UDP to GUE_PORT), and UDP to another port.
        eth(IP(src=mux, dst=server) / UDP(sport=9, dport=GUE_PORT) / syn(flood, "flood-gue")),
        eth(IP(src=mux, dst=server) / UDP(sport=9, dport=GUE_PORT) / syn(lab_client, "cl-gue")),
        eth(IP(src=mux, dst=server) / UDP(sport=9, dport=GUE_PORT + 1) / syn(flood, "not-gue")),
    ]
    src = write(tmp_path / "all.pcap", [at(p, 100 * S + i * MS) for i, p in enumerate(pkts)])
    out = tmp_path / "kept.pcap"
    res = subprocess.run(
        [tcpdump, "-r", str(src), "-w", str(out), capture_filter()],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    kept = [tag(p) for p in rdpcap(str(out))]
    want = ["client", "client-encapsulated", "outside-the-flood-range", "cl-gue", "not-gue"]
    assert kept == want


def test_batched_captures_wake_per_block_and_say_when_a_window_reaches_their_stop(
    tmp_path: Path,
) -> None:
    cap = BatchedCapture(
        "dsrc-lab1.client", "dsrc-router", tmp_path / "b", name="b", bpf_filter=capture_filter()
    )
    argv = cap.argv()
    assert "-U" not in argv and "--immediate-mode" not in argv
    assert argv[-2:] == ["--", capture_filter()] and "-w" in argv
    results = tmp_path / "results"
    pkts = [at(client_udp(f"a{i}"), 100 * S + i * MS) for i in range(10)]
    (tmp_path / "b").mkdir()
    write(tmp_path / "b" / "b.pcap0", pkts)
    cap.offset, cap.started, cap.stopped = OFFSET, 99.5, 101.0
    cap.stats = CaptureStats(captured=10)
    early = cut_evidence(
        [cap], fail(ev(flow=UDP_FLOW, time=99.9)), results / "a", results, margin=0.0, origin=99.5
    )
    assert [a.note for a in early] == []  # nothing at 99.9: no window at all
    (late,) = cut_evidence(
        [cap],
        fail(ev(flow=UDP_FLOW, time=100.0, until=100.009)),
        results / "b",
        results,
        margin=0.0,
        origin=99.5,
    )
    assert "incomplete: the capture stopped at 1.5 s; its last 1 s may be missing" in late.note


# --- the plugin's wiring -----------------------------------------------------------------------


def plugin_request(tmp_path: Path, run: Any, observations: Any) -> Any:
    """What ``_attach_evidence`` reads of a pytest request: the results option, the session's
    scenario runs and directories, and the test's stash and name."""
    results = tmp_path / "results"
    config = SimpleNamespace(stash=pytest.Stash(), getoption=lambda _name: str(results))
    config.stash[plugin.SCENARIO_RUNS_KEY] = [run]
    config.stash[plugin.SCENARIO_DIRS_KEY] = [(observations, "steady", results / "steady")]
    warnings: list[Warning] = []
    node = SimpleNamespace(
        stash=pytest.Stash(), name="test_steady_state[RW-2]", warn=warnings.append
    )
    return SimpleNamespace(config=config, node=node, warnings=warnings)


def facts() -> Any:
    from dsrconform.observe.observations import LabFacts

    return LabFacts(roles={"client": "client"}, addresses={"client": [CLIENT]})


def test_the_plugin_attaches_the_windows_of_a_fail(tmp_path: Path) -> None:
    obs = SimpleNamespace(lab=facts())
    run = SimpleNamespace(
        observations=obs,
        captures=[client_ring(tmp_path)],
        started=99.5,
        counts={"captures": {"started": 1}},
    )
    request = plugin_request(tmp_path, run, obs)
    plugin._attach_evidence(request, obs, [fail(ev(flow=UDP_FLOW, time=100.001))])
    (a,) = request.node.stash[plugin.ATTACHMENTS_KEY]
    assert a.path == "steady/evidence/test_steady_state-RW-2/RW-2-client-dsrc-router.pcap"
    assert a.name == "RW-2 evidence on client:dsrc-router, 0.0-1.0 s"


def test_a_failed_cut_is_attached_as_text_and_the_verdict_stands(tmp_path: Path) -> None:
    obs = SimpleNamespace(lab=facts())
    cap = client_ring(tmp_path)
    for f in cap.ring_files():
        f.write_bytes(b"\x00" * 24)  # not a pcap file
    run = SimpleNamespace(observations=obs, captures=[cap], started=99.5, counts={})
    request = plugin_request(tmp_path, run, obs)
    plugin._attach_evidence(request, obs, [fail(ev(flow=UDP_FLOW, time=100.001))])
    (a,) = request.node.stash[plugin.ATTACHMENTS_KEY]
    assert a.kind == "text" and a.requirement == "RW-2"
    assert a.path == "steady/evidence/test_steady_state-RW-2/RW-2-error.txt"
    text = (tmp_path / "results" / a.path).read_text()
    assert "no pcap evidence: PcapError" in text and "not a pcap file" in text


def test_captures_that_never_started_are_explained_on_each_fail(tmp_path: Path) -> None:
    obs = SimpleNamespace(lab=facts())
    counts = {"captures": {"started": 0, "error": "ToolMissingError: no tcpdump"}}
    run = SimpleNamespace(observations=obs, captures=[], started=0.0, counts=counts)
    request = plugin_request(tmp_path, run, obs)
    plugin._attach_evidence(request, obs, [fail(ev(flow=UDP_FLOW), req="RW-1"), fail(ev())])
    got = request.node.stash[plugin.ATTACHMENTS_KEY]
    assert [(a.kind, a.requirement) for a in got] == [("text", "RW-1"), ("text", "RW-2")]
    assert all("did not start: ToolMissingError: no tcpdump" in a.note for a in got)


def test_no_captures_asked_for_or_another_run_s_observations_attach_nothing(
    tmp_path: Path,
) -> None:
    obs = SimpleNamespace(lab=facts())
    run = SimpleNamespace(observations=obs, captures=[], started=0.0, counts={})
    request = plugin_request(tmp_path, run, obs)
    plugin._attach_evidence(request, obs, [fail(ev(flow=UDP_FLOW, time=100.0))])
    plugin._attach_evidence(request, SimpleNamespace(lab=None), [fail(ev(time=1.0))])
    assert plugin.ATTACHMENTS_KEY not in request.node.stash
    assert not (tmp_path / "results").exists()


def test_a_flood_mix_captures_the_clients_links_only() -> None:
    from dsrconform.chaos.mixes import FLOOD_MIX, Mix
    from dsrconform.observe.evidence import _evidence_links
    from dsrconform.topofile import load_topology

    topo = load_topology(Path(__file__).resolve().parents[2] / "labs" / "basic.yaml")
    every = _evidence_links(topo)
    clients = _evidence_links(topo, mux_links=False)
    assert [p for p in every if p not in clients] == [(topo.router, m) for m in topo.of_role("mux")]
    assert clients and all(peer == topo.router for _, peer in clients)
    assert Mix().capture_mux_links and not FLOOD_MIX.capture_mux_links
