"""The run's results as the pytest plugin leaves them: the run's description
(:func:`run_info`), ``results.json`` written once by the controller at the session's end, and
the ``dsrconform: requirements`` section of the terminal summary.

:mod:`dsrconform.pytest_plugin` re-exports the hooks and stash keys defined here (pytest finds
hooks on the registered plugin module).
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

import pytest

from dsrconform.features import probed
from dsrconform.pytest_options import (
    OPT_BACKEND,
    OPT_LEVEL,
    OPT_MODE,
    OPT_MUTANT,
    OPT_PROFILE,
    OPT_SEED,
    OPT_TARGET,
    _dest,
    lab_path,
    results_dir,
    wanted_ids,
)
from dsrconform.pytest_platforms import USED_PLATFORMS_KEY, families, platform_id
from dsrconform.pytest_progress import is_worker
from dsrconform.report.collect import RunRecorder, build_results, one_line
from dsrconform.report.model import (
    RESULTS_FILE,
    STATUS_COLOUR,
    Results,
    RunInfo,
    decide_requirements,
)

SEED_KEY = pytest.StashKey[int]()
"""The run's seed (``--dsr-seed`` or a random one)."""
RUN_KEY = pytest.StashKey[RunRecorder]()
"""The session's :class:`~dsrconform.report.collect.RunRecorder`."""
RESULTS_KEY = pytest.StashKey[Results]()
"""The session's results, once built at its end (on the controller)."""


def pytest_sessionstart(session: pytest.Session) -> None:
    """A rerun into the same results directory starts afresh: the previous run's results.json
    goes first (the controller only)."""
    results = results_dir(session.config)
    if results is None or is_worker(session.config):
        return
    (results / RESULTS_FILE).unlink(missing_ok=True)


def run_info(config: pytest.Config, exitstatus: int | None = None) -> RunInfo:
    """What the run was: options, seed, lab file and its hash, platforms, times, environment."""
    from dsrconform.report.environment import environment, file_sha256
    from dsrconform.target import target_version

    target = config.getoption(_dest(OPT_TARGET))
    seed = config.stash[SEED_KEY]
    args = list(config.invocation_params.args)
    replay = ["pytest", *args]
    if config.getoption(_dest(OPT_SEED)) is None:
        replay += [OPT_SEED, str(seed)]
    return RunInfo(
        seed=seed,
        target=target,
        target_version=target_version(target),
        mutant=config.getoption(_dest(OPT_MUTANT)),
        lab=lab_path(config),
        lab_sha256=file_sha256(lab_path(config)),
        backends=list(config.getoption(_dest(OPT_BACKEND))),
        modes=list(config.getoption(_dest(OPT_MODE)) or ()),
        platforms=[platform_id(p, config) for p in config.stash.get(USED_PLATFORMS_KEY, [])],
        families=list(families(config)),
        family_labs={f: lab_path(config, f) for f in families(config)},
        level=config.getoption(_dest(OPT_LEVEL)),
        requirements_asked=sorted(wanted_ids(config)),
        profile=config.getoption(_dest(OPT_PROFILE)),
        started=config.stash[RUN_KEY].started,
        stopped=datetime.now(UTC),
        exit_status=exitstatus,
        pytest_args=args,
        replay=shlex.join(replay),
        # The kernel features probed for the run's traffic (live frames, AF_PACKET, ...): why
        # its floods and probes used the engine their fault windows name.
        environment=environment(probed()),
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    results = results_dir(config)
    if results is None or is_worker(config):
        return
    built = build_results(config.stash[RUN_KEY], run_info(config, int(exitstatus)))
    built.save(results)
    config.stash[RESULTS_KEY] = built  # for the JUnit rewrite (dsrconform.report.pytest_hooks)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """One line per requirement (ID, level, status, why), when some test recorded a verdict."""
    if is_worker(config):
        return
    recorder = config.stash[RUN_KEY]
    if not any(t.verdicts or t.not_applicable for t in recorder.tests.values()):
        return
    tr = terminalreporter
    tr.write_sep("=", "dsrconform: requirements")
    for req, row in decide_requirements(recorder.test_results()).items():
        tr.write(f"{req:<6} {row.level or '?':<6} ")
        tr.write(f"{row.status:<7}", bold=True, **{STATUS_COLOUR[row.status]: True})
        tr.line(" " + one_line(row.message, 100))
