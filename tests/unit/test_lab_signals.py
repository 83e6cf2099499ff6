"""The lab's SIGTERM handler: KeyboardInterrupt in the process that installed it, a plain exit in
a child forked meanwhile (which must never run the parent's teardown)."""

from __future__ import annotations

import os
import signal

import pytest

from dsrconform.lab.lab import _install_signal_handlers, _restore_signal_handlers


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
