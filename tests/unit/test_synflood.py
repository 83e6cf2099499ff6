"""The SYN flood's pure parts: argument checks, frames, pacing, the result and its fault window."""

from __future__ import annotations

import contextlib
import ipaddress
import struct
import threading
from types import SimpleNamespace

import pytest

from dsrconform.errors import ConfigError
from dsrconform.traffic import synflood as sf
from tests.waiting import wait_for

DST_MAC, SRC_MAC = "02:00:00:00:00:02", "02:00:00:00:00:01"
NET = ipaddress.IPv4Network(sf.FLOOD_NET)


def _csum_ok(data: bytes) -> bool:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def _parse(frame: bytes) -> tuple[str, int, int, int, bool, bool]:
    """(source, source port, destination port, TCP flags, IP checksum ok, TCP checksum ok)."""
    ip, tcp = frame[14:34], frame[34:54]
    pseudo = ip[12:16] + ip[16:20] + struct.pack("!BBH", 0, 6, len(tcp))
    sport, dport = struct.unpack("!HH", tcp[:4])
    src = str(ipaddress.IPv4Address(ip[12:16]))
    return src, sport, dport, tcp[13], _csum_ok(ip), _csum_ok(pseudo + tcp)


def test_template_is_a_64_byte_syn_with_zero_source() -> None:
    frame = sf.syn_template(DST_MAC, SRC_MAC, "198.19.0.10", 80)
    assert len(frame) == sf.FRAME_LEN
    assert frame[:12] == bytes.fromhex("020000000002020000000001")
    assert struct.unpack("!H", frame[16:18])[0] == 40, "IPv4 total length"
    src, sport, dport, flags, ip_ok, tcp_ok = _parse(frame)
    assert (src, sport, dport, flags) == ("0.0.0.0", 0, 80, 0x02)
    assert ip_ok and tcp_ok


@pytest.mark.parametrize(
    ("flow", "want"),
    [(0, ("198.18.200.0", 1024)), (1, ("198.18.200.1", 1024)), (2047, ("198.18.207.255", 1024)),
     (2048, ("198.18.200.0", 1025)), (2048 * 64512, ("198.18.200.0", 1024))],
)  # fmt: skip
def test_flow_sources_walk_the_range_then_the_ports(flow: int, want: tuple[str, int]) -> None:
    assert sf.flow_source(flow, NET) == want


def test_prebuilt_frames_match_the_flow_numbering_and_have_valid_checksums() -> None:
    template = sf.syn_template(DST_MAC, SRC_MAC, "198.19.0.10", 80)
    first = 2040
    frames = sf.syn_frames(template, NET, first, 20)
    assert len(frames) == 20 * sf.FRAME_LEN
    for i in range(20):
        frame = frames[i * sf.FRAME_LEN : (i + 1) * sf.FRAME_LEN]
        src, sport, dport, flags, ip_ok, tcp_ok = _parse(frame)
        assert (src, sport) == sf.flow_source(first + i, NET)
        assert ipaddress.IPv4Address(src) in NET
        assert (dport, flags, ip_ok, tcp_ok) == (80, 0x02, True, True)
        # Everything else is the template's.
        for lo, hi in ((0, 24), (30, 34), (36, 50), (52, sf.FRAME_LEN)):
            assert frame[lo:hi] == template[lo:hi]


def test_repeated_flows_come_round_again_from_their_own_port() -> None:
    """The tuple probes' numbering: ``repeat`` flows from ``sport_base``, over and over."""
    probes = ipaddress.IPv4Network("198.18.208.0/21")
    assert sf.flow_source(0, probes, sport_base=7000, repeat=2048) == ("198.18.208.0", 7000)
    assert sf.flow_source(2047, probes, sport_base=7000, repeat=2048) == ("198.18.215.255", 7000)
    assert sf.flow_source(2048, probes, sport_base=7000, repeat=2048) == ("198.18.208.0", 7000)
    assert sf.flow_source(2049, probes, sport_base=7000, repeat=4096) == ("198.18.208.1", 7001)
    # The last port wraps to the base, not past 65535.
    assert sf.flow_source(2048, probes, sport_base=65535) == ("198.18.208.0", 65535)
    template = sf.syn_template(DST_MAC, SRC_MAC, "198.19.0.10", 80)
    frames = sf.syn_frames(template, probes, 2046, 4, sport_base=7000)
    got = [_parse(frames[i * sf.FRAME_LEN : (i + 1) * sf.FRAME_LEN]) for i in range(4)]
    assert [(g[0], g[1]) for g in got] == [
        ("198.18.215.254", 7000), ("198.18.215.255", 7000), ("198.18.208.0", 7001),
        ("198.18.208.1", 7001),
    ]  # fmt: skip
    assert all(g[4] and g[5] for g in got), "checksums patched for the port too"


