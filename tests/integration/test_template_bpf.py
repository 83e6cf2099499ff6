"""The template's two BPF programs (examples/template_target/bpf) packet by packet, under
BPF_PROG_TEST_RUN (root, no lab): the MUX encapsulates a SYN to a VIP toward one of the VIP's
backends with a valid outer header and passes everything else; the decap strips exactly that
outer header, and only from a MUX to this server."""

from __future__ import annotations

import struct

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw, raw

from dsrconform.bpf.build import compile_bpf
from dsrconform.bpf.libbpf import BpfObject, tc_action_name
from examples.template_target import minimal
from tests.integration.packets import CLIENT_MAC, MUX_MAC, ROUTER_MAC, icmp_frag_needed, ip_csum
from tests.markers import requires_root

pytestmark = requires_root

MUX_ADDR = "198.18.10.1"
OTHER_MUX = "198.18.10.5"
VIP = "198.19.0.10"
BACKENDS = ["198.18.20.1", "198.18.20.2", "198.18.20.3"]
XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3


def mux_object(defines: dict[str, str | int] | None = None) -> BpfObject:
    obj = BpfObject(compile_bpf(minimal.MUX_SOURCE, defines or {}))
    cfg = minimal.mux_config(MUX_ADDR, MUX_MAC, ROUTER_MAC)
    obj.map("tpl_config").update(struct.pack("<I", 0), cfg)
    key = minimal.service_key(VIP, 80, "tcp")
    obj.map("tpl_services").update(key, minimal.backends_value(BACKENDS))
    return obj


def syn(src: str = "198.18.1.2", sport: int = 40000, dport: int = 80, tos: int = 0x2E) -> bytes:
    ip = IP(src=src, dst=VIP, tos=tos, flags="DF")
    return raw(Ether(src=CLIENT_MAC, dst=MUX_MAC) / ip / TCP(sport=sport, dport=dport, flags="S"))


def test_the_mux_encapsulates_a_syn_toward_a_backend_and_passes_the_rest() -> None:
    with mux_object() as obj:
        prog = obj.program("tpl_mux")
        frame = syn()
        res = prog.test_run(frame)
        assert res.retval == XDP_TX
        out = Ether(res.data)
        assert (out.src, out.dst, out.type) == (MUX_MAC, ROUTER_MAC, 0x0800)
        outer = res.data[14:34]
        assert ip_csum(outer) == 0  # a valid header checksum
        o = IP(outer)
        assert (o.version, o.ihl, o.proto, o.ttl, o.src) == (4, 5, 4, 64, MUX_ADDR)
        assert o.dst in BACKENDS
        assert o.tos == 0x2E and o.flags.DF  # the client's DSCP/ECN and DF kept
        assert o.len == len(frame) - 14 + 20
        assert res.data[34:] == frame[14:]  # the inner packet untouched
        # The same 5-tuple, the same backend; many source ports reach every backend.
        assert IP(prog.test_run(frame).data[14:34]).dst == o.dst
        dsts = {IP(prog.test_run(syn(sport=p)).data[14:34]).dst for p in range(40000, 40060)}
        assert dsts == set(BACKENDS)
        # Not a service: another port, UDP to the TCP service's port, another address.
        for other in (
            syn(dport=81),
            raw(Ether(dst=MUX_MAC) / IP(src="198.18.1.2", dst=VIP) / UDP(dport=80)),
            raw(Ether(dst=MUX_MAC) / IP(src="198.18.1.2", dst=MUX_ADDR) / TCP(dport=179)),
        ):
            res = prog.test_run(other)
            assert res.retval == XDP_PASS and res.data == other
        # A length the frame does not hold: dropped, never sent on with a wrong outer length.
        lying = bytearray(frame)
        lying[16:18] = (len(frame) - 14 + 1).to_bytes(2, "big")
        assert prog.test_run(bytes(lying)).retval == XDP_DROP
        stats = minimal.percpu_totals(obj, "tpl_stats", minimal.MUX_STATS)
        assert stats["encap"] == 62 and stats["pass"] == 3 and stats["drop"] == 1
        assert stats["encap_bytes"] == 62 * (len(frame) - 14)


