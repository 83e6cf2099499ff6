"""Waiting on a condition with a deadline, for the framework's own integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(cond: Callable[[], bool], seconds: float, what: str) -> float:
    """Poll ``cond`` until it holds (return the seconds it took); fail the test naming ``what``
    if it does not within ``seconds``."""
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < seconds, f"{what} not within {seconds} s"
        time.sleep(0.05)  # polling a condition, bounded by the deadline above
    return time.monotonic() - start
