"""Wiring for the framework's own tests.

``pytester`` lets tests/unit/test_plugin.py run pytest in a temporary directory against the
dsrconform plugin. The root-only skip marker lives in :mod:`tests.markers`.
"""

pytest_plugins = ["pytester"]
