"""The HTML report (dsrconform.report.html, `dsrconform report`): synthetic results, no lab.

The page is parsed with the standard library's html.parser into a small tree; the tests check
the matrix cells, that every in-page link has its target, that nothing is fetched from a
network, that hostile evidence is escaped, and the attachments' embed/copy policy. The builders
here (:func:`make_results`, :func:`full_run`) also serve the browser test and the timing.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from dsrconform.errors import ConfigError
from dsrconform.invariants.verdict import Evidence, Status, Verdict
from dsrconform.report import html as report_html
from dsrconform.report import model as rmodel
from dsrconform.report import svg as report_svg
from dsrconform.report.html import ReportInfo, printable, render_report
from dsrconform.report.model import (
    Attachment,
    Environment,
    Results,
    RunInfo,
    decide_requirements,
    decide_test,
)
from dsrconform.report.reportcli import add_parser, parse_size
from dsrconform.spec import BY_ID, REQUIREMENTS

PASS, FAIL, UNKNOWN = Status.PASS, Status.FAIL, Status.UNKNOWN
MUST_IDS = [r.id for r in REQUIREMENTS if r.level == "MUST"]
HOSTILE = "<script>alert(1)</script> \"quoted\" 'single' \udcff\udc80 \x07\x1b[31m \x00 & <b>"
ORIGIN = 5000.0

# --- builders ---------------------------------------------------------------------------------


def verdict(
    req: str,
    status: Status,
    *,
    message: str | None = None,
    evidence: Sequence[Evidence] = (),
    missing: Sequence[str] = (),
    error: str | None = None,
    measured: dict[str, Any] | None = None,
    thresholds: dict[str, Any] | None = None,
    omitted: int = 0,
) -> Verdict:
    if status == FAIL and not evidence:
        evidence = [Evidence(message="a violation", link="mux1:eth0 egress", time=ORIGIN + 1.5)]
    if status == UNKNOWN and not (missing or error):
        missing = ["taps toward the clients"]
    spec_req = BY_ID.get(req)
    return Verdict(
        requirement=req,
        level=spec_req.level if spec_req else "MUST",
        status=status,
        message=message or f"{req} {status.value.lower()}",
        checker=spec_req.checker if spec_req else "",
        params=spec_req.defaults() if spec_req else {},
        measured=measured if measured is not None else {"flows": 12, "ratio": 0.25},
        thresholds=thresholds if thresholds is not None else {"ratio": 0.1},
        evidence=list(evidence),
        evidence_omitted=omitted,
        missing=list(missing),
        error=error,
    )


def make_test(
    nodeid: str,
    verdicts: Sequence[Verdict] = (),
    *,
    requirements: Sequence[str] | None = None,
    outcome: str | None = None,
    run_dir: str | None = None,
    scenario: str | None = None,
    platform: str | None = "netns-dsr",
    attachments: Sequence[Attachment] = (),
    message: str = "",
) -> rmodel.TestResult:
    ids = list(requirements) if requirements is not None else [v.requirement for v in verdicts]
    worst = {PASS: "passed", FAIL: "failed", UNKNOWN: "error"}
    if outcome is None:
        statuses = [v.status for v in verdicts]
        outcome = worst[FAIL if FAIL in statuses else UNKNOWN if UNKNOWN in statuses else PASS]
    return rmodel.TestResult(
        nodeid=nodeid,
        outcome=outcome,  # type: ignore[arg-type]
        requirements=ids,
        message=message,
        duration=1.25,
        platform=platform,
        scenario=scenario,
        run_dir=run_dir,
        verdicts=list(verdicts),
        decisions=decide_test(ids, verdicts, outcome, message),
        attachments=list(attachments),
    )


def make_results(
    tests: Iterable[rmodel.TestResult],
    *,
    seed: int = 7,
    target: str = "reference",
    mutant: str | None = None,
    modes: Sequence[str] = ("dsr",),
    replay: str = "dsrconform run --seed 7 --level MUST",
) -> Results:
    tests = list(tests)
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return Results(
        run=RunInfo(
            seed=seed,
            target=target,
            target_version="0.1.0",
            mutant=mutant,
            lab="labs/basic.yaml",
            lab_sha256="ab" * 32,
            backends=["netns"],
            modes=list(modes),
            platforms=[f"netns-{m}" for m in modes],
            level="MUST",
            profile="ci",
            started=started,
            stopped=started + timedelta(minutes=4, seconds=2),
            exit_status=1,
            replay=replay,
            environment=Environment(
                kernel="6.1.0-test",
                machine="x86_64",
                cpus=2,
                python="3.11.2",
                tools={"clang": "Debian clang 14", "bpftool": "not found"},
                features={"live-frames": {"ok": True, "reason": ""}},
            ),
        ),
        requirements=decide_requirements(tests),
        tests=tests,
    )


def save(results: Results, directory: Path) -> Path:
    results.save(directory)
    return directory


def timeline(bins: int = 240, links: int = 9, seed: int = 0) -> Any:
    """A realistic timeline: ``bins`` half-second bins, ``links`` tap series, two faults."""
    from dsrconform.report.timeline import Timeline

    r = random.Random(seed)
    t = [i * 0.5 for i in range(bins)]
    ok = [r.randint(0, 40) for _ in t]
    bad = [r.randint(0, 5) for _ in t]
    rate = [a / (a + b) if a + b else None for a, b in zip(ok, bad, strict=True)]
    pps = {f"mux{k}:eth{k} ingress": [r.random() * 1e4 for _ in t] for k in range(links - 1)}
    pps["other"] = [r.random() * 100 for _ in t]
    return Timeline(
        origin=ORIGIN,
        bin_seconds=0.5,
        t=t,
        alive=[r.randint(0, 100) for _ in t],
        new_ok=ok,
        new_failed=bad,
        success_rate=rate,
        udp_answered=ok,
        udp_unanswered=bad,
        udp_answer_rate=rate,
        link_pps=pps,
        faults=[(20.0, 40.0, "syn-flood mux1"), (60.0, None, "mux-fail mux2")],
    )


def write_timeline(results_dir: Path, run_dir: str, **kw: Any) -> None:
    d = results_dir / run_dir
    d.mkdir(parents=True, exist_ok=True)
    (d / "timeline.json").write_text(timeline(**kw).model_dump_json())


def full_run(
    directory: Path,
    *,
    seed: int = 1,
    mutant: str | None = None,
    tests: int = 60,
    scenarios: int = 8,
    bins: int = 240,
    pcap_bytes: int = 40_000,
) -> Path:
    """A results directory the size of a full MUST run: ``tests`` tests over the 23 MUST
    requirements, ``scenarios`` scenario run directories with timelines, FAILs with 20 evidence
    items and a pcap each, UNKNOWNs."""
    r = random.Random(seed)
    names = [f"scenario{k}" for k in range(scenarios)]
    for k, name in enumerate(names):
        write_timeline(directory, f"runs/{name}-netns-dsr", bins=bins, seed=seed * 100 + k)
    built = []
    for k in range(tests):
        name = names[k % scenarios]
        run_dir = f"runs/{name}-netns-dsr"
        reqs = [MUST_IDS[k % len(MUST_IDS)], MUST_IDS[(k * 7 + 3) % len(MUST_IDS)]]
        verdicts, atts = [], []
        for req in dict.fromkeys(reqs):
            status = r.choices([PASS, FAIL, UNKNOWN], [8, 1, 1])[0]
            if status == FAIL:
                ev = [
                    Evidence(
                        message=f"reply from a server address #{i}",
                        flow=f"tcp 198.18.1.2:{40000 + i} > 198.19.0.10:80 (flow {i})",
                        packet=f"tcp 198.18.20.1:80 > 198.18.1.2:{40000 + i} flags SA",
                        link="edge:eth1 egress (toward client1)",
                        time=ORIGIN + i * 0.37,
                        until=ORIGIN + i * 0.37 + 0.2,
                    )
                    for i in range(20)
                ]
                verdicts.append(verdict(req, FAIL, evidence=ev, omitted=35))
                pcap = f"{run_dir}/evidence-{req}-{k}.pcap"
                (directory / pcap).write_bytes(r.randbytes(pcap_bytes))
                atts.append(
                    Attachment(name=f"{req} evidence", path=pcap, kind="pcap", requirement=req)
                )
            else:
                verdicts.append(verdict(req, status))
        built.append(
            make_test(
                f"suites/test_{name}.py::test_{k}[netns-dsr]",
                verdicts,
                run_dir=run_dir,
                scenario=name,
                attachments=atts,
            )
        )
    return save(make_results(built, seed=seed, mutant=mutant), directory)


# --- parsing ----------------------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    @property
    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()

    def iter(self) -> Iterable[Node]:
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str, cls: str | None = None) -> list[Node]:
        return [n for n in self.iter() if n.tag == tag and (cls is None or cls in n.classes)]

    def by_id(self, ident: str) -> Node:
        found = [n for n in self.iter() if n.attrs.get("id") == ident]
        assert len(found) == 1, f"id {ident!r}: {len(found)} elements"
        return found[0]


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.cur = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.cur.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.cur))

    def handle_endtag(self, tag: str) -> None:
        n: Node | None = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        assert n is not None and n.parent is not None, f"</{tag}> closes nothing open"
        self.cur = n.parent

    def handle_data(self, data: str) -> None:
        self.cur.children.append(data)


def parse(path: Path) -> Node:
    tb = TreeBuilder()
    tb.feed(path.read_bytes().decode("utf-8"))  # strict: the page is valid UTF-8
    tb.close()
    assert tb.cur is tb.root, f"unclosed <{tb.cur.tag}>"
    return tb.root


def check_links(doc: Node) -> set[str]:
    """Every in-page link has its one target; no id twice; nothing fetched from a network.
    Returns the fragment targets linked."""
    ids = [n.attrs["id"] for n in doc.iter() if n.attrs.get("id")]
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, f"duplicate ids: {sorted(dup)[:5]}"
    targets = set()
    for n in doc.iter():
        for name in ("href", "xlink:href", "src", "action", "poster", "data"):
            value = n.attrs.get(name)
            if value is None:
                continue
            assert not re.match(r"\s*(https?:)?//", value, re.I), f"<{n.tag} {name}={value!r}>"
            assert not value.lower().startswith("javascript:"), value
            if value.startswith("#"):
                targets.add(value[1:])
                assert value[1:] in ids, f"<{n.tag} {name}={value!r}>: no such id"
    assert not doc.find_all("script") and not doc.find_all("link") and not doc.find_all("iframe")
    return targets


def render(dirs: Sequence[Path], out: Path, **kw: Any) -> tuple[ReportInfo, Node, str]:
    info = render_report(list(dirs), out, **kw)
    text = out.read_text(encoding="utf-8")
    return info, parse(out), text


def matrix_cells(doc: Node) -> dict[str, list[Node]]:
    (table,) = doc.find_all("table", "matrix")
    rows: dict[str, list[Node]] = {}
    for tr in table.find_all("tr")[1:]:
        (th,) = tr.find_all("th")
        rows[th.text.strip()] = tr.find_all("td")[1:]  # the first td is the level
    return rows


# --- the tests --------------------------------------------------------------------------------


def three_statuses(tmp_path: Path) -> Path:
    tests = [
        make_test("suites/test_a.py::test_pass", [verdict("RW-1", PASS)]),
        make_test("suites/test_a.py::test_fail", [verdict("RW-2", FAIL)]),
        make_test(
            "suites/test_a.py::test_unknown",
            [verdict("DP-1", UNKNOWN, missing=["a tap overflowed"], error="Traceback: boom")],
        ),
        make_test("suites/test_b.py::test_skipped", [], requirements=["AF-1"], outcome="skipped"),
    ]
    return save(make_results(tests), tmp_path / "run-a")


def test_one_run_shows_summary_matrix_requirements_and_every_link_resolves(tmp_path: Path) -> None:
    info, doc, text = render([three_statuses(tmp_path)], tmp_path / "out" / "report.html")
    assert info.path == (tmp_path / "out" / "report.html").absolute() and info.runs == 1
    assert info.size == (tmp_path / "out" / "report.html").stat().st_size
    targets = check_links(doc)
    cells = matrix_cells(doc)
    assert list(cells) == ["RW-1", "RW-2", "DP-1", "AF-1"]  # catalogue order
    assert [c[0].text.strip() for c in cells.values()] == ["PASS", "FAIL", "UNKNOWN", "UNKNOWN"]
    assert [c[0].classes for c in cells.values()] == [
        ["st-pass"],
        ["st-fail"],
        ["st-unknown"],
        ["st-unknown"],
    ]
    assert {"r0-RW-1", "r0-RW-2", "r0-DP-1", "r0-AF-1", "run0", "summary", "matrix"} <= targets
    summary = doc.by_id("run0")
    assert "FAIL" in summary.find_all("h2")[0].text  # the run's verdict
    assert "dsrconform run --seed 7 --level MUST" in [
        c.text for c in doc.find_all("code", "replay")
    ]
    facts = {
        tr.find_all("th")[0].text: tr.find_all("td")[0].text
        for tr in summary.find_all("table", "facts")[0].find_all("tr")
    }
    assert facts["seed"] == "7" and facts["mutant"] == "none" and facts["duration"] == "4 min 02 s"
    assert facts["target"] == "reference (version 0.1.0)" and facts["profile"] == "ci"
    must = [tr for tr in doc.find_all("table", "counts")[0].find_all("tr") if tr.text[:4] == "MUST"]
    assert [td.text for td in must[0].find_all("td")] == ["1", "1", "2", "0"]
    # The UNKNOWN's missing data and error, the FAIL's evidence, measured vs thresholds.
    dp1 = doc.by_id("r0-DP-1")
    assert "a tap overflowed" in dp1.text and "Traceback: boom" in dp1.text
    rw2 = doc.by_id("r0-RW-2")
    assert "a violation" in rw2.find_all("table", "evidence")[0].text
    values = rw2.find_all("table", "values")[0]
    assert [[td.text for td in tr.find_all("td")] for tr in values.find_all("tr")[1:]] == [
        ["flows", "12", ""],
        ["ratio", "0.25", "0.1"],
    ]
    assert "open" in doc.by_id("v0-1-0").attrs and "open" not in doc.by_id("v0-0-0").attrs
    # Spec facts: statement, family, parameters with units.
    assert BY_ID["RW-1"].statement in doc.by_id("r0-RW-1").text
    assert "Rewrite correctness" in doc.by_id("r0-RW-1").text
    params = doc.by_id("r0-RW-1").find_all("table", "params")[0].text
    assert "min_flows" in params and "1" in params
    env = doc.by_id("run0-env").text
    assert "6.1.0-test" in env and "Debian clang 14" in env and "live-frames" in env
    assert "ab" * 32 in text and "labs/basic.yaml" in text


def test_matrix_unions_requirements_over_runs_in_catalogue_order(tmp_path: Path) -> None:
    a = save(
        make_results([make_test("t::a", [verdict("SF-1", FAIL), verdict("RW-1", PASS)])]),
        tmp_path / "a",
    )
    b = save(
        make_results(
            [make_test("t::b", [verdict("RW-3", UNKNOWN), verdict("RW-1", FAIL)])],
            seed=99,
            mutant="skip-csum",
        ),
        tmp_path / "b",
    )
    c = save(make_results([make_test("t::c", [verdict("MF-1", PASS)])], seed=3), tmp_path / "c")
    _, doc, _ = render([a, b, c], tmp_path / "report.html")
    targets = check_links(doc)
    cells = matrix_cells(doc)
    assert list(cells) == ["RW-1", "RW-3", "SF-1", "MF-1"]
    as_text = {rid: [c.text.strip() for c in row] for rid, row in cells.items()}
    assert as_text == {
        "RW-1": ["PASS", "FAIL", "\u2014"],
        "RW-3": ["\u2014", "UNKNOWN", "\u2014"],
        "SF-1": ["FAIL", "\u2014", "\u2014"],
        "MF-1": ["\u2014", "\u2014", "PASS"],
    }
    links = {
        rid: [a.attrs["href"] for c in row for a in c.find_all("a")] for rid, row in cells.items()
    }
    assert links["RW-1"] == ["#r0-RW-1", "#r1-RW-1"] and links["MF-1"] == ["#r2-MF-1"]
    assert cells["RW-3"][0].classes == ["st-none"] and not cells["RW-3"][0].find_all("a")
    assert {"r0-SF-1", "r1-RW-3", "r2-MF-1"} <= targets
    heads = doc.find_all("table", "matrix")[0].find_all("th", "run-col")
    assert "mutant skip-csum" in heads[1].text and "seed 99" in heads[1].text
    assert "no mutant" in heads[0].text and "seed 7" in heads[0].text
    assert [a.attrs["href"] for h in heads for a in h.find_all("a")] == ["#run0", "#run1", "#run2"]


def test_hostile_strings_are_escaped_and_never_crash(tmp_path: Path) -> None:
    ev = Evidence(message=HOSTILE, flow=HOSTILE, packet=HOSTILE, link=HOSTILE, time=ORIGIN)
    v = verdict(
        "RW-1",
        FAIL,
        message=HOSTILE,
        evidence=[ev],
        error=HOSTILE,
        measured={HOSTILE: HOSTILE},
        thresholds={HOSTILE: 1.0},
    )
    att = Attachment(name=HOSTILE, path="no/such\udcff.pcap", kind="pcap", requirement="RW-1")
    t = make_test(f"t::x[{HOSTILE}]", [v], message=HOSTILE, attachments=[att])
    res = make_results([t], replay=f"dsrconform run {HOSTILE}", target=f"ref{HOSTILE}")
    d = tmp_path / "run"
    d.mkdir()
    # Saved as JSON with the surrogates as \udcff escapes, loaded back by the report.
    (d / "results.json").write_text(json.dumps(res.model_dump(mode="json")))
    info, doc, text = render([d], tmp_path / "report.html")
    check_links(doc)
    assert "<script" not in text.lower() and "<b>" not in text
    assert "alert(1)" in text  # shown, escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert '"quoted"' not in text.split("<body>", 1)[1].replace("&#34;quoted&#34;", "")
    assert "\\xff\\x80" in text and "\\x07\\x1b[31m" in text and "\\x00" in text
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text)
    # Shown where it belongs: the evidence row, the test's id, the replay command.
    evidence = doc.by_id("r0-RW-1").find_all("table", "evidence")[0].text
    assert printable(HOSTILE) in evidence
    assert f"dsrconform run {printable(HOSTILE)}" in doc.find_all("code", "replay")[0].text
    assert info.missing and "missing from the results directory" in info.missing[0]


def test_printable_escapes_controls_and_surrogates_only() -> None:
    assert printable("ok\ttab\nline é ✓ \ufffd") == "ok\ttab\nline é ✓ \ufffd"
    assert printable("\udcff\ud800\x00\x9f\ufffe") == "\\xff\\ud800\\x00\\x9f\\ufffe"
    assert printable(3.5) == "3.5"


def test_attachments_embedded_under_the_limit_copied_over_it_missing_noted(tmp_path: Path) -> None:
    d = tmp_path / "run"
    (d / "scn").mkdir(parents=True)
    small, big = b"\xd4\xc3\xb2\xa1small" + bytes(100), b"\xd4\xc3\xb2\xa1" + bytes(5000)
    (d / "scn" / "small.pcap").write_bytes(small)
    (d / "scn" / "big.pcap").write_bytes(big)
    (tmp_path / "secret.pcap").write_bytes(b"secret")
    atts = [
        Attachment(name="small window", path="scn/small.pcap", kind="pcap", requirement="RW-1"),
        Attachment(name="big window", path="scn/big.pcap", kind="pcap", requirement="RW-1"),
        Attachment(name="gone", path="scn/gone.pcap", kind="pcap", requirement="RW-1"),
        Attachment(name="escape", path="../secret.pcap", kind="pcap"),
    ]
    save(make_results([make_test("t::a", [verdict("RW-1", FAIL)], attachments=atts)]), d)
    out = tmp_path / "rep" / "my report.html"
    info, doc, text = render([d], out, embed_limit=1024)
    check_links(doc)
    links = {a.text: a for a in doc.find_all("a") if a.attrs.get("download")}
    emb = links["small window"]
    assert emb.attrs["download"] == "small.pcap"
    head, _, payload = emb.attrs["href"].partition(",")
    assert head == "data:application/vnd.tcpdump.pcap;base64"
    assert base64.b64decode(payload) == small
    cp = links["big window"]
    assert cp.attrs["href"] == "my%20report_files/run0/scn/big.pcap"
    assert (out.parent / "my report_files" / "run0" / "scn" / "big.pcap").read_bytes() == big
    assert info.copied == ((out.parent / "my report_files" / "run0" / "scn" / "big.pcap"),)
    assert info.embedded == ("run0/scn/small.pcap",)
    assert info.files_dir == out.parent / "my report_files"
    missing = [m.text for m in doc.find_all("span", "missing")]
    assert missing == [
        "gone: missing from the results directory",
        "escape: outside the results directory: not included",
    ]
    assert "secret" not in text and len(info.missing) == 2
    # Under its requirement (RW-1) or, with none, under its test.
    assert "small window" in doc.by_id("r0-RW-1").text
    assert "escape" in doc.by_id("t0-0").text and "escape" not in doc.by_id("r0-RW-1").text


def test_one_results_dir_twice_gets_its_big_attachment_copied_per_column(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    (d / "big.pcap").write_bytes(bytes(3000))
    att = Attachment(name="big", path="big.pcap", kind="pcap", requirement="RW-1")
    save(make_results([make_test("t::a", [verdict("RW-1", FAIL)], attachments=[att])]), d)
    info, doc, _ = render([d, d], tmp_path / "out" / "r.html", embed_limit=1000)
    hrefs = [a.attrs["href"] for a in doc.find_all("a") if a.attrs.get("download")]
    assert hrefs == ["r_files/run0/big.pcap", "r_files/run1/big.pcap"]
    assert (
        all((tmp_path / "out" / h).stat().st_size == 3000 for h in hrefs) and len(info.copied) == 2
    )


def test_a_report_inside_its_results_dir_links_big_attachments_in_place(tmp_path: Path) -> None:
    d = tmp_path / "results" / "20261207T0000Z-reference-1"
    (d / "scn").mkdir(parents=True)
    (d / "scn" / "big one.pcap").write_bytes(bytes(3000))
    (tmp_path / "results" / "latest").symlink_to(d.name)
    att = Attachment(name="big", path="scn/big one.pcap", kind="pcap", requirement="RW-1")
    save(make_results([make_test("t::a", [verdict("RW-1", FAIL)], attachments=[att])]), d)
    out = tmp_path / "results" / "latest" / "report.html"
    info, doc, _ = render([tmp_path / "results" / "latest"], out, embed_limit=1000)
    check_links(doc)
    (link,) = [a for a in doc.find_all("a") if a.attrs.get("download")]
    assert link.attrs["href"] == "scn/big%20one.pcap" and link.attrs["class"] == "att-linked"
    assert info.linked == (d / "scn" / "big one.pcap",) and not info.copied
    assert not (tmp_path / "results" / "latest" / "report_files").exists()


def test_total_embed_limit_embeds_fail_evidence_first_then_copies(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    tests = []
    for k, status in enumerate([PASS, FAIL, UNKNOWN]):
        req = ["RW-1", "RW-2", "RW-3"][k]
        (d / f"{req}.pcap").write_bytes(bytes(600))
        att = Attachment(name=f"{req} pcap", path=f"{req}.pcap", kind="pcap", requirement=req)
        tests.append(make_test(f"t::{k}", [verdict(req, status)], attachments=[att]))
    save(make_results(tests), d)
    info, doc, _ = render([d], tmp_path / "o" / "r.html", embed_limit=1000, total_embed_limit=1300)
    assert info.embedded == ("run0/RW-2.pcap", "run0/RW-3.pcap")  # FAIL, then UNKNOWN
    assert [p.name for p in info.copied] == ["RW-1.pcap"]
    a = {x.text: x.attrs["href"] for x in doc.find_all("a") if x.attrs.get("download")}
    assert a["RW-2 pcap"].startswith("data:") and a["RW-1 pcap"] == "r_files/run0/RW-1.pcap"
    info0, _, _ = render([d], tmp_path / "o" / "none.html", embed_limit=0)
    assert not info0.embedded and len(info0.copied) == 3


def test_the_embed_budget_goes_to_fail_evidence_of_any_run_first(tmp_path: Path) -> None:
    dirs = []
    for name, status in (("a", PASS), ("b", FAIL)):
        d = tmp_path / name
        d.mkdir()
        (d / "w.pcap").write_bytes(bytes(600))
        att = Attachment(name=f"{name} pcap", path="w.pcap", kind="pcap", requirement="RW-1")
        t = make_test(f"t::{name}", [verdict("RW-1", status)], attachments=[att])
        dirs.append(save(make_results([t]), d))
    info, _, _ = render(dirs, tmp_path / "o" / "r.html", total_embed_limit=1000)
    assert info.embedded == ("run1/w.pcap",) and [p.parent.name for p in info.copied] == ["run0"]


def test_timeline_drawn_once_per_scenario_and_linked_from_requirements(tmp_path: Path) -> None:
    d = tmp_path / "run"
    write_timeline(d, "runs/flood-netns-dsr", bins=40, links=2)
    write_timeline(d, "runs/muxfail-netns-dsr", bins=30, links=2, seed=1)
    ev = Evidence(message="reset", time=ORIGIN + 12.5, until=ORIGIN + 13.25)
    tests = [
        make_test(
            "t::flood1",
            [verdict("SF-1", PASS), verdict("SF-4", FAIL, evidence=[ev])],
            run_dir="runs/flood-netns-dsr",
            scenario="flood",
        ),
        make_test(
            "t::flood2", [verdict("RW-1", PASS)], run_dir="runs/flood-netns-dsr", scenario="flood"
        ),
        make_test(
            "t::mux", [verdict("MF-1", PASS)], run_dir="runs/muxfail-netns-dsr", scenario="muxfail"
        ),
        make_test("t::plain", [verdict("RW-2", PASS)], run_dir="runs/none", scenario="x"),
    ]
    save(make_results(tests), d)
    info, doc, text = render([d], tmp_path / "r.html")
    check_links(doc)
    assert info.timelines == 2
    svgs = doc.find_all("svg")
    assert len(svgs) == 2 and text.count("<svg") == 2
    assert [s.parent.attrs["id"] for s in svgs if s.parent] == ["s0-0", "s0-1"]
    assert "flood" in doc.by_id("s0-0").find_all("h4")[0].text
    for rid in ("SF-1", "SF-4", "RW-1"):
        hrefs = [a.attrs["href"] for a in doc.by_id(f"r0-{rid}").find_all("a")]
        assert "#s0-0" in hrefs and "#s0-1" not in hrefs
    assert "#s0-1" in [a.attrs["href"] for a in doc.by_id("r0-MF-1").find_all("a")]
    assert not [a for a in doc.by_id("r0-RW-2").find_all("a") if a.attrs["href"][:3] == "#s0"]
    # SVG element ids are prefixed per scenario: none repeats across the two drawings.
    svg_ids = [n.attrs["id"] for s in svgs for n in s.iter() if n.attrs.get("id")]
    assert svg_ids and all(i.startswith(("s0-0-", "s0-1-")) for i in svg_ids)
    # Evidence times relative to the timeline's origin (its x axis).
    evidence = doc.by_id("r0-SF-4").find_all("table", "evidence")[0]
    assert [a.attrs["href"] for a in evidence.find_all("a")] == ["#s0-0"]  # "when (timeline)"
    when = evidence.find_all("td")[-1]
    assert when.text == "+12.500\u201313.250 s"
    assert when.attrs["title"] == "CLOCK_MONOTONIC 5012.500000 s to 5013.250000 s"


@pytest.mark.parametrize(
    "svg",
    [
        "<svg><script>alert(1)</script></svg>",
        '<svg><g onload="alert(1)"/></svg>',
        '<svg><use href="http://example.com/x.svg#a"/></svg>',
        '<svg><image xlink:href="data:image/png;base64,AAAA"/></svg>',
        "<svg><style>@import 'x.css';</style></svg>",
        "<svg><path style=\"fill: url('https://x/y')\"/></svg>",
        None,
    ],
)
def test_a_drawing_with_active_content_or_none_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, svg: str | None
) -> None:
    monkeypatch.setattr(report_svg, "draw_all", lambda jobs: [(svg, "it broke")] * len(jobs))
    d = tmp_path / "run"
    write_timeline(d, "runs/a", bins=4, links=1)
    save(make_results([make_test("t::a", [verdict("RW-1", PASS)], run_dir="runs/a")]), d)
    info, doc, text = render([d], tmp_path / "r.html")
    check_links(doc)
    assert info.timelines == 0 and "<svg" not in text and len(info.missing) == 1
    note = doc.by_id("s0-0").find_all("p", "missing")[0].text
    assert note == ("it broke" if svg is None else "the drawing held active content: not included")


def test_a_timeline_that_does_not_draw_is_noted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dsrconform.report import timeline as report_timeline

    def broken(tl: Any, title: str = "") -> str:
        raise RuntimeError("no font \udcff")

    monkeypatch.setattr(report_timeline, "timeline_svg", broken)
    d = tmp_path / "run"
    write_timeline(d, "runs/a", bins=4, links=1)
    save(make_results([make_test("t::a", [verdict("RW-1", PASS)], run_dir="runs/a")]), d)
    info, doc, _ = render([d], tmp_path / "r.html")
    check_links(doc)
    note = doc.by_id("s0-0").find_all("p", "missing")[0].text
    assert note == "the timeline could not be drawn (RuntimeError: no font \\xff)"
    assert info.timelines == 0 and info.missing == (f"run0/runs/a/timeline.json: {note}",)


def test_drawings_are_compacted_and_their_ids_prefixed() -> None:
    svg = (
        '<svg xmlns:xlink="http://www.w3.org/1999/xlink">\n <metadata>\n  <rdf:RDF/>\n'
        ' </metadata>\n <defs>\n  <path id="m0" d="M 0 -3.5 \nL 12.345678 -0.04 \nz\n"/>\n'
        ' </defs>\n <text x="1.25">a  b</text>\n <use xlink:href="#m0" x="1.5"/>\n'
        ' <g clip-path="url(#p1)"/>\n <path d="M 1 2 L 3 2 L 3 5.04 L 1 5 z"/>\n'
        ' <path d="M 0 0 C 1.04 1 2 2 3 3"/>\n</svg>'
    )
    out = report_svg.prefix_ids(report_svg.compact_svg(svg), "s1-2-")
    assert out == (
        '<svg xmlns:xlink="http://www.w3.org/1999/xlink"><defs>'
        '<path id="s1-2-m0" d="M0 -3.5L12.3 0z"/></defs><text x="1.25">a  b</text>'
        '<use xlink:href="#s1-2-m0" x="1.5"/><g clip-path="url(#s1-2-p1)"/>'
        '<path d="M1 2H3V5H1z"/><path d="M0 0C1 1 2 2 3 3"/></svg>'
    )


def test_a_timeline_that_does_not_load_is_noted(tmp_path: Path) -> None:
    d = tmp_path / "run"
    (d / "runs" / "bad").mkdir(parents=True)
    (d / "runs" / "bad" / "timeline.json").write_text('{"bin_seconds": -1}')
    t = make_test("t::a", [verdict("RW-1", PASS)], run_dir="runs/bad", scenario="bad")
    save(make_results([t]), d)
    info, doc, _ = render([d], tmp_path / "r.html")
    check_links(doc)
    assert info.timelines == 0 and not doc.find_all("svg")
    assert "timeline.json does not load" in doc.by_id("s0-0").text
    assert any("timeline.json does not load" in m for m in info.missing)


def test_unknown_and_odd_requirement_ids_get_safe_anchors(tmp_path: Path) -> None:
    odd = 'X-1"><i>'
    t = make_test("t::a", [verdict("RW-1", PASS)], requirements=["RW-1", odd, "X_1__i_"])
    d = save(make_results([t]), tmp_path / "run")
    _, doc, text = render([d], tmp_path / "r.html")
    targets = check_links(doc)
    assert "<i>" not in text
    cells = matrix_cells(doc)
    assert list(cells) == ["RW-1", odd, "X_1__i_"]  # unknown IDs last
    hrefs = [cells[k][0].find_all("a")[0].attrs["href"] for k in (odd, "X_1__i_")]
    assert hrefs[0] != hrefs[1] and {h[1:] for h in hrefs} <= targets
    assert "not in this dsrconform" in doc.by_id(hrefs[0][1:]).text


def test_bad_inputs_are_config_errors_naming_the_file(tmp_path: Path) -> None:
    good = three_statuses(tmp_path)
    with pytest.raises(ConfigError, match=r"nowhere/results\.json: no such file"):
        render_report([good, tmp_path / "nowhere"], tmp_path / "r.html")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad/results\.json: not a JSON results file"):
        render_report([bad], tmp_path / "r.html")
    (bad / "results.json").write_text(json.dumps({"schema_version": 1, "run": {}}))
    with pytest.raises(ConfigError, match=r"bad/results\.json: run\.seed"):
        render_report([bad], tmp_path / "r.html")
    with pytest.raises(ConfigError, match="is a directory"):
        render_report([good], tmp_path)
    with pytest.raises(ConfigError, match="no results directory"):
        render_report([], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()  # nothing written on a bad input


def test_page_fetches_nothing_and_declares_a_strict_policy(tmp_path: Path) -> None:
    d = full_run(tmp_path / "run", tests=6, scenarios=2, bins=20)
    _, doc, text = render([d], tmp_path / "r.html")
    check_links(doc)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "@import" not in text and not re.search(r"url\(\s*['\"]?(https?:)?//", text)
    (csp,) = [m for m in doc.find_all("meta") if m.attrs.get("http-equiv")]
    assert "default-src 'none'" in csp.attrs["content"]


def test_cli_parser_and_handler(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="dsrconform")
    add_parser(parser.add_subparsers(dest="command"))
    d = three_statuses(tmp_path)
    args = parser.parse_args(
        [
            "report",
            str(d),
            str(d),
            "-o",
            str(tmp_path / "x" / "y.html"),
            "--embed-limit",
            "1K",
            "--total-embed-limit",
            "0",
        ]
    )
    assert args.embed_limit == 1024 and args.total_embed_limit == 0
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"report: {tmp_path / 'x' / 'y.html'} (") and "2 runs" in out
    assert (tmp_path / "x" / "y.html").is_file()
    defaults = parser.parse_args(["report", str(d)])
    assert defaults.output == "report.html" and defaults.embed_limit == 256 * 1024
    assert defaults.total_embed_limit == 2 * 1024 * 1024
    assert (defaults.embed_limit, defaults.total_embed_limit) == (
        report_html.EMBED_LIMIT,
        report_html.TOTAL_EMBED_LIMIT,
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["report"])  # a results directory is required


def test_cli_main_exit_2_on_a_missing_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dsrconform import cli

    assert cli.build_parser().parse_args(["report", "x"]).results == ["x"]  # registered
    assert cli.main(["report", str(tmp_path / "none"), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dsrconform: error: ") and "none/results.json: no such file" in err


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("512", 512),
        ("256K", 262144),
        ("256KiB", 262144),
        ("2M", 2097152),
        ("2mib", 2097152),
        ("1.5M", 1572864),
        ("1G", 1073741824),
        ("10kb", 10240),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "-1", "lots", "2T", "1.2.3K"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(text)


FAKE_SVG = '<svg xmlns="http://www.w3.org/2000/svg"><defs><path id="m1" d="M 0.04 0 L 1.26 2"/>'
FAKE_SVG += '</defs><use xlink:href="#m1"/><g clip-path="url(#m1)"/></svg>'


def test_full_run_report_is_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full MUST run (60 tests, 23 requirements, 8 scenarios): every part is there. The
    drawings are stubbed (matplotlib's are tested above; they take seconds each)."""
    from dsrconform.report import timeline as report_timeline

    monkeypatch.setattr(report_timeline, "timeline_svg", lambda tl, title="": FAKE_SVG)
    d = full_run(tmp_path / "run", tests=60, scenarios=8, bins=60)
    info, doc, text = render([d], tmp_path / "r.html")
    targets = check_links(doc)
    assert info.timelines == 8 and len(doc.find_all("svg")) == 8
    assert '<path id="s0-7-m1" d="M0 0L1.3 2"/>' in text and 'clip-path="url(#s0-7-m1)"' in text
    res = rmodel.load_results(d)
    assert len(matrix_cells(doc)) == len(res.requirements) == 23
    assert {f"t0-{k}" for k in range(60)} <= {n.attrs.get("id") for n in doc.iter()}
    assert {f"r0-{rid}" for rid in res.requirements} <= targets
    omitted = [p.text for p in doc.find_all("p", "note") if "omitted" in p.text]
    fails = sum(v.status == FAIL for t in res.tests for v in t.verdicts)
    assert fails and len(omitted) == fails and "35 more evidence items omitted" in omitted[0]
