"""Rewrite correctness (RW): what clients receive carries the right addresses, checksums, bytes.

Each checker decides one requirement of :mod:`dsrconform.spec` (see its ``measure``) from taps,
histories and the lab's facts; see :mod:`dsrconform.invariants.verdict` for the contract. Each
states the minimum evidence it needs to PASS ("Minimum:" in its docstring): below it the answer
is UNKNOWN naming what was missing (:mod:`dsrconform.invariants.served`), a violation seen is
still FAIL.
"""

from __future__ import annotations

from collections.abc import Callable

from dsrconform.invariants.served import need_replies_from_each
from dsrconform.invariants.verdict import Judge, MissingData, Params, Verdict, checker
from dsrconform.observe.history import Closed, FlowHistory, IntegrityError, hostport
from dsrconform.observe.observations import (
    Endpoint,
    FaultWindow,
    FlowIndex,
    LabFacts,
    Observations,
    Role,
    ServiceFacts,
    Sighting,
    from_role,
    one_per_link,
    sightings,
    toward_role,
)
from dsrconform.observe.taps import TCP_SYN, FiveTuple, TapFlow, TapInfo

SUT_ROLES: tuple[Role, ...] = ("mux", "server", "gateway")


def _judge_reply_sources(
    j: Judge,
    obs: Observations,
    p: Params,
    only: Callable[[FlowHistory], bool] | None,
    services: list[ServiceFacts] | None = None,
) -> None:
    """RW-1/RW-4: packets toward a recorded flow's client endpoint come from its VIP:port
    (of the flows ``only`` accepts; None: every flow), and every service the traffic addressed
    (of ``services``) was seen replying."""
    lab = obs.need_lab()
    obs.need_history()
    index = obs.flow_index()
    taps = obs.need_taps(
        j,
        "toward a client",
        toward_role(lab, "client"),
        expect=lab.nodes("client"),
        covers=lambda t: t.receiver,
    )
    answered: set[int] = set()
    packets = 0
    # RW-1 and RW-4 match the same records to the same flows: once.
    matches: list[tuple[TapInfo, TapFlow, list[FlowHistory]]] = obs.derived(
        "replies_to_clients", lambda: _match_to_flows(taps, index)
    )
    for info, rec, found in matches:
        flows = found if only is None else [fh for fh in found if only(fh)]
        if not flows:
            continue
        packets += rec.packets
        # A client port may be reused toward another VIP while (or just after) a flow to
        # this one lives: a reply is right if any flow of that client end addressed its
        # source, and judged wrong only if none did.
        src, sport = rec.src, rec.sport
        right = [fh for fh in found if fh.start.dport == sport and fh.start.dst == src]
        if right:
            answered.update(fh.id for fh in right if only is None or only(fh))
            continue
        fh = flows[0]
        answered.add(fh.id)
        j.violation(
            f"reply from {hostport(rec.src, rec.sport)}, but the client addressed "
            f"{hostport(fh.start.dst, fh.start.dport)}",
            flow=fh.describe(),
            packet=rec.describe(),
            link=info.describe(),
            time=rec.first,
            until=rec.last,
        )
    j.measured.update(flows_with_replies=len(answered), reply_packets=packets)
    j.thresholds["min_flows"] = p["min_flows"]
    if len(answered) < p["min_flows"]:
        j.incomplete(
            f"replies of {len(answered)} recorded flows seen by taps toward clients "
            f"({p['min_flows']:g} needed)"
        )
    need_replies_from_each(j, obs, lab, only=services)


def _match_to_flows(
    taps: list[tuple[TapInfo, list[TapFlow]]], index: FlowIndex
) -> list[tuple[TapInfo, TapFlow, list[FlowHistory]]]:
    """The TCP/UDP records toward clients that belong to recorded flows, with those flows
    (:meth:`FlowIndex.find`, inlined: this runs per record)."""
    spans = index.spans
    out = []
    for info, recs in taps:
        for rec in recs:
            proto = rec.proto
            if proto != 6 and proto != 17:
                continue
            candidates = spans.get((proto, rec.dst, rec.dport))
            if not candidates:
                continue
            first, last = rec.first, rec.last
            found = [fh for s, e, fh in candidates if s <= last and first <= e]
            if found:
                out.append((info, rec, found))
    return out


