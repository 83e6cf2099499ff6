"""A run directory: the observations of a run, saved as files and loaded back for checking.

Layout (every part optional except ``lab.json``)::

    lab.json          the lab's facts (roles, addresses, services): LabFacts
    history.jsonl     connection histories (dsrconform.observe.history)
    taps.jsonl        tap records (dsrconform.observe.taps)
    counters.jsonl    SUT counter snapshots
    faults.jsonl      the fault timeline: one FaultWindow per line
    verdicts.json     the verdicts the run's checks gave (written by the commands)
    requirements.json what a scenario run of the suites decides: the scenario's name, the
                      requirement IDs the suites checked on its observations and the parameters
                      they gave (written by the pytest plugin as its tests check them)

``dsrconform check DIR`` re-runs the checkers over a directory, so a run can be judged again
with other parameters, or by a newer checker, without the lab. ``dsrconform run`` leaves a
*results directory* (summary.json, verdicts.jsonl) holding one run directory per scenario, or
per platform and scenario (``<backend>-<mode>/<scenario>``) when a run has several:
:func:`scenario_dirs` finds them, each judged with its own requirements.json.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from dsrconform.errors import ConfigError
from dsrconform.invariants.verdict import VERDICT_LIST, Verdict
from dsrconform.observe.history import History, load_history, write_history
from dsrconform.observe.jsonl import read_jsonl, write_jsonl
from dsrconform.observe.observations import FaultWindow, LabFacts, Observations
from dsrconform.observe.taps import TapSet, load_counters_jsonl, load_taps, write_taps

__all__ = [
    "Decided",
    "load_observations",
    "load_requirements",
    "record_requirements",
    "save_observations",
    "save_verdicts",
    "scenario_dirs",
]

LAB, HISTORY, TAPS, COUNTERS, FAULTS, VERDICTS = (
    "lab.json", "history.jsonl", "taps.jsonl", "counters.jsonl", "faults.jsonl", "verdicts.json",
)  # fmt: skip
REQUIREMENTS = "requirements.json"
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
    for name in (LAB, HISTORY, TAPS, COUNTERS, FAULTS, VERDICTS, REQUIREMENTS):
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
            f"{d}: no {LAB} (the lab's facts), nor a scenario run directory beneath it; fix: a "
            "run directory written by `dsrconform steady --out DIR` (or save_observations), or "
            "the results directory of `dsrconform run`"
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
        kinds = "dsrconform.observe.observations"
        faults = tuple(read_jsonl(d / FAULTS, _FAULT, what="fault window", kinds_in=kinds))
    return Observations(lab=lab, history=history, taps=taps, counters=counters, faults=faults)


def save_verdicts(verdicts: list[Verdict], directory: str | Path) -> Path:
    path = Path(directory) / VERDICTS
    path.write_bytes(VERDICT_LIST.dump_json(verdicts, indent=1) + b"\n")
    return path


# --- what a scenario run of the suites decides, and a run's results directory --------------------


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario: str
    requirements: list[str]
    params: dict[str, dict[str, float]] = {}


@dataclass(frozen=True)
class Decided:
    """A run directory's requirements.json: the requirements its scenario decides."""

    scenario: str
    requirements: tuple[str, ...]
    """In catalogue order."""
    params: dict[str, dict[str, float]]
    """The parameters the suites gave a requirement's checker, when not its defaults."""


def record_requirements(
    directory: str | Path,
    scenario: str,
    ids: Iterable[str],
    params: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """Add ``ids`` (and their ``params``; a later value wins) to what ``directory`` records its
    scenario decides. :func:`save_observations` removes the record: a new run starts afresh."""
    from dsrconform.spec import REQUIREMENTS as CATALOGUE

    path = Path(directory) / REQUIREMENTS
    old = load_requirements(directory)
    wanted = set(ids) | set(old.requirements if old else ())
    order = {r.id: n for n, r in enumerate(CATALOGUE)}
    merged = dict(old.params) if old else {}
    for req, ps in (params or {}).items():
        if req in wanted:
            merged[req] = {**merged.get(req, {}), **{k: float(v) for k, v in ps.items()}}
    record = _Record(
        scenario=scenario,
        requirements=sorted(wanted, key=lambda r: (order.get(r, len(order)), r)),
        params=merged,
    )
    tmp = path.with_name(REQUIREMENTS + ".tmp")
    tmp.write_text(record.model_dump_json(indent=1) + "\n")
    tmp.replace(path)
    return path


def load_requirements(directory: str | Path) -> Decided | None:
    """The requirements.json of ``directory`` (None without one); ConfigError for a bad one."""
    path = Path(directory) / REQUIREMENTS
    if not path.is_file():
        return None
    try:
        rec = _Record.model_validate_json(path.read_text())
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {where}: {err['msg']}") from None
    return Decided(rec.scenario, tuple(rec.requirements), rec.params)


def scenario_dirs(results: str | Path) -> list[Path]:
    """The run directories (those holding a lab.json) one or two levels below ``results`` (a
    scenario, or a platform's scenario), sorted; empty when ``results`` holds none."""
    d = Path(results)
    found = [p.parent for p in (*d.glob(f"*/{LAB}"), *d.glob(f"*/*/{LAB}")) if p.is_file()]
    return sorted(found)


def is_results_dir(directory: str | Path) -> bool:
    """A directory of run directories (a `dsrconform run` results directory), not one itself."""
    d = Path(directory)
    return d.is_dir() and not (d / LAB).exists() and bool(scenario_dirs(d))
