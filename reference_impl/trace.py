"""Run the packets of a pcap through a reference program with BPF_PROG_TEST_RUN.

``dsrconform-ref mux-run`` (and ``agent-run``, ``gateway-run``) use this: every input frame goes
through the program in order (so connection-table state builds up as on a live MUX), output
frames (for TX/PASS/OK verdicts) go to the output pcap, and one JSON line per input frame says what
happened (``OUT.verdicts.jsonl`` beside the output pcap unless ``--verdicts`` names a file)::

    {"index": 0, "action": "XDP_TX", "in_len": 74, "out_len": 94,
     "summary": "198.18.1.1:40000 > 198.19.0.10:80 TCP S",
     "outer_src": "198.18.10.1", "outer_dst": "198.18.20.3"}
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from dsrconform.bpf.libbpf import XDP_ACTIONS, Program, tc_action_name
from dsrconform.errors import ConfigError

FORWARDED = {"XDP_TX", "XDP_PASS", "XDP_REDIRECT", "TC_ACT_OK", "TC_ACT_UNSPEC"}


@dataclass
class Verdict:
    index: int
    action: str
    in_len: int
    out_len: int
    summary: str
    outer_src: str | None = None
    outer_dst: str | None = None


def read_frames(path: str | Path) -> list[tuple[float, bytes]]:
    """(timestamp, frame bytes) of every packet of an Ethernet pcap/pcapng file."""
    import scapy.layers.l2  # noqa: F401  (registers the Ethernet link type)
    from scapy.utils import PcapReader

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such pcap file")
    try:
        with PcapReader(str(p)) as r:
            return [(float(pkt.time), bytes(pkt)) for pkt in r]
    except Exception as e:  # scapy raises bare Scapy_Exception for non-pcap input
        raise ConfigError(f"{p}: not a readable pcap file ({e})") from None


def _describe(frame: bytes) -> tuple[str, str | None, str | None]:
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    eth = Ether(frame)
    outer6 = eth.payload if isinstance(eth.payload, IPv6) else None
    if outer6 is not None and outer6.nh in (4, 41):  # IPv4-in-IPv6, IPv6-in-IPv6
        inner6 = outer6.payload if isinstance(outer6.payload, (IP, IPv6)) else eth
        return inner6.summary(), outer6.src, outer6.dst
    ip = eth.getlayer(IP)
    if ip is None or ip.proto != 4:
        return eth.summary(), None, None
    inner = ip.payload if isinstance(ip.payload, IP) else eth
    return inner.summary(), ip.src, ip.dst


def run_frames(
    program: Program, kind: str, frames: Iterable[bytes]
) -> Iterator[tuple[Verdict, bytes]]:
    """Run each frame; yield its verdict and the output frame (empty unless forwarded)."""
    for i, frame in enumerate(frames):
        res = program.test_run(frame)
        if kind == "xdp":
            action = XDP_ACTIONS.get(res.retval, f"XDP_{res.retval}")
        else:
            action = tc_action_name(res.retval)
        out = res.data if action in FORWARDED else b""
        summary, src, dst = _describe(out or frame)
        yield Verdict(i, action, len(frame), len(out), summary, src, dst), out


def trace_pcap(
    program: Program, kind: str, in_pcap: Path, out_pcap: Path, verdicts: Path | None = None
) -> Counter[str]:
    """Run ``in_pcap`` through ``program``; write outputs and verdicts; return action counts."""
    from scapy.layers.l2 import Ether
    from scapy.utils import PcapWriter

    frames = read_frames(in_pcap)
    out_pcap.parent.mkdir(parents=True, exist_ok=True)
    verdicts = verdicts or out_pcap.with_suffix(".verdicts.jsonl")
    counts: Counter[str] = Counter()
    with PcapWriter(str(out_pcap), linktype=1, sync=False) as w, verdicts.open("w") as vj:
        for (ts, _), (v, out) in zip(
            frames, run_frames(program, kind, (f for _, f in frames)), strict=True
        ):
            counts[v.action] += 1
            vj.write(json.dumps(asdict(v)) + "\n")
            if out:
                pkt = Ether(out)
                pkt.time = ts  # keep the input's timestamp
                w.write(pkt)
    return counts
