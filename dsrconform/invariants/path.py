"""DSR path (DP): replies bypass the MUXes, so MUX load follows inbound traffic only.

Each checker decides one requirement of :mod:`dsrconform.spec` from link taps and the lab's
facts; see :mod:`dsrconform.invariants.verdict` for the contract. A return path is judged only
once the stack was seen carrying requests through its MUXes and answering them ("Minimum:" in
each docstring): a stack that answers nothing sends nothing back through a MUX either.
"""

from __future__ import annotations

from dsrconform.invariants.served import need_replies_from_each
from dsrconform.invariants.verdict import Judge, MissingData, Params, Verdict, checker
from dsrconform.observe.observations import (
    Observations,
    from_role,
    mux_of_tap,
    on_role_link,
    one_per_link,
)
from dsrconform.observe.taps import TapFlow, TapInfo


@checker("DP-1")
def check_return_path_bypasses_mux(obs: Observations, p: Params) -> Verdict:
    """No packet to a client address, outer or encapsulated, on any MUX's link.

    Minimum: client packets to a VIP seen on a MUX's link (the MUXes carried the requests),
    and a reply from every service the traffic addressed seen reaching a client (there was a
    return path to judge)."""
    j = Judge("DP-1")
    lab = obs.need_lab()
    taps = obs.need_taps(
        j,
        "on a MUX's link",
        on_role_link(lab, "mux"),
        expect=lab.nodes("mux"),
        covers=lambda t: mux_of_tap(lab, t),
    )
    packets = requests = 0
    is_client = lab.client_test()
    for info, recs in taps:
        for rec in recs:
            packets += rec.packets
            carried = rec.inner if rec.inner is not None else rec
            if lab.is_vip(carried.dst) and is_client(carried.src):
                requests += rec.packets
            dst = rec.dst if is_client(rec.dst) else None
            if dst is None and rec.inner is not None and is_client(rec.inner.dst):
                dst = rec.inner.dst
            if dst is not None:
                j.violation(
                    f"packets to client {dst} crossed {mux_of_tap(lab, info)}'s link",
                    packet=rec.describe(),
                    link=info.describe(),
                    time=rec.first,
                    until=rec.last,
                )
    j.measured.update(mux_link_packets=packets, mux_link_requests=requests, mux_link_taps=len(taps))
    if requests == 0:
        j.incomplete("client packets to a VIP on a tapped MUX link: the MUXes carried none")
    need_replies_from_each(j, obs, lab)
    return j.verdict(
        passed=f"none of {packets} packets on MUX links was addressed to a client",
        failed=f"{j.violations} tap records show server-to-client packets on MUX links",
    )


@checker("DP-2")
def check_mux_load_follows_inbound(obs: Observations, p: Params) -> Verdict:
    """Bytes into the MUXes (control traffic aside) <= (1 + slack) x client-to-VIP bytes.

    Minimum: clients sent B bytes to VIPs, the MUXes received B bytes of client-to-VIP
    traffic, and a reply from every service the traffic addressed reached a client (a MUX that
    receives nothing, or a stack that never answers, bounds nothing)."""
    j = Judge("DP-2")
    lab = obs.need_lab()
    client_out = obs.need_taps(
        j,
        "on a client's sending side",
        from_role(lab, "client"),
        expect=lab.nodes("client"),
        covers=lambda t: t.sender,
    )
    mux_in = obs.need_taps_into(j, "mux")
    client_out, mux_in = one_per_link(client_out), one_per_link(mux_in)
    # Said, not judged: a MUX's own ingress tap is the only one on a link (no sending-end tap)
    # misses what an XDP program forwarded, but is complete for a MUX without XDP.
    j.measured["mux_bytes_tapped_at"] = ", ".join(sorted(i.describe() for i, _ in mux_in))
    lossy = [info.describe() for info, _ in client_out + mux_in if info.overflowed]
    if lossy:
        # Byte sums from a tap that lost records are biased either way: no decision at all.
        raise MissingData(*(f"complete byte counts from {t} (it overflowed)" for t in lossy))
    mux_addrs = {a for n in lab.nodes("mux") for a in lab.addresses.get(n, [])}
    inbound = sum(r.bytes for _, recs in client_out for r in recs if lab.is_vip(r.dst))
    into_mux: list[tuple[TapInfo, TapFlow]] = [
        (info, r)
        for info, recs in mux_in
        for r in recs
        if r.src not in mux_addrs and r.dst not in mux_addrs
    ]
    mux_bytes = sum(r.bytes for _, r in into_mux)
    mux_vip_bytes = sum(r.bytes for _, r in into_mux if lab.is_client(r.src) and lab.is_vip(r.dst))
    replies = _reply_bytes(obs)
    bound = (1 + p["slack"]) * inbound
    j.measured.update(
        inbound_bytes=inbound,
        mux_received_bytes=mux_bytes,
        mux_received_vip_bytes=mux_vip_bytes,
        reply_bytes=replies,
    )
    j.thresholds.update(max_mux_bytes=bound, min_inbound_bytes=p["min_inbound_bytes"])
    if inbound < p["min_inbound_bytes"]:
        j.incomplete(
            f"clients sent {inbound} bytes to VIPs ({p['min_inbound_bytes']:g} needed to decide)"
        )
    elif mux_bytes > bound:
        j.violation(
            f"the MUXes received {mux_bytes} bytes, more than (1 + {p['slack']:g}) x {inbound} "
            "bytes clients sent to VIPs"
        )
        extra = [(i, r) for i, r in into_mux if not (lab.is_client(r.src) and lab.is_vip(r.dst))]
        for info, rec in sorted(extra, key=lambda x: -x[1].bytes)[:5]:
            j.violation(
                f"{rec.bytes} bytes into {info.receiver} that are not client-to-VIP traffic",
                packet=rec.describe(),
                link=info.describe(),
                time=rec.first,
                until=rec.last,
            )
    if mux_vip_bytes < p["min_inbound_bytes"]:
        j.incomplete(
            f"the MUXes received {mux_vip_bytes} bytes of client-to-VIP traffic "
            f"({p['min_inbound_bytes']:g} needed: the requests must have reached them)"
        )
    need_replies_from_each(j, obs, lab)
    return j.verdict(
        passed=f"the MUXes received {mux_bytes} bytes for {inbound} inbound bytes "
        f"(replies: {replies} bytes)",
        failed=f"MUX load exceeds the inbound traffic: {mux_bytes} > {bound:.0f} bytes",
    )


def _reply_bytes(obs: Observations) -> int | None:
    """Bytes toward clients, when taps saw them (reported, not judged)."""
    if obs.taps is None or obs.lab is None:
        return None
    lab = obs.lab
    recv = [recs for info, recs in obs.taps.items() if lab.role(info.receiver) == "client"]
    return sum(r.bytes for recs in recv for r in recs) if recv else None