@checker("RW-1")
def check_replies_carry_vip(obs: Observations, p: Params) -> Verdict:
    """Every reply toward a client endpoint of a recorded flow comes from the VIP:port the
    client addressed.

    Minimum: the replies of N recorded flows seen on taps toward clients, and a reply from
    every service the recorded flows addressed."""
    j = Judge("RW-1")
    _judge_reply_sources(j, obs, p, None)
    return j.verdict(
        passed=f"every reply of {j.measured['flows_with_replies']} flows came from its VIP:port",
        failed=f"{j.violations} reply records came from another address than the VIP:port",
    )


@checker("RW-4")
def check_per_mux_vip_honoured(obs: Observations, p: Params) -> Verdict:
    """As RW-1, for flows addressed to VIPs only some MUXes announce.

    Minimum: the replies of N recorded flows to per-MUX VIPs, and a reply from every per-MUX
    service the recorded flows addressed."""
    j = Judge("RW-4")
    lab = obs.need_lab()
    per_mux = {(s.vip, s.port, s.proto_number) for s in lab.per_mux_services()}
    if not per_mux:
        raise MissingData("a service announced by only some MUXes (a per-MUX external VIP)")
    j.measured["per_mux_vips"] = ", ".join(sorted(hostport(a, b) for a, b, _ in per_mux))
    _judge_reply_sources(
        j,
        obs,
        p,
        lambda fh: (fh.start.dst, fh.start.dport, fh.proto_number) in per_mux,
        lab.per_mux_services(),
    )
    return j.verdict(
        passed="every reply to a per-MUX VIP flow came from the VIP its flow came through",
        failed=f"{j.violations} replies to per-MUX VIP flows came from another address",
    )


def _in_crafted(windows: list[FaultWindow], rec: TapFlow) -> bool:
    return any(w.start <= rec.first and rec.last <= w.stop for w in windows)


@checker("RW-2")
def check_checksums_valid(obs: Observations, p: Params) -> Verdict:
    """No packet a SUT node sends, nor any packet toward a client, has a bad checksum.

    Minimum: for every service the traffic addressed, its replies (from its VIP:port, the
    rewritten packets) seen reaching clients with N checksums verified in them. Valid checksums
    on the routers' ICMP errors and the BGP sessions say nothing of a stack's rewrites."""
    j = Judge("RW-2")
    lab = obs.need_lab()
    taps = obs.need_taps(
        j,
        "on a SUT node's sending side or toward a client",
        lambda t: lab.role(t.sender) in SUT_ROLES or lab.role(t.receiver) == "client",
    )
    verified = unchecked = skipped = 0
    crafted = obs.windows("crafted")
    for info, recs in taps:
        for rec in recs:
            if crafted and _in_crafted(crafted, rec):
                skipped += rec.packets
                continue
            verified += rec.l3_valid + rec.l3_invalid + rec.l4_valid + rec.l4_invalid
            unchecked += rec.l4_unchecked
            if rec.l3_invalid or rec.l4_invalid:
                j.violation(
                    f"{rec.l3_invalid} packets with an invalid IPv4 checksum and "
                    f"{rec.l4_invalid} with an invalid L4 checksum",
                    packet=rec.describe(),
                    link=info.describe(),
                    time=rec.first,
                    until=rec.last,
                )
    j.measured.update(
        checksums_verified=verified, l4_unchecked=unchecked, packets_in_crafted_windows=skipped
    )
    j.thresholds["min_packets"] = p["min_packets"]
    need_replies_from_each(j, obs, lab, min_checksums=p["min_packets"])
    return j.verdict(
        passed=f"all {verified} checksums verified were valid",
        failed=f"{j.violations} tap records hold packets with invalid checksums",
    )


