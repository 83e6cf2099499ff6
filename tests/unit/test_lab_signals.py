"""The lab's SIGTERM handler: KeyboardInterrupt in the process that installed it, a plain exit in
a child forked meanwhile (which must never run the parent's teardown); and the death signal of
the daemons a lab spawns (they die with the process that owns the lab)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from dsrconform.lab.lab import _install_signal_handlers, _restore_signal_handlers
from dsrconform.lab.registry import pid_running


def test_sigterm_interrupts_the_owner() -> None:
    previous = _install_signal_handlers()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0)  # give the handler a chance to run (it already has)
    finally:
        _restore_signal_handlers(previous)


def test_a_forked_child_exits_instead_of_unwinding_the_parent() -> None:
    previous = _install_signal_handlers()
    ready_r, ready_w = os.pipe()
    r, w = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # the child: whatever happens, it ends here and never returns to pytest
            try:
                os.write(ready_w, b"x")
                signal.pause()  # until SIGTERM
            except BaseException:
                os.write(w, b"unwound")  # what the old handler did: raise in the child
            finally:
                os._exit(0)
        os.close(w)
        os.close(ready_w)
        assert os.read(ready_r, 1) == b"x"
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        leaked = os.read(r, 100)
    finally:
        _restore_signal_handlers(previous)
        os.close(r)
        os.close(ready_r)
    assert leaked == b"", "the child raised KeyboardInterrupt (would run the parent's cleanup)"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGTERM


OWNER = """
import os, subprocess, sys, threading, time
from dsrconform.lab.netns_backend import _die_with, _spawner

def start():
    return subprocess.Popen(["sleep", "120"], preexec_fn=_die_with(os.getpid()),
                            start_new_session=True)

def from_a_short_lived_thread(how):
    out = []
    t = threading.Thread(target=lambda: out.append(how()))
    t.start()
    t.join()
    return out[0].pid

via_spawner = from_a_short_lived_thread(lambda: _spawner().submit(start).result())
direct = from_a_short_lived_thread(start)
print(via_spawner, direct, flush=True)
time.sleep(120)
"""


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while pid_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)  # polling the process's exit, bounded by the deadline
    return True


def test_a_daemon_dies_with_its_owner_not_with_the_thread_that_asked_for_it() -> None:
    """PR_SET_PDEATHSIG fires when the *thread* that forked the child ends: a daemon forked by
    a short-lived thread (a fault restarting a MUX from a worker) dies with that thread, one
    forked by the spawner thread lives until the owner process dies, SIGKILL included."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        via_spawner, direct = (int(x) for x in owner.stdout.readline().split())
        assert _wait_gone(direct, 5), "a child forked by an ended thread has no PDEATHSIG?"
        time.sleep(0.2)  # the absence of a signal: nothing to poll, only a window to allow
        assert pid_running(via_spawner), "the daemon died with the thread that asked for it"
    finally:
        owner.kill()
        owner.wait()
    assert _wait_gone(via_spawner, 5), "the daemon outlived its SIGKILLed owner"
