"""``dsrconform bench mux`` on the command line: which targets and families run, the tables, JSON.

Each (target, family) pair is one :func:`dsrconform.bench.mux.run_bench` summary, which names its
family. ``--family`` (default: every family the target declares in ``families``) picks them; a
requested family the target does not declare is skipped and said so, not an error. JSON: one
target measured in one family prints that summary (the shape it always had); anything else prints
``{"targets": {NAME: {"families": {FAMILY: summary}, "skipped": {FAMILY: reason}}}}``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from dsrconform.bench import progress_bars
from dsrconform.bench.mux import (
    CASES,
    bench_families,
    bench_target,
    check_generator,
    run_bench,
    takes_mux_addr6,
)
from dsrconform.target import Family, load_target

FAMILY_TITLES: dict[str, str] = {"ipv4": "IPv4", "ipv6": "IPv6"}

Results = dict[str, dict[Family, dict[str, Any]]]
"""target -> family -> summary"""
Skipped = dict[str, dict[Family, str]]
"""target -> family -> why it was not measured"""


def families_for(
    name: str, mutant: str | None, requested: Sequence[str] | None
) -> tuple[list[Family], dict[Family, str]]:
    """:func:`dsrconform.bench.mux.bench_families` for target ``name`` (refused as
    :func:`~dsrconform.bench.mux.bench_target` refuses it, before any BPF)."""
    bench = bench_target(name, mutant)
    declared = load_target(name, mutant=mutant).families
    return bench_families(declared, requested, takes_addr6=takes_mux_addr6(bench))


def json_output(results: Results, skipped: Skipped) -> dict[str, Any]:
    """What ``--json`` prints (the module docstring)."""
    if len(results) == 1:
        name, by_family = next(iter(results.items()))
        if len(by_family) == 1 and not skipped.get(name):
            return next(iter(by_family.values()))
    return {
        "targets": {
            name: {"families": by_family, "skipped": skipped.get(name, {})}
            for name, by_family in results.items()
        }
    }


def _ns(value: float | None) -> str:
    return "n/a" if value is None else f"+{value:.0f}"


def _render(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    family = FAMILY_TITLES[summary.get("family", "ipv4")]
    title = f"MUX throughput ({family}): target {summary['target']}, "
    title += f"generator {summary['generator']}"
    if summary["mutant"]:
        title += f" (mutant {summary['mutant']})"
    if summary["dut"] == "reflector":
        title += " [harness check: reflector in the MUX's place]"
    table = Table(
        title=title,
        # Text, not markup: rich would read ":100:" of 2001:2:0:100::10 as an emoji code.
        caption=Text(
            f"packets/s ({summary['frame_bytes']}-byte frames to {summary['vip']['addr']}) "
            "delivered back to the generator side; +ns/pkt: the MUX's cost per packet over the "
            "reflector's; delivered: fraction of submitted frames (ref / mux)"
        ),
    )
    table.add_column("mode")
    for col in ("reflector", "mux", "mux/ref", "mux +ns/pkt", "delivered"):
        table.add_column(col, justify="right")
    for mode in ("syn", "established"):
        ref, mux = summary["cases"][f"reflector-{mode}"], summary["cases"][f"mux-{mode}"]
        ratio = summary["ratios"][mode]
        ok = ratio is not None and ratio >= summary["target_ratio"]
        shown = "n/a" if ratio is None else f"[{'green' if ok else 'red'}]{ratio:.2f}[/]"
        table.add_row(
            mode,
            f"{ref['pps'] / 1e6:.2f} Mpps",
            f"{mux['pps'] / 1e6:.2f} Mpps",
            shown,
            _ns(summary["mux_extra_ns_per_packet"][mode]),
            f"{ref['delivered_fraction']:.2f} / {mux['delivered_fraction']:.2f}",
        )
    console = Console()
    console.print(table)
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}")
    verdict = "meets" if summary["meets_target"] else "misses"
    console.print(f"goal: mux/reflector >= {summary['target_ratio']} in both modes: {verdict} it")


def _render_comparison(results: Results) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="MUX side by side (each target and family against its own reflector rounds)",
        caption="Mpps delivered through the MUX; /ref: over the reflector's; +ns: the MUX's cost "
        "per packet over the reflector's",
    )
    table.add_column("target")
    table.add_column("family")
    for mode in ("syn", "est"):
        table.add_column(f"{mode} Mpps", justify="right")
        table.add_column(f"{mode} /ref", justify="right")
        table.add_column(f"{mode} +ns", justify="right")
    for name, by_family in results.items():
        for family, summary in by_family.items():
            row = [name, family]
            for mode in ("syn", "established"):
                ratio = summary["ratios"][mode]
                row += [
                    f"{summary['cases'][f'mux-{mode}']['pps'] / 1e6:.2f}",
                    "n/a" if ratio is None else f"{ratio:.2f}",
                    _ns(summary["mux_extra_ns_per_packet"][mode]),
                ]
            table.add_row(*row)
    Console().print(table)


def main(args: argparse.Namespace) -> int:
    """``dsrconform bench mux``: run the bench, print a table (or JSON with ``--json``).

    ``args``: ``target`` (default "reference"; several, comma-separated, are measured one after
    the other and shown side by side), ``family`` (a tuple of families, None: each target's
    declared ones), ``mutant`` (None), ``seconds`` per case (3), ``generator`` ("auto"),
    ``json`` (False). Progress goes to stderr, so ``--json`` output stays parseable.
    """
    seconds = float(getattr(args, "seconds", 3.0))
    targets = (getattr(args, "target", None) or "reference").split(",")
    mutant = getattr(args, "mutant", None)
    requested = getattr(args, "family", None)
    as_json = bool(getattr(args, "json", False))
    generator = getattr(args, "generator", None) or "auto"
    plan = {name: families_for(name, mutant, requested) for name in targets}
    for families, _ in plan.values():  # before anything runs, not after the IPv4 figures
        for family in families:
            check_generator(generator, family)
    results: Results = {}
    skipped: Skipped = {name: dict(skips) for name, (_, skips) in plan.items()}
    several = sum(len(fams) for fams, _ in plan.values()) > 1
    for name, (families, _) in plan.items():
        results[name] = {}
        for family in families:
            prefix = f"{name} {family}: " if several else ""
            # Cases are interleaved (see mux.schedule()), so each bar fills in steps, in turn.
            names = [f"{prefix}{d}-{m}" for d, m in CASES]
            with progress_bars(names, transient=as_json) as progress:

                def report(case: str, fraction: float, prefix: str = prefix) -> None:
                    progress(prefix + case, fraction)

                results[name][family] = run_bench(
                    name,
                    mutant,
                    seconds,
                    progress=report,
                    generator=generator,
                    family=family,
                )
    if as_json:
        print(json.dumps(json_output(results, skipped), indent=2))
        return 0
    for by_family in results.values():
        for summary in by_family.values():
            _render(summary)
    for name, skips in skipped.items():
        for skipped_family, why in skips.items():
            print(f"target {name}: {skipped_family} skipped: {why}")
    if several:
        _render_comparison(results)
    return 0