@checker("RW-3")
def check_no_server_address_leaks(obs: Observations, p: Params) -> Verdict:
    """No packet toward a client carries a server's address, except in a conversation the client
    itself opened with that address: the same 5-tuple, begun by the client before the packet
    (an ICMP error: the conversation it quotes, whose peer must be that address).

    Minimum: for every service the traffic addressed, N of its replies (the packets a stack
    rewrites, or leaks) seen reaching clients: a stack that answers nothing leaks nothing."""
    j = Judge("RW-3")
    lab = obs.need_lab()
    servers = {a: n for n in lab.nodes("server") for a in lab.addresses.get(n, [])}
    if not servers:
        raise MissingData("the servers' addresses in the lab's facts")
    taps = obs.need_taps(
        j,
        "toward a client",
        toward_role(lab, "client"),
        expect=lab.nodes("client"),
        covers=lambda t: t.receiver,
    )
    opened = _client_openings(obs, lab)
    packets = 0
    for info, recs in taps:
        for rec in recs:
            packets += rec.packets
            leak = _server_address_in(rec, servers)
            if leak is None:
                continue
            address, conv = leak
            began = opened.get(conv)
            if began is not None and began <= rec.first and conv[3] == address:
                continue
            if began is None:
                why = "in no conversation the client began"
            elif conv[3] != address:
                why = f"about the client's conversation with {conv[3]}, not with that address"
            else:
                why = f"{rec.first - began:.3f} s before the client began that conversation"
            j.violation(
                f"{address} ({servers[address]}'s address) reached client {rec.dst}, {why}",
                packet=rec.describe(),
                link=info.describe(),
                time=rec.first,
                until=rec.last,
            )
    j.measured["packets_toward_clients"] = packets
    j.measured["conversations_clients_began"] = len(opened)
    j.thresholds["min_packets"] = p["min_packets"]
    need_replies_from_each(j, obs, lab, min_packets=p["min_packets"])
    return j.verdict(
        passed=f"no server address in {packets} packets toward clients",
        failed=f"{j.violations} tap records toward clients carry a server's address",
    )


Conversation = tuple[int, str, int, str, int]
"""(protocol, client address, client port, peer address, peer port): a conversation as seen from
its client's side (ICMP has no ports: 0)."""


def _server_address_in(rec: TapFlow, servers: dict[str, str]) -> tuple[str, Conversation] | None:
    """The server address a record toward a client carries (as its source, its encapsulated
    packet's source or in the header an ICMP error quotes) and the conversation it belongs to:
    an ICMP error's is the one of the header it quotes, else the record's own 5-tuple."""
    inner, emb = rec.inner, rec.embedded
    quoted = (emb.src, emb.dst) if emb is not None else ()
    for found in (rec.src, inner.src if inner is not None else "", *quoted):
        if found in servers:
            break
    else:
        return None
    if emb is not None:
        if emb.src == rec.dst:  # quotes a packet the client sent
            return found, (emb.proto, emb.src, emb.sport, emb.dst, emb.dport)
        return found, (emb.proto, emb.dst, emb.dport, emb.src, emb.sport)
    t = inner if inner is not None and inner.src == found else rec
    return found, (t.proto, t.dst, t.dport, t.src, t.sport)


def _client_openings(obs: Observations, lab: LabFacts) -> dict[Conversation, float]:
    """When a client began each conversation, as taps on the clients' links saw it: the first
    packet of its record for the 5-tuple, TCP only if that record holds a SYN. (A client's RST
    answering a stray segment from a server address opens nothing: without the SYN and the
    time, that RST exempted the very leak it answered.)"""
    out: dict[Conversation, float] = {}
    if obs.taps is None:
        return out
    for info, recs in obs.taps.items():
        if lab.role(info.sender) != "client":
            continue
        for r in recs:
            if r.proto == 6 and not r.tcp_flags & TCP_SYN:
                continue
            key = (r.proto, r.src, r.sport, r.dst, r.dport)
            out[key] = min(r.first, out.get(key, r.first))
    return out


ECN_NAMES = ("Not-ECT", "ECT(1)", "ECT(0)", "CE")
_CE, _ECT = 1 << 3, (1 << 1) | (1 << 2)


def _dscps(bits: int) -> str:
    return ", ".join(str(d) for d in range(64) if bits >> d & 1) or "none"


def _ecns(bits: int) -> str:
    return ", ".join(n for e, n in enumerate(ECN_NAMES) if bits >> e & 1) or "none"


