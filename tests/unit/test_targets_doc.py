"""docs/targets.md's side-by-side table: one row per requirement of the catalogue, a status in
every target's column, or two (``FAIL or PASS``) where the stack's own races make the verdict
vary between runs (tests/integration/test_katran_suites.py holds Katran to its column)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsrconform import spec

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "targets.md"
TABLE_HEADING = "## Conformance side by side"
STATUSES = ("PASS", "FAIL", "UNKNOWN", "NOT APPLICABLE")
COLUMNS = ("reference", "minimal template", "Katran")


def documented(column: str, doc: Path = DOC) -> dict[str, str]:
    """Requirement ID -> the verdict the side-by-side table of ``doc`` gives in ``column`` (the
    cell's text: a status, or statuses joined by `` or ``, see :func:`allowed`)."""
    text = doc.read_text()
    assert TABLE_HEADING in text, f"{doc} has no {TABLE_HEADING!r} section"
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.split(TABLE_HEADING, 1)[1].splitlines()
        if line.startswith("|")
    ]
    header, body = rows[0], [r for r in rows[2:] if re.fullmatch(r"[A-Z]{2}-\d+", r[0])]
    col = header.index(column)
    return {r[0]: r[col].strip("*") for r in body}


def allowed(cell: str) -> set[str]:
    """The statuses a cell allows: ``PASS``, or ``FAIL or PASS`` for a verdict that varies."""
    return {part.strip() for part in cell.split(" or ")}


@pytest.mark.parametrize("column", COLUMNS)
def test_every_requirement_has_a_status_in_each_column(column: str) -> None:
    got = documented(column)
    assert set(got) == {r.id for r in spec.REQUIREMENTS}
    bad = {k: v for k, v in got.items() if not allowed(v) <= set(STATUSES)}
    assert not bad, f"cells of column {column!r} that are not a status: {bad}"


def test_documented_rejects_a_cell_that_is_no_status(tmp_path: Path) -> None:
    doc = tmp_path / "t.md"
    doc.write_text(f"{TABLE_HEADING}\n\n| requirement | Katran |\n|---|---|\n| RW-1 | maybe |\n")
    assert documented("Katran", doc) == {"RW-1": "maybe"}  # the caller's check catches it
    assert not allowed("maybe") <= set(STATUSES)
    assert allowed("FAIL or PASS") == {"FAIL", "PASS"}
