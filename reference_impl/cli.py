"""``dsrconform-ref``: the reference stack's own tools.

- ``mux-run --config C --in IN.pcap --out OUT.pcap [--verdicts V.jsonl] [--mutant M]``: run a
  pcap through the MUX (BPF_PROG_TEST_RUN), write the output frames and a verdict per packet.
- ``agent-run`` / ``gateway-run``: the same for the server agent and the egress gateway, IPv4
  and IPv6 alike (``examples/agent-demo6.yaml``, ``examples/gateway-demo6.yaml``).
- ``build [--mutant M]``: compile the BPF objects into the cache (done on first use anyway).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from dsrconform.errors import DsrConformError


def _print_summary(counts: Counter[str], extra: dict[str, int], out: Path, verdicts: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{sum(counts.values())} packets")
    t.add_column("verdict / counter")
    t.add_column("packets", justify="right")
    for k, v in sorted(counts.items()):
        t.add_row(k, str(v))
    for k, v in extra.items():
        if v:
            t.add_row(k, str(v))
    c = Console()
    c.print(t)
    c.print(f"outputs: {out}\nverdicts: {verdicts}")


def _mux_run(a: argparse.Namespace) -> int:
    from reference_impl.config import load_mux_config
    from reference_impl.mux import MuxProgram
    from reference_impl.trace import trace_pcap

    cfg = load_mux_config(a.config)
    verdicts = a.verdicts or a.out.with_suffix(".verdicts.jsonl")
    with MuxProgram(cfg, mutant=a.mutant) as mux:
        counts = trace_pcap(mux.program, "xdp", a.inp, a.out, verdicts)
        st = mux.stats()
    extra = {k: v for k, v in st.globals.items() if k.startswith("drop_") or k.startswith("lru")}
    extra.update({f"to {b}": n for b, (n, _) in st.backends.items()})
    _print_summary(counts, extra, a.out, verdicts)
    return 0


def _agent_run(a: argparse.Namespace) -> int:
    from reference_impl.agent import AgentProgram, load_agent_config
    from reference_impl.trace import trace_pcap

    verdicts = a.verdicts or a.out.with_suffix(".verdicts.jsonl")
    with AgentProgram(load_agent_config(a.config), mutant=a.mutant) as agent:
        prog = agent.ingress if a.direction == "ingress" else agent.egress
        counts = trace_pcap(prog, "tc", a.inp, a.out, verdicts)
        extra = agent.stats()
    _print_summary(counts, extra, a.out, verdicts)
    return 0


def _gateway_run(a: argparse.Namespace) -> int:
    from reference_impl.agent import GatewayProgram, load_gateway_config
    from reference_impl.trace import trace_pcap

    verdicts = a.verdicts or a.out.with_suffix(".verdicts.jsonl")
    with GatewayProgram(load_gateway_config(a.config), mutant=a.mutant) as gw:
        counts = trace_pcap(gw.program, "tc", a.inp, a.out, verdicts)
        extra = gw.stats()
    _print_summary(counts, extra, a.out, verdicts)
    return 0


def _build(a: argparse.Namespace) -> int:
    from dsrconform.bpf.build import compile_bpf
    from reference_impl import mutants
    from reference_impl.layout import BPF_DIR

    for comp in ("mux", "agent", "gateway"):
        print(compile_bpf(BPF_DIR / f"{comp}.bpf.c", mutants.defines_for(comp, a.mutant)))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dsrconform-ref", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def trace_cmd(name: str, help_: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_)
        s.add_argument("--config", required=True, type=Path, help="YAML configuration")
        s.add_argument("--in", dest="inp", required=True, type=Path, help="input pcap (Ethernet)")
        s.add_argument("--out", required=True, type=Path, help="output pcap")
        s.add_argument("--verdicts", type=Path, help="JSON lines file (default: beside --out)")
        s.add_argument("--mutant", help="run a mutant of the reference stack (dsrconform mutants)")
        return s

    trace_cmd("mux-run", "run a pcap through the XDP MUX").set_defaults(fn=_mux_run)
    ag = trace_cmd("agent-run", "run a pcap through the server agent (tc, IPv4 and IPv6)")
    ag.add_argument("--direction", choices=["ingress", "egress"], default="ingress")
    ag.set_defaults(fn=_agent_run)
    trace_cmd("gateway-run", "run a pcap through the egress gateway (tc)").set_defaults(
        fn=_gateway_run
    )
    b = sub.add_parser("build", help="compile the BPF objects into the cache")
    b.add_argument("--mutant")
    b.set_defaults(fn=_build)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
        return int(a.fn(a))
    except DsrConformError as e:
        print(f"dsrconform-ref: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