@checker("RW-8")
def check_marks_kept(obs: Observations, p: Params) -> Verdict:
    """Encapsulation keeps the client's DSCP in the outer header and sets its ECN field as RFC
    6040 allows; the encapsulated header keeps the DSCP and ECN the client sent.

    Minimum: N encapsulated packets with a DSCP mark and N ECN-capable ones sent by the MUXes
    (what a MUX never encapsulated, it could not have re-marked)."""
    j = Judge("RW-8")
    lab = obs.need_lab()
    taps = obs.need_taps(
        j, "from a MUX", from_role(lab, "mux"), expect=lab.nodes("mux"), covers=lambda t: t.sender
    )
    sent: dict[tuple[int, str, int, str, int], tuple[int, int]] = {}
    if obs.taps is not None:
        for info, recs in obs.taps.items():
            if lab.role(info.sender) != "client":
                continue
            for r in recs:
                key = (r.proto, r.src, r.sport, r.dst, r.dport)
                d, e = sent.get(key, (0, 0))
                sent[key] = (d | r.dscp_seen, e | r.ecn_seen)
    encapsulated = with_marks = marked = ecn_capable = 0
    for info, recs in taps:
        for r in recs:
            inner = r.inner
            if inner is None:
                continue
            encapsulated += r.packets
            if not r.dscp_seen:  # a tap that did not keep the marks (an older recording)
                continue
            with_marks += 1
            if r.dscp_seen & ~1:
                marked += r.packets
            if r.ecn_seen & (_ECT | _CE):
                ecn_capable += r.packets
            wrong = []
            if r.dscp_changed:
                wrong.append(
                    f"{r.dscp_changed} of {r.packets} encapsulated packets carried an outer DSCP "
                    f"other than their own (inner DSCP {_dscps(r.dscp_seen)})"
                )
            if r.ecn_bad:
                wrong.append(
                    f"{r.ecn_bad} of {r.packets} encapsulated packets carried an outer ECN field "
                    "that is neither the inner one's nor Not-ECT (RFC 6040, section 4.1)"
                )
            client = sent.get((inner.proto, inner.src, inner.sport, inner.dst, inner.dport))
            if client is not None:
                dscp, ecn = client
                # CE is a router's mark on an ECN-capable packet; anything else is a rewrite.
                extra_ecn = r.ecn_seen & ~ecn & ~(_CE if ecn & _ECT else 0)
                if r.dscp_seen & ~dscp or extra_ecn:
                    wrong.append(
                        f"the encapsulated packets carried DSCP {_dscps(r.dscp_seen)} and ECN "
                        f"{_ecns(r.ecn_seen)}; the client sent DSCP {_dscps(dscp)} and ECN "
                        f"{_ecns(ecn)}"
                    )
            for message in wrong:  # described only when wrong: this loop runs per record
                j.violation(
                    message, packet=r.describe(), link=info.describe(), time=r.first, until=r.last
                )
    if encapsulated and not with_marks:
        raise MissingData("DSCP and ECN in the taps' records (a recording made without them)")
    j.measured.update(
        encapsulated_packets=encapsulated, marked_packets=marked, ecn_capable_packets=ecn_capable
    )
    j.thresholds["min_packets"] = p["min_packets"]
    for what, n in (("with a DSCP mark", marked), ("ECN-capable", ecn_capable)):
        if n < p["min_packets"]:
            j.incomplete(
                f"the MUXes encapsulated {n} packets {what} ({p['min_packets']:g} needed): the "
                "traffic did not carry them"
            )
    return j.verdict(
        passed=f"{marked} marked and {ecn_capable} ECN-capable encapsulated packets kept the "
        "client's DSCP and ECN, outer headers as RFC 6040 allows",
        failed=f"{j.violations} encapsulated records changed the client's DSCP or ECN",
    )


