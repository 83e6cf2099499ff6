"""Robustness (RB): hostile input harms nothing, non-VIP traffic passes, fragments are handled
consistently, and servers decapsulate only what their MUXes sent.

``crafted`` windows of the fault timeline mark when the harness sent malformed or hostile
packets; RB-3 expects one fragmented stream per (client address, VIP, protocol). Hostile
traffic that harms nothing shows nothing unless the stack was seen working meanwhile: each
checker states that minimum ("Minimum:" in its docstring) and answers UNKNOWN below it.
"""

from __future__ import annotations

import math

from dsrconform.invariants.flows import attempts, describe_failure
from dsrconform.invariants.served import need_mux_forwarding
from dsrconform.invariants.verdict import Judge, MissingData, Params, Verdict, checker
from dsrconform.observe.history import FlowHistory
from dsrconform.observe.observations import Observations, Role, from_role
from dsrconform.observe.taps import GUE_PORT, TapFlow, TapInfo

SUT_ROLES: tuple[Role, ...] = ("mux", "server", "gateway")


@checker("RB-1")
def check_hostile_packets_harmless(obs: Observations, p: Params) -> Verdict:
    """SUT nodes emit nothing malformed; legitimate traffic keeps succeeding.

    Minimum: a crafted window, and legitimate connections attempted during or after it of
    which a share S succeeded (a stack that forwards nothing fails them: FAIL)."""
    j = Judge("RB-1")
    lab = obs.need_lab()
    history = obs.need_history()
    windows = obs.need_windows("crafted")
    try:
        sending = obs.need_taps(j, "on a SUT node's sending side", from_role(lab, *SUT_ROLES))
    except MissingData as e:  # failed legitimate connections are still a violation seen
        sending = []
        for what in e.what:
            j.incomplete(what)
    for info, _ in sending:
        if info.malformed:
            j.violation(
                f"{info.sender} emitted {info.malformed} malformed packets",
                link=info.describe(),
                time=info.started,
                until=info.stopped,
            )
    later = [w.start for w in obs.faults if w.kind != "crafted"]
    seen: dict[int, FlowHistory] = {}  # overlapping windows: each attempt counted once
    for w in windows:
        until = min((t for t in later if t > w.start), default=math.inf)
        seen.update((id(fh), fh) for fh in attempts(history, w.start, until, lab=lab))
    tried = list(seen.values())
    ok = sum(fh.succeeded() for fh in tried)
    share = ok / len(tried) if tried else math.nan
    j.measured.update(legitimate_attempts=len(tried), succeeded=ok, success_share=share)
    j.thresholds["min_success"] = p["min_success"]
    if not tried:
        j.incomplete("no legitimate connection was attempted during or after the crafted packets")
    elif share < p["min_success"]:
        for fh in tried:
            if not fh.succeeded():
                j.violation(
                    f"legitimate connection failed during/after crafted packets: "
                    f"{describe_failure(fh)}",
                    flow=fh.describe(),
                    time=fh.start.t,
                )
    return j.verdict(
        passed=f"nothing malformed emitted; {ok} of {len(tried)} legitimate connections succeeded",
        failed=f"{j.violations} malformed emissions or failed legitimate connections",
    )


