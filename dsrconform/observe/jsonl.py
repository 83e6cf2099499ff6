"""JSON-lines files of pydantic records: one way to write them, one way to read them back.

``write_jsonl(path, records)`` writes one compact JSON object per line (``None`` fields left out,
so files stay small and defaults come back on reading); ``read_jsonl(path, adapter)`` validates
each line against a (usually discriminated-union) ``TypeAdapter`` and raises
:class:`~dsrconform.errors.ConfigError` naming the file, the line and the field of the first bad
record. Blank lines are skipped.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from dsrconform.errors import ConfigError

T = TypeVar("T")


def write_jsonl(path: str | Path, records: Iterable[BaseModel]) -> int:
    """Write ``records`` to ``path`` (replacing it), one JSON object per line; return the count."""
    n = 0
    with Path(path).open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(rec.model_dump_json(exclude_none=True))
            f.write("\n")
            n += 1
    return n


def read_jsonl(path: str | Path, adapter: TypeAdapter[T], *, what: str, kinds_in: str) -> list[T]:
    """Every record of ``path``, validated by ``adapter``; a bad line raises ConfigError.

    ``what`` names the records in messages ("history record"); ``kinds_in`` names the module
    that defines the accepted kinds, for the fix.
    """
    p = Path(path)
    try:
        f = p.open(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read {what}s: {e.strerror}") from None
    # The cyclic GC rescans every record allocated so far as the list grows, which makes loading
    # a million tap records 3-4 times slower; records form no cycles, so pause it meanwhile.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with f:
            return _read(p, f, adapter, what, kinds_in)
    finally:
        if was_enabled:
            gc.enable()


def _read(p: Path, f: Iterable[str], adapter: TypeAdapter[T], what: str, kinds_in: str) -> list[T]:
    out: list[T] = []
    for lineno, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            out.append(adapter.validate_json(line))
        except ValidationError as e:
            err = e.errors()[0]
            loc = _loc(tuple(err["loc"]))
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise ConfigError(
                f"{p}:{lineno}: {what} {loc}: {msg}; fix: the line must be one JSON object "
                f"of a kind defined in {kinds_in}"
            ) from None
    return out


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