@checker("RW-5")
def check_bytes_intact(obs: Observations, p: Params) -> Verdict:
    """No integrity error; every closed stream delivered exactly its expected, verified bytes.

    Minimum: N TCP streams to a VIP (to any address, without the lab's facts) that the server
    closed after delivering verified bytes."""
    j = Judge("RW-5")
    history = obs.need_history()
    lab = obs.lab
    complete = 0
    for fh in history.flows.values():
        if fh.start.proto != "tcp":
            continue
        # Only a stream through the stack counts toward the minimum (a non-VIP one shows
        # nothing of it); any stream's lost bytes are a violation all the same.
        to_vip = lab is None or lab.service(fh.start.dst, fh.start.dport, 6) is not None
        bad = next((e for e in fh.events if isinstance(e, IntegrityError)), None)
        if bad is not None:
            j.violation(
                f"byte {bad.offset} differs from the stream pattern (server "
                f"{fh.server or 'unknown'})",
                flow=fh.describe(),
                time=bad.t,
            )
            continue
        end = fh.end
        if not isinstance(end, Closed):
            continue
        if fh.short_close(end):
            want = fh.start.expected_bytes
            j.violation(
                f"closed after {end.verified} verified bytes of {end.received} received"
                + (f", {want} expected" if want is not None else ""),
                flow=fh.describe(),
                time=end.t,
            )
        elif end.reason == "eof" and end.verified > 0 and to_vip:
            complete += 1
    j.measured["streams_completed"] = complete
    j.thresholds["min_streams"] = p["min_streams"]
    if complete < p["min_streams"]:
        j.incomplete(
            f"{complete} streams completed with verified bytes ({p['min_streams']:g} needed)"
        )
    return j.verdict(
        passed=f"{complete} streams delivered every expected byte intact",
        failed=f"{j.violations} streams lost or corrupted bytes",
    )


def _quoted_flow(emb: FiveTuple, lab: LabFacts) -> Conversation | None:
    """The VIP flow an ICMP error quotes, as the client sent it: (protocol, client address,
    client port, VIP, port)."""
    if lab.service(emb.src, emb.sport, emb.proto) is not None:
        return emb.proto, emb.dst, emb.dport, emb.src, emb.sport
    if lab.service(emb.dst, emb.dport, emb.proto) is not None:
        return emb.proto, emb.src, emb.sport, emb.dst, emb.dport
    return None


def _judge_icmp_delivery(
    j: Judge, obs: Observations, is_target: Callable[[TapFlow], bool], what: str
) -> int:
    """Every ICMP error (``is_target``) quoting a VIP flow that entered a MUX reached that
    flow's server and no other; return how many were judged."""
    lab = obs.need_lab()
    # One tap per link into a MUX: with both ends tapped (the router's egress and the MUX's
    # ingress, which sees what its XDP program passed to its stack) one error would count twice.
    mux_in = one_per_link(obs.need_taps_into(j, "mux"))
    srv_in = obs.need_taps_into(j, "server")
    index = obs.flow_index()
    carried: dict[Endpoint, Sighting] = {}

    def where_carried() -> dict[Endpoint, Sighting]:
        # Built only if a flow's history does not name its server: it reads every record.
        if not carried:
            carried.update(sightings(
                srv_in, lab, lambda t: t.receiver, keep=lambda r: r.payload.proto in (6, 17)
            ))  # fmt: skip
        return carried

    delivered: dict[FiveTuple, set[str]] = {}
    for info, recs in srv_in:
        for rec in recs:
            if rec.embedded is not None and is_target(rec) and info.receiver is not None:
                delivered.setdefault(rec.embedded, set()).add(info.receiver)
    judged = undetermined = 0
    for info, recs in mux_in:
        for rec in recs:
            if rec.embedded is None or not is_target(rec):
                continue
            quoted = _quoted_flow(rec.embedded, lab)
            if quoted is None:
                continue
            end = quoted[:3]
            server = _server_of(quoted, rec, index, where_carried, lab)
            if server is None:
                undetermined += 1
                continue
            judged += 1
            got = delivered.get(rec.embedded, set())
            if got == {server}:
                continue
            reached = ", ".join(sorted(got)) or "no server"
            j.violation(
                f"{what} about the flow of {hostport(end[1], end[2])} entered {info.receiver} "
                f"and reached {reached}; the flow's server is {server}",
                packet=rec.describe(),
                link=info.describe(),
                time=rec.first,
            )
    j.measured[f"{what.replace(' ', '_')}_judged"] = judged
    j.measured[f"{what.replace(' ', '_')}_server_unknown"] = undetermined
    return judged


