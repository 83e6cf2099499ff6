"""Evidence windows over synthetic pcap files written with scapy: the monotonic<->wall-clock
conversion, window bounds, flow filters (outer, IPIP-encapsulated, ICMP-quoted headers), a
wrapped ring, and what a window says about its own completeness. Pure Python, no privileges:
the capture itself (tcpdump in a lab namespace) is tests/integration/test_counters_pcap.py's."""

from __future__ import annotations

import struct
from decimal import Decimal
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw
from scapy.utils import PcapWriter, rdpcap

from dsrconform.errors import ConfigError, ToolMissingError
from dsrconform.observe.pcap import (
    CaptureStats,
    ClientEnd,
    ClockOffset,
    PacketCapture,
    PcapError,
    PcapHeader,
    PcapReader,
    PcapRecord,
    cut_window,
    frame_headers,
    read_pcap,
    write_pcap,
)

OFFSET = ClockOffset(offset_ns=1_700_000_000 * 10**9 + 123_456_000)
"""Whole microseconds: scapy rounds a microsecond file's stamps, the kernel truncates them."""
CLIENT, OTHER, VIP = "198.18.1.2", "198.18.1.3", "198.19.0.10"
MUX, SERVER = "198.18.10.1", "198.18.20.1"


def at(pkt: Packet, mono_ns: int) -> Packet:
    """``pkt`` stamped with the wall-clock time of monotonic ``mono_ns`` (exactly, as Decimal)."""
    pkt.time = Decimal(OFFSET.to_realtime_ns(mono_ns)) / Decimal(10**9)
    return pkt


def write(path: Path, pkts: list[Packet], *, nano: bool = True) -> Path:
    w = PcapWriter(str(path), nano=nano, linktype=1)
    for p in pkts:
        w.write(p)
    w.close()
    return path


def eth(ip: Packet) -> Packet:
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip


def tag(pkt: Packet) -> str:
    """The marker payload at the end of a packet we built."""
    return bytes(pkt).rsplit(b"|", 1)[-1].decode()


def client_udp(mark: str, src: str = CLIENT, sport: int = 40001) -> Packet:
    return eth(IP(src=src, dst=VIP) / UDP(sport=sport, dport=7) / Raw(f"|{mark}".encode()))


def encapsulated(mark: str, src: str = CLIENT, sport: int = 40001) -> Packet:
    inner = IP(src=src, dst=VIP) / TCP(sport=sport, dport=80, flags="PA") / Raw(f"|{mark}".encode())
    return eth(IP(src=MUX, dst=SERVER, proto=4) / inner)


def icmp_about(mark: str, src: str = CLIENT, sport: int = 40001) -> Packet:
    quoted = IPerror(src=src, dst=VIP) / UDPerror(sport=sport, dport=7)
    return eth(IP(src=MUX, dst=src) / ICMP(type=3, code=4) / quoted / Raw(f"|{mark}".encode()))


S = 1_000_000_000
MS = 1_000_000


# --- clocks -------------------------------------------------------------------------------------


def test_offset_measure_takes_the_tightest_bracket() -> None:
    mono = iter([1000, 1400, 5000, 5010, 9000, 9300])  # brackets of 400, 10 and 300 ns
    real = iter([10**18 + 1200, 10**18 + 5004, 10**18 + 9100])
    off = ClockOffset.measure(tries=3, realtime_ns=lambda: next(real),
                              monotonic_ns=lambda: next(mono))  # fmt: skip
    assert off == ClockOffset(10**18 + 5004 - 5005, 5)


def test_offset_converts_both_ways() -> None:
    off = ClockOffset(offset_ns=1_700_000_000 * S)
    assert off.to_realtime_ns(5 * S) == 1_700_000_005 * S
    assert off.to_monotonic_ns(1_700_000_005 * S + 7) == 5 * S + 7
    assert off.to_monotonic(1_700_000_005.25) == pytest.approx(5.25, abs=1e-6)
    assert off.to_realtime(5.25) == pytest.approx(1_700_000_005.25, abs=1e-6)


