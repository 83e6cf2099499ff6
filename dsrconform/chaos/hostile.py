"""Hostile packets for the RB requirements: malformed frames at every service, non-VIP packets to
the MUXes' and servers' own addresses, and encapsulated packets (in each of the target's
encapsulations, ``lab.encapsulations``) from a client posing as a MUX."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dsrconform.chaos.fault import Say
from dsrconform.chaos.traffic import client_sources, traffic_clients
from dsrconform.families import lab_families
from dsrconform.observe.observations import FaultWindow

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab

__all__ = ["send_hostile"]


def send_hostile(lab: RunningLab, say: Say, *, repeats: int = 20) -> list[FaultWindow]:
    """Each frame sent ``repeats`` times, as a ``crafted`` window per sending:

    - every crafted case but the ICMP errors (which quote live flows: RW-6/RW-7 in steady state)
      at every service, from a traffic client through the router, and straight from the
      router's link into each MUX serving it (the router's own stack drops some cases);
    - non-VIP packets (ICMP echo, TCP SYN, UDP) to a MUX's and a server's own address, from the
      router's link into each MUX (RB-2: passed, never encapsulated);
    - each service's SYN or datagram encapsulated by a client (not a MUX) to every server, in
      each of the target's encapsulations (``lab.encapsulations``: IPIP, GUE), one window each
      (``foreign-<encapsulation>``, detail ``encapsulation``) (RB-4: never decapsulated, so
      never answered)."""
    from dsrconform.netns import link_mac
    from dsrconform.traffic import crafted

    topo = lab.topology
    client, router = traffic_clients(topo)[0], topo.router
    src = {fam: client_sources(topo, client, fam)[0] for fam in lab_families(topo.services)}
    cases = [n for n in crafted.CASE_NAMES if not n.startswith("icmp-")]
    windows: list[FaultWindow] = []

    def send(node: str, peer: str, frames: list[Any], what: str, encapsulation: str = "") -> int:
        out_if = topo.uplink(node, peer).ifname
        if frames and isinstance(frames[0], bytes):
            frames = [crafted.CraftedFrames(what, tuple(frames))]
        rec = crafted.send_crafted(
            lab.netns(node),
            out_if,
            frames,
            count_per_frame=repeats,
            max_packets=20_000,
            deadline=10.0,
        )
        detail = {"encapsulation": encapsulation} if encapsulation else {}
        windows.append(rec.fault_window(peer, what=what, **detail))
        return rec.sent

    def framed(node: str, peer: str, packets: list[Any]) -> list[bytes]:
        out_if, in_if = topo.uplink(node, peer).ifname, topo.uplink(peer, node).ifname
        return crafted.frame(
            packets, link_mac(lab.netns(node), out_if), link_mac(lab.netns(peer), in_if)
        )

    sent = 0
    for svc in topo.services:
        flow = crafted.Flow(src[svc.family], 1, svc.vip, svc.port, svc.proto)
        muxes = [m for m in topo.of_role("mux") if svc in topo.services_of_mux(m)]
        for entry in [None, *muxes]:
            inj = crafted.lab_injection(
                topo, lab.netns, flow, cases, client_node=client, entry_mux=entry
            )
            node = client if entry is None else router
            sent += send(node, inj.target, inj.frames, f"malformed at {svc.name}")

    def addr(node: str, fam: str) -> str | None:
        up = topo.uplink(node)
        return up.ip6 if fam == "ipv6" else up.ip

    first_server = topo.of_role("server")[0]
    for mux in topo.of_role("mux"):
        pkts = []
        for fam, own in src.items():  # each family of the run, where the nodes have it
            for dst in (addr(mux, fam), addr(first_server, fam)):
                if dst is not None:
                    pkts += crafted.non_vip_packets(own, dst)
        sent += send(router, mux, framed(router, mux, pkts), "non-VIP")
    for encapsulation in lab.encapsulations:
        # Outer headers of the family the MUXes would use toward the service's servers (its
        # backend family), from the client's address of that family.
        foreign = [
            p
            for server in topo.of_role("server")
            for svc in topo.services
            if (outer := addr(server, svc.backend_family)) is not None
            for p in crafted.foreign_packets(
                encapsulation,
                crafted.Flow(
                    src[svc.family], crafted.next_probe_port(), svc.vip, svc.port, svc.proto
                ),
                outer_src=src[svc.backend_family],
                server=outer,
            )
        ]
        what = f"foreign-{encapsulation}"
        sent += send(client, router, framed(client, router, foreign), what, encapsulation)
    say(f"sent {sent} hostile packets in {len(windows)} windows")
    return windows
