"""allure results that carry the requirements and verdicts (``pytest --alluredir DIR``).

allure-pytest writes one ``*-result.json`` per test; :class:`AllureHooks` (registered by
:class:`dsrconform.report.pytest_hooks.ReportHooks` only when ``--alluredir`` is given: this
module imports allure, nothing else of dsrconform does) adds to it, through allure's runtime API
(``allure.dynamic``, ``allure.attach``) while allure holds the test open:

- after the setup phase (also when it failed or skipped), for a test citing requirements
  (``@pytest.mark.requirement``): labels, per requirement family an
  ``epic`` (``RW: Rewrite correctness``, :data:`dsrconform.spec.FAMILIES`), per requirement a
  ``feature`` (its ID), ``severity`` from the strictest level cited (:data:`SEVERITY`: MUST
  critical, SHOULD normal, MAY minor; not when the test has an allure severity marker of its
  own); per requirement a link of type ``requirement`` to its section of SPEC.md
  (``SPEC.md#rw-1``: the catalogue's headings are ``### RW-1``; relative, so
  ``--allure-link-pattern requirement:https://HOST/REPO/blob/main/{}`` makes them absolute);
  parameters ``target``, ``backend``, ``mode`` (the test's platform, else the run's options;
  ``lab-mode``: the lab file's), and ``family`` (its address family) when the run asks for any
  but ipv4 alone (a parameter is part of allure's history id: an IPv4-only run keeps its own),
  ``mutant`` when one runs, and ``seed`` (excluded from allure's history id: a new seed is the
  same test);
- at the end of the call phase (its report being made), for any test: its verdicts as JSON
  (``application/json``, :func:`verdict_rows`), and each evidence file of the test
  (:class:`~dsrconform.report.model.Attachment`: pcap ``application/vnd.tcpdump.pcap``, svg
  ``image/svg+xml``, json, text) that exists under ``--dsr-results``; one that does not exist
  is left out.

Statuses are allure-pytest's: a FAIL (``pytest.fail``) is ``failed``; an UNKNOWN
(``RequirementUnknown``, not an assertion) is ``broken``, allure's status for a test that could
not decide; a skip ``skipped``, and a test NOT APPLICABLE to the target is a skip tagged ``NOT
APPLICABLE`` whose status message holds the reasons. A failure to annotate never fails a test: it is
a warning.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import Any

import allure
import pytest
from allure_commons.types import AttachmentType, LabelType

from dsrconform.invariants.verdict import Verdict
from dsrconform.spec import BY_ID, FAMILIES, LEVELS

__all__ = [
    "ATTACHMENT_TYPES",
    "LINK_TYPE",
    "SEVERITY",
    "VERDICTS_NAME",
    "AllureHooks",
    "labels_of",
    "severity_of",
    "spec_link",
    "verdict_rows",
]

SEVERITY: dict[str, str] = {"MUST": "critical", "SHOULD": "normal", "MAY": "minor"}
"""allure severity of a requirement level."""
LINK_TYPE = "requirement"
"""The allure link type of a requirement's link (for ``--allure-link-pattern``)."""
SPEC_FILE = "SPEC.md"
ATTACHMENT_TYPES: dict[str, AttachmentType] = {
    "pcap": AttachmentType.PCAP,
    "svg": AttachmentType.SVG,
    "json": AttachmentType.JSON,
    "text": AttachmentType.TEXT,
}
"""allure's type (MIME type and extension) of each :class:`Attachment` kind."""
VERDICTS_NAME = "dsrconform verdicts"
"""The name of the verdicts' JSON attachment."""
LAB_MODE = "lab-mode"
"""The ``mode`` parameter of a test run in the lab file's mode (as the plugin's platform ids)."""


def spec_link(requirement: str) -> str:
    """The requirement's section of the catalogue: ``SPEC.md#rw-1`` (GitHub's anchor of the
    heading ``### RW-1``, as SPEC.md's own table links it)."""
    return f"{SPEC_FILE}#{requirement.lower()}"


def severity_of(ids: Iterable[str]) -> str | None:
    """allure severity of the strictest level among ``ids`` (None: no known ID)."""
    levels = [BY_ID[i].level for i in ids if i in BY_ID]
    return SEVERITY[min(levels, key=LEVELS.index)] if levels else None


