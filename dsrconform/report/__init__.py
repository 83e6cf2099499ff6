"""Conformance results and what is made of them: the one typed results model
(:mod:`dsrconform.report.model`) that the pytest plugin writes and ``dsrconform run``, ``check``,
``report`` and ``gate`` read; the HTML report, JUnit XML and allure results; the gate.

Only :mod:`~dsrconform.report.model` is imported by light modules (the CLI, the plugin's
import): the renderers load Jinja2 and matplotlib, when a report is made.
"""
