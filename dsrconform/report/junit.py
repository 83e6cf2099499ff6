"""JUnit XML that CI reporters understand: pytest's ``--junitxml`` file, rewritten with the
verdicts of the run's :class:`~dsrconform.report.model.Results`.

pytest writes every user property of a test report as ``<property name=... value=repr>``: the
plugin's own (``dsrconform_*``, :data:`dsrconform.report.collect.PROPS`) would show a Python
repr of the verdict rows, and an UNKNOWN (a call that raised ``RequirementUnknown``) would be a
``<failure>``. :func:`rewrite_junit` (a pure function of the XML bytes and the results; the
plugin's hook in :mod:`dsrconform.report.pytest_hooks` calls it after pytest wrote the file)
makes it say what the run decided.

The contract:

- one ``<testcase>`` per test: pytest writes two for a test whose call failed and whose teardown
  then errored; they are merged (children appended, times summed). A testcase is matched to its
  :class:`~dsrconform.report.model.TestResult` by (classname, name) as pytest derives them from
  the node id (:func:`junit_address`); a testcase no result matches (a test citing no
  requirement, a collection error) keeps what pytest wrote, but for the ``dsrconform_*``
  properties, dropped everywhere;
- a matched testcase's properties: ``requirement`` per cited ID (in citing order),
  ``verdict:<ID>`` with PASS, FAIL or UNKNOWN per requirement the test decided
  (:attr:`TestResult.decisions`, as ``results.json`` has them: a skip leaves its requirements
  UNKNOWN), ``scenario``, ``platform`` and ``family`` (a lab test's address family) when known,
  ``attachment`` per evidence file (its path, relative to the results directory); the
  properties a test recorded itself are kept;
- a FAIL stays ``<failure>`` (``type="dsrconform.FAIL"`` when a verdict FAILed; a test failing on
  its own assertion keeps pytest's message), its text starting with every verdict that did not
  PASS: the message, measured values against thresholds, the evidence (flow, packet, link, time),
  what was missing; pytest's report follows;
- an UNKNOWN (a test whose outcome is ``error`` and whose call failed: its ``<failure>``) becomes
  ``<error type="dsrconform.UNKNOWN">``, the text listing what data was missing. A setup or
  teardown error is pytest's ``<error>`` already and stays so;
- a test NOT APPLICABLE to the target (not run: its ``verdict:<ID>`` properties say ``NOT
  APPLICABLE``) keeps its ``<skipped>``, with ``type="dsrconform.NOT_APPLICABLE"`` and the
  reasons (target and capability) as its message;
- each ``<testsuite>``'s ``tests``, ``failures``, ``errors`` and ``skipped`` are recomputed: each
  testcase counts once, under its worst child (failure, else error, else skipped), so the four
  add up; a ``<testsuites>`` root that has counts gets their sums;
- each testsuite gets the run's properties (:data:`RUN_PROPERTIES`: seed, target, ..., replay),
  after the others pytest wrote (``record_testsuite_property``), replacing any of the same name;
  a value the run does not have (no mutant, no profile, an empty list) is left out;
- text taken from the results (evidence describes crafted packets) may hold anything: characters
  XML 1.0 forbids (control characters, surrogates from undecodable bytes) become visible
  backslash escapes (:func:`xml_safe`); ElementTree escapes the rest. The output is well-formed
  and valid against ``junit.xsd`` (:data:`JUNIT_XSD`) whenever pytest's input was.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from dsrconform.invariants.verdict import Status, Verdict
from dsrconform.report.model import Results, RunInfo, TestResult

__all__ = [
    "JUNIT_XSD",
    "NOT_APPLICABLE_TYPE",
    "RUN_PROPERTIES",
    "UNKNOWN_TYPE",
    "describe_verdicts",
    "junit_address",
    "mangle_test_address",
    "rewrite_junit",
    "xml_safe",
]

JUNIT_XSD = Path(__file__).with_name("junit.xsd")
"""The XML Schema the rewritten file is valid against (the Jenkins/Ant JUnit format, with the
attributes pytest writes)."""
UNKNOWN_TYPE = "dsrconform.UNKNOWN"
"""The ``type`` of the ``<error>`` of an UNKNOWN."""
FAIL_TYPE = "dsrconform.FAIL"
"""The ``type`` of the ``<failure>`` of a test whose verdicts FAILed."""
NOT_APPLICABLE_TYPE = "dsrconform.NOT_APPLICABLE"
"""The ``type`` of the ``<skipped>`` of a test NOT APPLICABLE to the target."""
RUN_PROPERTIES = (
    "seed",
    "target",
    "target_version",
    "mutant",
    "level",
    "lab",
    "lab_sha256",
    "backends",
    "modes",
    "platforms",
    "families",
    "profile",
    "replay",
)
"""The testsuite properties, :class:`~dsrconform.report.model.RunInfo` fields (lists joined
with commas)."""
OWN_PREFIX = "dsrconform_"
"""The plugin's user properties (:data:`dsrconform.report.collect.PROPS`) start so."""
MESSAGE_BUDGET = 500
"""Characters of a ``message`` attribute (the text holds everything)."""
EVIDENCE_SHOWN = 20
"""Evidence items shown per verdict (a verdict keeps at most as many)."""

