"""Repeated bare-SYN probes of fixed client 5-tuples: which server each new flow of a tuple
reaches, before, during and after a change (SC-2 minimal remapping, SC-4 atomic convergence).

A real connection can ask "which server does a new flow of this 5-tuple reach?" only once: a
stateful MUX then remembers the tuple (correctly) and keeps it on its server, which would hide
the change. A bare SYN from a black-holed source asks it as often as needed: the border router
drops the server's SYN-ACK, so the client's ACK, which is what makes a MUX keep state, never
comes. (A stack that keeps state for bare SYNs shows no tuple moving; the checkers then answer
UNKNOWN rather than PASS.)

:func:`probing` sends the same ``flows`` tuples over and over at ``rate`` packets/s from the
lab's flood client, with the SYN flood's engine in repeat mode: sources from the topology's
second black-holed network of the VIP's family (``Topology.probe_network``: by default
198.18.208.0/21, or 2001:2:0:300::/56 toward an IPv6 VIP), one address per tuple, and a source
port of their own per probe set (each set is new to the stack). The lab's link taps on the links
out of each MUX record per tuple which server it was sent to, from when to when; that is what
the checkers read. ::

    with probing(lab, vip="198.19.0.10", port=80) as run:
        ...                       # the change
    run.result, run.error         # the FloodResult (None if the probes failed), why they failed

Probing never raises once it has started: a sender that fails is reported in ``run.error`` and
the change goes on (the checkers then lack records and answer UNKNOWN). Bounded: at most
``max_seconds`` and ``rate * max_seconds`` packets, stopped as soon as the ``with`` block ends.
"""

from __future__ import annotations

import ipaddress
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dsrconform.errors import ConfigError
from dsrconform.topology import BLACKHOLES6, Topology
from dsrconform.traffic.synflood import SPORT_BASE, FloodResult, lab_flood

if TYPE_CHECKING:
    from dsrconform.lab.protocol import LabNodes
    from dsrconform.target import Family

__all__ = ["PROBE_FLOWS", "PROBE_RATE", "ProbeRun", "probe_net", "probing"]

PROBE_RATE = 50_000.0
"""Probe packets per second: with :data:`PROBE_FLOWS` tuples, each is probed every ~41 ms; the
tuples' phases are spread, so together they time a table change to well under a millisecond."""
PROBE_FLOWS = 2048
"""Tuples per probe set (one per address of a /21): SC-2 needs 1,000 probed before and after."""
MAX_SECONDS = 60.0
START_TIMEOUT = 15.0
"""Seconds the sender may take to send its first probes (it compiles livegen the first time)."""

_sports = itertools.cycle(range(SPORT_BASE, 65536))
_sports_lock = threading.Lock()


def probe_net(topo: Topology, family: Family = "ipv4") -> str:
    """The probes' source network toward a VIP of ``family``: the topology's second
    black-holed network of that family."""
    net = topo.probe_network(family)
    if net is None:
        holes = [*Topology.model_fields["blackhole"].get_default(call_default_factory=True)]
        example = "[" + ", ".join(holes + list(BLACKHOLES6 if family == "ipv6" else ())) + "]"
        raise ConfigError(
            f"lab {topo.name}: tuple probes toward an {family} VIP need a second black-holed "
            f"{family} network (topology field 'blackhole', e.g. {example}); the first of a "
            "family is the SYN flood's, and nothing may answer the probes' sources"
        )
    return net


def _next_sport() -> int:
    with _sports_lock:
        return next(_sports)


@dataclass
class ProbeRun:
    """One probe set: ``flows`` tuples from ``src_net`` (one address each), source port
    ``sport``, to ``vip:port``."""

    src_net: str
    sport: int
    flows: int
    vip: str
    port: int
    result: FloodResult | None = None
    error: str | None = None

    def detail(self) -> dict[str, str | float | int]:
        """What a fault window records about the probes around it."""
        out: dict[str, str | float | int] = {"probe_net": self.src_net, "probe_sport": self.sport}
        if self.result is not None:
            out["probe_pps"] = round(self.result.delivered_pps, 1)
            out["probe_engine"] = self.result.engine
        if self.error is not None:
            # The checkers that read these probes (SC-2, SC-4) answer UNKNOWN with this error.
            out["probe_error"] = self.error
        return out


@contextmanager
def probing(
    lab: LabNodes,
    *,
    vip: str,
    port: int,
    rate: float = PROBE_RATE,
    flows: int = PROBE_FLOWS,
    max_seconds: float = MAX_SECONDS,
) -> Iterator[ProbeRun]:
    """Probe ``flows`` fixed tuples toward ``vip:port`` while the ``with`` block runs (see the
    module doc); the block starts once the first probes went (or the sender failed)."""
    family: Family = "ipv6" if ipaddress.ip_address(vip).version == 6 else "ipv4"
    net = ipaddress.ip_network(probe_net(lab.topology, family))
    if not 1 <= flows <= net.num_addresses:
        raise ConfigError(
            f"tuple probes: {flows} flows from {net}: expected 1..{net.num_addresses} (one "
            "address per tuple)"
        )
    run = ProbeRun(src_net=str(net), sport=_next_sport(), flows=flows, vip=vip, port=port)
    stop, started = threading.Event(), threading.Event()

    def send() -> None:
        try:
            run.result = lab_flood(
                lab, vip=vip, port=port, rate=rate, count=int(rate * max_seconds) + flows,
                duration=max_seconds, src_net=str(net), sport_base=run.sport, repeat=flows,
                stop=stop, progress=lambda _: started.set(),
            )  # fmt: skip
        except Exception as e:  # reported, never raised: the change must go on
            run.error = f"{type(e).__name__}: {e}"
        finally:
            started.set()

    sender = threading.Thread(target=send, name=f"dsrc-probes-{run.sport}", daemon=True)
    sender.start()
    try:
        if not started.wait(START_TIMEOUT):
            run.error = f"no probe went out within {START_TIMEOUT:g} s"
        yield run
    finally:
        stop.set()
        sender.join(max_seconds + START_TIMEOUT)
        if sender.is_alive() and run.error is None:
            run.error = "the probe sender did not stop"
