"""The traffic mixes a scenario can name (``traffic: {mix: NAME}``), each a
:class:`dsrconform.steady.Mix` whose fields ``traffic.overrides`` may change."""

from __future__ import annotations

import dataclasses
from typing import Any

from dsrconform.scenarios import CHAOS_MIX, FLOOD_MIX, HOSTILE_MIX, SCALE_MIX
from dsrconform.steady import QUICK_MIX, Mix

__all__ = ["MIXES", "mix_fields", "mix_for"]

MIXES: dict[str, Mix] = {
    "steady": Mix(),
    "quick": QUICK_MIX,
    "chaos": CHAOS_MIX,
    "scale": SCALE_MIX,
    "flood": FLOOD_MIX,
    "hostile": HOSTILE_MIX,
}
"""Named mixes: ``chaos`` keeps streams and UDP flows open ~28 s with new connections all along
(faults from ~5 s); ``flood`` leaves the MUX links out of the evidence captures (a flood crosses
them); ``scale`` reuses client ports (AF-1); ``quick`` is ~7 s."""

_SETTABLE = ("marks", "seed")  # not overridable: the seed is the run's, marks are a tuple


def mix_fields() -> list[str]:
    """The Mix fields a scenario may override."""
    return [f.name for f in dataclasses.fields(Mix) if f.name not in _SETTABLE]


def mix_for(name: str, overrides: dict[str, Any], seed: int) -> Mix:
    """The named mix with ``overrides`` and the run's seed."""
    return dataclasses.replace(MIXES[name], seed=seed, **overrides)
