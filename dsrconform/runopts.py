"""What the pytest plugin and ``dsrconform run`` share: option choices and defaults, the seed
parser. Imports nothing heavy (no pytest), so the CLI stays fast."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from dsrconform.spec import Level
from dsrconform.target import FAMILIES, Family

__all__ = ["FAMILIES"]  # the choices of --family, re-exported beside MODES and BACKENDS

MODES = ("encap", "server-nat", "gateway-nat")
BACKENDS = ("netns", "docker")
PROFILES = ("full", "quick")
"""``dsrconform run --profile``: every scenario (nightly gate), or the short pull-request one."""
DEFAULT_LAB = "labs/basic.yaml"
"""The lab a run brings up unless told otherwise, relative to the repository (pytest's rootdir)."""
DEFAULT_FAMILIES: tuple[Family, ...] = ("ipv4",)
"""The address families a run's lab tests run in unless ``--family``/``--dsr-family`` say."""
FAMILY_LABS: dict[str, str] = {"ipv4": DEFAULT_LAB, "ipv6": "labs/dual.yaml"}
"""Without ``--lab``/``--dsr-lab``: the lab each family's tests bring up, relative to the
repository. IPv4 keeps the lab every run had before IPv6 (an ``--family ipv4,ipv6`` run judges
IPv4 exactly as an IPv4-only run does); IPv6 needs a lab with IPv6 services (labs/dual.yaml)."""
DEFAULT_LEVEL: Level = "MUST"
"""The lowest requirement level a run tests and counts unless told otherwise: the default of
``dsrconform run --level`` and of the plugin's ``--dsr-level``, and the level ``dsrconform
steady --quick`` gates on."""


def default_lab(family: str) -> str:
    """The lab file (relative to the repository) the tests of ``family`` bring up when no lab
    is given: :data:`FAMILY_LABS`."""
    return FAMILY_LABS.get(family, DEFAULT_LAB)


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


def add_environment_options(p: argparse.ArgumentParser) -> None:
    """``--target-opt KEY=VALUE`` (repeatable: the target's own settings) and
    ``--server-command`` (the servers' application instead of the project's), as every command
    that brings a lab up takes them (``run``, ``lab up``)."""
    p.add_argument(
        "--target-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the target's own (repeatable), e.g. katran_src=DIR",
    )
    p.add_argument(
        "--server-command",
        default=None,
        metavar="COMMAND",
        help="the servers' application instead of the project's (docs/lab.md)",
    )
