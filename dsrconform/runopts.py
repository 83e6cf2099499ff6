"""What the pytest plugin and ``dsrconform run`` share: option choices, results file names, the
seed parser. Imports nothing heavy (no pytest), so the CLI stays fast."""

from __future__ import annotations

import argparse
from collections.abc import Callable

LEVELS = ("MUST", "SHOULD", "MAY")  # strictest first, as dsrconform.spec
MODES = ("encap", "server-nat", "gateway-nat")
BACKENDS = ("netns", "docker")
SUMMARY_FILE = "summary.json"
VERDICTS_FILE = "verdicts.jsonl"


def parse_seed(value: str) -> int:
    """A seed option's value: a non-negative integer, decimal or 0x-prefixed."""
    try:
        seed = int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes an integer, got {value!r}") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {seed}")
    return seed


def choice_list(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """An option type: comma-separated values, each one of ``choices``, none twice (a run is
    parametrised over them)."""

    def parse(value: str) -> tuple[str, ...]:
        items = tuple(v.strip() for v in value.split(",") if v.strip())
        bad = [v for v in items if v not in choices]
        if not items or bad:
            raise argparse.ArgumentTypeError(
                f"{', '.join(map(repr, bad)) or repr(value)}: choose from {', '.join(choices)} "
                "(several: comma-separated, e.g. " + ",".join(choices[:2]) + ")"
            )
        if len(set(items)) != len(items):
            raise argparse.ArgumentTypeError(f"{value!r} names a value twice")
        return items

    parse.__name__ = "choice list"  # argparse names the type in its error messages
    return parse
