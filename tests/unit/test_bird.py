"""Parsing BIRD's protocol table (lab status, BGP readiness): no privileges."""

from __future__ import annotations


def test_bird_protocol_rows_parse() -> None:
    from dsrconform.lab.environment import parse_bird_protocols

    text = (
        "BIRD 2.0.12 ready.\nName       Proto      Table      State  Since         Info\n"
        "device1    Device     ---        up     2026-11-26 07:35:17\n"
        "mux1       BGP        ---        up     2026-11-26 07:35:17  Established\n"
        "mux2       BGP        ---        start  2026-11-26 07:33:54  Idle          BGP Error: "
        "Hold timer expired\n"
    )
    rows = parse_bird_protocols(text)
    assert set(rows) == {"mux1", "mux2"}
    assert rows["mux1"] == {"state": "up", "since": "2026-11-26 07:35:17", "info": "Established"}
    assert rows["mux2"]["info"].startswith("Idle") and "Hold timer" in rows["mux2"]["info"]