def test_measured_offset_matches_the_clocks() -> None:
    import time

    off = ClockOffset.measure()
    now_mono = time.monotonic()
    assert off.to_realtime(now_mono) == pytest.approx(time.time(), abs=0.05)
    assert 0 <= off.uncertainty_ns < 50 * MS


# --- window cutting -------------------------------------------------------------------------------


def timeline(tmp_path: Path, *, nano: bool = True) -> Path:
    """Packets 1 ms apart from t=100 s: a0..a9 (client UDP), with an encapsulated, an ICMP error,
    another client's packet and an ARP among them."""
    pkts = [at(client_udp(f"a{i}"), 100 * S + i * MS) for i in range(10)]
    pkts[3] = at(encapsulated("enc3"), 100 * S + 3 * MS)
    pkts[4] = at(icmp_about("icmp4"), 100 * S + 4 * MS)
    pkts[5] = at(client_udp("other5", src=OTHER, sport=40001), 100 * S + 5 * MS)
    pkts[6] = at(eth(ARP(psrc=MUX, pdst=SERVER)) / Raw(b"|arp6"), 100 * S + 6 * MS)
    return write(tmp_path / "t.pcap", pkts, nano=nano)


@pytest.mark.parametrize("nano", [True, False])
def test_window_keeps_exactly_the_packets_inside_inclusive_bounds(
    tmp_path: Path, nano: bool
) -> None:
    src = timeline(tmp_path, nano=nano)
    out = tmp_path / "w.pcap"
    res = cut_window([src], 100.002, 100.007, out, offset=OFFSET)
    got = rdpcap(str(out))
    assert [tag(p) for p in got] == ["a2", "enc3", "icmp4", "other5", "arp6", "a7"]
    assert res.packets == 6 and res.retained == 10
    assert res.first_ns == OFFSET.to_realtime_ns(100 * S + 2 * MS)
    assert res.last_ns == OFFSET.to_realtime_ns(100 * S + 7 * MS)
    assert res.earliest_ns == OFFSET.to_realtime_ns(100 * S)
    # Byte for byte, same timestamps as the source.
    source = {tag(p): p for p in rdpcap(str(src))}
    for p in got:
        assert bytes(p) == bytes(source[tag(p)]) and p.time == source[tag(p)].time


def test_window_edges_are_one_tick_sharp(tmp_path: Path) -> None:
    t0 = 200 * S
    pkts = [at(client_udp(m), t0 + d) for m, d in (("before", -1), ("at0", 0), ("at1", MS),
                                                    ("after", MS + 1))]  # fmt: skip
    src = write(tmp_path / "e.pcap", pkts)
    cut_window([src], t0 / S, (t0 + MS) / S, tmp_path / "w.pcap", offset=OFFSET)
    assert [tag(p) for p in rdpcap(str(tmp_path / "w.pcap"))] == ["at0", "at1"]


def test_microsecond_files_are_cut_at_their_precision(tmp_path: Path) -> None:
    off = ClockOffset(offset_ns=1_700_000_000 * S + 789)  # t1 falls inside a microsecond
    t0_ns, t1_ns = 100 * S, 100 * S + 7 * MS
    lo_us = off.to_realtime_ns(t0_ns) // 1000 * 1000  # how libpcap stamps a packet at t0
    hi_us = off.to_realtime_ns(t1_ns) // 1000 * 1000
    stamps = {"before": lo_us - 1000, "at0": lo_us, "at1": hi_us, "after": hi_us + 1000}
    recs = [PcapRecord(ts, len(bytes(client_udp(m))), bytes(client_udp(m)))
            for m, ts in stamps.items()]  # fmt: skip
    header = PcapHeader("<", False, 65535, 1)
    write_pcap(tmp_path / "us.pcap", header, recs)
    cut_window([tmp_path / "us.pcap"], t0_ns / S, t1_ns / S, tmp_path / "w.pcap", offset=off)
    got = rdpcap(str(tmp_path / "w.pcap"))
    assert [tag(p) for p in got] == ["at0", "at1"]
    assert read_pcap(tmp_path / "w.pcap")[0].nanos is False  # precision kept


