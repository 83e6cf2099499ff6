"""The ``dsrconform bench mux`` harness: frames it generates, and a short run that cleans up.

Speed is the bench's business, not the tests': nothing here asserts a rate. The harness run puts
the XDP reflector in the MUX's place, so it needs no target.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from collections.abc import Iterator

import pytest

from dsrconform.bench import mux as bench
from dsrconform.netns import LAB_PREFIX, NETNS_RUN_DIR
from tests.markers import need_feature, requires_root

GEN_MAC, DUT_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"


def _csum_ok(data: bytes) -> bool:
    """Data that includes its own Internet checksum sums to 0xffff (one's complement)."""
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def _parse(frame: bytes) -> tuple[str, int, int, bool, bool]:
    """(source address, source port, TCP flags, IP checksum ok, TCP checksum ok)."""
    ip, tcp = frame[14:34], frame[34:54]
    src, dst = ip[12:16], ip[16:20]
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    sport = struct.unpack("!H", tcp[0:2])[0]
    return str(ipaddress.IPv4Address(src)), sport, tcp[13], _csum_ok(ip), _csum_ok(pseudo + tcp)


def test_template_is_a_valid_tcp_frame_to_the_vip() -> None:
    frame = bench.build_template(DUT_MAC, GEN_MAC, bench.VIP, "syn")
    assert len(frame) == bench.FRAME_LEN
    assert frame[0:6] == bytes.fromhex("020000000002"), "destination MAC is not the DUT's"
    assert frame[30:34] == ipaddress.IPv4Address(bench.VIP.addr).packed
    assert struct.unpack("!H", frame[36:38])[0] == bench.VIP.port
    src, sport, flags, ip_ok, tcp_ok = _parse(frame)
    assert (src, sport, flags) == ("0.0.0.0", 0, 0x02)
    assert ip_ok and tcp_ok, "template checksums must be valid for zero source address/port"
    assert _parse(bench.build_template(DUT_MAC, GEN_MAC, bench.VIP, "established"))[2] == 0x10


@pytest.fixture
def programs() -> Iterator[bench.BenchPrograms]:
    progs = bench.load_programs()
    try:
        yield progs
    finally:
        progs.close()


@requires_root
@pytest.mark.parametrize(
    ("mode", "runs", "expected"),
    [
        # Flow n: address 198.18.1.0 + n % 1792, port 1024 + n // 1792.
        ("syn", (1, 1, 1790, 1), ["198.18.1.0:1024", "198.18.1.1:1024", "198.18.7.255:1024",
                                  "198.18.1.0:1025"]),
        # 1024 flows, repeated: flow 1024 is flow 0 again.
        ("established", (1, 1023, 1), ["198.18.1.0:1024", "198.18.4.255:1024",
                                       "198.18.1.0:1024"]),
    ],
)  # fmt: skip
def test_livegen_rebuilds_the_whole_frame_and_varies_the_flow(
    programs: bench.BenchPrograms, mode: bench.Mode, runs: tuple[int, ...], expected: list[str]
) -> None:
    template = bench.build_template(DUT_MAC, GEN_MAC, bench.VIP, mode)
    programs.configure(template, mode)
    gen = programs.livegen.program("dsrc_livegen")
    seen = []
    with bench.pinned_to_one_cpu():  # the flow sequence is per CPU
        for repeat in runs:
            # Garbage in, as a recycled live-frames page would be: the output must not depend on it.
            res = gen.test_run(b"\xab" * bench.FRAME_LEN, repeat=repeat)
            assert res.retval == 3, f"livegen returned {res.retval}, expected XDP_TX (3)"
            src, sport, _, ip_ok, tcp_ok = _parse(res.data)
            assert ip_ok, f"bad IP checksum for {src}:{sport} (the MUX drops those)"
            assert tcp_ok, f"bad TCP checksum for {src}:{sport}"
            # Apart from source address, source port and the two checksums: the template.
            for lo, hi in ((0, 24), (30, 34), (36, 50), (52, bench.FRAME_LEN)):
                assert res.data[lo:hi] == template[lo:hi], f"bytes {lo}..{hi} differ from template"
            seen.append(f"{src}:{sport}")
    assert seen == expected


def _our_namespaces() -> list[str]:
    mine = f"-{os.getpid()}-"
    names = os.listdir(NETNS_RUN_DIR) if os.path.isdir(NETNS_RUN_DIR) else []
    return [n for n in names if n.startswith(LAB_PREFIX) and mine in n]


@requires_root
@pytest.mark.parametrize("generator", bench.GENERATORS)
def test_short_run_delivers_and_leaves_nothing_behind(generator: str) -> None:
    """Each generator this kernel has (the others skip with the probe's reason): what comes
    back is counted, never more than was sent, and the summary names the generator."""
    need_feature(generator)
    before = _our_namespaces()
    summary = bench.run_bench(seconds=0.3, dut="reflector", generator=generator)
    assert summary["generator"] == generator and summary["generator_passed_over"] is None
    assert any("generator af-packet" in w for w in summary["warnings"]) == (
        generator == "af-packet"
    )
    assert set(summary["cases"]) == {f"{d}-{m}" for d, m in bench.CASES}
    for name, case in summary["cases"].items():
        assert case["delivered"] > 0, f"{name}: nothing came back to the generator side"
        assert case["delivered"] <= case["submitted"], (
            f"{name}: {case['delivered']} delivered > {case['submitted']} submitted: "
            "something other than the generator's frames was counted"
        )
    assert summary["ratios"]["syn"] is not None
    assert _our_namespaces() == before, "bench namespaces left behind"


# --- IPv6 ------------------------------------------------------------------------------------


def _count_drop_slot(programs: bench.BenchPrograms, frame: bytes) -> int:
    """The dsrc_cd_stats slot count_drop counts ``frame`` in (run once through it)."""
    before = [programs.delivered(slot)[0] for slot in range(3)]
    res = programs.count_drop.program("dsrc_count_drop").test_run(frame)
    assert res.retval == 1, f"count_drop returned {res.retval}, expected XDP_DROP (1)"
    grew = [slot for slot in range(3) if programs.delivered(slot)[0] != before[slot]]
    assert len(grew) == 1, f"one frame counted in slots {grew}"
    return grew[0]


@requires_root
def test_count_drop_counts_ipv6_bench_frames_apart_from_neighbour_discovery(
    programs: bench.BenchPrograms,
) -> None:
    from scapy.layers.inet6 import (
        ICMPv6MLReport2,
        ICMPv6ND_NS,
        IPv6,
        IPv6ExtHdrHopByHop,
        RouterAlert,
    )
    from scapy.layers.l2 import Ether

    eth = Ether(dst=GEN_MAC, src=DUT_MAC)
    outer = IPv6(src=bench.MUX_ADDR6, dst=bench.BACKENDS6[0])
    six = bench.build_template(GEN_MAC, DUT_MAC, bench.VIP6, "syn")
    assert _count_drop_slot(programs, six) == 2, "the reflected IPv6 SYN is the bench's"
    assert _count_drop_slot(programs, bytes(eth / outer / IPv6(six[14:]))) == 2, "IPv6 in IPv6"
    ns = eth / IPv6(src="fe80::1", dst="ff02::1:ff00:1") / ICMPv6ND_NS(tgt="fe80::2")
    assert _count_drop_slot(programs, bytes(ns)) == 1, "neighbour discovery is not the bench's"
    mld = IPv6(src="fe80::1", dst="ff02::16") / IPv6ExtHdrHopByHop(options=[RouterAlert()])
    assert _count_drop_slot(programs, bytes(eth / mld / ICMPv6MLReport2())) == 1, "MLD neither"
    four = bench.build_template(GEN_MAC, DUT_MAC, bench.VIP, "syn")
    assert _count_drop_slot(programs, four) == 0, "IPv4 stays in its slot"


@requires_root
def test_short_ipv6_run_delivers_ipv6_and_leaves_nothing_behind() -> None:
    """The reflector check in IPv6 (AF_PACKET, the one IPv6 generator): 74-byte frames come
    back and are counted as the IPv6 bench's, the summary names the family."""
    need_feature("af-packet")
    before = _our_namespaces()
    summary = bench.run_bench(seconds=0.3, rounds=1, dut="reflector", family="ipv6")
    assert (summary["family"], summary["frame_bytes"]) == ("ipv6", 74)
    assert summary["vip"]["addr"] == "2001:2:0:100::10" and summary["generator"] == "af-packet"
    for name, case in summary["cases"].items():
        assert case["family"] == "ipv6" and "ignored_non_ipv6" in case
        assert 0 < case["delivered"] <= case["submitted"], f"{name}: {case}"
        assert case["delivered_bytes"] == case["delivered"] * 74, f"{name}: not the bench's frames"
    assert _our_namespaces() == before, "bench namespaces left behind"


@requires_root
@pytest.mark.parametrize("mode", ["syn", "established"])
def test_reference_bench_mux_encapsulates_ipv6_in_ipv6_from_mux_addr6(mode: bench.Mode) -> None:
    """The reference's mux_for_bench, as the bench gives it an IPv6 VIP: XDP_TX of the frame
    in an outer IPv6 header (next header 41) from MUX_ADDR6 to one of BACKENDS6."""
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    from dsrconform.netns import link_mac, throwaway_netns, veth_pair
    from reference_impl.mux import bench_attach

    frame = bench.af_packet_frames(bench.build_template(DUT_MAC, GEN_MAC, bench.VIP6, mode), mode)
    with (
        throwaway_netns("b6t") as ns,
        veth_pair(ns, "dsrc-b6a", "dsrc-b6b"),
        bench_attach(
            netns=ns,
            ifname="dsrc-b6b",
            mux_addr=bench.MUX_ADDR,
            mux_addr6=bench.MUX_ADDR6,
            next_hop_mac=GEN_MAC,
            vip=bench.VIP6,
            backends=bench.BACKENDS6,
        ) as mux,
    ):
        res = mux.program.test_run(frame[:74])
        dut_mac = link_mac(ns, "dsrc-b6b")
    assert res.retval == 3, f"reference MUX returned {res.retval}, expected XDP_TX (3)"
    out = Ether(res.data)
    assert (out.dst, out.src) == (GEN_MAC, dut_mac)
    assert out[IPv6].nh == 41 and out[IPv6].src == bench.MUX_ADDR6
    assert out[IPv6].dst in bench.BACKENDS6
    assert bytes(out[IPv6].payload) == frame[14:74], "the inner packet must be the client's"
