"""Markers shared by the framework's own tests.

``requires_root`` skips a test that needs root (namespaces, XDP/tc attach, BPF loads) with a
reason that says how to run it::

    from tests.markers import requires_root

    @requires_root
    def test_attach(): ...
"""

from __future__ import annotations

import os

import pytest

ROOT_REASON = "needs root (CAP_BPF/CAP_NET_ADMIN): run as root, e.g. `sudo make test`"

requires_root = pytest.mark.skipif(os.geteuid() != 0, reason=ROOT_REASON)