def _server_of(
    quoted: Conversation,
    rec: TapFlow,
    index: FlowIndex,
    carried: Callable[[], dict[Endpoint, Sighting]],
    lab: LabFacts,
) -> str | None:
    """The quoted flow's server: the one its history names (by the whole 5-tuple: the client's
    port may carry a flow to another VIP at the same time), else the only one that packets of
    that 5-tuple reached."""
    for fh in index.find5(quoted, rec.first, rec.last):
        if fh.server is not None:
            return lab.server_node(fh.server)
    seen = carried().get(quoted[:3])
    if seen is None:
        return None
    vip, port = quoted[3], quoted[4]
    nodes = [
        node
        for node, recs in seen.records.items()
        if any(r.payload.dst == vip and r.payload.dport == port for _, r in recs)
    ]
    return nodes[0] if len(nodes) == 1 else None


ICMP_FRAG_NEEDED = (1, 3, 4)
"""(protocol, type, code) of IPv4's "fragmentation needed" (ICMP destination unreachable)."""
ICMPV6_PACKET_TOO_BIG = (58, 2, 0)
"""(protocol, type, code) of IPv6's "packet too big" (ICMPv6; RFC 4443 3.2, code always 0)."""


def _is_ptb(rec: TapFlow) -> bool:
    """Is ``rec`` a path-MTU error: ICMP fragmentation-needed for IPv4, ICMPv6 packet-too-big
    for IPv6 (of the innermost header: an encapsulated error counts as its payload)."""
    return (rec.payload.proto, rec.icmp_type, rec.icmp_code) in (
        ICMP_FRAG_NEEDED,
        ICMPV6_PACKET_TOO_BIG,
    )


@checker("RW-6")
def check_encap_overhead_handled(obs: Observations, p: Params) -> Verdict:
    """Uploads of full-sized segments succeed; fragmentation-needed (IPv4) or packet-too-big
    (ICMPv6, for IPv6 flows) reaches the flow's server.

    Minimum: an upload of U bytes whose connection was established (one that never was sent
    no full-sized segment: it shows nothing of the overhead), or a fragmentation-needed or
    packet-too-big error about a VIP flow entering a MUX whose server is known."""
    j = Judge("RW-6")
    ptb = 0
    try:
        ptb = _judge_icmp_delivery(j, obs, _is_ptb, "fragmentation needed")
    except MissingData as e:
        j.measured["ptb_not_judged"] = "; ".join(e.what)
    uploads = unconnected = 0
    if obs.history is not None:
        for fh in obs.history.flows.values():
            if fh.start.request_bytes < p["upload_bytes"]:
                continue
            if fh.established_at is None:
                unconnected += 1
                continue
            uploads += 1
            if not fh.succeeded():
                j.violation(
                    f"sending {fh.start.request_bytes} bytes to the VIP failed: "
                    f"{_failure_text(fh)}",
                    flow=fh.describe(),
                    time=(fh.failure() or fh.start).t,
                )
    j.measured.update(uploads_judged=uploads, uploads_never_established=unconnected)
    j.thresholds["upload_bytes"] = p["upload_bytes"]
    if ptb == 0 and uploads == 0:
        j.incomplete(
            f"neither an established upload of at least {p['upload_bytes']:g} bytes in the "
            f"histories ({unconnected} never connected) nor a fragmentation-needed (or ICMPv6 "
            "packet-too-big) error about "
            "a VIP flow entering a MUX"
        )
    return j.verdict(
        passed=f"{uploads} uploads succeeded and {ptb} fragmentation-needed/packet-too-big "
        "errors reached "
        "their flow's server",
        failed=f"{j.violations} uploads failed or fragmentation-needed/packet-too-big errors "
        "went astray",
    )


def _failure_text(fh: FlowHistory) -> str:
    e = fh.failure()
    return e.kind.replace("_", " ") if e is not None else "never established"


@checker("RW-7")
def check_icmp_errors_reach_flow_server(obs: Observations, p: Params) -> Verdict:
    """ICMP and ICMPv6 errors (other than fragmentation-needed and packet-too-big) about a VIP
    flow reach its server.

    Minimum: one such error quoting a VIP flow whose server is known (its history names it, or
    its packets reached one server) entered a MUX."""
    j = Judge("RW-7")
    n = _judge_icmp_delivery(
        j, obs, lambda r: r.embedded is not None and not _is_ptb(r), "icmp error"
    )
    if n == 0:
        j.incomplete("no ICMP error quoting a VIP flow with a known server entered a MUX")
    return j.verdict(
        passed=f"{n} ICMP errors reached their flow's server",
        failed=f"{j.violations} ICMP errors did not reach (only) their flow's server",
    )