def test_an_empty_window_is_a_valid_empty_pcap(tmp_path: Path) -> None:
    src = timeline(tmp_path)
    res = cut_window([src], 50.0, 60.0, tmp_path / "w.pcap", offset=OFFSET)
    assert res.packets == 0 and res.first_ns is None
    header, recs = read_pcap(tmp_path / "w.pcap")
    assert recs == [] and header.linktype == 1
    assert len(rdpcap(str(tmp_path / "w.pcap"))) == 0


def test_a_reversed_window_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="before its start"):
        cut_window([timeline(tmp_path)], 2.0, 1.0, tmp_path / "w.pcap", offset=OFFSET)


def test_flow_filter_finds_the_flow_in_every_header(tmp_path: Path) -> None:
    src = timeline(tmp_path)
    out = tmp_path / "w.pcap"
    flow = ClientEnd(CLIENT, 40001)
    cut_window([src], 100.0, 100.009, out, offset=OFFSET, flows=[flow])
    tags = [tag(p) for p in rdpcap(str(out))]
    assert tags == ["a0", "a1", "a2", "enc3", "icmp4", "a7", "a8", "a9"]
    assert "other5" not in tags and "arp6" not in tags


@pytest.mark.parametrize(
    ("flows", "want"),
    [
        ([ClientEnd(OTHER, 40001)], ["other5"]),
        ([ClientEnd(CLIENT, 40002)], []),
        ([ClientEnd(CLIENT, 40001, proto=6)], ["enc3"]),  # only the encapsulated TCP
        ([ClientEnd(CLIENT, 40001, proto=4)], []),  # the IPIP header is MUX -> server
        ([ClientEnd(MUX)], ["enc3", "icmp4"]),  # any port: outer headers from the MUX
        ([ClientEnd(OTHER), ClientEnd(CLIENT, 40001, proto=1)], ["other5"]),
        ([ClientEnd(OTHER), ClientEnd(CLIENT, 40001, proto=6)], ["enc3", "other5"]),
    ],
)
def test_flow_filter_variants(tmp_path: Path, flows: list[ClientEnd], want: list[str]) -> None:
    src = timeline(tmp_path)
    cut_window([src], 100.003, 100.005, tmp_path / "w.pcap", offset=OFFSET, flows=flows)
    assert [tag(p) for p in rdpcap(str(tmp_path / "w.pcap"))] == want


def test_headers_of_encapsulated_and_icmp_frames() -> None:
    enc = frame_headers(bytes(encapsulated("x")))
    assert [(h.layer, h.proto, h.src, h.dst, h.sport, h.dport) for h in enc] == [
        ("outer", 4, MUX, SERVER, 0, 0),
        ("inner", 6, CLIENT, VIP, 40001, 80),
    ]
    icmp = frame_headers(bytes(icmp_about("x")))
    assert [(h.layer, h.proto, h.src, h.sport) for h in icmp] == [
        ("outer", 1, MUX, 0),
        ("embedded", 17, CLIENT, 40001),
    ]
    assert frame_headers(bytes(eth(ARP()))) == []
    vlan = b"\x02" * 12 + b"\x81\x00\x00\x05\x08\x00" + bytes(IP(src=CLIENT, dst=VIP) / UDP())
    assert frame_headers(vlan)[0].src == CLIENT
    assert frame_headers(bytes(IP(src=CLIENT, dst=VIP) / UDP()), linktype=101)[0].dst == VIP
    assert frame_headers(b"\x02" * 12 + b"\x08\x00" + b"\x45\x00") == []  # cut short
    frag = eth(IP(src=CLIENT, dst=VIP, frag=10) / Raw(b"\x9c\x41\x00\x07"))
    assert frame_headers(bytes(frag))[0].sport == 0  # a later fragment has no ports


