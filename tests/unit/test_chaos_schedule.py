"""The chaos timeline executor (dsrconform.chaos.schedule): order, overlap, and rollbacks that
always run, driven by synthetic faults against no lab (no privileges)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dsrconform.chaos.fault import Fault, Say, Step
from dsrconform.chaos.schedule import Journal, Timed, execute
from dsrconform.observe.observations import FaultWindow
from dsrconform.topology import Topology

NO_LAB: Any = None  # synthetic faults never touch the lab


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def add(self, name: str, what: str) -> None:
        with self.lock:
            self.calls.append((name, what))

    def of(self, what: str) -> list[str]:
        return [n for n, w in self.calls if w == what]


class Fake:
    """A fault keeping the contract, recording its calls; ``fail`` makes one phase raise."""

    kind: ClassVar[str] = "fake"

    def __init__(
        self,
        rec: Recorder,
        name: str,
        *,
        lasting: bool = True,
        fail: str = "",
        gate: threading.Event | None = None,
    ) -> None:
        self.rec, self.name, self.fail, self.gate = rec, name, fail, gate
        self.lasting = lasting  # type: ignore[misc]  # per instance in the fakes
        self.applied = False

    def describe(self) -> str:
        return f"fake({self.name})"

    def expected_seconds(self) -> float:
        return 0.0

    def plan(self, topo: Topology) -> list[Step]:
        return [Step("invoke", "fake", self.name)]

    def _step(self, what: str) -> None:
        self.rec.add(self.name, what)
        if self.fail == what:
            raise RuntimeError(f"{self.name} {what} failed")

    def setup(self, lab: Any, say: Say) -> None:
        self._step("setup")

    def invoke(self, lab: Any, say: Say, stop: threading.Event) -> None:
        self.applied = True
        if self.gate is not None:
            self.gate.wait(5)
        self._step("invoke")

    def revert(self, lab: Any, say: Say) -> None:
        self._step("revert")
        self.applied = False

    def windows(self) -> list[FaultWindow]:
        return []


def run(actions: list[Timed]) -> tuple[Any, Journal]:
    journal = Journal()
    return execute(NO_LAB, actions, journal, lambda _m: None), journal


def test_fakes_keep_the_protocol() -> None:
    assert isinstance(Fake(Recorder(), "a"), Fault)


def test_actions_start_in_time_order_and_after_waits_for_the_end() -> None:
    rec = Recorder()
    a, b, c = Fake(rec, "a"), Fake(rec, "b"), Fake(rec, "c", lasting=False)
    out, journal = run(
        [
            Timed("b", b, at=0.2, duration=0.05),
            Timed("a", a, at=0.0, duration=0.05),
            Timed("c", c, after="b", delay=0.01),
        ]
    )
    assert out.ok, out.errors
    assert rec.of("invoke") == ["a", "b", "c"]
    # b's revert (its duration's end) comes before c starts, which waits for it
    assert rec.calls.index(("b", "revert")) < rec.calls.index(("c", "invoke"))
    assert out.reverted[:2] == ["a", "b"]
    assert [e["action"] for e in journal.events("invoke") if e["outcome"] == "started"] == [
        "a",
        "b",
        "c",
    ]


def test_lasting_faults_without_duration_are_reverted_last_invoked_first() -> None:
    rec = Recorder()
    faults = [Fake(rec, n) for n in "xyz"]
    out, _ = run([Timed(f.name, f, at=0.01 * i) for i, f in enumerate(faults)])
    assert out.ok
    assert rec.of("revert") == ["z", "y", "x"]
    assert not any(f.applied for f in faults)


def test_overlapping_actions_run_at_once() -> None:
    rec = Recorder()
    gate = threading.Event()
    slow = Fake(rec, "slow", gate=gate, lasting=False)

    class Opener(Fake):
        def invoke(self, lab: Any, say: Say, stop: threading.Event) -> None:
            super().invoke(lab, say, stop)
            gate.set()  # only possible while slow's invoke is still waiting

    fast = Opener(rec, "fast", lasting=False)
    out, _ = run([Timed("slow", slow, at=0.0), Timed("fast", fast, at=0.05)])
    assert out.ok
    assert rec.of("invoke") == ["fast", "slow"]


def test_a_failing_step_stops_the_method_and_every_applied_fault_is_reverted() -> None:
    rec = Recorder()
    a, bad, later = Fake(rec, "a"), Fake(rec, "bad", fail="invoke"), Fake(rec, "later")
    out, journal = run(
        [Timed("a", a, at=0.0), Timed("bad", bad, at=0.05), Timed("later", later, at=30.0)]
    )
    assert not out.ok
    assert "bad: invoke failed" in out.errors[0]
    assert "later" not in rec.of("invoke")  # the abort cut its wait short
    # bad is reverted too (its invoke may have changed things), then a; later was only set up
    # (a setup may change the lab): applied before any invoke, so reverted last.
    assert rec.of("revert") == ["bad", "a", "later"]
    assert journal.events("revert")[-1]["outcome"] == "done"


def test_a_failing_revert_does_not_keep_the_others_from_running() -> None:
    rec = Recorder()
    a, b, c = Fake(rec, "a"), Fake(rec, "b", fail="revert"), Fake(rec, "c")
    out, _ = run([Timed(f.name, f, at=0.01 * i) for i, f in enumerate((a, b, c))])
    assert rec.of("revert") == ["c", "b", "a"]
    assert len(out.errors) == 1 and "b: revert failed" in out.errors[0]


def test_a_failing_setup_reverts_what_was_set_up_and_invokes_nothing() -> None:
    rec = Recorder()
    a, b, c = Fake(rec, "a"), Fake(rec, "b", fail="setup"), Fake(rec, "c")
    out, _ = run([Timed("a", a), Timed("b", b), Timed("c", c)])
    assert not out.ok
    assert rec.of("invoke") == []
    assert rec.of("revert") == ["b", "a"]  # c was never set up


def test_an_interrupt_still_runs_every_rollback_then_is_raised_again() -> None:
    rec = Recorder()

    a, b = Fake(rec, "a"), Fake(rec, "b")
    journal = Journal()
    calls = {"n": 0}

    def started() -> None:
        calls["n"] += 1
        raise KeyboardInterrupt("signal 15")  # as the lab's SIGTERM handler does

    with pytest.raises(KeyboardInterrupt):
        execute(NO_LAB, [Timed("a", a), Timed("b", b)], journal, lambda _m: None, started)
    assert calls["n"] == 1
    assert rec.of("revert") == ["b", "a"]
    assert journal.events("interrupted")
    rollback = [e for e in journal.entries if e["phase"] == "rollback"]
    assert rollback[-1]["event"] == "done" and rollback[-1]["outcome"] == "error"


def test_ctrl_c_while_a_fault_is_applied_reverts_it_and_skips_the_rest() -> None:
    import _thread

    rec = Recorder()

    class CtrlC(Fake):
        def invoke(self, lab: Any, say: Say, stop: threading.Event) -> None:
            super().invoke(lab, say, stop)
            _thread.interrupt_main()  # SIGINT's effect, delivered to the main thread

    a, hit, later = Fake(rec, "a"), CtrlC(rec, "hit"), Fake(rec, "later")
    journal = Journal()
    with pytest.raises(KeyboardInterrupt):
        execute(
            NO_LAB,
            [Timed("a", a), Timed("hit", hit, at=0.05), Timed("later", later, at=30.0)],
            journal,
            lambda _m: None,
        )
    assert rec.of("invoke") == ["a", "hit"]
    assert rec.of("revert") == ["hit", "a", "later"]
    assert not (a.applied or hit.applied)


def test_signals_during_the_rollbacks_wait_until_they_are_done() -> None:
    import os
    import signal

    from dsrconform.chaos.schedule import signals_held

    done = []
    with pytest.raises(KeyboardInterrupt, match="held during the rollbacks"), signals_held():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        done.append("every revert")  # reached: neither signal cut the block short
    assert done == ["every revert"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_backend_change_is_named_by_what_it_did_to_the_servers() -> None:
    from dsrconform.chaos.library import change_kind

    def sets(active: str, draining: str = "") -> dict[str, list[str]]:
        return {"active": list(active), "draining": list(draining)}

    assert change_kind(sets("abc"), sets("ab")) == "backend-remove"
    assert change_kind(sets("abc"), sets("ab", "c")) == "backend-drain"
    assert change_kind(sets("ab", "c"), sets("abc")) == "backend-add"
    assert change_kind(sets("ab"), sets("abc")) == "backend-add"
    assert change_kind(sets("abc", ""), sets("ab", "")) != "backend-add"  # a revert of an add


def test_live_progress_shows_the_faults_in_effect_and_the_connections_alive() -> None:
    import time as _time
    from types import SimpleNamespace

    from dsrconform.chaos.schedule import Method
    from dsrconform.chaos.traffic import Live
    from dsrconform.topofile import load_topology

    topo = load_topology(Path(__file__).resolve().parents[2] / "labs" / "basic.yaml")
    now_ns = int(_time.monotonic() * 1e9)

    def flow(sport: int, *, last_ns: int = now_ns, fin: bool = False) -> SimpleNamespace:
        return SimpleNamespace(
            direction="egress",
            proto=6,
            dst="198.19.0.10",
            dport=80,
            sport=sport,
            fin=fin,
            rst=False,
            last_ns=last_ns,
        )

    flows = [flow(1), flow(2), flow(3, fin=True), flow(4, last_ns=now_ns - 10**10)]
    tap = SimpleNamespace(flows=lambda: flows)
    taps: Any = SimpleNamespace(lab=SimpleNamespace(topology=topo), tap=lambda *_: tap)
    live = Live()
    assert live.alive() is None and live.faults() == []
    live.watch(taps)
    assert live.alive() == 2  # one finished, one silent for 10 s
    rec = Recorder()
    method = Method(NO_LAB, [Timed("a", Fake(rec, "a"))], Journal(), lambda _m: None)
    live.method = method
    with method:
        method.run()
        assert live.faults() == []  # reverted in the rollbacks
    live.done()
    assert live.alive() is None  # the method ended: the taps are not read any more


def test_a_method_lists_the_faults_in_effect_while_they_are() -> None:
    rec = Recorder()
    seen: list[list[str]] = []
    method: Any = None

    class Peek(Fake):
        def invoke(self, lab: Any, say: Say, stop: threading.Event) -> None:
            super().invoke(lab, say, stop)
            seen.append(method.active())

    from dsrconform.chaos.schedule import Method

    a, b = Fake(rec, "a"), Peek(rec, "b")
    method = Method(NO_LAB, [Timed("a", a), Timed("b", b, at=0.05)], Journal(), lambda _m: None)
    with method:
        method.run()
    assert seen == [["fake(a)", "fake(b)"]]
    assert method.active() == []


def test_revert_after_waits_for_the_other_action_to_end() -> None:
    rec = Recorder()
    held, kill = Fake(rec, "held"), Fake(rec, "kill")
    out, _ = run(
        [
            Timed("held", held, at=0.0, revert_after="kill", revert_delay=0.05),
            Timed("kill", kill, at=0.02, duration=0.05),
        ]
    )
    assert out.ok, out.errors
    assert rec.of("revert") == ["kill", "held"]  # held back until kill had ended, in the method
    assert out.reverted == ["kill", "held"]
