"""Check a big run on every core: the checkers are pure, so they split across processes.

:func:`check_parallel` gives what :func:`dsrconform.invariants.check_all` gives (the same
verdicts, in catalogue order) but, when the observations are large and the machine has more
than one CPU, runs part of the requirements in a forked child: the child shares the loaded
observations copy-on-write (no serialisation of a million records), checks its part and sends
the verdicts back as JSON through a pipe; the parent checks the rest meanwhile.

Requirements that share derived indexes stay in one process (RW-1 with RW-4, AF-1 with AF-2:
:meth:`Observations.derived`); the split is by family, RW in one process and the rest in the
other, which balances the RW/DP/AF checkers of a steady-state run within about 10 %.

A child that dies or sends garbage turns its requirements into UNKNOWN verdicts that say so,
never PASS. Small runs (under :data:`PARALLEL_MIN_RECORDS` tap records and history events) and
one-CPU machines check in-process: a fork costs more than it saves there.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from dsrconform import spec
from dsrconform.invariants import Observations, Verdict, check_all
from dsrconform.invariants.verdict import VERDICT_LIST, unknown

__all__ = ["PARALLEL_MIN_RECORDS", "check_parallel", "split"]

PARALLEL_MIN_RECORDS = 200_000


def _size(obs: Observations) -> int:
    taps = len(obs.taps) if obs.taps is not None else 0
    events = sum(1 + len(fh.events) for fh in obs.history.flows.values()) if obs.history else 0
    return taps + events


def split(ids: list[str]) -> tuple[list[str], list[str]]:
    """(the parent's part, the child's part): RW requirements, and the others."""
    rw = [i for i in ids if spec.get(i).family == "RW"]
    rest = [i for i in ids if spec.get(i).family != "RW"]
    return (rw, rest) if rw and rest else (ids, [])


def check_parallel(
    observations: Observations,
    *,
    ids: Iterable[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    workers: int | None = None,
) -> list[Verdict]:
    """:func:`check_all`, on two processes when it pays (``workers``: None decides, 1 never)."""
    wanted = [r.id for r in spec.REQUIREMENTS] if ids is None else list(ids)
    for req_id in wanted:
        spec.get(req_id)
    order = {r.id: n for n, r in enumerate(spec.REQUIREMENTS)}
    wanted.sort(key=order.__getitem__)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if workers is None:
        workers = 2 if cpus > 1 and _size(observations) >= PARALLEL_MIN_RECORDS else 1
    mine, theirs = split(wanted)
    if workers < 2 or not theirs or not hasattr(os, "fork"):
        return check_all(observations, ids=wanted, params=params)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: check its part, send it, and never return into the caller
        status = 1
        try:
            os.close(rfd)
            gc.disable()  # a collection would write to (and so copy) every page of the heap
            data = VERDICT_LIST.dump_json(check_all(observations, ids=theirs, params=params))
            view = memoryview(data)
            while view:
                view = view[os.write(wfd, view) :]
            status = 0
        finally:
            os._exit(status)
    os.close(wfd)
    try:
        here = check_all(observations, ids=mine, params=params)
        chunks = []
        while chunk := os.read(rfd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(rfd)
        _, wait_status = os.waitpid(pid, 0)
    there = _child_verdicts(b"".join(chunks), wait_status, theirs)
    by_id = {v.requirement: v for v in here + there}
    return [by_id[i] for i in wanted]


def _child_verdicts(data: bytes, wait_status: int, ids: list[str]) -> list[Verdict]:
    """The child's verdicts, or UNKNOWN for each of ``ids`` saying why there are none."""
    problem = None
    if os.waitstatus_to_exitcode(wait_status) != 0:
        problem = f"the checking process exited with {os.waitstatus_to_exitcode(wait_status)}"
    else:
        try:
            verdicts = VERDICT_LIST.validate_json(data)
        except ValidationError as e:
            problem = f"the checking process sent unreadable verdicts ({e.error_count()} errors)"
        else:
            if sorted(v.requirement for v in verdicts) == sorted(ids):
                return verdicts
            problem = "the checking process sent verdicts for other requirements"
    return [unknown(i, [f"{problem}; this says nothing about the SUT"]) for i in ids]