def test_an_icmp_error_about_a_flow_goes_to_the_flows_server() -> None:
    with mux_object() as obj:
        prog = obj.program("tpl_mux")
        for sport in range(40000, 40020):
            server = IP(prog.test_run(syn(sport=sport)).data[14:34]).dst
            # Fragmentation needed about the server's reply VIP:80 -> client:sport.
            err = icmp_frag_needed("198.18.1.254", VIP, 80, "198.18.1.2", sport, 6)
            res = prog.test_run(err)
            assert res.retval == XDP_TX and IP(res.data[14:34]).dst == server, sport
            assert res.data[34:] == err[14:]
        # About a port the VIP does not serve, or from a client's packet: not ours.
        for other in (
            icmp_frag_needed("198.18.1.254", VIP, 81, "198.18.1.2", 40000, 6),
            icmp_frag_needed("198.18.1.254", "198.19.0.99", 80, "198.18.1.2", 40000, 6),
        ):
            assert prog.test_run(other).retval == XDP_PASS


def test_the_mutant_zeroes_the_outer_tos_and_the_l3_hash_ignores_ports() -> None:
    with mux_object({"MUTANT_OUTER_TOS_ZERO": 1, "HASH_L3": 1}) as obj:
        prog = obj.program("tpl_mux")
        res = prog.test_run(syn(tos=0x2E))
        assert res.retval == XDP_TX and IP(res.data[14:34]).tos == 0
        assert IP(res.data[34:]).tos == 0x2E  # the inner header keeps it
        dsts = {IP(prog.test_run(syn(sport=p)).data[14:34]).dst for p in range(40000, 40030)}
        assert len(dsts) == 1


def test_the_decap_strips_the_muxs_outer_header_and_nothing_else() -> None:
    server = BACKENDS[0]
    inner = IP(src="198.18.1.2", dst=VIP) / TCP(sport=40000, dport=80, flags="S") / Raw(b"x" * 9)

    def tunnelled(src: str = MUX_ADDR, dst: str = server) -> bytes:
        return raw(Ether(src=ROUTER_MAC, dst=MUX_MAC) / IP(src=src, dst=dst, proto=4) / inner)

    with BpfObject(compile_bpf(minimal.DECAP_SOURCE)) as obj:
        obj.map("tpl_decap_config").update(struct.pack("<I", 0), minimal.ip4(server))
        for mux in (MUX_ADDR, OTHER_MUX):
            obj.map("tpl_muxes").update(minimal.ip4(mux), b"\x01")
        prog = obj.program("tpl_decap")
        frame = tunnelled()
        res = prog.test_run(frame)
        assert tc_action_name(res.retval) == "TC_ACT_OK"
        assert res.data == frame[:14] + raw(inner)  # Ethernet kept, outer header gone
        # From a host that is no MUX: refused. To another server, or not IPIP: untouched.
        res = prog.test_run(tunnelled(src="198.18.1.9"))
        assert tc_action_name(res.retval) == "TC_ACT_SHOT"
        for other in (tunnelled(dst=BACKENDS[1]), raw(Ether() / inner)):
            res = prog.test_run(other)
            assert tc_action_name(res.retval) == "TC_ACT_OK" and res.data == other
        stats = minimal.percpu_totals(obj, "tpl_decap_stats", minimal.DECAP_STATS)
        assert stats == {"decap": 1, "decap_bytes": len(inner), "refused": 1}


def test_the_mux_and_the_decap_together_give_back_the_clients_packet() -> None:
    frame = syn()
    with mux_object() as mux:
        res = mux.program("tpl_mux").test_run(frame)
    server = IP(res.data[14:34]).dst
    with BpfObject(compile_bpf(minimal.DECAP_SOURCE)) as obj:
        obj.map("tpl_decap_config").update(struct.pack("<I", 0), minimal.ip4(server))
        obj.map("tpl_muxes").update(minimal.ip4(MUX_ADDR), b"\x01")
        back = obj.program("tpl_decap").test_run(res.data)
    assert tc_action_name(back.retval) == "TC_ACT_OK"
    assert back.data[14:] == frame[14:]  # the client's packet, byte for byte
