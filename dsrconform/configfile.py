"""Load YAML (or JSON) files into pydantic models, with errors that name file, line and field.

Every user-facing file of dsrconform (topologies, MUX configs, scenarios) goes through
:func:`load_model`, so a bad file always fails the same way, before anything is created::

    labs/basic.yaml:14: vips[0].backends[2]: '10.0.0.1' is outside 198.18.0.0/15
      fix: use an address from the lab range 198.18.0.0/15

Lines come from the YAML node tree (yaml.compose), so they point at the offending value.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from dsrconform.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
LAB_NET = ipaddress.IPv4Network("198.18.0.0/15")
LAB_NET6 = ipaddress.IPv6Network("2001:2::/48")


def lab_address(value: str, what: str = "address") -> str:
    """Validate an IPv4 address inside 198.18.0.0/15 (pydantic validators call this)."""
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address (expected a dotted quad)") from None
    if addr not in LAB_NET:
        raise ValueError(
            f"{what} {value} is outside the lab range {LAB_NET}; "
            "fix: use an address from 198.18.0.0/15 (clients 198.18.1.0/24, MUX links "
            "198.18.10.0/24, servers 198.18.20.0/24, VIPs 198.19.0.0/24)"
        )
    return str(addr)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the node at ``loc`` (a pydantic error location) in a composed YAML tree."""
    best = node
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            nxt = node.value[part] if part < len(node.value) else None
        else:
            nxt = None
        if nxt is None:
            # A part the tree lacks: a union's tag pydantic puts in the location (``fault.
            # mux-kill.node``), or the missing field itself; the next part may still be there.
            continue
        node = best = nxt
    return best.start_mark.line + 1 if best is not None else None


def _loc_str(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_FIXES = {
    "missing": "; fix: add it",
    "extra_forbidden": "; fix: remove it, or check its spelling",
}
"""The fix appended to pydantic's message for errors that carry none."""


def load_model(path: str | Path, model: type[M]) -> M:
    """Parse ``path`` and validate it as ``model``; raise ConfigError naming file, line, field."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
        tree = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    dup = _duplicate_key(tree)
    if dup is not None:
        key, line, first = dup
        raise ConfigError(
            f"{p}:{line}: {key!r} is defined twice (first at line {first}); fix: rename or merge"
            " one of them (YAML would silently keep only the last)"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        obj = model.model_validate(data)
    except ValidationError as e:
        found = [
            (
                tuple(err["loc"]),
                str(err["msg"]).removeprefix("Value error, ") + _FIXES.get(err["type"], ""),
            )
            for err in e.errors()
        ]
        raise ConfigError(_report(p, tree, found)) from None
    # Cross-references (a link naming an unknown node, an address used twice...) are checked
    # after the fields are valid; the model reports each problem with the location it concerns.
    problems = getattr(obj, "problems", None)
    found = problems() if callable(problems) else []
    if found:
        raise ConfigError(_report(p, tree, found))
    return obj


def _duplicate_key(node: yaml.Node | None) -> tuple[str, int, int] | None:
    """The first mapping key that appears twice in the same mapping: (key, line, first line)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for k, v in node.value:
            key = str(getattr(k, "value", ""))
            if key in seen:
                return key, k.start_mark.line + 1, seen[key]
            seen[key] = k.start_mark.line + 1
            found = _duplicate_key(v)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _duplicate_key(item)
            if found:
                return found
    return None


def _report(p: Path, tree: yaml.Node | None, found: list[tuple[tuple[Any, ...], str]]) -> str:
    lines = []
    for loc, msg in found:
        line = _line_of(tree, loc)
        where = f"{p}:{line}" if line else str(p)
        lines.append(f"{where}: {_loc_str(loc)}: {msg}")
    return "\n".join(lines)
