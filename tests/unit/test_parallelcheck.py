"""check_parallel: the same verdicts as check_all, split over a forked child; a child that dies
gives UNKNOWN for its part, never PASS."""

from __future__ import annotations

import os
from typing import Any

import pytest

from dsrconform import parallelcheck
from dsrconform.invariants import Status, check_all
from dsrconform.parallelcheck import check_parallel, split
from tests.unit.observations_builder import SERVER_ADDR, Run

IDS = ["RW-1", "RW-2", "RW-5", "DP-1", "AF-1", "AF-2"]


def a_run() -> Run:
    run = Run()
    run.conn(1, 10.0, end_t=20.0, server="server1", mux="mux1")
    run.conn(2, 11.0, end_t=21.0, server="server2", mux="mux2", src="198.18.1.3")
    run.conn(3, 12.0, end_t=22.0, reply_src=(SERVER_ADDR["server3"], 8080))  # RW-1 FAIL
    return run


def test_split_keeps_families_apart_and_shared_indexes_together() -> None:
    mine, theirs = split(IDS)
    assert (mine, theirs) == (["RW-1", "RW-2", "RW-5"], ["DP-1", "AF-1", "AF-2"])
    assert split(["AF-1", "AF-2"]) == (["AF-1", "AF-2"], [])


def test_two_processes_give_the_verdicts_of_one() -> None:
    one = check_all(a_run().obs(), ids=IDS)
    two = check_parallel(a_run().obs(), ids=list(reversed(IDS)), workers=2)
    assert [v.model_dump() for v in two] == [v.model_dump() for v in one]
    assert two[0].status == Status.FAIL  # RW-1: the server address in a reply


def test_a_child_that_dies_leaves_unknown_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = os.getpid()
    real = parallelcheck.check_all

    def dying(*args: Any, **kw: Any) -> Any:
        if os.getpid() != parent:
            os._exit(3)
        return real(*args, **kw)

    monkeypatch.setattr(parallelcheck, "check_all", dying)
    verdicts = {v.requirement: v for v in check_parallel(a_run().obs(), ids=IDS, workers=2)}
    for req in ("DP-1", "AF-1", "AF-2"):
        assert verdicts[req].status == Status.UNKNOWN
        assert "exited with 3" in verdicts[req].message
    assert verdicts["RW-2"].status == Status.PASS


def test_small_runs_stay_in_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise AssertionError("forked for a small run")

    monkeypatch.setattr(os, "fork", no_fork)
    assert len(check_parallel(a_run().obs(), ids=IDS)) == len(IDS)
