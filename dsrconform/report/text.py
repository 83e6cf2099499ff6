"""The HTML report's text: hostile strings made printable, anchors made id-safe, values shown.

The contract:

- **Hostile text is shown, never run.** Evidence carries strings from crafted packets. Every
  value the report's template prints passes through :func:`printable` first (the template is
  rendered with autoescape on): C0/C1 control characters (but tab, newline, carriage return),
  lone surrogates (bytes that were not UTF-8, decoded with ``surrogateescape``) and
  non-characters are shown as ``\\xNN``/``\\uNNNN`` escapes. :func:`printable` never fails on a
  string's content.
- **Anchors never carry data.** :func:`slug` maps any text to ``[A-Za-z0-9_.-]+``; the page's
  ids are made of it and of indices, its CSS classes come from fixed tables.
- The formatters (:func:`human_size`, :func:`num`, :func:`duration`, :func:`json_text`) are
  pure and total: any input of their type gives text.

Importing this module is light (the standard library's ``re`` and ``json`` only): the CLI uses
:func:`human_size`.
"""

from __future__ import annotations

import json
import math
import re

__all__ = ["duration", "human_size", "json_text", "num", "printable", "slug"]

_UNPRINTABLE = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # C0 but tab, newline, CR; DEL; C1
    r"\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]"  # lone surrogates, non-characters
)


def _escape_char(m: re.Match[str]) -> str:
    c = ord(m.group())
    if 0xDC80 <= c <= 0xDCFF:  # surrogateescape: the byte that was not UTF-8
        return f"\\x{c - 0xDC00:02x}"
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def printable(value: object) -> str:
    """``value`` as text safe to put in HTML once escaped: control characters (but tab, newline,
    carriage return), lone surrogates and non-characters as ``\\xNN``/``\\uNNNN`` escapes (a
    surrogateescape'd byte as the byte it was)."""
    text = value if isinstance(value, str) else str(value)
    return _UNPRINTABLE.sub(_escape_char, text)


_SLUG = re.compile(r"[^A-Za-z0-9_.-]")


def slug(text: str) -> str:
    """An id-safe form of a requirement ID (``RW-1`` stays ``RW-1``)."""
    return _SLUG.sub("_", text) or "_"


def num(v: object) -> str:
    """A measured or threshold value as text."""
    if v is None:
        return "\u2014"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return printable(v)


def human_size(n: int) -> str:
    """Bytes as ``512 B``, ``1.5 KiB``, ``2.0 MiB``."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def duration(seconds: float | None) -> str:
    """Seconds as ``12.3 s``, ``4 min 05 s``, ``1 h 02 min 03 s`` (None: a dash)."""
    if seconds is None:
        return "\u2014"
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s"


def json_text(v: object) -> str:
    """A feature's value as text: a string as it is, anything else as JSON (repr if not JSON)."""
    if isinstance(v, str):
        return v
    try:
        return json.dumps(v, sort_keys=True, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(v)
