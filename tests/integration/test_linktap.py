"""The BPF link tap on a real veth (root): per-flow counts, directions, checksum validity, TCP
flags, and an explicit overflow count when its table is full."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from dsrconform.netns import enter_netns, link_mac, throwaway_netns, veth_pair
from dsrconform.observe.linktap import LinkTap, to_records
from tests.markers import requires_root

pytestmark = requires_root
A, B = "198.18.1.1", "198.18.20.1"


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    with throwaway_netns("tapa") as na, throwaway_netns("tapb") as nb, \
            veth_pair(na, "dsrc-ta", "dsrc-tb", ns_b=nb):  # fmt: skip
        yield na, nb


def send(ns: str, ifname: str, frames: list[bytes]) -> None:
    with enter_netns(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    with s:
        s.bind((ifname, 0))
        for f in frames:
            s.send(f)


def frame(ns_from: str, if_from: str, ns_to: str, if_to: str, pkt: Packet) -> bytes:
    eth = Ether(src=link_mac(ns_from, if_from), dst=link_mac(ns_to, if_to))
    return bytes(eth / pkt)


def test_counts_directions_checksums_and_flags(pair: tuple[str, str]) -> None:
    na, nb = pair
    good_syn = IP(src=A, dst=B) / TCP(sport=40000, dport=80, flags="S")
    bad_l4 = IP(src=A, dst=B) / TCP(sport=40001, dport=80, flags="A", chksum=0x1234) / Raw(b"x")
    bad_l3 = IP(src=A, dst=B, chksum=0x4321) / UDP(sport=5000, dport=7) / Raw(b"hello")
    no_csum = IP(src=A, dst=B) / UDP(sport=5001, dport=7, chksum=0) / Raw(b"abc")
    odd = IP(src=A, dst=B) / UDP(sport=5002, dport=7) / Raw(b"x" * 1001)  # odd length, 4 chunks
    reply = IP(src=B, dst=A) / ICMP(type=0) / Raw(b"pong")
    with LinkTap(nb, "dsrc-tb") as tap:
        pkts = (good_syn, good_syn, bad_l4, bad_l3, no_csum, odd)
        send(na, "dsrc-ta", [frame(na, "dsrc-ta", nb, "dsrc-tb", p) for p in pkts])
        send(nb, "dsrc-tb", [frame(nb, "dsrc-tb", na, "dsrc-ta", reply)])
        flows = {(f.src, f.sport, f.direction): f for f in tap.flows()}
        counters = tap.counters()
    syn = flows[(A, 40000, "ingress")]
    assert (syn.packets, syn.syn, syn.bad_l3, syn.bad_l4) == (2, 2, 0, 0)
    assert syn.bytes == 2 * len(frame(na, "dsrc-ta", nb, "dsrc-tb", good_syn))
    assert syn.first_ns <= syn.last_ns
    assert flows[(A, 40001, "ingress")].bad_l4 == 1 and flows[(A, 40001, "ingress")].syn == 0
    assert flows[(A, 5000, "ingress")].bad_l3 == 1
    assert flows[(A, 5001, "ingress")].bad_l4 == 0, "UDP without a checksum counted as bad"
    assert flows[(A, 5002, "ingress")].bad_l4 == 0, "a correct odd-length datagram counted as bad"
    icmp = flows[(B, 0, "egress")]
    assert (icmp.proto, icmp.packets, icmp.bad_l4, icmp.l4_checked) == (1, 1, 0, 0)
    assert syn.l4_checked == 2
    assert counters["overflow"] == 0 and counters["packets"] >= 7


def test_a_full_table_counts_overflow_instead_of_evicting(pair: tuple[str, str]) -> None:
    na, nb = pair
    frames = [frame(na, "dsrc-ta", nb, "dsrc-tb", IP(src=A, dst=B) / UDP(sport=6000 + i, dport=7))
              for i in range(10)]  # fmt: skip
    with LinkTap(nb, "dsrc-tb", max_flows=4) as tap:
        send(na, "dsrc-ta", frames)
        flows = tap.flows()
        counters = tap.counters()
    assert len(flows) == 4
    assert {f.sport for f in flows} == {6000, 6001, 6002, 6003}, "a recorded flow was evicted"
    assert counters["overflow"] == 6


def test_taps_in_a_lab_see_encapsulation_and_leave_the_agent_working() -> None:
    """A tap on a server's link runs before the agent (tc priority 1 vs 10) and passes packets
    on: the server still answers, and the tap saw IPIP from the MUXes arriving."""
    from pathlib import Path

    from dsrconform.lab import Lab

    basic = Path(__file__).resolve().parents[2] / "labs" / "basic.yaml"
    with Lab.up(basic, name="ttap") as lab, LinkTap(lab.netns("server1"), "dsrc-srv") as tap:
        answered = []
        for _ in range(40):  # until server1 has answered a few times (Maglev spreads the rest)
            res = lab.run("client", ["curl", "-s", "--max-time", "5", "http://198.19.0.10/id"])
            assert res.stdout.strip().startswith("server"), res.stdout
            answered.append(res.stdout.strip())
            if answered.count("server1") >= 3:
                break
        assert answered.count("server1") >= 3, f"server1 answered too rarely: {answered}"
        flows = tap.flows()
    ipip = [f for f in flows if f.proto == 4 and f.direction == "ingress"]
    assert ipip, "no encapsulated packet seen on server1's link"
    assert {f.src for f in ipip} <= {"198.18.10.1", "198.18.10.5"}
    bad = [f for f in flows if f.bad_l3 or f.bad_l4]
    assert not bad, f"bad checksums on a lab link: {bad[:3]}"


def test_tap_counts_become_the_checkers_records(pair: tuple[str, str]) -> None:
    from dsrconform.observe.taps import TapSet

    na, nb = pair
    frames = [
        frame(na, "dsrc-ta", nb, "dsrc-tb", IP(src=A, dst=B) / TCP(sport=41000, dport=80, flags=f))
        for f in ("S", "A", "FA")
    ]
    broken = IP(src=A, dst=B) / TCP(sport=41001, dport=80, flags="A", chksum=1)
    frames.append(frame(na, "dsrc-ta", nb, "dsrc-tb", broken))
    with LinkTap(nb, "dsrc-tb") as tap:
        send(na, "dsrc-ta", frames)
        records = to_records(tap, node="server1", link="link0", peer="client", started=1.0)
    ts = TapSet.from_records(records)
    ingress = ts.taps["server1:dsrc-tb:ingress"]
    assert (ingress.receiver, ingress.sender, ingress.overflowed) == ("server1", "client", False)
    flows = {f.sport: f for f in ts.flows["server1:dsrc-tb:ingress"]}
    good, bad = flows[41000], flows[41001]
    assert (good.packets, good.tcp_flags, good.l4_valid, good.l4_invalid) == (3, 0x03, 3, 0)
    assert (bad.l4_invalid, bad.l4_valid, bad.l4_unchecked) == (1, 0, 0)
    assert good.first <= good.last