@pytest.mark.parametrize(
    ("net", "size", "sport_base"),
    [
        ("198.18.200.0/21", 4096, 1024),  # whole rounds of the range: ports one step up
        ("198.18.200.0/21", 4096, 65528),  # ... until they wrap: rebuilt
        ("198.18.200.0/30", 10, 1024),  # not whole rounds: rebuilt every time
    ],
)
def test_af_packet_rounds_rewrite_the_pool_as_the_next_flows(
    net: str, size: int, sport_base: int
) -> None:
    """Each round of the AF_PACKET pool holds the next ``size`` flows, byte for byte the frames
    :func:`syn_frames` builds for them: a new 5-tuple per packet past the pool."""
    import ctypes

    space = ipaddress.IPv4Network(net)
    template = sf.syn_template(DST_MAC, SRC_MAC, "198.19.0.10", 80)
    buf = ctypes.create_string_buffer(
        sf.syn_frames(template, space, 0, size, sport_base=sport_base), size * sf.FRAME_LEN
    )
    rounds = sf.FlowRounds(template, space, size, sport_base=sport_base)
    seen: set[tuple[str, int]] = set()
    for k in range(1, 12):
        rounds(buf)
        assert buf.raw == sf.syn_frames(template, space, k * size, size, sport_base=sport_base)
        frames = [_parse(buf.raw[i * sf.FRAME_LEN : (i + 1) * sf.FRAME_LEN]) for i in range(size)]
        assert all(f[4] and f[5] for f in frames), "checksums valid after the rewrite"
        seen.update((f[0], f[1]) for f in frames)
    assert len(seen) == min(11 * size, space.num_addresses * (65536 - sport_base))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"sport_base": 80}, "source port base"),
        ({"sport_base": 65536}, "source port base"),
        ({"repeat": -1}, "repeat"),
        ({"repeat": 70_000}, "repeat"),
        ({"netns": "host"}, "lab namespace"),
        ({"netns": None}, "lab namespace"),
        ({"ifname": "eth0"}, "lab interface"),
        ({"vip": "10.0.0.1"}, "outside the lab range"),
        ({"src_net": "10.0.0.0/8"}, "outside the lab range"),
        ({"count": 0}, "count"),
        ({"duration": 0}, "duration"),
        ({"duration": 1e6}, "duration"),
        ({"rate": 0}, "rate"),
        ({"port": 0}, "port"),
        ({"engine": "pktgen"}, "engine"),
    ],
)
def test_flood_arguments_stay_in_the_lab_and_are_bounded(kw: dict, match: str) -> None:
    args = {"netns": "dsrc-x", "ifname": "dsrc-router", "vip": "198.19.0.10", "port": 80,
            "src_net": sf.FLOOD_NET, "rate": None, "count": 10, "duration": 1.0}  # fmt: skip
    args.update(kw)
    netns, ifname = args.pop("netns"), args.pop("ifname")
    with pytest.raises(ConfigError, match=match):
        sf.check_flood_args(netns, ifname, **args)


def test_flood_arguments_accepted() -> None:
    net = sf.check_flood_args("dsrc-a", "dsrc-b", vip="198.19.0.10", port=80,
                              src_net=sf.FLOOD_NET, rate=1e5, count=10, duration=1)  # fmt: skip
    assert net == NET


def test_pacer_sends_bursts_on_schedule_and_stops_at_count() -> None:
    p = sf.Pacer(1000.0, 250, start=100.0, deadline=200.0, burst=50)
    assert p.allowed(100.0) == 50, "the first burst goes at once"
    p.sent += 50
    assert p.allowed(100.01) == 0, "10 ms later only 10 are due: less than a burst"
    assert p.wait(100.01) == pytest.approx(0.04)
    assert p.allowed(100.05) == 50
    p.sent += 50
    assert p.allowed(100.5) == 150, "late: everything due so far, capped at what is left"
    p.sent += 150
    assert p.done(100.5)


def test_pacer_stops_at_the_deadline_and_unpaced_allows_the_rest() -> None:
    p = sf.Pacer(None, 1000, start=0.0, deadline=1.0, burst=64)
    assert p.allowed(0.0) == 1000 and p.wait(0.0) == 0.0
    assert not p.done(0.5) and p.done(1.0)
    q = sf.Pacer(10.0, 1000, start=0.0, deadline=1.0, burst=64)
    assert q.wait(0.0) == 0.0
    q.sent = 64
    assert q.wait(0.5) == pytest.approx(0.5), "the next burst is past the deadline: wait to it"


