"""What the stack was seen to serve: the minimum evidence a checker needs before it may PASS.

A requirement phrased as "no packet does X" holds trivially for a stack that forwards nothing:
an adapter that deploys nothing sends no reply, so none carries a bad checksum or a server's
address, and nothing it never decapsulated is answered. Each checker therefore states the least
it must have seen of the stack *working* (in its docstring; the catalogue's ``measure`` says
it too) and answers UNKNOWN below it, saying what was missing; a violation seen is still FAIL.
The pieces several checkers share are here, each computed once per observations:

- :func:`addressed_services`: the services the run's traffic addressed;
- :func:`vip_replies` and :func:`need_replies_from_each`: the replies each VIP sent to clients,
  and the judge told of every addressed service none of whose replies a client received;
- :func:`answered_endpoints`: the client endpoints that got an answer (a TCP handshake that
  completed, a UDP reply);
- :func:`mux_vip_packets`: the VIP packets the MUXes were seen forwarding (encapsulated toward
  a server), the proof that a data plane was on the path.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsrconform.invariants.verdict import Judge
from dsrconform.observe.observations import (
    PROTO_NUMBERS,
    Endpoint,
    LabFacts,
    Observations,
    ServiceFacts,
)


def addressed_services(obs: Observations, lab: LabFacts) -> list[ServiceFacts]:
    """The services the traffic addressed: those a recorded flow was sent to or, without a
    history, those clients' packets were sent to (taps on the clients' sending side); in the
    lab's order."""

    def build() -> list[ServiceFacts]:
        keys: set[tuple[str, int, int]] = set()
        if obs.history is not None and obs.history.flows:
            for fh in obs.history.flows.values():
                s = fh.start
                keys.add((s.dst, s.dport, PROTO_NUMBERS[s.proto]))
        elif obs.taps is not None:
            for info, recs in obs.taps.items():
                if lab.role(info.sender) == "client":
                    keys.update((r.dst, r.dport, r.proto) for r in recs if lab.is_vip(r.dst))
        return [s for s in lab.services if (s.vip, s.port, s.proto_number) in keys]

    found: list[ServiceFacts] = obs.derived("addressed_services", build)
    return found


@dataclass
class Replies:
    """A VIP's replies that reached clients (taps toward clients): records, packets and the
    checksums verified in them."""

    records: int = 0
    packets: int = 0
    checksums: int = 0


def vip_replies(obs: Observations, lab: LabFacts) -> dict[str, Replies]:
    """Service name -> the TCP/UDP packets from its VIP:port to a client on taps toward
    clients (every service of the lab, zero where none was seen)."""

    def build() -> dict[str, Replies]:
        out = {s.name: Replies() for s in lab.services}
        if obs.taps is None:
            return out
        is_client = lab.client_test()
        for info, recs in obs.taps.items():
            if lab.role(info.receiver) != "client":
                continue
            for r in recs:
                if r.proto != 6 and r.proto != 17:
                    continue
                svc = lab.service(r.src, r.sport, r.proto)
                if svc is None or not is_client(r.dst):
                    continue
                got = out[svc.name]
                got.records += 1
                got.packets += r.packets
                got.checksums += r.l3_valid + r.l3_invalid + r.l4_valid + r.l4_invalid
        return out

    found: dict[str, Replies] = obs.derived("vip_replies", build)
    return found


def need_replies_from_each(
    j: Judge,
    obs: Observations,
    lab: LabFacts,
    *,
    only: list[ServiceFacts] | None = None,
    min_packets: float = 1,
    min_checksums: float = 0,
) -> int:
    """Tell ``j`` of every service the traffic addressed (of ``only``, if given) whose replies
    to clients the taps toward clients did not see, at least ``min_packets`` of them with at
    least ``min_checksums`` checksums verified: a stack that answers nothing there shows nothing
    about its rewrites. Also when no service was addressed at all, or no tap looks toward a
    client. Returns how many addressed services were answered enough."""
    wanted = addressed_services(obs, lab)
    if only is not None:
        names = {s.name for s in only}
        wanted = [s for s in wanted if s.name in names]
    if not wanted:
        if only is None:
            j.incomplete("traffic to a VIP (no recorded flow addressed a service)")
        else:
            vips = ", ".join(s.describe() for s in only) or "none"
            j.incomplete(f"traffic to {vips} (no recorded flow addressed it)")
        return 0
    if obs.taps is None or not any(lab.role(i.receiver) == "client" for i, _ in obs.taps.items()):
        j.incomplete("a tap toward a client, to see the VIPs' replies")
        return 0
    replies = vip_replies(obs, lab)
    answered = 0
    for svc in wanted:
        got = replies[svc.name]
        if got.packets == 0:
            j.incomplete(
                f"a reply from {svc.describe()} ({svc.name}) reaching a client: the traffic "
                "addressed it and no tap toward a client saw one"
            )
        elif got.packets < min_packets:
            j.incomplete(
                f"{got.packets} reply packets from {svc.describe()} ({svc.name}) reached "
                f"clients ({min_packets:g} needed)"
            )
        elif got.checksums < min_checksums:
            j.incomplete(
                f"{got.checksums} checksums verified in the replies from {svc.describe()} "
                f"({svc.name}) to clients ({min_checksums:g} needed)"
            )
        else:
            answered += 1
    j.measured["services_answered"] = f"{answered} of {len(wanted)} addressed"
    return answered


def answered_endpoints(obs: Observations, lab: LabFacts) -> set[Endpoint]:
    """Client endpoints (protocol, client address, client port) that got an answer: a TCP or
    UDP packet toward them on a tap toward a client, or a history flow of theirs established
    (its TCP handshake completed, a UDP reply came)."""

    def build() -> set[Endpoint]:
        out: set[Endpoint] = set()
        if obs.history is not None:
            out.update(fh.endpoint for fh in obs.history.flows.values() if fh.established_at)
        if obs.taps is not None:
            is_client = lab.client_test()
            for info, recs in obs.taps.items():
                if lab.role(info.receiver) != "client":
                    continue
                out.update(
                    (r.proto, r.dst, r.dport)
                    for r in recs
                    if (r.proto == 6 or r.proto == 17) and not is_client(r.src)
                )
        return out

    found: set[Endpoint] = obs.derived("answered_endpoints", build)
    return found


def mux_vip_packets(obs: Observations, lab: LabFacts) -> int | None:
    """Packets the MUXes were seen sending on toward servers for a VIP (encapsulated, inner
    destination a VIP) on taps on the MUXes' sending side; None without such a tap."""

    def build() -> int | None:
        if obs.taps is None:
            return None
        taps = [(i, recs) for i, recs in obs.taps.items() if lab.role(i.sender) == "mux"]
        if not taps:
            return None
        return sum(
            r.packets
            for _, recs in taps
            for r in recs
            if r.inner is not None and lab.is_vip(r.inner.dst)
        )

    found: int | None = obs.derived("mux_vip_packets", build)
    return found


def need_mux_forwarding(j: Judge, obs: Observations, lab: LabFacts) -> int:
    """Tell ``j`` when no MUX was seen forwarding VIP traffic to a server (or no tap on a MUX's
    sending side could see it); returns the packets seen."""
    n = mux_vip_packets(obs, lab)
    if n is None:
        j.incomplete("a tap on a MUX's sending side, to see it forward VIP traffic")
        return 0
    j.measured["mux_forwarded_vip_packets"] = n
    if n == 0:
        j.incomplete("VIP traffic forwarded by a MUX toward a server: the taps saw none")
    return n
