"""Lab.restart_node's order without a lab (no privileges: a recording stand-in for the backend,
the environment and the deployment): a restart is a kill and a start, the target announces
before the lab starts BIRD, and the lab starts its own part even when the target's restart
fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dsrconform.errors import ConfigError, LabError
from dsrconform.lab.environment import BirdSpeaker
from dsrconform.lab.lab import Lab
from dsrconform.topofile import load_topology

BASIC = Path(__file__).resolve().parents[2] / "labs" / "basic.yaml"


class Recorder:
    """Every call on any attribute, in order, as ``"<who>.<method> <args>"``."""

    def __init__(self, who: str, calls: list[str], fail: str = "") -> None:
        self.who, self.calls, self.fail = who, calls, fail

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(f"{self.who}.{name} {' '.join(map(str, args))}".strip())
            if name == self.fail:
                raise LabError(f"{self.who}.{name} failed")
            return []

        return call


def lab(calls: list[str], fail: str = "") -> Lab:
    out = Lab(load_topology(BASIC))
    out.backend = Recorder("backend", calls)  # type: ignore[assignment]
    out.environment = Recorder("env", calls)  # type: ignore[assignment]
    out.deployment = Recorder("target", calls, fail)  # type: ignore[assignment]
    return out


def test_restarting_a_killed_mux_announces_before_the_lab_starts_bird() -> None:
    calls: list[str] = []
    mux = lab(calls)
    mux.kill_node("mux1")
    calls.clear()
    mux.restart_node("mux1")
    order = [c for c in calls if not c.startswith("backend.set_link")]
    assert order == ["backend.revive mux1", "target.restart mux1", "env.restart mux1"]
    assert [e.action for e in mux.events][-1] == "restart"


def test_restarting_a_node_that_was_not_killed_kills_it_first() -> None:
    calls: list[str] = []
    mux = lab(calls)
    mux.restart_node("mux1")
    assert calls.index("backend.kill mux1") < calls.index("env.killed mux1")
    assert calls.index("env.killed mux1") < calls.index("target.restart mux1")
    assert [e.action for e in mux.events] == ["kill", "restart"]


def test_the_lab_starts_its_part_even_when_the_targets_restart_fails() -> None:
    calls: list[str] = []
    mux = lab(calls, fail="restart")
    with pytest.raises(LabError, match=r"target\.restart failed"):
        mux.restart_node("mux1")
    assert calls[-1] == "env.restart mux1" and mux.events[-1].action == "restart"


def test_a_speaker_refuses_a_vip_its_mux_does_not_front(tmp_path: Path) -> None:
    speaker = BirdSpeaker(
        node="mux1",
        conf=tmp_path / "bird.conf",
        sock=tmp_path / "bird.ctl",
        header="@ROUTES@",
        vips_served=frozenset({"198.19.0.10"}),
    )
    speaker.announce("198.19.0.10")  # not running: the file alone changes
    assert (tmp_path / "bird.conf").read_text() == "  route 198.19.0.10/32 blackhole;\n"
    with pytest.raises(ConfigError, match=r"not a VIP this MUX fronts; fix: one of 198\.19\.0\.10"):
        speaker.announce("198.19.0.99")
    assert speaker.announced() == ["198.19.0.10"]
    speaker.withdraw("198.19.0.10")
    assert (tmp_path / "bird.conf").read_text() == "" and not list(tmp_path.glob("*.tmp"))
