"""The pytest hooks of the report formats: JUnit XML that carries the verdicts (``--junitxml``)
and allure results (``--alluredir``). Registered by :mod:`dsrconform.pytest_plugin` on every
pytest run; each does nothing unless its format was asked for.

- JUnit: after pytest's junitxml plugin wrote ``--junitxml PATH`` (in its
  ``pytest_sessionfinish``; this one is ``trylast``, so it runs after), the controller (never an
  xdist worker, which writes no file) rewrites PATH with
  :func:`~dsrconform.report.junit.rewrite_junit` and the run's results (the plugin's, built
  earlier in the same hook when ``--dsr-results`` was given, else built here). The file is
  replaced atomically. A file that cannot be read or parsed is left as pytest wrote it, and the
  terminal says why.
- allure: with ``--alluredir``, :class:`dsrconform.report.allure.AllureHooks` is registered
  (the only import of allure); without, nothing of it is imported.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from dsrconform.report.model import Results

ALLURE_PLUGIN = "dsrconform-allure"
"""The name :class:`~dsrconform.report.allure.AllureHooks` is registered under."""


def junit_path(config: pytest.Config) -> Path | None:
    """The file pytest's junitxml plugin writes (None: no ``--junitxml``, or an xdist worker)."""
    from dsrconform.pytest_progress import is_worker

    if is_worker(config):
        return None
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # pragma: no cover - a pytest without it
        xml = None
    else:
        xml = config.stash.get(xml_key, None)
    if xml is not None:
        return Path(xml.logfile)
    given = config.getoption("xmlpath", None)
    if not given:
        return None
    return Path(os.path.abspath(os.path.expanduser(os.path.expandvars(given))))


class ReportHooks:
    """A pytest plugin object: the JUnit rewrite, and the allure hooks when asked for."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        if config.getoption("allure_report_dir", None):
            from dsrconform.report.allure import AllureHooks

            config.pluginmanager.register(AllureHooks(config), ALLURE_PLUGIN)

    def _results(self, exitstatus: int) -> Results:
        """The run's results: this session's, when the plugin built them (``--dsr-results``),
        else built here."""
        from dsrconform import pytest_plugin as plugin
        from dsrconform.report.collect import build_results

        built = self.config.stash.get(plugin.RESULTS_KEY, None)
        if built is not None:
            return built
        recorder = self.config.stash[plugin.RUN_KEY]
        return build_results(recorder, plugin.run_info(self.config, exitstatus))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Rewrite the JUnit XML pytest just wrote (see the module docstring)."""
        path = junit_path(self.config)
        if path is None or not path.is_file():
            return
        from dsrconform.errors import ConfigError
        from dsrconform.report.junit import rewrite_junit

        try:
            xml = rewrite_junit(
                path.read_bytes(),
                self._results(int(exitstatus)),
                prefix=self.config.getoption("junitprefix", None),
            )
        except (OSError, ET.ParseError, ConfigError) as e:
            self._say(f"dsrconform: {path} left as pytest wrote it: {e}")
            return
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(xml)
        tmp.replace(path)

    def _say(self, line: str) -> None:
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(line, yellow=True)
