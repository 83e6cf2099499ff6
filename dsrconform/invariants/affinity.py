"""Affinity (AF): each connection and UDP 5-tuple sticks to one server; new flows spread evenly.

Each checker decides one requirement of :mod:`dsrconform.spec` from taps on the servers'
receiving side, histories and the fault timeline (flows overlapping a backend change are left
out, but each connection of a 5-tuple reused across a change is judged on its own; tuple probes
are no flows); see :mod:`dsrconform.invariants.verdict` for the contract. Only flows the stack
answered count toward the flows a checker needs to decide ("Minimum:" in each docstring): a SYN
that reached one server and was never answered shows no affinity.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from dsrconform.invariants.served import answered_endpoints
from dsrconform.invariants.verdict import Judge, MissingData, Params, Verdict, checker
from dsrconform.observe.history import PROTO_NUMBER, FlowHistory, hostport
from dsrconform.observe.observations import (
    FaultWindow,
    LabFacts,
    Observations,
    ServiceFacts,
    describe_end,
    overlaps_any,
    toward_role,
)
from dsrconform.observe.taps import FiveTuple, TapFlow, TapInfo

Flow5 = tuple[int, str, int, str, int]
"""A flow by its ends: (protocol, client address, client port, far address, far port)."""


def _judge_tap_affinity(j: Judge, obs: Observations, proto: int, *, required: bool) -> set[Flow5]:
    """Each client endpoint's packets reached one server (and the one its history names).
    A client endpoint reused toward another address is another flow. Returns the flows judged
    (client endpoint and far end); without server taps: MissingData if ``required``."""
    lab = obs.need_lab()
    try:
        taps = obs.need_taps(
            j,
            "toward a server",
            toward_role(lab, "server"),
            expect=lab.nodes("server"),
            covers=lambda t: t.receiver,
        )
    except MissingData:
        if required:
            raise
        return set()
    changes = obs.backend_changes()
    spans5 = obs.flow_index().spans5
    judged: set[Flow5] = set()
    skipped = 0
    # AF-1 and AF-2 group the same records: once, for both protocols.
    flows: dict[Flow5, dict[str, list[tuple[TapInfo, TapFlow]]]] = obs.derived(
        "server_flows", lambda: _server_flows(taps, lab)
    )
    for key, by_node in flows.items():
        if key[0] != proto:
            continue
        seen: dict[str, float] = {}
        last = 0.0
        for node, lst in by_node.items():
            node_first = math.inf
            for _, r in lst:
                if r.first < node_first:
                    node_first = r.first
                if r.last > last:
                    last = r.last
            seen[node] = node_first
        first = min(seen.values())
        if changes and overlaps_any(changes, first, last) is not None:
            # The taps add up a 5-tuple over the whole run: a client reusing it after a
            # backend change has one record per server spanning both connections. Judge each
            # of its connections that overlaps no change by the servers certainly reached
            # during it instead (a record, or a span of one, whose first or last packet falls
            # inside it).
            if _judge_reused_tuple(j, lab, by_node, spans5.get(key, ()), changes):
                judged.add(key)
            else:
                skipped += 1
            continue
        judged.add(key)
        nodes = sorted(by_node) if len(by_node) > 1 else list(by_node)
        if len(nodes) > 1:
            info, rec = by_node[nodes[1]][0]
            reached = ", ".join(f"{n} (from t={seen[n]:.3f})" for n in nodes)
            j.violation(
                f"packets of one flow reached {len(nodes)} servers: {reached}",
                flow=f"{describe_end(key[:3])} > {hostport(key[3], key[4])}",
                packet=rec.describe(),
                link=info.describe(),
                time=seen[nodes[1]],
            )
            continue
        for s, e, fh in spans5.get(key, ()):  # the flow index by whole 5-tuple: this runs per flow
            if not (s <= last and first <= e):
                continue
            answered = fh.servers
            server = answered[0][1] if answered else None
            if server is not None and lab.server_node(server) != nodes[0]:
                info, rec = by_node[nodes[0]][0]
                j.violation(
                    f"the history says {server} answered, but the packets reached {nodes[0]}",
                    flow=fh.describe(),
                    packet=rec.describe(),
                    link=info.describe(),
                    time=rec.first,
                )
                break
    j.measured["tap_flows_overlapping_backend_change"] = skipped
    return judged


def _judge_reused_tuple(
    j: Judge,
    lab: LabFacts,
    by_node: dict[str, list[tuple[TapInfo, TapFlow]]],
    spans: Iterable[tuple[float, float, FlowHistory]],
    changes: list[FaultWindow],
) -> bool:
    """For a 5-tuple whose records span a backend change: each history connection on it that
    overlaps no change must have reached one server, the one the history names. A connection
    is judged by the servers certainly reached during it, from its start to its end (plus the
    index's slack, but never past the tuple's next connection): those with a record, or a span
    of one (its tap's packets between two lab events), whose first or last packet falls
    inside. With spans, a split shows on the tuple's first connection after a change (each
    server's span after it starts there); without, only on the last connection to reach the
    old server (a record's last packet moves on with every connection). Returns whether any
    connection was judged."""
    judged = False
    ordered = sorted(spans, key=lambda x: x[0])
    for n, (s, e, fh) in enumerate(ordered):
        if n + 1 < len(ordered):  # the next connection's packets come after its start
            e = min(e, ordered[n + 1][0] - 1e-6)
        if overlaps_any(changes, s, e) is not None:
            continue
        inside: dict[str, tuple[float, TapInfo, TapFlow]] = {}
        for node, lst in by_node.items():
            for info, r in lst:
                for part in r.parts:
                    a, b = part.first, part.last
                    t = a if s <= a <= e else b if s <= b <= e else None
                    if t is not None and (node not in inside or t < inside[node][0]):
                        inside[node] = (t, info, r)
        if not inside:
            continue  # no packet certainly of this connection: not judged
        judged = True
        order = sorted(inside, key=lambda node: inside[node][0])
        if len(order) > 1:
            t, info, rec = inside[order[1]]
            reached = ", ".join(f"{node} (at t={inside[node][0]:.3f})" for node in order)
            j.violation(
                f"packets of one connection on a reused 5-tuple reached {len(order)} servers: "
                f"{reached}",
                flow=fh.describe(),
                packet=rec.describe(),
                link=info.describe(),
                time=t,
            )
            continue
        answered = fh.servers
        if answered and lab.server_node(answered[0][1]) != order[0]:
            t, info, rec = inside[order[0]]
            j.violation(
                f"the history says {answered[0][1]} answered, but the packets reached {order[0]}",
                flow=fh.describe(),
                packet=rec.describe(),
                link=info.describe(),
                time=t,
            )
    return judged


def _server_flows(
    taps: list[tuple[TapInfo, list[TapFlow]]], lab: LabFacts
) -> dict[Flow5, dict[str, list[tuple[TapInfo, TapFlow]]]]:
    """The TCP and UDP records of each flow (client end and far end of the carried 5-tuple: the
    inner one if encapsulated), by the server that received them; one pass."""
    flows: dict[Flow5, dict[str, list[tuple[TapInfo, TapFlow]]]] = {}
    is_client = lab.client_test()  # this loop runs per record
    probes: dict[str, bool] = {}

    for info, recs in taps:
        node = info.receiver
        if node is None:
            continue
        for rec in recs:
            inner = rec.inner
            t: TapFlow | FiveTuple = inner if inner is not None else rec
            proto = t.proto
            if proto != 6 and proto != 17:
                continue
            if is_client(t.src):
                key = (proto, t.src, t.sport, t.dst, t.dport)
            elif is_client(t.dst):
                key = (proto, t.dst, t.dport, t.src, t.sport)
            else:
                continue
            if key[2] == 0:
                continue  # no client port: a fragment, or a flood aggregated by the tap
            probe = probes.get(key[1])
            if probe is None:
                probe = probes[key[1]] = lab.is_probe(key[1])
            if probe:
                continue  # a tuple probe (SC-2, SC-4): bare SYNs, no connection
            by_node = flows.get(key)
            if by_node is None:
                flows[key] = {node: [(info, rec)]}
            elif node in by_node:
                by_node[node].append((info, rec))
            else:
                by_node[node] = [(info, rec)]
    return flows


@checker("AF-1")
def check_connection_affinity(obs: Observations, p: Params) -> Verdict:
    """Every TCP connection's packets reach one server while the backend set is stable.

    Minimum: N connections seen by the server taps that were answered (their handshake
    completed, or a tap toward the client saw the server's packets)."""
    j = Judge("AF-1")
    judged = _judge_tap_affinity(j, obs, 6, required=True)
    answered = _answered(obs, judged)
    j.measured.update(connections_judged=len(judged), connections_answered=answered)
    j.thresholds["min_flows"] = p["min_flows"]
    if answered < p["min_flows"]:
        j.incomplete(
            f"{answered} answered connections seen by server taps ({p['min_flows']:g} needed; "
            f"{len(judged) - answered} more reached a server and were never answered)"
        )
    return j.verdict(
        passed=f"each of {len(judged)} connections reached a single server",
        failed=f"{j.violations} connections reached more than one server (or another one "
        "than answered)",
    )


@checker("AF-2")
def check_udp_affinity(obs: Observations, p: Params) -> Verdict:
    """Every UDP 5-tuple is answered by, and reaches, one server while backends are stable.

    Minimum: N UDP flows answered (a reply in the history, or a tap toward the client saw one)
    among those judged."""
    j = Judge("AF-2")
    changes = obs.backend_changes()
    judged: set[Flow5] = set()
    if obs.history is not None:
        for fh in obs.history.of_proto("udp"):
            if not fh.servers or overlaps_any(changes, fh.start.t, fh.last_t) is not None:
                continue
            judged.add((*fh.endpoint, fh.start.dst, fh.start.dport))
            _judge_udp_replies(j, fh)
    answered = len(judged)  # the history's, so far: each had a reply
    if obs.lab is not None:
        tapped = _judge_tap_affinity(j, obs, 17, required=False) - judged
        answered += _answered(obs, tapped)
        judged |= tapped
    j.measured.update(udp_flows_judged=len(judged), udp_flows_answered=answered)
    j.thresholds["min_flows"] = p["min_flows"]
    if answered < p["min_flows"]:
        j.incomplete(
            f"{answered} answered UDP flows with replies or server taps ({p['min_flows']:g} "
            f"needed; {len(judged) - answered} more reached a server and were never answered)"
        )
    return j.verdict(
        passed=f"each of {len(judged)} UDP flows stayed on one server",
        failed=f"{j.violations} UDP flows were answered by or reached more than one server",
    )


def _answered(obs: Observations, flows: set[Flow5]) -> int:
    """How many of ``flows`` (judged by the server taps) the stack answered."""
    lab = obs.lab
    if lab is None or not flows:
        return 0
    answered = answered_endpoints(obs, lab)
    return sum(1 for key in flows if key[:3] in answered)


def _judge_udp_replies(j: Judge, fh: FlowHistory) -> None:
    first_t, first = fh.servers[0]
    for t, server in fh.servers[1:]:
        if server != first:
            j.violation(
                f"replies came from {first} (from t={first_t:.3f}) and then from {server}",
                flow=fh.describe(),
                time=t,
            )
            return


def _new_flows(obs: Observations, changes: list[FaultWindow]) -> list[FlowHistory]:
    history = obs.need_history()
    return [
        fh
        for fh in history.flows.values()
        if fh.servers and (not changes or overlaps_any(changes, fh.start.t, fh.start.t) is None)
    ]


def _new_flow_servers(obs: Observations, lab: LabFacts) -> list[tuple[str, str, int, str]]:
    """(service name, client address, client port, server node) of each new flow to a service
    whose server is known (AF-3, AF-4)."""
    out = []
    for fh in _new_flows(obs, obs.backend_changes()):
        st = fh.start
        svc = lab.service(st.dst, st.dport, PROTO_NUMBER[st.proto])
        if svc is not None:  # _new_flows kept only flows whose server is known
            out.append((svc.name, st.src, st.sport, lab.server_node(fh.servers[0][1])))
    return out


@checker("AF-3")
def check_spread_within_bound(obs: Observations, p: Params) -> Verdict:
    """Each backend's share of a service's new flows is within epsilon of 1/k.

    Minimum: n new flows of one service answered by a known server (the id in its reply)."""
    j = Judge("AF-3")
    lab = obs.need_lab()
    eps, need = p["epsilon"], p["min_samples"]
    j.thresholds.update(epsilon=eps, min_samples=need)
    per_service: dict[str, Counter[str]] = {}
    for name, _, _, server in _new_flow_servers(obs, lab):
        per_service.setdefault(name, Counter())[server] += 1
    decided = 0
    for svc in lab.services:
        counts = per_service.get(svc.name, Counter())
        n = sum(counts.values())
        j.measured[f"{svc.name}_flows"] = n
        if n < need:
            continue
        decided += 1
        _judge_spread(j, lab, svc.name, counts, eps)
    if decided == 0:
        most = max((sum(c.values()) for c in per_service.values()), default=0)
        j.incomplete(f"no service had {need:g} new flows with a known server (most: {most})")
    return j.verdict(
        passed=f"{decided} services spread their new flows within {eps:g} of an even share",
        failed=f"{j.violations} servers' shares of new flows are outside 1/k +- {eps:g}",
    )


@checker("AF-4")
def check_spread_loosely_bounded(obs: Observations, p: Params) -> Verdict:
    """The MUST floor of AF-3: no server of a service without new flows, none above m times its
    share, over the service's flows and over each busy client address's flows.

    Per client address, what is counted is distinct 5-tuples (the client's ports: the address,
    VIP, port and protocol are fixed), not flows: that clause asks whether the source port is in
    the hash, and a reused port is the same tuple again, which a correct hash must send to the
    same server; counted once per flow, a few tuples reused many times would be judged as if
    they were many independent draws. A tuple that reached two servers counts once for each.
    With a = 20 tuples (the ``gate`` scenario gives each client address ~25, its short
    connections cycling through 16 reused ports), a hash that leaves the port out puts all of
    them on one server, while a fair one exceeds 2 x 1/3 with probability ~0.1-0.3% per address.

    The mirror clause, per source port: a hash that reads part of the client address (IPv6's
    low 32 bits alone) sends one port's flows from addresses that differ only elsewhere to one
    server. Over the source ports used by at least b client addresses toward the service (at
    least p of them, else the clause is not judged and the evidence says so), the share of
    ports whose flows all reached one server must stay at most s. A fair hash puts one such port
    on one server with probability k^(1-b) at most (1/27 for k = 3, b = 4; 1/8 for k = 2), so
    with p = 20 ports more than s = 1/2 of them (11 or more) happens with probability ~2e-11
    (k = 3; at most ~5e-11 over any number of ports from 20) or ~7e-6 (k = 2; at most ~1.2e-5),
    and with dual.yaml's 7 addresses on every port (b = 7) ~5e-27 (k = 3): never, in practice.
    A hash that reads only the addresses' low 32 bits puts all of them on one server.

    Minimum: n new flows of one service answered by a known server (the id in its reply)."""
    j = Judge("AF-4")
    lab = obs.need_lab()
    m, need, per_addr = p["max_multiple"], p["min_samples"], p["min_per_address"]
    j.thresholds.update(max_multiple=m, min_samples=need, min_per_address=per_addr)
    per_service: dict[str, Counter[str]] = {}
    per_address: dict[tuple[str, str], set[tuple[int, str]]] = {}
    per_port: dict[tuple[str, int], dict[str, set[str]]] = {}
    flows_from: Counter[tuple[str, str]] = Counter()
    for name, src, sport, server in _new_flow_servers(obs, lab):
        per_service.setdefault(name, Counter())[server] += 1
        per_address.setdefault((name, src), set()).add((sport, server))
        per_port.setdefault((name, sport), {}).setdefault(src, set()).add(server)
        flows_from[name, src] += 1
    decided = 0
    for svc in lab.services:
        counts = per_service.get(svc.name, Counter())
        n = sum(counts.values())
        j.measured[f"{svc.name}_flows"] = n
        if n < need:
            continue
        decided += 1
        backends = lab.backends(svc)
        bound = m / len(backends)
        j.thresholds[f"{svc.name}_max_share"] = round(bound, 6)
        j.measured[f"{svc.name}_max_share"] = round(max(counts.values()) / n, 6)
        for b in backends:
            if counts.get(b, 0) == 0:
                j.violation(f"{b} answered none of {n} new flows to {svc.describe()}")
            elif counts[b] / n > bound:
                j.violation(
                    f"{b} answered {counts[b] / n:.1%} of {n} new flows to {svc.describe()} "
                    f"(at most {m:g} x 1/{len(backends)} = {bound:.1%})"
                )
        busy = 0
        for (name, src), tuples in sorted(per_address.items()):
            total = len(tuples)
            if name != svc.name or total < per_addr:
                continue
            busy += 1
            server, top = Counter(s for _, s in tuples).most_common(1)[0]
            if top / total > bound:
                j.violation(
                    f"{server} answered {top} of the {total} distinct 5-tuples of the "
                    f"{flows_from[name, src]} new flows from {src} to {svc.describe()} "
                    f"({top / total:.0%}; at most {bound:.1%}): a flow hash that leaves out "
                    "part of the 5-tuple (the source port?)",
                    flow=f"{src} -> {svc.describe()}",
                )
        j.measured[f"{svc.name}_addresses_judged"] = busy
        if len(backends) > 1:
            _judge_shared_ports(j, svc, per_port, p)
    if decided == 0:
        most = max((sum(c.values()) for c in per_service.values()), default=0)
        j.incomplete(f"no service had {need:g} new flows with a known server (most: {most})")
    return j.verdict(
        passed=f"{decided} services gave every server new flows, none over {m:g} times its share",
        failed="a server got no new flows, or far more than its share (of a service's, of one "
        "address's, or of one source port's flows from several addresses)",
    )


def _judge_shared_ports(
    j: Judge, svc: ServiceFacts, per_port: dict[tuple[str, int], dict[str, set[str]]], p: Params
) -> None:
    """AF-4's per-port clause: of the source ports used by at least b client addresses toward
    ``svc``, at most a share s may have all their flows on one server (judged with p such
    ports or more; fewer: not judged, and the evidence says how many there were)."""
    b, least, most = p["min_addresses_per_port"], p["min_shared_ports"], p["max_one_server_share"]
    j.thresholds.update(min_addresses_per_port=b, min_shared_ports=least, max_one_server_share=most)
    shared = {
        port: by_src
        for (name, port), by_src in per_port.items()
        if name == svc.name and len(by_src) >= b
    }
    j.measured[f"{svc.name}_shared_ports"] = len(shared)
    if len(shared) < least:
        # Traffic whose ports are not shared across addresses: not judged, not UNKNOWN.
        j.measured[f"{svc.name}_shared_ports_clause"] = (
            f"not judged: {len(shared)} source ports used from {b:g} or more client addresses "
            f"(at least {least:g} needed)"
        )
        return
    lone = sorted(
        port for port, by_src in shared.items() if len(set().union(*by_src.values())) == 1
    )
    j.measured[f"{svc.name}_one_server_port_share"] = round(len(lone) / len(shared), 6)
    if len(lone) / len(shared) > most:
        port = lone[0]
        server = next(iter(next(iter(shared[port].values()))))
        j.violation(
            f"{len(lone)} of the {len(shared)} source ports used from {b:g} or more client "
            f"addresses toward {svc.describe()} had all their flows on one server (at most "
            f"{most:.0%}; e.g. port {port}: {len(shared[port])} addresses, all to {server}): "
            "a flow hash that leaves out part of the client address",
            flow=f"*:{port} -> {svc.describe()}",
        )


def _judge_spread(j: Judge, lab: LabFacts, name: str, counts: Counter[str], eps: float) -> None:
    svc = next(s for s in lab.services if s.name == name)
    backends = lab.backends(svc)
    n, k = sum(counts.values()), len(backends)
    even = 1 / k
    chi2 = sum((counts.get(b, 0) - n * even) ** 2 / (n * even) for b in backends)
    shares = {b: counts.get(b, 0) / n for b in backends}
    j.measured[f"{name}_max_deviation"] = round(max(abs(s - even) for s in shares.values()), 6)
    j.measured[f"{name}_chi_square"] = round(chi2, 3)
    for b, share in shares.items():
        if abs(share - even) > eps:
            j.violation(
                f"{b} answered {share:.1%} of {n} new flows to {svc.describe()} "
                f"(expected {even:.1%} +- {eps:.1%})"
            )
    for server, count in counts.items():
        if server not in backends:
            j.violation(f"{server} is no backend of {svc.describe()} yet answered {count} flows")
