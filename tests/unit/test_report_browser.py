"""The HTML report in a real browser: headless Debian Chromium through selenium, from file://.

Needs no root and no network: the page is a local file and the flags turn off Chromium's own
background fetches. Skipped with a reason when /usr/bin/chromium or /usr/bin/chromedriver (or
selenium) is missing, except under CI (CI=true), where it must run and fails instead. The
``driver`` fixture always quits the driver and stops chromedriver's service, also when the
session does not start, and its teardown fails (an error, apart from the test's own result)
when chromedriver or a Chromium process of the test's profile is left.
A screenshot goes to the test's tmp_path, and to ``$DSR_ARTIFACTS/report-screenshot.png`` when
DSR_ARTIFACTS names a directory (CI keeps it as an artifact).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.markers import in_ci
from tests.unit.test_report_html import (
    FAIL,
    PASS,
    UNKNOWN,
    make_results,
    make_test,
    save,
    verdict,
    write_timeline,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
)
SCREENSHOT = "report-screenshot.png"


def _missing() -> list[str]:
    out = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        out.append("selenium (pip install -e .[dev])")
    return out


MISSING = _missing()
pytestmark = pytest.mark.skipif(
    bool(MISSING) and not in_ci(),
    reason=f"needs {', '.join(MISSING)} (apt-get install chromium chromium-driver); under CI "
    "(CI=true) this test runs and fails instead",
)


def _processes_of(profile: Path) -> list[int]:
    """PIDs whose command line names ``profile`` (this test's Chromium and its children)."""
    needle = str(profile).encode()
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if needle in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _shut_down(drv: Any, service: Any, profile: Path) -> list[str]:
    """Quit the driver and stop its chromedriver, then wait for chromedriver (the service's
    process, by its PID) and Chromium (by the profile on its command line) to be gone. Never
    raises: kills what is left, by PID (ours), and says what that was."""
    proc = getattr(service, "process", None)  # chromedriver's Popen; none before it started
    if drv is not None:
        with contextlib.suppress(Exception):
            drv.quit()  # stops the service too
    with contextlib.suppress(Exception):
        service.stop()  # when quit failed or there was no driver; closes the log either way
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        driver_alive = proc is not None and proc.poll() is None  # poll() reaps it
        if not driver_alive and not _processes_of(profile):
            return []
        time.sleep(0.2)
    left = []
    if proc is not None and proc.poll() is None:
        left.append(f"chromedriver (pid {proc.pid})")
        with contextlib.suppress(OSError):
            proc.kill()
            proc.wait(10)
    for pid in _processes_of(profile):  # this test's profile is on their command line
        left.append(f"chromium (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    """A Chromium session; its teardown always quits it and stops chromedriver, and is an error
    when chromedriver or a Chromium process outlives them (the test's own result stands)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path / "chromium-profile"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    drv = None
    try:
        drv = webdriver.Chrome(service=service, options=options)
        drv.set_page_load_timeout(30)
        yield drv
    finally:
        left = _shut_down(drv, service, profile)  # cleans up also when the session never started
    if left:  # after the finally: only when nothing else failed here, reported as teardown error
        pytest.fail(f"processes left after quit and service.stop(), killed: {', '.join(left)}")


def _report(tmp_path: Path) -> Path:
    from dsrconform.report.html import render_report

    a, b = tmp_path / "run-a", tmp_path / "run-b"
    write_timeline(a, "runs/flood-netns-dsr", bins=40, links=2)
    save(
        make_results(
            [
                make_test(
                    "t::a1",
                    [verdict("RW-1", PASS), verdict("SF-1", FAIL)],
                    run_dir="runs/flood-netns-dsr",
                    scenario="flood",
                ),
                make_test("t::a2", [verdict("DP-1", UNKNOWN)]),
            ]
        ),
        a,
    )
    (b / "ev").mkdir(parents=True)
    (b / "ev" / "w.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(60))
    from dsrconform.report.model import Attachment

    att = Attachment(name="RW-1 window", path="ev/w.pcap", kind="pcap", requirement="RW-1")
    save(
        make_results(
            [make_test("t::b1", [verdict("RW-1", FAIL), verdict("MF-1", PASS)], attachments=[att])],
            seed=11,
            mutant="skip-csum",
        ),
        b,
    )
    out = tmp_path / "report" / "report.html"
    info = render_report([a, b], out)
    assert info.timelines == 1 and info.embedded == ("run1/ev/w.pcap",)
    return out


def test_report_renders_in_headless_chromium_without_console_errors(
    tmp_path: Path, driver: Any
) -> None:
    from selenium.webdriver.common.by import By

    out = _report(tmp_path)
    driver.get(out.as_uri())
    assert driver.title.startswith("dsrconform report")
    matrix = driver.find_element(By.CSS_SELECTOR, "table.matrix")
    rows = matrix.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [r.find_element(By.TAG_NAME, "th").text for r in rows] == [
        "RW-1",
        "DP-1",
        "SF-1",
        "MF-1",
    ]
    cells = [c.text for c in rows[0].find_elements(By.TAG_NAME, "td")]
    assert cells == ["MUST", "PASS", "FAIL"]
    svgs = driver.find_elements(By.CSS_SELECTOR, "#s0-0 svg")
    assert len(svgs) == 1 and svgs[0].size["width"] > 300 and svgs[0].size["height"] > 150
    assert driver.find_elements(By.CSS_SELECTOR, 'a[download="w.pcap"][href^="data:"]')
    # A matrix cell links to its run's requirement.
    rows[0].find_elements(By.TAG_NAME, "a")[1].click()
    assert driver.current_url == out.as_uri() + "#r1-RW-1"
    shot = tmp_path / SCREENSHOT
    driver.get(out.as_uri())  # back to the top: the summary and the matrix
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    artifacts = os.environ.get("DSR_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        (Path(artifacts) / SCREENSHOT).write_bytes(shot.read_bytes())
    errors = [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
    assert not errors, f"browser console errors: {errors}"
