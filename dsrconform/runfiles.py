"""A run directory: the observations of a run, saved as files and loaded back for checking.

Layout (every part optional except ``lab.json``)::

    lab.json          the lab's facts (roles, addresses, services): LabFacts
    history.jsonl     connection histories (dsrconform.observe.history)
    taps.jsonl        tap records (dsrconform.observe.taps)
    counters.jsonl    SUT counter snapshots
    faults.jsonl      the fault timeline: one FaultWindow per line
    verdicts.json     the verdicts the run's checks gave (written by the commands)

``dsrconform check DIR`` re-runs the checkers over a directory, so a run can be judged again
with other parameters, or by a newer checker, without the lab.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from dsrconform.errors import ConfigError
from dsrconform.invariants.observations import FaultWindow, LabFacts, Observations
from dsrconform.invariants.verdict import VERDICT_LIST, Verdict
from dsrconform.observe.history import History, load_history, write_history
from dsrconform.observe.jsonl import read_jsonl, write_jsonl
from dsrconform.observe.taps import TapSet, load_counters_jsonl, load_taps, write_taps

__all__ = ["load_observations", "save_observations", "save_verdicts"]

LAB, HISTORY, TAPS, COUNTERS, FAULTS, VERDICTS = (
    "lab.json", "history.jsonl", "taps.jsonl", "counters.jsonl", "faults.jsonl", "verdicts.json",
)  # fmt: skip
_FAULT = TypeAdapter(FaultWindow)


def save_observations(obs: Observations, directory: str | Path) -> dict[str, Path]:
    """Write every part ``obs`` has into ``directory`` (created); return the files written."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    if obs.lab is not None:
        (d / LAB).write_text(obs.lab.model_dump_json(indent=1) + "\n")
        out["lab"] = d / LAB
    if obs.history is not None:
        write_history(d / HISTORY, obs.history)
        out["history"] = d / HISTORY
    if obs.taps is not None:
        write_taps(d / TAPS, obs.taps)
        out["taps"] = d / TAPS
    if obs.counters:
        write_jsonl(d / COUNTERS, obs.counters)
        out["counters"] = d / COUNTERS
    if obs.faults:
        write_jsonl(d / FAULTS, obs.faults)
        out["faults"] = d / FAULTS
    # A part this run does not have must not be left over from an earlier run in the same
    # directory (a later `check` would read it as this run's).
    for name in (LAB, HISTORY, TAPS, COUNTERS, FAULTS, VERDICTS):
        if d / name not in out.values():
            (d / name).unlink(missing_ok=True)
    return out


def load_observations(directory: str | Path) -> Observations:
    """The observations saved in ``directory``; ConfigError naming a missing or bad file."""
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"{d}: no such run directory; fix: give the --out of a run")
    lab_file = d / LAB
    if not lab_file.is_file():
        raise ConfigError(
            f"{d}: no {LAB} (the lab's facts); fix: a run directory written by `dsrconform "
            "steady --out DIR` (or save_observations)"
        )
    try:
        lab = LabFacts.model_validate_json(lab_file.read_text())
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise ConfigError(f"{lab_file}: {where}: {err['msg']}") from None
    history: History | None = load_history(d / HISTORY) if (d / HISTORY).is_file() else None
    taps: TapSet | None = load_taps(d / TAPS) if (d / TAPS).is_file() else None
    counters = tuple(load_counters_jsonl(d / COUNTERS)) if (d / COUNTERS).is_file() else ()
    faults: tuple[FaultWindow, ...] = ()
    if (d / FAULTS).is_file():
        kinds = "dsrconform.invariants.observations"
        faults = tuple(read_jsonl(d / FAULTS, _FAULT, what="fault window", kinds_in=kinds))
    return Observations(lab=lab, history=history, taps=taps, counters=counters, faults=faults)


def save_verdicts(verdicts: list[Verdict], directory: str | Path) -> Path:
    path = Path(directory) / VERDICTS
    path.write_bytes(VERDICT_LIST.dump_json(verdicts, indent=1) + b"\n")
    return path