def test_a_wrapped_ring_comes_out_in_time_order(tmp_path: Path) -> None:
    # tcpdump -W reuses file 0 after the last: here .pcap0 holds the newest packets.
    newest = write(tmp_path / "r.pcap0", [at(client_udp(f"n{i}"), 300 * S + i * MS)
                                          for i in (4, 6)])  # fmt: skip
    oldest = write(tmp_path / "r.pcap1", [at(client_udp(f"o{i}"), 300 * S + i * MS)
                                          for i in (1, 3, 5)])  # fmt: skip
    res = cut_window([newest, oldest], 300.0, 301.0, tmp_path / "w.pcap", offset=OFFSET)
    assert [tag(p) for p in rdpcap(str(tmp_path / "w.pcap"))] == ["o1", "o3", "n4", "o5", "n6"]
    assert res.earliest_ns == OFFSET.to_realtime_ns(300 * S + 1 * MS) and res.retained == 5


def test_mixed_link_types_are_refused(tmp_path: Path) -> None:
    a = write(tmp_path / "a.pcap", [at(client_udp("a"), S)])
    w = PcapWriter(str(tmp_path / "b.pcap"), linktype=101)
    w.write(at(IP(src=CLIENT, dst=VIP) / UDP(), S))
    w.close()
    with pytest.raises(PcapError, match="mixed link types"):
        cut_window([a, tmp_path / "b.pcap"], 0.0, 2.0, tmp_path / "w.pcap", offset=OFFSET)


# --- reading files -----------------------------------------------------------------------------


def test_a_record_cut_short_ends_the_file_quietly(tmp_path: Path) -> None:
    src = timeline(tmp_path)
    data = src.read_bytes()
    (tmp_path / "cut.pcap").write_bytes(data[:-5])  # tcpdump still writing the last one
    header, recs = read_pcap(tmp_path / "cut.pcap")
    assert len(recs) == 9 and header.nanos


def test_big_endian_microsecond_files_are_read(tmp_path: Path) -> None:
    pkt = bytes(client_udp("be"))
    head = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack(">IIII", 1_700_000_000, 250_000, len(pkt), len(pkt)) + pkt
    (tmp_path / "be.pcap").write_bytes(head + rec)
    with PcapReader(tmp_path / "be.pcap") as r:
        (only,) = list(r)
    assert only.ts_ns == 1_700_000_000 * S + 250 * MS and only.data == pkt


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (struct.pack("<I", 0x0A0D0D0A) + bytes(40), "pcapng"),
        (b"\x00" * 24, "not a pcap file"),
        (b"\xd4\xc3\xb2\xa1", "too short"),
    ],
)
def test_files_that_are_not_classic_pcap_are_refused(
    tmp_path: Path, content: bytes, match: str
) -> None:
    (tmp_path / "x.pcap").write_bytes(content)
    with pytest.raises(PcapError, match=match):
        read_pcap(tmp_path / "x.pcap")


# --- the capture object without running it ------------------------------------------------------


