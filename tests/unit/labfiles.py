"""Lab files for unit tests: labs/basic.yaml as it is, and variants of it."""

from __future__ import annotations

from pathlib import Path

BASIC = Path(__file__).resolve().parents[2] / "labs" / "basic.yaml"
GATEWAY_LINES = (
    "  gw: {role: gateway}\n",
    ",\n              gw: 198.18.20.253/24",
    "  - {ends: {gw: 198.18.30.1/30, router: 198.18.30.2/30}}\n",
)
"""The lines of basic.yaml that give it its gateway node."""


def basic_without_gateway() -> str:
    """basic.yaml's text without its gateway (a lab that cannot run gateway-nat). Fails if the
    file no longer holds those lines, so the variant never silently keeps the gateway."""
    lab = BASIC.read_text()
    for line in GATEWAY_LINES:
        assert line in lab, f"basic.yaml changed: {line!r} not found"
        lab = lab.replace(line, "")
    return lab