def labels_of(ids: Iterable[str]) -> list[tuple[str, str]]:
    """(label name, value) of requirement ``ids``: an ``epic`` per family (first citing order,
    once each), a ``feature`` per ID. Unknown IDs get a feature only."""
    ids = list(dict.fromkeys(ids))
    epics = dict.fromkeys(
        f"{BY_ID[i].family}: {FAMILIES[BY_ID[i].family]}" for i in ids if i in BY_ID
    )
    return [(LabelType.EPIC, e) for e in epics] + [(LabelType.FEATURE, i) for i in ids]


def verdict_rows(verdicts: Iterable[Verdict]) -> str:
    """The verdicts as the JSON attachment holds them: a list of
    :class:`~dsrconform.invariants.verdict.Verdict` rows, as ``results.json`` has them."""
    return json.dumps([v.model_dump(mode="json") for v in verdicts], indent=1)


def _has_own_severity(item: pytest.Item) -> bool:
    return any(m.kwargs.get("label_type") == "severity" for m in item.iter_markers("allure_label"))


class AllureHooks:
    """The pytest hooks that annotate allure's test results (see the module docstring)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def _option(self, opt: str) -> Any:
        from dsrconform import pytest_plugin as plugin

        return self.config.getoption(plugin._dest(opt))

    def _platform(self, item: pytest.Item) -> tuple[str, str, str]:
        """(backend, mode, address family) of the test: its ``dsr_platform`` parameter, else
        the run's."""
        from dsrconform import pytest_plugin as plugin

        param = plugin.item_platform(item)
        if param is not None:
            return param[0], param[1] or LAB_MODE, param[2]
        backends = ",".join(self._option(plugin.OPT_BACKEND))
        modes = ",".join(self._option(plugin.OPT_MODE) or ()) or LAB_MODE
        return backends, modes, ",".join(plugin.families(self.config))

    def annotate(self, item: pytest.Item) -> None:
        """Labels, links, parameters of a test citing requirements (nothing for another)."""
        from dsrconform import pytest_plugin as plugin

        ids = plugin.requirement_ids(item)
        if not ids:
            return
        for name, value in labels_of(ids):
            allure.dynamic.label(name, value)
        severity = severity_of(ids)
        if severity is not None and not _has_own_severity(item):
            allure.dynamic.severity(allure.severity_level(severity))
        for req in dict.fromkeys(ids):
            allure.dynamic.link(spec_link(req), link_type=LINK_TYPE, name=req)
        backend, mode, family = self._platform(item)
        allure.dynamic.parameter("target", self._option(plugin.OPT_TARGET))
        allure.dynamic.parameter("backend", backend)
        allure.dynamic.parameter("mode", mode)
        if plugin.names_family(self.config):  # an IPv4-only run keeps its tests' history ids
            allure.dynamic.parameter("family", family)
        mutant = self._option(plugin.OPT_MUTANT)
        if mutant is not None:
            allure.dynamic.parameter("mutant", mutant)
        allure.dynamic.parameter("seed", self.config.stash[plugin.SEED_KEY], excluded=True)
        if item.stash.get(plugin.NOT_APPLICABLE_KEY, None) is not None:
            allure.dynamic.tag("NOT APPLICABLE")  # a skip by the framework: reasons in its message

    def attach_evidence(self, item: pytest.Item) -> None:
        """The test's verdicts (JSON) and its evidence files that exist."""
        from dsrconform import pytest_plugin as plugin

        verdicts = item.stash.get(plugin.VERDICTS_KEY, [])
        if verdicts:
            allure.attach(
                verdict_rows(verdicts), name=VERDICTS_NAME, attachment_type=AttachmentType.JSON
            )
        results = self._option(plugin.OPT_RESULTS)
        for a in item.stash.get(plugin.ATTACHMENTS_KEY, []):
            path = Path(results) / a.path if results else Path(a.path)
            if path.is_file():
                allure.attach.file(str(path), name=a.name, attachment_type=ATTACHMENT_TYPES[a.kind])

    def _safely(self, what: Callable[[pytest.Item], None], item: pytest.Item) -> None:
        try:
            what(item)
        except Exception as e:  # an annotation is not worth a test's result
            item.warn(pytest.PytestWarning(f"dsrconform: allure {what.__name__}: {e!r}"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        try:
            return (yield)
        finally:
            self._safely(self.annotate, item)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.when == "call":
            self._safely(self.attach_evidence, item)
        return report