@checker("RB-2")
def check_non_vip_untouched(obs: Observations, p: Params) -> Verdict:
    """No MUX encapsulates non-VIP traffic; recorded non-VIP flows succeed.

    Minimum: a MUX seen forwarding VIP traffic toward a server (its data plane was on the
    path: non-VIP traffic left alone by no data plane at all shows nothing), and non-VIP flows
    recorded or non-VIP packets into a MUX whose sending side was tapped."""
    j = Judge("RB-2")
    lab = obs.need_lab()
    encap = to_mux = 0
    if obs.taps is not None:
        mux_addrs = {a for n in lab.nodes("mux") for a in lab.addresses.get(n, [])}
        for info, recs in obs.taps.items():
            if lab.role(info.receiver) == "mux":
                to_mux += sum(
                    r.packets for r in recs if not lab.is_vip(r.dst) and r.dst not in mux_addrs
                )
            if lab.role(info.sender) != "mux":
                continue
            if info.overflowed:
                j.incomplete(f"tap {info.describe()} lost {info.lost_records} records (overflow)")
            for rec in recs:
                if rec.inner is None:
                    continue
                encap += rec.packets
                if not lab.is_vip(rec.inner.dst):
                    j.violation(
                        f"{info.sender} encapsulated packets to {rec.inner.dst}, which is no VIP",
                        packet=rec.describe(),
                        link=info.describe(),
                        time=rec.first,
                        until=rec.last,
                    )
    flows = 0
    if obs.history is not None:
        for fh in obs.history.flows.values():
            s = fh.start
            if lab.service(s.dst, s.dport, fh.proto_number) is not None:
                continue
            flows += 1
            if not fh.succeeded():
                j.violation(
                    f"non-VIP flow failed: {describe_failure(fh)}",
                    flow=fh.describe(),
                    time=fh.start.t,
                )
    j.measured.update(
        non_vip_flows=flows, encapsulated_packets=encap, non_vip_packets_into_muxes=to_mux
    )
    need_mux_forwarding(j, obs, lab)
    if flows == 0 and (to_mux == 0 or encap == 0):
        j.incomplete(
            "no non-VIP flow in the histories, and no non-VIP traffic into a MUX with taps on "
            "the MUX's sending side"
        )
    return j.verdict(
        passed=f"{flows} non-VIP flows succeeded and no MUX encapsulated non-VIP traffic",
        failed=f"{j.violations} non-VIP packets were encapsulated or non-VIP flows failed",
    )


FragKey = tuple[int, str, str]


@checker("RB-3")
def check_fragments_consistent(obs: Observations, p: Params) -> Verdict:
    """A stream's fragments reach one server or none, all of them or none.

    Minimum: fragments (IPv4, or IPv6 with a fragment header) from a client to a VIP entered a
    MUX, and a MUX was seen forwarding
    VIP traffic toward a server (fragments that reach no server show a consistent choice only
    where the MUXes forward at all)."""
    j = Judge("RB-3")
    lab = obs.need_lab()
    mux_in = obs.need_taps_into(j, "mux")
    srv_in = obs.need_taps_into(j, "server")
    entered: dict[FragKey, int] = {}
    first_at: dict[FragKey, tuple[TapInfo, TapFlow]] = {}
    for info, recs in mux_in:
        for r in recs:
            if r.fragments and lab.is_vip(r.dst) and lab.is_client(r.src):
                key = (r.proto, r.src, r.dst)
                entered[key] = entered.get(key, 0) + r.fragments
                first_at.setdefault(key, (info, r))
    arrived: dict[FragKey, dict[str, int]] = {}
    for info, recs in srv_in:
        for r in recs:
            t = r.payload
            if r.fragments and info.receiver is not None:
                per = arrived.setdefault((t.proto, t.src, t.dst), {})
                per[info.receiver] = per.get(info.receiver, 0) + r.fragments
    for key, n in entered.items():
        per = arrived.get(key, {})
        got = sum(per.values())
        info, rec = first_at[key]
        where = ", ".join(f"{s} ({c})" for s, c in sorted(per.items()))
        if len(per) > 1:
            j.violation(
                f"fragments from {key[1]} to {key[2]} reached several servers: {where}",
                packet=rec.describe(),
                link=info.describe(),
                time=rec.first,
            )
        elif 0 < got < n:
            j.violation(
                f"{got} of {n} fragments from {key[1]} to {key[2]} reached {where}: "
                "some were dropped, some forwarded",
                packet=rec.describe(),
                link=info.describe(),
                time=rec.first,
            )
    j.measured["fragmented_streams"] = len(entered)
    if not entered:
        j.incomplete("no fragment (IPv4 or IPv6) from a client to a VIP entered a MUX")
    need_mux_forwarding(j, obs, lab)
    return j.verdict(
        passed=f"{len(entered)} fragmented streams were handled consistently",
        failed=f"{j.violations} fragmented streams were split or partly dropped",
    )


ENCAP_NAMES = {"ipip": "IPIP", "gue": "GUE"}


def encapsulation_of(rec: TapFlow) -> str | None:
    """``ipip`` (IP-in-IP of either family: protocol 4 or 41) or ``gue``: how ``rec`` is
    encapsulated (the taps decode only those two); None
    when it is not."""
    if rec.inner is None:
        return None
    return "gue" if rec.proto == 17 and rec.dport == GUE_PORT else "ipip"


