"""What the pytest plugin and ``dsrconform run`` share: option choices, results file names, the
seed parser. Imports nothing heavy (no pytest), so the CLI stays fast."""

from __future__ import annotations

import argparse

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