def test_capture_command_line_carries_every_bound(tmp_path: Path) -> None:
    cap = PacketCapture("dsrc-lab.router", "dsrc-mux1", tmp_path, name="c1", snaplen=128,
                        file_mb=2, files=3, max_packets=5000, max_seconds=30,
                        bpf_filter="ip proto 4")  # fmt: skip
    argv = cap.argv()
    assert argv[:4] == ["ip", "netns", "exec", "dsrc-lab.router"]
    assert argv[4:8] == ["timeout", "--signal=INT", "--kill-after=10", "30"]
    want = {"-i": "dsrc-mux1", "-s": "128", "-C": "2", "-W": "3", "-c": "5000", "-Z": "root",
            "-w": str(tmp_path / "c1.pcap")}  # fmt: skip
    for flag, value in want.items():
        assert flag in argv and argv[argv.index(flag) + 1] == value, (flag, argv)
    assert "-p" in argv and "-U" in argv
    assert argv[-2:] == ["--", "ip proto 4"]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("lab.router", "dsrc-mux1"), {}),  # not a project namespace
        (("dsrc-lab.router", "../x"), {}),
        (("dsrc-lab.router", "-i"), {}),
        (("dsrc-lab.router", "dsrc-mux1"), {"snaplen": 10}),
        (("dsrc-lab.router", "dsrc-mux1"), {"files": 0}),
        (("dsrc-lab.router", "dsrc-mux1"), {"max_packets": 0}),
        (("dsrc-lab.router", "dsrc-mux1"), {"max_seconds": 0}),
        (("dsrc-lab.router", "dsrc-mux1"), {"name": "../evil"}),
    ],
)
def test_capture_refuses_bad_settings(tmp_path: Path, args: tuple, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        PacketCapture(*args, tmp_path, **kwargs)


def test_capture_without_tcpdump_says_what_to_install(tmp_path: Path) -> None:
    cap = PacketCapture("dsrc-x.y", "dsrc-z", tmp_path, tcpdump=str(tmp_path / "no-tcpdump"))
    with pytest.raises(ToolMissingError, match="apt-get install tcpdump"):
        cap.start()
    assert cap.stop() == CaptureStats()  # never started: nothing to stop
    assert not cap.running


def stopped_capture(tmp_path: Path, **stats: int) -> PacketCapture:
    """A capture as it is after running from t=99.5 to 101 with the timeline in its ring."""
    cap = PacketCapture("dsrc-x.y", "dsrc-z", tmp_path, name="ring")
    timeline(tmp_path).rename(tmp_path / "ring.pcap0")
    cap.offset, cap.started, cap.stopped = OFFSET, 99.5, 101.0
    cap.stats = CaptureStats(**stats)
    return cap


def test_a_window_inside_a_clean_capture_is_complete(tmp_path: Path) -> None:
    cap = stopped_capture(tmp_path, captured=10, dropped_by_kernel=0)
    w = cap.window(100.001, 100.002, flows=[ClientEnd(CLIENT, 40001)])
    assert w.complete and w.gaps == () and w.packets == 2
    assert w.first == pytest.approx(100.001, abs=1e-9) and w.last == pytest.approx(100.002)
    assert w.path.parent == tmp_path and w.source == "dsrc-x.y:dsrc-z"
    assert [tag(p) for p in rdpcap(str(w.path))] == ["a1", "a2"]
    assert w.as_dict()["path"] == str(w.path)


@pytest.mark.parametrize(
    ("t0", "t1", "stats", "gap"),
    [
        (99.0, 100.5, {"captured": 10}, "started at 99.500"),
        (100.0, 102.0, {"captured": 10}, "stopped 101.000"),
        (99.9, 100.5, {"captured": 25}, "overwrote 15 packets"),
        (100.0, 100.5, {"captured": 10, "dropped_by_kernel": 3}, "3 packets dropped by kernel"),
    ],
)
def test_a_window_says_why_it_is_incomplete(
    tmp_path: Path, t0: float, t1: float, stats: dict, gap: str
) -> None:
    cap = stopped_capture(tmp_path, **stats)
    w = cap.window(t0, t1)
    assert not w.complete
    assert any(gap in g for g in w.gaps), w.gaps


def test_an_overwritten_ring_is_fine_for_a_window_after_its_oldest_packet(tmp_path: Path) -> None:
    cap = stopped_capture(tmp_path, captured=25)
    assert cap.window(100.001, 100.005).complete
