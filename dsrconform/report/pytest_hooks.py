"""The pytest hooks of the report formats: JUnit XML that carries the verdicts (``--junitxml``)
and allure results (``--alluredir``). Registered by :mod:`dsrconform.pytest_plugin` on every
pytest run; each does nothing unless its format was asked for."""

from __future__ import annotations

import pytest


class ReportHooks:
    """The JUnit and allure hooks (they land in the next commits)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
