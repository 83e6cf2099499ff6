"""Katran's balancer and tc decap, built from Katran's sources and programmed by this project's
adapter, under BPF_PROG_TEST_RUN: a SYN to the VIP leaves encapsulated toward the real the ring
chose, with the outer header Katran writes; the LRU keeps an established flow on its real across
a ring change; Katran's tc decap gives the server the client's packet back; and the balancer
attaches natively on a veth in a namespace. Root only; skipped without Katran's sources."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from dsrconform.bench.mux import pinned_to_one_cpu
from dsrconform.bpf import libbpf
from dsrconform.errors import ConfigError
from dsrconform.netns import enter_netns, throwaway_netns, veth_pair
from dsrconform.target import BenchVip
from katran_target import maglev, sources
from katran_target.balancer import KatranBalancer, ipip_outer_source
from katran_target.target import KatranTarget
from tests.markers import requires_root

pytestmark = requires_root

ROUTER_MAC = "02:00:00:00:00:aa"
MUX_MAC = "02:00:00:00:00:02"
VIP = ("198.19.0.10", 80, 6)
REALS = ["198.18.20.1", "198.18.20.2", "198.18.20.3"]
MUX_ADDR = "198.18.10.1"
XDP_TX = 3


def _target(encap: str) -> KatranTarget:
    target = KatranTarget(options={"encap": encap})
    try:
        target.sources()
    except ConfigError as e:
        pytest.skip(f"Katran's sources are not available: {e}")
    return target


@pytest.fixture(params=["ipip", "gue"])
def balancer(request: pytest.FixtureRequest) -> Iterator[tuple[str, KatranBalancer]]:
    encap = request.param
    target = _target(encap)
    lb = KatranBalancer(
        target.balancer_object(),
        default_mac=ROUTER_MAC,
        gue_source=MUX_ADDR if encap == "gue" else None,
    )
    try:
        lb.add_vip(VIP)
        lb.set_reals(VIP, REALS)
        yield encap, lb
    finally:
        lb.close()


def _frame(src: str, sport: int, flags: str) -> bytes:
    pkt = (
        Ether(src="02:00:00:00:00:01", dst=MUX_MAC)
        / IP(src=src, dst=VIP[0])
        / TCP(sport=sport, dport=VIP[1], flags=flags)
    )
    return bytes(pkt)


def _chosen(lb: KatranBalancer, src: str, sport: int) -> str | None:
    slot = maglev.flow_slot(src, sport, VIP[1], port_zeroed=False)
    return lb.real_address(lb.ring_of(VIP)[slot])


def test_syn_is_encapsulated_toward_the_rings_real(balancer: tuple[str, KatranBalancer]) -> None:
    encap, lb = balancer
    for i in range(8):
        src, sport = f"198.18.1.{2 + i}", 40000 + 97 * i
        res = lb.program.test_run(_frame(src, sport, "S"))
        assert res.retval == XDP_TX
        out = Ether(res.data)
        assert (out.dst, out.src) == (ROUTER_MAC, MUX_MAC)
        outer = out[IP]
        assert outer.dst == _chosen(lb, src, sport)
        assert outer.ttl == 64 and outer.chksum == IP(bytes(outer)[:20]).chksum
        if encap == "ipip":
            assert outer.proto == 4
            assert outer.src == ipip_outer_source(src, sport, sources.LAB_IPIP_V4_PREFIX)
            assert ipaddress.IPv4Address(outer.src) in ipaddress.IPv4Network("198.18.0.0/16")
            inner = IP(bytes(outer.payload))
        else:
            assert outer.proto == 17 and outer.src == MUX_ADDR
            assert outer[UDP].dport == 6080
            inner = IP(bytes(outer[UDP].payload))
        assert (inner.src, inner.dst, inner[TCP].sport) == (src, VIP[0], sport)
        assert inner[TCP].flags == "S"
    counters = lb.counters()
    assert counters["xdp_tx_packets"] == 8 and counters["lru_miss_tcp_syn"] == 8
    assert counters["vip_packets[198.19.0.10:80/tcp]"] == 8
    assert sum(counters[f"backend_packets[{r}]"] for r in REALS) == 8


def test_lru_keeps_a_flow_on_its_real_while_the_ring_changes(
    balancer: tuple[str, KatranBalancer],
) -> None:
    """Katran's answer to draining: the flow's LRU entry (made by its SYN on this CPU) keeps it
    on its real after that real leaves the ring; a new flow follows the new ring."""
    _, lb = balancer
    src, sport = "198.18.1.9", 41000
    first = _chosen(lb, src, sport)
    assert first is not None
    with pinned_to_one_cpu():
        assert lb.program.test_run(_frame(src, sport, "S")).retval == XDP_TX
        changed = lb.set_reals(VIP, [r for r in REALS if r != first], hold=[first])
        assert changed > 0 and first not in lb.reals_of(VIP)
        res = lb.program.test_run(_frame(src, sport, "A"))
    assert Ether(res.data)[IP].dst == first
    assert lb.counters()["lru_hit"] >= 1
    # The same flow's SYN again is a new connection: the ring, which no longer has `first`.
    res = lb.program.test_run(_frame(src, sport, "S"))
    assert Ether(res.data)[IP].dst != first


def test_katrans_tc_decap_returns_the_clients_packet() -> None:
    target = _target("gue")
    with (
        KatranBalancer(target.balancer_object(), default_mac=ROUTER_MAC, gue_source=MUX_ADDR) as lb,
        libbpf.BpfObject(target.decap_object()) as decap,
    ):
        lb.add_vip(VIP)
        lb.set_reals(VIP, REALS)
        sent = _frame("198.18.1.5", 40000, "S")
        encapped = lb.program.test_run(sent).data
        res = decap.program("tcdecap").test_run(encapped)
    assert libbpf.tc_action_name(res.retval) == "TC_ACT_UNSPEC"  # up the stack
    assert bytes(Ether(res.data)[IP]) == bytes(Ether(sent)[IP])


@pytest.fixture
def veth() -> Iterator[str]:
    with throwaway_netns("ktrn") as ns, veth_pair(ns, "kt0", "kt1"):
        yield ns


def test_attaches_natively_and_detaches(veth: str) -> None:
    target = _target("gue")
    with (
        target.mux_for_bench(
            netns=veth,
            ifname="kt0",
            mux_addr=MUX_ADDR,
            next_hop_mac=ROUTER_MAC,
            vip=BenchVip(*VIP),
            backends=REALS,
        ),
        enter_netns(veth),
        IPRoute() as ipr,
    ):
        idx = ipr.link_lookup(ifname="kt0")[0]
        assert libbpf.xdp_query_id(idx) != 0
    with enter_netns(veth):
        assert libbpf.xdp_query_id(idx) == 0


def _loaded(mutant: str | None) -> KatranBalancer:
    target = KatranTarget(mutant=mutant, options={"encap": "gue"})
    try:
        target.sources()
    except ConfigError as e:
        pytest.skip(f"Katran's sources are not available: {e}")
    lb = KatranBalancer(target.balancer_object(), default_mac=ROUTER_MAC, gue_source=MUX_ADDR)
    lb.add_vip(VIP, target.vip_flags)
    lb.set_reals(VIP, REALS)
    return lb


def test_mutant_lru_bypass_moves_an_established_flow() -> None:
    """The same sequence as the LRU test, with F_LRU_BYPASS: the ACK follows the new ring."""
    with _loaded("lru-bypass") as lb, pinned_to_one_cpu():
        src, sport = "198.18.1.9", 41000
        first = _chosen(lb, src, sport)
        assert lb.program.test_run(_frame(src, sport, "S")).retval == XDP_TX
        lb.set_reals(VIP, [r for r in REALS if r != first], hold=[first])
        res = lb.program.test_run(_frame(src, sport, "A"))
        assert Ether(res.data)[IP].dst not in (first, None)
        assert lb.counters()["lru_hit"] == 0


@pytest.mark.parametrize("mutant", [None, "hash-no-src-port"])
def test_mutant_hash_no_src_port_sends_an_address_to_one_real(mutant: str | None) -> None:
    with _loaded(mutant) as lb:
        reals = {
            Ether(lb.program.test_run(_frame("198.18.1.7", 30000 + 131 * i, "S")).data)[IP].dst
            for i in range(24)
        }
    assert (len(reals) == 1) == (mutant == "hash-no-src-port"), reals


# --- IPv6 ------------------------------------------------------------------------------------

VIP6 = ("2001:2:0:100::10", 80, 6)
VIP46 = ("198.19.0.13", 80, 6)  # an IPv4 VIP whose reals are IPv6: IPv4 in GUE over IPv6
REALS6 = ["2001:2:0:20::1", "2001:2:0:20::2", "2001:2:0:20::3"]
MUX_ADDR6 = "2001:2:0:10::1"


@pytest.fixture
def balancer6() -> Iterator[KatranBalancer]:
    target = _target("gue")
    lb = KatranBalancer(
        target.balancer_object(),
        default_mac=ROUTER_MAC,
        gue_source=MUX_ADDR,
        gue_source6=MUX_ADDR6,
    )
    try:
        for vip in (VIP6, VIP46):
            lb.add_vip(vip)
            lb.set_reals(vip, REALS6)
        yield lb
    finally:
        lb.close()


def _frame6(src: str, sport: int, flags: str, vip: tuple[str, int, int] = VIP6) -> bytes:
    l3 = IPv6(src=src, dst=vip[0]) if ":" in vip[0] else IP(src=src, dst=vip[0])
    return bytes(
        Ether(src="02:00:00:00:00:01", dst=MUX_MAC)
        / l3
        / TCP(sport=sport, dport=vip[1], flags=flags)
    )


@pytest.mark.parametrize("vip", [VIP6, VIP46], ids=["ipv6-in-gue6", "ipv4-in-gue6"])
def test_ipv6_reals_get_gue_over_ipv6_toward_the_rings_real(
    balancer6: KatranBalancer, vip: tuple[str, int, int]
) -> None:
    """Katran's IPv6 path as this adapter programs it: the flow's real is the one the ring
    (computed here, with folly's IPv6 address hash) names at the slot Katran's 16-byte flow hash
    picks; the outer header is IPv6 + UDP/6080 from the MUX's IPv6 address."""
    lb = balancer6
    seen = set()
    for i in range(12):
        src = f"2001:2:0:1::{2 + i:x}" if vip is VIP6 else f"198.18.1.{2 + i}"
        sport = 40000 + 97 * i
        res = lb.program.test_run(_frame6(src, sport, "S", vip))
        assert res.retval == XDP_TX
        out = Ether(res.data)
        outer = out[IPv6]
        slot = maglev.flow_slot(src, sport, vip[1], port_zeroed=False)
        assert outer.dst == lb.real_address(lb.ring_of(vip)[slot])
        assert outer.src == MUX_ADDR6 and outer.nh == 17 and outer[UDP].dport == 6080
        assert outer.plen == len(bytes(outer.payload))
        inner_raw = bytes(outer[UDP].payload)
        inner = IPv6(inner_raw) if vip is VIP6 else IP(inner_raw)
        assert (inner.src, inner.dst, inner[TCP].sport) == (src, vip[0], sport)
        seen.add(outer.dst)
    assert len(seen) > 1  # the ring spreads flows over the reals
    label = "[2001:2:0:100::10]" if vip is VIP6 else "198.19.0.13"
    assert lb.counters()[f"vip_packets[{label}:80/tcp]"] == 12


def test_lru_keeps_an_ipv6_flow(balancer6: KatranBalancer) -> None:
    """On one CPU, the ACK after a SYN is an LRU hit and goes where the SYN went."""
    lb = balancer6
    with pinned_to_one_cpu():
        syn = lb.program.test_run(_frame6("2001:2:0:1::99", 41000, "S"))
        ack = lb.program.test_run(_frame6("2001:2:0:1::99", 41000, "A"))
    assert Ether(syn.data)[IPv6].dst == Ether(ack.data)[IPv6].dst
    assert lb.counters()["lru_hit"] >= 1


def test_katrans_tc_decap_returns_the_clients_ipv6_packet(balancer6: KatranBalancer) -> None:
    target = _target("gue")
    with libbpf.BpfObject(target.decap_object()) as decap:
        for vip, src in ((VIP6, "2001:2:0:1::5"), (VIP46, "198.18.1.5")):
            sent = _frame6(src, 40000, "S", vip)
            encapped = balancer6.program.test_run(sent).data
            res = decap.program("tcdecap").test_run(encapped)
            assert libbpf.tc_action_name(res.retval) == "TC_ACT_UNSPEC"  # up the stack
            assert bytes(Ether(res.data).payload) == bytes(Ether(sent).payload)
