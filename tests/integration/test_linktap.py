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


def no_ipv6_stack(ns: str) -> None:
    """No IPv6 on ``ns``'s links: the taps record IPv6 too, and a link coming up sends its own
    (router solicitations, MLD reports) that would mix with what a test sends."""
    with enter_netns(ns):
        for scope in ("all", "default"):
            with open(f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6", "w") as f:
                f.write("1")


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    with throwaway_netns("tapa") as na, throwaway_netns("tapb") as nb:
        no_ipv6_stack(na)
        no_ipv6_stack(nb)
        with veth_pair(na, "dsrc-ta", "dsrc-tb", ns_b=nb):
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


def test_encapsulated_icmp_quoted_and_fragmented_packets_are_told_apart(
    pair: tuple[str, str],
) -> None:
    """The key parts checkers need for AF-1, RW-6, RW-7, RB-3: the IPIP payload's 5-tuple (with
    its flags and checksum), an ICMP error's quoted 5-tuple (also inside IPIP), fragments."""
    from scapy.layers.inet import fragment

    na, nb = pair
    mux, srv, vip, cli, rtr = (
        "198.18.10.1",
        "198.18.20.1",
        "198.19.0.10",
        "198.18.1.2",
        "198.18.1.1",
    )
    inner = IP(src=cli, dst=vip) / TCP(sport=42000, dport=80, flags="S")
    bad_inner = IP(src=cli, dst=vip) / TCP(sport=42001, dport=80, flags="A", chksum=7)
    quoted = IP(src=vip, dst=cli) / TCP(sport=80, dport=42000, flags="A")
    icmp = IP(src=rtr, dst=vip) / ICMP(type=3, code=4, nexthopmtu=1400) / bytes(quoted)[:28]
    big = IP(src=cli, dst=vip, id=77) / UDP(sport=5300, dport=7) / Raw(b"z" * 2400)
    pkts = [
        IP(src=mux, dst=srv) / inner,
        IP(src=mux, dst=srv) / bad_inner,
        IP(src=mux, dst=srv) / icmp,
        icmp,
        *fragment(big, fragsize=1000),
    ]
    with LinkTap(nb, "dsrc-tb") as tap:
        send(na, "dsrc-ta", [frame(na, "dsrc-ta", nb, "dsrc-tb", p) for p in pkts])
        flows = [f for f in tap.flows() if f.direction == "ingress"]
        records = to_records(tap, node="server1", link="l", peer="client", started=0.0)
    by_inner = {f.inner[3]: f for f in flows if f.inner and f.inner[0] == 6}
    syn = by_inner[42000]
    assert (syn.proto, syn.src, syn.dst, syn.sport, syn.dport) == (4, mux, srv, 0, 0)
    assert syn.inner == (6, cli, vip, 42000, 80)
    assert (syn.syn, syn.bad_l3, syn.bad_l4, syn.l4_checked) == (1, 0, 0, 1)
    assert by_inner[42001].bad_l4 == 1, "the inner TCP checksum was not verified"
    errors = {bool(f.inner): f for f in flows if f.embedded}
    assert set(errors) == {True, False}, f"ICMP errors not both seen: {flows}"
    for f in errors.values():
        assert f.icmp == (3, 4)
        assert f.embedded == (6, vip, cli, 80, 42000)
        assert (f.bad_l3, f.bad_l4) == (0, 0)
    assert errors[True].inner == (1, rtr, vip, 0, 0)
    frags = [f for f in flows if f.fragments]
    assert sum(f.fragments for f in frags) == 3 and sum(f.packets for f in frags) == 3
    first = [f for f in frags if f.sport == 0 and f.dport == 0]
    assert len(first) == 1 and first[0].src == cli, "fragments were given ports"
    recs = [r for r in records if getattr(r, "embedded", None) and r.inner]
    assert len(recs) == 1 and recs[0].embedded.sport == 80 and recs[0].inner.proto == 1
    assert (recs[0].icmp_type, recs[0].icmp_code, recs[0].is_icmp_error) == (3, 4, True)
    assert sum(getattr(r, "fragments", 0) for r in records) == 3


def test_dscp_and_ecn_marks_and_rfc6040_encapsulation(pair: tuple[str, str]) -> None:
    """Which DSCP values and ECN codepoints the innermost header carried, and for IPIP the
    packets whose outer header changed the DSCP or set an ECN field RFC 6040 forbids."""
    na, nb = pair
    mux, srv, vip, cli = "198.18.10.1", "198.18.20.1", "198.19.0.10", "198.18.1.2"

    def seg(sport: int, tos: int) -> Packet:
        return IP(src=cli, dst=vip, tos=tos) / TCP(sport=sport, dport=80, flags="A")

    af11_ect0, ef_ce = (10 << 2) | 2, (46 << 2) | 3
    pkts = [
        seg(43000, af11_ect0),  # plain: the marks as sent
        seg(43000, 46 << 2),
        IP(src=mux, dst=srv, tos=af11_ect0) / seg(43001, af11_ect0),  # normal mode: copied
        IP(src=mux, dst=srv, tos=10 << 2) / seg(43002, af11_ect0),  # compatibility: Not-ECT
        IP(src=mux, dst=srv, tos=0) / seg(43003, ef_ce),  # DSCP lost
        IP(src=mux, dst=srv, tos=(10 << 2) | 1) / seg(43004, af11_ect0),  # ECT(1) over ECT(0)
        IP(src=mux, dst=srv, tos=af11_ect0) / seg(43005, 10 << 2),  # ECT over Not-ECT
    ]
    with LinkTap(nb, "dsrc-tb") as tap:
        send(na, "dsrc-ta", [frame(na, "dsrc-ta", nb, "dsrc-tb", p) for p in pkts])
        flows = [f for f in tap.flows() if f.direction == "ingress"]
        records = to_records(tap, node="server1", link="l", peer="client", started=0.0)
    by_port = {(f.inner or (0, "", "", f.sport))[3]: f for f in flows}
    plain = by_port[43000]
    assert (plain.dscp_seen, plain.ecn_seen) == ((1 << 10) | (1 << 46), (1 << 2) | 1)
    assert (plain.dscp_changed, plain.ecn_bad) == (0, 0), "counted on a packet without IPIP"
    want = {43001: (0, 0), 43002: (0, 0), 43003: (1, 0), 43004: (0, 1), 43005: (0, 1)}
    got = {p: (by_port[p].dscp_changed, by_port[p].ecn_bad) for p in want}
    assert got == want
    assert by_port[43003].dscp_seen == 1 << 46 and by_port[43003].ecn_seen == 1 << 3
    recs = {r.inner.sport: r for r in records if getattr(r, "inner", None)}
    assert (recs[43003].dscp_changed, recs[43003].dscp_seen) == (1, 1 << 46)
    assert recs[43004].ecn_bad == 1 and recs[43004].ecn_seen == 1 << 2


def test_malformed_packets_are_counted_in_their_own_direction(pair: tuple[str, str]) -> None:
    na, nb = pair
    cut = frame(na, "dsrc-ta", nb, "dsrc-tb", IP(src=A, dst=B) / UDP(sport=1, dport=2))[:24]
    overrun = bytearray(frame(na, "dsrc-ta", nb, "dsrc-tb", IP(src=A, dst=B) / UDP(sport=1)))
    overrun[16:18] = (400).to_bytes(2, "big")  # total length beyond the frame
    with LinkTap(nb, "dsrc-tb") as tap:
        send(na, "dsrc-ta", [cut, cut, bytes(overrun)])
        records = to_records(tap, node="server1", link="l", peer="client", started=0.0)
    infos = {r.direction: r for r in records if r.kind == "tap"}
    assert (infos["ingress"].malformed, infos["egress"].malformed) == (3, 0)
    assert infos["ingress"].packets >= 2


def test_an_aggregated_network_makes_one_record_for_a_whole_flood(pair: tuple[str, str]) -> None:
    na, nb = pair
    flood = [
        frame(na, "dsrc-ta", nb, "dsrc-tb",
              IP(src=f"198.18.{200 + i % 8}.{i % 251}", dst=B) / TCP(sport=1024 + i, flags="S"))
        for i in range(600)
    ]  # fmt: skip
    legit = frame(na, "dsrc-ta", nb, "dsrc-tb", IP(src=A, dst=B) / TCP(sport=40000, flags="S"))
    with LinkTap(nb, "dsrc-tb", max_flows=16, aggregate="198.18.200.0/21") as tap:
        send(na, "dsrc-ta", [*flood, legit])
        flows = [f for f in tap.flows() if f.direction == "ingress"]
        counters = tap.counters()
    assert counters["overflow"] == 0
    by_src = {(f.src, f.sport): f.packets for f in flows}
    assert by_src == {("198.18.200.0", 0): 600, (A, 40000): 1}


def test_periods_split_a_flow_into_spans_of_one_record(pair: tuple[str, str]) -> None:
    """Packets of one flow before and after new_period() make one record with two spans (an
    empty period in between leaves none); a flow seen in one period only has no spans."""
    from dsrconform.observe.taps import TapSet

    na, nb = pair

    def udp(sport: int, n: int) -> list[bytes]:
        return [frame(na, "dsrc-ta", nb, "dsrc-tb", IP(src=A, dst=B) / UDP(sport=sport, dport=7))
                for _ in range(n)]  # fmt: skip

    with LinkTap(nb, "dsrc-tb") as tap:
        send(na, "dsrc-ta", udp(7000, 2) + udp(7001, 1))
        assert (tap.new_period(), tap.new_period()) == (1, 2)
        send(na, "dsrc-ta", udp(7000, 3))
        flows = {(f.sport, f.direction): f for f in tap.flows()}
        records = to_records(tap, node="server1", link="link0", peer="client", started=1.0)
    both, once = flows[(7000, "ingress")], flows[(7001, "ingress")]
    assert both.packets == 5 and [s[2] for s in both.spans] == [2, 3]
    assert both.first_ns == both.spans[0][0] and both.last_ns == both.spans[1][1]
    assert both.spans[0][1] <= both.spans[1][0]
    assert once.packets == 1 and once.spans == ()
    rec = {f.sport: f for f in TapSet.from_records(records).flows["server1:dsrc-tb:ingress"]}
    assert rec[7000].spans is not None and [s.packets for s in rec[7000].spans] == [2, 3]
    assert rec[7001].spans is None


def test_gue_is_decoded_like_ipip_with_both_checksums_verified(pair: tuple[str, str]) -> None:
    """Katran's GUE (IPv4 directly in UDP to GUE_PORT, the outer source port a hash): the inner
    5-tuple, flags and marks; the inner L4 checksum and the outer UDP one (when not zero) both
    verified; an ICMP error quoted inside GUE; UDP to another port, or to GUE_PORT without an
    IP version nibble (4 or 6) inside, stays plain UDP."""
    from dsrconform.observe.taps import GUE_PORT

    na, nb = pair
    mux, srv, vip, cli, rtr = (
        "198.18.10.1",
        "198.18.20.1",
        "198.19.0.10",
        "198.18.1.2",
        "198.18.1.1",
    )
    af11_ect0 = (10 << 2) | 2

    def gue(inner: Packet, sport: int, *, tos: int | None = None, **udp: int) -> Packet:
        raw = bytes(inner)
        outer = IP(src=mux, dst=srv, tos=raw[1] if tos is None else tos)
        return outer / UDP(sport=sport, dport=GUE_PORT, **udp) / Raw(raw)

    def syn(sport: int, **kw: int) -> Packet:
        return IP(src=cli, dst=vip, tos=af11_ect0) / TCP(sport=sport, dport=80, flags="S", **kw)

    quoted = IP(src=vip, dst=cli) / TCP(sport=80, dport=44000, flags="A")
    icmp = IP(src=rtr, dst=vip) / ICMP(type=3, code=4, nexthopmtu=1400) / bytes(quoted)[:28]
    pkts = [
        gue(syn(44000), 1001),
        gue(syn(44000), 1001),
        gue(syn(44001, chksum=7), 1002),  # bad inner checksum (the outer one is right)
        gue(syn(44002), 1003, chksum=0x1234),  # bad outer UDP checksum, good inner one
        gue(syn(44003), 1004, chksum=0),  # no outer checksum: fine
        gue(syn(44004), 1005, tos=0),  # outer DSCP lost
        gue(icmp, 1006),
        IP(src=mux, dst=srv) / UDP(sport=1007, dport=GUE_PORT + 1) / Raw(bytes(syn(44005))),
        IP(src=mux, dst=srv) / UDP(sport=1008, dport=GUE_PORT) / Raw(b"\x50" + b"\0" * 40),
    ]
    with LinkTap(nb, "dsrc-tb") as tap:
        send(na, "dsrc-ta", [frame(na, "dsrc-ta", nb, "dsrc-tb", p) for p in pkts])
        flows = [f for f in tap.flows() if f.direction == "ingress"]
        records = to_records(tap, node="server1", link="l", peer="mux1", started=0.0)
        counters = tap.counters("ingress")
    assert counters["truncated"] == 0
    inside = {f.inner[3]: f for f in flows if f.inner and f.inner[0] == 6}
    ok = inside[44000]
    assert (ok.proto, ok.src, ok.dst, ok.sport, ok.dport) == (17, mux, srv, 1001, GUE_PORT)
    assert ok.inner == (6, cli, vip, 44000, 80)
    assert (ok.packets, ok.syn, ok.bad_l3, ok.bad_l4, ok.l4_checked) == (2, 2, 0, 0, 2)
    assert (ok.dscp_seen, ok.ecn_seen, ok.dscp_changed, ok.ecn_bad) == (1 << 10, 1 << 2, 0, 0)
    assert (inside[44001].bad_l4, inside[44001].l4_checked) == (1, 1)
    assert (inside[44002].bad_l4, inside[44002].l4_checked) == (1, 1), "outer UDP not verified"
    assert (inside[44003].bad_l4, inside[44003].l4_checked) == (0, 1)
    assert inside[44004].dscp_changed == 1 and inside[44004].ecn_bad == 0
    (err,) = [f for f in flows if f.embedded]
    assert err.inner == (1, rtr, vip, 0, 0) and err.icmp == (3, 4)
    assert err.embedded == (6, vip, cli, 80, 44000) and (err.bad_l3, err.bad_l4) == (0, 0)
    plain = {f.sport: f for f in flows if f.inner is None}
    assert set(plain) == {1007, 1008}, f"not plain UDP: {flows}"
    assert plain[1007].dport == GUE_PORT + 1 and plain[1008].dport == GUE_PORT
    recs = {r.inner.sport: r for r in records if getattr(r, "inner", None) and r.inner.proto == 6}
    assert recs[44000].payload.dport == 80 and recs[44002].l4_invalid == 1