# XML 1.0's Char production; DEL is allowed (pytest escapes it in names only).
_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# pytest's bin_xml_escape: what it turns into "#xNN" in a testcase name.
_PYTEST_ESCAPED = re.compile(
    "[^\u0009\u000a\u000d\u0020-\u007e\u0080-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def xml_safe(text: object) -> str:
    """``str(text)`` with every character XML 1.0 forbids (C0 controls but tab, newline and
    carriage return; surrogates, e.g. from bytes decoded with ``surrogateescape``; U+FFFE,
    U+FFFF) replaced by a visible escape: ``\\x07``, ``\\udcff``, ``\\uffff``."""
    return _FORBIDDEN.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def mangle_test_address(nodeid: str) -> list[str]:
    """pytest's (9.x) ``_pytest.junitxml.mangle_test_address``: the node id's path as a dotted
    module name, then its ``::`` names; the parameters (everything from the first ``[`` after
    the first ``::``, brackets, dashes, slashes and ``::`` included) stay on the last name. A
    node id without ``::`` (a collection error) is its path alone."""
    path, sep, tail = nodeid.partition("::")
    if not sep:
        names = [path]
    else:
        head, bracket, params = tail.partition("[")
        names = [path, *head.split("::")]
        if bracket:
            names[-1] += f"[{params.removesuffix(']')}]"
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    return names


def _pytest_mangle() -> Callable[[str], list[str]]:
    """The running pytest's own mapping (the one that wrote the file), else ours."""
    try:
        from _pytest.junitxml import mangle_test_address as theirs
    except ImportError:  # pragma: no cover - pytest without it (never seen)
        return mangle_test_address
    return theirs


def junit_address(nodeid: str, prefix: str | None = None) -> tuple[str, str]:
    """(classname, name) of the ``<testcase>`` pytest writes for ``nodeid`` (``--junitprefix``
    ``prefix`` first in the classname; characters pytest escapes in a name as ``#xNN``
    likewise)."""
    names = _pytest_mangle()(nodeid)
    classnames = names[:-1]
    if prefix:
        classnames.insert(0, prefix)

    def esc(m: re.Match[str]) -> str:
        n = ord(m.group())
        return f"#x{n:02X}" if n <= 0xFF else f"#x{n:04X}"

    return ".".join(classnames), _PYTEST_ESCAPED.sub(esc, names[-1])


def _shorten(text: str, budget: int = MESSAGE_BUDGET) -> str:
    return text if len(text) <= budget else text[: budget - 3] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _values(values: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def describe_verdicts(verdicts: Iterable[Verdict]) -> str:
    """The verdicts as text for a reader of a CI failure, one block each::

        RW-1 FAIL (MUST): 1 reply records came from another address than the VIP:port
          checker: dsrconform.invariants.rewrite:check_replies_carry_vip
          measured: flows_with_replies=2, reply_packets=100
          thresholds: min_flows=1
          evidence 1: reply from 198.18.20.3:8080, but the client addressed 198.19.0.10:80
            flow: tcp 198.18.1.2:40002 > 198.19.0.10:80 (flow 2)
            packet: tcp 198.18.20.3:8080 > 198.18.1.2:40002, 50 packets/5000 bytes
            link: client:dsrc-router ingress (link-client from router)
            time: 11.000 s to 21.000 s
          missing: ...

    Not XML-safe yet (:func:`xml_safe` it)."""
    blocks: list[str] = []
    for v in verdicts:
        lines = [f"{v.requirement} {v.status} ({v.level}): {v.message}"]
        if v.checker:
            lines.append(f"  checker: {v.checker}")
        if v.measured:
            lines.append(f"  measured: {_values(dict(v.measured))}")
        if v.thresholds:
            lines.append(f"  thresholds: {_values(dict(v.thresholds))}")
        for n, e in enumerate(v.evidence[:EVIDENCE_SHOWN], 1):
            lines.append(f"  evidence {n}: {e.message}")
            lines += [f"    {k}: {x}" for k, x in (("flow", e.flow), ("packet", e.packet)) if x]
            if e.link:
                lines.append(f"    link: {e.link}")
            if e.time is not None:
                until = f" to {e.until:.3f} s" if e.until is not None else ""
                lines.append(f"    time: {e.time:.3f} s{until}")
        omitted = v.evidence_omitted + max(0, len(v.evidence) - EVIDENCE_SHOWN)
        if omitted:
            lines.append(f"  ({omitted} more evidence items not kept)")
        lines += [f"  missing: {m}" for m in v.missing]
        if v.error:
            lines.append("  checker error:")
            lines += [f"    {x}" for x in v.error.splitlines()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _run_properties(run: RunInfo) -> Iterator[tuple[str, str]]:
    for name in RUN_PROPERTIES:
        value = getattr(run, name)
        if isinstance(value, list):
            value = ",".join(value)
        if value is None or value == "":
            continue
        yield name, str(value)


def _test_properties(t: TestResult) -> Iterator[tuple[str, str]]:
    for req in t.requirements:
        yield "requirement", req
    order = t.requirements + [r for r in t.decisions if r not in t.requirements]
    for req in order:
        if req in t.decisions:
            yield f"verdict:{req}", t.decisions[req].status.value
    if t.scenario:
        yield "scenario", t.scenario
    if t.platform:
        yield "platform", t.platform
    if t.family:
        yield "family", t.family
    for a in t.attachments:
        yield "attachment", a.path


def _property(name: str, value: str) -> ET.Element:
    return ET.Element("property", name=xml_safe(name), value=xml_safe(value))


def _properties_first(parent: ET.Element) -> ET.Element:
    """``parent``'s ``<properties>`` (made, as its first child, when it has none)."""
    props = parent.find("properties")
    if props is None:
        props = ET.Element("properties")
        parent.insert(0, props)
    return props


def _merge_duplicates(suite: ET.Element) -> None:
    """One testcase per (classname, name): later ones' children go into the first."""
    first: dict[tuple[str | None, str | None], ET.Element] = {}
    for case in suite.findall("testcase"):
        key = (case.get("classname"), case.get("name"))
        if key not in first:
            first[key] = case
            continue
        keep = first[key]
        for child in list(case):
            if child.tag == "properties":
                _properties_first(keep).extend(list(child))
            else:
                keep.append(child)
        try:
            total = float(keep.get("time", "0")) + float(case.get("time", "0"))
            keep.set("time", f"{total:.3f}")
        except ValueError:
            pass
        suite.remove(case)


def _rewrite_case(case: ET.Element, t: TestResult | None) -> None:
    props = case.find("properties")
    if props is not None:
        for p in list(props):
            if (p.get("name") or "").startswith(OWN_PREFIX):
                props.remove(p)
    if t is not None:
        ours = list(_test_properties(t))
        if ours:
            props = _properties_first(case)
            props.extend(_property(k, v) for k, v in ours)
    if props is not None and len(props) == 0:
        case.remove(props)
    if t is None:
        return
    unknown = t.outcome == "error"  # a failed call of a test that errored: its UNKNOWN
    for failure in case.findall("failure"):
        shown = [v for v in t.verdicts if v.status != Status.PASS]
        decisive = [v for v in shown if v.status == (Status.UNKNOWN if unknown else Status.FAIL)]
        ours_text = describe_verdicts(shown)
        pytests = failure.text or ""
        failure.text = xml_safe(f"{ours_text}\n\n--- pytest ---\n{pytests}" if shown else pytests)
        if decisive:
            message = "; ".join(
                f"{v.requirement} {v.status}: {_one_line(v.message)}" for v in decisive
            )
            failure.set("message", xml_safe(_shorten(message)))
        elif unknown and t.message:
            failure.set("message", xml_safe(_shorten(t.message)))
        if unknown:
            failure.tag = "error"
            failure.set("type", UNKNOWN_TYPE)
        elif decisive:
            failure.set("type", FAIL_TYPE)
    if t.not_applicable:
        why = "; ".join(dict.fromkeys(t.not_applicable.values()))
        for skipped in case.findall("skipped"):
            skipped.set("type", NOT_APPLICABLE_TYPE)
            skipped.set("message", xml_safe(_shorten(f"NOT APPLICABLE: {why}")))
    # failure/error/skipped before system-out/system-err, as pytest writes them
    order = {"properties": 0, "failure": 1, "error": 1, "skipped": 1}
    children = sorted(case, key=lambda c: order.get(c.tag, 2))
    for c in list(case):
        case.remove(c)
    case.extend(children)


def _worst(case: ET.Element) -> str:
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return tag
    return "passed"


def _recount(suite: ET.Element) -> dict[str, int]:
    cases = suite.findall("testcase")
    worst = [_worst(c) for c in cases]
    counts = {
        "tests": len(cases),
        "failures": worst.count("failure"),
        "errors": worst.count("error"),
        "skipped": worst.count("skipped"),
    }
    for k, n in counts.items():
        suite.set(k, str(n))
    return counts


def rewrite_junit(xml_bytes: bytes, results: Results, *, prefix: str | None = None) -> bytes:
    """pytest's JUnit XML ``xml_bytes`` rewritten with ``results`` (see the module docstring
    for the contract); ``prefix`` is pytest's ``--junitprefix``. Raises
    ``xml.etree.ElementTree.ParseError`` when ``xml_bytes`` is not XML. The result is UTF-8
    with an XML declaration."""
    root = ET.fromstring(xml_bytes)
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    by_address: dict[tuple[str, str], TestResult] = {}
    for t in results.tests:
        by_address.setdefault(junit_address(t.nodeid, prefix), t)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        _merge_duplicates(suite)
        for case in suite.findall("testcase"):
            key = (case.get("classname") or "", case.get("name") or "")
            _rewrite_case(case, by_address.get(key))
        for k, n in _recount(suite).items():
            totals[k] += n
        props = _properties_first(suite)
        names = {p for p, _ in _run_properties(results.run)}
        for p in list(props):
            if p.get("name") in names:
                props.remove(p)
        props.extend(_property(k, v) for k, v in _run_properties(results.run))
        if len(props) == 0:
            suite.remove(props)
    if root.tag == "testsuites":
        for k, n in totals.items():
            if k in root.attrib:
                root.set(k, str(n))
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="utf-8"?>' + body).encode("utf-8")