def foreign_sent(obs: Observations) -> set[str]:
    """The encapsulations the harness forged foreign packets in: its ``crafted`` windows'
    ``encapsulation`` detail (one per encapsulation the target declares)."""
    return {
        str(w.detail["encapsulation"])
        for w in obs.faults
        if w.kind == "crafted" and "encapsulation" in w.detail
    }


@checker("RB-4")
def check_decap_only_from_muxes(obs: Observations, p: Params) -> Verdict:
    """Encapsulated packets from a non-MUX source reaching a server are never answered, in each
    encapsulation: those the harness forged foreign packets in (the target's declared ones) and
    any other seen.

    Minimum, per encapsulation: a foreign packet in it (from a non-MUX source) reached a
    server, and a packet in it from a MUX reaching a server was answered (the servers
    decapsulate what the MUXes send: a server that decapsulates nothing, or another
    encapsulation, leaves the foreign packets unanswered too)."""
    j = Judge("RB-4")
    lab = obs.need_lab()
    srv_in = obs.need_taps_into(j, "server")
    if obs.taps is None or not any(lab.role(t.sender) == "server" for t, _ in obs.taps.items()):
        raise MissingData("a tap on a server's sending side (to see answers)")
    mux_addrs = {a for n in lab.nodes("mux") for a in lab.addresses.get(n, [])}
    answers: dict[tuple[int, str, int], list[tuple[TapInfo, TapFlow]]] = {}
    for info, recs in obs.taps.items():
        for r in recs:
            answers.setdefault((r.payload.proto, r.payload.dst, r.payload.dport), []).append(
                (info, r)
            )
    sent = foreign_sent(obs)
    foreign: dict[str, int] = dict.fromkeys(sent, 0)
    from_mux: set[str] = set()
    for info, recs in srv_in:
        for rec in recs:
            enc = encapsulation_of(rec)
            inner = rec.inner
            if enc is None or inner is None:  # not encapsulated
                continue
            key = (inner.proto, inner.src, inner.sport)
            if rec.src in mux_addrs:
                if enc not in from_mux and any(
                    a.last >= rec.first for _, a in answers.get(key, [])
                ):
                    from_mux.add(enc)  # one is enough: the servers decapsulate it
                continue
            foreign[enc] = foreign.get(enc, 0) + 1
            for ainfo, ans in answers.get(key, []):
                if ans.last >= rec.first:
                    j.violation(
                        f"{info.receiver} accepted {ENCAP_NAMES[enc]}-encapsulated packets from "
                        f"{rec.src} (not a MUX): its inner flow {inner.describe()} was answered",
                        packet=ans.describe(),
                        link=ainfo.describe(),
                        time=ans.first,
                    )
                    break
    j.measured["foreign_encapsulated_records"] = sum(foreign.values())
    for enc, n in sorted(foreign.items()):
        j.measured[f"foreign_{enc}_records"] = n
    j.measured["foreign_sent_encapsulations"] = ",".join(sorted(sent))
    j.measured["mux_encapsulated_flow_answered"] = bool(from_mux)
    j.measured["mux_flow_answered_encapsulations"] = ",".join(sorted(from_mux))
    if not foreign:
        j.incomplete("no encapsulated packet from a non-MUX source reached a server")
    for enc in sorted(foreign):
        name = ENCAP_NAMES.get(enc, enc)
        if foreign[enc] == 0:
            j.incomplete(f"a foreign {name} packet (sent by the harness) reaching a server")
        if enc not in from_mux:
            j.incomplete(
                f"an answer to a packet in {name} that a MUX sent a server: the servers were "
                f"never seen decapsulating the stack's own {name} traffic, so an unanswered "
                "foreign one says nothing"
            )
    judged = ", ".join(ENCAP_NAMES.get(e, e) for e in sorted(foreign))
    return j.verdict(
        passed=f"none of {sum(foreign.values())} foreign encapsulated flows ({judged}) was "
        "answered, while the MUXes' own were",
        failed=f"{j.violations} foreign encapsulated flows were accepted and answered",
    )