class FakeClock:
    """A monotonic clock that moves only when the fake sender says its frames took time."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def test_a_paced_flood_that_falls_behind_catches_up_in_bounded_runs(monkeypatch) -> None:
    """The sender manages 100 k/s of the 130 k/s asked: the pacer's backlog grows, but no test
    run carries more than PACED_CHUNK_SECONDS at the rate asked, nor reaches (by more than one
    burst) past the deadline, so the last frame goes close to the flood's end."""
    clock = FakeClock()
    monkeypatch.setattr(sf, "time", SimpleNamespace(monotonic=clock.monotonic))
    rate, duration, actual = 130_000.0, 10.0, 100_000.0
    pacer = sf.Pacer(rate, 10**9, start=0.0, deadline=duration, burst=sf._burst(rate))
    runs: list[tuple[float, int]] = []

    def send(n: int) -> int:
        runs.append((clock.now, n))
        clock.now += n / actual
        return n

    runner = sf._Runner(send, pacer, max_chunk=sf.LIVE_MAX_CHUNK, first_chunk=16_384,
                        duration=duration, progress=None)  # fmt: skip
    end = runner.run(contextlib.nullcontext)
    assert max(n for _, n in runs) <= rate * sf.PACED_CHUNK_SECONDS
    for at, n in runs:
        assert n <= max(pacer.burst, rate * (duration - at)) + 1, f"{n} frames at {at:.3f} s"
    assert end - duration < 0.1, f"the last frame went {end - duration:.3f} s past the deadline"
    assert pacer.sent == pytest.approx(actual * duration, rel=0.02), "it still sent flat out"


def test_progress_reaches_one_once_when_the_last_run_returned() -> None:
    """Two workers; one is stuck in its last test run past the deadline (as runs were, for
    seconds, on a loaded machine, their frames still going). Progress 1.0 (what the drain
    after a flood waits on) is reported once, after that run returned, never by a worker."""
    stuck_in, returned = threading.Event(), threading.Event()
    seen: list[tuple[float, bool]] = []
    calls = 0
    lock = threading.Lock()

    def send(n: int) -> int:
        nonlocal calls
        with lock:
            calls += 1
            stuck = calls == 3
        if stuck:
            stuck_in.set()
            # Past the deadline, so the other worker has ended meanwhile.
            wait_for(lambda: sf.time.monotonic() > pacer.deadline + 0.1, 5.0, "the deadline")
            returned.set()
        return n

    now = sf.time.monotonic()
    pacer = sf.Pacer(2000.0, 10**6, start=now, deadline=now + 0.3, burst=10)
    runner = sf._Runner(send, pacer, max_chunk=1000, first_chunk=10, duration=0.3,
                        progress=lambda share: seen.append((share, returned.is_set())))  # fmt: skip
    runner.run(contextlib.nullcontext, threads=2)
    assert stuck_in.is_set()
    assert [s for s, _ in seen].count(1.0) == 1 and seen[-1] == (1.0, True)
    assert max(s for s, _ in seen[:-1]) < 1.0


def _result(**kw: object) -> sf.FloodResult:
    base: dict = {"engine": "live-frames", "packets": 100_000, "start": 10.0, "end": 12.0,
                  "vip": "198.19.0.10", "port": 80, "src_net": sf.FLOOD_NET, "netns": "dsrc-a",
                  "ifname": "dsrc-b", "target_rate": 50_000.0, "stopped_by": "count"}  # fmt: skip
    base.update(kw)
    return sf.FloodResult(**base)


def test_result_rates_and_fault_window() -> None:
    r = _result(link_tx_packets=99_000, link_tx_dropped=1_000)
    assert r.seconds == 2.0 and r.pps == 50_000
    assert r.delivered == 99_000 and r.delivered_pps == 49_500
    w = r.fault_window()
    assert (w.kind, w.start, w.end, w.target, w.vip) == ("syn-flood", 10.0, 12.0, "198.19.0.10",
                                                         "198.19.0.10")  # fmt: skip
    assert w.rate == 49_500, "the fault window carries the delivered rate"
    assert w.detail["engine"] == "live-frames"
    d = r.as_dict()
    assert d["pps"] == 50_000 and d["delivered"] == 99_000


def test_result_without_link_counters_trusts_the_submitted_count() -> None:
    r = _result(link_tx_packets=None, link_tx_dropped=None)
    assert r.delivered == 100_000 and r.fault_window().rate == 50_000
